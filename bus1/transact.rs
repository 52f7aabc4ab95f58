// SPDX-License-Identifier: GPL-2.0

//! The one-call round trip: `RECV` with `BUS1_RECV_FLAG_WAIT`, and `TRANSACT`.
//!
//! Both are ABI extensions on top of RFC v1; clients of RFC v1 and of the 2017 ABI never see
//! them (an old module rejects the flag with `EINVAL` and the command with `ENOTTY`).
//!
//! - `RECV` with `WAIT` is the plain `RECV`; only if that finds nothing does it sleep
//!   interruptibly, trying again after every wake-up, until it receives something or the peer is
//!   shut down. A receiver that loses a race for the message sleeps again, on what is left of
//!   its timeout. It replaces `poll()` + `RECV`.
//! - `TRANSACT` runs `SLICE_RELEASE`, `SEND` and `RECV` in one call, in that order, each stage
//!   only if asked for. Each stage is the standalone command on the same arguments, with its
//!   ordering and accounting; the send commits before the receive stage starts waiting, so the
//!   global order is that of the three separate calls. Unknown flags in any part are rejected
//!   before any stage runs; a failing stage stops the call, and `done` tells user space which
//!   stages completed before it.
//!
//! The release stage runs inside the send stage when there is one ([`ReleaseFirst`]), in the
//! critical section that resolves the destination, and still before anything the send does.
//!
//! A wait ends with `EINTR` when a signal arrives and is never restarted (as `epoll_wait()`):
//! a restarted `TRANSACT` would release and send a second time. For the same reason a signal
//! that interrupts the send stage (waiting for another call that is creating nodes) after the
//! release stage completed ends the call with `EINTR`; with no stage completed it is restarted
//! as `SEND` is. A wait ends with `ETIMEDOUT` when the timeout (nanoseconds, rounded up to
//! scheduler ticks plus the tick under way, so never early; `0` is none) runs out. `WAIT`
//! waits even on an `O_NONBLOCK` file: the flag is the explicit request.

use super::{
    ioctl::{
        read_wait_timeout,
        write_recv_msg, //
    },
    Peer, //
};
use crate::{
    ext::{
        errno::ESHUTDOWN,
        fd::IoctlContext,
        poll::WaitTimeout,
        uaccess_ext::UserPtrExt, //
    },
    recv::{
        Received,
        RecvArgs,
        ReleaseFirst, //
    },
    send::SEND_FLAGS,
    uapi,
};
use core::mem::{
    offset_of,
    MaybeUninit, //
};
use kernel::{
    prelude::*,
    sync::Arc,
    uaccess::UserPtr, //
};

/// The flags RFC v1 `RECV` knows, with the `WAIT` extension.
const RECV_FLAGS: u64 = uapi::BUS1_RECV_FLAG_PEEK
    | uapi::BUS1_RECV_FLAG_SEED
    | uapi::BUS1_RECV_FLAG_INSTALL_FDS
    | uapi::BUS1_RECV_FLAG_WAIT;

/// The stages `TRANSACT` knows.
const TRANSACT_FLAGS: u64 = uapi::BUS1_TRANSACT_FLAG_RELEASE
    | uapi::BUS1_TRANSACT_FLAG_SEND
    | uapi::BUS1_TRANSACT_FLAG_RECV;

/// Checks the flags of an RFC v1 `RECV`: known, and `WAIT` not with `SEED` (the seed is not
/// queued, so there is nothing to wait for).
pub(crate) fn check_recv_flags(flags: u64) -> Result {
    if recv_flags_valid(flags) {
        Ok(())
    } else {
        Err(EINVAL)
    }
}

/// [`check_recv_flags`] as a `bool`, for a caller that combines it with other checks.
#[inline(always)]
#[allow(
    clippy::needless_bitwise_bool,
    reason = "one branch on both checks, as its callers combine theirs"
)]
fn recv_flags_valid(flags: u64) -> bool {
    let wait_seed = uapi::BUS1_RECV_FLAG_WAIT | uapi::BUS1_RECV_FLAG_SEED;
    (flags & !RECV_FLAGS == 0) & (flags & wait_seed != wait_seed)
}

