//! Exports to the collector: the next call to dispatch, what the host did with it, and the
//! collector's answer — read from its header maps, classified, and settled.

use std::borrow::Cow;
use std::rc::Rc;

use super::{Level, Worker};
use crate::config::Protocol;
use crate::deliver::flights::Export;
use crate::deliver::outcome::{classify, classify_grpc, Answer, Outcome};
use crate::encode::otlp;
use crate::plugin::ExportRequest;

/// Most of a collector's answer that is read (for OTLP partial success).
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// An HTTP call to make: one export, and the request every export carries.
#[derive(Debug)]
pub struct Call {
    pub target: Rc<ExportRequest>,
    pub export: Export,
}

impl Call {
    /// The request headers of the call.
    pub fn headers(&self) -> Vec<(&str, &str)> {
        let mut headers = vec![
            (":method", "POST"),
            (":path", self.target.path.as_str()),
            (":authority", self.target.authority.as_str()),
            ("content-type", self.target.content_type),
            (
                "user-agent",
                concat!("meshaudit/", env!("CARGO_PKG_VERSION")),
            ),
        ];
        if self.target.grpc {
            headers.push(("te", "trailers"));
        }
        let credentials = &self.target.credentials.0;
        headers.extend(credentials.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        headers
    }

    /// The request body: the export, framed for gRPC.
    pub fn body(&self) -> Cow<'_, [u8]> {
        if self.target.grpc {
            Cow::Owned(otlp::grpc_frame(&self.export.body))
        } else {
            Cow::Borrowed(&self.export.body)
        }
    }
}

/// The header maps of a collector's answer (as decoded pairs); a name is looked up in the
/// trailers first, where gRPC puts its status.
pub struct AnswerHeaders<'h, 'a> {
    headers: &'h [(&'a [u8], &'a [u8])],
    trailers: &'h [(&'a [u8], &'a [u8])],
}

impl<'h, 'a> AnswerHeaders<'h, 'a> {
    pub fn new(
        headers: &'h [(&'a [u8], &'a [u8])],
        trailers: &'h [(&'a [u8], &'a [u8])],
    ) -> AnswerHeaders<'h, 'a> {
        AnswerHeaders { headers, trailers }
    }

    fn find(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.trailers
            .iter()
            .chain(self.headers.iter())
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }

    fn number(&self, name: &[u8]) -> Option<u32> {
        std::str::from_utf8(self.find(name)?)
            .ok()?
            .trim()
            .parse::<u32>()
            .ok()
    }

    /// The HTTP status; `None` when there was no answer.
    pub fn status(&self) -> Option<u16> {
        self.number(b":status").and_then(|s| u16::try_from(s).ok())
    }

    /// How much of a body of `body_size` bytes to read: only a success's body is read (for
    /// OTLP partial success), and at most `MAX_RESPONSE_BODY` of it.
    pub fn body_to_read(&self, body_size: usize) -> Option<usize> {
        match self.status() {
            Some(200..=299) if body_size > 0 => Some(body_size.min(MAX_RESPONSE_BODY)),
            _ => None,
        }
    }

    /// The answer, with the body the host read.
    pub fn answer(&self, body: Option<&'a [u8]>) -> Answer<'a> {
        Answer {
            status: self.status(),
            grpc_status: self.number(b"grpc-status"),
            retry_after: self.find(b"retry-after"),
            body,
        }
    }
}

impl Worker {
    /// The next export due for sending, as the call to make.
    pub fn next_call(&mut self, now_ms: u64) -> Option<Call> {
        let export = self.pipeline.next_export(now_ms)?;
        Some(Call {
            target: self.export.clone(),
            export,
        })
    }

    /// What the host did with a call: dispatched, the answer to come under a token, or
    /// refused (with the host's status), in which case it is retried after the backoff.
    /// Returns whether to go on sending.
    pub fn call_sent(&mut self, call: Call, sent: Result<u32, String>, now_ms: u64) -> bool {
        match sent {
            Ok(token) => {
                self.pipeline.dispatched(token, call.export);
                true
            }
            Err(status) => {
                self.say(
                    Level::Warn,
                    format!(
                        "meshaudit: could not send {} events to cluster {:?}: host refused the call ({status}); is the cluster defined?",
                        call.export.meta.events, call.target.cluster
                    ),
                );
                self.pipeline.dispatch_failed(call.export, now_ms);
                false
            }
        }
    }

