//! Configuration: the Worker's `[vars]` and secrets, parsed and validated once per isolate.
//!
//! | variable | required | meaning |
//! |---|---|---|
//! | `ORIGIN_URL` | unless `ORIGIN_SERVICE` | absolute `https` URL of the API being protected (`http` only to a loopback host); a path prefix is kept |
//! | `ORIGIN_SERVICE` | (binding) | a Workers service binding to the origin Worker; the glue sets this variable to `true` when the binding exists |
//! | `ORIGIN_HEADERS` | no (secret) | JSON object of header name → value added to every forwarded request (client copies removed first) |
//! | `FACILITATOR_URL` | yes | `https` base URL of the x402 facilitator (`/verify`, `/settle` are appended; `http` only to a loopback host), or an ordered list of them for failover (comma-separated, or a JSON array of URLs or `{"url", "auth"}`) |
//! | `PAY_TO` | unless every offer sets `payTo` | default recipient address (`0x…`, 20 bytes) |
//! | `NETWORK` | no (`eip155:84532`) | default network (CAIP-2, or a v1 name) |
//! | `MAX_TIMEOUT_SECONDS` | no (`300`) | default `maxTimeoutSeconds` of each requirement |
//! | `SESSION_TTL_SECONDS` | removed | a configuration error: prices are per request unless a route sells a `pass` |
//! | `DENYLIST` | no | comma-separated payer addresses refused before the origin and the facilitator |
//! | `ADMIN_PATH` | no (`/.well-known/x402/admin`) | where the admin endpoint listens (with `ADMIN_TOKEN`) |
//! | `ADMIN_TOKEN` | no (secret) | bearer token of the admin endpoint; unset = no admin endpoint |
//! | `PUBLIC_URL` | no | the paywall's public origin; turns on wallet sign-in (`sign-in-with-x`) for routes that sell passes |
//! | `SIGN_IN_SECRET` | with sign-in (secret) | at least 32 characters: the key of the MAC that makes sign-in nonces server-issued |
//! | `ORIGIN_TIMEOUT_SECONDS` | no (`30`) | time limit for the origin to start answering |
//! | `FACILITATOR_TIMEOUT_SECONDS` | no (`30`) | time limit for a facilitator call (`/settle` waits for the receipt) |
//! | `CORS_ALLOWED_ORIGINS` | no (`*`) | origins allowed to call priced routes from a browser: `*`, a comma-separated list, or `none` |
//! | `FACILITATOR_AUTH` | no (secret) | the first facilitator's credentials: `cdp`: sign a CDP JWT per call with `CDP_API_KEY_ID` / `CDP_API_KEY_SECRET`; any other value is sent as the `Authorization` header |
//! | `FACILITATOR_AUTH_<NAME>` | no (secrets) | another facilitator's credentials, named by its `auth` in `FACILITATOR_URL` (same values) |
//! | `CDP_API_KEY_ID`, `CDP_API_KEY_SECRET` | with `cdp` (secrets) | a CDP API key: its id, and its private key (ECDSA P-256 PEM or Ed25519 base64) |
//! | `MODE` | no (`enforce`) | `shadow`: forward everything as if free and log/count what would have been charged |
//! | `DECISION_LOG` | no (`all`) | which priced-request decisions get a JSON log line: `all`, `payments` (not plain challenges), `none` |
//! | `RATE_LIMITS` | no | default `{ "challenge", "failed", "paid" }` rate limiting binding names for routes without `rateLimit` |
//! | `ROUTES` | yes | JSON array of routes (a TOML array of tables in `wrangler.toml`, or a JSON string) |
//! | `RPC_URL` | no | an `https` (`http` only to a loopback host) EVM JSON-RPC endpoint of the offers' chain, read only: decides an unknown settlement outcome from the chain ([`crate::evidence`]) |
//! | `VERIFY_GOOD_STANDING_SECONDS` | no (`86400`) | how long a payer's last successful settlement lets the `auto` verify policy skip `/verify` |
//!
//! A `ROUTES` entry: `route` (`"METHOD /pattern"`, see [`crate::route::RoutePattern`]);
//! `description`, `mimeType`, `pass` ([`PassTerms`]), `group` (a name shared by routes that a
//! group-scoped pass opens together); `verify` ([`VerifyPolicy`]: `"auto"`,
//! `"always"`, `"local"`); `settle` ([`SettleOrder`]: `"after"`, `"before"`); `rateLimit`
//! ([`RateLimits`]); the discovery keys `discoverable`, `inputSchema`, `inputExample`,
//! `bodyType`, `outputSchema`, `outputExample` ([`crate::discovery::RouteDiscovery`]); `free:
//! true` for a route proxied without
//! payment (to carve an exception out of a later wildcard); and its payment options, either as an
//! `accepts` array or, for a single option, directly in the entry. An option is `price`
//! (`"$0.01"`, whole tokens, converted with the asset's decimals) or `amount` (atomic units,
//! decimal string) with an explicit `asset`; optional `asset`, `decimals`, `name`/`version`
//! (EIP-712 domain of a non-default asset), `network`, `payTo`, `maxTimeoutSeconds`. Unknown keys
//! are errors naming the closest known key, so a typo never silently drops a price; so are a
//! variable whose name is a near miss of one in [`VARS`] ([`misspelt_var`]), a route method not
//! in [`crate::route::KNOWN_METHODS`], and a price-looking variable with no priced route
//! ([`price_looking_var`]). Routes are matched in order, first match
//! wins; an earlier route that takes every request of a later priced one for less (free, or
//! cheaper) is an error, since the later price would never apply.

use ruint::aliases::U256;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::cdp::CdpKey;
use crate::discovery::{RouteDiscovery, WellKnown};
use crate::evm::{caip2_chain_id, network_by_id, Address, Eip712Domain};
use crate::exact::VALID_BEFORE_SLACK_SECONDS;
use crate::money::price_to_atomic;
use crate::route::RoutePattern;
use crate::x402::{Eip712Extra, PaymentRequirements, PaymentRequirementsV1};

/// A configuration problem, with the variable it concerns and why. Answered as HTTP 500 with
/// [`ConfigError::public`]; logged in full ([`std::fmt::Display`]).
///
/// Configured values in the message are quoted by [`shown`]: between backticks, with the parts
/// that could be secret (a URL's user information, path and query; anything [`hidden`]) wrapped
/// in the private-use markers [`SECRET_OPEN`] … [`SECRET_CLOSE`], which the log form drops and
/// the public form replaces by `…`. Key names, route patterns and variable names stay readable in
/// both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

/// Opens a span of a [`ConfigError`] message that only the log shows (see [`hidden`]).
pub const SECRET_OPEN: char = '\u{1}';
/// Closes a span opened by [`SECRET_OPEN`].
pub const SECRET_CLOSE: char = '\u{2}';

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid configuration: {}", self.0.replace([SECRET_OPEN, SECRET_CLOSE], ""))
    }
}

impl ConfigError {
    /// The message for any client: keys, route patterns, variable names and plain values kept;
    /// each part that could be secret ([`hidden`] spans: a URL's user information, path and
    /// query) replaced by `…`. Ends by pointing at the log, which has the values.
    pub fn public(&self) -> String {
        let mut out = String::from("invalid configuration: ");
        let mut secret = false;
        for c in self.0.chars() {
            match c {
                SECRET_OPEN if !secret => {
                    secret = true;
                    out.push('…');
                }
                SECRET_CLOSE => secret = false,
                c if !secret => out.push(c),
                _ => {}
            }
        }
        out.push_str(" (see the log for values)");
        out
    }
}

/// A configured value as error messages show it: between backticks (a backtick inside it
/// replaced), with what could be secret in it [`hidden`]: in a URL (`scheme://…`) its user
/// information, path, query and fragment (the scheme and host stay); a value with an `@` but no
/// scheme, whole.
pub fn shown(value: &str) -> String {
    let value = value.replace('`', "'").replace([SECRET_OPEN, SECRET_CLOSE], "");
    let Some(i) = value.find("://") else {
        return if value.contains('@') { format!("`{}`", hidden(&value)) } else { format!("`{value}`") };
    };
    let (scheme, rest) = value.split_at(i + 3);
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let mut out = format!("`{scheme}");
    match authority.rfind('@') {
        Some(at) => {
            out.push_str(&hidden(&authority[..=at]));
            out.push_str(&authority[at + 1..]);
        }
        None => out.push_str(authority),
    }
    if tail.is_empty() || tail == "/" {
        out.push_str(tail);
    } else {
        out.push_str(&hidden(tail));
    }
    out.push('`');
    out
}

/// A value only the log may show (see [`ConfigError`]): wrapped in [`SECRET_OPEN`] …
/// [`SECRET_CLOSE`] (markers inside it removed).
pub fn hidden(value: &str) -> String {
    format!("{SECRET_OPEN}{}{SECRET_CLOSE}", value.replace([SECRET_OPEN, SECRET_CLOSE], ""))
}

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

/// "unknown key `pirce` in ROUTES[0] (`GET /x`); did you mean `price`?", else the known keys.
fn unknown_key(key: &str, at: &str, known: &[&[&str]]) -> ConfigError {
    let all = known.iter().flat_map(|set| set.iter().copied());
    match crate::names::closest(key, all.clone()) {
        Some(k) => ConfigError(format!("unknown key {} in {at}; did you mean {}?", shown(key), shown(k))),
        None => ConfigError(format!("unknown key {} in {at}; known keys: {}", shown(key), all.collect::<Vec<_>>().join(", "))),
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// One payment option of a route, ready to serve: the wire requirement, its JSON form (for
/// deep-equality matching against `accepted`), and the parsed values the local checks need.
#[derive(Debug, Clone)]
pub struct Offer {
    pub requirements: PaymentRequirements,
    pub requirements_json: Value,
    /// The v1 name of the network, when legacy v1 clients can pay this offer.
    pub v1_network: Option<&'static str>,
    pub amount: U256,
    pub asset: Address,
    pub pay_to: Address,
    pub chain_id: u64,
    /// EIP-712 domain separator of `asset` on `chain_id` (precomputed).
    pub domain_separator: [u8; 32],
}

impl Offer {
    /// This offer in v1 form for a request to `resource` (v1 requirements carry the resource).
    /// `None` when the network has no v1 name.
    pub fn requirements_v1(&self, resource: &str, description: Option<&str>, mime_type: Option<&str>) -> Option<PaymentRequirementsV1> {
        let r = &self.requirements;
        Some(PaymentRequirementsV1 {
            scheme: r.scheme.clone(),
            network: self.v1_network?.to_string(),
            max_amount_required: r.amount.clone(),
            resource: resource.to_string(),
            description: description.unwrap_or_default().to_string(),
            mime_type: mime_type.unwrap_or_default().to_string(),
            pay_to: r.pay_to.clone(),
            max_timeout_seconds: r.max_timeout_seconds,
            asset: r.asset.clone(),
            extra: r.extra.clone(),
        })
    }
}

/// When the facilitator's `/verify` runs before the origin is called (the route's `verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyPolicy {
    /// `"auto"` (default): a payer without a recent successful settlement in the ledger, whose
    /// last outcome was a refusal, or with [`crate::gateway::MAX_UNVERIFIED_IN_FLIGHT`] other
    /// authorizations already in flight, is checked with
    /// `/verify` (funds, nonce state on chain); a payer in good standing only locally.
    Auto,
    /// `"always"`: `/verify` before every origin call (one more round trip).
    Always,
    /// `"local"`: never; only the local checks. An unfunded or already-used authorization then
    /// reaches the origin once before its settlement is refused.
    Local,
}

/// Whether the origin runs before or after settlement (the route's `settle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleOrder {
    /// `"after"` (default): origin first, settled only if it answered below 400.
    After,
    /// `"before"`: settled first, then the origin is called (for origins with irreversible side
    /// effects). If the origin then fails, the payer keeps a paid, undelivered authorization:
    /// retrying the same payment header before `validBefore` calls the origin again without a
    /// second charge.
    Before,
}

