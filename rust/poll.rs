// SPDX-License-Identifier: GPL-2.0

//! `poll(2)` event bits, as returned by a `poll` file operation.
//!
//! C header: [`include/uapi/asm-generic/poll.h`](srctree/include/uapi/asm-generic/poll.h).

use kernel::bindings;

/// There is data to read.
pub(crate) const POLLIN: u32 = bindings::POLLIN;
/// Normal data may be read.
pub(crate) const POLLRDNORM: u32 = bindings::POLLRDNORM;
/// Writing is possible.
pub(crate) const POLLOUT: u32 = bindings::POLLOUT;
/// Normal data may be written.
pub(crate) const POLLWRNORM: u32 = bindings::POLLWRNORM;
/// The other end hung up; no further operations are possible.
pub(crate) const POLLHUP: u32 = bindings::POLLHUP;
