#!/usr/bin/env python3
"""Ratios, targets, the Markdown table and the SVG chart of a benchmark result.

Usage: report.py RESULT.json   (re-renders RESULT.md and RESULT.svg beside it)
"""

from __future__ import annotations

import html
import json
import shutil
import sys
from pathlib import Path

MIB = 1024.0

# The targets, as ratios to the no-audit-logging arm of the same run (see docs/performance.md / the issue).
TARGETS = {
    "throughput": {"meshaudit_default": 0.90, "meshaudit_log": 0.90, "meshaudit_default_mtls": 0.95},
    "cpu_ratio_max": 1.10,
    "p99_ratio_max": 1.50,  # at half the arm's own maximum (issue 20)
    "rss_delta_mib_max": 15.0,  # per worker (--concurrency 1: one worker)
    "rss_min_load_seconds": 60,
    "dispatches_per_req_max": 0.02,
    "redaction_throughput_min": 0.97,  # meshaudit_log vs meshaudit_noredact (both access loggers)
}
DEFAULT_ARMS = ("meshaudit_default", "meshaudit_log", "meshaudit_default_mtls")


def _ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def add_derived(result: dict) -> dict:
    """Adds, per arm, `vs_baseline` (ratios and RSS delta to its no-logging baseline) and, for the
    run, `targets` (each with its verdict)."""
    arms = result["arms"]
    for name, a in arms.items():
        base = arms.get(a["baseline"])
        m, f = a["median"], a["final"]
        if base is None:
            a["vs_baseline"] = None
            continue
        bm, bf = base["median"], base["final"]
        a["vs_baseline"] = {
            "baseline": a["baseline"],
            "rps": _ratio(m["rps"], bm["rps"]),
            "cpu_us_per_req": _ratio(m["cpu_us_per_req"], bm["cpu_us_per_req"]),
            "p50_ms": _ratio(m["p50_ms"], bm["p50_ms"]),
            "p99_ms": _ratio(m["p99_ms"], bm["p99_ms"]),
            "p999_ms": _ratio(m["p999_ms"], bm["p999_ms"]),
            "rss_delta_mib": (f["rss_end_kib"] - bf["rss_end_kib"]) / MIB if f and bf else None,
        }
    quick = result["meta"].get("mode") == "quick"
    targets = []

    def add(what, arm, measured, limit, holds, unit=""):
        targets.append({"target": what, "arm": arm, "measured": measured, "limit": limit, "unit": unit,
                        "holds": holds})

    for arm, need in TARGETS["throughput"].items():
        if arm in arms:
            r = arms[arm]["vs_baseline"]["rps"]
            add(f"throughput ≥ {need:.2f}× no logging", arm, r, need, None if r is None else r >= need, "×")
    for pair in together_pairs(result):
        first, second = pair["arms"]
        r = pair["throughput_ratio"]
        if second == "meshaudit_noredact":
            need = TARGETS["redaction_throughput_min"]
            add(f"throughput ≥ {need:.2f}× of `meshaudit_noredact` (redaction off), both on the proxy core "
                "at the same time", first, r, need, None if r is None else r >= need, "×")
        elif first in TARGETS["throughput"] and second == arms.get(first, {}).get("baseline"):
            need = TARGETS["throughput"][first]
            add(f"throughput ≥ {need:.2f}× no logging, both on the proxy core at the same time",
                first, r, need, None if r is None else r >= need, "×")
            c = pair["cpu_ratio"]
            add(f"CPU per request ≤ {TARGETS['cpu_ratio_max']:.2f}× no logging, at the same time",
                first, c, TARGETS["cpu_ratio_max"], None if c is None else c <= TARGETS["cpu_ratio_max"], "×")
    for arm in DEFAULT_ARMS:
        if arm not in arms:
            continue
        vb = arms[arm]["vs_baseline"]
        r = vb["cpu_us_per_req"]
        add(f"CPU per request ≤ {TARGETS['cpu_ratio_max']:.2f}×", arm, r, TARGETS["cpu_ratio_max"],
            None if r is None else r <= TARGETS["cpu_ratio_max"], "×")
        r = vb["p99_ms"]
        add(f"p99 at half load ≤ {TARGETS['p99_ratio_max']:.2f}×", arm, r, TARGETS["p99_ratio_max"],
            None if r is None else r <= TARGETS["p99_ratio_max"], "×")
    for name, a in arms.items():
        if a["kind"] != "meshaudit" or a.get("diagnostic"):
            continue
        vb, f, m = a["vs_baseline"], a["final"], a["median"]
        d = vb["rss_delta_mib"]
        long_enough = f.get("load_seconds", 0) >= TARGETS["rss_min_load_seconds"]
        add(f"RSS ≤ +{TARGETS['rss_delta_mib_max']:g} MiB vs no logging, 1 worker, after "
            f"{f.get('load_seconds', 0):g} s of load" + ("" if long_enough else " (under 60 s: indicative)"),
            name, d, TARGETS["rss_delta_mib_max"], None if d is None else d <= TARGETS["rss_delta_mib_max"], " MiB")
        dp = m["dispatches_per_req"]
        add(f"dispatches per request ≤ {TARGETS['dispatches_per_req_max']}", name, dp,
            TARGETS["dispatches_per_req_max"], None if dp is None else dp <= TARGETS["dispatches_per_req_max"])
        got, resp = f.get("collector_received"), f.get("responses")
        extra = (f.get("checkpoints") or 0) + (f.get("gap_events") or 0)
        add("events at the collector = responses (+ checkpoint and gap events)", name,
            f"{got} / {resp}" + (f" + {extra}" if extra else ""), None,
            None if got is None or resp is None else got == resp + extra)
    sc = result.get("rss_scaling")
    if sc and sc.get("per_further_worker_kib") is not None:
        d = sc["per_further_worker_kib"] / MIB
        add(f"RSS ≤ +{TARGETS['rss_delta_mib_max']:g} MiB per further worker (1→{max(sc['delta_kib'], key=int)} workers)",
            "meshaudit_default", d, TARGETS["rss_delta_mib_max"], d <= TARGETS["rss_delta_mib_max"], " MiB")
    result["targets"] = targets
    result["meta"]["quick_note"] = (
        "quick mode: a few seconds per arm, one round; the figures only prove the harness works" if quick else ""
    )
    return result


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def _f(v, fmt="{:.0f}", none="–"):
    return none if v is None else fmt.format(v)


