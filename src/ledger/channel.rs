//! A `batch-settlement` channel's shard (`channel:0x<channel id>`, [`ChannelShard`]): the one
//! writer that orders the vouchers of one channel, so a voucher is accepted once and the
//! cumulative amount only grows by the price (x402 `scheme_batch_settlement_evm.md`, the
//! server's per-channel state).
//!
//! The record ([`ChannelRecord`]) mirrors the escrow's figures (`balance`, `totalClaimed`,
//! `withdrawRequestedAt`, learnt from the facilitator's `/verify` or a deposit's `/settle`:
//! [`ChannelSync`]) and keeps the paywall's own accounting: `charged` (the spec's
//! `chargedCumulativeAmount`) and the payer's voucher for it (what a claim needs). A request's
//! voucher moves through:
//!
//! ```text
//!            reserve                         finish: charged (delivered or not)
//!  charged ───────────► pending {max, lease} ───────────────────────────────► charged = max
//!                              │ finish: release (origin failed, client gone before the origin)
//!                              └──────────────► charged unchanged, the voucher may come again
//! ```
//!
//! - One voucher in flight per channel: another request gets [`ChannelReservation::InFlight`].
//! - `max` must be exactly `charged + price` ([`ChannelReservation::Mismatch`]: the corrective
//!   402 with the channel state), at most `balance` ([`ChannelReservation::Exceeds`]).
//! - Charged but not delivered (the client was gone when the answer was ready): the same voucher,
//!   for the same route and resource, is served once more without a second charge
//!   ([`ChannelReservation::Redeliver`]); any other copy of it is a stale voucher.
//! - Claims ([`ClaimBegin`], [`ClaimEnd`]) take the latest voucher (`signed_max` = `charged`) and
//!   one claimer at a time; a failed claim leaves everything as it was, to be retried.
//!
//! Amounts are atomic units of the channel's token; times Unix seconds. Pure: no I/O, no clock.

use serde::{Deserialize, Serialize};

use super::{Apply, Store};
use crate::x402::channel::ChannelConfigWire;

/// Most deposit authorizations a channel record remembers (a replayed deposit is then never sent
/// to the facilitator again).
pub const MAX_REMEMBERED_DEPOSITS: usize = 16;

/// The Durable Object name of a channel's shard: `channel:0x<channel id, lower-case hex>`.
pub fn channel_shard_name(channel_id: &[u8; 32]) -> String {
    format!("channel:0x{}", crate::evm::hex_lower(channel_id))
}

/// A voucher a request holds (between its reservation and its finish).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingVoucher {
    /// `maxClaimableAmount` of the held voucher.
    pub max: u128,
    /// Its signature, `0x` hex (kept for the claim once charged).
    pub signature: String,
    pub holder: String,
    pub lease_until: u64,
    pub route: String,
    pub resource: String,
}

/// The last charged voucher, when its response did not reach a connected client.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Undelivered {
    pub max: u128,
    pub route: String,
    pub resource: String,
}

/// One channel as its shard keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelRecord {
    /// `0x` + 64 hex digits.
    pub channel_id: String,
    /// The channel's immutable configuration, as the payer sent it (a claim names it).
    pub config: ChannelConfigWire,
    /// CAIP-2 network.
    pub network: String,
    /// Escrow `balance` as last learnt (deposits minus withdrawals and refunds).
    pub balance: u128,
    /// Escrow `totalClaimed` as last learnt (or as this paywall's last claim set it).
    pub total_claimed: u128,
    /// Escrow `withdrawRequestedAt` (0: none).
    pub withdraw_requested_at: u64,
    /// Escrow `refundNonce` as last learnt (decimal).
    pub refund_nonce: String,
    /// When the escrow's figures were last learnt (Unix seconds).
    pub synced_at: u64,
    /// `chargedCumulativeAmount`: what this paywall has charged on the channel in total.
    pub charged: u128,
    /// The payer's voucher for `charged` (`maxClaimableAmount`, signature `0x` hex); empty
    /// signature when nothing was charged here (a record learnt from the chain).
    pub signed_max: u128,
    pub signature: String,
    pub pending: Option<PendingVoucher>,
    pub undelivered: Option<Undelivered>,
    /// The request that made the last charge and what it charged: a repeated finish of that
    /// request (its first reply was lost) is answered from them.
    #[serde(default)]
    pub last_holder: String,
    #[serde(default)]
    pub last: Option<Undelivered>,
    /// keccak-256 hex of the deposit authorizations settled for this channel (newest last).
    pub deposits: Vec<String>,
    /// Vouchers charged since the last successful claim.
    pub unclaimed_vouchers: u32,
    /// When the oldest unclaimed charge was made (0: nothing unclaimed).
    pub unclaimed_since: u64,
    /// A claim is under way until then.
    pub claiming_until: u64,
    /// Claims that failed in a row, and the last failure.
    pub claim_failures: u32,
    pub last_claim_error: Option<String>,
    /// When the last claim succeeded (0: never).
    pub last_claimed_at: u64,
}

