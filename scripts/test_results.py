#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Offline tests of the runner's judge (scripts/results.py, splats.py,
manifest.py): crafted guest logs, one per way a run can go wrong, each of
which must fail with a message naming what is missing; and a clean log of
the whole manifest, which must pass. Also the progress output
(scripts/progress.py and the phases of scripts/lib.sh): ETA arithmetic, the
timing table, the guest stream, apt's removals, and make check's phases and
last line with stub scripts. `make check` runs this first.

The logs are generated from scripts/tests.manifest in the formats the guest
produces (guest-init.sh's @@ protocol, the kselftest harness's TAP, KUnit's
debugfs KTAP, the Rust TAP harness), so they follow the manifest as it grows.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import manifest as mf  # noqa: E402
import progress  # noqa: E402
import results  # noqa: E402
import splats  # noqa: E402

MANIFEST = mf.load()
RELOADS = mf.reloads()
CONSOLE = [
    "[    0.000000] Linux version 7.2.12 (bus1 test kernel)",
    "[    3.100000] kmemleak: Kernel memory leak detector initialized (mem pool available: 15000)",
    "[    5.000000] bus1: loaded",
    "[   20.000000] traps: bus1_fuzz[300] general protection fault ip:401000 sp:7ffd error:0 in bus1_fuzz",
]


def kunit_section(p, variant, drop_case=None, fail_case=None):
    cases = [c for c in p.cases if c != drop_case]
    out = [f"@@BEGIN kunit {p.name}", "KTAP version 1", "1..1", "    KTAP version 1",
           f"    # Subtest: {p.name}", "    # module: bus1", f"    1..{len(p.cases)}"]
    for i, c in enumerate(cases, 1):
        out.append(f"    {'not ok' if c == fail_case else 'ok'} {i} {c}")
    out += [f"# {p.name}: pass:{len(cases)} fail:0 skip:0 total:{len(cases)}",
            f"{'not ok' if fail_case else 'ok'} 1 {p.name}", f"@@END kunit {p.name} rc=0 secs=0"]
    return out


def program_section(p, variant, keep=None, plan=None, rc=0, secs=3, skip=(), fail=(), extra=(), notrun=True):
    """A kselftest or Rust TAP program's output; keep: how many results it prints;
    notrun: leave out the cases the manifest says this variant does not run."""
    cases = [c for c in p.cases if not notrun or variant not in p.notrun.get(c, ())] + list(extra)
    shown = cases if keep is None else cases[:keep]
    dash = "- " if p.kind == "userspace" else ""
    out = [f"@@BEGIN {p.kind} {p.name}", "TAP version 13", f"1..{len(cases) if plan is None else plan}"]
    if p.kind == "selftest":
        out.append(f"# Starting {len(cases)} tests from 1 test cases.")
    for i, c in enumerate(shown, 1):
        if p.kind == "selftest":
            out += [f"#  RUN           {c} ...", f"#            OK  {c}"]
        if c in fail or c in skip and variant not in ("debug", "release"):
            out.append(f"not ok {i} {dash}{c}")
        elif c in skip or variant in p.skip.get(c, set()):
            out.append(f"ok {i} {dash}{c} # SKIP no failslab")
        else:
            out.append(f"ok {i} {dash}{c}")
    out.append(f"# PASSED: {len(shown)} / {len(shown)} tests passed.")
    out.append(f"@@END {p.kind} {p.name} rc={rc} secs={secs} timeout={p.timeout}")
    return out


def guest_log(variant, omit=(), sections=None, kmemleak="ok", taint=0, done=True, reload_lines=None):
    """A whole run; sections: {program name: [lines]} replacing the default."""
    sections = sections or {}
    out = ["@@INSMOD rc=0"]
    for p in MANIFEST:
        if p.kind == "kunit" and p.name not in omit:
            out += sections.get(p.name) or kunit_section(p, variant)
    progs = [p for p in mf.guest_programs(MANIFEST) if p.name != "bus1_module_test"]
    progs += [p for p in MANIFEST if p.name == "bus1_module_test"]
    # The module reloads (guest-init.sh), each before its first program;
    # reload_lines: {reload name: its @@RELOAD line} replacing the default.
    first = {}
    for name, params, names in RELOADS:
        first.setdefault(f"{names[0]}@{name}" if names else "bus1_module_test", []).append((name, params))
    reloaded = any("@" in p.name and p.name not in omit for p in progs)
    for p in progs:
        for name, params in first.get(p.name, []) if reloaded else ():
            out.append((reload_lines or {}).get(name) or f"@@RELOAD {name} rc=0 {' '.join(params) or 'defaults'}")
        if p.name not in omit:
            out += sections.get(p.name) or program_section(p, variant)
    if variant == "debug":
        if kmemleak == "absent":
            out.append("@@KMEMLEAK absent")
        elif kmemleak != "none":
            out.append("@@KMEMLEAK aged " + ("1.0" if kmemleak == "young" else "6.0"))
            rc = 1 if kmemleak == "disabled" else 0
            out += [f"@@KMEMLEAK scan rc={rc}", f"@@KMEMLEAK scan rc={rc}", "@@BEGIN kmemleak scan"]
            if kmemleak == "leak":
                out += ["unreferenced object 0xffff888003b3c000 (size 64):",
                        "  comm \"bus1_objects_te\", pid 200, jiffies 4294937296",
                        "  backtrace (crc 0):", "    __kmalloc+0x1a/0x30"]
            out.append("@@END kmemleak scan rc=0 secs=0")
    if done:
        out += [f"@@TAINT {taint}", "@@DONE"]
    return out


