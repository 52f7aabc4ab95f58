// SPDX-License-Identifier: GPL-2.0
/*
 * bus1 stress test with a global-order oracle.
 *
 * P processes each own a peer and a node, and hold a handle to every other
 * peer's node. For a bounded time each one sends at random: unicasts (some
 * carrying a file descriptor), multicasts to random subsets, messages
 * carrying handles to short-lived nodes, which it destroys again at random,
 * and probes to the short-lived handles it received; and it drains its own
 * queue. A receiver replies now and then to what it just received (a
 * multicast to the original's destinations, its sender and others), and
 * keeps a received handle until its NODE_DESTROY or releases it, at once or
 * later (maybe while more copies are queued), so that owners also get
 * NODE_RELEASE.
 *
 * A short-lived node is owned either by the process's main peer (destroyed
 * with NODES_DESTROY, with or without RELEASE_HANDLES) or by an ephemeral
 * peer opened for it, whose handle reaches the main peer through
 * HANDLE_TRANSFER, and which is destroyed by closing the ephemeral peer or by
 * PEER_RESET(FLUSH) and then closing it. A probe may fail only with
 * EHOSTUNREACH, or ESHUTDOWN once the owner is closed; some go to handles
 * whose NODE_DESTROY already arrived, and must never reach the owner.
 *
 * Every process logs in shared memory, in its own program order, what it did
 * (acknowledged sends, destructions, handle releases) and what it received
 * (data, NODE_DESTROY, NODE_RELEASE). After the round the parent checks the
 * logs with oracle() (see Documentation/bus1/testing.rst):
 *  - exactly once and per-sender order at every receiver; a handle is
 *    INVALID only if its node was destroyed;
 *  - node notifications against data: exactly one NODE_DESTROY per handle
 *    held at the destruction, none for a handle released before, no data for
 *    a node after its NODE_DESTROY (owner included), no NODE_RELEASE while a
 *    receiver still holds a handle from a message its owner sent before;
 *  - causality: a reply comes after its original at every common receiver;
 *  - one global order: the precedence graph over all events (every
 *    receiver's queue order, every process's program order, and the order
 *    implied by handle validity and dropped or delivered probes) is acyclic.
 * The oracle_detects_violations test feeds the checker crafted logs with a
 * violation each and expects it to be found.
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
#include "bus1_util.h"

#define MAXP 8
#define MAXSEQ 60000		/* sends per process */
#define MAXTEMP 4096		/* short-lived nodes per process */
#define MAXLOG ((MAXP + 2) * MAXSEQ)	/* log entries per process */
#define MAXREC 65536		/* received handle IDs per process */
#define HASHSZ (2 * MAXREC)
#define MAGIC 0xb0511eafU
#define POOL_MAP (64UL << 20)
#define INV ((__u64)BUS1_HANDLE_INVALID)
#define PTR(p) ((__u64)(uintptr_t)(p))
#define NODE_ID(i) ((__u64)(0x100 + (i)) << 3)
#define TEMP_ID(k) ((__u64)(0x10000 + (k)) << 3)

#define MAXEPH 48		/* live ephemeral peers per process */
#define MAXDEFER 256		/* handles released at the next drain() */

enum kind { K_NONE, UNICAST, MULTICAST, CARRY, PROBE, REPLY, K_MAX };

static const char *const kind_name[] = { "?", "unicast", "multicast", "carry", "probe", "reply" };

struct payload {
	uint32_t magic;
	uint16_t sender;
	uint16_t kind;
	uint32_t seq;
	uint32_t tag;		/* CARRY, PROBE: node number; REPLY: original's seq */
	uint16_t orig;		/* REPLY: original's sender */
	uint16_t mask;		/* destinations */
};

/* What the sender records about its send (sender, seq), once acknowledged. */
struct meta {
	uint8_t kind;		/* K_NONE: not sent, or refused */
	uint8_t eph;		/* CARRY, PROBE: the node is owned by an ephemeral peer */
	uint8_t mask;		/* main peers that must receive it */
	uint8_t pad;
	uint16_t owner;		/* CARRY, PROBE: owner of the node; REPLY: original's sender */
	uint16_t pad2;
	uint32_t tag;		/* CARRY, PROBE: node number; REPLY: original's seq */
};

/*
 * A log entry. Node k of peer s is the short-lived node number k that the
 * process s created (owned by its main peer or by one of its ephemeral peers).
 */
enum etype {
	/* Actions of the logging process, each logged when it returned. */
	E_SEND = 1,	/* (self, seq): acknowledged SEND */
	E_DESTROY,	/* (self, k): node destroyed (flags: F_RELEASED, F_EPH) */
	E_ACQUIRE,	/* (self, k): handle to an ephemeral node by HANDLE_TRANSFER */
	E_LEASE,	/* (owner, k): all references of the handle released */
	/* Receipts, in queue order. */
	E_RECV,		/* (sender, seq): data (flags: F_VALID or F_INVALID handle) */
	E_NDESTROY,	/* (owner, k): NODE_DESTROY */
	E_NRELEASE,	/* (self, k): NODE_RELEASE */
};

enum { F_VALID = 1, F_INVALID = 2, F_RELEASED = 4, F_EPH = 8 };

struct ent {
	uint8_t type;
	uint8_t flags;
	uint16_t who;
	uint32_t seq;		/* sequence number or node number */
};

struct shared {
	int done_sending;
	uint32_t attempts[MAXP];
	struct meta meta[MAXP][MAXSEQ];
	uint8_t eph[MAXP][MAXTEMP];	/* node owned by an ephemeral peer */
	uint32_t n_log[MAXP];
	struct ent log[MAXP][MAXLOG];
	uint32_t n_eph, n_reset, n_probe, n_probe_failed;
	int failed[MAXP];
	char why[MAXP][256];
};

/* A handle ID this process holds to a short-lived node. */
struct hrec {
	__u64 id;
	uint16_t owner;
	uint32_t tag;
	uint32_t refs;		/* user references */
	uint8_t pinned;		/* from HANDLE_TRANSFER: kept until NODE_DESTROY */
	uint8_t destroyed;	/* its NODE_DESTROY arrived */
	uint8_t dead;		/* released */
};

