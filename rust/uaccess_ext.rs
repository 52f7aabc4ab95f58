// SPDX-License-Identifier: GPL-2.0

//! Small reads and writes of user memory: one integer with `get_user()`, a small argument struct
//! a word at a time.
//!
//! The `kernel` crate reads user memory through [`UserSliceReader`], which calls
//! `_copy_from_user()`: an out-of-line call with its fault-injection and instrumentation checks
//! and a string copy (`rep movsb` on x86), however small the value. An ioctl argument that is a
//! single integer (an ID, an offset, a timeout) is what C drivers read with `get_user()`, a single
//! access with its fault fixup; [`UserPtrExt::get`] is that for Rust. An argument struct of a few
//! words is what C reads with `unsafe_get_user()` in a user access scope (`kernel/rseq.c`):
//! one access per word, no string copy and its start-up; [`UserPtrExt::read_into`] and
//! [`UserPtrExt::write_from`] are that for Rust.
//!
//! C header: [`include/linux/uaccess.h`](srctree/include/linux/uaccess.h).
//!
//! [`UserSliceReader`]: kernel::uaccess::UserSliceReader

use core::{
    ffi::{
        c_int,
        c_void, //
    },
    mem::{
        align_of,
        size_of,
        MaybeUninit, //
    },
};
use kernel::{
    prelude::*,
    transmute::{
        AsBytes,
        FromBytes, //
    },
    uaccess::UserPtr, //
};

extern "C" {
    fn rust_bus1_get_user_u8(dst: *mut u8, src: *const c_void) -> c_int;
    fn rust_bus1_get_user_u64(dst: *mut u64, src: *const c_void) -> c_int;
    fn rust_bus1_read_user_words(
        dst: *mut u64,
        src: *const c_void,
        words: usize,
        len: usize,
    ) -> c_int;
    fn rust_bus1_write_user_words(dst: *mut c_void, src: *const u64, words: usize) -> c_int;
}

/// The largest struct copied a word at a time; a larger one is better served by the string copy.
const WORDS_MAX: usize = 32;

/// The number of 64-bit words of `T`, which must be whole words, word-aligned and at most
/// [`WORDS_MAX`] of them (evaluated at compile time, so a `T` that is not fails the build).
const fn words_of<T>() -> usize {
    assert!(size_of::<T>() % size_of::<u64>() == 0);
    assert!(align_of::<T>() % align_of::<u64>() == 0);
    assert!(size_of::<T>() <= WORDS_MAX * size_of::<u64>());
    size_of::<T>() / size_of::<u64>()
}

mod private {
    pub(crate) trait Sealed {}
}

/// An integer type that `get_user()` reads in one access.
///
/// Sealed: only the types with a C helper implement it.
pub(crate) trait GetUser: Sized + Default + private::Sealed {
    /// Reads `Self` at `src` into `dst` with `get_user()`; `0` or `-EFAULT`.
    ///
    /// # Safety
    ///
    /// `dst` must be valid for writing a `Self`.
    #[doc(hidden)]
    unsafe fn get_user(dst: *mut Self, src: *const c_void) -> c_int;
}

macro_rules! impl_get_user {
    ($($t:ty => $helper:ident),* $(,)?) => {$(
        impl private::Sealed for $t {}

        impl GetUser for $t {
            unsafe fn get_user(dst: *mut Self, src: *const c_void) -> c_int {
                // SAFETY: `dst` is valid for writing by the caller's guarantee; `src` is a user
                // address, which the helper checks and reads with a fault fixup, so any value is
                // allowed.
                unsafe { $helper(dst, src) }
            }
        }
    )*};
}

impl_get_user! {
    u8 => rust_bus1_get_user_u8,
    u64 => rust_bus1_get_user_u64,
}

/// Extension of [`UserPtr`]: single reads, and small structs a word at a time.
pub(crate) trait UserPtrExt {
    /// Reads one `T` at this user address, as `get_user()` does: `EFAULT` if it is not a user
    /// address or cannot be read (not mapped, not readable, or a fault that cannot be served).
    /// Any alignment is accepted, as `copy_from_user()` accepts it.
    fn get<T: GetUser>(self) -> Result<T>;

