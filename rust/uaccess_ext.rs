// SPDX-License-Identifier: GPL-2.0

//! Reading one integer from user space with `get_user()`.
//!
//! The `kernel` crate reads user memory through [`UserSliceReader`], which calls
//! `_copy_from_user()`: an out-of-line call with its fault-injection and instrumentation checks
//! and a string copy, however small the value. An ioctl argument that is a single integer (an
//! ID, an offset, a timeout) is what C drivers read with `get_user()`, a single access with its
//! fault fixup; [`UserPtrExt::get`] is that for Rust.
//!
//! C header: [`include/linux/uaccess.h`](srctree/include/linux/uaccess.h).
//!
//! [`UserSliceReader`]: kernel::uaccess::UserSliceReader

use core::ffi::{
    c_int,
    c_void, //
};
use kernel::{
    prelude::*,
    uaccess::UserPtr, //
};

extern "C" {
    fn rust_bus1_get_user_u8(dst: *mut u8, src: *const c_void) -> c_int;
    fn rust_bus1_get_user_u64(dst: *mut u64, src: *const c_void) -> c_int;
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

/// Extension of [`UserPtr`]: single reads.
pub(crate) trait UserPtrExt {
    /// Reads one `T` at this user address, as `get_user()` does: `EFAULT` if it is not a user
    /// address or cannot be read (not mapped, not readable, or a fault that cannot be served).
    /// Any alignment is accepted, as `copy_from_user()` accepts it.
    fn get<T: GetUser>(self) -> Result<T>;
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
}
