// SPDX-License-Identifier: GPL-2.0
/*
 * bus1 under allocation failures: failslab and fail_page_alloc, restricted to
 * this task (task-filter, /proc/self/make-it-fail set only around the
 * operation under test) and to call chains through the bus1 module
 * (require-start/require-end = the module's address range).
 *
 * Every operation is repeated many times with a high failure probability.
 * After each attempt, with injection off, the test checks that the attempt
 * either fully happened or left no trace: a failed SEND delivered nothing to
 * any destination, a failed RECV left the message queued, a failed TRANSFER
 * or NODES_DESTROY changed nothing, and every accounting counter of every
 * peer and of the user (fdinfo) is back where it was. Every failure must be
 * ENOMEM. Failures must actually have been injected, or nothing was tested.
 * The runner's kmemleak scan and splat check cover the rest.
 *
 * Needs CONFIG_FAILSLAB, CONFIG_FAIL_PAGE_ALLOC,
 * CONFIG_FAULT_INJECTION_DEBUG_FS and CONFIG_FAULT_INJECTION_STACKTRACE_FILTER
 * (the debug kernel); skipped elsewhere. BUS1_FAULT_ROUNDS sets the number of
 * attempts per operation (default 150).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/bus1.h>

#include "kselftest_harness.h"
#include "bus1_util.h"

#define INV BUS1_HANDLE_INVALID
#define PTR(p) ((__u64)(uintptr_t)(p))
#define MAP_LEN (4UL << 20)
#define N1 ((__u64)0x100)
#define NPEERS 3

static int make_it_fail = -1;

/* Failures are injected into this task only while @on. */
static void inject(int on)
{
	/* The flag is only read at allocation time; this write allocates nothing. */
	if (pwrite(make_it_fail, on ? "1" : "0", 1, 0) != 1)
		abort();
}

/* One "used" value of @res from a line of a peer's fdinfo, -1 if missing. */
static long long fdinfo_used(int fd, const char *line, const char *res)
{
	return bus1_fdinfo_value(fd, line, res, NULL);
}

/* Every counter of the peers and their user, in a fixed order. */
struct counters {
	long long v[NPEERS][2][4];
};

static void counters(const int *fds, struct counters *c)
{
	static const char *const res[] = { "slices", "handles", "bytes", "fds" };
	int i, r;

	for (i = 0; i < NPEERS; i++)
		for (r = 0; r < 4; r++) {
			c->v[i][0][r] = fdinfo_used(fds[i], "bus1-limits:", res[r]);
			c->v[i][1][r] = fdinfo_used(fds[i], "bus1-user:", res[r]);
		}
}

FIXTURE(fault) {
	int fd[NPEERS];
	const uint8_t *map[NPEERS];
	__u64 to[NPEERS];	/* peer 0's handles to the others' node N1 */
	int devnull;
	struct counters base;
	unsigned long injected, attempts;
	int rounds;
};

FIXTURE_SETUP(fault)
{
	int j;

	memset(self->fd, -1, sizeof(self->fd));
	if (!bus1_fi_available("/proc/self/make-it-fail"))
		SKIP(return, "no failslab/fail_page_alloc with a stack trace filter");
	ASSERT_EQ(0, bus1_fi_setup(30));
	make_it_fail = open("/proc/self/make-it-fail", O_WRONLY | O_CLOEXEC);
	ASSERT_LE(0, make_it_fail);

	for (j = 0; j < NPEERS; j++) {
		self->fd[j] = bus1_peer_new();
		ASSERT_LE(0, self->fd[j]);
		self->map[j] = mmap(NULL, MAP_LEN, PROT_READ, MAP_SHARED, self->fd[j], 0);
		ASSERT_NE(MAP_FAILED, self->map[j]);
	}
	for (j = 1; j < NPEERS; j++) {
		struct bus1_cmd_handle_transfer t = {
			.src_handle = N1, .dst_fd = (__u64)self->fd[0], .dst_handle = INV,
		};

		ASSERT_EQ(0, ioctl(self->fd[j], BUS1_CMD_HANDLE_TRANSFER, &t));
		self->to[j] = t.dst_handle;
	}
	self->devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, self->devnull);
	counters(self->fd, &self->base);
	self->rounds = getenv("BUS1_FAULT_ROUNDS") ? atoi(getenv("BUS1_FAULT_ROUNDS")) : 150;
}

