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
use super::shared::Shared;
use crate::capture::decode;
use crate::capture::tcp::{Ender, Phase, Side, TcpConnection};

pub struct AuditTcp {
    shared: Shared,
    context_id: u32,
    conn: Rc<RefCell<TcpConnection>>,
}

impl AuditTcp {
    pub fn new(shared: Shared, context_id: u32) -> AuditTcp {
        let conn = Rc::new(RefCell::new(TcpConnection::new(abi::now_unix_nano())));
        AuditTcp {
            shared,
            context_id,
            conn,
        }
    }

    /// Records one event of this connection (`close` at most once).
    fn emit(&self, phase: Phase) {
        self.shared.with_worker(|w| {
            let now = abi::now_unix_nano();
            w.connection_event(self.context_id, &self.conn, phase, &EnvoyHost, now);
        });
    }

    /// Runs `f` on this connection's state (unless it is in use).
    fn with_conn(&self, f: impl FnOnce(&mut TcpConnection)) {
        if let Ok(mut c) = self.conn.try_borrow_mut() {
            f(&mut c);
        }
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
        self.with_conn(|c| c.set_id(id));
        self.shared.with_worker(|w| {
            let now = abi::now_unix_nano();
            w.connection_opened(self.context_id, &self.conn, &EnvoyHost, now);
        });
        Action::Continue
    }

    /// `end_of_stream` here is the client's FIN: the client closed its side first.
    fn on_downstream_data(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.with_conn(|c| c.on_downstream_data(size, end_of_stream, &EnvoyHost));
        Action::Continue
    }

    fn on_upstream_data(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.with_conn(|c| c.on_upstream_data(size, end_of_stream));
        Action::Continue
    }

    fn on_downstream_close(&mut self, peer: PeerType) {
        let by = if peer == PeerType::Remote {
            Ender::Peer
        } else {
            Ender::Proxy
        };
        self.with_conn(|c| c.on_close(Side::Downstream, by));
        self.emit(Phase::Close);
    }

    /// Envoy reports the upstream's end of stream as a close of unknown kind: the upstream
    /// closed; a local close is Envoy's.
    fn on_upstream_close(&mut self, peer: PeerType) {
        let by = if peer == PeerType::Local {
            Ender::Proxy
        } else {
            Ender::Peer
        };
        self.with_conn(|c| c.on_close(Side::Upstream, by));
    }
}
