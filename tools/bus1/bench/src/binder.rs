// SPDX-License-Identifier: GPL-2.0
//! Android binder, raw: a binderfs device, a context manager that echoes
//! every transaction, and a client that calls it (include/uapi/linux/android/binder.h).

use crate::util::{cvt, errno, Res};
use std::os::fd::RawFd;

const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | ((ty as u32) << 8) | nr as u32
}
const W: u32 = 1;
const R: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct WriteRead {
    write_size: u64,
    write_consumed: u64,
    write_buffer: u64,
    read_size: u64,
    read_consumed: u64,
    read_buffer: u64,
}

/// `struct binder_transaction_data` (64 bytes on 64-bit).
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub struct Txn {
    target: u64,
    cookie: u64,
    code: u32,
    flags: u32,
    sender_pid: i32,
    sender_euid: u32,
    data_size: u64,
    offsets_size: u64,
    buffer: u64,
    offsets: u64,
}

const _: () = assert!(std::mem::size_of::<Txn>() == 64);
const _: () = assert!(std::mem::size_of::<WriteRead>() == 48);

const BINDER_WRITE_READ: u32 = ioc(3, b'b', 1, 48);
const BINDER_SET_CONTEXT_MGR: u32 = ioc(W, b'b', 7, 4);
const BINDER_VERSION: u32 = ioc(3, b'b', 9, 4);
const BINDER_CTL_ADD: u32 = ioc(3, b'b', 1, 264);

const BC_TRANSACTION: u32 = ioc(W, b'c', 0, 64);
const BC_REPLY: u32 = ioc(W, b'c', 1, 64);
const BC_FREE_BUFFER: u32 = ioc(W, b'c', 3, 8);
const BC_ENTER_LOOPER: u32 = ioc(0, b'c', 12, 0);

const BR_ERROR: u32 = ioc(R, b'r', 0, 4);
const BR_TRANSACTION: u32 = ioc(R, b'r', 2, 64);
const BR_REPLY: u32 = ioc(R, b'r', 3, 64);
const BR_DEAD_REPLY: u32 = ioc(0, b'r', 5, 0);
const BR_FAILED_REPLY: u32 = ioc(0, b'r', 17, 0);

/// Transaction code that tells the echo server to stop after replying.
pub const CODE_QUIT: u32 = 0x5155_4954;
/// Transaction code of a benchmark call.
pub const CODE_ECHO: u32 = 1;

/// Size of each process's binder mapping (as libbinder: about 1 MiB).
const MAP_SIZE: usize = 1 << 20;

/// A binderfs device of its own (one binder context, so one context
/// manager), removed again when dropped.
pub struct Device {
    pub path: String,
}

