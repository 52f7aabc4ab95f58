// SPDX-License-Identifier: MIT OR Apache-2.0
//! The peer: an open `/dev/bus1` file and its read-only pool mapping.

use crate::message::{Message, MessageInfo, MessageKind};
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The pool size of the module's default (`pool_size_mib=512`).
pub const DEFAULT_POOL_SIZE: usize = 512 << 20;

/// Runs a bus1 ioctl that reads and writes `*arg`.
///
/// # Safety
/// `OP` must be a bus1 command whose argument type is `T`.
pub(crate) unsafe fn ioctl_rw<const OP: Opcode, T>(fd: BorrowedFd<'_>, arg: &mut T) -> io::Result<()> {
    // SAFETY: the caller guarantees that `OP` takes a `T`, which `arg`
    // points to for the duration of the call.
    let upd = unsafe { Updater::<OP, T>::new(arg) };
    // SAFETY: `upd` describes a valid argument for `OP` (see above).
    Ok(unsafe { ioctl(fd, upd) }?)
}

const fn op(v: u32) -> Opcode {
    v as Opcode
}
pub(crate) const CMD_PEER_DISCONNECT: Opcode = op(sys::BUS1_CMD_PEER_DISCONNECT);
pub(crate) const CMD_PEER_QUERY: Opcode = op(sys::BUS1_CMD_PEER_QUERY);
pub(crate) const CMD_PEER_RESET: Opcode = op(sys::BUS1_CMD_PEER_RESET);
pub(crate) const CMD_HANDLE_RELEASE: Opcode = op(sys::BUS1_CMD_HANDLE_RELEASE);
pub(crate) const CMD_HANDLE_TRANSFER: Opcode = op(sys::BUS1_CMD_HANDLE_TRANSFER);
pub(crate) const CMD_HANDLE_RELEASE_N: Opcode = op(sys::BUS1_CMD_HANDLE_RELEASE_N);
pub(crate) const CMD_NODES_DESTROY: Opcode = op(sys::BUS1_CMD_NODES_DESTROY);
pub(crate) const CMD_SLICE_RELEASE: Opcode = op(sys::BUS1_CMD_SLICE_RELEASE);
pub(crate) const CMD_SEND: Opcode = op(sys::BUS1_CMD_SEND);
pub(crate) const CMD_RECV: Opcode = op(sys::BUS1_CMD_RECV);
pub(crate) const CMD_RECV_2017: Opcode = op(sys::BUS1_CMD_RECV_2017);

/// Per-peer limits, as `PEER_QUERY` reports them and `PEER_RESET` sets them.
/// In [`Peer::set_limits`], `None` keeps a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// How many slices the peer's pool may hold (published and queued).
    pub max_slices: Option<u32>,
    /// How many handles the peer may hold.
    pub max_handles: Option<u32>,
    /// How many bytes may be in flight towards the peer.
    pub max_inflight_bytes: Option<u32>,
    /// How many files may be in flight towards the peer.
    pub max_inflight_fds: Option<u32>,
}

/// What `PEER_QUERY` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// Raw peer flags (`BUS1_PEER_FLAG_*`).
    pub peer_flags: u64,
    /// See [`Limits::max_slices`].
    pub max_slices: u32,
    /// See [`Limits::max_handles`].
    pub max_handles: u32,
    /// See [`Limits::max_inflight_bytes`].
    pub max_inflight_bytes: u32,
    /// See [`Limits::max_inflight_fds`].
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
    /// from `/sys/module/bus1/parameters/pool_size_mib`; opening fails
    /// with [`io::ErrorKind::NotFound`] if that file does not exist and no
    /// length was given). Messages whose slice ends beyond the mapping are
    /// not received (`RECV` fails with `ERANGE` and leaves them queued).
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
/// Most commands take `&self`: the kernel serialises them per peer, so a
/// peer may be shared between threads. The commands that free the pool
/// ([`flush`](Peer::flush), [`reset`](Peer::reset),
/// [`disconnect`](Peer::disconnect)) take `&mut self`, so no [`Message`]
/// (whose payload borrows the pool) and no [`Handle`](crate::Handle) can
/// outlive them. The fd is non-blocking; [`recv`](Peer::recv)
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
    /// Bumped by every command that releases all slices (flush, disconnect).
    /// A message remembers the epoch it was received in and releases its
    /// slice only if the epoch is unchanged: after a flush the kernel may
    /// have handed the same offset to a newer message.
    epoch: AtomicU64,
}

// SAFETY: the mapping is read-only shared memory that only the kernel writes
// (into slices not yet handed out); the fd is an ordinary file.
unsafe impl std::marker::Send for Peer {}
// SAFETY: as above; all commands are ioctls the kernel serialises.
unsafe impl Sync for Peer {}

/// Where the module's `pool_size_mib` parameter is visible at runtime.
pub const POOL_SIZE_PARAM: &str = "/sys/module/bus1/parameters/pool_size_mib";

