#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The analysis of `make profile` (scripts/profile.sh): kernel instructions
per iteration of each case of bench/profile-loop.c, in total and per
function.

Inputs:
- the plugin's output (scripts/tcg-insns.c): per marker "mark K", then
  "pc executions insns locked accesses" per kernel translation block run
  since the marker before (locked: how many of its instructions are locked,
  atomic read-modify-writes; accesses: the memory accesses of those
  executions; each absent from the output of older versions of the plugin,
  which then reports no such counts); with the phase split, each "mark K"
  line is followed by "phase serial tail wakes switches serial_blocks
  tail_blocks", the plugin's running totals of the instructions from a
  switch into a task until it calls try_to_wake_up() and from there until
  the next switch, of both events, and of the translation blocks of each
  phase; and each block line has a sixth column, how many of its executions
  began in the serial part;
- the guest output: "PROFILE-KSYM <kallsyms line>" for the kernel's _text
  and every bus1 symbol, "PROFILE-MODULE <the bus1 line of /proc/modules>",
  "PROFILE-CASE <case> <size> <n> <mark> [<destinations> [<processes>]]"
  per case (its n measured iterations end at marker <mark> and begin at the
  one before it; each iteration's message goes to <destinations> receivers,
  1 if absent; <processes> is 2 for a round trip of two processes, where an
  iteration is one round trip, and 1 if absent),
  "PROFILE-DONE <markers>";
- the kernel's System.map;
- optionally, of a second guest with two vCPUs that ran the round trips with
  the parent on CPU 0 and the child on CPU 1, its output and the output of
  the cache-line plugin (scripts/tcg-lines.c): per marker "mark K", then
  "total loads stores", then "pc loads stores" per instruction (pc 1: user
  space) that moved cache lines between the CPUs since the marker before.

A translation block counts for the function its first instruction is in:
the nearest text symbol at or below it (System.map moved by where the guest
reports _text, so KASLR does not matter; bus1's own symbols from the guest's
kallsyms, within the module's range in /proc/modules). Rust symbols (v0
mangling, as the kernel's Rust is built) are demangled here as
llvm-cxxfilt and rustc-demangle print them, then every path is cut to its
last two components.
"""
import argparse
import bisect
import collections
import re
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
        elif kind == "PROFILE-CASE" and len(f) in (4, 5, 6):
            g["cases"].append({"case": f[0], "size": int(f[1]), "n": int(f[2]), "mark": int(f[3]),
                               "dests": int(f[4]) if len(f) >= 5 else 1,
                               "procs": int(f[5]) if len(f) == 6 else 1})
        elif kind == "PROFILE-DONE" and len(f) == 1:
            g["done"] = int(f[0])
        elif kind == "PROFILE-INFO":
            g["info"].append(rest)
        elif kind == "PROFILE-ERROR":
            raise ProfileError("the guest program failed: " + rest)
    return g


def parse_insns(lines):
    """The plugin's output: {mark: [(pc, executions, insns, locked, accesses), ...]}, locked and
    accesses None where the line has no such column."""
    marks, cur = {}, None
    for no, line in enumerate(lines, 1):
        f = line.split()
        if not f:
            continue
        if f[0] == "mark" and len(f) == 2:
            cur = marks.setdefault(int(f[1]), [])
        elif f[0] == "phase":
            continue
        elif len(f) in (3, 4, 5, 6) and cur is not None:
            cur.append((int(f[0], 16), int(f[1]), int(f[2]), int(f[3]) if len(f) >= 4 else None,
                        int(f[4]) if len(f) >= 5 else None))
        else:
            raise ProfileError(f"plugin output line {no}: cannot parse {line.strip()!r}")
    return marks


def parse_serial(lines):
    """The serial-part executions of the plugin's output (the sixth column of a block line):
    {mark: [(pc, serial executions, insns), ...]}; empty if the plugin did not count them."""
    marks, cur = {}, None
    for line in lines:
        f = line.split()
        if f and f[0] == "mark" and len(f) == 2:
            cur = int(f[1])
        elif len(f) == 6 and cur is not None:
            marks.setdefault(cur, []).append((int(f[0], 16), int(f[5]), int(f[2])))
    return marks


def parse_phases(lines):
    """The phase lines of the plugin's output: {mark: (serial, tail, wakes, switches,
    serial_blocks, tail_blocks)}, the plugin's running totals at each marker; empty if the
    plugin did not split phases."""
    phases, cur = {}, None
    for no, line in enumerate(lines, 1):
        f = line.split()
        if f and f[0] == "mark" and len(f) == 2:
            cur = int(f[1])
        elif f and f[0] == "phase":
            if len(f) != 7 or cur is None:
                raise ProfileError(f"plugin output line {no}: cannot parse {line.strip()!r}")
            phases[cur] = tuple(int(x) for x in f[1:])
    return phases


def parse_lines(lines):
    """The cache-line plugin's output: {mark: [(pc, loads, stores), ...]}, with pc 1 for user
    space; the "total" lines must agree with the sum of the rest."""
    marks, totals, cur = {}, {}, None
    for no, line in enumerate(lines, 1):
        f = line.split()
        if not f:
            continue
        if f[0] == "mark" and len(f) == 2:
            cur = int(f[1])
            marks[cur] = []
        elif f[0] == "total" and len(f) == 3 and cur is not None:
            totals[cur] = (int(f[1]), int(f[2]))
        elif len(f) == 3 and cur is not None:
            marks[cur].append((int(f[0], 16), int(f[1]), int(f[2])))
        else:
            raise ProfileError(f"cache-line output line {no}: cannot parse {line.strip()!r}")
    for m, rows in marks.items():
        got = (sum(r[1] for r in rows), sum(r[2] for r in rows))
        if totals.get(m) != got:
            raise ProfileError(f"cache-line output, mark {m}: total {totals.get(m)}, its lines add up to {got}")
    return marks


USER = "[user space]"


def check_marks(guest, marks, who):
    """That `who`'s program finished, that the plugin saw every marker it executed, and that
    each case's segment is there."""
    if guest["done"] is None:
        raise ProfileError(f"{who} program did not finish (no PROFILE-DONE)")
    have = max(marks) if marks else 0
    if have != guest["done"] or sorted(marks) != list(range(1, have + 1)):
        raise ProfileError(f"{who} executed {guest['done']} markers, the plugin saw {have}")
    for c in guest["cases"]:
        if c["mark"] - 1 not in marks or c["mark"] not in marks:
            raise ProfileError(f"case {c['case']}:{c['size']}: no marker {c['mark']} or the one before it")