/*
 * Each case runs BUS1_FAULT_ROUNDS (150) rounds. Its timeout is five times the
 * longest it took on the debug kernel under QEMU TCG on a loaded host (see
 * Documentation/bus1/testing.rst, "Timeouts"): up to 40 s.
 */

FIXTURE_TEARDOWN(fault)
{
	int j;

	if (make_it_fail >= 0)
		inject(0);
	bus1_fi_reset();
	for (j = 0; j < NPEERS; j++)
		if (self->fd[j] >= 0)
			close(self->fd[j]);
}

/* Records the outcome of an injected attempt; fails on anything but ENOMEM. */
#define OUTCOME(_r) ({							\
	int __r = (_r), __e = errno;					\
	self->attempts++;						\
	if (__r) {							\
		ASSERT_EQ(ENOMEM, __e) TH_LOG("%s: errno %d", #_r, __e);	\
		self->injected++;					\
	}								\
	__r;								\
})

#define ASSERT_BASELINE() do {						\
	struct counters __c;						\
	int __p, __k, __r;						\
									\
	counters(self->fd, &__c);					\
	for (__p = 0; __p < NPEERS; __p++)				\
		for (__k = 0; __k < 2; __k++)				\
			for (__r = 0; __r < 4; __r++)			\
				ASSERT_EQ(self->base.v[__p][__k][__r],	\
					  __c.v[__p][__k][__r])		\
					TH_LOG("peer %d %s resource %d changed",	\
					       __p, __k ? "user" : "peer", __r);	\
} while (0)

static int recv_one(int fd, struct bus1_cmd_recv *r)
{
	return bus1_recv(fd, BUS1_RECV_FLAG_INSTALL_FDS, MAP_LEN, r);
}

/* Consumes a received data message: checks it, releases its slice, fd and handle. */
static void consume(struct __test_metadata *_metadata, int fd, const uint8_t *map,
		    struct bus1_cmd_recv *r, __u64 n_bytes, int with_cargo)
{
	const __u64 *h;
	const int *fds;

	ASSERT_EQ((__u64)BUS1_MSG_DATA, r->msg.type);
	ASSERT_EQ(n_bytes, r->msg.n_bytes);
	if (with_cargo) {
		ASSERT_EQ(1ULL, r->msg.n_handles);
		ASSERT_EQ(1ULL, r->msg.n_fds);
		h = (const __u64 *)(map + r->msg.offset + ((n_bytes + 7) & ~7ULL));
		fds = (const int *)(h + 1);
		ASSERT_NE(INV, h[0]);
		ASSERT_LE(0, fcntl(fds[0], F_GETFD));
		close(fds[0]);
		ASSERT_EQ(0, ioctl(fd, BUS1_CMD_HANDLE_RELEASE, &h[0]));
	}
	ASSERT_EQ(0, ioctl(fd, BUS1_CMD_SLICE_RELEASE, &r->msg.offset));
}

/* Destroys peer 0's node @id, created on the fly by a completed send. */
static int destroy(int fd, __u64 id)
{
	return bus1_destroy_node(fd, id, BUS1_NODES_DESTROY_FLAG_RELEASE_HANDLES);
}

/* Drains @fd's queue of notifications (NODE_DESTROY of carried nodes). */
static void drain_notifications(struct __test_metadata *_metadata, int fd)
{
	struct bus1_cmd_recv r;

	while (recv_one(fd, &r) == 0)
		ASSERT_NE((__u64)BUS1_MSG_DATA, r.msg.type) TH_LOG("unexpected data message");
}

