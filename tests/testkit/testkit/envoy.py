"""Envoy: its configurations (envoy/*.yaml rendered with free ports, generated certificates,
the built filter and a plugin configuration of the test's choosing), the Envoy process and its
admin statistics, and Envoy runs that must fail."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from .binaries import WASM_REL, envoy_bin
from .core import ENVOY_DIR, HarnessError, free_port, http_get, port_open, wait_for
from .metrics import metric, parse_stats
from .pki import Pki
from .processes import Process, log_tail

WASM_FILTER = "envoy.filters.http.wasm"
WASM_NETWORK_FILTER = "envoy.filters.network.wasm"
WASM_ACCESS_LOGGER = "envoy.access_loggers.wasm"
ROOT_ID = "meshaudit"

# The shapes of envoy/*.yaml the kit renders: file, the listener under test, the application's
# cluster; every one has the collector cluster.
SIDECAR = {"yaml": "sidecar.yaml", "listener": "virtualInbound", "app_cluster": "inbound|8080||"}
EDGE = {"yaml": "edge.yaml", "listener": "edge_http", "app_cluster": "app"}
COLLECTOR_CLUSTER = "meshaudit_collector"

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


def walk(node: Any) -> Iterable[Any]:
    """Every node of a parsed configuration, the root first, depth first."""
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def meshaudit_filters(cfg: dict) -> list[dict]:
    """Every `envoy.filters.http.wasm`, `envoy.filters.network.wasm` or
    `envoy.access_loggers.wasm` typed_config whose root_id is meshaudit."""
    found = []
    for node in walk(cfg):
        if isinstance(node, dict) and node.get("name") in (WASM_FILTER, WASM_NETWORK_FILTER, WASM_ACCESS_LOGGER):
            tc = node.get("typed_config", {})
            if tc.get("config", {}).get("root_id") == ROOT_ID:
                found.append(tc)
    return found


def move_filters_to_access_log(cfg: dict, filters: list[dict]) -> None:
    """Loads each of `filters` (meshaudit HTTP filters' typed_configs) as an access logger of
    its HTTP connection manager instead, with the same plugin configuration."""
    managers = [n for n in walk(cfg) if isinstance(n, dict) and isinstance(n.get("http_filters"), list)]
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
    config_patch: Callable[[dict], None] | None = None,
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
      (`vm_config.environment_variables.key_values`), e.g. the `hash` key;
    - `config_patch` is called last with the whole configuration (a dict) to change it in
      place: filters, routes or clusters of a test's own (whose addresses it sets itself).
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

    for node in walk(cfg):
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
        for node in walk(cfg):
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
    if config_patch is not None:
        config_patch(cfg)

    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / (name or source.name)
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


class Envoy(Process):
    """A running Envoy (`envoy` of the project virtualenv): ready when its admin /ready says LIVE
    and every port of `listener_ports` accepts connections. `env`: extra variables in its
    process environment (what a Wasm VM's `host_env_keys` read; in an Istio pod, pilot-agent
    starts Envoy with the istio-proxy container's environment)."""

    name = "envoy"
    start_timeout = 60.0
    log_mode = "ab"

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
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(log_path, cwd=cwd or config.parent, env=dict(env or {}))
        self.config = config
        self.admin_port = admin_port
        self.concurrency = concurrency
        self.extra_args = list(extra_args)
        self.listener_ports = dict(listener_ports or {})

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

    def is_ready(self) -> bool:
        try:
            status, body = http_get(self.admin_url + "/ready", timeout=1.0)
        except OSError:
            return False
        return status == 200 and body.strip() == "LIVE"

    def waiting_for(self) -> str:
        return f"envoy /ready; log:\n{log_tail(self.log_path)}"

    def exit_error(self) -> HarnessError:
        return HarnessError(
            f"envoy exited with {self.proc.returncode} before becoming ready; "
            f"log {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def wait_ready(self, timeout: float) -> None:
        super().wait_ready(timeout)
        for lname, port in self.listener_ports.items():
            wait_for(lambda: port_open(port), 10, 0.05, f"listener {lname} on {port}")

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


def config_names(source: Path | str) -> tuple[list[str], list[str]]:
    """(listener names, cluster names) of an envoy/*.yaml."""
    cfg = yaml.safe_load(Path(source).read_text())
    statics = cfg.get("static_resources", {})
    return [l["name"] for l in statics.get("listeners", [])], [c["name"] for c in statics.get("clusters", [])]


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


def rename_cluster(cfg: dict, old: str, new: str) -> None:
    """Renames a static cluster of a parsed configuration (and its load assignment)."""
    for c in cfg["static_resources"]["clusters"]:
        if c["name"] == old:
            c["name"] = new
            if "load_assignment" in c:
                c["load_assignment"]["cluster_name"] = new
            return
    raise HarnessError(f"no cluster named {old!r}")
