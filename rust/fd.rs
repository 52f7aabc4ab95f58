// SPDX-License-Identifier: GPL-2.0

//! File descriptors passed through ioctls: taking files from the caller's fd table and
//! reserving close-on-exec descriptors to install received files.
//!
//! C header: [`include/linux/file.h`](srctree/include/linux/file.h).

use core::ptr::NonNull;
use kernel::{
    bindings,
    fs::file::{
        File,
        FileDescriptorReservation, //
    },
    prelude::*,
    sync::aref::ARef,
};

/// Proof that the current thread is inside a `file_operations::unlocked_ioctl` call of a
/// driver that never uses `fdget_pos`.
///
/// Only the misc-device ioctl trampoline creates it, and it cannot leave the call because it is
/// handed out by reference.
///
/// # Invariants
///
/// While a value exists, the current thread runs an ioctl handler of this module and has no
/// active `fdget_pos` call.
pub(crate) struct IoctlContext {
    _private: (),
}

impl IoctlContext {
    /// Creates the proof.
    ///
    /// # Safety
    ///
    /// Must only be called by an ioctl trampoline, and the value must not outlive the call.
    pub(crate) unsafe fn new() -> Self {
        // INVARIANT: Guaranteed by the caller.
        IoctlContext { _private: () }
    }

    /// Takes a reference to the file behind `fd` of the current task, which may then be shared
    /// with other tasks (to pass it in a message). `O_PATH` descriptors are accepted too, as
    /// `SCM_RIGHTS` accepts them.
    pub(crate) fn fget(&self, fd: u32) -> Result<ARef<File>> {
        // SAFETY: FFI call, there are no requirements on `fd`.
        let ptr = NonNull::new(unsafe { bindings::fget_raw(fd) }).ok_or(EBADF)?;
        // SAFETY: `fget_raw` took a reference, which the `ARef` now owns. By the type invariants
        // the current thread runs an ioctl of this module, which never calls `fdget_pos`, so
        // the file may be used as a `File` that is shared across threads.
        Ok(unsafe { ARef::from_raw(ptr.cast()) })
    }
}

/// Reserves a file descriptor in the current task with `O_CLOEXEC` set, as bus1 installs every
/// received file.
pub(crate) fn reserve_cloexec() -> Result<FileDescriptorReservation> {
    FileDescriptorReservation::get_unused_fd_flags(bindings::O_CLOEXEC)
}
