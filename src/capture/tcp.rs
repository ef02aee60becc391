//! TCP connections: byte counts as data passes, which side closed first, and the connection's
//! audit events — `open` (optional), `interim` (optional, for long-lived connections) and
//! `close` — all carrying the same connection id so they can be linked.

use std::rc::Rc;

use super::connection::ConnectionFacts;
use super::http::response_flags;
use super::{Anomalies, Host};
use crate::event::{attr, AuditEvent, EventKind, Value};

/// Which event of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Open,
    Interim,
    Close,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Open => "open",
            Phase::Interim => "interim",
            Phase::Close => "close",
        }
    }
}

/// Which end of the proxy a close was seen on, and who closed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closer {
    /// The client closed (downstream remote close).
    Downstream,
    /// The server closed (upstream remote close), or could not be reached.
    Upstream,
    /// Envoy closed (a local close: timeout, TLS failure, upstream connect failure...).
    Proxy,
}

impl Closer {
    fn name(self) -> &'static str {
        match self {
            Closer::Downstream => "downstream",
            Closer::Upstream => "upstream",
            Closer::Proxy => "proxy",
        }
    }
}

/// The state of one audited connection.
#[derive(Debug, Clone, Default)]
pub struct TcpConnection {
    pub id: Option<i64>,
    pub started_unix_nano: u64,
    /// Bytes that came from the client (and went on to the upstream).
    pub from_downstream: u64,
    /// Bytes that came from the upstream (and went on to the client).
    pub from_upstream: u64,
    pub closed_by: Option<Closer>,
    /// Read once the connection carries data (a TLS handshake is over by then).
    pub facts: Option<Rc<ConnectionFacts>>,
    pub interim_events: u32,
    pub last_event_unix_nano: u64,
    pub closed: bool,
}

impl TcpConnection {
    pub fn new(started_unix_nano: u64) -> TcpConnection {
        TcpConnection {
            started_unix_nano,
            last_event_unix_nano: started_unix_nano,
            ..Default::default()
        }
    }

    /// A close seen on the downstream (`downstream: true`) or upstream side; `remote` when the
    /// peer closed. The first close decides who closed.
    pub fn on_close(&mut self, downstream: bool, remote: bool) {
        if self.closed_by.is_none() {
            self.closed_by = Some(match (downstream, remote) {
                (true, true) => Closer::Downstream,
                (false, true) => Closer::Upstream,
                _ => Closer::Proxy,
            });
        }
    }

    /// Whether an interim event is due.
    pub fn interim_due(&self, now_unix_nano: u64, interval_ms: u32) -> bool {
        interval_ms > 0
            && !self.closed
            && now_unix_nano.saturating_sub(self.last_event_unix_nano)
                >= u64::from(interval_ms).saturating_mul(1_000_000)
    }

