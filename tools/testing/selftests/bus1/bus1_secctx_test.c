// SPDX-License-Identifier: GPL-2.0
/*
 * bus1 sender security context: a receiver that set
 * BUS1_PEER_FLAG_WANT_SECCTX gets, with every data message, the LSM context
 * of the task that sent it, captured at SEND, placed in the slice after the
 * payload, the handle IDs and the fd numbers (each part 8-aligned), with
 * msg.n_secctx its length and BUS1_MSG_FLAG_HAS_SECCTX set; a receiver
 * without the flag gets neither the bytes nor the room for them.
 *
 * The tests use Smack, whose contexts are the plain label strings: a child
 * process labels itself through /proc/self/attr/smack/current and sends; a
 * Smack rule (loaded through smackfs) lets that label use /dev/bus1. Smack
 * delivers the label without a terminating NUL, and bus1 adds none, so
 * n_secctx is exactly strlen(label).
 *
 * Without Smack as an active LSM every test SKIPs with the reason; the guest
 * kernels of make check have Smack, and the test manifest allows no SKIP
 * here.
 *
 * Conventions as in bus1_message_test.c: N1 is a caller-chosen node ID;
 * RID(n) the n-th kernel-assigned remote handle ID of a peer. In the
 * fixture, B and C each own a node N1 and A holds a handle to each; B asked
 * for security contexts, C did not.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/bus1.h>

#include "kselftest_harness.h"
#include "bus1_util.h"

#define N1 ((__u64)0x100)
#define N7 ((__u64)0x700)
#define RID(n) ((((__u64)(n)) << 3) | BUS1_HANDLE_FLAG_MANAGED | BUS1_HANDLE_FLAG_REMOTE)
#define INV ((__u64)BUS1_HANDLE_INVALID)
#define ANY_OFFSET ((__u64)-1)
#define KEEP ((__u32)0xffffffff)
#define MAP_LEN (1UL << 20)
#define A8(x) ((((__u64)(x)) + 7) & ~(__u64)7)
#define PTR(p) ((__u64)(uintptr_t)(p))

#define HAS ((__u64)BUS1_MSG_FLAG_HAS_SECCTX)

/* The labels the sending children take; both may use what is labelled "_". */
#define SENDER_LABEL "bus1sender"
#define OTHER_LABEL "bus1other"

#define SMACK_CURRENT "/proc/self/attr/smack/current"
#define SMACKFS "/sys/fs/smackfs"

/* --- helpers (all return 0 or -errno) ------------------------------------ */

/* PEER_RESET of the peer flags only (-1 keeps them). */
static int set_peer_flags(int fd, __u64 peer_flags)
{
	return bus1_reset(fd, 0, peer_flags, KEEP, KEEP, KEEP, KEEP);
}

/* The in-flight bytes charged to peer @fd (its queued slices' sizes). */
static long long inflight_bytes(int fd)
{
	return bus1_fdinfo_value(fd, "bus1-limits:", "bytes", NULL);
}

/*
 * Makes Smack ready for the tests: smackfs mounted, and a rule for each
 * sender label to read, write, execute and append what is labelled "_" (the
 * floor label of /dev/bus1, of the test's pipes and of every unlabelled
 * task). 0, or -errno with what failed in @what.
 */
static int smack_prepare(const char **what)
{
	static const char *const rules[] = {
		SENDER_LABEL " _ rwxa", OTHER_LABEL " _ rwxa",
	};
	size_t i;
	int r;

	if (access(SMACKFS "/load2", W_OK)) {
		*what = "mount smackfs on " SMACKFS;
		if (mount("smackfs", SMACKFS, "smackfs", 0, NULL) && errno != EBUSY)
			return -errno;
	}
	for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		*what = rules[i];
		r = bus1_write_file(SMACKFS "/load2", rules[i]);
		if (r)
			return r;
	}
	return 0;
}

/* The calling task's Smack label into @buf; its length or -errno. */
static ssize_t smack_label(char *buf, size_t len)
{
	return bus1_read_file(SMACK_CURRENT, buf, len);
}

/*
 * Reaps @pid within @ms milliseconds (else kills it): its exit code, or -1.
 * Waits on a pidfd, so the child's exit is what wakes the caller.
 */
