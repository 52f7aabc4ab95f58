# SPDX-License-Identifier: GPL-2.0
# Common settings for the bus1 build scripts. Sourced, not executed.

set -euo pipefail

BUS1_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUS1_CACHE=${BUS1_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bus1}
KVER_SERIES=${KVER_SERIES:-7.2}
LLVM_SUFFIX=${LLVM_SUFFIX:--19}
# The rustup toolchain on PATH has no rust-src; the kernel needs Debian's.
KRUSTC=${KRUSTC:-/usr/bin/rustc}
# clippy-driver built with that rustc (rust-web-clippy), not rustup's.
KCLIPPY=${KCLIPPY:-/usr/bin/clippy-driver}
BINDGEN_ROOT=$BUS1_CACHE/bindgen
export LIBCLANG_PATH=${LIBCLANG_PATH:-/usr/lib/llvm-19/lib}
export PATH=$BINDGEN_ROOT/bin:/usr/lib/llvm-19/bin:$PATH

die() { printf 'bus1: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'bus1: %s\n' "$*" >&2; }

# Kbuild arguments shared by every kernel and module build.
kmake_args() {
	printf '%s\n' "LLVM=$LLVM_SUFFIX" "RUSTC=$KRUSTC" "BINDGEN=$BINDGEN_ROOT/bin/bindgen"
}

need_space() { # $1: dir, $2: GiB
	local avail
	mkdir -p "$1"
	avail=$(df -Pk "$1" | awk 'NR==2 {print int($4/1024/1024)}')
	[ "$avail" -ge "$2" ] || die "only ${avail} GiB free under $1, need $2 GiB"
}
