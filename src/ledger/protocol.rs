//! The protocol between the Worker and a ledger shard, typed per operation.
//!
//! A shard is either a payer's ([`PayerShard`]: its authorizations, standing, pass index and
//! sign-in nonces) or a pass's ([`PassShard`]: the pass's usage and revocation). Each operation
//! is a struct of its own; its [`Operation`] impl names the kind of shard it goes to and the one
//! reply type it gets back, so a caller matches exactly the answers that operation can have. The
//! operations of a kind of shard form one enum ([`PayerOp`], [`PassOp`]); [`Op`] is either, as
//! it travels.
//!
//! Wire format (JSON, Worker to Durable Object and back): an operation is externally tagged by
//! its camelCase name (`{"reserve":{…}}`, `"passRefund"`), a reply likewise (`{"reserved":{…}}`,
//! `"done"`), field names in camelCase. Only the [`super::records`] shapes are stored; operations
//! and replies are only sent.
//!
//! [`Transport`] is the seam to whatever carries them (a Durable Object stub on the edge, the
//! state machine in memory in tests); [`Transport::call`] is the typed client over it.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::channel::{ChannelFinish, ChannelFinished, ChannelReservation, ChannelReserve, ChannelSync, ClaimBegin, ClaimEnd, ClaimStart};
use super::Standing;
use crate::evm::Address;

/// The kind of shard an operation goes to, by its Durable Object name.
pub trait Shard {
    /// The Durable Object name.
    fn name(&self) -> &str;
}

/// A payer's shard: `payer:0x<address, lower-case hex>` ([`super::shard_name`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayerShard(String);

impl PayerShard {
    /// The shard of `payer`.
    pub fn of(payer: &Address) -> Self {
        PayerShard(super::shard_name(payer))
    }
}

impl Shard for PayerShard {
    fn name(&self) -> &str {
        &self.0
    }
}

/// A pass's shard: `pass:<pass id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassShard(String);

impl PassShard {
    /// The shard of the pass `id` (its id, not its token).
    pub fn of(id: &str) -> Self {
        PassShard(format!("pass:{id}"))
    }
}

impl Shard for PassShard {
    fn name(&self) -> &str {
        &self.0
    }
}

/// A `batch-settlement` channel's shard: `channel:0x<channel id>` ([`super::channel::channel_shard_name`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelShard(String);

impl ChannelShard {
    /// The shard of the channel `channel_id`.
    pub fn of(channel_id: &[u8; 32]) -> Self {
        ChannelShard(super::channel::channel_shard_name(channel_id))
    }
}

impl Shard for ChannelShard {
    fn name(&self) -> &str {
        &self.0
    }
}

/// One operation: the kind of shard it goes to and what that shard answers.
pub trait Operation: Into<Op> {
    /// [`PayerShard`] or [`PassShard`].
    type Shard: Shard;
    /// The one reply type of this operation.
    type Reply: Serialize + DeserializeOwned + std::fmt::Debug;
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
    /// `/settle` was sent and its outcome is unknown: the record stays [`super::Settlement::Sent`].
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
    /// a marked one (this or an earlier hold sent it) stays [`super::Settlement::Sent`].
    Release,
    /// This hold's send mark was not acknowledged (the reply was lost, or the call failed after it
    /// may have been applied), so it sent nothing: a mark this hold made first
    /// ([`super::Record::marked_by`]) is taken back and the record deleted, as an unmarked
    /// release is; a mark of an earlier hold (which may have sent it) stays. Without this, the
    /// applied mark would make a later "nonce already used" read as this ledger's own payment.
    Unsent,
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

/// Payer shard: takes the authorization for one request, before any origin or facilitator work.
/// The lease must cover everything the holder may do: `/verify`, the origin, `/settle`.
/// `resource`: the canonical path; `signature`: keccak-256 hex of the signature bytes.
/// `create: false` only looks for an existing record (a late retry, whose `validBefore` is too
/// close for a new payment): [`Reservation::NotFound`] when there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reserve {
    pub key: String,
    pub holder: String,
    pub route: String,
    pub resource: String,
    pub signature: String,
    pub valid_before: u64,
    pub lease_seconds: u64,
    pub create: bool,
}

