// SPDX-License-Identifier: GPL-2.0

//! Data messages: `SEND`, the data part of `RECV`, `SLICE_RELEASE` and the seed.
//!
//! A `SEND` builds one [`Message`] per destination. Each copy owns a slice in its receiver's
//! pool, into which the payload is copied once, straight from the sender's iovecs, before the
//! copy is staged. Handles and files travel in a [`Cargo`] shared by all copies of one `SEND`.
//! `RECV` turns the front copy into handles, file descriptors and a published slice.
//!
//! # Resources a queued copy holds
//!
//! - its slice (freed when the copy is dropped unreceived; after `RECV` it belongs to the
//!   receiver until `SLICE_RELEASE`), charged as one slice to the receiver and its user;
//! - `n_handles` handle references charged to them (kept for handles delivered by `RECV`, which
//!   become user references, and returned for the rest);
//! - the slice's size in in-flight bytes and `n_fds` in-flight file descriptors, charged to them
//!   until the copy is received or dropped;
//! - all of the above as the sending user's share of the receiver's resources, which the quota
//!   bounds (see [`crate::quota`]), until the copy is received or dropped;
//! - one in-flight strong reference on every carried node that was live at `SEND`, which keeps
//!   `NODE_RELEASE` from firing while the message is in flight.
//!
//! Dropping a copy gives all of that back, which takes the receiver's lock, its pool lock and the
//! carried nodes' owners' locks. **A [`Message`] is therefore never dropped while any peer lock
//! is held**: queues hand removed entries out (or detach them without allocating) so that the
//! caller drops them after unlocking.

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
        fd::{
            reserve_cloexec,
            IoctlContext, //
        },
        file_ext::{
            is_io_uring,
            is_unix_socket, //
        },
        miscdevice::device_of_file,
        task_ext::SenderIds,
    },
    node::{
        HandleReservation,
        Holder,
        Node, //
    },
    peer::{
        first_duplicate,
        put_strong,
        Event,
        Limits,
        NodeHolder,
        NodeOp,
        Peer,
        PeerActive,
        PeerInner,
        ShareReservations, //
    },
    pool::Pool,
    queue::{
        Queue,
        QueueSlot, //
    },
    quota::{
        self,
        Charge, //
    },
    smallvec::SmallVec,
    transaction::Transaction,
    uapi,
};
use core::mem::size_of;
use kernel::{
    fs::file::{
        File,
        FileDescriptorReservation, //
    },
    prelude::*,
    rbtree::RBTreeNodeReservation,
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

/// Rounds `n` up to a multiple of 8, saturating (sizes are bounded far below `u64::MAX`).
fn align8(n: u64) -> u64 {
    n.saturating_add(7) & !7
}

/// The layout of a data slice: payload, then handle IDs, then file descriptor numbers.
#[derive(Clone, Copy)]
pub(crate) struct SliceLayout {
    /// Payload size.
    pub(crate) n_bytes: u64,
    /// Number of handle IDs.
    pub(crate) n_handles: u64,
    /// Number of file descriptors.
    pub(crate) n_fds: u64,
}

impl SliceLayout {
    /// Offset of the handle IDs within the slice.
    fn handles_at(&self) -> u64 {
        align8(self.n_bytes)
    }

    /// Offset of the file descriptor numbers within the slice.
    fn fds_at(&self) -> u64 {
        self.handles_at()
            .saturating_add(self.n_handles.saturating_mul(8))
    }

    /// Size of the slice; an empty message still takes 8 bytes.
    fn size(&self) -> u64 {
        self.fds_at()
            .saturating_add(align8(self.n_fds.saturating_mul(4)))
            .max(8)
    }
}

/// What one `SEND` carries besides its payload, shared by all of its copies.
pub(crate) struct Cargo {
    /// Carried nodes; [`None`] for one that was no longer live at `SEND`.
    nodes: KVec<Option<Arc<Node>>>,
    /// Carried files, pinned until the last copy is received or dropped.
    files: KVec<ARef<File>>,
}

/// One copy of a data message, queued on (or, for the seed, stored in) its receiver.
///
/// # Invariants
///
/// - `slice` is allocated in `receiver`'s pool and not published, if it is `Some`.
/// - `charged` is charged to `receiver` and its user; `shared` is part of `sender_uid`'s share
///   at both levels.
/// - `charged[SLICES]` is 0 once the slice was published (it is then charged until
///   `SLICE_RELEASE`), 1 before.
/// - If `inflight`, every live node in `cargo` holds one strong reference for this copy.
pub(crate) struct Message {
    /// The peer whose pool holds the slice and whose limits were charged.
    receiver: Arc<Peer>,
    /// The destination node (owned by `receiver`); [`None`] for the seed.
    node: Option<Arc<Node>>,
    /// The slice's pool offset until it is published.
    slice: Option<u64>,
    /// The slice layout.
    layout: SliceLayout,
    /// Who sent it.
    sender: SenderIds,
    /// Handles and files.
    cargo: Option<Arc<Cargo>>,
    /// The sending user (global UID).
    sender_uid: u32,
    /// What this copy holds of the receiver's resources.
    charged: Charge,
    /// What of that counts as the sending user's share.
    shared: Charge,
    /// Whether the carried nodes hold this copy's in-flight references.
    inflight: bool,
}

impl Message {
    /// Returns the destination node.
    pub(crate) fn node(&self) -> Option<&Arc<Node>> {
        self.node.as_ref()
    }

    /// Gives back what a dequeued copy without cargo holds, except its slice: its in-flight
    /// bytes and the sender's share. `limits` are the receiver's, whose lock the caller holds.
    fn settle_dequeued(&mut self, limits: &mut Limits) {
        let slices = Charge::one(quota::SLICES, self.charged.0[quota::SLICES]);
        let mut rest = self.charged;
        rest.0[quota::SLICES] = 0;
        limits.release(self.sender_uid, &self.shared, &rest);
        // INVARIANTS: What is left charged is the slice, until it is published.
        self.charged = slices;
        self.shared = Charge::default();
    }

    /// Returns the end of the slice, for `RECV`'s `max_offset` check.
    fn slice_end(&self) -> Result<u64> {
        let off = self.slice.ok_or(ENOTRECOVERABLE())?;
        Ok(off.saturating_add(self.layout.size()))
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        if let Some(off) = self.slice.take() {
            self.receiver.pool().free(off);
        }
        if !self.charged.is_zero() || !self.shared.is_zero() {
            self.receiver
                .lock()
                .limits
                .release(self.sender_uid, &self.shared, &self.charged);
        }
        if self.inflight {
            if let Some(cargo) = &self.cargo {
                for node in cargo.nodes.iter().flatten() {
                    put_inflight(node, 1);
                }
            }
        }
    }
}

/// Drops `n` in-flight strong references on `node`, queueing a release notification on its
/// owner if they were the last strong references. Takes the owner's lock.
fn put_inflight(node: &Arc<Node>, n: u64) {
    let owner = node.owner();
    // A message is dropped where nothing can fail (a flush, a close, or the undoing of a
    // failed send); the owner's `NODE_RELEASE` uses the memory the node keeps for it.
    let wake = put_strong(owner.id(), &mut owner.lock(), node.serial(), None, n);
    if wake {
        owner.wake();
    }
}

/// Takes `n` in-flight strong references on `node` if it is live. Takes the owner's lock.
fn get_inflight(node: &Arc<Node>, n: u64) -> bool {
    let mut guard = node.owner().lock();
    let inner = &mut *guard;
    let Some(st) = inner.nodes.get_mut(&node.serial()) else {
        return false;
    };
    st.n_strong = st.n_strong.saturating_add(n);
    if let Some(key) = st.release.take() {
        // Not dropped here: a release notification holds no message.
        if let Some((_, slot, _)) = inner.queue.remove_reuse(&key) {
            st.release_slot = Some(slot);
        }
    }
    true
}

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
    handles: KVec<(HandleReservation, RBTreeNodeReservation<u64, NodeHolder>)>,
    /// One per carried file, if they are to be installed.
    fds: KVec<FileDescriptorReservation>,
    /// One per carried node of another peer that was already destroyed, for the
    /// `NODE_DESTROY` the receiver gets with a handle installed after the destruction (see
    /// [`Peer::install_handle`]).
    destroys: KVec<QueueSlot<Event>>,
}

