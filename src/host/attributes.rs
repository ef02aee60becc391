//! Per-request attributes in one host call: the CEL list of `capture::snapshot`, compiled once
//! per worker with Envoy's `expr_create` and evaluated per request with `expr_evaluate`. Where
//! the host has no CEL (or evaluation keeps failing), attributes are read one by one.

use log::{info, warn};

use super::abi::{self, EnvoyHost};
use crate::capture::snapshot::{self, Snapshot};

/// Consecutive failed evaluations after which the worker reads attributes one by one.
const GIVE_UP_AFTER: u32 = 8;

pub struct AttributeReader {
    /// The compiled expression's token, while it is usable.
    token: Option<Vec<u8>>,
    failures: u32,
}

impl AttributeReader {
    pub fn new() -> AttributeReader {
        let token = abi::foreign("expr_create", snapshot::expression().as_bytes());
        match token {
            Some(_) => info!("meshaudit: request attributes: one host call per request (CEL)"),
            None => warn!("meshaudit: the host cannot evaluate CEL (expr_create); reading request attributes one by one"),
        }
        AttributeReader { token, failures: 0 }
    }

    /// This request's attributes from one evaluation; `None`: read them from the host one by one.
    pub fn read(&mut self) -> Option<Snapshot<'static, EnvoyHost>> {
        let token = self.token.as_ref()?;
        let snap = abi::foreign("expr_evaluate", token)
            .and_then(|bytes| Snapshot::decode(bytes, &EnvoyHost));
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
        if let Some(token) = self.token.take() {
            let _ = abi::foreign("expr_delete", &token);
        }
    }
}

impl Drop for AttributeReader {
    fn drop(&mut self) {
        self.release();
    }
}
