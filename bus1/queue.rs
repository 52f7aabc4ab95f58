// SPDX-License-Identifier: GPL-2.0

//! Per-peer message queues with a global order.
//!
//! Every peer owns one [`Queue`]. Together, the queues of all peers make every event (message,
//! node destruction, node release) appear in one global total order, without any global lock or
//! global counter. Each queue carries a Lamport clock; a transaction touching several queues
//! collects a commit timestamp that is larger than every clock it has seen and commits all its
//! entries with that timestamp. See `Documentation/bus1/` for the full argument; in short:
//!
//! * Timestamps are `u64` values. Even values are commit timestamps; odd values mark *staging*
//!   entries whose transaction has not yet decided on its commit timestamp.
//! * Entries are ordered by [`QueueKey`]: timestamp first, then the transaction tag (identical
//!   on every queue, so ties between transactions are broken the same way everywhere), then a
//!   per-queue ID that only makes keys unique.
//! * Only the leftmost entry can be dequeued, and only once it is committed. A staging entry
//!   therefore blocks everything ordered after it until its transaction commits; it can only
//!   move to a larger timestamp when it does.
//!
//! A transaction with origin queue `O` and destination queues `D1..Dk` runs as follows, taking
//! each queue's lock only around the call on that queue:
//!
//! 1. `T = 0`; for every destination: `key_i = Di.stage(slot_i, tag, T, v_i)`,
//!    `T = key_i.clock()`.
//! 2. `C = O.tick_after(T)`.
//! 3. For every destination: `Di.sync(C)`. Nothing of the transaction is visible yet.
//! 4. For every destination: `Di.commit_staged(&key_i, C)`; wake up readers if it says the
//!    queue became readable.
//!
//! [`Queue`] is a plain data structure without a lock of its own: it lives in a peer's
//! lock-protected state and every method expects the caller to hold that lock. Methods that
//! insert entries take a [`QueueSlot`] allocated beforehand, so no queue operation ever
//! allocates memory.
//!
//! The clock is not part of the [`Queue`]: it is a [`Clock`] of its own, an atomic word beside
//! the lock, which the queue's methods take as an argument. Under the queue's lock it only
//! moves forward like any clock; without it, a peer's own sends tick it
//! ([`Clock::tick_after`]), so that a send can take its commit timestamp in the critical section
//! of the destination's lock, above the destination's clock read there, instead of in one of
//! its own. Every change is a compare-and-exchange that only raises the value, so concurrent
//! ticks and syncs compose: each tick is unique and above every value the clock had before.

#![deny(unsafe_code)]

use kernel::{
    alloc::Flags,
    prelude::*,
    rbtree::{
        RBTree,
        RBTreeNode,
        RBTreeNodeReservation, //
    },
    sync::atomic::{
        ordering::Relaxed,
        Atomic, //
    },
};

/// The largest timestamp a queue clock can reach.
///
/// The clock grows by 2 per tick and starts at 0, so reaching this value takes 2^63 ticks, which
/// is centuries even at one tick per nanosecond. The clock saturates here rather than wrapping so
/// that the arithmetic can never panic or reorder entries; it is never reached in practice.
const TS_MAX: u64 = u64::MAX - 1;

/// Rounds `ts` up to an even timestamp, saturating at [`TS_MAX`].
fn even_ceil(ts: u64) -> u64 {
    ts.saturating_add(ts & 1).min(TS_MAX)
}

/// A peer's Lamport clock: always even, only ever raised.
///
/// Read and synced under the owner's queue lock by everything that queues there, and ticked by
/// the owner's own sends without that lock (see the module documentation).
///
/// # Invariants
///
/// The value is even and at most [`TS_MAX`], and never decreases: every change is a
/// compare-and-exchange from a value to a larger one.
pub(crate) struct Clock(Atomic<u64>);

impl Clock {
    /// Creates a clock at 0.
    pub(crate) const fn new() -> Self {
        Self(Atomic::new(0))
    }

    /// Returns the current value (always even).
    ///
    /// A value read under the owner's queue lock is at least everything committed or staged
    /// there so far; the owner's concurrent ticks may have raised it since.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }

    /// Raises the value to `f(old)` if that is larger, and returns the old value and the new
    /// one. Each tick and sync is one such step: the compare-and-exchange makes concurrent
    /// changes compose, and is skipped where the value already suffices (a sync to a timestamp
    /// the clock has passed writes nothing).
    fn raise(&self, f: impl Fn(u64) -> u64) -> (u64, u64) {
        let mut old = self.get();
        loop {
            let new = f(old);
            if new <= old {
                return (old, old);
            }
            match self.0.cmpxchg(old, new, Relaxed) {
                Ok(_) => return (old, new),
                Err(cur) => old = cur,
            }
        }
    }

    /// Moves the clock forward to at least `ts` and returns the new value.
    ///
    /// Timestamps passed around are even; an odd `ts` is rounded up.
    pub(crate) fn sync(&self, ts: u64) -> u64 {
        let ts = even_ceil(ts);
        self.raise(|old| old.max(ts)).1
    }

    /// Advances the clock by one tick and returns the new, even value.
    ///
    /// The caller owns the returned value and its odd successor as timestamps.
    pub(crate) fn tick(&self) -> u64 {
        self.tick_after(0)
    }

    /// Syncs the clock to `ts` and advances it by one tick, in one step: returns a value above
    /// both `ts` and every value the clock had before, which no other tick of this clock
    /// returns.
    pub(crate) fn tick_after(&self, ts: u64) -> u64 {
        let ts = even_ceil(ts);
        // Cannot saturate in practice, see `TS_MAX`; a saturated clock returns `TS_MAX` again.
        self.raise(|old| old.max(ts).saturating_add(2).min(TS_MAX))
            .1
    }
}

/// The sort key of a queue entry.
///
/// Keys order by timestamp, then by transaction tag, then by the per-queue entry ID. The
/// timestamp is odd while the entry is staging and even once it is committed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct QueueKey {
    /// Staging (odd) or commit (even) timestamp.
    ts: u64,
    /// Transaction identity; equal tags mean the same transaction.
    tag: u64,
    /// Per-queue counter that makes keys unique; kept when an entry is committed.
    id: u64,
}

impl QueueKey {
    /// Returns the entry's timestamp: odd while staging, even once committed.
    pub(crate) fn ts(&self) -> u64 {
        self.ts
    }

    /// Returns the tag of the transaction that queued the entry.
    pub(crate) fn tag(&self) -> u64 {
        self.tag
    }

    /// Returns whether the entry still waits for its transaction to commit.
    pub(crate) fn is_staging(&self) -> bool {
        self.ts & 1 == 1
    }

    /// Returns the even clock value the timestamp was derived from.
    ///
    /// For a staging entry this is the queue clock it was staged at (its timestamp minus one);
    /// a transaction carries it to its next destination as the minimum to stage at. For a
    /// committed entry it is the commit timestamp.
    pub(crate) fn clock(&self) -> u64 {
        self.ts & !1
    }
}

/// Preallocated memory for one queue entry.
///
/// Allocate it with [`QueueSlot::new`] (or [`Queue::reserve`]) before taking the lock that
/// protects the queue; inserting it later cannot fail.
pub(crate) struct QueueSlot<T> {
    /// The tree node; the value is always `Some` while the node is in a [`Queue`].
    res: RBTreeNodeReservation<QueueKey, Option<T>>,
}

