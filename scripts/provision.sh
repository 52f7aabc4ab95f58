#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Install everything needed to build a Rust-enabled kernel and the bus1 module
# on a Debian 12 machine. Idempotent: every step checks before it acts, and
# every download goes to a temporary path that is renamed when complete.
. "$(dirname "$0")/lib.sh"

PKGS="rustc-web rust-web-src clang-$LLVM_VERSION lld-$LLVM_VERSION llvm-$LLVM_VERSION libclang-$LLVM_VERSION-dev \
qemu-system-x86 busybox-static bc flex bison libelf-dev libssl-dev cpio kmod \
xz-utils python3-docutils python3-venv rust-web-clippy"

stamp=$BUS1_CACHE/provisioned-v3
[ -f "$stamp" ] && [ -x "$BINDGEN_ROOT/bin/bindgen" ] && command -v "clang$LLVM_SUFFIX" >/dev/null && \
	ls "$BUS1_CACHE"/src/linux-"$KVER_SERIES"*/Makefile >/dev/null 2>&1 && exit 0

need_space "$BUS1_CACHE" 12
# What apt and cargo print goes here, not to the terminal.
plog=$(logfile provision)
log "provisioning; apt and cargo output: $plog"
echo "== $(date) provision.sh" >>"$plog"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
# apt never removes a host package: the install is simulated first, and if
# apt would remove anything (to resolve a conflict with an installed
# package), provisioning stops and says what and why; the real install runs
# with --no-remove besides.
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
# A machine whose qemu-utils comes from bookworm-backports cannot take the
# bookworm qemu-system-x86 (qemu-utils breaks the older qemu-system-common).
# The emulator then comes from bookworm-backports too, at exactly the installed
# qemu-utils' version, through a private apt configuration (the machine's own
# sources plus bookworm-backports), so the system's apt sources stay as they are.
qemu_ver=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
case " $missing " in *" qemu-system-x86 "*)
	case "$qemu_ver" in *~bpo12*)
		log "installing qemu-system-x86 $qemu_ver from bookworm-backports, to match the installed qemu-utils"
		bpo=$BUS1_CACHE/apt-bpo
		rm -rf "$bpo"; mkdir -p "$bpo"/{sources,lists/partial,cache/archives/partial}
		cp /etc/apt/sources.list.d/*.sources "$bpo/sources/" 2>/dev/null || true
		[ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$bpo/sources.list"
		uri=$( { awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/*.sources
			awk '/^deb / {print $2}' /etc/apt/sources.list; } 2>/dev/null | grep -v security | head -n1 || true)
		cat > "$bpo/sources/bus1-bpo.sources" <<SRC
Types: deb
URIs: ${uri:-http://deb.debian.org/debian}
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
		bopts=(-o "Dir::Etc::SourceList=$bpo/sources.list" -o "Dir::Etc::SourceParts=$bpo/sources"
			-o "Dir::State::Lists=$bpo/lists" -o "Dir::Cache=$bpo/cache")
		[ -f "$bpo/sources.list" ] || bopts[1]="Dir::Etc::SourceList=/dev/null"
		$SUDO apt-get "${bopts[@]}" update >>"$plog" 2>&1 \
			|| die "apt-get update failed for bookworm-backports (log: $plog)"
		sim=$(LC_ALL=C apt-get "${bopts[@]}" install -s --no-install-recommends -t bookworm-backports \
			"qemu-system-x86=$qemu_ver" 2>&1) \
			|| { printf '%s\n' "$sim" >>"$plog"; die "apt-get cannot install qemu-system-x86=$qemu_ver (log: $plog)"; }
		printf '%s\n' "$sim" >>"$plog"
		why=$(printf '%s\n' "$sim" | python3 "$BUS1_TOP/scripts/progress.py" apt-removals qemu-system-x86) \
			|| die "$why"$'\n'"(apt's simulation is in $plog)"
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${bopts[@]}" install -y --no-remove --no-install-recommends \
			-t bookworm-backports "qemu-system-x86=$qemu_ver" >>"$plog" 2>&1 \
			|| die "apt-get install failed for qemu-system-x86=$qemu_ver (log: $plog)"
		rm -rf "$bpo"
		missing=$(printf '%s\n' $missing | { grep -vx qemu-system-x86 || true; } | tr '\n' ' ' | sed 's/ *$//')
		if [ -n "$missing" ]; then missing=" $missing"; fi
		;;
	esac
	;;
esac
if [ -n "$missing" ]; then
	log "installing Debian packages:$missing"
	$SUDO apt-get update >>"$plog" 2>&1 || die "apt-get update failed: no network to the Debian registry? (log: $plog)"
	sim=$(LC_ALL=C apt-get install -s --no-install-recommends -o Debug::pkgProblemResolver=true $missing 2>&1) \
		|| { printf '%s\n' "$sim" >>"$plog"; die "apt-get cannot install:$missing (log: $plog)"; }
	printf '%s\n' "$sim" >>"$plog"
	why=$(printf '%s\n' "$sim" | python3 "$BUS1_TOP/scripts/progress.py" apt-removals $missing) \
		|| die "$why"$'\n'"(apt's simulation is in $plog)"
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-remove --no-install-recommends $missing \
		>>"$plog" 2>&1 || die "apt-get install failed for:$missing (log: $plog)"
fi
for t in "$KRUSTC" clang$LLVM_SUFFIX ld.lld$LLVM_SUFFIX llvm-ar$LLVM_SUFFIX llvm-link$LLVM_SUFFIX qemu-system-x86_64 busybox bc flex bison cpio; do
	command -v "$t" >/dev/null || [ -x "$t" ] || die "missing tool after provisioning: $t"
done
[ -d /usr/lib/rustlib/src/rust/library ] || die "missing rust-src (package rust-web-src)"

if [ ! -x "$BINDGEN_ROOT/bin/bindgen" ]; then
	command -v cargo >/dev/null || die "missing tool: cargo (needed to install bindgen-cli)"
	log "installing bindgen-cli 0.72.1"
	rm -rf "$BINDGEN_ROOT.tmp"
	cargo install --locked --root "$BINDGEN_ROOT.tmp" bindgen-cli --version 0.72.1 >>"$plog" 2>&1 \
		|| die "cargo install bindgen-cli failed: no network to crates.io? (log: $plog)"
	rm -rf "$BINDGEN_ROOT"; mv "$BINDGEN_ROOT.tmp" "$BINDGEN_ROOT"
fi

# The kernel source comes from a newer Debian suite than the machine's. A
# private apt configuration, derived at run time from the machine's own Debian
# sources entry, fetches it without touching the system's apt state.
if ! ls "$BUS1_CACHE"/src/linux-"$KVER_SERIES"*/Makefile >/dev/null 2>&1; then
	apt_dir=$BUS1_CACHE/apt
	rm -rf "$apt_dir"; mkdir -p "$apt_dir"/{sources,lists/partial,cache/archives/partial,dl}
	src=""
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		src=$(awk -v RS= '/Suites:[^\n]*bookworm( |\n|$)/ && !/security/ {print; exit}' "$f")
		[ -n "$src" ] && break
	done
	if [ -n "$src" ]; then
		uri=$(printf '%s\n' "$src" | awk '/^URIs:/ {print $2; exit}')
		key=$(printf '%s\n' "$src" | awk '/^Signed-By:/ {print $2; exit}')
	else
		line=$(grep -hE '^deb [^ ]+ bookworm main' /etc/apt/sources.list 2>/dev/null | head -n1 || true)
		uri=$(printf '%s\n' "$line" | awk '{print $2}')
		key=/usr/share/keyrings/debian-archive-keyring.gpg
	fi
	[ -n "$uri" ] || die "no Debian sources entry found in /etc/apt to derive the kernel source suite from"
	got=""
	for suite in trixie-backports forky sid; do
		cat > "$apt_dir/sources/k.sources" <<SRC
