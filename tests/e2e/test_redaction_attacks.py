"""Adversarial leak tests of meshaudit's redaction (docs/redaction.md, including its "Body
capture"), against a real Envoy and the real Rotel collector.

One Envoy (envoy/sidecar.yaml, plaintext chain) runs meshaudit with the default rule, two user
rules (`session-id`: query `jsessionid`; `otp`: form and JSON `otp`, `truncate` keeping 8) and
body capture of JSON, form, text and multipart bodies on two routes: `/atk/` (4096 bytes) and
`/cut/` (64 bytes). Random canaries (made up per run) are planted where a redactor that
matches field names too literally, cuts before it redacts, or reads text without knowing what
it is would let them through:

1. field names written as people write them (`newPassword`, `user[password]`, `API_KEY`, ...);
2. secrets straddling a cut: the 64-byte body limit at every offset inside a card, an email,
   an IBAN, a JWT and a `password` value, and the 8 KiB header value limit inside a card;
3. text holding JSON or form pairs, multipart parts, URLs in Referer and Location, JSON string
   escapes and JSON documents inside JSON strings;
4. `;` parameters in path segments and in the query, and a `#fragment` in the request line;
5. the `truncate` action on short one-time codes;
6. configurations that must be refused: a secret pasted into `redaction.hash_key_env`, custom
   detectors that can match the empty string.

Every case checks that the canary is nowhere in the collector's whole output nor in Envoy's log,
raw or in any encoding (`testkit.encodings`), and that the field is still there in its redacted
form, so a test cannot pass because the event or the field went missing.

What Envoy 1.40 itself does with these requests (and so what the filter gets to see):
- a request line with `#` (`GET /p?x=1#access_token=S&state=v`, `GET /p#access_token=S`) is
  answered by Envoy with 400 (`response_code_details` `path_normalization_failed`); the event
  is still made, with the target as sent: `url.path` `/p`, `url.query`
  `x=1#access_token=S&state=v`, or `url.path` `/p#access_token=S` with no query;
- `;` stays in the path and the query as sent (`url.path` `/app;jsessionid=S/x;v=2;token=S`,
  `url.query` `a=1;token=S&b=2`);
- a `referer` holding a fragment is removed (header sanitizing) before any filter runs: neither
  the event nor the application sees it; a `location` response header with one passes.
"""

from __future__ import annotations

import base64
import json
import random
import re
import secrets
import string
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

import testkit
from testkit import MASK, b64url, card_number, de_iban, leak_sites, leaks, rules_of, windows

CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded", "text/plain", "multipart/form-data"]
CUT_BYTES = 64  # body capture limit of /cut/
HEADER_LIMIT = 8192  # header values longer than 8 KiB are cut: docs/redaction.md#cuts-redact-first-cut-second
FRAGMENT = 8  # no fragment of a secret this long may reach the collector
TRUNCATE_KEEP = 8
DEEP_STEPS = 12
DEEP_LEVELS = 60  # nested `a` members: C(60, 12) ~ 1.4e12 ways to place the steps

RULES = [
    # `jsessionid` is no default name: it names `;jsessionid=` path parameters too.
    {"name": "session-id", "query": ["jsessionid"]},
    {"name": "otp", "form": ["otp"], "json": ["$..otp"], "action": "truncate", "keep": TRUNCATE_KEEP},
    # Many `..` steps: matched naively, a few hundred bytes of nested `a` members take
    # exponential time (the review stalled a worker for two seconds with 379 bytes).
    {"name": "deep", "json": ["$" + "..a" * DEEP_STEPS]},
]

PLUGIN = {
    "flush_interval_ms": 100,
    "request_headers": ["content-type", "referer", "x-audit-note", "cookie", "authorization"],
    "response_headers": ["content-type", "set-cookie", "location"],
    "body_capture": [
        {"match": {"path_prefix": "/atk/"}, "max_bytes": 4096, "content_types": CONTENT_TYPES},
        {"match": {"path_prefix": "/cut/"}, "max_bytes": CUT_BYTES, "content_types": CONTENT_TYPES},
    ],
    "redaction": {"defaults": True, "rules": RULES},
}

_RNG = random.Random(secrets.randbits(64))


def letters(n: int) -> str:
    """Random lower-case letters: no detector takes them for a secret, so only the rule under
    test can redact them (a hex canary may hold a Luhn-valid run of digits)."""
    return "".join(_RNG.choice(string.ascii_lowercase) for _ in range(n))


def canary(prefix: str) -> str:
    return prefix + letters(16)


def short_jwt() -> str:
    """A JWT short enough (57 characters) for a 64-byte limit to fall at every offset in it."""
    header = b64url(json.dumps({"alg": "HS256"}, separators=(",", ":")).encode())
    payload = b64url(json.dumps({"s": letters(6)}, separators=(",", ":")).encode())
    jwt = f"{header}.{payload}.{b64url(secrets.token_bytes(12))}"
    assert len(jwt) == 57 and jwt.startswith("eyJ"), jwt
    return jwt


def json_u(s: str) -> str:
    """Every character as a JSON `\\uXXXX` escape."""
    return "".join(f"\\u{ord(ch):04x}" for ch in s)


def string_values(rec) -> list[tuple[str, str]]:
    """(attribute, text) of every string in a record: body, attributes, resource."""
    out = [("<log body>", str(rec.body))]
    for source in (rec.attributes, rec.resource):
        for key, value in source.items():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str):
                    out.append((key, item))
    return out


def multipart_parts(body: str, boundary: str) -> dict[str, str]:
    """{part name: content} of a multipart/form-data body. Line ends are compared as `\n`:
    the Rotel log parser joins a value's lines with `\n`, so CRLF arrives as LF."""
    parts = {}
    for chunk in body.replace("\r\n", "\n").split(f"--{boundary}")[1:]:
        if chunk.startswith("--"):
            break
        head, sep, content = chunk.partition("\n\n")
        assert sep, f"a part without a blank line: {chunk!r}"
        m = re.search(r'name="([^"]*)"', head)
        assert m, f"a part without a name: {head!r}"
        parts[m.group(1)] = content[:-1] if content.endswith("\n") else content
    return parts


