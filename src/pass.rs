//! Passes: what a route's `pass = { ttl, maxRequests, scope }` sells for one payment
//! ([`crate::config::PassTerms`]): access to a scope until an expiry, optionally for a counted
//! number of requests.
//!
//! - Token: 32 random bytes (getrandom), base64url without padding: 43 characters. Sent in the
//!   [`PASS_HEADER`] response header (expiry, Unix seconds, in [`PASS_EXPIRES_HEADER`]) and as the
//!   [`PASS_COOKIE`] cookie (`HttpOnly; Secure; SameSite=Lax`, `Path` = the scope's path); accepted
//!   back from either. Neither reaches the origin.
//! - The pass *id* is keccak256(token), hex: KV holds `pass:<id>` → [`PassRecord`] (the namespace
//!   never holds a usable token); the ledger Durable Object named `pass:<id>` knows it was sold,
//!   counts its requests and holds its revocation ([`crate::ledger::PassUse`]).
//! - A revocation is a *tombstone*: its own KV key `revoked:<id>` ([`tombstone_key`]), which no
//!   record write can overwrite, read whenever a record is read from KV, and kept in the revoking
//!   isolate's [`PassCache`] until the pass expires.
//! - Each isolate caches records it read or minted for at most [`CACHE_SECONDS`], so a revocation
//!   written to KV reaches every isolate within KV's propagation (about 60 s) plus that.

use std::cell::RefCell;
use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::config::{PassScope, Route};
use crate::evm::{hex_lower, keccak256};

pub use crate::headers::{PASS_EXPIRES_HEADER, PASS_HEADER};
/// Cookie carrying the pass token for browsers.
pub const PASS_COOKIE: &str = "x402_pass";
/// Length of a token in characters.
pub const TOKEN_LEN: usize = 43;
/// Longest time an isolate trusts a cached record, seconds.
pub const CACHE_SECONDS: u64 = 30;
/// Most records one isolate caches.
pub const CACHE_CAPACITY: usize = 4096;
/// How long an isolate answers `pass_unknown` for a pass id KV did not hold without asking KV
/// again, seconds. Within Workers KV's own caching of a missing key (60 s by default), so it
/// adds little to how long a pass sold at another location takes to be known here.
pub const UNKNOWN_SECONDS: u64 = 30;
/// Most unknown pass ids one isolate remembers.
pub const UNKNOWN_CAPACITY: usize = 4096;

/// Encodes 32 random bytes as a token.
pub fn token_from_random(random: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(random)
}

/// The pass id of a presented token (keccak256, lower-case hex), or `None` when the token is not
/// token-shaped (no lookup is made).
pub fn pass_id(token: &str) -> Option<String> {
    let t = token.trim();
    if t.len() != TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return None;
    }
    Some(hex_lower(&keccak256(t.as_bytes())))
}

/// The KV key of a pass id.
pub fn kv_key(id: &str) -> String {
    format!("pass:{id}")
}

/// The KV key of a pass id's revocation (tombstone). Its prefix differs from [`kv_key`]'s, so a
/// record write never touches it.
pub fn tombstone_key(id: &str) -> String {
    format!("revoked:{id}")
}

/// The token a request carries: the [`PASS_HEADER`] header, else the [`PASS_COOKIE`] cookie.
pub fn token_from_request(headers: &http::HeaderMap) -> Option<String> {
    if let Some(v) = headers.get(PASS_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_string());
    }
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| name.trim() == PASS_COOKIE)
        .map(|(_, value)| value.trim().to_string())
}

/// The `Cookie` header without the pass cookie (`None` when nothing else is left), so the token
/// never reaches the origin.
pub fn strip_cookie(cookie: &str) -> Option<String> {
    let kept: Vec<&str> = cookie.split(';').map(str::trim).filter(|pair| !pair.is_empty() && pair.split('=').next().map(str::trim) != Some(PASS_COOKIE)).collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// The `Set-Cookie` value for a pass: `Path` limits where browsers send it (authorization is by
/// the record's scope either way; the path goes through [`cookie_path`]), `Max-Age` its lifetime
/// in seconds. `token` is a token as [`token_from_random`] makes it (base64url).
pub fn set_cookie(token: &str, path: &str, max_age: u64) -> String {
    format!("{PASS_COOKIE}={token}; Path={}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax", cookie_path(path))
}

/// Whether `b` may appear in a cookie's `Path` attribute as this paywall writes it: RFC 3986
/// path characters (unreserved, `%` escapes, `/`, and the sub-delimiters other than `;`, `,` and
/// `=`, plus `:` and `@`). RFC 6265 §4.1.1's path-value excludes only controls and `;`; `,` and
/// `=` are left out too, because some cookie parsers split on them, as are whitespace, `"` and
/// `\`.
fn cookie_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%' | b'/' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b':' | b'@')
}

