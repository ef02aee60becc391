"""The examples users run are exercised here, as a user would run them."""

from __future__ import annotations

import subprocess
import sys

import testkit


def test_local_sidecar_demo(wasm):
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
