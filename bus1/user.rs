// SPDX-License-Identifier: GPL-2.0

//! Users: one accounting object per principal.
//!
//! A peer is charged to a principal fixed at `open(2)`: the *real* UID of the credentials that
//! opened it, like the kernel's own per-user accounting of pipe buffers, message queues and
//! inotify instances (`cred->user`), or, for credentials of a user namespace, that namespace's
//! owner ([`crate::ext::task_ext::Viewer::principal`]). The real UID says on whose behalf a
//! process runs; the effective UID only says which permissions it uses right now, and a set-uid
//! helper must not be able to move its caller's consumption into its owner's budget. Fixing the
//! principal at open keeps a peer's identity stable for its lifetime, whatever the task does
//! with its credentials later.
//!
//! The registry of users is a global mutex, but it is taken only when a peer is opened and when
//! a peer object is freed, and by the debugfs file for one lookup at a time, never on the send
//! or receive path.

#![deny(unsafe_code)]

use crate::{
    ext::{
        global::users,
        task_ext::uid_for_current, //
    },
    quota::{
        Ledger,
        Policy,
        NAMES,
        N_RES, //
    },
};
use core::fmt;
use kernel::{
    debugfs::Writer,
    new_spinlock,
    prelude::*,
    rbtree::{
        RBTree,
        RBTreeNodeReservation, //
    },
    sync::{
        atomic::{
            ordering::Relaxed,
            Atomic, //
        },
        Arc,
        SpinLock,
        SpinLockGuard, //
    },
};

/// Clamps a module parameter to the `INT_MAX` that limits may not exceed.
fn param(v: u32) -> u32 {
    // CAST: `i32::MAX` is positive.
    v.min(i32::MAX as u32)
}

/// The per-UID maxima, from the module parameters at the time a user object is created.
fn user_maxima() -> [u32; N_RES] {
    use crate::module_parameters as p;
    [
        param(*p::user_slices_max.value()),
        param(*p::user_handles_max.value()),
        param(*p::user_inflight_bytes_max.value()),
        param(*p::user_inflight_fds_max.value()),
    ]
}

/// The per-user maximum of handle references, which also bounds how many handles one message
/// may carry.
pub(crate) fn handles_max() -> u32 {
    param(*crate::module_parameters::user_handles_max.value())
}

/// The accounting object of one UID.
#[pin_data]
pub(crate) struct User {
    /// The UID, as a global (init user namespace) value.
    uid: u32,
    /// Open peers (not yet disconnected), at most `user_peers_max`.
    open: Atomic<u32>,
    /// The quota rule, fixed when the user object is created so that shares stay consistent.
    policy: Policy,
    /// What the user's peers were charged. Innermost lock: taken under a peer's `inner`, and
    /// nothing is taken under it.
    #[pin]
    ledger: SpinLock<Ledger>,
}

impl User {
    /// Returns the UID (global value).
    pub(crate) fn uid(&self) -> u32 {
        self.uid
    }

    /// Returns the quota rule.
    pub(crate) fn policy(&self) -> Policy {
        self.policy
    }

    /// Locks the user's accounts.
    pub(crate) fn ledger(&self) -> SpinLockGuard<'_, Ledger> {
        self.ledger.lock()
    }
}

/// A registered user and the number of [`UserRef`]s to it.
struct Entry {
    /// The user.
    user: Arc<User>,
    /// Live references; the entry goes away with the last.
    refs: u64,
}

/// All users that have a live peer, by UID.
pub(crate) struct Registry {
    /// Created on first use, because an empty [`RBTree`] cannot be built in a `static`.
    tree: Option<RBTree<u32, Entry>>,
}

impl Registry {
    /// An empty registry.
    pub(crate) const fn new() -> Self {
        Registry { tree: None }
    }

    /// Takes a reference on the user `uid`, if registered.
    fn acquire(&mut self, uid: u32) -> Option<Arc<User>> {
        let e = self.tree.as_mut()?.get_mut(&uid)?;
        e.refs = e.refs.saturating_add(1);
        Some(e.user.clone())
    }
}

/// A reference to a registered user; the user leaves the registry when its last one is dropped.
///
/// Held by peers (and so, indirectly, by messages queued on them).
pub(crate) struct UserRef {
    /// The user.
    user: Arc<User>,
}

