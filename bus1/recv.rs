// SPDX-License-Identifier: GPL-2.0

//! `RECV` and `SLICE_RELEASE`: dequeueing the front of a peer's queue (data, `NODE_DESTROY`,
//! `NODE_RELEASE`) in the one global order, installing a data message's handles, file
//! descriptors and slice, and giving slices back.

#![deny(unsafe_code)]

use crate::{
    ext::{
        errno::ENOTRECOVERABLE,
        fd::reserve_cloexec,
        uaccess_ext::UserPtrExt, //
    },
    lazyvec::LazyVec,
    message::{
        Receiver,
        SliceLayout, //
    },
    node::HolderReservation,
    peer::{
        Event,
        HandleReservation,
        Message,
        Node,
        NodeHolder,
        Peer,
        PeerInner,
        PendingHandle, //
    },
    pool::Pool,
    queue::{
        Queue,
        QueueSlot, //
    },
    smallvec::user_sized,
    uapi,
};
use kernel::{
    fs::file::FileDescriptorReservation,
    prelude::*,
    rbtree::RBTreeNodeReservation,
    sync::Arc,
    uaccess::UserPtr, //
};

/// The receiver-side description of a received message.
pub(crate) struct Received {
    /// `BUS1_MSG_*`.
    pub(crate) type_: u64,
    /// Whether the next entry belongs to the same transaction.
    pub(crate) cont: bool,
    /// The receiver's ID for the node, or `BUS1_HANDLE_INVALID`.
    pub(crate) destination: u64,
    /// Pool offset of the slice, or `BUS1_OFFSET_INVALID`.
    pub(crate) offset: u64,
    /// The slice layout (all zero for notifications).
    pub(crate) layout: SliceLayout,
    /// Sender's uid, gid, pid and tid as seen by the receiver.
    pub(crate) ids: [u32; 4],
}

impl Received {
    /// Describes a notification about the node the receiver names `destination`.
    pub(crate) fn notification(type_: u64, cont: bool, destination: u64) -> Self {
        Received {
            type_,
            cont,
            destination,
            offset: uapi::BUS1_OFFSET_INVALID,
            layout: SliceLayout {
                n_bytes: 0,
                n_handles: 0,
                n_fds: 0,
                n_secctx: None,
            },
            ids: [u32::MAX, u32::MAX, 0, 0],
        }
    }
}

/// What the caller of `RECV` asked for.
#[derive(Clone, Copy)]
pub(crate) struct RecvArgs {
    /// Leave the message queued and install nothing.
    pub(crate) peek: bool,
    /// Receive the seed instead of the queue front.
    pub(crate) seed: bool,
    /// Install carried files as file descriptors.
    pub(crate) install_fds: bool,
    /// End of the caller's pool mapping.
    pub(crate) max_offset: u64,
}

/// Resources reserved before a message is dequeued, so that installing it cannot fail.
struct InstallReservation {
    /// One per carried handle.
    handles: LazyVec<(HandleReservation, RBTreeNodeReservation<u64, NodeHolder>)>,
    /// One per carried file, if they are to be installed.
    fds: LazyVec<FileDescriptorReservation>,
    /// One per carried node of another peer that was already destroyed, for the
    /// `NODE_DESTROY` the receiver gets with a handle installed after the destruction (see
    /// [`Peer::install_handle`]).
    destroys: LazyVec<QueueSlot<Event>>,
}

