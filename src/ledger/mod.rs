//! The payment ledger: what this paywall has done with each EIP-3009 authorization, decided by
//! one writer.
//!
//! On the edge the ledger lives in a Durable Object (`PaymentLedger`, SQLite storage), one object
//! per payer address ([`shard_name`]), so every request carrying an authorization of that payer
//! meets the same single-threaded writer wherever it arrives. This module is the whole state
//! machine, pure and synchronous over a [`Store`]; the Durable Object is glue that loads the
//! store, calls [`apply`] and answers with the [`Reply`]. KV is never used as the lock: it is
//! eventually consistent. The protocol is model-checked in `tests/ledger_model.rs` through this
//! very [`apply`]. Passes have shards of their own (`pass:<id>`, [`passes`]).
//!
//! This folder owns the exactly-once state machine and its protocol: [`protocol`] (the
//! operations, one reply type each, and the typed client over a [`Transport`]), [`records`]
//! (what a shard stores, readable across deploys), [`passes`] (the pass shard), [`memory`] (a
//! shard in memory: the host tests' ledger and the Durable Object's read cache). It must not
//! touch I/O, HTTP, the clock (`now` is an argument), configuration or the gateway: storage
//! comes in through [`Store`], the wire through [`Transport`], and the Durable Object glue lives
//! in `edge::ledger_object`.
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
//!   request carrying it gets [`Reservation::InFlight`] (HTTP 409).
//! - **No "paid" without evidence.** The holder writes the *send mark* ([`Mark`]) and waits
//!   for its acknowledgement immediately before `/settle` leaves the Worker. A record without the
//!   mark was never sent, whatever happened to its holder: when its lease lapses it is fresh
//!   again ([`Reservation::Reserved`] with `lapsed`), verified again by the facilitator, and "nonce
//!   already used" for it is a refusal. Only a marked record ([`Settlement::Sent`]) whose outcome
//!   is unknown comes back as `prior_sent`, to be reconciled from the chain (`RPC_URL`) or, without
//!   one, by settling again and taking "nonce already used" as this ledger's own earlier send.
//! - Settled and delivered: spent ([`Reservation::Spent`]). Settled but not delivered (the client was
//!   gone, or the origin failed after a settle-first payment): one retry of the same
//!   authorization, for the same route and resource, is served without a second settlement
//!   ([`Reservation::Redeliver`]).
//! - A copy of an authorization whose signature differs from the one reserved first (same payer
//!   and nonce, another signature: a forgery built from the chain's public data) never takes the
//!   record over ([`Reservation::Mismatch`]).
//! - Records are kept until `validBefore` has passed (after which the token contract refuses the
//!   authorization anyway) and then pruned ([`MemoryStore::prune`], the Durable Object's alarm). Until then a late retry still finds its
//!   record (a reservation with `create: false` never makes a new one).
//!
//! The ledger also keeps the payer's *standing* (last successful settlement, last refusal), which
//! the `auto` verify policy reads to decide whether a facilitator `/verify` is needed first.

use crate::evm::{hex_lower, Address};

/// Seconds added to every lease beyond the time limits it covers (scheduling, DO round trips).
pub const LEASE_MARGIN_SECONDS: u64 = 10;

/// Seconds a record is kept after its `validBefore` before it is pruned.
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

pub mod channel;
pub mod memory;
pub mod passes;
pub mod protocol;
pub mod records;
#[cfg(test)]
mod tests;

pub use memory::MemoryStore;
pub use protocol::{
    Admission, ChannelOp, ChannelShard, Finish, Finished, LivePasses, Mark, Marked, Op, Operation, Outcome, PassOp, PassRefund, PassRefusal, PassRevocation, PassRevoke, PassShard, PassSold, PassUse, PayerDeny, PayerOp,
    PayerPasses, PayerShard, Recorded, Reply, Reservation, Reserve, Shard, SignIn, SignedIn, Transport,
};
pub use records::{PassUsage, Record, Settlement, Standing};

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
    /// The channel of a channel shard.
    fn channel(&self) -> Result<Option<channel::ChannelRecord>, String>;
    fn set_channel(&mut self, channel: &channel::ChannelRecord) -> Result<(), String>;
}

