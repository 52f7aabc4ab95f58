// SPDX-License-Identifier: MIT OR Apache-2.0
//! Tests of the bus1 crate against the real kernel module. They need
//! /dev/bus1 (the test guest); without it every test is skipped. Output is
//! TAP, counted by scripts/results.py.
#[path = "support/tap.rs"]
mod tap;

use bus1::{Handle, HandleId, Limits, MessageKind, NodeId, Peer, PeerInfo, RecvOptions};
use rustix::io::Errno;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::time::Duration;

const N1: NodeId = match NodeId::new(0x100) {
    Some(n) => n,
    None => panic!(),
};
const N2: NodeId = match NodeId::new(0x200) {
    Some(n) => n,
    None => panic!(),
};
const T: Option<Duration> = Some(Duration::from_secs(5));

fn open() -> Peer {
    if !std::path::Path::new("/dev/bus1").exists() {
        tap::skip("no /dev/bus1");
    }
    Peer::open().expect("open /dev/bus1")
}

fn errno(e: &io::Error) -> Errno {
    Errno::from_io_error(e).unwrap_or_else(|| panic!("not an errno: {e}"))
}

fn assert_empty(p: &Peer) {
    let e = p.recv().expect_err("queue not empty");
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    assert_eq!(errno(&e), Errno::AGAIN);
}

/// `a` gets a handle to `b`'s node `n`.
fn link(a: &Peer, b: &Peer, n: NodeId) -> HandleId {
    let h = b.transfer(n, a).unwrap().expect("live node");
    assert!(h.is_managed() && h.is_remote(), "{h:?}");
    h
}

fn open_and_query() {
    let p = open();
    let q: PeerInfo = p.query().unwrap();
    assert!(q.max_slices > 0 && q.max_handles > 0, "{q:?}");
    assert!(p.pool_len() >= 1 << 20);
    assert!(p.as_fd().try_clone_to_owned().is_ok());
}

fn unicast_roundtrip() {
    let (a, b) = (open(), open());
    let h = link(&a, &b, N1);
    a.send_to(h, b"hello bus1").unwrap();
    let m = b.recv_timeout(T).unwrap();
    assert_eq!(m.kind(), MessageKind::Data);
    assert_eq!(m.payload(), b"hello bus1");
    assert_eq!(m.destination_node(), Some(N1));
    assert!(!m.continues());
    let c = m.credentials().expect("RFC v1 layout has credentials");
    assert_eq!(c.uid, rustix::process::getuid().as_raw());
    assert_eq!(c.pid, std::process::id());
    assert_eq!(m.handles().len(), 0);
    assert!(m.fds().is_empty());
    m.release().unwrap();
    assert_empty(&b);
}

fn empty_queue_would_block() {
    let p = open();
    assert_empty(&p);
    assert!(!p.wait_readable(Some(Duration::ZERO)).unwrap());
    let e = p.recv_timeout(Some(Duration::from_millis(20))).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
}

fn errors_keep_errno() {
    let p = open();
    // an unknown kernel-assigned ID
    let e = p.release_handle(HandleId::from_raw(0x1009)).unwrap_err();
    assert_eq!(errno(&e), Errno::NXIO);
    assert_eq!(e.raw_os_error(), Some(libc_enxio()));
    // the last reference of a live owned node cannot go
    p.send_to(N1, b"to self").unwrap();
    let e = p.release_handle(N1).unwrap_err();
    assert_eq!(errno(&e), Errno::BUSY);
    // a duplicate destination
    let e = p.send().destinations([N1, N1]).submit().unwrap_err();
    assert_eq!(errno(&e), Errno::NOTUNIQ);
}

fn libc_enxio() -> i32 {
    Errno::NXIO.raw_os_error()
}

fn send_to_own_node() {
    let p = open();
    p.send_to(N1, b"self").unwrap();
    let m = p.recv().unwrap();
    assert_eq!(m.payload(), b"self");
    assert_eq!(m.destination(), N1.handle());
}

