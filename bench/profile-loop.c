// SPDX-License-Identifier: GPL-2.0
/*
 * The guest program of `make profile` (scripts/profile.sh): small messages
 * passed through bus1 or AF_UNIX in a loop, by one thread or as round trips
 * of two processes, between markers that the TCG plugin scripts/tcg-insns.c
 * recognises, so that the kernel instructions of exactly the measured
 * iterations are counted.
 *
 *	bus1-profile [-w WARMUP] [-n N] [-k K] CASE:SIZE...
 *
 * One-thread cases (named as bus1-bench's cpu figure names them):
 *   bus1     two peers: SEND of SIZE bytes from a to b, RECV at b, read the
 *            payload from b's pool, SLICE_RELEASE at b
 *   bus1_tx  one peer, the one-call path: TRANSACT releasing the previous
 *            slice, sending to the peer's own node and receiving that
 *            message; read the payload
 *   bus1_mcast  MCAST_DESTS (8) + 1 peers: one SEND of SIZE bytes from a
 *            to a node of each of the MCAST_DESTS others, then at each of
 *            them RECV, read the payload from its pool, SLICE_RELEASE
 *   bus1_recv1  as bus1, but b takes each message with one TRANSACT that
 *            releases the slice of its previous message and receives (the
 *            one-call receive); read the payload
 *   bus1_mcast_recv1  as bus1_mcast, each receiver with the one-call
 *            receive of bus1_recv1
 *   unix     AF_UNIX SOCK_SEQPACKET pair: send SIZE bytes, recv them
 *            (MSG_DONTWAIT) and read them
 *
 * Round-trip cases (named as bus1-bench's rtt figure names its systems, with
 * _rtt): a parent and a forked child pass a message of SIZE bytes back and
 * forth, each reading every byte of what it receives; an iteration is one
 * round trip of the parent. With one vCPU every kernel instruction between
 * the markers belongs to the round trips: both processes' system calls,
 * their wake-ups, the scheduler and the context switches.
 *   bus1_rtt  RFC v1 ABI, two peers with a handle to each other's node: the
 *            parent SENDs, then poll()s, RECVs, reads the payload and
 *            SLICE_RELEASEs; the child poll()s, RECVs, reads, SLICE_RELEASEs
 *            and SENDs the reply (as bus1-bench's bus1 round trip; the poll
 *            has no timeout, as no system's receive has one)
 *   bus1_tx_rtt  the same peers, one TRANSACT per message on each side:
 *            release the previous slice, send to the other, receive with
 *            BUS1_RECV_FLAG_WAIT (no timeout, as bus1-bench's bus1_tx)
 *   bus1_tx_xuid_rtt  as bus1_tx_rtt, the child's peer opened as user
 *            OTHER_UID (65534, as bus1-bench's bus1_tx_xuid): every message
 *            is charged through the uid-to-uid quota, the path between
 *            services of different users
 *   unix_rtt AF_UNIX SOCK_SEQPACKET pair: the parent sends and recvs
 *            (blocking), the child recvs and sends
 * The parent alone executes the markers; the child answers WARMUP + N
 * messages and is then blocked in its next receive, as after every reply,
 * until the parent closes its end (EOF, or NODE_DESTROY of the parent's
 * node), which it checks before it exits 0. Each side holds only its own
 * socket or peer, so the other's exit wakes it: a child that fails (or dies)
 * makes the parent's next call fail, and the parent reports the child's
 * exit status with its PROFILE-ERROR; a parent that fails kills and reaps
 * the child first. -k K makes the child exit 1 after K replies, to see that
 * failure path work. -x runs the parent on CPU 0 and the child on CPU 1
 * (the guest of the cache-line count has two vCPUs).
 *
 * Per case: set up, WARMUP iterations (default 2000), a marker, N iterations
 * (default 20000), a marker, tear down. It prints per case
 * "PROFILE-CASE <case> <size> <n> <mark> <destinations> <processes>", where
 * <mark> is the number of the marker that ends the measured iterations
 * (markers count from 1 over the whole run), <destinations> the number of
 * receivers of each message (1 but for the bus1_mcast cases) and <processes> 2 for a
 * round trip, 1 otherwise; and at the end "PROFILE-DONE <markers>". Every
 * message's type and length is checked; any failure prints
 * "PROFILE-ERROR ..." and exits 1.
 *
 * Built static by scripts/profile.sh with -I include/uapi and
 * -I tools/testing/selftests/bus1 (bus1_util.h).
 */
