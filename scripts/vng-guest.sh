#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The command `make vng` (scripts/vng.sh) runs inside a virtme-ng guest,
# which sees the host's file system read-only:
#   vng-guest.sh <bus1.ko> <selftest dir> <timeouts file> <program>...
# Loads the module (its KUnit suites run inside insmod), reports the suites'
# results, runs each kselftest <program> under its timeout, and writes
# everything to ttyS1 in scripts/guest-init.sh's line protocol, which
# scripts/results.py judges on the host. Kernel messages stay on ttyS0.
ko=$1 dir=$2 timeouts=$3
shift 3
R=/dev/ttyS1
# Nothing of this script on ttyS0, which is the console log.
exec >$R 2>&1
cd /tmp || exit 1

now() { read -r u _ </proc/uptime; echo $(( ${u%.*} * 100 + 1${u#*.} - 100 )); }

finish() {
	echo "@@TAINT $(cat /proc/sys/kernel/tainted)"
	echo "@@DONE"
	exit 0
}

insmod "$ko"
rc=$?
echo "@@INSMOD rc=$rc"
[ $rc -eq 0 ] || finish

for s in /sys/kernel/debug/kunit/bus1*; do
	[ -f "$s/results" ] || continue
	echo "@@BEGIN kunit ${s##*/}"
	cat "$s/results"
	echo "@@END kunit ${s##*/} rc=$?"
done

for name; do
	limit=$(awk -v n="$name" '$1 == n { print $2 }' "$timeouts")
	echo "@@BEGIN selftest $name"
	t0=$(now)
	timeout -k 10 "${limit:-600}" "$dir/$name"
	rc=$?
	# The kselftest harness runs each case in its own process group: a
	# program killed by its timeout may leave cases behind.
	[ $rc -ge 124 ] && pkill -KILL -f "^$dir/$name" 2>/dev/null
	echo "@@END selftest $name rc=$rc secs=$(( ($(now) - t0) / 100 )) timeout=${limit:-600}"
done
finish
