"""Checks of the test machinery itself, against the real parts, without the meshaudit wasm.

If one of these fails, the acceptance tests in test_http_audit.py cannot be trusted: the
Rotel debug-log parser, the certificates, or the Envoy configurations themselves are wrong.
"""

from __future__ import annotations

import json
import ssl
import urllib.request

import pytest
from cryptography import x509

import testkit

OTLP_JSON = {
    "resourceLogs": [
        {
            "resource": {
                "attributes": [
                    {"key": "k8s.namespace.name", "value": {"stringValue": "payments"}},
                    {"key": "service.name", "value": {"stringValue": "checkout"}},
                ]
            },
            "scopeLogs": [
                {
                    "scope": {"name": "meshaudit", "version": "0.0.0"},
                    "logRecords": [
                        {
                            "timeUnixNano": "1700000000000000000",
                            "observedTimeUnixNano": "1700000000000000001",
                            "eventName": "meshaudit.http",
                            "body": {"stringValue": "GET /x 200"},
                            "traceId": "0af7651916cd43dd8448eb211c80319c",
                            "spanId": "b7ad6b7169203331",
                            "flags": 1,
                            "attributes": [
                                {"key": "http.request.method", "value": {"stringValue": "GET"}},
                                {"key": "http.response.status_code", "value": {"intValue": "503"}},
                                {"key": "meshaudit.tls.mtls", "value": {"boolValue": False}},
                                {"key": "empty", "value": {"stringValue": ""}},
                                {
                                    "key": "meshaudit.peer.uri_sans",
                                    "value": {
                                        "arrayValue": {
                                            "values": [
                                                {"stringValue": "spiffe://cluster.local/ns/a/sa/b"},
                                                {"stringValue": "urn:x (y)"},
                                            ]
                                        }
                                    },
                                },
                                {"key": "multi", "value": {"stringValue": "line one\nline two"}},
                            ],
                        },
                        {
                            "timeUnixNano": "1700000000000000002",
                            "eventName": "meshaudit.http",
                            "body": {"stringValue": "POST /y 201"},
                            "attributes": [{"key": "none", "value": {"arrayValue": {"values": []}}}],
                        },
                    ],
                }
            ],
        }
    ]
}


