//! The text and integer encodings of pickle opcode arguments: decimal integers of the text
//! opcodes, two's complement longs (LONG1 / LONG4), latin-1 (how protocols 0–2 spell bytes as
//! str) and Python's `raw-unicode-escape` (protocol 0 str).

use super::stream::Stream;
use crate::error::DataError;
use crate::excerpt::excerpt;

/// A decimal integer argument of a text opcode.
pub(super) fn parse_int(s: &Stream<'_, '_>, text: &str) -> Result<i64, DataError> {
    text.trim().parse::<i64>().map_err(|_| {
        s.fail(format!(
            "integer literal `{}` is not a 64-bit integer",
            excerpt(text)
        ))
    })
}

/// A little-endian two's complement integer (LONG1 / LONG4), if it fits in 64 bits.
pub(super) fn long_from_le(bytes: &[u8]) -> Option<i64> {
    let Some(&last) = bytes.last() else {
        return Some(0);
    };
    let fill = if last & 0x80 != 0 { 0xff } else { 0x00 };
    if bytes.len() > 8 {
        let sign_kept = (bytes[7] & 0x80 != 0) == (fill == 0xff);
        if !sign_kept || bytes[8..].iter().any(|&b| b != fill) {
            return None;
        }
    }
    let mut buf = [fill; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    Some(i64::from_le_bytes(buf))
}

/// The decimal digits of a little-endian two's complement integer of at most
/// [`MAX_BIG_INT_BYTES`] bytes (LONG1 / LONG4 beyond 64 bits); `None` if it is longer.
pub(super) fn long_decimal(bytes: &[u8]) -> Option<String> {
    if bytes.len() > MAX_BIG_INT_BYTES {
        return None;
    }
    let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
    // Magnitude, most significant byte first (two's complement negated when negative).
    let mut magnitude: Vec<u8> = bytes.iter().rev().copied().collect();
    if negative {
        for byte in &mut magnitude {
            *byte = !*byte;
        }
        for byte in magnitude.iter_mut().rev() {
            let (sum, carry) = byte.overflowing_add(1);
            *byte = sum;
            if !carry {
                break;
            }
        }
    }
    let mut digits = Vec::new();
    while magnitude.iter().any(|&b| b != 0) {
        let mut remainder = 0u32;
        for byte in &mut magnitude {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 10) as u8;
            remainder = value % 10;
        }
        digits.push(b'0' + remainder as u8);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    if negative {
        digits.push(b'-');
    }
    digits.reverse();
    String::from_utf8(digits).ok()
}

/// Longest integer [`long_decimal`] converts: 64 bytes, about 154 digits (converting is
/// quadratic in the length).
pub(super) const MAX_BIG_INT_BYTES: usize = 64;

/// Encodes UTF-8 text as latin-1; `None` if a char is above U+00FF or the bytes are not UTF-8.
///
/// Works on the bytes directly (protocol 0–2 array data is one such string per array, hundreds
/// of MB for MMSA features), checking the encoding as it goes: U+0000–U+007F are one byte,
/// U+0080–U+00FF the lead byte `C2` or `C3` and one continuation byte `80`–`BF`; any other lead
/// byte is a higher char or not UTF-8.
pub(super) fn latin1(utf8: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(utf8.len());
    let mut i = 0;
    while i < utf8.len() {
        let lead = utf8[i];
        if lead < 0x80 {
            out.push(lead);
            i += 1;
        } else if lead == 0xc2 || lead == 0xc3 {
            let next = *utf8.get(i + 1)?;
            if next & 0xc0 != 0x80 {
                return None;
            }
            out.push(((lead & 0x03) << 6) | (next & 0x3f));
            i += 2;
        } else {
            return None;
        }
    }
    Some(out)
}

/// Decodes Python's `raw-unicode-escape` (protocol 0 str): bytes are latin-1 chars, except
/// `\uXXXX` / `\UXXXXXXXX` after an odd number of backslashes.
pub(super) fn decode_raw_unicode_escape(bytes: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(char::from(bytes[i]));
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i] == b'\\' {
            i += 1;
        }
        let run = i - start;
        let escape = run % 2 == 1 && matches!(bytes.get(i), Some(b'u' | b'U'));
        let literal = if escape { run - 1 } else { run };
        out.extend(std::iter::repeat_n('\\', literal));
        if !escape {
            continue;
        }
        let digits = if bytes[i] == b'u' { 4 } else { 8 };
        let hex = bytes.get(i + 1..i + 1 + digits)?;
        let hex = std::str::from_utf8(hex).ok()?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
        i += 1 + digits;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_integers_decode_two_complement() {
        assert_eq!(long_from_le(&[]), Some(0));
        assert_eq!(long_from_le(&[0xff]), Some(-1));
        assert_eq!(long_from_le(&[0x00, 0x80, 0x00]), Some(32768));
        assert_eq!(long_from_le(&[0x00, 0x00, 0x00, 0x80, 0x00]), Some(1 << 31));
        let min = [0, 0, 0, 0, 0, 0, 0, 0x80];
        assert_eq!(long_from_le(&min), Some(i64::MIN));
        // Nine bytes are fine while the ninth only extends the sign.
        assert_eq!(
            long_from_le(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Some(-2)
        );
        assert_eq!(long_from_le(&[0, 0, 0, 0, 0, 0, 0, 0, 1]), None);
        assert_eq!(long_from_le(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0]), None);
    }

    #[test]
    fn latin1_maps_chars_below_256_to_single_bytes() {
        let all: String = (0u8..=255).map(char::from).collect();
        assert_eq!(latin1(all.as_bytes()), Some((0u8..=255).collect()));
        for above in ["\u{100}", "a\u{20ac}", "\u{1F600}"] {
            assert_eq!(latin1(above.as_bytes()), None, "{above}");
        }
        // Not UTF-8: a lone lead byte, a lead byte without continuation, a bare continuation.
        for bad in [&b"\xc3"[..], b"\xc3A", b"\x80"] {
            assert_eq!(latin1(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn raw_unicode_escape_follows_cpython() {
        assert_eq!(
            decode_raw_unicode_escape(b"x\\u00e9").as_deref(),
            Some("x\u{e9}")
        );
        // An even run of backslashes is literal (CPython: 'x\\\\u00e9' stays as is).
        assert_eq!(
            decode_raw_unicode_escape(b"\\\\u00e9").as_deref(),
            Some("\\\\u00e9")
        );
        assert_eq!(
            decode_raw_unicode_escape(b"\\U0001F600").as_deref(),
            Some("\u{1F600}")
        );
        assert_eq!(
            decode_raw_unicode_escape(b"\xe9").as_deref(),
            Some("\u{e9}")
        );
        assert_eq!(decode_raw_unicode_escape(b"\\u00"), None);
        assert_eq!(decode_raw_unicode_escape(b"\\ud800"), None);
    }
}