fn vectored_payload() {
    let (a, b) = (open(), open());
    let h = link(&a, &b, N1);
    let big = vec![0xa5u8; 70000];
    a.send().destination(h).payload(b"head-").payload(&[]).payload(&big).payload(b"-tail").submit().unwrap();
    let m = b.recv_timeout(T).unwrap();
    let p = m.payload();
    assert_eq!(p.len(), 5 + 70000 + 5);
    assert_eq!(&p[..5], b"head-");
    assert!(p[5..70005].iter().all(|&x| x == 0xa5));
    assert_eq!(&p[70005..], b"-tail");
}

fn handle_passing_and_release() {
    let (a, b) = (open(), open());
    let h = link(&a, &b, N1);
    // a sends b a handle to its own node N2
    a.send().destination(h).payload(b"reply here").handle(N2).submit().unwrap();
    let m = b.recv_timeout(T).unwrap();
    let hs: Vec<_> = m.handles().collect();
    assert_eq!(hs.len(), 1);
    let back = hs[0].expect("valid handle");
    assert!(back.is_remote());
    drop(m);
    b.send_to(back, b"pong").unwrap();
    let r = a.recv_timeout(T).unwrap();
    assert_eq!(r.payload(), b"pong");
    assert_eq!(r.destination_node(), Some(N2));
    drop(r);
    // b drops its handle: a's node has no remote holder left
    b.release_handle(back).unwrap();
    let n = a.recv_timeout(T).unwrap();
    assert_eq!(n.kind(), MessageKind::NodeRelease);
    assert_eq!(n.destination_node(), Some(N2));
    assert_eq!(n.payload(), b"");
    assert_eq!(n.credentials(), None);
    assert_empty(&a);
}

/// `release_handle_refs` drops several references at once, all or none.
fn release_handle_refs_all_or_none() {
    let (a, b) = (open(), open());
    let h = link(&b, &a, N1);
    for _ in 0..3 {
        assert_eq!(a.transfer(N1, &b).unwrap(), Some(h));
    }
    // four references: asking for five or none releases nothing
    assert_eq!(errno(&b.release_handle_refs(h, 5).unwrap_err()), Errno::INVAL);
    assert_eq!(errno(&b.release_handle_refs(h, 0).unwrap_err()), Errno::INVAL);
    b.release_handle_refs(h, 3).unwrap();
    assert_empty(&a);
    b.release_handle_refs(h, 1).unwrap();
    let n = a.recv_timeout(T).unwrap();
    assert_eq!((n.kind(), n.destination_node()), (MessageKind::NodeRelease, Some(N1)));
    drop(n);
    assert_empty(&a);
    assert_eq!(errno(&b.release_handle_refs(h, 1).unwrap_err()), Errno::NXIO);
}

fn destroy_notifies_and_unreachable() {
    let (a, b, c) = (open(), open(), open());
    let hb = link(&a, &b, N1);
    let hc = link(&a, &c, N1);
    c.destroy_nodes(&[N1], false).unwrap();
    let d = c.recv_timeout(T).unwrap();
    assert_eq!((d.kind(), d.destination()), (MessageKind::NodeDestroy, N1.handle()));
    let d = a.recv_timeout(T).unwrap();
    assert_eq!((d.kind(), d.destination()), (MessageKind::NodeDestroy, hc));
    drop(d);
    // without CONTINUE the destroyed destination fails everything
    let e = a.send().destinations([hb, hc]).payload(b"x").submit().unwrap_err();
    assert_eq!(errno(&e), Errno::HOSTUNREACH);
    assert_empty(&b);
    // with CONTINUE the live one gets it, and the report says who did not
    let rep = a.send().destinations([hc, hb]).payload(b"part").continue_on_error().submit().unwrap();
    assert!(!rep.all_delivered());
    assert_eq!(rep.delivered(), 1);
    let r: Vec<_> = rep.results().map(|(h, e)| (h, e.map(|e| errno(&e)))).collect();
    assert_eq!(r, vec![(hc, Some(Errno::HOSTUNREACH)), (hb, None)]);
    assert_eq!(b.recv_timeout(T).unwrap().payload(), b"part");
    // a transfer of a destroyed node yields no handle
    assert_eq!(a.transfer(hc, &b).unwrap(), None);
}

