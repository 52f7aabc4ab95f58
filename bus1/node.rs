// SPDX-License-Identifier: GPL-2.0

//! Nodes, handles and the per-peer handle-ID map.
//!
//! A node is owned by exactly one peer for its whole life. Every peer that can name a node does
//! so through exactly one [`Handle`] in its [`HandleMap`]; the owner's handle is the node's
//! "owner handle". The owner-side bookkeeping of a live node (strong count, holders, queued
//! release notification) is a [`NodeState`] stored in the owner's locked state, so it is only
//! ever touched under the owner's lock and no lock is shared between peers.
//!
//! This module does not know the peer type: everything here is generic over `P`, the type of
//! the owning and holding peers. A node pins an [`Owner`], a small object per peer with the
//! peer's ID, its lifetime state and a route to the peer itself, which the peer's teardown cuts
//! once every node of the peer is destroyed. A node that outlives its owner (named by another
//! peer's handle, or by a queued notification) therefore pins that small object, never the
//! peer with its pool, queue, maps and charges.

#![deny(unsafe_code)]

use crate::{
    ext::{
        bimap::{
            BiMap,
            BiMapReservation, //
        },
        errno::ESHUTDOWN,
    },
    registry::Listing,
    uapi::{
        BUS1_HANDLE_FLAG_MANAGED,
        BUS1_HANDLE_FLAG_REMOTE, //
    },
};
use kernel::{
    alloc::Flags,
    new_condvar, new_spinlock,
    prelude::*,
    rbtree::{
        RBTree,
        RBTreeNodeReservation, //
    },
    sync::{
        atomic::{
            ordering::{
                Acquire,
                Full,
                Relaxed,
                Release, //
            },
            Atomic,
        },
        Arc,
        CondVar,
        SpinLock, //
    },
};

/// Identity of a node: the owner's peer ID and the node's per-owner serial number.
///
/// Peer IDs are never reused, so the pair is unique for the lifetime of the module.
pub(crate) type NodeKey = (u64, u64);

/// The flag of [`Owner::active`] that marks the peer shut down; the bits below it count the
/// active references.
const SHUTDOWN: u64 = 1 << 63;

/// The route of a peer, under [`Owner::state`].
struct Lifetime<P> {
    /// The peer, from its first node's creation until its teardown destroyed every node.
    route: Option<Arc<P>>,
    /// Set once the teardown cut the route; it is never set again.
    cut: bool,
}

/// What a peer's nodes keep of it, and its lifetime: the peer's ID, its active references and
/// a route to the peer `P`.
///
/// Every peer has one, and every node of the peer pins it. The route is what a node needs to
/// reach its owner's lock and queue (to change its strong count, to queue a `NODE_RELEASE`, to
/// deliver to it); the owner's teardown cuts it after it destroyed and stamped every node, so a
/// destroyed node never reaches its owner and a dead peer's nodes pin only this object.
///
/// # Invariants
///
/// - `route` is `Some` from the creation of the peer's first node until its teardown destroyed
///   every node of the peer (`cut`), and `None` otherwise: a node whose route is cut is
///   destroyed, and its destruction is stamped ([`Node::destruction`]).
/// - The `SHUTDOWN` flag of `active` is set before the route is cut, and neither is ever
///   cleared. An active reference is held from an increment of `active` that found the flag
///   clear until the matching decrement; an increment that finds it set is undone at once.
/// - Whoever brings `active` down to exactly `SHUTDOWN` signals `idle` under `state`.
#[pin_data]
pub(crate) struct Owner<P> {
    /// The peer's ID.
    id: u64,
    /// The count of active references (below [`SHUTDOWN`]) and the shutdown flag: an active
    /// reference is one atomic increment and one decrement, with no lock.
    active: Atomic<u64>,
    /// The route; also the lock a disconnect waits for the last active reference under.
    #[pin]
    state: SpinLock<Lifetime<P>>,
    /// Signalled when the last active reference of a shut-down peer is dropped.
    #[pin]
    idle: CondVar,
    /// The peer's entry in the registry of peer objects, which goes with this object.
    listing: Listing,
}

/// An active reference taken with [`Owner::pin`], dropped with the guard.
pub(crate) struct Active<'a, P>(&'a Owner<P>);