/// Payer shard: the send mark, written and acknowledged immediately before `/settle` leaves the
/// Worker: from now on the authorization may be on chain. Only the holder may mark, and the mark
/// renews its lease to `lease_seconds` from now (at least what is left), covering the settlement
/// and its chain evidence however long the holder took to get here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mark {
    pub key: String,
    pub holder: String,
    #[serde(default)]
    pub lease_seconds: u64,
    /// `upto` only: the amount (atomic units) this settlement asks for. Recorded by the first mark
    /// of a record and never changed after it, so a retry of an unknown outcome settles the same
    /// amount again ([`Reservation::Reserved`]'s `prior_amount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
}

/// Payer shard: records how the request of `holder` (the one that reserved) ended and drops
/// the lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finish {
    pub key: String,
    pub holder: String,
    pub outcome: Outcome,
}

/// Payer shard: lists the payer's live passes (indexed when their payment settled), to revoke
/// each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayerPasses;

/// Payer shard: denies every later payment of the payer; lists its live passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayerDeny;

/// Payer shard: a verified wallet sign-in (`sign-in-with-x`) with `nonce`, valid until
/// `expires_at`: records the nonce (single use) and lists the payer's live passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignIn {
    pub nonce: String,
    pub expires_at: u64,
}

/// Pass shard: admits one request if the pass is not revoked, not expired and, when counted
/// (`max_requests`), not used up; counts it. The terms come from the pass record (KV), which the
/// paywall wrote: the shard needs no separate creation step. `expires_at`: Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PassUse {
    pub max_requests: Option<u32>,
    pub expires_at: u64,
}

/// Pass shard: gives back one request a [`PassUse`] counted, when the origin did not serve it
/// (5xx, unreachable, over its time limit). Never below zero; nothing for a pass the shard does
/// not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassRefund;

/// Pass shard: records that the pass was sold (expiring at `expires_at`, Unix seconds), so that
/// a revocation by token finds it before its KV record reaches the revoking location. Keeps the
/// state of a pass the shard already knows (a revocation stays).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PassSold {
    pub expires_at: u64,
}

/// Pass shard: revokes the pass (effective for the next [`PassUse`] at once). `known`: the
/// paywall found the pass's record (KV, its cache, or the payer's index), so the shard creates a
/// revoked state if it has none; `expires_at` (Unix seconds) is that state's expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PassRevoke {
    pub expires_at: u64,
    pub known: bool,
}

/// The operations on a payer shard, as they travel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PayerOp {
    Reserve(Reserve),
    Mark(Mark),
    Finish(Finish),
    PayerPasses,
    PayerDeny,
    SignIn(SignIn),
}

/// The operations on a pass shard, as they travel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PassOp {
    PassUse(PassUse),
    PassRefund,
    PassSold(PassSold),
    PassRevoke(PassRevoke),
}

/// The operations on a channel shard, as they travel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ChannelOp {
    ChannelSync(ChannelSync),
    ChannelReserve(ChannelReserve),
    ChannelFinish(ChannelFinish),
    ClaimBegin(ClaimBegin),
    ClaimEnd(ClaimEnd),
}

/// Any operation, as it travels to a shard: the JSON of its [`PayerOp`], [`PassOp`] or
/// [`ChannelOp`] (the kinds' names are distinct, so the JSON alone says which).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Payer(PayerOp),
    Pass(PassOp),
    Channel(ChannelOp),
}

