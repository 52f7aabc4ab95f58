#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make bench`: build bus1-bench statically, boot ONE release guest (2 vCPUs)
# that runs every figure side by side, then write bench/results/bench.{md,csv,png}
# (and the raw guest output, bench.log) on the host.
#
#   scripts/bench.sh [bench args...]      e.g. --reps 3 --scale 0.5 --only rtt,cpu
#   BENCH_FROM_LOG=file scripts/bench.sh  only redo the report from a saved log
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

if [ -z "${BENCH_FROM_LOG:-}" ]; then
	bin=$(build_bench)

	# vm.sh puts build/guest/demos/* into the initramfs; the binary is there
	# only for this boot, so `make run` does not run the benchmark as a demo.
	demos=$BUS1_TOP/build/guest/demos
	mkdir -p "$demos"
	placed=$demos/bus1-bench
	cp "$bin" "$placed"
	trap 'rm -f "$placed"' EXIT

	args=${*:-}
	limit=${BENCH_TIMEOUT:-2400}
	log "booting the release guest for the benchmark (limit ${limit}s)"
	tmp=$out/.bench.log.tmp
	timeout -k 10 "$limit" "$BUS1_TOP/scripts/vm.sh" run release \
		"echo BENCH-INFO\|guest_cmdline\|\$(cat /proc/cmdline); timeout $((limit - 60)) /tests/demos/bus1-bench $args" \
		| tee "$tmp" >&2 || true
	rm -f "$placed"
	grep -q 'BENCH-DONE' "$tmp" || die "the benchmark did not finish (output kept in $tmp)"
	mv "$tmp" "$log_file"
else
	log_file=$BENCH_FROM_LOG
fi

"$venv/bin/python" "$BUS1_TOP/bench/test_report.py" -q >&2 || die "bench/test_report.py failed"
"$venv/bin/python" "$BUS1_TOP/bench/report.py" --log "$log_file" --out "$out" \
	--notes "$BUS1_TOP/bench/notes.md"
log "wrote $out/bench.md, bench.csv, bench.png"
