// SPDX-License-Identifier: GPL-2.0

//! Nodes, handles and the per-peer handle-ID map.
//!
//! A node is owned by exactly one peer for its whole life. Every peer that can name a node does
//! so through exactly one [`Handle`] in its [`HandleMap`]; the owner's handle is the node's
//! "owner handle". The owner-side bookkeeping of a live node (strong count, holders, queued
//! release notification) is a [`NodeState`] stored in the owner's locked state, so it is only
//! ever touched under the owner's lock and no lock is shared between peers.

use crate::{
    peer::Peer,
    uapi::{
        BUS1_HANDLE_FLAG_MANAGED,
        BUS1_HANDLE_FLAG_REMOTE, //
    },
};
use kernel::{
    prelude::*,
    rbtree::{
        RBTree,
        RBTreeNodeReservation, //
    },
    sync::{
        atomic::{
            ordering::{
                Acquire,
                Release, //
            },
            Atomic,
        },
        Arc,
    },
};

/// Identity of a node: the owner's peer ID and the node's per-owner serial number.
///
/// Peer IDs are never reused, so the pair is unique for the lifetime of the module.
pub(crate) type NodeKey = (u64, u64);

/// A node: the target of handles. The mutable state is a [`NodeState`] owned by the owner peer;
/// only the destruction timestamp lives here, because receivers of messages that name the node
/// must compare against it without taking the owner's lock.
pub(crate) struct Node {
    /// The owning peer, pinned so holders can reach its lock and queue.
    owner: Arc<Peer>,
    /// Serial number within the owner.
    serial: u64,
    /// Commit timestamp of the node's destruction, zero until it is known. Written once, before
    /// any entry of the destroying transaction is committed.
    destroyed: Atomic<u64>,
}

impl Node {
    /// Creates the node with serial `serial` owned by `owner`.
    pub(crate) fn new(owner: Arc<Peer>, serial: u64) -> Result<Arc<Self>> {
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

    /// Returns the owning peer.
    pub(crate) fn owner(&self) -> &Arc<Peer> {
        &self.owner
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
pub(crate) struct Holder {
    /// The holding peer, pinned so destruction can notify it.
    pub(crate) peer: Arc<Peer>,
    /// Number of the holder's user references to the node.
    pub(crate) refs: u64,
}

/// Owner-side state of a live node. Removed from the owner when the node is destroyed.
pub(crate) struct NodeState<K> {
    /// The node itself.
    pub(crate) node: Arc<Node>,
    /// Strong references: every remote user reference plus every owner reference but the first.
    pub(crate) n_strong: u64,
    /// Remote holders by peer ID; they get a destruction notification.
    pub(crate) holders: RBTree<u64, Holder>,
    /// The queued, not yet received release notification, if any.
    pub(crate) release: Option<K>,
}

impl<K> NodeState<K> {
    /// Creates the state of a fresh node.
    pub(crate) fn new(node: Arc<Node>) -> Self {
        NodeState {
            node,
            n_strong: 0,
            holders: RBTree::new(),
            release: None,
        }
    }
}

/// A peer's handle to a node.
pub(crate) struct Handle {
    /// The node.
    pub(crate) node: Arc<Node>,
    /// The ID the peer names the handle by.
    pub(crate) id: u64,
    /// User references; the handle is unlinked when this drops to zero.
    pub(crate) n_user: u64,
}

/// Whether an ID was chosen by the kernel, so an unknown one cannot name a new node.
pub(crate) fn is_managed_id(id: u64) -> bool {
    id & (BUS1_HANDLE_FLAG_MANAGED | BUS1_HANDLE_FLAG_REMOTE) != 0
}

/// Preallocated tree nodes for linking one new handle, so the link step cannot fail.
pub(crate) struct HandleReservation {
    /// For the ID map.
    id: RBTreeNodeReservation<u64, NodeKey>,
    /// For the node map.
    handle: RBTreeNodeReservation<NodeKey, Handle>,
}

impl HandleReservation {
    /// Allocates the tree nodes for one handle.
    pub(crate) fn new() -> Result<Self> {
        Ok(HandleReservation {
            id: RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?,
            handle: RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?,
        })
    }
}

/// A peer's handles, by ID and by node.
///
/// # Invariants
///
/// - `ids` and `handles` describe the same set: `ids[h.id] == k` iff `handles[k] == h`.
/// - Every linked handle has `n_user > 0`.
/// - Kernel-assigned IDs are `serial << 3 | MANAGED [| REMOTE]` with serials never reused.
pub(crate) struct HandleMap {
    /// Last serial used for a kernel-assigned ID.
    last_serial: u64,
    /// Handle ID to node.
    ids: RBTree<u64, NodeKey>,
    /// Node to handle.
    handles: RBTree<NodeKey, Handle>,
}

impl HandleMap {
    /// Creates an empty map.
    pub(crate) fn new() -> Self {
        HandleMap {
            last_serial: 0,
            ids: RBTree::new(),
            handles: RBTree::new(),
        }
    }

    /// Returns the handle named `id`.
    pub(crate) fn by_id(&self, id: u64) -> Option<&Handle> {
        self.handles.get(self.ids.get(&id)?)
    }

    /// Returns the handle to the node `key`.
    pub(crate) fn by_node(&self, key: &NodeKey) -> Option<&Handle> {
        self.handles.get(key)
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
    /// ID that must be free) or by a fresh kernel-assigned ID. Returns the ID.
    pub(crate) fn link(
        &mut self,
        node: Arc<Node>,
        id: Option<u64>,
        remote: bool,
        res: HandleReservation,
    ) -> Result<u64> {
        let id = match id {
            Some(id) => id,
            None => self.alloc_id(remote)?,
        };
        let key = node.key();
        self.ids.insert(res.id.into_node(id, key));
        self.handles.insert(res.handle.into_node(
            key,
            Handle {
                node,
                id,
                n_user: 1,
            },
        ));
        Ok(id)
    }

    /// Adds one user reference to the handle to `key`; returns its ID.
    pub(crate) fn acquire(&mut self, key: &NodeKey) -> Option<u64> {
        let h = self.handles.get_mut(key)?;
        h.n_user = h.n_user.saturating_add(1);
        Some(h.id)
    }

    /// Drops one user reference of the handle to `key`; unlinks and returns the handle when it
    /// was the last one.
    pub(crate) fn release(&mut self, key: &NodeKey) -> Option<Handle> {
        let h = self.handles.get_mut(key)?;
        if h.n_user > 1 {
            h.n_user -= 1;
            return None;
        }
        let h = self.handles.remove(key)?;
        self.ids.remove(&h.id);
        Some(h)
    }

    /// Returns the number of handles to nodes that peers other than `me` own.
    pub(crate) fn count_foreign(&self, me: &Arc<Peer>) -> usize {
        self.handles
            .values()
            .filter(|h| !Arc::ptr_eq(h.node.owner(), me))
            .count()
    }

    /// Unlinks every handle and returns them, keeping the ID serial counter.
    pub(crate) fn take_all(&mut self) -> RBTree<NodeKey, Handle> {
        self.ids = RBTree::new();
        core::mem::take(&mut self.handles)
    }
}

#[kunit_tests(bus1_node)]
mod tests {
    use super::*;

    #[test]
    fn managed_ids_are_fresh_and_flagged() -> Result {
        let mut map = HandleMap::new();
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
    fn handle_refcounting() -> Result {
        let peer = Peer::new()?;
        let node = Node::new(peer.clone(), 1)?;
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
        let user = Node::new(peer, 2)?;
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
