// SPDX-License-Identifier: MIT OR Apache-2.0
//! Received messages and the checks that keep a bad description from
//! reaching outside the pool mapping.

use crate::{Handle, HandleId, NodeId, Peer};
use bus1_sys as sys;
use std::io;
use std::os::fd::OwnedFd;

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A user message: payload, handles and files.
    Data,
    /// The node behind [`Message::destination`] was destroyed.
    NodeDestroy,
    /// The owned node [`Message::destination`] has no handles left but the
    /// owner's (and no message in flight carries one).
    NodeRelease,
    /// A type this library does not know; the raw value.
    Unknown(u64),
}

impl MessageKind {
    pub(crate) fn from_raw(t: u64) -> Self {
        match t {
            sys::BUS1_MSG_DATA => MessageKind::Data,
            sys::BUS1_MSG_NODE_DESTROY => MessageKind::NodeDestroy,
            sys::BUS1_MSG_NODE_RELEASE => MessageKind::NodeRelease,
            t => MessageKind::Unknown(t),
        }
    }
}

/// Who sent a data message: the real UID/GID, process and thread ID of the
/// sending task at `SEND` time, as seen from the receiving peer's user and
/// PID namespaces (RFC v1 `RECV` layout only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    /// Real user ID.
    pub uid: u32,
    /// Real group ID.
    pub gid: u32,
    /// Process (thread group) ID; 0 if not visible in the receiver's PID
    /// namespace.
    pub pid: u32,
    /// Thread ID; 0 if not visible in the receiver's PID namespace.
    pub tid: u32,
}

/// The description of a message, as `RECV` returned it (also what
/// [`Peer::peek`] returns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageInfo {
    /// What the message is.
    pub kind: MessageKind,
    /// The raw message flags.
    pub flags: u64,
    /// The next message belongs to the same transaction (multicast or
    /// destruction batch).
    pub continues: bool,
    /// The receiver's ID of the handle or node the message is about.
    pub destination: HandleId,
    /// Sender credentials (data messages received with the RFC v1 layout).
    pub credentials: Option<Credentials>,
    /// Pool offset of the message's slice, `None` for notifications.
    pub offset: Option<u64>,
    /// Payload size in bytes.
    pub n_bytes: u64,
    /// Number of handles carried.
    pub n_handles: u64,
    /// Number of files carried.
    pub n_fds: u64,
    /// Size of the sender's security context in bytes (0 if none was
    /// delivered; see [`Message::secctx`]).
    pub n_secctx: u64,
}

impl MessageInfo {
    /// The description of a received message or notification, from the kernel's `RECV` answer.
    pub(crate) fn from_raw(m: &sys::bus1_cmd_recv_msg) -> MessageInfo {
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
    }

    /// Checks that the slice this description declares (payload, handle
    /// IDs, fd numbers, security context, each 8-aligned) lies inside a
    /// pool mapping of `map_len` bytes, without overflow. Every received
    /// message passes this check before anything is read; a failure is
    /// [`io::ErrorKind::InvalidData`].
    ///
    /// ```
    /// use bus1::{HandleId, MessageInfo, MessageKind};
    /// let mut i = MessageInfo {
    ///     kind: MessageKind::Data, flags: 0, continues: false,
    ///     destination: HandleId::from_raw(0x100), credentials: None,
    ///     offset: Some(4080), n_bytes: 16, n_handles: 0, n_fds: 0, n_secctx: 0,
    /// };
    /// assert!(i.check_layout(4096).is_ok());
    /// i.n_handles = 1;                       // 8 more bytes: past the end
    /// assert!(i.check_layout(4096).is_err());
    /// ```
    pub fn check_layout(&self, map_len: usize) -> io::Result<()> {
        layout(self, map_len).map(|_| ())
    }
}

/// Where the parts of a slice lie, relative to the pool start. All checked
/// to end inside the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub payload: (usize, usize),
    pub handles: (usize, usize),
    pub fds: (usize, usize),
    pub secctx: (usize, usize),
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("bus1: malformed message: {what}"))
}

