#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Put bus1 into a Linux 7.x source tree, take it out again, or write it as a
# patch series:
#
#   intree.sh install KSRC   ipc/bus1/ and include/uapi/linux/bus1.h as
#                            symlinks into this checkout, plus the Kconfig
#                            and Makefile hooks; idempotent
#   intree.sh remove KSRC    undo exactly that
#   intree.sh patches OUT [KSRC]
#                            git format-patch series against KSRC (default:
#                            the provisioned tree), written to OUT
#
# Every check runs before the first change, so a KSRC that is not a kernel
# tree, is not 7.x, or already holds a different bus1 is left as it was.
# Files of KSRC are never written in place: an edited file is written next to
# it and renamed over it, so a hardlinked copy of a tree (cp -al) stays
# independent of the tree it was copied from.
. "$(dirname "$0")/lib.sh"

# In-tree layout: ipc/bus1/<entry> -> <this checkout>/<source>.
ENTRIES=(Kbuild Kconfig bus1 rust .kunitconfig)
declare -A SOURCE=([Kbuild]=Kbuild [Kconfig]=Kconfig [bus1]=bus1 [rust]=rust
	[.kunitconfig]=bus1/.kunitconfig)
UAPI=include/uapi/linux/bus1.h
MK_LINE='obj-$(CONFIG_BUS1) += bus1/'
KC_LINE='source "ipc/bus1/Kconfig"'
# A line of a hook file that mentions bus1.
BUS1_RE='(^|[^[:alnum:]])bus1|CONFIG_BUS1'

usage() { die "usage: intree.sh install|remove KSRC | intree.sh patches OUTDIR [KSRC]"; }

# Sets KSRC (absolute), KC_FILE (the file that sources our Kconfig) and
# KVERSION; dies unless $1 is a 7.x kernel source tree.
check_tree() {
	local ksrc=$1 f version patchlevel
	[ -n "$ksrc" ] || die "set KSRC=<kernel source tree>"
	[ -d "$ksrc" ] || die "KSRC=$ksrc: no such directory"
	KSRC=$(cd "$ksrc" && pwd -P)
	for f in Makefile Kbuild Kconfig init/Kconfig ipc/Makefile include/uapi/linux scripts/Makefile.build; do
		[ -e "$KSRC/$f" ] || die "KSRC=$ksrc is not a kernel source tree (no $f)"
	done
	version=$(sed -n 's/^VERSION = \([0-9]*\)$/\1/p' "$KSRC/Makefile")
	patchlevel=$(sed -n 's/^PATCHLEVEL = \([0-9]*\)$/\1/p' "$KSRC/Makefile")
	[ -n "$version" ] && [ -n "$patchlevel" ] || die "KSRC=$ksrc: no VERSION/PATCHLEVEL in its Makefile; not a kernel source tree"
	KVERSION=$version.$patchlevel
	[ "$version" = 7 ] || die "KSRC=$ksrc is Linux $KVERSION; bus1 needs Linux 7.x (it is written against 7.2)"
	[ "$KVERSION" = "$KVER_SERIES" ] || log "note: KSRC is Linux $KVERSION, bus1 is written and tested against $KVER_SERIES"
	case $KSRC/ in "$BUS1_TOP"/*) die "KSRC=$ksrc is inside the bus1 checkout";; esac
	# Where the IPC options live: ipc/Kconfig if the tree has one (it does
	# not in 7.2), else init/Kconfig next to SYSVIPC and POSIX_MQUEUE.
	if [ -f "$KSRC/ipc/Kconfig" ]; then KC_FILE=ipc/Kconfig; else KC_FILE=init/Kconfig; fi
}

same_file() { [ "$(readlink -f "$1")" = "$(readlink -f "$2")" ]; }

# Dies if KSRC holds a bus1 that is not this checkout's symlinks; sets
# INSTALLED to the parts of ours that are present.
check_ours() {
	local e p other line
	INSTALLED=()
	if [ -L "$KSRC/ipc/bus1" ] || { [ -e "$KSRC/ipc/bus1" ] && [ ! -d "$KSRC/ipc/bus1" ]; }; then
		die "KSRC=$KSRC already holds a different bus1: ipc/bus1 is not a directory of symlinks into $BUS1_TOP"
	fi
	if [ -d "$KSRC/ipc/bus1" ]; then
		for p in "$KSRC"/ipc/bus1/* "$KSRC"/ipc/bus1/.[!.]*; do
			[ -e "$p" ] || [ -L "$p" ] || continue
			e=${p##*/}
			[ -n "${SOURCE[$e]+x}" ] ||
				die "KSRC=$KSRC already holds a different bus1: ipc/bus1/$e is not one of this checkout's links (${ENTRIES[*]})"
			if [ ! -L "$p" ] || ! same_file "$p" "$BUS1_TOP/${SOURCE[$e]}"; then
				other=$(readlink "$p" 2>/dev/null) && other="it points to $other" || other="it is not a symlink"
				die "KSRC=$KSRC already holds a different bus1: ipc/bus1/$e should link to $BUS1_TOP/${SOURCE[$e]}, but $other (remove that bus1 first, e.g. make intree-remove in the checkout it belongs to)"
			fi
			INSTALLED+=("ipc/bus1/$e")
		done
	fi
	if [ -L "$KSRC/$UAPI" ] || [ -e "$KSRC/$UAPI" ]; then
		same_file "$KSRC/$UAPI" "$BUS1_TOP/$UAPI" && [ -L "$KSRC/$UAPI" ] ||
			die "KSRC=$KSRC already holds a different bus1: $UAPI is not a symlink to $BUS1_TOP/$UAPI"
		INSTALLED+=("$UAPI")
	fi
	while IFS= read -r line; do
		[ "$line" = "$MK_LINE" ] || die "KSRC=$KSRC already holds a different bus1: ipc/Makefile has '$line'"
		INSTALLED+=(ipc/Makefile)
	done < <(grep -iE "$BUS1_RE" "$KSRC/ipc/Makefile" || true)
	while IFS= read -r line; do
		[ "$line" = "$KC_LINE" ] || die "KSRC=$KSRC already holds a different bus1: $KC_FILE has '$line'"
		INSTALLED+=("$KC_FILE")
	done < <(grep -iE "$BUS1_RE" "$KSRC/$KC_FILE" || true)
	# A BUS1 symbol anywhere else (grep -r does not follow our symlinks).
	other=$(grep -rlE --include='Kconfig*' --exclude-dir=.git \
		'^[[:space:]]*(menu)?config[[:space:]]+BUS1[[:space:]]*$' "$KSRC" 2>/dev/null | head -n1 || true)
	[ -z "$other" ] || die "KSRC=$KSRC already holds a different bus1: ${other#"$KSRC"/} defines config BUS1"
}

