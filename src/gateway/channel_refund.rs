//! A cooperative refund of a payment channel (x402 `batch-settlement`: the client's `refund`
//! payload, a zero-charge voucher at the charged amount): the origin is not called; the
//! facilitator's `/settle` gets the refund enriched as the official server enriches it (the
//! amount, the channel's `refundNonce`, and a claim of what is charged and unclaimed, so the
//! payer never gets back what it was served for), signs it with the receiver authorizer's key
//! and claims and refunds in one transaction. docs/channels.md.

use http::{Response, StatusCode};
use serde_json::{json, Value};

use crate::ledger::channel::{ChannelFinish, ChannelOutcome, ChannelRecord};
use crate::ledger::{ChannelShard, Transport};
use crate::telemetry::DecisionOutcome;
use crate::x402::channel::{parse_u128, BatchSettlementPayload, BatchSettlementPayment};
use crate::x402::{encode_header, PAYMENT_RESPONSE};

use super::channel_claim::{facilitator_json, sync};
use super::facilitator_client::{upstream_status, Endpoint};
use super::pay::Paying;
use super::platform::Platform;
use super::{json_response, set_header};

/// The refund payload as the facilitator gets it: the client's channel and voucher (re-signed at
/// the charged amount), `amount` (the client's, else all that is not charged), `refundNonce`, and
/// one claim row when something charged is unclaimed (the shard's own latest voucher).
fn enriched(payment: &BatchSettlementPayment, channel: &ChannelRecord, amount: u128) -> Value {
    let mut raw = payment.raw.clone();
    let claims = if channel.charged > channel.total_claimed && !channel.signature.is_empty() {
        json!([{ "voucher": { "channel": channel.config, "maxClaimableAmount": channel.signed_max.to_string() }, "signature": channel.signature, "totalClaimed": channel.charged.to_string() }])
    } else {
        json!([])
    };
    if let Some(p) = raw.get_mut("payload").and_then(Value::as_object_mut) {
        // The facilitator signs with the receiver authorizer's key; a client's signatures go.
        p.remove("refundAuthorizerSignature");
        p.remove("claimAuthorizerSignature");
        p.insert("amount".into(), json!(amount.to_string()));
        p.insert("refundNonce".into(), json!(channel.refund_nonce));
        p.insert("claims".into(), claims);
    }
    raw
}

/// Runs the cooperative refund of the channel the request holds (`holder`), reserved as
/// `channel`. Answers 200 `{"message":"Refund acknowledged","channelId"}` with `PAYMENT-RESPONSE`
/// (the facilitator's settlement, `extra.channelState.chargedCumulativeAmount` added); a refused
/// refund 402 with the failed `PAYMENT-RESPONSE`; a facilitator that cannot be used 502/504 (sent: the outcome is unknown,
/// and the next request learns the channel from the chain).
pub(super) async fn refund<P: Platform>(cx: Paying<'_, P>, payment: &BatchSettlementPayment, offer_json: &Value, channel: &ChannelRecord, shard: &ChannelShard, holder: &str) -> Response<P::Body> {
    let Paying { config, p, trace, .. } = cx;
    let release = || ChannelFinish { holder: holder.to_string(), outcome: ChannelOutcome::Release };
    // The shard refused a refund of nothing or of too much (`RefundRefused`).
    let refundable = channel.balance.saturating_sub(channel.charged);
    let amount = match &payment.payload {
        BatchSettlementPayload::Refund { amount: Some(a), .. } => parse_u128(a).unwrap_or(refundable),
        _ => refundable,
    };
    let body = json!({ "x402Version": 2, "paymentPayload": enriched(payment, channel, amount), "paymentRequirements": offer_json });
    let settled = facilitator_json(config, &**p, Endpoint::Settle, &body).await;
    let answer = match settled {
        Ok(a) if a.json.get("success").and_then(Value::as_bool) == Some(true) => a.json,
        Ok(a) => {
            let _ = p.call(shard, release()).await;
            trace.outcome(DecisionOutcome::Refused, a.json.get("errorReason").and_then(Value::as_str));
            let mut res = json_response(StatusCode::PAYMENT_REQUIRED, &json!({ "error": a.json.get("errorReason").cloned().unwrap_or(json!("refund_refused")), "message": "the facilitator refused the refund; nothing moved" }), P::body);
            set_header(res.headers_mut(), PAYMENT_RESPONSE, &encode_header(&a.json));
            return res;
        }
        Err(f) => {
            let _ = p.call(shard, release()).await;
            trace.outcome(DecisionOutcome::FacilitatorError, Some("refund"));
            let (error, message) = if f.sent {
                ("settlement_outcome_unknown", format!("the refund was sent to the facilitator and its outcome is unknown ({}); the channel is read from the chain again on its next request", f.detail))
            } else {
                ("facilitator_unavailable", format!("the facilitator could not be used ({}); nothing moved", f.detail))
            };
            return json_response(upstream_status(f.timed_out), &json!({ "error": error, "message": message, "channelId": channel.channel_id }), P::body);
        }
    };
    let state = answer.get("extra").and_then(|e| e.get("channelState")).cloned().unwrap_or(Value::Null);
    let synced = sync(&**p, shard, &channel.channel_id, &channel.config, &channel.network, &state, None).await;
    let _ = p.call(shard, release()).await;
    if let Err(e) = synced {
        // The refund happened; the record stays old (the reservation made it so), so the next
        // voucher learns the channel from the chain again.
        p.log(&format!("x402: channel {}: the refund's new figures were not recorded ({e})", channel.channel_id));
    }
    p.log(&format!("x402: channel {} refunded {} to {} ({})", channel.channel_id, answer.get("amount").and_then(Value::as_str).unwrap_or("?"), channel.config.payer, answer.get("transaction").and_then(Value::as_str).unwrap_or("")));
    trace.outcome(DecisionOutcome::Paid, Some("refund"));
    let mut receipt = answer;
    receipt["extra"]["channelState"]["chargedCumulativeAmount"] = json!(channel.charged.to_string());
    let mut res = json_response(StatusCode::OK, &json!({ "message": "Refund acknowledged", "channelId": channel.channel_id }), P::body);
    set_header(res.headers_mut(), PAYMENT_RESPONSE, &encode_header(&receipt));
    res.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("private"));
    res
}
