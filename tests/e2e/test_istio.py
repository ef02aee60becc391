"""The Istio manifests in istio/, checked three ways.

1. Schema (the validator is testkit.istio_schema, shared with tests/e2e/test_kustomize.py):
   every document validates against the OpenAPI v3 schema of its CRD
   (tests/fixtures/*-crd.yaml, copied from istio/api with their provenance), converted to JSON
   Schema with Kubernetes' rules kept: a field the schema does not know fails (as with
   `kubectl apply`'s strict field validation) unless `x-kubernetes-preserve-unknown-fields`
   allows it; `nullable`, int-or-string, `format: int32`, list-map keys and the CEL rules
   (`x-kubernetes-validations`) of these CRDs are enforced; an extension or CEL rule the
   converter does not know is an error, never skipped. ServiceEntry, DestinationRule and
   EnvoyFilter have no CRD in fixtures: they are checked against a structural schema written
   here from the Istio API reference (the fields these manifests use and their neighbours, with
   types and enums; an EnvoyFilter's patch value is Envoy configuration, an open object).
   Broken manifests prove that the validator refuses what it should.

2. Envoy: each WasmPlugin is rendered as istiod and the istio-agent render it (filter name
   NAMESPACE.NAME, root_id = pluginName, vm_id empty, pluginConfig as a JSON string with every
   number a double — both as golang/protobuf's jsonpb prints a double (`500`) and in the
   stricter `500.0` form —, vmConfig.env as key_values / host_env_keys, ISTIO_META_* stripped
   by the agent), delivered over ECDS into an Istio-sidecar-shaped Envoy (envoy/sidecar.yaml or
   envoy/tcp.yaml, collector cluster named `outbound|4318||otel-collector...`), and real
   traffic reaches the real Rotel collector; the hash key comes only from Envoy's process
   environment (`valueFrom: HOST`).

   envoyfilter-access-log.yaml (meshaudit as an access logger) is applied as istiod applies its
   MERGE patch to the sidecar's inbound HTTP connection managers; Envoy fetches the module
   through the cluster it names (a local server stands in for that mesh service).

3. Change: a pluginConfig edit arrives as a new ECDS version, as it does in a mesh. A valid
   edit applies; an invalid one is rejected by Envoy, the last good configuration keeps
   serving and auditing, and Envoy's log names the field at fault; a new sidecar whose first
   configuration is invalid answers every request with 500 itself (nothing reaches the
   application unaudited) until a valid one arrives.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
import re
import secrets
import subprocess
import sys
from typing import Any, Callable

import pytest
import yaml

import testkit
from testkit import istio_schema
from testkit.istio_schema import SchemaConversionError, openapi_to_jsonschema, validation_errors

FIXTURES = testkit.REPO / "tests" / "fixtures"
ISTIO = testkit.REPO / "istio"
HTTP_FILE = ISTIO / "wasmplugin-http.yaml"
NETWORK_FILE = ISTIO / "wasmplugin-network.yaml"
TE_FILE = ISTIO / "trafficextension.yaml"
EF_FILE = ISTIO / "envoyfilter-access-log.yaml"
EXPECTED_FILES = {
    "envoyfilter-access-log.yaml",
    "wasmplugin-http.yaml",
    "wasmplugin-network.yaml",
    "trafficextension.yaml",
    "collector-serviceentry.yaml",
    "collector-destinationrule.yaml",
}
WEB_SPIFFE = "spiffe://cluster.local/ns/frontend/sa/web"
HMAC_TOKEN = re.compile(r"hmac:[0-9a-f]{32}")


# =============================================================================================
# 1. Schema validation
# =============================================================================================

CRD_FIXTURES = istio_schema.CRD_FIXTURES


@pytest.fixture(scope="module")
def schemas() -> dict[str, dict]:
    return istio_schema.load_schemas()


def all_documents() -> list[tuple[str, int, dict]]:
    out = []
    for path in sorted(ISTIO.glob("*.yaml")):
        for i, doc in enumerate(testkit.istio_manifests(path)):
            out.append((path.name, i, doc))
    return out


def test_istio_dir_holds_the_expected_manifests():
    assert {p.name for p in ISTIO.glob("*.yaml")} == EXPECTED_FILES


def test_fixtures_keep_their_provenance():
    for name in CRD_FIXTURES:
        text = (FIXTURES / name).read_text()
        assert re.match(r"# Source: github\.com/istio/api @ [0-9a-f]{40} ", text), name
        assert "\n# File: kubernetes/customresourcedefinitions.gen.yaml" in text.split("apiVersion:")[0], name


@pytest.mark.parametrize("fname,index,doc", all_documents(), ids=lambda v: v if isinstance(v, str) else None)
def test_manifest_validates_against_its_schema(fname, index, doc, schemas):
    errors = validation_errors(doc, schemas)
    assert not errors, f"{fname} document {index} ({doc.get('kind')} {doc.get('metadata', {}).get('name')}):\n" + "\n".join(errors)


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """A mutation setting a dotted path (list indexes as numbers)."""

    def apply(doc: dict) -> None:
        parts = path.split(".")
        node: Any = doc
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return apply


def _delete(path: str) -> Callable[[dict], None]:
    def apply(doc: dict) -> None:
        parts = path.split(".")
        node: Any = doc
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node[p]
        del node[parts[-1]]

    return apply


def _dup_env(doc: dict) -> None:
    doc["spec"]["vmConfig"]["env"].append(dict(doc["spec"]["vmConfig"]["env"][0]))


BROKEN = [
    # (file, document index, mutation, text the error must contain)
    pytest.param("wasmplugin-http.yaml", 0, _set("spec.priority", "high"), "spec/priority", id="wrong-type"),
    pytest.param("wasmplugin-http.yaml", 0, _set("spec.pluginConfigg", {"a": 1}), "pluginConfigg", id="unknown-field"),
    pytest.param("wasmplugin-http.yaml", 0, _set("spec.vmConfig.env.0.secretRef", "k"), "secretRef", id="unknown-nested-field"),
    pytest.param("wasmplugin-http.yaml", 0, _set("spec.match.0.ports", [{"number": 8080, "protocol": "HTTP"}]), "protocol", id="unknown-field-in-list"),
    pytest.param("wasmplugin-http.yaml", 0, _set("metadata.nmae", "x"), "nmae", id="unknown-metadata-field"),
    pytest.param("wasmplugin-http.yaml", 0, _set("spec.phase", "EARLY"), "spec/phase", id="bad-enum"),
    pytest.param("wasmplugin-http.yaml", 0, _set("spec.sha256", "sha256:" + "0" * 64), "spec/sha256", id="bad-pattern"),
    pytest.param("wasmplugin-http.yaml", 0, _set("spec.priority", 2**31), "spec/priority", id="int32-range"),
    pytest.param("wasmplugin-http.yaml", 0, _set("spec.pluginName", "p" * 257), "spec/pluginName", id="max-length"),
    pytest.param("wasmplugin-http.yaml", 0, _delete("spec.url"), "'url' is a required property", id="missing-required"),
    pytest.param("wasmplugin-http.yaml", 0, _set("spec.url", "ftp://registry.example.com/m.wasm"), "url must have schema", id="cel-url-scheme"),
    pytest.param("wasmplugin-http.yaml", 0, _set("spec.vmConfig.env.0.value", "inline-secret"), "value may only be set when valueFrom is INLINE", id="cel-host-env-with-value"),
    pytest.param("wasmplugin-http.yaml", 0, _set("spec.targetRefs", [{"kind": "Service", "name": "payments-api"}]), "only one of targetRefs or selector", id="cel-selector-and-targetrefs"),
    pytest.param("wasmplugin-http.yaml", 0, _set("spec.selector.matchLabels.app", "payments-*"), "wildcard not allowed", id="cel-wildcard-label"),
    pytest.param("wasmplugin-http.yaml", 0, _dup_env, "duplicate entries", id="list-map-duplicate-env"),
    pytest.param("wasmplugin-http.yaml", 0, _set("kind", "WasmPlugins"), "no schema for kind", id="unknown-kind"),
    pytest.param("wasmplugin-http.yaml", 0, _set("apiVersion", "extensions.istio.io/v1"), "apiVersion", id="unserved-version"),
    pytest.param("trafficextension.yaml", 0, _set("spec.lua", {"inlineCode": "function envoy_on_request(h) end"}), "exactly one of wasm or lua", id="te-wasm-and-lua"),
    pytest.param("trafficextension.yaml", 0, _set("spec.wasm.type", "GRPC"), "spec/wasm/type", id="te-bad-enum"),
    pytest.param("trafficextension.yaml", 0, _set("spec.wasm.pluginconfig", {}), "pluginconfig", id="te-unknown-field"),
    pytest.param("trafficextension.yaml", 1, _set("spec.targetRef", {"kind": "Service", "name": "x"}), "targetRef", id="te-no-singular-targetref"),
    pytest.param("envoyfilter-access-log.yaml", 0, _set("spec.configPatches.0.applyTo", "ACCESS_LOG"), "applyTo", id="ef-bad-enum"),
    pytest.param("envoyfilter-access-log.yaml", 0, _set("spec.configPatches.0.patch.operation", "APPEND"), "operation", id="ef-bad-operation"),
    pytest.param("envoyfilter-access-log.yaml", 0, _set("spec.workloadSelector.matchLabels", {"app": "orders-api"}), "matchLabels", id="ef-unknown-field"),
    pytest.param("collector-serviceentry.yaml", 0, _set("spec.ports.0.number", "4318"), "spec/ports/0/number", id="se-wrong-type"),
    pytest.param("collector-serviceentry.yaml", 0, _delete("spec.hosts"), "'hosts' is a required property", id="se-missing-hosts"),
    pytest.param("collector-serviceentry.yaml", 0, _set("spec.location", "OUTSIDE"), "spec/location", id="se-bad-enum"),
    pytest.param("collector-serviceentry.yaml", 0, _set("spec.resolutions", "DNS"), "resolutions", id="se-unknown-field"),
    pytest.param("collector-destinationrule.yaml", 0, _set("spec.trafficPolicy.portLevelSettings.0.tls.mode", "STRICT"), "tls/mode", id="dr-bad-tls-mode"),
    pytest.param("collector-destinationrule.yaml", 0, _set("spec.trafficPolicy.portLevelSettings.0.tls.skipVerify", True), "skipVerify", id="dr-unknown-field"),
]


@pytest.mark.parametrize("fname,index,mutate,expected", BROKEN)
def test_validator_refuses_broken_manifests(fname, index, mutate, expected, schemas):
    doc = copy.deepcopy(testkit.istio_manifests(ISTIO / fname)[index])
    assert not validation_errors(doc, schemas), "the unbroken document must pass first"
    mutate(doc)
    errors = validation_errors(doc, schemas)
    assert errors, f"the validator accepted a broken {fname}"
    assert any(expected in e for e in errors), f"no error mentions {expected!r}: {errors}"


ACCEPTED = [
    pytest.param(_set("spec.pluginConfig", {"any": {"nested": [1, "two", {"three": None}]}, "x": True}), id="preserve-unknown-fields"),
    pytest.param(_set("spec.priority", None), id="nullable"),
    pytest.param(_set("status", {"observedGeneration": 3}), id="int-or-string-int"),
    pytest.param(_set("status", {"observedGeneration": "3", "extra": {"kept": 1}}), id="int-or-string-string-and-preserved-status"),
    pytest.param(_set("spec.url", "registry.example.com/platform/meshaudit:0.1.0"), id="url-without-scheme"),
]


@pytest.mark.parametrize("mutate", ACCEPTED)
def test_validator_accepts_what_kubernetes_accepts(mutate, schemas):
    doc = copy.deepcopy(testkit.istio_manifest(HTTP_FILE, "WasmPlugin", "meshaudit-http"))
    mutate(doc)
    assert not validation_errors(doc, schemas)


def test_int_or_string_refuses_other_types(schemas):
    doc = copy.deepcopy(testkit.istio_manifest(HTTP_FILE, "WasmPlugin", "meshaudit-http"))
    doc["status"] = {"observedGeneration": ["3"]}
    assert any("observedGeneration" in e for e in validation_errors(doc, schemas))


def test_converter_refuses_what_it_does_not_implement():
    with pytest.raises(SchemaConversionError, match="CEL rule not implemented"):
        openapi_to_jsonschema({"type": "string", "x-kubernetes-validations": [{"rule": "self.startsWith('a')"}]})
    with pytest.raises(SchemaConversionError, match="unsupported schema keywords"):
        openapi_to_jsonschema({"type": "object", "x-kubernetes-embedded-resource": True})
    with pytest.raises(SchemaConversionError, match="unsupported format"):
        openapi_to_jsonschema({"type": "string", "format": "uuid"})


# --- facts the manifests must keep ------------------------------------------------------------

def test_hash_key_comes_from_the_sidecar_environment_only():
    for path in (HTTP_FILE, TE_FILE):
        for doc in testkit.istio_manifests(path):
            plugin = testkit.istio_plugin(doc)
            pc = plugin.wasm.get("pluginConfig", {})
            env = (plugin.wasm.get("vmConfig") or {}).get("env") or []
            if plugin.plugin_type == "HTTP":
                key_env = pc["redaction"]["hash_key_env"]
                assert any(r.get("action") == "hash" for r in pc["redaction"]["rules"]), "a hash rule is shown"
                assert env == [{"name": key_env, "valueFrom": "HOST"}], env
            text = json.dumps(pc)
            assert not re.search(r"(?i)\"(hash_)?key\"\s*:", text), "a key inline in pluginConfig"


def test_collector_cluster_is_written_istios_way():
    for path in (HTTP_FILE, NETWORK_FILE, TE_FILE):
        for doc in testkit.istio_manifests(path):
            c = testkit.istio_plugin(doc).wasm["pluginConfig"]["collector"]
            assert c["cluster"] == testkit.ISTIO_COLLECTOR_CLUSTER
            assert c["authority"] == "otel-collector.observability.svc.cluster.local"


def test_trafficextension_renders_the_same_filters_as_the_wasmplugins():
    """Apply either file: the Envoy filter a sidecar gets is the same."""
    pairs = [
        (testkit.istio_manifest(HTTP_FILE, "WasmPlugin", "meshaudit-http"),
         testkit.istio_manifest(TE_FILE, "TrafficExtension", "meshaudit-http")),
        (testkit.istio_manifest(NETWORK_FILE, "WasmPlugin", "meshaudit-tcp"),
         testkit.istio_manifest(TE_FILE, "TrafficExtension", "meshaudit-tcp")),
    ]
    for wp, te in pairs:
        a, b = testkit.istio_plugin(wp), testkit.istio_plugin(te)
        assert testkit.istiod_wasm_filter(a) == testkit.istiod_wasm_filter(b)
        assert (a.resource_name, b.resource_name) == (
            f"payments.{wp['metadata']['name']}",
            f"extensions.istio.io/trafficextension/payments.{te['metadata']['name']}",
        )
        for key in ("selector", "phase", "priority", "match"):
            assert wp["spec"][key] == te["spec"][key], key


# --- istiod's JSON -----------------------------------------------------------------------------

@pytest.mark.parametrize("value,go,double", [
    (500, "500", "500.0"),
    (1048576, "1048576", "1048576.0"),
    (0.5, "0.5", "0.5"),
    (-3, "-3", "-3.0"),
    (0, "0", "0.0"),
    (1e21, "1e+21", "1e+21"),
    (1.5e-7, "1.5e-7", "1.5e-07"),
    (123456789012345678, "123456789012345680", "1.2345678901234568e+17"),
])
def test_struct_numbers_render_as_doubles(value, go, double):
    """golang/protobuf's jsonpb writes a Struct number with Go's encoding/json float64 format
    (so 500 stays `500`, a 19-digit id loses precision); `double` is the stricter `500.0`."""
    assert testkit.go_json_number(value, "go") == go
    assert testkit.go_json_number(value, "double") == double


def test_struct_json_is_compact_sorted_and_html_safe():
    got = testkit.istio_struct_json({"b": [1, True, None], "a": {"y": "<x&y>", "x": 2.5}})
    assert got == '{"a":{"x":2.5,"y":"\\u003cx\\u0026y\\u003e"},"b":[1,true,null]}'
    assert json.loads(got) == {"a": {"x": 2.5, "y": "<x&y>"}, "b": [1, True, None]}


# =============================================================================================
# 2. The WasmPlugins in Envoy
# =============================================================================================

def hmac_token(key: str, value: str) -> str:
    return "hmac:" + hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]


def test_rendered_http_filter_is_what_istiod_and_the_agent_send():
    plugin = testkit.istio_plugin(testkit.istio_manifest(HTTP_FILE, "WasmPlugin", "meshaudit-http"), "4711")
    sent = testkit.istiod_wasm_filter(plugin, "double")
    cfg = sent["config"]
    assert sent["@type"] == testkit.ISTIO_WASM_HTTP_TYPE
    assert cfg["name"] == "payments.meshaudit-http" and cfg["root_id"] == "meshaudit"
    assert "vm_id" not in cfg["vm_config"]
    assert cfg["failure_policy"] == "FAIL_CLOSED"
    assert cfg["vm_config"]["code"]["remote"]["http_uri"]["uri"] == plugin.wasm["url"]
    assert cfg["vm_config"]["code"]["remote"]["sha256"] == plugin.wasm["sha256"]
    assert cfg["vm_config"]["environment_variables"] == {
        "key_values": {
            "ISTIO_META_WASM_IMAGE_PULL_POLICY": "IfNotPresent",
            "ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION": "4711",
        },
        "host_env_keys": ["MESHAUDIT_HASH_KEY"],
    }
    value = cfg["configuration"]["value"]
    assert '"max_batch_events":500.0' in value and '"keep":4.0' in value, value
    assert json.loads(value) == plugin.wasm["pluginConfig"]
    # Without pluginName istiod leaves root_id empty (it does not fall back to the name).
    unnamed = copy.deepcopy(plugin)
    del unnamed.wasm["pluginName"]
    assert "root_id" not in testkit.istiod_wasm_filter(unnamed)["config"]
    local = testkit.istio_agent_rewrite(sent, testkit.wasm_path())["config"]["vm_config"]
    assert local["code"] == {"local": {"filename": str(testkit.wasm_path().resolve())}}
    assert local["environment_variables"] == {"host_env_keys": ["MESHAUDIT_HASH_KEY"]}


def test_http_wasmplugin_audits_in_a_sidecar(wasm, pki, tmp_path, run_id):
    """wasmplugin-http.yaml as a sidecar gets it: mTLS traffic, body capture, card, hash and
    detector rules, the key from Envoy's environment only; events reach Rotel."""
    key = secrets.token_hex(16)
    doc = testkit.istio_manifest(HTTP_FILE, "WasmPlugin", "meshaudit-http")
    sc = testkit.IstioSidecar(tmp_path, doc, wasm=wasm, pki=pki, host_env={"MESHAUDIT_HASH_KEY": key}, numbers="double")
    assert key not in json.dumps(sc.wasm_filter())
    web = pki.clients["web"]
    customer, card_id = f"cust_{run_id}", f"card_{run_id}"
    bearer = f"tok-{secrets.token_hex(8)}"
    merchant = "msk_live_" + secrets.token_hex(12)
    email = f"kim.{run_id}@example.org"
    body = {
        "amount": 1250, "currency": "EUR",
        "card": {"number": "4111 1111 1111 1111", "cvc": "737", "expiry": "12/29", "holder": f"Kim {run_id}"},
        "billing": {"street": f"{run_id} Canary Wharf", "zip": "E14 5AB"},
        "email": email, "note": f"merchant key {merchant}",
    }
    sc.start()
    try:
        resp = sc.request(
            "/v1/payments", method="POST", body=json.dumps(body).encode(), tls=sc.tls(web),
            headers={"content-type": "application/json", "x-customer-id": customer,
                     "authorization": f"Bearer {bearer}", "idempotency-key": run_id},
        )
        assert resp.status == 200, resp
        resp = sc.request(f"/v1/customers/{customer}/cards/{card_id}", tls=sc.tls(web))
        assert resp.status == 200, resp

        pay = sc.wait_records(lambda r: r.attr("url.path") == "/v1/payments", what="payment events")[0]
        a = pay.attributes
        assert pay.event_name == "meshaudit.http"
        assert a["meshaudit.peer.spiffe_id"] == WEB_SPIFFE and a["meshaudit.tls.mtls"] is True
        assert a["http.request.header.x-customer-id"] == [hmac_token(key, customer)], a
        assert a["http.request.header.authorization"] == ["[REDACTED]"], a
        assert a["http.request.header.idempotency-key"] == [run_id]
        captured = json.loads(a["meshaudit.request.body"])
        assert captured["card"] == {"number": "****1111"}, captured
        assert captured["billing"] == {}, captured
        assert captured["email"] == hmac_token(key, email), captured
        assert captured["note"] == "merchant key [REDACTED]", captured
        assert captured["amount"] == 1250 and captured["currency"] == "EUR"
        fired = " ".join(a["meshaudit.redaction.rules"])
        for rule in ("customer-id:1", "card-number:1", "card-secrets:2", "card-holder:3", "merchant-secret"):
            assert rule in fired, (rule, fired)
        assert pay.resource["k8s.namespace.name"] == "payments"

        path = sc.wait_records(lambda r: r.attr("url.path", "").startswith("/v1/customers/"), what="card path")[0]
        assert path.attr("url.path") == f"/v1/customers/{hmac_token(key, customer)}/cards/{hmac_token(key, card_id)}"

        raw = sc.rotel.raw()
        for secret in (customer, card_id, bearer, merchant, email, "4111 1111 1111 1111", f"Kim {run_id}",
                       f"{run_id} Canary Wharf", key):
            assert secret not in raw, f"{secret!r} reached the collector"
        # Three digits alone turn up in timestamps and ids: the CVC is looked for as a field.
        assert not re.search(r"cvc\W{0,8}737", raw), "the CVC reached the collector"
        assert key not in sc.config_path.read_text() and key not in sc.ecds_path.read_text()
    finally:
        sc.stop()