def analyse_lines(guest, marks, syms):
    """Per round-trip case of the two-CPU guest: the cache lines moved between the CPUs per
    round trip (by loads, by stores), the part that bus1.ko's instructions moved, and per
    function."""
    check_marks(guest, marks, "the two-CPU guest")
    res = []
    for c in guest["cases"]:
        if c["procs"] != 2:
            continue
        n, per = c["n"], collections.Counter()
        loads = stores = 0
        for pc, ld, st in marks[c["mark"]]:
            per[(USER, False) if pc == 1 else syms.lookup(pc)] += ld + st
            loads += ld
            stores += st
        res.append(dict(c, lines=(loads + stores) / n, loads=loads / n, stores=stores / n,
                        bus1=sum(v for (_, m), v in per.items() if m) / n,
                        funcs={k: v / n for k, v in per.items()}))
    if not res:
        raise ProfileError("the two-CPU guest output lists no round trip")
    return res


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
        # The phase split's addresses come from System.map as it is.
        self.moved = off != 0
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
    """Instructions and locked instructions per (function, in_bus1) of one segment; the
    second is None if a block has no locked count."""
    c, locked = collections.Counter(), collections.Counter()
    known = True
    for pc, n, insns, lk, _ in blocks:
        f = syms.lookup(pc)
        c[f] += n * insns
        if lk is None:
            known = False
        elif lk:
            locked[f] += n * lk
    return c, (locked if known else None)


BASIC = {"a": "i8", "b": "bool", "c": "char", "d": "f64", "e": "str", "f": "f32", "h": "u8", "i": "isize",
         "j": "usize", "l": "i32", "m": "u32", "n": "i128", "o": "u128", "s": "i16", "t": "u16", "u": "()",
         "v": "...", "x": "i64", "y": "u64", "z": "!", "p": "_"}
B62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