/// Computes and checks the slice layout of a message description against a
/// mapping of `map_len` bytes: payload at `offset`, then the handle IDs
/// (`u64`), the fd numbers (`i32`) and the security context, each part
/// starting 8-aligned. Any overflow, misalignment or part ending beyond the
/// mapping is an error; nothing is read.
pub(crate) fn layout(info: &MessageInfo, map_len: usize) -> io::Result<Option<Layout>> {
    let Some(off) = info.offset else {
        if info.n_bytes | info.n_handles | info.n_fds | info.n_secctx != 0 {
            return Err(bad("sizes without a slice"));
        }
        return Ok(None);
    };
    if off % 8 != 0 {
        return Err(bad("unaligned offset"));
    }
    let a8 = |v: Option<u64>| v.and_then(sys::align8);
    let h = a8(Some(info.n_bytes));
    let f = h.and_then(|h| h.checked_add(a8(info.n_handles.checked_mul(8))?));
    let s = f.and_then(|f| f.checked_add(a8(info.n_fds.checked_mul(4))?));
    let end = s.and_then(|s| s.checked_add(info.n_secctx));
    let (Some(h), Some(f), Some(s), Some(end)) = (h, f, s, end) else {
        return Err(bad("sizes overflow"));
    };
    match off.checked_add(end) {
        Some(e) if e <= map_len as u64 => {}
        _ => return Err(bad("slice ends beyond the pool mapping")),
    }
    let o = off as usize;
    let part = |start: u64, len: u64| (o + start as usize, len as usize);
    Ok(Some(Layout {
        payload: part(0, info.n_bytes),
        handles: part(h, info.n_handles * 8),
        fds: part(f, info.n_fds * 4),
        secctx: part(s, info.n_secctx),
    }))
}

/// A received message. Its payload borrows the peer's read-only pool
/// mapping; dropping the message releases its slice (`SLICE_RELEASE`).
///
/// Handles the message carried are owned by the receiving peer from now on
/// (one user reference each; release them with
/// [`Peer::release_handle`](crate::Peer::release_handle)). Files are
/// [`OwnedFd`]s, closed with the message unless taken with
/// [`take_fds`](Message::take_fds).
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// let peer = bus1::Peer::open()?;
/// let msg = peer.recv_timeout(None)?;
/// println!("{:?} from {:?}: {} bytes", msg.kind(), msg.credentials(), msg.payload().len());
/// # Ok(()) }
/// ```
pub struct Message<'p> {
    peer: &'p Peer,
    info: MessageInfo,
    /// `Some` when the slice is published and must be released.
    release: Option<u64>,
    /// The peer's flush epoch at RECV; the slice is released only in it.
    epoch: u64,
    /// The handles were handed out by [`Message::take_handles`].
    handles_taken: bool,
    layout: Option<Layout>,
    fds: Vec<OwnedFd>,
}

