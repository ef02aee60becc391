//! The few host calls whose SDK wrappers can panic on an unexpected status or on non-UTF-8
//! data, reimplemented to return `None` instead. A panic would kill the VM in every worker.

use crate::capture::Host;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
}

const STATUS_OK: u32 = 0;

/// Header maps (proxy-wasm `MapType`).
#[derive(Clone, Copy)]
#[repr(u32)]
pub enum MapType {
    Request = 0,
    Response = 2,
    CallResponse = 6,
    CallResponseTrailers = 7,
}

/// Buffers (proxy-wasm `BufferType`).
#[derive(Clone, Copy)]
#[repr(u32)]
pub enum BufferType {
    HttpRequestBody = 0,
    HttpResponseBody = 1,
    HttpCallResponseBody = 4,
    PluginConfiguration = 7,
}

/// Takes ownership of memory the host allocated through the SDK's `proxy_on_memory_allocate`.
fn owned(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // SAFETY: the host wrote `size` bytes into a block of exactly `size` bytes that it
    // obtained from this module's allocator, and hands its ownership to us.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// An attribute (`proxy_get_property`); `None` for absent values and for every host error.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    let mut serialized = Vec::with_capacity(path.iter().map(|p| p.len() + 1).sum());
    for part in path {
        serialized.extend_from_slice(part.as_bytes());
        serialized.push(0);
    }
    serialized.pop();
    let mut data = std::ptr::null_mut();
    let mut size = 0;
    // SAFETY: pointers are valid for the call; the host writes only through the out-pointers.
    let status =
        unsafe { proxy_get_property(serialized.as_ptr(), serialized.len(), &mut data, &mut size) };
    if status == STATUS_OK {
        owned(data, size)
    } else {
        None
    }
}

/// A whole header map, serialized (decode with `capture::decode::map`); empty on any error.
pub fn header_map(map: MapType) -> Vec<u8> {
    let mut data = std::ptr::null_mut();
    let mut size = 0;
    // SAFETY: as above.
    let status = unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
    if status == STATUS_OK {
        owned(data, size).unwrap_or_default()
    } else {
        Vec::new()
    }
}

/// Bytes of a host buffer.
pub fn buffer(buffer: BufferType, start: usize, max_size: usize) -> Option<Vec<u8>> {
    let mut data = std::ptr::null_mut();
    let mut size = 0;
    // SAFETY: as above.
    let status =
        unsafe { proxy_get_buffer_bytes(buffer as u32, start, max_size, &mut data, &mut size) };
    if status == STATUS_OK {
        owned(data, size)
    } else {
        None
    }
}

/// The host's wall clock in nanoseconds since the Unix epoch (0 if it will not say).
pub fn now_unix_nano() -> u64 {
    let mut t = 0u64;
    // SAFETY: as above.
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut t) };
    if status == STATUS_OK {
        t
    } else {
        0
    }
}

/// Makes the following host calls of this callback act for context `context_id` (proxy-wasm's
/// effective context); `false` if the host refuses (the context is gone). The SDK's wrapper
/// panics on statuses it does not expect.
pub fn set_effective_context(context_id: u32) -> bool {
    // SAFETY: no pointers are passed.
    unsafe { proxy_set_effective_context(context_id) == STATUS_OK }
}

/// Calls one of the host's foreign functions; `None` on any error status. (The SDK's wrapper
/// panics on statuses it does not expect.)
pub fn foreign(name: &str, argument: &[u8]) -> Option<Vec<u8>> {
    let mut data = std::ptr::null_mut();
    let mut size = 0;
    // SAFETY: as above.
    let status = unsafe {
        proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            argument.as_ptr(),
            argument.len(),
            &mut data,
            &mut size,
        )
    };
    if status == STATUS_OK {
        owned(data, size)
    } else {
        None
    }
}

/// The host's attributes, for the capture code.
pub struct EnvoyHost;

impl Host for EnvoyHost {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        property(path)
    }
}