/* SEND to one or two destinations, with a new node and a file: all or nothing. */
static void send_rounds(struct __test_metadata *_metadata, FIXTURE_DATA(fault) *self, int n_dst)
{
	uint8_t payload[200];
	struct iovec v = { .iov_base = payload, .iov_len = sizeof(payload) };
	__u64 dst[2] = { self->to[1], self->to[2] };
	struct bus1_cmd_send s = {
		.ptr_destinations = PTR(dst),
		.n_destinations = (__u64)n_dst,
		.ptr_vecs = PTR(&v),
		.n_vecs = 1,
		.ptr_fds = PTR(&self->devnull),
		.n_fds = 1,
		.n_handles = 1,
	};
	struct bus1_cmd_recv r;
	int i, j, ret;

	/* A send allocates a lot: a lower rate lets some complete. */
	bus1_fi_set_all("probability", "10");
	memset(payload, 0x5a, sizeof(payload));
	for (i = 0; i < self->rounds; i++) {
		__u64 node = (__u64)(0x1000 + i) << 3;

		s.ptr_handles = PTR(&node);
		inject(1);
		ret = ioctl(self->fd[0], BUS1_CMD_SEND, &s);
		inject(0);
		ret = OUTCOME(ret);
		for (j = 1; j <= n_dst; j++) {
			if (ret) {
				ASSERT_EQ(-EAGAIN, recv_one(self->fd[j], &r))
					TH_LOG("a failed send delivered to peer %d", j);
				continue;
			}
			ASSERT_EQ(0, recv_one(self->fd[j], &r));
			consume(_metadata, self->fd[j], self->map[j], &r, sizeof(payload), 1);
		}
		/* A node created for a failed send is undone: the baseline shows it. */
		if (!ret)
			ASSERT_EQ(0, destroy(self->fd[0], node));
		for (j = 0; j <= n_dst; j++)
			drain_notifications(_metadata, self->fd[j]);
		ASSERT_BASELINE();
	}
}

TEST_F_TIMEOUT(fault, send_unicast, 110)
{
	send_rounds(_metadata, self, 1);
	TH_LOG("%lu of %lu attempts failed", self->injected, self->attempts);
	ASSERT_LT(0UL, self->injected);
	ASSERT_LT(0UL, self->attempts - self->injected);
}

TEST_F_TIMEOUT(fault, send_multicast, 100)
{
	send_rounds(_metadata, self, 2);
	TH_LOG("%lu of %lu attempts failed", self->injected, self->attempts);
	ASSERT_LT(0UL, self->injected);
	ASSERT_LT(0UL, self->attempts - self->injected);
}

/* A failed RECV leaves the message queued, whole. */
TEST_F_TIMEOUT(fault, recv_keeps_message, 30)
{
	uint8_t payload[100];
	struct iovec v = { .iov_base = payload, .iov_len = sizeof(payload) };
	__u64 node = 0x2000 << 3;
	struct bus1_cmd_send s = {
		.ptr_destinations = PTR(&self->to[1]),
		.n_destinations = 1,
		.ptr_vecs = PTR(&v),
		.n_vecs = 1,
		.ptr_handles = PTR(&node),
		.n_handles = 1,
		.ptr_fds = PTR(&self->devnull),
		.n_fds = 1,
	};
	struct bus1_cmd_recv r;
	int i, ret;

	for (i = 0; i < self->rounds; i++) {
		ASSERT_EQ(0, ioctl(self->fd[0], BUS1_CMD_SEND, &s));
		inject(1);
		ret = recv_one(self->fd[1], &r);
		inject(0);
		errno = -ret;
		if (OUTCOME(ret ? -1 : 0))
			ASSERT_EQ(0, recv_one(self->fd[1], &r)) TH_LOG("message lost by a failed RECV");
		consume(_metadata, self->fd[1], self->map[1], &r, sizeof(payload), 1);
		ASSERT_EQ(-EAGAIN, recv_one(self->fd[1], &r));
	}
	ASSERT_EQ(0, destroy(self->fd[0], node));
	drain_notifications(_metadata, self->fd[0]);
	drain_notifications(_metadata, self->fd[1]);
	ASSERT_BASELINE();
	TH_LOG("%lu of %lu attempts failed", self->injected, self->attempts);
	ASSERT_LT(0UL, self->injected);
}

