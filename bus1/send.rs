// SPDX-License-Identifier: GPL-2.0

//! `SEND`: validating the arguments, resolving the destinations and carried handles, building
//! one [`Message`] per destination (charged to its receiver, copied into its pool with the
//! receiver unpinned, with the sender's security context if the receiver asked for it) and
//! staging every copy in one transaction.

#![deny(unsafe_code)]

use crate::{
    ext::{
        errno::{
            EDQUOT,
            EHOSTUNREACH,
            ENOTRECOVERABLE,
            ENOTUNIQ,
            EOPNOTSUPP,
            ESHUTDOWN, //
        },
        fd::IoctlContext,
        file_ext::{
            is_io_uring,
            is_unix_socket, //
        },
        miscdevice::device_of_file,
        shmem::PinnedPage,
        task_ext::{
            current_secctx,
            SenderIds, //
        },
        uaccess_ext::UserPtrExt,
    },
    lazyvec::LazyVec,
    limits::ShareReservations,
    message::{
        Receiver,
        SliceLayout, //
    },
    peer::{
        first_duplicate,
        get_inflight,
        Cargo,
        Event,
        Message,
        Node,
        NodeOp,
        Peer,
        PeerActive,
        Transaction, //
    },
    pool::sender_gfp,
    queue::{
        Queue,
        QueueSlot, //
    },
    quota::Charge,
    recv::ReleaseFirst,
    smallvec::{
        user_sized,
        SmallVec, //
    },
    transaction::{
        commit_unicast,
        unicast, //
    },
    uapi,
};
use core::mem::{
    size_of,
    MaybeUninit, //
};
use kernel::{
    fs::file::File,
    page::PAGE_SIZE,
    prelude::*,
    security::SecurityCtx,
    sync::{
        aref::ARef,
        Arc,
        UniqueArc, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

/// Most iovecs one `SEND` may gather.
const VEC_MAX: u64 = 1024;
/// Largest payload, as for `read(2)` and `write(2)` (`MAX_RW_COUNT`).
const MAX_PAYLOAD: u64 = (i32::MAX as u64) & !4095;

/// The flags `SEND` knows.
pub(crate) const SEND_FLAGS: u64 = uapi::BUS1_SEND_FLAG_CONTINUE | uapi::BUS1_SEND_FLAG_SEED;

/// The sender's security context for one `SEND`: captured when the first receiver that asked for
/// it (`BUS1_PEER_FLAG_WANT_SECCTX`) is met, then shared by all copies. A `SEND` to receivers
/// that did not ask never calls into the security modules.
///
/// The sending task's credentials cannot change during its `SEND` (only a task changes its own),
/// so capturing late is capturing at `SEND`.
struct SenderSecctx {
    /// `None` until captured; then `Some(None)` if no security module provides a context.
    ctx: Option<Option<SecurityCtx>>,
}

impl SenderSecctx {
    fn new() -> Self {
        Self { ctx: None }
    }

    /// Returns the context the copy for `receiver` carries: `None` if the receiver did not ask
    /// for one or there is none. Fails only as capturing it does (`ENOMEM` and such).
    ///
    /// Most receivers ask for none: that answer is inline, the capture is not.
    #[inline(always)]
    fn for_receiver(&mut self, receiver: &Peer) -> Result<Option<&SecurityCtx>> {
        if !receiver.wants_secctx() {
            return Ok(None);
        }
        self.captured()
    }

    /// Returns the context, captured on the first call.
    fn captured(&mut self) -> Result<Option<&SecurityCtx>> {
        if self.ctx.is_none() {
            self.ctx = Some(current_secctx()?);
        }
        Ok(self.ctx.as_ref().and_then(Option::as_ref))
    }
}

/// The sender's IDs for one `SEND`, translated into each receiver's view. Receivers that share a
/// view (the same user and pid namespace, as the peers of one system mostly do) share one
/// translation: a multicast translates once per view, not once per destination.
///
/// The sending task's IDs cannot change during its `SEND` (only a task changes its own
/// credentials, and it is in this call), so a translation holds for the whole `SEND`.
struct SenderViews {
    /// Whether further destinations may come: only then is a translation kept.
    multi: bool,
    /// The receiver last translated for, which keeps its view alive for the comparison, and
    /// the IDs in that view.
    last: Option<(Arc<Peer>, SenderIds)>,
}

impl SenderViews {
    fn new(n_destinations: usize) -> Self {
        Self {
            multi: n_destinations > 1,
            last: None,
        }
    }

    /// Returns the sender's IDs as `receiver` is shown them.
    #[inline]
    fn for_receiver(&mut self, receiver: &Arc<Peer>) -> SenderIds {
        if let Some((peer, ids)) = &self.last {
            if peer.viewer().same_view(receiver.viewer()) {
                return *ids;
            }
        }
        let ids = receiver.viewer().current_sender();
        if self.multi {
            self.last = Some((receiver.clone(), ids));
        }
        ids
    }
}

/// A slice layout without a security context, with its size computed once per `SEND`.
#[derive(Clone, Copy)]
struct SizedLayout {
    layout: SliceLayout,
    size: u64,
}

impl SizedLayout {
    fn new(layout: SliceLayout) -> Self {
        Self {
            layout,
            size: layout.size(),
        }
    }

    /// Returns the layout and size of a copy with room for `secctx` after the file descriptor
    /// numbers, if there is one; a copy without one takes the size computed once.
    #[inline]
    fn with_secctx(self, secctx: Option<&SecurityCtx>) -> (SliceLayout, u64) {
        match secctx {
            None => (self.layout, self.size),
            Some(c) => {
                let layout = SliceLayout {
                    // CAST: A `usize` fits in a `u64`.
                    n_secctx: Some(c.len() as u64),
                    ..self.layout
                };
                (layout, layout.size())
            }
        }
    }
}

/// A copy built by `SEND` and not yet staged. The receiver is not pinned: `msg` keeps it (and
/// its pool) alive, and it is pinned again to stage the copy.
struct Pending {
    /// Room in the receiver's queue.
    slot: QueueSlot<Event>,
    /// The copy, in its own allocation (see [`Event::Data`]).
    msg: KBox<Message>,
    /// The receiver's clock when the copy was charged, a lower bound of its clock from then on.
    clock: u64,
}

impl Peer {
    /// `SEND`.
    pub(crate) fn cmd_send(self: &Arc<Self>, arg: usize, ctx: &IoctlContext) -> Result<isize> {
        let mut slot = MaybeUninit::uninit();
        let s: &uapi::Send = UserPtr::from_addr(arg).read_into(&mut slot)?;
        self.send(s, ctx, &mut ReleaseFirst::none())
    }

    /// `SEND` with its argument already read (also the send stage of `TRANSACT`), running
    /// `first` before its first effect (see [`ReleaseFirst`]).
    #[allow(
        clippy::needless_bitwise_bool,
        reason = "one branch on every check: a valid argument takes no branch per check"
    )]
    pub(crate) fn send(
        self: &Arc<Self>,
        s: &uapi::Send,
        ctx: &IoctlContext,
        first: &mut ReleaseFirst,
    ) -> Result<isize> {
        let seed = s.flags & uapi::BUS1_SEND_FLAG_SEED != 0;
        let cont = s.flags & uapi::BUS1_SEND_FLAG_CONTINUE != 0;
        // Every check is evaluated, and one branch taken on all of them (`|`, not `||`): a valid
        // argument, the common case, passes them in one block. A failing one answers with the
        // error of the first check that fails, in this order.
        let unknown_flags = s.flags & !SEND_FLAGS != 0;
        let too_large = (s.n_destinations > i32::MAX as u64)
            | (s.n_vecs > VEC_MAX)
            | (s.n_fds > uapi::BUS1_FD_MAX);
        let max_ids = self.max_ids();
        let invalid = (s.n_destinations > u64::from(max_ids))
            // Bounded before anything is sized by it: a message can never carry more handles
            // than the sender may hold, nor more than any receiver's user may be charged.
            | (s.n_handles > u64::from(max_ids.min(crate::user::handles_max())))
            | (seed & (cont | (s.n_destinations != 0)));
        if unknown_flags | too_large | invalid {
            return Err(if unknown_flags {
                EINVAL
            } else if too_large {
                EMSGSIZE
            } else {
                EINVAL
            });
        }

        // The payload description: iovecs are only read here; the data is copied once per
        // destination, straight into its pool.
        let mut vecs = SmallVec::new();
        read_vecs(s.ptr_vecs, s.n_vecs, &mut vecs)?;
        // A negative `ssize_t` length is above `MAX_PAYLOAD` as well.
        let n_bytes = vecs
            .iter()
            .try_fold(0u64, |acc, v| acc.checked_add(v.len))
            .filter(|&n| n <= MAX_PAYLOAD)
            .ok_or(EMSGSIZE)?;

        // Nodes created on the fly for unknown unmanaged IDs are pending until the send
        // succeeds (other operations of this peer wait before using them), and undone if it
        // fails.
        let mut op = NodeOp::new(self);
        let res = self.send_prepared(s, ctx, seed, cont, &vecs, n_bytes, &mut op, first);
        if res.is_ok() {
            op.settle();
        }
        res
    }

    /// The part of `SEND` after the argument checks; `op` resolves the IDs.
    #[allow(clippy::too_many_arguments)]
    #[allow(
        clippy::needless_bitwise_bool,
        reason = "one branch on every check: a valid argument takes no branch per check"
    )]
    fn send_prepared(
        self: &Arc<Self>,
        s: &uapi::Send,
        ctx: &IoctlContext,
        seed: bool,
        cont: bool,
        vecs: &[uapi::IoVec],
        n_bytes: u64,
        op: &mut NodeOp<'_>,
        first: &mut ReleaseFirst,
    ) -> Result<isize> {
        let layout = SizedLayout::new(SliceLayout {
            n_bytes,
            n_handles: s.n_handles,
            n_fds: s.n_fds,
            n_secctx: None,
        });
        // One branch on all four fields (see `send()`).
        if (s.n_destinations == 1) & ((s.n_handles | s.n_fds | s.ptr_errors) == 0) & !seed {
            return self.send_plain_unicast(s.ptr_destinations, cont, vecs, layout, op, first);
        }
        // Nothing of this path has had an effect yet: the release comes first.
        first.run(self)?;
        // Carried handles, resolved in the sender; duplicates are allowed.
        let n_handles = usize::try_from(s.n_handles).map_err(|_| EMSGSIZE)?;
        let mut handle_ids = SmallVec::new();
        read_u64s(s.ptr_handles, n_handles, &mut handle_ids)?;
        let mut nodes: LazyVec<Option<Arc<Node>>> =
            LazyVec::with_capacity(n_handles, user_sized(GFP_KERNEL_ACCOUNT))?;
        for &id in handle_ids.iter() {
            let node = op.resolve(id)?;
            nodes.push(Some(node), GFP_KERNEL)?;
        }
        drop(handle_ids);

        // Carried files, pinned from now until the message is received or dropped.
        // CAST: `n_fds` was checked against `BUS1_FD_MAX`.
        let n_fds = s.n_fds as usize;
        let files = read_files(s.ptr_fds, n_fds, ctx)?;
        let mut secctx = SenderSecctx::new();

        if seed {
            // This peer is pinned by the ioctl itself.
            let ctx = secctx.for_receiver(self)?;
            let room = KBox::<Message>::new_uninit(GFP_KERNEL_ACCOUNT)?;
            let Copied::Built(Prepared { mut msg, page, .. }) = prepare_copy(
                Room::Own(room),
                self,
                None,
                layout.with_secctx(ctx),
                self.viewer().current_sender(),
                self.uid(),
            )?
            else {
                // Only a queued copy is ever committed.
                return Err(ENOTRECOVERABLE());
            };
            fill_slice(&msg, page.as_deref(), vecs, ctx)?;
            let cargo = make_cargo(nodes, files, 1)?;
            msg.cargo = cargo;
            msg.inflight = true;
            let old = self.lock().seed.replace(msg);
            drop(old);
            return Ok(0);
        }

        // Destinations, in order: resolve, pin, check, charge, allocate and copy.
        // CAST: `n_destinations` was checked against `i32::MAX`.
        let n_dst = s.n_destinations as usize;
        let mut dst_ids = SmallVec::new();
        read_u64s(s.ptr_destinations, n_dst, &mut dst_ids)?;
        let first_dup = first_duplicate(&dst_ids)?;
        // The per-destination errors, kept only if the caller asked for them.
        let want_errors = s.ptr_errors != 0 && n_dst > 0;
        let mut errors: SmallVec<u64, 8> = SmallVec::new();
        if want_errors {
            errors.reserve(n_dst)?;
        }
        // The first copy is kept apart, so a unicast allocates no list.
        let mut first: Option<Pending> = None;
        let mut pending: LazyVec<Pending> =
            LazyVec::with_capacity(n_dst.saturating_sub(1), user_sized(GFP_KERNEL))?;
        let mut views = SenderViews::new(n_dst);
        for (i, &id) in dst_ids.iter().enumerate() {
            if first_dup == Some(i) {
                return Err(ENOTUNIQ());
            }
            let node = op.resolve(id)?;
            match self.send_one(node, layout, vecs, &mut secctx, &mut views, None) {
                Ok(Copied::Built(p)) => {
                    if first.is_none() {
                        first = Some(p);
                    } else if let Err(p) = pending.push_within_capacity(p) {
                        // Room for every further destination was made above.
                        pending.push(p, GFP_KERNEL)?;
                    }
                    if want_errors {
                        errors.push(0)?;
                    }
                }
                // Not asked for: only a copy built with its origin given is committed.
                Ok(Copied::Committed) => return Err(ENOTRECOVERABLE()),
                Err(e) if cont && is_per_destination(e) => {
                    if want_errors {
                        // CAST: Errno values are small negative integers.
                        errors.push(u64::from(e.to_errno().unsigned_abs()))?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if want_errors {
            let ptr = usize::try_from(s.ptr_errors).map_err(|_| EFAULT)?;
            let mut w = UserSlice::new(UserPtr::from_addr(ptr), n_dst * size_of::<u64>()).writer();
            for e in errors.iter() {
                w.write(e)?;
            }
        }
        let Some(first) = first else {
            return Ok(0);
        };
        let n_copies = pending.len() + 1;

        if pending.is_empty() {
            // One destination: charged already, committed in one critical section of its lock.
            // The cargo allocation is the last thing that can fail.
            let cargo = make_cargo(nodes, files, 1)?;
            let mut p = first;
            p.msg.cargo = cargo;
            p.msg.inflight = true;
            let dst = p.msg.receiver.clone();
            unicast(&**self, &dst, p.slot, Event::Data(p.msg));
            return Ok(0);
        }

        // Everything that can fail comes first, then the point of no return: take the in-flight
        // references and stage every copy.
        let mut tx = Transaction::new(self.clone());
        tx.reserve_remote(n_copies)?;
        // CAST: A count of destinations fits.
        let cargo = make_cargo(nodes, files, n_copies as u64)?;
        // The commit timestamp first, above every receiver's clock when its copy was charged:
        // each copy then stages and syncs its receiver in one critical section, and commits in
        // one more.
        let hint = pending.iter().fold(first.clock, |h, p| h.max(p.clock));
        tx.timestamp_first(hint);
        let mut stage = |mut p: Pending| {
            p.msg.cargo = cargo.clone();
            p.msg.inflight = true;
            // A receiver that shut down since its copy was made is gone with everything it
            // would have received: the copy is dropped, which nobody can tell from a delivery
            // followed by the receiver's flush.
            if let Ok(dst) = PeerActive::acquire(p.msg.receiver.clone()) {
                tx.stage_remote_pinned(dst, p.slot, Event::Data(p.msg));
            }
        };
        stage(first);
        for p in pending.into_kvec() {
            stage(p);
        }
        tx.commit();
        Ok(0)
    }

    /// [`Peer::send_prepared`] of the most common message: one destination, whose ID is at user
    /// address `ptr`, no handles, no files (`layout` has none), no error array. The same steps in
    /// the same order as the general path, without the lists it keeps for handles, files and
    /// further destinations, and their drops (about 30 branches of a small message's `SEND`).
    fn send_plain_unicast(
        self: &Arc<Self>,
        ptr: u64,
        cont: bool,
        vecs: &[uapi::IoVec],
        layout: SizedLayout,
        op: &mut NodeOp<'_>,
        first: &mut ReleaseFirst,
    ) -> Result<isize> {
        let ptr = usize::try_from(ptr).map_err(|_| EFAULT)?;
        let id = UserPtr::from_addr(ptr).get()?;
        // The release comes first, in the critical section of this peer that resolving the
        // destination takes anyway.
        let node = op.resolve_after(id, |inner| first.run_locked(self, inner))?;
        let mut secctx = SenderSecctx::new();
        let mut views = SenderViews::new(1);
        let p = match self.send_one(node, layout, vecs, &mut secctx, &mut views, Some(self)) {
            Ok(Copied::Built(p)) => p,
            Ok(Copied::Committed) => return Ok(0),
            Err(e) if cont && is_per_destination(e) => return Ok(0),
            Err(e) => return Err(e),
        };
        // No cargo: the copy holds no in-flight references (see `Message`).
        let dst = p.msg.receiver.clone();
        unicast(&**self, &dst, p.slot, Event::Data(p.msg));
        Ok(0)
    }

    /// Builds the copy of a message for the node `node`: pins its owner, checks the node is
    /// live, charges the owner and allocates the slice (with room for the sender's security
    /// context if the owner asked for it); then unpins it and copies the payload and the context.
    ///
    /// The copy reads the sender's memory, which can take forever (a page that never faults
    /// in), so it holds nothing the receiver's teardown waits for: the allocated, unpublished
    /// slice is the sender's until the message is staged or dropped. A receiver that shut down
    /// meanwhile gets nothing, and the sender `ESHUTDOWN`, as if it had shut down first.
    ///
    /// With `unicast`, the origin of a message that has no other destination, a copy with
    /// nothing to write into its slice may be committed in the critical section that charges
    /// it (see [`prepare_copy`]).
    fn send_one(
        &self,
        node: Arc<Node>,
        layout: SizedLayout,
        vecs: &[uapi::IoVec],
        secctx: &mut SenderSecctx,
        views: &mut SenderViews,
        unicast: Option<&Peer>,
    ) -> Result<Copied<Pending>> {
        let ctx;
        let prepared = {
            let dst = PeerActive::acquire_owner(&node)?;
            let receiver = dst.peer();
            ctx = secctx.for_receiver(receiver)?;
            // In the receiver's view, which is fixed when it was opened: what translating at
            // `RECV` would show, with no reference to the sender's pids.
            let sender = views.for_receiver(receiver);
            // The queue entry, the share entries and the slice's bookkeeping are the receiver's
            // to keep, so they are charged to its memory cgroup (and fail with `EDQUOT` when it
            // is full), as its pool pages are.
            receiver.pool().charge_for_sender(|| {
                prepare_copy(
                    Room::Queued(unicast),
                    receiver,
                    Some(node),
                    layout.with_secctx(ctx),
                    sender,
                    self.uid(),
                )
            })?
        };
        let Prepared {
            msg,
            slot,
            clock,
            page,
        } = match prepared {
            Copied::Built(p) => p,
            Copied::Committed => return Ok(Copied::Committed),
        };
        let slot = slot.ok_or_else(ENOTRECOVERABLE)?;
        // An empty payload without a context (a notification) has nothing to copy.
        if !vecs.is_empty() || ctx.is_some() {
            fill_slice(&msg, page.as_deref(), vecs, ctx)?;
        }
        drop(page);
        if msg.receiver.is_shutdown() {
            return Err(ESHUTDOWN());
        }
        Ok(Copied::Built(Pending { slot, msg, clock }))
    }
}

/// Whether `e` concerns one destination only, so `SEND_FLAG_CONTINUE` skips that destination.
fn is_per_destination(e: Error) -> bool {
    e == EHOSTUNREACH() || e == ESHUTDOWN() || e == EDQUOT() || e == crate::ext::errno::EXFULL()
}

/// What became of a copy.
enum Copied<T> {
    /// Built, to be filled (if it has anything to write) and queued by the caller.
    Built(T),
    /// Queued, committed in the critical section that charged it.
    Committed,
}

/// A copy [`prepare_copy`] made.
struct Prepared {
    /// The copy, charged, with its slice.
    msg: KBox<Message>,
    /// Its queue entry, for [`Room::Queued`].
    slot: Option<QueueSlot<Event>>,
    /// The receiver's queue clock when the copy was charged.
    clock: u64,
    /// The pool page the slice lies in, if it is a slab's.
    page: Option<Arc<PinnedPage>>,
}

/// Where [`prepare_copy`] builds a copy.
enum Room<'a> {
    /// In memory the caller allocated (the seed, which is not queued).
    Own(KBox<MaybeUninit<Message>>),
    /// With its queue entry: in the memory of the last message the receiver received, if it
    /// kept it, else in memory allocated for the receiver. With the origin of a unicast, a copy
    /// that has nothing to write into its slice and finds that memory kept is committed in the
    /// critical section that charges it.
    Queued(Option<&'a Peer>),
}

/// Prepares a copy for `peer`, which the caller pins, sent by the user `sender_uid`: checks
/// that the destination node is live, charges the peer and its user a slice, the slice's bytes,
/// the handles and the fds (subject to the quota), and allocates the slice, which stays
/// unpublished (no flush touches it) until the message is received or dropped. `layout` comes
/// with its size. Returns the copy, built as `room` says, with its queue entry for
/// [`Room::Queued`], the peer's queue clock when it was charged, and the pool page the slice
/// lies in if it is a slab's (see [`crate::pool::Pool::alloc`]); or, for [`Room::Queued`] with
/// the origin of a unicast, nothing, if it committed the copy.
fn prepare_copy(
    room: Room<'_>,
    peer: &Arc<Peer>,
    node: Option<Arc<Node>>,
    (layout, size): (SliceLayout, u64),
    sender: SenderIds,
    sender_uid: u32,
) -> Result<Copied<Prepared>> {
    let c = Message::charge_of(&layout, size);
    // The destination node must be live; checked under the same lock as the first charge
    // attempt and the slice's allocation, so a unicast takes the receiver's lock once here.
    let mut inner = peer.lock();
    let clock = peer.clock().get();
    if let Some(n) = &node {
        if inner.nodes.get(&n.serial()).is_none() {
            return Err(EHOSTUNREACH());
        }
    }
    // What can never fit is refused before the quota is asked.
    if size > peer.pool().size() {
        return Err(EMSGSIZE);
    }
    let shared = if sender_uid == peer.uid() {
        // A user's messages to itself are bounded by its own limits only: the quota protects a
        // receiver from other users.
        inner.limits.charge(&c)?;
        Charge::default()
    } else {
        // A message from a sender that holds no share here needs share entries; they are
        // allocated unlocked, only once the charge is known to be allowed.
        if !inner.limits.charge_quota(sender_uid, &c, None)? {
            drop(inner);
            let res = ShareReservations::new(sender_gfp())?;
            inner = peer.lock();
            if !inner.limits.charge_quota(sender_uid, &c, Some(res))? {
                return Err(ENOTRECOVERABLE());
            }
        }
        c
    };
    // Only a slice that is written (a payload or a security context) needs its page.
    let fill = layout.n_bytes > 0 || layout.n_secctx.is_some_and(|n| n > 0);
    // Under the lock of the charge: a slice that does not fit gives the charge back before
    // anyone could see it.
    let (off, page) = match peer.pool().alloc(&mut inner.slices, size, fill) {
        Ok(slice) => slice,
        Err(e) => {
            inner.limits.release(sender_uid, &shared, &c);
            return Err(e);
        }
    };
    // The memory of the last message the peer received, if it kept it, in the same critical
    // section.
    let kept = match room {
        Room::Queued(_) => inner.spare.take(),
        Room::Own(_) => None,
    };
    // Nothing to write into the slice, and the memory for the message at hand: the copy is
    // complete once built, and the origin of a unicast commits it in this critical section, as
    // `unicast` would commit it in one of its own (which is where a copy goes that has to be
    // filled first, or built in memory allocated unlocked).
    let locked = match (&room, &kept) {
        (Room::Queued(Some(origin)), Some(_)) if !fill => Some((*origin, inner)),
        _ => {
            drop(inner);
            None
        }
    };
    let (slot, room) = match (room, kept) {
        (Room::Own(room), _) => (None, room),
        (Room::Queued(_), Some((slot, room))) => (Some(slot), room),
        // Never `locked`, which needs the kept memory.
        (Room::Queued(_), None) => match new_pair() {
            Ok((slot, room)) => (Some(slot), room),
            Err(e) => {
                peer.give_back(Some(off), sender_uid, &shared, &c);
                return Err(e);
            }
        },
    };
    // From here on, dropping `msg` gives back what was charged and the slice. Built in place,
    // field by field (no message-sized copy from the stack), as the message is moved by
    // pointer from here on.
    let Ok(msg) = room.write_init(init!(Message {
        receiver: peer.clone(),
        node,
        slice: Some(off),
        layout,
        size,
        sender,
        cargo: None,
        handles_charged: layout.n_handles,
        sender_uid,
        slice_charged: true,
        rest_charged: true,
        shared: !shared.is_zero(),
        inflight: false,
    }));
    match (locked, slot) {
        (Some((origin, mut inner)), Some(slot)) => {
            let res = commit_unicast(origin, peer, &mut inner.queue, slot, Event::Data(msg));
            drop(inner);
            match res {
                Ok((_, wake)) => {
                    if wake {
                        peer.wake();
                    }
                    Ok(Copied::Committed)
                }
                // The receiver shut down (the only refusal, see `commit_unicast`); the copy is
                // dropped unlocked, which gives its charge back.
                Err(refused) => {
                    drop(refused);
                    Err(ESHUTDOWN())
                }
            }
        }
        // `locked` always comes with a slot: here the lock is released already.
        (locked, slot) => {
            drop(locked);
            Ok(Copied::Built(Prepared {
                msg,
                slot,
                clock,
                page,
            }))
        }
    }
}

/// Allocates a queue entry and the memory of a message for a receiver whose memory cgroup is
/// active (see [`crate::pool::Pool::charge_for_sender`]).
fn new_pair() -> Result<(QueueSlot<Event>, KBox<MaybeUninit<Message>>)> {
    Ok((
        Queue::reserve(sender_gfp())?,
        KBox::<Message>::new_uninit(sender_gfp())?,
    ))
}

/// Copies the payload described by `vecs` from the sender's memory into the slice of `msg`, and
/// `secctx`, which the layout of `msg` has room for, after the file descriptor numbers.
///
/// A slice of a slab lies within `page`, its pinned pool page, and is written through it without
/// a page-cache lookup; a large slice (`page` is `None`) through the pool file.
fn fill_slice(
    msg: &Message,
    page: Option<&PinnedPage>,
    vecs: &[uapi::IoVec],
    secctx: Option<&SecurityCtx>,
) -> Result {
    let off = msg.slice.ok_or_else(ENOTRECOVERABLE)?;
    let pool = msg.receiver.pool();
    // CAST: The remainder is below the page size.
    let in_page = |at: u64| (at % PAGE_SIZE as u64) as usize;
    let mut at = off;
    for v in vecs.iter() {
        if v.len == 0 {
            continue;
        }
        let base = usize::try_from(v.base).map_err(|_| EFAULT)?;
        let len = usize::try_from(v.len).map_err(|_| EFAULT)?;
        match page {
            Some(p) => p.write_from_user(in_page(at), UserPtr::from_addr(base), len)?,
            None => pool.write_from_user(at, UserPtr::from_addr(base), len)?,
        }
        at += v.len;
    }
    if let Some(ctx) = secctx {
        if !ctx.is_empty() {
            let at = off + msg.layout.secctx_at();
            match page {
                Some(p) => p.write(in_page(at), ctx.as_bytes())?,
                None => pool.write_for_sender(at, ctx.as_bytes())?,
            }
        }
    }
    Ok(())
}

/// Takes `n` in-flight references on every live carried node and wraps the cargo for sharing;
/// a message with neither handles nor files has none, and allocates nothing for it.
///
/// The only failure, out of memory, happens before any reference is taken. Inline, for the
/// answer of a message without either; the cargo is built out of line.
#[inline(always)]
fn make_cargo(
    nodes: LazyVec<Option<Arc<Node>>>,
    files: LazyVec<ARef<File>>,
    n: u64,
) -> Result<Option<Arc<Cargo>>> {
    if nodes.is_empty() && files.is_empty() {
        return Ok(None);
    }
    build_cargo(nodes, files, n).map(Some)
}

/// [`make_cargo`] for a message with handles or files.
fn build_cargo(
    nodes: LazyVec<Option<Arc<Node>>>,
    files: LazyVec<ARef<File>>,
    n: u64,
) -> Result<Arc<Cargo>> {
    let cargo = Cargo {
        nodes: nodes.into_kvec(),
        files: files.into_kvec(),
    };
    let mut cargo = UniqueArc::new(cargo, GFP_KERNEL_ACCOUNT)?;
    for slot in cargo.nodes.iter_mut() {
        if let Some(node) = slot {
            if !get_inflight(node, n) {
                *slot = None;
            }
        }
    }
    Ok(cargo.into())
}

/// Reads `n` iovecs from user address `ptr` into `vecs`, which is empty.
fn read_vecs(ptr: u64, n: u64, vecs: &mut SmallVec<uapi::IoVec, 8>) -> Result {
    // CAST: `n` was checked against `VEC_MAX`.
    let n = n as usize;
    let ptr = usize::try_from(ptr).map_err(|_| EFAULT)?;
    if n == 1 {
        // The common case, one buffer: its two words read in one user access scope, no copy
        // call.
        let mut slot = MaybeUninit::uninit();
        *vecs = SmallVec::One(*UserPtr::from_addr(ptr).read_into(&mut slot)?);
    } else if n > 1 {
        let mut r = UserSlice::new(UserPtr::from_addr(ptr), n * size_of::<uapi::IoVec>()).reader();
        vecs.reserve(n)?;
        for _ in 0..n {
            vecs.push(r.read()?)?;
        }
    }
    Ok(())
}

/// Reads `n` `u64`s from user address `ptr` into `out`, which is empty: one access for one
/// (the destination of every unicast), else one copy. Inline, as most `SEND`s read none (the
/// handles) and one (the destination).
#[inline(always)]
fn read_u64s(ptr: u64, n: usize, out: &mut SmallVec<u64, 8>) -> Result {
    let ptr = usize::try_from(ptr).map_err(|_| EFAULT)?;
    match n {
        0 => Ok(()),
        1 => {
            *out = SmallVec::One(UserPtr::from_addr(ptr).get()?);
            Ok(())
        }
        _ => read_u64s_copy(ptr, n, out),
    }
}

/// [`read_u64s`] of more than one value: one copy.
fn read_u64s_copy(ptr: usize, n: usize, out: &mut SmallVec<u64, 8>) -> Result {
    let len = n.checked_mul(size_of::<u64>()).ok_or(EMSGSIZE)?;
    let mut r = UserSlice::new(UserPtr::from_addr(ptr), len).reader();
    r.read_slice(out.fill_default(n)?.as_mut_bytes())
}

/// Reads `n` file descriptors from user address `ptr` and takes their files, refusing bus1
/// peers, `AF_UNIX` sockets and io_uring instances, which could form reference cycles only a
/// GC could break.
fn read_files(ptr: u64, n: usize, ctx: &IoctlContext) -> Result<LazyVec<ARef<File>>> {
    let ptr = usize::try_from(ptr).map_err(|_| EFAULT)?;
    let mut r = UserSlice::new(UserPtr::from_addr(ptr), n * size_of::<i32>()).reader();
    let mut out = LazyVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
    for _ in 0..n {
        let fd: i32 = r.read()?;
        let fd = u32::try_from(fd).map_err(|_| EBADF)?;
        let file = ctx.fget(fd)?;
        if device_of_file::<Peer>(&file).is_some() || is_unix_socket(&file) || is_io_uring(&file) {
            return Err(EOPNOTSUPP());
        }
        out.push(file, GFP_KERNEL)?;
    }
    Ok(out)
}

#[kunit_tests(bus1_send)]
mod tests {
    use super::*;
    use crate::{
        ext::errno::EXFULL,
        pool::PoolSize,
        quota::N_RES, //
    };

    /// A UID no real test task uses, for a sender of another user.
    const OTHER: u32 = 0x7fff_0054;

    /// What `peer` has charged, at the peer and at its user's level, and the number of senders
    /// holding a share at both levels.
    fn accounts(peer: &Peer) -> ([i64; N_RES], [i64; N_RES], (u64, u64)) {
        let inner = peer.lock();
        let l = &inner.limits;
        let u = l.user.user().ledger();
        (
            core::array::from_fn(|r| l.ledger.used(r)),
            core::array::from_fn(|r| u.used(r)),
            (l.ledger.senders(), u.senders()),
        )
    }

    /// Prepares a copy of `size` payload bytes for `peer` from the user `uid`, as `SEND` does for
    /// one destination (with no node to check).
    fn copy(peer: &Arc<Peer>, size: u64, uid: u32) -> Result<KBox<Message>> {
        let layout = SliceLayout {
            n_bytes: size,
            n_handles: 0,
            n_fds: 0,
            n_secctx: None,
        };
        let ids = SenderIds {
            uid,
            gid: uid,
            pid: 0,
            tid: 0,
        };
        let room = Room::Own(KBox::<Message>::new_uninit(GFP_KERNEL)?);
        match prepare_copy(room, peer, None, (layout, layout.size()), ids, uid)? {
            Copied::Built(p) => Ok(p.msg),
            Copied::Committed => Err(EINVAL),
        }
    }

    /// Prepares a copy of `size` payload bytes for `peer` from `origin` as the single
    /// destination of a unicast, as `SEND` does when the message has no other destination.
    fn unicast_copy(origin: &Peer, peer: &Arc<Peer>, size: u64) -> Result<Copied<Prepared>> {
        let layout = SliceLayout {
            n_bytes: size,
            n_handles: 0,
            n_fds: 0,
            n_secctx: None,
        };
        let uid = origin.uid();
        let ids = SenderIds {
            uid,
            gid: uid,
            pid: 0,
            tid: 0,
        };
        let room = Room::Queued(Some(origin));
        prepare_copy(room, peer, None, (layout, layout.size()), ids, uid)
    }

    /// Gives `peer` the memory of a received message to keep, as `RECV` does.
    fn keep_pair(peer: &Peer) -> Result {
        let (slot, room) = (Queue::reserve(GFP_KERNEL)?, KBox::new_uninit(GFP_KERNEL)?);
        let refused = peer.lock().spare.give(slot, room);
        drop(refused);
        Ok(())
    }

    #[test]
    fn an_empty_unicast_commits_in_the_section_that_charges_it() -> Result {
        let a = Peer::new()?;
        let b = Peer::with_pool(PoolSize::with_bytes(1 << 20))?;
        // Nothing kept: the memory is allocated unlocked, and the copy built for the caller to
        // queue in a critical section of its own.
        let Copied::Built(p) = unicast_copy(&a, &b, 0)? else {
            return Err(EINVAL);
        };
        drop(p);
        // A payload to write: built, to be filled first, memory kept or not.
        keep_pair(&b)?;
        let Copied::Built(p) = unicast_copy(&a, &b, 8)? else {
            return Err(EINVAL);
        };
        drop(p);
        assert!(b.lock().queue.is_empty());
        // Nothing to write and the memory kept: committed as it is charged, readable at once,
        // in the order of a unicast (above both clocks, tagged with the origin).
        keep_pair(&b)?;
        for _ in 0..3 {
            b.clock().tick();
        }
        let before = a.clock().get().max(b.clock().get());
        let Copied::Committed = unicast_copy(&a, &b, 0)? else {
            return Err(EINVAL);
        };
        assert!(b.maybe_readable());
        let popped = b.lock().queue.pop_front();
        let (key, ev, _) = popped.ok_or(EINVAL)?;
        assert_eq!((key.ts(), key.tag()), (before + 2, a.id()));
        assert!(a.clock().get() >= key.ts() && b.clock().get() >= key.ts());
        // The kept memory went into it.
        assert!(b.lock().spare.take().is_none());
        drop(ev);
        b.disconnect()?;
        // A receiver that shut down refuses it, and the charge is given back.
        keep_pair(&b)?;
        assert!(matches!(unicast_copy(&a, &b, 0), Err(e) if e == ESHUTDOWN()));
        assert!(accounts(&b).0.iter().all(|&n| n == 0));
        a.disconnect()
    }

    #[test]
    fn a_received_copy_without_cargo_leaves_its_memory() -> Result {
        let peer = Peer::with_pool(PoolSize::with_bytes(1 << 20))?;
        // As SEND queues a unicast: in flight, with no cargo to hold references for.
        let mut msg = copy(&peer, 8, peer.uid())?;
        msg.inflight = true;
        // Charged, with its slice: its memory cannot be taken yet.
        let Err(mut msg) = Message::into_room(msg) else {
            return Err(EINVAL);
        };
        // As RECV leaves it: settled, its slice published. Then it holds nothing, and its
        // memory is there for the next message.
        let off = {
            let mut inner = peer.lock();
            msg.settle_dequeued(&mut inner.limits);
            let off = msg.take_slice().ok_or(EINVAL)?;
            inner.slices.publish(off);
            off
        };
        assert!(Message::into_room(msg).is_ok());
        peer.slice_release(off)?;
        peer.disconnect()
    }

    #[test]
    fn a_slice_that_does_not_fit_gives_the_charge_back() -> Result {
        let peer = Peer::with_pool(PoolSize::with_bytes(1 << 20))?;
        let first = copy(&peer, 600 << 10, peer.uid())?;
        let before = accounts(&peer);
        // Charged, then refused by the pool: the charge is given back in the same critical
        // section, for the peer's own user and for another user, whose share, made for this
        // charge, goes with it.
        assert_eq!(copy(&peer, 600 << 10, peer.uid()).err(), Some(EXFULL()));
        assert!(accounts(&peer) == before);
        assert_eq!(copy(&peer, 600 << 10, OTHER).err(), Some(EXFULL()));
        assert!(accounts(&peer) == before);
        // With the first slice freed, the same copy fits.
        drop(first);
        let second = copy(&peer, 600 << 10, OTHER)?;
        assert_eq!(accounts(&peer).2, (1, 1));
        drop(second);
        assert_eq!(accounts(&peer).2, (0, 0));
        peer.disconnect()
    }
}
