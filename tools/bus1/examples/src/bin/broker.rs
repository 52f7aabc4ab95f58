// SPDX-License-Identifier: GPL-2.0-only
//! How an unrelated process gets its first handle: a broker.
//!
//! bus1 has no names, so a process that shares no history with a service
//! needs one rendezvous outside bus1. Here it is an `AF_UNIX` socket with an
//! abstract name. A client opens `/dev/bus1` itself, connects, and passes its
//! peer's fd to the broker (`SCM_RIGHTS`). The broker gives that peer a
//! handle to its service node (`HANDLE_TRANSFER` to the passed fd), writes
//! back the handle's ID in the client's namespace, and closes its copy of the
//! fd. From then on everything goes over bus1.
//!
//! Trust: while it holds the fd, the broker could act as the client's peer
//! (receive its messages, send as it). The client hands it over only for the
//! bootstrap, as it would trust a D-Bus daemon, and the broker closes it at
//! once. Over bus1 itself a peer fd cannot be passed at all.
//!
//! The broker serves three client processes of different UIDs (when run as
//! root) from one poll loop, then multicasts events to all of them. One
//! client stops reading and limits its queue to 16 messages. Its queue is
//! charged to its own budget, of which the broker's UID may fill only a share
//! (the quota rule in bus1(7)), so sends to it fail with `EDQUOT` after a few
//! events, while the others get every event and the broker never blocks.
use bus1::{Handle, HandleId, MessageKind, NodeId, Peer};
use bus1_examples::check;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags,
};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

const SERVICE: NodeId = match NodeId::new(0x100) {
    Some(n) => n,
    None => panic!(),
};
const INBOX: NodeId = match NodeId::new(0x200) {
    Some(n) => n,
    None => panic!(),
};
const EVENTS: usize = 100;
const STUCK_LIMIT: u32 = 16;
const CLIENTS: [(&str, u32); 3] = [("alice", 1000), ("bob", 1001), ("stuck", 1002)];
const T: Option<Duration> = Some(Duration::from_secs(20));

/// The client's side of the bootstrap: its own new peer, and the service
/// handle the broker put into it.
fn bootstrap(socket: &str) -> io::Result<(Peer, HandleId)> {
    let peer = Peer::open()?;
    let mut s = UnixStream::connect_addr(&SocketAddr::from_abstract_name(socket)?)?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    let fds = [peer.as_fd()];
    check!(cmsg.push(SendAncillaryMessage::ScmRights(&fds)), "cmsg space");
    sendmsg(&s, &[IoSlice::new(b"peer")], &mut cmsg, SendFlags::empty())?;
    let mut id = [0u8; 8];
    s.read_exact(&mut id)?;
    Ok((peer, HandleId::from_raw(u64::from_le_bytes(id))))
}

fn client(name: &str, socket: &str) -> io::Result<()> {
    let (peer, service) = bootstrap(socket)?;
    if name == "stuck" {
        peer.set_limits(bus1::Limits { max_slices: Some(STUCK_LIMIT), ..Default::default() })?;
    }
    peer.send().destination(service).payload(name.as_bytes()).handle(INBOX).submit()?;
    let welcome = peer.recv_timeout(T)?;
    check!(welcome.payload() == b"welcome", "{name}: no welcome");
    drop(welcome);
    if name == "stuck" {
        // Stop reading until the broker says so (it closes our stdin).
        io::stdin().read_to_end(&mut Vec::new())?;
    }
    let mut events = 0;
    loop {
        let m = peer.recv_timeout(if name == "stuck" { Some(Duration::ZERO) } else { T });
        match m {
            Ok(m) if m.kind() == MessageKind::Data && m.payload() == b"done" => break,
            Ok(m) if m.kind() == MessageKind::Data => events += 1,
            Ok(_) => {}
            Err(e) if name == "stuck" && e.kind() == io::ErrorKind::TimedOut => break,
            Err(e) => return Err(e),
        }
    }
    println!("client {name} (uid {}): {events} events", rustix::process::getuid().as_raw());
    check!(name == "stuck" || events == EVENTS, "{name}: {events} of {EVENTS} events");
    Ok(())
}

