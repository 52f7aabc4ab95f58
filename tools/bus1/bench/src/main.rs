// SPDX-License-Identifier: GPL-2.0
//! bus1-bench: bus1 side by side with AF_UNIX, pipes, Android binder and a
//! futex ping-pong, in one process tree on one boot.
//!
//! Every figure is printed as one line
//! `BENCH|figure|system|param|unit|median|tail|n|rep_min|rep_max`
//! (tail = p99 for times, p1 for rates; rep_min/max = range of the
//! repetitions' medians), which `scripts/bench.sh` collects from the guest
//! console. Failures print `BENCH-ERROR|figure|system|param|message` and the
//! run goes on with the next figure. Interleaved figures add the paired
//! per-repetition ratios (`BENCH-RATIO`, see [`interleaved`]); the scaling
//! figure adds every case's median of each repetition (`BENCH-REPS`, see
//! [`fig_scale`]), from which the report pairs ratios of ratios.
//!
//! Usage: `bus1-bench [--reps N] [--scale F] [--case-timeout S] [--only fig,fig...]
//! [--systems sys,sys...]` with figures rtt, cpu, ops, mcast, tput, scale (and
//! rtt_pin: only the pinned parts of rtt, on one CPU and across two);
//! `--systems` runs only the named round-trip systems (rtt and rtt_pin) and
//! scaling systems (bus1, unix).
//!
//! The binder rows are named after the kernel's implementation: `binder` for
//! C binder, `rbinder` for Rust Binder (Kconfig admits only one of them in a
//! kernel, so `make bench` boots a second kernel for the other).
//!
//! Every repetition of every case runs in a child process of its own with a
//! deadline (`--case-timeout`, 300 s): a case that fails or hangs is
//! reported as `BENCH-ERROR` with its message and killed, and the run goes
//! on. The round-trip systems run interleaved, and each receiver reads
//! every payload byte (equal work for every system).

mod binder;
mod bus1;
mod util;

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use util::*;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

struct Opts {
    reps: usize,
    scale: f64,
    only: Vec<String>,
    /// The round-trip systems to run (all if empty).
    systems: Vec<String>,
    /// Seconds one repetition of one case may take before it is killed.
    case_timeout: u64,
}

impl Opts {
    fn n(&self, base: usize) -> usize {
        ((base as f64 * self.scale) as usize).max(4)
    }
    fn wants(&self, fig: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|f| f == fig)
    }
}

fn report(fig: &str, sys: &str, param: &str, unit: &str, reps: &[Vec<f64>], higher_is_better: bool) {
    let s = summarize(reps, higher_is_better);
    println!(
        "BENCH|{fig}|{sys}|{param}|{unit}|{:.3}|{:.3}|{}|{:.3}|{:.3}",
        s.median, s.tail, s.n, s.rep_min, s.rep_max
    );
}

fn report_err(fig: &str, sys: &str, param: &str, e: &str) {
    println!("BENCH-ERROR|{fig}|{sys}|{param}|{e}");
}

/// One system of an interleaved figure: its name and one repetition.
type Case<'a> = (&'static str, Box<dyn FnMut() -> Res<Vec<f64>> + 'a>);

