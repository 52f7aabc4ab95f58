// SPDX-License-Identifier: GPL-2.0
/*
 * bus1 notification-order tests: every holder of a valid handle gets exactly
 * one NODE_DESTROY, in the one global order, whatever the interleaving.
 *
 * The interleavings are forced, not hoped for: a sender is stopped inside its
 * SEND by a userfaultfd-registered payload page, and the test proves where the
 * other threads are (blocked in the kernel, or returned) before it lets the
 * sender go on.
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
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/bus1.h>
#include <linux/userfaultfd.h>

#include "kselftest_harness.h"
#include "bus1_util.h"

#define N1 ((__u64)0x100)
#define N2 ((__u64)0x200)
#define INV ((__u64)BUS1_HANDLE_INVALID)
#define ANY_OFFSET ((__u64)-1)	/* RECV max_offset: no limit */
#define POOL_SIZE (16UL << 20)

/* The handle IDs of the DATA message @r, read from the mapped pool @pool. */
static const __u64 *slice_handles(const void *pool, const struct bus1_cmd_recv *r)
{
	size_t payload = (r->msg.n_bytes + 7) & ~(size_t)7;

	return (const __u64 *)((const char *)pool + r->msg.offset + payload);
}

/* Counts the NODE_DESTROYs for @id left in @fd's queue; fails on anything else. */
static int drain_destroys(int fd, __u64 id, int *other)
{
	struct bus1_cmd_recv r;
	int n = 0;

	*other = 0;
	while (bus1_recv(fd, 0, ANY_OFFSET, &r) == 0) {
		if (r.msg.type == BUS1_MSG_NODE_DESTROY && r.msg.destination == id)
			n++;
		else
			(*other)++;
	}
	return n;
}

/* Whether thread @tid of this process is asleep in the kernel ('S' or 'D'). */
static int thread_sleeping(pid_t tid)
{
	char path[64], buf[512], *p;
	int fd, n;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && (p[2] == 'S' || p[2] == 'D');
}

FIXTURE(order) {
	int a, b, c;
	const uint8_t *pool_b;
};

FIXTURE_SETUP(order)
{
	self->a = bus1_peer_new();
	self->b = bus1_peer_new();
	self->c = bus1_peer_new();
	ASSERT_LE(0, self->a);
	ASSERT_LE(0, self->b);
	ASSERT_LE(0, self->c);
	self->pool_b = bus1_pool_map(self->b, POOL_SIZE);
	ASSERT_NE(NULL, self->pool_b);
}

FIXTURE_TEARDOWN(order)
{
	bus1_peer_free(self->a, NULL, 0);
	bus1_peer_free(self->b, self->pool_b, POOL_SIZE);
	bus1_peer_free(self->c, NULL, 0);
}

/*
 * A holder releases its handle while its NODE_DESTROY is still queued behind a
 * message that carries the node again: the handle the message installs is told
 * of the destruction exactly once, not once by the queued notification and once
 * more by the receive joining the destruction.
 */
TEST_F(order, one_destroy_after_release_and_relink)
{
	struct bus1_cmd_recv r;
	__u64 hb = INV, hc = INV, to_b = INV, got;
	int other;

	/* A owns N1; B and C hold handles to it; C holds a handle to B's N2. */
	ASSERT_EQ(0, bus1_xfer(self->a, N1, self->b, &hb));
	ASSERT_NE(INV, hb);
	ASSERT_EQ(0, bus1_xfer(self->a, N1, self->c, &hc));
	ASSERT_NE(INV, hc);
	ASSERT_EQ(0, bus1_xfer(self->b, N2, self->c, &to_b));
	ASSERT_NE(INV, to_b);

	/* C sends B a message carrying N1, then A destroys N1. */
	ASSERT_EQ(0, bus1_send(self->c, 0, &to_b, 1, NULL, "m", 1, &hc, 1, NULL, 0));
	ASSERT_EQ(0, bus1_destroy_node(self->a, N1, 0));
	/* B drops its handle before it receives anything. */
	ASSERT_EQ(0, bus1_release(self->b, hb));

	/* The message is ordered before the destruction: its handle is valid. */
	ASSERT_EQ(0, bus1_recv(self->b, 0, ANY_OFFSET, &r));
	ASSERT_EQ((__u64)BUS1_MSG_DATA, r.msg.type);
	ASSERT_EQ((__u64)1, r.msg.n_handles);
	got = slice_handles(self->pool_b, &r)[0];
	ASSERT_NE(INV, got);
	ASSERT_EQ(0, bus1_errno(ioctl(self->b, BUS1_CMD_SLICE_RELEASE, &r.msg.offset)));

	ASSERT_EQ(1, drain_destroys(self->b, got, &other))
		TH_LOG("the installed handle 0x%llx must get exactly one NODE_DESTROY",
		       (unsigned long long)got);
	ASSERT_EQ(0, other);
	ASSERT_EQ(1, drain_destroys(self->c, hc, &other));
	ASSERT_EQ(0, other);
}

