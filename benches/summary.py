#!/usr/bin/env python3
"""Summarizes criterion's results of `cargo bench --bench redaction` (or any groups given):
time per event, MB/s over the event's text and events/s, from target/criterion/*/*/new/.

Usage: benches/summary.py [GROUP ...]   (default: redact redact_warm redact_parts)
"""

import json
import os
import sys
from pathlib import Path

TARGET_US = 2.0  # the goal: a typical event with the default rules in under 2 µs, natively


def estimate(est):
    """criterion's headline estimate: the slope when it has one, else the mean (ns)."""
    e = est.get("slope") or est["mean"]
    ci = e["confidence_interval"]
    return e["point_estimate"], ci["lower_bound"], ci["upper_bound"]


def main():
    groups = sys.argv[1:] or ["redact", "redact_warm", "redact_parts"]
    root = Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "criterion"
    rows = []
    for group in groups:
        for bench in sorted((root / group).glob("*/new/benchmark.json")):
            meta = json.loads(bench.read_text())
            est = json.loads((bench.parent / "estimates.json").read_text())
            ns, lo, hi = estimate(est)
            tp = meta.get("throughput") or {}
            if "ElementsAndBytes" in tp:
                nbytes = tp["ElementsAndBytes"]["bytes"]
            else:
                nbytes = tp.get("Bytes")
            sample = json.loads((bench.parent / "sample.json").read_text())
            per_iter = sorted(t / n for t, n in zip(sample["times"], sample["iters"]))
            # The 10th percentile of the samples: what the code costs when nothing else runs
            # (on a shared machine the mean also measures the neighbours).
            p10 = per_iter[len(per_iter) // 10]
            rows.append((meta["full_id"], ns, lo, hi, p10, nbytes))
    if not rows:
        print(f"no criterion results under {root} for {groups}")
        return 1
    print()
    print(f"{'benchmark':32} {'µs/event':>8} {'(95% CI)':>13} {'p10 µs':>7} "
          f"{'MB/s':>6} {'events/s':>9}")
    for name, ns, lo, hi, p10, nbytes in rows:
        mbs = f"{nbytes / ns * 1e3:6.0f}" if nbytes else f"{'':6}"
        ci = f"{lo / 1000:.2f}–{hi / 1000:.2f}"
        print(f"{name:32} {ns / 1000:8.2f} {ci:>13} {p10 / 1000:7.2f} {mbs} {1e9 / ns:9.0f}")
    by_name = {r[0]: (r[1] / 1000, r[4] / 1000) for r in rows}
    print()
    for name in ["redact_warm/default", "redact/default"]:
        if name in by_name:
            us, p10 = by_name[name]
            verdict = "holds" if us < TARGET_US else "does NOT hold"
            print(f"target < {TARGET_US} µs/event with the default rules ({name}): "
                  f"{us:.2f} µs (p10 {p10:.2f} µs), {verdict}")
    print("µs/event: criterion's estimate (slope or mean) with its 95% confidence interval; "
          "p10: 10th percentile of the samples.")
    print("MB/s and events/s from the estimate; MB/s counts the event's string values "
          "(1 MB = 10^6 bytes).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