    /// Builds an event of this connection. `host` (the connection's own context) is read for
    /// what only the host knows at close: upstream, termination details, response flags.
    /// Without it (an interim event from the root's tick) the cached facts are used.
    pub fn event(
        &mut self,
        phase: Phase,
        host: Option<&dyn Host>,
        now_unix_nano: u64,
    ) -> AuditEvent {
        let mut e = AuditEvent::new(EventKind::Tcp);
        e.start_unix_nano = self.started_unix_nano;
        e.observed_unix_nano = now_unix_nano;
        e.set(attr::TCP_PHASE, Value::Str(phase.name().into()));
        e.set(attr::NETWORK_TRANSPORT, Value::Str("tcp".into()));
        e.set_int(attr::CONNECTION_ID, self.id);
        let duration = now_unix_nano.saturating_sub(self.started_unix_nano);
        e.set_int(attr::DURATION_NS, i64::try_from(duration).ok());
        let bytes = |n: u64| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
        e.set(attr::TCP_DOWNSTREAM_RECEIVED, bytes(self.from_downstream));
        e.set(attr::TCP_UPSTREAM_SENT, bytes(self.from_downstream));
        e.set(attr::TCP_UPSTREAM_RECEIVED, bytes(self.from_upstream));
        e.set(attr::TCP_DOWNSTREAM_SENT, bytes(self.from_upstream));
        let mut a = Anomalies::default();
        // Set when the downstream TLS handshake failed (no certificate, unknown CA...).
        let mut transport_failure = None;
        if let Some(host) = host {
            e.set_str(
                attr::UPSTREAM_ADDRESS,
                host.string(&["upstream", "address"], &mut a),
            );
            e.set_str(
                attr::UPSTREAM_CLUSTER,
                host.string(&["xds", "cluster_name"], &mut a),
            );
            if phase == Phase::Close {
                if let Some(flags) = host.int(&["response", "flags"]).filter(|&f| f != 0) {
                    e.set(attr::RESPONSE_FLAGS, Value::Str(response_flags(flags)));
                }
                e.set_str(
                    attr::TERMINATION_DETAILS,
                    host.string(&["connection", "termination_details"], &mut a)
                        .filter(|s| !s.is_empty()),
                );
                transport_failure = host
                    .string(&["connection", "transport_failure_reason"], &mut a)
                    .filter(|s| !s.is_empty());
                e.set_str(
                    attr::UPSTREAM_FAILURE,
                    host.string(&["upstream", "transport_failure_reason"], &mut a)
                        .filter(|s| !s.is_empty()),
                );
            }
        }
        if phase == Phase::Close {
            self.closed = true;
            if transport_failure.is_some() {
                // Envoy reports a refused handshake as the client's close; it was Envoy's.
                self.closed_by = Some(Closer::Proxy);
            }
            if let Some(c) = self.closed_by {
                e.set(attr::TCP_CLOSED_BY, Value::Str(c.name().into()));
            }
            e.set(
                attr::TCP_INTERIM_EVENTS,
                Value::Int(i64::from(self.interim_events)),
            );
        }
        if phase == Phase::Interim {
            self.interim_events += 1;
        }
        self.last_event_unix_nano = now_unix_nano;
        if let Some(f) = &self.facts {
            // At open a TLS handshake may still be running: identities come with later events.
            if phase == Phase::Open {
                f.write_addresses(&mut e);
            } else {
                f.write(&mut e);
            }
            // A certificate that was presented but refused is no identity: Envoy's
            // `connection.mtls` only says one was presented.
            if transport_failure.is_some() {
                e.remove_prefixed("meshaudit.peer.");
                e.replace(attr::MTLS, Value::Bool(false));
            }
            a.0.extend(f.anomalies.0.iter().cloned());
        }
        e.set_str(attr::TRANSPORT_FAILURE, transport_failure);
        if !a.0.is_empty() {
            e.set(attr::ANOMALIES, Value::StrList(a.0));
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::fake::RecordedHost;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn int(e: &AuditEvent, k: &str) -> Option<i64> {
        match e.get(k) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }

    #[test]
    fn close_event_counts_bytes_and_says_who_closed() {
        let mut c = TcpConnection::new(1_000);
        c.id = Some(7);
        c.from_downstream = 100;
        c.from_upstream = 250;
        c.on_close(true, true);
        c.on_close(false, false);
        let host = RecordedHost::default()
            .with("upstream.address", "127.0.0.1:9000")
            .with("xds.cluster_name", "db")
            .with("connection.termination_details", "");
        let e = c.event(Phase::Close, Some(&host), 5_000);
        assert_eq!(e.kind.name(), "meshaudit.tcp");
        assert_eq!(e.get_str(attr::TCP_PHASE), Some("close"));
        assert_eq!(int(&e, attr::CONNECTION_ID), Some(7));
        assert_eq!(int(&e, attr::DURATION_NS), Some(4_000));
        assert_eq!(int(&e, attr::TCP_DOWNSTREAM_RECEIVED), Some(100));
        assert_eq!(int(&e, attr::TCP_UPSTREAM_SENT), Some(100));
        assert_eq!(int(&e, attr::TCP_DOWNSTREAM_SENT), Some(250));
        assert_eq!(e.get_str(attr::TCP_CLOSED_BY), Some("downstream"));
        assert_eq!(e.get_str(attr::UPSTREAM_CLUSTER), Some("db"));
        assert!(
            e.get(attr::TERMINATION_DETAILS).is_none(),
            "empty is absent"
        );
        assert!(c.closed);
    }

    #[test]
    fn refused_upstream_says_so() {
        let mut c = TcpConnection::new(0);
        c.on_close(true, false);
        let host = RecordedHost::default()
            .with_int("response.flags", 1 << 5)
            .with(
                "upstream.transport_failure_reason",
                "delayed connect error: Connection refused",
            );
        let e = c.event(Phase::Close, Some(&host), 10);
        assert_eq!(e.get_str(attr::RESPONSE_FLAGS), Some("UF"));
        assert_eq!(e.get_str(attr::TCP_CLOSED_BY), Some("proxy"));
        assert!(e
            .get_str(attr::UPSTREAM_FAILURE)
            .unwrap()
            .contains("refused"));
    }

    #[test]
    fn a_refused_handshake_is_named_and_carries_no_identity() {
        let host = RecordedHost::default()
            .with("connection.tls_version", "TLSv1.3")
            .with("connection.mtls", vec![1u8])
            .with(
                "connection.uri_san_peer_certificate",
                "spiffe://cluster.local/ns/app/sa/rogue",
            )
            .with(
                "connection.transport_failure_reason",
                "TLS_error:|CERTIFICATE_VERIFY_FAILED",
            );
        let mut c = TcpConnection::new(0);
        c.on_close(true, true);
        c.facts = Some(Rc::new(ConnectionFacts::read(&host)));
        let e = c.event(Phase::Close, Some(&host), 10);
        assert_eq!(e.get(attr::MTLS), Some(&Value::Bool(false)));
        assert!(
            !e.attributes
                .iter()
                .any(|a| a.key.starts_with("meshaudit.peer.")),
            "{e:?}"
        );
        assert!(e
            .get_str(attr::TRANSPORT_FAILURE)
            .unwrap()
            .contains("VERIFY_FAILED"));
        assert_eq!(e.get_str(attr::TCP_CLOSED_BY), Some("proxy"));
    }

    #[test]
    fn interim_events_are_due_by_interval_and_counted_on_close() {
        let mut c = TcpConnection::new(0);
        let ms = 1_000_000;
        assert!(!c.interim_due(999 * ms, 1000));
        assert!(c.interim_due(1000 * ms, 1000));
        assert!(!c.interim_due(1000 * ms, 0), "off");
        c.from_downstream = 5;
        let i = c.event(Phase::Interim, None, 1000 * ms);
        assert_eq!(i.get_str(attr::TCP_PHASE), Some("interim"));
        assert_eq!(int(&i, attr::TCP_DOWNSTREAM_RECEIVED), Some(5));
        assert!(!c.interim_due(1500 * ms, 1000));
        assert!(c.interim_due(2000 * ms, 1000));
        let close = c.event(Phase::Close, None, 2500 * ms);
        assert_eq!(int(&close, attr::TCP_INTERIM_EVENTS), Some(1));
        assert!(!c.interim_due(9000 * ms, 1000), "closed");
    }

    #[test]
    fn identities_come_from_the_connection_facts() {
        let host = RecordedHost::default()
            .with("connection.tls_version", "TLSv1.3")
            .with("connection.mtls", vec![1u8])
            .with(
                "connection.uri_san_peer_certificate",
                "spiffe://cluster.local/ns/app/sa/api",
            );
        let mut c = TcpConnection::new(0);
        c.facts = Some(Rc::new(ConnectionFacts::read(&host)));
        let open = c.event(Phase::Open, None, 1);
        assert!(open.get(attr::MTLS).is_none(), "not known at open");
        let e = c.event(Phase::Close, None, 2);
        assert_eq!(e.get(attr::MTLS), Some(&Value::Bool(true)));
        assert_eq!(e.get_str("meshaudit.peer.service_account"), Some("api"));
    }
}
