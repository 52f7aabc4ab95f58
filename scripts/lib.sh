# SPDX-License-Identifier: GPL-2.0
# Common settings for the bus1 build scripts. Sourced, not executed.

set -euo pipefail

BUS1_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUS1_CACHE=${BUS1_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bus1}
KVER_SERIES=${KVER_SERIES:-7.2}
# The LLVM of the kernel's rustc (rustc-web is linked against Debian's
# libllvm22): with Clang of the same LLVM, CONFIG_RUST_INLINE_HELPERS can
# link the C helpers' bitcode into the Rust code (release.config).
LLVM_VERSION=${LLVM_VERSION:-22}
LLVM_SUFFIX=-$LLVM_VERSION
# The rustup toolchain on PATH has no rust-src; the kernel needs Debian's.
KRUSTC=${KRUSTC:-/usr/bin/rustc}
# clippy-driver built with that rustc (rust-web-clippy), not rustup's.
KCLIPPY=${KCLIPPY:-/usr/bin/clippy-driver}
BINDGEN_ROOT=$BUS1_CACHE/bindgen
export LIBCLANG_PATH=${LIBCLANG_PATH:-/usr/lib/llvm-$LLVM_VERSION/lib}
export PATH=$BINDGEN_ROOT/bin:/usr/lib/llvm-$LLVM_VERSION/bin:$PATH

