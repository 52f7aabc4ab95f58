// SPDX-License-Identifier: GPL-2.0

//! A map whose entries have two keys, each entry one allocation in two red-black trees.
//!
//! [`kernel::rbtree::RBTree`] allocates each entry on its own, so a value found by either of two
//! keys takes two trees, two allocations and the keys twice (one tree maps the first key to the
//! second, the other the second key to the value). A [`BiMap`] entry holds the tree links of both
//! trees, both keys and the value in one allocation, which is linked into both trees or neither:
//! the two lookups can never disagree, and the entry costs one allocation (C code does the same
//! with two `struct rb_node` members in one object).
//!
//! As with [`kernel::rbtree::RBTreeNodeReservation`], the memory of an entry can be allocated
//! ahead ([`BiMapReservation`]), so that inserting never allocates and removing never does.

use core::{
    cmp::Ordering,
    marker::PhantomData,
    mem::{
        size_of,
        MaybeUninit, //
    },
    ptr::{
        addr_of,
        addr_of_mut,
        null_mut, //
    },
};
use kernel::{
    alloc::{
        AllocError,
        Flags,
        KBox, //
    },
    bindings,
    prelude::kunit_tests,
};

/// One entry: the links of both trees first, so that a node of the first tree is the entry's
/// address and a node of the second tree is at a fixed offset from it.
#[repr(C)]
struct Entry<K1, K2, V> {
    links1: bindings::rb_node,
    links2: bindings::rb_node,
    k1: K1,
    k2: K2,
    value: V,
}

/// Offset of `links2` in an [`Entry`]: it follows `links1` in a `repr(C)` struct, and an
/// `rb_node` is a multiple of its own alignment in size.
const LINKS2: usize = size_of::<bindings::rb_node>();

/// A map of values by two keys, `K1` and `K2`, each unique in the map.
///
/// # Invariants
///
/// - Every node of `root1` is the `links1` field, and every node of `root2` the `links2` field,
///   of an [`Entry`] that was allocated as a [`KBox`] and is owned by this map; an entry is in
///   both trees or in neither.
/// - `root1` is ordered by `k1` and `root2` by `k2`, and no two entries have equal `k1` or equal
///   `k2`.
pub(crate) struct BiMap<K1, K2, V> {
    root1: bindings::rb_root,
    root2: bindings::rb_root,
    _p: PhantomData<KBox<Entry<K1, K2, V>>>,
}

// SAFETY: The map owns its entries (keys and values) through plain pointers; sending it sends
// them.
unsafe impl<K1: Send, K2: Send, V: Send> Send for BiMap<K1, K2, V> {}

// SAFETY: A shared map only gives out shared references to its keys and values.
unsafe impl<K1: Sync, K2: Sync, V: Sync> Sync for BiMap<K1, K2, V> {}

/// The memory of one [`BiMap`] entry, allocated ahead of [`BiMap::insert`].
pub(crate) struct BiMapReservation<K1, K2, V> {
    node: KBox<MaybeUninit<Entry<K1, K2, V>>>,
}

// SAFETY: Only memory, no `K1`, `K2` or `V`: it can always be moved across threads.
unsafe impl<K1, K2, V> Send for BiMapReservation<K1, K2, V> {}

// SAFETY: Only memory, no `K1`, `K2` or `V`.
unsafe impl<K1, K2, V> Sync for BiMapReservation<K1, K2, V> {}

impl<K1, K2, V> BiMapReservation<K1, K2, V> {
    /// Allocates the memory of one entry.
    pub(crate) fn new(flags: Flags) -> Result<Self, AllocError> {
        Ok(Self {
            node: KBox::new_uninit(flags)?,
        })
    }
}

/// What [`BiMap::insert`] gives back when a key is already in the map.
pub(crate) struct BiMapOccupied<K1, K2, V> {
    /// The unused memory.
    pub(crate) reservation: BiMapReservation<K1, K2, V>,
    /// The first key.
    pub(crate) k1: K1,
    /// The second key.
    pub(crate) k2: K2,
    /// The value.
    pub(crate) value: V,
}

/// Where a new node goes in a tree: its parent and the parent's child field (or the root's).
struct Slot {
    parent: *mut bindings::rb_node,
    link: *mut *mut bindings::rb_node,
}

impl<K1, K2, V> BiMap<K1, K2, V> {
    /// The size of one entry's allocation: both trees' links, both keys and the value.
    pub(crate) const ENTRY_SIZE: usize = size_of::<Entry<K1, K2, V>>();

