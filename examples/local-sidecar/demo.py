#!/usr/bin/env python3
"""The local sidecar demo (`make demo`).

Starts, on 127.0.0.1 with free ports: an application, Envoy running envoy/sidecar.yaml with
meshaudit, the Rotel OpenTelemetry collector, and a store behind it that keeps what Rotel
forwards (OTLP protobuf, in a file); generates a CA and SPIFFE certificates; sends a few
requests (mTLS and plaintext, one carrying an `authorization` header); prints the audit events
the collector received; stops everything it started. Then, as an auditor would, runs
`meshaudit verify` and `meshaudit report` on the stored trail and prints where the report is
(target/demo-report/index.html).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import testkit

SHOWN = [
    "http.request.method", "url.path", "url.query", "http.response.status_code",
    "meshaudit.envoy.response_flags", "meshaudit.tls.mtls", "tls.protocol.version",
    "meshaudit.peer.spiffe_id", "meshaudit.peer.namespace", "meshaudit.peer.service_account",
    "meshaudit.peer.uri_sans", "tls.client.subject", "meshaudit.local.spiffe_id",
    "network.peer.address", "meshaudit.request.id", "meshaudit.duration_ns", "log.record.uid",
]


CLI = testkit.REPO / "target" / "release" / "meshaudit"
REPORT = testkit.REPO / "target" / "demo-report"


def main() -> int:
    wasm = testkit.require_wasm()
    if not CLI.is_file():
        print(f"{CLI} is missing: `make cli` builds it (`make demo` does)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="meshaudit-demo-") as tmp:
        work = Path(tmp)
        pki = testkit.make_pki(work / "certs")
        web = pki.issue_client("web", cn="web.frontend", uri_sans=["spiffe://cluster.local/ns/frontend/sa/web"])
        store = testkit.OtlpFileStore(work / "store.bin").start()
        stack = testkit.Stack(
            work, kind=testkit.SIDECAR, wasm=wasm, pki=pki,
            plugin_config_overrides={"flush_interval_ms": 200}, rotel_next_hop=store.port,
        )
        try:
            with stack:
                leaked = show(stack, web)
                trail = testkit.wait_for(lambda: stored(store, work, 3), timeout=20,
                                         message="the events in the store behind the collector")
        finally:
            store.stop()
        return audit(trail) or (1 if leaked else 0)


def stored(store: testkit.OtlpFileStore, work: Path, events: int) -> Path | None:
    """A snapshot of the store once `verify` finds `events` HTTP events in it."""
    trail = store.snapshot(work / "trail.bin")
    proc = subprocess.run([str(CLI), "verify", "--json", str(trail)], capture_output=True, text=True, timeout=60)
    streams = json.loads(proc.stdout or "{}").get("streams", [])
    return trail if sum(s["events"] for s in streams) >= events else None


def audit(trail: Path) -> int:
    """What an auditor runs on the stored trail: verify, then the report."""
    print(f"\n$ meshaudit verify {trail.name}")
    verify = subprocess.run([str(CLI), "verify", str(trail)], capture_output=True, text=True, timeout=60)
    print((verify.stdout + verify.stderr).rstrip())
    report = subprocess.run([str(CLI), "report", "--out", str(REPORT), str(trail)],
                            capture_output=True, text=True, timeout=60)
    print(f"\n$ meshaudit report --out {REPORT.relative_to(testkit.REPO)} {trail.name}")
    print((report.stdout + report.stderr).rstrip())
    return verify.returncode or report.returncode


def show(stack: testkit.Stack, web) -> bool:
    """Sends the requests and prints what the collector received; whether the secret leaked."""
    print(f"Envoy (sidecar.yaml) on 127.0.0.1:{stack.listener_port}, "
          f"admin :{stack.admin_port}, Rotel OTLP/HTTP :{stack.rotel.http_port}\n")
    sent = [
        ("mTLS GET as spiffe://cluster.local/ns/frontend/sa/web",
         lambda: stack.request("/orders/42?expand=items", tls=stack.tls(web))),
        ("plaintext POST with an authorization header (never recorded)",
         lambda: stack.request("/orders", method="POST", body=b'{"item": 7}',
                               headers={"authorization": "Bearer demo-secret-token",
                                        "content-type": "application/json"})),
        ("plaintext GET with an unknown Host: Envoy answers 404 itself",
         lambda: stack.request("/nowhere", host="unknown.example")),
    ]
    for what, send in sent:
        resp = send()
        print(f"-> {what}: HTTP {resp.status}")
    testkit.wait_for(lambda: len(stack.rotel.records()) >= len(sent), timeout=20,
                     message="events at the collector")
    records = stack.rotel.records()
    print(f"\nThe collector received {len(records)} audit events.")
    print("Resource (once per batch):")
    for k, v in records[0].resource.items():
        print(f"    {k} = {v}")
    for r in records:
        print(f"\n{r.event_name}  {r.body}")
        for key in SHOWN:
            if key in r.attributes:
                print(f"    {key} = {r.attributes[key]}")
    leaked = "demo-secret-token" in stack.rotel.raw()
    print(f"\nauthorization value present anywhere in what the collector received: {leaked}")
    stats = testkit.wait_for(
        lambda: (s := stack.envoy.stats()) and testkit.metric(s, "meshaudit.events_sent") >= len(records) and s,
        timeout=20, message="events_sent to be published")
    print("Envoy metrics: " + ", ".join(
        f"{k.removeprefix('wasmcustom.')}={v}" for k, v in sorted(stats.items())
        if k.startswith("wasmcustom.")))
    return leaked


if __name__ == "__main__":
    sys.exit(main())