impl<P> Drop for Active<'_, P> {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl<P> Owner<P> {
    /// Creates the object of the peer with ID `id`, charged to `uid`, with no route yet, and
    /// enters it in the registry of peer objects.
    pub(crate) fn new(id: u64, uid: u32) -> Result<Arc<Self>> {
        let listing = Listing::new(id, uid)?;
        Arc::pin_init(
            try_pin_init!(Owner {
                id,
                active: Atomic::new(0),
                state <- new_spinlock!(
                    Lifetime {
                        route: None,
                        cut: false,
                    },
                    "Owner::state"
                ),
                idle <- new_condvar!("Owner::idle"),
                listing,
            }),
            GFP_KERNEL_ACCOUNT,
        )
    }

    /// Returns the peer's ID.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Returns the peer's entry in the registry of peer objects.
    pub(crate) fn listing(&self) -> &Listing {
        &self.listing
    }

    /// Takes an active reference; fails with `ESHUTDOWN` once the peer was shut down.
    ///
    /// The count cannot overflow into the flag: it would take 2^63 references held at once.
    pub(crate) fn acquire(&self) -> Result {
        // Ordered before everything done under the reference; the teardown's wait for the count
        // to drain pairs with the decrement in `release`.
        if self.active.fetch_add(1, Acquire) & SHUTDOWN != 0 {
            self.release();
            return Err(ESHUTDOWN());
        }
        Ok(())
    }

    /// Takes an active reference that is dropped with the returned guard; fails with
    /// `ESHUTDOWN` once the peer was shut down.
    pub(crate) fn pin(&self) -> Result<Active<'_, P>> {
        self.acquire()?;
        Ok(Active(self))
    }

    /// Takes an active reference and returns the peer, through the route; fails with
    /// `ESHUTDOWN` once the peer was shut down (and hence when the route is cut).
    pub(crate) fn acquire_route(&self) -> Result<Arc<P>> {
        self.acquire()?;
        // Held, the reference keeps the teardown from cutting the route.
        let route = self.state.lock().route.clone();
        match route {
            Some(peer) => Ok(peer),
            None => {
                self.release();
                Err(ESHUTDOWN())
            }
        }
    }

    /// Drops an active reference taken by [`Self::acquire`] or [`Self::acquire_route`].
    pub(crate) fn release(&self) {
        // Everything done under the reference is ordered before the teardown that waits for it.
        if self.active.fetch_sub(1, Release) == SHUTDOWN | 1 {
            // The last one of a shut-down peer: its disconnect may be waiting. Signalled under
            // the lock it checks the count under, so the signal cannot fall between its check
            // and its sleep.
            let _s = self.state.lock();
            self.idle.notify_all();
        }
    }

    /// Marks the peer shut down, calls `wake` (under the lifetime lock, to wake up waiters that
    /// hold active references) and waits until every active reference is gone. Fails with
    /// `ESHUTDOWN` if the peer was shut down before.
    pub(crate) fn shut_down(&self, wake: impl FnOnce()) -> Result {
        let mut s = self.state.lock();
        let mut old = self.active.load(Relaxed);
        loop {
            if old & SHUTDOWN != 0 {
                return Err(ESHUTDOWN());
            }
            match self.active.cmpxchg(old, old | SHUTDOWN, Full) {
                Ok(_) => break,
                Err(cur) => old = cur,
            }
        }
        wake();
        while self.active.load(Acquire) != SHUTDOWN {
            self.idle.wait(&mut s);
        }
        Ok(())
    }

    /// Whether the peer was shut down.
    pub(crate) fn is_shutdown(&self) -> bool {
        self.active.load(Acquire) & SHUTDOWN != 0
    }

    /// Returns the peer, unless its teardown destroyed every node of it.
    pub(crate) fn route(&self) -> Option<Arc<P>> {
        self.state.lock().route.clone()
    }

    /// Sets the route to `peer`, the peer this object belongs to, before the peer creates a
    /// node. The caller holds an active reference, so the teardown has not cut the route yet
    /// (it may have set `shutdown` and be waiting for that reference).
    pub(crate) fn connect(&self, peer: &Arc<P>) {
        let mut s = self.state.lock();
        if s.route.is_none() && !s.cut {
            s.route = Some(peer.clone());
        }
    }

    /// Cuts the route, after the teardown destroyed and stamped every node of the peer, and
    /// returns the reference it held, for the caller to drop with no lock held.
    pub(crate) fn cut(&self) -> Option<Arc<P>> {
        kernel::warn_on!(!self.is_shutdown());
        let mut s = self.state.lock();
        s.cut = true;
        s.route.take()
    }
}