impl<T> QueueSlot<T> {
    /// Allocates a slot with the given allocation flags.
    pub(crate) fn new(flags: Flags) -> Result<Self> {
        Ok(Self {
            res: RBTreeNodeReservation::new(flags)?,
        })
    }
}

/// A peer's queue: a flush mark and the entries ordered by [`QueueKey`], with the peer's
/// [`Clock`] beside it, which every method that orders an entry takes.
///
/// The queue has no lock of its own; the owner serialises all calls.
///
/// # Invariants
///
/// - The queue's clock (the one [`Clock`] every call on it is given) is at least the timestamp
///   of every committed entry and the clock value every staging entry was staged at: whatever
///   is committed or staged later orders after them.
/// - A staging entry has an odd timestamp; it only ever moves to a larger, even one.
/// - Every entry ordered before the leftmost staging entry is committed; only the leftmost
///   entry is dequeued, so the owner observes entries in key order.
/// - `seen` is the `(ts, tag)` of the last dequeued entry, and no entry is ever inserted at or
///   before it ([`Queue::commit_synthetic`] refuses), so what was observed is never reordered.
///   [`Queue::commit_synthetic`] refuses entries at or before `flush` as well: they could only
///   be dropped.
/// - Every value in `entries` is `Some`.
///
/// The fields every message's commit and dequeue use come first (see [`crate::peer::PeerInner`]).
#[repr(C)]
pub(crate) struct Queue<T> {
    /// The entries. Every value is `Some`; `Option` only lets [`Queue::commit_staged`] move a
    /// value out of a node while reusing the node's memory.
    entries: RBTree<QueueKey, Option<T>>,
    /// The ID of the next inserted entry.
    next_id: u64,
    /// `(ts, tag)` of the last entry [popped](Queue::pop_front): what the owner observed last.
    seen: (u64, u64),
    /// `(ts, tag)` of the last flush: entries ordered at or before it are flushed. The tag
    /// matters on ties: a transaction committed at the flush's timestamp with a larger tag is
    /// ordered after the flush on every queue.
    flush: (u64, u64),
}

// The entries' root comes first (see `Queue`).
const _: () = assert!(core::mem::offset_of!(Queue<()>, entries) == 0);

impl<T> Queue<T> {
    /// Creates an empty queue.
    pub(crate) fn new() -> Self {
        Self {
            flush: (0, 0),
            next_id: 0,
            seen: (0, 0),
            entries: RBTree::new(),
        }
    }

    /// Allocates a slot for an entry of this queue; see [`QueueSlot::new`].
    ///
    /// This does not look at any queue, so call it before taking the queue's lock.
    pub(crate) fn reserve(flags: Flags) -> Result<QueueSlot<T>> {
        QueueSlot::new(flags)
    }

    /// Returns `(ts, tag)` of the last flush (`(0, 0)` if the queue was never flushed).
    pub(crate) fn flush_mark(&self) -> (u64, u64) {
        self.flush
    }

    /// Returns whether `key` is ordered at or before the last flush, on the full
    /// `(timestamp, tag)` order.
    ///
    /// An entry that was staging during a flush and then committed at or below the flush mark is
    /// logically flushed; the owner may use this to discard it.
    pub(crate) fn is_flushed(&self, key: &QueueKey) -> bool {
        !key.is_staging() && (key.ts, key.tag) <= self.flush
    }

    /// Returns whether the queue has no entries at all, staging or committed.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Returns whether an entry can be dequeued: the leftmost entry exists and is committed.
    pub(crate) fn is_readable(&self) -> bool {
        self.entries
            .cursor_front()
            .is_some_and(|c| !c.current().0.is_staging())
    }

    /// Allocates the ID for the next entry.
    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        // IDs only need to be unique among live entries; wrapping around would take 2^64
        // insertions while one entry stays queued.
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// Inserts `value` under a new key built from `ts` and `tag`.
    // Inlined: on every message's path, where a call would cost about as much as the body.
    #[inline(always)]
    fn insert(&mut self, slot: QueueSlot<T>, ts: u64, tag: u64, value: T) -> QueueKey {
        let key = QueueKey {
            ts,
            tag,
            id: self.next_id(),
        };
        let old = self.entries.insert(slot.res.into_node(key, Some(value)));
        // Keys are unique by their ID, so nothing is ever replaced.
        kernel::warn_on!(old.is_some());
        key
    }

    /// Queues `value` as a staging entry of transaction `tag`.
    ///
    /// Syncs the clock to `ts` (the largest clock the transaction has seen so far) and stamps
    /// the entry with the odd timestamp just above the resulting clock. Returns the entry's key;
    /// `key.clock()` is the value to stage at on the next destination and to sync the origin to.
    ///
    /// The entry blocks everything ordered after it until [`Queue::commit_staged`] is called.
    pub(crate) fn stage(
        &mut self,
        clock: &Clock,
        slot: QueueSlot<T>,
        tag: u64,
        ts: u64,
        value: T,
    ) -> QueueKey {
        let t = clock.sync(ts);
        // `t` is even and at most `TS_MAX`, so `t | 1 == t + 1` and does not overflow.
        self.insert(slot, t | 1, tag, value)
    }

    /// Queues `value` as a staging entry of transaction `tag` whose commit timestamp `c` was
    /// taken before staging (see `transaction.rs`).
    ///
    /// If the clock is below `c`, the entry stages just below it, at `c - 1`, and the clock is
    /// synced to `c`: the entry orders after everything queued so far, everything queued later
    /// orders after `c`, and committing it at `c` needs no further sync. Otherwise the entry
    /// stages as with [`Queue::stage`], above the clock, and the transaction needs a later
    /// commit timestamp. Returns the entry's key and whether it staged below `c`.
    pub(crate) fn stage_at(
        &mut self,
        clock: &Clock,
        slot: QueueSlot<T>,
        tag: u64,
        c: u64,
        value: T,
    ) -> (QueueKey, bool) {
        let c = even_ceil(c);
        let (old, _) = clock.raise(|old| old.max(c));
        if old < c {
            // `c` is even and above the even clock, so `c - 1` is odd and above the clock too.
            (self.insert(slot, c - 1, tag, value), true)
        } else {
            (self.stage(clock, slot, tag, c, value), false)
        }
    }

    /// Commits the staging entry `key` with commit timestamp `ts`.
    ///
    /// The entry is re-keyed in place (its memory is reused, so this cannot fail) and the clock
    /// is synced to `ts`. `ts` is the transaction's commit timestamp, which is even and larger
    /// than the entry's staging timestamp; anything else is rounded up to the next value that is.
    ///
    /// Returns the new key and whether the queue went from unreadable to readable (so readers
    /// must be woken up), or [`None`] if `key` is not a staging entry of this queue.
    pub(crate) fn commit_staged(
        &mut self,
        clock: &Clock,
        key: &QueueKey,
        ts: u64,
    ) -> Option<(QueueKey, bool)> {
        if !key.is_staging() {
            return None;
        }
        let was_readable = self.is_readable();
        // One search: the entry's value is moved out and its node unlinked for reuse.
        let mut entry = self.entries.find_mut(key)?;
        let value = entry.get_mut().take();
        let node = entry.remove_node();
        let ts = even_ceil(ts).max(even_ceil(key.ts));
        clock.sync(ts);
        let new_key = QueueKey {
            ts,
            tag: key.tag,
            id: key.id,
        };
        let old = self
            .entries
            .insert(node.into_reservation().into_node(new_key, value));
        // `new_key.id` was unique before, and the old key is gone.
        kernel::warn_on!(old.is_some());
        Some((new_key, !was_readable && self.is_readable()))
    }

