// SPDX-License-Identifier: GPL-2.0

//! bus1: capability-based IPC for Linux.
//!
//! `/dev/bus1` is a misc device; every open file is a [`peer::Peer`]. Peers own nodes and hold
//! handles to nodes, and may only send to handles they hold. See `Documentation/bus1/` for the
//! ABI and the design.
//!
//! # Lock order
//!
//! Locks are taken in this order and never the other way round:
//!
//! 1. a peer's lifetime state (`Peer::inner`, a spinlock held only to take or drop an active
//!    reference or to mark the peer disconnected).
//!
//! No lock is global: an operation on one peer never takes a lock that serialises unrelated
//! peers.

#[path = "../rust/mod.rs"]
mod ext;
mod node;
mod peer;
mod queue;
mod transaction;
mod uapi;

use ext::miscdevice::{
    MiscDeviceOptions,
    MiscDeviceRegistration, //
};
use kernel::prelude::*;

module! {
    type: Bus1Module,
    name: "bus1",
    authors: ["The bus1 developers"],
    description: "Capability-based IPC bus",
    license: "GPL",
    alias: ["devname:bus1"],
}

/// The module instance: owns the `/dev/bus1` registration.
#[pin_data]
struct Bus1Module {
    #[pin]
    misc: MiscDeviceRegistration<peer::Peer>,
}

impl kernel::InPlaceModule for Bus1Module {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let options = MiscDeviceOptions {
            name: c"bus1",
            mode: 0o666,
        };
        try_pin_init!(Self {
            misc <- MiscDeviceRegistration::register(options, module),
        })
    }
}
