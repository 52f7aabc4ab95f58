// SPDX-License-Identifier: GPL-2.0
/*
 * bus1 accounting and uid-to-uid quota tests, with real UIDs.
 *
 * The runner is root. A peer is charged to the real UID that opened it, so
 * open_as() switches the real and effective UID (keeping 0 as the saved UID
 * to switch back), opens a peer and returns to root. All peers are opened
 * O_NONBLOCK.
 *
 * The expected counts are computed from the quota rule the module runs with
 * (module parameter quota_policy): a sender holding s of a resource of which R
 * are unused may take c more if (s + c) * A(n) <= R + s, n being the number
 * of sending users holding a share there, counting itself.
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
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sched.h>
#include <dirent.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <linux/bus1.h>
#include <linux/io_uring.h>

#include "kselftest_harness.h"
#include "bus1_util.h"

#define N1 ((__u64)0x100)
#define N2 ((__u64)0x200)
#define INV ((__u64)BUS1_HANDLE_INVALID)
#define ANY_OFFSET ((__u64)-1)	/* RECV max_offset: no limit */
#define KEEP ((__u32)0xffffffff)
#define PTR(p) ((__u64)(uintptr_t)(p))

#define AGENT 100	/* the system agent's UID */
#define HOSTILE 200	/* first of the hostile UIDs */
#define GOOD 300	/* an ordinary user arriving after the flood */
#define CLIENT 400	/* first client UID */
#define OTHER 500	/* UIDs for single-user tests */

enum { SLICES, HANDLES, BYTES, FDS, N_RES };
static const char *const res_names[N_RES] = { "slices", "handles", "bytes", "fds" };

/* --- helpers ------------------------------------------------------------ */

/* A peer opened with real and effective UID @uid; -errno on failure. */
static int open_as(uid_t uid)
{
	int fd, err;

	if (setresuid(uid, uid, 0))
		return -errno;
	fd = bus1_peer_new();
	err = errno;
	if (setresuid(0, 0, 0))
		abort();
	return fd < 0 ? -err : fd;
}

/* An 8-byte message (one slice of 8 bytes). */
static int send8(int fd, __u64 dst)
{
	static const char msg[8] = "quota!!";

	return bus1_send(fd, 0, &dst, 1, NULL, msg, sizeof(msg), NULL, 0, NULL, 0);
}

/* Send 8-byte messages until one fails; the count, and the error in @err. */
static long flood(int fd, __u64 dst, int *err)
{
	long n = 0;
	int r;

	while ((r = send8(fd, dst)) == 0)
		n++;
	*err = r;
	return n;
}

/* Receive one message and release its slice. */
static int recv_release(int fd)
{
	struct bus1_cmd_recv r;
	int ret = bus1_recv(fd, 0, ANY_OFFSET, &r);

	if (ret)
		return ret;
	if (r.msg.offset != (__u64)BUS1_OFFSET_INVALID)
		return bus1_slice_release(fd, r.msg.offset);
	return 0;
}

/* The quota rule, as documented in Documentation/bus1/quota.rst. */
static __u64 clog2(__u64 x)
{
	return x <= 1 ? 0 : 64 - __builtin_clzll(x - 1);
}

static __u64 divisor(__u64 n)
{
	static int policy = -1;
	__u64 n1 = (n ? n : 1) + 1;

	/* Read once: models of byte budgets call this a million times. */
	if (policy < 0)
		policy = bus1_module_param("quota_policy");
	switch (policy) {
	case 0:
		return 2;
	case 1:
		return n1;
	default:
		return n1 * clog2(n1) + n1;
	}
}

static __u64 max_take(__u64 rem, __u64 share, __u64 n)
{
	__u64 t = (rem + share) / divisor(n);

	t = t > share ? t - share : 0;
	return t < rem ? t : rem;
}

/*
 * A model of one resource of a receiver's ledgers, as Documentation/bus1/
 * quota.rst describes them, to compute how many one-unit charges a flood
 * gets: per ledger the unused amount R, the reserved lane (size L, at most g
 * per principal, lane = what principals hold in it) and the shares.
 */
#define MODEL_SENDERS 1100

struct model {
	long long R, L, g, lane, senders;
	long long share[MODEL_SENDERS];
};

static void model_init(struct model *m, long long max)
{
	memset(m, 0, sizeof(*m));
	m->R = max;
	m->g = max / 4096 > 1 ? max / 4096 : 1;
	m->L = m->g * 1024 < max / 4 ? m->g * 1024 : max / 4;
}

static long long model_n(const struct model *m, int who)
{
	return m->share[who] ? m->senders : m->senders + 1;
}

/* What remains for the rule: R minus the part of the lane not held yet. */
static long long model_elastic(const struct model *m)
{
	return m->R - (m->L - m->lane);
}

static int model_lane(const struct model *m, int who)
{
	long long s = m->share[who];

	return s + 1 <= m->g && m->R >= 1 && m->lane + 1 <= m->L;
}

static int model_rule(const struct model *m, int who)
{
	long long r = model_elastic(m), s = m->share[who];

	return r >= 1 && (s + 1) * (long long)divisor(model_n(m, who)) <= r + s;
}

static void model_take(struct model *m, int who)
{
	if (!m->share[who])
		m->senders++;
	if (m->share[who] < m->g)
		m->lane++;
	m->share[who]++;
	m->R--;
}

/*
 * One-unit charges from sender @who to a peer with ledger @p of a principal
 * with ledger @u, until refused: the rule or the lane at both levels, and
 * the peer's share within half of what the sender may hold at the principal
 * (fairness among the principal's peers) unless the principal's lane admits.
 */
static long model_flood(struct model *u, struct model *p, int who)
{
	long n = 0;

	for (;;) {
		long long r = model_elastic(u);
		int ul = model_lane(u, who);
		int sib = ul || (r >= 0 && (p->share[who] + 1) * 2 *
				 (long long)divisor(model_n(u, who)) <= r + u->share[who]);

		if (!(ul || model_rule(u, who)) || !(model_lane(p, who) || model_rule(p, who)) ||
		    !sib)
			return n;
		model_take(u, who);
		model_take(p, who);
		n++;
	}
}

/*
 * One "used/max" pair of a resource from a line of a peer's fdinfo
 * ("bus1-limits" for the peer, "bus1-user" for its user); -1 if missing.
 */
static long long fdinfo_used(int fd, const char *line, int res, long long *max)
{
	return bus1_fdinfo_value(fd, line, res_names[res], max);
}