impl<'p> Message<'p> {
    /// Wraps a description `RECV` returned. `fds_installed` tells whether the
    /// fd numbers in the slice are ours to own. On a malformed description the
    /// slice is released and an error returned.
    pub(crate) fn new(peer: &'p Peer, info: MessageInfo, publish: bool, fds_installed: bool) -> io::Result<Self> {
        let release = if publish { info.offset } else { None };
        let epoch = peer.epoch();
        let mut m = Message { peer, info, release, epoch, handles_taken: false, layout: None, fds: Vec::new() };
        // On error `m` is dropped here, which releases the slice.
        m.layout = layout(&info, peer.pool_len())?;
        if fds_installed {
            if let Some(l) = m.layout {
                let raw = peer.pool_bytes(l.fds.0, l.fds.1);
                for c in raw.chunks_exact(4) {
                    let fd = i32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
                    if fd >= 0 {
                        // SAFETY: RECV with INSTALL_FDS installed this fd into
                        // our table for us; nothing else owns it.
                        m.fds.push(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) });
                    }
                }
                if m.fds.len() as u64 != info.n_fds {
                    return Err(bad("negative fd number"));
                }
            }
        }
        Ok(m)
    }

    /// The whole description.
    pub fn info(&self) -> &MessageInfo {
        &self.info
    }

    /// What the message is.
    pub fn kind(&self) -> MessageKind {
        self.info.kind
    }

    /// The receiver's ID of the node (data, release) or handle (destroy) the
    /// message is about.
    pub fn destination(&self) -> HandleId {
        self.info.destination
    }

    /// The destination as a node ID, if it is one of the receiver's nodes.
    pub fn destination_node(&self) -> Option<NodeId> {
        self.info.destination.as_node()
    }

    /// The next message belongs to the same transaction.
    pub fn continues(&self) -> bool {
        self.info.continues
    }

    /// Who sent it (data messages received with the RFC v1 layout).
    pub fn credentials(&self) -> Option<Credentials> {
        self.info.credentials
    }

    /// The payload, read-only, straight from the pool.
    pub fn payload(&self) -> &[u8] {
        match self.layout {
            Some(l) => self.peer.pool_bytes(l.payload.0, l.payload.1),
            None => &[],
        }
    }

    /// The handles carried, in the receiver's namespace. `None` for a handle
    /// whose node was destroyed before the message (`BUS1_HANDLE_INVALID`).
    /// Empty for a peeked message (handles are installed by the real RECV)
    /// and after [`take_handles`](Message::take_handles).
    ///
    /// Each handle carries one user reference of the receiving peer, which
    /// stays with it after the message is dropped: release it with
    /// [`Peer::release_handle`], or take the handles as owned [`Handle`]s
    /// with [`take_handles`](Message::take_handles).
    pub fn handles(&self) -> impl ExactSizeIterator<Item = Option<HandleId>> + '_ {
        let raw = match (self.layout, self.release.is_some() && !self.handles_taken) {
            (Some(l), true) => self.peer.pool_bytes(l.handles.0, l.handles.1),
            _ => &[],
        };
        raw.chunks_exact(8).map(|c| {
            let id = u64::from_ne_bytes(c.try_into().unwrap_or([0xff; 8]));
            (id != sys::BUS1_HANDLE_INVALID).then_some(HandleId::from_raw(id))
        })
    }

    /// Takes the carried handles as owned [`Handle`]s, each releasing its
    /// reference when dropped; `None` for a destroyed node. A second call
    /// returns nothing, and [`handles`](Message::handles) is empty after it.
    pub fn take_handles(&mut self) -> Vec<Option<Handle<'p>>> {
        let peer = self.peer;
        let v = self
            .handles()
            // RECV gave the peer one reference per carried handle;
            // `handles_taken` keeps them from being handed out twice.
            .map(|h| h.map(|id| Handle::from_id(peer, id)))
            .collect();
        self.handles_taken = true;
        v
    }

    /// The files carried, if received with fds installed.
    pub fn fds(&self) -> &[OwnedFd] {
        &self.fds
    }

    /// Takes the files out of the message (they outlive it).
    pub fn take_fds(&mut self) -> Vec<OwnedFd> {
        std::mem::take(&mut self.fds)
    }

    /// The sender's security context, if the receiver asked for it
    /// ([`Peer::set_want_secctx`](crate::Peer::set_want_secctx)) and the
    /// kernel's security module provides one: the bytes exactly as the module
    /// gives them, captured when the message was sent (a Smack label without
    /// a terminating NUL; SELinux includes one). `None` without the request,
    /// without such a module, and for messages received with the 2017
    /// layout, which cannot report it.
    pub fn secctx(&self) -> Option<&[u8]> {
        if self.info.flags & sys::BUS1_MSG_FLAG_HAS_SECCTX == 0 {
            return None;
        }
        self.layout.map(|l| self.peer.pool_bytes(l.secctx.0, l.secctx.1))
    }

    /// Takes over the release of the slice: dropping the message then
    /// leaves it alone (for a release folded into `TRANSACT`).
    pub(crate) fn take_release(&mut self) -> Option<u64> {
        self.release.take()
    }

    /// Releases the slice now, reporting a failure (dropping does the same
    /// and ignores it). A message whose slice a flush already freed
    /// ([`Peer::flush_shared`]) releases nothing.
    pub fn release(mut self) -> io::Result<()> {
        self.release_now()
    }

    fn release_now(&mut self) -> io::Result<()> {
        match self.release.take() {
            // After a flush the offset may belong to a newer message.
            Some(off) if self.peer.epoch() == self.epoch => self.peer.release_slice(off),
            _ => Ok(()),
        }
    }
}

