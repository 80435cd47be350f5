//! A route's `pass`: what one payment buys beyond the request itself ([`PassTerms`]).

use serde_json::Value;

use super::{check_keys, err, ConfigError};

/// Which requests a pass admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassScope {
    /// `"route"`: every path of the route that sold it (its pattern).
    Route,
    /// `"path"`: exactly the canonical path paid for.
    Path,
    /// A group name: every route configured with that `group`.
    Group(String),
}

/// A route's `pass = { ttl, maxRequests, scope }`: one payment buys access within `ttl_seconds`
/// (at most [`MAX_PASS_TTL_SECONDS`]; [`DEFAULT_COUNTED_PASS_TTL_SECONDS`] when only
/// `maxRequests` is given), counted from the paid response, for at most `max_requests` requests
/// when set (from 2: the paid request is the first of them), to `scope`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassTerms {
    pub ttl_seconds: u64,
    pub max_requests: Option<u32>,
    pub scope: PassScope,
    /// What the payment buys, in words, for the challenge's `description`
    /// ("10 requests within 1 hour to /reports/*").
    pub summary: String,
}

/// Longest pass lifetime, seconds (365 days).
pub const MAX_PASS_TTL_SECONDS: u64 = 365 * 86_400;
/// Lifetime of a pass that only sets `maxRequests`, seconds (30 days).
pub const DEFAULT_COUNTED_PASS_TTL_SECONDS: u64 = 30 * 86_400;
/// Most requests one pass may sell.
pub const MAX_PASS_REQUESTS: u32 = 1_000_000;

/// Parses a pass lifetime: whole seconds, or a number with `s`, `m`, `h` or `d`.
fn parse_ttl(at: &str, v: &Value) -> Result<u64, ConfigError> {
    let seconds = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => {
            let s = s.trim();
            let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
            let mult = match unit.trim() {
                "" | "s" => Some(1),
                "m" => Some(60),
                "h" => Some(3_600),
                "d" => Some(86_400),
                _ => None,
            };
            num.parse::<u64>().ok().zip(mult).and_then(|(n, m)| n.checked_mul(m))
        }
        _ => None,
    };
    match seconds {
        Some(t @ 1..=MAX_PASS_TTL_SECONDS) => Ok(t),
        _ => err(format!("{at}: pass ttl must be whole seconds or like \"30m\", \"1h\", \"7d\", from 1 s to 365 days")),
    }
}

/// "1 hour", "30 minutes", "90 seconds", "7 days".
fn duration_words(seconds: u64) -> String {
    let (n, unit) = if seconds % 86_400 == 0 {
        (seconds / 86_400, "day")
    } else if seconds % 3_600 == 0 {
        (seconds / 3_600, "hour")
    } else if seconds % 60 == 0 {
        (seconds / 60, "minute")
    } else {
        (seconds, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

pub(super) fn parse_pass(at: &str, v: &Value, route_path: &str) -> Result<PassTerms, ConfigError> {
    let Value::Object(obj) = v else { return err(format!("{at}: pass must be a table like {{ ttl = \"1h\" }}")) };
    check_keys(&format!("{at} pass"), obj, &[&["ttl", "maxRequests", "scope"]])?;
    let max_requests = match obj.get("maxRequests") {
        None => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(m @ 2..) if m <= u64::from(MAX_PASS_REQUESTS) => Some(m as u32),
            _ => return err(format!("{at}: pass maxRequests must be from 2 to {MAX_PASS_REQUESTS} (the paid request is the first; 1 would be that request alone: drop the pass)")),
        },
        Some(_) => return err(format!("{at}: pass maxRequests must be a number")),
    };
    let ttl_seconds = match obj.get("ttl") {
        Some(t) => parse_ttl(at, t)?,
        None if max_requests.is_some() => DEFAULT_COUNTED_PASS_TTL_SECONDS,
        None => return err(format!("{at}: a pass needs a ttl, a maxRequests, or both")),
    };
    let scope = match obj.get("scope").map(|s| s.as_str()) {
        None | Some(Some("route")) => PassScope::Route,
        Some(Some("path")) => PassScope::Path,
        Some(Some(g)) if !g.trim().is_empty() => PassScope::Group(g.trim().to_string()),
        _ => return err(format!("{at}: pass scope must be \"route\", \"path\" or a group name")),
    };
    let what = match (max_requests, obj.contains_key("ttl")) {
        (Some(n), true) => format!("{n} requests within {}", duration_words(ttl_seconds)),
        (Some(n), false) => format!("{n} requests"),
        (None, _) => format!("unlimited requests for {}", duration_words(ttl_seconds)),
    };
    let to = match &scope {
        PassScope::Route => route_path.to_string(),
        PassScope::Path => "the path paid for".to_string(),
        PassScope::Group(g) => format!("the \"{g}\" routes"),
    };
    Ok(PassTerms { ttl_seconds, max_requests, scope, summary: format!("{what} to {to}") })
}
