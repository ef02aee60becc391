"""The programs the kit runs (Envoy, Rotel, the OpenTelemetry Collector, ClickHouse, a registry,
the benchmark's pinned Envoys and collectors) share one base class, `Process`: start = spawn,
then wait until ready (stopped again if it exits or times out first); stop = SIGTERM, then
SIGKILL. Plus stopping several parts whatever each does, and starting one for a pytest fixture.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from .core import HarnessError, wait_for


def log_tail(path: Path, lines: int = 60) -> str:
    """The last `lines` lines of a log file (for error messages)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> int | None:
    """SIGTERM, then SIGKILL if `proc` has not exited after `timeout` seconds; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    return proc.returncode


class Process:
    """One program run for a test or a benchmark. Use as a context manager, or start()/stop().

    A subclass says what to run (`command()`) and when it is ready (`is_ready()`, polled every
    `poll_interval` seconds for at most `start_timeout`); the program's standard output and
    error go to `log_path` (standard error to `stderr_path` when one is given), opened with
    `log_mode` ("ab": several runs append to one log). `start()` = `spawn()` + `wait_ready()`,
    and stops the program again if it exits or the wait times out (HarnessError, TimeoutError).
    `stop()` may be called at any time, more than once."""

    name = "process"  # in messages
    start_timeout = 30.0
    poll_interval = 0.05
    stop_timeout = 10.0
    log_mode = "wb"

    def __init__(
        self,
        log_path: Path,
        *,
        stderr_path: Path | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.log_path = log_path
        self.stderr_path = stderr_path
        self.cwd = cwd  # default: the log's directory
        self.env = dict(env or {})  # set over this process's environment
        self.proc: subprocess.Popen | None = None
        self._files: list = []

    # --- what a subclass says ------------------------------------------------------------

    def command(self) -> list[str]:
        raise NotImplementedError

    def is_ready(self) -> bool:
        return True

    def waiting_for(self) -> str:
        """What `wait_ready()` waits for, in its timeout message."""
        return f"{self.name} ready; log:\n{log_tail(self.log_path)}"

    def exit_error(self) -> HarnessError:
        """The error when the program exits before it is ready."""
        return HarnessError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tails()}")

    def log_tails(self) -> str:
        paths = [self.stderr_path, self.log_path] if self.stderr_path is not None else [self.log_path]
        return "\n".join(log_tail(p) for p in paths)

    # --- lifecycle -----------------------------------------------------------------------

    def spawn(self) -> subprocess.Popen:
        """Starts the program without waiting for it to be ready."""
        command = self.command()
        out = open(self.log_path, self.log_mode)
        self._files = [out]
        err: object = subprocess.STDOUT
        if self.stderr_path is not None:
            err = open(self.stderr_path, self.log_mode)
            self._files.append(err)
        self.proc = subprocess.Popen(
            command,
            cwd=self.cwd or self.log_path.parent,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env} if self.env else None,
        )
        return self.proc

    def wait_ready(self, timeout: float) -> None:
        def ready_or_dead():
            if self.proc.poll() is not None:
                raise self.exit_error()
            return self.is_ready()

        wait_for(ready_or_dead, timeout, self.poll_interval, self.waiting_for)

    def start(self, timeout: float | None = None):
        self.spawn()
        try:
            self.wait_ready(self.start_timeout if timeout is None else timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> int | None:
        """Stops the program (if it was started) and closes its logs; its exit code."""
        rc = None
        if self.proc is not None:
            rc = stop_process(self.proc, self.stop_timeout)
        for f in self._files:
            f.close()
        self._files = []
        return rc

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_all(*parts) -> None:
    """Stops each part that was started (None: never was), in order, whatever the others do."""
    for part in parts:
        if part is not None:
            try:
                part.stop()
            except Exception:  # keep stopping the rest
                pass


@contextlib.contextmanager
def running(stack):
    """Starts `stack` (anything with `start()` and `stop()`) for a fixture, failing the test as
    "e2e environment not usable" when it cannot start; stops it when the fixture ends."""
    import pytest

    try:
        stack.start()
    except (HarnessError, TimeoutError) as e:
        pytest.fail(f"e2e environment not usable: {e}", pytrace=False)
    try:
        yield stack
    finally:
        stack.stop()
