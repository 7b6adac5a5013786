//! Numbers in commands' arguments, read by Redis' rules where the relayer reads them itself
//! (SELECT's index, the arguments of writes smart mode acknowledges early).
//!
//! Integers are read exactly as Redis reads them: no sign but `-`, no leading zero, no space,
//! within 64 bits. Floats are read conservatively: `float` accepts only the forms Redis is
//! certain to accept with the same value (decimal or `inf`), so that a write acknowledged
//! early is one Redis takes; other forms Redis may accept (hexadecimal) simply wait for
//! Redis' own answer.

/// An integer as Redis' `string2ll` reads it: `0`, or an optional `-` and a digit string
/// without leading zeros, in the range of i64; anything else (`+1`, `01`, `-0`, ` 1`, `1 `,
/// the empty string) is not an integer.
pub fn integer(s: &[u8]) -> Option<i64> {
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    // Accumulated as a negative number, whose range holds i64::MIN.
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_sub(i64::from(c - b'0'))?;
    }
    if negative {
        Some(v)
    } else {
        v.checked_neg()
    }
}

/// An integer Redis reads into a C int (SELECT's index), with Redis' error texts.
pub fn c_int(s: &[u8]) -> Result<i32, &'static str> {
    let n = integer(s).ok_or("ERR value is not an integer or out of range")?;
    // Redis 7.0's wording.
    i32::try_from(n).map_err(|_| "ERR value is out of range, value must between -2147483648 and 2147483647")
}

/// A float that Redis certainly reads as this value: an optional sign, digits with at most one
/// point (at least one digit), an optional exponent; or `inf`/`infinity` in any case, signed
/// or not. Not NaN, no overflow to infinity, no non-zero value that would round to zero (Redis
/// refuses both); None also for forms Redis may read but this does not (hexadecimal).
pub fn float(s: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(s).ok()?;
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    if unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity") {
        return Some(if text.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |p: &str| p.bytes().all(|c| c.is_ascii_digit());
    if whole.len() + fraction.len() == 0 || !digits(whole) || !digits(fraction) {
        return None;
    }
    if let Some(e) = exponent {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        if e.is_empty() || !digits(e) {
            return None;
        }
    }
    let v: f64 = text.parse().ok()?;
    let nonzero = mantissa.bytes().any(|c| (b'1'..=b'9').contains(&c));
    (v.is_finite() && (v != 0.0 || !nonzero)).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_as_string2ll_reads_them() {
        for (s, v) in [
            ("0", Some(0)),
            ("7", Some(7)),
            ("-7", Some(-7)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("-9223372036854775809", None),
            ("+9", None),
            ("09", None),
            ("00", None),
            ("-0", None),
            ("-", None),
            ("", None),
            (" 1", None),
            ("1 ", None),
            ("1.0", None),
            ("1e3", None),
            ("12a", None),
        ] {
            assert_eq!(integer(s.as_bytes()), v, "{s:?}");
        }
    }

    #[test]
    fn c_ints() {
        assert_eq!(c_int(b"-2147483648"), Ok(i32::MIN));
        assert!(c_int(b"2147483648")
            .unwrap_err()
            .contains("out of range, value must between"));
        assert!(c_int(b"+1").unwrap_err().contains("not an integer"));
    }

    #[test]
    fn floats_redis_is_certain_to_read() {
        for (s, v) in [
            ("1", Some(1.0)),
            ("-1.5", Some(-1.5)),
            ("+2", Some(2.0)),
            (".5", Some(0.5)),
            ("5.", Some(5.0)),
            ("1e3", Some(1000.0)),
            ("1E-3", Some(0.001)),
            ("0", Some(0.0)),
            ("-0.0", Some(0.0)),
            ("inf", Some(f64::INFINITY)),
            ("-Infinity", Some(f64::NEG_INFINITY)),
            ("+INF", Some(f64::INFINITY)),
        ] {
            assert_eq!(float(s.as_bytes()), v, "{s:?}");
        }
        for s in [
            "nan", "NaN", "-nan", "", ".", "e3", "1e", "1e+", " 1", "1 ", "1.2.3", "0x10", "1e400", "1e-400",
            "abc", "++1", "in",
        ] {
            assert_eq!(float(s.as_bytes()), None, "{s:?}");
        }
    }
}
