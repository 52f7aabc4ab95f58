#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Offline tests of the runner's judge (scripts/results.py, splats.py,
manifest.py): crafted guest logs, one per way a run can go wrong, each of
which must fail with a message naming what is missing; and a clean log of
the whole manifest, which must pass. `make check` runs this first.

The logs are generated from scripts/tests.manifest in the formats the guest
produces (guest-init.sh's @@ protocol, the kselftest harness's TAP, KUnit's
debugfs KTAP, the Rust TAP harness), so they follow the manifest as it grows.
"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import manifest as mf  # noqa: E402
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


def program_section(p, variant, keep=None, plan=None, rc=0, secs=3, skip=(), fail=(), extra=()):
    """A kselftest or Rust TAP program's output; keep: how many results it prints."""
    cases = list(p.cases) + list(extra)
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
    for p in progs:
        for name, params in first.get(p.name, []):
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
        sum(len(p.cases) for p in mf.guest_programs(MANIFEST))


def main():
    n_debug = guest_cases("debug")
    n_debug_skips = sum(1 for p in MANIFEST for c in p.cases if "debug" in p.skip.get(c, set()))
    n_release_skips = sum(1 for p in MANIFEST for c in p.cases if "release" in p.skip.get(c, set()))

    v = judge("debug", guest_log("debug"))
    check("clean debug run passes", v, False)
    if v.skipped != n_debug_skips or v.passed + v.skipped != n_debug:
        check(f"clean debug run counts {n_debug} cases, {n_debug_skips} skips", v, True, "never")
    v = judge("release", guest_log("release"))
    check("clean release run passes with the allowed skips", v, False)
    if v.skipped != n_release_skips or v.passed + v.skipped != n_debug:
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
        for d in ("scripts", "bus1", "rust", "tools/testing/selftests/bus1"):
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

    print(f"# {'FAILED' if FAILS else 'PASSED'}: {RUN - FAILS} of {RUN} runner tests passed")
    return 1 if FAILS else 0


def fail_verdict(msg):
    v = results.Verdict("x")
    v.fail(msg)
    return v


if __name__ == "__main__":
    sys.exit(main())