# ---------------------------------------------------------------------------------------------
# The stack and everything sent through it
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory, wasm, pki):
    with testkit.sidecar_stack(tmp_path_factory.mktemp("redaction-attacks"), wasm, pki, PLUGIN) as s:
        yield s


@dataclass
class Case:
    rids: list[str]
    secrets: dict[str, str]  # canaries nothing may hold, in any encoding
    data: dict = field(default_factory=dict)  # what the checks need
    reaches_upstream: bool = True


@dataclass
class Attack:
    run_id: str
    cases: dict[str, Case]
    by_rid: dict[str, testkit.LogRecord]
    records: list
    raw: str
    envoy_log: str
    upstream_text: str

    def event(self, rid: str) -> testkit.LogRecord:
        return self.by_rid[rid]

    def assert_no_leak(self, case: Case, literals: dict[str, str] | None = None) -> None:
        """No canary of the case, in any encoding, in the collector's output or Envoy's log;
        nor any of `literals` (exact text) there."""
        found = leaks(self.raw, case.secrets)
        assert not found, "canaries at the collector:\n" + "\n".join(leak_sites(self.records, case.secrets) or found)
        found = leaks(self.envoy_log, case.secrets)
        assert not found, f"canaries in the Envoy log: {found}"
        for name, text in (literals or {}).items():
            assert text not in self.raw, f"{name} ({text!r}) at the collector"
            assert text not in self.envoy_log, f"{name} ({text!r}) in the Envoy log"


class Sender:
    def __init__(self, stack: testkit.Stack, run_id: str) -> None:
        self.stack = stack
        self.run_id = run_id
        self.rids: list[str] = []

    def rid(self, name: str) -> str:
        rid = f"atk-{self.run_id}-{name}"
        self.rids.append(rid)
        return rid

    def go(
        self,
        name: str,
        path: str,
        *,
        method: str = "GET",
        headers=(),
        body: bytes | None = None,
        reply: bytes = b"ok\n",
        reply_type: str = "text/plain",
        reply_headers: dict[str, str] | None = None,
    ) -> str:
        """One request through Envoy; the upstream answers `reply` (never an echo of the
        request, which would carry its secrets into the response body)."""
        rid = self.rid(name)
        hdrs = [
            ("x-request-id", rid),
            ("x-upstream-body-b64", base64.b64encode(reply).decode()),
            ("x-upstream-content-type", reply_type),
            *[(f"x-upstream-header-{k}", v) for k, v in (reply_headers or {}).items()],
            *headers,
        ]
        resp = self.stack.request(path, method=method, headers=hdrs, body=body)
        assert resp.status == 200, (name, resp.status, resp.body[:300])
        assert resp.body == reply, (name, resp.body[:300])
        return rid


# --- 1. field names --------------------------------------------------------------------------

JSON_NAMES = ["Password", "PASSWORD", "newPassword", "password_confirmation", "userPassword", "client-secret", "accessToken"]
FORM_NAMES = ["user[password]", "token[]", "user.password", "Password", "API_KEY"]
# Near misses: a short rule name (`key`, `auth`, `sig`, `cvc`) matches whole words only.
JSON_NEAR = ["cvcode", "passage"]
FORM_NEAR = ["keyboard", "author", "signal"]


def send_names(s: Sender) -> dict[str, Case]:
    base = f"/atk/{s.run_id}/names"
    cases = {}

    doc_secrets = {n: canary("pw") for n in JSON_NAMES}
    near = {n: "near" + letters(10) for n in JSON_NEAR}
    doc = {**doc_secrets, **near, "visible": "visible" + letters(8)}
    rid = s.go("names-json", f"{base}/json", method="POST", headers=[("content-type", "application/json")], body=json.dumps(doc).encode())
    cases["names-json"] = Case([rid], {f"json {n}": v for n, v in doc_secrets.items()}, {"doc": doc, "near": near})

    form_secrets = {n: canary("fv") for n in FORM_NAMES}
    near = {n: "near" + letters(10) for n in FORM_NEAR}
    pairs = [*form_secrets.items(), *near.items()]
    rid = s.go(
        "names-form",
        f"{base}/form",
        method="POST",
        headers=[("content-type", "application/x-www-form-urlencoded")],
        body=urlencode(pairs).encode(),  # names percent-encoded, as browsers send them
    )
    cases["names-form"] = Case([rid], {f"form {n}": v for n, v in form_secrets.items()}, {"near": near})

    query_secrets = {n: canary("qv") for n in FORM_NAMES}
    near = {n: "near" + letters(10) for n in FORM_NEAR}
    query = "&".join(f"{n}={v}" for n, v in [*query_secrets.items(), *near.items()])  # names as written
    rid = s.go("names-query", f"{base}/query?{query}&page=2")
    cases["names-query"] = Case([rid], {f"query {n}": v for n, v in query_secrets.items()}, {"near": near})
    return cases


# --- 2. cuts ---------------------------------------------------------------------------------

CUT_RULE = {
    "card": "detector.card",
    "email": "detector.email",
    "iban": "detector.iban",
    "jwt": "detector.jwt",
    "password": "default",
}


def cut_body(kind: str, secret: str, k: int) -> tuple[str, bytes, str]:
    """(content type, body, text before the secret): the limit falls after the secret's k-th
    character."""
    at = CUT_BYTES - k  # where the secret starts
    if kind == "password":
        head = '{"pad":"' + "." * (at - 22) + '","password":"'
        assert len(head) == at
        return "application/json", (head + secret + '","n":"' + "z" * 40 + '"}').encode(), head
    head = "." * (at - 1) + " "
    return "text/plain", (head + secret + " end " + "z" * 40).encode(), head


