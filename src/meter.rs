//! Metered prices (the x402 `upto` scheme): how much of an authorized maximum a response costs.
//!
//! A metered offer authorizes at most its `amount` (the maximum, atomic units) and settles the
//! amount its [`Meter`] gives for the origin's answer, possibly zero:
//! - [`Meter::Origin`]: the origin says it in the `Settlement-Overrides` response header, as the
//!   official x402 SDK's handlers set it (`@x402/core` `x402HTTPResourceServer.processSettlement`):
//!   `{"amount":"<atomic units>"}`, `{"amount":"$<decimal>"}` (the asset's decimals must be known) or
//!   `{"amount":"<percent, at most 2 decimals>%"}` of the maximum. No header: the maximum, as the
//!   SDK does. A header that is not one of these forms, or an amount above the maximum, is an
//!   origin fault ([`MeterFault`]): the paywall settles nothing and withholds the response (the SDK
//!   silently ignores an unreadable header and lets the facilitator refuse an excessive amount;
//!   neither is a charge the payer can check).
//! - [`Meter::Bytes`]: `unit` atomic units per byte of the response body as it arrives (decoded:
//!   the runtime undoes a `Content-Encoding`), whatever `Content-Length` announced.
//! - [`Meter::Json`]: `unit` atomic units per unit of the non-negative integer at a JSON path of the
//!   response body (`usage.total_tokens`), or, for a `text/event-stream` body, of the last event
//!   whose `data:` JSON has that path (OpenAI-compatible APIs send usage in their last event).
//!
//! A measured amount above the maximum is capped at the maximum (the payer authorized up to it);
//! a body the meter cannot read (no number at the path, not JSON) is an origin fault.
//!
//! Everything here is pure and bounded: the header is at most [`MAX_OVERRIDES_BYTES`], bodies are
//! read by the caller up to [`MAX_METERED_BODY_BYTES`].

use ruint::aliases::U256;
use serde_json::Value;

use crate::money::{price_to_atomic, PriceError};

/// The response header an origin reports an `upto` amount in (x402 SDK convention); never
/// forwarded to the client.
pub const SETTLEMENT_OVERRIDES: &str = "settlement-overrides";

/// Largest `Settlement-Overrides` value read, in bytes.
pub const MAX_OVERRIDES_BYTES: usize = 1024;

/// Largest response body a body meter reads, in bytes (4 MiB). A metered body is held until it has
/// been measured and settled; a longer one is an origin fault.
pub const MAX_METERED_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Most segments in a meter's JSON path.
pub const MAX_PATH_SEGMENTS: usize = 16;

/// How a metered offer's amount is measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meter {
    /// The origin's `Settlement-Overrides` header (the default).
    Origin,
    /// `unit` atomic units per byte of the response body.
    Bytes { unit: U256 },
    /// `unit` atomic units per unit of the integer at `path` (object keys, or array indices) in
    /// the JSON body, or in the last server-sent event that has it.
    Json { path: Vec<String>, unit: U256 },
}

impl Meter {
    /// `true` when the meter needs the whole response body (the byte meter counts the bytes that
    /// arrive, as the runtime decodes them: a compressed answer counts its decoded bytes).
    pub fn reads_body(&self) -> bool {
        !matches!(self, Meter::Origin)
    }

    /// The meter in words, for the 402's description, discovery and logs: `reported by the
    /// origin`, `10 atomic units per response byte`, `2 atomic units per usage.total_tokens`.
    pub fn describe(&self) -> String {
        match self {
            Meter::Origin => "reported by the origin (Settlement-Overrides)".into(),
            Meter::Bytes { unit } => format!("{unit} atomic units per response byte"),
            Meter::Json { path, unit } => format!("{unit} atomic units per {}", path.join(".")),
        }
    }
}