/* The same with two messages carrying the node and a release between them. */
TEST_F(order, one_destroy_per_handle_across_two_messages)
{
	struct bus1_cmd_recv r;
	__u64 hb = INV, hc = INV, to_b = INV, got1, got2;
	int other;

	ASSERT_EQ(0, bus1_xfer(self->a, N1, self->b, &hb));
	ASSERT_EQ(0, bus1_xfer(self->a, N1, self->c, &hc));
	ASSERT_EQ(0, bus1_xfer(self->b, N2, self->c, &to_b));
	ASSERT_EQ(0, bus1_send(self->c, 0, &to_b, 1, NULL, "1", 1, &hc, 1, NULL, 0));
	ASSERT_EQ(0, bus1_send(self->c, 0, &to_b, 1, NULL, "2", 1, &hc, 1, NULL, 0));
	ASSERT_EQ(0, bus1_destroy_node(self->a, N1, 0));
	ASSERT_EQ(0, bus1_release(self->b, hb));

	ASSERT_EQ(0, bus1_recv(self->b, 0, ANY_OFFSET, &r));
	ASSERT_EQ((__u64)BUS1_MSG_DATA, r.msg.type);
	got1 = slice_handles(self->pool_b, &r)[0];
	ASSERT_NE(INV, got1);
	ASSERT_EQ(0, bus1_errno(ioctl(self->b, BUS1_CMD_SLICE_RELEASE, &r.msg.offset)));
	/* Released again before the second message is received. */
	ASSERT_EQ(0, bus1_release(self->b, got1));

	ASSERT_EQ(0, bus1_recv(self->b, 0, ANY_OFFSET, &r));
	ASSERT_EQ((__u64)BUS1_MSG_DATA, r.msg.type);
	got2 = slice_handles(self->pool_b, &r)[0];
	ASSERT_NE(INV, got2);
	ASSERT_EQ(0, bus1_errno(ioctl(self->b, BUS1_CMD_SLICE_RELEASE, &r.msg.offset)));

	ASSERT_EQ(1, drain_destroys(self->b, got2, &other));
	ASSERT_EQ(0, other);
}

/* A sender stopped inside SEND on a userfaultfd-registered payload page. */
struct stalled_send {
	int fd;			/* the sending peer */
	const __u64 *dst;
	__u64 n_dst;
	const __u64 *handles;
	__u64 n_handles;
	void *buf;
	size_t len;
	int ret;
	pid_t tid;
};

static void *stalled_send_fn(void *arg)
{
	struct stalled_send *s = arg;

	s->tid = gettid();
	s->ret = bus1_send(s->fd, 0, s->dst, s->n_dst, NULL, s->buf, s->len, s->handles,
			   s->n_handles, NULL, 0);
	return NULL;
}

/*
 * Starts @t sending @len bytes of the unfaulted page @area from peer @fd to
 * @n_dst destinations, carrying @n_handles handles: it stops in the copy.
 */
static int stalled_send_start(pthread_t *t, struct stalled_send *s, int fd, const __u64 *dst,
			      __u64 n_dst, const __u64 *handles, __u64 n_handles, void *area,
			      size_t len)
{
	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->dst = dst;
	s->n_dst = n_dst;
	s->handles = handles;
	s->n_handles = n_handles;
	s->buf = area;
	s->len = len;
	return pthread_create(t, NULL, stalled_send_fn, s);
}

struct xfer_call {
	int from, to;
	__u64 src, out;
	int ret;
	pid_t tid;
	volatile int done;
};