/* The debugfs line of user @uid ("" if none) in @out. */
static int debugfs_user(uid_t uid, char *out, size_t len)
{
	char buf[65536], key[32];
	const char *p;
	ssize_t n, got = 0;
	int f = open("/sys/kernel/debug/bus1/users", O_RDONLY | O_CLOEXEC);

	if (f < 0)
		return -errno;
	while ((n = read(f, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += n;
	close(f);
	buf[got] = 0;
	out[0] = 0;
	snprintf(key, sizeof(key), "uid=%u ", uid);
	for (p = buf; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (!strncmp(p, key, strlen(key))) {
			size_t l = strcspn(p, "\n");

			if (l >= len)
				l = len - 1;
			memcpy(out, p, l);
			out[l] = 0;
			break;
		}
	}
	return 0;
}

/* Whether debugfs lists user @uid at all. */
static int user_listed(uid_t uid)
{
	char line[512];

	if (debugfs_user(uid, line, sizeof(line)))
		return -1;
	return line[0] != 0;
}

/*
 * Tests that take longer than the harness default allows for on the debug
 * kernel (KASAN, lockdep) under TCG on a loaded host; each timeout is five
 * times the longest duration measured there (Documentation/bus1/testing.rst,
 * "Timeouts"), noted with each.
 */
FIXTURE(slow) {};
FIXTURE_SETUP(slow) {}
FIXTURE_TEARDOWN(slow) {}

/* --- (a) ten hostile users flood an agent that never reads ----------------- */

/* Up to 74 s. */
TEST_F_TIMEOUT(slow, hostile_flood_leaves_room, 380)
{
	int agent, agent2, agent3, hostile[10], good, i, err;
	__u64 h, hh[10];
	long sent, total = 0;
	struct model mu, mp;

	/* The agent's principal and its one peer, which mirror each other here. */
	model_init(&mu, bus1_module_param("user_slices_max"));
	model_init(&mp, bus1_module_param("user_slices_max"));

	agent = open_as(AGENT);
	ASSERT_LE(0, agent);
	for (i = 0; i < 10; i++) {
		hostile[i] = open_as(HOSTILE + i);
		ASSERT_LE(0, hostile[i]);
		ASSERT_EQ(0, bus1_xfer(agent, N1, hostile[i], &hh[i]));
	}
	for (i = 0; i < 10; i++) {
		long want = model_flood(&mu, &mp, i);

		sent = flood(hostile[i], hh[i], &err);
		ASSERT_EQ(-EDQUOT, err);
		/* Each takes exactly what the rule lets the (i+1)-th sender take. */
		ASSERT_EQ(want, sent) TH_LOG("hostile %d", i);
		total += sent;
	}
	ASSERT_EQ(total, fdinfo_used(agent, "bus1-limits:", SLICES, NULL));
	ASSERT_EQ(total, fdinfo_used(agent, "bus1-user:", SLICES, NULL));

	/* An eleventh user still gets its guaranteed share through. */
	good = open_as(GOOD);
	ASSERT_LE(0, good);
	ASSERT_EQ(0, bus1_xfer(agent, N1, good, &h));
	sent = flood(good, h, &err);
	ASSERT_EQ(-EDQUOT, err);
	ASSERT_EQ(model_flood(&mu, &mp, 10), sent);
	ASSERT_LT(0, sent);

	/* The agent's own UID still reaches the flooded peer and its other peers. */
	agent2 = open_as(AGENT);
	agent3 = open_as(AGENT);
	ASSERT_LE(0, agent2);
	ASSERT_LE(0, agent3);
	ASSERT_EQ(0, bus1_xfer(agent2, N2, agent3, &h));
	ASSERT_EQ(0, send8(agent3, h));
	ASSERT_EQ(0, bus1_xfer(agent, N1, agent3, &h));
	ASSERT_EQ(0, send8(agent3, h));
	ASSERT_EQ(0, recv_release(agent2));

	/* Once the agent drains its queue, hostile users may send again. */
	while (recv_release(agent) == 0)
		;
	ASSERT_EQ(0, fdinfo_used(agent, "bus1-limits:", SLICES, NULL));
	ASSERT_EQ(0, send8(hostile[0], hh[0]));

	for (i = 0; i < 10; i++)
		close(hostile[i]);
	close(good);
	close(agent);
	close(agent2);
	close(agent3);
	/* (d) Users go away with their last peer: all counters are gone. */
	ASSERT_EQ(0, user_listed(AGENT));
	ASSERT_EQ(0, user_listed(HOSTILE));
	ASSERT_EQ(0, user_listed(GOOD));
}

/* --- (b) a client that never reads the agent's replies ---------------------- */

/* Up to 30 s. */
TEST_F_TIMEOUT(slow, unread_replies_hit_only_that_client, 150)
{
	int agent, c1, c2, i, err;
	__u64 r1, r2, dst[2], errors[2], slices = bus1_module_param("user_slices_max");
	struct model mu, mp;
	long sent;

	agent = open_as(AGENT);
	c1 = open_as(CLIENT + 1);
	c2 = open_as(CLIENT + 2);
	ASSERT_LE(0, agent);
	ASSERT_LE(0, c1);
	ASSERT_LE(0, c2);
	/* Each client gives the agent a handle to its reply node. */
	ASSERT_EQ(0, bus1_xfer(c1, N1, agent, &r1));
	ASSERT_EQ(0, bus1_xfer(c2, N1, agent, &r2));

	model_init(&mu, slices);
	model_init(&mp, slices);
	sent = flood(agent, r1, &err);
	ASSERT_EQ(-EDQUOT, err);
	ASSERT_EQ(model_flood(&mu, &mp, 0), sent);
	ASSERT_EQ(sent, fdinfo_used(c1, "bus1-user:", SLICES, NULL));

	/* The agent keeps serving the other client. */
	for (i = 0; i < 100; i++) {
		ASSERT_EQ(0, send8(agent, r2));
		ASSERT_EQ(0, recv_release(c2));
	}

	/* A multicast with CONTINUE fails only for the exhausted client. */
	dst[0] = r1;
	dst[1] = r2;
	errors[0] = errors[1] = 0xdead;
	ASSERT_EQ(0, bus1_send(agent, BUS1_SEND_FLAG_CONTINUE, dst, 2, errors, "x", 1, NULL, 0, NULL, 0));
	ASSERT_EQ((__u64)EDQUOT, errors[0]);
	ASSERT_EQ((__u64)0, errors[1]);
	ASSERT_EQ(0, recv_release(c2));
	/* Without CONTINUE, nothing is sent to anyone. */
	ASSERT_EQ(-EDQUOT, bus1_send(agent, 0, dst, 2, NULL, "x", 1, NULL, 0, NULL, 0));
	ASSERT_EQ(-EAGAIN, recv_release(c2));

	/* When the client catches up, replies flow again. */
	while (recv_release(c1) == 0)
		;
	ASSERT_EQ(0, fdinfo_used(c1, "bus1-user:", SLICES, NULL));
	ASSERT_EQ(0, fdinfo_used(c1, "bus1-user:", BYTES, NULL));
	ASSERT_EQ(0, send8(agent, r1));

	close(agent);
	close(c1);
	close(c2);
	ASSERT_EQ(0, user_listed(CLIENT + 1));
	ASSERT_EQ(0, user_listed(AGENT));
}

/* --- (c) limits set through RESET ------------------------------------------ */

TEST(reset_limits_enforced_and_restored)
{
	struct bus1_cmd_peer_reset q = { 0 };
	struct bus1_cmd_recv rm;
	int p, s, i, devnull;
	__u64 h;
	long long max;
	char big[64] = { 0 };
	int fds[2];
	/* A new peer's limits are its principal's maxima, the module parameters. */
	__u32 slices = bus1_module_param("user_slices_max");
	__u32 handles = bus1_module_param("user_handles_max");
	__u32 bytes = bus1_module_param("user_inflight_bytes_max");
	__u32 nfds = bus1_module_param("user_inflight_fds_max");

	/*
	 * Both peers belong to one user, whose messages to itself are bounded by
	 * the limits alone (no quota share), so the limits are exact.
	 */
	p = open_as(OTHER);
	s = open_as(OTHER);
	ASSERT_LE(0, p);
	ASSERT_LE(0, s);
	ASSERT_EQ(0, bus1_xfer(p, N1, s, &h));

	/* Slices. */
	ASSERT_EQ(0, bus1_reset(p, 0, (__u64)-1, 3, KEEP, KEEP, KEEP));
	ASSERT_EQ(0, ioctl(p, BUS1_CMD_PEER_QUERY, &q));
	ASSERT_EQ(3U, q.max_slices);
	ASSERT_EQ(handles, q.max_handles);
	ASSERT_EQ(bytes, q.max_inflight_bytes);
	ASSERT_EQ(nfds, q.max_inflight_fds);
	i = 0;
	while (send8(s, h) == 0)
		i++;
	ASSERT_EQ(3, i);
	ASSERT_EQ(-EDQUOT, send8(s, h));
	ASSERT_EQ(i, fdinfo_used(p, "bus1-limits:", SLICES, &max));
	ASSERT_EQ(3, max);
	/* Lowered below use: charges fail until enough is released. */
	ASSERT_EQ(0, bus1_reset(p, 0, (__u64)-1, 0, KEEP, KEEP, KEEP));
	ASSERT_EQ(i, fdinfo_used(p, "bus1-limits:", SLICES, &max));
	ASSERT_EQ(0, max);
	while (recv_release(p) == 0)
		;
	ASSERT_EQ(-EDQUOT, send8(s, h));
	/* Over INT_MAX: EINVAL, nothing changes. */
	ASSERT_EQ(-EINVAL, bus1_reset(p, 0, (__u64)-1, 0x80000000U, KEEP, KEEP, KEEP));
	ASSERT_EQ(0, ioctl(p, BUS1_CMD_PEER_QUERY, &q));
	ASSERT_EQ(0U, q.max_slices);
	/* KEEP keeps, a new value restores. */
	ASSERT_EQ(0, bus1_reset(p, 0, (__u64)-1, KEEP, KEEP, KEEP, KEEP));
	ASSERT_EQ(-EDQUOT, send8(s, h));
	ASSERT_EQ(0, bus1_reset(p, 0, (__u64)-1, slices, KEEP, KEEP, KEEP));
	ASSERT_EQ(0, send8(s, h));
	ASSERT_EQ(0, recv_release(p));

	/* In-flight bytes: held from SEND until RECV, not until SLICE_RELEASE. */
	ASSERT_EQ(0, bus1_reset(p, 0, (__u64)-1, KEEP, KEEP, 64, KEEP));
	ASSERT_EQ(0, bus1_send(s, 0, &h, 1, NULL, big, 64, NULL, 0, NULL, 0));
	ASSERT_EQ(-EDQUOT, bus1_send(s, 0, &h, 1, NULL, big, 8, NULL, 0, NULL, 0));
	ASSERT_EQ(64, fdinfo_used(p, "bus1-limits:", BYTES, NULL));
	ASSERT_EQ(0, bus1_recv(p, 0, ANY_OFFSET, &rm));
	/* Received but not released: the bytes are back, the slice is not. */
	ASSERT_EQ(0, fdinfo_used(p, "bus1-limits:", BYTES, NULL));
	ASSERT_EQ(1, fdinfo_used(p, "bus1-limits:", SLICES, NULL));
	ASSERT_EQ(0, bus1_send(s, 0, &h, 1, NULL, big, 64, NULL, 0, NULL, 0));
	ASSERT_EQ(0, bus1_slice_release(p, rm.msg.offset));
	ASSERT_EQ(0, recv_release(p));
	ASSERT_EQ(0, bus1_reset(p, 0, (__u64)-1, KEEP, KEEP, bytes, KEEP));

	/* In-flight fds. */
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, devnull);
	fds[0] = fds[1] = devnull;
	ASSERT_EQ(0, bus1_reset(p, 0, (__u64)-1, KEEP, KEEP, KEEP, 1));
	ASSERT_EQ(-EDQUOT, bus1_send(s, 0, &h, 1, NULL, "f", 1, NULL, 0, fds, 2));
	ASSERT_EQ(0, bus1_send(s, 0, &h, 1, NULL, "f", 1, NULL, 0, fds, 1));
	ASSERT_EQ(1, fdinfo_used(p, "bus1-limits:", FDS, NULL));
	ASSERT_EQ(-EDQUOT, bus1_send(s, 0, &h, 1, NULL, "f", 1, NULL, 0, fds, 1));
	ASSERT_EQ(0, recv_release(p));
	ASSERT_EQ(0, fdinfo_used(p, "bus1-limits:", FDS, NULL));
	ASSERT_EQ(0, bus1_reset(p, 0, (__u64)-1, KEEP, KEEP, KEEP, nfds));
	ASSERT_EQ(0, bus1_send(s, 0, &h, 1, NULL, "f", 1, NULL, 0, fds, 2));
	ASSERT_EQ(2, fdinfo_used(p, "bus1-user:", FDS, NULL));
	ASSERT_EQ(0, recv_release(p));
	close(devnull);

	/* Handles: the limit also bounds nodes a peer creates. */
	ASSERT_EQ(0, bus1_reset(s, 0, (__u64)-1, KEEP, 1, KEEP, KEEP));
	ASSERT_EQ(1, fdinfo_used(s, "bus1-limits:", HANDLES, NULL));
	ASSERT_EQ(-EDQUOT, bus1_xfer(s, N2, p, &h));
	ASSERT_EQ(1, fdinfo_used(s, "bus1-limits:", HANDLES, NULL));
	ASSERT_EQ(0, bus1_reset(s, 0, (__u64)-1, KEEP, handles, KEEP, KEEP));
	ASSERT_EQ(0, bus1_xfer(s, N2, p, &h));
	ASSERT_EQ(2, fdinfo_used(s, "bus1-limits:", HANDLES, NULL));

	close(p);
	close(s);
	ASSERT_EQ(0, user_listed(OTHER));
}

/* --- (d) counters and visibility ------------------------------------------- */

TEST(counters_visible_and_back_to_zero)
{
	struct bus1_cmd_recv r;
	int a1, a2, b, devnull, fds[1];
	__u64 h1, h2;
	char line[512];

	a1 = open_as(OTHER + 10);
	a2 = open_as(OTHER + 10);
	b = open_as(OTHER + 11);
	ASSERT_LE(0, a1);
	ASSERT_LE(0, a2);
	ASSERT_LE(0, b);
	ASSERT_EQ(0, bus1_xfer(a1, N1, b, &h1));
	ASSERT_EQ(0, bus1_xfer(a2, N1, b, &h2));
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, devnull);
	fds[0] = devnull;

	/* Queued messages to both peers of user OTHER+10, one carrying a handle and an fd. */
	{
		struct iovec v = { .iov_base = "hello", .iov_len = 5 };
		struct bus1_cmd_send s = {
			.ptr_destinations = PTR(&h1),
			.n_destinations = 1,
			.ptr_vecs = PTR(&v),
			.n_vecs = 1,
			.ptr_handles = PTR(&h2),
			.n_handles = 1,
			.ptr_fds = PTR(fds),
			.n_fds = 1,
		};

		ASSERT_EQ(0, ioctl(b, BUS1_CMD_SEND, &s));
	}
	ASSERT_EQ(0, send8(b, h2));
	ASSERT_EQ(1, fdinfo_used(a1, "bus1-limits:", SLICES, NULL));
	ASSERT_EQ(1, fdinfo_used(a1, "bus1-limits:", FDS, NULL));
	/* 5 payload bytes, 8-aligned, one handle ID, one fd number, 8-aligned. */
	ASSERT_EQ(24, fdinfo_used(a1, "bus1-limits:", BYTES, NULL));
	ASSERT_EQ(2, fdinfo_used(a1, "bus1-user:", SLICES, NULL));
	ASSERT_EQ(32, fdinfo_used(a2, "bus1-user:", BYTES, NULL));

	/* debugfs shows the user, its usage and the sender's share. */
	ASSERT_EQ(0, debugfs_user(OTHER + 10, line, sizeof(line)));
	ASSERT_NE(NULL, strstr(line, "peers=2 ")) TH_LOG("%s", line);
	ASSERT_NE(NULL, strstr(line, "senders=1 ")) TH_LOG("%s", line);
	ASSERT_NE(NULL, strstr(line, " slices=2/")) TH_LOG("%s", line);
	ASSERT_NE(NULL, strstr(line, " fds=1/")) TH_LOG("%s", line);

	/* Receiving returns the bytes and the fd, not the slice. */
	ASSERT_EQ(0, bus1_recv(a1, 0, ANY_OFFSET, &r));
	ASSERT_EQ(1ULL, r.msg.n_handles);
	ASSERT_EQ(0, fdinfo_used(a1, "bus1-limits:", BYTES, NULL));
	ASSERT_EQ(0, fdinfo_used(a1, "bus1-limits:", FDS, NULL));
	ASSERT_EQ(1, fdinfo_used(a1, "bus1-limits:", SLICES, NULL));

	/* Close everything, with messages still queued and slices unreleased. */
	close(a1);
	close(b);
	ASSERT_EQ(1, user_listed(OTHER + 10));
	ASSERT_EQ(0, user_listed(OTHER + 11));
	close(a2);
	close(devnull);
	ASSERT_EQ(0, user_listed(OTHER + 10));
}

/* A peer's user is fixed at open: changing UID later moves nothing. */
TEST(uid_fixed_at_open)
{
	int p, s;
	__u64 h;
	char line[512];

	p = open_as(OTHER + 20);
	ASSERT_LE(0, p);
	/* Opened as root, then switch: still charged to root. */
	s = bus1_peer_new();
	ASSERT_LE(0, s);
	ASSERT_EQ(0, bus1_xfer(p, N1, s, &h));
	ASSERT_EQ(0, setresuid(OTHER + 21, OTHER + 21, 0));
	ASSERT_EQ(0, send8(s, h));
	ASSERT_EQ(0, setresuid(0, 0, 0));
	ASSERT_EQ(0, debugfs_user(OTHER + 20, line, sizeof(line)));
	ASSERT_NE(NULL, strstr(line, " slices=1/")) TH_LOG("%s", line);
	ASSERT_EQ(0, user_listed(OTHER + 21));
	close(p);
	close(s);
}

/* --- (e) files that could hold files, and array bounds ---------------------- */

/*
 * An io_uring instance can hold any file in its fixed-file table, a bus1
 * peer among them; sent to that peer (or stored as its seed) it would keep
 * both alive forever. SEND refuses it with EOPNOTSUPP, like a bus1 file or
 * an AF_UNIX socket; an O_PATH file of a ring carries nothing and passes.
 */
TEST(io_uring_fds_refused)
{
	struct io_uring_params params = { 0 };
	char path[64];
	int p, ring, opath, reg[1];
	__u64 dst = N1;

	p = open_as(OTHER + 30);
	ASSERT_LE(0, p);
	ring = syscall(__NR_io_uring_setup, 1, &params);
	ASSERT_LE(0, ring) TH_LOG("io_uring_setup: %s", strerror(errno));
	/* The ring holds the peer itself, the cycle SEND must not let close. */
	reg[0] = p;
	ASSERT_EQ(0, syscall(__NR_io_uring_register, ring, IORING_REGISTER_FILES, reg, 1));

	ASSERT_EQ(-EOPNOTSUPP, bus1_send(p, 0, &dst, 1, NULL, "r", 1, NULL, 0, &ring, 1));
	ASSERT_EQ(-EOPNOTSUPP, bus1_send(p, BUS1_SEND_FLAG_SEED, NULL, 0, NULL, "r", 1, NULL, 0,
					 &ring, 1));
	/* Nothing was queued, and nothing is held in flight. */
	ASSERT_EQ(-EAGAIN, recv_release(p));
	ASSERT_EQ(0, fdinfo_used(p, "bus1-limits:", FDS, NULL));

	snprintf(path, sizeof(path), "/proc/self/fd/%d", ring);
	opath = open(path, O_PATH | O_CLOEXEC);
	ASSERT_LE(0, opath);
	ASSERT_EQ(0, bus1_send(p, 0, &dst, 1, NULL, "o", 1, NULL, 0, &opath, 1));
	ASSERT_EQ(0, recv_release(p));

	close(opath);
	/* The ring puts its registered files from a work item, later. */
	close(ring);
	close(p);
}

/*
 * n_handles is bounded by the caller's handle limit before anything is sized
 * by it, like n_destinations: EINVAL, whatever ptr_handles points to.
 */
TEST(n_handles_bounded_before_use)
{
	struct bus1_cmd_send s = { 0 };
	__u64 ids[5] = { N1, N1, N1, N1, N1 }, dst = N1;
	int p;

	p = open_as(OTHER + 31);
	ASSERT_LE(0, p);
	s.ptr_destinations = PTR(&dst);
	s.n_destinations = 1;

	/* Far above any limit, with no array behind it. */
	s.ptr_handles = 0;
	s.n_handles = 1ULL << 40;
	ASSERT_EQ(-EINVAL, bus1_errno(ioctl(p, BUS1_CMD_SEND, &s)));
	s.n_handles = (__u64)bus1_module_param("user_handles_max") + 1;
	ASSERT_EQ(-EINVAL, bus1_errno(ioctl(p, BUS1_CMD_SEND, &s)));

	/* One above the caller's own limit, with a valid array. */
	ASSERT_EQ(0, bus1_reset(p, 0, (__u64)-1, KEEP, 4, KEEP, KEEP));
	s.ptr_handles = PTR(ids);
	s.n_handles = 5;
	ASSERT_EQ(-EINVAL, bus1_errno(ioctl(p, BUS1_CMD_SEND, &s)));
	/* Nothing was created or charged. */
	ASSERT_EQ(0, fdinfo_used(p, "bus1-limits:", HANDLES, NULL));
	s.n_handles = 4;
	ASSERT_EQ(-EDQUOT, bus1_errno(ioctl(p, BUS1_CMD_SEND, &s)));
	s.n_handles = 3;
	ASSERT_EQ(0, bus1_errno(ioctl(p, BUS1_CMD_SEND, &s)));
	close(p);
}

/* --- (f) what a closed peer keeps ------------------------------------------ */

/* A /proc/meminfo value in KiB; -1 if missing. */
static long meminfo_kib(const char *key)
{
	char line[256];
	size_t l = strlen(key);
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, l) && line[l] == ':') {
			v = strtol(line + l + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/*
 * Asks every slab cache to give back its empty slabs, so that meminfo's slab
 * figures move with live objects rather than with the caches' spare room.
 */
static void slab_shrink(void)
{
	char path[512];
	struct dirent *d;
	DIR *dir = opendir("/sys/kernel/slab");

	if (!dir)
		return;
	while ((d = readdir(dir))) {
		int f;

		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/kernel/slab/%s/shrink", d->d_name);
		f = open(path, O_WRONLY | O_CLOEXEC);
		if (f < 0)
			continue;
		if (write(f, "1", 1) != 1) {
			/* Caches that cannot shrink are left as they are. */
		}
		close(f);
	}
	closedir(dir);
}

/*
 * @n peers of user @uid, each giving @holder a handle to a node of its own
 * and receiving (and releasing) a 64 KiB message from it, so that its pool
 * keeps pages resident; then they are closed. The handles stay in @ids.
 */
static int dead_peers(int holder, uid_t uid, int n, __u64 *ids)
{
	static char big[64 << 10];
	struct bus1_cmd_recv r;
	int i, p;

	for (i = 0; i < n; i++) {
		p = open_as(uid);
		if (p < 0 || bus1_xfer(p, N1, holder, &ids[i]))
			return -1;
		if (bus1_send(holder, 0, &ids[i], 1, NULL, big, sizeof(big), NULL, 0, NULL, 0) ||
		    bus1_recv(p, 0, ANY_OFFSET, &r) || r.msg.n_bytes != sizeof(big) ||
		    bus1_slice_release(p, r.msg.offset))
			return -1;
		close(p);
	}
	/* The holder's NODE_DESTROY notifications. */
	for (i = 0; i < n; i++)
		if (bus1_recv(holder, 0, ANY_OFFSET, &r) || r.msg.type != BUS1_MSG_NODE_DESTROY)
			return -1;
	return 0;
}

/*
 * A closed peer whose nodes are still named by another peer's handles keeps
 * no pool memory (its pages, cache included, go back at disconnect), no peer
 * object (so its user goes too) and, on the release kernel, at most 1 KiB of
 * unreclaimable kernel memory per such node, the holder's handle included.
 * Measured through /proc/meminfo against a baseline taken after a first
 * round of the same, whose objects are gone by then, so slab caches are warm.
 */
/* Up to 116 s. */
TEST_F_TIMEOUT(slow, dead_peers_pin_only_a_stub, 590)
{
	enum { N = 1000 };
	static __u64 ids[N];
	long shmem0, slab0, shmem1, slab1;
	int holder, i, debug = access("/proc/lockdep", F_OK) == 0;

	holder = open_as(OTHER + 40);
	ASSERT_LE(0, holder);
	ASSERT_EQ(0, dead_peers(holder, OTHER + 41, N, ids));
	for (i = 0; i < N; i++)
		ASSERT_EQ(0, bus1_errno(ioctl(holder, BUS1_CMD_HANDLE_RELEASE, &ids[i])));
	ASSERT_EQ(0, user_listed(OTHER + 41));

	slab_shrink();
	shmem0 = meminfo_kib("Shmem");
	slab0 = meminfo_kib("SUnreclaim");
	ASSERT_LE(0, shmem0);
	ASSERT_LE(0, slab0);
	ASSERT_EQ(0, dead_peers(holder, OTHER + 41, N, ids));
	slab_shrink();
	shmem1 = meminfo_kib("Shmem");
	slab1 = meminfo_kib("SUnreclaim");
	TH_LOG("%d dead peers pinned by handles: Shmem %+ld KiB, SUnreclaim %+ld KiB", N,
	       shmem1 - shmem0, slab1 - slab0);
	/* Nothing pins the dead peers' objects, hence nor their user. */
	ASSERT_EQ(0, user_listed(OTHER + 41));
	/* Without the fix: 64 KiB of pool cache per dead peer. */
	ASSERT_GT(N * 4L, shmem1 - shmem0);
	/*
	 * At most 1 KiB per dead node: the node, the small owner object it pins
	 * (one per dead peer; the peer object itself is freed at close), and the
	 * holder's handle. The debug kernel's objects carry KASAN and lockdep
	 * state.
	 */
	if (!debug)
		ASSERT_GE(N * 1L, slab1 - slab0);

	close(holder);
	ASSERT_EQ(0, user_listed(OTHER + 41));
}

/* Writes @v to the sysctl file @path; the old value in @old (if given). */
static int sysctl_swap(const char *path, long v, long *old)
{
	char buf[32];
	ssize_t n;
	int f = open(path, O_RDWR | O_CLOEXEC);

	if (f < 0)
		return -1;
	n = read(f, buf, sizeof(buf) - 1);
	if (n <= 0) {
		close(f);
		return -1;
	}
	buf[n] = 0;
	if (old)
		*old = strtol(buf, NULL, 10);
	n = snprintf(buf, sizeof(buf), "%ld\n", v);
	if (pwrite(f, buf, (size_t)n, 0) != n) {
		close(f);
		return -1;
	}
	close(f);
	return 0;
}

static double now_secs(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/*
 * One node with more holders (132,096) than a flat array of them could be
 * allocated for at close (above about 131,000 holders such an allocation
 * never succeeds, and a close that insists retries for ever). Holders are
 * peers, and a principal may have only user_peers_max open peers, so they
 * are spread over as many principals as that takes (nine by default). The
 * owner's close() returns within seconds, and every holder gets exactly one
 * NODE_DESTROY for the handle it holds. Release kernel only.
 */
TEST_F_TIMEOUT(slow, close_with_many_holders_returns, 600)
{
	enum { HOLDERS = 131072 + 1024 };
	__u64 peers_max = bus1_module_param("user_peers_max");
	struct rlimit old_nofile, nofile = { HOLDERS + 256, HOLDERS + 256 };
	struct bus1_cmd_recv r;
	long old_files_max;
	static int fds[HOLDERS];
	static __u64 ids[HOLDERS];
	int owner, i, n_bad = 0, n_extra = 0;
	double t0, secs;

	/* Under KASAN and lockdep, opening the holders alone outlasts the timeout. */
	if (access("/proc/lockdep", F_OK) == 0)
		SKIP(return, "132,096 peers are too many for the debug kernel");
	ASSERT_LT(0, (long long)peers_max);
	ASSERT_EQ(0, getrlimit(RLIMIT_NOFILE, &old_nofile));
	ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &nofile));
	/* Two files per peer (the peer and its pool), opened without CAP_SYS_ADMIN. */
	ASSERT_EQ(0, sysctl_swap("/proc/sys/fs/file-max", 4L * HOLDERS, &old_files_max));

	owner = open_as(OTHER + 100);
	ASSERT_LE(0, owner);
	for (i = 0; i < HOLDERS; i++) {
		fds[i] = open_as(OTHER + 101 + (uid_t)((__u64)i / peers_max));
		ASSERT_LE(0, fds[i]) TH_LOG("holder %d: %s", i, strerror(-fds[i]));
		ASSERT_EQ(0, bus1_xfer(owner, N1, fds[i], &ids[i])) TH_LOG("holder %d", i);
		ASSERT_NE(INV, ids[i]);
	}

	t0 = now_secs();
	ASSERT_EQ(0, close(owner));
	secs = now_secs() - t0;
	TH_LOG("close() of the owner of a node with %d holders: %.2f s", HOLDERS, secs);
	ASSERT_GT(60.0, secs);

	for (i = 0; i < HOLDERS; i++) {
		if (bus1_recv(fds[i], 0, ANY_OFFSET, &r) || r.msg.type != BUS1_MSG_NODE_DESTROY ||
		    r.msg.destination != ids[i])
			n_bad++;
		else if (bus1_recv(fds[i], 0, ANY_OFFSET, &r) != -EAGAIN)
			n_extra++;
	}
	ASSERT_EQ(0, n_bad) TH_LOG("holders without their NODE_DESTROY");
	ASSERT_EQ(0, n_extra) TH_LOG("holders with more than one notification");

	for (i = 0; i < HOLDERS; i++)
		close(fds[i]);
	ASSERT_EQ(0, sysctl_swap("/proc/sys/fs/file-max", old_files_max, NULL));
	ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &old_nofile));
}

