#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make kunit`: bus1 built into a kernel in tree, its KUnit suites run by the
# kernel's own tools/testing/kunit/kunit.py under QEMU, then one boot of the
# same kernel checking that /dev/bus1 is there and opens.
#
# The tree is a hardlinked copy (cp -al) of the provisioned source, one per
# bus1 checkout, with bus1 placed in it by `intree.sh install` (symlinks into
# the checkout, so edits are picked up by the next run). The provisioned tree
# itself is never changed: intree.sh replaces the two files it edits instead
# of writing to them, which gives the copy its own inodes for them.
#
# kunit.py's kernel is the release guest kernel plus CONFIG_BUS1=y: its build
# directory starts as a copy of the release build (build-kernel.sh keeps that
# one in a direct subdirectory of the source, so both use the relative
# srctree ".." and their command lines match), configured with the
# .kunitconfig on top, so Kbuild rebuilds only what bus1 changes (bus1, the
# Rust crates whose cfg changed, the link) instead of a whole kernel. It is
# keyed by the release build, the .kunitconfig and the toolchain; reruns
# rebuild only what changed.
#
# Prints kunit.py's output and, last, "kunit.py: N passed, N failed, N
# skipped": one case per bus1 KUnit test case plus one for the /dev/bus1 boot.
# Exit status 1 unless every suite of scripts/tests.manifest ran with exactly
# its cases and passed, and neither kunit.py's console nor the /dev/bus1 boot
# shows a kernel splat.
#
# `kunit.sh --build` only builds kunit.py's kernel (kunit.py build), runs
# nothing and judges nothing: make check starts it in the background once
# the release kernel exists, so the kunit phase later finds the kernel built.
. "$(dirname "$0")/lib.sh"

build_only=
[ "${1:-}" = --build ] && build_only=1
start=$(date +%s)
"$BUS1_TOP/scripts/provision.sh"
src=$(ls -d "$BUS1_CACHE"/src/linux-"$KVER_SERIES"* 2>/dev/null | sort -V | tail -n1)
[ -n "$src" ] && [ -f "$src/Makefile" ] || die "no kernel source under $BUS1_CACHE/src (run scripts/provision.sh)"
kver=$(basename "$src")
top=$(tree_id)

# Options the /dev/bus1 boot needs on top of the .kunitconfig (an initramfs
# and devtmpfs); kunit.py's x86_64 config adds the serial console.
extra=(CONFIG_BLK_DEV_INITRD=y CONFIG_DEVTMPFS=y)
rel=$("$BUS1_TOP/scripts/build-kernel.sh" release) || die "no release kernel to start kunit.py's build from"
key=$( { basename "$rel"; cat "$BUS1_TOP/bus1/.kunitconfig"; printf '%s\n' "${extra[@]}";
	"$KRUSTC" --version; "clang$LLVM_SUFFIX" --version | head -n1; } | sha256sum | cut -c1-16)
tree=$BUS1_CACHE/intree/$top/$kver
# kunit.py's build directory: a direct subdirectory of the tree (relative
# srctree, as for the release build it is copied from). $meta prefixes the
# files of this run outside the tree (JSON results, stamp, boot console).
bdir=$tree/bus1-kunit-$key
meta=$BUS1_CACHE/kunit/$top/$kver-$key
mkdir -p "$(dirname "$tree")" "$(dirname "$meta")"
# One kunit.py run per checkout and kernel at a time: it owns tree and bdir.
exec 9>"$BUS1_CACHE/kunit/$top/$kver.lock"
flock 9

if [ ! -f "$tree.complete" ]; then
	log "copying $src to $tree (hardlinks)"
	rm -rf "$tree" "$tree.tmp"
	mkdir "$tree.tmp"
	# Not the guest kernels' build directories kept in the source tree.
	find "$src" -mindepth 1 -maxdepth 1 ! -name 'bus1-kernel-*' -exec cp -al -t "$tree.tmp" {} +
	mv "$tree.tmp" "$tree"
	touch "$tree.complete"
fi
"$BUS1_TOP/scripts/intree.sh" install "$tree"
mapfile -t margs < <(kmake_args)