/// A node: the target of handles. The mutable state is a [`NodeState`] owned by the owner peer;
/// only the destruction timestamp lives here, because receivers of messages that name the node
/// must compare against it without taking the owner's lock.
pub(crate) struct Node<P> {
    /// The owner's object: its ID and the route to it.
    owner: Arc<Owner<P>>,
    /// Serial number within the owner.
    serial: u64,
    /// Commit timestamp of the node's destruction, zero until it is known. Written once, before
    /// any entry of the destroying transaction is committed.
    destroyed: Atomic<u64>,
}

impl<P> Node<P> {
    /// Creates the node with serial `serial` owned by the peer of `owner`.
    pub(crate) fn new(owner: Arc<Owner<P>>, serial: u64) -> Result<Arc<Self>> {
        Ok(Arc::new(
            Node {
                owner,
                serial,
                destroyed: Atomic::new(0),
            },
            GFP_KERNEL_ACCOUNT,
        )?)
    }

    /// Records `ts`, the commit timestamp of the transaction that destroys the node. Called
    /// before that transaction commits anything, so whoever sees one of its entries, or anything
    /// ordered after them, also sees the timestamp.
    pub(crate) fn set_destroyed(&self, ts: u64) {
        self.destroyed.store(ts, Release);
    }

    /// Returns the commit timestamp of the node's destruction, if it is known yet.
    ///
    /// A node that is no longer live in its owner but has no timestamp is being destroyed right
    /// now; entries readable before that transaction commits are ordered before it.
    pub(crate) fn destroyed_at(&self) -> Option<u64> {
        match self.destroyed.load(Acquire) {
            0 => None,
            ts => Some(ts),
        }
    }

    /// Returns the position of the node's destruction in the global order, `(timestamp, tag)`,
    /// if it is known yet.
    ///
    /// A node is only ever destroyed by a transaction originating at its owner (`NODES_DESTROY`,
    /// a flush, or the undo of its creation), so the tag is the owner's ID. Whether an entry
    /// `(ts, tag)` is ordered before the destruction is decided on this full key, never on the
    /// timestamp alone: two transactions can commit at the same timestamp.
    pub(crate) fn destruction(&self) -> Option<(u64, u64)> {
        self.destroyed_at().map(|c| (c, self.owner.id()))
    }

    /// Returns whether an entry at `(ts, tag)` is ordered after the node's destruction; `false`
    /// while the destruction is not stamped.
    pub(crate) fn destroyed_before(&self, ts: u64, tag: u64) -> bool {
        self.destruction().is_some_and(|d| (ts, tag) > d)
    }

    /// Returns the owner's object.
    pub(crate) fn owner(&self) -> &Arc<Owner<P>> {
        &self.owner
    }

    /// Returns the owning peer, unless its teardown destroyed every node of it (this one
    /// included, whose destruction is then stamped).
    pub(crate) fn owner_peer(&self) -> Option<Arc<P>> {
        self.owner.route()
    }

    /// Returns the owner's peer ID.
    pub(crate) fn owner_id(&self) -> u64 {
        self.owner.id()
    }

    /// Returns the node's serial number within its owner.
    pub(crate) fn serial(&self) -> u64 {
        self.serial
    }

    /// Returns the node's unique identity.
    pub(crate) fn key(&self) -> NodeKey {
        (self.owner.id(), self.serial)
    }
}

/// A remote peer's share of a node's strong references.
///
/// `P` is the peer type, `S` a slot of the holder's queue and `T` the record of an entry staged
/// there.
///
/// A holder is live while the node is, and becomes staged when the node's destruction stages its
/// `NODE_DESTROY`; its references no longer matter then. The two states share their memory, so
/// that a holder's tree entry fits `kmalloc-64` (checked at build time in the peer module).
pub(crate) enum Holder<P, S, T> {
    /// A holder of a live node.
    Live {
        /// The holding peer, pinned so destruction can notify it.
        peer: Arc<P>,
        /// Number of the holder's user references to the node.
        refs: u64,
        /// The memory of the holder's `NODE_DESTROY`, reserved when it became a holder, so a
        /// destruction (a flush, a close) never allocates for it. Taken by the destruction.
        destroy: Option<S>,
    },
    /// The holder's `NODE_DESTROY` while the destroying transaction stages it.
    Staged(T),
}

