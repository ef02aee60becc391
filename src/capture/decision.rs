//! The access decision behind a request or connection, normalized from what Envoy reports
//! (response flags, response code details, a connection's termination details) into
//! `meshaudit.decision` (`allow` | `deny`), and for a denial a reason from a small set
//! (`meshaudit.decision.reason`) and the policy where Envoy names it
//! (`meshaudit.decision.policy`). Pure: it reads values capture already holds, no host call.
//!
//! The details strings are Envoy's (checked against Envoy 1.40 in tests/e2e/test_decision.py):
//! RBAC `rbac_access_denied_matched_policy[NAME]` (`[none]`: no policy matched an allow-list),
//! `jwt_authn_access_denied{REASON}`, `ext_authz_denied` / `ext_authz_error` (flag `UAEX`),
//! `local_rate_limited` / `request_rate_limited` (flag `RL`, `RLSE` when the rate limit
//! service failed), `route_not_found` (flag `NR`), `csrf_origin_mismatch`.

use super::response_flags::Flag;
use crate::event::{attr, AuditEvent, Value};

/// Why a request or connection was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Envoy's RBAC filter (Istio `AuthorizationPolicy` ALLOW/DENY), HTTP or network.
    Rbac,
    /// Envoy's `jwt_authn` filter (Istio `RequestAuthentication`): a missing, bad or expired
    /// token where one is required.
    Jwt,
    /// An external authorization service refused, or failed while failure is not allowed
    /// (Istio `AuthorizationPolicy` CUSTOM).
    ExtAuthz,
    /// A local or global rate limit.
    RateLimit,
    /// meshaudit itself: a fail-closed route while the audit buffer was full.
    FailClosed,
    /// No route matched.
    NoRoute,
    /// Envoy's CSRF filter.
    Csrf,
    /// The TLS handshake was refused (for example a client certificate mTLS requires was not
    /// presented or not trusted); connection events only.
    Tls,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::Rbac => "rbac",
            Reason::Jwt => "jwt",
            Reason::ExtAuthz => "ext_authz",
            Reason::RateLimit => "rate_limit",
            Reason::FailClosed => "fail_closed",
            Reason::NoRoute => "no_route",
            Reason::Csrf => "csrf",
            Reason::Tls => "tls",
        }
    }
}

/// A request's or connection's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny {
        reason: Reason,
        policy: Option<String>,
    },
}

const RBAC_DENIED: &str = "rbac_access_denied_matched_policy[";

impl Decision {
    /// The decision Envoy's response flags and details (response code details for a request,
    /// termination details for a connection) report.
    pub fn from_envoy(flags: i64, details: Option<&str>) -> Decision {
        let details = details.unwrap_or("");
        let deny = |reason| Decision::Deny {
            reason,
            policy: None,
        };
        if let Some(inner) = details.strip_prefix(RBAC_DENIED) {
            // Istio's names hold brackets of their own: `ns[foo]-policy[deny-all]-rule[0]`.
            let name = inner.strip_suffix(']').unwrap_or(inner);
            return Decision::Deny {
                reason: Reason::Rbac,
                policy: (!name.is_empty() && name != "none").then(|| name.to_string()),
            };
        }
        if details.starts_with("jwt_authn_access_denied") {
            return deny(Reason::Jwt);
        }
        if Flag::UnauthorizedExternalService.is_in(flags) || details.starts_with("ext_authz_") {
            return deny(Reason::ExtAuthz);
        }
        if Flag::RateLimited.is_in(flags)
            || Flag::RateLimitServiceError.is_in(flags)
            || matches!(details, "local_rate_limited" | "request_rate_limited")
        {
            return deny(Reason::RateLimit);
        }
        if Flag::NoRouteFound.is_in(flags) || details == "route_not_found" {
            return deny(Reason::NoRoute);
        }
        if details == "csrf_origin_mismatch" {
            return deny(Reason::Csrf);
        }
        Decision::Allow
    }

