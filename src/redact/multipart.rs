//! `multipart/form-data` bodies: each part is a field, named by its `Content-Disposition`.
//! The boundary is read from the body's first line, so a part list is recognised whatever
//! the message's `content-type` said (and without its parameters, which events do not keep).

/// One part: its field name, its media type, and where its content is in the body.
pub struct Part<'a> {
    pub name: String,
    pub content_type: Option<&'a str>,
    pub content: &'a str,
    start: usize,
    end: usize,
}

/// Longest boundary RFC 2046 allows.
const MAX_BOUNDARY: usize = 70;

/// The boundary of a multipart body: its first line is `--` and the boundary.
fn boundary_of(body: &str) -> Option<&str> {
    let first = body.strip_prefix("--")?;
    let line_end = first.find('\n').unwrap_or(first.len());
    let boundary = first.get(..line_end)?.trim_end_matches('\r');
    let ok = !boundary.is_empty()
        && boundary.len() <= MAX_BOUNDARY
        && !boundary
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
    ok.then_some(boundary)
}

/// Whether `body` reads as multipart form data: a boundary line, then a part's headers.
pub fn looks_like_multipart(body: &str) -> bool {
    boundary_of(body).is_some()
        && body
            .get(..body.len().min(512))
            .is_some_and(|head| head.to_ascii_lowercase().contains("content-disposition"))
}

/// The parts of `body`; a body cut short ends with its last part cut short.
pub fn parts(body: &str) -> Vec<Part<'_>> {
    let Some(boundary) = boundary_of(body) else {
        return Vec::new();
    };
    let delimiter = format!("\n--{boundary}");
    let mut out = Vec::new();
    // `at` is just past a delimiter line's `--boundary`.
    let mut at = 2 + boundary.len();
    loop {
        let rest = body.get(at..).unwrap_or("");
        if rest.starts_with("--") || rest.is_empty() {
            return out;
        }
        let Some(headers_start) = rest.find('\n').map(|i| at + i + 1) else {
            return out;
        };
        let head_and_more = body.get(headers_start..).unwrap_or("");
        let (headers_len, blank) =
            match (head_and_more.find("\r\n\r\n"), head_and_more.find("\n\n")) {
                (Some(a), Some(b)) if b < a => (b, 2),
                (Some(a), _) => (a, 4),
                (None, Some(b)) => (b, 2),
                (None, None) => return out,
            };
        let headers = head_and_more.get(..headers_len).unwrap_or("");
        let start = headers_start + headers_len + blank;
        let next = body.get(start..).and_then(|r| r.find(&delimiter));
        let end = match next {
            Some(i) => {
                let e = start + i;
                if body.get(..e).is_some_and(|b| b.ends_with('\r')) {
                    e - 1
                } else {
                    e
                }
            }
            None => body.len(),
        };
        let (name, content_type) = read_headers(headers);
        out.push(Part {
            name,
            content_type,
            content: body.get(start..end).unwrap_or(""),
            start,
            end,
        });
        match next {
            Some(i) => at = start + i + delimiter.len(),
            None => return out,
        }
    }
}

/// The field name (from `Content-Disposition`) and media type of a part's headers.
fn read_headers(headers: &str) -> (String, Option<&str>) {
    let mut name = String::new();
    let mut content_type = None;
    for line in headers.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim();
        if key.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.trim());
        } else if key.eq_ignore_ascii_case("content-disposition") {
            name = disposition_name(value).unwrap_or_default();
        }
    }
    (name, content_type)
}

/// `name="…"` (or `name=token`, or RFC 2231's `name*=UTF-8''…`) of a `Content-Disposition`
/// value.
fn disposition_name(value: &str) -> Option<String> {
    value.split(';').find_map(|param| {
        let (k, v) = param.split_once('=')?;
        let k = k.trim();
        if k.eq_ignore_ascii_case("name*") {
            let encoded = v.trim().split_once("''").map_or(v.trim(), |(_, e)| e);
            return Some(super::form::percent_decode(encoded, false).into_owned());
        }
        if !k.eq_ignore_ascii_case("name") {
            return None;
        }
        let v = v.trim();
        Some(
            v.strip_prefix('"')
                .map_or(v, |q| q.strip_suffix('"').unwrap_or(q))
                .replace("\\\"", "\""),
        )
    })
}

/// Rewrites the parts' contents: `decide(part)` gives a part's new content, or `None` to keep
/// it. `None` when nothing changed.
pub fn rewrite(body: &str, mut decide: impl FnMut(&Part<'_>) -> Option<String>) -> Option<String> {
    let mut out: Option<String> = None;
    let mut copied = 0;
    for part in parts(body) {
        if let Some(new) = decide(&part) {
            let o = out.get_or_insert_with(|| String::with_capacity(body.len()));
            o.push_str(body.get(copied..part.start).unwrap_or(""));
            o.push_str(&new);
            copied = part.end;
        }
    }
    out.map(|mut o| {
        o.push_str(body.get(copied..).unwrap_or(""));
        o
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const BODY: &str = "--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nalice\r\n--XyZ\r\nContent-Disposition: form-data; name=\"user[password]\"\r\n\r\nhunter2\r\n--XyZ\r\nContent-Disposition: form-data; name=\"doc\"; filename=\"a.json\"\r\nContent-Type: application/json\r\n\r\n{\"token\":\"t\"}\r\n--XyZ--\r\n";

    #[test]
    fn reads_parts() {
        assert!(looks_like_multipart(BODY));
        let p = parts(BODY);
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["user", "user[password]", "doc"]);
        assert_eq!(p[1].content, "hunter2");
        assert_eq!(p[2].content_type, Some("application/json"));
        assert_eq!(p[2].content, "{\"token\":\"t\"}");
    }

    #[test]
    fn rewrites_and_survives_cuts() {
        let out = rewrite(BODY, |p| {
            (p.name == "user[password]").then(|| "[REDACTED]".into())
        });
        let out = out.unwrap();
        assert!(out.contains("\r\n\r\n[REDACTED]\r\n--XyZ") && !out.contains("hunter2"));
        for cut in 0..=BODY.len() {
            let body = &BODY[..cut];
            let mut seen = false;
            let out = rewrite(body, |p| {
                seen |= p.name == "user[password]";
                (p.name == "user[password]").then(String::new)
            });
            if let Some(o) = out {
                assert!(!o.contains("hunt"), "{cut}: {o}");
            }
            if body.contains("hunt") {
                assert!(seen, "{cut}");
            }
        }
        let star =
            "--B\r\nContent-Disposition: form-data; name*=UTF-8''pass%77ord\r\n\r\nx\r\n--B--";
        assert_eq!(parts(star)[0].name, "password");
        assert!(!looks_like_multipart("--\r\nx"));
        assert!(!looks_like_multipart("-- a b\r\nContent-Disposition: x"));
    }
}