# A kbuild O= build looks up objects in the source tree too (VPATH), so
# objects of an out-of-tree build in this checkout would be picked up.
check_clean_sources() {
	local junk
	junk=$(cd "$BUS1_TOP" && find Kbuild bus1 rust \( -name '*.o' -o -name '*.ko' -o -name '*.mod' \
		-o -name '*.mod.c' -o -name '.*.cmd' -o -name '*.rmeta' -o -name '*.a' \) -print | head -n3)
	[ -z "$junk" ] || die "$BUS1_TOP has build products from an in-place module build ($(echo $junk)); run 'make clean' first, they would shadow the in-tree build's objects"
}

# Replace $1 by stdin, keeping its mode, without writing to its inode.
replace_file() {
	local f=$1 tmp
	tmp=$(mktemp "$f.bus1.XXXXXX")
	cat >"$tmp"
	chmod --reference="$f" "$tmp"
	mv -f "$tmp" "$f"
}

kconfig_hooked() { grep -qxF "$KC_LINE" "$KSRC/$KC_FILE"; }
makefile_hooked() { grep -qxF "$MK_LINE" "$KSRC/ipc/Makefile"; }

# init/Kconfig: after the POSIX_MQUEUE_SYSCTL entry (the last IPC option).
# ipc/Kconfig (newer trees): at the end.
check_kconfig_anchor() {
	[ "$KC_FILE" = ipc/Kconfig ] && return 0
	kconfig_hooked && return 0
	grep -qx 'config POSIX_MQUEUE_SYSCTL' "$KSRC/init/Kconfig" ||
		die "KSRC=$KSRC: init/Kconfig has no 'config POSIX_MQUEUE_SYSCTL' to put the bus1 entry after"
}

