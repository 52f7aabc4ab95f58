// SPDX-License-Identifier: GPL-2.0

//! Multi-queue transactions: staging, syncing and committing entries on several peers' queues
//! so that all of them get the same commit timestamp (see `queue.rs` for the protocol).
//!
//! A transaction never holds two peers' locks at once: each step takes the lock of exactly one
//! destination, and every destination stays pinned (by an active reference) from staging until
//! its entry is committed, so it cannot be torn down in between.
//!
//! This module does not know the peer type: a transaction is generic over `P`, which
//! implements [`Participant`] for what the protocol needs of a peer.

#![deny(unsafe_code)]

use crate::queue::{
    Clock,
    Queue,
    QueueKey,
    QueueSlot, //
};
use crate::smallvec::user_sized;
use core::ops::Deref;
use kernel::{
    prelude::*,
    sync::Arc, //
};

/// What a transaction needs of the peers it involves.
pub(crate) trait Participant: Sized {
    /// The entries of the peers' queues.
    type Entry;
    /// A pin on a peer (an active reference), which keeps it from being torn down.
    type Pin: Deref<Target = Self>;
    /// The peer's ID, the tag of the transactions that originate at it.
    fn id(&self) -> u64;
    /// Calls `f` on the peer's queue, under the peer's lock (and no other lock).
    fn with_queue<R>(&self, f: impl FnOnce(&mut Queue<Self::Entry>) -> R) -> R;
    /// The peer's clock, which every call on its queue is given.
    fn clock(&self) -> &Clock;
    /// Wakes up the peer's readers after its queue became readable.
    fn wake(&self);
    /// Whether the peer was shut down. Called under the peer's lock: a peer that is not shut
    /// down then cannot empty its queue for the last time before that lock is dropped, so an
    /// entry queued under it is removed by its teardown.
    fn is_shut_down(&self) -> bool;
}

/// Sends `ev` to the queue of `dst` alone, as a transaction of `origin`, in the preallocated
/// `slot`, in one critical section of the destination's lock (see [`commit_unicast`]). Returns
/// the commit timestamp, or `None` if `dst` was shut down (the entry is dropped, which nobody can
/// tell from a delivery followed by the receiver's flush).
///
/// The destination needs no pin: it is checked under its own lock to be not shut down. The
/// caller keeps `dst` alive for the wake-up after the lock is dropped.
pub(crate) fn unicast<P: Participant>(
    origin: &P,
    dst: &Arc<P>,
    slot: QueueSlot<P::Entry>,
    ev: P::Entry,
) -> Option<u64> {
    let res = dst.with_queue(|q| commit_unicast(origin, dst, q, slot, ev));
    match res {
        Ok((c, wake)) => {
            if wake {
                dst.wake();
            }
            Some(c)
        }
        Err(refused) => {
            drop(refused);
            None
        }
    }
}

/// An entry a shut-down destination refused: its slot and value, to be dropped unlocked.
pub(crate) type Refused<P> = (
    QueueSlot<<P as Participant>::Entry>,
    <P as Participant>::Entry,
);

/// Commits `ev` in `slot` on `q`, the queue of `dst`, whose lock the caller holds, as a
/// transaction of `origin` with no other destination. Returns the commit timestamp and whether
/// the queue became readable, or hands `slot` and `ev` back if `dst` was shut down, for the
/// caller to drop once it has released the lock.
///
/// Nothing of the origin is locked: the commit timestamp is a tick of the origin's clock synced
/// to the destination's clock read here, `C = O.tick_after(D.clock)`, and the entry is inserted
/// committed at `(C, tag)`, the destination's clock synced to `C`. That is the protocol's four
/// rounds with nothing in between to observe: the entry would have staged at the destination's
/// clock plus one, below `C`; `C` is a tick of the origin's clock, unique with the tag, and above
/// everything the origin dequeued before (its clock was synced to those entries when they were
/// committed); and both clocks are at least `C` once the entry is visible. As `C` is above the
/// destination's clock, hence above the last entry its owner took off the queue and its last
/// flush, the entry always joins. A destination that is the origin itself takes a fresh tick.
pub(crate) fn commit_unicast<P: Participant>(
    origin: &P,
    dst: &P,
    q: &mut Queue<P::Entry>,
    slot: QueueSlot<P::Entry>,
    ev: P::Entry,
) -> core::result::Result<(u64, bool), Refused<P>> {
    if dst.is_shut_down() {
        return Err((slot, ev));
    }
    let tag = origin.id();
    let clock = dst.clock();
    if dst.id() == tag {
        let (key, wake) = q.commit_unstaged(clock, slot, tag, ev);
        return Ok((key.ts(), wake));
    }
    let c = origin.clock().tick_after(clock.get());
    let (key, wake) = q.commit_synthetic(clock, slot, c, tag, ev)?;
    Ok((key.ts(), wake))
}

