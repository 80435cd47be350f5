//! Configuration: the Worker's `[vars]` and secrets, parsed and validated once per isolate into
//! [`Config`], plain data.
//!
//! **Owns**: the variables ([`TABLE`], the one list the parser, the Workers glue,
//! `x402-check`, the near-miss detection and the docs test read), their parsing and validation,
//! the validated model ([`Config`], [`Route`], [`Facilitator`], [`OriginTarget`], …) and the
//! errors a person can act on ([`ConfigError`]).
//!
//! **Must not touch**: I/O (no fetch, no KV, no clock: the glue reads `env` and hands over a
//! map), per-request or per-isolate state (caches built from the configuration, such as the
//! challenge layouts and the `/.well-known/x402` document, live with the gateway), HTTP
//! requests and responses. It builds on the wire types of [`crate::x402`]; nothing there
//! depends on it.
//!
//! | file | what |
//! |---|---|
//! | `vars.rs` | [`TABLE`]: name, kind, required, secret, one-line doc of every variable; [`VARS`], [`SECRET_VARS`], near misses |
//! | `routes.rs` | `ROUTES` entries: offers, passes, verify/settle policies, rate limits; checks across routes |
//! | `discovery.rs` | a route's discovery keys, built into its `bazaar` extensions |
//! | `facilitators.rs` | `FACILITATOR_URL` and each facilitator's credentials |
//! | `origin.rs` | `ORIGIN_URL` / `ORIGIN_SERVICE`, `ORIGIN_HEADERS`, the URL checks |
//! | `error.rs` | [`ConfigError`]: public and log forms, [`shown`] / [`hidden`] values |
//!
//! A `ROUTES` entry: `route` (`"METHOD /pattern"`, see [`crate::route::RoutePattern`]);
//! `description`, `mimeType`, `pass` ([`PassTerms`]), `group` (a name shared by routes that a
//! group-scoped pass opens together); `verify` ([`VerifyPolicy`]: `"auto"`,
//! `"always"`, `"local"`); `settle` ([`SettleOrder`]: `"after"`, `"before"`); `rateLimit`
//! ([`RateLimits`]); the discovery keys `discoverable`, `inputSchema`, `inputExample`,
//! `bodyType`, `outputSchema`, `outputExample` ([`crate::x402::bazaar::RouteDiscovery`]); `free:
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

use serde_json::{Map, Value};

use crate::discovery::WellKnown;
use crate::evm::Address;
use crate::exact::VALID_BEFORE_SLACK_SECONDS;
use crate::route::RoutePattern;
use crate::x402::bazaar::RouteDiscovery;
use crate::x402::offer::Offer;

mod discovery;
mod error;
mod facilitators;
mod origin;
mod routes;
mod vars;

pub use discovery::{MAX_DECLARATION_BYTES, MAX_DECLARATION_DEPTH};
pub use error::*;
pub use facilitators::*;
pub use origin::*;
pub use routes::*;
pub use vars::*;

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
            let every_key: [&[&str]; 3] = [&ROUTE_KEYS, &OFFER_KEYS, &discovery::ROUTE_KEYS];
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
                check_keys(&at, obj, &[&ROUTE_KEYS, &discovery::ROUTE_KEYS])?;
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
                check_keys(&at, obj, &[&ROUTE_KEYS, &OFFER_KEYS, &discovery::ROUTE_KEYS])?;
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

#[cfg(test)]
mod tests;
