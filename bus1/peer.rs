// SPDX-License-Identifier: GPL-2.0

//! Peers: the kernel object behind every open file of `/dev/bus1`.
//!
//! A peer owns nodes, holds handles and has a queue of notifications. All of that lives in
//! [`PeerInner`] behind the peer's mutex. The peer's lifetime state (whether it was disconnected
//! and how many operations are using it) lives behind a separate spinlock: every operation on a
//! peer, its own ioctls as well as other peers' operations that deliver to it, holds an
//! *active reference* ([`PeerActive`]), and disconnecting waits for those to drain before it
//! tears the peer down, exactly once.

#![deny(unsafe_code)]

use crate::{
    ext::{
        errno::{
            ENOTUNIQ,
            EOPNOTSUPP,
            EREMOTE,
            ESTALE, //
        },
        fd::IoctlContext,
        miscdevice::{
            device_of_file,
            MiscDevice, //
        },
        poll::{
            PollQueue,
            PollTable,
            POLLHUP,
            POLLIN,
            POLLOUT,
            POLLRDNORM,
            POLLWRNORM, //
        },
        task_ext::{
            uid_for_current,
            Viewer, //
        },
        uaccess_ext::UserPtrExt,
    },
    lazyvec::LazyVec,
    limits::Limits,
    message::{
        self,
        Receiver, //
    },
    node::{
        self,
        is_managed_id,
        Holder,
        HolderReservation,
        NodeState,
        OpToken,
        Owner, //
    },
    pool::{
        sender_gfp,
        Pool,
        PoolSize,
        Slices, //
    },
    queue::{
        Clock,
        Queue,
        QueueKey,
        QueueSlot, //
    },
    quota::{
        self,
        Charge, //
    },
    recv::RecvArgs,
    smallvec::user_sized,
    spare::Spare,
    transaction::{
        self,
        Participant, //
    },
    uapi,
    user::UserRef,
};
use core::mem::{offset_of, size_of};
use kernel::{
    fs::{
        File,
        LocalFile, //
    },
    mm::virt::VmaNew,
    new_condvar, new_mutex,
    prelude::*,
    rbtree::{
        RBTree,
        RBTreeNodeReservation, //
    },
    seq_file::SeqFile,
    seq_print,
    sync::{
        atomic::{
            ordering::Relaxed,
            Atomic, //
        },
        Arc,
        ArcBorrow,
        CondVar,
        Mutex,
        MutexGuard, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

#[path = "ioctl.rs"]
mod ioctl;
#[path = "transact.rs"]
mod transact;
use transact::check_recv_flags;

/// Source of peer IDs; IDs are unique for the lifetime of the module and start at 1.
static PEER_IDS: Atomic<u64> = Atomic::new(0);

/// The most sending principals fdinfo lists, the largest shares first.
const FDINFO_SENDERS: usize = 8;

/// The most IDs a `NODES_DESTROY` array may hold, as in the RFC (its default handle limit).
const NODES_DESTROY_MAX: u64 = 65536;

/// A node of a peer (see [`node::Node`]).
pub(crate) type Node = node::Node<Peer>;

/// A peer's handle to a node.
pub(crate) type Handle = node::Handle<Peer>;

/// The tree nodes a new handle needs.
pub(crate) type HandleReservation = node::HandleReservation<Peer>;

/// A copy of a data message queued for a peer (see [`message::Message`]).
pub(crate) type Message = message::Message<Peer>;

/// What one `SEND` carries besides its payload.
pub(crate) type Cargo = message::Cargo<Peer>;

/// A transaction originating at a peer (see [`transaction::Transaction`]).
pub(crate) type Transaction = transaction::Transaction<Peer>;

/// An entry staged on a peer's queue by a transaction.
pub(crate) type Staged = transaction::Staged<Peer>;

/// An entry of a peer's queue.
pub(crate) enum Event {
    /// The node was destroyed.
    Destroy(Arc<Node>),
    /// The last strong reference to the (owned) node went away.
    Release(Arc<Node>),
    /// A data message. Never dropped under a peer lock (see [`Message`]). Boxed, so that a queue
    /// entry is small: every node and every holder keeps the memory of one notification entry.
    Data(KBox<Message>),
}

/// The most kernel memory a queue entry without its message takes: one `kmalloc-64` object. Every
/// node keeps one for its `NODE_RELEASE`, and every holder of a node one for its `NODE_DESTROY`.
const QUEUE_ENTRY_BYTES: usize = 64;

/// The most kernel memory a queued message takes: its queue entry and the boxed message.
const QUEUED_MESSAGE_BYTES: usize = 192;

const _: () = assert!(node::tree_entry_size::<QueueKey, Option<Event>>() <= QUEUE_ENTRY_BYTES);
const _: () = assert!(size_of::<Message>() <= QUEUED_MESSAGE_BYTES - QUEUE_ENTRY_BYTES);

/// The most kernel memory a holder entry of a node takes: one `kmalloc-64` object.
const HOLDER_BYTES: usize = 64;

const _: () = assert!(node::tree_entry_size::<u64, NodeHolder>() <= HOLDER_BYTES);

/// The most kernel memory the owner-side state of a node takes: one `kmalloc-96` object.
const NODE_STATE_BYTES: usize = 96;

const _: () = assert!(node::tree_entry_size::<u64, OwnedNode>() <= NODE_STATE_BYTES);

/// The owner-side state of a node, in its owner's [`PeerInner`].
pub(crate) type OwnedNode = NodeState<Peer, QueueKey, QueueSlot<Event>, Staged>;

/// A remote holder of a node, in the node's [`OwnedNode`].
pub(crate) type NodeHolder = Holder<Peer, QueueSlot<Event>, Staged>;

/// The node states a destruction works on: the whole tree of a flush, or the states
/// `NODES_DESTROY` picked.
trait NodeSet {
    /// Calls `f` on every node state.
    fn each(&self, f: &mut dyn FnMut(&OwnedNode));
    /// Calls `f` on every node state, for modification.
    fn each_mut(&mut self, f: &mut dyn FnMut(&mut OwnedNode));
}

impl NodeSet for RBTree<u64, OwnedNode> {
    fn each(&self, f: &mut dyn FnMut(&OwnedNode)) {
        self.values().for_each(f);
    }
    fn each_mut(&mut self, f: &mut dyn FnMut(&mut OwnedNode)) {
        self.values_mut().for_each(f);
    }
}

impl NodeSet for KVVec<OwnedNode> {
    fn each(&self, f: &mut dyn FnMut(&OwnedNode)) {
        self.iter().for_each(f);
    }
    fn each_mut(&mut self, f: &mut dyn FnMut(&mut OwnedNode)) {
        self.iter_mut().for_each(f);
    }
}

/// The lock-protected state of a peer.
///
/// # Invariants
///
/// - Every node in `nodes` is live and owned by this peer, and its owner handle is in `handles`
///   (a node leaves `nodes` only when destroyed, and is then stamped, see [`Node::destruction`]).
/// - A handle that is `pending` names a node in `nodes` created by the operation `creating`,
///   which has not finished; only that operation uses it.
/// - `limits` counts every handle in `handles` (by user references) and every slice of the pool.
/// - Nothing is dropped under the lock that takes other locks in its destructor (messages);
///   queue operations hand such values out.
///
/// # Layout
///
/// A message's sender and its receiver, usually on two CPUs, both write what a message
/// changes here: the queue, the spare entry, the slices and the charges. Each cache line that
/// both touch moves to the other CPU and back once per message, so those fields come first,
/// right after the lock (see [`Peer`]) in the order of `queue` (the entries' root first), `spare`, `slices`, `nodes` (which a sender reads) and `limits` (the user and
/// the peer's remaining charges first), and fill the peer's first three cache lines (on a kernel
/// without lock debugging, whose mutex is 24 bytes), where in the compiler's order they took
/// five.
#[repr(C)]
pub(crate) struct PeerInner {
    /// Notifications for this peer.
    pub(crate) queue: Queue<Event>,
    /// The queue entry and message memory of the last message received, for the next message
    /// to this peer (see [`crate::spare`]).
    pub(crate) spare: Spare<QueueSlot<Event>, Message>,
    /// Which parts of the receive pool are in use (see [`Pool`]).
    pub(crate) slices: Slices,
    /// Live nodes owned by this peer, by serial.
    pub(crate) nodes: RBTree<u64, OwnedNode>,
    /// Resource limits.
    pub(crate) limits: Limits,
    /// This peer's handles.
    pub(crate) handles: node::HandleMap<Peer>,
    /// The seed message, set by `SEND` with `SEED`. Boxed: it is rare, and every peer pays for
    /// the room it takes here.
    pub(crate) seed: Option<KBox<Message>>,
    /// Last node serial handed out.
    last_node: u64,
    /// Last [`OpToken`] handed out.
    last_op: u64,
    /// The operation that has nodes pending (see [`NodeOp`]), 0 if none: one at a time.
    creating: u64,
}

/// A bus1 peer.
///
/// # Invariants
///
/// - `owner` is this peer's [`Owner`]: its ID, its lifetime state (active references and the
///   shutdown flag) and, from the first node's creation until the teardown destroyed every node,
///   the route from the peer's nodes back to the peer.
///
/// # Layout
///
/// `maybe_readable`, which every message's sender sets and its receiver clears, the clock,
/// which both advance, and the lock come first, so that they share the object's first cache line with its reference count and
/// the first fields of [`PeerInner`]; the rest, which a message only reads, stays out of the
/// lines that move between a sender's and a receiver's CPU.
#[repr(C)]
#[pin_data]
pub(crate) struct Peer {
    /// Whether the queue may be readable, so that a `RECV`, a waiting receiver's check or a
    /// `poll` that finds it false answers without taking `inner`. True whenever the queue is
    /// readable: [`Peer::wake`], which every transition to readable ends in, sets it before it
    /// looks for sleepers; only a reader that found the queue unreadable, under `inner`, clears
    /// it (see [`Peer::note_unreadable`]). False positives cost one locked check.
    maybe_readable: Atomic<bool>,
    /// The Lamport clock of the peer's queue (see [`crate::queue`]): synced by every message
    /// committed there, under `inner`, and ticked by the peer's own sends, under the
    /// destination's lock (see [`crate::transaction::unicast`]).
    clock: Clock,
    /// Everything the peer owns.
    #[pin]
    inner: Mutex<PeerInner>,
    /// Diagnostic ID (shown in fdinfo; also orders nodes and tags transactions), lifetime state
    /// and the route from the peer's nodes; what a node of the peer pins.
    owner: Arc<Owner<Peer>>,
    /// The UID the peer is charged to (global value), which is also the sending user for its
    /// messages.
    uid: u32,
    /// A copy of the peer's handle limit, which also bounds the ID arrays of `SEND`, readable
    /// without taking `inner`; written under `inner` by `PEER_RESET`.
    max_ids: Atomic<u32>,
    /// Signalled, after the state changed under `inner`, when a node created on the fly settles
    /// (its creating operation finished or undid it) and when a destruction of this peer's nodes
    /// is stamped. Waited on with `inner` held, so a change cannot be missed.
    #[pin]
    nodes_changed: CondVar,
    /// Peer flags set by `PEER_RESET`, readable without taking `inner` (`SEND` reads
    /// `WANT_SECCTX` of each receiver before it takes the receiver's lock); written under `inner`.
    peer_flags: Atomic<u64>,
    /// Readers and pollers of the queue. Not a `PollCondVar`, whose destructor waits for an RCU
    /// grace period, which made every close take milliseconds.
    waitq: PollQueue,
    /// The receive pool.
    #[pin]
    pool: Pool,
    /// How the opener sees other tasks' IDs.
    viewer: Viewer,
}

// What a message writes in its receiver (see `# Layout` of `PeerInner` and `Peer`) ends within
// the first three 64-byte cache lines of the `Arc`'s object, whose reference count (8 bytes with
// its padding) comes before the `Peer`: the readable hint, the clock, the lock, then `PeerInner`
// up to the end of the peer's remaining charges (first in `Ledger`). With lock debugging the
// lock is larger, and so is the prefix.
#[cfg(not(CONFIG_DEBUG_LOCK_ALLOC))]
const _: () = assert!(
    8 + offset_of!(Peer, inner)
        + size_of::<kernel::bindings::mutex>()
        + offset_of!(PeerInner, limits)
        + offset_of!(Limits, ledger)
        + size_of::<[i64; crate::quota::N_RES]>()
        <= 3 * 64
);
const _: () = assert!(
    offset_of!(Peer, maybe_readable) < offset_of!(Peer, inner)
        && offset_of!(Peer, clock) < offset_of!(Peer, inner)
);

/// An active reference on a peer: while it exists, the peer is not torn down.
pub(crate) struct PeerActive {
    /// The pinned peer.
    peer: Arc<Peer>,
}

impl PeerActive {
    /// Takes an active reference on `peer`; fails with `ESHUTDOWN` once it was disconnected.
    pub(crate) fn acquire(peer: Arc<Peer>) -> Result<Self> {
        peer.owner.acquire()?;
        Ok(PeerActive { peer })
    }

    /// Takes an active reference on the owner of `node`; fails with `ESHUTDOWN` once it was
    /// disconnected.
    pub(crate) fn acquire_owner(node: &Node) -> Result<Self> {
        let peer = node.owner().acquire_route()?;
        Ok(PeerActive { peer })
    }

    /// Returns the pinned peer.
    pub(crate) fn peer(&self) -> &Arc<Peer> {
        &self.peer
    }
}

impl core::ops::Deref for PeerActive {
    type Target = Peer;

    fn deref(&self) -> &Peer {
        &self.peer
    }
}

impl Participant for Peer {
    type Entry = Event;
    type Pin = PeerActive;

    fn id(&self) -> u64 {
        self.owner.id()
    }

    fn with_queue<R>(&self, f: impl FnOnce(&mut Queue<Event>) -> R) -> R {
        f(&mut self.lock().queue)
    }

    fn wake(&self) {
        Peer::wake(self)
    }

    fn clock(&self) -> &Clock {
        &self.clock
    }

    fn is_shut_down(&self) -> bool {
        self.is_shutdown()
    }
}

impl Drop for PeerActive {
    fn drop(&mut self) {
        self.peer.owner.release();
    }
}

/// Drops `n` strong references to the node `serial` owned by the peer whose state is `inner`,
/// `holder` being the remote peer they belonged to (`None` for extra owner references).
///
/// Queues a release notification, in the memory the node keeps for it, when the count drops to
/// zero: this never allocates. Returns whether the owner's queue became readable.
pub(crate) fn put_strong(
    owner: &Peer,
    inner: &mut PeerInner,
    serial: u64,
    holder: Option<u64>,
    n: u64,
) -> bool {
    // Destroyed: strong references no longer matter.
    let Some(st) = inner.nodes.get_mut(&serial) else {
        return false;
    };
    let Some(slot) = st.put(holder, n) else {
        return false;
    };
    let (key, wake) = inner.queue.commit_unstaged(
        &owner.clock,
        slot,
        owner.id(),
        Event::Release(st.node.clone()),
    );
    st.release_queued(key);
    wake
}

/// Adds `n` strong references to the node `serial` of the peer whose state is `inner`, for the
/// remote holder `holder` (with the tree node and the `NODE_DESTROY` memory of a new holder
/// entry) or as extra owner or in-flight references (`None`). Withdraws a queued release
/// notification.
///
/// Returns `false` (and does nothing) if the node is destroyed.
pub(crate) fn get_strong(
    inner: &mut PeerInner,
    serial: u64,
    holder: Option<HolderReservation<Peer, QueueSlot<Event>, Staged>>,
    n: u64,
) -> bool {
    let Some(st) = inner.nodes.get_mut(&serial) else {
        return false;
    };
    if let Some(key) = st.get(holder, n) {
        if let Some((_, slot, _)) = inner.queue.remove_reuse(&key) {
            st.release_withdrawn(slot);
        }
    }
    true
}

/// Takes `n` in-flight strong references on `node` if it is live. Takes the owner's lock.
pub(crate) fn get_inflight(node: &Node, n: u64) -> bool {
    node.owner_peer()
        .is_some_and(|owner| get_strong(&mut owner.lock(), node.serial(), None, n))
}

/// What a remote peer needs to become a holder of a node of a peer.
pub(crate) type NodeHolderReservation = HolderReservation<Peer, QueueSlot<Event>, Staged>;

/// A handle between the two steps that give a peer a handle to a live node: the peer's strong
/// reference is registered with the node's owner, and its handle is not linked yet.
///
/// The two steps are `HANDLE_TRANSFER` and `RECV` of a handle to a live node of another peer.
/// [`PendingHandle::register`] and [`PendingHandle::convert`] register the reference under the
/// owner's lock (a remote peer becomes a *holder*, with the memory of its `NODE_DESTROY`);
/// [`PendingHandle::link`] links the handle under the peer's own lock, later, as at most one
/// peer's lock is held at a time. A destruction committed in between has already notified a
/// holder, like every other holder, and the owner itself when the peer is the owner; `link`
/// decides, under the peer's lock, whether that notification can still reach the new handle
/// (see [`PendingHandle::link`]). Dropping the value
/// unlinked gives the reference back.
///
/// # Invariants
///
/// - `node` is `Some` until [`PendingHandle::link`] linked the handle or acquired an existing
///   one; while it is `Some`, the node's owner counts one strong reference for `peer` that no
///   handle accounts for: one of `peer`'s references in its holder entry if `remote`, an extra
///   owner reference otherwise (then `peer` is the owner). A destruction of the node since the
///   registration dropped every count, and the reference with them.
/// - `remote` is whether `peer` is not the node's owner.
pub(crate) struct PendingHandle {
    /// The node, until the handle is linked.
    node: Option<Arc<Node>>,
    /// The peer the handle is for.
    peer: Arc<Peer>,
    /// Whether `peer` registered as a holder (it is not the owner).
    remote: bool,
}

impl PendingHandle {
    /// Takes a new strong reference on `node` for `peer` (`HANDLE_TRANSFER`): as a holder, with
    /// the reservation `holder`, if `peer` is not the owner, as an extra owner reference (`None`)
    /// if it is. Takes the owner's lock; the caller holds no peer's lock.
    ///
    /// Returns the reservation back, and takes nothing, if the node is destroyed.
    pub(crate) fn register(
        node: &Arc<Node>,
        peer: &Arc<Peer>,
        holder: Option<NodeHolderReservation>,
    ) -> Result<Self, Option<NodeHolderReservation>> {
        Self::take(node, peer, holder, false, |h| h)
    }

    /// Turns a message's in-flight reference on `node` into a holder's reference of the receiver
    /// `holder.peer` (`RECV`). Takes the owner's lock; the caller holds no peer's lock.
    ///
    /// Returns the reservation back if the node is destroyed; its in-flight reference is then
    /// gone with its strong count.
    pub(crate) fn convert(
        node: &Arc<Node>,
        holder: NodeHolderReservation,
    ) -> Result<Self, NodeHolderReservation> {
        let peer = holder.peer.clone();
        Self::take(node, &peer, holder, true, Some)
    }

    /// Registers the reference, converting an in-flight one if `inflight`; `holder` is turned
    /// into the holder reservation by `reservation` once the node is known to be live, and
    /// handed back untouched otherwise.
    fn take<H>(
        node: &Arc<Node>,
        peer: &Arc<Peer>,
        holder: H,
        inflight: bool,
        reservation: impl FnOnce(H) -> Option<NodeHolderReservation>,
    ) -> Result<Self, H> {
        // A node whose owner is gone is destroyed, and its destruction stamped.
        let Some(owner) = node.owner_peer() else {
            return Err(holder);
        };
        let remote;
        {
            let mut guard = owner.lock();
            let inner = &mut *guard;
            if inner.nodes.get(&node.serial()).is_none() {
                return Err(holder);
            }
            let holder = reservation(holder);
            remote = holder.is_some();
            get_strong(inner, node.serial(), holder, 1);
            if inflight {
                // The in-flight reference became the one taken above, which keeps the count
                // above zero: no release is due.
                if let Some(st) = inner.nodes.get_mut(&node.serial()) {
                    if let Some(slot) = st.put(None, 1) {
                        kernel::warn_on!(true);
                        st.release_withdrawn(slot);
                    }
                }
            }
        }
        Ok(PendingHandle {
            node: Some(node.clone()),
            peer: peer.clone(),
            remote,
        })
    }

    /// Links the handle (or adds a user reference to the peer's existing one) under the peer's
    /// lock, with the tree nodes `res`, and returns its ID. Takes the peer's lock; the caller
    /// holds no peer's lock.
    ///
    /// A destruction committed since the registration queued the peer's `NODE_DESTROY` already:
    /// a holder's, or the owner's own when the peer is the owner (a transfer to itself). If the
    /// peer has taken that notification off its queue (and dropped it, if no handle was linked
    /// to deliver it to), or anything ordered after it, or flushed its queue past it (the
    /// owner's flush queues no `NODE_DESTROY` for itself at all), the destruction can no longer
    /// reach a handle: none is linked or acquired, the call returns `None`, and the reference is
    /// given back. This holds for the owner as for a holder, whether or not the peer still
    /// holds a handle to the node: a fresh owner ID would never be told of the destruction, and
    /// an existing one was told already. Otherwise the queued notification reaches the handle
    /// linked here, exactly once. A destruction not stamped yet commits the notification after
    /// this link, ordered after everything the peer has taken off its queue.
    pub(crate) fn link(mut self, res: HandleReservation) -> Option<u64> {
        let node = self.node.take()?;
        let id = {
            let mut guard = self.peer.lock();
            let inner = &mut *guard;
            let passed = node
                .destruction()
                .is_some_and(|(c, tag)| !inner.queue.may_join(c, tag));
            if passed {
                None
            } else if let Some(id) = inner.handles.acquire(&node.key()) {
                Some(id)
            } else {
                inner
                    .handles
                    .link(node.clone(), None, self.remote, res)
                    .ok()
            }
        };
        if id.is_none() {
            // Given back when `self` is dropped, with no lock held.
            self.node = Some(node);
        }
        id
    }
}

impl Drop for PendingHandle {
    /// Gives the registered reference back unless the handle was linked. Allocates nothing: a
    /// `NODE_RELEASE` due now uses the memory the node keeps for it. Must not run under a peer's
    /// lock (it takes the owner's).
    fn drop(&mut self) {
        let Some(node) = self.node.take() else {
            return;
        };
        // A node whose owner is gone is destroyed: its counts are gone.
        let Some(owner) = node.owner_peer() else {
            return;
        };
        let holder = self.remote.then(|| self.peer.id());
        let wake = put_strong(&owner, &mut owner.lock(), node.serial(), holder, 1);
        if wake {
            owner.wake();
        }
    }
}

impl Receiver for Peer {
    fn give_back(&self, slice: Option<u64>, sender_uid: u32, shared: &Charge, charged: &Charge) {
        let mut inner = self.lock();
        if let Some(off) = slice {
            self.pool.free(&mut inner.slices, off);
        }
        inner.limits.release(sender_uid, shared, charged);
    }

    fn put_inflight(node: &Node, n: u64) {
        // A node whose owner is gone is destroyed: its strong count no longer matters.
        let Some(owner) = node.owner_peer() else {
            return;
        };
        // A message is dropped where nothing can fail (a flush, a close, or the undoing of a
        // failed send); the owner's `NODE_RELEASE` uses the memory the node keeps for it.
        let wake = put_strong(&owner, &mut owner.lock(), node.serial(), None, n);
        if wake {
            owner.wake();
        }
    }
}

/// Returns the index of the first ID that repeats an earlier one.
#[inline]
pub(crate) fn first_duplicate(ids: &[u64]) -> Result<Option<usize>> {
    // One ID (every unicast) repeats nothing: answered inline, without a call.
    if ids.len() < 2 {
        return Ok(None);
    }
    first_duplicate_of_many(ids)
}

/// [`first_duplicate`] of two IDs or more.
fn first_duplicate_of_many(ids: &[u64]) -> Result<Option<usize>> {
    // Few IDs: compare pairwise rather than allocate and sort.
    if ids.len() <= 16 {
        return Ok((1..ids.len()).find(|&i| ids[..i].contains(&ids[i])));
    }
    let mut sorted = KVec::with_capacity(ids.len(), user_sized(GFP_KERNEL))?;
    for (i, id) in ids.iter().enumerate() {
        sorted.push((*id, i), GFP_KERNEL)?;
    }
    crate::heapsort::sort(&mut sorted);
    let mut first = None;
    for w in sorted.windows(2) {
        if let [(a, _), (b, idx)] = w {
            // Within a run of equal IDs (sorted by index), every index but the smallest is a
            // duplicate; the smallest such index overall wins.
            if a == b {
                first = Some(first.map_or(*idx, |f: usize| f.min(*idx)));
            }
        }
    }
    Ok(first)
}

/// An operation of a peer (`SEND`, `HANDLE_TRANSFER`) that resolves IDs and may create nodes on
/// the fly for unknown unmanaged ones.
///
/// A created node is *pending* until the operation has passed its point of no return and
/// calls [`NodeOp::settle`]; dropping the operation without settling undoes every node it
/// created, so a creation can never be leaked. While nodes are pending, no other operation of
/// the peer uses them or creates nodes of its own: it waits, interruptibly, until the creating
/// operation ends. Only the operation with pending nodes never waits, so no two operations
/// wait for each other.
///
/// # Invariants
///
/// - `created` lists every node this operation created that it has not undone; they are
///   pending (their owner handle is `pending`) until settled.
/// - While `created` is not empty, the peer's `creating` is `token`.
/// - `token` is drawn before a node is created, so an operation whose token is 0 created none
///   and has nothing to settle or undo.
pub(crate) struct NodeOp<'a> {
    /// The peer.
    peer: &'a Arc<Peer>,
    /// The operation's token, drawn on its first creation.
    token: OpToken,
    /// The nodes it created; most operations create none, and then allocate nothing for them.
    created: LazyVec<Arc<Node>>,
}

impl<'a> NodeOp<'a> {
    /// Starts an operation of `peer`.
    pub(crate) fn new(peer: &'a Arc<Peer>) -> Self {
        NodeOp {
            peer,
            token: OpToken::default(),
            created: LazyVec::new(),
        }
    }

    /// Resolves `id` in the peer, creating a pending node for an unknown unmanaged ID.
    ///
    /// A node another operation created and has not settled, or the need to create one while
    /// another operation has nodes pending, is waited for; the wait is interruptible, as that
    /// operation may be copying from user memory.
    pub(crate) fn resolve(&mut self, id: u64) -> Result<Arc<Node>> {
        self.resolve_after(id, |_| Ok(()))
    }

    /// [`Self::resolve`], with `first` run on the peer's locked state before anything else, in
    /// the same critical section; its error fails the call.
    pub(crate) fn resolve_after(
        &mut self,
        id: u64,
        first: impl FnOnce(&mut PeerInner) -> Result,
    ) -> Result<Arc<Node>> {
        let peer = self.peer;
        let mut inner = peer.lock();
        first(&mut inner)?;
        loop {
            let mine = |op: u64| op == 0 || op == self.token.0;
            // A pending handle is the creating operation's.
            let ours = self.token.0 != 0 && inner.creating == self.token.0;
            match inner.handles.by_id(id) {
                Some(h) if !h.pending || ours => return Ok(h.node.clone()),
                None if is_managed_id(id) => return Err(ENXIO),
                None if mine(inner.creating) => {
                    self.created.reserve(1, GFP_KERNEL)?;
                    let node = peer.create_node(&mut inner, id, &mut self.token)?;
                    inner.creating = self.token.0;
                    // Cannot fail: room was reserved above.
                    let _ = self.created.push_within_capacity(node.clone());
                    return Ok(node);
                }
                _ => {
                    if peer.nodes_changed.wait_interruptible(&mut inner) {
                        return Err(ERESTARTSYS);
                    }
                }
            }
        }
    }

    /// Makes the nodes the operation created usable by every other operation: it has passed
    /// its point of no return.
    #[inline]
    pub(crate) fn settle(self) {
        // An operation that created no node (the common case) drew no token: nothing to make
        // usable, and nothing to undo on drop.
        if self.token.0 != 0 {
            self.settle_created();
        }
    }

    /// [`Self::settle`] for an operation that created nodes.
    fn settle_created(mut self) {
        if !self.created.is_empty() {
            let mut inner = self.peer.lock();
            for node in self.created.iter() {
                if let Some(h) = inner.handles.by_node_mut(&node.key()) {
                    h.pending = false;
                }
            }
        }
        self.created = LazyVec::new();
    }

    /// Undoes the nodes the operation created and did not settle, and lets other operations
    /// create nodes again.
    fn undo(&mut self) {
        for node in self.created.take_all() {
            self.peer.undo_create(&node);
        }
        {
            let mut inner = self.peer.lock();
            if inner.creating == self.token.0 {
                inner.creating = 0;
            }
        }
        self.peer.nodes_changed.notify_all();
    }
}

impl Drop for NodeOp<'_> {
    #[inline]
    fn drop(&mut self) {
        // Inline: most operations create no node and drew no token.
        if self.token.0 != 0 {
            self.undo();
        }
    }
}

