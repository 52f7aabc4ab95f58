#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Summarises the guest output of scripts/bench-ab.sh.

The output holds runs of bus1-bench, each after a line `BENCH-AB|base` or
`BENCH-AB|new`, in rounds of one base and one new run. Per figure of unit ns or
us (the round trips), in its unit: the median and range of the runs' medians
for each module, their ratio, and the paired difference (new minus base) within
each round, with how many rounds were faster with the new module. Rows of 0 (a
clock that did not advance) are left out.
"""
import re
import statistics as st
import sys

ROW = re.compile(r"BENCH\|(\w+)\|(\w+)\|(\w+)\|(ns|us)\|([\d.]+)\|[\d.]+\|\d+\|[\d.]+\|[\d.]+")


def parse(path):
    runs = []
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            m = re.fullmatch(r"BENCH-AB\|(base|new)", line)
            if m:
                runs.append((m.group(1), {}))
                continue
            m = ROW.fullmatch(line)
            if m and runs and float(m.group(5)) > 0:
                runs[-1][1][m.group(1, 2, 3, 4)] = float(m.group(5))
    return runs


def main():
    runs = parse(sys.argv[1])
    keys = []
    for _, d in runs:
        keys += [k for k in d if k not in keys]
    print(f"runs: base {sum(v == 'base' for v, _ in runs)}, new {sum(v == 'new' for v, _ in runs)}")
    print(f"{'figure':26} {'base median [range]':>26} {'new median [range]':>26} {'new/base':>8}  paired new-base")
    for k in keys:
        b = [d[k] for v, d in runs if v == "base" and k in d]
        n = [d[k] for v, d in runs if v == "new" and k in d]
        diffs = []
        for i in range(0, len(runs) - 1, 2):
            pair = dict((v, d.get(k)) for v, d in runs[i:i + 2])
            if pair.get("base") is not None and pair.get("new") is not None:
                diffs.append(pair["new"] - pair["base"])
        if not b or not n or not diffs:
            continue
        mb, mn = st.median(b), st.median(n)
        # Round trips are reported in us, with a tenth's precision.
        p = 1 if k[3] == "us" else 0
        print(f"{'/'.join(k[:3]):26} {mb:9.{p}f} [{min(b):6.{p}f}, {max(b):6.{p}f}] {mn:9.{p}f} [{min(n):6.{p}f}, {max(n):6.{p}f}]"
              f" {mn / mb:8.3f}  {st.median(diffs):+.{p}f} {k[3]}, {sum(x < 0 for x in diffs)}/{len(diffs)} faster")


if __name__ == "__main__":
    main()
