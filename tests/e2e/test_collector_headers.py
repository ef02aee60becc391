"""`collector.headers`: credentials a collector or gateway requires, sent with every export,
each value from the proxy's environment (docs/configuration.md).

A real Envoy stands as the authenticating gateway in front of the real Rotel collector: it
forwards an export only when its `authorization` header is exactly `Bearer <token>` (a token
made up per run) and answers anything else with 401. The token reaches meshaudit only through
the VM's environment, so the events arriving at Rotel prove the header was sent with the value
of the variable; the token appears in no event, log line or refusal.
"""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path

import yaml

import testkit
from testkit import Envoy, Stack, free_port, metric

TOKEN = "tok-" + secrets.token_hex(12)


def gateway_config(workdir: Path, *, admin_port: int, port: int, collector_port: int) -> Path:
    """An Envoy that forwards to the collector only requests carrying `Bearer TOKEN`."""
    route_to_collector = {
        "match": {
            "prefix": "/",
            "headers": [{"name": "authorization", "string_match": {"exact": f"Bearer {TOKEN}"}}],
        },
        "route": {"cluster": "collector"},
    }
    refuse = {"match": {"prefix": "/"}, "direct_response": {"status": 401}}
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "gateway",
        "route_config": {"virtual_hosts": [{"name": "gw", "domains": ["*"], "routes": [route_to_collector, refuse]}]},
        "http_filters": [
            {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
        ],
    }
    cfg = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "gateway",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
                }
            ],
            "clusters": [
                {
                    "name": "collector",
                    "type": "STATIC",
                    "load_assignment": {
                        "cluster_name": "collector",
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": collector_port}}}}]}],
                    },
                }
            ],
        },
    }
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@contextlib.contextmanager
def stack_behind_gateway(workdir: Path, wasm, pki, vm_env: dict[str, str]):
    """meshaudit exporting through the gateway, with `authorization` from COLLECTOR_TOKEN."""
    gateways: list[Envoy] = []

    def front(collector_port: int) -> int:
        port, admin = free_port(), free_port()
        config = gateway_config(workdir, admin_port=admin, port=port, collector_port=collector_port)
        gateways.append(Envoy(config, admin, workdir / "gateway.log", listener_ports={"gateway": port}).start())
        return port

    plugin = {"collector": {"headers": {"authorization": "COLLECTOR_TOKEN"}}, "flush_interval_ms": 100}
    stack = Stack(
        workdir, kind=testkit.SIDECAR, wasm=wasm, pki=pki, plugin_config_overrides=plugin, vm_env=vm_env, collector_front=front
    )
    try:
        with stack:
            yield stack
    finally:
        for g in gateways:
            g.stop()


def test_exports_carry_the_header_from_the_environment(tmp_path, wasm, pki):
    with stack_behind_gateway(tmp_path, wasm, pki, {"COLLECTOR_TOKEN": f"Bearer {TOKEN}"}) as stack:
        for i in range(3):
            assert stack.request(f"/creds/{i}").status == 200
        got = stack.wait_records(lambda r: (r.attr("url.path") or "").startswith("/creds/"), 3, what="events through the gateway")
        assert len(got) == 3
        testkit.wait_for(lambda: metric(stack.envoy.all_stats(), "events_sent") >= 3, 15, 0.1, "events_sent to count them")
        assert TOKEN not in stack.rotel.raw()
        assert TOKEN not in stack.envoy.log_text()


def test_a_wrong_value_is_refused_by_the_gateway_not_by_meshaudit(tmp_path, wasm, pki):
    """The control: the same stack with another token in the environment gets 401s, so the
    first test passes only because the header carried the right value."""
    with stack_behind_gateway(tmp_path, wasm, pki, {"COLLECTOR_TOKEN": "Bearer not-the-token"}) as stack:
        assert stack.request("/creds/wrong").status == 200
        testkit.wait_for(
            lambda: metric(stack.envoy.all_stats(), "batches_failed") >= 1,
            20,
            0.1,
            "an export refused by the gateway",
        )
        assert not [r for r in stack.records() if r.attr("url.path") == "/creds/wrong"]


def test_an_unset_variable_is_refused_at_load_naming_the_header(tmp_path, wasm, pki):
    plugin = {"collector": {"headers": {"authorization": "COLLECTOR_TOKEN"}}}
    config, listener_port = testkit.render_sidecar_alone(tmp_path, wasm, pki, plugin)
    rc, log = testkit.envoy_refusing(config, listener_port, tmp_path / "envoy.log")
    assert rc != 0, log[-2000:]
    lines = [l for l in log.splitlines() if "meshaudit: invalid configuration: " in l]
    assert len(lines) == 1, log[-3000:]
    assert "collector.headers.authorization" in lines[0], lines[0]
    assert '"COLLECTOR_TOKEN" is not set' in lines[0], lines[0]