/// A node created on the fly by `NODES_DESTROY`, allocated before anything changes.
struct NewNode {
    /// The user-chosen ID.
    id: u64,
    /// The node.
    node: Arc<Node>,
    /// Room for its owner handle.
    res: HandleReservation,
    /// Room for its state.
    st_res: RBTreeNodeReservation<u64, OwnedNode>,
    /// The memory of its release notification.
    release: QueueSlot<Event>,
}

/// A `HANDLE_TRANSFER` between its two steps (see [`PendingHandle`]): the handle is charged to
/// the destination, whose strong reference on the node is registered with the node's owner
/// unless the node was destroyed; the handle is not linked yet.
struct Transfer<'a> {
    /// The transfer's use of the source peer's IDs; a node it created is undone unless the
    /// transfer completes.
    op: NodeOp<'a>,
    /// The destination, pinned.
    pin: PeerActive,
    /// The registered reference; `None` if the node was destroyed before it.
    pending: Option<PendingHandle>,
    /// The tree nodes of the destination's handle.
    res: HandleReservation,
}

impl Transfer<'_> {
    /// Links the destination's handle and returns its ID, or, if the node's destruction came
    /// first (see [`PendingHandle::link`]), gives back what the first step took and returns
    /// `BUS1_HANDLE_INVALID`.
    fn link(self) -> u64 {
        let Transfer {
            op,
            pin,
            pending,
            res,
        } = self;
        match pending.and_then(|p| p.link(res)) {
            Some(id) => {
                op.settle();
                id
            }
            None => {
                pin.lock().limits.discharge_handles(1);
                uapi::BUS1_HANDLE_INVALID
            }
        }
    }
}

