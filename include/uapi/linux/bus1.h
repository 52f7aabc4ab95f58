/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
#ifndef _UAPI_LINUX_BUS1_H
#define _UAPI_LINUX_BUS1_H

/*
 * bus1: capability-based IPC. User-space ABI, compatible with the bus1 RFC v1
 * (October 2016). See Documentation/bus1/ for the semantics of every command.
 */

#include <linux/ioctl.h>
#include <linux/types.h>

#define BUS1_FD_MAX			(256)

#define BUS1_IOCTL_MAGIC		0x96
#define BUS1_HANDLE_INVALID		((__u64)-1)
#define BUS1_OFFSET_INVALID		((__u64)-1)

enum {
	BUS1_HANDLE_FLAG_MANAGED			= 1ULL <<  0,
	BUS1_HANDLE_FLAG_REMOTE				= 1ULL <<  1,
};

enum {
	BUS1_PEER_FLAG_WANT_SECCTX			= 1ULL <<  0,
};

enum {
	BUS1_PEER_RESET_FLAG_FLUSH			= 1ULL <<  0,
	BUS1_PEER_RESET_FLAG_FLUSH_SEED			= 1ULL <<  1,
};

struct bus1_cmd_peer_reset {
	__u64 flags;
	__u64 peer_flags;
	__u32 max_slices;
	__u32 max_handles;
	__u32 max_inflight_bytes;
	__u32 max_inflight_fds;
} __attribute__((__aligned__(8)));

struct bus1_cmd_handle_transfer {
	__u64 flags;
	__u64 src_handle;
	__u64 dst_fd;
	__u64 dst_handle;
} __attribute__((__aligned__(8)));

/*
 * Extension: HANDLE_RELEASE_N drops n_refs user references of one handle at
 * once, all or none: what n_refs HANDLE_RELEASE calls would drop. flags must
 * be 0; n_refs 0 or more than the handle has fails with EINVAL.
 */
struct bus1_cmd_handle_release_n {
	__u64 flags;
	__u64 handle;
	__u64 n_refs;
} __attribute__((__aligned__(8)));

enum {
	BUS1_NODES_DESTROY_FLAG_RELEASE_HANDLES		= 1ULL <<  0,
};

struct bus1_cmd_nodes_destroy {
	__u64 flags;
	__u64 ptr_nodes;
	__u64 n_nodes;
} __attribute__((__aligned__(8)));

enum {
	BUS1_SEND_FLAG_CONTINUE				= 1ULL <<  0,
	BUS1_SEND_FLAG_SEED				= 1ULL <<  1,
};

struct bus1_cmd_send {
	__u64 flags;
	__u64 ptr_destinations;
	__u64 ptr_errors;
	__u64 n_destinations;
	__u64 ptr_vecs;
	__u64 n_vecs;
	__u64 ptr_handles;
	__u64 n_handles;
	__u64 ptr_fds;
	__u64 n_fds;
} __attribute__((__aligned__(8)));

enum {
	BUS1_RECV_FLAG_PEEK				= 1ULL <<  0,
	BUS1_RECV_FLAG_SEED				= 1ULL <<  1,
	BUS1_RECV_FLAG_INSTALL_FDS			= 1ULL <<  2,
	/*
	 * Extension: block (interruptibly) until a message is queued. On input,
	 * msg.offset is the timeout in nanoseconds (0: none). EINTR on a signal
	 * (never restarted), ETIMEDOUT when the timeout ran out.
	 */
	BUS1_RECV_FLAG_WAIT				= 1ULL <<  3,
};

enum {
	BUS1_MSG_NONE,
	BUS1_MSG_DATA,
	BUS1_MSG_NODE_DESTROY,
	BUS1_MSG_NODE_RELEASE,
};

enum {
	BUS1_MSG_FLAG_HAS_SECCTX			= 1ULL <<  0,
	BUS1_MSG_FLAG_CONTINUE				= 1ULL <<  1,
};

struct bus1_cmd_recv {
	__u64 flags;
	__u64 max_offset;
	struct {
		__u64 type;
		__u64 flags;
		__u64 destination;
		__u32 uid;
		__u32 gid;
		__u32 pid;
		__u32 tid;
		__u64 offset;
		__u64 n_bytes;
		__u64 n_handles;
		__u64 n_fds;
		__u64 n_secctx;
	} __attribute__((__aligned__(8))) msg;
} __attribute__((__aligned__(8)));

/*
 * The 2017 revision of the bus1 ABI (upstream HEAD) shrank RECV to 72 bytes:
 * no metadata, no PEEK, and renumbered RECV and message flags. bus1 serves
 * it too, told apart by the ioctl number (the size is part of it), so
 * clients of either published ABI work unchanged.
 */
