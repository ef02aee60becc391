"""Where a proxy's CPU goes, by the code it runs: `perf record` samples of the proxy process
during a saturated window, each sample classed by the mapping its instruction pointer was in.

The classes answer "how much of meshaudit's cost is meshaudit's own code?":
- `wasm`: code V8 generated at run time, that is the Wasm module compiled to machine code
  (plus V8's small call wrappers); perf names it `[JIT]` / `perf-PID.map`;
- `envoy`: the Envoy binary, which links V8's runtime and the proxy-wasm host (host calls,
  header serialization, CEL) along with Envoy's own proxying;
- `kernel`: system calls and network processing charged to the proxy;
- `libraries`: libc, libm, the vDSO.
Each class's share of the samples, times the CPU per request measured from /proc over the same
window, gives its µs per request.

`perf` is optional: where it is missing or not allowed (perf_event_paranoid), the profile is
skipped with the reason, and the rest of the benchmark stands.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

CLASSES = ("wasm", "envoy", "kernel", "libraries")
SAMPLE_HZ = 999


def perf_bin() -> tuple[Path | None, str]:
    """`perf`, if it can sample a process here (tried on a short busy child); else None and why
    not."""
    p = shutil.which("perf")
    if not p:
        return None, "perf not found (Debian: linux-perf)"
    with tempfile.TemporaryDirectory(prefix="meshaudit-perf-") as tmp:
        data = Path(tmp) / "check.data"
        busy = [sys.executable, "-c", "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 0.2: pass"]
        try:
            rec = subprocess.run([p, "record", "-q", "-e", "cpu-clock", "-F", str(SAMPLE_HZ), "-o", str(data), "--", *busy],
                                 capture_output=True, text=True, timeout=60)
            if rec.returncode != 0:
                return None, f"perf cannot sample here: {(rec.stderr.strip().splitlines() or ['?'])[-1]}"
            out = subprocess.run([p, "script", "-i", str(data), "-F", "ip"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as e:
            return None, f"perf does not run: {e}"
        if not out.stdout.strip():
            return None, "perf recorded no samples of a busy process"
    return Path(p), ""


def classify(dso: str) -> str:
    """The class of a sample from the name perf gives its mapping."""
    if "[kernel" in dso:
        return "kernel"
    if "[JIT]" in dso or ("/perf-" in dso and dso.rstrip(")").endswith(".map")) or "//anon" in dso:
        return "wasm"
    name = dso.strip("()").rsplit("/", 1)[-1]
    if name == "envoy":
        return "envoy"
    return "libraries"


class Recording:
    """`perf record` of one process, from `start()` to `stop()`, into a temporary file."""

    def __init__(self, perf: Path, pid: int) -> None:
        self.perf, self.pid = perf, pid
        fd, name = tempfile.mkstemp(prefix="meshaudit-perf-", suffix=".data")
        os.close(fd)
        self.out = Path(name)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(self.perf), "record", "-q", "-e", "cpu-clock", "-F", str(SAMPLE_HZ), "-p", str(self.pid),
             "-o", str(self.out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def stop(self) -> dict[str, int]:
        """Ends the recording; samples per class."""
        if self.proc is None:
            self.out.unlink(missing_ok=True)
            return {}
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        out = subprocess.run([str(self.perf), "script", "-i", str(self.out), "-F", "ip,dso"],
                             capture_output=True, text=True, timeout=300)
        counts: Counter[str] = Counter()
        for line in out.stdout.splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2:
                counts[classify(parts[1])] += 1
        self.out.unlink(missing_ok=True)
        return {c: counts.get(c, 0) for c in CLASSES}


def split(samples: dict[str, int], cpu_us_per_req: float | None) -> dict[str, float] | None:
    """µs per request of each class."""
    total = sum(samples.values())
    if not total or not cpu_us_per_req:
        return None
    return {c: samples.get(c, 0) / total * cpu_us_per_req for c in CLASSES}
