//! Parsers of the numeric flag values, each checking the value's range so that a bad value
//! (a negative seed, a rate above 1, a zero epoch count) gets one line naming the flag and
//! what was expected. The flags using them accept values that start with `-`, so that a
//! negative number reaches its range check instead of being read as a flag.

/// An integer in [0, 2³² − 1] (NumPy's legacy seeds).
pub fn seed_u32(text: &str) -> Result<u32, String> {
    integer(text, 0, u128::from(u32::MAX)).map(|v| v as u32)
}

/// An integer in [0, 2⁶⁴ − 1] (training and data seeds).
pub fn seed_u64(text: &str) -> Result<u64, String> {
    integer(text, 0, u128::from(u64::MAX)).map(|v| v as u64)
}

/// A count of at least 1 (epochs, batch sizes).
pub fn at_least_one(text: &str) -> Result<usize, String> {
    integer(text, 1, usize::MAX as u128).map(|v| v as usize)
}

/// A count of at least 0.
pub fn count(text: &str) -> Result<usize, String> {
    integer(text, 0, usize::MAX as u128).map(|v| v as usize)
}

/// A missing rate in [0, 1].
pub fn rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err("expected a rate in [0, 1]".into()),
    }
}

/// A finite number ≥ 0 (τ, tolerances).
pub fn non_negative(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err("expected a finite number ≥ 0".into()),
    }
}

/// An integer in `[min, max]`.
fn integer(text: &str, min: u128, max: u128) -> Result<u128, String> {
    let range = || format!("expected an integer in [{min}, {max}]");
    let value = text.trim().parse::<i128>().map_err(|_| range())?;
    u128::try_from(value)
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(range)
}

/// A τ rule name or a τ of the grid (the names and numbers `cider_maci::tau_rules::TauChoice` parses).
pub fn tau_choice(text: &str) -> Result<cider_maci::tau_rules::TauChoice, String> {
    if text == "oracle" {
        return Err(
            "`oracle` reads the test labels, so it is no rule for τ; the oracle figures \
                    are always in results.json, and `--table oracle` prints them"
                .into(),
        );
    }
    text.parse().map_err(|e: cider_maci::MaciError| match e {
        cider_maci::MaciError::Invalid { message, .. } => message,
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_outside_their_range_name_it() {
        assert_eq!(seed_u32("1111"), Ok(1111));
        assert_eq!(
            seed_u32("-1"),
            Err("expected an integer in [0, 4294967295]".into())
        );
        assert_eq!(
            seed_u32("4294967296"),
            Err("expected an integer in [0, 4294967295]".into())
        );
        assert_eq!(
            seed_u64("-1").unwrap_err(),
            "expected an integer in [0, 18446744073709551615]"
        );
        assert_eq!(
            at_least_one("0").unwrap_err(),
            format!("expected an integer in [1, {}]", usize::MAX)
        );
        assert_eq!(at_least_one("3"), Ok(3));
        assert_eq!(
            count("x").unwrap_err(),
            format!("expected an integer in [0, {}]", usize::MAX)
        );
        assert_eq!(rate("-0.1"), Err("expected a rate in [0, 1]".into()));
        assert_eq!(rate("NaN"), Err("expected a rate in [0, 1]".into()));
        assert_eq!(rate("0.3"), Ok(0.3));
        assert_eq!(
            non_negative("-1"),
            Err("expected a finite number ≥ 0".into())
        );
        assert_eq!(
            non_negative("inf"),
            Err("expected a finite number ≥ 0".into())
        );
        assert_eq!(non_negative("0.5"), Ok(0.5));
    }
}
