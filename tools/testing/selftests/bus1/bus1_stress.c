// SPDX-License-Identifier: GPL-2.0
/*
 * bus1 stress test with an ordering oracle.
 *
 * P processes each own a peer and a node, and hold a handle to every other
 * peer's node. For a bounded time each one sends at random: unicasts (some
 * carrying a file descriptor), multicasts to random subsets, and messages
 * carrying handles to short-lived nodes, which it destroys again at random;
 * and it drains its own queue. Every payload carries (sender, sequence).
 *
 * A short-lived node is owned either by the process's main peer (destroyed
 * with NODES_DESTROY) or by an ephemeral peer opened for it, whose handle
 * reaches the main peer through HANDLE_TRANSFER, and which is destroyed by
 * closing the ephemeral peer or by PEER_RESET(FLUSH) and then closing it.
 * Receivers send probes to the short-lived handles they hold, so messages
 * race with those destructions and closes (a probe may fail only with
 * EHOSTUNREACH, or ESHUTDOWN once the owner is closed); probes to a main peer's node join the checked order.
 *
 * Receivers check locally: a handle to a short-lived node arrives either
 * INVALID or valid, and every valid one is followed by exactly one
 * NODE_DESTROY for it; carried fds are installed. Every acknowledged send and
 * every received message is logged in shared memory, and the parent checks
 * afterwards:
 *  - exactly-once: every acknowledged (sender, seq) reached each of its
 *    destinations exactly once, and nothing else was received;
 *  - per-sender order at every receiver;
 *  - one total order: any two messages received by two receivers are seen
 *    in the same order by both;
 *  - a handle came out INVALID only if its node was destroyed.
 *
 * Environment: BUS1_STRESS_SECONDS (default 30), BUS1_STRESS_PROCS (default 4,
 * at most 8), BUS1_STRESS_SEED (default: time-based; printed for replay of the
 * random choices — the interleaving itself is not reproducible).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/bus1.h>

#include "kselftest_harness.h"

#define MAXP 8
#define MAXSEQ 60000		/* attempts per sender */
#define MAXLOG (MAXP * MAXSEQ)	/* messages per receiver */
#define MAXTEMP 4096		/* short-lived nodes per sender */
#define MAXHANDLES 8192		/* short-lived handles per receiver */
#define MAGIC 0xb0511eafU
#define POOL_MAP (64UL << 20)
#define INV ((__u64)BUS1_HANDLE_INVALID)
#define PTR(p) ((__u64)(uintptr_t)(p))
#define NODE_ID(i) ((__u64)(0x100 + (i)) << 3)
#define TEMP_ID(k) ((__u64)(0x10000 + (k)) << 3)

#define MAXEPH 48		/* live ephemeral peers per process */

enum kind { UNICAST, MULTICAST, CARRY, PROBE };

struct payload {
	uint32_t magic;
	uint16_t sender;
	uint16_t kind;
	uint32_t seq;
	uint32_t tag;		/* CARRY: the short-lived node's number */
};

struct rec {
	uint16_t sender;
	uint32_t seq;
};

struct shared {
	int done_sending;
	uint32_t attempts[MAXP];
	uint8_t acked[MAXP][MAXSEQ];	/* destination bitmask, 0: not sent */
	uint32_t n_log[MAXP];
	struct rec log[MAXP][MAXLOG];
	uint8_t destroyed[MAXP][MAXTEMP];
	uint8_t eph[MAXP][MAXTEMP];	/* owned by an ephemeral peer */
	/* destroyed with RELEASE_HANDLES: queued probes to it may be dropped */
	uint8_t released[MAXP][MAXTEMP];
	uint32_t probe_tag[MAXP][MAXSEQ];	/* short-lived node probed + 1 */
	uint32_t n_invalid[MAXP];
	struct rec invalid[MAXP][MAXHANDLES];	/* (owner, tag) of INVALID handles */
	uint32_t n_eph, n_reset, n_probe, n_probe_failed;
	int failed[MAXP];
	char why[MAXP][256];
};

