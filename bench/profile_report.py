#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The analysis of `make profile` (scripts/profile.sh): kernel instructions
per iteration of each case of bench/profile-loop.c, in total and per
function.

Inputs:
- the plugin's output (scripts/tcg-insns.c): per marker "mark K", then
  "pc executions insns" per kernel translation block run since the marker
  before;
- the guest output: "PROFILE-KSYM <kallsyms line>" for the kernel's _text
  and every bus1 symbol, "PROFILE-MODULE <the bus1 line of /proc/modules>",
  "PROFILE-CASE <case> <size> <n> <mark>" per case (its n measured
  iterations end at marker <mark> and begin at the one before it),
  "PROFILE-DONE <markers>";
- the kernel's System.map.

A translation block counts for the function its first instruction is in:
the nearest text symbol at or below it (System.map moved by where the guest
reports _text, so KASLR does not matter; bus1's own symbols from the guest's
kallsyms, within the module's range in /proc/modules). Rust symbols are
demangled with llvm-cxxfilt and their paths shortened to the last two
components.
"""
import argparse
import bisect
import collections
import os
import re
import shutil
import subprocess
import sys

TEXT_TYPES = set("tTwW")
UNKNOWN = "[outside kernel and bus1 text]"


class ProfileError(Exception):
    pass


def parse_guest(lines):
    """The lines of the guest output that begin with PROFILE- (the others,
    kernel messages and the guest's own, are ignored)."""
    g = {"ksyms": [], "module": None, "cases": [], "done": None, "info": []}
    for line in lines:
        if not line.startswith("PROFILE-"):
            continue
        kind, _, rest = line.rstrip("\r\n").partition(" ")
        f = rest.split()
        if kind == "PROFILE-KSYM" and len(f) >= 3:
            g["ksyms"].append((int(f[0], 16), f[1], f[2], len(f) > 3 and f[3] == "[bus1]"))
        elif kind == "PROFILE-MODULE" and len(f) >= 6 and f[0] == "bus1":
            g["module"] = (int(f[5], 16), int(f[1]))
        elif kind == "PROFILE-CASE" and len(f) == 4:
            g["cases"].append({"case": f[0], "size": int(f[1]), "n": int(f[2]), "mark": int(f[3])})
        elif kind == "PROFILE-DONE" and len(f) == 1:
            g["done"] = int(f[0])
        elif kind == "PROFILE-INFO":
            g["info"].append(rest)
        elif kind == "PROFILE-ERROR":
            raise ProfileError("the guest program failed: " + rest)
    return g


def parse_insns(lines):
    """The plugin's output: {mark: [(pc, executions, insns), ...]}."""
    marks, cur = {}, None
    for no, line in enumerate(lines, 1):
        f = line.split()
        if not f:
            continue
        if f[0] == "mark" and len(f) == 2:
            cur = marks.setdefault(int(f[1]), [])
        elif len(f) == 3 and cur is not None:
            cur.append((int(f[0], 16), int(f[1]), int(f[2])))
        else:
            raise ProfileError(f"plugin output line {no}: cannot parse {line.strip()!r}")
    return marks


class Symbols:
    """Text symbols of the kernel (System.map, moved to where the guest
    has _text) and of bus1 (the guest's kallsyms)."""

    def __init__(self, system_map_lines, guest):
        kernel, text, etext = [], None, None
        for line in system_map_lines:
            f = line.split()
            if len(f) < 3:
                continue
            addr = int(f[0], 16)
            if f[2] == "_text":
                text = addr
            elif f[2] == "_etext":
                etext = addr
            if f[1] in TEXT_TYPES:
                kernel.append((addr, f[2]))
        if text is None or etext is None:
            raise ProfileError("System.map has no _text or _etext")
        guest_text = [a for a, _, n, mod in guest["ksyms"] if n == "_text" and not mod]
        if not guest_text:
            raise ProfileError("the guest output has no PROFILE-KSYM line for _text")
        off = guest_text[0] - text
        self.kernel_range = (text + off, etext + off)
        if guest["module"] is None:
            raise ProfileError("the guest output has no PROFILE-MODULE line (bus1 not loaded?)")
        base, size = guest["module"]
        self.module_range = (base, base + size)
        module = [(a, n) for a, t, n, mod in guest["ksyms"] if mod and t in TEXT_TYPES]
        if not module:
            raise ProfileError("the guest output has no bus1 text symbols")
        syms = {}
        # Aliases (one address, several names): the first listed wins.
        for a, n in kernel:
            syms.setdefault(a + off, (n, False))
        for a, n in module:
            syms.setdefault(a, (n, True))
        self.addrs = sorted(syms)
        self.names = [syms[a] for a in self.addrs]

    def lookup(self, pc):
        """(name, in_bus1) of the function holding pc."""
        lo, hi = self.kernel_range
        mlo, mhi = self.module_range
        if not (lo <= pc < hi or mlo <= pc < mhi):
            return UNKNOWN, False
        i = bisect.bisect_right(self.addrs, pc) - 1
        if i < 0:
            return UNKNOWN, False
        name, mod = self.names[i]
        # The nearest symbol must be on the same side (kernel or module).
        if mod != (mlo <= pc < mhi):
            return UNKNOWN, False
        return name, mod


def attribute(blocks, syms):
    """Instructions per (function, in_bus1) of one segment."""
    c = collections.Counter()
    for pc, n, insns in blocks:
        c[syms.lookup(pc)] += n * insns
    return c


def cxxfilt():
    """The llvm-cxxfilt of the toolchain (LLVM_SUFFIX, as scripts/lib.sh), or None."""
    for cand in ("llvm-cxxfilt" + os.environ.get("LLVM_SUFFIX", "-19"), "llvm-cxxfilt"):
        path = shutil.which(cand) or shutil.which(cand, path="/usr/lib/llvm-19/bin")
        if path:
            return path
    return None


PATH = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]*::)+[A-Za-z_][A-Za-z0-9_]*")