@pytest.mark.parametrize("plugin_name", [True, False], ids=["pluginName", "no-pluginName"])
def test_network_wasmplugin_audits_in_a_sidecar(plugin_name, wasm, pki, tmp_path):
    """wasmplugin-network.yaml (type NETWORK, mode tcp) in front of a TCP service; also with
    pluginName left out (an empty root_id works too)."""
    doc = copy.deepcopy(testkit.istio_manifest(NETWORK_FILE, "WasmPlugin", "meshaudit-tcp"))
    if not plugin_name:
        del doc["spec"]["pluginName"]
    sc = testkit.IstioSidecar(tmp_path, doc, wasm=wasm, pki=pki, numbers="double")
    sent = testkit.istiod_wasm_filter(sc.plugin, "double")
    assert sent["@type"] == testkit.ISTIO_WASM_NETWORK_TYPE
    assert sent["config"]["name"] == "payments.meshaudit-tcp"
    assert sent["config"].get("root_id") == ("meshaudit" if plugin_name else None)
    assert "environment_variables" not in sc.wasm_filter()["config"]["vm_config"]  # only ISTIO_META_* were there
    web = pki.clients["web"]
    sc.start()
    try:
        resp = sc.request("/ledger/entries?limit=5", tls=sc.tls(web))
        assert resp.status == 200 and resp.body == b"upstream GET /ledger/entries?limit=5\n"
        mine = lambda r: r.event_name == "meshaudit.tcp" and r.attr("meshaudit.peer.spiffe_id") == WEB_SPIFFE  # noqa: E731
        close = sc.wait_records(lambda r: mine(r) and r.attr("meshaudit.tcp.phase") == "close", what="close event")[0]
        cid = close.attr("meshaudit.connection.id")
        assert close.attr("meshaudit.tcp.downstream.received_bytes") > 0
        assert close.attr("meshaudit.tcp.upstream.received_bytes") == close.attr("meshaudit.tcp.downstream.sent_bytes") > 0
        assert close.attr("meshaudit.envoy.upstream_cluster") == "inbound|5432||"
        # An Istio sidecar's inbound listener has the tls_inspector (envoy/tcp.yaml too): the SNI.
        assert close.attr("server.address") == testkit.SERVER_DNS
        assert close.attr("meshaudit.tls.handshake") == "complete"
        opened = sc.wait_records(
            lambda r: r.attr("meshaudit.connection.id") == cid and r.attr("meshaudit.tcp.phase") == "open",
            what="open event of the same connection",
        )
        assert len(opened) == 1
        assert close.resource["service.name"] == "ledger-db"
    finally:
        sc.stop()


