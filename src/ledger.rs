//! The payment ledger: what this paywall has done with each EIP-3009 authorization, decided by
//! one writer.
//!
//! On the edge the ledger lives in a Durable Object (`PaymentLedger`, SQLite storage), one object
//! per payer address ([`shard_name`]), so every request carrying an authorization of that payer
//! meets the same single-threaded writer wherever it arrives. This module is the whole state
//! machine, pure and synchronous over a [`Store`]; the Durable Object is glue that loads the
//! store, calls [`apply`] and answers with the [`Reply`]. KV is never used as the lock: it is
//! eventually consistent. The protocol is model-checked in `tests/ledger_model.rs` through this
//! very [`apply`].
//!
//! An authorization is identified by (network, asset, `from`, `nonce`) ([`AuthorizationKey`]).
//! Its record moves through:
//!
//! ```text
//!          reserve              mark (acknowledged,             finish
//!  (none) ────────► pending ───────────────────────► sent ─────────────────► settled {tx, delivered}
//!    ▲              (held: verify, origin)   just before /settle)  │          refused: deleted
//!    └── release / lapsed lease: never sent, fresh again ──┘       └► sent (outcome unknown)
//! ```
//!
//! - While a *lease* is held (`lease_until > now`) the authorization is in flight: another
//!   request carrying it gets [`Reply::InFlight`] (HTTP 409).
//! - **No "paid" without evidence.** The holder writes the *send mark* ([`Op::Mark`]) and waits
//!   for its acknowledgement immediately before `/settle` leaves the Worker. A record without the
//!   mark was never sent, whatever happened to its holder: when its lease lapses it is fresh
//!   again ([`Reply::Reserved`] with `lapsed`), verified again by the facilitator, and "nonce
//!   already used" for it is a refusal. Only a marked record ([`Settlement::Sent`]) whose outcome
//!   is unknown comes back as `prior_sent`, to be reconciled from the chain (`RPC_URL`) or, without
//!   one, by settling again and taking "nonce already used" as this ledger's own earlier send.
//! - Settled and delivered: spent ([`Reply::Spent`]). Settled but not delivered (the client was
//!   gone, or the origin failed after a settle-first payment): one retry of the same
//!   authorization, for the same route and resource, is served without a second settlement
//!   ([`Reply::Redeliver`]).
//! - A copy of an authorization whose signature differs from the one reserved first (same payer
//!   and nonce, another signature: a forgery built from the chain's public data) never takes the
//!   record over ([`Reply::Mismatch`]).
//! - Records are kept until `validBefore` has passed (after which the token contract refuses the
//!   authorization anyway) and then pruned ([`prune`]). Until then a late retry still finds its
//!   record (a reservation with `create: false` never makes a new one).
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
    /// Reserved and never sent to `/settle` (no send mark): if its lease lapses, it is fresh.
    Pending,
    /// The send mark: `/settle` left (or was about to leave) the Worker, and its outcome is not
    /// known (in flight, time-out, 5xx, unreadable or pending reply, a reverted transaction).
    /// `transaction` when the facilitator named one.
    #[serde(alias = "unknown")]
    Sent { transaction: Option<String> },
    /// On chain.
    Settled { transaction: String, network: String, at: u64 },
}