impl Serialize for Op {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Op::Payer(op) => op.serialize(serializer),
            Op::Pass(op) => op.serialize(serializer),
            Op::Channel(op) => op.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Op {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Op, D::Error> {
        Ok(match Incoming::deserialize(deserializer)? {
            Incoming::Reserve(op) => op.into(),
            Incoming::Mark(op) => op.into(),
            Incoming::Finish(op) => op.into(),
            Incoming::PayerPasses => PayerPasses.into(),
            Incoming::PayerDeny => PayerDeny.into(),
            Incoming::SignIn(op) => op.into(),
            Incoming::PassUse(op) => op.into(),
            Incoming::PassRefund => PassRefund.into(),
            Incoming::PassSold(op) => op.into(),
            Incoming::PassRevoke(op) => op.into(),
            Incoming::ChannelSync(op) => op.into(),
            Incoming::ChannelReserve(op) => op.into(),
            Incoming::ChannelFinish(op) => op.into(),
            Incoming::ClaimBegin(op) => op.into(),
            Incoming::ClaimEnd(op) => op.into(),
        })
    }
}

/// An [`Op`] as it is read: one externally tagged enum of every operation, read without
/// buffering (an untagged `Op` would buffer the JSON to try each kind, and cost wasm size).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
enum Incoming {
    Reserve(Reserve),
    Mark(Mark),
    Finish(Finish),
    PayerPasses,
    PayerDeny,
    SignIn(SignIn),
    PassUse(PassUse),
    PassRefund,
    PassSold(PassSold),
    PassRevoke(PassRevoke),
    ChannelSync(ChannelSync),
    ChannelReserve(ChannelReserve),
    ChannelFinish(ChannelFinish),
    ClaimBegin(ClaimBegin),
    ClaimEnd(ClaimEnd),
}

/// Reply to [`Reserve`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reservation {
    /// The request holds the authorization. `prior_sent`: this ledger already sent it to
    /// settlement (send mark) and its outcome is unknown. `lapsed`: an earlier hold reserved it,
    /// never sent it and never finished (it died): fresh, but verified again. `standing`: the
    /// payer's history; `others_in_flight`: how many other authorizations of this payer are in
    /// flight now. `prior_amount`: for a sent `upto` settlement, the amount it asked for (the
    /// only amount a retry may settle).
    #[serde(rename_all = "camelCase")]
    Reserved {
        prior_sent: bool,
        prior_transaction: Option<String>,
        #[serde(default)]
        lapsed: bool,
        standing: Standing,
        others_in_flight: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prior_amount: Option<String>,
    },
    /// `create: false` and no record: nothing of this authorization is known.
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
    /// `amount`: for an `upto` settlement, the amount (atomic units) it settled.
    Redeliver {
        transaction: String,
        network: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        amount: Option<String>,
    },
    /// The payer is on the denylist (admin endpoint): refused before any work.
    Denied,
}

/// Reply to [`Mark`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Marked {
    /// The mark is written (or was already there and the lease is renewed).
    Done,
    /// The request no longer holds the lease (it ran out and another request took the record).
    LostLease,
}

/// Reply to [`Finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Finished {
    /// The outcome is recorded.
    Done,
    /// A settlement with a transaction hash the ledger already holds for another authorization:
    /// a facilitator fault. The record is marked unknown.
    DuplicateTransaction,
    /// The request no longer holds the lease (it ran out and another request took the record).
    LostLease,
    /// A settlement reported for a record that carries no send mark: refused (a holder's bug),
    /// the record stays unmarked and its lease ends.
    NotMarked,
}

/// Reply to [`PayerPasses`] and [`PayerDeny`]: the payer's live pass ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LivePasses {
    Passes { passes: Vec<String> },
}

/// Reply to [`SignIn`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SignedIn {
    /// The nonce is recorded; the payer's live pass ids.
    Passes { passes: Vec<String> },
    /// This nonce was already used by this payer (a replay).
    NonceUsed,
}

/// Why a pass shard refused a [`PassUse`]; its reason code is [`PassRefusal::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PassRefusal {
    /// Every request the pass counts has been admitted.
    #[serde(rename = "pass_used_up")]
    UsedUp,
    /// The operator revoked the pass.
    #[serde(rename = "pass_revoked")]
    Revoked,
    /// The pass's expiry has passed.
    #[serde(rename = "pass_expired")]
    Expired,
}

impl PassRefusal {
    /// The reason code: `pass_used_up`, `pass_revoked` or `pass_expired`.
    pub fn code(self) -> &'static str {
        match self {
            PassRefusal::UsedUp => "pass_used_up",
            PassRefusal::Revoked => "pass_revoked",
            PassRefusal::Expired => "pass_expired",
        }
    }
}

/// Reply to [`PassUse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Admission {
    /// Admitted; `remaining` requests after this one, when counted.
    #[serde(rename = "passAdmitted")]
    Admitted { remaining: Option<u32> },
    /// Refused.
    #[serde(rename = "passRefused")]
    Refused { reason: PassRefusal },
}

/// Reply to [`PassRevoke`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PassRevocation {
    /// The pass is revoked; `already`: it was before this call. `expires_at`: its expiry as the
    /// shard knows it (Unix seconds).
    #[serde(rename = "passRevoked", rename_all = "camelCase")]
    Revoked { already: bool, expires_at: u64 },
    /// A pass this shard never saw (never sold, or its sale not recorded yet), without `known`:
    /// nothing written.
    #[serde(rename = "passUnknown")]
    Unknown,
}

/// Reply to [`PassRefund`] and [`PassSold`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Recorded {
    Done,
}