/* --- (g) peers of one principal, and principals of user namespaces --------- */

/*
 * Two peers of one client UID. The one that never reads absorbs at most half
 * of what the agent may hold at the client's UID; the agent keeps serving the
 * other one. Up to 51 s.
 */
TEST_F_TIMEOUT(slow, unread_replies_spare_sibling_peers, 260)
{
	int agent, c1, c2, i, err;
	__u64 r1, r2, slices = bus1_module_param("user_slices_max");
	struct model mu, mp1, mp2;
	long sent, sent2;

	agent = open_as(AGENT);
	c1 = open_as(CLIENT + 5);
	c2 = open_as(CLIENT + 5);
	ASSERT_LE(0, agent);
	ASSERT_LE(0, c1);
	ASSERT_LE(0, c2);
	ASSERT_EQ(0, bus1_xfer(c1, N1, agent, &r1));
	ASSERT_EQ(0, bus1_xfer(c2, N1, agent, &r2));

	model_init(&mu, slices);
	model_init(&mp1, slices);
	model_init(&mp2, slices);
	sent = flood(agent, r1, &err);
	ASSERT_EQ(-EDQUOT, err);
	ASSERT_EQ(model_flood(&mu, &mp1, 0), sent);
	/* Without fairness, this one peer would hold all the agent may hold at the UID. */
	ASSERT_GT((long)max_take(slices, 0, 1), sent);

	/* Replies to the sibling still flow, in both directions of the queue. */
	for (i = 0; i < 100; i++) {
		ASSERT_EQ(0, send8(agent, r2));
		ASSERT_EQ(0, recv_release(c2));
	}
	/* And the sibling may be sent the rest, up to its own half. */
	sent2 = flood(agent, r2, &err);
	ASSERT_EQ(-EDQUOT, err);
	ASSERT_EQ(model_flood(&mu, &mp2, 0), sent2);
	ASSERT_LT(0, sent2);

	close(agent);
	close(c1);
	close(c2);
	ASSERT_EQ(0, user_listed(CLIENT + 5));
}

