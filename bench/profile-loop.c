// SPDX-License-Identifier: GPL-2.0
/*
 * The guest program of `make profile` (scripts/profile.sh): one thread
 * passing small messages through bus1 or AF_UNIX in a loop, between markers
 * that the TCG plugin scripts/tcg-insns.c recognises, so that the kernel
 * instructions of exactly the measured iterations are counted.
 *
 *	bus1-profile [-w WARMUP] [-n N] CASE:SIZE...
 *
 * Cases (named as bus1-bench's cpu figure names them):
 *   bus1     two peers: SEND of SIZE bytes from a to b, RECV at b, read the
 *            payload from b's pool, SLICE_RELEASE at b
 *   bus1_tx  one peer, the one-call path: TRANSACT releasing the previous
 *            slice, sending to the peer's own node and receiving that
 *            message; read the payload
 *   bus1_mcast  MCAST_DESTS (8) + 1 peers: one SEND of SIZE bytes from a
 *            to a node of each of the MCAST_DESTS others, then at each of
 *            them RECV, read the payload from its pool, SLICE_RELEASE
 *   unix     AF_UNIX SOCK_SEQPACKET pair: send SIZE bytes, recv them
 *            (MSG_DONTWAIT) and read them
 *
 * Per case: set up, WARMUP iterations (default 2000), a marker, N iterations
 * (default 20000), a marker, tear down. It prints per case
 * "PROFILE-CASE <case> <size> <n> <mark> <destinations>", where <mark> is
 * the number of the marker that ends the measured iterations (markers count
 * from 1 over the whole run) and <destinations> the number of receivers of
 * each message (1 but for bus1_mcast), and at the end "PROFILE-DONE
 * <markers>". Every message's
 * length is checked; any failure prints "PROFILE-ERROR ..." and exits 1.
 *
 * Built static by scripts/profile.sh with -I include/uapi and
 * -I tools/testing/selftests/bus1 (bus1_util.h).
 */
#include "bus1_util.h"
#include <stdbool.h>
#include <sys/socket.h>

#define SIZE_MAX_PAYLOAD 65536
/* The destinations of one bus1_mcast SEND. */
#define MCAST_DESTS 8

static unsigned long markers;
static uint8_t sendbuf[SIZE_MAX_PAYLOAD];
static uint8_t recvbuf[SIZE_MAX_PAYLOAD];
static volatile uint8_t sink;

/* The marker: a no-op the plugin knows by its bytes, 0f 1f 84 00 62 75 73 31. */
static void mark(void)
{
	__asm__ __volatile__("nopl 0x31737562(%%rax,%%rax,1)" ::: "memory");
	markers++;
}

#define fail(...)                                                        \
	do {                                                             \
		printf("PROFILE-ERROR " __VA_ARGS__);                    \
		printf("\n");                                            \
		exit(1);                                                 \
	} while (0)

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

static void case_bus1_mcast(size_t size, long warmup, long n)
{
	int a = bus1_peer_new(), b[MCAST_DESTS], err;
	const uint8_t *pool[MCAST_DESTS];
	size_t pool_len[MCAST_DESTS];
	__u64 h[MCAST_DESTS];
	struct bus1_cmd_recv r;

	if (a < 0)
		fail("open /dev/bus1: %s", strerror(errno));
	for (int k = 0; k < MCAST_DESTS; k++) {
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
		if ((err = bus1_send(a, 0, h, MCAST_DESTS, NULL, sendbuf, size, NULL, 0, NULL, 0)))
			fail("SEND: %s", strerror(-err));
		for (int k = 0; k < MCAST_DESTS; k++) {
			if ((err = bus1_recv(b[k], 0, (__u64)-1, &r)))
				fail("RECV at receiver %d: %s", k, strerror(-err));
			payload_of(pool[k], pool_len[k], &r, size);
			if ((err = bus1_slice_release(b[k], r.msg.offset)))
				fail("SLICE_RELEASE: %s", strerror(-err));
		}
	}
	mark();
	bus1_peer_free(a, NULL, 0);
	for (int k = 0; k < MCAST_DESTS; k++)
		bus1_peer_free(b[k], pool[k], pool_len[k]);
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

static const struct {
	const char *name;
	void (*run)(size_t size, long warmup, long n);
	int dests;
} cases[] = {
	{ "bus1", case_bus1, 1 },
	{ "bus1_tx", case_bus1_tx, 1 },
	{ "bus1_mcast", case_bus1_mcast, MCAST_DESTS },
	{ "unix", case_unix, 1 },
};

int main(int argc, char **argv)
{
	long warmup = 2000, n = 20000;
	int opt;

	while ((opt = getopt(argc, argv, "w:n:")) != -1) {
		switch (opt) {
		case 'w':
			warmup = atol(optarg);
			break;
		case 'n':
			n = atol(optarg);
			break;
		default:
			fail("usage: bus1-profile [-w WARMUP] [-n N] CASE:SIZE...");
		}
	}
	if (warmup < 0 || n < 1 || optind == argc)
		fail("usage: bus1-profile [-w WARMUP] [-n N] CASE:SIZE...");
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
			fail("unknown case '%s' (bus1, bus1_tx, bus1_mcast, unix)", name);
		cases[k].run(size, warmup, n);
		printf("PROFILE-CASE %s %zu %ld %lu %d\n", name, size, n, markers, cases[k].dests);
	}
	printf("PROFILE-DONE %lu\n", markers);
	return 0;
}
