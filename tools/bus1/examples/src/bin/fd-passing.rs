// SPDX-License-Identifier: GPL-2.0
//! File-descriptor passing between two processes.
//!
//! A child "file server" process gets a peer from its parent. The parent
//! asks for a file; the server creates an in-memory file (memfd), writes
//! into it and sends the fd back. The parent also sends the server the write
//! end of a pipe, and the server writes its log into it. Files arrive as
//! `OwnedFd`s, installed close-on-exec.
use bus1::{HandleId, NodeId, Peer};
use bus1_examples::{check, child_args, spawn_child};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::time::Duration;

const T: Option<Duration> = Some(Duration::from_secs(10));

fn server(peer: Peer, parent: HandleId) -> std::io::Result<()> {
    let me = NodeId::new(0x100).unwrap();
    peer.send().destination(parent).payload(b"ready").handle(me).submit()?;
    let mut m = peer.recv_timeout(T)?;
    check!(m.payload() == b"log pipe" && m.fds().len() == 1, "server: expected a pipe");
    let mut log = std::fs::File::from(m.take_fds().remove(0));
    drop(m);
    writeln!(log, "server: got the log pipe")?;
    let m = peer.recv_timeout(T)?;
    let name = String::from_utf8_lossy(m.payload()).to_string();
    drop(m);
    let fd = rustix::fs::memfd_create(name.as_str(), rustix::fs::MemfdFlags::CLOEXEC)?;
    let mut f = std::fs::File::from(fd);
    writeln!(f, "contents of {name}, written by pid {}", std::process::id())?;
    peer.send().destination(parent).payload(b"here").fd(f.as_fd()).submit()?;
    writeln!(log, "server: sent memfd {name:?}")?;
    Ok(())
}

fn main() -> std::io::Result<()> {
    if let Some((_, peer, parent)) = child_args() {
        return server(peer, parent);
    }
    let me = Peer::open()?;
    let sp = Peer::open()?;
    let h = me.transfer(NodeId::new(0x100).unwrap(), &sp)?.expect("node");
    let mut child = spawn_child("server", &sp, h)?;
    drop(sp);
    let m = me.recv_timeout(T)?;
    check!(m.payload() == b"ready", "parent: {:?}", m.payload());
    let srv = m.handles().next().flatten().expect("server handle");
    drop(m);

    let (rd, wr) = rustix::pipe::pipe()?;
    me.send().destination(srv).payload(b"log pipe").fd(wr.as_fd()).submit()?;
    drop(wr);
    println!("parent: sent the write end of a pipe to server pid {}", child.id());
    me.send_to(srv, b"hello.txt")?;
    let mut m = me.recv_timeout(T)?;
    check!(m.payload() == b"here" && m.info().n_fds == 1, "parent: {:?}", m.info());
    let mut f = std::fs::File::from(m.take_fds().remove(0));
    drop(m);
    let flags = rustix::io::fcntl_getfd(&f)?;
    check!(flags.contains(rustix::io::FdFlags::CLOEXEC), "received fd is close-on-exec");
    use std::io::Seek;
    f.seek(std::io::SeekFrom::Start(0))?;
    let mut s = String::new();
    f.read_to_string(&mut s)?;
    print!("parent: read from the received memfd: {s}");
    check!(
        s.starts_with("contents of hello.txt, written by pid ") && s.trim_end().ends_with(&child.id().to_string()),
        "memfd contents {s:?}"
    );
    let st = child.wait()?;
    check!(st.success(), "server exit {st}");
    let mut log = String::new();
    std::fs::File::from(rd).read_to_string(&mut log)?;
    print!("parent: the server's log through the passed pipe:\n{log}");
    check!(log.lines().count() == 2, "log {log:?}");
    println!("fd passing OK");
    Ok(())
}
