// SPDX-License-Identifier: GPL-2.0
//! Checks every struct size, alignment, field offset and size, constant and
//! ioctl number of bus1-sys against what a C compiler computed from
//! include/uapi/linux/bus1.h at build time (build.rs). Runs on the host
//! (cargo test) and in the guest (TAP output).
#[path = "../../testing/tap.rs"]
mod tap;

use bus1_sys::*;
use std::collections::BTreeMap;
use std::mem::{align_of, offset_of, size_of};

include!(concat!(env!("OUT_DIR"), "/c_layout.rs"));

macro_rules! fsize {
    ($t:ty, $f:ident) => {{
        let v = <$t>::default();
        std::mem::size_of_val(&v.$f) as u64
    }};
    ($t:ty, $f:ident . $g:ident) => {{
        let v = <$t>::default();
        std::mem::size_of_val(&v.$f.$g) as u64
    }};
}

/// The Rust side of the table, keyed like the C probe's output.
fn rust_layout() -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    macro_rules! st {
        ($t:ident { $($f:ident),* } $({ $sub:ident : $($g:ident => $cg:literal),* })?) => {{
            let n = stringify!($t);
            m.insert(format!("sizeof {n}"), size_of::<$t>() as u64);
            m.insert(format!("alignof {n}"), align_of::<$t>() as u64);
            $(
                m.insert(format!("offsetof {n}.{}", stringify!($f)), offset_of!($t, $f) as u64);
                m.insert(format!("sizeof {n}.{}", stringify!($f)), fsize!($t, $f));
            )*
            $($(
                m.insert(format!("offsetof {n}.{}.{}", stringify!($sub), $cg),
                         (offset_of!($t, $sub) + std::mem::offset_of!(<$t as Sub>::M, $g)) as u64);
                m.insert(format!("sizeof {n}.{}.{}", stringify!($sub), $cg), fsize!($t, $sub.$g));
            )*)?
        }};
    }
    trait Sub {
        type M;
    }
    impl Sub for bus1_cmd_recv {
        type M = bus1_cmd_recv_msg;
    }
    impl Sub for bus1_cmd_recv_2017 {
        type M = bus1_cmd_recv_2017_msg;
    }
    st!(bus1_cmd_peer_reset { flags, peer_flags, max_slices, max_handles, max_inflight_bytes, max_inflight_fds });
    st!(bus1_cmd_handle_transfer { flags, src_handle, dst_fd, dst_handle });
    st!(bus1_cmd_nodes_destroy { flags, ptr_nodes, n_nodes });
    st!(bus1_cmd_send {
        flags,
        ptr_destinations,
        ptr_errors,
        n_destinations,
        ptr_vecs,
        n_vecs,
        ptr_handles,
        n_handles,
        ptr_fds,
        n_fds
    });
    st!(bus1_cmd_recv { flags, max_offset, msg } { msg: type_ => "type", flags => "flags", destination => "destination",
        uid => "uid", gid => "gid", pid => "pid", tid => "tid", offset => "offset", n_bytes => "n_bytes",
        n_handles => "n_handles", n_fds => "n_fds", n_secctx => "n_secctx" });
    st!(bus1_cmd_recv_2017 { flags, max_offset, msg } { msg: type_ => "type", flags => "flags", destination => "destination",
        offset => "offset", n_bytes => "n_bytes", n_handles => "n_handles", n_fds => "n_fds" });
    st!(bus1_cmd_transact { flags, release_offset, done, reserved, send, recv });
    macro_rules! k {
        ($($c:ident),*) => { $( m.insert(stringify!($c).to_string(), $c as u64); )* };
    }
    k!(
        BUS1_FD_MAX,
        BUS1_IOCTL_MAGIC,
        BUS1_HANDLE_INVALID,
        BUS1_OFFSET_INVALID,
        BUS1_HANDLE_FLAG_MANAGED,
        BUS1_HANDLE_FLAG_REMOTE,
        BUS1_PEER_FLAG_WANT_SECCTX,
        BUS1_PEER_RESET_FLAG_FLUSH,
        BUS1_PEER_RESET_FLAG_FLUSH_SEED,
        BUS1_NODES_DESTROY_FLAG_RELEASE_HANDLES,
        BUS1_SEND_FLAG_CONTINUE,
        BUS1_SEND_FLAG_SEED,
        BUS1_RECV_FLAG_PEEK,
        BUS1_RECV_FLAG_SEED,
        BUS1_RECV_FLAG_INSTALL_FDS,
        BUS1_RECV_FLAG_WAIT,
        BUS1_TRANSACT_FLAG_RELEASE,
        BUS1_TRANSACT_FLAG_SEND,
        BUS1_TRANSACT_FLAG_RECV,
        BUS1_MSG_NONE,
        BUS1_MSG_DATA,
        BUS1_MSG_NODE_DESTROY,
        BUS1_MSG_NODE_RELEASE,
        BUS1_MSG_FLAG_HAS_SECCTX,
        BUS1_MSG_FLAG_CONTINUE,
        BUS1_RECV_2017_FLAG_SEED,
        BUS1_RECV_2017_FLAG_INSTALL_FDS,
        BUS1_MSG_2017_FLAG_CONTINUE,
        BUS1_CMD_PEER_DISCONNECT,
        BUS1_CMD_PEER_QUERY,
        BUS1_CMD_PEER_RESET,
        BUS1_CMD_HANDLE_RELEASE,
        BUS1_CMD_HANDLE_TRANSFER,
        BUS1_CMD_NODES_DESTROY,
        BUS1_CMD_SLICE_RELEASE,
        BUS1_CMD_SEND,
        BUS1_CMD_RECV,
        BUS1_CMD_RECV_2017,
        BUS1_CMD_TRANSACT
    );
    m
}