/// A route of the price table.
#[derive(Debug, Clone)]
pub struct Route {
    /// The route key as configured, normalised (`"GET /weather"`); also the session scope.
    pub key: String,
    pub pattern: RoutePattern,
    pub description: Option<String>,
    pub mime_type: Option<String>,
    /// What one payment buys beyond the request itself; `None`: every request pays.
    pub pass: Option<PassTerms>,
    /// The group this route belongs to (for group-scoped passes).
    pub group: Option<String>,
    /// The payment options; empty for a free route.
    pub accepts: Vec<Offer>,
    pub verify: VerifyPolicy,
    pub settle: SettleOrder,
    /// The Workers Rate Limiting bindings that apply (the route's `rateLimit`, else `RATE_LIMITS`).
    pub rate_limits: RateLimits,
    /// Discovery declaration and prebuilt `bazaar` extensions ([`crate::discovery`]); the
    /// default (not discoverable) for a free route.
    pub discovery: RouteDiscovery,
    /// Its 402 challenges, laid out on first use per method.
    pub challenge_layouts: ChallengeLayouts,
}

/// Workers Rate Limiting bindings (by binding name) applied to a priced route. Each counts within
/// the route: `challenge` per client IP (`CF-Connecting-IP`) for 402 challenges, `failed` per
/// client IP for refused payment attempts, `paid` per payer for payment attempts. Over a limit →
/// 429 with `Retry-After`, the origin and the facilitator untouched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    pub challenge: Option<String>,
    pub failed: Option<String>,
    pub paid: Option<String>,
}

impl RateLimits {
    /// Every binding named.
    pub fn bindings(&self) -> impl Iterator<Item = &str> {
        [&self.challenge, &self.failed, &self.paid].into_iter().flatten().map(String::as_str)
    }

    fn parse(at: &str, v: &Value) -> Result<RateLimits, ConfigError> {
        let v = match v {
            Value::String(s) => serde_json::from_str(s).or_else(|e| err(format!("{at} is not valid JSON: {e}")))?,
            v => v.clone(),
        };
        let limits: RateLimits =
            serde_json::from_value(v).or_else(|e| err(format!("{at}: {e} (expected {{ challenge, failed, paid }} naming rate limiting bindings)")))?;
        if let Some(b) = limits.bindings().find(|b| b.is_empty() || !b.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')) {
            return err(format!("{at}: {} is not a binding name", shown(b)));
        }
        Ok(limits)
    }
}

/// `DECISION_LOG`: which priced-request decisions get a JSON log line (the `METRICS` data point is
/// written for every decision either way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DecisionLog {
    /// `"all"` (default): every decision, 402 challenges included.
    #[default]
    All,
    /// `"payments"`: every decision but plain challenges (a request without any payment or pass),
    /// which are most of the traffic a public API sees from crawlers.
    Payments,
    /// `"none"`: no decision lines.
    None,
}

impl DecisionLog {
    /// Whether a decision with `outcome` is logged.
    pub fn includes(self, outcome: crate::telemetry::DecisionOutcome) -> bool {
        match self {
            DecisionLog::All => true,
            DecisionLog::Payments => outcome != crate::telemetry::DecisionOutcome::Challenge,
            DecisionLog::None => false,
        }
    }
}

/// `MODE`: whether the paywall charges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// `"enforce"` (default): priced routes are paid for.
    #[default]
    Enforce,
    /// `"shadow"`: every request is forwarded as if free; what would have been charged is logged
    /// and counted (outcome `shadow`). Nothing is verified with a facilitator or settled.
    Shadow,
}

/// The route's 402 challenges (see [`crate::x402::ChallengeLayout`]), filled in on first use: one
/// per method with a challenge of its own (`Some(method)`: a method the configuration gives a
/// discovery extension) and one (`None`) that every other method shares, since their challenges
/// are the same bytes. So it holds at most the configured methods plus one entry, whatever
/// methods clients invent.
#[derive(Debug, Clone, Default)]
pub struct ChallengeLayouts(std::cell::RefCell<Vec<(Option<http::Method>, std::rc::Rc<crate::x402::ChallengeLayout>)>>);

impl ChallengeLayouts {
    /// The layout under `key`, built with `build` the first time (`None`: not built, not kept).
    pub fn get_or_build(&self, key: Option<&http::Method>, build: impl FnOnce() -> Option<crate::x402::ChallengeLayout>) -> Option<std::rc::Rc<crate::x402::ChallengeLayout>> {
        if let Some((_, l)) = self.0.borrow().iter().find(|(m, _)| m.as_ref() == key) {
            return Some(std::rc::Rc::clone(l));
        }
        let layout = std::rc::Rc::new(build()?);
        self.0.borrow_mut().push((key.cloned(), std::rc::Rc::clone(&layout)));
        Some(layout)
    }

    /// How many layouts are held.
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    /// Whether none is held yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Route {
    /// A route explicitly configured as free (`free: true`): proxied without payment.
    pub fn is_free(&self) -> bool {
        self.accepts.is_empty()
    }
}

/// Which browser origins may call priced routes (CORS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsPolicy {
    /// `Access-Control-Allow-Origin: *`.
    Any,
    /// Only these origins (exact `scheme://host[:port]`), echoed back with `Vary: Origin`.
    List(Vec<String>),
    /// No CORS headers; preflights go to the origin.
    Off,
}

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

fn parse_pass(at: &str, v: &Value, route_path: &str) -> Result<PassTerms, ConfigError> {
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

/// Where forwarded requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginTarget {
    /// `ORIGIN_URL`: `base` is `scheme://authority[/prefix]` (authority lower-case) without a
    /// trailing `/`; `prefix` is its path part (`""` or `/v1`). Request paths are appended.
    Url { base: String, prefix: String },
    /// `ORIGIN_SERVICE`: another Worker behind a service binding, with no public route of its
    /// own. Requests keep the public URL's scheme and host.
    Service,
}

/// Most `ORIGIN_HEADERS` entries.
pub const MAX_ORIGIN_HEADERS: usize = 16;

/// Header names `ORIGIN_HEADERS` may not set: the transport's, the forwarding headers the
/// paywall writes itself, and the paywall's own.
const RESERVED_ORIGIN_HEADERS: [&str; 17] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "forwarded",
    "x-real-ip",
    "payment-signature",
    "x-payment",
    "x402-session",
];

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where requests are forwarded.
    pub origin: OriginTarget,
    /// `ORIGIN_HEADERS`: added to every forwarded request, replacing client copies. Values are
    /// marked sensitive and never appear in errors or logs.
    pub origin_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// `MODE`: enforce (default) or shadow.
    pub mode: Mode,
    /// `DECISION_LOG`: which decisions are logged.
    pub decision_log: DecisionLog,
    /// The facilitators, in the order they are tried (`FACILITATOR_URL`); at least one.
    pub facilitators: Vec<Facilitator>,
    /// Time limit for the origin to start answering, seconds.
    pub origin_timeout_seconds: u64,
    /// Time limit for one facilitator call, seconds.
    pub facilitator_timeout_seconds: u64,
    pub cors: CorsPolicy,
    pub routes: Vec<Route>,
    /// Seconds a payer's last successful settlement counts as good standing (`auto` policy).
    pub good_standing_seconds: u64,
    /// `DENYLIST`: payers refused before the origin and the facilitator.
    pub denylist: Vec<Address>,
    /// The admin endpoint, when `ADMIN_TOKEN` is set.
    pub admin: Option<AdminEndpoint>,
    /// `PUBLIC_URL`: the browser-visible `scheme://authority` of the paywall. Wallet sign-in
    /// (`sign-in-with-x`) is on only when it is set: the spec binds signatures to it, never to
    /// request headers.
    pub public_url: Option<String>,
    /// `RPC_URL`: an EVM JSON-RPC endpoint (read-only calls) from which an unknown settlement
    /// outcome is decided ([`crate::evidence`]). `None`: "nonce already used" after this
    /// ledger's own send mark is taken as paid (the README states the assumption).
    pub rpc_url: Option<String>,
    /// `SIGN_IN_SECRET`: the key of the MAC that makes sign-in nonces server-issued
    /// ([`crate::siwx::issue_nonce`]); required while sign-in is on (`PUBLIC_URL` and a route that
    /// sells a pass).
    pub sign_in_key: Option<crate::siwx::NonceKey>,
    /// The `/.well-known/x402` document, built once from the routes ([`crate::discovery`]).
    pub well_known: WellKnown,
}

/// The admin endpoint: `POST {path}/revoke?pass=<token>` or `?payer=<address>`, and
/// `POST {path}/deny?payer=<address>`, authenticated by `Authorization: Bearer {token}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminEndpoint {
    /// Canonical path prefix, without trailing `/` (default `/.well-known/x402/admin`).
    pub path: String,
    /// `ADMIN_TOKEN` (secret), at least [`MIN_ADMIN_TOKEN_LEN`] characters.
    pub token: String,
}

/// Shortest `ADMIN_TOKEN` accepted.
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

/// Shortest `SIGN_IN_SECRET` accepted.
pub const MIN_SIGN_IN_SECRET_LEN: usize = 32;

/// Seconds a client needs between signing an authorization and the paywall receiving it, on
/// top of [`Config::min_validity_seconds`], when checking `maxTimeoutSeconds` at configuration.
pub const CLIENT_LATENCY_SECONDS: u64 = 10;

/// Clock skew tolerated above `maxTimeoutSeconds` in an authorization's `validBefore`.
pub const CLOCK_SKEW_SECONDS: u64 = 60;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawOffer {
    price: Option<String>,
    amount: Option<String>,
    asset: Option<String>,
    decimals: Option<u8>,
    name: Option<String>,
    version: Option<String>,
    network: Option<String>,
    pay_to: Option<String>,
    max_timeout_seconds: Option<u64>,
}

