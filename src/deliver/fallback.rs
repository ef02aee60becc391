//! The log fallback (`fallback: "log"`): events that would be lost are written to Envoy's log
//! instead, one prefixed JSON line each, for a node agent to ship.

use crate::encode::json::JsonCodec;
use crate::encode::{otlp, Codec};
use crate::event::{AuditEvent, Resource};

/// The prefix of fallback lines in Envoy's log; what follows is one JSON event.
pub const FALLBACK_PREFIX: &str = "meshaudit-fallback: ";

/// The lines written for the log fallback, waiting for the host to log them.
pub struct LogFallback {
    json: JsonCodec,
    lines: Vec<String>,
}

impl LogFallback {
    pub fn new(resource: &Resource) -> LogFallback {
        LogFallback {
            json: JsonCodec::new(resource),
            lines: Vec::new(),
        }
    }

    /// One event's line.
    pub fn push_event(&mut self, event: &AuditEvent) {
        let mut line = Vec::new();
        self.json.encode(event, &mut line);
        self.push_line(&line);
    }

    /// A batch's encoded records (in the wire format `codec` wrote them), a line per event.
    /// Returns how many lines that was.
    pub fn push_records(&mut self, codec: &Codec, records: &[u8]) -> u64 {
        let lines: Vec<Vec<u8>> = match codec {
            Codec::Json(_) => records
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect(),
            Codec::Otlp(_) => otlp::decode_records(records)
                .iter()
                .map(|e| {
                    let mut line = Vec::new();
                    self.json.encode(e, &mut line);
                    line
                })
                .collect(),
        };
        for line in &lines {
            self.push_line(line);
        }
        lines.len() as u64
    }

    fn push_line(&mut self, json_line: &[u8]) {
        let text = String::from_utf8_lossy(json_line);
        self.lines
            .push(format!("{FALLBACK_PREFIX}{}", text.trim_end()));
    }

    /// The lines for Envoy's log, taken by the host.
    pub fn take(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lines)
    }
}
