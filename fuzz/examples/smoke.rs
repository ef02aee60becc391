//! The fuzz targets' bodies as a bounded randomized run on a stable toolchain, for machines
//! without nightly (which `cargo fuzz` needs for its sanitizers and coverage):
//!
//! ```sh
//! cargo run --release --no-default-features --manifest-path fuzz/Cargo.toml --example smoke -- 60 [TARGET...]
//! ```
//!
//! For each target (`config`, `redact`, `parsers`, `json_walker`, `trail_line`; or only those named after
//! the seconds), for the given seconds (default 60): every seed in
//! `fuzz/seeds/TARGET/` and every input in `fuzz/corpus/TARGET/`, then random mutations of them
//! (bit flips, byte edits, splices, tokens of `fuzz/dict/TARGET.dict`) from a fixed-seed PRNG,
//! so a run is reproducible. No coverage feedback: this finds less than libFuzzer, but runs the
//! same assertions. An input that panics is written to `fuzz/artifacts/TARGET/` and the run
//! fails. Set `SMOKE_SEED` to vary the PRNG.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

type Body = fn(&[u8]);

const TARGETS: [(&str, Body); 5] = [
    ("config", meshaudit_fuzz::config),
    ("redact", meshaudit_fuzz::redact),
    ("parsers", meshaudit_fuzz::parsers),
    ("json_walker", meshaudit_fuzz::json_walker),
    ("trail_line", meshaudit_fuzz::trail_line),
];

/// xorshift64*: small, fast, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn dir(parts: &[&str]) -> PathBuf {
    let mut p = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    p.extend(parts);
    p
}

fn read_dir(path: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = fs::read_dir(path) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    files.sort();
    files.iter().filter_map(|f| fs::read(f).ok()).collect()
}

/// The tokens of a libFuzzer dictionary: `name="value"` or `"value"` lines, with `\\`, `\"`
/// and `\xNN` escapes.
fn dictionary(path: &Path) -> Vec<Vec<u8>> {
    let Ok(text) = fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut tokens = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let (Some(open), Some(close)) = (line.find('"'), line.rfind('"')) else {
            continue;
        };
        let Some(quoted) = line.get(open + 1..close).filter(|_| close > open) else {
            continue;
        };
        let (mut out, b) = (Vec::new(), quoted.as_bytes());
        let mut i = 0;
        while let Some(&c) = b.get(i) {
            match (c, b.get(i + 1)) {
                (b'\\', Some(b'x')) => {
                    let hex = quoted.get(i + 2..i + 4).unwrap_or("");
                    out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                    i += 4;
                }
                (b'\\', Some(&n)) => {
                    out.push(n);
                    i += 2;
                }
                _ => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        tokens.push(out);
    }
    tokens
}

fn mutate(rng: &mut Rng, pool: &[Vec<u8>], dict: &[Vec<u8>]) -> Vec<u8> {
    let mut data = pool.get(rng.below(pool.len())).cloned().unwrap_or_default();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(data.len() + 1);
        match rng.below(8) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                if let Some(b) = data.get_mut(i) {
                    *b ^= 1 << rng.below(8);
                }
            }
            1 if !data.is_empty() => {
                let i = rng.below(data.len());
                if let Some(b) = data.get_mut(i) {
                    *b = rng.next() as u8;
                }
            }
            2 if !data.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(data.len());
                data.drain(at.min(end)..end);
            }
            3 => data.insert(at, rng.next() as u8),
            4 | 5 => {
                if let Some(token) = dict.get(rng.below(dict.len())) {
                    data.splice(at..at, token.iter().copied());
                }
            }
            6 => {
                if let Some(other) = pool.get(rng.below(pool.len())) {
                    let from = rng.below(other.len() + 1);
                    let to = (from + rng.below(64)).min(other.len());
                    let piece = other.get(from..to).unwrap_or_default().to_vec();
                    data.splice(at..at, piece);
                }
            }
            _ => {
                // Repeat a slice: long values, deep nesting.
                let to = (at + rng.below(8)).min(data.len());
                let piece = data.get(at..to).unwrap_or_default().to_vec();
                for _ in 0..rng.below(64) {
                    data.splice(at..at, piece.iter().copied());
                }
            }
        }
        if data.len() > 64 * 1024 {
            data.truncate(64 * 1024);
        }
    }
    data
}

fn run(name: &str, body: Body, seconds: u64, seed: u64) -> bool {
    let mut pool = read_dir(&dir(&["seeds", name]));
    pool.extend(read_dir(&dir(&["corpus", name])));
    if pool.is_empty() {
        pool.push(Vec::new());
    }
    let dict = dictionary(&dir(&["dict", &format!("{name}.dict")]));
    let mut rng = Rng(seed | 1);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut runs, seeds) = (0u64, pool.len());
    loop {
        let input = match usize::try_from(runs) {
            Ok(i) if i < seeds => pool.get(i).cloned().unwrap_or_default(),
            _ => mutate(&mut rng, &pool, &dict),
        };
        let result = panic::catch_unwind(|| body(&input));
        runs += 1;
        if result.is_err() {
            let out = dir(&["artifacts", name]);
            let file = out.join(format!("crash-smoke-{seed}-{runs}"));
            let saved = fs::create_dir_all(&out).and_then(|()| fs::write(&file, &input));
            eprintln!(
                "{name}: input {runs} panicked; input {} ({saved:?})",
                file.display()
            );
            return false;
        }
        if runs >= seeds as u64 && Instant::now() >= deadline {
            break;
        }
    }
    println!("{name}: {runs} inputs ({seeds} seeds and corpus) in {seconds} s, no panic");
    true
}

fn main() -> ExitCode {
    let seconds = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let seed = std::env::var("SMOKE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6d65_7368_6175_6474);
    let only: Vec<String> = std::env::args().skip(2).collect();
    if let Some(unknown) = only.iter().find(|n| !TARGETS.iter().any(|(t, _)| t == n)) {
        eprintln!("smoke: no target {unknown:?}");
        return ExitCode::FAILURE;
    }
    let mut ok = true;
    for (name, body) in TARGETS {
        if only.is_empty() || only.iter().any(|n| n == name) {
            ok &= run(name, body, seconds, seed);
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
