//! The workload on the other side of a request, as Istio's metadata exchange describes it: the
//! caller's (`downstream_peer`) and, on an outbound sidecar, the called one's (`upstream_peer`).
//!
//! Two ways in, tried in this order (docs/event-schema.md#the-calling-workload):
//! - **filter state** `downstream_peer` / `upstream_peer`, which Istio's own filters
//!   (`istio.metadata_exchange`, `peer_metadata`) set from the exchange; its fields (`namespace`,
//!   `workload`, `type`, `app`, `version`, `service`, `revision`, `cluster`) are read one by one
//!   through `["filter_state", KEY, FIELD]`, `namespace` first, so a proxy without Istio's
//!   filters pays one host call;
//! - **the header** `x-envoy-peer-metadata` that a sidecar sends with every request (and
//!   response): base64 of a `google.protobuf.Struct` of its node metadata (`NAMESPACE`,
//!   `WORKLOAD_NAME`, `OWNER`, `CLUSTER_ID`, `LABELS`), read where it is still there.
//!
//! Both are what the peer says about itself: the verified identity stays the certificate's
//! SPIFFE ID. A namespace that disagrees with it is marked as an anomaly. The attributes are
//! `meshaudit.source.*` and `meshaudit.destination.*` (Istio's telemetry words), not under
//! `meshaudit.peer.`, whose certificate values redaction's detectors do not scan: these are text
//! a client chose, and are scanned like any other.

use base64::Engine;
use prost::Message;

use super::protobuf::Struct;
use super::{Anomalies, Host};
use crate::event::{AuditEvent, Value};

/// Istio's filter state key for the caller.
pub const DOWNSTREAM_PEER: &str = "downstream_peer";
/// Istio's filter state key for the called workload (outbound sidecars).
pub const UPSTREAM_PEER: &str = "upstream_peer";
/// The header Istio's metadata exchange sends.
pub const PEER_METADATA_HEADER: &[u8] = b"x-envoy-peer-metadata";

/// Where a workload description came from (`….workload.origin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    FilterState,
    Header,
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Origin::FilterState => "filter_state",
            Origin::Header => "peer_metadata_header",
        }
    }
}

/// One peer workload. Absent parts stay absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub namespace: String,
    pub name: Option<String>,
    /// `deployment`, `pod`, `job`, `cronjob`.
    pub kind: Option<String>,
    pub app: Option<String>,
    pub app_version: Option<String>,
    /// Istio's canonical service and revision.
    pub service: Option<String>,
    pub service_version: Option<String>,
    pub cluster: Option<String>,
    pub origin: Origin,
}

/// Attribute names of one side's workload.
pub struct WorkloadKeys {
    pub namespace: &'static str,
    pub name: &'static str,
    pub kind: &'static str,
    pub app: &'static str,
    pub app_version: &'static str,
    pub service: &'static str,
    pub service_version: &'static str,
    pub cluster: &'static str,
    pub origin: &'static str,
}

macro_rules! workload_keys {
    ($name:ident, $prefix:literal) => {
        pub const $name: WorkloadKeys = WorkloadKeys {
            namespace: concat!($prefix, ".workload.namespace"),
            name: concat!($prefix, ".workload.name"),
            kind: concat!($prefix, ".workload.kind"),
            app: concat!($prefix, ".app.name"),
            app_version: concat!($prefix, ".app.version"),
            service: concat!($prefix, ".service.name"),
            service_version: concat!($prefix, ".service.version"),
            cluster: concat!($prefix, ".cluster"),
            origin: concat!($prefix, ".workload.origin"),
        };
    };
}

workload_keys!(SOURCE_KEYS, "meshaudit.source");
workload_keys!(DESTINATION_KEYS, "meshaudit.destination");

impl Workload {
    /// The workload Istio's filters left in filter state under `key`; `None` (after one host
    /// call) where there is none.
    pub fn from_filter_state(
        host: &(impl Host + ?Sized),
        key: &str,
        a: &mut Anomalies,
    ) -> Option<Workload> {
        let namespace = host
            .string(&["filter_state", key, "namespace"], a)
            .filter(|s| !s.is_empty())?;
        let mut field = |f: &str| {
            host.string(&["filter_state", key, f], a)
                .filter(|s| !s.is_empty())
        };
        Some(Workload {
            name: field("workload"),
            kind: field("type"),
            app: field("app"),
            app_version: field("version"),
            service: field("service"),
            service_version: field("revision"),
            cluster: field("cluster"),
            namespace,
            origin: Origin::FilterState,
        })
    }