/// An operation the state machine applies to a shard's [`Store`].
pub trait Apply {
    /// What the shard answers: the operation's [`Operation::Reply`], or for [`Op`] its [`Reply`]
    /// as it travels.
    type Output;
    /// Applies the operation at Unix time `now`. Err: a storage failure.
    fn apply(self, store: &mut impl Store, now: u64) -> Result<Self::Output, String>;
}

/// Applies `op` at Unix time `now` (the ledger's own clock). Atomic as long as the store's calls
/// are synchronous, which they are in a Durable Object (SQLite calls do not yield). A typed
/// operation answers its own reply type; an [`Op`] (the Durable Object's) answers its [`Reply`].
pub fn apply<O: Apply>(store: &mut impl Store, op: O, now: u64) -> Result<O::Output, String> {
    op.apply(store, now)
}

impl Apply for Op {
    type Output = Reply;
    fn apply(self, store: &mut impl Store, now: u64) -> Result<Reply, String> {
        match self {
            Op::Payer(op) => op.apply(store, now),
            Op::Pass(op) => op.apply(store, now),
            Op::Channel(op) => op.apply(store, now),
        }
    }
}

impl Apply for PayerOp {
    type Output = Reply;
    fn apply(self, store: &mut impl Store, now: u64) -> Result<Reply, String> {
        match self {
            PayerOp::Reserve(op) => Reply::of(&op.apply(store, now)?),
            PayerOp::Mark(op) => Reply::of(&op.apply(store, now)?),
            PayerOp::Finish(op) => Reply::of(&op.apply(store, now)?),
            PayerOp::PayerPasses => Reply::of(&PayerPasses.apply(store, now)?),
            PayerOp::PayerDeny => Reply::of(&PayerDeny.apply(store, now)?),
            PayerOp::SignIn(op) => Reply::of(&op.apply(store, now)?),
        }
    }
}

impl Apply for ChannelOp {
    type Output = Reply;
    fn apply(self, store: &mut impl Store, now: u64) -> Result<Reply, String> {
        match self {
            ChannelOp::ChannelSync(op) => Reply::of(&op.apply(store, now)?),
            ChannelOp::ChannelReserve(op) => Reply::of(&op.apply(store, now)?),
            ChannelOp::ChannelFinish(op) => Reply::of(&op.apply(store, now)?),
            ChannelOp::ClaimBegin(op) => Reply::of(&op.apply(store, now)?),
            ChannelOp::ClaimEnd(op) => Reply::of(&op.apply(store, now)?),
        }
    }
}

