// SPDX-License-Identifier: GPL-2.0

//! Safe abstractions over kernel C APIs that the Linux 7.2 `kernel` crate lacks.
//!
//! This is the only part of bus1 that uses `unsafe` or `kernel::bindings`. Each
//! file is written in the `kernel` crate's style so it could be proposed
//! upstream on its own; the rest of the module only uses the safe interfaces
//! exported here.

pub(crate) mod arc_ref;
pub(crate) mod bimap;
pub(crate) mod errno;
pub(crate) mod fd;
pub(crate) mod file_ext;
pub(crate) mod gfp;
pub(crate) mod global;
pub(crate) mod memcg;
pub(crate) mod miscdevice;
pub(crate) mod param;
pub(crate) mod poll;
pub(crate) mod shmem;
pub(crate) mod task_ext;
pub(crate) mod transmute;
pub(crate) mod uaccess_ext;
