// SPDX-License-Identifier: GPL-2.0
/*
 * bus1 object-model ABI tests: peers, nodes, handles and notifications.
 *
 * Covers PEER_DISCONNECT, PEER_QUERY, PEER_RESET, HANDLE_RELEASE,
 * HANDLE_TRANSFER, NODES_DESTROY and RECV of NODE_DESTROY / NODE_RELEASE
 * notifications, alone and across several peers.
 *
 * Conventions used throughout:
 *  - N1, N2, ... are caller-chosen ("unmanaged") node IDs; using one that is
 *    not yet known creates a node owned by the caller.
 *  - RID(n) is the n-th kernel-assigned ID of a peer for a remote handle,
 *    i.e. (n << 3) | MANAGED | REMOTE; kernel IDs are never reused.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/bus1.h>

#include "kselftest_harness.h"
#include "bus1_util.h"

#define N1 ((__u64)0x100)
#define N2 ((__u64)0x200)
#define N3 ((__u64)0x300)
#define N4 ((__u64)0x400)
#define N5 ((__u64)0x500)

#define RID(n) ((((__u64)(n)) << 3) | BUS1_HANDLE_FLAG_MANAGED | BUS1_HANDLE_FLAG_REMOTE)
#define OID(n) ((((__u64)(n)) << 3) | BUS1_HANDLE_FLAG_MANAGED)

#define INV ((__u64)BUS1_HANDLE_INVALID)
#define ANY_OFFSET ((__u64)-1)	/* RECV max_offset: no limit */
#define SELF (-1)		/* dst_fd of the calling peer */
#define KEEP ((__u32)0xffffffff)	/* RESET: keep this limit */

#define POLL_IDLE (POLLOUT | POLLWRNORM)
#define POLL_READABLE (POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM)

/* --- helpers (all return 0 or -errno) ------------------------------------ */

static int query(int fd, struct bus1_cmd_peer_reset *q)
{
	memset(q, 0xa5, sizeof(*q));
	q->flags = 0;
	return bus1_errno(ioctl(fd, BUS1_CMD_PEER_QUERY, q));
}

static int set_max_handles(int fd, __u32 n)
{
	return bus1_reset(fd, 0, (__u64)-1, KEEP, n, KEEP, KEEP);
}

/* Receive one notification and check every field of it. */
#define ASSERT_NOTIFY(_fd, _type, _dest, _flags) do {				\
	struct bus1_cmd_recv __r;						\
	ASSERT_EQ(0, bus1_recv_poisoned((_fd), 0, ANY_OFFSET, &__r));		\
	ASSERT_EQ((__u64)(_type), __r.msg.type);				\
	ASSERT_EQ((__u64)(_dest), __r.msg.destination);				\
	ASSERT_EQ((__u64)(_flags), __r.msg.flags);				\
	ASSERT_EQ((__u64)BUS1_OFFSET_INVALID, __r.msg.offset);			\
	ASSERT_EQ((__u64)0, __r.msg.n_bytes);					\
	ASSERT_EQ((__u64)0, __r.msg.n_handles);					\
	ASSERT_EQ((__u64)0, __r.msg.n_fds);					\
} while (0)

#define ASSERT_DESTROY(_fd, _dest, _flags) \
	ASSERT_NOTIFY(_fd, BUS1_MSG_NODE_DESTROY, _dest, _flags)
#define ASSERT_RELEASE(_fd, _dest) \
	ASSERT_NOTIFY(_fd, BUS1_MSG_NODE_RELEASE, _dest, 0)

/*
 * Receive the two notifications of one transaction (same type), whose order
 * relative to each other is unspecified: the first carries CONTINUE, the
 * second does not, and together they name both destinations.
 */
#define ASSERT_NOTIFY_PAIR(_fd, _type, _d1, _d2) do {				\
	struct bus1_cmd_recv __p1, __p2;					\
	ASSERT_EQ(0, bus1_recv_poisoned((_fd), 0, ANY_OFFSET, &__p1));		\
	ASSERT_EQ((__u64)(_type), __p1.msg.type);				\
	ASSERT_EQ((__u64)BUS1_MSG_FLAG_CONTINUE, __p1.msg.flags);		\
	ASSERT_EQ((__u64)BUS1_OFFSET_INVALID, __p1.msg.offset);			\
	ASSERT_EQ(0, bus1_recv_poisoned((_fd), 0, ANY_OFFSET, &__p2));		\
	ASSERT_EQ((__u64)(_type), __p2.msg.type);				\
	ASSERT_EQ((__u64)0, __p2.msg.flags);					\
	ASSERT_EQ((__u64)BUS1_OFFSET_INVALID, __p2.msg.offset);			\
	ASSERT_TRUE((__p1.msg.destination == (_d1) &&				\
		     __p2.msg.destination == (_d2)) ||				\
		    (__p1.msg.destination == (_d2) &&				\
		     __p2.msg.destination == (_d1)));				\
} while (0)

#define ASSERT_EMPTY(_fd) do {							\
	struct bus1_cmd_recv __e;						\
	ASSERT_EQ(-EAGAIN, bus1_recv_poisoned((_fd), 0, ANY_OFFSET, &__e));	\
} while (0)

/* No peer of the fixture has anything left to receive. */
#define ASSERT_ALL_EMPTY(_self) do {						\
	ASSERT_EMPTY((_self)->a);						\
	ASSERT_EMPTY((_self)->b);						\
	ASSERT_EMPTY((_self)->c);						\
	ASSERT_EMPTY((_self)->d);						\
} while (0)

/* Transfer that must succeed and yield @_id. */
#define ASSERT_XFER(_fd, _src, _dst, _id) do {					\
	__u64 __h = 0;								\
	ASSERT_EQ(0, bus1_xfer((_fd), (_src), (_dst), &__h));			\
	ASSERT_EQ((__u64)(_id), __h);						\
} while (0)

/* --- fixture: four fresh peers ------------------------------------------- */

FIXTURE(peers) {
	int a, b, c, d;
};

FIXTURE_SETUP(peers)
{
	self->a = bus1_peer_new();
	self->b = bus1_peer_new();
	self->c = bus1_peer_new();
	self->d = bus1_peer_new();
	ASSERT_LE(0, self->a);
	ASSERT_LE(0, self->b);
	ASSERT_LE(0, self->c);
	ASSERT_LE(0, self->d);
}

FIXTURE_TEARDOWN(peers)
{
	bus1_peer_free(self->a, NULL, 0);
	bus1_peer_free(self->b, NULL, 0);
	bus1_peer_free(self->c, NULL, 0);
	bus1_peer_free(self->d, NULL, 0);
}

/* --- PEER_DISCONNECT ------------------------------------------------------ */

/* The argument must be 0; anything else is EINVAL and leaves the peer alive. */
TEST_F(peers, disconnect_arg_must_be_zero)
{
	struct bus1_cmd_peer_reset q;
	__u64 v = 0;

	ASSERT_EQ(-1, ioctl(self->a, BUS1_CMD_PEER_DISCONNECT, 1UL));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(-1, ioctl(self->a, BUS1_CMD_PEER_DISCONNECT, &v));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(0, query(self->a, &q));
	ASSERT_EQ(POLL_IDLE, bus1_pollrev(self->a));
	ASSERT_EQ(0, bus1_disconnect(self->a));
}

/* Only the first disconnect succeeds. */
TEST_F(peers, disconnect_twice)
{
	ASSERT_EQ(0, bus1_disconnect(self->a));
	ASSERT_EQ(-ESHUTDOWN, bus1_disconnect(self->a));
	ASSERT_EQ(-ESHUTDOWN, bus1_disconnect(self->a));
	/* other peers are unaffected */
	ASSERT_EQ(0, bus1_disconnect(self->b));
	ASSERT_EQ(0, close(self->a));
	self->a = -1;
}

/* After a disconnect every command (and mmap) fails with ESHUTDOWN. */
TEST_F(peers, disconnect_then_everything_shutdown)
{
	struct bus1_cmd_peer_reset q = { 0 };
	struct bus1_cmd_send s = { 0 };
	struct bus1_cmd_recv r;
	__u64 v = N1, h;
	void *m;

	ASSERT_EQ(0, bus1_disconnect(self->a));

	q.flags = 0;
	ASSERT_EQ(-ESHUTDOWN, bus1_errno(ioctl(self->a, BUS1_CMD_PEER_QUERY, &q)));
	ASSERT_EQ(-ESHUTDOWN, bus1_reset(self->a, 0, (__u64)-1, KEEP, KEEP, KEEP, KEEP));
	ASSERT_EQ(-ESHUTDOWN, bus1_reset(self->a, BUS1_PEER_RESET_FLAG_FLUSH, (__u64)-1,
					 KEEP, KEEP, KEEP, KEEP));
	ASSERT_EQ(-ESHUTDOWN, bus1_release(self->a, N1));
	ASSERT_EQ(-ESHUTDOWN, bus1_xfer(self->a, N1, SELF, &h));
	ASSERT_EQ(-ESHUTDOWN, bus1_xfer(self->a, N1, self->b, &h));
	ASSERT_EQ(-ESHUTDOWN, bus1_destroy_node(self->a, N1, 0));
	v = 0;
	ASSERT_EQ(-ESHUTDOWN, bus1_errno(ioctl(self->a, BUS1_CMD_SLICE_RELEASE, &v)));
	ASSERT_EQ(-ESHUTDOWN, bus1_errno(ioctl(self->a, BUS1_CMD_SEND, &s)));
	ASSERT_EQ(-ESHUTDOWN, bus1_recv_poisoned(self->a, 0, ANY_OFFSET, &r));
	/* unknown commands too: the active reference is taken first */
	ASSERT_EQ(-ESHUTDOWN, bus1_errno(ioctl(self->a, _IOWR(BUS1_IOCTL_MAGIC, 0x7f, __u64), &v)));

	m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, self->a, 0);
	ASSERT_EQ(MAP_FAILED, m);
	ASSERT_EQ(ESHUTDOWN, errno);

	/* a disconnected peer can't be a transfer destination */
	ASSERT_EQ(-ESHUTDOWN, bus1_xfer(self->b, N1, self->a, &h));

	ASSERT_EQ(0, close(self->a));
	self->a = -1;
}

