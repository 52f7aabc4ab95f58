// SPDX-License-Identifier: GPL-2.0
//! The peer: an open `/dev/bus1` file and its read-only pool mapping.

use crate::message::{Credentials, Message, MessageInfo, MessageKind};
use crate::send::Send;
use crate::{HandleId, NodeId};
use bus1_sys as sys;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::{Mode, OFlags};
use rustix::ioctl::{ioctl, IntegerSetter, Opcode, Updater};
use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

/// The pool size of the module's default (`pool_size_mib=512`).
pub const DEFAULT_POOL_SIZE: usize = 512 << 20;

/// Runs a bus1 ioctl that reads and writes `*arg`.
///
/// # Safety
/// `OP` must be a bus1 command whose argument type is `T`.
pub(crate) unsafe fn ioctl_rw<const OP: Opcode, T>(fd: BorrowedFd<'_>, arg: &mut T) -> io::Result<()> {
    Ok(ioctl(fd, Updater::<OP, T>::new(arg))?)
}

const fn op(v: u32) -> Opcode {
    v as Opcode
}
pub(crate) const CMD_PEER_DISCONNECT: Opcode = op(sys::BUS1_CMD_PEER_DISCONNECT);
pub(crate) const CMD_PEER_QUERY: Opcode = op(sys::BUS1_CMD_PEER_QUERY);
pub(crate) const CMD_PEER_RESET: Opcode = op(sys::BUS1_CMD_PEER_RESET);
pub(crate) const CMD_HANDLE_RELEASE: Opcode = op(sys::BUS1_CMD_HANDLE_RELEASE);
pub(crate) const CMD_HANDLE_TRANSFER: Opcode = op(sys::BUS1_CMD_HANDLE_TRANSFER);
pub(crate) const CMD_NODES_DESTROY: Opcode = op(sys::BUS1_CMD_NODES_DESTROY);
pub(crate) const CMD_SLICE_RELEASE: Opcode = op(sys::BUS1_CMD_SLICE_RELEASE);
pub(crate) const CMD_SEND: Opcode = op(sys::BUS1_CMD_SEND);
pub(crate) const CMD_RECV: Opcode = op(sys::BUS1_CMD_RECV);
pub(crate) const CMD_RECV_2017: Opcode = op(sys::BUS1_CMD_RECV_2017);

/// Per-peer limits, as `PEER_QUERY` reports them and `PEER_RESET` sets them.
/// In [`Peer::set_limits`], `None` keeps a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub max_slices: Option<u32>,
    pub max_handles: Option<u32>,
    pub max_inflight_bytes: Option<u32>,
    pub max_inflight_fds: Option<u32>,
}

/// What `PEER_QUERY` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// Raw peer flags (`BUS1_PEER_FLAG_*`).
    pub peer_flags: u64,
    pub max_slices: u32,
    pub max_handles: u32,
    pub max_inflight_bytes: u32,
    pub max_inflight_fds: u32,
}

/// How to receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvOptions {
    /// Install carried files as fds (`O_CLOEXEC`); otherwise they are
    /// dropped and only counted. Default: true.
    pub install_fds: bool,
    /// Use the 2017 `RECV` layout (no credentials). Default: false.
    pub layout_2017: bool,
}

impl Default for RecvOptions {
    fn default() -> Self {
        RecvOptions { install_fds: true, layout_2017: false }
    }
}

/// Opens a peer with options. See [`Peer::builder`].
#[derive(Debug, Clone)]
pub struct PeerBuilder {
    path: PathBuf,
    map_len: Option<usize>,
}

impl PeerBuilder {
    /// The device node (default `/dev/bus1`).
    pub fn path(mut self, p: impl AsRef<Path>) -> Self {
        self.path = p.as_ref().to_owned();
        self
    }