impl ChannelRecord {
    /// The channel as servers and clients exchange it ([`crate::x402::channel::ChannelStateWire`]).
    pub fn state_wire(&self) -> crate::x402::channel::ChannelStateWire {
        crate::x402::channel::ChannelStateWire {
            channel_id: Some(self.channel_id.clone()),
            balance: Some(self.balance.to_string()),
            total_claimed: Some(self.total_claimed.to_string()),
            withdraw_requested_at: Some(self.withdraw_requested_at),
            refund_nonce: Some(self.refund_nonce.clone()),
            charged_cumulative_amount: Some(self.charged.to_string()),
        }
    }

    /// What is charged and not yet claimed (atomic units).
    pub fn unclaimed(&self) -> u128 {
        self.charged.saturating_sub(self.total_claimed)
    }
}

/// Channel shard: records what the escrow says of the channel (`/verify` `extra`, a deposit's
/// `/settle`), creating the record when there is none. `deposit`: the keccak-256 hex of a deposit
/// authorization just settled. The balance and claimed total are taken as given (the chain is
/// the truth); `charged` never falls below `totalClaimed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelSync {
    pub channel_id: String,
    pub config: ChannelConfigWire,
    pub network: String,
    pub balance: u128,
    pub total_claimed: u128,
    pub withdraw_requested_at: u64,
    pub refund_nonce: String,
    pub deposit: Option<String>,
}

/// Channel shard: takes a voucher for one request. `max`/`signature`: the voucher; `price`: what
/// the request costs; `deposit`: the keccak-256 hex of the deposit authorization the payment
/// carries, if any (unknown to the record: [`ChannelReservation::DepositNeeded`]);
/// `claim_window`: seconds the paywall needs to claim after `now`; `max_age`: how old (seconds)
/// the escrow's figures may be ([`ChannelReservation::Unknown`] when older).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelReserve {
    pub max: u128,
    pub signature: String,
    pub price: u128,
    pub holder: String,
    pub lease_seconds: u64,
    pub route: String,
    pub resource: String,
    pub claim_window: u64,
    pub max_age: u64,
    pub deposit: Option<String>,
    /// A cooperative refund's voucher (`price` 0): never a redelivery, taken during a withdrawal;
    /// the record's figures count as old from then on (until a sync).
    #[serde(default)]
    pub refund: bool,
    /// A refund's requested amount (atomic units; `None`: all that is not charged).
    #[serde(default)]
    pub refund_amount: Option<u128>,
}

/// Reply to [`ChannelReserve`]; each carries the record as it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChannelReservation {
    /// The request holds the voucher.
    Reserved { channel: Box<ChannelRecord> },
    /// The shard has no record of the channel, or its escrow figures are older than `max_age`:
    /// learn them (facilitator `/verify`), then sync. `known`: there is a record (stale).
    Unknown { known: bool },
    /// The payment carries a deposit this record has not seen: settle it first, then sync.
    DepositNeeded,
    /// Another request holds a voucher of this channel (HTTP 409).
    InFlight,
    /// The voucher is not `charged + price` (stale, replayed, or ahead): the corrective 402.
    Mismatch { channel: Box<ChannelRecord> },
    /// The voucher is beyond the balance: a deposit (top-up) is needed.
    Exceeds { channel: Box<ChannelRecord> },
    /// The payer's timed withdrawal completes before the paywall could claim.
    Withdrawing { channel: Box<ChannelRecord> },
    /// The last charged voucher, whose answer never reached the client: served once more,
    /// without a second charge.
    Redeliver { channel: Box<ChannelRecord> },
    /// A refund of nothing (`nothing_refundable`: the balance is all charged) or of more than
    /// the balance minus what is charged: refused, nothing changed.
    RefundRefused { channel: Box<ChannelRecord>, nothing_refundable: bool },
}

/// How a request that held a voucher ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChannelOutcome {
    /// The origin answered (< 400): the voucher is charged. `delivered`: the answer is being
    /// handed to a connected client.
    Charged { delivered: bool },
    /// Nothing was served: the voucher is not charged.
    Release,
    /// A redelivery ended: `delivered` as for [`ChannelOutcome::Charged`].
    Redelivered { delivered: bool },
}

/// Channel shard: ends the hold of `holder`. Repeating it after a lost reply is safe: the shard
/// answers from the last charge it recorded for `holder` (and a repeated "not delivered" makes
/// that charge retrievable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelFinish {
    pub holder: String,
    pub outcome: ChannelOutcome,
}

