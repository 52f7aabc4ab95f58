#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The command `make vng` (scripts/vng.sh) runs inside a virtme-ng guest,
# which sees the host's file system read-only:
#   vng-guest.sh <bus1.ko> <selftest dir> <timeouts file> <program>...
# Loads the module (its KUnit suites run inside insmod), reports the suites'
# results, runs each kselftest <program> under its timeout, on a kmemleak
# kernel (debug) scans for leaks, and writes everything to ttyS1 in scripts/guest-init.sh's line protocol, which
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

kml=/sys/kernel/debug/kmemleak
[ -w $kml ] && echo clear >$kml
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

# The final leak scan (debug kernel), as scripts/guest-init.sh does it: 6 s
# after the last test, two scans, then the report.
if [ -e $kml ]; then
	t0=$(now)
	while [ $(( $(now) - t0 )) -lt 600 ]; do sleep 1; done
	d=$(( $(now) - t0 ))
	echo "@@KMEMLEAK aged $((d / 100)).$((d / 10 % 10))"
	for i in 1 2; do
		echo scan >$kml
		echo "@@KMEMLEAK scan rc=$?"
	done
	echo "@@BEGIN kmemleak scan"
	cat $kml
	echo "@@END kmemleak scan rc=$?"
else
	echo "@@KMEMLEAK absent"
fi
finish