static int wait_child(pid_t pid, int ms)
{
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	struct pollfd p = { .fd = pfd, .events = POLLIN };
	int st = 0;

	if (pfd < 0 || poll(&p, 1, ms) != 1)
		kill(pid, SIGKILL);
	if (pfd >= 0)
		close(pfd);
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* What a labelled child does (see run_labelled); the two labels in turn. */
struct job {
	int fd;				/* the sending peer */
	__u64 flags;			/* SEND flags */
	const __u64 *dst;
	__u64 n_dst;
	const char *payload[2];		/* one SEND each, the second after relabelling */
	const __u64 *handles;
	__u64 n_handles;
	const int *fds;
	__u64 n_fds;
};

/*
 * Forks a child that labels itself SENDER_LABEL and sends job->payload[0],
 * then, if there is a second payload, labels itself OTHER_LABEL and sends
 * that. Returns the child's exit code: 0, the errno of a failed SEND, 200 if
 * it could not take a label, 201 if the label did not read back, or -1.
 */
static int run_labelled(const struct job *j)
{
	static const char *const labels[] = { SENDER_LABEL, OTHER_LABEL };
	char buf[64];
	pid_t pid;
	int i, r;

	pid = fork();
	if (pid < 0)
		return -1;
	if (pid)
		return wait_child(pid, 10000);
	for (i = 0; i < 2 && j->payload[i]; i++) {
		if (bus1_write_file(SMACK_CURRENT, labels[i]))
			_exit(200);
		if (smack_label(buf, sizeof(buf)) != (ssize_t)strlen(labels[i]) ||
		    strcmp(buf, labels[i]))
			_exit(201);
		r = bus1_send(j->fd, j->flags, j->dst, j->n_dst, NULL, j->payload[i],
			      strlen(j->payload[i]), j->handles, j->n_handles,
			      j->fds, j->n_fds);
		if (r)
			_exit(-r);
	}
	_exit(0);
}

/*
 * Checks that @r (received with the RFC layout into the pool mapped at @map)
 * is the data message @payload with the security context @label (NULL: none,
 * and the flag clear), the context right after @n_handles handle IDs and
 * @n_fds fd numbers, and no byte of room for a context without one.
 */
static void assert_msg_at(int line, struct __test_metadata *_metadata,
			  const struct bus1_cmd_recv *r, const uint8_t *map,
			  const char *payload, __u64 n_handles, __u64 n_fds,
			  const char *label)
{
	__u64 n = strlen(payload);
	__u64 at = A8(n) + A8(8 * n_handles) + A8(4 * n_fds);

	ASSERT_EQ((__u64)BUS1_MSG_DATA, r->msg.type) TH_LOG("line %d", line);
	ASSERT_EQ(label ? HAS : 0, r->msg.flags) TH_LOG("line %d", line);
	ASSERT_EQ(n, r->msg.n_bytes) TH_LOG("line %d", line);
	ASSERT_EQ(n_handles, r->msg.n_handles) TH_LOG("line %d", line);
	ASSERT_EQ(n_fds, r->msg.n_fds) TH_LOG("line %d", line);
	ASSERT_EQ(0, memcmp(map + r->msg.offset, payload, n)) TH_LOG("line %d", line);
	if (!label) {
		ASSERT_EQ((__u64)0, r->msg.n_secctx) TH_LOG("line %d", line);
		return;
	}
	/* Exactly the label: no terminating NUL. */
	ASSERT_EQ((__u64)strlen(label), r->msg.n_secctx) TH_LOG("line %d", line);
	ASSERT_LE(r->msg.offset + at + r->msg.n_secctx, (__u64)MAP_LEN) TH_LOG("line %d", line);
	ASSERT_EQ(0, memcmp(map + r->msg.offset + at, label, strlen(label)))
		TH_LOG("line %d: context '%.*s'", line, (int)strlen(label),
		       (const char *)map + r->msg.offset + at);
}

#define assert_msg(...) assert_msg_at(__LINE__, _metadata, __VA_ARGS__)

/*
 * The slice of the queue front of @fd ends exactly at its offset + @size:
 * RECV with max_offset one byte short is ERANGE and leaves it queued. The
 * message is left queued (looked at with PEEK).
 */
#define ASSERT_SLICE_SIZE(_fd, _size) do {					\
	struct bus1_cmd_recv __p;						\
	ASSERT_EQ(0, bus1_recv_poisoned((_fd), BUS1_RECV_FLAG_PEEK,		\
					ANY_OFFSET, &__p));			\
	ASSERT_EQ(-ERANGE, bus1_recv_poisoned((_fd), BUS1_RECV_FLAG_PEEK,	\
					      __p.msg.offset + (_size) - 1,	\
					      &__p));				\
	ASSERT_EQ(0, bus1_recv_poisoned((_fd), BUS1_RECV_FLAG_PEEK,		\
					__p.msg.offset + (_size), &__p));	\
} while (0)