static void *xfer_call_fn(void *arg)
{
	struct xfer_call *x = arg;

	x->tid = gettid();
	x->ret = bus1_xfer(x->from, x->src, x->to, &x->out);
	__atomic_store_n(&x->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static int uffd_open(void)
{
	struct uffdio_api api = { .api = UFFD_API };
	int fd = syscall(SYS_userfaultfd, O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		close(fd);
		return -errno;
	}
	return fd;
}

/* A private anonymous page registered with @uffd for missing-page faults. */
static char *uffd_missing_page(int uffd, long page)
{
	struct uffdio_register reg;
	char *area = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (area == MAP_FAILED)
		return NULL;
	reg.range.start = (__u64)(uintptr_t)area;
	reg.range.len = page;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
		munmap(area, page);
		return NULL;
	}
	return area;
}

/* Waits until a thread faults on a page of @uffd: 0 once it is stopped there. */
static int uffd_wait_fault(int uffd)
{
	struct pollfd pf = { .fd = uffd, .events = POLLIN };
	struct uffd_msg m;

	if (poll(&pf, 1, -1) != 1 || read(uffd, &m, sizeof(m)) != (ssize_t)sizeof(m))
		return -1;
	return m.event == UFFD_EVENT_PAGEFAULT ? 0 : -1;
}

/* Fills the stopped page @area with @c, letting the faulting thread go on. */
static int uffd_fill(int uffd, char *area, long page, char c)
{
	struct uffdio_copy copy;
	char *src = malloc(page);
	int r;

	if (!src)
		return -ENOMEM;
	memset(src, c, page);
	copy.dst = (__u64)(uintptr_t)area;
	copy.src = (__u64)(uintptr_t)src;
	copy.len = page;
	copy.mode = 0;
	r = bus1_errno(ioctl(uffd, UFFDIO_COPY, &copy));
	free(src);
	return r;
}

/*
 * A node that a SEND creates on the fly is invisible to the peer's other
 * operations until the SEND has passed its point of no return: here the SEND
 * fails and undoes the node, so a HANDLE_TRANSFER of the same ID on another
 * thread must not hand out a handle to the undone node (which would never get
 * a NODE_DESTROY); it gets a node of its own, which behaves like any other.
 */
TEST_F(order, node_created_by_failing_send_is_invisible)
{
	long page = sysconf(_SC_PAGESIZE);
	struct stalled_send s;
	struct xfer_call x;
	pthread_t ts, tx;
	__u64 to_b = INV, dst[2];
	__u64 handles[1] = { N1 };
	char *area;
	int uffd, other;

	uffd = uffd_open();
	if (uffd < 0)
		SKIP(return, "userfaultfd unavailable: %s", strerror(-uffd));

	/* A holds a handle to B's N2, so A can send to B. */
	ASSERT_EQ(0, bus1_xfer(self->b, N2, self->a, &to_b));
	ASSERT_NE(INV, to_b);

	area = uffd_missing_page(uffd, page);
	ASSERT_NE(NULL, area);

	/*
	 * SEND{handles=[N1 (new)], destinations=[B, an unknown managed ID]}:
	 * N1 is created, the copy to B stops on the missing page, and once it
	 * goes on the second destination fails with ENXIO and N1 is undone.
	 */
	dst[0] = to_b;
	dst[1] = ((__u64)77 << 3) | BUS1_HANDLE_FLAG_MANAGED | BUS1_HANDLE_FLAG_REMOTE;
	ASSERT_EQ(0, stalled_send_start(&ts, &s, self->a, dst, 2, handles, 1, area, 64));

	/* The sender is in the window: N1 exists, the copy is stopped. */
	ASSERT_EQ(0, uffd_wait_fault(uffd));

	/* Another thread of A transfers N1 to C meanwhile. */
	memset(&x, 0, sizeof(x));
	x.from = self->a;
	x.to = self->c;
	x.src = N1;
	x.out = INV;
	ASSERT_EQ(0, pthread_create(&tx, NULL, xfer_call_fn, &x));
	/* Either it returned already (the bug) or it sleeps in the kernel, waiting. */
	while (!__atomic_load_n(&x.done, __ATOMIC_ACQUIRE) &&
	       !(x.tid && thread_sleeping(x.tid)))
		sched_yield();

	/* Let the SEND go on; it fails and undoes its node. */
	ASSERT_EQ(0, uffd_fill(uffd, area, page, 'x'));
	ASSERT_EQ(0, pthread_join(ts, NULL));
	ASSERT_EQ(-ENXIO, s.ret);
	ASSERT_EQ(0, pthread_join(tx, NULL));
	ASSERT_EQ(0, x.ret);
	ASSERT_NE(INV, x.out);

	/* Whatever node C holds is live and A's: destroying N1 tells C once. */
	ASSERT_EQ(0, bus1_destroy_node(self->a, N1, 0));
	ASSERT_EQ(1, drain_destroys(self->c, x.out, &other))
		TH_LOG("C's handle 0x%llx must name a live node of A",
		       (unsigned long long)x.out);
	ASSERT_EQ(0, other);
	/* B received nothing: the SEND failed as a whole. */
	ASSERT_EQ(0, drain_destroys(self->b, INV, &other));
	ASSERT_EQ(0, other);

	munmap(area, page);
	close(uffd);
}

struct close_call {
	int fd;
	int ret;
};

static void *close_fn(void *arg)
{
	struct close_call *c = arg;

	c->ret = close(c->fd);
	return NULL;
}

/*
 * A sender stuck reading its own payload (a page that never faults in) holds
 * nothing the receiver's teardown waits for: the receiver's close() returns
 * while the sender is still stuck, and the sender then fails cleanly with
 * ESHUTDOWN. The fault is resolved only after close() has returned, so a close
 * that waited for the sender would never return (the harness times it out).
 */
TEST_F(order, close_does_not_wait_for_a_stalled_sender)
{
	long page = sysconf(_SC_PAGESIZE);
	struct stalled_send s;
	struct close_call cc;
	pthread_t ts, tc;
	__u64 to_v = INV;
	char *area;
	int uffd, v, other;

	uffd = uffd_open();
	if (uffd < 0)
		SKIP(return, "userfaultfd unavailable: %s", strerror(-uffd));

	/* The victim V (no pool mapping, so close() tears it down). */
	v = bus1_peer_new();
	ASSERT_LE(0, v);
	ASSERT_EQ(0, bus1_xfer(v, N1, self->a, &to_v));
	ASSERT_NE(INV, to_v);

	area = uffd_missing_page(uffd, page);
	ASSERT_NE(NULL, area);

	ASSERT_EQ(0, stalled_send_start(&ts, &s, self->a, &to_v, 1, NULL, 0, area, 128));
	ASSERT_EQ(0, uffd_wait_fault(uffd));

	/* The sender is stuck in the copy; V closes. */
	cc.fd = v;
	cc.ret = -1;
	ASSERT_EQ(0, pthread_create(&tc, NULL, close_fn, &cc));
	ASSERT_EQ(0, pthread_join(tc, NULL));
	ASSERT_EQ(0, cc.ret);

	/* Only now does the sender's page arrive. */
	ASSERT_EQ(0, uffd_fill(uffd, area, page, 'y'));
	ASSERT_EQ(0, pthread_join(ts, NULL));
	ASSERT_EQ(-ESHUTDOWN, s.ret);

	/* A is unharmed: V's node is gone, so A is told. */
	ASSERT_EQ(1, drain_destroys(self->a, to_v, &other));
	ASSERT_EQ(0, other);
	munmap(area, page);
	close(uffd);
}

/* A TRANSACT on its own thread, for the test below. */
struct transact_call {
	int fd;
	struct bus1_cmd_transact t;
	int ret;
	pid_t tid;
	int returned;
};

static void *transact_call_fn(void *arg)
{
	struct transact_call *c = arg;

	__atomic_store_n(&c->tid, gettid(), __ATOMIC_RELEASE);
	c->ret = bus1_errno(ioctl(c->fd, BUS1_CMD_TRANSACT, &c->t));
	__atomic_store_n(&c->returned, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void on_usr1(int sig)
{
	(void)sig;
}

/*
 * A TRANSACT whose send stage waits for another call of the same peer that is
 * creating nodes, after its release stage completed, is not restarted by a
 * signal with SA_RESTART: a restart would release the slice a second time
 * (ENXIO, with done reporting nothing). It fails with EINTR, done reports the
 * release, and the slice was released exactly once.
 */
TEST_F(order, transact_interrupted_after_its_release_is_not_restarted)
{
	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };
	long page = sysconf(_SC_PAGESIZE);
	struct stalled_send s;
	struct transact_call c;
	struct bus1_cmd_recv r;
	__u64 to_a = INV, to_b = INV, off;
	__u64 handles[1] = { N1 };
	pthread_t ts, tt;
	char *area;
	int uffd;

	uffd = uffd_open();
	if (uffd < 0)
		SKIP(return, "userfaultfd unavailable: %s", strerror(-uffd));
	sigemptyset(&sa.sa_mask);
	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));

	/* A can send to B, and holds a received slice to release. */
	ASSERT_EQ(0, bus1_xfer(self->b, N2, self->a, &to_b));
	ASSERT_EQ(0, bus1_xfer(self->a, 0x300, self->b, &to_a));
	ASSERT_EQ(0, bus1_send_str(self->b, to_a, "slice"));
	ASSERT_EQ(0, bus1_recv(self->a, 0, ANY_OFFSET, &r));
	ASSERT_EQ((__u64)BUS1_MSG_DATA, r.msg.type);
	off = r.msg.offset;

	/* A SEND of A creates N1 and stops in its copy, N1 pending. */
	area = uffd_missing_page(uffd, page);
	ASSERT_NE(NULL, area);
	ASSERT_EQ(0, stalled_send_start(&ts, &s, self->a, &to_b, 1, handles, 1, area, 64));
	ASSERT_EQ(0, uffd_wait_fault(uffd));

	/* Another thread of A: release the slice, then send N1, which waits for the SEND. */
	memset(&c, 0, sizeof(c));
	c.fd = self->a;
	c.t.flags = BUS1_TRANSACT_FLAG_RELEASE | BUS1_TRANSACT_FLAG_SEND;
	c.t.release_offset = off;
	c.t.done = 0xdeadbeef;
	c.t.send.ptr_destinations = (__u64)(uintptr_t)&to_b;
	c.t.send.n_destinations = 1;
	c.t.send.ptr_handles = (__u64)(uintptr_t)handles;
	c.t.send.n_handles = 1;
	ASSERT_EQ(0, pthread_create(&tt, NULL, transact_call_fn, &c));
	while (!__atomic_load_n(&c.tid, __ATOMIC_ACQUIRE))
		sched_yield();
	ASSERT_EQ(0, bus1_wait_asleep(c.tid, "", &c.returned))
		TH_LOG("the TRANSACT returned %d without waiting", c.ret);

	ASSERT_EQ(0, pthread_kill(tt, SIGUSR1));
	ASSERT_EQ(0, pthread_join(tt, NULL));
	ASSERT_EQ(-EINTR, c.ret);
	ASSERT_EQ((__u64)BUS1_TRANSACT_FLAG_RELEASE, c.t.done);
	/* Released once: the offset is gone now. */
	ASSERT_EQ(-ENXIO, bus1_slice_release(self->a, off));

	ASSERT_EQ(0, uffd_fill(uffd, area, page, 'z'));
	ASSERT_EQ(0, pthread_join(ts, NULL));
	ASSERT_EQ(0, s.ret);
	signal(SIGUSR1, SIG_DFL);
	munmap(area, page);
	close(uffd);
}