impl Peer {
    /// Creates a new peer with a fresh ID, as seen by the current task.
    pub(crate) fn new() -> Result<Arc<Self>> {
        Self::with_pool(PoolSize::current())
    }

    /// [`Self::new`] with a pool of `pool_size` rather than the module parameters'.
    pub(crate) fn with_pool(pool_size: PoolSize) -> Result<Arc<Self>> {
        let id = PEER_IDS.fetch_add(1, Relaxed) + 1;
        let viewer = Viewer::current()?;
        // The accounting principal: the real UID, or the owner of the user namespace it is
        // mapped in (see `Documentation/bus1/quota.rst`).
        let uid = viewer.principal();
        let limits = Limits::new(UserRef::get(uid)?)?;
        let max_ids = Atomic::new(limits.max_handles());
        let waitq = PollQueue::new(c"Peer::waitq", kernel::static_lock_class!())?;
        let owner = Owner::new(id, uid)?;
        let slices = Slices::new(pool_size)?;
        Arc::pin_init(
            try_pin_init!(Peer {
                owner,
                uid,
                inner <- new_mutex!(
                    PeerInner {
                        queue: Queue::new(),
                        limits,
                        handles: node::HandleMap::new(),
                        nodes: RBTree::new(),
                        last_node: 0,
                        last_op: 0,
                        creating: 0,
                        seed: None,
                        slices,
                        spare: Spare::new(),
                    },
                    "Peer::inner"
                ),
                max_ids,
                peer_flags: Atomic::new(0),
                nodes_changed <- new_condvar!("Peer::nodes_changed"),
                waitq,
                maybe_readable: Atomic::new(false),
                clock: Clock::new(),
                pool <- Pool::new(pool_size),
                viewer,
            }),
            GFP_KERNEL_ACCOUNT,
        )
    }

