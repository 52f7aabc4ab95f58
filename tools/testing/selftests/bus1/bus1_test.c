// SPDX-License-Identifier: GPL-2.0
/*
 * bus1 ABI tests: the device node, peers, and every ioctl's contract.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/bus1.h>

#include "kselftest_harness.h"
#include "bus1_util.h"

/* The header's ioctl numbers are the ones of the RFC v1 ABI on x86_64. */
TEST(uapi_ioctl_numbers)
{
	ASSERT_EQ(0xC0089600u, (unsigned int)BUS1_CMD_PEER_DISCONNECT);
	ASSERT_EQ(0xC0209601u, (unsigned int)BUS1_CMD_PEER_QUERY);
	ASSERT_EQ(0xC0209602u, (unsigned int)BUS1_CMD_PEER_RESET);
	ASSERT_EQ(0xC0089610u, (unsigned int)BUS1_CMD_HANDLE_RELEASE);
	ASSERT_EQ(0xC0209611u, (unsigned int)BUS1_CMD_HANDLE_TRANSFER);
	ASSERT_EQ(0xC0189620u, (unsigned int)BUS1_CMD_NODES_DESTROY);
	ASSERT_EQ(0xC0089630u, (unsigned int)BUS1_CMD_SLICE_RELEASE);
	ASSERT_EQ(0xC0509640u, (unsigned int)BUS1_CMD_SEND);
	ASSERT_EQ(0xC0609650u, (unsigned int)BUS1_CMD_RECV);
	ASSERT_EQ(32UL, sizeof(struct bus1_cmd_peer_reset));
	ASSERT_EQ(32UL, sizeof(struct bus1_cmd_handle_transfer));
	ASSERT_EQ(24UL, sizeof(struct bus1_cmd_nodes_destroy));
	ASSERT_EQ(80UL, sizeof(struct bus1_cmd_send));
	ASSERT_EQ(96UL, sizeof(struct bus1_cmd_recv));
}

/* /dev/bus1 is a world-accessible character device. */
TEST(device_node)
{
	struct stat st;

	ASSERT_EQ(0, stat("/dev/bus1", &st));
	ASSERT_TRUE(S_ISCHR(st.st_mode));
	ASSERT_EQ(0666u, st.st_mode & 0777);
}

/* Every open is a new peer; fdinfo shows distinct peer IDs. */
TEST(open_close_peers)
{
	char path[64], buf[512], *p;
	unsigned long long id[2];
	int fd[2], i;

	for (i = 0; i < 2; i++) {
		FILE *f;

		fd[i] = bus1_peer_new();
		ASSERT_LE(0, fd[i]);
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd[i]);
		f = fopen(path, "r");
		ASSERT_NE(NULL, f);
		memset(buf, 0, sizeof(buf));
		fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		p = strstr(buf, "bus1-peer:");
		ASSERT_NE(NULL, p);
		ASSERT_EQ(1, sscanf(p, "bus1-peer: %llx", &id[i]));
	}
	ASSERT_NE(id[0], id[1]);
	ASSERT_EQ(0, close(fd[0]));
	ASSERT_EQ(0, close(fd[1]));
}

/* Unknown ioctls are ENOTTY. */
TEST(unknown_ioctl)
{
	uint64_t arg = 0;
	int fd = bus1_peer_new();

	ASSERT_LE(0, fd);
	ASSERT_EQ(-1, ioctl(fd, _IOWR(BUS1_IOCTL_MAGIC, 0x7f, __u64), &arg));
	ASSERT_EQ(ENOTTY, errno);
	ASSERT_EQ(-1, ioctl(fd, _IO('x', 1)));
	ASSERT_EQ(ENOTTY, errno);
	close(fd);
}

/* A fresh peer is writable and has nothing to read. */
TEST(poll_fresh_peer)
{
	struct pollfd pfd;
	int fd = bus1_peer_new();

	ASSERT_LE(0, fd);
	pfd.fd = fd;
	pfd.events = POLLIN | POLLOUT;
	pfd.revents = 0;
	ASSERT_EQ(1, poll(&pfd, 1, 0));
	ASSERT_EQ(POLLOUT, pfd.revents & (POLLIN | POLLOUT | POLLHUP));
	close(fd);
}

TEST_HARNESS_MAIN