impl InstallReservation {
    /// Reserves what installing `msg` needs, including the pool pages its handle IDs and fd
    /// numbers will be written to; `EMFILE`, `ENOMEM` and friends leave the message queued.
    fn new(msg: &Message, install_fds: bool) -> Result<Self> {
        // A message without cargo carries neither handles nor files: nothing to reserve.
        if msg.cargo.is_none() {
            return Ok(InstallReservation {
                handles: LazyVec::new(),
                fds: LazyVec::new(),
                destroys: LazyVec::new(),
            });
        }
        if let Some(off) = msg.slice {
            let l = &msg.layout;
            let fds_len = if install_fds { 4 * l.n_fds } else { 0 };
            prefault(
                msg.receiver.pool(),
                off + l.handles_at(),
                8 * l.n_handles + fds_len,
            )?;
        }
        let n_handles = usize::try_from(msg.layout.n_handles)?;
        // As many as the sender carried, which its limits bound, not the allocator.
        let mut handles = LazyVec::with_capacity(n_handles, user_sized(GFP_KERNEL))?;
        for _ in 0..n_handles {
            handles.push(
                (
                    HandleReservation::new()?,
                    RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?,
                ),
                GFP_KERNEL,
            )?;
        }
        let mut fds = LazyVec::new();
        if install_fds {
            let n_fds = usize::try_from(msg.layout.n_fds)?;
            fds = LazyVec::with_capacity(n_fds, GFP_KERNEL)?;
            for _ in 0..n_fds {
                fds.push(reserve_cloexec()?, GFP_KERNEL)?;
            }
        }
        // A carried node of another peer may be destroyed before its handle is installed, and
        // the handle then joins the destruction with a notification of its own: its memory is
        // reserved here, so nothing is allocated once the message is dequeued.
        let mut destroys = LazyVec::new();
        if let Some(cargo) = &msg.cargo {
            for node in cargo.nodes.iter().flatten() {
                if node.owner_id() != msg.receiver.id() {
                    destroys.push(Queue::reserve(GFP_KERNEL_ACCOUNT)?, user_sized(GFP_KERNEL))?;
                }
            }
        }
        Ok(InstallReservation {
            handles,
            fds,
            destroys,
        })
    }
}

/// The release stage of a `TRANSACT` that also sends, handed to its send stage. A unicast
/// without handles or files takes this peer's lock to resolve its destination anyway, so the
/// release runs first in that critical section instead of in one of its own; any other send
/// runs it standalone before its first effect ([`ReleaseFirst::run`]). Everything a send does
/// before that only reads its arguments, so the release still comes first in every effect; a
/// send that fails earlier leaves it pending, and the caller runs it after the send.
pub(crate) struct ReleaseFirst {
    /// The offset to release, while the release is pending.
    offset: Option<u64>,
    /// Whether the release ran and succeeded.
    released: bool,
}

impl ReleaseFirst {
    /// No release (`SEND`, or a `TRANSACT` without the release stage).
    pub(crate) fn none() -> Self {
        Self {
            offset: None,
            released: false,
        }
    }

    /// A release of the slice at `offset`, pending.
    pub(crate) fn new(offset: u64) -> Self {
        Self {
            offset: Some(offset),
            released: false,
        }
    }

    /// Runs the release if it is pending, under `inner`, the caller's lock of `peer`.
    pub(crate) fn run_locked(&mut self, peer: &Peer, inner: &mut PeerInner) -> Result {
        if let Some(offset) = self.offset.take() {
            peer.slice_release_locked(inner, offset)?;
            self.released = true;
        }
        Ok(())
    }

    /// Runs the release if it is pending, taking the lock of `peer`.
    pub(crate) fn run(&mut self, peer: &Peer) -> Result {
        if let Some(offset) = self.offset.take() {
            peer.slice_release(offset)?;
            self.released = true;
        }
        Ok(())
    }

    /// Whether the release ran and succeeded.
    pub(crate) fn released(&self) -> bool {
        self.released
    }
}

impl Peer {
    /// `SLICE_RELEASE`.
    pub(crate) fn cmd_slice_release(&self, arg: usize) -> Result<isize> {
        self.slice_release(UserPtr::from_addr(arg).get()?)
    }

    /// `SLICE_RELEASE` of `offset` (also the release stage of `TRANSACT` without a send stage).
    pub(crate) fn slice_release(&self, offset: u64) -> Result<isize> {
        self.slice_release_locked(&mut self.lock(), offset)?;
        Ok(0)
    }

    /// [`Self::slice_release`] under `inner`, the caller's lock of this peer.
    // Inlined: on every message's path, where a call would cost about as much as the body.
    #[inline(always)]
    fn slice_release_locked(&self, inner: &mut PeerInner, offset: u64) -> Result {
        self.pool().release(&mut inner.slices, offset)?;
        inner.limits.discharge_slices(1);
        Ok(())
    }

    /// Receives the front of the queue (or the seed) as described by `a`.
    #[inline]
    pub(crate) fn recv(self: &Arc<Self>, a: RecvArgs) -> Result<Received> {
        if a.seed {
            return self.recv_seed(a);
        }
        // Nothing readable: answered without the lock, and inline, without the call into the
        // receive path and its frame (a waiting receiver checks this before and after every
        // sleep).
        if !self.maybe_readable() {
            return Err(EAGAIN);
        }
        self.recv_front(a)
    }

