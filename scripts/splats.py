#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Find kernel splats in a console log; decode their stack traces.

  splats.py [--vmlinux F [--modules DIR] [--source DIR]] [--label L] console.log...

prints "FAIL [<label>] kernel splat in <log> line <n>: ..." for the first
splat of each log (with its stack trace through the kernel's
scripts/decode_stacktrace.sh when a vmlinux is given) and exits 1 if any
log has one. scripts/results.py and scripts/kunit.sh use it.
"""
import argparse
import os
import re
import subprocess
import sys

SPLATS = [
    r"BUG:", r"WARNING:", r"Oops", r"UBSAN:", r"kernel BUG at",
    r"general protection fault(?!\s+ip:)", r"Kernel panic", r"possible circular locking",
    r"possible recursive locking", r"inconsistent lock state",
    r"turning off the locking correctness validator", r"suspicious RCU usage",
    r"unreferenced object", r"suspected memory leaks", r"rcu_(sched|preempt) self-detected stall",
    r"rcu: INFO: .* stall", r"RCU stall", r"Call Trace:", r"list_add corruption",
    r"list_del corruption", r"refcount_t: ", r"scheduling while atomic",
    r"sleeping function called from invalid context", r"blocked for more than \d+ seconds",
    r"soft lockup", r"hard LOCKUP",
    # kmemleak turning itself off leaves the leak scan blind.
    r"kmemleak: Kernel memory leak detector disabled", r"kmemleak: Memory pool empty",
    r"kmemleak: Cannot allocate", r"kmemleak: Failed to create the scan thread",
    r"Kmemleak disabled without freeing",
]
SPLAT_RE = re.compile("|".join(SPLATS))


def find(lines):
    """Index of the first line that is a splat, or None."""
    for i, line in enumerate(lines):
        if SPLAT_RE.search(line):
            return i
    return None


def decode(text, vmlinux, modules=None, source=None):
    """The text through decode_stacktrace.sh (file:line for each frame), or
    None if that is not possible."""
    if not vmlinux or not os.path.isfile(vmlinux):
        return None
    src = source or os.path.dirname(os.path.realpath(vmlinux))
    script = os.path.join(src, "scripts", "decode_stacktrace.sh")
    if not os.path.isfile(script):
        # A build directory: its "source" link leads to the tree.
        src = os.path.realpath(os.path.join(os.path.dirname(vmlinux), "source"))
        script = os.path.join(src, "scripts", "decode_stacktrace.sh")
    if not os.path.isfile(script):
        return None
    env = dict(os.environ, LLVM=os.environ.get("LLVM", "-19"))
    args = ["bash", script, vmlinux, src] + ([modules] if modules else [])
    try:
        r = subprocess.run(args, input=text, capture_output=True, text=True, timeout=300, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout if r.returncode == 0 and r.stdout.strip() else None


def report(path, lines, vmlinux=None, modules=None, source=None, context=40):
    """The failure message for the first splat in lines, or None."""
    i = find(lines)
    if i is None:
        return None
    ctx = "\n".join(lines[i:i + context])
    decoded = decode(ctx + "\n", vmlinux, modules, source)
    if decoded:
        ctx = decoded.rstrip("\n") + "\n(stack decoded by scripts/decode_stacktrace.sh)"
    return f"kernel splat in {path} line {i + 1}:\n{ctx}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmlinux")
    ap.add_argument("--modules")
    ap.add_argument("--source")
    ap.add_argument("--label", default="kernel")
    ap.add_argument("logs", nargs="+")
    a = ap.parse_args()
    bad = 0
    for path in a.logs:
        try:
            lines = open(path, errors="replace").read().splitlines()
        except OSError as e:
            print(f"FAIL [{a.label}] cannot read {path}: {e}")
            bad += 1
            continue
        msg = report(path, [l.rstrip("\r") for l in lines], a.vmlinux, a.modules, a.source)
        if msg:
            print(f"FAIL [{a.label}] {msg}")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