impl<P, S, T> Holder<P, S, T> {
    /// Adds `n` references.
    pub(crate) fn get(&mut self, n: u64) {
        if let Holder::Live { refs, .. } = self {
            *refs = refs.saturating_add(n);
        }
    }

    /// Drops `n` references; returns whether none is left.
    pub(crate) fn put(&mut self, n: u64) -> bool {
        match self {
            Holder::Live { refs, .. } => {
                *refs = refs.saturating_sub(n);
                *refs == 0
            }
            Holder::Staged(_) => false,
        }
    }

    /// Hands the holder and the memory of its `NODE_DESTROY` to `stage`, once, and records what
    /// it staged. When `stage` returns `None` (a holder that is going away), the holder gets no
    /// notification and the memory is freed.
    pub(crate) fn stage(&mut self, stage: impl FnOnce(&Arc<P>, S) -> Option<T>) {
        if let Holder::Live { peer, destroy, .. } = self {
            if let Some(staged) = destroy.take().and_then(|slot| stage(peer, slot)) {
                *self = Holder::Staged(staged);
            }
        }
    }

    /// Returns the holder's staged `NODE_DESTROY`, if any.
    pub(crate) fn staged(&self) -> Option<&T> {
        match self {
            Holder::Staged(t) => Some(t),
            Holder::Live { .. } => None,
        }
    }
}

/// What a remote peer needs to become a holder of a node, allocated before the owner's lock is
/// taken: the tree node for its holder entry and the memory of its `NODE_DESTROY`.
pub(crate) struct HolderReservation<P, S, T> {
    /// The future holder.
    pub(crate) peer: Arc<P>,
    /// Its peer ID, the key of its holder entry.
    pub(crate) id: u64,
    /// The tree node of its holder entry.
    pub(crate) res: RBTreeNodeReservation<u64, Holder<P, S, T>>,
    /// The memory of its `NODE_DESTROY`.
    pub(crate) destroy: S,
}

/// Owner-side state of a live node. Removed from the owner when the node is destroyed.
///
/// `P` is the peer type, `K` a queue key, `S` a queue slot and `T` the record of a staged entry.
///
/// # Invariants
///
/// - Exactly one of `release` and `release_slot` is `Some`: the node's `NODE_RELEASE` is either
///   queued or its memory is held here, ready, so dropping the last strong reference never
///   allocates.
pub(crate) struct NodeState<P, K, S, T> {
    /// The node itself.
    pub(crate) node: Arc<Node<P>>,
    /// Strong references: every remote user reference plus every owner reference but the first.
    pub(crate) n_strong: u64,
    /// Remote holders by peer ID; they get a destruction notification.
    pub(crate) holders: RBTree<u64, Holder<P, S, T>>,
    /// The queued, not yet received release notification, if any.
    pub(crate) release: Option<K>,
    /// The memory of the node's next release notification while none is queued.
    pub(crate) release_slot: Option<S>,
}

impl<P, K, S, T> NodeState<P, K, S, T> {
    /// Creates the state of a fresh node, with the memory of its release notification.
    pub(crate) fn new(node: Arc<Node<P>>, release_slot: S) -> Self {
        NodeState {
            node,
            n_strong: 0,
            holders: RBTree::new(),
            release: None,
            release_slot: Some(release_slot),
        }
    }

    /// Adds `n` strong references, for the remote holder `holder` or as extra owner or
    /// in-flight references (`None`).
    ///
    /// Returns the key of a queued release notification, which no longer holds: the caller
    /// takes it off the queue and gives its memory back with [`Self::release_withdrawn`].
    pub(crate) fn get(&mut self, holder: Option<HolderReservation<P, S, T>>, n: u64) -> Option<K> {
        if let Some(HolderReservation {
            peer,
            id,
            res,
            destroy,
        }) = holder
        {
            match self.holders.get_mut(&id) {
                Some(x) => x.get(n),
                None => {
                    let h = Holder::Live {
                        peer,
                        refs: n,
                        destroy: Some(destroy),
                    };
                    self.holders.insert(res.into_node(id, h));
                }
            }
        }
        self.n_strong = self.n_strong.saturating_add(n);
        self.release.take()
    }

