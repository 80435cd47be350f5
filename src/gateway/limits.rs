//! Limits on unpaid and failed work: the Workers rate limiting bindings (`challenge`, `paid`,
//! `failed`), the isolate's block list of clients over their `failed` limit, and the key a client
//! is limited under. A limiter that cannot be used never blocks a payment.

use http::Response;

use crate::config::Route;
use crate::telemetry::{DecisionOutcome, Trace};

use super::platform::Platform;
use super::refusal::{refuse, Limit, Refusal};

/// Keys blocked until a time (Unix seconds). Bounded: at most [`BlockList::MAX`] keys are kept,
/// expired ones dropped first.
#[derive(Debug, Default)]
pub struct BlockList(std::cell::RefCell<std::collections::HashMap<String, u64>>);

impl BlockList {
    /// Most keys held.
    pub const MAX: usize = 10_000;

    /// Blocks `key` until `until`.
    pub fn block(&self, key: &str, until: u64, now: u64) {
        let mut m = self.0.borrow_mut();
        if m.len() >= Self::MAX {
            m.retain(|_, t| *t > now);
        }
        if m.len() < Self::MAX {
            m.insert(key.to_string(), until);
        }
    }

    /// Whether `key` is blocked at `now`.
    pub fn is_blocked(&self, key: &str, now: u64) -> bool {
        self.0.borrow().get(key).is_some_and(|t| *t > now)
    }
}

/// Seconds a client over a route's `failed` limit is refused before its payments are looked at
/// (the longest period a Workers rate limit counts over).
pub const FAILED_BLOCK_SECONDS: u64 = 60;

/// `Retry-After` for a request over a `challenge` or `paid` limit, seconds.
pub const RATE_LIMIT_RETRY_SECONDS: u64 = 10;

pub(super) fn failed_key(route: &Route, client_ip: &str) -> String {
    format!("failed:{}:{client_ip}", route.key)
}

/// The key the route's `challenge` limit counts a client's unpaid work under.
pub(super) fn challenge_key(route: &Route, client: &str) -> String {
    format!("challenge:{}:{client}", route.key)
}

/// Counts one piece of unpaid work that costs more than a challenge (a pass lookup that reads
/// KV, a sign-in that reaches a Durable Object) against the route's `challenge` rate limit for
/// `client` ([`client_limit_key`]), under the key challenges count under: one budget per client
/// for everything it gets without paying. True when within it, or the route has no such limit.
pub(super) async fn unpaid_work_allowed<P: Platform>(p: &P, route: &Route, client: &str) -> bool {
    match &route.rate_limits.challenge {
        Some(binding) => rate_limit(p, binding, &challenge_key(route, client)).await,
        None => true,
    }
}

/// The identity a client is rate-limited and blocked under (the `challenge` and `failed` limits,
/// the failed-attempt block list), from its `CF-Connecting-IP` value: an IPv4 address as it is
/// (`192.0.2.1`); an IPv6 address as its /64 prefix, its first four groups in lower-case hex
/// (`2001:db8:0:2::/64`): the smallest allocation one subscriber gets, so rotating through its
/// addresses gains nothing; an IPv4-mapped IPv6 address as its IPv4 address; anything else
/// (absent, not an IP address) as `unknown`, one shared key, so invented values never multiply
/// keys. Parsed with `std::net` (surrounding spaces ignored).
pub fn client_limit_key(ip: Option<&str>) -> String {
    match ip.map(str::trim).and_then(|ip| ip.parse::<std::net::IpAddr>().ok()) {
        Some(std::net::IpAddr::V4(v4)) => v4.to_string(),
        Some(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        None => "unknown".to_string(),
    }
}

/// Counts one request against a rate limiting binding; a limiter that cannot be used lets the
/// request through (logged): it protects capacity, never payments.
pub(super) async fn rate_limit<P: Platform>(p: &P, binding: &str, key: &str) -> bool {
    match p.rate_limit(binding, key).await {
        Ok(within) => within,
        Err(e) => {
            p.log(&format!("x402: rate limiter {binding} unavailable ({e}); not limiting"));
            true
        }
    }
}

/// After a refused payment attempt: counts it against the route's `failed` limit for the client;
/// over the limit, answers 429 and blocks the client's payment attempts on this route in this
/// isolate for [`FAILED_BLOCK_SECONDS`] (the rate limiting API cannot be asked without counting).
pub(super) async fn failed_attempt_limit<P: Platform>(p: &P, route: &Route, trace: &Trace, client_ip: &str, res: Response<P::Body>) -> Response<P::Body> {
    let Some(binding) = &route.rate_limits.failed else { return res };
    if trace.current_outcome() != DecisionOutcome::Refused {
        return res;
    }
    let key = failed_key(route, client_ip);
    if rate_limit(p, binding, &key).await {
        return res;
    }
    p.isolate().blocked.block(&key, p.now() + FAILED_BLOCK_SECONDS, p.now());
    refuse(p, trace, Refusal::RateLimited(Limit::FailedPayments))
}
