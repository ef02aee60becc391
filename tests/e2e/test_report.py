"""`meshaudit report` on a trail real Envoy wrote, looked at in a real browser.

Real parts: Envoy 1.40 with the filter behind Envoy's own access control (jwt_authn with tokens
the test signs, RBAC, ext_authz asking a service the test runs, a local rate limit:
`testkit.access_guards`), the test kit's JSON-lines sink (what it received is the stored
trail), the `meshaudit` binary, and Debian's Chromium, headless, opening the report from disk.
The weeks-long generated trail with planted anomalies is cli/tests/report.rs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import testkit
from testkit import free_port, wait_for

SECTIONS = ["access", "unauthenticated", "denied", "privileged", "unusual", "completeness", "redaction"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0"]


@pytest.fixture(scope="module")
def trail(tmp_path_factory, app, wasm, run_id) -> Path:
    """Requests Envoy allows and denies for each reason, as the JSON-lines trail stored them."""
    workdir = tmp_path_factory.mktemp("report-trail")
    issuer = testkit.JwtIssuer()
    authz = testkit.HttpServerThread(testkit.RefusingAuthz).start()
    sink = testkit.JsonLinesSink(workdir / "sink.ndjson").start()
    admin, port = free_port(), free_port()
    rendered = testkit.render_envoy(
        testkit.ENVOY_DIR / "edge.yaml", workdir, admin_port=admin, listener_ports={"edge_http": port},
        cluster_overrides={"app": app.port, "meshaudit_collector": sink.port}, wasm=wasm,
        plugin_config_overrides={
            "format": "json", "collector": {"authority": testkit.JSON_SINK_AUTHORITY},
            "flush_interval_ms": 100, "identity": {"jwt": True},
        },
        config_patch=testkit.access_guards(issuer, authz.port),
    )
    envoy = testkit.Envoy(rendered, admin, workdir / "envoy.log", listener_ports={"edge_http": port})
    token = issuer.token({"sub": f"alice-{run_id}"}, audience=testkit.GUARD_AUDIENCE)
    expired = issuer.token({"sub": "mallory"}, lifetime_s=-120, audience=testkit.GUARD_AUDIENCE)
    sent = [
        ("/ok/items/1001", {}, 200), ("/ok/items/1002", {}, 200),
        ("/jwt/orders/42", {"authorization": f"Bearer {token}"}, 200),
        ("/jwt/orders/43", {"authorization": f"Bearer {token}"}, 200),
        ("/jwt/orders/44", {"authorization": f"Bearer {expired}"}, 401),
        ("/admin/users/7", {}, 403),
        ("/authz/refuse", {}, 403),
        ("/limited/a", {}, 200), ("/limited/b", {}, 429),
        ("/nowhere", {}, 404),
    ]
    try:
        with testkit.running(envoy):
            for path, headers, status in sent:
                assert testkit.request(port, path, headers=headers).status == status, path
            wait_for(lambda: sum(o.get("event_name") == "meshaudit.http" for o in sink.objects()) == len(sent),
                     20, 0.1, lambda: f"{len(sink.lines())} lines stored")
        lines = sink.lines()
    finally:
        sink.stop()
        authz.stop()
    path = workdir / "trail.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.fixture(scope="module")
def report(cli, trail, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "out"
    proc = subprocess.run([str(cli), "report", "--privileged", "/admin/**", "--out", str(out), str(trail)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert str(out / "index.html") in proc.stdout
    return out


def section(report: Path, name: str) -> dict:
    return json.loads((report / f"{name}.json").read_text())


def test_denials_are_counted_by_the_reason_and_policy_envoy_gave(report):
    rows = section(report, "denied")["rows"]
    found = sorted((r["reason"], r["policy"], r["denied"]) for r in rows)
    assert found == [("ext_authz", "", 1), ("jwt", "", 1), ("no_route", "", 1), ("rate_limit", "", 1),
                     ("rbac", "deny-admin", 1)]


def test_callers_are_the_verified_end_user_or_unauthenticated_with_route_templates(report, run_id):
    rows = section(report, "access")["rows"]
    by = {(r["caller_type"], r["caller"], r["method"], r["route"]): r for r in rows}
    alice = by[("end_user", f"alice-{run_id}", "GET", "/jwt/orders/{n}")]
    assert (alice["requests"], alice["denied"]) == (2, 0)
    # The expired token's subject is not an identity: that request was unauthenticated.
    assert not any(r["caller"] == "mallory" for r in rows)
    anonymous = {r["route"]: r["requests"] for r in section(report, "unauthenticated")["rows"]}
    assert anonymous["/ok/items/{n}"] == 2 and anonymous["/jwt/orders/{n}"] == 1
    privileged = section(report, "privileged")["rows"]
    assert [(r["route"], r["denied"]) for r in privileged] == [("/admin/users/{n}", 1)]


def test_the_trail_is_complete_and_verifies(report):
    c = section(report, "completeness")
    assert c["summary"]["verify"] == "clean"
    assert c["summary"]["events reported lost"] == "0"
    assert len(c["rows"]) == 1 and c["rows"][0]["events"] >= 10
    assert c["verify"]["clean"] is True


def chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium")
    assert binary, "Chromium (Debian's chromium, installed by make sysdeps)"
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120)


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_a_console_error_would_be_seen(tmp_path):
    """The canary of the next test: Chromium reports a page's console errors where it looks."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><title>x</title><script>console.error('canary-error')</script>")
    proc = chromium("--dump-dom", page.as_uri(), tmp=tmp_path)
    assert any("canary-error" in m for m in console_messages(proc.stderr)), proc.stderr[-2000:]