struct crossing {
	int fd;
	__u64 dst;
	int flip;
	int err;
};

static void *crossing_fn(void *arg)
{
	struct crossing *c = arg;
	int i;

	for (i = 0; i < 300 && !c->err; i++) {
		/* Two fresh IDs per round, named in opposite orders by the two threads. */
		__u64 x = ((__u64)(i + 1) << 12) | 0x100, y = x | 0x200;
		__u64 h[2] = { c->flip ? y : x, c->flip ? x : y };

		c->err = bus1_send(c->fd, 0, &c->dst, 1, NULL, "c", 1, h, 2, NULL, 0);
	}
	return NULL;
}

/*
 * Two threads of one peer create nodes on the fly in crossing orders: each
 * waits for the other's pending node at most while holding none of its own, so
 * both always finish (a wait cycle would hang until the harness times out).
 */
/* Up to 7.2 s: the harness default is less than five times that. */
TEST_F_TIMEOUT(order, crossing_creations_do_not_deadlock, 40)
{
	struct crossing c[2];
	pthread_t t[2];
	__u64 to_b = INV;
	int i, other;

	ASSERT_EQ(0, bus1_xfer(self->b, N2, self->a, &to_b));
	for (i = 0; i < 2; i++) {
		c[i].fd = self->a;
		c[i].dst = to_b;
		c[i].flip = i;
		c[i].err = 0;
		ASSERT_EQ(0, pthread_create(&t[i], NULL, crossing_fn, &c[i]));
	}
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, pthread_join(t[i], NULL));
		ASSERT_EQ(0, c[i].err);
	}
	/* B got all 600 messages, each with two valid handles. */
	for (i = 0; i < 600; i++) {
		struct bus1_cmd_recv r;
		const __u64 *h;

		ASSERT_EQ(0, bus1_recv(self->b, 0, ANY_OFFSET, &r));
		ASSERT_EQ((__u64)BUS1_MSG_DATA, r.msg.type);
		h = slice_handles(self->pool_b, &r);
		ASSERT_NE(INV, h[0]);
		ASSERT_NE(INV, h[1]);
		ASSERT_NE(h[0], h[1]);
		ASSERT_EQ(0, bus1_errno(ioctl(self->b, BUS1_CMD_SLICE_RELEASE, &r.msg.offset)));
	}
	ASSERT_EQ(0, drain_destroys(self->b, INV, &other));
	ASSERT_EQ(0, other);
}

