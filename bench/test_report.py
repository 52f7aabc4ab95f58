#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Tests of bench/report.py on a small synthetic guest log (no matplotlib needed)."""
import csv
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402

LOG = """\
[    1.0] some kernel line
BENCH-INFO|kernel|7.2.12
BENCH|rtt|bus1|0|us|200.000|400.000|10|190.000|210.000
BENCH|rtt|unix|0|us|100.000|300.000|10|90.000|110.000
BENCH|rtt|futex|0|us|50.000|60.000|10|45.000|55.000
BENCH|rtt|binder|0|us|250.000|500.000|10|240.000|260.000
garbage [   2.0] random: crng BENCH|tput|bus1|65536|MiB/s|300.000|250.000|8|290.000|310.000
BENCH|tput|unix|65536|MiB/s|100.000|90.000|8|95.000|105.000
BENCH|tput_cpu|bus1|65536|MiB/CPU-s|160.000|150.000|8|155.000|165.000
BENCH|tput_cpu|unix|65536|MiB/CPU-s|200.000|190.000|8|195.000|205.000
BENCH-RATIO|tput_cpu|65536|bus1|unix|0.800|0.700|0.900|5
BENCH|tput_wait|bus1|65536|%|12.500|30.000|8|10.000|15.000
BENCH|mcast_total|bus1|1|ns|1000.000|1100.000|5|1000.000|1000.000
BENCH|mcast_total|bus1|2|ns|1400.000|1500.000|5|1400.000|1400.000
BENCH|mcast_total|bus1|4|ns|2200.000|2300.000|5|2200.000|2200.000
BENCH|mcast_send|bus1|2|ns|500.000|600.000|5|500.000|500.000
BENCH|mcast_send|bus1|4|ns|700.000|800.000|5|700.000|700.000
BENCH|scale|bus1|1pair_pinned|msg/s|1000.000|900.000|3|900.000|1100.000
BENCH|scale|bus1|2pairs_pinned|msg/s|1800.000|1700.000|3|1700.000|1900.000
BENCH|scale|bus1|1pair_pinned_xuid|msg/s|1000.000|900.000|3|900.000|1100.000
BENCH|scale|bus1|2pairs_pinned_xuid|msg/s|1500.000|1400.000|3|1400.000|1600.000
BENCH|scale|unix|1pair_pinned|msg/s|2000.000|1900.000|3|1900.000|2100.000
BENCH|scale|unix|2pairs_pinned|msg/s|3000.000|2900.000|3|2900.000|3100.000
BENCH-ERROR|cpu|bus1|0|open /dev/bus1: No such file or directory
noise BENCH-RATIO|rtt|0|bus1_tx|unix|0.900|0.800|1.100|5
BENCH-RATIO|rtt|0|bus1_tx|binder|0.950|0.900|0.990|5
BENCH-RATIO|rtt|0|bus1|unix|1.200|1.100|1.300|5
BENCH-RATIO|mcast|per_dest|total|unicast|0.450|0.400|0.550|5
BENCH-INFO|binder|binder
"""

# The second boot (Rust Binder): its own bus1 and AF_UNIX rows, which the
# report must not mix into the first boot's.
RLOG = """\
BENCH-INFO|binder|rbinder
BENCH-INFO|time_total_s|99.0
BENCH|rtt|bus1|0|us|999.000|999.000|10|999.000|999.000
BENCH|rtt|rbinder|0|us|240.000|480.000|10|230.000|250.000
BENCH|rtt_cpu0|rbinder|1024|us|150.000|300.000|10|140.000|160.000
BENCH-RATIO|rtt|0|bus1_tx|unix|9.000|9.000|9.000|5
BENCH-RATIO|rtt|0|bus1_tx|rbinder|1.050|0.980|1.200|5
BENCH-RATIO|rtt_cpu0|1024|bus1_tx|rbinder|0.700|0.650|0.750|5
BENCH-ERROR|rtt|rbinder|1024|BINDER_CTL_ADD bench-1-0: No such device
BENCH-ERROR|rtt|bus1|1024|an error of the second boot's bus1 row
"""


class ReportTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.log = os.path.join(self.dir.name, "bench.log")
        with open(self.log, "w") as f:
            f.write(LOG)
        self.rlog = os.path.join(self.dir.name, "bench-rbinder.log")
        with open(self.rlog, "w") as f:
            f.write(RLOG)
        self.rows, self.info, self.errs = report.parse(self.log)

    def tearDown(self):
        self.dir.cleanup()

    def test_parse_finds_rows_behind_console_noise(self):
        self.assertEqual(len(self.rows), 20)
        self.assertEqual(self.rows[("tput", "bus1", "65536")]["median"], 300.0)
        self.assertEqual(self.info["kernel"], "7.2.12")
        self.assertEqual(self.errs[0][:3], ("cpu", "bus1", "0"))

    def test_paired_ratios_parsed_and_tabled(self):
        r = report.parse_ratios(self.log)
        self.assertEqual(r[("rtt", "0", "bus1_tx", "unix")], (0.9, 0.8, 1.1, 5))
        lines = []
        report.ratio_md(r, lines.append)
        self.assertTrue(any("0.90x [0.80, 1.10]" in x for x in lines), lines)
        # Only the figures with systems in the table get one (not mcast).
        self.assertFalse(any("per_dest" in x for x in lines), lines)

    def test_rbinder_boot_adds_only_rust_binder_rows_and_ratios(self):
        ratios = report.parse_ratios(self.log)
        report.merge_rbinder(self.rows, self.info, self.errs, ratios, self.rlog)
        self.assertEqual(self.rows[("rtt", "rbinder", "0")]["median"], 240.0)
        self.assertEqual(self.rows[("rtt_cpu0", "rbinder", "1024")]["median"], 150.0)
        # The first boot's bus1 row and its ratio against AF_UNIX stay.
        self.assertEqual(self.rows[("rtt", "bus1", "0")]["median"], 200.0)
        self.assertEqual(ratios[("rtt", "0", "bus1_tx", "unix")], (0.9, 0.8, 1.1, 5))
        self.assertEqual(ratios[("rtt", "0", "bus1_tx", "rbinder")], (1.05, 0.98, 1.2, 5))
        self.assertEqual([e[:3] for e in self.errs], [("cpu", "bus1", "0"), ("rtt", "rbinder", "1024")])
        self.assertEqual(self.info["binder"], "binder")
        self.assertEqual(self.info["rbinder_binder"], "rbinder")
        self.assertAlmostEqual(report.derived(self.rows)["rtt_rbinder_0"], 200.0 / 240.0)

    def test_derived_ratios(self):
        d = report.derived(self.rows)
        self.assertAlmostEqual(d["rtt_unix_0"], 2.0)
        self.assertAlmostEqual(d["rtt_futex_0"], 4.0)
        self.assertAlmostEqual(d["rtt_binder_0"], 0.8)
        self.assertAlmostEqual(d["tput_unix_65536"], 3.0)
        self.assertAlmostEqual(d["tput_cpu_unix_65536"], 0.8)
        self.assertIsNone(d["tput_cpu_unix_4096"])
        # Slope of 1400 -> 2200 over n = 2..4 is 400 ns per destination.
        self.assertAlmostEqual(d["mcast_total_slope"], 400.0)
        self.assertAlmostEqual(d["mcast_total_ratio"], 0.4)
        self.assertAlmostEqual(d["scale_pairs_bus1"], 1.8)
        self.assertIsNone(d["cpu_unix_0"])

    def test_targets_met_missed_and_missing(self):
        ratios = report.parse_ratios(self.log)
        report.merge_rbinder(self.rows, self.info, self.errs, ratios, self.rlog)
        t = {x[0]: x for x in report.targets(report.derived(self.rows), ratios)}

        def verdict(name):
            return t[name][6]

        # Paired ratios: the value and interval of the repetitions.
        self.assertEqual(t["RTT 0 B, TRANSACT <= 1.0x AF_UNIX"][4:], (0.9, (0.8, 1.1), "met (median)"))
        self.assertEqual(verdict("RTT 0 B, TRANSACT <= C binder"), "met")
        self.assertEqual(t["RTT 0 B, TRANSACT <= Rust Binder"][4:], (1.05, (0.98, 1.2), "missed"))
        self.assertEqual(t["RTT 0 B, RFC v1 ABI <= 1.25x AF_UNIX"][4:], (1.2, (1.1, 1.3), "met (median)"))
        self.assertEqual(verdict("multicast: marginal cost per destination (send + receive) <= 0.5x a unicast"),
                         "met (median)")
        # Pooled medians where the log has no paired ratio: 300/100 MiB/s.
        self.assertEqual(t["64 KiB: wall-clock throughput >= 1.0x AF_UNIX"][4:], (3.0, None, "met"))
        # Per CPU-second: the paired ratio of its own figure, higher is better.
        self.assertEqual(t["64 KiB: throughput per CPU-second >= 1.0x AF_UNIX"][1:],
                         ("tput_cpu", 1.0, True, 0.8, (0.7, 0.9), "missed"))
        self.assertIsNone(verdict("RTT 1 KiB, TRANSACT <= Rust Binder"))
        self.assertIsNone(verdict("one thread SEND+RECV+release 0 B <= 1.6x AF_UNIX"))
        # Cross-UID pairs scale 1.5x, AF_UNIX 1.5x: met, without an interval.
        self.assertEqual(t["two independent pairs of different UIDs: bus1's 2-pair/1-pair scaling >= AF_UNIX's"][4:],
                         (1.0, None, "met"))

    def test_outputs(self):
        d = report.derived(self.rows)
        out_csv = os.path.join(self.dir.name, "bench.csv")
        out_md = os.path.join(self.dir.name, "bench.md")
        report.write_csv(self.rows, d, out_csv)
        ratios = report.parse_ratios(self.log)
        report.merge_rbinder(self.rows, self.info, self.errs, ratios, self.rlog)
        d = report.derived(self.rows)
        report.write_md(self.rows, self.info, self.errs, d, out_md, "bench.log", ratios, "bench-rbinder.log")
        with open(out_csv) as f:
            rows = {(r["figure"], r["system"], r["param"]): r for r in csv.DictReader(f)}
        self.assertEqual(rows[("rtt", "bus1", "0")]["ratio_to_unix"], "2.000")
        self.assertEqual(rows[("rtt", "bus1", "0")]["ratio_to_futex"], "4.000")
        self.assertEqual(rows[("tput", "bus1", "65536")]["tail_kind"], "p1")
        self.assertEqual(rows[("tput_cpu", "bus1", "65536")]["tail_kind"], "p1")
        self.assertEqual(rows[("tput_cpu", "bus1", "65536")]["ratio_to_unix"], "0.800")
        with open(out_md) as f:
            md = f.read()
        # bus1 RFC, TRANSACT, AF_UNIX, pipe, C binder, Rust Binder, futex, then
        # TRANSACT against AF_UNIX, C binder and Rust Binder (paired).
        self.assertIn("| 0 B | 200.0 (400.0) | n/a | 100.0 (300.0) | n/a | 250.0 (500.0) | 240.0 (480.0) | "
                      "50.0 (60.0) | 0.90x [0.80, 1.10] | 0.95x [0.90, 0.99] | 1.05x [0.98, 1.20] |", md)
        self.assertIn("| RTT 0 B, TRANSACT <= Rust Binder | rtt | 1.05x [0.98, 1.20] | **missed** |", md)
        self.assertIn("| binder of the second boot | rbinder |", md)
        # Throughput per wall-second and per CPU-second, each with its paired ratio where the log has one.
        self.assertIn("| 64 KiB | MiB per wall-second | 300 (250) | 100 (90) | 3.00x |", md)
        self.assertIn("| 64 KiB | MiB per CPU-second (sender + receiver) | 160 (150) | 200 (190) | "
                      "0.80x [0.70, 0.90] |", md)
        self.assertIn("| 4 KiB | MiB per CPU-second (sender + receiver) | n/a | n/a | n/a |", md)
        self.assertIn("share of the bus1 sender's CPU time: 4 KiB n/a, 64 KiB 12.5 %", md)
        self.assertIn("| 64 KiB: throughput per CPU-second >= 1.0x AF_UNIX | tput_cpu | 0.80x [0.70, 0.90] | "
                      "**missed** |", md)
        # The pinned ratio of the same pair next to the unpinned one.
        self.assertIn("| RTT 1 KiB, TRANSACT <= Rust Binder | rtt | n/a | not measured | 0.70x [0.65, 0.75] | met |",
                      md)
        # The targets lead: before the first table of results.
        self.assertLess(md.index("## Targets"), md.index("## Round-trip latency"))
        self.assertIn("### round trip, both processes on CPU 0, 1 KiB", md)
        self.assertIn("| / Rust Binder |", md)


if __name__ == "__main__":
    unittest.main()
