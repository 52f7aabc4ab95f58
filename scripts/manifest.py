#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The manifest of the tests `make check` expects: scripts/tests.manifest.

The manifest lists every KUnit suite with its cases, every kselftest binary
with its cases and its timeout, and every Rust TAP test program with its
cases, plus which cases may report SKIP on which variant. scripts/results.py
and scripts/kunit.sh fail a run on anything the manifest lists that did not
report, and on anything that reported that it does not list.

The case lists and timeouts are generated from the sources, so the manifest
cannot drift from them unnoticed:

  manifest.py --check     the manifest matches the sources (make check runs it)
  manifest.py --update    rewrite the manifest and the kselftest settings file
                          from the sources, keeping the skip= annotations
  manifest.py --timeouts  "<program> <seconds>" per guest program (vm.sh)
  manifest.py --guest-timeout
                          the guest's overall timeout in seconds (vm.sh)
  manifest.py --kselftests
                          "<program> <seconds>" per kselftest binary (not
                          the runs under a reloaded module), and
                          last "guest <seconds>" for a guest that runs only
                          them (make vng, scripts/vng.sh)
  manifest.py --excludes VARIANT
                          "<program> -T <test> ..." per run under a reloaded
                          module that leaves cases out on VARIANT (notrun=;
                          the guest passes the arguments to the harness)
  manifest.py --guest-base
                          its part for boot, KUnit and the leak scan (make
                          stress and make fuzz add their run's timeout)

Sources:
  KUnit      #[kunit_tests(suite)] modules in bus1/*.rs and rust/*.rs, one
             case per #[test] fn
  kselftest  TEST_GEN_PROGS of tools/testing/selftests/bus1/Makefile, one
             case per TEST()/TEST_F()/TEST_F_TIMEOUT() in <program>.c, named
             as the harness names them (fixture.test, global.test for TEST)
  examples   tools/bus1/examples/src/bin/*.rs and the EXAMPLES program of
             bus1(7) (scripts/man_example.py), one case each of bus1_examples
  Rust TAP   the programs scripts/build-userspace.sh installs
             ("<cargo test target>) dst=<program>"), one case per
             ("name", function) entry of tap::main(&[...]) in
             tools/bus1/*/tests/<target>.rs
  reloads    the calls 'reload <name> "<param>=<value> ..." <program>...' of
             scripts/guest-init.sh: the guest reloads bus1.ko with those
             module parameters and runs each kselftest <program> again, as
             the program <program>@<name> with the same cases and timeout

Timeouts: a kselftest binary gets the sum of its cases' declared harness
timeouts (30 s, the harness default, unless TEST_F_TIMEOUT says otherwise;
in its expression, env_int("NAME", default) counts as the default and a
numeric #define of the file as its value) plus
PROGRAM_SLACK; a Rust TAP program gets RUST_CASE_TIMEOUT per case plus the
slack. tools/testing/selftests/bus1/settings (the kselftest runner's
per-directory file) holds the largest kselftest timeout. The guest timeout is
GUEST_BASE plus the sum over every program the guest runs.
"""
import argparse
import os
import re
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = os.path.join(TOP, "scripts", "tests.manifest")
SELFTESTS = os.path.join(TOP, "tools", "testing", "selftests", "bus1")
SETTINGS = os.path.join(SELFTESTS, "settings")
VARIANTS = ("debug", "release", "kunit")

HARNESS_DEFAULT_TIMEOUT = 30  # TEST_TIMEOUT_DEFAULT of kselftest_harness.h
# Each case's timeout is its own: at least five times the longest it took on
# the debug kernel under TCG on a loaded host (Documentation/bus1/testing.rst,
# "Timeouts"). A Rust TAP case gets the harness default; no case took 2 s.
RUST_CASE_TIMEOUT = 30
# Per program on top of its cases: the program's start and exit, and the
# kselftest harness forking each case (well under a second).
PROGRAM_SLACK = 30
# Boot, insmod with the KUnit suites, the final kmemleak scans: about 60 s on a
# quiet host, 270 s on a loaded one (33 s, 197 s and 38 s); five times that.
GUEST_BASE = 1350
# Programs the guest runs, but not through the manifest's timeouts.
NOT_RUN = {"bus1_limits"}


class Program:
    def __init__(self, kind, name):
        self.kind = kind
        self.name = name
        self.cases = []      # names, in source order
        self.skip = {}       # case -> set of variants where SKIP is allowed
        self.notrun = {}     # case -> set of variants that leave it out (reload runs only)
        self.timeout = None  # seconds (selftest, userspace)

    def key(self):
        return (self.kind, self.name)


def _strip_c_comments(text):
    return re.sub(r"/\*.*?\*/|//[^\n]*", lambda m: re.sub(r"[^\n]", " ", m.group(0)), text, flags=re.S)


def _eval_timeout(expr, where, defines=None):
    e = re.sub(r'env_int\(\s*"[A-Z0-9_]+"\s*,\s*(\d+)\s*\)', r"(\1)", expr)
    for name, value in (defines or {}).items():
        e = re.sub(rf"\b{name}\b", f"({value})", e)
    if not re.fullmatch(r"[0-9+*/() \t-]+", e):
        raise SystemExit(f"{where}: cannot evaluate the timeout expression '{expr}' "
                         "(literals, numeric #defines, + - * / and env_int(\"NAME\", default) only)")
    return int(eval(e, {"__builtins__": {}}))  # digits and operators only


def _split_args(s):
    """Split a macro argument list at top-level commas."""
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        depth += ch in "(["
        depth -= ch in ")]"
        cur += ch
    out.append(cur.strip())
    return out


def kunit_suites():
    progs = []
    for d in ("bus1", "rust"):
        for fn in sorted(os.listdir(os.path.join(TOP, d))):
            if not fn.endswith(".rs"):
                continue
            path = os.path.join(d, fn)
            text = open(os.path.join(TOP, path)).read()
            marks = list(re.finditer(r"#\[kunit_tests\((\w+)\)\]", text))
            for i, m in enumerate(marks):
                end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
                p = Program("kunit", m.group(1))
                body = text[m.end():end]
                p.cases = re.findall(r"#\[test\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?fn\s+(\w+)", body)
                if not p.cases:
                    raise SystemExit(f"{path}: suite {p.name} has no #[test] fn")
                progs.append(p)
    return progs


def selftest_programs():
    mk = open(os.path.join(SELFTESTS, "Makefile")).read()
    m = re.search(r"^TEST_GEN_PROGS\s*:?=\s*(.*)$", mk, re.M)
    if not m:
        raise SystemExit("tools/testing/selftests/bus1/Makefile: no TEST_GEN_PROGS")
    progs = []
    for name in m.group(1).split():
        path = f"tools/testing/selftests/bus1/{name}.c"
        text = _strip_c_comments(open(os.path.join(TOP, path)).read())
        for bad in ("FIXTURE_VARIANT_ADD", "XFAIL_ADD"):
            if re.search(rf"^\s*{bad}\(", text, re.M):
                raise SystemExit(f"{path}: {bad} is not supported by scripts/manifest.py; extend it")
        p = Program("selftest", name)
        defines = dict(re.findall(r"^#define\s+([A-Z][A-Z0-9_]*)\s+([0-9][0-9 +*/()]*?)\s*$", text, re.M))
        total = 0
        for mm in re.finditer(r"^\s*(TEST|TEST_SIGNAL|TEST_F|TEST_F_SIGNAL|TEST_F_TIMEOUT)\((.*?)\)\s*(?:\{|$)",
                              text, re.M | re.S):
            macro, args = mm.group(1), _split_args(mm.group(2))
            line = text.count("\n", 0, mm.start()) + 1
            if macro in ("TEST", "TEST_SIGNAL"):
                case, tmo = f"global.{args[0]}", HARNESS_DEFAULT_TIMEOUT
            elif macro == "TEST_F_TIMEOUT":
                case, tmo = f"{args[0]}.{args[1]}", _eval_timeout(args[2], f"{path}:{line}", defines)
            else:
                case, tmo = f"{args[0]}.{args[1]}", HARNESS_DEFAULT_TIMEOUT
            p.cases.append(case)
            total += tmo
        if not p.cases:
            raise SystemExit(f"{path}: no TEST()/TEST_F() found")
        p.timeout = total + PROGRAM_SLACK
        progs.append(p)
    return progs


def userspace_programs():
    sh = open(os.path.join(TOP, "scripts", "build-userspace.sh")).read()
    progs = []
    for target, name in re.findall(r"^\s*(\w+)\)\s*dst=(\w+)\s*;;", sh, re.M):
        paths = [f"tools/bus1/{c}/tests/{target}.rs" for c in sorted(os.listdir(os.path.join(TOP, "tools", "bus1")))
                 if os.path.isfile(os.path.join(TOP, "tools", "bus1", c, "tests", f"{target}.rs"))]
        if len(paths) != 1:
            raise SystemExit(f"scripts/build-userspace.sh: test target {target}: found {paths or 'no source'}")
        text = open(os.path.join(TOP, paths[0])).read()
        m = re.search(r"tap::main\(&\[(.*?)\]\)", text, re.S)
        if not m:
            raise SystemExit(f"{paths[0]}: no tap::main(&[...])")
        p = Program("userspace", name)
        p.cases = re.findall(r'\(\s*"([^"]+)"\s*,\s*[\w:]+\s*\)', m.group(1))
        if not p.cases:
            raise SystemExit(f"{paths[0]}: tap::main lists no tests")
        p.timeout = RUST_CASE_TIMEOUT * len(p.cases) + PROGRAM_SLACK
        progs.append(p)
    if not progs:
        raise SystemExit("scripts/build-userspace.sh: no test programs (\"<target>) dst=<program> ;;\")")
    return progs


def example_programs():
    # scripts/guest-init.sh runs every example as one TAP case of the program
    # bus1_examples, named after its binary (build-userspace.sh installs
    # tools/bus1/examples/src/bin/<name>.rs as /tests/demos/bus1-<name>, and
    # the C program of bus1(7) EXAMPLES as /tests/demos/bus1-man-example), with
    # the timeout guest-init.sh gives each ("timeout <s> "$d"").
    bins = sorted(f[:-3] for f in os.listdir(os.path.join(TOP, "tools", "bus1", "examples", "src", "bin"))
                  if f.endswith(".rs"))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import man_example
    man_example.extract()  # the man page has its program
    p = Program("selftest", "bus1_examples")
    p.cases = sorted([f"bus1-{b}" for b in bins] + [man_example.DEMO])
    if not p.cases:
        raise SystemExit("tools/bus1/examples/src/bin: no examples")
    m = re.search(r'timeout (\d+) "\$d"', open(os.path.join(TOP, "scripts", "guest-init.sh")).read())
    if not m:
        raise SystemExit("scripts/guest-init.sh: no per-example timeout ('timeout <s> \"$d\"')")
    p.timeout = int(m.group(1)) * len(p.cases) + PROGRAM_SLACK
    return [p]


RELOAD = re.compile(r'^\s*reload\s+(\S+)\s+"([^"]*)"(.*)$', re.M)


def reloads():
    """The module reloads of scripts/guest-init.sh: [(name, [param=value], [program])]."""
    text = open(os.path.join(TOP, "scripts", "guest-init.sh")).read()
    out = []
    for m in RELOAD.finditer(text):
        name, params, progs = m.group(1), m.group(2).split(), m.group(3).split()
        where = f"scripts/guest-init.sh: reload {name}"
        if not re.fullmatch(r"[a-z0-9_]+", name):
            raise SystemExit(f"{where}: the name must be [a-z0-9_]+")
        if any(n == name for n, _, _ in out):
            raise SystemExit(f"{where}: defined twice")
        for prm in params:
            if not re.fullmatch(r"[a-z0-9_]+=\S+", prm):
                raise SystemExit(f"{where}: '{prm}' is not <param>=<value>")
        out.append((name, params, progs))
    return out


def reload_programs(selftests):
    """The program <program>@<name> for every program of every reload."""
    by_name = {p.name: p for p in selftests}
    progs = []
    for name, _params, names in reloads():
        for n in names:
            base = by_name.get(n)
            if base is None:
                raise SystemExit(f"scripts/guest-init.sh: reload {name}: {n} is not a kselftest "
                                 "program (TEST_GEN_PROGS)")
            p = Program("selftest", f"{n}@{name}")
            p.cases, p.timeout = list(base.cases), base.timeout
            progs.append(p)
    return progs


def from_sources():
    selftests = selftest_programs()
    progs = kunit_suites() + selftests + userspace_programs() + example_programs() + \
        reload_programs(selftests)
    seen = set()
    for p in progs:
        if p.key() in seen:
            raise SystemExit(f"{p.kind} {p.name} is defined twice")
        seen.add(p.key())
        dup = {c for c in p.cases if p.cases.count(c) > 1}
        if dup:
            raise SystemExit(f"{p.kind} {p.name}: duplicate case names {sorted(dup)}")
    return progs


def load(path=MANIFEST):
    """Parse the manifest: a list of Programs."""
    progs, cur = [], None
    for n, raw in enumerate(open(path), 1):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        words = line.split()
        if not raw[0].isspace():
            if words[0] not in ("kunit", "selftest", "userspace") or len(words) < 2:
                raise SystemExit(f"{path}:{n}: expected '<kunit|selftest|userspace> <name> [timeout=<s>]'")
            cur = Program(words[0], words[1])
            for w in words[2:]:
                if w.startswith("timeout="):
                    cur.timeout = int(w[8:])
                else:
                    raise SystemExit(f"{path}:{n}: unknown attribute {w}")
            progs.append(cur)
            continue
        if cur is None:
            raise SystemExit(f"{path}:{n}: case before any program")
        cur.cases.append(words[0])
        for w in words[1:]:
            if w.startswith("skip="):
                vs = set(w[5:].split(","))
                if not vs <= set(VARIANTS):
                    raise SystemExit(f"{path}:{n}: skip= takes {','.join(VARIANTS)}")
                cur.skip[words[0]] = vs
            elif w.startswith("notrun="):
                vs = set(w[7:].split(","))
                if not vs <= {"debug", "release"}:
                    raise SystemExit(f"{path}:{n}: notrun= takes debug,release")
                if "@" not in cur.name:
                    raise SystemExit(f"{path}:{n}: notrun= is for a run under a reloaded module "
                                     "(<program>@<reload>): every case runs at least once per variant")
                cur.notrun[words[0]] = vs
            else:
                raise SystemExit(f"{path}:{n}: unknown attribute {w}")
    return progs


HEADER = """\
# SPDX-License-Identifier: GPL-2.0
# The tests `make check` expects. Generated from the sources by
# `scripts/manifest.py --update`; `make check` fails when it does not match
# them (scripts/manifest.py --check) and fails a run on any listed case that
# did not report, any reported case not listed, and any SKIP not allowed here.
#
# <kunit|selftest|userspace> <program> [timeout=<seconds>]
#     <case> [skip=<variant>,...] [notrun=<variant>,...]
#
# kunit: a KUnit suite (run by every variant and by kunit.py, "kunit");
# selftest: a kselftest binary; userspace: a Rust TAP program. timeout= is
# derived from the cases' declared timeouts (see scripts/manifest.py).
# skip= is the only hand-written part: the variants (debug, release, kunit)
# on which that case may report SKIP. notrun= is hand-written too, and only
# in a run under a reloaded module (<program>@<reload>): the variants whose
# guest leaves that case out of that run (the harness's -T), for a case
# whose outcome does not depend on the reload's parameters; it still runs
# there in <program> itself and in every other variant's run.
"""


def render(progs):
    out = [HEADER]
    for p in progs:
        attrs = f" timeout={p.timeout}" if p.timeout is not None else ""
        out.append(f"\n{p.kind} {p.name}{attrs}\n")
        for c in p.cases:
            s, nr = p.skip.get(c), p.notrun.get(c)
            out.append(f"\t{c}" + (f" skip={','.join(v for v in VARIANTS if v in s)}" if s else "")
                       + (f" notrun={','.join(v for v in VARIANTS if v in nr)}" if nr else "") + "\n")
    return "".join(out)


def settings_text(progs):
    tmo = max(p.timeout for p in progs if p.kind == "selftest")
    return ("# SPDX-License-Identifier: GPL-2.0\n"
            "# Generated by scripts/manifest.py: the largest sum of one binary's declared case timeouts.\n"
            f"timeout={tmo}\n")


def merged(old_progs):
    """The sources' programs with the skip annotations of old_progs. A new case
    in a program whose every old case may skip on a variant inherits that. A
    reload's program (<program>@<name>) also has every skip of <program>, and
    may have more of its own."""
    old = {p.key(): p for p in old_progs}
    progs = from_sources()
    for p in progs:
        o = old.get(p.key())
        if not o:
            continue
        common = set.intersection(*[o.skip.get(c, set()) for c in o.cases]) if o.cases else set()
        for c in p.cases:
            if c in o.notrun:
                p.notrun[c] = o.notrun[c]
            if c in o.skip:
                p.skip[c] = o.skip[c]
            elif c not in o.cases and common:
                p.skip[c] = set(common)
    base = {p.key(): p for p in progs}
    for p in progs:
        b = base.get((p.kind, p.name.split("@")[0])) if "@" in p.name else None
        for c, vs in (b.skip.items() if b else ()):
            p.skip[c] = p.skip.get(c, set()) | vs
    return progs


def diff(have, want):
    """Human-readable differences between two program lists."""
    out = []
    h = {p.key(): p for p in have}
    w = {p.key(): p for p in want}
    for k in w:
        if k not in h:
            out.append(f"{k[0]} {k[1]} is in the sources but not in the manifest")
    for k in h:
        if k not in w:
            out.append(f"{k[0]} {k[1]} is in the manifest but not in the sources")
    for k in w:
        if k not in h:
            continue
        a, b = h[k], w[k]
        for c in b.cases:
            if c not in a.cases:
                out.append(f"{k[0]} {k[1]}: case {c} is in the sources but not in the manifest")
        for c in a.cases:
            if c not in b.cases:
                out.append(f"{k[0]} {k[1]}: case {c} is in the manifest but not in the sources")
        if a.timeout != b.timeout:
            out.append(f"{k[0]} {k[1]}: timeout={a.timeout} in the manifest, {b.timeout} from the sources")
    return out


def excludes(progs, variant):
    """The kselftest harness arguments that leave out the cases a variant does
    not run (notrun=): {program: ["-T", test, ...]}. The harness's -T takes a
    test's name without its fixture, so that name must be unique in the program."""
    out = {}
    for p in progs:
        names = [c for c in p.cases if variant in p.notrun.get(c, ())]
        if not names:
            continue
        if p.kind != "selftest":
            raise SystemExit(f"{p.name}: notrun= needs a kselftest harness program")
        args = []
        for c in names:
            t = c.rsplit(".", 1)[-1]
            if sum(x.rsplit(".", 1)[-1] == t for x in p.cases) != 1:
                raise SystemExit(f"{p.name}: notrun= case {c}: its test name {t} is not unique "
                                 "in the program, so the harness cannot leave out only it")
            args += ["-T", t]
        out[p.name] = args
    return out


def guest_programs(progs):
    return [p for p in progs if p.kind in ("selftest", "userspace") and p.name not in NOT_RUN]


def kselftest_binaries(progs):
    """The kselftest binaries the guests run (not the examples' TAP section, nor
    the runs under a reloaded module, which only scripts/guest-init.sh makes)."""
    examples = {p.name for p in example_programs()}
    return [p for p in guest_programs(progs) if p.kind == "selftest" and p.name not in examples
            and "@" not in p.name]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--check", action="store_true")
    g.add_argument("--update", action="store_true")
    g.add_argument("--timeouts", action="store_true")
    g.add_argument("--guest-timeout", action="store_true")
    g.add_argument("--kselftests", action="store_true")
    g.add_argument("--guest-base", action="store_true")
    g.add_argument("--excludes", metavar="VARIANT")
    ap.add_argument("--manifest", default=MANIFEST)
    a = ap.parse_args()

    if a.check:
        have = load(a.manifest)
        want = merged(have)
        problems = diff(have, want)
        if render(have) != render(want) and not problems:
            problems.append("the manifest is not in its generated form")
        try:
            settings = open(SETTINGS).read()
        except OSError:
            settings = ""
        if settings != settings_text(want):
            problems.append(f"{os.path.relpath(SETTINGS, TOP)} does not match the sources")
        for p in problems:
            print(f"FAIL [manifest] {p}")
        if problems:
            print("FAIL [manifest] run scripts/manifest.py --update, review the diff (skip= lines) and commit it")
            return 1
        n = sum(len(p.cases) for p in have)
        print(f"PASS [manifest] scripts/tests.manifest matches the sources ({len(have)} programs, {n} cases)")
        return 0
    if a.update:
        old = load(a.manifest) if os.path.exists(a.manifest) else []
        progs = merged(old)
        for line in diff(old, progs):
            print(line)
        with open(a.manifest, "w") as f:
            f.write(render(progs))
        with open(SETTINGS, "w") as f:
            f.write(settings_text(progs))
        return 0
    if a.guest_base:
        print(GUEST_BASE)
        return 0
    progs = load(a.manifest)
    if a.timeouts:
        for p in guest_programs(progs):
            print(p.name, p.timeout)
        return 0
    if a.excludes:
        for name, args in excludes(progs, a.excludes).items():
            print(name, *args)
        return 0
    if a.guest_timeout:
        print(GUEST_BASE + sum(p.timeout for p in guest_programs(progs)))
        return 0
    if a.kselftests:
        ks = kselftest_binaries(progs)
        for p in ks:
            print(p.name, p.timeout)
        print("guest", GUEST_BASE + sum(p.timeout for p in ks))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
