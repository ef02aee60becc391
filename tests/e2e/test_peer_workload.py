"""The calling workload (and, on an outbound listener, the called one) as Istio's metadata
exchange describes it, in real Envoy: the `x-envoy-peer-metadata` header an Istio sidecar sends,
built with Google's protobuf library as Istio builds it (`testkit.peer_metadata_header`: a
deterministically serialized `google.protobuf.Struct` of the node's metadata, base64). Upstream Envoy has no Istio filter to
turn it into `downstream_peer` filter state, so that path is checked against a recorded host
(src/capture/workload.rs); docs/event-schema.md#the-calling-workload says which Istio releases
each path covers. Both forms: the HTTP filter and the access logger.
"""

from __future__ import annotations

import random

import pytest

import testkit

PEER_HEADER = testkit.PEER_METADATA_HEADER
peer_metadata = testkit.peer_metadata_header
only = testkit.only


@pytest.fixture(scope="module", params=["filter", "access_log"])
def edge(request, tmp_path_factory, wasm) -> testkit.Stack:
    """envoy/edge.yaml (an outbound listener) + meshaudit (OTLP) -> Rotel."""
    stack = testkit.Stack(
        tmp_path_factory.mktemp(f"peer-edge-{request.param}"),
        kind=testkit.EDGE,
        wasm=wasm,
        pki=None,
        **testkit.loaded_as(request.param),
    )
    with testkit.running(stack):
        yield stack


def test_an_mtls_caller_is_named_by_its_workload(sidecar, pki, run_id):
    path = f"/peer/{run_id}/web"
    meta = peer_metadata("frontend", "web", "web", "v1")
    resp = sidecar.request(path, tls=sidecar.tls(pki.clients["web"]), headers={PEER_HEADER: meta})
    assert resp.status == 200
    a = only(sidecar.records_for_path(path), path).attributes
    assert a.get("meshaudit.source.workload.namespace") == "frontend", a
    assert a.get("meshaudit.source.workload.name") == "web", a
    assert a.get("meshaudit.source.workload.kind") == "deployment", a
    assert a.get("meshaudit.source.app.name") == "web" and a.get("meshaudit.source.app.version") == "v1", a
    assert a.get("meshaudit.source.service.name") == "web" and a.get("meshaudit.source.service.version") == "v1", a
    assert a.get("meshaudit.source.cluster") == "Kubernetes", a
    assert a.get("meshaudit.source.workload.origin") == "peer_metadata_header", a
    # It agrees with the verified certificate (spiffe://cluster.local/ns/frontend/sa/web).
    assert a.get("meshaudit.peer.namespace") == "frontend", a
    assert not any("workload" in n for n in a.get("meshaudit.capture.anomalies") or []), a
    # Nothing of the header itself unless allowlisted; never on an outbound-only attribute.
    assert f"http.request.header.{PEER_HEADER}" not in a, a
    assert not any(k.startswith("meshaudit.destination.workload") for k in a), a


def test_a_workload_claiming_another_namespace_than_its_certificate_is_marked(sidecar, pki, run_id):
    path = f"/peer/{run_id}/liar"
    meta = peer_metadata("payments", "checkout", "checkout", "v3")
    assert sidecar.request(path, tls=sidecar.tls(pki.clients["web"]), headers={PEER_HEADER: meta}).status == 200
    a = only(sidecar.records_for_path(path), path).attributes
    assert a.get("meshaudit.source.workload.namespace") == "payments", a
    assert "mismatch:meshaudit.source.workload.namespace" in (a.get("meshaudit.capture.anomalies") or []), a


def test_a_bad_header_is_marked_and_no_workload_recorded(sidecar, run_id):
    path = f"/peer/{run_id}/garbage"
    assert sidecar.request(path, headers={PEER_HEADER: "bm90IGEgc3RydWN0!!"}).status == 200
    a = only(sidecar.records_for_path(path), path).attributes
    assert not any(k.startswith("meshaudit.source.workload") for k in a), a
    assert "undecodable:x-envoy-peer-metadata" in (a.get("meshaudit.capture.anomalies") or []), a


def test_without_metadata_exchange_there_is_no_workload(sidecar, run_id):
    path = f"/peer/{run_id}/none"
    assert sidecar.request(path).status == 200
    a = only(sidecar.records_for_path(path), path).attributes
    assert not any(".workload." in k or k.startswith("meshaudit.source.app") for k in a), a
    assert not a.get("meshaudit.capture.anomalies"), a


def test_the_called_workload_on_an_outbound_listener(edge, run_id):
    """The edge listener is outbound: the application's sidecar answers with its own metadata."""
    path = f"/peer/{run_id}/upstream"
    meta = peer_metadata("orders", "orders-v2", "orders", "v2")
    resp = edge.request(path, headers={f"x-upstream-header-{PEER_HEADER}": meta})
    assert resp.status == 200
    o = only(edge.records_for_path(path), path).attributes
    assert o["meshaudit.envoy.listener_direction"] == "outbound"
    assert o.get("meshaudit.destination.workload.name") == "orders-v2", o
    assert o.get("meshaudit.destination.workload.namespace") == "orders", o
    assert o.get("meshaudit.destination.app.version") == "v2", o
    assert o.get("meshaudit.destination.workload.origin") == "peer_metadata_header", o
    assert "meshaudit.source.workload.name" not in o, o


def test_a_secret_in_the_peer_metadata_is_redacted_like_any_client_text(sidecar, run_id):
    """The workload attributes are what a client says: a card number planted in them meets
    redaction's detectors (the certificate-derived `meshaudit.peer.*` values are not scanned)."""
    rng = random.Random(run_id)
    cards = {"app": testkit.card_number(rng), "workload": testkit.card_number(rng)}
    path = f"/peer/{run_id}/secret"
    meta = peer_metadata("frontend", f"web-{cards['workload']}", f"shop {cards['app']}", "v1")
    assert sidecar.request(path, headers={PEER_HEADER: meta}).status == 200
    rec = only(sidecar.records_for_path(path), path)
    assert not testkit.leak_sites([rec], cards), testkit.leak_sites([rec], cards)
    assert rec.attr("meshaudit.source.workload.namespace") == "frontend"
    # The card detector keeps the last four digits.
    assert rec.attr("meshaudit.source.app.name") == f"shop ****{cards['app'][-4:]}", rec.attributes
    assert any(name.startswith("detector.") for name in testkit.rules_of(rec)), rec.attributes
