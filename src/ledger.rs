//! The payment ledger: what this paywall has done with each EIP-3009 authorization, decided by
//! one writer.
//!
//! On the edge the ledger lives in a Durable Object (`PaymentLedger`, SQLite storage), one object
//! per payer address ([`shard_name`]), so every request carrying an authorization of that payer
//! meets the same single-threaded writer wherever it arrives. This module is the whole state
//! machine, pure and synchronous over a [`Store`]; the Durable Object is glue that loads the
//! store, calls [`apply`] and answers with the [`Reply`]. KV is never used as the lock: it is
//! eventually consistent.
//!
//! An authorization is identified by (network, asset, `from`, `nonce`) ([`AuthorizationKey`]).
//! Its record moves through:
//!
//! ```text
//!            reserve                                  finish
//!  (none) ──────────► pending (held: verify, origin, ──────────► settled {tx, delivered}
//!    ▲                 settle by the holder)                      unknown {tx?}
//!    └──── release (the holder never sent it) ──┘                 refused: deleted, standing "bad"
//! ```
//!
//! - While a *lease* is held (`lease_until > now`) the authorization is in flight: another
//!   request carrying it gets [`Reply::InFlight`] (HTTP 409).
//! - Two ledger calls per paid request: `reserve` and `finish`. A pending record may have been
//!   sent to `/settle` by its holder; the holder knows whether it was, and releases it (deleted)
//!   when it was not. A lease that runs out without a `finish` means the holder died, maybe
//!   after sending: the record then reads as *unknown*, which the next retry reconciles.
//! - Settled and delivered: spent ([`Reply::Spent`]). Settled but not delivered (the client was
//!   gone, or the origin failed after a settle-first payment): one retry of the same
//!   authorization is served without a second settlement ([`Reply::Redeliver`]).
//! - Unknown: a retry reserves it again with `prior_sent = true`: the gateway settles once more
//!   and takes the facilitator's "nonce already used" as paid, because this ledger itself sent
//!   the authorization to settlement.
//! - Records are kept until `validBefore` has passed (after which the token contract refuses the
//!   authorization anyway) and then pruned ([`prune`]).
//!
//! The ledger also keeps the payer's *standing* (last successful settlement, last refusal), which
//! the `auto` verify policy reads to decide whether a facilitator `/verify` is needed first.

use serde::{Deserialize, Serialize};

use crate::evm::{hex_lower, Address};

/// Seconds added to every lease beyond the time limits it covers (scheduling, DO round trips).
pub const LEASE_MARGIN_SECONDS: u64 = 10;

/// Seconds a record is kept after its `validBefore` before [`prune`] deletes it.
pub const PRUNE_AFTER_SECONDS: u64 = 60;

/// (network, asset, payer, nonce): the identity of one EIP-3009 authorization on chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationKey {
    /// CAIP-2 network of the offer the payment matched (`eip155:84532`).
    pub network: String,
    /// Token contract.
    pub asset: Address,
    /// `authorization.from`.
    pub payer: Address,
    /// `authorization.nonce`.
    pub nonce: [u8; 32],
}

impl AuthorizationKey {
    /// The record key: `network/asset/payer/nonce`, addresses and nonce as lower-case hex.
    pub fn id(&self) -> String {
        format!("{}/0x{}/0x{}/0x{}", self.network, hex_lower(&self.asset.0), hex_lower(&self.payer.0), hex_lower(&self.nonce))
    }
}

/// The Durable Object name of a payer's ledger shard: `payer:0x<address, lower-case hex>`.
pub fn shard_name(payer: &Address) -> String {
    format!("payer:0x{}", hex_lower(&payer.0))
}

/// Where the settlement of an authorization stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Settlement {
    /// Held by a request that may send it to `/settle` (if the lease lapses: maybe sent).
    Pending,
    /// Sent, outcome unknown (time-out, 5xx, unreadable reply, pending). `transaction` when the
    /// facilitator named one.
    Unknown { transaction: Option<String> },
    /// On chain.
    Settled { transaction: String, network: String, at: u64 },
}

/// One authorization's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The route key the payment was for (`"GET /weather"`).
    pub route: String,
    /// `authorization.validBefore`, Unix seconds (capped to `u64`).
    pub valid_before: u64,
    pub settlement: Settlement,
    /// For a settled record: whether its response was handed to a connected client.
    pub delivered: bool,
    /// Unix seconds until which `holder` owns the record (in flight); 0 = nobody.
    pub lease_until: u64,
    /// The request holding the lease (random, chosen by the worker).
    pub holder: String,
    /// Whether an earlier hold may have sent it to `/settle` (its outcome unknown).
    #[serde(default)]
    pub sent_before: bool,
}

