//! Workload identity from certificates: subject, digest, every URI and DNS SAN, and the SPIFFE
//! ID split into trust domain, namespace and service account when it has the Kubernetes form
//! `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT`.

use crate::event::{AuditEvent, Value};

/// One side's certificate identity. Empty when that side presented no certificate.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: Option<String>,
    pub sha256: Option<String>,
    pub uri_sans: Vec<String>,
    pub dns_sans: Vec<String>,
}

/// The parts of a SPIFFE ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpiffeId<'a> {
    pub id: &'a str,
    pub trust_domain: &'a str,
    /// Namespace and service account, when the path has the Kubernetes form.
    pub namespace: Option<&'a str>,
    pub service_account: Option<&'a str>,
}

/// Parses `spiffe://TD[/path]`. The trust domain must be non-empty and contain no `/`, `@`, `:`.
pub fn parse_spiffe(uri: &str) -> Option<SpiffeId<'_>> {
    let rest = uri.strip_prefix("spiffe://")?;
    let (trust_domain, path) = rest.split_once('/').unwrap_or((rest, ""));
    if trust_domain.is_empty() || trust_domain.contains(['@', ':']) {
        return None;
    }
    let segments: Vec<&str> = path.split('/').collect();
    let (namespace, service_account) = match segments.as_slice() {
        ["ns", ns, "sa", sa] if !ns.is_empty() && !sa.is_empty() => (Some(*ns), Some(*sa)),
        _ => (None, None),
    };
    Some(SpiffeId {
        id: uri,
        trust_domain,
        namespace,
        service_account,
    })
}

/// Attribute names of one identity group (peer, local, upstream peer).
pub struct IdentityKeys {
    pub subject: &'static str,
    pub sha256: &'static str,
    pub uri_sans: &'static str,
    pub dns_sans: &'static str,
    pub spiffe_id: &'static str,
    pub trust_domain: &'static str,
    pub namespace: &'static str,
    pub service_account: &'static str,
}

macro_rules! identity_keys {
    ($name:ident, $prefix:literal, $subject:expr, $sha256:expr) => {
        pub const $name: IdentityKeys = IdentityKeys {
            subject: $subject,
            sha256: $sha256,
            uri_sans: concat!($prefix, ".uri_sans"),
            dns_sans: concat!($prefix, ".dns_sans"),
            spiffe_id: concat!($prefix, ".spiffe_id"),
            trust_domain: concat!($prefix, ".trust_domain"),
            namespace: concat!($prefix, ".namespace"),
            service_account: concat!($prefix, ".service_account"),
        };
    };
}

// The downstream connection's certificates have OpenTelemetry names for their subject and hash
// (the client's and the server's, as the proxy is the server); the upstream's keep meshaudit's,
// beside them on an outbound sidecar's event.
identity_keys!(
    PEER,
    "meshaudit.peer",
    "tls.client.subject",
    "tls.client.hash.sha256"
);
identity_keys!(
    LOCAL,
    "meshaudit.local",
    "tls.server.subject",
    "tls.server.hash.sha256"
);
identity_keys!(
    UPSTREAM_PEER,
    "meshaudit.upstream.peer",
    "meshaudit.upstream.peer.subject",
    "meshaudit.upstream.peer.sha256"
);

impl Identity {
    /// The first URI SAN that is a SPIFFE ID.
    pub fn spiffe(&self) -> Option<SpiffeId<'_>> {
        self.uri_sans.iter().find_map(|u| parse_spiffe(u))
    }

    /// Writes this identity into an event under the given names; absent parts stay absent.
    pub fn write(&self, keys: &IdentityKeys, event: &mut AuditEvent) {
        event.set_str(keys.subject, self.subject.clone());
        event.set_str(keys.sha256, self.sha256.clone());
        if !self.uri_sans.is_empty() {
            event.set(keys.uri_sans, Value::StrList(self.uri_sans.clone()));
        }
        if !self.dns_sans.is_empty() {
            event.set(keys.dns_sans, Value::StrList(self.dns_sans.clone()));
        }
        if let Some(s) = self.spiffe() {
            event.set(keys.spiffe_id, Value::Str(s.id.to_string()));
            event.set(keys.trust_domain, Value::Str(s.trust_domain.to_string()));
            event.set_str(keys.namespace, s.namespace.map(str::to_string));
            event.set_str(keys.service_account, s.service_account.map(str::to_string));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn kubernetes_spiffe_ids_split() {
        let s = parse_spiffe("spiffe://cluster.local/ns/payments/sa/checkout").unwrap();
        assert_eq!(s.trust_domain, "cluster.local");
        assert_eq!(s.namespace, Some("payments"));
        assert_eq!(s.service_account, Some("checkout"));
    }

    #[test]
    fn other_spiffe_ids_keep_only_the_trust_domain() {
        let s = parse_spiffe("spiffe://example.org/workload/db").unwrap();
        assert_eq!(
            (s.trust_domain, s.namespace, s.service_account),
            ("example.org", None, None)
        );
        let s = parse_spiffe("spiffe://example.org").unwrap();
        assert_eq!(s.trust_domain, "example.org");
        let s = parse_spiffe("spiffe://td/ns/a/sa/b/extra").unwrap();
        assert_eq!(s.namespace, None);
    }

    #[test]
    fn non_spiffe_uris_are_not_spiffe_ids() {
        for bad in [
            "https://cluster.local/ns/a/sa/b",
            "spiffe://",
            "spiffe:///ns/a",
            "spiffe://u@td/x",
            "",
        ] {
            assert!(parse_spiffe(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn writes_every_san_and_the_first_spiffe_id() {
        let id = Identity {
            subject: Some("CN=web".into()),
            sha256: Some("ab".into()),
            uri_sans: vec![
                "urn:x".into(),
                "spiffe://td/ns/n/sa/s".into(),
                "spiffe://td/ns/n/sa/t".into(),
            ],
            dns_sans: vec!["web.n.svc".into()],
        };
        let mut e = AuditEvent::new(EventKind::Http);
        id.write(&PEER, &mut e);
        assert_eq!(
            e.get_str("meshaudit.peer.spiffe_id"),
            Some("spiffe://td/ns/n/sa/s")
        );
        assert_eq!(e.get_str("meshaudit.peer.service_account"), Some("s"));
        assert_eq!(
            e.get("meshaudit.peer.uri_sans"),
            Some(&Value::StrList(id.uri_sans.clone()))
        );
        let mut empty = AuditEvent::new(EventKind::Http);
        Identity::default().write(&LOCAL, &mut empty);
        assert!(empty.attributes.is_empty());
    }
}