def test_rotel_debug_log_parser_against_real_rotel(binaries, tmp_path):
    with testkit.Rotel(tmp_path) as rotel:
        req = urllib.request.Request(
            f"http://127.0.0.1:{rotel.http_port}/v1/logs",
            data=json.dumps(OTLP_JSON).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200
        records = testkit.wait_for(lambda: len(rotel.records()) >= 2 and rotel.records(), 10, message="2 records")
    assert len(records) == 2
    a, b = records
    assert a.resource == {"k8s.namespace.name": "payments", "service.name": "checkout"}
    assert a.scope.startswith("meshaudit")
    assert (a.timestamp, a.observed_timestamp) == (1700000000000000000, 1700000000000000001)
    assert a.event_name == "meshaudit.http" and a.body == "GET /x 200"
    assert (a.trace_id, a.span_id, a.flags) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", 1)
    assert a.attributes == {
        "http.request.method": "GET",
        "http.response.status_code": 503,
        "meshaudit.tls.mtls": False,
        "empty": "",
        "meshaudit.peer.uri_sans": ["spiffe://cluster.local/ns/a/sa/b", "urn:x (y)"],
        "multi": "line one\nline two",
    }
    assert b.body == "POST /y 201" and b.attributes == {"none": []}
    assert (b.trace_id, b.span_id) == ("", "")
    assert b.resource == a.resource


def test_parse_value_types():
    assert testkit.parse_value("Str(a b)") == "a b"
    assert testkit.parse_value("Int(-3)") == -3
    assert testkit.parse_value("Bool(true)") is True
    assert testkit.parse_value("Slice(Str(a), Int(2))") == ["a", 2]
    assert testkit.parse_value("Slice()") == []


def test_certificates(pki):
    server = x509.load_pem_x509_certificate(pki.server.cert_path.read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [testkit.SERVER_SPIFFE]
    assert san.get_values_for_type(x509.DNSName) == [testkit.SERVER_DNS]
    multi = x509.load_pem_x509_certificate(pki.clients["multi"].cert_path.read_bytes())
    uris = multi.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert len(uris.get_values_for_type(x509.UniformResourceIdentifier)) == 2
    # Chains to the CA (ssl refuses to load a key that does not match its certificate).
    ctx = ssl.create_default_context(cafile=str(pki.ca_path))
    ctx.load_cert_chain(str(pki.clients["web"].cert_path), str(pki.clients["web"].key_path))


def test_render_refuses_unmapped_listener_or_cluster(tmp_path):
    with pytest.raises(testkit.HarnessError, match="listener"):
        testkit.render_envoy(
            testkit.ENVOY_DIR / "edge.yaml", tmp_path, admin_port=1, listener_ports={},
            cluster_overrides={"app": 1, "meshaudit_collector": 2}, drop_wasm=True,
        )
    with pytest.raises(testkit.HarnessError, match="cluster"):
        testkit.render_envoy(
            testkit.ENVOY_DIR / "edge.yaml", tmp_path, admin_port=1, listener_ports={"edge_http": 3},
            cluster_overrides={"app": 1}, drop_wasm=True,
        )


def test_render_merges_plugin_config(tmp_path):
    # certificate files must exist for rendering; placeholders do here
    for name in ("server.pem", "server-key.pem", "ca.pem"):
        (tmp_path / name).write_text("x")
    out = testkit.render_envoy(
        testkit.ENVOY_DIR / "sidecar.yaml", tmp_path / "out", admin_port=1, listener_ports={"virtualInbound": 2},
        cluster_overrides={"inbound|8080||": 3, "meshaudit_collector": 4}, wasm=tmp_path / "x.wasm",
        certs_dir=tmp_path, plugin_config_overrides={"flush_interval_ms": 7, "collector": {"path": "/p"},
                                                     "format": testkit.DELETE},
    )
    import yaml

    cfg = yaml.safe_load(out.read_text())
    filters = testkit.meshaudit_filters(cfg)
    assert len(filters) == 2  # both filter chains
    for tc in filters:
        plugin = json.loads(tc["config"]["configuration"]["value"])
        assert plugin["flush_interval_ms"] == 7
        assert plugin["collector"] == {"cluster": "meshaudit_collector", "authority": "otel-collector", "path": "/p", "timeout_ms": 5000}
        assert "format" not in plugin
        assert tc["config"]["vm_config"]["code"]["local"]["filename"] == str((tmp_path / "x.wasm").resolve())


def test_sidecar_config_serves_without_the_plugin(binaries, pki, tmp_path):
    """sidecar.yaml minus meshaudit: mTLS chain requires a client cert, plaintext chain works,
    unknown Host gets 404, the SPIFFE server certificate is presented."""
    with testkit.upstream_server() as up:
        admin, port = testkit.free_port(), testkit.free_port()
        cfg = testkit.render_envoy(
            testkit.ENVOY_DIR / "sidecar.yaml", tmp_path, admin_port=admin, listener_ports={"virtualInbound": port},
            cluster_overrides={"inbound|8080||": up.port, "meshaudit_collector": testkit.free_port()},
            certs_dir=pki.directory, drop_wasm=True,
        )
        assert "envoy.filters.http.wasm" not in cfg.read_text()
        with testkit.Envoy(cfg, admin, tmp_path / "envoy.log", listener_ports={"virtualInbound": port}) as envoy:
            web = pki.clients["web"]
            tls = testkit.TlsClient(pki.ca_path, web.cert_path, web.key_path)
            r = testkit.request(port, "/tls", host="checkout.payments.svc.cluster.local:8080", tls=tls)
            assert r.status == 200 and r.body == b"upstream GET /tls\n" and r.tls_version == "TLSv1.3"
            server_cert = x509.load_der_x509_certificate(r.server_cert_der)
            assert server_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
                x509.UniformResourceIdentifier
            ) == [testkit.SERVER_SPIFFE]
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                testkit.request(port, "/anonymous", tls=testkit.TlsClient(pki.ca_path))
            assert testkit.request(port, "/plain", host="checkout").status == 200
            assert testkit.request(port, "/nr", host="nobody.example.invalid").status == 404
            seen = [q.path for q in up.requests]
            assert seen == ["/tls", "/plain"], seen
            assert envoy.is_ready()


def test_edge_config_serves_without_the_plugin(binaries, tmp_path):
    with testkit.upstream_server() as up:
        admin, port = testkit.free_port(), testkit.free_port()
        cfg = testkit.render_envoy(
            testkit.ENVOY_DIR / "edge.yaml", tmp_path, admin_port=admin, listener_ports={"edge_http": port},
            cluster_overrides={"app": up.port, "meshaudit_collector": testkit.free_port()}, drop_wasm=True,
        )
        with testkit.Envoy(cfg, admin, tmp_path / "envoy.log", listener_ports={"edge_http": port}):
            r = testkit.request(port, "/hello?x=1", host="anything.example")
            assert r.status == 200 and r.body == b"upstream GET /hello?x=1\n"


class _Sh(testkit.Process):
    """A shell one-liner as a kit process: ready once `marker` exists."""

    name = "sh"

    def __init__(self, tmp_path, script: str, marker=None) -> None:
        super().__init__(tmp_path / "sh.log")
        self.script = script
        self.marker = marker

    def command(self) -> list[str]:
        return ["/bin/sh", "-c", self.script]

    def is_ready(self) -> bool:
        return self.marker is None or self.marker.exists()


def test_process_start_waits_until_ready_and_stop_ends_it(tmp_path):
    marker = tmp_path / "ready"
    with _Sh(tmp_path, f"echo up; sleep 0.3; touch {marker}; exec sleep 60", marker) as p:
        assert marker.exists() and p.running()
        pid = p.pid
    assert not p.running() and p.proc.returncode is not None and p.proc.pid == pid
    assert "up" in p.log_path.read_text()
    assert p.stop() == p.proc.returncode  # a second stop is harmless


def test_process_that_exits_before_ready_fails_start_with_its_log(tmp_path):
    p = _Sh(tmp_path, "echo 'no config here' >&2; exit 3", tmp_path / "never")
    with pytest.raises(testkit.HarnessError, match=r"sh exited with 3:\n.*no config here"):
        p.start()
    assert not p.running()


def test_process_never_ready_is_stopped_when_the_wait_times_out(tmp_path):
    p = _Sh(tmp_path, "exec sleep 60", tmp_path / "never")
    with pytest.raises(TimeoutError, match="sh ready"):
        p.start(timeout=0.3)
    assert not p.running()


def test_free_ports_lie_outside_the_kernels_outgoing_range_and_apart_per_worker(monkeypatch):
    """A port chosen by bind(0) can be taken by an outgoing connection before Envoy binds it
    (CI once failed on `cannot bind ... Address already in use`); the kit's ports come from below
    the kernel's ephemeral range, one slice per xdist worker."""
    low = testkit.core._ephemeral_low()
    ports = [testkit.free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(p < low for p in ports)
    slices = []
    for worker in ("gw0", "gw1", "gw2"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
        slices.append(set(testkit.core._port_slice()))
    assert all(slices) and not (slices[0] & slices[1]) and not (slices[1] & slices[2])
