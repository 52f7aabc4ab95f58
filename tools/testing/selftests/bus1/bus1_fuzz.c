// SPDX-License-Identifier: GPL-2.0
/*
 * bus1 ioctl fuzzer: seeded and reproducible in its choices.
 *
 * BUS1_FUZZ_PROCS processes (default 2) with BUS1_FUZZ_THREADS threads each
 * (default 2) issue BUS1_FUZZ_ITERS random operations per thread (default
 * 5000; or run for BUS1_FUZZ_SECONDS) on four peers: two of their own and two
 * opened before the processes were forked, shared by all of them, so
 * handles, nodes and messages cross processes. Every other process runs under
 * its own UID (FUZZ_UID + its number), so the peers it opens, and what it
 * sends into root's peers, are charged to another user:
 * every command with structure-aware arguments (IDs, offsets and fds that
 * exist, mutated) or plain random bytes,
 * bad pointers (NULL, unmapped, kernel, misaligned, straddling the end of a
 * mapping), huge counts, unmapped iovecs, closed, foreign and bus1 fds,
 * unknown ioctl numbers, disconnects and reopens racing with other threads,
 * TRANSACT with any stages and short WAITs, poll, and mmap and mprotect with
 * odd offsets, lengths and protections.
 *
 * Pass criterion: no crash or kernel splat (the runner checks the log); every
 * failure of a command is an errno that bus1(7) documents for that command
 * (commands[] below: ENOTRECOVERABLE, "internal inconsistency", is in no set);
 * poll() reports one of the documented event sets; a writable mapping, shared
 * or private, is always refused and mprotect() can never make one; the module
 * still works afterwards and every accounting counter of every user is gone
 * once all peers are closed. A failure names the command, its arguments, the
 * errno, the seed, the process, the thread and the operation's number.
 *
 * BUS1_FUZZ_SEED replays a run's choices; the seed is printed first. With
 * several threads or processes the interleaving, and so the kernel's answers
 * that later choices depend on, differ between runs; BUS1_FUZZ_PROCS=1
 * BUS1_FUZZ_THREADS=1 with BUS1_FUZZ_ITERS replays a run exactly
 * (make fuzz PROCS=1 THREADS=1 SEED=<seed>). BUS1_FUZZ_FIRST=<n> numbers the
 * processes from n (default 0), so that FIRST=1 PROCS=1 replays process 1 of
 * a run alone, with its seed and UID.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/bus1.h>

#include "kselftest_harness.h"
#include "bus1_util.h"

#define NPEERS 4
#define NSHARED 2		/* peers[NPEERS - NSHARED..]: shared by all processes */
#define FUZZ_UID 2000
#define NIDS 64
#define NOFFS 64
#define MAXTHREADS 8
#define POOL_MAP (4UL << 20)
#define PTR(p) ((__u64)(uintptr_t)(p))

struct proc {
	int index;			/* process number: seed and UID derive from it */
	unsigned int run_seed;		/* BUS1_FUZZ_SEED of the run */
	int peers[NPEERS];
	const uint8_t *maps[NPEERS];
	__u64 ids[NIDS];		/* node and handle IDs seen, and noise */
	__u64 offs[NOFFS];		/* slice offsets seen */
	int devnull, sock, closed_fd;
	uint8_t *buf;			/* 64 KiB of readable, writable memory */
	void *unmapped;
	unsigned long n_ok, n_err;
	int failed;
	char why[1024];
	pthread_mutex_t lock;
};

struct worker {
	struct proc *p;
	unsigned int seed;
	int thread;
	unsigned long op;	/* number of the current operation, from 0 */
	int iters;
	time_t end;		/* with BUS1_FUZZ_SECONDS: run until then */
};

static void fail(struct proc *p, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&p->lock);
	if (!p->failed++) {
		va_start(ap, fmt);
		vsnprintf(p->why, sizeof(p->why), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&p->lock);
}

static unsigned int rnd(struct worker *w)
{
	return (unsigned int)rand_r(&w->seed);
}

static __u64 rnd64(struct worker *w)
{
	return ((__u64)rnd(w) << 33) ^ ((__u64)rnd(w) << 11) ^ rnd(w);
}

/* One of a few interesting counts. */
static __u64 count(struct worker *w, __u64 sane)
{
	static const __u64 odd[] = {
		0, 1, 2, 255, 256, 257, 1024, 1025, 0x7fffffff, 0x80000000ULL,
		0xffffffffULL, 1ULL << 40, ~0ULL,
	};

	if (rnd(w) % 4)
		return rnd(w) % (sane + 1);
	return odd[rnd(w) % (sizeof(odd) / sizeof(odd[0]))];
}

/* A pointer to @len bytes: mostly valid, sometimes not. */
static __u64 pointer(struct worker *w, size_t len)
{
	struct proc *p = w->p;

	switch (rnd(w) % 12) {
	case 0:
		return 0;
	case 1:
		return PTR(p->unmapped);
	case 2:
		return 0xffff888000000000ULL;	/* kernel address */
	case 3:
		return PTR(p->buf + 65536 - (len > 4 ? len / 2 : 1));	/* straddles the end */
	case 4:
		return PTR(p->buf + 1 + rnd(w) % 7);	/* misaligned */
	case 5:
		return rnd64(w);
	default:
		return PTR(p->buf + (rnd(w) % 8) * 64);
	}
}

