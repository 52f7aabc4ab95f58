# SPDX-License-Identifier: GPL-2.0
#
# bus1: capability-based IPC for Linux, as a Rust-for-Linux kernel module.
#
#   make [modules]       build bus1.ko against KDIR (default: the running kernel's build dir)
#   make modules_install install bus1.ko into /lib/modules/<version>/updates (INSTALL_MOD_PATH=, and depmod)
#   make install-headers install include/uapi/linux/bus1.h into $(DESTDIR)$(INCLUDEDIR)/linux and bus1.pc
#   make install-man     install the bus1(7) man page into $(DESTDIR)$(MANDIR)/man7
#   make install-modules-load  install a modules-load.d entry that loads bus1 at boot
#   make install         modules_install, install-headers and install-man
#   make packaging-test  check the install targets, depmod, make help, dkms.conf and cargo package (host)
#   make help            this list
#   make provision       install the toolchain and fetch the kernel source (Debian 12)
#   make kernels         provision and build the release and debug guest kernels
#   make run             provision, build, boot a guest with bus1 loaded, run the demos
#   make run CMD='...'   ... and run CMD in the guest instead
#   make check           provision, build, run every test on the debug and the release kernel
#   make vm              interactive guest shell (release kernel)
#   make vng             the kselftests and KUnit suites under virtme-ng (vng --run --disable-kvm), VARIANT (release)
#   make stress          bus1_stress on the debug kernel for DURATION seconds (default 300), PROCS (4)
#   make fuzz            bus1_fuzz on the debug kernel, ITERS per thread (default 100000) or FUZZ_SECONDS,
#                        PROCS (2), THREADS (2), SEED, FIRST (0: the first process's number);
#                        PROCS=1 THREADS=1 SEED=<n> [FIRST=<process>] replays a run's process exactly
#   make boot-soak       boot the debug kernel BOOTS times (default 20) as the test guests do; fail on any splat
#   make limits          the limits and scale report (release kernel), see Documentation/bus1/hardening.rst
#   make clippy          build the module with CLIPPY=1 (release kernel), fail on any warning
#   make kunit           build bus1 into a kernel in tree, run its KUnit suites with kunit.py
#   make intree KSRC=... place bus1 into a kernel source tree as ipc/bus1 (symlinks)
#   make intree-remove KSRC=...  take it out again
#   make patches         git format-patch series against the provisioned tree, in build/patches
#   make man             the bus1(7) man page from Documentation/bus1/bus1.rst, in build/man/bus1.7
#   make bench           bus1 vs AF_UNIX/pipe/binder/futex in a release guest, then the round trips
#                        against Rust Binder in a second (kernel variant rbinder) -> bench/results/
#   make bench-ab        the module of BENCH_BASE (main) vs this tree's, loaded in turn in one release guest
#   make profile         kernel instructions per small message, bus1 vs AF_UNIX, counted exactly under TCG
#                        (PROFILE_ARGS, e.g. '--sizes 0 --top 40') -> bench/results/profile.md
#   make clean           remove build products from this tree
#
# Variables: KDIR (kernel build dir), LLVM (1 or a suffix like -19), RUSTC (the
# rustc the kernel was built with), MO (output dir for the module's objects),
# INSTALL_MOD_PATH, DESTDIR, PREFIX (/usr), INCLUDEDIR, MANDIR, MODULESLOADDIR.
# Kbuild reads ./Kbuild; this file is only the front end.

SHELL := /bin/bash
TOP := $(CURDIR)
KDIR ?= /lib/modules/$(shell uname -r)/build
# The Clang the kernel was built with (CONFIG_CLANG_VERSION), by its version
# suffix when installed so (Debian's clang-22), otherwise the unsuffixed LLVM;
# the provisioned rustc (/usr/bin/rustc) when present, otherwise the one on
# PATH (pass the kernel's own).
KCLANG_MAJOR := $(shell sed -n 's/^CONFIG_CLANG_VERSION=\([0-9]*\)[0-9]\{4\}$$/\1/p' "$(KDIR)/.config" 2>/dev/null)
LLVM ?= $(if $(and $(KCLANG_MAJOR),$(shell command -v clang-$(KCLANG_MAJOR))),-$(KCLANG_MAJOR),1)
RUSTC ?= $(if $(wildcard /usr/bin/rustc),/usr/bin/rustc,rustc)
CLIPPY_DRIVER ?= $(if $(wildcard /usr/bin/clippy-driver),/usr/bin/clippy-driver,clippy-driver)
PREFIX ?= /usr
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(PREFIX)/share/pkgconfig
MODULESLOADDIR ?= $(PREFIX)/lib/modules-load.d
INSTALL_MOD_DIR ?= updates
VERSION := 0.1.0
KBUILD_ARGS = -C "$(KDIR)" M="$(TOP)" $(if $(MO),MO="$(MO)") LLVM=$(LLVM) RUSTC=$(RUSTC) \
	CLIPPY_DRIVER=$(CLIPPY_DRIVER) CONFIG_BUS1=m
VARIANT ?= release
TIMEOUT ?=

export BUS1_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/bus1

