//! Every attribute name meshaudit writes outside its own `meshaudit.` namespace is one the
//! OpenTelemetry semantic conventions release it claims ([`meshaudit::event::SEMCONV_VERSION`])
//! defines, and none of them is deprecated there. The release's registry is vendored in
//! tests/fixtures/semconv-1.44.0-attributes.tsv (its provenance in the file's header).

// A test is not production code: the crate's no-unwrap lints are for the filter itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::Path;

use meshaudit::capture::identity::{IdentityKeys, LOCAL, PEER, UPSTREAM_PEER};
use meshaudit::event::{SCHEMA_URL, SEMCONV_VERSION};
use meshaudit::integrity::canonical::RESOURCE_KEYS;

/// name → (stability, type, deprecation).
fn registry() -> HashMap<String, (String, String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "tests/fixtures/semconv-{SEMCONV_VERSION}-attributes.tsv"
    ));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the vendored registry of the release claimed)",
            path.display()
        )
    });
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let mut f = l.split('\t');
            let mut next = || f.next().unwrap_or("").to_string();
            let name = next();
            (name, (next(), next(), next()))
        })
        .collect()
}

/// The values of the `pub const NAME: &str = "...";` lines of `event.rs`'s `attr` module.
fn attr_names() -> Vec<String> {
    let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/event.rs"))
        .unwrap();
    let module = src
        .split("pub mod attr {")
        .nth(1)
        .expect("event.rs has `pub mod attr`");
    module
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("pub const ")?;
            let value = l.split(": &str = \"").nth(1)?;
            Some(value.trim_end_matches("\";").to_string())
        })
        .collect()
}

fn identity_names(keys: &IdentityKeys) -> Vec<String> {
    [
        keys.subject,
        keys.sha256,
        keys.uri_sans,
        keys.dns_sans,
        keys.spiffe_id,
        keys.trust_domain,
        keys.namespace,
        keys.service_account,
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn names_outside_meshaudits_namespace_are_current_conventions() {
    let registry = registry();
    assert!(registry.len() > 500, "the registry fixture looks truncated");
    let mut names = attr_names();
    assert!(names.len() > 40, "attr constants not found: {names:?}");
    for keys in [&PEER, &LOCAL, &UPSTREAM_PEER] {
        names.extend(identity_names(keys));
    }
    names.extend(RESOURCE_KEYS.iter().map(|k| k.to_string()));
    let mut problems = Vec::new();
    for name in names.iter().filter(|n| !n.starts_with("meshaudit.")) {
        // `http.request.header.` is the prefix of the template attribute `http.request.header`.
        let lookup = name.strip_suffix('.').unwrap_or(name);
        match registry.get(lookup) {
            None => problems.push(format!(
                "{name}: not in semantic conventions {SEMCONV_VERSION}"
            )),
            Some((_, kind, _)) if name.ends_with('.') && !kind.starts_with("template") => problems
                .push(format!(
                    "{name}: used as a prefix, but not a template attribute"
                )),
            Some((_, _, deprecation)) if !deprecation.is_empty() => problems.push(format!(
                "{name}: deprecated in {SEMCONV_VERSION} ({deprecation})"
            )),
            Some(_) => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        SCHEMA_URL,
        format!("https://opentelemetry.io/schemas/{SEMCONV_VERSION}")
    );
}

#[test]
fn the_names_that_replaced_deprecated_ones_are_used() {
    let names = attr_names();
    for gone in [
        "rpc.grpc.status_code",
        "tls.client.server_name",
        "client.address",
    ] {
        assert!(!names.iter().any(|n| n == gone), "{gone} is still written");
    }
    for now in [
        "rpc.response.status_code",
        "network.peer.address",
        "network.peer.port",
    ] {
        assert!(names.iter().any(|n| n == now), "{now} is not written");
    }
    assert_eq!(PEER.subject, "tls.client.subject");
    assert_eq!(PEER.sha256, "tls.client.hash.sha256");
    assert_eq!(LOCAL.subject, "tls.server.subject");
}