/// The `Path` attribute for a cookie scoped to `path` (a canonical request path or a pattern's
/// literal prefix): `path` itself when every byte is safe (the set above), else its
/// longest prefix of whole safe segments (`/docs/1;Domain=example.com;Path=/` → `/docs`), `/` at
/// least. A browser then sends the cookie on a wider path than the pass opens, never a narrower
/// one; the pass record's scope still decides what it admits. Never carries `;`, `,`, `=`,
/// whitespace or control characters, so the path cannot add or replace a cookie attribute.
pub fn cookie_path(path: &str) -> String {
    if path.starts_with('/') && path.bytes().all(cookie_path_byte) {
        return path.to_string();
    }
    let safe: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).take_while(|s| s.bytes().all(cookie_path_byte)).collect();
    format!("/{}", safe.join("/"))
}

/// The cookie path of a route pattern: its literal leading segments (`GET /reports/:id` →
/// `/reports`), `/` when it starts with a wildcard.
pub fn pattern_path(route_key: &str) -> String {
    let path = route_key.split_once(' ').map_or(route_key, |(_, p)| p);
    let literal: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).take_while(|s| !(s.starts_with(':') || s.starts_with('[') || s.contains('*'))).collect();
    format!("/{}", literal.join("/"))
}

/// What KV holds for a pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PassRecord {
    /// The payer's address (EIP-55).
    pub payer: String,
    /// The route key that sold it (`"GET /reports/:id"`).
    pub route: String,
    /// `"route"`, `"path"` or `"group"`.
    pub scope: String,
    /// The canonical path (scope `path`) or group name (scope `group`).
    #[serde(default)]
    pub scope_value: String,
    /// CAIP-2 network and transaction of the payment.
    pub network: String,
    pub transaction: String,
    /// Unix seconds after which the pass is dead.
    pub expires_at: u64,
    /// Requests the token admits, counted by its ledger shard: the route's `maxRequests` less
    /// the paid request that bought it; `None`: unlimited until expiry.
    pub max_requests: Option<u32>,
    /// Revoked by the operator, in records written before revocations became tombstones
    /// ([`tombstone_key`]); still honoured, never written `true` now.
    #[serde(default)]
    pub revoked: bool,
}

impl PassRecord {
    /// The scope fields of a record for `scope` sold on a request to `canonical`.
    pub fn scope_fields(scope: &PassScope, canonical: &str) -> (String, String) {
        match scope {
            PassScope::Route => ("route".into(), String::new()),
            PassScope::Path => ("path".into(), canonical.to_string()),
            PassScope::Group(g) => ("group".into(), g.clone()),
        }
    }

    /// Whether the pass admits a request for `route` at `canonical` at Unix time `now`; Err is
    /// the reason code it does not (`pass_revoked`, `pass_expired`, `pass_out_of_scope`).
    pub fn admits(&self, route: &Route, canonical: &str, now: u64) -> Result<(), &'static str> {
        if self.revoked {
            return Err("pass_revoked");
        }
        if now >= self.expires_at {
            return Err("pass_expired");
        }
        let in_scope = match self.scope.as_str() {
            "route" => route.key == self.route,
            "path" => route.key == self.route && canonical == self.scope_value,
            "group" => route.group.as_deref() == Some(self.scope_value.as_str()),
            _ => false,
        };
        if in_scope {
            Ok(())
        } else {
            Err("pass_out_of_scope")
        }
    }
}

/// Pass records this isolate has read or minted, each trusted for [`CACHE_SECONDS`]; the
/// revocations (tombstones) it wrote or read, each kept until its pass expires; and the pass ids
/// KV did not hold (a negative cache), each remembered for [`UNKNOWN_SECONDS`]. Each map is
/// bounded (by [`CACHE_CAPACITY`], [`UNKNOWN_CAPACITY`]): when full, stale entries go first, then
/// everything (a forgotten tombstone is read again from KV with the record).
#[derive(Debug, Default)]
pub struct PassCache {
    records: RefCell<HashMap<String, (PassRecord, u64)>>,
    /// Pass id → Unix seconds until which it is known revoked (its expiry).
    revoked: RefCell<HashMap<String, u64>>,
    /// Unknown pass id → Unix seconds it was found unknown.
    unknown: RefCell<HashMap<String, u64>>,
}