def test_the_html_renders_in_chromium_with_every_section_and_chart(report, tmp_path):
    page = (report / "index.html").as_uri()
    proc = chromium("--dump-dom", page, tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console_messages(proc.stderr) == []
    dom = proc.stdout
    for name in SECTIONS:
        assert f'<section id="{name}">' in dom, name
    # The charts have data: a bar per day with requests, one per denial reason.
    assert dom.count('class="bar"') >= 1 + 5
    # Nothing is fetched: no script, no external reference.
    assert "<script" not in dom and "http://" not in dom.replace("http://www.w3.org/2000/svg", "")
    pdf = tmp_path / "report.pdf"
    proc = chromium(f"--print-to-pdf={pdf}", "--no-pdf-header-footer", page, tmp=tmp_path)
    assert pdf.exists() and pdf.read_bytes().startswith(b"%PDF"), proc.stderr[-2000:]
    pages = re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf.read_bytes())
    assert len(pages) >= len(SECTIONS), "each section begins a page in print"


# ---------------------------------------------------------------------------------------------
# Two sources, one answer: the same trail from files and aggregated by ClickHouse
# ---------------------------------------------------------------------------------------------

CLICKHOUSE_EXAMPLE = testkit.REPO / "examples" / "clickhouse"
REPORT_ARGS = ["--from", "2026-11-02", "--to", "2026-11-09", "--hours", "08:00-18:00", "--privileged", "/admin/**"]


