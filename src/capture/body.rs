//! Body capture: opt-in per route, a byte limit, a media-type allowlist. Bytes are copied as
//! they stream through, up to the limit, and the body is never held back: a body larger than
//! the limit is truncated in the event, never refused. Compressed and binary bodies are skipped
//! with a marker (`meshaudit.request.body.capture`: `complete`, `truncated`,
//! `skipped:compressed`, `skipped:content_type`, `skipped:binary`).
//!
//! Every body's buffer holds its bytes from the worker's [`Budget`], grown exactly by what each
//! chunk adds (never doubled). A body whose next chunk the budget cannot cover (or whose buffer
//! cannot grow) stops capturing: `skipped:budget` when it had captured nothing,
//! `truncated:budget` when what it had captured is kept (and redacted like any cut body).

use super::budget::{Budget, Reservation};
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
#[derive(Debug, PartialEq, Eq)]
pub enum BodyState {
    Skipped(&'static str),
    Capturing {
        /// Its capacity is exactly what `held` holds from the budget.
        buf: Vec<u8>,
        held: Reservation,
        /// Bytes the event keeps (`max_bytes`); capture takes [`BODY_MARGIN`] more.
        keep: usize,
        limit: usize,
        truncated: bool,
        /// Capture stopped because the budget (or the allocator) could not cover a chunk.
        over_budget: bool,
        kind: BodyKind,
    },
}

/// The marker of a body stopped for the budget before it captured anything.
pub const SKIPPED_BUDGET: &str = "skipped:budget";
/// The marker of a body stopped for the budget after it captured something.
pub const TRUNCATED_BUDGET: &str = "truncated:budget";

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
    /// Decides from the message's headers whether its body is captured; a captured body holds
    /// its bytes from `budget`.
    pub fn start(
        spec: &BodyCapture,
        side: Side,
        content_type: Option<&[u8]>,
        content_encoding: Option<&[u8]>,
        budget: &Budget,
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
            held: budget.reservation(),
            keep,
            limit: keep.saturating_add(BODY_MARGIN),
            truncated: false,
            over_budget: false,
            kind,
        })
    }

    /// Bytes still wanted by the limit (0 once it is reached), whatever the budget says.
    #[cfg(test)]
    pub fn wants(&self) -> usize {
        match self {
            BodyState::Capturing {
                buf,
                limit,
                over_budget: false,
                ..
            } => limit.saturating_sub(buf.len()),
            _ => 0,
        }
    }

    /// Makes room for the next chunk, `size` bytes long, and returns how many of its bytes to
    /// read: what the limit still wants, once the budget holds them and the buffer has grown to
    /// exactly that. When the budget or the allocator cannot cover them, capture stops (see
    /// the module) and 0 is returned. Asking again for room already made costs nothing.
    pub fn reserve(&mut self, size: usize) -> usize {
        let BodyState::Capturing {
            buf,
            held,
            limit,
            over_budget: false,
            ..
        } = self
        else {
            return 0;
        };
        let want = limit.saturating_sub(buf.len()).min(size);
        // `buf.len() + want` is at most `limit`.
        let short = buf
            .len()
            .saturating_add(want)
            .saturating_sub(buf.capacity());
        if short == 0 {
            return want;
        }
        if !held.grow(short) {
            self.stop_for_budget();
            return 0;
        }
        // A `Vec<u8>` grown with `try_reserve_exact` has exactly the capacity asked for.
        if buf.try_reserve_exact(want).is_err() {
            held.shrink(short);
            self.stop_for_budget();
            return 0;
        }
        want
    }

    /// The budget could not cover the next chunk: what was captured is kept, cut; a body with
    /// nothing captured is skipped (and gives its reservation back at once).
    fn stop_for_budget(&mut self) {
        if let BodyState::Capturing {
            buf,
            held,
            truncated,
            over_budget,
            ..
        } = self
        {
            held.budget().note_exhausted();
            if buf.is_empty() {
                *self = BodyState::Skipped(SKIPPED_BUDGET);
            } else {
                *truncated = true;
                *over_budget = true;
            }
        }
    }

    /// Takes the next chunk of the body, `total` bytes long, of which `bytes` were read (at
    /// most what [`BodyState::reserve`] returned; room is made here if it was not called).
    pub fn push(&mut self, bytes: &[u8], total: usize) {
        let take = self.reserve(bytes.len().min(total));
        if let BodyState::Capturing {
            buf,
            limit,
            truncated,
            over_budget: false,
            ..
        } = self
        {
            let room = limit.saturating_sub(buf.len());
            // Within the capacity reserved above: no reallocation.
            buf.extend_from_slice(bytes.get(..take).unwrap_or(bytes));
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
        let (buf, keep, truncated, over_budget, kind) = match self {
            BodyState::Skipped(why) => {
                e.set(capture_key, Value::Str(why.into()));
                return;
            }
            BodyState::Capturing {
                buf,
                held,
                keep,
                truncated,
                over_budget,
                kind,
                ..
            } => {
                // The bytes now belong to the event (bounded by the delivery buffer), not to
                // body capture.
                drop(held);
                (buf, keep, truncated, over_budget, kind)
            }
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
        let marker = if over_budget {
            TRUNCATED_BUDGET
        } else if cut {
            "truncated"
        } else {
            "complete"
        };
        e.set(capture_key, Value::Str(marker.into()));
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

    /// Starts a body against a budget that never runs out.
    fn start(
        spec: &BodyCapture,
        side: Side,
        content_type: Option<&[u8]>,
        content_encoding: Option<&[u8]>,
    ) -> Option<BodyState> {
        BodyState::start(
            spec,
            side,
            content_type,
            content_encoding,
            &Budget::new(usize::MAX),
        )
    }

    fn finish(state: BodyState) -> AuditEvent {
        let mut e = AuditEvent::new(EventKind::Http);
        state.finish(Side::Request, &mut e);
        e
    }

    #[test]
    fn captures_json_up_to_the_limit_and_a_margin() {
        let mut s = start(
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

        let mut s = start(&spec(8), Side::Request, Some(b"text/plain"), None).unwrap();
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
            start(&s, Side::Request, Some(b"application/json"), Some(b"gzip")),
            Some(BodyState::Skipped("skipped:compressed"))
        );
        assert_eq!(
            start(&s, Side::Request, Some(b"image/png"), None),
            Some(BodyState::Skipped("skipped:content_type"))
        );
        assert_eq!(
            start(&s, Side::Request, None, None),
            Some(BodyState::Skipped("skipped:content_type"))
        );
        let mut bin = start(&s, Side::Request, Some(b"text/plain"), None).unwrap();
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
        assert!(start(&no_response, Side::Response, Some(b"text/plain"), None).is_none());
    }

    #[test]
    fn a_cut_inside_a_character_is_not_binary() {
        let mut s = start(&spec(4), Side::Request, Some(b"text/plain"), None).unwrap();
        let text = format!("{}xé", "a ".repeat(BODY_MARGIN / 2 + 1));
        s.push(&text.as_bytes()[..s.wants()], text.len());
        let e = finish(s);
        assert_eq!(
            e.get_str(attr::REQUEST_BODY),
            Some("a ".repeat(BODY_MARGIN / 2 + 1).as_str())
        );
        assert_eq!(e.get_str(attr::REQUEST_BODY_CAPTURE), Some("truncated"));
    }

    /// The buffer's capacity and what its reservation holds.
    fn held(s: &BodyState) -> (usize, usize) {
        match s {
            BodyState::Capturing { buf, held, .. } => (buf.capacity(), held.bytes()),
            BodyState::Skipped(_) => (0, 0),
        }
    }

    fn start_with(budget: &Budget, max: u32) -> BodyState {
        BodyState::start(&spec(max), Side::Request, Some(b"text/plain"), None, budget).unwrap()
    }

    #[test]
    fn buffers_grow_exactly_by_what_each_chunk_adds() {
        let budget = Budget::new(1 << 20);
        let mut s = start_with(&budget, 4096);
        let mut sent = 0;
        for n in [1, 7, 100, 1000, 3, 2000] {
            let chunk = "x".repeat(n);
            // As the host does: make room, read that much, push it.
            let take = s.reserve(n);
            assert_eq!(take, n);
            s.push(&chunk.as_bytes()[..take], n);
            sent += n;
            assert_eq!(
                held(&s),
                (sent, sent),
                "capacity is exactly the bytes taken"
            );
            assert_eq!(budget.held(), sent);
            // Room already made is not made twice.
            assert_eq!(s.reserve(0), 0);
            assert_eq!(budget.held(), sent);
        }
        // The limit (max_bytes + margin) caps what is reserved.
        let take = s.reserve(1 << 20);
        assert_eq!(take, 4096 + BODY_MARGIN - sent);
        assert_eq!(budget.held(), 4096 + BODY_MARGIN);
        let e = finish(s);
        assert_eq!(e.get_str(attr::REQUEST_BODY_CAPTURE), Some("complete"));
        assert_eq!(budget.held(), 0, "a finished body gives its bytes back");
    }

    #[test]
    fn a_spent_budget_skips_or_cuts_with_a_marker() {
        // Room for 300 bytes on the worker; each body may take up to 50 + 256.
        let budget = Budget::new(300);
        let mut a = start_with(&budget, 50);
        let mut b = start_with(&budget, 50);
        let words = "a ".repeat(100);
        a.push(words.as_bytes(), 200);
        assert_eq!(budget.held(), 200);
        // B's first chunk does not fit: nothing captured, skipped, and it holds nothing.
        assert_eq!(b.reserve(150), 0);
        assert_eq!(b, BodyState::Skipped(SKIPPED_BUDGET));
        assert_eq!(budget.held(), 200);
        // A's next chunk does not fit either: what A has is kept, cut, marked.
        a.push(&[b'b'; 150], 150);
        assert_eq!(a.wants(), 0);
        assert_eq!(a.reserve(10), 0, "a stopped body asks for nothing more");
        a.push(b"late", 4);
        assert_eq!(held(&a), (200, 200));
        assert_eq!(budget.take_exhausted(), 2);
        let e = finish(a);
        assert_eq!(
            e.get_str(attr::REQUEST_BODY_CAPTURE),
            Some(TRUNCATED_BUDGET)
        );
        assert_eq!(e.get_str(attr::REQUEST_BODY), Some(words.as_str()));
        assert_eq!(e.body_limits.request, Some(50));
        let e = finish(b);
        assert_eq!(e.get_str(attr::REQUEST_BODY_CAPTURE), Some(SKIPPED_BUDGET));
        assert!(e.get(attr::REQUEST_BODY).is_none());
        assert_eq!(budget.held(), 0);
        assert_eq!(budget.peak(), 200);
    }

    #[test]
    fn a_budget_cut_drops_what_may_be_part_of_a_secret() {
        let budget = Budget::new(BODY_MARGIN + 100);
        let mut s = start_with(&budget, 100);
        let card = "the invoice total, 4111 1111 1111";
        s.push(card.as_bytes(), card.len());
        let mut other = start_with(&budget, 100);
        let rest = BODY_MARGIN + 100 - card.len();
        other.push(&vec![b'o'; rest], rest);
        assert_eq!(budget.held(), BODY_MARGIN + 100);
        s.push(b" 1111 rest", 10);
        let e = finish(s);
        assert_eq!(
            e.get_str(attr::REQUEST_BODY_CAPTURE),
            Some(TRUNCATED_BUDGET)
        );
        let body = e.get_str(attr::REQUEST_BODY).unwrap();
        assert!(body.starts_with("the invoice total,"), "{body}");
        assert!(!body.contains("4111"), "{body}");
    }

    #[test]
    fn a_dropped_body_gives_its_bytes_back() {
        let budget = Budget::new(1 << 20);
        let mut s = start_with(&budget, 1024);
        s.push(&[b'x'; 700], 10_000);
        let mut r = BodyState::start(
            &spec(1024),
            Side::Response,
            Some(b"text/plain"),
            None,
            &budget,
        )
        .unwrap();
        r.push(&[b'y'; 300], 300);
        assert_eq!(budget.held(), 1000);
        // An aborted stream: its context, and so its bodies, are dropped unfinished.
        drop(s);
        assert_eq!(budget.held(), 300);
        drop(r);
        assert_eq!(budget.held(), 0);
        // Skipped bodies hold nothing.
        let skipped = BodyState::start(&spec(10), Side::Request, Some(b"image/png"), None, &budget);
        assert_eq!(skipped, Some(BodyState::Skipped("skipped:content_type")));
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn many_bodies_never_hold_more_than_the_budget() {
        let mut rng = crate::test_rng::XorShift::seeded();
        let budget = Budget::new(64 * 1024);
        let mut live: Vec<BodyState> = Vec::new();
        let mut stopped = 0;
        let chunk = vec![b'z'; 9000];
        for step in 0..20_000 {
            match rng.below(8) {
                0 => live.push(start_with(&budget, 1 + rng.below(16_000) as u32)),
                1 if !live.is_empty() => {
                    let s = live.swap_remove(rng.below(live.len()));
                    if rng.below(2) == 0 {
                        finish(s);
                    }
                }
                _ if !live.is_empty() => {
                    let i = rng.below(live.len());
                    let n = 1 + rng.below(chunk.len());
                    let was = matches!(
                        live[i],
                        BodyState::Capturing {
                            over_budget: false,
                            ..
                        }
                    );
                    let take = live[i].reserve(n);
                    live[i].push(&chunk[..take], n);
                    let now = matches!(
                        live[i],
                        BodyState::Capturing {
                            over_budget: false,
                            ..
                        }
                    );
                    stopped += usize::from(was && !now);
                }
                _ => {}
            }
            let sum: usize = live.iter().map(|s| held(s).1).sum();
            assert_eq!(budget.held(), sum, "step {step}");
            assert!(live.iter().all(|s| held(s).0 == held(s).1), "step {step}");
            assert!(budget.held() <= budget.limit(), "step {step}");
        }
        assert!(stopped > 0, "the budget ran out at least once");
        assert_eq!(budget.take_exhausted(), stopped as u64);
        assert!(budget.peak() <= budget.limit());
        live.clear();
        assert_eq!(budget.held(), 0);
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
