// SPDX-License-Identifier: GPL-2.0
//! Publish/subscribe with ordered multicast.
//!
//! Two publishers each own a "topic" node. Subscribers get a handle to each
//! topic and subscribe by sending it a message that carries a handle to
//! their own inbox node. The publishers then multicast events to all their
//! subscribers at the same time, from two threads. bus1 orders every
//! message globally, so all subscribers see the two interleaved streams in
//! exactly the same order, and each stream in the order it was sent. One
//! subscriber then disconnects: the publishers are told (NODE_DESTROY on
//! their handle), drop it, and keep publishing to the rest.
use bus1::{HandleId, MessageKind, NodeId, Peer};
use bus1_examples::check;
use std::time::Duration;

const SUBS: usize = 4;
const EVENTS: u32 = 300;
const T: Option<Duration> = Some(Duration::from_secs(10));
const TOPIC: NodeId = match NodeId::new(0x100) {
    Some(n) => n,
    None => panic!(),
};
const INBOX: NodeId = match NodeId::new(0x200) {
    Some(n) => n,
    None => panic!(),
};

/// A publisher collects subscriptions: each carries a handle to an inbox.
fn collect_subscribers(publ: &Peer, n: usize) -> std::io::Result<Vec<HandleId>> {
    let mut subs = Vec::new();
    while subs.len() < n {
        let m = publ.recv_timeout(T)?;
        if m.kind() == MessageKind::NodeRelease {
            continue; // the subscribers dropped their topic handles: nobody else holds it
        }
        check!(m.payload() == b"subscribe", "unexpected {:?}", m.payload());
        subs.extend(m.handles().flatten());
    }
    Ok(subs)
}

fn publish(publ: &Peer, tag: u8, subs: &[HandleId], events: std::ops::Range<u32>) -> std::io::Result<()> {
    for i in events {
        let d = publ.send().destinations(subs.iter().copied()).payload(&[tag]).payload(&i.to_le_bytes()).submit()?;
        check!(d.all_delivered(), "publisher {tag}: event {i} not delivered to all");
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let pubs = [Peer::open()?, Peer::open()?];
    let mut subs: Vec<Peer> = (0..SUBS).map(|_| Peer::open()).collect::<Result<_, _>>()?;
    // Bootstrap: every subscriber gets a handle to both topics and subscribes.
    for s in &subs {
        for p in &pubs {
            let topic = p.transfer(TOPIC, s)?.expect("topic node");
            s.send().destination(topic).payload(b"subscribe").handle(INBOX).submit()?;
            s.release_handle(topic)?;
        }
    }
    let lists = [collect_subscribers(&pubs[0], SUBS)?, collect_subscribers(&pubs[1], SUBS)?];
    println!("pubsub: {SUBS} subscribers, 2 publishers; publishing {EVENTS} events each, concurrently");

    std::thread::scope(|sc| -> std::io::Result<()> {
        let t = sc.spawn(|| publish(&pubs[0], b'A', &lists[0], 0..EVENTS));
        publish(&pubs[1], b'B', &lists[1], 0..EVENTS)?;
        t.join().expect("publisher thread")
    })?;

    let mut seen: Vec<Vec<(u8, u32)>> = Vec::new();
    for s in &subs {
        let mut v = Vec::new();
        for _ in 0..2 * EVENTS {
            let m = s.recv_timeout(T)?;
            let p = m.payload();
            check!(p.len() == 5 && m.destination_node() == Some(INBOX), "odd event {p:?}");
            v.push((p[0], u32::from_le_bytes([p[1], p[2], p[3], p[4]])));
        }
        seen.push(v);
    }
    for (i, v) in seen.iter().enumerate() {
        check!(*v == seen[0], "subscriber {i} saw another order than subscriber 0");
        for tag in [b'A', b'B'] {
            let seq: Vec<u32> = v.iter().filter(|e| e.0 == tag).map(|e| e.1).collect();
            check!(seq == (0..EVENTS).collect::<Vec<_>>(), "stream {} out of order", tag as char);
        }
    }
    let switches = seen[0].windows(2).filter(|w| w[0].0 != w[1].0).count();
    println!(
        "pubsub: all {SUBS} subscribers saw the same order of {} events ({switches} switches between the streams)",
        2 * EVENTS
    );

    // One subscriber leaves by disconnecting: both publishers are notified.
    subs[SUBS - 1].disconnect()?;
    let mut lists = lists;
    for (p, list) in pubs.iter().zip(lists.iter_mut()) {
        let mut m = p.recv_timeout(T)?;
        while m.kind() == MessageKind::NodeRelease {
            m = p.recv_timeout(T)?;
        }
        check!(m.kind() == MessageKind::NodeDestroy, "expected NODE_DESTROY, got {:?}", m.kind());
        let gone = m.destination();
        list.retain(|&h| h != gone);
        p.release_handle(gone)?;
        check!(list.len() == SUBS - 1, "publisher dropped the subscriber");
    }
    println!("pubsub: subscriber {} disconnected; publishers notified, {} left", SUBS - 1, SUBS - 1);
    publish(&pubs[0], b'A', &lists[0], EVENTS..EVENTS + 1)?;
    for s in &subs[..SUBS - 1] {
        let m = s.recv_timeout(T)?;
        check!(m.payload()[0] == b'A', "last event");
    }
    println!("pubsub OK");
    Ok(())
}
