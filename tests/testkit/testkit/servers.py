"""Servers standing in for the parts around the proxy: the application (an HTTP upstream that
echoes and answers as each request asks), a JSON-lines sink for the collector, and a TCP echo
server standing in for a database. Each records what it received."""

from __future__ import annotations

import copy
import gzip
import json
import socket
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .core import listening_socket


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lowercase names
    body: bytes


class RecordingServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: a burst of connections from Envoy (hundreds
    # of concurrent requests) would see SYNs dropped and Envoy's 1 s connect timeout (503).
    request_queue_size = 1024

    def __init__(self, handler, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), handler)
        self.requests: list[ReceivedRequest] = []
        self.lock = threading.Lock()

    def handle_error(self, request, client_address) -> None:
        # A peer that went away mid-exchange (Envoy resetting an aborted request) is not an error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class RecordingHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 handler base: `record_request()` reads the request body and appends the request
    to the server's `requests`."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def record_request(self) -> ReceivedRequest:
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


class UpstreamHandler(RecordingHandler):
    """200 with a small text body that echoes the path. `?status=NNN` picks another status;
    a request header `x-upstream-set-cookie: V` makes the response carry `set-cookie: V`, and
    `x-upstream-header-NAME: V` a response header `NAME: V` (e.g. `x-upstream-header-location`);
    `x-upstream-body-b64: B` makes the response body the base64-decoded B, with the content
    type given by `x-upstream-content-type` (default application/octet-stream)."""

    def _handle(self) -> None:
        req = self.record_request()
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


class _SinkHandler(RecordingHandler):
    def do_POST(self) -> None:
        req = self.record_request()
        dump = getattr(self.server, "dump_path", None)
        if dump is not None:
            with self.server.lock, open(dump, "ab") as f:
                f.write(req.body if req.body.endswith(b"\n") else req.body + b"\n")
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()


class HttpServerThread:
    """A RecordingServer with `handler` on 127.0.0.1 (a free port, or the `port` given: a
    server that comes back where it was), served from a thread; `requests` is what it received
    so far."""

    def __init__(self, handler, port: int = 0) -> None:
        self.server = RecordingServer(handler, port)
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
    return HttpServerThread(UpstreamHandler)


class _OtlpFileHandler(RecordingHandler):
    """Every OTLP/HTTP export request body (gunzipped) appended to the server's `trail` file,
    4-byte big-endian length first (what `meshaudit verify` and `report` read); an empty
    success answered."""

    def do_POST(self) -> None:
        req = self.record_request()
        body = gzip.decompress(req.body) if req.headers.get("content-encoding") == "gzip" else req.body
        with self.server.lock, open(self.server.trail, "ab") as f:
            f.write(len(body).to_bytes(4, "big") + body)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()


class OtlpFileStore(HttpServerThread):
    """A collector's next hop that stores what it receives: OTLP/HTTP protobuf export requests,
    length-prefixed, in `trail` (created empty). `snapshot(path)` copies it consistently."""

    def __init__(self, trail: Path) -> None:
        super().__init__(_OtlpFileHandler)
        self.trail = self.server.trail = trail
        trail.write_bytes(b"")

    def snapshot(self, path: Path) -> Path:
        with self.server.lock:
            path.write_bytes(self.trail.read_bytes())
        return path


class JsonLinesSink(HttpServerThread):
    """Records POST bodies; `objects()` parses every body as newline-delimited JSON."""

    def __init__(self, dump_path: Path | None = None, port: int = 0) -> None:
        super().__init__(_SinkHandler, port)
        self.server.dump_path = dump_path  # every body is also appended there, for post-mortems

    def lines(self) -> list[str]:
        """Every non-empty line received, byte for byte as sent (decoded as UTF-8)."""
        return [line for req in self.requests for line in req.body.decode().splitlines() if line.strip()]

    def objects(self) -> list[dict]:
        return [json.loads(line) for line in self.lines()]


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
        self._sock = listening_socket()
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