def send_cuts(s: Sender) -> dict[str, Case]:
    rng = random.Random(secrets.randbits(64))
    cut_secrets = {
        "card": card_number(rng),
        "email": f"{letters(6)}.{letters(5)}@{letters(7)}.org",
        "iban": de_iban(rng),
        "jwt": short_jwt(),
        "password": "Pw" + letters(16),
    }
    jobs = [(kind, k) for kind, secret in cut_secrets.items() for k in range(1, len(secret))]
    assert all(CUT_BYTES - k >= (22 if kind == "password" else 1) for kind, k in jobs)
    plan = []  # (rid, [(side, kind, k, body, head)])
    for i in range(0, len(jobs), 2):
        (rkind, rk), *resp = jobs[i:i + 2]
        ctype, body, head = cut_body(rkind, cut_secrets[rkind], rk)
        sides = [("request", rkind, rk, body, head)]
        reply, reply_type = b"ok\n", "text/plain"
        if resp:
            (pkind, pk), = resp
            reply_type, reply, phead = cut_body(pkind, cut_secrets[pkind], pk)
            sides.append(("response", pkind, pk, reply, phead))
        rid = s.go(
            f"cut-{i // 2}",
            f"/cut/{s.run_id}/{i // 2}",
            method="POST",
            headers=[("content-type", ctype)],
            body=body,
            reply=reply,
            reply_type=reply_type,
        )
        plan.append((rid, sides))
    cases = {
        "cut-bodies": Case([rid for rid, _ in plan], {f"cut {k}": v for k, v in cut_secrets.items()}, {"plan": plan, "secrets": cut_secrets})
    }

    card = card_number(rng)
    header_plan = []  # (rid, [k, ...])
    ks = list(range(1, len(card)))
    for j in range(0, len(ks), 5):
        offsets = ks[j:j + 5]
        values = []
        for k in offsets:
            at = HEADER_LIMIT - k
            values.append(("x-audit-note", "." * (at - 1) + " " + card + " end " + "z" * 300))
        rid = s.go(f"cut-header-{j // 5}", f"/atk/{s.run_id}/cut-header/{j // 5}", headers=values)
        header_plan.append((rid, offsets))
    cases["cut-header"] = Case([rid for rid, _ in header_plan], {"header card": card}, {"plan": header_plan, "card": card})
    return cases


# --- 3. text parsed by what it is ------------------------------------------------------------


def send_text_kinds(s: Sender) -> dict[str, Case]:
    base = f"/atk/{s.run_id}/text"
    cases = {}

    pw = canary("tj")
    visible = "visible" + letters(8)
    rid = s.go(
        "text-json",
        f"{base}/json",
        method="POST",
        headers=[("content-type", "text/plain")],
        body=json.dumps({"password": pw, "note": visible}, separators=(",", ":")).encode(),
    )
    cases["text-json"] = Case([rid], {"text json password": pw}, {"visible": visible})

    pw = canary("tf")
    rid = s.go("text-form", f"{base}/form", method="POST", headers=[("content-type", "text/plain")], body=f"password={pw}&x=1".encode())
    cases["text-form"] = Case([rid], {"text form password": pw})

    boundary = "----meshaudit" + letters(12)
    parts = {"password": canary("mp"), "user[password]": canary("mu"), "token": canary("mt")}
    visible = "visible" + letters(8)
    meta = json.dumps({"token": parts["token"], "ok": visible})
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n{parts['password']}\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"user[password]\"\r\n\r\n{parts['user[password]']}\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"meta\"\r\nContent-Type: application/json\r\n\r\n{meta}\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n{visible}\r\n"
        f"--{boundary}--\r\n"
    )
    rid = s.go(
        "multipart",
        f"{base}/multipart",
        method="POST",
        headers=[("content-type", f"multipart/form-data; boundary={boundary}")],
        body=body.encode(),
    )
    cases["multipart"] = Case([rid], {f"part {n}": v for n, v in parts.items()}, {"boundary": boundary, "visible": visible})

    sec = {"referer query": canary("rq"), "location query": canary("lq"), "referer fragment": canary("rf"), "location fragment": canary("lf")}
    rid_q = s.go(
        "url-query",
        f"{base}/url-query",
        headers=[("referer", f"https://shop.example/x?token={sec['referer query']}&a=1")],
        reply_headers={"location": f"https://shop.example/cb?token={sec['location query']}&a=1"},
    )
    rid_f = s.go(
        "url-fragment",
        f"{base}/url-fragment",
        headers=[("referer", f"https://shop.example/x#access_token={sec['referer fragment']}&state=st1")],
        reply_headers={"location": f"https://shop.example/cb#access_token={sec['location fragment']}&state=st2"},
    )
    # Envoy sanitizes `referer`: one with a fragment is no valid Referer (RFC 9110) and is
    # removed before any filter runs (checked in the test), so that canary reaches nobody.
    cases["urls-in-headers"] = Case([rid_q, rid_f], sec, {"not upstream": {"referer fragment"}})

    rng = random.Random(secrets.randbits(64))
    email = f"alice.{letters(6)}@{letters(6)}.example.com"
    card_spaced, card_escaped = card_number(rng), card_number(rng)
    cb_token, inner_pw = canary("cb"), canary("ip")
    visible = "visible" + letters(8)
    # The JSON text as written (the keys name the escape used).
    literal = {
        "email-u0040": email.replace("@", "\\u0040"),
        "card-u0020": "\\u0020".join(card_spaced[i:i + 4] for i in range(0, 16, 4)),
        "card-digits-escaped": json_u(card_escaped),
        "url-escaped-slashes": f"https:\\/\\/shop.example\\/cb?token={cb_token}&a=1",
        "nested-json": '{\\"password\\":\\"' + inner_pw + '\\",\\"note\\":\\"' + visible + '\\"}',
    }
    body = (
        '{"contact":"' + literal["email-u0040"] + '","card_spaced":"' + literal["card-u0020"] + '",'
        '"card_escaped":"' + literal["card-digits-escaped"] + '","cb":"' + literal["url-escaped-slashes"] + '",'
        '"payload":"' + literal["nested-json"] + '","visible":"' + visible + '"}'
    )
    decoded = json.loads(body)  # what the escapes say
    assert decoded["contact"] == email and decoded["card_escaped"] == card_escaped
    assert decoded["card_spaced"] == " ".join(card_spaced[i:i + 4] for i in range(0, 16, 4))
    assert json.loads(decoded["payload"])["password"] == inner_pw
    rid = s.go("json-escapes", f"{base}/json-escapes", method="POST", headers=[("content-type", "application/json")], body=body.encode())
    cases["json-escapes"] = Case(
        [rid],
        {"email": email, "card (spaced)": card_spaced, "card (escaped)": card_escaped, "url token": cb_token, "nested password": inner_pw},
        {
            "literal": literal,
            "visible": visible,
            "cards": (card_spaced, card_escaped),
            # how the canaries went on the wire, escaped
            "sent as": {"email": literal["email-u0040"], "card (spaced)": literal["card-u0020"], "card (escaped)": literal["card-digits-escaped"]},
        },
    )
    return cases