.PHONY: all modules modules_install install install-headers install-man install-modules-load packaging-test \
	check run vm vng clean \
	provision kernels help intree intree-remove patches kunit clippy stress fuzz man limits bench bench-ab profile boot-soak

all: modules

# Out-of-tree module build against a kernel you built yourself. The checks
# run before any compile so a wrong KDIR fails in one line.
modules:
	@scripts/check-kdir.sh "$(KDIR)" "$(RUSTC)"
	$(MAKE) $(KBUILD_ARGS) modules

# Kbuild installs into $(INSTALL_MOD_PATH)/lib/modules/<version>/$(INSTALL_MOD_DIR)
# and runs depmod there.
modules_install: modules
	$(MAKE) $(KBUILD_ARGS) INSTALL_MOD_DIR=$(INSTALL_MOD_DIR) modules_install

install-headers:
	install -D -m 0644 include/uapi/linux/bus1.h "$(DESTDIR)$(INCLUDEDIR)/linux/bus1.h"
	install -d "$(DESTDIR)$(PKGCONFIGDIR)"
	printf '%s\n' 'prefix=$(PREFIX)' 'includedir=$(INCLUDEDIR)' '' 'Name: bus1' \
		'Description: bus1 capability-based IPC: user-space ABI header <linux/bus1.h>' \
		'Version: $(VERSION)' 'Cflags: -I$${includedir}' > "$(DESTDIR)$(PKGCONFIGDIR)/bus1.pc"

install-man: man
	install -D -m 0644 build/man/bus1.7 "$(DESTDIR)$(MANDIR)/man7/bus1.7"

# bus1 uses a dynamic misc minor, so opening /dev/bus1 cannot load it on
# demand (see Documentation/bus1/install.rst): load it at boot instead.
install-modules-load:
	install -d "$(DESTDIR)$(MODULESLOADDIR)"
	echo bus1 > "$(DESTDIR)$(MODULESLOADDIR)/bus1.conf"

install: modules_install install-headers install-man

packaging-test:
	@scripts/packaging-test.sh

help:
	@sed -n 's/^#   make /  make /p' $(firstword $(MAKEFILE_LIST))

provision:
	@scripts/provision.sh

kernels:
	@scripts/kernels.sh >/dev/null

check:
	@scripts/check.sh

run:
	@scripts/vm.sh run $(VARIANT) "$(CMD)"

vm:
	@scripts/vm.sh shell $(VARIANT)

vng:
	@scripts/vng.sh $(VARIANT)

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
# The guest's timeout: the test's harness timeout (bus1_stress.c, bus1_fuzz.c) plus
# scripts/manifest.py's GUEST_BASE for boot, KUnit and the leak scan.
DURATION ?= 300
PROCS ?=
THREADS ?=
ITERS ?= 100000
SEED ?=
FIRST ?=
FUZZ_SECONDS ?=
stress:
	@BUS1_VM_TIMEOUT=$$(( $(DURATION) + 60 + $$(python3 scripts/manifest.py --guest-base) )) scripts/vm.sh check $(or $(HVARIANT),debug) \
		'BUS1_STRESS_SECONDS=$(DURATION) BUS1_STRESS_PROCS=$(or $(PROCS),4) BUS1_STRESS_SEED=$(SEED) /tests/selftests/bus1_stress'

fuzz:
	@BUS1_VM_TIMEOUT=$$(( $(or $(FUZZ_SECONDS),0) + $(ITERS) / 30 + 60 + $$(python3 scripts/manifest.py --guest-base) )) scripts/vm.sh check $(or $(HVARIANT),debug) \
		'BUS1_FUZZ_ITERS=$(ITERS) BUS1_FUZZ_SECONDS=$(FUZZ_SECONDS) BUS1_FUZZ_SEED=$(SEED) BUS1_FUZZ_PROCS=$(PROCS) BUS1_FUZZ_THREADS=$(THREADS) BUS1_FUZZ_FIRST=$(FIRST) /tests/selftests/bus1_fuzz'

boot-soak:
	@scripts/boot-soak.sh

man:
	@scripts/man.sh

limits:
	@scripts/vm.sh run release '/tests/selftests/bus1_limits'

# BENCH_ARGS is passed to bus1-bench, e.g. BENCH_ARGS='--reps 3 --only rtt,cpu'.
bench:
	@scripts/bench.sh $(BENCH_ARGS)

# The module of BENCH_BASE (a git revision) against this tree's, in one boot.
BENCH_BASE ?= main
bench-ab:
	@scripts/bench-ab.sh $(BENCH_BASE) $(BENCH_ARGS)

# PROFILE_ARGS is passed to scripts/profile.sh: -n N, -w WARMUP, --sizes 0,1024, --top K.
profile:
	@scripts/profile.sh $(PROFILE_ARGS)

clean:
	rm -rf .tmp_versions Module.symvers modules.order
	find . \( -name '*.o' -o -name '*.ko' -o -name '*.mod' -o -name '*.mod.c' -o -name '*.cmd' \
		-o -name '*.rmeta' -o -name '*.d' -o -name 'modules.order' -o -name '.*.cmd' \) \
		-not -path './.git/*' -not -path './tools/bus1/target/*' -delete
	rm -rf build
