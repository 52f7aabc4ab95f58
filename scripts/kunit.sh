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
# of writing to them, which gives the copy its own inodes for them. kunit.py
# builds with --build_dir under $BUS1_CACHE/kunit/, keyed by kernel version,
# .kunitconfig and toolchain, so reruns only rebuild what changed.
#
# Prints kunit.py's output and, last, "kunit.py: N passed, N failed": one case
# per bus1 KUnit test case plus one for the /dev/bus1 boot. Exit status 1 unless
# every bus1* suite passed and at least one ran.
. "$(dirname "$0")/lib.sh"

start=$(date +%s)
"$BUS1_TOP/scripts/provision.sh"
src=$(ls -d "$BUS1_CACHE"/src/linux-"$KVER_SERIES"* 2>/dev/null | sort -V | tail -n1)
[ -n "$src" ] && [ -f "$src/Makefile" ] || die "no kernel source under $BUS1_CACHE/src (run scripts/provision.sh)"
kver=$(basename "$src")
top=$(printf %s "$BUS1_TOP" | sha256sum | cut -c1-8)

# Options the /dev/bus1 boot needs on top of the .kunitconfig (an initramfs
# and devtmpfs); kunit.py's x86_64 config adds the serial console.
extra=(CONFIG_BLK_DEV_INITRD=y CONFIG_DEVTMPFS=y)
key=$( { echo "$kver"; cat "$BUS1_TOP/bus1/.kunitconfig"; printf '%s\n' "${extra[@]}";
	"$KRUSTC" --version; clang-19 --version | head -n1; } | sha256sum | cut -c1-16)
tree=$BUS1_CACHE/intree/$top/$kver
bdir=$BUS1_CACHE/kunit/$top/$kver-$key
mkdir -p "$(dirname "$tree")" "$(dirname "$bdir")"
# One kunit.py run per checkout and kernel at a time: it owns tree and bdir.
exec 9>"$BUS1_CACHE/kunit/$top/$kver.lock"
flock 9

if [ ! -f "$tree.complete" ]; then
	log "copying $src to $tree (hardlinks)"
	rm -rf "$tree" "$tree.tmp"
	cp -al "$src" "$tree.tmp"
	mv "$tree.tmp" "$tree"
	touch "$tree.complete"
fi
"$BUS1_TOP/scripts/intree.sh" install "$tree"

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

if [ -f "$bdir.complete" ]; then
	log "kunit.py: reusing $bdir (rebuilds only what changed)"
else
	need_space "$BUS1_CACHE" 6
	log "kunit.py: first build in $bdir (about 15 min on 2 cores)"
fi
json=$bdir.json
rm -f "$json"
mapfile -t margs < <(kmake_args)
cmd=(python3 tools/testing/kunit/kunit.py run --kunitconfig=ipc/bus1 --arch=x86_64
	--build_dir="$bdir" --jobs="$(nproc)" --timeout="${BUS1_KUNIT_TIMEOUT:-600}" --json="$json")
for a in "${extra[@]}"; do cmd+=(--kconfig_add "$a"); done
for a in "${margs[@]}"; do cmd+=(--make_options "$a"); done
cmd+=('bus1*')
log "in $tree: ${cmd[*]} (QEMU accelerator: $accel)"
rc=0
(cd "$tree" && PATH=$wrap:$PATH nice -n 10 "${cmd[@]}") || rc=$?
[ -f "$json" ] && touch "$bdir.complete"

# Judge: every suite declared in the sources (#[kunit_tests(name)]) must have
# run, every bus1* suite kunit.py reports must have passed, and at least one
# case must have run.
suites=$(cd "$BUS1_TOP" && grep -rhoE '#\[kunit_tests\([A-Za-z0-9_]+\)\]' bus1 rust |
	sed 's/.*(\(.*\)).*/\1/' | sort -u | tr '\n' ' ' || true)
kp=0 kf=1
read -r kp kf < <(python3 - "$json" "$rc" $suites <<'PY'
import json, sys
path, rc, expected = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
passed = failed = skipped = 0
problems = []
try:
    top = json.load(open(path))
except (OSError, ValueError):
    top = None
    problems.append(f"kunit.py produced no results (exit status {rc}; build or boot failure above)")

def leaves(group):
    for c in group.get("test_cases", []):
        yield c
    for g in group.get("sub_groups", []):
        yield from leaves(g)

seen = set()
if top is not None:
    groups = [g for g in top.get("sub_groups", []) if g["name"].startswith("bus1")]
    # A suite without cases shows up as a case of the top group.
    groups += [{"name": c["name"], "test_cases": [c]} for c in top.get("test_cases", [])
               if c["name"].startswith("bus1")]
    for g in groups:
        seen.add(g["name"])
        for c in leaves(g):
            if c["status"] == "PASS":
                passed += 1
            elif c["status"] == "SKIP":
                skipped += 1
            else:
                failed += 1
                problems.append(f"{g['name']}.{c['name']}: {c['status']}")
    for s in expected:
        if s not in seen:
            failed += 1
            problems.append(f"suite {s} (declared in the sources) did not run")
    if not seen:
        problems.append("no bus1 suite ran")
    if rc != 0 and not problems:
        problems.append(f"kunit.py exited with status {rc}")
if problems and failed == 0:
    failed = 1
for p in problems:
    print(f"FAIL [kunit] {p}", file=sys.stderr)
extra = f", {skipped} skipped" if skipped else ""
print(f"bus1 KUnit suites {' '.join(sorted(seen)) or '(none)'}: {passed} passed, {failed} failed{extra}", file=sys.stderr)
print(passed, failed)
PY
) || true

# The same kernel boots with /dev/bus1 present, and it opens. Only if
# kunit.py got as far as booting: after a failed build, bzImage is stale.
bp=0 bf=0
if [ ! -f "$json" ]; then
	log "no /dev/bus1 boot: kunit.py did not build and boot a kernel"
elif [ -f "$bdir/arch/x86/boot/bzImage" ]; then
	root=$bdir.initramfs
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
	boot=$bdir.boot.log
	timeout -k 5 "${BUS1_KUNIT_BOOT_TIMEOUT:-180}" "$wrap/qemu-system-x86_64" -accel $accel -m 512 -nodefaults \
		-display none -no-reboot -serial file:"$boot" -kernel "$bdir/arch/x86/boot/bzImage" \
		-initrd "$root.cpio" -append "console=ttyS0 kunit.enable=0 panic=-1 oops=panic" </dev/null ||
		log "boot of $bdir/arch/x86/boot/bzImage: QEMU exit status $?"
	if grep -q '^@@BUS1OPEN ok' "$boot"; then
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
echo "kunit.py: $((kp + bp)) passed, $((kf + bf)) failed"
[ $((kf + bf)) -eq 0 ] && [ "$kp" -gt 0 ]