# --- 4. the URL grammar ----------------------------------------------------------------------


def send_url_grammar(s: Sender) -> dict[str, Case]:
    base = f"/atk/{s.run_id}/grammar"
    sec = {"path jsessionid": canary("js"), "path token": canary("pt"), "query token": canary("qt")}
    path = f"{base}/app;jsessionid={sec['path jsessionid']}/x;v=2;token={sec['path token']}"
    rid = s.go("semicolons", f"{path}?a=1;token={sec['query token']}&b=2")
    cases = {"semicolons": Case([rid], sec, {"base": base})}

    frag = {"fragment after query": canary("fq"), "fragment in path": canary("fp")}
    lines = {
        "fragment after query": f"{base}/frag?x=1#access_token={frag['fragment after query']}&state=v",
        "fragment in path": f"{base}/frag2#access_token={frag['fragment in path']}",
    }
    rids, answers = [], {}
    for name, target in lines.items():
        rid = s.rid(name.replace(" ", "-"))
        answer = s.stack.raw_request(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: {rid}\r\nConnection: close\r\n\r\n".encode()
        )
        assert answer.startswith(b"HTTP/1.1 "), (name, answer[:200])
        rids.append(rid)
        answers[rid] = answer
    cases["fragments"] = Case(rids, frag, {"answers": answers, "base": base}, reaches_upstream=False)
    return cases


# --- 4b. signed URLs of the big clouds ---------------------------------------------------------

# Each cloud's signed-URL grammar: (parameter, secret or not). The secrets are canaries; the
# other parameters (algorithm, dates, expiry, permissions) must stay readable.
SIGNED_URLS = {
    "s3-sigv4": [
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-Credential", None),
        ("X-Amz-Date", "20261205T080000Z"),
        ("X-Amz-Expires", "900"),
        ("X-Amz-SignedHeaders", "host"),
        ("X-Amz-Security-Token", None),
        ("X-Amz-Signature", None),
    ],
    "s3-sigv2": [("AWSAccessKeyId", None), ("Expires", "1796457600"), ("Signature", None)],
    "gcs-v4": [
        ("X-Goog-Algorithm", "GOOG4-RSA-SHA256"),
        ("X-Goog-Credential", None),
        ("X-Goog-Date", "20261205T080000Z"),
        ("X-Goog-Expires", "900"),
        ("X-Goog-SignedHeaders", "host"),
        ("X-Goog-Signature", None),
    ],
    "azure-sas": [
        ("sv", "2022-11-02"),
        ("ss", "b"),
        ("srt", "o"),
        ("sp", "r"),
        ("se", "2026-12-06T00:00:00Z"),
        ("spr", "https"),
        ("sig", None),
    ],
    # `Key-Pair-Id` names a public key, not a secret; the word `key` masks it all the same.
    "cloudfront": [("Expires", "1796457600"), ("Signature", None), ("Key-Pair-Id", None)],
}


def send_signed_urls(s: Sender) -> dict[str, Case]:
    """Each cloud's signed URL as the request's own query and as a `Referer`."""
    cases = {}
    for cloud, params in SIGNED_URLS.items():
        values = {name: value if value is not None else canary("su") for name, value in params}
        secret = {f"{cloud} {name}": values[name] for name, value in params if value is None}
        query = "&".join(f"{name}={values[name]}" for name, _ in params)
        referer = f"https://storage.example.com/bucket/object.pdf?{query}"
        rid = s.go(f"signed-{cloud}", f"/atk/{s.run_id}/signed/{cloud}?{query}", headers=[("referer", referer)])
        cases[f"signed-{cloud}"] = Case([rid], secret, {"params": params, "values": values})
    return cases


# --- 5. truncate at every length -------------------------------------------------------------


def otp_values() -> list[str]:
    return [
        f"{_RNG.randrange(10**4):04d}",  # 4-digit code
        f"{_RNG.randrange(10**6):06d}",  # 6-digit code
        "k" + letters(2 * TRUNCATE_KEEP - 1),  # 16: still masked whole
        "k" + letters(2 * TRUNCATE_KEEP),  # 17: truncated
        "k" + letters(39),  # 40: truncated
    ]


def truncated(v: str) -> str:
    return MASK if len(v) <= 2 * TRUNCATE_KEEP else v[:TRUNCATE_KEEP] + "…"


def send_truncate(s: Sender) -> dict[str, Case]:
    base = f"/atk/{s.run_id}/otp"
    form_vals, json_vals = otp_values(), otp_values()
    visible = "visible" + letters(8)
    form = urlencode([*[("otp", v) for v in form_vals], ("note", visible)])
    rid_f = s.go("otp-form", f"{base}/form", method="POST", headers=[("content-type", "application/x-www-form-urlencoded")], body=form.encode())
    doc = {
        "otp": json_vals[0],
        "sms": {"otp": json_vals[1]},
        "more": [{"otp": v} for v in json_vals[2:]],
        "note": visible,
    }
    rid_j = s.go("otp-json", f"{base}/json", method="POST", headers=[("content-type", "application/json")], body=json.dumps(doc).encode())
    # What must be nowhere: the short values whole, and what truncate cuts off the long ones.
    hidden = {}
    for where, vals in (("form", form_vals), ("json", json_vals)):
        for v in vals[2:]:
            hidden[f"{where} otp len {len(v)}"] = v if len(v) <= 2 * TRUNCATE_KEEP else v[TRUNCATE_KEEP:]
    return {
        "truncate": Case(
            [rid_f, rid_j],
            hidden,
            {"form": form_vals, "json": json_vals, "visible": visible, "rids": (rid_f, rid_j)},
        )
    }