struct child {
	int idx, n, fd;
	int fds[MAXP];		/* all peers (only our own is used) */
	__u64 h[MAXP];		/* our handle to each peer's node */
	const uint8_t *pool;
	struct shared *sh;
	unsigned int seed;
	int devnull;
	/* short-lived handles we received: id, owner, tag, state */
	struct {
		__u64 id;
		uint16_t owner;
		uint32_t tag;
		int destroyed;
	} th[MAXHANDLES];
	int n_th;
	/* our own short-lived nodes */
	int live[MAXTEMP];
	int n_temp;
	int eph_fd[MAXTEMP];	/* owning ephemeral peer, or -1: our main peer */
	__u64 carry_id[MAXTEMP];	/* the ID our main peer sends it by */
	int n_eph;
	uint8_t own_notified[MAXTEMP];
};

static void fail(struct child *c, const char *fmt, ...)
{
	va_list ap;

	if (c->sh->failed[c->idx]++)
		return;
	va_start(ap, fmt);
	vsnprintf(c->sh->why[c->idx], sizeof(c->sh->why[0]), fmt, ap);
	va_end(ap);
}

static int xrand(struct child *c)
{
	return rand_r(&c->seed);
}

static int send_msg(struct child *c, const __u64 *dst, int n_dst, struct payload *p,
		    const __u64 *handles, int n_handles, int with_fd)
{
	struct iovec v = { .iov_base = p, .iov_len = sizeof(*p) };
	struct bus1_cmd_send s = {
		.ptr_destinations = PTR(dst),
		.n_destinations = (__u64)n_dst,
		.ptr_vecs = PTR(&v),
		.n_vecs = 1,
		.ptr_handles = PTR(handles),
		.n_handles = (__u64)n_handles,
		.ptr_fds = PTR(&c->devnull),
		.n_fds = with_fd ? 1 : 0,
	};

	return ioctl(c->fd, BUS1_CMD_SEND, &s) ? -errno : 0;
}

static int th_find(struct child *c, __u64 id)
{
	int i;

	for (i = 0; i < c->n_th; i++)
		if (c->th[i].id == id)
			return i;
	return -1;
}

static void handle_data(struct child *c, const struct bus1_cmd_recv *r)
{
	struct shared *sh = c->sh;
	const struct payload *p;
	const __u64 *ids;
	uint32_t n;

	if (r->msg.offset + r->msg.n_bytes > POOL_MAP || r->msg.n_bytes != sizeof(*p)) {
		fail(c, "bad slice offset %llu size %llu", r->msg.offset, r->msg.n_bytes);
		return;
	}
	p = (const void *)(c->pool + r->msg.offset);
	if (p->magic != MAGIC || p->sender >= c->n || p->seq >= MAXSEQ) {
		fail(c, "bad payload magic %x sender %u", p->magic, p->sender);
		return;
	}
	n = sh->n_log[c->idx];
	if (n >= MAXLOG) {
		fail(c, "receive log overflow");
		return;
	}
	sh->log[c->idx][n].sender = p->sender;
	sh->log[c->idx][n].seq = p->seq;
	sh->n_log[c->idx] = n + 1;

	if (p->kind == PROBE && p->tag < MAXTEMP && c->own_notified[p->tag])
		fail(c, "probe %u/%u after the NODE_DESTROY of node %u", p->sender, p->seq, p->tag);
	if (p->kind == CARRY) {
		if (r->msg.n_handles != 1) {
			fail(c, "carry message with %llu handles", r->msg.n_handles);
			return;
		}
		ids = (const void *)(c->pool + r->msg.offset + ((r->msg.n_bytes + 7) & ~7ULL));
		if (ids[0] == INV) {
			uint32_t k = sh->n_invalid[c->idx];

			if (k < MAXHANDLES) {
				sh->invalid[c->idx][k].sender = p->sender;
				sh->invalid[c->idx][k].seq = p->tag;
				sh->n_invalid[c->idx] = k + 1;
			}
		} else if (p->sender != c->idx) {
			int i = th_find(c, ids[0]);

			if (i >= 0) {
				if (c->th[i].destroyed)
					fail(c, "valid handle %llx after its NODE_DESTROY", ids[0]);
				if (c->th[i].owner != p->sender || c->th[i].tag != p->tag)
					fail(c, "handle %llx names two nodes", ids[0]);
			} else if (c->n_th < MAXHANDLES) {
				c->th[c->n_th].id = ids[0];
				c->th[c->n_th].owner = p->sender;
				c->th[c->n_th].tag = p->tag;
				c->th[c->n_th].destroyed = 0;
				c->n_th++;
			}
		}
	}
	if (r->msg.n_fds) {
		const int *fds = (const void *)(c->pool + r->msg.offset +
						((r->msg.n_bytes + 7) & ~7ULL) + 8 * r->msg.n_handles);

		if (r->msg.n_fds != 1 || fcntl(fds[0], F_GETFD) < 0)
			fail(c, "carried fd not installed");
		else
			close(fds[0]);
	}
	if (ioctl(c->fd, BUS1_CMD_SLICE_RELEASE, &r->msg.offset))
		fail(c, "SLICE_RELEASE: %d", errno);
}