const OFFER_KEYS: [&str; 9] = ["price", "amount", "asset", "decimals", "name", "version", "network", "payTo", "maxTimeoutSeconds"];
const ROUTE_KEYS: [&str; 10] = ["route", "description", "mimeType", "pass", "group", "free", "accepts", "verify", "settle", "rateLimit"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRoute {
    route: String,
    description: Option<String>,
    mime_type: Option<String>,
    #[serde(default)]
    pass: Option<Value>,
    group: Option<String>,
    #[serde(default)]
    free: bool,
    verify: Option<String>,
    settle: Option<String>,
    rate_limit: Option<Value>,
}

/// How the paywall authenticates its calls to one facilitator.
#[derive(Clone, PartialEq, Eq)]
pub enum FacilitatorAuth {
    /// No `Authorization` header.
    None,
    /// The value of this facilitator's secret (`FACILITATOR_AUTH` or `FACILITATOR_AUTH_<NAME>`),
    /// sent verbatim as the `Authorization` header.
    Header(String),
    /// A fresh CDP JWT per call (`Authorization: Bearer <jwt>`), signed with the CDP API key
    /// (`CDP_API_KEY_ID`, `CDP_API_KEY_SECRET`); see [`crate::cdp`].
    Cdp(std::rc::Rc<CdpKey>),
}

impl std::fmt::Debug for FacilitatorAuth {
    /// Names the mode, never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FacilitatorAuth::None => f.write_str("none"),
            FacilitatorAuth::Header(_) => f.write_str("header"),
            FacilitatorAuth::Cdp(k) => write!(f, "cdp({})", k.id),
        }
    }
}

/// One facilitator: its base URL (no trailing `/`; `/verify` and `/settle` are appended) and how
/// calls to it are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facilitator {
    pub url: String,
    pub auth: FacilitatorAuth,
}

/// Most facilitators `FACILITATOR_URL` may list.
pub const MAX_FACILITATORS: usize = 4;

/// Prefix of the secrets that hold one facilitator's credentials (`FACILITATOR_AUTH_<NAME>`),
/// named by that facilitator's `auth` in `FACILITATOR_URL`.
pub const FACILITATOR_AUTH_PREFIX: &str = "FACILITATOR_AUTH_";

/// Whether `name` is `FACILITATOR_AUTH` or `FACILITATOR_AUTH_<NAME>` (`<NAME>`: `A-Z`, `0-9`, `_`).
pub fn is_facilitator_auth_var(name: &str) -> bool {
    name == "FACILITATOR_AUTH"
        || name.strip_prefix(FACILITATOR_AUTH_PREFIX).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'))
}

/// `FACILITATOR_URL`: one URL, a comma-separated list, or a JSON array whose entries are URLs or
/// `{"url": …, "auth": …}`. Credentials are per facilitator, so a fallback never receives
/// another facilitator's secret. An entry's `auth` is `"none"`, `"cdp"` (a CDP JWT per call,
/// signed with `CDP_API_KEY_ID` / `CDP_API_KEY_SECRET`), or the name of the secret holding its
/// credentials: `FACILITATOR_AUTH` (`"header"` is kept as another name for it) or
/// `FACILITATOR_AUTH_<NAME>`; such a secret's value `cdp` means CDP, any other value is sent as
/// the `Authorization` header. An entry without `auth`: the first facilitator takes
/// `FACILITATOR_AUTH` (the single-facilitator form), every later one sends nothing.
fn facilitators(vars: &Map<String, Value>) -> Result<Vec<Facilitator>, ConfigError> {
    // The CDP key is parsed once, however many facilitators use it.
    let key = std::cell::OnceCell::new();
    let cdp = || -> Result<FacilitatorAuth, ConfigError> {
        let parsed = key.get_or_init(|| {
            let id = string_var(vars, "CDP_API_KEY_ID")?;
            let secret = string_var(vars, "CDP_API_KEY_SECRET")?;
            match (id, secret) {
                (Some(id), Some(secret)) => Ok(std::rc::Rc::new(CdpKey::parse(&id, &secret).map_err(ConfigError)?)),
                _ => err("CDP facilitator authentication needs the secrets CDP_API_KEY_ID and CDP_API_KEY_SECRET"),
            }
        });
        parsed.clone().map(FacilitatorAuth::Cdp)
    };
    // The credentials a secret holds: `cdp`, else its value as the header; unset: `None`.
    let from_secret = |name: &str| -> Result<Option<FacilitatorAuth>, ConfigError> {
        match string_var(vars, name)? {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("cdp") => cdp().map(Some),
            Some(v) => Ok(Some(FacilitatorAuth::Header(v))),
        }
    };
    let raw = match vars.get("FACILITATOR_URL") {
        Some(Value::Array(a)) => Value::Array(a.clone()),
        _ => match string_var(vars, "FACILITATOR_URL")? {
            None => return err("FACILITATOR_URL is not set"),
            Some(s) if s.starts_with('[') => serde_json::from_str(&s).or_else(|e| err(format!("FACILITATOR_URL is not a valid JSON array: {e}")))?,
            Some(s) => Value::Array(s.split(',').map(|u| Value::String(u.trim().to_string())).collect()),
        },
    };
    let Value::Array(entries) = raw else { return err("FACILITATOR_URL must be a URL or a list of them") };
    if entries.is_empty() || entries.len() > MAX_FACILITATORS {
        return err(format!("FACILITATOR_URL lists {} facilitators: use 1 to {MAX_FACILITATORS}", entries.len()));
    }
    let mut list: Vec<Facilitator> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("FACILITATOR_URL[{i}]");
        let (url, auth) = match entry {
            Value::String(u) => (u.as_str(), None),
            Value::Object(o) => {
                if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "url" | "auth")) {
                    return err(format!("{at}: unknown key {}", shown(k)));
                }
                let Some(Value::String(u)) = o.get("url") else { return err(format!("{at}: `url` must be a string")) };
                (u.as_str(), o.get("auth"))
            }
            _ => return err(format!("{at}: must be a URL or {{\"url\", \"auth\"}}")),
        };
        let auth = match auth {
            None if i == 0 => from_secret("FACILITATOR_AUTH")?.unwrap_or(FacilitatorAuth::None),
            None => FacilitatorAuth::None,
            Some(Value::String(a)) if a == "none" => FacilitatorAuth::None,
            Some(Value::String(a)) if a == "cdp" => cdp()?,
            Some(Value::String(a)) if a == "header" || is_facilitator_auth_var(a) => {
                let name = if a == "header" { "FACILITATOR_AUTH" } else { a.as_str() };
                from_secret(name)?.ok_or_else(|| ConfigError(format!("{at}: auth names the secret {name}, which is not set")))?
            }
            Some(_) => return err(format!("{at}: auth must be \"none\", \"cdp\", or the name of a secret: FACILITATOR_AUTH or {FACILITATOR_AUTH_PREFIX}<NAME> (A-Z, 0-9, _)")),
        };
        let url = http_url(&at, url)?;
        require_tls(&at, &url)?;
        if list.iter().any(|f| f.url == url) {
            return err(format!("{at}: {} is listed twice", shown(&url)));
        }
        list.push(Facilitator { url, auth });
    }
    Ok(list)
}

/// Reads a variable as a string (vars are strings; TOML numbers arrive as JSON numbers).
fn string_var(vars: &Map<String, Value>, name: &str) -> Result<Option<String>, ConfigError> {
    match vars.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => err(format!("{name} must be a string")),
    }
}

fn u64_var(vars: &Map<String, Value>, name: &str, default: u64) -> Result<u64, ConfigError> {
    match string_var(vars, name)? {
        None => Ok(default),
        Some(s) => s.parse().or_else(|_| err(format!("{name} must be a whole number of seconds, got {}", shown(&s)))),
    }
}

/// Parses an absolute `http(s)` URL without query, fragment or userinfo, returning
/// `scheme://authority[/path]` without a trailing `/`.
fn http_url(name: &str, s: &str) -> Result<String, ConfigError> {
    let v = shown_url(name, s);
    let u: http::Uri = s.parse().or_else(|e| err(format!("{name} {v} is not a URL: {e}")))?;
    let scheme = u.scheme_str().unwrap_or_default();
    let Some(authority) = u.authority() else { return err(format!("{name} {v} must be an absolute http(s) URL")) };
    if !matches!(scheme, "http" | "https") || authority.host().is_empty() {
        return err(format!("{name} {v} must be an absolute http(s) URL"));
    }
    if u.query().is_some() || authority.as_str().contains('@') {
        return err(format!("{name} {v} must not have a query or user information"));
    }
    Ok(format!("{scheme}://{}{}", authority.as_str().to_ascii_lowercase(), u.path().trim_end_matches('/')))
}

/// Refuses a plain `http://` URL (as [`http_url`] returns it) to anything but a loopback host
/// (`127.0.0.0/8`, `::1`, `localhost`): payments, facilitator credentials and paid content would
/// otherwise cross the network unencrypted. `name` is the variable, for the error.
fn require_tls(name: &str, url: &str) -> Result<(), ConfigError> {
    let Some(rest) = url.strip_prefix("http://") else { return Ok(()) };
    let authority = rest.split('/').next().unwrap_or_default();
    // `host:port`, `[v6]:port` or a bare host; http_url has already refused user information.
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return Ok(());
    }
    err(format!(
        "{name} {} uses http://, which is allowed only for a loopback host (127.0.0.0/8, ::1, localhost): payments and content would cross the network unencrypted; use https://",
        shown_url(name, url)
    ))
}

/// A URL variable's value for an error: [`shown`], except `ORIGIN_URL`, hidden whole: its host
/// would tell any client where to reach the API around the paywall.
fn shown_url(name: &str, url: &str) -> String {
    if name == "ORIGIN_URL" {
        format!("`{}`", hidden(url))
    } else {
        shown(url)
    }
}

/// Refuses a price table in which a route's price can never apply because an earlier route
/// takes every request it matches ([`RoutePattern::covers`]; the first matching route wins) and
/// charges less: it is free, or one of its payment options is below every option of the later
/// route in the same asset on the same network (an option in another asset or network counts as
/// cheaper: the two cannot be compared). Only the first earlier route that covers the later one
/// matters; partial overlaps (a carve-out such as a free `GET /premium/sample` before a priced
/// `GET /premium/*`) are not shadowing.
fn check_shadowing(routes: &[Route]) -> Result<(), ConfigError> {
    for (j, later) in routes.iter().enumerate().filter(|(_, r)| !r.is_free()) {
        let Some((i, earlier)) = routes[..j].iter().enumerate().find(|(_, r)| r.pattern.covers(&later.pattern)) else { continue };
        let cheaper = earlier.is_free()
            || earlier.accepts.iter().any(|e| !later.accepts.iter().any(|l| l.chain_id == e.chain_id && l.asset == e.asset && l.amount <= e.amount));
        if cheaper {
            return err(format!(
                "ROUTES[{i}] ({}) matches every request ROUTES[{j}] ({}) matches and {}, so the later price never applies: list the dearer route first, or narrow the earlier pattern",
                shown(&earlier.key),
                shown(&later.key),
                if earlier.is_free() { "is free" } else { "costs less (or is paid in another asset or network)" }
            ));
        }
    }
    Ok(())
}

