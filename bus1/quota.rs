// SPDX-License-Identifier: GPL-2.0

//! Resource accounting and the uid-to-uid quota.
//!
//! Resources are charged to the *receiver*: to the receiving peer and to its user (the real UID
//! that opened it). Each of the two is a [`Ledger`]: per resource, a maximum and what remains of
//! it, plus the share every sending user currently holds there.
//!
//! A plain charge only has to fit into what remains. A charge on behalf of a sending user must
//! also pass the quota rule ([`allows`]) at both levels, so that no sending user can take more
//! than a bounded part of what other users have left over. That bound is what keeps a system
//! agent reachable when other users flood it: see `Documentation/bus1/quota.rst` for the rules and
//! the shares they guarantee.
//!
//! Everything here is pure bookkeeping: no locks, no allocation when charging (share entries are
//! inserted from reservations the caller made beforehand) and checked arithmetic throughout.

#![deny(unsafe_code)]

use kernel::{
    prelude::*,
    rbtree::{
        RBTree,
        RBTreeNodeReservation, //
    },
};

/// Index of the pool-slice resource.
pub(crate) const SLICES: usize = 0;
/// Index of the handle-reference resource.
pub(crate) const HANDLES: usize = 1;
/// Index of the in-flight byte resource.
pub(crate) const BYTES: usize = 2;
/// Index of the in-flight file-descriptor resource.
pub(crate) const FDS: usize = 3;
/// Number of resources.
pub(crate) const N_RES: usize = 4;
/// Resource names, as shown in fdinfo and debugfs.
pub(crate) const NAMES: [&str; N_RES] = ["slices", "handles", "bytes", "fds"];

/// An amount of every resource.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(crate) struct Charge(pub(crate) [u64; N_RES]);

impl Charge {
    /// A charge of `slices` slices, `handles` handle references, `bytes` in-flight bytes and
    /// `fds` file descriptors, each at its resource's index.
    pub(crate) const fn new(slices: u64, handles: u64, bytes: u64, fds: u64) -> Self {
        let mut c = [0; N_RES];
        c[SLICES] = slices;
        c[HANDLES] = handles;
        c[BYTES] = bytes;
        c[FDS] = fds;
        Charge(c)
    }

    /// `n` units of resource `res` and nothing else.
    pub(crate) fn one(res: usize, n: u64) -> Self {
        let mut c = Charge::default();
        if let Some(x) = c.0.get_mut(res) {
            *x = n;
        }
        c
    }

    /// Whether no resource is charged. One test of all amounts together, not one branch per
    /// resource: every message asks it of its charges, and at their release.
    pub(crate) fn is_zero(&self) -> bool {
        self.0.iter().fold(0, |acc, &x| acc | x) == 0
    }
}

/// The quota rule: which part of the unused resources one sending user may hold.
///
/// All rules have the form "after the charge, the sender holds at most `1/A(n)` of what is not
/// held by other users", where `n` is the number of sending users holding a share (counting the
/// one that charges): with `R` the unused amount, `s` the sender's share and `c` the charge,
///
/// ```text
/// (s + c) * A(n) <= R + s
/// ```
///
/// They differ in `A(n)`, and so in how the share guaranteed to a newcomer shrinks when `k`
/// hostile users took all they could before it (`B` is the budget):
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Policy {
    /// `A(n) = 2`, the rule of the 2016 RFC: a sender may hold half of what remains. Guarantees
    /// `B / 2^(k+1)`, which is nothing after a handful of hostile users.
    Rfc,
    /// `A(n) = n + 1`, the 2017 rule: an `n`-th. Guarantees `B / ((k+1)(k+2))`.
    N2017,
    /// `A(n) = (n+1) * ceil(log2(n+1)) + n + 1`, the 2026 rule. Guarantees at least
    /// `B / ((k+2) (ceil(log2(k+2)) + 1)^2)`, at the price of letting a lone sender hold only a
    /// quarter.
    Quasilinear,
}

/// `ceil(log2(x))`, 0 for `x <= 1`.
fn ceil_log2(x: u64) -> u64 {
    if x <= 1 {
        0
    } else {
        u64::from(64 - (x - 1).leading_zeros())
    }
}

impl Policy {
    /// The policy a `quota_policy` module parameter value selects: 0 RFC, 1 2017, 2
    /// quasilinear; anything else falls back to the default.
    pub(crate) fn from_param(v: u32) -> Self {
        match v {
            0 => Policy::Rfc,
            1 => Policy::N2017,
            _ => Policy::Quasilinear,
        }
    }

    /// The policy's name, as shown in debugfs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Policy::Rfc => "rfc",
            Policy::N2017 => "n2017",
            Policy::Quasilinear => "quasilinear",
        }
    }

    /// `A(n)`, the inverse of the part one of `n` senders may hold; saturating.
    pub(crate) fn divisor(self, n: u64) -> u64 {
        let n1 = n.max(1).saturating_add(1);
        match self {
            Policy::Rfc => 2,
            Policy::N2017 => n1,
            Policy::Quasilinear => n1.saturating_mul(ceil_log2(n1)).saturating_add(n1),
        }
    }
}

