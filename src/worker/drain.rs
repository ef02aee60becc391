//! The drain: the configuration is going away (replaced, or Envoy is stopping), and what is
//! held is sent before the worker goes, within `drain_timeout_ms`; what cannot be sent by then
//! is abandoned to the log fallback or counted as lost.

use super::{Level, Worker};
use crate::config::Fallback;

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainEnd {
    /// Everything held was sent and answered.
    Idle,
    /// Its time was up; what was still held was abandoned.
    TimedOut,
}

impl Worker {
    /// Starts the drain at `now_ms`: seals the open batch and makes every retry due. Envoy
    /// stopping tears the VM down without waiting for the drain: with the log fallback on,
    /// what is held is also written to the log now (receivers deduplicate by `log.record.uid`
    /// should the drain also deliver it).
    pub fn start_drain(&mut self, now_ms: u64) {
        self.pipeline.flush_all();
        let copied = self.pipeline.copy_held_to_fallback();
        if copied > 0 {
            self.say(
                Level::Warn,
                format!("meshaudit: draining; {copied} events still held are also written to the log fallback"),
            );
        }
        self.log_fallback();
        let timeout = u64::from(self.config().drain_timeout_ms);
        self.drain_deadline_ms = Some(now_ms.saturating_add(timeout));
    }

    /// Whether a drain is under way.
    pub fn draining(&self) -> bool {
        self.drain_deadline_ms.is_some()
    }

    /// Ends the drain if nothing is held (the first sends of a drain may have been all).
    pub fn end_drain_if_idle(&mut self) -> bool {
        let idle = self.idle();
        if idle {
            self.drain_deadline_ms = None;
        }
        idle
    }

    /// Ends the drain once nothing is left, or once its time is up; `None` while it goes on
    /// (or when there is no drain).
    pub fn finish_drain(&mut self, now_ms: u64) -> Option<DrainEnd> {
        let deadline = self.drain_deadline_ms?;
        let end = if self.idle() {
            DrainEnd::Idle
        } else if now_ms >= deadline {
            self.abandon("drain timed out");
            DrainEnd::TimedOut
        } else {
            return None;
        };
        self.drain_deadline_ms = None;
        Some(end)
    }

    /// What is still held cannot be sent: it goes to the log fallback (when on) or is counted
    /// as lost.
    fn abandon(&mut self, why: &str) {
        let events = self.pipeline.abandon();
        if events > 0 {
            let fate = if self.config().fallback == Fallback::Log {
                "written to the log fallback"
            } else {
                "lost (counted in events_dropped.drain)"
            };
            self.say(
                Level::Warn,
                format!("meshaudit: {why}; {events} events still held are {fate}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{said, worker};
    use super::*;
    use crate::deliver::outcome::Answer;
    use crate::event::{AuditEvent, EventKind};
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn holding(json: &str, events: usize) -> Worker {
        let mut w = worker(json);
        for _ in 0..events {
            w.record(AuditEvent::new(EventKind::Http));
        }
        w
    }

    /// Sends everything due, each under the next token.
    fn send_all(w: &mut Worker, now_ms: u64) -> Vec<u32> {
        let mut tokens = Vec::new();
        while let Some(call) = w.next_call(now_ms) {
            let token = 100 + tokens.len() as u32;
            assert!(w.call_sent(call, Ok(token), now_ms));
            tokens.push(token);
        }
        tokens
    }

    #[test]
    fn a_drain_sends_the_open_batch_and_ends_when_it_is_answered() {
        let mut w = holding(r#"{"max_batch_events": 100, "drain_timeout_ms": 1000}"#, 3);
        assert!(w.next_call(0).is_none(), "the batch is open");
        assert!(!w.draining());
        assert_eq!(w.finish_drain(0), None, "no drain");
        w.start_drain(0);
        assert!(w.draining());
        let tokens = send_all(&mut w, 0);
        assert_eq!(tokens.len(), 1, "sealed and sent at once");
        assert!(!w.end_drain_if_idle(), "awaiting the answer");
        assert_eq!(w.finish_drain(10), None);
        let ok = Answer {
            status: Some(200),
            ..Default::default()
        };
        w.settle(tokens[0], &ok, 20);
        assert_eq!(w.finish_drain(20), Some(DrainEnd::Idle));
        assert!(!w.draining());
        assert!(said(&mut w).is_empty());
        assert_eq!(
            w.publish().stats.events_sent,
            4,
            "3 events and the drain's checkpoint"
        );
    }

    #[test]
    fn a_drain_of_nothing_ends_at_once() {
        let mut w = holding("{}", 0);
        w.start_drain(0);
        assert!(w.end_drain_if_idle());
        assert!(!w.draining());
    }

    #[test]
    fn a_drain_that_times_out_counts_what_is_held_as_lost() {
        let mut w = holding(r#"{"max_batch_events": 100, "drain_timeout_ms": 1000}"#, 3);
        w.start_drain(5000);
        send_all(&mut w, 5000);
        assert_eq!(w.finish_drain(5999), None);
        assert_eq!(w.finish_drain(6000), Some(DrainEnd::TimedOut));
        assert_eq!(
            said(&mut w),
            ["meshaudit: drain timed out; 4 events still held are lost (counted in events_dropped.drain)"],
            "3 events and the drain's checkpoint"
        );
        let s = w.publish().stats;
        assert_eq!((s.events_dropped, s.dropped_drain), (4, 4));
        assert!(w.idle());
    }

    #[test]
    fn with_the_log_fallback_a_drain_copies_what_is_held_to_the_log_once() {
        let mut w = holding(
            r#"{"max_batch_events": 100, "drain_timeout_ms": 0, "fallback": "log"}"#,
            2,
        );
        w.start_drain(0);
        let logs = said(&mut w);
        assert_eq!(
            logs.len(),
            4,
            "2 events and the drain's checkpoint: {logs:?}"
        );
        assert_eq!(
            logs[0],
            "meshaudit: draining; 3 events still held are also written to the log fallback"
        );
        assert!(logs[3].contains(r#""event_name":"meshaudit.checkpoint""#));
        assert!(logs[1..]
            .iter()
            .all(|l| l.starts_with("meshaudit-fallback: ")));
        assert_eq!(w.finish_drain(0), Some(DrainEnd::TimedOut));
        assert_eq!(
            said(&mut w),
            ["meshaudit: drain timed out; 3 events still held are written to the log fallback"],
            "the lines already written are not written again"
        );
    }
}
