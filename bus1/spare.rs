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
use kernel::{new_spinlock, prelude::*, sync::SpinLock};

/// At most one spare pair of a slot `S` and the memory of an `M`.
///
/// The lock is innermost: nothing is taken, allocated or freed under it (a pair that does not
/// fit is dropped after the lock was released).
#[pin_data]
pub(crate) struct Spare<S, M> {
    #[pin]
    pair: SpinLock<Option<(S, KBox<MaybeUninit<M>>)>>,
}

impl<S: Unpin, M> Spare<S, M> {
    /// Returns an initialiser for an empty spare.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Spare {
            pair <- new_spinlock!(None, "Spare::pair"),
        })
    }

    /// Takes the spare pair, if there is one.
    pub(crate) fn take(&self) -> Option<(S, KBox<MaybeUninit<M>>)> {
        self.pair.lock().take()
    }

    /// Keeps `slot` and `room` as the spare pair if there is none yet; drops them otherwise.
    pub(crate) fn give(&self, slot: S, room: KBox<MaybeUninit<M>>) {
        let mut pair = self.pair.lock();
        if pair.is_none() {
            *pair = Some((slot, room));
            return;
        }
        drop(pair);
        drop((slot, room));
    }
}

#[kunit_tests(bus1_spare)]
mod tests {
    use super::*;
    use kernel::sync::Arc;

    /// A slot that counts its drops.
    struct Counted(Arc<SpinLock<u32>>);

    impl Drop for Counted {
        fn drop(&mut self) {
            *self.0.lock() += 1;
        }
    }

    #[test]
    fn keeps_one_pair_and_drops_the_rest() -> Result {
        let drops = Arc::pin_init(new_spinlock!(0u32), GFP_KERNEL)?;
        let spare = KBox::pin_init(Spare::<Counted, [u64; 4]>::new(), GFP_KERNEL)?;
        assert!(spare.take().is_none());

        let room = KBox::<[u64; 4]>::new_uninit(GFP_KERNEL)?;
        let kept = core::ptr::from_ref(&*room).cast::<u8>();
        spare.give(Counted(drops.clone()), room);
        // A second pair while one is kept: dropped, the first stays.
        spare.give(
            Counted(drops.clone()),
            KBox::<[u64; 4]>::new_uninit(GFP_KERNEL)?,
        );
        assert_eq!(*drops.lock(), 1);

        // The kept pair comes back, the same memory, and only once.
        let (slot, room) = spare.take().ok_or(EINVAL)?;
        assert_eq!(core::ptr::from_ref(&*room).cast::<u8>(), kept);
        assert!(spare.take().is_none());
        drop(slot);
        assert_eq!(*drops.lock(), 2);

        // A pair kept when the spare goes is dropped with it.
        spare.give(Counted(drops.clone()), room);
        drop(spare);
        assert_eq!(*drops.lock(), 3);
        Ok(())
    }
}