/// Why a metered amount could not be established: an origin fault. Nothing is settled and the
/// response is withheld (502).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeterFault {
    /// `Settlement-Overrides` is not one of the accepted forms.
    Malformed(String),
    /// The origin reported more than the payer authorized.
    AboveMaximum { reported: String, maximum: U256 },
    /// The body has no non-negative integer at the meter's path.
    NotFound(String),
    /// The body is longer than [`MAX_METERED_BODY_BYTES`].
    TooLarge,
    /// The body could not be read to its end (the origin's stream failed): why.
    Unreadable(String),
}

impl std::fmt::Display for MeterFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MeterFault::Malformed(why) => write!(f, "the origin's Settlement-Overrides header is malformed: {why}"),
            MeterFault::AboveMaximum { reported, maximum } => write!(f, "the origin reported {reported} atomic units, above the authorized maximum {maximum}"),
            MeterFault::NotFound(path) => write!(f, "the response has no non-negative integer at {path}"),
            MeterFault::TooLarge => write!(f, "the metered response is longer than {MAX_METERED_BODY_BYTES} bytes"),
            MeterFault::Unreadable(why) => write!(f, "the metered response could not be read: {why}"),
        }
    }
}

/// The amount an origin reports in `Settlement-Overrides` (`None`: no header, the maximum).
/// `decimals`: the asset's decimals, for a `$` amount (unknown: such an amount is malformed).
pub fn reported_amount(header: Option<&str>, maximum: U256, decimals: Option<u8>) -> Result<U256, MeterFault> {
    let Some(raw) = header else { return Ok(maximum) };
    let malformed = |why: &str| Err(MeterFault::Malformed(why.to_string()));
    if raw.len() > MAX_OVERRIDES_BYTES {
        return malformed("longer than 1024 bytes");
    }
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(raw) else { return malformed("not a JSON object") };
    let Some(Value::String(amount)) = obj.get("amount") else { return malformed("no string `amount`") };
    let amount = amount.as_str();
    let value = if let Some(percent) = amount.strip_suffix('%') {
        // At most two decimals, as the SDK reads it: hundredths of a percent of the maximum.
        let (int, frac) = percent.split_once('.').unwrap_or((percent, ""));
        if int.is_empty() || int.len() > 5 || frac.len() > 2 || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return malformed("a percentage must be digits with at most 2 decimals");
        }
        let hundredths: u64 = format!("{int}{frac:0<2}").parse().map_err(|_| MeterFault::Malformed("percentage".into()))?;
        if hundredths > 10_000 {
            return Err(MeterFault::AboveMaximum { reported: amount.to_string(), maximum });
        }
        // floor(maximum × hundredths / 10 000) without overflow for any maximum below 2^256.
        let (whole, rest) = (maximum / U256::from(10_000u64), maximum % U256::from(10_000u64));
        whole * U256::from(hundredths) + rest * U256::from(hundredths) / U256::from(10_000u64)
    } else if let Some(dollars) = amount.strip_prefix('$') {
        let Some(decimals) = decimals else { return malformed("a $ amount needs the asset's decimals, which are not configured") };
        match price_to_atomic(&format!("${dollars}"), decimals) {
            Ok(v) => v,
            // A zero price is refused in configuration, but is a valid report.
            Err(PriceError::Zero) => U256::ZERO,
            Err(e) => return malformed(&format!("{amount}: {e}")),
        }
    } else {
        if amount.is_empty() || amount.len() > 78 || !amount.bytes().all(|b| b.is_ascii_digit()) {
            return malformed("amount must be atomic units (decimal digits), `$<decimal>` or `<n>%`");
        }
        amount.parse::<U256>().map_err(|_| MeterFault::Malformed("amount is not below 2^256".into()))?
    };
    if value > maximum {
        return Err(MeterFault::AboveMaximum { reported: value.to_string(), maximum });
    }
    Ok(value)
}

/// `count × unit`, capped at `maximum`.
pub fn capped(count: U256, unit: U256, maximum: U256) -> U256 {
    count.checked_mul(unit).map_or(maximum, |v| v.min(maximum))
}

