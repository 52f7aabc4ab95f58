// SPDX-License-Identifier: GPL-2.0

//! A vector of plain values that keeps short contents inline.
//!
//! `SEND` reads its iovecs, destinations and per-destination errors into these, so the common
//! unicast with a few iovecs allocates nothing for them (like the kernel's on-stack
//! `UIO_FASTIOV` iovec array); longer contents go to a [`KVec`].

#![deny(unsafe_code)]

use core::ops::{
    Deref,
    DerefMut, //
};
use kernel::{
    alloc::{flags::__GFP_NOWARN, Flags},
    prelude::*,
};

/// `flags` for an array whose length user space chose (up to `INT_MAX` destinations, say): one
/// that is too large for the allocator fails with `ENOMEM`, the documented answer, without the
/// allocator's warning that would blame the kernel for it.
pub(crate) fn user_sized(flags: Flags) -> Flags {
    flags | __GFP_NOWARN
}

/// Up to `N` values inline, more on the heap.
///
/// # Invariants
///
/// In `Inline(buf, len)`, `len <= N` and `buf[..len]` are the contents.
pub(crate) enum SmallVec<T: Copy + Default, const N: usize> {
    /// No contents and no inline room yet: a vector a call never fills (the handles or errors
    /// of most `SEND`s) costs no zeroing of `N` values; the first value makes it `One`.
    Empty,
    /// Exactly one value, the common case (one destination, one iovec, one handle), which
    /// needs no zeroing of `N` values either; the second value makes it `Inline`.
    One(T),
    /// Short contents, in place.
    Inline([T; N], usize),
    /// Long contents.
    Heap(KVec<T>),
}

impl<T: Copy + Default, const N: usize> SmallVec<T, N> {
    /// Returns an empty vector with the inline room only; allocates nothing.
    pub(crate) fn new() -> Self {
        Self::Empty
    }

    /// Returns an empty vector with room for `n` values; allocates only if `n > N`.
    pub(crate) fn with_capacity(n: usize) -> Result<Self> {
        let mut v = Self::new();
        v.reserve(n)?;
        Ok(v)
    }

    /// Makes room for `n` values in an empty vector; allocates only if `n > N`. Filling a
    /// vector the caller made with [`SmallVec::new`] this way builds it in place: the inline
    /// contents are never moved.
    pub(crate) fn reserve(&mut self, n: usize) -> Result {
        if n > N && self.is_empty() {
            *self = Self::Heap(KVec::with_capacity(n, user_sized(GFP_KERNEL))?);
        }
        Ok(())
    }

    /// Makes an empty vector hold `n` default values, allocating only if `n > N`, and returns
    /// them for the caller to overwrite in place (with one copy from user space, say).
    pub(crate) fn fill_default(&mut self, n: usize) -> Result<&mut [T]> {
        if !self.is_empty() {
            return Err(EINVAL);
        }
        if n == 0 {
            return Ok(&mut []);
        }
        *self = if n > N {
            Self::Heap(KVec::from_elem(T::default(), n, user_sized(GFP_KERNEL))?)
        } else if n == 1 {
            Self::One(T::default())
        } else {
            Self::Inline([T::default(); N], n)
        };
        Ok(&mut **self)
    }

    /// Appends `v`; allocates only once the inline room is used up.
    #[inline]
    pub(crate) fn push(&mut self, v: T) -> Result {
        match self {
            Self::Empty => {
                *self = Self::One(v);
                Ok(())
            }
            Self::One(first) => {
                let first = *first;
                *self = Self::Inline([T::default(); N], 0);
                self.push(first)?;
                self.push(v)
            }
            Self::Inline(buf, len) => {
                if let Some(slot) = buf.get_mut(*len) {
                    *slot = v;
                    *len += 1;
                    return Ok(());
                }
                let mut heap = KVec::with_capacity(N.saturating_mul(2).max(1), GFP_KERNEL)?;
                heap.extend_from_slice(buf, GFP_KERNEL)?;
                heap.push(v, GFP_KERNEL)?;
                *self = Self::Heap(heap);
                Ok(())
            }
            Self::Heap(heap) => Ok(heap.push(v, user_sized(GFP_KERNEL))?),
        }
    }