fn multicast_ordered() {
    let (s1, s2, r1, r2) = (open(), open(), open(), open());
    let d1 = [link(&s1, &r1, N1), link(&s1, &r2, N1)];
    let d2 = [link(&s2, &r1, N1), link(&s2, &r2, N1)];
    let t1 = std::thread::scope(|sc| {
        let a = sc.spawn(|| {
            for i in 0..200u32 {
                s1.send().destinations(d1).payload(&[1]).payload(&i.to_le_bytes()).submit().unwrap();
            }
        });
        for i in 0..200u32 {
            s2.send().destinations(d2).payload(&[2]).payload(&i.to_le_bytes()).submit().unwrap();
        }
        a.join().is_ok()
    });
    assert!(t1);
    let drain =
        |p: &Peer| -> Vec<Vec<u8>> { (0..400).map(|_| p.recv_timeout(T).unwrap().payload().to_vec()).collect() };
    let (o1, o2) = (drain(&r1), drain(&r2));
    assert_eq!(o1, o2, "receivers disagree on the order");
    for s in [1u8, 2] {
        let seq: Vec<u32> =
            o1.iter().filter(|m| m[0] == s).map(|m| u32::from_le_bytes(m[1..5].try_into().unwrap())).collect();
        assert_eq!(seq, (0..200).collect::<Vec<_>>(), "sender {s} out of order");
    }
    assert_empty(&r1);
    assert_empty(&r2);
}

fn multicast_to_self_continues() {
    let (a, b) = (open(), open());
    let h1 = link(&a, &b, N1);
    let h2 = link(&a, &b, N2);
    a.send().destinations([h1, h2]).payload(b"m").submit().unwrap();
    let m1 = b.recv().unwrap();
    assert!(m1.continues(), "first of two copies in one transaction");
    let m2 = b.recv().unwrap();
    assert!(!m2.continues());
    let mut ds = [m1.destination_node().unwrap(), m2.destination_node().unwrap()];
    ds.sort();
    assert_eq!(ds, [N1, N2]);
}

fn fd_passing() {
    let (a, b) = (open(), open());
    let h = link(&a, &b, N1);
    let (rd, wr) = rustix::pipe::pipe().unwrap();
    a.send().destination(h).payload(b"fd").fd(wr.as_fd()).submit().unwrap();
    drop(wr);
    let mut m = b.recv_timeout(T).unwrap();
    assert_eq!(m.info().n_fds, 1);
    let fds = m.take_fds();
    assert_eq!(fds.len(), 1);
    assert!(m.fds().is_empty());
    drop(m);
    let mut w = std::fs::File::from(fds.into_iter().next().unwrap());
    w.write_all(b"through bus1").unwrap();
    drop(w);
    let mut got = String::new();
    std::fs::File::from(rd).read_to_string(&mut got).unwrap();
    assert_eq!(got, "through bus1");
}

fn fds_not_installed() {
    let (a, b) = (open(), open());
    let h = link(&a, &b, N1);
    let (rd, wr) = rustix::pipe::pipe().unwrap();
    a.send().destination(h).fd(wr.as_fd()).submit().unwrap();
    drop(wr);
    let m = b.recv_with(RecvOptions { install_fds: false, ..Default::default() }).unwrap();
    assert_eq!(m.info().n_fds, 1);
    assert!(m.fds().is_empty());
    drop(m);
    // the file was dropped with the message: the pipe has no writer left
    let mut buf = [0u8; 4];
    assert_eq!(rustix::io::read(&rd, &mut buf).unwrap(), 0);
}

fn refused_fd_kinds() {
    let (a, b) = (open(), open());
    let h = link(&a, &b, N1);
    let e = a.send().destination(h).fd(b.as_fd()).submit().unwrap_err();
    assert_eq!(errno(&e), Errno::OPNOTSUPP);
    let (s1, _s2) = std::os::unix::net::UnixStream::pair().unwrap();
    let e = a.send().destination(h).fd(s1.as_fd()).submit().unwrap_err();
    assert_eq!(errno(&e), Errno::OPNOTSUPP);
    assert_empty(&b);
}