# =============================================================================================
# 2b. The access-logger EnvoyFilter in Envoy
# =============================================================================================

def istiod_merge(dst: dict, src: dict) -> None:
    """istiod's MERGE of a patch value into a message (proto.Merge): fields of messages merge,
    repeated fields append, scalars replace; a typed_config merges only into one of its type."""
    for k, v in src.items():
        old = dst.get(k)
        if isinstance(v, dict) and isinstance(old, dict) and old.get("@type") == v.get("@type"):
            istiod_merge(old, v)
        elif isinstance(v, list) and isinstance(old, list):
            old.extend(copy.deepcopy(v))
        else:
            dst[k] = copy.deepcopy(v)


def apply_envoyfilter(cfg: dict, doc: dict) -> int:
    """Applies an EnvoyFilter's NETWORK_FILTER MERGE patches for SIDECAR_INBOUND, as istiod does,
    to the network filters of the inbound static listeners matched by name; returns how many
    filters it patched. (The patches this project ships are of that one shape.)"""
    patched = 0
    for cp in doc["spec"]["configPatches"]:
        shape = (cp["applyTo"], cp["patch"]["operation"], cp["match"]["context"])
        assert shape == ("NETWORK_FILTER", "MERGE", "SIDECAR_INBOUND"), shape
        name = cp["match"]["listener"]["filterChain"]["filter"]["name"]
        for listener in cfg["static_resources"]["listeners"]:
            if listener.get("traffic_direction") != "INBOUND":
                continue
            for chain in listener["filter_chains"]:
                for f in chain["filters"]:
                    if f["name"] == name:
                        istiod_merge(f, cp["patch"]["value"])
                        patched += 1
    return patched


