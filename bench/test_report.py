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
BENCH|mcast_total|bus1|1|ns|1000.000|1100.000|5|1000.000|1000.000
BENCH|mcast_total|bus1|2|ns|1400.000|1500.000|5|1400.000|1400.000
BENCH|mcast_total|bus1|4|ns|2200.000|2300.000|5|2200.000|2200.000
BENCH|mcast_send|bus1|2|ns|500.000|600.000|5|500.000|500.000
BENCH|mcast_send|bus1|4|ns|700.000|800.000|5|700.000|700.000
BENCH|scale|bus1|1pair_pinned|msg/s|1000.000|900.000|3|900.000|1100.000
BENCH|scale|bus1|2pairs_pinned|msg/s|1800.000|1700.000|3|1700.000|1900.000
BENCH-ERROR|cpu|bus1|0|open /dev/bus1: No such file or directory
noise BENCH-RATIO|rtt|0|bus1_tx|unix|0.900|0.800|1.100|5
"""


class ReportTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.log = os.path.join(self.dir.name, "bench.log")
        with open(self.log, "w") as f:
            f.write(LOG)
        self.rows, self.info, self.errs = report.parse(self.log)

    def tearDown(self):
        self.dir.cleanup()

    def test_parse_finds_rows_behind_console_noise(self):
        self.assertEqual(len(self.rows), 13)
        self.assertEqual(self.rows[("tput", "bus1", "65536")]["median"], 300.0)
        self.assertEqual(self.info["kernel"], "7.2.12")
        self.assertEqual(self.errs[0][:3], ("cpu", "bus1", "0"))

    def test_paired_ratios_parsed_and_tabled(self):
        r = report.parse_ratios(self.log)
        self.assertEqual(r[("rtt", "0", "bus1_tx", "unix")], (0.9, 0.8, 1.1, 5))
        lines = []
        report.ratio_md(r, lines.append)
        self.assertTrue(any("0.90x [0.80, 1.10]" in x for x in lines), lines)

    def test_derived_ratios(self):
        d = report.derived(self.rows)
        self.assertAlmostEqual(d["rtt_unix_0"], 2.0)
        self.assertAlmostEqual(d["rtt_futex_0"], 4.0)
        self.assertAlmostEqual(d["rtt_binder_0"], 0.8)
        self.assertAlmostEqual(d["tput_unix_65536"], 3.0)
        # Slope of 1400 -> 2200 over n = 2..4 is 400 ns per destination.
        self.assertAlmostEqual(d["mcast_total_slope"], 400.0)
        self.assertAlmostEqual(d["mcast_total_ratio"], 0.4)
        self.assertAlmostEqual(d["scale_pairs_bus1"], 1.8)
        self.assertIsNone(d["cpu_unix_0"])

    def test_targets_met_missed_and_missing(self):
        t = {name: ok for name, _, ok in report.targets(report.derived(self.rows))}
        self.assertFalse(t["RTT 0 B <= 1.0x AF_UNIX"])
        self.assertTrue(t["RTT 0 B <= binder"])
        self.assertTrue(t["throughput 64 KiB >= 1.5x AF_UNIX"])
        self.assertTrue(t["two independent pairs >= 1.7x one pair"])
        self.assertIsNone(t["single-thread send+recv CPU 0 B <= 1.2x AF_UNIX"])

    def test_outputs(self):
        d = report.derived(self.rows)
        out_csv = os.path.join(self.dir.name, "bench.csv")
        out_md = os.path.join(self.dir.name, "bench.md")
        report.write_csv(self.rows, d, out_csv)
        report.write_md(self.rows, self.info, self.errs, d, "## Notes\n", out_md, "bench.log")
        with open(out_csv) as f:
            rows = {(r["figure"], r["system"], r["param"]): r for r in csv.DictReader(f)}
        self.assertEqual(rows[("rtt", "bus1", "0")]["ratio_to_unix"], "2.000")
        self.assertEqual(rows[("rtt", "bus1", "0")]["ratio_to_futex"], "4.000")
        self.assertEqual(rows[("tput", "bus1", "65536")]["tail_kind"], "p1")
        with open(out_md) as f:
            md = f.read()
        self.assertIn("| 0 B | 200.0 (400.0) | 100.0 (300.0) |", md)
        self.assertIn("**missed**", md)
        self.assertIn("## Notes", md)


if __name__ == "__main__":
    unittest.main()