    /// Takes back the memory of a release notification withdrawn from the queue after
    /// [`Self::get`].
    pub(crate) fn release_withdrawn(&mut self, slot: S) {
        self.release_slot = Some(slot);
    }

    /// Drops `n` strong references, of the remote holder `holder` (its ID) or extra owner or
    /// in-flight ones (`None`); a holder whose references are all gone stops being one.
    ///
    /// Returns the memory of the node's `NODE_RELEASE` when the last strong reference went
    /// away and none is queued yet: the caller queues the notification in it and records its
    /// key with [`Self::release_queued`]. Never allocates.
    pub(crate) fn put(&mut self, holder: Option<u64>, n: u64) -> Option<S> {
        if let Some(h) = holder {
            let gone = self.holders.get_mut(&h).is_some_and(|x| x.put(n));
            if gone {
                self.holders.remove(&h);
            }
        }
        let was = self.n_strong;
        self.n_strong = self.n_strong.saturating_sub(n);
        if was == 0 || self.n_strong != 0 || self.release.is_some() {
            return None;
        }
        self.release_slot.take()
    }

    /// Records the key of the release notification queued after [`Self::put`].
    pub(crate) fn release_queued(&mut self, key: K) {
        self.release = Some(key);
    }

    /// Takes back the memory of the release notification `key` that was just taken off the
    /// queue (received, dropped or withdrawn), if it is the queued one.
    pub(crate) fn release_dequeued(&mut self, key: &K, slot: S) -> Option<S>
    where
        K: PartialEq,
    {
        if self.release.as_ref() != Some(key) {
            return Some(slot);
        }
        self.release = None;
        self.release_slot = Some(slot);
        None
    }
}

/// A peer's handle to a node.
///
/// A handle is one entry of its peer's [`HandleMap`], found by ID and by node. Its fields are as
/// narrow as their ranges allow, so that the entry (the links of both trees, both keys and this
/// value) fits `kmalloc-96` (checked at build time below).
pub(crate) struct Handle<P> {
    /// The node.
    pub(crate) node: Arc<Node<P>>,
    /// The ID the peer names the handle by.
    pub(crate) id: u64,
    /// User references; the handle is unlinked when this drops to zero. Each is charged to the
    /// peer's handle limit, a `u32`, so the count never saturates in practice.
    pub(crate) n_user: u32,
    /// Whether the node is an owner handle created on the fly by an operation that has not
    /// finished yet: the peer's creating operation (at most one operation of a peer has nodes
    /// pending, see [`OpToken`]); cleared once the node is settled. Other operations wait until
    /// it is clear before they use the handle, so nobody else can observe a node whose creation
    /// may still be undone.
    pub(crate) pending: bool,
    /// Whether a `NODE_DESTROY` of the node was delivered through this handle. A destruction is
    /// notified once per handle: a second entry for it (a handle released and linked again while
    /// its notification was queued, or the join of a handle linked by a racing receive) is
    /// dropped.
    pub(crate) destroy_delivered: bool,
}

/// The size of one entry of an `RBTree<K, V>`, its own allocation: the tree links, the key and
/// the value.
pub(crate) const fn tree_entry_size<K, V>() -> usize {
    size_of::<kernel::bindings::rb_node>() + size_of::<(K, V)>()
}

/// The most kernel memory a handle takes in its peer: one `kmalloc-96` object, linked into the
/// map by ID and the map by node.
pub(crate) const HANDLE_BYTES: usize = 96;

/// The most kernel memory a node takes: one `kmalloc-32` object, the node behind its reference
/// count.
pub(crate) const NODE_BYTES: usize = 32;

const _: () = assert!(size_of::<u64>() + size_of::<Node<()>>() <= NODE_BYTES);
const _: () = assert!(BiMap::<u64, NodeKey, Handle<()>>::ENTRY_SIZE <= HANDLE_BYTES);

/// Identifies one operation of a peer that may create nodes on the fly, so it can use the nodes
/// it created itself while they are still pending (see [`Handle::pending`]). The value is drawn
/// lazily, on the first creation.
#[derive(Default)]
pub(crate) struct OpToken(pub(crate) u64);

/// Whether an ID was chosen by the kernel, so an unknown one cannot name a new node.
pub(crate) fn is_managed_id(id: u64) -> bool {
    id & (BUS1_HANDLE_FLAG_MANAGED | BUS1_HANDLE_FLAG_REMOTE) != 0
}