fn slice_released_on_drop() {
    let (a, b) = (open(), open());
    let h = link(&a, &b, N1);
    b.set_limits(Limits { max_slices: Some(1), ..Default::default() }).unwrap();
    assert_eq!(b.query().unwrap().max_slices, 1);
    a.send_to(h, b"1").unwrap();
    let m = b.recv().unwrap();
    // the slice is still held: no room for another message
    let e = a.send_to(h, b"2").unwrap_err();
    assert_eq!(errno(&e), Errno::DQUOT);
    drop(m);
    a.send_to(h, b"2").unwrap();
    assert_eq!(b.recv().unwrap().payload(), b"2");
}

fn small_mapping_erange() {
    if !std::path::Path::new("/dev/bus1").exists() {
        tap::skip("no /dev/bus1");
    }
    let a = open();
    let b = Peer::builder().map_len(4096).open().unwrap();
    assert_eq!(b.pool_len(), 4096);
    let h = link(&a, &b, N1);
    a.send_to(h, &vec![7u8; 8192]).unwrap();
    let e = b.recv().unwrap_err();
    assert_eq!(errno(&e), Errno::RANGE);
    // still queued, and PEEK is held to the mapping the same way
    let e = b.peek().unwrap_err();
    assert_eq!(errno(&e), Errno::RANGE);
    let e = b.recv().unwrap_err();
    assert_eq!(errno(&e), Errno::RANGE);
}

fn peek_leaves_queued() {
    let (a, b) = (open(), open());
    let h = link(&a, &b, N1);
    a.send().destination(h).payload(b"peek").handle(N2).submit().unwrap();
    let i1 = b.peek().unwrap();
    let i2 = b.peek().unwrap();
    assert_eq!(i1, i2);
    assert_eq!((i1.kind, i1.n_bytes, i1.n_handles), (MessageKind::Data, 4, 1));
    let m = b.recv().unwrap();
    assert_eq!(m.payload(), b"peek");
    assert_eq!(m.info().offset, i1.offset);
    assert!(m.handles().next().unwrap().is_some());
    drop(m);
    assert_empty(&b);
}

fn recv_2017_layout() {
    let (a, b) = (open(), open());
    let h = link(&a, &b, N1);
    let (rd, wr) = rustix::pipe::pipe().unwrap();
    a.send().destination(h).payload(b"new abi").fd(wr.as_fd()).submit().unwrap();
    a.send().destination(h).payload(b"2nd").submit().unwrap();
    let m = b.recv_with(RecvOptions { layout_2017: true, ..Default::default() }).unwrap();
    assert_eq!(m.payload(), b"new abi");
    assert_eq!(m.credentials(), None);
    assert_eq!(m.fds().len(), 1);
    drop(m);
    drop(wr);
    let mut buf = [0u8; 1];
    assert_eq!(rustix::io::read(&rd, &mut buf).unwrap(), 0, "installed fd closed with the message");
    assert_eq!(b.recv().unwrap().payload(), b"2nd");
}

fn seed_roundtrip() {
    let p = open();
    assert_eq!(p.recv_seed().unwrap_err().kind(), io::ErrorKind::WouldBlock);
    p.send().seed().payload(b"seed data").submit().unwrap();
    let e = p.send().seed().destination(N1).submit().unwrap_err();
    assert_eq!(errno(&e), Errno::INVAL);
    let m = p.recv_seed().unwrap();
    assert_eq!(m.payload(), b"seed data");
    assert_eq!(m.destination(), HandleId::INVALID);
    drop(m);
    assert_empty(&p);
}

