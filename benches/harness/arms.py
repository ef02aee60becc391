"""The arms of the side-by-side benchmark and the Envoy configurations they run.

Every proxy under test is envoy/sidecar.yaml (the Istio-sidecar-shaped inbound listener with an
mTLS and a plaintext filter chain), rendered by the test kit's `render_envoy` (127.0.0.1,
free ports, absolute paths), then changed only in what the arm is about:

- no audit logging: the meshaudit filter removed (`drop_wasm`);
- Envoy's file access log: no meshaudit, an `envoy.access_loggers.file` JSON log with the same
  fields meshaudit records (ACCESS_LOG_FIELDS) on every HTTP connection manager;
- Envoy's file access log shipped: the same file log, tailed by a node agent (the OpenTelemetry
  Collector's `filelog` receiver, parsing each line and forwarding OTLP/HTTP to a Rotel
  collector), as Filebeat, Fluent Bit or Promtail would: the proxy's cost plus the agent's is
  what a node pays (`shipper_config`);
- Envoy's OpenTelemetry access logger: no meshaudit, `envoy.access_loggers.open_telemetry`
  over gRPC (an HTTP/2 cluster) to a Rotel collector, with the same fields as attributes;
- meshaudit: the filter with the configuration sidecar.yaml ships (the defaults), or another
  plugin configuration (heavy, minimal); or the same module and defaults loaded as an access
  logger (`envoy.access_loggers.wasm`) instead of an HTTP filter.

The application behind every proxy is one "upstream" Envoy with direct_response routes (see
`upstream_config`), so it is never the bottleneck.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import testkit

LISTENER = testkit.SIDECAR["listener"]  # virtualInbound
APP_CLUSTER = testkit.SIDECAR["app_cluster"]  # inbound|8080||
COLLECTOR_CLUSTER = testkit.COLLECTOR_CLUSTER  # meshaudit_collector
OTEL_CLUSTER = "otel_access_log"
HCM_STAT_PREFIX = "inbound_0.0.0.0_8080"

# The request every GET arm sends (small; the route is the sidecar's default route).
GET_PATH = "/api/v1/orders/12345?page=2&sort=desc"
# The heavy arm's captured route and its 4 KB JSON body (built by `heavy_body`).
POST_PATH = "/v1/payments/pay_8d1f0c2a"
BODY_BYTES = 4096

# The ~20 fields meshaudit records, as Envoy access-log command operators. The same list is the
# JSON object of the file access log and the attributes of the OpenTelemetry access log.
ACCESS_LOG_FIELDS: dict[str, str] = {
    "time": "%START_TIME%",
    "http.request.method": "%REQ(:METHOD)%",
    "url.scheme": "%REQ(:SCHEME)%",
    "url.path": "%REQ(:PATH)%",
    "server.address": "%REQ(:AUTHORITY)%",
    "network.protocol": "%PROTOCOL%",
    "user_agent.original": "%REQ(USER-AGENT)%",
    "http.response.status_code": "%RESPONSE_CODE%",
    "http.request.body.size": "%BYTES_RECEIVED%",
    "http.response.body.size": "%BYTES_SENT%",
    "http.request.header_bytes": "%REQUEST_HEADERS_BYTES%",
    "http.response.header_bytes": "%RESPONSE_HEADERS_BYTES%",
    "network.peer.address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "network.local.address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "tls.protocol.version": "%DOWNSTREAM_TLS_VERSION%",
    "meshaudit.tls.server_name": "%REQUESTED_SERVER_NAME%",
    "peer.subject": "%DOWNSTREAM_PEER_SUBJECT%",
    "peer.uri_san": "%DOWNSTREAM_PEER_URI_SAN%",
    "peer.sha256": "%DOWNSTREAM_PEER_FINGERPRINT_256%",
    "request.id": "%REQ(X-REQUEST-ID)%",
    "duration_ms": "%DURATION%",
    "envoy.response_flags": "%RESPONSE_FLAGS%",
    "envoy.response_code_details": "%RESPONSE_CODE_DETAILS%",
    "envoy.route_name": "%ROUTE_NAME%",
    "envoy.upstream_cluster": "%UPSTREAM_CLUSTER%",
    "upstream.address": "%UPSTREAM_HOST%",
    "http.request.header.content-type": "%REQ(CONTENT-TYPE)%",
    "http.request.header.x-forwarded-proto": "%REQ(X-FORWARDED-PROTO)%",
    "http.response.header.content-type": "%RESP(CONTENT-TYPE)%",
    "traceparent": "%REQ(TRACEPARENT)%",
}

# 20 user regex detectors (Rust regex syntax): vendor token shapes a payments team would add.
CUSTOM_DETECTORS = [
    ("merchant-secret", r"msk_(live|test)_[A-Za-z0-9]{24}"),
    ("stripe-secret", r"sk_(live|test)_[0-9A-Za-z]{24,99}"),
    ("stripe-restricted", r"rk_(live|test)_[0-9A-Za-z]{24,99}"),
    ("github-pat", r"ghp_[A-Za-z0-9]{36}"),
    ("github-oauth", r"gho_[A-Za-z0-9]{36}"),
    ("gitlab-pat", r"glpat-[0-9A-Za-z_-]{20}"),
    ("slack-token", r"xox[baprs]-[0-9A-Za-z-]{10,48}"),
    ("slack-webhook", r"hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+"),
    ("google-api-key", r"AIza[0-9A-Za-z_-]{35}"),
    ("twilio-key", r"SK[0-9a-fA-F]{32}"),
    ("sendgrid-key", r"SG\.[0-9A-Za-z_-]{22}\.[0-9A-Za-z_-]{43}"),
    ("mailgun-key", r"key-[0-9a-zA-Z]{32}"),
    ("npm-token", r"npm_[A-Za-z0-9]{36}"),
    ("pypi-token", r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}"),
    ("azure-sas", r"sig=[A-Za-z0-9%]{43,}"),
    ("heroku-key", r"[hH]eroku[a-zA-Z_ -]{0,20}[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
    ("uk-nino", r"\b[A-CEGHJ-PR-TW-Z]{2}[0-9]{6}[A-D]\b"),
    ("phone-e164", r"\+[1-9][0-9]{9,14}\b"),
    ("ipv4-private", r"\b10\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\b"),
    ("customer-ref", r"\bcus_[A-Za-z0-9]{14}\b"),
]

HEAVY_PLUGIN_CONFIG: dict[str, Any] = {
    "collector": {"cluster": COLLECTOR_CLUSTER, "authority": "otel-collector", "path": "/v1/logs"},
    "request_headers": ["content-type", "x-forwarded-proto", "authorization", "x-customer-id"],
    "response_headers": ["content-type"],
    "body_capture": [
        {"match": {"path_prefix": "/v1/payments", "method": "POST"}, "max_bytes": BODY_BYTES},
    ],
    "redaction": {
        "detectors": {"email": {"action": "partial", "keep": 6}},
        "custom_detectors": [{"name": n, "pattern": p} for n, p in CUSTOM_DETECTORS],
        "rules": [
            {"name": "customer-id", "headers": ["x-customer-id"], "action": "truncate", "keep": 4},
            {
                "name": "card-fields",
                "match": {"path_prefix": "/v1/payments"},
                "json": ["$.card.number", "$.card.cvc", "$..iban"],
                "action": "partial",
                "keep": 4,
            },
            {"name": "card-holder", "json": ["$.card.holder", "$.billing.*"], "action": "remove"},
            {"name": "item-tokens", "json": ["$.items[*].token"], "action": "mask"},
            {"name": "payment-path", "path": ["/v1/payments/{payment}"], "action": "truncate", "keep": 6},
            {"name": "user-path", "path": ["/v1/users/{user}/cards/{card}"], "action": "mask"},
        ],
    },
}

# Diagnostic: meshaudit doing the least it can per request: no header allowlist, no default rule,
# every detector off. What is left is the host calls, event building, encoding and batching.
MINIMAL_PLUGIN_CONFIG: dict[str, Any] = {
    "request_headers": [],
    "response_headers": [],
    "redaction": {
        "defaults": False,
        "detectors": {d: False for d in ("card", "jwt", "bearer", "basic", "aws_key", "private_key", "email", "ssn", "iban")},
    },
}


# Diagnostic: the default configuration with redaction switched off (no default rule, every
# detector off), to measure what redaction costs side by side with `meshaudit_default`.
NO_REDACTION_PLUGIN_CONFIG: dict[str, Any] = {"redaction": MINIMAL_PLUGIN_CONFIG["redaction"]}


def heavy_body(size: int = BODY_BYTES) -> bytes:
    """A JSON payment request of exactly `size` bytes (padded in `items[].description`), with
    fields the rules and detectors act on."""
    doc: dict[str, Any] = {
        "amount": 12999,
        "currency": "EUR",
        "customer": "cus_A1b2C3d4E5f6G7",
        "email": "alice.smith@example.com",
        "phone": "+442071838750",
        "card": {"number": "4111 1111 1111 1111", "cvc": "123", "holder": "Alice Smith", "exp": "12/29"},
        "billing": {"line1": "1 Main Street", "city": "London", "postcode": "SW1A 1AA"},
        "iban": "GB82WEST12345698765432",
        "merchant_key": "msk_live_abcdefghijklmnopqrstuvwx",
        "password": "hunter2-but-longer",
        "items": [],
    }
    i = 0
    while True:
        doc["items"].append(
            {"sku": f"SKU-{i:05d}", "qty": 1 + i % 3, "price": 999 + i, "token": f"tok_{i:08x}",
             "description": "A perfectly ordinary line item in an order"}
        )
        raw = json.dumps(doc, separators=(",", ":"))
        if len(raw) >= size - 200:
            break
        i += 1
    pad = size - len(json.dumps(doc, separators=(",", ":")))
    doc["note"] = ""
    pad -= len(',"note":""')
    doc["note"] = "x" * max(pad, 0)
    out = json.dumps(doc, separators=(",", ":")).encode()
    assert len(out) == size, (len(out), size)
    return out


@dataclass
class Arm:
    name: str
    label: str  # shown in the table
    kind: str  # plain | file | otel | meshaudit | probe (benches/harness/probe-filter)
    mtls: bool = False
    post: bool = False  # POST a 4 KB JSON body to POST_PATH instead of GET GET_PATH
    plugin_config: dict | None = None  # meshaudit: None = sidecar.yaml's own configuration
    baseline: str = "plain"  # the no-logging arm its ratios are taken against
    diagnostic: bool = False
    probe_mode: str | None = None  # probe: "noop", "hostcalls" or "cel"
    access_log: bool = False  # meshaudit loaded as an access logger, not as an HTTP filter
    shipper: bool = False  # file: a node agent tails the log and forwards it (shipper_config)
    notes: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def collector(self) -> str | None:
        """Where its events go: 'rotel' (meshaudit, otel, a shipped file log), 'file', or None."""
        if self.shipper:
            return "rotel"
        return {"meshaudit": "rotel", "otel": "rotel", "file": "file"}.get(self.kind)


ARMS: list[Arm] = [
    Arm("plain", "no audit logging", "plain"),
    Arm("file_json", "Envoy file access log (JSON)", "file"),
    Arm("file_json_shipped", "Envoy file access log (JSON) + node agent (OTel Collector filelog -> OTLP)", "file",
        shipper=True),
    Arm("otel_grpc", "Envoy OpenTelemetry access log (gRPC)", "otel"),
    Arm("meshaudit_default", "meshaudit, default config", "meshaudit"),
    Arm("meshaudit_log", "meshaudit as an access logger, default config", "meshaudit",
        plugin_config={"mode": "access_log"}, access_log=True),
    # Diagnostics, all loaded as access loggers like `meshaudit_log`: the steps of report.BREAKDOWN.
    Arm(
        "meshaudit_minimal",
        "meshaudit as an access logger, no redaction, no headers (diagnostic)",
        "meshaudit",
        plugin_config={**MINIMAL_PLUGIN_CONFIG, "mode": "access_log"},
        access_log=True,
        diagnostic=True,
    ),
    Arm(
        "meshaudit_noredact",
        "meshaudit as an access logger, default config with redaction off (diagnostic)",
        "meshaudit",
        plugin_config={**NO_REDACTION_PLUGIN_CONFIG, "mode": "access_log"},
        access_log=True,
        diagnostic=True,
    ),
    # What the chain costs in Envoy: side by side with `meshaudit_default` (bench.TOGETHER).
    Arm(
        "meshaudit_nointegrity",
        "meshaudit, default config with integrity off (diagnostic)",
        "meshaudit",
        plugin_config={"integrity": {"enabled": False}},
        diagnostic=True,
    ),
    # Another build of the module (bench.py --baseline-wasm), default configuration: side by side
    # with `meshaudit_default`, what a change costs (only run when a baseline module is given).
    Arm(
        "meshaudit_baseline",
        "meshaudit, default config, the baseline module of --baseline-wasm (diagnostic)",
        "meshaudit",
        diagnostic=True,
    ),
    Arm("wasm_noop", "Wasm probe as an access logger: does nothing (diagnostic)", "probe", probe_mode="noop",
        access_log=True, diagnostic=True),
    Arm("wasm_noop_filter", "Wasm probe as an HTTP filter: does nothing (diagnostic)", "probe", probe_mode="noop",
        diagnostic=True),
    Arm("wasm_hostcalls", "Wasm probe as an access logger: 16 attributes one by one + 2 header maps (diagnostic)",
        "probe", probe_mode="hostcalls", access_log=True, diagnostic=True),
    Arm("wasm_cel", "Wasm probe as an access logger: the same attributes as one CEL list + 2 header maps (diagnostic)",
        "probe", probe_mode="cel", access_log=True, diagnostic=True),
    Arm("plain_post", "no audit logging, POST 4 KB JSON", "plain", post=True, baseline="plain_post"),
    Arm(
        "meshaudit_heavy",
        "meshaudit, heavy config, POST 4 KB JSON",
        "meshaudit",
        post=True,
        plugin_config=HEAVY_PLUGIN_CONFIG,
        baseline="plain_post",
    ),
    Arm("plain_mtls", "no audit logging, mTLS", "plain", mtls=True, baseline="plain_mtls"),
    Arm("meshaudit_default_mtls", "meshaudit, default config, mTLS", "meshaudit", mtls=True, baseline="plain_mtls"),
]
ARMS_BY_NAME = {a.name: a for a in ARMS}


# --------------------------------------------------------------------------------------------
# Envoy configurations
# --------------------------------------------------------------------------------------------


def _hcms(cfg: dict) -> list[dict]:
    out = []
    for node in testkit.walk(cfg):
        if isinstance(node, dict) and node.get("name") == "envoy.filters.network.http_connection_manager":
            out.append(node["typed_config"])
    return out


def _static_cluster(name: str, port: int, http2: bool = False) -> dict:
    c: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}],
        },
    }
    if http2:
        c["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return c


def file_access_log(path: Path) -> dict:
    return {
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": str(path),
            "log_format": {"json_format": dict(ACCESS_LOG_FIELDS)},
        },
    }


def shipper_config(access_log: Path, rotel_http_port: int) -> dict:
    """The node agent of `file_json_shipped`: the OpenTelemetry Collector's `filelog` receiver
    tails the JSON access log from its start, parses each line into attributes (its `time` the
    record's timestamp), batches, and sends OTLP/HTTP protobuf to the arm's Rotel, as
    examples/collector/node-agent.yaml does for meshaudit's own log lines."""
    return {
        "receivers": {
            "filelog": {
                "include": [str(access_log)],
                "start_at": "beginning",
                "operators": [
                    {
                        "type": "json_parser",
                        "parse_to": "attributes",
                        "timestamp": {
                            "parse_from": "attributes.time",
                            "layout_type": "gotime",
                            "layout": "2006-01-02T15:04:05.999999999Z07:00",
                        },
                    },
                ],
            }
        },
        "processors": {"batch": {}},
        "exporters": {
            "otlphttp": {
                "endpoint": f"http://127.0.0.1:{rotel_http_port}",
                "encoding": "proto",
                "compression": "none",
            }
        },
        "service": {
            "telemetry": {"metrics": {"level": "none"}},
            "pipelines": {"logs": {"receivers": ["filelog"], "processors": ["batch"], "exporters": ["otlphttp"]}},
        },
    }


def otel_access_log() -> dict:
    return {
        "name": "envoy.access_loggers.open_telemetry",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig",
            "log_name": "audit",
            "grpc_service": {"envoy_grpc": {"cluster_name": OTEL_CLUSTER}},
            "body": {"string_value": "%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE%"},
            "attributes": {
                "values": [{"key": k, "value": {"string_value": v}} for k, v in ACCESS_LOG_FIELDS.items() if k != "time"]
            },
        },
    }


