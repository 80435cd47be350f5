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
//! | `pass.rs` | a route's `pass`: lifetime, request count, scope |
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

use crate::evm::Address;
use crate::x402::exact::VALID_BEFORE_SLACK_SECONDS;
use crate::x402::offer::Offer;

mod discovery;
mod error;
mod facilitators;
mod mcp;
mod origin;
mod pass;
mod routes;
mod vars;

pub use discovery::{MAX_DECLARATION_BYTES, MAX_DECLARATION_DEPTH};
pub use error::*;
pub use facilitators::*;
pub use mcp::{McpServer, ToolPrice};
pub use origin::*;
pub use pass::*;
pub use routes::*;
pub use vars::*;

/// `DECISION_LOG`: which priced-request decisions get a JSON log line (the `METRICS` data point is
/// written for every decision either way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DecisionLog {
    /// `"all"`: every decision, 402 challenges included.
    All,
    /// `"payments"` (default): every decision but plain challenges (a request without any payment
    /// or pass), which are most of the traffic a public API sees from crawlers; a line costs more
    /// CPU than the challenge's own work in workerd (docs/benchmarks.md).
    #[default]
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

/// When a payment channel's charged vouchers are claimed (docs/channels.md): once `vouchers`
/// are charged and unclaimed, once the oldest unclaimed charge is `seconds` old, or at once when
/// the payer has started a timed withdrawal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelClaimPolicy {
    pub vouchers: u64,
    pub seconds: u64,
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
    /// When a payment channel is claimed (`CHANNEL_CLAIM_VOUCHERS`, `CHANNEL_CLAIM_SECONDS`).
    pub channel_claim: ChannelClaimPolicy,
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
    /// ([`crate::x402::siwx::issue_nonce`]); required while sign-in is on (`PUBLIC_URL` and a route that
    /// sells a pass).
    pub sign_in_key: Option<crate::x402::siwx::NonceKey>,
    /// `PAYMENT_CONTEXT_KEY`: the key that signs the payment context forwarded with each paid
    /// request and published at `/.well-known/x402/jwks.json` ([`crate::payment_context`]);
    /// `None`: no context, no JWK Set.
    pub payment_context: Option<crate::payment_context::ContextKey>,
    /// `MCP`: MCP servers whose tools are priced per call (docs/mcp.md).
    pub mcp: Vec<McpServer>,
}

/// The admin endpoint: `POST {path}/revoke?pass=<token>` or `?payer=<address>`, and
/// `POST {path}/deny?payer=<address>`, authenticated by `Authorization: Bearer {token}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminEndpoint {
    /// Canonical path prefix, without trailing `/` (default `/.well-known/x402/admin`).
    pub path: String,
    /// `path` in matching form ([`crate::route::match_segments`]), kept so that no request
    /// computes it again.
    pub segments: Vec<String>,
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
pub(super) const SESSIONS_REMOVED: &str = "paid sessions were replaced by passes: a price is now per request unless the route sells a pass, e.g. pass = { ttl = \"1h\" } (README, \"Pricing\")";

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

/// `DECISION_LOG`.
fn decision_log(vars: &Map<String, Value>) -> Result<DecisionLog, ConfigError> {
    match string_var(vars, "DECISION_LOG")?.as_deref() {
        Some("all") => Ok(DecisionLog::All),
        None | Some("payments") => Ok(DecisionLog::Payments),
        Some("none") => Ok(DecisionLog::None),
        Some(m) => err(format!("DECISION_LOG {} must be \"all\", \"payments\" or \"none\"", shown(m))),
    }
}

/// `MODE`.
fn mode(vars: &Map<String, Value>) -> Result<Mode, ConfigError> {
    match string_var(vars, "MODE")?.as_deref() {
        None | Some("enforce") => Ok(Mode::Enforce),
        Some("shadow") => Ok(Mode::Shadow),
        Some(m) => err(format!("MODE {} must be \"enforce\" or \"shadow\"", shown(m))),
    }
}

/// `DENYLIST`: comma-separated payer addresses.
fn denylist(vars: &Map<String, Value>) -> Result<Vec<Address>, ConfigError> {
    let mut denylist = Vec::new();
    for a in string_var(vars, "DENYLIST")?.unwrap_or_default().split(',').map(str::trim).filter(|a| !a.is_empty()) {
        denylist.push(Address::parse(a).ok_or_else(|| ConfigError(format!("DENYLIST: {} is not a 0x-prefixed 20-byte address", shown(a))))?);
    }
    Ok(denylist)
}