    /// Whether the peer asked for the sender's security context with each message
    /// (`BUS1_PEER_FLAG_WANT_SECCTX`).
    pub(crate) fn wants_secctx(&self) -> bool {
        self.peer_flags.load(Relaxed) & uapi::BUS1_PEER_FLAG_WANT_SECCTX != 0
    }

    /// Returns the peer's handle limit, which also bounds the ID arrays of `SEND`.
    pub(crate) fn max_ids(&self) -> u32 {
        self.max_ids.load(Relaxed)
    }

    /// Returns the peer's diagnostic ID.
    pub(crate) fn id(&self) -> u64 {
        self.owner.id()
    }

    /// Creates the node `serial` of this peer, setting the route from the peer's nodes to the
    /// peer first. The caller holds an active reference (every ioctl does), so the teardown,
    /// which cuts the route, has not started.
    fn new_node(self: &Arc<Self>, serial: u64) -> Result<Arc<Node>> {
        self.owner.connect(self);
        Node::new(self.owner.clone(), serial)
    }

    /// Returns the UID the peer is charged to.
    pub(crate) fn uid(&self) -> u32 {
        self.uid
    }

    /// Locks the peer's state.
    pub(crate) fn lock(&self) -> MutexGuard<'_, PeerInner> {
        self.inner.lock()
    }

    /// Returns the peer's Lamport clock, which orders what its queue receives and what it sends.
    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Returns what the peer's nodes keep of it.
    pub(crate) fn owner(&self) -> &Arc<Owner<Peer>> {
        &self.owner
    }

    /// Returns the receive pool.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Returns how the opener sees other tasks' IDs.
    pub(crate) fn viewer(&self) -> &Viewer {
        &self.viewer
    }

    /// Wakes up readers and pollers after the queue became readable or the peer went away.
    pub(crate) fn wake(&self) {
        // Set before the check for sleepers, whose full barrier orders it before the read of the
        // wait queue; a waiter orders its enqueueing before its check of the hint the same way,
        // so either it is woken or it sees the hint.
        self.maybe_readable.store(true, Relaxed);
        // With the sync hint, as AF_UNIX, pipes and binder do: the waker usually goes on to wait
        // for the answer, so the woken receiver may run on this CPU. Every poll waiter is still
        // woken (they are not exclusive waiters). Nobody waiting: no wait queue lock.
        if self.waitq.has_sleeper() {
            self.waitq.wake_sync();
        }
    }

    /// Whether the queue may be readable: false means it is not (see `maybe_readable`).
    pub(crate) fn maybe_readable(&self) -> bool {
        self.maybe_readable.load(Relaxed)
    }

    /// Clears the readable hint if `inner`, the locked state of this peer, has nothing readable.
    /// A later transition to readable sets it again in [`Peer::wake`], after the lock that this
    /// caller holds was released, so the hint is never left false on a readable queue.
    pub(crate) fn note_unreadable(&self, inner: &PeerInner) {
        if !inner.queue.is_readable() {
            self.maybe_readable.store(false, Relaxed);
        }
    }

    /// Whether the peer was disconnected.
    pub(crate) fn is_shutdown(&self) -> bool {
        self.owner.is_shutdown()
    }

    /// Creates a node owned by this peer, named by the user-chosen `id`, and charges its owner
    /// handle. The caller holds the lock and checked that `id` is unmanaged and unused.
    ///
    /// The node stays pending for the operation `op` (see [`crate::node::Handle::pending`]):
    /// other operations of this peer wait before they use it, until `op` settles or undoes it
    /// (see [`NodeOp`]).
    fn create_node(
        self: &Arc<Self>,
        inner: &mut PeerInner,
        id: u64,
        op: &mut OpToken,
    ) -> Result<Arc<Node>> {
        let res = HandleReservation::new()?;
        let st_res = RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?;
        let release = Queue::reserve(GFP_KERNEL_ACCOUNT)?;
        let serial = inner.last_node.checked_add(1).ok_or(ENOSPC)?;
        let node = self.new_node(serial)?;
        inner.limits.charge_handles(1)?;
        if op.0 == 0 {
            inner.last_op = inner.last_op.wrapping_add(1).max(1);
            op.0 = inner.last_op;
        }
        inner.last_node = serial;
        inner
            .nodes
            .insert(st_res.into_node(serial, OwnedNode::new(node.clone(), release)));
        inner.handles.link(node.clone(), Some(id), false, res)?;
        if let Some(h) = inner.handles.by_node_mut(&node.key()) {
            h.pending = true;
        }
        Ok(node)
    }

    /// Undoes [`Self::create_node`] as far as the node still exists.
    ///
    /// Nobody else can have used the node: other operations wait while it is pending, and its
    /// creating operation failed before its point of no return. The node is still stamped
    /// destroyed, at a tick of this peer's clock, so that every node gone from its owner has a
    /// destruction in the global order.
    fn undo_create(&self, node: &Node) {
        let (st, h);
        {
            let mut inner = self.lock();
            st = inner.nodes.remove(&node.serial());
            if st.is_some() {
                let c = self.clock.tick();
                node.set_destroyed(c);
            }
            h = inner.handles.release(&node.key());
            if h.is_some() {
                inner.limits.discharge_handles(1);
            }
        }
        drop((st, h));
    }

    /// Returns the position of the destruction of `node`, a node of this peer that is gone from
    /// its state, in the global order.
    ///
    /// Every node removed from its owner's state is stamped by the transaction that removed it,
    /// under this peer's lock, which then signals `nodes_changed`; a destroying transaction only
    /// stages bounded work (the holders' notifications) in between, so this wait is short and
    /// never depends on user space.
    pub(crate) fn destruction_of(&self, node: &Node) -> (u64, u64) {
        let mut inner = self.lock();
        loop {
            if let Some(d) = node.destruction() {
                return d;
            }
            self.nodes_changed.wait(&mut inner);
        }
    }

    /// Tears the peer down, exactly once: waits for every active reference to go away, then
    /// destroys its nodes, drops its handles and empties its queue.
    pub(crate) fn disconnect(self: &Arc<Self>) -> Result {
        // Receivers blocked in `RECV` with `WAIT` hold active references: wake them, they see
        // the shutdown and return.
        self.owner.shut_down(|| self.wake())?;
        self.flush();
        // Nobody can pin the peer any more, so nothing new can arrive in the queue.
        let leftover;
        let seed;
        let spare;
        {
            let mut inner = self.lock();
            // Values that cannot be collected are dropped under the lock, which is fine too;
            // collecting just keeps the lock short.
            leftover = inner.queue.take_all();
            seed = inner.seed.take();
            // No `RECV` can give memory to the spare any more: it needs an active reference.
            spare = inner.spare.take();
        }
        drop((leftover, seed, spare));
        // The pool goes now, before the file is closed: a disconnected peer that is still open
        // needs none.
        {
            let mut inner = self.lock();
            let freed = self.pool.close(&mut inner.slices);
            inner.limits.discharge_slices(freed);
            inner.limits.close();
        }
        // Every node is destroyed and stamped: the nodes no longer need to reach the peer, and
        // those that outlive it (named by other peers' handles) pin only its `Owner`. The peer
        // object goes with the last reference from the file or a message in flight.
        let route = self.owner.cut();
        drop(route);
        self.wake();
        Ok(())
    }

    /// Destroys every node of this peer in one transaction, drops every handle and flushes the
    /// queue up to the destruction (`PEER_RESET` with `FLUSH`, and teardown).
    ///
    /// Allocates nothing, so it cannot fail and is never half-done: every holder's
    /// `NODE_DESTROY` uses the memory reserved when it became a holder, every owner's
    /// `NODE_RELEASE` the memory its node keeps, and the destroyed nodes' states are moved out of
    /// the peer whole and record the staged notifications themselves.
    fn flush(self: &Arc<Self>) {
        let (mut nodes, handles) = {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let mut nodes = core::mem::take(&mut inner.nodes);
            for st in nodes.values_mut() {
                if let Some(key) = st.release.take() {
                    drop(inner.queue.remove(&key));
                }
            }
            let handles = inner.handles.take_all();
            let mut n: u64 = 0;
            for (_, _, h) in handles.iter() {
                n = n.saturating_add(h.n_user.into());
            }
            inner.limits.discharge_handles(n);
            (nodes, handles)
        };
        // No `NODE_DESTROY` for the owner itself: its queue is flushed at the destruction's
        // position below, which would remove it again.
        let tx = Transaction::new(self.clone());
        let c = self.destroy_nodes(tx, &mut nodes);
        drop(nodes);
        for (_, _, h) in handles.iter() {
            if h.node.owner_id() == self.id() {
                continue;
            }
            let Some(owner) = h.node.owner_peer() else {
                continue;
            };
            let wake = put_strong(
                &owner,
                &mut owner.lock(),
                h.node.serial(),
                Some(self.id()),
                h.n_user.into(),
            );
            if wake {
                owner.wake();
            }
        }
        drop(handles);
        let flushed = self.lock().queue.flush_detach(&self.clock, c, self.id());
        drop(flushed);
        let mut inner = self.lock();
        let freed = self.pool.flush(&mut inner.slices);
        inner.limits.discharge_slices(freed);
    }

    /// Completes the destruction of `nodes`, node states already removed from this peer (with
    /// `tx` holding whatever the caller staged on this peer's own queue): stages every holder's
    /// `NODE_DESTROY` in the memory reserved with the holder, recording it in the holder entry,
    /// stamps every node with the commit timestamp as it is taken, commits, and wakes up
    /// whoever waits for the stamps. Allocates nothing. Returns the commit timestamp.
    ///
    /// The one destruction path, shared by `NODES_DESTROY` and the flush.
    fn destroy_nodes(&self, mut tx: Transaction, nodes: &mut impl NodeSet) -> u64 {
        nodes.each_mut(&mut |st| {
            for h in st.holders.values_mut() {
                h.stage(|peer, slot| {
                    // A holder that is going away needs no notification.
                    let pin = PeerActive::acquire(peer.clone()).ok()?;
                    Some(tx.stage_detached(pin, slot, Event::Destroy(st.node.clone())))
                });
            }
        });
        let nodes = &*nodes;
        let c = tx.commit_with_detached(
            |f| {
                nodes.each(&mut |st| {
                    for h in st.holders.values() {
                        if let Some(staged) = h.staged() {
                            f(staged);
                        }
                    }
                })
            },
            |c| nodes.each(&mut |st| st.node.set_destroyed(c)),
        );
        self.nodes_changed.notify_all();
        c
    }

    /// `PEER_QUERY`.
    fn cmd_query(&self, arg: usize) -> Result<isize> {
        let (mut r, mut w) =
            UserSlice::new(UserPtr::from_addr(arg), size_of::<uapi::PeerReset>()).reader_writer();
        let mut q: uapi::PeerReset = r.read()?;
        if q.flags != 0 {
            return Err(EINVAL);
        }
        {
            let inner = self.lock();
            q.peer_flags = self.peer_flags.load(Relaxed);
            let l = &inner.limits.ledger;
            q.max_slices = l.max(quota::SLICES);
            q.max_handles = l.max(quota::HANDLES);
            q.max_inflight_bytes = l.max(quota::BYTES);
            q.max_inflight_fds = l.max(quota::FDS);
        }
        w.write(&q)?;
        Ok(0)
    }

    /// `PEER_RESET`.
    fn cmd_reset(self: &Arc<Self>, arg: usize) -> Result<isize> {
        let mut r = UserSlice::new(UserPtr::from_addr(arg), size_of::<uapi::PeerReset>()).reader();
        let q: uapi::PeerReset = r.read()?;
        let known = uapi::BUS1_PEER_RESET_FLAG_FLUSH | uapi::BUS1_PEER_RESET_FLAG_FLUSH_SEED;
        if q.flags & !known != 0 {
            return Err(EINVAL);
        }
        if q.peer_flags != u64::MAX && q.peer_flags & !uapi::BUS1_PEER_FLAG_WANT_SECCTX != 0 {
            return Err(EINVAL);
        }
        let limits = [
            q.max_slices,
            q.max_handles,
            q.max_inflight_bytes,
            q.max_inflight_fds,
        ];
        // `i32::MAX` is positive, so the cast is lossless.
        if limits.iter().any(|&v| v != u32::MAX && v > i32::MAX as u32) {
            return Err(EINVAL);
        }
        // The flush cannot fail, and does not depend on the flags and limits set below.
        if q.flags & uapi::BUS1_PEER_RESET_FLAG_FLUSH != 0 {
            self.flush();
        }
        {
            let mut inner = self.lock();
            if q.peer_flags != u64::MAX {
                self.peer_flags.store(q.peer_flags, Relaxed);
            }
            // The peer's limits only; its user's maxima come from the module parameters.
            for (r, &v) in limits.iter().enumerate() {
                if v != u32::MAX {
                    inner.limits.ledger.set_max(r, v);
                }
            }
            self.max_ids.store(inner.limits.max_handles(), Relaxed);
        }
        if q.flags & uapi::BUS1_PEER_RESET_FLAG_FLUSH_SEED != 0 {
            let seed = self.lock().seed.take();
            drop(seed);
        }
        Ok(0)
    }

    /// `HANDLE_RELEASE`.
    fn cmd_handle_release(self: &Arc<Self>, arg: usize) -> Result<isize> {
        self.release_handle(UserPtr::from_addr(arg).get()?, 1)
    }

    /// `HANDLE_RELEASE_N`.
    fn cmd_handle_release_n(self: &Arc<Self>, arg: usize) -> Result<isize> {
        let r: uapi::HandleReleaseN =
            UserSlice::new(UserPtr::from_addr(arg), size_of::<uapi::HandleReleaseN>())
                .reader()
                .read()?;
        if r.flags != 0 || r.n_refs == 0 {
            return Err(EINVAL);
        }
        // More than any handle can have (its references are a `u32`): `EINVAL` below.
        let n = u32::try_from(r.n_refs).unwrap_or(u32::MAX);
        self.release_handle(r.handle, n)
    }

    /// Drops `n` (at least one) user references of the handle `id`, all at once or none
    /// (`EINVAL` if it has fewer; `EBUSY` if they include an owner handle's pinning one).
    fn release_handle(self: &Arc<Self>, id: u64, n: u32) -> Result<isize> {
        let node;
        let gone: Option<Handle>;
        {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let Some(h) = inner.handles.by_id(id) else {
                // An unknown unmanaged ID would name a new live node, whose pinning owner
                // reference cannot be dropped.
                return Err(if is_managed_id(id) { ENXIO } else { EBUSY });
            };
            node = h.node.clone();
            let n_user = h.n_user;
            if n > n_user {
                return Err(EINVAL);
            }
            if node.owner_id() == self.id() {
                let live = inner.nodes.get(&node.serial()).is_some();
                if live && n == n_user {
                    return Err(EBUSY);
                }
                let gone = inner.handles.release_n(&node.key(), n);
                inner.limits.discharge_handles(n.into());
                let wake = live && put_strong(self, inner, node.serial(), None, n.into());
                drop(guard);
                drop(gone);
                if wake {
                    self.wake();
                }
                return Ok(0);
            }
            gone = inner.handles.release_n(&node.key(), n);
            inner.limits.discharge_handles(n.into());
        }
        drop(gone);
        // A node whose owner is gone is destroyed: nothing to give back.
        let Some(owner) = node.owner_peer() else {
            return Ok(0);
        };
        let wake = put_strong(
            &owner,
            &mut owner.lock(),
            node.serial(),
            Some(self.id()),
            n.into(),
        );
        if wake {
            owner.wake();
        }
        Ok(0)
    }

    /// `HANDLE_TRANSFER`.
    fn cmd_handle_transfer(self: &Arc<Self>, arg: usize) -> Result<isize> {
        let (mut r, mut w) =
            UserSlice::new(UserPtr::from_addr(arg), size_of::<uapi::HandleTransfer>())
                .reader_writer();
        let mut t: uapi::HandleTransfer = r.read()?;
        if t.flags != 0 {
            return Err(EINVAL);
        }
        let dst: Arc<Peer> = if t.dst_fd == u64::MAX {
            self.clone()
        } else {
            // CAST: Like every fd argument, the value is an `unsigned int`; upper bits are
            // ignored.
            let file = LocalFile::fget(t.dst_fd as u32)?;
            let peer = device_of_file::<Peer>(&file).ok_or_else(EOPNOTSUPP)?;
            peer.into()
        };
        t.dst_handle = self.transfer_register(t.src_handle, dst)?.link();
        w.write(&t)?;
        Ok(0)
    }

    /// The first step of `HANDLE_TRANSFER` of the node this peer names `src` to `dst`: resolves
    /// it (creating a node for an unknown unmanaged ID), charges the handle to `dst` and
    /// registers `dst`'s strong reference with the node's owner. [`Transfer::link`] is the second.
    fn transfer_register(self: &Arc<Self>, src: u64, dst: Arc<Peer>) -> Result<Transfer<'_>> {
        let pin = PeerActive::acquire(dst)?;
        // What `dst` keeps for the handle (its tree nodes, the holder entry and the memory of
        // its NODE_DESTROY, kept with the holder entry) is charged to `dst`'s memory cgroup, as
        // what a SEND makes a receiver keep is; a full cgroup is `EDQUOT`.
        let (res, holder_res, destroy) = pin.peer().pool().charge_for_sender(|| {
            Ok((
                HandleReservation::with_flags(sender_gfp())?,
                RBTreeNodeReservation::new(sender_gfp())?,
                Queue::reserve(sender_gfp())?,
            ))
        })?;
        // A node created here is undone when `op` is dropped unsettled, with no lock held.
        let mut op = NodeOp::new(self);
        let node = op.resolve(src)?;
        let dst = pin.peer();
        let charged = dst.lock().limits.charge_handles(1);
        charged?;
        let holder = (node.owner_id() != dst.id()).then(|| HolderReservation {
            peer: dst.clone(),
            id: dst.id(),
            res: holder_res,
            destroy,
        });
        let pending = PendingHandle::register(&node, dst, holder).ok();
        Ok(Transfer {
            op,
            pin,
            pending,
            res,
        })
    }

    /// `NODES_DESTROY`.
    fn cmd_nodes_destroy(self: &Arc<Self>, arg: usize) -> Result<isize> {
        let d: uapi::NodesDestroy =
            UserSlice::new(UserPtr::from_addr(arg), size_of::<uapi::NodesDestroy>())
                .reader()
                .read()?;
        if d.flags & !uapi::BUS1_NODES_DESTROY_FLAG_RELEASE_HANDLES != 0 {
            return Err(EINVAL);
        }
        if d.n_nodes > NODES_DESTROY_MAX {
            return Err(EINVAL);
        }
        let release = d.flags & uapi::BUS1_NODES_DESTROY_FLAG_RELEASE_HANDLES != 0;
        let n = usize::try_from(d.n_nodes).map_err(|_| EINVAL)?;
        let ptr = usize::try_from(d.ptr_nodes).map_err(|_| EFAULT)?;
        let len = n.checked_mul(size_of::<u64>()).ok_or(EINVAL)?;
        let mut r = UserSlice::new(UserPtr::from_addr(ptr), len).reader();
        let mut ids = KVec::with_capacity(n, user_sized(GFP_KERNEL))?;
        for _ in 0..n {
            ids.push(r.read::<u64>()?, GFP_KERNEL)?;
        }
        self.nodes_destroy(&ids, release)?;
        Ok(0)
    }

    /// Destroys the nodes this peer names `ids`, in one transaction (`NODES_DESTROY`), and drops
    /// one user reference of each of their handles if `release`.
    fn nodes_destroy(self: &Arc<Self>, ids: &[u64], release: bool) -> Result {
        let n = ids.len();
        let first_dup = first_duplicate(ids)?;
        let mut slots = KVec::with_capacity(n, user_sized(GFP_KERNEL))?;
        for _ in 0..n {
            slots.push(Queue::<Event>::reserve(GFP_KERNEL_ACCOUNT)?, GFP_KERNEL)?;
        }
        let mut released: KVec<Handle> = KVec::with_capacity(n, user_sized(GFP_KERNEL))?;
        let mut tx = Transaction::new(self.clone());
        tx.reserve_local(n)?;
        let mut states = KVVec::with_capacity(n, user_sized(GFP_KERNEL))?;
        {
            let mut guard = self.lock();
            let inner = &mut *guard;
            // Validate everything before changing anything.
            let mut new_nodes: KVec<NewNode> = KVec::new();
            for (i, &id) in ids.iter().enumerate() {
                if first_dup == Some(i) {
                    return Err(ENOTUNIQ());
                }
                match inner.handles.by_id(id) {
                    None if is_managed_id(id) => return Err(ENXIO),
                    None => {
                        // CAST: `new_nodes` is shorter than `ids`, whose length came from a `u64`.
                        let serial = inner
                            .last_node
                            .checked_add(new_nodes.len() as u64 + 1)
                            .ok_or(ENOSPC)?;
                        new_nodes.push(
                            NewNode {
                                id,
                                node: self.new_node(serial)?,
                                res: HandleReservation::new()?,
                                st_res: RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?,
                                release: Queue::reserve(GFP_KERNEL_ACCOUNT)?,
                            },
                            GFP_KERNEL,
                        )?;
                    }
                    Some(h) => {
                        if h.node.owner_id() != self.id() {
                            return Err(EREMOTE());
                        }
                        inner.nodes.get(&h.node.serial()).ok_or_else(ESTALE)?;
                    }
                }
            }
            // CAST: See above.
            inner.limits.check_handles(new_nodes.len() as u64)?;
            // Point of no return. Every holder is notified, in the memory reserved when it
            // became a holder: a completed NODES_DESTROY is never half-done.
            inner.limits.charge_handles(new_nodes.len() as u64)?;
            for nn in new_nodes.drain_all() {
                let serial = nn.node.serial();
                inner.last_node = serial;
                inner.nodes.insert(
                    nn.st_res
                        .into_node(serial, OwnedNode::new(nn.node.clone(), nn.release)),
                );
                // Cannot fail: the ID is given, so no ID is allocated.
                let _ = inner.handles.link(nn.node, Some(nn.id), false, nn.res);
            }
            for &id in ids.iter() {
                let Some(h) = inner.handles.by_id(id) else {
                    continue;
                };
                let key = h.node.key();
                let Some(mut st) = inner.nodes.remove(&key.1) else {
                    continue;
                };
                if let Some(rk) = st.release.take() {
                    drop(inner.queue.remove(&rk));
                }
                if let Some(slot) = slots.pop() {
                    tx.stage_local_slot(&mut inner.queue, slot, Event::Destroy(st.node.clone()));
                }
                let _ = states.push_within_capacity(st);
            }
            if release {
                for &id in ids.iter() {
                    let Some(key) = inner.handles.by_id(id).map(|h| h.node.key()) else {
                        continue;
                    };
                    if let Some(h) = inner.handles.release(&key) {
                        let _ = released.push_within_capacity(h);
                    }
                    inner.limits.discharge_handles(1);
                }
            }
        }
        drop(released);
        self.destroy_nodes(tx, &mut states);
        drop(states);
        Ok(())
    }
}