/* poll on a disconnected peer reports exactly POLLHUP. */
TEST_F(peers, disconnect_poll_hup)
{
	ASSERT_EQ(POLL_IDLE, bus1_pollrev(self->a));
	ASSERT_EQ(0, bus1_disconnect(self->a));
	ASSERT_EQ(POLLHUP, bus1_pollrev(self->a));
	/* also when something was queued before the disconnect */
	ASSERT_EQ(0, bus1_destroy_node(self->b, N1, 0));
	ASSERT_EQ(POLL_READABLE, bus1_pollrev(self->b));
	ASSERT_EQ(0, bus1_disconnect(self->b));
	ASSERT_EQ(POLLHUP, bus1_pollrev(self->b));
}

/* Disconnecting an owner destroys its nodes: holders get NODE_DESTROY. */
TEST_F(peers, disconnect_destroys_nodes)
{
	__u64 h;

	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_XFER(self->a, N2, self->b, RID(2));
	ASSERT_XFER(self->a, N1, self->c, RID(1));
	ASSERT_EMPTY(self->b);
	ASSERT_EMPTY(self->c);

	ASSERT_EQ(0, bus1_disconnect(self->a));

	/* both nodes of one owner die in one transaction */
	ASSERT_NOTIFY_PAIR(self->b, BUS1_MSG_NODE_DESTROY, RID(1), RID(2));
	ASSERT_EMPTY(self->b);
	ASSERT_DESTROY(self->c, RID(1), 0);
	ASSERT_EMPTY(self->c);

	/* the handles still exist but name a dead node */
	h = 0;
	ASSERT_EQ(0, bus1_xfer(self->b, RID(1), self->c, &h));
	ASSERT_EQ(INV, h);
	ASSERT_EQ(0, bus1_release(self->b, RID(1)));
	ASSERT_EQ(0, bus1_release(self->b, RID(2)));
	ASSERT_EQ(-ENXIO, bus1_release(self->b, RID(1)));
	ASSERT_EMPTY(self->b);
}

/* Disconnecting a holder drops its handles: the owner gets NODE_RELEASE. */
TEST_F(peers, disconnect_releases_handles)
{
	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_EMPTY(self->a);
	ASSERT_EQ(0, bus1_disconnect(self->b));
	ASSERT_RELEASE(self->a, N1);
	ASSERT_EMPTY(self->a);
	/* the node itself is still alive and usable */
	ASSERT_XFER(self->a, N1, self->c, RID(1));
}

/* --- PEER_QUERY ----------------------------------------------------------- */

TEST_F(peers, query)
{
	struct bus1_cmd_peer_reset q;

	/* defaults: peer_flags 0, limits = per-user maxima */
	ASSERT_EQ(0, query(self->a, &q));
	ASSERT_EQ((__u64)0, q.flags);
	ASSERT_EQ((__u64)0, q.peer_flags);
	ASSERT_EQ(bus1_module_param("user_slices_max"), q.max_slices);
	ASSERT_EQ(bus1_module_param("user_handles_max"), q.max_handles);
	ASSERT_EQ(bus1_module_param("user_inflight_bytes_max"), q.max_inflight_bytes);
	ASSERT_EQ(bus1_module_param("user_inflight_fds_max"), q.max_inflight_fds);

	/* flags must be 0 */
	memset(&q, 0, sizeof(q));
	q.flags = 1;
	ASSERT_EQ(-EINVAL, bus1_errno(ioctl(self->a, BUS1_CMD_PEER_QUERY, &q)));
	q.flags = BUS1_PEER_RESET_FLAG_FLUSH_SEED;
	ASSERT_EQ(-EINVAL, bus1_errno(ioctl(self->a, BUS1_CMD_PEER_QUERY, &q)));
	q.flags = 1ULL << 63;
	ASSERT_EQ(-EINVAL, bus1_errno(ioctl(self->a, BUS1_CMD_PEER_QUERY, &q)));
}

/* --- PEER_RESET ----------------------------------------------------------- */

TEST_F(peers, reset_invalid)
{
	struct bus1_cmd_peer_reset q0, q;

	ASSERT_EQ(0, query(self->a, &q0));

	/* unknown flags */
	ASSERT_EQ(-EINVAL, bus1_reset(self->a, 1ULL << 2, (__u64)-1, 1, 1, 1, 1));
	ASSERT_EQ(-EINVAL, bus1_reset(self->a, 1ULL << 63, (__u64)-1, 1, 1, 1, 1));
	/* unknown peer flags */
	ASSERT_EQ(-EINVAL, bus1_reset(self->a, 0, 2, 1, 1, 1, 1));
	ASSERT_EQ(-EINVAL, bus1_reset(self->a, 0, 1ULL << 63, 1, 1, 1, 1));
	/* any limit > INT_MAX other than 0xffffffff; validated before anything changes */
	ASSERT_EQ(-EINVAL, bus1_reset(self->a, 0, (__u64)-1, 0x80000000u, 1, 1, 1));
	ASSERT_EQ(-EINVAL, bus1_reset(self->a, 0, (__u64)-1, 1, 0x80000000u, 1, 1));
	ASSERT_EQ(-EINVAL, bus1_reset(self->a, 0, (__u64)-1, 1, 1, 0xfffffffeu, 1));
	ASSERT_EQ(-EINVAL, bus1_reset(self->a, 0, (__u64)-1, 1, 1, 1, 0x80000001u));
	ASSERT_EQ(-EINVAL, bus1_reset(self->a, 0, BUS1_PEER_FLAG_WANT_SECCTX, 1, 1, 1, 0x80000000u));

	ASSERT_EQ(0, query(self->a, &q));
	ASSERT_EQ(q0.peer_flags, q.peer_flags);
	ASSERT_EQ(q0.max_slices, q.max_slices);
	ASSERT_EQ(q0.max_handles, q.max_handles);
	ASSERT_EQ(q0.max_inflight_bytes, q.max_inflight_bytes);
	ASSERT_EQ(q0.max_inflight_fds, q.max_inflight_fds);
}

/* New limits are visible in QUERY; 0xffffffff keeps; INT_MAX and 0 are valid. */
TEST_F(peers, reset_limits)
{
	struct bus1_cmd_peer_reset q0, q;

	ASSERT_EQ(0, query(self->a, &q0));

	ASSERT_EQ(0, bus1_reset(self->a, 0, (__u64)-1, 1, 2, 3, 4));
	ASSERT_EQ(0, query(self->a, &q));
	ASSERT_EQ(1u, q.max_slices);
	ASSERT_EQ(2u, q.max_handles);
	ASSERT_EQ(3u, q.max_inflight_bytes);
	ASSERT_EQ(4u, q.max_inflight_fds);

	ASSERT_EQ(0, bus1_reset(self->a, 0, (__u64)-1, KEEP, KEEP, KEEP, KEEP));
	ASSERT_EQ(0, query(self->a, &q));
	ASSERT_EQ(1u, q.max_slices);
	ASSERT_EQ(2u, q.max_handles);
	ASSERT_EQ(3u, q.max_inflight_bytes);
	ASSERT_EQ(4u, q.max_inflight_fds);

	ASSERT_EQ(0, bus1_reset(self->a, 0, (__u64)-1, KEEP, INT_MAX, KEEP, 0));
	ASSERT_EQ(0, query(self->a, &q));
	ASSERT_EQ(1u, q.max_slices);
	ASSERT_EQ((__u32)INT_MAX, q.max_handles);
	ASSERT_EQ(3u, q.max_inflight_bytes);
	ASSERT_EQ(0u, q.max_inflight_fds);

	/* limits are per peer */
	ASSERT_EQ(0, query(self->b, &q));
	ASSERT_EQ(q0.max_slices, q.max_slices);
	ASSERT_EQ(q0.max_handles, q.max_handles);
	ASSERT_EQ(q0.max_inflight_bytes, q.max_inflight_bytes);
	ASSERT_EQ(q0.max_inflight_fds, q.max_inflight_fds);
}

/* peer_flags: (u64)-1 keeps, otherwise replaces (only WANT_SECCTX is known). */
TEST_F(peers, reset_peer_flags)
{
	struct bus1_cmd_peer_reset q;

	ASSERT_EQ(0, bus1_reset(self->a, 0, BUS1_PEER_FLAG_WANT_SECCTX, KEEP, KEEP, KEEP, KEEP));
	ASSERT_EQ(0, query(self->a, &q));
	ASSERT_EQ((__u64)BUS1_PEER_FLAG_WANT_SECCTX, q.peer_flags);

	ASSERT_EQ(0, bus1_reset(self->a, 0, (__u64)-1, KEEP, KEEP, KEEP, KEEP));
	ASSERT_EQ(0, query(self->a, &q));
	ASSERT_EQ((__u64)BUS1_PEER_FLAG_WANT_SECCTX, q.peer_flags);

	ASSERT_EQ(0, bus1_reset(self->a, 0, 0, KEEP, KEEP, KEEP, KEEP));
	ASSERT_EQ(0, query(self->a, &q));
	ASSERT_EQ((__u64)0, q.peer_flags);

	ASSERT_EQ(0, query(self->b, &q));
	ASSERT_EQ((__u64)0, q.peer_flags);
}

