// SPDX-License-Identifier: GPL-2.0
//! A system agent serving many clients, built from handle passing and
//! release notifications.
//!
//! The agent owns a SERVICE node; a launcher hands each client a handle to
//! it. A client opens a session by sending "open" with a handle to its own
//! reply node; the agent answers with a handle to a fresh per-client session
//! node, and the client sends its requests there. Nobody registers or
//! unregisters anything: when a client drops its session handle (or dies),
//! the agent gets NODE_RELEASE for that session node and tears the session
//! down; when the last client is gone, SERVICE itself is released and the
//! agent exits. One client crashes (closes its peer without a word) to show
//! that the same notifications cover it.
use bus1::{HandleId, MessageKind, NodeId, Peer};
use bus1_examples::check;
use std::collections::HashMap;
use std::time::Duration;

const CLIENTS: usize = 8;
const REQUESTS: u32 = 5;
const T: Option<Duration> = Some(Duration::from_secs(10));
const SERVICE: NodeId = match NodeId::new(0x100) {
    Some(n) => n,
    None => panic!(),
};
const REPLY: NodeId = match NodeId::new(0x100) {
    Some(n) => n,
    None => panic!(),
};

fn client(id: usize, peer: Peer, service: HandleId) -> std::io::Result<()> {
    peer.send().destination(service).payload(format!("open client-{id}").as_bytes()).handle(REPLY).submit()?;
    let m = peer.recv_timeout(T)?;
    check!(m.payload() == b"session", "client {id}: got {:?}", m.payload());
    let session = m.handles().next().flatten().expect("a session handle");
    drop(m);
    let crash = id == 0;
    let n = if crash { 2 } else { REQUESTS };
    for i in 0..n {
        let req = format!("echo {id}/{i}");
        peer.send_to(session, req.as_bytes())?;
        let r = peer.recv_timeout(T)?;
        check!(r.payload() == req.as_bytes(), "client {id}: reply {:?}", String::from_utf8_lossy(r.payload()));
    }
    if crash {
        println!("client {id}: crashing after {n} requests (closing the peer, no goodbye)");
        drop(peer);
        return Ok(());
    }
    // Done: dropping the session handle is the whole "logout".
    peer.release_handle(session)?;
    println!("client {id}: {n} requests answered, session handle released");
    Ok(())
}

struct Session {
    client: String,
    reply: Option<HandleId>,
    requests: u32,
}

fn main() -> std::io::Result<()> {
    let agent = Peer::open()?;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let c = Peer::open()?;
        let h = agent.transfer(SERVICE, &c)?.expect("service node");
        clients.push((c, h));
    }
    println!("agent: serving {CLIENTS} clients on node {SERVICE:?}");

    std::thread::scope(|sc| -> std::io::Result<()> {
        let mut threads = Vec::new();
        for (i, (c, h)) in clients.drain(..).enumerate() {
            threads.push(sc.spawn(move || client(i, c, h)));
        }
        let mut sessions: HashMap<NodeId, Session> = HashMap::new();
        let (mut next, mut closed, mut served) = (0x1000u64, 0, 0);
        let mut service_released = false;
        while !(service_released && closed == CLIENTS) {
            let m = agent.recv_timeout(T)?;
            match (m.kind(), m.destination_node()) {
                (MessageKind::Data, Some(SERVICE)) => {
                    let who = String::from_utf8_lossy(m.payload()).trim_start_matches("open ").to_string();
                    let reply = m.handles().next().flatten().expect("open carries a reply handle");
                    let s = NodeId::new(next).unwrap();
                    next += 4;
                    // Carrying an unknown user-chosen ID creates the session node.
                    agent.send().destination(reply).payload(b"session").handle(s).submit()?;
                    sessions.insert(s, Session { client: who, reply: Some(reply), requests: 0 });
                }
                (MessageKind::Data, Some(s)) => {
                    let sess = sessions.get_mut(&s).expect("known session");
                    sess.requests += 1;
                    served += 1;
                    if let Some(r) = sess.reply {
                        agent.send_to(r, m.payload())?;
                    }
                }
                (MessageKind::NodeRelease, Some(SERVICE)) => {
                    println!("agent: no client holds the service handle any more");
                    service_released = true;
                }
                (MessageKind::NodeRelease, Some(s)) => {
                    // The client dropped its session handle (or died).
                    let sess = sessions.remove(&s).expect("known session");
                    agent.destroy_nodes(&[s], true)?;
                    if let Some(r) = sess.reply {
                        agent.release_handle(r)?;
                    }
                    closed += 1;
                    println!("agent: session {s:?} of {} closed after {} requests", sess.client, sess.requests);
                }
                (MessageKind::NodeDestroy, _) => {
                    // A client's reply node is gone (it crashed), or the
                    // notification for a session node we destroyed ourselves.
                    let h = m.destination();
                    if let Some(sess) = sessions.values_mut().find(|s| s.reply == Some(h)) {
                        println!("agent: {} is gone (its reply node was destroyed)", sess.client);
                        sess.reply = None;
                        agent.release_handle(h)?;
                    }
                }
                (k, d) => check!(false, "agent: unexpected {k:?} for {d:?}"),
            }
        }
        for t in threads {
            t.join().expect("client thread")?;
        }
        check!(sessions.is_empty(), "sessions left: {}", sessions.len());
        check!(served == 2 + (CLIENTS as u32 - 1) * REQUESTS, "served {served} requests");
        println!("agent: {served} requests served, all {CLIENTS} sessions closed, service released; agent OK");
        Ok(())
    })
}