    /// Reads a `T` at this user address into `slot`, a 64-bit word at a time, and returns it
    /// there: a large argument struct is not moved again after the copy. `EFAULT` as
    /// [`UserPtrExt::get`], if any of it cannot be read; `slot` then holds no value. `T` must be
    /// whole words, word-aligned and small (at most 256 bytes), which the build checks. Any
    /// alignment of the user address is accepted.
    fn read_into<T: FromBytes>(self, slot: &mut MaybeUninit<T>) -> Result<&mut T>;

    /// Reads the `T` at the start of an argument of `len` bytes at this user address into
    /// `slot`, as [`UserPtrExt::read_into`], and checks that all of the argument can be read:
    /// `EFAULT` otherwise. An in/out argument whose output fields are not read in (they are
    /// written later) so fails before the command has any effect, as a read of all of it would.
    /// `len` is at least `size_of::<T>()` and at most a page: such an argument spans at most two
    /// pages, on which its first and last bytes lie, and both are read.
    fn read_head_into<T: FromBytes>(self, len: usize, slot: &mut MaybeUninit<T>) -> Result<&mut T>;

    /// Writes `v` to this user address a 64-bit word at a time, with the constraints of
    /// [`UserPtrExt::read_into`]. `EFAULT` if any of it cannot be written; what could be is
    /// written, as with `copy_to_user()`.
    fn write_from<T: AsBytes>(self, v: &T) -> Result;
}

impl UserPtrExt for UserPtr {
    #[inline]
    fn get<T: GetUser>(self) -> Result<T> {
        let mut v = T::default();
        // SAFETY: `v` is a local `T`, valid for writing.
        let r = unsafe { T::get_user(&mut v, self.as_const_ptr()) };
        // `get_user()` fails with `-EFAULT` alone: answered here, without the call into
        // `to_result()` that maps any errno (once per `SEND` and per `SLICE_RELEASE`).
        if r != 0 {
            return Err(EFAULT);
        }
        Ok(v)
    }

    #[inline]
    fn read_into<T: FromBytes>(self, slot: &mut MaybeUninit<T>) -> Result<&mut T> {
        self.read_head_into(size_of::<T>(), slot)
    }

    #[inline]
    fn read_head_into<T: FromBytes>(self, len: usize, slot: &mut MaybeUninit<T>) -> Result<&mut T> {
        let words = const { words_of::<T>() };
        if len < size_of::<T>() || len > kernel::page::PAGE_SIZE {
            return Err(EINVAL);
        }
        // SAFETY: `slot` is valid for writing `size_of::<T>()` bytes, which are `words` whole,
        // aligned `u64` (checked by `words_of()`); the helper checks that `self` is a user address
        // range of `len` bytes and reads it with fault handling, so any address is allowed.
        let r = unsafe {
            rust_bus1_read_user_words(
                slot.as_mut_ptr().cast::<u64>(),
                self.as_const_ptr(),
                words,
                len,
            )
        };
        if r != 0 {
            return Err(EFAULT);
        }
        // SAFETY: The copy succeeded, so every word and hence every byte of `slot` is initialised,
        // and any byte pattern is a valid `T` (`T: FromBytes`).
        Ok(unsafe { slot.assume_init_mut() })
    }

    #[inline]
    fn write_from<T: AsBytes>(self, v: &T) -> Result {
        let words = const { words_of::<T>() };
        // SAFETY: `v` is valid for reading `size_of::<T>()` bytes, which are `words` whole, aligned
        // `u64` (checked by `words_of()`), all initialised (`T: AsBytes`); the helper checks that
        // `self` is a user address range and writes it with fault handling.
        let r = unsafe {
            rust_bus1_write_user_words(
                self.as_mut_ptr(),
                core::ptr::from_ref(v).cast::<u64>(),
                words,
            )
        };
        if r != 0 {
            return Err(EFAULT);
        }
        Ok(())
    }
}

