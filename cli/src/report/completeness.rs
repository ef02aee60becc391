//! Trail completeness and integrity: the period's streams, the losses they reported, and what
//! `meshaudit verify` found in the same trail.

use std::collections::BTreeMap;

use meshaudit::integrity::verify::Report;

use super::cube::Cube;
use super::period::time_name;
use super::table::{Cell, Section};

pub fn completeness(cube: &Cube, verify: &Report) -> Section {
    let events: u64 = cube.streams.values().map(|s| s.events).sum();
    let lost: u64 = cube.streams.values().map(|s| s.lost).sum();
    let gaps: u64 = cube.streams.values().map(|s| s.gaps).sum();
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    for v in &verify.violations {
        *kinds.entry(v.kind.name()).or_default() += 1;
    }
    let verdict = if verify.is_clean() {
        "clean".to_string()
    } else {
        let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        format!(
            "{} violations: {}",
            verify.violations.len(),
            list.join(", ")
        )
    };
    let unsealed: u64 = verify.streams.iter().map(|s| s.unsealed_tail).sum();
    let signed = if verify.keyed {
        "checkpoint signatures checked against the given public keys"
    } else {
        "no public key given (--public-key): a signed checkpoint counts as signed by an unknown key, and an unkeyed chain can be recomputed by whoever can write the store"
    };
    Section {
        id: "completeness",
        title: "Trail completeness and integrity",
        criteria: "CC7.2, CC4.1",
        about: "The event streams with events in the period (one per proxy worker and configuration), the events each holds there, the losses it reported in gap events (how many and why), and the result of meshaudit verify on the whole trail read (every stream's chain and checkpoints; docs/integrity.md).".into(),
        summary: vec![
            ("streams".into(), cube.streams.len().to_string()),
            ("events".into(), events.to_string()),
            ("gap events".into(), gaps.to_string()),
            ("events reported lost".into(), lost.to_string()),
            ("verify".into(), verdict),
            ("events after the last checkpoint (unsealed)".into(), unsealed.to_string()),
            ("signatures".into(), signed.into()),
        ],
        columns: vec!["stream", "service", "first_event", "last_event", "events", "gap_events", "lost", "loss_reasons"],
        rows: cube
            .streams
            .iter()
            .map(|(id, s)| {
                let reasons: Vec<String> =
                    s.reasons.iter().map(|(r, n)| format!("{r}:{n}")).collect();
                vec![
                    id.as_str().into(),
                    s.service.as_str().into(),
                    time_name(s.first_ns).into(),
                    time_name(s.last_ns).into(),
                    Cell::Int(s.events),
                    Cell::Int(s.gaps),
                    Cell::Int(s.lost),
                    reasons.join(" ").into(),
                ]
            })
            .collect(),
        chart: None,
        extra: Some(crate::output::json_value(verify)),
    }
}
