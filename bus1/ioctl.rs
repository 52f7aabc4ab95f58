// SPDX-License-Identifier: GPL-2.0

//! The ioctl layer: the file operations of `/dev/bus1` (open, release, ioctl dispatch, mmap,
//! poll, fdinfo) and the translation between the uapi structs and the peer's operations, for
//! both `RECV` layouts (RFC v1 and 2017).
//!
//! Nothing here decides anything about ordering or accounting: every command is handed to the
//! `Peer` method that implements it.

use super::*;
use crate::ext::arc_ref::ArcRef;

impl Peer {
    /// `RECV` with the RFC v1 layout (96 bytes, metadata, `PEEK`).
    fn cmd_recv(self: &Arc<Self>, arg: usize) -> Result<isize> {
        let (mut r, mut w) =
            UserSlice::new(UserPtr::from_addr(arg), size_of::<uapi::Recv>()).reader_writer();
        let mut rv: uapi::Recv = r.read()?;
        self.recv_v1(&mut rv)?;
        // As upstream: the message is already dequeued, so a fault here loses it.
        w.write(&rv)?;
        Ok(0)
    }

    /// `RECV` with the RFC v1 layout and its argument already read; fills in `rv.msg` (also the
    /// receive stage of `TRANSACT`).
    pub(crate) fn recv_v1(self: &Arc<Self>, rv: &mut uapi::Recv) -> Result {
        check_recv_flags(rv.flags)?;
        let args = RecvArgs {
            peek: rv.flags & uapi::BUS1_RECV_FLAG_PEEK != 0,
            seed: rv.flags & uapi::BUS1_RECV_FLAG_SEED != 0,
            install_fds: rv.flags & uapi::BUS1_RECV_FLAG_INSTALL_FDS != 0,
            max_offset: rv.max_offset,
        };
        let m = if rv.flags & uapi::BUS1_RECV_FLAG_WAIT != 0 {
            // On input, `msg.offset` is the timeout.
            self.recv_wait(args, rv.msg.offset)?
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
        rv.msg = uapi::RecvMsg {
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
        };
        Ok(())
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

#[vtable]
impl MiscDevice for Peer {
    type Ptr = Arc<Peer>;

    fn open(_file: &File) -> Result<Arc<Peer>> {
        Peer::new()
    }

    fn release(me: Arc<Peer>, _file: &File) {
        // A peer already disconnected by ioctl has nothing left to tear down.
        let _ = me.disconnect();
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
        if me.lock().queue.is_readable() {
            mask |= POLLIN | POLLRDNORM;
        }
        mask
    }

    fn show_fdinfo(me: ArcBorrow<'_, Peer>, m: &SeqFile, _file: &File) {
        seq_print!(m, "bus1-peer:\t{:16x}\n", me.id());
        let (slices, bytes, pages) = me.pool.usage();
        seq_print!(
            m,
            "bus1-pool:\tslices={} bytes={} pages={}\n",
            slices,
            bytes,
            pages
        );
        // Copied out first: nothing is printed with a lock held.
        let mut peer = [(0i64, 0u32); quota::N_RES];
        let mut user = [(0i64, 0u32); quota::N_RES];
        let mut top = [(0u32, Charge::default()); FDINFO_SENDERS];
        // Messages, their in-flight bytes and notifications in the queue, counted under the lock
        // (linear in the queue's length, which the peer's limits bound).
        let (mut messages, mut queued_bytes, mut notifications) = (0u64, 0u64, 0u64);
        let (uid, senders, denied, n_top) = {
            let inner = me.lock();
            inner.queue.for_each(|_, e| match e {
                Event::Data(m) => {
                    messages += 1;
                    queued_bytes = queued_bytes.saturating_add(m.charged.0[quota::BYTES]);
                }
                Event::Destroy(_) | Event::Release(_) => notifications += 1,
            });
            let l = &inner.limits;
            let u = l.user.user().ledger();
            for r in 0..quota::N_RES {
                peer[r] = (l.ledger.used(r), l.ledger.max(r));
                user[r] = (u.used(r), u.max(r));
            }
            (
                me.uid,
                l.ledger.senders(),
                (l.ledger.denied(), u.denied()),
                l.ledger.top_shares(&mut top),
            )
        };
        seq_print!(
            m,
            "bus1-queue:\tmessages={} bytes={} notifications={}\n",
            messages,
            queued_bytes,
            notifications
        );
        seq_print!(m, "bus1-limits:\tsenders={}", senders);
        for (name, (used, max)) in quota::NAMES.iter().zip(peer.iter()) {
            seq_print!(m, " {}={}/{}", name, used, max);
        }
        seq_print!(m, " denied={}", denied.0);
        seq_print!(m, "\nbus1-user:\tuid={}", uid_for_current(uid));
        for (name, (used, max)) in quota::NAMES.iter().zip(user.iter()) {
            seq_print!(m, " {}={}/{}", name, used, max);
        }
        seq_print!(m, " denied={}\n", denied.1);
        for (sender, c) in top.iter().take(n_top) {
            seq_print!(m, "bus1-sender:\tuid={}", uid_for_current(*sender));
            for (name, n) in quota::NAMES.iter().zip(c.0.iter()) {
                seq_print!(m, " {}={}", name, n);
            }
            seq_print!(m, "\n");
        }
    }
}