#define _GNU_SOURCE
#include "bus1_util.h"
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define SIZE_MAX_PAYLOAD 65536
/* The destinations of one bus1_mcast SEND. */
#define MCAST_DESTS 8
/*
 * A round trip's receive waits without a timeout, as every system's does
 * (AF_UNIX's blocking recv arms no timer either); a timeout would add a
 * timer's setup and cancellation to each wait. Nothing hangs for a failed
 * peer: its exit closes its end, which wakes the other.
 */
#define WAIT_NS 0ULL
#define POLL_MS -1
/* The user of the child's peer in bus1_tx_xuid_rtt. */
#define OTHER_UID 65534

static unsigned long markers;
static uint8_t sendbuf[SIZE_MAX_PAYLOAD];
/* One byte more than a message: a longer one shows as such, not truncated to the size. */
static uint8_t recvbuf[SIZE_MAX_PAYLOAD + 1];
static volatile uint8_t sink;
/* In the parent, the child of the round-trip case that runs (0: none). */
static pid_t child;
/* The prefix of this process's PROFILE-ERROR messages. */
static const char *role = "";
/* -k: the child exits 1 after this many replies (negative: never). */
static long child_quit = -1;
/* -x: a round trip's parent runs on CPU 0 and its child on CPU 1. */
static int apart;

/* The marker: a no-op the plugin knows by its bytes, 0f 1f 84 00 62 75 73 31. */
static void mark(void)
{
	__asm__ __volatile__("nopl 0x31737562(%%rax,%%rax,1)" ::: "memory");
	markers++;
}

static void end_child(void);

/*
 * The message is formatted before anything is printed (errno intact). In the
 * parent of a round trip it also ends and reaps the child and says how that
 * ended, so that the first cause shows.
 */
#define fail(...)                                                        \
	do {                                                             \
		char msg_[512];                                          \
		snprintf(msg_, sizeof(msg_), __VA_ARGS__);               \
		printf("PROFILE-ERROR %s%s", role, msg_);                \
		end_child();                                             \
		printf("\n");                                            \
		exit(1);                                                 \
	} while (0)

