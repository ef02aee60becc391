"""What every part of the kit uses: the repository's location, the error that says the test
environment is not usable, free ports, and waiting for a condition (by polling against a
deadline, never by sleeping for a fixed time)."""

from __future__ import annotations

import os
import random
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


def _ephemeral_low() -> int:
    """Where the kernel starts handing out ports for outgoing connections and bind(0)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_slice() -> range:
    """The ports this test process may hand out: below the kernel's ephemeral range (so no
    outgoing connection, and no other program's bind(0), takes one between the moment it is
    chosen and the moment Envoy binds it) and split between pytest-xdist workers (so two workers
    never choose the same one)."""
    low, high = 10000, _ephemeral_low()
    if high - low < 1000:
        return range(0)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1), index + 1)
    width = (high - low) // count
    return range(low + index * width, low + (index + 1) * width)


_PORTS = _port_slice()
_NEXT = [random.randrange(len(_PORTS))] if _PORTS else [0]


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, never handed out twice, and
    outside the range the kernel gives to outgoing connections (a port chosen by bind(0) can be
    taken by a client socket before the server that was meant to have it binds it)."""
    with _PORT_LOCK:
        for _ in range(len(_PORTS)):
            port = _PORTS[_NEXT[0] % len(_PORTS)]
            _NEXT[0] += 1
            if port not in _HANDED_OUT and _bindable(port):
                _HANDED_OUT.add(port)
                return port
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
