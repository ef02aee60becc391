//! The trail reduced to counts: per day, side (baseline or period), service, caller, operation
//! and decision. Every section is computed from this and nothing else, so a source that
//! aggregates elsewhere (ClickHouse's SQL) and fills the same cube gives the same report.

use std::collections::{BTreeMap, HashMap};

use super::fact::{Access, Caller};
use super::period::{Hours, Periods, Side, NS_PER_DAY};

/// One cell's coordinates.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub side: Side,
    pub day: u64,
    pub service: String,
    pub caller: Caller,
    pub method: String,
    pub route: String,
    /// Empty when allowed.
    pub reason: String,
    pub policy: String,
}

/// One cell's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub denied: u64,
    pub errors: u64,
    /// Requests outside `--hours` (0 without it).
    pub off_hours: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.denied += o.denied;
        self.errors += o.errors;
        self.off_hours += o.off_hours;
        self.first_ns = self.first_ns.min(o.first_ns);
        self.last_ns = self.last_ns.max(o.last_ns);
    }
}

/// A stream's share of the period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// The workload whose proxy wrote it.
    pub service: String,
    pub events: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub gaps: u64,
    pub lost: u64,
    /// Lost events per reason.
    pub reasons: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
pub struct Cube {
    pub cells: HashMap<Key, Counts>,
    /// Per rule or detector: times fired, events it fired in (period only).
    pub redactions: BTreeMap<String, (u64, u64)>,
    /// Per stream id, the period's events and reported gaps.
    pub streams: BTreeMap<String, StreamStats>,
}

impl Cube {
    pub fn add_access(&mut self, periods: &Periods, hours: Option<Hours>, a: Access) {
        let Some(side) = periods.side(a.time_ns) else {
            return;
        };
        if side == Side::Period {
            for (name, n) in &a.redactions {
                // Looked up by reference: a rule's name is owned once.
                if !self.redactions.contains_key(name) {
                    self.redactions.insert(name.clone(), (0, 0));
                }
                if let Some(e) = self.redactions.get_mut(name) {
                    e.0 += n;
                    e.1 += 1;
                }
            }
        }
        let counts = Counts {
            requests: 1,
            denied: u64::from(a.denied),
            errors: u64::from(a.error),
            off_hours: u64::from(hours.is_some_and(|h| h.outside(a.time_ns))),
            first_ns: a.time_ns,
            last_ns: a.time_ns,
        };
        let key = Key {
            side,
            day: a.time_ns / NS_PER_DAY,
            service: a.service,
            caller: a.caller,
            method: a.method,
            route: a.route,
            reason: a.reason,
            policy: a.policy,
        };
        self.cells
            .entry(key)
            .and_modify(|c| c.add(&counts))
            .or_insert(counts);
    }

    /// Any event of a stream in the period (`gap`: the events a gap event reports lost).
    pub fn add_stream_event(
        &mut self,
        periods: &Periods,
        stream: &str,
        workload: impl FnOnce() -> String,
        time_ns: u64,
        gap: Option<(u64, &str)>,
    ) {
        if periods.side(time_ns) != Some(Side::Period) {
            return;
        }
        // Looked up by reference: the id and the workload are owned once per stream.
        if !self.streams.contains_key(stream) {
            let first = StreamStats {
                service: workload(),
                first_ns: time_ns,
                last_ns: time_ns,
                ..StreamStats::default()
            };
            self.streams.insert(stream.to_string(), first);
        }
        let Some(s) = self.streams.get_mut(stream) else {
            return;
        };
        s.events += 1;
        s.first_ns = s.first_ns.min(time_ns);
        s.last_ns = s.last_ns.max(time_ns);
        if let Some((lost, reason)) = gap {
            s.gaps += 1;
            s.lost += lost;
            *s.reasons.entry(reason.to_string()).or_default() += lost;
        }
    }

    /// The cells of one side.
    pub fn side(&self, side: Side) -> impl Iterator<Item = (&Key, &Counts)> {
        self.cells.iter().filter(move |(k, _)| k.side == side)
    }
}
