/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the bus1 selftests: opening and mapping peers, thin
 * wrappers of the bus1 commands, reading a peer's accounting from its fdinfo
 * and the users bus1 accounts from debugfs, and setting up fault injection
 * (failslab, fail_page_alloc) for allocations made by bus1.
 *
 * Every command wrapper returns 0 (or the command's non-negative result) on
 * success and -errno on failure, so that a test can assert on the errno in
 * one expression: ASSERT_EQ(-EINVAL, bus1_release(fd, id)).
 */
#ifndef BUS1_SELFTEST_UTIL_H
#define BUS1_SELFTEST_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/bus1.h>

/* A system call's result @r, or -errno if it failed (@r negative). */
static inline int bus1_errno(long r)
{
	return r < 0 ? -errno : (int)r;
}

/*
 * A new peer: /dev/bus1 opened O_NONBLOCK (RECV never blocks) and O_CLOEXEC;
 * its fd, or -1 with errno set.
 */
static inline int bus1_peer_new(void)
{
	return open("/dev/bus1", O_RDWR | O_CLOEXEC | O_NONBLOCK);
}

/* A read-only shared mapping of the first @len bytes of peer @fd's pool; NULL on failure. */
static inline const uint8_t *bus1_pool_map(int fd, size_t len)
{
	void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);

	return p == MAP_FAILED ? NULL : (const uint8_t *)p;
}

/*
 * Undoes bus1_pool_map() and bus1_peer_new() as a fixture's teardown does:
 * unmaps the @len bytes at @map unless it is NULL, then closes peer @fd
 * unless it is negative (a test that closed it itself sets it to -1).
 */
static inline void bus1_peer_free(int fd, const uint8_t *map, size_t len)
{
	if (map)
		munmap((void *)map, len);
	if (fd >= 0)
		close(fd);
}

/* An address that is guaranteed not to be mapped (the page before it is); NULL on failure. */
static inline void *bus1_unmapped_page(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	char *p = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	munmap(p + pg, pg);
	return p + pg;
}

/* The current poll state of peer @fd (without blocking): its revents, or -errno. */
static inline int bus1_pollrev(int fd)
{
	struct pollfd p = {
		.fd = fd,
		.events = POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM,
	};
	int r = poll(&p, 1, 0);

	if (r < 0)
		return -errno;
	return p.revents;
}

/*
 * HANDLE_TRANSFER of peer @fd's handle @src, with @flags, to the peer whose
 * fd is @dst_fd as the ABI takes it ((__u64)-1: @fd itself). The ID the
 * destination got goes to *@out unless @out is NULL, on failure too (where it
 * is BUS1_HANDLE_INVALID unless the kernel wrote something else).
 */
static inline int bus1_xfer_raw(int fd, __u64 flags, __u64 src, __u64 dst_fd, __u64 *out)
{
	struct bus1_cmd_handle_transfer c = {
		.flags = flags,
		.src_handle = src,
		.dst_fd = dst_fd,
		.dst_handle = BUS1_HANDLE_INVALID,
	};
	int r = bus1_errno(ioctl(fd, BUS1_CMD_HANDLE_TRANSFER, &c));

	if (out)
		*out = c.dst_handle;
	return r;
}

/* Transfers @src of peer @fd to peer @dst (negative: to @fd itself); as bus1_xfer_raw(). */
static inline int bus1_xfer(int fd, __u64 src, int dst, __u64 *out)
{
	return bus1_xfer_raw(fd, 0, src, dst < 0 ? (__u64)-1 : (__u64)dst, out);
}

/* HANDLE_RELEASE of @id. */
static inline int bus1_release(int fd, __u64 id)
{
	return bus1_errno(ioctl(fd, BUS1_CMD_HANDLE_RELEASE, &id));
}

