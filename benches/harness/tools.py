"""Locating (and, if needed, installing) the tools the benchmark runs, and reading /proc."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# The rate-controlled load generator. Pinned so every run measures with the same client.
OHA_VERSION = "1.16.0"


class ToolError(RuntimeError):
    pass


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def oha_bin(install: bool = True) -> Path:
    """`oha` (crates.io), from $OHA, PATH or ~/.cargo/bin; installed with `cargo install --locked`
    when missing and `install` is true (a one-time build of a few minutes)."""
    override = os.environ.get("OHA")
    if override:
        p = Path(override)
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise ToolError(f"$OHA={override} is not an executable")
        return p
    candidates = [shutil.which("oha"), str(Path.home() / ".cargo" / "bin" / "oha")]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return Path(c)
    if not install:
        raise ToolError("oha not found: `cargo install --locked oha --version " + OHA_VERSION + "` (or `make bench-tools`)")
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not Path(cargo).is_file():
        raise ToolError("oha not found and cargo is not available to install it")
    _log(f"installing oha {OHA_VERSION} with cargo (one time; a few minutes)")
    subprocess.run([cargo, "install", "--locked", "oha", "--version", OHA_VERSION], check=True, timeout=3600)
    p = Path.home() / ".cargo" / "bin" / "oha"
    if not p.is_file():
        raise ToolError("cargo install oha did not produce ~/.cargo/bin/oha")
    return p


def oha_version(oha: Path) -> str:
    out = subprocess.run([str(oha), "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


def wrk_bin() -> Path:
    """`wrk` (Debian package `wrk`, installed by `make sysdeps`), from $WRK or PATH. Never
    installed from here."""
    override = os.environ.get("WRK")
    if override:
        p = Path(override)
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise ToolError(f"$WRK={override} is not an executable")
        return p
    found = shutil.which("wrk")
    if not found:
        raise ToolError("wrk not found: `make sysdeps` (Debian: apt-get install wrk)")
    return Path(found)


def wrk_version(wrk: Path) -> str:
    """`wrk debian/4.1.0-3+b2 [epoll]` (wrk prints its version before the usage text)."""
    out = subprocess.run([str(wrk), "-v"], capture_output=True, text=True, timeout=30)
    first = (out.stdout or out.stderr).splitlines()[:1]
    return first[0].split(" Copyright")[0].strip() if first else "wrk"


def taskset_bin() -> Path:
    p = shutil.which("taskset")
    if not p:
        raise ToolError("taskset not found (Debian: util-linux)")
    return Path(p)


def niceness() -> int:
    """Priority of everything the benchmark starts: $BENCH_NICE (default 0: unchanged).

    On a machine where other work runs beside the benchmark (builds, test suites), a negative
    value (e.g. -10, needs root) gives the measured processes most of their cores. With the
    kernel's autogroup scheduling on (the default on many distributions), `nice` alone only
    ranks processes within one session, so each process is started in a session of its own
    (`setsid`) and that session's autogroup gets the niceness too (see `boost`)."""
    env = os.environ.get("BENCH_NICE", "")
    return int(env) if env.strip() else 0


def pin(cpu: int | None) -> list[str]:
    """The command prefix that runs a program on one core at the benchmark's priority. `setsid`,
    `nice` and `taskset` each exec the next program, so the child's pid is the program's."""
    prefix = []
    n = niceness()
    if n != 0:
        prefix += [shutil.which("setsid") or "setsid", shutil.which("nice") or "nice", "-n", str(n)]
    if cpu is not None:
        prefix += [str(taskset_bin()), "-c", str(cpu)]
    return prefix


def boost(pid: int) -> None:
    """Give the autogroup of a process started with `pin` (its own session) the benchmark's
    niceness. Without autogroups, or when not permitted, nothing happens."""
    n = niceness()
    if n == 0:
        return
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(n))
    except OSError:
        pass


# --------------------------------------------------------------------------------------------
# /proc
# --------------------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # the command name may contain spaces: fields after the closing parenthesis
    rest = text[text.rindex(")") + 2:].split()
    utime, stime = int(rest[11]), int(rest[12])  # fields 14 and 15 of stat
    return (utime + stime) / CLK_TCK


def proc_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ToolError(f"no VmRSS for pid {pid}")


def proc_comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


@dataclass
class CoreTimes:
    busy: int
    softirq: int  # network receive processing (loopback included): charged to no process
    total: int


def core_times(cpu: int) -> CoreTimes | None:
    """Busy and total jiffies of one core from /proc/stat (None if that core is not listed)."""
    for line in Path("/proc/stat").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == f"cpu{cpu}":
            vals = [int(v) for v in parts[1:]]
            idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
            total = sum(vals[:8])  # user nice system idle iowait irq softirq steal
            return CoreTimes(busy=total - idle, softirq=vals[6] if len(vals) > 6 else 0, total=total)
    return None


def run_json(cmd: list[str], timeout: float) -> dict:
    """Runs a program that prints JSON (boosted, see `boost`), killing it if it outlives `timeout`."""
    return json.loads(run_output(cmd, timeout))


def run_output(cmd: list[str], timeout: float) -> str:
    """Runs a program (boosted, see `boost`) and returns what it printed, killing it if it
    outlives `timeout`; an error if it fails."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    boost(proc.pid)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ToolError(f"{Path(cmd[0]).name} did not finish within {timeout:.0f} s: {' '.join(cmd)}")
    if proc.returncode != 0:
        raise ToolError(f"{cmd} exited {proc.returncode}: {err.strip()[-2000:]}")
    return out


# --------------------------------------------------------------------------------------------
# The probe filter (benches/harness/probe-filter): built on demand
# --------------------------------------------------------------------------------------------

PROBE_DIR = Path(__file__).resolve().parent / "probe-filter"


def probe_wasm(repo: Path, build: bool = True) -> Path:
    """The probe filter's wasm, built with cargo (seconds) into target/bench-probe/ if needed."""
    target_dir = repo / "target" / "bench-probe"
    out = target_dir / "wasm32-wasip1" / "release" / "meshaudit_bench_probe.wasm"
    sources = [PROBE_DIR / "Cargo.toml", *sorted((PROBE_DIR / "src").glob("*.rs"))]
    fresh = out.is_file() and all(out.stat().st_mtime >= s.stat().st_mtime for s in sources)
    if fresh or not build:
        if not out.is_file():
            raise ToolError(f"probe filter not built: {out}")
        return out
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    rustup = shutil.which("rustup") or str(Path.home() / ".cargo" / "bin" / "rustup")
    installed = subprocess.run([rustup, "target", "list", "--installed"], capture_output=True, text=True, timeout=120)
    if "wasm32-wasip1" not in installed.stdout.split():
        subprocess.run([rustup, "target", "add", "wasm32-wasip1"], check=True, timeout=600)
    env = dict(os.environ, CARGO_TARGET_DIR=str(target_dir))
    _log("building the probe filter (benches/harness/probe-filter)")
    subprocess.run(
        [cargo, "build", "--quiet", "--release", "--target", "wasm32-wasip1", "--manifest-path", str(PROBE_DIR / "Cargo.toml")],
        check=True, timeout=1200, env=env,
    )
    return out