#[kunit_tests(bus1_peer)]
mod tests {
    use super::*;
    use crate::recv::Carried;

    /// The user-chosen ID the owner names its node by in these tests.
    const NODE_ID: u64 = 0x100;

    /// Creates the node `NODE_ID` of `owner`, as the first `SEND` or `HANDLE_TRANSFER` naming an
    /// unknown unmanaged ID does.
    fn new_node(owner: &Arc<Peer>) -> Result<Arc<Node>> {
        let mut op = NodeOp::new(owner);
        let node = op.resolve(NODE_ID)?;
        op.settle();
        Ok(node)
    }

    /// Receives everything `p` has queued (`RECV` until `EAGAIN`) and returns the destination of
    /// every `NODE_DESTROY` received, in order.
    fn node_destroys(p: &Arc<Peer>) -> Result<KVec<u64>> {
        let args = RecvArgs {
            peek: false,
            seed: false,
            install_fds: false,
            max_offset: 0,
        };
        let mut out = KVec::new();
        loop {
            match p.recv(args) {
                Ok(r) if r.type_ == uapi::BUS1_MSG_NODE_DESTROY => {
                    out.push(r.destination, GFP_KERNEL)?
                }
                Ok(_) => {}
                Err(e) if e == EAGAIN => return Ok(out),
                Err(e) => return Err(e),
            }
        }
    }