/// Parses a meter's JSON path (`usage.total_tokens`, `choices.0.n`): dot-separated, non-empty
/// segments of at most 64 bytes, at most [`MAX_PATH_SEGMENTS`].
pub fn parse_path(path: &str) -> Result<Vec<String>, String> {
    let segments: Vec<String> = path.split('.').map(str::to_string).collect();
    if segments.len() > MAX_PATH_SEGMENTS || segments.iter().any(|s| s.is_empty() || s.len() > 64) {
        return Err(format!("`{path}` is not a dot-separated path of at most {MAX_PATH_SEGMENTS} non-empty segments"));
    }
    Ok(segments)
}

/// The non-negative integer at `path` in `value` (array segments are indices).
pub fn at_path(value: &Value, path: &[String]) -> Option<U256> {
    let mut v = value;
    for segment in path {
        v = match v {
            Value::Object(o) => o.get(segment)?,
            Value::Array(a) => a.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    match v {
        Value::Number(n) => n.as_u64().map(U256::from),
        // Some APIs send large counters as strings.
        Value::String(s) if !s.is_empty() && s.len() <= 78 && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        _ => None,
    }
}

/// The count a JSON meter reads from a response body: the whole body as JSON, or, for a
/// server-sent-event stream (`event_stream`), the last event whose `data:` JSON has the path.
pub fn json_count(body: &[u8], path: &[String], event_stream: bool) -> Result<U256, MeterFault> {
    let not_found = || MeterFault::NotFound(path.join("."));
    if !event_stream {
        let value: Value = serde_json::from_slice(body).map_err(|_| not_found())?;
        return at_path(&value, path).ok_or_else(not_found);
    }
    let text = std::str::from_utf8(body).map_err(|_| not_found())?;
    let mut found = None;
    // Events are separated by a blank line; an event's data is its `data:` lines joined by "\n"
    // (WHATWG HTML, server-sent events §9.2.6).
    for event in text.split("\n\n").flat_map(|e| e.split("\r\n\r\n")) {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if data.is_empty() {
            continue;
        }
        if let Ok(value) = serde_json::from_str::<Value>(&data.join("\n")) {
            if let Some(n) = at_path(&value, path) {
                found = Some(n);
            }
        }
    }
    found.ok_or_else(not_found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 500_000;

    fn reported(h: &str) -> Result<U256, MeterFault> {
        reported_amount(Some(h), U256::from(MAX), Some(6))
    }

    #[test]
    fn the_sdk_forms_of_settlement_overrides_are_read() {
        assert_eq!(reported_amount(None, U256::from(MAX), Some(6)), Ok(U256::from(MAX)), "no header: the maximum");
        assert_eq!(reported(r#"{"amount":"1234"}"#), Ok(U256::from(1234u64)));
        assert_eq!(reported(r#"{"amount":"0"}"#), Ok(U256::ZERO));
        assert_eq!(reported(r#"{"amount":"$0.25"}"#), Ok(U256::from(250_000u64)));
        assert_eq!(reported(r#"{"amount":"$0"}"#), Ok(U256::ZERO));
        assert_eq!(reported(r#"{"amount":"50%"}"#), Ok(U256::from(250_000u64)));
        assert_eq!(reported(r#"{"amount":"12.34%"}"#), Ok(U256::from(61_700u64)));
        assert_eq!(reported(r#"{"amount":"100%"}"#), Ok(U256::from(MAX)));
    }

    #[test]
    fn malformed_or_excessive_reports_are_origin_faults() {
        for h in [
            "", "nope", "[]", r#"{"amount":1234}"#, r#"{"amount":""}"#, r#"{"amount":"-1"}"#, r#"{"amount":"1e3"}"#, r#"{"amount":"0x10"}"#,
            r#"{"amount":"$-1"}"#, r#"{"amount":"$0.0000001"}"#, r#"{"amount":"1.234%"}"#, r#"{"amount":"%"}"#, r#"{"amount":" 12"}"#,
            r#"{"other":"1"}"#,
        ] {
            assert!(matches!(reported(h), Err(MeterFault::Malformed(_))), "{h:?} → {:?}", reported(h));
        }
        assert!(matches!(reported(&format!(r#"{{"amount":"{}"}}"#, "9".repeat(2000))), Err(MeterFault::Malformed(_))), "bounded");
        assert!(matches!(reported(&format!(r#"{{"amount":"{}"}}"#, "9".repeat(78))), Err(MeterFault::Malformed(_))), "not below 2^256");
        assert!(matches!(reported(r#"{"amount":"500001"}"#), Err(MeterFault::AboveMaximum { .. })));
        assert!(matches!(reported(r#"{"amount":"$0.51"}"#), Err(MeterFault::AboveMaximum { .. })));
        assert!(matches!(reported(r#"{"amount":"100.01%"}"#), Err(MeterFault::AboveMaximum { .. })));
        // A percentage of the largest maximum: exact, never saturated into an accepted amount.
        assert_eq!(reported_amount(Some(r#"{"amount":"100%"}"#), U256::MAX, None), Ok(U256::MAX));
        assert_eq!(reported_amount(Some(r#"{"amount":"50%"}"#), U256::MAX, None), Ok(U256::MAX / U256::from(2u8)));
        assert!(matches!(reported_amount(Some(r#"{"amount":"200%"}"#), U256::MAX / U256::from(2u8), None), Err(MeterFault::AboveMaximum { .. })));
        assert!(matches!(reported_amount(Some(r#"{"amount":"$0.01"}"#), U256::from(MAX), None), Err(MeterFault::Malformed(_))), "no decimals known");
    }

    #[test]
    fn json_meters_read_the_body_or_the_last_event_that_has_the_path() {
        let path = parse_path("usage.total_tokens").unwrap();
        assert_eq!(json_count(br#"{"usage":{"total_tokens":42}}"#, &path, false), Ok(U256::from(42u64)));
        assert_eq!(json_count(br#"{"usage":{"total_tokens":"42"}}"#, &path, false), Ok(U256::from(42u64)));
        for bad in [&br#"{"usage":{"total_tokens":-1}}"#[..], br#"{"usage":{"total_tokens":1.5}}"#, br#"{"usage":{}}"#, b"not json", br#"{"usage":{"total_tokens":null}}"#] {
            assert!(matches!(json_count(bad, &path, false), Err(MeterFault::NotFound(_))));
        }
        let sse = b"data: {\"choices\":[{\"delta\":\"hi\"}]}\n\ndata: {\"usage\":{\"total_tokens\":7}}\n\ndata: {\"usage\":{\"total_tokens\":19}}\n\ndata: [DONE]\n\n";
        assert_eq!(json_count(sse, &path, true), Ok(U256::from(19u64)));
        let crlf = b"event: message\r\ndata: {\"usage\":\r\ndata: {\"total_tokens\":5}}\r\n\r\n";
        assert_eq!(json_count(crlf, &path, true), Ok(U256::from(5u64)), "multi-line data joined");
        assert!(json_count(b"data: {}\n\n", &path, true).is_err());
        let indexed = parse_path("choices.1.n").unwrap();
        assert_eq!(json_count(br#"{"choices":[{"n":1},{"n":3}]}"#, &indexed, false), Ok(U256::from(3u64)));
    }

    #[test]
    fn measured_amounts_are_capped_and_paths_bounded() {
        assert_eq!(capped(U256::from(10u64), U256::from(3u64), U256::from(MAX)), U256::from(30u64));
        assert_eq!(capped(U256::from(1_000_000u64), U256::from(3u64), U256::from(MAX)), U256::from(MAX));
        assert_eq!(capped(U256::MAX, U256::from(3u64), U256::from(MAX)), U256::from(MAX), "overflow caps");
        assert!(parse_path("a..b").is_err());
        assert!(parse_path(&"a.".repeat(20)).is_err());
        assert!(parse_path("").is_err());
    }
}
