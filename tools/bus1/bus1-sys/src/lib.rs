// SPDX-License-Identifier: MIT OR Apache-2.0
//! Raw user-space ABI of bus1, as declared by `include/uapi/linux/bus1.h`.
//!
//! This crate holds nothing but data: the `#[repr(C)]` command structures,
//! the ioctl request numbers, flags and constants, named exactly as in the C
//! header. It is checked against that header by `tests/layout.rs`, which
//! compares every size, offset, constant and ioctl number with the values a C
//! compiler computes from the header itself (see `build.rs`).
//!
//! Use the [`bus1`](https://docs.rs/bus1) crate for a safe interface. This crate
//! is for code that wants to issue the ioctls itself:
//!
//! ```no_run
//! use bus1_sys::*;
//! let mut q = bus1_cmd_peer_reset::default();
//! // ioctl(fd, BUS1_CMD_PEER_QUERY, &mut q) fills in the peer's limits.
//! assert_eq!(std::mem::size_of_val(&q), 32);
//! assert_eq!(BUS1_CMD_PEER_QUERY, 0xC020_9601);
//! ```
//!
//! Two `RECV` layouts exist: the RFC v1 (2016) one, [`bus1_cmd_recv`] with
//! [`BUS1_CMD_RECV`], and the 2017 one, [`bus1_cmd_recv_2017`] with
//! [`BUS1_CMD_RECV_2017`]; their flag bits differ (`BUS1_RECV_*` versus
//! `BUS1_RECV_2017_*`).
#![no_std]
#![allow(non_camel_case_types)]

/// Maximum number of file descriptors in one message.
pub const BUS1_FD_MAX: u64 = 256;
/// The ioctl "type" byte of every bus1 command.
pub const BUS1_IOCTL_MAGIC: u32 = 0x96;
/// A handle ID that never names a handle.
pub const BUS1_HANDLE_INVALID: u64 = u64::MAX;
/// The `offset` of a message that has no slice in the pool.
pub const BUS1_OFFSET_INVALID: u64 = u64::MAX;

/// Handle ID bit: the ID was assigned by the kernel.
pub const BUS1_HANDLE_FLAG_MANAGED: u64 = 1 << 0;
/// Handle ID bit: the handle is not its node's owner handle.
pub const BUS1_HANDLE_FLAG_REMOTE: u64 = 1 << 1;

/// Peer flag: deliver the sender's security context with each message.
pub const BUS1_PEER_FLAG_WANT_SECCTX: u64 = 1 << 0;

/// `PEER_RESET`: destroy all nodes, drop all handles, flush queue and pool.
pub const BUS1_PEER_RESET_FLAG_FLUSH: u64 = 1 << 0;
/// `PEER_RESET`: drop the seed message.
pub const BUS1_PEER_RESET_FLAG_FLUSH_SEED: u64 = 1 << 1;

/// `NODES_DESTROY`: also drop the owner's handle reference of each node.
pub const BUS1_NODES_DESTROY_FLAG_RELEASE_HANDLES: u64 = 1 << 0;

/// `SEND`: skip destinations that fail individually (see `ptr_errors`).
pub const BUS1_SEND_FLAG_CONTINUE: u64 = 1 << 0;
/// `SEND`: set the calling peer's seed message (no destinations).
pub const BUS1_SEND_FLAG_SEED: u64 = 1 << 1;

/// `RECV` (RFC v1): describe the front message but leave it queued.
pub const BUS1_RECV_FLAG_PEEK: u64 = 1 << 0;
/// `RECV` (RFC v1): return the seed message instead of the queue front.
pub const BUS1_RECV_FLAG_SEED: u64 = 1 << 1;
/// `RECV` (RFC v1): install the carried files as file descriptors.
pub const BUS1_RECV_FLAG_INSTALL_FDS: u64 = 1 << 2;
/// `RECV` (RFC v1, extension): block until a message is queued; on input,
/// `msg.offset` is the timeout in nanoseconds (0: none). `EINTR` on a signal
/// (never restarted), `ETIMEDOUT` when the timeout ran out.
pub const BUS1_RECV_FLAG_WAIT: u64 = 1 << 3;

/// `TRANSACT`: release the slice at `release_offset` first.
pub const BUS1_TRANSACT_FLAG_RELEASE: u64 = 1 << 0;
/// `TRANSACT`: then send as described by `send`.
pub const BUS1_TRANSACT_FLAG_SEND: u64 = 1 << 1;
/// `TRANSACT`: then receive as described by `recv`.
pub const BUS1_TRANSACT_FLAG_RECV: u64 = 1 << 2;

