#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make check`: every test on the debug kernel, then on the release kernel,
# then bus1's KUnit suites in tree through kunit.py (`make kunit`; skip it with
# BUS1_KUNIT=no). Every run is judged against scripts/tests.manifest. The last
# line is "N passed, N failed, N skipped" over all runs; exit status 1 if
# anything failed, was missing, skipped unexpectedly, crashed, splatted,
# leaked or timed out.
. "$(dirname "$0")/lib.sh"
set +e
start=$(date +%s)
total_p=0 total_f=0 total_s=0
add() { total_p=$((total_p + $1)); total_f=$((total_f + $2)); total_s=$((total_s + ${3:-0})); }
# The runner itself: the manifest matches the sources, and the judge passes
# its own tests on crafted logs.
if python3 "$BUS1_TOP/scripts/manifest.py" --check; then add 1 0; else add 0 1; fi
if python3 "$BUS1_TOP/scripts/test_results.py" >&2; then
	echo "PASS [runner] scripts/test_results.py"; add 1 0
else
	echo "FAIL [runner] scripts/test_results.py (output above)"; add 0 1
fi
"$BUS1_TOP/scripts/provision.sh" || { echo "$total_p passed, $((total_f + 1)) failed, $total_s skipped"; exit 1; }
for v in ${BUS1_VARIANTS:-debug release}; do
	out=$("$BUS1_TOP/scripts/vm.sh" check "$v" | tee -a /dev/stderr)
	r=$(printf '%s\n' "$out" | sed -n 's/^RESULT \([0-9]*\) \([0-9]*\) \([0-9]*\)$/\1 \2 \3/p' | tail -n1)
	if [ -z "$r" ]; then
		echo "FAIL [$v] the $v run produced no result (build or boot failure above)"
		r="0 1 0"
	fi
	add $r
done
# The alternative runner, once: the kselftests and KUnit suites under
# virtme-ng on the release kernel (make vng), one case (BUS1_VNG=no skips it).
if [ "${BUS1_VNG:-yes}" != no ]; then
	if out=$("$BUS1_TOP/scripts/vng.sh" release | tee -a /dev/stderr) &&
		printf '%s\n' "$out" | grep -qx 'RESULT [0-9]* 0 [0-9]*'; then
		echo "PASS [vng] make vng (release kernel under virtme-ng)"; add 1 0
	else
		echo "FAIL [vng] make vng (release kernel under virtme-ng; output above)"; add 0 1
	fi
fi
if [ "${BUS1_KUNIT:-yes}" != no ]; then
	# One case per bus1 KUnit case kunit.py reports, plus the /dev/bus1 boot.
	out=$("$BUS1_TOP/scripts/kunit.sh" | tee -a /dev/stderr)
	r=$(printf '%s\n' "$out" | sed -n 's/^kunit\.py: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped$/\1 \2 \3/p' | tail -n1)
	if [ -z "$r" ]; then
		echo "FAIL [kunit] make kunit produced no result (build or boot failure above)"
		r="0 1 0"
	fi
	add $r
fi
# Style: every Rust file formatted as the kernel's rustfmt configuration says.
ksrc=$(ls -d "$BUS1_CACHE"/src/linux-"$KVER_SERIES"* 2>/dev/null | sort -V | tail -n1)
if [ -z "$ksrc" ] || ! command -v rustfmt >/dev/null; then
	echo "FAIL [style] rustfmt --check: no rustfmt or no kernel source (.rustfmt.toml)"
	add 0 1
elif rustfmt --edition 2021 --config-path "$ksrc/.rustfmt.toml" --check \
	"$BUS1_TOP"/bus1/*.rs "$BUS1_TOP"/rust/*.rs >&2; then
	echo "PASS [style] rustfmt --check"
	add 1 0
else
	echo "FAIL [style] rustfmt --check (diff above)"
	add 0 1
fi
# Lints: the module with CLIPPY=1, no warnings allowed.
if "$BUS1_TOP/scripts/clippy.sh" >&2; then
	echo "PASS [style] make clippy"
	add 1 0
else
	echo "FAIL [style] make clippy (warnings above)"
	add 0 1
fi
# Packaging: install targets, depmod, make help, dkms.conf, cargo package and
# the crates' doc tests (compile_fail borrow rule), on the host.
out=$("$BUS1_TOP/scripts/packaging-test.sh" | tee -a /dev/stderr)
r=$(printf '%s\n' "$out" | sed -n 's/^packaging: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' | tail -n1)
[ -n "$r" ] || { echo "FAIL [packaging] make packaging-test produced no result"; r="0 1"; }
set -- $r
total_p=$((total_p + $1)); total_f=$((total_f + $2))
echo "make check took $(( $(date +%s) - start )) s"
echo "$total_p passed, $total_f failed, $total_s skipped"
[ "$total_f" -eq 0 ] && [ "$total_p" -gt 0 ]
