// SPDX-License-Identifier: GPL-2.0

//! Misc device registration that pins its module, sets the device node mode and supports `poll`.
//!
//! `kernel::miscdevice` in Linux 7.2 leaves `file_operations::owner` unset (so an open file does
//! not pin the module, Rust-for-Linux issue #1182), has no `mode` option and no `poll` hook. This
//! registration owns its `file_operations`, filled in at registration time with the owning
//! module, so the same trait can serve any number of modules.
//!
//! C header: [`include/linux/miscdevice.h`](srctree/include/linux/miscdevice.h).

use super::{
    fd::IoctlContext,
    poll::PollTable, //
};
use core::{
    any::TypeId,
    marker::PhantomData, //
};
use kernel::{
    bindings,
    error::{
        to_result,
        VTABLE_DEFAULT_ERROR, //
    },
    fs::{
        File,
        LocalFile, //
    },
    mm::virt::VmaNew,
    prelude::*,
    seq_file::SeqFile,
    sync::SetOnce,
    types::{
        ForeignOwnable,
        Opaque, //
    },
    ThisModule,
};

/// Options for registering a misc device.
#[derive(Copy, Clone)]
pub(crate) struct MiscDeviceOptions {
    /// The device name, which is also the name of the node under `/dev`.
    pub(crate) name: &'static CStr,
    /// Permission bits of the device node, for example `0o666`.
    pub(crate) mode: u16,
}

/// The one misc device this module registers: the address of its `file_operations` and the
/// [`MiscDevice`] type behind it.
///
/// Set once by the first successful [`MiscDeviceRegistration::register`] and never changed;
/// the registration (and so its `file_operations`) lives until module exit, which cannot happen
/// while any of its files is open because the files pin the module.
static REGISTERED: SetOnce<(usize, TypeId)> = SetOnce::new();

/// A registered misc device whose open files pin `module`.
///
/// At most one registration may exist per module: [`device_of_file`] identifies files of the
/// device by their `file_operations`, and that needs a single, known address.
///
/// # Invariants
///
/// - `misc` holds a `struct miscdevice` registered with `misc_register()`, whose `fops` points
///   at `fops`, for the whole lifetime of this object; it is deregistered exactly once, on drop.
/// - `fops` is never modified after registration.
#[pin_data(PinnedDrop)]
pub(crate) struct MiscDeviceRegistration<T> {
    #[pin]
    fops: Opaque<bindings::file_operations>,
    #[pin]
    misc: Opaque<bindings::miscdevice>,
    _t: PhantomData<T>,
}

// SAFETY: `misc_deregister` may be called from any thread.
unsafe impl<T> Send for MiscDeviceRegistration<T> {}
// SAFETY: No `&self` method mutates the registration.
unsafe impl<T> Sync for MiscDeviceRegistration<T> {}

impl<T: MiscDevice + 'static> MiscDeviceRegistration<T> {
    /// Registers a misc device whose open files hold a reference on `module`.
    ///
    /// Fails with `EBUSY` if this module already registered a misc device.
    pub(crate) fn register(
        opts: MiscDeviceOptions,
        module: &'static ThisModule,
    ) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            fops <- Opaque::ffi_init(move |slot: *mut bindings::file_operations| {
                let mut fops = VTable::<T>::FOPS;
                fops.owner = module.as_ptr();
                // SAFETY: The initializer may write to `slot`.
                unsafe { slot.write(fops) };
            }),
            misc <- Opaque::try_ffi_init(move |slot: *mut bindings::miscdevice| {
                let mut misc: bindings::miscdevice = pin_init::zeroed();
                // CAST: `MISC_DYNAMIC_MINOR` is 255.
                misc.minor = bindings::MISC_DYNAMIC_MINOR as c_int;
                misc.name = opts.name.as_char_ptr();
                misc.mode = opts.mode;
                // The `fops` field is initialised before this one (pin-init initialises fields
                // in declaration order), so its address is final and valid.
                misc.fops = Self::fops_of_slot(slot);
                // Record the device before it becomes visible, so that its files are recognised
                // from the first open on.
                if !REGISTERED.populate((misc.fops as usize, TypeId::of::<T>())) {
                    return Err(EBUSY);
                }
                // SAFETY: The initializer may write to `slot`.
                unsafe { slot.write(misc) };
                // SAFETY: `slot` holds a fully initialised `miscdevice` whose `name` and `fops`
                // outlive the registration: `name` is static, and `fops` lives next to `slot` in
                // this pinned object, whose drop deregisters the device first.
                // INVARIANT: On success, `misc` holds a registered device.
                to_result(unsafe { bindings::misc_register(slot) })
            }),
            _t: PhantomData,
        })
    }

    /// Computes the address of `fops` from the address of `misc` in the same object.
    fn fops_of_slot(slot: *mut bindings::miscdevice) -> *const bindings::file_operations {
        let fops_off = core::mem::offset_of!(Self, fops);
        let misc_off = core::mem::offset_of!(Self, misc);
        // `Opaque<T>` is `repr(transparent)` over `T`, so field offsets equal the raw offsets.
        slot.cast::<u8>()
            .wrapping_sub(misc_off)
            .wrapping_add(fops_off)
            .cast::<bindings::file_operations>()
    }
}

