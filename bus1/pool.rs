// SPDX-License-Identifier: GPL-2.0

//! The receive pool: which parts of a peer's pool are in use, and the memory behind it.
//!
//! [`SliceAllocator`] only deals in offsets. Slices of up to [`SLAB_MAX`] bytes come from
//! per-size-class slabs, each one pool page split into equal slots: allocation takes the first
//! free slot of the most recently used slab with room, freeing clears a bit, both without a
//! search through the pool. Larger slices take whole pages from an address-ordered first-fit
//! range allocator, which also provides the slab pages. Working in whole pages there means a
//! freed large slice or an emptied slab gives back exactly its own pages, and no page holding a
//! live slice is ever discarded.
//!
//! [`Pool`] is the [`ShmemFile`] the slices live in; its allocator, [`Slices`], is kept under
//! the peer's lock.

#![deny(unsafe_code)]

use crate::ext::{
    errno::{
        EDQUOT,
        ESHUTDOWN,
        EXFULL, //
    },
    gfp::__GFP_NORETRY,
    memcg::{
        self,
        MemCgroup, //
    },
    shmem::{
        PinnedPage,
        ShmemFile, //
    },
};
use core::ops::Range;
use kernel::{
    alloc::Flags,
    mm::virt::VmaNew,
    new_spinlock,
    prelude::*,
    rbtree::{
        RBTree,
        RBTreeNodeReservation, //
    },
    sync::{
        aref::ARef,
        Arc,
        SpinLock, //
    },
    uaccess::UserPtr,
};

/// The flags for what a peer keeps on a sender's behalf: accounted (to the peer's memory cgroup,
/// made active with [`Pool::charge_for_sender`]), and failing rather than retrying or running the
/// OOM killer in that cgroup when it is full; the failure is expected, so no warning.
pub(crate) fn sender_gfp() -> Flags {
    GFP_KERNEL_ACCOUNT | __GFP_NORETRY | __GFP_NOWARN
}

/// Size of a pool page, the unit of the range allocator.
const PAGE: u64 = 4096;
/// Largest slice served by a slab.
pub(crate) const SLAB_MAX: u64 = 2048;
/// Slab slot sizes: 8, 16, ..., 2048 bytes.
const N_CLASSES: usize = 9;
/// Bitmap words per slab: a page of 8-byte slots needs 512 bits.
const WORDS: usize = (PAGE / 8 / 64) as usize;

/// Rounds `n` up to a multiple of 8 (0 becomes 8).
fn align8(n: u64) -> Option<u64> {
    Some(n.max(1).checked_add(7)? & !7)
}

/// Returns the size class for a slice of `size` bytes (`size <= SLAB_MAX`).
fn class_of(size: u64) -> usize {
    let slot = size.max(8).next_power_of_two();
    // CAST: `slot` is a power of two between 8 and `SLAB_MAX`, so the result is below 9.
    (slot.trailing_zeros() - 3) as usize
}

/// Slot size of class `class`.
fn class_size(class: usize) -> u64 {
    // CAST: Classes are below `N_CLASSES`, so the shift stays far inside a `u64`.
    8u64.checked_shl(class as u32).unwrap_or(SLAB_MAX)
}

/// Whether bit `idx` is set in `map`.
fn test_bit(map: &[u64; WORDS], idx: usize) -> bool {
    map.get(idx / 64)
        .is_some_and(|w| w & (1 << (idx % 64)) != 0)
}

/// Sets (`on`) or clears bit `idx` in `map`.
fn set_bit(map: &mut [u64; WORDS], idx: usize, on: bool) {
    if let Some(w) = map.get_mut(idx / 64) {
        if on {
            *w |= 1 << (idx % 64);
        } else {
            *w &= !(1 << (idx % 64));
        }
    }
}

/// One pool page split into equal slots.
///
/// # Invariants
///
/// `used` is the number of bits set in `allocated`; `published` is a subset of `allocated`; no
/// bit at or beyond `PAGE / class_size(class)` is set.
///
/// The fields are in the order of their use: a sender allocating a slot and the receiver freeing
/// it both write `used` and the first words of `allocated`, and find the slab by its tree key just
/// before them, so those share the first cache line of the tree node (links, key, then these);
/// `published` is the receiver's alone.
#[repr(C)]
struct Slab {
    /// Number of allocated slots.
    used: u32,
    /// Whether the slab is on its class's list of slabs with free slots.
    listed: bool,
    /// The size class.
    class: usize,
    /// Allocated slots.
    allocated: [u64; WORDS],
    /// Published slots.
    published: [u64; WORDS],
    /// The tree node its page needs in the free map once the slab goes away, so freeing
    /// never allocates.
    free_node: RBTreeNodeReservation<u64, u64>,
    /// Its page, kept in memory from the first slice to be filled in it until the slab goes away
    /// (the [`Pool`] pins it), so that filling a slice needs no page-cache lookup.
    page: Option<Arc<PinnedPage>>,
}

// `used` and the first word of `allocated` lie in the first cache line of the slab's tree node,
// after the node's links and key (see `Slab`).
const _: () = assert!(
    core::mem::offset_of!(Slab, used) < core::mem::offset_of!(Slab, allocated)
        && core::mem::size_of::<kernel::bindings::rb_node>()
            + core::mem::size_of::<u64>()
            + core::mem::offset_of!(Slab, allocated)
            + core::mem::size_of::<u64>()
            <= 64
);

/// Number of slots of a slab of class `class`.
fn class_slots(class: usize) -> u32 {
    // CAST: At most 512.
    (PAGE.checked_div(class_size(class)).unwrap_or(0)) as u32
}