/// Test support: user memory for a KUnit test thread (with KUnit built in, as the tests are).
#[cfg(CONFIG_KUNIT = "y")]
pub(crate) mod test_support {
    use super::*;
    use kernel::{
        bindings,
        error::to_result,
        ffi::c_ulong, //
    };

    #[allow(
        improper_ctypes,
        reason = "only pointers cross the boundary; the lint trips over zero-sized bindgen fields"
    )]
    extern "C" {
        fn rust_bus1_test_vm_mmap(
            file: *mut bindings::file,
            len: usize,
            writable: bool,
            shared: bool,
            addr: *mut c_ulong,
        ) -> c_int;
    }

    /// Maps `len` bytes of `file` (anonymous memory if null) into the test thread, which gets an
    /// mm of its own first; the mapping goes away with the thread. Returns its address.
    pub(crate) fn vm_mmap(
        file: *mut bindings::file,
        len: usize,
        writable: bool,
        shared: bool,
    ) -> Result<usize> {
        let mut addr: c_ulong = 0;
        // SAFETY: `file` is null or a valid file, and `addr` is valid for writing.
        to_result(unsafe { rust_bus1_test_vm_mmap(file, len, writable, shared, &mut addr) })?;
        Ok(addr)
    }
}

#[kunit_tests(bus1_uaccess)]
mod tests {
    use super::{test_support::vm_mmap, *};
    use kernel::uaccess::UserSlice;

    const PAGE: usize = kernel::page::PAGE_SIZE;

    /// Maps two pages of anonymous memory into the test thread and fills them with a pattern
    /// in which every byte differs from its neighbours.
    fn mapped() -> Result<usize> {
        let addr = vm_mmap(core::ptr::null_mut(), 2 * PAGE, true, false)?;
        let mut w = UserSlice::new(UserPtr::from_addr(addr), 2 * PAGE).writer();
        for i in 0..2 * PAGE {
            // CAST: Truncation is intended.
            w.write(&(i as u8).wrapping_mul(7).wrapping_add(1))?;
        }
        Ok(addr)
    }

    /// [`mapped`], checking that the page after the two is not mapped (the first mapping of the
    /// test's mm is its top), so an access that runs past them faults.
    fn mapped_at_top() -> Result<usize> {
        let addr = mapped()?;
        assert_eq!(UserPtr::from_addr(addr + 2 * PAGE).get::<u8>(), Err(EFAULT));
        Ok(addr)
    }

    /// What the pattern of [`mapped`] holds at `off`, read as a little- or big-endian `u64` as
    /// the CPU reads it.
    fn expected_u64(off: usize) -> u64 {
        let mut b = [0u8; 8];
        for (i, x) in b.iter_mut().enumerate() {
            // CAST: Truncation is intended.
            *x = ((off + i) as u8).wrapping_mul(7).wrapping_add(1);
        }
        u64::from_ne_bytes(b)
    }

    #[test]
    fn reads_the_value_at_any_alignment() -> Result {
        let addr = mapped()?;
        // Aligned, unaligned, and across the boundary of the two pages.
        for off in [0, 8, 1, 3, 7, PAGE - 8, PAGE - 5, PAGE - 1, 2 * PAGE - 8] {
            assert_eq!(
                UserPtr::from_addr(addr + off).get::<u64>()?,
                expected_u64(off)
            );
        }
        for off in [0, 1, PAGE - 1, PAGE, 2 * PAGE - 1] {
            // CAST: Truncation is intended.
            let want = (off as u8).wrapping_mul(7).wrapping_add(1);
            assert_eq!(UserPtr::from_addr(addr + off).get::<u8>()?, want);
        }
        Ok(())
    }