    /// Creates an empty map.
    pub(crate) const fn new() -> Self {
        // INVARIANT: Both trees are empty.
        Self {
            root1: bindings::rb_root {
                rb_node: null_mut(),
            },
            root2: bindings::rb_root {
                rb_node: null_mut(),
            },
            _p: PhantomData,
        }
    }

    /// Returns whether the map is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.root1.rb_node.is_null()
    }

    /// Returns the entry whose first-tree node is `node`.
    ///
    /// # Safety
    ///
    /// `node` must be a node of `self.root1`.
    unsafe fn entry1(node: *mut bindings::rb_node) -> *mut Entry<K1, K2, V> {
        // `links1` is at offset 0 of the `repr(C)` entry.
        node.cast()
    }

    /// Returns the entry whose second-tree node is `node`.
    ///
    /// # Safety
    ///
    /// `node` must be a node of `self.root2`.
    unsafe fn entry2(node: *mut bindings::rb_node) -> *mut Entry<K1, K2, V> {
        // SAFETY: By the type invariants `node` is the `links2` field of an entry, `LINKS2`
        // bytes into it, so stepping back stays within the same allocation.
        unsafe { node.byte_sub(LINKS2).cast() }
    }

    /// Walks the tree `root` for a key, `cmp(entry)` comparing the key with the entry's: returns
    /// the entry with an equal key, or where a node with that key would be linked. The walk only
    /// reads; the slot may be written through only if `root` came from a mutable borrow.
    ///
    /// # Safety
    ///
    /// `root` must be a valid tree root, and `entry_of` must map every node of it to its entry
    /// (`entry1` for `root1`, `entry2` for `root2`).
    unsafe fn walk(
        root: *const bindings::rb_root,
        entry_of: unsafe fn(*mut bindings::rb_node) -> *mut Entry<K1, K2, V>,
        mut cmp: impl FnMut(&Entry<K1, K2, V>) -> Ordering,
    ) -> Result<*mut Entry<K1, K2, V>, Slot> {
        let mut parent = null_mut();
        // SAFETY: `root` is a valid tree root.
        let mut link = unsafe { addr_of!((*root).rb_node) }.cast_mut();
        // SAFETY: `link` points to the root's or a node's child field.
        while let Some(node) = unsafe { (*link).as_mut() } {
            let node: *mut bindings::rb_node = node;
            // SAFETY: `node` is a node of `root`, so (by the caller) `entry_of` gives its entry,
            // which the map owns and which lives as long as it is in the tree.
            let e = unsafe { &*entry_of(node) };
            parent = node;
            link = match cmp(e) {
                // SAFETY: `node` is a valid node.
                Ordering::Less => unsafe { addr_of_mut!((*node).rb_left) },
                // SAFETY: `node` is a valid node.
                Ordering::Greater => unsafe { addr_of_mut!((*node).rb_right) },
                // SAFETY: As above.
                Ordering::Equal => return Ok(unsafe { entry_of(node) }),
            };
        }
        Err(Slot { parent, link })
    }

    /// Returns the entry whose first key is `k1`.
    fn find1(&self, k1: &K1) -> Option<*mut Entry<K1, K2, V>>
    where
        K1: Ord,
    {
        // SAFETY: `root1` is a valid root, and `entry1` maps its nodes to their entries (type
        // invariants).
        unsafe { Self::walk(&self.root1, Self::entry1, |e| k1.cmp(&e.k1)) }.ok()
    }

    /// Returns the entry whose second key is `k2`.
    fn find2(&self, k2: &K2) -> Option<*mut Entry<K1, K2, V>>
    where
        K2: Ord,
    {
        // SAFETY: `root2` is a valid root, and `entry2` maps its nodes to their entries (type
        // invariants).
        unsafe { Self::walk(&self.root2, Self::entry2, |e| k2.cmp(&e.k2)) }.ok()
    }

    /// Returns the second key and the value of the entry whose first key is `k1`.
    pub(crate) fn get1(&self, k1: &K1) -> Option<(&K2, &V)>
    where
        K1: Ord,
    {
        // SAFETY: The entry is owned by the map and lives while it is borrowed.
        self.find1(k1).map(|e| unsafe { (&(*e).k2, &(*e).value) })
    }

    /// Returns the first key and the value of the entry whose second key is `k2`.
    pub(crate) fn get2(&self, k2: &K2) -> Option<(&K1, &V)>
    where
        K2: Ord,
    {
        // SAFETY: The entry is owned by the map and lives while it is borrowed.
        self.find2(k2).map(|e| unsafe { (&(*e).k1, &(*e).value) })
    }

    /// Returns the value of the entry whose second key is `k2`, for modification.
    pub(crate) fn get2_mut(&mut self, k2: &K2) -> Option<&mut V>
    where
        K2: Ord,
    {
        // SAFETY: The entry is owned by the map, which is borrowed mutably: the value is not
        // aliased. The keys, which order the trees, stay out of reach.
        self.find2(k2).map(|e| unsafe { &mut (*e).value })
    }

    /// Inserts an entry with the keys `k1` and `k2` and the value `value` into the memory `res`.
    /// Never allocates. Fails, giving everything back, if either key is in the map already.
    pub(crate) fn insert(
        &mut self,
        res: BiMapReservation<K1, K2, V>,
        k1: K1,
        k2: K2,
        value: V,
    ) -> Result<(), BiMapOccupied<K1, K2, V>>
    where
        K1: Ord,
        K2: Ord,
    {
        let root1 = addr_of_mut!(self.root1);
        let root2 = addr_of_mut!(self.root2);
        // SAFETY: Both roots are valid, and `entry1` and `entry2` map the nodes of the two trees to
        // their entries (type invariants).
        let slots = unsafe {
            (
                Self::walk(root1, Self::entry1, |e| k1.cmp(&e.k1)),
                Self::walk(root2, Self::entry2, |e| k2.cmp(&e.k2)),
            )
        };
        let (Err(s1), Err(s2)) = slots else {
            return Err(BiMapOccupied {
                reservation: res,
                k1,
                k2,
                value,
            });
        };
        let e = KBox::into_raw(KBox::write(
            res.node,
            Entry {
                links1: bindings::rb_node::default(),
                links2: bindings::rb_node::default(),
                k1,
                k2,
                value,
            },
        ));
        // INVARIANT: The entry is owned by the map and linked into both trees, each ordered by its
        // key, and neither key was present.
        // SAFETY: `e` is a valid, new entry whose links are in no tree. The slots were found by
        // walks that nothing changed since (the map is borrowed mutably), so each is a null child
        // field of its tree with the right ordering; linking one tree and rebalancing it does not
        // touch the other tree's slot.
        unsafe {
            bindings::rb_link_node(addr_of_mut!((*e).links1), s1.parent, s1.link);
            bindings::rb_insert_color(addr_of_mut!((*e).links1), root1);
            bindings::rb_link_node(addr_of_mut!((*e).links2), s2.parent, s2.link);
            bindings::rb_insert_color(addr_of_mut!((*e).links2), root2);
        }
        Ok(())
    }

    /// Removes the entry whose second key is `k2` and returns its keys and value. Never
    /// allocates.
    pub(crate) fn remove2(&mut self, k2: &K2) -> Option<(K1, K2, V)>
    where
        K2: Ord,
    {
        let e = self.find2(k2)?;
        // INVARIANT: The entry leaves both trees together.
        // SAFETY: `e` is an entry of the map, so linked into both trees (type invariants); once
        // unlinked, the map no longer owns it and the `KBox` it was allocated as takes it back.
        let entry = unsafe {
            bindings::rb_erase(addr_of_mut!((*e).links1), addr_of_mut!(self.root1));
            bindings::rb_erase(addr_of_mut!((*e).links2), addr_of_mut!(self.root2));
            KBox::into_inner(KBox::from_raw(e))
        };
        Some((entry.k1, entry.k2, entry.value))
    }

    /// Returns an iterator over the entries in the order of their second key.
    pub(crate) fn iter(&self) -> Iter<'_, K1, K2, V> {
        Iter {
            // SAFETY: `root2` is a valid tree root.
            next: unsafe { bindings::rb_first(&self.root2) },
            _p: PhantomData,
        }
    }
}

