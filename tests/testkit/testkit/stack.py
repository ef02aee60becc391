"""Whole stacks: an application, one Envoy running meshaudit in front of it, and a collector
(Rotel, or a JSON-lines sink); the plugin configuration the suites run with."""

from __future__ import annotations

import contextlib

import socket
import threading
from pathlib import Path
from typing import Callable, Mapping

from .client import Response, TlsClient, read_until_eof, request
from .collectors import ForwardingRotel, Rotel
from .core import ENVOY_DIR, HarnessError, free_port, wait_for
from .envoy import COLLECTOR_CLUSTER, SIDECAR, Envoy, render_envoy
from .metrics import metric
from .otlp import LogRecord
from .pki import SERVER_DNS, Cert, Pki
from .processes import log_tail, running, stop_all
from .servers import HttpServerThread, JsonLinesSink, upstream_server

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

def only(records: list, what: str):
    """The one record of `records` (about `what`), failing the test unless there is exactly one."""
    assert len(records) == 1, f"expected exactly one event for {what}, got {len(records)}: {records}"
    return records[0]


def loaded_as(form: str, plugin_config: Mapping | None = None) -> dict:
    """`Stack` arguments for meshaudit loaded as the HTTP filter (`form` "filter") or as an
    access logger ("access_log"): TEST_PLUGIN_CONFIG, then `plugin_config`, and the mode."""
    mode = "http" if form == "filter" else "access_log"
    return {
        "plugin_config_overrides": {**TEST_PLUGIN_CONFIG, **(plugin_config or {}), "mode": mode},
        "access_log": form == "access_log",
    }


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
        collector_front: Callable[[int], int] | None = None,
        config_patch: Callable[[dict], None] | None = None,
        rotel_next_hop: int | None = None,
    ) -> None:
        self.workdir = workdir
        # Rotel forwards what it receives there (OTLP/HTTP, a port on 127.0.0.1), e.g. to an
        # OtlpFileStore; otherwise it drops it after its debug log.
        self.rotel_next_hop = rotel_next_hop
        # Something between meshaudit and the collector (a gateway): given the collector's
        # port, starts it and returns the port meshaudit sends to. The caller stops it.
        self.collector_front = collector_front
        # Changes to Envoy's configuration of the test's own (render_envoy's `config_patch`).
        self.config_patch = config_patch
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
                self.rotel = (Rotel(self.workdir) if self.rotel_next_hop is None
                              else ForwardingRotel(self.workdir, self.rotel_next_hop)).start()
                collector_port = self.rotel.http_port
            elif self.collector_kind == "json":
                self.sink = JsonLinesSink(self.workdir / "sink.ndjson").start()
                collector_port = self.sink.port
            else:
                raise HarnessError(f"unknown collector kind {self.collector_kind!r}")
            if self.collector_front:
                collector_port = self.collector_front(collector_port)
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
                config_patch=self.config_patch,
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
            f"{self._safe_stats()}\nenvoy log tail:\n{log_tail(self.envoy.log_path, 30) if self.envoy else ''}",
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


@contextlib.contextmanager
def sidecar_stack(workdir: Path, wasm: Path, pki: Pki, plugin_config: Mapping):
    """A running `envoy/sidecar.yaml` stack (plaintext and mTLS chains, Rotel) with meshaudit
    configured by `plugin_config` over the test defaults: a module fixture's whole body."""
    stack = Stack(workdir, kind=SIDECAR, wasm=wasm, pki=pki, plugin_config_overrides=plugin_config)
    with running(stack):
        yield stack
