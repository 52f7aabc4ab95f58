#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0
# /init of the bus1 test guest. Kernel messages go to ttyS0; test results go
# to ttyS1 in a line protocol that scripts/results.py parses on the host:
#   @@BEGIN <kind> <name> ... @@END <kind> <name> rc=<n>, @@TAINT <n>, @@DONE.
/bin/busybox --install -s /bin
export PATH=/bin:/tests
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/binderfs && mount -t binder binder /dev/binderfs 2>/dev/null
mkdir -p /dev/mqueue && mount -t mqueue mqueue /dev/mqueue 2>/dev/null

mode=check cmd=
for a in $(cat /proc/cmdline); do
	case $a in bus1.mode=*) mode=${a#bus1.mode=} ;; esac
done
[ -f /cmd ] && cmd=$(cat /cmd)
R=/dev/ttyS1
[ -c $R ] || R=/dev/console
kml=/sys/kernel/debug/kmemleak

finish() {
	echo "@@TAINT $(cat /proc/sys/kernel/tainted)" >$R
	echo "@@DONE" >$R
	sync
	reboot -f
}

section() { # kind name command...
	kind=$1 name=$2; shift 2
	echo "@@BEGIN $kind $name" >$R
	"$@" >$R 2>&1
	echo "@@END $kind $name rc=$?" >$R
}

[ -w $kml ] && echo clear >$kml
insmod /lib/modules/bus1.ko
rc=$?
echo "@@INSMOD rc=$rc" >$R
[ $rc -eq 0 ] || finish

case $mode in
check)
	if [ -n "$cmd" ]; then
		# One long run (make stress, make fuzz): only that, then the leak scan.
		section selftest custom sh -c "$cmd"
		if [ -w $kml ]; then
			echo scan >$kml; sleep 1; echo scan >$kml
			section kmemleak scan cat $kml
		fi
		finish
	fi
	for s in /sys/kernel/debug/kunit/bus1*; do
		[ -f "$s/results" ] && section kunit "${s##*/}" cat "$s/results"
	done
	for t in /tests/selftests/*; do
		case ${t##*/} in bus1_module_test|bus1_limits) continue ;; esac
		section selftest "${t##*/}" timeout 600 "$t"
	done
	for t in /tests/userspace/*; do
		[ -x "$t" ] && section selftest "${t##*/}" timeout 600 "$t"
	done
	# The examples (the demos of make run), one TAP case each, by exit status.
	section selftest bus1_examples sh -c 'set -- /tests/demos/bus1-*; echo "1..$#"; i=0
		for d; do i=$((i + 1)); timeout 300 "$d" >/tmp/demo.out 2>&1; rc=$?; sed "s/^/# /" /tmp/demo.out
			if [ $rc -eq 0 ]; then echo "ok $i - ${d##*/}"; else echo "not ok $i - ${d##*/} (rc=$rc)"; fi; done'
	# Last: this one unloads the module.
	section selftest bus1_module_test timeout 120 /tests/selftests/bus1_module_test
	if [ -w $kml ]; then
		echo scan >$kml; sleep 1; echo scan >$kml
		section kmemleak scan cat $kml
	fi
	;;
run)
	{
		echo "bus1: module loaded: $(grep '^bus1 ' /proc/modules)"
		ls -l /dev/bus1
		for s in /sys/kernel/debug/kunit/bus1*; do echo "bus1: KUnit $(tail -n1 $s/results)"; done
	} >$R 2>&1
	if [ -n "$cmd" ]; then
		echo "bus1: running: $cmd" >$R
		section run cmd sh -c "$cmd"
	else
		for d in /tests/demos/*; do
			[ -x "$d" ] || continue
			echo "bus1: demo ${d##*/}" >$R
			section run "${d##*/}" "$d"
		done
	fi
	;;
shell)
	echo "bus1 guest: module loaded; /tests holds the tests. Exit the shell to power off."
	setsid cttyhack sh
	;;
esac
finish