/// Runs the repetitions of several systems interleaved (rep 1 of every
/// system, then rep 2, ...; the order rotates each round), so drift in the
/// host's load spreads over all of them, each rep in a child with a
/// deadline. Reports every system, then for each pair (system, base) in
/// `pairs` the paired per-repetition ratio of medians: median, min and max
/// over the repetitions (`BENCH-RATIO|fig|param|sys|base|median|min|max|reps`).
/// `higher_is_better` marks rates (their tail is the p1).
fn interleaved(
    o: &Opts,
    fig: &str,
    param: &str,
    unit: &str,
    higher_is_better: bool,
    cases: &mut [Case<'_>],
    pairs: &[(&str, &str)],
) {
    let reps = run_interleaved(o, fig, param, cases);
    report_interleaved(fig, param, unit, higher_is_better, &reps, pairs);
}

/// The repetitions of one system of an interleaved figure: its name and
/// the samples of each repetition (None if a repetition failed).
type SystemReps = (&'static str, Option<Vec<Vec<f64>>>);

/// The running half of [`interleaved`]: every system's repetitions, a
/// failure reported (`BENCH-ERROR`) and that system dropped from the rest.
fn run_interleaved(o: &Opts, fig: &str, param: &str, cases: &mut [Case<'_>]) -> Vec<SystemReps> {
    let names: Vec<&'static str> = cases.iter().map(|c| c.0).collect();
    let reps = rounds(o, cases, |i, e| report_err(fig, names[i], param, e));
    names.into_iter().zip(reps).collect()
}

/// Runs `o.reps` rounds of `cases`: repetition 1 of every case, then
/// repetition 2, ..., the order rotating each round, each repetition in a
/// child with a deadline ([`run_case`]). A case that fails is passed to
/// `on_err` (its index and the message) and left out of the rounds after.
/// Returns every case's repetitions in round order (None if one failed), so
/// the r-th repetitions of two cases ran in the same round: paired.
fn rounds(o: &Opts, cases: &mut [Case<'_>], mut on_err: impl FnMut(usize, &str)) -> Vec<Option<Vec<Vec<f64>>>> {
    let n = cases.len();
    let mut reps: Vec<Vec<Vec<f64>>> = vec![Vec::new(); n];
    let mut failed = vec![false; n];
    for r in 0..o.reps {
        for k in 0..n {
            let i = (k + r) % n;
            if failed[i] {
                continue;
            }
            match run_case(o.case_timeout, cases[i].1.as_mut()) {
                Ok(v) => reps[i].push(v),
                Err(e) => {
                    on_err(i, &e);
                    failed[i] = true;
                }
            }
        }
    }
    reps.into_iter().zip(failed).map(|(r, failed)| (!failed).then_some(r)).collect()
}

/// The reporting half of [`interleaved`]: a row per system, then the paired
/// ratios of `pairs`.
fn report_interleaved(
    fig: &str,
    param: &str,
    unit: &str,
    higher_is_better: bool,
    reps: &[SystemReps],
    pairs: &[(&str, &str)],
) {
    let mut meds: Vec<(&str, Vec<f64>)> = Vec::new();
    for (name, r) in reps {
        let Some(r) = r else { continue };
        report(fig, name, param, unit, r, higher_is_better);
        meds.push((name, r.iter().map(|r| median(r)).collect()));
    }
    for (a, b) in pairs {
        let (Some(x), Some(y)) = (meds.iter().find(|m| m.0 == *a), meds.iter().find(|m| m.0 == *b)) else {
            continue;
        };
        let q: Vec<f64> = x.1.iter().zip(&y.1).map(|(p, q)| p / q).collect();
        report_ratio(fig, param, a, b, q);
    }
}

/// Prints the ratios `q` of `a` to `b`, one per repetition, as median, min
/// and max (`BENCH-RATIO|fig|param|a|b|median|min|max|reps`).
fn report_ratio(fig: &str, param: &str, a: &str, b: &str, mut q: Vec<f64>) {
    q.retain(|x| x.is_finite());
    q.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if q.is_empty() {
        return;
    }
    println!(
        "BENCH-RATIO|{fig}|{param}|{a}|{b}|{:.3}|{:.3}|{:.3}|{}",
        percentile(&q, 0.5),
        q[0],
        q[q.len() - 1],
        q.len()
    );
}

fn check_seq(what: &str, got: Option<u64>, want: u64) -> Res<()> {
    match got {
        Some(g) if g != want => Err(format!("{what}: message {g} arrived, expected {want}")),
        _ => Ok(()),
    }
}

// --- round-trip latency ------------------------------------------------------

const WARMUP: usize = 50;

/// Client loop shared by every transport: `call(i)` does one round trip.
fn rtt_client<F: FnMut(u64) -> Res<()>>(iters: usize, mut call: F) -> Res<Vec<f64>> {
    let mut v = Vec::with_capacity(iters);
    for i in 0..(WARMUP + iters) as u64 {
        let t0 = now_ns();
        call(i)?;
        let t1 = now_ns();
        if i as usize >= WARMUP {
            v.push((t1 - t0) as f64 / 1000.0);
        }
    }
    Ok(v)
}

fn finish(pid: libc::pid_t, r: Res<Vec<f64>>) -> Res<Vec<f64>> {
    match r {
        Ok(v) => {
            reap(pid)?;
            Ok(v)
        }
        Err(e) => {
            kill(pid);
            Err(e)
        }
    }
}

/// How a bus1 round trip is made.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// RFC v1: SEND; poll + RECV + SLICE_RELEASE (4 calls per side).
    Rfc,
    /// SEND; RECV with WAIT; SLICE_RELEASE (3 calls per side).
    Wait,
    /// One TRANSACT per side: release the last slice, send, wait and receive.
    Transact,
}

/// The server peer of a bus1 round trip is charged to this UID in the
/// cross-UID cases (the client stays root): the quota path.
const OTHER_UID: u32 = 65534;

fn rtt_bus1(size: usize, iters: usize, mode: Mode, cross_uid: bool) -> Res<Vec<f64>> {
    let (mut a, mut b, a2b, b2a) = if cross_uid { bus1::pair_cross_uid(OTHER_UID)? } else { bus1::pair()? };
    let total = WARMUP + iters;
    let srv = spawn(move || {
        b.map()?;
        let mut buf = payload(size);
        let mut m = match mode {
            Mode::Rfc => b.recv()?,
            _ => b.recv_wait()?,
        };
        for i in 0..total as u64 {
            if m.n_bytes != size as u64 {
                return Err(format!("server got {} bytes", m.n_bytes));
            }
            let req = b.payload(&m)?;
            consume(req);
            check_seq("bus1 server", unstamp(req), i)?;
            stamp(&mut buf, i);
            let last = i + 1 == total as u64;
            match mode {
                Mode::Rfc | Mode::Wait => {
                    b.release(m.offset)?;
                    b.send(&[b2a], &buf[..size])?;
                    if !last {
                        m = if mode == Mode::Rfc { b.recv()? } else { b.recv_wait()? };
                    }
                }
                Mode::Transact => {
                    let r = b.transact(Some(m.offset), Some((&[b2a], &buf[..size])), !last, true)?;
                    if let Some(r) = r {
                        m = r;
                    }
                }
            }
        }
        Ok(())
    })?;
    a.map()?;
    let mut buf = payload(size);
    let mut prev = None;
    let r = rtt_client(iters, |i| {
        stamp(&mut buf, i);
        let m = match mode {
            Mode::Rfc => {
                a.send(&[a2b], &buf[..size])?;
                a.recv()?
            }
            Mode::Wait => {
                a.send(&[a2b], &buf[..size])?;
                a.recv_wait()?
            }
            Mode::Transact => {
                a.transact(prev.take(), Some((&[a2b], &buf[..size])), true, true)?.ok_or("TRANSACT: no message")?
            }
        };
        let rep = a.payload(&m)?;
        consume(rep);
        let seq = unstamp(rep);
        if mode == Mode::Transact {
            prev = Some(m.offset);
        } else {
            a.release(m.offset)?;
        }
        if m.n_bytes != size as u64 {
            return Err(format!("client got {} bytes", m.n_bytes));
        }
        check_seq("bus1 client", seq, i)
    });
    if let (Ok(v), Mode::Rfc, false) = (&r, mode, cross_uid) {
        // Does the round trip get slower as messages go by? Medians of fifths.
        let fifths: Vec<String> = v
            .chunks(v.len().div_ceil(5).max(1))
            .map(|c| {
                let mut c = c.to_vec();
                c.sort_by(|a, b| a.partial_cmp(b).unwrap());
                format!("{:.0}", percentile(&c, 0.5))
            })
            .collect();
        println!(
            "BENCH-INFO|rtt_bus1_{size}_detail|client polls {} spurious wake-ups {} for {} round trips; median by fifth (us): {}",
            a.polls.get(),
            a.spurious.get(),
            WARMUP + iters,
            fifths.join(" ")
        );
    }
    finish(srv, r)
}

fn socketpair(ty: i32) -> Res<(RawFd, RawFd)> {
    let mut sv = [0; 2];
    // SAFETY: `sv` has room for two fds.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) } as _, "socketpair")?;
    Ok((sv[0], sv[1]))
}

fn close(fd: RawFd) {
    // SAFETY: closes an fd we own.
    unsafe { libc::close(fd) };
}

fn set_sndbuf(fd: RawFd, bytes: usize) {
    let v = bytes as libc::c_int;
    for opt in [libc::SO_SNDBUFFORCE, libc::SO_RCVBUFFORCE] {
        // SAFETY: a valid int option.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &v as *const _ as *const _,
                std::mem::size_of::<libc::c_int>() as _,
            )
        };
    }
}

/// One SOCK_SEQPACKET message out (blocking).
fn sq_send(fd: RawFd, buf: &[u8]) -> Res<()> {
    loop {
        // SAFETY: a valid buffer.
        let r = unsafe { libc::send(fd, buf.as_ptr() as *const _, buf.len(), 0) };
        if r >= 0 {
            return Ok(());
        }
        if errno() != libc::EINTR {
            return Err(format!("send: {}", std::io::Error::last_os_error()));
        }
    }
}

/// One SOCK_SEQPACKET message in (blocking unless `flags` says otherwise);
/// returns its length, or None on EAGAIN.
fn sq_recv(fd: RawFd, buf: &mut [u8], flags: i32) -> Res<Option<usize>> {
    loop {
        // SAFETY: a valid buffer.
        let r = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut _, buf.len(), flags | libc::MSG_TRUNC) };
        if r >= 0 {
            if r as usize > buf.len() {
                return Err(format!("recv: message of {r} bytes truncated"));
            }
            return Ok(Some(r as usize));
        }
        match errno() {
            libc::EINTR => continue,
            libc::EAGAIN => return Ok(None),
            _ => return Err(format!("recv: {}", std::io::Error::last_os_error())),
        }
    }
}

fn rtt_unix(size: usize, iters: usize) -> Res<Vec<f64>> {
    let (c, s) = socketpair(libc::SOCK_SEQPACKET)?;
    let total = WARMUP + iters;
    let srv = spawn(move || {
        close(c);
        let mut buf = payload(size.max(8));
        for i in 0..total as u64 {
            let n = sq_recv(s, &mut buf, 0)?.unwrap_or(0);
            if n != size {
                return Err(format!("server got {n} bytes"));
            }
            consume(&buf[..n]);
            check_seq("unix server", unstamp(&buf[..n]), i)?;
            sq_send(s, &buf[..size])?;
        }
        Ok(())
    })?;
    close(s);
    let mut buf = payload(size.max(8));
    let mut rbuf = payload(size.max(8));
    let r = rtt_client(iters, |i| {
        stamp(&mut buf, i);
        sq_send(c, &buf[..size])?;
        let n = sq_recv(c, &mut rbuf, 0)?.unwrap_or(0);
        if n != size {
            return Err(format!("client got {n} bytes"));
        }
        consume(&rbuf[..n]);
        check_seq("unix client", unstamp(&rbuf[..n]), i)
    });
    close(c);
    finish(srv, r)
}

fn write_all(fd: RawFd, mut buf: &[u8]) -> Res<()> {
    while !buf.is_empty() {
        // SAFETY: a valid buffer.
        let r = unsafe { libc::write(fd, buf.as_ptr() as *const _, buf.len()) };
        if r < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(format!("write: {}", std::io::Error::last_os_error()));
        }
        buf = &buf[r as usize..];
    }
    Ok(())
}

fn read_exact(fd: RawFd, mut buf: &mut [u8]) -> Res<()> {
    while !buf.is_empty() {
        // SAFETY: a valid buffer.
        let r = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut _, buf.len()) };
        if r <= 0 {
            if r < 0 && errno() == libc::EINTR {
                continue;
            }
            return Err(format!(
                "read: {}",
                if r == 0 { "EOF".to_string() } else { std::io::Error::last_os_error().to_string() }
            ));
        }
        buf = &mut buf[r as usize..];
    }
    Ok(())
}