    /// The handle references charged to `p`.
    fn handles_charged(p: &Peer) -> i64 {
        p.lock().limits.ledger.used(quota::HANDLES)
    }

    /// Whether `p` holds no handle, has none charged and has no `NODE_DESTROY` to receive.
    fn holds_nothing(p: &Arc<Peer>) -> Result<bool> {
        Ok(p.lock().handles.is_empty() && handles_charged(p) == 0 && node_destroys(p)?.is_empty())
    }

    /// Tears both peers down: the owner's route to itself goes with its teardown.
    fn close(a: &Arc<Peer>, b: &Arc<Peer>) -> Result {
        b.disconnect()?;
        a.disconnect()
    }

    #[test]
    fn transfer_destroyed_between_register_and_link_is_notified_once() -> Result {
        let (a, b) = (Peer::new()?, Peer::new()?);
        new_node(&a)?;
        let t = a.transfer_register(NODE_ID, b.clone())?;
        assert!(t.pending.is_some());
        // Committed between the two steps: `b` is a holder, so it is notified, and the
        // notification is still queued when the handle is linked.
        a.nodes_destroy(&[NODE_ID], false)?;
        let id = t.link();
        assert_ne!(id, uapi::BUS1_HANDLE_INVALID);
        assert_eq!(handles_charged(&b), 1);
        // Exactly one NODE_DESTROY, for the ID `b` was handed.
        assert_eq!(&node_destroys(&b)?[..], &[id]);
        close(&a, &b)
    }

