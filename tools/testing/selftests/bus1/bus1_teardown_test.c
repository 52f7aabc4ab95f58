// SPDX-License-Identifier: GPL-2.0
/*
 * bus1 teardown and lifetime: peers closed while others send to them,
 * transfer to them or destroy their nodes; processes SIGKILLed in the middle
 * of operations; reference cycles through in-flight messages. Every
 * operation that races with a teardown fails only with the documented errno,
 * and once every peer is closed the user's accounting is gone (debugfs lists
 * no bus1 user for root). The runner's kmemleak scan covers the memory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/bus1.h>

#include "kselftest_harness.h"
#include "bus1_util.h"

#define INV BUS1_HANDLE_INVALID
#define PTR(p) ((__u64)(uintptr_t)(p))
#define MAP_LEN (4UL << 20)
#define NODE(i) ((__u64)(0x100 + (i)) << 3)

/* @from's handle to @owner's node @node (created on the fly). */
static __u64 handle_to(int owner, __u64 node, int from)
{
	__u64 h;

	return bus1_xfer(owner, node, from, &h) ? INV : h;
}

static int send_to(int fd, const __u64 *dst, int n, const __u64 *handles, int n_handles, int file)
{
	char buf[64] = "teardown";

	return bus1_send(fd, BUS1_SEND_FLAG_CONTINUE, dst, n, NULL, buf, sizeof(buf), handles,
			 n_handles, &file, file >= 0 ? 1 : 0);
}

/* Whether debugfs lists root as a bus1 user; -1 without debugfs. */
static int root_listed(void)
{
	return bus1_user_listed(0);
}

/*
 * Root's accounting is gone once every peer is closed (the last peer may be
 * freed a little later, from RCU). No deadline of its own: only the case's
 * harness timeout bounds the wait, so a slow host cannot fail it; after a
 * second it says what it is waiting for.
 */
#define ASSERT_ALL_GIVEN_BACK() do {					\
	int __i, __l;							\
									\
	for (__i = 0; (__l = root_listed()) > 0; __i++) {		\
		if (__i == 100)						\
			TH_LOG("root is still accounted 1 s after every peer closed; waiting"); \
		usleep(10000);						\
	}								\
	ASSERT_EQ(0, __l) TH_LOG("no bus1 users file in debugfs");	\
} while (0)

/*
 * Each case's timeout is five times the longest it took on the debug kernel
 * (KASAN, lockdep) under TCG on a loaded host, at least the harness default
 * of 30 s (Documentation/bus1/testing.rst, "Timeouts"): 49 s
 * (handle_received_during_destruction), 37 s (close_while_sending), 17 s,
 * 7.2 s, 6.3 s and 5.7 s.
 */
FIXTURE(td) {};
FIXTURE_SETUP(td) {}
FIXTURE_TEARDOWN(td) {}

