//! Subject alternative names read from the peer's certificate.
//!
//! Envoy's `uri_san_peer_certificate` attribute holds only the first URI SAN, so we read
//! `connection.peer_certificate` (the URL-encoded PEM of the peer's certificate) and walk just
//! enough DER to reach the subjectAltName extension. This is not a validating X.509 parser: Envoy
//! has already verified the certificate, we only pick out its names.
//!
//! Decisions:
//! - Malformed percent escapes (`%` not followed by two hex digits) are kept as they are; a `%`
//!   never occurs in PEM, so such input then simply fails to parse.
//! - A certificate without a subjectAltName extension (or without any extensions) gives
//!   `Some` with empty lists; `None` means the input is not a parseable certificate, or its SAN
//!   extension is malformed.
//! - SAN entries that are empty or not UTF-8 are skipped; other kinds of name are ignored.
//!
//! Bounds: only the first [`MAX_INPUT`] bytes of any input are looked at, at most [`MAX_SANS`]
//! URIs and [`MAX_SANS`] DNS names are returned, and the DER walker follows a fixed path at most
//! six levels deep without recursion. Work is linear in the input, and nothing here panics.

/// How many bytes of any input are looked at; a leaf certificate is a few KiB.
pub const MAX_INPUT: usize = 64 * 1024;
/// The most URIs, and the most DNS names, returned for one certificate.
pub const MAX_SANS: usize = 64;

const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
const END: &[u8] = b"-----END CERTIFICATE-----";
/// The contents of the OID 2.5.29.17 (subjectAltName).
const SAN_OID: &[u8] = &[0x55, 0x1D, 0x11];

// DER tags on the path to the names.
const BOOLEAN: u8 = 0x01;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const SEQUENCE: u8 = 0x30;
/// `[3] EXPLICIT Extensions` in the `TBSCertificate`.
const EXTENSIONS: u8 = 0xA3;
/// `[2] IMPLICIT IA5String` `dNSName` in `GeneralName`.
const DNS_NAME: u8 = 0x82;
/// `[6] IMPLICIT IA5String` `uniformResourceIdentifier` in `GeneralName`.
const URI: u8 = 0x86;

/// Subject alternative names of a certificate, in certificate order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectAltNames {
    pub uris: Vec<String>,
    pub dns: Vec<String>,
}

/// Parses Envoy's URL-encoded PEM (as returned for `connection.peer_certificate`) and returns the
/// SANs of the first certificate, or None if the input is not a parseable certificate.
/// Plain PEM is accepted too (it has nothing to decode).
pub fn sans_from_url_encoded_pem(input: &[u8]) -> Option<SubjectAltNames> {
    sans_from_pem(&percent_decode(limit(input)))
}

/// Same, for plain PEM text.
pub fn sans_from_pem(pem: &[u8]) -> Option<SubjectAltNames> {
    let body = first_pem_block(limit(pem))?;
    sans_from_der(&base64_decode(body)?)
}

/// Same, for a DER-encoded X.509 certificate.
pub fn sans_from_der(der: &[u8]) -> Option<SubjectAltNames> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    let mut cert = Der(Der(limit(der)).take(SEQUENCE)?);
    let tbs = cert.take(SEQUENCE)?;
    cert.take(SEQUENCE)?;
    cert.take(BIT_STRING)?;

    // Skip version, serial, ..., subjectPublicKeyInfo, unique IDs up to `[3] Extensions`.
    let mut fields = Der(tbs);
    let extensions = loop {
        match fields.read() {
            Some((EXTENSIONS, contents)) => break contents,
            Some(_) => {}
            None if fields.0.is_empty() => return Some(SubjectAltNames::default()),
            None => return None,
        }
    };

    // Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
    let mut list = Der(Der(extensions).take(SEQUENCE)?);
    while !list.0.is_empty() {
        let mut extension = Der(list.take(SEQUENCE)?);
        if extension.take(OID)? != SAN_OID {
            continue;
        }
        let (mut tag, mut value) = extension.read()?;
        if tag == BOOLEAN {
            (tag, value) = extension.read()?;
        }
        if tag != OCTET_STRING {
            return None;
        }
        return general_names(Der(value).take(SEQUENCE)?);
    }
    Some(SubjectAltNames::default())
}

