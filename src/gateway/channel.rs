//! A request paid by a `batch-settlement` voucher (payment channels, docs/channels.md): checked
//! here ([`check_voucher`]: the channel configuration against the offer, the payer's EIP-712
//! signature), ordered and accounted by the channel's shard ([`ChannelReserve`] /
//! [`ChannelFinish`], `ledger/channel.rs`), served with no facilitator call for a channel whose
//! escrow figures are fresh, and claimed later off the request path (`channel_claim.rs`).
//!
//! The facilitator is called on the request path only to learn a channel (unknown to the shard,
//! or its figures older than [`SYNC_SECONDS`]: `/verify`) and for a deposit (`/verify`, then
//! `/settle` before the origin: the deposit moves the payer's tokens into the payer's own escrow
//! channel, not to the seller, so settling it first charges nothing for an answer not given).
//!
//! Answers, as the official `@x402/evm` server gives them: served → the origin's answer with
//! `PAYMENT-RESPONSE` `{success, payer, transaction: "" (a deposit's transaction), network,
//! amount: "", extra: {channelState: {…, chargedCumulativeAmount}, chargedAmount}}`; an origin
//! status >= 400 → its answer, nothing charged, no `PAYMENT-RESPONSE`; a voucher that is not the
//! charged amount plus the price → the corrective 402 (`cumulative_amount_mismatch` with
//! `extra.channelState` and `extra.voucherState`).

use std::rc::Rc;

use http::{Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::evm::{hex_0x, hex_lower, keccak256};
use crate::ledger::channel::{ChannelFinish, ChannelFinished, ChannelOutcome, ChannelRecord, ChannelReservation, ChannelReserve};
use crate::ledger::{ChannelShard, Transport, LEASE_MARGIN_SECONDS};
use crate::refusal::Invalid;
use crate::telemetry::DecisionOutcome;
use crate::x402::channel::{check_voucher, reason, BatchSettlementPayload, BatchSettlementPayment, BatchSettlementRequirements, ChannelTerms, VerifiedVoucher, SCHEME};
use crate::x402::{encode_header, PAYMENT_REQUIRED, PAYMENT_RESPONSE};

use super::challenge::{challenge_values, Challenger};
use super::channel_claim::{claim, claim_due, facilitator_json, sync, FacilitatorFailure};
use super::context::{attach, Paid};
use super::facilitator_client::{upstream_status, Endpoint};
use super::forward::{forward, origin_failure};
use super::pay::{Paying, PaymentIdentity};
use super::platform::Platform;
use super::refusal::{refuse, Refusal};
use super::{json_response, set_header};

/// Longest the escrow's figures of a channel are trusted (seconds) before the facilitator's
/// `/verify` refreshes them on a request: with [`CLAIM_WINDOW_SECONDS`] at most the escrow's
/// shortest `withdrawDelay` (900 s), so a timed withdrawal is seen in time to claim before it
/// completes.
pub const SYNC_SECONDS: u64 = 300;
/// Time the paywall keeps for a claim (seconds): a voucher is refused when the payer's timed
/// withdrawal completes sooner.
pub const CLAIM_WINDOW_SECONDS: u64 = 600;

/// The offer `accepted` names: a `batch-settlement` offer of the route equal to it in every field
/// but the corrective 402's `extra.channelState` / `extra.voucherState` (compared in place).
fn matching_offer<'r>(route: &'r crate::config::Route, accepted: &Value) -> Option<&'r crate::x402::offer::Offer> {
    const STATE: [&str; 2] = ["channelState", "voucherState"];
    let accepted = accepted.as_object()?;
    let same = |offer: &Value| -> bool {
        let Some(offer) = offer.as_object() else { return false };
        offer.len() == accepted.len()
            && accepted.iter().all(|(k, v)| match (k.as_str(), offer.get(k)) {
                ("extra", Some(Value::Object(theirs))) => {
                    let Some(ours) = v.as_object() else { return false };
                    ours.iter().filter(|(k, _)| !STATE.contains(&k.as_str())).count() == theirs.len() && theirs.iter().all(|(k, v)| ours.get(k) == Some(v))
                }
                (_, Some(theirs)) => theirs == v,
                (_, None) => false,
            })
    };
    route.accepts.iter().find(|o| o.requirements.scheme == SCHEME && same(&o.requirements_json))
}