/// A slice of more than [`SLAB_MAX`] bytes, which owns whole pages.
///
/// # Invariants
///
/// `free_node` is `Some` while the slice is in [`SliceAllocator::large`]; it is taken only as
/// the slice is removed, so that its tree node can be kept as well.
struct Large {
    /// Bytes reserved: the request rounded up to whole pages.
    pages_len: u64,
    /// Whether `RECV` published it.
    published: bool,
    /// The tree node its pages need in the free map once it is freed.
    free_node: Option<RBTreeNodeReservation<u64, u64>>,
}

/// The offsets of one pool: which are allocated, which are published.
///
/// # Invariants
///
/// - `free` holds disjoint, non-adjacent, page-aligned ranges (start -> length) inside
///   `[0, size)`; together with the pages of `slabs` and `large` they cover the pool exactly.
/// - Every slab on `partial[c]` has class `c`, a free slot and `listed` set, and every slab with
///   a free slot and `listed` set is on it exactly once.
/// - Of the slabs of class `c`, at most one has no allocated slot, and `freed.kept[c]` is its
///   page if there is one; otherwise `freed.kept[c]` is [`NO_SLAB`] or the page of a slab of
///   class `c`.
/// - `taken` counts every slice allocated and its bytes, `freed.given` every slice freed and
///   its bytes: the difference is what is allocated.
/// - `partial[c]` has room for every slab of class `c` (`n_slabs[c]`), so listing a slab again
///   when a slot is freed never allocates; every slab and large slice holds the tree node its
///   pages will need in `free`. Freeing a slice never allocates.
/// - `spare_large` and `spare_free` hold at most one tree node each, kept from freed slices for
///   the next large slice.
///
/// # Layout
///
/// A message's sender allocates its slice and its receiver frees it, usually on two CPUs. What
/// only allocating writes (`taken`) and what only freeing writes (`given`, `kept`) lie in
/// cache lines of their own, behind the fields both read and rarely write, so that a message
/// moves no line of the allocator itself between the two (the object is a `kmalloc-512` one,
/// aligned to its size; build-time assertions below keep the offsets).
#[repr(C)]
pub(crate) struct SliceAllocator {
    /// Pool size.
    size: u64,
    /// Free page ranges by start.
    free: RBTree<u64, u64>,
    /// Slabs by page offset.
    slabs: RBTree<u64, Slab>,
    /// Large slices by offset.
    large: RBTree<u64, Large>,
    /// Bytes of the pages taken out of `free` (by slabs and large slices).
    page_bytes: u64,
    /// The tree node of the last large slice freed, for the next one: a peer that receives large
    /// messages one at a time allocates and frees no tree node per message.
    spare_large: Option<RBTreeNodeReservation<u64, Large>>,
    /// A free-map tree node that a freed range did not need (it joined a free neighbour), for
    /// the next large slice.
    spare_free: Option<RBTreeNodeReservation<u64, u64>>,
    /// Per class, page offsets of slabs with free slots; the last one is used first.
    partial: [KVec<u64>; N_CLASSES],
    /// Per class, slabs.
    n_slabs: [usize; N_CLASSES],
    /// Slices allocated, and their bytes (slot or page-rounded sizes).
    taken: SliceCount,
    /// What freeing writes.
    freed: Freed,
}

/// What only freeing a slice writes in a [`SliceAllocator`], in cache lines of its own.
#[repr(C, align(64))]
struct Freed {
    /// Slices freed, and their bytes.
    given: SliceCount,
    /// Per class, the page of the slab with no allocated slot that is kept for reuse, or
    /// [`NO_SLAB`].
    kept: [u64; N_CLASSES],
}

/// A running count of slices and of their bytes, modulo 2^64: only the difference of two counts
/// is used, which the wrapping arithmetic keeps exact.
#[derive(Clone, Copy, Default)]
struct SliceCount {
    /// Slices.
    n: usize,
    /// Their bytes.
    bytes: u64,
}

impl SliceCount {
    /// Counts one slice of `bytes` bytes.
    fn add(&mut self, bytes: u64) {
        self.n = self.n.wrapping_add(1);
        self.bytes = self.bytes.wrapping_add(bytes);
    }
}

/// [`Freed::kept`] of a class with no slab kept: no page starts there.
const NO_SLAB: u64 = u64::MAX;

// `taken` lies in a cache line of its own as far as freeing goes: not the one of the slab
// tree's root, which freeing reads, nor `freed`'s; and the allocator stays one `kmalloc-512`
// object.
const _: () = {
    use core::mem::{offset_of, size_of};
    let taken = offset_of!(SliceAllocator, taken) / 64;
    assert!(taken != offset_of!(SliceAllocator, slabs) / 64);
    assert!(taken != offset_of!(SliceAllocator, freed) / 64);
    assert!((offset_of!(SliceAllocator, taken) + size_of::<SliceCount>() - 1) / 64 == taken);
    assert!(size_of::<SliceAllocator>() <= 512);
};

impl SliceAllocator {
    /// Creates the allocator of a pool of `size` bytes (rounded down to whole pages).
    pub(crate) fn new(size: u64) -> Result<Self> {
        let size = size & !(PAGE - 1);
        if size == 0 {
            return Err(EINVAL);
        }
        let mut free = RBTree::new();
        free.try_create_and_insert(0, size, GFP_KERNEL)?;
        Ok(SliceAllocator {
            size,
            free,
            slabs: RBTree::new(),
            large: RBTree::new(),
            page_bytes: 0,
            spare_large: None,
            spare_free: None,
            partial: [const { KVec::new() }; N_CLASSES],
            n_slabs: [0; N_CLASSES],
            taken: SliceCount::default(),
            freed: Freed {
                given: SliceCount::default(),
                kept: [NO_SLAB; N_CLASSES],
            },
        })
    }

    /// Number of allocated slices.
    pub(crate) fn n_slices(&self) -> usize {
        self.taken.n.wrapping_sub(self.freed.given.n)
    }

    /// Bytes of allocated slices.
    pub(crate) fn allocated_bytes(&self) -> u64 {
        self.taken.bytes.wrapping_sub(self.freed.given.bytes)
    }

