// SPDX-License-Identifier: GPL-2.0

//! The user-space ABI, mirroring `include/uapi/linux/bus1.h` (bus1 RFC v1).
//!
//! The numbers are not taken on trust: every struct size, field offset and ioctl number below is
//! checked at compile time against the values of the ABI contract, and the C header carries the
//! same checks, so the two definitions cannot drift apart silently.

#![deny(unsafe_code)]
#![allow(
    dead_code,
    reason = "the ABI is defined in full; commands use it as they land"
)]

use crate::ext::transmute::user_struct;
use core::mem::{
    offset_of,
    size_of, //
};
use kernel::ioctl::_IOWR;

/// The ioctl type byte of every bus1 command.
pub(crate) const BUS1_IOCTL_MAGIC: u32 = 0x96;
/// Maximum number of file descriptors carried by one message.
pub(crate) const BUS1_FD_MAX: u64 = 256;
/// Handle ID that never names a handle.
pub(crate) const BUS1_HANDLE_INVALID: u64 = u64::MAX;
/// Pool offset that never names a slice.
pub(crate) const BUS1_OFFSET_INVALID: u64 = u64::MAX;

/// Handle ID flag: the ID was assigned by the kernel.
pub(crate) const BUS1_HANDLE_FLAG_MANAGED: u64 = 1 << 0;
/// Handle ID flag: the handle does not own its node.
pub(crate) const BUS1_HANDLE_FLAG_REMOTE: u64 = 1 << 1;

/// Peer flag: the peer wants the sender's security context with each message.
pub(crate) const BUS1_PEER_FLAG_WANT_SECCTX: u64 = 1 << 0;

/// `PEER_RESET`: destroy all nodes, drop all handles, flush queue and pool.
pub(crate) const BUS1_PEER_RESET_FLAG_FLUSH: u64 = 1 << 0;
/// `PEER_RESET`: drop the seed message.
pub(crate) const BUS1_PEER_RESET_FLAG_FLUSH_SEED: u64 = 1 << 1;

/// `NODES_DESTROY`: also drop the owner handle of every destroyed node.
pub(crate) const BUS1_NODES_DESTROY_FLAG_RELEASE_HANDLES: u64 = 1 << 0;

/// `SEND`: a failing destination does not fail the whole send.
pub(crate) const BUS1_SEND_FLAG_CONTINUE: u64 = 1 << 0;
/// `SEND`: set the seed message of the sending peer.
pub(crate) const BUS1_SEND_FLAG_SEED: u64 = 1 << 1;

/// `RECV`: leave the message queued.
pub(crate) const BUS1_RECV_FLAG_PEEK: u64 = 1 << 0;
/// `RECV`: return the seed message instead of the queue front.
pub(crate) const BUS1_RECV_FLAG_SEED: u64 = 1 << 1;
/// `RECV`: install carried files as file descriptors.
pub(crate) const BUS1_RECV_FLAG_INSTALL_FDS: u64 = 1 << 2;
/// `RECV`: wait (interruptibly) until a message is queued; the input value of `msg.offset` is
/// the timeout in nanoseconds (`0`: none).
pub(crate) const BUS1_RECV_FLAG_WAIT: u64 = 1 << 3;

/// `TRANSACT`: release the slice at `release_offset` first.
pub(crate) const BUS1_TRANSACT_FLAG_RELEASE: u64 = 1 << 0;
/// `TRANSACT`: then send the message described by `send`.
pub(crate) const BUS1_TRANSACT_FLAG_SEND: u64 = 1 << 1;
/// `TRANSACT`: then receive as described by `recv`.
pub(crate) const BUS1_TRANSACT_FLAG_RECV: u64 = 1 << 2;

/// Message type: no message (never returned).
pub(crate) const BUS1_MSG_NONE: u64 = 0;
/// `RECV_2017`: return the seed message instead of the queue front.
pub(crate) const BUS1_RECV_2017_FLAG_SEED: u64 = 1 << 0;
/// `RECV_2017`: install carried files as file descriptors.
pub(crate) const BUS1_RECV_2017_FLAG_INSTALL_FDS: u64 = 1 << 1;
/// `RECV_2017` message flag: the next queued message belongs to the same transaction.
pub(crate) const BUS1_MSG_2017_FLAG_CONTINUE: u64 = 1 << 0;