hook_kconfig() {
	if [ "$KC_FILE" = ipc/Kconfig ]; then
		{ cat "$KSRC/ipc/Kconfig"; printf '\n%s\n' "$KC_LINE"; } | replace_file "$KSRC/ipc/Kconfig"
		return
	fi
	awk -v line="$KC_LINE" '
		{ print }
		$0 == "config POSIX_MQUEUE_SYSCTL" { anchor = 1 }
		anchor && /^$/ && !done { print line; print ""; done = 1 }
		END { if (!done) { print ""; print line } }
	' "$KSRC/init/Kconfig" | replace_file "$KSRC/init/Kconfig"
}

do_install() {
	local e changed=0
	check_tree "${1:-}"
	check_ours
	check_kconfig_anchor
	check_clean_sources
	for e in "${ENTRIES[@]}"; do
		[ -e "$BUS1_TOP/${SOURCE[$e]}" ] || die "$BUS1_TOP/${SOURCE[$e]} is missing"
	done
	[ -w "$KSRC/ipc" ] && [ -w "$KSRC/$KC_FILE" ] && [ -w "$KSRC/include/uapi/linux" ] ||
		die "KSRC=$KSRC is not writable"

	# Everything checked; now change the tree.
	mkdir -p "$KSRC/ipc/bus1"
	for e in "${ENTRIES[@]}"; do
		[ -L "$KSRC/ipc/bus1/$e" ] && continue
		ln -s "$BUS1_TOP/${SOURCE[$e]}" "$KSRC/ipc/bus1/$e"; changed=1
	done
	if [ ! -L "$KSRC/$UAPI" ]; then ln -s "$BUS1_TOP/$UAPI" "$KSRC/$UAPI"; changed=1; fi
	if ! makefile_hooked; then
		{ cat "$KSRC/ipc/Makefile"; printf '%s\n' "$MK_LINE"; } | replace_file "$KSRC/ipc/Makefile"
		changed=1
	fi
	if ! kconfig_hooked; then hook_kconfig; changed=1; fi
	if [ $changed = 1 ]; then
		log "installed into $KSRC (Linux $KVERSION): ipc/bus1/ and $UAPI link to $BUS1_TOP;"
		log "  '$KC_LINE' in $KC_FILE, '$MK_LINE' in ipc/Makefile."
		log "  Enable it with CONFIG_BUS1 (General setup -> bus1); KUnit: tools/testing/kunit/kunit.py run --kunitconfig=ipc/bus1"
	else
		log "already installed in $KSRC"
	fi
}

