// SPDX-License-Identifier: GPL-2.0

//! Error codes that `kernel::error::code` does not define in Linux 7.2.
//!
//! C header: [`include/uapi/asm-generic/errno.h`](srctree/include/uapi/asm-generic/errno.h).

use kernel::{
    bindings,
    error::Error, //
};

macro_rules! declare_errno {
    ($($name:ident => $doc:literal,)*) => {
        $(
            #[doc = $doc]
            #[inline]
            #[allow(non_snake_case)]
            pub(crate) fn $name() -> Error {
                // CAST: Errno constants are small positive integers.
                Error::from_errno(-(bindings::$name as i32))
            }
        )*
    };
}

declare_errno! {
    ESHUTDOWN => "Cannot send after transport endpoint shutdown.",
    EDQUOT => "Quota exceeded.",
    EHOSTUNREACH => "No route to host.",
    EOPNOTSUPP => "Operation not supported on transport endpoint.",
    ENOTUNIQ => "Name not unique on network.",
    EREMOTE => "Object is remote.",
    ESTALE => "Stale file handle.",
    EXFULL => "Exchange full.",
    ENOTRECOVERABLE => "State not recoverable.",
}
