//! The workload this proxy serves, from Istio-style node metadata
//! (`xds.node.metadata.KEY` in Envoy 1.40), as OpenTelemetry resource attributes.

use super::{Anomalies, Host};

use crate::event::Resource;

/// Reads node metadata and maps it to resource attribute names.
pub fn resource(host: &impl Host) -> Resource {
    let mut anomalies = Anomalies::default();
    let mut meta = |key: &str| host.string(&["xds", "node", "metadata", key], &mut anomalies);
    let label = |key: &str| {
        host.string(
            &["xds", "node", "metadata", "LABELS", key],
            &mut Anomalies::default(),
        )
    };
    let workload = meta("WORKLOAD_NAME");
    let service = label("app").or_else(|| workload.clone());
    let fields = [
        ("service.name", service),
        ("service.version", label("version")),
        ("k8s.namespace.name", meta("NAMESPACE")),
        ("k8s.pod.name", meta("NAME")),
        ("meshaudit.workload.name", workload),
        ("k8s.cluster.name", meta("CLUSTER_ID")),
        ("meshaudit.mesh.id", meta("MESH_ID")),
        ("telemetry.sdk.name", Some("meshaudit".to_string())),
        (
            "telemetry.sdk.version",
            Some(env!("CARGO_PKG_VERSION").to_string()),
        ),
    ];
    fields
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::fake::RecordedHost;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn maps_istio_node_metadata() {
        let host = RecordedHost::default()
            .with("xds.node.metadata.NAMESPACE", "payments")
            .with("xds.node.metadata.WORKLOAD_NAME", "checkout")
            .with("xds.node.metadata.LABELS.version", "v1");
        let r = resource(&host);
        let get = |k: &str| r.iter().find(|(key, _)| *key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("k8s.namespace.name"), Some("payments"));
        assert_eq!(get("service.name"), Some("checkout"));
        assert_eq!(get("service.version"), Some("v1"));
        assert_eq!(get("k8s.pod.name"), None);
        assert_eq!(get("telemetry.sdk.name"), Some("meshaudit"));
    }

    #[test]
    fn app_label_names_the_service() {
        let host = RecordedHost::default()
            .with("xds.node.metadata.WORKLOAD_NAME", "checkout-v2")
            .with("xds.node.metadata.LABELS.app", "checkout");
        let r = resource(&host);
        assert!(r.contains(&("service.name", "checkout".to_string())));
        assert!(r.contains(&("meshaudit.workload.name", "checkout-v2".to_string())));
    }
}
