// SPDX-License-Identifier: GPL-2.0
/*
 * bus1 under systematic allocation failure (debug kernel: failslab and
 * fail_page_alloc).
 *
 * Both fault attributes are restricted to call chains through the bus1 module
 * (require-start/require-end = the module's address range, with the stack
 * trace filter), and injection is driven per task through
 * /proc/thread-self/fail-nth: writing n fails the n-th allocation made below
 * bus1 by this task from then on. For every operation, each test runs
 * n = 1, 2, ... until the operation completes without reaching the n-th
 * allocation, so every allocation site on its path fails once. Each run
 * starts from a fresh set of peers and checks:
 *
 *  - a failure is ENOMEM (the only errno an allocation failure may cause),
 *    and it was injected (the countdown reached zero);
 *  - a failed operation did nothing: no message or notification anywhere, no
 *    new fd, no new peer, every accounting counter as before (of each peer,
 *    of the user, and every sender's share in debugfs), and the same
 *    operation then succeeds without injection;
 *  - a successful operation (or the retry after a failure) did all of it:
 *    messages complete and intact, every notification delivered exactly once,
 *    and the peers' accounting equals that of a run without injection;
 *  - with every peer closed, debugfs lists no user.
 *
 * Operations that cannot fail (close, disconnect) retry their allocations;
 * for them every run must succeed and notify everyone. Each test also checks
 * that injection really hit bus1 where the operation allocates. The runner's
 * kmemleak scan at the end of the run checks that no failure path leaked.
 *
 * bus1_fault.c is the probabilistic counterpart (many rounds with random
 * failures). Needs CONFIG_FAILSLAB, CONFIG_FAIL_PAGE_ALLOC,
 * CONFIG_FAULT_INJECTION_DEBUG_FS and CONFIG_FAULT_INJECTION_STACKTRACE_FILTER
 * (the debug kernel); skipped elsewhere. BUS1_FAULT_VERBOSE=1 reruns a wrong
 * case with the failing allocation's stack trace on the console.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/bus1.h>

#include "kselftest_harness.h"
#include "bus1_util.h"

#define INV ((__u64)BUS1_HANDLE_INVALID)
#define PTR(p) ((__u64)(uintptr_t)(p))
#define POOL (1UL << 20)
#define NA 0x200ULL	/* A's node, held by B and C */
#define NB 0x100ULL	/* B's node, held by A (and, for the owner tests, C) */
#define NC 0x100ULL	/* C's node, held by A */
#define NEW 0x300ULL	/* an ID A has not used yet: a send or transfer creates it */
#define NC2 0x400ULL	/* C's node whose only holder is B (owner tests) */
#define MAX_NTH 500
#define USERS "/sys/kernel/debug/bus1/users"

static int nth_fd = -1;

/* Arms the countdown: the n-th allocation below bus1 from now on fails (0: off). */
static void set_nth(int n)
{
	char v[16];
	int len = snprintf(v, sizeof(v), "%d", n);

	if (pwrite(nth_fd, v, len, 0) != len)
		abort();
}

/* What is left of the countdown: 0 once the n-th allocation failed. */
static int get_nth(void)
{
	char v[16];
	ssize_t n = pread(nth_fd, v, sizeof(v) - 1, 0);

	if (n <= 0)
		return -1;
	v[n] = 0;
	return atoi(v);
}

static int n_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* --- accounting snapshots -------------------------------------------------- */

/* Removes the token "@key=..." (and the blank before it) from @s. */
static void drop_token(char *s, const char *key)
{
	char *p = strstr(s, key), *e;

	if (!p)
		return;
	e = p + strlen(key);
	while (*e && *e != ' ' && *e != '\t' && *e != '\n')
		e++;
	if (p > s && (p[-1] == ' ' || p[-1] == '\t'))
		p--;
	memmove(p, e, strlen(e) + 1);
}

/*
 * The accounting of the peer @fd: its "bus1-pool:" (without the resident
 * pages, which are not accounted) and "bus1-limits:" fdinfo lines and, with
 * @user, its "bus1-user:" line. "senders=" counts the share entries, which are
 * added before a charge and never removed (by design, see
 * Limits::charge_quota), so it is not compared; the shares themselves are.
 */
static void peer_acct(int fd, char *out, size_t len, int user)
{
	static const char *const lines[] = { "bus1-pool:", "bus1-limits:", "bus1-user:" };
	char path[64], buf[4096];
	size_t i, o = 0;

	out[0] = 0;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (fd < 0 || bus1_read_file(path, buf, sizeof(buf)) <= 0)
		return;
	for (i = 0; i < (user ? 3 : 2); i++) {
		char l[512], *p = strstr(buf, lines[i]), *e;

		if (!p)
			continue;
		e = strchr(p, '\n');
		snprintf(l, sizeof(l), "%.*s", e ? (int)(e - p) : (int)strlen(p), p);
		drop_token(l, "pages=");
		drop_token(l, "senders=");
		o += snprintf(out + o, len - o, "%s\n", l);
		if (o >= len)
			return;
	}
}