/// Reply to [`ChannelFinish`] and [`ChannelSync`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChannelFinished {
    /// Recorded; the record as it now stands.
    Done { channel: Box<ChannelRecord> },
    /// The request no longer holds the voucher (its lease ran out), or there is no record.
    LostLease,
}

/// Channel shard: starts a claim of what is charged and unclaimed, if nothing else claims it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimBegin {
    pub lease_seconds: u64,
}

/// Reply to [`ClaimBegin`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ClaimStart {
    /// Claim the record's latest voucher (`signed_max`, `signature`) up to `charged`.
    Claim { channel: Box<ChannelRecord> },
    /// Nothing to claim, or a claim is under way.
    Nothing,
}

/// Channel shard: a claim ended. `total_claimed`: the escrow's `totalClaimed` after a successful
/// claim; `error`: why it failed (everything stays as it was, to be retried).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimEnd {
    pub total_claimed: Option<u128>,
    pub error: Option<String>,
}

fn done(c: ChannelRecord) -> ChannelFinished {
    ChannelFinished::Done { channel: Box::new(c) }
}

impl Apply for ChannelSync {
    type Output = ChannelFinished;
    fn apply(self, store: &mut impl Store, now: u64) -> Result<ChannelFinished, String> {
        let mut c = match store.channel()? {
            Some(c) => c,
            None => ChannelRecord {
                channel_id: self.channel_id,
                config: self.config,
                network: self.network,
                balance: 0,
                total_claimed: 0,
                withdraw_requested_at: 0,
                refund_nonce: "0".into(),
                synced_at: 0,
                charged: 0,
                signed_max: 0,
                signature: String::new(),
                pending: None,
                undelivered: None,
                last_holder: String::new(),
                last: None,
                deposits: Vec::new(),
                unclaimed_vouchers: 0,
                unclaimed_since: 0,
                claiming_until: 0,
                claim_failures: 0,
                last_claim_error: None,
                last_claimed_at: 0,
            },
        };
        // An answer older than a refund this shard recorded (a lower refund nonce) would restore
        // the refunded balance: its figures are not taken.
        let nonce = |n: &str| n.parse::<u128>().unwrap_or(0);
        if nonce(&self.refund_nonce) >= nonce(&c.refund_nonce) {
            c.balance = self.balance;
            c.total_claimed = c.total_claimed.max(self.total_claimed);
            c.withdraw_requested_at = self.withdraw_requested_at;
            c.refund_nonce = self.refund_nonce;
            c.synced_at = now;
        }
        // Claimed on chain is at least charged (a record lost and learnt again from the chain).
        if c.charged < c.total_claimed {
            c.charged = c.total_claimed;
            c.signed_max = c.total_claimed;
            c.signature.clear();
        }
        if let Some(d) = self.deposit {
            if !c.deposits.contains(&d) {
                c.deposits.push(d);
                let excess = c.deposits.len().saturating_sub(MAX_REMEMBERED_DEPOSITS);
                c.deposits.drain(..excess);
            }
        }
        store.set_channel(&c)?;
        Ok(done(c))
    }
}

impl Apply for ChannelReserve {
    type Output = ChannelReservation;
    fn apply(self, store: &mut impl Store, now: u64) -> Result<ChannelReservation, String> {
        let Some(mut c) = store.channel()? else { return Ok(ChannelReservation::Unknown { known: false }) };
        if self.deposit.as_ref().is_some_and(|d| !c.deposits.contains(d)) {
            // A deposit whose voucher is not the next one is refused before anything is settled.
            if c.charged.checked_add(self.price) != Some(self.max) {
                return Ok(ChannelReservation::Mismatch { channel: Box::new(c) });
            }
            return Ok(ChannelReservation::DepositNeeded);
        }
        if now.saturating_sub(c.synced_at) > self.max_age {
            return Ok(ChannelReservation::Unknown { known: true });
        }
        // Held through the last second of its lease, as [`ChannelFinish`] accepts it.
        if c.pending.as_ref().is_some_and(|p| p.lease_until >= now) {
            return Ok(ChannelReservation::InFlight);
        }
        let pending = PendingVoucher { max: self.max, signature: self.signature, holder: self.holder, lease_until: now.saturating_add(self.lease_seconds), route: self.route, resource: self.resource };
        let redelivery = !self.refund && c.undelivered.as_ref().is_some_and(|u| {
            u.max == pending.max && c.signed_max == pending.max && c.signature.eq_ignore_ascii_case(&pending.signature) && u.route == pending.route && u.resource == pending.resource
        });
        if redelivery {
            // `undelivered` stays until this redelivery reaches the client: if its holder dies,
            // the charge is still retrievable.
            c.pending = Some(pending);
            store.set_channel(&c)?;
            return Ok(ChannelReservation::Redeliver { channel: Box::new(c) });
        }
        if c.charged.checked_add(self.price) != Some(pending.max) {
            return Ok(ChannelReservation::Mismatch { channel: Box::new(c) });
        }
        if pending.max > c.balance {
            return Ok(ChannelReservation::Exceeds { channel: Box::new(c) });
        }
        if c.withdraw_requested_at != 0 && !self.refund {
            let completes = c.withdraw_requested_at.saturating_add(c.config.withdraw_delay);
            if completes < now.saturating_add(self.claim_window) {
                return Ok(ChannelReservation::Withdrawing { channel: Box::new(c) });
            }
        }
        if self.refund {
            let refundable = c.balance.saturating_sub(c.charged);
            if refundable == 0 || self.refund_amount.is_some_and(|a| a > refundable) {
                return Ok(ChannelReservation::RefundRefused { nothing_refundable: refundable == 0, channel: Box::new(c) });
            }
        }
        c.pending = Some(pending);
        let reply = ChannelReservation::Reserved { channel: Box::new(c.clone()) };
        // A refund changes the escrow's figures: until its outcome is synced, the next voucher
        // learns them from the chain again, whatever becomes of the refund's request.
        if self.refund {
            c.synced_at = 0;
        }
        store.set_channel(&c)?;
        Ok(reply)
    }
}

