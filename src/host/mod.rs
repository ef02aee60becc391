//! The host layer: the only code that talks to proxy-wasm. The root context owns a worker's
//! pipeline and its clock; the HTTP context builds one event per request in `on_log` and hands
//! it to the root's pipeline. Exports are dispatched only from root callbacks (`on_tick`), since
//! an HTTP context's pending calls die with it.

mod abi;
mod attributes;
mod http;
mod metrics;
mod root;
mod tcp;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| Box::new(root::AuditRoot::new(context_id)));
}}
