"""Clients: HTTP(S) requests on fresh connections (a chosen SNI, the server certificate and TLS
version seen), and raw TLS/TCP connections for the TCP proxy tests."""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from .pki import SERVER_DNS, Cert


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