fn c_table_present() {
    assert!(
        C_LAYOUT.len() > 100,
        "the C layout table is missing or short ({} entries); see the build.rs warning",
        C_LAYOUT.len()
    );
}

/// Every value the C compiler computed equals the Rust one.
fn matches_c_header() {
    let rust = rust_layout();
    let mut bad = Vec::new();
    for (k, v) in C_LAYOUT {
        match rust.get(*k) {
            Some(r) if r == v => {}
            Some(r) => bad.push(format!("{k}: C {v:#x}, Rust {r:#x}")),
            None => bad.push(format!("{k}: C {v:#x}, not in the Rust table")),
        }
    }
    assert!(bad.is_empty(), "layout mismatches:\n{}", bad.join("\n"));
}

/// Nothing in the Rust table is left unchecked by the C side.
fn rust_table_covered() {
    let c: BTreeMap<&str, u64> = C_LAYOUT.iter().copied().collect();
    let missing: Vec<String> = rust_layout().into_keys().filter(|k| !c.contains_key(k.as_str())).collect();
    assert!(missing.is_empty(), "not checked against C: {missing:?}");
}

/// The numbers the RFC v1 ABI published for x86_64 (independent of both sides).
fn rfc_v1_numbers() {
    if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64")) {
        tap::skip("asm-generic ioctl layout only");
    }
    assert_eq!(BUS1_CMD_PEER_DISCONNECT, 0xC008_9600);
    assert_eq!(BUS1_CMD_PEER_QUERY, 0xC020_9601);
    assert_eq!(BUS1_CMD_PEER_RESET, 0xC020_9602);
    assert_eq!(BUS1_CMD_HANDLE_RELEASE, 0xC008_9610);
    assert_eq!(BUS1_CMD_HANDLE_TRANSFER, 0xC020_9611);
    assert_eq!(BUS1_CMD_NODES_DESTROY, 0xC018_9620);
    assert_eq!(BUS1_CMD_SLICE_RELEASE, 0xC008_9630);
    assert_eq!(BUS1_CMD_SEND, 0xC050_9640);
    assert_eq!(BUS1_CMD_RECV, 0xC060_9650);
    assert_eq!(BUS1_CMD_RECV_2017, 0xC048_9650);
}

fn align8_rounds() {
    assert_eq!(align8(0), Some(0));
    assert_eq!(align8(1), Some(8));
    assert_eq!(align8(8), Some(8));
    assert_eq!(align8(9), Some(16));
    assert_eq!(align8(u64::MAX - 7), Some(u64::MAX - 7));
    assert_eq!(align8(u64::MAX - 6), None);
}

fn main() {
    tap::main(&[
        ("layout_c_table_present", c_table_present),
        ("layout_matches_c_header", matches_c_header),
        ("layout_rust_table_covered", rust_table_covered),
        ("layout_rfc_v1_ioctl_numbers", rfc_v1_numbers),
        ("layout_align8", align8_rounds),
    ]);
}