impl UserRef {
    /// Returns the user `uid`, creating it on first use.
    pub(crate) fn get(uid: u32) -> Result<Self> {
        if let Some(user) = users()?.acquire(uid) {
            return Ok(UserRef { user });
        }
        // Allocated unlocked; a racing `get` may register the same UID first, and then these
        // are freed again.
        let user = Arc::pin_init(
            try_pin_init!(User {
                uid,
                open: Atomic::new(0),
                policy: Policy::from_param(*crate::module_parameters::quota_policy.value()),
                ledger <- new_spinlock!(Ledger::new(user_maxima()), "User::ledger"),
            }),
            GFP_KERNEL,
        )?;
        let res = RBTreeNodeReservation::new(GFP_KERNEL)?;
        let mut reg = users()?;
        if let Some(user) = reg.acquire(uid) {
            return Ok(UserRef { user });
        }
        reg.tree
            .get_or_insert_with(RBTree::new)
            .insert(res.into_node(
                uid,
                Entry {
                    user: user.clone(),
                    refs: 1,
                },
            ));
        Ok(UserRef { user })
    }

    /// Returns the user.
    pub(crate) fn user(&self) -> &Arc<User> {
        &self.user
    }

    /// Counts one more open peer of the user; `EMFILE` if it has `user_peers_max` already, as
    /// for inotify's per-user instance limit.
    pub(crate) fn open_peer(&self) -> Result<OpenPeer> {
        let max = *crate::module_parameters::user_peers_max.value();
        let open = &self.user.open;
        let mut n = open.load(Relaxed);
        loop {
            if n >= max {
                return Err(EMFILE);
            }
            match open.cmpxchg(n, n + 1, Relaxed) {
                Ok(_) => break,
                Err(now) => n = now,
            }
        }
        Ok(OpenPeer {
            user: self.user.clone(),
        })
    }
}

/// One open peer of a user, counted against `user_peers_max` until dropped, at disconnect.
///
/// A disconnected peer may be kept for long by handles to its nodes, but it is then only a
/// small object charged to the holders (see `Documentation/bus1/quota.rst`), so it no longer
/// counts as open.
pub(crate) struct OpenPeer {
    /// The user it counts for.
    user: Arc<User>,
}

impl Drop for OpenPeer {
    fn drop(&mut self) {
        self.user.open.fetch_sub(1, Relaxed);
    }
}

impl Drop for UserRef {
    fn drop(&mut self) {
        // `get` succeeded, so the registry is initialised.
        let Ok(mut reg) = users() else {
            return;
        };
        let uid = self.user.uid;
        let gone = reg.tree.as_mut().and_then(|t| {
            let e = t.get_mut(&uid)?;
            e.refs = e.refs.saturating_sub(1);
            if e.refs == 0 {
                t.remove(&uid)
            } else {
                None
            }
        });
        drop(reg);
        drop(gone);
    }
}

/// The debugfs file `bus1/users`: every registered user, its usage and maxima, and the share
/// every sending user holds of it.
///
/// The registry mutex is taken once per user, only to find the next UID and take a reference to
/// its user; each user is printed under its own ledger lock alone, so a reader never stalls the
/// opening or freeing of peers for longer than one lookup.
pub(crate) struct UsersFile;

/// The first registered user with a UID of at least `from`, with its number of peer objects.
fn next_user(from: u32) -> Option<(u32, u64, Arc<User>)> {
    let reg = users().ok()?;
    let cursor = reg.tree.as_ref()?.cursor_lower_bound(&from)?;
    let (&uid, e) = cursor.current();
    Some((uid, e.refs, e.user.clone()))
}