    /// Bytes of the pages slabs and large slices occupy: every other resident page of the pool
    /// is free.
    pub(crate) fn page_bytes(&self) -> u64 {
        self.page_bytes
    }

    /// Takes `len` bytes (a multiple of [`PAGE`]) at the lowest free address.
    fn alloc_pages(&mut self, len: u64) -> Result<u64> {
        let mut cursor = self.free.cursor_front_mut();
        while let Some(c) = cursor {
            let (&start, &flen) = c.current();
            if flen < len {
                cursor = c.move_next();
                continue;
            }
            let (_, node) = c.remove_current();
            self.page_bytes += len;
            if flen > len {
                // Reuse the tree node for the rest of the range.
                let rest = node.into_reservation().into_node(start + len, flen - len);
                self.free.insert(rest);
            } else if self.spare_free.is_none() {
                self.spare_free = Some(node.into_reservation());
            }
            return Ok(start);
        }
        Err(EXFULL())
    }

    /// Gives back the pages `[start, start + len)`, merging them with free neighbours; `node`
    /// is the tree node for the range if it has no free neighbour. A tree node that the merge
    /// leaves over is kept as the spare (if there is none yet).
    fn free_pages(&mut self, start: u64, len: u64, node: RBTreeNodeReservation<u64, u64>) {
        self.page_bytes -= len;
        let mut len = len;
        // The free range right after, if adjacent: it joins this one, and its node is left over.
        let mut left_over = None;
        if let Some(next) = self.free.find_mut(&(start + len)) {
            len += *next.get();
            left_over = Some(next.remove_node().into_reservation());
        }
        // The free range right before, if adjacent: the last range starting below `start`.
        let prev = match self.free.cursor_lower_bound(&start) {
            Some(c) => c.peek_prev().map(|(&s, &l)| (s, l)),
            None => self.free.cursor_back().map(|c| {
                let (&s, &l) = c.current();
                (s, l)
            }),
        };
        let merged = match prev {
            Some((ps, pl)) if ps + pl == start => match self.free.get_mut(&ps) {
                Some(v) => {
                    *v = pl + len;
                    true
                }
                None => false,
            },
            _ => false,
        };
        // Only a range with no free neighbour before it needs a tree node; it was reserved when
        // the pages were taken.
        let unused = if merged {
            Some(node)
        } else {
            self.free.insert(node.into_node(start, len));
            None
        };
        if self.spare_free.is_none() {
            self.spare_free = unused.or(left_over);
        }
    }

    /// Returns the offset of a new, unpublished slice of at least `size` bytes.
    ///
    /// Fails with `EMSGSIZE` if the slice can never fit the pool and with `EXFULL` if there is
    /// no room for it now.
    pub(crate) fn alloc(&mut self, size: u64) -> Result<u64> {
        Ok(self.alloc_in(size)?.0)
    }

    /// [`Self::alloc`], also returning the pinned-page field of the slab the slice lies in
    /// (`None` for a large slice), for [`Pool::alloc`] to fill in and use.
    // Inlined: on every message's path, where a call would cost about as much as the body.
    #[inline(always)]
    fn alloc_in(&mut self, size: u64) -> Result<(u64, Option<&mut Option<Arc<PinnedPage>>>)> {
        let size = align8(size).ok_or(EMSGSIZE)?;
        if size > self.size {
            return Err(EMSGSIZE);
        }
        if size > SLAB_MAX {
            let pages_len = size.checked_add(PAGE - 1).ok_or(EMSGSIZE)? & !(PAGE - 1);
            let free_node = match self.spare_free.take() {
                Some(r) => r,
                None => RBTreeNodeReservation::new(sender_gfp())?,
            };
            let res = match self.spare_large.take() {
                Some(r) => r,
                None => match RBTreeNodeReservation::new(sender_gfp()) {
                    Ok(r) => r,
                    Err(e) => {
                        self.spare_free = Some(free_node);
                        return Err(e);
                    }
                },
            };
            let off = match self.alloc_pages(pages_len) {
                Ok(off) => off,
                Err(e) => {
                    // No room now: the nodes wait for the next large slice.
                    self.spare_free = Some(free_node);
                    self.spare_large = Some(res);
                    return Err(e);
                }
            };
            self.large.insert(res.into_node(
                off,
                Large {
                    pages_len,
                    published: false,
                    free_node: Some(free_node),
                },
            ));
            self.taken.add(pages_len);
            return Ok((off, None));
        }
        let class = class_of(size);
        let page = match self.partial[class].last() {
            Some(&p) => p,
            None => self.new_slab(class)?,
        };
        let Some(slab) = self.slabs.get_mut(&page) else {
            return Err(EXFULL());
        };
        let mut slot = None;
        // The slab's class is `class` (it is on `partial[class]`), so the count follows from the
        // local value, once.
        let slots = class_slots(class);
        for (w, word) in slab.allocated.iter_mut().enumerate() {
            if *word != u64::MAX {
                let bit = word.trailing_ones();
                // CAST: `w < WORDS` and `bit < 64`.
                let idx = w as u32 * 64 + bit;
                if idx < slots {
                    *word |= 1 << bit;
                    slot = Some(idx);
                }
                break;
            }
        }
        let Some(idx) = slot else {
            return Err(EXFULL());
        };
        slab.used += 1;
        if slab.used == slots {
            slab.listed = false;
            self.partial[class].pop();
        }
        self.taken.add(class_size(class));
        Ok((
            page + u64::from(idx) * class_size(class),
            Some(&mut slab.page),
        ))
    }