def send_deep_paths(s: Sender) -> dict[str, Case]:
    secret = canary("dp")
    body = '{"a":' * DEEP_LEVELS + json.dumps(secret) + "}" * DEEP_LEVELS
    rid = s.go("deep-json", f"/atk/{s.run_id}/deep", method="POST", headers=[("content-type", "application/json")], body=body.encode())
    return {"deep": Case([rid], {"deep value": secret}, {"body": body})}


@pytest.fixture(scope="module")
def attack(stack, run_id) -> Attack:
    """Sends every case, then waits until the collector printed an event for each request and
    nothing more can arrive."""
    s = Sender(stack, run_id)
    cases: dict[str, Case] = {}
    for send in (send_names, send_cuts, send_text_kinds, send_url_grammar, send_signed_urls, send_truncate, send_deep_paths):
        cases.update(send(s))
    wanted = set(s.rids)
    assert len(wanted) == len(s.rids)
    mine = lambda r: r.attr("meshaudit.request.id") in wanted  # noqa: E731
    stack.wait_records(mine, len(wanted), timeout=30, what="attack events")
    stack.wait_settled()
    records = [r for r in stack.records() if mine(r)]
    by_rid = {}
    for r in records:
        rid = r.attr("meshaudit.request.id")
        assert rid not in by_rid, f"two events for {rid}"
        by_rid[rid] = r
    upstream_text = "\n".join(
        f"{q.path}\n{json.dumps(q.headers)}\n{q.body.decode(errors='replace')}" for q in stack.upstream.requests
    )
    return Attack(
        run_id=run_id,
        cases=cases,
        by_rid=by_rid,
        records=records,
        raw=stack.rotel.raw(),
        envoy_log=stack.envoy.log_text(),
        upstream_text=upstream_text,
    )


def test_every_request_has_its_event_and_envoy_had_every_canary(attack, stack):
    """One event per request, none dropped; the application (or, for response-side canaries,
    the reply it was told to send) really carried each canary, so Envoy had it to leak."""
    assert len(attack.by_rid) == sum(len(c.rids) for c in attack.cases.values())
    assert testkit.metric(stack.envoy.stats(), "meshaudit.events_dropped") == 0
    assert "meshaudit" in attack.envoy_log
    for name, case in attack.cases.items():
        if not case.reaches_upstream:
            continue
        for label, value in case.secrets.items():
            if label in case.data.get("not upstream", ()):
                continue
            sent_as = case.data.get("sent as", {}).get(label)
            reached = sent_as in attack.upstream_text if sent_as else leaks(attack.upstream_text, {label: value})
            assert reached, f"{name}: {label} never reached the upstream"


# ---------------------------------------------------------------------------------------------
# 1. Field names as people write them
# ---------------------------------------------------------------------------------------------


def _body(r, side: str = "request") -> str:
    a = r.attributes
    got = a.get(f"meshaudit.{side}.body")
    assert isinstance(got, str), f"no {side} body in the event: {a}"
    return got


def _json_body(r, what: str):
    """The request body of `r`, which must still be JSON."""
    got = _body(r)
    try:
        return json.loads(got)
    except ValueError:
        pytest.fail(f"{what} is no longer JSON: {got!r}")


def test_json_member_names(attack):
    """JSON `Password`, `PASSWORD`, `newPassword`, `password_confirmation`, `userPassword`,
    `client-secret`, `accessToken` are masked by the default rule; `cvcode` and `passage` (no
    rule name as a word, none of 5+ characters inside) are kept."""
    case = attack.cases["names-json"]
    r = attack.event(case.rids[0])
    a = r.attributes
    assert a.get("meshaudit.request.body.capture") == "complete", a
    doc = case.data["doc"]
    expected = {k: (MASK if k in JSON_NAMES else v) for k, v in doc.items()}
    assert json.loads(_body(r)) == expected, a
    assert rules_of(r) == {"default": len(JSON_NAMES)}, a
    attack.assert_no_leak(case)


def test_form_field_names(attack):
    """Form fields `user[password]`, `token[]`, `user.password` (Spring), `Password`, `API_KEY`
    are masked; `keyboard`, `author`, `signal` (short names `key`, `auth`, `sig` as whole
    words only) are kept."""
    case = attack.cases["names-form"]
    r = attack.event(case.rids[0])
    a = r.attributes
    assert a.get("meshaudit.request.body.capture") == "complete", a
    got = parse_qs(_body(r), keep_blank_values=True)
    assert got == {**{n: [MASK] for n in FORM_NAMES}, **{n: [v] for n, v in case.data["near"].items()}}, a
    assert rules_of(r) == {"default": len(FORM_NAMES)}, a
    attack.assert_no_leak(case)


def test_query_parameter_names(attack):
    """The same names as query parameters, written raw (`?user[password]=...&token[]=...`)."""
    case = attack.cases["names-query"]
    r = attack.event(case.rids[0])
    a = r.attributes
    query = a.get("url.query")
    assert isinstance(query, str), a
    got = parse_qs(query, keep_blank_values=True)
    assert got == {
        **{n: [MASK] for n in FORM_NAMES},
        **{n: [v] for n, v in case.data["near"].items()},
        "page": ["2"],
    }, a
    assert rules_of(r) == {"default": len(FORM_NAMES)}, a
    attack.assert_no_leak(case)


# ---------------------------------------------------------------------------------------------
# 2. Redact first, cut second
# ---------------------------------------------------------------------------------------------


def _fragments_in_records(records, secret: str, n: int) -> list[str]:
    ws = windows(secret, n)
    out = []
    for r in records:
        for key, text in string_values(r):
            hit = ws & windows(text, n)
            if hit:
                out.append(f"{r.attr('meshaudit.request.id')} / {key}: {sorted(hit)[:3]}")
    return out


