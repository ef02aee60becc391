"""Kubernetes-style validation of Istio manifests, as `kubectl apply` with strict field validation
does it, without a cluster: tests/e2e/test_istio.py (the shipped istio/*.yaml) and
tests/e2e/test_kustomize.py (what each istio/kustomize overlay renders) use this one validator.

Every WasmPlugin and TrafficExtension validates against the OpenAPI v3 schema of its CRD
(tests/fixtures/*-crd.yaml, copied from istio/api with their provenance), converted to JSON
Schema with Kubernetes' rules kept: a field the schema does not know fails unless
`x-kubernetes-preserve-unknown-fields` allows it; `nullable`, int-or-string, `format: int32`,
list-map keys and the CEL rules (`x-kubernetes-validations`) of these CRDs are enforced; an
extension or CEL rule the converter does not know is an error, never skipped. ServiceEntry,
DestinationRule and EnvoyFilter have no CRD in fixtures: they are checked against a structural
schema written here from the Istio API reference.

Needs jsonschema (tests/e2e/requirements.txt): import it as `testkit.istio_schema`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import jsonschema
import yaml

from .core import REPO

FIXTURES = REPO / "tests" / "fixtures"

DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

# What the API server adds around a CRD's schema. Only the metadata fields these manifests use
# are allowed: stricter than Kubernetes (which knows more ObjectMeta fields), never looser.
OBJECT_META = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 253, "pattern": DNS1123_SUBDOMAIN},
        "namespace": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": DNS1123_LABEL},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["name"],
    "additionalProperties": False,
}


def _url_scheme_ok(value: str, schemes: tuple[str, ...]) -> bool:
    """CEL `isURL(self) ? url(self).getScheme() in S : isURL("http://"+self) && ...`.

    isURL follows Go's url.ParseRequestURI: an absolute URL (`scheme:...`) or an absolute path.
    Without a scheme the CRD retries with `http://` in front, so a bare `registry/repo:tag`
    passes (Istio reads it as oci://)."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", value)
    if m:
        return m.group(1).lower() in schemes
    if value.startswith("/"):
        return "" in schemes
    return bool(value) and " " not in value and "http" in schemes


# Every CEL rule in the CRDs under tests/fixtures, as a Python predicate on `self`. The text is
# matched exactly (whitespace collapsed): a CRD update with a new rule fails the conversion until
# the rule is added here.
CEL_RULES: dict[str, Callable[[Any], bool]] = {
    '!self.contains("*")': lambda s: "*" not in s,
    'self.all(key, !key.contains("*"))': lambda s: all("*" not in k for k in s),
    "self.all(key, key.size() != 0)": lambda s: all(len(k) != 0 for k in s),
    "self.size() == 0": lambda s: len(s) == 0,
    'isURL(self) ? (url(self).getScheme() in ["", "http", "https", "oci", "file"]) : (isURL("http://" + self) && '
    'url("http://" + self).getScheme() in ["", "http", "https", "oci", "file"])':
        lambda s: _url_scheme_ok(s, ("", "http", "https", "oci", "file")),
    'isURL(self) ? (url(self).getScheme() in ["", "http", "https", "file", "oci"]) : (isURL("http://" + self) && '
    'url("http://" + self).getScheme() in ["", "http", "https", "file", "oci"])':
        lambda s: _url_scheme_ok(s, ("", "http", "https", "file", "oci")),
    '(has(self.valueFrom) ? self.valueFrom : "") != "HOST" || !has(self.value)':
        lambda s: s.get("valueFrom", "") != "HOST" or "value" not in s,
    "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1":
        lambda s: sum(k in s for k in ("selector", "targetRef", "targetRefs")) <= 1,
    "(has(self.selector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1":
        lambda s: sum(k in s for k in ("selector", "targetRefs")) <= 1,
    "has(self.wasm) != has(self.lua)": lambda s: ("wasm" in s) != ("lua" in s),
}


def _norm_rule(rule: str) -> str:
    return " ".join(rule.split())


CEL_RULES = {_norm_rule(k): v for k, v in CEL_RULES.items()}

INT_FORMATS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
PLAIN_KEYWORDS = {
    "required", "pattern", "minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems",
    "minProperties", "maxProperties", "uniqueItems", "exclusiveMinimum", "exclusiveMaximum",
}
IGNORED_KEYWORDS = {"description", "title", "default", "example"}
KNOWN_KEYWORDS = PLAIN_KEYWORDS | IGNORED_KEYWORDS | {
    "type", "properties", "items", "enum", "additionalProperties", "oneOf", "anyOf", "allOf", "not",
    "nullable", "format", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string",
    "x-kubernetes-validations", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
}


class SchemaConversionError(ValueError):
    pass


def openapi_to_jsonschema(node: dict, where: str = "$") -> dict:
    """A CRD's structural OpenAPI v3 schema as JSON Schema (draft 2020-12) with Kubernetes'
    semantics: objects refuse unknown fields unless `x-kubernetes-preserve-unknown-fields`;
    `nullable` admits null; int-or-string; `format: int32/int64` bounds; CEL rules and list-map
    keys through the custom keywords `x-k8s-cel` and `x-k8s-list-map-keys`."""
    unknown = set(node) - KNOWN_KEYWORDS
    if unknown:
        raise SchemaConversionError(f"{where}: unsupported schema keywords {sorted(unknown)}")
    out: dict[str, Any] = {}
    typ = node.get("type")
    nullable = bool(node.get("nullable"))
    if node.get("x-kubernetes-int-or-string"):
        if typ is not None:
            raise SchemaConversionError(f"{where}: int-or-string with a type")
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    elif typ is not None:
        out["type"] = [typ, "null"] if nullable else typ
    for key in PLAIN_KEYWORDS & set(node):
        out[key] = node[key]
    if "enum" in node:
        out["enum"] = list(node["enum"]) + ([None] if nullable else [])
    fmt = node.get("format")
    if fmt is not None:
        if fmt in INT_FORMATS:
            lo, hi = INT_FORMATS[fmt]
            out["minimum"] = max(out.get("minimum", lo), lo)
            out["maximum"] = min(out.get("maximum", hi), hi)
        elif fmt in ("date-time", "byte", "date"):
            out["format"] = fmt
        else:
            raise SchemaConversionError(f"{where}: unsupported format {fmt!r}")
    if "properties" in node:
        out["properties"] = {k: openapi_to_jsonschema(v, f"{where}.{k}") for k, v in node["properties"].items()}
    if "items" in node:
        out["items"] = openapi_to_jsonschema(node["items"], f"{where}[]")
    ap = node.get("additionalProperties")
    if isinstance(ap, dict):
        out["additionalProperties"] = openapi_to_jsonschema(ap, f"{where}.*")
    elif isinstance(ap, bool):
        out["additionalProperties"] = ap
    for key in ("oneOf", "anyOf", "allOf"):
        if key in node:
            branches = [openapi_to_jsonschema(b, f"{where}/{key}") for b in node[key]]
            if key == "anyOf" and "anyOf" in out:  # int-or-string already says it
                continue
            out[key] = branches
    if "not" in node:
        out["not"] = openapi_to_jsonschema(node["not"], f"{where}/not")
    if typ == "object" and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    rules = node.get("x-kubernetes-validations")
    if rules:
        checked = []
        for r in rules:
            text = _norm_rule(r["rule"])
            if text not in CEL_RULES:
                raise SchemaConversionError(f"{where}: CEL rule not implemented here: {r['rule']!r}")
            checked.append([text, r.get("message", text)])
        out["x-k8s-cel"] = checked
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "map":
        keys = node.get("x-kubernetes-list-map-keys")
        if not keys:
            raise SchemaConversionError(f"{where}: list-type map without keys")
        out["x-k8s-list-map-keys"] = list(keys)
    elif list_type == "set":
        out["uniqueItems"] = True
    elif list_type not in (None, "atomic"):
        raise SchemaConversionError(f"{where}: unsupported list type {list_type!r}")
    return out


def _cel(validator, rules, instance, schema) -> Iterator[jsonschema.ValidationError]:
    for text, message in rules:
        try:
            ok = CEL_RULES[text](instance)
        except (TypeError, AttributeError):
            continue  # the type keyword reports the wrong type
        if not ok:
            yield jsonschema.ValidationError(f"{message} (rule: {text})")


def _list_map(validator, keys, instance, schema) -> Iterator[jsonschema.ValidationError]:
    if not isinstance(instance, list):
        return
    seen = set()
    for item in instance:
        if not isinstance(item, dict):
            continue
        key = tuple(json.dumps(item.get(k), sort_keys=True) for k in keys)
        if key in seen:
            yield jsonschema.ValidationError(f"duplicate entries in a list-map keyed by {keys}: {key}")
        seen.add(key)


K8sValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"x-k8s-cel": _cel, "x-k8s-list-map-keys": _list_map}
)


