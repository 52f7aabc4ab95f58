#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The command `make vng` (scripts/vng.sh) runs inside a virtme-ng guest,
# which sees the host's file system read-only:
#   vng-guest.sh <bus1.ko> <selftest dir> <timeouts file> <program>...
# Loads the module (its KUnit suites run inside insmod), reports the suites'
# results, runs each kselftest <program> under its timeout, on a kmemleak
# kernel (debug) scans for leaks, and writes everything to ttyS1 in the line
# protocol of scripts/guest-lib.sh, which scripts/results.py judges on the
# host. Kernel messages stay on ttyS0.
ko=$1 dir=$2 timeouts=$3
shift 3
R=/dev/ttyS1
kml=/sys/kernel/debug/kmemleak
. "$(dirname "$0")/guest-lib.sh"
# Nothing of this script on ttyS0, which is the console log.
exec >$R 2>&1
cd /tmp || exit 1

finish() {
	report_done
	exit 0
}

[ -w $kml ] && echo clear >$kml
insmod "$ko"
rc=$?
echo "@@INSMOD rc=$rc"
[ $rc -eq 0 ] || finish

kunit_sections

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

kmemleak_final
finish
