// SPDX-License-Identifier: GPL-2.0

//! Module-wide locks that cannot be used before they are initialised.
//!
//! [`kernel::sync::global_lock!`] leaves it to its user to initialise the lock, in an `unsafe`
//! block, before anything locks it. This file wraps two such locks, the user registry's mutex and
//! the peer registry's spinlock, so that misuse is impossible from safe code: the locks
//! themselves are private, [`init_users`] initialises both at most once, and [`users`] and
//! [`peers`] hand out guards only after that initialisation completed.

use crate::{
    registry::Registry as PeerRegistry,
    user::Registry, //
};
use core::ops::{
    Deref,
    DerefMut, //
};
use kernel::{
    prelude::*,
    sync::{
        atomic::{
            ordering::{
                Acquire,
                Full,
                Release, //
            },
            Atomic, //
        },
        GlobalGuard,
    },
};

kernel::sync::global_lock! {
    // SAFETY: `init_users` initialises the lock exactly once (guarded by `STATE`), and `users`
    // locks it only after `STATE` says that initialisation completed.
    unsafe(uninit) static USERS: Mutex<Registry> = Registry::new();
}

kernel::sync::global_lock! {
    // SAFETY: `init_users` initialises the lock exactly once (guarded by `STATE`), and `peers`
    // locks it only after `STATE` says that initialisation completed.
    unsafe(uninit) static PEERS: SpinLock<PeerRegistry> = PeerRegistry::new();
}

/// `USERS` and `PEERS` are not initialised.
const UNINIT: u32 = 0;
/// `USERS` and `PEERS` are being initialised.
const BUSY: u32 = 1;
/// `USERS` and `PEERS` are initialised and may be locked.
const READY: u32 = 2;

/// The initialisation state of `USERS` and `PEERS`.
static STATE: Atomic<u32> = Atomic::new(UNINIT);

/// Initialises the locks of the user and the peer registry. Only the first call does anything;
/// call it from module initialisation, before anything that may call [`users`] or [`peers`] can
/// run.
pub(crate) fn init_users() {
    if STATE.cmpxchg(UNINIT, BUSY, Full).is_ok() {
        // SAFETY: The successful transition out of `UNINIT` happens once, so this is the only
        // call of `init`, and nothing locked `USERS` before, because `users` waits for `READY`.
        unsafe { USERS.init() };
        // SAFETY: As for `USERS`: the only call, and `peers` waits for `READY`.
        unsafe { PEERS.init() };
        STATE.store(READY, Release);
    }
}

/// A locked user registry.
pub(crate) struct UsersGuard(GlobalGuard<USERS>);

impl Deref for UsersGuard {
    type Target = Registry;

    fn deref(&self) -> &Registry {
        &self.0
    }
}

impl DerefMut for UsersGuard {
    fn deref_mut(&mut self) -> &mut Registry {
        &mut self.0
    }
}

/// Locks the user registry; fails with `ENODEV` before [`init_users`] completed.
pub(crate) fn users() -> Result<UsersGuard> {
    if STATE.load(Acquire) != READY {
        return Err(ENODEV);
    }
    Ok(UsersGuard(USERS.lock()))
}

/// A locked peer registry.
pub(crate) struct PeersGuard(GlobalGuard<PEERS>);

impl Deref for PeersGuard {
    type Target = PeerRegistry;

    fn deref(&self) -> &PeerRegistry {
        &self.0
    }
}

impl DerefMut for PeersGuard {
    fn deref_mut(&mut self) -> &mut PeerRegistry {
        &mut self.0
    }
}

/// Locks the peer registry; fails with `ENODEV` before [`init_users`] completed.
pub(crate) fn peers() -> Result<PeersGuard> {
    if STATE.load(Acquire) != READY {
        return Err(ENODEV);
    }
    Ok(PeersGuard(PEERS.lock()))
}