/*
 * A precedence graph over n messages, for the one-order tests: @succ holds
 * each message's successors, @width per message, @n_succ how many, @indeg
 * its predecessors.
 */
static void pg_edge(int *succ, int width, int *n_succ, int *indeg, int u, int v)
{
	succ[u * width + n_succ[u]++] = v;
	indeg[v]++;
}

/* Adds the program order of @senders senders of @msgs messages each. */
static void pg_program_order(int *succ, int width, int *n_succ, int *indeg, int senders,
			     int msgs)
{
	int i, j;

	for (i = 0; i < senders; i++)
		for (j = 0; j + 1 < msgs; j++)
			pg_edge(succ, width, n_succ, indeg, i * msgs + j, i * msgs + j + 1);
}

/*
 * Kahn's algorithm, with @queue room for @n messages: returns how many
 * messages come out, all @n exactly if no message is on a cycle.
 */
static int pg_sorted(const int *succ, int width, const int *n_succ, int *indeg, int *queue,
		     int n)
{
	int i, j, head = 0, tail = 0;

	for (i = 0; i < n; i++)
		if (!indeg[i])
			queue[tail++] = i;
	while (head < tail) {
		int v = queue[head++];

		for (j = 0; j < n_succ[v]; j++)
			if (!--indeg[succ[v * width + j]])
				queue[tail++] = succ[v * width + j];
	}
	return head;
}