class _ModuleHandler(testkit.RecordingHandler):
    def do_GET(self) -> None:
        self.record_request()
        module = self.server.module
        self.send_response(200)
        self.send_header("content-type", "application/wasm")
        self.send_header("content-length", str(len(module)))
        self.end_headers()
        self.wfile.write(module)


def module_server(module: bytes) -> testkit.HttpServerThread:
    """Serves the module over HTTP, standing in for the mesh service the EnvoyFilter names;
    its `requests` are the fetches."""
    server = testkit.HttpServerThread(_ModuleHandler)
    server.server.module = module
    return server.start()


def test_envoyfilter_loads_an_access_logger_not_a_filter():
    doc = testkit.istio_manifest(EF_FILE, "EnvoyFilter", "meshaudit-access-log")
    (cp,) = doc["spec"]["configPatches"]
    (logger,) = cp["patch"]["value"]["typed_config"]["access_log"]
    assert logger["name"] == testkit.WASM_ACCESS_LOGGER
    config = logger["typed_config"]["config"]
    assert config["root_id"] == "meshaudit"
    plugin = json.loads(config["configuration"]["value"])
    assert plugin["mode"] == "access_log" and plugin["collector"]["cluster"] == testkit.ISTIO_COLLECTOR_CLUSTER
    assert "body_capture" not in plugin and "routes" not in plugin
    assert config["vm_config"]["environment_variables"] == {"host_env_keys": ["MESHAUDIT_HASH_KEY"]}


