"""Istio: render a WasmPlugin or TrafficExtension the way istiod (pilot/pkg/model/extensions.go,
core/extension/wasmplugin.go) and the istio-agent (pkg/wasm/convert.go) do, and run it in an
Istio-sidecar-shaped Envoy that receives the filter over ECDS from a file, so a test can change
pluginConfig the way `kubectl apply` would."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from .client import Response, TlsClient, request
from .collectors import Rotel
from .core import ENVOY_DIR, REPO, HarnessError, free_port, wait_for
from .envoy import COLLECTOR_CLUSTER, WASM_FILTER, WASM_NETWORK_FILTER, Envoy, render_envoy, rename_cluster, walk
from .otlp import LogRecord
from .pki import SERVER_DNS, Cert, Pki
from .processes import log_tail, stop_all
from .servers import HttpServerThread, upstream_server

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
        self.envoy: Envoy | None = None
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
        rename_cluster(cfg, COLLECTOR_CLUSTER, ISTIO_COLLECTOR_CLUSTER)
        ref = istio_ecds_filter(self.plugin, self.ecds_path)
        replaced = 0
        for node in walk(cfg):
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
            self.envoy = Envoy(
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
                raise HarnessError(f"envoy exited with {self.envoy.proc.returncode}:\n{log_tail(self.envoy.log_path)}")
            try:
                st = self.ecds_stats()
            except OSError:  # admin busy (the main thread compiles the module) or not up yet
                return None
            return st if st.get(counter, 0) >= at_least else None

        return wait_for(
            reached, timeout, 0.05,
            lambda: f"ECDS {counter} >= {at_least}; stats {self._safe_ecds_stats()}\n{log_tail(self.envoy.log_path, 20)}",
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
            lambda: f"{count} {what} at the collector; got {len(last)}; envoy log:\n{log_tail(self.envoy.log_path, 30)}",
        )


PEER_METADATA_HEADER = "x-envoy-peer-metadata"


def peer_metadata_header(namespace: str, workload: str, app: str, version: str) -> str:
    """The `x-envoy-peer-metadata` value an Istio sidecar of `workload` (a Deployment) sends about
    itself: its node metadata as a `google.protobuf.Struct`, serialized deterministically (as
    Istio's metadata exchange does) with Google's protobuf library, base64."""
    import base64

    from google.protobuf import struct_pb2

    node = struct_pb2.Struct()
    node.update({
        "NAME": f"{workload}-5f7c9d-x2x9q",
        "NAMESPACE": namespace,
        "WORKLOAD_NAME": workload,
        "OWNER": f"kubernetes://apis/apps/v1/namespaces/{namespace}/deployments/{workload}",
        "CLUSTER_ID": "Kubernetes",
        "MESH_ID": "cluster.local",
        "LABELS": {
            "app": app,
            "version": version,
            "service.istio.io/canonical-name": app,
            "service.istio.io/canonical-revision": version,
            "pod-template-hash": "5f7c9d",
        },
        "PLATFORM_METADATA": {},
    })
    return base64.b64encode(node.SerializeToString(deterministic=True)).decode()
