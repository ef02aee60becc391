//! TCP connections: byte counts as data passes, which side closed first, and the connection's
//! audit events — `open` (optional), `interim` (optional, for long-lived connections) and
//! `close` — all carrying the same connection id so they can be linked.

use super::connection::{ConnectionFacts, Sni};
use super::decision::{Decision, Reason};
use super::response_flags::response_flags;
use super::workload::{self, Workload};
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

/// What an event can say of the downstream TLS handshake (`meshaudit.tls.handshake`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// The filter chain has no TLS transport socket.
    Plaintext,
    /// The handshake completed: the client's data came through it, or Envoy verified the
    /// client's certificate.
    Complete,
    /// Envoy refused the handshake (`meshaudit.connection.transport_failure_reason` says why).
    Failed,
    /// A TLS filter chain, but no completed handshake was seen: the connection ended before
    /// the client's data came through and without a verified client certificate. With
    /// `tcp_proxy`'s default `upstream_connect_mode` and an upstream that cannot be reached,
    /// Envoy never reads the client's handshake.
    NotCompleted,
}

impl Handshake {
    pub fn name(self) -> &'static str {
        match self {
            Handshake::Plaintext => "plaintext",
            Handshake::Complete => "complete",
            Handshake::Failed => "failed",
            Handshake::NotCompleted => "not_completed",
        }
    }
}

/// The side of the proxy a close was seen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client's connection.
    Downstream,
    /// The connection to the upstream.
    Upstream,
}

/// Who ended a side: its peer (the client or the upstream), or the proxy itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ender {
    Peer,
    Proxy,
}

/// The state of one audited connection; it changes through its methods, as Envoy reports the
/// connection's steps.
#[derive(Debug, Clone, Default)]
pub struct TcpConnection {
    id: Option<i64>,
    started_unix_nano: u64,
    /// Bytes that came from the client (and went on to the upstream).
    from_downstream: u64,
    /// Bytes that came from the upstream (and went on to the client).
    from_upstream: u64,
    closed_by: Option<Closer>,
    /// Addresses and SNI (read at open, or with the first event), then the TLS facts once the
    /// handshake is over (`tls_read`).
    facts: Option<ConnectionFacts>,
    /// Whether `facts` holds the TLS facts.
    tls_read: bool,
    /// Whether the client's data reached the filter: a TLS handshake, if any, is complete.
    data_seen: bool,
    /// The upstream host and cluster as last read; `upstream_fixed` once the upstream sent
    /// bytes (connected: a retry can no longer change them), after which they are not read again.
    upstream_address: Option<String>,
    upstream_cluster: Option<String>,
    upstream_fixed: bool,
    interim_events: u32,
    last_event_unix_nano: u64,
    closed: bool,
}

impl TcpConnection {
    pub fn new(started_unix_nano: u64) -> TcpConnection {
        TcpConnection {
            started_unix_nano,
            last_event_unix_nano: started_unix_nano,
            ..Default::default()
        }
    }

    /// Envoy's id of the connection (`connection.id`).
    pub fn set_id(&mut self, id: Option<i64>) {
        self.id = id;
    }

    /// Whether the close event was built: nothing more is recorded of the connection.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Reads what is known as the connection opens (addresses, SNI): no TLS facts, since the
    /// handshake has not happened yet.
    pub fn open(&mut self, host: &dyn Host) {
        if self.facts.is_none() {
            self.facts = Some(ConnectionFacts::read_before_handshake(host));
        }
    }

    /// The client's bytes reached the filter: counted, and the first time the TLS facts are
    /// read (a TLS transport socket passes data on only once its handshake is complete).
    /// `end_of_stream` is the client's FIN: the client closed its side first.
    pub fn on_downstream_data(&mut self, size: usize, end_of_stream: bool, host: &dyn Host) {
        self.from_downstream = self.from_downstream.saturating_add(size as u64);
        if end_of_stream {
            self.on_close(Side::Downstream, Ender::Peer);
        }
        if !self.data_seen {
            self.data_seen = true;
            self.read_tls(host);
        }
    }

