//! What a shard stores: an authorization's [`Record`], the payer's [`Standing`], a pass's
//! [`PassUsage`]. These shapes outlive a deploy (Durable Object storage), so they stay readable.

use serde::{Deserialize, Serialize};

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
    /// `upto` only: the amount (atomic units) of the first send mark ([`super::Mark::amount`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    /// The holder whose send mark first made the record sent; empty before (and in records
    /// written before this field existed, which are never taken back).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub marked_by: String,
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
    /// Unix seconds; the shard forgets the pass after this (plus [`super::PRUNE_AFTER_SECONDS`]).
    pub expires_at: u64,
}

impl Standing {
    /// Good standing: the payer's last outcome was a settlement, within `window_seconds`. A
    /// refusal in the same second as the last settlement counts as the later one.
    pub fn is_good(&self, now: u64, window_seconds: u64) -> bool {
        self.last_settled_at > 0 && self.last_settled_at > self.last_refused_at && now.saturating_sub(self.last_settled_at) < window_seconds
    }
}
