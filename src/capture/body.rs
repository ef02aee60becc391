//! Body capture: opt-in per route, a byte limit, a media-type allowlist. Bytes are copied as
//! they stream through, up to the limit, and the body is never held back: a body larger than
//! the limit is truncated in the event, never refused. Compressed and binary bodies are skipped
//! with a marker (`meshaudit.request.body.capture`: `complete`, `truncated`,
//! `skipped:compressed`, `skipped:content_type`, `skipped:binary`).

use crate::config::{BodyCapture, ConfigError};
use crate::event::{attr, AuditEvent, Value};
use crate::redact::cut::{drop_partial_tail, BODY_MARGIN};
use crate::route::{RequestLine, Route};

/// Compiled body capture settings.
#[derive(Debug, Clone, Default)]
pub struct BodyPolicy {
    entries: Vec<(Route, BodyCapture)>,
}

/// How a captured body is read by redaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
    Multipart,
    Text,
}

impl BodyKind {
    fn name(self) -> &'static str {
        match self {
            BodyKind::Json => "json",
            BodyKind::Form => "form",
            BodyKind::Multipart => "multipart",
            BodyKind::Text => "text",
        }
    }
}

/// One body being captured, or why it is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyState {
    Skipped(&'static str),
    Capturing {
        buf: Vec<u8>,
        /// Bytes the event keeps (`max_bytes`); capture takes [`BODY_MARGIN`] more.
        keep: usize,
        limit: usize,
        truncated: bool,
        kind: BodyKind,
    },
}

/// Which side of the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request,
    Response,
}