#define MC_SENDERS 3
#define MC_MSGS 200

struct mc_sender {
	int fd;
	int idx;
	__u64 dst[2];
	int err;
};

static void *mc_send_fn(void *arg)
{
	struct mc_sender *m = arg;
	__u32 payload[2];
	int i;

	for (i = 0; i < MC_MSGS; i++) {
		payload[0] = m->idx;
		payload[1] = i;
		m->err = bus1_send(m->fd, 0, m->dst, 2, NULL, payload, sizeof(payload), NULL, 0, NULL, 0);
		if (m->err)
			break;
	}
	return NULL;
}

/*
 * Three senders multicast to overlapping pairs of three receivers (S0 to R0 and
 * R1, S1 to R1 and R2, S2 to R2 and R0), concurrently. No two receivers share
 * more than one sender, so comparing receivers pairwise proves nothing; the
 * test builds the precedence graph of all receivers' logs plus each sender's
 * program order and requires it to be acyclic: one global order.
 */
TEST(multicast_partial_overlap_is_one_order)
{
	static int succ[MC_SENDERS * MC_MSGS][2 * MC_SENDERS + 1];
	static int n_succ[MC_SENDERS * MC_MSGS], indeg[MC_SENDERS * MC_MSGS];
	static int queue[MC_SENDERS * MC_MSGS];
	struct mc_sender snd[MC_SENDERS];
	pthread_t t[MC_SENDERS];
	int r[MC_SENDERS], i, j, seen;
	const uint8_t *pool[MC_SENDERS];

	memset(n_succ, 0, sizeof(n_succ));
	memset(indeg, 0, sizeof(indeg));
	for (i = 0; i < MC_SENDERS; i++) {
		r[i] = bus1_peer_new();
		ASSERT_LE(0, r[i]);
		pool[i] = bus1_pool_map(r[i], POOL_SIZE);
		ASSERT_NE(NULL, pool[i]);
		snd[i].fd = bus1_peer_new();
		ASSERT_LE(0, snd[i].fd);
		snd[i].idx = i;
		snd[i].err = 0;
	}
	for (i = 0; i < MC_SENDERS; i++)
		for (j = 0; j < 2; j++)
			ASSERT_EQ(0, bus1_xfer(r[(i + j) % MC_SENDERS], N1, snd[i].fd,
					       &snd[i].dst[j]));
	for (i = 0; i < MC_SENDERS; i++)
		ASSERT_EQ(0, pthread_create(&t[i], NULL, mc_send_fn, &snd[i]));
	for (i = 0; i < MC_SENDERS; i++) {
		ASSERT_EQ(0, pthread_join(t[i], NULL));
		ASSERT_EQ(0, snd[i].err);
	}

	/* Edges: consecutive entries of each receiver, and each sender's order. */
	for (i = 0; i < MC_SENDERS; i++) {
		struct bus1_cmd_recv m;
		int prev = -1, n = 0;

		while (bus1_recv(r[i], 0, ANY_OFFSET, &m) == 0) {
			const __u32 *p = (const __u32 *)((const char *)pool[i] + m.msg.offset);
			int v;

			ASSERT_EQ((__u64)BUS1_MSG_DATA, m.msg.type);
			ASSERT_EQ((__u64)8, m.msg.n_bytes);
			ASSERT_GT(MC_SENDERS, (int)p[0]);
			ASSERT_GT(MC_MSGS, (int)p[1]);
			v = p[0] * MC_MSGS + p[1];
			if (prev >= 0)
				pg_edge(&succ[0][0], 2 * MC_SENDERS + 1, n_succ, indeg, prev, v);
			prev = v;
			n++;
			ASSERT_EQ(0, bus1_errno(ioctl(r[i], BUS1_CMD_SLICE_RELEASE, &m.msg.offset)));
		}
		/* Every message of both senders of this receiver, exactly once. */
		ASSERT_EQ(2 * MC_MSGS, n);
	}
	pg_program_order(&succ[0][0], 2 * MC_SENDERS + 1, n_succ, indeg, MC_SENDERS, MC_MSGS);

	/* Kahn's algorithm: every message must come out. */
	seen = pg_sorted(&succ[0][0], 2 * MC_SENDERS + 1, n_succ, indeg, queue,
			 MC_SENDERS * MC_MSGS);
	ASSERT_EQ(MC_SENDERS * MC_MSGS, seen)
		TH_LOG("%d messages are on a cycle of the receivers' orders",
		       MC_SENDERS * MC_MSGS - seen);

	for (i = 0; i < MC_SENDERS; i++) {
		munmap((void *)pool[i], POOL_SIZE);
		close(r[i]);
		close(snd[i].fd);
	}
}