/* How a child ended, from its wait status. */
static const char *exit_status(int st)
{
	static char buf[64];

	if (WIFEXITED(st))
		snprintf(buf, sizeof(buf), "exited with status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, sizeof(buf), "was killed by signal %d", WTERMSIG(st));
	else
		snprintf(buf, sizeof(buf), "ended with wait status %#x", st);
	return buf;
}

/*
 * The parent's failure path: kills the child if it still runs and reaps it.
 * A child that had already exited (its failure made the parent's call fail)
 * keeps its exit status: SIGKILL does not change the status of a process
 * that is exiting.
 */
static void end_child(void)
{
	pid_t c = child;
	int st;

	if (c <= 0)
		return;
	child = 0;
	kill(c, SIGKILL);
	if (waitpid(c, &st, 0) == c)
		printf(" (the child %s)", exit_status(st));
	else
		printf(" (waitpid: %s)", strerror(errno));
}

/* Reads every byte, as a receiver that uses the payload does. */
static void consume(const uint8_t *p, size_t len)
{
	uint8_t x = 0;

	for (size_t i = 0; i < len; i++)
		x ^= p[i];
	sink = x;
}

/* The pool mapping: the largest of 512, 256, ... 1 MiB that works (as bus1-bench). */
static const uint8_t *map_pool(int fd, size_t *len)
{
	for (*len = 512u << 20; *len >= 1u << 20; *len /= 2) {
		const uint8_t *p = bus1_pool_map(fd, *len);

		if (p)
			return p;
	}
	fail("mmap pool: %s", strerror(errno));
}

static void payload_of(const uint8_t *pool, size_t pool_len, const struct bus1_cmd_recv *r, size_t size)
{
	if (r->msg.type != BUS1_MSG_DATA || r->msg.n_bytes != size)
		fail("message of type %llu with %llu bytes, expected data of %zu",
		     (unsigned long long)r->msg.type, (unsigned long long)r->msg.n_bytes, size);
	if (r->msg.offset > pool_len || pool_len - r->msg.offset < size)
		fail("slice at %llu beyond the mapping", (unsigned long long)r->msg.offset);
	consume(pool + r->msg.offset, size);
}

/* A received message's length: exactly @size. */
static void check_len(const char *what, ssize_t got, size_t size)
{
	if (got < 0)
		fail("%s: %s", what, strerror(errno));
	if (got != (ssize_t)size)
		fail("%s: %zd bytes, expected %zu", what, got, size);
}

static void case_bus1(size_t size, long warmup, long n)
{
	int a = bus1_peer_new(), b = bus1_peer_new(), err;
	struct bus1_cmd_recv r;
	const uint8_t *pool;
	size_t pool_len;
	__u64 h;

	if (a < 0 || b < 0)
		fail("open /dev/bus1: %s", strerror(errno));
	pool = map_pool(b, &pool_len);
	if ((err = bus1_xfer(b, 0x100, a, &h)))
		fail("HANDLE_TRANSFER: %s", strerror(-err));
	for (long i = 0; i < warmup + n; i++) {
		if (i == warmup)
			mark();
		if ((err = bus1_send(a, 0, &h, 1, NULL, sendbuf, size, NULL, 0, NULL, 0)))
			fail("SEND: %s", strerror(-err));
		if ((err = bus1_recv(b, 0, (__u64)-1, &r)))
			fail("RECV: %s", strerror(-err));
		payload_of(pool, pool_len, &r, size);
		if ((err = bus1_slice_release(b, r.msg.offset)))
			fail("SLICE_RELEASE: %s", strerror(-err));
	}
	mark();
	bus1_peer_free(a, NULL, 0);
	bus1_peer_free(b, pool, pool_len);
}

static void case_bus1_tx(size_t size, long warmup, long n)
{
	int a = bus1_peer_new();
	struct iovec v = { .iov_base = sendbuf, .iov_len = size };
	__u64 own = 0x100;
	struct bus1_cmd_transact t;
	const uint8_t *pool;
	size_t pool_len;
	__u64 prev = 0;
	bool have_prev = false;

	if (a < 0)
		fail("open /dev/bus1: %s", strerror(errno));
	pool = map_pool(a, &pool_len);
	for (long i = 0; i < warmup + n; i++) {
		if (i == warmup)
			mark();
		memset(&t, 0, sizeof(t));
		t.flags = BUS1_TRANSACT_FLAG_SEND | BUS1_TRANSACT_FLAG_RECV;
		if (have_prev) {
			t.flags |= BUS1_TRANSACT_FLAG_RELEASE;
			t.release_offset = prev;
		}
		t.send.ptr_destinations = (__u64)(uintptr_t)&own;
		t.send.n_destinations = 1;
		t.send.ptr_vecs = (__u64)(uintptr_t)&v;
		t.send.n_vecs = size ? 1 : 0;
		t.recv.max_offset = (__u64)-1;
		if (ioctl(a, BUS1_CMD_TRANSACT, &t) < 0)
			fail("TRANSACT (stages done %#llx): %s", (unsigned long long)t.done, strerror(errno));
		payload_of(pool, pool_len, &t.recv, size);
		prev = t.recv.msg.offset;
		have_prev = true;
	}
	mark();
	bus1_peer_free(a, pool, pool_len);
}

/*
 * Takes the next message of receiver @fd into @r with one TRANSACT that
 * releases the slice of the receiver's previous message (*@prev, if
 * *@have_prev) and receives.
 */
static void recv_one_call(int fd, __u64 *prev, bool *have_prev, struct bus1_cmd_recv *r)
{
	struct bus1_cmd_transact t;

	memset(&t, 0, sizeof(t));
	t.flags = BUS1_TRANSACT_FLAG_RECV;
	if (*have_prev) {
		t.flags |= BUS1_TRANSACT_FLAG_RELEASE;
		t.release_offset = *prev;
	}
	t.recv.max_offset = (__u64)-1;
	if (ioctl(fd, BUS1_CMD_TRANSACT, &t) < 0)
		fail("TRANSACT (stages done %#llx): %s", (unsigned long long)t.done, strerror(errno));
	*r = t.recv;
	*prev = r->msg.offset;
	*have_prev = true;
}

/*
 * One SEND of @size bytes from a to a node of each of @dests receivers, then
 * at each receiver its message, read from its pool: with RECV and
 * SLICE_RELEASE, or if @one_call with recv_one_call().
 */
static void send_and_receive(size_t size, long warmup, long n, int dests, bool one_call)
{
	int a = bus1_peer_new(), b[MCAST_DESTS], err;
	const uint8_t *pool[MCAST_DESTS];
	size_t pool_len[MCAST_DESTS];
	__u64 h[MCAST_DESTS], prev[MCAST_DESTS];
	bool have_prev[MCAST_DESTS] = { false };
	struct bus1_cmd_recv r;

	if (a < 0)
		fail("open /dev/bus1: %s", strerror(errno));
	for (int k = 0; k < dests; k++) {
		b[k] = bus1_peer_new();
		if (b[k] < 0)
			fail("open /dev/bus1: %s", strerror(errno));
		pool[k] = map_pool(b[k], &pool_len[k]);
		if ((err = bus1_xfer(b[k], 0x100, a, &h[k])))
			fail("HANDLE_TRANSFER: %s", strerror(-err));
	}
	for (long i = 0; i < warmup + n; i++) {
		if (i == warmup)
			mark();
		if ((err = bus1_send(a, 0, h, dests, NULL, sendbuf, size, NULL, 0, NULL, 0)))
			fail("SEND: %s", strerror(-err));
		for (int k = 0; k < dests; k++) {
			if (one_call) {
				recv_one_call(b[k], &prev[k], &have_prev[k], &r);
				payload_of(pool[k], pool_len[k], &r, size);
				continue;
			}
			if ((err = bus1_recv(b[k], 0, (__u64)-1, &r)))
				fail("RECV at receiver %d: %s", k, strerror(-err));
			payload_of(pool[k], pool_len[k], &r, size);
			if ((err = bus1_slice_release(b[k], r.msg.offset)))
				fail("SLICE_RELEASE: %s", strerror(-err));
		}
	}
	mark();
	bus1_peer_free(a, NULL, 0);
	for (int k = 0; k < dests; k++)
		bus1_peer_free(b[k], pool[k], pool_len[k]);
}

static void case_bus1_mcast(size_t size, long warmup, long n)
{
	send_and_receive(size, warmup, n, MCAST_DESTS, false);
}

static void case_bus1_recv1(size_t size, long warmup, long n)
{
	send_and_receive(size, warmup, n, 1, true);
}

static void case_bus1_mcast_recv1(size_t size, long warmup, long n)
{
	send_and_receive(size, warmup, n, MCAST_DESTS, true);
}

static void case_unix(size_t size, long warmup, long n)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv))
		fail("socketpair: %s", strerror(errno));
	for (long i = 0; i < warmup + n; i++) {
		ssize_t got;

		if (i == warmup)
			mark();
		if (send(sv[0], sendbuf, size, 0) != (ssize_t)size)
			fail("send: %s", strerror(errno));
		got = recv(sv[1], recvbuf, size ? size : 1, MSG_DONTWAIT);
		if (got != (ssize_t)size)
			fail("recv: %zd, expected %zu bytes (%s)", got, size, strerror(errno));
		consume(recvbuf, size);
	}
	mark();
	close(sv[0]);
	close(sv[1]);
}

