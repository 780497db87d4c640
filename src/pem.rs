//! A strict PEM reader (RFC 7468) for the files of a certificate set.
//!
//! Text outside the blocks and CRLF line endings are accepted, because Certbot users
//! produce both. An END line without its BEGIN, a BEGIN inside a block, a block without
//! its END, a label mismatch and invalid base64 are errors, never silently skipped.

use std::fmt;

/// One decoded PEM block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemBlock {
    /// The label, such as `CERTIFICATE` or `PRIVATE KEY`.
    pub label: String,
    /// The decoded DER bytes.
    pub der: Vec<u8>,
    /// True when RFC 1421 headers mark the block as encrypted (`Proc-Type: 4,ENCRYPTED`).
    pub encrypted: bool,
}

/// A malformed PEM file, with the 1-based line where the fault was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemError {
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for PemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid PEM at line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for PemError {}

/// Parses every block of a PEM file.
pub fn parse(data: &[u8]) -> Result<Vec<PemBlock>, PemError> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, usize, Vec<u8>, bool)> = None;
    let mut headers_seen = false;
    let mut blank_after_headers = false;
    let line_count = data.split(|&byte| byte == b'\n').count();
    for (index, raw_line) in data.split(|&byte| byte == b'\n').enumerate() {
        let number = index + 1;
        // The empty piece after a final newline is not a line.
        if number == line_count && raw_line.is_empty() {
            break;
        }
        let line = trim_ascii(raw_line);
        let error = |reason: String| PemError {
            line: number,
            reason,
        };

        if let Some(label) = marker(line, b"-----BEGIN ") {
            if let Some((open_label, start, _, _)) = &open {
                return Err(error(format!(
                    "BEGIN {label} inside the {open_label} block opened at line {start}"
                )));
            }
            open = Some((label, number, Vec::new(), false));
            headers_seen = false;
            blank_after_headers = false;
            continue;
        }
        if let Some(label) = marker(line, b"-----END ") {
            let Some((open_label, _, base64, encrypted)) = open.take() else {
                return Err(error(format!("END {label} without a BEGIN line")));
            };
            if label != open_label {
                return Err(error(format!(
                    "END {label} closes a BEGIN {open_label} block"
                )));
            }
            let der = decode_base64(&base64)
                .map_err(|reason| error(format!("{label} block: {reason}")))?;
            if der.is_empty() {
                return Err(error(format!("{label} block is empty")));
            }
            blocks.push(PemBlock {
                label,
                der,
                encrypted,
            });
            continue;
        }
        let Some((_, _, base64, encrypted)) = open.as_mut() else {
            // Text outside a block, such as OpenSSL's `subject=...` lines, is allowed.
            continue;
        };
        if line.contains(&b':') {
            // RFC 1421 headers of legacy encrypted keys (`Proc-Type: 4,ENCRYPTED`) may only
            // come before the base64 data, as OpenSSL reads them.
            if !base64.is_empty() {
                return Err(error("a header line inside the base64 data".to_owned()));
            }
            if line.starts_with(b"Proc-Type:") && line.ends_with(b"ENCRYPTED") {
                *encrypted = true;
            }
            headers_seen = true;
            continue;
        }
        if line.is_empty() {
            // Only the one blank line that ends RFC 1421 headers is allowed in a block.
            if base64.is_empty() && headers_seen && !blank_after_headers {
                blank_after_headers = true;
                continue;
            }
            return Err(error("a blank line inside the block".to_owned()));
        }
        base64.extend(line.iter().filter(|byte| !byte.is_ascii_whitespace()));
    }
    if let Some((label, start, _, _)) = open {
        return Err(PemError {
            line: start,
            reason: format!("BEGIN {label} has no END line; the file is truncated"),
        });
    }
    Ok(blocks)
}

/// Encodes DER as a PEM block with 64-character lines, as OpenSSL writes it.
pub fn encode(label: &str, der: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut base64 = Vec::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let value = chunk.iter().enumerate().fold(0u32, |value, (i, byte)| {
            value | u32::from(*byte) << (16 - 8 * i)
        });
        for position in 0..4 {
            if position <= chunk.len() {
                base64.push(ALPHABET[(value >> (18 - 6 * position) & 0x3f) as usize]);
            } else {
                base64.push(b'=');
            }
        }
    }
    let mut pem = format!("-----BEGIN {label}-----\n").into_bytes();
    for line in base64.chunks(64) {
        pem.extend_from_slice(line);
        pem.push(b'\n');
    }
    pem.extend_from_slice(format!("-----END {label}-----\n").as_bytes());
    pem
}

/// Returns the label of a `-----BEGIN X-----` or `-----END X-----` line.
fn marker(line: &[u8], prefix: &[u8]) -> Option<String> {
    let rest = line.strip_prefix(prefix)?;
    let label = rest.strip_suffix(b"-----")?;
    Some(String::from_utf8_lossy(label).into_owned())
}