/// The preallocated memory of one new handle, so the link step cannot fail.
pub(crate) struct HandleReservation<P> {
    /// The entry of the map by ID and by node.
    entry: BiMapReservation<u64, NodeKey, Handle<P>>,
}

impl<P> HandleReservation<P> {
    /// Allocates the memory of one handle, charged to the current memory cgroup.
    pub(crate) fn new() -> Result<Self> {
        Self::with_flags(GFP_KERNEL_ACCOUNT)
    }

    /// Allocates the memory of one handle with the allocation flags `flags`.
    pub(crate) fn with_flags(flags: Flags) -> Result<Self> {
        Ok(HandleReservation {
            entry: BiMapReservation::new(flags)?,
        })
    }
}

/// A peer's handles, by ID and by node: each handle is one entry, found by either key.
///
/// # Invariants
///
/// - Every handle's `id` is its ID key in `handles`.
/// - Every linked handle has `n_user > 0`.
/// - Kernel-assigned IDs are `serial << 3 | MANAGED [| REMOTE]` with serials never reused.
pub(crate) struct HandleMap<P> {
    /// Last serial used for a kernel-assigned ID.
    last_serial: u64,
    /// The handles by ID and by node.
    handles: BiMap<u64, NodeKey, Handle<P>>,
}

impl<P> HandleMap<P> {
    /// Creates an empty map.
    pub(crate) fn new() -> Self {
        HandleMap {
            last_serial: 0,
            handles: BiMap::new(),
        }
    }

    /// Returns the handle named `id`.
    pub(crate) fn by_id(&self, id: u64) -> Option<&Handle<P>> {
        self.handles.get1(&id).map(|(_, h)| h)
    }

    /// Returns the handle to the node `key`.
    pub(crate) fn by_node(&self, key: &NodeKey) -> Option<&Handle<P>> {
        self.handles.get2(key).map(|(_, h)| h)
    }

    /// Returns the handle to the node `key` for modification.
    pub(crate) fn by_node_mut(&mut self, key: &NodeKey) -> Option<&mut Handle<P>> {
        self.handles.get2_mut(key)
    }

    /// Returns the number of linked handles.
    pub(crate) fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Allocates a fresh kernel-assigned ID, with `REMOTE` unless the peer owns the node.
    fn alloc_id(&mut self, remote: bool) -> Result<u64> {
        let serial = self.last_serial.checked_add(1).ok_or(ENOSPC)?;
        let mut id = serial.checked_mul(8).ok_or(ENOSPC)? | BUS1_HANDLE_FLAG_MANAGED;
        if remote {
            id |= BUS1_HANDLE_FLAG_REMOTE;
        }
        self.last_serial = serial;
        Ok(id)
    }

    /// Links a new handle to `node` with one user reference, named `id` if given (a user-chosen
    /// ID that must be free) or by a fresh kernel-assigned ID. Returns the ID; `EEXIST` if the ID
    /// or the node has a handle already.
    pub(crate) fn link(
        &mut self,
        node: Arc<Node<P>>,
        id: Option<u64>,
        remote: bool,
        res: HandleReservation<P>,
    ) -> Result<u64> {
        let id = match id {
            Some(id) => id,
            None => self.alloc_id(remote)?,
        };
        let key = node.key();
        let h = Handle {
            node,
            id,
            n_user: 1,
            pending: false,
            destroy_delivered: false,
        };
        // INVARIANT: The handle's `id` is its ID key.
        self.handles
            .insert(res.entry, id, key, h)
            .map_err(|_| EEXIST)?;
        Ok(id)
    }

    /// Adds one user reference to the handle to `key`; returns its ID.
    pub(crate) fn acquire(&mut self, key: &NodeKey) -> Option<u64> {
        let h = self.handles.get2_mut(key)?;
        h.n_user = h.n_user.saturating_add(1);
        Some(h.id)
    }

    /// Drops one user reference of the handle to `key`; unlinks and returns the handle when it
    /// was the last one.
    pub(crate) fn release(&mut self, key: &NodeKey) -> Option<Handle<P>> {
        self.release_n(key, 1)
    }

    /// Drops `n` user references of the handle to `key`, at most as many as it has; unlinks and
    /// returns the handle when they were all it had.
    pub(crate) fn release_n(&mut self, key: &NodeKey, n: u32) -> Option<Handle<P>> {
        let h = self.handles.get2_mut(key)?;
        if h.n_user > n {
            h.n_user -= n;
            return None;
        }
        self.handles.remove2(key).map(|(_, _, h)| h)
    }