/// The sender's security context arrives only when asked for, as the LSM
/// shows this process's label (Smack in the test guests: the label, no NUL);
/// a kernel without an LSM that provides one delivers none either way.
fn security_context_when_asked() {
    let (a, b) = (open(), open());
    let h = link(&a, &b, N1);
    let own = std::fs::read("/proc/self/attr/current").ok().filter(|l| !l.is_empty());
    a.send_to(h, b"not asked").unwrap();
    b.set_want_secctx(true).unwrap();
    assert_eq!(b.query().unwrap().peer_flags, bus1::sys::BUS1_PEER_FLAG_WANT_SECCTX);
    a.send_to(h, b"asked").unwrap();
    b.set_want_secctx(false).unwrap();
    assert_eq!(b.query().unwrap().peer_flags, 0);
    a.send_to(h, b"no longer").unwrap();

    let m = b.recv().unwrap();
    assert_eq!(m.payload(), b"not asked");
    assert_eq!(m.secctx(), None);
    assert_eq!(m.info().n_secctx, 0);
    drop(m);
    let m = b.recv().unwrap();
    assert_eq!(m.payload(), b"asked");
    assert_eq!(m.secctx(), own.as_deref(), "own label {:?}", own.as_deref().map(String::from_utf8_lossy));
    drop(m);
    let m = b.recv().unwrap();
    assert_eq!(m.payload(), b"no longer");
    assert_eq!(m.secctx(), None);
}

/// Waits up to 10 s until the thread at `/proc/<task>` sleeps (state `S`) in a kernel function
/// whose name contains `within` (its `wchan`); whether it did.
fn wait_asleep(task: &str, within: &str) -> bool {
    for _ in 0..10_000 {
        let stat = std::fs::read_to_string(format!("/proc/{task}/stat")).unwrap_or_default();
        // The command name in parentheses may hold anything.
        let sleeping = stat.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('S'));
        if sleeping && std::fs::read_to_string(format!("/proc/{task}/wchan")).is_ok_and(|w| w.contains(within)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

fn poll_and_disconnect() {
    let (a, mut b) = (open(), open());
    let h = link(&a, &b, N1);
    assert!(!b.wait_readable(Some(Duration::ZERO)).unwrap());
    let (slept, t) = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        let b = &b;
        let w = s.spawn(move || {
            // "<pid>/task/<tid>" of this thread.
            tx.send(std::fs::read_link("/proc/thread-self").unwrap()).unwrap();
            b.wait_readable(T)
        });
        let task = rx.recv().unwrap();
        // Wake the poller only once it sleeps in poll(), so the wake-up is what is tested.
        let slept = wait_asleep(&task.to_string_lossy(), "poll");
        a.send_to(h, b"wake").unwrap();
        (slept, w.join().unwrap())
    });
    assert!(slept, "the poller never slept in poll()");
    assert!(t.unwrap());
    b.disconnect().unwrap();
    assert_eq!(errno(&b.recv().unwrap_err()), Errno::SHUTDOWN);
    assert_eq!(errno(&b.wait_readable(T).unwrap_err()), Errno::SHUTDOWN);
    assert_eq!(errno(&b.disconnect().unwrap_err()), Errno::SHUTDOWN);
    // the owner is gone: the node is destroyed for its holder
    let n = a.recv_timeout(T).unwrap();
    assert_eq!((n.kind(), n.destination()), (MessageKind::NodeDestroy, h));
}

fn flush_drops_queue() {
    let (a, mut b) = (open(), open());
    let h = link(&a, &b, N1);
    a.send_to(h, b"gone").unwrap();
    b.flush(false).unwrap();
    // b's node was destroyed by the flush; the queued message with it
    assert_empty(&b);
    let n = a.recv_timeout(T).unwrap();
    assert_eq!(n.kind(), MessageKind::NodeDestroy);
}

