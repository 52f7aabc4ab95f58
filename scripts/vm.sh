#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Boot a guest with bus1: `vm.sh check|run|shell release|debug [command]`.
# check: run every test, judge the run against scripts/tests.manifest (scripts/results.py),
#        print a summary line "N passed, N failed, N skipped" (exit != 0 on failure);
#        with a command, run only that (as one selftest section) and the leak scan.
# run:   load bus1 and run the demos (or the given command), printing what happens.
# shell: interactive busybox shell.
# BUS1_KVM=no: TCG even where KVM works. BUS1_QEMU_ARGS: more QEMU arguments,
# split at blanks and added last (scripts/profile.sh: one vCPU, -icount, a TCG plugin).
. "$(dirname "$0")/lib.sh"

mode=${1:?usage: vm.sh check|run|shell release|debug [cmd]}
variant=${2:-release}
cmd=${3:-}

# The phases; each sets what the next ones use.
get_kernel() {
	guest_work "$variant"
}

# The module, built out of the source tree so two kernels never share objects,
# with debug information (the kernels have none): scripts/splats.py decodes
# bus1's frames of a splat to file:line with it. -g and -Cdebuginfo=2 add only
# .debug_* sections; code, data and their relocations are those of a build
# without them. The guest gets a copy without the debug sections.
build_module() {
	mapfile -t args < <(kmake_args)
	"$BUS1_TOP/scripts/check-kdir.sh" "$kdir" "$KRUSTC"
	make -s -C "$kdir" M="$BUS1_TOP" MO="$work/mod" "${args[@]}" CONFIG_BUS1=m \
		KCFLAGS=-g KRUSTFLAGS=-Cdebuginfo=2 modules >&2 || die "module build failed"
	ko=$work/mod/bus1.ko
	[ -f "$ko" ] || die "module build produced no bus1.ko"
}

# Static test programs.
build_selftests() {
	mkdir -p "$work/selftests"
	make -s -C "$BUS1_TOP/tools/testing/selftests/bus1" KSFT_LIB="$ksrc/tools/testing/selftests/lib.mk" \
		OUTPUT="$work/selftests" USERCFLAGS=-Werror USERLDFLAGS=-static >&2 || die "selftest build failed"
}

build_userspace() {
	"$BUS1_TOP/scripts/build-userspace.sh" || die "user-space build failed"  # tools/bus1 -> build/guest
}

