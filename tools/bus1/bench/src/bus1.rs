// SPDX-License-Identifier: GPL-2.0
//! The few bus1 ioctls the benchmark needs, raw (include/uapi/linux/bus1.h).
//!
//! The structures and numbers come from `bus1-sys`; the calls are made here,
//! so the benchmark measures exactly one ioctl per operation, with no library
//! layer in between.

use crate::util::{cvt, errno, wait_readable, Res};
use bus1_sys::{
    bus1_cmd_handle_transfer, bus1_cmd_recv, bus1_cmd_recv_msg, bus1_cmd_send, bus1_cmd_transact,
    BUS1_CMD_HANDLE_TRANSFER, BUS1_CMD_RECV, BUS1_CMD_SEND, BUS1_CMD_SLICE_RELEASE, BUS1_CMD_TRANSACT,
    BUS1_HANDLE_INVALID, BUS1_MSG_DATA, BUS1_OFFSET_INVALID, BUS1_RECV_FLAG_WAIT, BUS1_TRANSACT_FLAG_RECV,
    BUS1_TRANSACT_FLAG_RELEASE, BUS1_TRANSACT_FLAG_SEND,
};
use std::os::fd::RawFd;

/// The message description `RECV` writes back.
pub type RecvMsg = bus1_cmd_recv_msg;

/// An ioctl request number as `libc::ioctl` takes it.
const fn req(cmd: u32) -> libc::c_ulong {
    cmd as libc::c_ulong
}

/// Largest pool mapping tried (the module's default pool size).
const POOL_MAP_MAX: usize = 512 << 20;

/// One bus1 peer: an open /dev/bus1 file and (optionally) its pool mapping.
pub struct Peer {
    pub fd: RawFd,
    /// Counters for the report: polls that woke up, and RECVs after a
    /// wake-up that found nothing (spurious POLLIN).
    pub polls: std::cell::Cell<u64>,
    pub spurious: std::cell::Cell<u64>,
    pool: *const u8,
    pool_len: usize,
    next_node: u64,
}

impl Peer {
    /// Opens a new peer (non-blocking; RECV never blocks anyway).
    pub fn open() -> Res<Peer> {
        // SAFETY: a NUL-terminated path.
        let fd = unsafe { libc::open(c"/dev/bus1".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK) };
        cvt(fd as _, "open /dev/bus1")?;
        Ok(Peer {
            fd,
            polls: Default::default(),
            spurious: Default::default(),
            pool: std::ptr::null(),
            pool_len: 0,
            next_node: 1,
        })
    }

    /// Opens a peer charged to `uid` (the real UID at open time decides):
    /// for cross-UID cases. Needs root; the saved UID stays 0, so the
    /// process becomes root again right after.
    pub fn open_as(uid: u32) -> Res<Peer> {
        // SAFETY: plain credential changes of this (single-threaded) process.
        cvt(unsafe { libc::setresuid(uid, uid, 0) } as _, "setresuid")?;
        let p = Peer::open();
        // SAFETY: as above; the saved UID 0 allows it.
        let back = unsafe { libc::setresuid(0, 0, 0) };
        if back != 0 {
            return Err(format!("setresuid back to root: {}", std::io::Error::last_os_error()));
        }
        p
    }

    /// RECV with `BUS1_RECV_FLAG_WAIT`: blocks in the kernel (10 s at most)
    /// until a data message is there; notifications are skipped.
    pub fn recv_wait(&self) -> Res<RecvMsg> {
        loop {
            let mut c = bus1_cmd_recv { flags: BUS1_RECV_FLAG_WAIT, max_offset: u64::MAX, ..Default::default() };
            c.msg.offset = 10_000_000_000;
            // SAFETY: `c` is a valid receive command.
            if unsafe { libc::ioctl(self.fd, req(BUS1_CMD_RECV), &mut c) } < 0 {
                return Err(format!("RECV(WAIT): {}", std::io::Error::last_os_error()));
            }
            if c.msg.type_ == BUS1_MSG_DATA {
                return Ok(c.msg);
            }
            if c.msg.offset != BUS1_OFFSET_INVALID {
                self.release(c.msg.offset)?;
            }
        }
    }