    /// [`Self::recv`] from the queue, which may be readable.
    fn recv_front(self: &Arc<Self>, a: RecvArgs) -> Result<Received> {
        loop {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let Some((key, ev, cont)) = inner.queue.front() else {
                self.note_unreadable(inner);
                return Err(EAGAIN);
            };
            let key = *key;
            let flushed = inner.queue.is_flushed(&key);
            // The data message at the front, kept borrowed for the checks below rather than
            // looked up again.
            let mut data = None;
            let (keep, type_, dest) = match ev {
                Event::Destroy(n) | Event::Release(n) => {
                    let t = if matches!(ev, Event::Destroy(_)) {
                        uapi::BUS1_MSG_NODE_DESTROY
                    } else {
                        uapi::BUS1_MSG_NODE_RELEASE
                    };
                    // A peer that dropped its handle before receiving never sees it, and a
                    // handle is told of its node's destruction once.
                    let dest = inner
                        .handles
                        .by_node(&n.key())
                        .filter(|h| !(matches!(ev, Event::Destroy(_)) && h.destroy_delivered))
                        .map(|h| h.id);
                    (!flushed && dest.is_some(), t, dest)
                }
                Event::Data(m) => {
                    let node = m.node().ok_or_else(ENOTRECOVERABLE)?;
                    let dest = inner.handles.by_node(&node.key()).map(|h| h.id);
                    // Ordered after the node's destruction, on the full (timestamp, tag) key:
                    // dropped. A node that is gone from its owner but not yet stamped is being
                    // destroyed by a transaction that has not taken its timestamp yet (that
                    // happens under this lock, with the stamp), so this readable entry is
                    // ordered before it.
                    // Both are read under this lock, which the stamp is taken under; the stamp
                    // (an atomic load) goes first, as it spares the tree walk for a live node.
                    let after_destroy = node.destroyed_before(key.ts(), key.tag())
                        && inner.nodes.get(&node.serial()).is_none();
                    data = Some(&**m);
                    (
                        !flushed && dest.is_some() && !after_destroy,
                        uapi::BUS1_MSG_DATA,
                        dest,
                    )
                }
            };
            if !keep {
                let popped = pop_front_settled(inner);
                // Dropped unlocked: a message gives its resources back under other locks.
                drop(guard);
                drop(popped);
                continue;
            }
            let dest = dest.unwrap_or(uapi::BUS1_HANDLE_INVALID);
            if type_ != uapi::BUS1_MSG_DATA {
                if !a.peek {
                    if let Some(Event::Destroy(n)) = inner.queue.get(&key) {
                        let nk = n.key();
                        if let Some(h) = inner.handles.by_node_mut(&nk) {
                            h.destroy_delivered = true;
                        }
                    }
                    let popped = pop_front_settled(inner);
                    self.note_unreadable(inner);
                    drop(guard);
                    drop(popped);
                }
                return Ok(Received::notification(type_, cont, dest));
            }
            let Some(msg) = data else {
                return Err(ENOTRECOVERABLE());
            };
            if msg.slice_end()? > a.max_offset {
                return Err(ERANGE);
            }
            if a.peek {
                return Ok(self.describe(msg, cont, dest));
            }
            if msg.cargo.is_none() {
                // Nothing to install: the copy is settled and its slice published as it is
                // dequeued, under this lock, which spares taking it again. Nothing fails from
                // the dequeue on, so the copy is not dropped under the lock.
                let out = self.describe(msg, cont, dest);
                let Some((_, Event::Data(mut msg), slot)) = inner.queue.pop_front_reuse() else {
                    return Err(ENOTRECOVERABLE());
                };
                msg.settle_dequeued(&mut inner.limits);
                if let Some(off) = msg.take_slice() {
                    inner.slices.publish(off);
                }
                // Its memory is kept for the next message to this peer, in this critical
                // section too: the copy holds nothing of this peer any more.
                let (unkept, undropped) = match Message::into_room(msg) {
                    Ok(room) => (inner.spare.give(slot, room), None),
                    Err(msg) => (None, Some((msg, slot))),
                };
                self.note_unreadable(inner);
                drop(guard);
                // Both are usually `None` (the spare was taken by the send of this copy, and a
                // copy without cargo holds nothing): checked here, not in a call to their drop.
                if let Some(unkept) = unkept {
                    drop(unkept);
                }
                if let Some(undropped) = undropped {
                    drop(undropped);
                }
                return Ok(out);
            }
            let res = InstallReservation::new(msg, a.install_fds)?;
            let Some((key, Event::Data(msg), slot)) = inner.queue.pop_front_reuse() else {
                return Err(ENOTRECOVERABLE());
            };
            self.note_unreadable(inner);
            drop(guard);
            return self.install(msg, Some(slot), (key.ts(), key.tag()), cont, dest, res);
        }
    }

