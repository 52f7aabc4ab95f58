// SPDX-License-Identifier: MIT OR Apache-2.0
//! Computes the ABI as a C compiler sees `include/uapi/linux/bus1.h`: every
//! struct size and field offset, every constant and ioctl number. The values
//! go to `$OUT_DIR/c_layout.rs`; `tests/layout.rs` compares them with this
//! crate's Rust definitions and with the committed snapshot
//! `tests/abi/c_layout.rs`. Only the test uses them: without the header (the
//! crate built from its package, outside the bus1 tree) the table is empty
//! and the test checks against the snapshot instead.
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const STRUCTS: &[(&str, &[&str])] = &[
    (
        "bus1_cmd_peer_reset",
        &["flags", "peer_flags", "max_slices", "max_handles", "max_inflight_bytes", "max_inflight_fds"],
    ),
    ("bus1_cmd_handle_transfer", &["flags", "src_handle", "dst_fd", "dst_handle"]),
    ("bus1_cmd_handle_release_n", &["flags", "handle", "n_refs"]),
    ("bus1_cmd_nodes_destroy", &["flags", "ptr_nodes", "n_nodes"]),
    (
        "bus1_cmd_send",
        &[
            "flags",
            "ptr_destinations",
            "ptr_errors",
            "n_destinations",
            "ptr_vecs",
            "n_vecs",
            "ptr_handles",
            "n_handles",
            "ptr_fds",
            "n_fds",
        ],
    ),
    (
        "bus1_cmd_recv",
        &[
            "flags",
            "max_offset",
            "msg",
            "msg.type",
            "msg.flags",
            "msg.destination",
            "msg.uid",
            "msg.gid",
            "msg.pid",
            "msg.tid",
            "msg.offset",
            "msg.n_bytes",
            "msg.n_handles",
            "msg.n_fds",
            "msg.n_secctx",
        ],
    ),
    (
        "bus1_cmd_recv_2017",
        &[
            "flags",
            "max_offset",
            "msg",
            "msg.type",
            "msg.flags",
            "msg.destination",
            "msg.offset",
            "msg.n_bytes",
            "msg.n_handles",
            "msg.n_fds",
        ],
    ),
    ("bus1_cmd_transact", &["flags", "release_offset", "done", "reserved", "send", "recv"]),
];

const CONSTS: &[&str] = &[
    "BUS1_FD_MAX",
    "BUS1_IOCTL_MAGIC",
    "BUS1_HANDLE_INVALID",
    "BUS1_OFFSET_INVALID",
    "BUS1_HANDLE_FLAG_MANAGED",
    "BUS1_HANDLE_FLAG_REMOTE",
    "BUS1_PEER_FLAG_WANT_SECCTX",
    "BUS1_PEER_RESET_FLAG_FLUSH",
    "BUS1_PEER_RESET_FLAG_FLUSH_SEED",
    "BUS1_NODES_DESTROY_FLAG_RELEASE_HANDLES",
    "BUS1_SEND_FLAG_CONTINUE",
    "BUS1_SEND_FLAG_SEED",
    "BUS1_RECV_FLAG_PEEK",
    "BUS1_RECV_FLAG_SEED",
    "BUS1_RECV_FLAG_INSTALL_FDS",
    "BUS1_RECV_FLAG_WAIT",
    "BUS1_TRANSACT_FLAG_RELEASE",
    "BUS1_TRANSACT_FLAG_SEND",
    "BUS1_TRANSACT_FLAG_RECV",
    "BUS1_MSG_NONE",
    "BUS1_MSG_DATA",
    "BUS1_MSG_NODE_DESTROY",
    "BUS1_MSG_NODE_RELEASE",
    "BUS1_MSG_FLAG_HAS_SECCTX",
    "BUS1_MSG_FLAG_CONTINUE",
    "BUS1_RECV_2017_FLAG_SEED",
    "BUS1_RECV_2017_FLAG_INSTALL_FDS",
    "BUS1_MSG_2017_FLAG_CONTINUE",
    "BUS1_CMD_PEER_DISCONNECT",
    "BUS1_CMD_PEER_QUERY",
    "BUS1_CMD_PEER_RESET",
    "BUS1_CMD_HANDLE_RELEASE",
    "BUS1_CMD_HANDLE_TRANSFER",
    "BUS1_CMD_HANDLE_RELEASE_N",
    "BUS1_CMD_NODES_DESTROY",
    "BUS1_CMD_SLICE_RELEASE",
    "BUS1_CMD_SEND",
    "BUS1_CMD_RECV",
    "BUS1_CMD_RECV_2017",
    "BUS1_CMD_TRANSACT",
];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let include =
        env::var_os("BUS1_UAPI_INCLUDE").map(PathBuf::from).unwrap_or_else(|| manifest.join("../../../include/uapi"));
    let header = include.join("linux/bus1.h");
    println!("cargo:rerun-if-changed={}", header.display());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BUS1_UAPI_INCLUDE");
    println!("cargo:rerun-if-env-changed=CC");

    let table = probe(&include, &header, &out).unwrap_or_else(|e| {
        // Expected for the packaged crate; the test says which table it used.
        eprintln!("bus1-sys: no C layout table ({e}); the layout test uses tests/abi/c_layout.rs");
        String::new()
    });
    let rs = format!("/// (name, value) pairs computed by a C compiler from bus1.h.\npub const C_LAYOUT: &[(&str, u64)] = &[\n{table}];\n");
    fs::write(out.join("c_layout.rs"), rs).unwrap();
}

fn probe(include: &Path, header: &Path, out: &Path) -> Result<String, String> {
    if !header.exists() {
        return Err(format!("{} not found", header.display()));
    }
    if env::var("HOST") != env::var("TARGET") {
        return Err("cross build: the probe cannot run".into());
    }
    let mut c = String::from(
        "#include <stddef.h>\n#include <stdio.h>\n#include <linux/bus1.h>\n\
         #define P(n, v) printf(\"    (\\\"%s\\\", %#llx),\\n\", n, (unsigned long long)(v))\n\
         int main(void)\n{\n",
    );
    for (s, fields) in STRUCTS {
        writeln!(c, "\tP(\"sizeof {s}\", sizeof(struct {s}));").unwrap();
        writeln!(c, "\tP(\"alignof {s}\", _Alignof(struct {s}));").unwrap();
        for f in *fields {
            writeln!(c, "\tP(\"offsetof {s}.{f}\", offsetof(struct {s}, {f}));").unwrap();
            writeln!(c, "\tP(\"sizeof {s}.{f}\", sizeof(((struct {s} *)0)->{f}));").unwrap();
        }
    }
    for k in CONSTS {
        writeln!(c, "\tP(\"{k}\", {k});").unwrap();
    }
    c.push_str("\treturn 0;\n}\n");
    let src = out.join("bus1_probe.c");
    let bin = out.join("bus1_probe");
    fs::write(&src, c).map_err(|e| e.to_string())?;
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let st = Command::new(&cc)
        .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(include)
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .status()
        .map_err(|e| format!("{cc}: {e}"))?;
    if !st.success() {
        return Err(format!("{cc} failed to compile the probe"));
    }
    let o = Command::new(&bin).output().map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err("probe failed".into());
    }
    String::from_utf8(o.stdout).map_err(|e| e.to_string())
}