/// A message received before a flush never releases a slice after it: the
/// kernel hands the freed offset to the next message, which a stale release
/// would free under its reader.
fn stale_message_never_releases_newer_slice() {
    let p = open();
    p.send_to(N1, b"aaaa").unwrap();
    let a = p.recv().unwrap();
    let off_a = a.info().offset.expect("a slice");
    // SAFETY: `a` is not read after this, only dropped (not concurrently).
    unsafe { p.flush_shared(false) }.unwrap();
    p.send_to(N1, b"bbbb").unwrap(); // N1 was destroyed; this creates it anew
    let b = p.recv().unwrap();
    // The premise: `b` now lives where `a` was.
    assert_eq!(b.info().offset, Some(off_a), "allocator did not reuse the offset");
    drop(a); // stale: must not release b's slice
    p.send_to(N1, b"cccc").unwrap();
    let c = p.recv().unwrap();
    assert_ne!(c.info().offset, Some(off_a), "b's slice was released by the stale message");
    assert_eq!(b.payload(), b"bbbb");
    assert_eq!(c.payload(), b"cccc");
}

/// An owned handle releases its reference when dropped; `into_id` keeps it.
fn owned_handle_released_on_drop() {
    let (a, b) = (open(), open());
    let h = link(&a, &b, N1);
    a.send().destination(h).handle(N2).submit().unwrap();
    let mut m = b.recv_timeout(T).unwrap();
    let mut hs = m.take_handles();
    assert_eq!(m.handles().len(), 0, "handles handed out twice");
    assert!(m.take_handles().is_empty());
    drop(m);
    let back: Handle<'_> = hs.pop().flatten().expect("one valid handle");
    b.send().destination(&back).payload(b"via owned").submit().unwrap();
    assert_eq!(a.recv_timeout(T).unwrap().payload(), b"via owned");
    // A second reference, given up as a plain ID: dropping it releases nothing.
    let again = b.transfer(back.id(), &b).unwrap().expect("live node");
    assert_eq!(again, back.id());
    let kept = Handle::from_id(&b, again).into_id();
    drop(back);
    assert_empty(&a); // one reference is left: no NodeRelease yet
    Handle::from_id(&b, kept).release().unwrap();
    let n = a.recv_timeout(T).unwrap();
    assert_eq!((n.kind(), n.destination_node()), (MessageKind::NodeRelease, Some(N2)));
    assert_empty(&a);
}

/// The library maps the pool size the loaded module reports under
/// /sys/module/bus1/parameters (readable, mode 0444).
fn pool_size_from_module_parameter() {
    let p = open();
    let text = std::fs::read_to_string(bus1::POOL_SIZE_PARAM).expect("module parameter visible in sysfs");
    let mib: usize = text.trim().parse().expect("a number of MiB");
    assert_eq!(bus1::module_pool_size().unwrap(), mib << 20);
    assert_eq!(p.pool_len(), mib << 20);
    use std::os::unix::fs::PermissionsExt;
    let dir = std::path::Path::new(bus1::POOL_SIZE_PARAM).parent().unwrap();
    for name in [
        "pool_size_mib",
        "pool_cache_kib",
        "user_slices_max",
        "user_handles_max",
        "user_inflight_bytes_max",
        "user_inflight_fds_max",
        "quota_policy",
    ] {
        let mode = std::fs::metadata(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}")).permissions().mode();
        assert_eq!(mode & 0o777, 0o444, "{name}");
    }
}

#[cfg(feature = "tokio")]
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime").block_on(f)
}

/// `AsyncPeer::recv` waits through a readiness that RECV turns into EAGAIN
/// (the front entry is a destruction notice for a handle the receiver has
/// released since, which RECV discards) instead of returning `WouldBlock`.
#[cfg(feature = "tokio")]
fn async_recv_skips_spurious_readiness() {
    use bus1::tokio::AsyncPeer;
    let (a, b) = (open(), open());
    let hb = link(&b, &a, N1); // b holds a handle to a's node N1
    a.destroy_nodes(&[N1], true).unwrap(); // queues a NodeDestroy for b
    b.release_handle(hb).unwrap(); // ... which is stale now
    let h2 = link(&a, &b, N2);
    assert!(b.wait_readable(Some(Duration::ZERO)).unwrap(), "premise: POLLIN with only a stale entry");
    block_on(async {
        let b = AsyncPeer::new(b).unwrap();
        // The readiness is spurious: nothing may come out of it.
        match tokio::time::timeout(Duration::from_millis(200), b.recv()).await {
            Err(_elapsed) => {}
            Ok(r) => panic!("recv returned on a spurious readiness: {r:?}"),
        }
        a.send_to(h2, b"real").unwrap();
        let m = tokio::time::timeout(Duration::from_secs(5), b.recv()).await.expect("woken by the message").unwrap();
        assert_eq!(m.payload(), b"real");
        assert_eq!(m.destination_node(), Some(N2));
    });
}