/// keccak-256 hex of a deposit's token authorization signature (what the shard remembers).
fn deposit_hash(payload: &BatchSettlementPayload) -> Option<String> {
    let BatchSettlementPayload::Deposit { deposit, .. } = payload else { return None };
    let auth = &deposit.authorization;
    let signature = auth.erc3009_authorization.as_ref().map(|a| &a.signature).or(auth.permit2_authorization.as_ref().map(|a| &a.signature))?;
    Some(hex_lower(&keccak256(signature.to_ascii_lowercase().as_bytes())))
}

/// A `PaymentPayload` for `/verify` that asks only about the voucher (a deposit's, when the
/// deposit itself is known or refused); a voucher or refund payload as it is.
fn voucher_only(payment: &BatchSettlementPayment) -> Value {
    let mut raw = payment.raw.clone();
    if !matches!(payment.payload, BatchSettlementPayload::Deposit { .. }) {
        return raw;
    }
    if let Some(p) = raw.get_mut("payload").and_then(Value::as_object_mut) {
        p.remove("deposit");
        p.insert("type".into(), json!("voucher"));
    }
    raw
}

/// The `PAYMENT-RESPONSE` of a served request: the channel after it, what this request charged,
/// and for a deposit the facilitator's settlement (transaction, deposited amount).
fn payment_response(channel: &ChannelRecord, payer: &str, charged: u128, deposit: Option<&Value>) -> String {
    let mut r = json!({
        "success": true,
        "payer": payer.to_ascii_lowercase(),
        "transaction": "",
        "network": channel.network,
        "amount": "",
        "extra": { "channelState": channel.state_wire(), "chargedAmount": charged.to_string() },
    });
    if let Some(d) = deposit {
        for k in ["transaction", "amount"] {
            if let Some(v) = d.get(k).filter(|v| v.is_string()) {
                r[k] = v.clone();
            }
        }
    }
    encode_header(&r)
}

/// The corrective 402 (`cumulative_amount_mismatch`): the challenge with the channel's state and
/// last voucher in the matched offer's `extra`, from which the client re-signs.
fn corrective<P: Platform>(challenger: &Challenger<'_>, offer_json: &Value, channel: &ChannelRecord) -> Response<P::Body> {
    let (pr, _) = challenge_values(challenger.route, &challenger.resource_url, reason::CUMULATIVE_AMOUNT_MISMATCH, None);
    let mut pr = serde_json::to_value(pr).unwrap_or(Value::Null);
    if let Some(accepts) = pr.get_mut("accepts").and_then(Value::as_array_mut) {
        for a in accepts.iter_mut().filter(|a| *a == offer_json) {
            a["extra"]["channelState"] = serde_json::to_value(channel.state_wire()).unwrap_or(Value::Null);
            if !channel.signature.is_empty() {
                a["extra"]["voucherState"] = json!({ "signedMaxClaimable": channel.signed_max.to_string(), "signature": channel.signature });
            }
        }
    }
    let mut res = json_response(StatusCode::PAYMENT_REQUIRED, &pr, P::body);
    set_header(res.headers_mut(), PAYMENT_REQUIRED, &encode_header(&pr));
    res
}