    /// meshaudit's own refusal of a fail-closed route.
    pub fn fail_closed() -> Decision {
        Decision::Deny {
            reason: Reason::FailClosed,
            policy: None,
        }
    }

    /// Replaces the decision an event carries with this one.
    pub fn replace(self, e: &mut AuditEvent) {
        e.attributes.retain(|a| {
            !matches!(
                a.key.as_ref(),
                attr::DECISION | attr::DECISION_REASON | attr::DECISION_POLICY
            )
        });
        self.write(e);
    }

    /// Sets `meshaudit.decision` and, for a denial, its reason and policy.
    pub fn write(self, e: &mut AuditEvent) {
        match self {
            Decision::Allow => e.set(attr::DECISION, Value::Str("allow".into())),
            Decision::Deny { reason, policy } => {
                e.set(attr::DECISION, Value::Str("deny".into()));
                e.set(attr::DECISION_REASON, Value::Str(reason.name().into()));
                e.set_str(attr::DECISION_POLICY, policy);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn deny(reason: Reason, policy: Option<&str>) -> Decision {
        Decision::Deny {
            reason,
            policy: policy.map(str::to_string),
        }
    }

    #[test]
    fn envoys_denials_are_named() {
        let d = |flags, details| Decision::from_envoy(flags, details);
        assert_eq!(
            d(0, Some("rbac_access_denied_matched_policy[deny-admin]")),
            deny(Reason::Rbac, Some("deny-admin"))
        );
        assert_eq!(
            d(
                0,
                Some("rbac_access_denied_matched_policy[ns[shop]-policy[orders]-rule[0]]")
            ),
            deny(Reason::Rbac, Some("ns[shop]-policy[orders]-rule[0]"))
        );
        assert_eq!(
            d(0, Some("rbac_access_denied_matched_policy[none]")),
            deny(Reason::Rbac, None)
        );
        assert_eq!(
            d(0, Some("jwt_authn_access_denied{Jwt_is_expired}")),
            deny(Reason::Jwt, None)
        );
        assert_eq!(d(1 << 12, None), deny(Reason::ExtAuthz, None));
        assert_eq!(d(0, Some("ext_authz_error")), deny(Reason::ExtAuthz, None));
        assert_eq!(d(1 << 11, None), deny(Reason::RateLimit, None));
        assert_eq!(
            d(0, Some("local_rate_limited")),
            deny(Reason::RateLimit, None)
        );
        assert_eq!(d(1 << 8, None), deny(Reason::NoRoute, None));
        assert_eq!(d(0, Some("csrf_origin_mismatch")), deny(Reason::Csrf, None));
    }

    #[test]
    fn everything_else_is_allowed_failures_included() {
        for (flags, details) in [
            (0, None),
            (0, Some("via_upstream")),
            (
                1 << 5,
                Some("upstream_reset_before_response_started{connection_failure}"),
            ),
            (1 << 2, Some("response_timeout")),
            (0, Some("direct_response")),
        ] {
            assert_eq!(Decision::from_envoy(flags, details), Decision::Allow);
        }
    }

    #[test]
    fn a_replaced_decision_leaves_nothing_of_the_old_one() {
        let mut e = AuditEvent::new(EventKind::Http);
        deny(Reason::Rbac, Some("p")).write(&mut e);
        assert_eq!(e.get_str(attr::DECISION_POLICY), Some("p"));
        Decision::fail_closed().replace(&mut e);
        assert_eq!(e.get_str(attr::DECISION), Some("deny"));
        assert_eq!(e.get_str(attr::DECISION_REASON), Some("fail_closed"));
        assert_eq!(e.get(attr::DECISION_POLICY), None);
        Decision::Allow.replace(&mut e);
        assert_eq!(e.get_str(attr::DECISION), Some("allow"));
        assert_eq!(e.get(attr::DECISION_REASON), None);
        assert_eq!(e.attributes.len(), 1);
    }
}
