#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make profile`: the kernel instructions of the small-message hot path, bus1
# against AF_UNIX, counted exactly, and of them the locked ones (atomic
# read-modify-writes): one thread's loop, and round trips of two
# processes. One release guest (scripts/vm.sh run) with one vCPU under TCG
# with -icount and the plugin scripts/tcg-insns.c runs bench/profile-loop.c
# over every case; bench/profile_report.py turns the counts into instructions
# per iteration (or round trip), in total and per function, printed and
# written to bench/results/profile.md. A second guest with two vCPUs runs the
# round trips once more across the two CPUs, with scripts/tcg-lines.c
# counting the cache lines they move between them.
#
#   scripts/profile.sh [-n N] [-w WARMUP] [--sizes 0,1024] [--top K]
#   PROFILE_FROM=dir scripts/profile.sh [--top K]  only redo the report from a
#                                  saved run (guest.log and insns.out in dir)
. "$(dirname "$0")/lib.sh"

export PYTHONDONTWRITEBYTECODE=1
n=20000 warmup=2000 sizes=0,1024 top=25
while [ $# -gt 0 ]; do
	case $1 in
	-n) n=${2:?}; shift 2 ;;
	-w) warmup=${2:?}; shift 2 ;;
	--sizes) sizes=${2:?}; shift 2 ;;
	--top) top=${2:?}; shift 2 ;;
	*) die "usage: profile.sh [-n N] [-w WARMUP] [--sizes 0,1024] [--top K]" ;;
	esac
done

dir=${PROFILE_FROM:-$BUS1_CACHE/profile/$(tree_id)}
mkdir -p "$dir"

kdir=$("$BUS1_TOP/scripts/build-kernel.sh" release)  # built and cached: its System.map

