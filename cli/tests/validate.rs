//! `meshaudit validate` and `meshaudit schema`, run as the built binary: every shipped
//! manifest, Envoy configuration and documented example validates; a broken copy of each fails
//! naming the field and the line; the committed schema is the one the types give.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshaudit"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The shipped files that hold a meshaudit plugin configuration.
fn shipped() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["istio", "envoy"] {
        for e in std::fs::read_dir(repo().join(dir)).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_none_or(|x| x != "yaml") {
                continue;
            }
            let held = std::fs::read_to_string(&path).unwrap();
            let holds = |l: &str| l.contains("pluginConfig:") || l.contains("root_id: meshaudit");
            if held
                .lines()
                .any(|l| !l.trim_start().starts_with('#') && holds(l))
            {
                files.push(path);
            }
        }
    }
    files.push(repo().join("istio/kustomize/base/wasmplugin.yaml"));
    files.push(repo().join("examples/audit-policy/audit-policy.json"));
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    files
}

/// The JSON examples of the docs that are whole plugin configurations.
fn doc_examples(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for doc in [
        "README.md",
        "docs/configuration.md",
        "docs/redaction.md",
        "docs/tcp.md",
    ] {
        let md = std::fs::read_to_string(repo().join(doc)).unwrap();
        for (i, block) in md.split("```json\n").skip(1).enumerate() {
            let body = block.split("```").next().unwrap();
            if body.trim_start().starts_with('{') {
                let path = dir.join(format!("{}-{i}.json", doc.replace('/', "-")));
                std::fs::write(&path, body).unwrap();
                out.push(path);
            }
        }
    }
    out
}

fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("meshaudit-validate-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn every_shipped_configuration_and_documented_example_validates() {
    let dir = scratch();
    let mut files = shipped();
    let examples = doc_examples(&dir);
    assert!(!examples.is_empty());
    files.extend(examples);
    let args: Vec<&str> = std::iter::once("validate")
        .chain(files.iter().map(|p| p.to_str().unwrap()))
        .collect();
    let o = run(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let summary = String::from_utf8_lossy(&o.stderr);
    assert!(summary.contains("0 file(s) invalid"), "{summary}");
    // The hash key is needed (rules hash), and said so, never guessed.
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("warning: redaction.hash_key_env: needs variable \"MESHAUDIT_HASH_KEY\""),
        "{}",
        text(&o)
    );
}

/// One way to break a file: `insert` a line before the first line that mentions `before`
/// (with its indentation; JSON with a comma), or `replace` text; the field the error names.
struct Break {
    before: &'static [&'static str],
    yaml: &'static str,
    json: &'static str,
    field: &'static str,
}

const BREAKS: &[Break] = &[
    // An unknown field.
    Break {
        before: &["collector:", "\"collector\":", "\"audit\":"],
        yaml: "colour: blue",
        json: "\"colour\": \"blue\",",
        field: "colour",
    },
    // An impossible value.
    Break {
        before: &["collector:", "\"collector\":", "\"audit\":"],
        yaml: "max_batch_events: 0",
        json: "\"max_batch_events\": 0,",
        field: "max_batch_events",
    },
    // A bad redaction rule.
    Break {
        before: &["collector:", "\"collector\":", "\"audit\":"],
        yaml: "redaction: {rules: [{name: r, headers: [x-a], action: scramble}]}",
        json: "\"redaction\": {\"rules\": [{\"name\": \"r\", \"headers\": [\"x-a\"], \"action\": \"scramble\"}]},",
        field: "redaction.rules[0].action",
    },
];

fn broken(original: &str, b: &Break) -> Option<(String, usize)> {
    let lines: Vec<&str> = original.lines().collect();
    let at = lines
        .iter()
        .position(|l| b.before.iter().any(|k| l.trim_start().starts_with(k)))?;
    let line = lines[at];
    let indent = &line[..line.len() - line.trim_start().len()];
    let json = line.trim_start().starts_with('"');
    // A key already there (a redaction section): replace nothing, this break does not apply.
    let key = if json { b.json } else { b.yaml };
    let name = key
        .trim_start_matches('"')
        .split(['"', ':'])
        .next()
        .unwrap();
    let exists = lines.iter().any(|l| {
        let t = l.trim_start();
        t.starts_with(&format!("{name}:")) || t.starts_with(&format!("\"{name}\":"))
    });
    if exists {
        return None;
    }
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    out.insert(at, format!("{indent}{key}"));
    Some((out.join("\n") + "\n", at + 1))
}