def _x(v):
    return "–" if v is None else f"{v:.2f}×"


def overloaded(a: dict) -> bool:
    """Whether the arm fell short of the fixed rate (half its own maximum of the round: it
    slowed down meanwhile): its latency then measures an ever-growing queue, not the proxy."""
    short = [r for r in a["rounds"] if r["fixed"]["rps"] < 0.97 * r["fixed_rate"]]
    return len(short) * 2 > len(a["rounds"])


def table(result: dict) -> str:
    rows = [
        "| arm | req/s (saturated) | × base | proxy CPU µs/req | × base | node CPU µs/req (proxy + agent) "
        "| p50 ms | p99 ms | p99.9 ms | p99 × base "
        "| RSS MiB | Δ RSS MiB | dispatches/req | at collector / responses |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, a in result["arms"].items():
        m, f, vb = a["median"], a["final"], a.get("vs_baseline") or {}
        is_base = a["baseline"] == name
        label = f"**{a['label']}**" if is_base else a["label"]
        coll = "–"
        if f.get("collector_received") is not None:
            coll = f"{f['collector_received']} / {f['responses']}"
        rows.append(
            "| " + " | ".join([
                f"{label} (`{name}`)",
                _f(m["rps"]),
                "base" if is_base else _x(vb.get("rps")),
                _f(m["cpu_us_per_req"], "{:.1f}"),
                "base" if is_base else _x(vb.get("cpu_us_per_req")),
                _f(m.get("node_cpu_us_per_req"), "{:.1f}"),
                _f(m["p50_ms"], "{:.3f}") + ("†" if overloaded(a) else ""),
                _f(m["p99_ms"], "{:.3f}") + ("†" if overloaded(a) else ""),
                _f(m["p999_ms"], "{:.3f}") + ("†" if overloaded(a) else ""),
                "base" if is_base else _x(vb.get("p99_ms")),
                _f(f.get("rss_end_kib") and f["rss_end_kib"] / MIB, "{:.1f}"),
                "base" if is_base else _f(vb.get("rss_delta_mib"), "{:+.1f}"),
                _f(m["dispatches_per_req"], "{:.4f}"),
                coll,
            ]) + " |"
        )
    return "\n".join(rows)


def targets_table(result: dict) -> str:
    rows = ["| target | arm | measured | holds |", "|---|---|---:|---|"]
    for t in result["targets"]:
        v = t["measured"]
        if isinstance(v, float):
            shown = f"{v:.4f}" if t["unit"] == "" else (f"{v:.2f}{t['unit']}" if t["unit"] == "×" else f"{v:+.1f}{t['unit']}")
        else:
            shown = str(v)
        verdict = "n/a" if t["holds"] is None else ("yes" if t["holds"] else "**no**")
        rows.append(f"| {t['target']} | `{t['arm']}` | {shown} | {verdict} |")
    return "\n".join(rows)


# Where meshaudit's CPU per request goes (GET, plaintext): each step adds one thing.
# The steps are those of meshaudit as an access logger (`meshaudit_log`), its cheapest form; what
# the HTTP filter costs on top is the same-time pair `meshaudit_default` / `meshaudit_log`.
BREAKDOWN = [
    ("plain", None, "Envoy proxying, no filter"),
    ("wasm_noop", "plain", "running a Wasm access logger at all (V8, one call per request)"),
    ("wasm_cel", "wasm_noop", "meshaudit's host calls (its attributes as one CEL list + 2 header maps)"),
    ("meshaudit_minimal", "wasm_cel", "meshaudit's own work: build, encode, batch, ship (no redaction)"),
    ("meshaudit_noredact", "meshaudit_minimal", "the default header allowlist (captured, encoded, not redacted)"),
    ("meshaudit_log", "meshaudit_noredact", "the default redaction rules and detectors"),
]


CODE_LABELS = {
    "wasm": "Wasm code",
    "envoy": "Envoy binary",
    "kernel": "kernel",
    "libraries": "libc etc.",
}


def breakdown(result: dict) -> list[str]:
    arms = result["arms"]
    if not all(name in arms for name, _, _ in BREAKDOWN):
        return []
    steps = (result.get("breakdown") or {}).get("steps")
    lines = steps_table(result) if steps else rounds_breakdown(result)
    if not lines:
        return []
    return lines + hostcall_lines(result)


def rounds_breakdown(result: dict) -> list[str]:
    """The steps from each arm's rounds (results without the side-by-side steps)."""
    arms = result["arms"]
    cpu = {n: arms[n]["median"]["cpu_us_per_req"] for n, _, _ in BREAKDOWN}
    if any(v is None for v in cpu.values()):
        return []
    lines = [
        "## Where the time goes (proxy CPU µs per request, GET, medians of the rounds)",
        "",
        "| step | arm | µs/req | added by this step | share of meshaudit's cost |",
        "|---|---|---:|---:|---:|",
    ]
    total = cpu["meshaudit_log"] - cpu["plain"]
    for name, prev, what in BREAKDOWN:
        added = None if prev is None else cpu[name] - cpu[prev]
        share = "" if added is None or total <= 0 else f"{added / total:.0%}"
        lines.append(f"| {what} | `{name}` | {cpu[name]:.1f} | {_f(added, '{:+.1f}', '')} | {share} |")
    lines += ["", f"meshaudit (access logger, default) adds {total:+.1f} µs per request over no logging.", ""]
    return lines


def steps_table(result: dict) -> list[str]:
    """Each step measured side by side with the step before it (same core, same seconds)."""
    bd = result["breakdown"]
    by_pair = {tuple(p["arms"]): p for p in bd["steps"]}
    classes = list(CODE_LABELS) if not bd.get("perf_skipped") else []
    first = bd["steps"][0]
    plain_us = first["median_cpu_us_per_req"].get(first["arms"][1])
    lines = [
        "## Where the time goes (proxy CPU per request, GET): each step beside the step before",
        "",
        "Each step is measured side by side with the one before it: both proxies on the proxy core over "
        f"the same seconds ({len(first['windows'])} window(s), medians), so the machine's drift cancels "
        "out of each step's ratio and difference. Two proxies sharing one core (and perf sampling both) "
        "spend more CPU per request than one proxy alone: compare the steps by their ratios, and their µs "
        "with each other, not with the rounds above."
        + (f" The last columns split what a step adds by the code that ran it: perf samples ({bd['sample_hz']} Hz) "
           "of both proxies, classed by mapping, times each proxy's CPU per request. Wasm code is what V8 "
           "compiled the module to; the Envoy binary holds Envoy, V8's runtime and the proxy-wasm host "
           "(host calls, header maps, CEL)." if classes else ""),
        "",
        "| step | arm | CPU × the step before | µs/req added | " + "".join(f"{CODE_LABELS[c]} | " for c in classes),
        "|---|---|---:|---:|" + "---:|" * len(classes),
        f"| {BREAKDOWN[0][2]} | `{BREAKDOWN[0][0]}` | {_f(plain_us, '{:.1f} µs/req')} | | " + "| " * len(classes),
    ]
    chained, total = 1.0, 0.0
    sums = dict.fromkeys(classes, 0.0)
    for name, prev, what in BREAKDOWN[1:]:
        p = by_pair.get((name, prev))
        if p is None or p["cpu_ratio"] is None:
            return []
        chained *= p["cpu_ratio"]
        total += p["median_added_us_per_req"] or 0.0
        code = p.get("median_added_by_code") or {}
        for c in classes:
            sums[c] += code.get(c) or 0.0
        lines.append(f"| {what} | `{name}` | {_x(p['cpu_ratio'])} | {_f(p['median_added_us_per_req'], '{:+.1f}')} | "
                     + "".join(f"{_f(code.get(c), '{:+.1f}')} | " for c in classes))
    lines += ["", f"Chained, the steps make meshaudit (access logger, default) {chained:.2f}× the CPU of no logging "
              f"({total:+.1f} µs per request)"]
    direct = next((p for p in together_pairs(result) if p["arms"] == ["meshaudit_log", "plain"]), None)
    lines[-1] += (f"; measured directly side by side, {_x(direct['cpu_ratio'])}." if direct else ".")
    if classes:
        lines.append("Of what meshaudit adds: " + ", ".join(f"{CODE_LABELS[c]} {sums[c]:+.1f} µs" for c in classes)
                     + ". Were meshaudit's own code free, the rest would still make it "
                     f"{(plain_us + total - sums['wasm']) / plain_us:.2f}× no logging." if plain_us else "")
    elif bd.get("perf_skipped"):
        lines.append(f"CPU by code not measured: {bd['perf_skipped']}.")
    lines.append("")
    return lines


def hostcall_lines(result: dict) -> list[str]:
    lines: list[str] = []
    prof = result.get("hostcall_profile")
    if prof:
        calls = prof["ns_per_call"]
        lines += [
            f"Host calls, timed one by one inside the Wasm VM ({prof['requests']} requests at a light load; "
            "mean wall-clock ns per call):",
            "",
            "| host call | ns |",
            "|---|---:|",
        ]
        for k, v in sorted(calls.items(), key=lambda kv: -kv[1]):
            lines.append(f"| `{k}` | {v:.0f} |")
        one_by_one = sum(v for k, v in calls.items() if k not in ("cel_list", "request_headers", "response_headers"))
        maps = calls.get("request_headers", 0) + calls.get("response_headers", 0)
        lines += ["", f"The attributes read one by one: {one_by_one / 1000:.1f} µs per request; as one CEL list "
                  "(`cel_list`, what meshaudit does, guarding only the attributes ordinary requests lack): "
                  f"{calls.get('cel_list', 0) / 1000:.1f} µs; the two header maps: {maps / 1000:.1f} µs.", ""]
    return lines


def rss_section(result: dict) -> list[str]:
    sc = result.get("rss_scaling")
    if not sc:
        return []
    keys = sorted(sc["delta_kib"], key=int)
    lines = [
        "## Memory by number of workers (VmRSS after a short saturated run)",
        "",
        "| workers (--concurrency) | no logging MiB | meshaudit default MiB | difference MiB |",
        "|---:|---:|---:|---:|",
    ]
    for n in keys:
        lines.append(f"| {n} | {sc['rss_kib']['plain'][n] / MIB:.1f} | {sc['rss_kib']['meshaudit_default'][n] / MIB:.1f} "
                     f"| {sc['delta_kib'][n] / MIB:+.1f} |")
    if sc.get("per_further_worker_kib") is not None:
        lines += ["", f"Each further worker adds {sc['per_further_worker_kib'] / MIB:.1f} MiB with meshaudit beyond what "
                  "it adds without; the rest of the difference is paid once per process (the main thread's VM, "
                  "the Wasm runtime, the compiled module)."]
    lines.append("")
    return lines


def together_pairs(result: dict) -> list[dict]:
    """The pairs measured at the same time (older results hold one pair, not a list)."""
    t = result.get("together")
    if not t:
        return []
    return [t] if isinstance(t, dict) else t


def together_section(result: dict) -> list[str]:
    pairs = together_pairs(result)
    if not pairs:
        return []
    lines = [
        "## Pairs side by side, at the same time",
        "",
        "Both proxies of a pair pinned to the proxy core and saturated over the same seconds: the "
        "scheduler shares the core evenly, so the throughput ratio is the inverse ratio of the cost per "
        "request, and the machine's drift between windows hits both alike.",
        "",
    ]
    for t in pairs:
        lines += pair_table(t)
    return lines


def pair_table(t: dict) -> list[str]:
    a, b = t["arms"]
    lines = [
        f"### `{a}` and `{b}`",
        "",
        f"| window | `{a}` req/s | `{b}` req/s | throughput ratio | `{a}` CPU µs/req | `{b}` CPU µs/req "
        "| cores used |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, w in enumerate(t["windows"], 1):
        ra, rb = w["rps"]
        ca, cb = w["cpu_us_per_req"]
        pa, pb = w["proxy_cores"]
        lines.append(f"| {i} | {ra:.0f} | {rb:.0f} | {_x(w['throughput_ratio'])} | {_f(ca, '{:.1f}')} | "
                     f"{_f(cb, '{:.1f}')} | {pa:.2f} + {pb:.2f} |")
    lines += [
        "",
        f"Median throughput ratio {_x(t['throughput_ratio'])}; median ratio of CPU per request "
        f"{_x(t['cpu_ratio'])}.",
        "",
    ]
    return lines


def markdown(result: dict) -> str:
    meta = result["meta"]
    rates = ", ".join(f"`{k}` {v:.0f} req/s" for k, v in result["rates"].items())
    git = meta["git"]
    lines = [
        f"# meshaudit side-by-side benchmark ({meta['mode']} run, {meta['started']})",
        "",
    ]
    if meta.get("quick_note"):
        lines += [f"> {meta['quick_note']}", ""]
    lines += [
        f"- commit `{git['commit'][:12]}`{' (with uncommitted changes)' if git['dirty'] else ''}; "
        f"wasm {meta['wasm']['bytes']} bytes (sha256 `{meta['wasm']['sha256'][:16]}…`)",
        f"- Envoy {meta['envoy']} `--concurrency 1` pinned to core {meta['pinning']['proxy']}; "
        f"{meta['load_generator']}, the upstream Envoy (direct_response) and the Rotel collectors on core "
        f"{meta['pinning']['load_upstream_collector']}; {meta['cpus']} × {meta['cpu_model']}",
        f"- {meta['plan_text']}; medians over rounds; rounds interleave the arms (order rotated each round)",
        f"- fixed rate for latency: half the arm's own saturated maximum in the same round, after what "
        f"the saturated run left buffered was shipped ({meta.get('fixed_rate_method', 'latency-corrected')}); "
        f"medians: {rates}",
        f"- requests: {meta['requests']['get']}; heavy family: {meta['requests']['post']}",
        f"- load average at start {meta['loadavg_start'][0]:.2f}, at end {meta['loadavg_end'][0]:.2f}"
        + (f"; benchmark processes at nice {meta['nice']} (own sessions/autogroups: the machine was shared)"
           if meta.get("nice") else ""),
        "",
        table(result),
        "",
        "Ratios (×) are to the arm's no-logging baseline in bold (GET plain, POST plain, mTLS plain). "
        "CPU is the proxy process's utime+stime over the saturated window divided by the responses in it; "
        "RSS is VmRSS after all rounds; dispatches are meshaudit's batches_sent + batches_failed per "
        "response during the saturated window. † the arm could not sustain the fixed rate (half its "
        "own maximum): its latency measures a growing queue.",
        "",
        "## Targets",
        "",
        targets_table(result),
        "",
        *breakdown(result),
        *together_section(result),
        *rss_section(result),
        "## Per round",
        "",
        "| arm | round | req/s | CPU µs/req | proxy cores | softirq on its core | other processes on its core "
        "| fixed rate asked / achieved | p99 ms | RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, a in result["arms"].items():
        for r in a["rounds"]:
            lines.append(
                f"| `{name}` | {r['round']} | {_f(r['rps'])} | {_f(r['cpu_us_per_req'], '{:.1f}')} | "
                f"{_f(r['proxy_cores'], '{:.2f}')} | {_f(r.get('softirq_on_proxy_core'), '{:.2f}')} | "
                f"{_f(r['other_load_on_proxy_core'], '{:.2f}')} | "
                f"{r['fixed_rate']:.0f} / {r['fixed']['rps']:.0f} | "
                f"{_f(r['p99_ms'], '{:.3f}')} | {r['rss_kib'] / MIB:.1f} |"
            )
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# SVG chart (hand-written: no plotting library needed)
# --------------------------------------------------------------------------------------------


def svg(result: dict) -> str:
    arms = [(n, a) for n, a in result["arms"].items() if a["baseline"] != n and a.get("vs_baseline")]
    series = [("throughput (saturated req/s)", "rps", "#2b6cb0"), ("proxy CPU per request", "cpu_us_per_req", "#dd6b20")]
    left, right, top, row_h, bar_h = 430, 60, 70, 46, 16
    width = 1040
    plot_w = width - left - right
    height = top + row_h * len(arms) + 90
    vals = [a["vs_baseline"].get(k) for _, a in arms for _, k, _ in series]
    vals = [v for v in vals if v is not None]
    xmax = max(1.2, min(4.0, max(vals) * 1.08)) if vals else 1.6
    step = 0.2 if xmax <= 1.6 else 0.5
    xmax = step * -(-xmax // step)

    def x(v):
        return left + plot_w * min(v, xmax) / xmax

    bottom = top + row_h * len(arms)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="13">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{width / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">'
        f'meshaudit benchmark: ratio to no audit logging (same run, medians)</text>',
        f'<text x="{width / 2}" y="44" text-anchor="middle" fill="#555">'
        f'{html.escape(result["meta"]["mode"])} run {html.escape(result["meta"]["started"])}; '
        f'Envoy --concurrency 1 on one core; each arm against its own baseline (GET, POST 4 KB, mTLS)</text>',
    ]
    v = 0.0
    while v <= xmax + 1e-9:
        out.append(f'<line x1="{x(v):.1f}" y1="{top - 6}" x2="{x(v):.1f}" y2="{bottom}" stroke="#eee"/>')
        out.append(f'<text x="{x(v):.1f}" y="{bottom + 16}" text-anchor="middle" fill="#555">{v:g}×</text>')
        v += step
    refs = ((1.0, "#000", "none"), (0.90, "#c53030", "4,3"), (0.95, "#c53030", "2,2"), (1.10, "#975a16", "6,3"))
    for ref, color, dash in refs:
        if ref <= xmax:
            out.append(f'<line x1="{x(ref):.1f}" y1="{top - 6}" x2="{x(ref):.1f}" y2="{bottom}" '
                       f'stroke="{color}" stroke-dasharray="{dash}"/>')
    for i, (name, a) in enumerate(arms):
        y0 = top + i * row_h
        out.append(f'<text x="{left - 8}" y="{y0 + row_h / 2 + 4}" text-anchor="end">{html.escape(a["label"])}</text>')
        for j, (_, key, color) in enumerate(series):
            val = a["vs_baseline"].get(key)
            yb = y0 + 6 + j * (bar_h + 2)
            if val is None:
                continue
            clipped = val > xmax
            out.append(f'<rect x="{left}" y="{yb}" width="{x(val) - left:.1f}" height="{bar_h}" fill="{color}"/>')
            out.append(f'<text x="{x(val) + 4:.1f}" y="{yb + bar_h - 3}" font-size="11">'
                       f'{"&gt; " if clipped else ""}{val:.2f}×</text>')
    ly = bottom + 42
    for j, (label, _, color) in enumerate(series):
        lx = left + j * 260
        out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{lx + 18}" y="{ly}">{html.escape(label)}</text>')
    out.append(f'<text x="{width / 2}" y="{ly + 22}" text-anchor="middle" font-size="11" fill="#555">dashed lines: throughput targets 0.90× '
               f'(plaintext) and 0.95× (mTLS) in red; CPU per request target 1.10× in brown</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def write_all(result: dict, out_dir: Path, stamp: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    latest = {
        out_dir / "latest.json": json.dumps(result, indent=2, sort_keys=False) + "\n",
        out_dir / "latest.md": markdown(result),
        out_dir / "latest.svg": svg(result),
    }
    written = []
    for path, text in latest.items():
        path.write_text(text)
        written.append(path)
        dated = out_dir / f"bench-{stamp}{path.suffix}"
        shutil.copyfile(path, dated)
        written.append(dated)
    return written


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    path = Path(sys.argv[1])
    result = json.loads(path.read_text())
    add_derived(result)
    path.with_suffix(".md").write_text(markdown(result))
    path.with_suffix(".svg").write_text(svg(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
