// SPDX-License-Identifier: MIT OR Apache-2.0
//! Typed handle and node IDs.

use bus1_sys as sys;
use std::fmt;

/// A peer-local name of a handle: what `SEND` takes as a destination and
/// what messages carry.
///
/// IDs are meaningful only to the peer that holds them. Kernel-assigned IDs
/// have the *managed* bit set, and the *remote* bit unless the handle is the
/// owner's handle of its own node. An ID chosen by the peer itself (both bits
/// clear, see [`NodeId::new`]) names a node the peer owns; using an unknown
/// such ID creates that node.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HandleId(u64);

impl HandleId {
    /// The ID that never names a handle (`BUS1_HANDLE_INVALID`).
    pub const INVALID: HandleId = HandleId(sys::BUS1_HANDLE_INVALID);

    /// Wraps a raw 64-bit ID (any value; the kernel decides what it names).
    pub const fn from_raw(raw: u64) -> Self {
        HandleId(raw)
    }

    /// The raw 64-bit ID.
    pub const fn as_raw(self) -> u64 {
        self.0
    }

    /// The ID was assigned by the kernel.
    pub const fn is_managed(self) -> bool {
        self.0 & sys::BUS1_HANDLE_FLAG_MANAGED != 0
    }

    /// The handle is not the owner's handle of its node.
    pub const fn is_remote(self) -> bool {
        self.0 & sys::BUS1_HANDLE_FLAG_REMOTE != 0
    }

    /// The node ID, if this is the owner's handle of its own node.
    pub const fn as_node(self) -> Option<NodeId> {
        if self.is_remote() {
            None
        } else {
            Some(NodeId(self.0))
        }
    }
}

impl fmt::Debug for HandleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::INVALID {
            f.write_str("HandleId(INVALID)")
        } else {
            write!(f, "HandleId({:#x})", self.0)
        }
    }
}

/// The ID of a node the peer owns: its owner handle.
///
/// ```
/// use bus1::NodeId;
/// let n = NodeId::new(0x100).unwrap();     // a user-chosen ID
/// assert_eq!(n.as_raw(), 0x100);
/// assert!(NodeId::new(0x101).is_none());   // the managed bit is the kernel's
/// ```
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(u64);

impl NodeId {
    /// A user-chosen node ID: `raw` must have the managed and remote bits
    /// (bits 0 and 1) clear. The first use of an unknown such ID, as a
    /// destination, a carried handle, a transfer source or in
    /// [`Peer::destroy_nodes`](crate::Peer::destroy_nodes), creates the node.
    pub const fn new(raw: u64) -> Option<Self> {
        if raw & (sys::BUS1_HANDLE_FLAG_MANAGED | sys::BUS1_HANDLE_FLAG_REMOTE) == 0 {
            Some(NodeId(raw))
        } else {
            None
        }
    }

    /// Wraps any owner-handle ID (user-chosen or kernel-assigned without the
    /// remote bit); `None` for a remote ID.
    pub const fn from_raw(raw: u64) -> Option<Self> {
        HandleId(raw).as_node()
    }

    /// The raw 64-bit ID.
    pub const fn as_raw(self) -> u64 {
        self.0
    }

    /// The owner handle of this node.
    pub const fn handle(self) -> HandleId {
        HandleId(self.0)
    }
}

impl From<NodeId> for HandleId {
    fn from(n: NodeId) -> HandleId {
        HandleId(n.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({:#x})", self.0)
    }
}