/*
 * debugfs' users file without "senders=" counts and without share entries
 * that are all zero (empty entries are kept for reuse; see peer_acct()).
 */
static void users(char *out, size_t len)
{
	char buf[16384], *line, *save = NULL;
	size_t o = 0;

	out[0] = 0;
	if (bus1_read_file(USERS, buf, sizeof(buf)) < 0)
		return;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strstr(line, "sender=") && strstr(line, "slices=0 handles=0 bytes=0 fds=0"))
			continue;
		drop_token(line, "senders=");
		o += snprintf(out + o, len - o, "%s\n", line);
		if (o >= len)
			return;
	}
}

/* Number of peers debugfs counts for uid 0. */
static int root_peers(void)
{
	char buf[16384], *p;

	if (bus1_read_file(USERS, buf, sizeof(buf)) < 0)
		return -1;
	p = strstr(buf, "uid=0 peers=");
	return p ? atoi(p + strlen("uid=0 peers=")) : 0;
}

/* --- the world every run starts from -------------------------------------- */

struct world {
	int fd[4];		/* A, B, C, D (D holds nothing) */
	const uint8_t *pool[4];	/* A's, B's and C's pools */
	__u64 hb, hc;		/* A's handles to B's and C's nodes */
	__u64 hab, hac;		/* B's and C's handles to A's node */
	__u64 hcb, hbc2;	/* owner tests: C's handle to NB, B's handle to NC2 */
	int p[2];		/* a pipe whose ends travel in messages */
	int spare;		/* open: D, kept open so that the peer count stays put */
	char acct[4][1024];	/* per peer, with the user line */
	char users[16384];
	int fds, peers;
	char payload[300];
};

#define A fd[0]
#define B fd[1]
#define C fd[2]
#define D fd[3]

static int world_open(struct world *w)
{
	int i;

	memset(w, 0, sizeof(*w));
	w->p[0] = w->p[1] = -1;
	w->spare = -1;
	for (i = 0; i < 4; i++) {
		w->fd[i] = bus1_peer_new();
		if (w->fd[i] < 0)
			return -1;
	}
	for (i = 0; i < 3; i++) {
		w->pool[i] = bus1_pool_map(w->fd[i], POOL);
		if (!w->pool[i])
			return -2;
	}
	if (pipe2(w->p, O_CLOEXEC))
		return -3;
	if (bus1_xfer(w->B, NB, w->A, &w->hb) || bus1_xfer(w->C, NC, w->A, &w->hc) ||
	    bus1_xfer(w->A, NA, w->B, &w->hab) || bus1_xfer(w->A, NA, w->C, &w->hac))
		return -4;
	for (i = 0; i < (int)sizeof(w->payload); i++)
		w->payload[i] = (char)(i * 7 + 1);
	return 0;
}

static void world_snap(struct world *w)
{
	int i;

	for (i = 0; i < 4; i++)
		peer_acct(w->fd[i], w->acct[i], sizeof(w->acct[i]), 1);
	users(w->users, sizeof(w->users));
	w->fds = n_open_fds();
	w->peers = root_peers();
}

/*
 * Nothing changed since world_snap(): no charge, no share, no fd, no peer, no
 * message or notification (@queued: the peers that have a data message
 * queued, as a bit mask; it must still be there).
 */
static int world_unchanged(struct world *w, int queued, char *why, size_t len)
{
	static char now[16384];
	int i;

	for (i = 0; i < 4; i++) {
		if (w->fd[i] < 0)
			continue;
		peer_acct(w->fd[i], now, sizeof(now), 1);
		if (strcmp(now, w->acct[i])) {
			snprintf(why, len, "peer %c: accounting changed:\n%.900s->\n%.900s", 'A' + i,
				 w->acct[i], now);
			return 0;
		}
	}
	users(now, sizeof(now));
	if (strcmp(now, w->users)) {
		snprintf(why, len, "user accounting changed:\n%.400s->\n%.400s", w->users, now);
		return 0;
	}
	if (n_open_fds() != w->fds) {
		snprintf(why, len, "fd count %d -> %d", w->fds, n_open_fds());
		return 0;
	}
	if (root_peers() != w->peers) {
		snprintf(why, len, "peers %d -> %d", w->peers, root_peers());
		return 0;
	}
	for (i = 0; i < 4; i++) {
		struct bus1_cmd_recv_2017 r = { .max_offset = 0 };
		int want = queued & (1 << i) ? ERANGE : EAGAIN;

		if (w->fd[i] < 0)
			continue;
		/* max_offset 0: a data message stays queued (ERANGE), others are dequeued. */
		if (ioctl(w->fd[i], BUS1_CMD_RECV_2017, &r) == 0) {
			snprintf(why, len, "peer %c got a message of type %llu", 'A' + i,
				 (unsigned long long)r.msg.type);
			return 0;
		}
		if (errno != want) {
			snprintf(why, len, "peer %c: RECV says %s, expected %s", 'A' + i,
				 strerror(errno), strerror(want));
			return 0;
		}
	}
	return 1;
}

