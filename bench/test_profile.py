#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Tests of bench/profile_report.py (make profile's analysis) on a synthetic
System.map, guest output and plugin output: symbol mapping (KASLR offset,
module range, data symbols, aliases), the per-iteration counts of the
measured segments only, the consistency checks, multicast and round trips,
demangling and the report. Offline, standard library only."""
import io
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import profile_report as pr  # noqa: E402

# The kernel as linked (System.map) ...
SYSTEM_MAP = """\
ffffffff81000000 T _text
ffffffff81000000 T startup_64
ffffffff81001000 T do_syscall_64
ffffffff81001000 T do_syscall_alias
ffffffff81001100 d some_data
ffffffff81002000 t memcpy_orig
ffffffff81003000 W weak_fn
ffffffff81004000 T _etext
ffffffff81005000 D after_text
"""
# ... and as loaded 2 MiB higher (KASLR), with bus1 at 0xffffffffa0000000.
OFF = 0x200000
SEND = "_RNvMs_NtCs1chfcOlto9U_9bus1_main4sendNtNtB6_4peer4Peer13send_prepared"
IOCTL = "_RNvXs2_NtNtCs1chfcOlto9U_9bus1_main4peer5ioctlNtB7_4PeerNtNtNtB9_3ext10miscdevice10MiscDevice5ioctl"
GUEST = f"""\
[    1.000000] random kernel line
bus1: running: echo PROFILE-INFO kernel $(uname -r); /tests/demos/bus1-profile
PROFILE-INFO kernel 7.2.12, 1 vCPU
PROFILE-KSYM ffffffff81200000 T _text
PROFILE-KSYM ffffffffa0000100 t {SEND}\t[bus1]
PROFILE-KSYM ffffffffa0000400 r some_rodata\t[bus1]
PROFILE-KSYM ffffffffa0000800 T {IOCTL}\t[bus1]
PROFILE-MODULE bus1 8192 0 - Live 0xffffffffa0000000 (O)
PROFILE-CASE bus1 0 10 2
PROFILE-CASE unix 0 10 4
PROFILE-DONE 4
"""
K = 0xffffffff81000000 + OFF
M = 0xffffffffa0000000
# Segments 1 and 3 (setup and warm-up) are large and must not count.
INSNS = f"""\
mark 1
{K + 0x1000:x} 1000000 7
{M + 0x100:x} 1000000 9
mark 2
{K + 0x1000:x} 10 7
{K + 0x1008:x} 10 3
{K + 0x2010:x} 20 5
{M + 0x100:x} 10 40
{M + 0x900:x} 5 4
mark 3
{M + 0x100:x} 777777 9
mark 4
{K + 0x1000:x} 10 6
{K + 0x3004:x} 10 4
"""

# A multicast case after those two: 8 destinations, segment 6 (segment 5, its setup and
# warm-up, must not count). Per iteration: send_prepared 180 (40 + 7 * 20), do_syscall_64 31
# (10 + 7 * 3), memcpy_orig 10 and ioctl 2 as in the unicast, weak_fn 7 (0 + 7 * 1); in all
# 230, of which 182 in bus1. One more destination: (230 - 62) / 7 = 24, (182 - 42) / 7 = 20
# in bus1.
GUEST_MC = GUEST.replace("PROFILE-DONE 4", "PROFILE-CASE bus1_mcast 0 10 6 8\nPROFILE-DONE 6")
INSNS_MC = INSNS + f"""\
mark 5
{M + 0x100:x} 555555 9
mark 6
{K + 0x1000:x} 10 31
{K + 0x2010:x} 20 5
{K + 0x3000:x} 10 7
{M + 0x100:x} 10 180
{M + 0x900:x} 5 4
"""

# Two round-trip cases (two processes) after the one-thread ones: segments 6 and 8 (5 and 7,
# their setup and warm-up, must not count). Per round trip: bus1_tx_rtt send_prepared 50,
# ioctl 6, do_syscall_64 20, memcpy_orig 4, in all 80, of which 56 in bus1; unix_rtt
# do_syscall_64 16 and weak_fn 4, in all 20. So bus1_tx_rtt is 4.00x unix_rtt, where against
# the one-thread unix (10) it would be 8.00x.
GUEST_RTT = GUEST.replace("PROFILE-DONE 4", "PROFILE-CASE bus1_tx_rtt 0 10 6 1 2\n"
                          "PROFILE-CASE unix_rtt 0 10 8 1 2\nPROFILE-DONE 8")
INSNS_RTT = INSNS + f"""\
mark 5
{M + 0x100:x} 333333 9
mark 6
{M + 0x100:x} 10 50
{M + 0x900:x} 10 6
{K + 0x1000:x} 20 10
{K + 0x2000:x} 10 4
mark 7
{K + 0x1000:x} 444444 7
mark 8
{K + 0x1000:x} 10 16
{K + 0x3000:x} 20 2
"""

# The round trips with the plugin's phase split: its running totals (serial, tail, wake-ups,
# switches, serial blocks, tail blocks) after every marker. Per round trip, bus1_tx_rtt: serial
# (1600 - 1000) / 10 = 60, tail (2250 - 2000) / 10 = 25, 2 wake-ups and 2 switches, 12 serial
# and 5 tail blocks; unix_rtt: serial 40, tail 30, 1.9 wake-ups, 2 switches, 16 serial and 6
# tail blocks. So bus1_tx_rtt's serial part is 1.50x unix_rtt's in instructions, 0.75x in
# blocks. The split's
# addresses come from System.map as it is, so it counts only with the kernel where System.map
# says: GUEST_RTT_FIXED, not GUEST_RTT (moved by KASLR).
GUEST_RTT_FIXED = GUEST_RTT.replace("PROFILE-KSYM ffffffff81200000 T _text", "PROFILE-KSYM ffffffff81000000 T _text")
PHASES = {1: "0 0 0 0 0 0", 2: "100 100 1 1 9 9", 3: "500 900 3 3 50 90", 4: "600 1000 4 4 60 100",
          5: "1000 2000 5 5 100 200", 6: "1600 2250 25 25 220 250", 7: "1700 2300 27 27 230 260",
          8: "2100 2600 46 47 390 320"}
INSNS_RTT_PHASES = "".join(line + (f"\nphase {PHASES[int(line.split()[1])]}" if line.startswith("mark ") else "") + "\n"
                           for line in INSNS_RTT.splitlines())

# The round trips with the split and each block's serial executions (the sixth column; the
# locked and access counts before it are zero). bus1_tx_rtt, segment 6: send_prepared's 10
# executions and 10 of do_syscall_64's 20 began in the serial part, 500 + 100 = 600
# instructions, as the split counted (1600 - 1000); per round trip 50 in send_prepared
# (bus1.ko) and 10 in do_syscall_64. unix_rtt, segment 8: 8 * 16 + 11 * 2 = 150 (1850 - 1700):
# 12.8 and 2.2 per round trip.
# GUEST_RTT_FIXED runs the kernel where System.map says.
KF = 0xffffffff81000000
PHASES_SERIAL = {**PHASES, 8: "1850 2600 46 47 390 320"}
INSNS_RTT_SERIAL = INSNS + f"""\
mark 5
phase {PHASES_SERIAL[5]}
{M + 0x100:x} 333333 9 0 0 333333
mark 6
phase {PHASES_SERIAL[6]}
{M + 0x100:x} 10 50 0 0 10
{M + 0x900:x} 10 6 0 0 0
{KF + 0x1000:x} 20 10 0 0 10
{KF + 0x2000:x} 10 4 0 0 0
mark 7
phase {PHASES_SERIAL[7]}
{KF + 0x1000:x} 444444 7 0 0 0
mark 8
phase {PHASES_SERIAL[8]}
{KF + 0x1000:x} 10 16 0 0 8
{KF + 0x3000:x} 20 2 0 0 11
"""

# INSNS with the plugin's count of locked instructions per block. Segment 2 per iteration:
# do_syscall_64 1 (10 * 1 / 10), send_prepared 3 (10 * 3 / 10), ioctl 1 (5 * 2 / 10): 5 in
# all, 4 in bus1. Segment 4: do_syscall_64 2.
INSNS_LOCKED = f"""\
mark 1
{K + 0x1000:x} 1000000 7 1
{M + 0x100:x} 1000000 9 9
mark 2
{K + 0x1000:x} 10 7 1
{K + 0x1008:x} 10 3 0
{K + 0x2010:x} 20 5 0
{M + 0x100:x} 10 40 3
{M + 0x900:x} 5 4 2
mark 3
{M + 0x100:x} 777777 9 9
mark 4
{K + 0x1000:x} 10 6 2
{K + 0x3004:x} 10 4 0
"""

# INSNS_LOCKED with the plugin's count of memory accesses per block (of all its executions).
# Segment 2 per iteration: (30 + 0 + 100 + 50 + 10) / 10 = 19 in all, (50 + 10) / 10 = 6 in
# bus1. Segment 4: 20 / 10 = 2 in all, none in bus1.
INSNS_ACCESSES = f"""\
mark 1
{K + 0x1000:x} 1000000 7 1 5000000
{M + 0x100:x} 1000000 9 9 3000000
mark 2
{K + 0x1000:x} 10 7 1 30
{K + 0x1008:x} 10 3 0 0
{K + 0x2010:x} 20 5 0 100
{M + 0x100:x} 10 40 3 50
{M + 0x900:x} 5 4 2 10
mark 3
{M + 0x100:x} 777777 9 9 1234567
mark 4
{K + 0x1000:x} 10 6 2 20
{K + 0x3004:x} 10 4 0 0
"""


# The two-CPU guest: its own output (the round trips only, segments 2 and 4) and the
# cache-line plugin's. Per round trip, bus1_tx_rtt: send_prepared 3 + 2 = 5, ioctl 1,
# do_syscall_64 2, user space 2: 10 lines (4 by loads, 6 by stores), 6 in bus1; unix_rtt:
# do_syscall_64 4 (its two instructions add up), 4 in all. So 2.50x.
GUEST_LINES = GUEST.replace("PROFILE-INFO kernel 7.2.12, 1 vCPU\n", "").replace(
    "PROFILE-CASE bus1 0 10 2\nPROFILE-CASE unix 0 10 4\n",
    "PROFILE-CASE bus1_tx_rtt 0 10 2 1 2\nPROFILE-CASE unix_rtt 0 10 4 1 2\n")
LINES = f"""\
mark 1
total 5000 5000
{K + 0x1000:x} 5000 5000
mark 2
total 40 60
{M + 0x100:x} 30 20
{M + 0x900:x} 0 10
{K + 0x1000:x} 10 10
1 0 20
mark 3
total 0 7
{M + 0x100:x} 0 7
mark 4
total 20 20
{K + 0x1000:x} 10 10
{K + 0x1008:x} 10 10
"""


def setup(guest=GUEST, insns=INSNS):
    guest = pr.parse_guest(io.StringIO(guest))
    return guest, pr.parse_insns(io.StringIO(insns)), pr.Symbols(io.StringIO(SYSTEM_MAP), guest)


class Mapping(unittest.TestCase):
    def test_kernel_symbols_moved_by_the_guests_text(self):
        _, _, s = setup()
        self.assertEqual(("do_syscall_64", False), s.lookup(K + 0x1000))
        self.assertEqual(("do_syscall_64", False), s.lookup(K + 0x1fff))
        self.assertEqual(("memcpy_orig", False), s.lookup(K + 0x2000))
        self.assertEqual(("weak_fn", False), s.lookup(K + 0x3fff))
        # The first of the aliases at an address (System.map order) names it.
        self.assertEqual(("_text", False), s.lookup(K + 0xfff))

    def test_data_symbols_do_not_take_code(self):
        _, _, s = setup()
        self.assertEqual("do_syscall_64", s.lookup(K + 0x1100)[0])
        self.assertEqual(SEND, s.lookup(M + 0x500)[0])  # not some_rodata

    def test_first_alias_wins(self):
        _, _, s = setup()
        self.assertEqual("do_syscall_64", s.lookup(K + 0x1000)[0])

    def test_outside_text_is_unknown(self):
        _, _, s = setup()
        self.assertEqual((pr.UNKNOWN, False), s.lookup(K + 0x4000))  # _etext
        self.assertEqual((pr.UNKNOWN, False), s.lookup(K - 1))
        self.assertEqual((pr.UNKNOWN, False), s.lookup(M + 8192))  # past the module
        self.assertEqual((pr.UNKNOWN, False), s.lookup(M + 0x10))  # module, before its first symbol

    def test_module_symbols(self):
        _, _, s = setup()
        self.assertEqual((SEND, True), s.lookup(M + 0x100))
        self.assertEqual((IOCTL, True), s.lookup(M + 0x1fff))


class Segments(unittest.TestCase):
    def test_per_iteration_counts_of_the_measured_segments(self):
        r = pr.analyse(*setup())
        self.assertEqual([("bus1", 0, 10), ("unix", 0, 10)], [(x["case"], x["size"], x["n"]) for x in r])
        # Segment 2: executions * length per block, over 10 iterations.
        f = r[0]["funcs"]
        self.assertEqual((10 * 7 + 10 * 3) / 10, f[("do_syscall_64", False)])
        self.assertEqual(20 * 5 / 10, f[("memcpy_orig", False)])
        self.assertEqual(10 * 40 / 10, f[(SEND, True)])
        self.assertEqual(5 * 4 / 10, f[(IOCTL, True)])
        self.assertEqual(10 + 10 + 40 + 2, r[0]["total"])
        self.assertEqual(40 + 2, r[0]["bus1"])
        # Segment 4.
        self.assertEqual({("do_syscall_64", False): 6.0, ("weak_fn", False): 4.0}, r[1]["funcs"])
        self.assertEqual(10, r[1]["total"])
        self.assertEqual(0, r[1]["bus1"])

    def test_blocks_per_iteration(self):
        """The blocks executed, whatever their length: segment 2 ran 55 in 10 iterations."""
        r = pr.analyse(*setup())
        self.assertEqual([(10 + 10 + 20 + 10 + 5) / 10, (10 + 10) / 10], [x["blocks"] for x in r])

    def test_marker_count_must_match(self):
        guest, marks, syms = setup()
        del marks[4]
        with self.assertRaisesRegex(pr.ProfileError, "4 markers, the plugin saw 3"):
            pr.analyse(guest, marks, syms)
        guest, marks, syms = setup()
        marks[5] = []
        with self.assertRaisesRegex(pr.ProfileError, "4 markers, the plugin saw 5"):
            pr.analyse(guest, marks, syms)

    def test_unfinished_or_failed_guest(self):
        guest, marks, syms = setup()
        guest["done"] = None
        with self.assertRaisesRegex(pr.ProfileError, "did not finish"):
            pr.analyse(guest, marks, syms)
        with self.assertRaisesRegex(pr.ProfileError, "RECV: Bad address"):
            pr.parse_guest(io.StringIO(GUEST + "PROFILE-ERROR RECV: Bad address\n"))

    def test_guest_lines_elsewhere_are_ignored(self):
        guest, _, _ = setup()
        self.assertEqual(["kernel 7.2.12, 1 vCPU"], guest["info"])
        self.assertEqual((M, 8192), guest["module"])

    def test_bad_plugin_output(self):
        with self.assertRaisesRegex(pr.ProfileError, "line 2"):
            pr.parse_insns(io.StringIO("mark 1\nffff 1\n"))
        with self.assertRaisesRegex(pr.ProfileError, "line 2"):
            pr.parse_insns(io.StringIO("mark 1\nffff 1 2 3 4 5 6\n"))


class Locked(unittest.TestCase):
    def test_locked_per_iteration_and_function(self):
        r = pr.analyse(*setup(GUEST, INSNS_LOCKED))
        self.assertEqual((5, 4), (r[0]["locked"], r[0]["locked_bus1"]))
        self.assertEqual({(SEND, True): 3, (IOCTL, True): 1, ("do_syscall_64", False): 1}, r[0]["locked_funcs"])
        self.assertEqual((2, 0), (r[1]["locked"], r[1]["locked_bus1"]))
        # The instructions are counted as without the column.
        plain = pr.analyse(*setup())
        self.assertEqual([x["funcs"] for x in plain], [x["funcs"] for x in r])

    def test_unknown_without_the_column(self):
        r = pr.analyse(*setup())
        self.assertEqual((None, None, {}), (r[0]["locked"], r[0]["locked_bus1"], r[0]["locked_funcs"]))
        # One block without its count makes the segment's count unknown, not smaller.
        mixed = INSNS_LOCKED.replace(f"{M + 0x900:x} 5 4 2", f"{M + 0x900:x} 5 4")
        r = pr.analyse(*setup(GUEST, mixed))
        self.assertEqual((None, None), (r[0]["locked"], r[0]["locked_bus1"]))
        self.assertEqual(2, r[1]["locked"])

    def test_accesses_per_iteration(self):
        r = pr.analyse(*setup(GUEST, INSNS_ACCESSES))
        self.assertEqual([(19, 6), (2, 0)], [(x["accesses"], x["accesses_bus1"]) for x in r])
        # The instructions and the locked ones are counted as without the column.
        locked = pr.analyse(*setup(GUEST, INSNS_LOCKED))
        self.assertEqual([(x["funcs"], x["locked_funcs"]) for x in locked],
                         [(x["funcs"], x["locked_funcs"]) for x in r])

    def test_accesses_unknown_without_the_column(self):
        for insns in (INSNS, INSNS_LOCKED):
            r = pr.analyse(*setup(GUEST, insns))
            self.assertEqual([(None, None)] * 2, [(x["accesses"], x["accesses_bus1"]) for x in r])
        # One block without its count makes the segment's count unknown, not smaller.
        mixed = INSNS_ACCESSES.replace(f"{M + 0x900:x} 5 4 2 10", f"{M + 0x900:x} 5 4 2")
        r = pr.analyse(*setup(GUEST, mixed))
        self.assertEqual((None, None), (r[0]["accesses"], r[0]["accesses_bus1"]))
        self.assertEqual(2, r[1]["accesses"])

    def test_per_destination_of_a_multicast(self):
        insns = INSNS_LOCKED + f"""\