/* Forks the child of a round trip; 0 in the child, its pid in the parent. */
static pid_t rtt_fork(void)
{
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		fail("fork: %s", strerror(errno));
	if (pid == 0)
		role = "child: ";
	else
		child = pid;
	if (apart) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(pid == 0, &set);
		if (sched_setaffinity(0, sizeof(set), &set))
			fail("sched_setaffinity to CPU %d: %s", pid == 0, strerror(errno));
	}
	return pid;
}

/* In the child, when it has made @replies replies: -k lets it fail here. */
static void child_check(long replies)
{
	if (child_quit >= 0 && replies >= child_quit)
		fail("exiting after %ld replies (-k)", replies);
}

/* In the parent, after its side is closed: the child must exit 0. */
static void reap_child(void)
{
	pid_t c = child;
	int st;

	child = 0;
	if (waitpid(c, &st, 0) != c)
		fail("waitpid: %s", strerror(errno));
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		fail("the child %s", exit_status(st));
}

/* The notification the child receives once the parent closed its peer. */
static void node_destroyed(const struct bus1_cmd_recv *r, __u64 handle)
{
	if (r->msg.type != BUS1_MSG_NODE_DESTROY || r->msg.destination != handle)
		fail("after the last round trip: message of type %llu to %#llx, expected NODE_DESTROY of %#llx",
		     (unsigned long long)r->msg.type, (unsigned long long)r->msg.destination,
		     (unsigned long long)handle);
}