/* --- fixture: A can send to B (wants contexts) and C (does not) ---------- */

FIXTURE(sec) {
	int a, b, c;
	const uint8_t *mb, *mc;
	__u64 to_b, to_c;	/* A's handles to B's and C's node N1 */
	char own[256];		/* the test process's own label */
};

FIXTURE_SETUP(sec)
{
	const char *what = "";
	ssize_t n;
	int r;

	self->a = self->b = self->c = -1;
	n = smack_label(self->own, sizeof(self->own));
	if (n <= 0)
		SKIP(return, "Smack is not an active LSM here (%s: %s)", SMACK_CURRENT,
		     n < 0 ? strerror((int)-n) : "empty");
	r = smack_prepare(&what);
	ASSERT_EQ(0, r) TH_LOG("%s: %s", what, strerror(-r));

	self->a = bus1_peer_new();
	self->b = bus1_peer_new();
	self->c = bus1_peer_new();
	ASSERT_LE(0, self->a);
	ASSERT_LE(0, self->b);
	ASSERT_LE(0, self->c);
	ASSERT_EQ(0, bus1_xfer(self->b, N1, self->a, &self->to_b));
	ASSERT_EQ(0, bus1_xfer(self->c, N1, self->a, &self->to_c));
	ASSERT_EQ(RID(1), self->to_b);
	ASSERT_EQ(RID(2), self->to_c);
	ASSERT_EQ(0, set_peer_flags(self->b, BUS1_PEER_FLAG_WANT_SECCTX));
	self->mb = bus1_pool_map(self->b, MAP_LEN);
	self->mc = bus1_pool_map(self->c, MAP_LEN);
	ASSERT_NE(NULL, self->mb);
	ASSERT_NE(NULL, self->mc);
}

FIXTURE_TEARDOWN(sec)
{
	bus1_peer_free(self->a, NULL, 0);
	bus1_peer_free(self->b, self->mb, MAP_LEN);
	bus1_peer_free(self->c, self->mc, MAP_LEN);
}

/*
 * A labelled sender's label arrives byte-exact after the payload, without a
 * NUL; the slice and the in-flight bytes charged to the receiver include its
 * 8-aligned room: 8 (payload) + 16 (10 bytes of label).
 */
TEST_F(sec, labelled_sender_exact)
{
	struct job j = { .fd = self->a, .dst = &self->to_b, .n_dst = 1,
			 .payload = { "hello" } };
	struct bus1_cmd_recv r;

	ASSERT_EQ(0, run_labelled(&j));
	ASSERT_EQ(8 + 16, inflight_bytes(self->b));
	ASSERT_SLICE_SIZE(self->b, 8 + 16);
	ASSERT_EQ(0, bus1_recv_poisoned(self->b, 0, ANY_OFFSET, &r));
	assert_msg(&r, self->mb, "hello", 0, 0, SENDER_LABEL);
	ASSERT_EQ(0, inflight_bytes(self->b));
	ASSERT_EQ(0, bus1_slice_release(self->b, r.msg.offset));
}