impl Apply for Reserve {
    type Output = Reservation;
    fn apply(self, store: &mut impl Store, now: u64) -> Result<Reservation, String> {
        let Reserve { key, holder, route, resource, signature, valid_before, lease_seconds, create } = self;
        if store.standing()?.denied {
            return Ok(Reservation::Denied);
        }
        let existing = store.get(&key)?;
        if let Some(r) = &existing {
            if r.signature != signature {
                return Ok(Reservation::Mismatch { resource: None });
            }
            if r.lease_until > now {
                return Ok(Reservation::InFlight);
            }
        }
        let lapsed = existing.is_some();
        let mut record = match existing {
            Some(r) => r,
            None if !create => return Ok(Reservation::NotFound),
            None => Record { route: route.clone(), resource: resource.clone(), signature, valid_before, settlement: Settlement::Pending, delivered: false, lease_until: 0, holder: String::new(), amount: None, marked_by: String::new() },
        };
        if let Settlement::Settled { transaction, network, .. } = &record.settlement {
            if record.delivered {
                return Ok(Reservation::Spent { transaction: transaction.clone() });
            }
            if record.route != route || record.resource != resource {
                return Ok(Reservation::Mismatch { resource: Some(format!("{} {}", record.route, record.resource)) });
            }
            let reply = Reservation::Redeliver { transaction: transaction.clone(), network: network.clone(), amount: record.amount.clone() };
            record.lease_until = now.saturating_add(lease_seconds);
            record.holder = holder;
            store.put(&key, &record)?;
            return Ok(reply);
        }
        if matches!(record.settlement, Settlement::Sent { .. }) && (record.route != route || record.resource != resource) {
            // Maybe paid, for that resource: reconciled (and served) only there.
            return Ok(Reservation::Mismatch { resource: Some(format!("{} {}", record.route, record.resource)) });
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
        let prior_amount = if prior_sent { record.amount.clone() } else { None };
        store.put(&key, &record)?;
        Ok(Reservation::Reserved { prior_sent, prior_transaction, lapsed, standing: store.standing()?, others_in_flight: store.in_flight(now, &key)?, prior_amount })
    }
}

impl Apply for Mark {
    type Output = Marked;
    fn apply(self, store: &mut impl Store, now: u64) -> Result<Marked, String> {
        let Mark { key, holder, lease_seconds, amount } = self;
        let Some(mut record) = held(store, &key, &holder, now)? else { return Ok(Marked::LostLease) };
        let renewed = record.lease_until.max(now.saturating_add(lease_seconds));
        if record.settlement == Settlement::Pending {
            record.settlement = Settlement::Sent { transaction: None };
            record.marked_by = holder;
            // The first send fixes the amount; a repeated send keeps it.
            record.amount = amount;
        } else if renewed == record.lease_until {
            return Ok(Marked::Done);
        }
        record.lease_until = renewed;
        store.put(&key, &record)?;
        Ok(Marked::Done)
    }
}

impl Apply for Finish {
    type Output = Finished;
    fn apply(self, store: &mut impl Store, now: u64) -> Result<Finished, String> {
        let Finish { key, holder, outcome } = self;
        let Some(mut record) = held(store, &key, &holder, now)? else { return Ok(Finished::LostLease) };
        record.lease_until = 0;
        let before = store.standing()?;
        let mut standing = before;
        let reply = match outcome {
            Outcome::Settled { transaction, network, delivered, hold_seconds, pass } => {
                if record.settlement == Settlement::Pending {
                    // Never "paid" without a send mark: the holder skipped it.
                    record.lease_until = now;
                    store.put(&key, &record)?;
                    return Ok(Finished::NotMarked);
                }
                if !transaction.is_empty() && store.find_transaction(&transaction, &key)?.is_some() {
                    record.settlement = Settlement::Sent { transaction: None };
                    store.put(&key, &record)?;
                    return Ok(Finished::DuplicateTransaction);
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
                Finished::Done
            }
            Outcome::Refused => {
                standing.last_refused_at = now;
                store.delete(&key)?;
                Finished::Done
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
                Finished::Done
            }
            Outcome::Release => {
                if record.settlement == Settlement::Pending {
                    store.delete(&key)?;
                } else {
                    // Marked (by this or an earlier hold): releasing must not forget that.
                    store.put(&key, &record)?;
                }
                Finished::Done
            }
            Outcome::Unsent => {
                // Still only this hold's own mark (no transaction named since): nobody sent it.
                let own_mark = record.settlement == (Settlement::Sent { transaction: None }) && record.marked_by == holder;
                if record.settlement == Settlement::Pending || own_mark {
                    store.delete(&key)?;
                } else {
                    store.put(&key, &record)?;
                }
                Finished::Done
            }
            Outcome::Delivered { delivered, pass } => {
                if matches!(record.settlement, Settlement::Settled { .. }) {
                    record.delivered = delivered;
                }
                store.put(&key, &record)?;
                if let Some((id, expires_at)) = pass {
                    store.add_payer_pass(&id, expires_at)?;
                }
                Finished::Done
            }
        };
        if standing != before {
            store.set_standing(&standing)?;
        }
        Ok(reply)
    }
}

impl Apply for PayerPasses {
    type Output = LivePasses;
    fn apply(self, store: &mut impl Store, now: u64) -> Result<LivePasses, String> {
        Ok(LivePasses::Passes { passes: live_passes(store, now)? })
    }
}

impl Apply for SignIn {
    type Output = SignedIn;
    fn apply(self, store: &mut impl Store, now: u64) -> Result<SignedIn, String> {
        if store.nonce_used(&self.nonce)? {
            return Ok(SignedIn::NonceUsed);
        }
        store.add_nonce(&self.nonce, self.expires_at)?;
        Ok(SignedIn::Passes { passes: live_passes(store, now)? })
    }
}

impl Apply for PayerDeny {
    type Output = LivePasses;
    fn apply(self, store: &mut impl Store, now: u64) -> Result<LivePasses, String> {
        let mut standing = store.standing()?;
        standing.denied = true;
        store.set_standing(&standing)?;
        Ok(LivePasses::Passes { passes: live_passes(store, now)? })
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