def test_secret_straddling_the_body_limit(attack):
    """A card, an email, an IBAN, a JWT (in text/plain) and a `password` value (in JSON) with
    the 64-byte limit after each of their characters in turn, on the request and the response
    side: the detector or rule fires on the whole secret, the text before it is kept, and no
    8-character fragment of it is in any event, the collector's output or Envoy's log."""
    case = attack.cases["cut-bodies"]
    problems = []
    for rid, sides in case.data["plan"]:
        r = attack.event(rid)
        a = r.attributes
        want: dict[str, int] = {}
        for side, kind, k, body, head in sides:
            want[CUT_RULE[kind]] = want.get(CUT_RULE[kind], 0) + 1
            where = f"{rid} {side} {kind} cut after {k}"
            got = a.get(f"meshaudit.{side}.body")
            if a.get(f"meshaudit.{side}.body.capture") != "truncated" or not isinstance(got, str):
                problems.append(f"{where}: capture {a.get(f'meshaudit.{side}.body.capture')!r}, body {got!r}")
                continue
            if not got.startswith(head):
                problems.append(f"{where}: the text before the secret is not kept: {got!r}")
            if len(got.encode()) > CUT_BYTES + len(MASK) + 8:
                problems.append(f"{where}: {len(got.encode())} bytes kept: {got!r}")
            kept = windows(case.data["secrets"][kind], FRAGMENT) & windows(got, FRAGMENT)
            if kept:
                problems.append(f"{where}: fragments of the secret kept {sorted(kept)[:2]}: {got!r}")
        rules = rules_of(r)
        for rule, count in want.items():
            if rules.get(rule) != count:
                problems.append(f"{rid}: {rule} fired {rules.get(rule)} times, not {count}: {rules}")
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)
    for kind, secret in case.data["secrets"].items():
        frags = _fragments_in_records(attack.records, secret, FRAGMENT)
        assert not frags, f"{kind}: {FRAGMENT}-character fragments at the collector:\n" + "\n".join(frags[:20])
        for w in windows(secret, 12):
            assert w not in attack.raw, f"{kind}: {w!r} in the collector output"
            assert w not in attack.envoy_log, f"{kind}: {w!r} in the Envoy log"
    attack.assert_no_leak(case)


def test_card_straddling_the_header_value_limit(attack):
    """`x-audit-note` values over 8 KiB with a card starting 1..15 bytes before byte 8192 (five
    values per request): each value is cut (and the cut noted), the card detector fires on each,
    and no 8-digit fragment of the card is kept."""
    case = attack.cases["cut-header"]
    card = case.data["card"]
    problems = []
    for rid, offsets in case.data["plan"]:
        r = attack.event(rid)
        a = r.attributes
        values = a.get("http.request.header.x-audit-note")
        if not isinstance(values, list) or len(values) != len(offsets):
            problems.append(f"{rid}: expected {len(offsets)} values, got {values!r:.200}")
            continue
        if "truncated:http.request.header.x-audit-note" not in (a.get("meshaudit.capture.anomalies") or []):
            problems.append(f"{rid}: the cut is not noted: {a.get('meshaudit.capture.anomalies')}")
        if rules_of(r).get("detector.card") != len(offsets):
            problems.append(f"{rid}: detector.card fired {rules_of(r).get('detector.card')} times, not {len(offsets)}")
        for k, v in zip(offsets, values):
            if not v.startswith("." * 8000):
                problems.append(f"{rid} cut after {k}: the value lost its start: {v[:60]!r}…")
            kept = windows(card, FRAGMENT) & windows(v, FRAGMENT)
            if kept:
                problems.append(f"{rid} card cut after {k}: kept {sorted(kept)[:2]}, value ends {v[-40:]!r}")
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)
    frags = _fragments_in_records(attack.records, card, FRAGMENT)
    assert not frags, "fragments of the card at the collector:\n" + "\n".join(frags[:20])
    attack.assert_no_leak(case)


# ---------------------------------------------------------------------------------------------
# 3. Text is parsed by what it is
# ---------------------------------------------------------------------------------------------


def test_many_descendant_steps_do_not_stall_the_worker(attack):
    """A JSON path with many `..` steps over a deeply nested body: the event arrives (the
    fixture waits with a deadline), redacted by that rule, with the document intact."""
    case = attack.cases["deep"]
    r = attack.event(case.rids[0])
    got = json.loads(_body(r))
    # The first location the path names is the 12th `a`: its whole value is masked.
    for _ in range(DEEP_STEPS - 1):
        got = got["a"]
    assert got == {"a": MASK}, r.attributes
    assert rules_of(r) == {"deep": 1}, r.attributes
    attack.assert_no_leak(case)


def test_text_plain_holding_json(attack):
    case = attack.cases["text-json"]
    r = attack.event(case.rids[0])
    a = r.attributes
    assert a.get("meshaudit.request.body.capture") == "complete", a
    doc = _json_body(r, "the text/plain JSON body")
    assert doc == {"password": MASK, "note": case.data["visible"]}, a
    assert rules_of(r) == {"default": 1}, a
    attack.assert_no_leak(case)


def test_text_plain_holding_form_pairs(attack):
    case = attack.cases["text-form"]
    r = attack.event(case.rids[0])
    a = r.attributes
    assert a.get("meshaudit.request.body.capture") == "complete", a
    assert parse_qs(_body(r), keep_blank_values=True) == {"password": [MASK], "x": ["1"]}, a
    assert rules_of(r) == {"default": 1}, a
    attack.assert_no_leak(case)


def test_multipart_parts(attack):
    """Parts named `password` and `user[password]` are masked by name, the JSON part's `token`
    member too; the `note` part and the JSON part's other member are kept."""
    case = attack.cases["multipart"]
    r = attack.event(case.rids[0])
    a = r.attributes
    assert a.get("meshaudit.request.body.capture") == "complete", a
    parts = multipart_parts(_body(r), case.data["boundary"])
    assert set(parts) == {"password", "user[password]", "meta", "note"}, a
    assert parts["password"] == MASK, parts
    assert parts["user[password]"] == MASK, parts
    assert json.loads(parts["meta"]) == {"token": MASK, "ok": case.data["visible"]}, parts
    assert parts["note"] == case.data["visible"], parts
    assert rules_of(r) == {"default": 3}, a
    attack.assert_no_leak(case)