/// Whether a sender that holds `share` may take `charge` more units of a resource of which
/// `remaining` are unused (negative after a limit was lowered below use), when `n` senders
/// (including this one) hold a share. Overflow denies.
pub(crate) fn allows(policy: Policy, remaining: i64, share: u64, charge: u64, n: u64) -> bool {
    if charge == 0 {
        return true;
    }
    let Ok(rem) = u64::try_from(remaining) else {
        return false;
    };
    if charge > rem {
        return false;
    }
    let lhs = share
        .checked_add(charge)
        .and_then(|x| x.checked_mul(policy.divisor(n)));
    match (lhs, rem.checked_add(share)) {
        (Some(l), Some(r)) => l <= r,
        _ => false,
    }
}

/// The most a sender holding `share` may take of `remaining` unused units when `n` senders
/// (including it) hold a share: the largest `c` that [`allows`] accepts.
pub(crate) fn max_take(policy: Policy, remaining: u64, share: u64, n: u64) -> u64 {
    let total = remaining.saturating_add(share);
    (total / policy.divisor(n))
        .saturating_sub(share)
        .min(remaining)
}

/// The worst case the quota exists for: `k` hostile senders arrive one after another, each
/// taking all the policy lets it take of a budget `budget`. Returns what the next sender can
/// still take.
pub(crate) fn guaranteed_after(policy: Policy, budget: u64, k: u64) -> u64 {
    let mut remaining = budget;
    for i in 1..=k {
        remaining -= max_take(policy, remaining, 0, i);
    }
    max_take(policy, remaining, 0, k.saturating_add(1))
}

/// Fairness among the receiving peers of one principal: the part of what a sender may hold at a
/// principal's level ([`Ledger::share_allows`] of its ledger) that one of the principal's peers
/// may hold, as a divisor. With 2, a peer that never reads takes at most half of what a sender
/// may give the principal, and its sibling peers keep the other half.
pub(crate) const SIBLING_DIVISOR: u64 = 2;

/// Whether a sender holding `share` at the level of a principal (its ledger `user`) and
/// `peer_share` at one of the principal's peers may add `c` to the latter: after the charge the
/// peer's share of each resource must stay within `1 / (SIBLING_DIVISOR * A(n))` of what is
/// unused at the principal plus the sender's share there, `n` counting the principal's sending
/// principals as in [`Ledger::share_allows`]. The shares are passed in, as the caller looked
/// them up for the quota's rule already.
pub(crate) fn sibling_allows(
    policy: Policy,
    user: &Ledger,
    share: &Charge,
    peer_share: &Charge,
    c: &Charge,
) -> bool {
    let n = if share.is_zero() {
        user.senders.saturating_add(1)
    } else {
        user.senders
    };
    let d = policy.divisor(n).saturating_mul(SIBLING_DIVISOR);
    (0..N_RES).all(|r| {
        let (s_u, s_p, n_c) = (share.0[r], peer_share.0[r], c.0[r]);
        if n_c == 0 || user.lane_admits(r, s_u, n_c) {
            return true;
        }
        let Ok(rem) = u64::try_from(user.elastic_remaining(r)) else {
            return false;
        };
        match (
            s_p.checked_add(n_c).and_then(|x| x.checked_mul(d)),
            rem.checked_add(s_u),
        ) {
            (Some(l), Some(rhs)) => l <= rhs,
            _ => false,
        }
    })
}

/// How many principals the reserved lane of a ledger serves: its size in units of the amount
/// one principal may hold in it.
pub(crate) const LANE_PRINCIPALS: u64 = 1024;
/// The amount one principal may hold in the lane, as a part of the maximum.
const LANE_GRAIN_DIVISOR: u64 = 4096;
/// The lane's size, at most this part of the maximum.
const LANE_SIZE_DIVISOR: u64 = 4;

/// Room for a new share entry in a [`Ledger`], allocated before any lock is taken.
pub(crate) type ShareReservation = RBTreeNodeReservation<u32, Charge>;

