// SPDX-License-Identifier: GPL-2.0
/*
 * bus1 one-call round trip: RECV with BUS1_RECV_FLAG_WAIT and
 * BUS1_CMD_TRANSACT (release, send, wait and receive in one ioctl).
 *
 * Every test uses the extension, so every test fails on a module without
 * it (EINVAL for the RECV flag, ENOTTY for the command).
 *
 * A blocked receiver is a thread; the main thread waits (bounded) until the
 * kernel reports it sleeping (/proc/self/task/TID/stat state S) before it
 * acts, so each test exercises the wake-up it names. Every wait has a
 * timeout, so a broken kernel fails the test instead of hanging it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <linux/bus1.h>

#include "kselftest_harness.h"
#include "bus1_util.h"

#define N1 ((__u64)0x100)
#define RID(n) ((((__u64)(n)) << 3) | BUS1_HANDLE_FLAG_MANAGED | BUS1_HANDLE_FLAG_REMOTE)
#define INV ((__u64)BUS1_HANDLE_INVALID)
#define OFF_INV ((__u64)BUS1_OFFSET_INVALID)
#define ANY_OFFSET ((__u64)-1)
#define PTR(p) ((__u64)(uintptr_t)(p))
#define MAP_LEN (16UL << 20)
#define MS ((__u64)1000000)
/* A timeout that is "forever" for a test but still ends a broken one. */
#define LONG_WAIT (20000 * MS)

#define STAGE_ALL (BUS1_TRANSACT_FLAG_RELEASE | BUS1_TRANSACT_FLAG_SEND | \
		   BUS1_TRANSACT_FLAG_RECV)

/* Gives peer @dst a handle to node N1 of @owner; the handle ID. */
static __u64 handle_to(int owner, int dst)
{
	__u64 h;

	return bus1_xfer(owner, N1, dst, &h) ? INV : h;
}

/* RECV with @flags; with WAIT, @timeout_ns goes in msg.offset. */
static int recv_wait(int fd, __u64 flags, __u64 timeout_ns, struct bus1_cmd_recv *r)
{
	memset(r, 0xa5, sizeof(*r));
	r->flags = flags;
	r->max_offset = ANY_OFFSET;
	r->msg.offset = timeout_ns;
	return bus1_errno(ioctl(fd, BUS1_CMD_RECV, r));
}

/* A TRANSACT argument: release @rel (if not OFF_INV), send @s to @dst (if @s), receive. */
struct tx {
	struct bus1_cmd_transact t;
	struct iovec v;
	__u64 dst;
};

static void tx_init(struct tx *x, __u64 flags, __u64 rel, __u64 dst, const char *s,
		    __u64 recv_flags, __u64 timeout_ns)
{
	memset(x, 0, sizeof(*x));
	x->t.flags = flags;
	x->t.release_offset = rel;
	x->t.done = 0xdeadbeef;
	x->dst = dst;
	x->v.iov_base = (void *)s;
	x->v.iov_len = s ? strlen(s) : 0;
	x->t.send.ptr_destinations = PTR(&x->dst);
	x->t.send.n_destinations = 1;
	x->t.send.ptr_vecs = PTR(&x->v);
	x->t.send.n_vecs = s ? 1 : 0;
	memset(&x->t.recv, 0xa5, sizeof(x->t.recv));
	x->t.recv.flags = recv_flags;
	x->t.recv.max_offset = ANY_OFFSET;
	x->t.recv.msg.offset = timeout_ns;
}

static int transact(int fd, struct tx *x)
{
	return bus1_errno(ioctl(fd, BUS1_CMD_TRANSACT, &x->t));
}

/* The slices charged to peer @fd (its accounting, from fdinfo). */
static long long pool_slices(int fd)
{
	return bus1_fdinfo_value(fd, "bus1-limits:", "slices", NULL);
}

/* The data messages queued on peer @fd (from fdinfo). */
static long long queued(int fd)
{
	return bus1_fdinfo_value(fd, "bus1-queue:", "messages", NULL);
}

static __u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* Whether thread @tid of this process sleeps (state S), checked for up to 10 s. */
static int thread_sleeps(pid_t tid)
{
	char path[64], buf[256], *p;
	int i;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	for (i = 0; i < 10 * 1000; i++) {
		if (bus1_read_file(path, buf, sizeof(buf)) > 0) {
			p = strrchr(buf, ')');
			if (p && p[1] == ' ' && p[2] == 'S')
				return 1;
		}
		usleep(1000);
	}
	return 0;
}

/* A receiver thread: one RECV with WAIT (or one TRANSACT) on @fd. */
struct waiter {
	int fd;
	__u64 timeout_ns;
	struct tx *x;			/* TRANSACT instead of RECV if set */
	volatile pid_t tid;
	int ret;
	__u64 elapsed_ns;
	struct bus1_cmd_recv r;
};

static void *waiter_fn(void *arg)
{
	struct waiter *w = arg;
	__u64 t0;

	w->tid = gettid();
	t0 = now_ns();
	if (w->x)
		w->ret = transact(w->fd, w->x);
	else
		w->ret = recv_wait(w->fd, BUS1_RECV_FLAG_WAIT, w->timeout_ns, &w->r);
	w->elapsed_ns = now_ns() - t0;
	return NULL;
}

