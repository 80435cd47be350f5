//! Prices: `"$0.01"` → atomic units by exact decimal arithmetic, never floats.
//!
//! A price string is an optional `$`, then decimal digits with at most one `.`: `"$0.01"`,
//! `"0.5"`, `"$12"`. No sign, exponent, separators or spaces. It is scaled by 10^decimals of the
//! asset; a price with more fractional digits than the asset has (a sub-atomic price, e.g.
//! `"$0.0000001"` for 6-decimal USDC) is rejected, as is a zero price.

use ruint::aliases::U256;

/// Why a price string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceError {
    /// Not of the form `[$]digits[.digits]`.
    Syntax,
    /// More fractional digits than the asset's decimals, or a non-zero digit below one atomic unit.
    SubAtomic { decimals: u8 },
    /// Zero: a free route is configured by leaving it out of the price table.
    Zero,
    /// Larger than 2^256-1 atomic units.
    Overflow,
}

impl std::fmt::Display for PriceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PriceError::Syntax => f.write_str("price must look like \"$0.01\" (digits, at most one '.', optional leading '$')"),
            PriceError::SubAtomic { decimals } => write!(f, "price is finer than one atomic unit of a {decimals}-decimal asset"),
            PriceError::Zero => f.write_str("price must be greater than zero"),
            PriceError::Overflow => f.write_str("price exceeds 2^256-1 atomic units"),
        }
    }
}

/// Converts a decimal price to atomic units of an asset with `decimals` decimals.
///
/// `"$0.01"` with 6 decimals → 10000. Trailing fractional zeros beyond `decimals` are allowed
/// (`"0.0100000"` → 10000); any other digit there is [`PriceError::SubAtomic`].
pub fn price_to_atomic(price: &str, decimals: u8) -> Result<U256, PriceError> {
    let s = price.strip_prefix('$').unwrap_or(price);
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    let digits_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits_ok(int) || !digits_ok(frac) || (s.contains('.') && frac.is_empty()) {
        return Err(PriceError::Syntax);
    }
    if s.len() > 100 {
        return Err(PriceError::Overflow);
    }
    let d = decimals as usize;
    let (kept, dropped) = if frac.len() > d { frac.split_at(d) } else { (frac, "") };
    if dropped.bytes().any(|b| b != b'0') {
        return Err(PriceError::SubAtomic { decimals });
    }
    let mut atomic = String::with_capacity(int.len() + d);
    atomic.push_str(int);
    atomic.push_str(kept);
    for _ in kept.len()..d {
        atomic.push('0');
    }
    let trimmed = atomic.trim_start_matches('0');
    if trimmed.is_empty() {
        return Err(PriceError::Zero);
    }
    U256::from_str_radix(trimmed, 10).map_err(|_| PriceError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_examples_for_six_decimals() {
        assert_eq!(price_to_atomic("$0.001", 6), Ok(U256::from(1000u64)));
        assert_eq!(price_to_atomic("$0.01", 6), Ok(U256::from(10000u64)));
        assert_eq!(price_to_atomic("$0.10", 6), Ok(U256::from(100000u64)));
        assert_eq!(price_to_atomic("12", 6), Ok(U256::from(12_000_000u64)));
        assert_eq!(price_to_atomic(".5", 6), Ok(U256::from(500_000u64)));
        assert_eq!(price_to_atomic("$0.000001", 6), Ok(U256::from(1u64)));
    }

    #[test]
    fn no_float_rounding_at_eighteen_decimals() {
        // 0.1 + 0.2 style values that binary floats cannot represent.
        assert_eq!(price_to_atomic("0.3", 18), Ok(U256::from(300_000_000_000_000_000u64)));
        assert_eq!(
            price_to_atomic("123456789.123456789123456789", 18),
            Ok(U256::from_str_radix("123456789123456789123456789", 10).unwrap())
        );
    }

    #[test]
    fn sub_atomic_zero_and_malformed_prices_are_refused() {
        assert_eq!(price_to_atomic("$0.0000001", 6), Err(PriceError::SubAtomic { decimals: 6 }));
        assert_eq!(price_to_atomic("$0.0100000", 6), Ok(U256::from(10000u64)));
        assert_eq!(price_to_atomic("$0", 6), Err(PriceError::Zero));
        assert_eq!(price_to_atomic("0.000", 6), Err(PriceError::Zero));
        for bad in ["", "$", ".", "1.", "-1", "1e3", "1,000", " 1", "$$1", "1.2.3", "0x10", "NaN"] {
            assert_eq!(price_to_atomic(bad, 6), Err(PriceError::Syntax), "{bad:?}");
        }
        assert_eq!(price_to_atomic(&"9".repeat(90), 0), Err(PriceError::Overflow));
    }
}