    /// `RECV` with the seed flag.
    fn recv_seed(self: &Arc<Self>, a: RecvArgs) -> Result<Received> {
        let mut guard = self.lock();
        let msg = guard.seed.as_deref().ok_or(EAGAIN)?;
        if msg.slice_end()? > a.max_offset {
            return Err(ERANGE);
        }
        if a.peek {
            return Ok(self.describe(msg, false, uapi::BUS1_HANDLE_INVALID));
        }
        let res = InstallReservation::new(msg, a.install_fds)?;
        let msg = guard.seed.take().ok_or(EAGAIN)?;
        drop(guard);
        // The seed is not ordered against anything; its handles are delivered if their nodes
        // are still live.
        // Its memory was charged to this peer's own memory cgroup, not to the pool's: not kept.
        self.install(
            msg,
            None,
            (u64::MAX, u64::MAX),
            false,
            uapi::BUS1_HANDLE_INVALID,
            res,
        )
    }

    /// Describes `msg` without installing anything (`PEEK`).
    fn describe(&self, msg: &Message, cont: bool, destination: u64) -> Received {
        let s = msg.sender;
        Received {
            type_: uapi::BUS1_MSG_DATA,
            cont,
            destination,
            offset: msg.slice.unwrap_or(uapi::BUS1_OFFSET_INVALID),
            layout: msg.layout,
            ids: [s.uid, s.gid, s.pid, s.tid],
        }
    }

    /// Installs the dequeued message `msg`, committed at `(ts, tag)`: links its handles, writes their
    /// IDs and the file descriptor numbers into the slice, publishes the slice and installs the
    /// files. Cannot fail after the reservations, except for the copy to the caller. The memory
    /// of the message and of its queue entry `slot` is kept for the next message to this peer.
    fn install(
        self: &Arc<Self>,
        mut msg: KBox<Message>,
        slot: Option<QueueSlot<Event>>,
        at: (u64, u64),
        cont: bool,
        destination: u64,
        mut res: InstallReservation,
    ) -> Result<Received> {
        let out = self.describe(&msg, cont, destination);
        let off = msg.slice.ok_or_else(ENOTRECOVERABLE)?;
        let layout = msg.layout;
        let cargo = msg.cargo.clone();
        let mut delivered: u64 = 0;
        // The message is dequeued: from here on nothing may fail. The reservations cover every
        // allocation, and the pool pages written below were faulted in before the dequeue, so
        // the writes cannot fail for want of memory (a write error would only leave zeros).
        if let Some(cargo) = &cargo {
            let pool = self.pool();
            for (i, node) in cargo.nodes.iter().enumerate() {
                let id = match (node, res.handles.pop()) {
                    (Some(node), Some((hres, holder_res))) => {
                        self.install_handle(node, at, hres, holder_res, &mut res.destroys)
                    }
                    _ => uapi::BUS1_HANDLE_INVALID,
                };
                if id != uapi::BUS1_HANDLE_INVALID {
                    delivered += 1;
                }
                // CAST: `i` is below `n_handles`, a `u64`.
                let at = off + layout.handles_at() + 8 * i as u64;
                let _ = pool.write(at, &id.to_ne_bytes());
            }
            // Every live node's in-flight reference became a user reference or was dropped.
            msg.inflight = false;
            for (i, fd) in res.fds.iter().enumerate() {
                // CAST: As above; fd numbers are non-negative `int`s.
                let at = off + layout.fds_at() + 4 * i as u64;
                let _ = pool.write(at, &(fd.reserved_fd() as i32).to_ne_bytes());
            }
        }
        // Undelivered handles give their charge back; delivered ones keep it as user refs.
        // The published slice keeps its charge until `SLICE_RELEASE`. Dropping `msg` returns
        // the rest: the in-flight bytes and fds, and the sender's share.
        msg.handles_charged = msg.handles_charged.saturating_sub(delivered);
        let off = msg.take_slice();
        if let Some(cargo) = &cargo {
            for (r, file) in res.fds.take_all().zip(cargo.files.iter()) {
                r.fd_install(file.clone());
            }
        }
        // Dropped with no lock held, as everywhere: it gives back the rest of its charge.
        let room = KBox::drop_contents(msg);
        // The slice is published, and the memory kept for the next message to this peer, in
        // one critical section.
        let mut inner = self.lock();
        if let Some(off) = off {
            inner.slices.publish(off);
        }
        let unkept = slot.and_then(|slot| inner.spare.give(slot, room));
        drop(inner);
        drop(unkept);
        Ok(out)
    }