#define UC_THREADS 3	/* two threads of one peer, one of another */
#define UC_MSGS 400	/* per sending thread, half to each receiver */

struct uc_sender {
	int fd;
	int idx;
	const __u64 *dst;	/* the handles of R0 and R1 */
	pid_t tid;
	int err;
};

static void *uc_send_fn(void *arg)
{
	struct uc_sender *u = arg;
	int j;

	u->tid = gettid();
	for (j = 0; j < UC_MSGS; j++) {
		/* Threads 0 and 2 send to R0, R1, R0, ...; thread 1 to R1, R0, ... */
		u->err = bus1_send(u->fd, 0, &u->dst[(u->idx + j) % 2], 1, NULL, NULL, 0,
				   NULL, 0, NULL, 0);
		if (u->err)
			break;
	}
	return NULL;
}

struct uc_receiver {
	int fd;
	pid_t log[UC_THREADS * UC_MSGS / 2];
	int n;
	int err;
};

static void *uc_recv_fn(void *arg)
{
	struct uc_receiver *r = arg;
	struct bus1_cmd_recv m;

	/* Receiving while the senders send keeps the memory of each message for the next. */
	while (r->n < UC_THREADS * UC_MSGS / 2) {
		memset(&m, 0, sizeof(m));
		m.flags = BUS1_RECV_FLAG_WAIT;
		m.max_offset = ANY_OFFSET;
		/* A message that never comes fails the test here, not at the harness's timeout. */
		m.msg.offset = 60ULL * 1000 * 1000 * 1000;
		r->err = bus1_errno(ioctl(r->fd, BUS1_CMD_RECV, &m));
		if (r->err)
			break;
		if (m.msg.type != BUS1_MSG_DATA || m.msg.n_bytes) {
			r->err = EBADMSG;
			break;
		}
		r->log[r->n++] = m.msg.tid;
		r->err = bus1_slice_release(r->fd, m.msg.offset);
		if (r->err)
			break;
	}
	return NULL;
}

