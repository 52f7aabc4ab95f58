// SPDX-License-Identifier: GPL-2.0

//! bus1: capability-based IPC for Linux.
//!
//! `/dev/bus1` is a misc device; every open file is a [`peer::Peer`]. Peers own nodes and hold
//! handles to nodes, and may only send to handles they hold. See `Documentation/bus1/` for the
//! ABI and the design.
//!
//! # Lock order
//!
//! Each peer has two locks:
//!
//! 1. `Peer::inner`, a mutex over everything the peer owns ([`peer::PeerInner`]): its queue,
//!    its handle-ID map, the owner-side state of its live nodes, its limits, its receive
//!    pool's slice allocator ([`pool::Slices`]) and the memory it kept of the last message it
//!    received ([`spare`]). Allocating, publishing and freeing a slice therefore happen under
//!    it, with the charge, the dequeue or the discharge that goes with them: pinning a slab's
//!    page (a page-cache lookup that may allocate the page) and giving pages that became
//!    unused back to the shmem file (which takes that file's inode lock inside it) too.
//!    Payloads are copied into the pool with no bus1 lock held at all;
//! 2. `Owner::state`, a spinlock in the peer's [`node::Owner`] (the small object its nodes pin)
//!    over the route from the peer's nodes to it, held only to read, set or cut the route (an
//!    `Arc` clone or take: no peer is dropped under it), to mark the peer disconnected and wait
//!    for its active references to drain, and to signal that the last one is gone; inside it,
//!    the wait queue lock of `Owner::idle` while waiting, and that of `Peer::waitq` to wake
//!    receivers blocked in `RECV`. Active references themselves are an atomic count with the
//!    shutdown flag in its top bit, taken and dropped without a lock.
//!
//! A third lock belongs to the peer's receive pool:
//!
//! 3. `Pool::file`, a spinlock over the reference to the pool's shmem file, held only to take
//!    a reference to the file or to take it away at disconnect. It is innermost: nothing is
//!    taken, allocated or freed under it.
//!
//! Two locks belong to per-user accounting ([`user`]):
//!
//! 4. `User::ledger`, a spinlock over one user's counters and shares, taken only inside the
//!    `inner` lock of one of that user's peers (every charge goes to the peer and its user at
//!    once), or alone by the debugfs file `users` to print it. Nothing is taken under it.
//! 5. `USERS`, the global registry mutex (UID to user object), taken when a peer is created and
//!    when a peer object is freed, which may happen while another peer's `inner` is held, and by
//!    the debugfs file `users` once per user, only to take a reference to it (the user is printed
//!    after the mutex was released). Nothing is taken under it. It is never taken on the send,
//!    receive or release path.
//!
//! One lock belongs to the registry of peer objects ([`registry`]):
//!
//! 6. `PEERS`, the global registry spinlock (peer ID to entry), taken when a peer's `Owner` is
//!    created and freed (which may happen under any peer's `inner`, wherever the last node or
//!    the peer goes), at `open(2)` and `release` to attach and detach the peer, and by the
//!    debugfs file `peers` once per entry, only to copy it out (an `Arc` clone). It is
//!    innermost: nothing is taken, allocated or freed under it, and the file takes a peer's
//!    locks (to print it, like fdinfo) only after releasing it. It is never taken on the send,
//!    receive or release path.
//!
//! `Peer::nodes_changed` is a condition variable of `inner`: waited on with only that peer's
//! `inner` held (by an operation of the peer that meets a node another of its operations
//! created and has not settled, and by a receiver that meets a node of that peer gone but not
//! yet stamped), and signalled after `inner` was released by whoever settled or stamped.
//!
//! Every module under `bus1/` denies `unsafe_code`; the abstractions over kernel C APIs are
//! under `rust/`.
//!
//! `Owner::state` may be taken while holding `inner`, never the other way round. **At most one
//! peer's `inner` is held at any time**: an operation that involves several peers (handle transfer,
//! release of a remote handle, node destruction, teardown) takes each peer's lock in turn, only
//! around the step on that peer. Node state lives in the owner's `inner`, so a holder changes a
//! node's strong count by locking the owner, not while holding its own lock. Transactions stage,
//! sync and commit on each destination queue under that destination's lock only.
//!
//! A peer's Lamport clock ([`queue::Clock`]) is no lock but an atomic word beside `inner`, only
//! ever raised: a sender ticks its own clock under the destination's `inner`, not its own.
//!
//! Instead of holding a remote peer's lock, an operation pins the remote peer with an active
//! reference; disconnecting marks the peer first (so no new pins succeed) and then waits for
//! existing pins to go away without holding any lock but its own `Owner::state` spinlock
//! (released while sleeping), so a pin holder never waits for the disconnecting peer.
//!
//! No lock is global on any path of an operation on one peer: the two global locks (`USERS`
//! and `PEERS`) are taken only when a peer is opened, closed or freed, and by debugfs readers.
//!
//! # Layers
//!
//! A module imports only from the layers below it. The layers below `peer` that hold peers are
//! generic over the peer type, so none of them names [`peer::Peer`]:
//!
//! 1. `peer` (with its child modules `ioctl` and `transact`), `send` and `recv`: the peer and
//!    its operations, `impl Peer` blocks split by command, one layer; they may import
//!    everything below.
//! 2. `transaction`: the commit protocol over several peers' queues, generic over
//!    [`transaction::Participant`] (implemented by `Peer`); imports `queue` and `smallvec`
//!    (for [`smallvec::user_sized`], as every layer may). Only its KUnit
//!    tests use `peer`, to drive the protocol on real peers.
//! 3. `message`: a queued copy of a message and what it holds, generic over
//!    [`message::Receiver`] (implemented by `Peer`); imports `node`, `limits`, `quota`.
//! 4. `node`: nodes, handles, the handle-ID map and [`node::Owner`], what a node keeps of its
//!    owner, generic over the peer type; imports `uapi` and `registry`.
//! 5. Leaves: `queue`, `pool`, `limits` (over `quota` and `user`), `quota`, `user`,
//!    `registry` (which shows peers through the trait [`registry::Listed`], implemented by
//!    `Peer`), `smallvec`, `lazyvec`, `heapsort`, `spare`, `uapi`, and the kernel abstractions
//!    under `rust/` (`ext`).

