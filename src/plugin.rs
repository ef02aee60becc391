//! A plugin configuration, checked and compiled once: everything `on_configure` needs, so that
//! no request and no export compiles or copies settings again.

use std::time::Duration;

use crate::audit::AuditPolicy;
use crate::capture::body::BodyPolicy;
use crate::config::{Config, ConfigError, Protocol};
use crate::encode::{content_type, otlp};
use crate::integrity::keys::Signer;
use crate::redact::Redactor;
use crate::route::Route;

/// The compiled configuration.
pub struct Plugin {
    pub config: Config,
    pub redactor: Redactor,
    pub bodies: BodyPolicy,
    pub audit: AuditPolicy,
    pub fail_closed: Vec<Route>,
    pub export: ExportRequest,
    /// The checkpoint signing key, from `integrity.signing_key_env` (none: unsigned checkpoints).
    pub signer: Option<Signer>,
}

/// Where and how exports are sent: the request line and headers every export carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    /// OTLP/gRPC: the body is framed, the path is the LogsService's.
    pub grpc: bool,
    pub content_type: &'static str,
    pub timeout: Duration,
    /// `collector.headers`, their values read from the environment.
    pub credentials: CredentialHeaders,
}

/// Headers whose values are secrets (`collector.headers`): their names show in debug output,
/// their values never do.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CredentialHeaders(pub Vec<(String, String)>);

impl std::fmt::Debug for CredentialHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| format!("{name}: (hidden)")))
            .finish()
    }
}

/// Header names `collector.headers` may not set: the ones every export sets itself, and
/// HTTP/1.1 connection headers.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "te",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Longest credential header value.
const MAX_CREDENTIAL_BYTES: usize = 8 * 1024;

impl CredentialHeaders {
    /// Reads each `collector.headers` variable. A bad name, an unset variable or a value that
    /// cannot be a header is refused naming the header, never showing a value.
    fn read(
        config: &Config,
        env: &impl Fn(&str) -> Option<Vec<u8>>,
    ) -> Result<CredentialHeaders, ConfigError> {
        let mut out = Vec::new();
        for (name, var) in &config.collector.headers {
            let field = format!("collector.headers.{name}");
            let refuse = |reason: String| ConfigError {
                field: field.clone(),
                reason,
            };
            let token = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
            if name.is_empty() || name.len() > 64 || !name.bytes().all(token) {
                return Err(refuse(
                    "a header name is lower-case letters, digits and '-'".into(),
                ));
            }
            if RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(refuse("every export sets this header itself".into()));
            }
            crate::environment::check_name(&field, var)?;
            let shown = crate::environment::shown(&field, var);
            let value = env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                refuse(format!(
                    "the variable {shown} is not set (or empty) in the proxy's environment                      (Istio: the WasmPlugin's vmConfig.env)"
                ))
            })?;
            let visible = |b: &u8| (0x20..0x7f).contains(b) || *b == b'\t';
            let value = String::from_utf8(value)
                .ok()
                .filter(|v| v.len() <= MAX_CREDENTIAL_BYTES && v.as_bytes().iter().all(visible))
                .ok_or_else(|| {
                    refuse(format!(
                        "the variable {shown} holds what cannot be a header value: printable                          ASCII, at most 8 KiB (the value is not shown)"
                    ))
                })?;
            out.push((name.clone(), value));
        }
        Ok(CredentialHeaders(out))
    }
}

impl ExportRequest {
    fn of(config: &Config, credentials: CredentialHeaders) -> ExportRequest {
        let grpc = config.protocol == Protocol::Grpc;
        let (path, content_type) = if grpc {
            (otlp::GRPC_PATH.to_string(), "application/grpc")
        } else {
            (config.collector.path.clone(), content_type(config.format))
        };
        ExportRequest {
            cluster: config.collector.cluster.clone(),
            authority: config.collector.authority().to_string(),
            path,
            grpc,
            content_type,
            timeout: Duration::from_millis(u64::from(config.collector.timeout_ms)),
            credentials,
        }
    }
}

impl Plugin {
    /// Parses and compiles a plugin configuration. `env` reads an environment variable (the
    /// hash key lives in one, never in the configuration text).
    pub fn load(raw: &[u8], env: impl Fn(&str) -> Option<Vec<u8>>) -> Result<Plugin, ConfigError> {
        let config = Config::parse(raw)?;
        let key = env(&config.redaction.hash_key_env).filter(|k| !k.is_empty());
        let redactor = Redactor::compile(&config.redaction, key)?;
        let bodies = BodyPolicy::compile(&config.body_capture)?;
        let audit = AuditPolicy::compile(&config.audit)?;
        let mut fail_closed = Vec::new();
        for (i, r) in config.routes.iter().enumerate() {
            let route = Route::compile(&r.route).map_err(|e| ConfigError {
                field: format!("routes[{i}].match"),
                reason: e,
            })?;
            if r.fail_closed {
                fail_closed.push(route);
            }
        }
        let export = ExportRequest::of(&config, CredentialHeaders::read(&config, &env)?);
        let signer = signer(&config, env)?;
        Ok(Plugin {
            config,
            redactor,
            bodies,
            audit,
            fail_closed,
            export,
            signer,
        })
    }
}