impl Writer for UsersFile {
    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut from = 0u32;
        while let Some((uid, refs, user)) = next_user(from) {
            {
                let l = user.ledger();
                write!(
                    f,
                    "uid={} peers={} open={} policy={} senders={} denied={}",
                    uid_for_current(uid),
                    refs,
                    user.open.load(Relaxed),
                    user.policy.name(),
                    l.senders(),
                    l.denied()
                )?;
                for (r, name) in NAMES.iter().enumerate() {
                    write!(f, " {}={}/{}", name, l.used(r), l.max(r))?;
                }
                writeln!(f)?;
                for (sender, c) in l.shares() {
                    write!(f, "  sender={}", uid_for_current(*sender))?;
                    for (name, n) in NAMES.iter().zip(c.0.iter()) {
                        write!(f, " {}={}", name, n)?;
                    }
                    writeln!(f)?;
                }
            }
            // The reference goes with no lock held: the user may go with it, and its `Arc` is
            // not a registry reference, so nothing is taken.
            drop(user);
            match uid.checked_add(1) {
                Some(n) => from = n,
                None => break,
            }
        }
        Ok(())
    }
}

#[kunit_tests(bus1_user)]
mod tests {
    use super::*;

    /// A UID no real test task uses.
    const UID: u32 = 0x7fff_0042;

    fn registered(uid: u32) -> Result<bool> {
        Ok(users()?
            .tree
            .as_ref()
            .is_some_and(|t| t.get(&uid).is_some()))
    }

    #[test]
    fn one_object_per_uid() -> Result {
        let a = UserRef::get(UID)?;
        let b = UserRef::get(UID)?;
        let c = UserRef::get(UID + 1)?;
        assert!(Arc::ptr_eq(a.user(), b.user()));
        assert!(!Arc::ptr_eq(a.user(), c.user()));
        assert_eq!(a.user().uid(), UID);
        drop(a);
        assert!(registered(UID)?);
        drop(b);
        assert!(!registered(UID)?);
        assert!(registered(UID + 1)?);
        drop(c);
        assert!(!registered(UID + 1)?);
        Ok(())
    }

    #[test]
    fn users_file_walks_by_uid() -> Result {
        let a = UserRef::get(UID + 10)?;
        let b = UserRef::get(UID + 15)?;
        let b2 = UserRef::get(UID + 15)?;
        // The next user at or after a UID, with its number of references, one lookup at a time.
        let next = |from: u32| next_user(from).map(|(uid, refs, _)| (uid, refs));
        assert_eq!(next(UID + 10), Some((UID + 10, 1)));
        assert_eq!(next(UID + 11), Some((UID + 15, 2)));
        let Some((_, _, user)) = next_user(UID + 15) else {
            return Err(ENOENT);
        };
        assert!(Arc::ptr_eq(&user, b.user()));
        drop((b, b2));
        // The file's reference is not a registry reference: the user left the registry.
        assert!(!registered(UID + 15)?);
        assert!(next(UID + 11).is_none_or(|(uid, _)| uid > UID + 15));
        drop(user);
        drop(a);
        assert!(next(UID + 10).is_none_or(|(uid, _)| uid > UID + 15));
        Ok(())
    }

    #[test]
    fn maxima_from_parameters() -> Result {
        use crate::module_parameters as p;
        use crate::quota::{BYTES, FDS, HANDLES, SLICES};

        // CAST: `i32::MAX` is positive.
        let int_max = i32::MAX as u32;
        // Each resource's maximum is its own module parameter, read here independently of
        // `user_maxima()`, clamped to `INT_MAX`.
        let u = UserRef::get(UID + 2)?;
        // Read under the ledger's lock, assert after it: a failed assertion ends the test's
        // thread, which must not hold a spinlock then.
        let (max, unused) = {
            let l = u.user().ledger();
            let unused = (0..N_RES).all(|res| l.used(res) == 0);
            (
                [l.max(SLICES), l.max(HANDLES), l.max(BYTES), l.max(FDS)],
                unused,
            )
        };
        assert_eq!(max[0], (*p::user_slices_max.value()).min(int_max));
        assert_eq!(max[1], (*p::user_handles_max.value()).min(int_max));
        assert_eq!(max[2], (*p::user_inflight_bytes_max.value()).min(int_max));
        assert_eq!(max[3], (*p::user_inflight_fds_max.value()).min(int_max));
        assert!(unused);
        // The clamp, for values the module parameters cannot be given in a test.
        assert_eq!(param(u32::MAX), int_max);
        assert_eq!(param(int_max + 1), int_max);
        assert_eq!(param(int_max), int_max);
        assert_eq!(param(4096), 4096);
        Ok(())
    }
}