static int wait_ok(pid_t pid)
{
	int st;

	if (waitpid(pid, &st, 0) != pid)
		return 0;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/*
 * Senders keep sending (unicast and multicast, with handles and a file) to a
 * receiver that is closed under them; only ESHUTDOWN-class errors appear.
 */
TEST_F_TIMEOUT(td, close_while_sending, 190)
{
	int round;

	ASSERT_ALL_GIVEN_BACK();
	for (round = 0; round < 6; round++) {
		int rx = bus1_peer_new(), other = bus1_peer_new(), tx[3], i;
		pid_t pid[3];

		ASSERT_LE(0, rx);
		ASSERT_LE(0, other);
		for (i = 0; i < 3; i++) {
			tx[i] = bus1_peer_new();
			ASSERT_LE(0, tx[i]);
		}
		for (i = 0; i < 3; i++) {
			__u64 dst[2] = { handle_to(rx, NODE(0), tx[i]), handle_to(other, NODE(0), tx[i]) };

			ASSERT_NE(INV, dst[0]);
			ASSERT_NE(INV, dst[1]);
			pid[i] = fork();
			ASSERT_LE(0, pid[i]);
			if (!pid[i]) {
				__u64 mine = NODE(1);
				int n, r, devnull = open("/dev/null", O_RDONLY);

				close(rx);
				for (n = 0; n < 500; n++) {
					r = send_to(tx[i], dst, 1 + n % 2, &mine, n % 3 == 0, n % 5 ? -1 : devnull);
					if (r && r != -ESHUTDOWN && r != -EHOSTUNREACH && r != -EDQUOT &&
					    r != -EXFULL)
						_exit(1);
				}
				_exit(0);
			}
		}
		usleep(1000 * (round * 7 % 30));
		close(rx);
		for (i = 0; i < 3; i++)
			EXPECT_TRUE(wait_ok(pid[i])) TH_LOG("a sender saw an undocumented errno");
		for (i = 0; i < 3; i++)
			close(tx[i]);
		close(other);
	}
	ASSERT_ALL_GIVEN_BACK();
}

/* Transfers to a peer that is being closed, and nodes destroyed while sent to. */
TEST_F_TIMEOUT(td, close_and_destroy_while_transferring, 90)
{
	int round;

	ASSERT_ALL_GIVEN_BACK();
	for (round = 0; round < 6; round++) {
		int owner = bus1_peer_new(), dst = bus1_peer_new(), user = bus1_peer_new(), i;
		pid_t pid[2];

		ASSERT_LE(0, owner);
		ASSERT_LE(0, dst);
		ASSERT_LE(0, user);
		pid[0] = fork();
		ASSERT_LE(0, pid[0]);
		if (!pid[0]) {
			/* Transfers into @dst, which the parent closes. */
			for (i = 0; i < 800; i++) {
				struct bus1_cmd_handle_transfer t = {
					.src_handle = NODE(i % 64), .dst_fd = (__u64)dst, .dst_handle = INV,
				};

				if (ioctl(owner, BUS1_CMD_HANDLE_TRANSFER, &t) && errno != ESHUTDOWN &&
				    errno != EDQUOT && errno != ESTALE)
					_exit(1);
			}
			_exit(0);
		}
		pid[1] = fork();
		ASSERT_LE(0, pid[1]);
		if (!pid[1]) {
			/* Destroys the nodes @user sends to. */
			for (i = 0; i < 64; i++) {
				__u64 id = NODE(100 + i);
				struct bus1_cmd_nodes_destroy d = {
					.ptr_nodes = PTR(&id), .n_nodes = 1,
					.flags = BUS1_NODES_DESTROY_FLAG_RELEASE_HANDLES,
				};

				usleep(200);
				if (ioctl(owner, BUS1_CMD_NODES_DESTROY, &d) && errno != ESTALE &&
				    errno != ENXIO)
					_exit(1);
			}
			_exit(0);
		}
		for (i = 0; i < 64; i++) {
			__u64 h = handle_to(owner, NODE(100 + i), user);

			/* Already destroyed by the child: no handle, or an invalid one. */
			if (h != INV) {
				int r = send_to(user, &h, 1, NULL, 0, -1);

				EXPECT_TRUE(r == 0 || r == -EHOSTUNREACH || r == -ESHUTDOWN)
					TH_LOG("send to a dying node: %d", r);
			}
		}
		usleep(1000 * (round % 5));
		/* The child holds @dst open too: disconnect shuts it down regardless. */
		EXPECT_EQ(0, ioctl(dst, BUS1_CMD_PEER_DISCONNECT, 0));
		close(dst);
		EXPECT_TRUE(wait_ok(pid[0])) TH_LOG("transfer to a closing peer: undocumented errno");
		EXPECT_TRUE(wait_ok(pid[1])) TH_LOG("NODES_DESTROY: undocumented errno");
		close(owner);
		close(user);
	}
	ASSERT_ALL_GIVEN_BACK();
}

/*
 * Processes doing everything at once are SIGKILLed at random points; what
 * they held (handles, queued messages with handles and files, pools, mapped
 * or not) is all given back.
 */
TEST_F_TIMEOUT(td, sigkill_mid_operation, 40)
{
	unsigned int seed = (unsigned int)time(NULL);
	int round;

	ASSERT_ALL_GIVEN_BACK();
	TH_LOG("seed %u", seed);
	for (round = 0; round < 12; round++) {
		int a = bus1_peer_new(), b = bus1_peer_new(), i;
		__u64 ab = handle_to(b, NODE(0), a), ba = handle_to(a, NODE(0), b);
		pid_t pid[2];

		ASSERT_NE(INV, ab);
		ASSERT_NE(INV, ba);
		for (i = 0; i < 2; i++) {
			pid[i] = fork();
			ASSERT_LE(0, pid[i]);
			if (!pid[i]) {
				int me = i ? b : a, devnull = open("/dev/null", O_RDONLY);
				__u64 to = i ? ba : ab;
				unsigned int s = seed + round * 2 + i;

				if (i)
					mmap(NULL, MAP_LEN, PROT_READ, MAP_SHARED, me, 0);
				for (;;) {
					struct bus1_cmd_recv r = {
						.flags = BUS1_RECV_FLAG_INSTALL_FDS, .max_offset = MAP_LEN,
					};
					__u64 node = NODE(10 + rand_r(&s) % 50);

					switch (rand_r(&s) % 4) {
					case 0:
						send_to(me, &to, 1, &node, 1, devnull);
						break;
					case 1:
						send_to(me, &to, 1, &to, 1, -1);
						break;
					case 2:
						if (!ioctl(me, BUS1_CMD_RECV, &r) && r.msg.type == BUS1_MSG_DATA)
							ioctl(me, BUS1_CMD_SLICE_RELEASE, &r.msg.offset);
						break;
					default:
						handle_to(me, node, i ? a : b);
						break;
					}
				}
			}
		}
		/* The parent's copies go first: the children hold the last references. */
		close(a);
		close(b);
		usleep(1000 * (5 + rand_r(&seed) % 40));
		for (i = 0; i < 2; i++) {
			kill(pid[i], SIGKILL);
			waitpid(pid[i], NULL, 0);
		}
	}
	ASSERT_ALL_GIVEN_BACK();
}

/*
 * Two peers hold handles to each other's nodes, and messages in their queues
 * carry those handles and the peers' own files' neighbours: closing both
 * breaks every cycle.
 */
TEST_F_TIMEOUT(td, cycles_through_queues, 40)
{
	int round;

	ASSERT_ALL_GIVEN_BACK();
	for (round = 0; round < 20; round++) {
		int a = bus1_peer_new(), b = bus1_peer_new(), i;
		__u64 ab = handle_to(b, NODE(0), a), ba = handle_to(a, NODE(0), b);
		__u64 carry_a = NODE(1), carry_b = NODE(1);

		ASSERT_NE(INV, ab);
		ASSERT_NE(INV, ba);
		for (i = 0; i < 20; i++) {
			ASSERT_EQ(0, send_to(a, &ab, 1, &carry_a, 1, -1));
			ASSERT_EQ(0, send_to(b, &ba, 1, &carry_b, 1, -1));
		}
		/* Either order of closing. */
		if (round % 2) {
			close(a);
			close(b);
		} else {
			close(b);
			close(a);
		}
	}
	ASSERT_ALL_GIVEN_BACK();
}

/* Polls @arg (a peer fd) until it reports something other than POLLOUT. */
static void *poll_thread(void *arg)
{
	struct pollfd p = { .fd = *(int *)arg, .events = POLLIN };
	long r = 0;

	while (poll(&p, 1, -1) == 1 && !(p.revents & (POLLIN | POLLHUP)))
		;
	r = p.revents;
	return (void *)r;
}

/*
 * The peer's poll wait queue outlives every registration on it: epoll
 * entries (also through a dup) and a thread blocked in poll() while the peer
 * is disconnected and closed, with the peer object itself kept alive by
 * another peer's handle to its node. KASAN reports any use after free.
 */
TEST_F_TIMEOUT(td, poll_across_close, 30)
{
	int round;

	for (round = 0; round < 50; round++) {
		int a = bus1_peer_new(), b = bus1_peer_new(), a2, ep, ep2, n;
		__u64 ab = handle_to(b, NODE(0), a), ba = handle_to(a, NODE(0), b);
		struct epoll_event ev = { .events = EPOLLIN }, out[4];
		struct bus1_cmd_send s = { .n_destinations = 1 };
		pthread_t t;
		void *res;

		ASSERT_NE(INV, ab);
		ASSERT_NE(INV, ba);
		a2 = dup(a);
		ep = epoll_create1(EPOLL_CLOEXEC);
		ep2 = epoll_create1(EPOLL_CLOEXEC);
		ASSERT_LE(0, a2);
		ASSERT_LE(0, ep);
		ASSERT_LE(0, ep2);
		ev.data.fd = a;
		ASSERT_EQ(0, epoll_ctl(ep, EPOLL_CTL_ADD, a, &ev));
		ev.data.fd = b;
		ASSERT_EQ(0, epoll_ctl(ep, EPOLL_CTL_ADD, b, &ev));
		ev.data.fd = a2;
		ASSERT_EQ(0, epoll_ctl(ep2, EPOLL_CTL_ADD, a2, &ev));

		/* A message for b wakes ep for b only. */
		ASSERT_EQ(0, send_to(a, &ab, 1, NULL, 0, -1));
		n = epoll_wait(ep, out, 4, 5000);
		ASSERT_EQ(1, n);
		ASSERT_EQ(b, out[0].data.fd);
		ASSERT_EQ(0, epoll_wait(ep2, out, 4, 0));

		/* Disconnecting a wakes a blocked poller with POLLHUP, and both epolls. */
		ASSERT_EQ(0, pthread_create(&t, NULL, poll_thread, &a));
		usleep(round % 5 * 1000);
		ASSERT_EQ(0, ioctl(a, BUS1_CMD_PEER_DISCONNECT, 0));
		ASSERT_EQ(0, pthread_join(t, &res));
		ASSERT_NE(0, (long)res & POLLHUP);
		ASSERT_EQ(1, epoll_wait(ep2, out, 4, 5000));

		/* Closing a removes its epoll entries; b's handle keeps the peer object alive. */
		if (round % 2) {
			close(a);
			close(a2);
		} else {
			close(a2);
			close(a);
		}
		ASSERT_EQ(0, epoll_wait(ep2, out, 4, 0));
		n = epoll_wait(ep, out, 4, 0);
		ASSERT_EQ(1, n);
		ASSERT_EQ(b, out[0].data.fd);
		/* a's node went with a: its owner is closed. */
		s.ptr_destinations = PTR(&ba);
		ASSERT_EQ(-1, ioctl(b, BUS1_CMD_SEND, &s));
		ASSERT_EQ(ESHUTDOWN, errno);
		close(ep2);
		close(b);
		ASSERT_EQ(0, epoll_wait(ep, out, 4, 0));
		close(ep);
	}
	ASSERT_ALL_GIVEN_BACK();
}

struct destroy_arg {
	int fd;
	__u64 id;
	int ret;
};

static void *destroy_thread(void *p)
{
	struct destroy_arg *a = p;

	a->ret = bus1_destroy_node(a->fd, a->id, BUS1_NODES_DESTROY_FLAG_RELEASE_HANDLES);
	return NULL;
}

static int recv_on(int fd, struct bus1_cmd_recv *r)
{
	return bus1_recv(fd, 0, MAP_LEN, r);
}

/*
 * A handle carried by a message ordered before its node's destruction is
 * valid, also when it is received while the destroying transaction is still
 * staging the notifications of its many holders, before the node carries its
 * destruction timestamp. The receiver then gets exactly one NODE_DESTROY for
 * it. The test sees the destruction start when the owner's handle count drops
 * (RELEASE_HANDLES releases it before the holders are notified) and receives
 * right then, inside that window.
 */
TEST_F_TIMEOUT(td, handle_received_during_destruction, 250)
{
	enum { HOLDERS = 500, ROUNDS = 20 };
	int o = bus1_peer_new(), r = bus1_peer_new(), h[HOLDERS], i, round;
	__u64 o_rn = handle_to(r, NODE(0), o), h_ids[HOLDERS];
	const uint8_t *map;

	ASSERT_NE(INV, o_rn);
	map = mmap(NULL, MAP_LEN, PROT_READ, MAP_SHARED, r, 0);
	ASSERT_NE(MAP_FAILED, map);
	for (i = 0; i < HOLDERS; i++) {
		h[i] = bus1_peer_new();
		ASSERT_LE(0, h[i]);
	}
	for (round = 0; round < ROUNDS; round++) {
		__u64 n = NODE(1 + round), hid;
		struct bus1_cmd_send s = {
			.ptr_destinations = PTR(&o_rn), .n_destinations = 1,
			.ptr_handles = PTR(&n), .n_handles = 1,
		};
		struct destroy_arg a = { .fd = o, .id = n };
		struct bus1_cmd_recv rv;
		long long before;
		pthread_t t;

		for (i = 0; i < HOLDERS; i++) {
			h_ids[i] = handle_to(o, n, h[i]);
			ASSERT_NE(INV, h_ids[i]);
		}
		ASSERT_EQ(0, ioctl(o, BUS1_CMD_SEND, &s));
		before = bus1_fdinfo_value(o, "bus1-limits:", "handles", NULL);
		ASSERT_LT(0, before);
		ASSERT_EQ(0, pthread_create(&t, NULL, destroy_thread, &a));
		while (bus1_fdinfo_value(o, "bus1-limits:", "handles", NULL) == before)
			;
		ASSERT_EQ(0, recv_on(r, &rv));
		ASSERT_EQ((__u64)BUS1_MSG_DATA, rv.msg.type);
		ASSERT_EQ(1ULL, rv.msg.n_handles);
		hid = *(const __u64 *)(map + rv.msg.offset);
		ASSERT_NE(INV, hid) TH_LOG("round %d: sent before the destruction, received invalid",
					   round);
		ASSERT_EQ(0, pthread_join(t, NULL));
		ASSERT_EQ(0, a.ret);
		ASSERT_EQ(0, ioctl(r, BUS1_CMD_SLICE_RELEASE, &rv.msg.offset));
		ASSERT_EQ(0, recv_on(r, &rv));
		ASSERT_EQ((__u64)BUS1_MSG_NODE_DESTROY, rv.msg.type);
		ASSERT_EQ(hid, rv.msg.destination);
		ASSERT_EQ(-EAGAIN, recv_on(r, &rv));
		ASSERT_EQ(0, ioctl(r, BUS1_CMD_HANDLE_RELEASE, &hid));
		for (i = 0; i < HOLDERS; i++) {
			ASSERT_EQ(0, recv_on(h[i], &rv));
			ASSERT_EQ((__u64)BUS1_MSG_NODE_DESTROY, rv.msg.type);
			ASSERT_EQ(0, ioctl(h[i], BUS1_CMD_HANDLE_RELEASE, &h_ids[i]));
		}
	}
	for (i = 0; i < HOLDERS; i++)
		close(h[i]);
	munmap((void *)map, MAP_LEN);
	close(r);
	close(o);
	ASSERT_ALL_GIVEN_BACK();
}

TEST_HARNESS_MAIN