fn pipe() -> Res<(RawFd, RawFd)> {
    let mut p = [0; 2];
    // SAFETY: `p` has room for two fds.
    cvt(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } as _, "pipe2")?;
    Ok((p[0], p[1]))
}

/// A pipe pair cannot carry an empty message: its "0 B" row moves 1 byte.
fn rtt_pipe(size: usize, iters: usize) -> Res<Vec<f64>> {
    let size = size.max(1);
    let (req_r, req_w) = pipe()?;
    let (rep_r, rep_w) = pipe()?;
    let total = WARMUP + iters;
    let srv = spawn(move || {
        close(req_w);
        close(rep_r);
        let mut buf = payload(size);
        for i in 0..total as u64 {
            read_exact(req_r, &mut buf[..size])?;
            consume(&buf[..size]);
            check_seq("pipe server", unstamp(&buf[..size]), i)?;
            write_all(rep_w, &buf[..size])?;
        }
        Ok(())
    })?;
    close(req_r);
    close(rep_w);
    let mut buf = payload(size);
    let mut rbuf = payload(size);
    let r = rtt_client(iters, |i| {
        stamp(&mut buf, i);
        write_all(req_w, &buf[..size])?;
        read_exact(rep_r, &mut rbuf[..size])?;
        consume(&rbuf[..size]);
        check_seq("pipe client", unstamp(&rbuf[..size]), i)
    });
    close(req_w);
    close(rep_r);
    finish(srv, r)
}

/// The binder implementation of this kernel, as the system's name in the
/// rows: `rbinder` if Rust Binder registered its character devices,
/// `binder` otherwise (C binder).
fn binder_name() -> &'static str {
    let devices = std::fs::read_to_string("/proc/devices").unwrap_or_default();
    if devices.lines().any(|l| l.split_whitespace().nth(1) == Some("rust_binder")) {
        "rbinder"
    } else {
        "binder"
    }
}

/// A binder round trip on a binderfs device of its own: each case has its
/// own context manager, so no case depends on the teardown of the last.
fn rtt_binder(size: usize, iters: usize) -> Res<Vec<f64>> {
    let dev = binder::Device::new()?;
    let gate = Gate::new()?;
    let path = dev.path.clone();
    let srv = spawn(|| {
        let mut b = binder::Binder::open(&path)?;
        b.serve_as_context_manager()?;
        gate.open();
        let mut reply = payload(size.max(8));
        // Echo the request's size back; the first 8 bytes carry a stamp.
        stamp(&mut reply, u64::MAX);
        b.echo_loop(&reply)
    })?;
    if !gate.wait_for(srv) {
        return finish(srv, Err("binder server failed before serving (see its message above)".into()));
    }
    let r = (|| {
        let mut c = binder::Binder::open(&dev.path)?;
        let mut buf = payload(size);
        let mut pending = None;
        let v = rtt_client(iters, |i| {
            stamp(&mut buf, i);
            let (n, head) = c.call(binder::CODE_ECHO, &buf[..size], &mut pending)?;
            if n != size as u64 {
                return Err(format!("binder reply of {n} bytes"));
            }
            check_seq("binder client", head, u64::MAX)
        })?;
        c.call(binder::CODE_QUIT, &[], &mut pending)?;
        c.flush_free(&mut pending)?;
        Ok(v)
    })();
    finish(srv, r)
}

fn futex(word: &AtomicU32, op: i32, val: u32) {
    // SAFETY: `word` is a live, aligned u32 in shared memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            op,
            val,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
}

/// Shared anonymous memory for the futex ping-pong: a turn word, then the
/// request and the reply area.
struct Shm {
    p: *mut u8,
    len: usize,
}

impl Shm {
    fn new(len: usize) -> Res<Shm> {
        // SAFETY: a fresh anonymous shared mapping.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        Ok(Shm { p: p as *mut u8, len })
    }
    fn word(&self) -> &AtomicU32 {
        // SAFETY: the mapping is page-aligned and lives as long as `self`.
        unsafe { &*(self.p as *const AtomicU32) }
    }
    fn area(&self, off: usize, n: usize) -> *mut u8 {
        assert!(off + n <= self.len);
        // SAFETY: in bounds (checked above).
        unsafe { self.p.add(off) }
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: our mapping.
        unsafe { libc::munmap(self.p as *mut _, self.len) };
    }
}

/// The floor: the payload is copied once into shared memory per direction
/// (like bus1's single copy), and a futex wait/wake hands over the turn.
fn rtt_futex(size: usize, iters: usize) -> Res<Vec<f64>> {
    let area = size.max(8).next_multiple_of(4096);
    let shm = Shm::new(4096 + 2 * area)?;
    let (req, rep) = (4096, 4096 + area);
    let total = WARMUP + iters;
    let wait = libc::FUTEX_WAIT;
    let wake = libc::FUTEX_WAKE;
    let srv = spawn(|| {
        let w = shm.word();
        let buf = payload(size.max(8));
        for i in 0..total as u32 {
            loop {
                let cur = w.load(Ordering::Acquire);
                if cur == 2 * i + 1 {
                    break;
                }
                futex(w, wait, cur);
            }
            // SAFETY: the request area, written by the client before its turn.
            consume(unsafe { std::slice::from_raw_parts(shm.area(req, size), size) });
            if size >= 8 {
                // SAFETY: inside the request area, written by the client.
                let got = unsafe { std::ptr::read_volatile(shm.area(req, 8) as *const u64) };
                check_seq("futex server", Some(got), i as u64)?;
            }
            // SAFETY: `size` bytes fit the reply area.
            unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), shm.area(rep, size), size) };
            w.store(2 * i + 2, Ordering::Release);
            futex(w, wake, 1);
        }
        Ok(())
    })?;
    let w = shm.word();
    let mut buf = payload(size.max(8));
    let r = rtt_client(iters, |i| {
        stamp(&mut buf, i);
        // SAFETY: `size` bytes fit the request area.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), shm.area(req, size), size) };
        let turn = 2 * i as u32 + 1;
        w.store(turn, Ordering::Release);
        futex(w, wake, 1);
        while w.load(Ordering::Acquire) == turn {
            futex(w, wait, turn);
        }
        // SAFETY: the reply area, written by the server before its turn.
        consume(unsafe { std::slice::from_raw_parts(shm.area(rep, size), size) });
        Ok(())
    });
    finish(srv, r)
}

/// The round-trip systems (those `--systems` names, if given), in the order
/// of the first interleaved round.
fn rtt_cases<'a>(o: &Opts, size: usize, iters: usize, full: bool) -> Vec<Case<'a>> {
    let mut v: Vec<Case<'a>> = vec![
        ("bus1", Box::new(move || rtt_bus1(size, iters, Mode::Rfc, false))),
        ("bus1_wait", Box::new(move || rtt_bus1(size, iters, Mode::Wait, false))),
        ("bus1_tx", Box::new(move || rtt_bus1(size, iters, Mode::Transact, false))),
        ("bus1_xuid", Box::new(move || rtt_bus1(size, iters, Mode::Rfc, true))),
        ("bus1_tx_xuid", Box::new(move || rtt_bus1(size, iters, Mode::Transact, true))),
        ("unix", Box::new(move || rtt_unix(size, iters))),
        (binder_name(), Box::new(move || rtt_binder(size, iters))),
    ];
    if full {
        v.push(("pipe", Box::new(move || rtt_pipe(size, iters))));
        v.push(("futex", Box::new(move || rtt_futex(size, iters))));
    }
    v.retain(|c| o.systems.is_empty() || o.systems.iter().any(|s| s == c.0));
    v
}

const RTT_PAIRS: &[(&str, &str)] = &[
    ("bus1", "unix"),
    ("bus1_wait", "unix"),
    ("bus1_tx", "unix"),
    ("bus1_xuid", "unix"),
    ("bus1_tx_xuid", "unix"),
    ("bus1", "binder"),
    ("bus1_tx", "binder"),
    ("bus1", "rbinder"),
    ("bus1_tx", "rbinder"),
    ("bus1_tx", "bus1"),
];

