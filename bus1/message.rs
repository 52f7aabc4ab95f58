// SPDX-License-Identifier: GPL-2.0

//! Data messages: the copy of a message queued for one receiver, and what it holds.
//!
//! A `SEND` (`send.rs`) builds one [`Message`] per destination; `RECV` (`recv.rs`) takes it off
//! the queue. Each copy owns a slice in its receiver's
//! pool, into which the payload is copied once, straight from the sender's iovecs, before the
//! copy is staged. Handles and files travel in a [`Cargo`] shared by all copies of one `SEND`.
//! `RECV` turns the front copy into handles, file descriptors and a published slice.
//!
//! # Resources a queued copy holds
//!
//! - its slice (freed when the copy is dropped unreceived; after `RECV` it belongs to the
//!   receiver until `SLICE_RELEASE`), charged as one slice to the receiver and its user;
//! - `n_handles` handle references charged to them (kept for handles delivered by `RECV`, which
//!   become user references, and returned for the rest);
//! - the slice's size in in-flight bytes and `n_fds` in-flight file descriptors, charged to them
//!   until the copy is received or dropped;
//! - all of the above as the sending user's share of the receiver's resources, which the quota
//!   bounds (see [`crate::quota`]), until the copy is received or dropped;
//! - one in-flight strong reference on every carried node that was live at `SEND`, which keeps
//!   `NODE_RELEASE` from firing while the message is in flight.
//!
//! Dropping a copy gives all of that back, which takes the receiver's lock, its pool lock and the
//! carried nodes' owners' locks. **A [`Message`] is therefore never dropped while any peer lock
//! is held**: queues hand removed entries out (or detach them without allocating) so that the
//! caller drops them after unlocking.
//!
//! This module does not know the peer type: a message is generic over `P`, the type of its
//! receiver and of the owners of the nodes it names, which implements [`Receiver`] for what
//! dropping a copy needs of them.

#![deny(unsafe_code)]

use crate::{
    ext::{errno::ENOTRECOVERABLE, task_ext::SenderIds},
    limits::Limits,
    node::Node,
    quota::Charge,
};
use core::mem::MaybeUninit;
use kernel::{
    fs::file::File,
    prelude::*,
    sync::{
        aref::ARef,
        Arc, //
    },
};

/// The layout of a data slice: payload, then handle IDs, then file descriptor numbers, then
/// the sender's security context, each part starting 8-aligned.
///
/// # Invariants
///
/// `n_bytes` is at most `MAX_RW_COUNT`, `n_handles` and `n_secctx` fit in a `u32` and `n_fds` is
/// at most `BUS1_FD_MAX` (`SEND` checks them), so every offset is below 2^36 and the offsets are
/// computed without overflow checks: they are computed for every message.
#[derive(Clone, Copy)]
pub(crate) struct SliceLayout {
    /// Payload size.
    pub(crate) n_bytes: u64,
    /// Number of handle IDs.
    pub(crate) n_handles: u64,
    /// Number of file descriptors.
    pub(crate) n_fds: u64,
    /// Size of the sender's security context, if this copy carries one (its receiver asked for
    /// it and a security module provided one, possibly empty).
    pub(crate) n_secctx: Option<u64>,
}

/// Rounds `n`, which is far below `u64::MAX` (see [`SliceLayout`]), up to a multiple of 8.
fn align8(n: u64) -> u64 {
    n.wrapping_add(7) & !7
}

impl SliceLayout {
    /// Offset of the handle IDs within the slice.
    pub(crate) fn handles_at(&self) -> u64 {
        align8(self.n_bytes)
    }

    /// Offset of the file descriptor numbers within the slice.
    pub(crate) fn fds_at(&self) -> u64 {
        self.handles_at()
            .wrapping_add(self.n_handles.wrapping_mul(8))
    }

    /// Offset of the security context within the slice.
    pub(crate) fn secctx_at(&self) -> u64 {
        self.fds_at()
            .wrapping_add(align8(self.n_fds.wrapping_mul(4)))
    }

    /// Size of the slice; an empty message still takes 8 bytes.
    pub(crate) fn size(&self) -> u64 {
        self.secctx_at()
            .wrapping_add(align8(self.n_secctx.unwrap_or(0)))
            .max(8)
    }
}

