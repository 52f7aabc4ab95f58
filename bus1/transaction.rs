// SPDX-License-Identifier: GPL-2.0

//! Multi-queue transactions: staging, syncing and committing entries on several peers' queues
//! so that all of them get the same commit timestamp (see `queue.rs` for the protocol).
//!
//! A transaction never holds two peers' locks at once: each step takes the lock of exactly one
//! destination, and every destination stays pinned (by an active reference) from staging until
//! its entry is committed, so it cannot be torn down in between.

#![deny(unsafe_code)]

use crate::{
    peer::{
        Event,
        Peer,
        PeerActive, //
    },
    queue::{
        Queue,
        QueueKey,
        QueueSlot, //
    },
};
use kernel::{
    prelude::*,
    sync::Arc, //
};

/// One staged entry on a remote peer's queue.
struct Staged {
    /// The destination, pinned until commit.
    dst: PeerActive,
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
/// - Every remote destination stays pinned ([`PeerActive`]) from staging until its entry is
///   committed, so it is not torn down in between.
/// - `ts` is at least the clock every entry was staged at; the commit timestamp is a tick of the
///   origin's clock synced to `ts`, hence larger than every staging timestamp.
pub(crate) struct Transaction {
    /// The origin; its clock provides the commit timestamp and its ID is the tag.
    origin: Arc<Peer>,
    /// The largest clock seen while staging.
    ts: u64,
    /// Entries staged on the origin's own queue.
    local: KVec<QueueKey>,
    /// The first entry staged on another peer's queue, kept apart so that a unicast allocates
    /// no list.
    first: Option<Staged>,
    /// Further entries staged on other peers' queues; a destruction can have as many as the node
    /// has holders, hence vmalloc-backed beyond a few pages.
    remote: KVVec<Staged>,
}

impl Transaction {
    /// Starts a transaction originating at `origin`.
    pub(crate) fn new(origin: Arc<Peer>) -> Self {
        Transaction {
            origin,
            ts: 0,
            local: KVec::new(),
            first: None,
            remote: KVVec::new(),
        }
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
        Ok(self.local.reserve(n, GFP_KERNEL)?)
    }

    /// Stages `ev` on the origin's queue in the preallocated `slot`; the caller holds the
    /// origin's lock, gives its queue and reserved room with [`Self::reserve_local`].
    pub(crate) fn stage_local_slot(
        &mut self,
        queue: &mut Queue<Event>,
        slot: QueueSlot<Event>,
        ev: Event,
    ) {
        let key = queue.stage(slot, self.tag(), self.ts, ev);
        self.ts = self.ts.max(key.clock());
        if self.local.push_within_capacity(key).is_err() {
            // Not reserved (a bug): commit right away rather than block the queue forever.
            kernel::warn_on!(true);
            let _ = queue.commit_staged(&key, key.clock().saturating_add(2));
        }
    }

    /// Stages `ev` in the preallocated `slot` on the queue of `dst`, in room reserved with
    /// [`Self::reserve_remote`]. Fails (with no effect) only if `dst` is shutting down, which
    /// then needs no notification.
    pub(crate) fn stage_remote_slot(
        &mut self,
        dst: &Arc<Peer>,
        slot: QueueSlot<Event>,
        ev: Event,
    ) -> Result {
        let pin = PeerActive::acquire(dst.clone())?;
        self.stage_remote_pinned(pin, slot, ev);
        Ok(())
    }

    /// Reserves room to record `n` entries on other peers' queues, so that
    /// [`Self::stage_remote_pinned`] cannot fail.
    pub(crate) fn reserve_remote(&mut self, n: usize) -> Result {
        let n = if self.first.is_none() {
            n.saturating_sub(1)
        } else {
            n
        };
        Ok(self.remote.reserve(n, GFP_KERNEL)?)
    }

    /// Records a staged remote entry in the room reserved by [`Self::reserve_remote`]; gives it
    /// back if there is none.
    fn record_remote(&mut self, s: Staged) -> core::result::Result<(), Staged> {
        if self.first.is_none() {
            self.first = Some(s);
            return Ok(());
        }
        self.remote.push_within_capacity(s).map_err(|e| e.0)
    }

    /// Every entry staged on other peers' queues.
    fn remotes(&self) -> impl Iterator<Item = &Staged> {
        Iterator::chain(self.first.iter(), self.remote.iter())
    }

    /// Stages `ev` in the preallocated `slot` on the queue of the peer pinned by `dst`; room was
    /// reserved with [`Self::reserve_remote`], so this cannot fail. Used past the point of no
    /// return of `SEND`, where every destination was pinned and every slot allocated up front.
    pub(crate) fn stage_remote_pinned(
        &mut self,
        dst: PeerActive,
        slot: QueueSlot<Event>,
        ev: Event,
    ) {
        let tag = self.tag();
        let key = dst.peer().lock().queue.stage(slot, tag, self.ts, ev);
        self.ts = self.ts.max(key.clock());
        if let Err(s) = self.record_remote(Staged { dst, key }) {
            // Not reserved (a bug): commit right away rather than block the queue forever.
            kernel::warn_on!(true);
            let _ = s
                .dst
                .peer()
                .lock()
                .queue
                .commit_staged(&s.key, s.key.clock().saturating_add(2));
        }
    }

    /// Acquires the commit timestamp, syncs every destination and commits every entry.
    /// Returns the commit timestamp.
    pub(crate) fn commit(self) -> u64 {
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
        let c = {
            let mut inner = self.origin.lock();
            inner.queue.sync(self.ts);
            let c = inner.queue.tick();
            stamp(c);
            c
        };
        // A unicast: syncing the only destination and committing there under one lock is the
        // same as doing it in two steps, as no other queue is involved.
        if self.local.is_empty() && self.remote.is_empty() {
            if let Some(s) = &self.first {
                let peer = s.dst.peer();
                let wake = {
                    let mut inner = peer.lock();
                    inner.queue.sync(c);
                    inner.queue.commit_staged(&s.key, c).is_some_and(|(_, w)| w)
                };
                if wake {
                    peer.wake();
                }
            }
            return c;
        }
        // Nothing is visible before every destination's clock has passed `c`, so any reaction
        // to the transaction is ordered after it.
        for s in self.remotes() {
            s.dst.peer().lock().queue.sync(c);
        }
        if !self.local.is_empty() {
            let mut wake = false;
            {
                let mut inner = self.origin.lock();
                for key in self.local.iter() {
                    if let Some((_, w)) = inner.queue.commit_staged(key, c) {
                        wake |= w;
                    }
                }
            }
            if wake {
                self.origin.wake();
            }
        }
        for s in self.remotes() {
            let peer = s.dst.peer();
            let wake = peer
                .lock()
                .queue
                .commit_staged(&s.key, c)
                .is_some_and(|(_, w)| w);
            if wake {
                peer.wake();
            }
        }
        c
    }
}
