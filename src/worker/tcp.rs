//! TCP connections (the network filter): their open, close and interim events. A connection's
//! state is shared with its stream context, which counts its bytes and sees it close.

use std::cell::RefCell;
use std::rc::Rc;

use super::Worker;
use crate::capture::tcp::{Phase, TcpConnection};
use crate::capture::Host;

impl Worker {
    /// A network-filter context is created: HTTP-only settings are said to be ignored (once).
    pub fn stream_context_created(&mut self) {
        if self.warned.http_only {
            return;
        }
        if let Some(field) = self.config().http_only_field() {
            self.say(super::Level::Error, format!(
                "meshaudit: invalid configuration for a network filter: {field}: is HTTP-only and is ignored here; set \"mode\": \"tcp\" to have such configurations refused at load"
            ));
        }
        self.warned.http_only = true;
    }

    /// Connection `context_id` opened: it is followed for interim events, and with
    /// `emit_on_open` an open event is recorded. At open the TLS handshake has not happened:
    /// addresses and SNI only; the TLS facts are read once the client's data comes through (or
    /// at close).
    pub fn connection_opened(
        &mut self,
        context_id: u32,
        conn: &Rc<RefCell<TcpConnection>>,
        host: &dyn Host,
        now_unix_nano: u64,
    ) {
        self.open.insert(context_id, conn.clone());
        if !self.config().emit_on_open {
            return;
        }
        let Ok(mut c) = conn.try_borrow_mut() else {
            return;
        };
        let event = c.event(Phase::Open, Some(host), now_unix_nano);
        drop(c);
        self.pipeline.accept(event, now_unix_nano / 1_000_000);
    }

    /// Records one event of connection `context_id` (`close` at most once; after it the
    /// connection is no longer followed).
    pub fn connection_event(
        &mut self,
        context_id: u32,
        conn: &RefCell<TcpConnection>,
        phase: Phase,
        host: &dyn Host,
        now_unix_nano: u64,
    ) {
        let Ok(mut c) = conn.try_borrow_mut() else {
            return;
        };
        if c.is_closed() {
            return;
        }
        let event = c.event(phase, Some(host), now_unix_nano);
        drop(c);
        if phase == Phase::Close {
            self.open.remove(&context_id);
        }
        self.pipeline.accept(event, now_unix_nano / 1_000_000);
        self.log_fallback();
    }

    /// Interim events for connections open longer than `interim_interval_ms` since their last
    /// event. Each is read in its connection's own context: `enter(context_id)` makes the
    /// host's calls act for that connection (`false` if it cannot: the event then carries what
    /// was read before), so that the event carries what Envoy has at that moment (upstream,
    /// flags...). Returns whether any context was entered (the host then returns to its own).
    pub fn interim_events(
        &mut self,
        now_unix_nano: u64,
        host: &dyn Host,
        mut enter: impl FnMut(u32) -> bool,
    ) -> bool {
        let interval = self.config().interim_interval_ms;
        if interval == 0 || self.open.is_empty() {
            return false;
        }
        let mut events = Vec::new();
        let mut entered = false;
        for (&context_id, conn) in &self.open {
            if let Ok(mut c) = conn.try_borrow_mut() {
                if c.interim_due(now_unix_nano, interval) {
                    let own = enter(context_id);
                    entered |= own;
                    events.push(c.event(Phase::Interim, own.then_some(host), now_unix_nano));
                }
            }
        }
        for e in events {
            self.pipeline.accept(e, now_unix_nano / 1_000_000);
        }
        entered
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{said, worker};
    use super::*;
    use crate::capture::fake::RecordedHost;
    use crate::capture::tcp::{Ender, Side};
    use crate::event::attr;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const SECOND: u64 = 1_000_000_000;

    fn connection() -> Rc<RefCell<TcpConnection>> {
        Rc::new(RefCell::new(TcpConnection::new(0)))
    }

    /// The phases of the connection events held, in order (the drain's checkpoint is not one).
    fn phases(w: &mut Worker) -> Vec<String> {
        w.start_drain(0);
        let mut phases = Vec::new();
        while let Some(call) = w.next_call(0) {
            for e in crate::encode::otlp::decode_records(&crate::encode::otlp::records_of(
                &call.export.body,
            )) {
                if e.kind != crate::event::EventKind::Checkpoint {
                    phases.push(e.get_str(attr::TCP_PHASE).unwrap_or("").to_string());
                }
            }
            w.call_sent(call, Ok(1), 0);
        }
        phases
    }

    #[test]
    fn open_and_close_events_and_close_only_once() {
        let host = RecordedHost::default().with("source.address", "10.0.0.1:5000");
        let mut w = worker(r#"{"mode": "tcp", "emit_on_open": true}"#);
        let c = connection();
        w.connection_opened(3, &c, &host, SECOND);
        c.borrow_mut().on_close(Side::Downstream, Ender::Peer);
        w.connection_event(3, &c, Phase::Close, &host, 2 * SECOND);
        w.connection_event(3, &c, Phase::Close, &host, 3 * SECOND);
        assert!(w.open.is_empty(), "no longer followed");
        assert_eq!(phases(&mut w), ["open", "close"]);
        let mut quiet = worker(r#"{"mode": "tcp"}"#);
        quiet.connection_opened(3, &connection(), &host, SECOND);
        assert!(phases(&mut quiet).is_empty(), "no open event unless asked");
    }

    #[test]
    fn interim_events_are_read_in_each_due_connection_s_context() {
        let host = RecordedHost::default();
        let mut w = worker(r#"{"mode": "tcp", "interim_interval_ms": 1000}"#);
        let (a, b) = (connection(), connection());
        w.connection_opened(1, &a, &host, 0);
        w.connection_opened(2, &b, &host, 0);
        let mut entered = Vec::new();
        assert!(!w.interim_events(SECOND / 2, &host, |id| {
            entered.push(id);
            true
        }));
        assert!(entered.is_empty(), "none due yet");
        assert!(w.interim_events(SECOND, &host, |id| {
            entered.push(id);
            id == 1
        }));
        entered.sort_unstable();
        assert_eq!(entered, [1, 2]);
        assert_eq!(phases(&mut w), ["interim", "interim"]);
        let mut w = worker(r#"{"mode": "tcp", "interim_interval_ms": 1000}"#);
        w.connection_opened(1, &connection(), &host, 0);
        assert!(
            !w.interim_events(5 * SECOND, &host, |_| false),
            "no context entered"
        );
        assert_eq!(
            phases(&mut w),
            ["interim"],
            "read from what was read before"
        );
        let mut off = worker(r#"{"mode": "tcp", "interim_interval_ms": 0}"#);
        off.connection_opened(1, &connection(), &host, 0);
        assert!(!off.interim_events(100 * SECOND, &host, |_| unreachable!()));
    }

    #[test]
    fn http_only_settings_on_a_network_filter_are_said_once() {
        let mut w =
            worker(r#"{"body_capture": [{"match": {"path_prefix": "/"}, "request": true}]}"#);
        w.stream_context_created();
        w.stream_context_created();
        let logs = said(&mut w);
        assert_eq!(logs.len(), 1);
        assert!(logs[0]
            .contains("invalid configuration for a network filter: body_capture: is HTTP-only"));
        let mut fine = worker(r#"{"mode": "tcp"}"#);
        fine.stream_context_created();
        assert!(said(&mut fine).is_empty());
    }
}
