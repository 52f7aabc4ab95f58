// SPDX-License-Identifier: GPL-2.0

//! The registry of peer objects, for the debugfs file `bus1/peers`.
//!
//! Every peer's [`crate::node::Owner`] holds a [`Listing`]: an entry of the registry, keyed by
//! the peer's ID, with the UID the peer is charged to. The entry is inserted when the owner is
//! created (with memory allocated there) and removed when the owner object is freed, so it lives
//! exactly as long as anything of the peer: the peer object while a file is open, and then the
//! owner object alone while other peers' handles still name the peer's nodes. From `open(2)` to
//! `release` the entry also holds a reference to the peer ([`Listing::attach`],
//! [`Listing::detach`]) through which the file prints the peer's full report.
//!
//! The registry's lock is a spinlock, innermost: it is taken only to insert, change or remove one
//! entry and by the file to copy one entry out, and nothing is taken, allocated or freed under it
//! (removed entries and references are dropped after it is released). An owner object may be
//! freed anywhere a node or a peer is dropped, under a peer's `inner` lock too, so no other lock
//! may ever be taken under this one, and the file prints each peer with no registry lock held.
//! Nothing on the send, receive or release path takes it.

#![deny(unsafe_code)]

use crate::ext::{
    global::peers,
    task_ext::uid_for_current, //
};
use core::fmt;
use kernel::{
    debugfs::Writer,
    prelude::*,
    rbtree::{
        RBTree,
        RBTreeNodeReservation, //
    },
    sync::Arc,
};

/// What the registry shows of a peer that is still attached to its file.
pub(crate) trait Listed: Send + Sync {
    /// Writes the peer's report, as its fdinfo shows it.
    fn report(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

/// An entry of the registry.
struct Slot {
    /// The UID the peer is charged to (global value).
    uid: u32,
    /// The peer, from `open(2)` until `release`.
    peer: Option<Arc<dyn Listed>>,
    /// Whether the peer was attached to a file and released since: only its owner object is
    /// left. An entry that was never attached belongs to a peer being opened (or one made by a
    /// KUnit test) and is not shown.
    closed: bool,
}

/// The most kernel memory an entry takes: one `kmalloc-64` object (the tree links, the key and
/// the slot), charged with the peer.
const SLOT_BYTES: usize = 64;

const _: () = assert!(
    core::mem::size_of::<kernel::bindings::rb_node>() + core::mem::size_of::<(u64, Slot)>()
        <= SLOT_BYTES
);

/// Every peer's owner object, by peer ID.
pub(crate) struct Registry {
    /// Created on first use, because an empty [`RBTree`] cannot be built in a `static`.
    tree: Option<RBTree<u64, Slot>>,
}

impl Registry {
    /// An empty registry.
    pub(crate) const fn new() -> Self {
        Registry { tree: None }
    }

    /// The entry `id`.
    fn slot(&mut self, id: u64) -> Option<&mut Slot> {
        self.tree.as_mut()?.get_mut(&id)
    }
}

/// The registry entry of one peer, held by the peer's owner object; dropping it removes the
/// entry.
pub(crate) struct Listing {
    /// The peer's ID, the entry's key.
    id: u64,
}

impl Listing {
    /// Inserts the entry of the peer `id`, charged to `uid`; `EEXIST` if there is one. Allocates
    /// the entry, charged to the current memory cgroup; removing it later allocates nothing.
    pub(crate) fn new(id: u64, uid: u32) -> Result<Self> {
        let res = RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?;
        let node = res.into_node(
            id,
            Slot {
                uid,
                peer: None,
                closed: false,
            },
        );
        let mut reg = peers()?;
        let tree = reg.tree.get_or_insert_with(RBTree::new);
        // Peer IDs are never reused; only a KUnit test could pick one that is in use.
        if tree.get(&id).is_some() {
            drop(reg);
            drop(node);
            return Err(EEXIST);
        }
        tree.insert(node);
        Ok(Listing { id })
    }

    /// Makes the entry show `peer`, the peer that was just opened; it is kept until
    /// [`Self::detach`].
    pub(crate) fn attach(&self, peer: Arc<dyn Listed>) {
        let old = match peers() {
            Ok(mut reg) => reg.slot(self.id).and_then(|s| s.peer.replace(peer)),
            Err(_) => None,
        };
        drop(old);
    }

    /// Drops the entry's reference to the peer, at `release`: from now on it shows only that the
    /// peer is closed and its owner object still exists.
    pub(crate) fn detach(&self) {
        let old = match peers() {
            Ok(mut reg) => reg.slot(self.id).and_then(|s| {
                s.closed = true;
                s.peer.take()
            }),
            Err(_) => None,
        };
        // The peer may go here, with no registry lock held.
        drop(old);
    }
}

impl Drop for Listing {
    fn drop(&mut self) {
        let gone = match peers() {
            Ok(mut reg) => reg.tree.as_mut().and_then(|t| t.remove_node(&self.id)),
            Err(_) => None,
        };
        // Freed with no registry lock held.
        drop(gone);
    }
}

/// One entry, copied out under the registry's lock.
struct Entry {
    id: u64,
    uid: u32,
    peer: Option<Arc<dyn Listed>>,
}

/// Returns the first shown entry with an ID of at least `from`, taking a reference to its peer.
/// The registry's lock is held only for this lookup.
fn next_entry(mut from: u64) -> Option<Entry> {
    let reg = peers().ok()?;
    let tree = reg.tree.as_ref()?;
    loop {
        let cursor = tree.cursor_lower_bound(&from)?;
        let (&id, s) = cursor.current();
        if s.peer.is_some() || s.closed {
            return Some(Entry {
                id,
                uid: s.uid,
                peer: s.peer.clone(),
            });
        }
        from = id.checked_add(1)?;
    }
}

/// Writes the block of a peer whose owner object is all that is left: its ID, its state and
/// its principal, in the format of its report.
fn write_closed(f: &mut fmt::Formatter<'_>, id: u64, uid: u32) -> fmt::Result {
    write!(
        f,
        "bus1-peer:\t{:16x}\nbus1-state:\tclosed\nbus1-user:\tuid={}\n",
        id,
        uid_for_current(uid)
    )
}

/// The debugfs file `bus1/peers`: one block per peer object, in the order of peer IDs.
///
/// A peer attached to a file shows its full report, the lines of its fdinfo (`open` or
/// `disconnected`); a closed peer whose owner object other peers' handles keep shows as
/// `closed`, with its ID and principal. Blocks are separated by an empty line. The registry's
/// lock is taken once per entry, to copy it out; the report is written without it.
pub(crate) struct PeersFile;

impl Writer for PeersFile {
    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut from = 0u64;
        let mut first = true;
        while let Some(e) = next_entry(from) {
            if !first {
                writeln!(f)?;
            }
            first = false;
            match &e.peer {
                Some(p) => p.report(f)?,
                None => write_closed(f, e.id, e.uid)?,
            }
            // The reference goes here, with no lock held; the peer may go with it.
            drop(e.peer);
            match e.id.checked_add(1) {
                Some(n) => from = n,
                None => break,
            }
        }
        Ok(())
    }
}

#[kunit_tests(bus1_registry)]
mod tests {
    use super::*;