    /// The workload an `x-envoy-peer-metadata` header describes; `None`, and an anomaly, when it
    /// is not base64 of a `Struct` with a namespace.
    pub fn from_header(value: &[u8], a: &mut Anomalies) -> Option<Workload> {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()
            .and_then(|bytes| Struct::decode(bytes.as_slice()).ok());
        let workload = decoded.as_ref().and_then(from_node_metadata);
        if workload.is_none() {
            a.note("undecodable", "x-envoy-peer-metadata");
        }
        workload
    }

    /// Writes the workload under `keys`, and notes an anomaly when its namespace is not the one
    /// of the side's verified SPIFFE ID (`spiffe_namespace`).
    pub fn write(
        &self,
        keys: &WorkloadKeys,
        spiffe_namespace: Option<&str>,
        e: &mut AuditEvent,
        a: &mut Anomalies,
    ) {
        e.set(keys.namespace, Value::Str(self.namespace.clone()));
        e.set_str(keys.name, self.name.clone());
        e.set_str(keys.kind, self.kind.clone());
        e.set_str(keys.app, self.app.clone());
        e.set_str(keys.app_version, self.app_version.clone());
        e.set_str(keys.service, self.service.clone());
        e.set_str(keys.service_version, self.service_version.clone());
        e.set_str(keys.cluster, self.cluster.clone());
        e.set(keys.origin, Value::Str(self.origin.name().to_string()));
        if spiffe_namespace.is_some_and(|ns| ns != self.namespace) {
            a.note("mismatch", keys.namespace);
        }
    }
}

/// A workload from an Istio node's metadata (the header's `Struct`).
fn from_node_metadata(node: &Struct) -> Option<Workload> {
    let text = |s: &Struct, name: &str| s.text(name).filter(|v| !v.is_empty()).map(str::to_string);
    let namespace = text(node, "NAMESPACE")?;
    let name = text(node, "WORKLOAD_NAME");
    let labels = node.object("LABELS");
    let label = |names: &[&str]| labels.and_then(|l| names.iter().find_map(|n| text(l, n)));
    Some(Workload {
        kind: node
            .text("OWNER")
            .and_then(|owner| owner_kind(owner, name.as_deref()?)),
        app: label(&["app", "app.kubernetes.io/name"]),
        app_version: label(&["version", "app.kubernetes.io/version"]),
        service: label(&["service.istio.io/canonical-name"]),
        service_version: label(&["service.istio.io/canonical-revision"]),
        cluster: text(node, "CLUSTER_ID"),
        name,
        namespace,
        origin: Origin::Header,
    })
}