class _V0:
    """A Rust v0 symbol (RFC 2603) after its "_R", printed as rustc-demangle and
    llvm-cxxfilt print it by default (no crate hashes)."""

    def __init__(self, s):
        self.s, self.i, self.depth, self.bound = s, 0, 0, 0

    def peek(self):
        return self.s[self.i] if self.i < len(self.s) else ""

    def next(self):
        c = self.peek()
        if not c:
            raise ValueError("truncated")
        self.i += 1
        return c

    def eat(self, c):
        if self.peek() == c:
            self.i += 1
            return True
        return False

    def b62(self):
        if self.eat("_"):
            return 0
        x = 0
        while True:
            c = self.next()
            if c == "_":
                return x + 1
            x = x * 62 + B62.index(c)

    def opt_b62(self, tag):
        return self.b62() + 1 if self.eat(tag) else 0

    def decimal(self):
        if self.eat("0"):
            return 0
        j = self.i
        while self.peek().isdigit():
            self.i += 1
        if j == self.i:
            raise ValueError("number expected")
        return int(self.s[j:self.i])

    def ident(self):
        dis = self.opt_b62("s")
        if self.eat("u"):
            raise ValueError("punycode")
        n = self.decimal()
        self.eat("_")
        name = self.s[self.i:self.i + n]
        if len(name) != n:
            raise ValueError("truncated")
        self.i += n
        return name, dis

    def backref(self, fn, *args):
        pos = self.b62()
        if pos >= self.i - 1 or self.depth > 100:
            raise ValueError("bad backref")
        saved, self.i = self.i, pos
        self.depth += 1
        try:
            return fn(*args)
        finally:
            self.i, self.depth = saved, self.depth - 1

    def path(self, value):
        c = self.next()
        if c == "C":
            return self.ident()[0]
        if c == "N":
            ns = self.next()
            inner = self.path(value)
            name, dis = self.ident()
            if ns.isupper():
                kind = {"C": "closure", "S": "shim"}.get(ns, ns)
                return f"{inner}::{{{kind}{':' + name if name else ''}#{dis}}}"
            return f"{inner}::{name}" if name else inner
        if c in "MXY":
            if c != "Y":
                self.opt_b62("s")
                self.path(False)  # the impl's own path is not shown
            t = self.type()
            if c == "M":
                return f"<{t}>"
            return f"<{t} as {self.path(False)}>"
        if c == "I":
            p = self.path(value)
            args = []
            while not self.eat("E"):
                args.append(self.generic_arg())
            return f"{p}{'::' if value else ''}<{', '.join(args)}>"
        if c == "B":
            return self.backref(self.path, value)
        raise ValueError(f"path tag {c!r}")

    def generic_arg(self):
        if self.eat("L"):
            return self.lifetime(self.b62())
        if self.eat("K"):
            return self.const()
        return self.type()

    def lifetime(self, n):
        """Lifetime n: 0 is erased, others count outwards from the innermost bound one."""
        if n == 0 or n > self.bound:
            return "'_"
        d = self.bound - n
        return "'" + B62[10 + d] if d < 26 else f"'_{d}"

    def binder(self, body):
        """A "for<'a, ...>" binder, if any, around body()."""
        n = self.opt_b62("G")
        if not n:
            return body()
        self.bound += n
        try:
            names = ", ".join(self.lifetime(k) for k in range(n, 0, -1))
            return f"for<{names}> " + body()
        finally:
            self.bound -= n

    def const(self):
        if self.eat("B"):
            return self.backref(self.const)
        if self.eat("p"):
            return "_"
        t = self.next()
        neg = self.eat("n")
        j = self.s.index("_", self.i)
        h, self.i = self.s[self.i:j], j + 1
        v = int(h, 16) if h else 0
        if t == "b":
            return "true" if v else "false"
        if t == "c":
            return repr(chr(v))
        return str(-v if neg else v)

    def fn_sig(self):
        pre = "unsafe " if self.eat("U") else ""
        if self.eat("K"):
            abi = "C" if self.eat("C") else self.ident()[0].replace("_", "-")
            pre += f'extern "{abi}" '
        ts = []
        while not self.eat("E"):
            ts.append(self.type())
        ret = self.type()
        return f"{pre}fn({', '.join(ts)})" + ("" if ret == "()" else f" -> {ret}")

    def dyn_traits(self):
        traits = []
        while not self.eat("E"):
            p = self.path(False)
            binds = []
            while self.eat("p"):
                name = self.ident()[0]
                binds.append(f"{name} = {self.type()}")
            if binds:
                p = p[:-1] + ", " + ", ".join(binds) + ">" if p.endswith(">") else p + "<" + ", ".join(binds) + ">"
            traits.append(p)
        return " + ".join(traits)

    def type(self):
        c = self.next()
        if c in BASIC:
            return BASIC[c]
        if c == "A":
            t = self.type()
            return f"[{t}; {self.const()}]"
        if c == "S":
            return f"[{self.type()}]"
        if c == "T":
            ts = []
            while not self.eat("E"):
                ts.append(self.type())
            return "(" + ", ".join(ts) + ("," if len(ts) == 1 else "") + ")"
        if c in "RQ":
            lt = self.lifetime(self.b62()) + " " if self.eat("L") else ""
            if lt == "'_ ":
                lt = ""
            return "&" + lt + ("mut " if c == "Q" else "") + self.type()
        if c in "PO":
            return ("*const " if c == "P" else "*mut ") + self.type()
        if c == "F":
            return self.binder(self.fn_sig)
        if c == "D":
            t = "dyn " + self.binder(self.dyn_traits)
            if self.eat("L"):
                self.b62()
            return t
        if c == "B":
            return self.backref(self.type)
        self.i -= 1
        return self.path(False)


