#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make packaging-test`: what a packager or a user on their own kernel meets,
# tested on the host against the release kernel's build directory:
#   the install targets (modules_install with depmod, install-headers with
#   bus1.pc, install-man, whose EXAMPLES program must build against the
#   installed header, install-modules-load) into a scratch root, that
#   depmod accepts the module without complaint and modprobe resolves it,
#   that `make help` lists every target, dkms.conf, and the two crates:
#   `cargo package` (which builds them from their packages), the layout test
#   of the packaged bus1-sys, and the doc tests of bus1 (with the
#   compile_fail test of the zero-copy borrow rule).
# One "PASS [packaging] name" or "FAIL [packaging] name" line per check, then
# "packaging: N passed, N failed"; exit status 1 if any check failed.
. "$(dirname "$0")/lib.sh"
set +e

kdir=${KDIR:-$("$BUS1_TOP/scripts/build-kernel.sh" release)} || die "no release kernel"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
pass=0 fail=0
check() { # name command...
	local name=$1
	shift
	if "$@" >"$tmp/out" 2>&1; then
		echo "PASS [packaging] $name"
		pass=$((pass + 1))
	else
		echo "FAIL [packaging] $name"
		sed 's/^/    /' "$tmp/out" | tail -n 20
		fail=$((fail + 1))
	fi
}
m() { make -s -C "$BUS1_TOP" KDIR="$kdir" MO="$tmp/obj" LLVM="$LLVM_SUFFIX" RUSTC="$KRUSTC" "$@"; }
kver=$(make -s -C "$kdir" kernelrelease 2>/dev/null)

modules_install() {
	m INSTALL_MOD_PATH="$root" modules_install >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; return 1; }
	test -f "$root/lib/modules/$kver/updates/bus1.ko" || { echo "no updates/bus1.ko"; return 1; }
	grep -q '^updates/bus1.ko:' "$root/lib/modules/$kver/modules.dep" || { echo "not in modules.dep"; return 1; }
}
depmod_clean() {
	# The error a devname alias without a fixed minor causes, or any other.
	depmod -b "$root" "$kver" 2>&1 | grep -i 'bus1' && return 1
	modinfo -F alias "$root/lib/modules/$kver/updates/bus1.ko" | grep . && return 1
	return 0
}
modprobe_resolves() {
	modprobe -d "$root" -S "$kver" --show-depends bus1 | grep -q "updates/bus1.ko"
}
params_documented() {
	local p n=0
	for p in pool_size_mib pool_cache_kib user_slices_max user_handles_max user_inflight_bytes_max \
		user_inflight_fds_max user_peers_max quota_policy; do
		modinfo -F parm "$root/lib/modules/$kver/updates/bus1.ko" | grep -q "^$p:" || { echo "no parm $p"; return 1; }
		n=$((n + 1))
	done
	echo "$n parameters"
}
install_headers() {
	m DESTDIR="$root" install-headers || return 1
	cmp "$BUS1_TOP/include/uapi/linux/bus1.h" "$root/usr/include/linux/bus1.h" || return 1
	printf '#include <linux/bus1.h>\nint main(void) { return BUS1_CMD_SEND == 0; }\n' >"$tmp/t.c"
	cc -Wall -Werror $(PKG_CONFIG_SYSROOT_DIR="$root" PKG_CONFIG_LIBDIR="$root/usr/share/pkgconfig" \
		pkg-config --cflags bus1) -o "$tmp/t" "$tmp/t.c" && "$tmp/t"
}
install_man() {
	m DESTDIR="$root" install-man || return 1
	grep -q '^\.TH "\?BUS1"\? "\?7"\?' "$root/usr/share/man/man7/bus1.7" || return 1
	# The page's EXAMPLES program builds against the installed header alone.
	python3 "$BUS1_TOP/scripts/man_example.py" --source "$tmp/example.c" || return 1
	cc -Wall -Wextra -Werror $(PKG_CONFIG_SYSROOT_DIR="$root" PKG_CONFIG_LIBDIR="$root/usr/share/pkgconfig" \
		pkg-config --cflags bus1) -o "$tmp/example" "$tmp/example.c"
}
install_modules_load() {
	m DESTDIR="$root" install-modules-load || return 1
	[ "$(cat "$root/usr/lib/modules-load.d/bus1.conf")" = bus1 ]
}
help_lists_every_target() {
	local t missing=
	out=$(make -s -C "$BUS1_TOP" help) || return 1
	for t in $(make -s -C "$BUS1_TOP" -pqn 2>/dev/null | sed -n 's/^\.PHONY: //p' | tr ' ' '\n' | sort -u); do
		[ "$t" = all ] && continue
		printf '%s\n' "$out" | grep -qE "^  make \[?$t([] ]|$)" || missing="$missing $t"
	done
	[ -z "$missing" ] || { echo "make help does not list:$missing"; return 1; }
}
dkms_conf() {
	# shellcheck disable=SC1091
	(set +u
	 . "$BUS1_TOP/dkms.conf"
	 ver=$(sed -n 's/^VERSION := //p' "$BUS1_TOP/Makefile")
	 [ "$PACKAGE_NAME" = bus1 ] && [ "${BUILT_MODULE_NAME[0]}" = bus1 ] && [ "$PACKAGE_VERSION" = "$ver" ] &&
		grep -q '^version = "'"$ver"'"' "$BUS1_TOP/tools/bus1/Cargo.toml" ||
		{ echo "dkms.conf: $PACKAGE_NAME ${BUILT_MODULE_NAME[0]} $PACKAGE_VERSION, Makefile $ver"; exit 1; })
}

