#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Judge one guest run against the manifest of expected tests.

  results.py --variant V --console C --results R [--qemu-rc N]
             [--manifest M] [--vmlinux F --modules DIR --source DIR]
  results.py --kunit-json J --kunit-rc N [--manifest M]

A guest run (scripts/guest-init.sh's line protocol on the second serial port)
fails on:
  * a program or KUnit suite the manifest (scripts/tests.manifest) lists that
    did not report, one that reported but is not listed, and a program that
    reported twice;
  * a case the manifest lists that did not report (each counts as a failure),
    one that reported but is not listed, a case reported twice;
  * a TAP plan (1..N) that does not match the number of results, a missing
    plan, "Bail out!";
  * a failed case, a SKIP the manifest does not allow on this variant, an
    XFAIL or XPASS;
  * a program killed by its timeout, or exiting non-zero with no failed case;
  * an insmod failure, a failed module reload (@@RELOAD rc != 0: the module
    did not unload, did not load, or did not read back the parameters it was
    given), a guest that did not finish, a taint other than O, E, N;
  * any kernel splat on the console (scripts/splats.py; the stack trace is
    decoded to file:line with the kernel's decode_stacktrace.sh given a
    vmlinux);
  * on a kmemleak variant (debug): kmemleak missing, a final scan that did not
    run or was refused (kmemleak disabled itself), a scan that followed the
    last test by less than kmemleak's minimum object age, or any leak.
With a command (vm.sh check <variant> '<command>'), only the command's TAP
output and the KUnit suites are judged against the manifest. With
--programs a,b,... (a runner that runs only those programs, make vng), the
manifest's other kselftest and Rust programs are not expected.

Prints each failure, the per-run summary and, last, `RESULT <passed> <failed>
<skipped>` for scripts/check.sh to add up. kunit.py's JSON (make kunit) is
judged the same way, against the KUnit part of the manifest.
"""
import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import manifest as mf  # noqa: E402
import splats  # noqa: E402

# Allowed taint bits: O (out-of-tree module), E (unsigned module), N (KUnit ran).
ALLOWED_TAINT = (1 << 12) | (1 << 13) | (1 << 18)
# Variants whose kernel has kmemleak: their final scan is mandatory.
KMEMLEAK_VARIANTS = {"debug"}
# kmemleak reports only objects at least this old when the scan starts
# (MSECS_MIN_AGE in mm/kmemleak.c); the guest waits at least this long after
# the last test (plus a second of rounding) before its scans.
KMEMLEAK_MIN_AGE = 5
RESULT = re.compile(r"^(\s*)(not ok|ok)\s+(\d+)\s*(?:-\s*)?(.*)$")
PLAN = re.compile(r"^(\s*)1\.\.(\d+)")
TIMEOUT_RCS = (124, 137, 143)  # GNU timeout, SIGKILL, SIGTERM (busybox timeout)


class Verdict:
    def __init__(self, label):
        self.label = label
        self.passed = self.failed = self.skipped = 0
        self.problems = []

    def fail(self, msg, n=1):
        self.failed += n
        self.problems.append(msg)

    def lines(self, what):
        out = [f"FAIL [{self.label}] {p}" for p in self.problems]
        out.append(f"{what}: {self.passed} passed, {self.failed} failed, {self.skipped} skipped")
        out.append(f"RESULT {self.passed} {self.failed} {self.skipped}")
        return out


def split_directive(text):
    """'name # SKIP why' -> ('name', 'SKIP', 'why')."""
    m = re.match(r"^(.*?)\s*#\s*(SKIP|TODO|XFAIL|XPASS)\b\s*(.*)$", text, re.I)
    if not m:
        return text.strip(), None, ""
    return m.group(1).strip(), m.group(2).upper(), m.group(3).strip()


def tap_streams(body, indent):
    """TAP streams at one indentation: [(plan or None, [(ok, num, name, directive, reason)])].
    A "TAP version" or "KTAP version" line starts a new stream."""
    streams = [[None, []]]
    for line in body:
        if line.strip().startswith(("TAP version", "KTAP version")) and \
                len(line) - len(line.lstrip()) == indent:
            if streams[-1][0] is not None or streams[-1][1]:
                streams.append([None, []])
            continue
        m = PLAN.match(line)
        if m and len(m.group(1)) == indent:
            if streams[-1][0] is not None:
                streams.append([None, []])
            streams[-1][0] = int(m.group(2))
            continue
        m = RESULT.match(line)
        if m and len(m.group(1)) == indent:
            name, d, why = split_directive(m.group(4))
            streams[-1][1].append((m.group(2) == "ok", int(m.group(3)), name, d, why))
    return [s for s in streams if s[0] is not None or s[1]]


def judge_cases(v, what, results, prog, variant, allowed_any=None):
    """Count one program's results; compare them with its manifest entry."""
    seen = set()
    for ok, _num, name, d, why in results:
        if name in seen:
            v.fail(f"{what}: case {name} reported twice")
            continue
        seen.add(name)
        if prog is not None and name not in prog.cases:
            v.fail(f"{what}: case {name} is not in the manifest (scripts/manifest.py --update)")
            continue
        if prog is not None and variant in prog.notrun.get(name, ()):
            v.fail(f"{what}: case {name} ran, but the manifest leaves it out on {variant} (notrun=)")
            continue
        if d == "SKIP":
            allowed = prog.skip.get(name, set()) if prog is not None else (allowed_any or {}).get(name, set())
            if variant in allowed:
                v.skipped += 1
            else:
                v.fail(f"{what}: {name}: unexpected SKIP on {variant} ({why or 'no reason given'}); "
                       f"the manifest allows it on: {','.join(sorted(allowed)) or 'none'}")
        elif d in ("XFAIL", "XPASS"):
            v.fail(f"{what}: {name}: {d} (expected failures are not allowed)")
        elif d == "TODO" or not ok:
            v.fail(f"{what}: {name} failed" + (f" ({why})" if why else ""))
        else:
            v.passed += 1
    missing = [c for c in (prog.cases if prog is not None else [])
               if c not in seen and variant not in prog.notrun.get(c, ())]
    return missing


def judge_guest(variant, console, results, qemu_rc, manifest, vmlinux=None, modules=None, source=None,
                console_path="console.log", programs=None):
    v = Verdict(variant)
    progs = {p.key(): p for p in manifest}
    allowed_any = {}
    for p in manifest:
        for c, vs in p.skip.items():
            allowed_any.setdefault(c, set()).update(vs)

    done = custom = False
    insmod = taint = None
    section = None
    body = []
    ran = set()
    kml = {"absent": False, "aged": None, "scans": [], "section": False}
    for raw in results:
        line = raw.rstrip("\r")
        if line.startswith("@@BEGIN "):
            parts = line.split(" ", 2)
            section, body = (parts[1], parts[2] if len(parts) > 2 else ""), []
            continue
        if line.startswith("@@END ") and section:
            attrs = dict(re.findall(r"(\w+)=(-?\d+)", line))
            kind, name = section
            section = None
            judge_section(v, variant, kind, name, body, attrs, progs, allowed_any, ran, kml)
            if kind == "selftest" and name == "custom":
                custom = True
            continue
        if section:
            body.append(line)
            continue
        if line.startswith("@@INSMOD "):
            insmod = line
        elif line.startswith("@@RELOAD "):
            m = re.match(r"@@RELOAD (\S+) rc=(-?\d+) ?(.*)$", line)
            if not m:
                v.fail(f"unreadable reload line: {line}")
            elif m.group(2) != "0":
                v.fail(f"module reload {m.group(1)} failed ({m.group(3)}); its programs did not run")
        elif line.startswith("@@TAINT "):
            taint = int(line.split()[1])
        elif line.startswith("@@KMEMLEAK "):
            w = line.split()
            if w[1] == "absent":
                kml["absent"] = True
            elif w[1] == "aged":
                kml["aged"] = float(w[2])
            elif w[1] == "scan":
                kml["scans"].append(int(re.search(r"rc=(\d+)", line).group(1)))
        elif line.startswith("@@DONE"):
            done = True

    if section:
        kind, name = section
        v.fail(f"{kind} {name}: did not finish (the guest stopped inside it)")
        judge_section(v, variant, kind, name, body, {"rc": "-1"}, progs, allowed_any, ran, kml)
    if insmod is None:
        v.fail("insmod bus1.ko did not return (the KUnit suites run inside it; see the console)")
    elif "rc=0" not in insmod:
        v.fail(f"insmod bus1.ko failed ({insmod})")
    if not done:
        why = "timed out" if qemu_rc == 124 else f"did not finish (qemu rc={qemu_rc})"
        v.fail(f"guest {why}; see {console_path}")
    elif taint is None:
        v.fail("the guest reported no taint value")
    if taint is not None and taint & ~ALLOWED_TAINT:
        v.fail(f"kernel tainted: {taint:#x}")

    # What should have run and did not.
    for p in manifest:
        if p.key() in ran:
            continue
        if p.kind == "kunit" or (not custom and p.kind in ("selftest", "userspace")
                                 and p.name not in mf.NOT_RUN
                                 and (programs is None or p.name in programs)):
            if insmod is not None and "rc=0" in insmod:
                v.fail(f"{p.kind} {p.name}: did not run (expected by the manifest: "
                       f"{len(p.cases)} cases, each counted as failed)", len(p.cases))

    if variant in KMEMLEAK_VARIANTS and insmod is not None and "rc=0" in insmod and done:
        if kml["absent"]:
            v.fail("kmemleak: /sys/kernel/debug/kmemleak is missing on the debug kernel")
        elif not kml["scans"]:
            v.fail("kmemleak: the final scan did not run")
        else:
            if any(rc != 0 for rc in kml["scans"]) or len(kml["scans"]) < 2:
                v.fail(f"kmemleak: the final scans failed (rc={kml['scans']}): kmemleak is disabled "
                       "(see the console for why), so leaks would go unseen")
            if kml["aged"] is None or kml["aged"] < KMEMLEAK_MIN_AGE + 1:
                v.fail(f"kmemleak: the final scan followed the last test by {kml['aged']} s, "
                       f"less than kmemleak's minimum object age of {KMEMLEAK_MIN_AGE} s + 1")
            if not kml["section"]:
                v.fail("kmemleak: the report was not read after the scans")

    msg = splats.report(console_path, [l.rstrip("\r") for l in console], vmlinux, modules, source)
    if msg:
        v.fail(msg)
    return v


def judge_section(v, variant, kind, name, body, attrs, progs, allowed_any, ran, kml):
    rc = int(attrs.get("rc", 1))
    if kind == "kmemleak":
        kml["section"] = True
        if any(l.strip() for l in body):
            v.fail("kmemleak reported leaks:\n" + "\n".join(body[:60]))
        return
    if kind == "kunit":
        judge_kunit_section(v, variant, name, body, rc, progs.get(("kunit", name)))
        ran.add(("kunit", name))
        return
    if kind not in ("selftest", "userspace"):
        return
    what = f"{kind} {name}"
    custom = kind == "selftest" and name == "custom"
    prog = None
    if not custom:
        if (kind, name) in ran:
            v.fail(f"{what}: ran twice")
        ran.add((kind, name))
        prog = progs.get((kind, name))
        if prog is None:
            v.fail(f"{what}: ran but is not in the manifest (scripts/manifest.py --update)")
    streams = tap_streams(body, 0)
    if not streams:
        v.fail(f"{what}: no TAP output (rc={rc})")
    results = []
    for plan, res in streams:
        if plan is None:
            v.fail(f"{what}: results without a TAP plan")
        elif plan != len(res):
            v.fail(f"{what}: TAP plan 1..{plan} but {len(res)} results")
        results += res
    if any(l.startswith("Bail out!") for l in body):
        v.fail(f"{what}: Bail out!")
    nfail_before = v.failed
    if custom:
        # A command may run several programs, or one several times: one TAP
        # stream each.
        missing = []
        for _plan, res in streams:
            judge_cases(v, what, res, None, variant, allowed_any)
    else:
        missing = judge_cases(v, what, results, prog, variant, allowed_any)
    secs, limit = attrs.get("secs"), attrs.get("timeout")
    killed = rc in TIMEOUT_RCS and limit is not None and secs is not None and int(secs) >= int(limit) - 1
    if missing:
        why = f"killed by its timeout of {limit} s" if killed else f"rc={rc}"
        v.fail(f"{what}: {len(missing)} cases did not report ({why}): {' '.join(missing)}", len(missing))
    if killed:
        v.fail(f"{what}: killed by its timeout of {limit} s (after {secs} s)")
    elif rc != 0 and v.failed == nfail_before:
        v.fail(f"{what}: exited with rc={rc} but reported no failure")


def judge_kunit_section(v, variant, name, body, rc, prog):
    """A suite's debugfs results: KTAP with the cases one level in."""
    what = f"kunit {name}"
    if prog is None:
        v.fail(f"{what}: ran but is not in the manifest (scripts/manifest.py --update)")
    plans = [(len(m.group(1)), int(m.group(2))) for m in map(PLAN.match, body) if m and m.group(1)]
    if rc != 0 or not plans:
        v.fail(f"{what}: no KTAP results (rc={rc})")
        return
    indent, plan = plans[0]
    results = [r for s in tap_streams(body, indent) for r in s[1]]
    if plan != len(results):
        v.fail(f"{what}: KTAP plan 1..{plan} but {len(results)} results")
    top = [m for m in map(RESULT.match, body) if m and not m.group(1)]
    if not top:
        v.fail(f"{what}: no suite result line")
    elif top[-1].group(2) != "ok" and not any(not r[0] for r in results):
        v.fail(f"{what}: suite failed: {top[-1].group(4)}")
    missing = judge_cases(v, what, results, prog, variant)
    if missing:
        v.fail(f"{what}: {len(missing)} cases did not report: {' '.join(missing)}", len(missing))


def judge_kunit_json(top, rc, manifest):
    """kunit.py's --json output: every manifest suite ran with exactly its cases."""
    v = Verdict("kunit")
    if top is None:
        v.fail(f"kunit.py produced no results (exit status {rc}; build or boot failure above)")
        return v
    progs = {p.name: p for p in manifest if p.kind == "kunit"}

    def leaves(group):
        for c in group.get("test_cases", []):
            yield c
        for g in group.get("sub_groups", []):
            yield from leaves(g)

    groups = [g for g in top.get("sub_groups", []) if g["name"].startswith("bus1")]
    # A suite without cases shows up as a case of the top group.
    groups += [{"name": c["name"], "test_cases": [c]} for c in top.get("test_cases", [])
               if c["name"].startswith("bus1")]
    seen = set()
    for g in groups:
        seen.add(g["name"])
        prog = progs.get(g["name"])
        if prog is None:
            v.fail(f"kunit {g['name']}: ran but is not in the manifest (scripts/manifest.py --update)")
        res = []
        for i, c in enumerate(leaves(g), 1):
            st = c["status"]
            res.append((st in ("PASS", "SKIP"), i, c["name"], "SKIP" if st == "SKIP" else None,
                        "" if st in ("PASS", "SKIP") else st))
        missing = judge_cases(v, f"kunit {g['name']}", res, prog, "kunit")
        if missing:
            v.fail(f"kunit {g['name']}: {len(missing)} cases did not report: {' '.join(missing)}", len(missing))
    for name, p in progs.items():
        if name not in seen:
            v.fail(f"kunit {name}: did not run (expected by the manifest: {len(p.cases)} cases, "
                   "each counted as failed)", len(p.cases))
    if rc != 0 and not v.problems:
        v.fail(f"kunit.py exited with status {rc}")
    return v


def read_lines(path):
    try:
        return open(path, errors="replace").read().splitlines()
    except OSError:
        return []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant")
    ap.add_argument("--console")
    ap.add_argument("--results")
    ap.add_argument("--qemu-rc", type=int, default=0)
    ap.add_argument("--manifest", default=mf.MANIFEST)
    ap.add_argument("--vmlinux")
    ap.add_argument("--modules")
    ap.add_argument("--source")
    ap.add_argument("--kunit-json")
    ap.add_argument("--kunit-rc", type=int, default=0)
    ap.add_argument("--programs", help="comma-separated: the only programs this run was to run")
    ap.add_argument("--label", help="the run's name in the output (default: the variant)")
    a = ap.parse_args()
    manifest = mf.load(a.manifest)

    if a.kunit_json:
        try:
            top = json.load(open(a.kunit_json))
        except (OSError, ValueError):
            top = None
        v = judge_kunit_json(top, a.kunit_rc, manifest)
        print("\n".join(v.lines("bus1 KUnit suites under kunit.py")))
        return 1 if v.failed else 0

    if not (a.variant and a.console and a.results):
        ap.error("--variant, --console and --results are required")
    v = judge_guest(a.variant, read_lines(a.console), read_lines(a.results), a.qemu_rc, manifest,
                    a.vmlinux, a.modules, a.source, a.console,
                    a.programs.split(",") if a.programs is not None else None)
    v.label = a.label or a.variant
    print("\n".join(v.lines(f"{a.label} ({a.variant} kernel)" if a.label else f"{a.variant} kernel")))
    return 1 if v.failed else 0


if __name__ == "__main__":
    sys.exit(main())
