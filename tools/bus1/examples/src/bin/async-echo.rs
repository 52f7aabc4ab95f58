// SPDX-License-Identifier: GPL-2.0-only
//! An echo service on a tokio runtime (the `bus1` crate's `tokio` feature).
//! The server task awaits requests with `AsyncPeer::recv().await` and
//! answers each on the reply handle the request carries; the client tasks
//! await their answers the same way. All peers share one thread. The server
//! stops when no client holds a handle to its service any more.
use bus1::tokio::AsyncPeer;
use bus1::{Handle, MessageKind, NodeId, Peer};
use bus1_examples::check;
use std::time::Duration;

const CLIENTS: usize = 4;
const REQUESTS: usize = 25;
const SERVICE: NodeId = match NodeId::new(0x100) {
    Some(n) => n,
    None => panic!(),
};
const REPLY: NodeId = match NodeId::new(0x200) {
    Some(n) => n,
    None => panic!(),
};

async fn server(peer: AsyncPeer) -> std::io::Result<usize> {
    let mut served = 0;
    loop {
        let mut req = peer.recv().await?;
        match req.kind() {
            MessageKind::Data => {
                // The reply handle, owned: released when `reply_to` drops.
                let Some(Some(reply_to)) = req.take_handles().pop() else {
                    return Err(std::io::Error::other("request without a reply handle"));
                };
                peer.peer().send().destination(&reply_to).payload(req.payload()).submit()?;
                served += 1;
            }
            // No client holds a handle to the service any more.
            MessageKind::NodeRelease => return Ok(served),
            k => return Err(std::io::Error::other(format!("unexpected {k:?}"))),
        }
    }
}

async fn client(id: usize, peer: AsyncPeer, service: bus1::HandleId) -> std::io::Result<()> {
    let service = Handle::from_id(peer.peer(), service);
    for i in 0..REQUESTS {
        let text = format!("client {id} request {i}");
        peer.peer().send().destination(&service).payload(text.as_bytes()).handle(REPLY).submit()?;
        let mut answer = peer.recv().await?;
        // The server drops its reply handle after each answer, so the reply
        // node reports a NodeRelease (and comes back with the next request).
        while answer.kind() == MessageKind::NodeRelease {
            drop(answer);
            answer = peer.recv().await?;
        }
        check!(answer.payload() == text.as_bytes(), "client {id}: wrong echo {:?}", answer.payload());
    }
    Ok(()) // dropping `service` releases it; the last one gives the server a NodeRelease
}

fn main() -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let server_peer = Peer::open()?;
        let mut tasks = Vec::new();
        for id in 0..CLIENTS {
            let p = Peer::open()?;
            let h = server_peer.transfer(SERVICE, &p)?.expect("service node");
            tasks.push(tokio::spawn(async move { client(id, AsyncPeer::new(p)?, h).await }));
        }
        let server = tokio::spawn(async move { server(AsyncPeer::new(server_peer)?).await });
        for t in tasks {
            t.await.map_err(std::io::Error::other)??;
        }
        let served = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)??;
        check!(served == CLIENTS * REQUESTS, "served {served} requests");
        println!("async-echo: {CLIENTS} clients, {served} requests echoed on one thread; async-echo OK");
        Ok(())
    })
}
