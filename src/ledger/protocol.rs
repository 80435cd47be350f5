//! What the Worker sends a shard ([`Op`]) and what it answers ([`Reply`]).

use serde::{Deserialize, Serialize};

use super::Standing;

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