/* Starts a waiter and returns once it sleeps in the kernel. */
static int start_waiter(pthread_t *th, struct waiter *w)
{
	w->tid = 0;
	if (pthread_create(th, NULL, waiter_fn, w))
		return -1;
	while (!w->tid)
		sched_yield();
	return thread_sleeps(w->tid) ? 0 : -1;
}

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	(void)sig;
	got_signal = 1;
}

/* A and B, each owning node N1; A holds a handle to B's (to_b), B to A's (to_a). */
FIXTURE(pair) {
	int a, b;
	__u64 to_b, to_a;
	const uint8_t *ma, *mb;
};

FIXTURE_SETUP(pair)
{
	self->a = bus1_peer_new();
	self->b = bus1_peer_new();
	ASSERT_LE(0, self->a);
	ASSERT_LE(0, self->b);
	self->to_b = handle_to(self->b, self->a);
	self->to_a = handle_to(self->a, self->b);
	ASSERT_EQ(RID(1), self->to_b);
	ASSERT_EQ(RID(1), self->to_a);
	self->ma = bus1_pool_map(self->a, MAP_LEN);
	self->mb = bus1_pool_map(self->b, MAP_LEN);
	ASSERT_NE(NULL, self->ma);
	ASSERT_NE(NULL, self->mb);
}

FIXTURE_TEARDOWN(pair)
{
	bus1_peer_free(self->a, self->ma, MAP_LEN);
	bus1_peer_free(self->b, self->mb, MAP_LEN);
}

#define ASSERT_PAYLOAD(_map, _r, _str) do {					\
	ASSERT_EQ((__u64)BUS1_MSG_DATA, (_r)->msg.type);			\
	ASSERT_EQ((__u64)strlen(_str), (_r)->msg.n_bytes);			\
	ASSERT_EQ(0, memcmp((_map) + (_r)->msg.offset, (_str), strlen(_str)));	\
} while (0)

/* --- RECV with WAIT ------------------------------------------------------- */

/* A queued message is returned at once, like a plain RECV. */
TEST_F(pair, recv_wait_queued)
{
	struct bus1_cmd_recv r;

	ASSERT_EQ(0, bus1_send_str(self->a, self->to_b, "queued"));
	ASSERT_EQ(0, recv_wait(self->b, BUS1_RECV_FLAG_WAIT, LONG_WAIT, &r));
	ASSERT_PAYLOAD(self->mb, &r, "queued");
	ASSERT_EQ(N1, r.msg.destination);
	ASSERT_EQ(0, bus1_slice_release(self->b, r.msg.offset));
}

/* An empty queue: ETIMEDOUT after the timeout (rounded up to ticks), not before. */
TEST_F(pair, recv_wait_timeout_etimedout)
{
	struct bus1_cmd_recv r;
	__u64 t0 = now_ns(), dt;

	ASSERT_EQ(-ETIMEDOUT, recv_wait(self->b, BUS1_RECV_FLAG_WAIT, 50 * MS, &r));
	dt = now_ns() - t0;
	ASSERT_LE(50 * MS, dt);
	ASSERT_GT(5000 * MS, dt);
	/* Without WAIT the same call does not block. */
	ASSERT_EQ(-EAGAIN, recv_wait(self->b, 0, 0, &r));
}

/* A receiver blocked in RECV with WAIT wakes up for a SEND and gets the message. */
TEST_F(pair, recv_wait_wakes_on_send)
{
	struct waiter w = { .fd = self->b, .timeout_ns = LONG_WAIT };
	pthread_t th;

	ASSERT_EQ(0, start_waiter(&th, &w));
	ASSERT_EQ(0, bus1_send_str(self->a, self->to_b, "wake"));
	ASSERT_EQ(0, pthread_join(th, NULL));
	ASSERT_EQ(0, w.ret);
	/* A lost wake-up still succeeds, but only when the timeout ends the sleep. */
	ASSERT_GT(LONG_WAIT / 2, w.elapsed_ns) TH_LOG("the SEND did not wake the waiter");
	ASSERT_PAYLOAD(self->mb, &w.r, "wake");
	ASSERT_EQ(1, pool_slices(self->b));
	ASSERT_EQ(0, bus1_slice_release(self->b, w.r.msg.offset));
	ASSERT_EQ(0, pool_slices(self->b));
}

/*
 * A signal ends the wait with EINTR, even with SA_RESTART (the call is not
 * restarted), and leaves the queue untouched.
 */
TEST_F(pair, recv_wait_signal_eintr)
{
	struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESTART };
	struct waiter w = { .fd = self->b, .timeout_ns = LONG_WAIT };
	struct bus1_cmd_recv r;
	pthread_t th;

	sigemptyset(&sa.sa_mask);
	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));
	got_signal = 0;
	ASSERT_EQ(0, start_waiter(&th, &w));
	ASSERT_EQ(0, pthread_kill(th, SIGUSR1));
	ASSERT_EQ(0, pthread_join(th, NULL));
	ASSERT_EQ(1, got_signal);
	ASSERT_EQ(-EINTR, w.ret);
	ASSERT_GT(LONG_WAIT / 2, w.elapsed_ns);
	ASSERT_EQ(0, bus1_send_str(self->a, self->to_b, "after"));
	ASSERT_EQ(0, recv_wait(self->b, BUS1_RECV_FLAG_WAIT, LONG_WAIT, &r));
	ASSERT_PAYLOAD(self->mb, &r, "after");
	signal(SIGUSR1, SIG_DFL);
}