enum {
	BUS1_RECV_2017_FLAG_SEED			= 1ULL <<  0,
	BUS1_RECV_2017_FLAG_INSTALL_FDS			= 1ULL <<  1,
};

enum {
	BUS1_MSG_2017_FLAG_CONTINUE			= 1ULL <<  0,
};

struct bus1_cmd_recv_2017 {
	__u64 flags;
	__u64 max_offset;
	struct {
		__u64 type;
		__u64 flags;
		__u64 destination;
		__u64 offset;
		__u64 n_bytes;
		__u64 n_handles;
		__u64 n_fds;
	} __attribute__((__aligned__(8))) msg;
} __attribute__((__aligned__(8)));

/*
 * Extension: TRANSACT runs, in one call and in this order, a SLICE_RELEASE of
 * release_offset, a SEND as described by send, and a RECV as described by
 * recv (typically with BUS1_RECV_FLAG_WAIT), each only if its flag is set.
 * Every stage is the standalone command, with its ordering and accounting.
 * Unknown flags in any part fail with EINVAL before any stage runs; if a
 * stage fails, the call returns its error and done tells which stages
 * completed before it.
 */
enum {
	BUS1_TRANSACT_FLAG_RELEASE			= 1ULL <<  0,
	BUS1_TRANSACT_FLAG_SEND				= 1ULL <<  1,
	BUS1_TRANSACT_FLAG_RECV				= 1ULL <<  2,
};

struct bus1_cmd_transact {
	__u64 flags;
	__u64 release_offset;
	__u64 done;
	__u64 reserved;
	struct bus1_cmd_send send;
	struct bus1_cmd_recv recv;
} __attribute__((__aligned__(8)));

enum {
	BUS1_CMD_PEER_DISCONNECT	= _IOWR(BUS1_IOCTL_MAGIC, 0x00, __u64),
	BUS1_CMD_PEER_QUERY		= _IOWR(BUS1_IOCTL_MAGIC, 0x01, struct bus1_cmd_peer_reset),
	BUS1_CMD_PEER_RESET		= _IOWR(BUS1_IOCTL_MAGIC, 0x02, struct bus1_cmd_peer_reset),
	BUS1_CMD_HANDLE_RELEASE		= _IOWR(BUS1_IOCTL_MAGIC, 0x10, __u64),
	BUS1_CMD_HANDLE_TRANSFER	= _IOWR(BUS1_IOCTL_MAGIC, 0x11, struct bus1_cmd_handle_transfer),
	BUS1_CMD_HANDLE_RELEASE_N	= _IOWR(BUS1_IOCTL_MAGIC, 0x12, struct bus1_cmd_handle_release_n),
	BUS1_CMD_NODES_DESTROY		= _IOWR(BUS1_IOCTL_MAGIC, 0x20, struct bus1_cmd_nodes_destroy),
	BUS1_CMD_SLICE_RELEASE		= _IOWR(BUS1_IOCTL_MAGIC, 0x30, __u64),
	BUS1_CMD_SEND			= _IOWR(BUS1_IOCTL_MAGIC, 0x40, struct bus1_cmd_send),
	BUS1_CMD_RECV			= _IOWR(BUS1_IOCTL_MAGIC, 0x50, struct bus1_cmd_recv),
	BUS1_CMD_RECV_2017		= _IOWR(BUS1_IOCTL_MAGIC, 0x50, struct bus1_cmd_recv_2017),
	BUS1_CMD_TRANSACT		= _IOWR(BUS1_IOCTL_MAGIC, 0x60, struct bus1_cmd_transact),
};

/*
 * The ABI is 32/64-bit invariant and fixed: these sizes are checked at
 * compile time here and, independently, in the module's Rust definitions.
 */
#define __BUS1_ASSERT_SIZE(_t, _s) \
	typedef char __bus1_size_check_##_t[(sizeof(struct _t) == (_s)) ? 1 : -1]
__BUS1_ASSERT_SIZE(bus1_cmd_peer_reset, 32);
__BUS1_ASSERT_SIZE(bus1_cmd_handle_transfer, 32);
__BUS1_ASSERT_SIZE(bus1_cmd_handle_release_n, 24);
__BUS1_ASSERT_SIZE(bus1_cmd_nodes_destroy, 24);
__BUS1_ASSERT_SIZE(bus1_cmd_send, 80);
__BUS1_ASSERT_SIZE(bus1_cmd_recv, 96);
__BUS1_ASSERT_SIZE(bus1_cmd_recv_2017, 72);
__BUS1_ASSERT_SIZE(bus1_cmd_transact, 208);
#undef __BUS1_ASSERT_SIZE

#endif /* _UAPI_LINUX_BUS1_H */