/// Message type: never returned.
pub const BUS1_MSG_NONE: u64 = 0;
/// Message type: a user message with payload, handles and files.
pub const BUS1_MSG_DATA: u64 = 1;
/// Message type: the node a handle points to was destroyed.
pub const BUS1_MSG_NODE_DESTROY: u64 = 2;
/// Message type: the last handle to an owned node (other than the owner's) is gone.
pub const BUS1_MSG_NODE_RELEASE: u64 = 3;

/// Message flag (RFC v1): the slice carries a security context.
pub const BUS1_MSG_FLAG_HAS_SECCTX: u64 = 1 << 0;
/// Message flag (RFC v1): the next message belongs to the same transaction.
pub const BUS1_MSG_FLAG_CONTINUE: u64 = 1 << 1;

/// `RECV` (2017 layout): return the seed message.
pub const BUS1_RECV_2017_FLAG_SEED: u64 = 1 << 0;
/// `RECV` (2017 layout): install the carried files as file descriptors.
pub const BUS1_RECV_2017_FLAG_INSTALL_FDS: u64 = 1 << 1;
/// Message flag (2017 layout): the next message belongs to the same transaction.
pub const BUS1_MSG_2017_FLAG_CONTINUE: u64 = 1 << 0;

/// Argument of `PEER_QUERY` and `PEER_RESET`.
#[repr(C, align(8))]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct bus1_cmd_peer_reset {
    pub flags: u64,
    pub peer_flags: u64,
    pub max_slices: u32,
    pub max_handles: u32,
    pub max_inflight_bytes: u32,
    pub max_inflight_fds: u32,
}

/// Argument of `HANDLE_TRANSFER`.
#[repr(C, align(8))]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct bus1_cmd_handle_transfer {
    pub flags: u64,
    pub src_handle: u64,
    pub dst_fd: u64,
    pub dst_handle: u64,
}

/// Argument of `HANDLE_RELEASE_N` (extension: several user references of one
/// handle at once).
#[repr(C, align(8))]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct bus1_cmd_handle_release_n {
    pub flags: u64,
    pub handle: u64,
    pub n_refs: u64,
}

/// Argument of `NODES_DESTROY`.
#[repr(C, align(8))]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct bus1_cmd_nodes_destroy {
    pub flags: u64,
    pub ptr_nodes: u64,
    pub n_nodes: u64,
}

/// Argument of `SEND`. All `ptr_*` fields are user addresses.
#[repr(C, align(8))]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct bus1_cmd_send {
    pub flags: u64,
    pub ptr_destinations: u64,
    pub ptr_errors: u64,
    pub n_destinations: u64,
    pub ptr_vecs: u64,
    pub n_vecs: u64,
    pub ptr_handles: u64,
    pub n_handles: u64,
    pub ptr_fds: u64,
    pub n_fds: u64,
}

/// The message description inside [`bus1_cmd_recv`] (RFC v1).
#[repr(C, align(8))]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct bus1_cmd_recv_msg {
    pub type_: u64,
    pub flags: u64,
    pub destination: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    pub tid: u32,
    pub offset: u64,
    pub n_bytes: u64,
    pub n_handles: u64,
    pub n_fds: u64,
    pub n_secctx: u64,
}

/// Argument of `RECV` (RFC v1, 96 bytes).
#[repr(C, align(8))]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct bus1_cmd_recv {
    pub flags: u64,
    pub max_offset: u64,
    pub msg: bus1_cmd_recv_msg,
}

/// The message description inside [`bus1_cmd_recv_2017`].
#[repr(C, align(8))]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct bus1_cmd_recv_2017_msg {
    pub type_: u64,
    pub flags: u64,
    pub destination: u64,
    pub offset: u64,
    pub n_bytes: u64,
    pub n_handles: u64,
    pub n_fds: u64,
}

/// Argument of `RECV_2017` (the 2017 revision, 72 bytes).
#[repr(C, align(8))]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct bus1_cmd_recv_2017 {
    pub flags: u64,
    pub max_offset: u64,
    pub msg: bus1_cmd_recv_2017_msg,
}

