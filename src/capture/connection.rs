//! Facts about a downstream connection that hold for every request on it: addresses, TLS,
//! both sides' identities, the listener's direction. The host layer reads them once per
//! connection and reuses them for each request.

use super::certificate;
use super::identity::{self, Identity};
use super::workload::{self, Workload};
use super::{Anomalies, Host};
use crate::event::{attr, AuditEvent, Value};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConnectionFacts {
    pub client: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    pub direction: Option<&'static str>,
    pub tls_version: Option<String>,
    pub sni: Option<String>,
    pub mtls: bool,
    pub peer: Identity,
    pub local_identity: Identity,
    /// The calling workload as Istio's filters describe it (filter state `downstream_peer`):
    /// read with the facts for HTTP, looked for by each event after open for TCP.
    pub peer_workload: Option<Workload>,
    pub anomalies: Anomalies,
}

/// An address split into host and port (`10.0.0.1:80`, `[::1]:80`); a pipe has no port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketAddr {
    pub host: String,
    pub port: Option<i64>,
}

impl SocketAddr {
    pub fn parse(s: &str) -> SocketAddr {
        let split = if let Some(rest) = s.strip_prefix('[') {
            rest.split_once("]:")
        } else if s.matches(':').count() == 1 {
            s.split_once(':')
        } else {
            None
        };
        match split.and_then(|(h, p)| p.parse::<u16>().ok().map(|p| (h, p))) {
            Some((host, port)) => SocketAddr {
                host: host.to_string(),
                port: Some(i64::from(port)),
            },
            None => SocketAddr {
                host: s.to_string(),
                port: None,
            },
        }
    }
}

/// Whether [`ConnectionFacts::read_tls`] reads the SNI too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sni {
    Read,
    /// Read with the addresses already (before the handshake).
    AlreadyRead,
}

impl ConnectionFacts {
    /// Addresses and listener direction only: safe to read before a TLS handshake is over
    /// (reading TLS facts that early would fix Envoy's cached TLS version too soon).
    pub fn read_addresses(host: &(impl Host + ?Sized)) -> ConnectionFacts {
        let mut a = Anomalies::default();
        let client = host
            .string(&["source", "address"], &mut a)
            .map(|s| SocketAddr::parse(&s));
        let local = host
            .string(&["destination", "address"], &mut a)
            .map(|s| SocketAddr::parse(&s));
        let direction = host.int(&["xds", "listener_direction"]).map(direction_name);
        ConnectionFacts {
            client,
            local,
            direction,
            anomalies: a,
            ..Default::default()
        }
    }

    /// Addresses, listener direction and the SNI: all known before a TLS handshake is over
    /// (the SNI is what Envoy's `tls_inspector` listener filter read from the ClientHello; without
    /// that filter Envoy has none).
    pub fn read_before_handshake(host: &(impl Host + ?Sized)) -> ConnectionFacts {
        let mut facts = ConnectionFacts::read_addresses(host);
        facts.sni = host
            .string(
                &["connection", "requested_server_name"],
                &mut facts.anomalies,
            )
            .filter(|s| !s.is_empty());
        facts
    }

    /// Reads the connection's facts from the host, and the calling workload where Istio's
    /// filters describe it (one host call where they do not).
    pub fn read(host: &(impl Host + ?Sized)) -> ConnectionFacts {
        let mut facts = ConnectionFacts::read_addresses(host);
        facts.read_tls(host, Sni::Read);
        facts.peer_workload =
            Workload::from_filter_state(host, workload::DOWNSTREAM_PEER, &mut facts.anomalies);
        facts
    }

    /// Adds the TLS facts (and the SNI, unless it was read already). Without a TLS version the
    /// connection is plaintext and nothing else is read. Envoy has a TLS version for every
    /// connection of a TLS filter chain, even one whose handshake never happened (and caches the
    /// first value read): read these only once the handshake is over or will never be.
    pub fn read_tls(&mut self, host: &(impl Host + ?Sized), sni: Sni) {
        let mut a = std::mem::take(&mut self.anomalies);
        if let Some(version) = host.string(&["connection", "tls_version"], &mut a) {
            self.tls_version = Some(tls_version_number(&version));
            if sni == Sni::Read {
                self.sni = host
                    .string(&["connection", "requested_server_name"], &mut a)
                    .filter(|s| !s.is_empty());
            }
            self.mtls = host.boolean(&["connection", "mtls"]).unwrap_or(false);
            if self.mtls {
                self.peer = read_identity(host, "connection", "peer", &mut a);
            }
            self.local_identity = read_identity(host, "connection", "local", &mut a);
        }
        self.anomalies = a;
    }

