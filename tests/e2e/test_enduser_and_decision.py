"""Who was behind a request and whether it was allowed, in real Envoy with Envoy's own filters
deciding. The end user (`enduser.id`, issuer, audience, `identity.jwt_claims`) of tokens the
test signs, verified by `jwt_authn` against a local JWKS. The access decision
(`meshaudit.decision`, `.reason`, `.policy`): RBAC denying a path, `jwt_authn` refusing an
expired or missing token, a local rate limit, an `ext_authz` HTTP service the test runs that
refuses one path, no route, meshaudit's own fail-closed refusal, and requests that were
allowed. Both forms: the HTTP filter and the access logger.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import string

import pytest

import testkit

AUDIENCE = testkit.GUARD_AUDIENCE
RefusingAuthz = testkit.RefusingAuthz
guards = testkit.access_guards


@pytest.fixture(scope="module")
def issuer() -> testkit.JwtIssuer:
    return testkit.JwtIssuer()


@pytest.fixture(scope="module", params=["filter", "access_log"])
def guarded(request, tmp_path_factory, wasm, issuer):
    authz = testkit.HttpServerThread(RefusingAuthz).start()
    stack = testkit.Stack(
        tmp_path_factory.mktemp(f"decision-{request.param}"),
        kind=testkit.EDGE,
        wasm=wasm,
        pki=None,
        **testkit.loaded_as(request.param, {
            "identity": {"jwt": True, "jwt_claims": ["email", "groups", "note", "tier"]},
        }),
        config_patch=guards(issuer, authz.port),
    )
    try:
        with testkit.running(stack):
            yield stack
    finally:
        authz.stop()


def decision_of(stack: testkit.Stack, path: str) -> tuple:
    rec = stack.records_for_path(path)[0]
    return (rec.attr("meshaudit.decision"), rec.attr("meshaudit.decision.reason"),
            rec.attr("meshaudit.decision.policy"))


def test_an_allowed_request_says_allow(guarded, run_id):
    path = f"/ok/{run_id}"
    assert guarded.request(path).status == 200
    assert decision_of(guarded, path) == ("allow", None, None)


def test_rbac_denial_names_the_policy(guarded, run_id):
    path = f"/admin/{run_id}"
    assert guarded.request(path).status == 403
    rec = guarded.records_for_path(path)[0]
    assert rec.attr("meshaudit.envoy.response_code_details") == "rbac_access_denied_matched_policy[deny-admin]"
    assert decision_of(guarded, path) == ("deny", "rbac", "deny-admin")


def test_expired_token_is_a_jwt_denial_and_a_valid_one_is_allowed(guarded, issuer, run_id):
    expired = issuer.token({"sub": "alice"}, lifetime_s=-120, audience=AUDIENCE)
    path = f"/jwt/expired-{run_id}"
    assert guarded.request(path, headers={"authorization": f"Bearer {expired}"}).status == 401
    assert decision_of(guarded, path) == ("deny", "jwt", None)
    assert guarded.records_for_path(path)[0].attr("enduser.id") is None, "an unverified subject"

    valid = issuer.token({"sub": "alice"}, audience=AUDIENCE)
    path = f"/jwt/valid-{run_id}"
    assert guarded.request(path, headers={"authorization": f"Bearer {valid}"}).status == 200
    assert decision_of(guarded, path) == ("allow", None, None)

    path = f"/jwt/missing-{run_id}"
    assert guarded.request(path).status == 401
    assert decision_of(guarded, path) == ("deny", "jwt", None)


def test_no_token_on_an_optional_route_is_allowed(guarded, run_id):
    path = f"/optional/{run_id}"
    assert guarded.request(path).status == 200
    assert decision_of(guarded, path) == ("allow", None, None)
    assert guarded.records_for_path(path)[0].attr("enduser.id") is None


def test_a_verified_token_names_the_end_user_and_never_the_token(guarded, issuer, run_id):
    aws_key = "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))
    token = issuer.token({
        "sub": f"alice-{run_id}", "email": "alice@example.com", "groups": ["payments", "admins"],
        "note": aws_key, "tier": 3, "unlisted": "not recorded",
    }, audience=AUDIENCE)
    path = f"/jwt/enduser-{run_id}"
    assert guarded.request(path, headers={"authorization": f"Bearer {token}"}).status == 200
    rec = guarded.records_for_path(path)[0]
    assert rec.attr("enduser.id") == f"alice-{run_id}"
    assert rec.attr("meshaudit.enduser.issuer") == issuer.issuer
    assert rec.attr("meshaudit.enduser.audience") == [AUDIENCE]
    assert rec.attr("meshaudit.enduser.claim.groups") == ["payments", "admins"]
    assert rec.attr("meshaudit.enduser.claim.tier") == "3"
    assert rec.attr("meshaudit.enduser.claim.unlisted") is None
    # Claims pass through redaction's detectors like any other value.
    fired = " ".join(rec.attr("meshaudit.redaction.rules") or [])
    assert aws_key not in rec.attr("meshaudit.enduser.claim.note"), rec.attributes
    assert "detector.aws_key" in fired and "detector.email" in fired, fired
    assert rec.attr("meshaudit.enduser.claim.email") != "alice@example.com"
    # Nothing of the token itself: not its payload, not its signature.
    header, payload, signature = token.split(".")
    text = json.dumps(rec.attributes)
    for part in (payload, signature):
        assert part[:16] not in text, "a piece of the token reached the event"


def test_without_identity_jwt_a_verified_token_records_no_end_user(tmp_path_factory, wasm, issuer, run_id):
    """identity.jwt is off by default: jwt_authn still decides, the end user is not read."""
    authz = testkit.HttpServerThread(RefusingAuthz).start()
    stack = testkit.Stack(
        tmp_path_factory.mktemp("no-jwt"), kind=testkit.EDGE, wasm=wasm, pki=None,
        plugin_config_overrides=dict(testkit.TEST_PLUGIN_CONFIG),
        config_patch=guards(issuer, authz.port),
    )
    try:
        with testkit.running(stack):
            token = issuer.token({"sub": f"bob-{run_id}"}, audience=AUDIENCE)
            path = f"/jwt/off-{run_id}"
            assert stack.request(path, headers={"authorization": f"Bearer {token}"}).status == 200
            rec = stack.records_for_path(path)[0]
            assert rec.attr("meshaudit.decision") == "allow"
            assert rec.attr("enduser.id") is None and rec.attr("meshaudit.enduser.issuer") is None
    finally:
        authz.stop()


def test_rate_limited_request_is_a_rate_limit_denial(guarded, run_id):
    first, second = f"/limited/a-{run_id}", f"/limited/b-{run_id}"
    assert guarded.request(first).status == 200
    assert guarded.request(second).status == 429
    assert decision_of(guarded, first) == ("allow", None, None)
    assert decision_of(guarded, second) == ("deny", "rate_limit", None)


def test_ext_authz_refusal_is_an_ext_authz_denial(guarded, run_id):
    path = f"/authz/{run_id}"
    assert guarded.request(path).status == 403
    assert decision_of(guarded, path) == ("deny", "ext_authz", None)


def test_no_route_is_a_no_route_denial(guarded, run_id):
    path = f"/nowhere/{run_id}"
    assert guarded.request(path).status == 404
    assert decision_of(guarded, path) == ("deny", "no_route", None)


def test_an_upstream_403_is_the_applications_answer_not_a_denial(guarded, run_id):
    path = f"/ok/upstream-403-{run_id}"
    assert guarded.request(f"{path}?status=403").status == 403  # testkit.UpstreamHandler
    rec = guarded.records_for_path(path)[0]
    assert rec.attr("http.response.status_code") == 403
    assert decision_of(guarded, path) == ("allow", None, None)


FALLBACK_PREFIX = "meshaudit-fallback: "


@pytest.fixture
def parts():
    """Whatever a test starts is registered here and stopped at teardown, last first."""
    with contextlib.ExitStack() as stack:
        yield stack


def test_fail_closed_refusal_is_meshaudits_own_denial(app, wasm, parts, tmp_path, run_id):
    """The refused request's event, kept by the log fallback while the collector is down."""
    rotel = testkit.RestartableRotel(tmp_path)  # down: the buffer fills
    parts.callback(rotel.stop)
    envoy = testkit.edge_envoy(
        tmp_path, wasm=wasm, app_port=app.port, collector_port=rotel.http_port,
        plugin_config={
            "format": "json", "flush_interval_ms": 100, "fallback": "log",
            "max_batch_bytes": 2048, "max_buffer_bytes": 4096,
            "routes": [{"match": {"path_prefix": "/pay"}, "fail_closed": True}],
        },
    )
    parts.callback(envoy.stop)
    port = envoy.listener_ports[testkit.EDGE["listener"]]
    refused = None
    for i in range(60):
        path = f"/pay/{run_id}-{i:03d}"
        if testkit.request(port, path).status == 503:
            refused = path
            break
    assert refused is not None, "the fail-closed route never refused a request although the buffer filled up"

    def refused_event():
        for line in envoy.log_text().splitlines():
            at = line.find(FALLBACK_PREFIX)
            if at >= 0:
                event = json.loads(line[at + len(FALLBACK_PREFIX):])
                if event.get("url.path") == refused:
                    return event
        return None

    event = testkit.wait_for(refused_event, 15, 0.1, lambda: f"no fallback line for {refused}")
    assert event["http.response.status_code"] == 503
    assert (event["meshaudit.decision"], event["meshaudit.decision.reason"]) == ("deny", "fail_closed")