    /// Carves a new slab of class `class` out of a free page and lists it.
    fn new_slab(&mut self, class: usize) -> Result<u64> {
        // Room on the list for every slab of the class, this one included.
        let want = (self.n_slabs[class] + 1).saturating_sub(self.partial[class].len());
        self.partial[class].reserve(want, sender_gfp())?;
        let free_node = RBTreeNodeReservation::new(sender_gfp())?;
        let res = RBTreeNodeReservation::new(sender_gfp())?;
        let page = self.alloc_pages(PAGE)?;
        let slab = Slab {
            class,
            allocated: [0; WORDS],
            published: [0; WORDS],
            used: 0,
            listed: true,
            free_node,
            page: None,
        };
        self.slabs.insert(res.into_node(page, slab));
        self.n_slabs[class] += 1;
        // Cannot fail: room was reserved above.
        let _ = self.partial[class].push_within_capacity(page);
        Ok(page)
    }

    /// Frees the slice starting exactly at `offset` if `accept` takes its publication state;
    /// `ENXIO` if no slice starts there or `accept` refuses it. Returns the pages to give back.
    ///
    /// A slot of a slab is found, checked and freed in one walk of the slab tree (a second
    /// one only when its slab goes away); a large slice takes two.
    // Inlined: on every message's path, where a call would cost about as much as the body.
    #[inline(always)]
    fn release_if(
        &mut self,
        offset: u64,
        accept: impl FnOnce(bool) -> bool,
    ) -> Result<Option<Range<u64>>> {
        let page = offset & !(PAGE - 1);
        let Some(slab) = self.slabs.get_mut(&page) else {
            let mut entry = self.large.find_mut(&offset).ok_or(ENXIO)?;
            let l = entry.get_mut();
            if !accept(l.published) {
                return Err(ENXIO);
            }
            let pages_len = l.pages_len;
            let free_node = l.free_node.take();
            // The slice's own tree node is kept for the next large slice.
            let node = entry.remove_node().into_reservation();
            if self.spare_large.is_none() {
                self.spare_large = Some(node);
            }
            // INVARIANTS: Taken only here, as the slice leaves the tree.
            if let Some(free_node) = free_node {
                self.free_pages(offset, pages_len, free_node);
            }
            self.freed.given.add(pages_len);
            return Ok(Some(offset..offset + pages_len));
        };
        let class = slab.class;
        let cs = class_size(class);
        let rel = offset - page;
        if rel.checked_rem(cs) != Some(0) {
            return Err(ENXIO);
        }
        // CAST: `rel < PAGE`, so the slot index is below 512.
        let idx = rel.checked_div(cs).unwrap_or(0) as usize;
        if !test_bit(&slab.allocated, idx) || !accept(test_bit(&slab.published, idx)) {
            return Err(ENXIO);
        }
        set_bit(&mut slab.allocated, idx, false);
        set_bit(&mut slab.published, idx, false);
        slab.used -= 1;
        self.freed.given.add(cs);
        if !slab.listed {
            // Cannot fail: the list has room for every slab of its class.
            slab.listed = self.partial[class].push_within_capacity(page).is_ok();
        }
        if slab.used > 0 {
            return Ok(None);
        }
        // Keep one empty slab per class, so a peer that receives and releases one small
        // message at a time does not allocate and discard a page every time. Allocating from
        // the kept slab does not tell: it would write a line that freeing writes too, for every
        // message. So a slab that becomes empty is kept unless the kept one is still empty.
        let listed = slab.listed;
        let kept = self.freed.kept[class];
        if listed && (kept == page || self.slabs.get(&kept).is_none_or(|k| k.used != 0)) {
            if kept != page {
                self.freed.kept[class] = page;
            }
            return Ok(None);
        }
        if kept == page {
            self.freed.kept[class] = NO_SLAB;
        }
        let Some(slab) = self.slabs.remove(&page) else {
            return Ok(None);
        };
        self.n_slabs[class] -= 1;
        self.partial[class].retain(|p| *p != page);
        self.free_pages(page, PAGE, slab.free_node);
        Ok(Some(page..page + PAGE))
    }

    /// Frees the slice at `offset`, whatever its publication state. Returns the pages to give
    /// back.
    fn release(&mut self, offset: u64) -> Result<Option<Range<u64>>> {
        self.release_if(offset, |_| true)
    }

    /// Frees an unpublished slice (the kernel's path: a message dropped before `RECV`). Returns
    /// the page range, if any, that no slice uses any more and should be given back.
    pub(crate) fn free(&mut self, offset: u64) -> Option<Range<u64>> {
        self.release_if(offset, |published| !published)
            .ok()
            .flatten()
    }

    /// Marks the slice at `offset` published (`RECV`): from now on only `SLICE_RELEASE` or a
    /// flush frees it.
    // Inlined: on every message's path, where a call would cost about as much as the body.
    #[inline(always)]
    pub(crate) fn publish(&mut self, offset: u64) {
        let page = offset & !(PAGE - 1);
        if let Some(slab) = self.slabs.get_mut(&page) {
            let cs = class_size(slab.class);
            let rel = offset - page;
            if rel.checked_rem(cs) == Some(0) {
                // CAST: `rel < PAGE`, so the slot index is below 512.
                let idx = rel.checked_div(cs).unwrap_or(0) as usize;
                // INVARIANTS: Only an allocated slot is published.
                if test_bit(&slab.allocated, idx) {
                    set_bit(&mut slab.published, idx, true);
                }
            }
        } else if let Some(l) = self.large.get_mut(&offset) {
            l.published = true;
        }
    }

    /// `SLICE_RELEASE`: frees the published slice starting exactly at `offset`; `ENXIO`
    /// otherwise.
    // Inlined: on every message's path, where a call would cost about as much as the body.
    #[inline(always)]
    pub(crate) fn release_published(&mut self, offset: u64) -> Result<Option<Range<u64>>> {
        self.release_if(offset, |published| published)
    }