/// One staged entry on a remote peer's queue.
///
/// Recorded by the transaction, or by the caller for entries staged with
/// [`Transaction::stage_detached`], which must outlive the commit.
pub(crate) struct Staged<P: Participant> {
    /// The destination, pinned until commit.
    dst: P::Pin,
    /// The entry's key while staging.
    key: QueueKey,
}

/// A transaction originating at one peer.
///
/// # Invariants
///
/// - Every entry in `local`, `first` and `remote` is staging on its queue and blocks everything
///   ordered after it there; each is committed by [`Transaction::commit_with`], which consumes
///   the transaction. Staging fails before it records anything, so every recorded entry gets
///   committed.
/// - Every remote destination stays pinned ([`Participant::Pin`]) from staging until its entry
///   is committed, so it is not torn down in between.
/// - `ts` is at least the clock every entry was staged at; the commit timestamp is a tick of the
///   origin's clock synced to `ts`, hence larger than every staging timestamp.
/// - If `early` is `Some(c)`, `c` is a tick of the origin's clock taken before anything was
///   staged, and every entry staged at `c - 1` on a remote queue whose clock was synced to `c` in
///   the same critical section; the commit timestamp is then `c`.
pub(crate) struct Transaction<P: Participant> {
    /// The origin; its clock provides the commit timestamp and its ID is the tag.
    origin: Arc<P>,
    /// The largest clock seen while staging.
    ts: u64,
    /// Entries staged on the origin's own queue.
    local: KVec<QueueKey>,
    /// The first entry staged on another peer's queue, kept apart so that a unicast allocates
    /// no list.
    first: Option<Staged<P>>,
    /// Further entries staged on other peers' queues; a destruction can have as many as the node
    /// has holders, hence vmalloc-backed beyond a few pages.
    remote: KVVec<Staged<P>>,
    /// The commit timestamp taken before staging ([`Self::timestamp_first`]), as long as every
    /// entry staged just below it.
    early: Option<u64>,
}

impl<P: Participant> Staged<P> {
    /// Commits the entry at `c` and wakes up the destination's readers if it became readable.
    fn commit(&self, c: u64) {
        let wake = self.dst.with_queue(|q| {
            q.commit_staged(self.dst.clock(), &self.key, c)
                .is_some_and(|(_, w)| w)
        });
        if wake {
            self.dst.wake();
        }
    }
}

impl<P: Participant> Transaction<P> {
    /// Starts a transaction originating at `origin`.
    pub(crate) fn new(origin: Arc<P>) -> Self {
        Transaction {
            origin,
            ts: 0,
            local: KVec::new(),
            first: None,
            remote: KVVec::new(),
            early: None,
        }
    }

    /// Takes the commit timestamp before anything is staged: a tick of the origin's clock synced
    /// to `hint`, a value the clock of every destination had before (read when its entry was
    /// charged), hence most likely above every destination's clock.
    ///
    /// Each entry then stages just below it where its destination's clock is still below it,
    /// syncing that clock to it in the same critical section ([`Queue::stage_at`]), so that the
    /// commit is one critical section per destination instead of two. If a destination's clock
    /// has passed it, that entry stages as usual and the commit takes a new timestamp, as
    /// without this call.
    pub(crate) fn timestamp_first(&mut self, hint: u64) {
        if self.first.is_some() || !self.local.is_empty() {
            // Entries staged already (a bug): they were not staged below it.
            kernel::warn_on!(true);
            return;
        }
        self.early = Some(self.origin.clock().tick_after(hint));
    }

