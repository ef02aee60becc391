//! The stream (TCP) context: the same module loaded as a network filter audits connections.
//! Bytes are counted as they pass (no host call); identities are read once the client's data
//! comes through (the TLS handshake is over then) or at close; the close event is built when
//! the downstream side closes. Interim events are built by the root context, which switches to
//! the connection's context to read what Envoy has at that moment.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, StreamContext};
use proxy_wasm::types::{Action, PeerType};

use super::abi::{self, EnvoyHost};
use super::root::Worker;
use crate::capture::decode;
use crate::capture::tcp::{Ender, Phase, Side, TcpConnection};

pub struct AuditTcp {
    worker: Rc<RefCell<Option<Worker>>>,
    context_id: u32,
    conn: Rc<RefCell<TcpConnection>>,
}

impl AuditTcp {
    pub fn new(worker: Rc<RefCell<Option<Worker>>>, context_id: u32) -> AuditTcp {
        let conn = Rc::new(RefCell::new(TcpConnection::new(abi::now_unix_nano())));
        AuditTcp {
            worker,
            context_id,
            conn,
        }
    }

    /// Builds and queues one event of this connection (`close` at most once).
    fn emit(&self, phase: Phase) {
        let Ok(mut guard) = self.worker.try_borrow_mut() else {
            return;
        };
        let Some(worker) = guard.as_mut() else { return };
        let Ok(mut c) = self.conn.try_borrow_mut() else {
            return;
        };
        if c.is_closed() {
            return;
        }
        let now = abi::now_unix_nano();
        let event = c.event(phase, Some(&EnvoyHost), now);
        drop(c);
        if phase == Phase::Close {
            worker.connections_open.remove(&self.context_id);
        }
        worker.pipeline.accept(event, now / 1_000_000);
        worker.log_fallback();
    }
}

impl Context for AuditTcp {
    /// The connection is going away; if its close was not seen, record it now.
    fn on_done(&mut self) -> bool {
        self.emit(Phase::Close);
        true
    }
}

impl StreamContext for AuditTcp {
    fn on_new_connection(&mut self) -> Action {
        let id = abi::property(&["connection", "id"]).and_then(|v| decode::int64(&v));
        if let Ok(mut c) = self.conn.try_borrow_mut() {
            c.set_id(id);
        }
        let emit_on_open = {
            let Ok(mut guard) = self.worker.try_borrow_mut() else {
                return Action::Continue;
            };
            let Some(worker) = guard.as_mut() else {
                return Action::Continue;
            };
            worker
                .connections_open
                .insert(self.context_id, self.conn.clone());
            worker.pipeline.config().emit_on_open
        };
        if emit_on_open {
            // At open the TLS handshake has not happened: addresses and SNI only; the TLS facts
            // are read once the client's data comes through (or at close).
            let Ok(mut guard) = self.worker.try_borrow_mut() else {
                return Action::Continue;
            };
            let Some(worker) = guard.as_mut() else {
                return Action::Continue;
            };
            let Ok(mut c) = self.conn.try_borrow_mut() else {
                return Action::Continue;
            };
            let now = abi::now_unix_nano();
            let event = c.event(Phase::Open, Some(&EnvoyHost), now);
            drop(c);
            worker.pipeline.accept(event, now / 1_000_000);
        }
        Action::Continue
    }

    /// `end_of_stream` here is the client's FIN: the client closed its side first.
    fn on_downstream_data(&mut self, size: usize, end_of_stream: bool) -> Action {
        if let Ok(mut c) = self.conn.try_borrow_mut() {
            c.on_downstream_data(size, end_of_stream, &EnvoyHost);
        }
        Action::Continue
    }

    fn on_upstream_data(&mut self, size: usize, end_of_stream: bool) -> Action {
        if let Ok(mut c) = self.conn.try_borrow_mut() {
            c.on_upstream_data(size, end_of_stream);
        }
        Action::Continue
    }

    fn on_downstream_close(&mut self, peer: PeerType) {
        if let Ok(mut c) = self.conn.try_borrow_mut() {
            let by = if peer == PeerType::Remote {
                Ender::Peer
            } else {
                Ender::Proxy
            };
            c.on_close(Side::Downstream, by);
        }
        self.emit(Phase::Close);
    }

    /// Envoy reports the upstream's end of stream as a close of unknown kind: the upstream
    /// closed; a local close is Envoy's.
    fn on_upstream_close(&mut self, peer: PeerType) {
        if let Ok(mut c) = self.conn.try_borrow_mut() {
            let by = if peer == PeerType::Local {
                Ender::Proxy
            } else {
                Ender::Peer
            };
            c.on_close(Side::Upstream, by);
        }
    }
}