#define NS_OWNER 600		/* the account that owns the user namespace */
#define NS_BASE 20000		/* its subordinate UIDs: NS_BASE.. */
#define NS_UIDS 1000
#define NS_WORKERS 4

/*
 * In a user namespace owned by NS_OWNER, with NS_UIDS UIDs mapped: NS_WORKERS
 * processes concurrently open a peer as every mapped UID and flood the agent
 * from it. Writes the total to @out.
 */
static void userns_flood(int agent, int go, int out)
{
	long total = 0;
	int w, u, p, err;
	char c;
	__u64 h;

	if (setresuid(NS_OWNER, NS_OWNER, NS_OWNER) || unshare(CLONE_NEWUSER))
		_exit(1);
	/* Tell the parent to write the maps, and wait for it. */
	if (write(out, &total, sizeof(total)) != sizeof(total) || read(go, &c, 1) != 1)
		_exit(2);
	for (w = 0; w < NS_WORKERS; w++) {
		if (fork() != 0)
			continue;
		for (u = w; u < NS_UIDS; u += NS_WORKERS) {
			p = open_as(u);
			if (p < 0 || bus1_xfer(agent, N1, p, &h))
				_exit(3);
			total += flood(p, h, &err);
			if (err != -EDQUOT)
				_exit(4);
			close(p);
		}
		if (write(out, &total, sizeof(total)) != sizeof(total))
			_exit(5);
		_exit(0);
	}
	for (w = 0; w < NS_WORKERS; w++) {
		int st;

		if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
			_exit(6);
	}
	_exit(0);
}

/*
 * Every UID mapped in a user namespace counts as the namespace's owner: a
 * flood from 1000 of them takes what one sender may take, and an honest UID
 * from outside still delivers.
 */