def judge(variant, lines, console=CONSOLE, qemu_rc=0):
    return results.judge_guest(variant, console, lines, qemu_rc, MANIFEST)


def prog(name):
    return next(p for p in MANIFEST if p.name == name)


FAILS = 0
RUN = 0


def check(name, v, want_fail, *needles):
    global FAILS, RUN
    RUN += 1
    text = "\n".join(v.problems)
    ok = (v.failed > 0) == want_fail and all(n in text for n in needles)
    print(f"{'ok' if ok else 'not ok'} - {name}: {v.passed} passed, {v.failed} failed, {v.skipped} skipped")
    if not ok:
        FAILS += 1
        print("#   expected " + ("failure" if want_fail else "pass") +
              (f" naming {needles}" if needles else "") + "; problems:")
        for p in v.problems:
            print("#   " + p.replace("\n", "\n#   "))


def guest_cases(variant):
    return sum(len(p.cases) for p in MANIFEST if p.kind == "kunit") + \
        sum(len([c for c in p.cases if variant not in p.notrun.get(c, ())]) for p in mf.guest_programs(MANIFEST))


def main():
    n_cases = guest_cases("debug")
    n_debug_skips = sum(1 for p in MANIFEST for c in p.cases if "debug" in p.skip.get(c, set()))
    n_release_skips = sum(1 for p in MANIFEST for c in p.cases if "release" in p.skip.get(c, set()))

    v = judge("debug", guest_log("debug"))
    check("clean debug run passes with the allowed skips", v, False)
    if v.skipped != n_debug_skips or v.passed + v.skipped != n_cases:
        check(f"clean debug run counts {n_cases} cases, {n_debug_skips} skipped", v, True, "never")
    v = judge("release", guest_log("release"))
    check("clean release run passes with the allowed skips", v, False)
    if v.skipped != n_release_skips or v.passed + v.skipped != guest_cases("release"):
        check(f"clean release run counts {n_release_skips} skips", v, True, "never")

    objs = prog("bus1_objects_test")
    v = judge("debug", guest_log("debug", sections={objs.name: program_section(objs, "debug", keep=20)}))
    check("binary exits 0 after printing part of its results", v, True,
          f"TAP plan 1..{len(objs.cases)} but 20 results", objs.cases[20], objs.cases[-1])
    if v.failed < len(objs.cases) - 20:
        check("each unreported case counts as failed", v, True, "never")
    v = judge("debug", guest_log("debug", sections={objs.name: program_section(objs, "debug", keep=20, plan=20)}))
    check("binary with a shortened plan", v, True, "cases did not report", objs.cases[20])
    v = judge("debug", guest_log("debug", sections={objs.name: program_section(objs, "debug", rc=1)}))
    check("binary exiting non-zero with all cases ok", v, True, "exited with rc=1")
    v = judge("debug", guest_log("debug", sections={objs.name: program_section(objs, "debug", plan=None)[:2] +
                                                    program_section(objs, "debug")[3:]}))
    check("binary without a plan", v, True, "without a TAP plan")
    # notrun=: a case the manifest leaves out of a reload's run on debug must
    # not run there, and must still run on release.
    nr = next(((p, c) for p in MANIFEST for c in p.cases if "debug" in p.notrun.get(c, ())), None)
    if nr:
        v = judge("debug", guest_log("debug", sections={nr[0].name: program_section(nr[0], "debug", notrun=False)}))
        check("a case left out on debug (notrun=) that runs there", v, True,
              f"case {nr[1]} ran, but the manifest leaves it out on debug")
        v = judge("release", guest_log("release", sections={nr[0].name: program_section(nr[0], "debug")}))
        check("a case left out on debug (notrun=) missing on release", v, True, "cases did not report", nr[1])
        v = judge("debug", guest_log("debug"))
        if nr[1] in "\n".join(v.problems):
            check("a case left out on debug (notrun=) is not missing there", v, True, "never")
    v = judge("debug", guest_log("debug", omit=("bus1_message_test",)))
    check("missing selftest binary", v, True, "selftest bus1_message_test: did not run")
    v = judge("debug", guest_log("debug", omit=("bus1_rs_test",)))
    check("missing Rust TAP program", v, True, "userspace bus1_rs_test: did not run")
    v = judge("debug", guest_log("debug", sections={objs.name: program_section(objs, "debug",
                                                                               extra=["peers.new_case"])}))
    check("case not in the manifest", v, True, "peers.new_case is not in the manifest")
    extra = mf.Program("selftest", "bus1_new_test")
    extra.cases, extra.timeout = ["global.x"], 90
    v = judge("debug", guest_log("debug") [:-2] + program_section(extra, "debug") + ["@@TAINT 0", "@@DONE"])
    check("binary not in the manifest", v, True, "selftest bus1_new_test: ran but is not in the manifest")

    # Module reloads: each reload's programs are programs of their own.
    v = judge("release", guest_log("release", omit=("bus1_quota_test@policy0",)))
    check("missing run under a reloaded module", v, True, "selftest bus1_quota_test@policy0: did not run")
    v = judge("release", guest_log("release", omit=("bus1_quota_test@policy1",), reload_lines={
        "policy1": "@@RELOAD policy1 rc=1 quota_policy=1: read back 'quota_policy=2'"}))
    check("reload whose parameters did not read back", v, True,
          "module reload policy1 failed (quota_policy=1: read back 'quota_policy=2')",
          "selftest bus1_quota_test@policy1: did not run")
    v = judge("debug", guest_log("debug", reload_lines={
        "defaults": "@@RELOAD defaults rc=1 unload: bus1 still in use 30 s after the last test (refcnt 1)"}))
    check("reload to the defaults failed", v, True, "module reload defaults failed", "refcnt 1")
    small = prog("bus1_quota_test@small")
    v = judge("debug", guest_log("debug", sections={small.name: program_section(small, "debug",
                                                                                fail=small.cases[:1])}))
    check("failed case under a reloaded module", v, True,
          f"selftest bus1_quota_test@small: {small.cases[0]} failed")
    cg = "global.full_receiver_cgroup_is_edquot_not_oom"
    v = judge("debug", guest_log("debug", sections={"bus1_quota_test": program_section(
        prog("bus1_quota_test"), "debug", skip=[cg])}))
    check("a skip allowed under a reloaded module only", v, True,
          f"selftest bus1_quota_test: {cg}: unexpected SKIP on debug")
    twice = program_section(prog("bus1_quota_test"), "debug") + program_section(small, "debug")
    v = judge("debug", guest_log("debug", sections={"bus1_quota_test": twice}))
    check("a reload's program reporting twice", v, True, "selftest bus1_quota_test@small: ran twice")
    if [p for p in MANIFEST if "@" in p.name and p.cases != prog(p.name.split("@")[0]).cases]:
        check("a reload's program has its base program's cases", results.Verdict("x"), True, "never")

    td = prog("bus1_teardown_test")
    v = judge("debug", guest_log("debug", sections={
        td.name: program_section(td, "debug", keep=3, rc=143, secs=td.timeout)}))
    check("binary killed by its timeout", v, True, f"killed by its timeout of {td.timeout} s", td.cases[3])

    fault = prog("bus1_fault")
    v = judge("debug", guest_log("debug", sections={fault.name: program_section(fault, "debug",
                                                                                skip=fault.cases)}))
    check("fault injection missing on debug: unexpected skips", v, True,
          f"{fault.cases[0]}: unexpected SKIP on debug", "allows it on: release")
    v = judge("release", guest_log("release", sections={objs.name: program_section(objs, "release",
                                                                                   skip=objs.cases[:1])}))
    check("skip not allowed on release", v, True, f"{objs.cases[0]}: unexpected SKIP on release")
    v = judge("debug", guest_log("debug", sections={objs.name: program_section(objs, "debug",
                                                                               fail=objs.cases[5:6])}))
    check("failed case", v, True, f"{objs.cases[5]} failed")

    queue = prog("bus1_queue")
    v = judge("debug", guest_log("debug", omit=("bus1_queue",)))
    check("removed KUnit suite", v, True, "kunit bus1_queue: did not run")
    v = judge("release", guest_log("release", sections={"bus1_queue": kunit_section(queue, "release",
                                                                                   drop_case=queue.cases[2])}))
    check("KUnit case missing from its suite", v, True, "KTAP plan", queue.cases[2])
    v = judge("debug", guest_log("debug", sections={"bus1_queue": kunit_section(queue, "debug",
                                                                               fail_case=queue.cases[0])}))
    check("failed KUnit case", v, True, f"{queue.cases[0]} failed")

    v = judge("debug", guest_log("debug", kmemleak="disabled"),
              CONSOLE + ["[ 30.0] kmemleak: Kernel memory leak detector disabled"])
    check("kmemleak disabled", v, True, "kmemleak: the final scans failed", "kmemleak is disabled",
          "Kernel memory leak detector disabled")
    v = judge("debug", guest_log("debug", kmemleak="disabled"))
    check("kmemleak disabled, nothing on the console", v, True, "kmemleak is disabled")
    v = judge("debug", guest_log("debug", kmemleak="absent"))
    check("kmemleak missing on debug", v, True, "kmemleak is missing")
    v = judge("debug", guest_log("debug", kmemleak="none"))
    check("final kmemleak scan did not run", v, True, "final scan did not run")
    v = judge("debug", guest_log("debug", kmemleak="young"))
    check("kmemleak scan too early", v, True, "minimum object age")
    v = judge("debug", guest_log("debug", kmemleak="leak"))
    check("kmemleak leak report", v, True, "kmemleak reported leaks", "unreferenced object")
    v = judge("release", guest_log("release", kmemleak="none"))
    check("no kmemleak on release", v, False)

    v = judge("debug", guest_log("debug"), CONSOLE + [
        "[ 40.1] BUG: KASAN: slab-use-after-free in bus1_peer_release+0x10/0x20 [bus1]",
        "[ 40.1] Call Trace:", "[ 40.1]  <TASK>"])
    check("KASAN splat", v, True, "kernel splat in console.log line 5", "BUG: KASAN")
    v = judge("debug", guest_log("debug", taint=1 << 9))
    check("taint W", v, True, "kernel tainted: 0x200")
    v = judge("debug", guest_log("debug", done=False), qemu_rc=124)
    check("guest timed out", v, True, "guest timed out")
    lines = guest_log("debug")
    cut = lines.index(f"@@BEGIN selftest {objs.name}") + 30
    v = judge("debug", lines[:cut], qemu_rc=0)
    check("guest died inside a binary", v, True, f"selftest {objs.name}: did not finish", objs.cases[-1],
          "userspace bus1_rs_test: did not run")
    v = judge("debug", ["@@INSMOD rc=1", "@@TAINT 0", "@@DONE"])
    check("insmod failure", v, True, "insmod bus1.ko failed")

    custom = ["@@INSMOD rc=0"] + [l for p in MANIFEST if p.kind == "kunit" for l in kunit_section(p, "debug")]
    one = mf.Program("selftest", "custom")
    one.cases = [objs.cases[0]]
    c = program_section(one, "debug")
    v = judge("debug", custom + c + ["@@KMEMLEAK aged 6.0", "@@KMEMLEAK scan rc=0", "@@KMEMLEAK scan rc=0",
                                     "@@BEGIN kmemleak scan", "@@END kmemleak scan rc=0 secs=0",
                                     "@@TAINT 0", "@@DONE"])
    check("one command (vm.sh check debug '<cmd>')", v, False)
    c = program_section(one, "debug")
    c2 = c[:-1] + c[1:]
    v = judge("debug", custom + c2 + ["@@TAINT 0", "@@DONE"])
    check("one command running a program twice", v, True, "final scan did not run")
    if any("twice" in p for p in v.problems):
        check("one command running a program twice is no duplicate", v, True, "never")
    one.cases = [objs.cases[0], objs.cases[1]]
    c = program_section(one, "debug", keep=1)
    v = judge("debug", custom + c + ["@@TAINT 0", "@@DONE"])
    check("one command: partial output, no leak scan", v, True, "TAP plan 1..2 but 1 results",
          "final scan did not run")

    # A runner that runs only the kselftest binaries (make vng, --programs).
    ks = [p.name for p in mf.kselftest_binaries(MANIFEST)]
    others = [p.name for p in mf.guest_programs(MANIFEST) if p.name not in ks]
    if not others or "bus1_examples" not in others or "bus1_test" not in ks or any("@" in n for n in ks):
        check("kselftest_binaries() is every kselftest binary and nothing else", results.Verdict("x"), True, "never")
    vng = guest_log("release", omit=others)
    v = results.judge_guest("release", CONSOLE, vng, 0, MANIFEST, programs=ks)
    check("kselftests only, judged with --programs", v, False)
    if v.passed + v.skipped != sum(len(p.cases) for p in MANIFEST if p.kind == "kunit" or p.name in ks):
        check("kselftests only: every KUnit and kselftest case counted", v, True, "never")
    v = judge("release", vng)
    check("kselftests only, judged as a whole run", v, True, "bus1_examples: did not run")
    v = results.judge_guest("release", CONSOLE, guest_log("release", omit=others + ["bus1_order_test"]), 0,
                            MANIFEST, programs=ks)
    check("kselftests only, one binary missing", v, True, "selftest bus1_order_test: did not run")
    v = results.judge_guest("release", CONSOLE, guest_log("release", omit=others + ["bus1_queue"]), 0,
                            MANIFEST, programs=ks)
    check("kselftests only, KUnit suite missing", v, True, "kunit bus1_queue: did not run")

    # kunit.py's JSON.
    def kjson(drop_suite=None, drop_case=None, status=None):
        return {"name": "main", "status": "PASS", "test_cases": [], "sub_groups": [
            {"name": p.name, "status": "PASS", "sub_groups": [], "test_cases": [
                {"name": c, "status": (status if c == p.cases[0] and status else "PASS")}
                for c in p.cases if c != drop_case]}
            for p in MANIFEST if p.kind == "kunit" and p.name != drop_suite]}
    v = results.judge_kunit_json(kjson(), 0, MANIFEST)
    check("kunit.py: clean", v, False)
    v = results.judge_kunit_json(kjson(drop_suite="bus1_pool"), 1, MANIFEST)
    check("kunit.py: removed suite", v, True, "kunit bus1_pool: did not run")
    v = results.judge_kunit_json(kjson(drop_case=queue.cases[1]), 0, MANIFEST)
    check("kunit.py: removed case", v, True, queue.cases[1])
    v = results.judge_kunit_json(kjson(status="SKIP"), 0, MANIFEST)
    check("kunit.py: unexpected skip", v, True, "unexpected SKIP on kunit")
    v = results.judge_kunit_json(None, 1, MANIFEST)
    check("kunit.py: no JSON", v, True, "kunit.py produced no results")

    # Splats: a user-space trap message is not one; decode_stacktrace.sh is
    # used only with a vmlinux.
    check("user-space general protection trap is no splat",
          results.Verdict("x") if splats.find(CONSOLE) is None else fail_verdict("splat found"), False)
    for s in ("WARNING: CPU: 0 PID: 1 at bus1/peer.rs:10", "kmemleak: Memory pool empty, consider increasing",
              "INFO: task bus1_teardown:123 blocked for more than 120 seconds.",
              "watchdog: BUG: soft lockup - CPU#0 stuck for 26s!"):
        check(f"splat: {s[:40]}",
              results.Verdict("x") if splats.find([s]) == 0 else fail_verdict("not found"), False)

    # The manifest check: a case added to the sources without the manifest.
    with tempfile.TemporaryDirectory() as tmp:
        top = os.path.dirname(HERE)
        for d in ("scripts", "bus1", "rust", "tools/testing/selftests/bus1", "Documentation/bus1"):
            shutil.copytree(os.path.join(top, d), os.path.join(tmp, d))
        for crate in os.listdir(os.path.join(top, "tools", "bus1")):
            src = os.path.join(top, "tools", "bus1", crate, "tests")
            if os.path.isdir(src):
                shutil.copytree(src, os.path.join(tmp, "tools", "bus1", crate, "tests"))
        shutil.copytree(os.path.join(top, "tools", "bus1", "examples", "src", "bin"),
                        os.path.join(tmp, "tools", "bus1", "examples", "src", "bin"))
        cmd = [sys.executable, os.path.join(tmp, "scripts", "manifest.py"), "--check"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        v = results.Verdict("x")
        if r.returncode != 0:
            v.fail(r.stdout)
        check("manifest matches the sources", v, False)
        with open(os.path.join(tmp, "tools/testing/selftests/bus1/bus1_test.c"), "a") as f:
            f.write("\nTEST(added_without_manifest)\n{\n}\n")
        with open(os.path.join(tmp, "bus1/queue.rs")) as f:
            q = f.read()
        with open(os.path.join(tmp, "bus1/queue.rs"), "w") as f:
            f.write(q.replace("#[kunit_tests(bus1_queue)]", "#[kunit_tests(bus1_queue_renamed)]"))
        r = subprocess.run(cmd, capture_output=True, text=True)
        v = results.Verdict("x")
        if r.returncode != 0:
            v.fail(r.stdout)
        check("manifest check: test added or suite renamed in the sources", v, True,
              "case global.added_without_manifest is in the sources but not in the manifest",
              "kunit bus1_queue is in the manifest but not in the sources",
              "kunit bus1_queue_renamed is in the sources but not in the manifest")

        init = os.path.join(tmp, "scripts", "guest-init.sh")
        with open(init) as f:
            gi = f.read()
        with open(init, "w") as f:
            f.write(gi.replace("\treload defaults", '\treload tiny "user_slices_max=8" bus1_test\n\treload defaults'))
        r = subprocess.run(cmd, capture_output=True, text=True)
        v = results.Verdict("x")
        if r.returncode != 0:
            v.fail(r.stdout)
        check("manifest check: reload added in guest-init.sh", v, True,
              "selftest bus1_test@tiny is in the sources but not in the manifest")
        with open(init, "w") as f:
            f.write(gi.replace("\treload defaults", '\treload tiny "user_slices_max=8" bus1_nonexistent\n'
                                                     '\treload defaults'))
        r = subprocess.run(cmd, capture_output=True, text=True)
        v = results.Verdict("x")
        if r.returncode != 0:
            v.fail(r.stdout + r.stderr)
        check("manifest check: reload of an unknown program", v, True,
              "reload tiny: bus1_nonexistent is not a kselftest program")

    progress_tests()
    check_sh_tests()

    print(f"# {'FAILED' if FAILS else 'PASSED'}: {RUN - FAILS} of {RUN} runner tests passed")
    return 1 if FAILS else 0


def expect(name, ok, detail=""):
    """A check that is not a judged guest run: passes if ok."""
    v = results.Verdict("x")
    if not ok:
        v.fail(detail or "condition false")
    check(name, v, False)


def progress_tests():
    os.environ["TZ"] = "UTC"
    time.tzset()
    t0 = 1_700_000_000.0  # 22:13:20 UTC
    expect("fmt_secs", [progress.fmt_secs(x) for x in (0, 59.6, 61, 3599, 3600, 3725)] ==
           ["0:00", "1:00", "1:01", "59:59", "1:00:00", "1:02:05"] and progress.fmt_secs(312, 2) == "05:12")
    names = ["manifest", "provision", "debug guest", "release guest"]
    text = progress.eta_text(names, {}, 0, t0, "/c/timings/check.json")
    expect("ETA: none on the first run, saying where timings go",
           text == "no ETA on the first run (phase timings are kept in /c/timings/check.json)", text)
    prev = {"manifest": 2, "provision": 8, "debug guest": 600, "release guest": 290}
    text = progress.eta_text(names, prev, 2, t0)
    expect("ETA: the remaining phases' previous durations",
           text == "ETA 22:28:10 (14:50 left by the previous run)", text)
    text = progress.eta_text(names + ["vng"], prev, 3, t0)
    expect("ETA: a phase without a previous timing is named",
           text == "ETA 22:18:10 or later (4:50 left by the previous run, no previous timing for vng)", text)
    text = progress.eta_text(["vng"], prev, 0, t0)
    expect("ETA: none when no remaining phase has a timing", text == "no ETA: no previous timing for vng", text)
    state = {"names": names, "prev": prev, "t0": t0 - 312, "timings": "/t.json", "prefix": "", "done": {}}
    text = progress.header_text(state, 2, t0)
    expect("header: number, clock, elapsed, name, ETA",
           text == "[3/4 22:13:20 +05:12] debug guest: ETA 22:28:10 (14:50 left by the previous run)", text)
    state["prefix"] = "3/9"
    text = progress.header_text(state, 1, t0)
    expect("header of a step inside another run's phase",
           text == "[3/9 > 2/4 22:13:20 +05:12] provision (previous run 0:08)", text)
    state["prefix"] = ""
    state["done"] = {"0": {"secs": 1.2, "rc": 0}, "1": {"secs": 9, "rc": 0}, "2": {"secs": 700, "rc": 1},
                     "3": {"skipped": True}}
    rows = progress.table_lines(state, [("3/4", "bus1.ko", 40.0, 0), ("3/4", "guest", 600.0, 1)])
    want = ["    #  phase              took  previous",
            "    1  manifest           0:01      0:02",
            "    2  provision          0:09      0:08",
            "    3  debug guest       11:40     10:00  exit 1",
            "         bus1.ko          0:40",
            "         guest           10:00  exit 1",
            "    4  release guest   not run      4:50",
            "       total             11:50     10:10"]
    expect("timing table: durations, previous run, failures, steps, phases not run, total", rows == want,
           "\n".join(rows))

    # The guest stream: every TAP result of a program once, as it arrives;
    # KUnit suites summarised with their failures; the lines before a failure.
    objs = prog("bus1_objects_test")
    queue = prog("bus1_queue")
    diag = ["# bus1_objects_test.c:120:disconnect_twice:Expected 0 (0) == r (-1)", "#  FAIL  peers.disconnect_twice"]
    sec = program_section(objs, "debug", fail=objs.cases[1:2])
    i = next(n for n, l in enumerate(sec) if l.startswith("not ok"))
    sec = sec[:i] + diag + sec[i:]
    lines = guest_log("debug", sections={objs.name: sec, "bus1_queue": kunit_section(queue, "debug",
                                                                                     fail_case=queue.cases[0])})
    s = progress.Stream("debug")
    out = []
    for n, l in enumerate(lines):
        out += [(n, o) for o in s.feed(l + "\r\n", t0 + n)]
    shown = [o for _, o in out if f"  {objs.name}: " in o and (" ok " in o)]
    expect("stream: each result of a program once", len(shown) == len(objs.cases), f"{len(shown)} lines")
    begin = lines.index(f"@@BEGIN selftest {objs.name}")
    first = next(n for n, o in out if f"{objs.name}: ok 1 " in o)
    arrives = next(n for n in range(begin, len(lines)) if lines[n].startswith("ok 1 "))
    expect("stream: a result is shown when its line arrives", first == arrives, f"line {first}, not {arrives}")
    fail_at = next(k for k, (_, o) in enumerate(out) if f"not ok 2 {objs.cases[1]}" in o)
    expect("stream: the comment lines before a failure", all(d in out[fail_at - 2 + j][1] for j, d in
                                                             enumerate(d.strip() for d in diag)),
           "\n".join(o for _, o in out[fail_at - 3:fail_at + 1]))
    summ = [o for _, o in out if f"selftest {objs.name}: {len(objs.cases) - 1} ok, 1 not ok, 0 skipped; exit 0" in o]
    expect("stream: a program's summary when it ends", len(summ) == 1)
    kq = [o for _, o in out if "bus1_queue" in o]
    expect("stream: a KUnit suite in one line plus its failed cases",
           len(kq) == 2 and f"not ok 1 {queue.cases[0]}" in kq[0] and
           f"kunit bus1_queue: {len(queue.cases) - 1} ok, 1 not ok" in kq[1], "\n".join(kq))
    expect("stream: each module reload",
           sum(1 for _, o in out if "bus1.ko reloaded (" in o) == len(RELOADS) and
           any("bus1.ko reloaded (policy0): quota_policy=0" in o for _, o in out), "\n".join(
               o for _, o in out if "reload" in o))
    failed = progress.Stream("debug").feed("@@RELOAD small rc=1 unload: bus1 still in use", t0)
    expect("stream: a failed reload", failed and "bus1.ko reload FAILED: small rc=1 unload" in failed[0], failed)
    expect("stream: insmod, kmemleak, the end",
           any("insmod bus1.ko: loaded" in o for _, o in out) and any("kmemleak: scan rc=0" in o for _, o in out)
           and out[-1][1].endswith("guest finished; the verdict follows (scripts/results.py)"))
    s = progress.Stream("release")
    out = [o for l in ["@@BEGIN selftest custom", "TAP version 13", "1..1", "ok 1 a", "# PASSED: 1 / 1",
                       "TAP version 13", "1..1", "# why b failed", "not ok 1 b"] for o in s.feed(l, t0)]
    expect("stream: a new TAP stream starts a failure's comment lines afresh",
           "# why b failed" in out[-2] and not any("PASSED" in o for o in out), "\n".join(out))
    rel = guest_log("release")
    s = progress.Stream("release")
    out = [o for l in rel for o in s.feed(l, t0)]
    skips = sum(1 for p in MANIFEST for c in p.cases if "release" in p.skip.get(c, set()) and p.kind != "kunit")
    expect("stream: skips shown and counted", sum(1 for o in out if "# SKIP" in o) == skips and skips > 0)
    s = progress.Stream("debug")
    s.feed(f"@@BEGIN selftest {objs.name}", t0)
    text = s.idle(t0 + 90, 90, "[  100.5] bus1: something\r")
    expect("stream: a heartbeat names the running program and the console's last line",
           text == f"  [debug 22:14:50] ... 1:30 without results, in selftest {objs.name} (started 22:13:20); "
           "console: [  100.5] bus1: something", text)

    # apt: what it would remove, and why (from a real bookworm simulation).
    sim = """Starting pkgProblemResolver with broken count: 2
Investigating (0) sysvinit-core:amd64 < none -> 3.06-4 @un puN Ib >
Broken sysvinit-core:amd64 Conflicts on systemd-sysv:amd64 < 252.38-1~deb12u1 @ii uH Ib >
  Fixing sysvinit-core:amd64 via remove of systemd-sysv:amd64
Broken libpam-systemd:amd64 Depends on systemd-sysv:amd64 < 252.38-1~deb12u1 @ii uR >
  Removing libpam-systemd:amd64 rather than change systemd-sysv:amd64
Done
The following packages will be REMOVED:
  libpam-systemd systemd-sysv
Remv libpam-systemd [252.38-1~deb12u1]
Remv systemd-sysv [252.38-1~deb12u1]
Inst sysvinit-core (3.06-4 Debian:12.15/oldstable [amd64])
Conf sysvinit-core (3.06-4 Debian:12.15/oldstable [amd64])
"""
    removed, why = progress.apt_removals(sim)
    expect("apt: the packages it would remove and the reasons",
           removed == ["libpam-systemd", "systemd-sysv"] and why == [
               "sysvinit-core conflicts with systemd-sysv",
               "libpam-systemd depends on systemd-sysv, which apt wants to remove or change"], f"{removed} {why}")
    removed, why = progress.apt_removals("Inst bc (1.07.1-3+b1 Debian:12.15/oldstable [amd64])\nConf bc\n")
    expect("apt: an install that removes nothing", removed == [] and why == [])
    removed, _ = progress.apt_removals("E: Packages need to be removed but remove is disabled.\n")
    expect("apt: --no-remove's refusal counts as a removal", removed != [])


STUB_VM = r"""#!/usr/bin/env bash
. "$(dirname "$0")/lib.sh"
v=$2
build() { [ "${STUB_FAIL:-}" != "$v" ] || false; }
guest() { echo "$v kernel: 3 passed, 0 failed, 1 skipped"; echo "RESULT 3 0 1"; }
p() { phase "bus1.ko" build; phase "guest" guest; }
run_phases "vm-$1-$v" p
"""


def check_sh(tmp, env):
    """One run, stdout and stderr in one stream as .ci/run reads them."""
    r = subprocess.run(["bash", os.path.join(tmp, "scripts", "check.sh")], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, env=env, timeout=300)
    return r, r.stdout.splitlines()


def check_sh_tests():
    """make check's phases, counts and last line, with stub scripts for
    every phase (the guest stub is itself a run of phases, as vm.sh is)."""
    with tempfile.TemporaryDirectory() as tmp:
        sd = os.path.join(tmp, "scripts")
        os.makedirs(sd)
        # The profile plugin's decoder test is compiled and run for real (it takes well under a
        # second).
        for f in ("check.sh", "lib.sh", "progress.py", "tcg-insns.c", "tcg-lines.c", "tcg-plugin.h"):
            shutil.copy(os.path.join(HERE, f), sd)
        stubs = {
            "manifest.py": "import sys; sys.exit(0)\n",
            "test_results.py": "import os, sys; sys.exit(1 if os.environ.get('STUB_FAIL') == 'runner' else 0)\n",
            "provision.sh": "#!/bin/sh\n[ \"$STUB_FAIL\" != provision ]\n",
            "vm.sh": STUB_VM,
            "kunit.sh": "#!/bin/sh\necho 'kunit.py: 5 passed, 0 failed, 0 skipped'\n",
            "vng.sh": "#!/bin/sh\nif [ \"$STUB_FAIL\" = vng ]; then echo 'RESULT 6 1 0'; exit 2; fi\necho 'RESULT 7 0 0'\n",
            "clippy.sh": "#!/bin/sh\n",
            "packaging-test.sh": "#!/bin/sh\necho 'packaging: 4 passed, 0 failed'\n",
        }
        os.makedirs(os.path.join(tmp, "bench"))
        stubs["../bench/test_profile.py"] = "import sys; sys.exit(0)\n"
        stubs["../bench/test_report.py"] = "import sys; sys.exit(0)\n"
        # The bench tests phase runs cargo in tools/bus1.
        os.makedirs(os.path.join(tmp, "tools", "bus1"))
        for name, text in stubs.items():
            with open(os.path.join(sd, name), "w") as f:
                f.write(text)
            os.chmod(os.path.join(sd, name), 0o755)
        cache = os.path.join(tmp, "cache")
        os.makedirs(os.path.join(cache, "src", "linux-7.2.0"))
        open(os.path.join(cache, "src", "linux-7.2.0", ".rustfmt.toml"), "w").close()
        bindir = os.path.join(tmp, "bin")
        os.makedirs(bindir)
        for tool, text in (("rustfmt", "#!/bin/sh\nexit 0\n"),
                           ("cargo", "#!/bin/sh\n[ \"$STUB_FAIL\" != bench ]\n")):
            with open(os.path.join(bindir, tool), "w") as f:
                f.write(text)
            os.chmod(os.path.join(bindir, tool), 0o755)
        env = dict(os.environ, BUS1_CACHE=cache, PATH=bindir + ":" + os.environ["PATH"], STUB_FAIL="")
        # make check runs these tests inside its own phase: its position, start and step log
        # must not leak into the stub run's phases.
        for k in [k for k in env if k.startswith("BUS1_PHASE_")]:
            del env[k]

        r, lines = check_sh(tmp, env)
        # manifest 1, runner 1, debug 3+1 skip, release 3+1 skip, vng 1, kunit 5, rustfmt 1, clippy 1,
        # packaging 4, bench tests 1
        expect("check.sh: last line and exit status (stub phases)",
               lines[-1] == "21 passed, 0 failed, 2 skipped" and r.returncode == 0, "\n".join(lines[-15:]))
        heads = [l for l in lines if re.match(r"^\[\d+/11 \d\d:\d\d:\d\d \+\d\d:\d\d\] ", l)]
        expect("check.sh: eleven numbered phases, the first run without ETA",
               len(heads) == 11 and "no ETA on the first run" in heads[0] and
               heads[3].split("] ")[1].startswith("debug guest: ") and
               heads[10].split("] ")[1].startswith("bench tests: "), "\n".join(heads))
        steps = [l for l in lines if re.match(r"^  \[4/11 > [12]/2 ", l)]
        expect("check.sh: a run inside a phase shows its steps", len(steps) == 2, "\n".join(lines))
        t = lines.index(next(l for l in lines if l.startswith("bus1: phase timings")))
        expect("check.sh: the timing table before the last lines, with the steps",
               t < len(lines) - 2 and "debug guest" in lines[t + 5] and "bus1.ko" in lines[t + 6] and
               lines[t + 17].strip().startswith("total"), "\n".join(lines[t:]))

        r, lines = check_sh(tmp, env)
        heads = [l for l in lines if re.match(r"^\[\d+/11 ", l)]
        expect("check.sh: the second run has an ETA", all(": ETA " in h for h in heads), "\n".join(heads))

        r, lines = check_sh(tmp, dict(env, STUB_FAIL="debug"))
        expect("check.sh: a guest run without a result fails, the others still run",
               "FAIL [debug] the debug run produced no result (build or boot failure above)" in lines and
               lines[-1] == "18 passed, 1 failed, 1 skipped" and r.returncode == 1 and
               any(re.search(r"^\s+4\s+debug guest\s.*exit 1$", l) for l in lines) and
               any(re.search(r"^\s+bus1\.ko\s.*exit 1$", l) for l in lines), "\n".join(lines))

        r, lines = check_sh(tmp, dict(env, STUB_FAIL="vng"))
        expect("check.sh: a failed vng run is one failure",
               "FAIL [vng] make vng (release kernel under virtme-ng) (output above)" in lines and
               lines[-1] == "20 passed, 1 failed, 2 skipped" and r.returncode == 1, "\n".join(lines))

        r, lines = check_sh(tmp, dict(env, STUB_FAIL="bench"))
        expect("check.sh: failed bench tests are one failure",
               "FAIL [bench] bench/test_report.py, cargo test -p bus1-bench (output above)" in lines and
               lines[-1] == "20 passed, 1 failed, 2 skipped" and r.returncode == 1, "\n".join(lines))

        r, lines = check_sh(tmp, dict(env, STUB_FAIL="provision"))
        expect("check.sh: without provisioning nothing else runs",
               lines[-1] == "2 passed, 1 failed, 0 skipped" and r.returncode == 1 and
               sum(1 for l in lines if "not run" in l) == 8, "\n".join(lines))


def fail_verdict(msg):
    v = results.Verdict("x")
    v.fail(msg)
    return v


if __name__ == "__main__":
    sys.exit(main())