/// What dropping a message needs of the peers it involves: its receiver, whose pool holds the
/// slice and whose limits were charged, and the owners of the nodes it carries.
pub(crate) trait Receiver: Sized {
    /// Frees the unpublished slice `slice`, if any, in the peer's pool and gives `charged` back
    /// to the peer and its user, `shared` of it being the share of the sending user
    /// `sender_uid`. Takes the peer's lock once.
    fn give_back(&self, slice: Option<u64>, sender_uid: u32, shared: &Charge, charged: &Charge);
    /// Drops `n` in-flight strong references on `node`, queueing a release notification on its
    /// owner if they were the last strong references. Takes the owner's lock; never allocates.
    fn put_inflight(node: &Node<Self>, n: u64);
}

/// What one `SEND` carries besides its payload, shared by all of its copies.
pub(crate) struct Cargo<P> {
    /// Carried nodes; [`None`] for one that was no longer live at `SEND`.
    pub(crate) nodes: KVec<Option<Arc<Node<P>>>>,
    /// Carried files, pinned until the last copy is received or dropped.
    pub(crate) files: KVec<ARef<File>>,
}

/// One copy of a data message, queued on (or, for the seed, stored in) its receiver.
///
/// What the copy holds charged is not stored as a [`Charge`] but as what is left of the charge
/// of its layout ([`Message::charge_of`]), which keeps the copy within `kmalloc-128`.
///
/// # Invariants
///
/// - `slice` is allocated in `receiver`'s pool and not published, if it is `Some`.
/// - `size` is `layout.size()`.
/// - [`Message::charged`] is charged to `receiver` and its user: the slice while
///   `slice_charged`, `handles_charged` handle references, and the in-flight bytes and file
///   descriptors of the layout while `rest_charged`. If `shared`, the charge of the layout and
///   `size` ([`Message::charge_of`]) is part of `sender_uid`'s share at both levels.
/// - `slice_charged` is false once the slice was published (it is then charged until
///   `SLICE_RELEASE`), true before.
/// - `handles_charged` is at most `layout.n_handles`.
/// - If `inflight`, every live node in `cargo` holds one strong reference for this copy.
pub(crate) struct Message<P: Receiver> {
    /// The peer whose pool holds the slice and whose limits were charged.
    pub(crate) receiver: Arc<P>,
    /// The destination node (owned by `receiver`); [`None`] for the seed.
    pub(crate) node: Option<Arc<Node<P>>>,
    /// The slice's pool offset until it is published.
    pub(crate) slice: Option<u64>,
    /// The slice layout.
    pub(crate) layout: SliceLayout,
    /// The slice's size, `layout.size()`, which is also its charge in in-flight bytes. Kept
    /// (it fits the copy's `kmalloc-128`) so that `RECV`'s range check, the settling and the
    /// drop do not compute it again from the layout.
    pub(crate) size: u64,
    /// Who sent it, in the receiver's view (translated when it was sent).
    pub(crate) sender: SenderIds,
    /// Handles and files.
    pub(crate) cargo: Option<Arc<Cargo<P>>>,
    /// The handle references still charged: the layout's, less those `RECV` delivered.
    pub(crate) handles_charged: u64,
    /// The sending user (global UID).
    pub(crate) sender_uid: u32,
    /// Whether the slice is charged.
    pub(crate) slice_charged: bool,
    /// Whether the in-flight bytes and file descriptors are charged.
    pub(crate) rest_charged: bool,
    /// Whether the charge of the layout counts as the sending user's share.
    pub(crate) shared: bool,
    /// Whether the carried nodes hold this copy's in-flight references.
    pub(crate) inflight: bool,
}

impl<P: Receiver> Message<P> {
    /// The charge of a copy with `layout`, whose slice takes `size` bytes (`layout.size()`): one
    /// slice, its handle references, its size in in-flight bytes and its file descriptors.
    pub(crate) fn charge_of(layout: &SliceLayout, size: u64) -> Charge {
        Charge::new(1, layout.n_handles, size, layout.n_fds)
    }

    /// What the copy holds charged now, but its slice if `slice` is false.
    fn charged_but(&self, slice: bool) -> Charge {
        let (bytes, fds) = if self.rest_charged {
            (self.size, self.layout.n_fds)
        } else {
            (0, 0)
        };
        Charge::new(
            u64::from(slice & self.slice_charged),
            self.handles_charged,
            bytes,
            fds,
        )
    }

    /// What the copy holds charged now.
    pub(crate) fn charged(&self) -> Charge {
        self.charged_but(true)
    }

    /// What of the copy's charge counts as its sender's share now: all of the charge it was
    /// sent with, or nothing.
    fn shared(&self) -> Charge {
        if self.shared {
            Self::charge_of(&self.layout, self.size)
        } else {
            Charge::default()
        }
    }