impl PassCache {
    /// The record for a pass id if cached within the last [`CACHE_SECONDS`] before `now`.
    pub fn get(&self, id: &str, now: u64) -> Option<PassRecord> {
        self.records.borrow().get(id).filter(|(_, at)| now.saturating_sub(*at) < CACHE_SECONDS).map(|(r, _)| r.clone())
    }

    /// Caches `record` at Unix time `now`.
    pub fn insert(&self, id: String, record: PassRecord, now: u64) {
        let mut records = self.records.borrow_mut();
        if records.len() >= CACHE_CAPACITY {
            records.retain(|_, (_, at)| now.saturating_sub(*at) < CACHE_SECONDS);
            if records.len() >= CACHE_CAPACITY {
                records.clear();
            }
        }
        records.insert(id, (record, now));
    }

    /// Whether a record for the pass id is cached and still trusted at `now` ([`PassCache::get`]
    /// without the copy).
    pub fn holds(&self, id: &str, now: u64) -> bool {
        self.records.borrow().get(id).is_some_and(|(_, at)| now.saturating_sub(*at) < CACHE_SECONDS)
    }

    /// Whether the pass id was found unknown within the last [`UNKNOWN_SECONDS`] before `now`.
    pub fn is_unknown(&self, id: &str, now: u64) -> bool {
        self.unknown.borrow().get(id).is_some_and(|at| now.saturating_sub(*at) < UNKNOWN_SECONDS)
    }

    /// Remembers at Unix time `now` that KV did not hold the pass id.
    pub fn mark_unknown(&self, id: &str, now: u64) {
        let mut unknown = self.unknown.borrow_mut();
        if unknown.len() >= UNKNOWN_CAPACITY {
            unknown.retain(|_, at| now.saturating_sub(*at) < UNKNOWN_SECONDS);
            if unknown.len() >= UNKNOWN_CAPACITY {
                unknown.clear();
            }
        }
        unknown.insert(id.to_string(), now);
    }

    /// How many unknown pass ids are remembered.
    pub fn unknown_len(&self) -> usize {
        self.unknown.borrow().len()
    }

    /// Forgets a pass's record.
    pub fn remove(&self, id: &str) {
        self.records.borrow_mut().remove(id);
    }

    /// Records that a pass is revoked until `until` (Unix seconds, its expiry; at least `now` +
    /// [`CACHE_SECONDS`]) and forgets its record.
    pub fn revoke(&self, id: &str, until: u64, now: u64) {
        self.remove(id);
        let mut revoked = self.revoked.borrow_mut();
        if revoked.len() >= CACHE_CAPACITY {
            revoked.retain(|_, until| *until > now);
            if revoked.len() >= CACHE_CAPACITY {
                revoked.clear();
            }
        }
        revoked.insert(id.to_string(), until.max(now.saturating_add(CACHE_SECONDS)));
    }

    /// Whether this isolate knows the pass is revoked at `now`.
    pub fn is_revoked(&self, id: &str, now: u64) -> bool {
        self.revoked.borrow().get(id).is_some_and(|until| *until > now)
    }