/* Disconnecting the peer wakes its blocked receiver (ESHUTDOWN) instead of waiting for it. */
TEST_F(pair, recv_wait_disconnect_eshutdown)
{
	struct waiter w = { .fd = self->b, .timeout_ns = LONG_WAIT };
	pthread_t th;

	ASSERT_EQ(0, start_waiter(&th, &w));
	ASSERT_EQ(0, bus1_errno(ioctl(self->b, BUS1_CMD_PEER_DISCONNECT, 0)));
	ASSERT_EQ(0, pthread_join(th, NULL));
	ASSERT_EQ(-ESHUTDOWN, w.ret);
	ASSERT_GT(LONG_WAIT / 2, w.elapsed_ns);
}

/* A sender thread of the test below: @n messages (its index, a sequence number) to @dst. */
struct flood {
	int fd;
	__u64 dst;
	uint32_t index, n;
	int ret;
};

static void *flood_fn(void *arg)
{
	struct flood *f = arg;
	uint32_t m[2] = { f->index, 0 };

	for (; m[1] < f->n; m[1]++) {
		f->ret = bus1_send(f->fd, 0, &f->dst, 1, NULL, m, sizeof(m), NULL, 0, NULL, 0);
		if (f->ret)
			break;
	}
	return NULL;
}

/*
 * A receiver that sleeps in RECV with WAIT, in poll, or tries a plain RECV,
 * in turn, while two threads send as fast as they can, gets every message
 * exactly once and each sender's in order, and no wait runs into its
 * timeout: a wake-up that a waker skipped (it saw no sleeper) or a readable
 * queue that RECV took for empty would leave a message behind until the
 * timeout, or forever.
 */
TEST_F(pair, waits_and_polls_miss_no_message_of_concurrent_senders)
{
	enum { SENDERS = 2, PER_SENDER = 1000 };
	struct flood f[SENDERS];
	uint32_t next[SENDERS] = { 0 }, got = 0, empty = 0, m[2];
	struct pollfd p = { .fd = self->b, .events = POLLIN };
	struct bus1_cmd_recv r;
	pthread_t th[SENDERS];
	int i, ret;

	for (i = 0; i < SENDERS; i++) {
		f[i] = (struct flood){ .fd = self->a, .dst = self->to_b, .index = i,
				       .n = PER_SENDER };
		ASSERT_EQ(0, pthread_create(&th[i], NULL, flood_fn, &f[i]));
	}
	for (i = 0; got < SENDERS * PER_SENDER; i++) {
		switch (i % 3) {
		case 0:
			ret = recv_wait(self->b, BUS1_RECV_FLAG_WAIT, LONG_WAIT, &r);
			ASSERT_EQ(0, ret) TH_LOG("WAIT after %u messages: %s", got, strerror(-ret));
			break;
		case 1:
			ret = poll(&p, 1, LONG_WAIT / MS);
			ASSERT_EQ(1, ret) TH_LOG("poll after %u messages", got);
			ASSERT_TRUE(p.revents & POLLIN);
			ret = bus1_recv(self->b, 0, ANY_OFFSET, &r);
			break;
		default:
			ret = bus1_recv(self->b, 0, ANY_OFFSET, &r);
			if (ret == -EAGAIN) {
				empty++;
				continue;
			}
			break;
		}
		/* One receiver: what poll reported readable is still there for RECV. */
		ASSERT_EQ(0, ret) TH_LOG("RECV after %u messages: %s", got, strerror(-ret));
		ASSERT_EQ((__u64)BUS1_MSG_DATA, r.msg.type);
		ASSERT_EQ(sizeof(m), r.msg.n_bytes);
		memcpy(m, self->mb + r.msg.offset, sizeof(m));
		ASSERT_EQ(0, bus1_slice_release(self->b, r.msg.offset));
		ASSERT_GT((uint32_t)SENDERS, m[0]);
		ASSERT_EQ(next[m[0]], m[1]) TH_LOG("sender %u", m[0]);
		next[m[0]]++;
		got++;
	}
	for (i = 0; i < SENDERS; i++) {
		ASSERT_EQ(0, pthread_join(th[i], NULL));
		ASSERT_EQ(0, f[i].ret);
		ASSERT_EQ((uint32_t)PER_SENDER, next[i]);
	}
	/* Nothing is left, and the queue says so. */
	ASSERT_EQ(-EAGAIN, bus1_recv(self->b, 0, ANY_OFFSET, &r));
	ASSERT_EQ(0, poll(&p, 1, 0));
	ASSERT_EQ(0, pool_slices(self->b));
	TH_LOG("%u plain RECVs found the queue empty", empty);
}