/// The accounts of one level (a user or a peer).
///
/// # Invariants
///
/// - `remaining[r] == max[r] - (everything charged of r)`; negative only after `max` was lowered.
/// - `senders` is the number of entries of `shares` that are not zero.
/// - Every share is part of what is charged, so no share exceeds `max - remaining`.
/// - `idle`, if set, names an entry of `shares` that holds nothing: besides it, a ledger holds a
///   zero entry only for a principal it is charging.
///
/// Every charge and discharge writes `remaining`, which comes first (see
/// [`crate::peer::PeerInner`]).
#[repr(C)]
pub(crate) struct Ledger {
    /// What remains of the maxima.
    remaining: [i64; N_RES],
    /// The maxima.
    max: [u32; N_RES],
    /// What each sending principal (by global UID) holds here. An entry is inserted, from a
    /// reservation, when a charge on a principal's behalf succeeds and it has none, and removed
    /// when its share drops to zero, but for the one kept idle (`idle`); there is one per
    /// principal holding a share here, plus the idle one, plus at most one that is being charged.
    shares: RBTree<u32, Charge>,
    /// The principal whose entry stayed when its share dropped to zero, kept for the next
    /// charge: a principal whose messages are each received before the next is sent (a request
    /// and its answer) would otherwise have its entry removed and freed at every receive and
    /// allocated and inserted again at every send, where the allocation also makes the sender
    /// drop the receiver's lock and charge a second time. The same principal's next charge finds
    /// its entry in place; another principal's moves the entry's memory to its own key. One
    /// entry at most, so what a ledger keeps stays bounded by the principals holding a share.
    idle: Option<u32>,
    /// Senders with a non-zero share.
    senders: u64,
    /// Charges refused here (`EDQUOT`), for fdinfo and debugfs.
    denied: u64,
    /// Per resource, the amount one principal may hold in the reserved lane (`g`).
    lane_grain: [u64; N_RES],
    /// Per resource, the size of the reserved lane (`L`).
    lane_size: [u64; N_RES],
    /// Per resource, what the principals hold in the lane: the sum of `min(share, g)`.
    lane_used: [u64; N_RES],
}

const _: () = assert!(core::mem::offset_of!(Ledger, remaining) == 0);

impl Ledger {
    /// An empty ledger with the given maxima.
    pub(crate) fn new(max: [u32; N_RES]) -> Self {
        Ledger {
            max,
            remaining: max.map(i64::from),
            shares: RBTree::new(),
            idle: None,
            senders: 0,
            denied: 0,
            lane_grain: max.map(|m| (u64::from(m) / LANE_GRAIN_DIVISOR).max(1)),
            lane_size: max.map(|m| {
                let g = (u64::from(m) / LANE_GRAIN_DIVISOR).max(1);
                g.saturating_mul(LANE_PRINCIPALS)
                    .min(u64::from(m) / LANE_SIZE_DIVISOR)
            }),
            lane_used: [0; N_RES],
        }
    }

    /// The same ledger without a reserved lane: only the rule decides. For tests of the rule.
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fn without_lane(mut self) -> Self {
        self.lane_size = [0; N_RES];
        self
    }

    /// What of `res` remains for the rule: the unused amount minus the part of the lane that
    /// is not held yet (negative when the lane's free part is all that remains).
    fn elastic_remaining(&self, res: usize) -> i64 {
        let free_lane = self.lane_size[res].saturating_sub(self.lane_used[res]);
        self.remaining[res].saturating_sub(i64::try_from(free_lane).unwrap_or(i64::MAX))
    }

    /// Whether the lane takes `charge` units of `res` for a principal holding `share`: it then
    /// holds at most `g`, the lane keeps within its size, and the units are unused.
    fn lane_admits(&self, res: usize, share: u64, charge: u64) -> bool {
        let g = self.lane_grain[res];
        let Some(new) = share.checked_add(charge) else {
            return false;
        };
        if new > g || i64::try_from(charge).map_or(true, |c| c > self.remaining[res]) {
            return false;
        }
        let more = new.min(g) - share.min(g);
        self.lane_used[res].saturating_add(more) <= self.lane_size[res]
    }

    /// Moves the lane's use when a share of `res` goes from `old` to `new`.
    fn lane_moved(&mut self, res: usize, old: u64, new: u64) {
        let g = self.lane_grain[res];
        let u = &mut self.lane_used[res];
        *u = u.saturating_sub(old.min(g)).saturating_add(new.min(g));
    }

    /// The maximum of `res`.
    pub(crate) fn max(&self, res: usize) -> u32 {
        self.max.get(res).copied().unwrap_or(0)
    }

    /// How much of `res` is charged.
    pub(crate) fn used(&self, res: usize) -> i64 {
        match (self.max.get(res), self.remaining.get(res)) {
            (Some(&m), Some(&r)) => i64::from(m) - r,
            _ => 0,
        }
    }

    /// The number of senders holding a share.
    pub(crate) fn senders(&self) -> u64 {
        self.senders
    }

    /// Counts a refused charge.
    pub(crate) fn note_denied(&mut self) {
        self.denied = self.denied.saturating_add(1);
    }

    /// The number of charges refused here.
    pub(crate) fn denied(&self) -> u64 {
        self.denied
    }