    /// Frees every published slice (`RESET` and teardown), handing each page range to give back
    /// to `discard`. Returns how many slices were freed.
    pub(crate) fn flush_published(&mut self, mut discard: impl FnMut(Range<u64>)) -> usize {
        let mut n = 0;
        // Collect in rounds of a fixed size, so no allocation is needed.
        loop {
            let mut batch = [0u64; 64];
            let mut k = 0;
            'outer: for (&page, s) in self.slabs.iter() {
                for (w, &word) in s.published.iter().enumerate() {
                    let mut bits = word;
                    while bits != 0 {
                        let b = bits.trailing_zeros();
                        bits &= bits - 1;
                        if k == batch.len() {
                            break 'outer;
                        }
                        // CAST: `w < WORDS`.
                        batch[k] = page + (w as u64 * 64 + u64::from(b)) * class_size(s.class);
                        k += 1;
                    }
                }
            }
            if k < batch.len() {
                for (&off, l) in self.large.iter() {
                    if k == batch.len() {
                        break;
                    }
                    if l.published {
                        batch[k] = off;
                        k += 1;
                    }
                }
            }
            if k == 0 {
                return n;
            }
            let before = n;
            for &off in &batch[..k] {
                // An error cannot happen (published slices exist); the
                // progress check below keeps it from looping forever.
                if let Ok(r) = self.release(off) {
                    if let Some(r) = r {
                        discard(r);
                    }
                    n += 1;
                }
            }
            if n == before {
                return n;
            }
        }
    }
}

/// The slice allocator of a peer's pool, kept in the peer's lock-protected state
/// (`Peer::inner`) rather than under a lock of its own: a message's charge and its slice are
/// taken, its dequeue and its publication made, and a slice's release and its discharge given,
/// each in one critical section of the lock they need anyway.
///
/// `None` once the pool is closed. Boxed, so that a closed pool does not keep the allocator's
/// room inside its peer.
pub(crate) struct Slices(Option<KBox<SliceAllocator>>);

impl Slices {
    /// The allocator of a pool of `size` bytes (see [`PoolSize`]).
    pub(crate) fn new(size: PoolSize) -> Result<Self> {
        Ok(Slices(Some(KBox::new(
            SliceAllocator::new(size.bytes)?,
            GFP_KERNEL_ACCOUNT,
        )?)))
    }

    /// Marks the slice at `offset` published (`RECV`): from now on only `SLICE_RELEASE` or a
    /// flush frees it.
    pub(crate) fn publish(&mut self, offset: u64) {
        if let Some(a) = self.0.as_deref_mut() {
            a.publish(offset);
        }
    }

    /// Returns the number of slices and their bytes, for fdinfo.
    pub(crate) fn usage(&self) -> (usize, u64) {
        match self.0.as_deref() {
            Some(a) => (a.n_slices(), a.allocated_bytes()),
            None => (0, 0),
        }
    }
}

/// The size of a peer's pool and of its cache of free resident pages, from the module
/// parameters when the peer is opened.
#[derive(Clone, Copy)]
pub(crate) struct PoolSize {
    /// The pool's size in bytes.
    bytes: u64,
    /// How many bytes of free pages may stay resident (the `pool_cache_kib` parameter).
    cache: u64,
}

impl PoolSize {
    /// A pool of `bytes` (rounded down to whole pages) that keeps no free page resident.
    pub(crate) fn with_bytes(bytes: u64) -> Self {
        PoolSize { bytes, cache: 0 }
    }

    /// Reads the `pool_size_mib` and `pool_cache_kib` module parameters.
    pub(crate) fn current() -> Self {
        let mib = u64::from(*crate::module_parameters::pool_size_mib.value());
        // Out-of-range parameters fall back to the default rather than failing every open.
        let mib = if (1..=4095).contains(&mib) { mib } else { 512 };
        PoolSize {
            bytes: mib << 20,
            cache: u64::from(*crate::module_parameters::pool_cache_kib.value()) << 10,
        }
    }
}

/// A peer's receive pool: the shmem file its slices live in, the memory cgroup that pays for
/// what the peer keeps, and, through the [`Slices`] its peer keeps under its lock, which parts
/// of the file are in use.
///
/// The operations that pick, publish or free a slice take the peer's [`Slices`], so they run
/// under the peer's lock (as does giving freed pages back, so a page cannot be handed out
/// again while it is being discarded); payloads are copied into the file without it, so
/// concurrent senders into one receiver copy in parallel. Every `slices` argument is the
/// allocator of this pool's peer.
///
/// [`Pool::close`], at disconnect, gives everything back: every page of the file, the file
/// itself and the allocator. A disconnected peer can outlive its file by far, pinned by handles
/// other peers hold to its nodes, and then costs only its own small object (which keeps its
/// reference to the memory cgroup until it is freed at close).
///
/// Lock order: `Pool::file` is innermost and only held to take a reference to the file or to
/// take it away.
#[pin_data]
pub(crate) struct Pool {
    /// The memory; `None` once the pool is closed.
    #[pin]
    file: SpinLock<Option<Arc<ShmemFile>>>,
    /// The pool's size and its cache of free resident pages.
    size: PoolSize,
    /// The memory cgroup of the peer's opener, which pays for the pool's pages and for what
    /// senders make the kernel keep for the peer; `None` without memory cgroups. Held as long as
    /// the peer object, so charging it never needs to take anything.
    memcg: Option<ARef<MemCgroup>>,
}

impl Pool {
    /// Creates a pool of `pool_size` bytes.
    pub(crate) fn new(pool_size: PoolSize) -> impl PinInit<Self, Error> {
        let memcg = MemCgroup::current();
        try_pin_init!(Pool {
            // shmem reports a failed inode allocation as `ENOSPC`; for a peer it is memory.
            file <- new_spinlock!(
                Some(Arc::new(
                    ShmemFile::new(c"bus1-peer", pool_size.bytes, memcg.clone())
                        .map_err(|e| if e == ENOSPC { ENOMEM } else { e })?,
                    GFP_KERNEL_ACCOUNT,
                )?),
                "Pool::file"
            ),
            size: pool_size,
            memcg,
        })
    }