/* The per-peer handle limit is enforced for new nodes and transfer targets. */
TEST_F(peers, reset_handle_limit_enforced)
{
	__u64 h;

	/* creating a node charges one handle to its creator */
	ASSERT_EQ(0, set_max_handles(self->a, 0));
	ASSERT_EQ(-EDQUOT, bus1_xfer(self->a, N1, self->b, &h));
	ASSERT_EQ(-EDQUOT, bus1_destroy_node(self->a, N1, 0));
	ASSERT_EMPTY(self->a);

	/* one handle: creator charged once, destination separately */
	ASSERT_EQ(0, set_max_handles(self->a, 1));
	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_EQ(-EDQUOT, bus1_xfer(self->a, N2, self->b, &h));

	/* a transfer charges one handle to the destination */
	ASSERT_EQ(0, set_max_handles(self->c, 0));
	ASSERT_EQ(-EDQUOT, bus1_xfer(self->b, RID(1), self->c, &h));
	ASSERT_EQ(0, set_max_handles(self->c, 1));
	ASSERT_XFER(self->b, RID(1), self->c, RID(1));
	ASSERT_EQ(-EDQUOT, bus1_xfer(self->b, RID(1), self->c, &h));
	ASSERT_EQ(0, bus1_release(self->c, RID(1)));
	ASSERT_XFER(self->b, RID(1), self->c, RID(2));

	/* raising the limit again makes room */
	ASSERT_EQ(0, set_max_handles(self->a, 2));
	ASSERT_XFER(self->a, N2, self->b, RID(2));
}

/* FLUSH destroys all owned nodes: every holder is told, the own queue is empty. */
TEST_F(peers, reset_flush_destroys_nodes)
{
	struct bus1_cmd_peer_reset q0, q;
	__u64 h;

	ASSERT_EQ(0, query(self->a, &q0));
	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_XFER(self->a, N2, self->b, RID(2));
	ASSERT_XFER(self->a, N1, self->c, RID(1));

	ASSERT_EQ(0, bus1_reset(self->a, BUS1_PEER_RESET_FLAG_FLUSH, (__u64)-1,
				KEEP, KEEP, KEEP, KEEP));

	ASSERT_NOTIFY_PAIR(self->b, BUS1_MSG_NODE_DESTROY, RID(1), RID(2));
	ASSERT_EMPTY(self->b);
	ASSERT_DESTROY(self->c, RID(1), 0);
	ASSERT_EMPTY(self->c);
	/* the flushing peer's own notifications are flushed with its queue */
	ASSERT_EMPTY(self->a);
	ASSERT_EQ(POLL_IDLE, bus1_pollrev(self->a));

	/* holders' handles now name dead nodes */
	ASSERT_EQ(0, bus1_xfer(self->b, RID(1), self->d, &h));
	ASSERT_EQ(INV, h);

	/*
	 * The owner's IDs are gone: N1 now names a brand-new node (ESTALE would
	 * mean the old, destroyed node were still linked).
	 */
	ASSERT_EQ(0, bus1_destroy_node(self->a, N1, 0));
	ASSERT_DESTROY(self->a, N1, 0);

	/* the peer stays connected and keeps its limits */
	ASSERT_EQ(0, query(self->a, &q));
	ASSERT_EQ(q0.max_handles, q.max_handles);
	ASSERT_EQ(q0.max_slices, q.max_slices);
}

/* FLUSH drops every handle: owners get NODE_RELEASE; kernel IDs aren't reused. */
TEST_F(peers, reset_flush_drops_handles)
{
	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_XFER(self->c, N3, self->b, RID(2));

	ASSERT_EQ(0, bus1_reset(self->b, BUS1_PEER_RESET_FLAG_FLUSH, (__u64)-1,
				KEEP, KEEP, KEEP, KEEP));

	ASSERT_RELEASE(self->a, N1);
	ASSERT_EMPTY(self->a);
	ASSERT_RELEASE(self->c, N3);
	ASSERT_EMPTY(self->c);
	ASSERT_EMPTY(self->b);

	ASSERT_EQ(-ENXIO, bus1_release(self->b, RID(1)));
	ASSERT_EQ(-ENXIO, bus1_release(self->b, RID(2)));

	/* the kernel-ID counter survives the flush */
	ASSERT_XFER(self->a, N1, self->b, RID(3));
	ASSERT_XFER(self->a, N2, self->b, RID(4));
}

/* FLUSH empties the queue; FLUSH_SEED alone is accepted. */
TEST_F(peers, reset_flush_queue)
{
	struct bus1_cmd_recv r;

	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_EQ(0, bus1_destroy_node(self->a, N1, 0));
	ASSERT_EQ(POLL_READABLE, bus1_pollrev(self->b));
	ASSERT_EQ(0, bus1_reset(self->b, BUS1_PEER_RESET_FLAG_FLUSH, (__u64)-1,
				KEEP, KEEP, KEEP, KEEP));
	ASSERT_EMPTY(self->b);
	ASSERT_EQ(POLL_IDLE, bus1_pollrev(self->b));

	/* a queued NODE_RELEASE is flushed too */
	ASSERT_XFER(self->c, N2, self->d, RID(1));
	ASSERT_EQ(0, bus1_release(self->d, RID(1)));
	ASSERT_EQ(POLL_READABLE, bus1_pollrev(self->c));
	ASSERT_EQ(0, bus1_reset(self->c, BUS1_PEER_RESET_FLAG_FLUSH | BUS1_PEER_RESET_FLAG_FLUSH_SEED,
				(__u64)-1, KEEP, KEEP, KEEP, KEEP));
	ASSERT_EMPTY(self->c);
	ASSERT_EQ(POLL_IDLE, bus1_pollrev(self->c));

	ASSERT_EQ(0, bus1_reset(self->a, BUS1_PEER_RESET_FLAG_FLUSH_SEED, (__u64)-1,
				KEEP, KEEP, KEEP, KEEP));
	ASSERT_EQ(-EAGAIN, bus1_recv_poisoned(self->a, BUS1_RECV_FLAG_SEED, (__u64)-1, &r));
}

/* --- HANDLE_RELEASE ------------------------------------------------------- */

TEST_F(peers, release_unknown_ids)
{
	/* managed or remote bit set: ENXIO */
	ASSERT_EQ(-ENXIO, bus1_release(self->a, INV));
	ASSERT_EQ(-ENXIO, bus1_release(self->a, OID(1)));
	ASSERT_EQ(-ENXIO, bus1_release(self->a, RID(1)));
	ASSERT_EQ(-ENXIO, bus1_release(self->a, BUS1_HANDLE_FLAG_MANAGED));
	ASSERT_EQ(-ENXIO, bus1_release(self->a, BUS1_HANDLE_FLAG_REMOTE));
	ASSERT_EQ(-ENXIO, bus1_release(self->a, N1 | BUS1_HANDLE_FLAG_REMOTE));
	/* unmanaged: would be a new live node, whose last ref can't go */
	ASSERT_EQ(-EBUSY, bus1_release(self->a, N1));
	ASSERT_EQ(-EBUSY, bus1_release(self->a, 0));
	ASSERT_EQ(-EBUSY, bus1_release(self->a, 4));
	/* nothing was created by these */
	ASSERT_EMPTY(self->a);
	ASSERT_EQ(0, set_max_handles(self->a, 1));
	ASSERT_XFER(self->a, N2, self->b, RID(1));
}

/* The owner's last reference to a live node can't be released. */
TEST_F(peers, release_owner_last_ref)
{
	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_EQ(-EBUSY, bus1_release(self->a, N1));
	ASSERT_EQ(-EBUSY, bus1_release(self->a, N1));
	/* the node is intact */
	ASSERT_XFER(self->b, RID(1), self->c, RID(1));
	ASSERT_XFER(self->a, N1, SELF, N1);
	ASSERT_EMPTY(self->a);
	ASSERT_EMPTY(self->b);
}

/* Extra owner references are strong; dropping the last one notifies. */
TEST_F(peers, release_owner_extra_ref)
{
	/* lazily created and then one extra reference */
	ASSERT_XFER(self->a, N1, SELF, N1);
	ASSERT_EMPTY(self->a);
	ASSERT_EQ(0, bus1_release(self->a, N1));
	ASSERT_RELEASE(self->a, N1);
	ASSERT_EMPTY(self->a);
	ASSERT_EQ(-EBUSY, bus1_release(self->a, N1));
	/* the node survived */
	ASSERT_EQ(0, bus1_destroy_node(self->a, N1, 0));
	ASSERT_EQ(-ESTALE, bus1_destroy_node(self->a, N1, 0));
	ASSERT_DESTROY(self->a, N1, 0);
	ASSERT_EMPTY(self->a);
}

/* Remote references are counted; the ID goes away with the last one. */
TEST_F(peers, release_remote_refs)
{
	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_XFER(self->a, N1, self->b, RID(1));

	ASSERT_EQ(0, bus1_release(self->b, RID(1)));
	ASSERT_EMPTY(self->a);
	ASSERT_EQ(POLL_IDLE, bus1_pollrev(self->a));
	/* still valid */
	ASSERT_XFER(self->b, RID(1), SELF, RID(1));
	ASSERT_EQ(0, bus1_release(self->b, RID(1)));
	ASSERT_EMPTY(self->a);

	ASSERT_EQ(0, bus1_release(self->b, RID(1)));
	ASSERT_RELEASE(self->a, N1);
	ASSERT_EMPTY(self->a);
	ASSERT_EQ(-ENXIO, bus1_release(self->b, RID(1)));
	ASSERT_EMPTY(self->b);
}

/* Releasing the owner handle of a destroyed node; the ID can then be reused. */
TEST_F(peers, release_after_destroy)
{
	ASSERT_EQ(0, bus1_destroy_node(self->a, N1, 0));
	ASSERT_DESTROY(self->a, N1, 0);
	ASSERT_EQ(-ESTALE, bus1_destroy_node(self->a, N1, 0));
	ASSERT_EQ(0, bus1_release(self->a, N1));
	/* N1 is unknown again */
	ASSERT_EQ(-EBUSY, bus1_release(self->a, N1));
	ASSERT_EQ(0, bus1_destroy_node(self->a, N1, 0));
	ASSERT_DESTROY(self->a, N1, 0);
	ASSERT_EMPTY(self->a);

	/* two owner refs on a destroyed node: both can go */
	ASSERT_XFER(self->a, N2, SELF, N2);
	ASSERT_EQ(0, bus1_destroy_node(self->a, N2, 0));
	ASSERT_DESTROY(self->a, N2, 0);
	ASSERT_EQ(0, bus1_release(self->a, N2));
	ASSERT_EQ(0, bus1_release(self->a, N2));
	ASSERT_EQ(-EBUSY, bus1_release(self->a, N2));
	ASSERT_EMPTY(self->a);
}

