"""The side-by-side benchmark harness (`make bench`, benches/harness/) in its quick mode.

Runs every arm for a few seconds in real Envoy (no logging, file and OpenTelemetry access logs,
meshaudit default/heavy/diagnostic, the Wasm probes, plaintext and mTLS) and checks that the
harness works: its JSON, Markdown and SVG outputs exist and are well-formed, and every arm served
requests. It asserts nothing about speed: quick figures on a shared machine mean little.
The load comes from Debian's wrk (`make sysdeps`), mTLS arms through the harness's
TLS-originating Envoy: nothing is built from source for this test (`--no-install`).
"""

from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import testkit
from meshbench import arms as bench_arms

BENCH = testkit.REPO / "benches" / "harness" / "bench.py"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, wasm) -> Path:
    out = tmp_path_factory.mktemp("bench-out")
    work = tmp_path_factory.mktemp("bench-work")
    cmd = [str(testkit.venv_python()), str(BENCH), "--quick", "--no-install", "--out", str(out), "--workdir", str(work),
           # The same module as the baseline: the arm meshaudit_baseline runs too.
           "--baseline-wasm", str(wasm)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=testkit.REPO,
                          env={**os.environ, "MESHAUDIT_WASM": str(wasm)})
    if proc.returncode != 0:
        pytest.fail(
            f"bench.py --quick exited {proc.returncode}\n--- stderr ---\n{proc.stderr[-6000:]}\n"
            f"--- stdout ---\n{proc.stdout[-2000:]}",
            pytrace=False,
        )
    return out


def test_outputs_exist_with_dated_copies(quick_run):
    for suffix in ("json", "md", "svg"):
        latest = quick_run / f"latest.{suffix}"
        assert latest.is_file() and latest.stat().st_size > 0, latest
        dated = list(quick_run.glob(f"bench-*.{suffix}"))
        assert len(dated) == 1, dated
        assert dated[0].read_bytes() == latest.read_bytes()