export CARGO_TARGET_DIR=$BUS1_CACHE/cargo-target/$(tree_id)-host
unset RUSTC
# cargo package verifies bus1 against the bus1-sys it has just packaged,
# through a temporary local registry whose crates it unpacks under
# $CARGO_HOME/registry/src/-<hash of that registry>/ and builds in the target
# directory. A registry crate counts as immutable: one of the same name and
# version unpacked or built by an earlier run is reused as it is, so bus1
# would be verified against an older bus1-sys. So the packages build in a
# target directory of their own, and what earlier runs unpacked and built of
# the two crates (local registries only, named "-<hash>") goes first; their
# dependencies stay built.
pkg_target=$BUS1_CACHE/cargo-target/$(tree_id)-package
cargo_package() {
	local home=${CARGO_HOME:-$HOME/.cargo}
	rm -rf "$home"/registry/src/-*/bus1-sys-[0-9]* "$home"/registry/src/-*/bus1-[0-9]* \
		"$pkg_target/package" "$pkg_target"/debug/.fingerprint/bus1* "$pkg_target"/debug/deps/*bus1* \
		"$pkg_target"/debug/build/bus1*
	cd "$BUS1_TOP/tools/bus1" && cargo package -p bus1-sys -p bus1 --allow-dirty --target-dir "$pkg_target"
}
packaged_layout_test() {
	local d=$tmp/pkg
	mkdir -p "$d" && tar -xzf "$(ls "$pkg_target"/package/bus1-sys-*.crate | sort -V | tail -n1)" -C "$d" &&
		(cd "$d"/bus1-sys-* && cargo test --test layout) >"$tmp/layout.out" 2>&1 ||
		{ cat "$tmp/layout.out"; return 1; }
	grep -q '^ok .* layout_matches_c_header$' "$tmp/layout.out"
}
doc_tests() {
	cd "$BUS1_TOP/tools/bus1" && cargo test -p bus1 --doc >"$tmp/doc.out" 2>&1 || { cat "$tmp/doc.out"; return 1; }
	grep -q 'peer::Peer::flush .* - compile fail \.\.\. ok' "$tmp/doc.out" || { cat "$tmp/doc.out"; return 1; }
}

check modules_install modules_install
check depmod_without_complaint depmod_clean
check modprobe_resolves_bus1 modprobe_resolves
check modinfo_lists_parameters params_documented
check install_headers install_headers
check install_man install_man
check install_modules_load install_modules_load
check help_lists_every_target help_lists_every_target
check dkms_conf dkms_conf
check cargo_package cargo_package
check packaged_bus1_sys_layout_test packaged_layout_test
check bus1_doc_tests_compile_fail doc_tests
echo "packaging: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