/*
 * HANDLE_RELEASE_N (extension) drops several references at once, all or none:
 * bad input releases nothing, the handle limit gets back exactly what went,
 * and the owner gets one NODE_RELEASE when the last strong one goes.
 */
TEST_F(peers, release_n_all_or_nothing)
{
	int i;

	ASSERT_EQ(0, set_max_handles(self->b, 5));
	for (i = 0; i < 5; i++)
		ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_EQ(-EDQUOT, bus1_xfer(self->a, N1, self->b, NULL));

	/* bad input: EINVAL, ENXIO, EBUSY as HANDLE_RELEASE; nothing released */
	ASSERT_EQ(-EINVAL, bus1_release_n(self->b, 1, RID(1), 1));
	ASSERT_EQ(-EINVAL, bus1_release_n(self->b, 0, RID(1), 0));
	ASSERT_EQ(-EINVAL, bus1_release_n(self->b, 0, RID(1), 6));
	ASSERT_EQ(-EINVAL, bus1_release_n(self->b, 0, RID(1), (__u64)-1));
	ASSERT_EQ(-EINVAL, bus1_release_n(self->b, 0, RID(1), (1ULL << 32) + 1));
	ASSERT_EQ(-ENXIO, bus1_release_n(self->b, 0, RID(2), 1));
	ASSERT_EQ(-EBUSY, bus1_release_n(self->b, 0, N5, 1));
	ASSERT_EQ(-EDQUOT, bus1_xfer(self->a, N1, self->b, NULL));
	ASSERT_EMPTY(self->a);

	/* three of five: the handle stays, its limit gets exactly three back */
	ASSERT_EQ(0, bus1_release_n(self->b, 0, RID(1), 3));
	ASSERT_EMPTY(self->a);
	for (i = 0; i < 3; i++)
		ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_EQ(-EDQUOT, bus1_xfer(self->a, N1, self->b, NULL));

	/* all five: the ID is gone, the owner is notified once */
	ASSERT_EQ(0, bus1_release_n(self->b, 0, RID(1), 5));
	ASSERT_RELEASE(self->a, N1);
	ASSERT_EMPTY(self->a);
	ASSERT_EQ(-ENXIO, bus1_release_n(self->b, 0, RID(1), 1));
	ASSERT_EQ(-ENXIO, bus1_release(self->b, RID(1)));
	ASSERT_EMPTY(self->b);

	/* the owner handle: its pinning reference never goes while the node lives */
	ASSERT_XFER(self->a, N1, SELF, N1);
	ASSERT_XFER(self->a, N1, SELF, N1);
	ASSERT_EQ(-EBUSY, bus1_release_n(self->a, 0, N1, 3));
	ASSERT_EMPTY(self->a);
	ASSERT_EQ(0, bus1_release_n(self->a, 0, N1, 2));
	ASSERT_RELEASE(self->a, N1);
	ASSERT_EMPTY(self->a);
	ASSERT_EQ(-EBUSY, bus1_release_n(self->a, 0, N1, 1));
	/* once destroyed, it may */
	ASSERT_EQ(0, bus1_destroy_node(self->a, N1, 0));
	ASSERT_DESTROY(self->a, N1, 0);
	ASSERT_EQ(0, bus1_release_n(self->a, 0, N1, 1));
	ASSERT_EMPTY(self->a);
}

/* --- HANDLE_TRANSFER ------------------------------------------------------ */

TEST_F(peers, transfer_flags)
{
	__u64 h;

	ASSERT_EQ(-EINVAL, bus1_xfer_raw(self->a, 1, N1, self->b, &h));
	ASSERT_EQ(-EINVAL, bus1_xfer_raw(self->a, 1ULL << 63, N1, self->b, &h));
	ASSERT_EQ(-EINVAL, bus1_xfer_raw(self->a, 1, N1, (__u64)-1, &h));
	/* nothing happened: B got no handle, so its first ID is still RID(1) */
	ASSERT_XFER(self->a, N1, self->b, RID(1));
}

/* ID assignment: (n << 3) | MANAGED | REMOTE, per peer, coalesced per node. */
TEST_F(peers, transfer_ids)
{
	struct bus1_cmd_handle_transfer c;
	int b2;

	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_XFER(self->a, N2, self->b, RID(2));
	/* same node again: same ID */
	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_XFER(self->a, N2, self->b, RID(2));
	/* IDs are per peer */
	ASSERT_XFER(self->a, N2, self->c, RID(1));
	ASSERT_XFER(self->b, RID(1), self->c, RID(2));
	ASSERT_XFER(self->b, RID(2), self->c, RID(1));
	/* to self: the same handle */
	ASSERT_XFER(self->b, RID(1), SELF, RID(1));
	ASSERT_XFER(self->b, RID(1), self->b, RID(1));
	ASSERT_XFER(self->a, N1, SELF, N1);
	ASSERT_XFER(self->a, N1, self->a, N1);
	/* back to the owner: its owner handle */
	ASSERT_XFER(self->b, RID(1), self->a, N1);
	ASSERT_XFER(self->c, RID(1), self->a, N2);
	/* a dup()ed fd is the same peer */
	b2 = dup(self->b);
	ASSERT_LE(0, b2);
	ASSERT_XFER(self->a, N1, b2, RID(1));
	close(b2);

	/* the input value of dst_handle is ignored; the struct is written back */
	memset(&c, 0, sizeof(c));
	c.src_handle = N3;
	c.dst_fd = self->b;
	c.dst_handle = 0x1234;
	ASSERT_EQ(0, ioctl(self->a, BUS1_CMD_HANDLE_TRANSFER, &c));
	ASSERT_EQ(RID(3), c.dst_handle);
	ASSERT_EQ((__u64)0, c.flags);
	ASSERT_EQ(N3, c.src_handle);
	ASSERT_EQ((__u64)self->b, c.dst_fd);

	/* transfers generate no messages */
	ASSERT_EMPTY(self->a);
	ASSERT_EMPTY(self->b);
	ASSERT_EMPTY(self->c);
	ASSERT_EQ(POLL_IDLE, bus1_pollrev(self->a));
}

TEST_F(peers, transfer_unknown_source)
{
	__u64 h;

	ASSERT_EQ(-ENXIO, bus1_xfer(self->a, INV, self->b, &h));
	ASSERT_EQ(-ENXIO, bus1_xfer(self->a, OID(1), self->b, &h));
	ASSERT_EQ(-ENXIO, bus1_xfer(self->a, RID(1), self->b, &h));
	ASSERT_EQ(-ENXIO, bus1_xfer(self->a, RID(1), SELF, &h));
	ASSERT_EQ(-ENXIO, bus1_xfer(self->a, N1 | BUS1_HANDLE_FLAG_MANAGED, SELF, &h));
	/* B got nothing */
	ASSERT_XFER(self->a, N1, self->b, RID(1));
	/* a released ID is unknown */
	ASSERT_EQ(0, bus1_release(self->b, RID(1)));
	ASSERT_EQ(-ENXIO, bus1_xfer(self->b, RID(1), self->c, &h));
}

/* Bad destinations fail without creating anything. */
TEST_F(peers, transfer_bad_destination)
{
	int p[2], closed, nul;
	__u64 h;

	ASSERT_EQ(0, pipe(p));
	nul = open("/dev/null", O_RDWR);
	ASSERT_LE(0, nul);
	/* last: nothing may reuse this number before it is used */
	closed = dup(p[0]);
	ASSERT_LE(0, closed);
	close(closed);

	/* A may create exactly one node: leaked creations would show as EDQUOT */
	ASSERT_EQ(0, set_max_handles(self->a, 1));

	ASSERT_EQ(-EBADF, bus1_xfer(self->a, N1, closed, &h));
	ASSERT_EQ(-EBADF, bus1_xfer(self->a, N1, 100000, &h));
	ASSERT_EQ(-EOPNOTSUPP, bus1_xfer(self->a, N1, p[0], &h));
	ASSERT_EQ(-EOPNOTSUPP, bus1_xfer(self->a, N1, p[1], &h));
	ASSERT_EQ(-EOPNOTSUPP, bus1_xfer(self->a, N1, nul, &h));
	ASSERT_EQ(0, bus1_disconnect(self->d));
	ASSERT_EQ(-ESHUTDOWN, bus1_xfer(self->a, N1, self->d, &h));
	ASSERT_EQ(-ESHUTDOWN, bus1_xfer(self->a, N2, self->d, &h));

	ASSERT_XFER(self->a, N3, self->b, RID(1));
	ASSERT_EMPTY(self->a);

	close(p[0]);
	close(p[1]);
	close(nul);
}

