// SPDX-License-Identifier: GPL-2.0
//! Helpers shared by the bus1 examples: running a second process that gets a
//! bus1 peer from its parent.
//!
//! bus1 has no names and no registry: a process reaches others only through
//! handles it was given. A parent bootstraps a child by opening a peer for
//! it, giving that peer handles (`Peer::transfer`), and letting the child
//! inherit the fd.

use bus1::{HandleId, Peer};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

/// Starts this program again as `<exe> --child <role> <fd> <handle>`, with
/// `peer`'s fd inherited; `handle` is an ID in `peer`'s namespace. The
/// caller must drop its `peer` right after (the child takes it over, see
/// [`Peer::from_fd`]).
pub fn spawn_child(role: &str, peer: &Peer, handle: HandleId) -> io::Result<Child> {
    let fd = peer.as_fd().as_raw_fd();
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg("--child").arg(role).arg(fd.to_string()).arg(format!("{:#x}", handle.as_raw()));
    // SAFETY: only an async-signal-safe fcntl between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let fd = std::os::fd::BorrowedFd::borrow_raw(fd);
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
            Ok(())
        });
    }
    cmd.spawn()
}

/// In a child started by [`spawn_child`]: `Some((role, peer, handle))`.
pub fn child_args() -> Option<(String, Peer, HandleId)> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 5 || a[1] != "--child" {
        return None;
    }
    let fd: i32 = a[3].parse().expect("fd argument");
    let h = u64::from_str_radix(a[4].trim_start_matches("0x"), 16).expect("handle argument");
    // SAFETY: the parent passed us this inherited fd, which nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC).expect("fcntl");
    // SAFETY: the only other holder of this open file description is the
    // parent, which closes its copy right after starting us and never
    // receives, releases or flushes through it.
    let peer = unsafe { Peer::from_fd(fd) }.expect("map the inherited peer");
    Some((a[2].clone(), peer, HandleId::from_raw(h)))
}

/// Exits with a message if `cond` is false (examples check what they show).
#[macro_export]
macro_rules! check {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            eprintln!("FAILED: {}", format!($($fmt)*));
            std::process::exit(1);
        }
    };
}