    #[test]
    fn kernel_and_unmapped_addresses_fault() -> Result {
        let local: u64 = 0x5a5a_5a5a_5a5a_5a5a;
        // A kernel address is never read, though it is valid kernel memory.
        let kernel_addr = core::ptr::from_ref(&local) as usize;
        assert_eq!(UserPtr::from_addr(kernel_addr).get::<u64>(), Err(EFAULT));
        assert_eq!(UserPtr::from_addr(kernel_addr).get::<u8>(), Err(EFAULT));
        // The page at zero is never mapped; the top of the address space wraps.
        assert_eq!(UserPtr::from_addr(0).get::<u64>(), Err(EFAULT));
        assert_eq!(UserPtr::from_addr(usize::MAX - 3).get::<u64>(), Err(EFAULT));
        assert_eq!(UserPtr::from_addr(usize::MAX).get::<u8>(), Err(EFAULT));
        Ok(())
    }

    /// Four words: a struct as `read_into()` and `write_from()` take it.
    type Words = [u64; 4];

    #[test]
    fn reads_a_struct_at_any_alignment() -> Result {
        let addr = mapped()?;
        // Aligned, unaligned, across the boundary of the two pages, and ending at the end.
        for off in [0, 8, 1, 7, PAGE - 16, PAGE - 13, 2 * PAGE - 32] {
            let mut slot = MaybeUninit::<Words>::uninit();
            let got = *UserPtr::from_addr(addr + off).read_into(&mut slot)?;
            let want: Words = core::array::from_fn(|i| expected_u64(off + 8 * i));
            assert_eq!(got, want);
        }
        Ok(())
    }

    #[test]
    fn writes_a_struct_at_any_alignment_and_nothing_else() -> Result {
        let addr = mapped()?;
        for off in [0, 8, 3, PAGE - 12, 2 * PAGE - 32] {
            let v: Words = core::array::from_fn(|i| 0x0101_0101_0101_0101 * (i as u64 + 2));
            UserPtr::from_addr(addr + off).write_from(&v)?;
            let mut back = [0u8; 34];
            let start = off.saturating_sub(1);
            let len = (off + 33).min(2 * PAGE) - start;
            UserSlice::new(UserPtr::from_addr(addr + start), len)
                .reader()
                .read_slice(&mut back[..len])?;
            for (i, b) in back[..len].iter().enumerate() {
                let at = start + i;
                // CAST: Truncation is intended (the pattern of `mapped()`).
                let want = if at < off || at >= off + 32 {
                    (at as u8).wrapping_mul(7).wrapping_add(1)
                } else {
                    // CAST: The word index is below 4.
                    ((at - off) / 8 + 2) as u8
                };
                assert_eq!(*b, want);
            }
            // Restore the pattern for the next offset.
            for at in off..off + 32 {
                // CAST: Truncation is intended.
                let p = (at as u8).wrapping_mul(7).wrapping_add(1);
                UserSlice::new(UserPtr::from_addr(addr + at), 1)
                    .writer()
                    .write(&p)?;
            }
        }
        Ok(())
    }

    /// Writes `N` words at an aligned offset and at one across the two pages, reads them back
    /// into a slot holding something else, and checks the words on either side are the
    /// pattern's. A smaller `N` never wrote a word checked for a larger one: at the aligned
    /// offset its words end earlier, across the pages they start later and end earlier.
    fn words_round_trip<const N: usize>(addr: usize) -> Result {
        for off in [8, PAGE - 8 * N.div_ceil(2)] {
            // CAST: The index is below 32.
            let v: [u64; N] = core::array::from_fn(|i| 0x0102_0304_0506_0708 * (i as u64 + 1));
            UserPtr::from_addr(addr + off).write_from(&v)?;
            let mut slot = MaybeUninit::new([u64::MAX; N]);
            assert_eq!(*UserPtr::from_addr(addr + off).read_into(&mut slot)?, v);
            let before = UserPtr::from_addr(addr + off - 8).get::<u64>()?;
            assert_eq!(before, expected_u64(off - 8));
            let after = UserPtr::from_addr(addr + off + 8 * N).get::<u64>()?;
            assert_eq!(after, expected_u64(off + 8 * N));
        }
        Ok(())
    }