/// A payer's history, as the `auto` verify policy reads it, and whether the operator denied it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Standing {
    /// Unix seconds of the last successful settlement; 0 = never.
    pub last_settled_at: u64,
    /// Unix seconds of the last refused verification or settlement; 0 = never.
    pub last_refused_at: u64,
    /// Added to the denylist through the admin endpoint: every payment refused.
    #[serde(default)]
    pub denied: bool,
}

/// A pass's state in its own shard (`pass:<id>`): requests admitted, revocation, expiry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PassUsage {
    pub used: u32,
    pub revoked: bool,
    /// Unix seconds; the shard forgets the pass after this (plus [`PRUNE_AFTER_SECONDS`]).
    pub expires_at: u64,
}

impl Standing {
    /// Good standing: the payer's last outcome was a settlement, within `window_seconds`. A
    /// refusal in the same second as the last settlement counts as the later one.
    pub fn is_good(&self, now: u64, window_seconds: u64) -> bool {
        self.last_settled_at > 0 && self.last_settled_at > self.last_refused_at && now.saturating_sub(self.last_settled_at) < window_seconds
    }
}

/// How a request that held the lease ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// `/settle` succeeded. `delivered`: the response is being handed to a connected client.
    /// `hold_seconds` > 0 keeps the lease that long (a settle-first route still has to call the
    /// origin and then report [`Outcome::Delivered`]); 0 drops it.
    /// `pass`: the id and expiry of the pass sold with this payment, indexed for the payer
    /// (payer-wide revocation) in the same write.
    #[serde(rename_all = "camelCase")]
    Settled { transaction: String, network: String, delivered: bool, hold_seconds: u64, pass: Option<(String, u64)> },
    /// The facilitator refused the payment (`/verify` invalid, or `/settle` `success: false`
    /// without a transaction): the record is deleted and the payer's standing turns bad.
    Refused,
    /// `/settle` was sent and its outcome is unknown.
    Unknown { transaction: Option<String> },
    /// This hold never sent it to `/settle` (origin failed, client gone, verify unavailable):
    /// the authorization can be retried. A record an earlier hold may have sent stays unknown.
    Release,
    /// A settled authorization's response was (`true`) or was not (`false`) handed over after a
    /// redelivery or a settle-first origin call.
    Delivered { delivered: bool },
}

/// A request to the ledger. `Finish` names the `holder` that reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Op {
    /// Takes the authorization for one request, before any origin or facilitator work. The
    /// lease must cover everything the holder may do: `/verify`, the origin, `/settle`.
    #[serde(rename_all = "camelCase")]
    Reserve { key: String, holder: String, route: String, valid_before: u64, lease_seconds: u64 },
    /// Records how the request ended and drops the lease.
    #[serde(rename_all = "camelCase")]
    Finish { key: String, holder: String, outcome: Outcome },
    /// In a pass shard: admits one request if the pass is not revoked, not expired and, when
    /// counted, not used up; counts it. The terms come from the pass record (KV), which the
    /// paywall wrote: the shard needs no separate creation step.
    #[serde(rename_all = "camelCase")]
    PassUse { max_requests: Option<u32>, expires_at: u64 },
    /// In a pass shard: gives back one request a `PassUse` counted, when the origin did not
    /// serve it (5xx, unreachable, over its time limit). Never below zero; nothing for a pass
    /// the shard does not know. Answers `Done`.
    PassRefund,
    /// In a pass shard: records that the pass was sold (expiring at `expires_at`, Unix seconds),
    /// so that a revocation by token finds it before its KV record reaches the revoking location.
    /// Keeps the state of a pass the shard already knows (a revocation stays). Answers `Done`.
    #[serde(rename_all = "camelCase")]
    PassSold { expires_at: u64 },
    /// In a pass shard: revokes the pass (effective for the next `PassUse` at once). `known`:
    /// the paywall found the pass's record (KV, its cache, or the payer's index), so the shard
    /// creates a revoked state if it has none. Answers [`Reply::PassRevoked`], or
    /// [`Reply::PassUnknown`] (nothing written) when neither the shard nor the paywall knows it.
    #[serde(rename_all = "camelCase")]
    PassRevoke { expires_at: u64, known: bool },
    /// In a payer shard: lists the payer's live passes (indexed when their payment settled), to
    /// revoke each.
    PayerPasses,
    /// In a payer shard: denies every later payment of the payer; lists its live passes.
    PayerDeny,
    /// In a payer shard: a verified wallet sign-in (`sign-in-with-x`) with `nonce`, valid until
    /// `expires_at`: records the nonce (single use) and lists the payer's live passes.
    #[serde(rename_all = "camelCase")]
    SignIn { nonce: String, expires_at: u64 },
}