def _url_parts(url: str) -> tuple[str, str, str, dict, dict]:
    u = urlsplit(url)
    return u.scheme, u.netloc, u.path, parse_qs(u.query, keep_blank_values=True), parse_qs(u.fragment, keep_blank_values=True)


def test_urls_in_referer_and_location(attack, stack):
    """`referer` (request) and `location` (response) holding `?token=S&a=1` or
    `#access_token=S&state=...` keep the URL with only those values masked.

    Envoy removes a `referer` holding a fragment before any filter runs (header sanitizing:
    it is no valid Referer); that is checked at the upstream, and only when the header got
    through must the event hold it redacted."""
    case = attack.cases["urls-in-headers"]
    rid_q, rid_f = case.rids
    rq, rf = attack.event(rid_q), attack.event(rid_f)
    (up_f,) = [q for q in stack.upstream.requests if q.headers.get("x-request-id") == rid_f]
    checks = [
        (rq, "http.request.header.referer", ("https", "shop.example", "/x", {"token": [MASK], "a": ["1"]}, {})),
        (rq, "http.response.header.location", ("https", "shop.example", "/cb", {"token": [MASK], "a": ["1"]}, {})),
        (rf, "http.response.header.location", ("https", "shop.example", "/cb", {}, {"access_token": [MASK], "state": ["st2"]})),
    ]
    fired_f = 1
    if "referer" in up_f.headers:  # not removed by Envoy: then the filter saw it
        checks.append(
            (rf, "http.request.header.referer", ("https", "shop.example", "/x", {}, {"access_token": [MASK], "state": ["st1"]}))
        )
        fired_f = 2
    else:
        assert rf.attr("http.request.header.referer") is None, rf.attributes
    problems = []
    for r, key, want in checks:
        values = r.attr(key)
        if not (isinstance(values, list) and len(values) == 1):
            problems.append(f"{key}: {values!r}")
        elif _url_parts(values[0]) != want:
            problems.append(f"{key}: {values[0]!r}")
    for r, n in ((rq, 2), (rf, fired_f)):
        if rules_of(r) != {"default": n}:
            problems.append(f"{r.attr('meshaudit.request.id')}: rules {rules_of(r)}, not default:{n}")
    assert not problems, "\n".join(problems)
    attack.assert_no_leak(case)


def test_json_string_escapes_and_nested_json(attack):
    """`alice…\\u0040….example.com`, a card grouped with `\\u0020`, a card with every digit
    escaped, `https:\\/\\/…\\/cb?token=S` and `{"payload":"{\\"password\\":\\"S\\"}"}`: each
    value is redacted as what it decodes to, and the document stays JSON."""
    case = attack.cases["json-escapes"]
    r = attack.event(case.rids[0])
    a = r.attributes
    assert a.get("meshaudit.request.body.capture") == "complete", a
    doc = _json_body(r, "the JSON body")
    spaced, escaped = case.data["cards"]
    assert set(doc) == {"contact", "card_spaced", "card_escaped", "cb", "payload", "visible"}, doc
    try:
        inner = json.loads(doc["payload"])
    except ValueError:
        inner = f"no longer JSON: {doc['payload']!r}"
    got = {
        "contact": doc["contact"],
        "card_spaced": doc["card_spaced"],
        "card_escaped": doc["card_escaped"],
        "cb": _url_parts(doc["cb"]),
        "payload": inner,
        "visible": doc["visible"],
    }
    want = {
        "contact": MASK,
        "card_spaced": f"****{spaced[-4:]}",
        "card_escaped": f"****{escaped[-4:]}",
        "cb": ("https", "shop.example", "/cb", {"token": [MASK], "a": ["1"]}, {}),
        "payload": {"password": MASK, "note": case.data["visible"]},
        "visible": case.data["visible"],
    }
    wrong = {k: got[k] for k in want if got[k] != want[k]}
    assert not wrong, f"not redacted as what they decode to: {wrong}"
    rules = rules_of(r)
    assert {k: rules.get(k) for k in ("detector.email", "detector.card", "default")} == {
        "detector.email": 1,
        "detector.card": 2,
        "default": 2,  # the URL's token, the nested password
    }, a
    attack.assert_no_leak(case, case.data["literal"])


# ---------------------------------------------------------------------------------------------
# 4. The whole URL grammar
# ---------------------------------------------------------------------------------------------


def test_semicolon_parameters_in_path_and_query(attack):
    """`/app;jsessionid=S/x;v=2;token=S` and `?a=1;token=S&b=2`: the named parameters are
    masked in place (`jsessionid` by the user rule `session-id`, `token` by the default)."""
    case = attack.cases["semicolons"]
    r = attack.event(case.rids[0])
    base = case.data["base"]
    got = {"url.path": r.attr("url.path"), "url.query": r.attr("url.query"), "body": r.body, "rules": rules_of(r)}
    want = {
        "url.path": f"{base}/app;jsessionid={MASK}/x;v=2;token={MASK}",
        "url.query": f"a=1;token={MASK}&b=2",
        "body": f"GET {base}/app;jsessionid={MASK}/x;v=2;token={MASK} 200",
        "rules": {"session-id": 1, "default": 2},
    }
    wrong = {k: got[k] for k in want if got[k] != want[k]}
    assert not wrong, f"expected {want}\ngot {wrong}"
    attack.assert_no_leak(case)


@pytest.mark.parametrize("cloud", list(SIGNED_URLS))
def test_signed_url_parameters(attack, cloud):
    """The default rule masks the secrets of S3 (SigV4 and V2), GCS, Azure SAS and CloudFront
    signed URLs, in the query and in a `Referer`, and leaves their other parameters readable."""
    case = attack.cases[f"signed-{cloud}"]
    r = attack.event(case.rids[0])
    want = "&".join(
        f"{name}={value if value is not None else MASK}" for name, value in case.data["params"]
    )
    assert r.attr("url.query") == want, (r.attr("url.query"), want)
    referer = r.attr("http.request.header.referer")
    assert referer == [f"https://storage.example.com/bucket/object.pdf?{want}"], referer
    assert rules_of(r).get("default") == 2 * len(case.secrets), rules_of(r)
    attack.assert_no_leak(case)


