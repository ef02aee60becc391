"""Envoy's statistics as the admin /stats endpoint prints them: parsing, the one stat with a
given name suffix, and sampling a gauge over time."""

from __future__ import annotations

import re
import threading
from typing import Mapping


def parse_stats(text: str) -> dict[str, int]:
    """`name: value` lines with an integer value (counters and gauges) -> {name: value}."""
    out = {}
    for line in text.splitlines():
        name, sep, value = line.rpartition(": ")
        if not sep:
            continue
        value = value.strip()
        if re.fullmatch(r"-?\d+", value):
            out[name.strip()] = int(value)
    return out


def metric(stats: Mapping[str, int], suffix: str) -> int:
    """The value of the one stat whose name is `suffix` or ends with `.suffix`."""
    names = [n for n in stats if n == suffix or n.endswith("." + suffix)]
    if len(names) != 1:
        shown = {k: v for k, v in stats.items() if not k.startswith("cluster.")}
        raise AssertionError(f"expected exactly one stat ending in {suffix!r}, found {names}; meshaudit stats: {shown}")
    return stats[names[0]]


class GaugeSampler:
    """Polls one Envoy stat on a background thread (`interval` apart) until stopped; keeps
    every value read. For gauges that must stay within a bound the whole time."""

    def __init__(self, envoy, suffix: str, interval: float = 0.02) -> None:
        self.envoy = envoy
        self.suffix = suffix
        self.interval = interval
        self.samples: list[int] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pattern = re.escape(self.suffix) + "$"
        while not self._stop.is_set():
            try:
                self.samples.append(metric(self.envoy.all_stats(pattern), self.suffix))
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.errors.append(str(e))
            self._stop.wait(self.interval)

    def __enter__(self) -> "GaugeSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def meshaudit_stats(envoy) -> dict[str, int]:
    """meshaudit's own counters and gauges of a running Envoy."""
    return envoy.all_stats(r"^wasmcustom\.meshaudit\.")


def meshaudit_stat(stats: Mapping[str, int], name: str) -> int:
    """The meshaudit stat `name` (e.g. `events_sent`) among `stats`."""
    return metric(stats, "meshaudit." + name)


def wait_meshaudit_stats(envoy, predicate, timeout: float = 15.0, what: str = "meshaudit stats") -> dict[str, int]:
    """Polls meshaudit's stats until `predicate` holds (an AssertionError inside it, e.g. a
    metric not published yet, counts as not yet); returns them."""
    from .core import wait_for
    from .processes import log_tail

    last: dict[str, int] = {}

    def check():
        nonlocal last
        last = meshaudit_stats(envoy)
        try:
            return last if predicate(last) else None
        except AssertionError:
            return None

    return wait_for(check, timeout, 0.05, lambda: f"{what}; last stats {last}\nenvoy log:\n{log_tail(envoy.log_path, 15)}")