impl BodyPolicy {
    pub fn compile(entries: &[BodyCapture]) -> Result<BodyPolicy, ConfigError> {
        let mut out = Vec::new();
        for (i, b) in entries.iter().enumerate() {
            let route = Route::compile(&b.route).map_err(|e| ConfigError {
                field: format!("body_capture[{i}].match"),
                reason: e,
            })?;
            if b.content_types.is_empty() {
                return Err(ConfigError {
                    field: format!("body_capture[{i}].content_types"),
                    reason: "lists no media type".into(),
                });
            }
            let mut b = b.clone();
            b.content_types = b
                .content_types
                .iter()
                .map(|t| t.to_ascii_lowercase())
                .collect();
            out.push((route, b));
        }
        Ok(BodyPolicy { entries: out })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The capture settings for a request, if its route has body capture.
    pub fn for_request(&self, line: &RequestLine<'_>) -> Option<&BodyCapture> {
        self.entries
            .iter()
            .find(|(r, _)| r.matches(line))
            .map(|(_, b)| b)
    }
}

impl BodyState {
    /// Decides from the message's headers whether its body is captured.
    pub fn start(
        spec: &BodyCapture,
        side: Side,
        content_type: Option<&[u8]>,
        content_encoding: Option<&[u8]>,
    ) -> Option<BodyState> {
        let wanted = match side {
            Side::Request => spec.request,
            Side::Response => spec.response,
        };
        if !wanted {
            return None;
        }
        if content_encoding.is_some_and(|e| !e.eq_ignore_ascii_case(b"identity")) {
            return Some(BodyState::Skipped("skipped:compressed"));
        }
        let media = content_type
            .map(|t| {
                String::from_utf8_lossy(t)
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        if !spec.content_types.contains(&media) {
            return Some(BodyState::Skipped("skipped:content_type"));
        }
        let kind = if media == "application/json" || media.ends_with("+json") {
            BodyKind::Json
        } else if media == "application/x-www-form-urlencoded" {
            BodyKind::Form
        } else if media == "multipart/form-data" {
            BodyKind::Multipart
        } else {
            BodyKind::Text
        };
        let keep = usize::try_from(spec.max_bytes).unwrap_or(usize::MAX);
        Some(BodyState::Capturing {
            buf: Vec::new(),
            keep,
            limit: keep.saturating_add(BODY_MARGIN),
            truncated: false,
            kind,
        })
    }

    /// Bytes still wanted (0 once the limit is reached).
    pub fn wants(&self) -> usize {
        match self {
            BodyState::Capturing { buf, limit, .. } => limit.saturating_sub(buf.len()),
            BodyState::Skipped(_) => 0,
        }
    }

    /// Takes the next chunk of the body, `total` bytes long, of which `bytes` were read.
    pub fn push(&mut self, bytes: &[u8], total: usize) {
        if let BodyState::Capturing {
            buf,
            limit,
            truncated,
            ..
        } = self
        {
            let room = limit.saturating_sub(buf.len());
            buf.extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or(bytes));
            if total > room {
                *truncated = true;
            }
        }
    }

    /// Writes the body and its markers into the event. A body cut by capture loses what the
    /// cut may have left of a secret; a body longer than `max_bytes` is cut to it by
    /// redaction, once redacted (see `redact::cut`).
    pub fn finish(self, side: Side, e: &mut AuditEvent) {
        let (body_key, type_key, capture_key) = match side {
            Side::Request => (
                attr::REQUEST_BODY,
                attr::REQUEST_BODY_TYPE,
                attr::REQUEST_BODY_CAPTURE,
            ),
            Side::Response => (
                attr::RESPONSE_BODY,
                attr::RESPONSE_BODY_TYPE,
                attr::RESPONSE_BODY_CAPTURE,
            ),
        };
        let (buf, keep, truncated, kind) = match self {
            BodyState::Skipped(why) => {
                e.set(capture_key, Value::Str(why.into()));
                return;
            }
            BodyState::Capturing {
                buf,
                keep,
                truncated,
                kind,
                ..
            } => (buf, keep, truncated, kind),
        };
        let mut text = match String::from_utf8(buf) {
            Ok(t) => t,
            Err(err) => {
                // A cut in the middle of a character is not binary; anything else is.
                let valid = err.utf8_error().valid_up_to();
                let bytes = err.into_bytes();
                if truncated && err_is_tail(&bytes, valid) {
                    String::from_utf8_lossy(bytes.get(..valid).unwrap_or(&[])).into_owned()
                } else {
                    e.set(capture_key, Value::Str("skipped:binary".into()));
                    return;
                }
            }
        };
        if text.contains('\0') {
            e.set(capture_key, Value::Str("skipped:binary".into()));
            return;
        }
        if truncated {
            drop_partial_tail(&mut text);
        }
        let cut = truncated || text.len() > keep;
        match side {
            Side::Request => e.body_limits.request = Some(keep),
            Side::Response => e.body_limits.response = Some(keep),
        }
        e.set(
            capture_key,
            Value::Str(if cut { "truncated" } else { "complete" }.into()),
        );
        e.set(type_key, Value::Str(kind.name().into()));
        e.set(body_key, Value::Str(text));
    }
}

/// Whether invalid UTF-8 at `valid` is only an incomplete character at the very end.
fn err_is_tail(bytes: &[u8], valid: usize) -> bool {
    bytes.len() - valid < 4
        && std::str::from_utf8(bytes.get(valid..).unwrap_or(&[])).is_err()
        && bytes
            .get(valid..)
            .is_some_and(|t| t.first().is_some_and(|b| *b >= 0xC0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn spec(max: u32) -> BodyCapture {
        serde_json::from_value(serde_json::json!({"max_bytes": max})).unwrap()
    }

    fn finish(state: BodyState) -> AuditEvent {
        let mut e = AuditEvent::new(EventKind::Http);
        state.finish(Side::Request, &mut e);
        e
    }

    #[test]
    fn captures_json_up_to_the_limit_and_a_margin() {
        let mut s = BodyState::start(
            &spec(8),
            Side::Request,
            Some(b"application/json; charset=utf-8"),
            None,
        )
        .unwrap();
        s.push(b"{\"a\":", 5);
        assert_eq!(s.wants(), 3 + BODY_MARGIN);
        s.push(b"12345}", 6);
        let e = finish(s);
        // Redaction cuts it to 8 bytes once redacted.
        assert_eq!(e.get_str(attr::REQUEST_BODY), Some("{\"a\":12345}"));
        assert_eq!(e.body_limits.request, Some(8));
        assert_eq!(e.get_str(attr::REQUEST_BODY_CAPTURE), Some("truncated"));
        assert_eq!(e.get_str(attr::REQUEST_BODY_TYPE), Some("json"));

        let mut s = BodyState::start(&spec(8), Side::Request, Some(b"text/plain"), None).unwrap();
        let long = format!("{} 4111 1111 1111 1111", "a".repeat(BODY_MARGIN));
        s.push(&long.as_bytes()[..s.wants()], long.len());
        assert_eq!(s.wants(), 0);
        let e = finish(s);
        let body = e.get_str(attr::REQUEST_BODY).unwrap();
        assert!(!body.contains("4111"), "the cut card is gone: {body}");
    }

    #[test]
    fn skips_what_it_should() {
        let s = spec(100);
        assert_eq!(
            BodyState::start(&s, Side::Request, Some(b"application/json"), Some(b"gzip")),
            Some(BodyState::Skipped("skipped:compressed"))
        );
        assert_eq!(
            BodyState::start(&s, Side::Request, Some(b"image/png"), None),
            Some(BodyState::Skipped("skipped:content_type"))
        );
        assert_eq!(
            BodyState::start(&s, Side::Request, None, None),
            Some(BodyState::Skipped("skipped:content_type"))
        );
        let mut bin = BodyState::start(&s, Side::Request, Some(b"text/plain"), None).unwrap();
        bin.push(&[0xff, 0xfe, 0x00, 0x41], 4);
        let e = finish(bin);
        assert_eq!(
            e.get_str(attr::REQUEST_BODY_CAPTURE),
            Some("skipped:binary")
        );
        assert!(e.get(attr::REQUEST_BODY).is_none());
        let no_response = BodyCapture {
            response: false,
            ..s
        };
        assert!(
            BodyState::start(&no_response, Side::Response, Some(b"text/plain"), None).is_none()
        );
    }

    #[test]
    fn a_cut_inside_a_character_is_not_binary() {
        let mut s = BodyState::start(&spec(4), Side::Request, Some(b"text/plain"), None).unwrap();
        let text = format!("{}xé", "a ".repeat(BODY_MARGIN / 2 + 1));
        s.push(&text.as_bytes()[..s.wants()], text.len());
        let e = finish(s);
        assert_eq!(
            e.get_str(attr::REQUEST_BODY),
            Some("a ".repeat(BODY_MARGIN / 2 + 1).as_str())
        );
        assert_eq!(e.get_str(attr::REQUEST_BODY_CAPTURE), Some("truncated"));
    }

    #[test]
    fn policy_picks_the_first_matching_route() {
        let entries: Vec<BodyCapture> = serde_json::from_value(serde_json::json!([
            {"match": {"path_prefix": "/pay"}, "max_bytes": 10},
            {"max_bytes": 20}
        ]))
        .unwrap();
        let p = BodyPolicy::compile(&entries).unwrap();
        let line = |path| RequestLine {
            method: "POST",
            host: "h",
            path,
        };
        assert_eq!(p.for_request(&line("/pay/1")).unwrap().max_bytes, 10);
        assert_eq!(p.for_request(&line("/other")).unwrap().max_bytes, 20);
        assert!(BodyPolicy::default().for_request(&line("/x")).is_none());
    }
}