/// The ledger's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reply {
    /// The request holds the authorization. `prior_sent`: this ledger already sent it to
    /// settlement once (outcome unknown). `standing`: the payer's history;
    /// `others_in_flight`: how many other authorizations of this payer are in flight now.
    #[serde(rename_all = "camelCase")]
    Reserved { prior_sent: bool, prior_transaction: Option<String>, standing: Standing, others_in_flight: u32 },
    /// Another request holds it (HTTP 409).
    InFlight,
    /// Settled and delivered: a replay (HTTP 402, nothing called).
    Spent { transaction: String },
    /// Settled but not delivered: this request may serve it once, without settling again.
    Redeliver { transaction: String, network: String },
    /// The operation was recorded.
    Done,
    /// `Finish` with a transaction hash the ledger already holds for another authorization: a
    /// facilitator fault. The record is marked unknown.
    DuplicateTransaction,
    /// The request no longer holds the lease (it ran out and another request took the record).
    LostLease,
    /// The payer is on the denylist (admin endpoint): refused before any work.
    Denied,
    /// `PassUse`: admitted; `remaining` requests after this one, when counted.
    #[serde(rename_all = "camelCase")]
    PassAdmitted { remaining: Option<u32> },
    /// `PassUse`: refused; `reason` is `pass_used_up`, `pass_revoked` or `pass_expired`.
    PassRefused { reason: String },
    /// `PassRevoke`: the pass is revoked; `already`: it was before this call. `expires_at`: its
    /// expiry as the shard knows it (Unix seconds).
    #[serde(rename_all = "camelCase")]
    PassRevoked { already: bool, expires_at: u64 },
    /// `PassRevoke` of a pass this shard never saw (never sold, or its sale not recorded yet),
    /// without `known`.
    PassUnknown,
    /// `PayerPasses` / `PayerDeny` / `SignIn`: the payer's live pass ids.
    Passes { passes: Vec<String> },
    /// `SignIn`: this nonce was already used by this payer (a replay).
    NonceUsed,
}

/// Storage of one payer's shard. The Durable Object implements it over SQLite; tests over maps.
/// Errors are storage failures, reported to the worker as "ledger unavailable".
pub trait Store {
    fn get(&self, key: &str) -> Result<Option<Record>, String>;
    fn put(&mut self, key: &str, record: &Record) -> Result<(), String>;
    fn delete(&mut self, key: &str) -> Result<(), String>;
    /// The key of a record, other than `except`, whose settlement names `transaction`.
    fn find_transaction(&self, transaction: &str, except: &str) -> Result<Option<String>, String>;
    /// How many records other than `except` have a lease running past `now`.
    fn in_flight(&self, now: u64, except: &str) -> Result<u32, String>;
    fn standing(&self) -> Result<Standing, String>;
    fn set_standing(&mut self, standing: &Standing) -> Result<(), String>;
    /// The pass state of a pass shard.
    fn pass_usage(&self) -> Result<Option<PassUsage>, String>;
    fn set_pass_usage(&mut self, usage: &PassUsage) -> Result<(), String>;
    /// The passes sold to a payer shard's payer: (pass id, expires_at).
    fn payer_passes(&self) -> Result<Vec<(String, u64)>, String>;
    fn add_payer_pass(&mut self, pass: &str, expires_at: u64) -> Result<(), String>;
    /// Whether a payer shard has seen this sign-in nonce.
    fn nonce_used(&self, nonce: &str) -> Result<bool, String>;
    fn add_nonce(&mut self, nonce: &str, expires_at: u64) -> Result<(), String>;
}