static __u64 some_id(struct worker *w)
{
	struct proc *p = w->p;

	switch (rnd(w) % 8) {
	case 0:
		return BUS1_HANDLE_INVALID;
	case 1:
		return rnd64(w);
	case 2:
		return (__u64)(rnd(w) % 64) << 3 | (rnd(w) % 4);	/* fresh node IDs, flags */
	default:
		return __atomic_load_n(&p->ids[rnd(w) % NIDS], __ATOMIC_RELAXED);
	}
}

static void remember_id(struct worker *w, __u64 id)
{
	if (id != BUS1_HANDLE_INVALID)
		__atomic_store_n(&w->p->ids[rnd(w) % NIDS], id, __ATOMIC_RELAXED);
}

static int some_fd(struct worker *w)
{
	struct proc *p = w->p;

	switch (rnd(w) % 10) {
	case 0:
		return p->devnull;
	case 1:
		return p->sock;
	case 2:
		return p->closed_fd;
	case 3:
		return -1;
	case 4:
		return (int)rnd(w);
	default:
		return __atomic_load_n(&p->peers[rnd(w) % NPEERS], __ATOMIC_RELAXED);
	}
}

static void fill_random(struct worker *w, void *arg, size_t len)
{
	uint8_t *b = arg;
	size_t i;

	for (i = 0; i < len; i++)
		b[i] = (uint8_t)rnd(w);
}

/*
 * The errnos each command may fail with: those bus1(7) lists for it, EFAULT
 * for every command that reads or writes memory, ESHUTDOWN for every command
 * on a disconnected peer (for PEER_DISCONNECT: a second one), ENOMEM for the
 * commands that allocate. A command not in the table fails with ENOTTY (or
 * ESHUTDOWN). Neither ENOSPC nor ENOTRECOVERABLE ("not expected to happen")
 * is in any set.
 */
#define MAXERRNOS 20
struct command {
	unsigned long cmd;
	const char *name;
	int errnos[MAXERRNOS];	/* 0-terminated */
};

#define SEND_ERRNOS EFAULT, EINVAL, EMSGSIZE, ENXIO, EDQUOT, EBADF, EOPNOTSUPP, ENOTUNIQ, \
	ESHUTDOWN, EHOSTUNREACH, EXFULL, ENOMEM
#define RECV_ERRNOS EFAULT, EINVAL, EAGAIN, ESHUTDOWN, ERANGE, EMFILE, ENOMEM

static const struct command commands[] = {
	{ BUS1_CMD_PEER_DISCONNECT, "PEER_DISCONNECT", { EINVAL, ESHUTDOWN } },
	{ BUS1_CMD_PEER_QUERY, "PEER_QUERY", { EFAULT, EINVAL, ESHUTDOWN } },
	{ BUS1_CMD_PEER_RESET, "PEER_RESET", { EFAULT, EINVAL, ESHUTDOWN } },
	{ BUS1_CMD_HANDLE_RELEASE, "HANDLE_RELEASE", { EFAULT, ENXIO, EBUSY, ESHUTDOWN } },
	/* The extension: HANDLE_RELEASE's errnos, EINVAL for flags and counts. */
	{ BUS1_CMD_HANDLE_RELEASE_N, "HANDLE_RELEASE_N", { EFAULT, EINVAL, ENXIO, EBUSY, ESHUTDOWN } },
	{ BUS1_CMD_HANDLE_TRANSFER, "HANDLE_TRANSFER",
	  { EFAULT, EINVAL, EBADF, EOPNOTSUPP, ESHUTDOWN, ENXIO, EDQUOT, ENOMEM } },
	{ BUS1_CMD_NODES_DESTROY, "NODES_DESTROY",
	  { EFAULT, EINVAL, ENOTUNIQ, ENXIO, EREMOTE, ESTALE, EDQUOT, ESHUTDOWN, ENOMEM } },
	{ BUS1_CMD_SLICE_RELEASE, "SLICE_RELEASE", { EFAULT, ENXIO, ESHUTDOWN } },
	{ BUS1_CMD_SEND, "SEND", { SEND_ERRNOS } },
	/* RECV: EINTR and ETIMEDOUT only with WAIT, which the RFC layout has. */
	{ BUS1_CMD_RECV, "RECV", { RECV_ERRNOS, EINTR, ETIMEDOUT } },
	{ BUS1_CMD_RECV_2017, "RECV_2017", { RECV_ERRNOS } },
	/* Its stages' (SLICE_RELEASE, SEND, RECV) errnos; EINVAL for its own flags. */
	{ BUS1_CMD_TRANSACT, "TRANSACT", { SEND_ERRNOS, EAGAIN, ERANGE, EMFILE, EINTR, ETIMEDOUT } },
};
static const struct command unknown_command = { 0, "unknown ioctl", { ENOTTY, ESHUTDOWN } };
/* mmap(): bus1's own (EPERM, ESHUTDOWN) and the mm core's argument checks. */
static const struct command mmap_command = {
	0, "mmap", { EPERM, ESHUTDOWN, EINVAL, ENOMEM, EOVERFLOW, EACCES } };
/* mprotect() of a pool mapping to writable: VM_MAYWRITE is clear. */
static const struct command mprotect_command = { 0, "mprotect", { EACCES } };