#[test]
fn a_broken_copy_of_each_fails_naming_field_and_line() {
    let dir = scratch();
    let mut files = shipped();
    files.extend(doc_examples(&dir));
    let mut per_break = [0; 3];
    for file in &files {
        let original = std::fs::read_to_string(file).unwrap();
        let mut applied = 0;
        for (i, b) in BREAKS.iter().enumerate() {
            let Some((text_broken, line)) = broken(&original, b) else {
                continue;
            };
            applied += 1;
            per_break[i] += 1;
            let name = file.file_name().unwrap().to_str().unwrap();
            let copy = dir.join(format!("broken-{i}-{name}"));
            std::fs::write(&copy, &text_broken).unwrap();
            let o = run(&["validate", copy.to_str().unwrap()]);
            assert_eq!(o.status.code(), Some(1), "{name} {}: {}", b.field, text(&o));
            let out = String::from_utf8_lossy(&o.stdout);
            let want = format!("{}:{line}: {}: ", copy.display(), b.field);
            assert!(
                out.contains(&want),
                "{name}: want {want:?} in\n{}",
                text(&o)
            );
        }
        assert!(applied >= 1, "{}: no break applied", file.display());
    }
    assert!(per_break.iter().all(|n| *n >= 5), "{per_break:?}");
}

#[test]
fn istio_numbers_arrive_as_doubles_and_unreadable_input_exits_2() {
    let dir = scratch();
    // 2.5 stays a fraction (refused); 1e3 is a whole double (accepted, as Envoy would).
    let plugin = |config: &str| {
        format!(
            "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {{name: m}}\n\
             spec:\n  url: oci://r/meshaudit:1\n  pluginConfig:\n{config}"
        )
    };
    let ok = dir.join("ok.yaml");
    std::fs::write(
        &ok,
        plugin("    max_batch_events: 1e3\n    emit_on_open: no\n"),
    )
    .unwrap();
    let o = run(&["validate", ok.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, plugin("    mode: tcp\n    max_batch_events: 2.5\n")).unwrap();
    let o = run(&["validate", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("bad.yaml:8: max_batch_events: "),
        "{}",
        text(&o)
    );
    // Not there, not YAML, nothing of meshaudit's: 2.
    let broken_yaml = dir.join("broken.yaml");
    std::fs::write(&broken_yaml, "a: [b\n").unwrap();
    for path in [dir.join("missing.json"), broken_yaml] {
        let o = run(&["validate", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    }
    let o = run(&[
        "validate",
        repo()
            .join("istio/collector-serviceentry.yaml")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // --env checks a value: a hash key too short is refused.
    let hashing = dir.join("hash.json");
    std::fs::write(&hashing, r#"{"redaction": {"hash_key_env": "VALIDATE_TEST_KEY", "rules": [{"name": "r", "headers": ["x-a"], "action": "hash"}]}}"#).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_meshaudit"))
        .args([
            "validate",
            "--env",
            "VALIDATE_TEST_KEY",
            hashing.to_str().unwrap(),
        ])
        .env("VALIDATE_TEST_KEY", "short")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(":1: redaction.hash_key_env: "),
        "{}",
        text(&o)
    );
}

#[test]
fn the_committed_schema_is_the_one_the_types_give() {
    let o = run(&["schema"]);
    assert_eq!(o.status.code(), Some(0));
    let committed = std::fs::read_to_string(repo().join("docs/plugin-config.schema.json")).unwrap();
    assert!(
        committed == String::from_utf8_lossy(&o.stdout),
        "docs/plugin-config.schema.json is stale: run `cargo run -p meshaudit-cli -- schema > docs/plugin-config.schema.json`"
    );
    let schema: serde_json::Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(schema["properties"]["max_batch_events"]["type"], "integer");
    assert_eq!(schema["properties"]["max_batch_events"]["minimum"], 1);
    assert_eq!(schema["additionalProperties"], false);
    // The wrapper that points a WasmPlugin's pluginConfig at it.
    let wrapper: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("docs/wasmplugin.schema.json")).unwrap(),
    )
    .unwrap();
    assert!(wrapper.to_string().contains("plugin-config.schema.json"));
}