    #[test]
    fn transfer_destroyed_and_received_before_link_is_invalid() -> Result {
        let (a, b) = (Peer::new()?, Peer::new()?);
        new_node(&a)?;
        let t = a.transfer_register(NODE_ID, b.clone())?;
        a.nodes_destroy(&[NODE_ID], false)?;
        // `b` takes its notification off the queue before the link: no handle to deliver it to,
        // so it is dropped, and the destruction can no longer reach a handle linked now.
        assert!(node_destroys(&b)?.is_empty());
        assert_eq!(t.link(), uapi::BUS1_HANDLE_INVALID);
        // Nothing handed out, nothing left charged, nothing more to receive.
        assert!(holds_nothing(&b)?);
        close(&a, &b)
    }

    #[test]
    fn transfer_after_destruction_is_invalid() -> Result {
        let (a, b) = (Peer::new()?, Peer::new()?);
        new_node(&a)?;
        a.nodes_destroy(&[NODE_ID], false)?;
        // The owner still names the destroyed node; `b` cannot register.
        let t = a.transfer_register(NODE_ID, b.clone())?;
        assert!(t.pending.is_none());
        assert_eq!(t.link(), uapi::BUS1_HANDLE_INVALID);
        assert!(holds_nothing(&b)?);
        close(&a, &b)
    }

