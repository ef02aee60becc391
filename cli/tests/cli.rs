//! The built `meshaudit` binary: exit codes, messages naming file and line, `--json`, stdin,
//! the witness and keygen.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use meshaudit::config::{Config, Format, Integrity, Witness};
use meshaudit::deliver::outcome::Outcome;
use meshaudit::event::{attr, AuditEvent, EventKind, Value};
use meshaudit::integrity::keys::{public_pem, Signer};
use meshaudit::pipeline::Pipeline;
use meshaudit::redact::Redactor;

fn dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "meshaudit-cli-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A signed trail of 30 HTTP events and its checkpoints as JSON lines, and the witness lines.
fn trail(signer: &Signer) -> (String, String) {
    let config = Config {
        format: Format::Json,
        max_batch_events: 7,
        integrity: Integrity {
            checkpoint_interval_ms: 1000,
            witness: Witness::Log,
            ..Integrity::default()
        },
        ..Config::default()
    };
    let redactor = Redactor::compile(&config.redaction, None).unwrap();
    let mut p = Pipeline::new(
        config,
        redactor,
        &vec![("service.name", "shop".into())],
        0xfeed,
    )
    .with_signer(Some(signer.clone()));
    let mut lines = String::new();
    let mut now = 1_700_000_000_000u64;
    for i in 0..30 {
        now += 200;
        let mut e = AuditEvent::new(EventKind::Http);
        e.start_unix_nano = now * 1_000_000 + 17;
        e.observed_unix_nano = e.start_unix_nano + 5;
        e.set(attr::HTTP_METHOD, Value::Str("GET".into()));
        e.set(attr::URL_PATH, Value::Str(format!("/orders/{i}")));
        e.set(attr::HTTP_STATUS, Value::Int(200));
        p.accept(e, now);
        if i % 5 == 4 {
            p.flush_all();
        }
        while let Some(export) = p.next_export(now) {
            lines.push_str(&String::from_utf8(export.body.clone()).unwrap());
            p.dispatched(1, export);
            p.completed(1, Outcome::Delivered { rejected: 0 }, now);
        }
    }
    let witness: String = p
        .take_fallback_lines()
        .iter()
        .map(|l| format!("[2026-01-01 00:00:00.000][1][info][wasm] {l}\n"))
        .collect();
    (lines, witness)
}

struct Setup {
    dir: PathBuf,
    trail: PathBuf,
    key: PathBuf,
    witness: PathBuf,
    lines: String,
}

