"""End-to-end tests of meshaudit's redaction engine and body capture (docs/redaction.md).

One Envoy (envoy/sidecar.yaml, plaintext and mTLS chains) runs a configuration with body
capture, user rules of every kind (path, JSON paths, form field, header, cookie), the default
rule, every built-in detector and a custom one; the `hash` key comes from the VM environment,
never from the configuration. Random canaries of every kind are sent in every place a secret
can hide, and the collector's raw output (and the Envoy log) must hold none of them in any
encoding, while the fields stay present in their redacted forms and near misses stay as they
are. Further tests cover body-capture limits, redaction of a body cut by the limit, rules
refused at load, and `redaction.defaults: false`.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import random
import re
import secrets
import string
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlencode

import pytest

import testkit
from testkit import (
    MASK,
    b64url,
    card_number,
    de_iban,
    leak_sites,
    leaks,
    luhn_valid,
    pct_all,
    rules_of,
    windows,
)

HMAC_TOKEN = re.compile(r"^hmac:[0-9a-f]{32}$")
HASH_KEY = secrets.token_hex(16)  # 32 characters, per run; only ever in the VM environment
CUSTOM_DETECTOR = "merchant-secret"
DETECTORS = ["card", "jwt", "bearer", "basic", "aws_key", "private_key", "email", "ssn", "iban"]

LEAK_HEADERS = [
    "content-type",
    "user-agent",
    "x-audit-note",
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-customer-id",
]

RULES = [
    {"name": "user-path", "path": ["/leak/*/*/users/{id}/**"], "action": "hash"},
    {"name": "item-tokens", "json": ["$.items[*].token"], "action": "hash"},
    {"name": "card-number", "match": {"path_prefix": "/leak/"}, "json": ["$.card.number"], "action": "partial", "keep": 4},
    {"name": "card-holder", "json": ["$.card.holder"], "form": ["holder"], "action": "remove"},
    {"name": "pin", "form": ["pin"], "action": "mask"},
    {"name": "customer-id", "headers": ["x-customer-id"], "action": "hash"},
    {"name": "sid-cookie", "cookies": ["sid"], "action": "hash"},
]

LIMIT_BYTES = 64

PLUGIN = {
    "flush_interval_ms": 100,
    "request_headers": LEAK_HEADERS,
    "response_headers": ["content-type", "set-cookie"],
    "body_capture": [
        {"match": {"path_prefix": "/leak/"}, "max_bytes": 4096},
        {"match": {"path_prefix": "/limits/"}, "max_bytes": LIMIT_BYTES},
    ],
    "redaction": {
        "defaults": True,
        "detectors": {d: True for d in DETECTORS},
        "custom_detectors": [{"name": CUSTOM_DETECTOR, "pattern": "msk_live_[A-Za-z0-9]{24}"}],
        "rules": RULES,
    },
}


@pytest.fixture(scope="module")
def redacting(tmp_path_factory, wasm, pki):
    """sidecar.yaml + meshaudit with the full redaction configuration -> Rotel."""
    stack = testkit.Stack(
        tmp_path_factory.mktemp("redaction"),
        kind=testkit.SIDECAR,
        wasm=wasm,
        pki=pki,
        plugin_config_overrides=PLUGIN,
        vm_env={"MESHAUDIT_HASH_KEY": HASH_KEY},
    )
    with testkit.running(stack):
        yield stack


@pytest.fixture(scope="module")
def no_defaults(tmp_path_factory, wasm, pki):
    """The same sidecar with `redaction.defaults: false` (detectors stay on)."""
    stack = testkit.Stack(
        tmp_path_factory.mktemp("redaction-nodefaults"),
        kind=testkit.SIDECAR,
        wasm=wasm,
        pki=pki,
        plugin_config_overrides={
            "flush_interval_ms": 100,
            "request_headers": ["x-api-key", "x-audit-note"],
            "redaction": {"defaults": False},
        },
    )
    with testkit.running(stack):
        yield stack


# ---------------------------------------------------------------------------------------------
# Canaries
# ---------------------------------------------------------------------------------------------


def hmac_token(value: str) -> str:
    return "hmac:" + hmac.new(HASH_KEY.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass
class Canaries:
    card: str
    jwt: str
    bearer: str
    basic: str  # user:password; the header carries its base64
    aws: str
    pem_line1: str
    pem_line2: str
    email: str
    ssn: str
    iban: str
    password: str
    api_key: str
    api_key_encoded: str
    x_api_key: str
    session: str
    sid: str
    customer: str  # x-customer-id header and the {id} path segment (hashed)
    merchant: str
    pin: str
    holder: str
    item_token1: str
    item_token2: str
    resp_session: str
    access_token: str
    refresh_token: str

    @property
    def pem(self) -> str:
        return f"-----BEGIN PRIVATE KEY-----\n{self.pem_line1}\n{self.pem_line2}\n-----END PRIVATE KEY-----"

    def all(self) -> dict[str, str]:
        return dict(vars(self))


def make_canaries() -> tuple[Canaries, dict[str, str]]:
    rng = random.Random(secrets.randbits(64))
    hx = secrets.token_hex
    area = rng.choice([a for a in range(1, 900) if a != 666])
    jwt = ".".join(
        [
            b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode()),
            b64url(json.dumps({"sub": f"user-{hx(6)}", "iat": rng.randrange(10**9, 2 * 10**9)}).encode()),
            b64url(secrets.token_bytes(32)),
        ]
    )
    alnum = string.ascii_letters + string.digits
    c = Canaries(
        card=card_number(rng),
        jwt=jwt,
        bearer="Tk" + hx(18),
        basic=f"svc{hx(3)}:{hx(12)}",
        aws="AKIA" + "".join(rng.choice(string.ascii_uppercase + "234567") for _ in range(16)),
        pem_line1=base64.b64encode(secrets.token_bytes(48)).decode(),
        pem_line2=base64.b64encode(secrets.token_bytes(30)).decode(),
        email=f"jane.{hx(5)}@corp-{hx(3)}.example.com",
        ssn=f"{area:03d}-{rng.randrange(1, 100):02d}-{rng.randrange(1, 10000):04d}",
        iban=de_iban(rng),
        password=f"Pw!{hx(10)}",
        api_key=f"ak_{hx(16)}",
        api_key_encoded=f"ak2/{hx(16)}",
        x_api_key=f"xk{hx(16)}",
        session=f"sess{hx(16)}",
        sid=f"sid{hx(12)}",
        customer=f"cust:{hx(8)}",
        merchant="msk_live_" + "".join(rng.choice(alnum) for _ in range(24)),
        pin=f"pin-{hx(6)}",
        holder=f"holder-{hx(8)}",
        item_token1=f"itok{hx(10)}",
        item_token2=f"itok{hx(10)}",
        resp_session=f"rsess{hx(14)}",
        access_token=f"at{hx(16)}",
        refresh_token=f"rt{hx(16)}",
    )
    near = {
        "order": card_number(rng, valid=False, first="7"),  # 16 digits failing Luhn
        "localhost": f"ops{hx(3)}@localhost",
        "bad_ssn": f"900-{rng.randrange(10, 100)}-{rng.randrange(1000, 10000)}",  # area 900+
    }
    return c, near


def custom(name: str, rules: dict[str, int]) -> int | None:
    """A custom detector may be listed by its name or as detector.NAME."""
    return rules.get(name, rules.get(f"detector.{name}"))


def body_attrs(rec) -> dict:
    return {k: v for k, v in rec.attributes.items() if k.startswith(("meshaudit.request.body", "meshaudit.response.body"))}


# ---------------------------------------------------------------------------------------------
# 1. The leak test
# ---------------------------------------------------------------------------------------------


def _send_everything(stack, run_id, chan, c: Canaries, near, tls):
    """One request per place a secret can hide. Returns {kind: {rid, path, headers, body, resp}}."""
    base = f"/leak/{run_id}/{chan}"
    sent = {}

    def go(kind, path, *, method="GET", headers=None, body=None, rid=None):
        rid = rid or f"leak-{run_id}-{chan}-{kind}"
        # The upstream's usual reply echoes the request line as free text, where a secret no
        # detector knows (`api_key=...`) is beyond any redaction; reply with a plain "ok"
        # unless the case sets its own response body.
        hdrs = {
            "x-request-id": rid,
            "x-upstream-body-b64": base64.b64encode(b"ok\n").decode(),
            "x-upstream-content-type": "text/plain",
            **(headers or {}),
        }
        resp = stack.request(path, method=method, headers=hdrs, body=body, tls=tls)
        assert resp.status == 200, (kind, resp.status, resp.body[:300])
        sent[kind] = {"rid": rid, "path": path, "headers": hdrs, "body": body, "resp": resp}
        return resp

    note = (
        f"card {c.card} jwt {c.jwt} aws {c.aws} mail {c.email} ssn {c.ssn} iban {c.iban} "
        f"m {c.merchant} order {near['order']} local {near['localhost']} nossn {near['bad_ssn']}"
    )
    go(
        "headers",
        f"{base}/headers",
        headers={
            "authorization": f"Bearer {c.bearer}",
            "proxy-authorization": "Basic " + base64.b64encode(c.basic.encode()).decode(),
            "x-api-key": c.x_api_key,
            "x-customer-id": c.customer,
            "cookie": f"session={c.session}; sid={c.sid}; theme=dark",
            "x-audit-note": note,
            "user-agent": f"probe/1.0 {c.jwt}",
        },
        # The request id is text a client chose: it is scanned too.
        rid=f"leak-{run_id}-{chan}-headers-{c.aws}",
    )
    go(
        "query",
        f"{base}/query?api_key={c.api_key}&q={c.email}&card={c.card}&t={c.jwt}&aws={c.aws}&ssn={c.ssn}"
        f"&iban={c.iban}&m={c.merchant}&order={near['order']}&contact={near['localhost']}&page=2",
    )
    # Percent-encoded: the parameter name (api%5Fkey), an email (%40), a card with every digit
    # escaped, a PEM block, next to a JWT written plainly.
    go(
        "query-enc",
        f"{base}/query-enc?api%5Fkey={quote(c.api_key_encoded, safe='')}&q={quote(c.email, safe='')}"
        f"&card={pct_all(c.card)}&pem={quote(c.pem, safe='')}&t={c.jwt}&page=2",
    )
    doc = {
        "password": c.password,
        "items": [
            {"sku": "A-1", "token": c.item_token1},
            {"sku": "B-2", "token": c.item_token2, "note": f"ship to {c.email}"},
        ],
        "card": {"number": c.card, "holder": c.holder, "exp": "12/30"},
        "profile": {
            "emails": [c.email],
            "ssn": c.ssn,
            "iban": c.iban,
            "aws": c.aws,
            "jwt": c.jwt,
            "merchant": c.merchant,
            "key_pem": c.pem,
            "auth": f"Bearer {c.bearer}",
            "basic": "Basic " + base64.b64encode(c.basic.encode()).decode(),
        },
        "order_id": near["order"],
        "contact": near["localhost"],
        "visible": f"visible-{run_id}",
    }
    go("json", f"{base}/json", method="POST", headers={"content-type": "application/json"}, body=json.dumps(doc).encode())
    form = urlencode(
        [
            ("pin", c.pin),
            ("password", c.password),
            ("holder", c.holder),
            ("email", c.email),
            ("card", c.card),
            ("cert", c.pem),
            ("note", "hello world"),
            ("order", near["order"]),
        ]
    )
    go(
        "form",
        f"{base}/form",
        method="POST",
        headers={"content-type": "application/x-www-form-urlencoded"},
        body=form.encode(),
    )
    text = (
        f"note from {c.email}\nAuthorization: Bearer {c.bearer}\ncard {c.card}\n{c.pem}\n"
        f"aws {c.aws} ssn {c.ssn} iban {c.iban} jwt {c.jwt} {c.merchant}\n"
        f"order {near['order']} {near['localhost']}\n"
    )
    go("text", f"{base}/text", method="POST", headers={"content-type": "text/plain; charset=utf-8"}, body=text.encode())
    go("path", f"{base}/users/{c.customer}/profile")
    go("path-enc", f"{base}/users/{quote(c.customer, safe='')}/profile")
    go("path-detect", f"{base}/lookup/{c.email}/{c.card}/{near['order']}")
    go("path-detect-enc", f"{base}/lookup-enc/{quote(c.email, safe='')}/{pct_all(c.aws)}")
    resp_doc = {
        "access_token": c.access_token,
        "refresh_token": c.refresh_token,
        "user": {"email": c.email, "card": c.card},
        "items": [{"token": c.item_token1}],
    }
    resp_body = json.dumps(resp_doc).encode()
    resp = go(
        "response",
        f"{base}/response",
        headers={
            "x-upstream-set-cookie": f"session={c.resp_session}; Path=/; HttpOnly",
            "x-upstream-body-b64": base64.b64encode(resp_body).decode(),
            "x-upstream-content-type": "application/json",
        },
    )
    # The filter only observes: the client got the secrets untouched.
    assert resp.body == resp_body and c.resp_session in resp.headers.get("set-cookie", "")
    return sent


@dataclass
class LeakRun:
    """What the leak test sent, and the events the collector printed for it."""

    c: Canaries
    near: dict[str, str]
    run_id: str
    sent: dict[str, dict[str, dict]]  # channel -> kind -> what was sent
    events: dict[str, dict]  # channel -> kind -> LogRecord
    records: list
    stats: dict[str, int]
    raw: str
    envoy_log: str

    def base(self, chan: str) -> str:
        return f"/leak/{self.run_id}/{chan}"

    @property
    def last4(self) -> str:
        return f"****{self.c.card[-4:]}"

    @property
    def iban4(self) -> str:
        return f"****{self.c.iban[-4:]}"


KINDS = [
    "headers",
    "query",
    "query-enc",
    "json",
    "form",
    "text",
    "path",
    "path-enc",
    "path-detect",
    "path-detect-enc",
    "response",
]
CHANNELS = ["plain", "mtls"]


@pytest.fixture(scope="module")
def leak(redacting, pki, run_id) -> LeakRun:
    """Sends every canary in every place, over plaintext and mTLS, and waits until the
    collector has printed every event (and nothing more can arrive)."""
    stack = redacting
    c, near = make_canaries()
    assert luhn_valid(c.card) and not luhn_valid(near["order"])
    tls = {"plain": None, "mtls": stack.tls(pki.clients["web"])}
    sent = {chan: _send_everything(stack, run_id, chan, c, near, tls[chan]) for chan in CHANNELS}

    # Request ids as the collector shows them (the headers one carries an AWS key, masked).
    wanted = {
        s["rid"].replace(c.aws, MASK): (chan, kind) for chan, kinds in sent.items() for kind, s in kinds.items()
    }
    assert len(wanted) == len(CHANNELS) * len(KINDS)
    mine = lambda r: r.attr("meshaudit.request.id") in wanted  # noqa: E731
    stack.wait_records(mine, len(wanted), what="leak-test events")
    stats = stack.wait_settled()
    records = [r for r in stack.records() if mine(r)]
    events: dict[str, dict] = {chan: {} for chan in CHANNELS}
    for r in records:
        chan, kind = wanted[r.attr("meshaudit.request.id")]
        assert kind not in events[chan], f"two events for {chan} {kind}"
        events[chan][kind] = r
    return LeakRun(
        c=c,
        near=near,
        run_id=run_id,
        sent=sent,
        events=events,
        records=records,
        stats=stats,
        raw=stack.rotel.raw(),
        envoy_log=stack.envoy.log_text(),
    )


def test_leak_events_all_arrived(leak, redacting):
    """One event per request, on both channels, none dropped; the application really got
    every canary, so Envoy had every one of them to leak."""
    assert len(leak.records) == len(CHANNELS) * len(KINDS)
    for chan in CHANNELS:
        assert sorted(leak.events[chan]) == sorted(KINDS), chan
        for r in leak.events[chan].values():
            assert r.attr("meshaudit.tls.mtls") is (chan == "mtls"), r.attributes
            assert r.attr("http.response.status_code") == 200, r.attributes
    assert testkit.metric(leak.stats, "meshaudit.events_dropped") == 0
    up_text = "\n".join(
        f"{q.path}\n{json.dumps(q.headers)}\n{q.body.decode(errors='replace')}" for q in redacting.upstream.requests
    )
    for name, value in leak.c.all().items():
        if name in ("resp_session", "access_token", "refresh_token"):
            continue  # those come from the upstream itself
        assert leaks(up_text, {name: value}), f"canary {name} never reached the upstream"


def test_no_canary_reaches_the_collector(leak):
    canaries = leak.c.all()
    # The search means something: unredacted text of the same events is there.
    assert f"visible-{leak.run_id}" in leak.raw and leak.near["order"] in leak.raw
    found = leaks(leak.raw, canaries)
    assert not found, "canaries in the collector output:\n" + "\n".join(leak_sites(leak.records, canaries) or found)


def test_no_canary_in_the_envoy_log(leak):
    assert "meshaudit" in leak.envoy_log  # the log is the one of the Envoy running the filter
    found = leaks(leak.envoy_log, leak.c.all())
    assert not found, f"canaries in the Envoy log: {found}"


def _check_headers(L: LeakRun, chan: str, r) -> None:
    c, near = L.c, L.near
    a = r.attributes
    ctx = f"{chan} headers: {a}"
    assert a.get("meshaudit.request.id") == f"leak-{L.run_id}-{chan}-headers-{MASK}", ctx
    assert a.get("http.request.header.authorization") == [MASK], ctx
    assert a.get("http.request.header.proxy-authorization") == [MASK], ctx
    assert a.get("http.request.header.x-api-key") == [MASK], ctx
    assert a.get("http.request.header.x-customer-id") == [hmac_token(c.customer)], ctx
    # `sid` by its own rule (hash); every other cookie value by the default rule, names kept
    assert a.get("http.request.header.cookie") == [f"session={MASK}; sid={hmac_token(c.sid)}; theme={MASK}"], ctx
    assert a.get("http.request.header.x-audit-note") == [
        f"card {L.last4} jwt {MASK} aws {MASK} mail {MASK} ssn {MASK} iban {L.iban4} "
        f"m {MASK} order {near['order']} local {near['localhost']} nossn {near['bad_ssn']}"
    ], ctx
    assert a.get("user_agent.original") == f"probe/1.0 {MASK}", ctx
    assert a.get("http.request.header.user-agent") == [f"probe/1.0 {MASK}"], ctx
    rules = rules_of(r)
    assert custom(CUSTOM_DETECTOR, rules) == 1, ctx
    rules.pop(CUSTOM_DETECTOR, None)
    rules.pop(f"detector.{CUSTOM_DETECTOR}", None)
    assert rules == {
        "default": 5,  # authorization, proxy-authorization, x-api-key, cookies session and theme
        "customer-id": 1,
        "sid-cookie": 1,
        "detector.card": 1,
        "detector.jwt": 3,  # the note, user_agent.original, the user-agent header
        "detector.aws_key": 2,  # the note, the request id
        "detector.email": 1,
        "detector.ssn": 1,
        "detector.iban": 1,
    }, ctx


def _check_query(L: LeakRun, chan: str, r) -> None:
    near = L.near
    a = r.attributes
    ctx = f"{chan} query: {a}"
    assert a.get("url.path") == f"{L.base(chan)}/query", ctx
    assert a.get("url.query") == (
        f"api_key={MASK}&q={MASK}&card={L.last4}&t={MASK}&aws={MASK}&ssn={MASK}&iban={L.iban4}&m={MASK}"
        f"&order={near['order']}&contact={near['localhost']}&page=2"
    ), ctx
    rules = rules_of(r)
    assert rules.get("default") == 1 and custom(CUSTOM_DETECTOR, rules) == 1, ctx
    for d in ("card", "jwt", "aws_key", "email", "ssn", "iban"):
        assert rules.get(f"detector.{d}") == 1, (d, ctx)


def _check_query_enc(L: LeakRun, chan: str, r) -> None:
    a = r.attributes
    ctx = f"{chan} query-enc: {a}"
    pairs = parse_qs(a.get("url.query", ""), keep_blank_values=True)
    assert pairs.get("page") == ["2"], ctx
    assert pairs.get("api_key") == [MASK], ctx  # named percent-encoded (api%5Fkey), matched decoded
    assert pairs.get("card") == [L.last4], ctx
    for name in ("q", "pem", "t"):
        assert len(pairs.get(name, [])) == 1 and MASK in pairs[name][0], (name, ctx)
    rules = rules_of(r)
    assert rules.get("default") == 1, ctx
    for d in ("email", "card", "private_key", "jwt"):
        assert rules.get(f"detector.{d}") == 1, (d, ctx)


def _check_json(L: LeakRun, chan: str, r) -> None:
    c, near = L.c, L.near
    a = r.attributes
    ctx = f"{chan} json: {a}"
    assert a.get("meshaudit.request.body.type") == "json", ctx
    assert a.get("meshaudit.request.body.capture") == "complete", ctx
    got = json.loads(a["meshaudit.request.body"])  # still valid JSON
    assert got == {
        "password": MASK,
        "items": [
            {"sku": "A-1", "token": hmac_token(c.item_token1)},
            {"sku": "B-2", "token": hmac_token(c.item_token2), "note": f"ship to {MASK}"},
        ],
        "card": {"number": L.last4, "exp": "12/30"},  # holder removed
        "profile": {
            "emails": [MASK],
            "ssn": MASK,
            "iban": L.iban4,
            "aws": MASK,
            "jwt": MASK,
            "merchant": MASK,
            "key_pem": MASK,
            "auth": f"Bearer {MASK}",
            "basic": f"Basic {MASK}",
        },
        "order_id": near["order"],
        "contact": near["localhost"],
        "visible": f"visible-{L.run_id}",
    }, ctx
    rules = rules_of(r)
    assert custom(CUSTOM_DETECTOR, rules) == 1, ctx
    for name, count in {
        "default": 1,
        "item-tokens": 2,
        "card-number": 1,
        "card-holder": 1,
        "detector.email": 2,
        "detector.ssn": 1,
        "detector.iban": 1,
        "detector.aws_key": 1,
        "detector.jwt": 1,
        "detector.private_key": 1,
        "detector.bearer": 1,
        "detector.basic": 1,
    }.items():
        assert rules.get(name) == count, (name, rules, ctx)
    assert "detector.card" not in rules, ctx  # the card-number rule got there first


def _check_form(L: LeakRun, chan: str, r) -> None:
    a = r.attributes
    ctx = f"{chan} form: {a}"
    assert a.get("meshaudit.request.body.type") == "form", ctx
    assert a.get("meshaudit.request.body.capture") == "complete", ctx
    form = parse_qs(a["meshaudit.request.body"], keep_blank_values=True)
    assert form.get("pin") == [MASK], ctx
    assert form.get("password") == [MASK], ctx
    assert "holder" not in form, ctx
    assert form.get("note") == ["hello world"], ctx
    assert form.get("order") == [L.near["order"]], ctx
    assert form.get("card") == [L.last4], ctx
    for name in ("email", "cert"):
        assert len(form.get(name, [])) == 1 and MASK in form[name][0], (name, ctx)
    rules = rules_of(r)
    for name, count in {
        "pin": 1,
        "default": 1,
        "card-holder": 1,
        "detector.card": 1,
        "detector.email": 1,
        "detector.private_key": 1,
    }.items():
        assert rules.get(name) == count, (name, rules, ctx)


def _check_text(L: LeakRun, chan: str, r) -> None:
    a = r.attributes
    ctx = f"{chan} text: {a}"
    assert a.get("meshaudit.request.body.type") == "text", ctx
    assert a.get("meshaudit.request.body.capture") == "complete", ctx
    assert a.get("meshaudit.request.body") == (
        f"note from {MASK}\nAuthorization: Bearer {MASK}\ncard {L.last4}\n{MASK}\n"
        f"aws {MASK} ssn {MASK} iban {L.iban4} jwt {MASK} {MASK}\n"
        f"order {L.near['order']} {L.near['localhost']}\n"
    ), ctx


def _check_path(L: LeakRun, chan: str, r) -> None:
    ctx = f"{chan} path: {r.attributes}"
    assert r.attr("url.path") == f"{L.base(chan)}/users/{hmac_token(L.c.customer)}/profile", ctx
    assert r.body == f"GET {L.base(chan)}/users/{hmac_token(L.c.customer)}/profile 200", ctx
    assert rules_of(r) == {"user-path": 1}, ctx


def _check_path_detect(L: LeakRun, chan: str, r) -> None:
    ctx = f"{chan} path-detect: {r.attributes}"
    assert r.attr("url.path") == f"{L.base(chan)}/lookup/{MASK}/{L.last4}/{L.near['order']}", ctx
    assert rules_of(r) == {"detector.email": 1, "detector.card": 1}, ctx


def _check_path_detect_enc(L: LeakRun, chan: str, r) -> None:
    ctx = f"{chan} path-detect-enc: {r.attributes}"
    path = r.attr("url.path", "")
    assert path.startswith(f"{L.base(chan)}/lookup-enc/") and path.count(MASK) == 2, ctx
    assert rules_of(r) == {"detector.email": 1, "detector.aws_key": 1}, ctx


def _check_response(L: LeakRun, chan: str, r) -> None:
    a = r.attributes
    ctx = f"{chan} response: {a}"
    assert a.get("http.response.header.set-cookie") == [f"session={MASK}; Path=/; HttpOnly"], ctx
    assert a.get("meshaudit.response.body.type") == "json", ctx
    assert a.get("meshaudit.response.body.capture") == "complete", ctx
    assert json.loads(a["meshaudit.response.body"]) == {
        "access_token": MASK,
        "refresh_token": MASK,
        "user": {"email": MASK, "card": L.last4},
        # the same value hashes to the same token in a request and in a response
        "items": [{"token": hmac_token(L.c.item_token1)}],
    }, ctx
    rules = rules_of(r)
    for name, count in {"default": 3, "item-tokens": 1, "detector.email": 1, "detector.card": 1}.items():
        assert rules.get(name) == count, (name, rules, ctx)


CHECKS = {
    "headers": _check_headers,
    "query": _check_query,
    "query-enc": _check_query_enc,
    "json": _check_json,
    "form": _check_form,
    "text": _check_text,
    "path": _check_path,
    "path-enc": _check_path,  # the segment is hashed decoded: the same token as raw
    "path-detect": _check_path_detect,
    "path-detect-enc": _check_path_detect_enc,
    "response": _check_response,
}
assert sorted(CHECKS) == sorted(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_fields_keep_their_redacted_form(leak, kind):
    """Where the action keeps a field, it is there in its redacted form (both channels), the
    rules that fired are listed with their counts, and near misses are left alone."""
    for chan in CHANNELS:
        CHECKS[kind](leak, chan, leak.events[chan][kind])


def test_hash_tokens_correlate(leak):
    """The same value gives the same token: across channels, and in a header and a path."""
    plain, mtls = leak.events["plain"], leak.events["mtls"]
    for name in ("http.request.header.x-customer-id", "http.request.header.cookie"):
        assert plain["headers"].attr(name) == mtls["headers"].attr(name), name
    (token,) = plain["headers"].attr("http.request.header.x-customer-id")
    assert HMAC_TOKEN.match(token), token
    for chan in CHANNELS:
        for kind in ("path", "path-enc"):
            assert f"/users/{token}/" in leak.events[chan][kind].attr("url.path"), (chan, kind)
    # keyed by MESHAUDIT_HASH_KEY from the VM environment: HMAC-SHA256, first 128 bits
    assert token == hmac_token(leak.c.customer)


# ---------------------------------------------------------------------------------------------
# 2. Body capture limits
# ---------------------------------------------------------------------------------------------


def test_body_capture_limits(redacting, run_id):
    stack = redacting
    base = f"/limits/{run_id}"
    big = json.dumps({"data": ["x" * 1000] * 1500, "end": True}).encode()  # ~1.5 MB
    assert len(big) > 1024 * 1024  # more than Envoy's default buffer limit: a buffering filter would 413
    small_json = json.dumps({"hello": "world"}).encode()
    png = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(200)
    binary = b"\x00\xff\xfe\x01binary\x00" + secrets.token_bytes(100)
    cases = {
        "big": (f"{base}/big", {"content-type": "application/json"}, big),
        "gzip": (f"{base}/gzip", {"content-type": "application/json", "content-encoding": "gzip"}, gzip.compress(small_json)),
        "png": (f"{base}/png", {"content-type": "image/png"}, png),
        "binary": (f"{base}/binary", {"content-type": "text/plain"}, binary),
        "nocap": (f"/nocap/{run_id}/json", {"content-type": "application/json"}, small_json),
        "nobody": (f"{base}/nobody", {}, None),
    }
    responses = {}
    for kind, (path, headers, body) in cases.items():
        resp = stack.request(path, method="POST" if body is not None else "GET", headers=headers, body=body)
        assert resp.status == 200, (kind, resp.status)  # never 413
        responses[kind] = resp
    received = {q.path: q.body for q in stack.upstream.requests}
    for kind, (path, _, body) in cases.items():
        assert received.get(path) == (body or b""), f"{kind}: the upstream did not get the whole body"

    recs = {}
    for kind, (path, _, _) in cases.items():
        (recs[kind],) = stack.records_for_path(path)

    a = recs["big"].attributes
    assert a.get("meshaudit.request.body.capture") == "truncated", a
    assert a.get("meshaudit.request.body.type") == "json", a
    # The first string runs past what capture kept (LIMIT_BYTES + 256): it may be a secret seen
    # only in part, so it goes whole, and only the redacted rest is cut to the limit.
    assert a.get("meshaudit.request.body") == '{"data": ["', a
    assert a.get("http.request.body.size") == len(big), a
    # The response side is captured too, whole (shorter than the limit).
    assert len(responses["big"].body) < LIMIT_BYTES
    assert a.get("meshaudit.response.body") == responses["big"].body.decode(), a
    assert a.get("meshaudit.response.body.capture") == "complete", a
    assert a.get("meshaudit.response.body.type") == "text", a

    for kind, marker in (("gzip", "skipped:compressed"), ("png", "skipped:content_type"), ("binary", "skipped:binary")):
        a = recs[kind].attributes
        assert a.get("meshaudit.request.body.capture") == marker, (kind, a)
        assert "meshaudit.request.body" not in a and "meshaudit.request.body.type" not in a, (kind, a)
        assert a.get("meshaudit.response.body.capture") == "complete", (kind, a)  # same route, text reply

    assert body_attrs(recs["nocap"]) == {}, recs["nocap"].attributes
    # A GET without a body, on a route with body capture: no request-body markers at all.
    a = recs["nobody"].attributes
    assert not [k for k in a if k.startswith("meshaudit.request.body")], a
    assert a.get("meshaudit.response.body.capture") == "complete", a
    assert recs["nocap"].attr("http.request.body.size") == len(small_json)


# ---------------------------------------------------------------------------------------------
# 3. A body cut by the limit is still redacted
# ---------------------------------------------------------------------------------------------


def test_cut_bodies_are_still_redacted(redacting, run_id):
    stack = redacting
    base = f"/limits/{run_id}/cut"
    canaries = {k: "cut" + secrets.token_hex(100) for k in ("json", "nested", "form", "pem")}
    cases = {
        "json": ("application/json", json.dumps({"password": canaries["json"], "next": 1}).encode(), "default"),
        "nested": (
            "application/json",
            json.dumps({"items": [{"token": canaries["nested"], "sku": "A"}]}).encode(),
            "item-tokens",
        ),
        "form": ("application/x-www-form-urlencoded", f"note=hi&password={canaries['form']}&x=1".encode(), "default"),
        "pem": ("text/plain", f"key:\n-----BEGIN RSA PRIVATE KEY-----\n{canaries['pem']}\n".encode(), "detector.private_key"),
    }
    for kind, (ctype, body, _) in cases.items():
        head = body[:LIMIT_BYTES].decode()
        at = head.find(canaries[kind][:10])
        assert at >= 0 and len(head) - at >= 20 and canaries[kind].startswith(head[at:]), (
            f"{kind}: the limit must cut inside the secret, keeping 20+ characters of it ({head!r})"
        )
        resp = stack.request(f"{base}/{kind}", method="POST", headers={"content-type": ctype}, body=body)
        assert resp.status == 200
    for kind, (_, body, rule) in cases.items():
        (r,) = stack.records_for_path(f"{base}/{kind}")
        a = r.attributes
        got = a.get("meshaudit.request.body")
        assert a.get("meshaudit.request.body.capture") == "truncated", (kind, a)
        assert isinstance(got, str) and len(got.encode()) <= len(body[:LIMIT_BYTES]) + len(MASK) + 40, (kind, a)
        assert not (windows(canaries[kind], 6) & windows(got, 6)), f"{kind}: part of the cut secret kept: {got!r}"
        assert rules_of(r).get(rule) == 1, (kind, a)
        if rule == "item-tokens":
            assert got.startswith('{"items": [{"token": "hmac:'), (kind, got)
        else:
            assert MASK in got, (kind, got)
    stack.wait_settled()
    raw = stack.rotel.raw()
    for kind, canary in canaries.items():
        for w in windows(canary, 12):
            assert w not in raw, f"{kind}: {w!r} of the cut secret reached the collector"


# ---------------------------------------------------------------------------------------------
# 4. Bad rules are refused at load
# ---------------------------------------------------------------------------------------------

BAD_RULES = [
    pytest.param(
        {"custom_detectors": [{"name": "bad-regex", "pattern": "msk_(live_[a-z]+"}]},
        ["redaction.custom_detectors[0]", "bad-regex"],
        ["regex"],
        id="invalid-regex",
    ),
    pytest.param(
        {"rules": [{"name": "wipe-user", "headers": ["x-user"], "action": "shred"}]},
        ["redaction.rules[0]"],
        ["shred"],
        id="unknown-action",
    ),
    pytest.param(
        {"rules": [{"name": "bad-json-path", "json": ["$.items[*"]}]},
        ["redaction.rules[0]", "bad-json-path"],
        ["JSON path", "$.items[*"],
        id="bad-json-path",
    ),
    pytest.param(
        {"rules": [{"name": "hash-customer", "headers": ["x-customer-id"], "action": "hash"}]},
        ["hash-customer"],
        ["MESHAUDIT_HASH_KEY", "not set"],
        id="hash-without-key",
    ),
]


@pytest.mark.parametrize("redaction,names,reasons", BAD_RULES)
def test_bad_rules_refuse_to_start(redaction, names, reasons, wasm, pki, tmp_path):
    """Envoy runs on_configure while loading the static listener and exits non-zero when it
    fails; the log's one `invalid configuration` line names the rule and the reason. (The
    hash case starts fine with the key in the VM environment: that is the `redacting` stack.)"""
    config, listener_port = testkit.render_sidecar_alone(tmp_path, wasm, pki, {"redaction": redaction})
    rc, log = testkit.envoy_refusing(config, listener_port, tmp_path / "envoy.log")
    assert rc != 0, f"envoy exited 0 with {redaction}:\n{log[-2000:]}"
    lines = [l for l in log.splitlines() if "meshaudit: invalid configuration: " in l]
    assert len(lines) == 1, f"expected one invalid-configuration line:\n{log[-3000:]}"
    line = lines[0].split("meshaudit: invalid configuration: ", 1)[1]
    for text in names + reasons:
        assert text in line, f"{text!r} not in {line!r}"
    assert "Unable to create Wasm plugin meshaudit" in log


# ---------------------------------------------------------------------------------------------
# 5. redaction.defaults: false
# ---------------------------------------------------------------------------------------------


def test_defaults_false_turns_the_default_rule_off(no_defaults, redacting, run_id):
    value = f"plain-value-{secrets.token_hex(6)}"  # nothing a detector would take for a secret
    email = f"kim.{secrets.token_hex(4)}@example.org"
    headers = {"x-api-key": value, "x-audit-note": f"contact {email}"}
    off_path, on_path = f"/defaults/{run_id}/off", f"/defaults/{run_id}/on"
    assert no_defaults.request(off_path, headers=headers).status == 200
    assert redacting.request(on_path, headers=headers).status == 200

    (off,) = no_defaults.records_for_path(off_path)
    assert off.attr("http.request.header.x-api-key") == [value], off.attributes
    # Detectors stay on: only the default rule is off.
    assert off.attr("http.request.header.x-audit-note") == [f"contact {MASK}"], off.attributes
    assert rules_of(off) == {"detector.email": 1}, off.attributes

    (on,) = redacting.records_for_path(on_path)
    assert on.attr("http.request.header.x-api-key") == [MASK], on.attributes
    assert rules_of(on).get("default") == 1, on.attributes