def test_access_logger_envoyfilter_audits_in_a_sidecar(wasm, pki, tmp_path, run_id):
    """envoyfilter-access-log.yaml applied as istiod applies it to the Istio-sidecar-shaped
    envoy/sidecar.yaml without any meshaudit filter: Envoy fetches the module itself through the
    cluster the EnvoyFilter names (a local server standing in for the mesh service; `sha256` set
    to the module's digest, as the manifest says), and inbound requests, plaintext and mTLS,
    reach Rotel as events, the customer id hashed with the key from Envoy's environment only."""
    doc = copy.deepcopy(testkit.istio_manifest(EF_FILE, "EnvoyFilter", "meshaudit-access-log"))
    logger = doc["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["access_log"][0]
    remote = logger["typed_config"]["config"]["vm_config"]["code"]["remote"]
    module = wasm.read_bytes()
    remote["sha256"] = hashlib.sha256(module).hexdigest()
    key = secrets.token_hex(16)
    customer = f"cust_{run_id}"
    upstream = testkit.upstream_server().start()
    rotel = testkit.Rotel(tmp_path).start()
    modules = module_server(module)
    envoy = None
    try:
        admin, port = testkit.free_port(), testkit.free_port()
        cfg_path = testkit.render_envoy(
            testkit.ENVOY_DIR / "sidecar.yaml", tmp_path, admin_port=admin, listener_ports={"virtualInbound": port},
            cluster_overrides={"inbound|8080||": upstream.port, testkit.COLLECTOR_CLUSTER: rotel.http_port},
            wasm=wasm, certs_dir=pki.directory, drop_wasm=True, name="istio-envoyfilter.yaml",
        )
        cfg = yaml.safe_load(cfg_path.read_text())
        testkit.rename_cluster(cfg, testkit.COLLECTOR_CLUSTER, testkit.ISTIO_COLLECTOR_CLUSTER)
        assert apply_envoyfilter(cfg, doc) == 2  # the mTLS and the plaintext filter chain
        cluster = remote["http_uri"]["cluster"]
        cfg["static_resources"]["clusters"].append({
            "name": cluster, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": cluster, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": modules.port}}}}]}]},
        })
        names = {n.get("name") for n in testkit.walk(cfg) if isinstance(n, dict)}
        assert testkit.WASM_FILTER not in names and testkit.WASM_ACCESS_LOGGER in names
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        envoy = testkit.Envoy(cfg_path, admin, tmp_path / "envoy.log", listener_ports={"virtualInbound": port},
                                     env={"MESHAUDIT_HASH_KEY": key}).start()
        fetched = [r.path for r in modules.requests]
        assert fetched and set(fetched) == {"/meshaudit-0.1.0.wasm"}, fetched

        plain = testkit.request(port, f"/v1/customers/{customer}", headers={"x-customer-id": customer})
        mtls = testkit.request(port, f"/v1/orders/{run_id}", tls=testkit.TlsClient(
            ca=pki.ca_path, cert=pki.clients["web"].cert_path, key=pki.clients["web"].key_path, sni=testkit.SERVER_DNS))
        assert (plain.status, mtls.status) == (200, 200)

        def both():
            recs = rotel.records()
            c = [r for r in recs if r.attr("http.request.header.x-customer-id")]
            o = [r for r in recs if r.attr("url.path") == f"/v1/orders/{run_id}"]
            return (c[0], o[0]) if c and o else None

        cust, order = testkit.wait_for(both, 20.0, 0.1, lambda: f"two events at Rotel; log:\n{envoy.log_text()[-3000:]}")
        assert cust.attr("http.request.header.x-customer-id") == [hmac_token(key, customer)], cust.attributes
        assert cust.attr("url.path") == f"/v1/customers/{hmac_token(key, customer)}", cust.attributes
        assert cust.attr("meshaudit.tls.mtls") is False
        assert order.attr("meshaudit.peer.spiffe_id") == WEB_SPIFFE and order.attr("meshaudit.tls.mtls") is True
        assert order.attr("http.response.status_code") == 200
        raw = rotel.raw()
        assert customer not in raw and key not in raw
        assert key not in cfg_path.read_text()
        assert "invalid configuration" not in envoy.log_text()
    finally:
        testkit.stop_all(envoy, rotel, upstream, modules)


