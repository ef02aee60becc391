//! Capture: turn values read from the host into audit events.
//!
//! Everything here is pure. The host is reached through [`Host`], which the proxy-wasm layer
//! implements with real host calls and tests implement with recorded values.

pub mod body;
pub mod budget;
pub mod certificate;
pub mod connection;
pub mod decision;
pub mod decode;
pub mod enduser;
pub mod http;
pub mod identity;
pub mod node;
pub mod protobuf;
pub mod request_attributes;
pub mod response_flags;
pub mod snapshot;
pub mod tcp;
pub mod trace_context;
pub mod workload;

/// Read access to the host's attributes (Envoy's `proxy_get_property`).
pub trait Host {
    /// The raw value at `path`, or `None` when the host has no value there.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;

    /// The value at `path` as a string (invalid UTF-8 is replaced and noted in `anomalies`).
    fn string(&self, path: &[&str], anomalies: &mut Anomalies) -> Option<String> {
        self.property(path)
            .map(|v| decode::string(v, path.last().copied().unwrap_or(""), anomalies))
    }

    /// The value at `path` as a 64-bit integer (Envoy encodes them as 8 little-endian bytes).
    fn int(&self, path: &[&str]) -> Option<i64> {
        self.property(path).and_then(|v| decode::int64(&v))
    }

    /// The value at `path` as a boolean (one byte).
    fn boolean(&self, path: &[&str]) -> Option<bool> {
        self.property(path).and_then(|v| decode::boolean(&v))
    }

    /// Whether the request's attributes come from one evaluated list (`snapshot`), which also
    /// answers questions that are not Envoy attributes (`request_attributes::JWT_PAYLOAD_PRESENT`).
    fn evaluated(&self) -> bool {
        false
    }
}

/// Things about the traffic that were not as expected, recorded in the event so a reader knows
/// a value was altered (`meshaudit.capture.anomalies`). Never holds traffic data, only names.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Anomalies(pub Vec<String>);

impl Anomalies {
    pub fn note(&mut self, what: &str, field: &str) {
        if self.0.len() < 32 {
            self.0.push(format!("{what}:{field}"));
        }
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A recorded host for tests.
    use super::Host;
    use std::collections::HashMap;

    #[derive(Default)]
    pub struct RecordedHost(pub HashMap<String, Vec<u8>>);

    impl RecordedHost {
        pub fn with(mut self, path: &str, value: impl Into<Vec<u8>>) -> Self {
            self.0.insert(path.to_string(), value.into());
            self
        }
        pub fn with_int(self, path: &str, value: i64) -> Self {
            self.with(path, value.to_le_bytes().to_vec())
        }
    }

    impl Host for RecordedHost {
        fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
            self.0.get(&path.join(".")).cloned()
        }
    }
}
