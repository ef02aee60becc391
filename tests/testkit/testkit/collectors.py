"""Collectors the filter ships to: Rotel (PyPI `rotel`) printing every log record it receives,
a Rotel that goes down and comes back on the same ports, the OpenTelemetry Collector (contrib),
and a stand-in that accepts connections and never answers."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Mapping

import yaml

from .binaries import otelcol_bin, rotel_bin
from .core import HarnessError, free_port, listening_socket, port_open, wait_for
from .otlp import LogRecord, parse_rotel_log
from .processes import Process


class Rotel(Process):
    """The Rotel collector with a blackhole exporter and a detailed debug log of logs on stdout
    (`NAME.stdout`; its own log on `NAME.stderr`); ready when its OTLP/HTTP port accepts."""

    name = "rotel"

    def __init__(self, workdir: Path, name: str = "rotel") -> None:
        super().__init__(workdir / f"{name}.stdout", stderr_path=workdir / f"{name}.stderr")
        self.http_port = free_port()
        self.grpc_port = free_port()

    @property
    def stdout_path(self) -> Path:
        return self.log_path

    @stdout_path.setter
    def stdout_path(self, path: Path) -> None:
        self.log_path = path

    def command(self) -> list[str]:
        return [
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
        ]

    def is_ready(self) -> bool:
        return port_open(self.http_port)

    def waiting_for(self) -> str:
        return f"rotel on 127.0.0.1:{self.http_port}"

    def raw(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def records(self) -> list[LogRecord]:
        return parse_rotel_log(self.raw())


class ForwardingRotel(Rotel):
    """Rotel receiving OTLP and exporting it over OTLP/HTTP (uncompressed) to `next_hop` (a
    port on 127.0.0.1), keeping the detailed debug log of what it received (`records()`)."""

    def __init__(self, workdir: Path, next_hop: int, name: str = "rotel-forward") -> None:
        super().__init__(workdir, name)
        self.next_hop = next_hop

    def command(self) -> list[str]:
        return [
            str(rotel_bin()), "start",
            "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}",
            "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
            "--exporter", "otlp",
            "--otlp-exporter-endpoint", f"http://127.0.0.1:{self.next_hop}",
            "--otlp-exporter-protocol", "http",
            "--otlp-exporter-compression", "none",
            "--batch-timeout", "100ms",
            "--debug-log", "logs", "--debug-log-verbosity", "detailed",
        ]


class RestartableRotel(Rotel):
    """Rotel that can be stopped and started again on the SAME ports (a collector outage).

    Each run writes its own stdout file (`NAME-1.stdout`, `NAME-2.stdout`, ...); `records()`
    parses every run's output, so what arrived before an outage is still counted after it.
    Ports may be given (e.g. to start Rotel on a port Envoy already points at). Ready when the
    gRPC port accepts as well."""

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
        if self.running():
            raise HarnessError("rotel is already running")
        self.runs += 1
        self.stdout_path = self._workdir / f"{self._name}-{self.runs}.stdout"
        self.stderr_path = self._workdir / f"{self._name}-{self.runs}.stderr"
        self.outputs.append(self.stdout_path)
        return super().start(timeout)

    def wait_ready(self, timeout: float) -> None:
        super().wait_ready(timeout)
        wait_for(lambda: port_open(self.grpc_port), timeout, 0.05, f"rotel gRPC on {self.grpc_port}")

    def raw(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.outputs if p.exists())

    def records(self) -> list[LogRecord]:
        out: list[LogRecord] = []
        for p in self.outputs:
            if p.exists():
                out.extend(parse_rotel_log(p.read_text(errors="replace")))
        return out


class OtelCollector(Process):
    """The OpenTelemetry Collector (contrib) running one YAML configuration (written to
    `NAME.yaml`; its log `NAME.log`); ready when it logs "Everything is ready"."""

    name = "otelcol"
    READY = "Everything is ready"

    def __init__(self, workdir: Path, config: Mapping, name: str = "otelcol") -> None:
        super().__init__(workdir / f"{name}.log")
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))

    def command(self) -> list[str]:
        return [str(otelcol_bin()), "--config", str(self.config_path)]

    def is_ready(self) -> bool:
        return self.READY in self.log_path.read_text(errors="replace")


class HangingCollectorStandIn:
    """A hand-made stand-in (not a real collector) for one fault no real part shows on demand:
    a collector that accepts TCP connections, reads whatever is sent, and never answers.

    Counts accepted connections and received bytes, keeps the first 64 KiB received (`head`);
    `stop()` closes everything."""

    def __init__(self) -> None:
        self._sock = listening_socket()
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