fn fig_rtt(o: &Opts) {
    for size in [0, KIB, 64 * KIB] {
        let iters = o.n(if size >= 64 * KIB { 400 } else { 1500 });
        interleaved(o, "rtt", &size.to_string(), "us", false, &mut rtt_cases(o, size, iters, true), RTT_PAIRS);
    }
    fig_rtt_pin(o);
}

/// The round trips with both processes on one CPU: no cross-CPU wake-up, so
/// this separates the systems' own costs from where the scheduler puts the
/// woken task (all of them wake with a sync hint, binder hands off to a
/// specific thread), and from how fast an idle vCPU is woken on a busy host.
///
/// Then the same with the client on CPU 0 and the server on CPU 1: every
/// wake-up crosses CPUs, in every repetition alike, so the ratios do not
/// depend on which placement the scheduler happened to pick in a repetition
/// (only on how fast the host runs an idle vCPU again).
fn fig_rtt_pin(o: &Opts) {
    pin(0);
    for (fig, server_cpu) in [("rtt_cpu0", None), ("rtt_cpu01", Some(1))] {
        if server_cpu.is_some_and(|c| c >= online_cpus()) {
            continue;
        }
        pin_children(server_cpu);
        for size in [0, KIB] {
            let iters = o.n(1000);
            interleaved(o, fig, &size.to_string(), "us", false, &mut rtt_cases(o, size, iters, true), RTT_PAIRS);
        }
    }
    pin_children(None);
    unpin();
}

// --- one-way throughput --------------------------------------------------------

const WINDOWS: usize = 8;

/// Marks one side of a stream takes at its start and at the end of each
/// 1/WINDOWS of the messages: the wall clock, the CPU time of the calling
/// thread, and how much of that CPU time the side spent waiting for room at
/// the receiver (a bus1 sender's retries; always 0 on other sides).
struct Marks {
    per: usize,
    wall: Vec<u64>,
    cpu: Vec<u64>,
    wait: Vec<u64>,
}

impl Marks {
    /// Takes the start marks.
    fn new(count: usize) -> Marks {
        let mut m = Marks { per: (count / WINDOWS).max(1), wall: Vec::new(), cpu: Vec::new(), wait: Vec::new() };
        m.mark(0);
        m
    }

    fn mark(&mut self, waited: u64) {
        self.wall.push(now_ns());
        self.cpu.push(thread_cpu_ns());
        self.wait.push(waited);
    }

    /// After message `i`: marks the end of a window. `waited` is the CPU time
    /// spent waiting for room so far.
    fn tick(&mut self, i: usize, waited: u64) {
        // The end of a window (`is_multiple_of` needs a newer Rust than the workspace's MSRV).
        if (i + 1) - (i + 1) / self.per * self.per == 0 {
            self.mark(waited);
        }
    }

    /// The CPU and wait marks, for the other side of the stream.
    fn send_cpu(&self, fd: RawFd) -> Res<()> {
        let b: Vec<u8> = self.cpu.iter().chain(&self.wait).flat_map(|x| x.to_ne_bytes()).collect();
        write_all(fd, &b)
    }

    /// Reads the CPU and wait marks the sender wrote with [`Marks::send_cpu`]
    /// (as many as this side took).
    fn recv_cpu(&self, fd: RawFd) -> Res<(Vec<u64>, Vec<u64>)> {
        let n = self.cpu.len();
        let mut b = vec![0u8; 2 * n * 8];
        read_exact(fd, &mut b).map_err(|e| format!("the sender's CPU marks: {e}"))?;
        let v: Vec<u64> = b.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().unwrap())).collect();
        Ok((v[..n].to_vec(), v[n..].to_vec()))
    }
}

/// The samples of one throughput repetition, three series of one value per
/// window, the first window (the warm-up: first-touch faults, fresh pool and
/// socket pages) dropped: MiB per wall-second at the receiver; MiB per
/// CPU-second of sender and receiver together (the CPU time both spent on the
/// window's messages, less the sender's waiting for room); and the share of
/// the sender's CPU time spent waiting for room, in per cent.
fn tput_samples(size: usize, rx: &Marks, tx_cpu: &[u64], tx_wait: &[u64]) -> Vec<f64> {
    let mib = (rx.per * size) as f64 / MIB as f64;
    let d = |v: &[u64], k: usize| (v[k] - v[k - 1]) as f64;
    let (mut wall, mut cpu, mut wait) = (Vec::new(), Vec::new(), Vec::new());
    for k in 2..rx.wall.len() {
        wall.push(mib / (d(&rx.wall, k) / 1e9));
        cpu.push(mib / ((d(&rx.cpu, k) + d(tx_cpu, k) - d(tx_wait, k)) / 1e9));
        wait.push(100.0 * d(tx_wait, k) / d(tx_cpu, k));
    }
    [wall, cpu, wait].concat()
}

/// SEND that retries while the receiver is out of quota or pool space (bus1
/// has no way to block until there is room), adding the CPU time spent
/// waiting to `waited`: from the first failure to the start of the attempt
/// that succeeds (the retries and `sched_yield`s; the first failed SEND is
/// counted as work).
fn send_waiting(p: &bus1::Peer, dests: &[u64], data: &[u8], waited: &mut u64) -> Res<()> {
    let mut since = None;
    loop {
        let attempt = since.map(|_| thread_cpu_ns());
        match p.send_raw(dests, data) {
            Ok(()) => {
                if let (Some(t0), Some(t1)) = (since, attempt) {
                    *waited += t1 - t0;
                }
                return Ok(());
            }
            Err(libc::EDQUOT) | Err(libc::EXFULL) | Err(libc::EINTR) => {
                since = since.or_else(|| Some(thread_cpu_ns()));
                // SAFETY: no preconditions.
                unsafe { libc::sched_yield() };
            }
            Err(e) => return Err(format!("SEND: {}", std::io::Error::from_raw_os_error(e))),
        }
    }
}

fn tput_bus1(size: usize, count: usize) -> Res<Vec<f64>> {
    let (a, mut b, a2b, _) = bus1::pair()?;
    let go = Gate::new()?;
    let (marks_r, marks_w) = pipe()?;
    let tx = spawn(|| {
        close(marks_r);
        let mut buf = payload(size);
        let mut waited = 0;
        go.wait();
        let mut m = Marks::new(count);
        for i in 0..count {
            stamp(&mut buf, i as u64);
            send_waiting(&a, &[a2b], &buf, &mut waited)?;
            m.tick(i, waited);
        }
        m.send_cpu(marks_w)
    })?;
    close(marks_w);
    let r = (|| {
        b.map()?;
        let mut w = Marks::new(count);
        go.open();
        for i in 0..count {
            let m = b.recv_stream()?;
            if m.n_bytes != size as u64 {
                return Err(format!("got {} bytes", m.n_bytes));
            }
            let data = b.payload(&m)?;
            consume(data);
            let seq = unstamp(data);
            b.release(m.offset)?;
            check_seq("bus1 receiver", seq, i as u64)?;
            w.tick(i, 0);
        }
        let (tx_cpu, tx_wait) = w.recv_cpu(marks_r)?;
        Ok(tput_samples(size, &w, &tx_cpu, &tx_wait))
    })();
    close(marks_r);
    drop(a);
    finish(tx, r)
}

fn tput_unix(size: usize, count: usize) -> Res<Vec<f64>> {
    let (s, r_fd) = socketpair(libc::SOCK_SEQPACKET)?;
    // The same 16 MiB in flight that bus1 allows per user (the kernel doubles it).
    set_sndbuf(s, 8 * MIB);
    set_sndbuf(r_fd, 8 * MIB);
    let go = Gate::new()?;
    let (marks_r, marks_w) = pipe()?;
    let tx = spawn(|| {
        close(r_fd);
        close(marks_r);
        let mut buf = payload(size);
        go.wait();
        let mut m = Marks::new(count);
        for i in 0..count {
            stamp(&mut buf, i as u64);
            sq_send(s, &buf)?;
            m.tick(i, 0);
        }
        m.send_cpu(marks_w)
    })?;
    close(s);
    close(marks_w);
    let r = (|| {
        let mut buf = payload(size);
        let mut w = Marks::new(count);
        go.open();
        for i in 0..count {
            let n = sq_recv(r_fd, &mut buf, 0)?.unwrap_or(0);
            if n != size {
                return Err(format!("got {n} bytes"));
            }
            consume(&buf[..n]);
            check_seq("unix receiver", unstamp(&buf), i as u64)?;
            w.tick(i, 0);
        }
        let (tx_cpu, tx_wait) = w.recv_cpu(marks_r)?;
        Ok(tput_samples(size, &w, &tx_cpu, &tx_wait))
    })();
    close(marks_r);
    close(r_fd);
    finish(tx, r)
}