/* Up to 69 s. */
TEST_F_TIMEOUT(slow, userns_uids_count_as_their_owner, 350)
{
	int agent, good, go[2], res[2], i, st;
	__u64 h, slices = bus1_module_param("user_slices_max");
	struct model mu, mp;
	long total = 0, part;
	char path[64], map[64], line[512];
	pid_t pid;
	FILE *f;

	agent = open_as(AGENT);
	ASSERT_LE(0, agent);
	ASSERT_EQ(0, pipe(go));
	ASSERT_EQ(0, pipe(res));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		close(go[1]);
		close(res[0]);
		userns_flood(agent, go[0], res[1]);
	}
	close(go[0]);
	close(res[1]);
	ASSERT_EQ((ssize_t)sizeof(part), read(res[0], &part, sizeof(part)));
	snprintf(path, sizeof(path), "/proc/%d/uid_map", pid);
	snprintf(map, sizeof(map), "0 %d %d\n", NS_BASE, NS_UIDS);
	f = fopen(path, "w");
	ASSERT_NE(NULL, f);
	ASSERT_LT(0, fputs(map, f));
	ASSERT_EQ(0, fclose(f));
	ASSERT_EQ(1, write(go[1], "g", 1));
	for (i = 0; i < NS_WORKERS; i++) {
		ASSERT_EQ((ssize_t)sizeof(part), read(res[0], &part, sizeof(part)));
		total += part;
	}
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) TH_LOG("status %#x", st);

	/* One principal, however many UIDs: exactly what one sender may take. */
	TH_LOG("%d UIDs of one user namespace queued %ld messages", NS_UIDS, total);
	model_init(&mu, slices);
	model_init(&mp, slices);
	ASSERT_EQ(model_flood(&mu, &mp, 0), total);
	ASSERT_EQ(total, fdinfo_used(agent, "bus1-limits:", SLICES, NULL));
	ASSERT_EQ(0, debugfs_user(AGENT, line, sizeof(line)));
	ASSERT_NE(NULL, strstr(line, " senders=1 ")) TH_LOG("%s", line);

	/* An honest UID from outside gets through. */
	good = open_as(GOOD + 5);
	ASSERT_LE(0, good);
	ASSERT_EQ(0, bus1_xfer(agent, N1, good, &h));
	for (i = 0; i < 8; i++)
		ASSERT_EQ(0, send8(good, h));

	close(good);
	close(agent);
	ASSERT_EQ(0, user_listed(NS_OWNER));
	ASSERT_EQ(0, user_listed(AGENT));
}

/* --- (h) open peers per principal ------------------------------------------ */

/*
 * A principal may have at most user_peers_max open peers: open fails with
 * EMFILE beyond, for that principal only. A disconnected peer no longer
 * counts, even while handles to its nodes keep it.
 */
/* Up to 284 s. */
TEST_F_TIMEOUT(slow, open_peers_limited_per_principal, 1430)
{
	struct rlimit lim = { 40000, 40000 };
	long max = bus1_module_param("user_peers_max"), cap, n, i;
	int *fds, other, holder, p;
	__u64 h;

	ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &lim));
	cap = max + 1;
	fds = calloc(cap, sizeof(*fds));
	ASSERT_NE(NULL, fds);
	for (n = 0; n < cap; n++) {
		fds[n] = open_as(OTHER + 50);
		if (fds[n] < 0)
			break;
	}
	TH_LOG("%ld peers open for one principal (user_peers_max %ld)", n, max);
	ASSERT_LT(n, cap);
	ASSERT_EQ(-EMFILE, fds[n]);
	ASSERT_LT(0, n);
	ASSERT_EQ(max, n);

	/* Other principals are not affected. */
	holder = open_as(OTHER + 51);
	ASSERT_LE(0, holder);
	/* A disconnected peer no longer counts, though a handle keeps it. */
	ASSERT_EQ(0, bus1_xfer(fds[0], N1, holder, &h));
	ASSERT_EQ(0, bus1_errno(ioctl(fds[0], BUS1_CMD_PEER_DISCONNECT, 0)));
	p = open_as(OTHER + 50);
	ASSERT_LE(0, p);
	ASSERT_EQ(-EMFILE, open_as(OTHER + 50));
	/* Closing one makes room for one. */
	close(p);
	other = open_as(OTHER + 50);
	ASSERT_LE(0, other);
	close(other);

	for (i = 0; i < n; i++)
		close(fds[i]);
	free(fds);
	close(holder);
	ASSERT_EQ(0, user_listed(OTHER + 50));
}

/* --- (i) a receiver's memory cgroup ----------------------------------------- */

#define CG_ROOT "/sys/fs/cgroup"
#define CG CG_ROOT "/bus1-quota-agent"

