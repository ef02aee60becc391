"""Envoy's own access-control filters around meshaudit, for tests of the access decision and
of what the report makes of it: jwt_authn (tokens of a test `JwtIssuer`, audience
`GUARD_AUDIENCE`), RBAC denying `/admin`, ext_authz asking a `RefusingAuthz` service the test
runs, and a local rate limit on `/limited`, each on a route of its own (`/jwt`, `/optional`,
`/ok`, `/authz`)."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler

from .tokens import JwtIssuer

GUARD_AUDIENCE = "orders"
HTTP_FILTERS = "type.googleapis.com/envoy.extensions.filters"


class RefusingAuthz(BaseHTTPRequestHandler):
    """An ext_authz HTTP service: refuses every request for `/authz/...`, allows the rest."""

    def _answer(self) -> None:
        status = 403 if self.path.startswith("/authz") else 200
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


def access_guards(issuer: JwtIssuer, authz_port: int):
    """The config patch: routes of their own, and jwt_authn, RBAC, ext_authz and a local rate
    limit between meshaudit and the router (where Istio puts them too)."""

    def patch(cfg: dict) -> None:
        hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        route = lambda name, prefix, **extra: {  # noqa: E731
            "name": name, "match": {"prefix": prefix}, "route": {"cluster": "app", "timeout": "15s"}, **extra,
        }
        limited = {
            "envoy.filters.http.local_ratelimit": {
                "@type": f"{HTTP_FILTERS}.http.local_ratelimit.v3.LocalRateLimit",
                "stat_prefix": "limited",
                "token_bucket": {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "3600s"},
                "filter_enabled": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": "rl_on"},
                "filter_enforced": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": "rl_enforced"},
            }
        }
        hcm["route_config"]["virtual_hosts"][0]["routes"] = [
            route("admin", "/admin"),
            route("jwt", "/jwt"),
            route("optional", "/optional"),
            route("limited", "/limited", typed_per_filter_config=limited),
            route("authz", "/authz"),
            route("ok", "/ok"),
        ]
        added = [
            {"name": "envoy.filters.http.jwt_authn", "typed_config": {
                "@type": f"{HTTP_FILTERS}.http.jwt_authn.v3.JwtAuthentication",
                "providers": {"test": {
                    "issuer": issuer.issuer, "audiences": [GUARD_AUDIENCE],
                    "local_jwks": {"inline_string": issuer.jwks()},
                    "payload_in_metadata": "jwt_payload", "forward": False,
                }},
                "rules": [
                    {"match": {"prefix": "/jwt"}, "requires": {"provider_name": "test"}},
                    {"match": {"prefix": "/optional"}, "requires": {"requires_any": {"requirements": [
                        {"provider_name": "test"}, {"allow_missing": {}}]}}},
                ],
            }},
            {"name": "envoy.filters.http.rbac", "typed_config": {
                "@type": f"{HTTP_FILTERS}.http.rbac.v3.RBAC",
                "rules": {"action": "DENY", "policies": {"deny-admin": {
                    "permissions": [{"url_path": {"path": {"prefix": "/admin"}}}],
                    "principals": [{"any": True}],
                }}},
            }},
            {"name": "envoy.filters.http.ext_authz", "typed_config": {
                "@type": f"{HTTP_FILTERS}.http.ext_authz.v3.ExtAuthz",
                "transport_api_version": "V3",
                "failure_mode_allow": False,
                "http_service": {"server_uri": {
                    "uri": f"http://127.0.0.1:{authz_port}", "cluster": "ext_authz", "timeout": "5s"}},
            }},
            {"name": "envoy.filters.http.local_ratelimit", "typed_config": {
                "@type": f"{HTTP_FILTERS}.http.local_ratelimit.v3.LocalRateLimit",
                "stat_prefix": "http_local_rate_limiter",
            }},
        ]
        hcm["http_filters"][-1:-1] = added  # before the router
        cfg["static_resources"]["clusters"].append({
            "name": "ext_authz", "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": "ext_authz", "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": authz_port}}}}]}]},
        })

    return patch
