#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make boot-soak`: boot the debug kernel BOOTS times (default 20) exactly as
# the test guests do (same QEMU machine, CPU model and command line), up to a
# busybox init that powers off, and fail on the first boot whose console shows
# a splat. Early-boot reports (before bus1 is loaded) fail every `make check`
# run they appear in, so they must never appear at all, not just rarely.
. "$(dirname "$0")/lib.sh"

boots=${BOOTS:-20}
variant=${VARIANT:-debug}
"$BUS1_TOP/scripts/provision.sh"
kdir=$("$BUS1_TOP/scripts/build-kernel.sh" "$variant")
work=$BUS1_CACHE/work/$(tree_id)/soak-$(basename "$kdir")
mkdir -p "$work"
root=$work/initramfs
rm -rf "$root"
mkdir -p "$root"/{bin,dev,proc,sys}
cp /bin/busybox "$root/bin/busybox"
cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo BUS1-SOAK-BOOTED
/bin/busybox poweroff -f
EOF
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initramfs.cpio.gz"

# The same machine as scripts/vm.sh (TCG; see there for the CPU model).
qemu=(qemu-system-x86_64 -accel tcg -cpu max,la57=off -smp 2 -m 2G -nodefaults -display none
	-no-reboot -kernel "$kdir/arch/x86/boot/bzImage" -initrd "$work/initramfs.cpio.gz"
	-serial file:"$work/console.log"
	-append "console=ttyS0 oops=panic panic=-1 printk.time=1 ignore_loglevel")
splat='BUG:|WARNING:|Oops|general protection|KASAN|Call Trace:|possible .*(deadlock|recursive)|rcu.*stall'
for i in $(seq 1 "$boots"); do
	start=$(date +%s)
	rm -f "$work/console.log"
	timeout --foreground -k 10 600 "${qemu[@]}" </dev/null >/dev/null 2>&1
	rc=$?
	took=$(( $(date +%s) - start ))
	if grep -qE "$splat" "$work/console.log"; then
		grep -nE -m1 -A20 "$splat" "$work/console.log"
		echo "boot $i/$boots: splat (console: $work/console.log)"
		echo "boot-soak: $((i - 1)) clean boots, then a splat"
		exit 1
	fi
	if [ $rc -ne 0 ] || ! grep -q BUS1-SOAK-BOOTED "$work/console.log"; then
		echo "boot $i/$boots: did not reach init (qemu rc=$rc, console: $work/console.log)"
		exit 1
	fi
	echo "boot $i/$boots: clean (${took}s)"
done
echo "boot-soak: $boots of $boots $variant boots clean"