if [ -z "${PROFILE_FROM:-}" ]; then
	so=$dir/tcg-insns.so
	# The plugin API generation of the installed QEMU (see tcg-insns.c).
	qv=$(qemu-system-x86_64 --version | sed -n '1s/^QEMU emulator version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
	read -r qmajor qminor <<<"${qv:-0 0}"
	api=1; [ $((qmajor * 100 + qminor)) -ge 901 ] && api=3
	gcc -O2 -Wall -Wextra -Wno-unused-parameter -shared -fPIC -fvisibility=hidden -DTCG_INSNS_API=$api \
		-o "$so" "$BUS1_TOP/scripts/tcg-insns.c" || die "building the TCG plugin failed"
	# Its decoder of locked instructions, on known encodings first.
	test_tcg_insns || die "the TCG plugin's decoder of locked instructions failed its test"
	# vm.sh puts $BUS1_GUEST_DEMOS/* into /tests/demos of this boot only.
	demos=$(mktemp -d)
	trap 'rm -rf "$demos"' EXIT
	export BUS1_GUEST_DEMOS=$demos
	gcc -O2 -Wall -Wextra -static -I "$BUS1_TOP/include/uapi" -I "$BUS1_TOP/tools/testing/selftests/bus1" \
		-o "$demos/bus1-profile" "$BUS1_TOP/bench/profile-loop.c" || die "building bench/profile-loop.c failed"

	cases=()
	for s in ${sizes//,/ }; do
		for c in bus1 bus1_tx bus1_mcast bus1_recv1 bus1_mcast_recv1 unix; do cases+=("$c:$s"); done
	done
	# The round trips (two processes) after all of those, which so run as
	# they do without them.
	for s in ${sizes//,/ }; do
		for c in bus1_rtt bus1_tx_rtt bus1_tx_xuid_rtt unix_rtt; do cases+=("$c:$s"); done
	done
	# The guest reports where the kernel's text is and bus1's symbols and
	# range, then runs every case in one process.
	qver=$(qemu-system-x86_64 --version | sed -n '1s/ (.*//p')
	cmd="echo PROFILE-INFO kernel \$(uname -r), \$(grep -c ^processor /proc/cpuinfo) vCPU, $qver, $warmup warm-up iterations per case;"
	cmd+=" grep -e ' _text\$' -e '\\[bus1\\]\$' /proc/kallsyms | sed 's/^/PROFILE-KSYM /';"
	cmd+=" echo PROFILE-MODULE \$(grep '^bus1 ' /proc/modules);"
	cmd+=" /tests/demos/bus1-profile -w $warmup -n $n ${cases[*]}"
	rm -f "$dir/insns.out" "$dir/guest.log"
	log "booting the release guest (one vCPU, TCG with -icount and scripts/tcg-insns.c): bus1-profile ${cases[*]}"
	# One vCPU: the plugin counts without atomics, and no other CPU's
	# ticks or idle loop add to the count. -icount: the virtual clock counts
	# instructions (1 ns each), so timer interrupts come at the same
	# instructions whatever the host does; -seed and a virtual RTC take the
	# host's random numbers and time of day out of the guest too.
	# Where the wake-up of a task and the switch into one begin, for the
	# plugin's split of the round trips into serial part and tail: the
	# release kernel is not relocatable, so its System.map says where they run.
	wake=$(awk '$3 == "try_to_wake_up" { print $1 }' "$kdir/System.map")
	switch=$(awk '$3 == "__switch_to_asm" { print $1 }' "$kdir/System.map")
	[ -n "$wake" ] && [ -n "$switch" ] ||
		die "no try_to_wake_up or __switch_to_asm in $kdir/System.map"
	plugin="$so,out=$dir/insns.out,wake=$wake,switch=$switch"
	BUS1_KVM=no BUS1_QEMU_ARGS="-smp 1 -icount shift=0,sleep=off -seed 1 -rtc base=2026-01-01,clock=vm -plugin $plugin" \
		timeout -k 10 "${PROFILE_TIMEOUT:-1800}" "$BUS1_TOP/scripts/vm.sh" run release "$cmd" \
		| tee "$dir/guest.log" >&2 || true
	grep -q '^PROFILE-DONE' "$dir/guest.log" ||
		die "the profile did not finish in the guest (output kept in $dir/guest.log)"

	# The round trips across two CPUs: the same program, its parent pinned to
	# CPU 0 and its child to CPU 1 (-x), in a guest of two vCPUs that -icount
	# runs in turn in one thread, as the cache-line model needs.
	lso=$dir/tcg-lines.so
	gcc -O2 -Wall -Wextra -Wno-unused-parameter -shared -fPIC -fvisibility=hidden \
		-o "$lso" "$BUS1_TOP/scripts/tcg-lines.c" || die "building the TCG plugin tcg-lines.c failed"
	test_tcg_lines || die "the cache model of the TCG plugin tcg-lines.c failed its test"
	rcases=()
	for s in ${sizes//,/ }; do
		for c in bus1_rtt bus1_tx_rtt unix_rtt; do rcases+=("$c:$s"); done
	done
	cmd="grep -e ' _text\$' -e '\\[bus1\\]\$' /proc/kallsyms | sed 's/^/PROFILE-KSYM /';"
	cmd+=" echo PROFILE-MODULE \$(grep '^bus1 ' /proc/modules);"
	cmd+=" /tests/demos/bus1-profile -x -w 500 -n 2000 ${rcases[*]}"
	rm -f "$dir/lines.out" "$dir/guest-lines.log"
	log "booting the release guest (two vCPUs, TCG with -icount and scripts/tcg-lines.c): bus1-profile -x ${rcases[*]}"
	BUS1_KVM=no BUS1_QEMU_ARGS="-smp 2 -icount shift=0,sleep=off -seed 1 -rtc base=2026-01-01,clock=vm -plugin $lso,out=$dir/lines.out" \
		timeout -k 10 "${PROFILE_TIMEOUT:-1800}" "$BUS1_TOP/scripts/vm.sh" run release "$cmd" \
		| tee "$dir/guest-lines.log" >&2 || true
	grep -q '^PROFILE-DONE' "$dir/guest-lines.log" ||
		die "the two-CPU profile did not finish in the guest (output kept in $dir/guest-lines.log)"
fi

python3 "$BUS1_TOP/bench/test_profile.py" -q >&2 || die "bench/test_profile.py failed"
mkdir -p "$BUS1_TOP/bench/results"
lines=()
[ -f "$dir/lines.out" ] && lines=(--lines-log "$dir/guest-lines.log" --lines "$dir/lines.out")
python3 "$BUS1_TOP/bench/profile_report.py" --guest-log "$dir/guest.log" --insns "$dir/insns.out" \
	--system-map "$kdir/System.map" --top "$top" "${lines[@]}" --out "$BUS1_TOP/bench/results/profile.md" ||
	die "bench/profile_report.py failed (inputs in $dir)"
log "wrote bench/results/profile.md (the run's raw output: $dir)"
