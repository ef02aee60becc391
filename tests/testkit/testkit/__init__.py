"""meshaudit's test kit: what the end-to-end suites (tests/e2e), the benchmark (benches/harness)
and the examples (examples/) use to run real parts: Envoy and Rotel from the project virtualenv,
generated certificates, the built filter, servers standing in for the application and the
collector. Every socket binds 127.0.0.1 on a free port; waiting is polling against a deadline.

Installed (editable) into the project virtualenv by `make venv`. Modules by concern; every public
name is also here, so `import testkit` / `from testkit import Stack, running, metric` do:

  core        the repository, HarnessError, free ports, waiting
  binaries    envoy, rotel, otelcol, the built filter
  processes   the Process base class, stopping, pytest fixtures
  pki         certificates
  envoy       Envoy configurations, the Envoy process, runs that must fail
  metrics     Envoy statistics
  otlp        Rotel's printout of OTLP log records
  collectors  Rotel, the OpenTelemetry Collector, a collector that never answers
  servers     the application, a JSON-lines sink, a TCP echo server
  client      HTTP(S) and TLS clients
  canaries    made-up secrets and the leak search
  stack       application + Envoy(meshaudit) + collector
  istio       WasmPlugin / TrafficExtension rendering, an Istio-shaped sidecar over ECDS
  istio_schema  the manifests checked against the CRD schemas (not re-exported here: import
              testkit.istio_schema; needs jsonschema)
  clickhouse  a ClickHouse server
"""

# the repository, HarnessError, free ports, waiting
from .core import (
    ENVOY_DIR, free_port, HarnessError, http_get, listening_socket, port_open, REPO, wait_for,
)

# envoy, rotel, otelcol, the built filter
from .binaries import (
    envoy_bin, otelcol_bin, require_wasm, rotel_bin, venv_dir, venv_python, wasm_path, WASM_REL,
)

# the Process base class, stopping, pytest fixtures
from .processes import (
    log_tail, Process, running, stop_all, stop_process,
)

# certificates
from .pki import (
    Cert, make_pki, Pki, SERVER_DNS, SERVER_SPIFFE, TRUST_DOMAIN,
)

# Envoy configurations, the Envoy process, runs that must fail
from .envoy import (
    COLLECTOR_CLUSTER, config_names, deep_merge, DELETE, EDGE, edge_envoy, Envoy,
    envoy_refusing, HTTP2_CLUSTER_PATCH, meshaudit_filters, move_filters_to_access_log,
    patch_cluster, plugin_config_of, rename_cluster, render_envoy, render_sidecar_alone,
    ROOT_ID, run_envoy_validate, SIDECAR, walk, WASM_ACCESS_LOGGER, WASM_FILTER,
    WASM_NETWORK_FILTER,
)

# Envoy statistics
from .metrics import (
    GaugeSampler, meshaudit_stat, meshaudit_stats, metric, parse_stats, wait_meshaudit_stats,
)

# Rotel's printout of OTLP log records
from .otlp import (
    LogRecord, parse_rotel_log, parse_value, same_value,
)

# Rotel, the OpenTelemetry Collector, a collector that never answers
from .collectors import (
    ForwardingRotel, HangingCollectorStandIn, OtelCollector, RestartableRotel, Rotel,
)

# the application, a JSON-lines sink, a TCP echo server
from .servers import (
    EchoConnection, HttpServerThread, JsonLinesSink, OtlpFileStore, ReceivedRequest, RecordingHandler,
    RecordingServer, TcpEchoServer, upstream_server, UpstreamHandler,
)

# HTTP(S) and TLS clients
from .client import (
    echo_roundtrip, read_until_eof, recv_exactly, request, Response, tls_connect, tls_context,
    tls_wrap, TlsClient,
)

# made-up secrets and the leak search
from .canaries import (
    b64url, card_number, de_iban, encodings, leak_sites, leaks, luhn_valid, MASK, pct_all,
    rules_of, windows,
)

# application + Envoy(meshaudit) + collector
from .stack import (
    JSON_SINK_AUTHORITY, loaded_as, only, sidecar_stack, Stack, TEST_PLUGIN_CONFIG,
)