/* A failed TRANSFER creates neither node nor handle. */
TEST_F_TIMEOUT(fault, transfer_all_or_nothing, 110)
{
	int i, ret;

	for (i = 0; i < self->rounds; i++) {
		__u64 node = (__u64)(0x3000 + i) << 3;
		struct bus1_cmd_handle_transfer t = {
			.src_handle = node, .dst_fd = (__u64)self->fd[1], .dst_handle = INV,
		};

		inject(1);
		ret = ioctl(self->fd[0], BUS1_CMD_HANDLE_TRANSFER, &t);
		inject(0);
		/* Neither node nor handle is left after a failure: the baseline shows it. */
		if (OUTCOME(ret)) {
			ASSERT_EQ(INV, t.dst_handle);
		} else {
			ASSERT_NE(INV, t.dst_handle);
			ASSERT_EQ(0, ioctl(self->fd[1], BUS1_CMD_HANDLE_RELEASE, &t.dst_handle));
			ASSERT_EQ(0, destroy(self->fd[0], node));
		}
		drain_notifications(_metadata, self->fd[0]);
		drain_notifications(_metadata, self->fd[1]);
		ASSERT_BASELINE();
	}
	TH_LOG("%lu of %lu attempts failed", self->injected, self->attempts);
	ASSERT_LT(0UL, self->injected);
}

/* A failed NODES_DESTROY leaves the node live; a completed one notifies holders. */
TEST_F_TIMEOUT(fault, destroy_all_or_nothing, 100)
{
	struct bus1_cmd_recv r;
	int i, ret;

	for (i = 0; i < self->rounds; i++) {
		__u64 node = (__u64)(0x4000 + i) << 3, in1;
		struct bus1_cmd_handle_transfer t = {
			.src_handle = node, .dst_fd = (__u64)self->fd[1], .dst_handle = INV,
		};
		struct bus1_cmd_nodes_destroy d = {
			.flags = BUS1_NODES_DESTROY_FLAG_RELEASE_HANDLES,
			.ptr_nodes = PTR(&node),
			.n_nodes = 1,
		};

		ASSERT_EQ(0, ioctl(self->fd[0], BUS1_CMD_HANDLE_TRANSFER, &t));
		in1 = t.dst_handle;
		inject(1);
		ret = ioctl(self->fd[0], BUS1_CMD_NODES_DESTROY, &d);
		inject(0);
		if (OUTCOME(ret)) {
			/* Still live: peer 1 can send to it, and no notification came. */
			struct bus1_cmd_send s = {
				.ptr_destinations = PTR(&in1), .n_destinations = 1,
			};

			ASSERT_EQ(-EAGAIN, recv_one(self->fd[1], &r));
			ASSERT_EQ(0, ioctl(self->fd[1], BUS1_CMD_SEND, &s));
			ASSERT_EQ(0, recv_one(self->fd[0], &r));
			consume(_metadata, self->fd[0], self->map[0], &r, 0, 0);
			ASSERT_EQ(0, destroy(self->fd[0], node));
		}
		ASSERT_EQ(0, recv_one(self->fd[1], &r));
		ASSERT_EQ((__u64)BUS1_MSG_NODE_DESTROY, r.msg.type);
		ASSERT_EQ(in1, r.msg.destination);
		ASSERT_EQ(0, ioctl(self->fd[1], BUS1_CMD_HANDLE_RELEASE, &in1));
		drain_notifications(_metadata, self->fd[0]);
		drain_notifications(_metadata, self->fd[1]);
		ASSERT_BASELINE();
	}
	TH_LOG("%lu of %lu attempts failed", self->injected, self->attempts);
	ASSERT_LT(0UL, self->injected);
}