/// Answers a request whose `PAYMENT-SIGNATURE` carries a `batch-settlement` payment (see the
/// module doc).
pub(super) async fn pay<P: Platform>(cx: Paying<'_, P>, req: Request<P::Body>, payment: BatchSettlementPayment, challenger: &Challenger<'_>) -> Response<P::Body> {
    let Paying { config, p, route, canonical, trace, .. } = cx;
    let refused = |why: Invalid| {
        p.log(&format!("x402: rejected channel payment: {why}"));
        refuse(&**p, trace, Refusal::Payment { challenger, why })
    };
    let Some(offer) = matching_offer(route, &payment.accepted) else {
        return refused(Invalid::new("invalid_payment_requirements", "the accepted requirement is not one of this route's batch-settlement offers"));
    };
    let terms = match serde_json::from_value::<BatchSettlementRequirements>(offer.requirements_json.clone()).map_err(|e| Invalid::new("invalid_payment_requirements", e.to_string())).and_then(|r| ChannelTerms::from_requirements(&r)) {
        Ok(t) => t,
        Err(why) => return refused(why),
    };
    let v = match check_voucher(&terms, &payment.payload) {
        Ok(v) => v,
        Err(why) => return refused(why),
    };
    let payer = v.config.payer.to_checksum();
    let network = offer.requirements.network.clone();
    trace.payer(&payer);
    trace.price(&offer.requirements.amount, &offer.requirements.asset, &network);
    if config.denylist.contains(&v.config.payer) {
        return refused(super::pay::payer_denied());
    }
    let channel_id = hex_0x(&v.channel_id);
    let identity = PaymentIdentity { payer: payer.clone(), nonce: channel_id.clone(), network: network.clone(), asset: offer.requirements.asset.clone(), amount: offer.requirements.amount.clone() };
    let holder = match p.random32() {
        Ok(r) => hex_lower(&r[..16]),
        Err(e) => return refuse(&**p, trace, Refusal::LedgerUnavailable(format!("no randomness for the ledger lease: {e}"))),
    };
    let shard = ChannelShard::of(&v.channel_id);
    let (config_wire, voucher_signature) = match &payment.payload {
        BatchSettlementPayload::Deposit { channel_config, voucher, .. } | BatchSettlementPayload::Voucher { channel_config, voucher } | BatchSettlementPayload::Refund { channel_config, voucher, .. } => {
            (channel_config.clone(), voucher.signature.clone())
        }
        _ => return refused(Invalid::new(reason::PAYLOAD_TYPE, "not a deposit, voucher or refund payload")),
    };
    let refund = v.kind == "refund";
    let reserve = ChannelReserve {
        max: v.max_claimable_amount,
        signature: voucher_signature,
        price: if refund { 0 } else { terms.price },
        holder: holder.clone(),
        // A refund holds the channel through its /settle over every facilitator.
        lease_seconds: if refund { config.facilitator_timeout_seconds * config.facilitators.len().max(1) as u64 } else { config.origin_timeout_seconds } + LEASE_MARGIN_SECONDS,
        route: route.key.clone(),
        resource: canonical.to_string(),
        claim_window: CLAIM_WINDOW_SECONDS,
        // A signature this paywall cannot check (a smart wallet's) is checked by the
        // facilitator's /verify of this very voucher before the shard is asked (below).
        max_age: if v.signature_checked { SYNC_SECONDS } else { u64::MAX },
        deposit: deposit_hash(&payment.payload),
        refund,
        refund_amount: v.refund_amount,
    };
    let mut learnt = false;
    let mut deposited: Option<Value> = None;
    // A signature this paywall cannot check (a smart wallet's): the facilitator's /verify of this
    // very voucher comes first, every time; a new deposit's voucher is /verify'd with the deposit.
    let mut voucher_verified = v.signature_checked;
    let mut unverified: Option<String> = None;
    if !v.signature_checked {
        match learn(cx, &payment, &shard, &channel_id, &config_wire, None).await {
            Ok(_) => (voucher_verified, learnt) = (true, true),
            Err(Learnt::Invalid(reason)) if v.kind == "deposit" => unverified = Some(reason),
            Err(Learnt::Invalid(reason)) => return refuse(&**p, trace, Refusal::VerifyInvalid { challenger, reason }),
            Err(Learnt::Refusal(res)) => return res,
        }
    }
    let (reserved, redelivery) = loop {
        let reply = match p.call(&shard, reserve.clone()).await {
            Ok(r) => r,
            Err(e) => return refuse(&**p, trace, Refusal::LedgerUnavailable(e)),
        };
        match reply {
            ChannelReservation::Reserved { .. } | ChannelReservation::Redeliver { .. } if !voucher_verified => {
                let _ = p.call(&shard, ChannelFinish { holder: holder.clone(), outcome: ChannelOutcome::Release }).await;
                let reason = unverified.take().unwrap_or_else(|| reason::VOUCHER_SIGNATURE.to_string());
                return refuse(&**p, trace, Refusal::VerifyInvalid { challenger, reason });
            }
            ChannelReservation::Reserved { channel } => break (channel, false),
            ChannelReservation::Redeliver { channel } => break (channel, true),
            ChannelReservation::InFlight => return refuse(&**p, trace, Refusal::InFlight(&identity)),
            ChannelReservation::Mismatch { channel } => {
                trace.outcome(DecisionOutcome::Refused, Some(reason::CUMULATIVE_AMOUNT_MISMATCH));
                return corrective::<P>(challenger, &offer.requirements_json, &channel);
            }
            ChannelReservation::RefundRefused { channel, nothing_refundable } => {
                let why = if nothing_refundable {
                    Invalid::new(reason::REFUND_NO_BALANCE, "nothing is refundable: the channel's balance is all charged")
                } else {
                    Invalid::new(reason::REFUND_AMOUNT_INVALID, format!("the refund asks more than the {} refundable", channel.balance.saturating_sub(channel.charged)))
                };
                return refused(why);
            }
            ChannelReservation::Exceeds { channel } => {
                return refused(Invalid::new(reason::CUMULATIVE_EXCEEDS_BALANCE, format!("maxClaimableAmount {} exceeds the channel balance {}: deposit more", v.max_claimable_amount, channel.balance)));
            }
            ChannelReservation::Withdrawing { channel } => {
                p.defer(claim(Rc::clone(config), Rc::clone(p), shard.clone()));
                return refused(Invalid::new(reason::WITHDRAWAL_CLOSES_CLAIM_WINDOW, format!("the payer's timed withdrawal (requested at {}) completes before this paywall could claim", channel.withdraw_requested_at)));
            }
            _ if learnt => return refuse(&**p, trace, Refusal::LedgerUnavailable("the channel's shard did not keep what was learnt of the channel".into())),
            reply => {
                learnt = true;
                let new_deposit = v.kind == "deposit" && matches!(reply, ChannelReservation::DepositNeeded | ChannelReservation::Unknown { known: false });
                let learned = if new_deposit { settle_deposit(cx, &payment, &v, &shard, &channel_id, &config_wire).await } else { learn(cx, &payment, &shard, &channel_id, &config_wire, reserve.deposit.clone()).await };
                match learned {
                    Ok(settled) => {
                        // A settled deposit's voucher was /verify'd with it.
                        voucher_verified |= settled.is_some();
                        deposited = settled.or(deposited);
                    }
                    Err(Learnt::Invalid(reason)) => {
                        p.log(&format!("x402: facilitator refused channel payment: {reason}"));
                        return refuse(&**p, trace, Refusal::VerifyInvalid { challenger, reason });
                    }
                    Err(Learnt::Refusal(res)) => return res,
                }
            }
        }
    };

    if refund {
        return super::channel_refund::refund(cx, &payment, &offer.requirements_json, &reserved, &shard, &holder).await;
    }
    let mut req = req;
    attach(config, &mut req, route, canonical, Paid { payer: &payer, authorization: &shard_key(&channel_id, v.max_claimable_amount), requirements: &offer.requirements, version: 2 });
    let finish = |outcome| ChannelFinish { holder: holder.clone(), outcome };
    let res = match forward(config, &**p, req, canonical).await {
        Ok(r) => r,
        Err(e) => {
            let outcome = if redelivery { ChannelOutcome::Redelivered { delivered: false } } else { ChannelOutcome::Release };
            let _ = p.call(&shard, finish(outcome)).await;
            trace.outcome(DecisionOutcome::OriginError, None);
            return origin_failure::<P>(&**p, &e, None);
        }
    };
    if res.status().as_u16() >= 400 {
        let outcome = if redelivery { ChannelOutcome::Redelivered { delivered: false } } else { ChannelOutcome::Release };
        let _ = p.call(&shard, finish(outcome)).await;
        trace.outcome(DecisionOutcome::OriginError, Some("origin_status"));
        return res;
    }
    let delivered = !p.client_gone();
    let outcome = if redelivery { ChannelOutcome::Redelivered { delivered } } else { ChannelOutcome::Charged { delivered } };
    let after = match p.call(&shard, finish(outcome)).await {
        Ok(ChannelFinished::Done { channel }) => channel,
        // The hold ran out before the origin answered: nothing is recorded as charged, so the
        // answer is withheld (the same voucher may be sent again).
        Ok(ChannelFinished::LostLease) => return refuse(&**p, trace, Refusal::InFlight(&identity)),
        // The shard's reply was lost: the charge may or may not be recorded. Finished again as
        // not delivered (idempotent): the charge is then recorded and retrievable, and the answer
        // is withheld (a retry of the same voucher gets it without a second charge).
        Err(e) => {
            p.log(&format!("x402: channel {channel_id}: the finish of {} was not confirmed ({e}); finishing it as not delivered", v.max_claimable_amount));
            let again = if redelivery { ChannelOutcome::Redelivered { delivered: false } } else { ChannelOutcome::Charged { delivered: false } };
            let (status, message) = match p.call(&shard, finish(again)).await {
                Ok(ChannelFinished::Done { .. }) => ("ledger_unavailable", "the answer was withheld because the payment ledger did not confirm the charge in time; the charge is recorded: retry with the same voucher to get the answer without a second charge".to_string()),
                Ok(ChannelFinished::LostLease) => return refuse(&**p, trace, Refusal::InFlight(&identity)),
                Err(e) => ("settlement_outcome_unknown", format!("the payment ledger could not be reached to record this voucher ({e}); whether it was charged is unknown: retry with the same voucher")),
            };
            trace.outcome(DecisionOutcome::Unavailable, Some(status));
            let body = json!({ "error": status, "message": message, "payer": payer, "channelId": channel_id });
            let mut res = json_response(StatusCode::SERVICE_UNAVAILABLE, &body, P::body);
            res.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
            return res;
        }
    };
    if claim_due(config, &after, p.now()) {
        p.defer(claim(Rc::clone(config), Rc::clone(p), shard.clone()));
    }
    trace.outcome(DecisionOutcome::Paid, Some(if redelivery { "redelivered" } else { v.kind }));
    let (mut parts, body) = res.into_parts();
    set_header(&mut parts.headers, PAYMENT_RESPONSE, &payment_response(&after, &payer, terms.price, deposited.as_ref()));
    super::not_stored(&mut parts.headers);
    Response::from_parts(parts, body)
}