    /// Records cached (fresh or stale).
    pub fn len(&self) -> usize {
        self.records.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tombstones cached (live or past their pass's expiry).
    pub fn revoked_len(&self) -> usize {
        self.revoked.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_ids() {
        let t = token_from_random(&[0xff; 32]);
        assert_eq!(t.len(), TOKEN_LEN);
        let id = pass_id(&t).unwrap();
        assert_eq!(id.len(), 64);
        assert!(!id.contains(&t));
        assert_eq!(pass_id("short"), None);
        assert_eq!(pass_id(&format!("{}!", "a".repeat(42))), None);
    }

    #[test]
    fn carriers() {
        let mut h = http::HeaderMap::new();
        h.insert("cookie", "a=1; x402_pass=TOKEN; b=2".parse().unwrap());
        assert_eq!(token_from_request(&h).as_deref(), Some("TOKEN"));
        h.insert(PASS_HEADER, "HEADER".parse().unwrap());
        assert_eq!(token_from_request(&h).as_deref(), Some("HEADER"), "the header wins");
        assert_eq!(strip_cookie("a=1; x402_pass=TOKEN; b=2").as_deref(), Some("a=1; b=2"));
        assert_eq!(strip_cookie("x402_pass=TOKEN"), None);
        assert_eq!(set_cookie("T", "/reports", 3600), "x402_pass=T; Path=/reports; Max-Age=3600; HttpOnly; Secure; SameSite=Lax");
        assert_eq!(set_cookie("T", "/docs/1;Domain=example.com;Path=/", 60), "x402_pass=T; Path=/docs; Max-Age=60; HttpOnly; Secure; SameSite=Lax");
        assert_eq!(pattern_path("GET /reports/:id"), "/reports");
        assert_eq!(pattern_path("/premium/*"), "/premium");
        assert_eq!(pattern_path("GET /*"), "/");
        assert_eq!(pattern_path("GET /a/b"), "/a/b");
    }

    #[test]
    fn a_cookie_path_never_carries_an_attribute() {
        // Safe paths are kept as they are (escapes included, trailing slash kept).
        for path in ["/", "/reports", "/reports/", "/docs/a%20b", "/docs/~user/x.json", "/a/b:c@d!$&'()*+"] {
            assert_eq!(cookie_path(path), path);
        }
        // Anything that could end the attribute or start another cuts the path before its segment.
        for (path, want) in [
            ("/docs/1;Domain=example.com;Path=/", "/docs"),
            ("/docs/1;Domain=example.com", "/docs"),
            (";Domain=example.com", "/"),
            ("/;Path=/", "/"),
            ("/a/b,c/d", "/a"),
            ("/a/b=c", "/a"),
            ("/a/\"x\"", "/a"),
            ("/a/b c", "/a"),
            ("/a/b\tc", "/a"),
            ("/a/b\r\nSet-Cookie:x=1", "/a"),
            ("/a/b\\c", "/a"),
            ("/a/é", "/a"),
            ("", "/"),
            ("relative/x", "/relative/x"),
        ] {
            let got = cookie_path(path);
            assert_eq!(got, want, "{path:?}");
            assert!(got.starts_with('/') && got.bytes().all(cookie_path_byte), "{got:?}");
            let cookie = set_cookie("T", path, 60);
            assert_eq!(cookie.matches(';').count(), 5, "exactly the five attributes: {cookie}");
            assert!(!cookie.to_ascii_lowercase().contains("domain"), "{cookie}");
        }
    }

    #[test]
    fn a_tombstone_outlives_the_record_cache_until_the_pass_expires() {
        let cache = PassCache::default();
        assert!(!cache.is_revoked("a", 100));
        cache.revoke("a", 1000, 100);
        assert!(cache.is_revoked("a", 100 + CACHE_SECONDS + 1), "kept beyond the record cache's lifetime");
        assert!(cache.is_revoked("a", 999));
        assert!(!cache.is_revoked("a", 1000), "forgotten once the pass has expired anyway");
        assert!(!cache.is_revoked("b", 100));
        // An already expired pass is still refused for a while.
        cache.revoke("old", 50, 100);
        assert!(cache.is_revoked("old", 100 + CACHE_SECONDS - 1));
        for i in 0..CACHE_CAPACITY + 10 {
            cache.revoke(&format!("k{i}"), 2000, 100);
        }
        assert!(cache.revoked_len() <= CACHE_CAPACITY);
    }

    #[test]
    fn the_cache_forgets_after_its_lifetime_and_stays_bounded() {
        let cache = PassCache::default();
        let rec = PassRecord {
            payer: "p".into(),
            route: "GET /x".into(),
            scope: "route".into(),
            scope_value: String::new(),
            network: "n".into(),
            transaction: "t".into(),
            expires_at: 1000,
            max_requests: None,
            revoked: false,
        };
        cache.insert("a".into(), rec.clone(), 100);
        assert!(cache.get("a", 100 + CACHE_SECONDS - 1).is_some());
        assert!(cache.get("a", 100 + CACHE_SECONDS).is_none(), "re-read from KV after the cache lifetime");
        for i in 0..CACHE_CAPACITY {
            cache.insert(format!("k{i}"), rec.clone(), 500);
        }
        cache.insert("new".into(), rec, 500);
        assert!(cache.len() <= CACHE_CAPACITY);
    }

    #[test]
    fn unknown_ids_are_remembered_briefly_and_stay_bounded() {
        let cache = PassCache::default();
        cache.mark_unknown("a", 100);
        assert!(cache.is_unknown("a", 100 + UNKNOWN_SECONDS - 1));
        assert!(!cache.is_unknown("a", 100 + UNKNOWN_SECONDS), "asked again after its lifetime");
        assert!(!cache.is_unknown("b", 100));
        assert!(!cache.holds("a", 100), "an unknown id is no record");
        for i in 0..3 * UNKNOWN_CAPACITY {
            cache.mark_unknown(&format!("k{i}"), 500);
            assert!(cache.unknown_len() <= UNKNOWN_CAPACITY);
        }
        assert!(cache.is_unknown(&format!("k{}", 3 * UNKNOWN_CAPACITY - 1), 500), "the newest is kept");
    }
}