fn trim_ascii(line: &[u8]) -> &[u8] {
    let start = line
        .iter()
        .position(|byte| !byte.is_ascii_whitespace())
        .unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|byte| !byte.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &line[start..end]
}

/// Decodes standard base64 with padding, rejecting any other character.
fn decode_base64(text: &[u8]) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(4) {
        return Err(format!(
            "base64 length {} is not a multiple of 4",
            text.len()
        ));
    }
    let mut output = Vec::with_capacity(text.len() / 4 * 3);
    let chunks = text.len() / 4;
    for (index, chunk) in text.chunks(4).enumerate() {
        let last = index + 1 == chunks;
        let padding = chunk.iter().rev().take_while(|&&byte| byte == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return Err("misplaced base64 padding".to_owned());
        }
        let mut value: u32 = 0;
        for &byte in &chunk[..4 - padding] {
            let digit = match byte {
                b'A'..=b'Z' => byte - b'A',
                b'a'..=b'z' => byte - b'a' + 26,
                b'0'..=b'9' => byte - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return Err(format!("invalid base64 character {:?}", char::from(byte))),
            };
            value = (value << 6) | u32::from(digit);
        }
        value <<= 6 * padding as u32;
        let bytes = value.to_be_bytes();
        output.extend_from_slice(&bytes[1..4 - padding]);
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n";

    #[test]
    fn parses_blocks_with_text_and_crlf() {
        let text = format!(
            "subject=CN = example.com\r\n{}",
            BLOCK.replace('\n', "\r\n")
        );
        let blocks = parse(text.as_bytes()).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].label, "CERTIFICATE");
        assert_eq!(blocks[0].der, vec![1, 2, 3]);
    }

    #[test]
    fn rejects_orphan_markers_and_truncation() {
        let orphan_end = parse(b"-----END CERTIFICATE-----\n").unwrap_err();
        assert!(
            orphan_end.reason.contains("without a BEGIN"),
            "{orphan_end}"
        );
        let truncated = parse(b"-----BEGIN CERTIFICATE-----\nAQID\n").unwrap_err();
        assert!(truncated.reason.contains("truncated"), "{truncated}");
        let nested = parse(format!("-----BEGIN CERTIFICATE-----\n{BLOCK}").as_bytes()).unwrap_err();
        assert!(nested.reason.contains("inside"), "{nested}");
        let mismatch =
            parse(b"-----BEGIN CERTIFICATE-----\nAQID\n-----END PRIVATE KEY-----\n").unwrap_err();
        assert!(mismatch.reason.contains("closes"), "{mismatch}");
    }

    #[test]
    fn rejects_bad_base64() {
        for body in ["AQI*", "AQI", "A=ID", "AQ==AQID", "===="] {
            let text = format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n");
            assert!(parse(text.as_bytes()).is_err(), "{body} should be rejected");
        }
    }

    #[test]
    fn decodes_padding_forms() {
        assert_eq!(decode_base64(b"AQ==").unwrap(), vec![1]);
        assert_eq!(decode_base64(b"AQI=").unwrap(), vec![1, 2]);
        assert_eq!(decode_base64(b"AQID").unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn rejects_headers_and_blank_lines_inside_data() {
        let header = "-----BEGIN CERTIFICATE-----\nAQID\njunk: not base64\nAQID\n-----END CERTIFICATE-----\n";
        assert!(
            parse(header.as_bytes())
                .unwrap_err()
                .reason
                .contains("header")
        );
        let blank = "-----BEGIN CERTIFICATE-----\nAQID\n\nAQID\n-----END CERTIFICATE-----\n";
        assert!(
            parse(blank.as_bytes())
                .unwrap_err()
                .reason
                .contains("blank line")
        );
        let leading_blank = "-----BEGIN CERTIFICATE-----\n\nAQID\n-----END CERTIFICATE-----\n";
        assert!(parse(leading_blank.as_bytes()).is_err());
    }

    #[test]
    fn encode_round_trips() {
        for length in [0usize, 1, 2, 3, 47, 48, 49, 100] {
            let der: Vec<u8> = (0..length).map(|i| (i * 37 % 256) as u8).collect();
            let pem = encode("CERTIFICATE", &der);
            if length == 0 {
                continue;
            }
            let blocks = parse(&pem).unwrap();
            assert_eq!(blocks[0].der, der, "length {length}");
            assert!(
                pem.split(|b| *b == b'\n')
                    .all(|line| line.len() <= 64 || line.starts_with(b"-----"))
            );
        }
    }

    #[test]
    fn marks_legacy_encrypted_keys() {
        let text = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAQID\n-----END RSA PRIVATE KEY-----\n";
        let blocks = parse(text.as_bytes()).unwrap();
        assert!(blocks[0].encrypted);
    }
}
