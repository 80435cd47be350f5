//! The variables the Worker reads: their names, which hold secrets, near-miss detection, and the
//! readers of one variable's value.

use serde_json::{Map, Value};

use super::{err, is_facilitator_auth_var, shown, ConfigError};

/// Every variable the Worker reads from `env` by name (the glue in `src/edge` and the host check
/// `x402-check` share this list), besides the per-facilitator `FACILITATOR_AUTH_<NAME>` secrets
/// ([`is_facilitator_auth_var`]) and the `ORIGIN_SERVICE` service binding.
pub const VARS: [&str; 24] = [
    "ORIGIN_URL",
    "DECISION_LOG",
    "MODE",
    "RATE_LIMITS",
    "FACILITATOR_URL",
    "FACILITATOR_AUTH",
    "CDP_API_KEY_ID",
    "CDP_API_KEY_SECRET",
    "PAY_TO",
    "NETWORK",
    "MAX_TIMEOUT_SECONDS",
    "SESSION_TTL_SECONDS",
    "ORIGIN_TIMEOUT_SECONDS",
    "FACILITATOR_TIMEOUT_SECONDS",
    "CORS_ALLOWED_ORIGINS",
    "ROUTES",
    "VERIFY_GOOD_STANDING_SECONDS",
    "ORIGIN_HEADERS",
    "DENYLIST",
    "ADMIN_PATH",
    "ADMIN_TOKEN",
    "PUBLIC_URL",
    "RPC_URL",
    "SIGN_IN_SECRET",
];

/// The variables that hold secrets (set with `wrangler secret put`, never in `[vars]`), besides
/// `FACILITATOR_AUTH_<NAME>`.
pub const SECRET_VARS: [&str; 6] = ["ORIGIN_HEADERS", "ADMIN_TOKEN", "SIGN_IN_SECRET", "FACILITATOR_AUTH", "CDP_API_KEY_ID", "CDP_API_KEY_SECRET"];

/// Whether the Worker reads a variable of this name: one of [`VARS`], `ORIGIN_SERVICE`, or a
/// facilitator's credentials ([`is_facilitator_auth_var`]).
pub fn is_known_var(name: &str) -> bool {
    VARS.contains(&name) || name == "ORIGIN_SERVICE" || is_facilitator_auth_var(name)
}

/// The known variable an unknown name most likely misspells ([`crate::names::closest`]: same
/// letters in another case, or at most two edits away), e.g. `ROUTS` → `ROUTES`, `PAY_T0` →
/// `PAY_TO`. `None` for a known name or one near none.
pub fn misspelt_var(name: &str) -> Option<&'static str> {
    if is_known_var(name) {
        return None;
    }
    crate::names::closest(name, VARS.iter().copied().chain(["ORIGIN_SERVICE"]))
}

/// Every variable among `vars` that misspells a known one, with the name it most likely means
/// (configuration order).
pub fn misspelt_vars(vars: &Map<String, Value>) -> Vec<(String, &'static str)> {
    vars.keys().filter_map(|k| misspelt_var(k).map(|m| (k.clone(), m))).collect()
}

/// The error for a misspelt variable `name` (see [`misspelt_var`]).
pub fn misspelt_var_error(name: &str, meant: &str) -> ConfigError {
    ConfigError(format!(
        "unknown variable {}; did you mean {}? A near miss of a known variable is refused so that nothing it would configure (a price, a recipient) is silently dropped; rename it (or, if it is a variable of your own, give it a name further from the paywall's)",
        shown(name),
        shown(meant)
    ))
}

/// An unknown variable that looks like a price (its name has `PRICE`, `AMOUNT` or `COST` in it,
/// or its value reads like `$0.01`): an error when no route is priced, since the paywall reads
/// prices only from `ROUTES`.
pub fn price_looking_var(vars: &Map<String, Value>) -> Option<&str> {
    vars.iter()
        .find(|(k, v)| {
            let upper = k.to_ascii_uppercase();
            !is_known_var(k)
                && (["PRICE", "AMOUNT", "COST"].iter().any(|w| upper.contains(w))
                    || v.as_str().is_some_and(|s| s.trim().strip_prefix('$').is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit()))))
        })
        .map(|(k, _)| k.as_str())
}

/// Reads a variable as a string (vars are strings; TOML numbers arrive as JSON numbers).
pub(super) fn string_var(vars: &Map<String, Value>, name: &str) -> Result<Option<String>, ConfigError> {
    match vars.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => err(format!("{name} must be a string")),
    }
}

pub(super) fn u64_var(vars: &Map<String, Value>, name: &str, default: u64) -> Result<u64, ConfigError> {
    match string_var(vars, name)? {
        None => Ok(default),
        Some(s) => s.parse().or_else(|_| err(format!("{name} must be a whole number of seconds, got {}", shown(&s)))),
    }
}

/// The variables of the start-up warm-up (see `edge::warm_up`): one priced route, `GET /warm-up`
/// at `$0.01` on the default network, no log lines, addresses that are never contacted (the
/// warm-up request is answered by a 402 challenge, without I/O).
pub fn warm_up_vars() -> Map<String, Value> {
    let mut vars = Map::new();
    vars.insert("ORIGIN_URL".into(), "https://warm-up.invalid".into());
    vars.insert("FACILITATOR_URL".into(), "https://warm-up.invalid".into());
    vars.insert("PAY_TO".into(), "0x0000000000000000000000000000000000000001".into());
    vars.insert("DECISION_LOG".into(), "none".into());
    vars.insert("ROUTES".into(), serde_json::json!([{ "route": "GET /warm-up", "price": "$0.01", "description": "start-up warm-up" }]));
    vars
}
