#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The example program of bus1(7), taken from the man page itself.

The C program under "Program source" in the EXAMPLES section of
Documentation/bus1/bus1.rst is the only copy of it: this script extracts it
and compiles it against include/uapi (the header `make install-headers`
installs) and the C library, nothing else, with every warning an error.

  man_example.py --source FILE          write the program to FILE
  man_example.py --build OUT [--static] compile it into OUT (cc, or $CC)

`make man` builds it on the host (scripts/man.sh); scripts/build-userspace.sh
builds it statically as build/guest/demos/bus1-man-example, so the guest runs
it with the other examples (`make run`, and `make check` as a case of
bus1_examples; scripts/manifest.py lists it there).
"""
import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(TOP, "Documentation", "bus1", "bus1.rst")
# The program's name among the demos (build/guest/demos, /tests/demos).
DEMO = "bus1-man-example"
CFLAGS = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror"]


def extract(page=PAGE):
    """The C source of the EXAMPLES program: the literal block after the
    "Program source" heading of the EXAMPLES section, dedented."""
    lines = open(page, encoding="utf-8").read().split("\n")

    def heading(i, title, ch):
        return (i + 1 < len(lines) and lines[i] == title
                and re.fullmatch(re.escape(ch) + "{%d,}" % len(title), lines[i + 1]) is not None)

    def fail(msg):
        raise SystemExit(f"{os.path.relpath(page, TOP)}: {msg}")

    try:
        ex = next(i for i in range(len(lines)) if heading(i, "EXAMPLES", "="))
    except StopIteration:
        fail("no EXAMPLES section")
    try:
        src = next(i for i in range(ex, len(lines)) if heading(i, "Program source", "-"))
    except StopIteration:
        fail("no \"Program source\" subsection in EXAMPLES")
    nxt = next((i for i in range(ex + 2, len(lines))
                if i + 1 < len(lines) and lines[i] and not lines[i][0].isspace()
                and re.fullmatch("=+", lines[i + 1]) and len(lines[i + 1]) >= len(lines[i])), len(lines))
    if src > nxt:
        fail("\"Program source\" is not inside EXAMPLES")
    i = src + 2
    while i < nxt and not lines[i].rstrip().endswith("::"):
        if lines[i].strip():
            fail("\"Program source\" must start with a literal block (::)")
        i += 1
    i += 1
    block = []
    while i < nxt and (not lines[i].strip() or lines[i][0].isspace()):
        block.append(lines[i])
        i += 1
    while block and not block[-1].strip():
        block.pop()
    while block and not block[0].strip():
        block.pop(0)
    if not block:
        fail("the literal block under \"Program source\" is empty")
    indent = min(len(l) - len(l.lstrip()) for l in block if l.strip())
    text = "\n".join(l[indent:] for l in block) + "\n"
    if not re.search(r"^int main\(", text, re.M) or "#include <linux/bus1.h>" not in text:
        fail("the EXAMPLES program must include <linux/bus1.h> and define main()")
    return text


def build(out, static=False):
    """Compiles the program into `out`; raises SystemExit on failure."""
    cc = shlex.split(os.environ.get("CC", "cc"))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        c = os.path.join(tmp, "bus1-man-example.c")
        with open(c, "w") as f:
            f.write(extract())
        cmd = cc + CFLAGS + ["-I", os.path.join(TOP, "include", "uapi"), "-o", out, c]
        if static:
            cmd.append("-static")
        r = subprocess.run(cmd)
        if r.returncode != 0:
            raise SystemExit(f"bus1(7) EXAMPLES: the program does not compile: {' '.join(cmd)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--source", metavar="FILE")
    g.add_argument("--build", metavar="OUT")
    ap.add_argument("--static", action="store_true")
    a = ap.parse_args()
    if a.source:
        with open(a.source, "w") as f:
            f.write(extract())
    else:
        build(a.build, a.static)
    return 0


if __name__ == "__main__":
    sys.exit(main())