    /// Fills `out` with the largest shares (by slices, then bytes), largest first, and returns
    /// how many it filled. Allocates nothing, so it can copy them out under a lock.
    pub(crate) fn top_shares(&self, out: &mut [(u32, Charge)]) -> usize {
        let key = |c: &Charge| (c.0[SLICES], c.0[BYTES]);
        let mut n = 0;
        for (&uid, c) in self.shares() {
            // The position among those kept so far; past the end if smaller than all of them.
            let pos = out[..n]
                .iter()
                .position(|(_, o)| key(c) > key(o))
                .unwrap_or(n);
            if pos >= out.len() {
                continue;
            }
            let end = if n < out.len() { n } else { n - 1 };
            out.copy_within(pos..end, pos + 1);
            out[pos] = (uid, *c);
            n = (n + 1).min(out.len());
        }
        n
    }

    /// Iterates over the share of every sending user that holds one.
    pub(crate) fn shares(&self) -> impl Iterator<Item = (&u32, &Charge)> {
        self.shares.iter().filter(|(_, c)| !c.is_zero())
    }

    /// Sets the maximum of `res` to `v`; what remains moves by the difference, and may become
    /// negative, in which case charges of `res` fail until enough is given back.
    pub(crate) fn set_max(&mut self, res: usize, v: u32) {
        if let (Some(m), Some(r)) = (self.max.get_mut(res), self.remaining.get_mut(res)) {
            *r = r.saturating_add(i64::from(v) - i64::from(*m));
            *m = v;
        }
    }

    /// Whether `c` fits into what remains.
    ///
    /// An amount fits if it is at most what remains, clamped at zero: zero always fits, also
    /// where a lowered maximum left less than nothing, and any other amount then does not. This
    /// runs twice for every message, so it is branch-free: the four comparisons are combined,
    /// not taken one after another.
    pub(crate) fn fits(&self, c: &Charge) -> bool {
        let over = self
            .remaining
            .iter()
            .zip(c.0.iter())
            // CAST: `max(0)` leaves a non-negative `i64`, which a `u64` holds.
            .fold(0u8, |acc, (&r, &n)| acc | u8::from(n > r.max(0) as u64));
        over == 0
    }

    /// Charges `c`, which the caller checked fits ([`Self::fits`], or the quota's rule, which
    /// admits no more than remains): every amount is at most what remains of it, so plain
    /// arithmetic cannot overflow. This runs for every message, so it is branch-free.
    pub(crate) fn take(&mut self, c: &Charge) {
        for (r, &n) in self.remaining.iter_mut().zip(c.0.iter()) {
            // CAST: An admitted amount is at most what remains, an `i64`.
            *r = r.wrapping_sub(n as i64);
        }
    }

    /// Gives `c`, which was taken, back: each sum is at most the maximum, a `u32`, so plain
    /// arithmetic cannot overflow.
    pub(crate) fn give(&mut self, c: &Charge) {
        for (r, &n) in self.remaining.iter_mut().zip(c.0.iter()) {
            // CAST: What was taken fits in an `i64`.
            *r = r.wrapping_add(n as i64);
        }
    }

    /// Whether `uid` has a share entry (possibly zero).
    pub(crate) fn has_entry(&self, uid: u32) -> bool {
        self.shares.get(&uid).is_some()
    }

    /// Adds a zero share entry for `uid` from `res`, unless it has one.
    pub(crate) fn add_entry(&mut self, uid: u32, res: ShareReservation) {
        if !self.has_entry(uid) {
            self.shares.insert(res.into_node(uid, Charge::default()));
        }
    }

    /// Whether [`Self::add_kept_entry`] would give `uid` an entry: it has one, or an idle entry
    /// is kept.
    pub(crate) fn can_add_kept_entry(&self, uid: u32) -> bool {
        self.idle.is_some() || self.has_entry(uid)
    }

    /// Gives `uid` a zero share entry in the memory of the idle one, unless it has an entry.
    /// Returns whether `uid` has an entry now.
    pub(crate) fn add_kept_entry(&mut self, uid: u32) -> bool {
        if self.has_entry(uid) {
            return true;
        }
        let Some(node) = self
            .idle
            .take()
            .and_then(|idle| self.shares.remove_node(&idle))
        else {
            return false;
        };
        self.shares
            .insert(node.into_reservation().into_node(uid, Charge::default()));
        true
    }

    /// The share entry of `uid`, if it has one: its share (possibly zero).
    pub(crate) fn entry(&self, uid: u32) -> Option<Charge> {
        self.shares.get(&uid).copied()
    }

    /// The share `uid` holds here (zero without an entry).
    pub(crate) fn share(&self, uid: u32) -> Charge {
        self.entry(uid).unwrap_or_default()
    }

    /// [`Self::share_allows`] for `uid`, looking its share up (a sender without an entry holds
    /// nothing). For tests of the rule; a charge looks the share up once for all its rules.
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fn quota_allows(&self, policy: Policy, uid: u32, c: &Charge) -> bool {
        self.share_allows(policy, &self.share(uid), c)
    }