/*
 * Closing a peer takes a while (waiting for RCU), but closes from several
 * threads overlap: the peers of each run are closed later, many at once.
 */
static int pending[64], n_pending;

static void *close_some(void *arg)
{
	long k = (long)arg, i;

	for (i = k; i < n_pending; i += 16)
		close(pending[i]);
	return NULL;
}

static void flush_pending(void)
{
	pthread_attr_t at;
	pthread_t t[16];
	long k;

	pthread_attr_init(&at);
	pthread_attr_setstacksize(&at, 1 << 16);
	for (k = 0; k < 16; k++)
		if (pthread_create(&t[k], &at, close_some, (void *)k)) {
			close_some((void *)k);
			t[k] = 0;
		}
	for (k = 0; k < 16; k++)
		if (t[k])
			pthread_join(t[k], NULL);
	pthread_attr_destroy(&at);
	n_pending = 0;
}

/*
 * Closes the deferred peers and waits until bus1 freed them: the next run
 * compares its user's accounting, which must not change meanwhile.
 */
static int settle(void)
{
	static char buf[16384];

	flush_pending();
	return bus1_users_clean(buf, sizeof(buf));
}

static void defer_close(int fd)
{
	if (fd < 0)
		return;
	pending[n_pending++] = fd;
}

static void world_close(struct world *w)
{
	int i;

	for (i = 0; i < 3; i++)
		if (w->pool[i])
			munmap((void *)w->pool[i], POOL);
	for (i = 0; i < 4; i++)
		defer_close(w->fd[i]);
	defer_close(w->spare);
	if (w->p[0] >= 0)
		close(w->p[0]);
	if (w->p[1] >= 0)
		close(w->p[1]);
}

/* The standard message from A: payload, A's node and a new node, both pipe ends. */
static int send_std(struct world *w, const __u64 *dst, int n_dst, __u64 flags)
{
	__u64 h[2] = { NA, NEW };

	return bus1_send(w->A, flags, dst, n_dst, NULL, w->payload, sizeof(w->payload), h, 2, w->p, 2);
}

static int recv_err;
static __u64 recv_handles[2];	/* the handle IDs of the last message recv_std() got */

/* Receives the standard message on peer @i and checks it is complete. */
static int recv_std(struct world *w, int i, __u64 flags, char *why, size_t len)
{
	const uint8_t *pool = w->pool[i];
	struct bus1_cmd_recv r;
	const __u64 *h;
	const int *f;
	int ret = bus1_recv(w->fd[i], flags | BUS1_RECV_FLAG_INSTALL_FDS, POOL, &r), k;
	size_t at;

	recv_err = ret;
	if (ret) {
		snprintf(why, len, "peer %c: receive failed: %s", 'A' + i, strerror(-ret));
		return 0;
	}
	if (r.msg.type != BUS1_MSG_DATA || r.msg.n_bytes != sizeof(w->payload) ||
	    r.msg.n_handles != 2 || r.msg.n_fds != 2 || r.msg.offset + 512 > POOL) {
		snprintf(why, len, "peer %c: incomplete message: type %llu bytes %llu handles %llu fds %llu",
			 'A' + i, (unsigned long long)r.msg.type, (unsigned long long)r.msg.n_bytes,
			 (unsigned long long)r.msg.n_handles, (unsigned long long)r.msg.n_fds);
		return 0;
	}
	if (memcmp(pool + r.msg.offset, w->payload, sizeof(w->payload))) {
		snprintf(why, len, "peer %c: payload corrupt", 'A' + i);
		return 0;
	}
	at = r.msg.offset + ((sizeof(w->payload) + 7) & ~7UL);
	h = (const __u64 *)(pool + at);
	f = (const int *)(h + 2);
	for (k = 0; k < 2; k++) {
		if (h[k] == INV || fcntl(f[k], F_GETFD) < 0) {
			snprintf(why, len, "peer %c: handle or fd %d not installed", 'A' + i, k);
			return 0;
		}
		recv_handles[k] = h[k];
		close(f[k]);
	}
	if (ioctl(w->fd[i], BUS1_CMD_SLICE_RELEASE, &r.msg.offset)) {
		snprintf(why, len, "peer %c: SLICE_RELEASE failed: %s", 'A' + i, strerror(errno));
		return 0;
	}
	return 1;
}

/*
 * Exactly the notifications @types[k] for @ids[k] (k < @n) are queued on peer
 * @i, each once, and nothing else.
 */