/* Receive up to @max entries; returns how many, or -1 when the queue is empty. */
static int drain(struct child *c, int max)
{
	struct bus1_cmd_recv r;
	int n = 0;

	while (n < max) {
		memset(&r, 0, sizeof(r));
		r.flags = BUS1_RECV_FLAG_INSTALL_FDS;
		r.max_offset = POOL_MAP;
		if (ioctl(c->fd, BUS1_CMD_RECV, &r)) {
			if (errno != EAGAIN)
				fail(c, "RECV: %d", errno);
			return n ? n : -1;
		}
		n++;
		switch (r.msg.type) {
		case BUS1_MSG_DATA:
			handle_data(c, &r);
			break;
		case BUS1_MSG_NODE_DESTROY: {
			int i = th_find(c, r.msg.destination);

			if (i >= 0) {
				if (c->th[i].destroyed++)
					fail(c, "two NODE_DESTROY for %llx", r.msg.destination);
				if (ioctl(c->fd, BUS1_CMD_HANDLE_RELEASE, &r.msg.destination))
					fail(c, "HANDLE_RELEASE: %d", errno);
			} else if (r.msg.destination >= TEMP_ID(0) &&
				   r.msg.destination < TEMP_ID(MAXTEMP)) {
				int k = (int)(r.msg.destination >> 3) - 0x10000;

				/* Our own node: drop our reference unless destroy did. */
				if (c->own_notified[k]++)
					fail(c, "two NODE_DESTROY for own node %d", k);
				if (!c->sh->released[c->idx][k] &&
				    ioctl(c->fd, BUS1_CMD_HANDLE_RELEASE, &r.msg.destination))
					fail(c, "HANDLE_RELEASE own node: %d", errno);
			}
			break;
		}
		case BUS1_MSG_NODE_RELEASE:
			break;
		default:
			fail(c, "unknown message type %llu", r.msg.type);
		}
	}
	return n;
}

/*
 * Create short-lived node @k: owned by a fresh ephemeral peer now and then,
 * else by our main peer (created implicitly by the first SEND carrying it).
 * Returns 0, or -1 if no node could be made.
 */
