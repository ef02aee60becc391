//! The attributes meshaudit reads for every HTTP request, and the CEL lists that read them in
//! one host call (see `snapshot`). Dependency-free, so that the benchmark's probe filter
//! (benches/harness/probe-filter) reads exactly the same list.
//!
//! An absent attribute fails a whole CEL evaluation, so the list can guard each element with
//! `has()`; but guards cost: in Envoy 1.40 the fully guarded list takes ~9 µs per evaluation,
//! the list guarding only what ordinary requests lack ~5.5 µs. meshaudit evaluates the
//! [`Guards::OftenAbsent`] list and, for requests where it fails (local replies without an
//! upstream, resets before a response), the [`Guards::All`] one.

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

/// Not an Envoy attribute: whether Envoy's `jwt_authn` filter left a verified payload in the
/// request's dynamic metadata (`capture::enduser` reads the metadata only then), evaluated as
/// `'envoy.filters.http.jwt_authn' in metadata.filter_metadata` after [`PATHS`] when
/// `identity.jwt` is on. It is not free (about 1.8% of the proxy's throughput side by side:
/// Envoy walks the metadata message), hence only then.
pub const JWT_PAYLOAD_PRESENT: &[&str] = &["meshaudit", "jwt_payload_present"];

/// The list evaluated per request: [`PATHS`], and [`JWT_PAYLOAD_PRESENT`] when `jwt`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct List {
    pub jwt: bool,
}

impl List {
    /// How many elements it has.
    pub fn elements(self) -> usize {
        PATHS.len() + usize::from(self.jwt)
    }

    /// Where `path` is in it.
    pub fn position(self, path: &[&str]) -> Option<usize> {
        PATHS
            .iter()
            .position(|p| *p == path)
            .or_else(|| (self.jwt && path == JWT_PAYLOAD_PRESENT).then_some(PATHS.len()))
    }
}

/// Attributes an ordinary proxied request lacks: the upstream's TLS version on a plaintext
/// upstream connection.
const OFTEN_ABSENT: &[&[&str]] = &[&["upstream", "tls_version"]];

/// Which elements of the list are guarded with `has()` (absent ones evaluate to `false`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guards {
    /// Only what ordinary requests lack: cheaper, but fails where anything else is absent.
    OftenAbsent,
    /// Every element: never fails for an absent attribute.
    All,
}

/// The CEL list expression of `list`.
pub fn expression(guards: Guards, list: List) -> String {
    let mut items: Vec<String> = PATHS
        .iter()
        .map(|p| {
            let name = p.join(".");
            if guards == Guards::All || OFTEN_ABSENT.contains(p) {
                format!("has({name}) ? {name} : false")
            } else {
                name
            }
        })
        .collect();
    if list.jwt {
        items.push("('envoy.filters.http.jwt_authn' in metadata.filter_metadata)".to_string());
    }
    format!("[{}]", items.join(", "))
}