/*
 * Opens a peer as user @uid (0: as this process's user): a peer is charged
 * to the user that opened it.
 */
static int peer_new_as(uid_t uid)
{
	int fd;

	if (!uid)
		return bus1_peer_new();
	if (setresuid(uid, uid, 0))
		fail("setresuid(%u): %s", (unsigned)uid, strerror(errno));
	fd = bus1_peer_new();
	/* The saved UID 0 allows the way back. */
	if (setresuid(0, 0, 0))
		fail("setresuid back to 0: %s", strerror(errno));
	return fd;
}

/*
 * Two peers, a and b, with a handle each to a node of the other, a2b at a and
 * b2a at b; b opened as user @b_uid (0: this process's). After fork the
 * parent keeps a and the child b, each closing the other; each maps its own
 * pool only then (a mapping keeps the peer open).
 */
static void rtt_peers_as(int *a, int *b, __u64 *a2b, __u64 *b2a, uid_t b_uid)
{
	int err;

	*a = bus1_peer_new();
	*b = peer_new_as(b_uid);
	if (*a < 0 || *b < 0)
		fail("open /dev/bus1: %s", strerror(errno));
	if ((err = bus1_xfer(*b, 0x100, *a, a2b)) || (err = bus1_xfer(*a, 0x100, *b, b2a)))
		fail("HANDLE_TRANSFER: %s", strerror(-err));
}

static void rtt_peers(int *a, int *b, __u64 *a2b, __u64 *b2a)
{
	rtt_peers_as(a, b, a2b, b2a, 0);
}

/* poll() until the peer is readable, then RECV; again if that finds nothing. */
static void recv_polled(int fd, struct bus1_cmd_recv *r)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	for (;;) {
		int k = poll(&p, 1, POLL_MS), err;

		if (k < 0)
			fail("poll: %s", strerror(errno));
		err = bus1_recv(fd, 0, (__u64)-1, r);
		if (err == -EAGAIN)
			continue;
		if (err)
			fail("RECV: %s", strerror(-err));
		return;
	}
}

