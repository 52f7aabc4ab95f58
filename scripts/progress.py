#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Progress output of the long runs (make check, make run, make kernels).

  progress.py begin STATE TIMINGS NAME...   start a run of named phases
  progress.py header STATE N                print phase N's header (1-based)
  progress.py end STATE N RC                record phase N's duration
  progress.py skip STATE N                  phase N was not run
  progress.py table STATE                   the per-phase timing table
  progress.py stream --label L [--console C] RESULTS
                                            follow a guest's results as it writes them
  progress.py apt-removals [PKG...] < apt-get -s output
                                            exit 1, explaining, if apt would remove a package

The phases themselves are run by scripts/lib.sh (run_phases, phase); this
file keeps their state and does the arithmetic. TIMINGS (a JSON file under
$BUS1_CACHE/timings/) holds each phase's duration from the last run that ran
it; the ETA at a phase's start is the sum of those durations over the phases
still to run. A run inside a phase of another run (vm.sh inside make check)
prints its phases as steps of the outer one: "[4/9 > 2/7 ...]", with no ETA
and no table of its own; its steps appear in the outer table.

The guest stream only shows what the guest reports as it reports it; the
verdict on a run stays with scripts/results.py.
"""
import json
import os
import re
import signal
import sys
import time

HEADER_WIDTH = 22


def fmt_secs(secs, width=1):
    """Seconds as m:ss (mm:ss with width=2), or h:mm:ss from an hour on."""
    secs = int(round(secs))
    h, rest = divmod(secs, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:0{width}d}:{s:02d}"


def clock(t):
    return time.strftime("%H:%M:%S", time.localtime(t))


def load_timings(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float))} if isinstance(data, dict) else {}


def save_timings(path, timings):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(timings, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def eta_text(names, prev, index, now, timings_path=""):
    """The ETA part of phase `index`'s header (0-based), from the previous
    durations `prev` of the phases index.. still to run."""
    rest = names[index:]
    known = [prev[n] for n in rest if n in prev]
    unknown = [n for n in rest if n not in prev]
    if not known:
        where = f" (phase timings are kept in {timings_path})" if timings_path and index == 0 else ""
        if not prev:
            return "no ETA on the first run" + where
        return "no ETA: no previous timing for " + ", ".join(unknown)
    left = sum(known)
    if unknown:
        return (f"ETA {clock(now + left)} or later ({fmt_secs(left)} left by the previous run, "
                f"no previous timing for {', '.join(unknown)})")
    return f"ETA {clock(now + left)} ({fmt_secs(left)} left by the previous run)"


def header_text(state, index, now):
    """'[3/9 12:04:31 +05:12] release guest: ETA ...' (index 0-based)."""
    names = state["names"]
    name = names[index]
    elapsed = fmt_secs(now - state["t0"], 2)
    if state.get("prefix"):
        pos = f"{state['prefix']} > {index + 1}/{len(names)}"
        prev = state["prev"].get(name)
        tail = f" (previous run {fmt_secs(prev)})" if prev is not None else ""
        return f"[{pos} {clock(now)} +{elapsed}] {name}{tail}"
    return (f"[{index + 1}/{len(names)} {clock(now)} +{elapsed}] {name}: "
            + eta_text(names, state["prev"], index, now, state.get("timings", "")))


def table_lines(state, subs=()):
    """The per-phase timing table. subs: (outer position, step name, secs, rc)
    rows of runs nested in a phase, shown under it."""
    names = state["names"]
    done = {int(k): v for k, v in state.get("done", {}).items()}
    prev = state["prev"]
    w = max([len("phase")] + [len(n) for n in names] + [len(s[1]) + 2 for s in subs])
    out = [f"  {'#':>3}  {'phase':<{w}}  {'took':>8}  {'previous':>8}"]
    total = prev_total = 0.0
    for i, n in enumerate(names):
        d = done.get(i)
        took = "not run" if d is None or d.get("skipped") else fmt_secs(d["secs"])
        p = fmt_secs(prev[n]) if n in prev else "-"
        note = f"  exit {d['rc']}" if d and not d.get("skipped") and d.get("rc") else ""
        out.append(f"  {i + 1:>3}  {n:<{w}}  {took:>8}  {p:>8}{note}")
        if d is not None and not d.get("skipped"):
            total += d["secs"]
            prev_total += prev.get(n, 0.0)
        for pos, step, secs, rc in subs:
            if pos == f"{i + 1}/{len(names)}":
                note = f"  exit {rc}" if rc else ""
                out.append(f"  {'':>3}    {step:<{w - 2}}  {fmt_secs(secs):>8}{note}")
    out.append(f"  {'':>3}  {'total':<{w}}  {fmt_secs(total):>8}  {fmt_secs(prev_total) if prev else '-':>8}")
    return out


def read_state(path):
    with open(path) as f:
        return json.load(f)


def write_state(path, state):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def read_subs(path):
    subs = []
    try:
        with open(path) as f:
            for line in f:
                p = line.rstrip("\n").split("\t")
                if len(p) == 4:
                    subs.append((p[0], p[1], float(p[2]), int(p[3])))
    except (OSError, ValueError):
        pass
    return subs


def cmd_begin(argv):
    path, timings, names = argv[0], argv[1], argv[2:]
    prefix = os.environ.get("BUS1_PHASE_PREFIX", "")
    t0 = float(os.environ.get("BUS1_PHASE_T0") or time.time()) if prefix else time.time()
    state = {"names": names, "prev": load_timings(timings), "t0": t0, "timings": timings,
             "prefix": prefix, "sublog": os.environ.get("BUS1_PHASE_SUBLOG", "") if prefix else "",
             "starts": {}, "done": {}}
    write_state(path, state)


def cmd_header(argv):
    path, i = argv[0], int(argv[1]) - 1
    state = read_state(path)
    now = time.time()
    state["starts"][str(i)] = now
    write_state(path, state)
    print(("  " if state.get("prefix") else "") + header_text(state, i, now), flush=True)


def cmd_end(argv):
    path, i, rc = argv[0], int(argv[1]) - 1, int(argv[2])
    state = read_state(path)
    start = state["starts"].get(str(i))
    if start is None or str(i) in state["done"]:
        return
    secs = time.time() - start
    state["done"][str(i)] = {"secs": secs, "rc": rc}
    write_state(path, state)
    name = state["names"][i]
    timings = load_timings(state["timings"])
    timings[name] = round(secs, 1)
    save_timings(state["timings"], timings)
    if state.get("sublog"):
        with open(state["sublog"], "a") as f:
            f.write(f"{state['prefix']}\t{name}\t{secs:.1f}\t{rc}\n")


def cmd_skip(argv):
    path, i = argv[0], int(argv[1]) - 1
    state = read_state(path)
    state["done"].setdefault(str(i), {"skipped": True})
    write_state(path, state)


def cmd_table(argv):
    state = read_state(argv[0])
    if state.get("prefix"):
        return
    print(f"bus1: phase timings (this run; the previous run's are in {state['timings']})")
    print("\n".join(table_lines(state, read_subs(argv[0] + ".sub"))), flush=True)


# The guest stream --------------------------------------------------------

RESULT = re.compile(r"^(\s*)(not ok|ok)\s+(\d+)\b(.*)$")
PLAN = re.compile(r"^(\s*)1\.\.(\d+)")
DIRECTIVE = re.compile(r"#\s*(SKIP|TODO|XFAIL|XPASS)\b", re.I)


class Stream:
    """Turns guest-init.sh's results protocol, line by line, into progress
    lines: each TAP result as it arrives (KUnit suites summarised, their
    failed cases shown), with the comment lines before a failure, and a
    summary of each program when it ends."""

    def __init__(self, label):
        self.label = label
        self.section = None
        self.counts = None
        self.comments = []
        self.last = None

    def _out(self, now, text):
        return f"  [{self.label} {clock(now)}] {text}"

    def feed(self, raw, now):
        line = raw.rstrip("\r\n")
        self.last = now
        out = []
        if line.startswith("@@BEGIN "):
            parts = line.split(" ", 2)
            self.section = (parts[1], parts[2] if len(parts) > 2 else "", now)
            self.counts = {"ok": 0, "not ok": 0, "skip": 0, "lines": 0}
            self.comments = []
            if parts[1] not in ("kunit", "kmemleak"):
                out.append(self._out(now, f"{parts[1]} {self.section[1]}: started"))
            return out
        if line.startswith("@@END ") and self.section:
            kind, name, _t0 = self.section
            attrs = dict(re.findall(r"(\w+)=(-?\d+)", line))
            c = self.counts
            what = f"{c['ok']} ok, {c['not ok']} not ok, {c['skip']} skipped"
            rc = attrs.get("rc", "?")
            tail = f"; exit {rc} after {attrs.get('secs', '?')} s" + \
                (f" (timeout {attrs['timeout']} s)" if "timeout" in attrs else "")
            if kind == "kmemleak":
                what = f"report of {c['lines']} lines" if c["lines"] else "empty report"
            if kind in ("kunit", "kmemleak") and rc == "0":
                tail = ""
            out.append(self._out(now, f"{kind} {name}: {what}{tail}"))
            self.section = None
            return out
        if self.section:
            kind = self.section[0]
            if line.strip():
                self.counts["lines"] += 1
            m = RESULT.match(line)
            if m:
                nested = bool(m.group(1))
                if kind == "kunit" and not nested:
                    return out  # the suite line; summarised at @@END
                d = DIRECTIVE.search(m.group(4))
                if d and d.group(1).upper() == "SKIP":
                    self.counts["skip"] += 1
                else:
                    self.counts[m.group(2)] += 1
                failed = m.group(2) == "not ok" and not (d and d.group(1).upper() == "SKIP")
                if failed:
                    out += [self._out(now, "    " + c.strip()) for c in self.comments[-8:]]
                if kind != "kunit" or failed:
                    out.append(self._out(now, f"  {self.section[1]}: {line.strip()}"))
                self.comments = []
            elif PLAN.match(line) or line.lstrip().startswith(("TAP version", "KTAP version")):
                self.comments = []
            elif line.lstrip().startswith("#") and not line.lstrip().startswith(("# Subtest:", "# module:")):
                self.comments.append(line)
                del self.comments[:-8]
            elif line.startswith("Bail out!"):
                out.append(self._out(now, f"  {self.section[1]}: {line}"))
            return out
        if line.startswith("@@INSMOD "):
            ok = "rc=0" in line
            out.append(self._out(now, "insmod bus1.ko: " + ("loaded (its KUnit suites ran at load)" if ok
                                                           else f"FAILED ({line[9:]})")))
        elif line.startswith("@@RELOAD "):
            w = line.split(" ", 3)
            ok = len(w) > 2 and w[2] == "rc=0"
            out.append(self._out(now, f"bus1.ko reloaded ({w[1]}): {w[3] if len(w) > 3 else ''}" if ok
                                 else f"bus1.ko reload FAILED: {line[9:]}"))
        elif line.startswith("@@KMEMLEAK "):
            out.append(self._out(now, "kmemleak: " + line[11:]))
        elif line.startswith("@@TAINT "):
            out.append(self._out(now, f"taint {line[8:]}"))
        elif line.startswith("@@DONE"):
            out.append(self._out(now, "guest finished; the verdict follows (scripts/results.py)"))
        return out

    def idle(self, now, since, console_tail=""):
        """A heartbeat line after `since` seconds without results."""
        where = f"in {self.section[0]} {self.section[1]} (started {clock(self.section[2])})" \
            if self.section else "between programs" if self.last else "booting, loading bus1"
        last = f"; console: {console_tail.strip()[:120]}" if console_tail.strip() else ""
        return self._out(now, f"... {fmt_secs(since)} without results, {where}{last}")


def console_tail(path):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = [l for l in f.read().decode(errors="replace").replace("\r", "").split("\n") if l.strip()]
        return lines[-1] if lines else ""
    except OSError:
        return ""


def cmd_stream(argv):
    import argparse
    ap = argparse.ArgumentParser(prog="progress.py stream")
    ap.add_argument("--label", required=True)
    ap.add_argument("--console")
    ap.add_argument("--parent", type=int)
    ap.add_argument("--heartbeat", type=float, default=60.0)
    ap.add_argument("results")
    a = ap.parse_args(argv)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    s = Stream(a.label)
    pos, buf = 0, b""
    quiet_since = time.time()
    beat = quiet_since
    while True:
        final = bool(stop)
        try:
            with open(a.results, "rb") as f:
                f.seek(pos)
                data = f.read()
        except OSError:
            data = b""
        pos += len(data)
        buf += data
        *lines, buf = buf.split(b"\n")
        if final and buf:
            lines, buf = lines + [buf], b""
        now = time.time()
        for l in lines:
            for o in s.feed(l.decode(errors="replace"), now):
                print(o, flush=True)
        if lines:
            quiet_since = beat = now
        elif now - beat >= a.heartbeat:
            beat = now
            print(s.idle(now, now - quiet_since, console_tail(a.console) if a.console else ""), flush=True)
        if final:
            return 0
        if a.parent:
            try:
                os.kill(a.parent, 0)
            except OSError:
                stop.append(1)
                continue
        time.sleep(0.5)


# apt ----------------------------------------------------------------------

def apt_removals(text):
    """From `apt-get -s install -o Debug::pkgProblemResolver=true` output: the
    packages apt would remove, and the resolver's reasons ("Broken ..."
    conflicts and "Removing A rather than change B")."""
    removed = [m.group(1) for m in re.finditer(r"^Remv (\S+)", text, re.M)]
    reasons = []
    for line in text.splitlines():
        m = re.match(r"^Broken (\S+?)(?::\S+)? (Conflicts|Breaks) on (\S+?)(?::\S+)? ", line)
        if m:
            r = f"{m.group(1)} {m.group(2).lower()} with {m.group(3)}"
        else:
            m = re.match(r"^\s*Removing (\S+?)(?::\S+)? rather than change (\S+?)(?::\S+)?$", line)
            if not m:
                continue
            r = f"{m.group(1)} depends on {m.group(2)}, which apt wants to remove or change"
        if r not in reasons:
            reasons.append(r)
    if "E: Packages need to be removed but remove is disabled." in text and not removed:
        removed = ["(apt did not name them)"]
    return removed, reasons


def cmd_apt_removals(argv):
    removed, reasons = apt_removals(sys.stdin.read())
    if not removed:
        return 0
    print(f"installing {' '.join(argv) or 'the missing packages'} would remove {len(removed)} installed "
          f"package(s): {' '.join(removed)}")
    if reasons:
        print("apt's reasons (its problem resolver):")
        for r in reasons[:15]:
            print(f"  {r}")
        if len(reasons) > 15:
            print(f"  ... and {len(reasons) - 15} more (see the log)")
    print("bus1 never removes a host package. Decide what may go and install the packages yourself "
          "(apt-get install --no-install-recommends ...), then run make again.")
    return 1


def main(argv):
    cmds = {"begin": cmd_begin, "header": cmd_header, "end": cmd_end, "skip": cmd_skip,
            "table": cmd_table, "stream": cmd_stream, "apt-removals": cmd_apt_removals}
    if not argv or argv[0] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[argv[0]](argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