impl Drop for Message<'_> {
    fn drop(&mut self) {
        let _ = self.release_now();
    }
}

impl std::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message").field("info", &self.info).field("fds", &self.fds).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(offset: Option<u64>, n_bytes: u64, n_handles: u64, n_fds: u64, n_secctx: u64) -> MessageInfo {
        MessageInfo {
            kind: MessageKind::Data,
            flags: 0,
            continues: false,
            destination: HandleId::from_raw(0x100),
            credentials: None,
            offset,
            n_bytes,
            n_handles,
            n_fds,
            n_secctx,
        }
    }

    #[test]
    fn layout_parts_are_8_aligned() {
        let l = layout(&info(Some(64), 5, 2, 3, 4), 4096).unwrap().unwrap();
        assert_eq!(l.payload, (64, 5));
        assert_eq!(l.handles, (72, 16));
        assert_eq!(l.fds, (88, 12));
        assert_eq!(l.secctx, (104, 4));
    }

    #[test]
    fn layout_exactly_at_the_end() {
        assert!(layout(&info(Some(4088), 8, 0, 0, 0), 4096).unwrap().is_some());
        assert!(layout(&info(Some(4096), 0, 0, 0, 0), 4096).unwrap().is_some());
    }

    #[test]
    fn layout_rejects_beyond_mapping() {
        assert!(layout(&info(Some(4088), 9, 0, 0, 0), 4096).is_err());
        assert!(layout(&info(Some(4096), 1, 0, 0, 0), 4096).is_err());
        assert!(layout(&info(Some(0), 0, 1000, 0, 0), 4096).is_err());
        assert!(layout(&info(Some(0), 0, 0, 1025, 0), 4096).is_err());
        assert!(layout(&info(Some(8), 4000, 8, 4, 64), 4096).is_err());
    }

    #[test]
    fn layout_rejects_overflow() {
        assert!(layout(&info(Some(0), u64::MAX, 0, 0, 0), usize::MAX).is_err());
        assert!(layout(&info(Some(0), 0, u64::MAX / 4, 0, 0), usize::MAX).is_err());
        assert!(layout(&info(Some(0), 0, 0, u64::MAX / 2, 0), usize::MAX).is_err());
        assert!(layout(&info(Some(0), 8, 8, 8, u64::MAX - 16), usize::MAX).is_err());
        assert!(layout(&info(Some(u64::MAX - 7), 8, 0, 0, 0), usize::MAX).is_err());
    }

    #[test]
    fn layout_rejects_unaligned_offset() {
        let e = layout(&info(Some(4), 1, 0, 0, 0), 4096).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn notification_without_slice() {
        assert_eq!(layout(&info(None, 0, 0, 0, 0), 4096).unwrap(), None);
        assert!(layout(&info(None, 1, 0, 0, 0), 4096).is_err());
        assert!(layout(&info(None, 0, 0, 1, 0), 4096).is_err());
    }

    #[test]
    fn kinds() {
        assert_eq!(MessageKind::from_raw(1), MessageKind::Data);
        assert_eq!(MessageKind::from_raw(2), MessageKind::NodeDestroy);
        assert_eq!(MessageKind::from_raw(3), MessageKind::NodeRelease);
        assert_eq!(MessageKind::from_raw(0), MessageKind::Unknown(0));
        assert_eq!(MessageKind::from_raw(77), MessageKind::Unknown(77));
    }
}
