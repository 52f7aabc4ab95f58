// SPDX-License-Identifier: GPL-2.0

//! Declaring plain-old-data structs that may be copied to and from user space, and reading them
//! in place.

use core::mem::{
    size_of,
    MaybeUninit, //
};
use kernel::{
    bindings,
    ffi::c_void,
    prelude::*,
    transmute::FromBytes,
    uaccess::UserPtr, //
};

/// Declares `#[repr(C)]` structs made only of [`FromBytes`] + [`AsBytes`] fields, and implements
/// both traits for them after proving at compile time that the struct has no padding.
///
/// This is what uapi structs need to be read with `UserSliceReader::read` and written with
/// `UserSliceWriter::write`, without an `unsafe impl` at every definition.
///
/// [`FromBytes`]: kernel::transmute::FromBytes
/// [`AsBytes`]: kernel::transmute::AsBytes
macro_rules! user_struct {
    ($(
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty, )*
        }
    )*) => {$(
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field: $ty, )*
        }

        const _: () = {
            const fn plain<T: ::kernel::transmute::FromBytes + ::kernel::transmute::AsBytes>() {}
            $( plain::<$ty>(); )*
            // No padding: the struct is exactly as large as its fields.
            assert!(::core::mem::size_of::<$name>() == 0 $( + ::core::mem::size_of::<$ty>() )*);
        };

        // The `unsafe` belongs to this macro, whose checks above justify it, not to the module
        // that declares the struct (which may deny `unsafe_code`).
        // SAFETY: The struct is `repr(C)`, has no padding (asserted above) and every field is
        // `FromBytes`, so any byte pattern is a valid value.
        #[allow(unsafe_code)]
        unsafe impl ::kernel::transmute::FromBytes for $name {}
        // SAFETY: The struct is `repr(C)`, has no padding (asserted above) and every field is
        // `AsBytes`, so every byte of a value is initialised.
        #[allow(unsafe_code)]
        unsafe impl ::kernel::transmute::AsBytes for $name {}
    )*};
}
pub(crate) use user_struct;

/// Reads a `T` at the user address `ptr` into `slot` and returns it there; `EFAULT` if it cannot
/// be read in full.
///
/// Like [`UserSliceReader::read`], but the value is written where the caller keeps it: a large
/// argument struct is not copied again (returned by value, it is moved into the caller's frame
/// with a `memcpy`). Generic, as `read` is, so it is compiled into its caller: no call into the
/// `kernel` crate's `UserSliceReader::read_raw()` and its slice bookkeeping around the copy.
///
/// [`UserSliceReader::read`]: kernel::uaccess::UserSliceReader::read
#[inline]
pub(crate) fn read_into<T: FromBytes>(ptr: UserPtr, slot: &mut MaybeUninit<T>) -> Result<&mut T> {
    // SAFETY: `slot` is valid for writing `size_of::<T>()` bytes; `_copy_from_user()` checks that
    // `ptr` is a user address range and reads it with fault handling, and returns the number of
    // bytes it could not copy. As in `UserSliceReader::read`, the `_copy_from_user` variant skips
    // the `check_object_size()` of the kernel buffer, as C does for a compile-time length.
    let left = unsafe {
        bindings::_copy_from_user(
            slot.as_mut_ptr().cast::<c_void>(),
            ptr.as_const_ptr(),
            size_of::<T>(),
        )
    };
    if left != 0 {
        return Err(EFAULT);
    }
    // SAFETY: The copy succeeded, so every byte of `slot` is initialised, and any byte pattern is
    // a valid `T` (`T: FromBytes`).
    Ok(unsafe { slot.assume_init_mut() })
}
