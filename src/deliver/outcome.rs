//! What a collector's answer to one export means.

use prost::Message;

use crate::config::Format;
use crate::encode::otlp::proto::ExportLogsServiceResponse;

/// The result of one export attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted; `rejected` records were refused by the collector (OTLP partial success).
    Delivered { rejected: u64 },
    /// Not accepted: no answer, or an error status.
    Failed { status: Option<u16> },
}

/// Classifies an answer. `status` is `None` when there was no answer (connection failure,
/// timeout); `body` is the response body, read only for OTLP success.
pub fn classify(status: Option<u16>, format: Format, body: Option<&[u8]>) -> Outcome {
    match status {
        Some(s) if (200..300).contains(&s) => {
            let rejected = match (format, body) {
                (Format::Otlp, Some(b)) if !b.is_empty() => ExportLogsServiceResponse::decode(b)
                    .ok()
                    .and_then(|r| r.partial_success)
                    .map_or(0, |p| u64::try_from(p.rejected_log_records).unwrap_or(0)),
                _ => 0,
            };
            Outcome::Delivered { rejected }
        }
        other => Outcome::Failed { status: other },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::otlp::proto::ExportLogsPartialSuccess;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn success_and_partial_success() {
        assert_eq!(
            classify(Some(200), Format::Otlp, None),
            Outcome::Delivered { rejected: 0 }
        );
        let body = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: 3,
                error_message: "x".into(),
            }),
        }
        .encode_to_vec();
        assert_eq!(
            classify(Some(200), Format::Otlp, Some(&body)),
            Outcome::Delivered { rejected: 3 }
        );
        assert_eq!(
            classify(Some(204), Format::Json, Some(b"ok")),
            Outcome::Delivered { rejected: 0 }
        );
        assert_eq!(
            classify(Some(200), Format::Otlp, Some(b"\xff\xff")),
            Outcome::Delivered { rejected: 0 }
        );
    }

    #[test]
    fn failures() {
        assert_eq!(
            classify(None, Format::Otlp, None),
            Outcome::Failed { status: None }
        );
        assert_eq!(
            classify(Some(503), Format::Otlp, None),
            Outcome::Failed { status: Some(503) }
        );
        assert_eq!(
            classify(Some(400), Format::Json, None),
            Outcome::Failed { status: Some(400) }
        );
    }
}
