#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# A/B benchmark of two module builds in ONE release guest boot: the module of
# git revision BASE and the module of this tree, loaded in turn (rmmod, insmod)
# for AB_ROUNDS rounds (default 10) in ABBA order, each round running
# bus1-bench with the given arguments for each module. Prints, per figure, the
# median and range of the runs' medians and the paired difference within each
# round, and keeps the guest output in bench/results/ab.log.
#
#   scripts/bench-ab.sh BASE [bench args...]   e.g. scripts/bench-ab.sh main --only ops,cpu --reps 3
. "$(dirname "$0")/lib.sh"

base=${1:?usage: bench-ab.sh BASE [bench args...]}
shift
args=${*:---only ops,cpu --reps 3}
rounds=${AB_ROUNDS:-10}
out=$BUS1_TOP/bench/results
mkdir -p "$out"

git -C "$BUS1_TOP" rev-parse --verify -q "$base^{commit}" >/dev/null || die "no such revision: $base"

bin=$(build_bench)

# The base module, built from an export of BASE for the same release kernel.
kdir=$("$BUS1_TOP/scripts/build-kernel.sh" release)
tmp=$(mktemp -d)
demos=$(mktemp -d)
trap 'rm -rf "$tmp" "$demos"' EXIT
export BUS1_GUEST_DEMOS=$demos
git -C "$BUS1_TOP" archive "$base" | tar -x -C "$tmp" || die "git archive $base failed"
mapfile -t kargs < <(kmake_args)
log "building the module of $base"
make -s -C "$kdir" M="$tmp" MO="$tmp/mod" "${kargs[@]}" CONFIG_BUS1=m modules >&2 \
	|| die "building the module of $base failed"

# vm.sh copies $BUS1_GUEST_DEMOS/* into /tests/demos of this boot.
cp "$bin" "$demos/bus1-bench"
cp "$tmp/mod/bus1.ko" "$demos/base-bus1.ko"
chmod +x "$demos/base-bus1.ko"

cmd="cd /tests/demos; for i in \$(seq $rounds); do
	if [ \$((i % 2)) = 1 ]; then o='base new'; else o='new base'; fi
	for v in \$o; do
		rmmod bus1 || echo BENCH-AB-ERROR rmmod
		if [ \$v = base ]; then insmod /tests/demos/base-bus1.ko; else insmod /lib/modules/bus1.ko; fi || echo BENCH-AB-ERROR insmod
		echo \"BENCH-AB|\$v\"
		./bus1-bench $args
	done
done; echo BENCH-AB-DONE"
log "booting the release guest: $rounds rounds of $base and this tree"
timeout -k 10 "${BENCH_TIMEOUT:-3600}" "$BUS1_TOP/scripts/vm.sh" run release "$cmd" | tee "$out/ab.log" >&2 || true
grep -q '^BENCH-AB-DONE' "$out/ab.log" || die "the A/B run did not finish (output kept in $out/ab.log)"
python3 "$BUS1_TOP/bench/ab.py" "$out/ab.log"