mark 5
{M + 0x100:x} 555555 9 9
mark 6
{K + 0x1000:x} 10 31 1
{M + 0x100:x} 10 180 17
"""
        [m] = pr.multicast(pr.analyse(*setup(GUEST_MC, insns)))
        # (1 + 17 - 5) / 7 per further destination.
        self.assertEqual(13 / 7, m["locked"])
        [m] = pr.multicast(pr.analyse(*setup(GUEST_MC, INSNS_MC)))
        self.assertIsNone(m["locked"])


class Multicast(unittest.TestCase):
    def test_destinations_default_to_one(self):
        guest, _, _ = setup(GUEST_MC)
        self.assertEqual([1, 1, 8], [c["dests"] for c in guest["cases"]])

    def test_marginal_cost_of_a_destination(self):
        r = pr.analyse(*setup(GUEST_MC, INSNS_MC))
        self.assertEqual(230, r[2]["total"])
        [m] = pr.multicast(r)
        self.assertEqual(("bus1_mcast", 0, 8), (m["case"], m["size"], m["dests"]))
        self.assertEqual((62, 230), (m["unicast"], m["total"]))
        self.assertEqual(24, m["marginal"])
        self.assertEqual(20, m["marginal_bus1"])
        self.assertAlmostEqual(24 / 62, m["ratio"])
        self.assertEqual(20, m["funcs"][(SEND, True)])
        self.assertEqual(3, m["funcs"][("do_syscall_64", False)])
        self.assertEqual(1, m["funcs"][("weak_fn", False)])
        self.assertEqual(0, m["funcs"][("memcpy_orig", False)])
        self.assertEqual(0, m["funcs"][(IOCTL, True)])
        self.assertEqual(24, sum(m["funcs"].values()))

    def test_against_the_unicast_received_the_same_way(self):
        """A multicast whose receivers take their copies with one TRANSACT is rated against the
        unicast received that way (bus1_recv1), never against bus1, though both are there."""
        r = pr.analyse(*setup(GUEST_MC, INSNS_MC))
        recv1 = dict(r[0], case="bus1_recv1", total=50, bus1=35)
        mc1 = dict(r[2], case="bus1_mcast_recv1", total=190, bus1=140)
        [m, m1] = pr.multicast(r + [recv1, mc1])
        self.assertEqual(("bus1_mcast", "bus1", 62), (m["case"], m["base"], m["unicast"]))
        self.assertEqual(("bus1_mcast_recv1", "bus1_recv1", 50), (m1["case"], m1["base"], m1["unicast"]))
        self.assertEqual(20, m1["marginal"])
        self.assertEqual(15, m1["marginal_bus1"])
        self.assertAlmostEqual(0.4, m1["ratio"])
        # Without its own unicast it is not rated at all.
        with self.assertRaisesRegex(pr.ProfileError, "bus1_mcast_recv1:0: no unicast \\(bus1_recv1\\)"):
            pr.multicast(r + [mc1])

    def test_only_against_a_unicast_of_the_same_size(self):
        r = pr.analyse(*setup(GUEST_MC, INSNS_MC))
        self.assertEqual([], pr.multicast(r[:2]))
        r[2]["size"] = 1024
        with self.assertRaisesRegex(pr.ProfileError, "bus1_mcast:1024: no unicast"):
            pr.multicast(r)


class RoundTrips(unittest.TestCase):
    def test_processes_default_to_one(self):
        guest, _, _ = setup(GUEST_RTT)
        self.assertEqual([1, 1, 2, 2], [c["procs"] for c in guest["cases"]])
        self.assertEqual([1, 1, 1, 1], [c["dests"] for c in guest["cases"]])

    def test_per_round_trip_against_the_unix_round_trip(self):
        r = pr.round_trips(pr.analyse(*setup(GUEST_RTT, INSNS_RTT)))
        self.assertEqual(["bus1_tx_rtt", "unix_rtt"], [x["case"] for x in r])
        tx, unix = r
        self.assertEqual((80, 56, 4.0), (tx["total"], tx["bus1"], tx["ratio"]))
        self.assertEqual((20, 0, 1.0), (unix["total"], unix["bus1"], unix["ratio"]))
        self.assertEqual({(SEND, True): 50, (IOCTL, True): 6, ("do_syscall_64", False): 20,
                          ("memcpy_orig", False): 4}, tx["funcs"])

    def test_serial_part_and_tail_per_round_trip(self):
        guest, marks, syms = setup(GUEST_RTT_FIXED, INSNS_RTT_PHASES)
        phases = pr.parse_phases(io.StringIO(INSNS_RTT_PHASES))
        self.assertEqual((1600, 2250, 25, 25, 220, 250), phases[6])
        r = pr.analyse(guest, marks, syms, phases)
        # Only the round trips; the block counts are the same as without the split.
        self.assertEqual([None, None], [x["serial"] for x in r[:2]])
        tx, unix = r[2:]
        self.assertEqual((60, 25, 2, 2, 12, 5), (tx["serial"], tx["tail"], tx["wakes"], tx["switches"],
                                                 tx["serial_blocks"], tx["tail_blocks"]))
        self.assertEqual((40, 30, 1.9, 2, 16, 6), (unix["serial"], unix["tail"], unix["wakes"], unix["switches"],
                                                   unix["serial_blocks"], unix["tail_blocks"]))
        self.assertEqual((80, 20), (tx["total"], unix["total"]))

    def test_serial_part_by_function(self):
        guest, marks, syms = setup(GUEST_RTT_FIXED, INSNS_RTT_SERIAL)
        lines = io.StringIO(INSNS_RTT_SERIAL).readlines()
        serial = pr.parse_serial(lines)
        self.assertEqual([(M + 0x100, 10, 50), (M + 0x900, 0, 6), (KF + 0x1000, 10, 10), (KF + 0x2000, 0, 4)],
                         serial[6])
        r = pr.analyse(guest, marks, syms, pr.parse_phases(lines), serial)
        self.assertEqual([None, None], [x["serial_funcs"] for x in r[:2]])
        tx, unix = r[2:]
        self.assertEqual((60, 15), (tx["serial"], unix["serial"]))
        self.assertEqual({(SEND, True): 50, ("do_syscall_64", False): 10}, tx["serial_funcs"])
        self.assertEqual({("do_syscall_64", False): 12.8, ("weak_fn", False): 2.2}, unix["serial_funcs"])
        # A plugin output without the sixth column: no attribution; the split as before.
        plain = io.StringIO(INSNS_RTT_PHASES).readlines()
        self.assertEqual({}, pr.parse_serial(plain))
        guest, marks, syms = setup(GUEST_RTT_FIXED, INSNS_RTT_PHASES)
        r = pr.analyse(guest, marks, syms, pr.parse_phases(plain), pr.parse_serial(plain))
        self.assertEqual((None, 60), (r[2]["serial_funcs"], r[2]["serial"]))

    def test_serial_executions_must_add_up_to_the_split(self):
        bad = INSNS_RTT_SERIAL.replace(f"{KF + 0x3000:x} 20 2 0 0 11", f"{KF + 0x3000:x} 20 2 0 0 12")
        guest, marks, syms = setup(GUEST_RTT_FIXED, bad)
        lines = io.StringIO(bad).readlines()
        with self.assertRaisesRegex(pr.ProfileError, "mark 8: the blocks' serial executions add up to 152"):
            pr.analyse(guest, marks, syms, pr.parse_phases(lines), pr.parse_serial(lines))

    def test_no_split_where_the_kernel_moved(self):
        guest, marks, syms = setup(GUEST_RTT, INSNS_RTT_PHASES)
        r = pr.analyse(guest, marks, syms, pr.parse_phases(io.StringIO(INSNS_RTT_PHASES)))
        self.assertEqual([None] * 4, [x["serial"] for x in r])
        self.assertEqual(80, r[2]["total"])

    def test_bad_phase_line(self):
        for bad in ("mark 1\nphase 1 2 3 4\n", "phase 1 2 3 4 5 6\nmark 1\n"):
            with self.assertRaisesRegex(pr.ProfileError, "line [12]: cannot parse"):
                pr.parse_phases(io.StringIO(bad))

    def test_only_against_unix_rtt_of_the_same_size(self):
        r = pr.analyse(*setup(GUEST_RTT, INSNS_RTT))
        # Without unix_rtt there is no ratio: the one-thread unix is no round trip.
        self.assertEqual([None], [x["ratio"] for x in pr.round_trips(r[:3])])
        r[3]["size"] = 1024
        self.assertEqual([None, 1.0], [x["ratio"] for x in pr.round_trips(r)])
        self.assertEqual([], pr.round_trips(r[:2]))


# Symbols of bus1.ko and the kernel's Rust, with what llvm-cxxfilt prints for them.
V0 = {
    SEND: "<bus1_main::peer::Peer>::send_prepared",
    IOCTL: "<bus1_main::peer::Peer as bus1_main::ext::miscdevice::MiscDevice>::ioctl",
    # Const generic argument, backrefs.
    "_RNvMNtCs1chfcOlto9U_9bus1_main8smallvecINtB2_8SmallVecyKj8_E4pushB4_":
        "<bus1_main::smallvec::SmallVec<u64, 8>>::push",
    # Closure.
    "_RNCNvMs_NtCs1chfcOlto9U_9bus1_main4sendNtNtB8_4peer4Peer8send_one0B8_":
        "<bus1_main::peer::Peer>::send_one::{closure#0}",
    # Generic function in value position (::<>), nested closures with empty names ("00").
    "_RINvMs5_NtCsl7L7n58I0Vr_6kernel5typesINtB6_6OpaqueNtNtCseeCKQ1zEgTH_8bindings12bindings_raw15"
    "wait_queue_headE8ffi_initNCNCNvMs0_NtNtB8_4sync7condvarNtB22_7CondVar3new00ECs1chfcOlto9U_9bus1_main":
        "<kernel::types::Opaque<bindings::bindings_raw::wait_queue_head>>::ffi_init::"
        "<<kernel::sync::condvar::CondVar>::new::{closure#0}::{closure#0}>",
    # Slice type.
    "_RINvMNtCs2DxGA1hvVcO_4core5sliceSh8align_tojEB5_": "<[u8]>::align_to::<usize>",
    # dyn with a binder (for<'a>), bound lifetime, &mut, tuple of one, associated type.
    "_RNvXs1_NtNtNtCs2DxGA1hvVcO_4core3ops8function5implsQDG_INtB7_5FnMutTQL0_INtNtCs1chfcOlto9U_9bus1_main4"
    "node9NodeStateNtNtB1d_4peer4PeerNtNtB1d_5queue8QueueKeyINtB2a_9QueueSlotNtB1S_5EventEINtNtB1d_11"
    "transaction6StagedB1Q_EEEEp6OutputuEL_IBS_TQB18_EE8call_mutB1d_":
        "<&mut dyn for<'a> core::ops::function::FnMut<(&'a mut bus1_main::node::NodeState<bus1_main::peer::Peer, "
        "bus1_main::queue::QueueKey, bus1_main::queue::QueueSlot<bus1_main::peer::Event>, "
        "bus1_main::transaction::Staged<bus1_main::peer::Peer>>,), Output = ()> as core::ops::function::FnMut<"
        "(&mut bus1_main::node::NodeState<bus1_main::peer::Peer, bus1_main::queue::QueueKey, "
        "bus1_main::queue::QueueSlot<bus1_main::peer::Event>, bus1_main::transaction::Staged<bus1_main::peer::Peer>>,)>>"
        "::call_mut",
}


class Demangle(unittest.TestCase):
    def test_v0_as_llvm_cxxfilt_prints_it(self):
        for sym, want in V0.items():
            self.assertEqual(want, pr.demangle_v0(sym), sym)

    def test_not_rust_or_malformed_stays(self):
        for sym in ("memcpy_orig", "_RNvC", "_RNvCs1chfcOlto9U_4bus", "_Rxyz", "_ZN4core3ptr4drop17h0123E"):
            self.assertEqual(sym, pr.demangle_v0(sym))

    def test_shortened_names_and_suffixes(self):
        d = pr.demangle([SEND, IOCTL, "memcpy_orig", SEND + ".llvm.123", "foo.cold"])
        self.assertEqual("<peer::Peer>::send_prepared", d[SEND])
        self.assertEqual("<peer::Peer as miscdevice::MiscDevice>::ioctl", d[IOCTL])
        self.assertEqual("memcpy_orig", d["memcpy_orig"])
        self.assertEqual("<peer::Peer>::send_prepared.llvm.123", d[SEND + ".llvm.123"])
        self.assertEqual("foo.cold", d["foo.cold"])

    def test_generic_arguments_shortened(self):
        v = "_RNvMs0_NtNtCsl7L7n58I0Vr_6kernel5alloc4kvecINtB5_3VecyNtNtB7_9allocator7KmallocE7reserveCs1chfcOlto9U_9bus1_main"
        self.assertEqual("<kvec::Vec<u64, allocator::Kmalloc>>::reserve", pr.demangle([v])[v])


class CacheLines(unittest.TestCase):
    def analyse(self, lines=LINES, guest=GUEST_LINES):
        g = pr.parse_guest(io.StringIO(guest))
        return pr.analyse_lines(g, pr.parse_lines(io.StringIO(lines)), pr.Symbols(io.StringIO(SYSTEM_MAP), g))

    def test_lines_per_round_trip_of_the_measured_segments(self):
        tx, unix = self.analyse()
        self.assertEqual(("bus1_tx_rtt", 10, 4, 6, 6), (tx["case"], tx["lines"], tx["loads"], tx["stores"], tx["bus1"]))
        self.assertEqual({(SEND, True): 5, (IOCTL, True): 1, ("do_syscall_64", False): 2, (pr.USER, False): 2},
                         tx["funcs"])
        self.assertEqual(("unix_rtt", 4, 0, {("do_syscall_64", False): 4}),
                         (unix["case"], unix["lines"], unix["bus1"], unix["funcs"]))

    def test_totals_must_agree_with_the_lines(self):
        with self.assertRaisesRegex(pr.ProfileError, "mark 2: total \\(40, 61\\), its lines add up to \\(40, 60\\)"):
            pr.parse_lines(io.StringIO(LINES.replace("total 40 60", "total 40 61")))

    def test_bad_lines(self):
        for bad in ("ffff 1 2\n", "mark 1\nffff 1\n", "mark 1\ntotal 1\n"):
            with self.assertRaisesRegex(pr.ProfileError, "line [12]: cannot parse"):
                pr.parse_lines(io.StringIO(bad))

    def test_marker_count_must_match(self):
        with self.assertRaisesRegex(pr.ProfileError, "executed 4 markers, the plugin saw 3"):
            self.analyse(LINES[:LINES.index("mark 4")])
        with self.assertRaisesRegex(pr.ProfileError, "no PROFILE-DONE"):
            self.analyse(guest=GUEST_LINES.replace("PROFILE-DONE 4\n", ""))

    def test_only_round_trips(self):
        with self.assertRaisesRegex(pr.ProfileError, "lists no round trip"):
            self.analyse(guest=GUEST)


class Report(unittest.TestCase):
    def report(self, guest, insns, lines=None):
        with tempfile.TemporaryDirectory() as d:
            paths = {}
            for name, text in (("map", SYSTEM_MAP), ("guest", guest), ("insns", insns),
                               ("guest2", GUEST_LINES), ("lines", lines or "")):
                paths[name] = os.path.join(d, name)
                with open(paths[name], "w") as f:
                    f.write(text)
            out = os.path.join(d, "profile.md")
            extra = ["--lines-log", paths["guest2"], "--lines", paths["lines"]] if lines else []
            stdout = sys.stdout
            sys.stdout = io.StringIO()
            try:
                rc = pr.main(["--guest-log", paths["guest"], "--insns", paths["insns"],
                              "--system-map", paths["map"], "--top", "2", "--out", out] + extra)
            finally:
                sys.stdout = stdout
            self.assertEqual(0, rc)
            with open(out) as f:
                return f.read()

    def test_files_to_markdown(self):
        md = self.report(GUEST, INSNS)
        self.assertIn("| bus1 | 0 | 10 | 62 | 42 | 6.20x | - | - | 6 |", md)
        self.assertIn("| unix | 0 | 10 | 10 | 0 | 1.00x | - | - | 2 |", md)
        self.assertNotIn("locked instructions per", md)
        self.assertIn("| 40.0 | 64.5% | `<peer::Peer>::send_prepared [bus1]` |", md)
        self.assertIn("| 10.0 | 16.1% | `do_syscall_64` |", md)
        self.assertIn("| 12.0 | 19.4% | all other functions |", md)
        self.assertIn("- kernel 7.2.12, 1 vCPU", md)
        self.assertNotIn("Multicast", md)

    def test_cache_lines_to_markdown(self):
        self.assertNotIn("cache lines moved", self.report(GUEST, INSNS))
        md = self.report(GUEST, INSNS, LINES)
        self.assertIn("## Round trips across two CPUs: cache lines moved", md)
        self.assertIn("| bus1_tx_rtt | 0 | 10 | 10.0 | 4.0 | 6.0 | 6.0 | 2.50x |", md)
        self.assertIn("| unix_rtt | 0 | 10 | 4.0 | 2.0 | 2.0 | 0.0 | 1.00x |", md)
        self.assertIn("### bus1_tx_rtt, 0 B across two CPUs: lines moved by function", md)
        self.assertIn("| 5.0 | 50.0% | `<peer::Peer>::send_prepared [bus1]` |", md)
        self.assertIn("| 2.0 | 20.0% | `[user space]` |", md)

    def test_accesses_to_markdown(self):
        md = self.report(GUEST, INSNS_ACCESSES)
        self.assertIn("| accesses / iteration | in bus1.ko |", md)
        self.assertIn("| bus1 | 0 | 10 | 62 | 42 | 6.20x | 5.0 | 4.0 | 6 | 19 | 6 |", md)
        self.assertIn("| unix | 0 | 10 | 10 | 0 | 1.00x | 2.0 | 0.0 | 2 | 2 | 0 |", md)
        md = self.report(GUEST, INSNS_LOCKED)
        self.assertIn("| bus1 | 0 | 10 | 62 | 42 | 6.20x | 5.0 | 4.0 | 6 | - | - |", md)

    def test_locked_to_markdown(self):
        md = self.report(GUEST, INSNS_LOCKED)
        self.assertIn("| bus1 | 0 | 10 | 62 | 42 | 6.20x | 5.0 | 4.0 |", md)
        self.assertIn("| unix | 0 | 10 | 10 | 0 | 1.00x | 2.0 | 0.0 |", md)
        self.assertIn("5.0 locked instructions per iteration; by function:", md)
        self.assertIn("| locked / iteration | share | function |", md)
        self.assertIn("| 3.0 | 60.0% | `<peer::Peer>::send_prepared [bus1]` |", md)
        self.assertIn("| 2.0 | 100.0% | `do_syscall_64` |", md)
        # Only the functions that have them.
        locked = md[md.index("5.0 locked instructions per iteration"):]
        locked = locked[:locked.index("\n## ")]
        self.assertNotIn("memcpy_orig", locked)
        self.assertNotIn("all other functions", locked)

    def test_round_trips_to_markdown(self):
        md = self.report(GUEST_RTT, INSNS_RTT)
        rtt = md[md.index("## Round trips: two processes"):]
        rtt = rtt[:rtt.index("\n## ")]
        self.assertIn("| case | size (B) | round trips | kernel insns / round trip | in bus1.ko | ratio to unix_rtt |",
                      rtt)
        self.assertIn("| bus1_tx_rtt | 0 | 10 | 80 | 56 | 4.00x |", rtt)
        self.assertIn("| unix_rtt | 0 | 10 | 20 | 0 | 1.00x |", rtt)
        # Their functions, per round trip.
        self.assertIn("## bus1_tx_rtt, 0 B: round trip of two processes, one TRANSACT per message", md)
        self.assertIn("80 instructions per round trip; the top 2 functions:", md)
        self.assertIn("| insns / round trip | share | function |", md)
        self.assertIn("| 50.0 | 62.5% | `<peer::Peer>::send_prepared [bus1]` |", md)
        self.assertIn("| 20.0 | 25.0% | `do_syscall_64` |", md)
        self.assertIn("| 10.0 | 12.5% | all other functions |", md)
        self.assertIn("| 16.0 | 80.0% | `do_syscall_64` |", md)

    def test_serial_part_to_markdown(self):
        md = self.report(GUEST_RTT_FIXED, INSNS_RTT_PHASES)
        split = md[md.index("### The serial part of a round trip"):]
        split = split[:split.index("\n## ")]
        self.assertIn("| case | size (B) | serial insns / round trip | ratio to unix_rtt | tail insns / round trip "
                      "| serial blocks / round trip | ratio to unix_rtt | tail blocks / round trip "
                      "| wake-ups / round trip | switches / round trip |", split)
        self.assertIn("| bus1_tx_rtt | 0 | 60 | 1.50x | 25 | 12 | 0.75x | 5 | 2.00 | 2.00 |", split)
        self.assertIn("| unix_rtt | 0 | 40 | 1.00x | 30 | 16 | 1.00x | 6 | 1.90 | 2.00 |", split)
        self.assertNotIn("the serial part by function", md)
        # Without the split, or with the kernel moved, no such table.
        self.assertNotIn("### The serial part", self.report(GUEST_RTT_FIXED, INSNS_RTT))
        self.assertNotIn("### The serial part", self.report(GUEST_RTT, INSNS_RTT_PHASES))

    def test_serial_part_by_function_to_markdown(self):
        md = self.report(GUEST_RTT_FIXED, INSNS_RTT_SERIAL)
        part = md[md.index("#### bus1_tx_rtt, 0 B: the serial part by function"):]
        part = part[:part.index("\n## ")]
        self.assertIn("60 instructions per round trip in the serial part, 50 of them in bus1.ko; the top 2 "
                      "functions", part)
        self.assertIn("| serial insns / round trip | share | function |", part)
        self.assertIn("| 50.0 | 83.3% | `<peer::Peer>::send_prepared [bus1]` |", part)
        self.assertIn("| 10.0 | 16.7% | `do_syscall_64` |", part)
        self.assertIn("#### unix_rtt, 0 B: the serial part by function", part)
        self.assertIn("| 12.8 | 85.3% | `do_syscall_64` |", part)

    def test_round_trips_leave_the_rest_as_it_was(self):
        """Without the round-trip sections, the report is the one without round trips: no row of
        theirs in the one-thread table (where bus1_tx_rtt would be 8.00x unix)."""
        def sections(md):
            return [s for s in md.split("\n## ")
                    if not s.startswith(("Round trips", "bus1_tx_rtt", "unix_rtt"))]
        md = self.report(GUEST_RTT, INSNS_RTT)
        self.assertEqual(sections(self.report(GUEST, INSNS)), sections(md))
        self.assertNotIn("8.00x", md)

    def test_multicast_to_markdown(self):
        md = self.report(GUEST_MC, INSNS_MC)
        self.assertIn("| bus1_mcast | 0 | 10 | 230 | 182 | 23.00x |", md)
        self.assertIn("| bus1_mcast | 0 | 8 | bus1 | 62 | 230 | 24 | 20 | 0.39x |", md)
        # Per destination: send_prepared, then do_syscall_64, the rest (weak_fn) in one row.
        self.assertIn("### bus1_mcast, 0 B: per destination, the top 2 functions", md)
        self.assertIn("| 20.0 | 83.3% | `<peer::Peer>::send_prepared [bus1]` |", md)
        self.assertIn("| 3.0 | 12.5% | `do_syscall_64` |", md)
        self.assertIn("| 1.0 | 4.2% | all other functions |", md)
        # And the case's own table.
        self.assertIn("## bus1_mcast, 0 B: one SEND from a to a node of each of 8 receivers", md)
        self.assertIn("| 180.0 | 78.3% | `<peer::Peer>::send_prepared [bus1]` |", md)


if __name__ == "__main__":
    quiet = "-q" in sys.argv
    argv = [a for a in sys.argv if a != "-q"]
    unittest.main(argv=argv, verbosity=0 if quiet else 2)
