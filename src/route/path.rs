//! Path patterns: `/users/{id}/cards/*`, `/files/**`. A literal segment matches itself, `*` and
//! `{name}` match any one segment, and a final `**` matches whatever follows. In redaction
//! rules the `{name}` segments are the ones redacted.

use crate::redact::form::percent_decode;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Any,
    Param(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<Segment>,
    /// Ends with `**`.
    tail: bool,
}

impl PathPattern {
    pub fn parse(pattern: &str) -> Result<PathPattern, String> {
        let Some(rest) = pattern.strip_prefix('/') else {
            return Err(format!("path pattern {pattern:?} must start with '/'"));
        };
        let mut segments = Vec::new();
        let mut tail = false;
        let parts: Vec<&str> = rest.split('/').collect();
        for part in &parts {
            if tail {
                return Err(format!(
                    "path pattern {pattern:?}: '**' must be the last segment"
                ));
            }
            let seg = match *part {
                "**" => {
                    tail = true;
                    continue;
                }
                "*" => Segment::Any,
                p if p.starts_with('{') && p.ends_with('}') && p.len() > 2 => {
                    Segment::Param(p.get(1..p.len() - 1).unwrap_or_default().to_string())
                }
                p if p.contains(['{', '}', '*', '?']) => {
                    return Err(format!("path pattern {pattern:?}: bad segment {p:?}"));
                }
                p => Segment::Literal(p.to_string()),
            };
            segments.push(seg);
        }
        Ok(PathPattern { segments, tail })
    }

    /// Whether the pattern redacts anything (has `{name}` segments).
    pub fn has_params(&self) -> bool {
        self.segments.iter().any(|s| matches!(s, Segment::Param(_)))
    }

    pub fn matches(&self, path: &str) -> bool {
        self.match_segments(path).is_some()
    }

    /// The path's segments when the pattern matches it.
    fn match_segments<'p>(&self, path: &'p str) -> Option<Vec<&'p str>> {
        let rest = path.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.len() < self.segments.len() || (!self.tail && parts.len() != self.segments.len()) {
            return None;
        }
        for (seg, part) in self.segments.iter().zip(&parts) {
            if let Segment::Literal(l) = seg {
                if part != l && percent_decode(part, false) != l.as_str() {
                    return None;
                }
            }
        }
        Some(parts)
    }

    /// Rewrites the `{name}` segments of a matching path with `f(name, decoded segment)`;
    /// `None` from `f` leaves `{name}` in place of the segment. `None` when the pattern does
    /// not match.
    pub fn rewrite(
        &self,
        path: &str,
        mut f: impl FnMut(&str, &str) -> Option<String>,
    ) -> Option<String> {
        let parts = self.match_segments(path)?;
        let mut out = String::with_capacity(path.len());
        for (i, part) in parts.iter().enumerate() {
            out.push('/');
            match self.segments.get(i) {
                Some(Segment::Param(name)) => match f(name, &percent_decode(part, false)) {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                },
                _ => out.push_str(part),
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn matching() {
        let p = PathPattern::parse("/users/{id}/cards/*").unwrap();
        assert!(p.matches("/users/42/cards/7"));
        assert!(!p.matches("/users/42/cards"));
        assert!(!p.matches("/users/42/cards/7/x"));
        assert!(!p.matches("/orders/42/cards/7"));
        assert!(
            p.matches("/%75sers/42/cards/7"),
            "literals match decoded segments"
        );
        let tail = PathPattern::parse("/files/**").unwrap();
        assert!(tail.matches("/files/a/b/c") && tail.matches("/files"));
        assert!(!tail.matches("/other/a"));
    }

    #[test]
    fn rewriting_params() {
        let p = PathPattern::parse("/users/{id}/cards/{card}").unwrap();
        let out = p.rewrite("/users/alice%40example.com/cards/4111", |name, seg| {
            if name == "id" {
                assert_eq!(seg, "alice@example.com");
                Some("[REDACTED]".into())
            } else {
                None
            }
        });
        assert_eq!(out.as_deref(), Some("/users/[REDACTED]/cards/{card}"));
        assert_eq!(p.rewrite("/users/1", |_, _| None), None);
    }

    #[test]
    fn bad_patterns() {
        for bad in ["users/{id}", "/a/**/b", "/a/b*c", "/{}"] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