    /// Returns the pool's size: no slice can be larger.
    pub(crate) fn size(&self) -> u64 {
        self.size.bytes
    }

    /// Returns a reference to the file; `ESHUTDOWN` once the pool is closed.
    fn file(&self) -> Result<Arc<ShmemFile>> {
        self.file.lock().clone().ok_or_else(ESHUTDOWN)
    }

    /// Allocates an unpublished slice of `size` bytes; `EMSGSIZE` or `EXFULL` if it does not fit,
    /// `ESHUTDOWN` once the pool is closed. Returns its offset and, if the caller is going to
    /// `fill` it and it is a slice of a slab, the slab's page, to write the slice through.
    ///
    /// A slab's page is pinned by the first slice to be filled in it and stays pinned until the
    /// slab goes away; pinning allocates the page if it is a hole (slices that are never written,
    /// empty messages, leave it one). If that fails the slice is still allocated, and filling it
    /// looks the page up (and fails) as for a large slice.
    pub(crate) fn alloc(
        &self,
        slices: &mut Slices,
        size: u64,
        fill: bool,
    ) -> Result<(u64, Option<Arc<PinnedPage>>)> {
        let a = slices.0.as_deref_mut().ok_or_else(ESHUTDOWN)?;
        let (off, pin) = a.alloc_in(size)?;
        let Some(pin) = pin.filter(|_| fill) else {
            return Ok((off, None));
        };
        if pin.is_none() {
            *pin = self
                .file()
                .and_then(|f| f.pin_page(off & !(PAGE - 1)))
                .and_then(|p| Ok(Arc::new(p, sender_gfp())?))
                .ok();
        }
        Ok((off, pin.clone()))
    }

    /// Gives back the pages of `r`, which no slice uses any more, unless the pool's free
    /// resident pages (`r` included) fit in its cache.
    ///
    /// Allocating, zeroing and charging a page costs more than copying it, so a peer that
    /// keeps receiving and releasing messages keeps reusing the same resident pages instead of
    /// getting fresh ones for every message. They stay charged to the receiver's memory cgroup;
    /// the cache bounds that.
    fn give_back(&self, a: &SliceAllocator, r: Range<u64>) {
        let Ok(file) = self.file() else {
            return;
        };
        let resident = file.resident_pages().saturating_mul(PAGE);
        if resident.saturating_sub(a.page_bytes()) <= self.size.cache {
            return;
        }
        // Best effort: pages that cannot be discarded now are reused later.
        let _ = file.discard(r.start, r.end - r.start);
    }

    /// Frees the unpublished slice at `offset`, giving back pages no slice uses any more.
    pub(crate) fn free(&self, slices: &mut Slices, offset: u64) {
        let Some(a) = slices.0.as_deref_mut() else {
            return;
        };
        if let Some(r) = a.free(offset) {
            self.give_back(a, r);
        }
    }

    /// Copies `len` bytes from user memory at `src` into the pool at `offset`, on behalf of a
    /// sender.
    ///
    /// The pages are charged to the pool owner's memory cgroup without retrying and without the
    /// OOM killer; a full cgroup fails the write with `EDQUOT`, like any other limit of the
    /// receiver a sender runs into (other allocation failures stay `ENOMEM`).
    pub(crate) fn write_from_user(&self, offset: u64, src: UserPtr, len: usize) -> Result {
        self.file()?
            .write_from_user(offset, src, len)
            .map_err(|e| self.sender_error(e))
    }

    /// Writes `data` into the pool at `offset` on behalf of a sender, failing as
    /// [`Self::write_from_user`] does.
    pub(crate) fn write_for_sender(&self, offset: u64, data: &[u8]) -> Result {
        self.file()?
            .write(offset, data)
            .map_err(|e| self.sender_error(e))
    }

    /// Runs `f`, which allocates what this pool's peer keeps on a sender's behalf, with the
    /// peer's memory cgroup active: `f`'s accounted allocations are charged to the peer, not to
    /// the sender. `f` allocates with [`sender_gfp`], so a full cgroup fails an allocation
    /// instead of running the OOM killer there; that failure is `EDQUOT`, as for the pool's
    /// pages.
    pub(crate) fn charge_for_sender<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        memcg::charge_to(self.memcg.as_deref(), f).map_err(|e| self.sender_error(e))
    }

    /// What a sender's failed allocation for this pool's peer reports: `EDQUOT` for a full memory
    /// cgroup of the peer, like any other limit of the receiver a sender runs into, else the error
    /// itself.
    fn sender_error(&self, e: Error) -> Error {
        if e == ENOMEM && self.memcg.as_ref().is_some_and(|m| m.is_full()) {
            EDQUOT()
        } else {
            e
        }
    }

    /// Writes `data` into the pool at `offset`.
    pub(crate) fn write(&self, offset: u64, data: &[u8]) -> Result {
        self.file()?.write(offset, data)
    }

    /// `SLICE_RELEASE`: frees the published slice at exactly `offset` (`ENXIO` otherwise).
    pub(crate) fn release(&self, slices: &mut Slices, offset: u64) -> Result {
        let a = slices.0.as_deref_mut().ok_or(ENXIO)?;
        if let Some(r) = a.release_published(offset)? {
            self.give_back(a, r);
        }
        Ok(())
    }

    /// Frees every published slice (reset and teardown); returns how many were freed.
    pub(crate) fn flush(&self, slices: &mut Slices) -> u64 {
        let Some(a) = slices.0.as_deref_mut() else {
            return 0;
        };
        let file = self.file().ok();
        let n = a.flush_published(|r| {
            if let Some(file) = &file {
                let _ = file.discard(r.start, r.end - r.start);
            }
        });
        // CAST: A count of slices always fits.
        n as u64
    }

    /// Closes the pool at disconnect: frees every slice, gives every page of the file back
    /// (the resident cache included), and drops the file and the allocator. Returns how many
    /// published slices were freed. Allocates nothing; later calls find nothing to do, and
    /// every other operation on a closed pool fails or does nothing.
    pub(crate) fn close(&self, slices: &mut Slices) -> u64 {
        let freed = self.flush(slices);
        let alloc = slices.0.take();
        let file = self.file.lock().take();
        // The slabs' pinned pages go first, so the discard frees them.
        drop(alloc);
        if let Some(file) = &file {
            // The whole file, so nothing stays resident: the pages of slices still unpublished
            // (none, at disconnect) and the cache alike.
            let _ = file.discard(0, file.size());
        }
        drop(file);
        freed
    }

    /// Maps the pool read-only into `vma`.
    pub(crate) fn mmap(&self, vma: &VmaNew) -> Result {
        self.file()?.mmap(vma)
    }

    /// Returns the number of resident pages, for fdinfo.
    pub(crate) fn resident_pages(&self) -> u64 {
        self.file().map_or(0, |f| f.resident_pages())
    }
}