# The initramfs: busybox, the module, the tests.
make_initramfs() {
	root=$work/initramfs
	rm -rf "$root"; mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib/modules,tests/selftests,tests/userspace,tests/demos}
	cp /bin/busybox "$root/bin/busybox"
	cp "$BUS1_TOP/scripts/guest-init.sh" "$root/init"; chmod +x "$root/init"
	cp "$BUS1_TOP/scripts/guest-lib.sh" "$root/lib/guest-lib.sh"
	llvm-strip$LLVM_SUFFIX --strip-debug -o "$root/lib/modules/bus1.ko" "$ko" || die "cannot strip $ko"
	find "$work/selftests" -maxdepth 1 -type f -perm -u+x -exec cp {} "$root/tests/selftests/" \;
	for d in "$BUS1_TOP"/build/guest/demos/* ; do [ -x "$d" ] && cp "$d" "$root/tests/demos/"; done
	# Programs for this boot only (make profile's and make bench's), kept out of
	# build/guest/demos so that a check of the same tree meanwhile never sees them.
	if [ -n "${BUS1_GUEST_DEMOS:-}" ]; then
		for d in "$BUS1_GUEST_DEMOS"/* ; do [ -f "$d" ] && cp "$d" "$root/tests/demos/"; done
	fi
	for d in "$BUS1_TOP"/build/guest/userspace/* ; do [ -x "$d" ] && cp "$d" "$root/tests/userspace/"; done
	[ -n "$cmd" ] && printf '%s\n' "$cmd" >"$root/cmd"
	# Each program's timeout: at least the sum of its cases' declared timeouts.
	python3 "$BUS1_TOP/scripts/manifest.py" --timeouts >"$root/tests/timeouts" || die "scripts/tests.manifest unreadable"
	# The cases this variant leaves out of the runs under a reloaded module
	# (notrun= in the manifest): harness arguments per program.
	python3 "$BUS1_TOP/scripts/manifest.py" --excludes "$variant" >"$root/tests/excludes" ||
		die "scripts/tests.manifest unreadable"
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initramfs.cpio.gz"
}

guest() {
	# KVM only if a short probe boot proves it works (nested KVM hangs on some hosts).
	accel=(-accel tcg)
	probe=$BUS1_CACHE/kvm-probe-$(uname -r)-$(hostname)
	if [ -w /dev/kvm ] && [ "${BUS1_KVM:-auto}" != no ]; then
		if [ ! -f "$probe" ]; then
			echo no >"$probe"
			if timeout 30 qemu-system-x86_64 -accel kvm -cpu host -m 256M -nodefaults -display none \
				-no-reboot -serial stdio -kernel "$kdir/arch/x86/boot/bzImage" -initrd "$work/initramfs.cpio.gz" \
				-append "console=ttyS0 panic=-1 rdinit=/bin/busybox -- echo BUS1KVMOK" 2>/dev/null </dev/null | grep -q BUS1KVMOK; then
				echo yes >"$probe"
			fi
		fi
		[ "$(cat "$probe")" = yes ] && accel=(-accel kvm -cpu host)
	fi
	# No 5-level paging: with LA57, an interrupt that arrives while identify_cpu() has
	# cleared the boot CPU's capabilities makes KASAN misjudge every direct-map
	# address (pgtable_l5_enabled() reads those capabilities) and report a
	# wild-memory-access from handle_edge_irq at 0.005 s, before bus1 is loaded.
	[ "${accel[1]}" = tcg ] && accel+=(-cpu max,la57=off)

	mem=1G; [ "$variant" = debug ] && mem=2G
	append="console=ttyS0 kunit.enable=1 bus1.mode=$mode oops=panic panic=-1 printk.time=1"
	qemu=(qemu-system-x86_64 "${accel[@]}" -smp 2 -m "$mem" -nodefaults -display none -no-reboot
		-kernel "$kdir/arch/x86/boot/bzImage" -initrd "$work/initramfs.cpio.gz")
	read -ra extra <<<"${BUS1_QEMU_ARGS:-}"
	qemu+=("${extra[@]}")
	console=$work/console.log results=$work/results.log
	rm -f "$console" "$results"

	case $mode in
	shell)
		exec "${qemu[@]}" -serial mon:stdio -serial null -append "$append loglevel=4"
		;;
	run)
		# Kernel messages and the guest's output both go to the terminal.
		"${qemu[@]}" -chardev stdio,id=out,mux=on -serial chardev:out -serial chardev:out \
			-append "$append loglevel=4" </dev/null | grep --line-buffered -v '^@@'
		true
		;;
	check)
		# The sum of every program's timeout plus boot, KUnit and the leak scan
		# (scripts/manifest.py), so a hang is reported by the innermost timeout.
		# A hung task, a soft lockup or an RCU stall (each a splat that fails the
		# run anyway) ends the guest at once instead.
		limit=${BUS1_VM_TIMEOUT:-$(python3 "$BUS1_TOP/scripts/manifest.py" --guest-timeout)}
		log "booting $variant guest (${accel[*]}), timeout ${limit}s"
		# A hung task ends the guest at once, but only after 300 s, not the default 120 s: the KUnit
		# suites run inside insmod, and on the debug kernel under TCG on a loaded host the largest
		# (the exhaustive interleavings of bus1_queue) has taken over 200 s.
		# Each result is shown as the guest reports it; the verdict is results.py's.
		python3 "$BUS1_TOP/scripts/progress.py" stream --label "$variant" --console "$console" \
			--parent $$ "$results" >&2 &
		streamer=$!
		rc=0
		timeout --foreground -k 10 "$limit" "${qemu[@]}" -serial file:"$console" -serial file:"$results" \
			-append "$append ignore_loglevel hung_task_panic=1 sysctl.kernel.hung_task_timeout_secs=300 softlockup_panic=1 sysctl.kernel.panic_on_rcu_stall=1" </dev/null \
			|| rc=$?
		kill -TERM "$streamer" 2>/dev/null || true
		wait "$streamer" || true
		[ $rc -eq 124 ] && log "guest timed out after ${limit}s (console: $console)"
		python3 "$BUS1_TOP/scripts/results.py" --variant "$variant" --console "$console" \
			--results "$results" --qemu-rc "$rc" --vmlinux "$kdir/vmlinux" --modules "$work/mod" \
			--source "$ksrc"
		;;
	esac
}

vm_phases() {
	phase "provision" "$BUS1_TOP/scripts/provision.sh"
	phase "$variant kernel" get_kernel
	phase "bus1.ko" build_module
	phase "selftests" build_selftests
	phase "user space" build_userspace
	phase "initramfs" make_initramfs
	if [ "$mode" != shell ]; then phase "guest" guest; fi
}
run_phases "vm-$mode-$variant${cmd:+-cmd}" vm_phases
if [ "$mode" = shell ]; then
	phases_end
	guest
fi