fn setup() -> Setup {
    let dir = dir();
    let signer = Signer::from_seed(&[42; 32]);
    let (lines, witness) = trail(&signer);
    let s = Setup {
        trail: dir.join("trail.jsonl"),
        key: dir.join("key.pub"),
        witness: dir.join("envoy.log"),
        dir,
        lines,
    };
    std::fs::write(&s.trail, &s.lines).unwrap();
    std::fs::write(&s.key, public_pem(&signer.public())).unwrap();
    std::fs::write(&s.witness, witness).unwrap();
    s
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshaudit"))
        .args(args)
        .output()
        .unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_clean_trail_exits_0_with_a_summary() {
    let s = setup();
    let o = run(&[
        "verify",
        "--public-key",
        p(&s.key),
        "--witness",
        p(&s.witness),
        p(&s.trail),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("stream 000000000000feed:"), "{out}");
    assert!(out.contains("verdict: clean"), "{out}");
    assert!(!out.contains("VIOLATION"), "{out}");
}

#[test]
fn a_modified_event_exits_1_naming_stream_sequence_file_and_line() {
    let s = setup();
    let tampered = s.lines.replacen("/orders/12\"", "/orders/99\"", 1);
    assert_ne!(tampered, s.lines);
    let line = tampered
        .lines()
        .position(|l| l.contains("/orders/99"))
        .unwrap()
        + 1;
    let path = s.dir.join("tampered.jsonl");
    std::fs::write(&path, &tampered).unwrap();
    let o = run(&["verify", "--public-key", p(&s.key), p(&path)]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("VIOLATION modified: stream 000000000000feed sequence "),
        "{out}"
    );
    assert!(out.contains(&format!("({}:{line})", p(&path))), "{out}");
    assert!(out.contains("verdict: 1 violations"), "{out}");

    let o = run(&["verify", "--json", "--public-key", p(&s.key), p(&path)]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["clean"], false);
    assert_eq!(v["violations"].as_array().unwrap().len(), 1);
    assert_eq!(v["violations"][0]["kind"], "modified");
    assert_eq!(v["violations"][0]["stream_id"], "000000000000feed");
    assert_eq!(
        v["violations"][0]["origin"],
        format!("{}:{line}", p(&path)).as_str()
    );
    assert!(v["streams"][0]["checkpoints_valid"].as_u64().unwrap() >= 5);
}

#[test]
fn bad_input_exits_2_naming_file_and_line() {
    let s = setup();
    let mut text: Vec<&str> = s.lines.lines().collect();
    text.insert(2, "{not json");
    let path = s.dir.join("broken.jsonl");
    std::fs::write(&path, text.join("\n")).unwrap();
    let o = run(&["verify", p(&path)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("{}:3: not JSON", p(&path))),
        "{}",
        stderr(&o)
    );
    let o = run(&["verify", p(&s.dir.join("absent.jsonl"))]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("absent.jsonl"), "{}", stderr(&o));
    let o = run(&["verify", "--public-key", p(&s.trail), p(&s.trail)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("trail.jsonl: "), "{}", stderr(&o));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["verify", "--frobnicate"][..],
        &["launch"],
        &["verify", "--window"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).starts_with("meshaudit: "), "{}", stderr(&o));
    }
    let o = run(&["help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("meshaudit verify"));
}

#[test]
fn stdin_is_read_and_without_keys_signed_checkpoints_are_unknown_keys() {
    let s = setup();
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshaudit"))
        .args(["verify", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(s.lines.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let kinds: Vec<&str> = v["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["kind"].as_str().unwrap())
        .collect();
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| *k == "unknown_key"),
        "{kinds:?}"
    );
}

#[test]
fn a_truncated_tail_and_a_missing_stream_are_found_by_the_witness() {
    let s = setup();
    let lines: Vec<&str> = s.lines.lines().collect();
    let cut = s.dir.join("cut.jsonl");
    std::fs::write(&cut, lines[..lines.len() - 3].join("\n")).unwrap();
    let o = run(&[
        "verify",
        "--json",
        "--public-key",
        p(&s.key),
        "--witness",
        p(&s.witness),
        p(&cut),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["violations"][0]["kind"], "truncated", "{v}");
    let empty = s.dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let o = run(&[
        "verify",
        "--public-key",
        p(&s.key),
        "--witness",
        p(&s.witness),
        p(&empty),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("VIOLATION missing_stream: stream 000000000000feed"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn keygen_writes_a_key_pair_that_verify_reads() {
    let d = dir();
    let prefix = d.join("k");
    let o = run(&["keygen", "--out", p(&prefix)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("kubectl -n NAMESPACE create secret generic meshaudit-signing"),
        "{out}"
    );
    assert!(out.contains("valueFrom: HOST"), "{out}");
    let private = std::fs::read(d.join("k.key")).unwrap();
    let signer = Signer::parse(&private).unwrap();
    assert!(out.contains(signer.key_id()), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("k.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "private key readable by its owner only");
    }
    let o = run(&["keygen", "--out", p(&prefix)]);
    assert_eq!(o.status.code(), Some(2), "never overwrites a key");
    // The filter reads the same private key format.
    let (lines, _) = trail(&signer);
    let path = d.join("t.jsonl");
    std::fs::write(&path, lines).unwrap();
    let o = run(&["verify", "--public-key", p(&d.join("k.pub")), p(&path)]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}
