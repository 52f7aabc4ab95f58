// SPDX-License-Identifier: GPL-2.0

//! An `&Arc<T>` obtained from an [`ArcBorrow`] without touching the reference count.
//!
//! File operations get the file's object as an [`ArcBorrow`]; the operations they call take
//! `&Arc<T>` because some of them keep a reference (a clone). Converting the borrow into an
//! `Arc` with `Arc::from` costs an increment and a decrement of the count on every call, two
//! atomic read-modify-writes on one shared cache line; [`ArcRef`] costs none.

use core::{
    marker::PhantomData,
    mem::ManuallyDrop,
    ops::Deref, //
};
use kernel::{
    prelude::kunit_tests,
    sync::{
        Arc,
        ArcBorrow, //
    },
};

/// The [`Arc`] behind an [`ArcBorrow`], usable as `&Arc<T>` for the borrow's lifetime `'a`.
///
/// Cloning it takes a count of its own, as cloning any `Arc` does.
///
/// # Invariants
///
/// `arc` owns no reference count: it is never dropped, and the count that the
/// `ArcBorrow<'a, T>` it was made from relies on keeps the object alive for `'a`.
pub(crate) struct ArcRef<'a, T> {
    arc: ManuallyDrop<Arc<T>>,
    _borrow: PhantomData<ArcBorrow<'a, T>>,
}

impl<'a, T> ArcRef<'a, T> {
    /// Returns the `Arc` that `b` borrows.
    #[inline]
    pub(crate) fn new(b: ArcBorrow<'a, T>) -> Self {
        let ptr: *const T = &*b;
        // The `Arc` made below does not take ownership of a count: it is wrapped in
        // `ManuallyDrop` and never dropped, so no count is given back twice, and it is only
        // reachable through `&self`, bounded by `'a`, for which the borrow guarantees that the
        // count does not reach zero.
        // SAFETY: An `ArcBorrow` is only made from an `Arc` (or its raw pointer from
        // `Arc::into_raw` or `Arc::as_ptr`), so `ptr` points to the data of an `Arc` allocation,
        // as `Arc::from_raw` requires; the count is never given back (see above).
        let arc = unsafe { Arc::from_raw(ptr) };
        let arc = ManuallyDrop::new(arc);
        // INVARIANT: `arc` is never dropped, and lives no longer than `'a`.
        ArcRef {
            arc,
            _borrow: PhantomData,
        }
    }
}

impl<T> Deref for ArcRef<'_, T> {
    type Target = Arc<T>;

    #[inline]
    fn deref(&self) -> &Arc<T> {
        &self.arc
    }
}

#[kunit_tests(bus1_arc_ref)]
mod tests {
    use super::*;
    use kernel::prelude::*;

    #[test]
    fn borrows_without_a_count() -> Result {
        let a = Arc::new(7u64, GFP_KERNEL)?;
        {
            let r = ArcRef::new(a.as_arc_borrow());
            assert!(Arc::ptr_eq(&r, &a));
            assert_eq!(**r, 7);
            // A clone through it takes and gives back a count of its own.
            let c = Arc::clone(&r);
            assert!(Arc::ptr_eq(&c, &a));
        }
        // Neither the borrow nor the clone left a count behind: `a` is the only reference.
        assert!(Arc::into_unique_or_drop(a).is_some());
        Ok(())
    }
}
