// SPDX-License-Identifier: MIT OR Apache-2.0
//! Owned handles: one user reference that is released on drop.

use crate::{HandleId, Peer};
use std::io;

/// One user reference to a handle of a [`Peer`], released
/// (`HANDLE_RELEASE`) when dropped, as an [`OwnedFd`](std::os::fd::OwnedFd)
/// is closed.
///
/// A `Handle` borrows its peer, so it cannot outlive it or a
/// [`flush`](Peer::flush) (which drops every handle in the kernel).
/// [`Message::take_handles`](crate::Message::take_handles) and
/// [`Handle::from_id`] make owned handles;
/// [`into_id`](Handle::into_id) gives the reference up as a plain
/// [`HandleId`].
///
/// ```no_run
/// use bus1::{Handle, NodeId, Peer};
/// # fn main() -> std::io::Result<()> {
/// let (server, client) = (Peer::open()?, Peer::open()?);
/// let id = server.transfer(NodeId::new(0x100).unwrap(), &client)?.unwrap();
/// let h = Handle::from_id(&client, id);   // owns the reference `transfer` gave
/// client.send().destination(&h).payload(b"hi").submit()?;
/// drop(h); // HANDLE_RELEASE: the server gets a NodeRelease for 0x100
/// # Ok(()) }
/// ```
pub struct Handle<'p> {
    peer: &'p Peer,
    id: HandleId,
    /// The peer's flush epoch when the handle was taken over.
    epoch: u64,
}

impl<'p> Handle<'p> {
    /// Takes over one user reference of `peer`'s handle `id`, which the
    /// returned `Handle` releases when dropped. Releasing that reference in
    /// another way as well drops a reference some other part of the program
    /// relies on (the handle may vanish under it), so hand each reference to
    /// one owner only.
    pub fn from_id(peer: &'p Peer, id: HandleId) -> Self {
        Handle { peer, id, epoch: peer.epoch() }
    }

    /// The handle's ID in its peer's namespace.
    pub fn id(&self) -> HandleId {
        self.id
    }

    /// The peer the handle belongs to.
    pub fn peer(&self) -> &'p Peer {
        self.peer
    }

    /// Gives up ownership: the reference is no longer released on drop.
    pub fn into_id(self) -> HandleId {
        let id = self.id;
        std::mem::forget(self);
        id
    }

    /// Releases the reference now, reporting a failure (dropping does the
    /// same and ignores it). A handle a flush already dropped
    /// ([`Peer::flush_shared`]) releases nothing.
    pub fn release(self) -> io::Result<()> {
        let r = if self.peer.epoch() == self.epoch { self.peer.release_handle(self.id) } else { Ok(()) };
        std::mem::forget(self);
        r
    }
}

impl Drop for Handle<'_> {
    fn drop(&mut self) {
        if self.peer.epoch() == self.epoch {
            let _ = self.peer.release_handle(self.id);
        }
    }
}

impl From<&Handle<'_>> for HandleId {
    fn from(h: &Handle<'_>) -> HandleId {
        h.id
    }
}

impl std::fmt::Debug for Handle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Handle").field(&self.id).finish()
    }
}