/// The authorization id a channel request carries in its payment context: the channel and the
/// voucher's cumulative amount.
fn shard_key(channel_id: &str, max: u128) -> String {
    format!("{channel_id}/{max}")
}

/// Why learning a channel or settling its deposit did not lead to serving.
enum Learnt<B> {
    /// The facilitator refused the payment: the challenge with its `invalidReason`.
    Invalid(String),
    /// Any other answer (unavailable, outcome unknown).
    Refusal(Response<B>),
}

/// The facilitator could not be used: 502/504, nothing charged (`/verify`), or the outcome of a
/// deposit unknown (`/settle`).
fn unavailable<P: Platform>(identity: &PaymentIdentity, f: FacilitatorFailure, settle: bool) -> Learnt<P::Body> {
    let status = upstream_status(f.timed_out);
    let (error, message) = if settle && f.sent {
        ("settlement_outcome_unknown", format!("the deposit for channel {} was sent to the facilitator and its outcome is unknown ({}); retry the same payment, which never deposits twice", identity.nonce, f.detail))
    } else {
        ("facilitator_unavailable", format!("the facilitator could not be used ({}); nothing was charged", f.detail))
    };
    Learnt::Refusal(json_response(status, &json!({ "error": error, "message": message, "payer": identity.payer, "channelId": identity.nonce }), P::body))
}

