// SPDX-License-Identifier: GPL-2.0

//! A peer's limits: the resources charged to the peer and, one level up, to its user (the
//! principal), with the quota that bounds what one sending principal may hold of them.

#![deny(unsafe_code)]

use crate::{
    ext::errno::EDQUOT,
    quota::{
        self,
        Charge,
        Ledger,
        ShareReservation, //
    },
    user::{
        OpenPeer,
        UserRef, //
    },
};
use kernel::{
    alloc::Flags,
    prelude::*,
    rbtree::RBTreeNodeReservation, //
};

/// Share entries for one sending user, at the peer and at the user level, allocated before the
/// locks are taken.
pub(crate) struct ShareReservations {
    /// For the peer's ledger.
    peer: ShareReservation,
    /// For the user's ledger.
    user: ShareReservation,
}

impl ShareReservations {
    /// Allocates both entries with `flags`.
    pub(crate) fn new(flags: Flags) -> Result<Self> {
        Ok(ShareReservations {
            peer: RBTreeNodeReservation::new(flags)?,
            user: RBTreeNodeReservation::new(flags)?,
        })
    }
}

/// A peer's accounts and, one level up, its user's.
///
/// Every charge goes to both levels, all or nothing: the peer's [`Ledger`] (limits set through
/// `PEER_RESET`) and its user's (module parameters). The user's ledger is locked inside this
/// peer's `inner` lock.
///
/// What every charge reads comes first, the user and then the peer's ledger (see
/// [`crate::peer::PeerInner`]).
#[repr(C)]
pub(crate) struct Limits {
    /// The user this peer is charged to.
    pub(crate) user: UserRef,
    /// This peer's accounts.
    pub(crate) ledger: Ledger,
    /// This peer's place among its user's open peers, given back at disconnect.
    open: Option<OpenPeer>,
}

impl Limits {
    /// The limits of a new peer of `user`: the user's maxima. `EMFILE` if the user has as many
    /// open peers as it may.
    pub(crate) fn new(user: UserRef) -> Result<Self> {
        let open = Some(user.open_peer()?);
        let max = {
            let l = user.user().ledger();
            [
                l.max(quota::SLICES),
                l.max(quota::HANDLES),
                l.max(quota::BYTES),
                l.max(quota::FDS),
            ]
        };
        Ok(Limits {
            user,
            open,
            ledger: Ledger::new(max),
        })
    }

    /// The peer was disconnected: it no longer counts among its user's open peers.
    pub(crate) fn close(&mut self) {
        self.open = None;
    }

    /// Returns the handle limit, which also bounds the length of ID arrays.
    pub(crate) fn max_handles(&self) -> u32 {
        self.ledger.max(quota::HANDLES)
    }

    /// Charges `c` to the peer and its user, without a quota: for what a peer takes itself.
    // Inlined: on every message's path, where a call would cost about as much as the body.
    #[inline(always)]
    pub(crate) fn charge(&mut self, c: &Charge) -> Result {
        let mut u = self.user.user().ledger();
        if !self.ledger.fits(c) || !u.fits(c) {
            self.ledger.note_denied();
            u.note_denied();
            return Err(EDQUOT());
        }
        self.ledger.take(c);
        u.take(c);
        Ok(())
    }

    /// Gives `c` back to the peer and its user.
    pub(crate) fn discharge(&mut self, c: &Charge) {
        self.ledger.give(c);
        self.user.user().ledger().give(c);
    }

    /// Charges `c` on behalf of the sending principal `sender`, subject to the quota at both
    /// levels and to fairness among the principal's peers ([`quota::sibling_allows`]).
    ///
    /// Returns `Ok(false)`, changing nothing, if the charge is allowed but share entries for
    /// `sender` are missing, `res` is [`None`] and no idle entries are kept (see
    /// [`Ledger::unshare`]): the caller allocates them unlocked and tries again. A refused
    /// charge fails first, so it never needs entries.
    pub(crate) fn charge_quota(
        &mut self,
        sender: u32,
        c: &Charge,
        res: Option<ShareReservations>,
    ) -> Result<bool> {
        let user = self.user.user();
        let mut u = user.ledger();
        let p = user.policy();
        // One lookup of the sender's entry per level serves the three rules and tells whether
        // entries are missing.
        let (user_entry, peer_entry) = (u.entry(sender), self.ledger.entry(sender));
        let (user_share, peer_share) = (
            user_entry.unwrap_or_default(),
            peer_entry.unwrap_or_default(),
        );
        if !u.share_allows(p, &user_share, c)
            || !self.ledger.share_allows(p, &peer_share, c)
            || !quota::sibling_allows(p, &u, &user_share, &peer_share, c)
        {
            self.ledger.note_denied();
            u.note_denied();
            return Err(EDQUOT());
        }
        if user_entry.is_none() || peer_entry.is_none() {
            match res {
                Some(res) => {
                    self.ledger.add_entry(sender, res.peer);
                    u.add_entry(sender, res.user);
                }
                // The idle entries kept from shares that dropped to zero, where both levels have
                // one (checked first, so nothing changes otherwise).
                None if self.ledger.can_add_kept_entry(sender) && u.can_add_kept_entry(sender) => {
                    self.ledger.add_kept_entry(sender);
                    u.add_kept_entry(sender);
                }
                None => return Ok(false),
            }
        }
        u.take_shared(sender, c);
        self.ledger.take_shared(sender, c);
        Ok(true)
    }

