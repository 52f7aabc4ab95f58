// SPDX-License-Identifier: GPL-2.0

//! The ioctl layer: the file operations of `/dev/bus1` (open, release, ioctl dispatch, mmap,
//! poll, fdinfo) and the translation between the uapi structs and the peer's operations, for
//! both `RECV` layouts (RFC v1 and 2017).
//!
//! Nothing here decides anything about ordering or accounting: every command is handed to the
//! `Peer` method that implements it.

use super::*;
use crate::ext::arc_ref::ArcRef;
use core::mem::{
    offset_of,
    MaybeUninit, //
};

impl Peer {
    /// `RECV` with the RFC v1 layout (96 bytes, metadata, `PEEK`). Only the input is read (the
    /// message description is output, but for the timeout of `WAIT`), and only the description
    /// is written; an argument that cannot be read in full fails before anything is received.
    fn cmd_recv(self: &Arc<Self>, arg: usize) -> Result<isize> {
        let mut input = MaybeUninit::uninit();
        let input: &uapi::RecvInput =
            UserPtr::from_addr(arg).read_head_into(size_of::<uapi::Recv>(), &mut input)?;
        let msg_at = arg.wrapping_add(offset_of!(uapi::Recv, msg));
        let timeout = read_wait_timeout(msg_at, input.flags)?;
        check_recv_flags(input.flags)?;
        let mut slot = MaybeUninit::uninit();
        write_recv_msg(msg_at, self.recv_v1(input, timeout, &mut slot)?)?;
        Ok(0)
    }

    /// `RECV` with the RFC v1 layout, its input already read and its flags checked
    /// ([`check_recv_flags`], by `RECV` and by `TRANSACT` with the other stages' flags), and
    /// `timeout` the timeout of `WAIT` (also the receive stage of `TRANSACT`); returns the
    /// message description, written into `out` (not moved after it is built).
    pub(crate) fn recv_v1<'a>(
        self: &Arc<Self>,
        input: &uapi::RecvInput,
        timeout: u64,
        out: &'a mut MaybeUninit<uapi::RecvMsg>,
    ) -> Result<&'a uapi::RecvMsg> {
        let args = RecvArgs {
            peek: input.flags & uapi::BUS1_RECV_FLAG_PEEK != 0,
            seed: input.flags & uapi::BUS1_RECV_FLAG_SEED != 0,
            install_fds: input.flags & uapi::BUS1_RECV_FLAG_INSTALL_FDS != 0,
            max_offset: input.max_offset,
        };
        let m = if input.flags & uapi::BUS1_RECV_FLAG_WAIT != 0 {
            self.recv_wait(args, timeout)?
        } else {
            self.recv(args)?
        };
        let mut flags = 0;
        if m.cont {
            flags |= uapi::BUS1_MSG_FLAG_CONTINUE;
        }
        if m.layout.n_secctx.is_some() {
            flags |= uapi::BUS1_MSG_FLAG_HAS_SECCTX;
        }
        Ok(out.write(uapi::RecvMsg {
            type_: m.type_,
            flags,
            destination: m.destination,
            uid: m.ids[0],
            gid: m.ids[1],
            pid: m.ids[2],
            tid: m.ids[3],
            offset: m.offset,
            n_bytes: m.layout.n_bytes,
            n_handles: m.layout.n_handles,
            n_fds: m.layout.n_fds,
            n_secctx: m.layout.n_secctx.unwrap_or(0),
        }))
    }

    /// `RECV` with the 2017 layout (72 bytes, no metadata, no `PEEK`, renumbered flags). It has
    /// no field for a security context: one the slice carries (because the peer asked for it with
    /// the RFC v1 `PEER_RESET`) is not reported, and is released with the slice.
    fn cmd_recv_2017(self: &Arc<Self>, arg: usize) -> Result<isize> {
        let (mut r, mut w) =
            UserSlice::new(UserPtr::from_addr(arg), size_of::<uapi::Recv2017>()).reader_writer();
        let mut rv: uapi::Recv2017 = r.read()?;
        let known = uapi::BUS1_RECV_2017_FLAG_SEED | uapi::BUS1_RECV_2017_FLAG_INSTALL_FDS;
        if rv.flags & !known != 0 {
            return Err(EINVAL);
        }
        let m = self.recv(RecvArgs {
            peek: false,
            seed: rv.flags & uapi::BUS1_RECV_2017_FLAG_SEED != 0,
            install_fds: rv.flags & uapi::BUS1_RECV_2017_FLAG_INSTALL_FDS != 0,
            max_offset: rv.max_offset,
        })?;
        rv.msg = uapi::RecvMsg2017 {
            type_: m.type_,
            flags: if m.cont {
                uapi::BUS1_MSG_2017_FLAG_CONTINUE
            } else {
                0
            },
            destination: m.destination,
            offset: m.offset,
            n_bytes: m.layout.n_bytes,
            n_handles: m.layout.n_handles,
            n_fds: m.layout.n_fds,
        };
        w.write(&rv)?;
        Ok(0)
    }
}