    /// Gives this peer a user reference to `node`, carried by a message committed at
    /// `(ts, tag)`, and returns its ID, or `BUS1_HANDLE_INVALID` if the message is ordered after
    /// the node's destruction. Converts the message's in-flight reference on `node`.
    fn install_handle(
        self: &Arc<Self>,
        node: &Arc<Node>,
        (ts, tag): (u64, u64),
        hres: HandleReservation,
        holder_res: RBTreeNodeReservation<u64, NodeHolder>,
        destroys: &mut LazyVec<QueueSlot<Event>>,
    ) -> u64 {
        // A node gone from its owner is still delivered if the message is ordered before its
        // destruction.
        if node.owner_id() == self.id() {
            // Nothing was reserved for a node of this peer.
            let mut inner = self.lock();
            if inner.nodes.get(&node.serial()).is_none() {
                // The destroying transaction is this peer's own and takes its lock to stamp
                // the node: its position is awaited unlocked.
                drop(inner);
                if !ordered_before_destruction(node, ts, tag) {
                    return uapi::BUS1_HANDLE_INVALID;
                }
                inner = self.lock();
            }
            // The in-flight reference becomes the extra owner reference, which is strong.
            return inner
                .handles
                .acquire(&node.key())
                .unwrap_or(uapi::BUS1_HANDLE_INVALID);
        }
        // Reserved before the dequeue, one per carried node of another peer: the memory of this
        // peer's NODE_DESTROY, kept with a new holder entry or used to join a destruction.
        let Some(destroy) = destroys.pop() else {
            // Cannot happen. Without that memory there is no handle, and the message's in-flight
            // reference goes.
            kernel::warn_on!(true);
            <Peer as Receiver>::put_inflight(node, 1);
            return uapi::BUS1_HANDLE_INVALID;
        };
        let carried = self.register_carried(node, holder_res, destroy);
        self.link_carried(carried, node, (ts, tag), hres)
    }

    /// The first step of installing a handle to `node`, a node of another peer carried by a
    /// message: registers this peer as a holder, turning the message's in-flight reference into
    /// its reference, if the node is live. `destroy` is the memory of this peer's
    /// `NODE_DESTROY`.
    pub(crate) fn register_carried(
        self: &Arc<Self>,
        node: &Arc<Node>,
        holder_res: RBTreeNodeReservation<u64, NodeHolder>,
        destroy: QueueSlot<Event>,
    ) -> Carried {
        let holder = HolderReservation {
            peer: self.clone(),
            id: self.id(),
            res: holder_res,
            destroy,
        };
        match PendingHandle::convert(node, holder) {
            Ok(pending) => Carried::Live(pending),
            Err(holder) => Carried::Gone(holder.destroy),
        }
    }