/// The broker's side of the bootstrap: reads the client's peer fd from the
/// socket, transfers a service handle into it and writes back its ID.
fn hand_out(peer: &Peer, mut s: UnixStream) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let mut buf = [0u8; 8];
    recvmsg(&s, &mut [IoSliceMut::new(&mut buf)], &mut cmsg, RecvFlags::CMSG_CLOEXEC)?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for m in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(r) = m {
            fds.extend(r);
        }
    }
    if fds.len() != 1 {
        return Err(io::Error::other(format!("expected one fd, got {}", fds.len())));
    }
    let client = fds.remove(0);
    // A fd that is not a bus1 peer is refused by the kernel here.
    let id = peer.transfer(SERVICE, &client)?.ok_or_else(|| io::Error::other("service node gone"))?;
    s.write_all(&id.as_raw().to_le_bytes())?;
    println!("broker: gave a new client a service handle (ID {:#x} in its namespace)", id.as_raw());
    Ok(()) // `client` (our copy of its peer fd) and the socket close here
}

fn broker() -> io::Result<()> {
    let socket = format!("bus1-broker-{}", std::process::id());
    let listener = UnixListener::bind_addr(&SocketAddr::from_abstract_name(&socket)?)?;
    let peer = Peer::open()?;
    let root = rustix::process::getuid().is_root();
    println!("broker: listening on @{socket}");
    let mut children = Vec::new();
    for (name, uid) in CLIENTS {
        let mut cmd = Command::new("/proc/self/exe");
        cmd.args(["--client", name, &socket]).stdin(Stdio::piped());
        if root {
            cmd.uid(uid).gid(uid);
        }
        children.push((name, cmd.spawn()?));
    }

    // One loop: new connections, bootstrap requests, and bus1 messages.
    let mut streams: Vec<UnixStream> = Vec::new();
    let mut subscribers: Vec<(String, u32, Handle<'_>)> = Vec::new();
    while subscribers.len() < CLIENTS.len() {
        let mut fds = vec![PollFd::new(&listener, PollFlags::IN), PollFd::new(&peer, PollFlags::IN)];
        fds.extend(streams.iter().map(|s| PollFd::new(s, PollFlags::IN)));
        poll(&mut fds, None)?;
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        if ready[0] {
            streams.push(listener.accept()?.0);
        }
        for (i, _) in ready[2..].iter().enumerate().filter(|(_, r)| **r).rev() {
            hand_out(&peer, streams.swap_remove(i))?;
        }
        if ready[1] {
            loop {
                let mut m = match peer.recv() {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    r => r?,
                };
                check!(m.kind() == MessageKind::Data, "unexpected {:?}", m.kind());
                let uid = m.credentials().map_or(u32::MAX, |c| c.uid);
                let name = String::from_utf8_lossy(m.payload()).into_owned();
                let Some(Some(inbox)) = m.take_handles().pop() else {
                    return Err(io::Error::other("hello without an inbox handle"));
                };
                peer.send().destination(&inbox).payload(b"welcome").submit()?;
                println!("broker: {name} (uid {uid}) subscribed");
                subscribers.push((name, uid, inbox));
            }
        }
    }

    // Multicast: each event goes to every subscriber in one atomic SEND.
    let mut delivered = vec![0usize; subscribers.len()];
    let mut refused = vec![0usize; subscribers.len()];
    for i in 0..=EVENTS {
        let payload = if i == EVENTS { b"done".to_vec() } else { format!("event {i}").into_bytes() };
        let d = peer
            .send()
            .destinations(subscribers.iter().map(|s| &s.2))
            .payload(&payload)
            .continue_on_error()
            .submit()?;
        for (k, (_, err)) in d.results().enumerate() {
            match err {
                None if i < EVENTS => delivered[k] += 1,
                None => {}
                Some(e) if e.raw_os_error() == Some(rustix::io::Errno::DQUOT.raw_os_error()) => {
                    refused[k] += usize::from(i < EVENTS)
                }
                Some(e) => return Err(e),
            }
        }
    }
    for (k, (name, uid, _)) in subscribers.iter().enumerate() {
        println!("broker: {name} (uid {uid}): {} events delivered, {} refused with EDQUOT", delivered[k], refused[k]);
        if name == "stuck" {
            check!(
                refused[k] > 0 && delivered[k] + refused[k] == EVENTS && delivered[k] <= STUCK_LIMIT as usize,
                "the stuck client was not limited"
            );
        } else {
            check!(delivered[k] == EVENTS && refused[k] == 0, "{name} missed events");
        }
    }
    for (name, mut child) in children {
        drop(child.stdin.take()); // the stuck client may read now
        let st = child.wait()?;
        check!(st.success(), "client {name}: {st}");
    }
    println!("broker: {} clients bootstrapped over AF_UNIX, served from one loop; broker OK", CLIENTS.len());
    Ok(())
}

fn main() -> io::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() == 4 && a[1] == "--client" {
        return client(&a[2], &a[3]);
    }
    broker()
}
