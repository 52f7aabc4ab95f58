#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make check`: every test on the debug kernel, then on the release kernel,
# then bus1's KUnit suites in tree through kunit.py (`make kunit`; skip it with
# BUS1_KUNIT=no). Every run is judged against scripts/tests.manifest. The last
# line is "N passed, N failed, N skipped" over all runs; exit status 1 if
# anything failed, was missing, skipped unexpectedly, crashed, splatted,
# leaked or timed out.
#
# The run is a list of phases (check_phases below, one line each; see
# `phase` in scripts/lib.sh), each numbered, timed and given an ETA from the
# previous run, and a table of their durations before the last line.
. "$(dirname "$0")/lib.sh"
set +e
start=$(date +%s)
total_p=0 total_f=0 total_s=0
add() { total_p=$((total_p + $1)); total_f=$((total_f + $2)); total_s=$((total_s + ${3:-0})); }

# One case, by exit status: label description command...
by_status() {
	local label=$1 what=$2
	shift 2
	if "$@" >&2; then
		echo "PASS [$label] $what"; add 1 0
	else
		echo "FAIL [$label] $what (output above)"; add 0 1; return 1
	fi
}

# The counts a command prints as its last summary line, "RESULT p f s" or
# "...: p passed, f failed[, s skipped]"; one failure if there is none.
# label description command...
counted() {
	local label=$1 what=$2 out r
	shift 2
	out=$("$@" | tee -a /dev/stderr)
	r=$(printf '%s\n' "$out" | sed -nE \
		-e 's/^RESULT ([0-9]+) ([0-9]+) ([0-9]+)$/\1 \2 \3/p' \
		-e 's/^(.*: )?([0-9]+) passed, ([0-9]+) failed(, ([0-9]+) skipped)?$/\2 \3 \5/p' | tail -n1)
	if [ -z "$r" ]; then
		echo "FAIL [$label] $what produced no result (build or boot failure above)"
		r="0 1 0"
	fi
	add $r
	set -- $r
	[ "$2" -eq 0 ]
}

# The manifest matches the sources.
manifest_check() {
	if python3 "$BUS1_TOP/scripts/manifest.py" --check; then add 1 0; else add 0 1; return 1; fi
}

# Nothing else can run without the toolchain: the remaining phases are skipped.
provision() {
	if "$BUS1_TOP/scripts/provision.sh"; then
		prebuild
		return 0
	fi
	add 0 1
	PHASES_STOP=1
	return 1
}