/// Collects the URIs and DNS names from the contents of a `GeneralNames` SEQUENCE.
fn general_names(contents: &[u8]) -> Option<SubjectAltNames> {
    let mut sans = SubjectAltNames::default();
    let mut names = Der(contents);
    while !names.0.is_empty() {
        let (tag, value) = names.read()?;
        let list = match tag {
            URI => &mut sans.uris,
            DNS_NAME => &mut sans.dns,
            _ => continue,
        };
        match std::str::from_utf8(value) {
            Ok(name) if !name.is_empty() && list.len() < MAX_SANS => list.push(name.to_owned()),
            _ => {}
        }
    }
    Some(sans)
}

/// A cursor over consecutive DER TLVs.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// Reads the next TLV as (tag, contents). None at the end or on anything malformed:
    /// multi-byte tags, indefinite lengths, lengths over 4 bytes or past the end of the input.
    fn read(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        if tag & 0x1F == 0x1F {
            return None;
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let count = usize::from(first & 0x7F);
            if count == 0 || count > 4 {
                return None;
            }
            let (bytes, rest) = rest.split_at_checked(count)?;
            let len = bytes.iter().try_fold(0usize, |len, &b| {
                len.checked_mul(256)?.checked_add(usize::from(b))
            })?;
            (len, rest)
        };
        let (contents, rest) = rest.split_at_checked(len)?;
        self.0 = rest;
        Some((tag, contents))
    }

    /// Reads the next TLV, which must have `tag`, and returns its contents.
    fn take(&mut self, tag: u8) -> Option<&'a [u8]> {
        self.read()
            .filter(|(t, _)| *t == tag)
            .map(|(_, contents)| contents)
    }
}

/// The first `MAX_INPUT` bytes of `bytes`.
fn limit(bytes: &[u8]) -> &[u8] {
    bytes.get(..MAX_INPUT).unwrap_or(bytes)
}

/// Decodes `%XX` escapes (either case); anything else, malformed escapes included, is copied.
fn percent_decode(input: &[u8]) -> Vec<u8> {
    percent_encoding::percent_decode(input).collect()
}

