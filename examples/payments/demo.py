#!/usr/bin/env python3
"""A payments service audited by meshaudit, the way istio/wasmplugin-http.yaml sets it up.

Starts, on 127.0.0.1 with free ports: a stand-in for the `payments-api` application, the Rotel
OpenTelemetry collector, and Envoy shaped like that workload's Istio sidecar, running the
WasmPlugin exactly as istiod and the istio-agent render it (filter over ECDS, collector cluster
`outbound|4318||otel-collector.observability.svc.cluster.local`, hash key only in Envoy's
environment, as `valueFrom: HOST` gives it). Generates a CA and SPIFFE certificates.

1. Sends payments traffic over mTLS, with planted secrets: a full card number, CVC, expiry,
   card holder, billing address, an email, a merchant API key, a bearer token, a customer id.
   Prints what the collector received.
2. Stops the collector (an outage) and keeps sending payments: once the buffer is full, the
   fail-closed route refuses payments with 503 instead of passing them unaudited, while reads
   keep flowing.

Exits non-zero if any planted secret appears in what the collector received or in Envoy's log
(where `fallback: log` writes events that cannot be buffered), or if the scenario did not play
out. Stops everything it started.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
from pathlib import Path

import testkit

# The demo's only changes to the manifest's pluginConfig: flush sooner, and a buffer small
# enough that a collector outage fills it within a few payments (production: 8 MiB).
DEMO_OVERRIDES = {"flush_interval_ms": 200, "max_batch_bytes": 16384, "max_buffer_bytes": 32768}
MAX_OUTAGE_REQUESTS = 400

SHOWN = [
    "http.request.method", "url.path", "http.response.status_code", "meshaudit.peer.spiffe_id",
    "http.request.header.x-customer-id", "http.request.header.authorization",
    "http.request.header.idempotency-key", "meshaudit.request.body.capture", "meshaudit.redaction.rules",
]


def flatten(prefix: str, value, out: dict) -> dict:
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = value
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="meshaudit payments scenario (see examples/payments/README.md)")
    ap.add_argument("--drop-rule", action="append", default=[], metavar="NAME",
                    help="remove this redaction rule from the pluginConfig, to see what it protects")
    args = ap.parse_args(argv)
    wasm = testkit.require_wasm()
    manifest = testkit.istio_manifest(testkit.ISTIO_DIR / "wasmplugin-http.yaml", "WasmPlugin", "meshaudit-http")
    plugin_config = testkit.deep_merge(manifest["spec"]["pluginConfig"], DEMO_OVERRIDES)
    rules = plugin_config["redaction"]["rules"]
    unknown = set(args.drop_rule) - {r["name"] for r in rules}
    if unknown:
        ap.error(f"no such rule: {', '.join(sorted(unknown))}")
    plugin_config["redaction"]["rules"] = [r for r in rules if r["name"] not in args.drop_rule]
    hash_key = secrets.token_hex(16)
    run = secrets.token_hex(4)
    planted = {
        "card number": "4242 4242 4242 4242",
        "cvc": f"9{secrets.randbelow(100):02d}",
        "expiry": "11/31",
        "card holder": f"Alex Moneypenny-{run}",
        "billing street": f"{run} Threadneedle Street",
        "email": f"alex.{run}@example.com",
        "merchant key": "msk_live_" + secrets.token_hex(12),
        "bearer token": "eyJ-not-a-jwt-" + secrets.token_hex(10),
        "customer id": f"cust_{run}",
        "hash key": hash_key,
    }

    with tempfile.TemporaryDirectory(prefix="meshaudit-payments-") as tmp:
        work = Path(tmp)
        pki = testkit.make_pki(work / "certs")
        web = pki.issue_client("web", cn="web.frontend", uri_sans=["spiffe://cluster.local/ns/frontend/sa/web"])
        sc = testkit.IstioSidecar(work, manifest, wasm=wasm, pki=pki, host_env={"MESHAUDIT_HASH_KEY": hash_key})
        sc.start(first_plugin_config=plugin_config)
        try:
            print(f"payments-api sidecar (Envoy) on 127.0.0.1:{sc.listener_port}, filter "
                  f"{sc.plugin.resource_name} over ECDS, collector cluster {testkit.ISTIO_COLLECTOR_CLUSTER} "
                  f"-> Rotel :{sc.rotel.http_port}")
            print(f"pluginConfig: istio/wasmplugin-http.yaml with {json.dumps(DEMO_OVERRIDES)}"
                  + (f", without the rules {', '.join(args.drop_rule)}" if args.drop_rule else "") + "\n")
            tls = sc.tls(web)
            payment = {
                "amount": 4200, "currency": "GBP",
                "card": {"number": planted["card number"], "cvc": planted["cvc"], "expiry": planted["expiry"],
                         "holder": planted["card holder"]},
                "billing": {"street": planted["billing street"], "city": "London"},
                "email": planted["email"],
                "metadata": {"merchant_key": planted["merchant key"], "pin": "4321"},  # $..pin: removed
            }
            headers = {
                "content-type": "application/json", "x-customer-id": planted["customer id"],
                "authorization": f"Bearer {planted['bearer token']}", "idempotency-key": f"idem-{run}",
            }
            sent = [
                ("POST", "/v1/payments", json.dumps(payment).encode(), headers),
                ("POST", "/v1/refunds", json.dumps({"payment": "pay_1", "amount": 1200, "email": planted["email"]}).encode(),
                 {"content-type": "application/json", "x-customer-id": planted["customer id"]}),
                ("GET", f"/v1/customers/{planted['customer id']}/cards/card_{run}", None, {}),
                ("GET", "/v1/payments/pay_1", None, {}),
            ]
            print("1. Payments traffic (mTLS as spiffe://cluster.local/ns/frontend/sa/web)")
            for method, path, body, hdrs in sent:
                resp = sc.request(path, method=method, body=body, headers=hdrs, tls=tls)
                print(f"   {method} {path} -> {resp.status}")
                if resp.status != 200:
                    print("   unexpected status: the scenario did not play out")
                    return 2
            records = sc.wait_records(lambda r: r.event_name == "meshaudit.http", count=len(sent), what="events")
            print(f"\nThe collector received {len(records)} audit events.")
            for r in records:
                print(f"\n{r.event_name}  {r.body}")
                for key in SHOWN:
                    if key in r.attributes:
                        print(f"    {key} = {r.attributes[key]}")
                if "meshaudit.request.body" in r.attributes:
                    body = json.loads(r.attributes["meshaudit.request.body"])
                    for k, v in flatten("", body, {}).items():
                        print(f"    request body: {k} = {v}")
            if not any(r.attr("url.path") == "/v1/payments" for r in records):
                print("no event for POST /v1/payments: the scenario did not play out")
                return 2

            print("\n2. Collector outage: Rotel stops; payments keep coming")
            sc.rotel.stop()
            refused_after = None
            for i in range(1, MAX_OUTAGE_REQUESTS + 1):
                resp = sc.request("/v1/payments", method="POST", body=json.dumps(payment).encode(), headers=headers, tls=tls)
                if resp.status == 503 and resp.headers.get("x-meshaudit") == "fail-closed":
                    refused_after = i
                    break
                if resp.status != 200:
                    print(f"   POST /v1/payments -> {resp.status} (unexpected)")
                    return 2
            if refused_after is None:
                print(f"   no fail-closed refusal within {MAX_OUTAGE_REQUESTS} payments: the scenario did not play out")
                return 2
            print(f"   fail-closed: POST /v1/payments -> 503 x-meshaudit: fail-closed after {refused_after} requests")
            read = sc.request("/v1/payments/pay_1", tls=tls)
            print(f"   GET /v1/payments/pay_1 -> {read.status} while payments are refused")
            if read.status != 200:
                return 2
            stats = sc.envoy.stats()
            print("   Envoy metrics: " + ", ".join(
                f"{k.removeprefix('wasmcustom.meshaudit.')}={v}" for k, v in sorted(stats.items())
                if k.startswith("wasmcustom.") and v))

            fallback = [l for l in sc.envoy.log_text().splitlines() if "meshaudit-fallback: " in l]
            print(f"   events written to Envoy's log instead of being dropped (fallback: log): {len(fallback)}")

            # Long secrets are searched as text everywhere; the short card fields (CVC, expiry,
            # PIN) as fields of every captured body, since three digits occur anywhere.
            seen = sc.rotel.raw() + sc.envoy.log_text()
            leaked = [name for name, value in planted.items() if len(value) >= 8 and value in seen]
            short = {"cvc": planted["cvc"], "expiry": planted["expiry"], "pin": "4321"}
            bodies = [r.attr("meshaudit.request.body") for r in sc.rotel.records()]
            bodies += [json.loads(l.split("meshaudit-fallback: ", 1)[1]).get("meshaudit.request.body") for l in fallback]
            for captured in filter(None, bodies):
                fields = flatten("", json.loads(captured), {})
                leaked += [f"{k} field" for k, v in fields.items() if short.get(k.rsplit(".", 1)[-1]) == v]
            print(f"\nplanted secrets found in what the collector received: {', '.join(sorted(set(leaked))) or 'none'}")
            return 1 if leaked else 0
        finally:
            sc.stop()


if __name__ == "__main__":
    sys.exit(main())
