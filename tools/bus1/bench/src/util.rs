// SPDX-License-Identifier: GPL-2.0
//! Processes, clocks, pinning and statistics shared by every figure.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Result type of every measurement: errors carry a short context string.
pub type Res<T> = Result<T, String>;

/// Turns a libc return value into a `Res`, with `what` and the errno text.
pub fn cvt(r: libc::c_long, what: &str) -> Res<libc::c_long> {
    if r < 0 {
        Err(format!("{what}: {}", io::Error::last_os_error()))
    } else {
        Ok(r)
    }
}

/// The errno of the last failed call.
pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn clock(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Monotonic wall clock in ns (latency and throughput).
pub fn now_ns() -> u64 {
    clock(libc::CLOCK_MONOTONIC)
}

/// Whether `CLOCK_THREAD_CPUTIME_ID` works (0 unknown, 1 yes, 2 no): asked once, so a
/// kernel without it does not pay a failing syscall per clock read.
static THREAD_CLOCK: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

fn thread_clock_works() -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    match THREAD_CLOCK.load(Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: `ts` is a valid, writable timespec.
            let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
            THREAD_CLOCK.store(if ok { 1 } else { 2 }, Relaxed);
            ok
        }
    }
}

/// CPU time of the calling thread in ns (single-thread cost figures).
///
/// `CLOCK_THREAD_CPUTIME_ID` needs `CONFIG_POSIX_TIMERS` (set in the project's guest kernels).
/// Without it this falls back to `CLOCK_MONOTONIC`: the single-thread figures never block and
/// nothing else runs in the guest, so wall time is the thread's CPU time plus interrupts.
pub fn thread_cpu_ns() -> u64 {
    if thread_clock_works() {
        clock(libc::CLOCK_THREAD_CPUTIME_ID)
    } else {
        now_ns()
    }
}

/// Whether `thread_cpu_ns` is a CPU-time clock (not the wall-clock fallback).
pub fn thread_cpu_clock_is_real() -> bool {
    thread_clock_works()
}

/// Which clock `thread_cpu_ns` uses.
pub fn thread_cpu_clock() -> &'static str {
    if thread_clock_works() {
        "CLOCK_THREAD_CPUTIME_ID"
    } else {
        "CLOCK_MONOTONIC (no CONFIG_POSIX_TIMERS; single thread in an idle guest)"
    }
}

/// Reads every byte of `buf` (the receiver's side of "equal work": each
/// system's receiver touches the whole payload); returns a sum the
/// optimiser cannot drop.
pub fn consume(buf: &[u8]) -> u64 {
    let mut sum = 0u64;
    let mut chunks = buf.chunks_exact(8);
    for c in &mut chunks {
        sum = sum.wrapping_add(u64::from_ne_bytes(c.try_into().unwrap()));
    }
    for &b in chunks.remainder() {
        sum = sum.wrapping_add(u64::from(b));
    }
    std::hint::black_box(sum)
}

