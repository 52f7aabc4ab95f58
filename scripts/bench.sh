#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make bench`: build bus1-bench statically, boot a release guest (2 vCPUs)
# that runs every figure side by side (with C binder), then a second guest
# whose kernel has Rust Binder instead (variant rbinder; the two exclude each
# other in Kconfig) for the round trips against it, and write
# bench/results/bench.{md,csv,png} (and the raw guest output, bench.log and
# bench-rbinder.log) on the host.
#
#   scripts/bench.sh [bench args...]      e.g. --reps 3 --scale 0.5 --only rtt,cpu
#   BENCH_RBINDER=0 scripts/bench.sh      without the Rust Binder boot
#   BENCH_MEM=0|1 scripts/bench.sh        without (or, with --only, with) the
#                                         memory targets, which bus1_limits
#                                         --memory measures first in the
#                                         release guest (default: full runs)
#   BENCH_FROM_LOG=file scripts/bench.sh  only redo the report from a saved log
#                                         (and its -rbinder.log sibling, if any)
. "$(dirname "$0")/lib.sh"

export PYTHONDONTWRITEBYTECODE=1
out=$BUS1_TOP/bench/results
mkdir -p "$out"
log_file=$out/bench.log

# matplotlib for the plot, in a venv of its own under the cache directory.
venv=$BUS1_CACHE/bench-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
	plog=$(logfile pip-matplotlib)
	log "installing matplotlib into $venv (pip output: $plog)"
	python3 -m venv "$venv" || die "python3 -m venv failed (apt-get install python3-venv)"
	"$venv/bin/pip" install --disable-pip-version-check 'matplotlib>=3.6,<4' >"$plog" 2>&1 \
		|| die "pip install matplotlib failed (log: $plog)"
fi

# The round-trip systems of the Rust Binder boot: the binder rows and what
# their ratios are paired with in that boot.
RBINDER_SYSTEMS=bus1,bus1_tx,unix,rbinder

# Boots kernel variant $1 with bus1-bench and its arguments $3..., keeping the
# guest output in $2 once the benchmark has finished. $pre runs in the guest
# before the benchmark.
bench_guest() {
	local variant=$1 dest=$2 limit=${BENCH_TIMEOUT:-2400} tmp
	shift 2
	log "booting the $variant guest for the benchmark (limit ${limit}s): ${pre:+$pre; }bus1-bench $*"
	tmp=$dest.tmp
	timeout -k 10 "$limit" "$BUS1_TOP/scripts/vm.sh" run "$variant" \
		"echo BENCH-INFO\|guest_cmdline\|\$(cat /proc/cmdline); ${pre:+$pre; }timeout $((limit - 60)) /tests/demos/bus1-bench $*" \
		| tee "$tmp" >&2 || true
	grep -q 'BENCH-DONE' "$tmp" || die "the benchmark did not finish in the $variant guest (output kept in $tmp)"
	mv "$tmp" "$dest"
}

rlog_file=$out/bench-rbinder.log
if [ -z "${BENCH_FROM_LOG:-}" ]; then
	bin=$(build_bench)

	# vm.sh puts $BUS1_GUEST_DEMOS/* into /tests/demos of these boots only, so
	# neither `make run` nor a check of the same tree meanwhile runs it as a demo.
	demos=$(mktemp -d)
	trap 'rm -rf "$demos"' EXIT
	export BUS1_GUEST_DEMOS=$demos
	placed=$demos/bus1-bench
	cp "$bin" "$placed"

	# The memory targets (bus1_limits --memory: idle peer, queued message,
	# further handle), in the fresh release guest before the benchmark: a full
	# run measures them, a run restricted with --only only with BENCH_MEM=1.
	mem=${BENCH_MEM:-auto}
	if [ "$mem" = auto ]; then
		mem=1
		case " $* " in *" --only "*) mem=0 ;; esac
	fi
	pre=
	[ "$mem" = 1 ] && pre="timeout 600 /tests/selftests/bus1_limits --memory"
	t0=$(date +%s)
	bench_guest release "$log_file" "$@"
	pre=
	# The Rust Binder boot runs the round trips; a run restricted to other
	# figures (--only without rtt) skips it, as does BENCH_RBINDER=0.
	rbinder=${BENCH_RBINDER:-auto}
	if [ "$rbinder" = auto ]; then
		rbinder=1
		case " $* " in *" --only "*) case " $* " in *[\ ,]rtt[\ ,]*) ;; *) rbinder=0 ;; esac ;; esac
	fi
	rm -f "$rlog_file"
	if [ "$rbinder" = 1 ]; then
		bench_guest rbinder "$rlog_file" "$@" --only rtt --systems "$RBINDER_SYSTEMS"
	fi
	log "the benchmark boots took $(( ($(date +%s) - t0) / 60 )) min"
else
	log_file=$BENCH_FROM_LOG
	rlog_file=${BENCH_FROM_LOG%.log}-rbinder.log
fi
rargs=()
[ -f "$rlog_file" ] && rargs=(--rbinder-log "$rlog_file")

"$venv/bin/python" "$BUS1_TOP/bench/test_report.py" -q >&2 || die "bench/test_report.py failed"
"$venv/bin/python" "$BUS1_TOP/bench/report.py" --log "$log_file" "${rargs[@]}" --out "$out"
log "wrote $out/bench.md, bench.csv, bench.png"
