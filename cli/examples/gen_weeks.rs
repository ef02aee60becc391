//! Four weeks of a small mesh's traffic as a signed JSON-lines trail on stdout (the generator of
//! cli/tests/report.rs): `gen-weeks quiet|planted PUBLIC_KEY_OUT`. The public key to verify with
//! is written to PUBLIC_KEY_OUT (PEM). Used by tests/e2e/test_report.py to load the same trail
//! into ClickHouse.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/weeks.rs"]
mod weeks;

use std::io::Write;

use meshaudit::integrity::keys::{public_pem, Signer};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let week = match args.first().map(String::as_str) {
        Some("quiet") => weeks::Week::Quiet,
        Some("planted") => weeks::Week::Planted,
        _ => {
            eprintln!("usage: gen-weeks quiet|planted PUBLIC_KEY_OUT");
            std::process::exit(2);
        }
    };
    let signer = Signer::from_seed(&[4; 32]);
    if let Some(path) = args.get(1) {
        std::fs::write(path, public_pem(&signer.public())).unwrap();
    }
    let trail = weeks::generate(week, &signer);
    std::io::stdout()
        .lock()
        .write_all(trail.lines.as_bytes())
        .unwrap();
}