    /// The collector's answer to the export under `token` (or its absence, on a timeout or a
    /// failed connection): classified for the configured protocol and settled.
    pub fn settle(&mut self, token: u32, answer: &Answer<'_>, now_ms: u64) -> Outcome {
        let outcome = match self.config().protocol {
            Protocol::Grpc => classify_grpc(answer),
            Protocol::Http => classify(answer, self.config().format),
        };
        match outcome {
            Outcome::Delivered { .. } => {}
            Outcome::Retry { status, .. } => self.say(
                Level::Warn,
                format!(
                    "meshaudit: collector did not take a batch (status {status:?}); will retry"
                ),
            ),
            Outcome::Rejected { status } => self.say(
                Level::Warn,
                format!("meshaudit: collector rejected a batch for good (status {status})"),
            ),
        }
        self.pipeline.completed(token, outcome, now_ms);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{said, worker};
    use super::*;
    use crate::encode::otlp::proto::{ExportLogsPartialSuccess, ExportLogsServiceResponse};
    use crate::event::{AuditEvent, EventKind};
    use crate::plugin::Plugin;
    use prost::Message;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    type Pairs = Vec<(&'static [u8], &'static [u8])>;

    /// A worker holding one event, and the call that sends it, dispatched under token 7.
    fn one_in_flight(json: &str) -> Worker {
        let mut w = worker(json);
        w.record(AuditEvent::new(EventKind::Http));
        let call = w.next_call(0).unwrap();
        assert!(w.call_sent(call, Ok(7), 0));
        assert!(!w.idle());
        w
    }

    fn answer_of(
        w: &mut Worker,
        headers: &Pairs,
        trailers: &Pairs,
        body: Option<&[u8]>,
    ) -> Outcome {
        let maps = AnswerHeaders::new(headers, trailers);
        w.settle(7, &maps.answer(body), 0)
    }

    #[test]
    fn a_call_carries_the_compiled_request_line_and_the_export() {
        let mut w = worker(
            r#"{"max_batch_events": 1, "collector": {"cluster": "c", "authority": "otel", "path": "/v1/logs"}}"#,
        );
        assert!(w.next_call(0).is_none(), "nothing to send");
        w.record(AuditEvent::new(EventKind::Http));
        let call = w.next_call(0).unwrap();
        let headers = call.headers();
        assert_eq!(
            headers[..4],
            [
                (":method", "POST"),
                (":path", "/v1/logs"),
                (":authority", "otel"),
                ("content-type", "application/x-protobuf")
            ]
        );
        assert_eq!(headers[4].0, "user-agent");
        assert_eq!(headers.len(), 5);
        assert_eq!(call.body().as_ref(), call.export.body.as_slice());
        assert_eq!(call.target.cluster, "c");
        let mut g = worker(r#"{"max_batch_events": 1, "protocol": "grpc"}"#);
        g.record(AuditEvent::new(EventKind::Http));
        let call = g.next_call(0).unwrap();
        assert_eq!(call.headers().last(), Some(&("te", "trailers")));
        assert_eq!(
            call.body().as_ref(),
            otlp::grpc_frame(&call.export.body).as_slice()
        );
        // `collector.headers`: after the export's own headers, values from the environment.
        let plugin = Plugin::load(
            br#"{"max_batch_events": 1, "collector": {"headers": {"x-api-key": "KEY_VAR"}}}"#,
            |v| (v == "KEY_VAR").then(|| b"k-123".to_vec()),
        )
        .unwrap();
        let mut k = Worker::new(plugin, &Vec::new(), 1, None);
        k.record(AuditEvent::new(EventKind::Http));
        let call = k.next_call(0).unwrap();
        assert_eq!(call.headers().last(), Some(&("x-api-key", "k-123")));
    }

    #[test]
    fn a_refused_call_is_said_and_retried_after_the_backoff() {
        let mut w = worker(r#"{"max_batch_events": 1, "collector": {"cluster": "nowhere"}}"#);
        w.record(AuditEvent::new(EventKind::Http));
        let call = w.next_call(0).unwrap();
        assert!(!w.call_sent(call, Err("BadArgument".into()), 0));
        assert_eq!(
            said(&mut w),
            ["meshaudit: could not send 1 events to cluster \"nowhere\": host refused the call (BadArgument); is the cluster defined?"]
        );
        assert!(w.next_call(0).is_none(), "not before the backoff");
        let p = w.publish();
        assert_eq!((p.stats.batches_failed, p.stats.retries), (1, 1));
        assert!(w.next_call(u64::MAX / 2).is_some(), "retried");
    }

    #[test]
    fn a_2xx_is_delivered_and_an_otlp_partial_success_counts_the_rejected() {
        let mut w = one_in_flight(r#"{"max_batch_events": 1}"#);
        let ok: Pairs = vec![(b":status", b"200")];
        assert_eq!(
            answer_of(&mut w, &ok, &vec![], None),
            Outcome::Delivered { rejected: 0 }
        );
        assert!(said(&mut w).is_empty());
        assert!(w.idle());
        assert_eq!(w.publish().stats.events_sent, 1);

        let mut w = one_in_flight(r#"{"max_batch_events": 1}"#);
        let headers = AnswerHeaders::new(&ok, &[]);
        assert_eq!(headers.body_to_read(0), None);
        assert_eq!(headers.body_to_read(10), Some(10));
        assert_eq!(headers.body_to_read(1 << 20), Some(MAX_RESPONSE_BODY));
        let body = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: 1,
                error_message: "no".into(),
            }),
        }
        .encode_to_vec();
        assert_eq!(
            answer_of(&mut w, &ok, &vec![], Some(&body)),
            Outcome::Delivered { rejected: 1 }
        );
        let s = w.publish().stats;
        assert_eq!(
            (s.events_sent, s.events_rejected, s.events_dropped),
            (0, 1, 1)
        );
    }

    #[test]
    fn a_5xx_or_429_or_no_answer_is_retried_and_a_4xx_dropped() {
        for (status, retry_after, expected) in [
            (
                Some(&b"503"[..]),
                None,
                Outcome::Retry {
                    status: Some(503),
                    retry_after_ms: None,
                },
            ),
            (
                Some(b"429"),
                Some(&b" 2 "[..]),
                Outcome::Retry {
                    status: Some(429),
                    retry_after_ms: Some(2000),
                },
            ),
            (
                None,
                None,
                Outcome::Retry {
                    status: None,
                    retry_after_ms: None,
                },
            ),
        ] {
            let mut w = one_in_flight(r#"{"max_batch_events": 1}"#);
            let mut headers: Pairs = Vec::new();
            if let Some(s) = status {
                headers.push((b":status", s));
            }
            if let Some(r) = retry_after {
                headers.push((b"retry-after", r));
            }
            assert_eq!(AnswerHeaders::new(&headers, &[]).body_to_read(100), None);
            assert_eq!(
                answer_of(&mut w, &headers, &vec![], Some(b"ignored")),
                expected
            );
            let code = status.map(|s| String::from_utf8_lossy(s).into_owned());
            let code = code.map_or("None".to_string(), |c| format!("Some({c})"));
            assert_eq!(
                said(&mut w),
                [format!(
                    "meshaudit: collector did not take a batch (status {code}); will retry"
                )]
            );
            assert!(!w.idle(), "waiting to retry");
            assert_eq!(w.publish().stats.retries, 1);
        }
        let mut w = one_in_flight(r#"{"max_batch_events": 1}"#);
        let bad: Pairs = vec![(b":status", b"400")];
        assert_eq!(
            answer_of(&mut w, &bad, &vec![], None),
            Outcome::Rejected { status: 400 }
        );
        assert_eq!(
            said(&mut w),
            ["meshaudit: collector rejected a batch for good (status 400)"]
        );
        assert!(w.idle());
        let s = w.publish().stats;
        assert_eq!((s.dropped_rejected, s.retries), (1, 0));
    }

    #[test]
    fn a_grpc_answer_is_read_from_its_trailers() {
        let json = r#"{"max_batch_events": 1, "protocol": "grpc"}"#;
        let headers: Pairs = vec![(b":status", b"200"), (b"grpc-status", b"0")];
        let unavailable: Pairs = vec![(b"grpc-status", b"14")];
        let mut w = one_in_flight(json);
        assert_eq!(
            answer_of(&mut w, &headers, &unavailable, None),
            Outcome::Retry {
                status: Some(200),
                retry_after_ms: None
            },
            "the trailer's status wins over the header's"
        );
        let mut w = one_in_flight(json);
        let invalid: Pairs = vec![(b"grpc-status", b"3")];
        assert_eq!(
            answer_of(&mut w, &headers, &invalid, None),
            Outcome::Rejected { status: 200 }
        );
        let mut w = one_in_flight(json);
        assert_eq!(
            answer_of(&mut w, &headers, &vec![], Some(&[0, 0, 0, 0, 0])),
            Outcome::Delivered { rejected: 0 },
            "a trailers-only answer"
        );
        assert!(w.idle());
    }

    #[test]
    fn an_answer_to_an_unknown_token_changes_nothing() {
        let mut w = one_in_flight(r#"{"max_batch_events": 1}"#);
        let ok: Pairs = vec![(b":status", b"200")];
        let answer = AnswerHeaders::new(&ok, &[]).answer(None);
        w.settle(8, &answer, 0);
        assert!(!w.idle());
        assert_eq!(w.publish().stats.events_sent, 0);
    }
}