pub(super) fn identity_of(payment: &BatchSettlementPayment, channel_id: &str) -> PaymentIdentity {
    let accepted = &payment.accepted;
    let s = |k: &str| accepted.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let payer = match &payment.payload {
        BatchSettlementPayload::Deposit { channel_config, .. } | BatchSettlementPayload::Voucher { channel_config, .. } => channel_config.payer.clone(),
        _ => String::new(),
    };
    PaymentIdentity { payer, nonce: channel_id.to_string(), network: s("network"), asset: s("asset"), amount: s("amount") }
}

/// `/verify` of the voucher (a deposit's too, without its deposit) to learn the channel's escrow
/// figures, written to the shard.
async fn learn<P: Platform>(cx: Paying<'_, P>, payment: &BatchSettlementPayment, shard: &ChannelShard, channel_id: &str, config_wire: &crate::x402::channel::ChannelConfigWire, deposit: Option<String>) -> Result<Option<Value>, Learnt<P::Body>> {
    let Paying { config, p, route, .. } = cx;
    let identity = identity_of(payment, channel_id);
    let requirements = matching_offer(route, &payment.accepted).map(|o| o.requirements_json.clone()).unwrap_or(Value::Null);
    let network = requirements.get("network").and_then(Value::as_str).unwrap_or_default().to_string();
    let body = json!({ "x402Version": 2, "paymentPayload": voucher_only(payment), "paymentRequirements": requirements });
    let answer = facilitator_json(config, &**p, Endpoint::Verify, &body).await.map_err(|f| unavailable::<P>(&identity, f, false))?;
    if answer.json.get("isValid").and_then(Value::as_bool) != Some(true) {
        return Err(Learnt::Invalid(answer.json.get("invalidReason").and_then(Value::as_str).unwrap_or("invalid_payload").to_string()));
    }
    let extra = answer.json.get("extra").cloned().unwrap_or(Value::Null);
    sync(&**p, shard, channel_id, config_wire, &network, &extra, deposit).await.map_err(|e| Learnt::Refusal(Refusal::LedgerUnavailable(e).json(P::body)))?;
    Ok(None)
}

