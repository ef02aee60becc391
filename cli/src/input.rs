//! Reading a trail and a witness: files or stdin, text (JSON lines, OTLP/JSON) or OTLP
//! protobuf. Errors name the file and line.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};

use meshaudit::integrity::checkpoint::Checkpoint;
use meshaudit::integrity::verify::json_line::LineReader;
use meshaudit::integrity::verify::record::{from_otlp_proto, Record};
use meshaudit::integrity::verify::Verifier;

use crate::output::Progress;

fn open(path: &str) -> Result<Box<dyn Read>, String> {
    if path == "-" {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    std::fs::File::open(path)
        .map(|f| Box::new(OnceThrough::new(f)) as Box<dyn Read>)
        .map_err(|e| format!("{path}: {e}"))
}

/// A trail file, read once from start to end. The kernel is told so (a longer read-ahead), and
/// what was read is dropped from the page cache behind the reader: a trail larger than memory
/// (ten million events are 36 GB) then neither evicts everything else cached nor makes the
/// kernel reclaim pages on the reader's core (measured: docs/performance.md#the-report).
struct OnceThrough {
    file: std::fs::File,
    read: u64,
    dropped: u64,
}

/// Bytes read between two drops.
const DROP_EVERY: u64 = 64 << 20;

impl OnceThrough {
    fn new(file: std::fs::File) -> OnceThrough {
        advise::sequential(&file);
        OnceThrough {
            file,
            read: 0,
            dropped: 0,
        }
    }
}

impl Read for OnceThrough {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        self.read += n as u64;
        if self.read - self.dropped >= DROP_EVERY || n == 0 {
            advise::done_with(&self.file, self.dropped, self.read - self.dropped);
            self.dropped = self.read;
        }
        Ok(n)
    }
}

/// `posix_fadvise`: advice only (a failure changes nothing but speed, so it is ignored).
#[cfg(target_os = "linux")]
mod advise {
    use std::os::fd::AsRawFd;

    pub fn sequential(file: &std::fs::File) {
        // SAFETY: a plain system call on a file descriptor this process owns; no memory passed.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
    }

    pub fn done_with(file: &std::fs::File, offset: u64, len: u64) {
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: as above.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_DONTNEED) };
    }
}

#[cfg(not(target_os = "linux"))]
mod advise {
    pub fn sequential(_: &std::fs::File) {}
    pub fn done_with(_: &std::fs::File, _: u64, _: u64) {}
}

fn name(path: &str) -> &str {
    if path == "-" {
        "<stdin>"
    } else {
        path
    }
}

/// Where the events read go: the verifier, the report's aggregation.
pub type Sink<'a> = dyn FnMut(&Record) + 'a;

/// Every event of one input, into `sink`.
pub fn read_trail(path: &str, sink: &mut Sink, progress: &mut Progress) -> Result<(), String> {
    let mut reader = BufReader::with_capacity(1 << 20, open(path)?);
    let first = reader
        .fill_buf()
        .map_err(|e| format!("{}: {e}", name(path)))?
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace());
    match first {
        None => Ok(()),
        Some(b'{') => read_lines(path, reader, sink, progress),
        Some(_) => read_proto(path, reader, sink, progress),
    }
}

/// Every line of `reader` (JSON lines or OTLP/JSON; `path` names it in messages, `-` stdin).
/// A line is read where the buffer holds it, and copied only when it runs past the buffer's end.
pub fn read_lines(
    path: &str,
    mut reader: impl BufRead,
    sink: &mut Sink,
    progress: &mut Progress,
) -> Result<(), String> {
    let mut lines = Lines {
        file: name(path),
        reader: LineReader::default(),
        origin: String::new(),
        sink,
        progress,
    };
    let mut spanning = Vec::new();
    for n in 1u64.. {
        let fail = |e: std::io::Error| format!("{}:{n}: {e}", lines.file);
        let buffer = reader.fill_buf().map_err(fail)?;
        if buffer.is_empty() {
            break;
        }
        match memchr::memchr(b'\n', buffer) {
            Some(end) => {
                lines.line(n, buffer.get(..end).unwrap_or_default())?;
                reader.consume(end + 1);
            }
            None => {
                spanning.clear();
                reader.read_until(b'\n', &mut spanning).map_err(fail)?;
                lines.line(n, &spanning)?;
            }
        }
    }
    Ok(())
}

/// Lines into records, records into the sink.
struct Lines<'a, 's> {
    file: &'a str,
    reader: LineReader,
    origin: String,
    sink: &'a mut Sink<'s>,
    progress: &'a mut Progress,
}

impl Lines<'_, '_> {
    fn line(&mut self, n: u64, bytes: &[u8]) -> Result<(), String> {
        self.origin.clear();
        let _ = write!(self.origin, "{}:{n}", self.file);
        let origin = &self.origin;
        let text = std::str::from_utf8(bytes)
            .map_err(|_| format!("{origin}: stream did not contain valid UTF-8"))?;
        let records = self
            .reader
            .read(text, origin)
            .map_err(|e| format!("{origin}: {e}"))?;
        self.progress.add(records.len() as u64);
        for r in records {
            (self.sink)(r);
        }
        Ok(())
    }
}

/// OTLP protobuf: 4-byte big-endian length-prefixed requests when the lengths tile the input
/// exactly, else the whole input as one request.
fn read_proto(
    path: &str,
    mut reader: impl Read,
    sink: &mut Sink,
    progress: &mut Progress,
) -> Result<(), String> {
    let file = name(path);
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{file}: {e}"))?;
    let messages = split_length_prefixed(&bytes).unwrap_or_else(|| vec![bytes.as_slice()]);
    for (i, m) in messages.iter().enumerate() {
        let origin = format!("{file}:message {}", i + 1);
        let records = from_otlp_proto(m, &origin).map_err(|e| format!("{origin}: {e}"))?;
        progress.add(records.len() as u64);
        for r in records {
            sink(&r);
        }
    }
    Ok(())
}

fn split_length_prefixed(mut bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        if len > rest.len() {
            return None;
        }
        let (message, rest) = rest.split_at(len);
        out.push(message);
        bytes = rest;
    }
    Some(out)
}

/// The witness: every `meshaudit-checkpoint {json}` line of a file (other lines are skipped).
pub fn read_witness(path: &str, v: &mut Verifier) -> Result<(), String> {
    let reader = BufReader::new(open(path)?);
    let file = name(path);
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("{file}:{}: {e}", i + 1))?;
        match Checkpoint::from_witness_line(&line) {
            Some(Ok(c)) => v.add_witness(c),
            Some(Err(e)) => return Err(format!("{file}:{}: {e}", i + 1)),
            None => {}
        }
    }
    Ok(())
}