def demangle_v0(sym):
    if not sym.startswith("_R"):
        return sym
    p = _V0(sym[2:])
    try:
        if p.peek().isdigit():
            p.decimal()
        return p.path(True)
    except (ValueError, IndexError):
        return sym


PATH = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]*::)+[A-Za-z_][A-Za-z0-9_]*")


def shorten(name):
    """A demangled name with every path cut to its last two components:
    <bus1_main::peer::Peer as bus1_main::ext::miscdevice::MiscDevice>::ioctl
    becomes <peer::Peer as miscdevice::MiscDevice>::ioctl."""
    return PATH.sub(lambda m: "::".join(m.group(0).split("::")[-2:]), name)


def demangle(names):
    """{symbol: readable name}: Rust v0 symbols demangled and shortened, other
    names as they are. A suffix after the first '.' (.llvm.N, .cold) is kept."""
    res = {}
    for n in names:
        head = n.split(".", 1)[0]
        d = demangle_v0(head)
        res[n] = (shorten(d) if d != head else head) + n[len(head):]
    return res


TITLES = {
    "bus1": "SEND a->b, RECV at b, read the payload, SLICE_RELEASE at b (two peers)",
    "bus1_tx": "one TRANSACT (release the last slice, send to itself, receive), read the payload",
    "bus1_mcast": "one SEND from a to a node of each of {dests} receivers, then at each RECV, read the payload, "
                  "SLICE_RELEASE",
    "bus1_recv1": "SEND a->b, then b takes it with one TRANSACT (release the last slice, receive), read the "
                  "payload (two peers)",
    "bus1_mcast_recv1": "one SEND from a to a node of each of {dests} receivers, then at each one TRANSACT "
                        "(release the last slice, receive), read the payload",
    "unix": "AF_UNIX SOCK_SEQPACKET send, recv (MSG_DONTWAIT), read the payload",
    "bus1_rtt": "round trip of two processes, RFC v1: each side SEND, then poll, RECV, read the payload, "
                "SLICE_RELEASE",
    "bus1_tx_rtt": "round trip of two processes, one TRANSACT per message on each side (release the last "
                   "slice, send to the other, receive with WAIT), read the payload",
    "bus1_tx_xuid_rtt": "bus1_tx_rtt between peers of two users, each message charged through the "
                        "uid-to-uid quota",
    "unix_rtt": "round trip of two processes, AF_UNIX SOCK_SEQPACKET: each side send, blocking recv, read the "
                "payload",
}
# The round trip every round trip is rated against, at the same size.
RTT_BASE = "unix_rtt"
# The unicast each multicast case is rated against (its receivers take their
# copies the same way), at the same size.
MCAST_BASE = {"bus1_mcast": "bus1", "bus1_mcast_recv1": "bus1_recv1"}


