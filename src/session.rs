//! Paid sessions: after a settled payment the paywall mints a bearer token that lets the same
//! client back into the same route (its *scope*) without paying again until it expires.
//!
//! - Token: 32 random bytes (getrandom), base64url without padding: 43 characters.
//! - Sent to the client in the [`SESSION_HEADER`] response header, with its expiry (Unix
//!   seconds) in [`SESSION_EXPIRES_HEADER`]; presented back in the [`SESSION_HEADER`] request
//!   header, which is never forwarded to the origin.
//! - Stored in Workers KV under `session:<keccak256(token) hex>` (so the KV namespace never holds
//!   a usable token) as a JSON [`SessionRecord`], with the session lifetime as KV TTL. The record's
//!   own `expiresAt` is checked on every read as well.

use std::cell::RefCell;
use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::evm::{hex_lower, keccak256};

/// Request and response header carrying the session token.
pub const SESSION_HEADER: &str = "x402-session";
/// Response header carrying the session's expiry, Unix seconds.
pub const SESSION_EXPIRES_HEADER: &str = "x402-session-expires";
/// Length of a token in characters.
pub const TOKEN_LEN: usize = 43;

/// What KV holds for a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    /// The payer's address (EIP-55).
    pub payer: String,
    /// The route key the payment bought (`"GET /weather"`).
    pub scope: String,
    /// CAIP-2 network of the payment.
    pub network: String,
    /// Settlement transaction hash.
    pub transaction: String,
    /// Unix seconds after which the session is dead.
    pub expires_at: u64,
}

/// Encodes 32 random bytes as a token.
pub fn token_from_random(random: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(random)
}

/// The KV key for a presented token, or `None` when it is not token-shaped (no KV read is made).
pub fn kv_key(token: &str) -> Option<String> {
    let t = token.trim();
    if t.len() != TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return None;
    }
    Some(format!("session:{}", hex_lower(&keccak256(t.as_bytes()))))
}

impl SessionRecord {
    /// Whether this record admits a request to `scope` at Unix time `now`.
    pub fn admits(&self, scope: &str, now: u64) -> bool {
        self.scope == scope && now < self.expires_at
    }
}

/// Most sessions one isolate keeps in memory.
pub const CACHE_CAPACITY: usize = 4096;

/// Session records this isolate has already read from KV or minted, so that a live session
/// costs no KV read after its first use here. Records never change, so the only staleness is
/// expiry, which [`SessionRecord::admits`] checks on every use. Bounded by [`CACHE_CAPACITY`]:
/// when full, expired records are dropped, and if none are, the cache is emptied.
#[derive(Debug, Default)]
pub struct SessionCache {
    records: RefCell<HashMap<String, SessionRecord>>,
}

impl SessionCache {
    /// The cached record for a KV key, if any.
    pub fn get(&self, key: &str) -> Option<SessionRecord> {
        self.records.borrow().get(key).cloned()
    }

    /// Caches `record` under its KV key at Unix time `now`.
    pub fn insert(&self, key: String, record: SessionRecord, now: u64) {
        let mut records = self.records.borrow_mut();
        if records.len() >= CACHE_CAPACITY {
            records.retain(|_, r| r.expires_at > now);
            if records.len() >= CACHE_CAPACITY {
                records.clear();
            }
        }
        records.insert(key, record);
    }

    /// How many records are cached.
    pub fn len(&self) -> usize {
        self.records.borrow().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_43_url_safe_characters_and_keys_hash_them() {
        let t = token_from_random(&[0xff; 32]);
        assert_eq!(t.len(), TOKEN_LEN);
        let k = kv_key(&t).unwrap();
        assert!(k.starts_with("session:") && !k.contains(&t));
        assert_eq!(k.len(), "session:".len() + 64);
        assert_eq!(kv_key("short"), None);
        assert_eq!(kv_key(&"a".repeat(42)), None);
        assert_eq!(kv_key(&format!("{}!", "a".repeat(42))), None);
    }

    #[test]
    fn the_cache_stays_bounded_and_drops_expired_records_first() {
        let cache = SessionCache::default();
        let rec = |exp| SessionRecord { payer: "p".into(), scope: "s".into(), network: "n".into(), transaction: "t".into(), expires_at: exp };
        for i in 0..CACHE_CAPACITY {
            cache.insert(format!("k{i}"), rec(if i % 2 == 0 { 10 } else { 1000 }), 5);
        }
        assert_eq!(cache.len(), CACHE_CAPACITY);
        cache.insert("new".into(), rec(1000), 50);
        assert_eq!(cache.len(), CACHE_CAPACITY / 2 + 1, "the expired half went first");
        assert!(cache.get("k0").is_none() && cache.get("k1").is_some() && cache.get("new").is_some());
    }

    #[test]
    fn scope_and_expiry() {
        let r = SessionRecord { payer: "0x1".into(), scope: "GET /a".into(), network: "eip155:1".into(), transaction: "0x2".into(), expires_at: 100 };
        assert!(r.admits("GET /a", 99));
        assert!(!r.admits("GET /a", 100));
        assert!(!r.admits("GET /b", 50));
    }
}