    /// The upstream's bytes reached the filter (they may still wait for a TLS handshake on the
    /// way to the client, so no TLS facts are read here).
    pub fn on_upstream_data(&mut self, size: usize, end_of_stream: bool) {
        self.from_upstream = self.from_upstream.saturating_add(size as u64);
        if end_of_stream {
            self.on_close(Side::Upstream, Ender::Peer);
        }
    }

    fn read_tls(&mut self, host: &dyn Host) {
        if self.tls_read {
            return;
        }
        self.open(host);
        if let Some(f) = self.facts.as_mut() {
            f.read_tls(host, Sni::AlreadyRead);
        }
        self.tls_read = true;
    }

    fn read_upstream(&mut self, host: &dyn Host, a: &mut Anomalies) {
        if self.upstream_fixed {
            return;
        }
        self.upstream_address = host.string(&["upstream", "address"], a);
        self.upstream_cluster = host.string(&["xds", "cluster_name"], a);
        self.upstream_fixed = self.from_upstream > 0 && self.upstream_address.is_some();
    }

    /// What is known of the TLS handshake: nothing before the TLS facts are read.
    /// The connection's facts as far as the handshake lets them be known: addresses and SNI,
    /// and for a plaintext or complete handshake TLS, identities and the calling workload.
    fn write_facts(
        &self,
        e: &mut AuditEvent,
        phase: Phase,
        handshake: Option<Handshake>,
        a: &mut Anomalies,
    ) {
        if let Some(f) = &self.facts {
            match handshake {
                // At open, or before the handshake is known to be over: addresses and SNI.
                _ if phase == Phase::Open => f.write_addresses(e, attr::SERVER_ADDRESS),
                None => f.write_addresses(e, attr::SERVER_ADDRESS),
                Some(Handshake::Plaintext | Handshake::Complete) => {
                    f.write(e, attr::SERVER_ADDRESS);
                    if let Some(w) = &f.peer_workload {
                        f.write_workload(w, e, a);
                    }
                }
                // No TLS was established: no version (Envoy's is a placeholder until a
                // handshake negotiates one) and no identity. A certificate that was presented
                // but refused is no identity: Envoy's `connection.mtls` only says one was
                // presented.
                Some(Handshake::Failed | Handshake::NotCompleted) => {
                    f.write_addresses(e, attr::SERVER_ADDRESS);
                    e.set(attr::MTLS, Value::Bool(false));
                }
            }
            a.0.extend(f.anomalies.0.iter().cloned());
        }
    }

    fn handshake(&self, failed: bool) -> Option<Handshake> {
        let f = self.facts.as_ref().filter(|_| self.tls_read)?;
        Some(if f.tls_version.is_none() {
            Handshake::Plaintext
        } else if failed {
            Handshake::Failed
        } else if self.data_seen || f.mtls {
            Handshake::Complete
        } else {
            Handshake::NotCompleted
        })
    }

