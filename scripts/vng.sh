#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make vng`: the kselftests under virtme-ng, the alternative runner:
#   vng.sh [release|debug]      (default release)
# Builds bus1.ko and the kselftests as scripts/vm.sh does, boots the cached
# kernel with `vng --run <bzImage> --disable-kvm` (QEMU TCG; the guest sees
# the host's file system, no initramfs), where scripts/vng-guest.sh loads the
# module (its KUnit suites run at load) and runs every kselftest binary of the
# manifest. The run is judged by scripts/results.py against
# scripts/tests.manifest, with the Rust TAP programs, the examples and the
# runs under a reloaded module (which only the initramfs runner runs) not
# expected. Prints "N passed, N failed,
# N skipped" and RESULT like vm.sh check; exit status 1 on any failure.
# virtme-ng is installed, pinned, into a venv under the cache directory.
. "$(dirname "$0")/lib.sh"

variant=${1:-release}
VNG_VERSION=1.42

"$BUS1_TOP/scripts/provision.sh"
# vm.sh's work directory and lock: the same module and selftest objects.
guest_work "$variant"

venv=$BUS1_CACHE/vng-venv-$VNG_VERSION
if [ "$("$venv/bin/vng" --version 2>/dev/null)" != "virtme-ng $VNG_VERSION" ]; then
	log "installing virtme-ng $VNG_VERSION into $venv"
	rm -rf "$venv"
	python3 -m venv "$venv" || die "python3 -m venv failed (apt-get install python3-venv)"
	"$venv/bin/pip" install --quiet --disable-pip-version-check "virtme-ng==$VNG_VERSION" >&2 \
		|| die "pip install virtme-ng==$VNG_VERSION failed: no network to PyPI?"
fi
# vng runs virtme-run from PATH.
export PATH=$venv/bin:$PATH

mapfile -t args < <(kmake_args)
"$BUS1_TOP/scripts/check-kdir.sh" "$kdir" "$KRUSTC"
make -s -C "$kdir" M="$BUS1_TOP" MO="$work/mod" "${args[@]}" CONFIG_BUS1=m modules >&2 \
	|| die "module build failed"
[ -f "$work/mod/bus1.ko" ] || die "module build produced no bus1.ko"
mkdir -p "$work/selftests"
make -s -C "$BUS1_TOP/tools/testing/selftests/bus1" KSFT_LIB="$ksrc/tools/testing/selftests/lib.mk" \
	OUTPUT="$work/selftests" USERCFLAGS=-Werror USERLDFLAGS=-static >&2 || die "selftest build failed"

out=$work/vng
rm -rf "$out"; mkdir -p "$out"
python3 "$BUS1_TOP/scripts/manifest.py" --kselftests >"$out/timeouts" || die "scripts/tests.manifest unreadable"
progs=$(awk '$1 != "guest" { print $1 }' "$out/timeouts" | grep -vx bus1_module_test)
# bus1_module_test unloads the module: last, as in the initramfs guest.
progs="$progs bus1_module_test"
# vng keeps module metadata next to the kernel image (.virtme_mods): a copy,
# so the shared kernel cache is never written.
cp "$kdir/arch/x86/boot/bzImage" "$out/bzImage"

mem=1G; [ "$variant" = debug ] && mem=2G
limit=${BUS1_VM_TIMEOUT:-$(awk '$1 == "guest" { print $2 }' "$out/timeouts")}
console=$out/console.log results=$out/results.log
log "booting $variant kernel under virtme-ng $VNG_VERSION (TCG), timeout ${limit}s"
# --force-9p: vng wants the Rust virtiofsd; QEMU 7.2's C one fails to start
# and vng falls back to 9p after waiting for it. ttyS0 (the kernel console,
# vng's stderr) is the console log, the second serial port the results.
# No --foreground: timeout kills vng's QEMU child too.
timeout -k 10 "$limit" vng --verbose --force-9p --disable-kvm --cpus 2 --memory "$mem" \
	--run "$out/bzImage" \
	--append "kunit.enable=1 oops=panic ignore_loglevel printk.time=1 hung_task_panic=1 sysctl.kernel.hung_task_timeout_secs=300 softlockup_panic=1 sysctl.kernel.panic_on_rcu_stall=1" \
	--qemu-opts="-cpu max,la57=off -serial file:$results" \
	-- "$BUS1_TOP/scripts/vng-guest.sh" "$work/mod/bus1.ko" "$work/selftests" "$out/timeouts" $progs \
	</dev/null >"$console" 2>&1 && rc=0 || rc=$?
[ $rc -eq 124 ] && log "guest timed out after ${limit}s (console: $console)"
# vng's own exit status is the guest command's only when virtme-ng-init finds
# its virtio-serial ports; the results log says whether the guest finished.
python3 "$BUS1_TOP/scripts/results.py" --variant "$variant" --console "$console" \
	--results "$results" --qemu-rc "$([ $rc -eq 124 ] && echo 124 || echo 0)" \
	--vmlinux "$kdir/vmlinux" --modules "$work/mod" --source "$ksrc" \
	--programs "$(echo $progs | tr ' ' ,)" --label vng