static const struct command *command(unsigned long cmd)
{
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (commands[i].cmd == cmd)
			return &commands[i];
	return &unknown_command;
}

static int allowed(const struct command *c, int e)
{
	int i;

	for (i = 0; i < MAXERRNOS && c->errnos[i]; i++)
		if (c->errnos[i] == e)
			return 1;
	return 0;
}

/*
 * Judges the result @r of command @c on @fd. @fd is a peer unless @any_fd (one
 * of some_fd()'s: /dev/null, a socket, a closed or random number, which may
 * have been reused by then): on such an fd, EBADF and ENOTTY are allowed too.
 * @fmt and what follows describe the arguments, printed only on failure.
 */
static __attribute__((format(printf, 6, 7)))
void judge(struct worker *w, const struct command *c, int fd, int any_fd, int r, const char *fmt, ...)
{
	struct proc *p = w->p;
	int e = errno;
	char args[512];
	va_list ap;

	if (r >= 0) {
		__atomic_add_fetch(&p->n_ok, 1, __ATOMIC_RELAXED);
		return;
	}
	__atomic_add_fetch(&p->n_err, 1, __ATOMIC_RELAXED);
	if (allowed(c, e) || (any_fd && (e == EBADF || e == ENOTTY)))
		return;
	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	fail(p, "%s on fd %d%s (%s): errno %d (%s), which bus1(7) does not document for it; "
	     "seed %u, process %d (uid %d), thread %d, operation %lu",
	     c->name, fd, any_fd ? "" : " (a peer)", args, e, strerror(e), p->run_seed, p->index,
	     (int)getuid(), w->thread, w->op);
}

/* Takes what RECV delivered: offsets to release later, handle IDs, fds to close. */
static void harvest(struct worker *w, int peer, __u64 off, __u64 n_bytes, __u64 n_handles,
		    __u64 n_fds)
{
	struct proc *p = w->p;
	const uint8_t *map = __atomic_load_n(&p->maps[peer], __ATOMIC_ACQUIRE);
	__u64 i, at = (n_bytes + 7) & ~7ULL;

	__atomic_store_n(&p->offs[rnd(w) % NOFFS], off, __ATOMIC_RELAXED);
	if (!map || off >= POOL_MAP || n_handles > 4096 || n_fds > BUS1_FD_MAX ||
	    off + at + 8 * n_handles + 4 * n_fds > POOL_MAP)
		return;
	for (i = 0; i < n_handles; i++)
		remember_id(w, ((const __u64 *)(map + off + at))[i]);
	for (i = 0; i < n_fds; i++) {
		int fd = ((const int *)(map + off + at + 8 * n_handles))[i];

		int j, ours = fd <= 2 || fd == p->devnull || fd == p->sock;

		for (j = 0; j < NPEERS; j++)
			ours |= fd == __atomic_load_n(&p->peers[j], __ATOMIC_RELAXED);
		if (!ours)
			close(fd);
	}
}

/* A random SEND description in @s (also the send stage of TRANSACT). */
static void fill_send(struct worker *w, struct bus1_cmd_send *s)
{
	struct proc *p = w->p;
	__u64 *dst = (__u64 *)(p->buf + 8192), *handles = (__u64 *)(p->buf + 12288);
	struct iovec *v = (struct iovec *)(p->buf + 16384);
	int *fds = (int *)(p->buf + 20480);
	unsigned int i, n;

	memset(s, 0, sizeof(*s));
	n = rnd(w) % 4;
	for (i = 0; i < n; i++)
		dst[i] = some_id(w);
	s->ptr_destinations = rnd(w) % 8 ? PTR(dst) : pointer(w, 8 * n);
	s->n_destinations = rnd(w) % 8 ? n : count(w, 4);
	s->ptr_errors = rnd(w) % 2 ? PTR(p->buf + 24576) : (rnd(w) % 2 ? 0 : pointer(w, 8 * n));
	n = rnd(w) % 4;
	for (i = 0; i < n; i++) {
		v[i].iov_base = rnd(w) % 6 ? p->buf + rnd(w) % 4096 : (void *)(uintptr_t)pointer(w, 64);
		v[i].iov_len = rnd(w) % 8 ? rnd(w) % 8192 : count(w, 65536);
	}
	s->ptr_vecs = rnd(w) % 8 ? PTR(v) : pointer(w, 16 * n);
	s->n_vecs = rnd(w) % 8 ? n : count(w, 4);
	n = rnd(w) % 3;
	for (i = 0; i < n; i++)
		handles[i] = some_id(w);
	s->ptr_handles = rnd(w) % 8 ? PTR(handles) : pointer(w, 8 * n);
	s->n_handles = rnd(w) % 8 ? n : count(w, 4);
	n = rnd(w) % 3;
	for (i = 0; i < n; i++)
		fds[i] = some_fd(w);
	s->ptr_fds = rnd(w) % 8 ? PTR(fds) : pointer(w, 4 * n);
	s->n_fds = rnd(w) % 8 ? n : count(w, 4);
	s->flags = rnd(w) % 4 ? (rnd(w) % 2) * BUS1_SEND_FLAG_CONTINUE : count(w, 3);
	if (rnd(w) % 16 == 0)
		fill_random(w, s, sizeof(*s));
}

