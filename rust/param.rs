// SPDX-License-Identifier: GPL-2.0

//! Module parameters readable under `/sys/module/<module>/parameters/`.
//!
//! C header: [`include/linux/moduleparam.h`](srctree/include/linux/moduleparam.h).
//!
//! In Linux 7.2 the `module!` macro registers every parameter with permission 0 and with
//! `kernel_param_ops` that have no `get` callback, so no parameter appears in sysfs and users
//! cannot see the values a module was loaded with. [`readable_params!`] adds, for parameters
//! that `module!` declared, a second `kernel_param` entry of the same name with a sysfs
//! permission and a `get` callback. Both entries share the parameter's storage (the
//! [`ModuleParamAccess`] that `module!` created) and the kernel's `set` callback, so a value
//! given at load time lands in the same place whichever entry the parser matches first; only
//! the new entry, having a non-zero permission, gets a sysfs file.
//!
//! Only read-only permissions are accepted: the kernel's `set` callback stores a value once, so a
//! writable file would fail every write after the first value.
//!
//! The lasting fix is a `perm` option in `module!` and a `get` callback in the kernel's
//! `kernel_param_ops`; this file is shaped so its contents can move there.

use core::{ffi::CStr, fmt::Write};
use kernel::{
    bindings,
    module_param::{KernelParam, ModuleParam, ModuleParamAccess},
    page::PAGE_SIZE,
    prelude::*,
};

/// A parameter type that can be shown in sysfs.
pub(crate) trait ReadableParam: ModuleParam + core::fmt::Display + Sync + 'static {
    /// The kernel's `kernel_param_ops` for this type (its `set` callback is reused).
    const KERNEL_OPS: &'static bindings::kernel_param_ops;

    /// The `kernel_param_ops` of the readable entry: the kernel's `set`, and [`get_param`].
    const OPS: &'static bindings::kernel_param_ops = &bindings::kernel_param_ops {
        flags: 0,
        set: Self::KERNEL_OPS.set,
        get: Some(get_param::<Self>),
        free: None,
    };
}

macro_rules! impl_readable_param {
    ($($ty:ident => $ops:ident,)*) => {
        $(
            impl ReadableParam for $ty {
                const KERNEL_OPS: &'static bindings::kernel_param_ops =
                    &kernel::module_param::$ops;
            }
        )*
    };
}

impl_readable_param! {
    i8 => PARAM_OPS_I8,
    u8 => PARAM_OPS_U8,
    i16 => PARAM_OPS_I16,
    u16 => PARAM_OPS_U16,
    i32 => PARAM_OPS_I32,
    u32 => PARAM_OPS_U32,
    i64 => PARAM_OPS_I64,
    u64 => PARAM_OPS_U64,
    isize => PARAM_OPS_ISIZE,
    usize => PARAM_OPS_USIZE,
}

/// The `__this_module` of a loadable module, null for built-in code (as in `module!`).
pub(crate) const fn this_module() -> *mut bindings::module {
    #[cfg(MODULE)]
    {
        // The module loader fills in `__this_module`; it outlives every parameter of the module.
        (&raw const bindings::__this_module).cast_mut()
    }
    #[cfg(not(MODULE))]
    {
        core::ptr::null_mut()
    }
}

/// Builds the `kernel_param` of a readable parameter.
///
/// `name` is the parameter's name as the kernel matches it: `param` for a loadable module,
/// `module.param` for built-in code. `perm` is the sysfs mode; it must not grant write access
/// ([`readable_params!`] checks that at compile time).
pub(crate) const fn readable_param<T: ReadableParam>(
    name: &'static CStr,
    module: *mut bindings::module,
    access: &'static ModuleParamAccess<T>,
    perm: u16,
) -> KernelParam {
    KernelParam::new(bindings::kernel_param {
        name: kernel::str::as_char_ptr_in_const_context(name),
        mod_: module,
        ops: T::OPS,
        perm,
        level: -1,
        flags: 0,
        __bindgen_anon_1: bindings::kernel_param__bindgen_ty_1 {
            // INVARIANT: `get_param::<T>` (in `T::OPS`) relies on `arg` pointing to a
            // `ModuleParamAccess<T>`.
            arg: access.as_void_ptr(),
        },
    })
}

/// A `fmt::Write` into a byte buffer that fails instead of truncating.
struct BufWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Write for BufWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(core::fmt::Error)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(core::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// `kernel_param_ops.get`: writes the parameter's value and a newline to `buffer`.
///
/// # Safety
///
/// `buffer` is valid for writes of `PAGE_SIZE` bytes and `param` points to a `kernel_param`
/// built by [`readable_param::<T>`], valid for reads for the duration of the call (the sysfs
/// contract of `param_attr_show`).
unsafe extern "C" fn get_param<T: ReadableParam>(
    buffer: *mut c_char,
    param: *const bindings::kernel_param,
) -> c_int {
    // SAFETY: `param` is valid for reads (function safety requirement), and `readable_param`
    // set its `arg` to a `&'static ModuleParamAccess<T>`, which is only ever shared.
    let access = unsafe { &*(*param).__bindgen_anon_1.arg.cast::<ModuleParamAccess<T>>() };
    // SAFETY: `buffer` is valid for writes of `PAGE_SIZE` bytes (function safety requirement)
    // and nothing else accesses it during the call.
    let buf = unsafe { core::slice::from_raw_parts_mut(buffer.cast::<u8>(), PAGE_SIZE) };
    let mut w = BufWriter { buf, len: 0 };
    if writeln!(w, "{}", access.value()).is_err() {
        return EINVAL.to_errno();
    }
    // CAST: at most `PAGE_SIZE` bytes were written.
    w.len as c_int
}

/// Makes parameters declared in `module!` readable under `/sys/module/<module>/parameters/`.
///
/// `module` is the module's name as given to `module!`, `access` the path of the module that
/// holds the parameters' [`ModuleParamAccess`] statics (`module_parameters` where `module!` was
/// invoked), `perm` a read-only mode such as `0o444`.
///
/// # Examples
///
/// ```ignore
/// module! {
///     type: MyModule,
///     name: "my_module",
///     params: { depth: u32 { default: 8, description: "Queue depth" } },
///     ...
/// }
/// readable_params!(module: "my_module", access: module_parameters, perm: 0o444, params: [depth]);
/// // cat /sys/module/my_module/parameters/depth
/// ```
macro_rules! readable_params {
    (
        module: $module:literal,
        access: $access:ident,
        perm: $perm:expr,
        params: [$($name:ident),* $(,)?] $(,)?
    ) => {
        const _: () = ::core::assert!(
            $perm & 0o222 == 0 && $perm & 0o444 != 0,
            "readable_params! takes a read-only mode with a read permission"
        );
        $(
            const _: () = {
                const NAME: &::core::ffi::CStr = {
                    let name: &str = if ::core::cfg!(MODULE) {
                        ::core::concat!(::core::stringify!($name), "\0")
                    } else {
                        ::core::concat!($module, ".", ::core::stringify!($name), "\0")
                    };
                    match ::core::ffi::CStr::from_bytes_with_nul(name.as_bytes()) {
                        Ok(c) => c,
                        Err(_) => ::core::panic!("parameter name contains a NUL byte"),
                    }
                };
                #[link_section = "__param"]
                #[used(compiler)]
                static PARAM: ::kernel::module_param::KernelParam =
                    $crate::ext::param::readable_param(
                        NAME,
                        $crate::ext::param::this_module(),
                        &$access::$name,
                        $perm,
                    );
            };
        )*
    };
}
pub(crate) use readable_params;