/// Applies `op` at Unix time `now` (the ledger's own clock). Atomic as long as the store's calls
/// are synchronous, which they are in a Durable Object (SQLite calls do not yield).
pub fn apply(store: &mut impl Store, op: Op, now: u64) -> Result<Reply, String> {
    match op {
        Op::Reserve { key, holder, route, valid_before, lease_seconds } => {
            if store.standing()?.denied {
                return Ok(Reply::Denied);
            }
            let (mut record, fresh) = match store.get(&key)? {
                Some(r) if r.lease_until > now => return Ok(Reply::InFlight),
                Some(r) => (r, false),
                None => (Record { route, valid_before, settlement: Settlement::Pending, delivered: false, lease_until: 0, holder: String::new(), sent_before: false }, true),
            };
            record.lease_until = now.saturating_add(lease_seconds);
            record.holder = holder;
            if let Settlement::Settled { transaction, network, .. } = &record.settlement {
                if record.delivered {
                    return Ok(Reply::Spent { transaction: transaction.clone() });
                }
                let reply = Reply::Redeliver { transaction: transaction.clone(), network: network.clone() };
                store.put(&key, &record)?;
                return Ok(reply);
            }
            // An existing, unsettled record was sent before (outcome unknown) or held by a
            // request whose lease lapsed (it died, maybe after sending).
            let prior_sent = !fresh;
            let prior_transaction = match &record.settlement {
                Settlement::Unknown { transaction } => transaction.clone(),
                _ => None,
            };
            if prior_sent {
                record.settlement = Settlement::Unknown { transaction: prior_transaction.clone() };
                record.sent_before = true;
            }
            store.put(&key, &record)?;
            Ok(Reply::Reserved { prior_sent, prior_transaction, standing: store.standing()?, others_in_flight: store.in_flight(now, &key)? })
        }
        Op::Finish { key, holder, outcome } => {
            let Some(mut record) = held(store, &key, &holder, now)? else { return Ok(Reply::LostLease) };
            record.lease_until = 0;
            let before = store.standing()?;
            let mut standing = before;
            let reply = match outcome {
                Outcome::Settled { transaction, network, delivered, hold_seconds, pass } => {
                    if !transaction.is_empty() && store.find_transaction(&transaction, &key)?.is_some() {
                        record.settlement = Settlement::Unknown { transaction: None };
                        store.put(&key, &record)?;
                        return Ok(Reply::DuplicateTransaction);
                    }
                    record.settlement = Settlement::Settled { transaction, network, at: now };
                    record.delivered = delivered;
                    if hold_seconds > 0 {
                        record.lease_until = now.saturating_add(hold_seconds);
                    }
                    standing.last_settled_at = now;
                    store.put(&key, &record)?;
                    if let Some((id, expires_at)) = pass {
                        store.add_payer_pass(&id, expires_at)?;
                    }
                    Reply::Done
                }
                Outcome::Refused => {
                    standing.last_refused_at = now;
                    store.delete(&key)?;
                    Reply::Done
                }
                Outcome::Unknown { transaction } => {
                    let known = match &record.settlement {
                        Settlement::Unknown { transaction } => transaction.clone(),
                        _ => None,
                    };
                    record.settlement = Settlement::Unknown { transaction: transaction.or(known) };
                    store.put(&key, &record)?;
                    Reply::Done
                }
                Outcome::Release => {
                    if record.sent_before || !matches!(record.settlement, Settlement::Pending) {
                        // Sent by an earlier hold: releasing must not forget that.
                        if record.settlement == Settlement::Pending {
                            record.settlement = Settlement::Unknown { transaction: None };
                        }
                        store.put(&key, &record)?;
                    } else {
                        store.delete(&key)?;
                    }
                    Reply::Done
                }
                Outcome::Delivered { delivered } => {
                    if matches!(record.settlement, Settlement::Settled { .. }) {
                        record.delivered = delivered;
                    }
                    store.put(&key, &record)?;
                    Reply::Done
                }
            };
            if standing != before {
                store.set_standing(&standing)?;
            }
            Ok(reply)
        }
        Op::PassUse { max_requests, expires_at } => {
            let mut usage = store.pass_usage()?.unwrap_or(PassUsage { used: 0, revoked: false, expires_at });
            let refused = |reason: &str| Ok(Reply::PassRefused { reason: reason.into() });
            if usage.revoked {
                return refused("pass_revoked");
            }
            if now >= expires_at {
                return refused("pass_expired");
            }
            if max_requests.is_some_and(|max| usage.used >= max) {
                return refused("pass_used_up");
            }
            usage.used = usage.used.saturating_add(1);
            usage.expires_at = expires_at;
            store.set_pass_usage(&usage)?;
            Ok(Reply::PassAdmitted { remaining: max_requests.map(|max| max - usage.used) })
        }
        Op::PassRefund => {
            if let Some(mut usage) = store.pass_usage()?.filter(|u| u.used > 0) {
                usage.used -= 1;
                store.set_pass_usage(&usage)?;
            }
            Ok(Reply::Done)
        }
        Op::PassSold { expires_at } => {
            if store.pass_usage()?.is_none() {
                store.set_pass_usage(&PassUsage { used: 0, revoked: false, expires_at })?;
            }
            Ok(Reply::Done)
        }
        Op::PassRevoke { expires_at, known } => {
            let mut usage = match store.pass_usage()? {
                Some(u) => u,
                None if known => PassUsage { used: 0, revoked: false, expires_at },
                None => return Ok(Reply::PassUnknown),
            };
            let already = usage.revoked;
            if !already {
                usage.revoked = true;
                store.set_pass_usage(&usage)?;
            }
            Ok(Reply::PassRevoked { already, expires_at: usage.expires_at })
        }
        Op::PayerPasses => Ok(Reply::Passes { passes: live_passes(store, now)? }),
        Op::SignIn { nonce, expires_at } => {
            if store.nonce_used(&nonce)? {
                return Ok(Reply::NonceUsed);
            }
            store.add_nonce(&nonce, expires_at)?;
            Ok(Reply::Passes { passes: live_passes(store, now)? })
        }
        Op::PayerDeny => {
            let mut standing = store.standing()?;
            standing.denied = true;
            store.set_standing(&standing)?;
            Ok(Reply::Passes { passes: live_passes(store, now)? })
        }
    }
}