/// Runs one measurement in a forked child of its own process group, with a
/// deadline: the child (and every process it started) is killed when the
/// time is up, so a case that hangs fails fast with its own message instead
/// of blocking the run. The samples come back through a pipe.
pub fn run_case(timeout_s: u64, f: &mut dyn FnMut() -> Res<Vec<f64>>) -> Res<Vec<f64>> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two fds.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } as _, "pipe2")?;
    let (rd, wr) = (fds[0], fds[1]);
    // SAFETY: fork in a single-threaded process.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = format!("fork: {}", io::Error::last_os_error());
        // SAFETY: our fds.
        unsafe {
            libc::close(rd);
            libc::close(wr);
        }
        return Err(e);
    }
    if pid == 0 {
        // SAFETY: the child: a process group of its own, so the parent can
        // kill everything it starts; then it leaves with `_exit`.
        unsafe {
            libc::setpgid(0, 0);
            libc::close(rd);
        }
        let text = match f() {
            Ok(v) => {
                let mut t = String::from("ok");
                for x in v {
                    t.push(' ');
                    t.push_str(&format!("{x:e}"));
                }
                t
            }
            Err(e) => format!("err {e}"),
        };
        let mut b = text.as_bytes();
        while !b.is_empty() {
            // SAFETY: writes from a valid buffer.
            let r = unsafe { libc::write(wr, b.as_ptr() as *const _, b.len()) };
            if r <= 0 {
                break;
            }
            b = &b[r as usize..];
        }
        // SAFETY: leaves without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: our fd.
    unsafe { libc::close(wr) };
    let deadline = now_ns() + timeout_s * 1_000_000_000;
    let mut out = Vec::new();
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_sub(now_ns()) / 1_000_000;
        if left == 0 {
            timed_out = true;
            break;
        }
        let mut p = libc::pollfd { fd: rd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, left.min(60_000) as i32) };
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        if r <= 0 {
            continue;
        }
        let mut buf = [0u8; 65536];
        // SAFETY: reads into a valid buffer.
        let n = unsafe { libc::read(rd, buf.as_mut_ptr() as *mut _, buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    // SAFETY: our fd; then the child's process group is killed (if it hung)
    // and the child reaped.
    unsafe {
        libc::close(rd);
        if timed_out {
            libc::kill(-pid, libc::SIGKILL);
        }
        libc::waitpid(pid, std::ptr::null_mut(), 0);
        // Whatever it started and left behind goes too.
        libc::kill(-pid, libc::SIGKILL);
    }
    if timed_out {
        return Err(format!("timed out after {timeout_s} s (case killed)"));
    }
    let text = String::from_utf8_lossy(&out);
    if let Some(e) = text.strip_prefix("err ") {
        return Err(e.to_string());
    }
    match text.strip_prefix("ok") {
        Some(rest) => {
            rest.split_whitespace().map(|w| w.parse::<f64>().map_err(|e| format!("bad sample {w}: {e}"))).collect()
        }
        None => Err("the case died without a result".into()),
    }
}

/// Pins the calling process to one CPU (best effort: false if it failed).
pub fn pin(cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain data; the libc macros only set bits in it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Lets the calling process run on every CPU again.
pub fn unpin() {
    // SAFETY: as in `pin`.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for c in 0..online_cpus() {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Number of online CPUs.
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n < 1 {
        1
    } else {
        n as usize
    }
}

/// A pipe used to hand a "ready"/"go" byte between processes.
pub struct Gate {
    rd: RawFd,
    wr: RawFd,
}

impl Gate {
    pub fn new() -> Res<Gate> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for two fds.
        cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } as _, "pipe2")?;
        Ok(Gate { rd: fds[0], wr: fds[1] })
    }

    /// Signals the other side once.
    pub fn open(&self) {
        let b = 1u8;
        // SAFETY: writes one byte from a valid buffer.
        unsafe { libc::write(self.wr, &b as *const u8 as *const _, 1) };
    }

    /// Waits for one signal from the child `pid`; false as soon as that child
    /// has exited (it failed before signalling).
    pub fn wait_for(&self, pid: libc::pid_t) -> bool {
        loop {
            let mut p = libc::pollfd { fd: self.rd, events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut p, 1, 100) };
            if r > 0 {
                return self.wait();
            }
            // SAFETY: `info` is writable; WNOWAIT leaves the child to be reaped later.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let w = unsafe {
                libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT)
            };
            // SAFETY: si_pid is set by waitid when a child changed state.
            if w < 0 || unsafe { info.si_pid() } == pid {
                return false;
            }
        }
    }

    /// Waits for one signal; false if the other side is gone.
    pub fn wait(&self) -> bool {
        let mut b = 0u8;
        loop {
            // SAFETY: reads one byte into a valid buffer.
            let r = unsafe { libc::read(self.rd, &mut b as *mut u8 as *mut _, 1) };
            if r == 1 {
                return true;
            }
            if r < 0 && errno() == libc::EINTR {
                continue;
            }
            return false;
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // SAFETY: both fds are owned by this gate.
        unsafe {
            libc::close(self.rd);
            libc::close(self.wr);
        }
    }
}

/// The CPU [`spawn`]'s children pin themselves to, if any (`usize::MAX`: none).
static CHILD_CPU: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Makes the children [`spawn`] starts from now on pin themselves to `cpu` before they run
/// (`None`: they stay where they were started, as their parent's affinity allows).
pub fn pin_children(cpu: Option<usize>) {
    CHILD_CPU.store(cpu.unwrap_or(usize::MAX), Ordering::Relaxed);
}

/// Runs `f` in a forked child, which exits with its return value (0 = ok).
/// The child pins itself to the CPU [`pin_children`] names, if any, first; a
/// child that cannot fails.
///
/// The benchmark is single-threaded, so forking is safe.
pub fn spawn<F: FnOnce() -> Res<()>>(f: F) -> Res<libc::pid_t> {
    let cpu = CHILD_CPU.load(Ordering::Relaxed);
    // SAFETY: fork in a single-threaded process.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        let pinned = || {
            if cpu != usize::MAX && !pin(cpu) {
                return Err(format!("cannot pin to CPU {cpu}: {}", io::Error::last_os_error()));
            }
            f()
        };
        let code = match pinned() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("bus1-bench: child: {e}");
                1
            }
        };
        // SAFETY: the child leaves without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    Ok(pid)
}