struct child {
	int idx, n, fd;
	int sending;
	__u64 h[MAXP];		/* our handle to each peer's node */
	const uint8_t *pool;
	struct shared *sh;
	unsigned int seed;
	int devnull;
	struct hrec th[MAXREC];
	int n_th;
	uint32_t hash[HASHSZ];	/* th index + 1, by ID */
	/* our own short-lived nodes */
	int live[MAXTEMP];
	int n_temp;
	int eph_fd[MAXTEMP];	/* owning ephemeral peer, or -1: our main peer */
	__u64 carry_id[MAXTEMP];	/* the ID our main peer sends it by */
	uint8_t released[MAXTEMP];	/* destroyed with RELEASE_HANDLES */
	uint8_t own_notified[MAXTEMP];
	int n_eph;
	/* released at the next drain(): handle index, or -1 - own node */
	int defer[MAXDEFER];
	int n_defer;
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

static void logent(struct child *c, int type, int flags, int who, uint32_t seq)
{
	struct shared *sh = c->sh;
	uint32_t n = sh->n_log[c->idx];

	if (n >= MAXLOG) {
		fail(c, "log overflow");
		return;
	}
	sh->log[c->idx][n] = (struct ent){ .type = type, .flags = flags, .who = who, .seq = seq };
	sh->n_log[c->idx] = n + 1;
}

/* Records the acknowledged send @seq and logs it. */
static void acked(struct child *c, uint32_t seq, int kind, int mask, int eph, int owner,
		  uint32_t tag)
{
	c->sh->meta[c->idx][seq] = (struct meta){
		.kind = kind, .eph = eph, .mask = mask, .owner = owner, .tag = tag,
	};
	logent(c, E_SEND, 0, c->idx, seq);
}

static int send_msg(struct child *c, const __u64 *dst, int n_dst, struct payload *p,
		    const __u64 *handles, int n_handles, int with_fd)
{
	return bus1_send(c->fd, 0, dst, n_dst, NULL, p, sizeof(*p), handles, n_handles,
			 &c->devnull, with_fd ? 1 : 0);
}

static uint32_t id_hash(__u64 id)
{
	return (uint32_t)((id >> 3) * 2654435761u) % HASHSZ;
}

static int th_find(struct child *c, __u64 id)
{
	uint32_t i;

	for (i = id_hash(id); c->hash[i]; i = (i + 1) % HASHSZ)
		if (c->th[c->hash[i] - 1].id == id)
			return (int)c->hash[i] - 1;
	return -1;
}

static int th_add(struct child *c, __u64 id, int owner, uint32_t tag)
{
	uint32_t i;

	if (c->n_th >= MAXREC) {
		fail(c, "more than %d handle IDs", MAXREC);
		return -1;
	}
	for (i = id_hash(id); c->hash[i]; i = (i + 1) % HASHSZ)
		;
	c->th[c->n_th] = (struct hrec){ .id = id, .owner = owner, .tag = tag };
	c->hash[i] = ++c->n_th;
	return c->n_th - 1;
}

/* Drop every user reference of handle record @i. */
static void th_release(struct child *c, int i)
{
	while (c->th[i].refs) {
		if (ioctl(c->fd, BUS1_CMD_HANDLE_RELEASE, &c->th[i].id)) {
			fail(c, "HANDLE_RELEASE %llx: %d", c->th[i].id, errno);
			return;
		}
		c->th[i].refs--;
	}
	c->th[i].dead = 1;
}

/* Reply to @orig: a multicast to its destinations, its sender and others. */
static void reply(struct child *c, const struct payload *orig)
{
	struct shared *sh = c->sh;
	struct payload p = {
		.magic = MAGIC, .sender = c->idx, .kind = REPLY,
		.tag = orig->seq, .orig = orig->sender,
	};
	int i, r, n_dst = 0, mask;
	__u64 dst[MAXP];

	if (sh->attempts[c->idx] >= MAXSEQ - 1)
		return;
	mask = (orig->mask | 1 << orig->sender | xrand(c)) & ((1 << c->n) - 1);
	for (i = 0; i < c->n; i++)
		if (mask & 1 << i)
			dst[n_dst++] = c->h[i];
	p.seq = sh->attempts[c->idx]++;
	p.mask = mask;
	r = send_msg(c, dst, n_dst, &p, NULL, 0, 0);
	if (r == 0)
		acked(c, p.seq, REPLY, mask, 0, orig->sender, orig->seq);
	else if (r != -EDQUOT && r != -EXFULL)
		fail(c, "SEND reply: %d", r);
}

static void handle_data(struct child *c, const struct bus1_cmd_recv *r)
{
	struct payload p;
	const __u64 *ids;
	int flags = 0, i;

	if (r->msg.offset + r->msg.n_bytes > POOL_MAP || r->msg.n_bytes != sizeof(p)) {
		fail(c, "bad slice offset %llu size %llu", r->msg.offset, r->msg.n_bytes);
		return;
	}
	memcpy(&p, c->pool + r->msg.offset, sizeof(p));
	if (p.magic != MAGIC || p.sender >= c->n || p.seq >= MAXSEQ || p.kind == K_NONE ||
	    p.kind >= K_MAX) {
		fail(c, "bad payload magic %x sender %u kind %u", p.magic, p.sender, p.kind);
		return;
	}
	if (p.kind == CARRY) {
		if (r->msg.n_handles != 1) {
			fail(c, "carry message with %llu handles", r->msg.n_handles);
			return;
		}
		ids = (const void *)(c->pool + r->msg.offset + ((r->msg.n_bytes + 7) & ~7ULL));
		flags = ids[0] == INV ? F_INVALID : F_VALID;
		logent(c, E_RECV, flags, p.sender, p.seq);
		if (flags == F_VALID) {
			i = th_find(c, ids[0]);
			if (i < 0) {
				i = th_add(c, ids[0], p.sender, p.tag);
			} else if (c->th[i].owner != p.sender || c->th[i].tag != p.tag) {
				fail(c, "handle %llx names two nodes", ids[0]);
				i = -1;
			} else if (c->th[i].dead) {
				/* Released before; held again (the logs tell if that is wrong). */
				c->th[i].dead = 0;
			}
			if (i >= 0) {
				c->th[i].refs++;
				/* Keep it until its NODE_DESTROY, or release it now. */
				if (!c->th[i].pinned && !c->th[i].destroyed && xrand(c) % 3 == 0) {
					th_release(c, i);
					logent(c, E_LEASE, 0, p.sender, p.tag);
				}
			}
		}
	} else {
		logent(c, E_RECV, 0, p.sender, p.seq);
	}
	if (r->msg.n_fds) {
		const int *fds = (const void *)(c->pool + r->msg.offset + 8 * r->msg.n_handles +
						((r->msg.n_bytes + 7) & ~7ULL));

		if (r->msg.n_fds != 1 || fcntl(fds[0], F_GETFD) < 0)
			fail(c, "carried fd not installed");
		else
			close(fds[0]);
	}
	if (ioctl(c->fd, BUS1_CMD_SLICE_RELEASE, &r->msg.offset))
		fail(c, "SLICE_RELEASE: %d", errno);
	if (c->sending && xrand(c) % 8 == 0)
		reply(c, &p);
}

static int own_temp(struct child *c, __u64 id)
{
	if (id < TEMP_ID(0) || id >= TEMP_ID(MAXTEMP) || (id & 7))
		return -1;
	if ((int)(id >> 3) - 0x10000 >= c->n_temp)
		return -1;
	return (int)(id >> 3) - 0x10000;
}

/* Release handle record @i, or our own node -1 - @i. */
static void release_one(struct child *c, int i)
{
	__u64 id = TEMP_ID(-1 - i);

	if (i >= 0)
		th_release(c, i);
	else if (ioctl(c->fd, BUS1_CMD_HANDLE_RELEASE, &id))
		fail(c, "HANDLE_RELEASE own node: %d", errno);
}

/*
 * Release a handle whose NODE_DESTROY arrived now, or only at the start of
 * the next drain(): a second NODE_DESTROY for it is only seen while it is
 * held, and a probe to it in between must never reach the owner.
 */
static void release_destroyed(struct child *c, int i)
{
	if (c->n_defer < MAXDEFER && xrand(c) % 2)
		c->defer[c->n_defer++] = i;
	else
		release_one(c, i);
}

static void release_deferred(struct child *c)
{
	while (c->n_defer)
		release_one(c, c->defer[--c->n_defer]);
}

/* Receive up to @max entries; returns how many, or -1 when the queue is empty. */
static int drain(struct child *c, int max)
{
	struct bus1_cmd_recv r;
	int n = 0, i, k;

	release_deferred(c);
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
		case BUS1_MSG_NODE_DESTROY:
			i = th_find(c, r.msg.destination);
			k = own_temp(c, r.msg.destination);
			if (i >= 0) {
				logent(c, E_NDESTROY, 0, c->th[i].owner, c->th[i].tag);
				if (!c->th[i].dead && !c->th[i].destroyed) {
					c->th[i].destroyed = 1;
					release_destroyed(c, i);
				}
			} else if (k >= 0) {
				logent(c, E_NDESTROY, 0, c->idx, k);
				/* Drop our reference unless destroy did. */
				if (!c->released[k] && !c->own_notified[k]++)
					release_destroyed(c, -1 - k);
			} else {
				fail(c, "NODE_DESTROY for unknown ID %llx", r.msg.destination);
			}
			break;
		case BUS1_MSG_NODE_RELEASE:
			k = own_temp(c, r.msg.destination);
			if (k >= 0)
				logent(c, E_NRELEASE, 0, c->idx, k);
			else
				fail(c, "NODE_RELEASE for %llx", r.msg.destination);
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
	int e, i;

	c->eph_fd[k] = -1;
	c->carry_id[k] = TEMP_ID(k);
	if (c->n_eph >= MAXEPH || xrand(c) % 3)
		return 0;
	e = bus1_peer_new();
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
	i = th_add(c, t.dst_handle, c->idx, k);
	if (i >= 0) {
		c->th[i].refs = 1;
		c->th[i].pinned = 1;
	}
	logent(c, E_ACQUIRE, 0, c->idx, k);
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

	if (c->eph_fd[k] < 0) {
		/*
		 * With RELEASE_HANDLES the owner's own reference goes too, and
		 * RECV drops data queued on the node even if ordered before the
		 * destruction; without it, we release at our NODE_DESTROY.
		 */
		if (xrand(c) % 2) {
			d.flags = BUS1_NODES_DESTROY_FLAG_RELEASE_HANDLES;
			c->released[k] = 1;
		}
		if (ioctl(c->fd, BUS1_CMD_NODES_DESTROY, &d))
			fail(c, "NODES_DESTROY: %d", errno);
		logent(c, E_DESTROY, c->released[k] ? F_RELEASED : 0, c->idx, k);
	} else {
		if (xrand(c) % 2) {
			if (ioctl(c->eph_fd[k], BUS1_CMD_PEER_RESET, &rs))
				fail(c, "PEER_RESET: %d", errno);
			logent(c, E_DESTROY, F_EPH, c->idx, k);
			__atomic_add_fetch(&c->sh->n_reset, 1, __ATOMIC_RELAXED);
			close(c->eph_fd[k]);
		} else {
			close(c->eph_fd[k]);
			logent(c, E_DESTROY, F_EPH, c->idx, k);
		}
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
	struct hrec *t;
	int i, r, eph;

	if (!c->n_th)
		return;
	/*
	 * Not one whose ID is gone (released); one whose NODE_DESTROY arrived
	 * is fine: the probe is ordered after the destruction.
	 */
	for (i = 0, t = NULL; i < 8 && (!t || t->dead); i++)
		t = &c->th[xrand(c) % c->n_th];
	if (t->dead)
		return;
	p.seq = sh->attempts[c->idx]++;
	p.tag = t->tag;
	p.mask = 1 << t->owner;
	r = send_msg(c, &t->id, 1, &p, NULL, 0, 0);
	__atomic_add_fetch(&sh->n_probe, 1, __ATOMIC_RELAXED);
	if (r)
		__atomic_add_fetch(&sh->n_probe_failed, 1, __ATOMIC_RELAXED);
	if (r == 0) {
		/*
		 * Only a main peer's node is read; what reaches an ephemeral
		 * peer is dropped with it, so it is not expected anywhere.
		 */
		eph = sh->eph[t->owner][t->tag];
		acked(c, p.seq, PROBE, eph ? 0 : 1 << t->owner, eph, t->owner, t->tag);
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
	c->sending = 1;
	while (time(NULL) < end && sh->attempts[c->idx] < MAXSEQ - 1) {
		int op = xrand(c) % 100, n_dst = 0, r, i, fresh = 0, carried = -1;
		struct payload p = { .magic = MAGIC, .sender = (uint16_t)c->idx };
		int mask = 0;
		__u64 handle;

		if (op >= 80) {
			drain(c, 64);
			continue;
		}
		if (op >= 75) {
			probe(c);
			continue;
		}
		if (op >= 73) {
			/* Release a handle we hold, maybe while more copies are queued. */
			i = c->n_th ? xrand(c) % c->n_th : 0;
			if (c->n_th && !c->th[i].dead && !c->th[i].destroyed && !c->th[i].pinned) {
				th_release(c, i);
				logent(c, E_LEASE, 0, c->th[i].owner, c->th[i].tag);
			}
			continue;
		}
		if (op < 40) {
			i = xrand(c) % c->n;
			dst[n_dst++] = c->h[i];
			mask = 1 << i;
			p.kind = UNICAST;
		} else {
			/* A short-lived node is never carried to its owner. */
			p.kind = op < 65 ? MULTICAST : CARRY;
			for (i = 0; i < c->n; i++) {
				if ((p.kind != CARRY || i != c->idx) && xrand(c) % 2) {
					dst[n_dst++] = c->h[i];
					mask |= 1 << i;
				}
			}
			if (n_dst < (p.kind == CARRY ? 1 : 2))
				continue;
		}
		p.mask = mask;
		if (p.kind == CARRY) {
			if (c->n_temp == 0 || xrand(c) % 4 == 0) {
				if (c->n_temp >= MAXTEMP)
					continue;
				k = c->n_temp;
				if (create_temp(c, k))
					continue;
				sh->eph[c->idx][k] = c->eph_fd[k] >= 0;
				c->n_temp++;
				fresh = 1;
			} else {
				k = xrand(c) % c->n_temp;
				if (!c->live[k])
					continue;
			}
			c->live[k] = 1;
			p.tag = k;
			p.seq = sh->attempts[c->idx]++;
			handle = c->carry_id[k];
			r = send_msg(c, dst, n_dst, &p, &handle, 1, 0);
			if (r == 0) {
				acked(c, p.seq, CARRY, mask, c->eph_fd[k] >= 0, c->idx, k);
				carried = k;
				/*
				 * Now and then carry it once more and destroy it:
				 * a receiver that releases its handle at the first
				 * copy gets it back from the second, then owes
				 * exactly one NODE_DESTROY.
				 */
				if (xrand(c) % 8 == 0 && sh->attempts[c->idx] < MAXSEQ - 1) {
					p.seq = sh->attempts[c->idx]++;
					r = send_msg(c, dst, n_dst, &p, &handle, 1, 0);
					if (r == 0)
						acked(c, p.seq, CARRY, mask, c->eph_fd[k] >= 0,
						      c->idx, k);
					destroy_temp(c, k);
					carried = -1;
				}
			} else if (fresh && c->eph_fd[k] < 0) {
				c->live[k] = 0;	/* a failed SEND created nothing */
			}
		} else {
			p.seq = sh->attempts[c->idx]++;
			r = send_msg(c, dst, n_dst, &p, NULL, 0, p.kind == UNICAST && op < 10);
			if (r == 0)
				acked(c, p.seq, p.kind, mask, 0, 0, 0);
		}
		if (r && r != -EDQUOT && r != -EXFULL)
			fail(c, "SEND: %d", r);
		/*
		 * Destroy one of our short-lived nodes now and then, or the
		 * one just carried, while the copies are still queued.
		 */
		if (c->n_temp && xrand(c) % 8 == 0) {
			k = carried >= 0 && xrand(c) % 2 ? carried : xrand(c) % c->n_temp;
			if (c->live[k])
				destroy_temp(c, k);
		}
	}
	for (k = 0; k < c->n_temp; k++)
		if (c->live[k])
			destroy_temp(c, k);
	c->sending = 0;
	__atomic_add_fetch(&sh->done_sending, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&sh->done_sending, __ATOMIC_SEQ_CST) < c->n)
		drain(c, 256);
	/* Nothing is sent any more: drain to the end, twice for late releases. */
	while (drain(c, 1024) > 0)
		;
	usleep(100000);
	while (drain(c, 1024) > 0)
		;
}

/* The oracle. */

enum verdict { O_OK, O_LOG, O_UNSENT, O_DUP, O_SEQ, O_LOST, O_INVALID, O_NODE, O_RELEASE,
	       O_CAUSAL, O_CYCLE };

struct ostats {
	uint64_t entries, deliveries, replies, ndestroy, nrelease, leases, nodes, edges;
	uint64_t eph, probe_failed;	/* ephemeral peers, probes refused */
};

/* Graph nodes: data (s, seq), destruction of node (s, k), each NODE_RELEASE. */
#define NPER (MAXSEQ + MAXTEMP)
#define MSG_NODE(s, q) ((uint32_t)(s) * NPER + (q))
#define DST_NODE(s, k) ((uint32_t)(s) * NPER + MAXSEQ + (k))
#define NONE UINT32_MAX

/* Why an edge u -> v is there; each names a peer. */
enum { W_QUEUE, W_CAUSAL, W_PROGRAM, W_VALID, W_PROBE_IN, W_PROBE_OUT, W_REL };

static const char *const why_text[] = {
	[W_QUEUE] = "peer %u received them in this order",
	[W_CAUSAL] = "peer %u started the second after receiving the first",
	[W_PROGRAM] = "peer %u started the second after the first returned",
	[W_VALID] = "peer %u got a valid handle, so before the destruction",
	[W_PROBE_IN] = "delivered to the owner, peer %u, so before the destruction",
	[W_PROBE_OUT] = "dropped at the owner, peer %u, so after the destruction",
	[W_REL] = "NODE_RELEASE at peer %u, so before the destruction",
};

struct edge {
	uint32_t u, v;
	uint16_t why, peer;
};

static struct oracle {
	const struct shared *sh;
	int n;
	char *out;
	size_t len;
	uint32_t pos[MAXP][MAXP][MAXSEQ];	/* receiver, sender, seq -> log index + 1 */
	uint32_t dpos[MAXP][MAXTEMP];		/* E_DESTROY log index + 1 */
	uint8_t dflags[MAXP][MAXTEMP];
	uint8_t held[MAXP][MAXTEMP], nd[MAXP][MAXTEMP];
	uint8_t pinned[MAXP][MAXSEQ];		/* receiver + 1 still holding its handle */
	uint32_t pin_seq[MAXTEMP];
	uint8_t pin_peer[MAXTEMP];
	struct edge *e;
	size_t n_e, cap_e;
	struct { uint16_t peer; uint32_t k; } *rel;
	uint32_t n_rel;
} orc;

static int verdict(struct oracle *o, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(o->out, o->len, fmt, ap);
	va_end(ap);
	return code;
}

/* Appends a description of graph node @v to @buf. */
static void describe(struct oracle *o, uint32_t v, char *buf, size_t len)
{
	const struct meta *m;
	uint32_t s, q;

	if (v >= (uint32_t)o->n * NPER) {
		v -= o->n * NPER;
		snprintf(buf, len, "NODE_RELEASE of node %u:%u", o->rel[v].peer, o->rel[v].k);
		return;
	}
	s = v / NPER;
	q = v % NPER;
	if (q >= MAXSEQ) {
		snprintf(buf, len, "destruction of node %u:%u", s, q - MAXSEQ);
		return;
	}
	m = &o->sh->meta[s][q];
	switch (m->kind) {
	case CARRY:
		snprintf(buf, len, "%u/%u (carry of node %u:%u)", s, q, s, m->tag);
		break;
	case PROBE:
		snprintf(buf, len, "%u/%u (probe to node %u:%u)", s, q, m->owner, m->tag);
		break;
	case REPLY:
		snprintf(buf, len, "%u/%u (reply to %u/%u)", s, q, m->owner, m->tag);
		break;
	default:
		snprintf(buf, len, "%u/%u (%s)", s, q, kind_name[m->kind < K_MAX ? m->kind : 0]);
	}
}

/* Whether log entry @e of peer @j concerns node @k of peer @s. */
static int about_node(const struct shared *sh, int j, const struct ent *e, int s, uint32_t k)
{
	const struct meta *m;

	switch (e->type) {
	case E_SEND:
		m = &sh->meta[j][e->seq];
		return j == s && m->kind == CARRY && m->tag == k;
	case E_RECV:
		m = &sh->meta[e->who][e->seq];
		return (m->kind == CARRY || m->kind == PROBE) && m->owner == s && m->tag == k;
	default:
		return e->who == s && e->seq == k;
	}
}

/*
 * Appends to the verdict what peer @j logged about node @k of peer @s (up to
 * @max entries before @upto, the entry that broke a rule, and that entry).
 */
static int history(struct oracle *o, int ret, int j, int s, uint32_t k, uint32_t upto)
{
	static const char *const what[] = {
		[E_SEND] = "sent",
		[E_DESTROY] = "destroyed it",
		[E_ACQUIRE] = "got a handle by HANDLE_TRANSFER",
		[E_LEASE] = "released its handle",
		[E_RECV] = "received",
		[E_NDESTROY] = "NODE_DESTROY",
		[E_NRELEASE] = "NODE_RELEASE",
	};
	const struct shared *sh = o->sh;
	size_t used = strlen(o->out);
	uint32_t i, first = 0, n = 0;
	char a[96];

	if (upto >= sh->n_log[j])
		upto = sh->n_log[j] - 1;
	/* The last 16 entries about the node up to @upto. */
	for (i = upto + 1; i-- > 0 && n < 16;) {
		if (about_node(sh, j, &sh->log[j][i], s, k)) {
			first = i;
			n++;
		}
	}
	used += snprintf(o->out + used, o->len - used, "\n#   peer %d's log about node %d:%u:",
			 j, s, k);
	for (i = first; i <= upto && used < o->len; i++) {
		const struct ent *e = &sh->log[j][i];

		if (!about_node(sh, j, e, s, k))
			continue;
		a[0] = 0;
		if (e->type == E_SEND || e->type == E_RECV)
			describe(o, MSG_NODE(e->who, e->seq), a, sizeof(a));
		used += snprintf(o->out + used, o->len - used, "\n#     %u: %s%s%s%s",
				 i, what[e->type], a[0] ? " " : "", a,
				 e->flags & F_VALID ? ", valid handle" :
				 e->flags & F_INVALID ? ", INVALID handle" :
				 e->flags & F_RELEASED ? " with RELEASE_HANDLES" : "");
	}
	return ret;
}

static int add_edge(struct oracle *o, uint32_t u, uint32_t v, int why, int peer)
{
	if (u == NONE || u == v)
		return 0;
	if (o->n_e == o->cap_e) {
		size_t cap = o->cap_e ? 2 * o->cap_e : 1 << 16;
		struct edge *e = realloc(o->e, cap * sizeof(*e));

		if (!e)
			return -1;
		o->e = e;
		o->cap_e = cap;
	}
	o->e[o->n_e++] = (struct edge){ .u = u, .v = v, .why = why, .peer = peer };
	return 0;
}

/*
 * A cycle through @v: the shortest path from @v back to itself, by
 * breadth-first search over the edges @off/@adj (edge indexes, sorted by u).
 */
static int report_cycle(struct oracle *o, uint32_t n_nodes, const uint32_t *off,
			const uint32_t *adj, uint32_t v)
{
	uint32_t *from = malloc(n_nodes * sizeof(*from)), *queue = malloc(n_nodes * sizeof(*queue));
	uint32_t *path = NULL, head = 0, tail = 0, x, len = 0, i, last = NONE;
	size_t used;
	char a[96];

	if (!from || !queue)
		goto out;
	memset(from, 0xff, n_nodes * sizeof(*from));
	queue[tail++] = v;
	while (head < tail && last == NONE) {
		x = queue[head++];
		for (i = off[x]; i < off[x + 1]; i++) {
			uint32_t y = o->e[adj[i]].v;

			if (y == v) {
				last = adj[i];
				break;
			}
			if (from[y] == NONE) {
				from[y] = adj[i];
				queue[tail++] = y;
			}
		}
	}
	if (last == NONE)
		goto out;
	/* Walk back from the closing edge to v: edges in reverse. */
	path = queue;
	for (i = last;; i = from[o->e[i].u]) {
		path[len++] = i;
		if (o->e[i].u == v)
			break;
	}
	used = snprintf(o->out, o->len, "no global order: a cycle of %u events", len);
	for (i = len; i-- > 0 && used < o->len;) {
		const struct edge *e = &o->e[path[i]];

		describe(o, e->u, a, sizeof(a));
		used += snprintf(o->out + used, o->len - used, "\n#   %s\n#     then, because ", a);
		if (used < o->len)
			used += snprintf(o->out + used, o->len - used, why_text[e->why], e->peer);
	}
	if (used < o->len) {
		describe(o, v, a, sizeof(a));
		snprintf(o->out + used, o->len - used, "\n#   %s", a);
	}
out:
	free(from);
	free(queue);
	if (last == NONE)
		return verdict(o, O_CYCLE, "no global order (cycle through %u not resolved)", v);
	return O_CYCLE;
}

/* Checks that the graph has no cycle (depth-first search). */
static int check_acyclic(struct oracle *o, uint32_t n_nodes, struct ostats *st)
{
	uint32_t *off = calloc(n_nodes + 1, sizeof(*off));
	uint32_t *adj = malloc((o->n_e + 1) * sizeof(*adj));
	uint32_t *cur = malloc(n_nodes * sizeof(*cur));
	uint32_t *stack = malloc(n_nodes * sizeof(*stack));
	uint8_t *color = calloc(n_nodes, 1);
	uint32_t i, r, sp;
	int ret = O_OK;

	if (!off || !adj || !cur || !stack || !color) {
		ret = verdict(o, O_LOG, "out of memory for the graph");
		goto out;
	}
	for (i = 0; i < o->n_e; i++)
		off[o->e[i].u + 1]++;
	for (i = 0; i < n_nodes; i++) {
		off[i + 1] += off[i];
		cur[i] = off[i];
	}
	for (i = 0; i < o->n_e; i++)
		adj[cur[o->e[i].u]++] = i;
	for (i = 0; i < n_nodes; i++)
		cur[i] = off[i];
	for (i = 0; i < o->n_e; i++)
		color[o->e[i].u] = color[o->e[i].v] = 1;
	for (i = 0; i < n_nodes; i++) {
		st->nodes += color[i];
		color[i] = 0;
	}
	st->edges += o->n_e;
	/* 0: not visited, 1: on the stack, 2: done. */
	for (r = 0; r < n_nodes && ret == O_OK; r++) {
		if (color[r])
			continue;
		sp = 0;
		stack[sp++] = r;
		color[r] = 1;
		while (sp) {
			uint32_t u = stack[sp - 1], v;

			if (cur[u] == off[u + 1]) {
				color[u] = 2;
				sp--;
				continue;
			}
			v = o->e[adj[cur[u]++]].v;
			if (color[v] == 1) {
				ret = report_cycle(o, n_nodes, off, adj, v);
				break;
			}
			if (!color[v]) {
				color[v] = 1;
				stack[sp++] = v;
			}
		}
	}
out:
	free(off);
	free(adj);
	free(cur);
	free(stack);
	free(color);
	return ret;
}

static int is_receipt(int type)
{
	return type == E_RECV || type == E_NDESTROY || type == E_NRELEASE;
}

/* 1. Well-formed records and logs; exactly once and per-sender order. */
static int check_logs(struct oracle *o, struct ostats *st)
{
	const struct shared *sh = o->sh;
	int n = o->n, s, j;
	uint32_t i, q;

	for (s = 0; s < n; s++) {
		for (q = 0; q < MAXSEQ; q++) {
			const struct meta *m = &sh->meta[s][q];
			int bad = m->kind >= K_MAX || m->mask >> n;

			if (m->kind == CARRY || m->kind == PROBE)
				bad |= m->owner >= n || m->tag >= MAXTEMP;
			if (m->kind == REPLY)
				bad |= m->owner >= n || m->tag >= MAXSEQ;
			if (bad)
				return verdict(o, O_LOG, "bad record of send %d/%u", s, q);
		}
	}
	for (j = 0; j < n; j++) {
		uint32_t last[MAXP] = { 0 };

		if (sh->n_log[j] > MAXLOG)
			return verdict(o, O_LOG, "peer %d: log overflow", j);
		for (i = 0; i < sh->n_log[j]; i++) {
			const struct ent *e = &sh->log[j][i];
			const struct meta *m = &sh->meta[e->who % n][e->seq % MAXSEQ];
			int bad = e->who >= n;

			switch (e->type) {
			case E_SEND:
				bad |= e->who != j || e->seq >= MAXSEQ || m->kind == K_NONE;
				break;
			case E_DESTROY:
				bad |= e->who != j || e->seq >= MAXTEMP;
				bad |= o->dpos[j][e->seq % MAXTEMP] != 0;
				if (!bad) {
					o->dpos[j][e->seq] = i + 1;
					o->dflags[j][e->seq] = e->flags;
				}
				break;
			case E_ACQUIRE:
			case E_NRELEASE:
				bad |= e->who != j || e->seq >= MAXTEMP;
				o->n_rel += e->type == E_NRELEASE;
				break;
			case E_LEASE:
			case E_NDESTROY:
				bad |= e->seq >= MAXTEMP;
				break;
			case E_RECV:
				bad |= e->seq >= MAXSEQ;
				bad |= (e->flags & (F_VALID | F_INVALID)) && m->kind != CARRY;
				break;
			default:
				bad = 1;
			}
			if (bad)
				return verdict(o, O_LOG, "peer %d: bad log entry %u", j, i);
			if (e->type != E_RECV)
				continue;
			if (m->kind == K_NONE || !(m->mask & 1 << j))
				return verdict(o, O_UNSENT,
					       "peer %d received %u/%u, not sent to it",
					       j, e->who, e->seq);
			if (o->pos[j][e->who][e->seq])
				return verdict(o, O_DUP, "peer %d received %u/%u twice",
					       j, e->who, e->seq);
			o->pos[j][e->who][e->seq] = i + 1;
			if (e->seq < last[e->who])
				return verdict(o, O_SEQ, "peer %d received %u/%u after %u/%u",
					       j, e->who, e->seq, e->who, last[e->who] - 1);
			last[e->who] = e->seq + 1;
			st->deliveries++;
		}
		st->entries += sh->n_log[j];
	}
	return O_OK;
}

/*
 * 2. Every acknowledged copy arrived. A probe may be missing: it may be
 * ordered after its node's destruction, and SEND does not fail then; the
 * graph places it after the destruction. A handle comes out INVALID only if
 * its node was destroyed.
 */
static int check_delivery(struct oracle *o)
{
	const struct shared *sh = o->sh;
	int n = o->n, s, j;
	uint32_t i, q;

	for (s = 0; s < n; s++) {
		for (q = 0; q < MAXSEQ; q++) {
			const struct meta *m = &sh->meta[s][q];

			for (j = 0; j < n; j++) {
				if (!(m->mask & 1 << j) || o->pos[j][s][q])
					continue;
				if (m->kind != PROBE)
					return verdict(o, O_LOST,
						       "%u/%u (%s) never reached peer %d",
						       s, q, kind_name[m->kind], j);
				if (!o->dpos[m->owner][m->tag])
					return verdict(o, O_LOST,
						       "probe %u/%u never reached peer %d, and node %u:%u was never destroyed",
						       s, q, j, m->owner, m->tag);
			}
		}
	}
	for (j = 0; j < n; j++) {
		for (i = 0; i < sh->n_log[j]; i++) {
			const struct ent *e = &sh->log[j][i];
			uint32_t k = sh->meta[e->who][e->seq].tag;

			if (e->type == E_RECV && (e->flags & F_INVALID) && !o->dpos[e->who][k])
				return verdict(o, O_INVALID,
					       "peer %d: INVALID handle in %u/%u, but node %u:%u was not destroyed",
					       j, e->who, e->seq, e->who, k);
		}
	}
	return O_OK;
}

/* A verdict about node @k of peer @s, with peer @j's log about it up to entry @i. */
static int node_verdict(struct oracle *o, int code, int j, int s, uint32_t k, uint32_t i,
			const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(o->out, o->len, fmt, ap);
	va_end(ap);
	return history(o, code, j, s, k, i);
}

/*
 * 3. Node notifications against data, at receiver @j: a handle is held from
 * a valid receipt (or from creating the node, for its owner) until it is
 * released or its NODE_DESTROY arrives.
 */
static int check_notifications(struct oracle *o, int j, struct ostats *st)
{
	const struct shared *sh = o->sh;
	uint32_t i, k;
	int s;

	memset(o->held, 0, sizeof(o->held));
	memset(o->nd, 0, sizeof(o->nd));
	for (i = 0; i < sh->n_log[j]; i++) {
		const struct ent *e = &sh->log[j][i];
		const struct meta *m = &sh->meta[e->who][e->seq % MAXSEQ];

		s = e->who;
		k = e->seq;
		switch (e->type) {
		case E_SEND:
			if (m->kind == CARRY && !m->eph)
				o->held[j][m->tag] = 1;
			break;
		case E_DESTROY:
			if (e->flags & F_RELEASED)
				o->held[j][k] = 0;
			break;
		case E_ACQUIRE:
			o->held[j][k] = 1;
			break;
		case E_LEASE:
			if (!o->held[s][k])
				return node_verdict(o, O_NODE, j, s, k, i,
						    "peer %d released a handle to node %d:%u it did not hold",
						    j, s, k);
			o->held[s][k] = 0;
			st->leases++;
			break;
		case E_RECV:
			k = m->tag;
			if (m->kind == CARRY && (e->flags & F_VALID)) {
				if (o->nd[s][k])
					return node_verdict(o, O_NODE, j, s, k, i,
							    "peer %d: valid handle to node %d:%u in %d/%u after its NODE_DESTROY",
							    j, s, k, s, e->seq);
				o->held[s][k] = 1;
			}
			if (m->kind != PROBE || m->owner != j || m->eph)
				break;
			if (o->nd[j][k])
				return node_verdict(o, O_NODE, j, j, k, i,
						    "peer %d: %d/%u, data for node %d:%u, after its NODE_DESTROY",
						    j, s, e->seq, j, k);
			if (o->dpos[j][k] && o->dpos[j][k] <= i && (o->dflags[j][k] & F_RELEASED))
				return node_verdict(o, O_NODE, j, j, k, i,
						    "peer %d: %d/%u, data for node %d:%u, after NODES_DESTROY(RELEASE_HANDLES) of it",
						    j, s, e->seq, j, k);
			break;
		case E_NDESTROY:
			if (o->nd[s][k])
				return node_verdict(o, O_NODE, j, s, k, i,
						    "peer %d: two NODE_DESTROY for node %d:%u",
						    j, s, k);
			if (!o->dpos[s][k])
				return node_verdict(o, O_NODE, j, s, k, i,
						    "peer %d: NODE_DESTROY for node %d:%u, which was not destroyed",
						    j, s, k);
			if (!o->held[s][k])
				return node_verdict(o, O_NODE, j, s, k, i,
						    "peer %d: NODE_DESTROY for node %d:%u without holding a handle to it",
						    j, s, k);
			o->nd[s][k] = 1;
			o->held[s][k] = 0;
			st->ndestroy++;
			break;
		case E_NRELEASE:
			if (o->nd[j][k] || (o->dpos[j][k] && o->dpos[j][k] <= i))
				return node_verdict(o, O_RELEASE, j, j, k, i,
						    "peer %d: NODE_RELEASE for node %d:%u after its destruction",
						    j, j, k);
			st->nrelease++;
			break;
		}
	}
	for (s = 0; s < o->n; s++) {
		for (k = 0; k < MAXTEMP; k++) {
			if (!o->held[s][k] || o->nd[s][k])
				continue;
			return node_verdict(o, O_NODE, j, s, k, UINT32_MAX, o->dpos[s][k] ?
					    "peer %d: no NODE_DESTROY for node %d:%u, to which it held a handle" :
					    "peer %d holds a handle to node %d:%u, which was never destroyed",
					    j, s, k);
		}
	}
	return O_OK;
}

/*
 * 4. NODE_RELEASE: the owner must not receive one for a node after sending a
 * message carrying it whose receiver kept the handle until the destruction
 * (that handle held a reference all the time).
 */
static int check_releases(struct oracle *o)
{
	const struct shared *sh = o->sh;
	uint32_t i, k;
	int j, s;

	for (j = 0; j < o->n; j++) {
		memset(o->held, 0, sizeof(o->held));	/* released later in the log */
		for (i = sh->n_log[j]; i-- > 0;) {
			const struct ent *e = &sh->log[j][i];

			if (e->type == E_LEASE)
				o->held[e->who][e->seq] = 1;
			else if (e->type == E_RECV && (e->flags & F_VALID) && e->who != j &&
				 !o->held[e->who][sh->meta[e->who][e->seq].tag])
				o->pinned[e->who][e->seq] = j + 1;
		}
	}
	for (s = 0; s < o->n; s++) {
		memset(o->pin_peer, 0, sizeof(o->pin_peer));
		for (i = 0; i < sh->n_log[s]; i++) {
			const struct ent *e = &sh->log[s][i];

			if (e->type == E_SEND && o->pinned[s][e->seq]) {
				k = sh->meta[s][e->seq].tag;
				if (!o->pin_peer[k]) {
					o->pin_peer[k] = o->pinned[s][e->seq];
					o->pin_seq[k] = e->seq;
				}
			} else if (e->type == E_NRELEASE && o->pin_peer[e->seq]) {
				k = e->seq;
				j = o->pin_peer[k] - 1;
				return node_verdict(o, O_RELEASE, j, s, k, UINT32_MAX,
						    "peer %d: NODE_RELEASE for node %d:%u after sending %d/%u, whose handle peer %d kept",
						    s, s, k, s, o->pin_seq[k], j);
			}
		}
	}
	return O_OK;
}

/* 5. Causality: a reply comes after its original at every common receiver. */
static int check_replies(struct oracle *o, struct ostats *st)
{
	const struct shared *sh = o->sh;
	uint32_t q;
	int j, s;

	for (s = 0; s < o->n; s++) {
		for (q = 0; q < MAXSEQ; q++) {
			const struct meta *m = &sh->meta[s][q];

			if (m->kind != REPLY)
				continue;
			for (j = 0; j < o->n; j++) {
				uint32_t a = o->pos[j][m->owner][m->tag], b = o->pos[j][s][q];

				if (!a || !b)
					continue;
				st->replies++;
				if (a > b)
					return verdict(o, O_CAUSAL,
						       "peer %d received the reply %d/%u before its original %u/%u",
						       j, s, q, m->owner, m->tag);
			}
		}
	}
	return O_OK;
}

/* 6. The edges of the precedence graph. */
static int build_graph(struct oracle *o)
{
	const struct shared *sh = o->sh;
	uint32_t i, q, rel = 0;
	int j, s, r = 0;

	o->rel = calloc(o->n_rel + 1, sizeof(*o->rel));
	if (!o->rel)
		return -1;
	for (j = 0; j < o->n; j++) {
		uint32_t last_recv = NONE, last_act = NONE, v;

		for (i = 0; i < sh->n_log[j]; i++) {
			const struct ent *e = &sh->log[j][i];
			const struct meta *m = &sh->meta[e->who][e->seq % MAXSEQ];

			switch (e->type) {
			case E_SEND:
			case E_RECV:
				v = MSG_NODE(e->who, e->seq);
				break;
			case E_DESTROY:
			case E_NDESTROY:
				v = DST_NODE(e->who, e->seq);
				break;
			case E_NRELEASE:
				o->rel[rel].peer = j;
				o->rel[rel].k = e->seq;
				v = o->n * NPER + rel++;
				break;
			default:
				continue;
			}
			if (is_receipt(e->type)) {
				r |= add_edge(o, last_recv, v, W_QUEUE, j);
				last_recv = v;
			} else {
				r |= add_edge(o, last_recv, v, W_CAUSAL, j);
				r |= add_edge(o, last_act, v, W_PROGRAM, j);
				last_act = v;
			}
			if (e->type == E_RECV && (e->flags & F_VALID) && o->dpos[e->who][m->tag])
				r |= add_edge(o, v, DST_NODE(e->who, m->tag), W_VALID, j);
			if (e->type == E_RECV && m->kind == PROBE && m->owner == j && !m->eph &&
			    o->dpos[j][m->tag])
				r |= add_edge(o, v, DST_NODE(j, m->tag), W_PROBE_IN, j);
			if (e->type == E_NRELEASE && o->dpos[j][e->seq])
				r |= add_edge(o, v, DST_NODE(j, e->seq), W_REL, j);
		}
	}
	for (s = 0; s < o->n; s++) {
		for (q = 0; q < MAXSEQ; q++) {
			const struct meta *m = &sh->meta[s][q];
			int w = m->owner;

			if (m->kind != PROBE || !m->mask || o->pos[w][s][q])
				continue;
			if (o->dpos[w][m->tag] && !(o->dflags[w][m->tag] & F_RELEASED))
				r |= add_edge(o, DST_NODE(w, m->tag), MSG_NODE(s, q), W_PROBE_OUT, w);
		}
	}
	return r;
}

/*
 * Checks the logs of @n processes in @sh. Returns O_OK, or the first
 * violation found, described in @out.
 */
static int oracle(const struct shared *sh, int n, struct ostats *st, char *out, size_t len)
{
	struct oracle *o = &orc;
	int j, ret;

	memset(o, 0, sizeof(*o));
	o->sh = sh;
	o->n = n;
	o->out = out;
	o->len = len;
	out[0] = 0;
	ret = check_logs(o, st);
	if (!ret)
		ret = check_delivery(o);
	for (j = 0; j < n && !ret; j++)
		ret = check_notifications(o, j, st);
	if (!ret)
		ret = check_releases(o);
	if (!ret)
		ret = check_replies(o, st);
	if (!ret) {
		if (build_graph(o))
			ret = verdict(o, O_LOG, "out of memory for the graph");
		else
			ret = check_acyclic(o, n * NPER + o->n_rel, st);
	}
	free(o->e);
	free(o->rel);
	o->e = NULL;
	o->rel = NULL;
	return ret;
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
static void one_round(struct __test_metadata *_metadata, int n, int seconds, unsigned int seed,
		      struct ostats *total)
{
	struct ostats st = { 0 };
	struct shared *sh;
	struct child *c;
	pid_t pid[MAXP];
	int i, j, fds[MAXP], ret;
	__u64 h[MAXP][MAXP];
	char why[4096];
	struct timespec t0, t1;

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, sh);
	c = calloc(1, sizeof(*c));
	ASSERT_NE(NULL, c);

	for (i = 0; i < n; i++) {
		fds[i] = bus1_peer_new();
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

	clock_gettime(CLOCK_MONOTONIC, &t0);
	ret = oracle(sh, n, &st, why, sizeof(why));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ASSERT_EQ(O_OK, ret) TH_LOG("%s", why);

	TH_LOG("%llu events logged, %llu deliveries, %llu replies checked, %llu NODE_DESTROY, %llu NODE_RELEASE, %llu handles released early; graph %llu events, %llu edges, checked in %ld ms; %u ephemeral peers (%u reset), %u probes (%u refused)",
	       (unsigned long long)st.entries, (unsigned long long)st.deliveries,
	       (unsigned long long)st.replies, (unsigned long long)st.ndestroy,
	       (unsigned long long)st.nrelease, (unsigned long long)st.leases,
	       (unsigned long long)st.nodes, (unsigned long long)st.edges,
	       (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000),
	       sh->n_eph, sh->n_reset, sh->n_probe, sh->n_probe_failed);
	total->eph += sh->n_eph;
	total->probe_failed += sh->n_probe_failed;
	total->entries += st.entries;
	total->deliveries += st.deliveries;
	total->replies += st.replies;
	total->ndestroy += st.ndestroy;
	total->nrelease += st.nrelease;
	total->leases += st.leases;
	total->nodes += st.nodes;
	total->edges += st.edges;
	for (i = 0; i < n; i++)
		close(fds[i]);
	munmap(sh, sizeof(*sh));
	free(c);
}

/* Whether the run so far exercised what the oracle is there for. */
static int covered(const struct ostats *t)
{
	return t->deliveries > 100 && t->replies && t->ndestroy && t->eph && t->probe_failed;
}

/*
 * Rounds of at most 30 s, each with fresh peers, until BUS1_STRESS_SECONDS
 * are over: a sender stops after MAXSEQ sends, so one long round would idle.
 * The run must have covered the races it checks (deliveries, replies,
 * destructions, ephemeral peers, a probe refused by a destruction); on a slow
 * host it continues with further rounds until it did, rather than failing, and
 * only the harness timeout bounds it: the run's length plus 60 s for the last
 * round and its checks, which take a few seconds on the debug kernel under
 * TCG (scripts/manifest.py reads the env_int() default as the length of the
 * make check run).
 */
TEST_F_TIMEOUT(stress, ordered_delivery, 60 + env_int("BUS1_STRESS_SECONDS", 30))
{
	int n = env_int("BUS1_STRESS_PROCS", 4);
	int seconds = env_int("BUS1_STRESS_SECONDS", 30);
	unsigned int seed = (unsigned int)env_int("BUS1_STRESS_SEED", (int)time(NULL));
	time_t end = time(NULL) + seconds;
	struct ostats total = { 0 };
	int round = 0;

	if (n < 2)
		n = 2;
	if (n > MAXP)
		n = MAXP;
	TH_LOG("procs=%d seconds=%d seed=%u", n, seconds, seed);
	do {
		long left = (long)(end - time(NULL));

		one_round(_metadata, n, left > 30 ? 30 : left < 5 ? 5 : (int)left, seed + round++,
			  &total);
	} while (time(NULL) < end || !covered(&total));
	TH_LOG("%d rounds: %llu events, %llu deliveries, %llu replies checked, %llu NODE_DESTROY, %llu NODE_RELEASE, %llu ephemeral peers, %llu probes refused; graphs of %llu events and %llu edges in all",
	       round, (unsigned long long)total.entries, (unsigned long long)total.deliveries,
	       (unsigned long long)total.replies, (unsigned long long)total.ndestroy,
	       (unsigned long long)total.nrelease, (unsigned long long)total.eph,
	       (unsigned long long)total.probe_failed, (unsigned long long)total.nodes,
	       (unsigned long long)total.edges);
	ASSERT_TRUE(covered(&total));
}

/* Crafted logs for the oracle's own test. */

static void t_log(struct shared *sh, int j, int type, int flags, int who, uint32_t seq)
{
	sh->log[j][sh->n_log[j]++] = (struct ent){
		.type = type, .flags = flags, .who = who, .seq = seq,
	};
}

static void t_send(struct shared *sh, int s, uint32_t q, int kind, int mask, int owner,
		   uint32_t tag)
{
	sh->meta[s][q] = (struct meta){ .kind = kind, .mask = mask, .owner = owner, .tag = tag };
	t_log(sh, s, E_SEND, 0, s, q);
}

/* Peer 0 carries its node 0 to peer 1 in 0/0; peer 1 holds it. */
static void t_carry(struct shared *sh)
{
	t_send(sh, 0, 0, CARRY, 1 << 1, 0, 0);
	t_log(sh, 1, E_RECV, F_VALID, 0, 0);
}

enum {
	T_CLEAN, T_CYCLE3, T_CAUSAL, T_DUP_DESTROY, T_NO_DESTROY, T_DATA_AFTER_DESTROY,
	T_LOST_PROBE, T_RELEASE_HELD, T_PAIRWISE_ONLY, T_MAX
};

static const struct {
	const char *name;
	int expect;
} t_case[T_MAX] = {
	[T_CLEAN] = { "consistent logs", O_OK },
	[T_CYCLE3] = { "3-cycle over three receivers", O_CYCLE },
	[T_CAUSAL] = { "reply before its original", O_CAUSAL },
	[T_DUP_DESTROY] = { "two NODE_DESTROY for one handle", O_NODE },
	[T_NO_DESTROY] = { "no NODE_DESTROY for a held handle", O_NODE },
	[T_DATA_AFTER_DESTROY] = { "owner gets data after its NODE_DESTROY", O_NODE },
	[T_LOST_PROBE] = { "probe dropped although ordered before the destruction", O_CYCLE },
	[T_RELEASE_HELD] = { "NODE_RELEASE while a handle is held", O_RELEASE },
	[T_PAIRWISE_ONLY] = { "pairwise-consistent order broken by program order", O_CYCLE },
};

static void t_build(struct shared *sh, int which)
{
	switch (which) {
	case T_CLEAN:
		/* 0/0 multicast to 1, 2; 1 replies to 0, 2; 0/1 carries node 0:0. */
		t_send(sh, 0, 0, MULTICAST, 1 << 1 | 1 << 2, 0, 0);
		t_log(sh, 1, E_RECV, 0, 0, 0);
		t_send(sh, 1, 0, REPLY, 1 << 0 | 1 << 2, 0, 0);
		t_log(sh, 2, E_RECV, 0, 0, 0);
		t_log(sh, 2, E_RECV, 0, 1, 0);
		t_log(sh, 0, E_RECV, 0, 1, 0);
		t_send(sh, 0, 1, CARRY, 1 << 1, 0, 0);
		t_log(sh, 1, E_RECV, F_VALID, 0, 1);
		/* 1/1 probes node 0:0, 1/2 follows it to 0: both before the destruction. */
		t_send(sh, 1, 1, PROBE, 1 << 0, 0, 0);
		t_send(sh, 1, 2, UNICAST, 1 << 0, 0, 0);
		t_log(sh, 0, E_RECV, 0, 1, 1);
		t_log(sh, 0, E_RECV, 0, 1, 2);
		t_log(sh, 0, E_NRELEASE, 0, 0, 7);
		t_log(sh, 0, E_DESTROY, 0, 0, 0);
		t_log(sh, 0, E_NDESTROY, 0, 0, 0);
		t_log(sh, 1, E_NDESTROY, 0, 0, 0);
		/* Peer 2 released its handle to 1:0 before its destruction. */
		t_send(sh, 1, 3, CARRY, 1 << 2, 1, 0);
		t_log(sh, 2, E_RECV, F_VALID, 1, 3);
		t_log(sh, 2, E_LEASE, 0, 1, 0);
		t_log(sh, 1, E_DESTROY, F_RELEASED, 1, 0);
		break;
	case T_CYCLE3:
		/* Each pair of receivers shares one message and agrees on it. */
		t_send(sh, 0, 0, MULTICAST, 1 << 0 | 1 << 2, 0, 0);	/* a */
		t_send(sh, 1, 0, MULTICAST, 1 << 0 | 1 << 1, 0, 0);	/* b */
		t_send(sh, 2, 0, MULTICAST, 1 << 1 | 1 << 2, 0, 0);	/* c */
		t_log(sh, 0, E_RECV, 0, 0, 0);
		t_log(sh, 0, E_RECV, 0, 1, 0);
		t_log(sh, 1, E_RECV, 0, 1, 0);
		t_log(sh, 1, E_RECV, 0, 2, 0);
		t_log(sh, 2, E_RECV, 0, 2, 0);
		t_log(sh, 2, E_RECV, 0, 0, 0);
		break;
	case T_CAUSAL:
		t_send(sh, 0, 0, MULTICAST, 1 << 1 | 1 << 2, 0, 0);
		t_log(sh, 1, E_RECV, 0, 0, 0);
		t_send(sh, 1, 0, REPLY, 1 << 2, 0, 0);
		t_log(sh, 2, E_RECV, 0, 1, 0);
		t_log(sh, 2, E_RECV, 0, 0, 0);
		break;
	case T_DUP_DESTROY:
	case T_NO_DESTROY:
		t_carry(sh);
		t_log(sh, 0, E_DESTROY, F_RELEASED, 0, 0);
		if (which == T_DUP_DESTROY) {
			t_log(sh, 1, E_NDESTROY, 0, 0, 0);
			t_log(sh, 1, E_NDESTROY, 0, 0, 0);
		}
		break;
	case T_DATA_AFTER_DESTROY:
		t_carry(sh);
		t_send(sh, 1, 0, PROBE, 1 << 0, 0, 0);
		t_log(sh, 0, E_DESTROY, 0, 0, 0);
		t_log(sh, 0, E_NDESTROY, 0, 0, 0);
		t_log(sh, 0, E_RECV, 0, 1, 0);
		t_log(sh, 1, E_NDESTROY, 0, 0, 0);
		break;
	case T_LOST_PROBE:
		/* 1/0 probes, 1/1 follows; 0 gets 1/1 before destroying: 1/0 is lost. */
		t_carry(sh);
		t_send(sh, 1, 0, PROBE, 1 << 0, 0, 0);
		t_send(sh, 1, 1, UNICAST, 1 << 0, 0, 0);
		t_log(sh, 0, E_RECV, 0, 1, 1);
		t_log(sh, 0, E_DESTROY, 0, 0, 0);
		t_log(sh, 0, E_NDESTROY, 0, 0, 0);
		t_log(sh, 1, E_NDESTROY, 0, 0, 0);
		break;
	case T_RELEASE_HELD:
		t_carry(sh);
		t_log(sh, 0, E_NRELEASE, 0, 0, 0);
		t_log(sh, 0, E_DESTROY, F_RELEASED, 0, 0);
		t_log(sh, 1, E_NDESTROY, 0, 0, 0);
		break;
	case T_PAIRWISE_ONLY:
		/*
		 * Peer 0 sends a to peer 1, then b to peer 2; peer 2 gets b
		 * and then sends c to peer 1, which gets c before a. No two
		 * receivers share a message, yet a < b < c < a.
		 */
		t_send(sh, 0, 0, UNICAST, 1 << 1, 0, 0);	/* a */
		t_send(sh, 0, 1, UNICAST, 1 << 2, 0, 0);	/* b */
		t_log(sh, 2, E_RECV, 0, 0, 1);
		t_send(sh, 2, 0, UNICAST, 1 << 1, 0, 0);	/* c */
		t_log(sh, 1, E_RECV, 0, 2, 0);
		t_log(sh, 1, E_RECV, 0, 0, 0);
		break;
	}
}

/*
 * The oracle itself: crafted logs, each with one violation (and one without),
 * must get the expected verdict. No bus1 peer is involved.
 */
TEST(oracle_detects_violations)
{
	struct ostats st;
	char why[4096];
	int i, ret;

	for (i = 0; i < T_MAX; i++) {
		struct shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		ASSERT_NE(MAP_FAILED, sh);
		t_build(sh, i);
		memset(&st, 0, sizeof(st));
		ret = oracle(sh, 3, &st, why, sizeof(why));
		EXPECT_EQ(t_case[i].expect, ret) TH_LOG("%s: %s", t_case[i].name, why);
		if (ret != O_OK)
			TH_LOG("%s: found: %s", t_case[i].name, why);
		munmap(sh, sizeof(*sh));
	}
}

TEST_HARNESS_MAIN