/// The signing key named by `integrity.signing_key_env`, when integrity is on and the variable
/// is set. A key that does not read is refused naming the variable, never its value.
fn signer(
    config: &Config,
    env: impl Fn(&str) -> Option<Vec<u8>>,
) -> Result<Option<Signer>, ConfigError> {
    let integrity = &config.integrity;
    if !integrity.enabled {
        return Ok(None);
    }
    let Some(raw) = env(&integrity.signing_key_env).filter(|k| !k.is_empty()) else {
        return Ok(None);
    };
    Signer::parse(&raw).map(Some).map_err(|why| ConfigError {
        field: "integrity.signing_key_env".into(),
        reason: format!("the value of {} {why}", integrity.signing_key_env),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::RequestLine;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn no_env(_: &str) -> Option<Vec<u8>> {
        None
    }

    #[test]
    fn the_export_request_is_compiled_once_from_the_collector_settings() {
        let p = Plugin::load(
            br#"{"collector": {"cluster": "c", "path": "/x", "timeout_ms": 250}}"#,
            no_env,
        )
        .unwrap();
        assert_eq!(
            p.export,
            ExportRequest {
                cluster: "c".into(),
                authority: "c".into(),
                path: "/x".into(),
                grpc: false,
                content_type: "application/x-protobuf",
                timeout: Duration::from_millis(250),
                credentials: CredentialHeaders::default(),
            }
        );
        let p = Plugin::load(br#"{"format": "json"}"#, no_env).unwrap();
        assert_eq!(p.export.content_type, "application/x-ndjson");
        let p = Plugin::load(br#"{"protocol": "grpc"}"#, no_env).unwrap();
        assert!(p.export.grpc && p.export.path == otlp::GRPC_PATH);
        assert_eq!(p.export.content_type, "application/grpc");
    }

    #[test]
    fn collector_headers_come_from_the_environment_and_never_show() {
        let env = |var: &str| match var {
            "COLLECTOR_TOKEN" => Some(b"Bearer s3cr3t-token".to_vec()),
            "BAD_VALUE" => Some(b"line\r\nx-injected: 1".to_vec()),
            _ => None,
        };
        let load = |headers: &str| {
            Plugin::load(
                format!(r#"{{"collector": {{"headers": {headers}}}}}"#).as_bytes(),
                env,
            )
        };
        let p = load(r#"{"authorization": "COLLECTOR_TOKEN"}"#).unwrap();
        assert_eq!(
            p.export.credentials.0,
            vec![(
                "authorization".to_string(),
                "Bearer s3cr3t-token".to_string()
            )]
        );
        assert!(!format!("{:?}", p.export).contains("s3cr3t"));
        for (headers, reason) in [
            (
                r#"{"authorization": "UNSET_VAR"}"#,
                "\"UNSET_VAR\" is not set",
            ),
            (
                r#"{"authorization": "BAD_VALUE"}"#,
                "cannot be a header value",
            ),
            (
                r#"{"authorization": "Bearer s3cr3t-token"}"#,
                "not a secret",
            ),
            (
                r#"{"content-type": "COLLECTOR_TOKEN"}"#,
                "sets this header itself",
            ),
            (r#"{"X-Key": "COLLECTOR_TOKEN"}"#, "lower-case"),
        ] {
            let e = load(headers).err().unwrap();
            assert!(e.field.starts_with("collector.headers."), "{e}");
            assert!(e.reason.contains(reason), "{headers}: {e}");
            assert!(!e.to_string().contains("s3cr3t") && !e.to_string().contains("injected"));
        }
    }

    #[test]
    fn the_signing_key_comes_from_the_environment_and_bad_ones_are_refused() {
        let seed = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
        let with = |value: &'static str| {
            move |name: &str| (name == "MESHAUDIT_SIGNING_KEY").then(|| value.as_bytes().to_vec())
        };
        let p = Plugin::load(b"", with(seed)).unwrap();
        let signer = p.signer.unwrap();
        assert_eq!(
            signer.key_id(),
            crate::integrity::keys::Signer::from_seed(&[7; 32]).key_id()
        );
        assert!(Plugin::load(b"", no_env).unwrap().signer.is_none());
        let off = Plugin::load(br#"{"integrity": {"enabled": false}}"#, with(seed)).unwrap();
        assert!(off.signer.is_none());
        let e = Plugin::load(b"", with("c2VjcmV0")).err().unwrap();
        assert_eq!(e.field, "integrity.signing_key_env");
        assert!(e.reason.contains("MESHAUDIT_SIGNING_KEY"), "{e}");
        assert!(
            !e.to_string().contains("c2VjcmV0"),
            "never echoes the value: {e}"
        );
        for (config, field) in [
            (
                &br#"{"integrity": {"checkpoint_interval_ms": 0}}"#[..],
                "integrity.checkpoint_interval_ms",
            ),
            (
                br#"{"integrity": {"checkpoint_interval_ms": 100000000}}"#,
                "integrity.checkpoint_interval_ms",
            ),
            (
                br#"{"integrity": {"signing_key_env": ""}}"#,
                "integrity.signing_key_env",
            ),
            (
                br#"{"integrity": {"enabled": false, "witness": "log"}}"#,
                "integrity.witness",
            ),
            (
                br#"{"integrity": {"witness": "file"}}"#,
                "integrity.witness",
            ),
            (br#"{"integrity": {"keys": 1}}"#, "integrity.keys"),
        ] {
            let e = Plugin::load(config, no_env).err().unwrap();
            assert_eq!(e.field, field, "{e}");
        }
        let ok = Plugin::load(
            br#"{"integrity": {"checkpoint_interval_ms": 5000.0, "witness": "log"}}"#,
            no_env,
        )
        .unwrap();
        assert_eq!(ok.config.integrity.checkpoint_interval_ms, 5000);
    }

    #[test]
    fn bad_routes_are_refused_naming_the_rule() {
        let e = Plugin::load(
            br#"{"routes": [{"match": {"path_prefix": "x"}, "fail_closed": true}]}"#,
            no_env,
        )
        .err()
        .unwrap();
        assert_eq!(e.field, "routes[0].match");
    }

    #[test]
    fn load_names_the_field_at_fault() {
        let no_env = |_: &str| None;
        let e = Plugin::load(
            br#"{"redaction": {"rules": [{"name": "r1", "query": ["a"], "action": "shred"}]}}"#,
            no_env,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("redaction.rules[0]"), "{e}");
        let e = Plugin::load(
            br#"{"redaction": {"custom_detectors": [{"name": "emp", "pattern": "EMP-("}]}}"#,
            no_env,
        )
        .err()
        .unwrap();
        assert!(
            e.to_string().contains("\"emp\"") && e.to_string().contains("invalid regex"),
            "{e}"
        );
        let e = Plugin::load(
            br#"{"redaction": {"rules": [{"name": "j", "json": ["$."]}]}}"#,
            no_env,
        )
        .err()
        .unwrap();
        assert!(
            e.to_string().contains("\"j\"") && e.to_string().contains("JSON path"),
            "{e}"
        );
        let e = Plugin::load(br#"{"redaction": {"rules": [{"name": "h", "headers": ["x-user"], "action": "hash"}]}}"#, no_env).err().unwrap();
        assert_eq!(e.field, "redaction.hash_key_env");
        assert!(
            e.to_string().contains("MESHAUDIT_HASH_KEY") && e.to_string().contains("\"h\""),
            "{e}"
        );
        let with_key =
            |name: &str| (name == "MESHAUDIT_HASH_KEY").then(|| b"0123456789abcdef".to_vec());
        assert!(Plugin::load(br#"{"redaction": {"rules": [{"name": "h", "headers": ["x-user"], "action": "hash"}]}}"#, with_key).is_ok());
        let e = Plugin::load(br#"{"redaction": {"detectors": {"cards": false}}}"#, no_env)
            .err()
            .unwrap();
        assert_eq!(e.field, "redaction.detectors.cards");
        let e = Plugin::load(
            br#"{"body_capture": [{"match": {"path_pattern": "x"}}]}"#,
            no_env,
        )
        .err()
        .unwrap();
        assert_eq!(e.field, "body_capture[0].match");
        let e = Plugin::load(
            br#"{"routes": [{"match": {"path_prefix": "pay"}, "fail_closed": true}]}"#,
            no_env,
        )
        .err()
        .unwrap();
        assert_eq!(e.field, "routes[0].match");
        let e = Plugin::load(br#"{"overflow": "drop_all"}"#, no_env)
            .err()
            .unwrap();
        assert_eq!(e.field, "overflow");
        let ok = Plugin::load(
            br#"{"routes": [{"match": {"path_prefix": "/pay"}, "fail_closed": true}]}"#,
            no_env,
        )
        .unwrap();
        let line = |path| RequestLine {
            method: "GET",
            host: "h",
            path,
        };
        let fail_closed = |path| ok.fail_closed.iter().any(|r| r.matches(&line(path)));
        assert!(fail_closed("/pay/1"));
        assert!(!fail_closed("/shop"));
    }
}
