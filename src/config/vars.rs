//! The variables the Worker reads: their names, which hold secrets, near-miss detection, and the
//! readers of one variable's value.

use serde_json::{Map, Value};

use super::{err, is_facilitator_auth_var, shown, ConfigError};

/// What a variable holds, as the parser reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An absolute `https` URL (`http` only to a loopback host).
    Url,
    /// One or more facilitator URLs (comma-separated, or a JSON array of URLs or `{"url", "auth"}`).
    Urls,
    /// A `0x…` 20-byte address.
    Address,
    /// Comma-separated `0x…` addresses.
    Addresses,
    /// A CAIP-2 network id (or a v1 name).
    Network,
    /// Whole seconds.
    Seconds,
    /// A whole number of at least 1.
    Count,
    /// One of the listed words.
    Choice(&'static [&'static str]),
    /// A canonical absolute path.
    Path,
    /// `*`, `none`, or comma-separated origins.
    Origins,
    /// JSON (a TOML table or array of tables in `wrangler.toml`, or a JSON string).
    Json,
    /// Free text (a token, a key, a header value).
    Text,
    /// Not a variable but a binding of that name (`[[services]]`); the glue sets it to `true`.
    Binding,
    /// No longer read: set, it is a configuration error that says what replaced it.
    Removed,
}

/// Whether a variable must be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Required {
    Yes,
    No,
    /// Required in the case named (`"unless ORIGIN_SERVICE"`, `"with sign-in"`).
    When(&'static str),
}

/// One variable the Worker reads: its name (`FACILITATOR_AUTH_<NAME>` stands for a family of
/// names, [`is_facilitator_auth_var`]), what it holds, whether it is required, whether it is a
/// secret (`wrangler secret put`, never `[vars]`), and what it does in one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var {
    pub name: &'static str,
    pub kind: Kind,
    pub required: Required,
    pub secret: bool,
    pub doc: &'static str,
}

impl Var {
    /// Whether the Worker reads it from `env` by this exact name (not a binding, not a family).
    pub const fn read_by_name(&self) -> bool {
        !matches!(self.kind, Kind::Binding) && !is_family(self.name)
    }
}

/// `FACILITATOR_AUTH_<NAME>`: a name standing for a family of variables.
const fn is_family(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() > 1 && b[b.len() - 1] == b'>'
}

const fn row(name: &'static str, kind: Kind, required: Required, secret: bool, doc: &'static str) -> Var {
    Var { name, kind, required, secret, doc }
}

