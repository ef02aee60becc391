//! `meshaudit report` on weeks of generated traffic (tests/support/weeks.rs): every planted
//! anomaly is found and nothing else, a quiet week flags nothing, the sections' numbers add
//! up to what was generated, the trail verifies, and a tampered trail says so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use meshaudit::integrity::keys::{public_pem, Signer};
use serde_json::Value;
use support::weeks::{self, Week};

fn dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "meshaudit-report-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The trail of `week` written, the report run on it: (the report's folder, the exit status).
fn report(week: Week, tamper: bool) -> (PathBuf, Output, weeks::Trail) {
    let d = dir();
    let signer = Signer::from_seed(&[4; 32]);
    let trail = weeks::generate(week, &signer);
    let mut lines = trail.lines.clone();
    if tamper {
        // One stored event says another status: what an editor of the store might do.
        lines = lines.replacen(
            "\"http.response.status_code\":403",
            "\"http.response.status_code\":200",
            1,
        );
    }
    std::fs::write(d.join("trail.jsonl"), &lines).unwrap();
    std::fs::write(d.join("key.pub"), public_pem(&signer.public())).unwrap();
    let out = d.join("report");
    let output = Command::new(env!("CARGO_BIN_EXE_meshaudit"))
        .args([
            "report",
            "--from",
            "2026-11-02",
            "--to",
            "2026-11-09",
            "--hours",
            "08:00-18:00",
        ])
        .args(["--privileged", "/admin/**", "--public-key"])
        .arg(d.join("key.pub"))
        .arg("--out")
        .arg(&out)
        .arg(d.join("trail.jsonl"))
        .output()
        .unwrap();
    (out, output, trail)
}

fn section(dir: &Path, id: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{id}.json"))).unwrap()).unwrap()
}

fn flags(dir: &Path) -> BTreeSet<(String, String, String, String)> {
    section(dir, "unusual")["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_string();
            (s("rule"), s("when"), s("identity"), s("service"))
        })
        .collect()
}

fn sum(rows: &Value, column: &str) -> u64 {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r[column].as_u64().unwrap())
        .sum()
}

#[test]
fn every_planted_anomaly_is_found_and_nothing_else() {
    let (out, run, _) = report(Week::Planted, false);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let w = |u: &str| format!("workload:{u}");
    let user = |u: &str| format!("end_user:{u}");
    let mut want: BTreeSet<(String, String, String, String)> = [
        ("new_pair", "2026-11-03", w(weeks::CATALOG), "shop/payments"),
        ("volume_spike", "2026-11-04", w(weeks::FRONTEND), ""),
        ("denial_spike", "2026-11-05", w(weeks::ORDERS), ""),
        ("off_hours", "2026-11-06", user("bob"), "shop/orders"),
        ("many_services", "period", user("dave"), ""),
    ]
    .into_iter()
    .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c, d.to_string()))
    .collect();
    for s in ["catalog", "payments", "admin", "inventory", "reports"] {
        want.insert((
            "new_pair".into(),
            "2026-11-07".into(),
            user("dave"),
            format!("shop/{s}"),
        ));
    }
    assert_eq!(flags(&out), want);
    // Every flag carries the numbers behind it.
    for r in section(&out, "unusual")["rows"].as_array().unwrap() {
        assert!(r["observed"].as_f64().unwrap() > 0.0, "{r}");
        assert!(!r["explanation"].as_str().unwrap().is_empty());
    }
}

#[test]
fn a_quiet_week_flags_nothing_and_the_numbers_add_up() {
    let (out, run, trail) = report(Week::Quiet, false);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(flags(&out), BTreeSet::new());
    let access = section(&out, "access");
    assert_eq!(sum(&access["rows"], "requests"), trail.period_requests);
    assert_eq!(sum(&access["rows"], "denied"), trail.period_denied);
    let denied = section(&out, "denied");
    assert_eq!(sum(&denied["rows"], "denied"), trail.period_denied);
    assert!(denied["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["reason"] == "jwt"));
    // Ids in paths are templates, never raw.
    let routes: BTreeSet<&str> = access["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["route"].as_str().unwrap())
        .collect();
    assert!(
        routes.contains("/orders/{n}") && routes.contains("/items/{n}"),
        "{routes:?}"
    );
    assert!(
        routes
            .iter()
            .all(|r| !r.chars().any(|c| c.is_ascii_digit())),
        "{routes:?}"
    );
    // Health checks come without certificate or token.
    let anon = section(&out, "unauthenticated");
    assert_eq!(anon["rows"][0]["route"], "/healthz");
    // The default rule redacted every user's token, and the report counts it, never the value.
    let redaction = section(&out, "redaction");
    assert_eq!(
        redaction["rows"][0]["events"].as_u64(),
        Some(trail.period_redacted)
    );
    let everything = std::fs::read_to_string(out.join("index.html")).unwrap()
        + &std::fs::read_to_string(out.join("access.csv")).unwrap();
    assert!(!everything.contains("s3cr3t"));
    // Root's admin calls, and only those, are privileged access.
    let privileged = section(&out, "privileged");
    let callers: BTreeSet<&str> = privileged["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["caller"].as_str().unwrap())
        .collect();
    assert_eq!(callers, BTreeSet::from(["root-admin"]));
    // One stream per service, verified clean with the key.
    let c = section(&out, "completeness");
    assert_eq!(
        c["rows"].as_array().unwrap().len(),
        weeks::SERVICES.len() - 2
    );
    assert_eq!(c["summary"]["verify"], "clean");
    for id in [
        "access",
        "unauthenticated",
        "denied",
        "privileged",
        "unusual",
        "completeness",
        "redaction",
    ] {
        let csv = std::fs::read_to_string(out.join(format!("{id}.csv"))).unwrap();
        assert_eq!(
            csv.lines().count(),
            section(&out, id)["rows"].as_array().unwrap().len() + 1,
            "{id}"
        );
    }
}

#[test]
fn a_tampered_trail_is_reported_and_exits_one() {
    let (out, run, _) = report(Week::Planted, true);
    assert_eq!(
        run.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let verdict = section(&out, "completeness")["summary"]["verify"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(verdict.contains("modified 1"), "{verdict}");
    assert!(String::from_utf8_lossy(&run.stdout).contains("NOT clean"));
}

#[test]
fn bad_options_name_the_flag_and_exit_two() {
    for (args, says) in [
        (
            vec!["report", "--from", "yesterday", "--to", "2026-11-09"],
            "--from",
        ),
        (vec!["report", "--from", "2026-11-02"], "--from and --to"),
        (vec!["report", "--hours", "9-5"], "--hours"),
        (vec!["report", "--privileged", "admin/**"], "--privileged"),
        (
            vec!["report", "/nonexistent/trail.jsonl"],
            "/nonexistent/trail.jsonl",
        ),
    ] {
        let run = Command::new(env!("CARGO_BIN_EXE_meshaudit"))
            .args(&args)
            .arg("--out")
            .arg(dir().join("r"))
            .output()
            .unwrap();
        assert_eq!(run.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
