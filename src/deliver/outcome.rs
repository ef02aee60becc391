//! What a collector's answer to one export means.

use prost::Message;

use crate::config::Format;
use crate::encode::otlp::proto::ExportLogsServiceResponse;

/// The result of one export attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted; `rejected` records were refused by the collector (OTLP partial success).
    Delivered { rejected: u64 },
    /// Worth another try: no answer (connection failure, timeout), 429, 5xx, or a gRPC status
    /// that says the collector is unavailable or overloaded. `retry_after_ms` is the
    /// collector's `Retry-After`, when it gave one.
    Retry {
        status: Option<u16>,
        retry_after_ms: Option<u64>,
    },
    /// Refused for good (other 4xx, other gRPC errors): counted as rejected.
    Rejected { status: u16 },
}

/// What the collector answered, as the host read it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Answer<'a> {
    /// HTTP status; `None` when there was no answer.
    pub status: Option<u16>,
    /// `grpc-status` (trailers, or headers of a trailers-only answer), for gRPC exports.
    pub grpc_status: Option<u32>,
    /// `Retry-After`, as sent.
    pub retry_after: Option<&'a [u8]>,
    /// The response body (OTLP/HTTP), or the gRPC message with its 5-byte prefix.
    pub body: Option<&'a [u8]>,
}

/// Classifies an answer to an OTLP/HTTP or JSON export.
pub fn classify(answer: &Answer<'_>, format: Format) -> Outcome {
    let retry_after_ms = answer.retry_after.and_then(parse_retry_after);
    match answer.status {
        Some(s) if (200..300).contains(&s) => {
            let rejected = match format {
                Format::Otlp => answer.body.map_or(0, rejected_records),
                Format::Json => 0,
            };
            Outcome::Delivered { rejected }
        }
        Some(s) if s == 429 || (500..600).contains(&s) => Outcome::Retry {
            status: Some(s),
            retry_after_ms,
        },
        Some(s) => Outcome::Rejected { status: s },
        None => Outcome::Retry {
            status: None,
            retry_after_ms: None,
        },
    }
}

/// Classifies an answer to an OTLP/gRPC export (HTTP/2 with gRPC framing).
pub fn classify_grpc(answer: &Answer<'_>) -> Outcome {
    let retry_after_ms = answer.retry_after.and_then(parse_retry_after);
    match (answer.status, answer.grpc_status) {
        (None, _) => Outcome::Retry {
            status: None,
            retry_after_ms: None,
        },
        (Some(200), Some(0)) => {
            let message = answer.body.and_then(|b| b.get(5..)).unwrap_or(&[]);
            Outcome::Delivered {
                rejected: rejected_records(message),
            }
        }
        // UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, ABORTED: the OTLP spec's retryable codes.
        (Some(200), Some(14 | 8 | 4 | 10)) => Outcome::Retry {
            status: Some(200),
            retry_after_ms,
        },
        (Some(200), Some(_)) => Outcome::Rejected { status: 200 },
        // No grpc-status at all on a 200 means the answer was cut off.
        (Some(200), None) => Outcome::Retry {
            status: Some(200),
            retry_after_ms,
        },
        (Some(s), _) if s == 429 || (500..600).contains(&s) => Outcome::Retry {
            status: Some(s),
            retry_after_ms,
        },
        (Some(s), _) => Outcome::Rejected { status: s },
    }
}

/// `rejected_log_records` of an `ExportLogsServiceResponse` (0 when absent or unreadable).
fn rejected_records(body: &[u8]) -> u64 {
    if body.is_empty() {
        return 0;
    }
    ExportLogsServiceResponse::decode(body)
        .ok()
        .and_then(|r| r.partial_success)
        .map_or(0, |p| u64::try_from(p.rejected_log_records).unwrap_or(0))
}

/// `Retry-After` in seconds (an HTTP date is not honoured: the backoff applies).
fn parse_retry_after(v: &[u8]) -> Option<u64> {
    let secs: u64 = std::str::from_utf8(v).ok()?.trim().parse().ok()?;
    Some(secs.min(3600).saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::otlp::proto::ExportLogsPartialSuccess;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn http(status: Option<u16>) -> Answer<'static> {
        Answer {
            status,
            ..Default::default()
        }
    }

    fn partial(n: i64) -> Vec<u8> {
        ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: n,
                error_message: "x".into(),
            }),
        }
        .encode_to_vec()
    }

    #[test]
    fn http_success_and_partial_success() {
        assert_eq!(
            classify(&http(Some(200)), Format::Otlp),
            Outcome::Delivered { rejected: 0 }
        );
        let body = partial(3);
        let a = Answer {
            body: Some(&body),
            ..http(Some(200))
        };
        assert_eq!(
            classify(&a, Format::Otlp),
            Outcome::Delivered { rejected: 3 }
        );
        assert_eq!(
            classify(&http(Some(204)), Format::Json),
            Outcome::Delivered { rejected: 0 }
        );
        let junk = Answer {
            body: Some(b"\xff\xff"),
            ..http(Some(200))
        };
        assert_eq!(
            classify(&junk, Format::Otlp),
            Outcome::Delivered { rejected: 0 }
        );
    }

    #[test]
    fn http_retry_and_reject() {
        assert_eq!(
            classify(&http(None), Format::Otlp),
            Outcome::Retry {
                status: None,
                retry_after_ms: None
            }
        );
        let a = Answer {
            retry_after: Some(b" 7 "),
            ..http(Some(429))
        };
        assert_eq!(
            classify(&a, Format::Otlp),
            Outcome::Retry {
                status: Some(429),
                retry_after_ms: Some(7000)
            }
        );
        let date = Answer {
            retry_after: Some(b"Wed, 21 Oct 2015 07:28:00 GMT"),
            ..http(Some(503))
        };
        assert_eq!(
            classify(&date, Format::Otlp),
            Outcome::Retry {
                status: Some(503),
                retry_after_ms: None
            }
        );
        assert_eq!(
            classify(&http(Some(400)), Format::Json),
            Outcome::Rejected { status: 400 }
        );
        assert_eq!(
            classify(&http(Some(404)), Format::Otlp),
            Outcome::Rejected { status: 404 }
        );
    }

    #[test]
    fn grpc_answers() {
        let g = |status, grpc| Answer {
            status,
            grpc_status: grpc,
            ..Default::default()
        };
        let mut framed = vec![0, 0, 0, 0, 0];
        let p = partial(2);
        framed[4] = p.len() as u8;
        framed.extend(&p);
        let ok = Answer {
            body: Some(&framed),
            ..g(Some(200), Some(0))
        };
        assert_eq!(classify_grpc(&ok), Outcome::Delivered { rejected: 2 });
        assert_eq!(
            classify_grpc(&g(Some(200), Some(14))),
            Outcome::Retry {
                status: Some(200),
                retry_after_ms: None
            }
        );
        assert_eq!(
            classify_grpc(&g(Some(200), Some(3))),
            Outcome::Rejected { status: 200 }
        );
        assert_eq!(
            classify_grpc(&g(Some(200), None)),
            Outcome::Retry {
                status: Some(200),
                retry_after_ms: None
            }
        );
        assert_eq!(
            classify_grpc(&g(None, None)),
            Outcome::Retry {
                status: None,
                retry_after_ms: None
            }
        );
        assert_eq!(
            classify_grpc(&g(Some(503), None)),
            Outcome::Retry {
                status: Some(503),
                retry_after_ms: None
            }
        );
        assert_eq!(
            classify_grpc(&g(Some(415), None)),
            Outcome::Rejected { status: 415 }
        );
    }
}