    /// TRANSACT: optionally release `release`, optionally send `data` to
    /// `dests`, then optionally receive (waiting 10 s at most if `wait`).
    /// Returns the received description if `recv`.
    pub fn transact(
        &self,
        release: Option<u64>,
        send: Option<(&[u64], &[u8])>,
        recv: bool,
        wait: bool,
    ) -> Res<Option<RecvMsg>> {
        let mut v = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
        let mut t = bus1_cmd_transact::default();
        if let Some(off) = release {
            t.flags |= BUS1_TRANSACT_FLAG_RELEASE;
            t.release_offset = off;
        }
        if let Some((dests, data)) = send {
            v = libc::iovec { iov_base: data.as_ptr() as *mut _, iov_len: data.len() };
            t.flags |= BUS1_TRANSACT_FLAG_SEND;
            t.send.ptr_destinations = dests.as_ptr() as u64;
            t.send.n_destinations = dests.len() as u64;
            t.send.ptr_vecs = &v as *const _ as u64;
            t.send.n_vecs = if data.is_empty() { 0 } else { 1 };
        }
        if recv {
            t.flags |= BUS1_TRANSACT_FLAG_RECV;
            t.recv.flags = if wait { BUS1_RECV_FLAG_WAIT } else { 0 };
            t.recv.max_offset = u64::MAX;
            // No timeout: as every other system's blocking receive (see `wait_readable`).
            t.recv.msg.offset = 0;
        }
        // SAFETY: every pointer in `t` refers to live memory of the right size.
        if unsafe { libc::ioctl(self.fd, req(BUS1_CMD_TRANSACT), &mut t) } < 0 {
            return Err(format!("TRANSACT (stages done {:#x}): {}", t.done, std::io::Error::last_os_error()));
        }
        let _ = &v;
        Ok(recv.then_some(t.recv.msg))
    }

