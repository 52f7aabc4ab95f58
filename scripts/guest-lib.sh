# SPDX-License-Identifier: GPL-2.0
# The results protocol of the bus1 test guests, sourced by scripts/guest-init.sh
# (/init of scripts/vm.sh's initramfs, busybox sh) and scripts/vng-guest.sh
# (scripts/vng.sh's virtme-ng guest, bash). Test results go to $R (the second
# serial port) in a line protocol that scripts/results.py parses on the host:
#   @@BEGIN <kind> <name> ... @@END <kind> <name> rc=<n> secs=<n> [timeout=<n>],
#   @@INSMOD rc=<n>, @@RELOAD <name> rc=<n> <what>, @@KMEMLEAK absent|aged <s>|scan rc=<n>,
#   @@TAINT <n>, @@DONE.
# The sourcing script sets R (where results go) and kml (kmemleak's file).

# The results port stays open in the calling shell (fd 9) from start to end.
# When the last file of a serial tty closes, the port shuts down and drops
# whatever it has not sent yet; the closing task waits for the drain first,
# but interruptibly (tty_port_close_start()), so a test program whose last
# process exits with a signal pending would cut off its own last lines. Held
# here, the port shuts down once, in report_done, closed by this shell, which
# has nothing pending and waits until everything is sent.
hold_results() { exec 9>"$R"; }

# Uptime in centiseconds (/proc/uptime has two decimals; "1" keeps a
# leading 0 of them from reading as octal).
now() { read -r u _ </proc/uptime; echo $(( ${u%.*} * 100 + 1${u#*.} - 100 )); }

section() { # kind name command...
	kind=$1 name=$2; shift 2
	echo "@@BEGIN $kind $name" >$R
	t0=$(now)
	"$@" >$R 2>&1
	rc=$?
	echo "@@END $kind $name rc=$rc secs=$(( ($(now) - t0) / 100 ))" >$R
}

# The results of bus1's KUnit suites, which ran when the module was loaded.
kunit_sections() {
	for s in /sys/kernel/debug/kunit/bus1*; do
		[ -f "$s/results" ] && section kunit "${s##*/}" cat "$s/results"
	done
}

# The final leak scan (debug kernel). kmemleak reports an object only if it
# was at least 5 s old (MSECS_MIN_AGE) when the scan started, and only if its
# contents did not change since the previous scan: wait 6 s after the last
# test ended, then scan twice and read the report.
kmemleak_final() {
	if [ ! -e $kml ]; then
		echo "@@KMEMLEAK absent" >$R
		return
	fi
	t0=$(now)
	while [ $(( $(now) - t0 )) -lt 600 ]; do sleep 1; done
	d=$(( $(now) - t0 ))
	echo "@@KMEMLEAK aged $((d / 100)).$((d / 10 % 10))" >$R
	# A scan runs synchronously in the write; the write fails (EPERM) once
	# kmemleak has disabled itself.
	for i in 1 2; do
		echo scan >$kml
		echo "@@KMEMLEAK scan rc=$?" >$R
	done
	section kmemleak scan cat $kml
}

# The end of the results: the kernel's taint flags, then @@DONE.
report_done() {
	echo "@@TAINT $(cat /proc/sys/kernel/tainted)" >$R
	echo "@@DONE" >$R
	exec 9>&-
}