/// The text between the first BEGIN CERTIFICATE line and the END line after it.
fn first_pem_block(pem: &[u8]) -> Option<&[u8]> {
    let start = find(pem, BEGIN)?.checked_add(BEGIN.len())?;
    let after = pem.get(start..)?;
    after.get(..find(after, END)?)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Standard base64 (`+`, `/`, `=` padding), ignoring ASCII whitespace (PEM breaks lines).
/// None on any other byte or on data after padding; trailing bits are accepted.
fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    use base64::engine::{general_purpose::GeneralPurpose, DecodePaddingMode};
    use base64::Engine;
    const PEM: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    PEM.decode(compact).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    // Generated with `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes
    // -days 36500 -subj ... -addext "subjectAltName=..."` (OpenSSL 3.0).

    /// URI checkout, DNS checkout.payments.svc.cluster.local, URI legacy (in that order).
    const TWO_URIS: &str = "-----BEGIN CERTIFICATE-----
MIICQDCCAeagAwIBAgIUKFJbbwSn7lG4X4Jci8ZSimfKBR0wCgYIKoZIzj0EAwIw
KzEWMBQGA1UECgwNY2x1c3Rlci5sb2NhbDERMA8GA1UEAwwIY2hlY2tvdXQwIBcN
MjYxMTI0MTgyMjQ3WhgPMjEyNjEwMzExODIyNDdaMCsxFjAUBgNVBAoMDWNsdXN0
ZXIubG9jYWwxETAPBgNVBAMMCGNoZWNrb3V0MFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAEfbfddQ/1wXDSPGfXkUfsqe/ALO81wjejsbtSS245jk78Bq1ys6p03VOO
FNcrWVqUiSqN3oIhNw4/897G9bXnwaOB5TCB4jAdBgNVHQ4EFgQUV8xEmIRF4d5+
JEmcfsc9F7eUqD4wHwYDVR0jBBgwFoAUV8xEmIRF4d5+JEmcfsc9F7eUqD4wDwYD
VR0TAQH/BAUwAwEB/zCBjgYDVR0RBIGGMIGDhi5zcGlmZmU6Ly9jbHVzdGVyLmxv
Y2FsL25zL3BheW1lbnRzL3NhL2NoZWNrb3V0giNjaGVja291dC5wYXltZW50cy5z
dmMuY2x1c3Rlci5sb2NhbIYsc3BpZmZlOi8vY2x1c3Rlci5sb2NhbC9ucy9wYXlt
ZW50cy9zYS9sZWdhY3kwCgYIKoZIzj0EAwIDSAAwRQIhAIFVOUBOsXv1DPuNu4z5
6eLCWmizd6q8+2QstjRlsNXzAiBmvf4d36TdZV3veAOa/d349k89myinOTEx+fWW
9kaW0Q==
-----END CERTIFICATE-----
";

    /// `subjectAltName=critical,DNS:web.example.com,DNS:www.example.com`.
    const DNS_ONLY: &str = "-----BEGIN CERTIFICATE-----
MIIBvTCCAWOgAwIBAgIUN+VYhQggrWbRl7B9nSTUAgBlJWswCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPd2ViLmV4YW1wbGUuY29tMCAXDTI2MTEyNDE4MjI0N1oYDzIx
MjYxMDMxMTgyMjQ3WjAaMRgwFgYDVQQDDA93ZWIuZXhhbXBsZS5jb20wWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAASxGN3fS3I/mhaaf5BUFpDpVMRncpcVsHR124+6
NTCQ3kA4EOYyog1HDVk6x/caGd9/37cXKOu7cof/+tPJUlcZo4GEMIGBMB0GA1Ud
DgQWBBRzTDtt0XatEPy9FnRgF0C3k1QAOjAfBgNVHSMEGDAWgBRzTDtt0XatEPy9
FnRgF0C3k1QAOjAPBgNVHRMBAf8EBTADAQH/MC4GA1UdEQEB/wQkMCKCD3dlYi5l
eGFtcGxlLmNvbYIPd3d3LmV4YW1wbGUuY29tMAoGCCqGSM49BAMCA0gAMEUCIGal
164X/74lN8o7ZYIlsj7HMrKrCNfDaxlMr2D9m2POAiEAzPtQJfyd2yr+AcMAVqF4
gS0Z+YK70/+Ztfq6LF1azOs=
-----END CERTIFICATE-----
";

    /// v3 with key identifiers and basic constraints, but no subjectAltName.
    const NO_SAN: &str = "-----BEGIN CERTIFICATE-----
MIIBdzCCAR2gAwIBAgIUS3VSnBeHbgiogKxBYqZghXqk53QwCgYIKoZIzj0EAwIw
EDEOMAwGA1UEAwwFcGxhaW4wIBcNMjYxMTI0MTgyMjQ3WhgPMjEyNjEwMzExODIy
NDdaMBAxDjAMBgNVBAMMBXBsYWluMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
WFOHDgvjy+uHX7gKTbV1HxMgk18CZrGo6CmHdgr+tF+ibWoY9MZD5Ibbd7NvEYhJ
OQBVm60nFP/t4exyc6ziiaNTMFEwHQYDVR0OBBYEFMc3TVZi5mDy5AzuNZGsBDL5
ViiQMB8GA1UdIwQYMBaAFMc3TVZi5mDy5AzuNZGsBDL5ViiQMA8GA1UdEwEB/wQF
MAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIgIK1CHo4jUYZsf2J6N//sjlla4jRCnH3Z
i+ujaueE8T0CIQDQmxhKBOrjnLUFio1clEVQ2mjaFhnBTnbYZKqMfkAzZQ==
-----END CERTIFICATE-----
";

    /// Version 1 (`openssl x509 -req -signkey`): no extensions at all.
    const V1: &str = "-----BEGIN CERTIFICATE-----
MIIBFzCBvQIUUhQNrSv8abYoaQXGi1Rk93qF5AMwCgYIKoZIzj0EAwIwDTELMAkG
A1UEAwwCdjEwIBcNMjYxMTI0MTgyMjQ3WhgPMjEyNjEwMzExODIyNDdaMA0xCzAJ
BgNVBAMMAnYxMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEWFOHDgvjy+uHX7gK
TbV1HxMgk18CZrGo6CmHdgr+tF+ibWoY9MZD5Ibbd7NvEYhJOQBVm60nFP/t4exy
c6ziiTAKBggqhkjOPQQDAgNJADBGAiEAvRTp8bGQCV9bZQYfwHl4CUCo5VjTe1gk
Q8gOSWo1QHECIQDiUbyF4HQ6KNGN3FEoisc7CRrgS5RjI8j35oLuhPnN0Q==
-----END CERTIFICATE-----
";

    const CHECKOUT: &str = "spiffe://cluster.local/ns/payments/sa/checkout";
    const LEGACY: &str = "spiffe://cluster.local/ns/payments/sa/legacy";

    /// Percent-encodes everything outside RFC 3986's unreserved set, as Envoy does for
    /// `connection.peer_certificate` (newline → %0A, space → %20, + → %2B, / → %2F, = → %3D).
    fn envoy_url_encode(text: &str) -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    fn der_of(pem: &str) -> Vec<u8> {
        base64_decode(first_pem_block(pem.as_bytes()).unwrap()).unwrap()
    }

    fn two_uris_sans() -> SubjectAltNames {
        SubjectAltNames {
            uris: vec![CHECKOUT.into(), LEGACY.into()],
            dns: vec!["checkout.payments.svc.cluster.local".into()],
        }
    }

    /// One DER TLV, long-form length when needed.
    fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = contents.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(contents);
        out
    }

    /// A minimal certificate whose SAN extension holds `names` (GeneralName TLVs).
    fn cert_with_names(names: &[u8]) -> Vec<u8> {
        let mut ext = tlv(OID, SAN_OID);
        ext.extend(tlv(OCTET_STRING, &tlv(SEQUENCE, names)));
        let extensions = tlv(EXTENSIONS, &tlv(SEQUENCE, &tlv(SEQUENCE, &ext)));
        let mut tbs = tlv(0xA0, &[0x02, 0x01, 0x02]);
        tbs.extend([
            0x02, 0x01, 0x01, 0x30, 0x00, 0x30, 0x00, 0x30, 0x00, 0x30, 0x00, 0x30, 0x00,
        ]);
        tbs.extend(extensions);
        let mut cert = tlv(SEQUENCE, &tbs);
        cert.extend([0x30, 0x00, 0x03, 0x01, 0x00]);
        tlv(SEQUENCE, &cert)
    }

    use crate::test_rng::XorShift;

    #[test]
    fn url_encoded_pem_gives_every_uri_and_dns_san_in_order() {
        let encoded = envoy_url_encode(TWO_URIS);
        for escape in ["%0A", "%2B", "%2F", "%3D"] {
            assert!(encoded.contains(escape), "{escape}");
        }
        assert_eq!(
            sans_from_url_encoded_pem(encoded.as_bytes()),
            Some(two_uris_sans())
        );
        let lower = encoded.replace("%2F", "%2f");
        assert_eq!(
            sans_from_url_encoded_pem(lower.as_bytes()),
            Some(two_uris_sans())
        );
    }

    #[test]
    fn plain_pem_and_der_parse() {
        assert_eq!(sans_from_pem(TWO_URIS.as_bytes()), Some(two_uris_sans()));
        assert_eq!(
            sans_from_url_encoded_pem(TWO_URIS.as_bytes()),
            Some(two_uris_sans())
        );
        assert_eq!(sans_from_der(&der_of(TWO_URIS)), Some(two_uris_sans()));
        let crlf = format!("leading text\r\n{}", TWO_URIS.replace('\n', "\r\n"));
        assert_eq!(sans_from_pem(crlf.as_bytes()), Some(two_uris_sans()));
    }

    #[test]
    fn dns_only_with_critical_flag() {
        let dns = vec!["web.example.com".to_string(), "www.example.com".to_string()];
        let expected = Some(SubjectAltNames { uris: vec![], dns });
        assert_eq!(
            sans_from_url_encoded_pem(envoy_url_encode(DNS_ONLY).as_bytes()),
            expected
        );
    }

    #[test]
    fn no_san_extension_gives_empty_lists() {
        for pem in [NO_SAN, V1] {
            let encoded = envoy_url_encode(pem);
            assert_eq!(
                sans_from_url_encoded_pem(encoded.as_bytes()),
                Some(SubjectAltNames::default())
            );
        }
    }

    #[test]
    fn a_chain_gives_the_first_certificates_sans() {
        let chain = format!("{DNS_ONLY}{TWO_URIS}");
        let first = sans_from_pem(DNS_ONLY.as_bytes());
        assert!(first.is_some());
        assert_eq!(sans_from_pem(chain.as_bytes()), first);
        assert_eq!(
            sans_from_url_encoded_pem(envoy_url_encode(&chain).as_bytes()),
            first
        );
        let chain = format!("{TWO_URIS}{DNS_ONLY}");
        assert_eq!(
            sans_from_url_encoded_pem(envoy_url_encode(&chain).as_bytes()),
            Some(two_uris_sans())
        );
    }

    #[test]
    fn malformed_percent_escapes_are_kept() {
        assert_eq!(percent_decode(b"%41%2f%2F"), b"A//");
        assert_eq!(percent_decode(b"%zz%4%"), b"%zz%4%");
        assert_eq!(percent_decode(b"%%41"), b"%A");
        assert_eq!(
            sans_from_url_encoded_pem(b"%ZZ-----BEGIN CERTIFICATE-----%"),
            None
        );
    }

    #[test]
    fn non_utf8_and_empty_names_are_skipped_other_kinds_ignored_and_count_capped() {
        let mut names = tlv(URI, b"urn:a");
        names.extend(tlv(URI, &[0xFF, 0xFE]));
        names.extend(tlv(URI, b""));
        names.extend(tlv(0xA0, &tlv(OID, &[0x2B]))); // otherName
        names.extend(tlv(0x87, &[10, 0, 0, 1])); // iPAddress
        names.extend(tlv(DNS_NAME, b"a.example"));
        let sans = sans_from_der(&cert_with_names(&names)).unwrap();
        assert_eq!(
            sans,
            SubjectAltNames {
                uris: vec!["urn:a".into()],
                dns: vec!["a.example".into()]
            }
        );

        let many: Vec<u8> = (0..200)
            .flat_map(|i| tlv(URI, format!("urn:{i}").as_bytes()))
            .collect();
        let sans = sans_from_der(&cert_with_names(&many)).unwrap();
        assert_eq!(sans.uris.len(), MAX_SANS);
        assert_eq!(sans.uris.last().map(String::as_str), Some("urn:63"));
    }

    #[test]
    fn malformed_san_extension_is_none() {
        let mut bad = tlv(URI, b"urn:a");
        bad.extend([URI, 0x05, b'x']); // length past the end
        assert_eq!(sans_from_der(&cert_with_names(&bad)), None);
        assert_eq!(
            sans_from_der(&cert_with_names(&[0x86, 0x80, 0x00, 0x00])),
            None
        );
    }

    #[test]
    fn every_truncation_is_handled() {
        for pem in [TWO_URIS, DNS_ONLY, NO_SAN, V1] {
            let der = der_of(pem);
            for n in 0..der.len() {
                assert_eq!(sans_from_der(&der[..n]), None, "der prefix {n}");
            }
            let end = pem.find("-----END CERTIFICATE-----").unwrap() + END.len();
            for n in 0..pem.len() {
                let parsed = sans_from_pem(&pem.as_bytes()[..n]);
                assert_eq!(parsed.is_some(), n >= end, "pem prefix {n}");
            }
            let encoded = envoy_url_encode(pem);
            for n in 0..encoded.len() {
                let _ = sans_from_url_encoded_pem(&encoded.as_bytes()[..n]);
            }
        }
    }

    #[test]
    fn random_garbage_does_not_panic() {
        let mut rng = XorShift::seeded();
        let der = der_of(TWO_URIS);
        const ALPHABET: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \n";
        for _ in 0..4000 {
            let len = rng.below(600);
            let garbage: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let _ = sans_from_der(&garbage);
            let _ = sans_from_pem(&garbage);
            let _ = sans_from_url_encoded_pem(&garbage);

            let mut body: Vec<u8> = BEGIN.to_vec();
            body.extend((0..len).map(|_| ALPHABET[rng.below(ALPHABET.len())]));
            body.extend(END);
            let _ = sans_from_pem(&body);

            let mut mutated = der.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(mutated.len());
                mutated[at] = rng.next() as u8;
            }
            let _ = sans_from_der(&mutated);
        }
    }

    #[test]
    fn hostile_lengths_nesting_and_sizes_do_not_panic() {
        let hostile: [&[u8]; 7] = [
            &[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF, 0x30],
            &[0x30, 0x88, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            &[0x30, 0x80, 0x30, 0x80, 0x00, 0x00, 0x00, 0x00],
            &[0x30, 0x82, 0x00],
            &[0x3F, 0xFF, 0xFF, 0x01],
            &[0x30],
            &[],
        ];
        for der in hostile {
            assert_eq!(sans_from_der(der), None);
        }
        let mut nested = tlv(URI, b"urn:deep");
        for _ in 0..12_000 {
            nested = tlv(SEQUENCE, &nested);
        }
        assert_eq!(sans_from_der(&nested), None);
        assert!(sans_from_der(&cert_with_names(&nested)).is_some());

        let huge = format!(
            "-----BEGIN CERTIFICATE-----{}-----END CERTIFICATE-----",
            "A".repeat(1 << 20)
        );
        assert_eq!(sans_from_pem(huge.as_bytes()), None);
        let padded = format!("{TWO_URIS}{}", "%".repeat(1 << 20));
        assert_eq!(
            sans_from_url_encoded_pem(padded.as_bytes()),
            Some(two_uris_sans())
        );
    }
}