/// A deposit: `/verify`, then `/settle` (the payer's tokens into its escrow channel), the
/// channel's new figures written to the shard with the deposit remembered. A deposit the
/// facilitator refuses whose voucher the escrow already covers (a deposit whose earlier
/// settlement answer was lost) is learnt as a voucher. `Ok`: the `/settle` answer.
async fn settle_deposit<P: Platform>(cx: Paying<'_, P>, payment: &BatchSettlementPayment, v: &VerifiedVoucher, shard: &ChannelShard, channel_id: &str, config_wire: &crate::x402::channel::ChannelConfigWire) -> Result<Option<Value>, Learnt<P::Body>> {
    let Paying { config, p, route, .. } = cx;
    let identity = identity_of(payment, channel_id);
    let requirements = matching_offer(route, &payment.accepted).map(|o| o.requirements_json.clone()).unwrap_or(Value::Null);
    let network = requirements.get("network").and_then(Value::as_str).unwrap_or_default().to_string();
    let body = json!({ "x402Version": 2, "paymentPayload": payment.raw, "paymentRequirements": requirements });
    let hash = deposit_hash(&payment.payload);
    let verified = facilitator_json(config, &**p, Endpoint::Verify, &body).await.map_err(|f| unavailable::<P>(&identity, f, false))?;
    if verified.json.get("isValid").and_then(Value::as_bool) != Some(true) {
        // Maybe deposited already: the voucher alone, against the escrow as it is.
        return match learn(cx, payment, shard, channel_id, config_wire, hash).await {
            Ok(_) => Ok(None),
            Err(_) => Err(Learnt::Invalid(verified.json.get("invalidReason").and_then(Value::as_str).unwrap_or("invalid_payload").to_string())),
        };
    }
    let settled = facilitator_json(config, &**p, Endpoint::Settle, &body).await.map_err(|f| unavailable::<P>(&identity, f, true))?;
    if settled.json.get("success").and_then(Value::as_bool) != Some(true) {
        let mut res = json_response(StatusCode::PAYMENT_REQUIRED, &json!({ "error": settled.json.get("errorReason").cloned().unwrap_or(json!("deposit_refused")), "message": "the facilitator refused the deposit; nothing was charged" }), P::body);
        set_header(res.headers_mut(), PAYMENT_RESPONSE, &encode_header(&settled.json));
        return Err(Learnt::Refusal(res));
    }
    let state = settled.json.get("extra").and_then(|e| e.get("channelState")).cloned().unwrap_or(Value::Null);
    p.log(&format!("x402: deposit of {} into channel {channel_id} settled ({})", v.deposit_amount.unwrap_or(0), settled.json.get("transaction").and_then(Value::as_str).unwrap_or("")));
    sync(&**p, shard, channel_id, config_wire, &network, &state, hash).await.map_err(|e| Learnt::Refusal(Refusal::LedgerUnavailable(e).json(P::body)))?;
    Ok(Some(settled.json))
}