@pytest.fixture(scope="module")
def weeks(tmp_path_factory) -> tuple[Path, Path]:
    """The planted four weeks of cli/tests/support/weeks.rs (gen-weeks): the trail and its key."""
    d = tmp_path_factory.mktemp("weeks")
    # A debug build: `make unit` built its dependencies already, and 18,000 events need no speed.
    build = subprocess.run(["cargo", "build", "-q", "-p", "meshaudit-cli", "--example", "gen-weeks"],
                           cwd=testkit.REPO, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    trail, key = d / "weeks.jsonl", d / "weeks.pub"
    with trail.open("w") as out:
        gen = subprocess.run([str(testkit.REPO / "target" / "debug" / "examples" / "gen-weeks"), "planted", str(key)],
                             stdout=out, stderr=subprocess.PIPE, text=True, timeout=300)
    assert gen.returncode == 0, gen.stderr
    return trail, key


def comparable(out: Path) -> dict:
    """Every section's JSON, without what names the source."""
    return {name: section(out, name) for name in SECTIONS}


def run_py(*args: str, url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLICKHOUSE_EXAMPLE / "run.py"), "--url", url, *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def stored_weeks(weeks, clickhouse) -> str:
    """The planted weeks in a real ClickHouse with the shipped schema, posted as meshaudit posts
    its JSON lines; returns the server's URL."""
    trail, _ = weeks
    url = clickhouse.url
    schema = run_py("schema", url=url)
    assert schema.returncode == 0, schema.stderr
    insert = run_py("insert-path", url=url).stdout.strip()
    lines = trail.read_bytes()
    with urllib.request.urlopen(urllib.request.Request(url + insert, data=lines, method="POST"), timeout=120) as a:
        assert a.status == 200
    assert int(clickhouse.query("SELECT count() FROM meshaudit.events").strip()) == lines.count(b"\n")
    return url


@pytest.fixture(scope="module")
def weeks_reports(cli, weeks, stored_weeks, tmp_path_factory) -> dict:
    """The planted weeks' report from the files and from ClickHouse: {source: {section: json}}."""
    trail, key = weeks
    runs = {}
    for source, args in [("files", [str(trail)]), ("clickhouse", ["--clickhouse", stored_weeks])]:
        out = tmp_path_factory.mktemp(f"weeks-{source}") / "out"
        proc = subprocess.run([str(cli), "report", *REPORT_ARGS, "--public-key", str(key), "--out", str(out), *args],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr + proc.stdout
        runs[source] = comparable(out)
        runs[source]["index.html"] = (out / "index.html").read_text()
    return runs


def test_clickhouse_aggregates_the_same_report_as_the_files(weeks_reports, stored_weeks):
    for name in SECTIONS:
        assert weeks_reports["clickhouse"][name] == weeks_reports["files"][name], name
    # The page says where the events came from.
    assert f"events verified from ClickHouse at {stored_weeks} (meshaudit.trail" in weeks_reports["clickhouse"]["index.html"]
    assert "weeks.jsonl" in weeks_reports["files"]["index.html"]
    flags = {r["rule"] for r in weeks_reports["clickhouse"]["unusual"]["rows"]}
    assert flags == {"new_pair", "volume_spike", "denial_spike", "off_hours", "many_services"}


def soc2(url: str, question: str, *args: str) -> list[dict]:
    proc = run_py("soc2", question, "--from", "2026-11-02T00:00:00Z", "--to", "2026-11-09T00:00:00Z",
                  "--format", "json", *args, url=url)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_the_soc2_queries_answer_what_the_report_does(stored_weeks, weeks_reports):
    """examples/clickhouse/soc2/*.sql on the real server, each against the report's section."""
    report = weeks_reports["files"]
    total = lambda rows, k: sum(r[k] for r in rows)  # noqa: E731
    access = soc2(stored_weeks, "access-by-identity")
    assert total(access, "requests") == total(report["access"]["rows"], "requests")
    assert {(r["caller"], r["route"]) for r in access} == {(r["caller"], r["route"]) for r in report["access"]["rows"]}
    anonymous = soc2(stored_weeks, "unauthenticated-access")
    assert total(anonymous, "requests") == total(report["unauthenticated"]["rows"], "requests")
    denied = soc2(stored_weeks, "denied-requests")
    assert sorted((r["day"], r["reason"], r["policy"], r["denied"]) for r in denied) == \
        sorted((r["day"], r["reason"], r["policy"], r["denied"]) for r in report["denied"]["rows"])
    admin = soc2(stored_weeks, "privileged-routes", "--prefix", "/admin/")
    assert total(admin, "requests") == total(report["privileged"]["rows"], "requests") > 0
    new = soc2(stored_weeks, "new-callers", "--baseline-from", "2026-10-26T00:00:00Z")
    assert {(r["caller"], r["service"]) for r in new} == \
        {(r["identity"], r["service"]) for r in report["unusual"]["rows"] if r["rule"] == "new_pair"}
    streams = soc2(stored_weeks, "trail-completeness")
    assert {(r["stream"], r["events"]) for r in streams} == \
        {(r["stream"], r["events"]) for r in report["completeness"]["rows"]}
    redaction = soc2(stored_weeks, "redaction-evidence")
    assert [(r["rule"], r["fired"], r["events"]) for r in redaction] == \
        [(r["rule"], r["fired"], r["events"]) for r in report["redaction"]["rows"]]
