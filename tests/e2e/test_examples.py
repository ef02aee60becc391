"""The examples users run are exercised here, as a user would run them."""

from __future__ import annotations

import json
import subprocess
import sys

import testkit


def test_local_sidecar_demo(wasm, cli):
    proc = subprocess.run(
        [sys.executable, str(testkit.REPO / "examples" / "local-sidecar" / "demo.py")],
        capture_output=True, text=True, timeout=120,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "The collector received 3 audit events." in out, out
    assert "meshaudit.peer.spiffe_id = spiffe://cluster.local/ns/frontend/sa/web" in out, out
    assert "meshaudit.envoy.response_flags = NR" in out, out
    assert "present anywhere in what the collector received: False" in out, out
    assert "demo-secret-token" not in out.split("authorization value")[0].split("The collector received")[1], out
    assert "meshaudit.events_sent=3" in out, out
    # The auditor's part: the trail Rotel forwarded to the store, verified and reported on.
    assert "stream " in out and ": 3 events, 3 verified" in out and "verdict: clean" in out, out
    index = testkit.REPO / "target" / "demo-report" / "index.html"
    assert f"meshaudit report: {index}" in out and index.is_file(), out
    access = json.loads((index.parent / "access.json").read_text())
    assert sum(r["requests"] for r in access["rows"]) == 3
    assert "demo-secret-token" not in index.read_text()