/// A disconnected peer's readiness (POLLHUP) ends `recv` with `ESHUTDOWN`.
#[cfg(feature = "tokio")]
fn async_recv_after_disconnect() {
    use bus1::tokio::AsyncPeer;
    let p = open();
    block_on(async {
        let mut p = AsyncPeer::new(p).unwrap();
        p.disconnect().unwrap();
        let e = tokio::time::timeout(T.unwrap(), p.recv()).await.expect("HUP wakes recv").unwrap_err();
        assert_eq!(errno(&e), Errno::SHUTDOWN);
    });
}

#[cfg(not(feature = "tokio"))]
fn async_recv_skips_spurious_readiness() {
    tap::skip("built without the tokio feature");
}

#[cfg(not(feature = "tokio"))]
fn async_recv_after_disconnect() {
    tap::skip("built without the tokio feature");
}

fn shared_between_threads() {
    let (a, b) = (open(), open());
    let h = link(&a, &b, N1);
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let a = &a;
            s.spawn(move || {
                for _ in 0..50 {
                    a.send_to(h, &[t]).unwrap();
                }
            });
        }
    });
    let mut count = [0; 4];
    for _ in 0..200 {
        count[b.recv_timeout(T).unwrap().payload()[0] as usize] += 1;
    }
    assert_eq!(count, [50; 4]);
    assert_empty(&b);
}

/// The number of slices in `p`'s pool, from its fdinfo.
fn pool_slices(p: &Peer) -> u64 {
    use std::os::fd::AsRawFd;
    let s = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", p.as_raw_fd())).unwrap();
    let line = s.lines().find(|l| l.starts_with("bus1-pool:")).expect("bus1-pool line");
    let v = line.split_whitespace().find_map(|w| w.strip_prefix("slices=")).expect("slices=");
    v.parse().unwrap()
}

/// `call()` and `reply_and_wait()`: one TRANSACT per side and round trip, in order,
/// with every slice given back (the server's through the next call).
fn call_round_trips() {
    let (a, b) = (open(), open());
    let to_b = link(&a, &b, N1);
    let to_a = link(&b, &a, N1);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut req = b.recv_wait(T).unwrap();
            for i in 0u8..20 {
                assert_eq!(req.payload(), &[i]);
                let answer = [i, i];
                if i == 19 {
                    req.release().unwrap();
                    b.send_to(to_a, &answer).unwrap();
                    break;
                }
                req = b.reply_and_wait(req, to_a, &answer, T).unwrap();
            }
        });
        for i in 0u8..20 {
            let r = a.call(to_b, &[i], T).unwrap();
            assert_eq!(r.payload(), &[i, i]);
            assert_eq!(r.destination_node(), Some(N1));
        }
    });
    assert_eq!(pool_slices(&a), 0);
    assert_eq!(pool_slices(&b), 0);
    assert_empty(&a);
    assert_empty(&b);
}

/// `recv_wait()` times out with `ETIMEDOUT` on an empty queue and returns a
/// queued message at once.
fn recv_wait_in_kernel() {
    let (a, b) = (open(), open());
    let h = link(&a, &b, N1);
    let e = b.recv_wait(Some(Duration::from_millis(20))).unwrap_err();
    assert_eq!(errno(&e), Errno::TIMEDOUT);
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    a.send_to(h, b"there").unwrap();
    assert_eq!(b.recv_wait(T).unwrap().payload(), b"there");
}

fn info(offset: Option<u64>, n_bytes: u64, n_handles: u64, n_fds: u64, n_secctx: u64) -> bus1::MessageInfo {
    bus1::MessageInfo {
        kind: MessageKind::Data,
        flags: 0,
        continues: false,
        destination: N1.handle(),
        credentials: None,
        offset,
        n_bytes,
        n_handles,
        n_fds,
        n_secctx,
    }
}

