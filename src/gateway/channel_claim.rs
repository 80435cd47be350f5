//! Payment channels off the request path, and the facilitator exchanges of the channel path:
//! [`facilitator_json`] (`/verify` and `/settle` with a `batch-settlement` body), [`sync`] (the
//! escrow's figures into the channel's shard) and [`claim`] (the latest voucher claimed through
//! the facilitator's `/settle` `claim`, then the receiver's claimed funds swept to `payTo` with a
//! `settle` payload: x402 `scheme_batch_settlement_evm.md`, the official channel manager's
//! bodies). docs/channels.md says when a claim runs and what a failure leaves.

use std::rc::Rc;

use serde_json::{json, Value};

use crate::config::Config;
use crate::facilitator::{HttpReply, UpstreamError};
use crate::ledger::channel::{ChannelFinished, ChannelRecord, ChannelSync, ClaimBegin, ClaimEnd, ClaimStart};
use crate::ledger::{ChannelShard, Transport};
use crate::x402::channel::{parse_u128, ChannelConfigWire};

use super::facilitator_client::{post_to_facilitators, Endpoint};
use super::platform::Platform;

/// Longest a claim may hold a channel (seconds): two facilitator calls and their margin.
fn claim_lease_seconds(config: &Config) -> u64 {
    2 * config.facilitator_timeout_seconds + crate::ledger::LEASE_MARGIN_SECONDS
}

/// What a facilitator answered: its HTTP status and JSON body.
pub(super) struct FacilitatorAnswer {
    pub(super) status: u16,
    pub(super) json: Value,
}

/// Why a facilitator exchange gave no answer. `sent`: the request may have reached a facilitator
/// (for `/settle`, its outcome is unknown).
pub(super) struct FacilitatorFailure {
    pub(super) sent: bool,
    pub(super) timed_out: bool,
    pub(super) detail: String,
}

/// `POST {facilitator}/{endpoint}` with `body`, with the failover of every facilitator call
/// ([`post_to_facilitators`]). A reply that is not JSON, or a 5xx, counts as no answer.
pub(super) async fn facilitator_json<P: Platform>(config: &Config, p: &P, endpoint: Endpoint, body: &Value) -> Result<FacilitatorAnswer, FacilitatorFailure> {
    let classify = |reply: Result<HttpReply, UpstreamError>| match reply {
        Ok(r) => match serde_json::from_slice::<Value>(&r.body) {
            Ok(json) if r.status < 500 => Ok(FacilitatorAnswer { status: r.status, json }),
            _ => Err(FacilitatorFailure { sent: true, timed_out: false, detail: format!("HTTP {} without a usable answer", r.status) }),
        },
        Err(e) => Err(FacilitatorFailure { sent: !matches!(e, UpstreamError::NotSent(_)), timed_out: matches!(e, UpstreamError::Timeout { .. }), detail: e.to_string() }),
    };
    post_to_facilitators(config, p, endpoint, body.to_string(), classify, Result::is_err).await.outcome
}

/// The escrow's figures in a facilitator answer (`/verify` `extra`, or `/settle`
/// `extra.channelState`): balance, totalClaimed, withdrawRequestedAt, refundNonce.
pub(super) fn escrow_figures(state: &Value) -> Option<(u128, u128, u64, String)> {
    let amount = |k: &str| state.get(k).and_then(Value::as_str).and_then(parse_u128);
    let balance = amount("balance")?;
    let total_claimed = amount("totalClaimed").unwrap_or(0);
    let withdraw = state.get("withdrawRequestedAt").and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))).unwrap_or(0);
    let nonce = match state.get("refundNonce") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".into(),
    };
    Some((balance, total_claimed, withdraw, nonce))
}

/// Writes the escrow's `state` (see [`escrow_figures`]) into the channel's shard; `deposit`: the
/// hash of a deposit authorization just settled. Err: the figures are missing or the ledger failed.
pub(super) async fn sync<P: Platform>(p: &P, shard: &ChannelShard, channel_id: &str, config: &ChannelConfigWire, network: &str, state: &Value, deposit: Option<String>) -> Result<Box<ChannelRecord>, String> {
    let (balance, total_claimed, withdraw_requested_at, refund_nonce) = escrow_figures(state).ok_or("the facilitator's answer carries no channel balance")?;
    let op = ChannelSync { channel_id: channel_id.to_string(), config: config.clone(), network: network.to_string(), balance, total_claimed, withdraw_requested_at, refund_nonce, deposit };
    match p.call(shard, op).await? {
        ChannelFinished::Done { channel } => Ok(channel),
        ChannelFinished::LostLease => Err("the channel's shard did not take the sync".into()),
    }
}

/// Whether `channel` is due a claim under the configured policy at `now`: enough vouchers, an old
/// enough unclaimed charge, or a timed withdrawal under way.
pub fn claim_due(config: &Config, channel: &ChannelRecord, now: u64) -> bool {
    channel.unclaimed() > 0
        && (u64::from(channel.unclaimed_vouchers) >= config.channel_claim.vouchers
            || (channel.unclaimed_since > 0 && now.saturating_sub(channel.unclaimed_since) >= claim_after_seconds(config, channel))
            || channel.withdraw_requested_at != 0)
}

/// How old (seconds) a channel's oldest unclaimed charge may get: `CHANNEL_CLAIM_SECONDS`, but
/// never more than the channel's `withdrawDelay` less the figures' refresh time
/// ([`super::channel::SYNC_SECONDS`]), so that a payer who starts a withdrawal right after its
/// last request cannot complete it before the claim.
pub fn claim_after_seconds(config: &Config, channel: &ChannelRecord) -> u64 {
    config.channel_claim.seconds.min(channel.config.withdraw_delay.saturating_sub(super::channel::SYNC_SECONDS))
}