/// `ADMIN_TOKEN` and `ADMIN_PATH`: the admin endpoint, when the token is set.
fn admin_endpoint(vars: &Map<String, Value>) -> Result<Option<AdminEndpoint>, ConfigError> {
    match string_var(vars, "ADMIN_TOKEN")? {
        None => Ok(None),
        Some(token) if token.len() < MIN_ADMIN_TOKEN_LEN => err(format!("ADMIN_TOKEN is shorter than {MIN_ADMIN_TOKEN_LEN} characters")),
        Some(token) => {
            let raw = string_var(vars, "ADMIN_PATH")?.unwrap_or_else(|| "/.well-known/x402/admin".into());
            let path = crate::route::canonicalize(&raw).ok().filter(|c| c == &raw || c.trim_end_matches('/') == raw.trim_end_matches('/'));
            let Some(path) = path.map(|p| p.trim_end_matches('/').to_string()).filter(|p| !p.is_empty()) else {
                return err(format!("ADMIN_PATH {} must be a canonical absolute path other than /", shown(&raw)));
            };
            let segments = crate::route::match_segments(&path);
            Ok(Some(AdminEndpoint { path, segments, token }))
        }
    }
}

/// `SIGN_IN_SECRET`: the nonce key, required while wallet sign-in is on (`PUBLIC_URL` and a route
/// that sells a pass).
fn sign_in_key(vars: &Map<String, Value>, sign_in: bool) -> Result<Option<crate::x402::siwx::NonceKey>, ConfigError> {
    match string_var(vars, "SIGN_IN_SECRET")? {
        Some(secret) if secret.len() < MIN_SIGN_IN_SECRET_LEN => err(format!("SIGN_IN_SECRET is shorter than {MIN_SIGN_IN_SECRET_LEN} characters")),
        Some(secret) => Ok(Some(crate::x402::siwx::NonceKey::new(&secret))),
        None if sign_in => err(format!(
            "SIGN_IN_SECRET is not set: with PUBLIC_URL, routes that sell a pass offer wallet sign-in, whose nonces are signed with this secret; set a random value of at least {MIN_SIGN_IN_SECRET_LEN} characters (wrangler secret put SIGN_IN_SECRET)"
        )),
        None => Ok(None),
    }
}