#[pinned_drop]
impl<T> PinnedDrop for MiscDeviceRegistration<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: By the type invariant, `misc` is registered, and this is the only place that
        // deregisters it.
        unsafe { bindings::misc_deregister(self.misc.get()) };
    }
}

/// Returns the private data of `file` if it is an open file of the misc device registered for
/// `T`, or `None` for any other file.
///
/// This is how an ioctl recognises a file descriptor of its own device passed by user space.
pub(crate) fn device_of_file<T: MiscDevice + 'static>(
    file: &LocalFile,
) -> Option<<T::Ptr as ForeignOwnable>::Borrowed<'_>> {
    let (fops, ty) = REGISTERED.copy()?;
    if ty != TypeId::of::<T>() {
        return None;
    }
    let raw = file.as_ptr();
    // SAFETY: `file` is a valid, referenced file for the lifetime of the borrow, so reading its
    // `f_op` is fine; the field is only changed while the file is being opened.
    let f_op = unsafe { (*raw).f_op };
    if f_op as usize != fops {
        return None;
    }
    // SAFETY: The file uses the `file_operations` of the registration of `T` (checked above;
    // `REGISTERED` names exactly one registration and its type), so it was opened by
    // `VTable::<T>::open`, which stored a `T::Ptr` made with `into_foreign` as private data. A
    // file in an fd table has completed `open`, and `release` (which reclaims the data) cannot
    // run while the caller holds the reference behind `file`, which outlives the borrow.
    Some(unsafe { <T::Ptr as ForeignOwnable>::borrow((*raw).private_data.cast()) })
}

/// The per-open-file behaviour of a misc device registered with [`MiscDeviceRegistration`].
#[vtable]
pub(crate) trait MiscDevice: Sized {
    /// The pointer type stored as the file's private data.
    type Ptr: ForeignOwnable + Send + Sync;

    /// Called on `open(2)`; the returned pointer becomes the file's private data.
    fn open(file: &File) -> Result<Self::Ptr>;

    /// Called when the last reference to the open file goes away.
    fn release(device: Self::Ptr, _file: &File) {
        drop(device);
    }