/// The workload kind in an owner reference
/// `kubernetes://apis/apps/v1/namespaces/NS/KINDs/NAME`, as Istio reads it.
fn owner_kind(owner: &str, workload: &str) -> Option<String> {
    let kinds = owner.strip_suffix(workload)?.strip_suffix("s/")?;
    let kind = kinds.rsplit('/').next()?;
    matches!(kind, "deployment" | "pod" | "job" | "cronjob").then(|| kind.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::fake::RecordedHost;
    use crate::capture::protobuf::{Kind, ProtoValue};
    use crate::event::EventKind;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn text(s: &str) -> ProtoValue {
        ProtoValue::text(s)
    }

    fn object(fields: &[(&str, ProtoValue)]) -> Struct {
        Struct {
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    /// What an Istio sidecar of `reviews-v2` sends.
    fn header() -> Vec<u8> {
        let labels = object(&[
            ("app", text("reviews")),
            ("version", text("v2")),
            ("service.istio.io/canonical-name", text("reviews")),
            ("service.istio.io/canonical-revision", text("v2")),
            ("pod-template-hash", text("5f7c9d")),
        ]);
        let node = object(&[
            ("NAME", text("reviews-v2-5f7c9d-abcde")),
            ("NAMESPACE", text("bookinfo")),
            ("WORKLOAD_NAME", text("reviews-v2")),
            (
                "OWNER",
                text("kubernetes://apis/apps/v1/namespaces/bookinfo/deployments/reviews-v2"),
            ),
            ("CLUSTER_ID", text("Kubernetes")),
            (
                "LABELS",
                ProtoValue {
                    kind: Some(Kind::Object(labels)),
                },
            ),
        ]);
        base64::engine::general_purpose::STANDARD
            .encode(node.encode_to_vec())
            .into_bytes()
    }

    #[test]
    fn the_header_describes_the_calling_workload() {
        let mut a = Anomalies::default();
        let w = Workload::from_header(&header(), &mut a).unwrap();
        assert_eq!(w.namespace, "bookinfo");
        assert_eq!(w.name.as_deref(), Some("reviews-v2"));
        assert_eq!(w.kind.as_deref(), Some("deployment"));
        assert_eq!(w.app.as_deref(), Some("reviews"));
        assert_eq!(w.app_version.as_deref(), Some("v2"));
        assert_eq!(w.service.as_deref(), Some("reviews"));
        assert_eq!(w.service_version.as_deref(), Some("v2"));
        assert_eq!(w.cluster.as_deref(), Some("Kubernetes"));
        assert_eq!(w.origin, Origin::Header);
        assert!(a.0.is_empty());
    }

    #[test]
    fn a_bad_header_is_marked_not_recorded() {
        for bad in [&b"not base64!"[..], b"AAAA", b""] {
            let mut a = Anomalies::default();
            assert_eq!(Workload::from_header(bad, &mut a), None);
            assert_eq!(a.0, vec!["undecodable:x-envoy-peer-metadata".to_string()]);
        }
        // A Struct without a namespace describes no workload.
        let no_ns = base64::engine::general_purpose::STANDARD
            .encode(object(&[("WORKLOAD_NAME", text("x"))]).encode_to_vec());
        assert_eq!(
            Workload::from_header(no_ns.as_bytes(), &mut Anomalies::default()),
            None
        );
    }

    #[test]
    fn filter_state_is_read_field_by_field_and_costs_one_call_without_it() {
        let host = RecordedHost::default()
            .with("filter_state.downstream_peer.namespace", "bookinfo")
            .with("filter_state.downstream_peer.workload", "productpage-v1")
            .with("filter_state.downstream_peer.type", "deployment")
            .with("filter_state.downstream_peer.app", "productpage")
            .with("filter_state.downstream_peer.version", "v1")
            .with("filter_state.downstream_peer.service", "productpage")
            .with("filter_state.downstream_peer.revision", "v1")
            .with("filter_state.downstream_peer.cluster", "Kubernetes");
        let mut a = Anomalies::default();
        let w = Workload::from_filter_state(&host, DOWNSTREAM_PEER, &mut a).unwrap();
        assert_eq!(w.name.as_deref(), Some("productpage-v1"));
        assert_eq!(w.kind.as_deref(), Some("deployment"));
        assert_eq!(w.service_version.as_deref(), Some("v1"));
        assert_eq!(w.origin, Origin::FilterState);
        assert_eq!(
            Workload::from_filter_state(&host, UPSTREAM_PEER, &mut a),
            None
        );
    }

    #[test]
    fn written_with_its_source_and_a_namespace_mismatch_marked() {
        let w = Workload::from_header(&header(), &mut Anomalies::default()).unwrap();
        let mut e = AuditEvent::new(EventKind::Http);
        let mut a = Anomalies::default();
        w.write(&SOURCE_KEYS, Some("bookinfo"), &mut e, &mut a);
        assert_eq!(
            e.get("meshaudit.source.workload.name"),
            Some(&Value::Str("reviews-v2".into()))
        );
        assert_eq!(
            e.get("meshaudit.source.workload.origin"),
            Some(&Value::Str("peer_metadata_header".into()))
        );
        assert!(a.0.is_empty());
        w.write(&SOURCE_KEYS, Some("default"), &mut e, &mut a);
        assert_eq!(
            a.0,
            vec!["mismatch:meshaudit.source.workload.namespace".to_string()]
        );
    }

    #[test]
    fn owner_kinds() {
        let o = "kubernetes://apis/apps/v1/namespaces/ns/deployments/web";
        assert_eq!(owner_kind(o, "web").as_deref(), Some("deployment"));
        assert_eq!(owner_kind(o, "other"), None);
        assert_eq!(
            owner_kind(
                "kubernetes://apis/batch/v1/namespaces/ns/cronjobs/nightly",
                "nightly"
            )
            .as_deref(),
            Some("cronjob")
        );
        assert_eq!(owner_kind("kubernetes://x/widgets/web", "web"), None);
    }
}
