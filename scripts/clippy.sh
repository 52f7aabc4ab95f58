#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make clippy`: build the module with CLIPPY=1 against the release kernel
# (KUnit enabled, so the tests are linted too) and fail on any clippy or
# rustc warning. The kernel's Makefile adds its own lint set under CLIPPY=1
# (undocumented_unsafe_blocks among them). clippy-driver must be the one that
# matches the kernel's rustc: Debian's rust-web-clippy for rustc-web.
. "$(dirname "$0")/lib.sh"

"$BUS1_TOP/scripts/provision.sh"
kdir=$("$BUS1_TOP/scripts/build-kernel.sh" release)
[ -x "$KCLIPPY" ] || die "missing $KCLIPPY (Debian package rust-web-clippy)"
work=$BUS1_CACHE/work/$(tree_id)/clippy-$(basename "$kdir")
mkdir -p "$work"
exec 9>"$work.lock"
flock 9
# A fresh MO so every file is linted, not only the ones that changed.
rm -rf "$work/mod"
mapfile -t args < <(kmake_args)
out=$(make -s -C "$kdir" M="$BUS1_TOP" MO="$work/mod" "${args[@]}" CLIPPY=1 \
	CLIPPY_DRIVER="$KCLIPPY" CONFIG_BUS1=m modules 2>&1) || { printf '%s\n' "$out" >&2; die "clippy build failed"; }
if printf '%s\n' "$out" | grep -qE '^(warning|error)'; then
	printf '%s\n' "$out" >&2
	die "clippy reported warnings"
fi
log "clippy: no warnings"