impl Config {
    /// Every route this configuration can charge on or proxy: `ROUTES` in order, then each MCP
    /// server's priced tools (each parsed as a `POST {path}` route, carrying the server's pass
    /// when it sells one). What needs a binding (a pass → `PASSES`, a rate limit → its
    /// `[[ratelimits]]` binding, a price → `LEDGER`) is decided over all of them.
    pub fn all_routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().chain(self.mcp.iter().flat_map(|s| s.tools.iter().map(|(_, t)| t).chain(std::iter::once(&s.default)).filter_map(ToolPrice::route)))
    }

    /// Builds the configuration from the Worker's variables (name → JSON value).
    ///
    /// Errors name the variable (and route) at fault; nothing here panics on any input. The
    /// variables are read in a fixed order and the first error is the one reported.
    pub fn from_vars(vars: &Map<String, Value>) -> Result<Config, ConfigError> {
        if let Some((name, meant)) = misspelt_vars(vars).into_iter().next() {
            return Err(misspelt_var_error(&name, meant));
        }
        let origin = origin_target(vars)?;
        let origin_headers = origin_headers(string_var(vars, "ORIGIN_HEADERS")?)?;
        let facilitators = facilitators(vars)?;
        let defaults = Defaults::from_vars(vars)?;
        if vars.get("SESSION_TTL_SECONDS").is_some_and(|v| !v.is_null()) {
            return err(format!("SESSION_TTL_SECONDS is no longer read: {SESSIONS_REMOVED}"));
        }
        let cors = cors_policy(string_var(vars, "CORS_ALLOWED_ORIGINS")?)?;
        let origin_timeout_seconds = timeout_var(vars, "ORIGIN_TIMEOUT_SECONDS")?;
        let facilitator_timeout_seconds = timeout_var(vars, "FACILITATOR_TIMEOUT_SECONDS")?;
        let entries = route_entries(vars)?;
        let default_limits = default_rate_limits(vars)?;
        let decision_log = decision_log(vars)?;
        let mode = mode(vars)?;
        let table = TableDefaults { offer: defaults, rate_limits: default_limits, origin_timeout_seconds, facilitator_timeout_seconds };
        let routes = parse_routes(&entries, &table)?;
        let mcp = mcp::parse_mcp(vars, &table, &routes)?;
        if let Some(name) = price_looking_var(vars).filter(|_| routes.iter().all(Route::is_free) && !mcp.iter().any(McpServer::is_priced)) {
            return err(format!(
                "{} looks like a price, but no route in ROUTES is priced: the paywall reads prices only from ROUTES (a [[vars.ROUTES]] entry with price = \"$0.01\")",
                shown(name)
            ));
        }
        let good_standing_seconds = u64_var(vars, "VERIFY_GOOD_STANDING_SECONDS", 86_400)?;
        let channel_claim = ChannelClaimPolicy { vouchers: count_var(vars, "CHANNEL_CLAIM_VOUCHERS", 100)?, seconds: u64_var(vars, "CHANNEL_CLAIM_SECONDS", 3600)? };
        let denylist = denylist(vars)?;
        let admin = admin_endpoint(vars)?;
        if let Some(admin) = &admin {
            // The admin endpoint answers every path at or under its own (in any spelling) before
            // any route: a route that can match there (but one without a literal segment, such as
            // `/*` or `/:lang/*`, which names no place and could not avoid it) or an MCP server
            // there would silently stop being served.
            let base = &admin.segments;
            if let Some(r) = routes.iter().find(|r| !r.pattern.names_no_place() && r.pattern.can_match_under(base)) {
                return err(format!("ADMIN_PATH {} lies under the route {}, which it would take over: choose another ADMIN_PATH", shown(&admin.path), shown(&r.key)));
            }
            if let Some(m) = mcp.iter().find(|m| crate::route::match_segments(&m.path).starts_with(base)) {
                return err(format!("ADMIN_PATH {} holds the MCP server path {}, which it would take over: choose another ADMIN_PATH", shown(&admin.path), shown(&m.path)));
            }
        }
        let public_url = public_url(vars)?;
        let rpc_url = rpc_url(vars)?;
        let sign_in_key = sign_in_key(vars, public_url.is_some() && routes.iter().any(|r| r.pass.is_some()))?;
        let payment_context = match string_var(vars, crate::payment_context::KEY_VAR)? {
            Some(secret) => Some(crate::payment_context::ContextKey::parse(&secret).map_err(ConfigError)?),
            None => None,
        };
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
            channel_claim,
            denylist,
            admin,
            public_url,
            sign_in_key,
            payment_context,
            mcp,
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
    /// `GET /free: free`; then each MCP server's tools (`POST /mcp tool:search: 0.01 USDC …`, a
    /// pass's terms after ` for a pass: `, `… tool:wipe: denied`, `… tool:*: …` for the default).
    pub fn price_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .routes
            .iter()
            .map(|r| {
                if r.is_free() {
                    return format!("{}: free", r.key);
                }
                let options: Vec<String> = r.accepts.iter().map(Offer::summary).collect();
                let pass = r.pass.as_ref().map(|p| format!(" for a pass: {}", p.summary)).unwrap_or_default();
                format!("{}: {}{pass}", r.key, options.join(" or "))
            })
            .collect();
        for server in &self.mcp {
            let tools = server.tools.iter().map(|(n, t)| (n.as_str(), t)).chain(std::iter::once(("*", &server.default)));
            lines.extend(tools.map(|(name, price)| match price {
                ToolPrice::Free => format!("POST {} tool:{name}: free", server.path),
                ToolPrice::Deny => format!("POST {} tool:{name}: denied", server.path),
                ToolPrice::Priced(r) => {
                    let pass = r.pass.as_ref().map(|p| format!(" for a pass: {}", p.summary)).unwrap_or_default();
                    format!("{}: {}{pass}", r.key, r.accepts.iter().map(Offer::summary).collect::<Vec<_>>().join(" or "))
                }
            }));
        }
        lines
    }

    /// Problems that do not stop the Worker but deserve a loud line at start-up (and a warning
    /// from `x402-check`): `PAY_TO` set while no route is priced (every request is proxied free).
    pub fn warnings(&self, vars: &Map<String, Value>) -> Vec<String> {
        let mut out = Vec::new();
        if self.routes.iter().all(Route::is_free) && !self.mcp.iter().any(McpServer::is_priced) && vars.get("PAY_TO").is_some_and(|v| !v.is_null() && v.as_str() != Some("")) {
            out.push("PAY_TO is set but no route in ROUTES is priced: every request is proxied free".to_string());
        }
        out
    }
}

#[cfg(test)]
mod tests;