    /// Returns the tag identifying the transaction on every queue.
    ///
    /// The origin's ID suffices: the commit timestamp is a tick of the origin's clock, so no two
    /// transactions share both timestamp and tag.
    pub(crate) fn tag(&self) -> u64 {
        self.origin.id()
    }

    /// Reserves room to record `n` entries on the origin's queue, so that
    /// [`Self::stage_local_slot`] cannot fail.
    pub(crate) fn reserve_local(&mut self, n: usize) -> Result {
        Ok(self.local.reserve(n, user_sized(GFP_KERNEL))?)
    }

    /// Stages `ev` on the origin's queue in the preallocated `slot`; the caller holds the
    /// origin's lock, gives its queue and reserved room with [`Self::reserve_local`].
    pub(crate) fn stage_local_slot(
        &mut self,
        queue: &mut Queue<P::Entry>,
        slot: QueueSlot<P::Entry>,
        ev: P::Entry,
    ) {
        // The origin's clock has passed an early timestamp.
        self.early = None;
        let clock = self.origin.clock();
        let key = queue.stage(clock, slot, self.tag(), self.ts, ev);
        self.ts = self.ts.max(key.clock());
        if self.local.push_within_capacity(key).is_err() {
            // Not reserved (a bug): commit right away rather than block the queue forever.
            kernel::warn_on!(true);
            let _ = queue.commit_staged(clock, &key, key.clock().saturating_add(2));
        }
    }

    /// Reserves room to record `n` entries on other peers' queues, so that
    /// [`Self::stage_remote_pinned`] cannot fail.
    pub(crate) fn reserve_remote(&mut self, n: usize) -> Result {
        let n = if self.first.is_none() {
            n.saturating_sub(1)
        } else {
            n
        };
        Ok(self.remote.reserve(n, user_sized(GFP_KERNEL))?)
    }

    /// Records a staged remote entry in the room reserved by [`Self::reserve_remote`]; gives it
    /// back if there is none.
    fn record_remote(&mut self, s: Staged<P>) -> core::result::Result<(), Staged<P>> {
        if self.first.is_none() {
            self.first = Some(s);
            return Ok(());
        }
        self.remote.push_within_capacity(s).map_err(|e| e.0)
    }

    /// Every entry staged on other peers' queues.
    fn remotes(&self) -> impl Iterator<Item = &Staged<P>> {
        Iterator::chain(self.first.iter(), self.remote.iter())
    }

    /// Stages `ev` in the preallocated `slot` on the queue of the peer pinned by `dst`; room was
    /// reserved with [`Self::reserve_remote`], so this cannot fail. Used past the point of no
    /// return of `SEND`, where every destination was pinned and every slot allocated up front.
    pub(crate) fn stage_remote_pinned(
        &mut self,
        dst: P::Pin,
        slot: QueueSlot<P::Entry>,
        ev: P::Entry,
    ) {
        let (tag, ts, early) = (self.tag(), self.ts, self.early);
        let (key, on_time) = dst.with_queue(|q| match early {
            Some(c) => q.stage_at(dst.clock(), slot, tag, c, ev),
            None => (q.stage(dst.clock(), slot, tag, ts, ev), false),
        });
        if !on_time {
            self.early = None;
        }
        self.ts = self.ts.max(key.clock());
        if let Err(s) = self.record_remote(Staged { dst, key }) {
            // Not reserved (a bug): commit right away rather than block the queue forever.
            kernel::warn_on!(true);
            let _ = s.dst.with_queue(|q| {
                q.commit_staged(s.dst.clock(), &s.key, s.key.clock().saturating_add(2))
            });
        }
    }

    /// Stages `ev` in the preallocated `slot` on the queue of the peer pinned by `dst`, and
    /// returns the record for the caller to keep, instead of recording it in the transaction:
    /// it needs no room in the transaction, so staging the notifications of a destruction
    /// allocates nothing. The caller hands every such record to
    /// [`Self::commit_with_detached`].
    pub(crate) fn stage_detached(
        &mut self,
        dst: P::Pin,
        slot: QueueSlot<P::Entry>,
        ev: P::Entry,
    ) -> Staged<P> {
        // Detached entries commit with a new timestamp.
        self.early = None;
        let (tag, ts) = (self.tag(), self.ts);
        let key = dst.with_queue(|q| q.stage(dst.clock(), slot, tag, ts, ev));
        self.ts = self.ts.max(key.clock());
        Staged { dst, key }
    }