impl Peer {
    /// `RECV` that first waits until the queue is readable, for at most `timeout_ns` (`0`: no
    /// timeout). Fails with `EINTR`, `ETIMEDOUT`, or `ESHUTDOWN` once the peer was disconnected.
    pub(crate) fn recv_wait(self: &Arc<Self>, a: RecvArgs, timeout_ns: u64) -> Result<Received> {
        let mut timeout = WaitTimeout::from_ns(timeout_ns);
        loop {
            // The queue may be readable (the hint that `RECV` checks first, without the lock):
            // try to receive. Otherwise wait until it may be, or the peer was shut down; a
            // receive would only find out again that there is nothing.
            if !self.maybe_readable() {
                self.waitq
                    .wait_until(|| self.is_shutdown() || self.maybe_readable(), &mut timeout)?;
                if self.is_shutdown() {
                    return Err(ESHUTDOWN());
                }
            }
            // The receive is never inside the wait: its result is returned where it is built,
            // not moved out of the wait's condition. A receiver that loses the race for the
            // message (`EAGAIN`) waits again, on what is left of the timeout.
            match self.recv(a) {
                Err(e) if e == EAGAIN => {}
                r => return r,
            }
        }
    }

    /// `TRANSACT`.
    #[allow(
        clippy::needless_bitwise_bool,
        reason = "one branch on every check: a valid argument takes no branch per check"
    )]
    pub(crate) fn cmd_transact(self: &Arc<Self>, arg: usize, ctx: &IoctlContext) -> Result<isize> {
        // Only the input is read (the receive stage's message description is output, but for
        // the timeout of `WAIT`), where it stays: the 128 bytes are not moved after the copy.
        let mut slot = MaybeUninit::uninit();
        let t: &uapi::TransactInput =
            UserPtr::from_addr(arg).read_head_into(size_of::<uapi::Transact>(), &mut slot)?;
        let send = t.flags & uapi::BUS1_TRANSACT_FLAG_SEND != 0;
        let recv = t.flags & uapi::BUS1_TRANSACT_FLAG_RECV != 0;
        let msg_at = arg.wrapping_add(offset_of!(uapi::Transact, msg));
        let timeout = if recv {
            read_wait_timeout(msg_at, t.recv.flags)?
        } else {
            0
        };
        // Every flag of every stage is checked before the first stage has any effect, with one
        // branch on all of them (`|`, not `||`), as `SEND` checks its argument.
        let invalid = (t.flags & !TRANSACT_FLAGS != 0)
            | (t.reserved != 0)
            | (send & (t.send.flags & !SEND_FLAGS != 0))
            | (recv & !recv_flags_valid(t.recv.flags));
        if invalid {
            return Err(EINVAL);
        }

        let mut done = 0u64;
        let mut res = self.transact_stages(t, timeout, msg_at, ctx, &mut done);
        // A completed stage is not undone, so a call that completed one is never restarted: a
        // signal that interrupts a later stage (`SEND` waiting for another call of this peer
        // that is creating nodes) ends it with `EINTR`, as a restart would run the completed
        // stages again (release a slice twice, send twice).
        if done != 0 && matches!(res, Err(e) if e == ERESTARTSYS) {
            res = Err(EINTR);
        }

        // `done` is written back in every case.
        let base = arg.wrapping_add(offset_of!(uapi::Transact, input.done));
        UserPtr::from_addr(base).write_from(&done)?;
        res?;
        Ok(0)
    }

    /// Runs the stages of the `TRANSACT` `t`, whose receive stage's message description is at
    /// user address `msg_at`, adding each one that completes to `done`. Inlined: called once, with
    /// many arguments to pass.
    #[inline(always)]
    fn transact_stages(
        self: &Arc<Self>,
        t: &uapi::TransactInput,
        timeout: u64,
        msg_at: usize,
        ctx: &IoctlContext,
        done: &mut u64,
    ) -> Result {
        let release = t.flags & uapi::BUS1_TRANSACT_FLAG_RELEASE != 0;
        if t.flags & uapi::BUS1_TRANSACT_FLAG_SEND != 0 {
            // The release runs inside the send stage, before the send's first effect (see
            // `ReleaseFirst`), or after a send that failed before reaching it: it comes first
            // in every effect, and its error is the call's.
            let mut first = if release {
                ReleaseFirst::new(t.release_offset)
            } else {
                ReleaseFirst::none()
            };
            let res = self.send(&t.send, ctx, &mut first);
            first.run(self)?;
            if first.released() {
                *done |= uapi::BUS1_TRANSACT_FLAG_RELEASE;
            }
            res?;
            *done |= uapi::BUS1_TRANSACT_FLAG_SEND;
        } else if release {
            self.slice_release(t.release_offset)?;
            *done |= uapi::BUS1_TRANSACT_FLAG_RELEASE;
        }
        if t.flags & uapi::BUS1_TRANSACT_FLAG_RECV != 0 {
            let mut slot = MaybeUninit::uninit();
            let msg = self.recv_v1(&t.recv, timeout, &mut slot)?;
            // Received: `done` says so even if the copy out faults.
            *done |= uapi::BUS1_TRANSACT_FLAG_RECV;
            write_recv_msg(msg_at, msg)?;
        }
        Ok(())
    }
}