    /// Whether a sender holding `share` here may take `c` under `policy`: it fits, and at every
    /// resource the rule holds.
    pub(crate) fn share_allows(&self, policy: Policy, share: &Charge, c: &Charge) -> bool {
        let n = if share.is_zero() {
            self.senders.saturating_add(1)
        } else {
            self.senders
        };
        (0..N_RES).all(|r| {
            let (s, n_c) = (share.0[r], c.0[r]);
            // A resource not charged is allowed (as `allows` says), tested first: a message
            // charges two of the four resources, and the rule's arithmetic is skipped for the rest.
            n_c == 0
                || allows(policy, self.elastic_remaining(r), s, n_c, n)
                || self.lane_admits(r, s, n_c)
        })
    }

    /// Charges `c` to `uid`'s share and to what remains, after [`Self::share_allows`] said yes.
    ///
    /// The entry must exist ([`Self::add_entry`]); without one, only the plain charge is made.
    pub(crate) fn take_shared(&mut self, uid: u32, c: &Charge) {
        self.take(c);
        let Some(s) = self.shares.get_mut(&uid) else {
            return;
        };
        let old = *s;
        for (x, &n) in s.0.iter_mut().zip(c.0.iter()) {
            *x = x.saturating_add(n);
        }
        let new = *s;
        if old.is_zero() && !new.is_zero() {
            self.senders = self.senders.saturating_add(1);
            // The idle entry holds a share again.
            if self.idle == Some(uid) {
                self.idle = None;
            }
        }
        for r in 0..N_RES {
            // Only what the charge moved (a message charges two of the four resources).
            if c.0[r] != 0 {
                self.lane_moved(r, old.0[r], new.0[r]);
            }
        }
    }

    /// Removes `c` from `uid`'s share; what remains is unchanged (the caller gives back what is
    /// no longer charged at all). A share that drops to zero loses its entry, so a ledger holds
    /// entries only for the senders that hold something now, but for one: the entry stays, idle,
    /// for the next charge (see `idle`), unless another one is idle already.
    ///
    /// Never allocates; the caller drops the returned memory, if any, where it likes (it may
    /// hold a spinlock: freeing does not sleep).
    pub(crate) fn unshare(&mut self, uid: u32, c: &Charge) -> Option<ShareReservation> {
        let s = self.shares.get_mut(&uid)?;
        let old = *s;
        for (x, &n) in s.0.iter_mut().zip(c.0.iter()) {
            *x = x.saturating_sub(n);
        }
        let new = *s;
        for r in 0..N_RES {
            // Only what the release moved (see `take_shared`).
            if c.0[r] != 0 {
                self.lane_moved(r, old.0[r], new.0[r]);
            }
        }
        if !new.is_zero() {
            return None;
        }
        if !old.is_zero() {
            self.senders = self.senders.saturating_sub(1);
        }
        if self.idle.is_none() {
            self.idle = Some(uid);
            return None;
        }
        if self.idle == Some(uid) {
            return None;
        }
        Some(self.shares.remove_node(&uid)?.into_reservation())
    }

    /// The number of share entries, zero or not.
    pub(crate) fn entries(&self) -> usize {
        self.shares.iter().count()
    }
}

#[kunit_tests(bus1_quota)]
mod tests {
    use super::*;

    const ALL: [Policy; 3] = [Policy::Rfc, Policy::N2017, Policy::Quasilinear];

    #[test]
    fn divisors() {
        assert_eq!(Policy::Rfc.divisor(1), 2);
        assert_eq!(Policy::Rfc.divisor(1000), 2);
        assert_eq!(Policy::N2017.divisor(1), 2);
        assert_eq!(Policy::N2017.divisor(9), 10);
        // (n+1) * ceil(log2(n+1)) + n + 1.
        assert_eq!(Policy::Quasilinear.divisor(1), 4);
        assert_eq!(Policy::Quasilinear.divisor(2), 9);
        assert_eq!(Policy::Quasilinear.divisor(3), 12);
        assert_eq!(Policy::Quasilinear.divisor(7), 32);
        assert_eq!(Policy::Quasilinear.divisor(8), 45);
        assert_eq!(Policy::Quasilinear.divisor(u64::MAX), u64::MAX);
        // No sender counts as one.
        assert_eq!(Policy::N2017.divisor(0), 2);
    }

    #[test]
    fn rules() {
        // RFC: s + 2c <= R.
        assert!(allows(Policy::Rfc, 100, 0, 50, 1));
        assert!(!allows(Policy::Rfc, 100, 0, 51, 1));
        assert!(allows(Policy::Rfc, 150, 50, 50, 1));
        assert!(!allows(Policy::Rfc, 150, 50, 51, 1));
        // 2017 with 3 senders: (s + c) * 4 <= R + s.
        assert!(allows(Policy::N2017, 100, 0, 25, 3));
        assert!(!allows(Policy::N2017, 100, 0, 26, 3));
        // Nothing is always allowed, even over a lowered limit.
        assert!(allows(Policy::Rfc, -5, 7, 0, 1));
        // A negative or too small remainder denies anything else.
        assert!(!allows(Policy::N2017, -1, 0, 1, 1));
        assert!(!allows(Policy::N2017, 0, 0, 1, 1));
        // Overflow denies instead of wrapping.
        assert!(!allows(Policy::Quasilinear, i64::MAX, u64::MAX - 1, 1, 1));
        assert!(!allows(Policy::N2017, i64::MAX, 1, u64::MAX, u64::MAX));
    }

