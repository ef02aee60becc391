#!/usr/bin/env python3
"""meshaudit side-by-side throughput benchmark (`make bench`).

Compares, in one run with rounds interleaved and medians reported, Envoy with no audit logging,
Envoy's file access log, Envoy's OpenTelemetry access logger, meshaudit (default, heavy and a
minimal diagnostic configuration), and the no-logging and default arms again over mTLS.

Layout (2 cores): every Envoy under test runs with --concurrency 1 pinned to core 0 (taskset);
the load generator (oha; wrk for --quick), the upstream (a second Envoy answering with direct_response) and the
Rotel collectors run on core 1. Every socket is 127.0.0.1 on a free port.

Each arm's Envoy starts once and lives through all rounds; per round and arm:
  warm-up (saturating) -> saturated run (requests/s, CPU µs per request, dispatches) ->
  settle (what the saturated run left buffered reaches the collector) -> fixed-rate run at half
  the arm's own saturated maximum of that round (p50/p99/p99.9, latency-corrected) -> settle.
Rounds rotate the order of arms; diagnostic arms run in the first round only (their cost is
measured side by side, in the breakdown). After the last round: RSS, events at the collector.

Usage:
  bench.py [--quick] [--rounds N] [--arms a,b,...] [--out DIR] [--no-install]
  BENCH_QUICK=1 bench.py          (same as --quick)
Outputs (in --out, default benches/results; --quick: target/bench-quick): latest.json,
latest.md, latest.svg, and dated copies bench-YYYYmmddTHHMMSSZ.{json,md,svg}.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import testkit
from meshbench import arms as A
from meshbench import code_profile as CP
from meshbench import report
from meshbench import tools as T

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------------------------


@dataclass
class Plan:
    rounds: int
    warmup_s: float  # saturating warm-up before each saturated run (not measured)
    saturated_s: float  # measured saturated run
    fixed_s: float  # measured fixed-rate run
    connections: int  # keep-alive connections of the load generator, saturated runs
    fixed_connections: int  # the same, fixed-rate runs
    quick: bool

    def describe(self) -> str:
        return (
            f"{self.rounds} round(s); per arm and round: {self.warmup_s:g} s warm-up, {self.saturated_s:g} s "
            f"saturated ({self.connections} keep-alive connections), {self.fixed_s:g} s at a fixed rate "
            f"({self.fixed_connections} connections)"
        )


# Full run (16 arms; 2026-12-06): (10 arms x 3 rounds + 6 diagnostic arms x 1) x (1.5 + 6 + 6 s of
# load + settling) ~= 10 min, 13 side-by-side pairs x (1.5 + 3 x 6 s + settling) ~= 6 min, start-up,
# RSS by workers and the host call profile ~= 1.5 min. A main arm's proxy has had 40 s of load
# when its RSS is read.
FULL = Plan(rounds=3, warmup_s=1.5, saturated_s=6, fixed_s=6, connections=64, fixed_connections=16, quick=False)
# Quick: one round of about a second per phase and arm: proves the harness (what `make test`
# runs), measures little.
QUICK = Plan(rounds=1, warmup_s=0.5, saturated_s=1, fixed_s=1, connections=16, fixed_connections=8, quick=True)


# --------------------------------------------------------------------------------------------
# Processes (everything started here is stopped here)
# --------------------------------------------------------------------------------------------

_STARTED: list[Any] = []


def _stop_all() -> None:
    while _STARTED:
        part = _STARTED.pop()
        try:
            part.stop()
        except Exception as e:  # keep stopping the rest
            log(f"stopping {part!r}: {e}")


atexit.register(_stop_all)


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


class Pinned:
    """A test kit process started under `taskset -c CPU` (taskset execs it, so the child's pid
    is the process's own)."""

    def __init__(self, *args, cpu: int | None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cpu = cpu

    def command(self) -> list[str]:
        return T.pin(self.cpu) + super().command()


class PinnedEnvoy(Pinned, testkit.Envoy):
    def __repr__(self) -> str:
        return f"Envoy({self.config.name})"


class PinnedOtelCollector(Pinned, testkit.OtelCollector):
    """The node agent of a shipped file log: the OpenTelemetry Collector (otelcol-contrib)."""

    def __repr__(self) -> str:
        return "OtelCollector(shipper)"


class CountingRotel(testkit.Process):
    """Rotel (PyPI `rotel`, the e2e suite's collector) with a blackhole exporter and the basic
    debug log: one line per batch received, `Received logs. ... logs=N`, which `received()` sums.
    Pinned to `cpu`; ready when both its OTLP ports accept."""

    LINE = re.compile(r"Received logs\..*?(?<![\w.])logs=(\d+)")
    ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

    def __init__(self, workdir: Path, name: str, cpu: int | None) -> None:
        super().__init__(workdir / f"{name}.out")
        self.name = name
        self.cpu = cpu
        self.http_port = testkit.free_port()
        self.grpc_port = testkit.free_port()
        self.out_path = self.log_path

    def command(self) -> list[str]:
        return T.pin(self.cpu) + [
            str(testkit.rotel_bin()),
            "start",
            "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}",
            "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
            "--exporter", "blackhole",
            "--debug-log", "logs",
            "--debug-log-verbosity", "basic",
            "--pid-file", str(self.out_path.with_suffix(".pid")),
            "--log-file", str(self.out_path.with_suffix(".log")),
        ]

    def is_ready(self) -> bool:
        return testkit.port_open(self.http_port) and testkit.port_open(self.grpc_port)

    def waiting_for(self) -> str:
        return f"rotel {self.name} listening"

    def start(self, timeout: float | None = None) -> "CountingRotel":
        super().start(timeout)
        T.boost(self.pid)
        return self

    def received(self) -> int:
        text = self.ANSI.sub("", self.out_path.read_text(errors="replace"))
        return sum(int(m.group(1)) for m in self.LINE.finditer(text))

    def __repr__(self) -> str:
        return f"Rotel({self.name})"


# --------------------------------------------------------------------------------------------
# Load generation
# --------------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    ok: int  # 2xx responses
    non_2xx: int
    errors: int
    elapsed_s: float
    rps: float  # ok / elapsed
    p50_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    mean_ms: float | None
    status: dict
    error_kinds: dict

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class LoadGen:
    """A load generator: `run` sends one arm's requests to `port` for `duration` seconds over
    `connections` keep-alive HTTP/1.1 connections, as fast as they go or at a fixed `rate`."""

    name = ""
    # How the fixed-rate runs measure latency (recorded in the results).
    fixed_rate_method = ""

    def __init__(self, binary: Path, cpu: int | None, workdir: Path, pki: testkit.Pki, client: testkit.Cert) -> None:
        self.binary = binary
        self.cpu = cpu
        self.workdir = workdir
        self.body_path = workdir / "body.json"
        self.body_path.write_bytes(A.heavy_body())
        self.pki = pki
        self.client = client

    @staticmethod
    def version_of(binary: Path) -> str:
        raise NotImplementedError

    def run(self, arm: A.Arm, port: int, duration: float, connections: int, rate: float | None = None) -> LoadResult:
        raise NotImplementedError


# The POST arms' headers, besides the content type.
POST_HEADERS = [
    ("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"),
    ("x-customer-id", "cust-0001-4471"),
]


class OhaLoad(LoadGen):
    """oha (crates.io, pinned): open-model fixed rate with latency correction (latency counts
    from each request's scheduled send time) and client certificates. The full run's default."""

    name = "oha"
    fixed_rate_method = "open model, latency-corrected (oha -q RATE --latency-correction)"

    @staticmethod
    def version_of(binary: Path) -> str:
        return T.oha_version(binary)

    def command(self, arm: A.Arm, port: int, duration: float, connections: int, rate: float | None) -> list[str]:
        scheme = "https" if arm.mtls else "http"
        path = A.POST_PATH if arm.post else A.GET_PATH
        cmd = T.pin(self.cpu) + [
            str(self.binary),
            "--no-tui",
            "--output-format", "json",
            "--worker-threads", "1",
            "-z", f"{duration:g}s",
            "-w",
            "-c", str(connections),
            "-t", "10s",
            "--http-version", "1.1",
        ]
        if rate is not None:
            cmd += ["-q", f"{rate:.0f}", "--latency-correction"]
        if arm.post:
            cmd += ["-m", "POST", "-D", str(self.body_path), "-T", "application/json"]
            for k, v in POST_HEADERS:
                cmd += ["-H", f"{k}: {v}"]
        if arm.mtls:
            cmd += ["--cert", str(self.client.cert_path), "--key", str(self.client.key_path), "--insecure"]
        cmd.append(f"{scheme}://127.0.0.1:{port}{path}")
        return cmd

    def run(self, arm: A.Arm, port: int, duration: float, connections: int, rate: float | None = None) -> LoadResult:
        cmd = self.command(arm, port, duration, connections, rate)
        data = T.run_json(cmd, timeout=duration + 60)
        summary = data.get("summary", {})
        status = {str(k): int(v) for k, v in (data.get("statusCodeDistribution") or {}).items()}
        errors = {str(k): int(v) for k, v in (data.get("errorDistribution") or {}).items()}
        ok = sum(v for k, v in status.items() if k.startswith("2"))
        non2xx = sum(v for k, v in status.items() if not k.startswith("2"))
        elapsed = float(summary.get("total") or duration)
        pct = data.get("latencyPercentiles") or {}

        def ms(key: str) -> float | None:
            v = pct.get(key)
            return None if v is None else float(v) * 1000.0

        avg = summary.get("average")
        return LoadResult(
            ok=ok,
            non_2xx=non2xx,
            errors=sum(errors.values()),
            elapsed_s=elapsed,
            rps=ok / elapsed if elapsed > 0 else 0.0,
            p50_ms=ms("p50"),
            p99_ms=ms("p99"),
            p999_ms=ms("p99.9"),
            mean_ms=None if avg is None else float(avg) * 1000.0,
            status=status,
            error_kinds=errors,
        )


# wrk's Lua script: the request (method, body, headers), an optional pause before each request
# of a connection (the fixed-rate runs), and a summary line of JSON after wrk's own report.
WRK_SCRIPT = """local post, body_path, pause_ms = {post}, {body_path}, {pause_ms}
if post then
  local f = assert(io.open(body_path, "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["content-type"] = "application/json"
{headers}
end
if pause_ms > 0 then
  function delay() return pause_ms end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK-RESULT {{"duration_us":%d,"requests":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"mean_us":%.3f,"p50_us":%d,"p99_us":%d,"p999_us":%d}}\\n',
    summary.duration, summary.requests, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"""


class WrkLoad(LoadGen):
    """wrk (Debian package `wrk`, installed by `make sysdeps`): no build, the quick run's default.
    Two things it lacks, met here: a client certificate (mTLS arms go through a TLS-originating
    Envoy on the load core, `tcp_proxy`, one upstream TLS connection per wrk connection), and a
    fixed rate (each connection pauses `connections / rate` seconds before each request, so the
    rate is at most `rate` and latency counts from the actual send, not latency-corrected).
    Durations are whole seconds (wrk's `-d`), at least 1."""

    name = "wrk"
    fixed_rate_method = "paced per connection (wrk delay()), not latency-corrected"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._fronts: dict[int, int] = {}  # proxy port -> the TLS-originating front's port
        self._lock = threading.Lock()

    @staticmethod
    def version_of(binary: Path) -> str:
        return T.wrk_version(binary)

    def script(self, arm: A.Arm, pause_ms: int) -> Path:
        headers = "\n".join(f'  wrk.headers["{k}"] = "{v}"' for k, v in POST_HEADERS)
        text = WRK_SCRIPT.format(post="true" if arm.post else "false", body_path=_lua_string(str(self.body_path)),
                                 pause_ms=str(pause_ms), headers=headers)
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        path = self.workdir / f"wrk-{digest}.lua"
        if not path.exists():
            path.write_text(text)
        return path

    def front(self, port: int) -> int:
        """The plaintext port of a TLS-originating Envoy (client certificate) in front of the
        mTLS proxy on `port`; started on first use, stopped with everything else."""
        with self._lock:
            if port not in self._fronts:
                admin, listen = testkit.free_port(), testkit.free_port()
                cfg = A.tls_front_config(self.workdir, admin_port=admin, port=listen, upstream_port=port,
                                         cert=self.client.cert_path, key=self.client.key_path)
                front = PinnedEnvoy(cfg, admin, self.workdir / f"tls-front-{port}.log",
                                    listener_ports={"front": listen}, cpu=self.cpu)
                _STARTED.append(front)
                front.start()
                T.boost(front.pid)
                self._fronts[port] = listen
            return self._fronts[port]

    def run(self, arm: A.Arm, port: int, duration: float, connections: int, rate: float | None = None) -> LoadResult:
        path = A.POST_PATH if arm.post else A.GET_PATH
        target = self.front(port) if arm.mtls else port
        pause_ms = max(1, round(connections / rate * 1000.0)) if rate else 0  # wrk: whole milliseconds
        seconds = max(1, round(duration))
        cmd = T.pin(self.cpu) + [
            str(self.binary), "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
            "-s", str(self.script(arm, pause_ms)), f"http://127.0.0.1:{target}{path}",
        ]
        out = T.run_output(cmd, timeout=seconds + 60)
        line = next((ln for ln in out.splitlines() if ln.startswith("WRK-RESULT ")), None)
        if line is None:
            raise T.ToolError(f"wrk printed no result line: {out[-2000:]}")
        data = json.loads(line.removeprefix("WRK-RESULT "))
        requests, bad = int(data["requests"]), int(data["status"])  # status: responses >= 400
        errors = {k: int(data[k]) for k in ("connect", "read", "write", "timeout") if int(data[k])}
        elapsed = data["duration_us"] / 1e6 or float(seconds)
        ok = requests - bad

        def ms(key: str) -> float | None:
            return data[key] / 1000.0 if requests else None

        return LoadResult(
            ok=ok,
            non_2xx=bad,
            errors=sum(errors.values()),
            elapsed_s=elapsed,
            rps=ok / elapsed if elapsed > 0 else 0.0,
            p50_ms=ms("p50_us"),
            p99_ms=ms("p99_us"),
            p999_ms=ms("p999_us"),
            mean_ms=ms("mean_us"),
            status={"<400": ok, ">=400": bad} if bad else {"<400": ok},
            error_kinds=errors,
        )


def _lua_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


LOAD_GENERATORS = {"oha": OhaLoad, "wrk": WrkLoad}


# --------------------------------------------------------------------------------------------
# One arm's proxy
# --------------------------------------------------------------------------------------------

RQ_COMPLETED = f"http.{A.HCM_STAT_PREFIX}.downstream_rq_completed"
RQ_2XX = f"http.{A.HCM_STAT_PREFIX}.downstream_rq_2xx"
STATS_FILTER = "downstream_rq_completed|downstream_rq_2xx|meshaudit|access_log"


@dataclass
class ArmRun:
    arm: A.Arm
    envoy: PinnedEnvoy
    port: int
    rotel: CountingRotel | None
    access_log: Path | None
    rss_start_kib: int = 0
    shipper: PinnedOtelCollector | None = None  # the node agent of a shipped file log
    rounds: list[dict] = field(default_factory=list)
    final: dict = field(default_factory=dict)
    load_s: float = 0.0  # seconds of load it has had (rounds and side-by-side pairs)

    def stats(self) -> dict[str, int]:
        st = self.envoy.all_stats(STATS_FILTER)
        return st

    def ma(self, st: dict[str, int], name: str) -> int:
        return st.get(f"wasmcustom.meshaudit.{name}", 0)

    def collector_count(self) -> int | None:
        if self.rotel is not None:
            return self.rotel.received()
        if self.access_log is not None:
            if not self.access_log.exists():
                return 0
            with open(self.access_log, "rb") as f:
                return sum(1 for _ in f)
        return None

    def settle(self, timeout: float) -> dict[str, int]:
        """Wait until this arm has shipped what it holds: meshaudit's events all sent (or dropped)
        and its collector's count stable; the file log holding a line per response; the OTel
        logger's collector count stable. Returns the stats then."""
        deadline = time.monotonic() + timeout
        last_count, stable_since = None, time.monotonic()
        while True:
            st = self.stats()
            done = True
            if self.arm.kind == "meshaudit":
                captured = self.ma(st, "events_captured")
                handled = self.ma(st, "events_sent") + self.ma(st, "events_dropped")
                done = handled >= captured and self.ma(st, "buffered_events") == 0
            count = self.collector_count()
            if count is not None:
                if self.arm.kind == "file":
                    done = done and count >= st.get(RQ_COMPLETED, 0)
                elif self.arm.kind == "meshaudit":
                    done = done and count >= self.ma(st, "events_sent")
                else:  # otel: nothing in Envoy tells what is still buffered: wait for a stable count
                    if count != last_count:
                        last_count, stable_since = count, time.monotonic()
                    done = done and (count >= st.get(RQ_COMPLETED, 0) or time.monotonic() - stable_since > 2.5)
            if done or time.monotonic() >= deadline:
                return st
            time.sleep(0.1)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def git_describe() -> dict:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def envoy_version() -> str:
    out = subprocess.run([str(testkit.envoy_bin()), "--version"], capture_output=True, text=True, timeout=60)
    m = re.search(r"version:\s*(\S+)", out.stdout)
    return m.group(1) if m else out.stdout.strip()


def median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def measure_round(run: ArmRun, gen: LoadGen, plan: Plan, proxy_cpu: int | None) -> dict:
    arm = run.arm
    # warm-up: fills connection pools, JIT/V8 tiers, allocator caches
    warm = gen.run(arm, run.port, plan.warmup_s, plan.connections)
    run.load_s += plan.warmup_s + plan.saturated_s + plan.fixed_s
    run.settle(5.0)

    # saturated
    st0 = run.stats()
    core0 = T.core_times(proxy_cpu) if proxy_cpu is not None else None
    cpu0 = T.proc_cpu_seconds(run.envoy.pid)
    shipper0 = T.proc_cpu_seconds(run.shipper.pid) if run.shipper is not None else 0.0
    t0 = time.monotonic()
    sat = gen.run(arm, run.port, plan.saturated_s, plan.connections)
    wall = time.monotonic() - t0
    cpu1 = T.proc_cpu_seconds(run.envoy.pid)
    core1 = T.core_times(proxy_cpu) if proxy_cpu is not None else None
    st1 = run.stats()
    served = st1.get(RQ_COMPLETED, 0) - st0.get(RQ_COMPLETED, 0)
    cpu_s = cpu1 - cpu0
    foreign = softirq = None
    if core0 and core1 and core1.total > core0.total:
        busy_s = (core1.busy - core0.busy) / T.CLK_TCK
        softirq_s = (core1.softirq - core0.softirq) / T.CLK_TCK
        softirq = softirq_s / wall  # network processing on the proxy's core, charged to no process
        foreign = max(0.0, busy_s - softirq_s - cpu_s) / wall  # other processes on the proxy's core
    dispatches = None
    if arm.kind == "meshaudit":
        d = (run.ma(st1, "batches_sent") + run.ma(st1, "batches_failed")) - (
            run.ma(st0, "batches_sent") + run.ma(st0, "batches_failed"))
        dispatches = d / served if served else None

    # What the saturated run left buffered (meshaudit's queue, the OTel logger's stream, the node
    # agent's unread file) is shipped before the fixed-rate run: otherwise its latency measures
    # that backlog being worked off, in the proxy and on the load generator's core.
    t_backlog = time.monotonic()
    run.settle(15.0)
    backlog_s = time.monotonic() - t_backlog

    # fixed rate at half the arm's own maximum of this round (so every arm has the same headroom),
    # latency-corrected
    rate = max(1.0, sat.rps / 2)
    fixed = gen.run(arm, run.port, plan.fixed_s, plan.fixed_connections, rate=rate)
    st2 = run.settle(15.0)
    # A node agent works behind the proxy: its CPU counts from the saturated window's start until
    # it has shipped the round's requests (the settle above), per request of the round.
    shipper_us = None
    if run.shipper is not None:
        round_reqs = st2.get(RQ_COMPLETED, 0) - st0.get(RQ_COMPLETED, 0)
        shipper_s = T.proc_cpu_seconds(run.shipper.pid) - shipper0
        shipper_us = shipper_s / round_reqs * 1e6 if round_reqs else None
    proxy_us = (cpu_s / served * 1e6) if served else None
    return {
        "warmup_ok": warm.ok,
        "saturated": sat.as_dict(),
        "fixed": fixed.as_dict(),
        "fixed_rate": rate,
        "backlog_settle_s": backlog_s,
        "rps": sat.rps,
        "cpu_us_per_req": proxy_us,
        # The node's CPU per request: the proxy's, plus its node agent's when a shipper forwards
        # its log (meshaudit and the OTel logger ship from inside the proxy).
        "shipper_cpu_us_per_req": shipper_us,
        "node_cpu_us_per_req": None if proxy_us is None else proxy_us + (shipper_us or 0.0),
        "proxy_cores": cpu_s / wall if wall > 0 else None,
        "other_load_on_proxy_core": foreign,
        "softirq_on_proxy_core": softirq,
        "served_in_window": served,
        "dispatches_per_req": dispatches,
        "p50_ms": fixed.p50_ms,
        "p99_ms": fixed.p99_ms,
        "p999_ms": fixed.p999_ms,
        "rss_kib": T.proc_rss_kib(run.envoy.pid),
        "responses_total": st2.get(RQ_COMPLETED, 0),
        "collector_total": run.collector_count(),
    }


def saturate_all(group: list[ArmRun], gen: LoadGen, plan: Plan, duration: float) -> None:
    """Every arm of `group` under saturating load over the same seconds."""
    with ThreadPoolExecutor(len(group)) as ex:
        runs = [ex.submit(gen.run, r.arm, r.port, duration, plan.connections) for r in group]
        for f in runs:
            f.result()


def measure_together(a: ArmRun, b: ArmRun, gen: LoadGen, plan: Plan, windows: int, perf: Path | None = None) -> dict:
    """Arms `a` and `b` saturated at the same time, both proxies on the proxy core, `windows`
    times; with `perf`, each proxy's CPU is also split by the code it ran (code_profile).

    Run one after the other, two arms see different machines: this one's speed drifts by up to
    ±30% between adjacent 20-second windows, more than a few percent of difference between two
    arms. Sharing one core over the same seconds, both see the same machine; the scheduler gives
    each an even share, so the ratio of their throughputs is the inverse ratio of their cost per
    request. Per window and arm: responses per second, CPU µs per response, cores used, and with
    `perf` the µs per response of each class of code."""
    group = [a, b]
    for r in group:
        r.load_s += plan.warmup_s + windows * plan.saturated_s
    saturate_all(group, gen, plan, plan.warmup_s)
    for r in group:
        r.settle(5.0)
    out = []
    for _ in range(windows):
        recs = [CP.Recording(perf, r.envoy.pid) for r in group] if perf else []
        for rec in recs:
            rec.start()
        st0, cpu0 = [r.stats() for r in group], [T.proc_cpu_seconds(r.envoy.pid) for r in group]
        t0 = time.monotonic()
        saturate_all(group, gen, plan, plan.saturated_s)
        wall = time.monotonic() - t0
        st1, cpu1 = [r.stats() for r in group], [T.proc_cpu_seconds(r.envoy.pid) for r in group]
        samples = [rec.stop() for rec in recs]
        served = [s1.get(RQ_COMPLETED, 0) - s0.get(RQ_COMPLETED, 0) for s0, s1 in zip(st0, st1)]
        cpu = [c1 - c0 for c0, c1 in zip(cpu0, cpu1)]
        cost = [c / n * 1e6 if n else None for c, n in zip(cpu, served)]
        w = {
            "rps": [n / wall for n in served],
            "cpu_us_per_req": cost,
            "proxy_cores": [c / wall for c in cpu],
            "throughput_ratio": served[0] / served[1] if served[1] else None,
        }
        if perf:
            w["samples"] = samples
            w["us_per_req_by_code"] = [CP.split(s, c) for s, c in zip(samples, cost)]
        out.append(w)
        for r in group:
            r.settle(10.0)
    costs = [w["cpu_us_per_req"] for w in out]
    result = {
        "arms": [a.arm.name, b.arm.name],
        "windows": out,
        "median_cpu_us_per_req": {r.arm.name: median([c[i] for c in costs]) for i, r in enumerate(group)},
        "throughput_ratio": median([w["throughput_ratio"] for w in out]),
        "cpu_ratio": median([ca / cb if ca and cb else None for ca, cb in costs]),
        "median_added_us_per_req": median([ca - cb if ca and cb else None for ca, cb in costs]),
    }
    if perf:
        def added(w: dict, k: str) -> float | None:
            ua, ub = w["us_per_req_by_code"]
            return ua[k] - ub[k] if ua and ub else None

        result["median_added_by_code"] = {k: median([added(w, k) for w in out]) for k in CP.CLASSES}
    return result


# Pairs measured side by side at the same time (first / second): redaction's cost, and meshaudit
# and Envoy's own loggers against no logging (the comparisons of the interleaved rounds, free of
# the machine's drift).
TOGETHER = [
    ("meshaudit_log", "meshaudit_noredact"),
    ("meshaudit_default", "meshaudit_nointegrity"),
    ("meshaudit_default", "meshaudit_baseline"),
    ("meshaudit_default", "plain"),
    ("meshaudit_log", "plain"),
    ("meshaudit_log", "meshaudit_default"),
    # what loading a module as an HTTP filter costs over loading it as an access logger, with
    # nothing in it (the filter form's per-request contexts and callbacks)
    ("wasm_noop", "wasm_noop_filter"),
    ("meshaudit_default_mtls", "plain_mtls"),
    ("file_json", "plain"),
    ("otel_grpc", "plain"),
]

# The steps from no logging to meshaudit, each adding one thing (report.BREAKDOWN): each is
# measured side by side with the step before it, its CPU split by code where perf can sample.
BREAKDOWN_ARMS = ("plain", "wasm_noop", "wasm_cel", "meshaudit_minimal", "meshaudit_noredact", "meshaudit_log")


PROFILE_LINE = re.compile(r"meshaudit-probe-profile (requests=\d+ .*)$", re.M)


def profile_hostcalls(workdir: Path, gen: LoadGen, plan: Plan, probe: Path, wasm: Path, pki: testkit.Pki, up_port: int,
                      proxy_cpu: int | None) -> dict | None:
    """Runs the probe filter in `profile` mode under a light fixed load and returns its last
    report: mean ns per call of each host call meshaudit makes per request."""
    arm = A.Arm("wasm_profile", "Wasm probe: host call timing", "probe", probe_mode="profile", access_log=True,
                diagnostic=True)
    admin, port = testkit.free_port(), testkit.free_port()
    config = A.proxy_config(arm, workdir, admin_port=admin, listener_port=port, upstream_port=up_port,
                            collector_port=None, wasm=wasm, certs_dir=pki.directory, probe_wasm=probe)
    envoy = PinnedEnvoy(config, admin, workdir / "proxy-wasm_profile.log", listener_ports={A.LISTENER: port},
                        cpu=proxy_cpu)
    _STARTED.append(envoy)
    try:
        envoy.start()
        T.boost(envoy.pid)
        gen.run(arm, port, 3.0 if plan.quick else 6.0, 4, rate=1000)
        lines = PROFILE_LINE.findall(envoy.log_text())
    finally:
        envoy.stop()
        _STARTED.remove(envoy)
    if not lines:
        log("host call profile: no report in the probe's log")
        return None
    fields = dict(kv.split("=", 1) for kv in lines[-1].split())
    requests = int(fields.pop("requests"))
    clock = float(fields.pop("clock_ns"))
    calls = {k: float(v) for k, v in fields.items()}
    log(f"host call profile over {requests} requests: " + ", ".join(f"{k} {v:.0f} ns" for k, v in calls.items()))
    return {"requests": requests, "clock_ns": clock, "ns_per_call": calls,
            "note": "mean wall-clock ns per call inside the Wasm VM, light load (1000 req/s), clock cost subtracted"}


def measure_rss_scaling(workdir: Path, gen: LoadGen, plan: Plan, wasm: Path, pki: testkit.Pki, up_port: int,
                        rotel: CountingRotel | None, proxy_cpu: int | None) -> dict:
    """VmRSS of Envoy with no logging and with meshaudit (default) at 1, 2 and 4 workers, each
    after a short saturated run: the slope is what each further worker costs."""
    out: dict[str, dict[str, int]] = {}
    workers = (1, 2) if plan.quick else (1, 2, 4)
    for name in ("plain", "meshaudit_default"):
        arm = A.ARMS_BY_NAME[name]
        out[name] = {}
        for n in workers:
            admin, port = testkit.free_port(), testkit.free_port()
            collector = rotel.http_port if (arm.kind == "meshaudit" and rotel is not None) else None
            config = A.proxy_config(arm, workdir, admin_port=admin, listener_port=port, upstream_port=up_port,
                                    collector_port=collector, wasm=wasm, certs_dir=pki.directory)
            envoy = PinnedEnvoy(config, admin, workdir / f"proxy-{name}-rss{n}.log", listener_ports={A.LISTENER: port},
                                cpu=proxy_cpu, concurrency=n)
            _STARTED.append(envoy)
            try:
                envoy.start()
                T.boost(envoy.pid)
                gen.run(arm, port, 1.0 if plan.quick else 4.0, max(plan.connections, 8 * n))
                time.sleep(1.2)  # a flush tick
                out[name][str(n)] = T.proc_rss_kib(envoy.pid)
            finally:
                envoy.stop()
                _STARTED.remove(envoy)
    deltas = {n: out["meshaudit_default"][n] - out["plain"][n] for n in out["plain"]}
    keys = sorted(deltas, key=int)
    per_worker = None
    if len(keys) >= 2:
        per_worker = (deltas[keys[-1]] - deltas[keys[0]]) / (int(keys[-1]) - int(keys[0]))
    log("RSS by workers (MiB): " + ", ".join(
        f"{n}: plain {out['plain'][n] / 1024:.1f}, meshaudit {out['meshaudit_default'][n] / 1024:.1f}" for n in keys)
        + (f"; meshaudit costs {per_worker / 1024:.1f} MiB per further worker" if per_worker is not None else ""))
    return {"rss_kib": out, "delta_kib": deltas, "per_further_worker_kib": per_worker}


def summarize(run: ArmRun) -> dict:
    r = run.rounds
    return {
        "rps": median([x["rps"] for x in r]),
        "cpu_us_per_req": median([x["cpu_us_per_req"] for x in r]),
        "shipper_cpu_us_per_req": median([x.get("shipper_cpu_us_per_req") for x in r]),
        "node_cpu_us_per_req": median([x.get("node_cpu_us_per_req") for x in r]),
        "proxy_cores": median([x["proxy_cores"] for x in r]),
        "other_load_on_proxy_core": median([x["other_load_on_proxy_core"] for x in r]),
        "softirq_on_proxy_core": median([x["softirq_on_proxy_core"] for x in r]),
        "p50_ms": median([x["p50_ms"] for x in r]),
        "p99_ms": median([x["p99_ms"] for x in r]),
        "p999_ms": median([x["p999_ms"] for x in r]),
        "dispatches_per_req": median([x["dispatches_per_req"] for x in r]),
        "fixed_rate": median([x["fixed_rate"] for x in r]),
        "backlog_settle_s": median([x.get("backlog_settle_s") for x in r]),
        "saturated_ok": sum(x["saturated"]["ok"] for x in r),
        "fixed_ok": sum(x["fixed"]["ok"] for x in r),
        "non_2xx": sum(x["saturated"]["non_2xx"] + x["fixed"]["non_2xx"] for x in r),
        "errors": sum(x["saturated"]["errors"] + x["fixed"]["errors"] for x in r),
    }


# --------------------------------------------------------------------------------------------
# main, step by step
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK", "") not in ("", "0"))
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--arms", help="comma-separated subset (baselines are added as needed)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--workdir", type=Path, help="keep configs and logs here (default: a temporary directory)")
    ap.add_argument("--no-install", action="store_true",
                    help="fail instead of installing oha (wrk is never installed here: `make sysdeps`)")
    ap.add_argument("--load-generator", choices=sorted(LOAD_GENERATORS), default=os.environ.get("BENCH_LOADGEN"),
                    help="oha (default of the full run: fixed rate latency-corrected) or wrk (Debian's package, "
                         "default of --quick: fixed rate paced, not latency-corrected); $BENCH_LOADGEN")
    ap.add_argument("--baseline-wasm", type=Path, default=os.environ.get("BENCH_BASELINE_WASM") or None,
                    help="another build of the module (e.g. of the last release): adds the arm "
                    "meshaudit_baseline, measured side by side with meshaudit_default; $BENCH_BASELINE_WASM")
    ap.add_argument("--proxy-cpu", type=int, default=int(os.environ.get("BENCH_PROXY_CPU", "0")))
    ap.add_argument("--load-cpu", type=int, default=int(os.environ.get("BENCH_LOAD_CPU", "1")))
    return ap, ap.parse_args(argv)


def choose_plan(args: argparse.Namespace) -> tuple[Plan, Path]:
    """The durations (full or quick, --rounds) and the output directory."""
    plan = QUICK if args.quick else FULL
    if args.rounds:
        plan = Plan(**{**plan.__dict__, "rounds": args.rounds})
    out_dir = args.out or (REPO / "target" / "bench-quick" if plan.quick else HERE.parent / "results")
    return plan, out_dir.resolve()


def pin_cpus(args: argparse.Namespace) -> tuple[int, int | None, int | None]:
    """(usable CPUs, the proxies' core, the load/upstream/collector core); both cores None
    (unpinned) with fewer than 2 CPUs. This script moves to the load core."""
    ncpu = len(os.sched_getaffinity(0))
    proxy_cpu: int | None = args.proxy_cpu
    load_cpu: int | None = args.load_cpu
    if ncpu < 2 or proxy_cpu == load_cpu:
        log(f"only {ncpu} CPU(s) usable: running unpinned (figures are not comparable with a 2-core run)")
        proxy_cpu = load_cpu = None
    else:
        os.sched_setaffinity(0, {load_cpu})  # this script stays off the proxy's core
    return ncpu, proxy_cpu, load_cpu


def select_arms(ap: argparse.ArgumentParser, args: argparse.Namespace) -> list[A.Arm]:
    """The arms of --arms (every arm by default), with the baselines they need."""
    baseline = "meshaudit_baseline"
    selected = [a for a in A.ARMS if a.name != baseline or args.baseline_wasm]
    if args.arms:
        want = [a.strip() for a in args.arms.split(",") if a.strip()]
        unknown = [w for w in want if w not in A.ARMS_BY_NAME]
        if unknown:
            ap.error(f"unknown arms {unknown}; known: {[a.name for a in A.ARMS]}")
        if baseline in want and not args.baseline_wasm:
            ap.error(f"{baseline} needs --baseline-wasm (the module to compare with)")
        if args.baseline_wasm:
            want += [baseline, "meshaudit_default"]
        need = set(want) | {A.ARMS_BY_NAME[w].baseline for w in want}
        selected = [a for a in A.ARMS if a.name in need]
    return selected


@dataclass
class Workspace:
    """Where the run keeps its files, and the modules every proxy of the run loads (copies,
    so a rebuild meanwhile changes nothing)."""

    workdir: Path
    tmp: tempfile.TemporaryDirectory | None
    wasm_built: Path  # the filter as built (recorded in the results)
    wasm: Path  # its copy in workdir
    probe: Path | None  # the probe filter's copy, if a selected arm runs it
    baseline: Path | None = None  # --baseline-wasm's copy (arm meshaudit_baseline)


def load_generator(args: argparse.Namespace) -> tuple[type[LoadGen], Path]:
    """The load generator of the run (--load-generator; by default wrk for --quick, oha for the
    full run) and its executable: oha found or installed (cargo), wrk found (`make sysdeps`)."""
    name = args.load_generator or ("wrk" if args.quick else "oha")
    if name == "wrk":
        return WrkLoad, T.wrk_bin()
    return OhaLoad, T.oha_bin(install=not args.no_install)


def refuse_stale_module(wasm: Path) -> None:
    """The module must be built from the sources as they are: a run of `bench.py` alone (not
    `make bench`, which builds it first) would otherwise measure an older build and record the
    current commit beside it."""
    # The files the build read, from cargo's dep-info beside the module (test-only modules are
    # not among them: editing one does not rebuild the module).
    dep_info = wasm.with_suffix(".d")
    if not dep_info.is_file():
        return
    _, _, deps = dep_info.read_text().partition(": ")
    sources = [Path(d) for d in deps.split() if Path(d).is_file()]
    newer = [p for p in sources if p.stat().st_mtime > wasm.stat().st_mtime]
    if newer:
        raise testkit.HarnessError(
            f"{wasm} is older than {newer[0]} (and {len(newer) - 1} more): "
            "run `make wasm` first (`make bench` does)")


def prepare_workspace(args: argparse.Namespace, selected: list[A.Arm]) -> tuple[Workspace, type[LoadGen], Path]:
    """Finds the load generator (installs oha if needed) and the modules, checks Envoy and
    Rotel, sets up the work directory. Returns it, the load generator's class and path."""
    gen_cls, gen_bin = load_generator(args)
    wasm_built = testkit.require_wasm()
    refuse_stale_module(wasm_built)
    probe = T.probe_wasm(REPO) if any(a.kind == "probe" for a in selected) else None
    testkit.envoy_bin()
    testkit.rotel_bin()

    tmp = None
    if args.workdir:
        workdir = args.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="meshaudit-bench-")
        workdir = Path(tmp.name)

    # Every proxy of the run loads the same module, even if it is rebuilt meanwhile.
    wasm = workdir / "meshaudit.wasm"
    shutil.copyfile(wasm_built, wasm)
    if probe is not None:
        probe = Path(shutil.copyfile(probe, workdir / "probe.wasm"))
    baseline = None
    if args.baseline_wasm:
        baseline = Path(shutil.copyfile(args.baseline_wasm, workdir / "baseline.wasm"))
    return Workspace(workdir, tmp, wasm_built, wasm, probe, baseline), gen_cls, gen_bin


def run_metadata(plan: Plan, ws: Workspace, gen: tuple[type[LoadGen], Path], ncpu: int, proxy_cpu: int | None,
                 load_cpu: int | None, started: dt.datetime) -> dict:
    """What the results record about the run: when, what was measured with what, where."""
    wasm_built, wasm = ws.wasm_built, ws.wasm
    return {
        "started": started.isoformat(timespec="seconds"),
        "mode": "quick" if plan.quick else "full",
        "plan": plan.__dict__,
        "plan_text": plan.describe(),
        "git": git_describe(),
        "wasm": {"path": str(wasm_built.relative_to(REPO)) if wasm_built.is_relative_to(REPO) else str(wasm_built),
                 "bytes": wasm.stat().st_size, "sha256": hashlib.sha256(wasm.read_bytes()).hexdigest()},
        "envoy": envoy_version(),
        "load_generator": gen[0].version_of(gen[1]),
        "fixed_rate_method": gen[0].fixed_rate_method,
        "cpus": ncpu,
        "cpu_model": _cpu_model(),
        "pinning": {"proxy": proxy_cpu, "load_upstream_collector": load_cpu},
        "nice": T.niceness(),
        "loadavg_start": os.getloadavg(),
        "requests": {"get": f"GET {A.GET_PATH}", "post": f"POST {A.POST_PATH} ({A.BODY_BYTES}-byte JSON body)"},
    }


def start_upstream(workdir: Path, load_cpu: int | None) -> int:
    """The application behind every proxy (an Envoy answering from direct_response routes, on
    the load core): never the bottleneck. Returns its port."""
    up_admin, up_port = testkit.free_port(), testkit.free_port()
    upstream = PinnedEnvoy(
        A.upstream_config(workdir, admin_port=up_admin, port=up_port), up_admin, workdir / "upstream.log",
        listener_ports={"app": up_port}, cpu=load_cpu,
    )
    _STARTED.append(upstream)
    upstream.start()
    T.boost(upstream.pid)
    return up_port


def start_arms(selected: list[A.Arm], ws: Workspace, pki: testkit.Pki, up_port: int, proxy_cpu: int | None,
               load_cpu: int | None) -> dict[str, ArmRun]:
    """Each arm's collector (if it has one) and proxy, started once for the whole run."""
    runs: dict[str, ArmRun] = {}
    workdir = ws.workdir
    for arm in selected:
        rotel = None
        if arm.collector == "rotel":
            rotel = CountingRotel(workdir, f"rotel-{arm.name}", load_cpu)
            _STARTED.append(rotel)
            rotel.start()
        admin, port = testkit.free_port(), testkit.free_port()
        collector_port = None if rotel is None else (rotel.grpc_port if arm.kind == "otel" else rotel.http_port)
        config = A.proxy_config(
            arm, workdir, admin_port=admin, listener_port=port, upstream_port=up_port,
            collector_port=collector_port, wasm=ws.baseline if arm.name == "meshaudit_baseline" else ws.wasm,
            certs_dir=pki.directory, probe_wasm=ws.probe,
        )
        envoy = PinnedEnvoy(config, admin, workdir / f"proxy-{arm.name}.log", listener_ports={A.LISTENER: port},
                            cpu=proxy_cpu)
        _STARTED.append(envoy)
        envoy.start()
        T.boost(envoy.pid)
        if T.proc_comm(envoy.pid) != "envoy":
            raise testkit.HarnessError(f"pid {envoy.pid} is {T.proc_comm(envoy.pid)!r}, not envoy")
        access_log = workdir / f"access-{arm.name}.log" if arm.kind == "file" else None
        shipper = None
        if arm.shipper and access_log is not None and rotel is not None:
            shipper = PinnedOtelCollector(workdir, A.shipper_config(access_log, rotel.http_port),
                                          name=f"shipper-{arm.name}", cpu=load_cpu)
            _STARTED.append(shipper)
            shipper.start()
        run = ArmRun(arm, envoy, port, rotel, access_log, rss_start_kib=T.proc_rss_kib(envoy.pid),
                     shipper=shipper)
        runs[arm.name] = run
        log(f"started {arm.name}: proxy pid {envoy.pid} on :{port}, RSS {run.rss_start_kib / 1024:.1f} MiB")
    return runs


def run_rounds(runs: dict[str, ArmRun], selected: list[A.Arm], gen: LoadGen, plan: Plan,
               proxy_cpu: int | None) -> None:
    """The interleaved rounds: every arm once per round, the order rotated each round; a
    diagnostic arm in the first round only (what it is for is measured side by side)."""
    for rnd in range(plan.rounds):
        arms = [a for a in selected if rnd == 0 or not a.diagnostic]
        k = rnd % len(arms)
        order = arms[k:] + arms[:k]
        for arm in order:
            run = runs[arm.name]
            r = measure_round(run, gen, plan, proxy_cpu)
            r["round"] = rnd + 1
            run.rounds.append(r)
            util = r["proxy_cores"] or 0
            log(
                f"round {rnd + 1}/{plan.rounds} {arm.name:24} {r['rps']:8.0f} req/s  "
                f"{(r['cpu_us_per_req'] or 0):6.1f} µs/req  proxy {util:.2f} cores  "
                f"p99 {r['p99_ms'] or 0:.2f} ms @ {r['fixed_rate']:.0f}/s  "
                f"softirq {r['softirq_on_proxy_core'] or 0:.2f}, other processes {r['other_load_on_proxy_core'] or 0:.2f}"
            )


def run_together(runs: dict[str, ArmRun], gen: LoadGen, plan: Plan, breakdown: dict | None) -> list[dict]:
    """Pairs on one core at the same time (TOGETHER): redaction's cost, meshaudit against no
    logging. A pair the breakdown measured as one of its steps is taken from there."""
    steps = {tuple(p["arms"]): p for p in (breakdown or {}).get("steps", [])}
    together: list[dict] = []
    for first, second in TOGETHER:
        if (first, second) in steps:
            together.append(steps[(first, second)])
        elif first in runs and second in runs:
            pair = measure_together(runs[first], runs[second], gen, plan, windows=plan.rounds)
            together.append(pair)
            log(f"together: {first} / {second} throughput "
                + ", ".join(f"{w['throughput_ratio'] or 0:.3f}" for w in pair["windows"])
                + f" (median {pair['throughput_ratio'] or 0:.3f})")
    return together


def run_breakdown(runs: dict[str, ArmRun], gen: LoadGen, plan: Plan) -> dict | None:
    """The breakdown (BREAKDOWN_ARMS): each step side by side with the step before, its CPU
    split by code where perf can sample. None unless every step's arm ran."""
    if not all(n in runs for n in BREAKDOWN_ARMS):
        return None
    perf, why = CP.perf_bin()
    if perf is None:
        log(f"CPU by code not measured: {why}")
    steps = []
    for prev, cur in zip(BREAKDOWN_ARMS, BREAKDOWN_ARMS[1:]):
        pair = measure_together(runs[cur], runs[prev], gen, plan, windows=plan.rounds, perf=perf)
        steps.append(pair)
        log(f"step {cur} over {prev}: CPU ×{pair['cpu_ratio'] or 0:.3f}, "
            f"{pair['median_added_us_per_req'] or 0:+.1f} µs/req"
            + "".join(f", {k} {v or 0:+.1f}" for k, v in (pair.get("median_added_by_code") or {}).items()))
    return {"steps": steps, "perf_skipped": why, "sample_hz": CP.SAMPLE_HZ}


def record_final_figures(runs: dict[str, ArmRun], plan: Plan) -> None:
    """After the rounds, per arm: settle, then responses, collector counts, RSS (and
    meshaudit's delivery counters, the OTel logger's stats) into `run.final`."""
    for run in runs.values():
        st = run.settle(30.0)
        count = run.collector_count()
        run.final = {
            "responses": st.get(RQ_COMPLETED, 0),
            "responses_2xx": st.get(RQ_2XX, 0),
            "collector_received": count,
            "rss_start_kib": run.rss_start_kib,
            "rss_end_kib": T.proc_rss_kib(run.envoy.pid),
            "load_seconds": run.load_s,
        }
        if run.arm.kind == "meshaudit":
            run.final.update(
                events_captured=run.ma(st, "events_captured"),
                events_sent=run.ma(st, "events_sent"),
                events_dropped=run.ma(st, "events_dropped"),
                batches_sent=run.ma(st, "batches_sent"),
                batches_failed=run.ma(st, "batches_failed"),
                bytes_sent=run.ma(st, "bytes_sent"),
                # Events meshaudit sends besides one per request (they reach the collector too).
                checkpoints=run.ma(st, "checkpoints"),
                gap_events=run.ma(st, "gap_events"),
            )
        if run.arm.kind == "otel":
            run.final.update({k: v for k, v in st.items() if "access_log" in k})


def assemble_result(meta: dict, together: list[dict], breakdown: dict | None, hostcall_profile: dict | None,
                    rss_scaling: dict | None, runs: dict[str, ArmRun]) -> dict:
    """The results document (latest.json) before report.add_derived; `rates` are the arms' median
    fixed rates."""
    medians = {name: summarize(run) for name, run in runs.items()}
    return {
        "meta": meta,
        "rates": {name: m["fixed_rate"] for name, m in medians.items()},
        "together": together,
        "breakdown": breakdown,
        "hostcall_profile": hostcall_profile,
        "rss_scaling": rss_scaling,
        "arms": {
            name: {
                "label": run.arm.label,
                "kind": run.arm.kind,
                "mtls": run.arm.mtls,
                "post": run.arm.post,
                "baseline": run.arm.baseline,
                "diagnostic": run.arm.diagnostic,
                "plugin_config": run.arm.plugin_config,
                "median": medians[name],
                "final": run.final,
                "rounds": run.rounds,
            }
            for name, run in runs.items()
        },
    }


def write_outputs(result: dict, out_dir: Path, started: dt.datetime) -> None:
    """latest.{json,md,svg} and their dated copies in `out_dir`; the Markdown on stdout."""
    report.add_derived(result)
    paths = report.write_all(result, out_dir, stamp=started.strftime("%Y%m%dT%H%M%SZ"))
    print(report.markdown(result))
    for p in paths:
        log(f"wrote {p}")


def main(argv: list[str] | None = None) -> int:
    ap, args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    plan, out_dir = choose_plan(args)
    ncpu, proxy_cpu, load_cpu = pin_cpus(args)
    selected = select_arms(ap, args)
    ws, gen_cls, gen_bin = prepare_workspace(args, selected)
    started = dt.datetime.now(dt.timezone.utc)
    meta = run_metadata(plan, ws, (gen_cls, gen_bin), ncpu, proxy_cpu, load_cpu, started)
    log(f"{meta['mode']} run: {plan.describe()}; arms: {', '.join(a.name for a in selected)}")
    log(f"envoy {meta['envoy']}, {meta['load_generator']}, wasm {meta['wasm']['bytes']} bytes; workdir {ws.workdir}")

    runs: dict[str, ArmRun] = {}
    hostcall_profile: dict | None = None
    rss_scaling: dict | None = None
    try:
        pki = testkit.make_pki(ws.workdir / "certs")
        client = pki.issue_client("web", cn="web.frontend", uri_sans=["spiffe://cluster.local/ns/frontend/sa/web"])
        up_port = start_upstream(ws.workdir, load_cpu)
        runs = start_arms(selected, ws, pki, up_port, proxy_cpu, load_cpu)
        gen = gen_cls(gen_bin, load_cpu, ws.workdir, pki, client)
        run_rounds(runs, selected, gen, plan, proxy_cpu)
        breakdown = run_breakdown(runs, gen, plan)
        together = run_together(runs, gen, plan, breakdown)
        record_final_figures(runs, plan)
        # diagnostic: the cost of each host call meshaudit makes, timed inside the Wasm VM
        if ws.probe is not None and "plain" in runs:
            hostcall_profile = profile_hostcalls(ws.workdir, gen, plan, ws.probe, ws.wasm, pki, up_port, proxy_cpu)
        # diagnostic: RSS against the number of workers (what one more worker costs)
        if "plain" in runs and "meshaudit_default" in runs:
            rss_scaling = measure_rss_scaling(ws.workdir, gen, plan, ws.wasm, pki, up_port,
                                              runs["meshaudit_default"].rotel, proxy_cpu)
    finally:
        meta["loadavg_end"] = os.getloadavg()
        _stop_all()

    meta["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    result = assemble_result(meta, together, breakdown, hostcall_profile, rss_scaling, runs)
    write_outputs(result, out_dir, started)
    if ws.tmp is not None:
        ws.tmp.cleanup()
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


if __name__ == "__main__":
    sys.exit(main())