static int create_temp(struct child *c, int k)
{
	struct bus1_cmd_handle_transfer t = {
		.src_handle = TEMP_ID(k),
		.dst_fd = (__u64)c->fd,
		.dst_handle = INV,
	};
	int e;

	c->eph_fd[k] = -1;
	c->carry_id[k] = TEMP_ID(k);
	if (c->n_eph >= MAXEPH || xrand(c) % 3)
		return 0;
	e = open("/dev/bus1", O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (e < 0) {
		fail(c, "open ephemeral peer: %d", errno);
		return -1;
	}
	if (ioctl(e, BUS1_CMD_HANDLE_TRANSFER, &t) || t.dst_handle == INV) {
		if (errno != EDQUOT)
			fail(c, "HANDLE_TRANSFER from ephemeral peer: %d", errno);
		close(e);
		return -1;
	}
	/* We hold a handle too, so we are owed a NODE_DESTROY as well. */
	if (c->n_th < MAXHANDLES) {
		c->th[c->n_th].id = t.dst_handle;
		c->th[c->n_th].owner = (uint16_t)c->idx;
		c->th[c->n_th].tag = (uint32_t)k;
		c->th[c->n_th].destroyed = 0;
		c->n_th++;
	}
	__atomic_add_fetch(&c->sh->n_eph, 1, __ATOMIC_RELAXED);
	c->eph_fd[k] = e;
	c->carry_id[k] = t.dst_handle;
	c->n_eph++;
	return 0;
}

static void destroy_temp(struct child *c, int k)
{
	__u64 id = TEMP_ID(k);
	struct bus1_cmd_nodes_destroy d = {
		.ptr_nodes = PTR(&id),
		.n_nodes = 1,
	};
	struct bus1_cmd_peer_reset rs = {
		.flags = BUS1_PEER_RESET_FLAG_FLUSH,
		.peer_flags = ~0ULL,
		.max_slices = ~0U,
		.max_handles = ~0U,
		.max_inflight_bytes = ~0U,
		.max_inflight_fds = ~0U,
	};

	/* Marked first: a receiver may see the handle INVALID before we return. */
	c->sh->destroyed[c->idx][k] = 1;
	if (c->eph_fd[k] < 0) {
		/*
		 * With RELEASE_HANDLES the owner's own reference goes too, and
		 * RECV drops data queued on the node even if ordered before the
		 * destruction; without it, we release at our NODE_DESTROY.
		 */
		if (xrand(c) % 2) {
			d.flags = BUS1_NODES_DESTROY_FLAG_RELEASE_HANDLES;
			c->sh->released[c->idx][k] = 1;
		}
		if (ioctl(c->fd, BUS1_CMD_NODES_DESTROY, &d))
			fail(c, "NODES_DESTROY: %d", errno);
	} else {
		if (xrand(c) % 2) {
			if (ioctl(c->eph_fd[k], BUS1_CMD_PEER_RESET, &rs))
				fail(c, "PEER_RESET: %d", errno);
			__atomic_add_fetch(&c->sh->n_reset, 1, __ATOMIC_RELAXED);
		}
		close(c->eph_fd[k]);
		c->eph_fd[k] = -1;
		c->n_eph--;
	}
	c->live[k] = 0;
}

/* Send a probe to one of the short-lived handles we hold. */
static void probe(struct child *c)
{
	struct shared *sh = c->sh;
	struct payload p = { .magic = MAGIC, .sender = (uint16_t)c->idx, .kind = PROBE };
	int i, r;

	if (!c->n_th)
		return;
	i = xrand(c) % c->n_th;
	/* Released after its NODE_DESTROY; the ID is gone. */
	if (c->th[i].destroyed)
		return;
	p.seq = sh->attempts[c->idx]++;
	p.tag = c->th[i].tag;
	r = send_msg(c, &c->th[i].id, 1, &p, NULL, 0, 0);
	__atomic_add_fetch(&sh->n_probe, 1, __ATOMIC_RELAXED);
	if (r)
		__atomic_add_fetch(&sh->n_probe_failed, 1, __ATOMIC_RELAXED);
	if (r == 0) {
		/*
		 * Only a main peer's node is read; what reaches an ephemeral
		 * peer is dropped with it, so it is not expected anywhere.
		 */
		if (c->th[i].owner != c->idx && !sh->eph[c->th[i].owner][c->th[i].tag]) {
			sh->probe_tag[c->idx][p.seq] = c->th[i].tag + 1;
			sh->acked[c->idx][p.seq] = 1 << c->th[i].owner;
		}
	} else if (r != -EHOSTUNREACH && r != -ESHUTDOWN && r != -EDQUOT && r != -EXFULL) {
		fail(c, "SEND probe: %d", r);
	}
}

static void run_child(struct child *c, int seconds)
{
	struct shared *sh = c->sh;
	time_t end = time(NULL) + seconds;
	__u64 dst[MAXP];
	int k;

	c->pool = mmap(NULL, POOL_MAP, PROT_READ, MAP_SHARED, c->fd, 0);
	c->devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (c->pool == MAP_FAILED || c->devnull < 0) {
		fail(c, "setup");
		return;
	}
	while (time(NULL) < end && sh->attempts[c->idx] < MAXSEQ - 1) {
		int op = xrand(c) % 100, n_dst = 0, r, i;
		struct payload p = { .magic = MAGIC, .sender = (uint16_t)c->idx };
		uint8_t mask = 0;
		__u64 handle;

		if (op >= 80) {
			drain(c, 64);
			continue;
		}
		if (op >= 75) {
			probe(c);
			continue;
		}
		p.seq = sh->attempts[c->idx]++;
		if (op < 40) {
			i = xrand(c) % c->n;
			dst[n_dst++] = c->h[i];
			mask = 1 << i;
			p.kind = UNICAST;
		} else {
			for (i = 0; i < c->n; i++) {
				if (xrand(c) % 2) {
					dst[n_dst++] = c->h[i];
					mask |= 1 << i;
				}
			}
			if (n_dst < 2)
				continue;
			p.kind = op < 65 ? MULTICAST : CARRY;
		}
		if (p.kind == CARRY) {
			if (c->n_temp == 0 || xrand(c) % 4 == 0) {
				if (c->n_temp >= MAXTEMP)
					continue;
				k = c->n_temp;
				if (create_temp(c, k))
					continue;
				sh->eph[c->idx][k] = c->eph_fd[k] >= 0;
				c->n_temp++;
			} else {
				k = xrand(c) % c->n_temp;
				if (!c->live[k])
					continue;
			}
			c->live[k] = 1;
			p.tag = k;
			handle = c->carry_id[k];
			r = send_msg(c, dst, n_dst, &p, &handle, 1, 0);
		} else {
			r = send_msg(c, dst, n_dst, &p, NULL, 0, p.kind == UNICAST && op < 10);
		}
		if (r == 0)
			sh->acked[c->idx][p.seq] = mask;
		else if (r != -EDQUOT && r != -EXFULL)
			fail(c, "SEND: %d", r);
		/* Destroy one of our short-lived nodes now and then. */
		if (c->n_temp && xrand(c) % 8 == 0) {
			k = xrand(c) % c->n_temp;
			if (c->live[k])
				destroy_temp(c, k);
		}
	}
	for (k = 0; k < c->n_temp; k++)
		if (c->live[k])
			destroy_temp(c, k);
	__atomic_add_fetch(&sh->done_sending, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&sh->done_sending, __ATOMIC_SEQ_CST) < c->n)
		drain(c, 256);
	/* Nothing is sent any more: drain to the end, twice for late releases. */
	while (drain(c, 1024) > 0)
		;
	usleep(100000);
	while (drain(c, 1024) > 0)
		;
	for (k = 0; k < c->n_th; k++)
		if (!c->th[k].destroyed)
			fail(c, "no NODE_DESTROY for handle %llx (owner %u tag %u)",
			     c->th[k].id, c->th[k].owner, c->th[k].tag);
}

