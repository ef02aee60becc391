//! The fast way through a trail of meshaudit's own JSON lines: each line is read into one
//! [`Record`] that is kept and refilled, its strings reused in place, so reading a line of the
//! usual shape allocates nothing. It reads exactly the form the filter writes (a flat object,
//! no whitespace, values that are strings, integers, booleans or lists of strings); any other
//! line (OTLP/JSON, spacing, `\u` escapes, floats, a missing field, …) goes through
//! [`record::from_json_line`], which defines what every line means and every error message.
//! Both give the same records for every line the fast way takes (tested, and fuzzed against
//! each other).
//!
//! The record's [`KeyIndex`] is built again whenever a line's keys differ from the last line's
//! (or a list turns empty or stops being so), so records of one build share the shape of their
//! canonical form: the verifier matches that shape once per build, not once per line.

use super::key_index::KeyIndex;
use super::record::{self, Record};
use super::specials::Specials;
use crate::event::Value;

/// Reads lines into records, reusing the last record's memory.
#[derive(Debug, Default)]
pub struct LineReader {
    record: Record,
    /// Records of the last line that took the general way.
    general: Vec<Record>,
    /// The envelope fields of the line being read (decoded), last occurrence winning.
    envelope: [String; ENVELOPE.len()],
    /// Where the line's quotes and backslashes are.
    specials: Specials,
}

/// The log record's own fields, in [`LineReader::envelope`]'s order.
const ENVELOPE: [&str; 6] = record::ENVELOPE_FIELDS;

impl LineReader {
    /// The records one line holds (none for a blank line); `origin` (`FILE:LINE`) is what the
    /// records name as where they were read.
    pub fn read(&mut self, line: &str, origin: &str) -> Result<&[Record], String> {
        let trimmed = line.trim();
        if !trimmed.is_empty() && self.fill(trimmed).is_some() {
            self.record.origin.clear();
            self.record.origin.push_str(origin);
            return Ok(std::slice::from_ref(&self.record));
        }
        // The kept record may be half refilled: its index is built again with the next line.
        self.record.index = KeyIndex::default();
        self.general = record::from_json_line(line, origin)?;
        Ok(&self.general)
    }

    /// Whether `line` is in the filter's own form (it is then in the kept record).
    #[cfg(test)]
    pub(super) fn fast_way(&mut self, line: &str) -> bool {
        self.fill(line.trim()).is_some()
    }

    /// Reads `line` into the kept record; `None` when it is not in the filter's own form (the
    /// record is then half filled, and refilled by the next line).
    fn fill(&mut self, line: &str) -> Option<()> {
        if has_control_byte(line.as_bytes()) {
            return None;
        }
        self.specials.scan(line.as_bytes());
        let mut c = Cursor {
            line,
            at: 0,
            specials: &self.specials,
        };
        let mut seen = [false; ENVELOPE.len()];
        let mut n = 0;
        let mut keys_changed = false;
        c.expect(b'{')?;
        if c.peek() == Some(b'}') {
            return None;
        }
        loop {
            let key = c.plain_string()?;
            c.expect(b':')?;
            if let Some(e) = ENVELOPE.iter().position(|f| *f == key) {
                let out = self.envelope.get_mut(e)?;
                out.clear();
                c.string_into(out)?;
                *seen.get_mut(e)? = true;
            } else {
                if n == self.record.attributes.len() {
                    self.record.attributes.push((String::new(), Value::Int(0)));
                }
                let (k, v) = self.record.attributes.get_mut(n)?;
                if k != key {
                    k.clear();
                    k.push_str(key);
                    keys_changed = true;
                }
                // An empty list is outside the canonical form: a change of that is a new shape.
                let was_empty = is_empty_list(v);
                c.value_into(v)?;
                keys_changed |= was_empty != is_empty_list(v);
                n += 1;
            }
            match c.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
        if c.at != line.len() || !seen.iter().take(3).all(|s| *s) {
            return None;
        }
        if keys_changed || n != self.record.attributes.len() || !self.record.index.is_built() {
            self.record.attributes.truncate(n);
            let keys = self.record.attributes.iter().map(|(k, _)| k.as_str());
            self.record.index = KeyIndex::build(keys);
        }
        self.envelope_into_record(&seen)
    }

    fn envelope_into_record(&mut self, seen: &[bool; ENVELOPE.len()]) -> Option<()> {
        let [time, observed, event_name, body, trace_id, span_id] = &self.envelope;
        let r = &mut self.record;
        r.start_ns = record::parse_rfc3339(time)?;
        r.observed_ns = record::parse_rfc3339(observed)?;
        r.event_name.clear();
        r.event_name.push_str(event_name);
        r.body.clear();
        if seen[3] {
            r.body.push_str(body);
        }
        // A bad id is the general way's error: that way gives its message.
        r.trace_id = record::hex_id(seen[4].then_some(trace_id.as_str())).ok()?;
        r.span_id = record::hex_id(seen[5].then_some(span_id.as_str())).ok()?;
        Some(())
    }
}

fn is_empty_list(v: &Value) -> bool {
    matches!(v, Value::StrList(l) if l.is_empty())
}

/// Whether any byte is below 0x20 (JSON allows none inside strings; the filter writes none
/// between tokens). One pass the compiler vectorizes.
fn has_control_byte(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |any, &b| any | (b < 0x20))
}