/// Whether the escrow has claimed the channel's latest voucher in full: the facilitator's
/// `/verify` of that voucher answers `cumulative_below_claimed`.
async fn claimed_on_chain<P: Platform>(config: &Config, p: &P, channel: &ChannelRecord) -> bool {
    let voucher = json!({ "channelId": channel.channel_id, "maxClaimableAmount": channel.signed_max.to_string(), "signature": channel.signature });
    let mut body = manager_body(channel, json!({ "type": "voucher", "channelConfig": channel.config, "voucher": voucher }));
    body["paymentRequirements"]["extra"] = json!({ "receiverAuthorizer": channel.config.receiver_authorizer, "withdrawDelay": channel.config.withdraw_delay });
    body["paymentPayload"]["accepted"] = body["paymentRequirements"].clone();
    match facilitator_json(config, p, Endpoint::Verify, &body).await {
        Ok(a) => a.json.get("invalidReason").and_then(Value::as_str) == Some(crate::x402::channel::reason::CUMULATIVE_BELOW_CLAIMED),
        Err(_) => false,
    }
}

/// The requirements of the channel manager's claim and sweep calls (as the official manager
/// builds them): amount 0, no timeout, no extra.
fn manager_requirements(channel: &ChannelRecord) -> Value {
    json!({ "scheme": crate::x402::channel::SCHEME, "network": channel.network, "asset": channel.config.token, "amount": "0", "payTo": channel.config.receiver, "maxTimeoutSeconds": 0, "extra": {} })
}

/// A `/settle` body for the manager's `payload`.
fn manager_body(channel: &ChannelRecord, payload: Value) -> Value {
    let requirements = manager_requirements(channel);
    json!({ "x402Version": 2, "paymentPayload": { "x402Version": 2, "accepted": requirements, "payload": payload }, "paymentRequirements": requirements })
}

/// Claims the channel of `shard` if it has something charged and unclaimed and nothing else
/// claims it: `/settle` with a `claim` payload of its latest voucher (the facilitator, whose
/// address is the channel's `receiverAuthorizer`, signs the batch), then `/settle` with a `settle`
/// payload (escrow → `payTo`). A failed claim leaves the record as it was (retried by the next
/// due request); a failed sweep is only logged (the next sweep moves it). Logs one JSON line
/// `{"x402":"claim",…}`.
pub async fn claim<P: Platform>(config: Rc<Config>, p: Rc<P>, shard: ChannelShard) {
    let channel = match p.call(&shard, ClaimBegin { lease_seconds: claim_lease_seconds(&config) }).await {
        Ok(ClaimStart::Claim { channel }) => channel,
        Ok(ClaimStart::Nothing) => return,
        Err(e) => return p.log(&format!("x402: channel claim not started: {e}")),
    };
    let row = json!({ "voucher": { "channel": channel.config, "maxClaimableAmount": channel.signed_max.to_string() }, "signature": channel.signature, "totalClaimed": channel.charged.to_string() });
    let claimed = facilitator_json(&config, &*p, Endpoint::Settle, &manager_body(&channel, json!({ "type": "claim", "claims": [row] }))).await;
    let (end, transaction) = match claimed {
        Ok(a) if a.json.get("success").and_then(Value::as_bool) == Some(true) => {
            (ClaimEnd { total_claimed: Some(channel.charged), error: None }, a.json.get("transaction").and_then(Value::as_str).map(str::to_string))
        }
        Ok(a) => {
            let reason = a.json.get("errorReason").and_then(Value::as_str).unwrap_or("refused").to_string();
            (ClaimEnd { total_claimed: None, error: Some(format!("HTTP {}: {reason}", a.status)) }, None)
        }
        Err(f) => (ClaimEnd { total_claimed: None, error: Some(f.detail) }, None),
    };
    // A claim whose answer was lost may have landed: then the escrow's claimed total already
    // covers the voucher, which `/verify` says as `cumulative_below_claimed`.
    let end = match end.error {
        Some(_) if claimed_on_chain(&config, &*p, &channel).await => ClaimEnd { total_claimed: Some(channel.charged), error: None },
        _ => end,
    };
    let ok = end.error.is_none();
    let error = end.error.clone();
    if let Err(e) = p.call(&shard, end).await {
        p.log(&format!("x402: channel claim end not recorded: {e}"));
    }
    let line = json!({ "x402": "claim", "channelId": channel.channel_id, "payer": channel.config.payer, "claimed": channel.charged.to_string(), "vouchers": channel.unclaimed_vouchers, "ok": ok, "transaction": transaction, "error": error });
    p.log(&line.to_string());
    if !ok {
        return;
    }
    let sweep = json!({ "type": "settle", "receiver": channel.config.receiver, "token": channel.config.token });
    match facilitator_json(&config, &*p, Endpoint::Settle, &manager_body(&channel, sweep)).await {
        Ok(a) if a.json.get("success").and_then(Value::as_bool) == Some(true) => {}
        Ok(a) => p.log(&format!("x402: channel sweep to {} refused: {}", channel.config.receiver, a.json.get("errorReason").and_then(Value::as_str).unwrap_or("refused"))),
        Err(f) => p.log(&format!("x402: channel sweep to {} failed: {}", channel.config.receiver, f.detail)),
    }
}