/// Reads the timeout of an RFC v1 `RECV` with `WAIT` (`msg.offset`, on input) from the message
/// description at user address `msg`; `0` (none) without `WAIT`, which reads nothing.
pub(super) fn read_wait_timeout(msg: usize, flags: u64) -> Result<u64> {
    if flags & uapi::BUS1_RECV_FLAG_WAIT == 0 {
        return Ok(0);
    }
    UserPtr::from_addr(msg.wrapping_add(offset_of!(uapi::RecvMsg, offset))).get()
}

/// Writes the description of a received message to user address `msg_at` (`RECV` and the
/// receive stage of `TRANSACT`). As upstream: the message is already dequeued, so a fault here
/// loses it.
pub(super) fn write_recv_msg(msg_at: usize, msg: &uapi::RecvMsg) -> Result {
    UserPtr::from_addr(msg_at).write_from(msg)
}

#[vtable]
impl MiscDevice for Peer {
    type Ptr = Arc<Peer>;

    fn open(_file: &File) -> Result<Arc<Peer>> {
        let peer = Peer::new()?;
        // Shown in debugfs `bus1/peers` until the file is released.
        peer.owner.listing().attach(peer.clone());
        Ok(peer)
    }

    fn release(me: Arc<Peer>, _file: &File) {
        // A peer already disconnected by ioctl has nothing left to tear down.
        let _ = me.disconnect();
        me.owner.listing().detach();
    }

    /// Dispatches a command.
    fn ioctl(
        me: ArcBorrow<'_, Peer>,
        _file: &File,
        cmd: u32,
        arg: usize,
        ctx: &IoctlContext,
    ) -> Result<isize> {
        // The file's reference keeps the peer alive: no count is taken for the call, and the
        // active reference is one atomic increment and decrement.
        let me = ArcRef::new(me);
        if cmd == uapi::BUS1_CMD_PEER_DISCONNECT {
            if arg != 0 {
                return Err(EINVAL);
            }
            me.disconnect()?;
            return Ok(0);
        }
        let _active = me.owner.pin()?;
        match cmd {
            uapi::BUS1_CMD_PEER_QUERY => me.cmd_query(arg),
            uapi::BUS1_CMD_PEER_RESET => me.cmd_reset(arg),
            uapi::BUS1_CMD_HANDLE_RELEASE => me.cmd_handle_release(arg),
            uapi::BUS1_CMD_HANDLE_RELEASE_N => me.cmd_handle_release_n(arg),
            uapi::BUS1_CMD_HANDLE_TRANSFER => me.cmd_handle_transfer(arg),
            uapi::BUS1_CMD_NODES_DESTROY => me.cmd_nodes_destroy(arg),
            uapi::BUS1_CMD_SLICE_RELEASE => me.cmd_slice_release(arg),
            uapi::BUS1_CMD_SEND => me.cmd_send(arg, ctx),
            uapi::BUS1_CMD_RECV => me.cmd_recv(arg),
            uapi::BUS1_CMD_RECV_2017 => me.cmd_recv_2017(arg),
            uapi::BUS1_CMD_TRANSACT => me.cmd_transact(arg, ctx),
            _ => Err(ENOTTY),
        }
    }

    /// Maps the pool read-only; messages that arrived before are visible too.
    fn mmap(me: ArcBorrow<'_, Peer>, _file: &File, vma: &VmaNew) -> Result {
        let _active = me.owner.pin()?;
        me.pool.mmap(vma)
    }

    fn poll(me: ArcBorrow<'_, Peer>, file: &File, table: PollTable<'_>) -> u32 {
        table.register(file, &me.waitq);
        if me.is_shutdown() {
            return POLLHUP;
        }
        let mut mask = POLLOUT | POLLWRNORM;
        // The hint is read after the registration's barrier, as a waker writes it before its
        // check for sleepers: a poller that misses it is woken.
        if me.maybe_readable() && me.lock().queue.is_readable() {
            mask |= POLLIN | POLLRDNORM;
        }
        mask
    }

    fn show_fdinfo(me: ArcBorrow<'_, Peer>, m: &SeqFile, _file: &File) {
        let r = me.report();
        seq_print!(m, "{}", format_args!("{}", r));
    }
}