    /// The helpers move four words per round and the rest one at a time: every remainder, one
    /// round and several, up to the largest argument.
    #[test]
    fn moves_every_number_of_words() -> Result {
        let addr = mapped()?;
        words_round_trip::<1>(addr)?;
        words_round_trip::<2>(addr)?;
        words_round_trip::<3>(addr)?;
        words_round_trip::<4>(addr)?;
        words_round_trip::<5>(addr)?;
        words_round_trip::<6>(addr)?;
        words_round_trip::<7>(addr)?;
        words_round_trip::<8>(addr)?;
        words_round_trip::<10>(addr)?;
        words_round_trip::<16>(addr)?;
        words_round_trip::<19>(addr)?;
        words_round_trip::<32>(addr)?;
        Ok(())
    }

    #[test]
    fn a_head_read_checks_the_whole_argument() -> Result {
        let addr = mapped_at_top()?;
        let mut slot = MaybeUninit::<Words>::uninit();
        // The head is read whatever the rest holds, up to an argument that ends with the mapping.
        let at = 2 * PAGE - 100;
        let got = *UserPtr::from_addr(addr + at).read_head_into(100, &mut slot)?;
        let want: Words = core::array::from_fn(|i| expected_u64(at + 8 * i));
        assert_eq!(got, want);
        // An argument one byte longer, whose head is readable, fails as a whole.
        assert_eq!(
            UserPtr::from_addr(addr + at)
                .read_head_into(101, &mut slot)
                .err(),
            Some(EFAULT)
        );
        // A length below the head's or above a page is refused before anything is read.
        assert_eq!(
            UserPtr::from_addr(addr).read_head_into(31, &mut slot).err(),
            Some(EINVAL)
        );
        assert_eq!(
            UserPtr::from_addr(addr)
                .read_head_into(PAGE + 1, &mut slot)
                .err(),
            Some(EINVAL)
        );
        Ok(())
    }

    #[test]
    fn a_struct_fails_on_kernel_unmapped_and_read_only_memory() -> Result {
        let addr = mapped_at_top()?;
        let mut slot = MaybeUninit::<Words>::uninit();
        // A struct that runs past the mapping fails as a whole.
        for off in [2 * PAGE - 24, 2 * PAGE - 1, 2 * PAGE] {
            assert_eq!(
                UserPtr::from_addr(addr + off).read_into(&mut slot).err(),
                Some(EFAULT)
            );
            assert_eq!(
                UserPtr::from_addr(addr + off).write_from(&[7u64; 4]),
                Err(EFAULT)
            );
        }
        // A kernel address is neither read nor written, though it is valid kernel memory.
        let mut local: Words = [0x5a5a_5a5a_5a5a_5a5a; 4];
        let kernel_addr = core::ptr::from_mut(&mut local) as usize;
        assert_eq!(
            UserPtr::from_addr(kernel_addr).read_into(&mut slot).err(),
            Some(EFAULT)
        );
        assert_eq!(
            UserPtr::from_addr(kernel_addr).write_from(&[7u64; 4]),
            Err(EFAULT)
        );
        // SAFETY: `local` is a live local; the volatile read keeps the compiler from assuming it
        // unchanged across the calls above.
        let after = unsafe { core::ptr::read_volatile(&local) };
        assert_eq!(after, [0x5a5a_5a5a_5a5a_5a5a; 4]);
        // The page at zero and the top of the address space.
        for a in [0, usize::MAX - 15] {
            assert_eq!(
                UserPtr::from_addr(a).read_into(&mut slot).err(),
                Some(EFAULT)
            );
            assert_eq!(UserPtr::from_addr(a).write_from(&[7u64; 4]), Err(EFAULT));
        }
        // A read-only mapping is read, not written.
        let ro = vm_mmap(core::ptr::null_mut(), PAGE, false, false)?;
        assert_eq!(*UserPtr::from_addr(ro).read_into(&mut slot)?, [0u64; 4]);
        assert_eq!(UserPtr::from_addr(ro).write_from(&[7u64; 4]), Err(EFAULT));
        Ok(())
    }
}