/* HANDLE_RELEASE_N (extension) of @n references of handle @id, with @flags. */
static inline int bus1_release_n(int fd, __u64 flags, __u64 id, __u64 n)
{
	struct bus1_cmd_handle_release_n r = { .flags = flags, .handle = id, .n_refs = n };

	return bus1_errno(ioctl(fd, BUS1_CMD_HANDLE_RELEASE_N, &r));
}

/* NODES_DESTROY of the @n nodes @ids with @flags. */
static inline int bus1_destroy_nodes(int fd, __u64 flags, const __u64 *ids, __u64 n)
{
	struct bus1_cmd_nodes_destroy c = {
		.flags = flags,
		.ptr_nodes = (__u64)(uintptr_t)ids,
		.n_nodes = n,
	};

	return bus1_errno(ioctl(fd, BUS1_CMD_NODES_DESTROY, &c));
}

/* NODES_DESTROY of the one node @id with @flags. */
static inline int bus1_destroy_node(int fd, __u64 id, __u64 flags)
{
	return bus1_destroy_nodes(fd, flags, &id, 1);
}

/*
 * PEER_RESET with @flags, setting the peer flags to @peer_flags ((__u64)-1
 * keeps them) and the limits to @slices, @handles, @bytes (in flight) and
 * @fds (in flight); 0xffffffff keeps a limit.
 */
static inline int bus1_reset(int fd, __u64 flags, __u64 peer_flags, __u32 slices,
			     __u32 handles, __u32 bytes, __u32 fds)
{
	struct bus1_cmd_peer_reset c = {
		.flags = flags,
		.peer_flags = peer_flags,
		.max_slices = slices,
		.max_handles = handles,
		.max_inflight_bytes = bytes,
		.max_inflight_fds = fds,
	};

	return bus1_errno(ioctl(fd, BUS1_CMD_PEER_RESET, &c));
}

/* PEER_DISCONNECT. */
static inline int bus1_disconnect(int fd)
{
	return bus1_errno(ioctl(fd, BUS1_CMD_PEER_DISCONNECT, 0));
}

/* SLICE_RELEASE of the slice at @offset. */
static inline int bus1_slice_release(int fd, __u64 offset)
{
	return bus1_errno(ioctl(fd, BUS1_CMD_SLICE_RELEASE, &offset));
}

/*
 * SEND with @flags to the @n_dst destinations @dst (per-destination errors
 * in @errors unless NULL) of the @len bytes at @buf as a single vector (@len
 * 0: no vector at all), with the @n_handles handles @handles and the @n_fds
 * file descriptors @fds.
 */
static inline int bus1_send(int fd, __u64 flags, const __u64 *dst, __u64 n_dst,
			    __u64 *errors, const void *buf, size_t len,
			    const __u64 *handles, __u64 n_handles,
			    const int *fds, __u64 n_fds)
{
	struct iovec v = { .iov_base = (void *)buf, .iov_len = len };
	struct bus1_cmd_send s = {
		.flags = flags,
		.ptr_destinations = (__u64)(uintptr_t)dst,
		.ptr_errors = (__u64)(uintptr_t)errors,
		.n_destinations = n_dst,
		.ptr_vecs = (__u64)(uintptr_t)&v,
		.n_vecs = len ? 1 : 0,
		.ptr_handles = (__u64)(uintptr_t)handles,
		.n_handles = n_handles,
		.ptr_fds = (__u64)(uintptr_t)fds,
		.n_fds = n_fds,
	};

	return bus1_errno(ioctl(fd, BUS1_CMD_SEND, &s));
}

/* Unicast SEND of the string @s (without its NUL) to @dst. */
static inline int bus1_send_str(int fd, __u64 dst, const char *s)
{
	return bus1_send(fd, 0, &dst, 1, NULL, s, strlen(s), NULL, 0, NULL, 0);
}

/* RECV (RFC layout) with @flags and @max_offset into @r, zeroed first. */
static inline int bus1_recv(int fd, __u64 flags, __u64 max_offset, struct bus1_cmd_recv *r)
{
	memset(r, 0, sizeof(*r));
	r->flags = flags;
	r->max_offset = max_offset;
	return bus1_errno(ioctl(fd, BUS1_CMD_RECV, r));
}