    /// Queues `value` as a committed single-queue transaction `tag` with a fresh tick.
    ///
    /// The entry is ordered after everything committed on this queue so far (and behind any
    /// staging entry). Returns its key and whether the queue went from unreadable to readable.
    pub(crate) fn commit_unstaged(
        &mut self,
        clock: &Clock,
        slot: QueueSlot<T>,
        tag: u64,
        value: T,
    ) -> (QueueKey, bool) {
        let was_readable = self.is_readable();
        let ts = clock.tick();
        let key = self.insert(slot, ts, tag, value);
        (key, !was_readable && self.is_readable())
    }

    /// Whether an entry of transaction `tag` at timestamp `ts` orders after everything the
    /// owner already took off the queue and after the last flush, so
    /// [`Queue::commit_synthetic`] would accept it: an entry at or before the flush mark would
    /// only ever be dropped, unseen.
    pub(crate) fn may_join(&self, ts: u64, tag: u64) -> bool {
        (even_ceil(ts), tag) > self.seen.max(self.flush)
    }

    /// Queues `value` as a committed entry of transaction `tag` at an already known, even
    /// timestamp `ts`: joins a transaction that committed elsewhere.
    ///
    /// The clock is synced to `ts` in any case, so whatever is committed here later orders
    /// after the entry. The entry is inserted only if it orders after the last entry popped
    /// and the last flush (see [`Queue::may_join`]), so the owner never observes it out of
    /// order and never loses it to a flush it already passed; otherwise the slot and value are
    /// handed back. Returns the key and whether the queue became readable.
    // Inlined: on every message's path, where a call would cost about as much as the body.
    #[inline(always)]
    pub(crate) fn commit_synthetic(
        &mut self,
        clock: &Clock,
        slot: QueueSlot<T>,
        ts: u64,
        tag: u64,
        value: T,
    ) -> Result<(QueueKey, bool), (QueueSlot<T>, T)> {
        let ts = even_ceil(ts);
        clock.sync(ts);
        if !self.may_join(ts, tag) {
            return Err((slot, value));
        }
        let was_readable = self.is_readable();
        let key = self.insert(slot, ts, tag, value);
        Ok((key, !was_readable && self.is_readable()))
    }

    /// Returns the value of the entry `key`, if it is queued.
    pub(crate) fn get(&self, key: &QueueKey) -> Option<&T> {
        self.entries.get(key)?.as_ref()
    }

    /// Returns the value of the entry `key` for modification, if it is queued.
    pub(crate) fn get_mut(&mut self, key: &QueueKey) -> Option<&mut T> {
        self.entries.get_mut(key)?.as_mut()
    }

    /// Removes the entry `key`, staging or committed.
    ///
    /// Returns its value and whether the queue went from unreadable to readable (removing a
    /// staging front uncovers the entries behind it, so readers must be woken up), or [`None`]
    /// if `key` is not queued.
    pub(crate) fn remove(&mut self, key: &QueueKey) -> Option<(T, bool)> {
        let was_readable = self.is_readable();
        let value = self.entries.remove(key)??;
        Some((value, !was_readable && self.is_readable()))
    }

    /// Removes the entry `key` like [`Queue::remove`], and also returns its memory as a new
    /// slot, so the caller can queue a replacement entry without allocating.
    pub(crate) fn remove_reuse(&mut self, key: &QueueKey) -> Option<(T, QueueSlot<T>, bool)> {
        let was_readable = self.is_readable();
        let mut entry = self.entries.find_mut(key)?;
        let value = entry.get_mut().take();
        let node = entry.remove_node();
        let slot = QueueSlot {
            res: node.into_reservation(),
        };
        Some((value?, slot, !was_readable && self.is_readable()))
    }

    /// Flushes the queue at `(ts, tag)`, the commit timestamp and tag of the flushing
    /// transaction.
    ///
    /// Removes every committed entry ordered at or before `(ts, tag)` and hands its value to
    /// `f`; staging entries stay, whatever their timestamp. Raises the flush mark to
    /// `(ts, tag)` and syncs the clock to `ts`.
    pub(crate) fn flush(&mut self, clock: &Clock, ts: u64, tag: u64, mut f: impl FnMut(T)) {
        self.flush_nodes(clock, ts, tag, |node| {
            if let (_, Some(value)) = node.to_key_value() {
                f(value);
            }
        });
    }

    /// Like [`Queue::flush`], but moves the flushed entries into a new queue instead of handing
    /// them out, reusing their memory: nothing is allocated and nothing is dropped, so the caller
    /// can drop the result after releasing its lock when the values' destructors take locks.
    pub(crate) fn flush_detach(&mut self, clock: &Clock, ts: u64, tag: u64) -> Queue<T> {
        let mut out = Queue::new();
        self.flush_nodes(clock, ts, tag, |node| {
            // Keys are unique, so nothing is displaced.
            let _ = out.entries.insert(node);
        });
        out
    }

    /// The flush of [`Queue::flush`] and [`Queue::flush_detach`]: raises the mark, syncs the
    /// clock and removes every committed entry ordered at or before `(ts, tag)`, handing each
    /// tree node to `f`.
    fn flush_nodes(
        &mut self,
        clock: &Clock,
        ts: u64,
        tag: u64,
        mut f: impl FnMut(RBTreeNode<QueueKey, Option<T>>),
    ) {
        self.flush = self.flush.max((ts, tag));
        clock.sync(ts);
        let mut cursor = self.entries.cursor_front_mut();
        while let Some(c) = cursor {
            let key = *c.current().0;
            if (key.ts, key.tag) > (ts, tag) {
                break;
            }
            if key.is_staging() {
                cursor = c.move_next();
                continue;
            }
            let (neighbour, node) = c.remove_current();
            // `remove_current()` falls back to the previous entry if there is no next one.
            cursor = neighbour.filter(|n| *n.current().0 > key);
            f(node);
        }
    }

    /// Removes every entry, staging or committed, into a new queue, without allocating or
    /// dropping anything; see [`Queue::flush_detach`].
    pub(crate) fn take_all(&mut self) -> Queue<T> {
        let mut out = Queue::new();
        core::mem::swap(&mut out.entries, &mut self.entries);
        out
    }

    /// Returns the front entry if it can be dequeued.
    ///
    /// Returns the key and value of the leftmost entry and whether the next entry belongs to the
    /// same transaction at the same timestamp (the CONTINUE flag), or [`None`] if the queue is
    /// empty or its leftmost entry is still staging.
    pub(crate) fn front(&self) -> Option<(&QueueKey, &T, bool)> {
        let mut iter = self.entries.iter();
        let (key, value) = iter.next()?;
        if key.is_staging() {
            return None;
        }
        let cont = iter
            .next()
            .is_some_and(|(next, _)| next.ts == key.ts && next.tag == key.tag);
        Some((key, value.as_ref()?, cont))
    }