# $meta.configured: the build directory is set up (kept by kunit.py
# runs after it); $meta.complete: kunit.py ran in it at least once.
if [ ! -f "$meta.configured" ] && [ ! -f "$meta.complete" ]; then
	# A real copy, not hardlinks: the build rewrites some files in place.
	log "kunit.py: starting from the release build $rel"
	need_space "$BUS1_CACHE" 2
	find "$tree" -mindepth 1 -maxdepth 1 -name 'bus1-kunit-*' -exec rm -rf {} +
	cp -a "$rel" "$bdir.tmp"
	rm -f "$bdir.tmp"/.bus1-* "$bdir.tmp/build.log"
	mv "$bdir.tmp" "$bdir"
	"$tree/scripts/kconfig/merge_config.sh" -m -O "$bdir" "$bdir/.config" \
		<(cat "$BUS1_TOP/bus1/.kunitconfig"; printf '%s\n' "${extra[@]}") >/dev/null
	make -s -C "$tree" O="$bdir" ARCH=x86_64 "${margs[@]}" olddefconfig >&2
	# What kunit.py compares with its .kunitconfig, x86_64 options and
	# --kconfig_add before it decides to keep a .config: written by its own
	# code, so an equal configuration is never regenerated from scratch.
	python3 - "$tree/tools/testing/kunit" "$bdir" "$tree/ipc/bus1" "${extra[@]}" <<-'EOF' ||
	import sys
	sys.path.insert(0, sys.argv[1])
	import kunit_kernel
	bdir, kunitconfig, add = sys.argv[2], sys.argv[3], sys.argv[4:]
	t = kunit_kernel.LinuxSourceTree(bdir, kunitconfig_paths=[kunitconfig], kconfig_add=add, arch='x86_64')
	want = t._ops.make_arch_config(t._kconfig)
	have = kunit_kernel.kunit_config.parse_file(kunit_kernel.get_kconfig_path(bdir))
	if not want.is_subset_of(have):
	    sys.exit(f"release configuration plus the .kunitconfig lacks: {want}")
	open(kunit_kernel.get_old_kunitconfig_path(bdir), 'w').close()
	want.write_to_file(kunit_kernel.get_old_kunitconfig_path(bdir))
	EOF
		die "kunit.py's configuration cannot be built on the release kernel's"
	touch "$meta.configured"
fi

