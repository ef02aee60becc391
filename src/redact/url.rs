//! The parts of a URL that hold named values, read with the whole URL grammar: `;` parameters
//! in path segments (`/app;jsessionid=…/x`), the query (pairs separated by `&` or `;`), the
//! fragment (`#access_token=…`, on requests Envoy answers itself and in URLs inside values),
//! and the password of a URL's user information (`https://user:password@host/`).

use super::form::{rewrite, ListKind, Verdict};

/// The replacement of a URL's user-information password.
pub const PASSWORD_MASK: &str = "[REDACTED]";

/// Whether `text` is worth reading as a URL: it starts like one (`scheme://`, `//` or `/`) and
/// has a part that holds named values or a user-information password.
pub fn looks_like_url(text: &str) -> bool {
    let starts = text.starts_with('/') || scheme_end(text).is_some();
    starts && text.bytes().any(|b| matches!(b, b'?' | b'#' | b';' | b'@'))
}

/// The end of `scheme://` at the start of `text`, if it has one.
fn scheme_end(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    if !b.first()?.is_ascii_alphabetic() {
        return None;
    }
    let colon = b
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')))?;
    b.get(colon..)?.starts_with(b"://").then_some(colon + 3)
}

/// Rewrites the named values of a whole URL with `pair`, and masks a user-information
/// password (`password()` is told each time). `None` when nothing changed.
pub fn rewrite_url(
    url: &str,
    pair: &mut dyn FnMut(&str, &str) -> Verdict,
    password: &mut dyn FnMut(),
) -> Option<String> {
    let (before_fragment, fragment) = split_at_byte(url, b'#');
    let (before_query, query) = split_at_byte(before_fragment, b'?');
    let scheme = scheme_end(before_query);
    let (authority_end, masked_authority) = match scheme {
        Some(at) => {
            let end = before_query
                .get(at..)
                .and_then(|r| r.find('/'))
                .map_or(before_query.len(), |i| at + i);
            let authority = before_query.get(at..end).unwrap_or("");
            (end, mask_userinfo(authority).inspect(|_| password()))
        }
        None => (0, None),
    };
    let path = before_query.get(authority_end..).unwrap_or("");
    let new_path = rewrite_path_params(path, pair);
    let new_query = query.and_then(|q| rewrite(q, ListKind::Query, &mut *pair));
    let new_fragment = fragment.and_then(|f| rewrite(f, ListKind::Query, &mut *pair));
    if masked_authority.is_none()
        && new_path.is_none()
        && new_query.is_none()
        && new_fragment.is_none()
    {
        return None;
    }
    let mut out = String::with_capacity(url.len());
    match masked_authority {
        Some(a) => {
            out.push_str(before_query.get(..scheme.unwrap_or(0)).unwrap_or(""));
            out.push_str(&a);
        }
        None => out.push_str(before_query.get(..authority_end).unwrap_or("")),
    }
    out.push_str(new_path.as_deref().unwrap_or(path));
    if let Some(q) = query {
        out.push('?');
        out.push_str(new_query.as_deref().unwrap_or(q));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(new_fragment.as_deref().unwrap_or(f));
    }
    Some(out)
}

/// Rewrites the `;` parameters of a path's segments and its fragment (a path as Envoy
/// records it: no query). `None` when nothing changed.
pub fn rewrite_path(path: &str, pair: &mut dyn FnMut(&str, &str) -> Verdict) -> Option<String> {
    let (before, fragment) = split_at_byte(path, b'#');
    let new_path = rewrite_path_params(before, pair);
    let new_fragment = fragment.and_then(|f| rewrite(f, ListKind::Query, &mut *pair));
    join(before, new_path, fragment, new_fragment)
}

/// Rewrites a query string and its fragment. `None` when nothing changed.
pub fn rewrite_query(query: &str, pair: &mut dyn FnMut(&str, &str) -> Verdict) -> Option<String> {
    let (before, fragment) = split_at_byte(query, b'#');
    let new_query = rewrite(before, ListKind::Query, &mut *pair);
    let new_fragment = fragment.and_then(|f| rewrite(f, ListKind::Query, &mut *pair));
    join(before, new_query, fragment, new_fragment)
}