    /// Writes the connection's attributes into an event, its SNI under `sni` (an HTTP event's
    /// [`attr::TLS_SNI`], a connection event's `server.address`).
    pub fn write(&self, event: &mut AuditEvent, sni: &'static str) {
        self.write_addresses(event, sni);
        event.set(attr::MTLS, Value::Bool(self.mtls));
        event.set_str(attr::TLS_VERSION, self.tls_version.clone());
        self.peer.write(&identity::PEER, event);
        self.local_identity.write(&identity::LOCAL, event);
    }

    /// Writes a calling workload (`meshaudit.source.*`; this connection's, or one a request's
    /// header describes), marked where its namespace is not the peer certificate's.
    pub fn write_workload(&self, workload: &Workload, event: &mut AuditEvent, a: &mut Anomalies) {
        let spiffe_namespace = self.peer.spiffe().and_then(|s| s.namespace);
        workload.write(&workload::SOURCE_KEYS, spiffe_namespace, event, a);
    }

    /// Addresses, listener direction and SNI only: what is known before a TLS handshake is over.
    pub fn write_addresses(&self, event: &mut AuditEvent, sni: &'static str) {
        if let Some(c) = &self.client {
            event.set(attr::PEER_ADDRESS, Value::Str(c.host.clone()));
            event.set_int(attr::PEER_PORT, c.port);
        }
        if let Some(l) = &self.local {
            event.set(attr::LOCAL_ADDRESS, Value::Str(l.host.clone()));
            event.set_int(attr::LOCAL_PORT, l.port);
        }
        if let Some(d) = self.direction {
            event.set(attr::LISTENER_DIRECTION, Value::Str(d.to_string()));
        }
        event.set_str(sni, self.sni.clone());
    }
}

fn direction_name(d: i64) -> &'static str {
    match d {
        1 => "inbound",
        2 => "outbound",
        _ => "unspecified",
    }
}

/// Reads one side's certificate identity under `connection.*` or `upstream.*`.
/// `side` is `peer` or `local`. All SANs come from the PEM where the host gives it (the
/// `uri_san_*` attributes hold only the first); the single-SAN attributes are the fallback.
pub fn read_identity(
    host: &(impl Host + ?Sized),
    scope: &str,
    side: &str,
    a: &mut Anomalies,
) -> Identity {
    let get =
        |name: String, a: &mut Anomalies| host.string(&[scope, &name], a).filter(|s| !s.is_empty());
    let mut id = Identity {
        subject: get(format!("subject_{side}_certificate"), a),
        // Uppercase, as OpenTelemetry writes certificate hashes (`tls.client.hash.sha256`).
        sha256: if side == "peer" {
            get("sha256_peer_certificate_digest".into(), a).map(|h| h.to_ascii_uppercase())
        } else {
            None
        },
        ..Default::default()
    };
    let sans = if side == "peer" {
        host.property(&[scope, "peer_certificate"])
            .and_then(|pem| certificate::sans_from_url_encoded_pem(&pem))
    } else {
        None
    };
    match sans {
        Some(s) => {
            id.uri_sans = s.uris;
            id.dns_sans = s.dns;
        }
        None => {
            id.uri_sans = get(format!("uri_san_{side}_certificate"), a)
                .into_iter()
                .collect();
            id.dns_sans = get(format!("dns_san_{side}_certificate"), a)
                .into_iter()
                .collect();
        }
    }
    id
}

/// Hashes connection ids with one multiplication instead of SipHash: Envoy numbers connections
/// with a per-process counter, so no client chooses the keys.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = std::collections::HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

/// The facts of recently seen connections, so that requests on a kept-alive connection do not
/// read the same attributes again. Holds at most `capacity` connections, oldest evicted first.
#[derive(Debug)]
pub struct ConnectionCache {
    entries: IdMap<std::rc::Rc<ConnectionFacts>>,
    order: std::collections::VecDeque<u64>,
    capacity: usize,
}

impl ConnectionCache {
    pub fn new(capacity: usize) -> ConnectionCache {
        ConnectionCache {
            entries: IdMap::with_capacity_and_hasher(capacity, Default::default()),
            order: std::collections::VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
        }
    }

