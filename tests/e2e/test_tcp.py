"""End-to-end tests of meshaudit's TCP audit: the same wasm module loaded as an Envoy network
filter (`envoy.filters.network.wasm`) in front of `tcp_proxy`, as in envoy/tcp.yaml.

Real Envoy 1.40, the real wasm filter, a real Rotel collector (one for the whole module, its
debug log parsed), an echo server standing in for the database, and mTLS clients with SPIFFE
certificates generated here. Every socket is on 127.0.0.1 with a free port. A connection's
events are told apart by the listener port (`network.local.port`, unique per Envoy) and the
client's own port (`network.peer.port`). Nothing sleeps to synchronise: every wait polls a condition
against a deadline.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import testkit
from testkit import DELETE

TCP_YAML = testkit.ENVOY_DIR / "tcp.yaml"
SIDECAR_YAML = testkit.ENVOY_DIR / "sidecar.yaml"
TCP_LISTENER = "tcp_inbound"
DB_CLUSTER = "inbound|5432||"
COLLECTOR = testkit.COLLECTOR_CLUSTER
EVENT_TCP = "meshaudit.tcp"
EVENT_HTTP = "meshaudit.http"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"

# Merged over tcp.yaml's own plugin configuration: only a shorter flush, so events arrive fast.
FAST = {"flush_interval_ms": 200}

BYTE_ATTRS = (
    "meshaudit.tcp.downstream.received_bytes",
    "meshaudit.tcp.upstream.sent_bytes",
    "meshaudit.tcp.upstream.received_bytes",
    "meshaudit.tcp.downstream.sent_bytes",
)

RESOURCE_EXPECTED = {
    "k8s.namespace.name": "payments",
    "service.name": "ledger-db",
    "service.version": "v14",
    "k8s.pod.name": "ledger-db-0",
    "meshaudit.workload.name": "ledger-db",
    "telemetry.sdk.name": "meshaudit",
}

API_SPIFFE = "spiffe://cluster.local/ns/app/sa/api"
MULTI_URIS = ["spiffe://cluster.local/ns/jobs/sa/batch", "urn:meshaudit:e2e:batch-runner"]
MULTI_DNS = ["batch.jobs.svc.cluster.local"]

# What an event might use to say that a TLS handshake failed (Envoy's own words for it are
# `TLS_error:...PEER_DID_NOT_RETURN_A_CERTIFICATE...` / `...CERTIFICATE_VERIFY_FAILED...`).
TLS_FAILURE_WORDS = re.compile(r"(?i)tls_error|handshake|certificate")


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tcp_pki(tmp_path_factory) -> testkit.Pki:
    p = testkit.make_pki(tmp_path_factory.mktemp("tcp-certs"))
    p.issue_client("api", cn="api.app", uri_sans=[API_SPIFFE])
    p.issue_client("multi", cn="batch.jobs", uri_sans=MULTI_URIS, dns_sans=MULTI_DNS)
    return p


@pytest.fixture(scope="module")
def rogue_cert(tmp_path_factory) -> testkit.Cert:
    """A SPIFFE client certificate from a CA the listener does not trust."""
    other = testkit.make_pki(tmp_path_factory.mktemp("rogue-certs"))
    return other.issue_client("rogue", cn="rogue.app", uri_sans=["spiffe://cluster.local/ns/app/sa/rogue"])


@pytest.fixture(scope="module")
def rotel(tmp_path_factory, binaries):
    r = testkit.Rotel(tmp_path_factory.mktemp("tcp-rotel"))
    try:
        r.start()
    except (testkit.HarnessError, TimeoutError) as e:
        pytest.fail(f"e2e environment not usable: {e}", pytrace=False)
    yield r
    r.stop()


@pytest.fixture(scope="module")
def echo():
    server = testkit.TcpEchoServer().start()
    yield server
    server.stop()


def tls_number(version: str | None) -> str | None:
    """`TLSv1.3` (Python's ssl) -> `1.3` (tls.protocol.version)."""
    return version[len("TLSv"):] if version and version.startswith("TLSv") else version


class TcpEnvoy:
    """One Envoy rendered from envoy/tcp.yaml (or a given config) shipping to the shared Rotel."""

    def __init__(
        self,
        workdir: Path,
        rotel: testkit.Rotel,
        *,
        wasm: Path,
        pki: testkit.Pki,
        upstream_port: int,
        overrides: dict | None = None,
        replace: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.rotel = rotel
        self.port = testkit.free_port()
        self.admin_port = testkit.free_port()
        self.pki = pki
        self.config = testkit.render_envoy(
            TCP_YAML,
            workdir,
            admin_port=self.admin_port,
            listener_ports={TCP_LISTENER: self.port},
            cluster_overrides={DB_CLUSTER: upstream_port, COLLECTOR: rotel.http_port},
            wasm=wasm,
            certs_dir=pki.directory,
            plugin_config_overrides=overrides,
            plugin_config_replace=replace,
        )
        self.envoy = testkit.Envoy(
            self.config, self.admin_port, workdir / "envoy.log", listener_ports={TCP_LISTENER: self.port}
        )

    def start(self) -> "TcpEnvoy":
        self.envoy.start()
        return self

    def stop(self) -> None:
        self.envoy.stop()

    def __enter__(self) -> "TcpEnvoy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what the collector got ----------------------------------------------------------

    def mine(self) -> list[testkit.LogRecord]:
        """Every record of a connection to this Envoy's listener."""
        return [r for r in self.rotel.records() if r.attr("network.local.port") == self.port]

    def of(self, client_port: int, phase: str | None = None) -> list[testkit.LogRecord]:
        return [
            r
            for r in self.mine()
            if r.attr("network.peer.port") == client_port and (phase is None or r.attr("meshaudit.tcp.phase") == phase)
        ]

    def wait(self, client_port: int, phase: str = "close", timeout: float = 10.0) -> testkit.LogRecord:
        """The first `phase` event of the connection from `client_port`."""
        found = testkit.wait_for(
            lambda: self.of(client_port, phase),
            timeout,
            0.1,
            lambda: f"a {phase} event for client port {client_port} on listener {self.port}; "
            f"events of this listener: {[(r.attr('network.peer.port'), r.attr('meshaudit.tcp.phase')) for r in self.mine()]}; "
            f"stats {self.safe_stats()}\nenvoy log tail:\n{testkit.log_tail(self.envoy.log_path, 20)}",
        )
        return found[0]

    def safe_stats(self) -> dict:
        try:
            return self.envoy.plugin_stats()
        except Exception as e:  # noqa: BLE001 - diagnostics only
            return {"error": str(e)}

    def settle(self, timeout: float = 10.0) -> None:
        """Polls until everything this Envoy captured was sent and is at the collector: then
        no event of a finished connection is still on its way."""

        def settled():
            st = self.envoy.stats()
            try:
                captured = testkit.metric(st, "meshaudit.events_captured")
                sent = testkit.metric(st, "meshaudit.events_sent")
            except AssertionError:
                return False
            streams = {r.attr("meshaudit.stream.id") for r in self.mine()}
            at_collector = [r for r in self.rotel.records() if r.attr("meshaudit.stream.id") in streams]
            return captured == sent and len(at_collector) == sent

        testkit.wait_for(settled, timeout, 0.1, lambda: f"captured == sent == at collector; stats {self.safe_stats()}")

    def log_text(self) -> str:
        return self.envoy.log_text()


@pytest.fixture(scope="module")
def tcp_stack(tmp_path_factory, wasm, tcp_pki, rotel, echo):
    """envoy/tcp.yaml as shipped (mode tcp, emit_on_open, interim every 60 s), flushing fast."""
    stack = TcpEnvoy(
        tmp_path_factory.mktemp("tcp"), rotel, wasm=wasm, pki=tcp_pki, upstream_port=echo.port, overrides=FAST
    )
    with testkit.running(stack):
        yield stack


@dataclass
class Echoed:
    client_port: int
    tls_version: str | None
    echoed: bytes


def mtls_echo(port: int, pki: testkit.Pki, cert: testkit.Cert, payload: bytes) -> Echoed:
    """One mTLS connection: send `payload`, read the whole echo back, close (the client
    closes first)."""
    with testkit.tls_connect(port, pki.ca_path, cert) as s:
        client_port = s.getsockname()[1]
        echoed = testkit.echo_roundtrip(s, payload)
        version = s.version()
    return Echoed(client_port, version, echoed)


@dataclass
class Attempt:
    client_port: int
    error: BaseException | None  # what the client got instead of its echo
    data: bytes  # what it read before the end of stream


def attempt_echo(
    port: int,
    ca: Path,
    cert: testkit.Cert | None,
    payload: bytes,
    max_version: ssl.TLSVersion | None = None,
) -> Attempt:
    """A connection that is expected to fail: the client port is known before the handshake.
    A connection Envoy keeps open (the client would wait for the 10 s socket timeout) is
    reported as a TimeoutError, which the callers treat as a failure."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    client_port = raw.getsockname()[1]
    try:
        s = testkit.tls_wrap(raw, ca, cert, max_version=max_version)
    except TimeoutError:
        raw.close()
        raise
    except (ssl.SSLError, OSError) as e:
        raw.close()
        return Attempt(client_port, e, b"")
    with s:
        try:
            s.sendall(payload)
            data = testkit.read_until_eof(s)
        except TimeoutError:
            raise
        except (ssl.SSLError, OSError) as e:
            return Attempt(client_port, e, b"")
    return Attempt(client_port, None, data)


def peer_attrs(rec: testkit.LogRecord) -> dict:
    return {k: v for k, v in rec.attributes.items() if k.startswith("meshaudit.peer.")}


def byte_counts(rec: testkit.LogRecord) -> dict:
    return {k: rec.attr(k) for k in BYTE_ATTRS}


def check_identity(a: dict, cert: testkit.Cert, spiffe: str, ns: str, sa: str) -> list[str]:
    """Differences between an event's peer identity and the client certificate."""
    want = {
        "meshaudit.peer.spiffe_id": spiffe,
        "meshaudit.peer.trust_domain": testkit.TRUST_DOMAIN,
        "meshaudit.peer.namespace": ns,
        "meshaudit.peer.service_account": sa,
        "meshaudit.peer.uri_sans": cert.uri_sans,
        "tls.client.subject": cert.subject_rfc4514,
        "tls.client.hash.sha256": cert.sha256.upper(),
    }
    if cert.dns_sans:
        want["meshaudit.peer.dns_sans"] = cert.dns_sans
    problems = [f"{k}: {a.get(k)!r} != {v!r}" for k, v in want.items() if a.get(k) != v]
    if not cert.dns_sans and "meshaudit.peer.dns_sans" in a:
        problems.append(f"meshaudit.peer.dns_sans present for a cert without DNS SANs: {a['meshaudit.peer.dns_sans']!r}")
    return problems


def check_local_identity(a: dict, server: testkit.Cert) -> list[str]:
    want = {
        "meshaudit.local.spiffe_id": testkit.SERVER_SPIFFE,
        "meshaudit.local.trust_domain": testkit.TRUST_DOMAIN,
        "meshaudit.local.namespace": "payments",
        "meshaudit.local.service_account": "checkout",
        "meshaudit.local.uri_sans": [testkit.SERVER_SPIFFE],
        "meshaudit.local.dns_sans": [testkit.SERVER_DNS],
        "tls.server.subject": server.subject_rfc4514,
    }
    return [f"{k}: {a.get(k)!r} != {v!r}" for k, v in want.items() if a.get(k) != v]


def assert_no_problems(problems: list[str], what: str, rec: testkit.LogRecord | None = None) -> None:
    detail = f"\nevent: {json.dumps(rec.attributes, default=str, sort_keys=True)}" if rec is not None else ""
    assert not problems, f"{what}:\n  " + "\n  ".join(problems) + detail


# ---------------------------------------------------------------------------------------------
# 1. The configuration validates
# ---------------------------------------------------------------------------------------------


def test_tcp_yaml_passes_envoy_validate(wasm, tcp_pki, tmp_path):
    """envoy/tcp.yaml, rendered with its own plugin configuration, passes `envoy --mode
    validate`, and has the shape the other tests rely on."""
    raw = yaml.safe_load(TCP_YAML.read_text())
    (listener,) = raw["static_resources"]["listeners"]
    assert listener["name"] == TCP_LISTENER
    assert {c["name"] for c in raw["static_resources"]["clusters"]} == {DB_CLUSTER, COLLECTOR}
    (chain,) = listener["filter_chains"]
    names = [f["name"] for f in chain["filters"]]
    assert names == [testkit.WASM_NETWORK_FILTER, "envoy.filters.network.tcp_proxy"], names
    assert chain["transport_socket"]["typed_config"]["require_client_certificate"] is True
    # The SNI needs the tls_inspector; the client's identity on a connection whose upstream
    # fails needs the upstream connected only after the handshake (docs/tcp.md#when-the-upstream-fails).
    assert [f["name"] for f in listener.get("listener_filters", [])] == [TLS_INSPECTOR], listener.get("listener_filters")
    proxy = chain["filters"][-1]["typed_config"]
    assert proxy.get("upstream_connect_mode") == "ON_DOWNSTREAM_TLS_HANDSHAKE", proxy
    plugin = testkit.plugin_config_of(raw)
    assert plugin["mode"] == "tcp" and plugin["emit_on_open"] is True, plugin

    rendered = testkit.render_envoy(
        TCP_YAML,
        tmp_path,
        admin_port=testkit.free_port(),
        listener_ports={TCP_LISTENER: testkit.free_port()},
        cluster_overrides={DB_CLUSTER: testkit.free_port(), COLLECTOR: testkit.free_port()},
        wasm=wasm,
        certs_dir=tcp_pki.directory,
    )
    assert testkit.plugin_config_of(yaml.safe_load(rendered.read_text())) == plugin
    proc = testkit.run_envoy_validate(rendered, tmp_path / "validate.log")
    assert proc.returncode == 0, f"envoy --mode validate failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "OK" in proc.stdout


# ---------------------------------------------------------------------------------------------
# 2. mTLS connections: identity, exact bytes, one open and one close event each
# ---------------------------------------------------------------------------------------------

CLIENTS = [
    pytest.param("api", 1000, API_SPIFFE, "app", "api", id="api-1000B"),
    pytest.param("multi", 70000, MULTI_URIS[0], "jobs", "batch", id="two-uris-and-dns-70000B"),
]


@pytest.mark.parametrize("client,size,spiffe,ns,sa", CLIENTS)
def test_mtls_connection_is_audited(tcp_stack, tcp_pki, echo, client, size, spiffe, ns, sa):
    cert = tcp_pki.clients[client]
    payload = bytes((i * 7 + 3) % 256 for i in range(size))
    done = mtls_echo(tcp_stack.port, tcp_pki, cert, payload)
    assert done.echoed == payload, "the echo through Envoy is not what was sent"

    close = tcp_stack.wait(done.client_port, "close")
    opened = tcp_stack.wait(done.client_port, "open")
    tcp_stack.settle()
    closes = tcp_stack.of(done.client_port, "close")
    opens = tcp_stack.of(done.client_port, "open")
    assert len(closes) == 1, f"expected exactly one close event, got {len(closes)}: {[r.attributes for r in closes]}"
    assert len(opens) == 1, f"expected exactly one open event, got {len(opens)}: {[r.attributes for r in opens]}"
    assert len(tcp_stack.of(done.client_port)) == 2, "events other than open and close for a short connection"

    a = close.attributes
    problems = []
    if close.event_name != EVENT_TCP:
        problems.append(f"event_name {close.event_name!r} != {EVENT_TCP!r}")
    problems += check_identity(a, cert, spiffe, ns, sa)
    problems += check_local_identity(a, tcp_pki.server)
    if a.get("meshaudit.tls.mtls") is not True:
        problems.append(f"meshaudit.tls.mtls: {a.get('meshaudit.tls.mtls')!r} != True")
    if a.get("meshaudit.tls.handshake") != "complete":
        problems.append(f"meshaudit.tls.handshake: {a.get('meshaudit.tls.handshake')!r} != 'complete'")
    for phase, rec in (("close", close), ("open", opened)):
        if rec.attr("meshaudit.decision") != "allow" or rec.attr("meshaudit.decision.reason") is not None:
            problems.append(f"{phase}: decision {rec.attr('meshaudit.decision')!r}, reason "
                            f"{rec.attr('meshaudit.decision.reason')!r} != 'allow', None")
    # The SNI the client sent (testkit.tls_connect), read by tcp.yaml's tls_inspector.
    for phase, rec in (("close", close), ("open", opened)):
        if rec.attr("server.address") != testkit.SERVER_DNS:
            problems.append(f"{phase} server.address (SNI): {rec.attr('server.address')!r} != {testkit.SERVER_DNS!r}")
    # Envoy caches `connection.tls_version` on its first read (ConnectionInfoImplBase::
    # tlsVersion): a read before the handshake is over pins the pre-handshake value.
    want_tls = tls_number(done.tls_version)
    if a.get("tls.protocol.version") != want_tls:
        problems.append(
            f"tls.protocol.version: {a.get('tls.protocol.version')!r} != {want_tls!r} (what the client negotiated)"
        )
    for k, v in byte_counts(close).items():
        if v != size:
            problems.append(f"{k}: {v!r} != {size}")
    if a.get("meshaudit.tcp.closed_by") != "downstream":
        problems.append(f"meshaudit.tcp.closed_by: {a.get('meshaudit.tcp.closed_by')!r} != 'downstream'")
    if a.get("meshaudit.envoy.upstream_cluster") != DB_CLUSTER:
        problems.append(f"meshaudit.envoy.upstream_cluster: {a.get('meshaudit.envoy.upstream_cluster')!r}")
    if a.get("meshaudit.upstream.address") != f"127.0.0.1:{echo.port}":
        problems.append(f"meshaudit.upstream.address: {a.get('meshaudit.upstream.address')!r} != 127.0.0.1:{echo.port}")
    if not (isinstance(a.get("meshaudit.duration_ns"), int) and a["meshaudit.duration_ns"] > 0):
        problems.append(f"meshaudit.duration_ns: {a.get('meshaudit.duration_ns')!r} is not > 0")
    if a.get("network.peer.address") != "127.0.0.1" or a.get("network.local.port") != tcp_stack.port:
        problems.append(f"addresses: peer {a.get('network.peer.address')!r}, local port {a.get('network.local.port')!r}")
    if a.get("network.transport") != "tcp":
        problems.append(f"network.transport: {a.get('network.transport')!r}")
    if a.get("meshaudit.tcp.interim_events") != 0:
        problems.append(f"meshaudit.tcp.interim_events: {a.get('meshaudit.tcp.interim_events')!r} != 0")
    for k, v in RESOURCE_EXPECTED.items():
        if close.resource.get(k) != v:
            problems.append(f"resource {k}: {close.resource.get(k)!r} != {v!r}")
    # The open event of the same connection.
    if opened.event_name != EVENT_TCP:
        problems.append(f"open event_name {opened.event_name!r}")
    if not isinstance(a.get("meshaudit.connection.id"), int):
        problems.append(f"close has no integer meshaudit.connection.id: {a.get('meshaudit.connection.id')!r}")
    if opened.attr("meshaudit.connection.id") != a.get("meshaudit.connection.id"):
        problems.append(
            f"connection id differs: open {opened.attr('meshaudit.connection.id')!r}, "
            f"close {a.get('meshaudit.connection.id')!r}"
        )
    if opened.attr("meshaudit.stream.id") != a.get("meshaudit.stream.id") or not (
        opened.attr("meshaudit.sequence") < a.get("meshaudit.sequence")
    ):
        problems.append("the open event is not before the close event in the same stream")
    if any(opened.attr(k) != 0 for k in BYTE_ATTRS):
        problems.append(f"open event bytes: {byte_counts(opened)}")
    if peer_attrs(opened):
        problems.append(f"open event carries a peer identity before the handshake: {peer_attrs(opened)}")
    early = [k for k in ("meshaudit.tls.mtls", "tls.protocol.version", "meshaudit.tls.handshake") if k in opened.attributes]
    if early:
        problems.append(f"open event carries TLS facts it cannot know yet: {early}")
    assert_no_problems(problems, f"close event of a {size}-byte mTLS connection with {client!r}", close)

    seen = [c for c in echo.connections if c.received == size]
    assert seen, f"the echo server saw no connection with {size} bytes: {echo.connections}"


def test_connections_get_distinct_ids_and_exactly_one_close_each(tcp_stack, tcp_pki):
    """Several connections one after another: one open and one close event each, all ids
    distinct, each close with that connection's own byte count."""
    cert = tcp_pki.clients["api"]
    sizes = [1, 512, 4096, 20000]
    done = [mtls_echo(tcp_stack.port, tcp_pki, cert, b"q" * n) for n in sizes]
    for d, n in zip(done, sizes):
        assert len(d.echoed) == n
    for d in done:
        tcp_stack.wait(d.client_port, "close")
    tcp_stack.settle()
    ids = []
    for d, n in zip(done, sizes):
        closes = tcp_stack.of(d.client_port, "close")
        opens = tcp_stack.of(d.client_port, "open")
        assert (len(opens), len(closes)) == (1, 1), f"{n}-byte connection: {len(opens)} open, {len(closes)} close events"
        assert byte_counts(closes[0]) == {k: n for k in BYTE_ATTRS}, byte_counts(closes[0])
        assert opens[0].attr("meshaudit.connection.id") == closes[0].attr("meshaudit.connection.id")
        ids.append(closes[0].attr("meshaudit.connection.id"))
    assert len(set(ids)) == len(ids), f"connection ids repeat: {ids}"


def test_upstream_closing_first_is_closed_by_upstream(tcp_stack, tcp_pki, echo):
    """The echo server closes once it has 500 bytes: the client reads the echo, then the end of
    stream Envoy passes on; the close event says the upstream closed."""
    size = 500
    echo.close_after = size
    try:
        with testkit.tls_connect(tcp_stack.port, tcp_pki.ca_path, tcp_pki.clients["api"]) as s:
            client_port = s.getsockname()[1]
            s.sendall(b"u" * size)
            got = testkit.read_until_eof(s)  # the echo, then the end of stream
    finally:
        echo.close_after = None
    assert got == b"u" * size, f"read {len(got)} bytes before the end of stream"
    assert any(c.closed_by_server and c.received == size for c in echo.connections), echo.connections

    close = tcp_stack.wait(client_port, "close")
    tcp_stack.settle()
    assert len(tcp_stack.of(client_port, "close")) == 1
    problems = []
    if close.attr("meshaudit.tcp.closed_by") != "upstream":
        problems.append(f"meshaudit.tcp.closed_by: {close.attr('meshaudit.tcp.closed_by')!r} != 'upstream'")
    for k, v in byte_counts(close).items():
        if v != size:
            problems.append(f"{k}: {v!r} != {size}")
    if close.attr("meshaudit.peer.spiffe_id") != API_SPIFFE:
        problems.append(f"meshaudit.peer.spiffe_id: {close.attr('meshaudit.peer.spiffe_id')!r}")
    assert_no_problems(problems, "close event when the upstream closes first", close)


# ---------------------------------------------------------------------------------------------
# 3. Refused upstream
# ---------------------------------------------------------------------------------------------


def set_tcp_proxy(stack: "TcpEnvoy", *, connect_mode: str | None = None, plaintext: bool = False,
                  insert_after_wasm: dict | None = None) -> dict:
    """Edits a TcpEnvoy's rendered config before it starts: tcp_proxy's upstream_connect_mode
    (None: Envoy's default, IMMEDIATE), the TLS transport socket removed (a plaintext filter
    chain), a network filter inserted right after meshaudit. Returns the tcp_proxy config."""
    cfg = yaml.safe_load(stack.config.read_text())
    (chain,) = cfg["static_resources"]["listeners"][0]["filter_chains"]
    proxy = chain["filters"][-1]["typed_config"]
    if connect_mode is None:
        proxy.pop("upstream_connect_mode", None)
        proxy.pop("max_early_data_bytes", None)
    else:
        proxy["upstream_connect_mode"] = connect_mode
        proxy["max_early_data_bytes"] = 0
    if plaintext:
        del chain["transport_socket"]
    if insert_after_wasm is not None:
        chain["filters"].insert(1, insert_after_wasm)
    stack.config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return proxy


def plain_attempt(port: int, payload: bytes) -> Attempt:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        client_port = s.getsockname()[1]
        try:
            s.sendall(payload)
            data = testkit.read_until_eof(s)
        except OSError as e:
            return Attempt(client_port, e, b"")
    return Attempt(client_port, None, data)


DEAD_UPSTREAM = [
    pytest.param("ON_DOWNSTREAM_TLS_HANDSHAKE", False, id="tls-connect-after-handshake-as-shipped"),
    pytest.param(None, False, id="tls-connect-immediately-envoy-default"),
    pytest.param(None, True, id="plaintext-listener"),
]


@pytest.mark.parametrize("connect_mode,plaintext", DEAD_UPSTREAM)
def test_refused_upstream_closes_the_client_and_says_so(tmp_path, wasm, tcp_pki, rotel, connect_mode, plaintext):
    """A dead upstream: every close event says so (UF, the connect error, closed by the proxy,
    the cluster), and says what became of TLS. As shipped (connect after the handshake) the
    client's identity is there; with Envoy's default the handshake usually never completes, and the
    event says `not_completed` (not `plaintext`, which only a plaintext listener says), keeping
    the SNI the client asked for."""
    dead_port = testkit.free_port()  # nothing listens there
    stack = TcpEnvoy(tmp_path, rotel, wasm=wasm, pki=tcp_pki, upstream_port=dead_port, overrides=FAST)
    proxy = set_tcp_proxy(stack, connect_mode=connect_mode, plaintext=plaintext)
    assert proxy.get("upstream_connect_mode") == connect_mode
    with stack:
        if plaintext:
            attempt = plain_attempt(stack.port, b"r" * 100)
        else:
            attempt = attempt_echo(stack.port, tcp_pki.ca_path, tcp_pki.clients["api"], b"r" * 100)
        assert attempt.data == b"", f"the client got data through a refused upstream: {attempt.data!r}"
        close = stack.wait(attempt.client_port, "close")
        stack.settle()
        assert len(stack.of(attempt.client_port, "close")) == 1
    a = close.attributes
    flags = {f.strip() for f in (a.get("meshaudit.envoy.response_flags") or "").split(",") if f.strip()}
    problems = []
    if "UF" not in flags:
        problems.append(f"meshaudit.envoy.response_flags {a.get('meshaudit.envoy.response_flags')!r} lacks UF")
    reason = a.get("meshaudit.upstream.transport_failure_reason") or ""
    if "refused" not in reason.lower():
        problems.append(f"meshaudit.upstream.transport_failure_reason {reason!r} does not mention the refusal")
    if a.get("meshaudit.tcp.closed_by") != "proxy":
        problems.append(f"meshaudit.tcp.closed_by: {a.get('meshaudit.tcp.closed_by')!r} != 'proxy'")
    if a.get("meshaudit.envoy.upstream_cluster") != DB_CLUSTER:
        problems.append(f"meshaudit.envoy.upstream_cluster: {a.get('meshaudit.envoy.upstream_cluster')!r}")
    if a.get("meshaudit.upstream.address") != f"127.0.0.1:{dead_port}":
        problems.append(f"meshaudit.upstream.address: {a.get('meshaudit.upstream.address')!r} != 127.0.0.1:{dead_port}")
    if a.get("meshaudit.tcp.upstream.received_bytes") != 0 or a.get("meshaudit.tcp.downstream.sent_bytes") != 0:
        problems.append(f"bytes from a refused upstream: {byte_counts(close)}")
    if "meshaudit.connection.transport_failure_reason" in a:
        problems.append(f"a downstream TLS failure for an upstream failure: {a['meshaudit.connection.transport_failure_reason']!r}")
    want_handshake = "plaintext" if plaintext else "complete" if connect_mode else "not_completed"
    if not plaintext and not connect_mode and a.get("meshaudit.tls.handshake") == "complete":
        # Envoy learns of the refusal on a later turn of its event loop ("delayed connect
        # error"): on a loaded machine the client can finish its handshake first, and then the
        # event rightly says `complete`, with the client's identity checked below.
        want_handshake = "complete"
    if a.get("meshaudit.tls.handshake") != want_handshake:
        problems.append(f"meshaudit.tls.handshake: {a.get('meshaudit.tls.handshake')!r} != {want_handshake!r}")
    if want_handshake == "complete":
        problems += check_identity(a, tcp_pki.clients["api"], API_SPIFFE, "app", "api")
        if a.get("meshaudit.tls.mtls") is not True or not a.get("tls.protocol.version"):
            problems.append(f"mtls {a.get('meshaudit.tls.mtls')!r}, version {a.get('tls.protocol.version')!r}")
    else:
        if a.get("meshaudit.tls.mtls") is not False:
            problems.append(f"meshaudit.tls.mtls: {a.get('meshaudit.tls.mtls')!r} != False")
        tls_facts = {k: v for k, v in a.items() if k == "tls.protocol.version" or k.startswith(("meshaudit.peer.", "meshaudit.local."))}
        if tls_facts:
            problems.append(f"TLS facts without an established TLS session: {tls_facts}")
    want_sni = None if plaintext else testkit.SERVER_DNS
    if a.get("server.address") != want_sni:
        problems.append(f"server.address (SNI): {a.get('server.address')!r} != {want_sni!r}")
    assert_no_problems(problems, f"close event of a connection whose upstream refused ({connect_mode or 'IMMEDIATE'}, {'plaintext' if plaintext else 'TLS'})", close)


def test_rbac_denial_is_recorded_with_its_termination_details(tmp_path, wasm, tcp_pki, rotel, echo):
    """Envoy's network RBAC filter (after meshaudit, as Istio's AUTHN phase puts it) refuses the
    connection on its first data: the close event carries the termination details it set."""
    rbac = {
        "name": "envoy.filters.network.rbac",
        "typed_config": {
            "@type": testkit.ISTIO_RBAC_NETWORK_TYPE,
            "stat_prefix": "tcp_rbac",
            "rules": {"action": "DENY", "policies": {"deny-ledger": {"permissions": [{"any": True}], "principals": [{"any": True}]}}},
        },
    }
    stack = TcpEnvoy(tmp_path, rotel, wasm=wasm, pki=tcp_pki, upstream_port=echo.port, overrides=FAST)
    set_tcp_proxy(stack, connect_mode="ON_DOWNSTREAM_TLS_HANDSHAKE", insert_after_wasm=rbac)
    with stack:
        attempt = attempt_echo(stack.port, tcp_pki.ca_path, tcp_pki.clients["api"], b"d" * 50)
        assert attempt.data == b"", f"RBAC let data through: {attempt.data!r}"
        close = stack.wait(attempt.client_port, "close")
        stack.settle()
    a = close.attributes
    problems = []
    if a.get("meshaudit.envoy.termination_details") != "rbac_access_denied_matched_policy[deny-ledger]":
        problems.append(f"meshaudit.envoy.termination_details: {a.get('meshaudit.envoy.termination_details')!r}")
    if a.get("meshaudit.tcp.closed_by") != "proxy":
        problems.append(f"meshaudit.tcp.closed_by: {a.get('meshaudit.tcp.closed_by')!r} != 'proxy'")
    decision = tuple(a.get(k) for k in ("meshaudit.decision", "meshaudit.decision.reason", "meshaudit.decision.policy"))
    if decision != ("deny", "rbac", "deny-ledger"):
        problems.append(f"decision, reason, policy: {decision!r} != ('deny', 'rbac', 'deny-ledger')")
    if a.get("meshaudit.tcp.downstream.received_bytes") != 50:
        problems.append(f"bytes: {byte_counts(close)}")
    problems += check_identity(a, tcp_pki.clients["api"], API_SPIFFE, "app", "api")
    assert_no_problems(problems, "close event of a connection refused by network RBAC", close)


# ---------------------------------------------------------------------------------------------
# 4. Failed TLS handshakes
# ---------------------------------------------------------------------------------------------

HANDSHAKE_FAILURES = [
    pytest.param(None, None, id="no-client-cert-tls1.3"),
    pytest.param(None, ssl.TLSVersion.TLSv1_2, id="no-client-cert-tls1.2"),
    pytest.param("rogue", None, id="cert-from-unknown-ca"),
]


@pytest.mark.parametrize("who,max_version", HANDSHAKE_FAILURES)
def test_failed_handshake_is_audited(tcp_stack, tcp_pki, rogue_cert, echo, who, max_version):
    """require_client_certificate holds (the client gets no echo), and the connection still
    yields a close event that says the handshake failed: no mTLS, no peer identity, the
    failure named, closed by the proxy.

    Envoy 1.40 does call the network filter for such a connection (it is created at accept,
    before the handshake; tcp_proxy even connects upstream then), and has the reason:
    its `%DOWNSTREAM_TRANSPORT_FAILURE_REASON%` / attribute `connection.transport_failure_reason`
    is `TLS_error:|...:PEER_DID_NOT_RETURN_A_CERTIFICATE:...` or
    `...:CERTIFICATE_VERIFY_FAILED:...`. It reports the close to filters as a remote close."""
    cert = rogue_cert if who == "rogue" else None
    payload = b"h" * 64
    attempt = attempt_echo(tcp_stack.port, tcp_pki.ca_path, cert, payload, max_version=max_version)
    assert attempt.data != payload and attempt.data == b"", f"the handshake did not fail: read {attempt.data!r}"

    close = tcp_stack.wait(attempt.client_port, "close")
    tcp_stack.settle()
    assert len(tcp_stack.of(attempt.client_port, "close")) == 1
    a = close.attributes
    problems = []
    if a.get("meshaudit.tls.mtls") is True:
        problems.append("meshaudit.tls.mtls is true for a client whose certificate Envoy refused")
    if peer_attrs(close):
        problems.append(f"peer identity of a refused client: {peer_attrs(close)}")
    if a.get("meshaudit.tcp.downstream.received_bytes") != 0 or a.get("meshaudit.tcp.upstream.sent_bytes") != 0:
        problems.append(f"bytes passed for a failed handshake: {byte_counts(close)}")
    said = {
        k: v
        for k, v in a.items()
        if not k.startswith(("meshaudit.local.", "meshaudit.peer."))
        and isinstance(v, str)
        and TLS_FAILURE_WORDS.search(v)
    }
    if not said:
        problems.append(
            "no attribute names the TLS handshake failure (e.g. meshaudit.envoy.termination_details "
            f"is {a.get('meshaudit.envoy.termination_details')!r})"
        )
    if a.get("meshaudit.tcp.closed_by") != "proxy":
        problems.append(f"meshaudit.tcp.closed_by: {a.get('meshaudit.tcp.closed_by')!r} != 'proxy' (Envoy refused the client)")
    if a.get("meshaudit.tls.handshake") != "failed":
        problems.append(f"meshaudit.tls.handshake: {a.get('meshaudit.tls.handshake')!r} != 'failed'")
    decision = (a.get("meshaudit.decision"), a.get("meshaudit.decision.reason"))
    if decision != ("deny", "tls"):
        problems.append(f"decision, reason: {decision!r} != ('deny', 'tls')")
    assert_no_problems(problems, f"close event of a failed TLS handshake ({who or 'no client certificate'})", close)


# ---------------------------------------------------------------------------------------------
# 5. Interim events
# ---------------------------------------------------------------------------------------------


def test_interim_events_report_bytes_so_far(tmp_path, wasm, tcp_pki, rotel, echo):
    """interim_interval_ms 1000: a connection held open gets an interim event about every
    second with the bytes so far. The client sends its next chunk each time it sees an
    interim event with the previous total, so each total must show up in some interim event."""
    chunks = [100, 300]
    overrides = {**FAST, "interim_interval_ms": 1000}
    with TcpEnvoy(tmp_path, rotel, wasm=wasm, pki=tcp_pki, upstream_port=echo.port, overrides=overrides) as stack:
        with testkit.tls_connect(stack.port, tcp_pki.ca_path, tcp_pki.clients["api"]) as s:
            client_port = s.getsockname()[1]
            total = 0
            for n in chunks:
                assert testkit.echo_roundtrip(s, b"i" * n) == b"i" * n
                total += n
                testkit.wait_for(
                    lambda: [
                        r
                        for r in stack.of(client_port, "interim")
                        if r.attr("meshaudit.tcp.downstream.received_bytes") == total
                    ],
                    6,
                    0.1,
                    lambda: f"an interim event with {total} bytes received; interim events so far: "
                    f"{[byte_counts(r) for r in stack.of(client_port, 'interim')]}",
                )
        close = stack.wait(client_port, "close")
        stack.settle()
        opened = stack.of(client_port, "open")
        closes = stack.of(client_port, "close")
        interims = sorted(stack.of(client_port, "interim"), key=lambda r: r.attr("meshaudit.sequence"))
        log = stack.log_text()
    # Interim events are read in the connection's context; the root's own calls (the exports
    # that brought these events) act for the root again.
    assert "could not switch back to the root context" not in log

    assert len(opened) == 1 and len(closes) == 1, (len(opened), len(closes))
    assert len(interims) >= len(chunks), f"{len(interims)} interim events"
    conn_id = close.attr("meshaudit.connection.id")
    assert isinstance(conn_id, int)
    problems = []
    prefix_sums = {sum(chunks[:i]) for i in range(len(chunks) + 1)}
    last_down = last_up = -1
    last_time = opened[0].observed_timestamp
    for r in interims:
        down = r.attr("meshaudit.tcp.downstream.received_bytes")
        up = r.attr("meshaudit.tcp.upstream.received_bytes")
        if r.event_name != EVENT_TCP:
            problems.append(f"interim event_name {r.event_name!r}")
        if r.attr("meshaudit.connection.id") != conn_id:
            problems.append(f"interim connection id {r.attr('meshaudit.connection.id')!r} != {conn_id}")
        if down not in prefix_sums or r.attr("meshaudit.tcp.upstream.sent_bytes") != down:
            problems.append(f"interim downstream bytes are not a total sent so far: {byte_counts(r)}")
        if not (isinstance(up, int) and up <= down and r.attr("meshaudit.tcp.downstream.sent_bytes") == up):
            problems.append(f"interim upstream bytes inconsistent: {byte_counts(r)}")
        if down < last_down or (isinstance(up, int) and up < last_up):
            problems.append(f"bytes went down: {byte_counts(r)} after {last_down}/{last_up}")
        last_down, last_up = down, up if isinstance(up, int) else last_up
        if r.observed_timestamp - last_time < 1_000_000_000:
            problems.append(f"interim event {r.observed_timestamp - last_time} ns after the previous event (< 1 s)")
        last_time = r.observed_timestamp
        if r.attr("meshaudit.peer.spiffe_id") != API_SPIFFE:
            problems.append(f"interim event without the peer identity: {r.attr('meshaudit.peer.spiffe_id')!r}")
        # Everything Envoy has at that moment: the connected upstream, the SNI, the handshake.
        want = {
            "meshaudit.upstream.address": f"127.0.0.1:{echo.port}",
            "meshaudit.envoy.upstream_cluster": DB_CLUSTER,
            "server.address": testkit.SERVER_DNS,
            "meshaudit.tls.handshake": "complete",
            "meshaudit.tls.mtls": True,
            "meshaudit.envoy.listener_direction": "inbound",
        }
        wrong = {k: r.attr(k) for k, v in want.items() if r.attr(k) != v}
        if wrong:
            problems.append(f"interim event lacks what Envoy has: {wrong}")
        if not (isinstance(r.body, str) and f"-> {DB_CLUSTER} " in r.body):
            problems.append(f"interim body does not name the upstream: {r.body!r}")
        if "meshaudit.tcp.closed_by" in r.attributes:
            problems.append("an interim event says who closed")
    if close.attr("meshaudit.tcp.interim_events") != len(interims):
        problems.append(
            f"meshaudit.tcp.interim_events {close.attr('meshaudit.tcp.interim_events')!r} != "
            f"{len(interims)} interim events received"
        )
    if byte_counts(close) != {k: sum(chunks) for k in BYTE_ATTRS}:
        problems.append(f"close bytes {byte_counts(close)}")
    if opened[0].attr("meshaudit.connection.id") != conn_id:
        problems.append("open event has another connection id")
    assert_no_problems(problems, "interim events", close)


# ---------------------------------------------------------------------------------------------
# 6. Mode detection and HTTP-only settings
# ---------------------------------------------------------------------------------------------


def test_auto_mode_audits_connections(tmp_path, wasm, tcp_pki, rotel, echo):
    """tcp.yaml with "mode" removed: the module tells by itself that it is a network filter."""
    with TcpEnvoy(
        tmp_path, rotel, wasm=wasm, pki=tcp_pki, upstream_port=echo.port, overrides={**FAST, "mode": DELETE}
    ) as stack:
        assert "mode" not in testkit.plugin_config_of(yaml.safe_load(stack.config.read_text()))
        done = mtls_echo(stack.port, tcp_pki, tcp_pki.clients["api"], b"a" * 1000)
        close = stack.wait(done.client_port, "close")
        stack.settle()
        assert len(stack.of(done.client_port, "close")) == 1
        log = stack.log_text()
    assert close.event_name == EVENT_TCP
    assert byte_counts(close) == {k: 1000 for k in BYTE_ATTRS}, byte_counts(close)
    assert close.attr("meshaudit.peer.spiffe_id") == API_SPIFFE
    assert "invalid configuration" not in log, [l for l in log.splitlines() if "invalid configuration" in l]


HTTP_ONLY = [
    pytest.param({"request_headers": ["x-tenant"]}, "request_headers", id="request_headers"),
    pytest.param({"body_capture": [{"max_bytes": 64}]}, "body_capture", id="body_capture"),
]


@pytest.mark.parametrize("override,field", HTTP_ONLY)
def test_tcp_mode_refuses_http_only_settings(tmp_path, wasm, tcp_pki, override, field):
    listener_port = testkit.free_port()
    config = testkit.render_envoy(
        TCP_YAML,
        tmp_path,
        admin_port=testkit.free_port(),
        listener_ports={TCP_LISTENER: listener_port},
        cluster_overrides={DB_CLUSTER: testkit.free_port(), COLLECTOR: testkit.free_port()},
        wasm=wasm,
        certs_dir=tcp_pki.directory,
        plugin_config_overrides=override,
    )
    assert testkit.plugin_config_of(yaml.safe_load(config.read_text()))["mode"] == "tcp"
    field_line = re.compile(r"meshaudit: invalid configuration: " + re.escape(field) + r": \S")

    validate = testkit.run_envoy_validate(config, tmp_path / "validate.log")
    vlog = validate.stdout + validate.stderr
    assert validate.returncode != 0, f"envoy --mode validate accepted HTTP-only {field!r} with mode tcp:\n{vlog[-2000:]}"
    assert field_line.search(vlog), f"validate log does not name {field!r}:\n{vlog[-3000:]}"
    rc, log = testkit.envoy_refusing(config, listener_port, tmp_path / "envoy.log")
    assert rc != 0, f"envoy exited 0:\n{log[-2000:]}"
    assert field_line.search(log), f"Envoy log does not name {field!r}:\n{log[-3000:]}"


def test_auto_mode_with_http_only_setting_audits_and_logs_the_field(tmp_path, wasm, tcp_pki, rotel, echo):
    overrides = {**FAST, "mode": DELETE, "body_capture": [{"max_bytes": 64}]}
    with TcpEnvoy(tmp_path, rotel, wasm=wasm, pki=tcp_pki, upstream_port=echo.port, overrides=overrides) as stack:
        done = mtls_echo(stack.port, tcp_pki, tcp_pki.clients["api"], b"b" * 300)
        close = stack.wait(done.client_port, "close")
        log = stack.log_text()
    assert close.event_name == EVENT_TCP
    assert byte_counts(close) == {k: 300 for k in BYTE_ATTRS}, byte_counts(close)
    errors = [l for l in log.splitlines() if "[error]" in l and "meshaudit" in l and "body_capture" in l]
    assert errors, "no error line naming body_capture in the Envoy log:\n" + "\n".join(
        l for l in log.splitlines() if "meshaudit" in l
    )


# ---------------------------------------------------------------------------------------------
# 7. One module, both filter kinds, one Envoy
# ---------------------------------------------------------------------------------------------


def combined_config(
    out_dir: Path, *, wasm: Path, pki: testkit.Pki, plugin: str, admin_port: int, http_port: int, tcp_port: int,
    app_port: int, db_port: int, collector_port: int,
) -> Path:
    """envoy/sidecar.yaml (HTTP filter) with envoy/tcp.yaml's listener and database cluster
    (network filter) added; both filters get the same plugin configuration `plugin`, so they
    share one VM and one plugin (root context)."""
    sidecar = testkit.render_envoy(
        SIDECAR_YAML,
        out_dir,
        admin_port=admin_port,
        listener_ports={"virtualInbound": http_port},
        cluster_overrides={"inbound|8080||": app_port, COLLECTOR: collector_port},
        wasm=wasm,
        certs_dir=pki.directory,
        plugin_config_replace=plugin,
        name="part-sidecar.yaml",
    )
    tcp = testkit.render_envoy(
        TCP_YAML,
        out_dir,
        admin_port=admin_port,
        listener_ports={TCP_LISTENER: tcp_port},
        cluster_overrides={DB_CLUSTER: db_port, COLLECTOR: collector_port},
        wasm=wasm,
        certs_dir=pki.directory,
        plugin_config_replace=plugin,
        name="part-tcp.yaml",
    )
    cfg = yaml.safe_load(sidecar.read_text())
    tcp_cfg = yaml.safe_load(tcp.read_text())
    cfg["static_resources"]["listeners"] += tcp_cfg["static_resources"]["listeners"]
    cfg["static_resources"]["clusters"] += [c for c in tcp_cfg["static_resources"]["clusters"] if c["name"] == DB_CLUSTER]
    vms = {json.dumps(tc["config"]["vm_config"], sort_keys=True) for tc in testkit.meshaudit_filters(cfg)}
    assert len(vms) == 1, f"the filters' vm_configs differ, so they would not share a VM: {vms}"
    out = out_dir / "combined.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def test_access_logger_of_a_tcp_proxy_records_no_http_events_and_says_so(tmp_path, wasm, tcp_pki, rotel, echo):
    """meshaudit loaded as the tcp_proxy's access logger is told of connections, not requests:
    it records no (empty) HTTP events for them, and Envoy's log says once to use the network
    filter instead."""
    overrides = {**FAST, "mode": "access_log", "emit_on_open": False, "interim_interval_ms": 0}
    stack = TcpEnvoy(tmp_path, rotel, wasm=wasm, pki=tcp_pki, upstream_port=echo.port, overrides=overrides)
    cfg = yaml.safe_load(stack.config.read_text())
    (chain,) = cfg["static_resources"]["listeners"][0]["filter_chains"]
    (module,) = [f for f in chain["filters"] if f["name"] == testkit.WASM_NETWORK_FILTER]
    chain["filters"].remove(module)
    (proxy,) = chain["filters"]
    proxy["typed_config"]["access_log"] = [{
        "name": testkit.WASM_ACCESS_LOGGER,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.wasm.v3.WasmAccessLog",
            "config": module["typed_config"]["config"],
        },
    }]
    stack.config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    line = "loaded as an access logger outside an HTTP connection manager: connections are not audited here"
    with stack:
        for _ in range(2):
            done = mtls_echo(stack.port, tcp_pki, tcp_pki.clients["api"], b"a" * 100)
            assert done.echoed == b"a" * 100
        def said():
            text = stack.log_text()
            return text if line in text else None

        log = testkit.wait_for(said, 10.0, 0.1, lambda: f"the error line; log:\n{stack.log_text()[-2000:]}")
        assert log.count(line) == 1, log[-3000:]
        assert testkit.metric(stack.envoy.stats(), "meshaudit.events_captured") == 0
        assert stack.mine() == []


def test_one_module_as_http_and_network_filter(tmp_path, wasm, tcp_pki, rotel, echo):
    """The same module, same VM and the same plugin configuration (no "mode") as the HTTP
    filter of sidecar.yaml's listener and as the network filter of tcp.yaml's: HTTP requests
    give `meshaudit.http` events, connections `meshaudit.tcp` events."""
    plugin = json.dumps(
        {"collector": {"cluster": COLLECTOR, "authority": "otel-collector"}, "flush_interval_ms": 200, "emit_on_open": True}
    )
    http_port, tcp_port, admin_port = testkit.free_port(), testkit.free_port(), testkit.free_port()
    with testkit.upstream_server() as app:
        config = combined_config(
            tmp_path, wasm=wasm, pki=tcp_pki, plugin=plugin, admin_port=admin_port, http_port=http_port,
            tcp_port=tcp_port, app_port=app.port, db_port=echo.port, collector_port=rotel.http_port,
        )
        listeners = {"virtualInbound": http_port, TCP_LISTENER: tcp_port}
        kinds = [
            (f["name"], l["name"])
            for l in yaml.safe_load(config.read_text())["static_resources"]["listeners"]
            for f in testkit.walk(l)
            if isinstance(f, dict) and f.get("name") in (testkit.WASM_FILTER, testkit.WASM_NETWORK_FILTER)
        ]
        assert (testkit.WASM_NETWORK_FILTER, TCP_LISTENER) in kinds and (testkit.WASM_FILTER, "virtualInbound") in kinds
        with testkit.Envoy(config, admin_port, tmp_path / "envoy.log", listener_ports=listeners) as envoy:
            path = "/combined/" + tmp_path.name
            resp = testkit.request(http_port, path)
            assert resp.status == 200
            mresp = testkit.request(
                http_port, path + "/mtls", tls=testkit.TlsClient(ca=tcp_pki.ca_path, cert=tcp_pki.clients["multi"].cert_path,
                                                                  key=tcp_pki.clients["multi"].key_path)
            )
            assert mresp.status == 200
            done = mtls_echo(tcp_port, tcp_pki, tcp_pki.clients["api"], b"c" * 2500)
            assert len(done.echoed) == 2500

            def found():
                recs = rotel.records()
                http = [r for r in recs if r.attr("url.path") in (path, path + "/mtls")]
                tcp = [
                    r
                    for r in recs
                    if r.attr("network.local.port") == tcp_port
                    and r.attr("network.peer.port") == done.client_port
                    and r.attr("meshaudit.tcp.phase") == "close"
                ]
                return (http, tcp) if len(http) == 2 and tcp else None

            http_recs, tcp_recs = testkit.wait_for(
                found, 10, 0.1, lambda: f"2 HTTP and 1 TCP close events; log tail:\n{testkit.log_tail(envoy.log_path, 20)}"
            )
            log = envoy.log_text()
    problems = []
    for r in http_recs:
        if r.event_name != EVENT_HTTP:
            problems.append(f"HTTP request event has event_name {r.event_name!r}")
        if r.attr("http.response.status_code") != 200 or r.attr("http.request.method") != "GET":
            problems.append(f"HTTP event: status {r.attr('http.response.status_code')!r}, method {r.attr('http.request.method')!r}")
        if any(k.startswith("meshaudit.tcp.") for k in r.attributes):
            problems.append(f"HTTP event with TCP attributes: {[k for k in r.attributes if k.startswith('meshaudit.tcp.')]}")
    mtls_http = [r for r in http_recs if r.attr("url.path") == path + "/mtls"]
    if mtls_http and mtls_http[0].attr("meshaudit.peer.spiffe_id") != MULTI_URIS[0]:
        problems.append(f"HTTP mTLS peer: {mtls_http[0].attr('meshaudit.peer.spiffe_id')!r}")
    (close,) = tcp_recs
    if close.event_name != EVENT_TCP:
        problems.append(f"TCP close event has event_name {close.event_name!r}")
    if byte_counts(close) != {k: 2500 for k in BYTE_ATTRS}:
        problems.append(f"TCP bytes {byte_counts(close)}")
    if close.attr("meshaudit.peer.spiffe_id") != API_SPIFFE:
        problems.append(f"TCP peer {close.attr('meshaudit.peer.spiffe_id')!r}")
    if any(k.startswith("http.") or k.startswith("url.") for k in close.attributes):
        problems.append("TCP event with HTTP attributes")
    # No HTTP stream was taken for a connection (no open events on the HTTP listener).
    stray = [
        r for r in rotel.records() if r.attr("network.local.port") == http_port and r.event_name != EVENT_HTTP
    ]
    if stray:
        problems.append(f"non-HTTP events from the HTTP listener: {[(r.event_name, r.attr('meshaudit.tcp.phase')) for r in stray]}")
    # One plugin (root context) in one worker VM took both: its stream carries both kinds.
    streams = {r.attr("meshaudit.stream.id") for r in http_recs} | {close.attr("meshaudit.stream.id")}
    if len(streams) != 1:
        problems.append(f"HTTP and TCP events come from different streams (root contexts): {streams}")
    if "invalid configuration" in log:
        problems.append("the shared configuration was reported invalid")
    assert_no_problems(problems, "one module loaded as HTTP and network filter", close)