/* Transferring a handle of a destroyed node succeeds but yields INVALID. */
TEST_F(peers, transfer_destroyed_node)
{
	__u64 h;

	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_XFER(self->a, N1, self->c, RID(1));
	ASSERT_EQ(0, bus1_destroy_node(self->a, N1, 0));

	h = 0;
	ASSERT_EQ(0, bus1_xfer(self->b, RID(1), self->c, &h));
	ASSERT_EQ(INV, h);
	h = 0;
	ASSERT_EQ(0, bus1_xfer(self->b, RID(1), self->d, &h));
	ASSERT_EQ(INV, h);
	h = 0;
	ASSERT_EQ(0, bus1_xfer(self->b, RID(1), SELF, &h));
	ASSERT_EQ(INV, h);
	h = 0;
	ASSERT_EQ(0, bus1_xfer(self->a, N1, self->b, &h));
	ASSERT_EQ(INV, h);
	h = 0;
	ASSERT_EQ(0, bus1_xfer(self->a, N1, SELF, &h));
	ASSERT_EQ(INV, h);

	/* each peer got exactly its destruction notification, nothing more */
	ASSERT_DESTROY(self->a, N1, 0);
	ASSERT_EMPTY(self->a);
	ASSERT_DESTROY(self->b, RID(1), 0);
	ASSERT_EMPTY(self->b);
	ASSERT_DESTROY(self->c, RID(1), 0);
	ASSERT_EMPTY(self->c);
	ASSERT_EMPTY(self->d);

	/* D received no handle, and the references were not added */
	ASSERT_EQ(-ENXIO, bus1_release(self->d, RID(1)));
	ASSERT_EQ(0, bus1_release(self->b, RID(1)));
	ASSERT_EQ(-ENXIO, bus1_release(self->b, RID(1)));
	ASSERT_EQ(0, bus1_release(self->a, N1));
	ASSERT_EQ(-EBUSY, bus1_release(self->a, N1));
}

/* --- NODES_DESTROY -------------------------------------------------------- */

TEST_F(peers, destroy_flags)
{
	__u64 ids[] = { N1 };

	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_EQ(-EINVAL, bus1_destroy_nodes(self->a, 1ULL << 1, ids, 1));
	ASSERT_EQ(-EINVAL, bus1_destroy_nodes(self->a, 1ULL << 63, ids, 1));
	ASSERT_EQ(-EINVAL, bus1_destroy_nodes(self->a, BUS1_NODES_DESTROY_FLAG_RELEASE_HANDLES | 4,
					      ids, 1));
	/* the node is alive, nobody was notified */
	ASSERT_EMPTY(self->a);
	ASSERT_EMPTY(self->b);
	ASSERT_XFER(self->b, RID(1), self->c, RID(1));
}

/* n_nodes above the caller's user handle limit is EINVAL. */
TEST_F(peers, destroy_too_many)
{
	__u64 ids[] = { N1 };

	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_EQ(-EINVAL, bus1_destroy_nodes(self->a, 0, ids, 1ULL << 32));
	ASSERT_EQ(-EINVAL, bus1_destroy_nodes(self->a, 0, ids, (__u64)-1));
	ASSERT_EMPTY(self->b);
	ASSERT_XFER(self->b, RID(1), self->c, RID(1));
	/* zero nodes is a no-op */
	ASSERT_EQ(0, bus1_destroy_nodes(self->a, 0, ids, 0));
	ASSERT_EMPTY(self->a);
	ASSERT_EMPTY(self->b);
}

TEST_F(peers, destroy_efault)
{
	__u64 *tail;
	char *bad = bus1_unmapped_page();
	long pg = sysconf(_SC_PAGESIZE);

	ASSERT_NE(NULL, bad);
	ASSERT_XFER(self->a, N1, self->b, RID(1));

	ASSERT_EQ(-EFAULT, bus1_errno(ioctl(self->a, BUS1_CMD_NODES_DESTROY, NULL)));
	ASSERT_EQ(-EFAULT, bus1_errno(ioctl(self->a, BUS1_CMD_NODES_DESTROY, bad)));
	ASSERT_EQ(-EFAULT, bus1_destroy_nodes(self->a, 0, NULL, 1));
	ASSERT_EQ(-EFAULT, bus1_destroy_nodes(self->a, 0, (__u64 *)bad, 1));

	/* first entry valid and live, second entry unreadable: nothing happens */
	tail = (__u64 *)(bad - pg) + pg / sizeof(__u64) - 1;
	*tail = N1;
	ASSERT_EQ(-EFAULT, bus1_destroy_nodes(self->a, 0, tail, 2));
	ASSERT_EMPTY(self->a);
	ASSERT_EMPTY(self->b);
	ASSERT_XFER(self->b, RID(1), self->c, RID(1));
	ASSERT_EQ(0, bus1_destroy_nodes(self->a, 0, tail, 1));
	ASSERT_DESTROY(self->a, N1, 0);
}

TEST_F(peers, destroy_errors)
{
	__u64 dup_ids[] = { N1, N1 };
	__u64 h;

	/* unknown managed / remote IDs */
	ASSERT_EQ(-ENXIO, bus1_destroy_node(self->a, INV, 0));
	ASSERT_EQ(-ENXIO, bus1_destroy_node(self->a, OID(1), 0));
	ASSERT_EQ(-ENXIO, bus1_destroy_node(self->a, RID(1), 0));

	ASSERT_XFER(self->a, N1, self->b, RID(1));

	/* duplicates */
	ASSERT_EQ(-ENOTUNIQ, bus1_destroy_nodes(self->a, 0, dup_ids, 2));

	/* a remote handle can't be destroyed, not even by its owner's peer */
	ASSERT_EQ(-EREMOTE, bus1_destroy_node(self->b, RID(1), 0));
	ASSERT_XFER(self->b, RID(1), self->c, RID(1));
	ASSERT_EQ(-EREMOTE, bus1_destroy_node(self->c, RID(1), 0));

	/* nothing was destroyed so far */
	ASSERT_EMPTY(self->a);
	ASSERT_EMPTY(self->b);
	ASSERT_EMPTY(self->c);

	ASSERT_EQ(0, bus1_destroy_node(self->a, N1, 0));
	ASSERT_EQ(-ESTALE, bus1_destroy_node(self->a, N1, 0));
	ASSERT_EQ(-ESTALE, bus1_destroy_nodes(self->a, BUS1_NODES_DESTROY_FLAG_RELEASE_HANDLES,
					      dup_ids, 1));
	/* a remote handle of a destroyed node is still remote */
	ASSERT_EQ(-EREMOTE, bus1_destroy_node(self->b, RID(1), 0));

	ASSERT_DESTROY(self->a, N1, 0);
	ASSERT_EMPTY(self->a);
	ASSERT_DESTROY(self->b, RID(1), 0);
	ASSERT_EMPTY(self->b);
	ASSERT_DESTROY(self->c, RID(1), 0);
	ASSERT_EMPTY(self->c);

	h = 0;
	ASSERT_EQ(0, bus1_xfer(self->b, RID(1), self->d, &h));
	ASSERT_EQ(INV, h);
}

/* A failing entry anywhere in the array leaves all nodes alive. */
TEST_F(peers, destroy_all_or_nothing)
{
	__u64 ids[3] = { N1, N2, 0 };

	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_XFER(self->a, N2, self->b, RID(2));
	/* A holds a remote handle (its RID(1)) of C's node */
	ASSERT_XFER(self->c, N5, self->a, RID(1));
	/* A owns a destroyed node N4 */
	ASSERT_EQ(0, bus1_destroy_node(self->a, N4, 0));
	ASSERT_DESTROY(self->a, N4, 0);

	ids[2] = RID(7);
	ASSERT_EQ(-ENXIO, bus1_destroy_nodes(self->a, 0, ids, 3));
	ids[2] = N1;
	ASSERT_EQ(-ENOTUNIQ, bus1_destroy_nodes(self->a, 0, ids, 3));
	ids[2] = RID(1);
	ASSERT_EQ(-EREMOTE, bus1_destroy_nodes(self->a, 0, ids, 3));
	ids[2] = N4;
	ASSERT_EQ(-ESTALE, bus1_destroy_nodes(self->a, 0, ids, 3));
	ASSERT_EQ(-ESTALE, bus1_destroy_nodes(self->a, BUS1_NODES_DESTROY_FLAG_RELEASE_HANDLES, ids, 3));

	/* nobody heard anything, the handles are live */
	ASSERT_EMPTY(self->a);
	ASSERT_EMPTY(self->b);
	ASSERT_EMPTY(self->c);
	ASSERT_XFER(self->b, RID(1), self->d, RID(1));
	ASSERT_XFER(self->b, RID(2), self->d, RID(2));
	/* the owner still has its IDs (RELEASE_HANDLES did not act) */
	ASSERT_XFER(self->a, N1, SELF, N1);
	ASSERT_EQ(0, bus1_release(self->a, N1));
	ASSERT_EMPTY(self->a);	/* B and D still hold N1 */

	/* now destroy both for real */
	ASSERT_EQ(0, bus1_destroy_nodes(self->a, 0, ids, 2));
	ASSERT_NOTIFY_PAIR(self->a, BUS1_MSG_NODE_DESTROY, N1, N2);
	ASSERT_EMPTY(self->a);
	ASSERT_NOTIFY_PAIR(self->b, BUS1_MSG_NODE_DESTROY, RID(1), RID(2));
	ASSERT_EMPTY(self->b);
	ASSERT_NOTIFY_PAIR(self->d, BUS1_MSG_NODE_DESTROY, RID(1), RID(2));
	ASSERT_EMPTY(self->d);
}

/* Owner gets NODE_DESTROY on its node ID, every holder on its own handle ID. */
TEST_F(peers, destroy_notifies_owner_and_holders)
{
	ASSERT_XFER(self->a, N2, self->c, RID(1));	/* shift C's IDs */
	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_XFER(self->a, N1, self->c, RID(2));
	ASSERT_XFER(self->c, RID(2), self->d, RID(1));

	ASSERT_EQ(POLL_IDLE, bus1_pollrev(self->a));
	ASSERT_EQ(0, bus1_destroy_node(self->a, N1, 0));

	ASSERT_EQ(POLL_READABLE, bus1_pollrev(self->a));
	ASSERT_EQ(POLL_READABLE, bus1_pollrev(self->b));
	ASSERT_EQ(POLL_READABLE, bus1_pollrev(self->c));
	ASSERT_EQ(POLL_READABLE, bus1_pollrev(self->d));

	ASSERT_DESTROY(self->a, N1, 0);
	ASSERT_DESTROY(self->b, RID(1), 0);
	ASSERT_DESTROY(self->c, RID(2), 0);
	ASSERT_DESTROY(self->d, RID(1), 0);
	ASSERT_ALL_EMPTY(self);
	ASSERT_EQ(POLL_IDLE, bus1_pollrev(self->a));
	ASSERT_EQ(POLL_IDLE, bus1_pollrev(self->b));

	/* the other node is untouched */
	ASSERT_XFER(self->c, RID(1), self->b, RID(2));
	/* releasing handles of a destroyed node doesn't notify the owner */
	ASSERT_EQ(0, bus1_release(self->b, RID(1)));
	ASSERT_EQ(0, bus1_release(self->c, RID(2)));
	ASSERT_EQ(0, bus1_release(self->d, RID(1)));
	ASSERT_EMPTY(self->a);
}

