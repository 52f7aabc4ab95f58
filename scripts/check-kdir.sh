#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Refuse a KDIR that cannot build bus1, in one line, before any compile.
set -eu
kdir=$1 rustc=$2
cfg=$kdir/.config
[ -d "$kdir" ] || { echo "bus1: error: no kernel build at $kdir: set KDIR=<Rust-enabled kernel build dir> (or use make run / make check)" >&2; exit 1; }
[ -f "$cfg" ] || { echo "bus1: error: $kdir is not a configured kernel build (no .config)" >&2; exit 1; }
grep -qx 'CONFIG_RUST=y' "$cfg" || { echo "bus1: error: $kdir was built without CONFIG_RUST=y" >&2; exit 1; }
[ -f "$kdir/rust/libkernel.rmeta" ] || [ -f "$kdir/rust/kernel.o" ] || \
	{ echo "bus1: error: $kdir has no built Rust support (run 'make' there first)" >&2; exit 1; }
want=$(sed -n 's/^CONFIG_RUSTC_VERSION=//p' "$cfg")
have=$("$rustc" --version 2>/dev/null | awk '{split($2,v,"."); printf "%d", v[1]*100000 + v[2]*100 + v[3]}') || true
[ -n "$have" ] || { echo "bus1: error: cannot run rustc '$rustc'" >&2; exit 1; }
[ -z "$want" ] || [ "$want" = "$have" ] || \
	{ echo "bus1: error: $kdir was built with rustc $want, but RUSTC=$rustc is $have; pass RUSTC=<the kernel's rustc>" >&2; exit 1; }
