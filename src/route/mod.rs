//! Route matching for redaction rules and body capture: host, path prefix, path pattern,
//! method. An empty match is every request.

use crate::config::RouteMatch;
pub mod path;

use path::PathPattern;

/// A compiled [`RouteMatch`].
#[derive(Debug, Clone, Default)]
pub struct Route {
    host: Option<String>,
    path_prefix: Option<String>,
    path_pattern: Option<PathPattern>,
    method: Option<String>,
}

/// What a route is matched against.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestLine<'a> {
    pub method: &'a str,
    /// `:authority` without its port.
    pub host: &'a str,
    /// `:path` without its query.
    pub path: &'a str,
}

impl Route {
    pub fn compile(m: &RouteMatch) -> Result<Route, String> {
        let path_pattern = match &m.path_pattern {
            Some(p) => Some(PathPattern::parse(p)?),
            None => None,
        };
        if let Some(p) = &m.path_prefix {
            if !p.starts_with('/') {
                return Err(format!("path_prefix {p:?} must start with '/'"));
            }
        }
        Ok(Route {
            host: m.host.as_ref().map(|h| h.to_ascii_lowercase()),
            path_prefix: m.path_prefix.clone(),
            path_pattern,
            method: m.method.as_ref().map(|m| m.to_ascii_uppercase()),
        })
    }

    pub fn is_everything(&self) -> bool {
        self.host.is_none()
            && self.path_prefix.is_none()
            && self.path_pattern.is_none()
            && self.method.is_none()
    }

    pub fn matches(&self, r: &RequestLine<'_>) -> bool {
        if let Some(m) = &self.method {
            if !m.eq_ignore_ascii_case(r.method) {
                return false;
            }
        }
        if let Some(h) = &self.host {
            let ok = match h.strip_prefix("*.") {
                Some(suffix) => {
                    r.host.len() > suffix.len() + 1
                        && r.host.to_ascii_lowercase().ends_with(&format!(".{suffix}"))
                }
                None => h.eq_ignore_ascii_case(r.host),
            };
            if !ok {
                return false;
            }
        }
        if let Some(p) = &self.path_prefix {
            if !r.path.starts_with(p.as_str()) {
                return false;
            }
        }
        if let Some(p) = &self.path_pattern {
            if !p.matches(r.path) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn route(
        host: Option<&str>,
        prefix: Option<&str>,
        pattern: Option<&str>,
        method: Option<&str>,
    ) -> Route {
        Route::compile(&RouteMatch {
            host: host.map(String::from),
            path_prefix: prefix.map(String::from),
            path_pattern: pattern.map(String::from),
            method: method.map(String::from),
        })
        .unwrap()
    }

    #[test]
    fn every_part_must_match() {
        let req = RequestLine {
            method: "POST",
            host: "pay.example.com",
            path: "/v1/charges/ch_1",
        };
        assert!(Route::default().matches(&req) && Route::default().is_everything());
        assert!(route(Some("pay.example.com"), None, None, None).matches(&req));
        assert!(route(Some("*.example.com"), None, None, None).matches(&req));
        assert!(
            !route(Some("*.example.com"), None, None, None).matches(&RequestLine {
                host: "example.com",
                ..req
            })
        );
        assert!(route(None, Some("/v1/"), None, Some("post")).matches(&req));
        assert!(!route(None, Some("/v2/"), None, None).matches(&req));
        assert!(route(None, None, Some("/v1/charges/{id}"), None).matches(&req));
        assert!(!route(None, None, None, Some("GET")).matches(&req));
    }

    #[test]
    fn bad_routes_are_refused() {
        let m = RouteMatch {
            path_prefix: Some("v1".into()),
            ..Default::default()
        };
        assert!(Route::compile(&m).is_err());
        let m = RouteMatch {
            path_pattern: Some("/a/**/b".into()),
            ..Default::default()
        };
        assert!(Route::compile(&m).is_err());
    }
}
