//! Reading the trail from ClickHouse's HTTP interface (`verify --clickhouse URL`): one `SELECT`
//! of the stored lines in stream and sequence order, read as it streams in (never loaded whole)
//! and handed line by line to the JSON-lines reader.
//!
//! Plain HTTP/1.1 over `std::net::TcpStream`: one POST, a response that is either chunked, of
//! a `Content-Length`, or read to the end. No TLS: an `https://` URL is refused with a message
//! (reach a TLS-only server through a tunnel, or export the lines and verify the file).
//! Credentials: `user:password@` in the URL (sent as Basic authorization) or ClickHouse's own
//! `?user=...&password=...` parameters (sent as they are); neither is ever printed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use base64::Engine as _;

use crate::input;
use crate::output::Progress;

/// The table `examples/clickhouse/schema.sql` creates.
pub const DEFAULT_TABLE: &str = "meshaudit.trail";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Between two reads of the response (a long export keeps sending, so this is per read).
const READ_TIMEOUT: Duration = Duration::from_secs(300);

struct Target {
    host: String,
    port: u16,
    /// Path and query, as sent in the request line.
    path_and_query: String,
    /// `user:password` from the URL, for Basic authorization.
    userinfo: Option<String>,
}

/// The URL as messages show it: a password in the user part or in a `password=` parameter is
/// replaced by `***`.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_string(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}{authority}{tail}")
}

fn parse_url(url: &str) -> Result<Target, String> {
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", _)) => {
            return Err("https is not supported: reach the server over http (e.g. through a tunnel), or export the lines (SELECT line ... FORMAT TSVRaw) and verify the file".into())
        }
        Some((other, _)) => return Err(format!("unsupported scheme {other:?} (http://HOST:PORT)")),
        None => url,
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_string()), h),
        None => (None, authority),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("bad host {hostport:?}"))?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("port {p:?} is not a number"))?,
        None => 8123,
    };
    let host = host.to_string();
    if host.is_empty() {
        return Err("no host (http://HOST:PORT)".into());
    }
    let path_and_query = match tail {
        "" => "/".to_string(),
        t if t.starts_with('?') => format!("/{t}"),
        t => t.to_string(),
    };
    Ok(Target {
        host,
        port,
        path_and_query,
        userinfo: userinfo.map(|u| percent_decode(&u)),
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| {
            bytes
                .get(j)
                .and_then(|c| char::from(*c).to_digit(16))
                .and_then(|d| u8::try_from(d).ok())
        };
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push(h * 16 + l);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A table name as the schema makes them: `db.table`, letters, digits and `_`.
pub fn check_table(table: &str) -> Result<(), String> {
    let ok = !table.is_empty()
        && table.split('.').count() <= 2
        && table
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--clickhouse-table {table:?}: expected DATABASE.TABLE (letters, digits, _)"
        ))
    }
}

/// The query verify runs: every stored line, in stream and sequence order.
pub fn query(table: &str) -> String {
    format!("SELECT line FROM {table} ORDER BY stream_id, sequence FORMAT TSVRaw")
}

/// Every line of the trail table at `url` into `sink`.
pub fn read_trail(
    url: &str,
    table: &str,
    sink: &mut input::Sink,
    progress: &mut Progress,
) -> Result<(), String> {
    let shown = redact(url);
    check_table(table)?;
    let target = parse_url(url).map_err(|e| format!("--clickhouse {shown}: {e}"))?;
    let body = request(&target, &query(table))
        .map_err(|e| format!("ClickHouse at {shown}, reading {table}: {e}"))?;
    // Lines are named `clickhouse TABLE:N` (N: the line's position in the answer).
    let name = format!("clickhouse {shown} {table}");
    input::read_lines(
        &name,
        BufReader::with_capacity(1 << 20, body),
        sink,
        progress,
    )
    .map_err(|e| format!("{e}{}", server_error_hint(&e)))
}