/*
 * RECV (RFC layout) with @flags and @max_offset into @r, every other byte of
 * which is poisoned (0xa5) first, so that an output field the kernel leaves
 * unwritten is noticed.
 */
static inline int bus1_recv_poisoned(int fd, __u64 flags, __u64 max_offset,
				     struct bus1_cmd_recv *r)
{
	memset(r, 0xa5, sizeof(*r));
	r->flags = flags;
	r->max_offset = max_offset;
	return bus1_errno(ioctl(fd, BUS1_CMD_RECV, r));
}

/*
 * The value of @key (" @key=" or, first on its line, "\t@key=") on the fdinfo
 * line of @fd that starts with @line ("bus1-pool:", "bus1-limits:",
 * "bus1-queue:", "bus1-user:"); with @max, also the maximum
 * after a '/'. -1 if missing.
 */
static inline long long bus1_fdinfo_value(int fd, const char *line, const char *key,
					  long long *max)
{
	char path[64], buf[4096], k[32];
	const char *l, *p, *end;
	long long used = -1, m = -1;
	ssize_t n;
	int f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = open(path, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return -1;
	n = read(f, buf, sizeof(buf) - 1);
	close(f);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	l = strstr(buf, line);
	if (!l)
		return -1;
	end = strchr(l, '\n');
	/* The first key of a line follows a tab, the others a space. */
	snprintf(k, sizeof(k), "\t%s=", key);
	p = strstr(l, k);
	if (!p || (end && p > end)) {
		k[0] = ' ';
		p = strstr(l, k);
	}
	if (!p || (end && p > end))
		return -1;
	if (sscanf(p + strlen(k), "%lld/%lld", &used, &m) < 1)
		return -1;
	if (max)
		*max = m;
	return used;
}

/* Whether debugfs lists @uid as a bus1 user; -1 without debugfs. */
static inline int bus1_user_listed(uid_t uid)
{
	char buf[65536], key[32];
	ssize_t n, got = 0;
	int f = open("/sys/kernel/debug/bus1/users", O_RDONLY | O_CLOEXEC);

	if (f < 0)
		return -1;
	while ((n = read(f, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += n;
	close(f);
	buf[got] = 0;
	snprintf(key, sizeof(key), "uid=%u ", (unsigned int)uid);
	if (!strncmp(buf, key, strlen(key)))
		return 1;
	snprintf(key, sizeof(key), "\nuid=%u ", (unsigned int)uid);
	return strstr(buf, key) != NULL;
}

/* Reads the whole (small) file @path into @buf, NUL-terminated; its length or -errno. */
static inline ssize_t bus1_read_file(const char *path, char *buf, size_t len)
{
	ssize_t n, got = 0;
	int f = open(path, O_RDONLY | O_CLOEXEC);

	if (f < 0)
		return -errno;
	while (got < (ssize_t)len - 1 && (n = read(f, buf + got, len - 1 - got)) > 0)
		got += n;
	close(f);
	buf[got] = 0;
	return got;
}

/* Writes the string @s to the file @path: 0, -errno, or -EIO for a short write. */
static inline int bus1_write_file(const char *path, const char *s)
{
	int f = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (f < 0)
		return -errno;
	n = write(f, s, strlen(s));
	n = n < 0 ? -errno : (n == (ssize_t)strlen(s) ? 0 : -EIO);
	close(f);
	return (int)n;
}

/*
 * The live value of the bus1 module parameter @name, read from
 * /sys/module/bus1/parameters/ (mode 0444). Expectations must follow the
 * values the module was loaded with, never a compiled-in default: a missing
 * or unreadable file fails the calling test (the harness runs each test in
 * its own process, and exit status 1 is KSFT_FAIL).
 */
static inline __u32 bus1_module_param(const char *name)
{
	char path[128], buf[32], *end;
	unsigned long v;
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/module/bus1/parameters/%s", name);
	n = bus1_read_file(path, buf, sizeof(buf));
	if (n < 0) {
		fprintf(stderr, "# %s: %s\n", path, strerror((int)-n));
		exit(1);
	}
	errno = 0;
	v = strtoul(buf, &end, 10);
	if (errno || end == buf || (*end && *end != '\n') || v > UINT32_MAX) {
		fprintf(stderr, "# %s: not a __u32: '%s'\n", path, buf);
		exit(1);
	}
	return (__u32)v;
}

/*
 * Waits until thread @tid of this process sleeps interruptibly (state 'S' in
 * /proc/self/task/<tid>/stat) in a kernel function whose name contains @in
 * (/proc/self/task/<tid>/wchan), checking every millisecond, or until *@gave_up
 * is set (the sleeper sets it once its call returned, so a call that never
 * slept ends the wait). No deadline of its own: only the case's harness timeout
 * bounds it, so a slow host cannot fail it. A test that wakes a sleeper calls
 * it before the wake-up, so the wake-up path is what it tests. 0 once the
 * thread sleeps there, -1 if it never did.
 */
static inline int bus1_wait_asleep(pid_t tid, const char *in, const int *gave_up)
{
	char path[64], buf[512];

	while (!__atomic_load_n(gave_up, __ATOMIC_ACQUIRE)) {
		const char *s = NULL;

		snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
		if (bus1_read_file(path, buf, sizeof(buf)) > 0)
			s = strrchr(buf, ')'); /* the command name may hold anything */
		if (s && s[1] == ' ' && s[2] == 'S') {
			snprintf(path, sizeof(path), "/proc/self/task/%d/wchan", (int)tid);
			if (bus1_read_file(path, buf, sizeof(buf)) > 0 && strstr(buf, in))
				return 0;
		}
		usleep(1000);
	}
	return -1;
}

/*
 * Waits until debugfs lists no bus1 user at all, i.e. every accounting
 * counter is back to zero once every peer is closed (peers are freed after
 * their last reference, possibly from RCU). No deadline of its own: only the
 * case's harness timeout bounds it, so a slow host cannot fail it; what is
 * left after a second is printed once, so that a case killed by its timeout
 * shows what was never given back. 1 once clean, -errno without debugfs.
 */
static inline int bus1_users_clean(char *buf, size_t len)
{
	int i;

	for (i = 0;; i++) {
		ssize_t n = bus1_read_file("/sys/kernel/debug/bus1/users", buf, len);

		if (n <= 0)
			return n < 0 ? (int)n : 1;
		if (i == 20) {
			fprintf(stderr, "# still accounted after 1 s, waiting:\n%s", buf);
			fflush(stderr);
		}
		usleep(50000);
	}
}

/* The fault-injection attribute directories: failslab and fail_page_alloc. */
static const char *const bus1_fi_dirs[] = {
	"/sys/kernel/debug/failslab", "/sys/kernel/debug/fail_page_alloc",
};

/* Writes a printf-formatted value to fault-injection attribute @attr of @dir; 0 or -errno. */
static inline __attribute__((format(printf, 3, 4)))
int bus1_fi_put(const char *dir, const char *attr, const char *fmt, ...)
{
	char path[256], val[64];
	va_list ap;
	int f, n;

	va_start(ap, fmt);
	vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	snprintf(path, sizeof(path), "%s/%s", dir, attr);
	f = open(path, O_WRONLY | O_CLOEXEC);
	if (f < 0)
		return -errno;
	n = write(f, val, strlen(val));
	close(f);
	return n < 0 ? -errno : 0;
}

/* The bus1 module's address range, from /proc/modules: 0 if found, -1 if not. */
static inline int bus1_module_range(unsigned long *start, unsigned long *end)
{
	char name[64], line[512];
	unsigned long size, addr;
	FILE *f = fopen("/proc/modules", "r");
	int ret = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%63s %lu %*d %*s %*s %lx", name, &size, &addr) == 3 &&
		    !strcmp(name, "bus1") && addr) {
			*start = addr;
			*end = addr + size;
			ret = 0;
		}
	}
	fclose(f);
	return ret;
}

/*
 * Whether failslab and fail_page_alloc can be limited to bus1's code (the
 * stack trace filter) and armed through the per-task file @task_file
 * (/proc/self/make-it-fail or /proc/thread-self/fail-nth).
 */
static inline int bus1_fi_available(const char *task_file)
{
	return !access("/sys/kernel/debug/failslab/require-start", W_OK) &&
	       !access("/sys/kernel/debug/fail_page_alloc/require-start", W_OK) &&
	       !access(task_file, W_OK);
}

/* Sets @attr to @val in both fault-injection directories. */
static inline void bus1_fi_set_all(const char *attr, const char *val)
{
	unsigned int i;

	for (i = 0; i < sizeof(bus1_fi_dirs) / sizeof(bus1_fi_dirs[0]); i++)
		bus1_fi_put(bus1_fi_dirs[i], attr, "%s", val);
}

/*
 * Gives both fault-injection directories back their boot defaults, the
 * failure rate first: without their filters, failures would hit every task.
 */
static inline void bus1_fi_reset(void)
{
	unsigned int i;

	for (i = 0; i < sizeof(bus1_fi_dirs) / sizeof(bus1_fi_dirs[0]); i++) {
		bus1_fi_put(bus1_fi_dirs[i], "probability", "0");
		bus1_fi_put(bus1_fi_dirs[i], "require-start", "0");
		bus1_fi_put(bus1_fi_dirs[i], "require-end", "%lu", ~0UL);
		bus1_fi_put(bus1_fi_dirs[i], "task-filter", "N");
		bus1_fi_put(bus1_fi_dirs[i], "times", "1");
		bus1_fi_put(bus1_fi_dirs[i], "verbose", "2");
	}
}

/*
 * Sets up failslab and fail_page_alloc for this test: failures at
 * @probability percent (0: only through fail-nth), only for tasks that ask
 * for them (task-filter), only for allocations whose call chain passes
 * through the bus1 module (the stack trace filter), GFP_KERNEL included.
 * 0 on success, -errno (or -1 without the module) otherwise.
 */
static inline int bus1_fi_setup(int probability)
{
	unsigned long start = 0, end = 0;
	unsigned int i;
	int r = 0;

	if (bus1_module_range(&start, &end))
		return -1;
	/* The filters first: a failure rate without them would hit every task. */
	for (i = 0; i < sizeof(bus1_fi_dirs) / sizeof(bus1_fi_dirs[0]) && !r; i++) {
		const char *d = bus1_fi_dirs[i];

		r = bus1_fi_put(d, "probability", "0") ?:
		    bus1_fi_put(d, "task-filter", "Y") ?:
		    bus1_fi_put(d, "stacktrace-depth", "32") ?:
		    bus1_fi_put(d, "require-start", "%lu", start) ?:
		    bus1_fi_put(d, "require-end", "%lu", end) ?:
		    bus1_fi_put(d, "verbose", "0") ?:
		    bus1_fi_put(d, "times", "-1") ?:
		    bus1_fi_put(d, "space", "0") ?:
		    bus1_fi_put(d, "interval", "1") ?:
		    bus1_fi_put(d, "ignore-gfp-wait", "N");
	}
	r = r ?: bus1_fi_put(bus1_fi_dirs[1], "ignore-gfp-highmem", "N") ?:
		 bus1_fi_put(bus1_fi_dirs[1], "min-order", "0");
	for (i = 0; i < sizeof(bus1_fi_dirs) / sizeof(bus1_fi_dirs[0]) && !r; i++)
		r = bus1_fi_put(bus1_fi_dirs[i], "probability", "%d", probability);
	return r;
}

#endif /* BUS1_SELFTEST_UTIL_H */