def multicast(results):
    """Per multicast case (more than one destination), what one more destination costs: the
    marginal kernel instructions per destination, (multicast - unicast) / (destinations - 1),
    against the unicast whose receiver takes its message the same way (`MCAST_BASE`: the
    `bus1` case for `bus1_mcast`) of the same size, in total, in bus1.ko and per function, as
    bus1-bench's mcast figure rates the time of a destination against a unicast."""
    uni = {(r["case"], r["size"]): r for r in results if r["dests"] == 1}
    res = []
    for r in results:
        if r["dests"] < 2:
            continue
        base = MCAST_BASE.get(r["case"], "bus1")
        u = uni.get((base, r["size"]))
        if u is None:
            raise ProfileError(f"case {r['case']}:{r['size']}: no unicast ({base}) case of that size to compare with")
        k = r["dests"] - 1
        funcs = {f: (r["funcs"].get(f, 0) - u["funcs"].get(f, 0)) / k for f in set(r["funcs"]) | set(u["funcs"])}
        marginal = (r["total"] - u["total"]) / k
        locked = None
        if r["locked"] is not None and u["locked"] is not None:
            locked = (r["locked"] - u["locked"]) / k
        res.append({"case": r["case"], "size": r["size"], "dests": r["dests"], "base": base, "unicast": u["total"],
                    "total": r["total"], "marginal": marginal, "marginal_bus1": (r["bus1"] - u["bus1"]) / k,
                    "ratio": marginal / u["total"], "funcs": funcs, "locked": locked})
    return res


def analyse(guest, marks, syms, phases=None, serial=None):
    """Per case: total, bus1.ko part and per-function instructions per iteration; for a round
    trip with the plugin's phase split (`phases`, see parse_phases), the serial part and the
    tail per round trip, and the wake-ups and switches, None without it (or when the kernel did
    not run where System.map says, where the split's addresses came from); with the serial
    executions of each block (`serial`, see parse_serial), the serial part by function, which
    must add up to the phase split's serial part."""
    if syms.moved:
        phases = serial = None
    check_marks(guest, marks, "the guest")
    if not guest["cases"]:
        raise ProfileError("the guest output lists no case")
    res = []
    for c in guest["cases"]:
        per, locked = attribute(marks[c["mark"]], syms)
        n = c["n"]
        total = sum(per.values())
        r = dict(c, total=total / n, bus1=sum(v for (_, m), v in per.items() if m) / n,
                 blocks=sum(e for _, e, _, _, _ in marks[c["mark"]]) / n,
                 funcs={k: v / n for k, v in per.items()}, locked=None, locked_bus1=None, locked_funcs={},
                 **accesses(marks[c["mark"]], syms, n))
        r.update(serial=None, tail=None, wakes=None, switches=None, serial_blocks=None, tail_blocks=None,
                 serial_funcs=None)
        a, b = (phases or {}).get(c["mark"] - 1), (phases or {}).get(c["mark"])
        if c["procs"] == 2 and a and b:
            r.update(serial=(b[0] - a[0]) / n, tail=(b[1] - a[1]) / n, wakes=(b[2] - a[2]) / n,
                     switches=(b[3] - a[3]) / n, serial_blocks=(b[4] - a[4]) / n,
                     tail_blocks=(b[5] - a[5]) / n)
            if (serial or {}).get(c["mark"]):
                per_serial = collections.Counter()
                for pc, e, insns in serial[c["mark"]]:
                    if e:
                        per_serial[syms.lookup(pc)] += e * insns
                got = sum(per_serial.values())
                if got != b[0] - a[0]:
                    raise ProfileError(f"mark {c['mark']}: the blocks' serial executions add up to {got} "
                                       f"instructions, the phase split counted {b[0] - a[0]}")
                r["serial_funcs"] = {k: v / n for k, v in per_serial.items()}
        if locked is not None:
            r.update(locked=sum(locked.values()) / n,
                     locked_bus1=sum(v for (_, m), v in locked.items() if m) / n,
                     locked_funcs={k: v / n for k, v in locked.items()})
        res.append(r)
    return res


def accesses(blocks, syms, n):
    """The memory accesses per iteration of a segment of `n` iterations, in all and in bus1.ko,
    both None if a block has no such count."""
    if any(a is None for *_, a in blocks):
        return {"accesses": None, "accesses_bus1": None}
    total = sum(a for *_, a in blocks)
    ours = sum(a for pc, *_, a in blocks if syms.lookup(pc)[1])
    return {"accesses": total / n, "accesses_bus1": ours / n}


def round_trips(results):
    """The round-trip cases (two processes), each with its ratio to the AF_UNIX round trip
    (RTT_BASE) of the same size, None if there is none."""
    base = {r["size"]: r["total"] for r in results if r["case"] == RTT_BASE and r["procs"] == 2}
    return [dict(r, ratio=r["total"] / base[r["size"]] if base.get(r["size"]) else None)
            for r in results if r["procs"] == 2]


