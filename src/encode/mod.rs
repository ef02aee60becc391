//! Encoding: audit events to bytes on the wire. Each event is encoded once, straight into the
//! batch buffer; a batch is framed (the envelope written around its records) when it is sent.
//! Encoding knows nothing of delivery.

pub mod json;
pub mod otlp;

use crate::config::Format;
use crate::event::AuditEvent;
use crate::event::Resource;

/// The configured wire format, with the resource attributes it carries.
#[derive(Debug, Clone)]
pub enum Codec {
    Otlp(otlp::OtlpCodec),
    Json(json::JsonCodec),
}

impl Codec {
    pub fn new(format: Format, resource: &Resource) -> Codec {
        match format {
            Format::Otlp => Codec::Otlp(otlp::OtlpCodec::new(resource)),
            Format::Json => Codec::Json(json::JsonCodec::new(resource)),
        }
    }

    /// Appends one encoded event to `out`.
    pub fn encode(&self, event: &AuditEvent, out: &mut Vec<u8>) {
        match self {
            Codec::Otlp(c) => c.encode(event, out),
            Codec::Json(c) => c.encode(event, out),
        }
    }

    /// The request body for a batch of records appended by [`Codec::encode`].
    pub fn frame(&self, records: &[u8]) -> Vec<u8> {
        match self {
            Codec::Otlp(c) => c.frame(records),
            Codec::Json(_) => records.to_vec(),
        }
    }
}

/// The media type of an export request of this format (OTLP/HTTP).
pub fn content_type(format: Format) -> &'static str {
    match format {
        Format::Otlp => "application/x-protobuf",
        Format::Json => "application/x-ndjson",
    }
}