/*
 * Two threads of one peer and a thread of another send empty unicasts to two
 * receivers in crossed orders, while the receivers take them as they come (so
 * each keeps the memory of a message for the next): such a message is
 * committed in the critical section of its receiver that charges it, with a
 * tick of its sender's clock taken under that receiver's lock, synced to the
 * receiver's clock, which the other sender moves too. Every message must
 * arrive, and the receivers' orders and each thread's program order must form
 * no cycle: one global order.
 */
TEST(unicasts_of_one_peer_from_two_threads_are_one_order)
{
	static int succ[UC_THREADS * UC_MSGS][2], n_succ[UC_THREADS * UC_MSGS];
	static int indeg[UC_THREADS * UC_MSGS], queue[UC_THREADS * UC_MSGS];
	static struct uc_receiver rcv[2];
	struct uc_sender snd[UC_THREADS];
	pthread_t ts[UC_THREADS], tr[2];
	const uint8_t *pool[2];
	int s, q, i, j, seen;
	__u64 dst[2], dst_q[2];

	memset(n_succ, 0, sizeof(n_succ));
	memset(indeg, 0, sizeof(indeg));
	s = bus1_peer_new();
	ASSERT_LE(0, s);
	q = bus1_peer_new();
	ASSERT_LE(0, q);
	for (i = 0; i < 2; i++) {
		rcv[i].fd = bus1_peer_new();
		ASSERT_LE(0, rcv[i].fd);
		pool[i] = bus1_pool_map(rcv[i].fd, POOL_SIZE);
		ASSERT_NE(NULL, pool[i]);
		rcv[i].n = 0;
		rcv[i].err = 0;
		ASSERT_EQ(0, bus1_xfer(rcv[i].fd, N1, s, &dst[i]));
		ASSERT_EQ(0, bus1_xfer(rcv[i].fd, N1, q, &dst_q[i]));
	}
	for (i = 0; i < 2; i++)
		ASSERT_EQ(0, pthread_create(&tr[i], NULL, uc_recv_fn, &rcv[i]));
	for (i = 0; i < UC_THREADS; i++) {
		snd[i] = (struct uc_sender){ .fd = i < 2 ? s : q, .idx = i, .dst = i < 2 ? dst : dst_q };
		ASSERT_EQ(0, pthread_create(&ts[i], NULL, uc_send_fn, &snd[i]));
	}
	for (i = 0; i < UC_THREADS; i++) {
		ASSERT_EQ(0, pthread_join(ts[i], NULL));
		ASSERT_EQ(0, snd[i].err);
	}
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, pthread_join(tr[i], NULL));
		ASSERT_EQ(0, rcv[i].err);
	}

	/*
	 * Message (t, j) is thread t's j-th send, index t * UC_MSGS + j. The
	 * messages are empty, so the k-th one of thread t at receiver r is taken
	 * as the k-th that t sent there, j = 2k + (t + r) % 2; what is checked is
	 * the order across threads and receivers, which a cycle through threads'
	 * program orders and both receivers' orders would break.
	 */
	for (i = 0; i < 2; i++) {
		int k[UC_THREADS] = { 0 }, prev = -1;

		for (j = 0; j < rcv[i].n; j++) {
			int t, v;

			for (t = 0; t < UC_THREADS && snd[t].tid != rcv[i].log[j]; t++)
				;
			ASSERT_GT(UC_THREADS, t);
			v = t * UC_MSGS + 2 * k[t]++ + (t + i) % 2;
			ASSERT_GT(UC_THREADS * UC_MSGS, v);
			if (prev >= 0)
				pg_edge(&succ[0][0], 2, n_succ, indeg, prev, v);
			prev = v;
		}
		for (j = 0; j < UC_THREADS; j++)
			ASSERT_EQ(UC_MSGS / 2, k[j]);
	}
	pg_program_order(&succ[0][0], 2, n_succ, indeg, UC_THREADS, UC_MSGS);
	seen = pg_sorted(&succ[0][0], 2, n_succ, indeg, queue, UC_THREADS * UC_MSGS);
	ASSERT_EQ(UC_THREADS * UC_MSGS, seen)
		TH_LOG("%d messages are on a cycle of the receivers' and threads' orders",
		       UC_THREADS * UC_MSGS - seen);

	for (i = 0; i < 2; i++) {
		munmap((void *)pool[i], POOL_SIZE);
		close(rcv[i].fd);
	}
	close(s);
	close(q);
}

TEST_HARNESS_MAIN