/// One-way throughput, per wall-second (`tput`) and per CPU-second of sender
/// and receiver together (`tput_cpu`: on two CPUs AF_UNIX's two copies run
/// in parallel, so the wall clock hides the copy bus1 saves), from the same
/// interleaved repetitions, so both ratios are paired; and the share of the
/// bus1 sender's CPU time spent retrying a full receiver (`tput_wait`, left
/// out of `tput_cpu`).
fn fig_tput(o: &Opts) {
    // Without a CPU-time clock `thread_cpu_ns` is the wall clock: no CPU figure then.
    let cpu_clock = thread_cpu_clock_is_real();
    for size in [4 * KIB, 64 * KIB, MIB] {
        // About 96 MiB per repetition, at least 64 messages.
        let count = o.n((96 * MIB / size).clamp(64, 8192));
        let p = size.to_string();
        let mut cases: Vec<Case<'_>> = vec![
            ("bus1", Box::new(move || tput_bus1(size, count))),
            ("unix", Box::new(move || tput_unix(size, count))),
        ];
        let reps = run_interleaved(o, "tput", &p, &mut cases);
        // The three series of `tput_samples`, each a third of every repetition's samples.
        let series = |s: usize| -> Vec<SystemReps> {
            let third = |v: &Vec<f64>| v[s * v.len() / 3..(s + 1) * v.len() / 3].to_vec();
            reps.iter().map(|(name, r)| (*name, r.as_ref().map(|r| r.iter().map(third).collect()))).collect()
        };
        report_interleaved("tput", &p, "MiB/s", true, &series(0), &[("bus1", "unix")]);
        if !cpu_clock {
            report_err("tput_cpu", "bus1", &p, "no CLOCK_THREAD_CPUTIME_ID (CONFIG_POSIX_TIMERS)");
            continue;
        }
        report_interleaved("tput_cpu", &p, "MiB/CPU-s", true, &series(1), &[("bus1", "unix")]);
        if let Some((_, Some(r))) = series(2).iter().find(|s| s.0 == "bus1") {
            report("tput_wait", "bus1", &p, "%", r, false);
        }
    }
}

// --- single-thread CPU cost ----------------------------------------------------

const BATCH: usize = 100;

fn cost_batches<F: FnMut() -> Res<()>>(batches: usize, mut op: F) -> Res<Vec<f64>> {
    for _ in 0..BATCH {
        op()?;
    }
    let mut v = Vec::with_capacity(batches);
    for _ in 0..batches {
        let t0 = thread_cpu_ns();
        for _ in 0..BATCH {
            op()?;
        }
        v.push((thread_cpu_ns() - t0) as f64 / BATCH as f64);
    }
    Ok(v)
}

fn cpu_bus1(size: usize, batches: usize, cross_uid: bool) -> Res<Vec<f64>> {
    let (a, mut b, a2b, _) = if cross_uid { bus1::pair_cross_uid(OTHER_UID)? } else { bus1::pair()? };
    b.map()?;
    let buf = payload(size);
    cost_batches(batches, || {
        a.send(&[a2b], &buf[..size])?;
        let m = b.try_recv()?.ok_or("RECV: nothing queued after SEND")?;
        consume(b.payload(&m)?);
        b.release(m.offset)
    })
}

/// The one-call path on one thread: each TRANSACT releases the last slice,
/// sends to the peer's own node and receives that message.
fn cpu_bus1_tx(size: usize, batches: usize) -> Res<Vec<f64>> {
    let mut a = bus1::Peer::open()?;
    a.map()?;
    let own = [1u64 << 8];
    let buf = payload(size);
    let mut prev = None;
    cost_batches(batches, || {
        let m = a.transact(prev.take(), Some((&own, &buf[..size])), true, false)?.ok_or("TRANSACT: no message")?;
        consume(a.payload(&m)?);
        prev = Some(m.offset);
        Ok(())
    })
}

fn cpu_unix(size: usize, batches: usize) -> Res<Vec<f64>> {
    let (s, r) = socketpair(libc::SOCK_SEQPACKET)?;
    let buf = payload(size);
    let mut rbuf = payload(size);
    let res = cost_batches(batches, || {
        sq_send(s, &buf[..size])?;
        match sq_recv(r, &mut rbuf[..size.max(1)], libc::MSG_DONTWAIT)? {
            Some(n) if n == size => {
                consume(&rbuf[..n]);
                Ok(())
            }
            other => Err(format!("recv: {other:?}, expected {size} bytes")),
        }
    });
    close(s);
    close(r);
    res
}

fn fig_cpu(o: &Opts) {
    for size in [0, KIB, 64 * KIB] {
        let batches = o.n(if size >= 64 * KIB { 10 } else { 30 });
        let mut cases: Vec<Case<'_>> = vec![
            ("bus1", Box::new(move || cpu_bus1(size, batches, false))),
            ("bus1_tx", Box::new(move || cpu_bus1_tx(size, batches))),
            ("bus1_xuid", Box::new(move || cpu_bus1(size, batches, true))),
            ("unix", Box::new(move || cpu_unix(size, batches))),
        ];
        let pairs = [("bus1", "unix"), ("bus1_tx", "unix"), ("bus1_xuid", "unix")];
        interleaved(o, "cpu", &size.to_string(), "ns", false, &mut cases, &pairs);
    }
}

// --- per-operation breakdown -----------------------------------------------------

/// Times `B` calls of `op` (thread CPU time, ns per call).
fn time_ops<F: FnMut() -> Res<()>>(b: usize, mut op: F) -> Res<f64> {
    let t0 = thread_cpu_ns();
    for _ in 0..b {
        op()?;
    }
    Ok((thread_cpu_ns() - t0) as f64 / b as f64)
}

