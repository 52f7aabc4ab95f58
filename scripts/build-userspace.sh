#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the Rust user space (tools/bus1: bus1-sys, bus1, the examples) as
# static binaries for the guest:
#   build/guest/userspace/  TAP test programs, run by `vm.sh check`
#   build/guest/demos/      the examples, run by `vm.sh run` (make run) and by
#                           `vm.sh check` (bus1_examples), with the C program
#                           of bus1(7) EXAMPLES (scripts/man_example.py)
# `build-userspace.sh --host-tests` also runs the crates' tests on the host
# first (layout test against the C header, unit tests, doc tests; the tests
# that need /dev/bus1 report SKIP there).
# The cargo target directory is cached under $BUS1_CACHE/cargo-target.
. "$(dirname "$0")/lib.sh"

ws=$BUS1_TOP/tools/bus1
target=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR=$BUS1_CACHE/cargo-target/$(tree_id)
# The rustup toolchain's cargo (the kernel's Debian rustc has no std for
# static user-space builds of crates.io dependencies).
unset RUSTC
command -v cargo >/dev/null || die "cargo not found (install a stable Rust toolchain)"
pkgs=(-p bus1-sys -p bus1 -p bus1-examples --features bus1/tokio)
# cargo's output goes to a log; its end is shown if a step fails.
clog=$(logfile "cargo-$(basename "$CARGO_TARGET_DIR")")
echo "== $(date) build-userspace.sh" >"$clog"
log "cargo output: $clog"
cargo_failed() { tail -n 40 "$clog" >&2; die "$1 (log: $clog)"; }

if [ "${1:-}" = --host-tests ]; then
	log "host tests of tools/bus1"
	(cd "$ws" && cargo test "${pkgs[@]}" >>"$clog" 2>&1) || cargo_failed "host tests of tools/bus1 failed"
	log "host tests of tools/bus1 passed"
fi

# Static executables: crt-static only for target artifacts (build scripts
# stay dynamic), hence the explicit --target.
export RUSTFLAGS="${BUS1_RUSTFLAGS:--C target-feature=+crt-static}"
cd "$ws"
cargo build --release --target "$target" "${pkgs[@]}" --bins >>"$clog" 2>&1 \
	|| cargo_failed "cargo build of tools/bus1 failed"
tests=$(cargo test --release --target "$target" "${pkgs[@]}" --tests --no-run \
	--message-format=json 2>>"$clog" | python3 -c '
import json, sys
for l in sys.stdin:
    try:
        m = json.loads(l)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])
') || cargo_failed "cargo test --no-run of tools/bus1 failed"

out=$BUS1_TOP/build/guest
mkdir -p "$out/userspace" "$out/demos"
n=0
while read -r name exe; do
	# Only the TAP test programs (harness = false); lib unit tests are host-only.
	case $name in
	layout) dst=bus1_sys_layout ;;
	guest) dst=bus1_rs_test ;;
	*) continue ;;
	esac
	cp -f "$exe" "$out/userspace/$dst"; n=$((n + 1))
done <<<"$tests"
[ "$n" -eq 2 ] || die "expected 2 TAP test programs from tools/bus1, found $n"
for src in "$ws"/examples/src/bin/*.rs; do
	b=$(basename "$src" .rs)
	cp -f "$CARGO_TARGET_DIR/$target/release/$b" "$out/demos/bus1-$b"
done
# The C program of bus1(7) EXAMPLES, extracted from the man page's source.
python3 "$BUS1_TOP/scripts/man_example.py" --build "$out/demos/bus1-man-example" --static \
	|| die "the bus1(7) EXAMPLES program does not build"
log "tools/bus1: $(ls "$out/userspace" | wc -l) test programs, $(ls "$out/demos" | wc -l) demos in build/guest"
