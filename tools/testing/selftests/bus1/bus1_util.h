/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the bus1 selftests: reading a peer's accounting from its
 * fdinfo and the users bus1 accounts from debugfs.
 */
#ifndef BUS1_SELFTEST_UTIL_H
#define BUS1_SELFTEST_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/*
 * The value of " @key=" on the fdinfo line of @fd that starts with @line
 * ("bus1-pool:", "bus1-limits:", "bus1-user:"); with @max, also the maximum
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
	snprintf(k, sizeof(k), " %s=", key);
	p = strstr(l, k);
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

/*
 * Waits up to @secs for debugfs to list no bus1 user at all, i.e. every
 * accounting counter is back to zero once every peer is closed (peers are
 * freed after their last reference, possibly from RCU). 1 if clean, 0 if not
 * (@buf then holds what is left), -errno without debugfs.
 */
static inline int bus1_users_clean(char *buf, size_t len, int secs)
{
	int i;

	for (i = 0; i <= secs * 20; i++) {
		ssize_t n = bus1_read_file("/sys/kernel/debug/bus1/users", buf, len);

		if (n <= 0)
			return n < 0 ? (int)n : 1;
		usleep(50000);
	}
	return 0;
}

#endif /* BUS1_SELFTEST_UTIL_H */