#[kunit_tests(bus1_pool)]
mod tests {
    use super::*;

    /// A small deterministic PRNG (xorshift64*), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    /// Returns the first of `slices` (offset, size), in offset order, that is not 8-aligned,
    /// not inside `size` or overlaps the one before; `None` if they are all fine. The tests
    /// assert on the result, so a bad slice fails the KUnit case (helpers defined before the
    /// first test would see the core `assert!`, a kernel BUG).
    fn bad_slice(slices: &mut KVec<(u64, u64)>, size: u64) -> Option<(u64, u64)> {
        // By offset (then size, which no two slices at one offset can differ in).
        crate::heapsort::sort(slices);
        let mut end = 0;
        for &(off, len) in slices.iter() {
            if off % 8 != 0 || off < end || off.checked_add(len).is_none_or(|e| e > size) {
                return Some((off, len));
            }
            end = off + len;
        }
        None
    }

    #[test]
    fn small_and_large_slices_are_disjoint() -> Result {
        let size = 1 << 20;
        let mut a = SliceAllocator::new(size)?;
        let mut v = KVec::new();
        let sizes = [
            0u64, 1, 7, 8, 9, 100, 512, 513, 2048, 2049, 5000, 3, 64, 12000,
        ];
        for round in 0..20u64 {
            for &s in sizes.iter() {
                let off = a.alloc(s + round)?;
                v.push((off, (s + round).max(1)), GFP_KERNEL)?;
            }
        }
        assert_eq!(a.n_slices(), v.len());
        assert_eq!(bad_slice(&mut v, size), None);
        // Every free gives back exactly its own slice.
        for (i, &(off, _)) in v.iter().enumerate() {
            a.free(off);
            assert_eq!(a.n_slices(), v.len() - i - 1);
        }
        assert_eq!(a.n_slices(), 0);
        assert_eq!(a.allocated_bytes(), 0);
        Ok(())
    }

    #[test]
    fn one_empty_slab_per_class_is_kept() -> Result {
        let mut a = SliceAllocator::new(16 * PAGE)?;
        // One slot taken and given back again and again: its slab stays, empty.
        for _ in 0..3 {
            let off = a.alloc(8)?;
            assert_eq!(a.free(off), None);
            assert_eq!(a.page_bytes(), PAGE);
        }
        // Fill that slab and take one slot of a second one.
        let mut first = KVec::new();
        for _ in 0..class_slots(0) {
            first.push(a.alloc(8)?, GFP_KERNEL)?;
        }
        let second = a.alloc(8)?;
        assert_eq!(a.page_bytes(), 2 * PAGE);
        assert_ne!(second & !(PAGE - 1), first[0] & !(PAGE - 1));
        // The second empties first and is kept (the kept first slab is in use); when the first
        // empties too, it goes, as the second is still empty.
        assert_eq!(a.free(second), None);
        let (last, rest) = first.split_last().ok_or(EINVAL)?;
        for &off in rest {
            assert_eq!(a.free(off), None);
        }
        let page = first[0] & !(PAGE - 1);
        assert_eq!(a.free(*last), Some(page..page + PAGE));
        assert_eq!(a.page_bytes(), PAGE);
        // The kept one serves the next slot; emptied again, it stays.
        let off = a.alloc(8)?;
        assert_eq!(off & !(PAGE - 1), second & !(PAGE - 1));
        assert_eq!(a.free(off), None);
        // Another class keeps its own.
        let big = a.alloc(16)?;
        assert_eq!(a.free(big), None);
        assert_eq!(a.page_bytes(), 2 * PAGE);
        assert_eq!((a.n_slices(), a.allocated_bytes()), (0, 0));
        Ok(())
    }

    #[test]
    fn exhaustion_and_reuse() -> Result {
        let size = 1 << 20;
        let mut a = SliceAllocator::new(size)?;
        assert_eq!(a.alloc(size + 1), Err(EMSGSIZE));
        let whole = a.alloc(size)?;
        assert_eq!(whole, 0);
        assert_eq!(a.alloc(8), Err(EXFULL()));
        assert_eq!(a.free(whole), Some(0..size));
        // Fill with 64 KiB slices, free every other one: a 128 KiB slice does not fit until the
        // rest is freed, and coalescing makes the whole pool one range again.
        let mut offs = KVec::new();
        while let Ok(off) = a.alloc(64 << 10) {
            offs.push(off, GFP_KERNEL)?;
        }
        assert_eq!(offs.len(), 16);
        for (i, &off) in offs.iter().enumerate() {
            if i % 2 == 0 {
                assert!(a.free(off).is_some());
            }
        }
        assert_eq!(a.alloc(128 << 10), Err(EXFULL()));
        for (i, &off) in offs.iter().enumerate() {
            if i % 2 == 1 {
                assert!(a.free(off).is_some());
            }
        }
        assert_eq!(a.allocated_bytes(), 0);
        assert_eq!(a.alloc(size)?, 0);
        Ok(())
    }