static void case_bus1_rtt(size_t size, long warmup, long n)
{
	int a, b, err;
	__u64 a2b, b2a;
	struct bus1_cmd_recv r;
	const uint8_t *pool;
	size_t pool_len;

	rtt_peers(&a, &b, &a2b, &b2a);
	if (rtt_fork() == 0) {
		close(a);
		pool = map_pool(b, &pool_len);
		for (long i = 0; i < warmup + n; i++) {
			child_check(i);
			recv_polled(b, &r);
			payload_of(pool, pool_len, &r, size);
			if ((err = bus1_slice_release(b, r.msg.offset)))
				fail("SLICE_RELEASE: %s", strerror(-err));
			if ((err = bus1_send(b, 0, &b2a, 1, NULL, sendbuf, size, NULL, 0, NULL, 0)))
				fail("SEND: %s", strerror(-err));
		}
		child_check(warmup + n);
		recv_polled(b, &r);
		node_destroyed(&r, b2a);
		exit(0);
	}
	close(b);
	pool = map_pool(a, &pool_len);
	for (long i = 0; i < warmup + n; i++) {
		if (i == warmup)
			mark();
		if ((err = bus1_send(a, 0, &a2b, 1, NULL, sendbuf, size, NULL, 0, NULL, 0)))
			fail("SEND: %s", strerror(-err));
		recv_polled(a, &r);
		payload_of(pool, pool_len, &r, size);
		if ((err = bus1_slice_release(a, r.msg.offset)))
			fail("SLICE_RELEASE: %s", strerror(-err));
	}
	mark();
	bus1_peer_free(a, pool, pool_len);
	reap_child();
}

/*
 * One TRANSACT on @fd: release the slice at @release unless it is
 * BUS1_OFFSET_INVALID, send @size bytes to @dst unless it is NULL, then
 * receive with WAIT into t->recv.
 */
static void rtt_transact(int fd, __u64 release, const __u64 *dst, size_t size, struct bus1_cmd_transact *t)
{
	struct iovec v = { .iov_base = sendbuf, .iov_len = size };

	memset(t, 0, sizeof(*t));
	t->flags = BUS1_TRANSACT_FLAG_RECV;
	if (release != BUS1_OFFSET_INVALID) {
		t->flags |= BUS1_TRANSACT_FLAG_RELEASE;
		t->release_offset = release;
	}
	if (dst) {
		t->flags |= BUS1_TRANSACT_FLAG_SEND;
		t->send.ptr_destinations = (__u64)(uintptr_t)dst;
		t->send.n_destinations = 1;
		t->send.ptr_vecs = (__u64)(uintptr_t)&v;
		t->send.n_vecs = size ? 1 : 0;
	}
	t->recv.flags = BUS1_RECV_FLAG_WAIT;
	t->recv.max_offset = (__u64)-1;
	t->recv.msg.offset = WAIT_NS;
	if (ioctl(fd, BUS1_CMD_TRANSACT, t) < 0)
		fail("TRANSACT (stages done %#llx): %s", (unsigned long long)t->done, strerror(errno));
}

/* bus1_tx_rtt, the child's peer opened as @b_uid. */
static void tx_rtt_as(size_t size, long warmup, long n, uid_t b_uid)
{
	int a, b;
	__u64 a2b, b2a, prev = BUS1_OFFSET_INVALID;
	struct bus1_cmd_transact t;
	const uint8_t *pool;
	size_t pool_len;

	rtt_peers_as(&a, &b, &a2b, &b2a, b_uid);
	if (rtt_fork() == 0) {
		close(a);
		pool = map_pool(b, &pool_len);
		rtt_transact(b, BUS1_OFFSET_INVALID, NULL, 0, &t);
		for (long i = 0; i < warmup + n; i++) {
			child_check(i);
			payload_of(pool, pool_len, &t.recv, size);
			rtt_transact(b, t.recv.msg.offset, &b2a, size, &t);
		}
		child_check(warmup + n);
		node_destroyed(&t.recv, b2a);
		exit(0);
	}
	close(b);
	pool = map_pool(a, &pool_len);
	for (long i = 0; i < warmup + n; i++) {
		if (i == warmup)
			mark();
		rtt_transact(a, prev, &a2b, size, &t);
		payload_of(pool, pool_len, &t.recv, size);
		prev = t.recv.msg.offset;
	}
	mark();
	bus1_peer_free(a, pool, pool_len);
	reap_child();
}

static void case_bus1_tx_rtt(size_t size, long warmup, long n)
{
	tx_rtt_as(size, warmup, n, 0);
}

static void case_bus1_tx_xuid_rtt(size_t size, long warmup, long n)
{
	tx_rtt_as(size, warmup, n, OTHER_UID);
}