Types: deb
URIs: $uri
Suites: $suite
Components: main
Signed-By: ${key:-/usr/share/keyrings/debian-archive-keyring.gpg}
SRC
		opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$apt_dir/sources"
			-o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
			-o "Dir::State::status=/var/lib/dpkg/status" -o "APT::Get::List-Cleanup=0"
			-o "Debug::NoLocking=1" -o "Acquire::Check-Valid-Until=false")
		apt-get "${opts[@]}" update >>"$plog" 2>&1 || continue
		pkg=$(apt-cache "${opts[@]}" search --names-only "^linux-source-$KVER_SERIES\$" 2>>"$plog" | awk '{print $1}' | head -n1)
		[ -n "$pkg" ] || continue
		(cd "$apt_dir/dl" && apt-get "${opts[@]}" download "$pkg") >>"$plog" 2>&1 || continue
		got=$suite; break
	done
	[ -n "$got" ] || die "could not fetch linux-source-$KVER_SERIES from any Debian suite (trixie-backports, forky, sid; log: $plog)"
	log "fetched linux-source-$KVER_SERIES from $got"
	rm -rf "$apt_dir/x"; mkdir -p "$apt_dir/x"
	dpkg-deb -x "$apt_dir"/dl/linux-source-*.deb "$apt_dir/x"
	tarball=$(ls "$apt_dir"/x/usr/src/linux-source-*.tar.* | head -n1)
	mkdir -p "$BUS1_CACHE/src"; rm -rf "$BUS1_CACHE/src/.tmp"; mkdir -p "$BUS1_CACHE/src/.tmp"
	tar -xaf "$tarball" -C "$BUS1_CACHE/src/.tmp"
	top=$(ls "$BUS1_CACHE/src/.tmp")
	ver=$(make -s -C "$BUS1_CACHE/src/.tmp/$top" kernelversion)
	rm -rf "$BUS1_CACHE/src/linux-$ver"
	mv "$BUS1_CACHE/src/.tmp/$top" "$BUS1_CACHE/src/linux-$ver"
	rm -rf "$BUS1_CACHE/src/.tmp" "$apt_dir/x" "$apt_dir/dl"
fi
touch "$stamp"
log "provisioned"