    /// The second step of installing a handle to a node of another peer, carried by a message
    /// committed at `(ts, tag)`: links it and returns its ID, or `BUS1_HANDLE_INVALID`.
    pub(crate) fn link_carried(
        self: &Arc<Self>,
        carried: Carried,
        node: &Arc<Node>,
        (ts, tag): (u64, u64),
        hres: HandleReservation,
    ) -> u64 {
        let destroy = match carried {
            // Registered while the node was live: a destruction committed since notified this
            // peer, and that notification is still queued unless the queue moved past it.
            Carried::Live(pending) => {
                return pending.link(hres).unwrap_or(uapi::BUS1_HANDLE_INVALID);
            }
            Carried::Gone(destroy) => destroy,
        };
        // A node gone from its owner is still delivered if the message is ordered before its
        // destruction.
        if !ordered_before_destruction(node, ts, tag) {
            return uapi::BUS1_HANDLE_INVALID;
        }
        let mut inner = self.lock();
        // The destruction must reach this peer exactly once, and only if this peer has not yet
        // taken anything ordered after it off its queue (possible when another thread received
        // concurrently); otherwise the handle is not installed at all.
        if let Some((c, otag)) = node.destruction() {
            if !inner.queue.may_join(c, otag) {
                return uapi::BUS1_HANDLE_INVALID;
            }
        }
        let (id, linked) = match inner.handles.acquire(&node.key()) {
            Some(id) => (id, false),
            None => (
                inner
                    .handles
                    .link(node.clone(), None, true, hres)
                    .unwrap_or(uapi::BUS1_HANDLE_INVALID),
                true,
            ),
        };
        // Only a handle linked just now needs to join the destruction: an existing handle was
        // either attached when the node was destroyed or linked by an earlier message that
        // joined it. Should a notification of the same destruction still be queued as well
        // (this peer held a handle and released it), the handle is notified once: see
        // `Handle::destroy_delivered`.
        let mut woke = false;
        if linked && id != uapi::BUS1_HANDLE_INVALID {
            if let Some((c, otag)) = node.destruction() {
                let ev = Event::Destroy(node.clone());
                if let Ok((_, w)) = inner
                    .queue
                    .commit_synthetic(self.clock(), destroy, c, otag, ev)
                {
                    woke = w;
                }
            }
        }
        drop(inner);
        if woke {
            self.wake();
        }
        id
    }
}

/// A handle to a node of another peer, carried by a message, between the two steps of its
/// installation ([`Peer::register_carried`], [`Peer::link_carried`]).
pub(crate) enum Carried {
    /// The node was live: this peer is registered as a holder.
    Live(PendingHandle),
    /// The node was destroyed; the memory of the `NODE_DESTROY` a handle linked now joins.
    Gone(QueueSlot<Event>),
}

/// Dequeues the front entry of the peer whose state is `inner`. The memory of a release
/// notification of a live node goes back to the node, for its next one; anything else is
/// returned, for the caller to drop once it released the lock.
fn pop_front_settled(inner: &mut PeerInner) -> Option<(Event, QueueSlot<Event>)> {
    let (key, ev, slot) = inner.queue.pop_front_reuse()?;
    if let Event::Release(n) = &ev {
        if let Some(st) = inner.nodes.get_mut(&n.serial()) {
            let slot = st.release_dequeued(&key, slot)?;
            return Some((ev, slot));
        }
    }
    Some((ev, slot))
}

/// Whether a message committed at `(ts, tag)` is ordered before the destruction of `node`,
/// which is gone from its owner.
///
/// A destroying transaction removes the node from its owner before it knows its commit
/// timestamp, and stamps the node, under the owner's lock, before it commits anything; in
/// between it stages the notifications of every holder. A receiver that meets the node in that
/// window waits for the stamp (see [`Peer::destruction_of`]), because only the stamp tells
/// whether its message was ordered before the destruction.
fn ordered_before_destruction(node: &Node, ts: u64, tag: u64) -> bool {
    let d = match (node.destruction(), node.owner_peer()) {
        (Some(d), _) => d,
        (None, Some(owner)) => owner.destruction_of(node),
        // The owner's teardown cut its route after it stamped every node of it, and the route
        // is read after the stamp: not reached.
        (None, None) => match node.destruction() {
            Some(d) => d,
            None => {
                kernel::warn_on!(true);
                return false;
            }
        },
    };
    (ts, tag) < d
}

/// Makes sure the pool pages under `[at, at + len)` are present, so that writing there later
/// cannot fail for want of memory.
fn prefault(pool: &Pool, at: u64, len: u64) -> Result {
    const ZEROS: [u8; 256] = [0; 256];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(256);
        // CAST: `n <= 256`.
        pool.write(at + done, &ZEROS[..n as usize])?;
        done += n;
    }
    Ok(())
}
