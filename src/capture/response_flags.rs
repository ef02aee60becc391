//! Envoy's response flags (`response.flags`, a bit vector) as its access log names them: a
//! helper the HTTP and the TCP capture share.

/// Envoy's response flag bits, in bit order, with their access-log short names.
const RESPONSE_FLAGS: [&str; 30] = [
    "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE", "DC",
    "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO", "DR",
    "UDO",
];

/// The bit vector of `response.flags` as Envoy's access log writes it: `UF,URX`.
pub fn response_flags(bits: i64) -> String {
    let mut names: Vec<String> = Vec::new();
    for bit in 0..64u32 {
        if bits & (1i64 << bit) != 0 {
            match RESPONSE_FLAGS.get(bit as usize) {
                Some(name) => names.push((*name).to_string()),
                None => names.push(format!("bit{bit}")),
            }
        }
    }
    names.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn flags_are_named_as_envoys_access_log_names_them() {
        assert_eq!(response_flags(1 << 5 | 1 << 15), "UF,URX");
        assert_eq!(response_flags(1 << 40), "bit40");
        assert_eq!(response_flags(0), "");
    }
}