static int got_notes(struct world *w, int i, int n, const __u64 *types, const __u64 *ids,
		     char *why, size_t len)
{
	static const char *const tn[] = { "NONE", "DATA", "NODE_DESTROY", "NODE_RELEASE" };
	int seen[8] = { 0 }, other = 0, k;
	struct bus1_cmd_recv r;
	__u64 ot = 0, oid = 0;

	while (bus1_recv(w->fd[i], 0, POOL, &r) == 0) {
		for (k = 0; k < n; k++)
			if (r.msg.type == types[k] && r.msg.destination == ids[k])
				break;
		if (k < n) {
			seen[k]++;
		} else {
			other++;
			ot = r.msg.type;
			oid = r.msg.destination;
		}
	}
	for (k = 0; k < n; k++)
		if (seen[k] != 1) {
			snprintf(why, len, "peer %c got %d %s for %#llx", 'A' + i, seen[k],
				 tn[types[k] & 3], (unsigned long long)ids[k]);
			return 0;
		}
	if (other) {
		snprintf(why, len, "peer %c got %d unexpected messages (last: type %llu for %#llx)",
			 'A' + i, other, (unsigned long long)ot, (unsigned long long)oid);
		return 0;
	}
	return 1;
}

#define NOTES(w, i, why, len, ...) ({						\
	const __u64 __x[] = { __VA_ARGS__ };					\
	const int __n = (int)(sizeof(__x) / sizeof(__x[0]) / 2);		\
	__u64 __t[8], __d[8];							\
	int __k;								\
	for (__k = 0; __k < __n; __k++) {					\
		__t[__k] = __x[2 * __k];					\
		__d[__k] = __x[2 * __k + 1];					\
	}									\
	got_notes(w, i, __n, __t, __d, why, len);				\
})
#define NOTHING(w, i, why, len) got_notes(w, i, 0, NULL, NULL, why, len)

/* --- the driver ------------------------------------------------------------ */

/*
 * An operation under test. @op runs with injection armed and returns 0 or
 * -errno; after a failure it must have changed nothing and is run again
 * without injection. Either way the accounting must then equal that of a
 * reference run without injection, and @check (optional) verifies the
 * outcome: messages complete, notifications delivered. @prep adds to the
 * world first; @queued: the peers (bit mask) with a queued data message in the
 * world; @allocates: expect at least one injected failure; @nofail: the
 * operation cannot fail, so every run must succeed; @alloc_free: the
 * operation allocates nothing at all (teardown, releases: their memory was
 * reserved when the relationship was created), so fail-nth never reaches an
 * allocation.
 */
struct fault_op {
	const char *name;
	int (*prep)(struct world *w);
	int (*op)(struct world *w);
	int (*check)(struct world *w, char *why, size_t len);
	int queued;
	int allocates;
	int nofail;
	int alloc_free;
};

FIXTURE(fault) {
	int dummy;
};

FIXTURE_SETUP(fault)
{
	if (!bus1_fi_available("/proc/thread-self/fail-nth"))
		SKIP(return, "no failslab/fail_page_alloc with a stack trace filter and fail-nth");
	/* fail-nth only, and only for allocations below bus1. */
	ASSERT_EQ(0, bus1_fi_setup(0));
	/* The countdown is per thread: the harness runs each test in a forked child. */
	nth_fd = open("/proc/thread-self/fail-nth", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, nth_fd);
	ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &(struct rlimit){ 4096, 4096 }));
	/* No page faults on this task's memory (stack, data) while armed. */
	ASSERT_EQ(0, mlockall(MCL_CURRENT));
}

FIXTURE_TEARDOWN(fault)
{
	if (nth_fd >= 0)
		set_nth(0);
	bus1_fi_reset();
}

/* The peers' own accounting (no user line) equals the reference run's. */
static int acct_as(struct world *w, char ref[4][1024], char *why, size_t len)
{
	char now[1024];
	int i;

	for (i = 0; i < 4; i++) {
		peer_acct(w->fd[i], now, sizeof(now), 0);
		if (strcmp(now, ref[i])) {
			snprintf(why, len, "peer %c: accounting differs from a run without injection:\n%.900s vs\n%.900s",
				 'A' + i, now, ref[i]);
			return 0;
		}
	}
	return 1;
}

/* One run with the n-th allocation failing (n = 0: none). 1 if all is right. */
static int run_once(const struct fault_op *o, int n, char ref[4][1024], int *ret, int *left,
		    char *why, size_t len)
{
	static struct world w;
	int ok = 1, i;

	*ret = 0;
	*left = 1;
	why[0] = 0;
	if (world_open(&w) || (o->prep && o->prep(&w))) {
		snprintf(why, len, "setting up the peers failed: %s", strerror(errno));
		world_close(&w);
		return 0;
	}
	world_snap(&w);
	if (n) {
		set_nth(n);
		*ret = o->op(&w);
		*left = get_nth();
		set_nth(0);
	} else {
		*ret = o->op(&w);
	}
	if (*ret) {
		if (*ret != -ENOMEM) {
			snprintf(why, len, "failed with %s, not ENOMEM", strerror(-*ret));
			ok = 0;
		} else if (*left != 0) {
			snprintf(why, len, "failed without an injected failure");
			ok = 0;
		} else if (o->nofail) {
			snprintf(why, len, "an operation that cannot fail failed");
			ok = 0;
		} else if (!world_unchanged(&w, o->queued, why, len)) {
			ok = 0;
		} else if (o->op(&w)) {
			snprintf(why, len, "retry without injection failed");
			ok = 0;
		}
	}
	if (ok && !n) {
		for (i = 0; i < 4; i++)
			peer_acct(w.fd[i], ref[i], sizeof(ref[i]), 0);
	} else if (ok) {
		ok = acct_as(&w, ref, why, len);
	}
	if (ok && o->check)
		ok = o->check(&w, why, len);
	world_close(&w);
	if (n_pending > (int)(sizeof(pending) / sizeof(pending[0])) - 8 && settle() != 1 && ok) {
		snprintf(why, len, "closed peers still accounted");
		ok = 0;
	}
	return ok;
}