    /// Whether the copy holds anything charged or shared.
    fn holds_charge(&self) -> bool {
        // A copy's in-flight bytes are never zero (a slice takes at least 8 bytes), so its rest
        // is charged exactly while `rest_charged`.
        self.slice_charged || self.handles_charged != 0 || self.rest_charged || self.shared
    }

    /// Returns the destination node.
    pub(crate) fn node(&self) -> Option<&Arc<Node<P>>> {
        self.node.as_ref()
    }

    /// Gives back what a dequeued copy without cargo holds, except its slice: its in-flight
    /// bytes and the sender's share. `limits` are the receiver's, whose lock the caller holds.
    ///
    /// Inline: once per `RECV`, in its critical section; as a call its two charges were built in
    /// memory for the callee (`make profile`: 9 instructions more per message).
    #[inline(always)]
    pub(crate) fn settle_dequeued(&mut self, limits: &mut Limits) {
        limits.release(self.sender_uid, &self.shared(), &self.charged_but(false));
        // INVARIANTS: What is left charged is the slice, until it is published.
        self.handles_charged = 0;
        self.rest_charged = false;
        self.shared = false;
    }

    /// Takes the slice out of the copy for its publication (`RECV`) and returns its offset: the
    /// published slice keeps its charge until `SLICE_RELEASE`, which the copy no longer holds.
    pub(crate) fn take_slice(&mut self) -> Option<u64> {
        let off = self.slice.take()?;
        // INVARIANTS: A published slice is no longer the copy's to free or discharge.
        self.slice_charged = false;
        Some(off)
    }

    /// Returns the memory of a received copy that holds nothing of its receiver any more (its
    /// slice published, nothing charged, no in-flight references), whose drop therefore takes
    /// none of the receiver's locks; `Err` with the copy otherwise, to be dropped with no lock
    /// held.
    // Inlined: on every message's path, where a call would cost about as much as the body.
    #[inline(always)]
    pub(crate) fn into_room(this: KBox<Self>) -> Result<KBox<MaybeUninit<Self>>, KBox<Self>> {
        // A copy without cargo holds no in-flight references, whatever its flag says.
        let inflight = this.inflight & this.cargo.is_some();
        if this.slice.is_some() | this.holds_charge() | inflight {
            return Err(this);
        }
        Ok(KBox::drop_contents(this))
    }

    /// Returns the end of the slice, for `RECV`'s `max_offset` check.
    pub(crate) fn slice_end(&self) -> Result<u64> {
        let off = self.slice.ok_or_else(ENOTRECOVERABLE)?;
        Ok(off.saturating_add(self.size))
    }
}

impl<P: Receiver> Drop for Message<P> {
    fn drop(&mut self) {
        let slice = self.slice.take();
        // As in `into_room`: tested at once.
        if slice.is_some() | self.holds_charge() {
            self.receiver
                .give_back(slice, self.sender_uid, &self.shared(), &self.charged());
        }
        if self.inflight {
            if let Some(cargo) = &self.cargo {
                for node in cargo.nodes.iter().flatten() {
                    P::put_inflight(node, 1);
                }
            }
        }
    }
}

#[kunit_tests(bus1_message)]
mod tests {
    use super::*;
    use kernel::sync::atomic::{ordering::Relaxed, Atomic};

    /// A receiver that records what the last dropped copy gave back: the slice (`u64::MAX` for
    /// none), the sending user, the share and the charge; `calls` counts the calls.
    struct Recorder {
        calls: Atomic<u64>,
        last: [Atomic<u64>; 10],
    }

    impl Receiver for Recorder {
        fn give_back(
            &self,
            slice: Option<u64>,
            sender_uid: u32,
            shared: &Charge,
            charged: &Charge,
        ) {
            self.calls.store(self.calls.load(Relaxed) + 1, Relaxed);
            let (s, c) = (shared.0, charged.0);
            let vals = [
                slice.unwrap_or(u64::MAX),
                u64::from(sender_uid),
                s[0],
                s[1],
                s[2],
                s[3],
                c[0],
                c[1],
                c[2],
                c[3],
            ];
            for (a, v) in self.last.iter().zip(vals) {
                a.store(v, Relaxed);
            }
        }

        fn put_inflight(_node: &Node<Self>, _n: u64) {}
    }

    impl Recorder {
        fn new() -> Result<Arc<Self>> {
            Ok(Arc::new(
                Recorder {
                    calls: Atomic::new(0),
                    last: core::array::from_fn(|_| Atomic::new(0)),
                },
                GFP_KERNEL,
            )?)
        }