#define SEND_FMT "flags=%#llx destinations=%#llx[%llu] errors=%#llx vecs=%#llx[%llu] " \
	"handles=%#llx[%llu] fds=%#llx[%llu]"
#define SEND_ARGS(s) (unsigned long long)(s).flags, (unsigned long long)(s).ptr_destinations, \
	(unsigned long long)(s).n_destinations, (unsigned long long)(s).ptr_errors, \
	(unsigned long long)(s).ptr_vecs, (unsigned long long)(s).n_vecs, \
	(unsigned long long)(s).ptr_handles, (unsigned long long)(s).n_handles, \
	(unsigned long long)(s).ptr_fds, (unsigned long long)(s).n_fds

static void op_send(struct worker *w, int fd, int any_fd)
{
	struct bus1_cmd_send s;

	fill_send(w, &s);
	judge(w, command(BUS1_CMD_SEND), fd, any_fd, ioctl(fd, BUS1_CMD_SEND, &s), SEND_FMT,
	      SEND_ARGS(s));
}

/*
 * Whether RECV on @peer may install fds: only if its pool is mapped, where
 * harvest() finds their numbers to close them. A reopened peer's pool is not
 * mapped, and the fds it installed would stay open until the process runs
 * out of descriptors.
 */
static int may_install_fds(struct worker *w, int peer)
{
	return __atomic_load_n(&w->p->maps[peer], __ATOMIC_ACQUIRE) != NULL;
}

/* A random RFC-layout RECV description in @r for @peer; WAIT only if @wait. */
static void fill_recv(struct worker *w, struct bus1_cmd_recv *r, int wait, int peer)
{
	memset(r, 0, sizeof(*r));
	r->flags = rnd(w) % 4 ? BUS1_RECV_FLAG_INSTALL_FDS | (rnd(w) % 4 ? 0 : BUS1_RECV_FLAG_PEEK) :
				count(w, 7);
	r->max_offset = rnd(w) % 4 ? POOL_MAP : count(w, POOL_MAP);
	if (wait && rnd(w) % 2) {
		r->flags |= BUS1_RECV_FLAG_WAIT;
		r->msg.offset = 1 + rnd(w) % 2000000;	/* the timeout: at most 2 ms */
	}
	if (rnd(w) % 16 == 0)
		fill_random(w, r, sizeof(*r));
	/* Never an unbounded wait: nothing may be left to wake it. */
	if ((r->flags & BUS1_RECV_FLAG_WAIT) && (!r->msg.offset || r->msg.offset > 2000000))
		r->msg.offset = 1 + r->msg.offset % 2000000;
	if (!may_install_fds(w, peer))
		r->flags &= ~(__u64)BUS1_RECV_FLAG_INSTALL_FDS;
}

/* Takes what a successful RFC-layout RECV returned. */
static void harvest_recv(struct worker *w, int peer, const struct bus1_cmd_recv *r)
{
	if (r->msg.type == BUS1_MSG_DATA && !(r->flags & BUS1_RECV_FLAG_PEEK))
		harvest(w, peer, r->msg.offset, r->msg.n_bytes, r->msg.n_handles,
			(r->flags & BUS1_RECV_FLAG_INSTALL_FDS) ? r->msg.n_fds : 0);
}

static void op_recv(struct worker *w, int fd, int any_fd, int peer)
{
	struct bus1_cmd_recv r;
	struct bus1_cmd_recv_2017 r7;
	void *arg;
	int ret;

	if (rnd(w) % 4 == 0) {
		memset(&r7, 0, sizeof(r7));
		r7.flags = rnd(w) % 4 ? BUS1_RECV_2017_FLAG_INSTALL_FDS : count(w, 3);
		r7.max_offset = rnd(w) % 4 ? POOL_MAP : count(w, POOL_MAP);
		if (!may_install_fds(w, peer))
			r7.flags &= ~(__u64)BUS1_RECV_2017_FLAG_INSTALL_FDS;
		ret = ioctl(fd, BUS1_CMD_RECV_2017, &r7);
		judge(w, command(BUS1_CMD_RECV_2017), fd, any_fd, ret, "flags=%#llx max_offset=%#llx",
		      (unsigned long long)r7.flags, (unsigned long long)r7.max_offset);
		if (!ret && r7.msg.type == BUS1_MSG_DATA)
			harvest(w, peer, r7.msg.offset, r7.msg.n_bytes, r7.msg.n_handles,
				(r7.flags & BUS1_RECV_2017_FLAG_INSTALL_FDS) ? r7.msg.n_fds : 0);
		return;
	}
	fill_recv(w, &r, 0, peer);
	arg = rnd(w) % 16 ? &r : (void *)(uintptr_t)pointer(w, sizeof(r));
	ret = ioctl(fd, BUS1_CMD_RECV, arg);
	judge(w, command(BUS1_CMD_RECV), fd, any_fd, ret, "arg=%p flags=%#llx max_offset=%#llx", arg,
	      (unsigned long long)r.flags, (unsigned long long)r.max_offset);
	if (!ret && arg == &r)
		harvest_recv(w, peer, &r);
}