def render(results, top, names, info=(), lines=()):
    rtt = round_trips(results)
    results = [r for r in results if r["procs"] == 1]
    unix = {r["size"]: r["total"] for r in results if r["case"] == "unix"}
    out = ["# Kernel instructions per message", ""]
    out += [
        "Written by `make profile` (`scripts/profile.sh`; method in `bench/README.md`): the kernel",
        "instructions executed per iteration of one thread's loop, counted by a QEMU TCG plugin in a",
        "release guest with one vCPU under `-icount`, so they do not depend on the host or its load",
        "(repeated runs agree to 0.1 instruction per iteration). Each repetition of a `rep` string",
        "instruction counts as one: a 1 KiB user copy (`rep_movs_alternative`) is about 1030.",
        "\"Locked\" counts the locked instructions among them, the atomic read-modify-writes of",
        "reference counts, locks and flags (and the full barriers written as a locked add): what a",
        "kernel on several CPUs executes with a LOCK prefix, including those the guest's one-CPU",
        "kernel patched to run unlocked (`scripts/tcg-insns.c`, `is_locked()`).",
        "\"Blocks\" counts the translation blocks QEMU executed for them, the unit it dispatches",
        "(instructions up to a branch; a `rep` instruction is one per repetition): under TCG, the",
        "time `make bench` measures follows the blocks more closely than the instructions",
        "(`bench/notes.md`).",
        "\"Accesses\" counts their loads and stores of memory as QEMU's soft MMU serves them, the",
        "stack's included (a `rep movsb` repetition is a load and a store, so a user copy costs two",
        "per byte): the other unit of TCG's time.",
        "",
    ]
    out += [f"- {i}" for i in info]
    if info:
        out.append("")
    out += ["| case | size (B) | iterations | kernel insns / iteration | in bus1.ko | ratio to unix "
            "| locked / iteration | in bus1.ko | blocks / iteration | accesses / iteration | in bus1.ko |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        ratio = f"{r['total'] / unix[r['size']]:.2f}x" if unix.get(r["size"]) else "-"
        out.append(f"| {r['case']} | {r['size']} | {r['n']} | {r['total']:.0f} | {r['bus1']:.0f} | {ratio} "
                   f"| {count(r['locked'])} | {count(r['locked_bus1'])} | {r['blocks']:.0f} "
                   f"| {whole(r['accesses'])} | {whole(r['accesses_bus1'])} |")
    if rtt:
        out += ["", "## Round trips: two processes", "",
                "A parent and a child process pass a message back and forth, each reading every byte it "
                "receives, as `make bench`'s `rtt` figure does. With one vCPU every kernel instruction between "
                "the markers belongs to the round trips: both processes' system calls, their wake-ups, the "
                f"scheduler and the context switches. No system's wait has a timeout, as in `make bench` (a "
                "timeout would add a timer armed and cancelled per wait). Repeated runs agree to about 0.3%: "
                "where timer ticks fall, and so now and then which side finds its message already there, moves "
                "a little between runs; the part in bus1.ko does not. The ratio is to "
                f"`{RTT_BASE}` at the same size (the ratio `make bench` rates in time; targets: `bus1_tx_rtt` "
                "at most 1.0x, `bus1_rtt` at most 1.25x).", "",
                f"| case | size (B) | round trips | kernel insns / round trip | in bus1.ko | ratio to {RTT_BASE} "
                "| locked / round trip | in bus1.ko | blocks / round trip | accesses / round trip | in bus1.ko |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rtt:
            ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
            out.append(f"| {r['case']} | {r['size']} | {r['n']} | {r['total']:.0f} | {r['bus1']:.0f} | {ratio} "
                       f"| {count(r['locked'])} | {count(r['locked_bus1'])} | {r['blocks']:.0f} "
                       f"| {whole(r['accesses'])} | {whole(r['accesses_bus1'])} |")
    split = [r for r in rtt if r["serial"] is not None]
    if split:
        base = {r["size"]: r for r in split if r["case"] == RTT_BASE}
        out += ["", "### The serial part of a round trip", "",
                "The same round trips split where a process calls `try_to_wake_up()` for the other and "
                "where a switch into a process begins (`__switch_to_asm()`): the serial part runs from a "
                "switch into a process until it wakes the other one (its return from the wait, the receive, "
                "its way back to user space and into the next call, the send up to the wake-up), the tail from "
                "that wake-up until the switch out (the rest of the waker's call, its way to sleep, the "
                "scheduler). On one CPU, both count; on two CPUs, the two sides' serial parts run one after "
                "the other, and each tail overlaps with the other side's serial part, so the serial part is "
                "what a round trip across CPUs is made of, besides the wake-ups of idle CPUs. A system "
                "whose woken side runs before the waker reaches its wait needs no wake-up for the answer "
                "(fewer than 2 per round trip): the waker's remaining way to its wait then counts as serial "
                "after it is switched in again.", "",
                f"| case | size (B) | serial insns / round trip | ratio to {RTT_BASE} | tail insns / round trip "
                f"| serial blocks / round trip | ratio to {RTT_BASE} | tail blocks / round trip "
                "| wake-ups / round trip | switches / round trip |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in split:
            u = base.get(r["size"])
            ratio = f"{r['serial'] / u['serial']:.2f}x" if u else "-"
            bratio = f"{r['serial_blocks'] / u['serial_blocks']:.2f}x" if u else "-"
            out.append(f"| {r['case']} | {r['size']} | {r['serial']:.0f} | {ratio} | {r['tail']:.0f} "
                       f"| {r['serial_blocks']:.0f} | {bratio} | {r['tail_blocks']:.0f} "
                       f"| {r['wakes']:.2f} | {r['switches']:.2f} |")
        for r in split:
            if not r["serial_funcs"]:
                continue
            ours = sum(v for (_, m), v in r["serial_funcs"].items() if m)
            out += ["", f"#### {r['case']}, {r['size']} B: the serial part by function", "",
                    f"{r['serial']:.0f} instructions per round trip in the serial part, {ours:.0f} of them in "
                    f"bus1.ko; the top {top} functions (a block counts for the part it began in):", "",
                    "| serial insns / round trip | share | function |", "|---:|---:|---|"]
            out += func_rows(r["serial_funcs"], r["serial"], top, names)
    if lines:
        base = {r["size"]: r["lines"] for r in lines if r["case"] == RTT_BASE}
        out += ["", "## Round trips across two CPUs: cache lines moved", "",
                "The round trips once more, in a guest with two vCPUs, the parent on CPU 0 and the child on "
                "CPU 1 (as `make bench`'s `rtt_cpu01` figure runs them), through a model of the two CPUs' caches "
                "(`scripts/tcg-lines.c`): every load and store of the guest, by physical address, in 64-byte "
                "lines that never leave a cache, counting each access that needs a line from the other CPU (a "
                "load of a line the other CPU holds and this one does not; a store to a line the other CPU "
                "holds). That is the data the two sides share, which each round trip moves across and back: "
                "on real hardware each such move is a cache miss served from the other core, which the "
                "instruction counts above do not see, and which a round trip on one CPU does not pay. "
                "Counted per instruction and attributed to its function (user space as one).", "",
                f"| case | size (B) | round trips | lines moved / round trip | by loads | by stores | in bus1.ko "
                f"| ratio to {RTT_BASE} |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in lines:
            ratio = f"{r['lines'] / base[r['size']]:.2f}x" if base.get(r["size"]) else "-"
            out.append(f"| {r['case']} | {r['size']} | {r['n']} | {r['lines']:.1f} | {r['loads']:.1f} "
                       f"| {r['stores']:.1f} | {r['bus1']:.1f} | {ratio} |")
        for r in lines:
            out += ["", f"### {r['case']}, {r['size']} B across two CPUs: lines moved by function", "",
                    "| lines / round trip | share | function |", "|---:|---:|---|"]
            out += func_rows(r["funcs"], r["lines"], top, names)
    mc = multicast(results)
    if mc:
        out += ["", "## Multicast: the marginal cost of a destination", "",
                "One more destination of a SEND, with its receive and payload read: (multicast - unicast) / "
                "(destinations - 1), the unicast being the case of the same size whose receiver takes its "
                "message the same way (`bus1`: RECV and SLICE_RELEASE; `bus1_recv1`: one TRANSACT that "
                "releases the last slice and receives), and that against the unicast (the ratio `make bench` "
                "rates in time, target at most 0.5x).", "",
                "| case | size (B) | destinations | unicast | unicast insns | multicast | per destination "
                "| in bus1.ko | ratio to unicast | locked / destination |",
                "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
        for m in mc:
            out.append(f"| {m['case']} | {m['size']} | {m['dests']} | {m['base']} | {m['unicast']:.0f} | {m['total']:.0f} "
                       f"| {m['marginal']:.0f} | {m['marginal_bus1']:.0f} | {m['ratio']:.2f}x | {count(m['locked'])} |")
        for m in mc:
            out += ["", f"### {m['case']}, {m['size']} B: per destination, the top {top} functions", "",
                    "| insns / destination | share | function |", "|---:|---:|---|"]
            out += func_rows(m["funcs"], m["marginal"], top, names)
    for r in results + rtt:
        title = TITLES.get(r["case"], r["case"]).format(dests=r["dests"])
        per = "round trip" if r["procs"] == 2 else "iteration"
        out += ["", f"## {r['case']}, {r['size']} B: {title}", "",
                f"{r['total']:.0f} instructions per {per}; the top {top} functions:", "",
                f"| insns / {per} | share | function |", "|---:|---:|---|"]
        out += func_rows(r["funcs"], r["total"], top, names)
        if r["locked"]:
            # Every function with at least 0.05 per iteration (the rest are interrupts that
            # happened to fall into the segment).
            shown = {k: v for k, v in r["locked_funcs"].items() if v >= 0.05}
            rest = r["locked"] - sum(shown.values())
            out += ["", f"{r['locked']:.1f} locked instructions per {per}; by function:", "",
                    f"| locked / {per} | share | function |", "|---:|---:|---|"]
            out += func_rows(shown, r["locked"], len(shown), names)
            if rest >= 0.05:
                out.append(f"| {rest:.1f} | {100 * rest / r['locked']:.1f}% | all other functions |")
    return "\n".join(out) + "\n"


def count(v):
    """A per-iteration count of locked instructions, or "-" if the plugin did not count them."""
    return "-" if v is None else f"{v:.1f}"


def whole(v):
    """A per-iteration count of memory accesses, or "-" if the plugin did not count them."""
    return "-" if v is None else f"{v:.0f}"


def func_rows(funcs, total, top, names):
    """The table rows of the `top` functions of `funcs` (by count, largest first), with their
    share of `total`, then the rest in one row."""
    funcs = sorted(funcs.items(), key=lambda kv: (-kv[1], kv[0][0]))
    rows = []
    for (name, mod), v in funcs[:top]:
        label = names.get(name, name) + (" [bus1]" if mod else "")
        label = label.replace("|", "\\|")
        rows.append(f"| {v:.1f} | {100 * v / total:.1f}% | `{label}` |")
    rest = sum(v for _, v in funcs[top:])
    if rest:
        rows.append(f"| {rest:.1f} | {100 * rest / total:.1f}% | all other functions |")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--guest-log", required=True)
    ap.add_argument("--insns", required=True, help="the plugin's output")
    ap.add_argument("--system-map", required=True)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--lines-log", help="the output of the two-CPU guest")
    ap.add_argument("--lines", help="the cache-line plugin's output of that guest")
    ap.add_argument("--out", help="also write the report here")
    a = ap.parse_args(argv)
    if bool(a.lines_log) != bool(a.lines):
        ap.error("--lines-log and --lines go together")
    try:
        with open(a.guest_log, errors="replace") as f:
            guest = parse_guest(f)
        with open(a.insns) as f:
            lines = f.readlines()
        marks, phases, serial = parse_insns(lines), parse_phases(lines), parse_serial(lines)
        with open(a.system_map) as f:
            syms = Symbols(f, guest)
        results = analyse(guest, marks, syms, phases, serial)
        lines = []
        if a.lines:
            with open(a.lines_log, errors="replace") as f:
                guest2 = parse_guest(f)
            with open(a.lines) as f:
                lmarks = parse_lines(f)
            with open(a.system_map) as f:
                lines = analyse_lines(guest2, lmarks, Symbols(f, guest2))
        names = demangle({n for r in results + lines for n, _ in list(r["funcs"]) + list(r.get("serial_funcs") or {})})
    except (OSError, ProfileError) as e:
        print(f"profile_report.py: {e}", file=sys.stderr)
        return 1
    text = render(results, a.top, names, guest["info"], lines)
    sys.stdout.write(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
