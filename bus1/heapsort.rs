// SPDX-License-Identifier: GPL-2.0

//! Sorting a slice in place: a heapsort, in at most about `2 n log2 n` comparisons, allocating
//! nothing.
//!
//! `core`'s `sort_unstable()` would do as well, but its small-sort path ends in a call to
//! `core::slice::sort::shared::smallsort::panic_on_ord_violation()`, which the objtool of Linux
//! 7.2 does not list among Rust's functions that do not return: each of its instances makes an
//! `-O2` build of the module warn that a function "falls through to next function". This has
//! no such call: its only panics are `core`'s bounds checks, which objtool knows, and which the
//! loop conditions keep from firing.

#![deny(unsafe_code)]

use kernel::prelude::*;

/// Sorts `v` in ascending order. Not stable: equal elements may end up in any order.
pub(crate) fn sort<T: Ord>(v: &mut [T]) {
    let n = v.len();
    // Heapify: every parent node, from the last one up.
    for root in (0..n / 2).rev() {
        sift_down(v, root, n);
    }
    // Move the largest element behind the heap, which shrinks by one each time.
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
    }
}

/// Moves `v[root]` down the max-heap `v[..end]` until neither child is larger.
fn sift_down<T: Ord>(v: &mut [T], mut root: usize, end: usize) {
    let end = end.min(v.len());
    loop {
        // `root < end <= v.len() <= isize::MAX`, so this cannot overflow.
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && v[child] < v[child + 1] {
            child += 1;
        }
        if v[root] >= v[child] {
            return;
        }
        v.swap(root, child);
        root = child;
    }
}

#[kunit_tests(bus1_heapsort)]
mod tests {
    use super::*;

    /// Sorts a copy of `v` by insertion, the obviously correct way.
    fn insertion_sorted(v: &[(u8, u8)]) -> Result<KVec<(u8, u8)>> {
        let mut out = KVec::with_capacity(v.len(), GFP_KERNEL)?;
        for &x in v {
            let at = out.iter().position(|&y| y > x).unwrap_or(out.len());
            out.push(x, GFP_KERNEL)?;
            if let Some(tail) = out.get_mut(at..) {
                tail.rotate_right(1);
            }
        }
        Ok(out)
    }

    #[test]
    fn sorts_as_insertion_sorts() -> Result {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        // Every length up to 40, keys from a small range so that most inputs repeat some; the
        // second half of each pair tells equal keys apart, so the whole order is fixed.
        for n in 0..=40usize {
            for round in 0..8 {
                let mut v = KVec::with_capacity(n, GFP_KERNEL)?;
                for i in 0..n {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    // CAST: Both fit in a byte.
                    let key = (seed % (1 + (n as u64) / 2 + round)) as u8;
                    v.push((key, i as u8), GFP_KERNEL)?;
                }
                // Sorted and reverse-sorted inputs too.
                if round < 2 {
                    let mut s = insertion_sorted(&v)?;
                    if round == 1 {
                        s.reverse();
                    }
                    v = s;
                }
                let want = insertion_sorted(&v)?;
                sort(&mut v);
                assert_eq!(&v[..], &want[..]);
            }
        }
        Ok(())
    }
}