    /// Removes `shared` from `sender`'s shares and gives `charged` back, at both levels.
    // Inlined: on every message's path, where a call would cost about as much as the body.
    #[inline(always)]
    pub(crate) fn release(&mut self, sender: u32, shared: &Charge, charged: &Charge) {
        // A user's messages to itself hold no share: no share entry to look up.
        let shares = !shared.is_zero();
        let mut u = self.user.user().ledger();
        if shares {
            u.unshare(sender, shared);
        }
        u.give(charged);
        if shares {
            self.ledger.unshare(sender, shared);
        }
        self.ledger.give(charged);
    }

    /// Returns `n` slices.
    pub(crate) fn discharge_slices(&mut self, n: u64) {
        self.discharge(&Charge::one(quota::SLICES, n));
    }

    /// Fails with `EDQUOT` unless `n` more handle references fit.
    pub(crate) fn check_handles(&self, n: u64) -> Result {
        let c = Charge::one(quota::HANDLES, n);
        if self.ledger.fits(&c) && self.user.user().ledger().fits(&c) {
            Ok(())
        } else {
            Err(EDQUOT())
        }
    }

    /// Charges `n` handle references.
    pub(crate) fn charge_handles(&mut self, n: u64) -> Result {
        self.charge(&Charge::one(quota::HANDLES, n))
    }

    /// Returns `n` handle references.
    pub(crate) fn discharge_handles(&mut self, n: u64) {
        self.discharge(&Charge::one(quota::HANDLES, n));
    }
}

#[kunit_tests(bus1_limits)]
mod tests {
    use super::*;

    /// UIDs no real test task uses.
    const RECEIVER: u32 = 0x7fff_0052;
    const SENDER: u32 = 0x7fff_0053;
    const OTHER: u32 = 0x7fff_0054;

    /// The number of share entries at the peer and at the user level.
    fn entries(l: &Limits) -> (usize, usize) {
        (l.ledger.entries(), l.user.user().ledger().entries())
    }

    /// The number of senders holding a share at the peer and at the user level.
    fn senders(l: &Limits) -> (u64, u64) {
        (l.ledger.senders(), l.user.user().ledger().senders())
    }

    #[test]
    fn share_entries_come_and_go_with_the_share() -> Result {
        let mut l = Limits::new(UserRef::get(RECEIVER)?)?;
        let c = Charge([1, 0, 8, 0]);
        // A refused charge fails before it could need entries.
        let huge = Charge([u64::from(u32::MAX), 0, 0, 0]);
        assert_eq!(l.charge_quota(SENDER, &huge, None), Err(EDQUOT()));
        // A sender without a share needs entries: without them nothing changes.
        assert_eq!(l.charge_quota(SENDER, &c, None), Ok(false));
        assert_eq!(entries(&l), (0, 0));
        let res = ShareReservations::new(GFP_KERNEL)?;
        assert_eq!(l.charge_quota(SENDER, &c, Some(res)), Ok(true));
        assert_eq!(entries(&l), (1, 1));
        // A sender with a share needs none.
        assert_eq!(l.charge_quota(SENDER, &c, None), Ok(true));
        l.release(SENDER, &c, &c);
        assert_eq!(entries(&l), (1, 1));
        // The last of the share leaves both entries idle, holding nothing.
        l.release(SENDER, &c, &c);
        assert_eq!(entries(&l), (1, 1));
        assert_eq!(senders(&l), (0, 0));
        Ok(())
    }

    #[test]
    fn next_share_takes_the_kept_entries() -> Result {
        let mut l = Limits::new(UserRef::get(RECEIVER)?)?;
        let c = Charge([1, 0, 8, 0]);
        let res = ShareReservations::new(GFP_KERNEL)?;
        assert_eq!(l.charge_quota(SENDER, &c, Some(res)), Ok(true));
        l.release(SENDER, &c, &c);
        assert_eq!((entries(&l), senders(&l)), ((1, 1), (0, 0)));
        // A request and its answer: the sender's next charge finds its idle entries at both
        // levels, and needs no reservation.
        assert_eq!(l.charge_quota(SENDER, &c, None), Ok(true));
        assert_eq!((entries(&l), senders(&l)), ((1, 1), (1, 1)));
        assert_eq!(l.ledger.share(SENDER), c);
        l.release(SENDER, &c, &c);
        // Another sender's charge takes the idle entries' memory.
        assert_eq!(l.charge_quota(OTHER, &c, None), Ok(true));
        assert_eq!((entries(&l), senders(&l)), ((1, 1), (1, 1)));
        assert_eq!(l.ledger.share(OTHER), c);
        l.release(OTHER, &c, &c);
        Ok(())
    }

    #[test]
    fn kept_entries_serve_only_both_levels_at_once() -> Result {
        // Two peers of one user: the user's ledger keeps what the first peer's share left.
        let mut first = Limits::new(UserRef::get(RECEIVER)?)?;
        let mut second = Limits::new(UserRef::get(RECEIVER)?)?;
        let c = Charge([1, 0, 8, 0]);
        let res = ShareReservations::new(GFP_KERNEL)?;
        assert_eq!(first.charge_quota(SENDER, &c, Some(res)), Ok(true));
        first.release(SENDER, &c, &c);
        // The second peer's ledger has no entry idle: the charge needs a reservation, and
        // changes nothing, the user's idle entry included, without it.
        assert_eq!(second.charge_quota(SENDER, &c, None), Ok(false));
        assert_eq!((entries(&second), senders(&second)), ((0, 1), (0, 0)));
        let res = ShareReservations::new(GFP_KERNEL)?;
        assert_eq!(second.charge_quota(SENDER, &c, Some(res)), Ok(true));
        assert_eq!(entries(&second), (1, 1));
        second.release(SENDER, &c, &c);
        Ok(())
    }
}
