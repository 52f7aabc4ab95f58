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
BENCH|mcast_total|bus1_tx|1|ns|800.000|900.000|5|800.000|800.000
BENCH|mcast_total|bus1_tx|2|ns|1100.000|1200.000|5|1100.000|1100.000
BENCH|mcast_total|bus1_tx|4|ns|1700.000|1800.000|5|1700.000|1700.000
BENCH|mcast_send|bus1_tx|1|ns|400.000|500.000|5|400.000|400.000
BENCH|mem|bus1|further_handle|B|225.000|225.000|1|225.000|225.000
BENCH|mem|bus1|queued_message|B|249.000|249.000|1|249.000|249.000
BENCH|mem|bus1|idle_peer|B|2684.000|2684.000|1|2684.000|2684.000
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
BENCH-RATIO|mcast|per_dest|total_tx|unicast_tx|0.520|0.510|0.530|5
BENCH|rtt_cpu01|bus1_tx|0|us|102.000|150.000|10|100.000|104.000
BENCH|rtt_cpu01|unix|0|us|100.000|140.000|10|98.000|102.000
BENCH-RATIO|rtt_cpu01|0|bus1_tx|unix|1.020|0.990|1.040|5
BENCH-INFO|binder|binder
"""

# The scaling figure's per-repetition medians (round order). Per round,
# bus1 cross-UID scales 1.8, 2.0, 1.5, 1.65 and AF_UNIX 1.5, 1.6, 1.6, 1.5:
# paired ratios 1.2, 1.25, 0.9375, 1.1, so median 1.1 (rank ceil(4/2), as
# bus1-bench takes it) in [0.9375, 1.25]. Pairing the sorted series, or the
# medians of the series, gives other figures, and the pooled rows above 1.0.
REPS = """\
BENCH-REPS|scale|bus1|1pair_pinned_xuid|1000.000,500.000,1000.000,800.000
BENCH-REPS|scale|bus1|2pairs_pinned_xuid|1800.000,1000.000,1500.000,1320.000
[    3.0] noise BENCH-REPS|scale|unix|1pair_pinned|2000.000,1000.000,2000.000,1000.000
BENCH-REPS|scale|unix|2pairs_pinned|3000.000,1600.000,3200.000,1500.000
BENCH-REPS|scale|bus1|1pair_pinned|1000.000,1000.000,1000.000,1000.000
BENCH-REPS|scale|bus1|2pairs_pinned|1800.000,1800.000,1800.000,1800.000
BENCH-REPS|scale|unix|1to1|100.000,100.000,100.000,100.000
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


SCALE_TARGET = "two independent pairs of different UIDs: bus1's 2-pair/1-pair scaling >= AF_UNIX's"


class ReportTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.log = os.path.join(self.dir.name, "bench.log")
        with open(self.log, "w") as f:
            f.write(LOG)
        # The same log with the scaling figure's repetitions (a run of today's bus1-bench).
        self.slog = os.path.join(self.dir.name, "bench-scale.log")
        with open(self.slog, "w") as f:
            f.write(LOG + REPS)
        self.rlog = os.path.join(self.dir.name, "bench-rbinder.log")
        with open(self.rlog, "w") as f:
            f.write(RLOG)
        self.rows, self.info, self.errs = report.parse(self.log)

    def tearDown(self):
        self.dir.cleanup()

    def test_parse_finds_rows_behind_console_noise(self):
        self.assertEqual(len(self.rows), 29)
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
        # The one-call receive against its own unicast: 300 ns over 800 ns.
        self.assertAlmostEqual(d["mcast_total_tx_slope"], 300.0)
        self.assertAlmostEqual(d["mcast_total_tx_ratio"], 0.375)
        self.assertAlmostEqual(d["mcast_unicast_send_tx"], 400.0)
        self.assertIsNone(d["mcast_send_tx_slope"])
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
        # The median misses, one repetition meets: the interval crosses the limit.
        self.assertEqual(t["RTT 0 B, TRANSACT <= Rust Binder"][4:], (1.05, (0.98, 1.2), "missed (median)"))
        self.assertEqual(t["RTT 0 B, RFC v1 ABI <= 1.25x AF_UNIX"][4:], (1.2, (1.1, 1.3), "met (median)"))
        self.assertEqual(verdict("multicast: marginal cost per destination (send + receive) <= 0.5x a unicast"),
                         "met (median)")
        # The one-call receive is judged on its own paired ratio, not the pooled 0.375x.
        self.assertEqual(t["multicast, one-call receive (TRANSACT): marginal cost per destination <= 0.5x a unicast"][4:],
                         (0.52, (0.51, 0.53), "missed"))
        # Memory: bytes against bytes, no interval; at or below the limit is met.
        self.assertEqual(t["memory: a further handle to a node, in all (handle, holder entry, reserved "
                           "NODE_DESTROY) <= 128 B"][1:], ("mem", 128, False, 225.0, None, "missed"))
        self.assertEqual(verdict("memory: a queued message (queue entry and message) <= 256 B"), "met")
        self.assertEqual(verdict("memory: an idle peer <= 4096 B"), "met")
        # Pooled medians where the log has no paired ratio: 300/100 MiB/s.
        self.assertEqual(t["64 KiB: wall-clock throughput >= 1.0x AF_UNIX"][4:], (3.0, None, "met"))
        # Per CPU-second: the paired ratio of its own figure, higher is better.
        self.assertEqual(t["64 KiB: throughput per CPU-second >= 1.0x AF_UNIX"][1:],
                         ("tput_cpu", 1.0, True, 0.8, (0.7, 0.9), "missed"))
        self.assertIsNone(verdict("RTT 1 KiB, TRANSACT <= Rust Binder"))
        self.assertIsNone(verdict("one thread SEND+RECV+release 0 B <= 1.6x AF_UNIX"))
        # Without per-repetition values (an older log) the pooled medians:
        # cross-UID pairs scale 1.5x, AF_UNIX 1.5x: met, without an interval.
        self.assertEqual(t[SCALE_TARGET][4:], (1.0, None, "met"))

    def test_verdict_by_median_and_interval(self):
        # At most the limit: the whole interval, the median only, or neither.
        self.assertEqual("met", report.verdict(0.9, (0.8, 1.0), 1.0, False))
        self.assertEqual("met (median)", report.verdict(0.9, (0.8, 1.1), 1.0, False))
        self.assertEqual("missed (median)", report.verdict(1.05, (0.98, 1.2), 1.0, False))
        self.assertEqual("missed", report.verdict(1.05, (1.01, 1.2), 1.0, False))
        # At least the limit (throughput, scaling).
        self.assertEqual("met", report.verdict(1.2, (1.0, 1.3), 1.0, True))
        self.assertEqual("met (median)", report.verdict(1.2, (0.9, 1.3), 1.0, True))
        self.assertEqual("missed (median)", report.verdict(0.9, (0.8, 1.1), 1.0, True))
        self.assertEqual("missed", report.verdict(0.9, (0.8, 0.95), 1.0, True))
        # Without an interval (pooled medians, bytes) only the value counts; without a value, none.
        self.assertEqual("missed", report.verdict(225.0, None, 128, False))
        self.assertIsNone(report.verdict(None, None, 1.0, False))

    def test_interval_confidence_from_order_statistics(self):
        self.assertEqual(report.confidence(5), 0.9375)
        self.assertEqual(report.confidence(2), 0.5)
        lines = []
        report.targets_md(report.derived(self.rows), report.parse_ratios(self.log), lines.append)
        self.assertTrue(any("93.8 % for the n = 5 of most figures" in x for x in lines), lines)
        # No paired ratios, no claim.
        lines = []
        report.targets_md(report.derived(self.rows), {}, lines.append)
        self.assertFalse(any("order statistics" in x for x in lines), lines)

    def test_memory_targets_in_bytes(self):
        lines = []
        report.targets_md(report.derived(self.rows), report.parse_ratios(self.log), lines.append)
        self.assertTrue(any(x.startswith("| memory: an idle peer <= 4096 B | mem | 2684 B | met |") for x in lines),
                        lines)
        # Exactly at the limit is met; a run without the figure is not measured.
        rows = dict(self.rows)
        rows[("mem", "bus1", "queued_message")] = dict(rows[("mem", "bus1", "queued_message")], median=256.0)
        del rows[("mem", "bus1", "idle_peer")]
        t = {x[0]: x for x in report.targets(report.derived(rows), {})}
        self.assertEqual(t["memory: a queued message (queue entry and message) <= 256 B"][6], "met")
        self.assertIsNone(t["memory: an idle peer <= 4096 B"][6])

    def test_cpu_targets_suspect_when_af_unix_loop_disagrees_with_its_calls(self):
        # 0 B: AF_UNIX's loop 1000 ns against write 500 + read 450 (1.05x): judged.
        # 1 KiB: loop 4000 ns against 600 + 400 (4x): not judged, "suspect".
        log = os.path.join(self.dir.name, "bench-cpu.log")
        with open(log, "w") as f:
            f.write("""\
BENCH|cpu|bus1|0|ns|3000.000|4000.000|150|2900.000|3100.000
BENCH|cpu|unix|0|ns|1000.000|1500.000|150|950.000|1050.000
BENCH|cpu|bus1|1024|ns|1600.000|2000.000|150|1500.000|1700.000
BENCH|cpu|unix|1024|ns|4000.000|4500.000|150|3900.000|4100.000
BENCH|ops|unix|write_0|ns|500.000|600.000|100|490.000|510.000
BENCH|ops|unix|read_0|ns|450.000|550.000|100|440.000|460.000
BENCH|ops|unix|write_1024|ns|600.000|700.000|100|590.000|610.000
BENCH|ops|unix|read_1024|ns|400.000|500.000|100|390.000|410.000
BENCH-RATIO|cpu|0|bus1|unix|3.000|2.900|3.100|5
BENCH-RATIO|cpu|0|bus1_tx|unix|1.100|1.000|1.150|5
BENCH-RATIO|cpu|1024|bus1|unix|0.400|0.380|0.420|5
""")
        rows, _, _ = report.parse(log)
        ratios = report.parse_ratios(log)
        d = report.derived(rows)
        self.assertAlmostEqual(d["cpu_unix_vs_calls_0"], 1000 / 950)
        self.assertAlmostEqual(d["cpu_unix_vs_calls_1024"], 4.0)
        t = {x[0]: x for x in report.targets(d, ratios)}
        self.assertEqual(t["one thread SEND+RECV+release 0 B <= 1.6x AF_UNIX"][6], "missed")
        self.assertEqual(t["one thread, one-call path (TRANSACT) 0 B <= 1.2x AF_UNIX"][6], "met")
        # 0.4x would be "met"; its denominator is contradicted.
        self.assertEqual(t["one thread SEND+RECV+release 1 KiB <= 1.0x AF_UNIX"][4:], (0.4, (0.38, 0.42), "suspect"))
        out = os.path.join(self.dir.name, "out-cpu")
        os.makedirs(out)
        report.write_md(rows, {}, [], d, os.path.join(out, "bench.md"), "bench-cpu.log", ratios)
        with open(os.path.join(out, "bench.md")) as f:
            md = f.read()
        self.assertIn("| one thread SEND+RECV+release 1 KiB <= 1.0x AF_UNIX | cpu | 0.40x [0.38, 0.42] | **suspect** |", md)
        self.assertIn("4.00x its write and read timed one call at a time at 1 KiB", md)
        self.assertNotIn("at 0 B (they agree", md)

    def test_scale_ratios_paired_per_repetition(self):
        r = report.parse_ratios(self.slog)
        self.assertEqual(report.parse_reps(self.slog)[("scale", "unix", "1pair_pinned")],
                         [2000.0, 1000.0, 2000.0, 1000.0])

        def close(key, want):
            got = r[key]
            self.assertEqual(len(got), 4, key)
            for g, w in zip(got, want):
                self.assertAlmostEqual(g, w, msg=f"{key}: {got} != {want}")

        # Per round: (bus1 2 pairs / 1 pair) / (unix 2 pairs / 1 pair).
        close(("scale", "pairs_xuid", "bus1", "unix"), (1.1, 0.9375, 1.25, 4))
        # Same UID: bus1 1.8 every round against AF_UNIX's 1.5, 1.6, 1.6, 1.5.
        close(("scale", "pairs", "bus1", "unix"), (1.125, 1.125, 1.2, 4))
        # Each system's own scaling, with its interval.
        close(("scale", "pairs_xuid", "bus1", "one_pair"), (1.65, 1.5, 2.0, 4))
        close(("scale", "pairs", "unix", "one_pair"), (1.5, 1.5, 1.6, 4))
        # AF_UNIX has no cross-UID case of its own; fan-in lacks 2to1: nothing paired.
        self.assertNotIn(("scale", "pairs_xuid", "unix", "one_pair"), r)
        self.assertFalse([k for k in r if k[:2] == ("scale", "fanin")], r)
        # The target takes the paired ratio and its interval, not the pooled 1.0x.
        t = {x[0]: x for x in report.targets(report.derived(self.rows), r)}
        v, lo_hi, verdict = t[SCALE_TARGET][4:]
        self.assertAlmostEqual(v, 1.1)
        self.assertEqual((round(lo_hi[0], 4), lo_hi[1], verdict), (0.9375, 1.25, "met (median)"))

    def test_scale_pairs_only_whole_rounds(self):
        # A series short of a repetition cannot be paired round by round.
        self.assertIsNone(report.per_rep([1.0, 2.0], [1.0]))
        self.assertEqual(report.scale_ratios({("scale", "bus1", "1pair_pinned_xuid"): [1.0, 2.0],
                                              ("scale", "bus1", "2pairs_pinned_xuid"): [2.0, 3.0],
                                              ("scale", "unix", "1pair_pinned"): [1.0, 1.0],
                                              ("scale", "unix", "2pairs_pinned"): [2.0]}),
                         {("scale", "pairs_xuid", "bus1", "one_pair"): (1.5, 1.5, 2.0, 2)})
        self.assertEqual(report.summary([float("nan")]), None)

    def test_scale_table_and_target_row(self):
        out_md = os.path.join(self.dir.name, "bench.md")
        report.write_md(self.rows, self.info, self.errs, report.derived(self.rows), out_md, "bench-scale.log",
                        report.parse_ratios(self.slog))
        with open(out_md) as f:
            md = f.read()
        self.assertIn(f"| {SCALE_TARGET} | scale | 1.10x [0.94, 1.25] | met (median) |", md)
        self.assertIn("| **two pairs / one pair, different UIDs** | 1.65x [1.50, 2.00] | 1.50x [1.50, 1.60] "
                      "(UIDs do not matter) | 1.10x [0.94, 1.25] |", md)
        self.assertIn("| **two pairs / one pair** | 1.80x [1.80, 1.80] | 1.50x [1.50, 1.60] | 1.12x [1.12, 1.20] |", md)
        # Fan-in has no paired values in this log: pooled medians (none here).
        self.assertIn("| **two senders / one sender** | n/a | n/a | n/a |", md)
        self.assertIn("each repetition gives one paired ratio", md)

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
        self.assertIn("| RTT 0 B, TRANSACT <= Rust Binder | rtt | 1.05x [0.98, 1.20] | **missed (median)** |", md)
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
        # Pinned across CPUs: the last two columns, beside the (absent) ratio on CPU 0.
        self.assertIn("| RTT 0 B, TRANSACT <= 1.0x AF_UNIX | rtt | 0.90x [0.80, 1.10] | met (median) |  |  | "
                      "1.02x [0.99, 1.04] | **missed (median)** |", md)
        self.assertIn("### The same with the client pinned to CPU 0 and the server to CPU 1 (µs)", md)
        self.assertIn("| 0 B | n/a | 102.0 (150.0) | 100.0 (140.0) | n/a | n/a | n/a | n/a | 1.02x [0.99, 1.04] | "
                      "n/a | n/a |", md)
        self.assertIn("### round trip, client on CPU 0, server on CPU 1, 0 B", md)
        # The targets lead: before the first table of results.
        self.assertLess(md.index("## Targets"), md.index("## Round-trip latency"))
        self.assertIn("### round trip, both processes on CPU 0, 1 KiB", md)
        self.assertIn("| / Rust Binder |", md)


if __name__ == "__main__":
    unittest.main()