#[path = "../rust/mod.rs"]
mod ext;
mod heapsort;
mod lazyvec;
mod limits;
mod message;
mod node;
mod peer;
mod pool;
mod queue;
mod quota;
mod recv;
mod registry;
mod send;
mod smallvec;
mod spare;
mod transaction;
mod uapi;
mod user;

use ext::miscdevice::{
    MiscDeviceOptions,
    MiscDeviceRegistration, //
};
use kernel::{
    debugfs,
    prelude::*, //
};

module! {
    type: Bus1Module,
    name: "bus1",
    authors: ["The bus1 developers"],
    description: "Capability-based IPC bus",
    license: "GPL",
    params: {
        pool_size_mib: u32 {
            default: 512,
            description: "Virtual size of each peer's receive pool in MiB (1..4095)",
        },
        pool_cache_kib: u32 {
            default: 2048,
            description: "Free pool pages a peer keeps resident for reuse, in KiB (0: none)",
        },
        user_slices_max: u32 {
            default: 16384,
            description: "Per-UID maximum of pool slices (received, unreleased messages)",
        },
        user_handles_max: u32 {
            default: 65536,
            description: "Per-UID maximum of handle references",
        },
        user_inflight_bytes_max: u32 {
            default: 16777216,
            description: "Per-UID maximum of bytes in queued, unreceived messages",
        },
        user_inflight_fds_max: u32 {
            default: 4096,
            description: "Per-UID maximum of file descriptors in queued, unreceived messages",
        },
        user_peers_max: u32 {
            default: 16384,
            description: "Per-principal maximum of open peers (open fails with EMFILE beyond)",
        },
        quota_policy: u32 {
            default: 2,
            description: "uid-to-uid quota rule: 0 half (2016), 1 n-th (2017), 2 quasilinear (2026)",
        },
    },
}

// `module!` registers its parameters without a sysfs file: show every one, read-only, under
// /sys/module/bus1/parameters/ (bus1(7) CONFIGURATION).
ext::param::readable_params!(
    module: "bus1",
    access: module_parameters,
    perm: 0o444,
    params: [
        pool_size_mib,
        pool_cache_kib,
        user_slices_max,
        user_handles_max,
        user_inflight_bytes_max,
        user_inflight_fds_max,
        user_peers_max,
        quota_policy,
    ],
);

/// The module instance: owns the `/dev/bus1` registration and the debugfs files.
#[pin_data]
struct Bus1Module {
    /// The debugfs file `bus1/users` (see [`user::UsersFile`]); removed before the registry can
    /// go away.
    users: Pin<KBox<debugfs::File<user::UsersFile>>>,
    /// The debugfs file `bus1/peers` (see [`registry::PeersFile`]).
    peers: Pin<KBox<debugfs::File<registry::PeersFile>>>,
    #[pin]
    misc: MiscDeviceRegistration<peer::Peer>,
}

impl kernel::InPlaceModule for Bus1Module {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let options = MiscDeviceOptions {
            name: c"bus1",
            mode: 0o666,
        };
        // Before anything can open a peer.
        ext::global::init_users();
        let dir = debugfs::Dir::new(c"bus1");
        let users = KBox::pin_init(dir.read_only_file(c"users", user::UsersFile), GFP_KERNEL);
        let peers = KBox::pin_init(
            dir.read_only_file(c"peers", registry::PeersFile),
            GFP_KERNEL,
        );
        try_pin_init!(Self {
            users: users?,
            peers: peers?,
            misc <- MiscDeviceRegistration::register(options, module),
        })
    }
}
