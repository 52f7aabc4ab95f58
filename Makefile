# SPDX-License-Identifier: GPL-2.0
#
# bus1: capability-based IPC for Linux, as a Rust-for-Linux kernel module.
#
#   make                 build bus1.ko against KDIR (your own Rust-enabled kernel build)
#   make run             provision, build, boot a guest with bus1 loaded, run the demos
#   make run CMD='...'   ... and run CMD in the guest instead
#   make check           provision, build, run every test on the debug and the release kernel
#   make vm              interactive guest shell (release kernel)
#   make stress          bus1_stress on the debug kernel for DURATION seconds (default 300), PROCS (4)
#   make fuzz            bus1_fuzz on the debug kernel, ITERS per thread (default 100000) or FUZZ_SECONDS,
#                        PROCS (2), THREADS (2), SEED; PROCS=1 THREADS=1 SEED=<n> replays a run exactly
#   make limits          the limits and scale report (release kernel), see Documentation/bus1/hardening.rst
#   make clippy          build the module with CLIPPY=1 (release kernel), fail on any warning
#   make kunit           build bus1 into a kernel in tree, run its KUnit suites with kunit.py
#   make intree KSRC=... place bus1 into a kernel source tree as ipc/bus1 (symlinks)
#   make intree-remove KSRC=...  take it out again
#   make patches         git format-patch series against the provisioned tree, in build/patches
#   make man             the bus1(7) man page from Documentation/bus1/bus1.rst, in build/man/bus1.7
#   make bench           bus1 vs AF_UNIX/pipe/binder/futex in one release guest -> bench/results/
#   make clean           remove build products from this tree
#
# Kbuild reads ./Kbuild; this file is only the front end.

SHELL := /bin/bash
TOP := $(CURDIR)
LLVM ?= -19
RUSTC ?= /usr/bin/rustc
CLIPPY_DRIVER ?= /usr/bin/clippy-driver
VARIANT ?= release
TIMEOUT ?=

export BUS1_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/bus1

.PHONY: all modules check run vm clean provision kernels help intree intree-remove patches kunit clippy stress fuzz man limits bench

all: modules

# Out-of-tree module build against a kernel you built yourself. The checks
# run before any compile so a wrong KDIR fails in one line.
modules:
	@test -n "$(KDIR)" || { echo "bus1: error: set KDIR=<Rust-enabled kernel build dir> (or use make run / make check)"; exit 1; }
	@scripts/check-kdir.sh "$(KDIR)" "$(RUSTC)"
	$(MAKE) -C "$(KDIR)" M="$(TOP)" LLVM=$(LLVM) RUSTC=$(RUSTC) CLIPPY_DRIVER=$(CLIPPY_DRIVER) CONFIG_BUS1=m modules

provision:
	@scripts/provision.sh

kernels: provision
	@scripts/build-kernel.sh release >/dev/null
	@scripts/build-kernel.sh debug >/dev/null

check:
	@scripts/check.sh

run:
	@scripts/vm.sh run $(VARIANT) "$(CMD)"

vm:
	@scripts/vm.sh shell $(VARIANT)

intree:
	@scripts/intree.sh install "$(KSRC)"

intree-remove:
	@scripts/intree.sh remove "$(KSRC)"

patches:
	@scripts/intree.sh patches "$(TOP)/build/patches" $(if $(KSRC),"$(KSRC)")

kunit:
	@scripts/kunit.sh

clippy:
	@scripts/clippy.sh

# Long hardening runs; the kernel log is checked for splats and leaks as in make check.
DURATION ?= 300
PROCS ?=
THREADS ?=
ITERS ?= 100000
SEED ?=
FUZZ_SECONDS ?=
stress:
	@BUS1_VM_TIMEOUT=$$(( $(DURATION) + 900 )) scripts/vm.sh check $(or $(HVARIANT),debug) \
		'BUS1_STRESS_SECONDS=$(DURATION) BUS1_STRESS_PROCS=$(or $(PROCS),4) BUS1_STRESS_SEED=$(SEED) /tests/selftests/bus1_stress'

fuzz:
	@BUS1_VM_TIMEOUT=$$(( $(or $(FUZZ_SECONDS),0) + $(ITERS) / 20 + 900 )) scripts/vm.sh check $(or $(HVARIANT),debug) \
		'BUS1_FUZZ_ITERS=$(ITERS) BUS1_FUZZ_SECONDS=$(FUZZ_SECONDS) BUS1_FUZZ_SEED=$(SEED) BUS1_FUZZ_PROCS=$(PROCS) BUS1_FUZZ_THREADS=$(THREADS) /tests/selftests/bus1_fuzz'

man:
	@scripts/man.sh

limits:
	@scripts/vm.sh run release '/tests/selftests/bus1_limits'

# BENCH_ARGS is passed to bus1-bench, e.g. BENCH_ARGS='--reps 3 --only rtt,cpu'.
bench:
	@scripts/bench.sh $(BENCH_ARGS)

clean:
	rm -rf .tmp_versions Module.symvers modules.order
	find . \( -name '*.o' -o -name '*.ko' -o -name '*.mod' -o -name '*.mod.c' -o -name '*.cmd' \
		-o -name '*.rmeta' -o -name '*.d' -o -name 'modules.order' -o -name '.*.cmd' \) \
		-not -path './.git/*' -not -path './tools/bus1/target/*' -delete
	rm -rf build
