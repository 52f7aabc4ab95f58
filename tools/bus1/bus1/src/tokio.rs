// SPDX-License-Identifier: MIT OR Apache-2.0
//! Asynchronous receive with tokio (feature `tokio`).

use crate::{Limits, Message, Peer, RecvOptions};
use std::io;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A [`Peer`] registered with the tokio reactor: [`recv`](AsyncPeer::recv)
/// waits for a message without blocking a thread.
///
/// Readiness is only a hint: the kernel reports a peer readable when an entry
/// is at the front of its queue, but `RECV` may then discard that entry (a
/// message to a node that was released or destroyed, or one older than a
/// flush) and find nothing. `recv` handles this: on `EAGAIN` it clears the
/// readiness and waits for the next wake-up, so callers never see a spurious
/// `WouldBlock`.
///
/// Sending needs no waiting (`SEND` never blocks); use
/// [`peer`](AsyncPeer::peer) for everything but receiving.
///
/// ```no_run
/// # async fn serve() -> std::io::Result<()> {
/// use bus1::{tokio::AsyncPeer, Peer};
/// let peer = AsyncPeer::new(Peer::open()?)?;
/// loop {
///     let msg = peer.recv().await?;
///     println!("{} bytes for {:?}", msg.payload().len(), msg.destination());
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncPeer {
    fd: AsyncFd<Peer>,
}

impl AsyncPeer {
    /// Registers `peer` with the current tokio runtime's reactor (for
    /// readability). Fails outside a runtime.
    pub fn new(peer: Peer) -> io::Result<Self> {
        if ::tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other("bus1: AsyncPeer::new outside a tokio runtime"));
        }
        // SAFETY: `Peer` owns its fd for its whole life and always returns
        // that fd from `as_raw_fd`; `AsyncPeer` never hands out `&mut Peer`
        // (which could swap the peer), only `&Peer` and the peer itself
        // after deregistering (`into_inner`).
        let fd = unsafe { AsyncFd::register_with_interest(peer, Interest::READABLE) }.map_err(io::Error::from)?;
        Ok(AsyncPeer { fd })
    }

    /// The peer, for sending, transfers and the other commands.
    pub fn peer(&self) -> &Peer {
        self.fd.get_ref()
    }

    /// [`Peer::flush`]: `&mut self`, so no received message is alive.
    pub fn flush(&mut self, seed: bool) -> io::Result<()> {
        self.fd.get_mut().flush(seed)
    }

    /// [`Peer::reset`].
    pub fn reset(&mut self, flags: u64, peer_flags: Option<u64>, limits: Limits) -> io::Result<()> {
        self.fd.get_mut().reset(flags, peer_flags, limits)
    }

    /// [`Peer::disconnect`]; a pending or later [`recv`](AsyncPeer::recv)
    /// fails with `ESHUTDOWN`.
    pub fn disconnect(&mut self) -> io::Result<()> {
        self.fd.get_mut().disconnect()
    }

    /// Deregisters the peer and returns it.
    pub fn into_inner(self) -> Peer {
        self.fd.into_inner()
    }

    /// Waits for a message and receives it (carried files installed).
    /// `ESHUTDOWN` once the peer is disconnected.
    pub async fn recv(&self) -> io::Result<Message<'_>> {
        self.recv_with(RecvOptions::default()).await
    }

    /// [`recv`](AsyncPeer::recv) with options.
    pub async fn recv_with(&self, opts: RecvOptions) -> io::Result<Message<'_>> {
        loop {
            let mut ready = self.fd.readable().await?;
            match self.fd.get_ref().recv_with(opts) {
                // Nothing (left) to receive: the readiness was spurious or
                // consumed; wait for the next edge.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready.clear_ready(),
                r => return r,
            }
        }
    }
}