/// The pool size of every peer, in bytes, as the loaded module reports it in
/// [`POOL_SIZE_PARAM`] (the value given at load time; as bus1(7) says, one
/// outside 1..=4095 MiB selects the default, 512). Fails if the file is
/// missing (bus1 not loaded) or does not hold a number.
pub fn module_pool_size() -> io::Result<usize> {
    let s = std::fs::read_to_string(POOL_SIZE_PARAM)
        .map_err(|e| io::Error::new(e.kind(), format!("bus1: reading {POOL_SIZE_PARAM}: {e}")))?;
    let mib = s
        .trim()
        .parse::<u64>()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bus1: {POOL_SIZE_PARAM}: {:?}", s.trim())))?;
    Ok(if (1..=4095).contains(&mib) { (mib as usize) << 20 } else { DEFAULT_POOL_SIZE })
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
    /// process) and maps its pool (of the module's pool size, see
    /// [`module_pool_size`]).
    ///
    /// # Safety
    ///
    /// The peer lends out references into the pool that stay valid only as
    /// long as nobody else releases or flushes slices of this open file
    /// description. The caller guarantees that while the returned `Peer`
    /// lives, no other holder of the same open file description (a
    /// duplicated fd, another `Peer` made from one, a process that inherited
    /// it) receives, releases slices, flushes, resets with a flush flag or
    /// disconnects. Handing over the only copy of the fd, as a parent that
    /// closes its own after starting the child does, satisfies this.
    pub unsafe fn from_fd(fd: OwnedFd) -> io::Result<Peer> {
        Self::from_fd_with_len(fd, None)
    }

    /// [`from_fd`](Peer::from_fd) with an explicit mapping length (see
    /// [`PeerBuilder::map_len`]).
    ///
    /// # Safety
    ///
    /// As for [`from_fd`](Peer::from_fd).
    pub unsafe fn from_fd_len(fd: OwnedFd, map_len: usize) -> io::Result<Peer> {
        Self::from_fd_with_len(fd, Some(map_len))
    }

    /// Maps the pool of `fd`. Safe for callers that own the only copy of a
    /// freshly opened fd (see [`from_fd`](Peer::from_fd)).
    fn from_fd_with_len(fd: OwnedFd, len: Option<usize>) -> io::Result<Peer> {
        let len = match len {
            Some(l) => l,
            None => module_pool_size()?,
        }
        .max(1);
        // SAFETY: a fresh shared read-only mapping at an address the kernel
        // chooses; it overlaps no Rust object.
        let p = unsafe { mmap(std::ptr::null_mut(), len, ProtFlags::READ, MapFlags::SHARED, &fd, 0)? };
        let map = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| io::Error::from_raw_os_error(rustix::io::Errno::NOMEM.raw_os_error()))?;
        Ok(Peer { fd, map, map_len: len, epoch: AtomicU64::new(0) })
    }

    /// The flush epoch: how many times this peer was flushed or disconnected.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The length of the pool mapping.
    pub fn pool_len(&self) -> usize {
        self.map_len
    }

    /// `len` bytes of the pool at `off`. Callers checked the range.
    pub(crate) fn pool_bytes(&self, off: usize, len: usize) -> &[u8] {
        assert!(off.checked_add(len).is_some_and(|e| e <= self.map_len));
        // SAFETY: inside our read-only mapping, which lives as long as self.
        // The kernel writes a slice only before RECV publishes it and frees
        // it only on SLICE_RELEASE (by the message that borrows these bytes)
        // or on a flush (which needs `&mut self` or the `flush_shared`
        // contract), so the bytes do not change while borrowed.
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

    /// `PEER_RESET` with raw flags (`BUS1_PEER_RESET_FLAG_*`), peer flags
    /// (`None` keeps them) and limits.
    ///
    /// Takes `&mut self` because the flush flags release every slice:
    /// no message received before can be alive.
    ///
    /// ```compile_fail
    /// # fn main() -> std::io::Result<()> {
    /// let mut peer = bus1::Peer::open()?;
    /// let msg = peer.recv()?;
    /// peer.reset(bus1::sys::BUS1_PEER_RESET_FLAG_FLUSH, None, Default::default())?;
    /// println!("{:?}", msg.payload()); // error: `peer` is mutably borrowed
    /// # Ok(()) }
    /// ```
    pub fn reset(&mut self, flags: u64, peer_flags: Option<u64>, limits: Limits) -> io::Result<()> {
        let r = self.reset_raw(flags, peer_flags, limits);
        if flags & (sys::BUS1_PEER_RESET_FLAG_FLUSH | sys::BUS1_PEER_RESET_FLAG_FLUSH_SEED) != 0 {
            *self.epoch.get_mut() += 1;
        }
        r
    }

    fn reset_raw(&self, flags: u64, peer_flags: Option<u64>, limits: Limits) -> io::Result<()> {
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

    /// Asks for (or stops asking for) the sender's security context with
    /// every data message sent to this peer from now on
    /// (`BUS1_PEER_FLAG_WANT_SECCTX`); read it with [`Message::secctx`].
    /// Messages already queued keep what they were sent with. Replaces the
    /// peer flags (this is the only one).
    ///
    /// [`Message::secctx`]: crate::Message::secctx
    pub fn set_want_secctx(&self, want: bool) -> io::Result<()> {
        let flags = if want { sys::BUS1_PEER_FLAG_WANT_SECCTX } else { 0 };
        self.reset_raw(0, Some(flags), Limits::default())
    }

    /// Changes the per-peer limits (releases nothing, hence `&self`).
    pub fn set_limits(&self, limits: Limits) -> io::Result<()> {
        self.reset_raw(0, None, limits)
    }

    /// Destroys all owned nodes, drops all handles, empties the queue and
    /// releases every slice; with `seed`, drops the seed too.
    ///
    /// Takes `&mut self`: a message's payload borrows the pool, and the
    /// kernel reuses the freed slices for new messages, so no message may
    /// live across a flush. The borrow checker enforces it:
    ///
    /// ```compile_fail
    /// # fn main() -> std::io::Result<()> {
    /// let mut peer = bus1::Peer::open()?;
    /// let msg = peer.recv()?;
    /// let payload: &[u8] = msg.payload();
    /// peer.flush(false)?;          // error: `peer` is borrowed by `msg`
    /// println!("{payload:?}");
    /// # Ok(()) }
    /// ```
    ///
    /// Dropping messages first makes it compile:
    ///
    /// ```no_run
    /// # fn main() -> std::io::Result<()> {
    /// let mut peer = bus1::Peer::open()?;
    /// let msg = peer.recv()?;
    /// println!("{:?}", msg.payload());
    /// drop(msg);
    /// peer.flush(false)?;
    /// # Ok(()) }
    /// ```
    pub fn flush(&mut self, seed: bool) -> io::Result<()> {
        self.reset(flush_flags(seed), None, Limits::default())
    }

    /// [`flush`](Peer::flush) through a shared reference, for a peer shared
    /// between threads (for example in an `Arc`).
    ///
    /// Messages received before the flush are stale afterwards: dropping or
    /// [releasing](Message::release) one does not release its slice again
    /// (the kernel may have given that offset to a newer message), and
    /// handles taken before are not released again either.
    ///
    /// # Safety
    ///
    /// The caller guarantees that no message received from this peer before
    /// the call is read ([`Message::payload`], [`Message::handles`],
    /// [`Message::secctx`]) after the call starts, and that no such message
    /// is dropped or released while the call runs. (Their memory is freed
    /// and reused by the kernel.)
    pub unsafe fn flush_shared(&self, seed: bool) -> io::Result<()> {
        let r = self.reset_raw(flush_flags(seed), None, Limits::default());
        self.epoch.fetch_add(1, Ordering::AcqRel);
        r
    }

    /// Disconnects the peer: like a flush, after which every command fails
    /// with `ESHUTDOWN` and poll reports `POLLHUP`. Takes `&mut self` for
    /// the reason [`flush`](Peer::flush) does.
    pub fn disconnect(&mut self) -> io::Result<()> {
        *self.epoch.get_mut() += 1;
        // SAFETY: PEER_DISCONNECT takes no argument (a null integer).
        unsafe { ioctl(self.fd.as_fd(), IntegerSetter::<CMD_PEER_DISCONNECT>::new_usize(0))? };
        Ok(())
    }

    /// Drops one user reference of a handle (`HANDLE_RELEASE`).
    pub fn release_handle(&self, h: impl Into<HandleId>) -> io::Result<()> {
        let mut id = h.into().as_raw();
        // SAFETY: HANDLE_RELEASE takes a u64.
        unsafe { ioctl_rw::<CMD_HANDLE_RELEASE, _>(self.fd.as_fd(), &mut id) }
    }

    /// Drops `n` user references of a handle at once, all or none
    /// (`HANDLE_RELEASE_N`, a bus1 extension): what `n` calls of
    /// [`release_handle`](Peer::release_handle) would drop. `EINVAL` if `n`
    /// is 0 or more than the handle has; `EBUSY` if they would include the
    /// owner handle's last reference while its node is live.
    pub fn release_handle_refs(&self, h: impl Into<HandleId>, n: u64) -> io::Result<()> {
        let mut r = sys::bus1_cmd_handle_release_n { flags: 0, handle: h.into().as_raw(), n_refs: n };
        // SAFETY: HANDLE_RELEASE_N takes a bus1_cmd_handle_release_n.
        unsafe { ioctl_rw::<CMD_HANDLE_RELEASE_N, _>(self.fd.as_fd(), &mut r) }
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
            MessageInfo::from_raw(&r.msg)
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

fn flush_flags(seed: bool) -> u64 {
    let mut f = sys::BUS1_PEER_RESET_FLAG_FLUSH;
    if seed {
        f |= sys::BUS1_PEER_RESET_FLAG_FLUSH_SEED;
    }
    f
}

impl Drop for Peer {
    fn drop(&mut self) {
        // SAFETY: our own mapping, of this length; messages borrowing it are
        // gone (they borrow `self`).
        let _ = unsafe { munmap(self.map.as_ptr().cast(), self.map_len) };
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