static int env_int(const char *name, int def)
{
	const char *v = getenv(name);

	return v && *v ? atoi(v) : def;
}

FIXTURE(stress) {};
FIXTURE_SETUP(stress) {}
FIXTURE_TEARDOWN(stress) {}

/* One round: fresh peers, @seconds of traffic, then the oracle. */
static void one_round(struct __test_metadata *_metadata, int n, int seconds, unsigned int seed)
{
	static uint32_t pos[MAXP][MAXP][MAXSEQ];	/* receiver, sender, seq -> index + 1 */
	struct shared *sh;
	struct child *c;
	pid_t pid[MAXP];
	int i, j, s, fds[MAXP];
	__u64 h[MAXP][MAXP];
	__u64 total_sent = 0, total_recv = 0;

	memset(pos, 0, sizeof(pos));
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, sh);
	c = calloc(1, sizeof(*c));
	ASSERT_NE(NULL, c);

	for (i = 0; i < n; i++) {
		fds[i] = open("/dev/bus1", O_RDWR | O_CLOEXEC | O_NONBLOCK);
		ASSERT_LE(0, fds[i]);
	}
	/* Every peer gets a handle to every node, its own included. */
	for (i = 0; i < n; i++) {
		for (j = 0; j < n; j++) {
			struct bus1_cmd_handle_transfer t = {
				.src_handle = NODE_ID(j),
				.dst_fd = (__u64)fds[i],
				.dst_handle = INV,
			};

			ASSERT_EQ(0, ioctl(fds[j], BUS1_CMD_HANDLE_TRANSFER, &t));
			ASSERT_NE(INV, t.dst_handle);
			h[i][j] = t.dst_handle;
		}
	}

	for (i = 0; i < n; i++) {
		pid[i] = fork();
		ASSERT_LE(0, pid[i]);
		if (pid[i] == 0) {
			c->idx = i;
			c->n = n;
			c->fd = fds[i];
			c->sh = sh;
			c->seed = seed * 31 + i;
			memcpy(c->h, h[i], sizeof(c->h));
			run_child(c, seconds);
			_exit(sh->failed[i] ? 1 : 0);
		}
	}
	for (i = 0; i < n; i++) {
		int st;

		ASSERT_EQ(pid[i], waitpid(pid[i], &st, 0));
		EXPECT_EQ(0, sh->failed[i]) TH_LOG("peer %d: %s", i, sh->why[i]);
		EXPECT_TRUE(WIFEXITED(st));
	}
	ASSERT_EQ(0, _metadata->exit_code);

	/* Exactly once, per-sender order. */
	for (j = 0; j < n; j++) {
		uint32_t last[MAXP];

		memset(last, 0, sizeof(last));
		for (i = 0; i < (int)sh->n_log[j]; i++) {
			struct rec *m = &sh->log[j][i];

			ASSERT_TRUE(sh->acked[m->sender][m->seq] & (1 << j))
				TH_LOG("peer %d got unsent %u/%u", j, m->sender, m->seq);
			ASSERT_EQ(0U, pos[j][m->sender][m->seq])
				TH_LOG("peer %d got %u/%u twice", j, m->sender, m->seq);
			pos[j][m->sender][m->seq] = i + 1;
			ASSERT_TRUE(last[m->sender] == 0 || m->seq + 1 > last[m->sender])
				TH_LOG("peer %d: %u/%u after seq %u", j, m->sender, m->seq,
				       last[m->sender] - 1);
			last[m->sender] = m->seq + 1;
		}
		total_recv += sh->n_log[j];
	}
	for (s = 0; s < n; s++) {
		for (i = 0; i < MAXSEQ; i++) {
			for (j = 0; j < n; j++) {
				uint32_t t = sh->probe_tag[s][i];

				if (!(sh->acked[s][i] & (1 << j)))
					continue;
				/*
				 * A probe may be ordered after its node's
				 * destruction (it raced with it, and SEND does
				 * not fail then): RECV drops it. The owner checks
				 * that none comes after the NODE_DESTROY.
				 */
				if (!pos[j][s][i] && t)
					continue;
				total_sent++;
				ASSERT_NE(0U, pos[j][s][i]) TH_LOG("%d/%d never reached %d", s, i, j);
			}
		}
	}
	ASSERT_EQ(total_sent, total_recv);

	/* One total order: common messages appear in the same order everywhere. */
	for (i = 0; i < n; i++) {
		for (j = 0; j < n; j++) {
			uint32_t prev = 0;
			int k;

			if (i == j)
				continue;
			for (k = 0; k < (int)sh->n_log[i]; k++) {
				struct rec *m = &sh->log[i][k];
				uint32_t p = pos[j][m->sender][m->seq];

				if (!p)
					continue;
				ASSERT_LT(prev, p) TH_LOG("peers %d and %d disagree on %u/%u",
							   i, j, m->sender, m->seq);
				prev = p;
			}
		}
	}

	/* INVALID only for destroyed nodes. */
	for (j = 0; j < n; j++)
		for (i = 0; i < (int)sh->n_invalid[j]; i++)
			ASSERT_TRUE(sh->destroyed[sh->invalid[j][i].sender][sh->invalid[j][i].seq]);

	TH_LOG("%llu deliveries checked; %u ephemeral peers (%u reset), %u probes (%u refused)",
	       (unsigned long long)total_sent, sh->n_eph, sh->n_reset, sh->n_probe,
	       sh->n_probe_failed);
	ASSERT_LT(0U, sh->n_eph);
	ASSERT_LT(0U, sh->n_probe_failed);
	ASSERT_LT(100ULL, total_sent);
	for (i = 0; i < n; i++)
		close(fds[i]);
	munmap(sh, sizeof(*sh));
	free(c);
}

/*
 * Rounds of at most 30 s, each with fresh peers, until BUS1_STRESS_SECONDS
 * are over: a sender stops after MAXSEQ sends, so one long round would idle.
 * The harness timeout is the run's length plus 300 s for the last round's
 * checks (scripts/manifest.py reads the env_int() default as the length of
 * the make check run).
 */
TEST_F_TIMEOUT(stress, ordered_delivery, 300 + env_int("BUS1_STRESS_SECONDS", 30))
{
	int n = env_int("BUS1_STRESS_PROCS", 4);
	int seconds = env_int("BUS1_STRESS_SECONDS", 30);
	unsigned int seed = (unsigned int)env_int("BUS1_STRESS_SEED", (int)time(NULL));
	time_t end = time(NULL) + seconds;
	int round = 0;

	if (n < 2)
		n = 2;
	if (n > MAXP)
		n = MAXP;
	TH_LOG("procs=%d seconds=%d seed=%u", n, seconds, seed);
	do {
		long left = (long)(end - time(NULL));

		one_round(_metadata, n, left > 30 ? 30 : left < 1 ? 1 : (int)left, seed + round++);
	} while (time(NULL) < end);
	TH_LOG("%d rounds", round);
}

TEST_HARNESS_MAIN