def proxy_config(
    arm: Arm,
    workdir: Path,
    *,
    admin_port: int,
    listener_port: int,
    upstream_port: int,
    collector_port: int | None,
    wasm: Path,
    certs_dir: Path,
    probe_wasm: Path | None = None,
) -> Path:
    """envoy/sidecar.yaml rendered for one arm; returns the path of the YAML written."""
    drop = arm.kind not in ("meshaudit", "probe")
    # A plugin configuration is merged over the one sidecar.yaml ships (lists replace lists).
    overrides = arm.plugin_config if arm.kind == "meshaudit" else None
    replace = None
    if arm.kind == "probe":
        if probe_wasm is None:
            raise testkit.HarnessError(f"arm {arm.name} needs the probe filter (benches/harness/probe-filter)")
        wasm, replace = probe_wasm, arm.probe_mode
    dummy_collector = collector_port if (arm.kind == "meshaudit" and collector_port) else testkit.free_port()
    config = testkit.render_envoy(
        testkit.ENVOY_DIR / testkit.SIDECAR["yaml"],
        workdir,
        admin_port=admin_port,
        listener_ports={LISTENER: listener_port},
        cluster_overrides={APP_CLUSTER: upstream_port, COLLECTOR_CLUSTER: dummy_collector},
        wasm=wasm,
        certs_dir=certs_dir,
        plugin_config_overrides=overrides,
        plugin_config_replace=replace,
        drop_wasm=drop,
        access_log=arm.access_log,
        name=f"proxy-{arm.name}.yaml",
    )
    cfg = yaml.safe_load(config.read_text())
    clusters = cfg["static_resources"]["clusters"]
    if arm.kind != "meshaudit":
        # Nothing sends to the meshaudit collector cluster without meshaudit: leave it out.
        clusters[:] = [c for c in clusters if c["name"] != COLLECTOR_CLUSTER]
    if arm.kind == "file":
        for hcm in _hcms(cfg):
            hcm["access_log"] = [file_access_log(workdir / f"access-{arm.name}.log")]
    elif arm.kind == "otel":
        if collector_port is None:
            raise testkit.HarnessError("the OpenTelemetry arm needs a collector gRPC port")
        clusters.append(_static_cluster(OTEL_CLUSTER, collector_port, http2=True))
        for hcm in _hcms(cfg):
            hcm["access_log"] = [otel_access_log()]
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return config