    /// Acquires the commit timestamp, syncs every destination and commits every entry.
    /// Returns the commit timestamp.
    ///
    /// With a timestamp taken first at which every entry staged, every destination's clock
    /// has reached it already and nothing is visible yet: each entry commits at it, in one
    /// critical section per destination.
    pub(crate) fn commit(self) -> u64 {
        if let Some(c) = self.early {
            for s in self.remotes() {
                s.commit(c);
            }
            return c;
        }
        self.commit_with(|_| ())
    }

    /// Like [`Self::commit`], but calls `stamp` with the commit timestamp before anything is
    /// committed, so state that readers compare timestamps against (a node's destruction time)
    /// is in place before any entry of the transaction becomes visible.
    ///
    /// `stamp` runs under the origin's lock, in the critical section that acquires the
    /// timestamp: whoever takes that lock afterwards sees both the advanced clock and the
    /// stamped state, so no receive on the origin can fall between the two.
    pub(crate) fn commit_with(self, stamp: impl FnOnce(u64)) -> u64 {
        self.commit_with_detached(|_| (), stamp)
    }

    /// Like [`Self::commit_with`], and also commits the entries staged with
    /// [`Self::stage_detached`]: `detached` calls its argument on each of them, each time it is
    /// called.
    pub(crate) fn commit_with_detached(
        self,
        detached: impl Fn(&mut dyn FnMut(&Staged<P>)),
        stamp: impl FnOnce(u64),
    ) -> u64 {
        let ts = self.ts;
        let c = self.origin.with_queue(|_| {
            let c = self.origin.clock().tick_after(ts);
            stamp(c);
            c
        });
        // A unicast: syncing the only destination and committing there under one lock is the
        // same as doing it in two steps, as no other queue is involved.
        let mut any_detached = false;
        detached(&mut |_| any_detached = true);
        if self.local.is_empty() && self.remote.is_empty() && !any_detached {
            if let Some(s) = &self.first {
                let wake = s.dst.with_queue(|q| {
                    q.commit_staged(s.dst.clock(), &s.key, c)
                        .is_some_and(|(_, w)| w)
                });
                if wake {
                    s.dst.wake();
                }
            }
            return c;
        }
        // Nothing is visible before every destination's clock has passed `c`, so any reaction
        // to the transaction is ordered after it. A clock needs no lock to be raised.
        for s in self.remotes() {
            s.dst.clock().sync(c);
        }
        detached(&mut |s| {
            s.dst.clock().sync(c);
        });
        if !self.local.is_empty() {
            let wake = self.origin.with_queue(|q| {
                let mut wake = false;
                for key in self.local.iter() {
                    if let Some((_, w)) = q.commit_staged(self.origin.clock(), key, c) {
                        wake |= w;
                    }
                }
                wake
            });
            if wake {
                self.origin.wake();
            }
        }
        for s in self.remotes() {
            s.commit(c);
        }
        detached(&mut |s| s.commit(c));
        c
    }
}

#[kunit_tests(bus1_transaction)]
mod tests {
    use super::*;
    // The tests drive the protocol on real peers.
    use crate::peer::{
        Event,
        Node,
        Peer,
        PeerActive, //
    };

    /// The key of the front entry of `peer`'s queue, if it can be dequeued.
    fn front(peer: &Arc<Peer>) -> Option<QueueKey> {
        peer.lock().queue.front().map(|(k, _, _)| *k)
    }

    /// Stages a notification of `node` on `dst` in `tx`, the way `SEND` does.
    fn stage(tx: &mut Transaction<Peer>, dst: &Arc<Peer>, node: &Arc<Node>) -> Result {
        tx.reserve_remote(1)?;
        let pin = PeerActive::acquire(dst.clone())?;
        tx.stage_remote_pinned(
            pin,
            Queue::reserve(GFP_KERNEL)?,
            Event::Release(node.clone()),
        );
        Ok(())
    }

