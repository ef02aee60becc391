//! The attributes meshaudit reads for every HTTP request, and the CEL list that reads them in
//! one host call (see `snapshot`). Dependency-free, so that the benchmark's probe filter
//! (benches/harness/probe-filter) reads exactly the same list.

/// The attributes read for every HTTP request (`capture::http`), in list order.
pub const PATHS: &[&[&str]] = &[
    &["connection", "id"],
    &["request", "time"],
    &["request", "duration"],
    &["request", "protocol"],
    &["response", "code"],
    &["response", "flags"],
    &["response", "code_details"],
    &["response", "grpc_status"],
    &["request", "total_size"],
    &["request", "size"],
    &["response", "total_size"],
    &["response", "size"],
    &["upstream", "address"],
    &["xds", "route_name"],
    &["xds", "cluster_name"],
    &["upstream", "tls_version"],
];

/// The CEL list expression over [`PATHS`].
pub fn expression() -> String {
    let items: Vec<String> = PATHS
        .iter()
        .map(|p| {
            let name = p.join(".");
            format!("has({name}) ? {name} : false")
        })
        .collect();
    format!("[{}]", items.join(", "))
}