    /// Dequeues the front entry if it can be dequeued; see [`Queue::front`].
    ///
    /// The entry is removed by its key rather than at a cursor, here and in
    /// [`Queue::pop_front_reuse`]: removing at a cursor looks up both neighbours of the entry
    /// (`rb_prev()` and `rb_next()`) for a cursor that would be dropped, which costs more than
    /// walking down to the front again.
    pub(crate) fn pop_front(&mut self) -> Option<(QueueKey, T, bool)> {
        let mut iter = self.entries.iter();
        let key = *iter.next()?.0;
        if key.is_staging() {
            return None;
        }
        let cont = iter
            .next()
            .is_some_and(|(next, _)| next.ts == key.ts && next.tag == key.tag);
        let (key, value) = self.entries.remove_node(&key)?.to_key_value();
        self.seen = self.seen.max((key.ts, key.tag));
        Some((key, value?, cont))
    }

    /// Dequeues the front entry like [`Queue::pop_front`], and also returns its memory as a new
    /// slot, so the caller can keep it for a later entry.
    // Inlined: on every message's path, where a call would cost about as much as the body.
    #[inline(always)]
    pub(crate) fn pop_front_reuse(&mut self) -> Option<(QueueKey, T, QueueSlot<T>)> {
        let cursor = self.entries.cursor_front()?;
        let key = *cursor.current().0;
        if key.is_staging() {
            return None;
        }
        let mut entry = self.entries.find_mut(&key)?;
        let value = entry.get_mut().take();
        let node = entry.remove_node();
        self.seen = self.seen.max((key.ts, key.tag));
        let slot = QueueSlot {
            res: node.into_reservation(),
        };
        Some((key, value?, slot))
    }

    /// Calls `f` on every entry, staging or committed, in queue order. Takes time linear in the
    /// number of entries.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&QueueKey, &T)) {
        for (key, value) in self.entries.iter() {
            if let Some(value) = value {
                f(key, value);
            }
        }
    }

    /// Removes every entry, staging or committed, in queue order and hands each to `f`.
    ///
    /// Used on teardown, so the owner can release what the entries hold.
    pub(crate) fn drain(&mut self, mut f: impl FnMut(QueueKey, T)) {
        while let Some(cursor) = self.entries.cursor_front_mut() {
            let (_, node) = cursor.remove_current();
            if let (key, Some(value)) = node.to_key_value() {
                f(key, value);
            }
        }
    }
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[kunit_tests(bus1_queue)]
mod tests {
    use super::*;

    fn slot() -> Result<QueueSlot<u64>> {
        QueueSlot::new(GFP_KERNEL)
    }

    #[test]
    fn tick_and_sync() -> Result {
        let clk = Clock::new();
        assert_eq!(clk.get(), 0);
        assert_eq!(clk.tick(), 2);
        assert_eq!(clk.tick(), 4);
        assert_eq!(clk.get(), 4);
        // Syncing never moves the clock backwards.
        assert_eq!(clk.sync(2), 4);
        assert_eq!(clk.sync(4), 4);
        assert_eq!(clk.sync(10), 10);
        assert_eq!(clk.get(), 10);
        assert_eq!(clk.tick(), 12);
        // Odd values are rounded up, the clock stays even.
        assert_eq!(clk.sync(15), 16);
        // A tick after a timestamp passes both it and the clock, in one step.
        assert_eq!(clk.tick_after(20), 22);
        assert_eq!(clk.tick_after(7), 24);
        assert_eq!(clk.get(), 24);
        // The clock saturates instead of overflowing.
        assert_eq!(clk.sync(u64::MAX), TS_MAX);
        assert_eq!(clk.tick(), TS_MAX);
        assert_eq!(clk.get() & 1, 0);
        Ok(())
    }

    #[test]
    fn stage_is_odd_and_commit_is_even() -> Result {
        let mut q = Queue::<u64>::new();
        let clk = Clock::new();
        clk.tick();
        // Staging syncs to the carried clock first.
        let k = q.stage(&clk, slot()?, 7, 10, 1);
        assert!(k.is_staging());
        assert_eq!(k.ts(), 11);
        assert_eq!(k.clock(), 10);
        assert_eq!(k.tag(), 7);
        assert_eq!(clk.get(), 10);
        // Staging below the clock stamps just above the clock.
        let k2 = q.stage(&clk, slot()?, 8, 4, 2);
        assert_eq!(k2.ts(), 11);
        assert!(k2 > k);

        let (c, readable) = q.commit_staged(&clk, &k, 12).ok_or(EINVAL)?;
        assert!(!c.is_staging());
        assert_eq!(c.ts(), 12);
        assert_eq!(c.clock(), 12);
        assert_eq!(c.tag(), 7);
        assert_eq!(clk.get(), 12);
        // k2 still blocks the queue.
        assert!(!readable);
        // The old key is gone, committing twice fails, and committed keys cannot be committed.
        assert!(q.get(&k).is_none());
        assert!(q.commit_staged(&clk, &k, 12).is_none());
        assert!(q.commit_staged(&clk, &c, 14).is_none());
        assert_eq!(q.get(&c).copied(), Some(1));

        // A commit timestamp below the staging stamp is raised above it.
        let (c2, readable) = q.commit_staged(&clk, &k2, 4).ok_or(EINVAL)?;
        assert!(readable);
        assert_eq!(c2.ts(), 12);
        assert!(c2 > c);

        // Unstaged commits take a fresh tick.
        let (u, readable) = q.commit_unstaged(&clk, slot()?, 9, 3);
        assert!(!readable);
        assert_eq!(u.ts(), 14);
        assert!(!u.is_staging());
        Ok(())
    }

    #[test]
    fn stage_at_a_known_timestamp() -> Result {
        let mut q = Queue::<u64>::new();
        let clk = Clock::new();
        let (before, _) = q.commit_unstaged(&clk, slot()?, 1, 10);
        assert_eq!(before.ts(), 2);
        // Below the clock-to-be: staged just below it, the clock synced to it.
        let (k, on_time) = q.stage_at(&clk, slot()?, 7, 8, 20);
        assert!(on_time);
        assert!(k.is_staging());
        assert_eq!((k.ts(), k.tag()), (7, 7));
        assert_eq!(clk.get(), 8);
        assert!(k > before);
        // It blocks what comes after it, and whatever is queued now orders after `c`.
        let (after, _) = q.commit_unstaged(&clk, slot()?, 2, 30);
        assert_eq!(after.ts(), 10);
        assert_eq!(q.pop_front().map(|e| e.1), Some(10));
        assert!(q.pop_front().is_none());
        // Committed at `c` with no sync, ahead of the later entry.
        let (c, readable) = q.commit_staged(&clk, &k, 8).ok_or(EINVAL)?;
        assert!(readable);
        assert_eq!(c.ts(), 8);
        assert_eq!(clk.get(), 10);
        assert_eq!(q.pop_front().map(|e| e.1), Some(20));
        assert_eq!(q.pop_front().map(|e| e.1), Some(30));
        // The clock has reached `c`: staged above the clock instead, as `stage` does.
        let (late, on_time) = q.stage_at(&clk, slot()?, 7, 10, 40);
        assert!(!on_time);
        assert_eq!(late.ts(), 11);
        assert_eq!(clk.get(), 10);
        Ok(())
    }

