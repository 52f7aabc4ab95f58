// SPDX-License-Identifier: MIT OR Apache-2.0
//! Safe Rust interface to bus1, capability-based IPC for Linux.
//!
//! Every open of `/dev/bus1` is a [`Peer`]. A peer owns *nodes* and holds
//! *handles* to nodes (its own and other peers'); it can send only to
//! handles it holds, and handles travel inside messages, so a handle is a
//! capability. Messages are copied once, straight into the receiver's
//! *pool*, which the receiver maps read-only: [`Message::payload`] is a
//! `&[u8]` into that mapping, and dropping the message releases its slice.
//!
//! ```no_run
//! use bus1::{MessageKind, NodeId, Peer};
//! use std::time::Duration;
//! # fn main() -> std::io::Result<()> {
//! let server = Peer::open()?;
//! let client = Peer::open()?;
//!
//! // The server's node 0x100 comes to life when first used; the client
//! // gets a handle to it.
//! let service = NodeId::new(0x100).unwrap();
//! let handle = server.transfer(service, &client)?.expect("node is alive");
//!
//! // The client sends a request carrying a handle to its own reply node.
//! let reply = NodeId::new(0x200).unwrap();
//! client.send().destination(handle).payload(b"hello").handle(reply).submit()?;
//!
//! let req = server.recv_timeout(Some(Duration::from_secs(1)))?;
//! assert_eq!(req.kind(), MessageKind::Data);
//! assert_eq!(req.payload(), b"hello");
//! let back = req.handles().next().flatten().expect("a reply handle");
//! server.send_to(back, b"world")?;
//! server.release_handle(back)?;  // the client's node gets a NodeRelease
//! # Ok(()) }
//! ```
//!
//! Errors are [`std::io::Error`]s carrying the kernel's errno (for example
//! `EAGAIN`, mapped to [`io::ErrorKind::WouldBlock`], when nothing is
//! queued). The library checks every message description it gets from the
//! kernel against its pool mapping and reports a malformed one as
//! [`io::ErrorKind::InvalidData`] instead of reading outside it; it does not
//! panic on kernel errors.
//!
//! The raw ABI lives in the [`bus1_sys`] crate, re-exported as [`sys`].
//!
//! With the `tokio` feature, [`tokio::AsyncPeer`] receives with
//! `recv().await`.
//!
//! # Soundness of the zero-copy receive
//!
//! A [`Message`] borrows its [`Peer`], and so does an owned [`Handle`]. The
//! commands that free every slice ([`Peer::flush`], [`Peer::reset`],
//! [`Peer::disconnect`]) take `&mut self`, so the borrow checker rules out a
//! payload that lives across them. Each message also remembers the peer's
//! flush epoch and releases its slice only within it, so a stale message
//! can never release a slice the kernel has handed to a newer message.
//! [`Peer::from_fd`] is `unsafe` because another holder of the same open
//! file description could flush the pool behind the peer's back.
#![warn(missing_debug_implementations, missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod call;
mod handle;
mod id;
mod message;
mod peer;
mod send;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use bus1_sys as sys;
pub use handle::Handle;
pub use id::{HandleId, NodeId};
pub use message::{Credentials, Message, MessageInfo, MessageKind};
pub use peer::{
    module_pool_size, Limits, Peer, PeerBuilder, PeerInfo, RecvOptions, DEFAULT_POOL_SIZE, POOL_SIZE_PARAM,
};
pub use send::{Delivery, Send};

#[allow(unused_imports)]
use std::io;