    #[test]
    fn unicast_commits_after_the_origin_clock() -> Result {
        let a = Peer::new()?;
        let b = Peer::new()?;
        let node = Node::new(b.owner().clone(), 1)?;
        // The origin's clock is ahead of the destination's.
        for _ in 0..5 {
            a.clock().tick();
        }
        let mut tx = Transaction::new(a.clone());
        stage(&mut tx, &b, &node)?;
        // Staged, the entry blocks the destination.
        assert!(front(&b).is_none());
        let c = tx.commit();
        let key = front(&b).ok_or(EINVAL)?;
        assert_eq!((key.ts(), key.tag()), (c, a.id()));
        assert!(c > 10);
        // Both clocks passed the commit: anything either queue commits later orders after it.
        assert!(a.clock().get() >= c && b.clock().get() >= c);
        // The entry names a node of `b`: take it out, or the two would keep each other alive.
        let popped = b.lock().queue.pop_front();
        drop(popped);
        Ok(())
    }

    /// Sends a notification of `node` from `a` to `b` alone, and returns the commit timestamp
    /// and the key it got on `b` (taken out of `b`'s queue, as the entry names a node of `b`).
    fn send_unicast(a: &Arc<Peer>, b: &Arc<Peer>, node: &Arc<Node>) -> Result<(u64, QueueKey)> {
        let c = unicast(
            &**a,
            b,
            Queue::reserve(GFP_KERNEL)?,
            Event::Release(node.clone()),
        )
        .ok_or(EINVAL)?;
        let popped = b.lock().queue.pop_front();
        let (key, ev, _) = popped.ok_or(EINVAL)?;
        drop(ev);
        Ok((c, key))
    }

    #[test]
    fn unicast_commits_above_both_clocks_in_one_section() -> Result {
        let a = Peer::new()?;
        let b = Peer::new()?;
        let node = Node::new(b.owner().clone(), 1)?;
        for _ in 0..5 {
            b.clock().tick();
        }
        // The origin (at 0) ticks past the receiver's clock (10), read in the critical section
        // that commits: the entry is committed directly at that tick.
        let (c, key) = send_unicast(&a, &b, &node)?;
        assert_eq!((key.ts(), key.tag(), c), (12, a.id(), 12));
        assert!(a.clock().get() >= c && b.clock().get() >= c);
        Ok(())
    }

    #[test]
    fn unicast_commits_above_the_origin_clock() -> Result {
        let a = Peer::new()?;
        let b = Peer::new()?;
        let node = Node::new(b.owner().clone(), 1)?;
        for _ in 0..5 {
            a.clock().tick();
        }
        // The receiver's clock (0) is behind the origin's (10): the entry orders after
        // everything the origin has seen, and the receiver's clock follows.
        let (c, key) = send_unicast(&a, &b, &node)?;
        assert_eq!((key.ts(), key.tag(), c), (12, a.id(), 12));
        assert_eq!((a.clock().get(), b.clock().get()), (12, 12));
        // A second one orders after the first on both clocks.
        let (c2, _) = send_unicast(&a, &b, &node)?;
        assert_eq!(c2, 14);
        Ok(())
    }

    #[test]
    fn unicast_to_a_shut_down_peer_queues_nothing() -> Result {
        let a = Peer::new()?;
        let b = Peer::new()?;
        let node = Node::new(b.owner().clone(), 1)?;
        b.disconnect()?;
        assert!(send_unicast(&a, &b, &node).is_err());
        assert!(b.lock().queue.is_empty());
        Ok(())
    }

    #[test]
    fn unicast_to_itself_takes_one_tick() -> Result {
        let a = Peer::new()?;
        let own = Node::new(a.owner().clone(), 1)?;
        a.clock().tick();
        let (c, key) = send_unicast(&a, &a, &own)?;
        assert_eq!((key.ts(), key.tag(), c), (4, a.id(), 4));
        Ok(())
    }