        /// The number of calls so far and what the last one gave back.
        fn given(&self) -> (u64, [u64; 10]) {
            (
                self.calls.load(Relaxed),
                core::array::from_fn(|i| self.last[i].load(Relaxed)),
            )
        }
    }

    /// A copy of 5 payload bytes, 2 handles and 1 file descriptor to `r`, as `SEND` builds it
    /// (from user 7 to a peer of another user if `shared`).
    fn copy(r: &Arc<Recorder>, shared: bool) -> Message<Recorder> {
        let layout = SliceLayout {
            n_bytes: 5,
            n_handles: 2,
            n_fds: 1,
            n_secctx: None,
        };
        Message {
            receiver: r.clone(),
            node: None,
            slice: Some(4096),
            layout,
            size: layout.size(),
            sender: SenderIds {
                uid: 0,
                gid: 0,
                pid: 0,
                tid: 0,
            },
            cargo: None,
            handles_charged: layout.n_handles,
            sender_uid: 7,
            slice_charged: true,
            rest_charged: true,
            shared,
            inflight: false,
        }
    }

    /// What a copy holds, derived from its flags, against the charge of its layout (one slice,
    /// 2 handles, 32 bytes: 8 of payload, 16 of handle IDs and 8 for the fd) at each step: as
    /// sent, as `RECV` leaves it with one of its two handles delivered and its slice published,
    /// and what its drop gives back then.
    #[test]
    fn a_copy_gives_back_what_it_still_holds() -> Result {
        let r = Recorder::new()?;
        let full = [1, 2, 32, 1];
        // Dropped unreceived: the slice and the whole charge, and the share if cross-user.
        for shared in [false, true] {
            let m = copy(&r, shared);
            assert_eq!(m.charged().0, full);
            assert_eq!(m.shared().0, if shared { full } else { [0; 4] });
            drop(m);
            let share = if shared { full } else { [0; 4] };
            let (calls, last) = r.given();
            assert_eq!(last[..2], [4096, 7]);
            assert_eq!(last[2..6], share);
            assert_eq!(last[6..], full);
            assert_eq!(calls, if shared { 2 } else { 1 });
        }
        // Received with one handle delivered: the slice is published (no longer the copy's),
        // the delivered handle stays charged as the receiver's reference; the drop gives back
        // the other handle, the in-flight bytes and fd, and the whole share.
        let mut m = copy(&r, true);
        m.handles_charged -= 1;
        assert_eq!(m.take_slice(), Some(4096));
        assert_eq!(m.charged().0, [0, 1, 32, 1]);
        drop(m);
        let (calls, last) = r.given();
        assert_eq!(calls, 3);
        assert_eq!(last[..2], [u64::MAX, 7]);
        assert_eq!(last[2..6], full);
        assert_eq!(last[6..], [0, 1, 32, 1]);
        // Nothing left: no call, and its memory can be kept.
        let mut m = copy(&r, false);
        m.handles_charged = 0;
        m.rest_charged = false;
        assert!(m.take_slice().is_some());
        assert!(!m.holds_charge());
        let b = KBox::new(m, GFP_KERNEL)?;
        assert!(Message::into_room(b).is_ok());
        assert_eq!(r.given().0, 3);
        Ok(())
    }

    #[test]
    fn secctx_follows_the_fds_8_aligned() {
        let mut l = SliceLayout {
            n_bytes: 5,
            n_handles: 1,
            n_fds: 3,
            n_secctx: None,
        };
        // Payload 5 -> 8, one handle ID -> 16, three fds (12 bytes) -> 32.
        assert_eq!(l.handles_at(), 8);
        assert_eq!(l.fds_at(), 16);
        assert_eq!(l.secctx_at(), 32);
        assert_eq!(l.size(), 32);
        // A context of 10 bytes takes 16, charged with the rest of the slice.
        l.n_secctx = Some(10);
        assert_eq!(l.secctx_at(), 32);
        assert_eq!(l.size(), 48);
        // An empty context takes no room; an empty message with one still takes 8 bytes.
        l.n_secctx = Some(0);
        assert_eq!(l.size(), 32);
        let e = SliceLayout {
            n_bytes: 0,
            n_handles: 0,
            n_fds: 0,
            n_secctx: Some(0),
        };
        assert_eq!(e.secctx_at(), 0);
        assert_eq!(e.size(), 8);
        let c = SliceLayout {
            n_secctx: Some(11),
            ..e
        };
        assert_eq!(c.size(), 16);
    }
}