/// Message type: a data message.
pub(crate) const BUS1_MSG_DATA: u64 = 1;
/// Message type: a node was destroyed.
pub(crate) const BUS1_MSG_NODE_DESTROY: u64 = 2;
/// Message type: the last strong reference to an owned node was released.
pub(crate) const BUS1_MSG_NODE_RELEASE: u64 = 3;

/// Message flag: the slice carries a security context.
pub(crate) const BUS1_MSG_FLAG_HAS_SECCTX: u64 = 1 << 0;
/// Message flag: the next queued message belongs to the same transaction.
pub(crate) const BUS1_MSG_FLAG_CONTINUE: u64 = 1 << 1;

user_struct! {
    /// Argument of `PEER_QUERY` and `PEER_RESET`.
    pub(crate) struct PeerReset {
        /// Command flags.
        pub(crate) flags: u64,
        /// Peer flags.
        pub(crate) peer_flags: u64,
        /// Maximum number of pool slices.
        pub(crate) max_slices: u32,
        /// Maximum number of handle references.
        pub(crate) max_handles: u32,
        /// Maximum number of in-flight bytes.
        pub(crate) max_inflight_bytes: u32,
        /// Maximum number of in-flight file descriptors.
        pub(crate) max_inflight_fds: u32,
    }

    /// Argument of `HANDLE_TRANSFER`.
    pub(crate) struct HandleTransfer {
        /// Command flags (must be zero).
        pub(crate) flags: u64,
        /// Handle ID in the calling peer.
        pub(crate) src_handle: u64,
        /// File descriptor of the destination peer, or `u64::MAX` for the caller.
        pub(crate) dst_fd: u64,
        /// Handle ID in the destination peer (output).
        pub(crate) dst_handle: u64,
    }

    /// Argument of `HANDLE_RELEASE_N` (extension).
    pub(crate) struct HandleReleaseN {
        /// Command flags (must be zero).
        pub(crate) flags: u64,
        /// Handle ID in the calling peer.
        pub(crate) handle: u64,
        /// Number of user references to drop (at least one, at most as many as it has).
        pub(crate) n_refs: u64,
    }

    /// Argument of `NODES_DESTROY`.
    pub(crate) struct NodesDestroy {
        /// Command flags.
        pub(crate) flags: u64,
        /// User pointer to an array of node IDs.
        pub(crate) ptr_nodes: u64,
        /// Number of node IDs.
        pub(crate) n_nodes: u64,
    }

    /// Argument of `SEND`.
    pub(crate) struct Send {
        /// Command flags.
        pub(crate) flags: u64,
        /// User pointer to an array of destination handle IDs.
        pub(crate) ptr_destinations: u64,
        /// User pointer to an array of per-destination errors (output).
        pub(crate) ptr_errors: u64,
        /// Number of destinations.
        pub(crate) n_destinations: u64,
        /// User pointer to an array of `struct iovec`.
        pub(crate) ptr_vecs: u64,
        /// Number of iovecs.
        pub(crate) n_vecs: u64,
        /// User pointer to an array of handle IDs to transfer.
        pub(crate) ptr_handles: u64,
        /// Number of handles.
        pub(crate) n_handles: u64,
        /// User pointer to an array of `int` file descriptors.
        pub(crate) ptr_fds: u64,
        /// Number of file descriptors.
        pub(crate) n_fds: u64,
    }

    /// The message description returned by `RECV`.
    pub(crate) struct RecvMsg {
        /// Message type (`BUS1_MSG_*`).
        pub(crate) type_: u64,
        /// Message flags (`BUS1_MSG_FLAG_*`).
        pub(crate) flags: u64,
        /// The receiver's handle or node ID the message is about.
        pub(crate) destination: u64,
        /// Sender's user ID.
        pub(crate) uid: u32,
        /// Sender's group ID.
        pub(crate) gid: u32,
        /// Sender's process ID.
        pub(crate) pid: u32,
        /// Sender's thread ID.
        pub(crate) tid: u32,
        /// Pool offset of the slice.
        pub(crate) offset: u64,
        /// Payload size.
        pub(crate) n_bytes: u64,
        /// Number of handles.
        pub(crate) n_handles: u64,
        /// Number of file descriptors.
        pub(crate) n_fds: u64,
        /// Size of the security context.
        pub(crate) n_secctx: u64,
    }

    /// Argument of `RECV` (`struct bus1_cmd_recv`): its input, then the message description.
    pub(crate) struct Recv {
        /// What `RECV` reads: `flags` and `max_offset`.
        pub(crate) input: RecvInput,
        /// The received message (output; with `WAIT`, `offset` is the timeout on input, read on
        /// its own).
        pub(crate) msg: RecvMsg,
    }

    /// The input of `RECV`, the fields of `struct bus1_cmd_recv` before `msg`.
    pub(crate) struct RecvInput {
        /// Command flags.
        pub(crate) flags: u64,
        /// End of the caller's pool mapping.
        pub(crate) max_offset: u64,
    }

    /// The message description returned by the 2017 `RECV`.
    pub(crate) struct RecvMsg2017 {
        /// Message type (`BUS1_MSG_*`).
        pub(crate) type_: u64,
        /// Message flags (`BUS1_MSG_2017_FLAG_*`).
        pub(crate) flags: u64,
        /// The receiver's handle or node ID the message is about.
        pub(crate) destination: u64,
        /// Pool offset of the slice.
        pub(crate) offset: u64,
        /// Payload size.
        pub(crate) n_bytes: u64,
        /// Number of handles.
        pub(crate) n_handles: u64,
        /// Number of file descriptors.
        pub(crate) n_fds: u64,
    }

    /// Argument of the 2017 `RECV` (72 bytes, no metadata, renumbered flags).
    pub(crate) struct Recv2017 {
        /// Command flags (`BUS1_RECV_2017_FLAG_*`).
        pub(crate) flags: u64,
        /// End of the caller's pool mapping.
        pub(crate) max_offset: u64,
        /// The received message (output).
        pub(crate) msg: RecvMsg2017,
    }

    /// Argument of `TRANSACT` (`struct bus1_cmd_transact`): a `SLICE_RELEASE`, a `SEND` and a
    /// `RECV` in one call; its input, then the receive stage's message description.
    pub(crate) struct Transact {
        /// What `TRANSACT` reads (and `done`, which it writes).
        pub(crate) input: TransactInput,
        /// The receive stage's message (output, as `RECV`'s `msg`).
        pub(crate) msg: RecvMsg,
    }

    /// The fields of `struct bus1_cmd_transact` before `recv.msg`.
    pub(crate) struct TransactInput {
        /// Stages to run (`BUS1_TRANSACT_FLAG_*`), in the order release, send, receive.
        pub(crate) flags: u64,
        /// Pool offset of the slice the release stage gives back.
        pub(crate) release_offset: u64,
        /// Stages that completed (output, written back also on failure).
        pub(crate) done: u64,
        /// Must be zero.
        pub(crate) reserved: u64,
        /// The send stage, as the argument of `SEND`.
        pub(crate) send: Send,
        /// The receive stage's input.
        pub(crate) recv: RecvInput,
    }

    /// A `struct iovec` as passed by 64-bit user space.
    pub(crate) struct IoVec {
        /// Base address.
        pub(crate) base: u64,
        /// Length in bytes.
        pub(crate) len: u64,
    }
}