/// The one table of variables: the parser reads these names, the Workers glue (`src/edge`) reads
/// [`VARS`] from `env`, `x402-check` knows secrets and bindings from it, near misses are found
/// among its names ([`misspelt_var`]), and a test checks the documentation lists every one.
pub const TABLE: [Var; 32] = [
    row("ORIGIN_URL", Kind::Url, Required::When("unless ORIGIN_SERVICE"), false, "absolute https URL of the API being protected; a path prefix is kept"),
    row("DECISION_LOG", Kind::Choice(&["all", "payments", "none"]), Required::No, false, "which priced-request decisions get a JSON log line (default payments: all but plain 402 challenges)"),
    row("MODE", Kind::Choice(&["enforce", "shadow"]), Required::No, false, "shadow: forward everything as if free and log what would have been charged (default enforce)"),
    row("RATE_LIMITS", Kind::Json, Required::No, false, "default { challenge, failed, paid } rate limiting binding names for routes without rateLimit"),
    row("FACILITATOR_URL", Kind::Urls, Required::Yes, false, "https base URL of the x402 facilitator, or an ordered list of them for failover"),
    row("FACILITATOR_AUTH", Kind::Text, Required::No, true, "the first facilitator's credentials: cdp (a CDP JWT per call), or the Authorization header value"),
    row("CDP_API_KEY_ID", Kind::Text, Required::When("with cdp"), true, "a CDP API key's id"),
    row("CDP_API_KEY_SECRET", Kind::Text, Required::When("with cdp"), true, "a CDP API key's private key (ECDSA P-256 PEM or Ed25519 base64)"),
    row("PAY_TO", Kind::Address, Required::When("unless every offer sets payTo"), false, "default recipient address"),
    row("FACILITATOR_ADDRESS", Kind::Address, Required::When("with scheme upto"), false, "the facilitator's address that metered (upto) options name as extra.facilitatorAddress"),
    row("RECEIVER_AUTHORIZER", Kind::Address, Required::When("with scheme batch-settlement"), false, "the address payment channel (batch-settlement) options name as extra.receiverAuthorizer: the facilitator's, from its /supported"),
    row("CHANNEL_CLAIM_VOUCHERS", Kind::Count, Required::No, false, "a payment channel is claimed once this many vouchers are charged and unclaimed (a count; default 100)"),
    row("CHANNEL_CLAIM_SECONDS", Kind::Seconds, Required::No, false, "a payment channel is claimed once its oldest unclaimed charge is this old (default 3600)"),
    row("NETWORK", Kind::Network, Required::No, false, "default network (default eip155:84532)"),
    row("MAX_TIMEOUT_SECONDS", Kind::Seconds, Required::No, false, "default maxTimeoutSeconds of each requirement (default 300)"),
    row("SESSION_TTL_SECONDS", Kind::Removed, Required::No, false, "removed: prices are per request unless a route sells a pass"),
    row("ORIGIN_TIMEOUT_SECONDS", Kind::Seconds, Required::No, false, "time limit for the origin to start answering (default 30)"),
    row("FACILITATOR_TIMEOUT_SECONDS", Kind::Seconds, Required::No, false, "time limit for a facilitator call (default 30)"),
    row("CORS_ALLOWED_ORIGINS", Kind::Origins, Required::No, false, "origins allowed to call priced routes from a browser: *, a list, or none (default *)"),
    row("ROUTES", Kind::Json, Required::Yes, false, "the price table: an array of routes"),
    row("MCP", Kind::Json, Required::No, false, "MCP servers whose tools are priced per call: an array of { path, tools, default }"),
    row("VERIFY_GOOD_STANDING_SECONDS", Kind::Seconds, Required::No, false, "how long a payer's last successful settlement lets the auto verify policy skip /verify (default 86400)"),
    row("ORIGIN_HEADERS", Kind::Json, Required::No, true, "JSON object of header name to value added to every forwarded request"),
    row("DENYLIST", Kind::Addresses, Required::No, false, "payer addresses refused before the origin and the facilitator"),
    row("ADMIN_PATH", Kind::Path, Required::No, false, "where the admin endpoint listens (default /.well-known/x402/admin)"),
    row("ADMIN_TOKEN", Kind::Text, Required::No, true, "bearer token of the admin endpoint, at least 32 characters; unset: no admin endpoint"),
    row("PUBLIC_URL", Kind::Url, Required::No, false, "the paywall's public origin; turns on wallet sign-in for routes that sell passes"),
    row("RPC_URL", Kind::Url, Required::No, false, "EVM JSON-RPC endpoint (read only) that decides an unknown settlement outcome from the chain"),
    row("SIGN_IN_SECRET", Kind::Text, Required::When("with sign-in"), true, "at least 32 characters: the key of the MAC that makes sign-in nonces server-issued"),
    row("PAYMENT_CONTEXT_KEY", Kind::Text, Required::No, true, "Ed25519 private JWK that signs the X402-Payment-Context header of paid requests (public key at /.well-known/x402/jwks.json); unset: no context"),
    row("ORIGIN_SERVICE", Kind::Binding, Required::When("unless ORIGIN_URL"), false, "a service binding to the origin Worker, instead of ORIGIN_URL"),
    row("FACILITATOR_AUTH_<NAME>", Kind::Text, Required::No, true, "another facilitator's credentials, named by its auth in FACILITATOR_URL"),
];
/// Which entries of [`TABLE`] a derived list holds.
#[derive(Clone, Copy)]
enum Select {
    /// Read from `env` by name.
    ByName,
    /// Secrets read by name.
    SecretByName,
    /// Every name but the `FACILITATOR_AUTH_<NAME>` family.
    Known,
}