/* The value of @key in the flat-keyed cgroup file @path; -1 if missing. */
static long cg_value(const char *path, const char *key)
{
	char line[256];
	size_t l = strlen(key);
	long v = -1;
	FILE *f = fopen(path, "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, l) && line[l] == ' ') {
			v = strtol(line + l + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/*
 * The pool pages of a message are charged to the receiver's memory cgroup.
 * When that cgroup is full, the sender gets EDQUOT: its writes never run
 * the OOM killer in the receiver's cgroup.
 */
TEST(full_receiver_cgroup_is_edquot_not_oom)
{
	static char big[64 << 10];
	static struct model mu, mp;
	int sender, agent, to_child[2], from_child[2], r = 0, st;
	long n = 0, quota;
	__u64 h;
	pid_t pid;
	char c;

	/*
	 * The cgroup must be what refuses: the quota has to let one sender
	 * queue at least as many 64 KiB messages at one peer as the test
	 * allows the 1 MiB cgroup (fewer than 16).
	 */
	model_init(&mu, bus1_module_param("user_inflight_bytes_max"));
	model_init(&mp, bus1_module_param("user_inflight_bytes_max"));
	quota = model_flood(&mu, &mp, 0) / (long)sizeof(big);
	if (quota < 16)
		SKIP(return, "the quota admits only %ld messages of 64 KiB (user_inflight_bytes_max %u)",
		     quota, bus1_module_param("user_inflight_bytes_max"));

	if (access(CG_ROOT "/cgroup.controllers", F_OK)) {
		mkdir(CG_ROOT, 0755);
		ASSERT_EQ(0, mount("cgroup2", CG_ROOT, "cgroup2", 0, NULL));
	}
	ASSERT_EQ(0, bus1_write_file(CG_ROOT "/cgroup.subtree_control", "+memory"));
	rmdir(CG);
	ASSERT_EQ(0, mkdir(CG, 0755));
	/* No swap: what is charged stays charged (the file is missing without swap support). */
	(void)bus1_write_file(CG "/memory.swap.max", "0");
	ASSERT_EQ(0, bus1_write_file(CG "/memory.max", "1048576"));

	sender = open_as(OTHER + 60);
	ASSERT_LE(0, sender);
	ASSERT_EQ(0, pipe(to_child));
	ASSERT_EQ(0, pipe(from_child));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		char me[32];

		/* The agent opens its peer inside the cgroup, then just waits. */
		snprintf(me, sizeof(me), "%d", getpid());
		if (bus1_write_file(CG "/cgroup.procs", me))
			_exit(1);
		agent = open_as(AGENT);
		if (agent < 0 || bus1_xfer(agent, N1, sender, &h))
			_exit(2);
		if (write(from_child[1], &h, sizeof(h)) != sizeof(h))
			_exit(3);
		if (read(to_child[0], &c, 1) != 1)
			_exit(4);
		_exit(0);
	}
	ASSERT_EQ((ssize_t)sizeof(h), read(from_child[0], &h, sizeof(h)));

	/* 64 KiB messages until the 1 MiB cgroup is full. */
	while (n < 64 && (r = bus1_send(sender, 0, &h, 1, NULL, big, sizeof(big), NULL, 0, NULL, 0)) == 0)
		n++;
	TH_LOG("%ld messages of 64 KiB into a 1 MiB cgroup, then %d", n, r);
	ASSERT_EQ(-EDQUOT, r);
	ASSERT_GT(16, n);
	ASSERT_EQ(0, cg_value(CG "/memory.events", "oom"));
	ASSERT_EQ(0, cg_value(CG "/memory.events", "oom_kill"));
	/* The agent is alive and exits on its own. */
	ASSERT_EQ(1, write(to_child[1], "x", 1));
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) TH_LOG("status %#x", st);
	close(sender);
	rmdir(CG);
}

/* --- (j) who holds what, and what was refused -------------------------------- */

/* The fdinfo of @fd in @buf. */
static int fdinfo_text(int fd, char *buf, size_t len)
{
	char path[64];
	ssize_t n;
	int f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = open(path, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return -errno;
	n = read(f, buf, len - 1);
	close(f);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return 0;
}

/*
 * fdinfo lists the principals holding a share of the peer, largest first, and
 * counts the charges refused at the peer and at its principal.
 */
TEST(fdinfo_lists_senders_and_denials)
{
	char buf[4096], want[128];
	int agent, s1, s2, i;
	const char *a, *b;
	__u64 h1, h2;

	agent = open_as(OTHER + 70);
	s1 = open_as(OTHER + 71);
	s2 = open_as(OTHER + 72);
	ASSERT_LE(0, agent);
	ASSERT_LE(0, s1);
	ASSERT_LE(0, s2);
	ASSERT_EQ(0, bus1_xfer(agent, N1, s1, &h1));
	ASSERT_EQ(0, bus1_xfer(agent, N1, s2, &h2));
	for (i = 0; i < 3; i++)
		ASSERT_EQ(0, send8(s1, h1));
	ASSERT_EQ(0, send8(s2, h2));

	ASSERT_EQ(0, fdinfo_text(agent, buf, sizeof(buf)));
	snprintf(want, sizeof(want), "bus1-sender:\tuid=%d slices=3 handles=0 bytes=24 fds=0\n",
		 OTHER + 71);
	a = strstr(buf, want);
	ASSERT_NE(NULL, a) TH_LOG("%s", buf);
	snprintf(want, sizeof(want), "bus1-sender:\tuid=%d slices=1 handles=0 bytes=8 fds=0\n",
		 OTHER + 72);
	b = strstr(buf, want);
	ASSERT_NE(NULL, b) TH_LOG("%s", buf);
	ASSERT_LT(a, b);
	ASSERT_NE(NULL, strstr(buf, " denied=0\nbus1-user:")) TH_LOG("%s", buf);

	/* A refused charge counts at the peer and its principal. */
	ASSERT_EQ(0, bus1_reset(agent, 0, (__u64)-1, 4, KEEP, KEEP, KEEP));
	ASSERT_EQ(-EDQUOT, send8(s2, h2));
	ASSERT_EQ(-EDQUOT, send8(s1, h1));
	ASSERT_EQ(0, fdinfo_text(agent, buf, sizeof(buf)));
	ASSERT_NE(NULL, strstr(buf, " denied=2\nbus1-user:")) TH_LOG("%s", buf);
	snprintf(want, sizeof(want), "bus1-user:\tuid=%d ", OTHER + 70);
	a = strstr(buf, want);
	ASSERT_NE(NULL, a) TH_LOG("%s", buf);
	ASSERT_NE(NULL, strstr(a, " denied=2\n")) TH_LOG("%s", buf);

	/* Shares gone, lines gone. */
	while (recv_release(agent) == 0)
		;
	ASSERT_EQ(0, fdinfo_text(agent, buf, sizeof(buf)));
	ASSERT_EQ(NULL, strstr(buf, "bus1-sender:")) TH_LOG("%s", buf);

	close(s1);
	close(s2);
	close(agent);
}

/* The counts of the "bus1-queue:" line of @fd's fdinfo; -1 if it is missing or malformed. */
static int fdinfo_queue(int fd, long long *messages, long long *bytes, long long *notifications)
{
	char buf[4096];
	const char *l;

	if (fdinfo_text(fd, buf, sizeof(buf)))
		return -1;
	l = strstr(buf, "\nbus1-queue:\t");
	if (!l || sscanf(l, "\nbus1-queue:\tmessages=%lld bytes=%lld notifications=%lld\n",
			 messages, bytes, notifications) != 3)
		return -1;
	return 0;
}

#define ASSERT_QUEUE(fd, m, b, n) do {						\
	long long qm_, qb_, qn_;						\
										\
	ASSERT_EQ(0, fdinfo_queue(fd, &qm_, &qb_, &qn_));			\
	ASSERT_EQ((long long)(m), qm_);						\
	ASSERT_EQ((long long)(b), qb_);						\
	ASSERT_EQ((long long)(n), qn_);						\
} while (0)

/*
 * fdinfo counts what is queued on the peer: messages and their in-flight
 * bytes (the slice sizes, as charged), and notifications; each exactly, as
 * they are queued and received.
 */
TEST(fdinfo_counts_the_queue)
{
	enum { N = 5 };
	struct bus1_cmd_recv r;
	char twenty[20] = { 0 };
	int agent, sender, i;
	__u64 h1, h2;

	agent = open_as(OTHER + 73);
	sender = open_as(OTHER + 74);
	ASSERT_LE(0, agent);
	ASSERT_LE(0, sender);
	ASSERT_EQ(0, bus1_xfer(agent, N1, sender, &h1));
	ASSERT_EQ(0, bus1_xfer(agent, N2, sender, &h2));
	ASSERT_QUEUE(agent, 0, 0, 0);

	for (i = 0; i < N; i++)
		ASSERT_EQ(0, send8(sender, h1));
	ASSERT_QUEUE(agent, N, N * 8, 0);
	/* 20 bytes take a slice of 24. */
	ASSERT_EQ(0, bus1_send(sender, 0, &h1, 1, NULL, twenty, sizeof(twenty), NULL, 0, NULL, 0));
	ASSERT_QUEUE(agent, N + 1, N * 8 + 24, 0);
	/* What the queue holds is what the peer's in-flight bytes count. */
	ASSERT_EQ(N * 8 + 24, fdinfo_used(agent, "bus1-limits:", BYTES, NULL));
	/* The sender drops its handle to N2: the agent is queued a NODE_RELEASE. */
	ASSERT_EQ(0, bus1_errno(ioctl(sender, BUS1_CMD_HANDLE_RELEASE, &h2)));
	ASSERT_QUEUE(agent, N + 1, N * 8 + 24, 1);
	/* The sender's queue is its own. */
	ASSERT_QUEUE(sender, 0, 0, 0);

	/* Received, it no longer counts, whether its slice is released or not. */
	ASSERT_EQ(0, bus1_recv(agent, 0, ANY_OFFSET, &r));
	ASSERT_QUEUE(agent, N, N * 8 - 8 + 24, 1);
	for (i = 1; i < N; i++)
		ASSERT_EQ(0, recv_release(agent));
	ASSERT_QUEUE(agent, 1, 24, 1);
	ASSERT_EQ(0, recv_release(agent));
	ASSERT_QUEUE(agent, 0, 0, 1);
	ASSERT_EQ(0, bus1_recv(agent, 0, ANY_OFFSET, &r));
	ASSERT_EQ((__u64)BUS1_MSG_NODE_RELEASE, r.msg.type);
	ASSERT_QUEUE(agent, 0, 0, 0);

	close(sender);
	close(agent);
}

/*
 * PEER_RESET with FLUSH drops the queued messages (and destroys the peer's
 * nodes) and gives the sender's share back, at the peer and at its
 * principal: the queue, the usage and the share are zero again, and the
 * sender may queue exactly as much again.
 */
TEST(flush_returns_the_shares)
{
	struct bus1_cmd_peer_reset flush = {
		.flags = BUS1_PEER_RESET_FLAG_FLUSH,
		.peer_flags = (__u64)-1,
		.max_slices = KEEP,
		.max_handles = KEEP,
		.max_inflight_bytes = KEEP,
		.max_inflight_fds = KEEP,
	};
	__u64 h, slices = bus1_module_param("user_slices_max");
	static struct model mu, mp;
	char buf[4096], line[512];
	int agent, sender, err;
	long sent, want;

	agent = open_as(OTHER + 75);
	sender = open_as(OTHER + 76);
	ASSERT_LE(0, agent);
	ASSERT_LE(0, sender);
	ASSERT_EQ(0, bus1_xfer(agent, N1, sender, &h));
	model_init(&mu, slices);
	model_init(&mp, slices);
	want = model_flood(&mu, &mp, 0);

	sent = flood(sender, h, &err);
	ASSERT_EQ(-EDQUOT, err);
	ASSERT_EQ(want, sent);
	ASSERT_QUEUE(agent, sent, sent * 8, 0);
	ASSERT_EQ(0, debugfs_user(OTHER + 75, line, sizeof(line)));
	ASSERT_NE(NULL, strstr(line, " senders=1 ")) TH_LOG("%s", line);

	ASSERT_EQ(0, bus1_errno(ioctl(agent, BUS1_CMD_PEER_RESET, &flush)));
	ASSERT_QUEUE(agent, 0, 0, 0);
	ASSERT_EQ(0, fdinfo_used(agent, "bus1-limits:", SLICES, NULL));
	ASSERT_EQ(0, fdinfo_used(agent, "bus1-limits:", BYTES, NULL));
	ASSERT_EQ(0, fdinfo_used(agent, "bus1-user:", SLICES, NULL));
	ASSERT_EQ(0, fdinfo_used(agent, "bus1-user:", BYTES, NULL));
	ASSERT_EQ(0, fdinfo_text(agent, buf, sizeof(buf)));
	ASSERT_EQ(NULL, strstr(buf, "bus1-sender:")) TH_LOG("%s", buf);
	ASSERT_NE(NULL, strstr(buf, "bus1-limits:\tsenders=0 ")) TH_LOG("%s", buf);
	ASSERT_EQ(0, debugfs_user(OTHER + 75, line, sizeof(line)));
	ASSERT_NE(NULL, strstr(line, " senders=0 ")) TH_LOG("%s", line);

	/*
	 * The share is back: the sender gets exactly as much through again, to
	 * a new node (the flush destroyed the agent's nodes).
	 */
	ASSERT_EQ(-EHOSTUNREACH, send8(sender, h));
	ASSERT_EQ(0, bus1_xfer(agent, N2, sender, &h));
	sent = flood(sender, h, &err);
	ASSERT_EQ(-EDQUOT, err);
	ASSERT_EQ(want, sent);

	close(sender);
	close(agent);
	ASSERT_EQ(0, user_listed(OTHER + 75));
	ASSERT_EQ(0, user_listed(OTHER + 76));
}

/* The bus1 lines of @fd's fdinfo (from "bus1-peer:" on) in @out; -1 if there are none. */
static int fdinfo_bus1(int fd, char *out, size_t len)
{
	char buf[4096];
	const char *p;

	if (fdinfo_text(fd, buf, sizeof(buf)))
		return -1;
	p = strstr(buf, "bus1-peer:\t");
	if (!p)
		return -1;
	snprintf(out, len, "%s", p);
	return 0;
}

/* The ID of the peer behind @fd, as its fdinfo shows it; 0 if missing. */
static unsigned long long fdinfo_peer_id(int fd)
{
	unsigned long long id;
	char buf[4096];

	if (fdinfo_bus1(fd, buf, sizeof(buf)) || sscanf(buf, "bus1-peer:\t%llx", &id) != 1)
		return 0;
	return id;
}

/*
 * The block of peer @id in the text @all of debugfs "bus1/peers" (blocks
 * separated by an empty line), with its final newline, in @out; "" if the
 * peer is not listed.
 */
static void peers_block(const char *all, unsigned long long id, char *out, size_t len)
{
	const char *b = all;

	out[0] = 0;
	while (b && *b) {
		const char *end = strstr(b, "\n\n");
		unsigned long long got;
		size_t l = end ? (size_t)(end - b) + 1 : strlen(b);

		if (sscanf(b, "bus1-peer:\t%llx", &got) == 1 && got == id) {
			snprintf(out, len, "%.*s", (int)l, b);
			return;
		}
		b = end ? end + 2 : NULL;
	}
}

/* The counts of the "bus1-queue:" line of the text @t; -1 if missing or malformed. */
static int queue_line(const char *t, long long q[5])
{
	const char *l = strstr(t, "bus1-queue:\t");

	if (!l || sscanf(l, "bus1-queue:\tmessages=%lld bytes=%lld notifications=%lld "
			 "node_destroy=%lld node_release=%lld\n",
			 &q[0], &q[1], &q[2], &q[3], &q[4]) != 5)
		return -1;
	return 0;
}

/*
 * The block of @fd's peer in debugfs "bus1/peers" is exactly its fdinfo, and
 * both show the queue counts @m messages, @b bytes, @d NODE_DESTROY and @r
 * NODE_RELEASE, parsed from each.
 */
#define ASSERT_PEER_BLOCK(all, fd, m, b, d, r) do {				\
	char fi_[4096], blk_[4096];						\
	long long want_[5] = { (m), (b), (d) + (r), (d), (r) }, qf_[5], qb_[5];\
										\
	ASSERT_EQ(0, fdinfo_bus1(fd, fi_, sizeof(fi_)));			\
	peers_block(all, fdinfo_peer_id(fd), blk_, sizeof(blk_));		\
	ASSERT_STREQ(fi_, blk_) TH_LOG("peers:\n%s", all);			\
	ASSERT_EQ(0, queue_line(fi_, qf_)) TH_LOG("%s", fi_);			\
	ASSERT_EQ(0, queue_line(blk_, qb_)) TH_LOG("%s", blk_);		\
	ASSERT_EQ(0, memcmp(want_, qf_, sizeof(want_))) TH_LOG("%s", fi_);	\
	ASSERT_EQ(0, memcmp(want_, qb_, sizeof(want_))) TH_LOG("%s", blk_);	\
} while (0)