def shorten(name):
    """A demangled name with every path cut to its last two components:
    <bus1_main::peer::Peer as bus1_main::ext::miscdevice::MiscDevice>::ioctl
    becomes <peer::Peer as miscdevice::MiscDevice>::ioctl."""
    return PATH.sub(lambda m: "::".join(m.group(0).split("::")[-2:]), name)


def demangle(names, tool=None):
    """{mangled: readable} for Rust (v0 and legacy) and C++ symbols; C names
    stay as they are. A suffix after the first '.' (.llvm.N, .cold) is kept."""
    names = sorted(set(names))
    heads = [n.split(".", 1)[0] for n in names]
    tool = tool or cxxfilt()
    if tool is None:
        raise ProfileError("llvm-cxxfilt not found (make provision installs LLVM 19)")
    out = subprocess.run([tool], input="\n".join(heads) + "\n", capture_output=True, text=True, check=True)
    dem = out.stdout.splitlines()
    if len(dem) != len(heads):
        raise ProfileError("llvm-cxxfilt returned %d names for %d" % (len(dem), len(heads)))
    res = {}
    for n, h, d in zip(names, heads, dem):
        s = shorten(d) if d != h else h
        res[n] = s + n[len(h):]
    return res


TITLES = {
    "bus1": "SEND a->b, RECV at b, read the payload, SLICE_RELEASE at b (two peers)",
    "bus1_tx": "one TRANSACT (release the last slice, send to itself, receive), read the payload",
    "unix": "AF_UNIX SOCK_SEQPACKET send, recv (MSG_DONTWAIT), read the payload",
}


def analyse(guest, marks, syms):
    """Per case: total, bus1.ko part and per-function instructions per iteration."""
    if guest["done"] is None:
        raise ProfileError("the guest program did not finish (no PROFILE-DONE)")
    if not guest["cases"]:
        raise ProfileError("the guest output lists no case")
    have = max(marks) if marks else 0
    if have != guest["done"] or sorted(marks) != list(range(1, have + 1)):
        raise ProfileError(f"the guest executed {guest['done']} markers, the plugin saw {have}")
    res = []
    for c in guest["cases"]:
        if c["mark"] - 1 not in marks or c["mark"] not in marks:
            raise ProfileError(f"case {c['case']}:{c['size']}: no marker {c['mark']} or the one before it")
        per = attribute(marks[c["mark"]], syms)
        n = c["n"]
        total = sum(per.values())
        res.append(dict(c, total=total / n, bus1=sum(v for (_, m), v in per.items() if m) / n,
                        funcs={k: v / n for k, v in per.items()}))
    return res


def render(results, top, names, info=()):
    unix = {r["size"]: r["total"] for r in results if r["case"] == "unix"}
    out = ["# Kernel instructions per message", ""]
    out += [
        "Written by `make profile` (`scripts/profile.sh`; method in `bench/README.md`): the kernel",
        "instructions executed per iteration of one thread's loop, counted by a QEMU TCG plugin in a",
        "release guest with one vCPU under `-icount`, so they do not depend on the host or its load",
        "(repeated runs agree to 0.1 instruction per iteration). Each repetition of a `rep` string",
        "instruction counts as one: a 1 KiB user copy (`rep_movs_alternative`) is about 1030.",
        "",
    ]
    out += [f"- {i}" for i in info]
    if info:
        out.append("")
    out += ["| case | size (B) | iterations | kernel insns / iteration | in bus1.ko | ratio to unix |",
            "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        ratio = f"{r['total'] / unix[r['size']]:.2f}x" if unix.get(r["size"]) else "-"
        out.append(f"| {r['case']} | {r['size']} | {r['n']} | {r['total']:.0f} | {r['bus1']:.0f} | {ratio} |")
    for r in results:
        out += ["", f"## {r['case']}, {r['size']} B: {TITLES.get(r['case'], r['case'])}", "",
                f"{r['total']:.1f} instructions per iteration; the top {top} functions:", "",
                "| insns / iteration | share | function |", "|---:|---:|---|"]
        funcs = sorted(r["funcs"].items(), key=lambda kv: (-kv[1], kv[0][0]))
        for (name, mod), v in funcs[:top]:
            label = names.get(name, name) + (" [bus1]" if mod else "")
            label = label.replace("|", "\\|")
            out.append(f"| {v:.1f} | {100 * v / r['total']:.1f}% | `{label}` |")
        rest = sum(v for _, v in funcs[top:])
        if rest:
            out.append(f"| {rest:.1f} | {100 * rest / r['total']:.1f}% | the other {len(funcs) - top} functions |")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--guest-log", required=True)
    ap.add_argument("--insns", required=True, help="the plugin's output")
    ap.add_argument("--system-map", required=True)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", help="also write the report here")
    a = ap.parse_args(argv)
    try:
        with open(a.guest_log, errors="replace") as f:
            guest = parse_guest(f)
        with open(a.insns) as f:
            marks = parse_insns(f)
        with open(a.system_map) as f:
            syms = Symbols(f, guest)
        results = analyse(guest, marks, syms)
        names = demangle({n for r in results for n, _ in r["funcs"]})
    except (OSError, ProfileError, subprocess.CalledProcessError) as e:
        print(f"profile_report.py: {e}", file=sys.stderr)
        return 1
    text = render(results, a.top, names, guest["info"])
    sys.stdout.write(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
