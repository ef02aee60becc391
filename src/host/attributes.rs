//! Per-request attributes in one host call: the CEL lists of `capture::snapshot`, compiled once
//! per worker with Envoy's `expr_create` and evaluated per request with `expr_evaluate`. Where
//! the host has no CEL (or evaluation keeps failing), attributes are read one by one.

use log::{info, warn};

use super::abi::{self, EnvoyHost};
use crate::capture::snapshot::{self, Guards, List, Snapshot};

/// Consecutive failed evaluations of the guarded list after which the worker reads attributes
/// one by one.
const GIVE_UP_AFTER: u32 = 8;
/// Requests that go straight to the guarded list after the cheaper one failed: where local
/// replies come in a run (a flood of 404s, an outage), the cheaper list is not tried (and
/// failed) for each of them.
const STAY_GUARDED_FOR: u32 = 64;

pub struct AttributeReader {
    /// What the lists hold (the jwt_authn payload test with `identity.jwt`).
    list: List,
    /// The compiled lists' tokens, while usable: the list guarding only what ordinary requests
    /// lack, and the fully guarded one.
    cheap: Option<Vec<u8>>,
    guarded: Option<Vec<u8>>,
    /// Requests left that skip the cheap list.
    stay_guarded: u32,
    failures: u32,
}

fn compile(guards: Guards, list: List) -> Option<Vec<u8>> {
    abi::foreign("expr_create", snapshot::expression(guards, list).as_bytes())
}

fn evaluate(token: &[u8], list: List) -> Option<Snapshot<'static, EnvoyHost>> {
    abi::foreign("expr_evaluate", token).and_then(|bytes| Snapshot::decode(bytes, list, &EnvoyHost))
}

impl AttributeReader {
    pub fn new(list: List) -> AttributeReader {
        let guarded = compile(Guards::All, list);
        let cheap = guarded
            .as_ref()
            .and_then(|_| compile(Guards::OftenAbsent, list));
        match guarded {
            Some(_) => info!("meshaudit: request attributes: one host call per request (CEL)"),
            None => warn!("meshaudit: the host cannot evaluate CEL (expr_create); reading request attributes one by one"),
        }
        AttributeReader {
            list,
            cheap,
            guarded,
            stay_guarded: 0,
            failures: 0,
        }
    }

    /// This request's attributes from one evaluation (two where the cheap list fails); `None`:
    /// read them from the host one by one.
    pub fn read(&mut self) -> Option<Snapshot<'static, EnvoyHost>> {
        if self.stay_guarded > 0 {
            self.stay_guarded -= 1;
        } else if let Some(token) = &self.cheap {
            if let Some(snap) = evaluate(token, self.list) {
                return Some(snap);
            }
            self.stay_guarded = STAY_GUARDED_FOR;
        }
        let snap = evaluate(self.guarded.as_ref()?, self.list);
        if snap.is_some() {
            self.failures = 0;
        } else {
            self.failures += 1;
            if self.failures >= GIVE_UP_AFTER {
                warn!("meshaudit: evaluating the request attribute list failed {GIVE_UP_AFTER} times in a row; reading request attributes one by one");
                self.release();
            }
        }
        snap
    }

    fn release(&mut self) {
        for token in [self.cheap.take(), self.guarded.take()]
            .into_iter()
            .flatten()
        {
            let _ = abi::foreign("expr_delete", &token);
        }
    }
}

impl Drop for AttributeReader {
    fn drop(&mut self) {
        self.release();
    }
}