/*
 * debugfs "bus1/peers" shows every peer object: an open or disconnected peer
 * with exactly the lines of its fdinfo (the queue by kind, usage, limits,
 * shares, denials), a closed peer whose node another peer's handle still
 * names as "closed" with its principal, and, once everything is closed,
 * nothing of them.
 */
TEST(debugfs_peers_match_fdinfo)
{
	static char all[65536];
	char blk[4096], want[256];
	unsigned long long ida, ids, idg, idi;
	int agent, sender, gone, idle;
	__u64 h1, h2, h3;
	ssize_t n;

	agent = open_as(OTHER + 80);
	sender = open_as(OTHER + 81);
	gone = open_as(OTHER + 80);
	idle = open_as(OTHER + 81);
	ASSERT_LE(0, agent);
	ASSERT_LE(0, sender);
	ASSERT_LE(0, gone);
	ASSERT_LE(0, idle);
	ida = fdinfo_peer_id(agent);
	ids = fdinfo_peer_id(sender);
	idg = fdinfo_peer_id(gone);
	idi = fdinfo_peer_id(idle);
	ASSERT_NE((__u64)0, ida);
	ASSERT_NE((__u64)0, ids);
	ASSERT_NE((__u64)0, idg);
	ASSERT_NE((__u64)0, idi);

	ASSERT_EQ(0, bus1_xfer(agent, N1, sender, &h1));
	ASSERT_EQ(0, bus1_xfer(agent, N2, sender, &h2));
	ASSERT_EQ(0, bus1_xfer(gone, N1, sender, &h3));
	/* The agent: three messages of 8 bytes and a NODE_RELEASE of N2. */
	ASSERT_EQ(0, send8(sender, h1));
	ASSERT_EQ(0, send8(sender, h1));
	ASSERT_EQ(0, send8(sender, h1));
	ASSERT_EQ(0, bus1_release(sender, h2));
	/* The sender: a NODE_DESTROY of h3; its handle keeps what is left of "gone". */
	close(gone);
	/* Disconnected, still open. */
	ASSERT_EQ(0, bus1_disconnect(idle));

	n = bus1_read_file("/sys/kernel/debug/bus1/peers", all, sizeof(all));
	ASSERT_LT(0, n);
	ASSERT_GT((ssize_t)sizeof(all) - 1, n);
	ASSERT_PEER_BLOCK(all, agent, 3, 24, 0, 1);
	ASSERT_PEER_BLOCK(all, sender, 0, 0, 1, 0);
	ASSERT_PEER_BLOCK(all, idle, 0, 0, 0, 0);
	peers_block(all, ida, blk, sizeof(blk));
	ASSERT_NE(NULL, strstr(blk, "\nbus1-state:\topen\n")) TH_LOG("%s", blk);
	snprintf(want, sizeof(want), "\nbus1-user:\tuid=%d ", OTHER + 80);
	ASSERT_NE(NULL, strstr(blk, want)) TH_LOG("%s", blk);
	snprintf(want, sizeof(want), "\nbus1-sender:\tuid=%d slices=3 handles=0 bytes=24 fds=0\n",
		 OTHER + 81);
	ASSERT_NE(NULL, strstr(blk, want)) TH_LOG("%s", blk);
	peers_block(all, idi, blk, sizeof(blk));
	ASSERT_NE(NULL, strstr(blk, "\nbus1-state:\tdisconnected\n")) TH_LOG("%s", blk);
	/* Closed: only its ID, state and principal. */
	peers_block(all, idg, blk, sizeof(blk));
	snprintf(want, sizeof(want), "bus1-peer:\t%16llx\nbus1-state:\tclosed\nbus1-user:\tuid=%d\n",
		 idg, OTHER + 80);
	ASSERT_STREQ(want, blk) TH_LOG("peers:\n%s", all);

	/* The sender's handle to gone's node goes with the sender, and with it the closed peer. */
	close(sender);
	n = bus1_read_file("/sys/kernel/debug/bus1/peers", all, sizeof(all));
	ASSERT_LE(0, n);
	peers_block(all, idg, blk, sizeof(blk));
	ASSERT_STREQ("", blk) TH_LOG("peers:\n%s", all);
	peers_block(all, ida, blk, sizeof(blk));
	ASSERT_NE(NULL, strstr(blk, "\nbus1-state:\topen\n")) TH_LOG("peers:\n%s", all);

	close(agent);
	close(idle);
	n = bus1_read_file("/sys/kernel/debug/bus1/peers", all, sizeof(all));
	ASSERT_LE(0, n);
	ASSERT_GT((ssize_t)sizeof(all) - 1, n);
	peers_block(all, ida, blk, sizeof(blk));
	ASSERT_STREQ("", blk) TH_LOG("peers:\n%s", all);
	peers_block(all, ids, blk, sizeof(blk));
	ASSERT_STREQ("", blk) TH_LOG("peers:\n%s", all);
	peers_block(all, idi, blk, sizeof(blk));
	ASSERT_STREQ("", blk) TH_LOG("peers:\n%s", all);
	snprintf(want, sizeof(want), "\nbus1-user:\tuid=%d", OTHER + 80);
	ASSERT_EQ(NULL, strstr(all, want)) TH_LOG("peers:\n%s", all);
	snprintf(want, sizeof(want), "\nbus1-user:\tuid=%d", OTHER + 81);
	ASSERT_EQ(NULL, strstr(all, want)) TH_LOG("peers:\n%s", all);
}

/* --- (k) the reserved lane ------------------------------------------------- */

#define MANY 1000
#define MANY_BASE 30000	/* UIDs MANY_BASE.. */

/*
 * A thousand distinct principals flood one agent peer, one after another;
 * the next principal still gets its lane amount (g = B / 4096 slices), as
 * locking it out takes L / g others (1024 for a budget B of at least 4096
 * slices). Each count is exactly what the model of the rule, the lane and
 * fairness gives.
 */
/* Up to 129 s. */
TEST_F_TIMEOUT(slow, thousand_principals_leave_the_lane, 650)
{
	static struct model mu, mp;
	static long sent[MANY + 1];
	__u64 slices = bus1_module_param("user_slices_max"), h;
	int agent, p, i, err;
	long total = 0;

	agent = open_as(AGENT + 2);
	ASSERT_LE(0, agent);
	for (i = 0; i <= MANY; i++) {
		p = open_as(i < MANY ? MANY_BASE + i : GOOD + 7);
		ASSERT_LE(0, p);
		ASSERT_EQ(0, bus1_xfer(agent, N1, p, &h));
		sent[i] = flood(p, h, &err);
		ASSERT_EQ(-EDQUOT, err);
		if (i < MANY)
			total += sent[i];
		close(p);
	}
	TH_LOG("%d principals hold %ld slices, the next one gets %ld", MANY, total, sent[MANY]);
	model_init(&mu, slices);
	/*
	 * The guarantee: while fewer than L / g principals hold their lane
	 * amount, the next one gets its own. A budget below 4096 slices has a
	 * lane for fewer than MANY principals, and then only the exact counts
	 * below are promised.
	 */
	if (MANY < mu.L / mu.g) {
		ASSERT_LE(mu.g, sent[MANY]);
	} else {
		TH_LOG("the lane holds %lld principals: no guarantee for the %dth", mu.L / mu.g, MANY + 1);
	}
	/* And every count is exactly the model's. */
	model_init(&mp, slices);
	for (i = 0; i <= MANY; i++)
		ASSERT_EQ(model_flood(&mu, &mp, i), sent[i]) TH_LOG("principal %d", i);
	close(agent);
	ASSERT_EQ(0, user_listed(AGENT + 2));
}

/* --- (l) what a sender makes a receiver keep, in the receiver's cgroup ---- */

#define CG_RCV CG_ROOT "/bus1-memcg-receiver"
#define CG_SND CG_ROOT "/bus1-memcg-sender"
#define CG_RCV_MAX (4L << 20)	/* the receivers' cgroup: 4 MiB */
#define ENTRY_MIN 128		/* bytes: less than any queued message's kernel objects */
#define PAIRS_MAX 80
#define MEMCG_BASE 40000	/* UIDs MEMCG_BASE.. */

/*
 * Fresh cgroups for the receivers (CG_RCV, limited to CG_RCV_MAX bytes,
 * no swap) and the sender (CG_SND), with the memory controller enabled;
 * cgroup2 is mounted first if it is not. 0, or -errno.
 */
