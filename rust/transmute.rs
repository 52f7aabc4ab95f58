// SPDX-License-Identifier: GPL-2.0

//! Declaring plain-old-data structs that may be copied to and from user space.

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