impl InstallReservation {
    /// Reserves what installing `msg` needs, including the pool pages its handle IDs and fd
    /// numbers will be written to; `EMFILE`, `ENOMEM` and friends leave the message queued.
    fn new(msg: &Message, install_fds: bool) -> Result<Self> {
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
        let mut handles = KVec::with_capacity(n_handles, GFP_KERNEL)?;
        for _ in 0..n_handles {
            handles.push(
                (
                    HandleReservation::new()?,
                    RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?,
                ),
                GFP_KERNEL,
            )?;
        }
        let mut fds = KVec::new();
        if install_fds {
            let n_fds = usize::try_from(msg.layout.n_fds)?;
            fds.reserve(n_fds, GFP_KERNEL)?;
            for _ in 0..n_fds {
                fds.push(reserve_cloexec()?, GFP_KERNEL)?;
            }
        }
        // A carried node of another peer may be destroyed before its handle is installed, and
        // the handle then joins the destruction with a notification of its own: its memory is
        // reserved here, so nothing is allocated once the message is dequeued.
        let mut destroys = KVec::new();
        if let Some(cargo) = &msg.cargo {
            for node in cargo.nodes.iter().flatten() {
                if !Arc::ptr_eq(node.owner(), &msg.receiver) {
                    destroys.push(Queue::reserve(GFP_KERNEL_ACCOUNT)?, GFP_KERNEL)?;
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

/// The flags `SEND` knows.
pub(crate) const SEND_FLAGS: u64 = uapi::BUS1_SEND_FLAG_CONTINUE | uapi::BUS1_SEND_FLAG_SEED;

/// A copy built by `SEND` and not yet staged. The receiver is not pinned: `msg` keeps it (and
/// its pool) alive, and it is pinned again to stage the copy.
struct Pending {
    /// Room in the receiver's queue.
    slot: QueueSlot<Event>,
    /// The copy.
    msg: Message,
}

impl Peer {
    /// `SEND`.
    pub(crate) fn cmd_send(self: &Arc<Self>, arg: usize, ctx: &IoctlContext) -> Result<isize> {
        let s: uapi::Send = UserSlice::new(UserPtr::from_addr(arg), size_of::<uapi::Send>())
            .reader()
            .read()?;
        self.send(&s, ctx)
    }

    /// `SEND` with its argument already read (also the send stage of `TRANSACT`).
    pub(crate) fn send(self: &Arc<Self>, s: &uapi::Send, ctx: &IoctlContext) -> Result<isize> {
        if s.flags & !SEND_FLAGS != 0 {
            return Err(EINVAL);
        }
        if s.n_destinations > i32::MAX as u64 || s.n_vecs > VEC_MAX || s.n_fds > uapi::BUS1_FD_MAX {
            return Err(EMSGSIZE);
        }
        if s.n_destinations > u64::from(self.max_ids()) {
            return Err(EINVAL);
        }
        // Bounded before anything is sized by it: a message can never carry more handles than
        // the sender may hold, nor more than any receiver's user may be charged.
        if s.n_handles > u64::from(self.max_ids().min(crate::user::handles_max())) {
            return Err(EINVAL);
        }
        let seed = s.flags & uapi::BUS1_SEND_FLAG_SEED != 0;
        let cont = s.flags & uapi::BUS1_SEND_FLAG_CONTINUE != 0;
        if seed && (cont || s.n_destinations != 0) {
            return Err(EINVAL);
        }

        // The payload description: iovecs are only read here; the data is copied once per
        // destination, straight into its pool.
        let vecs = read_vecs(s.ptr_vecs, s.n_vecs)?;
        let n_bytes = vecs
            .iter()
            .try_fold(0u64, |acc, v| acc.checked_add(v.len))
            .filter(|&n| n <= MAX_PAYLOAD)
            .ok_or(EMSGSIZE)?;

        // Nodes created on the fly for unknown unmanaged IDs are pending until the send
        // succeeds (other operations of this peer wait before using them), and undone if it
        // fails.
        let mut op = NodeOp::new(self);
        let res = self.send_prepared(s, ctx, seed, cont, &vecs, n_bytes, &mut op);
        if res.is_ok() {
            op.settle();
        }
        res
    }

    /// The part of `SEND` after the argument checks; `op` resolves the IDs.
    #[allow(clippy::too_many_arguments)]
    fn send_prepared(
        self: &Arc<Self>,
        s: &uapi::Send,
        ctx: &IoctlContext,
        seed: bool,
        cont: bool,
        vecs: &[uapi::IoVec],
        n_bytes: u64,
        op: &mut NodeOp<'_>,
    ) -> Result<isize> {
        // Carried handles, resolved in the sender; duplicates are allowed.
        let n_handles = usize::try_from(s.n_handles).map_err(|_| EMSGSIZE)?;
        let handle_ids = read_u64s(s.ptr_handles, n_handles)?;
        let mut nodes: KVec<Option<Arc<Node>>> =
            KVec::with_capacity(n_handles, GFP_KERNEL_ACCOUNT)?;
        for &id in handle_ids.iter() {
            let node = op.resolve(id)?;
            nodes.push(Some(node), GFP_KERNEL)?;
        }
        drop(handle_ids);

        // Carried files, pinned from now until the message is received or dropped.
        // CAST: `n_fds` was checked against `BUS1_FD_MAX`.
        let n_fds = s.n_fds as usize;
        let files = read_files(s.ptr_fds, n_fds, ctx)?;

        let layout = SliceLayout {
            n_bytes,
            n_handles: s.n_handles,
            n_fds: s.n_fds,
        };
        let sender = SenderIds::current();

        if seed {
            // This peer is pinned by the ioctl itself.
            let msg = prepare_copy(self, None, layout, &sender, self.uid())?;
            copy_payload(&msg, vecs)?;
            let mut msg = KBox::new(msg, GFP_KERNEL_ACCOUNT)?;
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
        let dst_ids = read_u64s(s.ptr_destinations, n_dst)?;
        let first_dup = first_duplicate(&dst_ids)?;
        let mut errors: SmallVec<u64, 8> = SmallVec::with_capacity(n_dst)?;
        // The first copy is kept apart, so a unicast allocates no list.
        let mut first: Option<Pending> = None;
        let mut pending: KVec<Pending> = KVec::with_capacity(n_dst.saturating_sub(1), GFP_KERNEL)?;
        for (i, &id) in dst_ids.iter().enumerate() {
            if first_dup == Some(i) {
                return Err(ENOTUNIQ());
            }
            let node = op.resolve(id)?;
            match self.send_one(&node, layout, vecs, &sender, self.uid()) {
                Ok(p) => {
                    if first.is_none() {
                        first = Some(p);
                    } else {
                        pending.push(p, GFP_KERNEL)?;
                    }
                    errors.push(0)?;
                }
                Err(e) if cont && is_per_destination(e) => {
                    // CAST: Errno values are small negative integers.
                    errors.push(u64::from(e.to_errno().unsigned_abs()))?;
                }
                Err(e) => return Err(e),
            }
        }
        if s.ptr_errors != 0 && n_dst > 0 {
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

        // Everything that can fail comes first, then the point of no return: take the in-flight
        // references and stage every copy.
        let mut tx = Transaction::new(self.clone());
        tx.reserve_remote(n_copies)?;
        // CAST: A count of destinations fits.
        let cargo = make_cargo(nodes, files, n_copies as u64)?;
        for mut p in Iterator::chain(Some(first).into_iter(), pending.drain_all()) {
            p.msg.cargo = cargo.clone();
            p.msg.inflight = true;
            // A receiver that shut down since its copy was made is gone with everything it
            // would have received: the copy is dropped, which nobody can tell from a delivery
            // followed by the receiver's flush.
            if let Ok(dst) = PeerActive::acquire(p.msg.receiver.clone()) {
                tx.stage_remote_pinned(dst, p.slot, Event::Data(p.msg));
            }
        }
        tx.commit();
        Ok(0)
    }

    /// Builds the copy of a message for the node `node`: pins its owner, checks the node is
    /// live, charges the owner and allocates the slice; then unpins it and copies the payload.
    ///
    /// The copy reads the sender's memory, which can take forever (a page that never faults
    /// in), so it holds nothing the receiver's teardown waits for: the allocated, unpublished
    /// slice is the sender's until the message is staged or dropped. A receiver that shut down
    /// meanwhile gets nothing, and the sender `ESHUTDOWN`, as if it had shut down first.
    fn send_one(
        &self,
        node: &Arc<Node>,
        layout: SliceLayout,
        vecs: &[uapi::IoVec],
        sender: &SenderIds,
        sender_uid: u32,
    ) -> Result<Pending> {
        // Charged to the sender's memory cgroup (see `Documentation/bus1/quota.rst`).
        let slot = Queue::reserve(GFP_KERNEL_ACCOUNT)?;
        let msg = {
            let dst = PeerActive::acquire(node.owner().clone())?;
            prepare_copy(dst.peer(), Some(node.clone()), layout, sender, sender_uid)?
        };
        copy_payload(&msg, vecs)?;
        if msg.receiver.is_shutdown() {
            return Err(ESHUTDOWN());
        }
        Ok(Pending { slot, msg })
    }

    /// `SLICE_RELEASE`.
    pub(crate) fn cmd_slice_release(&self, arg: usize) -> Result<isize> {
        let offset: u64 = UserSlice::new(UserPtr::from_addr(arg), size_of::<u64>())
            .reader()
            .read()?;
        self.slice_release(offset)
    }

    /// `SLICE_RELEASE` of `offset` (also the release stage of `TRANSACT`).
    pub(crate) fn slice_release(&self, offset: u64) -> Result<isize> {
        self.pool().release(offset)?;
        self.lock().limits.discharge_slices(1);
        Ok(0)
    }

    /// Receives the front of the queue (or the seed) as described by `a`.
    pub(crate) fn recv(self: &Arc<Self>, a: RecvArgs) -> Result<Received> {
        if a.seed {
            return self.recv_seed(a);
        }
        loop {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let (key, ev, cont) = inner.queue.front().ok_or(EAGAIN)?;
            let key = *key;
            let flushed = inner.queue.is_flushed(&key);
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
                    let node = m.node().ok_or(ENOTRECOVERABLE())?;
                    let dest = inner.handles.by_node(&node.key()).map(|h| h.id);
                    // Ordered after the node's destruction, on the full (timestamp, tag) key:
                    // dropped. A node that is gone from its owner but not yet stamped is being
                    // destroyed by a transaction that has not taken its timestamp yet (that
                    // happens under this lock, with the stamp), so this readable entry is
                    // ordered before it.
                    let after_destroy = inner.nodes.get(&node.serial()).is_none()
                        && node.destroyed_before(key.ts(), key.tag());
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
                    drop(guard);
                    drop(popped);
                }
                return Ok(Received::notification(type_, cont, dest));
            }
            let Some(Event::Data(msg)) = inner.queue.get(&key) else {
                return Err(ENOTRECOVERABLE());
            };
            if msg.slice_end()? > a.max_offset {
                return Err(ERANGE);
            }
            if a.peek {
                return Ok(self.describe(msg, cont, dest));
            }
            let res = InstallReservation::new(msg, a.install_fds)?;
            let Some((key, Event::Data(mut msg), cont)) = inner.queue.pop_front() else {
                return Err(ENOTRECOVERABLE());
            };
            if msg.cargo.is_none() {
                // Nothing is left to decide at install: settling now, under this lock, spares
                // the destructor taking it again.
                msg.settle_dequeued(&mut inner.limits);
            }
            drop(guard);
            return self.install(msg, (key.ts(), key.tag()), cont, dest, res);
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
        let msg = KBox::into_inner(guard.seed.take().ok_or(EAGAIN)?);
        drop(guard);
        // The seed is not ordered against anything; its handles are delivered if their nodes
        // are still live.
        self.install(
            msg,
            (u64::MAX, u64::MAX),
            false,
            uapi::BUS1_HANDLE_INVALID,
            res,
        )
    }

    /// Describes `msg` without installing anything (`PEEK`).
    fn describe(&self, msg: &Message, cont: bool, destination: u64) -> Received {
        Received {
            type_: uapi::BUS1_MSG_DATA,
            cont,
            destination,
            offset: msg.slice.unwrap_or(uapi::BUS1_OFFSET_INVALID),
            layout: msg.layout,
            ids: [
                self.viewer().uid(&msg.sender),
                self.viewer().gid(&msg.sender),
                self.viewer().pid(&msg.sender),
                self.viewer().tid(&msg.sender),
            ],
        }
    }

    /// Installs the dequeued message `msg`, committed at `(ts, tag)`: links its handles, writes their
    /// IDs and the file descriptor numbers into the slice, publishes the slice and installs the
    /// files. Cannot fail after the reservations, except for the copy to the caller.
    fn install(
        self: &Arc<Self>,
        mut msg: Message,
        at: (u64, u64),
        cont: bool,
        destination: u64,
        mut res: InstallReservation,
    ) -> Result<Received> {
        let out = self.describe(&msg, cont, destination);
        let off = msg.slice.ok_or(ENOTRECOVERABLE())?;
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
        let h = &mut msg.charged.0[quota::HANDLES];
        *h = h.saturating_sub(delivered);
        self.pool().publish(off);
        msg.slice = None;
        msg.charged.0[quota::SLICES] = 0;
        if let Some(cargo) = &cargo {
            for (r, file) in res.fds.drain_all().zip(cargo.files.iter()) {
                r.fd_install(file.clone());
            }
        }
        drop(msg);
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
        destroys: &mut KVec<QueueSlot<Event>>,
    ) -> u64 {
        let owner = node.owner();
        // A node gone from its owner is still delivered if the message is ordered before its
        // destruction.
        if Arc::ptr_eq(owner, self) {
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
        let mut destroy = destroys.pop();
        let live = {
            let mut o = owner.lock();
            match o.nodes.get_mut(&node.serial()) {
                Some(st) => {
                    // The in-flight reference becomes this holder's reference.
                    let id = self.id();
                    match (st.holders.get_mut(&id), destroy.take()) {
                        (Some(h), slot) => {
                            h.refs = h.refs.saturating_add(1);
                            destroy = slot;
                        }
                        (None, Some(slot)) => {
                            st.holders
                                .insert(holder_res.into_node(id, Holder::new(self.clone(), slot)));
                        }
                        // Cannot happen: a slot is reserved for every carried foreign node.
                        (None, None) => {
                            kernel::warn_on!(true);
                        }
                    }
                    true
                }
                None => false,
            }
        };
        if !live && !ordered_before_destruction(node, ts, tag) {
            return uapi::BUS1_HANDLE_INVALID;
        }
        let mut inner = self.lock();
        // The destruction, if there is one by now, must reach this peer exactly once, and only
        // if this peer has not yet taken anything ordered after it off its queue (possible when
        // another thread received concurrently); otherwise the handle is not installed at all.
        // - Registered as a holder above (`live`): a destruction committed since notified this
        //   peer, and that notification is still queued unless the queue moved past it.
        // - Not registered (`!live`): a handle linked now joins the destruction below.
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
        // Only a handle linked just now, to a node that was gone when this peer tried to
        // register, needs to join the destruction: an existing handle was either attached when
        // the node was destroyed or linked by an earlier message that joined it. Should a
        // notification of the same destruction still be queued as well (this peer held a handle
        // and released it), the handle is notified once: see `Handle::destroy_delivered`.
        let mut woke = false;
        if !live && linked && id != uapi::BUS1_HANDLE_INVALID {
            if let (Some(slot), Some((c, otag))) = (destroy, node.destruction()) {
                if let Ok((_, w)) =
                    inner
                        .queue
                        .commit_synthetic(slot, c, otag, Event::Destroy(node.clone()))
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
    (ts, tag) < node.owner().destruction_of(node)
}

/// Whether `e` concerns one destination only, so `SEND_FLAG_CONTINUE` skips that destination.
fn is_per_destination(e: Error) -> bool {
    e == EHOSTUNREACH() || e == ESHUTDOWN() || e == EDQUOT() || e == crate::ext::errno::EXFULL()
}

/// Prepares a copy for `peer`, which the caller pins, sent by the user `sender_uid`: checks
/// that the destination node is live, charges the peer and its user a slice, the slice's bytes,
/// the handles and the fds (subject to the quota), and allocates the slice, which stays
/// unpublished (no flush touches it) until the message is received or dropped.
fn prepare_copy(
    peer: &Arc<Peer>,
    node: Option<Arc<Node>>,
    layout: SliceLayout,
    sender: &SenderIds,
    sender_uid: u32,
) -> Result<Message> {
    let c = Charge([1, layout.n_handles, layout.size(), layout.n_fds]);
    // The destination node must be live; checked under the same lock as the first charge
    // attempt, so a unicast takes the receiver's lock once here.
    let mut inner = peer.lock();
    if let Some(n) = &node {
        if inner.nodes.get(&n.serial()).is_none() {
            return Err(EHOSTUNREACH());
        }
    }
    // What can never fit is refused before the quota is asked.
    if layout.size() > peer.pool().size() {
        return Err(EMSGSIZE);
    }
    let shared = if sender_uid == peer.uid() {
        // A user's messages to itself are bounded by its own limits only: the quota protects a
        // receiver from other users.
        inner.limits.charge(&c)?;
        drop(inner);
        Charge::default()
    } else {
        // A message from a sender that holds no share here needs share entries; they are
        // allocated unlocked, only once the charge is known to be allowed.
        let charged = inner.limits.charge_quota(sender_uid, &c, None)?;
        drop(inner);
        if !charged {
            let res = ShareReservations::new()?;
            if !peer.lock().limits.charge_quota(sender_uid, &c, Some(res))? {
                return Err(ENOTRECOVERABLE());
            }
        }
        c
    };
    // From here on, dropping `msg` gives back what was charged.
    let mut msg = Message {
        receiver: peer.clone(),
        node,
        slice: None,
        layout,
        sender: sender.clone(),
        cargo: None,
        sender_uid,
        charged: c,
        shared,
        inflight: false,
    };
    // On failure, `msg` gives the slice's charge back with the rest.
    let off = peer.pool().alloc(layout.size())?;
    msg.slice = Some(off);
    Ok(msg)
}

/// Copies the payload described by `vecs` from the sender's memory into the slice of `msg`.
fn copy_payload(msg: &Message, vecs: &[uapi::IoVec]) -> Result {
    let off = msg.slice.ok_or(ENOTRECOVERABLE())?;
    let pool = msg.receiver.pool();
    let mut at = off;
    for v in vecs.iter() {
        if v.len == 0 {
            continue;
        }
        let base = usize::try_from(v.base).map_err(|_| EFAULT)?;
        let len = usize::try_from(v.len).map_err(|_| EFAULT)?;
        pool.write_from_user(at, UserPtr::from_addr(base), len)?;
        at += v.len;
    }
    Ok(())
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

/// Takes `n` in-flight references on every live carried node and wraps the cargo for sharing;
/// a message with neither handles nor files has none, and allocates nothing for it.
///
/// The only failure, out of memory, happens before any reference is taken.
fn make_cargo(
    nodes: KVec<Option<Arc<Node>>>,
    files: KVec<ARef<File>>,
    n: u64,
) -> Result<Option<Arc<Cargo>>> {
    if nodes.is_empty() && files.is_empty() {
        return Ok(None);
    }
    let mut cargo = UniqueArc::new(Cargo { nodes, files }, GFP_KERNEL_ACCOUNT)?;
    for slot in cargo.nodes.iter_mut() {
        if let Some(node) = slot {
            if !get_inflight(node, n) {
                *slot = None;
            }
        }
    }
    Ok(Some(cargo.into()))
}

/// Reads `n` iovecs from user address `ptr`.
fn read_vecs(ptr: u64, n: u64) -> Result<SmallVec<uapi::IoVec, 8>> {
    // CAST: `n` was checked against `VEC_MAX`.
    let n = n as usize;
    let ptr = usize::try_from(ptr).map_err(|_| EFAULT)?;
    let mut r = UserSlice::new(UserPtr::from_addr(ptr), n * size_of::<uapi::IoVec>()).reader();
    let mut vecs = SmallVec::with_capacity(n)?;
    for _ in 0..n {
        let v: uapi::IoVec = r.read()?;
        // A negative `ssize_t` length.
        if v.len > i64::MAX as u64 {
            return Err(EMSGSIZE);
        }
        vecs.push(v)?;
    }
    Ok(vecs)
}

/// Reads `n` `u64`s from user address `ptr`.
fn read_u64s(ptr: u64, n: usize) -> Result<SmallVec<u64, 8>> {
    let ptr = usize::try_from(ptr).map_err(|_| EFAULT)?;
    let len = n.checked_mul(size_of::<u64>()).ok_or(EMSGSIZE)?;
    let mut r = UserSlice::new(UserPtr::from_addr(ptr), len).reader();
    let mut out = SmallVec::with_capacity(n)?;
    for _ in 0..n {
        out.push(r.read::<u64>()?)?;
    }
    Ok(out)
}

/// Reads `n` file descriptors from user address `ptr` and takes their files, refusing bus1
/// peers, `AF_UNIX` sockets and io_uring instances, which could form reference cycles only a
/// GC could break.
fn read_files(ptr: u64, n: usize, ctx: &IoctlContext) -> Result<KVec<ARef<File>>> {
    let ptr = usize::try_from(ptr).map_err(|_| EFAULT)?;
    let mut r = UserSlice::new(UserPtr::from_addr(ptr), n * size_of::<i32>()).reader();
    let mut out = KVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
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