impl Select {
    const fn keeps(self, v: &Var) -> bool {
        match self {
            Select::ByName => v.read_by_name(),
            Select::SecretByName => v.secret && v.read_by_name(),
            Select::Known => !is_family(v.name),
        }
    }
}

/// How many entries of [`TABLE`] `select` keeps.
const fn count(select: Select) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < TABLE.len() {
        if select.keeps(&TABLE[i]) {
            n += 1;
        }
        i += 1;
    }
    n
}

/// The names of the entries of [`TABLE`] that `select` keeps, in table order.
const fn names<const N: usize>(select: Select) -> [&'static str; N] {
    let mut out = [""; N];
    let (mut i, mut n) = (0, 0);
    while i < TABLE.len() {
        if select.keeps(&TABLE[i]) {
            out[n] = TABLE[i].name;
            n += 1;
        }
        i += 1;
    }
    out
}

/// Every variable the Worker reads from `env` by name (the glue in `src/edge` and the host check
/// `x402-check` read this list), from [`TABLE`]: all but the per-facilitator
/// `FACILITATOR_AUTH_<NAME>` secrets ([`is_facilitator_auth_var`]) and the `ORIGIN_SERVICE`
/// service binding.
pub const VARS: [&str; count(Select::ByName)] = names(Select::ByName);

/// The variables that hold secrets (set with `wrangler secret put`, never in `[vars]`), besides
/// `FACILITATOR_AUTH_<NAME>`, from [`TABLE`].
pub const SECRET_VARS: [&str; count(Select::SecretByName)] = names(Select::SecretByName);

/// Every name of [`TABLE`] but the `FACILITATOR_AUTH_<NAME>` family: [`VARS`] and the bindings.
pub const KNOWN_NAMES: [&str; count(Select::Known)] = names(Select::Known);

/// Whether the Worker reads a variable of this name: one of [`TABLE`] ([`VARS`], `ORIGIN_SERVICE`,
/// or a facilitator's credentials, [`is_facilitator_auth_var`]).
pub fn is_known_var(name: &str) -> bool {
    KNOWN_NAMES.contains(&name) || is_facilitator_auth_var(name)
}

/// The known variable an unknown name most likely misspells ([`crate::names::closest`]: same
/// letters in another case, or at most two edits away), e.g. `ROUTS` → `ROUTES`, `PAY_T0` →
/// `PAY_TO`. `None` for a known name or one near none.
pub fn misspelt_var(name: &str) -> Option<&'static str> {
    if is_known_var(name) {
        return None;
    }
    crate::names::closest(name, KNOWN_NAMES)
}

/// The one-line entry of [`TABLE`] for `name` (a `FACILITATOR_AUTH_<NAME>` secret finds its
/// family's entry).
pub fn entry(name: &str) -> Option<&'static Var> {
    let family = is_facilitator_auth_var(name) && name != "FACILITATOR_AUTH";
    TABLE.iter().find(|v| v.name == name || (family && is_family(v.name)))
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

/// Reads a variable as a string (vars are strings; TOML numbers arrive as JSON numbers). `name`
/// must be in [`TABLE`] (checked in debug builds: the parser reads no variable the table lacks).
pub(super) fn string_var(vars: &Map<String, Value>, name: &str) -> Result<Option<String>, ConfigError> {
    debug_assert!(is_known_var(name), "{name} is read but not in config::TABLE");
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

/// A count variable: a whole number of at least 1, `default` when unset.
pub(super) fn count_var(vars: &Map<String, Value>, name: &str, default: u64) -> Result<u64, ConfigError> {
    match string_var(vars, name)? {
        None => Ok(default),
        Some(s) => match s.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => err(format!("{name} must be a whole number of at least 1, got {}", shown(&s))),
        },
    }
}

/// A time limit variable: whole seconds from 1 to 300, default 30.
pub(super) fn timeout_var(vars: &Map<String, Value>, name: &str) -> Result<u64, ConfigError> {
    match u64_var(vars, name, 30)? {
        t @ 1..=300 => Ok(t),
        t => err(format!("{name} is {t}: use 1 to 300 seconds")),
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