/// Waits for a child; an error if it failed.
pub fn reap(pid: libc::pid_t) -> Res<()> {
    let mut st = 0;
    loop {
        // SAFETY: `st` is writable.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        if r < 0 {
            return Err(format!("waitpid: {}", io::Error::last_os_error()));
        }
        break;
    }
    if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 {
        Ok(())
    } else {
        Err(format!("child {pid} failed (status {st:#x})"))
    }
}

/// Kills and reaps a child after an error on the parent's side.
pub fn kill(pid: libc::pid_t) {
    // SAFETY: signals and reaps our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

/// Waits until `fd` is readable, without a timeout: every system's receive blocks the same way
/// (a blocking `recv`, `read` or `BINDER_WRITE_READ` arms no timer either), and the case
/// deadline of [`run_case`] ends a case that hangs.
pub fn wait_readable(fd: RawFd) -> Res<()> {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, -1) };
        if r > 0 {
            return Ok(());
        }
        if errno() != libc::EINTR {
            return Err(format!("poll: {}", io::Error::last_os_error()));
        }
    }
}

/// A payload buffer of `n` bytes with a recognisable pattern.
pub fn payload(n: usize) -> Vec<u8> {
    (0..n.max(8)).map(|i| (i * 7 + 1) as u8).collect()
}

/// Writes a sequence number into the first 8 bytes (if there is room).
pub fn stamp(buf: &mut [u8], seq: u64) {
    if buf.len() >= 8 {
        buf[..8].copy_from_slice(&seq.to_le_bytes());
    }
}

/// Reads the sequence number back.
pub fn unstamp(buf: &[u8]) -> Option<u64> {
    if buf.len() >= 8 {
        Some(u64::from_le_bytes(buf[..8].try_into().unwrap()))
    } else {
        None
    }
}

/// Nearest-rank percentile of sorted samples, `q` in [0, 1].
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Summary of one figure: pooled samples of all repetitions.
pub struct Summary {
    pub median: f64,
    /// p99 for latencies and costs (high is bad), p1 for rates (low is bad).
    pub tail: f64,
    pub n: usize,
    pub rep_min: f64,
    pub rep_max: f64,
}

/// Summarizes `reps` (samples per repetition); `higher_is_better` picks the tail.
pub fn summarize(reps: &[Vec<f64>], higher_is_better: bool) -> Summary {
    let mut all: Vec<f64> = reps.iter().flatten().copied().collect();
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut meds: Vec<f64> = reps
        .iter()
        .filter(|r| !r.is_empty())
        .map(|r| {
            let mut s = r.clone();
            s.sort_by(|a, b| a.partial_cmp(b).unwrap());
            percentile(&s, 0.5)
        })
        .collect();
    meds.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Summary {
        median: percentile(&all, 0.5),
        tail: percentile(&all, if higher_is_better { 0.01 } else { 0.99 }),
        n: all.len(),
        rep_min: meds.first().copied().unwrap_or(f64::NAN),
        rep_max: meds.last().copied().unwrap_or(f64::NAN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let s: Vec<f64> = (1..=100).map(|i| i as f64).collect();
        assert_eq!(percentile(&s, 0.5), 50.0);
        assert_eq!(percentile(&s, 0.99), 99.0);
        assert_eq!(percentile(&s, 0.01), 1.0);
        assert_eq!(percentile(&s, 1.0), 100.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn summary_pools_repetitions() {
        let reps = vec![vec![1.0, 2.0, 3.0], vec![10.0, 20.0, 30.0]];
        let s = summarize(&reps, false);
        assert_eq!(s.n, 6);
        assert_eq!(s.median, 3.0);
        assert_eq!(s.tail, 30.0);
        assert_eq!(s.rep_min, 2.0);
        assert_eq!(s.rep_max, 20.0);
        assert_eq!(summarize(&reps, true).tail, 1.0);
    }

    #[test]
    fn children_pin_where_told() {
        // CPU 0 exists everywhere; the child checks where it runs.
        pin_children(Some(0));
        // SAFETY: sched_getcpu has no memory-safety preconditions.
        let on0 = spawn(|| match unsafe { libc::sched_getcpu() } {
            0 => Ok(()),
            c => Err(format!("on CPU {c}")),
        });
        // A CPU no machine has: the child fails before it runs its work.
        pin_children(Some(libc::CPU_SETSIZE as usize - 1));
        let nowhere = spawn(|| Ok(()));
        pin_children(None);
        assert_eq!(on0.and_then(reap), Ok(()));
        assert!(nowhere.and_then(reap).is_err());
    }

    #[test]
    fn stamps_round_trip() {
        let mut b = payload(16);
        stamp(&mut b, 0x1122_3344_5566_7788);
        assert_eq!(unstamp(&b), Some(0x1122_3344_5566_7788));
        assert_eq!(unstamp(&b[..4]), None);
    }
}