    /// Peer IDs no real peer reaches in a test run.
    const ID: u64 = 0x7fff_0000_0000_0042;

    /// A peer that reports one fixed line.
    struct Fake;

    impl Listed for Fake {
        fn report(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            writeln!(f, "fake")
        }
    }

    /// The entry `id`: its UID, whether it holds a peer and whether it is closed.
    fn entry(id: u64) -> Result<Option<(u32, bool, bool)>> {
        let mut reg = peers()?;
        Ok(reg.slot(id).map(|s| (s.uid, s.peer.is_some(), s.closed)))
    }

    #[test]
    fn entry_lives_with_its_listing() -> Result {
        let a = Listing::new(ID, 1000)?;
        let b = Listing::new(ID + 1, 1001)?;
        // Inserted, not shown until attached.
        assert_eq!(entry(ID)?, Some((1000, false, false)));
        assert!(next_entry(ID).is_none_or(|e| e.id > ID + 1));
        let peer: Arc<dyn Listed> = Arc::new(Fake, GFP_KERNEL)?;
        a.attach(peer.clone());
        assert_eq!(entry(ID)?, Some((1000, true, false)));
        assert!(next_entry(ID).is_some_and(|e| e.id == ID && e.peer.is_some()));
        // Detached: the reference is gone, the entry shows as closed.
        a.detach();
        assert_eq!(entry(ID)?, Some((1000, false, true)));
        assert!(next_entry(ID).is_some_and(|e| e.id == ID && e.peer.is_none() && e.uid == 1000));
        // The entry's reference was given back: only `peer` holds the fake.
        assert!(Arc::into_unique_or_drop(peer).is_some());
        // Dropped: no entry left, the other one untouched.
        drop(a);
        assert_eq!(entry(ID)?, None);
        assert_eq!(entry(ID + 1)?, Some((1001, false, false)));
        drop(b);
        assert_eq!(entry(ID + 1)?, None);
        assert!(next_entry(ID).is_none_or(|e| e.id > ID + 1));
        Ok(())
    }

    #[test]
    fn dropping_an_attached_listing_drops_the_peer() -> Result {
        let a = Listing::new(ID + 2, 7)?;
        let peer: Arc<dyn Listed> = Arc::new(Fake, GFP_KERNEL)?;
        a.attach(peer.clone());
        drop(a);
        assert_eq!(entry(ID + 2)?, None);
        assert!(Arc::into_unique_or_drop(peer).is_some());
        Ok(())
    }
}