/* TRANSACT: any combination of its stages, now and then a short WAIT. */
static void op_transact(struct worker *w, int fd, int any_fd, int peer)
{
	struct proc *p = w->p;
	struct bus1_cmd_transact t;
	int ret;

	memset(&t, 0, sizeof(t));
	t.flags = rnd(w) % 8 ? rnd(w) % 8 : count(w, 15);
	t.release_offset = rnd(w) % 4 ? __atomic_load_n(&p->offs[rnd(w) % NOFFS], __ATOMIC_RELAXED)
				      : count(w, POOL_MAP);
	t.reserved = rnd(w) % 16 ? 0 : count(w, 1);
	fill_send(w, &t.send);
	fill_recv(w, &t.recv, 1, peer);
	ret = ioctl(fd, BUS1_CMD_TRANSACT, &t);
	judge(w, command(BUS1_CMD_TRANSACT), fd, any_fd, ret,
	      "flags=%#llx release_offset=%#llx reserved=%#llx send={" SEND_FMT
	      "} recv={flags=%#llx max_offset=%#llx timeout=%llu} done=%#llx",
	      (unsigned long long)t.flags, (unsigned long long)t.release_offset,
	      (unsigned long long)t.reserved, SEND_ARGS(t.send), (unsigned long long)t.recv.flags,
	      (unsigned long long)t.recv.max_offset, (unsigned long long)t.recv.msg.offset,
	      (unsigned long long)t.done);
	if (!ret && (t.done & BUS1_TRANSACT_FLAG_RECV))
		harvest_recv(w, peer, &t.recv);
}

static void op_mmap(struct worker *w, int fd)
{
	static const size_t lens[] = { 0, 1, 4096, 8192, 1UL << 20, 1UL << 29, 1UL << 30, ~0UL };
	static const off_t offs[] = { 0, 1, 4096, 1 << 20, 1L << 29, 1L << 40, -4096 };
	static const int prots[] = {
		PROT_READ, PROT_WRITE, PROT_READ | PROT_WRITE, PROT_EXEC, PROT_NONE,
		PROT_READ | PROT_EXEC,
	};
	size_t len = lens[rnd(w) % 8];
	int prot = prots[rnd(w) % 6];
	int flags = rnd(w) % 4 ? MAP_SHARED : MAP_PRIVATE;
	off_t off = offs[rnd(w) % 7];
	void *m = mmap(NULL, len, prot, flags, fd, off);

	if (m == MAP_FAILED) {
		judge(w, &mmap_command, fd, 0, -1, "len=%#zx prot=%#x flags=%#x offset=%#llx", len, prot,
		      flags, (unsigned long long)off);
		return;
	}
	__atomic_add_fetch(&w->p->n_ok, 1, __ATOMIC_RELAXED);
	if (prot & PROT_WRITE)
		fail(w->p, "mmap of a bus1 fd with PROT_WRITE was allowed (len=%#zx prot=%#x flags=%#x "
		     "offset=%#llx); seed %u, process %d, thread %d, operation %lu", len, prot, flags,
		     (unsigned long long)off, w->p->run_seed, w->p->index, w->thread, w->op);
	if (rnd(w) % 2) {
		size_t plen = len < 4096 ? 4096 : len;

		if (mprotect(m, plen, PROT_READ | PROT_WRITE) == 0)
			fail(w->p, "mprotect made a bus1 mapping writable (len=%#zx prot=%#x flags=%#x); "
			     "seed %u, process %d, thread %d, operation %lu", len, prot, flags,
			     w->p->run_seed, w->p->index, w->thread, w->op);
		else
			judge(w, &mprotect_command, fd, 0, -1, "len=%#zx prot=%#x flags=%#x", plen,
			      PROT_READ | PROT_WRITE, flags);
	}
	munmap(m, len);
}

/* poll(): exactly POLLHUP (disconnected), or POLLOUT|POLLWRNORM and maybe POLLIN|POLLRDNORM. */
static void op_poll(struct worker *w, int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM };
	int r = poll(&pfd, 1, 0);
	short ev = pfd.revents;

	if (r < 0) {
		judge(w, &(const struct command){ 0, "poll", { 0 } }, fd, 0, r, "timeout=0");
		return;
	}
	__atomic_add_fetch(&w->p->n_ok, 1, __ATOMIC_RELAXED);
	if (r != 1 || !(ev == POLLHUP || ev == (POLLOUT | POLLWRNORM) ||
			ev == (POLLOUT | POLLWRNORM | POLLIN | POLLRDNORM)))
		fail(w->p, "poll of a peer returned %d with revents %#x; seed %u, process %d, thread %d, "
		     "operation %lu", r, ev, w->p->run_seed, w->p->index, w->thread, w->op);
}