/// Odd descriptions are errors, never reads outside the mapping (no kernel
/// needed: this checks the library's own guard).
fn odd_descriptions_rejected() {
    let bad = [
        info(Some(4088), 9, 0, 0, 0),
        info(Some(4096), 1, 0, 0, 0),
        info(Some(0), 0, 513, 0, 0),
        info(Some(0), 0, 0, 1025, 0),
        info(Some(4), 1, 0, 0, 0),
        info(Some(0), u64::MAX, 0, 0, 0),
        info(Some(0), 0, u64::MAX / 8 + 1, 0, 0),
        info(Some(0), 0, 0, u64::MAX / 4 + 1, 0),
        info(Some(0), 8, 8, 8, u64::MAX - 80),
        info(Some(u64::MAX - 7), 8, 0, 0, 0),
        info(None, 1, 0, 0, 0),
        info(None, 0, 1, 0, 0),
    ];
    for i in &bad {
        let e = i.check_layout(4096).expect_err(&format!("{i:?} accepted"));
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
    for i in
        [info(Some(4088), 8, 0, 0, 0), info(Some(0), 8, 1, 2, 0), info(None, 0, 0, 0, 0), info(Some(4096), 0, 0, 0, 0)]
    {
        i.check_layout(4096).unwrap_or_else(|e| panic!("{i:?} rejected: {e}"));
    }
}

fn main() {
    tap::main(&[
        ("bus1_rs_odd_descriptions_rejected", odd_descriptions_rejected),
        ("bus1_rs_open_and_query", open_and_query),
        ("bus1_rs_unicast_roundtrip", unicast_roundtrip),
        ("bus1_rs_empty_queue_would_block", empty_queue_would_block),
        ("bus1_rs_errors_keep_errno", errors_keep_errno),
        ("bus1_rs_send_to_own_node", send_to_own_node),
        ("bus1_rs_vectored_payload", vectored_payload),
        ("bus1_rs_handle_passing_and_release", handle_passing_and_release),
        ("bus1_rs_release_handle_refs_all_or_none", release_handle_refs_all_or_none),
        ("bus1_rs_destroy_notifies_and_unreachable", destroy_notifies_and_unreachable),
        ("bus1_rs_multicast_ordered", multicast_ordered),
        ("bus1_rs_multicast_to_self_continues", multicast_to_self_continues),
        ("bus1_rs_fd_passing", fd_passing),
        ("bus1_rs_fds_not_installed", fds_not_installed),
        ("bus1_rs_refused_fd_kinds", refused_fd_kinds),
        ("bus1_rs_slice_released_on_drop", slice_released_on_drop),
        ("bus1_rs_small_mapping_erange", small_mapping_erange),
        ("bus1_rs_peek_leaves_queued", peek_leaves_queued),
        ("bus1_rs_recv_2017_layout", recv_2017_layout),
        ("bus1_rs_seed_roundtrip", seed_roundtrip),
        ("bus1_rs_security_context_when_asked", security_context_when_asked),
        ("bus1_rs_poll_and_disconnect", poll_and_disconnect),
        ("bus1_rs_flush_drops_queue", flush_drops_queue),
        ("bus1_rs_shared_between_threads", shared_between_threads),
        ("bus1_rs_stale_message_never_releases_newer_slice", stale_message_never_releases_newer_slice),
        ("bus1_rs_owned_handle_released_on_drop", owned_handle_released_on_drop),
        ("bus1_rs_pool_size_from_module_parameter", pool_size_from_module_parameter),
        ("bus1_rs_async_recv_skips_spurious_readiness", async_recv_skips_spurious_readiness),
        ("bus1_rs_async_recv_after_disconnect", async_recv_after_disconnect),
        ("bus1_rs_call_round_trips", call_round_trips),
        ("bus1_rs_recv_wait_in_kernel", recv_wait_in_kernel),
    ]);
}