    /// Called on `ioctl(2)`. `ctx` lets the handler take files from the caller's fd table.
    fn ioctl(
        _device: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _file: &File,
        _cmd: u32,
        _arg: usize,
        _ctx: &IoctlContext,
    ) -> Result<isize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called on `mmap(2)` while the VMA is being set up.
    fn mmap(
        _device: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _file: &File,
        _vma: &VmaNew,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called on `poll(2)` and friends; returns the ready `POLL*` mask.
    fn poll(
        _device: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _file: &File,
        _table: PollTable<'_>,
    ) -> u32 {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called to print the file's lines in `/proc/<pid>/fdinfo/<fd>`.
    fn show_fdinfo(
        _device: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _m: &SeqFile,
        _file: &File,
    ) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// The `file_operations` trampolines for a [`MiscDevice`].
struct VTable<T: MiscDevice>(PhantomData<T>);

impl<T: MiscDevice> VTable<T> {
    /// # Safety
    ///
    /// `inode` and `raw_file` must be the inode and file of a file being opened through
    /// `misc_open()`.
    unsafe extern "C" fn open(inode: *mut bindings::inode, raw_file: *mut bindings::file) -> c_int {
        // SAFETY: The pointers are valid and belong to a file being opened.
        let ret = unsafe { bindings::generic_file_open(inode, raw_file) };
        if ret != 0 {
            return ret;
        }
        // SAFETY:
        // * The file is valid for the duration of `T::open`.
        // * There is no active fdget_pos region on the file on this thread.
        let file = unsafe { File::from_raw_file(raw_file) };
        let ptr = match T::open(file) {
            Ok(ptr) => ptr,
            Err(err) => return err.to_errno(),
        };
        // SAFETY: The open call owns the private data; every later hook converts it back with
        // the matching `ForeignOwnable` type.
        unsafe { (*raw_file).private_data = ptr.into_foreign().cast() };
        0
    }

    /// # Safety
    ///
    /// `file` must be a file opened by [`Self::open`] that is being released.
    unsafe extern "C" fn release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
        // SAFETY: The release call owns the private data, set by `open` with `into_foreign`.
        let ptr = unsafe { <T::Ptr as ForeignOwnable>::from_foreign((*file).private_data.cast()) };
        // SAFETY:
        // * The file is valid for the duration of this call.
        // * There is no active fdget_pos region on the file on this thread.
        T::release(ptr, unsafe { File::from_raw_file(file) });
        0
    }

    /// # Safety
    ///
    /// `file` must be a file opened by [`Self::open`] and not yet released.
    unsafe extern "C" fn ioctl(file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
        // SAFETY: The private data was set by `open` and is released only in `release`.
        let device = unsafe { <T::Ptr as ForeignOwnable>::borrow((*file).private_data.cast()) };
        // SAFETY:
        // * The file is valid for the duration of this call.
        // * There is no active fdget_pos region on the file on this thread.
        let file = unsafe { File::from_raw_file(file) };
        // SAFETY: This is the ioctl trampoline and `ctx` does not outlive it; bus1, the only
        // user of this registration, never calls `fdget_pos`.
        let ctx = unsafe { IoctlContext::new() };
        // CAST: `c_ulong` and `usize` have the same size on every Linux target (and
        // are the same type on some, hence the allow).
        #[allow(clippy::unnecessary_cast)]
        let arg = arg as usize;
        match T::ioctl(device, file, cmd, arg, &ctx) {
            // CAST: ioctl results are small non-negative integers.
            Ok(ret) => ret as c_long,
            // CAST: Errno values are small negative integers.
            Err(err) => err.to_errno() as c_long,
        }
    }

    /// # Safety
    ///
    /// `file` must be a file opened by [`Self::open`] and not yet released, and `vma` a VMA in
    /// its initial `mmap` setup.
    unsafe extern "C" fn mmap(
        file: *mut bindings::file,
        vma: *mut bindings::vm_area_struct,
    ) -> c_int {
        // SAFETY: The private data was set by `open` and is released only in `release`.
        let device = unsafe { <T::Ptr as ForeignOwnable>::borrow((*file).private_data.cast()) };
        // SAFETY: The caller provides a VMA undergoing initial setup.
        let area = unsafe { VmaNew::from_raw(vma) };
        // SAFETY:
        // * The file is valid for the duration of this call.
        // * There is no active fdget_pos region on the file on this thread.
        let file = unsafe { File::from_raw_file(file) };
        match T::mmap(device, file, area) {
            Ok(()) => 0,
            Err(err) => err.to_errno(),
        }
    }

    /// # Safety
    ///
    /// `file` must be a file opened by [`Self::open`] and not yet released, and `wait` null or a
    /// valid `poll_table` for the duration of the call.
    unsafe extern "C" fn poll(
        file: *mut bindings::file,
        wait: *mut bindings::poll_table_struct,
    ) -> bindings::__poll_t {
        // SAFETY: The private data was set by `open` and is released only in `release`.
        let device = unsafe { <T::Ptr as ForeignOwnable>::borrow((*file).private_data.cast()) };
        // SAFETY:
        // * The file is valid for the duration of this call.
        // * There is no active fdget_pos region on the file on this thread.
        let fileref = unsafe { File::from_raw_file(file) };
        // SAFETY: The caller guarantees that `wait` is null or valid for this call.
        let table = unsafe { PollTable::from_raw(wait) };
        T::poll(device, fileref, table)
    }

    /// # Safety
    ///
    /// `file` must be a file opened by [`Self::open`] and not yet released, and `seq_file` a
    /// valid `seq_file` that may be written to for the duration of the call.
    unsafe extern "C" fn show_fdinfo(seq_file: *mut bindings::seq_file, file: *mut bindings::file) {
        // SAFETY: The private data was set by `open` and is released only in `release`.
        let device = unsafe { <T::Ptr as ForeignOwnable>::borrow((*file).private_data.cast()) };
        // SAFETY:
        // * The file is valid for the duration of this call.
        // * There is no active fdget_pos region on the file on this thread.
        let file = unsafe { File::from_raw_file(file) };
        // SAFETY: The caller guarantees `seq_file` is valid and exclusive for this call.
        let m = unsafe { SeqFile::from_raw(seq_file) };
        T::show_fdinfo(device, m, file);
    }

    /// The operations; `owner` is filled in at registration.
    const FOPS: bindings::file_operations = bindings::file_operations {
        open: Some(Self::open),
        release: Some(Self::release),
        unlocked_ioctl: if T::HAS_IOCTL {
            Some(Self::ioctl)
        } else {
            None
        },
        compat_ioctl: if T::HAS_IOCTL {
            bindings::compat_ptr_ioctl
        } else {
            None
        },
        mmap: if T::HAS_MMAP { Some(Self::mmap) } else { None },
        poll: if T::HAS_POLL { Some(Self::poll) } else { None },
        show_fdinfo: if T::HAS_SHOW_FDINFO {
            Some(Self::show_fdinfo)
        } else {
            None
        },
        llseek: Some(bindings::noop_llseek),
        ..pin_init::zeroed()
    };
}