    #[test]
    fn max_take_is_the_largest_allowed() {
        for p in ALL {
            for &(r, s, n) in &[(16384u64, 0u64, 1u64), (1000, 300, 4), (7, 1, 2), (0, 9, 3)] {
                let c = max_take(p, r, s, n);
                let r = r as i64;
                assert!(c == 0 || allows(p, r, s, c, n));
                assert!(!allows(p, r, s, c + 1, n));
            }
        }
    }

    /// The guaranteed-share table of `Documentation/bus1/quota.rst`, and each policy's bound.
    #[test]
    fn guaranteed_shares() {
        for budget in [16384u64, 65536, 16 << 20, 1 << 50] {
            for k in 1..=64u64 {
                let rfc = guaranteed_after(Policy::Rfc, budget, k);
                let n17 = guaranteed_after(Policy::N2017, budget, k);
                let quasi = guaranteed_after(Policy::Quasilinear, budget, k);
                // RFC: B / 2^(k+1).
                let rfc_bound = budget.checked_shr((k + 1) as u32).unwrap_or(0);
                assert!(rfc >= rfc_bound);
                // 2017: B / ((k+1)(k+2)).
                assert!(n17 >= budget / ((k + 1) * (k + 2)));
                // Quasilinear: B / ((k+2) (ceil(log2(k+2)) + 1)^2).
                let l = ceil_log2(k + 2) + 1;
                assert!(quasi >= budget / ((k + 2) * l * l));
                // The bounds are not vacuous: the next sender gets something in the
                // configuration the defaults are made for.
                if budget == 16384 && k <= 64 {
                    assert!(n17 > 0 && quasi > 0);
                }
            }
        }
        let table: [(u64, [u64; 3]); 8] = [
            (1, [4096, 2730, 1365]),
            (2, [2048, 1365, 910]),
            (4, [512, 546, 396]),
            (8, [32, 182, 166]),
            (10, [8, 124, 133]),
            (16, [0, 53, 68]),
            (32, [0, 14, 27]),
            (64, [0, 4, 11]),
        ];
        for (k, want) in table {
            let got = ALL.map(|p| guaranteed_after(p, 16384, k));
            pr_info!(
                "bus1_quota: B=16384 k={} rfc={} n2017={} quasilinear={}\n",
                k,
                got[0],
                got[1],
                got[2]
            );
            assert_eq!(got, want);
        }
    }

    #[test]
    fn ledger_shares() -> Result {
        let mut l = Ledger::new([10, 100, 1000, 10]).without_lane();
        let c = Charge([1, 2, 3, 0]);
        assert!(l.quota_allows(Policy::N2017, 5, &c));
        l.add_entry(5, RBTreeNodeReservation::new(GFP_KERNEL)?);
        l.take_shared(5, &c);
        assert_eq!(l.senders(), 1);
        assert_eq!(l.used(SLICES), 1);
        assert_eq!(l.used(BYTES), 3);
        // Half of the slices, with one sender under the 2017 rule: 5 in all.
        assert!(l.quota_allows(Policy::N2017, 5, &Charge::one(SLICES, 4)));
        assert!(!l.quota_allows(Policy::N2017, 5, &Charge::one(SLICES, 5)));
        // A second sender counts as the second of two: a third of what it finds.
        assert!(l.quota_allows(Policy::N2017, 6, &Charge::one(SLICES, 3)));
        assert!(!l.quota_allows(Policy::N2017, 6, &Charge::one(SLICES, 4)));
        l.unshare(5, &c);
        assert_eq!(l.senders(), 0);
        // Unsharing leaves the charge in place until it is given back.
        assert_eq!(l.used(HANDLES), 2);
        l.give(&c);
        for r in 0..N_RES {
            assert_eq!(l.used(r), 0);
        }
        Ok(())
    }