/// One authorization's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The route key the payment was for (`"GET /weather"`).
    pub route: String,
    /// The canonical path the payment was for (`/docs/1`): a redelivery serves only this.
    #[serde(default)]
    pub resource: String,
    /// keccak-256 of the payment's signature bytes, lower-case hex: a copy with another signature
    /// never takes the record over.
    #[serde(default)]
    pub signature: String,
    /// `authorization.validBefore`, Unix seconds (capped to `u64`).
    pub valid_before: u64,
    pub settlement: Settlement,
    /// For a settled record: whether its response was handed to a connected client.
    pub delivered: bool,
    /// Unix seconds until which `holder` owns the record (in flight); 0 = nobody.
    pub lease_until: u64,
    /// The request holding the lease (random, chosen by the worker).
    pub holder: String,
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
    /// The facilitator refused the payment (`/verify` invalid, a first `/settle` answered
    /// `success: false` without a transaction), or the chain shows its nonce used by a
    /// transaction that did not pay: the record is deleted and the payer's standing turns bad.
    Refused,
    /// `/settle` was sent and its outcome is unknown: the record stays [`Settlement::Sent`].
    /// `refused`: the facilitator answered with a refusal, which may follow a broadcast (a
    /// transaction that failed after it left): the record is kept, since money may have moved,
    /// and the payer's standing turns bad.
    #[serde(rename_all = "camelCase")]
    Unknown {
        transaction: Option<String>,
        #[serde(default)]
        refused: bool,
    },
    /// This hold never sent it to `/settle` (origin failed, client gone, verify unavailable,
    /// the mark was refused): an unmarked record is deleted and the authorization can be retried;
    /// a marked one (this or an earlier hold sent it) stays [`Settlement::Sent`].
    Release,
    /// A settled authorization's response was (`true`) or was not (`false`) handed over after a
    /// redelivery or a settle-first origin call. `pass`: a pass sold with this delivery (id,
    /// expiry), indexed for the payer in the same write.
    #[serde(rename_all = "camelCase")]
    Delivered {
        delivered: bool,
        #[serde(default)]
        pass: Option<(String, u64)>,
    },
}