    #[test]
    fn staging_front_hides_committed() -> Result {
        let mut q = Queue::<u64>::new();
        let clk = Clock::new();
        assert!(q.is_empty());
        assert!(!q.is_readable());
        assert!(q.front().is_none());
        assert!(q.pop_front().is_none());

        let s = q.stage(&clk, slot()?, 1, 0, 10);
        assert!(!q.is_empty());
        assert!(!q.is_readable());
        // A committed entry behind the staging one stays hidden.
        let (u, readable) = q.commit_unstaged(&clk, slot()?, 2, 20);
        assert!(!readable);
        assert!(u > s);
        assert!(!q.is_readable());
        assert!(q.front().is_none());
        assert!(q.pop_front().is_none());
        *q.get_mut(&u).ok_or(EINVAL)? = 21;

        // Committing the staging entry to a timestamp behind `u` exposes `u` first.
        let c = clk.get() + 2;
        let (s, readable) = q.commit_staged(&clk, &s, c).ok_or(EINVAL)?;
        assert!(readable);
        assert!(q.is_readable());
        let (key, value, cont) = q.front().ok_or(EINVAL)?;
        assert!(*key == u);
        assert_eq!(*value, 21);
        assert!(!cont);
        let (key, value, _) = q.pop_front().ok_or(EINVAL)?;
        assert!(key == u);
        assert_eq!(value, 21);
        let (key, value, _) = q.pop_front().ok_or(EINVAL)?;
        assert!(key == s);
        assert_eq!(value, 10);
        assert!(q.is_empty());
        assert!(!q.is_readable());
        Ok(())
    }

    #[test]
    fn continue_flag() -> Result {
        let mut q = Queue::<u64>::new();
        let clk = Clock::new();
        // One transaction (tag 5) with two entries on this queue, plus another transaction at
        // the same commit timestamp with a larger tag.
        let a = q.stage(&clk, slot()?, 5, 0, 1);
        let b = q.stage(&clk, slot()?, 5, a.clock(), 2);
        let o = q.stage(&clk, slot()?, 6, 0, 3);
        let c = clk.sync(b.clock()) + 2;
        let (_, r0) = q.commit_staged(&clk, &o, c).ok_or(EINVAL)?;
        let (_, r1) = q.commit_staged(&clk, &b, c).ok_or(EINVAL)?;
        // `a` still blocks.
        assert!(!r0 && !r1);
        assert!(q.front().is_none());
        let (_, r2) = q.commit_staged(&clk, &a, c).ok_or(EINVAL)?;
        assert!(r2);
        let (_, _, cont) = q.front().ok_or(EINVAL)?;
        assert!(cont);

        let (k1, v1, c1) = q.pop_front().ok_or(EINVAL)?;
        let (k2, v2, c2) = q.pop_front().ok_or(EINVAL)?;
        let (k3, v3, c3) = q.pop_front().ok_or(EINVAL)?;
        assert!(q.pop_front().is_none());
        assert_eq!((k1.ts(), k1.tag(), v1, c1), (c, 5, 1, true));
        assert_eq!((k2.ts(), k2.tag(), v2, c2), (c, 5, 2, false));
        // Same timestamp, different transaction: no CONTINUE across transactions.
        assert_eq!((k3.ts(), k3.tag(), v3, c3), (c, 6, 3, false));
        Ok(())
    }

    /// Maximum number of destinations of a simulated transaction.
    const MAX_DESTS: usize = 3;
    /// Number of queues in a simulation.
    const NQ: usize = 5;
    /// Maximum number of entries a simulated queue receives.
    const MAX_LOG: usize = 8;

    /// A simulated transaction following the commit protocol, one step at a time.
    #[derive(Clone, Copy)]
    struct Tx {
        /// Payload identifying the transaction in the receive logs.
        idx: u64,
        /// Transaction tag.
        tag: u64,
        /// Origin queue, the one whose clock provides the commit timestamp.
        origin: usize,
        /// Destination queues, in staging order.
        dests: [usize; MAX_DESTS],
        /// Number of destinations.
        n: usize,
        /// Order of the sync and commit rounds, as indices into `dests`.
        order: [usize; MAX_DESTS],
        /// Largest clock seen while staging.
        t: u64,
        /// Commit timestamp, once sealed.
        c: u64,
        /// Keys of the staged entries, by index into `dests`.
        keys: [Option<QueueKey>; MAX_DESTS],
        /// Next step: `0..n` stage, `n` seal, then `n` syncs and `n` commits; with the
        /// timestamp taken first, `0` seal, `1..=n` stage, `n + 1` seal again and `n` syncs if
        /// a stage came too late, then `n` commits.
        pc: usize,
        /// Whether the commit timestamp is taken first (`Transaction::timestamp_first`).
        first: bool,
        /// With the timestamp taken first: whether the hint is the destinations' clocks when it
        /// is taken (else 0, stale).
        fresh_hint: bool,
        /// With the timestamp taken first: whether a destination's clock had passed it.
        late: bool,
        /// A unicast committed in one step under its destination's lock, with a tick of the
        /// origin's clock synced to the destination's (`transaction::commit_unicast`).
        unicast: bool,
    }

    impl Tx {
        fn new(idx: u64, tag: u64, origin: usize, dests: &[usize], order: &[usize]) -> Self {
            let mut tx = Tx {
                idx,
                tag,
                origin,
                dests: [0; MAX_DESTS],
                n: dests.len(),
                order: [0; MAX_DESTS],
                t: 0,
                c: 0,
                keys: [None; MAX_DESTS],
                pc: 0,
                first: false,
                fresh_hint: false,
                late: false,
                unicast: false,
            };
            // Element-wise copies; `copy_from_slice()` would add a panicking length check.
            for (d, s) in tx.dests.iter_mut().zip(dests) {
                *d = *s;
            }
            for (d, s) in tx.order.iter_mut().zip(order) {
                *d = *s;
            }
            tx
        }

        fn steps(&self) -> usize {
            if self.unicast {
                return 1;
            }
            3 * self.n + 1 + usize::from(self.first)
        }

        fn done(&self) -> bool {
            self.pc >= self.steps()
        }
    }

    /// Queues plus what each receiver dequeued, in order.
    struct Sim {
        qs: [Queue<u64>; NQ],
        clocks: [Clock; NQ],
        logs: [[u64; MAX_LOG]; NQ],
        lens: [usize; NQ],
    }

    impl Sim {
        fn new() -> Self {
            Sim {
                qs: core::array::from_fn(|_| Queue::new()),
                clocks: core::array::from_fn(|_| Clock::new()),
                logs: [[0; MAX_LOG]; NQ],
                lens: [0; NQ],
            }
        }

        /// Runs the next step of `tx`.
        fn step(&mut self, tx: &mut Tx) -> Result {
            if tx.unicast {
                return self.step_unicast(tx);
            }
            if tx.first {
                return self.step_first(tx);
            }
            let n = tx.n;
            let pc = tx.pc;
            if pc < n {
                let d = tx.dests[pc];
                let key = self.qs[d].stage(&self.clocks[d], slot()?, tx.tag, tx.t, tx.idx);
                tx.t = key.clock();
                tx.keys[pc] = Some(key);
            } else if pc == n {
                tx.c = self.clocks[tx.origin].tick_after(tx.t);
            } else if pc <= 2 * n {
                let i = tx.order[pc - n - 1];
                self.clocks[tx.dests[i]].sync(tx.c);
            } else if pc <= 3 * n {
                self.commit_nth(tx, pc - 2 * n - 1)?;
            } else {
                return Err(EINVAL);
            }
            tx.pc += 1;
            Ok(())
        }