/// Argument of `TRANSACT` (extension, 208 bytes): a `SLICE_RELEASE`, a `SEND`
/// and an RFC v1 `RECV` in one call, each run only if its flag is set.
#[repr(C, align(8))]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct bus1_cmd_transact {
    pub flags: u64,
    pub release_offset: u64,
    /// Stages completed (output, also on failure).
    pub done: u64,
    /// Must be zero.
    pub reserved: u64,
    pub send: bus1_cmd_send,
    pub recv: bus1_cmd_recv,
}

/// The `_IOC` layout of the architectures with 3 direction bits and 13 size bits.
#[cfg(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "mips32r6",
    target_arch = "mips64r6",
    target_arch = "sparc",
    target_arch = "sparc64"
))]
mod ioc_layout {
    pub const DIR_SHIFT: u32 = 29;
    pub const READ_WRITE: u32 = 2 | 4;
}

/// The asm-generic `_IOC` layout: 2 direction bits and 14 size bits.
#[cfg(not(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "mips32r6",
    target_arch = "mips64r6",
    target_arch = "sparc",
    target_arch = "sparc64"
)))]
mod ioc_layout {
    pub const DIR_SHIFT: u32 = 30;
    pub const READ_WRITE: u32 = 1 | 2;
}

/// `_IOC(dir, type, nr, size)` of the architecture (asm-generic layout, or
/// the powerpc/mips/sparc one with 3 direction bits and 13 size bits).
pub const fn ioc(dir: u32, ty: u32, nr: u32, size: usize) -> u32 {
    (dir << ioc_layout::DIR_SHIFT) | ((size as u32) << 16) | (ty << 8) | nr
}

/// `_IOC_READ | _IOC_WRITE` of the architecture.
pub const IOC_READ_WRITE: u32 = ioc_layout::READ_WRITE;

/// `_IOWR(BUS1_IOCTL_MAGIC, nr, T)`.
pub const fn iowr<T>(nr: u32) -> u32 {
    ioc(IOC_READ_WRITE, BUS1_IOCTL_MAGIC, nr, core::mem::size_of::<T>())
}

pub const BUS1_CMD_PEER_DISCONNECT: u32 = iowr::<u64>(0x00);
pub const BUS1_CMD_PEER_QUERY: u32 = iowr::<bus1_cmd_peer_reset>(0x01);
pub const BUS1_CMD_PEER_RESET: u32 = iowr::<bus1_cmd_peer_reset>(0x02);
pub const BUS1_CMD_HANDLE_RELEASE: u32 = iowr::<u64>(0x10);
pub const BUS1_CMD_HANDLE_TRANSFER: u32 = iowr::<bus1_cmd_handle_transfer>(0x11);
pub const BUS1_CMD_HANDLE_RELEASE_N: u32 = iowr::<bus1_cmd_handle_release_n>(0x12);
pub const BUS1_CMD_NODES_DESTROY: u32 = iowr::<bus1_cmd_nodes_destroy>(0x20);
pub const BUS1_CMD_SLICE_RELEASE: u32 = iowr::<u64>(0x30);
pub const BUS1_CMD_SEND: u32 = iowr::<bus1_cmd_send>(0x40);
pub const BUS1_CMD_RECV: u32 = iowr::<bus1_cmd_recv>(0x50);
pub const BUS1_CMD_RECV_2017: u32 = iowr::<bus1_cmd_recv_2017>(0x50);
pub const BUS1_CMD_TRANSACT: u32 = iowr::<bus1_cmd_transact>(0x60);

// The header asserts these sizes too; the ABI is 32/64-bit invariant.
const _: () = assert!(core::mem::size_of::<bus1_cmd_peer_reset>() == 32);
const _: () = assert!(core::mem::size_of::<bus1_cmd_handle_transfer>() == 32);
const _: () = assert!(core::mem::size_of::<bus1_cmd_handle_release_n>() == 24);
const _: () = assert!(core::mem::size_of::<bus1_cmd_nodes_destroy>() == 24);
const _: () = assert!(core::mem::size_of::<bus1_cmd_send>() == 80);
const _: () = assert!(core::mem::size_of::<bus1_cmd_recv>() == 96);
const _: () = assert!(core::mem::size_of::<bus1_cmd_recv_2017>() == 72);
const _: () = assert!(core::mem::size_of::<bus1_cmd_transact>() == 208);

/// Rounds `n` up to a multiple of 8, as the pool layout does (`A8`).
pub const fn align8(n: u64) -> Option<u64> {
    match n.checked_add(7) {
        Some(v) => Some(v & !7),
        None => None,
    }
}
