//! Envoy's response flags (`response.flags`, a bit vector) as its access log names them: a
//! helper the HTTP and the TCP capture share.

/// Envoy's response flag bits, in bit order, with their access-log short names.
const RESPONSE_FLAGS: [&str; 30] = [
    "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE", "DC",
    "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO", "DR",
    "UDO",
];

/// The flags the access decision reads (`capture::decision`), by their bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// `NR`
    NoRouteFound = 8,
    /// `RL`
    RateLimited = 11,
    /// `UAEX`
    UnauthorizedExternalService = 12,
    /// `RLSE`
    RateLimitServiceError = 13,
}

impl Flag {
    /// Whether this flag is set in `bits`.
    pub fn is_in(self, bits: i64) -> bool {
        bits & (1i64 << (self as u32)) != 0
    }
}

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
        for flag in [
            Flag::NoRouteFound,
            Flag::RateLimited,
            Flag::UnauthorizedExternalService,
            Flag::RateLimitServiceError,
        ] {
            let name = match flag {
                Flag::NoRouteFound => "NR",
                Flag::RateLimited => "RL",
                Flag::UnauthorizedExternalService => "UAEX",
                Flag::RateLimitServiceError => "RLSE",
            };
            assert_eq!(response_flags(1 << (flag as u32)), name);
            assert!(flag.is_in(1 << (flag as u32) | 1));
            assert!(!flag.is_in(1));
        }
    }
}