/// Which reply each operation gets, and where it goes.
macro_rules! operations {
    ($($op:ident => $shard:ident, $reply:ty, |$v:pat_param| $wire:expr;)*) => {$(
        impl Operation for $op {
            type Shard = $shard;
            type Reply = $reply;
        }
        impl From<$op> for Op {
            fn from($v: $op) -> Op {
                $wire
            }
        }
    )*};
}

operations! {
    Reserve => PayerShard, Reservation, |op| Op::Payer(PayerOp::Reserve(op));
    Mark => PayerShard, Marked, |op| Op::Payer(PayerOp::Mark(op));
    Finish => PayerShard, Finished, |op| Op::Payer(PayerOp::Finish(op));
    PayerPasses => PayerShard, LivePasses, |_| Op::Payer(PayerOp::PayerPasses);
    PayerDeny => PayerShard, LivePasses, |_| Op::Payer(PayerOp::PayerDeny);
    SignIn => PayerShard, SignedIn, |op| Op::Payer(PayerOp::SignIn(op));
    PassUse => PassShard, Admission, |op| Op::Pass(PassOp::PassUse(op));
    PassRefund => PassShard, Recorded, |_| Op::Pass(PassOp::PassRefund);
    PassSold => PassShard, Recorded, |op| Op::Pass(PassOp::PassSold(op));
    PassRevoke => PassShard, PassRevocation, |op| Op::Pass(PassOp::PassRevoke(op));
    ChannelSync => ChannelShard, ChannelFinished, |op| Op::Channel(ChannelOp::ChannelSync(op));
    ChannelReserve => ChannelShard, ChannelReservation, |op| Op::Channel(ChannelOp::ChannelReserve(op));
    ChannelFinish => ChannelShard, ChannelFinished, |op| Op::Channel(ChannelOp::ChannelFinish(op));
    ClaimBegin => ChannelShard, ClaimStart, |op| Op::Channel(ChannelOp::ClaimBegin(op));
    ClaimEnd => ChannelShard, ChannelFinished, |op| Op::Channel(ChannelOp::ClaimEnd(op));
}

impl Op {
    /// The operation's wire name (`"reserve"`, `"passUse"`, …), for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Payer(PayerOp::Reserve(_)) => "reserve",
            Op::Payer(PayerOp::Mark(_)) => "mark",
            Op::Payer(PayerOp::Finish(_)) => "finish",
            Op::Payer(PayerOp::PayerPasses) => "payerPasses",
            Op::Payer(PayerOp::PayerDeny) => "payerDeny",
            Op::Payer(PayerOp::SignIn(_)) => "signIn",
            Op::Pass(PassOp::PassUse(_)) => "passUse",
            Op::Pass(PassOp::PassRefund) => "passRefund",
            Op::Pass(PassOp::PassSold(_)) => "passSold",
            Op::Pass(PassOp::PassRevoke(_)) => "passRevoke",
            Op::Channel(ChannelOp::ChannelSync(_)) => "channelSync",
            Op::Channel(ChannelOp::ChannelReserve(_)) => "channelReserve",
            Op::Channel(ChannelOp::ChannelFinish(_)) => "channelFinish",
            Op::Channel(ChannelOp::ClaimBegin(_)) => "claimBegin",
            Op::Channel(ChannelOp::ClaimEnd(_)) => "claimEnd",
        }
    }
}

/// A shard's reply as it travels: the JSON of the reply type of the operation it answers, which
/// [`Transport::call`] reads back as that type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Reply(serde_json::Value);

impl Reply {
    /// `reply` as it travels.
    pub fn of(reply: &impl Serialize) -> Result<Reply, String> {
        serde_json::to_value(reply).map(Reply).map_err(|e| format!("ledger reply not encodable: {e}"))
    }

    /// The reply as `R`; Err when it is not one (an answer to another operation).
    pub fn read<R: DeserializeOwned>(self, op: &str) -> Result<R, String> {
        serde_json::from_value(self.0.clone()).map_err(|_| format!("the ledger answered {} to {op}", self.0))
    }
}

/// Carries one operation to the shard named `shard` and its reply back: one writer per shard (a
/// Durable Object on the edge). Err: the ledger could not be reached or failed; the caller fails
/// closed.
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// Sends `op` to the shard named `shard`.
    async fn send(&self, shard: &str, op: &Op) -> Result<Reply, String>;

    /// Sends `op` to `shard` and reads the reply as the operation's own reply type.
    async fn call<O: Operation>(&self, shard: &O::Shard, op: O) -> Result<O::Reply, String> {
        let op = op.into();
        self.send(shard.name(), &op).await?.read(op.kind())
    }
}