def test_fragment_in_the_request_line(attack):
    """A raw request line with `#access_token=S` (after a query, and right in the path). Envoy
    1.40 answers it itself (400, `path_normalization_failed`), but the event still records the
    target as sent: the fragment's `access_token` must be masked there."""
    case = attack.cases["fragments"]
    problems = []
    for rid in case.rids:
        r = attack.event(rid)
        a = r.attributes
        status = int(case.data["answers"][rid].split(b" ", 2)[1])
        assert a.get("http.response.status_code") == status, a
        target = a.get("url.path", "") + ("?" + a["url.query"] if "url.query" in a else "")
        assert target.startswith(f"{case.data['base']}/frag"), a
        if f"#access_token={MASK}" not in target:
            problems.append(f"{rid}: target recorded as {target!r}")
        if "?" in target and not ("?x=1#" in target and target.endswith("&state=v")):
            problems.append(f"{rid}: the rest of the target is not kept: {target!r}")
        if rules_of(r) != {"default": 1}:
            problems.append(f"{rid}: rules {rules_of(r)}")
    assert not problems, "\n".join(problems)
    attack.assert_no_leak(case)


# ---------------------------------------------------------------------------------------------
# 5. Every action keeps its promise at every length
# ---------------------------------------------------------------------------------------------


def test_truncate_masks_short_values_whole(attack):
    """`truncate` keeping 8: a 4- or 6-digit code and a 16-character value are masked whole,
    17 and 40 characters keep their first 8 and `…`; in a form body and at any JSON depth."""
    case = attack.cases["truncate"]
    rid_f, rid_j = case.data["rids"]
    rf, rj = attack.event(rid_f), attack.event(rid_j)
    jv = case.data["json"]
    got = {
        "form": parse_qs(_body(rf), keep_blank_values=True),
        "json": json.loads(_body(rj)),
        "form rules": rules_of(rf),
        "json rules": rules_of(rj),
    }
    want = {
        "form": {"otp": [truncated(v) for v in case.data["form"]], "note": [case.data["visible"]]},
        "json": {
            "otp": truncated(jv[0]),
            "sms": {"otp": truncated(jv[1])},
            "more": [{"otp": truncated(v)} for v in jv[2:]],
            "note": case.data["visible"],
        },
        "form rules": {"otp": 5},
        "json rules": {"otp": 5},
    }
    wrong = {k: got[k] for k in want if got[k] != want[k]}
    assert not wrong, f"sent form {case.data['form']}, json {jv}\nexpected {want}\ngot {wrong}"
    # The one-time codes are too short to search the whole output for: not in their event.
    for r, vals in ((rf, case.data["form"]), (rj, jv)):
        for code in vals[:2]:
            for key, text in string_values(r):
                assert code not in text, f"one-time code {code} kept in {key}: {text!r}"
    attack.assert_no_leak(case)


# ---------------------------------------------------------------------------------------------
# 6. Configuration that cannot mislead
# ---------------------------------------------------------------------------------------------


def _refused(tmp_path, wasm, pki, redaction) -> tuple[str, str]:
    """Starts Envoy with `redaction`, which it must refuse; returns the one invalid-configuration
    line and the whole log."""
    config, listener_port = testkit.render_sidecar_alone(tmp_path, wasm, pki, {"redaction": redaction})
    rc, log = testkit.envoy_refusing(config, listener_port, tmp_path / "envoy.log")
    assert rc != 0, f"envoy exited 0 with {redaction}:\n{log[-2000:]}"
    assert "Unable to create Wasm plugin meshaudit" in log, log[-3000:]
    lines = [l for l in log.splitlines() if "meshaudit: invalid configuration: " in l]
    assert len(lines) == 1, f"expected one invalid-configuration line:\n{log[-3000:]}"
    return lines[0].split("meshaudit: invalid configuration: ", 1)[1], log


def pasted_key(kind: str) -> str:
    if kind == "hex":
        return secrets.token_hex(32)
    while True:
        key = base64.b64encode(secrets.token_bytes(32)).decode()
        if "+" in key and "/" in key:
            assert len(key) == 44 and key.endswith("=")
            return key


@pytest.mark.parametrize("kind", ["base64", "hex"])
def test_secret_pasted_into_hash_key_env_is_refused_unprinted(kind, wasm, pki, tmp_path):
    """`hash_key_env` names a variable; a key pasted there instead (44 base64 characters with
    `+`, `/`, `=`; 64 hex digits) with a rule that hashes is refused, and the key is printed
    nowhere in Envoy's log, in any encoding or in part."""
    key = pasted_key(kind)
    line, log = _refused(
        tmp_path,
        wasm,
        pki,
        {"hash_key_env": key, "rules": [{"name": "customer-hash", "headers": ["x-customer-id"], "action": "hash"}]},
    )
    assert "redaction.hash_key_env" in line, line
    found = leaks(log, {"pasted key": key})
    assert not found, f"the pasted key is in Envoy's log: {found}"
    kept = [w for w in windows(key, 12) if w in log]
    assert not kept, f"parts of the pasted key are in Envoy's log: {kept[:3]}"


@pytest.mark.parametrize("pattern", [r"\b", r"(?:x)?", r"a*"], ids=["word-boundary", "optional-group", "star"])
def test_custom_detector_matching_empty_is_refused(pattern, wasm, pki, tmp_path):
    """A custom pattern that can match the empty string somewhere would fire everywhere (or
    nowhere useful): refused at load, naming the detector's field."""
    line, _ = _refused(tmp_path, wasm, pki, {"custom_detectors": [{"name": "maybe-empty", "pattern": pattern}]})
    assert "redaction.custom_detectors[0]" in line, line