do_remove() {
	local e
	check_tree "${1:-}"
	check_ours
	if [ ${#INSTALLED[@]} -eq 0 ]; then log "bus1 is not installed in $KSRC"; return; fi
	for e in "${ENTRIES[@]}"; do rm -f "$KSRC/ipc/bus1/$e"; done
	[ -d "$KSRC/ipc/bus1" ] && rmdir "$KSRC/ipc/bus1"
	rm -f "$KSRC/$UAPI"
	if makefile_hooked; then
		grep -vxF "$MK_LINE" "$KSRC/ipc/Makefile" | replace_file "$KSRC/ipc/Makefile"
	fi
	if kconfig_hooked; then
		# Drop the line and the blank line hook_kconfig added after it.
		awk -v line="$KC_LINE" '
			skip && /^$/ { skip = 0; next }
			{ skip = 0 }
			$0 == line { skip = 1; next }
			{ print }
		' "$KSRC/$KC_FILE" | replace_file "$KSRC/$KC_FILE"
	fi
	log "removed bus1 from $KSRC"
}

# The files of a patch series: tracked files of the checkout (its working
# tree contents), mapped to their in-tree paths.
series_files() { # $1: repo dir (bus1 part of the series) -> "src<TAB>dst" lines
	local e f
	for e in Kbuild Kconfig .kunitconfig; do printf '%s\t%s\n' "${SOURCE[$e]}" "ipc/bus1/$e"; done
	for e in bus1 rust; do
		if git -C "$BUS1_TOP" rev-parse --git-dir >/dev/null 2>&1; then
			git -C "$BUS1_TOP" ls-files "$e"
		else
			(cd "$BUS1_TOP" && find "$e" -type f \( -name '*.rs' -o -name '*.c' -o -name '*.h' \) | sort)
		fi | while IFS= read -r f; do
			[ "$f" = bus1/.kunitconfig ] && continue
			printf '%s\t%s\n' "$f" "ipc/bus1/$f"
		done
	done
}

do_patches() {
	local out=${1:-} ksrc=${2:-} src dst name email n
	[ -n "$out" ] || usage
	if [ -z "$ksrc" ]; then
		ksrc=$(ls -d "$BUS1_CACHE"/src/linux-"$KVER_SERIES"* 2>/dev/null | sort -V | tail -n1)
		[ -n "$ksrc" ] || die "no provisioned kernel source under $BUS1_CACHE/src (run scripts/provision.sh) and no KSRC given"
	fi
	check_tree "$ksrc"
	check_ours
	[ ${#INSTALLED[@]} -eq 0 ] || die "KSRC=$KSRC has bus1 installed (make intree-remove KSRC=$KSRC first): the series is against the plain tree"
	check_kconfig_anchor
	command -v git >/dev/null || die "git is needed to write the patch series"
	name=$(git -C "$BUS1_TOP" log -1 --format=%an 2>/dev/null || true)
	email=$(git -C "$BUS1_TOP" log -1 --format=%ae 2>/dev/null || true)
	tmp=$(mktemp -d)  # global: the EXIT trap runs after this function returned
	trap 'rm -rf "$tmp"' EXIT
	g() { git -C "$tmp/t" -c user.name="${name:-bus1}" -c user.email="${email:-bus1@localhost}" \
		-c commit.gpgsign=false "$@" >/dev/null; }
	# A scratch repository holding only the files the series touches.
	mkdir -p "$tmp/t/init" "$tmp/t/ipc"
	cp "$KSRC/$KC_FILE" "$tmp/t/$KC_FILE"
	cp "$KSRC/ipc/Makefile" "$tmp/t/ipc/Makefile"
	g init -q
	g add -A && g commit -q -m "Linux $KVERSION"
	base=$(git -C "$tmp/t" rev-parse HEAD)

	mkdir -p "$tmp/t/include/uapi/linux"
	cp "$BUS1_TOP/$UAPI" "$tmp/t/$UAPI"
	g add -A
	g commit -q -F - <<-'MSG'
	bus1: add the user-space ABI header

	include/uapi/linux/bus1.h: the ioctl interface of /dev/bus1, as in the
	2016 bus1 RFC v1, so that existing clients build unchanged.
	MSG

	while IFS=$'\t' read -r src dst; do
		mkdir -p "$tmp/t/$(dirname "$dst")"
		cp "$BUS1_TOP/$src" "$tmp/t/$dst"
	done < <(series_files)
	KSRC=$tmp/t hook_kconfig
	printf '%s\n' "$MK_LINE" >>"$tmp/t/ipc/Makefile"
	g add -A
	g commit -q -F - <<-'MSG'
	ipc: add bus1, capability-based IPC, as a Rust module

	bus1 is a local, capability-based IPC bus: every open file of /dev/bus1
	is a peer, peers own nodes and hold handles to nodes, and a peer can
	only send to handles it holds. It is one Rust crate (ipc/bus1/bus1/)
	with its own abstractions over kernel APIs the kernel crate lacks
	(ipc/bus1/rust/), built as bus1.o or bus1.ko with CONFIG_BUS1.

	With CONFIG_KUNIT=y its KUnit suites (bus1_*) are built in; run them
	with tools/testing/kunit/kunit.py run --kunitconfig=ipc/bus1.
	MSG
	mkdir -p "$out"
	rm -f "$out"/[0-9][0-9][0-9][0-9]-*.patch
	n=$(git -C "$tmp/t" format-patch -o "$(cd "$out" && pwd)" "$base..HEAD" | wc -l)
	log "wrote $n patches against Linux $KVERSION ($KSRC) to $out"
	ls "$out"/[0-9][0-9][0-9][0-9]-*.patch
}

cmd=${1:-}
shift || true
case $cmd in
install) do_install "$@" ;;
remove) do_remove "$@" ;;
patches) do_patches "$@" ;;
*) usage ;;
esac