    /// How much of the pool to map (default: the module's pool size, read
    /// from `/sys/module/bus1/parameters/pool_size_mib`, else 512 MiB).
    /// Messages whose slice ends beyond the mapping are not received
    /// (`RECV` fails with `ERANGE` and leaves them queued).
    pub fn map_len(mut self, len: usize) -> Self {
        self.map_len = Some(len);
        self
    }

    /// Opens the device and maps the pool.
    pub fn open(self) -> io::Result<Peer> {
        let fd = rustix::fs::open(&self.path, OFlags::RDWR | OFlags::CLOEXEC | OFlags::NONBLOCK, Mode::empty())?;
        Peer::from_fd_with_len(fd, self.map_len)
    }
}

/// A bus1 peer: one open file of `/dev/bus1`, with its receive pool mapped
/// read-only.
///
/// Commands take `&self`: the kernel serialises them per peer, so a peer may
/// be shared between threads. The fd is non-blocking; [`recv`](Peer::recv)
/// fails with [`io::ErrorKind::WouldBlock`] when nothing is queued, and
/// [`recv_timeout`](Peer::recv_timeout) polls. [`AsFd`] lets the peer take
/// part in poll/epoll loops (readable = a message is queued).
///
/// A ping between two peers of one process:
///
/// ```no_run
/// use bus1::{NodeId, Peer};
/// # fn main() -> std::io::Result<()> {
/// let a = Peer::open()?;
/// let b = Peer::open()?;
/// let node = NodeId::new(0x100).unwrap();      // a node of `b`
/// let to_b = b.transfer(node, &a)?.unwrap();   // `a` gets a handle to it
/// a.send().destination(to_b).payload(b"ping").submit()?;
/// let msg = b.recv()?;
/// assert_eq!(msg.payload(), b"ping");
/// assert_eq!(msg.destination_node(), Some(node));
/// # Ok(()) }
/// ```
pub struct Peer {
    fd: OwnedFd,
    map: NonNull<u8>,
    map_len: usize,
}

// SAFETY: the mapping is read-only shared memory that only the kernel writes
// (into slices not yet handed out); the fd is an ordinary file.
unsafe impl std::marker::Send for Peer {}
// SAFETY: as above; all commands are ioctls the kernel serialises.
unsafe impl Sync for Peer {}

fn module_pool_size() -> usize {
    std::fs::read_to_string("/sys/module/bus1/parameters/pool_size_mib")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|&m| m > 0)
        .map(|m| m << 20)
        .unwrap_or(DEFAULT_POOL_SIZE)
}

fn duration_ts(d: Duration) -> Timespec {
    Timespec { tv_sec: d.as_secs().min(i64::MAX as u64) as _, tv_nsec: d.subsec_nanos() as _ }
}

impl Peer {
    /// Opens a new peer on `/dev/bus1` and maps its pool.
    pub fn open() -> io::Result<Peer> {
        Self::builder().open()
    }

    /// Options for opening a peer.
    pub fn builder() -> PeerBuilder {
        PeerBuilder { path: PathBuf::from("/dev/bus1"), map_len: None }
    }

