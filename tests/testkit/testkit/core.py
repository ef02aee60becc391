"""What every part of the kit uses: the repository's location, the error that says the test
environment is not usable, free ports, and waiting for a condition (by polling against a
deadline, never by sleeping for a fixed time)."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, TypeVar

# tests/testkit/testkit/core.py: the package is installed in editable mode (`make venv`), so this
# is the checkout it belongs to; envoy/ and istio/ are read from there.
REPO = Path(__file__).resolve().parents[3]
ENVOY_DIR = REPO / "envoy"

T = TypeVar("T")


class HarnessError(RuntimeError):
    """The test environment is not usable (missing binary, process died, ...)."""


_PORT_LOCK = threading.Lock()
_HANDED_OUT: set[int] = set()


def listening_socket(backlog: int = 64, timeout: float = 0.05) -> socket.socket:
    """A TCP socket listening on 127.0.0.1 at a free port, accepting with a short timeout (so a
    server thread can check whether to stop)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    sock.settimeout(timeout)
    return sock


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


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