static void run_op(struct __test_metadata *_metadata, const struct fault_op *o)
{
	int n, ret, left, bad = 0, failed = 0, silent = 0, complete = 0;
	static char ref[4][1024], why[2048], buf[16384];

	memset(ref, 0, sizeof(ref));
	ASSERT_TRUE(run_once(o, 0, ref, &ret, &left, why, sizeof(why)))
		TH_LOG("%s without injection: %s", o->name, why);
	ASSERT_EQ(0, ret);
	for (n = 1; n <= MAX_NTH && !complete; n++) {
		int ok = run_once(o, n, ref, &ret, &left, why, sizeof(why));

		/* The n-th allocation was not reached: every site has failed once. */
		if (left > 0)
			complete = 1;
		if (ret)
			failed++;
		else if (!left)
			silent++;
		if (ok)
			continue;
		if (bad++ < 3)
			TH_LOG("%s with allocation %d failing (%s): %s", o->name, n,
			       ret ? "op failed" : "op succeeded", why);
		if (getenv("BUS1_FAULT_VERBOSE")) {
			/* Rerun with a stack trace of the failing site on the console. */
			bus1_fi_set_all("verbose", "1");
			run_once(o, n, ref, &ret, &left, why, sizeof(why));
			bus1_fi_set_all("verbose", "0");
		}
	}
	settle();
	TH_LOG("%s: %d allocations, %d failed with ENOMEM, %d failed silently, %d wrong",
	       o->name, n - 1 - complete, failed, silent, bad);
	EXPECT_EQ(0, bad);
	EXPECT_TRUE(complete) TH_LOG("more than %d allocations", MAX_NTH);
	if (o->allocates)
		EXPECT_LT(0, failed + (o->nofail ? silent : 0)) TH_LOG("injection never hit %s", o->name);
	if (o->alloc_free)
		EXPECT_EQ(0, n - 1 - complete) TH_LOG("%s allocates", o->name);
	EXPECT_EQ(1, bus1_users_clean(buf, sizeof(buf))) TH_LOG("still charged:\n%s", buf);
}

/* open (D is closed first, so the new peer takes its place) */
static int prep_open(struct world *w)
{
	w->spare = w->D;
	w->D = -1;
	return 0;
}
static int op_open(struct world *w)
{
	w->D = bus1_peer_new();
	return w->D < 0 ? -errno : 0;
}
static int ck_open(struct world *w, char *why, size_t len)
{
	if (root_peers() != w->peers + 1 || bus1_xfer(w->D, 0x100, -1, NULL)) {
		snprintf(why, len, "new peer missing or unusable");
		return 0;
	}
	return 1;
}

/* mmap of D's pool */
static int op_mmap(struct world *w)
{
	void *p = mmap(NULL, POOL, PROT_READ, MAP_SHARED, w->D, 0);

	if (p == MAP_FAILED)
		return -errno;
	munmap(p, POOL);
	return 0;
}

/* PEER_QUERY */
static int op_query(struct world *w)
{
	struct bus1_cmd_peer_reset q = { 0 };

	return bus1_errno(ioctl(w->A, BUS1_CMD_PEER_QUERY, &q));
}

/* node creation: a transfer of a new ID to the caller itself */
static int op_node(struct world *w)
{
	return bus1_xfer(w->A, NEW, -1, NULL);
}

/* transfer of an existing node, and of a new one, to D */
static __u64 xfer_out;
static int op_xfer(struct world *w)
{
	return bus1_xfer(w->A, NA, w->D, &xfer_out);
}
static int op_xfer_new(struct world *w)
{
	return bus1_xfer(w->A, NEW, w->D, &xfer_out);
}
static int ck_xfer(struct world *w, char *why, size_t len)
{
	struct bus1_cmd_recv r;

	/* D can use what it got, and A gets the message. */
	if (xfer_out == INV || bus1_send(w->D, 0, &xfer_out, 1, NULL, "x", 1, NULL, 0, NULL, 0) ||
	    bus1_recv(w->A, 0, POOL, &r) || r.msg.type != BUS1_MSG_DATA) {
		snprintf(why, len, "D cannot send to the transferred handle %#llx",
			 (unsigned long long)xfer_out);
		return 0;
	}
	return NOTHING(w, 1, why, len) && NOTHING(w, 2, why, len);
}