die() { printf 'bus1: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'bus1: %s\n' "$*" >&2; }

# Kbuild arguments shared by every kernel and module build.
kmake_args() {
	printf '%s\n' "LLVM=$LLVM_SUFFIX" "RUSTC=$KRUSTC" "BINDGEN=$BINDGEN_ROOT/bin/bindgen"
}

# This checkout's name in the caches: 8 hex digits of its path, so two
# checkouts on one machine keep their module, cargo and profile work apart.
tree_id() { printf %s "$BUS1_TOP" | sha256sum | cut -c1-8; }

# The cached kernel of variant $1 (built if missing) and this checkout's work
# directory for it (module and selftest objects, guest logs), locked on fd 9:
# one guest and one module build per tree and kernel at a time. Sets kdir,
# ksrc and work.
guest_work() {
	kdir=$("$BUS1_TOP/scripts/build-kernel.sh" "$1")
	ksrc=$(readlink -f "$kdir/source")
	work=$BUS1_CACHE/work/$(tree_id)/$1-$(basename "$kdir")
	mkdir -p "$work"
	exec 9>"$work.lock"
	flock 9
}

need_space() { # $1: dir, $2: GiB
	local avail
	mkdir -p "$1"
	avail=$(df -Pk "$1" | awk 'NR==2 {print int($4/1024/1024)}')
	[ "$avail" -ge "$2" ] || die "only ${avail} GiB free under $1, need $2 GiB"
}

# Phases: the numbered, timed steps of a long run (make check, make run, make
# kernels), scripts/progress.py does the bookkeeping. A run is a function
# listing its phases, one line each:
#
#	my_phases() {
#		phase "provision" "$BUS1_TOP/scripts/provision.sh"
#		for v in debug release; do phase "$v kernel" build "$v"; done
#		if [ "$x" = yes ]; then phase "extra" extra_fn; fi
#	}
#	run_phases my-plan my_phases
#
# The function is called twice, first to name and count the phases, then to
# run them, so it must do nothing but call `phase` (loops and `if` are fine;
# no `cond && phase`, whose false condition ends a `set -e` script). A phase's
# command runs in the current shell (it may set variables); its exit status
# is the phase's. Each phase prints "[N/M HH:MM:SS +elapsed] name: ETA ..."
# to stderr, ETA from the durations of the last run of the same plan (kept in
# $BUS1_CACHE/timings/<plan>.json). `phases_end` (run at exit, or earlier by
# the caller) prints the table of this run's durations. Set PHASES_STOP=1 in
# a phase to skip the remaining ones. Inside a phase of another run, a run's
# phases are printed as its steps and listed under it in its table.
phase() { # name command...
	local name=$1 rc=0
	shift
	if [ "$_PH_MODE" = plan ]; then
		_PH_NAMES+=("$name")
		return 0
	fi
	_PH_N=$((_PH_N + 1))
	if [ -n "${PHASES_STOP:-}" ]; then
		python3 "$BUS1_TOP/scripts/progress.py" skip "$_PH_STATE" "$_PH_N"
		return 0
	fi
	python3 "$BUS1_TOP/scripts/progress.py" header "$_PH_STATE" "$_PH_N" >&2
	_PH_CUR=$_PH_N
	# Under set -e a failing command ends the script as it would without
	# phases (phases_end, the EXIT trap, records it); `cmd || rc=$?` would
	# turn errexit off inside the command's functions.
	_phase_env "$@"
	rc=$?
	_PH_CUR=
	python3 "$BUS1_TOP/scripts/progress.py" end "$_PH_STATE" "$_PH_N" "$rc"
	return "$rc"
}

_phase_env() { # command...: run it with the position of this phase in the environment
	BUS1_PHASE_PREFIX=${BUS1_PHASE_PREFIX:-$_PH_N/${#_PH_NAMES[@]}} BUS1_PHASE_T0=$_PH_T0 \
		BUS1_PHASE_SUBLOG=${BUS1_PHASE_SUBLOG:-$_PH_STATE.sub} "$@"
}

run_phases() { # plan function
	local plan=$1 fn=$2
	_PH_MODE=plan _PH_NAMES=()
	"$fn"
	_PH_STATE=$(mktemp "${TMPDIR:-/tmp}/bus1-phases.XXXXXX")
	_PH_T0=${BUS1_PHASE_T0:-$(date +%s)} _PH_N=0 _PH_CUR=
	python3 "$BUS1_TOP/scripts/progress.py" begin "$_PH_STATE" "$BUS1_CACHE/timings/$plan.json" "${_PH_NAMES[@]}"
	trap phases_end EXIT
	_PH_MODE=run
	"$fn"
}

phases_end() { # the table; also the EXIT trap (keeps the exit status)
	local rc=$?
	[ -n "${_PH_STATE:-}" ] && [ -f "$_PH_STATE" ] || return $rc
	# A phase that ended the script (set -e) has not recorded itself yet.
	[ -z "${_PH_CUR:-}" ] || python3 "$BUS1_TOP/scripts/progress.py" end "$_PH_STATE" "$_PH_CUR" "$rc"
	python3 "$BUS1_TOP/scripts/progress.py" table "$_PH_STATE" >&2
	rm -f "$_PH_STATE" "$_PH_STATE.sub" "$_PH_STATE.tmp"
	return $rc
}

# A heartbeat while a kernel builds into $1: every BUS1_HEARTBEAT seconds
# (45) the number of objects (*.o) built so far, against the count the last
# complete build of the same kind left in $BUS1_CACHE/timings/<kind>.objects.
# Only reads the build directory. heartbeat_stop ends it.
heartbeat_start() { # dir kind label
	local dir=$1 rec=$BUS1_CACHE/timings/$2.objects label=$3 parent=$$
	(
		set +eu
		trap 'kill $sp 2>/dev/null; exit 0' TERM
		t0=$(date +%s) last=-1 prev_n="" prev_s="" sp=""
		[ -f "$rec" ] && read -r prev_n prev_s <"$rec"
		while kill -0 "$parent" 2>/dev/null; do
			sleep "${BUS1_HEARTBEAT:-45}" & sp=$!
			wait $sp
			n=$(find "$dir" -name '*.o' 2>/dev/null | wc -l)
			[ "$n" != "$last" ] || continue
			last=$n
			msg="$label: $n objects built"
			if [ -z "$prev_n" ] || [ "$prev_n" -eq 0 ]; then
				msg="$msg (no previous build to compare with)"
			elif [ "$n" -le "$prev_n" ]; then
				msg="$msg ($((n * 100 / prev_n))% of the $prev_n the last complete build had)"
			else
				msg="$msg (more than the $prev_n the last complete build had)"
			fi
			msg="$msg, $(fmt_secs $(( $(date +%s) - t0 ))) so far"
			[ -n "$prev_s" ] && [ "$prev_s" -gt 0 ] && msg="$msg; the last build took $(fmt_secs "$prev_s")"
			log "$(date +%H:%M:%S) $msg"
		done
	) >&2 &
	_HB_PID=$!
}

heartbeat_stop() {
	[ -n "${_HB_PID:-}" ] || return 0
	kill "$_HB_PID" 2>/dev/null || true
	wait "$_HB_PID" 2>/dev/null || true
	_HB_PID=
}

# Record how many objects a completed build has: dir kind [seconds].
heartbeat_record() {
	mkdir -p "$BUS1_CACHE/timings"
	echo "$(find "$1" -name '*.o' | wc -l) ${3:-0}" >"$BUS1_CACHE/timings/$2.objects.tmp"
	mv "$BUS1_CACHE/timings/$2.objects.tmp" "$BUS1_CACHE/timings/$2.objects"
}

# Builds one of make profile's TCG plugins, scripts/$1.c, as a test program
# (with -D$2) and runs it.
test_tcg_plugin() {
	local t rc
	t=$(mktemp -d) || return 1
	cc -O2 -Wall -Wextra -Wno-unused-parameter -D"$2" -o "$t/$1-test" "$BUS1_TOP/scripts/$1.c" &&
		"$t/$1-test"
	rc=$?
	rm -rf "$t"
	return $rc
}

# The decoder of locked instructions of scripts/tcg-insns.c on known encodings.
test_tcg_insns() { test_tcg_plugin tcg-insns TCG_INSNS_TEST; }

# The cache model of scripts/tcg-lines.c on known sequences of accesses.
test_tcg_lines() { test_tcg_plugin tcg-lines TCG_LINES_TEST; }

fmt_secs() { printf '%d:%02d' $(($1 / 60)) $(($1 % 60)); }

# Output of package managers (apt, cargo, pip) goes to a log file: logfile
# NAME prints its path, $BUS1_CACHE/logs/NAME.log, and says so on stderr.
logfile() {
	mkdir -p "$BUS1_CACHE/logs"
	printf '%s\n' "$BUS1_CACHE/logs/$1.log"
}

# Builds bus1-bench as one static binary (glibc, crt-static) for the guest, in
# build/bench-target, and prints its path (make bench, scripts/bench-ab.sh).
build_bench() {
	local target=$BUS1_TOP/build/bench-target clog bin
	clog=$(logfile cargo-bench)
	log "building bus1-bench (cargo output: $clog)"
	(cd "$BUS1_TOP/tools/bus1" && CARGO_TARGET_DIR=$target RUSTFLAGS="-C target-feature=+crt-static" \
		cargo build --release --target x86_64-unknown-linux-gnu -p bus1-bench >"$clog" 2>&1) \
		|| { tail -n 40 "$clog" >&2; die "building bus1-bench failed (log: $clog)"; }
	bin=$target/x86_64-unknown-linux-gnu/release/bus1-bench
	file "$bin" | grep -q 'static' || die "$bin is not statically linked"
	printf '%s\n' "$bin"
}