/* A waiter of the test below: takes messages until it takes an empty one. */
struct taker {
	int fd;
	const uint8_t *pool;
	uint32_t rounds;
	uint32_t *taken;		/* per message, shared */
	uint32_t *total;		/* messages taken by all, shared */
	pid_t tid;			/* atomic */
	int exited;			/* atomic */
	int ret;
	__u64 longest_ns;		/* the longest of its waits */
};

static void *taker_fn(void *arg)
{
	struct taker *t = arg;
	struct bus1_cmd_recv r;
	uint32_t seq;
	__u64 t0, took;

	__atomic_store_n(&t->tid, gettid(), __ATOMIC_RELEASE);
	for (;;) {
		t0 = now_ns();
		t->ret = recv_wait(t->fd, BUS1_RECV_FLAG_WAIT, LONG_WAIT, &r);
		took = now_ns() - t0;
		if (took > t->longest_ns)
			t->longest_ns = took;
		if (t->ret)
			break;
		if (r.msg.n_bytes != sizeof(seq)) {
			t->ret = bus1_slice_release(t->fd, r.msg.offset);
			break;
		}
		memcpy(&seq, t->pool + r.msg.offset, sizeof(seq));
		t->ret = bus1_slice_release(t->fd, r.msg.offset);
		if (!t->ret && seq >= t->rounds)
			t->ret = -ERANGE;
		if (t->ret)
			break;
		__atomic_fetch_add(&t->taken[seq], 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(t->total, 1, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&t->exited, 1, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * Threads waiting in RECV with WAIT on one peer share its messages: each send
 * wakes every sleeper, one takes the message, and the others find nothing and
 * wait again, to be woken by the next send. Every waiter sleeps before each
 * send, so every send has losers. Each message is taken exactly once and no
 * wait lasts until its timeout: a loser that went back to sleep where no send
 * wakes it would sleep until the timeout ends its wait.
 */
TEST_F(pair, waiters_that_find_nothing_wait_again)
{
	enum { WAITERS = 3, ROUNDS = 40 };
	uint32_t taken[ROUNDS] = { 0 }, total = 0, seq;
	struct taker t[WAITERS];
	pthread_t th[WAITERS];
	int i, gone;

	for (i = 0; i < WAITERS; i++) {
		t[i] = (struct taker){ .fd = self->b, .pool = self->mb, .rounds = ROUNDS,
				       .taken = taken, .total = &total };
		ASSERT_EQ(0, pthread_create(&th[i], NULL, taker_fn, &t[i]));
	}
	for (seq = 0; seq < ROUNDS; seq++) {
		for (i = 0; i < WAITERS; i++) {
			while (!__atomic_load_n(&t[i].tid, __ATOMIC_ACQUIRE))
				sched_yield();
			ASSERT_TRUE(thread_sleeps(t[i].tid)) TH_LOG("waiter %d, round %u", i, seq);
		}
		ASSERT_EQ(0, bus1_send(self->a, 0, &self->to_b, 1, NULL, &seq, sizeof(seq),
				       NULL, 0, NULL, 0));
		/* Taken by one of them, unless one of them failed. */
		for (gone = 0; __atomic_load_n(&total, __ATOMIC_ACQUIRE) != seq + 1 && !gone;) {
			for (i = 0; i < WAITERS; i++)
				gone |= __atomic_load_n(&t[i].exited, __ATOMIC_ACQUIRE);
			sched_yield();
		}
		ASSERT_EQ(seq + 1, __atomic_load_n(&total, __ATOMIC_ACQUIRE));
	}
	/* One empty message ends each waiter, which takes no other after it. */
	for (i = 0; i < WAITERS; i++)
		ASSERT_EQ(0, bus1_send(self->a, 0, &self->to_b, 1, NULL, NULL, 0, NULL, 0,
				       NULL, 0));
	for (i = 0; i < WAITERS; i++) {
		ASSERT_EQ(0, pthread_join(th[i], NULL));
		ASSERT_EQ(0, t[i].ret) TH_LOG("waiter %d: %s", i, strerror(-t[i].ret));
		ASSERT_GT(LONG_WAIT / 2, t[i].longest_ns)
			TH_LOG("waiter %d slept off the queue", i);
	}
	for (seq = 0; seq < ROUNDS; seq++)
		ASSERT_EQ(1U, taken[seq]) TH_LOG("message %u", seq);
	ASSERT_EQ(0, pool_slices(self->b));
}

/* WAIT with SEED is refused (the seed is never queued); unknown bits stay refused. */
TEST_F(pair, recv_wait_flags_einval)
{
	struct bus1_cmd_recv r;

	ASSERT_EQ(0, bus1_send_str(self->a, self->to_b, "kept"));
	ASSERT_EQ(-EINVAL, recv_wait(self->b, BUS1_RECV_FLAG_WAIT | BUS1_RECV_FLAG_SEED,
				     MS, &r));
	ASSERT_EQ(-EINVAL, recv_wait(self->b, BUS1_RECV_FLAG_WAIT | (1ULL << 4), MS, &r));
	ASSERT_EQ(0, recv_wait(self->b, BUS1_RECV_FLAG_WAIT | BUS1_RECV_FLAG_PEEK, MS, &r));
	ASSERT_PAYLOAD(self->mb, &r, "kept");
	ASSERT_EQ(0, recv_wait(self->b, BUS1_RECV_FLAG_WAIT, MS, &r));
	ASSERT_PAYLOAD(self->mb, &r, "kept");
}

/* --- TRANSACT -------------------------------------------------------------- */

/*
 * A round trip with one call per side: A's TRANSACT sends and waits, B's
 * TRANSACT receives, then releases, replies and receives (nothing: EAGAIN
 * without WAIT). Payloads, stages done and slice accounting on both sides.
 */
TEST_F(pair, transact_round_trip)
{
	struct tx xa, xb;
	struct waiter w = { .fd = self->a, .x = &xa };
	pthread_t th;

	tx_init(&xa, BUS1_TRANSACT_FLAG_SEND | BUS1_TRANSACT_FLAG_RECV, 0, self->to_b,
		"ping", BUS1_RECV_FLAG_WAIT, LONG_WAIT);
	ASSERT_EQ(0, start_waiter(&th, &w));

	/* B: receive only (the request is queued by now). */
	tx_init(&xb, BUS1_TRANSACT_FLAG_RECV, 0, 0, NULL, BUS1_RECV_FLAG_WAIT, LONG_WAIT);
	ASSERT_EQ(0, transact(self->b, &xb));
	ASSERT_EQ((__u64)BUS1_TRANSACT_FLAG_RECV, xb.t.done);
	ASSERT_PAYLOAD(self->mb, &xb.t.recv, "ping");
	ASSERT_EQ(N1, xb.t.recv.msg.destination);
	ASSERT_EQ((__u32)getpid(), xb.t.recv.msg.pid);
	ASSERT_EQ(1, pool_slices(self->b));

	/* B: release the request, reply, and find nothing more. */
	tx_init(&xb, STAGE_ALL, xb.t.recv.msg.offset, self->to_a, "pong", 0, 0);
	ASSERT_EQ(-EAGAIN, transact(self->b, &xb));
	ASSERT_EQ((__u64)(BUS1_TRANSACT_FLAG_RELEASE | BUS1_TRANSACT_FLAG_SEND), xb.t.done);
	ASSERT_EQ(0, pool_slices(self->b));

	ASSERT_EQ(0, pthread_join(th, NULL));
	ASSERT_EQ(0, w.ret);
	ASSERT_GT(LONG_WAIT / 2, w.elapsed_ns) TH_LOG("the reply did not wake the waiter");
	ASSERT_EQ((__u64)(BUS1_TRANSACT_FLAG_SEND | BUS1_TRANSACT_FLAG_RECV), xa.t.done);
	ASSERT_PAYLOAD(self->ma, &xa.t.recv, "pong");
	ASSERT_EQ(N1, xa.t.recv.msg.destination);
	ASSERT_EQ(1, pool_slices(self->a));
	ASSERT_EQ(0, bus1_slice_release(self->a, xa.t.recv.msg.offset));
	ASSERT_EQ(0, pool_slices(self->a));
}

/*
 * The stages run in order, each as the standalone command: the receive
 * stage returns the older queued message before the reply to this call's
 * send, and a peer that sends to itself through TRANSACT receives its own
 * message in the same call.
 */
TEST_F(pair, transact_order)
{
	struct bus1_cmd_recv r;
	struct tx x;

	/* A's queue: "first" (from B), then A's own "self" (to its node). */
	ASSERT_EQ(0, bus1_send_str(self->b, self->to_a, "first"));
	tx_init(&x, BUS1_TRANSACT_FLAG_SEND | BUS1_TRANSACT_FLAG_RECV, 0, N1, "self",
		BUS1_RECV_FLAG_WAIT, LONG_WAIT);
	ASSERT_EQ(0, transact(self->a, &x));
	ASSERT_PAYLOAD(self->ma, &x.t.recv, "first");

	/* Release "first" and receive "self", which the last call sent. */
	tx_init(&x, BUS1_TRANSACT_FLAG_RELEASE | BUS1_TRANSACT_FLAG_RECV, x.t.recv.msg.offset,
		0, NULL, BUS1_RECV_FLAG_WAIT, LONG_WAIT);
	ASSERT_EQ(0, transact(self->a, &x));
	ASSERT_PAYLOAD(self->ma, &x.t.recv, "self");
	ASSERT_EQ(N1, x.t.recv.msg.destination);
	ASSERT_EQ(0, bus1_slice_release(self->a, x.t.recv.msg.offset));
	ASSERT_EQ(-EAGAIN, recv_wait(self->a, 0, 0, &r));

	/* What A sends by TRANSACT is ordered after what it sent before. */
	ASSERT_EQ(0, bus1_send_str(self->a, self->to_b, "one"));
	tx_init(&x, BUS1_TRANSACT_FLAG_SEND, 0, self->to_b, "two", 0, 0);
	ASSERT_EQ(0, transact(self->a, &x));
	ASSERT_EQ((__u64)BUS1_TRANSACT_FLAG_SEND, x.t.done);
	ASSERT_EQ(0, recv_wait(self->b, BUS1_RECV_FLAG_WAIT, LONG_WAIT, &r));
	ASSERT_PAYLOAD(self->mb, &r, "one");
	ASSERT_EQ(0, recv_wait(self->b, BUS1_RECV_FLAG_WAIT, LONG_WAIT, &r));
	ASSERT_PAYLOAD(self->mb, &r, "two");
}

/*
 * Bad flags in any part, or a non-zero reserved field, fail with EINVAL
 * before any stage: the slice stays allocated, nothing is sent, nothing is
 * received, and done is not written.
 */
TEST_F(pair, transact_flags_einval_no_effect)
{
	struct bus1_cmd_recv r;
	__u64 off;
	struct tx x;
	int i;

	ASSERT_EQ(0, bus1_send_str(self->a, self->to_b, "held"));
	ASSERT_EQ(0, bus1_send_str(self->a, self->to_b, "queued"));
	ASSERT_EQ(0, recv_wait(self->b, 0, 0, &r));
	off = r.msg.offset;
	/* "held" and the queued "queued". */
	ASSERT_EQ(2, pool_slices(self->b));

	for (i = 0; i < 6; i++) {
		tx_init(&x, STAGE_ALL, off, self->to_a, "never", BUS1_RECV_FLAG_WAIT, MS);
		switch (i) {
		case 0: x.t.flags |= 1ULL << 3; break;
		case 1: x.t.flags |= 1ULL << 63; break;
		case 2: x.t.reserved = 1; break;
		case 3: x.t.send.flags = 1ULL << 2; break;
		case 4: x.t.recv.flags = 1ULL << 4; break;
		case 5: x.t.recv.flags = BUS1_RECV_FLAG_WAIT | BUS1_RECV_FLAG_SEED; break;
		}
		ASSERT_EQ(-EINVAL, transact(self->b, &x)) TH_LOG("case %d", i);
		ASSERT_EQ((__u64)0xdeadbeef, x.t.done) TH_LOG("case %d", i);
		ASSERT_EQ(2, pool_slices(self->b)) TH_LOG("case %d", i);
		ASSERT_EQ(-EAGAIN, recv_wait(self->a, 0, 0, &r)) TH_LOG("case %d", i);
	}
	/* "queued" is still there, and the held slice can still be released. */
	ASSERT_EQ(0, recv_wait(self->b, 0, 0, &r));
	ASSERT_PAYLOAD(self->mb, &r, "queued");
	ASSERT_EQ(0, bus1_slice_release(self->b, r.msg.offset));
	ASSERT_EQ(0, bus1_slice_release(self->b, off));
	ASSERT_EQ(0, pool_slices(self->b));
}

/*
 * RECV and TRANSACT copy in only their input (the message description is
 * output, but for the timeout of WAIT), yet an argument whose last byte
 * cannot be read still fails with EFAULT before anything happens, as a copy
 * of all of it would: the queued message stays queued, and TRANSACT neither
 * releases nor sends.
 */
TEST_F(pair, unreadable_argument_tail_efault_no_effect)
{
	long page = sysconf(_SC_PAGESIZE);
	struct bus1_cmd_transact *tp;
	struct bus1_cmd_recv r, *rp;
	struct tx x;
	__u64 off;
	char *m;
	int i;

	m = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, m);
	ASSERT_EQ(0, mprotect(m + page, page, PROT_NONE));
	/* Every byte on the first page, the last one on the second. */
	rp = (void *)(m + page - sizeof(*rp) + 1);
	tp = (void *)(m + page - sizeof(*tp) + 1);

	ASSERT_EQ(0, bus1_send_str(self->a, self->to_b, "held"));
	ASSERT_EQ(0, bus1_send_str(self->a, self->to_b, "queued"));
	ASSERT_EQ(0, recv_wait(self->b, 0, 0, &r));
	off = r.msg.offset;
	ASSERT_EQ(2, pool_slices(self->b));

	for (i = 0; i < 2; i++) {
		__u64 flags = i ? BUS1_RECV_FLAG_WAIT : 0;

		memset(rp, 0, sizeof(*rp) - 1);
		rp->flags = flags;
		rp->max_offset = ANY_OFFSET;
		rp->msg.offset = MS;
		ASSERT_EQ(-EFAULT, bus1_errno(ioctl(self->b, BUS1_CMD_RECV, rp))) TH_LOG("%d", i);
		ASSERT_EQ(1, queued(self->b)) TH_LOG("%d", i);

		tx_init(&x, STAGE_ALL, off, self->to_a, "never", flags, MS);
		memcpy(tp, &x.t, sizeof(*tp) - 1);
		ASSERT_EQ(-EFAULT, bus1_errno(ioctl(self->b, BUS1_CMD_TRANSACT, tp))) TH_LOG("%d", i);
		ASSERT_EQ((__u64)0xdeadbeef, tp->done) TH_LOG("%d", i);
		ASSERT_EQ(2, pool_slices(self->b)) TH_LOG("%d", i);
		ASSERT_EQ(-EAGAIN, recv_wait(self->a, 0, 0, &r)) TH_LOG("%d", i);
		ASSERT_EQ(1, queued(self->b)) TH_LOG("%d", i);
	}
	ASSERT_EQ(0, recv_wait(self->b, 0, 0, &r));
	ASSERT_PAYLOAD(self->mb, &r, "queued");
	ASSERT_EQ(0, bus1_slice_release(self->b, r.msg.offset));
	ASSERT_EQ(0, bus1_slice_release(self->b, off));
	ASSERT_EQ(0, pool_slices(self->b));
	ASSERT_EQ(0, munmap(m, 2 * page));
}

/*
 * The input of TRANSACT is copied in one piece: an input that cannot be read
 * in full fails with EFAULT before any stage runs, whichever part of it is
 * unreadable (its start, its end, all of it): nothing is released, sent or
 * received.
 */
TEST_F(pair, unreadable_input_efault_no_effect)
{
	long page = sysconf(_SC_PAGESIZE);
	struct bus1_cmd_recv r;
	struct tx x;
	char *m, *args[4];
	__u64 off;
	int i;

	/* Readable, unreadable, readable. */
	m = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, m);
	ASSERT_EQ(0, mprotect(m + page, page, PROT_NONE));

	ASSERT_EQ(0, bus1_send_str(self->a, self->to_b, "held"));
	ASSERT_EQ(0, bus1_send_str(self->a, self->to_b, "queued"));
	ASSERT_EQ(0, recv_wait(self->b, 0, 0, &r));
	off = r.msg.offset;
	ASSERT_EQ(2, pool_slices(self->b));
	tx_init(&x, STAGE_ALL, off, self->to_a, "never", 0, 0);
	/* Its first 16 bytes (flags, release offset) readable, the rest not. */
	memcpy(m + page - 16, &x.t, 16);
	args[0] = m + page - 16;
	/* Its first 16 bytes unreadable, the rest (its last byte too) readable. */
	memcpy(m + 2 * page, (char *)&x.t + 16, sizeof(x.t) - 16);
	args[1] = m + 2 * page - 16;
	/* All of it unmapped. */
	args[2] = m + page;
	args[3] = NULL;

	for (i = 0; i < 4; i++) {
		ASSERT_EQ(-EFAULT, bus1_errno(ioctl(self->b, BUS1_CMD_TRANSACT, args[i])))
			TH_LOG("%d", i);
		ASSERT_EQ(2, pool_slices(self->b)) TH_LOG("%d", i);
		ASSERT_EQ(1, queued(self->b)) TH_LOG("%d", i);
		ASSERT_EQ(-EAGAIN, recv_wait(self->a, 0, 0, &r)) TH_LOG("%d", i);
	}
	ASSERT_EQ(0, recv_wait(self->b, 0, 0, &r));
	ASSERT_PAYLOAD(self->mb, &r, "queued");
	ASSERT_EQ(0, bus1_slice_release(self->b, r.msg.offset));
	ASSERT_EQ(0, bus1_slice_release(self->b, off));
	ASSERT_EQ(0, pool_slices(self->b));
	ASSERT_EQ(0, munmap(m, 3 * page));
}

/*
 * A failing stage stops the call with its errno; done tells which stages
 * completed: a bad release offset (ENXIO) sends nothing, a bad destination
 * (ENXIO) after a good release keeps the release.
 */
TEST_F(pair, transact_stage_failure_done)
{
	struct bus1_cmd_recv r, held;
	struct tx x;

	ASSERT_EQ(0, bus1_send_str(self->a, self->to_b, "held"));
	ASSERT_EQ(0, recv_wait(self->b, 0, 0, &held));
	ASSERT_EQ(1, pool_slices(self->b));

	tx_init(&x, STAGE_ALL, 1ULL << 40, self->to_a, "never", 0, 0);
	ASSERT_EQ(-ENXIO, transact(self->b, &x));
	ASSERT_EQ((__u64)0, x.t.done);
	ASSERT_EQ(1, pool_slices(self->b));
	ASSERT_EQ(-EAGAIN, recv_wait(self->a, 0, 0, &r));

	/* RID(7) names no handle of B. */
	tx_init(&x, STAGE_ALL, held.msg.offset, RID(7), "never", 0, 0);
	ASSERT_EQ(-ENXIO, transact(self->b, &x));
	ASSERT_EQ((__u64)BUS1_TRANSACT_FLAG_RELEASE, x.t.done);
	ASSERT_EQ(0, pool_slices(self->b));
	ASSERT_EQ(-EAGAIN, recv_wait(self->a, 0, 0, &r));
	ASSERT_EQ(-ENXIO, bus1_slice_release(self->b, held.msg.offset));
}

/*
 * The release stage comes first whatever the send stage does: a send that
 * fails before its first effect (EMSGSIZE for too many iovecs, EFAULT for an
 * unreadable destination array) keeps a good release (done = RELEASE, the
 * slice gone), and a bad release fails the call with its own ENXIO even when
 * the send's argument is bad too (done = 0, the slice kept). The same with
 * carried handles, which take the send's general path.
 */
TEST_F(pair, transact_release_first_when_the_send_fails_early)
{
	struct bus1_cmd_recv held, r;
	__u64 handle = self->to_a;
	struct tx x;
	int i;

	for (i = 0; i < 3; i++) {
		ASSERT_EQ(0, bus1_send_str(self->a, self->to_b, "held"));
		ASSERT_EQ(0, recv_wait(self->b, 0, 0, &held));
		ASSERT_EQ(1, pool_slices(self->b));

		/* Bad release and bad send: the release's error, nothing done. */
		tx_init(&x, STAGE_ALL, 1ULL << 40, self->to_a, "never", 0, 0);
		if (i == 0) {
			x.t.send.n_vecs = 1025;
		} else if (i == 1) {
			x.t.send.ptr_destinations = 8;
		} else {
			x.t.send.ptr_handles = 8;
			x.t.send.n_handles = 1;
		}
		ASSERT_EQ(-ENXIO, transact(self->b, &x));
		ASSERT_EQ((__u64)0, x.t.done);
		ASSERT_EQ(1, pool_slices(self->b));

		/* Good release, bad send: released, then the send's error. */
		x.t.release_offset = held.msg.offset;
		x.t.done = 0xdeadbeef;
		ASSERT_EQ(i == 0 ? -EMSGSIZE : -EFAULT, transact(self->b, &x));
		ASSERT_EQ((__u64)BUS1_TRANSACT_FLAG_RELEASE, x.t.done);
		ASSERT_EQ(0, pool_slices(self->b));
		ASSERT_EQ(-ENXIO, bus1_slice_release(self->b, held.msg.offset));
		ASSERT_EQ(-EAGAIN, recv_wait(self->a, 0, 0, &r));
	}

	/* A good release with a send that carries a handle: both done. */
	ASSERT_EQ(0, bus1_send_str(self->a, self->to_b, "held"));
	ASSERT_EQ(0, recv_wait(self->b, 0, 0, &held));
	tx_init(&x, BUS1_TRANSACT_FLAG_RELEASE | BUS1_TRANSACT_FLAG_SEND, held.msg.offset,
		self->to_a, "with a handle", 0, 0);
	x.t.send.ptr_handles = PTR(&handle);
	x.t.send.n_handles = 1;
	ASSERT_EQ(0, transact(self->b, &x));
	ASSERT_EQ((__u64)(BUS1_TRANSACT_FLAG_RELEASE | BUS1_TRANSACT_FLAG_SEND), x.t.done);
	ASSERT_EQ(0, pool_slices(self->b));
	ASSERT_EQ(0, recv_wait(self->a, 0, 0, &r));
	ASSERT_PAYLOAD(self->ma, &r, "with a handle");
}

/*
 * The send stage commits before the wait: a TRANSACT whose wait times out
 * (ETIMEDOUT) has sent (done = SEND), and its message is charged and
 * delivered.
 */
TEST_F(pair, transact_timeout_after_send)
{
	struct bus1_cmd_recv r;
	struct tx x;

	tx_init(&x, BUS1_TRANSACT_FLAG_SEND | BUS1_TRANSACT_FLAG_RECV, 0, self->to_b, "sent",
		BUS1_RECV_FLAG_WAIT, 30 * MS);
	ASSERT_EQ(-ETIMEDOUT, transact(self->a, &x));
	ASSERT_EQ((__u64)BUS1_TRANSACT_FLAG_SEND, x.t.done);
	ASSERT_EQ(0, recv_wait(self->b, 0, 0, &r));
	ASSERT_PAYLOAD(self->mb, &r, "sent");
	ASSERT_EQ(1, pool_slices(self->b));
}

/*
 * A signal during the wait stage: EINTR, done = SEND (so the caller does not
 * send again), and the reply that comes later is received by a RECV.
 */
TEST_F(pair, transact_signal_eintr)
{
	struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESTART };
	struct tx x;
	struct waiter w = { .fd = self->a, .x = &x };
	struct bus1_cmd_recv r;
	pthread_t th;

	sigemptyset(&sa.sa_mask);
	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));
	tx_init(&x, BUS1_TRANSACT_FLAG_SEND | BUS1_TRANSACT_FLAG_RECV, 0, self->to_b, "req",
		BUS1_RECV_FLAG_WAIT, LONG_WAIT);
	ASSERT_EQ(0, start_waiter(&th, &w));
	ASSERT_EQ(0, pthread_kill(th, SIGUSR1));
	ASSERT_EQ(0, pthread_join(th, NULL));
	ASSERT_EQ(-EINTR, w.ret);
	ASSERT_EQ((__u64)BUS1_TRANSACT_FLAG_SEND, x.t.done);

	/* Exactly one request arrived. */
	ASSERT_EQ(0, recv_wait(self->b, 0, 0, &r));
	ASSERT_PAYLOAD(self->mb, &r, "req");
	ASSERT_EQ(-EAGAIN, recv_wait(self->b, 0, 0, &r));
	ASSERT_EQ(0, bus1_send_str(self->b, self->to_a, "rep"));
	ASSERT_EQ(0, recv_wait(self->a, BUS1_RECV_FLAG_WAIT, LONG_WAIT, &r));
	ASSERT_PAYLOAD(self->ma, &r, "rep");
	signal(SIGUSR1, SIG_DFL);
}

TEST_HARNESS_MAIN