/* Lazily created nodes can be destroyed right away. */
TEST_F(peers, destroy_lazy_node)
{
	__u64 ids[] = { N1, N2, 0 };

	ASSERT_EQ(0, bus1_destroy_nodes(self->a, 0, &ids[2], 1));
	ASSERT_DESTROY(self->a, 0, 0);
	ASSERT_EQ(0, bus1_destroy_nodes(self->a, 0, ids, 2));
	ASSERT_NOTIFY_PAIR(self->a, BUS1_MSG_NODE_DESTROY, N1, N2);
	ASSERT_EMPTY(self->a);
	ASSERT_EQ(-ESTALE, bus1_destroy_nodes(self->a, 0, ids, 1));
}

/* Notifications of one NODES_DESTROY on one peer are chained with CONTINUE. */
TEST_F(peers, destroy_continue)
{
	__u64 ids[] = { N1, N2 };

	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_XFER(self->a, N2, self->b, RID(2));
	ASSERT_XFER(self->a, N2, self->c, RID(1));

	ASSERT_EQ(0, bus1_destroy_nodes(self->a, 0, ids, 2));
	ASSERT_NOTIFY_PAIR(self->a, BUS1_MSG_NODE_DESTROY, N1, N2);
	ASSERT_EMPTY(self->a);
	ASSERT_NOTIFY_PAIR(self->b, BUS1_MSG_NODE_DESTROY, RID(1), RID(2));
	ASSERT_EMPTY(self->b);
	/* a single notification on C: no CONTINUE */
	ASSERT_DESTROY(self->c, RID(1), 0);
	ASSERT_EMPTY(self->c);

	/* separate calls are separate transactions: never CONTINUE */
	ASSERT_XFER(self->a, N3, self->b, RID(3));
	ASSERT_XFER(self->a, N4, self->b, RID(4));
	ASSERT_EQ(0, bus1_destroy_node(self->a, N3, 0));
	ASSERT_EQ(0, bus1_destroy_node(self->a, N4, 0));
	ASSERT_DESTROY(self->a, N3, 0);
	ASSERT_DESTROY(self->a, N4, 0);
	ASSERT_DESTROY(self->b, RID(3), 0);
	ASSERT_DESTROY(self->b, RID(4), 0);
	ASSERT_EMPTY(self->a);
	ASSERT_EMPTY(self->b);
}

/* RELEASE_HANDLES drops one owner reference per node, unlinking the ID. */
TEST_F(peers, destroy_release_handles)
{
	__u64 id = N1;

	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_EQ(0, bus1_destroy_nodes(self->a, BUS1_NODES_DESTROY_FLAG_RELEASE_HANDLES, &id, 1));
	ASSERT_DESTROY(self->b, RID(1), 0);
	ASSERT_EMPTY(self->b);
	/* the ID is gone: it's unknown-unmanaged again, and names a new node */
	ASSERT_EQ(-EBUSY, bus1_release(self->a, N1));
	ASSERT_EQ(0, bus1_destroy_node(self->a, N1, 0));
	ASSERT_EQ(-ESTALE, bus1_destroy_node(self->a, N1, 0));
	ASSERT_EQ(0, bus1_release(self->a, N1));

	/* with two owner references, one survives */
	id = N2;
	ASSERT_XFER(self->a, N2, SELF, N2);
	ASSERT_EQ(0, bus1_destroy_nodes(self->a, BUS1_NODES_DESTROY_FLAG_RELEASE_HANDLES, &id, 1));
	ASSERT_EQ(-ESTALE, bus1_destroy_node(self->a, N2, 0));
	ASSERT_EQ(0, bus1_release(self->a, N2));
	ASSERT_EQ(-EBUSY, bus1_release(self->a, N2));
}

/*
 * With RELEASE_HANDLES the owner dropped its node before it could receive
 * the notification, so it never sees it (holders still do).
 */
TEST_F(peers, destroy_release_handles_owner_not_notified)
{
	__u64 id = N1;

	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_EQ(0, bus1_destroy_nodes(self->a, BUS1_NODES_DESTROY_FLAG_RELEASE_HANDLES, &id, 1));
	ASSERT_EMPTY(self->a);
	ASSERT_DESTROY(self->b, RID(1), 0);
	ASSERT_EMPTY(self->b);
}

/* --- RECV ----------------------------------------------------------------- */

TEST_F(peers, recv_errors)
{
	struct bus1_cmd_recv r;
	char *bad = bus1_unmapped_page();

	ASSERT_NE(NULL, bad);
	ASSERT_EQ(-EAGAIN, bus1_recv_poisoned(self->a, 0, ANY_OFFSET, &r));
	ASSERT_EQ(-EAGAIN, bus1_recv_poisoned(self->a, BUS1_RECV_FLAG_SEED, (__u64)-1, &r));
	ASSERT_EQ(-EINVAL, bus1_recv_poisoned(self->a, 1ULL << 5, (__u64)-1, &r));
	ASSERT_EQ(-EINVAL, bus1_recv_poisoned(self->a, 1ULL << 63, (__u64)-1, &r));
	ASSERT_EQ(-EFAULT, bus1_errno(ioctl(self->a, BUS1_CMD_RECV, NULL)));
	ASSERT_EQ(-EFAULT, bus1_errno(ioctl(self->a, BUS1_CMD_RECV, bad)));

	/* EINVAL leaves a queued notification in place */
	ASSERT_EQ(0, bus1_destroy_node(self->a, N1, 0));
	ASSERT_EQ(-EINVAL, bus1_recv_poisoned(self->a, 1ULL << 5, (__u64)-1, &r));
	ASSERT_DESTROY(self->a, N1, 0);
	ASSERT_EMPTY(self->a);
}

/* All notification fields, including the RFC metadata ones, and max_offset 0. */
TEST_F(peers, recv_notification_fields)
{
	struct bus1_cmd_recv r;

	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_EQ(0, bus1_release(self->b, RID(1)));
	ASSERT_EQ(0, bus1_recv_poisoned(self->a, 0, 0, &r));
	ASSERT_EQ((__u64)0, r.flags);
	ASSERT_EQ((__u64)BUS1_MSG_NODE_RELEASE, r.msg.type);
	ASSERT_EQ((__u64)0, r.msg.flags);
	ASSERT_EQ(N1, r.msg.destination);
	ASSERT_EQ(0xffffffffu, r.msg.uid);
	ASSERT_EQ(0xffffffffu, r.msg.gid);
	ASSERT_EQ(0u, r.msg.pid);
	ASSERT_EQ(0u, r.msg.tid);
	ASSERT_EQ((__u64)BUS1_OFFSET_INVALID, r.msg.offset);
	ASSERT_EQ((__u64)0, r.msg.n_bytes);
	ASSERT_EQ((__u64)0, r.msg.n_handles);
	ASSERT_EQ((__u64)0, r.msg.n_fds);
	ASSERT_EQ((__u64)0, r.msg.n_secctx);

	ASSERT_XFER(self->a, N1, self->b, RID(2));
	ASSERT_EQ(0, bus1_destroy_node(self->a, N1, 0));
	ASSERT_EQ(0, bus1_recv_poisoned(self->b, 0, 0, &r));
	ASSERT_EQ((__u64)BUS1_MSG_NODE_DESTROY, r.msg.type);
	ASSERT_EQ((__u64)0, r.msg.flags);
	ASSERT_EQ(RID(2), r.msg.destination);
	ASSERT_EQ(0xffffffffu, r.msg.uid);
	ASSERT_EQ(0xffffffffu, r.msg.gid);
	ASSERT_EQ(0u, r.msg.pid);
	ASSERT_EQ(0u, r.msg.tid);
	ASSERT_EQ((__u64)BUS1_OFFSET_INVALID, r.msg.offset);
	ASSERT_EQ((__u64)0, r.msg.n_bytes);
	ASSERT_EQ((__u64)0, r.msg.n_handles);
	ASSERT_EQ((__u64)0, r.msg.n_fds);
	ASSERT_EQ((__u64)0, r.msg.n_secctx);
}

/* PEEK returns the front notification without dequeuing it. */
TEST_F(peers, recv_peek)
{
	struct bus1_cmd_recv r;

	ASSERT_EQ(0, bus1_destroy_node(self->a, N1, 0));
	ASSERT_EQ(0, bus1_recv_poisoned(self->a, BUS1_RECV_FLAG_PEEK, (__u64)-1, &r));
	ASSERT_EQ((__u64)BUS1_MSG_NODE_DESTROY, r.msg.type);
	ASSERT_EQ(N1, r.msg.destination);
	ASSERT_EQ(POLL_READABLE, bus1_pollrev(self->a));
	ASSERT_EQ(0, bus1_recv_poisoned(self->a, BUS1_RECV_FLAG_PEEK, (__u64)-1, &r));
	ASSERT_EQ((__u64)BUS1_MSG_NODE_DESTROY, r.msg.type);
	ASSERT_EQ(N1, r.msg.destination);
	ASSERT_DESTROY(self->a, N1, 0);
	ASSERT_EMPTY(self->a);
	ASSERT_EQ(POLL_IDLE, bus1_pollrev(self->a));
}

