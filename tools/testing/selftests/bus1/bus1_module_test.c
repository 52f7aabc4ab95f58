// SPDX-License-Identifier: GPL-2.0
/*
 * Module lifetime: an open /dev/bus1 pins bus1.ko, so unloading fails while
 * a peer is open and succeeds after close. This test unloads the module; run
 * it last.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kselftest_harness.h"

static int module_refcnt(void)
{
	FILE *f = fopen("/sys/module/bus1/refcnt", "r");
	int n = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%d", &n) != 1)
		n = -1;
	fclose(f);
	return n;
}

static long delete_module(const char *name)
{
	return syscall(SYS_delete_module, name, O_NONBLOCK);
}

TEST(unload_pinned_by_open_peer)
{
	struct stat st;
	int fd, base;

	base = module_refcnt();
	ASSERT_LE(0, base);
	fd = open("/dev/bus1", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd);
	/* The open file holds a module reference... */
	ASSERT_EQ(base + 1, module_refcnt());
	/*
	 * ...so unloading fails. The kernel reports a module in use as
	 * EWOULDBLOCK (rmmod(8) prints "Module bus1 is in use"); EBUSY is for
	 * modules that are still initialising or cannot be removed at all.
	 */
	ASSERT_EQ(-1, delete_module("bus1"));
	ASSERT_TRUE(errno == EWOULDBLOCK || errno == EBUSY);
	ASSERT_EQ(0, stat("/sys/module/bus1", &st));
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(base, module_refcnt());
	/* Closed: now it unloads, and the device goes away. */
	ASSERT_EQ(0, delete_module("bus1"));
	ASSERT_EQ(-1, stat("/sys/module/bus1", &st));
	ASSERT_EQ(-1, open("/dev/bus1", O_RDWR | O_CLOEXEC));
}

TEST_HARNESS_MAIN