fn live_passes(store: &impl Store, now: u64) -> Result<Vec<String>, String> {
    Ok(store.payer_passes()?.into_iter().filter(|(_, exp)| *exp > now).map(|(id, _)| id).collect())
}

/// The record if `holder` holds its lease at `now`.
fn held(store: &impl Store, key: &str, holder: &str, now: u64) -> Result<Option<Record>, String> {
    Ok(store.get(key)?.filter(|r| r.holder == holder && r.lease_until >= now))
}

/// Whether a record may be pruned at `now`: past `validBefore` + [`PRUNE_AFTER_SECONDS`] and not
/// in flight.
pub fn prunable(record_valid_before: u64, lease_until: u64, now: u64) -> bool {
    record_valid_before.saturating_add(PRUNE_AFTER_SECONDS) < now && lease_until <= now
}

/// A [`Store`] in memory: one shard's records and standing, with an index of settled
/// transaction hashes. The host tests' ledger, and the Durable Object's read cache.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    pub records: std::collections::BTreeMap<String, Record>,
    pub standing: Standing,
    pub pass_usage: Option<PassUsage>,
    pub payer_passes: Vec<(String, u64)>,
    pub nonces: std::collections::HashMap<String, u64>,
    /// Lower-case transaction hash → record key, for settled records.
    by_transaction: std::collections::HashMap<String, String>,
    /// Record key → `lease_until`, for records holding a lease (in flight, or lapsed and not
    /// yet finished), so counting what is in flight does not scan every record.
    leased: std::collections::HashMap<String, u64>,
}