    #[test]
    fn share_entries_go_with_their_share() -> Result {
        let mut l = Ledger::new([10, 100, 1000, 10]);
        let c = Charge([1, 0, 8, 0]);
        l.add_entry(7, RBTreeNodeReservation::new(GFP_KERNEL)?);
        l.take_shared(7, &c);
        l.take_shared(7, &c);
        assert_eq!(l.entries(), 1);
        assert!(l.unshare(7, &c).is_none());
        assert_eq!(l.entries(), 1);
        // The last of the share leaves the entry in place, idle: it holds nothing, and the
        // ledger counts no sender.
        assert!(l.unshare(7, &c).is_none());
        assert_eq!((l.entries(), l.senders(), l.shares().count()), (1, 0, 0));
        // An entry that never held anything goes at the first unshare; with another entry
        // idle already, its memory is handed back to be freed: one idle entry at most.
        l.add_entry(8, RBTreeNodeReservation::new(GFP_KERNEL)?);
        assert!(l.unshare(8, &Charge::default()).is_some());
        assert_eq!(l.entries(), 1);
        assert!(l.has_entry(7) && !l.has_entry(8));
        Ok(())
    }

    #[test]
    fn idle_entry_is_kept_for_the_next() -> Result {
        let mut l = Ledger::new([10, 100, 1000, 10]);
        let c = Charge([1, 0, 8, 0]);
        // Nothing idle yet: a principal without an entry needs memory for one.
        assert!(!l.can_add_kept_entry(7));
        assert!(!l.add_kept_entry(7));
        assert_eq!(l.entries(), 0);
        l.add_entry(7, RBTreeNodeReservation::new(GFP_KERNEL)?);
        l.take_shared(7, &c);
        assert!(l.unshare(7, &c).is_none());
        // The same principal finds its entry in place.
        assert!(l.can_add_kept_entry(7));
        assert!(l.add_kept_entry(7));
        assert_eq!(l.entries(), 1);
        l.take_shared(7, &c);
        assert_eq!((l.senders(), l.share(7)), (1, c));
        assert!(l.unshare(7, &c).is_none());
        // The next principal gets its entry in the idle one's memory.
        assert!(l.can_add_kept_entry(8));
        assert!(l.add_kept_entry(8));
        assert_eq!(l.entries(), 1);
        assert!(!l.has_entry(7));
        l.take_shared(8, &c);
        assert_eq!((l.senders(), l.share(8)), (1, c));
        // One idle entry only, and none now: a third principal needs memory of its own.
        assert!(!l.can_add_kept_entry(9));
        assert!(!l.add_kept_entry(9));
        // A principal with an entry can always have it.
        assert!(l.can_add_kept_entry(8));
        assert!(l.add_kept_entry(8));
        assert_eq!(l.entries(), 1);
        Ok(())
    }

    #[test]
    fn charged_idle_entry_is_idle_no_more() -> Result {
        let mut l = Ledger::new([10, 100, 1000, 10]);
        let c = Charge([1, 0, 8, 0]);
        l.add_entry(7, RBTreeNodeReservation::new(GFP_KERNEL)?);
        l.take_shared(7, &c);
        assert!(l.unshare(7, &c).is_none());
        // Charged again in place, 7's entry holds a share: the next share to drop to zero,
        // 8's, is the one that stays idle.
        l.take_shared(7, &c);
        l.add_entry(8, RBTreeNodeReservation::new(GFP_KERNEL)?);
        l.take_shared(8, &c);
        assert!(l.unshare(8, &c).is_none());
        assert_eq!((l.entries(), l.senders()), (2, 1));
        // With 8's idle, 7's entry goes with its share.
        assert!(l.unshare(7, &c).is_some());
        assert_eq!((l.entries(), l.senders()), (1, 0));
        assert!(l.has_entry(8) && !l.has_entry(7));
        Ok(())
    }

    #[test]
    fn siblings_keep_half() -> Result {
        // The principal's ledger, with one sender holding nothing yet.
        let mut u = Ledger::new([1000, 1000, 1000, 1000]).without_lane();
        let p = Policy::N2017;
        // A(1) = 2: the sender may take 500 at the principal, one peer 250 of it.
        let one = |n| Charge::one(SLICES, n);
        assert!(u.quota_allows(p, 9, &one(500)));
        let none = Charge::default();
        assert!(sibling_allows(p, &u, &u.share(9), &none, &one(250)));
        assert!(!sibling_allows(p, &u, &u.share(9), &none, &one(251)));
        // After the first peer took its 250, a sibling still gets a part of the rest.
        u.add_entry(9, RBTreeNodeReservation::new(GFP_KERNEL)?);
        u.take_shared(9, &one(250));
        assert!(!sibling_allows(p, &u, &u.share(9), &one(250), &one(1)));
        assert!(u.quota_allows(p, 9, &one(125)));
        assert!(sibling_allows(p, &u, &u.share(9), &none, &one(125)));
        Ok(())
    }

