#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make kernels`: provision, then build (or reuse) the release and the debug
# guest kernel, as numbered phases with an ETA and a heartbeat while a kernel
# builds (scripts/lib.sh). Prints the two build directories on stdout.
. "$(dirname "$0")/lib.sh"

kernel() { "$BUS1_TOP/scripts/build-kernel.sh" "$1"; }

kernels_phases() {
	phase "provision" "$BUS1_TOP/scripts/provision.sh"
	for v in release debug; do
		phase "$v kernel" kernel "$v"
	done
}
run_phases kernels kernels_phases