    /// Whether the contents are on the heap.
    #[cfg(CONFIG_KUNIT)]
    fn spilled(&self) -> bool {
        matches!(self, Self::Heap(_))
    }
}

impl<T: Copy + Default, const N: usize> Deref for SmallVec<T, N> {
    type Target = [T];

    #[inline(always)]
    fn deref(&self) -> &[T] {
        match self {
            Self::Empty => &[],
            Self::One(v) => core::slice::from_ref(v),
            // By the type invariant `len <= N`; an empty slice would only hide a bug.
            Self::Inline(buf, len) => buf.get(..*len).unwrap_or(&[]),
            Self::Heap(heap) => heap,
        }
    }
}

impl<T: Copy + Default, const N: usize> DerefMut for SmallVec<T, N> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            Self::Empty => &mut [],
            Self::One(v) => core::slice::from_mut(v),
            // As in `deref`.
            Self::Inline(buf, len) => buf.get_mut(..*len).unwrap_or(&mut []),
            Self::Heap(heap) => heap,
        }
    }
}

#[kunit_tests(bus1_smallvec)]
mod tests {
    use super::*;

    #[test]
    fn inline_then_spill() -> Result {
        let mut v: SmallVec<u64, 4> = SmallVec::with_capacity(2)?;
        assert!(v.is_empty());
        for i in 0..4 {
            v.push(i)?;
        }
        assert!(!v.spilled());
        assert_eq!(&v[..], &[0, 1, 2, 3]);
        // The fifth value moves everything to the heap, in order.
        v.push(4)?;
        assert!(v.spilled());
        assert_eq!(&v[..], &[0, 1, 2, 3, 4]);
        for i in 5..100 {
            v.push(i)?;
        }
        assert_eq!(v.len(), 100);
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
        Ok(())
    }

    #[test]
    fn filled_in_place() -> Result {
        let mut v: SmallVec<u64, 4> = SmallVec::new();
        for (x, y) in v.fill_default(3)?.iter_mut().zip(7..) {
            *x = y;
        }
        assert!(!v.spilled());
        assert_eq!(&v[..], &[7, 8, 9]);
        // Only an empty vector is filled.
        assert!(v.fill_default(1).is_err());
        let mut w: SmallVec<u64, 4> = SmallVec::new();
        assert_eq!(w.fill_default(6)?.len(), 6);
        assert!(w.spilled());
        assert_eq!(&w[..], &[0; 6]);
        let mut e: SmallVec<u64, 4> = SmallVec::new();
        assert!(e.fill_default(0)?.is_empty());
        assert!(e.is_empty());
        Ok(())
    }

    #[test]
    fn one_value_needs_no_inline_room() -> Result {
        let mut v: SmallVec<u64, 4> = SmallVec::new();
        v.push(7)?;
        assert!(matches!(v, SmallVec::One(7)));
        v[0] = 8;
        assert_eq!(&v[..], &[8]);
        // The second value moves the first into the inline room, in order.
        v.push(9)?;
        assert!(matches!(v, SmallVec::Inline(_, 2)));
        assert_eq!(&v[..], &[8, 9]);
        let mut w: SmallVec<u64, 4> = SmallVec::new();
        w.fill_default(1)?[0] = 5;
        assert!(matches!(w, SmallVec::One(5)));
        assert_eq!(&w[..], &[5]);
        Ok(())
    }

    #[test]
    fn large_capacity_starts_on_heap() -> Result {
        let v: SmallVec<u64, 4> = SmallVec::with_capacity(5)?;
        assert!(v.spilled());
        assert!(v.is_empty());
        let w: SmallVec<u64, 4> = SmallVec::with_capacity(4)?;
        assert!(!w.spilled());
        Ok(())
    }
}