    #[test]
    fn a_freed_large_slice_leaves_its_nodes_for_the_next() -> Result {
        let size = 1 << 20;
        let len = 64 << 10;
        let mut a = SliceAllocator::new(size)?;
        let s = a.alloc(len)?;
        assert!(a.spare_large.is_none() && a.spare_free.is_none());
        // Its pages join the free rest of the pool, so its free-map node is not needed either.
        a.publish(s);
        assert_eq!(a.release_published(s)?, Some(s..s + len));
        assert!(a.spare_large.is_some() && a.spare_free.is_some());
        // The next large slice takes both instead of allocating.
        let t = a.alloc(len)?;
        assert_eq!(t, s);
        assert!(a.spare_large.is_none() && a.spare_free.is_none());
        assert_eq!(a.free(t), Some(t..t + len));
        // A large slice that finds no room keeps its nodes for the next one.
        let whole = a.alloc(size)?;
        // It took both spares, and the free map's last node is left over.
        assert!(a.spare_large.is_none() && a.spare_free.is_some());
        assert_eq!(a.alloc(len), Err(EXFULL()));
        assert!(a.spare_large.is_some() && a.spare_free.is_some());
        // With no free neighbour, the whole pool's range takes its own node again.
        assert_eq!(a.free(whole), Some(0..size));
        assert_eq!(a.allocated_bytes(), 0);
        assert_eq!(a.alloc(size)?, 0);
        Ok(())
    }

    #[test]
    fn small_slices_fill_the_pool() -> Result {
        let size = 64 << 10;
        let mut a = SliceAllocator::new(size)?;
        let mut n = 0u64;
        while a.alloc(2048).is_ok() {
            n += 1;
        }
        assert_eq!(n, size / 2048);
        assert_eq!(a.alloc(8), Err(EXFULL()));
        Ok(())
    }

    #[test]
    fn publish_and_release() -> Result {
        let mut a = SliceAllocator::new(1 << 20)?;
        let s = a.alloc(24)?;
        let l = a.alloc(10000)?;
        // Unpublished, unknown and mid-slice offsets are not releasable.
        assert_eq!(a.release_published(s), Err(ENXIO));
        assert_eq!(a.release_published(l), Err(ENXIO));
        assert_eq!(a.release_published(s + 8), Err(ENXIO));
        assert_eq!(a.release_published(l + 8), Err(ENXIO));
        assert_eq!(a.release_published(900 << 10), Err(ENXIO));
        a.publish(s);
        a.publish(l);
        // A published slice is not freed by the kernel path.
        assert!(a.free(s).is_none());
        assert_eq!(a.n_slices(), 2);
        assert!(a.release_published(s).is_ok());
        assert_eq!(a.release_published(s), Err(ENXIO));
        assert!(a.release_published(l)?.is_some());
        assert_eq!(a.release_published(l), Err(ENXIO));
        assert_eq!(a.n_slices(), 0);
        Ok(())
    }

    #[test]
    fn flush_frees_published_only() -> Result {
        let mut a = SliceAllocator::new(4 << 20)?;
        let mut kept = KVec::new();
        for i in 0..300u64 {
            let off = a.alloc(8 + (i % 5) * 700)?;
            if i % 3 == 0 {
                kept.push(off, GFP_KERNEL)?;
            } else {
                a.publish(off);
            }
        }
        let mut discarded = 0u64;
        let n = a.flush_published(|r| discarded += r.end - r.start);
        assert_eq!(n, 200);
        assert_eq!(a.n_slices(), 100);
        assert!(discarded > 0);
        for &off in kept.iter() {
            assert_eq!(a.release_published(off), Err(ENXIO));
            a.free(off);
        }
        assert_eq!(a.n_slices(), 0);
        assert_eq!(a.flush_published(|_| ()), 0);
        Ok(())
    }

    #[test]
    fn discard_never_hits_live_slices() -> Result {
        let size = 2 << 20;
        let mut a = SliceAllocator::new(size)?;
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut live: KVec<(u64, u64)> = KVec::new();
        for _ in 0..4000 {
            if live.len() < 200 && rng.next() % 3 != 0 {
                let len = match rng.next() % 4 {
                    0 => rng.next() % 64,
                    1 => rng.next() % 2048,
                    2 => rng.next() % 9000,
                    _ => 8,
                };
                if let Ok(off) = a.alloc(len) {
                    live.push((off, len.max(1)), GFP_KERNEL)?;
                }
            } else if !live.is_empty() {
                // CAST: `live.len()` is at most 200.
                let i = (rng.next() % live.len() as u64) as usize;
                let (off, _) = live.remove(i)?;
                if rng.next() % 2 == 0 {
                    a.publish(off);
                    if let Some(r) = a.release_published(off)? {
                        check_range(&r, &live, size);
                    }
                } else if let Some(r) = a.free(off) {
                    check_range(&r, &live, size);
                }
            }
        }
        let mut v = KVec::new();
        v.extend_from_slice(&live, GFP_KERNEL)?;
        assert_eq!(bad_slice(&mut v, size), None);
        Ok(())
    }

    /// A discarded range is page-aligned, inside the pool and overlaps no live slice.
    fn check_range(r: &Range<u64>, live: &[(u64, u64)], size: u64) {
        assert_eq!(r.start % PAGE, 0);
        assert_eq!(r.end % PAGE, 0);
        assert!(r.start < r.end && r.end <= size);
        for &(off, len) in live {
            assert!(off + len <= r.start || off >= r.end);
        }
    }
}