    /// Registers `b` for a handle to `node` carried by a message, holding the in-flight
    /// reference the message took when it was sent.
    fn register_carried(b: &Arc<Peer>, node: &Arc<Node>) -> Result<Carried> {
        Ok(b.register_carried(
            node,
            RBTreeNodeReservation::new(GFP_KERNEL)?,
            Queue::reserve(GFP_KERNEL)?,
        ))
    }

    #[test]
    fn install_destroyed_between_register_and_link_is_notified_once() -> Result {
        for receive_first in [false, true] {
            let (a, b) = (Peer::new()?, Peer::new()?);
            let node = new_node(&a)?;
            // A message carrying the node, committed before anything below.
            assert!(get_inflight(&node, 1));
            let at = (a.clock().get(), a.id());
            let carried = register_carried(&b, &node)?;
            assert!(matches!(carried, Carried::Live(_)));
            a.nodes_destroy(&[NODE_ID], false)?;
            if receive_first {
                // Another thread of `b` receives the notification before the link.
                assert!(node_destroys(&b)?.is_empty());
            }
            let id = b.link_carried(carried, &node, at, HandleReservation::new()?);
            if receive_first {
                assert_eq!(id, uapi::BUS1_HANDLE_INVALID);
                assert!(b.lock().handles.is_empty());
                assert!(node_destroys(&b)?.is_empty());
            } else {
                assert_ne!(id, uapi::BUS1_HANDLE_INVALID);
                assert_eq!(&node_destroys(&b)?[..], &[id]);
            }
            close(&a, &b)?;
        }
        Ok(())
    }

    #[test]
    fn install_after_destruction_joins_it_once() -> Result {
        for ordered_before in [true, false] {
            let (a, b) = (Peer::new()?, Peer::new()?);
            let node = new_node(&a)?;
            assert!(get_inflight(&node, 1));
            let before = (a.clock().get(), a.id());
            a.nodes_destroy(&[NODE_ID], false)?;
            let (c, tag) = node.destruction().ok_or(EINVAL)?;
            let at = if ordered_before { before } else { (c + 2, tag) };
            let carried = register_carried(&b, &node)?;
            assert!(matches!(carried, Carried::Gone(_)));
            let id = b.link_carried(carried, &node, at, HandleReservation::new()?);
            if ordered_before {
                // The handle joins the destruction: one NODE_DESTROY, at its place.
                assert_ne!(id, uapi::BUS1_HANDLE_INVALID);
                assert_eq!(&node_destroys(&b)?[..], &[id]);
            } else {
                assert_eq!(id, uapi::BUS1_HANDLE_INVALID);
                assert!(node_destroys(&b)?.is_empty());
            }
            close(&a, &b)?;
        }
        Ok(())
    }

    #[test]
    fn self_transfer_destroyed_between_register_and_link_is_notified_once() -> Result {
        for release in [false, true] {
            for receive_first in [false, true] {
                let a = Peer::new()?;
                new_node(&a)?;
                // `HANDLE_TRANSFER` to the owner itself: an extra owner reference, no holder.
                let t = a.transfer_register(NODE_ID, a.clone())?;
                assert!(t.pending.is_some());
                assert_eq!(handles_charged(&a), 2);
                // Committed between the two steps, with or without the owner handle's last user
                // reference: the owner's own NODE_DESTROY is queued.
                a.nodes_destroy(&[NODE_ID], release)?;
                if receive_first {
                    // Another thread of the owner receives the notification before the link:
                    // through the owner handle, or dropped if `release` unlinked it.
                    let seen = node_destroys(&a)?;
                    if release {
                        assert!(seen.is_empty());
                    } else {
                        assert_eq!(&seen[..], &[NODE_ID]);
                    }
                }
                let id = t.link();
                if receive_first {
                    // The owner observed the destruction: the node was destroyed before the call
                    // as far as it can tell, and nothing changes.
                    assert_eq!(id, uapi::BUS1_HANDLE_INVALID);
                    assert_eq!(handles_charged(&a), if release { 0 } else { 1 });
                    if release {
                        assert!(a.lock().handles.is_empty());
                    }
                    assert!(node_destroys(&a)?.is_empty());
                } else {
                    // The queued notification reaches the ID handed out, exactly once: the owner
                    // handle's ID, or a fresh owner ID if `release` unlinked that handle.
                    assert_ne!(id, uapi::BUS1_HANDLE_INVALID);
                    if release {
                        assert_ne!(id, NODE_ID);
                        assert_eq!(id & uapi::BUS1_HANDLE_FLAG_REMOTE, 0);
                        assert_eq!(handles_charged(&a), 1);
                    } else {
                        assert_eq!(id, NODE_ID);
                        assert_eq!(handles_charged(&a), 2);
                    }
                    assert_eq!(&node_destroys(&a)?[..], &[id]);
                }
                a.disconnect()?;
            }
        }
        Ok(())
    }

    #[test]
    fn self_transfer_flushed_between_register_and_link_is_invalid() -> Result {
        let a = Peer::new()?;
        new_node(&a)?;
        let t = a.transfer_register(NODE_ID, a.clone())?;
        assert!(t.pending.is_some());
        // `PEER_RESET` with `FLUSH` between the two steps: the node is destroyed, every handle
        // released, and the queue flushed up to the destruction, with no NODE_DESTROY for the
        // owner. A handle linked now could never be told of the destruction.
        a.flush();
        assert_eq!(t.link(), uapi::BUS1_HANDLE_INVALID);
        assert!(holds_nothing(&a)?);
        a.disconnect()
    }

    #[test]
    fn transfer_destroyed_and_flushed_before_link_is_invalid() -> Result {
        let (a, b) = (Peer::new()?, Peer::new()?);
        new_node(&a)?;
        let t = a.transfer_register(NODE_ID, b.clone())?;
        a.nodes_destroy(&[NODE_ID], false)?;
        // `b` flushes its queue, with the notification queued for it, before the link.
        b.flush();
        assert_eq!(t.link(), uapi::BUS1_HANDLE_INVALID);
        assert!(holds_nothing(&b)?);
        close(&a, &b)
    }

    #[test]
    fn ids_are_unique_and_increasing() -> Result {
        let a = Peer::new()?;
        let b = Peer::new()?;
        assert!(a.id() >= 1);
        assert!(b.id() > a.id());
        Ok(())
    }

    #[test]
    fn disconnect_once() -> Result {
        let a = Peer::new()?;
        let pin = PeerActive::acquire(a.clone())?;
        drop(pin);
        assert!(a.disconnect().is_ok());
        assert!(a.disconnect().is_err());
        assert!(PeerActive::acquire(a.clone()).is_err());
        Ok(())
    }

    #[test]
    fn duplicates() -> Result {
        assert_eq!(first_duplicate(&[1, 2, 3])?, None);
        assert_eq!(first_duplicate(&[5, 1, 5, 1])?, Some(2));
        assert_eq!(first_duplicate(&[])?, None);
        assert_eq!(first_duplicate(&[7])?, None);
        // Both paths, the pairwise one for short lists and the sorting one, agree.
        let mut ids = [0u64; 40];
        for (i, v) in ids.iter_mut().enumerate() {
            *v = 1000 - i as u64;
        }
        assert_eq!(first_duplicate(&ids[..16])?, None);
        assert_eq!(first_duplicate(&ids)?, None);
        ids[12] = ids[3];
        ids[30] = ids[1];
        assert_eq!(first_duplicate(&ids[..16])?, Some(12));
        assert_eq!(first_duplicate(&ids)?, Some(12));
        ids[12] = 5;
        assert_eq!(first_duplicate(&ids)?, Some(30));
        Ok(())
    }
}