        /// Runs `tx`, a unicast, in its one step: what `transaction::commit_unicast` does under
        /// the destination's lock.
        fn step_unicast(&mut self, tx: &mut Tx) -> Result {
            let d = tx.dests[0];
            let (q, clk) = (&mut self.qs[d], &self.clocks[d]);
            tx.c = if d == tx.origin {
                q.commit_unstaged(clk, slot()?, tx.tag, tx.idx).0.ts()
            } else {
                let c = self.clocks[tx.origin].tick_after(clk.get());
                // Above the destination's clock: it always joins.
                q.commit_synthetic(clk, slot()?, c, tx.tag, tx.idx)
                    .map_err(|_| EINVAL)?
                    .0
                    .ts()
            };
            tx.pc += 1;
            Ok(())
        }

        /// Commits the `k`-th destination of `tx` in commit order at its timestamp.
        fn commit_nth(&mut self, tx: &Tx, k: usize) -> Result {
            let i = tx.order[k];
            let key = tx.keys[i].ok_or(EINVAL)?;
            let d = tx.dests[i];
            self.qs[d]
                .commit_staged(&self.clocks[d], &key, tx.c)
                .ok_or(EINVAL)?;
            Ok(())
        }

        /// Runs the next step of `tx`, which takes its commit timestamp first.
        fn step_first(&mut self, tx: &mut Tx) -> Result {
            let n = tx.n;
            let pc = tx.pc;
            if pc == 0 {
                let hint = if tx.fresh_hint {
                    tx.dests[..n]
                        .iter()
                        .map(|&d| self.clocks[d].get())
                        .max()
                        .unwrap_or(0)
                } else {
                    0
                };
                tx.c = self.clocks[tx.origin].tick_after(hint);
            } else if pc <= n {
                let d = tx.dests[pc - 1];
                let (q, clk) = (&mut self.qs[d], &self.clocks[d]);
                let key = if tx.late {
                    q.stage(clk, slot()?, tx.tag, tx.t, tx.idx)
                } else {
                    let (key, on_time) = q.stage_at(clk, slot()?, tx.tag, tx.c, tx.idx);
                    tx.late = !on_time;
                    key
                };
                tx.t = tx.t.max(key.clock());
                tx.keys[pc - 1] = Some(key);
            } else if pc == n + 1 {
                if tx.late {
                    tx.c = self.clocks[tx.origin].tick_after(tx.t);
                }
            } else if pc <= 2 * n + 1 {
                if tx.late {
                    let i = tx.order[pc - n - 2];
                    self.clocks[tx.dests[i]].sync(tx.c);
                }
            } else if pc <= 3 * n + 1 {
                self.commit_nth(tx, pc - 2 * n - 2)?;
            } else {
                return Err(EINVAL);
            }
            tx.pc += 1;
            Ok(())
        }

        /// Lets receiver `q` dequeue everything it can.
        fn drain(&mut self, q: usize) -> Result {
            while let Some((_, v, _)) = self.qs[q].pop_front() {
                *self.logs[q].get_mut(self.lens[q]).ok_or(ENOSPC)? = v;
                self.lens[q] += 1;
            }
            Ok(())
        }

        fn drain_all(&mut self) -> Result {
            for q in 0..NQ {
                self.drain(q)?;
            }
            Ok(())
        }

        fn log(&self, q: usize) -> &[u64] {
            &self.logs[q][..self.lens[q]]
        }

        /// Checks that any two transactions seen by two receivers were seen in the same order.
        fn consistent(&self) -> bool {
            for a in 0..NQ {
                for b in 0..NQ {
                    let (la, lb) = (self.log(a), self.log(b));
                    for (i, x) in la.iter().enumerate() {
                        for y in &la[i + 1..] {
                            // `x` before `y` on `a`; `b` must not have `y` before `x`.
                            let px = lb.iter().position(|v| v == x);
                            let py = lb.iter().position(|v| v == y);
                            if let (Some(px), Some(py)) = (px, py) {
                                if py < px {
                                    return false;
                                }
                            }
                        }
                    }
                }
            }
            true
        }

        /// Checks that every transaction reached each of its destinations exactly once.
        fn delivered(&self, txs: &[Tx]) -> bool {
            for q in 0..NQ {
                if !self.qs[q].is_empty() {
                    return false;
                }
                let expected = txs.iter().filter(|t| t.dests[..t.n].contains(&q)).count();
                if self.lens[q] != expected {
                    return false;
                }
                for t in txs {
                    let seen = self.log(q).iter().filter(|v| **v == t.idx).count();
                    if seen != usize::from(t.dests[..t.n].contains(&q)) {
                        return false;
                    }
                }
            }
            true
        }
    }

    #[test]
    fn multicast_order_exhaustive() -> Result {
        // X and Y both multicast to queues 0 and 1, from origins 2 and 3. Every interleaving of
        // their protocol steps, every staging order and every sync/commit order is tried, with
        // the receivers dequeuing as soon as anything is readable.
        const PERMS: [[usize; 2]; 2] = [[0, 1], [1, 0]];
        let mut ties = 0u32;
        let mut x_first = 0u32;
        let mut y_first = 0u32;
        for xs in PERMS {
            for ys in PERMS {
                for xo in PERMS {
                    for yo in PERMS {
                        let x0 = Tx::new(1, 20, 2, &xs, &xo);
                        let y0 = Tx::new(2, 10, 3, &ys, &yo);
                        let total = x0.steps() + y0.steps();
                        for mask in 0u32..(1 << total) {
                            if mask.count_ones() as usize != x0.steps() {
                                continue;
                            }
                            let (mut x, mut y) = (x0, y0);
                            let mut sim = Sim::new();
                            for i in 0..total {
                                if mask & (1 << i) != 0 {
                                    sim.step(&mut x)?;
                                } else {
                                    sim.step(&mut y)?;
                                }
                                sim.drain_all()?;
                            }
                            assert!(x.done() && y.done());
                            assert!(sim.consistent());
                            assert!(sim.delivered(&[x, y]));
                            // Both receivers saw X and Y in the order of their commit keys
                            // (commit timestamp, then tag), the one order the queues define.
                            let expected: [u64; 2] = if (x.c, x.tag) < (y.c, y.tag) {
                                [1, 2]
                            } else {
                                [2, 1]
                            };
                            assert!(sim.log(0) == expected && sim.log(1) == expected);
                            if x.c == y.c {
                                ties += 1;
                            }
                            match sim.log(0).first() {
                                Some(1) => x_first += 1,
                                _ => y_first += 1,
                            }
                        }
                    }
                }
            }
        }
        // Equal commit timestamps occurred and were resolved by the tag, and both orders of X
        // and Y occurred, so the check above was not vacuous.
        assert!(ties > 0);
        assert!(x_first > 0);
        assert!(y_first > 0);
        Ok(())
    }