    /// Unlinks every handle and returns them, keeping the ID serial counter.
    pub(crate) fn take_all(&mut self) -> BiMap<u64, NodeKey, Handle<P>> {
        core::mem::take(&mut self.handles)
    }
}

#[kunit_tests(bus1_node)]
mod tests {
    use super::*;

    /// A stand-in for the peer type: this module does not know it.
    struct TestPeer;

    #[test]
    fn managed_ids_are_fresh_and_flagged() -> Result {
        let mut map = HandleMap::<TestPeer>::new();
        assert_eq!(map.alloc_id(false)?, 0x9);
        assert_eq!(map.alloc_id(true)?, 0x13);
        assert_eq!(map.alloc_id(true)?, 0x1b);
        assert!(is_managed_id(0x9));
        assert!(is_managed_id(u64::MAX));
        assert!(!is_managed_id(0x100));
        assert!(!is_managed_id(0));
        Ok(())
    }

    #[test]
    fn destruction_ties_are_broken_by_the_tag() -> Result {
        let o = 1000;
        let node = Node::new(Owner::<TestPeer>::new(o, 0)?, 1)?;
        // Not stamped yet: nothing is ordered after it.
        assert!(!node.destroyed_before(u64::MAX, u64::MAX));
        node.set_destroyed(12);
        assert_eq!(node.destruction(), Some((12, o)));
        // A transaction committed at the same timestamp is ordered by its tag, as on every
        // queue: after the destruction with a larger tag, before it with a smaller one.
        assert!(node.destroyed_before(12, o + 1));
        assert!(!node.destroyed_before(12, o - 1));
        assert!(!node.destroyed_before(10, u64::MAX));
        assert!(node.destroyed_before(14, 0));
        Ok(())
    }

    #[test]
    fn route_lives_from_connect_to_cut() -> Result {
        let owner = Owner::<TestPeer>::new(7, 0)?;
        let peer = Arc::new(TestPeer, GFP_KERNEL)?;
        let node = Node::new(owner.clone(), 1)?;
        assert_eq!(node.key(), (7, 1));
        // No route before the first node is connected: nothing to pin or reach.
        assert!(node.owner_peer().is_none());
        assert!(owner.acquire_route().is_err());
        owner.connect(&peer);
        assert!(node.owner_peer().is_some_and(|p| Arc::ptr_eq(&p, &peer)));
        let pinned = owner.acquire_route()?;
        owner.release();
        drop(pinned);
        // The teardown: shut down (no active reference is left), then cut.
        owner.shut_down(|| ())?;
        assert!(owner.acquire().is_err());
        assert!(owner.shut_down(|| ()).is_err());
        let route = owner.cut();
        assert!(route.is_some_and(|p| Arc::ptr_eq(&p, &peer)));
        // Cut: the node reaches nothing, and a later connect does not restore the route.
        assert!(node.owner_peer().is_none());
        owner.connect(&peer);
        assert!(node.owner_peer().is_none());
        assert!(owner.acquire_route().is_err());
        Ok(())
    }

    #[test]
    fn handle_refcounting() -> Result {
        let owner = Owner::<TestPeer>::new(3, 0)?;
        let node = Node::new(owner.clone(), 1)?;
        let key = node.key();
        let mut map = HandleMap::new();
        let id = map.link(node.clone(), None, true, HandleReservation::new()?)?;
        assert_eq!(id, 0xb);
        assert_eq!(map.acquire(&key), Some(id));
        assert!(map.by_id(id).is_some());
        assert!(map.release(&key).is_none());
        assert!(map.release(&key).is_some());
        assert!(map.by_id(id).is_none());
        assert!(map.is_empty());
        // Serials are not reused: a new handle to the same node gets a new ID.
        let again = map.link(node, None, true, HandleReservation::new()?)?;
        assert_eq!(again, 0x13);
        let user = Node::new(owner, 2)?;
        assert_eq!(
            map.link(user, Some(0x100), false, HandleReservation::new()?)?,
            0x100
        );
        assert!(map.by_id(0x100).is_some());
        drop(map.take_all());
        assert!(map.by_id(again).is_none());
        Ok(())
    }
}
