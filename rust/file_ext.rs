// SPDX-License-Identifier: GPL-2.0

//! Files passed in messages.
//!
//! Installing received files needs no abstraction beyond the `kernel` crate:
//! [`FileDescriptorReservation::get_unused_fd_flags`] with [`flags::O_CLOEXEC`] reserves a
//! close-on-exec fd (and fails with `EMFILE` while nothing has changed yet), and
//! [`FileDescriptorReservation::fd_install`] commits it; dropping an uncommitted reservation
//! returns the fd. Reserving every fd of a message first and committing them all at the end is
//! what makes RECV all-or-nothing.
//!
//! `receive_fd()`, which `SCM_RIGHTS` uses, additionally calls the `security_file_receive()` LSM
//! hook and updates a socket's `net_cls`/`net_prio` cgroup data to the receiver's
//! (`__receive_sock()`). Neither is exported to modules, and `receive_fd()` itself installs the
//! fd at once, so it cannot be combined with all-or-nothing reservations. Binder does without
//! both as well.
//!
//! C header: [`include/linux/net.h`](srctree/include/linux/net.h).
//!
//! [`FileDescriptorReservation::get_unused_fd_flags`]: kernel::fs::file::FileDescriptorReservation::get_unused_fd_flags
//! [`FileDescriptorReservation::fd_install`]: kernel::fs::file::FileDescriptorReservation::fd_install
//! [`flags::O_CLOEXEC`]: kernel::fs::file::flags::O_CLOEXEC

use kernel::{
    bindings,
    fs::LocalFile,
    prelude::*, //
};

#[allow(
    improper_ctypes,
    reason = "only pointers cross the boundary; the lint trips over zero-sized bindgen fields"
)]
extern "C" {
    fn rust_bus1_file_is_io_uring(file: *mut bindings::file) -> bool;
}

/// Returns whether `file` is an io_uring instance.
///
/// bus1 refuses those in messages, as `SCM_RIGHTS` does: a ring's fixed-file table can hold
/// any file, a bus1 peer among them, so a ring sent to the peer it holds (or stored as that
/// peer's seed) would keep both alive forever. The kernel's `io_is_uring_fops()` is not
/// exported; every ring file is an anonymous inode named `[io_uring]`, which is what the C
/// helper checks. An `O_PATH` file of a ring yields `false`: it cannot carry anything.
pub(crate) fn is_io_uring(file: &LocalFile) -> bool {
    // SAFETY: `file` is valid by its type invariants; the helper only reads its mode, inode,
    // superblock and dentry name, which are fixed for the lifetime of the file.
    unsafe { rust_bus1_file_is_io_uring(file.as_ptr()) }
}

/// Returns whether `file` is an `AF_UNIX` socket.
///
/// bus1 refuses those in messages: a unix socket can itself carry files, bus1 peers among them,
/// and the reference cycles that allows can only be collected by a garbage collector such as
/// the one in `net/unix/garbage.c`, which bus1 does not have.
///
/// An `O_PATH` file of a socket is not a socket file and yields `false`, as in
/// `unix_get_socket()`; it cannot carry anything.
pub(crate) fn is_unix_socket(file: &LocalFile) -> bool {
    // SAFETY: `file` is valid by its type invariants; `sock_from_file()` only compares its
    // `f_op` and returns its private data if it is a socket file.
    let sock = unsafe { bindings::sock_from_file(file.as_ptr()) };
    if sock.is_null() {
        return false;
    }
    // SAFETY: The socket belongs to `file` and lives until its last reference is dropped. Its
    // `ops` may be replaced concurrently (`IPV6_ADDRFORM`), hence the volatile read, the Rust
    // equivalent of the `READ_ONCE()` in `unix_get_socket()`.
    let ops = unsafe { core::ptr::read_volatile(&raw const (*sock).ops) };
    // SAFETY: A socket's `ops` point to a static table of its protocol, which cannot be
    // unloaded while the socket uses it.
    !ops.is_null() && unsafe { (*ops).family } == bindings::AF_UNIX as c_int
}

#[kunit_tests(bus1_file_ext)]
mod tests {
    use super::*;
    use core::ptr::{
        self,
        NonNull, //
    };
    use kernel::{
        error::{
            from_err_ptr,
            to_result, //
        },
        fs::File,
        sync::aref::ARef, //
    };

    /// Takes over the reference of a freshly opened file, or its error.
    fn own_file(file: *mut bindings::file) -> Result<ARef<File>> {
        let file = from_err_ptr(file)?;
        let file = NonNull::new(file).ok_or(EINVAL)?;
        // SAFETY: `file` was just opened, so it carries one reference, handed over here, and no
        // `fdget_pos()` can be active on it; `File` is a transparent wrapper of `struct file`.
        Ok(unsafe { ARef::from_raw(file.cast()) })
    }

    /// Creates a kernel socket in the initial network namespace and wraps it in a file.
    fn socket_file(family: u32, kind: u32, protocol: u32) -> Result<ARef<File>> {
        let mut sock = ptr::null_mut();
        // CAST: Address families, socket types and IP protocol numbers are small.
        // SAFETY: `init_net` lives forever and `sock` is a valid place for the result.
        to_result(unsafe {
            bindings::sock_create_kern(
                &raw mut bindings::init_net,
                family as c_int,
                kind as c_int,
                protocol as c_int,
                &mut sock,
            )
        })?;
        // SAFETY: `sock` was just created and is handed over; `sock_alloc_file()` releases it
        // if it fails.
        own_file(unsafe { bindings::sock_alloc_file(sock, 0, ptr::null()) })
    }

    #[test]
    fn unix_sockets_are_detected() -> Result {
        let stream = socket_file(bindings::AF_UNIX, bindings::sock_type_SOCK_STREAM, 0)?;
        assert!(is_unix_socket(&stream));
        let dgram = socket_file(bindings::AF_UNIX, bindings::sock_type_SOCK_DGRAM, 0)?;
        assert!(is_unix_socket(&dgram));
        Ok(())
    }

    #[test]
    fn other_files_are_not_unix_sockets() -> Result {
        // Protocol 0 of an `AF_INET` datagram socket is UDP.
        let udp = socket_file(bindings::AF_INET, bindings::sock_type_SOCK_DGRAM, 0)?;
        assert!(!is_unix_socket(&udp));

        // CAST: The open flags fit in an `int`.
        let flags = (bindings::O_RDONLY | bindings::O_DIRECTORY) as c_int;
        // SAFETY: The path is a valid C string; `filp_open()` returns a file or an error.
        let root = own_file(unsafe { bindings::filp_open(c"/".as_char_ptr(), flags, 0) })?;
        assert!(!is_unix_socket(&root));
        Ok(())
    }
}