    /// Takes over an already open bus1 fd (say, inherited from a parent
    /// process) and maps its pool.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Peer> {
        Self::from_fd_with_len(fd, None)
    }

    fn from_fd_with_len(fd: OwnedFd, len: Option<usize>) -> io::Result<Peer> {
        let len = len.unwrap_or_else(module_pool_size).max(1);
        // SAFETY: a fresh shared read-only mapping, placed by the kernel.
        let p = unsafe { mmap(std::ptr::null_mut(), len, ProtFlags::READ, MapFlags::SHARED, &fd, 0)? };
        let map = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| io::Error::from_raw_os_error(rustix::io::Errno::NOMEM.raw_os_error()))?;
        Ok(Peer { fd, map, map_len: len })
    }

    /// The length of the pool mapping.
    pub fn pool_len(&self) -> usize {
        self.map_len
    }

    /// `len` bytes of the pool at `off`. Callers checked the range.
    pub(crate) fn pool_bytes(&self, off: usize, len: usize) -> &[u8] {
        assert!(off.checked_add(len).is_some_and(|e| e <= self.map_len));
        // SAFETY: inside our read-only mapping, which lives as long as self.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(off), len) }
    }

    /// Reports the peer's flags and limits (`PEER_QUERY`).
    pub fn query(&self) -> io::Result<PeerInfo> {
        let mut q = sys::bus1_cmd_peer_reset::default();
        // SAFETY: PEER_QUERY takes a bus1_cmd_peer_reset.
        unsafe { ioctl_rw::<CMD_PEER_QUERY, _>(self.fd.as_fd(), &mut q)? };
        Ok(PeerInfo {
            peer_flags: q.peer_flags,
            max_slices: q.max_slices,
            max_handles: q.max_handles,
            max_inflight_bytes: q.max_inflight_bytes,
            max_inflight_fds: q.max_inflight_fds,
        })
    }

    /// `PEER_RESET` with raw flags, peer flags (`None` keeps them) and limits.
    pub fn reset(&self, flags: u64, peer_flags: Option<u64>, limits: Limits) -> io::Result<()> {
        let keep = u32::MAX;
        let mut r = sys::bus1_cmd_peer_reset {
            flags,
            peer_flags: peer_flags.unwrap_or(u64::MAX),
            max_slices: limits.max_slices.unwrap_or(keep),
            max_handles: limits.max_handles.unwrap_or(keep),
            max_inflight_bytes: limits.max_inflight_bytes.unwrap_or(keep),
            max_inflight_fds: limits.max_inflight_fds.unwrap_or(keep),
        };
        // SAFETY: PEER_RESET takes a bus1_cmd_peer_reset.
        unsafe { ioctl_rw::<CMD_PEER_RESET, _>(self.fd.as_fd(), &mut r) }
    }

    /// Changes the per-peer limits.
    pub fn set_limits(&self, limits: Limits) -> io::Result<()> {
        self.reset(0, None, limits)
    }

    /// Destroys all owned nodes, drops all handles, empties the queue and
    /// releases every slice; with `seed`, drops the seed too.
    ///
    /// Messages borrowed from this peer must not be used afterwards for
    /// anything but dropping (their slices are gone; the memory reads as
    /// zeros or stale data, never out of bounds).
    pub fn flush(&self, seed: bool) -> io::Result<()> {
        let mut f = sys::BUS1_PEER_RESET_FLAG_FLUSH;
        if seed {
            f |= sys::BUS1_PEER_RESET_FLAG_FLUSH_SEED;
        }
        self.reset(f, None, Limits::default())
    }

    /// Disconnects the peer: like a flush, after which every command fails
    /// with `ESHUTDOWN` and poll reports `POLLHUP`.
    pub fn disconnect(&self) -> io::Result<()> {
        // SAFETY: PEER_DISCONNECT takes a null argument.
        unsafe { ioctl(self.fd.as_fd(), IntegerSetter::<CMD_PEER_DISCONNECT>::new_usize(0))? };
        Ok(())
    }

    /// Drops one user reference of a handle (`HANDLE_RELEASE`).
    pub fn release_handle(&self, h: impl Into<HandleId>) -> io::Result<()> {
        let mut id = h.into().as_raw();
        // SAFETY: HANDLE_RELEASE takes a u64.
        unsafe { ioctl_rw::<CMD_HANDLE_RELEASE, _>(self.fd.as_fd(), &mut id) }
    }

    /// Gives the peer behind `dst` a handle to the node `src` names
    /// (`HANDLE_TRANSFER`) and returns its ID there; `None` if the node is
    /// already destroyed. `dst` may be this peer itself (one more reference).
    pub fn transfer(&self, src: impl Into<HandleId>, dst: &impl AsFd) -> io::Result<Option<HandleId>> {
        let dst_fd = dst.as_fd().as_raw_fd();
        let dst_fd = if dst_fd == self.fd.as_raw_fd() { u64::MAX } else { dst_fd as u64 };
        let mut t = sys::bus1_cmd_handle_transfer {
            flags: 0,
            src_handle: src.into().as_raw(),
            dst_fd,
            dst_handle: sys::BUS1_HANDLE_INVALID,
        };
        // SAFETY: HANDLE_TRANSFER takes a bus1_cmd_handle_transfer.
        unsafe { ioctl_rw::<CMD_HANDLE_TRANSFER, _>(self.fd.as_fd(), &mut t)? };
        Ok((t.dst_handle != sys::BUS1_HANDLE_INVALID).then_some(HandleId::from_raw(t.dst_handle)))
    }

    /// Destroys nodes in one transaction (`NODES_DESTROY`): every holder of
    /// a handle, and the owner, get a `NodeDestroy` notification. With
    /// `release_handles` the owner's references are dropped as well.
    pub fn destroy_nodes(&self, nodes: &[NodeId], release_handles: bool) -> io::Result<()> {
        let mut d = sys::bus1_cmd_nodes_destroy {
            flags: if release_handles { sys::BUS1_NODES_DESTROY_FLAG_RELEASE_HANDLES } else { 0 },
            ptr_nodes: nodes.as_ptr() as u64,
            n_nodes: nodes.len() as u64,
        };
        // SAFETY: NODES_DESTROY takes a bus1_cmd_nodes_destroy; NodeId is a
        // transparent u64, and the kernel only reads the array.
        unsafe { ioctl_rw::<CMD_NODES_DESTROY, _>(self.fd.as_fd(), &mut d) }
    }

    /// Releases a slice by pool offset (done by dropping a [`Message`]).
    pub(crate) fn release_slice(&self, off: u64) -> io::Result<()> {
        let mut o = off;
        // SAFETY: SLICE_RELEASE takes a u64.
        unsafe { ioctl_rw::<CMD_SLICE_RELEASE, _>(self.fd.as_fd(), &mut o) }
    }

    /// Starts a message. See [`Send`].
    pub fn send<'a>(&self) -> Send<'_, 'a> {
        Send::new(self)
    }

    /// Sends `payload` to one destination, without allocating.
    pub fn send_to(&self, dst: impl Into<HandleId>, payload: &[u8]) -> io::Result<()> {
        let d = dst.into().as_raw();
        let v = io::IoSlice::new(payload);
        let mut s = sys::bus1_cmd_send {
            ptr_destinations: &d as *const u64 as u64,
            n_destinations: 1,
            ptr_vecs: &v as *const io::IoSlice<'_> as u64,
            n_vecs: 1,
            ..Default::default()
        };
        // SAFETY: SEND takes a bus1_cmd_send; the arrays outlive the call.
        unsafe { ioctl_rw::<CMD_SEND, _>(self.fd.as_fd(), &mut s) }
    }

    fn recv_raw(&self, seed: bool, peek: bool, opts: RecvOptions) -> io::Result<(MessageInfo, bool)> {
        let install = opts.install_fds && !peek;
        let info = if opts.layout_2017 {
            if peek {
                return Err(io::Error::from_raw_os_error(rustix::io::Errno::INVAL.raw_os_error()));
            }
            let mut r = sys::bus1_cmd_recv_2017 {
                flags: if seed { sys::BUS1_RECV_2017_FLAG_SEED } else { 0 }
                    | if install { sys::BUS1_RECV_2017_FLAG_INSTALL_FDS } else { 0 },
                max_offset: self.map_len as u64,
                ..Default::default()
            };
            // SAFETY: RECV_2017 takes a bus1_cmd_recv_2017.
            unsafe { ioctl_rw::<CMD_RECV_2017, _>(self.fd.as_fd(), &mut r)? };
            let m = r.msg;
            MessageInfo {
                kind: MessageKind::from_raw(m.type_),
                flags: m.flags,
                continues: m.flags & sys::BUS1_MSG_2017_FLAG_CONTINUE != 0,
                destination: HandleId::from_raw(m.destination),
                credentials: None,
                offset: (m.offset != sys::BUS1_OFFSET_INVALID).then_some(m.offset),
                n_bytes: m.n_bytes,
                n_handles: m.n_handles,
                n_fds: m.n_fds,
                n_secctx: 0,
            }
        } else {
            let mut r = sys::bus1_cmd_recv {
                flags: if seed { sys::BUS1_RECV_FLAG_SEED } else { 0 }
                    | if peek { sys::BUS1_RECV_FLAG_PEEK } else { 0 }
                    | if install { sys::BUS1_RECV_FLAG_INSTALL_FDS } else { 0 },
                max_offset: self.map_len as u64,
                ..Default::default()
            };
            // SAFETY: RECV takes a bus1_cmd_recv.
            unsafe { ioctl_rw::<CMD_RECV, _>(self.fd.as_fd(), &mut r)? };
            let m = r.msg;
            let kind = MessageKind::from_raw(m.type_);
            MessageInfo {
                kind,
                flags: m.flags,
                continues: m.flags & sys::BUS1_MSG_FLAG_CONTINUE != 0,
                destination: HandleId::from_raw(m.destination),
                credentials: (kind == MessageKind::Data).then_some(Credentials {
                    uid: m.uid,
                    gid: m.gid,
                    pid: m.pid,
                    tid: m.tid,
                }),
                offset: (m.offset != sys::BUS1_OFFSET_INVALID).then_some(m.offset),
                n_bytes: m.n_bytes,
                n_handles: m.n_handles,
                n_fds: m.n_fds,
                n_secctx: m.n_secctx,
            }
        };
        Ok((info, install))
    }

    /// Receives the front message without waiting; `WouldBlock` (`EAGAIN`)
    /// if there is none. Carried files are installed.
    pub fn recv(&self) -> io::Result<Message<'_>> {
        self.recv_with(RecvOptions::default())
    }

    /// [`recv`](Peer::recv) with options.
    pub fn recv_with(&self, opts: RecvOptions) -> io::Result<Message<'_>> {
        let (info, installed) = self.recv_raw(false, false, opts)?;
        Message::new(self, info, true, installed)
    }

    /// Waits up to `timeout` (`None`: forever) for a message and receives it;
    /// `TimedOut` when the time is up.
    pub fn recv_timeout(&self, timeout: Option<Duration>) -> io::Result<Message<'_>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            match self.recv() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return r,
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.wait_readable(left)?;
        }
    }

    /// Polls until a message is queued or the time is up; returns whether
    /// the peer is readable. `ESHUTDOWN` if the peer is disconnected.
    pub fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let ts = timeout.map(duration_ts);
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        loop {
            match poll(&mut fds, ts.as_ref()) {
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(0) => return Ok(false),
                Ok(_) => break,
            }
        }
        let ev = fds[0].revents();
        if ev.contains(PollFlags::HUP) {
            return Err(io::Error::from_raw_os_error(rustix::io::Errno::SHUTDOWN.raw_os_error()));
        }
        Ok(ev.contains(PollFlags::IN))
    }

    /// Describes the front message without dequeuing or installing anything
    /// (RFC v1 `PEEK`).
    pub fn peek(&self) -> io::Result<MessageInfo> {
        let (info, _) = self.recv_raw(false, true, RecvOptions { install_fds: false, layout_2017: false })?;
        crate::message::layout(&info, self.map_len)?;
        Ok(info)
    }

    /// Takes the seed message set with [`Send::seed`] (`WouldBlock` if none).
    pub fn recv_seed(&self) -> io::Result<Message<'_>> {
        let (info, installed) = self.recv_raw(true, false, RecvOptions::default())?;
        Message::new(self, info, true, installed)
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // SAFETY: our own mapping; messages borrowing it are gone (lifetimes).
        unsafe {
            let _ = munmap(self.map.as_ptr().cast(), self.map_len);
        }
    }
}

impl AsFd for Peer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Peer {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("fd", &self.fd.as_raw_fd()).field("pool_len", &self.map_len).finish()
    }
}