/// Where a message's time goes, one syscall kind at a time: `B` SENDs are
/// queued and timed, then `B` polls on the readable peer, `B` RECVs and
/// `B` SLICE_RELEASEs; the same for AF_UNIX write/poll/read, plus an
/// unknown bus1 ioctl (ENOTTY) as the floor of any ioctl on the device.
fn fig_ops(o: &Opts) {
    const B: usize = 100;
    let rounds = o.n(10);
    for size in [0, KIB, 64 * KIB] {
        let keys = ["send", "poll", "recv", "release"];
        let mut reps: Vec<Vec<Vec<f64>>> = vec![Vec::new(); keys.len()];
        let r = (|| -> Res<()> {
            let (a, b, a2b, _) = bus1::pair()?;
            let buf = payload(size);
            let mut offs = Vec::with_capacity(B);
            for _ in 0..o.reps {
                let mut v: Vec<Vec<f64>> = vec![Vec::new(); keys.len()];
                for _ in 0..=rounds {
                    let t_send = time_ops(B, || a.send(&[a2b], &buf[..size]))?;
                    let t_poll = time_ops(B, || wait_readable(b.fd))?;
                    offs.clear();
                    let t_recv = time_ops(B, || {
                        let m = b.try_recv()?.ok_or("RECV: queue empty")?;
                        offs.push(m.offset);
                        Ok(())
                    })?;
                    let mut it = offs.iter();
                    let t_rel = time_ops(B, || b.release(*it.next().unwrap()))?;
                    for (k, t) in [t_send, t_poll, t_recv, t_rel].into_iter().enumerate() {
                        v[k].push(t);
                    }
                }
                for (k, x) in v.into_iter().enumerate() {
                    reps[k].push(x[1..].to_vec());
                }
            }
            Ok(())
        })();
        match r {
            Err(e) => report_err("ops", "bus1", &size.to_string(), &e),
            Ok(()) => {
                for (k, key) in keys.iter().enumerate() {
                    report("ops", "bus1", &format!("{key}_{size}"), "ns", &reps[k], false);
                }
            }
        }
        // AF_UNIX: write, poll, read.
        let keys = ["write", "poll", "read"];
        let mut reps: Vec<Vec<Vec<f64>>> = vec![Vec::new(); keys.len()];
        let r = (|| -> Res<()> {
            let (s, r) = socketpair(libc::SOCK_SEQPACKET)?;
            // Room for B queued messages (the default buffer blocks earlier).
            set_sndbuf(s, 8 * MIB);
            set_sndbuf(r, 8 * MIB);
            let buf = payload(size);
            let mut rbuf = payload(size);
            let res = (|| -> Res<()> {
                for _ in 0..o.reps {
                    let mut v: Vec<Vec<f64>> = vec![Vec::new(); keys.len()];
                    for _ in 0..=rounds {
                        let t_w = time_ops(B, || sq_send(s, &buf[..size]))?;
                        let t_p = time_ops(B, || wait_readable(r))?;
                        let t_r = time_ops(B, || match sq_recv(r, &mut rbuf[..size.max(1)], libc::MSG_DONTWAIT)? {
                            Some(n) if n == size => Ok(()),
                            other => Err(format!("recv: {other:?}")),
                        })?;
                        for (k, t) in [t_w, t_p, t_r].into_iter().enumerate() {
                            v[k].push(t);
                        }
                    }
                    for (k, x) in v.into_iter().enumerate() {
                        reps[k].push(x[1..].to_vec());
                    }
                }
                Ok(())
            })();
            close(s);
            close(r);
            res
        })();
        if let Err(e) = r {
            report_err("ops", "unix", &size.to_string(), &e);
            continue;
        }
        for (k, key) in keys.iter().enumerate() {
            report("ops", "unix", &format!("{key}_{size}"), "ns", &reps[k], false);
        }
    }
    // The floor of any ioctl on /dev/bus1, and of any syscall.
    if let Ok(a) = bus1::Peer::open() {
        let mut v = Vec::new();
        let mut g = Vec::new();
        for _ in 0..o.reps {
            let mut x = Vec::new();
            let mut y = Vec::new();
            for _ in 0..=rounds {
                let mut arg = 0u64;
                // SAFETY: an unknown command number: the kernel rejects it.
                x.push(
                    time_ops(B, || {
                        unsafe { libc::ioctl(a.fd, 0xC008_967F, &mut arg) };
                        Ok(())
                    })
                    .unwrap(),
                );
                // SAFETY: getppid has no preconditions.
                y.push(
                    time_ops(B, || {
                        unsafe { libc::getppid() };
                        Ok(())
                    })
                    .unwrap(),
                );
            }
            v.push(x[1..].to_vec());
            g.push(y[1..].to_vec());
        }
        report("ops", "bus1", "enotty_ioctl", "ns", &v, false);
        report("ops", "sys", "getppid", "ns", &g, false);
    }
}

// --- multicast -------------------------------------------------------------------

/// How each destination of the multicast figure takes its copy.
#[derive(Clone, Copy)]
enum McastRecv {
    /// RFC v1: RECV, then SLICE_RELEASE of the copy (two calls).
    Rfc,
    /// One `TRANSACT` that releases the destination's previous copy and receives the next.
    OneCall,
}

impl McastRecv {
    /// The system name the figure's rows carry.
    fn system(self) -> &'static str {
        match self {
            McastRecv::Rfc => "bus1",
            McastRecv::OneCall => "bus1_tx",
        }
    }

    /// The suffix of the figure's ratio keys (`total`, `unicast`, ...).
    fn ratio_suffix(self) -> &'static str {
        match self {
            McastRecv::Rfc => "",
            McastRecv::OneCall => "_tx",
        }
    }
}

fn fig_mcast(o: &Opts) {
    const MAX: usize = 256;
    const MODES: [McastRecv; 2] = [McastRecv::Rfc, McastRecv::OneCall];
    let setup = || -> Res<(bus1::Peer, Vec<bus1::Peer>, Vec<u64>)> {
        let a = bus1::Peer::open()?;
        let mut rx = Vec::with_capacity(MAX);
        let mut h = Vec::with_capacity(MAX);
        for _ in 0..MAX {
            let mut r = bus1::Peer::open()?;
            h.push(r.handle_for(&a)?);
            rx.push(r);
        }
        Ok((a, rx, h))
    };
    let (a, rx, h) = match setup() {
        Ok(x) => x,
        Err(e) => return report_err("mcast", "bus1", "-", &e),
    };
    let buf = payload(0);
    // The copy each destination still holds in the one-call mode: released by its next TRANSACT.
    let mut held: Vec<Option<u64>> = vec![None; MAX];
    // Per receive mode and destination count n: the repetitions' medians of SEND and of the total.
    let mut send_meds: [Vec<(usize, Vec<f64>)>; 2] = [Vec::new(), Vec::new()];
    let mut total_meds: [Vec<(usize, Vec<f64>)>; 2] = [Vec::new(), Vec::new()];
    for n in [1, 2, 4, 8, 16, 32, 64, 128, 256] {
        let ops = (2048 / n).clamp(8, 256);
        let batches = o.n(10);
        let mut send_reps: [Vec<Vec<f64>>; 2] = [Vec::new(), Vec::new()];
        let mut total_reps: [Vec<Vec<f64>>; 2] = [Vec::new(), Vec::new()];
        let mut err = None;
        // The two modes alternate within each repetition, so their ratios are paired.
        'reps: for _ in 0..o.reps {
            for (k, mode) in MODES.into_iter().enumerate() {
                let mut send_v = Vec::new();
                let mut total_v = Vec::new();
                let r = (|| -> Res<()> {
                    // One SEND to the first n destinations, and every copy taken.
                    let mut op = |mut timed_send: Option<&mut u64>| -> Res<()> {
                        let t0 = timed_send.as_ref().map(|_| thread_cpu_ns());
                        a.send(&h[..n], &buf[..0])?;
                        if let (Some(ts), Some(t0)) = (timed_send.as_deref_mut(), t0) {
                            *ts += thread_cpu_ns() - t0;
                        }
                        for (r, prev) in rx[..n].iter().zip(&mut held) {
                            match mode {
                                McastRecv::Rfc => {
                                    let m = r.try_recv()?.ok_or("RECV: multicast copy missing")?;
                                    r.release(m.offset)?;
                                }
                                McastRecv::OneCall => {
                                    let m = r
                                        .transact(prev.take(), None, true, false)?
                                        .ok_or("TRANSACT: multicast copy missing")?;
                                    *prev = Some(m.offset);
                                }
                            }
                        }
                        Ok(())
                    };
                    // The warm-up, then batches that alternate: the total read only at the
                    // batch's ends (no clock read among the operations it times), and SEND
                    // alone, timed per operation, less what reading the clock twice costs.
                    for _ in 0..ops {
                        op(None)?;
                    }
                    let pair = clock_pair_ns();
                    for _ in 0..batches {
                        let t0 = thread_cpu_ns();
                        for _ in 0..ops {
                            op(None)?;
                        }
                        total_v.push((thread_cpu_ns() - t0) as f64 / ops as f64);
                        let mut ts = 0u64;
                        for _ in 0..ops {
                            op(Some(&mut ts))?;
                        }
                        send_v.push(ts as f64 / ops as f64 - pair);
                    }
                    Ok(())
                })();
                if let Err(e) = r {
                    err = Some((mode, e));
                    break 'reps;
                }
                send_reps[k].push(send_v);
                total_reps[k].push(total_v);
            }
        }
        let p = n.to_string();
        if let Some((mode, e)) = err {
            report_err("mcast", mode.system(), &p, &e);
            continue;
        }
        for (k, mode) in MODES.into_iter().enumerate() {
            report("mcast_send", mode.system(), &p, "ns", &send_reps[k], false);
            report("mcast_total", mode.system(), &p, "ns", &total_reps[k], false);
            send_meds[k].push((n, send_reps[k].iter().map(|r| median(r)).collect()));
            total_meds[k].push((n, total_reps[k].iter().map(|r| median(r)).collect()));
        }
    }
    // The marginal cost of a destination (least-squares slope over n >= 2)
    // against a unicast (n = 1) of the same receive mode, in each repetition:
    // the send side against a unicast SEND, send + receive against a unicast
    // SEND and its receive.
    for (k, mode) in MODES.into_iter().enumerate() {
        let suffix = mode.ratio_suffix();
        for (kind, base, meds) in [("send", "unicast_send", &send_meds[k]), ("total", "unicast", &total_meds[k])] {
            let Some((_, uni)) = meds.iter().find(|m| m.0 == 1) else { continue };
            let q = (0..uni.len())
                .map(|r| {
                    let pts: Vec<(f64, f64)> =
                        meds.iter().filter(|m| m.0 >= 2).filter_map(|m| m.1.get(r).map(|y| (m.0 as f64, *y))).collect();
                    slope(&pts) / uni[r]
                })
                .collect();
            report_ratio("mcast", "per_dest", &format!("{kind}{suffix}"), &format!("{base}{suffix}"), q);
        }
    }
}

