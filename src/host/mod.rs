//! The host layer: the only code that talks to proxy-wasm, glue only. Each context reads from
//! Envoy, calls the worker ([`crate::worker::Worker`], shared through `shared`) and carries out
//! what it returns; the worker decides. The root context configures the worker, owns the clock
//! and the tick; the HTTP context hands one event per request to the worker in `on_log`; the
//! TCP context follows its connection. Exports are dispatched only from root callbacks
//! (`on_tick`), since an HTTP context's pending calls die with it.

mod abi;
mod attributes;
mod http;
mod metrics;
mod root;
mod shared;
mod tcp;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| Box::new(root::AuditRoot::new(context_id)));
}}
