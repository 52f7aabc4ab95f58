// SPDX-License-Identifier: GPL-2.0
//! Ping-pong between two processes. The parent opens a peer for the child,
//! gives it a handle to the parent's node, and starts the child with that
//! peer's fd. The child introduces itself with a message that carries a
//! handle to its own node; then they bounce a counter back and forth and the
//! parent reports the round-trip time.
use bus1::{NodeId, Peer};
use bus1_examples::{check, child_args, spawn_child};
use std::time::{Duration, Instant};

const ROUNDS: u32 = 2000;
const T: Option<Duration> = Some(Duration::from_secs(10));

fn child(peer: Peer, parent: bus1::HandleId) -> std::io::Result<()> {
    let me = NodeId::new(0x100).unwrap();
    peer.send().destination(parent).payload(b"hello from the child").handle(me).submit()?;
    loop {
        let m = peer.recv_timeout(T)?;
        let p = m.payload();
        if p == b"quit" {
            println!("child: got quit, exiting");
            return Ok(());
        }
        let n = u32::from_le_bytes(p.try_into().map_err(|_| std::io::Error::other("bad ping"))?);
        peer.send_to(parent, &(n + 1).to_le_bytes())?;
    }
}

fn main() -> std::io::Result<()> {
    if let Some((_, peer, parent)) = child_args() {
        return child(peer, parent);
    }
    let me = Peer::open()?;
    let child_peer = Peer::open()?;
    let inbox = NodeId::new(0x100).unwrap();
    let h = me.transfer(inbox, &child_peer)?.expect("node is alive");
    println!("parent: gave the child handle {h:?} to my node {inbox:?}");
    let mut proc_ = spawn_child("pong", &child_peer, h)?;
    drop(child_peer);

    let hello = me.recv_timeout(T)?;
    println!(
        "parent: child says {:?} (pid {:?})",
        String::from_utf8_lossy(hello.payload()),
        hello.credentials().map(|c| c.pid)
    );
    check!(hello.credentials().map(|c| c.pid) == Some(proc_.id()), "sender pid is the child's");
    let to_child = hello.handles().next().flatten().expect("a handle to the child's node");
    drop(hello);

    let start = Instant::now();
    let mut n = 0u32;
    for _ in 0..ROUNDS {
        me.send_to(to_child, &n.to_le_bytes())?;
        let m = me.recv_timeout(T)?;
        let r = u32::from_le_bytes(m.payload().try_into().unwrap_or([0; 4]));
        check!(r == n + 1, "pong {r} answers ping {n}");
        n = r;
    }
    let el = start.elapsed();
    println!("parent: {ROUNDS} round trips, {:.1} us each", el.as_secs_f64() * 1e6 / ROUNDS as f64);
    me.send_to(to_child, b"quit")?;
    let st = proc_.wait()?;
    check!(st.success(), "child exit status {st}");
    // The child's peer is gone with it: our handle to its node reports the
    // destruction, and our node, whose only other holder it was, is released.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let m = me.recv_timeout(T)?;
        seen.push((m.kind(), m.destination()));
    }
    seen.sort_by_key(|s| format!("{s:?}"));
    check!(
        seen == [(bus1::MessageKind::NodeDestroy, to_child), (bus1::MessageKind::NodeRelease, inbox.handle())],
        "notifications {seen:?}"
    );
    println!("parent: child exited: {seen:?}; ping-pong OK");
    Ok(())
}