/// A position in a line of the filter's form.
struct Cursor<'a> {
    line: &'a str,
    at: usize,
    specials: &'a Specials,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.line.as_bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    /// A string without escapes, borrowed from the line.
    fn plain_string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let end = self.specials.next(self.at)?;
        if self.line.as_bytes().get(end) != Some(&b'"') {
            return None;
        }
        let s = self.line.get(self.at..end)?;
        self.at = end + 1;
        Some(s)
    }

    /// A string, decoded into `out` (appended); `\u` escapes are left to the general way.
    fn string_into(&mut self, out: &mut String) -> Option<()> {
        self.expect(b'"')?;
        loop {
            let end = self.specials.next(self.at)?;
            out.push_str(self.line.get(self.at..end)?);
            self.at = end + 1;
            if self.line.as_bytes().get(end) == Some(&b'"') {
                return Some(());
            }
            out.push(match self.next()? {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                _ => return None,
            });
        }
    }

    /// A value, into `slot`, reusing its strings when it already holds the same type.
    fn value_into(&mut self, slot: &mut Value) -> Option<()> {
        match self.peek()? {
            b'"' => {
                if !matches!(slot, Value::Str(_)) {
                    *slot = Value::Str(String::new());
                }
                let Value::Str(s) = slot else { return None };
                s.clear();
                self.string_into(s)
            }
            b'[' => {
                if !matches!(slot, Value::StrList(_)) {
                    *slot = Value::StrList(Vec::new());
                }
                let Value::StrList(items) = slot else {
                    return None;
                };
                self.list_into(items)
            }
            b't' => self.word("true").map(|()| *slot = Value::Bool(true)),
            b'f' => self.word("false").map(|()| *slot = Value::Bool(false)),
            _ => self.int().map(|i| *slot = Value::Int(i)),
        }
    }

    fn list_into(&mut self, items: &mut Vec<String>) -> Option<()> {
        self.expect(b'[')?;
        let mut n = 0;
        if self.peek() == Some(b']') {
            self.at += 1;
        } else {
            loop {
                if n == items.len() {
                    items.push(String::new());
                }
                let item = items.get_mut(n)?;
                item.clear();
                self.string_into(item)?;
                n += 1;
                match self.next()? {
                    b',' => continue,
                    b']' => break,
                    _ => return None,
                }
            }
        }
        items.truncate(n);
        Some(())
    }

    fn word(&mut self, w: &str) -> Option<()> {
        let rest = self.line.get(self.at..)?;
        rest.starts_with(w).then(|| self.at += w.len())
    }

    /// A JSON integer that fits an i64 (no fraction, exponent, leading zero or `-0`).
    fn int(&mut self) -> Option<i64> {
        let bytes = self.line.as_bytes();
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let digits = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        let len = self.at - digits;
        if len == 0 || (len > 1 && bytes.get(digits) == Some(&b'0')) {
            return None;
        }
        // serde_json reads `-0` as the float -0.0, which is not an integer attribute.
        if digits > start && bytes.get(digits..self.at) == Some(b"0") {
            return None;
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.line.get(start..self.at)?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const LINE: &str = concat!(
        r#"{"time":"2023-11-14T22:13:20.002000000Z","observed_time":"2023-11-14T22:13:20.002000500Z","#,
        r#""event_name":"meshaudit.http","body":"GET /a 200","trace_id":"0af7651916cd43dd8448eb211c80319c","#,
        r#""span_id":"b7ad6b7169203331","http.request.method":"GET","meshaudit.sequence":5,"#,
        r#""meshaudit.tls.mtls":true,"n":-12,"l":["a","b\"c"],"e":[],"x":"tab\there\\"}"#
    );

    /// The fast way's records, or `None` where it hands the line to the general way.
    fn fast(line: &str) -> Option<Record> {
        let mut r = LineReader::default();
        r.fill(line.trim())?;
        r.record.origin = "o".into();
        Some(r.record)
    }

    fn general(line: &str) -> Result<Vec<Record>, String> {
        record::from_json_line(line, "o")
    }

    #[test]
    fn the_filters_form_is_read_the_fast_way_as_the_general_way_reads_it() {
        let f = fast(LINE).expect("the filter's form takes the fast way");
        assert_eq!(Ok(vec![f.clone()]), general(LINE));
        assert_eq!(f.str("x"), Some("tab\there\\"));
        assert_eq!(
            f.get("l"),
            Some(&Value::StrList(vec!["a".into(), "b\"c".into()]))
        );
        assert_eq!(f.int("n"), Some(-12));
    }

    #[test]
    fn every_other_form_goes_the_general_way_with_its_answer() {
        let cases = [
            LINE.replace(r#""n":-12"#, r#""n": -12"#),
            LINE.replace(r#""n":-12"#, r#""n":1.5"#),
            LINE.replace(r#""n":-12"#, r#""n":012"#),
            LINE.replace(r#""n":-12"#, r#""n":-0"#),
            LINE.replace(r#""n":-12"#, r#""n":0"#),
            LINE.replace(r#""n":-12"#, r#""n":99999999999999999999"#),
            LINE.replace(r#""n":-12"#, r#""n":null"#),
            LINE.replace(r#""n":-12"#, r#""n":{"a":1}"#),
            LINE.replace(r#""n":-12"#, r#""n":[1]"#),
            LINE.replace(r#""n":-12"#, r#""n\u0041":1"#),
            LINE.replace(r#""x":"tab"#, r#""x":"\u00e9tab"#),
            LINE.replace(r#""x":"tab\t"#, "\"x\":\"tab\t"),
            LINE.replace("\"time\":", "\"tim\":"),
            LINE.replace("2023-11-14T22", "2023-13-14T22"),
            LINE.replace("\"trace_id\":\"0af7", "\"trace_id\":\"zaf7"),
            LINE.replace("\"body\":\"GET /a 200\",", ""),
            LINE.replace("\"trace_id\":\"0af7651916cd43dd8448eb211c80319c\",", ""),
            LINE.replace("\"event_name\":\"meshaudit.http\"", "\"event_name\":7"),
            format!("{LINE}x"),
            format!("{LINE}}}"),
            LINE.trim_end_matches('}').to_string(),
            "{}".into(),
            "[]".into(),
            r#"{"resourceLogs":[]}"#.into(),
        ];
        for line in &cases {
            let general = general(line);
            if let Some(f) = fast(line) {
                assert_eq!(Ok(vec![f]), general, "{line}");
            }
            let mut reader = LineReader::default();
            assert_eq!(
                reader.read(line, "o").map(<[Record]>::to_vec),
                general,
                "{line}"
            );
        }
        // Those the general way reads differently from the filter's form, but reads.
        assert!(fast(&cases[0]).is_none());
        assert!(general(&cases[0]).is_ok());
        assert!(fast(&cases[10]).is_none());
        assert!(fast(&cases[15]).is_some(), "no body is an empty body");
        assert!(fast(&cases[4]).is_some(), "0 is an integer");
    }

    #[test]
    fn a_reused_record_holds_only_the_last_line() {
        let mut reader = LineReader::default();
        let long = LINE.replace(r#""x":"#, r#""y":["p","q","r"],"z":"#);
        let short = LINE.replace(r#","l":["a","b\"c"],"e":[]"#, "");
        // The same keys as LINE, one repeated: its last value counts.
        let repeated = LINE.replace(r#""n":-12"#, r#""x":"first""#);
        // The same keys, a list no longer empty (inside the canonical form now), and back.
        let filled = LINE.replace(r#""e":[]"#, r#""e":["x"]"#);
        let emptied = LINE.replace(r#""l":["a","b\"c"]"#, r#""l":[]"#);
        assert!(filled != LINE && emptied != LINE);
        let mut cache = record::ShapeCache::default();
        let mut positions =
            record::KeyPositions::new(["x", "l", "n", "y", "absent", "meshaudit.sequence"]);
        let lines = [
            LINE, &long, &short, LINE, &repeated, &short, &long, &repeated,
        ];
        for line in lines
            .into_iter()
            .chain([LINE, &filled, &filled, &emptied, LINE, LINE])
        {
            let got = reader.read(line, "f:1").map(<[Record]>::to_vec);
            let (mut shaped, mut fresh) = (Vec::new(), Vec::new());
            let kept = reader.read(line, "f:1").unwrap()[0].clone();
            kept.canonical_with(&mut shaped, &mut cache);
            kept.canonical(&mut fresh);
            assert_eq!(shaped, fresh, "{line}");
            let want = record::from_json_line(line, "f:1");
            assert_eq!(got, want, "{line}");
            // Lookups through the reader's index find what a search of the record finds.
            let (got, want) = (got.unwrap(), want.unwrap());
            for (key, _) in &want[0].attributes {
                assert_eq!(got[0].get(key), want[0].get(key), "{key} in {line}");
            }
            assert_eq!(got[0].get("absent"), None);
            // Positions found once per build read what a lookup reads, for kept records and
            // for records without an index alike.
            let kept = reader.read(line, "f:1").unwrap()[0].clone();
            let keys = ["x", "l", "n", "y", "absent", "meshaudit.sequence"];
            for r in [&kept, &want[0]] {
                assert_eq!(positions.values(r), keys.map(|k| r.get(k)), "{line}");
            }
        }
        assert_eq!(
            reader.read(&repeated, "f").unwrap()[0].str("x"),
            Some("tab\there\\")
        );
        // A line the general way takes, then the fast way again.
        let spaced = LINE.replace(r#""n":-12"#, r#""n": -12"#);
        for line in [LINE, &spaced, LINE, "", LINE] {
            let got = reader.read(line, "f:2").map(<[Record]>::to_vec);
            assert_eq!(got, record::from_json_line(line, "f:2"), "{line}");
        }
    }
}