    /// A close seen on one side of the proxy, ended by that side's peer or by the proxy. The
    /// first close decides who closed.
    pub fn on_close(&mut self, side: Side, by: Ender) {
        if self.closed_by.is_none() {
            self.closed_by = Some(match (side, by) {
                (Side::Downstream, Ender::Peer) => Closer::Downstream,
                (Side::Upstream, Ender::Peer) => Closer::Upstream,
                (_, Ender::Proxy) => Closer::Proxy,
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

    /// Builds an event of this connection. `host` is the connection's own context (for an
    /// interim event, the root switches to it): interim and close events carry everything
    /// Envoy has at that moment — upstream, response flags, termination details, failure
    /// reasons. TLS facts are read only once the handshake is over (the client's data came
    /// through) or at close; before that an event carries addresses and SNI. Without `host`
    /// (the connection's context could not be reached) what was read before is used.
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
        let (mut flags, mut termination) = (0, None);
        if let Some(host) = host {
            self.open(host);
            if phase != Phase::Open {
                self.read_upstream(host, &mut a);
                flags = host.int(&["response", "flags"]).unwrap_or(0);
                if flags != 0 {
                    e.set(attr::RESPONSE_FLAGS, Value::Str(response_flags(flags)));
                }
                // Set by the filter that ended the connection (e.g. the network RBAC filter's
                // `rbac_access_denied_matched_policy[...]`); tcp_proxy sets none of its own.
                termination = host
                    .string(&["connection", "termination_details"], &mut a)
                    .filter(|s| !s.is_empty());
                e.set_str(attr::TERMINATION_DETAILS, termination.clone());
                transport_failure = host
                    .string(&["connection", "transport_failure_reason"], &mut a)
                    .filter(|s| !s.is_empty());
                e.set_str(
                    attr::UPSTREAM_FAILURE,
                    host.string(&["upstream", "transport_failure_reason"], &mut a)
                        .filter(|s| !s.is_empty()),
                );
                if phase == Phase::Close {
                    // The handshake is over or never will be.
                    self.read_tls(host);
                }
                // Istio's TCP metadata exchange leaves the caller in the connection's filter
                // state once the client's first bytes came through: looked for until found.
                if let Some(f) = self.facts.as_mut().filter(|f| f.peer_workload.is_none()) {
                    f.peer_workload =
                        Workload::from_filter_state(host, workload::DOWNSTREAM_PEER, &mut a);
                }
            }
        }
        // A failure only counts on a TLS filter chain: on a plaintext one, Envoy's tls_inspector
        // notes that the client's bytes were not TLS (`TLS_error|...WRONG_VERSION_NUMBER`),
        // which is what a plaintext client sends there, and the event says `plaintext`.
        let on_tls_chain =
            self.tls_read && self.facts.as_ref().is_some_and(|f| f.tls_version.is_some());
        let transport_failure = transport_failure.filter(|_| on_tls_chain);
        if phase != Phase::Open {
            e.set_str(attr::UPSTREAM_ADDRESS, self.upstream_address.clone());
            e.set_str(attr::UPSTREAM_CLUSTER, self.upstream_cluster.clone());
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
        let handshake = self.handshake(transport_failure.is_some());
        self.write_facts(&mut e, phase, handshake, &mut a);
        if phase != Phase::Open {
            if let Some(h) = handshake {
                e.set(attr::TLS_HANDSHAKE, Value::Str(h.name().into()));
            }
        }
        // At open, a connection is accepted so far; a later event says what became of it.
        let decision = match handshake {
            Some(Handshake::Failed) if phase != Phase::Open => Decision::Deny {
                reason: Reason::Tls,
                policy: None,
            },
            _ => Decision::from_envoy(flags, termination.as_deref()),
        };
        decision.write(&mut e);
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
        c.on_close(Side::Downstream, Ender::Peer);
        c.on_close(Side::Upstream, Ender::Proxy);
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
        assert_eq!(e.get_str(attr::DECISION), Some("allow"));
        assert!(c.closed);
    }

    #[test]
    fn a_network_rbac_denial_is_the_connections_decision() {
        let mut c = TcpConnection::new(0);
        let host = RecordedHost::default().with(
            "connection.termination_details",
            "rbac_access_denied_matched_policy[deny-db]",
        );
        let open = c.event(Phase::Open, Some(&host), 5);
        assert_eq!(open.get_str(attr::DECISION), Some("allow"));
        c.on_close(Side::Downstream, Ender::Proxy);
        let e = c.event(Phase::Close, Some(&host), 10);
        assert_eq!(e.get_str(attr::DECISION), Some("deny"));
        assert_eq!(e.get_str(attr::DECISION_REASON), Some("rbac"));
        assert_eq!(e.get_str(attr::DECISION_POLICY), Some("deny-db"));
    }

    #[test]
    fn refused_upstream_says_so() {
        let mut c = TcpConnection::new(0);
        c.on_close(Side::Downstream, Ender::Proxy);
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
        let host = mtls_host("rogue").with(
            "connection.transport_failure_reason",
            "TLS_error:|CERTIFICATE_VERIFY_FAILED",
        );
        let mut c = TcpConnection::new(0);
        c.on_close(Side::Downstream, Ender::Peer);
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
        assert_eq!(e.get_str(attr::DECISION), Some("deny"));
        assert_eq!(e.get_str(attr::DECISION_REASON), Some("tls"));
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
        let host = mtls_host("api");
        let mut c = TcpConnection::new(0);
        let open = c.event(Phase::Open, Some(&host), 1);
        assert!(open.get(attr::MTLS).is_none(), "not known at open");
        c.on_downstream_data(10, false, &host);
        let e = c.event(Phase::Close, None, 2);
        assert_eq!(e.get(attr::MTLS), Some(&Value::Bool(true)));
        assert_eq!(e.get_str(attr::TLS_HANDSHAKE), Some("complete"));
        assert_eq!(e.get_str(attr::TLS_VERSION), Some("1.3"));
        assert_eq!(e.get_str("meshaudit.peer.service_account"), Some("api"));
    }

    #[test]
    fn the_calling_workload_comes_from_istio_s_connection_filter_state() {
        let host = mtls_host("api")
            .with("filter_state.downstream_peer.namespace", "app")
            .with("filter_state.downstream_peer.workload", "api-v2");
        let mut c = TcpConnection::new(0);
        let open = c.event(Phase::Open, Some(&host), 1);
        assert!(open.get("meshaudit.source.workload.name").is_none());
        c.on_downstream_data(10, false, &host);
        let e = c.event(Phase::Close, Some(&host), 2);
        assert_eq!(e.get_str("meshaudit.source.workload.name"), Some("api-v2"));
        assert_eq!(
            e.get_str("meshaudit.source.workload.origin"),
            Some("filter_state")
        );
        assert!(e.get(attr::ANOMALIES).is_none(), "the namespaces agree");
        // Without Istio's filters: no workload, nothing marked.
        let mut plain = TcpConnection::new(0);
        plain.on_downstream_data(10, false, &tls_listener());
        let e = plain.event(Phase::Close, Some(&tls_listener()), 2);
        assert!(e.get("meshaudit.source.workload.namespace").is_none());
    }

    /// A TLS 1.3 connection whose client presented `spiffe://cluster.local/ns/app/sa/SA`.
    fn mtls_host(sa: &str) -> RecordedHost {
        RecordedHost::default()
            .with("connection.tls_version", "TLSv1.3")
            .with("connection.mtls", vec![1u8])
            .with(
                "connection.uri_san_peer_certificate",
                format!("spiffe://cluster.local/ns/app/sa/{sa}"),
            )
    }

    fn tls_listener() -> RecordedHost {
        RecordedHost::default()
            .with("source.address", "10.0.0.9:40000")
            .with("destination.address", "10.0.0.21:5432")
            .with("connection.tls_version", "TLSv1.2")
            .with("connection.mtls", vec![0u8])
            .with("connection.requested_server_name", "ledger-db.payments")
            .with("connection.subject_local_certificate", "CN=ledger-db")
            .with("upstream.address", "10.0.0.5:5432")
            .with("xds.cluster_name", "db")
    }

    #[test]
    fn a_tls_connection_whose_upstream_failed_before_the_handshake_says_so() {
        // tcp_proxy's default upstream_connect_mode: Envoy never read the client's handshake.
        let host = tls_listener().with_int("response.flags", 1 << 5).with(
            "upstream.transport_failure_reason",
            "delayed_connect_error:_Connection_refused",
        );
        let mut c = TcpConnection::new(0);
        c.event(Phase::Open, Some(&host), 1);
        c.on_close(Side::Downstream, Ender::Proxy);
        let e = c.event(Phase::Close, Some(&host), 10);
        assert_eq!(e.get_str(attr::TLS_HANDSHAKE), Some("not_completed"));
        assert_eq!(e.get(attr::MTLS), Some(&Value::Bool(false)));
        assert!(
            e.get(attr::TLS_VERSION).is_none(),
            "a placeholder, not a version"
        );
        assert!(
            !e.attributes
                .iter()
                .any(|a| a.key.starts_with("meshaudit.local.")
                    || a.key.starts_with("meshaudit.peer.")),
            "{e:?}"
        );
        assert_eq!(e.get_str(attr::SERVER_ADDRESS), Some("ledger-db.payments"));
        assert_eq!(e.get_str(attr::RESPONSE_FLAGS), Some("UF"));
        assert!(e.get_str(attr::UPSTREAM_FAILURE).is_some());
        assert_eq!(e.get_str(attr::UPSTREAM_CLUSTER), Some("db"));
    }

    #[test]
    fn a_verified_client_certificate_completes_the_handshake_without_data() {
        // upstream_connect_mode ON_DOWNSTREAM_TLS_HANDSHAKE: the handshake completed, then the
        // upstream failed before the client sent anything.
        let host = tls_listener()
            .with("connection.tls_version", "TLSv1.3")
            .with("connection.mtls", vec![1u8])
            .with(
                "connection.uri_san_peer_certificate",
                "spiffe://cluster.local/ns/app/sa/api",
            )
            .with_int("response.flags", 1 << 5);
        let mut c = TcpConnection::new(0);
        c.on_close(Side::Downstream, Ender::Proxy);
        let e = c.event(Phase::Close, Some(&host), 10);
        assert_eq!(e.get_str(attr::TLS_HANDSHAKE), Some("complete"));
        assert_eq!(e.get(attr::MTLS), Some(&Value::Bool(true)));
        assert_eq!(e.get_str("meshaudit.peer.service_account"), Some("api"));
        assert_eq!(e.get_str(attr::TLS_VERSION), Some("1.3"));
    }

    #[test]
    fn data_through_a_tls_listener_without_client_certificates_is_a_complete_handshake() {
        let host = tls_listener();
        let mut c = TcpConnection::new(0);
        c.on_downstream_data(5, true, &host);
        let e = c.event(Phase::Close, Some(&host), 10);
        assert_eq!(e.get_str(attr::TLS_HANDSHAKE), Some("complete"));
        assert_eq!(e.get(attr::MTLS), Some(&Value::Bool(false)));
        assert_eq!(e.get_str(attr::TLS_VERSION), Some("1.2"));
        assert_eq!(e.get_str("tls.server.subject"), Some("CN=ledger-db"));
    }

    #[test]
    fn a_plaintext_connection_says_plaintext() {
        let host = RecordedHost::default()
            .with("source.address", "10.0.0.9:40000")
            .with("connection.requested_server_name", "");
        let mut c = TcpConnection::new(0);
        c.on_close(Side::Downstream, Ender::Peer);
        let e = c.event(Phase::Close, Some(&host), 10);
        assert_eq!(e.get_str(attr::TLS_HANDSHAKE), Some("plaintext"));
        assert_eq!(e.get(attr::MTLS), Some(&Value::Bool(false)));
        assert!(e.get(attr::SERVER_ADDRESS).is_none(), "empty is absent");
    }

    #[test]
    fn the_tls_inspector_s_note_on_a_plaintext_chain_is_no_failure() {
        let host = RecordedHost::default().with(
            "connection.transport_failure_reason",
            "TLS_error|error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER",
        );
        let mut c = TcpConnection::new(0);
        c.on_downstream_data(3, true, &host);
        let interim = c.event(Phase::Interim, Some(&host), 5);
        assert!(interim.get(attr::TRANSPORT_FAILURE).is_none());
        let e = c.event(Phase::Close, Some(&host), 10);
        assert_eq!(e.get_str(attr::TLS_HANDSHAKE), Some("plaintext"));
        assert_eq!(e.get_str(attr::TCP_CLOSED_BY), Some("downstream"));
        assert!(e.get(attr::TRANSPORT_FAILURE).is_none(), "{e:?}");
    }

    #[test]
    fn open_events_carry_addresses_and_sni_only() {
        let host = tls_listener();
        let mut c = TcpConnection::new(0);
        let e = c.event(Phase::Open, Some(&host), 1);
        assert_eq!(e.get_str(attr::SERVER_ADDRESS), Some("ledger-db.payments"));
        assert_eq!(e.get_str(attr::PEER_ADDRESS), Some("10.0.0.9"));
        for absent in [
            attr::MTLS,
            attr::TLS_VERSION,
            attr::TLS_HANDSHAKE,
            attr::UPSTREAM_ADDRESS,
            attr::UPSTREAM_CLUSTER,
        ] {
            assert!(e.get(absent).is_none(), "{absent} at open: {e:?}");
        }
        assert!(
            !c.tls_read,
            "the TLS facts are not read before the handshake"
        );
    }

    #[test]
    fn interim_events_read_the_upstream_but_no_tls_facts_before_the_handshake() {
        let host = tls_listener();
        let mut c = TcpConnection::new(0);
        c.event(Phase::Open, Some(&host), 1);
        let e = c.event(Phase::Interim, Some(&host), 2);
        assert_eq!(e.get_str(attr::UPSTREAM_ADDRESS), Some("10.0.0.5:5432"));
        assert_eq!(e.get_str(attr::UPSTREAM_CLUSTER), Some("db"));
        assert_eq!(e.get_str(attr::SERVER_ADDRESS), Some("ledger-db.payments"));
        assert!(e.get(attr::TLS_VERSION).is_none() && e.get(attr::TLS_HANDSHAKE).is_none());
        assert!(
            !c.tls_read,
            "an interim event must not fix Envoy's TLS version early"
        );
        assert!(e.summary().contains("-> db "), "{}", e.summary());
    }

    #[test]
    fn the_upstream_is_read_until_it_sent_bytes_then_kept() {
        let mut c = TcpConnection::new(0);
        let first = RecordedHost::default()
            .with("upstream.address", "10.0.0.5:5432")
            .with("xds.cluster_name", "db");
        c.event(Phase::Interim, Some(&first), 1);
        // A connect retry may pick another host: read again while nothing came back.
        let retried = RecordedHost::default()
            .with("upstream.address", "10.0.0.6:5432")
            .with("xds.cluster_name", "db");
        let e = c.event(Phase::Interim, Some(&retried), 2);
        assert_eq!(e.get_str(attr::UPSTREAM_ADDRESS), Some("10.0.0.6:5432"));
        c.on_upstream_data(10, false);
        c.event(Phase::Interim, Some(&retried), 3);
        assert!(c.upstream_fixed);
        let e = c.event(Phase::Close, Some(&RecordedHost::default()), 4);
        assert_eq!(e.get_str(attr::UPSTREAM_ADDRESS), Some("10.0.0.6:5432"));
        assert_eq!(e.get_str(attr::UPSTREAM_CLUSTER), Some("db"));
    }

    #[test]
    fn termination_details_are_recorded_when_envoy_has_them() {
        let host = tls_listener().with(
            "connection.termination_details",
            "rbac_access_denied_matched_policy[deny-all]",
        );
        let mut c = TcpConnection::new(0);
        c.on_downstream_data(5, false, &host);
        c.on_close(Side::Downstream, Ender::Proxy);
        let e = c.event(Phase::Close, Some(&host), 10);
        assert_eq!(
            e.get_str(attr::TERMINATION_DETAILS),
            Some("rbac_access_denied_matched_policy[deny-all]")
        );
    }
}