fn settled_transaction(r: &Record) -> Option<String> {
    match &r.settlement {
        Settlement::Settled { transaction, .. } if !transaction.is_empty() => Some(transaction.to_ascii_lowercase()),
        _ => None,
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Record>, String> {
        Ok(self.records.get(key).cloned())
    }
    fn put(&mut self, key: &str, record: &Record) -> Result<(), String> {
        if let Some(old) = self.records.insert(key.to_string(), record.clone()).as_ref().and_then(settled_transaction) {
            self.by_transaction.remove(&old);
        }
        if let Some(tx) = settled_transaction(record) {
            self.by_transaction.insert(tx, key.to_string());
        }
        if record.lease_until > 0 {
            self.leased.insert(key.to_string(), record.lease_until);
        } else {
            self.leased.remove(key);
        }
        Ok(())
    }
    fn delete(&mut self, key: &str) -> Result<(), String> {
        if let Some(tx) = self.records.remove(key).as_ref().and_then(settled_transaction) {
            self.by_transaction.remove(&tx);
        }
        self.leased.remove(key);
        Ok(())
    }
    fn find_transaction(&self, transaction: &str, except: &str) -> Result<Option<String>, String> {
        Ok(self.by_transaction.get(&transaction.to_ascii_lowercase()).filter(|k| k.as_str() != except).cloned())
    }
    fn in_flight(&self, now: u64, except: &str) -> Result<u32, String> {
        Ok(self.leased.iter().filter(|(k, until)| k.as_str() != except && **until > now).count() as u32)
    }
    fn standing(&self) -> Result<Standing, String> {
        Ok(self.standing)
    }
    fn set_standing(&mut self, standing: &Standing) -> Result<(), String> {
        self.standing = *standing;
        Ok(())
    }
    fn pass_usage(&self) -> Result<Option<PassUsage>, String> {
        Ok(self.pass_usage)
    }
    fn set_pass_usage(&mut self, usage: &PassUsage) -> Result<(), String> {
        self.pass_usage = Some(*usage);
        Ok(())
    }
    fn payer_passes(&self) -> Result<Vec<(String, u64)>, String> {
        Ok(self.payer_passes.clone())
    }
    fn add_payer_pass(&mut self, pass: &str, expires_at: u64) -> Result<(), String> {
        self.payer_passes.retain(|(p, _)| p != pass);
        self.payer_passes.push((pass.to_string(), expires_at));
        Ok(())
    }
    fn nonce_used(&self, nonce: &str) -> Result<bool, String> {
        Ok(self.nonces.contains_key(nonce))
    }
    fn add_nonce(&mut self, nonce: &str, expires_at: u64) -> Result<(), String> {
        self.nonces.insert(nonce.to_string(), expires_at);
        Ok(())
    }
}

impl MemoryStore {
    /// Deletes every prunable record (what the Durable Object's alarm does).
    pub fn prune(&mut self, now: u64) {
        let gone: Vec<String> = self.records.iter().filter(|(_, r)| prunable(r.valid_before, r.lease_until, now)).map(|(k, _)| k.clone()).collect();
        for k in gone {
            let _ = self.delete(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_800_000_000;

    fn reserve(s: &mut MemoryStore, holder: &str, now: u64) -> Reply {
        apply(s, Op::Reserve { key: "k".into(), holder: holder.into(), route: "GET /x".into(), valid_before: T + 300, lease_seconds: 40 }, now).unwrap()
    }
    fn finish(s: &mut MemoryStore, holder: &str, outcome: Outcome, now: u64) -> Reply {
        apply(s, Op::Finish { key: "k".into(), holder: holder.into(), outcome }, now).unwrap()
    }
    fn settled(delivered: bool) -> Outcome {
        Outcome::Settled { transaction: format!("0x{}", "ab".repeat(32)), network: "eip155:84532".into(), delivered, hold_seconds: 0, pass: None }
    }

    #[test]
    fn one_holder_at_a_time_then_spent() {
        let mut s = MemoryStore::default();
        assert!(matches!(reserve(&mut s, "a", T), Reply::Reserved { prior_sent: false, .. }));
        assert_eq!(reserve(&mut s, "b", T), Reply::InFlight);
        assert_eq!(finish(&mut s, "b", Outcome::Release, T), Reply::LostLease, "only the holder may finish");
        assert_eq!(reserve(&mut s, "b", T + 1), Reply::InFlight);
        assert_eq!(finish(&mut s, "a", settled(true), T + 2), Reply::Done);
        assert!(matches!(reserve(&mut s, "c", T + 3), Reply::Spent { .. }));
        assert!(s.standing.is_good(T + 3, 3600));
    }

    #[test]
    fn released_authorizations_can_be_retried_and_refusals_turn_standing_bad() {
        let mut s = MemoryStore::default();
        reserve(&mut s, "a", T);
        finish(&mut s, "a", Outcome::Release, T);
        assert!(s.records.is_empty());
        assert!(matches!(reserve(&mut s, "b", T), Reply::Reserved { prior_sent: false, .. }));
        finish(&mut s, "b", Outcome::Refused, T);
        assert!(s.records.is_empty());
        assert_eq!(s.standing.last_refused_at, T);
        assert!(!s.standing.is_good(T, 3600));
    }

    #[test]
    fn undelivered_is_served_once_more_then_spent() {
        let mut s = MemoryStore::default();
        reserve(&mut s, "a", T);
        finish(&mut s, "a", settled(false), T);
        assert!(matches!(reserve(&mut s, "b", T + 1), Reply::Redeliver { .. }));
        assert_eq!(reserve(&mut s, "c", T + 1), Reply::InFlight, "the redelivery is in flight");
        finish(&mut s, "b", Outcome::Delivered { delivered: true }, T + 2);
        assert!(matches!(reserve(&mut s, "d", T + 3), Reply::Spent { .. }));
    }

    #[test]
    fn unknown_outcomes_are_retried_as_sent_and_never_released_to_nothing() {
        let mut s = MemoryStore::default();
        reserve(&mut s, "a", T);
        finish(&mut s, "a", Outcome::Unknown { transaction: Some("0x1".into()) }, T);
        match reserve(&mut s, "b", T + 1) {
            Reply::Reserved { prior_sent, prior_transaction, .. } => {
                assert!(prior_sent);
                assert_eq!(prior_transaction.as_deref(), Some("0x1"));
            }
            other => panic!("{other:?}"),
        }
        // Releasing a sent authorization keeps it "sent".
        finish(&mut s, "b", Outcome::Release, T + 1);
        assert!(matches!(reserve(&mut s, "c", T + 2), Reply::Reserved { prior_sent: true, .. }));
    }

    #[test]
    fn a_lapsed_hold_reads_as_maybe_sent_and_its_holder_is_locked_out() {
        let mut s = MemoryStore::default();
        reserve(&mut s, "a", T);
        // The holder died (maybe after sending): the next request reconciles.
        assert!(matches!(reserve(&mut s, "b", T + 41), Reply::Reserved { prior_sent: true, .. }));
        assert_eq!(finish(&mut s, "a", settled(true), T + 42), Reply::LostLease);
        // Releasing a maybe-sent authorization keeps it unknown.
        finish(&mut s, "b", Outcome::Release, T + 42);
        assert!(matches!(s.records["k"].settlement, Settlement::Unknown { .. }));
    }

    #[test]
    fn a_transaction_hash_already_held_for_another_authorization_is_a_facilitator_fault() {
        let mut s = MemoryStore::default();
        reserve(&mut s, "a", T);
        finish(&mut s, "a", settled(true), T);
        let other = Op::Reserve { key: "k2".into(), holder: "b".into(), route: "GET /x".into(), valid_before: T + 300, lease_seconds: 40 };
        apply(&mut s, other, T).unwrap();
        let dup = apply(&mut s, Op::Finish { key: "k2".into(), holder: "b".into(), outcome: settled(true) }, T).unwrap();
        assert_eq!(dup, Reply::DuplicateTransaction);
        assert!(matches!(s.records["k2"].settlement, Settlement::Unknown { .. }));
    }

    #[test]
    fn settle_first_holds_the_lease_through_the_origin_call() {
        let mut s = MemoryStore::default();
        reserve(&mut s, "a", T);
        let held = Outcome::Settled { transaction: "0x01".into(), network: "eip155:84532".into(), delivered: false, hold_seconds: 30, pass: None };
        assert_eq!(finish(&mut s, "a", held, T), Reply::Done);
        assert_eq!(reserve(&mut s, "b", T + 1), Reply::InFlight, "the origin call is in flight");
        // The origin failed: the payer keeps a paid, undelivered authorization.
        assert_eq!(finish(&mut s, "a", Outcome::Delivered { delivered: false }, T + 2), Reply::Done);
        assert!(matches!(reserve(&mut s, "c", T + 3), Reply::Redeliver { .. }));
    }

    #[test]
    fn a_counted_pass_admits_exactly_its_requests_and_revocation_is_immediate() {
        let mut s = MemoryStore::default();
        let use_ = |s: &mut MemoryStore, now| apply(s, Op::PassUse { max_requests: Some(2), expires_at: T + 100 }, now).unwrap();
        assert_eq!(use_(&mut s, T), Reply::PassAdmitted { remaining: Some(1) });
        assert_eq!(use_(&mut s, T), Reply::PassAdmitted { remaining: Some(0) });
        assert_eq!(use_(&mut s, T), Reply::PassRefused { reason: "pass_used_up".into() });
        let mut t = MemoryStore::default();
        assert_eq!(use_(&mut t, T + 100), Reply::PassRefused { reason: "pass_expired".into() });
        apply(&mut t, Op::PassRevoke { expires_at: T + 100, known: true }, T).unwrap();
        assert_eq!(use_(&mut t, T), Reply::PassRefused { reason: "pass_revoked".into() });
    }

    #[test]
    fn a_refund_gives_back_one_counted_request_and_never_goes_below_zero() {
        let mut s = MemoryStore::default();
        let use_ = |s: &mut MemoryStore| apply(s, Op::PassUse { max_requests: Some(2), expires_at: T + 100 }, T).unwrap();
        // Nothing known, nothing used: a refund writes nothing.
        assert_eq!(apply(&mut s, Op::PassRefund, T).unwrap(), Reply::Done);
        assert_eq!(s.pass_usage, None);
        assert_eq!(use_(&mut s), Reply::PassAdmitted { remaining: Some(1) });
        assert_eq!(use_(&mut s), Reply::PassAdmitted { remaining: Some(0) });
        assert_eq!(use_(&mut s), Reply::PassRefused { reason: "pass_used_up".into() });
        // The origin failed on the last admitted request: it is given back, once.
        assert_eq!(apply(&mut s, Op::PassRefund, T).unwrap(), Reply::Done);
        assert_eq!(s.pass_usage.unwrap().used, 1);
        assert_eq!(use_(&mut s), Reply::PassAdmitted { remaining: Some(0) });
        assert_eq!(use_(&mut s), Reply::PassRefused { reason: "pass_used_up".into() });
        for _ in 0..5 {
            apply(&mut s, Op::PassRefund, T).unwrap();
        }
        assert_eq!(s.pass_usage.unwrap().used, 0, "never below zero");
        assert_eq!(use_(&mut s), Reply::PassAdmitted { remaining: Some(1) }, "a refund never adds requests beyond those bought");
        // A refund does not lift a revocation.
        apply(&mut s, Op::PassRevoke { expires_at: T + 100, known: true }, T).unwrap();
        apply(&mut s, Op::PassRefund, T).unwrap();
        assert_eq!(use_(&mut s), Reply::PassRefused { reason: "pass_revoked".into() });
    }

    #[test]
    fn a_revocation_says_whether_the_pass_existed_and_a_later_sale_record_does_not_lift_it() {
        let mut s = MemoryStore::default();
        let revoke = |s: &mut MemoryStore, known| apply(s, Op::PassRevoke { expires_at: T + 100, known }, T).unwrap();
        // Never sold, not known to the paywall: nothing revoked, nothing written.
        assert_eq!(revoke(&mut s, false), Reply::PassUnknown);
        assert_eq!(s.pass_usage, None);
        // Sold (recorded after the response), then revoked by token elsewhere: found here.
        assert_eq!(apply(&mut s, Op::PassSold { expires_at: T + 100 }, T).unwrap(), Reply::Done);
        assert_eq!(revoke(&mut s, false), Reply::PassRevoked { already: false, expires_at: T + 100 });
        assert_eq!(revoke(&mut s, false), Reply::PassRevoked { already: true, expires_at: T + 100 });
        // The sale's record arriving late does not lift the revocation.
        apply(&mut s, Op::PassSold { expires_at: T + 100 }, T).unwrap();
        let used = apply(&mut s, Op::PassUse { max_requests: None, expires_at: T + 100 }, T).unwrap();
        assert_eq!(used, Reply::PassRefused { reason: "pass_revoked".into() });
        // Known to the paywall (its KV record) but not to the shard: revoked, with that expiry.
        let mut t = MemoryStore::default();
        assert_eq!(apply(&mut t, Op::PassRevoke { expires_at: T + 7, known: true }, T).unwrap(), Reply::PassRevoked { already: false, expires_at: T + 7 });
        assert!(t.pass_usage.unwrap().revoked);
    }

    #[test]
    fn a_denied_payer_is_refused_at_reservation_and_its_passes_are_listed() {
        let mut s = MemoryStore::default();
        for (key, pass, exp) in [("k1", "p1", T + 10), ("k2", "old", T - 1)] {
            let reserve = Op::Reserve { key: key.into(), holder: "h".into(), route: "GET /x".into(), valid_before: T + 300, lease_seconds: 40 };
            apply(&mut s, reserve, T).unwrap();
            let outcome = Outcome::Settled { transaction: format!("0x{key}"), network: "n".into(), delivered: true, hold_seconds: 0, pass: Some((pass.into(), exp)) };
            apply(&mut s, Op::Finish { key: key.into(), holder: "h".into(), outcome }, T).unwrap();
        }
        assert_eq!(apply(&mut s, Op::PayerDeny, T).unwrap(), Reply::Passes { passes: vec!["p1".into()] }, "live passes only");
        assert_eq!(reserve(&mut s, "a", T), Reply::Denied);
    }

    #[test]
    fn a_sign_in_nonce_is_single_use() {
        let mut s = MemoryStore::default();
        let op = || Op::SignIn { nonce: "n0nce123".into(), expires_at: T + 300 };
        assert_eq!(apply(&mut s, op(), T).unwrap(), Reply::Passes { passes: vec![] });
        assert_eq!(apply(&mut s, op(), T + 1).unwrap(), Reply::NonceUsed);
    }

    #[test]
    fn in_flight_counts_other_authorizations_of_the_payer() {
        let mut s = MemoryStore::default();
        reserve(&mut s, "a", T);
        let other = Op::Reserve { key: "k2".into(), holder: "b".into(), route: "GET /x".into(), valid_before: T + 300, lease_seconds: 40 };
        assert!(matches!(apply(&mut s, other, T).unwrap(), Reply::Reserved { others_in_flight: 1, .. }));
    }

    #[test]
    fn pruning_waits_for_valid_before_and_leases() {
        let mut s = MemoryStore::default();
        reserve(&mut s, "a", T);
        finish(&mut s, "a", settled(true), T);
        s.prune(T + 300 + PRUNE_AFTER_SECONDS);
        assert_eq!(s.records.len(), 1);
        s.prune(T + 301 + PRUNE_AFTER_SECONDS);
        assert!(s.records.is_empty());
    }

    #[test]
    fn ops_and_replies_round_trip_as_json() {
        let op = Op::Finish { key: "k".into(), holder: "h".into(), outcome: settled(false) };
        let text = serde_json::to_string(&op).unwrap();
        assert!(text.starts_with("{\"finish\":") && text.contains("\"outcome\":{\"settled\":"), "{text}");
        assert_eq!(serde_json::from_str::<Op>(&text).unwrap(), op);
        let r = Reply::Reserved { prior_sent: true, prior_transaction: None, standing: Standing::default(), others_in_flight: 0 };
        assert_eq!(serde_json::from_str::<Reply>(&serde_json::to_string(&r).unwrap()).unwrap(), r);
    }
}