/* unicast and multicast with payload, handles (one a new node) and files; the seed */
static int op_uni(struct world *w)
{
	return send_std(w, &w->hb, 1, 0);
}
static int op_multi(struct world *w)
{
	__u64 d[2] = { w->hb, w->hc };

	return send_std(w, d, 2, 0);
}
static int op_seed(struct world *w)
{
	return send_std(w, NULL, 0, BUS1_SEND_FLAG_SEED);
}
static int ck_uni(struct world *w, char *why, size_t len)
{
	return recv_std(w, 1, 0, why, len) && NOTHING(w, 0, why, len) &&
	       NOTHING(w, 1, why, len) && NOTHING(w, 2, why, len);
}
static int ck_multi(struct world *w, char *why, size_t len)
{
	return recv_std(w, 1, 0, why, len) && recv_std(w, 2, 0, why, len) &&
	       NOTHING(w, 0, why, len) && NOTHING(w, 1, why, len) && NOTHING(w, 2, why, len);
}
static int ck_seed(struct world *w, char *why, size_t len)
{
	return recv_std(w, 0, BUS1_RECV_FLAG_SEED, why, len);
}

/* RECV (the standard message is queued on B): a failure leaves it queued */
static int prep_recv(struct world *w)
{
	return op_uni(w);
}
static char recv_why[256];
static int op_recv(struct world *w)
{
	recv_why[0] = 0;
	if (recv_std(w, 1, 0, recv_why, sizeof(recv_why)))
		return 0;
	return recv_err ? recv_err : -EBADMSG;
}
static int ck_recv(struct world *w, char *why, size_t len)
{
	if (recv_why[0]) {
		snprintf(why, len, "%s", recv_why);
		return 0;
	}
	return NOTHING(w, 0, why, len) && NOTHING(w, 1, why, len);
}

/*
 * RECV of a message that carries a node destroyed after the message was sent:
 * the message is ordered before the destruction, so B gets the handle and
 * then NODE_DESTROY for it, exactly once.
 */
static int prep_recv_destroyed(struct world *w)
{
	__u64 id = NEW;
	struct bus1_cmd_nodes_destroy d = { .ptr_nodes = PTR(&id), .n_nodes = 1 };
	struct bus1_cmd_recv r;

	if (op_uni(w) || ioctl(w->A, BUS1_CMD_NODES_DESTROY, &d))
		return -1;
	/* A's own NODE_DESTROY. */
	if (bus1_recv(w->A, 0, POOL, &r) || r.msg.type != BUS1_MSG_NODE_DESTROY)
		return -1;
	return 0;
}
static int ck_recv_destroyed(struct world *w, char *why, size_t len)
{
	if (recv_why[0]) {
		snprintf(why, len, "%s", recv_why);
		return 0;
	}
	return NOTES(w, 1, why, len, BUS1_MSG_NODE_DESTROY, recv_handles[1]) &&
	       NOTHING(w, 0, why, len);
}

/* SLICE_RELEASE of the received standard message */
static __u64 slice_off;
static int prep_slice(struct world *w)
{
	struct bus1_cmd_recv r;

	if (op_uni(w) || bus1_recv(w->B, 0, POOL, &r))
		return -1;
	slice_off = r.msg.offset;
	return 0;
}
static int op_slice(struct world *w)
{
	return bus1_errno(ioctl(w->B, BUS1_CMD_SLICE_RELEASE, &slice_off));
}

/* HANDLE_RELEASE of a remote handle (A's node stays held by C) */
static int op_release(struct world *w)
{
	return bus1_errno(ioctl(w->B, BUS1_CMD_HANDLE_RELEASE, &w->hab));
}
/* ... and of the last one: A is told */
static int prep_release_last(struct world *w)
{
	return bus1_errno(ioctl(w->C, BUS1_CMD_HANDLE_RELEASE, &w->hac));
}
static int ck_release_last(struct world *w, char *why, size_t len)
{
	return NOTES(w, 0, why, len, BUS1_MSG_NODE_RELEASE, NA) && NOTHING(w, 1, why, len);
}
/* HANDLE_RELEASE_N of B's last two references, after C's: A is told */
static int prep_release_n(struct world *w)
{
	__u64 h;

	if (prep_release_last(w) || bus1_xfer(w->A, NA, w->B, &h) || h != w->hab)
		return -1;
	return 0;
}
static int op_release_n(struct world *w)
{
	return bus1_release_n(w->B, 0, w->hab, 2);
}