/* The context follows the handle IDs and the fd numbers, each part 8-aligned. */
TEST_F(sec, after_handles_and_fds)
{
	__u64 h[3] = { self->to_b, self->to_c, N7 };
	int p[2];
	struct job j = { .fd = self->a, .dst = &self->to_b, .n_dst = 1,
			 .payload = { "thirteen byte" }, .handles = h,
			 .n_handles = 3, .fds = p, .n_fds = 2 };
	struct bus1_cmd_recv r;
	const __u64 *ids;
	const int *fds;

	ASSERT_EQ(0, pipe2(p, O_CLOEXEC | O_NONBLOCK));
	ASSERT_EQ(0, run_labelled(&j));
	/* 16 (payload) + 24 (handles) + 8 (two ints) + 16 (label) */
	ASSERT_SLICE_SIZE(self->b, 64);
	ASSERT_EQ(0, bus1_recv_poisoned(self->b, BUS1_RECV_FLAG_INSTALL_FDS, ANY_OFFSET, &r));
	assert_msg(&r, self->mb, "thirteen byte", 3, 2, SENDER_LABEL);
	ids = (const __u64 *)(self->mb + r.msg.offset + 16);
	ASSERT_EQ(N1, ids[0]);
	ASSERT_NE(ids[1], ids[2]);
	ASSERT_NE(INV, ids[1]);
	ASSERT_NE(INV, ids[2]);
	fds = (const int *)(self->mb + r.msg.offset + 40);
	ASSERT_LE(0, fds[0]);
	ASSERT_LE(0, fds[1]);
	ASSERT_NE(fds[0], fds[1]);
	close(fds[0]);
	close(fds[1]);
	close(p[0]);
	close(p[1]);
}

/*
 * A receiver without WANT_SECCTX gets no context, the flag clear, and no
 * room for one: its slice and charge are the payload's 8 bytes.
 */
TEST_F(sec, not_wanted_nothing_delivered)
{
	struct job j = { .fd = self->a, .dst = &self->to_c, .n_dst = 1,
			 .payload = { "hello" } };
	struct bus1_cmd_recv r;

	ASSERT_EQ(0, run_labelled(&j));
	ASSERT_EQ(8, inflight_bytes(self->c));
	ASSERT_SLICE_SIZE(self->c, 8);
	ASSERT_EQ(0, bus1_recv_poisoned(self->c, 0, ANY_OFFSET, &r));
	assert_msg(&r, self->mc, "hello", 0, 0, NULL);
}

/* One multicast: the copy for B carries the context, the copy for C nothing. */
TEST_F(sec, multicast_one_wants)
{
	__u64 dst[2] = { self->to_b, self->to_c };
	struct job j = { .fd = self->a, .dst = dst, .n_dst = 2,
			 .payload = { "to both" } };
	struct bus1_cmd_recv r;

	ASSERT_EQ(0, run_labelled(&j));
	ASSERT_SLICE_SIZE(self->b, 8 + 16);
	ASSERT_SLICE_SIZE(self->c, 8);
	ASSERT_EQ(0, bus1_recv_poisoned(self->b, 0, ANY_OFFSET, &r));
	assert_msg(&r, self->mb, "to both", 0, 0, SENDER_LABEL);
	ASSERT_EQ(0, bus1_recv_poisoned(self->c, 0, ANY_OFFSET, &r));
	assert_msg(&r, self->mc, "to both", 0, 0, NULL);
}

/*
 * The context is the sender's at the time of each SEND: a sender that
 * relabels itself between two SENDs is seen with each label in turn, both
 * received after it exited.
 */
TEST_F(sec, captured_at_each_send)
{
	struct job j = { .fd = self->a, .dst = &self->to_b, .n_dst = 1,
			 .payload = { "one", "two" } };
	struct bus1_cmd_recv r;

	ASSERT_EQ(0, run_labelled(&j));
	ASSERT_EQ(0, bus1_recv_poisoned(self->b, 0, ANY_OFFSET, &r));
	assert_msg(&r, self->mb, "one", 0, 0, SENDER_LABEL);
	ASSERT_EQ(0, bus1_recv_poisoned(self->b, 0, ANY_OFFSET, &r));
	assert_msg(&r, self->mb, "two", 0, 0, OTHER_LABEL);
}

/* An unlabelled sender (this process) is delivered with its own label. */
TEST_F(sec, own_label)
{
	struct bus1_cmd_recv r;

	ASSERT_EQ(0, bus1_send_str(self->a, self->to_b, "mine"));
	ASSERT_EQ(0, bus1_recv_poisoned(self->b, 0, ANY_OFFSET, &r));
	assert_msg(&r, self->mb, "mine", 0, 0, self->own);
}

/*
 * Whether a copy carries the context is decided at SEND by the receiver's
 * flag then: a message queued while B wanted it keeps it after B cleared the
 * flag, later ones have none; -1 keeps the flag.
 */
