//! What a worker's root, HTTP and TCP contexts share: the core [`Worker`] and the host's
//! attribute reader, behind one cell, reached through one helper that also writes the lines
//! the worker said to Envoy's log.

use std::cell::RefCell;
use std::rc::Rc;

use log::{error, info, warn};

use super::attributes::AttributeReader;
use crate::worker::{Level, Log, Worker};

/// One configured worker as the host holds it.
pub struct Slot {
    pub worker: Worker,
    /// Reads each request's attributes in one host call where the host can.
    pub attributes: AttributeReader,
}

/// The slot, shared by a root context and the contexts it creates; empty until configured.
#[derive(Clone, Default)]
pub struct Shared(Rc<RefCell<Option<Slot>>>);

/// Writes the worker's lines to Envoy's log.
pub fn write_logs(logs: Vec<Log>) {
    for Log { level, message } in logs {
        match level {
            Level::Info => info!("{message}"),
            Level::Warn => warn!("{message}"),
            Level::Error => error!("{message}"),
        }
    }
}

impl Shared {
    /// Runs `f` on the slot, then writes what the worker said; `None` when there is no worker
    /// (not configured) or it is in use.
    pub fn with<R>(&self, f: impl FnOnce(&mut Slot) -> R) -> Option<R> {
        let mut guard = self.0.try_borrow_mut().ok()?;
        let slot = guard.as_mut()?;
        let result = f(slot);
        write_logs(slot.worker.take_logs());
        Some(result)
    }

    /// Runs `f` on the worker (see [`Shared::with`]).
    pub fn with_worker<R>(&self, f: impl FnOnce(&mut Worker) -> R) -> Option<R> {
        self.with(|slot| f(&mut slot.worker))
    }

    /// Puts a newly configured worker in place of the last; `false` if the slot is in use.
    pub fn install(&self, slot: Slot) -> bool {
        match self.0.try_borrow_mut() {
            Ok(mut current) => {
                *current = Some(slot);
                true
            }
            Err(_) => false,
        }
    }
}