def upstream_config(workdir: Path, *, admin_port: int, port: int) -> Path:
    """The application: an Envoy answering from direct_response routes. GET: a short text body;
    POST on /v1/payments: a short JSON body, after reading the whole request body (buffer filter),
    so HTTP/1.1 keep-alive holds."""
    cfg = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "app",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": "app",
                                        "codec_type": "AUTO",
                                        "generate_request_id": False,
                                        "route_config": {
                                            "name": "app",
                                            "virtual_hosts": [
                                                {
                                                    "name": "app",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {"prefix": "/v1/payments"},
                                                            "direct_response": {
                                                                "status": 200,
                                                                "body": {"inline_string": '{"id":"pay_8d1f0c2a","status":"accepted"}'},
                                                            },
                                                            "response_headers_to_add": [
                                                                {"header": {"key": "content-type", "value": "application/json"},
                                                                 "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                                                            ],
                                                        },
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
                                                            "response_headers_to_add": [
                                                                {"header": {"key": "content-type", "value": "text/plain"},
                                                                 "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                                                            ],
                                                        },
                                                    ],
                                                }
                                            ],
                                        },
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.buffer",
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                                                    "max_request_bytes": 1048576,
                                                },
                                            },
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                                            },
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ]
        },
    }
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "upstream.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def tls_front_config(workdir: Path, *, admin_port: int, port: int, upstream_port: int, cert: Path, key: Path) -> Path:
    """For load generators without client certificates (wrk): a TLS-originating Envoy, plaintext
    on `port`, `tcp_proxy` to the mTLS proxy on `upstream_port` presenting the client certificate
    (the server's is not checked, as `oha --insecure`). Each downstream connection gets one
    upstream TLS connection of its own, so the proxy sees as many keep-alive mTLS connections
    as the load generator opens."""
    cfg = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{
                "name": "front",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.tcp_proxy",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                        "stat_prefix": "front",
                        "cluster": "proxy",
                    },
                }]}],
            }],
            "clusters": [{
                "name": "proxy",
                "type": "STATIC",
                "connect_timeout": "5s",
                "load_assignment": {"cluster_name": "proxy", "endpoints": [{"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream_port}}}}]}]},
                "transport_socket": {
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                        "common_tls_context": {
                            "alpn_protocols": ["http/1.1"],
                            "tls_certificates": [{"certificate_chain": {"filename": str(cert)},
                                                  "private_key": {"filename": str(key)}}],
                        },
                    },
                },
            }],
        },
    }
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / f"tls-front-{upstream_port}.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out
