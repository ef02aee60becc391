//! The report, for people (default) or machines (`--json`), and the progress line.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};

use meshaudit::integrity::verify::Report;

/// Events read so far, on stderr when it is a terminal.
pub struct Progress {
    doing: &'static str,
    tty: bool,
    events: u64,
}

impl Progress {
    pub fn new(doing: &'static str) -> Progress {
        Progress {
            doing,
            tty: std::io::stderr().is_terminal(),
            events: 0,
        }
    }

    pub fn add(&mut self, n: u64) {
        let before = self.events / 100_000;
        self.events += n;
        if self.tty && self.events / 100_000 != before {
            let _ = write!(
                std::io::stderr(),
                "\r{}: {} events read",
                self.doing,
                self.events
            );
        }
    }

    pub fn done(&self) {
        if self.tty && self.events >= 100_000 {
            let _ = writeln!(std::io::stderr());
        }
    }
}

pub fn human(r: &Report) -> String {
    let mut s = String::new();
    for st in &r.streams {
        let _ = writeln!(
            s,
            "stream {}: {} events, {} verified; checkpoints {} valid of {}{}; {} gap events reporting {} lost; {} duplicates; {} unanchored after a reported loss; unsealed tail {}",
            st.stream_id,
            st.events,
            st.verified,
            st.checkpoints_valid,
            st.checkpoints,
            if st.checkpoints_unsigned > 0 {
                format!(" ({} unsigned)", st.checkpoints_unsigned)
            } else {
                String::new()
            },
            st.gaps,
            st.lost,
            st.duplicates,
            st.unanchored,
            st.unsealed_tail,
        );
        if st.late_unchecked > 0 {
            let _ = writeln!(
                s,
                "  {} copies arrived after the window and were not compared",
                st.late_unchecked
            );
        }
    }
    for v in &r.violations {
        let seq = if v.first_seq == v.last_seq {
            format!("sequence {}", v.first_seq)
        } else {
            format!("sequences {}..={}", v.first_seq, v.last_seq)
        };
        let at = v
            .origin
            .as_ref()
            .map(|o| format!(" ({o})"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "VIOLATION {}: stream {} {seq}: {}{at}",
            v.kind.name(),
            v.stream_id,
            v.detail
        );
    }
    if r.skipped > 0 {
        let _ = writeln!(
            s,
            "{} records without a meshaudit stream and sequence were skipped",
            r.skipped
        );
    }
    if r.streams.iter().any(|s| s.checkpoints_unsigned > 0) {
        s.push_str("note: unsigned checkpoints (no signing key, or no --public-key given): the chain shows changes and losses, but whoever can rewrite the store can also recompute the chain. Sign checkpoints (integrity.signing_key_env) and verify with --public-key.\n");
    }
    if r.streams.iter().any(|s| s.unsealed_tail > 0) {
        s.push_str("note: events after a stream's last checkpoint are unsealed: removing them is not detectable without a witness (--witness).\n");
    }
    let _ = writeln!(
        s,
        "{}",
        if r.is_clean() {
            "verdict: clean".to_string()
        } else {
            format!("verdict: {} violations", r.violations.len())
        }
    );
    s
}

/// The report as a JSON document (`--json`; the report's completeness section embeds it).
pub fn json_value(r: &Report) -> serde_json::Value {
    let streams: Vec<serde_json::Value> = r
        .streams
        .iter()
        .map(|s| {
            serde_json::json!({
                "stream_id": s.stream_id,
                "events": s.events,
                "verified": s.verified,
                "checkpoints": s.checkpoints,
                "checkpoints_valid": s.checkpoints_valid,
                "checkpoints_unsigned": s.checkpoints_unsigned,
                "gaps": s.gaps,
                "lost": s.lost,
                "duplicates": s.duplicates,
                "unanchored": s.unanchored,
                "unsealed_tail": s.unsealed_tail,
                "late_unchecked": s.late_unchecked,
                "last_sequence": s.last_sequence,
            })
        })
        .collect();
    let violations: Vec<serde_json::Value> = r
        .violations
        .iter()
        .map(|v| {
            serde_json::json!({
                "kind": v.kind.name(),
                "stream_id": v.stream_id,
                "first_sequence": v.first_seq,
                "last_sequence": v.last_seq,
                "detail": v.detail,
                "origin": v.origin,
            })
        })
        .collect();
    serde_json::json!({
        "clean": r.is_clean(),
        "streams": streams,
        "violations": violations,
        "skipped": r.skipped,
        "keyed": r.keyed,
    })
}

pub fn json(r: &Report) -> String {
    format!("{}\n", json_value(r))
}

pub fn keygen_help(private: &str, public: &str, key_id: &str) -> String {
    format!(
        "\
wrote {private} (private, mode 0600) and {public}; key id {key_id}

1. The private key into a Secret in the workload's namespace:
  kubectl -n NAMESPACE create secret generic meshaudit-signing --from-file=key={private}

2. Into the sidecar's environment: Istio merges a container named istio-proxy in the pod
   template into the one it injects:
  spec:
    template:
      spec:
        containers:
        - name: istio-proxy
          image: auto
          env:
          - name: MESHAUDIT_SIGNING_KEY
            valueFrom:
              secretKeyRef: {{name: meshaudit-signing, key: key}}

3. From the sidecar to the filter (WasmPlugin):
  vmConfig:
    env:
    - name: MESHAUDIT_SIGNING_KEY
      valueFrom: HOST

Give {public} to the auditor:  meshaudit verify --public-key {public} TRAIL...
Delete {private} once it is in the Secret.
"
    )
}