/// What a timing of the thread CPU clock around an operation adds to it: the
/// mean difference of two back-to-back readings (the end of one `clock_gettime`
/// and the start of the next).
fn clock_pair_ns() -> f64 {
    const N: u64 = 1000;
    let mut sum = 0u64;
    for _ in 0..N {
        let t0 = thread_cpu_ns();
        sum += thread_cpu_ns() - t0;
    }
    sum as f64 / N as f64
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    percentile(&s, 0.5)
}

/// Least-squares slope of `(x, y)` points (NaN for fewer than two x values).
fn slope(pts: &[(f64, f64)]) -> f64 {
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if pts.len() < 2 || sxx == 0.0 {
        return f64::NAN;
    }
    pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx
}

// --- scaling ---------------------------------------------------------------------

/// One streaming receiver: a process that receives `count` 1 KiB messages
/// from each of its `senders` and writes the time it finished to `done`.
#[derive(Clone, Copy, PartialEq)]
enum Sys {
    Bus1,
    Unix,
}

const SCALE_SIZE: usize = KIB;

/// Runs `groups` independent groups of `senders` senders into one
/// receiver each, every process of group g pinned to CPU g if `pin_groups`;
/// returns the aggregate message rate (messages per second).
fn stream(sys: Sys, groups: usize, senders: usize, count: usize, pin_groups: bool, xuid: bool) -> Res<f64> {
    let go = Gate::new()?;
    let (done_r, done_w) = pipe()?;
    let mut pids = Vec::new();
    let mut run = || -> Res<()> {
        for g in 0..groups {
            let cpu = pin_groups.then_some(g % online_cpus());
            match sys {
                Sys::Bus1 => {
                    // Cross-UID: group g's senders are charged to one UID and
                    // its receiver to another, no UID shared between groups.
                    let uid = SCALE_UID + 2 * g as u32;
                    let open = |u: u32| if xuid { bus1::Peer::open_as(u) } else { bus1::Peer::open() };
                    let mut r = open(uid + 1)?;
                    let mut tx = Vec::new();
                    for _ in 0..senders {
                        let s = open(uid)?;
                        let h = r.handle_for(&s)?;
                        tx.push((s, h));
                    }
                    for (k, (s, h)) in tx.iter().enumerate() {
                        let go = &go;
                        pids.push(spawn(move || {
                            if let Some(c) = cpu {
                                pin(c);
                            }
                            let mut buf = payload(SCALE_SIZE);
                            go.wait();
                            for i in 0..count as u64 {
                                stamp(&mut buf, ((k as u64) << 48) | i);
                                s.send(&[*h], &buf)?;
                            }
                            Ok(())
                        })?);
                    }
                    drop(tx);
                    let go = &go;
                    pids.push(spawn(move || {
                        if let Some(c) = cpu {
                            pin(c);
                        }
                        r.map()?;
                        let mut next = vec![0u64; senders];
                        go.wait();
                        for _ in 0..count * senders {
                            let m = r.recv_stream()?;
                            let seq = unstamp(r.payload(&m)?).unwrap_or(0);
                            r.release(m.offset)?;
                            let k = (seq >> 48) as usize;
                            if k >= senders || seq & 0xffff_ffff_ffff != next[k] {
                                return Err(format!("bus1: out of order message {seq:#x}"));
                            }
                            next[k] += 1;
                        }
                        write_all(done_w, &now_ns().to_ne_bytes())
                    })?);
                }
                Sys::Unix => {
                    let mut rx = Vec::new();
                    for k in 0..senders {
                        let (s, r) = socketpair(libc::SOCK_SEQPACKET)?;
                        let go = &go;
                        pids.push(spawn(move || {
                            if let Some(c) = cpu {
                                pin(c);
                            }
                            close(r);
                            let mut buf = payload(SCALE_SIZE);
                            go.wait();
                            for i in 0..count as u64 {
                                stamp(&mut buf, ((k as u64) << 48) | i);
                                sq_send(s, &buf)?;
                            }
                            Ok(())
                        })?);
                        close(s);
                        rx.push(r);
                    }
                    let go = &go;
                    let rx2 = rx.clone();
                    pids.push(spawn(move || {
                        if let Some(c) = cpu {
                            pin(c);
                        }
                        let mut buf = payload(SCALE_SIZE);
                        let mut next = vec![0u64; senders];
                        let mut left = count * senders;
                        let mut pfd: Vec<libc::pollfd> =
                            rx2.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
                        go.wait();
                        while left > 0 {
                            if senders > 1 {
                                // SAFETY: valid pollfds.
                                cvt(unsafe { libc::poll(pfd.as_mut_ptr(), pfd.len() as _, 10_000) } as _, "poll")?;
                            }
                            for (k, p) in pfd.iter_mut().enumerate() {
                                if senders > 1 && p.revents & libc::POLLIN == 0 {
                                    continue;
                                }
                                let flags = if senders > 1 { libc::MSG_DONTWAIT } else { 0 };
                                while let Some(n) = sq_recv(rx2[k], &mut buf, flags)? {
                                    if n == 0 {
                                        // This sender is done and gone (EOF).
                                        p.fd = -1;
                                        break;
                                    }
                                    let seq = unstamp(&buf[..n]).unwrap_or(0);
                                    if seq >> 48 != k as u64 || seq & 0xffff_ffff_ffff != next[k] {
                                        return Err(format!("unix: out of order message {seq:#x}"));
                                    }
                                    next[k] += 1;
                                    left -= 1;
                                    if senders == 1 || left == 0 {
                                        break;
                                    }
                                }
                            }
                        }
                        write_all(done_w, &now_ns().to_ne_bytes())
                    })?);
                    for r in rx {
                        close(r);
                    }
                }
            }
        }
        Ok(())
    };
    let setup = run();
    close(done_w);
    if let Err(e) = setup {
        for p in pids {
            kill(p);
        }
        close(done_r);
        return Err(e);
    }
    let t0 = now_ns();
    for _ in 0..pids.len() {
        go.open();
    }
    let mut end = 0u64;
    let mut res = Ok(());
    for _ in 0..groups {
        let mut b = [0u8; 8];
        if let Err(e) = read_exact(done_r, &mut b) {
            res = Err(format!("a receiver failed ({e})"));
            break;
        }
        end = end.max(u64::from_ne_bytes(b));
    }
    close(done_r);
    for p in pids {
        if let Err(e) = reap(p) {
            res = res.and(Err(e));
        }
    }
    res?;
    Ok((groups * senders * count) as f64 / ((end - t0) as f64 / 1e9))
}

/// The first UID of the cross-UID scaling cases (two per group).
const SCALE_UID: u32 = 60000;

