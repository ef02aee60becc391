//! Trace context from request headers: W3C `traceparent`, then B3 (single `b3` header or the
//! `x-b3-traceid` / `x-b3-spanid` pair). An all-zero or malformed id is no id.

use crate::hex;

/// Trace and span id of the request, as far as its headers say.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: Option<[u8; 16]>,
    pub span_id: Option<[u8; 8]>,
}

/// The headers trace context is read from, already looked up by the caller.
#[derive(Debug, Default, Clone, Copy)]
pub struct TraceHeaders<'a> {
    pub traceparent: Option<&'a [u8]>,
    pub b3: Option<&'a [u8]>,
    pub b3_trace_id: Option<&'a [u8]>,
    pub b3_span_id: Option<&'a [u8]>,
}

impl TraceContext {
    pub fn from_headers(h: &TraceHeaders<'_>) -> TraceContext {
        if let Some(tc) = h.traceparent.and_then(parse_traceparent) {
            return tc;
        }
        if let Some(tc) = h.b3.and_then(parse_b3_single) {
            return tc;
        }
        match (
            h.b3_trace_id.and_then(b3_trace_id),
            h.b3_span_id.and_then(hex_id::<8>),
        ) {
            (Some(t), s) => TraceContext {
                trace_id: Some(t),
                span_id: s,
            },
            _ => TraceContext::default(),
        }
    }
}

/// `version-traceid-parentid-flags`, e.g. `00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01`.
fn parse_traceparent(v: &[u8]) -> Option<TraceContext> {
    let mut parts = v.trim_ascii().split(|&b| b == b'-');
    let version = parts.next()?;
    if version.len() != 2 || version == b"ff" {
        return None;
    }
    let trace_id = hex_id::<16>(parts.next()?)?;
    let span_id = hex_id::<8>(parts.next()?)?;
    let flags = parts.next()?;
    if flags.len() != 2 || (version == b"00" && parts.next().is_some()) {
        return None;
    }
    Some(TraceContext {
        trace_id: Some(trace_id),
        span_id: Some(span_id),
    })
}

/// `traceid-spanid[-sampled[-parentspanid]]`; a lone sampling decision (`0`, `1`, `d`) has no ids.
fn parse_b3_single(v: &[u8]) -> Option<TraceContext> {
    let mut parts = v.trim_ascii().split(|&b| b == b'-');
    let trace_id = b3_trace_id(parts.next()?)?;
    let span_id = hex_id::<8>(parts.next()?)?;
    Some(TraceContext {
        trace_id: Some(trace_id),
        span_id: Some(span_id),
    })
}

/// B3 trace ids are 64 or 128 bits; a 64-bit id is left-padded with zeros.
fn b3_trace_id(v: &[u8]) -> Option<[u8; 16]> {
    let v = v.trim_ascii();
    if v.len() == 16 {
        let low = hex_id::<8>(v)?;
        let mut id = [0u8; 16];
        id.get_mut(8..)?.copy_from_slice(&low);
        Some(id)
    } else {
        hex_id::<16>(v)
    }
}

/// Exactly `2*N` hex digits, not all zero.
fn hex_id<const N: usize>(v: &[u8]) -> Option<[u8; N]> {
    if v.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(v.chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        *byte = (hex::digit(*hi)? << 4) | hex::digit(*lo)?;
    }
    if out.iter().all(|&b| b == 0) {
        None
    } else {
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const TRACE: [u8; 16] = [
        0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31,
        0x9c,
    ];
    const SPAN: [u8; 8] = [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31];

    fn tp(v: &str) -> TraceContext {
        TraceContext::from_headers(&TraceHeaders {
            traceparent: Some(v.as_bytes()),
            ..Default::default()
        })
    }

    #[test]
    fn traceparent() {
        let tc = tp("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        assert_eq!(tc.trace_id, Some(TRACE));
        assert_eq!(tc.span_id, Some(SPAN));
    }

    #[test]
    fn traceparent_near_misses() {
        for bad in [
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "",
            "garbage",
        ] {
            assert_eq!(tp(bad), TraceContext::default(), "{bad}");
        }
    }

    #[test]
    fn b3_single_and_multi() {
        let single = TraceContext::from_headers(&TraceHeaders {
            b3: Some(b"0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1"),
            ..Default::default()
        });
        assert_eq!(
            single,
            TraceContext {
                trace_id: Some(TRACE),
                span_id: Some(SPAN)
            }
        );
        let multi = TraceContext::from_headers(&TraceHeaders {
            b3_trace_id: Some(b"8448eb211c80319c"),
            b3_span_id: Some(b"b7ad6b7169203331"),
            ..Default::default()
        });
        let mut short = [0u8; 16];
        short[8..].copy_from_slice(&TRACE[8..]);
        assert_eq!(
            multi,
            TraceContext {
                trace_id: Some(short),
                span_id: Some(SPAN)
            }
        );
        let sampling_only = TraceContext::from_headers(&TraceHeaders {
            b3: Some(b"1"),
            ..Default::default()
        });
        assert_eq!(sampling_only, TraceContext::default());
    }

    #[test]
    fn traceparent_wins_over_b3() {
        let tc = TraceContext::from_headers(&TraceHeaders {
            traceparent: Some(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            b3_trace_id: Some(b"1111111111111111"),
            ..Default::default()
        });
        assert_eq!(tc.trace_id, Some(TRACE));
    }
}