def crd_schema(path: Path) -> tuple[set[str], str, dict]:
    """(served apiVersions, kind, JSON Schema of the whole object) of a CRD file."""
    crd = yaml.safe_load(path.read_text())
    assert crd["kind"] == "CustomResourceDefinition", path
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    versions = [v for v in crd["spec"]["versions"] if v.get("served")]
    assert len(versions) == 1, f"{path}: one served version expected, got {[v['name'] for v in versions]}"
    body = openapi_to_jsonschema(versions[0]["schema"]["openAPIV3Schema"])
    body.setdefault("properties", {})
    body["properties"]["apiVersion"] = {"const": f"{group}/{versions[0]['name']}"}
    body["properties"]["kind"] = {"const": kind}
    body["properties"]["metadata"] = OBJECT_META
    body["required"] = sorted(set(body.get("required", [])) | {"apiVersion", "kind", "metadata"})
    body["additionalProperties"] = False
    return {f"{group}/{versions[0]['name']}"}, kind, body


# --- ServiceEntry / DestinationRule / EnvoyFilter: no CRD in fixtures, a structural schema from
# the API docs (networking.istio.io: service_entry.proto, destination_rule.proto, envoy_filter.proto) ---

def _obj(props: dict, required: tuple[str, ...] = ()) -> dict:
    out = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = list(required)
    return out


