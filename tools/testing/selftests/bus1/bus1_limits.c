// SPDX-License-Identifier: GPL-2.0
/*
 * bus1 limits and scale report (not a pass/fail test; `make limits` runs it
 * in the release guest): 10,000 peers, 1,000,000 handles (spread over 16
 * UIDs, as one UID may hold at most user_handles_max), a 1024-destination
 * multicast, the largest message a peer takes, and kernel memory per idle
 * peer, per handle and per queued message, from /proc/meminfo's slab and
 * vmalloc counters (pool pages are reported apart). Prints a Markdown table,
 * and for each memory target a row of figure "mem" in bus1-bench's format,
 * "BENCH|mem|bus1|<what>|B|<bytes>|...", which `make bench` judges.
 *
 *	bus1_limits [PEERS [HANDLES]]	everything
 *	bus1_limits --memory		only the three memory targets (idle peer,
 *					queued message, further handle)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/bus1.h>

#include "bus1_util.h"

#define INV BUS1_HANDLE_INVALID
#define PTR(p) ((__u64)(uintptr_t)(p))

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Kernel memory in bytes: slab plus vmalloc, as /proc/meminfo counts them. */
static long long kmem(void)
{
	char line[256];
	long long v, total = 0;
	FILE *f;

	/* Let RCU-deferred frees finish so they do not count. */
	usleep(200000);
	f = fopen("/proc/meminfo", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Slab: %lld kB", &v) == 1 || sscanf(line, "VmallocUsed: %lld kB", &v) == 1)
			total += v * 1024;
	fclose(f);
	return total;
}

/* The memory targets, in bytes (bench/report.py judges the rows against the same). */
#define TARGET_IDLE_PEER 4096
#define TARGET_QUEUED_MESSAGE 256
#define TARGET_HANDLE 128

/*
 * A memory figure for `make bench`, as bus1-bench prints its rows (median,
 * tail, samples, range of the repetitions): one measurement of @bytes.
 */
static void bench_mem(const char *what, long long bytes)
{
	printf("BENCH|mem|bus1|%s|B|%lld.000|%lld.000|1|%lld.000|%lld.000\n", what, bytes, bytes, bytes, bytes);
}

static __u64 transfer(int from, __u64 src, int to)
{
	__u64 h;

	return bus1_xfer(from, src, to, &h) ? INV : h;
}

static long long pool_pages(int fd)
{
	return bus1_fdinfo_value(fd, "bus1-pool:", "pages", NULL);
}

static void peers(int n)
{
	struct rlimit r = { n + 100, n + 100 };
	long long before, after;
	int *fds = calloc(n, sizeof(int)), i, ok = 0;
	double t0, t_open;

	setrlimit(RLIMIT_NOFILE, &r);
	before = kmem();
	t0 = now();
	for (i = 0; i < n; i++) {
		fds[i] = bus1_peer_new();
		if (fds[i] < 0)
			break;
		ok++;
	}
	after = kmem();
	t_open = (now() - t0) / (ok ? ok : 1) * 1e6;
	t0 = now();
	for (i = 0; i < ok; i++)
		close(fds[i]);
	printf("| peers | %d opened of %d (%.1f us each to open, %.1f us to close) | kernel memory per idle peer: %lld B (target <= %d) |\n",
	       ok, n, t_open, (now() - t0) / (ok ? ok : 1) * 1e6, ok ? (after - before) / ok : -1, TARGET_IDLE_PEER);
	if (ok == n)
		bench_mem("idle_peer", (after - before) / ok);
	free(fds);
}

/* One UID's share of the handles: @n handles through transfers between two peers. */
static int handles_child(uid_t uid, int n)
{
	int a, b, i, made = 0;

	if (setresuid(uid, uid, uid))
		return -1;
	a = bus1_peer_new();
	b = bus1_peer_new();
	if (a < 0 || b < 0)
		return -1;
	/* Each transfer of a new node adds two: its owner handle and the remote one. */
	for (i = 0; made + 2 <= n; i++) {
		if (transfer(a, (__u64)(0x100 + i) << 3, b) == INV)
			break;
		made += 2;
	}
	printf("# uid %u: %d handles\n", uid, made);
	fflush(stdout);
	/* Stay alive, holding them, until the parent has measured. */
	pause();
	return 0;
}

static void handles(int total, int uids)
{
	long long before, after;
	pid_t pid[64];
	int i, per = total / uids;
	double t0;

	before = kmem();
	t0 = now();
	for (i = 0; i < uids; i++) {
		pid[i] = fork();
		if (!pid[i])
			_exit(handles_child(10000 + i, per) ? 1 : 0);
	}
	/* Wait until every child has made its handles: each prints a line; sleep a bounded time. */
	for (i = 0; i < 600; i++) {
		FILE *f = fopen("/sys/kernel/debug/bus1/users", "r");
		char line[512];
		long long sum = 0, h;

		if (!f)
			break;
		while (fgets(line, sizeof(line), f)) {
			char *p = strstr(line, "handles=");

			if (p && sscanf(p, "handles=%lld", &h) == 1 && strncmp(line, "uid=0 ", 6))
				sum += h;
		}
		fclose(f);
		if (sum >= (long long)per * uids - 2 * uids)
			break;
		sleep(1);
	}
	after = kmem();
	printf("| handles | %d in %d UIDs (%.1f us per transfer of two) | kernel memory per handle: %lld B (target <= 128) |\n",
	       per * uids, uids, (now() - t0) / (total / 2) * 1e6, (after - before) / (per * uids));
	for (i = 0; i < uids; i++) {
		kill(pid[i], SIGKILL);
		waitpid(pid[i], NULL, 0);
	}
}

/*
 * The cost of one more handle to a node that exists: @k nodes of peer a are
 * transferred to b (node, owner handle, handle), then again to c (only a
 * handle in c and a holder entry in a's node).
 */
static void handle_split(int k)
{
	int a = bus1_peer_new(), b = bus1_peer_new(), c = bus1_peer_new(), i, ok_b = 0, ok_c = 0;
	long long m0, m1, m2;

	m0 = kmem();
	for (i = 0; i < k; i++)
		ok_b += transfer(a, (__u64)(0x100 + i) << 3, b) != INV;
	m1 = kmem();
	for (i = 0; i < k; i++)
		ok_c += transfer(a, (__u64)(0x100 + i) << 3, c) != INV;
	m2 = kmem();
	printf("| handle, split | %d new nodes with a remote handle, then %d more handles to them | %lld B per node with its owner and one remote handle; %lld B per further handle (target <= %d) |\n",
	       ok_b, ok_c, (m1 - m0) / (ok_b ? ok_b : 1), (m2 - m1) / (ok_c ? ok_c : 1), TARGET_HANDLE);
	/* What one more handle to a node costs in all: the handle, the holder entry, the reserved NODE_DESTROY. */
	if (ok_b == k && ok_c == k)
		bench_mem("further_handle", (m2 - m1) / ok_c);
	close(a);
	close(b);
	close(c);
}

static void multicast(int n)
{
	int tx = bus1_peer_new(), *rx = calloc(n, sizeof(int)), i, got = 0;
	__u64 *dst = calloc(n, sizeof(__u64));
	char buf[64] = "multicast";
	struct iovec v = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct bus1_cmd_send s = { .n_vecs = 1, .ptr_vecs = PTR(&v) };
	struct rlimit r = { n + 100, n + 100 };
	double t0, t1, t2;
	/* Within user_slices_max (16384) for all copies together. */
	int reps = 10, k;

	setrlimit(RLIMIT_NOFILE, &r);
	for (i = 0; i < n; i++) {
		rx[i] = bus1_peer_new();
		dst[i] = transfer(rx[i], 0x100 << 3, tx);
	}
	s.ptr_destinations = PTR(dst);
	/* Unicast cost, for the marginal cost per destination. */
	s.n_destinations = 1;
	t0 = now();
	for (k = 0; k < reps * 10; k++)
		ioctl(tx, BUS1_CMD_SEND, &s);
	t1 = now();
	s.n_destinations = (__u64)n;
	for (k = 0; k < reps; k++)
		if (ioctl(tx, BUS1_CMD_SEND, &s))
			printf("# multicast: %s\n", strerror(errno));
	t2 = now();
	for (i = 0; i < n; i++) {
		struct bus1_cmd_recv rv = { .max_offset = ~0ULL };

		while (!ioctl(rx[i], BUS1_CMD_RECV, &rv)) {
			got++;
			memset(&rv, 0, sizeof(rv));
			rv.max_offset = ~0ULL;
		}
	}
	printf("| multicast | %d destinations, %d of %d copies delivered | %.1f us per send, %.2f us per destination (unicast %.1f us) |\n",
	       n, got - reps * 10, reps * n, (t2 - t1) / reps * 1e6, (t2 - t1) / reps / n * 1e6,
	       (t1 - t0) / (reps * 10) * 1e6);
	for (i = 0; i < n; i++)
		close(rx[i]);
	close(tx);
	free(rx);
	free(dst);
}

static void largest(void)
{
	int tx = bus1_peer_new(), rx = bus1_peer_new(), e = 0;
	__u64 h = transfer(rx, 0x100 << 3, tx);
	size_t size, best = 0;
	/* The guest has 1 GiB; the per-UID in-flight limit (16 MiB) is far below this. */
	char *buf = malloc(256UL << 20);
	struct bus1_cmd_send s = { .ptr_destinations = PTR(&h), .n_destinations = 1, .n_vecs = 1 };
	struct iovec v;

	for (size = 1UL << 20; size <= (256UL << 20); size *= 2) {
		struct bus1_cmd_recv rv = { .max_offset = ~0ULL };

		v.iov_base = buf;
		v.iov_len = size;
		s.ptr_vecs = PTR(&v);
		memset(buf, 1, size);
		if (ioctl(tx, BUS1_CMD_SEND, &s)) {
			e = errno;
			break;
		}
		best = size;
		if (!ioctl(rx, BUS1_CMD_RECV, &rv))
			ioctl(rx, BUS1_CMD_SLICE_RELEASE, &rv.msg.offset);
	}
	printf("| largest message | %zu MiB accepted, %zu MiB refused with %s | bounded by user_inflight_bytes_max (same UID) |\n",
	       best >> 20, size >> 20, e ? strerror(e) : "-");
	free(buf);
	close(tx);
	close(rx);
}

static void queued(int n)
{
	int tx = bus1_peer_new(), rx = bus1_peer_new(), i, ok = 0;
	__u64 h = transfer(rx, 0x100 << 3, tx);
	long long before, after, pages;
	struct bus1_cmd_send s = { .ptr_destinations = PTR(&h), .n_destinations = 1 };

	before = kmem();
	for (i = 0; i < n; i++)
		ok += !ioctl(tx, BUS1_CMD_SEND, &s);
	after = kmem();
	pages = pool_pages(rx);
	printf("| queued messages | %d empty messages queued | kernel memory per queued message: %lld B (target <= %d), plus %lld B of pool pages each |\n",
	       ok, (after - before) / (ok ? ok : 1), TARGET_QUEUED_MESSAGE, pages * 4096 / (ok ? ok : 1));
	if (ok == n)
		bench_mem("queued_message", (after - before) / ok);
	close(tx);
	close(rx);
}

int main(int argc, char **argv)
{
	bool memory_only = argc > 1 && !strcmp(argv[1], "--memory");
	int n_peers = argc > 1 && !memory_only ? atoi(argv[1]) : 10000;
	int n_handles = argc > 2 ? atoi(argv[2]) : 1000000;

	printf("| what | scale | measured |\n|---|---|---|\n");
	fflush(stdout);
	if (memory_only) {
		peers(n_peers);
		fflush(stdout);
		queued(10000);
		fflush(stdout);
		handle_split(20000);
		return 0;
	}
	peers(n_peers);
	fflush(stdout);
	queued(10000);
	fflush(stdout);
	multicast(1024);
	fflush(stdout);
	largest();
	fflush(stdout);
	handle_split(20000);
	fflush(stdout);
	handles(n_handles, 16);
	return 0;
}