/* NODES_DESTROY of A's node, which B and C hold; with and without RELEASE_HANDLES */
static int destroy_na(struct world *w, __u64 flags)
{
	__u64 id = NA;
	struct bus1_cmd_nodes_destroy d = {
		.flags = flags, .ptr_nodes = PTR(&id), .n_nodes = 1,
	};

	return bus1_errno(ioctl(w->A, BUS1_CMD_NODES_DESTROY, &d));
}
static int op_destroy(struct world *w)
{
	return destroy_na(w, 0);
}
static int op_destroy_release(struct world *w)
{
	return destroy_na(w, BUS1_NODES_DESTROY_FLAG_RELEASE_HANDLES);
}
static int ck_destroy(struct world *w, char *why, size_t len)
{
	return NOTES(w, 0, why, len, BUS1_MSG_NODE_DESTROY, NA) &&
	       NOTES(w, 1, why, len, BUS1_MSG_NODE_DESTROY, w->hab) &&
	       NOTES(w, 2, why, len, BUS1_MSG_NODE_DESTROY, w->hac) && NOTHING(w, 3, why, len);
}
/* A released its handle before receiving its own NODE_DESTROY, so it never sees it. */
static int ck_destroy_release(struct world *w, char *why, size_t len)
{
	return NOTHING(w, 0, why, len) &&
	       NOTES(w, 1, why, len, BUS1_MSG_NODE_DESTROY, w->hab) &&
	       NOTES(w, 2, why, len, BUS1_MSG_NODE_DESTROY, w->hac) && NOTHING(w, 3, why, len);
}

/*
 * The owner tests: B has the standard message queued (A's node NA, which C
 * also holds, and a new node of A's that only the message references), owns
 * NB held by A and C, and holds the only handle to C's node NC2.
 */
static int prep_owner(struct world *w)
{
	if (op_uni(w) || bus1_xfer(w->B, NB, w->C, &w->hcb) || bus1_xfer(w->C, NC2, w->B, &w->hbc2))
		return -1;
	return 0;
}

/*
 * B's nodes and handles are gone: A and C, the holders of NB, are told once;
 * A, whose new node only B's queued message referenced, and C, whose NC2 only
 * B held, get NODE_RELEASE once; B's queue and pool are empty.
 */
static int ck_b_flushed(struct world *w, char *why, size_t len)
{
	if (!NOTES(w, 0, why, len, BUS1_MSG_NODE_DESTROY, w->hb, BUS1_MSG_NODE_RELEASE, NEW) ||
	    !NOTES(w, 2, why, len, BUS1_MSG_NODE_DESTROY, w->hcb, BUS1_MSG_NODE_RELEASE, NC2) ||
	    !NOTHING(w, 3, why, len))
		return 0;
	if (bus1_send(w->A, 0, &w->hb, 1, NULL, "x", 1, NULL, 0, NULL, 0) == 0) {
		snprintf(why, len, "A can still send to B's destroyed node");
		return 0;
	}
	return 1;
}
static int ck_reset(struct world *w, char *why, size_t len)
{
	struct bus1_cmd_recv r;

	if (!ck_b_flushed(w, why, len))
		return 0;
	if (bus1_recv(w->B, 0, POOL, &r) != -EAGAIN) {
		snprintf(why, len, "B's queue not flushed");
		return 0;
	}
	/* B still works: a node of its own, and A can be given a handle to it. */
	if (bus1_xfer(w->B, 0x500, w->A, NULL)) {
		snprintf(why, len, "B unusable after the reset");
		return 0;
	}
	return 1;
}

/* PEER_RESET with FLUSH: all or nothing */
static int op_reset(struct world *w)
{
	struct bus1_cmd_peer_reset r = {
		.flags = BUS1_PEER_RESET_FLAG_FLUSH | BUS1_PEER_RESET_FLAG_FLUSH_SEED,
		.peer_flags = (__u64)-1,
		.max_slices = 0xffffffff, .max_handles = 0xffffffff,
		.max_inflight_bytes = 0xffffffff, .max_inflight_fds = 0xffffffff,
	};

	return bus1_errno(ioctl(w->B, BUS1_CMD_PEER_RESET, &r));
}

/* close and PEER_DISCONNECT of B: cannot fail */
static int op_close(struct world *w)
{
	int r = close(w->B);

	w->B = -1;
	return r ? -errno : 0;
}
static int op_disconnect(struct world *w)
{
	return bus1_errno(ioctl(w->B, BUS1_CMD_PEER_DISCONNECT, 0));
}

