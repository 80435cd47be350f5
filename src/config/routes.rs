//! `ROUTES`: the price table's entries, their payment options ([`Offer`]), passes, verify and
//! settle policies, rate limits, and the checks across routes (shadowing, pass groups).

use ruint::aliases::U256;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::evm::{caip2_chain_id, network_by_id, Address, Eip712Domain};
use crate::meter::{parse_path, Meter};
use crate::money::price_to_atomic;
use crate::route::RoutePattern;
use crate::x402::bazaar::RouteDiscovery;
use crate::x402::offer::Offer;
use crate::x402::{Eip712Extra, PaymentRequirements};

use crate::x402::exact::VALID_BEFORE_SLACK_SECONDS;

use super::{err, parse_pass, shown, string_var, u64_var, unknown_key, ConfigError, PassScope, PassTerms, CLIENT_LATENCY_SECONDS, SESSIONS_REMOVED};

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
    /// Discovery declaration and prebuilt `bazaar` extensions ([`crate::x402::bazaar`]); the
    /// default (not discoverable) for a free route.
    pub discovery: RouteDiscovery,
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

    pub(super) fn parse(at: &str, v: &Value) -> Result<RateLimits, ConfigError> {
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

impl Route {
    /// A route explicitly configured as free (`free: true`): proxied without payment.
    pub fn is_free(&self) -> bool {
        self.accepts.is_empty()
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawOffer {
    pub(super) price: Option<String>,
    pub(super) amount: Option<String>,
    pub(super) asset: Option<String>,
    pub(super) decimals: Option<u8>,
    pub(super) name: Option<String>,
    pub(super) version: Option<String>,
    pub(super) network: Option<String>,
    pub(super) pay_to: Option<String>,
    pub(super) max_timeout_seconds: Option<u64>,
    pub(super) scheme: Option<String>,
    pub(super) meter: Option<Value>,
    pub(super) facilitator_address: Option<String>,
    pub(super) receiver_authorizer: Option<String>,
    pub(super) withdraw_delay: Option<u64>,
    pub(super) min_deposit: Option<String>,
    pub(super) gas_sponsoring: Option<String>,
}

pub(super) const OFFER_KEYS: [&str; 16] = [
    "price", "amount", "asset", "decimals", "name", "version", "network", "payTo", "maxTimeoutSeconds", "scheme", "meter", "facilitatorAddress", "receiverAuthorizer", "withdrawDelay", "minDeposit", "gasSponsoring",
];
pub(super) const ROUTE_KEYS: [&str; 10] = ["route", "description", "mimeType", "pass", "group", "free", "accepts", "verify", "settle", "rateLimit"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawRoute {
    pub(super) route: String,
    pub(super) description: Option<String>,
    pub(super) mime_type: Option<String>,
    #[serde(default)]
    pub(super) pass: Option<Value>,
    pub(super) group: Option<String>,
    #[serde(default)]
    pub(super) free: bool,
    pub(super) verify: Option<String>,
    pub(super) settle: Option<String>,
    pub(super) rate_limit: Option<Value>,
}

/// Refuses a price table in which a route's price can never apply because an earlier route
/// takes every request it matches ([`RoutePattern::covers`]; the first matching route wins) and
/// charges less: it is free, or one of its payment options is below every option of the later
/// route in the same asset on the same network (an option in another asset or network counts as
/// cheaper: the two cannot be compared). Only the first earlier route that covers the later one
/// matters; partial overlaps (a carve-out such as a free `GET /premium/sample` before a priced
/// `GET /premium/*`) are not shadowing.
pub(super) fn check_shadowing(routes: &[Route]) -> Result<(), ConfigError> {
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
pub(super) fn check_pass_groups(routes: &[Route]) -> Result<(), ConfigError> {
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

/// Defaults every offer inherits.
pub(super) struct Defaults {
    pub(super) pay_to: Option<String>,
    /// `FACILITATOR_ADDRESS`: what `upto` offers name as `extra.facilitatorAddress`.
    pub(super) facilitator_address: Option<String>,
    /// `RECEIVER_AUTHORIZER`: what `batch-settlement` offers name as `extra.receiverAuthorizer`.
    pub(super) receiver_authorizer: Option<String>,
    pub(super) network: String,
    pub(super) max_timeout_seconds: u64,
}

pub(super) fn parse_offer(at: &str, r: &RawOffer, d: &Defaults) -> Result<Offer, ConfigError> {
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
    let (scheme, meter, extra) = match r.scheme.as_deref().unwrap_or("exact") {
        scheme @ ("exact" | "batch-settlement") if r.meter.is_some() || r.facilitator_address.is_some() || r.gas_sponsoring.is_some() => {
            let k = if r.meter.is_some() { "meter" } else if r.gas_sponsoring.is_some() { "gasSponsoring" } else { "facilitatorAddress" };
            return err(format!("{at}: `{k}` is for metered options (scheme = \"upto\"), not {scheme}"));
        }
        "exact" | "upto" if r.receiver_authorizer.is_some() || r.withdraw_delay.is_some() || r.min_deposit.is_some() => {
            let k = if r.receiver_authorizer.is_some() { "receiverAuthorizer" } else if r.withdraw_delay.is_some() { "withdrawDelay" } else { "minDeposit" };
            return err(format!("{at}: `{k}` is for payment channels (scheme = \"batch-settlement\")"));
        }
        "exact" => ("exact", None, Eip712Extra::exact(name.clone(), version.clone())),
        "batch-settlement" => {
            let Some(a) = r.receiver_authorizer.clone().or_else(|| d.receiver_authorizer.clone()) else {
                return err(format!("{at}: scheme \"batch-settlement\" needs the receiver authorizer (RECEIVER_AUTHORIZER, or `receiverAuthorizer` here): the address the facilitator's /supported announces as extra.receiverAuthorizer, which signs the claims"));
            };
            let authorizer = Address::parse(&a).filter(|a| *a != Address([0; 20])).ok_or_else(|| ConfigError(format!("{at}: receiverAuthorizer {} is not a non-zero 0x-prefixed 20-byte address", shown(&a))))?;
            let withdraw_delay = r.withdraw_delay.unwrap_or(crate::x402::channel::MIN_WITHDRAW_DELAY);
            if !(crate::x402::channel::MIN_WITHDRAW_DELAY..=crate::x402::channel::MAX_WITHDRAW_DELAY).contains(&withdraw_delay) {
                return err(format!("{at}: withdrawDelay {withdraw_delay} is outside the escrow's 900..=2592000 seconds"));
            }
            // The official server's default is ten requests' worth; a configured one is at least one.
            let min_deposit = match &r.min_deposit {
                None => amount.saturating_mul(U256::from(10u8)),
                Some(m) => {
                    let parsed = match (m.starts_with('$'), decimals) {
                        (true, Some(d)) => price_to_atomic(m, d).ok(),
                        (true, None) => None,
                        (false, _) => crate::evm::parse_uint256(m),
                    };
                    parsed.ok_or_else(|| ConfigError(format!("{at}: minDeposit {} is neither a price such as \"$1\" nor atomic units", shown(m))))?.max(amount)
                }
            };
            let extra = Eip712Extra {
                receiver_authorizer: Some(authorizer.to_checksum()),
                withdraw_delay: Some(withdraw_delay),
                min_deposit: Some(min_deposit.to_string()),
                ..Eip712Extra::exact(name.clone(), version.clone())
            };
            ("batch-settlement", None, extra)
        }
        "upto" => {
            let Some(f) = r.facilitator_address.clone().or_else(|| d.facilitator_address.clone()) else {
                return err(format!("{at}: scheme \"upto\" needs the facilitator's address (FACILITATOR_ADDRESS, or `facilitatorAddress` here): the one its /supported announces as extra.facilitatorAddress, which the payer's Permit2 witness names"));
            };
            let facilitator = Address::parse(&f).ok_or_else(|| ConfigError(format!("{at}: facilitatorAddress {} is not a 0x-prefixed 20-byte address", shown(&f))))?;
            let meter = parse_meter(at, r.meter.as_ref(), decimals)?;
            if let Some(g) = r.gas_sponsoring.as_deref().filter(|g| *g != "eip2612") {
                return err(format!("{at}: gasSponsoring {} is not offered here; \"eip2612\" (a payer without a Permit2 allowance signs an EIP-2612 permit that the facilitator submits) is", shown(g)));
            }
            let extra = Eip712Extra {
                asset_transfer_method: Some("permit2".into()),
                facilitator_address: Some(facilitator.to_checksum()),
                ..Eip712Extra::exact(name.clone(), version.clone())
            };
            ("upto", Some(meter), extra)
        }
        other => return err(format!("{at}: scheme {} is not offered here; use \"exact\" (the default), \"upto\" (a metered price) or \"batch-settlement\" (payment channels)", shown(other))),
    };
    let requirements = PaymentRequirements {
        scheme: scheme.into(),
        network: caip2,
        amount: amount.to_string(),
        asset: asset.to_checksum(),
        pay_to: pay_to.to_checksum(),
        max_timeout_seconds,
        extra,
    };
    let requirements_json = serde_json::to_value(&requirements).or_else(|e| err(e.to_string()))?;
    let domain_separator = Eip712Domain { name, version, chain_id, verifying_contract: asset }.separator();
    // x402 v1 has only `exact`.
    let v1_network = known.filter(|n| n.chain_id == chain_id && scheme == "exact").and_then(|n| n.v1_name);
    let eip2612_gas_sponsoring = r.gas_sponsoring.is_some();
    Ok(Offer { requirements, requirements_json, v1_network, amount, asset, pay_to, chain_id, domain_separator, meter, decimals, eip2612_gas_sponsoring })
}

/// An `upto` option's `meter`: absent or `"origin"` (the origin's `Settlement-Overrides`),
/// `{ bytes = "<price per byte>" }`, or `{ json = "<path>", unit = "<price per unit>" }`; prices
/// as `price` (whole tokens, the asset's decimals) or, with `amount` in place of the price,
/// atomic units.
fn parse_meter(at: &str, meter: Option<&Value>, decimals: Option<u8>) -> Result<Meter, ConfigError> {
    let unit = |key: &str, v: Option<&Value>| -> Result<U256, ConfigError> {
        let Some(Value::String(p)) = v else { return err(format!("{at}: meter needs `{key}` as a string price (\"$0.000001\")")) };
        let d = decimals.ok_or_else(|| ConfigError(format!("{at}: the meter's `{key}` price needs the asset's `decimals`")))?;
        price_to_atomic(p, d).or_else(|e| err(format!("{at}: meter `{key}` {}: {e}", shown(p))))
    };
    match meter {
        None => Ok(Meter::Origin),
        Some(Value::String(s)) if s == "origin" => Ok(Meter::Origin),
        Some(Value::Object(m)) => {
            if let Some(k) = m.keys().find(|k| !["bytes", "json", "unit"].contains(&k.as_str())) {
                return Err(unknown_key(k, &format!("{at} meter"), &[&["bytes", "json", "unit"]]));
            }
            match (m.get("bytes"), m.get("json")) {
                (Some(b), None) if !m.contains_key("unit") => Ok(Meter::Bytes { unit: unit("bytes", Some(b))? }),
                (None, Some(Value::String(path))) => {
                    let path = parse_path(path).or_else(|e| err(format!("{at}: meter json {e}")))?;
                    Ok(Meter::Json { path, unit: unit("unit", m.get("unit"))? })
                }
                _ => err(format!("{at}: meter must be \"origin\", {{ bytes = \"<price per byte>\" }} or {{ json = \"<path>\", unit = \"<price per unit>\" }}")),
            }
        }
        Some(_) => err(format!("{at}: meter must be \"origin\", {{ bytes = \"<price per byte>\" }} or {{ json = \"<path>\", unit = \"<price per unit>\" }}")),
    }
}

pub(super) fn check_keys(at: &str, obj: &Map<String, Value>, allowed: &[&[&str]]) -> Result<(), ConfigError> {
    let anywhere: [&[&str]; 3] = [&ROUTE_KEYS, &OFFER_KEYS, &super::discovery::ROUTE_KEYS];
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

impl Defaults {
    /// `PAY_TO`, `NETWORK` and `MAX_TIMEOUT_SECONDS`; a `PAY_TO` that is not an address is an error.
    pub(super) fn from_vars(vars: &Map<String, Value>) -> Result<Defaults, ConfigError> {
        let defaults = Defaults {
            pay_to: string_var(vars, "PAY_TO")?,
            facilitator_address: string_var(vars, "FACILITATOR_ADDRESS")?,
            receiver_authorizer: string_var(vars, "RECEIVER_AUTHORIZER")?,
            network: string_var(vars, "NETWORK")?.unwrap_or_else(|| "eip155:84532".into()),
            max_timeout_seconds: u64_var(vars, "MAX_TIMEOUT_SECONDS", 300)?,
        };
        if let Some(p) = defaults.pay_to.as_deref().filter(|p| Address::parse(p).is_none()) {
            return err(format!("PAY_TO {} is not a 0x-prefixed 20-byte address (40 hex digits)", shown(p)));
        }
        if let Some(p) = defaults.facilitator_address.as_deref().filter(|p| Address::parse(p).is_none()) {
            return err(format!("FACILITATOR_ADDRESS {} is not a 0x-prefixed 20-byte address (40 hex digits)", shown(p)));
        }
        Ok(defaults)
    }
}

/// What every route of the table starts from: the offers' defaults, `RATE_LIMITS`, and the time
/// limits an offer's `maxTimeoutSeconds` must leave room for.
pub(super) struct TableDefaults {
    pub(super) offer: Defaults,
    pub(super) rate_limits: RateLimits,
    pub(super) origin_timeout_seconds: u64,
    pub(super) facilitator_timeout_seconds: u64,
}

/// `ROUTES`: its entries (a TOML array of tables, a JSON array, or a JSON string of one).
pub(super) fn route_entries(vars: &Map<String, Value>) -> Result<Vec<Value>, ConfigError> {
    let routes_value = match vars.get("ROUTES") {
        None | Some(Value::Null) => return err("ROUTES is not set"),
        Some(Value::String(s)) => serde_json::from_str::<Value>(s).or_else(|e| err(format!("ROUTES is not valid JSON: {e}")))?,
        Some(v) => v.clone(),
    };
    let Value::Array(entries) = routes_value else { return err("ROUTES must be an array of routes") };
    Ok(entries)
}

/// `RATE_LIMITS`: the rate limits of routes without their own `rateLimit`.
pub(super) fn default_rate_limits(vars: &Map<String, Value>) -> Result<RateLimits, ConfigError> {
    match vars.get("RATE_LIMITS").filter(|v| !v.is_null()) {
        Some(v) => RateLimits::parse("RATE_LIMITS", v),
        None => Ok(RateLimits::default()),
    }
}

/// Every route of the table, in order, then the checks across routes (pass groups, shadowing).
pub(super) fn parse_routes(entries: &[Value], table: &TableDefaults) -> Result<Vec<Route>, ConfigError> {
    let mut routes = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        routes.push(parse_route(i, entry, table)?);
    }
    check_pass_groups(&routes)?;
    check_shadowing(&routes)?;
    Ok(routes)
}

/// `ROUTES[i]`.
pub(super) fn parse_route(i: usize, entry: &Value, table: &TableDefaults) -> Result<Route, ConfigError> {
    let Value::Object(obj) = entry else { return err(format!("ROUTES[{i}] must be an object")) };
    let every_key: [&[&str]; 3] = [&ROUTE_KEYS, &OFFER_KEYS, &super::discovery::ROUTE_KEYS];
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
    let accepts = route_offers(&at, obj, entry, r.free, &table.offer)?;
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
    check_time_window(&at, &accepts, table)?;
    let key = r.route.split_whitespace().collect::<Vec<_>>().join(" ");
    let route_path = key.split_once(' ').map_or(key.as_str(), |(_, p)| p).to_string();
    let pass = match &r.pass {
        Some(v) if !r.free => Some(parse_pass(&at, v, &route_path)?),
        Some(_) => return err(format!("{at}: a free route cannot sell a pass")),
        None => None,
    };
    if accepts.iter().any(|o| o.meter.is_some()) {
        if pass.is_some() {
            return err(format!("{at}: a metered route (scheme = \"upto\") cannot sell a pass: what a pass covers has no one amount"));
        }
        if settle == SettleOrder::Before {
            return err(format!("{at}: a metered route (scheme = \"upto\") settles after the origin answers (its amount comes from the answer): remove settle = \"before\""));
        }
    }
    if accepts.iter().any(|o| o.requirements.scheme == crate::x402::channel::SCHEME) && (pass.is_some() || settle == SettleOrder::Before) {
        let what = if pass.is_some() { "sell a pass (each request is paid by a voucher)" } else { "settle before the origin (a voucher is charged when the origin has answered)" };
        return err(format!("{at}: a route with payment channels (scheme = \"batch-settlement\") cannot {what}"));
    }
    let discovery = if r.free { RouteDiscovery::default() } else { RouteDiscovery::parse(&at, obj, &key, &pattern)? };
    Ok(Route {
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
            None => table.rate_limits.clone(),
        },
        discovery,
    })
}

/// A route's payment options: none for a free route, its `accepts` list, or the one option
/// written in the entry itself; no option may repeat another.
fn route_offers(at: &str, obj: &Map<String, Value>, entry: &Value, free: bool, defaults: &Defaults) -> Result<Vec<Offer>, ConfigError> {
    let inline = OFFER_KEYS.iter().any(|k| obj.contains_key(*k));
    let accepts = if free {
        check_keys(at, obj, &[&["route", "description", "free", "group"]])?;
        Vec::new()
    } else if let Some(list) = obj.get("accepts") {
        check_keys(at, obj, &[&ROUTE_KEYS, &super::discovery::ROUTE_KEYS])?;
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
            offers.push(parse_offer(&oat, &raw, defaults)?);
        }
        offers
    } else if inline {
        check_keys(at, obj, &[&ROUTE_KEYS, &OFFER_KEYS, &super::discovery::ROUTE_KEYS])?;
        let raw: RawOffer = serde_json::from_value(entry.clone()).or_else(|e| err(format!("{at}: {e}")))?;
        vec![parse_offer(at, &raw, defaults)?]
    } else {
        return err(format!("{at}: give a `price`, an `amount`, an `accepts` list, or `free = true`"));
    };
    for (a, x) in accepts.iter().enumerate() {
        if accepts[..a].iter().any(|y| y.requirements == x.requirements) {
            return err(format!("{at}: payment option {a} repeats an earlier one"));
        }
    }
    Ok(accepts)
}

/// Every option's `maxTimeoutSeconds` leaves room for the origin, the facilitator, the
/// verifier's block slack and the client's latency.
fn check_time_window(at: &str, accepts: &[Offer], table: &TableDefaults) -> Result<(), ConfigError> {
    let (origin_timeout_seconds, facilitator_timeout_seconds) = (table.origin_timeout_seconds, table.facilitator_timeout_seconds);
    let min_window = origin_timeout_seconds + facilitator_timeout_seconds + VALID_BEFORE_SLACK_SECONDS + CLIENT_LATENCY_SECONDS;
    if let Some(o) = accepts.iter().find(|o| o.requirements.max_timeout_seconds < min_window) {
        return err(format!(
            "{at}: maxTimeoutSeconds {} is too short for ORIGIN_TIMEOUT_SECONDS ({origin_timeout_seconds}) + FACILITATOR_TIMEOUT_SECONDS ({facilitator_timeout_seconds}) + {} s: an authorization signed for it would expire before it could settle; use at least {min_window}",
            o.requirements.max_timeout_seconds,
            VALID_BEFORE_SLACK_SECONDS + CLIENT_LATENCY_SECONDS
        ));
    }
    Ok(())
}
