// SPDX-License-Identifier: GPL-2.0

//! Declaring plain-old-data structs that may be copied to and from user space, and reading them
//! in place.

use core::mem::{
    size_of,
    MaybeUninit, //
};
use kernel::{
    prelude::*,
    transmute::FromBytes,
    uaccess::UserSliceReader, //
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

/// Reads a `T` from `reader` into `slot` and returns it there.
///
/// Like [`UserSliceReader::read`], but the value is written where the caller keeps it: a large
/// argument struct is not copied again (returned by value, it is moved into the caller's frame
/// with a `memcpy`).
pub(crate) fn read_into<'a, T: FromBytes>(
    reader: &mut UserSliceReader,
    slot: &'a mut MaybeUninit<T>,
) -> Result<&'a mut T> {
    // SAFETY: `slot` is valid for writing `size_of::<T>()` bytes, each of which may be left
    // uninitialised as a `MaybeUninit<u8>`; the slice borrows `slot` exclusively.
    let bytes = unsafe {
        core::slice::from_raw_parts_mut(slot.as_mut_ptr().cast::<MaybeUninit<u8>>(), size_of::<T>())
    };
    reader.read_raw(bytes)?;
    // SAFETY: `read_raw` succeeded, so every byte of `slot` is initialised, and any byte pattern
    // is a valid `T` (`T: FromBytes`).
    Ok(unsafe { slot.assume_init_mut() })
}