static const struct fault_op ops[] = {
#define OP_OPEN 0
	[OP_OPEN] = { "open", prep_open, op_open, ck_open, 0, 1, 0 },
#define OP_MMAP 1
	[OP_MMAP] = { "mmap", NULL, op_mmap, NULL, 0, 0, 0 },
#define OP_QUERY 2
	[OP_QUERY] = { "peer-query", NULL, op_query, NULL, 0, 0, 0 },
#define OP_NODE 3
	[OP_NODE] = { "node-create", NULL, op_node, NULL, 0, 1, 0 },
#define OP_XFER 4
	[OP_XFER] = { "transfer", NULL, op_xfer, ck_xfer, 0, 1, 0 },
#define OP_XFER_NEW 5
	[OP_XFER_NEW] = { "transfer-new-node", NULL, op_xfer_new, ck_xfer, 0, 1, 0 },
#define OP_UNI 6
	[OP_UNI] = { "send-unicast", NULL, op_uni, ck_uni, 0, 1, 0 },
#define OP_MULTI 7
	[OP_MULTI] = { "send-multicast", NULL, op_multi, ck_multi, 0, 1, 0 },
#define OP_SEED 8
	[OP_SEED] = { "send-seed", NULL, op_seed, ck_seed, 0, 1, 0 },
#define OP_RECV 9
	[OP_RECV] = { "recv", prep_recv, op_recv, ck_recv, 1 << 1, 1, 0 },
#define OP_RECV_DESTROYED 18
	[OP_RECV_DESTROYED] = { "recv-destroyed-node", prep_recv_destroyed, op_recv, ck_recv_destroyed, 1 << 1, 1, 0 },
#define OP_SLICE 10
	[OP_SLICE] = { "slice-release", prep_slice, op_slice, NULL, 0, 0, 1, 1 },
#define OP_RELEASE 11
	[OP_RELEASE] = { "handle-release", NULL, op_release, NULL, 0, 0, 1, 1 },
#define OP_RELEASE_LAST 12
	[OP_RELEASE_LAST] = { "handle-release-last", prep_release_last, op_release, ck_release_last, 0, 0, 1, 1 },
#define OP_RELEASE_N 19
	[OP_RELEASE_N] = { "handle-release-n", prep_release_n, op_release_n, ck_release_last, 0, 0, 1, 1 },
#define OP_DESTROY 13
	[OP_DESTROY] = { "nodes-destroy", NULL, op_destroy, ck_destroy, 0, 1, 0 },
#define OP_DESTROY_RELEASE 14
	[OP_DESTROY_RELEASE] = { "nodes-destroy-release", NULL, op_destroy_release, ck_destroy_release, 0, 1, 0 },
#define OP_RESET 15
	[OP_RESET] = { "reset-flush", prep_owner, op_reset, ck_reset, 1 << 1, 0, 1, 1 },
#define OP_CLOSE 16
	[OP_CLOSE] = { "close", prep_owner, op_close, ck_b_flushed, 1 << 1, 0, 1, 1 },
#define OP_DISCONNECT 17
	[OP_DISCONNECT] = { "disconnect", prep_owner, op_disconnect, ck_b_flushed, 1 << 1, 0, 1, 1 },
};

/*
 * Each case's timeout is five times the longest it took on the debug kernel
 * under QEMU TCG on a loaded host, at least the harness default of 30 s (see
 * Documentation/bus1/testing.rst, "Timeouts").
 */
TEST_F_TIMEOUT(fault, open, 40) { run_op(_metadata, &ops[OP_OPEN]); }
TEST_F_TIMEOUT(fault, mmap, 30) { run_op(_metadata, &ops[OP_MMAP]); }
TEST_F_TIMEOUT(fault, peer_query, 30) { run_op(_metadata, &ops[OP_QUERY]); }
TEST_F_TIMEOUT(fault, node_create, 40) { run_op(_metadata, &ops[OP_NODE]); }
TEST_F_TIMEOUT(fault, transfer, 30) { run_op(_metadata, &ops[OP_XFER]); }
TEST_F_TIMEOUT(fault, transfer_new_node, 50) { run_op(_metadata, &ops[OP_XFER_NEW]); }
TEST_F_TIMEOUT(fault, send_unicast, 50) { run_op(_metadata, &ops[OP_UNI]); }
TEST_F_TIMEOUT(fault, send_multicast, 100) { run_op(_metadata, &ops[OP_MULTI]); }
TEST_F_TIMEOUT(fault, send_seed, 60) { run_op(_metadata, &ops[OP_SEED]); }
TEST_F_TIMEOUT(fault, recv, 60) { run_op(_metadata, &ops[OP_RECV]); }
TEST_F_TIMEOUT(fault, recv_destroyed_node, 100) { run_op(_metadata, &ops[OP_RECV_DESTROYED]); }
TEST_F_TIMEOUT(fault, slice_release, 30) { run_op(_metadata, &ops[OP_SLICE]); }
TEST_F_TIMEOUT(fault, handle_release, 30) { run_op(_metadata, &ops[OP_RELEASE]); }
TEST_F_TIMEOUT(fault, handle_release_last, 30) { run_op(_metadata, &ops[OP_RELEASE_LAST]); }
TEST_F_TIMEOUT(fault, handle_release_n, 30) { run_op(_metadata, &ops[OP_RELEASE_N]); }
TEST_F_TIMEOUT(fault, nodes_destroy, 40) { run_op(_metadata, &ops[OP_DESTROY]); }
TEST_F_TIMEOUT(fault, nodes_destroy_release, 40) { run_op(_metadata, &ops[OP_DESTROY_RELEASE]); }
TEST_F_TIMEOUT(fault, reset_flush, 30) { run_op(_metadata, &ops[OP_RESET]); }
TEST_F_TIMEOUT(fault, close, 30) { run_op(_metadata, &ops[OP_CLOSE]); }
TEST_F_TIMEOUT(fault, disconnect, 30) { run_op(_metadata, &ops[OP_DISCONNECT]); }

TEST_HARNESS_MAIN