    /// The facts of connection `id`, read with `read` the first time. Without an id nothing is
    /// cached.
    pub fn get_or_read(
        &mut self,
        id: Option<u64>,
        read: impl FnOnce() -> ConnectionFacts,
    ) -> std::rc::Rc<ConnectionFacts> {
        let Some(id) = id else {
            return std::rc::Rc::new(read());
        };
        if let Some(facts) = self.entries.get(&id) {
            return facts.clone();
        }
        if self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
        let facts = std::rc::Rc::new(read());
        self.entries.insert(id, facts.clone());
        self.order.push_back(id);
        facts
    }
}

/// `TLSv1.3` → `1.3`, as `tls.protocol.version` wants it.
fn tls_version_number(v: &str) -> String {
    v.strip_prefix("TLSv").unwrap_or(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::fake::RecordedHost;
    use crate::event::EventKind;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn cache_reads_each_connection_once_and_evicts_the_oldest() {
        let mut cache = ConnectionCache::new(2);
        let mut reads = 0;
        let mut get = |cache: &mut ConnectionCache, id| {
            cache.get_or_read(id, || {
                reads += 1;
                ConnectionFacts::default()
            });
        };
        get(&mut cache, Some(1));
        get(&mut cache, Some(1));
        get(&mut cache, Some(2));
        get(&mut cache, Some(3));
        get(&mut cache, Some(1));
        get(&mut cache, None);
        assert_eq!(reads, 5);
    }

    #[test]
    fn addresses_split() {
        assert_eq!(
            SocketAddr::parse("10.1.2.3:8080"),
            SocketAddr {
                host: "10.1.2.3".into(),
                port: Some(8080)
            }
        );
        assert_eq!(
            SocketAddr::parse("[::1]:443"),
            SocketAddr {
                host: "::1".into(),
                port: Some(443)
            }
        );
        assert_eq!(
            SocketAddr::parse("/tmp/sock"),
            SocketAddr {
                host: "/tmp/sock".into(),
                port: None
            }
        );
        assert_eq!(
            SocketAddr::parse("::1"),
            SocketAddr {
                host: "::1".into(),
                port: None
            }
        );
        assert_eq!(
            SocketAddr::parse("h:99999"),
            SocketAddr {
                host: "h:99999".into(),
                port: None
            }
        );
    }

    #[test]
    fn plaintext_connection_is_not_mtls() {
        let host = RecordedHost::default()
            .with("source.address", "127.0.0.1:5000")
            .with("destination.address", "127.0.0.1:15006")
            .with_int("xds.listener_direction", 1);
        let facts = ConnectionFacts::read(&host);
        let mut e = AuditEvent::new(EventKind::Http);
        facts.write(&mut e, attr::TLS_SNI);
        assert_eq!(e.get(attr::MTLS), Some(&Value::Bool(false)));
        assert_eq!(e.get(attr::PEER_PORT), Some(&Value::Int(5000)));
        assert_eq!(e.get_str(attr::LISTENER_DIRECTION), Some("inbound"));
        assert!(e.get(attr::TLS_VERSION).is_none());
        assert!(!e
            .attributes
            .iter()
            .any(|a| a.key.starts_with("meshaudit.peer")));
    }

    #[test]
    fn mtls_connection_falls_back_to_single_sans() {
        let host = RecordedHost::default()
            .with("connection.tls_version", "TLSv1.3")
            .with("connection.mtls", vec![1u8])
            .with("connection.requested_server_name", "checkout")
            .with("connection.subject_peer_certificate", "CN=web")
            .with("connection.sha256_peer_certificate_digest", "abcd")
            .with(
                "connection.uri_san_peer_certificate",
                "spiffe://cluster.local/ns/frontend/sa/web",
            )
            .with(
                "connection.uri_san_local_certificate",
                "spiffe://cluster.local/ns/payments/sa/checkout",
            );
        let facts = ConnectionFacts::read(&host);
        assert!(facts.mtls);
        assert_eq!(facts.tls_version.as_deref(), Some("1.3"));
        let mut e = AuditEvent::new(EventKind::Http);
        facts.write(&mut e, attr::TLS_SNI);
        assert_eq!(e.get_str("meshaudit.peer.namespace"), Some("frontend"));
        assert_eq!(e.get_str("tls.client.hash.sha256"), Some("ABCD"));
        assert_eq!(
            e.get_str("meshaudit.local.service_account"),
            Some("checkout")
        );
        assert_eq!(e.get_str(attr::TLS_SNI), Some("checkout"));
    }
}