# =============================================================================================
# 3. Changing pluginConfig
# =============================================================================================

def _rule(pc: dict, name: str) -> dict:
    return next(r for r in pc["redaction"]["rules"] if r["name"] == name)


def _customer_header(sc: testkit.IstioSidecar, customer: str, tls: bool, pki) -> list:
    resp = sc.request(f"/v1/orders/{customer}", headers={"x-customer-id": customer},
                      tls=sc.tls(pki.clients["web"]) if tls else None)
    assert resp.status == 200, f"{resp.status} {resp.body!r}"
    rec = sc.wait_records(lambda r: r.attr("url.path") == f"/v1/orders/{customer}", what=f"event of {customer}")[0]
    return rec.attr("http.request.header.x-customer-id")


def test_invalid_plugin_config_change_keeps_the_last_good_one(wasm, pki, tmp_path, run_id):
    """Edits of pluginConfig reach a running sidecar as ECDS updates. A valid edit applies to
    new requests; an invalid one is rejected by Envoy: the last good configuration stays in
    force (traffic keeps flowing and being audited by it) and the log names the field."""
    key = secrets.token_hex(16)
    doc = testkit.istio_manifest(HTTP_FILE, "WasmPlugin", "meshaudit-http")
    base = doc["spec"]["pluginConfig"]
    sc = testkit.IstioSidecar(tmp_path, doc, wasm=wasm, pki=pki, host_env={"MESHAUDIT_HASH_KEY": key}, numbers="go")
    sc.start()
    try:
        st = sc.wait_ecds("update_success", 1)
        assert _customer_header(sc, f"c1-{run_id}", True, pki) == [hmac_token(key, f"c1-{run_id}")]

        # A valid edit: mask the customer id instead of hashing it.
        tuned = copy.deepcopy(base)
        _rule(tuned, "customer-id")["action"] = "mask"
        sc.push(tuned)
        st = sc.wait_ecds("update_success", 2)
        good_version = st["version"]
        assert _customer_header(sc, f"c2-{run_id}", True, pki) == ["[REDACTED]"]

        # An invalid edit: a typo in a new rule.
        broken = copy.deepcopy(tuned)
        broken["redaction"]["rules"].append({"name": "iban", "jsn": ["$..iban"], "action": "partial"})
        sc.push(broken)
        st = sc.wait_ecds("update_rejected", 1)
        assert st["update_success"] == 2 and st["version"] == good_version, st
        log = sc.envoy.log_text()
        lines = [l for l in log.splitlines() if "meshaudit: invalid configuration: " in l]
        assert len(lines) == 1, log[-3000:]
        assert re.search(r"meshaudit: invalid configuration: redaction\.rules\[\d+\][^:]*: .*jsn", lines[0]), lines[0]
        assert f"Filesystem config update rejected: Unable to create Wasm plugin {sc.plugin.config_name}" in log

        # The last good configuration (mask) is in force, on both filter chains.
        for i in range(6):
            c = f"c3-{i}-{run_id}"
            assert _customer_header(sc, c, tls=bool(i % 2), pki=pki) == ["[REDACTED]"], c
        assert sc.ecds_stats()["version"] == good_version

        # The fix applies.
        fixed = copy.deepcopy(tuned)
        fixed["redaction"]["rules"].append({"name": "iban", "json": ["$..iban"], "action": "partial"})
        _rule(fixed, "customer-id")["action"] = "hash"
        sc.push(fixed)
        st = sc.wait_ecds("update_success", 3)
        assert st["version"] != good_version
        assert _customer_header(sc, f"c4-{run_id}", True, pki) == [hmac_token(key, f"c4-{run_id}")]
    finally:
        sc.stop()


