#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Judge one guest run: count KUnit and kselftest cases, look for kernel splats.

Prints each failure, a per-run summary, and as its last line
`RESULT <passed> <failed>` for scripts/check.sh to add up.
"""
import argparse
import re
import sys

SPLATS = [
    r"BUG:", r"WARNING:", r"Oops", r"UBSAN:", r"kernel BUG at",
    r"general protection fault", r"Kernel panic", r"possible circular locking",
    r"possible recursive locking", r"inconsistent lock state",
    r"turning off the locking correctness validator", r"suspicious RCU usage",
    r"unreferenced object", r"rcu_(sched|preempt) self-detected stall",
    r"rcu: INFO: .* stall", r"RCU stall", r"Call Trace:", r"list_add corruption",
    r"list_del corruption", r"refcount_t: ", r"scheduling while atomic",
    r"sleeping function called from invalid context",
]
# Allowed taint bits: O (out-of-tree module), E (unsigned module), N (KUnit ran).
ALLOWED_TAINT = (1 << 12) | (1 << 13) | (1 << 18)
CASE = re.compile(r"^(\s*)(not ok|ok) (\d+)\s*(?:-\s*)?(.*)$")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", required=True)
    ap.add_argument("--console", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--qemu-rc", type=int, default=0)
    a = ap.parse_args()

    passed = failed = skipped = 0
    problems = []

    def fail(msg):
        nonlocal failed
        failed += 1
        problems.append(msg)

    try:
        lines = open(a.results, errors="replace").read().splitlines()
    except OSError:
        lines = []
    try:
        console = open(a.console, errors="replace").read().splitlines()
    except OSError:
        console = []

    done = False
    section = None
    body = []
    taint = None
    for raw in lines:
        line = raw.rstrip("\r")
        if line.startswith("@@BEGIN "):
            _, kind, name = line.split(" ", 2)
            section, body = (kind, name), []
            continue
        if line.startswith("@@END ") and section:
            m = re.search(r"rc=(\d+)", line)
            rc = int(m.group(1)) if m else 1
            kind, name = section
            section = None
            if kind in ("kunit", "selftest"):
                # KUnit cases are indented under their suite line; kselftest
                # cases are the top-level TAP lines.
                cases = [CASE.match(l) for l in body]
                cases = [c for c in cases if c and (len(c.group(1)) > 0) == (kind == "kunit")]
                nfail = 0
                for c in cases:
                    if "# SKIP" in c.group(4):
                        skipped += 1
                    elif c.group(2) == "ok":
                        passed += 1
                    else:
                        nfail += 1
                        fail(f"{kind} {name}: {c.group(4)}")
                if not cases:
                    fail(f"{kind} {name}: no test cases reported (rc={rc})")
                elif rc != 0 and nfail == 0:
                    fail(f"{kind} {name}: exited with rc={rc}")
            elif kind == "kmemleak":
                if any(l.strip() for l in body):
                    fail("kmemleak reported leaks:\n" + "\n".join(body[:40]))
            continue
        if section:
            body.append(line)
            continue
        if line.startswith("@@INSMOD "):
            if "rc=0" not in line:
                fail(f"insmod bus1.ko failed ({line})")
        elif line.startswith("@@TAINT "):
            taint = int(line.split()[1])
        elif line.startswith("@@DONE"):
            done = True

    if section:
        fail(f"{section[0]} {section[1]}: did not finish")
    if not done:
        why = "timed out" if a.qemu_rc == 124 else f"did not finish (qemu rc={a.qemu_rc})"
        fail(f"guest {why}; see {a.console}")
    if taint is not None and taint & ~ALLOWED_TAINT:
        fail(f"kernel tainted: {taint:#x}")
    splat_re = re.compile("|".join(SPLATS))
    for i, l in enumerate(console):
        if splat_re.search(l):
            ctx = "\n".join(console[i:i + 25])
            fail(f"kernel splat in {a.console} line {i + 1}:\n{ctx}")
            break

    for p in problems:
        print(f"FAIL [{a.variant}] {p}")
    extra = f", {skipped} skipped" if skipped else ""
    print(f"{a.variant} kernel: {passed} passed, {failed} failed{extra}")
    print(f"RESULT {passed} {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