/// `PEER_DISCONNECT`.
pub(crate) const BUS1_CMD_PEER_DISCONNECT: u32 = _IOWR::<u64>(BUS1_IOCTL_MAGIC, 0x00);
/// `PEER_QUERY`.
pub(crate) const BUS1_CMD_PEER_QUERY: u32 = _IOWR::<PeerReset>(BUS1_IOCTL_MAGIC, 0x01);
/// `PEER_RESET`.
pub(crate) const BUS1_CMD_PEER_RESET: u32 = _IOWR::<PeerReset>(BUS1_IOCTL_MAGIC, 0x02);
/// `HANDLE_RELEASE`.
pub(crate) const BUS1_CMD_HANDLE_RELEASE: u32 = _IOWR::<u64>(BUS1_IOCTL_MAGIC, 0x10);
/// `HANDLE_TRANSFER`.
pub(crate) const BUS1_CMD_HANDLE_TRANSFER: u32 = _IOWR::<HandleTransfer>(BUS1_IOCTL_MAGIC, 0x11);
/// `HANDLE_RELEASE_N` (extension): drops several user references of one handle.
pub(crate) const BUS1_CMD_HANDLE_RELEASE_N: u32 = _IOWR::<HandleReleaseN>(BUS1_IOCTL_MAGIC, 0x12);
/// `NODES_DESTROY`.
pub(crate) const BUS1_CMD_NODES_DESTROY: u32 = _IOWR::<NodesDestroy>(BUS1_IOCTL_MAGIC, 0x20);
/// `SLICE_RELEASE`.
pub(crate) const BUS1_CMD_SLICE_RELEASE: u32 = _IOWR::<u64>(BUS1_IOCTL_MAGIC, 0x30);
/// `SEND`.
pub(crate) const BUS1_CMD_SEND: u32 = _IOWR::<Send>(BUS1_IOCTL_MAGIC, 0x40);
/// `RECV`.
pub(crate) const BUS1_CMD_RECV: u32 = _IOWR::<Recv>(BUS1_IOCTL_MAGIC, 0x50);
/// `RECV` with the 2017 layout; the size in the number tells the two apart.
pub(crate) const BUS1_CMD_RECV_2017: u32 = _IOWR::<Recv2017>(BUS1_IOCTL_MAGIC, 0x50);
/// `TRANSACT`.
pub(crate) const BUS1_CMD_TRANSACT: u32 = _IOWR::<Transact>(BUS1_IOCTL_MAGIC, 0x60);

