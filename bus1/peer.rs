// SPDX-License-Identifier: GPL-2.0

//! Peers: the kernel object behind every open file of `/dev/bus1`.

use crate::ext::{
    miscdevice::MiscDevice,
    poll::{
        POLLOUT,
        POLLWRNORM, //
    },
};
use kernel::{
    fs::File,
    prelude::*,
    seq_file::SeqFile,
    seq_print,
    sync::{
        atomic::{
            ordering::Relaxed,
            Atomic, //
        },
        poll::PollTable,
        Arc,
        ArcBorrow, //
    },
};

/// Source of peer IDs; IDs are unique for the lifetime of the module and start at 1.
static PEER_IDS: Atomic<u64> = Atomic::new(0);

/// A bus1 peer.
pub(crate) struct Peer {
    /// Diagnostic ID, shown in fdinfo.
    id: u64,
}

impl Peer {
    /// Creates a new peer with a fresh ID.
    pub(crate) fn new() -> Result<Arc<Self>> {
        let id = PEER_IDS.fetch_add(1, Relaxed) + 1;
        Ok(Arc::new(Peer { id }, GFP_KERNEL)?)
    }

    /// Returns the peer's diagnostic ID.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

#[vtable]
impl MiscDevice for Peer {
    type Ptr = Arc<Peer>;

    fn open(_file: &File) -> Result<Arc<Peer>> {
        Peer::new()
    }

    fn ioctl(_me: ArcBorrow<'_, Peer>, _file: &File, _cmd: u32, _arg: usize) -> Result<isize> {
        Err(ENOTTY)
    }

    fn poll(_me: ArcBorrow<'_, Peer>, _file: &File, _table: PollTable<'_>) -> u32 {
        POLLOUT | POLLWRNORM
    }

    fn show_fdinfo(me: ArcBorrow<'_, Peer>, m: &SeqFile, _file: &File) {
        seq_print!(m, "bus1-peer:\t{:16x}\n", me.id);
    }
}

#[kunit_tests(bus1_peer)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_increasing() -> Result {
        let a = Peer::new()?;
        let b = Peer::new()?;
        assert!(a.id() >= 1);
        assert!(b.id() > a.id());
        Ok(())
    }
}