/// The scaling cases: (system, param, groups, senders per group, every
/// group pinned to a CPU of its own, cross-UID). bus1 charges by UID; AF_UNIX
/// does not care, so it has no cross-UID cases. In this order, so that the
/// four runs of one paired ratio of pairs (bus1's two and AF_UNIX's two) run
/// next to each other in a round.
const SCALE_CASES: [(Sys, &str, &str, usize, usize, bool, bool); 10] = [
    (Sys::Bus1, "bus1", "1pair_pinned", 1, 1, true, false),
    (Sys::Bus1, "bus1", "2pairs_pinned", 2, 1, true, false),
    (Sys::Unix, "unix", "1pair_pinned", 1, 1, true, false),
    (Sys::Unix, "unix", "2pairs_pinned", 2, 1, true, false),
    (Sys::Bus1, "bus1", "1pair_pinned_xuid", 1, 1, true, true),
    (Sys::Bus1, "bus1", "2pairs_pinned_xuid", 2, 1, true, true),
    (Sys::Bus1, "bus1", "1to1", 1, 1, false, false),
    (Sys::Bus1, "bus1", "2to1", 1, 2, false, false),
    (Sys::Unix, "unix", "1to1", 1, 1, false, false),
    (Sys::Unix, "unix", "2to1", 1, 2, false, false),
];

/// Aggregate message rates of independent pairs and of fan-in. Every case
/// runs in every round ([`rounds`]), so the r-th repetitions of all cases
/// are paired: the report divides, per repetition, bus1's two pairs by its
/// one pair and that by AF_UNIX's (`BENCH-REPS` carries each case's rate of
/// every repetition, in round order).
fn fig_scale(o: &Opts) {
    // Messages per sender: 0.2-0.5 s per case on the reference machine,
    // long against the time slices in which the host runs a vCPU.
    let count = o.n(20000);
    println!("BENCH-INFO|scale_cpus|{}", online_cpus());
    // `--systems` picks the systems here too.
    let picked: Vec<_> =
        SCALE_CASES.iter().filter(|c| o.systems.is_empty() || o.systems.iter().any(|s| s == c.1)).collect();
    let mut cases: Vec<Case<'_>> = picked
        .iter()
        .map(|&&(sys, name, _, g, s, pinned, xuid)| -> Case<'_> {
            (name, Box::new(move || stream(sys, g, s, count, pinned, xuid).map(|r| vec![r])))
        })
        .collect();
    let reps = rounds(o, &mut cases, |i, e| report_err("scale", picked[i].1, picked[i].2, e));
    for (&&(_, name, p, ..), r) in picked.iter().zip(reps) {
        if let Some(r) = r {
            report("scale", name, p, "msg/s", &r, true);
            println!("{}", reps_line("scale", name, p, &r));
        }
    }
}

/// `BENCH-REPS|fig|sys|param|m1,m2,...`: the median of each repetition, in
/// round order, for ratios the report pairs itself.
fn reps_line(fig: &str, sys: &str, param: &str, reps: &[Vec<f64>]) -> String {
    let meds: Vec<String> = reps.iter().map(|r| format!("{:.3}", median(r))).collect();
    format!("BENCH-REPS|{fig}|{sys}|{param}|{}", meds.join(","))
}

// --- main --------------------------------------------------------------------------

fn info() {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default().trim().to_string();
    println!("BENCH-INFO|kernel|{}", read("/proc/sys/kernel/osrelease"));
    println!("BENCH-INFO|cpus|{}", online_cpus());
    let model = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_string();
    println!("BENCH-INFO|cpu_model|{model}");
    for v in ["meltdown", "spectre_v2", "retbleed"] {
        println!("BENCH-INFO|vuln_{v}|{}", read(&format!("/sys/devices/system/cpu/vulnerabilities/{v}")));
    }
    println!("BENCH-INFO|bus1|{}", if bus1::available() { "yes" } else { "no" });
    println!("BENCH-INFO|cpu_clock|{}", thread_cpu_clock());
    println!("BENCH-INFO|binder|{}", binder_name());
}

fn main() {
    let mut o = Opts { reps: 5, scale: 1.0, only: Vec::new(), systems: Vec::new(), case_timeout: 300 };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_default();
        match a.as_str() {
            "--reps" => o.reps = val().parse().unwrap_or(5).max(1),
            "--scale" => o.scale = val().parse().unwrap_or(1.0),
            "--only" => o.only = val().split(',').map(String::from).collect(),
            "--systems" => o.systems = val().split(',').map(String::from).collect(),
            "--case-timeout" => o.case_timeout = val().parse().unwrap_or(300).max(1),
            "-h" | "--help" => {
                println!(
                    "usage: bus1-bench [--reps N] [--scale F] [--case-timeout S] [--only rtt,rtt_pin,cpu,ops,mcast,tput,scale] [--systems bus1,bus1_tx,unix,binder,...]"
                );
                return;
            }
            _ => {
                eprintln!("bus1-bench: unknown argument {a}");
                std::process::exit(2);
            }
        }
    }
    // SAFETY: ignoring SIGPIPE so a dead peer shows up as EPIPE.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    info();
    println!("BENCH-INFO|reps|{}", o.reps);
    println!("BENCH-INFO|scale|{}", o.scale);
    let t0 = now_ns();
    type Figure = (&'static str, fn(&Opts));
    let figs: [Figure; 6] = [
        ("rtt", fig_rtt),
        ("cpu", fig_cpu),
        ("ops", fig_ops),
        ("mcast", fig_mcast),
        ("tput", fig_tput),
        ("scale", fig_scale),
    ];
    // Only the pinned round trips (a subset of rtt, for a busy host).
    if o.only.iter().any(|f| f == "rtt_pin") {
        let t = now_ns();
        fig_rtt_pin(&o);
        println!("BENCH-INFO|time_rtt_pin_s|{:.1}", (now_ns() - t) as f64 / 1e9);
    }
    for (name, f) in figs {
        if o.wants(name) {
            let t = now_ns();
            unpin();
            f(&o);
            println!("BENCH-INFO|time_{name}_s|{:.1}", (now_ns() - t) as f64 / 1e9);
        }
    }
    println!("BENCH-INFO|time_total_s|{:.1}", (now_ns() - t0) as f64 / 1e9);
    println!("BENCH-DONE");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Marks (from 1000) after each of the per-window increments `d`.
    fn acc(d: &[u64]) -> Vec<u64> {
        let mut v = vec![1000];
        for x in d {
            v.push(v[v.len() - 1] + x);
        }
        v
    }

    #[test]
    fn reps_line_keeps_round_order() {
        let r = vec![vec![3.0], vec![1.0], vec![5.0, 2.0, 9.0]];
        assert_eq!(
            reps_line("scale", "bus1", "2pairs_pinned", &r),
            "BENCH-REPS|scale|bus1|2pairs_pinned|3.000,1.000,5.000"
        );
    }

    #[test]
    fn tput_samples_drop_the_warm_up_and_the_senders_waiting() {
        const MS: u64 = 1_000_000;
        // 4 windows of 16 messages of 64 KiB: 1 MiB each; the first is the warm-up.
        let rx = Marks {
            per: 16,
            wall: acc(&[9000 * MS, 500 * MS, 250 * MS, 1000 * MS]),
            cpu: acc(&[7, 300 * MS, 100 * MS, 500 * MS]),
            wait: acc(&[0; 4]),
        };
        // The sender's CPU time per window, and how much of it was waiting for room.
        let tx_cpu = acc(&[5, 900 * MS, 400 * MS, 500 * MS]);
        let tx_wait = acc(&[3, 200 * MS, 0, 250 * MS]);
        let s = tput_samples(64 * KIB, &rx, &tx_cpu, &tx_wait);
        // MiB per wall-second, MiB per CPU-second, the sender's waiting share (%).
        let want = [
            2.0,
            4.0,
            1.0,
            1.0 / (0.3 + 0.9 - 0.2),
            1.0 / (0.1 + 0.4),
            1.0 / (0.5 + 0.5 - 0.25),
            100.0 * 0.2 / 0.9,
            0.0,
            50.0,
        ];
        assert_eq!(s.len(), want.len());
        for (g, w) in s.iter().zip(want) {
            assert!((g - w).abs() < 1e-9, "{s:?} != {want:?}");
        }
    }
}