// The contract's table of sizes, offsets and ioctl numbers (x86_64 encoding).
const _: () = {
    assert!(size_of::<PeerReset>() == 32);
    assert!(offset_of!(PeerReset, max_slices) == 16);
    assert!(offset_of!(PeerReset, max_inflight_fds) == 28);
    assert!(size_of::<HandleTransfer>() == 32);
    assert!(offset_of!(HandleTransfer, dst_handle) == 24);
    assert!(size_of::<HandleReleaseN>() == 24);
    assert!(offset_of!(HandleReleaseN, n_refs) == 16);
    assert!(size_of::<NodesDestroy>() == 24);
    assert!(offset_of!(NodesDestroy, n_nodes) == 16);
    assert!(size_of::<Send>() == 80);
    assert!(offset_of!(Send, ptr_errors) == 16);
    assert!(offset_of!(Send, n_fds) == 72);
    assert!(size_of::<Recv>() == 96);
    assert!(offset_of!(Recv, msg) == 16);
    assert!(offset_of!(Recv, msg) + offset_of!(RecvMsg, uid) == 40);
    assert!(offset_of!(Recv, msg) + offset_of!(RecvMsg, tid) == 52);
    assert!(offset_of!(Recv, msg) + offset_of!(RecvMsg, offset) == 56);
    assert!(offset_of!(Recv, msg) + offset_of!(RecvMsg, n_secctx) == 88);
    assert!(size_of::<IoVec>() == 16);
    assert!(BUS1_CMD_PEER_DISCONNECT == 0xC0089600);
    assert!(BUS1_CMD_PEER_QUERY == 0xC0209601);
    assert!(BUS1_CMD_PEER_RESET == 0xC0209602);
    assert!(BUS1_CMD_HANDLE_RELEASE == 0xC0089610);
    assert!(BUS1_CMD_HANDLE_TRANSFER == 0xC0209611);
    assert!(BUS1_CMD_HANDLE_RELEASE_N == 0xC0189612);
    assert!(BUS1_CMD_NODES_DESTROY == 0xC0189620);
    assert!(BUS1_CMD_SLICE_RELEASE == 0xC0089630);
    assert!(BUS1_CMD_SEND == 0xC0509640);
    assert!(BUS1_CMD_RECV == 0xC0609650);
    assert!(size_of::<Recv2017>() == 72);
    assert!(offset_of!(Recv2017, msg) + offset_of!(RecvMsg2017, offset) == 40);
    assert!(offset_of!(Recv2017, msg) + offset_of!(RecvMsg2017, n_fds) == 64);
    assert!(BUS1_CMD_RECV_2017 == 0xC0489650);
    assert!(size_of::<Transact>() == 208);
    assert!(offset_of!(Transact, input.done) == 16);
    assert!(offset_of!(Transact, input.send) == 32);
    assert!(offset_of!(Transact, input.recv) == 112);
    assert!(offset_of!(Transact, msg) == 112 + 16);
    assert!(BUS1_CMD_TRANSACT == 0xC0D09660);
};