/// A group-scoped pass must be sold by a member of its group, and may open another member only
/// if every way to buy it pays that member at least its price: each of the seller's payment
/// options (what a pass can be bought with) must match one of the member's options in network,
/// asset **and** `payTo` (else the member's recipient is not paid) at an amount equal or lower
/// (atomic units). A member's further options, which no pass is bought with, are not compared.
fn check_pass_groups(routes: &[Route]) -> Result<(), ConfigError> {
    for seller in routes {
        let Some(PassTerms { scope: PassScope::Group(g), .. }) = &seller.pass else { continue };
        if seller.group.as_deref() != Some(g.as_str()) {
            return err(format!("route {}: its pass opens group {} but the route is not in that group (add group = {})", shown(&seller.key), shown(g), shown(g)));
        }
        for member in routes.iter().filter(|r| r.group.as_deref() == Some(g.as_str()) && !r.is_free()) {
            for (i, offer) in seller.accepts.iter().enumerate() {
                let same_payment = |m: &&Offer| m.chain_id == offer.chain_id && m.asset == offer.asset && m.pay_to == offer.pay_to;
                let covered = member.accepts.iter().filter(same_payment).any(|m| m.amount <= offer.amount);
                if !covered {
                    let r = &offer.requirements;
                    let why = if member.accepts.iter().any(|m| same_payment(&m)) { "pays less than it charges" } else { "pays in a network, asset or recipient it does not accept" };
                    return err(format!(
                        "route {}: its pass (group {}) would open {}, but its payment option {i} ({} of {} on {} to {}) {why}",
                        shown(&seller.key),
                        shown(g),
                        shown(&member.key),
                        r.amount,
                        r.asset,
                        r.network,
                        r.pay_to
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Parses `ORIGIN_HEADERS`: a JSON object of header name → string value. Errors name the
/// header, never a value.
fn origin_headers(raw: Option<String>) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, ConfigError> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&raw) else {
        return err("ORIGIN_HEADERS must be a JSON object of header name to value, like {\"X-Paywall-Secret\": \"…\"}");
    };
    if map.len() > MAX_ORIGIN_HEADERS {
        return err(format!("ORIGIN_HEADERS has {} headers; at most {MAX_ORIGIN_HEADERS}", map.len()));
    }
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let Ok(header) = http::HeaderName::from_bytes(name.as_bytes()) else { return err(format!("ORIGIN_HEADERS: {} is not a header name", shown(&name))) };
        if RESERVED_ORIGIN_HEADERS.contains(&header.as_str()) {
            return err(format!("ORIGIN_HEADERS: {} is set by the paywall or the transport and cannot be configured", shown(&name)));
        }
        let Some(Ok(mut v)) = value.as_str().map(http::HeaderValue::from_str) else {
            return err(format!("ORIGIN_HEADERS: the value of {} must be a string of visible ASCII", shown(&name)));
        };
        v.set_sensitive(true);
        out.push((header, v));
    }
    Ok(out)
}

/// What replaces the removed session lifetimes, for their configuration errors.
const SESSIONS_REMOVED: &str = "paid sessions were replaced by passes: a price is now per request unless the route sells a pass, e.g. pass = { ttl = \"1h\" } (README, \"Pricing\")";

fn cors_policy(s: Option<String>) -> Result<CorsPolicy, ConfigError> {
    let Some(s) = s else { return Ok(CorsPolicy::Any) };
    match s.as_str() {
        "*" => Ok(CorsPolicy::Any),
        "none" => Ok(CorsPolicy::Off),
        list => {
            let mut out = Vec::new();
            for o in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
                let origin = http_url("CORS_ALLOWED_ORIGINS", o)?;
                if origin.matches('/').count() != 2 {
                    return err(format!("CORS_ALLOWED_ORIGINS: {} is not a bare origin like https://app.example.com", shown(o)));
                }
                out.push(origin);
            }
            Ok(CorsPolicy::List(out))
        }
    }
}

/// Defaults every offer inherits.
struct Defaults {
    pay_to: Option<String>,
    network: String,
    max_timeout_seconds: u64,
}

fn parse_offer(at: &str, r: &RawOffer, d: &Defaults) -> Result<Offer, ConfigError> {
    let network_id = r.network.clone().unwrap_or_else(|| d.network.clone());
    let known = network_by_id(&network_id);
    let caip2 = match known {
        Some(n) => n.caip2.to_string(),
        None => network_id.clone(),
    };
    let chain_id = caip2_chain_id(&caip2)
        .ok_or_else(|| ConfigError(format!("{at}: network `{network_id}` is not an eip155:<chainId> CAIP-2 id or a known v1 name")))?;
    let pay_to_s = r.pay_to.clone().or_else(|| d.pay_to.clone()).ok_or_else(|| ConfigError(format!("{at}: no payTo and PAY_TO is not set")))?;
    let pay_to = Address::parse(&pay_to_s).ok_or_else(|| ConfigError(format!("{at}: payTo `{pay_to_s}` is not a 0x-prefixed 20-byte address")))?;

    // The asset and its EIP-712 domain: explicit, or the network's default USDC.
    let (asset, name, version, decimals) = match &r.asset {
        Some(a) => {
            let asset = Address::parse(a).ok_or_else(|| ConfigError(format!("{at}: asset `{a}` is not a 0x-prefixed 20-byte address")))?;
            let default = known.filter(|n| Address::parse(n.usdc) == Some(asset));
            let name = r.name.clone().or(default.map(|n| n.usdc_name.to_string()));
            let version = r.version.clone().or(default.map(|n| n.usdc_version.to_string()));
            let (Some(name), Some(version)) = (name, version) else {
                return err(format!("{at}: asset {a} is not this network's default USDC, so its EIP-712 `name` and `version` must be given"));
            };
            (asset, name, version, r.decimals.or(default.map(|n| n.usdc_decimals)))
        }
        None => {
            let Some(n) = known else {
                return err(format!("{at}: network `{network_id}` has no built-in USDC; give `asset`, `name`, `version` and `amount` or `decimals`"));
            };
            let asset = Address::parse(n.usdc).ok_or_else(|| ConfigError("built-in table".into()))?;
            (asset, r.name.clone().unwrap_or(n.usdc_name.into()), r.version.clone().unwrap_or(n.usdc_version.into()), Some(n.usdc_decimals))
        }
    };
    let amount = match (&r.price, &r.amount) {
        (Some(p), None) => {
            let d = decimals.ok_or_else(|| ConfigError(format!("{at}: `price` needs the asset's `decimals`")))?;
            price_to_atomic(p, d).or_else(|e| err(format!("{at}: price `{p}`: {e}")))?
        }
        (None, Some(a)) => {
            if r.asset.is_none() {
                return err(format!("{at}: `amount` is in atomic units and needs an explicit `asset`"));
            }
            match crate::evm::parse_uint256(a) {
                Some(v) if v > U256::ZERO => v,
                _ => return err(format!("{at}: amount `{a}` must be a positive decimal integer below 2^256")),
            }
        }
        _ => return err(format!("{at}: give exactly one of `price` and `amount`")),
    };
    let max_timeout_seconds = r.max_timeout_seconds.unwrap_or(d.max_timeout_seconds);
    if max_timeout_seconds < 10 {
        return err(format!("{at}: maxTimeoutSeconds {max_timeout_seconds} is below 10 seconds"));
    }
    let requirements = PaymentRequirements {
        scheme: "exact".into(),
        network: caip2,
        amount: amount.to_string(),
        asset: asset.to_checksum(),
        pay_to: pay_to.to_checksum(),
        max_timeout_seconds,
        extra: Eip712Extra { name: name.clone(), version: version.clone() },
    };
    let requirements_json = serde_json::to_value(&requirements).or_else(|e| err(e.to_string()))?;
    let domain_separator = Eip712Domain { name, version, chain_id, verifying_contract: asset }.separator();
    let v1_network = known.filter(|n| n.chain_id == chain_id).and_then(|n| n.v1_name);
    Ok(Offer { requirements, requirements_json, v1_network, amount, asset, pay_to, chain_id, domain_separator })
}

fn check_keys(at: &str, obj: &Map<String, Value>, allowed: &[&[&str]]) -> Result<(), ConfigError> {
    let anywhere: [&[&str]; 3] = [&ROUTE_KEYS, &OFFER_KEYS, &crate::discovery::ROUTE_KEYS];
    for k in obj.keys() {
        if !allowed.iter().any(|set| set.contains(&k.as_str())) {
            if anywhere.iter().any(|set| set.contains(&k.as_str())) {
                // A key of another kind of entry (`price` on a free route, a route key in an offer).
                let list: Vec<&str> = allowed.iter().flat_map(|set| set.iter().copied()).collect();
                return err(format!("{at}: unknown field {} here; this entry takes: {}", shown(k), list.join(", ")));
            }
            return Err(unknown_key(k, at, allowed));
        }
    }
    Ok(())
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

impl Config {
    /// Builds the configuration from the Worker's variables (name → JSON value).
    ///
    /// Errors name the variable (and route) at fault; nothing here panics on any input.
    pub fn from_vars(vars: &Map<String, Value>) -> Result<Config, ConfigError> {
        if let Some((name, meant)) = misspelt_vars(vars).into_iter().next() {
            return Err(misspelt_var_error(&name, meant));
        }
        let origin = match (string_var(vars, "ORIGIN_URL")?, vars.get("ORIGIN_SERVICE")) {
            (Some(_), Some(Value::Bool(true))) => return err("set either ORIGIN_URL or the ORIGIN_SERVICE service binding, not both"),
            (None, Some(Value::Bool(true))) => OriginTarget::Service,
            (_, Some(_)) => return err("ORIGIN_SERVICE must be a service binding ([[services]] in wrangler.toml), not a variable"),
            (Some(url), None) => {
                let base = http_url("ORIGIN_URL", &url)?;
                require_tls("ORIGIN_URL", &base)?;
                let prefix = base.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap_or_default();
                OriginTarget::Url { base, prefix }
            }
            (None, None) => return err("ORIGIN_URL is not set (or bind the origin Worker as ORIGIN_SERVICE)"),
        };
        let origin_headers = origin_headers(string_var(vars, "ORIGIN_HEADERS")?)?;
        let facilitators = facilitators(vars)?;
        let defaults = Defaults {
            pay_to: string_var(vars, "PAY_TO")?,
            network: string_var(vars, "NETWORK")?.unwrap_or_else(|| "eip155:84532".into()),
            max_timeout_seconds: u64_var(vars, "MAX_TIMEOUT_SECONDS", 300)?,
        };
        if let Some(p) = defaults.pay_to.as_deref().filter(|p| Address::parse(p).is_none()) {
            return err(format!("PAY_TO {} is not a 0x-prefixed 20-byte address (40 hex digits)", shown(p)));
        }
        if vars.get("SESSION_TTL_SECONDS").is_some_and(|v| !v.is_null()) {
            return err(format!("SESSION_TTL_SECONDS is no longer read: {SESSIONS_REMOVED}"));
        }
        let cors = cors_policy(string_var(vars, "CORS_ALLOWED_ORIGINS")?)?;
        let timeout = |name: &str| -> Result<u64, ConfigError> {
            match u64_var(vars, name, 30)? {
                t @ 1..=300 => Ok(t),
                t => err(format!("{name} is {t}: use 1 to 300 seconds")),
            }
        };
        let origin_timeout_seconds = timeout("ORIGIN_TIMEOUT_SECONDS")?;
        let facilitator_timeout_seconds = timeout("FACILITATOR_TIMEOUT_SECONDS")?;

        let routes_value = match vars.get("ROUTES") {
            None | Some(Value::Null) => return err("ROUTES is not set"),
            Some(Value::String(s)) => serde_json::from_str::<Value>(s).or_else(|e| err(format!("ROUTES is not valid JSON: {e}")))?,
            Some(v) => v.clone(),
        };
        let Value::Array(entries) = routes_value else { return err("ROUTES must be an array of routes") };
        let default_limits = match vars.get("RATE_LIMITS").filter(|v| !v.is_null()) {
            Some(v) => RateLimits::parse("RATE_LIMITS", v)?,
            None => RateLimits::default(),
        };
        let decision_log = match string_var(vars, "DECISION_LOG")?.as_deref() {
            None | Some("all") => DecisionLog::All,
            Some("payments") => DecisionLog::Payments,
            Some("none") => DecisionLog::None,
            Some(m) => return err(format!("DECISION_LOG {} must be \"all\", \"payments\" or \"none\"", shown(m))),
        };
        let mode = match string_var(vars, "MODE")?.as_deref() {
            None | Some("enforce") => Mode::Enforce,
            Some("shadow") => Mode::Shadow,
            Some(m) => return err(format!("MODE {} must be \"enforce\" or \"shadow\"", shown(m))),
        };
        let mut routes = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let Value::Object(obj) = entry else { return err(format!("ROUTES[{i}] must be an object")) };
            let every_key: [&[&str]; 3] = [&ROUTE_KEYS, &OFFER_KEYS, &crate::discovery::ROUTE_KEYS];
            if let Some(k) = obj.keys().find(|k| *k != "sessionTtlSeconds" && !every_key.iter().any(|set| set.contains(&k.as_str()))) {
                let at = match obj.get("route").and_then(Value::as_str) {
                    Some(route) => format!("ROUTES[{i}] ({})", shown(route)),
                    None => format!("ROUTES[{i}]"),
                };
                return Err(unknown_key(k, &at, &every_key));
            }
            let r: RawRoute = serde_json::from_value(entry.clone()).or_else(|e| err(format!("ROUTES[{i}]: {e}")))?;
            let at = format!("ROUTES[{i}] ({})", shown(&r.route));
            if obj.contains_key("sessionTtlSeconds") {
                return err(format!("{at}: sessionTtlSeconds is no longer read: {SESSIONS_REMOVED}"));
            }
            let pattern = RoutePattern::parse(&r.route).or_else(|e| err(format!("{at}: {e}")))?;
            let inline = OFFER_KEYS.iter().any(|k| obj.contains_key(*k));
            let accepts = if r.free {
                check_keys(&at, obj, &[&["route", "description", "free", "group"]])?;
                Vec::new()
            } else if let Some(list) = obj.get("accepts") {
                check_keys(&at, obj, &[&ROUTE_KEYS, &crate::discovery::ROUTE_KEYS])?;
                let Value::Array(list) = list else { return err(format!("{at}: `accepts` must be an array")) };
                if list.is_empty() {
                    return err(format!("{at}: `accepts` is empty (use `free = true` for a free route)"));
                }
                let mut offers = Vec::with_capacity(list.len());
                for (j, o) in list.iter().enumerate() {
                    let oat = format!("{at} accepts[{j}]");
                    let Value::Object(oobj) = o else { return err(format!("{oat} must be an object")) };
                    check_keys(&oat, oobj, &[&OFFER_KEYS])?;
                    let raw: RawOffer = serde_json::from_value(o.clone()).or_else(|e| err(format!("{oat}: {e}")))?;
                    offers.push(parse_offer(&oat, &raw, &defaults)?);
                }
                offers
            } else if inline {
                check_keys(&at, obj, &[&ROUTE_KEYS, &OFFER_KEYS, &crate::discovery::ROUTE_KEYS])?;
                let raw: RawOffer = serde_json::from_value(entry.clone()).or_else(|e| err(format!("{at}: {e}")))?;
                vec![parse_offer(&at, &raw, &defaults)?]
            } else {
                return err(format!("{at}: give a `price`, an `amount`, an `accepts` list, or `free = true`"));
            };
            for (a, x) in accepts.iter().enumerate() {
                if accepts[..a].iter().any(|y| y.requirements == x.requirements) {
                    return err(format!("{at}: payment option {a} repeats an earlier one"));
                }
            }
            let verify = match r.verify.as_deref() {
                None | Some("auto") => VerifyPolicy::Auto,
                Some("always") => VerifyPolicy::Always,
                Some("local") => VerifyPolicy::Local,
                Some(v) => return err(format!("{at}: verify `{v}` must be \"auto\", \"always\" or \"local\"")),
            };
            let settle = match r.settle.as_deref() {
                None | Some("after") => SettleOrder::After,
                Some("before") => SettleOrder::Before,
                Some(v) => return err(format!("{at}: settle `{v}` must be \"after\" or \"before\"")),
            };
            let min_window = origin_timeout_seconds + facilitator_timeout_seconds + VALID_BEFORE_SLACK_SECONDS + CLIENT_LATENCY_SECONDS;
            if let Some(o) = accepts.iter().find(|o| o.requirements.max_timeout_seconds < min_window) {
                return err(format!(
                    "{at}: maxTimeoutSeconds {} is too short for ORIGIN_TIMEOUT_SECONDS ({origin_timeout_seconds}) + FACILITATOR_TIMEOUT_SECONDS ({facilitator_timeout_seconds}) + {} s: an authorization signed for it would expire before it could settle; use at least {min_window}",
                    o.requirements.max_timeout_seconds,
                    VALID_BEFORE_SLACK_SECONDS + CLIENT_LATENCY_SECONDS
                ));
            }
            let key = r.route.split_whitespace().collect::<Vec<_>>().join(" ");
            let route_path = key.split_once(' ').map_or(key.as_str(), |(_, p)| p).to_string();
            let pass = match &r.pass {
                Some(v) if !r.free => Some(parse_pass(&at, v, &route_path)?),
                Some(_) => return err(format!("{at}: a free route cannot sell a pass")),
                None => None,
            };
            let discovery = if r.free { RouteDiscovery::default() } else { RouteDiscovery::parse(&at, obj, &key, &pattern)? };
            routes.push(Route {
                key,
                pattern,
                description: r.description,
                mime_type: r.mime_type,
                pass,
                group: r.group.map(|g| g.trim().to_string()).filter(|g| !g.is_empty()),
                accepts,
                verify,
                settle,
                rate_limits: match &r.rate_limit {
                    Some(v) => RateLimits::parse(&format!("{at} rateLimit"), v)?,
                    None => default_limits.clone(),
                },
                discovery,
                challenge_layouts: ChallengeLayouts::default(),
            });
        }
        check_pass_groups(&routes)?;
        check_shadowing(&routes)?;
        if let Some(name) = price_looking_var(vars).filter(|_| routes.iter().all(Route::is_free)) {
            return err(format!(
                "{} looks like a price, but no route in ROUTES is priced: the paywall reads prices only from ROUTES (a [[vars.ROUTES]] entry with price = \"$0.01\")",
                shown(name)
            ));
        }
        let good_standing_seconds = u64_var(vars, "VERIFY_GOOD_STANDING_SECONDS", 86_400)?;
        let mut denylist = Vec::new();
        for a in string_var(vars, "DENYLIST")?.unwrap_or_default().split(',').map(str::trim).filter(|a| !a.is_empty()) {
            denylist.push(Address::parse(a).ok_or_else(|| ConfigError(format!("DENYLIST: {} is not a 0x-prefixed 20-byte address", shown(a))))?);
        }
        let admin = match string_var(vars, "ADMIN_TOKEN")? {
            None => None,
            Some(token) if token.len() < MIN_ADMIN_TOKEN_LEN => return err(format!("ADMIN_TOKEN is shorter than {MIN_ADMIN_TOKEN_LEN} characters")),
            Some(token) => {
                let raw = string_var(vars, "ADMIN_PATH")?.unwrap_or_else(|| "/.well-known/x402/admin".into());
                let path = crate::route::canonicalize(&raw).ok().filter(|c| c == &raw || c.trim_end_matches('/') == raw.trim_end_matches('/'));
                let Some(path) = path.map(|p| p.trim_end_matches('/').to_string()).filter(|p| !p.is_empty()) else {
                    return err(format!("ADMIN_PATH {} must be a canonical absolute path other than /", shown(&raw)));
                };
                Some(AdminEndpoint { path, token })
            }
        };
        let public_url = match string_var(vars, "PUBLIC_URL")? {
            None => None,
            Some(u) => {
                let url = http_url("PUBLIC_URL", &u)?;
                if url.matches('/').count() != 2 {
                    return err(format!("PUBLIC_URL {} must be a bare origin like https://api.example.com", shown(&u)));
                }
                Some(url)
            }
        };
        let rpc_url = match string_var(vars, "RPC_URL")? {
            None => None,
            Some(u) => {
                let url = http_url("RPC_URL", &u)?;
                require_tls("RPC_URL", &url)?;
                Some(url)
            }
        };
        // Wallet sign-in is on with PUBLIC_URL on routes that sell a pass; its nonces need a key.
        let sign_in_key = match string_var(vars, "SIGN_IN_SECRET")? {
            Some(secret) if secret.len() < MIN_SIGN_IN_SECRET_LEN => return err(format!("SIGN_IN_SECRET is shorter than {MIN_SIGN_IN_SECRET_LEN} characters")),
            Some(secret) => Some(crate::siwx::NonceKey::new(&secret)),
            None if public_url.is_some() && routes.iter().any(|r| r.pass.is_some()) => {
                return err(format!(
                    "SIGN_IN_SECRET is not set: with PUBLIC_URL, routes that sell a pass offer wallet sign-in, whose nonces are signed with this secret; set a random value of at least {MIN_SIGN_IN_SECRET_LEN} characters (wrangler secret put SIGN_IN_SECRET)"
                ))
            }
            None => None,
        };
        let well_known = WellKnown::build(&routes, public_url.is_some());
        Ok(Config {
            rpc_url,
            origin,
            origin_headers,
            facilitators,
            mode,
            decision_log,
            origin_timeout_seconds,
            facilitator_timeout_seconds,
            cors,
            routes,
            good_standing_seconds,
            denylist,
            admin,
            public_url,
            sign_in_key,
            well_known,
        })
    }

    /// Seconds an authorization's `validBefore` must lie beyond now for the paywall to call the
    /// origin and settle within the time limits: origin + facilitator + the 6 s block slack.
    pub fn min_validity_seconds(&self) -> u64 {
        self.origin_timeout_seconds + self.facilitator_timeout_seconds + VALID_BEFORE_SLACK_SECONDS
    }

    /// Whether a priced route's pattern covers these matching-form `segments`, for any method.
    pub fn is_priced_path(&self, segments: &[String]) -> bool {
        self.routes.iter().any(|r| !r.is_free() && r.pattern.matches_path(segments))
    }

    /// The `Allow` header value for a path: the methods the routes covering it list (a route
    /// without a method lists the common ones), `HEAD` with `GET`, and `OPTIONS`, which the
    /// paywall answers on priced paths.
    pub fn allowed_methods(&self, segments: &[String]) -> String {
        const ANY: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
        let mut out: Vec<String> = Vec::new();
        let mut add = |m: &str| {
            if !out.iter().any(|o| o == m) {
                out.push(m.to_string());
            }
        };
        for r in self.routes.iter().filter(|r| r.pattern.matches_path(segments)) {
            match r.pattern.method() {
                None => ANY.iter().for_each(|m| add(m)),
                Some(m) => {
                    add(m.as_str());
                    if *m == http::Method::GET {
                        add("HEAD");
                    }
                }
            }
        }
        add("OPTIONS");
        out.join(", ")
    }

    /// The first route (in configuration order) that matches, if any.
    pub fn route_for(&self, method: &http::Method, segments: &[String]) -> Option<&Route> {
        self.routes.iter().find(|r| r.pattern.matches(method, segments))
    }

    /// What each route charges, one line per route in configuration order, for the start line
    /// and `x402-check`: `GET /weather: 0.01 USDC (10000 atomic units of 0x036C…) on
    /// eip155:84532, payTo 0x90F7…` (options joined by ` or `, a pass's terms after ` for `);
    /// `GET /free: free`.
    pub fn price_lines(&self) -> Vec<String> {
        self.routes
            .iter()
            .map(|r| {
                if r.is_free() {
                    return format!("{}: free", r.key);
                }
                let options: Vec<String> = r.accepts.iter().map(Offer::summary).collect();
                let pass = r.pass.as_ref().map(|p| format!(" for a pass: {}", p.summary)).unwrap_or_default();
                format!("{}: {}{pass}", r.key, options.join(" or "))
            })
            .collect()
    }

    /// Problems that do not stop the Worker but deserve a loud line at start-up (and a warning
    /// from `x402-check`): `PAY_TO` set while no route is priced (every request is proxied free).
    pub fn warnings(&self, vars: &Map<String, Value>) -> Vec<String> {
        let mut out = Vec::new();
        if self.routes.iter().all(Route::is_free) && vars.get("PAY_TO").is_some_and(|v| !v.is_null() && v.as_str() != Some("")) {
            out.push("PAY_TO is set but no route in ROUTES is priced: every request is proxied free".to_string());
        }
        out
    }
}

impl Offer {
    /// The option in words: `0.01 USDC (10000 atomic units of 0x036C…) on eip155:84532, payTo
    /// 0x90F7…` (the whole-token figure only for the network's built-in USDC, whose decimals are
    /// known).
    pub fn summary(&self) -> String {
        let r = &self.requirements;
        let decimals = network_by_id(&r.network).filter(|n| Address::parse(n.usdc) == Some(self.asset)).map(|n| n.usdc_decimals);
        let whole = match decimals {
            Some(d) => {
                let digits = format!("{:0>width$}", self.amount.to_string(), width = usize::from(d) + 1);
                let (int, frac) = digits.split_at(digits.len() - usize::from(d));
                let frac = frac.trim_end_matches('0');
                format!("{int}{}{frac} {} (", if frac.is_empty() { "" } else { "." }, r.extra.name)
            }
            None => String::new(),
        };
        let close = if whole.is_empty() { "" } else { ")" };
        format!("{whole}{} atomic units of {}{close} on {}, payTo {}", r.amount, r.asset, r.network, r.pay_to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(routes: Value) -> Map<String, Value> {
        let v = json!({
            "ORIGIN_URL": "http://127.0.0.1:9000/api",
            "FACILITATOR_URL": "http://127.0.0.1:9001/",
            "PAY_TO": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "ROUTES": routes,
        });
        v.as_object().unwrap().clone()
    }

    fn cfg_err(routes: Value) -> String {
        Config::from_vars(&vars(routes)).unwrap_err().0
    }

    #[test]
    fn the_warm_up_configuration_is_valid_and_prices_its_route() {
        let c = Config::from_vars(&warm_up_vars()).expect("the start-up warm-up's variables parse");
        assert_eq!(c.routes.len(), 1);
        assert!(!c.routes[0].is_free());
        assert_eq!(c.routes[0].accepts[0].amount, U256::from(10_000u64));
    }

    #[test]
    fn dollar_price_on_default_network_uses_its_usdc() {
        let c = Config::from_vars(&vars(json!([{ "route": "GET /weather", "price": "$0.01", "description": "w" }]))).unwrap();
        assert_eq!(c.facilitators, vec![Facilitator { url: "http://127.0.0.1:9001".into(), auth: FacilitatorAuth::None }]);
        let o = &c.routes[0].accepts[0];
        assert_eq!(o.requirements.amount, "10000");
        assert_eq!(o.requirements.network, "eip155:84532");
        assert_eq!(o.requirements.asset, "0x036CbD53842c5426634e7929541eC2318f3dCF7e");
        assert_eq!(o.requirements.extra, Eip712Extra { name: "USDC".into(), version: "2".into() });
        assert_eq!(o.requirements.max_timeout_seconds, 300);
        assert_eq!(crate::evm::hex_0x(&o.domain_separator), "0x71f17a3b2ff373b803d70a5a07c046c1a2bc8e89c09ef722fcb047abe94c9818");
        assert_eq!(c.routes[0].pass, None, "per request unless a pass is sold");
    }

    #[test]
    fn routes_may_be_a_json_string_and_v1_names_map_to_caip2() {
        let c = Config::from_vars(&vars(json!(r#"[{"route":"/p/*","price":"$0.001","network":"base"}]"#))).unwrap();
        let o = &c.routes[0].accepts[0];
        assert_eq!(o.requirements.network, "eip155:8453");
        assert_eq!(o.requirements.amount, "1000");
        assert_eq!(o.requirements.extra.name, "USD Coin");
    }

    #[test]
    fn atomic_amount_with_explicit_asset_and_domain() {
        let c = Config::from_vars(&vars(json!([{
            "route": "POST /big", "amount": "115792089237316195423570985008687907853269984665640564039457584007913129639935",
            "asset": "0x00000000000000000000000000000000000000aa", "name": "Token", "version": "1", "network": "eip155:31337"
        }]))).unwrap();
        assert_eq!(c.routes[0].accepts[0].amount, U256::MAX);
        assert_eq!(c.routes[0].accepts[0].chain_id, 31337);
    }

    #[test]
    fn several_payment_options_with_their_own_network_asset_and_pay_to() {
        let c = Config::from_vars(&vars(json!([{
            "route": "GET /multi", "description": "two ways",
            "accepts": [
                { "price": "$0.01" },
                { "price": "$0.02", "network": "eip155:8453", "payTo": "0x90F79bf6EB2c4f870365E785982E1f101E93b906" },
                { "amount": "7", "asset": "0x00000000000000000000000000000000000000aa", "name": "T", "version": "1", "network": "eip155:42161" }
            ]
        }]))).unwrap();
        let a = &c.routes[0].accepts;
        assert_eq!(a.len(), 3);
        assert_eq!((a[0].requirements.network.as_str(), a[0].requirements.amount.as_str(), a[0].v1_network), ("eip155:84532", "10000", Some("base-sepolia")));
        assert_eq!((a[1].requirements.network.as_str(), a[1].requirements.amount.as_str()), ("eip155:8453", "20000"));
        assert_eq!(a[1].requirements.pay_to, "0x90F79bf6EB2c4f870365E785982E1f101E93b906");
        assert_eq!(a[0].requirements.pay_to, "0x209693Bc6afc0C5328bA36FaF03C514EF312287C");
        assert_eq!((a[2].requirements.amount.as_str(), a[2].chain_id, a[2].v1_network), ("7", 42161, None));
        let v1 = a[0].requirements_v1("https://x/multi", Some("two ways"), None).unwrap();
        assert_eq!((v1.network.as_str(), v1.max_amount_required.as_str(), v1.resource.as_str()), ("base-sepolia", "10000", "https://x/multi"));
        assert!(a[2].requirements_v1("https://x/multi", None, None).is_none());
    }

    #[test]
    fn free_routes_and_cors_policies() {
        let mut v = vars(json!([{ "route": "GET /premium/sample", "free": true }, { "route": "GET /premium/*", "price": "$1" }]));
        let c = Config::from_vars(&v).unwrap();
        assert!(c.routes[0].is_free() && !c.routes[1].is_free());
        assert_eq!(c.cors, CorsPolicy::Any);
        v.insert("CORS_ALLOWED_ORIGINS".into(), json!("https://a.example, http://localhost:3000"));
        assert_eq!(Config::from_vars(&v).unwrap().cors, CorsPolicy::List(vec!["https://a.example".into(), "http://localhost:3000".into()]));
        v.insert("CORS_ALLOWED_ORIGINS".into(), json!("none"));
        assert_eq!(Config::from_vars(&v).unwrap().cors, CorsPolicy::Off);
        v.insert("CORS_ALLOWED_ORIGINS".into(), json!("https://a.example/path"));
        assert!(Config::from_vars(&v).unwrap_err().0.contains("bare origin"));
    }

    #[test]
    fn configuration_errors_say_what_is_wrong() {
        assert!(cfg_err(json!([{ "route": "GET /x", "free": true, "price": "$1" }])).contains("unknown field `price`"));
        assert!(cfg_err(json!([{ "route": "GET /x", "price": "$1", "accepts": [{ "price": "$1" }] }])).contains("unknown field `price`"));
        assert!(cfg_err(json!([{ "route": "GET /x", "accepts": [] }])).contains("is empty"));
        assert!(cfg_err(json!([{ "route": "GET /x", "accepts": [{ "price": "$1", "colour": 1 }] }])).contains("unknown key `colour` in ROUTES[0] (`GET /x`) accepts[0]; known keys: price, amount"));
        assert!(cfg_err(json!([{ "route": "GET /x", "accepts": [{ "price": "$1" }, { "price": "1" }] }])).contains("repeats"));
        assert!(cfg_err(json!([{ "route": "GET /x", "description": "no price" }])).contains("give a `price`"));
        assert!(cfg_err(json!({ "route": "GET /x" })).contains("array"));
        assert!(cfg_err(json!([{ "route": "GET /x", "price": "$0.0000001" }])).contains("finer than one atomic unit"));
        assert!(cfg_err(json!([{ "route": "GET /x", "price": "1", "amount": "1" }])).contains("exactly one of"));
        assert!(cfg_err(json!([{ "route": "GET /x", "amount": "1" }])).contains("explicit `asset`"));
        assert!(cfg_err(json!([{ "route": "GET /x", "price": "1", "payTo": "0x12" }])).contains("payTo"));
        assert!(cfg_err(json!([{ "route": "GET /x", "price": "1", "network": "eip155:999" }])).contains("no built-in USDC"));
        assert!(cfg_err(json!([{ "route": "GET /x", "price": "1", "network": "mars" }])).contains("CAIP-2"));
        assert!(cfg_err(json!([{ "route": "GET /x", "price": "1", "asset": "0x00000000000000000000000000000000000000aa" }])).contains("EIP-712"));
        assert!(cfg_err(json!([{ "route": "GET /x", "price": "1", "sessionTtlSeconds": 600 }])).contains("replaced by passes"));
        assert!(cfg_err(json!([{ "route": "GET /x", "price": "1", "colour": "red" }])).starts_with("unknown key `colour` in ROUTES[0] (`GET /x`); known keys: route,"));
        assert!(cfg_err(json!("not json")).contains("not valid JSON"));
        assert!(cfg_err(json!([{ "route": "GET /a/../b", "price": "1" }])).contains("not canonical"));
        let mut v = vars(json!([]));
        v.insert("ORIGIN_URL".into(), json!("ftp://x"));
        assert!(Config::from_vars(&v).unwrap_err().0.contains("http(s)"));
        v.insert("ORIGIN_URL".into(), json!("https://user:pw@api.example/v1/"));
        assert!(Config::from_vars(&v).unwrap_err().0.contains("user information"));
        v.insert("ORIGIN_URL".into(), json!("https://API.example:8443/v1/"));
        assert_eq!(Config::from_vars(&v).unwrap().origin, OriginTarget::Url { base: "https://api.example:8443/v1".into(), prefix: "/v1".into() });
        v.remove("ORIGIN_URL");
        assert_eq!(Config::from_vars(&v).unwrap_err().0, "ORIGIN_URL is not set (or bind the origin Worker as ORIGIN_SERVICE)");
        v.insert("ORIGIN_SERVICE".into(), json!(true));
        assert_eq!(Config::from_vars(&v).unwrap().origin, OriginTarget::Service);
        v.insert("ORIGIN_URL".into(), json!("https://a.example"));
        assert!(Config::from_vars(&v).unwrap_err().0.contains("not both"));
    }

    #[test]
    fn plain_http_is_refused_except_to_loopback_hosts() {
        let mut v = vars(json!([]));
        for ok in ["http://127.0.0.1:9000", "http://127.8.9.10", "http://[::1]:8787/api", "http://LOCALHOST:3000", "https://api.example"] {
            v.insert("ORIGIN_URL".into(), json!(ok));
            v.insert("FACILITATOR_URL".into(), json!(ok));
            assert!(Config::from_vars(&v).is_ok(), "{ok} is accepted");
        }
        v.insert("FACILITATOR_URL".into(), json!("https://facilitator.example"));
        for bad in ["http://api.example", "http://10.0.0.1", "http://[::2]", "http://localhost.example", "http://127.0.0.1.nip.io", "http://0.0.0.0"] {
            v.insert("ORIGIN_URL".into(), json!(bad));
            let e = Config::from_vars(&v).unwrap_err();
            assert!(e.0.starts_with("ORIGIN_URL ") && e.0.contains("http://, which is allowed only for a loopback host"), "{bad}: {e}");
        }
        v.insert("ORIGIN_URL".into(), json!("https://api.example"));
        v.insert("FACILITATOR_URL".into(), json!("https://a.example, http://b.example"));
        let e = Config::from_vars(&v).unwrap_err();
        assert!(e.0.starts_with("FACILITATOR_URL[1] ") && e.0.contains("loopback"), "{e}");
        assert_eq!(e.public(), "invalid configuration: FACILITATOR_URL[1] `http://b.example` uses http://, which is allowed only for a loopback host (127.0.0.0/8, ::1, localhost): payments and content would cross the network unencrypted; use https:// (see the log for values)");
        v.insert("FACILITATOR_URL".into(), json!([{ "url": "http://facilitator.example", "auth": "none" }]));
        assert!(Config::from_vars(&v).unwrap_err().0.starts_with("FACILITATOR_URL[0] "));
    }

    #[test]
    fn an_earlier_route_that_takes_a_dearer_one_for_less_is_an_error() {
        let e = cfg_err(json!([{ "route": "GET /docs/*", "free": true }, { "route": "GET /docs/premium", "price": "$1" }]));
        assert!(e.starts_with("ROUTES[0] (`GET /docs/*`) matches every request ROUTES[1] (`GET /docs/premium`) matches and is free"), "{e}");
        let e = cfg_err(json!([{ "route": "/reports/:id", "price": "$0.01" }, { "route": "GET /reports/annual", "price": "$0.05" }]));
        assert!(e.contains("ROUTES[0] (`/reports/:id`)") && e.contains("ROUTES[1] (`GET /reports/annual`)") && e.contains("costs less"), "{e}");
        let other_asset = json!([
            { "route": "GET /a/*", "amount": "1", "asset": "0x00000000000000000000000000000000000000aa", "name": "T", "version": "1" },
            { "route": "GET /a/b", "price": "$0.01" }
        ]);
        assert!(cfg_err(other_asset).contains("another asset or network"));
        // Not shadowing: carve-outs listed first, other methods, partial overlaps, an earlier
        // route that is dearer or as dear, and a first covering route that is dearer than a
        // later cheaper cover.
        for ok in [
            json!([{ "route": "GET /docs/free", "free": true }, { "route": "GET /docs/*", "price": "$1" }]),
            json!([{ "route": "GET /docs/*", "free": true }, { "route": "POST /docs/premium", "price": "$1" }]),
            json!([{ "route": "GET /docs/*", "free": true }, { "route": "/docs/premium", "price": "$1" }]),
            json!([{ "route": "GET /docs/:id", "free": true }, { "route": "GET /docs/*", "price": "$1" }]),
            json!([{ "route": "GET /a/*/c", "free": true }, { "route": "GET /a/b/*", "price": "$1" }]),
            json!([{ "route": "GET /docs/*", "price": "$2" }, { "route": "GET /docs/premium", "price": "$1" }]),
            json!([{ "route": "GET /docs/*", "price": "$1" }, { "route": "GET /docs/premium", "price": "$1" }]),
            json!([{ "route": "GET /docs/*", "price": "$2" }, { "route": "GET /docs/:id", "free": true }, { "route": "GET /docs/premium", "price": "$1" }]),
            json!([{ "route": "GET /docs/*", "free": true }, { "route": "GET /docs/x", "free": true }]),
            json!([{ "route": "GET /docs/*", "accepts": [{ "price": "$1" }, { "price": "$2", "network": "eip155:8453" }] },
                   { "route": "GET /docs/premium", "accepts": [{ "price": "$0.50" }, { "price": "$1", "network": "eip155:8453" }] }]),
        ] {
            assert!(Config::from_vars(&vars(ok.clone())).is_ok(), "{ok}: {:?}", Config::from_vars(&vars(ok.clone())).err());
        }
        // The earlier route's cheaper second option on another network is a way in for less.
        let e = cfg_err(json!([
            { "route": "GET /docs/*", "accepts": [{ "price": "$1" }, { "price": "$0.10", "network": "eip155:8453" }] },
            { "route": "GET /docs/premium", "accepts": [{ "price": "$1" }, { "price": "$1", "network": "eip155:8453" }] }
        ]));
        assert!(e.contains("ROUTES[0]") && e.contains("ROUTES[1]"), "{e}");
    }

    /// A group's seller (`GET /a/*`, selling the group's pass with `seller`'s options) and a
    /// member (`GET /b/*`, `member`'s options).
    fn group(seller: Value, member: Value) -> Value {
        json!([
            { "route": "GET /a/*", "group": "g", "pass": { "ttl": "1h", "scope": "g" }, "accepts": seller },
            { "route": "GET /b/*", "group": "g", "accepts": member }
        ])
    }

    #[test]
    fn a_group_pass_opens_a_member_only_if_every_way_to_buy_it_pays_the_member_at_least_its_price() {
        const OTHER: &str = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";
        let token = json!({ "amount": "1", "asset": "0x00000000000000000000000000000000000000aa", "name": "T", "version": "1" });
        // Each refused seller also has an option that pays the member's price: the extra one
        // is the way in for less, or to someone else.
        for (case, seller) in [
            ("other asset", json!([{ "price": "$1" }, token])),
            ("other network", json!([{ "price": "$1" }, { "price": "$1", "network": "eip155:8453" }])),
            ("other payTo", json!([{ "price": "$1" }, { "price": "$1", "payTo": OTHER }])),
            ("cheaper", json!([{ "price": "$0.40" }])),
        ] {
            let e = cfg_err(group(seller, json!([{ "price": "$0.50" }])));
            assert!(e.starts_with("route `GET /a/*`: its pass (group `g`) would open `GET /b/*`") && e.contains("payment option"), "{case}: {e}");
        }
        let e = cfg_err(group(json!([{ "price": "$1", "payTo": OTHER }]), json!([{ "price": "$0.50" }])));
        assert!(e.contains(OTHER), "names the recipient the member does not accept: {e}");
        for (case, seller, member) in [
            ("equal", json!([{ "price": "$0.50" }]), json!([{ "price": "$0.50" }])),
            ("dearer", json!([{ "price": "$1" }]), json!([{ "price": "$0.50" }])),
            ("every option matched", json!([{ "price": "$1" }, { "price": "$1", "network": "eip155:8453", "payTo": OTHER }]), json!([{ "price": "$1" }, { "price": "$0.10", "network": "eip155:8453", "payTo": OTHER }])),
            // A member's further way to pay is not one a pass is bought with.
            ("member has more options", json!([{ "price": "$1" }]), json!([{ "price": "$1" }, { "price": "$5", "network": "eip155:8453" }])),
        ] {
            let v = group(seller, member);
            assert!(Config::from_vars(&vars(v.clone())).is_ok(), "{case}: {v}: {:?}", Config::from_vars(&vars(v.clone())).err());
        }
    }

    #[test]
    fn sign_in_needs_its_secret() {
        let mut v = vars(json!([{ "route": "GET /r/*", "price": "$1", "pass": { "ttl": "1h" } }]));
        v.insert("PUBLIC_URL".into(), json!("https://api.example"));
        assert!(Config::from_vars(&v).unwrap_err().0.starts_with("SIGN_IN_SECRET is not set"));
        v.insert("SIGN_IN_SECRET".into(), json!("too short"));
        assert!(Config::from_vars(&v).unwrap_err().0.contains("shorter than 32"));
        v.insert("SIGN_IN_SECRET".into(), json!("s".repeat(32)));
        let c = Config::from_vars(&v).unwrap();
        assert!(c.sign_in_key.is_some() && !format!("{c:?}").contains(&"s".repeat(32)), "never in Debug");
        // Without a pass for sale, or without PUBLIC_URL, sign-in is off and needs nothing.
        v.remove("SIGN_IN_SECRET");
        v.remove("PUBLIC_URL");
        assert!(Config::from_vars(&v).is_ok());
    }

    #[test]
    fn public_errors_carry_no_configured_values() {
        let mut v = vars(json!([]));
        v.insert("ORIGIN_URL".into(), json!("https://user:hunter2@api.example/v1"));
        let e = Config::from_vars(&v).unwrap_err();
        assert!(e.to_string().contains("hunter2"), "the log has it all");
        assert_eq!(e.public(), "invalid configuration: ORIGIN_URL `…` must not have a query or user information (see the log for values)", "the origin's host is not told either");
        assert_eq!(e.to_string(), "invalid configuration: ORIGIN_URL `https://user:hunter2@api.example/v1` must not have a query or user information");
        v.insert("ORIGIN_URL".into(), json!("https://a`b:pw`x@api.example"));
        let e = Config::from_vars(&v).unwrap_err();
        assert!(!e.public().contains("pw"), "a backtick in the value cannot end the redaction: {}", e.public());
        // A path or query may carry a key (an RPC provider's URL): hidden; the host stays.
        v.insert("ORIGIN_URL".into(), json!("https://api.example"));
        v.insert("RPC_URL".into(), json!("http://rpc.example/v2/KEY123"));
        let e = Config::from_vars(&v).unwrap_err();
        assert!(e.public().starts_with("invalid configuration: RPC_URL `http://rpc.example…` uses http://"), "{}", e.public());
        assert!(!e.public().contains("KEY123") && e.to_string().contains("KEY123"));
        let marker = hidden(&format!("a{SECRET_OPEN}b{SECRET_CLOSE}c"));
        assert_eq!(ConfigError(marker).public(), "invalid configuration: … (see the log for values)", "markers inside a value cannot end the redaction");
    }

    #[test]
    fn origin_headers_are_validated_and_marked_sensitive() {
        let mut v = vars(json!([]));
        v.insert("ORIGIN_HEADERS".into(), json!(r#"{"X-Paywall-Secret":"s3cret","CF-Access-Client-Id":"id.access"}"#));
        let c = Config::from_vars(&v).unwrap();
        assert_eq!(c.origin_headers.len(), 2);
        assert!(c.origin_headers.iter().all(|(_, v)| v.is_sensitive()));
        for (bad, want) in [
            (r#"{"Host":"x"}"#, "cannot be configured"),
            (r#"{"X-Forwarded-For":"1.2.3.4"}"#, "cannot be configured"),
            (r#"{"Bad Name":"x"}"#, "not a header name"),
            (r#"{"X-A":"line\nbreak"}"#, "visible ASCII"),
            (r#"{"X-A":1}"#, "visible ASCII"),
            ("[]", "JSON object"),
        ] {
            v.insert("ORIGIN_HEADERS".into(), json!(bad));
            let e = Config::from_vars(&v).unwrap_err();
            assert!(e.0.contains(want), "{bad}: {e}");
            assert!(!e.public().contains("line") && !e.public().contains("1.2.3.4"), "{}", e.public());
        }
    }

    #[test]
    fn public_errors_keep_keys_route_patterns_and_variable_names() {
        let e = Config::from_vars(&vars(json!([{ "route": "GET /v1/quote", "pirce": "$0.01" }]))).unwrap_err();
        assert_eq!(e.0, "unknown key `pirce` in ROUTES[0] (`GET /v1/quote`); did you mean `price`?");
        assert_eq!(e.public(), "invalid configuration: unknown key `pirce` in ROUTES[0] (`GET /v1/quote`); did you mean `price`? (see the log for values)");
        let e = cfg_err(json!([{ "route": "GET /x", "free": true, "pirce": "$1" }]));
        assert!(e.contains("did you mean `price`?"), "a free route's typo is named too: {e}");
        let e = cfg_err(json!([{ "rout": "GET /x", "price": "$1" }]));
        assert_eq!(e, "unknown key `rout` in ROUTES[0]; did you mean `route`?");
        let e = cfg_err(json!([{ "route": "GET /x", "accepts": [{ "prce": "$1" }] }]));
        assert_eq!(e, "unknown key `prce` in ROUTES[0] (`GET /x`) accepts[0]; did you mean `price`?");
        let e = cfg_err(json!([{ "route": "GET /x", "price": "$1", "pass": { "tll": "1h" } }]));
        assert!(e.contains("unknown key `tll`") && e.contains("did you mean `ttl`?"), "{e}");
    }

    #[test]
    fn misspelt_variables_are_errors_that_name_the_meant_one() {
        for (typo, meant) in [("ROUTS", "ROUTES"), ("PAY_T0", "PAY_TO"), ("routes", "ROUTES"), ("FACILITATOR_ULR", "FACILITATOR_URL"), ("ORIGN_URL", "ORIGIN_URL")] {
            let mut v = vars(json!([{ "route": "GET /free", "free": true }]));
            v.insert(typo.into(), json!([{ "route": "GET /x", "price": "$1" }]));
            let e = Config::from_vars(&v).unwrap_err();
            assert!(e.0.starts_with(&format!("unknown variable `{typo}`; did you mean `{meant}`?")), "{e}");
            assert!(e.public().contains(typo) && e.public().contains(meant), "{}", e.public());
        }
        // Variables of the user's own, far from every known name, are left alone.
        let mut v = vars(json!([{ "route": "GET /x", "price": "$1" }]));
        for own in ["MY_APP_SETTING", "SENTRY_DSN", "FACILITATOR_AUTH_BACKUP", "ORIGIN_SERVICE_NAME_X"] {
            v.insert(own.into(), json!("x"));
        }
        assert!(Config::from_vars(&v).is_ok(), "{:?}", Config::from_vars(&v).err());
        assert_eq!(misspelt_var("ORIGIN_SERVICE"), None);
        assert_eq!(misspelt_var("ORIGIN_SERVIC"), Some("ORIGIN_SERVICE"));
    }

    #[test]
    fn a_bad_pay_to_is_blamed_on_the_variable() {
        let mut v = vars(json!([{ "route": "GET /x", "price": "$1" }]));
        v.insert("PAY_TO".into(), json!("0x1234"));
        assert_eq!(Config::from_vars(&v).unwrap_err().0, "PAY_TO `0x1234` is not a 0x-prefixed 20-byte address (40 hex digits)");
    }

    #[test]
    fn unknown_methods_in_a_route_pattern_are_errors() {
        let e = cfg_err(json!([{ "route": "GTE /v1/quote", "price": "$1" }]));
        assert!(e.starts_with("ROUTES[0] (`GTE /v1/quote`): unknown method `GTE`; did you mean `GET`?"), "{e}");
        assert!(cfg_err(json!([{ "route": "FROB /x", "price": "$1" }])).contains("known methods: GET, HEAD"));
        for ok in ["GET /x", "get /x", "PATCH /x", "QUERY /x", "PROPFIND /x", "* /x", "/x"] {
            assert!(Config::from_vars(&vars(json!([{ "route": ok, "price": "$1" }]))).is_ok(), "{ok}");
        }
    }

    #[test]
    fn a_price_looking_variable_without_a_priced_route_is_an_error() {
        let mut v = vars(json!([{ "route": "GET /x", "free": true }]));
        v.insert("PRICE".into(), json!("$0.01"));
        let e = Config::from_vars(&v).unwrap_err();
        assert!(e.0.starts_with("`PRICE` looks like a price, but no route in ROUTES is priced"), "{e}");
        v.remove("PRICE");
        v.insert("QUOTE_FEE".into(), json!("$0.01"));
        assert!(Config::from_vars(&v).is_err(), "a value like $0.01");
        v.insert("ROUTES".into(), json!([{ "route": "GET /x", "price": "$1" }]));
        assert!(Config::from_vars(&v).is_ok(), "with a priced route, the user's own variables are theirs");
        v.insert("ROUTES".into(), json!([{ "route": "GET /x", "free": true }]));
        v.remove("QUOTE_FEE");
        let c = Config::from_vars(&v).unwrap();
        assert_eq!(c.warnings(&v), vec!["PAY_TO is set but no route in ROUTES is priced: every request is proxied free".to_string()]);
    }

    #[test]
    fn price_lines_say_what_each_route_costs() {
        let c = Config::from_vars(&vars(json!([
            { "route": "GET /free", "free": true },
            { "route": "GET /w", "price": "$0.01" },
            { "route": "GET /p/*", "price": "$2", "pass": { "ttl": "1h" } },
            { "route": "POST /t", "amount": "7", "asset": "0x00000000000000000000000000000000000000aa", "name": "T", "version": "1" }
        ])))
        .unwrap();
        assert_eq!(
            c.price_lines(),
            vec![
                "GET /free: free".to_string(),
                "GET /w: 0.01 USDC (10000 atomic units of 0x036CbD53842c5426634e7929541eC2318f3dCF7e) on eip155:84532, payTo 0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
                "GET /p/*: 2 USDC (2000000 atomic units of 0x036CbD53842c5426634e7929541eC2318f3dCF7e) on eip155:84532, payTo 0x209693Bc6afc0C5328bA36FaF03C514EF312287C for a pass: unlimited requests for 1 hour to /p/*".into(),
                "POST /t: 7 atomic units of 0x00000000000000000000000000000000000000AA on eip155:84532, payTo 0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
            ]
        );
    }
}
