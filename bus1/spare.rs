// SPDX-License-Identifier: GPL-2.0

//! The memory of the last message a peer received, kept for the next message to it.
//!
//! Every copy of a message costs its receiver two allocations, the queue entry and the message
//! itself, which `RECV` frees again: about a quarter of the kernel instructions of a small
//! message went to the allocator. A peer keeps the pair of the message it received last and the
//! next sender to it takes the pair instead of allocating. Both were allocated for this
//! receiver, charged to its memory cgroup, and are reused only for it, so the charge stays where
//! it belongs. One pair per peer at most: the memory kept is bounded, and it is freed when the
//! peer is disconnected.

#![deny(unsafe_code)]

use core::mem::MaybeUninit;
use kernel::prelude::*;

/// At most one spare pair of a slot `S` and the memory of an `M`.
///
/// It has no lock of its own: it lives in its peer's lock-protected state, where a sender
/// takes it in the critical section that charges the peer, and `RECV` keeps it in the one that
/// dequeues the message.
pub(crate) struct Spare<S, M> {
    pair: Option<(S, KBox<MaybeUninit<M>>)>,
}

impl<S, M> Spare<S, M> {
    /// Returns an empty spare.
    pub(crate) fn new() -> Self {
        Spare { pair: None }
    }

    /// Takes the spare pair, if there is one.
    pub(crate) fn take(&mut self) -> Option<(S, KBox<MaybeUninit<M>>)> {
        self.pair.take()
    }

    /// Keeps `slot` and `room` as the spare pair if there is none yet; returns them otherwise,
    /// for the caller to free once it released its lock.
    #[must_use]
    pub(crate) fn give(
        &mut self,
        slot: S,
        room: KBox<MaybeUninit<M>>,
    ) -> Option<(S, KBox<MaybeUninit<M>>)> {
        if self.pair.is_some() {
            return Some((slot, room));
        }
        self.pair = Some((slot, room));
        None
    }
}

#[kunit_tests(bus1_spare)]
mod tests {
    use super::*;
    use kernel::{
        new_spinlock,
        sync::{Arc, SpinLock},
    };

    /// A slot that counts its drops.
    struct Counted(Arc<SpinLock<u32>>);

    impl Drop for Counted {
        fn drop(&mut self) {
            *self.0.lock() += 1;
        }
    }

    #[test]
    fn keeps_one_pair_and_hands_back_the_rest() -> Result {
        let drops = Arc::pin_init(new_spinlock!(0u32), GFP_KERNEL)?;
        let mut spare = Spare::<Counted, [u64; 4]>::new();
        assert!(spare.take().is_none());

        let room = KBox::<[u64; 4]>::new_uninit(GFP_KERNEL)?;
        let kept = core::ptr::from_ref(&*room).cast::<u8>();
        assert!(spare.give(Counted(drops.clone()), room).is_none());
        // A second pair while one is kept: handed back, the first stays.
        let back = spare.give(
            Counted(drops.clone()),
            KBox::<[u64; 4]>::new_uninit(GFP_KERNEL)?,
        );
        assert!(back.is_some());
        drop(back);
        assert_eq!(*drops.lock(), 1);

        // The kept pair comes back, the same memory, and only once.
        let (slot, room) = spare.take().ok_or(EINVAL)?;
        assert_eq!(core::ptr::from_ref(&*room).cast::<u8>(), kept);
        assert!(spare.take().is_none());
        drop(slot);
        assert_eq!(*drops.lock(), 2);

        // A pair kept when the spare goes is dropped with it.
        assert!(spare.give(Counted(drops.clone()), room).is_none());
        drop(spare);
        assert_eq!(*drops.lock(), 3);
        Ok(())
    }
}
