// SPDX-License-Identifier: GPL-2.0
//! The one-call round trip: [`Peer::recv_wait`] (`RECV` with
//! `BUS1_RECV_FLAG_WAIT`) and [`Peer::call`] / [`Peer::reply_and_wait`]
//! (`BUS1_CMD_TRANSACT`).
//!
//! On a module without the extension (`EINVAL` for the flag, `ENOTTY` for
//! the command, before anything happened) they fall back to the separate
//! RFC v1 calls, with the same result.

use crate::message::{Message, MessageInfo};
use crate::peer::{ioctl_rw, CMD_RECV};
use crate::{HandleId, Peer};
use bus1_sys as sys;
use rustix::io::Errno;
use rustix::ioctl::Opcode;
use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

const CMD_TRANSACT: Opcode = sys::BUS1_CMD_TRANSACT as Opcode;

/// The kernel's timeout encoding: nanoseconds, `0` for none.
fn timeout_ns(t: Option<Duration>) -> u64 {
    match t {
        None => 0,
        Some(d) => u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1),
    }
}

fn is_errno(e: &io::Error, n: Errno) -> bool {
    e.raw_os_error() == Some(n.raw_os_error())
}

impl Peer {
    /// Waits in the kernel up to `timeout` (`None`: forever) for a message
    /// and receives it, in one system call; carried files are installed.
    ///
    /// Errors: `TimedOut` (`ETIMEDOUT`) when the time is up, `Interrupted`
    /// (`EINTR`) when a signal arrived (never restarted), `ESHUTDOWN` once
    /// the peer is disconnected.
    pub fn recv_wait(&self, timeout: Option<Duration>) -> io::Result<Message<'_>> {
        let mut r = sys::bus1_cmd_recv {
            flags: sys::BUS1_RECV_FLAG_WAIT | sys::BUS1_RECV_FLAG_INSTALL_FDS,
            max_offset: self.pool_len() as u64,
            ..Default::default()
        };
        r.msg.offset = timeout_ns(timeout);
        // SAFETY: RECV takes a bus1_cmd_recv.
        match unsafe { ioctl_rw::<CMD_RECV, _>(self.as_fd(), &mut r) } {
            Ok(()) => Message::new(self, MessageInfo::from_raw(&r.msg), true, true),
            Err(e) if is_errno(&e, Errno::INVAL) => self.recv_timeout(timeout),
            Err(e) => Err(e),
        }
    }

    /// One round trip in one system call: sends `payload` to `dst`, then
    /// waits up to `timeout` (`None`: forever) for the next message and
    /// receives it (`BUS1_CMD_TRANSACT`).
    ///
    /// If the wait fails (`TimedOut`, `Interrupted`), the request was sent:
    /// wait for the answer with [`recv_wait`](Peer::recv_wait), do not call
    /// again.
    pub fn call(&self, dst: impl Into<HandleId>, payload: &[u8], timeout: Option<Duration>) -> io::Result<Message<'_>> {
        self.transact(None, dst.into(), payload, timeout)
    }

    /// As [`call`](Peer::call), and gives `done`'s slice back in the same
    /// system call, before sending: the loop of a server that answers one
    /// request and waits for the next.
    pub fn reply_and_wait<'p>(
        &'p self,
        mut done: Message<'p>,
        dst: impl Into<HandleId>,
        payload: &[u8],
        timeout: Option<Duration>,
    ) -> io::Result<Message<'p>> {
        let off = done.take_release();
        drop(done);
        self.transact(off, dst.into(), payload, timeout)
    }

    fn transact(
        &self,
        release: Option<u64>,
        dst: HandleId,
        payload: &[u8],
        timeout: Option<Duration>,
    ) -> io::Result<Message<'_>> {
        let d = dst.as_raw();
        let v = io::IoSlice::new(payload);
        let mut t = sys::bus1_cmd_transact {
            flags: sys::BUS1_TRANSACT_FLAG_SEND
                | sys::BUS1_TRANSACT_FLAG_RECV
                | if release.is_some() { sys::BUS1_TRANSACT_FLAG_RELEASE } else { 0 },
            release_offset: release.unwrap_or(sys::BUS1_OFFSET_INVALID),
            send: sys::bus1_cmd_send {
                ptr_destinations: &d as *const u64 as u64,
                n_destinations: 1,
                ptr_vecs: &v as *const io::IoSlice<'_> as u64,
                n_vecs: 1,
                ..Default::default()
            },
            recv: sys::bus1_cmd_recv {
                flags: sys::BUS1_RECV_FLAG_WAIT | sys::BUS1_RECV_FLAG_INSTALL_FDS,
                max_offset: self.pool_len() as u64,
                ..Default::default()
            },
            ..Default::default()
        };
        t.recv.msg.offset = timeout_ns(timeout);
        // SAFETY: TRANSACT takes a bus1_cmd_transact; the destination and
        // the iovec outlive the call, and IoSlice is ABI-compatible with
        // struct iovec.
        match unsafe { ioctl_rw::<CMD_TRANSACT, _>(self.as_fd(), &mut t) } {
            Ok(()) => Message::new(self, MessageInfo::from_raw(&t.recv.msg), true, true),
            Err(e) if is_errno(&e, Errno::NOTTY) => {
                // No TRANSACT in this module: nothing happened yet.
                if let Some(off) = release {
                    self.release_slice(off)?;
                }
                self.send_to(dst, payload)?;
                self.recv_timeout(timeout)
            }
            Err(e) => {
                // A slice the call did not get to release is still ours.
                if let Some(off) = release.filter(|_| t.done & sys::BUS1_TRANSACT_FLAG_RELEASE == 0) {
                    let _ = self.release_slice(off);
                }
                Err(e)
            }
        }
    }
}