    #[test]
    fn top_shares_are_the_largest() -> Result {
        let mut l = Ledger::new([100, 100, 1000, 100]);
        for (uid, n) in [(1u32, 3u64), (2, 9), (3, 1), (4, 5), (5, 7)] {
            l.add_entry(uid, RBTreeNodeReservation::new(GFP_KERNEL)?);
            l.take_shared(uid, &Charge([n, 0, 8 * n, 0]));
        }
        let mut out = [(0u32, Charge::default()); 3];
        assert_eq!(l.top_shares(&mut out), 3);
        assert_eq!(out.map(|(u, _)| u), [2, 5, 4]);
        let mut all = [(0u32, Charge::default()); 8];
        assert_eq!(l.top_shares(&mut all), 5);
        assert_eq!(all[..5].iter().map(|(u, _)| *u).sum::<u32>(), 15);
        assert_eq!(all[4].0, 3);
        Ok(())
    }

    /// Floods `l` from `uid`, one unit of slices at a time, until the rule refuses; returns
    /// how many units it took.
    fn greedy(l: &mut Ledger, p: Policy, uid: u32) -> Result<u64> {
        let one = Charge::one(SLICES, 1);
        let mut n = 0;
        while l.quota_allows(p, uid, &one) {
            if !l.has_entry(uid) {
                l.add_entry(uid, RBTreeNodeReservation::new(GFP_KERNEL)?);
            }
            l.take_shared(uid, &one);
            n += 1;
        }
        Ok(n)
    }

    /// The reserved-lane table of `Documentation/bus1/quota.rst`: `k` greedy principals flood a
    /// ledger of 16384 slices one after another; what they hold, and what the next one gets.
    /// The lane (`L` = 4096, `g` = 4) guarantees `g` to the next one while fewer than
    /// `L / g` = 1024 others hold `g` each, whatever the policy.
    #[test]
    fn lane_guarantee() -> Result {
        // (k, held by the k, what the next one gets)
        type Row = (u32, u64, u64);
        let table: [(Policy, [Row; 4]); 3] = [
            (
                Policy::Rfc,
                [
                    (1, 6146, 3075),
                    (10, 12312, 10),
                    (100, 12683, 4),
                    (1000, 16283, 4),
                ],
            ),
            (
                Policy::N2017,
                [
                    (1, 6146, 2050),
                    (10, 11188, 95),
                    (100, 12357, 4),
                    (1000, 15957, 4),
                ],
            ),
            (
                Policy::Quasilinear,
                [
                    (1, 3073, 1024),
                    (10, 6282, 100),
                    (100, 8020, 5),
                    (1000, 11635, 4),
                ],
            ),
        ];
        for (p, rows) in table {
            for (k, held_want, next_want) in rows {
                let mut l = Ledger::new([16384, 0, 0, 0]);
                let mut held = 0;
                for uid in 0..k {
                    held += greedy(&mut l, p, uid)?;
                }
                let next = greedy(&mut l, p, k)?;
                pr_info!(
                    "bus1_quota: lane B=16384 policy={} k={} held={} next={}\n",
                    p.name(),
                    k,
                    held,
                    next
                );
                assert_eq!((held, next), (held_want, next_want));
                assert!(next >= 4);
            }
        }
        // Without the lane, the default policy locks the next one out at k = 1000.
        let mut l = Ledger::new([16384, 0, 0, 0]).without_lane();
        for uid in 0..1000 {
            greedy(&mut l, Policy::Quasilinear, uid)?;
        }
        assert_eq!(greedy(&mut l, Policy::Quasilinear, 1000)?, 0);
        Ok(())
    }

    #[test]
    fn lowered_limits() {
        let mut l = Ledger::new([4, 4, 4, 4]);
        l.take(&Charge::one(SLICES, 3));
        l.set_max(SLICES, 1);
        assert_eq!(l.used(SLICES), 3);
        assert!(!l.fits(&Charge::one(SLICES, 1)));
        // Other resources are unaffected.
        assert!(l.fits(&Charge::one(FDS, 4)));
        l.give(&Charge::one(SLICES, 2));
        assert!(!l.fits(&Charge::one(SLICES, 1)));
        l.give(&Charge::one(SLICES, 1));
        assert!(l.fits(&Charge::one(SLICES, 1)));
        assert!(!l.fits(&Charge::one(SLICES, 2)));
        assert!(!l.fits(&Charge::one(SLICES, u64::MAX)));
    }

    #[test]
    fn fits_checks_every_resource() {
        let mut l = Ledger::new([4, 4, 4, 4]);
        assert!(l.fits(&Charge([4, 4, 4, 4])));
        // Any one resource over what remains refuses the whole charge, the last one too.
        for r in 0..N_RES {
            let mut c = Charge([4, 4, 4, 4]);
            c.0[r] = 5;
            assert!(!l.fits(&c));
            c.0[r] = u64::MAX;
            assert!(!l.fits(&c));
        }
        // Below zero after a lowered maximum, nothing but zero fits.
        l.take(&Charge::one(FDS, 3));
        l.set_max(FDS, 1);
        let mut c = Charge([4, 4, 4, 4]);
        c.0[FDS] = 0;
        assert!(l.fits(&c));
        assert!(l.fits(&Charge::default()));
        assert!(!l.fits(&Charge::one(FDS, 1)));
    }
}
