#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0
# /init of the bus1 test guest. Kernel messages go to ttyS0; test results go
# to ttyS1 in the line protocol of scripts/guest-lib.sh (/lib/guest-lib.sh
# here), which scripts/results.py parses on the host.
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
. /lib/guest-lib.sh
hold_results

finish() {
	report_done
	sync
	reboot -f
}

# A test program under its timeout from /tests/timeouts (scripts/manifest.py:
# at least the sum of its cases' declared timeouts), reported as <name>.
program() { # kind name path args...
	kind=$1 name=$2 t=$3; shift 3
	limit=$(awk -v n="$name" '$1 == n { print $2 }' /tests/timeouts)
	echo "@@BEGIN $kind $name" >$R
	t0=$(now)
	timeout "${limit:-600}" "$t" "$@" >$R 2>&1
	rc=$?
	echo "@@END $kind $name rc=$rc secs=$(( ($(now) - t0) / 100 )) timeout=${limit:-600}" >$R
	# A program killed by its timeout may leave test children behind (the
	# kselftest harness runs each case in its own process group): as PID 1,
	# kill every other process before the next program starts.
	[ $rc -eq 143 ] && kill -KILL -1 2>/dev/null
}

# The module parameters as loaded, one "<file>:<value>" line each.
params() { grep -H . /sys/module/bus1/parameters/* 2>/dev/null; }

# Unloads bus1 once the last test's files are gone: some are put from work
# items after their last close (an io_uring's registered files), so wait up
# to 30 s for the module's references to drop.
unload() {
	[ -d /sys/module/bus1 ] || return 0
	i=0
	while ! rmmod bus1 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt 300 ]; then
			echo "bus1 still in use 30 s after the last test (refcnt $(cat /sys/module/bus1/refcnt))"
			return 1
		fi
		usleep 100000
	done
}

# Reloads bus1 with module parameters <param>=<value> and checks that the
# module reads back exactly those values (no parameters: the defaults, that
# is, what the first load read back), then runs each program as
# <program>@<name>. Its KUnit suites ran and were reported at the first load;
# they do not run again. A reload that fails reports why and runs nothing, so
# its programs count as missing. scripts/manifest.py reads the calls below to
# list these programs in scripts/tests.manifest.
reload() { # name "params" programs...
	rname=$1 rparams=$2; shift 2
	[ -w /sys/module/kunit/parameters/filter_glob ] && echo bus1_reload_runs_no_suite >/sys/module/kunit/parameters/filter_glob
	if ! why=$(unload); then
		echo "@@RELOAD $rname rc=1 unload: $why" >$R
		return 1
	fi
	if ! why=$(insmod /lib/modules/bus1.ko $rparams 2>&1); then
		echo "@@RELOAD $rname rc=1 insmod $rparams: $(echo $why)" >$R
		return 1
	fi
	if [ -z "$rparams" ]; then
		if [ "$(params)" != "$params0" ]; then
			echo "@@RELOAD $rname rc=1 defaults: read back $(params | tr '\n' ' ')instead of $(echo "$params0" | tr '\n' ' ')" >$R
			return 1
		fi
	fi
	for p in $rparams; do
		got=$(cat "/sys/module/bus1/parameters/${p%%=*}" 2>&1)
		if [ "$got" != "${p#*=}" ]; then
			echo "@@RELOAD $rname rc=1 $p: read back '${p%%=*}=$got'" >$R
			return 1
		fi
	done
	echo "@@RELOAD $rname rc=0 ${rparams:-defaults}" >$R
	for p; do
		# The harness arguments that leave out the cases this kernel does
		# not run under this reload (notrun= in scripts/tests.manifest).
		program selftest "$p@$rname" "/tests/selftests/$p" \
			$(awk -v n="$p@$rname" '$1 == n { $1 = ""; print }' /tests/excludes 2>/dev/null)
	done
}

[ -w $kml ] && echo clear >$kml
insmod /lib/modules/bus1.ko
rc=$?
echo "@@INSMOD rc=$rc" >$R
[ $rc -eq 0 ] || finish
params0=$(params)

case $mode in
check)
	kunit_sections
	if [ -n "$cmd" ]; then
		# One long run (make stress, make fuzz): only that, then the leak scan.
		section selftest custom sh -c "$cmd"
		kmemleak_final
		finish
	fi
	for t in /tests/selftests/*; do
		case ${t##*/} in bus1_module_test|bus1_limits) continue ;; esac
		program selftest "${t##*/}" "$t"
	done
	for t in /tests/userspace/*; do
		[ -x "$t" ] && program userspace "${t##*/}" "$t"
	done
	# The examples (the demos of make run), one TAP case each, by exit status,
	# each under its timeout (scripts/manifest.py reads it from here).
	section selftest bus1_examples sh -c 'set -- /tests/demos/bus1-*; echo "1..$#"; i=0
		for d; do i=$((i + 1)); timeout 180 "$d" >/tmp/demo.out 2>&1; rc=$?; sed "s/^/# /" /tmp/demo.out
			if [ $rc -eq 0 ]; then echo "ok $i - ${d##*/}"; else echo "not ok $i - ${d##*/} (rc=$rc)"; fi; done'
	# The programs whose expectations depend on the module parameters, again
	# under the other quota policies and under small per-principal limits (hit
	# after a few hundred messages, handles or peers, a few fds): the quota
	# rules and limits (bus1_quota_test), what a new peer gets (PEER_QUERY in
	# bus1_objects_test) and random operations that keep hitting the limits
	# and must still leave no counter behind (bus1_fuzz). Then the defaults.
	reload policy0 "quota_policy=0" bus1_quota_test
	reload policy1 "quota_policy=1" bus1_quota_test
	reload small "user_slices_max=1024 user_handles_max=1024 user_inflight_bytes_max=1048576 user_inflight_fds_max=64 user_peers_max=64" bus1_quota_test bus1_objects_test bus1_fuzz
	reload defaults ""
	# Last: this one unloads the module.
	program selftest bus1_module_test /tests/selftests/bus1_module_test
	kmemleak_final
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