/* --- poll ----------------------------------------------------------------- */

struct delayed_destroy {
	int fd;
	__u64 id;
	pid_t poller;
	int poll_returned;	/* set by the poller: stop waiting for it to sleep */
	int asleep;
};

/* Destroys the node once the poller sleeps in poll(). */
static void *delayed_destroy_fn(void *arg)
{
	struct delayed_destroy *dd = arg;

	dd->asleep = bus1_wait_asleep(dd->poller, "poll", &dd->poll_returned);
	bus1_destroy_node(dd->fd, dd->id, 0);
	return NULL;
}

/* POLLIN exactly while something is receivable; a blocked poll is woken. */
TEST_F(peers, poll_in)
{
	struct delayed_destroy dd;
	struct pollfd p;
	pthread_t t;
	int r;

	ASSERT_EQ(POLL_IDLE, bus1_pollrev(self->a));
	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_EQ(POLL_IDLE, bus1_pollrev(self->a));
	ASSERT_EQ(POLL_IDLE, bus1_pollrev(self->b));

	ASSERT_EQ(0, bus1_release(self->b, RID(1)));
	ASSERT_EQ(POLL_READABLE, bus1_pollrev(self->a));
	ASSERT_EQ(POLL_IDLE, bus1_pollrev(self->b));
	ASSERT_RELEASE(self->a, N1);
	ASSERT_EQ(POLL_IDLE, bus1_pollrev(self->a));

	/* a withdrawn release notification clears POLLIN again */
	ASSERT_XFER(self->a, N1, self->b, RID(2));
	ASSERT_EQ(0, bus1_release(self->b, RID(2)));
	ASSERT_EQ(POLL_READABLE, bus1_pollrev(self->a));
	ASSERT_XFER(self->a, N1, self->c, RID(1));
	ASSERT_EQ(POLL_IDLE, bus1_pollrev(self->a));

	/* wake-up of a sleeping poller */
	dd.fd = self->a;
	dd.id = N1;
	dd.poller = (pid_t)syscall(SYS_gettid);
	dd.asleep = -1;
	dd.poll_returned = 0;
	ASSERT_EQ(0, pthread_create(&t, NULL, delayed_destroy_fn, &dd));
	p.fd = self->c;
	p.events = POLLIN;
	p.revents = 0;
	r = poll(&p, 1, -1);
	__atomic_store_n(&dd.poll_returned, 1, __ATOMIC_RELEASE);
	ASSERT_EQ(0, pthread_join(t, NULL));
	ASSERT_EQ(1, r);
	ASSERT_EQ(POLLIN, p.revents);
	ASSERT_EQ(0, dd.asleep) TH_LOG("the poller never slept in poll()");
	ASSERT_DESTROY(self->c, RID(1), 0);
	ASSERT_EQ(POLL_IDLE, bus1_pollrev(self->c));
	ASSERT_DESTROY(self->a, N1, 0);
	ASSERT_EQ(POLL_IDLE, bus1_pollrev(self->a));
}

/* --- NODE_RELEASE --------------------------------------------------------- */

/* Release notifications re-arm: two rounds give two notifications. */
TEST_F(peers, release_notification_rearm)
{
	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_EQ(0, bus1_release(self->b, RID(1)));
	ASSERT_RELEASE(self->a, N1);
	ASSERT_EMPTY(self->a);

	/* B's old ID is gone for good; the node gets a fresh ID there */
	ASSERT_XFER(self->a, N1, self->b, RID(2));
	ASSERT_EQ(0, bus1_release(self->b, RID(2)));
	ASSERT_RELEASE(self->a, N1);
	ASSERT_EMPTY(self->a);

	/* and a third time via another peer */
	ASSERT_XFER(self->a, N1, self->c, RID(1));
	ASSERT_EQ(0, bus1_release(self->c, RID(1)));
	ASSERT_RELEASE(self->a, N1);
	ASSERT_EMPTY(self->a);
}

/* A queued NODE_RELEASE is withdrawn when a reference comes back first. */
TEST_F(peers, release_notification_withdrawn)
{
	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_EQ(0, bus1_release(self->b, RID(1)));
	/* queued, but not yet received */
	ASSERT_XFER(self->a, N1, self->c, RID(1));
	ASSERT_EMPTY(self->a);

	/* also withdrawn by an extra owner reference */
	ASSERT_EQ(0, bus1_release(self->c, RID(1)));
	ASSERT_XFER(self->a, N1, SELF, N1);
	ASSERT_EMPTY(self->a);

	/* and armed again once that is gone */
	ASSERT_EQ(0, bus1_release(self->a, N1));
	ASSERT_RELEASE(self->a, N1);
	ASSERT_EMPTY(self->a);
}

/* Only the last of several holders triggers the notification. */
TEST_F(peers, release_notification_last_holder)
{
	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_XFER(self->a, N1, self->c, RID(1));
	ASSERT_XFER(self->c, RID(1), self->d, RID(1));
	ASSERT_EQ(0, bus1_release(self->b, RID(1)));
	ASSERT_EMPTY(self->a);
	ASSERT_EQ(0, bus1_release(self->d, RID(1)));
	ASSERT_EMPTY(self->a);
	ASSERT_EQ(0, bus1_release(self->c, RID(1)));
	ASSERT_RELEASE(self->a, N1);
	ASSERT_ALL_EMPTY(self);
}

/* No NODE_RELEASE for a destroyed node; a released holder never sees DESTROY. */
TEST_F(peers, release_notification_after_destroy)
{
	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_EQ(0, bus1_destroy_node(self->a, N1, 0));
	ASSERT_DESTROY(self->a, N1, 0);
	ASSERT_EQ(0, bus1_release(self->b, RID(1)));
	ASSERT_EMPTY(self->a);
	ASSERT_EMPTY(self->b);
}

/* Destroying a node replaces its queued NODE_RELEASE. */
TEST_F(peers, release_notification_replaced_by_destroy)
{
	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_EQ(0, bus1_release(self->b, RID(1)));
	ASSERT_EQ(0, bus1_destroy_node(self->a, N1, 0));
	ASSERT_DESTROY(self->a, N1, 0);
	ASSERT_EMPTY(self->a);
	ASSERT_EMPTY(self->b);
}

/* --- multi-peer scenarios ------------------------------------------------- */

/* A's node travels A -> B -> C; C's handle works; released along the chain. */
TEST_F(peers, chain_three_peers)
{
	__u64 h;

	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_XFER(self->b, RID(1), self->c, RID(1));
	/* C's handle is a real handle: it can be passed on and back */
	ASSERT_XFER(self->c, RID(1), SELF, RID(1));
	ASSERT_XFER(self->c, RID(1), self->d, RID(1));
	ASSERT_XFER(self->c, RID(1), self->a, N1);
	ASSERT_EQ(-EREMOTE, bus1_destroy_node(self->c, RID(1), 0));

	ASSERT_EQ(0, bus1_release(self->b, RID(1)));
	ASSERT_EQ(-ENXIO, bus1_release(self->b, RID(1)));
	ASSERT_EQ(0, bus1_release(self->d, RID(1)));
	ASSERT_EQ(0, bus1_release(self->c, RID(1)));
	ASSERT_EMPTY(self->a);
	ASSERT_EQ(0, bus1_release(self->c, RID(1)));
	ASSERT_EQ(-ENXIO, bus1_xfer(self->c, RID(1), self->d, &h));
	/* A still holds the extra reference C gave it */
	ASSERT_EMPTY(self->a);
	ASSERT_EQ(0, bus1_release(self->a, N1));
	ASSERT_RELEASE(self->a, N1);
	ASSERT_EMPTY(self->a);
	ASSERT_EQ(-EBUSY, bus1_release(self->a, N1));

	/* the whole chain again, then destruction reaches the end of it */
	ASSERT_XFER(self->a, N1, self->b, RID(2));
	ASSERT_XFER(self->b, RID(2), self->c, RID(2));
	ASSERT_EQ(0, bus1_destroy_node(self->a, N1, 0));
	ASSERT_DESTROY(self->a, N1, 0);
	ASSERT_DESTROY(self->b, RID(2), 0);
	ASSERT_DESTROY(self->c, RID(2), 0);
	ASSERT_EMPTY(self->d);
}

/* Destruction while many peers hold handles, with several nodes. */
TEST_F(peers, destroy_with_many_holders)
{
	__u64 ids[] = { N1, N2 };

	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_XFER(self->a, N2, self->b, RID(2));
	ASSERT_XFER(self->b, RID(2), self->c, RID(1));
	ASSERT_XFER(self->b, RID(1), self->c, RID(2));
	ASSERT_XFER(self->c, RID(1), self->d, RID(1));
	/* B holds extra references; they don't multiply notifications */
	ASSERT_XFER(self->a, N1, self->b, RID(1));

	ASSERT_EQ(0, bus1_destroy_nodes(self->a, 0, ids, 2));
	ASSERT_NOTIFY_PAIR(self->a, BUS1_MSG_NODE_DESTROY, N1, N2);
	ASSERT_NOTIFY_PAIR(self->b, BUS1_MSG_NODE_DESTROY, RID(1), RID(2));
	ASSERT_NOTIFY_PAIR(self->c, BUS1_MSG_NODE_DESTROY, RID(1), RID(2));
	ASSERT_DESTROY(self->d, RID(1), 0);
	ASSERT_ALL_EMPTY(self);
}

/* Closing an owner with live nodes: every holder learns of the destruction. */
TEST_F(peers, teardown_close_owner)
{
	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_XFER(self->a, N2, self->b, RID(2));
	ASSERT_XFER(self->a, N1, self->c, RID(1));
	ASSERT_XFER(self->a, N3, SELF, N3);
	/* A also holds a handle to D's node */
	ASSERT_XFER(self->d, N1, self->a, RID(1));

	ASSERT_EQ(0, close(self->a));
	self->a = -1;

	ASSERT_EQ(POLL_READABLE, bus1_pollrev(self->b));
	ASSERT_NOTIFY_PAIR(self->b, BUS1_MSG_NODE_DESTROY, RID(1), RID(2));
	ASSERT_EMPTY(self->b);
	ASSERT_DESTROY(self->c, RID(1), 0);
	ASSERT_EMPTY(self->c);
	ASSERT_RELEASE(self->d, N1);
	ASSERT_EMPTY(self->d);
}