static void case_unix_rtt(size_t size, long warmup, long n)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv))
		fail("socketpair: %s", strerror(errno));
	if (rtt_fork() == 0) {
		close(sv[0]);
		for (long i = 0; i < warmup + n; i++) {
			child_check(i);
			check_len("recv", recv(sv[1], recvbuf, size + 1, 0), size);
			consume(recvbuf, size);
			if (send(sv[1], sendbuf, size, MSG_NOSIGNAL) != (ssize_t)size)
				fail("send: %s", strerror(errno));
		}
		child_check(warmup + n);
		/* The parent closed its end: end of file. */
		check_len("recv after the last round trip", recv(sv[1], recvbuf, size + 1, 0), 0);
		exit(0);
	}
	close(sv[1]);
	for (long i = 0; i < warmup + n; i++) {
		if (i == warmup)
			mark();
		/* MSG_NOSIGNAL: a child that is gone makes it fail with EPIPE. */
		if (send(sv[0], sendbuf, size, MSG_NOSIGNAL) != (ssize_t)size)
			fail("send: %s", strerror(errno));
		check_len("recv", recv(sv[0], recvbuf, size + 1, 0), size);
		consume(recvbuf, size);
	}
	mark();
	close(sv[0]);
	reap_child();
}

static const struct {
	const char *name;
	void (*run)(size_t size, long warmup, long n);
	int dests;
	int procs;
} cases[] = {
	{ "bus1", case_bus1, 1, 1 },
	{ "bus1_tx", case_bus1_tx, 1, 1 },
	{ "bus1_mcast", case_bus1_mcast, MCAST_DESTS, 1 },
	{ "bus1_recv1", case_bus1_recv1, 1, 1 },
	{ "bus1_mcast_recv1", case_bus1_mcast_recv1, MCAST_DESTS, 1 },
	{ "unix", case_unix, 1, 1 },
	{ "bus1_rtt", case_bus1_rtt, 1, 2 },
	{ "bus1_tx_rtt", case_bus1_tx_rtt, 1, 2 },
	{ "bus1_tx_xuid_rtt", case_bus1_tx_xuid_rtt, 1, 2 },
	{ "unix_rtt", case_unix_rtt, 1, 2 },
};

int main(int argc, char **argv)
{
	long warmup = 2000, n = 20000;
	int opt;

	while ((opt = getopt(argc, argv, "w:n:k:x")) != -1) {
		switch (opt) {
		case 'w':
			warmup = atol(optarg);
			break;
		case 'n':
			n = atol(optarg);
			break;
		case 'k':
			child_quit = atol(optarg);
			break;
		case 'x':
			apart = 1;
			break;
		default:
			fail("usage: bus1-profile [-w WARMUP] [-n N] [-k K] [-x] CASE:SIZE...");
		}
	}
	if (warmup < 0 || n < 1 || optind == argc)
		fail("usage: bus1-profile [-w WARMUP] [-n N] [-k K] [-x] CASE:SIZE...");
	for (size_t i = 0; i < sizeof(sendbuf); i++)
		sendbuf[i] = (uint8_t)i;
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = optind; i < argc; i++) {
		char name[32];
		size_t size, k;

		if (sscanf(argv[i], "%31[^:]:%zu", name, &size) != 2 || size > SIZE_MAX_PAYLOAD)
			fail("bad case '%s' (CASE:SIZE, SIZE at most %d)", argv[i], SIZE_MAX_PAYLOAD);
		for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++)
			if (!strcmp(cases[k].name, name))
				break;
		if (k == sizeof(cases) / sizeof(cases[0]))
			fail("unknown case '%s' (bus1, bus1_tx, bus1_mcast, bus1_recv1, bus1_mcast_recv1, unix, bus1_rtt, "
			     "bus1_tx_rtt, bus1_tx_xuid_rtt, unix_rtt)", name);
		cases[k].run(size, warmup, n);
		printf("PROFILE-CASE %s %zu %ld %lu %d %d\n", name, size, n, markers, cases[k].dests, cases[k].procs);
	}
	printf("PROFILE-DONE %lu\n", markers);
	return 0;
}