/* A peer that owns node E, held by peers 1 and 2, and holds the only handle to peer 1's node M. */
struct owner_peer {
	int fd;
	__u64 e_in1, e_in2, m;
};

static __u64 transfer(struct __test_metadata *_metadata, int from, __u64 id, int to)
{
	__u64 h;

	EXPECT_EQ(0, bus1_xfer(from, id, to, &h));
	EXPECT_NE(INV, h);
	return h;
}

static void owner_setup(struct __test_metadata *_metadata, FIXTURE_DATA(fault) *self,
			struct owner_peer *o, int i)
{
	__u64 e = (__u64)(0x5000 + i) << 3;

	o->fd = bus1_peer_new();
	ASSERT_LE(0, o->fd);
	o->e_in1 = transfer(_metadata, o->fd, e, self->fd[1]);
	o->e_in2 = transfer(_metadata, o->fd, e, self->fd[2]);
	o->m = (__u64)(0x6000 + i) << 3;
	transfer(_metadata, self->fd[1], o->m, o->fd);
}

/*
 * After the owner peer's flush: peers 1 and 2 got NODE_DESTROY for E and peer
 * 1 NODE_RELEASE for M, E is dead, and once everything is released and the
 * owner closed, every counter is back at its baseline.
 */
static void owner_check_flushed(struct __test_metadata *_metadata, FIXTURE_DATA(fault) *self,
				struct owner_peer *o)
{
	struct bus1_cmd_send s = { .ptr_destinations = PTR(&o->e_in1), .n_destinations = 1 };
	int destroy1 = 0, release1 = 0, k;
	struct bus1_cmd_recv r;

	for (k = 0; k < 2; k++) {
		ASSERT_EQ(0, recv_one(self->fd[1], &r)) TH_LOG("peer 1 missed a notification");
		if (r.msg.type == BUS1_MSG_NODE_DESTROY && r.msg.destination == o->e_in1)
			destroy1++;
		else if (r.msg.type == BUS1_MSG_NODE_RELEASE && r.msg.destination == o->m)
			release1++;
	}
	ASSERT_EQ(1, destroy1);
	ASSERT_EQ(1, release1);
	ASSERT_EQ(0, recv_one(self->fd[2], &r)) TH_LOG("peer 2 missed NODE_DESTROY");
	ASSERT_EQ((__u64)BUS1_MSG_NODE_DESTROY, r.msg.type);
	ASSERT_EQ(o->e_in2, r.msg.destination);
	/* E is marked destroyed: nothing reaches its former owner. */
	ASSERT_NE(0, ioctl(self->fd[1], BUS1_CMD_SEND, &s));
	if (o->fd >= 0)
		ASSERT_EQ(-EAGAIN, recv_one(o->fd, &r));
	ASSERT_EQ(0, ioctl(self->fd[1], BUS1_CMD_HANDLE_RELEASE, &o->e_in1));
	ASSERT_EQ(0, ioctl(self->fd[2], BUS1_CMD_HANDLE_RELEASE, &o->e_in2));
	ASSERT_EQ(0, destroy(self->fd[1], o->m));
	drain_notifications(_metadata, self->fd[1]);
	drain_notifications(_metadata, self->fd[2]);
	if (o->fd >= 0)
		close(o->fd);
	ASSERT_BASELINE();
}

/* Failures injected into every allocation (failslab counts them down). */
static long fi_times(void)
{
	char buf[32] = "";
	ssize_t n;
	int f = open("/sys/kernel/debug/failslab/times", O_RDONLY | O_CLOEXEC);

	if (f < 0)
		return -1;
	n = read(f, buf, sizeof(buf) - 1);
	close(f);
	return n > 0 ? atol(buf) : -1;
}

/*
 * Proves the injection is live: opening peers under injection fails with
 * ENOMEM at least once (every open allocates several objects).
 */
