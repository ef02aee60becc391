//! A benchmark probe, not part of meshaudit: an HTTP filter in the same Wasm runtime as
//! meshaudit. Its configuration string is the mode:
//!
//! - `noop`: does nothing (what running any Wasm HTTP filter costs);
//! - `hostcalls`: makes, per request, the host calls meshaudit makes when it builds an event
//!   (the same attributes and both header maps, read in `on_log` and thrown away);
//! - `cel`: reads the same attributes the way meshaudit does, as one CEL list evaluated with
//!   Envoy's `expr_evaluate` (compiled once with `expr_create`), plus both header maps;
//! - `profile`: times each of those host calls (`REPEAT` times per request, with the host's
//!   clock) and every `REPORT_EVERY` requests logs one line at warning level:
//!   `meshaudit-probe-profile requests=N clock_ns=C request.protocol=NS ...` (mean ns per call,
//!   the clock's own cost already subtracted), including `cel_list`, one evaluation of the list.
//!
//! Loaded as an access logger (`envoy.access_loggers.wasm`) it does the same in the root
//! context's `on_log`. Comparing Envoy with no filter, with this probe, and with meshaudit splits
//! meshaudit's cost per request into: running Wasm at all, the host calls, and meshaudit's own
//! work.

use std::cell::RefCell;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { mode: Mode::Noop }) });
}}

/// The attributes meshaudit reads per request, the same list as the filter's own.
#[path = "../../../../src/capture/request_attributes.rs"]
mod request_attributes;

/// Every property read per request: meshaudit's list.
fn properties() -> impl Iterator<Item = &'static [&'static str]> {
    request_attributes::PATHS.iter().copied()
}

fn property_count() -> usize {
    request_attributes::PATHS.len()
}

const MAPS: [(MapType, &str); 2] = [
    (MapType::HttpRequestHeaders, "request_headers"),
    (MapType::HttpResponseHeaders, "response_headers"),
];
const REPEAT: u32 = 20;
const REPORT_EVERY: u64 = 1000;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Noop,
    HostCalls,
    Cel,
    Profile,
}

thread_local! {
    static CEL_TOKEN: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

fn cel_eval() -> usize {
    CEL_TOKEN.with(|t| {
        let t = t.borrow();
        let Some(token) = t.as_ref() else { return 0 };
        hostcalls::call_foreign_function("expr_evaluate", Some(token))
            .ok()
            .flatten()
            .map_or(0, |v| v.len())
    })
}

fn read_maps() -> usize {
    let mut bytes = 0;
    for (map, _) in MAPS {
        if let Ok(pairs) = hostcalls::get_map_bytes(map) {
            bytes += pairs.len();
        }
    }
    bytes
}

struct Totals {
    requests: u64,
    clock_ns: u64,
    /// per PROPERTIES entry, then per MAPS entry: total ns over REPEAT calls per request
    ns: Vec<u64>,
}

thread_local! {
    static TOTALS: RefCell<Totals> = RefCell::new(Totals {
        requests: 0,
        clock_ns: 0,
        ns: vec![0; property_count() + MAPS.len() + 1],
    });
}

struct Root {
    mode: Mode,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let conf = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let has = |word: &[u8]| conf.windows(word.len()).any(|w| w == word);
        self.mode = if has(b"profile") {
            Mode::Profile
        } else if has(b"hostcalls") {
            Mode::HostCalls
        } else if has(b"cel") {
            Mode::Cel
        } else {
            Mode::Noop
        };
        if matches!(self.mode, Mode::Cel | Mode::Profile) {
            let token = hostcalls::call_foreign_function("expr_create", Some(request_attributes::expression(request_attributes::Guards::OftenAbsent, request_attributes::List::default()).as_bytes()))
                .ok()
                .flatten();
            if token.is_none() {
                let _ = hostcalls::log(LogLevel::Error, "meshaudit-probe: expr_create failed");
                return false;
            }
            CEL_TOKEN.with(|t| *t.borrow_mut() = token);
        }
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe { mode: self.mode }))
    }

    /// Loaded as an access logger: the same work, once per finished request.
    fn on_log(&mut self) {
        log_request(self.mode);
    }
}

struct Probe {
    mode: Mode,
}

impl Context for Probe {}

fn now_ns() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn read_all() -> usize {
    let mut bytes = 0usize;
    for path in properties() {
        if let Ok(Some(v)) = hostcalls::get_property(path.to_vec()) {
            bytes += v.len();
        }
    }
    bytes + read_maps()
}

fn profile() {
    let mut sample = vec![0u64; property_count() + MAPS.len() + 1];
    let c0 = now_ns();
    let c1 = now_ns();
    let clock = c1.saturating_sub(c0);
    for (i, path) in properties().enumerate() {
        let t0 = now_ns();
        for _ in 0..REPEAT {
            std::hint::black_box(hostcalls::get_property(path.to_vec()).ok());
        }
        sample[i] = now_ns().saturating_sub(t0).saturating_sub(clock);
    }
    for (j, (map, _)) in MAPS.iter().enumerate() {
        let t0 = now_ns();
        for _ in 0..REPEAT {
            std::hint::black_box(hostcalls::get_map_bytes(*map).ok());
        }
        sample[property_count() + j] = now_ns().saturating_sub(t0).saturating_sub(clock);
    }
    let t0 = now_ns();
    for _ in 0..REPEAT {
        std::hint::black_box(cel_eval());
    }
    sample[property_count() + MAPS.len()] = now_ns().saturating_sub(t0).saturating_sub(clock);
    TOTALS.with(|t| {
        let mut t = t.borrow_mut();
        t.requests += 1;
        t.clock_ns += clock;
        for (acc, s) in t.ns.iter_mut().zip(sample) {
            *acc += s;
        }
        if t.requests % REPORT_EVERY == 0 {
            let calls = (t.requests * u64::from(REPEAT)) as f64;
            let mut line = format!(
                "meshaudit-probe-profile requests={} clock_ns={:.0}",
                t.requests,
                t.clock_ns as f64 / t.requests as f64
            );
            for (i, path) in properties().enumerate() {
                line.push_str(&format!(
                    " {}={:.0}",
                    path.join("."),
                    t.ns[i] as f64 / calls
                ));
            }
            for (j, (_, name)) in MAPS.iter().enumerate() {
                line.push_str(&format!(
                    " {}={:.0}",
                    name,
                    t.ns[property_count() + j] as f64 / calls
                ));
            }
            line.push_str(&format!(
                " cel_list={:.0}",
                t.ns[property_count() + MAPS.len()] as f64 / calls
            ));
            let _ = hostcalls::log(LogLevel::Warn, &line);
        }
    });
}

impl HttpContext for Probe {
    fn on_log(&mut self) {
        log_request(self.mode);
    }
}

fn log_request(mode: Mode) {
    match mode {
        Mode::Noop => {}
        Mode::HostCalls => {
            std::hint::black_box(read_all());
        }
        Mode::Cel => {
            std::hint::black_box(cel_eval() + read_maps());
        }
        Mode::Profile => profile(),
    }
}
