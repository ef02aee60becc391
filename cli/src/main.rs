//! `meshaudit`: prove an audit trail (`verify`), make a checkpoint signing key (`keygen`), check
//! plugin configurations (`validate`, `schema`) and write the SOC 2 evidence (`report`).
//! Thin: arguments, readers and output; the canonical form, chain and verifier are the
//! filter's own (`meshaudit::integrity`).

mod args;
mod clickhouse;
mod input;
mod output;
mod report;
mod validate;

use std::io::Write;
use std::process::ExitCode;

use meshaudit::integrity::keys::{public_pem, Signer};
use meshaudit::integrity::verify::record::Record;
use meshaudit::integrity::verify::{Options, Verifier};

/// Exit codes: 0 clean, 1 a violation, 2 usage or input error.
const VIOLATION: u8 = 1;
const USAGE: u8 = 2;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match run(&argv) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("meshaudit: {message}");
            ExitCode::from(USAGE)
        }
    }
}

fn run(argv: &[String]) -> Result<u8, String> {
    match args::parse(argv)? {
        args::Command::Help => {
            print!("{}", args::USAGE);
            Ok(0)
        }
        args::Command::Keygen { out } => keygen(&out),
        args::Command::Verify(v) => verify(&v),
        args::Command::Validate(o) => validate::run(&o),
        args::Command::Report(o) => report::run(&o),
        args::Command::Schema => {
            print!("{}", meshaudit::config::schema_json());
            Ok(0)
        }
    }
}

fn verify(v: &args::Verify) -> Result<u8, String> {
    let mut verifier = Verifier::new(Options {
        keys: public_keys(&v.public_keys)?,
        window: v.window,
    });
    if let Some(path) = &v.witness {
        input::read_witness(path, &mut verifier)?;
    }
    let mut progress = output::Progress::new("verifying");
    let mut sink = |r: &Record| verifier.add(r);
    for path in &v.inputs {
        input::read_trail(path, &mut sink, &mut progress)?;
    }
    if let Some(url) = &v.clickhouse {
        clickhouse::read_trail(url, &v.clickhouse_table, &mut sink, &mut progress)?;
    }
    progress.done();
    let report = verifier.finish();
    let mut stdout = std::io::stdout().lock();
    let text = if v.json {
        output::json(&report)
    } else {
        output::human(&report)
    };
    stdout
        .write_all(text.as_bytes())
        .map_err(|e| format!("stdout: {e}"))?;
    Ok(if report.is_clean() { 0 } else { VIOLATION })
}

/// The trusted public keys of `--public-key` (PEM or base64 files).
pub fn public_keys(
    paths: &[String],
) -> Result<Vec<meshaudit::integrity::keys::VerifyingKey>, String> {
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
            meshaudit::integrity::keys::parse_public(&text).map_err(|e| format!("{path}: {e}"))
        })
        .collect()
}

fn keygen(out: &str) -> Result<u8, String> {
    let mut seed = [0u8; 32];
    let mut urandom =
        std::fs::File::open("/dev/urandom").map_err(|e| format!("/dev/urandom: {e}"))?;
    std::io::Read::read_exact(&mut urandom, &mut seed).map_err(|e| format!("/dev/urandom: {e}"))?;
    let signer = Signer::from_seed(&seed);
    let private = format!("{out}.key");
    let public = format!("{out}.pub");
    write_private(&private, signer.private_pem().as_bytes())?;
    std::fs::write(&public, public_pem(&signer.public())).map_err(|e| format!("{public}: {e}"))?;
    print!(
        "{}",
        output::keygen_help(&private, &public, signer.key_id())
    );
    Ok(0)
}

/// Writes a private key readable by its owner only (refuses to overwrite one).
fn write_private(path: &str, bytes: &[u8]) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path).map_err(|e| format!("{path}: {e}"))?;
    f.write_all(bytes).map_err(|e| format!("{path}: {e}"))
}