impl Device {
    /// Creates a fresh device, named after this process and a counter.
    pub fn new() -> Res<Device> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("bench-{}-{n}", std::process::id());
        // SAFETY: a NUL-terminated path.
        let ctl = unsafe { libc::open(c"/dev/binderfs/binder-control".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        cvt(ctl as _, "open /dev/binderfs/binder-control")?;
        let mut dev = [0u8; 264];
        dev[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: `dev` is a binderfs_device-sized buffer.
        let r = unsafe { libc::ioctl(ctl, BINDER_CTL_ADD as _, dev.as_mut_ptr()) };
        let e = errno();
        // SAFETY: our fd.
        unsafe { libc::close(ctl) };
        if r < 0 {
            return Err(format!("BINDER_CTL_ADD {name}: {}", std::io::Error::from_raw_os_error(e)));
        }
        Ok(Device { path: format!("/dev/binderfs/{name}") })
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One process's binder connection: fd, mapping, and a read buffer.
pub struct Binder {
    fd: RawFd,
    map: *mut libc::c_void,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
}

impl Binder {
    pub fn open(path: &str) -> Res<Binder> {
        let c = std::ffi::CString::new(path).unwrap();
        // SAFETY: a NUL-terminated path.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        cvt(fd as _, "open binder device")?;
        let mut ver = 0i32;
        // SAFETY: a valid s32 out-argument.
        cvt(unsafe { libc::ioctl(fd, BINDER_VERSION as _, &mut ver) } as _, "BINDER_VERSION")?;
        if ver != 8 {
            return Err(format!("binder protocol version {ver}, expected 8"));
        }
        // SAFETY: the binder mapping is read-only and private to the driver.
        let map = unsafe {
            libc::mmap(std::ptr::null_mut(), MAP_SIZE, libc::PROT_READ, libc::MAP_PRIVATE | libc::MAP_NORESERVE, fd, 0)
        };
        if map == libc::MAP_FAILED {
            return Err(format!("mmap binder: {}", std::io::Error::last_os_error()));
        }
        Ok(Binder { fd, map, rbuf: vec![0; 512], wbuf: Vec::with_capacity(256) })
    }

    /// Becomes the context manager (handle 0) and a looper thread.
    pub fn serve_as_context_manager(&mut self) -> Res<()> {
        let zero = 0i32;
        // SAFETY: a valid s32 argument.
        cvt(unsafe { libc::ioctl(self.fd, BINDER_SET_CONTEXT_MGR as _, &zero) } as _, "BINDER_SET_CONTEXT_MGR")?;
        self.put_u32(BC_ENTER_LOOPER);
        self.talk(false)?;
        Ok(())
    }

    fn put_u32(&mut self, v: u32) {
        self.wbuf.extend_from_slice(&v.to_ne_bytes());
    }

    fn put_u64(&mut self, v: u64) {
        self.wbuf.extend_from_slice(&v.to_ne_bytes());
    }

    fn put_txn(&mut self, cmd: u32, code: u32, data: &[u8]) {
        let t =
            Txn { target: 0, code, data_size: data.len() as u64, buffer: data.as_ptr() as u64, ..Default::default() };
        self.put_u32(cmd);
        // SAFETY: Txn is plain data without padding.
        let bytes = unsafe { std::slice::from_raw_parts(&t as *const Txn as *const u8, std::mem::size_of::<Txn>()) };
        self.wbuf.extend_from_slice(bytes);
    }

    /// One BINDER_WRITE_READ: writes the queued commands and, if `read`,
    /// reads (blocking) into the read buffer; returns the bytes read.
    fn talk(&mut self, read: bool) -> Res<usize> {
        let mut bwr = WriteRead {
            write_size: self.wbuf.len() as u64,
            write_buffer: self.wbuf.as_ptr() as u64,
            read_size: if read { self.rbuf.len() as u64 } else { 0 },
            read_buffer: self.rbuf.as_mut_ptr() as u64,
            ..Default::default()
        };
        loop {
            // SAFETY: both buffers are live and sized as declared.
            let r = unsafe { libc::ioctl(self.fd, BINDER_WRITE_READ as _, &mut bwr) };
            if r >= 0 {
                break;
            }
            if errno() == libc::EINTR {
                bwr.write_size -= bwr.write_consumed;
                bwr.write_buffer += bwr.write_consumed;
                bwr.write_consumed = 0;
                continue;
            }
            return Err(format!("BINDER_WRITE_READ: {}", std::io::Error::last_os_error()));
        }
        self.wbuf.clear();
        Ok(bwr.read_consumed as usize)
    }

    /// Reads returns until a BR_TRANSACTION or BR_REPLY; returns it.
    fn next_txn(&mut self, want: u32) -> Res<Txn> {
        loop {
            let n = self.talk(true)?;
            let mut pos = 0;
            let mut found = None;
            while pos + 4 <= n {
                let cmd = u32::from_ne_bytes(self.rbuf[pos..pos + 4].try_into().unwrap());
                let size = ((cmd >> 16) & 0x3fff) as usize;
                pos += 4;
                match cmd {
                    BR_TRANSACTION | BR_REPLY if cmd == want => {
                        // SAFETY: the driver wrote a whole Txn here.
                        let t = unsafe { std::ptr::read_unaligned(self.rbuf[pos..].as_ptr() as *const Txn) };
                        found = Some(t);
                    }
                    BR_DEAD_REPLY | BR_FAILED_REPLY => return Err(format!("binder: transaction failed ({cmd:#x})")),
                    BR_ERROR => {
                        let e = i32::from_ne_bytes(self.rbuf[pos..pos + 4].try_into().unwrap());
                        return Err(format!("binder: BR_ERROR {e}"));
                    }
                    _ => {}
                }
                pos += size;
            }
            if let Some(t) = found {
                return Ok(t);
            }
        }
    }

    /// Client: one synchronous call with `data`; the reply's size and first
    /// 8 bytes (if any) are returned. The reply buffer is freed with the
    /// next call, as libbinder does.
    pub fn call(&mut self, code: u32, data: &[u8], pending_free: &mut Option<u64>) -> Res<(u64, Option<u64>)> {
        if let Some(b) = pending_free.take() {
            self.put_u32(BC_FREE_BUFFER);
            self.put_u64(b);
        }
        self.put_txn(BC_TRANSACTION, code, data);
        let t = self.next_txn(BR_REPLY)?;
        *pending_free = Some(t.buffer);
        // SAFETY: the reply lies in our binder mapping, `data_size` bytes long.
        crate::util::consume(unsafe { std::slice::from_raw_parts(t.buffer as *const u8, t.data_size as usize) });
        let head = if t.data_size >= 8 {
            // SAFETY: the reply lies in our binder mapping.
            Some(unsafe { std::ptr::read_unaligned(t.buffer as *const u64) })
        } else {
            None
        };
        Ok((t.data_size, head))
    }

    /// Frees a buffer left over from the last call.
    pub fn flush_free(&mut self, pending_free: &mut Option<u64>) -> Res<()> {
        if let Some(b) = pending_free.take() {
            self.put_u32(BC_FREE_BUFFER);
            self.put_u64(b);
            self.talk(false)?;
        }
        Ok(())
    }

    /// Server: echo every transaction back with a reply of the same size
    /// (from `reply`, which must be large enough) until CODE_QUIT.
    pub fn echo_loop(&mut self, reply: &[u8]) -> Res<()> {
        loop {
            // Writes the previous reply (if any) and waits for the next call
            // in the same ioctl, as a libbinder looper does.
            let t = self.next_txn(BR_TRANSACTION)?;
            // SAFETY: the request lies in our binder mapping, `data_size` bytes long.
            crate::util::consume(unsafe { std::slice::from_raw_parts(t.buffer as *const u8, t.data_size as usize) });
            let n = (t.data_size as usize).min(reply.len());
            self.put_u32(BC_FREE_BUFFER);
            self.put_u64(t.buffer);
            self.put_txn(BC_REPLY, t.code, &reply[..n]);
            if t.code == CODE_QUIT {
                self.talk(false)?;
                return Ok(());
            }
        }
    }
}

impl Drop for Binder {
    fn drop(&mut self) {
        // SAFETY: we own the mapping and the fd.
        unsafe {
            libc::munmap(self.map, MAP_SIZE);
            libc::close(self.fd);
        }
    }
}