/* Closing a holder: each owner gets one NODE_RELEASE per released node. */
TEST_F(peers, teardown_close_holder)
{
	struct bus1_cmd_recv r1, r2;

	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_XFER(self->a, N2, self->b, RID(2));
	ASSERT_XFER(self->a, N2, self->b, RID(2));
	ASSERT_XFER(self->c, N3, self->b, RID(3));
	ASSERT_XFER(self->a, N1, self->d, RID(1));

	ASSERT_EQ(0, close(self->b));
	self->b = -1;

	/* N2 had no other holder: released; N1 is still held by D */
	ASSERT_RELEASE(self->a, N2);
	ASSERT_EMPTY(self->a);
	ASSERT_RELEASE(self->c, N3);
	ASSERT_EMPTY(self->c);

	/* two nodes released at once: two unicasts, neither flagged CONTINUE */
	ASSERT_XFER(self->a, N2, self->d, RID(2));
	ASSERT_EQ(0, close(self->d));
	self->d = -1;
	ASSERT_EQ(0, bus1_recv_poisoned(self->a, 0, ANY_OFFSET, &r1));
	ASSERT_EQ(0, bus1_recv_poisoned(self->a, 0, ANY_OFFSET, &r2));
	ASSERT_EQ((__u64)BUS1_MSG_NODE_RELEASE, r1.msg.type);
	ASSERT_EQ((__u64)BUS1_MSG_NODE_RELEASE, r2.msg.type);
	ASSERT_EQ((__u64)0, r1.msg.flags);
	ASSERT_EQ((__u64)0, r2.msg.flags);
	ASSERT_TRUE((r1.msg.destination == N1 && r2.msg.destination == N2) ||
		    (r1.msg.destination == N2 && r2.msg.destination == N1));
	ASSERT_EMPTY(self->a);
}

/* Two peers holding each other's nodes: destruction comes before release. */
TEST_F(peers, teardown_cross_held)
{
	ASSERT_XFER(self->a, N1, self->b, RID(1));
	ASSERT_XFER(self->b, N1, self->a, RID(1));

	ASSERT_EQ(0, close(self->a));
	self->a = -1;

	ASSERT_DESTROY(self->b, RID(1), 0);
	ASSERT_RELEASE(self->b, N1);
	ASSERT_EMPTY(self->b);
	ASSERT_EQ(0, bus1_release(self->b, RID(1)));
	ASSERT_EQ(-EBUSY, bus1_release(self->b, N1));
	ASSERT_EQ(0, close(self->b));
	self->b = -1;
}

/* dst_fd is an fd number: only its low 32 bits are used. */
TEST_F(peers, transfer_dst_fd_truncated)
{
	__u64 h = 0;

	ASSERT_EQ(0, bus1_xfer_raw(self->a, 0, N1, (1ULL << 32) | (__u64)self->b, &h));
	ASSERT_EQ(RID(1), h);
	ASSERT_XFER(self->a, N1, self->b, RID(1));
}

/* A transfer failing at the destination doesn't leave a new source node. */
TEST_F(peers, transfer_edquot_no_leak)
{
	__u64 h;

	ASSERT_EQ(0, set_max_handles(self->a, 1));
	ASSERT_EQ(0, set_max_handles(self->c, 0));
	ASSERT_EQ(-EDQUOT, bus1_xfer(self->a, N1, self->c, &h));
	ASSERT_EQ(-EDQUOT, bus1_xfer(self->a, N2, self->c, &h));
	/* A can still create exactly one node */
	ASSERT_XFER(self->a, N3, self->b, RID(1));
	ASSERT_EQ(-EDQUOT, bus1_xfer(self->a, N4, self->b, &h));
	ASSERT_EMPTY(self->a);
	ASSERT_EMPTY(self->c);
}

/* A failing NODES_DESTROY doesn't leave nodes it created on the fly. */
TEST_F(peers, destroy_failure_no_leak)
{
	__u64 ids[] = { N1, N2, RID(9) };
	__u64 h;

	ASSERT_EQ(0, set_max_handles(self->a, 1));
	ASSERT_EQ(-ENXIO, bus1_destroy_nodes(self->a, 0, ids, 3));
	ids[2] = N1;
	ASSERT_EQ(-ENOTUNIQ, bus1_destroy_nodes(self->a, 0, ids, 3));
	ASSERT_EMPTY(self->a);
	/* one handle is still available, so exactly one node can be made */
	ASSERT_XFER(self->a, N3, self->b, RID(1));
	ASSERT_EQ(-EDQUOT, bus1_xfer(self->a, N4, self->b, &h));
}

struct xfer_loop {
	int from, to;
	__u64 src;
	__u64 first_valid;	/* the destination's ID for the node, or INV */
	int n_valid;		/* transfers that gave the destination a reference */
	int err;
};

static void *xfer_loop_fn(void *arg)
{
	struct xfer_loop *x = arg;
	int k;

	for (k = 0; k < 200; k++) {
		__u64 h = 0;
		int r = bus1_xfer(x->from, x->src, x->to, &h);

		if (r) {
			x->err = r;
			break;
		}
		if (h == INV)
			break;
		if (x->first_valid == INV)
			x->first_valid = h;
		else if (h != x->first_valid)
			x->err = -EINVAL;	/* IDs must be stable */
		x->n_valid++;
	}
	return NULL;
}

/*
 * Destruction racing with a holder passing its handle on: the handle either
 * ends up in C before the destruction or turns stale. If C obtained a valid ID,
 * it gets exactly one NODE_DESTROY, for that ID; otherwise none. Nothing else.
 */
TEST_F(peers, race_destroy_vs_transfer)
{
	int i;

	for (i = 1; i <= 100; i++) {
		__u64 id = (__u64)i << 8, hb = 0, h = 0;
		struct bus1_cmd_recv r;
		struct xfer_loop x;
		pthread_t t;
		int n = 0;

		ASSERT_EQ(0, bus1_xfer(self->a, id, self->b, &hb));
		ASSERT_NE(INV, hb);
		x.from = self->b;
		x.to = self->c;
		x.src = hb;
		x.first_valid = INV;
		x.n_valid = 0;
		x.err = 0;
		ASSERT_EQ(0, pthread_create(&t, NULL, xfer_loop_fn, &x));
		if (i & 1)
			usleep(i * 10);
		ASSERT_EQ(0, bus1_destroy_node(self->a, id, 0));
		ASSERT_EQ(0, pthread_join(t, NULL));
		ASSERT_EQ(0, x.err);

		ASSERT_EQ(0, bus1_xfer(self->b, hb, self->c, &h));
		ASSERT_EQ(INV, h);
		ASSERT_DESTROY(self->a, id, 0);
		ASSERT_EMPTY(self->a);
		ASSERT_DESTROY(self->b, hb, 0);
		ASSERT_EMPTY(self->b);
		while (bus1_recv_poisoned(self->c, 0, ANY_OFFSET, &r) == 0) {
			ASSERT_EQ((__u64)BUS1_MSG_NODE_DESTROY, r.msg.type);
			ASSERT_EQ(x.first_valid, r.msg.destination);
			ASSERT_EQ((__u64)0, r.msg.flags);
			n++;
		}
		ASSERT_EQ(x.first_valid != INV ? 1 : 0, n)
			TH_LOG("round %d: C got ID 0x%llx and %d NODE_DESTROY", i,
			       (unsigned long long)x.first_valid, n);
		ASSERT_EQ(0, bus1_release(self->b, hb));
		/*
		 * C holds one reference per transfer that reached it, and gives
		 * them back, so the rounds stay within any handle limit.
		 */
		for (n = 0; n < x.n_valid; n++)
			ASSERT_EQ(0, bus1_release(self->c, x.first_valid));
		if (x.first_valid != INV) {
			ASSERT_EQ(-ENXIO, bus1_release(self->c, x.first_valid));
		}
		ASSERT_EMPTY(self->c);
	}
}

/* --- bad user pointers ---------------------------------------------------- */

TEST_F(peers, efault_every_struct_ioctl)
{
	static const unsigned long cmds[] = {
		BUS1_CMD_PEER_QUERY,
		BUS1_CMD_PEER_RESET,
		BUS1_CMD_HANDLE_RELEASE,
		BUS1_CMD_HANDLE_TRANSFER,
		BUS1_CMD_HANDLE_RELEASE_N,
		BUS1_CMD_NODES_DESTROY,
		BUS1_CMD_SLICE_RELEASE,
		BUS1_CMD_SEND,
		BUS1_CMD_RECV,
	};
	char *bad = bus1_unmapped_page();
	unsigned int i;

	ASSERT_NE(NULL, bad);
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		ASSERT_EQ(-EFAULT, bus1_errno(ioctl(self->a, cmds[i], NULL)))
			TH_LOG("ioctl 0x%lx, NULL", cmds[i]);
		ASSERT_EQ(-EFAULT, bus1_errno(ioctl(self->a, cmds[i], bad)))
			TH_LOG("ioctl 0x%lx, unmapped", cmds[i]);
		/* straddles the end of a mapping */
		ASSERT_EQ(-EFAULT, bus1_errno(ioctl(self->a, cmds[i], bad - 4)))
			TH_LOG("ioctl 0x%lx, partially mapped", cmds[i]);
	}
	/* the peer is still fine */
	ASSERT_EQ(POLL_IDLE, bus1_pollrev(self->a));
	ASSERT_XFER(self->a, N1, self->b, RID(1));
}

TEST_HARNESS_MAIN