def test_new_sidecar_with_invalid_plugin_config_fails_closed_until_fixed(wasm, pki, tmp_path, run_id):
    """A sidecar whose first configuration of the filter is rejected has no last good one.
    Envoy 1.40 then ends the listener's warming anyway (the ECDS init target is released by the
    rejection) and answers every request with 500 itself: nothing reaches the application
    unaudited, and the pod looks ready. A valid configuration, once pushed, takes over."""
    key = secrets.token_hex(16)
    doc = testkit.istio_manifest(HTTP_FILE, "WasmPlugin", "meshaudit-http")
    broken = copy.deepcopy(doc["spec"]["pluginConfig"])
    broken["max_batch_events"] = "lots"
    sc = testkit.IstioSidecar(tmp_path, doc, wasm=wasm, pki=pki, host_env={"MESHAUDIT_HASH_KEY": key})
    sc.start(first_plugin_config=broken, wait_ready=False)
    try:
        testkit.wait_for(lambda: testkit.port_open(sc.admin_port), 30, 0.05, "envoy admin")
        st = sc.wait_ecds("update_rejected", 1)
        assert st.get("update_success", 0) == 0
        testkit.wait_for(lambda: testkit.port_open(sc.listener_port), 30, 0.05, "listener open")
        assert testkit.http_get(sc.envoy.admin_url + "/ready") == (200, "LIVE\n")
        assert re.search(r"meshaudit: invalid configuration: max_batch_events: ", sc.envoy.log_text())
        for tls in (None, sc.tls(pki.clients["web"])):
            resp = sc.request(f"/v1/orders/n0-{run_id}", tls=tls)
            assert resp.status == 500, resp
        assert sc.upstream.requests == [], "a request reached the application without the filter"

        sc.push()  # the manifest's valid pluginConfig
        sc.wait_ecds("update_success", 1)
        assert _customer_header(sc, f"n1-{run_id}", True, pki) == [hmac_token(key, f"n1-{run_id}")]
        assert not [r for r in sc.rotel.records() if r.attr("url.path") == f"/v1/orders/n0-{run_id}"]
    finally:
        sc.stop()