static void one_op(struct worker *w)
{
	struct proc *p = w->p;
	int peer = rnd(w) % NPEERS;
	int any_fd = rnd(w) % 16 == 0;
	int fd = any_fd ? some_fd(w) : __atomic_load_n(&p->peers[peer], __ATOMIC_RELAXED);
	uint8_t raw[128];
	void *arg;
	__u64 x;
	int r;

	switch (rnd(w) % 22) {
	case 0: {
		struct bus1_cmd_peer_reset q = { .flags = rnd(w) % 4 ? 0 : count(w, 3) };

		arg = rnd(w) % 8 ? &q : (void *)(uintptr_t)pointer(w, 32);
		judge(w, command(BUS1_CMD_PEER_QUERY), fd, any_fd, ioctl(fd, BUS1_CMD_PEER_QUERY, arg),
		      "arg=%p flags=%#llx", arg, (unsigned long long)q.flags);
		break;
	}
	case 1: {
		struct bus1_cmd_peer_reset q = {
			.flags = count(w, 3),
			.peer_flags = rnd(w) % 2 ? ~0ULL : count(w, 1),
			.max_slices = rnd(w) % 2 ? ~0U : (__u32)count(w, 100000),
			.max_handles = rnd(w) % 2 ? ~0U : (__u32)count(w, 100000),
			.max_inflight_bytes = rnd(w) % 2 ? ~0U : (__u32)count(w, 1 << 24),
			.max_inflight_fds = rnd(w) % 2 ? ~0U : (__u32)count(w, 4096),
		};

		judge(w, command(BUS1_CMD_PEER_RESET), fd, any_fd, ioctl(fd, BUS1_CMD_PEER_RESET, &q),
		      "flags=%#llx peer_flags=%#llx max=%#x,%#x,%#x,%#x", (unsigned long long)q.flags,
		      (unsigned long long)q.peer_flags, q.max_slices, q.max_handles,
		      q.max_inflight_bytes, q.max_inflight_fds);
		break;
	}
	case 2:
		x = some_id(w);
		arg = rnd(w) % 8 ? &x : (void *)(uintptr_t)pointer(w, 8);
		judge(w, command(BUS1_CMD_HANDLE_RELEASE), fd, any_fd,
		      ioctl(fd, BUS1_CMD_HANDLE_RELEASE, arg), "arg=%p id=%#llx", arg,
		      (unsigned long long)x);
		break;
	case 3:
	case 4: {
		struct bus1_cmd_handle_transfer t = {
			.flags = rnd(w) % 8 ? 0 : count(w, 3),
			.src_handle = some_id(w),
			.dst_fd = (__u64)(__s64)some_fd(w),
			.dst_handle = rnd(w) % 4 ? BUS1_HANDLE_INVALID : some_id(w),
		};
		struct bus1_cmd_handle_transfer in = t;

		r = ioctl(fd, BUS1_CMD_HANDLE_TRANSFER, &t);
		judge(w, command(BUS1_CMD_HANDLE_TRANSFER), fd, any_fd, r,
		      "flags=%#llx src_handle=%#llx dst_fd=%lld dst_handle=%#llx",
		      (unsigned long long)in.flags, (unsigned long long)in.src_handle,
		      (long long)in.dst_fd, (unsigned long long)in.dst_handle);
		if (!r) {
			remember_id(w, t.src_handle);
			remember_id(w, t.dst_handle);
		}
		break;
	}
	case 5: {
		__u64 *ids = (__u64 *)(p->buf + 28672);
		unsigned int i, n = rnd(w) % 4;
		struct bus1_cmd_nodes_destroy d;

		for (i = 0; i < n; i++)
			ids[i] = some_id(w);
		d.flags = rnd(w) % 2 ? BUS1_NODES_DESTROY_FLAG_RELEASE_HANDLES : count(w, 1);
		d.ptr_nodes = rnd(w) % 8 ? PTR(ids) : pointer(w, 8 * n);
		d.n_nodes = rnd(w) % 8 ? n : count(w, 4);
		/* Destroying is rare, so sends mostly find live nodes. */
		if (rnd(w) % 4 == 0)
			judge(w, command(BUS1_CMD_NODES_DESTROY), fd, any_fd,
			      ioctl(fd, BUS1_CMD_NODES_DESTROY, &d), "flags=%#llx nodes=%#llx[%llu]",
			      (unsigned long long)d.flags, (unsigned long long)d.ptr_nodes,
			      (unsigned long long)d.n_nodes);
		break;
	}
	case 6:
	case 7:
		x = rnd(w) % 4 ? __atomic_load_n(&p->offs[rnd(w) % NOFFS], __ATOMIC_RELAXED)
			       : count(w, POOL_MAP);
		judge(w, command(BUS1_CMD_SLICE_RELEASE), fd, any_fd,
		      ioctl(fd, BUS1_CMD_SLICE_RELEASE, &x), "offset=%#llx", (unsigned long long)x);
		break;
	case 8: case 9: case 10: case 11:
		op_send(w, fd, any_fd);
		break;
	case 12: case 13: case 14:
		op_recv(w, fd, any_fd, peer);
		break;
	case 15:
		op_mmap(w, __atomic_load_n(&p->peers[peer], __ATOMIC_RELAXED));
		break;
	case 16: {
		/* Unknown or mis-sized commands, and known ones with random bytes. */
		static const unsigned long known[] = {
			BUS1_CMD_PEER_QUERY, BUS1_CMD_PEER_RESET, BUS1_CMD_HANDLE_RELEASE,
			BUS1_CMD_HANDLE_TRANSFER, BUS1_CMD_NODES_DESTROY, BUS1_CMD_SLICE_RELEASE,
			BUS1_CMD_SEND, BUS1_CMD_RECV, BUS1_CMD_RECV_2017,
		};
		unsigned long cmd = rnd(w) % 2 ? known[rnd(w) % 9] :
			_IOC(rnd(w) % 4, BUS1_IOCTL_MAGIC, rnd(w) % 256, rnd(w) % 128);

		fill_random(w, raw, sizeof(raw));
		/* A WAIT without a bounded timeout could wait for ever. */
		if (cmd == BUS1_CMD_RECV && (((struct bus1_cmd_recv *)raw)->flags & BUS1_RECV_FLAG_WAIT))
			((struct bus1_cmd_recv *)raw)->msg.offset = 1 + rnd(w) % 2000000;
		judge(w, command(cmd), fd, any_fd, ioctl(fd, cmd, raw), "cmd=%#lx arg=random bytes", cmd);
		break;
	}
	case 17:
		if (rnd(w) % 8 == 0) {
			x = rnd(w) % 4 ? 0 : rnd64(w);
			judge(w, command(BUS1_CMD_PEER_DISCONNECT), fd, any_fd,
			      ioctl(fd, BUS1_CMD_PEER_DISCONNECT, (unsigned long)x), "arg=%#llx",
			      (unsigned long long)x);
		}
		break;
	case 18:
		/*
		 * Replace a peer, atomically at the same fd number, so that
		 * other threads' operations on it meet the old or the new
		 * peer, never another file. The old one is closed by dup3().
		 */
		if (rnd(w) % 8 == 0) {
			int nfd = bus1_peer_new();
			int old = __atomic_load_n(&p->peers[peer], __ATOMIC_RELAXED);

			if (nfd < 0) {
				fail(p, "reopen: %d", errno);
				break;
			}
			/* Its pool is not mapped: nothing is read from it. */
			__atomic_store_n(&p->maps[peer], NULL, __ATOMIC_RELEASE);
			if (dup3(nfd, old, O_CLOEXEC) != old)
				fail(p, "dup3 of a new peer over fd %d: %d", old, errno);
			if (close(nfd))
				fail(p, "close of a bus1 fd: %d", errno);
		}
		break;
	case 19:
		op_transact(w, fd, any_fd, peer);
		break;
	case 20:
		op_poll(w, __atomic_load_n(&p->peers[peer], __ATOMIC_RELAXED));
		break;
	default: {
		/* A handle from one peer to another, so sends find destinations. */
		struct bus1_cmd_handle_transfer t = {
			.src_handle = (__u64)(rnd(w) % 16) << 3,
			.dst_fd = (__u64)__atomic_load_n(&p->peers[rnd(w) % NPEERS], __ATOMIC_RELAXED),
			.dst_handle = BUS1_HANDLE_INVALID,
		};
		__u64 src = t.src_handle, dst_fd = t.dst_fd;

		r = ioctl(fd, BUS1_CMD_HANDLE_TRANSFER, &t);
		judge(w, command(BUS1_CMD_HANDLE_TRANSFER), fd, any_fd, r,
		      "flags=0 src_handle=%#llx dst_fd=%lld dst_handle=%#llx", (unsigned long long)src,
		      (long long)dst_fd, (unsigned long long)BUS1_HANDLE_INVALID);
		if (!r)
			remember_id(w, t.dst_handle);
		break;
	}
	}
}