# kunit.py asks QEMU for "-accel kvm -accel hvf -accel tcg". Nested KVM hangs
# on some hosts after "Booting from ROM"; use it only if vm.sh's probe boot
# proved it works, else a wrapper first on PATH drops the other accelerators.
qemu=$(command -v qemu-system-x86_64) || die "qemu-system-x86_64 not found"
probe=$BUS1_CACHE/kvm-probe-$(uname -r)-$(hostname)
accel=tcg
[ -w /dev/kvm ] && [ "${BUS1_KVM:-auto}" != no ] && [ "$(cat "$probe" 2>/dev/null)" = yes ] && accel=kvm
wrap=$BUS1_CACHE/kunit/bin
mkdir -p "$wrap"
if [ $accel = tcg ]; then
	cat >"$wrap/qemu-system-x86_64.tmp" <<-EOF
	#!/bin/bash
	# Written by bus1 scripts/kunit.sh: QEMU with TCG only (nested KVM hangs here).
	args=()
	while [ \$# -gt 0 ]; do
		if [ "\$1" = -accel ] && [ "\${2:-}" != tcg ]; then shift 2; continue; fi
		args+=("\$1"); shift
	done
	exec $qemu "\${args[@]}"
	EOF
	chmod +x "$wrap/qemu-system-x86_64.tmp"
	mv "$wrap/qemu-system-x86_64.tmp" "$wrap/qemu-system-x86_64"
else
	rm -f "$wrap/qemu-system-x86_64"
fi

if [ -n "$build_only" ]; then
	cmd=(python3 tools/testing/kunit/kunit.py build --kunitconfig=ipc/bus1 --arch=x86_64
		--build_dir="$bdir" --jobs="$(nproc)")
	for a in "${extra[@]}"; do cmd+=(--kconfig_add "$a"); done
	for a in "${margs[@]}"; do cmd+=(--make_options "$a"); done
	log "in $tree: ${cmd[*]}"
	(cd "$tree" && "${cmd[@]}") || die "kunit.py build failed"
	log "kunit.py's kernel built in $(( $(date +%s) - start )) s"
	exit 0
fi

if [ -f "$meta.complete" ]; then
	log "kunit.py: reusing $bdir (rebuilds only what changed)"
else
	log "kunit.py: first build in $bdir (bus1 on top of the release build: a few minutes)"
fi
json=$meta.json
rm -f "$json"
cmd=(python3 tools/testing/kunit/kunit.py run --kunitconfig=ipc/bus1 --arch=x86_64
	--build_dir="$bdir" --jobs="$(nproc)" --timeout="${BUS1_KUNIT_TIMEOUT:-600}" --json="$json")
for a in "${extra[@]}"; do cmd+=(--kconfig_add "$a"); done
for a in "${margs[@]}"; do cmd+=(--make_options "$a"); done
cmd+=('bus1*')
log "in $tree: ${cmd[*]} (QEMU accelerator: $accel)"
rc=0
# While kunit.py builds: a line every 45 s with the objects built so far.
trap heartbeat_stop EXIT
heartbeat_start "$bdir" kernel-kunit "kunit.py kernel" 9>&-
(cd "$tree" && PATH=$wrap:$PATH nice -n 10 "${cmd[@]}") || rc=$?
heartbeat_stop
if [ -f "$json" ]; then
	touch "$meta.complete"
	heartbeat_record "$bdir" kernel-kunit
fi

# Judge against scripts/tests.manifest: every KUnit suite it lists ran with
# exactly its cases, all passed, and no SKIP the manifest does not allow for
# "kunit" (scripts/results.py).
kp=0 kf=1 ks=0
judge=$(python3 "$BUS1_TOP/scripts/results.py" --kunit-json "$json" --kunit-rc "$rc")
printf '%s\n' "$judge" | grep -v '^RESULT ' >&2
read -r kp kf ks < <(printf '%s\n' "$judge" | sed -n 's/^RESULT //p' | tail -n1) || true
# kunit.py's console (test.log in the build directory): any splat fails.
if [ -f "$json" ] && ! python3 "$BUS1_TOP/scripts/splats.py" --label kunit --vmlinux "$bdir/vmlinux" \
	--source "$tree" "$bdir/test.log" >&2; then
	kf=$((kf + 1))
fi

# The same kernel boots with /dev/bus1 present, and it opens. Only if
# kunit.py got as far as booting: after a failed build, bzImage is stale.
bp=0 bf=0
if [ ! -f "$json" ]; then
	log "no /dev/bus1 boot: kunit.py did not build and boot a kernel"
elif [ -f "$bdir/arch/x86/boot/bzImage" ]; then
	root=$meta.initramfs
	rm -rf "$root"; mkdir -p "$root"/{bin,dev,proc,sys}
	cp /bin/busybox "$root/bin/busybox"
	cat >"$root/init" <<-'EOF'
	#!/bin/busybox sh
	/bin/busybox --install -s /bin
	mount -t devtmpfs devtmpfs /dev
	mount -t sysfs sysfs /sys
	if [ -c /dev/bus1 ]; then
		echo "@@BUS1DEV $(ls -l /dev/bus1)"
		( exec 3<>/dev/bus1 ) && echo "@@BUS1OPEN ok"
	else
		echo "@@BUS1DEV missing; misc devices: $(ls /sys/class/misc | tr '\n' ' ')"
	fi
	reboot -f
	EOF
	chmod +x "$root/init"
	(cd "$root" && find . | cpio -o -H newc --quiet) >"$root.cpio"
	boot=$meta.boot.log
	timeout -k 5 "${BUS1_KUNIT_BOOT_TIMEOUT:-180}" "$wrap/qemu-system-x86_64" -accel $accel -m 512 -nodefaults \
		-display none -no-reboot -serial file:"$boot" -kernel "$bdir/arch/x86/boot/bzImage" \
		-initrd "$root.cpio" -append "console=ttyS0 kunit.enable=0 panic=-1 oops=panic" </dev/null ||
		log "boot of $bdir/arch/x86/boot/bzImage: QEMU exit status $?"
	if ! python3 "$BUS1_TOP/scripts/splats.py" --label kunit --vmlinux "$bdir/vmlinux" --source "$tree" \
		"$boot" >&2; then
		bf=1
	elif grep -q '^@@BUS1OPEN ok' "$boot"; then
		bp=1
		log "in-tree kernel boots with $(sed -n 's/^@@BUS1DEV //p' "$boot" | tr -d '\r')"
	else
		bf=1
		echo "FAIL [kunit] in-tree kernel: /dev/bus1 missing or not openable (console: $boot)" >&2
		grep '^@@' "$boot" >&2 || tail -n 20 "$boot" >&2
	fi
else
	bf=1
	echo "FAIL [kunit] no in-tree kernel was built ($bdir)" >&2
fi

echo "make kunit took $(( $(date +%s) - start )) s"
echo "kunit.py: $((kp + bp)) passed, $((kf + bf)) failed, $ks skipped"
[ $((kf + bf)) -eq 0 ] && [ "$kp" -gt 0 ]