static int injection_is_live(void)
{
	int i, failed = 0;

	for (i = 0; i < 200 && !failed; i++) {
		int fd;

		inject(1);
		fd = bus1_peer_new();
		inject(0);
		if (fd < 0)
			failed = errno == ENOMEM;
		else
			close(fd);
	}
	return failed;
}

/*
 * PEER_RESET(FLUSH) allocates nothing (holders keep the memory of their
 * NODE_DESTROY, nodes that of their NODE_RELEASE), so under injection it
 * always completes, and notifies everyone.
 */
TEST_F_TIMEOUT(fault, reset_flush_never_fails, 200)
{
	struct bus1_cmd_peer_reset q = {
		.flags = BUS1_PEER_RESET_FLAG_FLUSH,
		.peer_flags = (__u64)-1,
		.max_slices = (__u32)-1, .max_handles = (__u32)-1,
		.max_inflight_bytes = (__u32)-1, .max_inflight_fds = (__u32)-1,
	};
	int i, ret;

	for (i = 0; i < self->rounds; i++) {
		struct owner_peer o;

		owner_setup(_metadata, self, &o, i);
		ASSERT_EQ(2, fdinfo_used(o.fd, "bus1-limits:", "handles"));
		inject(1);
		ret = ioctl(o.fd, BUS1_CMD_PEER_RESET, &q);
		inject(0);
		ASSERT_EQ(0, ret) TH_LOG("round %d: errno %d", i, errno);
		ASSERT_EQ(0, fdinfo_used(o.fd, "bus1-limits:", "handles"));
		owner_check_flushed(_metadata, self, &o);
	}
	ASSERT_TRUE(injection_is_live());
}

/* Close allocates nothing either: under injection everyone is notified. */
TEST_F_TIMEOUT(fault, close_notifies_everyone, 190)
{
	long before, injected = 0;
	int i;

	for (i = 0; i < self->rounds; i++) {
		struct owner_peer o;

		owner_setup(_metadata, self, &o, i);
		/* A finite count, so failslab counts down what it injects. */
		ASSERT_EQ(0, bus1_fi_put(bus1_fi_dirs[0], "times", "1000000"));
		before = fi_times();
		inject(1);
		close(o.fd);
		inject(0);
		injected += before - fi_times();
		ASSERT_EQ(0, bus1_fi_put(bus1_fi_dirs[0], "times", "-1"));
		o.fd = -1;
		owner_check_flushed(_metadata, self, &o);
	}
	TH_LOG("%ld slab allocations failed during %d closes", injected, self->rounds);
	ASSERT_TRUE(injection_is_live());
}

/*
 * Opening and mapping a peer fail cleanly; what opened works. An open and a
 * mapping make many allocations, each failing with the fixture's probability,
 * so a round without a failure is rare: after the fixture's rounds, the test
 * goes on until one round got through (bounded by 100 times the rounds).
 */
TEST_F_TIMEOUT(fault, open_and_mmap, 300)
{
	int i, fd, ok = 0;

	for (i = 0; i < self->rounds || (!ok && i < 100 * self->rounds); i++) {
		void *m;

		inject(1);
		fd = bus1_peer_new();
		inject(0);
		if (OUTCOME(fd < 0 ? -1 : 0))
			continue;
		inject(1);
		m = mmap(NULL, MAP_LEN, PROT_READ, MAP_SHARED, fd, 0);
		inject(0);
		if (!OUTCOME(m == MAP_FAILED ? -1 : 0)) {
			struct bus1_cmd_peer_reset q = { 0 };

			ASSERT_EQ(0, ioctl(fd, BUS1_CMD_PEER_QUERY, &q));
			munmap(m, MAP_LEN);
			ok++;
		}
		close(fd);
	}
	ASSERT_BASELINE();
	TH_LOG("%lu of %lu attempts failed", self->injected, self->attempts);
	ASSERT_LT(0UL, self->injected);
	ASSERT_LT(0, ok);
}

TEST_HARNESS_MAIN