impl<K1, K2, V> Default for BiMap<K1, K2, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K1, K2, V> Drop for BiMap<K1, K2, V> {
    fn drop(&mut self) {
        // Every entry is in the first tree; freeing in postorder never looks at a freed node.
        // SAFETY: `root1` is a valid tree root.
        let mut next = unsafe { bindings::rb_first_postorder(&self.root1) };
        while !next.is_null() {
            let node = next;
            // SAFETY: `node` is still valid: nodes after it in postorder are not freed yet.
            next = unsafe { bindings::rb_next_postorder(node) };
            // SAFETY: `node` is in `root1`, so its entry was allocated as a `KBox` and is owned by
            // the map, which is going away: nothing looks at the entry again.
            drop(unsafe { KBox::from_raw(Self::entry1(node)) });
        }
    }
}

/// An iterator over the entries of a [`BiMap`], in the order of their second key.
///
/// # Invariants
///
/// `next` is null or a node of the second tree of the map borrowed for `'a`.
pub(crate) struct Iter<'a, K1, K2, V> {
    next: *mut bindings::rb_node,
    _p: PhantomData<&'a BiMap<K1, K2, V>>,
}

impl<'a, K1, K2, V> Iterator for Iter<'a, K1, K2, V> {
    type Item = (&'a K1, &'a K2, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next.is_null() {
            return None;
        }
        // SAFETY: By the type invariants `next` is a node of the borrowed map's second tree, so
        // `entry2` gives its entry, which lives for `'a`.
        let e = unsafe { &*BiMap::<K1, K2, V>::entry2(self.next) };
        // SAFETY: `next` is a valid node of the tree.
        // INVARIANT: `rb_next` gives the next node of the same tree, or null.
        self.next = unsafe { bindings::rb_next(self.next) };
        Some((&e.k1, &e.k2, &e.value))
    }
}

