"""Fixtures for the meshaudit end-to-end tests (real Envoy, real Rotel, real certificates).

Run from the repository root: `.venv/bin/python -m pytest tests/e2e -q`.
MESHAUDIT_VENV overrides the virtualenv (default <repo>/.venv), MESHAUDIT_WASM the filter
(default <repo>/target/wasm32-wasip1/release/meshaudit.wasm). Nothing is skipped: a missing
binary or wasm fails the tests with a message that says what to build or install.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

try:
    import testkit
except ModuleNotFoundError as e:
    if e.name != "testkit":
        raise
    raise ModuleNotFoundError(
        "the test kit (tests/testkit, package `testkit`) is not installed in this Python: run "
        "`make venv` and `.venv/bin/python -m pytest tests/e2e`"
    ) from e

if testkit.REPO != Path(__file__).resolve().parents[2]:
    raise RuntimeError(
        f"testkit is installed from {testkit.REPO}, not from this checkout: `make venv` here "
        f"(or `pip install -e tests/testkit -e benches/harness` into the virtualenv you use)"
    )


def _fail_setup(e: Exception) -> None:
    pytest.fail(f"e2e environment not usable: {e}", pytrace=False)


@pytest.fixture(scope="session")
def binaries() -> dict[str, Path]:
    try:
        return {"envoy": testkit.envoy_bin(), "rotel": testkit.rotel_bin()}
    except testkit.HarnessError as e:
        _fail_setup(e)


@pytest.fixture(scope="session")
def wasm(binaries) -> Path:
    try:
        return testkit.require_wasm()
    except testkit.HarnessError as e:
        _fail_setup(e)


@pytest.fixture(scope="session")
def cli() -> Path:
    """The `meshaudit` command-line program (cli/, package meshaudit-cli), release build:
    `cargo build` once per session (a no-op when `make cli` or `make e2e` built it already)."""
    try:
        proc = subprocess.run(
            ["cargo", "build", "--release", "-p", "meshaudit-cli"],
            cwd=testkit.REPO, capture_output=True, text=True, timeout=900,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        _fail_setup(testkit.HarnessError(f"cargo build -p meshaudit-cli: {e}"))
    if proc.returncode != 0:
        _fail_setup(testkit.HarnessError(f"cargo build -p meshaudit-cli failed:\n{proc.stderr[-3000:]}"))
    path = testkit.REPO / "target" / "release" / "meshaudit"
    if not path.is_file():
        _fail_setup(testkit.HarnessError(f"{path} missing after cargo build"))
    return path


@pytest.fixture(scope="session")
def run_id() -> str:
    """Random per run: unique paths, request ids and canaries."""
    return uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> testkit.Pki:
    p = testkit.make_pki(tmp_path_factory.mktemp("certs"))
    p.issue_client("web", cn="web.frontend", uri_sans=["spiffe://cluster.local/ns/frontend/sa/web"])
    p.issue_client(
        "multi",
        cn="batch.jobs",
        uri_sans=["spiffe://cluster.local/ns/jobs/sa/batch", "urn:meshaudit:e2e:batch-runner"],
    )
    return p


@pytest.fixture(scope="module", params=["filter", "access_log"])
def sidecar(request, tmp_path_factory, wasm, pki) -> testkit.Stack:
    """envoy/sidecar.yaml + meshaudit (OTLP) -> Rotel, in front of a live application; every test
    using it runs twice: meshaudit loaded as the HTTP filter, and as an access logger."""
    stack = testkit.Stack(
        tmp_path_factory.mktemp(f"sidecar-{request.param}"),
        kind=testkit.SIDECAR,
        wasm=wasm,
        pki=pki,
        **testkit.loaded_as(request.param),
    )
    with testkit.running(stack):
        yield stack


@pytest.fixture(scope="module")
def sidecar_dead_upstream(tmp_path_factory, wasm, pki) -> testkit.Stack:
    """envoy/sidecar.yaml with `inbound|8080||` pointing at a port nothing listens on."""
    stack = testkit.Stack(
        tmp_path_factory.mktemp("sidecar-dead"),
        kind=testkit.SIDECAR,
        wasm=wasm,
        pki=pki,
        plugin_config_overrides=testkit.TEST_PLUGIN_CONFIG,
        dead_upstream=True,
    )
    with testkit.running(stack):
        yield stack


@pytest.fixture(scope="module")
def edge_json(tmp_path_factory, wasm) -> testkit.Stack:
    """envoy/edge.yaml + meshaudit with format json -> a JSON-lines receiver."""
    stack = testkit.Stack(
        tmp_path_factory.mktemp("edge-json"),
        kind=testkit.EDGE,
        wasm=wasm,
        pki=None,
        plugin_config_overrides={
            "format": "json",
            "flush_interval_ms": 200,
            "collector": {"authority": testkit.JSON_SINK_AUTHORITY},
            "request_headers": ["user-agent"],
        },
        collector="json",
    )
    with testkit.running(stack):
        yield stack


@pytest.fixture(scope="module")
def app():
    """The test kit's upstream application, one per test file (test_delivery.py has its own)."""
    server = testkit.upstream_server().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory):
    """A real ClickHouse server (Debian's, `make sysdeps`), one per test file."""
    try:
        server = testkit.ClickHouse(tmp_path_factory.mktemp("clickhouse")).start()
    except testkit.HarnessError as e:
        pytest.fail(f"ClickHouse not usable: {e}", pytrace=False)
    yield server
    server.stop()