/// What fdinfo and debugfs `bus1/peers` show of a peer, copied out under its locks by
/// [`Peer::report`] and printed by its `Display` implementation with no lock held, so that both
/// files show the same lines computed the same way.
pub(crate) struct Report {
    /// The peer's ID.
    id: u64,
    /// Whether the peer was disconnected.
    disconnected: bool,
    /// The pool's slices, their bytes and its resident pages.
    pool: (usize, u64, u64),
    /// What the queue holds.
    queue: QueueCounts,
    /// The principal (global UID).
    uid: u32,
    /// The number of senders holding a share of the peer.
    senders: u64,
    /// Used and maximum of every resource at the peer.
    peer: [(i64, u32); quota::N_RES],
    /// Used and maximum of every resource at its principal.
    user: [(i64, u32); quota::N_RES],
    /// Charges refused at the peer and at its principal.
    denied: (u64, u64),
    /// The largest shares of the peer, largest first.
    top: [(u32, Charge); FDINFO_SENDERS],
    /// How many of `top` are filled.
    n_top: usize,
}

/// The entries of a peer's queue, by kind: data messages and their in-flight bytes, and
/// `NODE_DESTROY` and `NODE_RELEASE` notifications.
#[derive(Default)]
struct QueueCounts {
    /// Data messages.
    messages: u64,
    /// Their in-flight bytes (the slice sizes charged until they are received).
    bytes: u64,
    /// `NODE_DESTROY` notifications.
    destroy: u64,
    /// `NODE_RELEASE` notifications.
    release: u64,
}

impl Peer {
    /// Copies out what fdinfo and debugfs show of the peer.
    pub(crate) fn report(&self) -> Report {
        let mut r = Report {
            id: self.id(),
            disconnected: self.is_shutdown(),
            pool: (0, 0, self.pool.resident_pages()),
            queue: QueueCounts::default(),
            uid: self.uid,
            senders: 0,
            peer: [(0, 0); quota::N_RES],
            user: [(0, 0); quota::N_RES],
            denied: (0, 0),
            top: [(0u32, Charge::default()); FDINFO_SENDERS],
            n_top: 0,
        };
        // Counted under the lock (linear in the queue's length, which the peer's limits bound).
        let inner = self.lock();
        (r.pool.0, r.pool.1) = inner.slices.usage();
        let q = &mut r.queue;
        inner.queue.for_each(|_, e| match e {
            Event::Data(m) => {
                q.messages += 1;
                q.bytes = q.bytes.saturating_add(m.charged().0[quota::BYTES]);
            }
            Event::Destroy(_) => q.destroy += 1,
            Event::Release(_) => q.release += 1,
        });
        let l = &inner.limits;
        let u = l.user.user().ledger();
        for res in 0..quota::N_RES {
            r.peer[res] = (l.ledger.used(res), l.ledger.max(res));
            r.user[res] = (u.used(res), u.max(res));
        }
        r.senders = l.ledger.senders();
        r.denied = (l.ledger.denied(), u.denied());
        r.n_top = l.ledger.top_shares(&mut r.top);
        r
    }
}

impl core::fmt::Display for Report {
    /// The lines of fdinfo (`Documentation/bus1/quota.rst`), UIDs in the reader's namespace.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        writeln!(f, "bus1-peer:\t{:16x}", self.id)?;
        let state = if self.disconnected {
            "disconnected"
        } else {
            "open"
        };
        writeln!(f, "bus1-state:\t{}", state)?;
        let (slices, bytes, pages) = self.pool;
        writeln!(
            f,
            "bus1-pool:\tslices={} bytes={} pages={}",
            slices, bytes, pages
        )?;
        let q = &self.queue;
        writeln!(
            f,
            "bus1-queue:\tmessages={} bytes={} notifications={} node_destroy={} node_release={}",
            q.messages,
            q.bytes,
            q.destroy + q.release,
            q.destroy,
            q.release
        )?;
        write!(f, "bus1-limits:\tsenders={}", self.senders)?;
        for (name, (used, max)) in quota::NAMES.iter().zip(self.peer.iter()) {
            write!(f, " {}={}/{}", name, used, max)?;
        }
        writeln!(f, " denied={}", self.denied.0)?;
        write!(f, "bus1-user:\tuid={}", uid_for_current(self.uid))?;
        for (name, (used, max)) in quota::NAMES.iter().zip(self.user.iter()) {
            write!(f, " {}={}/{}", name, used, max)?;
        }
        writeln!(f, " denied={}", self.denied.1)?;
        for (sender, c) in self.top.iter().take(self.n_top) {
            write!(f, "bus1-sender:\tuid={}", uid_for_current(*sender))?;
            for (name, n) in quota::NAMES.iter().zip(c.0.iter()) {
                write!(f, " {}={}", name, n)?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

impl crate::registry::Listed for Peer {
    fn report(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(&Peer::report(self), f)
    }
}