    /// Maps the pool read-only (the largest of 512, 256, ... MiB that works).
    pub fn map(&mut self) -> Res<()> {
        let mut len = POOL_MAP_MAX;
        while len >= (1 << 20) {
            // SAFETY: a fresh shared read-only mapping of our own peer fd.
            let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, self.fd, 0) };
            if p != libc::MAP_FAILED {
                self.pool = p as *const u8;
                self.pool_len = len;
                return Ok(());
            }
            len /= 2;
        }
        Err(format!("mmap pool: {}", std::io::Error::last_os_error()))
    }

    /// Creates a new node owned by `self` and gives `holder` a handle to it.
    pub fn handle_for(&mut self, holder: &Peer) -> Res<u64> {
        // Caller-chosen ("unmanaged") node IDs: the low 3 bits are flags.
        let node = self.next_node << 8;
        self.next_node += 1;
        let mut c = bus1_cmd_handle_transfer {
            flags: 0,
            src_handle: node,
            dst_fd: holder.fd as u64,
            dst_handle: BUS1_HANDLE_INVALID,
        };
        // SAFETY: `c` is a valid transfer command.
        cvt(unsafe { libc::ioctl(self.fd, req(BUS1_CMD_HANDLE_TRANSFER), &mut c) } as _, "HANDLE_TRANSFER")?;
        Ok(c.dst_handle)
    }

    /// One SEND of `data` to `dests`; Err(errno) on failure.
    pub fn send_raw(&self, dests: &[u64], data: &[u8]) -> Result<(), i32> {
        let v = libc::iovec { iov_base: data.as_ptr() as *mut _, iov_len: data.len() };
        let c = bus1_cmd_send {
            ptr_destinations: dests.as_ptr() as u64,
            n_destinations: dests.len() as u64,
            ptr_vecs: &v as *const _ as u64,
            n_vecs: if data.is_empty() { 0 } else { 1 },
            ..Default::default()
        };
        // SAFETY: every pointer in `c` refers to live memory of the right size.
        if unsafe { libc::ioctl(self.fd, req(BUS1_CMD_SEND), &c) } < 0 {
            Err(errno())
        } else {
            Ok(())
        }
    }

    /// SEND that retries while the receiver is out of quota or pool space
    /// (the flow control a streaming sender needs).
    pub fn send(&self, dests: &[u64], data: &[u8]) -> Res<()> {
        loop {
            match self.send_raw(dests, data) {
                Ok(()) => return Ok(()),
                Err(libc::EDQUOT) | Err(libc::EXFULL) | Err(libc::EINTR) => {
                    // SAFETY: no preconditions.
                    unsafe { libc::sched_yield() };
                }
                Err(e) => return Err(format!("SEND: {}", std::io::Error::from_raw_os_error(e))),
            }
        }
    }

    /// One RECV; Ok(None) if nothing is queued.
    pub fn try_recv(&self) -> Res<Option<RecvMsg>> {
        let mut c = bus1_cmd_recv { flags: 0, max_offset: u64::MAX, ..Default::default() };
        // SAFETY: `c` is a valid receive command.
        if unsafe { libc::ioctl(self.fd, req(BUS1_CMD_RECV), &mut c) } < 0 {
            let e = errno();
            if e == libc::EAGAIN {
                return Ok(None);
            }
            return Err(format!("RECV: {}", std::io::Error::from_raw_os_error(e)));
        }
        Ok(Some(c.msg))
    }

    /// Waits for and receives the next data message (poll + RECV).
    pub fn recv(&self) -> Res<RecvMsg> {
        loop {
            wait_readable(self.fd)?;
            self.polls.set(self.polls.get() + 1);
            match self.try_recv()? {
                Some(m) if m.type_ == BUS1_MSG_DATA => return Ok(m),
                Some(m) => {
                    if m.offset != BUS1_OFFSET_INVALID {
                        self.release(m.offset)?;
                    }
                }
                None => self.spurious.set(self.spurious.get() + 1),
            }
        }
    }

    /// Receives the next data message, polling only when the queue is empty:
    /// what a streaming receiver does (one RECV per message while busy).
    pub fn recv_stream(&self) -> Res<RecvMsg> {
        loop {
            match self.try_recv()? {
                Some(m) if m.type_ == BUS1_MSG_DATA => return Ok(m),
                Some(m) => {
                    if m.offset != BUS1_OFFSET_INVALID {
                        self.release(m.offset)?;
                    }
                }
                None => {
                    wait_readable(self.fd)?;
                    self.polls.set(self.polls.get() + 1);
                }
            }
        }
    }

    /// Gives a received slice back.
    pub fn release(&self, offset: u64) -> Res<()> {
        let mut v = offset;
        // SAFETY: a valid u64 argument.
        cvt(unsafe { libc::ioctl(self.fd, req(BUS1_CMD_SLICE_RELEASE), &mut v) } as _, "SLICE_RELEASE")?;
        Ok(())
    }

    /// The payload of a received message, borrowed from the pool mapping.
    pub fn payload(&self, m: &RecvMsg) -> Res<&[u8]> {
        let end = m.offset.checked_add(m.n_bytes);
        match end {
            Some(end) if !self.pool.is_null() && end <= self.pool_len as u64 => {
                // SAFETY: the range lies inside our read-only pool mapping,
                // and the slice stays allocated until we release it.
                Ok(unsafe { std::slice::from_raw_parts(self.pool.add(m.offset as usize), m.n_bytes as usize) })
            }
            _ => Err(format!(
                "message at {:#x}+{} outside the pool mapping ({} bytes)",
                m.offset, m.n_bytes, self.pool_len
            )),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // SAFETY: we own the mapping and the fd.
        unsafe {
            if !self.pool.is_null() {
                libc::munmap(self.pool as *mut _, self.pool_len);
            }
            libc::close(self.fd);
        }
    }
}

/// Two peers with a handle each to a node of the other: (a, b, a_to_b, b_to_a).
pub fn pair() -> Res<(Peer, Peer, u64, u64)> {
    let mut a = Peer::open()?;
    let mut b = Peer::open()?;
    let a_to_b = b.handle_for(&a)?;
    let b_to_a = a.handle_for(&b)?;
    Ok((a, b, a_to_b, b_to_a))
}

/// As [`pair`], but `b` is charged to `uid`: messages between them cross
/// users and take the quota path.
pub fn pair_cross_uid(uid: u32) -> Res<(Peer, Peer, u64, u64)> {
    let mut a = Peer::open()?;
    let mut b = Peer::open_as(uid)?;
    let a_to_b = b.handle_for(&a)?;
    let b_to_a = a.handle_for(&b)?;
    Ok((a, b, a_to_b, b_to_a))
}

/// Whether /dev/bus1 can be opened at all.
pub fn available() -> bool {
    Peer::open().is_ok()
}