/// The answer to `sql` (the report's aggregations), as it streams in; errors name the URL
/// without its password, and `what` is asked.
pub fn select(url: &str, what: &str, sql: &str) -> Result<BufReader<Box<dyn Read>>, String> {
    let shown = redact(url);
    let target = parse_url(url).map_err(|e| format!("--clickhouse {shown}: {e}"))?;
    let body = request(&target, sql).map_err(|e| format!("ClickHouse at {shown}, {what}: {e}"))?;
    Ok(BufReader::with_capacity(1 << 16, body))
}

/// ClickHouse reports an error that happens after it began answering inside the body.
fn server_error_hint(message: &str) -> &'static str {
    if message.contains("not JSON") {
        " (ClickHouse may have reported an error in the middle of its answer)"
    } else {
        ""
    }
}

fn request(target: &Target, sql: &str) -> Result<Box<dyn Read>, String> {
    let addrs: Vec<_> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
        .collect();
    let mut last = String::from("no address");
    let mut stream = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("cannot connect to {a}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let host = if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: meshaudit-verify\r\n",
        target.path_and_query,
        sql.len()
    );
    if let Some(userinfo) = &target.userinfo {
        let token = base64::engine::general_purpose::STANDARD.encode(userinfo.as_bytes());
        head.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(sql.as_bytes()))
        .map_err(|e| format!("sending the query: {e}"))?;

    let mut reader = BufReader::with_capacity(1 << 16, stream);
    let mut status_line = String::new();
    reader
        .read_line(&mut status_line)
        .map_err(|e| format!("reading the answer: {e}"))?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", status_line.trim()))?;
    let mut chunked = false;
    let mut length: Option<u64> = None;
    loop {
        let mut line = String::new();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| format!("reading the answer's headers: {e}"))?;
        let line = line.trim_end();
        if n == 0 || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim();
            if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k.eq_ignore_ascii_case("content-length") {
                length = v.parse().ok();
            }
        }
    }
    let body: Box<dyn Read> = if chunked {
        Box::new(Chunked {
            inner: reader,
            left: 0,
            done: false,
        })
    } else if let Some(n) = length {
        Box::new(reader.take(n))
    } else {
        Box::new(reader)
    };
    if status != 200 {
        let mut text = String::new();
        let _ = body.take(2000).read_to_string(&mut text);
        return Err(format!("HTTP {status}: {}", text.trim()));
    }
    Ok(body)
}

/// A chunked transfer-encoded body, decoded as it is read.
struct Chunked<R> {
    inner: R,
    left: u64,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut size = String::new();
            self.inner.read_line(&mut size)?;
            let size = size.trim();
            let size = size.split(';').next().unwrap_or_default();
            self.left = u64::from_str_radix(size, 16).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("bad chunk size {size:?}"),
                )
            })?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = match buf.get_mut(..want) {
            Some(b) => self.inner.read(b)?,
            None => 0,
        };
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the answer ended inside a chunk",
            ));
        }
        self.left -= n as u64;
        if self.left == 0 {
            let mut crlf = String::new();
            self.inner.read_line(&mut crlf)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("http://u:s3cret@h:8123/?user=u&password=s3cret&database=x"),
            "http://u:***@h:8123/?user=u&password=***&database=x"
        );
        assert_eq!(redact("http://h:8123"), "http://h:8123");
    }

    #[test]
    fn urls_parse() {
        let t = parse_url("http://a:b%40c@127.0.0.1:9000/?database=x").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 9000));
        assert_eq!(t.path_and_query, "/?database=x");
        assert_eq!(t.userinfo.as_deref(), Some("a:b@c"));
        let t = parse_url("http://[::1]").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path_and_query.as_str()),
            ("::1", 8123, "/")
        );
        assert!(parse_url("https://h").is_err());
        assert!(check_table("meshaudit.trail").is_ok());
        assert!(check_table("x; DROP TABLE y").is_err());
    }

    #[test]
    fn chunked_bodies_decode() {
        let raw = b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n";
        let mut out = String::new();
        Chunked {
            inner: &raw[..],
            left: 0,
            done: false,
        }
        .read_to_string(&mut out)
        .unwrap();
        assert_eq!(out, "hello world");
    }
}
