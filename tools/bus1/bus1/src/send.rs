// SPDX-License-Identifier: MIT OR Apache-2.0
//! The `SEND` builder.

use crate::peer::{ioctl_rw, CMD_SEND};
use crate::{HandleId, Peer};
use bus1_sys as sys;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};

/// A message being put together; [`submit`](Send::submit) sends it.
///
/// The message goes to every destination atomically: all receivers see it
/// in the same order relative to every other message. Without
/// [`continue_on_error`](Send::continue_on_error) it is delivered to all
/// destinations or to none.
///
/// ```no_run
/// use bus1::{HandleId, NodeId, Peer};
/// # fn main() -> std::io::Result<()> {
/// # let peer = Peer::open()?;
/// # let (a, b) = (HandleId::from_raw(0xb), HandleId::from_raw(0x13));
/// let reply_node = NodeId::new(0x200).unwrap();
/// let file = std::fs::File::open("/proc/self/status")?;
/// use std::os::fd::AsFd;
/// let report = peer
///     .send()
///     .destinations([a, b])
///     .payload(b"header")
///     .payload(b"body")
///     .handle(reply_node)          // the receivers get a handle to reply with
///     .fd(file.as_fd())
///     .continue_on_error()
///     .submit()?;
/// for (dst, err) in report.results() {
///     if let Some(e) = err {
///         eprintln!("{dst:?}: {e}");
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a message is sent only by submit()"]
pub struct Send<'p, 'a> {
    peer: &'p Peer,
    flags: u64,
    dests: Vec<u64>,
    vecs: Vec<IoSlice<'a>>,
    handles: Vec<u64>,
    fds: Vec<i32>,
    _fds: std::marker::PhantomData<BorrowedFd<'a>>,
}

/// Per-destination outcome of a [`Send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    dests: Vec<u64>,
    errors: Vec<u64>,
}

impl Delivery {
    /// Each destination with `None` if it got the message, else the error
    /// that made it skip (`EHOSTUNREACH`, `ESHUTDOWN`, `EDQUOT`, `EXFULL`).
    pub fn results(&self) -> impl Iterator<Item = (HandleId, Option<io::Error>)> + '_ {
        self.dests.iter().zip(&self.errors).map(|(d, e)| {
            let err = (*e != 0).then(|| io::Error::from_raw_os_error(i32::try_from(*e).unwrap_or(i32::MAX)));
            (HandleId::from_raw(*d), err)
        })
    }

    /// Raw per-destination errno values (0 = delivered).
    pub fn errnos(&self) -> &[u64] {
        &self.errors
    }

    /// Every destination got the message.
    pub fn all_delivered(&self) -> bool {
        self.errors.iter().all(|&e| e == 0)
    }

    /// How many destinations got the message.
    pub fn delivered(&self) -> usize {
        self.errors.iter().filter(|&&e| e == 0).count()
    }
}

impl<'p, 'a> Send<'p, 'a> {
    pub(crate) fn new(peer: &'p Peer) -> Self {
        Send {
            peer,
            flags: 0,
            dests: Vec::new(),
            vecs: Vec::new(),
            handles: Vec::new(),
            fds: Vec::new(),
            _fds: std::marker::PhantomData,
        }
    }

    /// Adds a destination handle (or an own node: the message goes to self).
    pub fn destination(mut self, h: impl Into<HandleId>) -> Self {
        self.dests.push(h.into().as_raw());
        self
    }

    /// Adds several destinations.
    pub fn destinations<H: Into<HandleId>>(mut self, hs: impl IntoIterator<Item = H>) -> Self {
        self.dests.extend(hs.into_iter().map(|h| h.into().as_raw()));
        self
    }

    /// Appends a payload segment (one iovec; the kernel copies all segments
    /// straight into each receiver's pool).
    pub fn payload(mut self, bytes: &'a [u8]) -> Self {
        self.vecs.push(IoSlice::new(bytes));
        self
    }

    /// Appends payload segments.
    pub fn payload_vectored(mut self, vecs: &[IoSlice<'a>]) -> Self {
        self.vecs.extend_from_slice(vecs);
        self
    }

    /// Carries a handle: every receiver gets its own handle to that node.
    pub fn handle(mut self, h: impl Into<HandleId>) -> Self {
        self.handles.push(h.into().as_raw());
        self
    }

    /// Carries a file (not a bus1 peer or an `AF_UNIX` socket: `EOPNOTSUPP`).
    pub fn fd(mut self, fd: BorrowedFd<'a>) -> Self {
        self.fds.push(fd.as_raw_fd());
        self
    }

    /// Skips destinations that fail on their own instead of failing the
    /// whole message; [`Delivery`] tells which.
    pub fn continue_on_error(mut self) -> Self {
        self.flags |= sys::BUS1_SEND_FLAG_CONTINUE;
        self
    }

    /// Makes this message the peer's seed (no destinations allowed), read
    /// back with [`Peer::recv_seed`].
    pub fn seed(mut self) -> Self {
        self.flags |= sys::BUS1_SEND_FLAG_SEED;
        self
    }

    /// Adds raw `BUS1_SEND_FLAG_*` bits.
    pub fn raw_flags(mut self, flags: u64) -> Self {
        self.flags |= flags;
        self
    }

    /// Sends the message (`SEND`).
    pub fn submit(self) -> io::Result<Delivery> {
        let mut errors = vec![0u64; self.dests.len()];
        let ptr = |p: *const u8, n: usize| if n == 0 { 0 } else { p as u64 };
        let mut s = sys::bus1_cmd_send {
            flags: self.flags,
            ptr_destinations: ptr(self.dests.as_ptr().cast(), self.dests.len()),
            ptr_errors: ptr(errors.as_mut_ptr().cast(), errors.len()),
            n_destinations: self.dests.len() as u64,
            ptr_vecs: ptr(self.vecs.as_ptr().cast(), self.vecs.len()),
            n_vecs: self.vecs.len() as u64,
            ptr_handles: ptr(self.handles.as_ptr().cast(), self.handles.len()),
            n_handles: self.handles.len() as u64,
            ptr_fds: ptr(self.fds.as_ptr().cast(), self.fds.len()),
            n_fds: self.fds.len() as u64,
        };
        // SAFETY: SEND takes a bus1_cmd_send; every array lives until the
        // call returns, IoSlice is ABI-compatible with struct iovec, and the
        // kernel writes only `errors` (n_destinations u64 slots).
        unsafe { ioctl_rw::<CMD_SEND, _>(self.peer.fd(), &mut s)? };
        Ok(Delivery { dests: self.dests, errors })
    }
}