# WasmPlugin / TrafficExtension rendering, an Istio-shaped sidecar over ECDS
from .istio import (
    go_json_number, go_json_string, istio_agent_rewrite, ISTIO_COLLECTOR_CLUSTER, ISTIO_DIR,
    istio_ecds_filter, istio_ecds_response, ISTIO_FAILURE_POLICY, ISTIO_HTTP_SIDECAR,
    istio_manifest, istio_manifests, ISTIO_META_PREFIX, istio_plugin, ISTIO_RBAC_HTTP_TYPE,
    ISTIO_RBAC_NETWORK_TYPE, ISTIO_STRING_VALUE, istio_struct_json, ISTIO_TCP_SIDECAR,
    ISTIO_TYPED_EXTENSION_CONFIG, ISTIO_WASM_HTTP_TYPE, ISTIO_WASM_NETWORK_TYPE,
    istiod_wasm_filter, IstioPlugin, IstioSidecar, PEER_METADATA_HEADER, peer_metadata_header,
    write_xds_file,
)

# JSON Web Tokens the tests sign
from .tokens import JwtIssuer
from .guards import GUARD_AUDIENCE, RefusingAuthz, access_guards

# a ClickHouse server
from .clickhouse import (
    ClickHouse, clickhouse_server_bin,
)

__all__ = [
    "ENVOY_DIR", "free_port", "HarnessError", "http_get", "listening_socket", "port_open",
    "REPO", "wait_for",
    "envoy_bin", "otelcol_bin", "require_wasm", "rotel_bin", "venv_dir", "venv_python",
    "wasm_path", "WASM_REL", "log_tail", "Process", "running", "stop_all", "stop_process",
    "Cert", "make_pki", "Pki", "SERVER_DNS", "SERVER_SPIFFE", "TRUST_DOMAIN",
    "COLLECTOR_CLUSTER", "config_names", "deep_merge", "DELETE", "EDGE", "edge_envoy", "Envoy",
    "envoy_refusing", "HTTP2_CLUSTER_PATCH", "meshaudit_filters", "move_filters_to_access_log",
    "patch_cluster", "plugin_config_of", "rename_cluster", "render_envoy",
    "render_sidecar_alone", "ROOT_ID", "run_envoy_validate", "SIDECAR", "walk",
    "WASM_ACCESS_LOGGER", "WASM_FILTER", "WASM_NETWORK_FILTER", "GaugeSampler", "metric",
    "parse_stats", "LogRecord", "parse_rotel_log", "parse_value", "HangingCollectorStandIn",
    "ForwardingRotel", "OtelCollector", "RestartableRotel", "Rotel", "EchoConnection", "HttpServerThread",
    "JsonLinesSink", "OtlpFileStore", "ReceivedRequest", "RecordingHandler", "RecordingServer", "TcpEchoServer",
    "upstream_server", "UpstreamHandler", "echo_roundtrip", "read_until_eof", "recv_exactly",
    "request", "Response", "tls_connect", "tls_context", "tls_wrap", "TlsClient", "b64url",
    "card_number", "de_iban", "encodings", "leak_sites", "leaks", "luhn_valid", "MASK",
    "pct_all", "rules_of", "windows", "JSON_SINK_AUTHORITY", "loaded_as", "only", "sidecar_stack", "Stack", "TEST_PLUGIN_CONFIG",
    "go_json_number", "go_json_string", "istio_agent_rewrite", "ISTIO_COLLECTOR_CLUSTER",
    "ISTIO_DIR", "istio_ecds_filter", "istio_ecds_response", "ISTIO_FAILURE_POLICY",
    "ISTIO_HTTP_SIDECAR", "istio_manifest", "istio_manifests", "ISTIO_META_PREFIX",
    "istio_plugin", "ISTIO_RBAC_HTTP_TYPE", "ISTIO_RBAC_NETWORK_TYPE", "ISTIO_STRING_VALUE",
    "istio_struct_json", "ISTIO_TCP_SIDECAR", "ISTIO_TYPED_EXTENSION_CONFIG",
    "ISTIO_WASM_HTTP_TYPE", "ISTIO_WASM_NETWORK_TYPE", "istiod_wasm_filter", "IstioPlugin",
    "IstioSidecar", "PEER_METADATA_HEADER", "peer_metadata_header", "write_xds_file", "JwtIssuer", "ClickHouse", "clickhouse_server_bin",
    "access_guards", "GUARD_AUDIENCE", "RefusingAuthz",
]