    #[test]
    fn crossed_multicasts_are_seen_in_one_order() -> Result {
        // Two transactions stage on the same two queues in opposite orders, interleaved, and
        // commit in either order: both queues must list them the same way.
        for first in 0..2 {
            let (x, y) = (Peer::new()?, Peer::new()?);
            let (o1, o2) = (Peer::new()?, Peer::new()?);
            let n = Node::new(x.owner().clone(), 1)?;
            let mut t1 = Transaction::new(o1.clone());
            let mut t2 = Transaction::new(o2.clone());
            stage(&mut t1, &x, &n)?;
            stage(&mut t2, &y, &n)?;
            stage(&mut t2, &x, &n)?;
            stage(&mut t1, &y, &n)?;
            let (c1, c2) = if first == 0 {
                let c1 = t1.commit();
                (c1, t2.commit())
            } else {
                let c2 = t2.commit();
                (t1.commit(), c2)
            };
            let order = |p: &Arc<Peer>| -> Result<[u64; 2]> {
                let mut q = p.lock();
                let a = q.queue.pop_front().ok_or(EINVAL)?.0;
                let b = q.queue.pop_front().ok_or(EINVAL)?.0;
                Ok([a.tag(), b.tag()])
            };
            let (ox, oy) = (order(&x)?, order(&y)?);
            assert_eq!(ox, oy);
            assert!(c1 != c2 || o1.id() != o2.id());
        }
        Ok(())
    }

    #[test]
    fn timestamp_first_commits_every_entry_at_it() -> Result {
        let a = Peer::new()?;
        let b = Peer::new()?;
        let c_peer = Peer::new()?;
        let node = Node::new(a.owner().clone(), 1)?;
        for _ in 0..5 {
            b.clock().tick();
        }
        // One lock at a time.
        let hint_b = b.clock().get();
        let hint = hint_b.max(c_peer.clock().get());
        let mut tx = Transaction::new(a.clone());
        tx.timestamp_first(hint);
        let early = tx.early.ok_or(EINVAL)?;
        assert!(early > hint);
        stage(&mut tx, &b, &node)?;
        stage(&mut tx, &c_peer, &node)?;
        // Staged below it, blocking, with both clocks already at it.
        assert_eq!(tx.early, Some(early));
        assert!(front(&b).is_none() && front(&c_peer).is_none());
        assert_eq!(b.clock().get(), early);
        assert_eq!(c_peer.clock().get(), early);
        assert_eq!(tx.commit(), early);
        for p in [&b, &c_peer] {
            let key = front(p).ok_or(EINVAL)?;
            assert_eq!((key.ts(), key.tag()), (early, a.id()));
        }
        assert!(a.clock().get() >= early);
        Ok(())
    }

    #[test]
    fn timestamp_first_falls_back_when_a_clock_passed_it() -> Result {
        let a = Peer::new()?;
        let b = Peer::new()?;
        let c_peer = Peer::new()?;
        let node = Node::new(a.owner().clone(), 1)?;
        // A stale hint: `b`'s clock moved on since it was read.
        let mut tx = Transaction::new(a.clone());
        tx.timestamp_first(0);
        let early = tx.early.ok_or(EINVAL)?;
        for _ in 0..5 {
            b.clock().tick();
        }
        stage(&mut tx, &c_peer, &node)?;
        assert_eq!(tx.early, Some(early));
        stage(&mut tx, &b, &node)?;
        assert_eq!(tx.early, None);
        // One later timestamp for both, above `b`'s clock.
        let c = tx.commit();
        assert!(c > 10 && c > early);
        for p in [&b, &c_peer] {
            let key = front(p).ok_or(EINVAL)?;
            assert_eq!((key.ts(), key.tag()), (c, a.id()));
            assert!(p.clock().get() >= c);
        }
        Ok(())
    }

    #[test]
    fn commit_with_stamps_before_anything_is_visible() -> Result {
        let a = Peer::new()?;
        let b = Peer::new()?;
        let c_peer = Peer::new()?;
        let node = Node::new(a.owner().clone(), 1)?;
        let mut tx = Transaction::new(a.clone());
        stage(&mut tx, &b, &node)?;
        stage(&mut tx, &c_peer, &node)?;
        // Under the origin's lock (so no other peer's lock may be taken here), with the clock
        // at `c` and nothing committed yet.
        let c = tx.commit_with(|c| node.set_destroyed(c));
        assert_eq!(node.destruction(), Some((c, a.id())));
        assert_eq!(front(&b).map(|k| k.ts()), Some(c));
        assert_eq!(front(&c_peer).map(|k| k.ts()), Some(c));
        Ok(())
    }
}
