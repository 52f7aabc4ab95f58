// SPDX-License-Identifier: GPL-2.0
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
#![warn(missing_debug_implementations)]

mod call;
mod id;
mod message;
mod peer;
mod send;

pub use bus1_sys as sys;
pub use id::{HandleId, NodeId};
pub use message::{Credentials, Message, MessageInfo, MessageKind};
pub use peer::{Limits, Peer, PeerBuilder, PeerInfo, RecvOptions, DEFAULT_POOL_SIZE};
pub use send::{Delivery, Send};

#[allow(unused_imports)]
use std::io;