def test_json_is_complete_and_every_arm_served_requests(quick_run):
    result = json.loads((quick_run / "latest.json").read_text())
    assert result["meta"]["mode"] == "quick"
    assert result["meta"]["load_generator"].startswith("wrk "), result["meta"]["load_generator"]
    assert "not latency-corrected" in result["meta"]["fixed_rate_method"]
    assert set(result["arms"]) == {a.name for a in bench_arms.ARMS}
    for name, arm in result["arms"].items():
        med, final = arm["median"], arm["final"]
        assert len(arm["rounds"]) == 1, name
        assert med["saturated_ok"] > 0, f"{name}: no successful response in the saturated run"
        assert med["fixed_ok"] > 0, f"{name}: no successful response in the fixed-rate run"
        assert med["rps"] > 0 and med["cpu_us_per_req"] > 0, name
        for key in ("p50_ms", "p99_ms", "p999_ms"):
            assert med[key] is not None and med[key] > 0, (name, key)
        assert med["p50_ms"] <= med["p99_ms"] <= med["p999_ms"], name
        # latency at half the arm's own maximum of the round, once its backlog was shipped
        rnd = arm["rounds"][0]
        assert rnd["fixed_rate"] == pytest.approx(max(1.0, rnd["rps"] / 2)), name
        assert rnd["backlog_settle_s"] >= 0, name
        assert final["responses"] > 0 and final["rss_end_kib"] > 0, name
        assert med["non_2xx"] == 0 and med["errors"] == 0, (name, arm["rounds"][0]["saturated"])
        if arm["baseline"] != name:
            assert arm["vs_baseline"]["rps"] is not None, name
        if arm["kind"] in ("meshaudit", "otel", "file"):
            assert isinstance(final["collector_received"], int), name
        if arm["kind"] == "meshaudit":
            assert final["events_captured"] > 0, name
            assert med["dispatches_per_req"] is not None, name
    # The shipped file log: its node agent's CPU counted on top of the proxy's, every line shipped.
    shipped = result["arms"]["file_json_shipped"]
    assert shipped["median"]["shipper_cpu_us_per_req"] > 0
    assert shipped["median"]["node_cpu_us_per_req"] > shipped["median"]["cpu_us_per_req"]
    # At least once: the agent's exporter may send a batch again when Rotel answers late.
    assert shipped["final"]["collector_received"] >= shipped["final"]["responses"], shipped["final"]
    assert result["arms"]["meshaudit_log"]["median"]["node_cpu_us_per_req"] == \
        result["arms"]["meshaudit_log"]["median"]["cpu_us_per_req"], "meshaudit ships from the proxy"
    assert result["rates"] and all(v > 0 for v in result["rates"].values())
    targets = {(t["target"].split(" ")[0], t["arm"]) for t in result["targets"]}
    assert {("throughput", a) for a in ("meshaudit_default", "meshaudit_log", "meshaudit_default_mtls")} <= targets
    prof = result["hostcall_profile"]
    assert prof and prof["requests"] > 0 and prof["ns_per_call"]
    assert result["rss_scaling"]["rss_kib"]["plain"]
    together = result["together"]
    assert [t["arms"] for t in together] == [
        ["meshaudit_log", "meshaudit_noredact"], ["meshaudit_default", "meshaudit_nointegrity"],
        ["meshaudit_default", "meshaudit_baseline"], ["meshaudit_default", "plain"],
        ["meshaudit_log", "plain"], ["meshaudit_log", "meshaudit_default"], ["wasm_noop", "wasm_noop_filter"],
        ["meshaudit_default_mtls", "plain_mtls"], ["file_json", "plain"], ["otel_grpc", "plain"],
    ]
    for pair in together:
        assert len(pair["windows"]) == 1
        for w in pair["windows"]:
            assert all(r > 0 for r in w["rps"]) and all(c and c > 0 for c in w["cpu_us_per_req"]), w
            assert w["throughput_ratio"] and w["throughput_ratio"] > 0, w
    same_time = {t["arm"] for t in result["targets"] if "at the same time" in t["target"]}
    assert same_time == {"meshaudit_default", "meshaudit_log", "meshaudit_default_mtls"}, same_time
    bd = result["breakdown"]
    steps = ["plain", "wasm_noop", "wasm_cel", "meshaudit_minimal", "meshaudit_noredact", "meshaudit_log"]
    assert [p["arms"] for p in bd["steps"]] == [[cur, prev] for prev, cur in zip(steps, steps[1:])]
    for pair in bd["steps"]:
        (w,) = pair["windows"]
        assert all(c and c > 0 for c in w["cpu_us_per_req"]), pair["arms"]
        assert pair["cpu_ratio"] > 0 and pair["median_added_us_per_req"] is not None, pair["arms"]
        if bd["perf_skipped"]:  # perf is optional: missing or not allowed here
            assert "samples" not in w and "median_added_by_code" not in pair
            continue
        for i, name in enumerate(pair["arms"]):
            assert sum(w["samples"][i].values()) > 0, name
            us = w["us_per_req_by_code"][i]
            assert abs(sum(us.values()) - w["cpu_us_per_req"][i]) < 1e-6 * w["cpu_us_per_req"][i], name
            if name == "plain":
                assert w["samples"][i]["envoy"] > 0 and w["samples"][i]["wasm"] == 0, "no Wasm code without Wasm"
            if name == "meshaudit_log":
                assert w["samples"][i]["wasm"] > 0, "the module's compiled code was sampled"
        assert set(pair["median_added_by_code"]) == {"wasm", "envoy", "kernel", "libraries"}
    if bd["perf_skipped"]:
        assert "perf" in bd["perf_skipped"], bd["perf_skipped"]


def test_markdown_has_a_row_per_arm_and_the_targets(quick_run):
    md = (quick_run / "latest.md").read_text()
    assert md.startswith("# meshaudit side-by-side benchmark (quick run")
    assert "wrk " in md and "paced per connection" in md, "the Markdown names the load generator and its method"
    header = next(line for line in md.splitlines() if line.startswith("| arm | req/s"))
    columns = header.count("|") - 1
    for a in bench_arms.ARMS:
        rows = [line for line in md.splitlines() if f"(`{a.name}`)" in line]
        assert len(rows) == 1, a.name
        assert rows[0].count("|") - 1 == columns, rows[0]
    assert "## Targets" in md and "## Where the time goes" in md
    assert "side by side, at the same time" in md
    assert "each step beside the step before" in md


def test_svg_is_well_formed_with_a_bar_per_compared_arm(quick_run):
    root = ET.fromstring((quick_run / "latest.svg").read_text())
    assert root.tag.endswith("svg")
    ns = "{http://www.w3.org/2000/svg}"
    texts = [t.text or "" for t in root.iter(f"{ns}text")]
    compared = [a for a in bench_arms.ARMS if a.baseline != a.name]
    for a in compared:
        assert a.label in texts, a.label
    bars = [r for r in root.iter(f"{ns}rect") if r.get("fill") in ("#2b6cb0", "#dd6b20") and r.get("height") == "16"]
    assert len(bars) == 2 * len(compared)