static int cg_receiver_sender(void)
{
	char max[32];
	int r;

	if (access(CG_ROOT "/cgroup.controllers", F_OK)) {
		mkdir(CG_ROOT, 0755);
		if (mount("cgroup2", CG_ROOT, "cgroup2", 0, NULL))
			return -errno;
	}
	r = bus1_write_file(CG_ROOT "/cgroup.subtree_control", "+memory");
	if (r)
		return r;
	rmdir(CG_RCV);
	rmdir(CG_SND);
	if (mkdir(CG_RCV, 0755) || mkdir(CG_SND, 0755))
		return -errno;
	(void)bus1_write_file(CG_RCV "/memory.swap.max", "0");
	snprintf(max, sizeof(max), "%ld", CG_RCV_MAX);
	return bus1_write_file(CG_RCV "/memory.max", max);
}

/* Moves the task @pid back to the root cgroup and removes CG_SND and CG_RCV. 0, or -errno. */
static int cg_remove_receiver_sender(const char *pid)
{
	int r = bus1_write_file(CG_ROOT "/cgroup.procs", pid);

	if (r)
		return r;
	if (rmdir(CG_SND) || rmdir(CG_RCV))
		return -errno;
	return 0;
}

/* memory.current of the cgroup at @dir, in bytes; -1 if unreadable. */
static long cg_current(const char *dir)
{
	char path[256];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/memory.current", dir);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/*
 * The kernel objects of a queued message (its queue entry, the share
 * entries, the slice's bookkeeping) are charged to the receiver's memory
 * cgroup, like its pool pages, not to the sender's. When the receiver's
 * cgroup is full, the sender gets EDQUOT, and nothing in that cgroup is
 * OOM-killed.
 *
 * The receivers run in a 4 MiB cgroup, the sender in another one, pinned to
 * one CPU (each CPU keeps up to 256 KiB charged ahead to a cgroup, which
 * memory.current includes). Each receiver is flooded with 8-byte messages
 * from a peer of its own principal, which only the receiver's limits bound
 * (the quota leaves one sending principal too few messages to fill a
 * cgroup), one receiver after another until the cgroup, not a slice limit,
 * refuses: a receiver that takes fewer messages than the slice limit.
 */
/* Up to 8 s. */
TEST_F_TIMEOUT(slow, queued_messages_charge_the_receiver_cgroup, 60)
{
	static __u64 h[PAIRS_MAX];
	static int snd[PAIRS_MAX];
	long limit = bus1_module_param("user_slices_max"), total = 0, n = 0;
	long r0, r1, s0, s1;
	int to_child[2], from_child[2], pairs, i, err = 0, st;
	char me[32];
	cpu_set_t cpu;
	pid_t pid;
	char c;

	/* Enough receivers that, at ENTRY_MIN bytes a message, they could overfill the cgroup. */
	pairs = CG_RCV_MAX / (ENTRY_MIN * limit) + 2;
	ASSERT_GE(PAIRS_MAX, pairs) TH_LOG("user_slices_max %ld", limit);

	ASSERT_EQ(0, cg_receiver_sender());

	for (i = 0; i < pairs; i++) {
		snd[i] = open_as(MEMCG_BASE + i);
		ASSERT_LE(0, snd[i]);
	}
	ASSERT_EQ(0, pipe(to_child));
	ASSERT_EQ(0, pipe(from_child));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		int rcv;

		/* The receivers open their peers inside their cgroup, then wait. */
		snprintf(me, sizeof(me), "%d", getpid());
		if (bus1_write_file(CG_RCV "/cgroup.procs", me))
			_exit(1);
		for (i = 0; i < pairs; i++) {
			rcv = open_as(MEMCG_BASE + i);
			if (rcv < 0 || bus1_xfer(rcv, N1, snd[i], &h[i]))
				_exit(2);
		}
		if (write(from_child[1], h, sizeof(h)) != sizeof(h))
			_exit(3);
		if (read(to_child[0], &c, 1) != 1)
			_exit(4);
		_exit(0);
	}
	ASSERT_EQ((ssize_t)sizeof(h), read(from_child[0], h, sizeof(h)));

	/* The sender moves into its own cgroup, on one CPU. */
	CPU_ZERO(&cpu);
	CPU_SET(0, &cpu);
	ASSERT_EQ(0, sched_setaffinity(0, sizeof(cpu), &cpu));
	snprintf(me, sizeof(me), "%d", getpid());
	ASSERT_EQ(0, bus1_write_file(CG_SND "/cgroup.procs", me));
	/* One message first, so that what is charged ahead is charged already. */
	ASSERT_EQ(0, send8(snd[0], h[0]));

	r0 = cg_current(CG_RCV);
	s0 = cg_current(CG_SND);
	ASSERT_LE(0, r0);
	ASSERT_LE(0, s0);
	for (i = 0; i < pairs; i++) {
		n = flood(snd[i], h[i], &err);
		total += n;
		n += i == 0;
		ASSERT_EQ(-EDQUOT, err) TH_LOG("receiver %d, after %ld messages", i, n);
		if (n < limit)
			break;
	}
	r1 = cg_current(CG_RCV);
	s1 = cg_current(CG_SND);
	TH_LOG("%ld messages to %d receivers (the last took %ld of %ld): receivers' cgroup +%ld KiB, sender's +%ld KiB",
	       total, i < pairs ? i + 1 : pairs, n, limit, (r1 - r0) >> 10, (s1 - s0) >> 10);

	/* The receivers' cgroup refused, not a slice limit, and killed nobody. */
	ASSERT_GT(pairs, i) TH_LOG("every receiver took its %ld slices", limit);
	ASSERT_EQ(0, cg_value(CG_RCV "/memory.events", "oom"));
	ASSERT_EQ(0, cg_value(CG_RCV "/memory.events", "oom_kill"));
	/* The queued messages are the receivers', not the sender's. */
	ASSERT_LE(total * ENTRY_MIN, r1 - r0);
	ASSERT_GT((r1 - r0) / 4, s1 - s0);

	/* The receivers are alive and exit on their own. */
	ASSERT_EQ(1, write(to_child[1], "x", 1));
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) TH_LOG("status %#x", st);
	for (i = 0; i < pairs; i++)
		close(snd[i]);
	ASSERT_EQ(0, cg_remove_receiver_sender(me));
	for (i = 0; i < pairs; i++)
		ASSERT_EQ(0, user_listed(MEMCG_BASE + i));
}

/*
 * HANDLE_TRANSFER: what the destination keeps for a transferred handle (its
 * two tree entries, its holder entry and the memory of its NODE_DESTROY) is
 * charged to the destination's memory cgroup, as a queued message is; when
 * that cgroup is full, the transfer fails with EDQUOT and kills nobody.
 *
 * The destinations are opened inside a 4 MiB cgroup (a peer's cgroup is the
 * opener's), then the test moves to another cgroup, pinned to one CPU, and
 * transfers handles to new nodes (created on the fly, in its own cgroup) to
 * them, one pair of peers of one principal after another, until the
 * destinations' cgroup refuses (memory.events "max") rather than a handle
 * limit.
 */
/* Up to 59 s. */
TEST_F_TIMEOUT(slow, transferred_handles_charge_the_receiver_cgroup, 300)
{
	static int snd[PAIRS_MAX], rcv[PAIRS_MAX];
	long limit = bus1_module_param("user_handles_max"), total = 0, n = 0;
	long r0, r1;
	int pairs, i, err = 0;
	__u64 id = 0x100, out;
	char me[32];
	cpu_set_t cpu;

	/*
	 * A transfer to a peer of the same principal counts twice against its
	 * handle limit (the new node's owner reference and the handle):
	 * enough pairs that, at ENTRY_MIN bytes a handle, they could overfill
	 * the cgroup.
	 */
	pairs = CG_RCV_MAX / (ENTRY_MIN * (limit / 2)) + 2;
	ASSERT_GE(PAIRS_MAX, pairs) TH_LOG("user_handles_max %ld", limit);

	ASSERT_EQ(0, cg_receiver_sender());

	/* Open the destinations inside their cgroup, then leave it for the other one, on one CPU. */
	snprintf(me, sizeof(me), "%d", getpid());
	for (i = 0; i < pairs; i++) {
		snd[i] = open_as(MEMCG_BASE + i);
		ASSERT_LE(0, snd[i]);
	}
	ASSERT_EQ(0, bus1_write_file(CG_RCV "/cgroup.procs", me));
	for (i = 0; i < pairs; i++) {
		rcv[i] = open_as(MEMCG_BASE + i);
		ASSERT_LE(0, rcv[i]);
	}
	CPU_ZERO(&cpu);
	CPU_SET(0, &cpu);
	ASSERT_EQ(0, sched_setaffinity(0, sizeof(cpu), &cpu));
	ASSERT_EQ(0, bus1_write_file(CG_SND "/cgroup.procs", me));
	/* One transfer first, so that what is charged ahead is charged already. */
	ASSERT_EQ(0, bus1_xfer(snd[0], id, rcv[0], &out));
	id += 0x100;

	r0 = cg_current(CG_RCV);
	ASSERT_LE(0, r0);
	for (i = 0; i < pairs; i++) {
		for (n = 0; (err = bus1_xfer(snd[i], id, rcv[i], &out)) == 0; n++)
			id += 0x100;
		total += n;
		ASSERT_EQ(-EDQUOT, err) TH_LOG("pair %d, after %ld transfers", i, n);
		if (cg_value(CG_RCV "/memory.events", "max") > 0)
			break;
	}
	r1 = cg_current(CG_RCV);
	TH_LOG("%ld handles to %d peers (the last took %ld): the destinations' cgroup +%ld KiB",
	       total, i < pairs ? i + 1 : pairs, n, (r1 - r0) >> 10);

	/* The destinations' cgroup refused, not a handle limit, and killed nobody. */
	ASSERT_GT(pairs, i) TH_LOG("every pair reached its handle limit");
	ASSERT_EQ(0, cg_value(CG_RCV "/memory.events", "oom"));
	ASSERT_EQ(0, cg_value(CG_RCV "/memory.events", "oom_kill"));
	/* The handles' memory is the destinations'. */
	ASSERT_LE(total * ENTRY_MIN, r1 - r0);

	for (i = 0; i < pairs; i++) {
		close(rcv[i]);
		close(snd[i]);
	}
	ASSERT_EQ(0, cg_remove_receiver_sender(me));
	for (i = 0; i < pairs; i++)
		ASSERT_EQ(0, user_listed(MEMCG_BASE + i));
}

TEST_HARNESS_MAIN