_STR = {"type": "string"}
_STRS = {"type": "array", "items": _STR}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_LABELS = {"type": "object", "additionalProperties": _STR}
_OPAQUE = {"type": "object"}  # settings these manifests do not use: checked as objects only

CLIENT_TLS = _obj({
    "mode": {"enum": ["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]},
    "clientCertificate": _STR, "privateKey": _STR, "caCertificates": _STR, "credentialName": _STR,
    "subjectAltNames": _STRS, "sni": _STR, "insecureSkipVerify": {"type": "boolean"}, "caCrl": _STR,
})
_POLICY_COMMON = {
    "loadBalancer": _OPAQUE, "connectionPool": _OPAQUE, "outlierDetection": _OPAQUE, "tls": CLIENT_TLS,
}
TRAFFIC_POLICY = _obj({
    **_POLICY_COMMON,
    "portLevelSettings": {"type": "array", "items": _obj({"port": _obj({"number": _PORT}), **_POLICY_COMMON})},
    "tunnel": _OPAQUE, "proxyProtocol": _OPAQUE,
})
STRUCTURAL = {
    "ServiceEntry": _obj({
        "hosts": {"type": "array", "items": _STR, "minItems": 1},
        "addresses": _STRS,
        "ports": {"type": "array", "items": _obj({
            "number": _PORT,
            "protocol": {"enum": ["HTTP", "HTTPS", "GRPC", "HTTP2", "MONGO", "TCP", "TLS"]},
            "name": {"type": "string", "minLength": 1},
            "targetPort": _PORT,
        }, ("number", "name")), "x-k8s-list-map-keys": ["number"]},
        "location": {"enum": ["MESH_EXTERNAL", "MESH_INTERNAL"]},
        "resolution": {"enum": ["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"]},
        "endpoints": {"type": "array", "items": _obj({
            "address": _STR, "ports": {"type": "object", "additionalProperties": _PORT}, "labels": _LABELS,
            "network": _STR, "locality": _STR, "weight": {"type": "integer", "minimum": 0},
            "serviceAccount": _STR,
        })},
        "workloadSelector": _obj({"labels": _LABELS}),
        "exportTo": _STRS,
        "subjectAltNames": _STRS,
    }, ("hosts",)),
    "DestinationRule": _obj({
        "host": {"type": "string", "minLength": 1},
        "trafficPolicy": TRAFFIC_POLICY,
        "subsets": {"type": "array", "items": _obj({"name": _STR, "labels": _LABELS, "trafficPolicy": TRAFFIC_POLICY}, ("name",))},
        "exportTo": _STRS,
        "workloadSelector": _obj({"matchLabels": _LABELS}),
    }, ("host",)),
    "EnvoyFilter": _obj({
        "workloadSelector": _obj({"labels": _LABELS}),
        "targetRefs": {"type": "array", "items": _obj({"group": _STR, "kind": _STR, "name": _STR, "namespace": _STR})},
        "priority": {"type": "integer", "format": "int32"},
        "configPatches": {"type": "array", "items": _obj({
            "applyTo": {"enum": ["INVALID", "LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER",
                                 "ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE", "CLUSTER", "EXTENSION_CONFIG",
                                 "BOOTSTRAP", "LISTENER_FILTER"]},
            "match": _obj({
                "context": {"enum": ["ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"]},
                "proxy": _obj({"proxyVersion": _STR, "metadata": _LABELS}),
                "listener": _obj({
                    "portNumber": {"type": "integer", "minimum": 0, "maximum": 4294967295},
                    "filterChain": _obj({
                        "name": _STR, "sni": _STR, "transportProtocol": _STR, "applicationProtocols": _STR,
                        "filter": _obj({"name": _STR, "subFilter": _obj({"name": _STR})}),
                        "destinationPort": {"type": "integer", "minimum": 0, "maximum": 4294967295},
                    }),
                    "listenerFilter": _STR,
                    "name": _STR,
                }),
                "routeConfiguration": _OPAQUE,
                "cluster": _OPAQUE,
            }),
            "patch": _obj({
                "operation": {"enum": ["INVALID", "MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER",
                                       "INSERT_FIRST", "REPLACE"]},
                "value": _OPAQUE,  # a protobuf Struct: the Envoy configuration itself
                "filterClass": {"enum": ["UNSPECIFIED", "AUTHN", "AUTHZ", "STATS"]},
            }),
        })},
    }),
}
# Versions each kind is served as.
STRUCTURAL_VERSIONS = {"ServiceEntry": ("v1", "v1beta1", "v1alpha3"), "DestinationRule": ("v1", "v1beta1", "v1alpha3"),
                       "EnvoyFilter": ("v1alpha3",)}


def structural_schema(kind: str) -> dict:
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"enum": [f"networking.istio.io/{v}" for v in STRUCTURAL_VERSIONS[kind]]},
            "kind": {"const": kind},
            "metadata": OBJECT_META,
            "spec": STRUCTURAL[kind],
        },
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
    }


CRD_FIXTURES = ("wasmplugin-crd.yaml", "trafficextension-crd.yaml")


def load_schemas() -> dict[str, dict]:
    """Kind -> JSON Schema: the CRDs under tests/fixtures, and the structural schemas above;
    each checked as a schema."""
    out = {}
    for crd in CRD_FIXTURES:
        _, kind, body = crd_schema(FIXTURES / crd)
        out[kind] = body
    for kind in STRUCTURAL:
        out[kind] = structural_schema(kind)
    for body in out.values():
        K8sValidator.check_schema(body)
    return out


def validation_errors(doc: Any, schemas: dict[str, dict]) -> list[str]:
    if not isinstance(doc, dict):
        return [f"not a mapping: {type(doc).__name__}"]
    kind = doc.get("kind")
    if kind not in schemas:
        return [f"no schema for kind {kind!r}"]
    v = K8sValidator(schemas[kind], format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in v.iter_errors(doc)]
