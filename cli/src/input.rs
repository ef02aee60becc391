//! Reading a trail and a witness: files or stdin, text (JSON lines, OTLP/JSON) or OTLP
//! protobuf. Errors name the file and line.

use std::io::{BufRead, BufReader, Read};

use meshaudit::integrity::checkpoint::Checkpoint;
use meshaudit::integrity::verify::record::{from_json_line, from_otlp_proto, Record};
use meshaudit::integrity::verify::Verifier;

use crate::output::Progress;

fn open(path: &str) -> Result<Box<dyn Read>, String> {
    if path == "-" {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    std::fs::File::open(path)
        .map(|f| Box::new(f) as Box<dyn Read>)
        .map_err(|e| format!("{path}: {e}"))
}

fn name(path: &str) -> &str {
    if path == "-" {
        "<stdin>"
    } else {
        path
    }
}

/// Where the events read go: the verifier, the report's aggregation.
pub type Sink<'a> = dyn FnMut(Record) + 'a;

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
pub fn read_lines(
    path: &str,
    mut reader: impl BufRead,
    sink: &mut Sink,
    progress: &mut Progress,
) -> Result<(), String> {
    let file = name(path);
    let mut line = String::new();
    let mut n = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .map_err(|e| format!("{file}:{}: {e}", n + 1))?;
        if read == 0 {
            return Ok(());
        }
        n += 1;
        let origin = format!("{file}:{n}");
        let records = from_json_line(&line, &origin).map_err(|e| format!("{origin}: {e}"))?;
        progress.add(records.len() as u64);
        for r in records {
            sink(r);
        }
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
            sink(r);
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