TEST_F(sec, flag_read_at_send)
{
	struct job j = { .fd = self->a, .dst = &self->to_b, .n_dst = 1,
			 .payload = { "before" } };
	struct bus1_cmd_recv r;

	ASSERT_EQ(0, run_labelled(&j));
	ASSERT_EQ(0, set_peer_flags(self->b, 0));
	j.payload[0] = "after";
	ASSERT_EQ(0, run_labelled(&j));
	ASSERT_EQ(0, bus1_recv_poisoned(self->b, 0, ANY_OFFSET, &r));
	assert_msg(&r, self->mb, "before", 0, 0, SENDER_LABEL);
	ASSERT_EQ(0, bus1_recv_poisoned(self->b, 0, ANY_OFFSET, &r));
	assert_msg(&r, self->mb, "after", 0, 0, NULL);

	ASSERT_EQ(0, set_peer_flags(self->b, BUS1_PEER_FLAG_WANT_SECCTX));
	ASSERT_EQ(0, set_peer_flags(self->b, (__u64)-1));
	j.payload[0] = "kept";
	ASSERT_EQ(0, run_labelled(&j));
	ASSERT_EQ(0, bus1_recv_poisoned(self->b, 0, ANY_OFFSET, &r));
	assert_msg(&r, self->mb, "kept", 0, 0, SENDER_LABEL);
}

/* PEEK and the receive stage of TRANSACT (the same RFC layout) report it too. */
TEST_F(sec, peek_and_transact)
{
	struct job j = { .fd = self->a, .dst = &self->to_b, .n_dst = 1,
			 .payload = { "peeked" } };
	struct bus1_cmd_transact t;
	struct bus1_cmd_recv r;

	ASSERT_EQ(0, run_labelled(&j));
	ASSERT_EQ(0, bus1_recv_poisoned(self->b, BUS1_RECV_FLAG_PEEK, ANY_OFFSET, &r));
	assert_msg(&r, self->mb, "peeked", 0, 0, SENDER_LABEL);

	memset(&t, 0, sizeof(t));
	memset(&t.recv, 0xa5, sizeof(t.recv));
	t.flags = BUS1_TRANSACT_FLAG_RECV;
	t.recv.flags = 0;
	t.recv.max_offset = ANY_OFFSET;
	ASSERT_EQ(0, bus1_errno(ioctl(self->b, BUS1_CMD_TRANSACT, &t)));
	ASSERT_EQ((__u64)BUS1_TRANSACT_FLAG_RECV, t.done);
	assert_msg(&t.recv, self->mb, "peeked", 0, 0, SENDER_LABEL);
}

/*
 * The 2017 RECV layout has no room to report a context: the message arrives
 * with its payload and no flag (bit 0 is CONTINUE there), and its slice is
 * released as usual.
 */
TEST_F(sec, recv_2017_layout)
{
	struct job j = { .fd = self->a, .dst = &self->to_b, .n_dst = 1,
			 .payload = { "old abi" } };
	struct bus1_cmd_recv_2017 r;

	ASSERT_EQ(0, run_labelled(&j));
	memset(&r, 0xa5, sizeof(r));
	r.flags = 0;
	r.max_offset = ANY_OFFSET;
	ASSERT_EQ(0, bus1_errno(ioctl(self->b, BUS1_CMD_RECV_2017, &r)));
	ASSERT_EQ((__u64)BUS1_MSG_DATA, r.msg.type);
	ASSERT_EQ((__u64)0, r.msg.flags);
	ASSERT_EQ((__u64)7, r.msg.n_bytes);
	ASSERT_EQ(0, memcmp(self->mb + r.msg.offset, "old abi", 7));
	ASSERT_EQ(0, bus1_slice_release(self->b, r.msg.offset));
	ASSERT_EQ(0, bus1_fdinfo_value(self->b, "bus1-limits:", "slices", NULL));
}

/* The seed a labelled task sets carries its context, for a peer that wants it. */
TEST_F(sec, seed)
{
	struct job j = { .fd = self->b, .flags = BUS1_SEND_FLAG_SEED,
			 .payload = { "seeded" } };
	struct bus1_cmd_recv r;

	ASSERT_EQ(0, run_labelled(&j));
	ASSERT_EQ(0, bus1_recv_poisoned(self->b, BUS1_RECV_FLAG_SEED, ANY_OFFSET, &r));
	assert_msg(&r, self->mb, "seeded", 0, 0, SENDER_LABEL);
}

TEST_HARNESS_MAIN
