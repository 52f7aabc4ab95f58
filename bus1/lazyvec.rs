// SPDX-License-Identifier: GPL-2.0

//! A vector that calls the allocator only once it holds something.
//!
//! Dropping a [`KVec`] always calls its allocator, even when the vector never allocated
//! (`krealloc(NULL, 0)`, about 70 instructions with the wrappers). The per-message paths keep
//! several vectors that are empty for almost every message (carried handles and files, the
//! further copies of a multicast, the reservations `RECV` makes for carried handles), so they
//! use this instead: empty, it is a `None` that costs nothing to make or drop.

#![deny(unsafe_code)]

use kernel::{alloc::Flags, prelude::*};

/// A [`KVec`] that exists only once it has room for something.
pub(crate) struct LazyVec<T>(Option<KVec<T>>);

impl<T> LazyVec<T> {
    /// Returns an empty vector; allocates nothing.
    pub(crate) const fn new() -> Self {
        Self(None)
    }

    /// Returns an empty vector with room for `n` values; allocates only if `n > 0`. Inline:
    /// `SEND` asks for room for the destinations after the first, none for a unicast.
    #[inline(always)]
    pub(crate) fn with_capacity(n: usize, flags: Flags) -> Result<Self> {
        if n == 0 {
            return Ok(Self::new());
        }
        Ok(Self(Some(KVec::with_capacity(n, flags)?)))
    }

    /// Makes room for `n` more values, allocating as [`KVec::reserve`] does.
    pub(crate) fn reserve(&mut self, n: usize, flags: Flags) -> Result {
        match &mut self.0 {
            Some(vec) => Ok(vec.reserve(n, flags)?),
            None => {
                *self = Self::with_capacity(n, flags)?;
                Ok(())
            }
        }
    }

    /// Appends `v`, allocating as [`KVec::push`] does.
    pub(crate) fn push(&mut self, v: T, flags: Flags) -> Result {
        match &mut self.0 {
            Some(vec) => Ok(vec.push(v, flags)?),
            None => {
                let mut vec = KVec::with_capacity(1, flags)?;
                vec.push(v, flags)?;
                self.0 = Some(vec);
                Ok(())
            }
        }
    }

    /// Appends `v` in the room [`LazyVec::with_capacity`] made, without calling the allocator;
    /// hands `v` back if there is none left.
    pub(crate) fn push_within_capacity(&mut self, v: T) -> core::result::Result<(), T> {
        match &mut self.0 {
            Some(vec) => vec.push_within_capacity(v).map_err(|e| e.0),
            None => Err(v),
        }
    }

    /// Removes and returns the last value.
    pub(crate) fn pop(&mut self) -> Option<T> {
        self.0.as_mut()?.pop()
    }

    /// The number of values.
    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |v| v.len())
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values, in order.
    pub(crate) fn iter(&self) -> core::slice::Iter<'_, T> {
        self.0.as_deref().unwrap_or(&[]).iter()
    }

    /// Takes every value out, in order, leaving the vector empty.
    pub(crate) fn take_all(&mut self) -> impl Iterator<Item = T> {
        self.0.take().into_iter().flatten()
    }

    /// The values as a [`KVec`], which allocates nothing if there are none.
    pub(crate) fn into_kvec(self) -> KVec<T> {
        self.0.unwrap_or_default()
    }
}

#[kunit_tests(bus1_lazyvec)]
mod tests {
    use super::*;

    #[test]
    fn empty_until_pushed() -> Result {
        let mut v: LazyVec<u64> = LazyVec::with_capacity(0, GFP_KERNEL)?;
        assert!(v.0.is_none());
        assert!(v.is_empty());
        assert_eq!(v.pop(), None);
        assert_eq!(v.take_all().count(), 0);
        for i in 0..3 {
            v.push(i, GFP_KERNEL)?;
        }
        assert_eq!(v.len(), 3);
        assert!(v.iter().copied().eq(0..3));
        assert_eq!(v.pop(), Some(2));
        assert!(v.take_all().eq(0..2));
        assert!(v.0.is_none());
        // Room made by `reserve` is used without the allocator.
        let mut r: LazyVec<u64> = LazyVec::new();
        r.reserve(0, GFP_KERNEL)?;
        assert!(r.0.is_none());
        r.reserve(1, GFP_KERNEL)?;
        assert_eq!(r.push_within_capacity(7), Ok(()));
        assert_eq!(r.push_within_capacity(8), Err(8));
        r.reserve(1, GFP_KERNEL)?;
        assert_eq!(r.push_within_capacity(8), Ok(()));
        assert!(r.iter().copied().eq(7..9));
        let w: LazyVec<u64> = LazyVec::with_capacity(4, GFP_KERNEL)?;
        assert!(w.0.is_some());
        assert!(w.is_empty());
        assert!(w.into_kvec().is_empty());
        Ok(())
    }

    #[test]
    fn within_capacity_only() -> Result {
        // No room made: the value comes back, and nothing was allocated.
        let mut v: LazyVec<u64> = LazyVec::with_capacity(0, GFP_KERNEL)?;
        assert_eq!(v.push_within_capacity(1), Err(1));
        assert!(v.0.is_none());
        let mut w: LazyVec<u64> = LazyVec::with_capacity(2, GFP_KERNEL)?;
        assert_eq!(w.push_within_capacity(1), Ok(()));
        assert_eq!(w.push_within_capacity(2), Ok(()));
        assert_eq!(w.push_within_capacity(3), Err(3));
        assert!(w.iter().copied().eq(1..3));
        Ok(())
    }
}