fn join(
    before: &str,
    new_before: Option<String>,
    fragment: Option<&str>,
    new_fragment: Option<String>,
) -> Option<String> {
    if new_before.is_none() && new_fragment.is_none() {
        return None;
    }
    let mut out = new_before.unwrap_or_else(|| before.to_string());
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(new_fragment.as_deref().unwrap_or(f));
    }
    Some(out)
}

/// `text` before the first `sep`, and what follows it (if it occurs).
fn split_at_byte(text: &str, sep: u8) -> (&str, Option<&str>) {
    match text.bytes().position(|b| b == sep) {
        Some(i) => (text.get(..i).unwrap_or(""), text.get(i + 1..)),
        None => (text, None),
    }
}

/// Each segment's `;` parameters (`app;jsessionid=X;v=1`).
fn rewrite_path_params(path: &str, pair: &mut dyn FnMut(&str, &str) -> Verdict) -> Option<String> {
    if !path.contains(';') {
        return None;
    }
    let mut changed = false;
    let segments: Vec<String> = path
        .split('/')
        .map(|segment| {
            let (name, params) = split_at_byte(segment, b';');
            match params.and_then(|p| rewrite(p, ListKind::Query, &mut *pair)) {
                Some(new) => {
                    changed = true;
                    format!("{name};{new}")
                }
                None => segment.to_string(),
            }
        })
        .collect();
    changed.then(|| segments.join("/"))
}

/// `user:password@host` with the password masked; `None` when there is none.
fn mask_userinfo(authority: &str) -> Option<String> {
    let at = authority.rfind('@')?;
    let userinfo = authority.get(..at)?;
    let colon = userinfo.find(':')?;
    if colon + 1 == userinfo.len() {
        return None;
    }
    Some(format!(
        "{}:{PASSWORD_MASK}{}",
        userinfo.get(..colon)?,
        authority.get(at..)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn mask_token(name: &str, _: &str) -> Verdict {
        if name.eq_ignore_ascii_case("token") || name == "jsessionid" || name == "access_token" {
            Verdict::Replace("[REDACTED]".into())
        } else {
            Verdict::Keep
        }
    }

    fn url(u: &str) -> Option<String> {
        let mut passwords = 0;
        rewrite_url(u, &mut mask_token, &mut || passwords += 1)
    }

    #[test]
    fn every_part_of_a_url() {
        assert_eq!(
            url("https://h/x?token=s1&a=1#access_token=s2&b=2").as_deref(),
            Some("https://h/x?token=[REDACTED]&a=1#access_token=[REDACTED]&b=2")
        );
        assert_eq!(
            url("/app;jsessionid=s3/x?a=1;token=s4").as_deref(),
            Some("/app;jsessionid=[REDACTED]/x?a=1;token=[REDACTED]")
        );
        assert_eq!(
            url("postgres://u:s5@db:5432/x").as_deref(),
            Some("postgres://u:[REDACTED]@db:5432/x")
        );
        assert_eq!(url("https://h/x?a=1#top"), None);
        assert_eq!(url("https://u@h/x"), None);
    }

    #[test]
    fn paths_and_queries_alone() {
        let mut f = mask_token;
        assert_eq!(
            rewrite_path("/login;jsessionid=s1#access_token=s2", &mut f).as_deref(),
            Some("/login;jsessionid=[REDACTED]#access_token=[REDACTED]")
        );
        assert_eq!(rewrite_path("/a/b", &mut f), None);
        assert_eq!(
            rewrite_query("a=1#token=s", &mut f).as_deref(),
            Some("a=1#token=[REDACTED]")
        );
    }

    #[test]
    fn what_looks_like_a_url() {
        for yes in ["https://h/x?a=1", "/x#f", "//h/p;a=1", "ftp://u:p@h/"] {
            assert!(looks_like_url(yes), "{yes}");
        }
        for no in ["https://h/x", "hello?", "a=1&b=2", "", "1://x?"] {
            assert!(!looks_like_url(no), "{no}");
        }
    }
}