static void *run_worker(void *arg)
{
	struct worker *w = arg;

	for (w->op = 0; (w->end ? time(NULL) < w->end : w->op < (unsigned long)w->iters) &&
	     !w->p->failed; w->op++)
		one_op(w);
	return NULL;
}

static int env_int(const char *name, int def)
{
	const char *v = getenv(name);

	return v && *v ? atoi(v) : def;
}

static int setup_failed(int index, const char *what)
{
	printf("# process %d uid %d: %s: %s\n", index, (int)getuid(), what, strerror(errno));
	fflush(stdout);
	return 1;
}

/* Process @index of the run with seed @run_seed; @shared: the NSHARED peers opened before fork. */
static int run_proc(int index, unsigned int run_seed, int threads, int iters, int seconds,
		    const int *shared)
{
	unsigned int seed = run_seed + 104729 * index;
	static struct proc proc;
	struct proc *p = &proc;
	struct worker w[MAXTHREADS];
	pthread_t t[MAXTHREADS];
	int i;

	memset(p, 0, sizeof(*p));
	p->index = index;
	p->run_seed = run_seed;
	pthread_mutex_init(&p->lock, NULL);
	for (i = 0; i < NPEERS; i++) {
		int is_shared = i >= NPEERS - NSHARED;
		void *map;

		if (is_shared)
			p->peers[i] = shared[i - (NPEERS - NSHARED)];
		else
			p->peers[i] = bus1_peer_new();
		if (p->peers[i] < 0)
			return setup_failed(index, "open /dev/bus1");
		map = mmap(NULL, POOL_MAP, PROT_READ, MAP_SHARED, p->peers[i], 0);
		/* A process that started earlier may have disconnected a shared peer. */
		if (map == MAP_FAILED && !(is_shared && errno == ESHUTDOWN))
			return setup_failed(index, "mmap of a peer");
		p->maps[i] = map == MAP_FAILED ? NULL : map;
	}
	p->buf = mmap(NULL, 65536 + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p->buf == MAP_FAILED)
		return setup_failed(index, "mmap");
	/* The page after the buffer is unmapped: accesses straddling the end fault. */
	munmap(p->buf + 65536, 4096);
	p->unmapped = p->buf + 65536;
	p->devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	p->sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	p->closed_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	close(p->closed_fd);
	for (i = 0; i < NIDS; i++)
		p->ids[i] = (__u64)(i % 16) << 3;
	for (i = 0; i < threads; i++) {
		w[i].p = p;
		w[i].seed = seed * 7919 + i;
		w[i].thread = i;
		w[i].iters = iters;
		w[i].end = seconds > 0 ? time(NULL) + seconds : 0;
		errno = pthread_create(&t[i], NULL, run_worker, &w[i]);
		if (errno)
			return setup_failed(index, "pthread_create");
	}
	for (i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	printf("# pid %d uid %d: %lu ok, %lu failed as documented%s%s\n", getpid(), (int)getuid(),
	       p->n_ok, p->n_err, p->failed ? "; FAIL: " : "", p->failed ? p->why : "");
	fflush(stdout);
	/* At least some operations must have got through, or nothing was tested. */
	return p->failed || p->n_ok < (seconds > 0 ? 1UL : (unsigned long)iters / 20);
}

/* Whether debugfs still lists root as a bus1 user (-1: no debugfs). */
static int root_listed(void)
{
	return bus1_user_listed(0);
}

/* Process @i of the run: every other one under its own UID. */
static int proc_main(int i, unsigned int seed, int threads, int iters, int seconds, const int *shared)
{
	uid_t uid = FUZZ_UID + i;

	if (i % 2 && (setresgid(uid, uid, uid) || setresuid(uid, uid, uid))) {
		printf("# process %d: cannot become uid %d: %s\n", i, (int)uid, strerror(errno));
		return 1;
	}
	return run_proc(i, seed, threads, iters, seconds, shared);
}

FIXTURE(fuzz) {};
FIXTURE_SETUP(fuzz) {}
FIXTURE_TEARDOWN(fuzz) {}

/*
 * The harness timeout: the run's length (BUS1_FUZZ_SECONDS, or ITERS at no
 * fewer than 30 operations per second and thread: a fifth of the slowest rate
 * measured, about 150, on the debug kernel under TCG on a loaded host) plus
 * 60 s for setup and the checks after it; make fuzz sizes the guest's timeout
 * the same way. scripts/manifest.py reads the env_int() defaults as the make
 * check run.
 */
TEST_F_TIMEOUT(fuzz, run, 60 + env_int("BUS1_FUZZ_SECONDS", 0) + env_int("BUS1_FUZZ_ITERS", 5000) / 30)
{
	int procs = env_int("BUS1_FUZZ_PROCS", 2);
	int first = env_int("BUS1_FUZZ_FIRST", 0);
	int threads = env_int("BUS1_FUZZ_THREADS", 2);
	int iters = env_int("BUS1_FUZZ_ITERS", 5000);
	int seconds = env_int("BUS1_FUZZ_SECONDS", 0);
	unsigned int seed = (unsigned int)env_int("BUS1_FUZZ_SEED", (int)time(NULL));
	struct bus1_cmd_handle_transfer t = { .src_handle = 0x100, .dst_handle = BUS1_HANDLE_INVALID };
	struct bus1_cmd_recv r = { .max_offset = POOL_MAP };
	struct bus1_cmd_send s = { .n_destinations = 1 };
	pid_t pid[16];
	int shared[NSHARED];
	char users[4096];
	int i, a, b;

	if (procs > 16)
		procs = 16;
	if (threads > MAXTHREADS)
		threads = MAXTHREADS;
	if (first < 0 || first > 1000)
		first = 0;
	TH_LOG("seed=%u procs=%d first=%d threads=%d iters=%d seconds=%d (replay: BUS1_FUZZ_SEED=%u)",
	       seed, procs, first, threads, iters, seconds, seed);
	ASSERT_EQ(0, root_listed()) TH_LOG("bus1 peers of root are open before the fuzz run");
	for (i = 0; i < NSHARED; i++) {
		shared[i] = bus1_peer_new();
		ASSERT_LE(0, shared[i]);
	}
	for (i = 0; i < procs; i++) {
		pid[i] = fork();
		ASSERT_LE(0, pid[i]);
		if (pid[i] == 0)
			_exit(proc_main(first + i, seed, threads, iters, seconds, shared));
	}
	for (i = 0; i < procs; i++) {
		int st;

		ASSERT_EQ(pid[i], waitpid(pid[i], &st, 0));
		EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0)
			TH_LOG("fuzz process %d failed (status %#x)", i, st);
	}

	for (i = 0; i < NSHARED; i++)
		close(shared[i]);

	/* Everything was given back, by every user, once every peer is gone. */
	EXPECT_EQ(1, bus1_users_clean(users, sizeof(users)))
		TH_LOG("bus1 users still accounted after all peers closed:\n%s", users);

	/* The module still works. */
	a = bus1_peer_new();
	b = bus1_peer_new();
	ASSERT_LE(0, a);
	ASSERT_LE(0, b);
	ASSERT_NE(MAP_FAILED, mmap(NULL, POOL_MAP, PROT_READ, MAP_SHARED, b, 0));
	t.dst_fd = (__u64)a;
	ASSERT_EQ(0, ioctl(b, BUS1_CMD_HANDLE_TRANSFER, &t));
	s.ptr_destinations = PTR(&t.dst_handle);
	ASSERT_EQ(0, ioctl(a, BUS1_CMD_SEND, &s));
	ASSERT_EQ(0, ioctl(b, BUS1_CMD_RECV, &r));
	ASSERT_EQ((__u64)BUS1_MSG_DATA, r.msg.type);
	close(a);
	close(b);
}

TEST_HARNESS_MAIN