/// A request to the ledger. `Finish` names the `holder` that reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Op {
    /// Takes the authorization for one request, before any origin or facilitator work. The
    /// lease must cover everything the holder may do: `/verify`, the origin, `/settle`.
    /// `resource`: the canonical path; `signature`: keccak-256 hex of the signature bytes.
    /// `create: false` only looks for an existing record (a late retry, whose `validBefore` is
    /// too close for a new payment): [`Reply::NotFound`] when there is none.
    #[serde(rename_all = "camelCase")]
    Reserve { key: String, holder: String, route: String, resource: String, signature: String, valid_before: u64, lease_seconds: u64, create: bool },
    /// The send mark, written and acknowledged immediately before `/settle` leaves the Worker:
    /// from now on the authorization may be on chain. Only the holder may mark, and the mark
    /// renews its lease to `lease_seconds` from now (at least what is left), covering the
    /// settlement and its chain evidence however long the holder took to get here.
    #[serde(rename_all = "camelCase")]
    Mark {
        key: String,
        holder: String,
        #[serde(default)]
        lease_seconds: u64,
    },
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
    /// settlement (send mark) and its outcome is unknown. `lapsed`: an earlier hold reserved it,
    /// never sent it and never finished (it died): fresh, but verified again. `standing`: the
    /// payer's history; `others_in_flight`: how many other authorizations of this payer are in
    /// flight now.
    #[serde(rename_all = "camelCase")]
    Reserved { prior_sent: bool, prior_transaction: Option<String>, #[serde(default)] lapsed: bool, standing: Standing, others_in_flight: u32 },
    /// `Reserve` with `create: false` and no record: nothing of this authorization is known.
    NotFound,
    /// A record exists for this payer and nonce with another signature, or (a redelivery) for
    /// another route or resource: this request may not take it over. `resource`: what the
    /// recorded payment was for (`"GET /docs/1"`), when that is the difference.
    #[serde(rename_all = "camelCase")]
    Mismatch { resource: Option<String> },
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
    /// `Finish` reported a settlement for a record that carries no send mark: refused (a
    /// holder's bug), the record stays unmarked and its lease ends.
    NotMarked,
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
        Op::Reserve { key, holder, route, resource, signature, valid_before, lease_seconds, create } => {
            if store.standing()?.denied {
                return Ok(Reply::Denied);
            }
            let existing = store.get(&key)?;
            if let Some(r) = &existing {
                if r.signature != signature {
                    return Ok(Reply::Mismatch { resource: None });
                }
                if r.lease_until > now {
                    return Ok(Reply::InFlight);
                }
            }
            let lapsed = existing.is_some();
            let mut record = match existing {
                Some(r) => r,
                None if !create => return Ok(Reply::NotFound),
                None => Record { route: route.clone(), resource: resource.clone(), signature, valid_before, settlement: Settlement::Pending, delivered: false, lease_until: 0, holder: String::new() },
            };
            if let Settlement::Settled { transaction, network, .. } = &record.settlement {
                if record.delivered {
                    return Ok(Reply::Spent { transaction: transaction.clone() });
                }
                if record.route != route || record.resource != resource {
                    return Ok(Reply::Mismatch { resource: Some(format!("{} {}", record.route, record.resource)) });
                }
                let reply = Reply::Redeliver { transaction: transaction.clone(), network: network.clone() };
                record.lease_until = now.saturating_add(lease_seconds);
                record.holder = holder;
                store.put(&key, &record)?;
                return Ok(reply);
            }
            if matches!(record.settlement, Settlement::Sent { .. }) && (record.route != route || record.resource != resource) {
                // Maybe paid, for that resource: reconciled (and served) only there.
                return Ok(Reply::Mismatch { resource: Some(format!("{} {}", record.route, record.resource)) });
            }
            record.lease_until = now.saturating_add(lease_seconds);
            record.holder = holder;
            // An unsent record is taken over whole by the request that now holds it.
            if record.settlement == Settlement::Pending {
                record.route = route;
                record.resource = resource;
            }
            // Only the send mark makes a record "maybe on chain"; an unmarked record whose holder
            // died is fresh (and verified again).
            let (prior_sent, prior_transaction, lapsed) = match &record.settlement {
                Settlement::Sent { transaction } => (true, transaction.clone(), false),
                _ => (false, None, lapsed),
            };
            store.put(&key, &record)?;
            Ok(Reply::Reserved { prior_sent, prior_transaction, lapsed, standing: store.standing()?, others_in_flight: store.in_flight(now, &key)? })
        }
        Op::Mark { key, holder, lease_seconds } => {
            let Some(mut record) = held(store, &key, &holder, now)? else { return Ok(Reply::LostLease) };
            let renewed = record.lease_until.max(now.saturating_add(lease_seconds));
            if record.settlement == Settlement::Pending {
                record.settlement = Settlement::Sent { transaction: None };
            } else if renewed == record.lease_until {
                return Ok(Reply::Done);
            }
            record.lease_until = renewed;
            store.put(&key, &record)?;
            Ok(Reply::Done)
        }
        Op::Finish { key, holder, outcome } => {
            let Some(mut record) = held(store, &key, &holder, now)? else { return Ok(Reply::LostLease) };
            record.lease_until = 0;
            let before = store.standing()?;
            let mut standing = before;
            let reply = match outcome {
                Outcome::Settled { transaction, network, delivered, hold_seconds, pass } => {
                    if record.settlement == Settlement::Pending {
                        // Never "paid" without a send mark: the holder skipped it.
                        record.lease_until = now;
                        store.put(&key, &record)?;
                        return Ok(Reply::NotMarked);
                    }
                    if !transaction.is_empty() && store.find_transaction(&transaction, &key)?.is_some() {
                        record.settlement = Settlement::Sent { transaction: None };
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
                Outcome::Unknown { transaction, refused } => {
                    if refused {
                        standing.last_refused_at = now;
                    }
                    let known = match &record.settlement {
                        Settlement::Sent { transaction } => transaction.clone(),
                        _ => None,
                    };
                    record.settlement = Settlement::Sent { transaction: transaction.or(known) };
                    store.put(&key, &record)?;
                    Reply::Done
                }
                Outcome::Release => {
                    if record.settlement == Settlement::Pending {
                        store.delete(&key)?;
                    } else {
                        // Marked (by this or an earlier hold): releasing must not forget that.
                        store.put(&key, &record)?;
                    }
                    Reply::Done
                }
                Outcome::Delivered { delivered, pass } => {
                    if matches!(record.settlement, Settlement::Settled { .. }) {
                        record.delivered = delivered;
                    }
                    store.put(&key, &record)?;
                    if let Some((id, expires_at)) = pass {
                        store.add_payer_pass(&id, expires_at)?;
                    }
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

    fn reserve_op(key: &str, holder: &str) -> Op {
        Op::Reserve { key: key.into(), holder: holder.into(), route: "GET /x".into(), resource: "/x".into(), signature: "s1".into(), valid_before: T + 300, lease_seconds: 40, create: true }
    }
    fn reserve(s: &mut MemoryStore, holder: &str, now: u64) -> Reply {
        apply(s, reserve_op("k", holder), now).unwrap()
    }
    fn mark(s: &mut MemoryStore, holder: &str, now: u64) -> Reply {
        apply(s, Op::Mark { key: "k".into(), holder: holder.into(), lease_seconds: 0 }, now).unwrap()
    }
    fn finish(s: &mut MemoryStore, holder: &str, outcome: Outcome, now: u64) -> Reply {
        apply(s, Op::Finish { key: "k".into(), holder: holder.into(), outcome }, now).unwrap()
    }
    fn settled(delivered: bool) -> Outcome {
        Outcome::Settled { transaction: format!("0x{}", "ab".repeat(32)), network: "eip155:84532".into(), delivered, hold_seconds: 0, pass: None }
    }
    /// Reserve, mark and settle `k` as holder `h`.
    fn paid(s: &mut MemoryStore, h: &str, delivered: bool, now: u64) {
        assert!(matches!(reserve(s, h, now), Reply::Reserved { .. }));
        assert_eq!(mark(s, h, now), Reply::Done);
        assert_eq!(finish(s, h, settled(delivered), now), Reply::Done);
    }

    #[test]
    fn one_holder_at_a_time_then_spent() {
        let mut s = MemoryStore::default();
        assert!(matches!(reserve(&mut s, "a", T), Reply::Reserved { prior_sent: false, lapsed: false, .. }));
        assert_eq!(reserve(&mut s, "b", T), Reply::InFlight);
        assert_eq!(finish(&mut s, "b", Outcome::Release, T), Reply::LostLease, "only the holder may finish");
        assert_eq!(mark(&mut s, "b", T), Reply::LostLease, "only the holder may mark");
        assert_eq!(reserve(&mut s, "b", T + 1), Reply::InFlight);
        assert_eq!(mark(&mut s, "a", T + 2), Reply::Done);
        assert_eq!(finish(&mut s, "a", settled(true), T + 2), Reply::Done);
        assert!(matches!(reserve(&mut s, "c", T + 3), Reply::Spent { .. }));
        assert!(s.standing.is_good(T + 3, 3600));
    }

    #[test]
    fn no_settlement_is_recorded_without_a_send_mark() {
        let mut s = MemoryStore::default();
        reserve(&mut s, "a", T);
        assert_eq!(finish(&mut s, "a", settled(true), T), Reply::NotMarked);
        assert_eq!(s.records["k"].settlement, Settlement::Pending);
        assert!(matches!(reserve(&mut s, "b", T + 1), Reply::Reserved { prior_sent: false, .. }), "still unsent and free to take");
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
    fn undelivered_is_served_once_more_for_the_same_resource_then_spent() {
        let mut s = MemoryStore::default();
        paid(&mut s, "a", false, T);
        let elsewhere = Op::Reserve { key: "k".into(), holder: "x".into(), route: "GET /x".into(), resource: "/y".into(), signature: "s1".into(), valid_before: T + 300, lease_seconds: 40, create: true };
        assert_eq!(apply(&mut s, elsewhere, T + 1).unwrap(), Reply::Mismatch { resource: Some("GET /x /x".into()) }, "bound to its resource");
        assert!(matches!(reserve(&mut s, "b", T + 1), Reply::Redeliver { .. }));
        assert_eq!(reserve(&mut s, "c", T + 1), Reply::InFlight, "the redelivery is in flight");
        finish(&mut s, "b", Outcome::Delivered { delivered: true, pass: None }, T + 2);
        assert!(matches!(reserve(&mut s, "d", T + 3), Reply::Spent { .. }));
    }

    #[test]
    fn a_sent_record_is_reconciled_only_for_its_resource_and_an_unsent_one_follows_its_holder() {
        let mut s = MemoryStore::default();
        let at = |holder: &str, resource: &str| Op::Reserve { key: "k".into(), holder: holder.into(), route: "GET /x".into(), resource: resource.into(), signature: "s1".into(), valid_before: T + 300, lease_seconds: 40, create: true };
        apply(&mut s, at("a", "/x"), T).unwrap();
        // The holder died unsent; a copy for another path takes it over whole.
        assert!(matches!(apply(&mut s, at("b", "/y"), T + 41).unwrap(), Reply::Reserved { lapsed: true, .. }));
        assert_eq!(s.records["k"].resource, "/y");
        mark(&mut s, "b", T + 42);
        finish(&mut s, "b", Outcome::Unknown { transaction: None, refused: false }, T + 42);
        assert_eq!(apply(&mut s, at("c", "/x"), T + 43).unwrap(), Reply::Mismatch { resource: Some("GET /x /y".into()) });
        assert!(matches!(apply(&mut s, at("d", "/y"), T + 43).unwrap(), Reply::Reserved { prior_sent: true, .. }));
    }

    #[test]
    fn a_copy_with_another_signature_never_takes_the_record() {
        let mut s = MemoryStore::default();
        paid(&mut s, "a", false, T);
        let forged = Op::Reserve { key: "k".into(), holder: "x".into(), route: "GET /x".into(), resource: "/x".into(), signature: "s2".into(), valid_before: T + 300, lease_seconds: 40, create: true };
        assert_eq!(apply(&mut s, forged, T + 1).unwrap(), Reply::Mismatch { resource: None });
        assert!(matches!(reserve(&mut s, "b", T + 1), Reply::Redeliver { .. }), "the genuine copy still redelivers");
    }

    #[test]
    fn a_sent_unknown_outcome_is_retried_as_sent_and_never_released_to_nothing() {
        let mut s = MemoryStore::default();
        reserve(&mut s, "a", T);
        mark(&mut s, "a", T);
        finish(&mut s, "a", Outcome::Unknown { transaction: Some("0x1".into()), refused: false }, T);
        match reserve(&mut s, "b", T + 1) {
            Reply::Reserved { prior_sent, prior_transaction, lapsed, .. } => {
                assert!(prior_sent && !lapsed);
                assert_eq!(prior_transaction.as_deref(), Some("0x1"));
            }
            other => panic!("{other:?}"),
        }
        // Releasing a sent authorization keeps it "sent", with its transaction.
        finish(&mut s, "b", Outcome::Release, T + 1);
        assert!(matches!(reserve(&mut s, "c", T + 2), Reply::Reserved { prior_sent: true, prior_transaction: Some(_), .. }));
    }

    #[test]
    fn a_lapsed_hold_without_a_send_mark_is_fresh_and_flagged_for_verification() {
        let mut s = MemoryStore::default();
        reserve(&mut s, "a", T);
        // The holder died before sending: nothing is "maybe paid".
        assert!(matches!(reserve(&mut s, "b", T + 41), Reply::Reserved { prior_sent: false, lapsed: true, .. }));
        assert_eq!(mark(&mut s, "a", T + 42), Reply::LostLease, "the dead holder can no longer mark");
        assert_eq!(finish(&mut s, "a", settled(true), T + 42), Reply::LostLease);
        finish(&mut s, "b", Outcome::Release, T + 42);
        assert!(s.records.is_empty(), "released unsent: forgotten");
    }

    #[test]
    fn the_send_mark_renews_the_lease_for_the_settlement() {
        let mut s = MemoryStore::default();
        reserve(&mut s, "a", T);
        // The holder reaches its mark late in its lease (a slow verify chain)...
        assert_eq!(apply(&mut s, Op::Mark { key: "k".into(), holder: "a".into(), lease_seconds: 100 }, T + 39).unwrap(), Reply::Done);
        // ...and keeps the authorization through its settlement: no second holder can send it.
        assert_eq!(reserve(&mut s, "b", T + 41), Reply::InFlight);
        assert_eq!(reserve(&mut s, "b", T + 138), Reply::InFlight);
        assert_eq!(finish(&mut s, "a", settled(true), T + 139), Reply::Done);
    }

    #[test]
    fn a_lapsed_hold_after_its_send_mark_reads_as_sent() {
        let mut s = MemoryStore::default();
        reserve(&mut s, "a", T);
        mark(&mut s, "a", T + 1);
        // The holder died after marking, maybe after sending.
        assert!(matches!(reserve(&mut s, "b", T + 41), Reply::Reserved { prior_sent: true, lapsed: false, .. }));
        finish(&mut s, "b", Outcome::Release, T + 42);
        assert!(matches!(s.records["k"].settlement, Settlement::Sent { .. }));
    }

    #[test]
    fn a_late_lookup_never_creates_a_record() {
        let mut s = MemoryStore::default();
        let late = |holder: &str| Op::Reserve { key: "k".into(), holder: holder.into(), route: "GET /x".into(), resource: "/x".into(), signature: "s1".into(), valid_before: T + 300, lease_seconds: 40, create: false };
        assert_eq!(apply(&mut s, late("a"), T).unwrap(), Reply::NotFound);
        assert!(s.records.is_empty());
        paid(&mut s, "b", false, T);
        assert!(matches!(apply(&mut s, late("c"), T + 1).unwrap(), Reply::Redeliver { .. }));
    }

    #[test]
    fn a_transaction_hash_already_held_for_another_authorization_is_a_facilitator_fault() {
        let mut s = MemoryStore::default();
        paid(&mut s, "a", true, T);
        apply(&mut s, reserve_op("k2", "b"), T).unwrap();
        apply(&mut s, Op::Mark { key: "k2".into(), holder: "b".into(), lease_seconds: 0 }, T).unwrap();
        let dup = apply(&mut s, Op::Finish { key: "k2".into(), holder: "b".into(), outcome: settled(true) }, T).unwrap();
        assert_eq!(dup, Reply::DuplicateTransaction);
        assert!(matches!(s.records["k2"].settlement, Settlement::Sent { .. }));
    }

    #[test]
    fn settle_first_holds_the_lease_through_the_origin_call() {
        let mut s = MemoryStore::default();
        reserve(&mut s, "a", T);
        mark(&mut s, "a", T);
        let held = Outcome::Settled { transaction: "0x01".into(), network: "eip155:84532".into(), delivered: false, hold_seconds: 30, pass: None };
        assert_eq!(finish(&mut s, "a", held, T), Reply::Done);
        assert_eq!(reserve(&mut s, "b", T + 1), Reply::InFlight, "the origin call is in flight");
        // The origin failed: the payer keeps a paid, undelivered authorization.
        assert_eq!(finish(&mut s, "a", Outcome::Delivered { delivered: false, pass: None }, T + 2), Reply::Done);
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
            apply(&mut s, reserve_op(key, "h"), T).unwrap();
            apply(&mut s, Op::Mark { key: key.into(), holder: "h".into(), lease_seconds: 0 }, T).unwrap();
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
        assert!(matches!(apply(&mut s, reserve_op("k2", "b"), T).unwrap(), Reply::Reserved { others_in_flight: 1, .. }));
    }

    #[test]
    fn pruning_waits_for_valid_before_and_leases() {
        let mut s = MemoryStore::default();
        paid(&mut s, "a", true, T);
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
        let r = Reply::Reserved { prior_sent: true, prior_transaction: None, lapsed: false, standing: Standing::default(), others_in_flight: 0 };
        assert_eq!(serde_json::from_str::<Reply>(&serde_json::to_string(&r).unwrap()).unwrap(), r);
        // A record stored before the send mark existed ("unknown") reads as sent.
        let old = r#"{"route":"GET /x","validBefore":1,"settlement":{"unknown":{"transaction":null}},"delivered":false,"leaseUntil":0,"holder":""}"#;
        assert!(matches!(serde_json::from_str::<Record>(old).unwrap().settlement, Settlement::Sent { transaction: None }));
    }
}
