"""Audit levels in real Envoy, with the shipped example policy
(examples/audit-policy/audit-policy.json): the kubelet's plaintext probes and Prometheus's mTLS
scrapes leave no event (counted in meshaudit.events_unaudited), the same paths from other
callers do, and admin routes carry both bodies."""

from __future__ import annotations

import json

import pytest

import testkit
from testkit.metrics import meshaudit_stat, wait_meshaudit_stats

POLICY = json.loads((testkit.REPO / "examples/audit-policy/audit-policy.json").read_text())
PROMETHEUS = "spiffe://cluster.local/ns/monitoring/sa/prometheus"


@pytest.fixture(scope="module")
def audited(tmp_path_factory, wasm, pki):
    pki.issue_client("prometheus", cn="prometheus.monitoring", uri_sans=[PROMETHEUS])
    stack = testkit.Stack(
        tmp_path_factory.mktemp("audit-levels"),
        kind=testkit.SIDECAR,
        wasm=wasm,
        pki=pki,
        plugin_config_overrides={**testkit.TEST_PLUGIN_CONFIG, **POLICY},
    )
    with testkit.running(stack):
        yield stack


def test_probes_and_scrapes_leave_no_event_and_others_do(audited, pki, run_id):
    web = audited.tls(pki.clients["web"])
    prometheus = audited.tls(pki.clients["prometheus"])
    marker = f"/orders/{run_id}"
    skipped = [
        audited.request("/healthz"),
        audited.request("/readyz"),
        audited.request("/livez"),
        audited.request("/metrics", tls=prometheus),
    ]
    recorded = [
        ("/healthz", audited.request("/healthz", tls=web)),
        ("/metrics", audited.request("/metrics", tls=web)),
        ("/metrics", audited.request("/metrics")),
        (marker, audited.request(marker)),
    ]
    assert all(r.status == 200 for r in skipped + [r for _, r in recorded])
    audited.records_for_path(marker)
    wait_meshaudit_stats(
        audited.envoy, lambda s: meshaudit_stat(s, "events_unaudited") == len(skipped),
        what=f"events_unaudited == {len(skipped)}",
    )
    paths = [r.attr("url.path") for r in audited.records()]
    # Nothing from the kubelet's probes or Prometheus's scrape; the other callers are there.
    probes = [r for r in audited.records() if r.attr("url.path") in ("/healthz", "/readyz", "/livez", "/metrics")]
    callers = sorted((r.attr("url.path"), r.attr("meshaudit.peer.spiffe_id") or "") for r in probes)
    assert callers == sorted([
        ("/healthz", "spiffe://cluster.local/ns/frontend/sa/web"),
        ("/metrics", "spiffe://cluster.local/ns/frontend/sa/web"),
        ("/metrics", ""),
    ]), paths


def test_admin_routes_carry_both_bodies(audited, pki, run_id):
    path = f"/admin/users-{run_id}"
    body = json.dumps({"user": "bob", "role": "admin"}).encode()
    r = audited.request(path, method="POST", body=body, headers={"content-type": "application/json"})
    assert r.status == 200
    rec = audited.records_for_path(path)[0]
    assert json.loads(rec.attr("meshaudit.request.body")) == {"user": "bob", "role": "admin"}
    assert rec.attr("meshaudit.response.body") is not None or rec.attr("meshaudit.response.body.capture"), rec.attributes
    # An ordinary route has no body.
    other = f"/orders/body-{run_id}"
    assert audited.request(other, method="POST", body=body, headers={"content-type": "application/json"}).status == 200
    assert audited.records_for_path(other)[0].attr("meshaudit.request.body") is None