# On a first run the release kernel builds at the lowest CPU priority while
# the debug kernel builds and the debug guest runs: a TCG guest leaves much of
# the second core idle, and this build takes that time instead of a phase of
# its own. The release phase then finds it built, or waits for it on
# build-kernel.sh's lock (and finishes or repeats it itself if it failed).
# After it, kunit.py's kernel (bus1 on top of the release build) builds the
# same way, so the kunit phase finds it built or waits on kunit.sh's lock;
# on later runs that is the rebuild of what bus1 changed.
prebuild() {
	local plog=$BUS1_CACHE/logs/prebuild.log steps=()
	case " ${BUS1_VARIANTS:-debug release} " in
	*" debug release "*)
		"$BUS1_TOP/scripts/build-kernel.sh" --cached release >/dev/null 2>&1 ||
			steps+=("the release kernel") ;;
	esac
	[ "${BUS1_KUNIT:-yes}" = no ] || steps+=("kunit.py's kernel")
	[ ${#steps[@]} -gt 0 ] || return 0
	mkdir -p "$(dirname "$plog")"
	local what=${steps[0]}
	[ ${#steps[@]} -lt 2 ] || what="$what, then ${steps[1]}"
	log "building $what in the background, at the lowest priority (log: $plog)"
	BUS1_KUNIT=${BUS1_KUNIT:-yes} setsid nice -n 19 bash -c '
		case " ${BUS1_VARIANTS:-debug release} " in
		*" debug release "*) "$1/scripts/build-kernel.sh" release || exit 1 ;;
		esac
		[ "$BUS1_KUNIT" = no ] || "$1/scripts/kunit.sh" --build' prebuild "$BUS1_TOP" >"$plog" 2>&1 </dev/null &
}

# The alternative runner: the kselftests and KUnit suites under virtme-ng on
# the release kernel (make vng), one case; green only on a result with no
# failure.
vng_check() {
	local out
	out=$("$BUS1_TOP/scripts/vng.sh" release | tee -a /dev/stderr) &&
		printf '%s\n' "$out" | grep -x 'RESULT [0-9]* 0 [0-9]*' >/dev/null
}

# Style: every Rust file formatted as the kernel's rustfmt configuration says.
rustfmt_check() {
	local ksrc
	ksrc=$(ls -d "$BUS1_CACHE"/src/linux-"$KVER_SERIES"* 2>/dev/null | sort -V | tail -n1)
	if [ -z "$ksrc" ] || ! command -v rustfmt >/dev/null; then
		echo "FAIL [style] rustfmt --check: no rustfmt or no kernel source (.rustfmt.toml)"
		add 0 1; return 1
	fi
	if rustfmt --edition 2021 --config-path "$ksrc/.rustfmt.toml" --check \
		"$BUS1_TOP"/bus1/*.rs "$BUS1_TOP"/rust/*.rs >&2; then
		echo "PASS [style] rustfmt --check"; add 1 0
	else
		echo "FAIL [style] rustfmt --check (diff above)"; add 0 1; return 1
	fi
}

# The runner's offline tests, and those of make profile's analysis and of its
# TCG plugins' decoder of locked instructions (scripts/tcg-insns.c) and cache
# model (scripts/tcg-lines.c).
runner_tests() {
	python3 "$BUS1_TOP/scripts/test_results.py" && python3 -B "$BUS1_TOP/bench/test_profile.py" -q &&
		test_tcg_insns && test_tcg_lines
}

# The benchmark's report generator (bench/report.py) and bus1-bench's own
# tests (statistics, message stamps, pinned children), on the host: what
# make bench and make bench-ab rest on.
bench_tests() {
	python3 -B "$BUS1_TOP/bench/test_report.py" &&
		(cd "$BUS1_TOP/tools/bus1" &&
			CARGO_TARGET_DIR=$BUS1_CACHE/cargo-target/$(tree_id)-host \
			cargo test -q -p bus1-bench)
}

# The phases of make check, in order; a new one is one line here.
check_phases() {
	# The runner itself: the manifest matches the sources, and the judge
	# passes its own tests on crafted logs.
	phase "manifest" manifest_check
	phase "runner tests" by_status runner "scripts/test_results.py, bench/test_profile.py, scripts/tcg-insns.c, scripts/tcg-lines.c" runner_tests
	phase "provision" provision
	for v in ${BUS1_VARIANTS:-debug release}; do
		phase "$v guest" counted "$v" "the $v run" "$BUS1_TOP/scripts/vm.sh" check "$v"
	done
	if [ "${BUS1_VNG:-yes}" != no ]; then
		phase "vng" by_status vng "make vng (release kernel under virtme-ng)" vng_check
	fi
	if [ "${BUS1_KUNIT:-yes}" != no ]; then
		# One case per bus1 KUnit case kunit.py reports, plus the /dev/bus1 boot.
		phase "kunit" counted kunit "make kunit" "$BUS1_TOP/scripts/kunit.sh"
	fi
	phase "rustfmt" rustfmt_check
	# Lints: the module with CLIPPY=1, no warnings allowed.
	phase "clippy" by_status style "make clippy" "$BUS1_TOP/scripts/clippy.sh"
	# Packaging: install targets, depmod, make help, dkms.conf, cargo package
	# and the crates' doc tests (compile_fail borrow rule), on the host.
	phase "packaging" counted packaging "make packaging-test" "$BUS1_TOP/scripts/packaging-test.sh"
	phase "bench tests" by_status bench "bench/test_report.py, cargo test -p bus1-bench" bench_tests
}

run_phases check check_phases
phases_end
echo "make check took $(( $(date +%s) - start )) s"
echo "$total_p passed, $total_f failed, $total_s skipped"
[ "$total_f" -eq 0 ] && [ "$total_p" -gt 0 ]
