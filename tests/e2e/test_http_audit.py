"""Acceptance tests for meshaudit's HTTP audit events, end to end.

Real Envoy (envoy/sidecar.yaml and envoy/edge.yaml, ports and paths rewritten), the real wasm
filter, a real Rotel collector whose debug log shows what it received, and real certificates.
Tests sharing one Envoy tell their events apart by unique paths and request ids.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import ssl
import time
import uuid

import pytest

import testkit
from testkit import JSON_SINK_AUTHORITY, TEST_PLUGIN_CONFIG

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
RFC3339_NANOS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d)$")

RESOURCE_EXPECTED = {
    "k8s.namespace.name": "payments",
    "service.name": "checkout",
    "service.version": "v1",
    "k8s.pod.name": "checkout-7d4b9c-abcde",
    "meshaudit.workload.name": "checkout",
    "k8s.cluster.name": "Kubernetes",
    "meshaudit.mesh.id": "cluster.local",
    "telemetry.sdk.name": "meshaudit",
}


def flags_of(rec) -> set[str]:
    value = rec.attr("meshaudit.envoy.response_flags") or ""
    return {f.strip() for f in value.split(",") if f.strip()}


only = testkit.only


def peer_keys(rec) -> list[str]:
    return sorted(k for k in rec.attributes if k.startswith("meshaudit.peer."))


# ---------------------------------------------------------------------------------------------
# Configuration files
# ---------------------------------------------------------------------------------------------

CONFIG_FILES = sorted(p.name for p in testkit.ENVOY_DIR.glob("*.yaml"))


def test_config_files_exist():
    assert {"sidecar.yaml", "edge.yaml"} <= set(CONFIG_FILES), CONFIG_FILES


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_config_passes_envoy_validate(name, wasm, pki, tmp_path):
    """Every envoy/*.yaml, as shipped (its own plugin configuration), validates in Envoy."""
    src = testkit.ENVOY_DIR / name
    listeners, clusters = testkit.config_names(src)
    rendered = testkit.render_envoy(
        src,
        tmp_path,
        admin_port=testkit.free_port(),
        listener_ports={n: testkit.free_port() for n in listeners},
        cluster_overrides={n: testkit.free_port() for n in clusters},
        wasm=wasm,
        certs_dir=pki.directory,
    )
    text = rendered.read_text()
    assert "certs/" not in text.replace(str(pki.directory), ""), "a certificate path was not rewritten"
    assert str(wasm) in text
    proc = testkit.run_envoy_validate(rendered, tmp_path / "validate.log")
    assert proc.returncode == 0, f"envoy --mode validate failed for {name}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "OK" in proc.stdout


def test_sidecar_yaml_shape():
    """The things a user copies sidecar.yaml for: Istio names and node metadata."""
    import yaml

    cfg = yaml.safe_load((testkit.ENVOY_DIR / "sidecar.yaml").read_text())
    md = cfg["node"]["metadata"]
    assert md["NAMESPACE"] == "payments" and md["WORKLOAD_NAME"] == "checkout"
    assert md["LABELS"] == {"app": "checkout", "version": "v1"}
    (listener,) = cfg["static_resources"]["listeners"]
    assert listener["name"] == "virtualInbound" and listener["traffic_direction"] == "INBOUND"
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15006}
    assert {c["name"] for c in cfg["static_resources"]["clusters"]} == {"inbound|8080||", "meshaudit_collector"}
    plugin = testkit.plugin_config_of(cfg)
    assert plugin["collector"]["cluster"] == "meshaudit_collector"
    assert plugin["mode"] == "http", "an HTTP filter says so: no host call per request to tell"
    for tc in testkit.meshaudit_filters(cfg):
        vm = tc["config"]["vm_config"]
        assert vm["runtime"] == "envoy.wasm.runtime.v8" and vm["vm_id"] == ""
        assert vm["code"]["local"]["filename"] == "target/wasm32-wasip1/release/meshaudit.wasm"


# ---------------------------------------------------------------------------------------------
# Exactly one event per request
# ---------------------------------------------------------------------------------------------

BULK_N = 25
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]
STATUSES = [200, 201, 404, 500, 202]


def test_each_request_yields_exactly_one_event(sidecar, run_id):
    prefix = f"/bulk/{run_id}/"
    sent = []
    t0 = time.time_ns()
    for i in range(BULK_N):
        method = METHODS[i % len(METHODS)]
        status = STATUSES[i % len(STATUSES)]
        path = f"{prefix}item-{i}"
        query = f"status={status}&i={i}"
        rid = str(uuid.uuid4())
        body = f"payload-{i}".encode() if method in ("POST", "PUT", "PATCH") else None
        resp = sidecar.request(f"{path}?{query}", method=method, headers={"x-request-id": rid}, body=body)
        assert resp.status == status, (path, resp.status, resp.body)
        sent.append({"method": method, "status": status, "path": path, "query": query, "rid": rid, "body": body,
                     "resp_body": resp.body})
    t1 = time.time_ns()

    mine = lambda r: str(r.attr("url.path", "")).startswith(prefix)  # noqa: E731
    sidecar.wait_records(mine, BULK_N, what=f"events under {prefix}")
    # Everything Envoy captured has been sent and printed by the collector: no event can still
    # be on its way, so the count below is final.
    stats = sidecar.wait_settled()
    records = [r for r in sidecar.records() if mine(r)]
    assert len(records) == BULK_N, f"expected exactly {BULK_N} events, got {len(records)}"
    assert testkit.metric(stats, "meshaudit.events_sent") == len(sidecar.records())

    by_path = {}
    for r in records:
        assert r.attr("url.path") not in by_path, f"two events for {r.attr('url.path')}"
        by_path[r.attr("url.path")] = r
    uids = [r.attr("log.record.uid") for r in records]
    assert all(isinstance(u, str) and HEX32.match(u) for u in uids), uids
    assert len(set(uids)) == BULK_N, "log.record.uid values are not unique"

    for s in sent:
        r = by_path[s["path"]]
        a = r.attributes
        ctx = f"{s['method']} {s['path']}: {a}"
        assert r.event_name == "meshaudit.http", ctx
        assert a.get("http.request.method") == s["method"], ctx
        assert a.get("url.query") == s["query"], ctx
        assert a.get("http.response.status_code") == s["status"], ctx
        assert a.get("meshaudit.request.id") == s["rid"], ctx
        assert a.get("url.scheme") == "http", ctx
        assert r.body in (
            f"{s['method']} {s['path']} {s['status']}",
            f"{s['method']} {s['path']}?{s['query']} {s['status']}",
        ), ctx
        assert isinstance(a.get("meshaudit.sequence"), int), ctx
        assert isinstance(a.get("meshaudit.stream.id"), str) and HEX16.match(a["meshaudit.stream.id"]), ctx
        assert isinstance(a.get("meshaudit.duration_ns"), int) and a["meshaudit.duration_ns"] >= 0, ctx
        assert r.timestamp is not None and t0 - 10**9 <= r.timestamp <= t1, f"time_unix_nano {r.timestamp} not in [{t0}, {t1}]"
        assert a.get("network.protocol.name") == "http" and a.get("network.protocol.version") == "1.1", ctx
        assert a.get("meshaudit.envoy.listener_direction") == "inbound", ctx
        assert a.get("meshaudit.envoy.upstream_cluster") == "inbound|8080||", ctx
        assert a.get("meshaudit.envoy.route_name") == "default", ctx
        assert a.get("meshaudit.upstream.address") == f"127.0.0.1:{sidecar.upstream_port}", ctx
        assert a.get("network.peer.address") == "127.0.0.1" and isinstance(a.get("network.peer.port"), int), ctx
        assert a.get("network.local.port") == sidecar.listener_port, ctx
        assert a.get("server.address") == "127.0.0.1" and a.get("server.port") == sidecar.listener_port, ctx
        assert a.get("meshaudit.tls.mtls") is False, ctx
        assert flags_of(r) == set(), ctx  # nothing went wrong in Envoy
        assert a.get("http.response.body.size") == len(s["resp_body"]), ctx
        if s["body"] is not None:
            assert a.get("http.request.body.size") == len(s["body"]), ctx
        assert a.get("http.response.header.content-type") == ["text/plain; charset=utf-8"], ctx
        assert a.get("http.request.header.x-forwarded-proto") == ["http"], ctx

    # The sequence numbers of one worker's events are distinct.
    seqs = [r.attr("meshaudit.sequence") for r in records]
    assert len(set(seqs)) == BULK_N, seqs


# ---------------------------------------------------------------------------------------------
# Trace context
# ---------------------------------------------------------------------------------------------


def test_trace_context_from_traceparent(sidecar, run_id):
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    path = f"/trace/{run_id}/w3c"
    resp = sidecar.request(path, headers={"traceparent": f"00-{trace_id}-{span_id}-01"})
    assert resp.status == 200
    r = only(sidecar.records_for_path(path), path)
    assert (r.trace_id, r.span_id) == (trace_id, span_id)


def test_trace_context_from_b3_headers(sidecar, run_id):
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    path = f"/trace/{run_id}/b3multi"
    resp = sidecar.request(
        path, headers={"x-b3-traceid": trace_id, "x-b3-spanid": span_id, "x-b3-sampled": "1"}
    )
    assert resp.status == 200
    r = only(sidecar.records_for_path(path), path)
    assert (r.trace_id, r.span_id) == (trace_id, span_id)


def test_trace_context_from_single_b3_header(sidecar, run_id):
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    path = f"/trace/{run_id}/b3single"
    resp = sidecar.request(path, headers={"b3": f"{trace_id}-{span_id}-1"})
    assert resp.status == 200
    r = only(sidecar.records_for_path(path), path)
    assert (r.trace_id, r.span_id) == (trace_id, span_id)


def test_no_trace_context_leaves_ids_empty(sidecar, run_id):
    path = f"/trace/{run_id}/none"
    assert sidecar.request(path).status == 200
    r = only(sidecar.records_for_path(path), path)
    assert (r.trace_id, r.span_id) == ("", "")


# ---------------------------------------------------------------------------------------------
# Identity: mTLS and plaintext (PERMISSIVE)
# ---------------------------------------------------------------------------------------------


def test_mtls_peer_identity(sidecar, pki, run_id):
    web = pki.clients["web"]
    path = f"/mtls/{run_id}/web"
    host = "checkout.payments.svc.cluster.local:8080"
    resp = sidecar.request(path, host=host, tls=sidecar.tls(web))
    assert resp.status == 200
    assert resp.tls_version == "TLSv1.3"
    r = only(sidecar.records_for_path(path), path)
    a = r.attributes
    assert a.get("meshaudit.tls.mtls") is True, a
    assert a.get("url.scheme") == "https", a
    assert a.get("tls.protocol.version") == "1.3", a
    assert a.get("meshaudit.tls.server_name") == testkit.SERVER_DNS, a
    assert a.get("server.address") == "checkout.payments.svc.cluster.local", a
    assert a.get("server.port") == 8080, a
    assert a.get("meshaudit.peer.spiffe_id") == "spiffe://cluster.local/ns/frontend/sa/web", a
    assert a.get("meshaudit.peer.trust_domain") == "cluster.local", a
    assert a.get("meshaudit.peer.namespace") == "frontend", a
    assert a.get("meshaudit.peer.service_account") == "web", a
    assert a.get("meshaudit.peer.uri_sans") == ["spiffe://cluster.local/ns/frontend/sa/web"], a
    assert "CN=web.frontend" in (a.get("tls.client.subject") or ""), a
    assert a.get("tls.client.hash.sha256") == web.sha256.upper(), a
    assert a.get("http.request.header.x-forwarded-proto") == ["https"], a

    # The sidecar's own identity: the server certificate's SPIFFE SAN.
    local_ids = {k: v for k, v in a.items() if k.startswith("meshaudit.local.")}
    assert "meshaudit.local.spiffe_id" in local_ids or "meshaudit.local.uri_sans" in local_ids, local_ids
    if "meshaudit.local.spiffe_id" in local_ids:
        assert local_ids["meshaudit.local.spiffe_id"] == testkit.SERVER_SPIFFE, local_ids
    if "meshaudit.local.uri_sans" in local_ids:
        assert local_ids["meshaudit.local.uri_sans"] == [testkit.SERVER_SPIFFE], local_ids
    if "meshaudit.local.namespace" in local_ids:
        assert local_ids["meshaudit.local.namespace"] == "payments", local_ids
    if "meshaudit.local.service_account" in local_ids:
        assert local_ids["meshaudit.local.service_account"] == "checkout", local_ids
    if "meshaudit.local.dns_sans" in local_ids:
        assert local_ids["meshaudit.local.dns_sans"] == [testkit.SERVER_DNS], local_ids


def test_mtls_client_with_two_uri_sans(sidecar, pki, run_id):
    multi = pki.clients["multi"]
    path = f"/mtls/{run_id}/multi"
    resp = sidecar.request(path, host="checkout", tls=sidecar.tls(multi))
    assert resp.status == 200
    r = only(sidecar.records_for_path(path), path)
    a = r.attributes
    assert a.get("meshaudit.tls.mtls") is True, a
    assert a.get("meshaudit.peer.uri_sans") == multi.uri_sans, a
    assert a.get("meshaudit.peer.spiffe_id") == "spiffe://cluster.local/ns/jobs/sa/batch", a
    assert a.get("meshaudit.peer.namespace") == "jobs", a
    assert a.get("meshaudit.peer.service_account") == "batch", a
    assert "CN=batch.jobs" in (a.get("tls.client.subject") or ""), a
    assert a.get("tls.client.hash.sha256") == multi.sha256.upper(), a


def test_tls_chain_rejects_client_without_certificate(sidecar, run_id):
    """require_client_certificate holds: no HTTP exchange, so no event and no count."""
    path = f"/mtls/{run_id}/anonymous"
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException, OSError)):
        testkit.request(sidecar.listener_port, path, tls=sidecar.tls(None))
    # A later request on the same listener is audited; the rejected one never is.
    marker = f"/mtls/{run_id}/after-anonymous"
    assert sidecar.request(marker).status == 200
    sidecar.records_for_path(marker)
    assert not [r for r in sidecar.records() if r.attr("url.path") == path]


def test_plaintext_permissive_has_no_peer_identity(sidecar, run_id):
    path = f"/plain/{run_id}/x"
    resp = sidecar.request(path, host="checkout", headers={"user-agent": "meshaudit-e2e/1"})
    assert resp.status == 200
    r = only(sidecar.records_for_path(path), path)
    a = r.attributes
    assert a.get("meshaudit.tls.mtls") is False, a
    assert peer_keys(r) == [], a
    assert not [k for k in a if k.startswith("meshaudit.local.")], a
    assert "tls.protocol.version" not in a, a
    assert a.get("url.scheme") == "http", a
    assert a.get("server.address") == "checkout", a
    assert "server.port" not in a, a
    assert a.get("user_agent.original") == "meshaudit-e2e/1", a
    assert a.get("http.request.header.user-agent") == ["meshaudit-e2e/1"], a


def test_node_metadata_becomes_resource_attributes(sidecar, run_id):
    path = f"/resource/{run_id}"
    assert sidecar.request(path).status == 200
    r = only(sidecar.records_for_path(path), path)
    for key, value in RESOURCE_EXPECTED.items():
        assert r.resource.get(key) == value, f"resource {key}: {r.resource}"
    # Resource attributes are per batch, not per event.
    for key in RESOURCE_EXPECTED:
        assert key not in r.attributes, f"{key} duplicated into the event attributes"


# ---------------------------------------------------------------------------------------------
# Failures Envoy reports through response flags
# ---------------------------------------------------------------------------------------------


def test_no_route_is_404_with_NR(sidecar, run_id):
    path = f"/noroute/{run_id}"
    resp = sidecar.request(path, host="unknown.example.invalid")
    assert resp.status == 404
    r = only(sidecar.records_for_path(path), path)
    a = r.attributes
    assert a.get("http.response.status_code") == 404, a
    assert "NR" in flags_of(r), a
    assert a.get("meshaudit.envoy.response_code_details") == "route_not_found", a
    assert "meshaudit.envoy.upstream_cluster" not in a, a
    assert "meshaudit.upstream.address" not in a, a
    assert a.get("server.address") == "unknown.example.invalid", a


def test_dead_upstream_is_503_with_UF(sidecar_dead_upstream, run_id):
    stack = sidecar_dead_upstream
    path = f"/dead/{run_id}"
    resp = stack.request(path, host="checkout")
    assert resp.status == 503, resp
    r = only(stack.records_for_path(path), path)
    a = r.attributes
    assert a.get("http.response.status_code") == 503, a
    assert flags_of(r) & {"UF", "URX"}, a
    assert "connection" in (a.get("meshaudit.envoy.response_code_details") or ""), a
    assert a.get("meshaudit.envoy.upstream_cluster") == "inbound|8080||", a
    stats = stack.wait_settled()
    assert testkit.metric(stats, "meshaudit.events_sent") == 1


# ---------------------------------------------------------------------------------------------
# Secrets never leave the proxy
# ---------------------------------------------------------------------------------------------


def test_secret_headers_never_reach_the_collector(sidecar, pki, run_id):
    canaries = {name: f"canary{secrets.token_hex(12)}" for name in ("bearer", "cookie", "proxy", "setcookie")}
    visible = f"visible{secrets.token_hex(8)}"
    assert "authorization" in TEST_PLUGIN_CONFIG["request_headers"]
    assert "cookie" in TEST_PLUGIN_CONFIG["request_headers"]
    headers = {
        "authorization": f"Bearer {canaries['bearer']}",
        "cookie": f"session={canaries['cookie']}",
        "proxy-authorization": f"Basic {canaries['proxy']}",
        "x-upstream-set-cookie": f"session={canaries['setcookie']}; HttpOnly",
        "x-audit-note": visible,
    }
    plain_path = f"/secret/{run_id}/plain"
    mtls_path = f"/secret/{run_id}/mtls"
    resp = sidecar.request(plain_path, host="checkout", headers=headers)
    assert resp.status == 200 and canaries["setcookie"] in resp.headers.get("set-cookie", "")
    resp = sidecar.request(mtls_path, host="checkout", headers=headers, tls=sidecar.tls(pki.clients["web"]))
    assert resp.status == 200
    # The headers really reached the application, so Envoy had them to leak.
    seen = [q for q in sidecar.upstream.requests if q.path in (plain_path, mtls_path)]
    assert len(seen) == 2 and all(q.headers.get("authorization") == headers["authorization"] for q in seen)

    for path in (plain_path, mtls_path):
        r = only(sidecar.records_for_path(path), path)
        a = r.attributes
        # Allowlisted header capture works (so the absence below means something) ...
        assert a.get("http.request.header.x-audit-note") == [visible], a
        assert a.get("http.response.header.content-type") == ["text/plain; charset=utf-8"], a
        # ... and the secret-bearing ones are there, redacted by the default rule (cookies
        # one by one, keeping their names and attributes).
        assert a.get("http.request.header.authorization") == ["[REDACTED]"], a
        assert a.get("http.request.header.proxy-authorization") == ["[REDACTED]"], a
        assert a.get("http.request.header.cookie") == ["session=[REDACTED]"], a
        assert a.get("http.response.header.set-cookie") == ["session=[REDACTED]; HttpOnly"], a
        assert "default:4" in a.get("meshaudit.redaction.rules", []), a

    sidecar.wait_settled()
    raw = sidecar.rotel.raw()
    assert visible in raw
    for name, canary in canaries.items():
        assert canary not in raw, f"{name} canary found in the collector output"


# ---------------------------------------------------------------------------------------------
# Bad configuration
# ---------------------------------------------------------------------------------------------

BAD_CONFIGS = [
    pytest.param({"max_batch_event": 5}, "max_batch_event", id="unknown-field"),
    pytest.param({"max_batch_events": "lots"}, "max_batch_events", id="wrong-type"),
    pytest.param({"format": "xml"}, "format", id="bad-enum"),
    pytest.param({"collector": {"timeout_ms": "soon"}}, "collector.timeout_ms", id="nested-wrong-type"),
]


@pytest.mark.parametrize("override,field", BAD_CONFIGS)
def test_bad_configuration_refuses_to_start(override, field, wasm, pki, tmp_path):
    """Envoy 1.40 runs on_configure on the main thread while loading a static listener; a
    `false` there fails the filter factory ("Unable to create Wasm plugin meshaudit") and
    Envoy exits non-zero without ever serving. `--mode validate` fails the same way."""
    config, listener_port = testkit.render_sidecar_alone(tmp_path, wasm, pki, override)
    field_line = re.compile(r"meshaudit: invalid configuration: " + re.escape(field) + r": \S")

    validate = testkit.run_envoy_validate(config, tmp_path / "validate.log")
    vlog = validate.stdout + validate.stderr
    assert validate.returncode != 0, f"envoy --mode validate accepted {override}:\n{vlog[-2000:]}"
    assert field_line.search(vlog), f"validate log does not name {field!r}:\n{vlog[-3000:]}"

    rc, log = testkit.envoy_refusing(config, listener_port, tmp_path / "envoy.log")
    assert rc != 0, f"envoy exited 0 with bad config:\n{log[-2000:]}"
    assert field_line.search(log), f"Envoy log does not name {field!r}:\n{log[-3000:]}"
    assert "Unable to create Wasm plugin meshaudit" in log


# ---------------------------------------------------------------------------------------------
# JSON lines format
# ---------------------------------------------------------------------------------------------

JSON_N = 6


def test_json_format_posts_ndjson(edge_json, run_id):
    stack = edge_json
    sent = {}
    t0 = time.time_ns()
    for i in range(JSON_N):
        path = f"/json/{run_id}/{i}"
        tid, sid = secrets.token_hex(16), secrets.token_hex(8)
        method = "POST" if i % 2 else "GET"
        resp = stack.request(
            f"{path}?n={i}",
            method=method,
            body=b"{}" if method == "POST" else None,
            headers={"traceparent": f"00-{tid}-{sid}-01", "user-agent": f"e2e-json/{i}", "x-request-id": f"json-{run_id}-{i}"},
        )
        assert resp.status == 200
        sent[path] = (method, tid, sid, i)
    t1 = time.time_ns()

    stats = stack.wait_settled()
    objs = stack.sink.objects()
    assert len(objs) == JSON_N, objs
    posts = stack.sink.requests
    for p in posts:
        assert p.method == "POST"
        assert p.path == "/v1/logs"
        assert p.headers.get("content-type", "").startswith("application/x-ndjson"), p.headers
        assert p.headers.get("host") == JSON_SINK_AUTHORITY, p.headers
        lines = [l for l in p.body.decode().split("\n") if l.strip()]
        assert lines and all(isinstance(json.loads(l), dict) for l in lines), p.body[:500]
    # One POST per batch (polled: the counter may move only when Envoy has the sink's reply).
    testkit.wait_for(
        lambda: stack.envoy.metric("meshaudit.batches_sent") == len(stack.sink.requests),
        10,
        message=lambda: f"batches_sent == POSTs received ({len(stack.sink.requests)}): {stack.envoy.plugin_stats()}",
    )
    assert testkit.metric(stats, "meshaudit.events_sent") == JSON_N

    by_path = {o.get("url.path"): o for o in objs}
    assert set(by_path) == set(sent), by_path.keys()
    uids = {o.get("log.record.uid") for o in objs}
    assert len(uids) == JSON_N and all(isinstance(u, str) and HEX32.match(u) for u in uids)
    for path, (method, tid, sid, i) in sent.items():
        o = by_path[path]
        for key in ("time", "observed_time", "event_name", "body", "trace_id", "span_id"):
            assert key in o, (key, o)
        assert RFC3339_NANOS.match(o["time"]), o["time"]
        assert o["event_name"] == "meshaudit.http"
        assert o["trace_id"] == tid and o["span_id"] == sid, o
        assert o["http.request.method"] == method
        assert o["url.query"] == f"n={i}"
        assert o["http.response.status_code"] == 200
        assert o["meshaudit.request.id"] == f"json-{run_id}-{i}"
        assert o["meshaudit.tls.mtls"] is False
        assert o["meshaudit.envoy.listener_direction"] == "outbound"
        assert o["meshaudit.envoy.upstream_cluster"] == "app"
        assert o["http.request.header.user-agent"] == [f"e2e-json/{i}"]
        assert o["service.name"] == "edge-gateway" and o["k8s.namespace.name"] == "edge"
        assert o["body"] in (f"{method} {path} 200", f"{method} {path}?n={i} 200"), o["body"]
        # time is the request start
        from datetime import datetime

        ts = o["time"]
        frac = re.search(r"\.(\d{9})", ts).group(1)
        whole = datetime.fromisoformat(re.sub(r"\.\d{9}", "", ts).replace("Z", "+00:00"))
        ns = int(whole.timestamp()) * 10**9 + int(frac)
        assert t0 - 10**9 <= ns <= t1, (ts, t0, t1)


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def test_metrics_match_traffic(sidecar, run_id):
    for i in range(3):
        assert sidecar.request(f"/metrics/{run_id}/{i}").status == 200
    stats = sidecar.wait_settled()
    names = sorted(stats)
    for suffix in (
        "meshaudit.events_captured",
        "meshaudit.events_sent",
        "meshaudit.batches_sent",
        "meshaudit.batches_failed",
        "meshaudit.events_dropped",
        "meshaudit.bytes_sent",
    ):
        testkit.metric(stats, suffix)  # exactly one such stat
    assert testkit.metric(stats, "meshaudit.events_captured") == sidecar.responses, names
    assert testkit.metric(stats, "meshaudit.events_sent") == sidecar.responses
    assert testkit.metric(stats, "meshaudit.batches_sent") > 0
    assert testkit.metric(stats, "meshaudit.batches_failed") == 0
    assert testkit.metric(stats, "meshaudit.events_dropped") == 0
    assert testkit.metric(stats, "meshaudit.bytes_sent") > 0
    assert len(sidecar.records()) == sidecar.responses
    # Envoy's own view of the export traffic agrees: every batch was a 2xx at the collector.
    batches = testkit.metric(stats, "meshaudit.batches_sent")
    testkit.wait_for(
        lambda: sidecar.envoy.all_stats("cluster.meshaudit_collector.upstream_rq_2xx").get(
            "cluster.meshaudit_collector.upstream_rq_2xx", 0
        )
        == batches,
        10,
        message=lambda: f"upstream_rq_2xx of meshaudit_collector == batches_sent ({batches}): "
        f"{sidecar.envoy.all_stats('cluster.meshaudit_collector.upstream_rq')}",
    )


def test_auto_mode_audits_http_requests(wasm, pki, tmp_path, run_id):
    """sidecar.yaml with "mode" removed: the module tells by itself, per new context, that it
    runs as an HTTP filter (the shipped configurations say `"mode": "http"`)."""
    import yaml

    stack = testkit.Stack(tmp_path, kind=testkit.SIDECAR, wasm=wasm, pki=pki,
                          plugin_config_overrides={**testkit.TEST_PLUGIN_CONFIG, "mode": testkit.DELETE})
    with testkit.running(stack):
        assert "mode" not in testkit.plugin_config_of(yaml.safe_load(stack.envoy.config.read_text()))
        path = f"/auto/{run_id}"
        assert stack.request(path, method="PUT", body=b"x").status == 200
        (rec,) = stack.records_for_path(path)
        stack.wait_settled()
        log = stack.envoy.log_text()
    assert rec.event_name == "meshaudit.http", rec.event_name
    assert (rec.attr("http.request.method"), rec.attr("http.response.status_code")) == ("PUT", 200)
    # Checkpoints (docs/integrity.md) are the stream's own; a connection event would be meshaudit.tcp.
    assert not [r for r in stack.records() if r.event_name not in ("meshaudit.http", "meshaudit.checkpoint")], \
        "no connection events"
    assert "invalid configuration" not in log


def test_request_attributes_come_from_one_host_call(sidecar, run_id):
    """Per-request attributes are read with one CEL evaluation (`capture::snapshot`), not one
    host call each; the events above prove the values, this proves the path was taken."""
    assert sidecar.request(f"/attributes/{run_id}").status == 200
    sidecar.wait_settled()
    log = sidecar.envoy.log_text()
    assert "request attributes: one host call per request (CEL)" in log, log[-3000:]
    assert "reading request attributes one by one" not in log, log[-3000:]


# ---------------------------------------------------------------------------------------------
# Loaded as an access logger
# ---------------------------------------------------------------------------------------------

BODY_CAPTURE = [{"match": {"path_prefix": "/v1"}, "max_bytes": 1024}]


def test_sidecar_fixture_loads_meshaudit_as_filter_or_access_logger(sidecar):
    """The `sidecar` tests above run twice; this proves the second run has no meshaudit HTTP
    filter at all, only the access logger (so its events come from the root context's on_log)."""
    import yaml

    cfg = yaml.safe_load(sidecar.envoy.config.read_text())
    kinds = {n.get("name") for n in testkit.walk(cfg) if isinstance(n, dict)}
    mode = testkit.plugin_config_of(cfg)["mode"]
    if sidecar.access_log:
        assert (testkit.WASM_FILTER in kinds, testkit.WASM_ACCESS_LOGGER in kinds, mode) == (False, True, "access_log")
    else:
        assert (testkit.WASM_FILTER in kinds, testkit.WASM_ACCESS_LOGGER in kinds, mode) == (True, False, "http")


def test_access_logger_refuses_body_capture_at_load(wasm, pki, tmp_path):
    """With `"mode": "access_log"`, what only the HTTP filter can do is refused at load."""
    config, listener_port = testkit.render_sidecar_alone(
        tmp_path, wasm, pki, {"mode": "access_log", "body_capture": BODY_CAPTURE}, access_log=True
    )
    rc, log = testkit.envoy_refusing(config, listener_port, tmp_path / "envoy.log")
    assert rc != 0, f"envoy exited 0 with bad config:\n{log[-2000:]}"
    assert re.search(r"meshaudit: invalid configuration: body_capture: needs the HTTP filter", log), log[-3000:]


def test_access_logger_says_once_what_it_ignores(wasm, pki, tmp_path, run_id):
    """Loaded as an access logger with a configuration that does not say so (`"mode": "http"`)
    and asks for body capture: requests are audited, and Envoy's log says once that
    `body_capture` is ignored."""
    stack = testkit.Stack(tmp_path, kind=testkit.SIDECAR, wasm=wasm, pki=pki, access_log=True,
                          plugin_config_overrides={**testkit.TEST_PLUGIN_CONFIG, "mode": "http",
                                                   "body_capture": BODY_CAPTURE})
    with testkit.running(stack):
        paths = [f"/v1/ignored/{run_id}/{i}" for i in range(3)]
        for p in paths:
            assert stack.request(p, method="POST", body=b'{"a": 1}').status == 200
        for p in paths:
            (rec,) = stack.records_for_path(p)
            assert rec.attr("http.request.method") == "POST"
            assert not [k for k in rec.attributes if k.startswith("meshaudit.request.body")], rec.attributes
        log = stack.envoy.log_text()
    line = "invalid configuration for an access logger: body_capture: needs the HTTP filter and is ignored here"
    assert log.count(line) == 1, log[-3000:]