    /// A small deterministic pseudo-random generator (64-bit LCG).
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) % n as u64) as usize
        }
    }

    #[test]
    fn multicast_order_random() -> Result {
        // Four transactions to random subsets of queues 0..3 from random origins (possibly one
        // of the destinations), random step scheduling, receivers dequeuing at random times.
        random_schedules(false, false).map(|_| ())
    }

    #[test]
    fn unicast_order_random() -> Result {
        // The same, with about half of the transactions to one destination committed in one
        // step, the unicast's, among multicasts that take their timestamp first or not.
        let (_, _, unicasts) = random_schedules(true, true)?;
        assert!(unicasts > 0);
        Ok(())
    }

    #[test]
    fn multicast_order_random_timestamp_first() -> Result {
        // The same, with about half of the transactions taking their commit timestamp first,
        // from a fresh or a stale hint.
        let (on_time, late, _) = random_schedules(true, false)?;
        // Both ways to commit occurred, so the checks were not vacuous.
        assert!(on_time > 0 && late > 0);
        Ok(())
    }

    /// Runs random schedules of four transactions, some taking their commit timestamp first if
    /// `first`, some to one destination committed as unicasts if `unicast`, and checks each.
    /// Returns how many of those taking their timestamp first committed at it and how many took
    /// a new one, and how many unicasts ran.
    fn random_schedules(first: bool, unicast: bool) -> Result<(u32, u32, u32)> {
        const NTX: usize = 4;
        let mut rng = Rng(0x6275_7331);
        let (mut on_time, mut late, mut unicasts) = (0, 0, 0);
        for _ in 0..1000 {
            let mut txs = [Tx::new(0, 0, 0, &[], &[]); NTX];
            for (i, tx) in txs.iter_mut().enumerate() {
                let mut dests = [0usize, 1, 2];
                for j in (1..MAX_DESTS).rev() {
                    dests.swap(j, rng.below(j + 1));
                }
                let n = 1 + rng.below(MAX_DESTS);
                let mut order = [0usize, 1, 2];
                for j in (1..n).rev() {
                    order.swap(j, rng.below(j + 1));
                }
                let tag = 100 + rng.below(3) as u64 * 10 + i as u64;
                *tx = Tx::new(i as u64 + 1, tag, rng.below(NQ), &dests[..n], &order[..n]);
                if first {
                    tx.first = rng.below(2) == 0;
                    tx.fresh_hint = rng.below(2) == 0;
                }
                if unicast && n == 1 && rng.below(2) == 0 {
                    tx.unicast = true;
                    tx.first = false;
                    unicasts += 1;
                }
            }
            let mut sim = Sim::new();
            loop {
                let pending = txs.iter().filter(|t| !t.done()).count();
                if pending == 0 {
                    break;
                }
                let pick = rng.below(pending + 2);
                if pick >= pending {
                    let q = rng.below(NQ);
                    sim.drain(q)?;
                    continue;
                }
                let tx = txs
                    .iter_mut()
                    .filter(|t| !t.done())
                    .nth(pick)
                    .ok_or(EINVAL)?;
                sim.step(tx)?;
            }
            sim.drain_all()?;
            assert!(sim.consistent());
            assert!(sim.delivered(&txs));
            for t in txs.iter().filter(|t| t.first) {
                if t.late {
                    late += 1;
                } else {
                    on_time += 1;
                }
            }
        }
        Ok((on_time, late, unicasts))
    }

    #[test]
    fn causality() -> Result {
        let mut sim = Sim::new();
        // X multicasts from origin 2 to receivers 0 and 1; it is committed on 0 only so far.
        let mut x = Tx::new(1, 50, 2, &[0, 1], &[0, 1]);
        for _ in 0..x.n + 1 + x.n + 1 {
            sim.step(&mut x)?;
        }
        assert!(sim.qs[1].front().is_none());
        // Receiver 0 observes X ...
        let (kx, v, _) = sim.qs[0].pop_front().ok_or(EINVAL)?;
        assert_eq!(v, 1);
        assert_eq!(kx.ts(), x.c);
        // ... and then sends Y to receiver 1, with a smaller tag than X.
        let mut y = Tx::new(2, 1, 0, &[1], &[0]);
        while !y.done() {
            sim.step(&mut y)?;
        }
        assert!(y.c > x.c);
        // Y is committed but ordered after X's staging entry on 1.
        assert!(sim.qs[1].front().is_none());
        sim.step(&mut x)?;
        assert!(x.done());
        let (k1, v1, _) = sim.qs[1].pop_front().ok_or(EINVAL)?;
        let (k2, v2, _) = sim.qs[1].pop_front().ok_or(EINVAL)?;
        assert_eq!((v1, v2), (1, 2));
        assert!(k1.ts() < k2.ts());

        // An unrelated transaction that starts after X completed and touches a queue X synced is
        // ordered after X, also on its other destinations.
        let mut z = Tx::new(3, 0, 3, &[4, 1], &[0, 1]);
        while !z.done() {
            sim.step(&mut z)?;
        }
        assert!(z.c > x.c);
        // So is a release notification queued on an X receiver afterwards.
        let (r, _) = sim.qs[0].commit_unstaged(&sim.clocks[0], slot()?, 0, 4);
        assert!(r.ts() > x.c);
        Ok(())
    }

    /// The tag of the flushing transaction in the flush tests: larger than the tags of the
    /// entries they queue, so ties at the mark's timestamp are flushed.
    const FLUSHER: u64 = 9;

    #[test]
    fn flush_breaks_ties_on_the_tag() -> Result {
        let mut q = Queue::<u64>::new();
        let clk = Clock::new();
        // Two transactions committed elsewhere at the very timestamp the flush commits at, one
        // ordered before the flush (smaller tag) and one after it (larger tag).
        let mark = clk.get() + 10;
        let before = q
            .commit_synthetic(&clk, slot()?, mark, FLUSHER - 1, 1)
            .map_err(|_| EINVAL)?
            .0;
        let after = q
            .commit_synthetic(&clk, slot()?, mark, FLUSHER + 1, 2)
            .map_err(|_| EINVAL)?
            .0;
        let mut dropped = KVec::new();
        q.flush(&clk, mark, FLUSHER, |v| {
            let _ = dropped.push(v, GFP_KERNEL);
        });
        assert_eq!(&dropped[..], &[1]);
        assert!(q.is_flushed(&before));
        assert!(!q.is_flushed(&after));
        assert_eq!(q.get(&after).copied(), Some(2));
        // Nothing joins at or before the flush mark any more; the other side of the tie can.
        assert!(!q.may_join(mark, FLUSHER - 1));
        assert!(!q.may_join(mark, FLUSHER));
        assert!(q.may_join(mark, FLUSHER + 1));
        assert!(q
            .commit_synthetic(&clk, slot()?, mark, FLUSHER - 1, 3)
            .is_err());
        // The same on the detaching variant.
        let mut q = Queue::<u64>::new();
        let clk = Clock::new();
        let _ = q.commit_synthetic(&clk, slot()?, mark, FLUSHER + 1, 2);
        let _ = q.commit_synthetic(&clk, slot()?, mark, FLUSHER - 1, 1);
        let mut out = q.flush_detach(&clk, mark, FLUSHER);
        assert_eq!(out.pop_front().map(|(_, v, _)| v), Some(1));
        assert!(out.is_empty());
        assert_eq!(q.pop_front().map(|(_, v, _)| v), Some(2));
        Ok(())
    }

    #[test]
    fn flush_detach_moves_what_flush_drops() -> Result {
        let mut q = Queue::<u64>::new();
        let clk = Clock::new();
        let (a, _) = q.commit_unstaged(&clk, slot()?, 1, 1);
        let s = q.stage(&clk, slot()?, 2, 0, 2);
        let (b, _) = q.commit_unstaged(&clk, slot()?, 3, 3);
        let mark = clk.tick();
        let (after, _) = q.commit_unstaged(&clk, slot()?, 4, 4);

        let mut out = q.flush_detach(&clk, mark, FLUSHER);
        // The detached queue holds exactly the committed entries at or below the mark, in order.
        assert_eq!(out.pop_front().map(|(_, v, _)| v), Some(1));
        assert_eq!(out.pop_front().map(|(_, v, _)| v), Some(3));
        assert!(out.is_empty());
        assert_eq!(q.flush_mark(), (mark, FLUSHER));
        assert!(q.get(&a).is_none() && q.get(&b).is_none());
        assert_eq!(q.get(&s).copied(), Some(2));
        assert_eq!(q.get(&after).copied(), Some(4));

        // `take_all` empties the queue, staging entries included.
        let mut all = q.take_all();
        assert!(q.is_empty());
        assert_eq!(all.remove(&s).map(|(v, _)| v), Some(2));
        assert_eq!(all.remove(&after).map(|(v, _)| v), Some(4));
        assert!(all.is_empty());
        Ok(())
    }

    #[test]
    fn flush_keeps_staging() -> Result {
        let mut q = Queue::<u64>::new();
        let clk = Clock::new();
        let (a, _) = q.commit_unstaged(&clk, slot()?, 1, 1);
        let s = q.stage(&clk, slot()?, 2, 0, 2);
        let (b, _) = q.commit_unstaged(&clk, slot()?, 3, 3);
        let mark = clk.tick();
        let (after, _) = q.commit_unstaged(&clk, slot()?, 4, 4);
        let s_late = q.stage(&clk, slot()?, 5, 0, 5);
        assert!(a.ts() < s.ts() && s.ts() < b.ts() && b.ts() <= mark && mark < after.ts());

        let mut dropped = [0u64; 4];
        let mut n = 0;
        q.flush(&clk, mark, FLUSHER, |v| {
            if let Some(d) = dropped.get_mut(n) {
                *d = v;
            }
            n += 1;
        });
        assert_eq!(n, 2);
        assert_eq!(dropped[..2], [1, 3]);
        assert_eq!(q.flush_mark(), (mark, FLUSHER));
        assert!(q.get(&a).is_none() && q.get(&b).is_none());
        assert_eq!(q.get(&s).copied(), Some(2));
        assert_eq!(q.get(&after).copied(), Some(4));
        assert_eq!(q.get(&s_late).copied(), Some(5));
        assert!(!q.is_flushed(&s));
        assert!(q.is_flushed(&a));
        assert!(!q.is_flushed(&after));

        // The old staging entry commits at or below the mark: it is logically flushed.
        let (sc, _) = q.commit_staged(&clk, &s, mark).ok_or(EINVAL)?;
        assert!(q.is_flushed(&sc));
        // Flushing again at the mark drops it; the flush mark never goes backwards.
        let mut n = 0;
        q.flush(&clk, 0, FLUSHER, |_| n += 1);
        assert_eq!(n, 0);
        assert_eq!(q.flush_mark(), (mark, FLUSHER));
        q.flush(&clk, mark, FLUSHER, |v| {
            assert_eq!(v, 2);
            n += 1;
        });
        assert_eq!(n, 1);
        // Flushing past everything drops `after` but keeps the staging entry.
        let end = clk.get() + 100;
        q.flush(&clk, end, FLUSHER, |v| {
            assert_eq!(v, 4);
            n += 1;
        });
        assert_eq!(n, 2);
        assert_eq!(q.flush_mark(), (end, FLUSHER));
        assert!(clk.get() >= end);
        assert!(q.get(&after).is_none());
        assert_eq!(q.get(&s_late).copied(), Some(5));
        assert!(q.front().is_none());
        assert_eq!(q.remove(&s_late), Some((5, false)));
        assert!(q.is_empty());
        Ok(())
    }

    #[test]
    fn commit_synthetic_after_observed() -> Result {
        let mut q = Queue::<u64>::new();
        let clk = Clock::new();
        // Nothing observed yet: joining an empty queue makes the entry the readable front.
        let (k0, woke) = q
            .commit_synthetic(&clk, slot()?, 10, 7, 1)
            .map_err(|_| EINVAL)?;
        assert!(woke);
        assert!(!k0.is_staging());
        // The clock was synced: later commits order after it.
        assert_eq!(clk.get(), 10);
        let (f, _) = q.commit_unstaged(&clk, slot()?, 5, 2);
        assert_eq!(f.ts(), 12);
        assert!(f > k0);
        assert!(q.pop_front().is_some_and(|(k, v, _)| k == k0 && v == 1));
        // Before or equal to what was popped: refused.
        let (sl, v) = match q.commit_synthetic(&clk, slot()?, 10, 7, 3) {
            Ok(_) => return Err(EINVAL),
            Err(r) => r,
        };
        assert_eq!(v, 3);
        assert!(!q.may_join(8, 100));
        // After what was popped but before the unread front: inserted ahead of it.
        let (k, woke) = q.commit_synthetic(&clk, sl, 10, 8, 4).map_err(|_| EINVAL)?;
        assert!(!woke);
        assert!(k < f);
        assert!(q.pop_front().is_some_and(|(pk, pv, _)| pk == k && pv == 4));
        assert!(q.pop_front().is_some_and(|(pk, pv, _)| pk == f && pv == 2));
        // Popped up to (12, 5) now.
        assert!(!q.may_join(12, 5));
        assert!(q.may_join(12, 6));

        // Behind a staging front it is accepted but stays hidden.
        let mut q2 = Queue::<u64>::new();
        let clk2 = Clock::new();
        let s = q2.stage(&clk2, slot()?, 1, 0, 5);
        let (k3, woke) = q2
            .commit_synthetic(&clk2, slot()?, 2, 1, 6)
            .map_err(|_| EINVAL)?;
        assert!(!woke);
        assert!(k3 > s);
        assert!(q2.front().is_none());
        assert!(q2.remove(&s).is_some());
        assert!(q2
            .pop_front()
            .is_some_and(|(pk, pv, _)| pk == k3 && pv == 6));
        Ok(())
    }

    #[test]
    fn remove_and_drain() -> Result {
        let mut q: Queue<u64> = Queue::default();
        let clk = Clock::new();
        let s = q.stage(&clk, Queue::reserve(GFP_KERNEL)?, 1, 0, 1);
        let (a, _) = q.commit_unstaged(&clk, slot()?, 2, 2);
        let (b, _) = q.commit_unstaged(&clk, slot()?, 3, 3);

        // Removing the staging front unblocks the queue.
        assert!(!q.is_readable());
        assert_eq!(q.remove(&s), Some((1, true)));
        assert!(q.remove(&s).is_none());
        assert!(q.is_readable());

        // Removing with reuse returns memory for a replacement entry.
        let (v, sl, readable) = q.remove_reuse(&a).ok_or(EINVAL)?;
        assert_eq!(v, 2);
        assert!(!readable);
        assert!(q.remove_reuse(&a).is_none());
        let (r, _) = q.commit_unstaged(&clk, sl, 4, 4);
        assert!(r > b);

        let s2 = q.stage(&clk, slot()?, 5, 0, 5);
        let mut seen = [0u64; 4];
        let mut n = 0;
        q.drain(|k, v| {
            if let Some(d) = seen.get_mut(n) {
                *d = v;
            }
            if v == 5 {
                assert!(k == s2);
            }
            n += 1;
        });
        // Everything, staging included, in queue order.
        assert_eq!(n, 3);
        assert_eq!(seen[..3], [3, 4, 5]);
        assert!(q.is_empty());
        assert!(q.front().is_none());
        Ok(())
    }
}
