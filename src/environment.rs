//! Settings that name an environment variable instead of holding a secret: the hash key
//! (`redaction.hash_key_env`), collector credentials (`collector.headers`), the checkpoint
//! signing key. Secrets live in the proxy's environment (Istio: `vmConfig.env`), never in plugin
//! configuration, and a refusal never shows a value.

use crate::config::ConfigError;

/// Checks that `name`, the value of setting `field`, names a variable: letters, digits and
/// `_`, not starting with a digit, at most 128 characters. A value that is not one (a secret
/// pasted in its place) is refused without being shown.
pub fn check_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        return Ok(());
    }
    Err(ConfigError {
        field: field.into(),
        reason: "must be the name of an environment variable (letters, digits and _), not a \
                 secret: put the secret in the proxy's environment and its variable's name here \
                 (the value given is not shown)"
            .into(),
    })
}

/// How an error message shows the variable `name` of setting `field`: quoted when it reads
/// like a conventional name (capitals, digits and `_`, not a run of 16 hex digits or more);
/// otherwise not at all, since it may be a secret pasted by mistake.
pub fn shown(field: &str, name: &str) -> String {
    let conventional = name
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    let hex_run = name
        .split('_')
        .any(|part| part.len() >= 16 && part.bytes().all(|b| b.is_ascii_hexdigit()));
    if conventional && !hex_run && name.len() <= 64 {
        format!("{name:?}")
    } else {
        format!("named by {field}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn names_pass_and_secrets_are_refused_unshown() {
        assert!(check_name("f", "COLLECTOR_TOKEN").is_ok());
        assert!(check_name("f", "_x1").is_ok());
        for bad in ["", "1X", "Bearer abc", "a-b", &"A".repeat(129)] {
            let e = check_name("f", bad).unwrap_err();
            assert_eq!(e.field, "f");
            assert!(bad.is_empty() || !e.reason.contains(bad), "{e}");
        }
        assert_eq!(shown("f", "TOKEN"), "\"TOKEN\"");
        assert_eq!(shown("f", "0123456789abcdef0123"), "named by f");
        assert_eq!(shown("f", "lower"), "named by f");
    }
}