impl Apply for ChannelFinish {
    type Output = ChannelFinished;
    fn apply(self, store: &mut impl Store, now: u64) -> Result<ChannelFinished, String> {
        let Some(mut c) = store.channel()? else { return Ok(ChannelFinished::LostLease) };
        let holds = c.pending.as_ref().is_some_and(|p| p.holder == self.holder && p.lease_until >= now);
        if !holds {
            // The same finish again, its first reply lost: already applied. Only "not delivered"
            // changes anything (the answer is withheld, so the charge becomes retrievable), and
            // only while no later charge was made.
            if c.last_holder != self.holder || self.holder.is_empty() {
                return Ok(ChannelFinished::LostLease);
            }
            let undelivered = matches!(self.outcome, ChannelOutcome::Charged { delivered: false } | ChannelOutcome::Redelivered { delivered: false });
            if undelivered && c.last.as_ref().is_some_and(|l| l.max == c.charged) {
                c.undelivered = c.last.clone();
                store.set_channel(&c)?;
            }
            return Ok(done(c));
        }
        let Some(p) = c.pending.take() else { return Ok(ChannelFinished::LostLease) };
        if self.outcome != ChannelOutcome::Release {
            c.last_holder = self.holder.clone();
        }
        match self.outcome {
            ChannelOutcome::Charged { delivered } => {
                c.charged = p.max;
                c.signed_max = p.max;
                c.signature = p.signature;
                let charge = Undelivered { max: p.max, route: p.route, resource: p.resource };
                c.undelivered = (!delivered).then(|| charge.clone());
                c.last = Some(charge);
                c.unclaimed_vouchers = c.unclaimed_vouchers.saturating_add(1);
                if c.unclaimed_since == 0 {
                    c.unclaimed_since = now;
                }
            }
            ChannelOutcome::Release => {}
            ChannelOutcome::Redelivered { delivered } => {
                if delivered {
                    c.undelivered = None;
                }
            }
        }
        store.set_channel(&c)?;
        Ok(done(c))
    }
}

impl Apply for ClaimBegin {
    type Output = ClaimStart;
    fn apply(self, store: &mut impl Store, now: u64) -> Result<ClaimStart, String> {
        let Some(mut c) = store.channel()? else { return Ok(ClaimStart::Nothing) };
        if c.claiming_until > now || c.charged <= c.total_claimed || c.signature.is_empty() {
            return Ok(ClaimStart::Nothing);
        }
        c.claiming_until = now.saturating_add(self.lease_seconds);
        store.set_channel(&c)?;
        Ok(ClaimStart::Claim { channel: Box::new(c) })
    }
}

impl Apply for ClaimEnd {
    type Output = ChannelFinished;
    fn apply(self, store: &mut impl Store, now: u64) -> Result<ChannelFinished, String> {
        let Some(mut c) = store.channel()? else { return Ok(ChannelFinished::LostLease) };
        c.claiming_until = 0;
        match (self.total_claimed, self.error) {
            (Some(total), None) => {
                c.total_claimed = c.total_claimed.max(total);
                c.claim_failures = 0;
                c.last_claim_error = None;
                c.last_claimed_at = now;
                if c.total_claimed >= c.charged {
                    c.unclaimed_vouchers = 0;
                    c.unclaimed_since = 0;
                }
            }
            (_, error) => {
                c.claim_failures = c.claim_failures.saturating_add(1);
                c.last_claim_error = Some(error.unwrap_or_else(|| "the claim failed".into()));
            }
        }
        store.set_channel(&c)?;
        Ok(done(c))
    }
}
