#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build (or reuse) a cached kernel for bus1:
# `build-kernel.sh [--cached] release|debug|rbinder`.
# Prints the build directory on stdout. The cache entry is keyed by kernel
# version, config fragments and toolchain; it is trusted only once its
# completion stamp exists, which is written last.
. "$(dirname "$0")/lib.sh"

# --cached: only say (exit status) whether the kernel is built.
cached=
[ "${1:-}" = --cached ] && { cached=1; shift; }
variant=${1:?usage: build-kernel.sh [--cached] release|debug|rbinder}
# The fragments of a variant, applied in this order on top of tinyconfig; a
# later setting of a symbol overrides an earlier one. rbinder is the release
# kernel with Rust Binder instead of C binder, for `make bench` only.
case $variant in
rbinder) names=(base release bench-rust-binder) ;;
*) names=(base "$variant") ;;
esac
# The settings of the fragments $2... that the final .config $1 lacks. The
# last setting of a symbol wins, `# CONFIG_X is not set` included; a wanted
# =y or =m must be in the config as written, an unset symbol must be neither.
config_rejected() {
	local config=$1
	shift
	awk -v config="$config" '
	FILENAME != config && /^CONFIG_[A-Z0-9_]+=/ {
		sym = $0; sub(/=.*/, "", sym); want[sym] = $0; next
	}
	FILENAME != config && /^# CONFIG_[A-Z0-9_]+ is not set$/ { want[$2] = $0; next }
	FILENAME == config && /^CONFIG_[A-Z0-9_]+=/ {
		sym = $0; sub(/=.*/, "", sym); have[sym] = $0
	}
	END {
		for (sym in want) {
			w = want[sym]
			if (w ~ /=[ym]$/ && have[sym] != w)
				print w
			else if (w ~ /is not set$/ && have[sym] ~ /=[ym]$/)
				print w " (" have[sym] ")"
		}
	}' "$@" "$config" | sort
}
frags=()
for n in "${names[@]}"; do
	f=$BUS1_TOP/scripts/kconfig/$n.config
	[ -f "$f" ] || die "unknown kernel variant '$variant' (no $f)"
	frags+=("$f")
done

src=$(ls -d "$BUS1_CACHE"/src/linux-"$KVER_SERIES"* 2>/dev/null | sort -V | tail -n1)
[ -n "$src" ] && [ -f "$src/Makefile" ] || die "no kernel source under $BUS1_CACHE/src (run scripts/provision.sh)"
kver=$(basename "$src")

key=$( { echo "$kver"; cat "${frags[@]}";
	"$KRUSTC" --version; "clang$LLVM_SUFFIX" --version | head -n1; } | sha256sum | cut -c1-16)
# The build directory is a direct subdirectory of the source tree, so Kbuild
# uses the relative srctree "..": no absolute path of this machine gets into
# the objects' command lines, and kunit.sh can copy the release build next to
# a copy of the tree with bus1 in it and rebuild only what bus1 changes.
out=$src/bus1-kernel-$variant-$key
if [ -f "$out/.bus1-complete-v2" ]; then
	# The object count of a complete build is what the build heartbeat of
	# the next one (a changed config) compares with.
	[ -f "$BUS1_CACHE/timings/kernel-$variant.objects" ] || heartbeat_record "$out" "kernel-$variant"
	echo "$out"; exit 0
fi
[ -z "$cached" ] || exit 1
need_space "$BUS1_CACHE" 8
# Two builds in one output directory corrupt it: serialise them.
exec 8>"$out.lock"
flock 8
if [ -f "$out/.bus1-complete-v2" ]; then echo "$out"; exit 0; fi
mkdir -p "$out"
mapfile -t args < <(kmake_args)
log "building $variant kernel $kver in $out (about 15 min on 2 cores)"
make -s -C "$src" O="$out" "${args[@]}" rustavailable >&2 || die "Rust toolchain not usable for $kver"
if [ ! -f "$out/.config" ] || [ ! -f "$out/.bus1-configured" ]; then
	make -s -C "$src" O="$out" "${args[@]}" tinyconfig >&2
	"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" \
		"${frags[@]}" >/dev/null
	make -s -C "$src" O="$out" "${args[@]}" olddefconfig >&2
	# merge_config only warns about options Kconfig rejected; insist on
	# every one the fragments ask for.
	bad=$(config_rejected "$out/.config" "${frags[@]}")
	[ -z "$bad" ] || die "kernel config rejected: $(echo "$bad" | tr '\n' ' ')"
	touch "$out/.bus1-configured"
fi
# A line every 45 s (BUS1_HEARTBEAT) with the objects built so far.
log "build log: $out/build.log"
t0=$(date +%s)
trap heartbeat_stop EXIT
heartbeat_start "$out" "kernel-$variant" "$variant kernel" 8>&-
make -C "$src" O="$out" "${args[@]}" -j"$(nproc)" bzImage modules >"$out/build.log" 2>&1 \
	|| { heartbeat_stop; tail -n 30 "$out/build.log" >&2; die "kernel build failed (log: $out/build.log)"; }
heartbeat_stop
touch "$out/.bus1-complete-v2.tmp" && mv "$out/.bus1-complete-v2.tmp" "$out/.bus1-complete-v2"
heartbeat_record "$out" "kernel-$variant" $(( $(date +%s) - t0 ))
log "built $out"
echo "$out"