# =============================================================================================
# 4. The payments example
# =============================================================================================

def test_payments_example(wasm):
    proc = subprocess.run(
        [sys.executable, str(testkit.REPO / "examples" / "payments" / "demo.py")],
        capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "planted secrets found in what the collector received: none" in out, out
    assert "card.number = ****4242" in out, out
    assert re.search(r"x-customer-id = \['hmac:[0-9a-f]{32}'\]", out), out
    assert re.search(r"fail-closed: POST /v1/payments -> 503 x-meshaudit: fail-closed after \d+ requests", out), out
    assert "GET /v1/payments/pay_1 -> 200 while payments are refused" in out, out


def test_payments_example_exits_non_zero_when_a_secret_leaks(wasm):
    """The example's leak check is real: without the customer-id rule the raw id reaches the
    collector, and the script says so and exits 1."""
    proc = subprocess.run(
        [sys.executable, str(testkit.REPO / "examples" / "payments" / "demo.py"), "--drop-rule", "customer-id"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"planted secrets found in what the collector received: .*customer id", proc.stdout), proc.stdout


def test_hash_key_missing_from_the_sidecar_environment_is_refused(wasm, pki, tmp_path):
    """`valueFrom: HOST` is the key's only way in: a sidecar whose environment lacks it
    refuses the configuration and the log says which variable is missing."""
    doc = testkit.istio_manifest(HTTP_FILE, "WasmPlugin", "meshaudit-http")
    sc = testkit.IstioSidecar(tmp_path, doc, wasm=wasm, pki=pki, host_env={})
    assert "MESHAUDIT_HASH_KEY" not in os.environ, "the test process must not carry the key"
    sc.start(wait_ready=False)
    try:
        testkit.wait_for(lambda: testkit.port_open(sc.admin_port), 30, 0.05, "envoy admin")
        sc.wait_ecds("update_rejected", 1)
        line = next(l for l in sc.envoy.log_text().splitlines() if "meshaudit: invalid configuration: " in l)
        assert "MESHAUDIT_HASH_KEY" in line and "customer-id" in line, line
    finally:
        sc.stop()


def test_trafficextension_audits_in_a_sidecar(wasm, pki, tmp_path, run_id):
    """trafficextension.yaml's HTTP extension in Envoy: its ECDS resource carries the
    TrafficExtension prefix; the filter inside is the WasmPlugin's."""
    key = secrets.token_hex(16)
    doc = testkit.istio_manifest(TE_FILE, "TrafficExtension", "meshaudit-http")
    sc = testkit.IstioSidecar(tmp_path, doc, wasm=wasm, pki=pki, host_env={"MESHAUDIT_HASH_KEY": key})
    assert sc.plugin.resource_name == "extensions.istio.io/trafficextension/payments.meshaudit-http"
    sc.start()
    try:
        assert sc.wait_ecds("update_success", 1)["update_rejected"] == 0
        assert _customer_header(sc, f"te-{run_id}", True, pki) == [hmac_token(key, f"te-{run_id}")]
    finally:
        sc.stop()