#[kunit_tests(bus1_bimap)]
mod tests {
    use super::*;
    use kernel::prelude::*;

    fn res() -> Result<BiMapReservation<u64, (u64, u64), KBox<u32>>> {
        Ok(BiMapReservation::new(GFP_KERNEL)?)
    }

    fn map(n: u64) -> Result<BiMap<u64, (u64, u64), KBox<u32>>> {
        let mut m = BiMap::new();
        // First keys ascending, second keys descending: the two orders differ.
        for i in 0..n {
            // CAST: `i < n`, small.
            let v = KBox::new(i as u32, GFP_KERNEL)?;
            if m.insert(res()?, i, (n - i, 0), v).is_err() {
                return Err(EINVAL);
            }
        }
        Ok(m)
    }

    #[test]
    fn both_keys_find_the_entry() -> Result {
        let m = map(64)?;
        assert_eq!(m.iter().count(), 64);
        for i in 0..64u64 {
            let (k2, v) = m.get1(&i).ok_or(ENOENT)?;
            assert_eq!(*k2, (64 - i, 0));
            assert_eq!(u64::from(**v), i);
            let (k1, v) = m.get2(&(64 - i, 0)).ok_or(ENOENT)?;
            assert_eq!(*k1, i);
            assert_eq!(u64::from(**v), i);
        }
        assert!(m.get1(&64).is_none());
        assert!(m.get2(&(0, 0)).is_none());
        Ok(())
    }

    #[test]
    fn a_taken_key_gives_everything_back() -> Result {
        let mut m = map(4)?;
        // The first key is taken, the second is free, and the other way round: nothing changes.
        for (k1, k2) in [(2, (100, 0)), (100, (2, 0))] {
            let Err(back) = m.insert(res()?, k1, k2, KBox::new(7, GFP_KERNEL)?) else {
                return Err(EINVAL);
            };
            assert_eq!((back.k1, back.k2, *back.value), (k1, k2, 7));
            assert_eq!(m.iter().count(), 4);
            // The memory given back is usable.
            assert!(m
                .insert(back.reservation, 200, (200, 0), back.value)
                .is_ok());
            assert!(m.remove2(&(200, 0)).is_some());
        }
        assert!(m.get2(&(100, 0)).is_none());
        assert!(m.get1(&100).is_none());
        Ok(())
    }

    #[test]
    fn removal_unlinks_from_both_trees() -> Result {
        let mut m = map(32)?;
        // Every other entry, then the rest, so both trees rebalance on the way.
        for i in Iterator::chain((0..32u64).step_by(2), (1..32).step_by(2)) {
            let (k1, k2, v) = m.remove2(&(32 - i, 0)).ok_or(ENOENT)?;
            assert_eq!((k1, k2, u64::from(*v)), (i, (32 - i, 0), i));
            assert!(m.get1(&i).is_none());
            assert!(m.remove2(&(32 - i, 0)).is_none());
        }
        assert!(m.is_empty());
        Ok(())
    }

    #[test]
    fn iteration_follows_the_second_key_and_values_change() -> Result {
        let mut m = map(16)?;
        for i in 0..16u64 {
            **m.get2_mut(&(16 - i, 0)).ok_or(ENOENT)? += 100;
        }
        let mut last = None;
        let mut n = 0;
        for (k1, k2, v) in m.iter() {
            if let Some(l) = last {
                assert!(l < *k2);
            }
            last = Some(*k2);
            assert_eq!(u64::from(**v), k1 + 100);
            n += 1;
        }
        assert_eq!(n, 16);
        // Dropping the map frees every entry and value (kmemleak and KASAN watch this).
        drop(m);
        Ok(())
    }

    #[test]
    fn an_entry_is_one_allocation() {
        // Links of two trees (48 bytes), an 8-byte and a 16-byte key and an 8-byte value.
        assert_eq!(BiMap::<u64, (u64, u64), KBox<u32>>::ENTRY_SIZE, 80);
    }
}
