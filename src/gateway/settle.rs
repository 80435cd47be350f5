//! Settlement: the send mark, `/settle` through the facilitator client, what its answer means
//! (with the chain's evidence where `RPC_URL` is set), the ledger record of it, the origin call on
//! either side of it (`settle = "after"` / `"before"`), and the answers for a settlement that did
//! not pay. Facilitator replies are classified in `crate::facilitator`, never here.

use std::rc::Rc;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use ruint::aliases::U256;
use http::{Request, Response, StatusCode};
use serde_json::Value;

use crate::config::{Config, Route};
use crate::evidence::{self, Evidence, Question};
use super::chain::chain_evidence;
use super::facilitator_client::{Endpoint, call_facilitator, upstream_status, with_payer};
use crate::facilitator::{check_settled, classify_settle, is_nonce_used, is_transaction_hash, SettleOutcome, UpstreamError};
use crate::ledger::{Finished, Mark, Marked, Outcome, Transport, LEASE_MARGIN_SECONDS};
use crate::telemetry::{DecisionOutcome, Trace};
use crate::x402::{encode_header, PaymentPayload, SettleResponse, PAYMENT_RESPONSE, X_PAYMENT_RESPONSE};

use super::forward::{ForwardError, OverridesReport, forward, origin_failure};
use super::passes::{MintedPass, sell_pass};
use super::pay::{PaymentIdentity, Ticket, Upto, finish, release};
use super::platform::{Platform, PlatformError, WholeAnswer};
use crate::meter::{capped, json_count, reported_amount, Meter, MeterFault, MAX_METERED_BODY_BYTES};
use super::refusal::{refuse, Refusal};
use super::{cold, is_idempotent, set_header};

/// The lease the send mark renews: every facilitator's `/settle` in turn, then the chain evidence
/// (at most [`evidence::EIP3009_MAX_CALLS`] RPC calls, or [`evidence::PERMIT2_MAX_CALLS`] for a
/// Permit2 payment), each within the facilitator time limit, plus the margin. A holder that
/// reached its mark keeps the authorization until its settlement is decided, so no second
/// request sends it meanwhile.
pub(super) fn settlement_lease_seconds(config: &Config, permit2: bool) -> u64 {
    let evidence_calls = if permit2 { evidence::PERMIT2_MAX_CALLS } else { evidence::EIP3009_MAX_CALLS };
    let calls = config.facilitators.len() as u64 + if config.rpc_url.is_some() { evidence_calls } else { 0 };
    calls.saturating_mul(config.facilitator_timeout_seconds).saturating_add(LEASE_MARGIN_SECONDS)
}

/// Origin first, then settlement (the default order).
pub(super) async fn settle_after<P: Platform>(
    config: &Rc<Config>,
    p: &Rc<P>,
    route: &Route,
    mut req: Request<P::Body>,
    canonical: &str,
    pending: Pending,
) -> Response<P::Body> {
    let rerunnable = is_idempotent(req.method());
    // A body meter holds the payment while it reads the body: the origin's time limit covers it.
    if pending.upto.as_ref().is_some_and(|u| u.meter.reads_body()) {
        req.extensions_mut().insert(WholeAnswer);
    }
    let origin_res = match forward(config, &**p, req, canonical).await {
        Ok(r) => r,
        Err(e) => {
            let reason = if matches!(e, ForwardError::Upstream(UpstreamError::Timeout { .. })) { "origin_timeout" } else { "origin_unreachable" };
            release(&**p, &pending, DecisionOutcome::OriginError, Some(reason)).await;
            return origin_failure::<P>(&**p, &e, None);
        }
    };
    pending.trace.origin_status(origin_res.status().as_u16());
    if origin_res.status().as_u16() >= 400 {
        release(&**p, &pending, DecisionOutcome::OriginError, Some("origin_status")).await;
        return origin_res;
    }
    let (origin_res, pending) = match metered(p, pending, origin_res).await {
        Ok(measured) => measured,
        Err(withheld) => return withheld,
    };
    if p.client_gone() {
        finish(&**p, &pending.ticket, Outcome::Release).await;
        p.log(&format!("x402: client gone before settlement; not charged: {} nonce {}", pending.identity.payer, pending.identity.nonce));
        return refuse(&**p, &pending.trace, Refusal::ClientGone);
    }
    let version = pending.payment.version;
    let identity = pending.identity.clone();
    let pass = pending.pass.clone();
    let decided = p.run_to_completion(settle(Rc::clone(p), pending, SettleMode::DeliverNow { rerunnable })).await;
    match decided {
        Some(Settled::Paid(settled)) => {
            let mut res = origin_res;
            if let Some(pass) = &pass {
                sell_pass(p, route, pass, canonical, &settled, &identity.payer, res.headers_mut());
            }
            let h = res.headers_mut();
            set_header(h, response_header(version), &encode_header(&settled));
            super::not_stored(h);
            res
        }
        other => unsettled_response::<P>(other, &identity, version),
    }
}

/// A metered (`upto`) answer: its amount ([`crate::meter`]) into the settlement's requirement
/// (`Settlement-Overrides` was taken out of the response by `forward`). A fault releases the payment (nothing charged)
/// and withholds the response (502). Not metered: unchanged.
async fn metered<P: Platform>(p: &Rc<P>, mut pending: Pending, res: Response<P::Body>) -> Result<(Response<P::Body>, Pending), Response<P::Body>> {
    let Some(upto) = pending.upto.as_mut() else { return Ok((res, pending)) };
    let (res, measured) = measure(&**p, upto, res).await;
    match measured {
        Ok(amount) => {
            upto.amount = Some(amount);
            pending.question.amount = amount;
            pending.requirements["amount"] = Value::String(amount.to_string());
            pending.trace.settled_amount(&amount.to_string());
            Ok((res, pending))
        }
        Err(fault) => {
            p.log(&format!("x402: {} for {} nonce {}: not settled, response withheld", fault, pending.identity.payer, pending.identity.nonce));
            release(&**p, &pending, DecisionOutcome::OriginError, Some("origin_metering_failed")).await;
            Err(Refusal::Metering { identity: &pending.identity, fault: fault.to_string() }.json(P::body))
        }
    }
}

/// The amount a metered answer costs under `upto`'s meter, at most its maximum, and the answer
/// without `Settlement-Overrides` (a body meter reads the body, bounded, and puts it back).
pub(super) async fn measure<P: Platform>(p: &P, upto: &Upto, res: Response<P::Body>) -> (Response<P::Body>, Result<U256, MeterFault>) {
    let (mut parts, body) = res.into_parts();
    let report = parts.extensions.remove::<OverridesReport>().map(|r| r.0);
    let maximum = upto.maximum;
    let read = |body| async move {
        match p.read_body(body, MAX_METERED_BODY_BYTES).await {
            Ok(bytes) => Ok(bytes),
            Err(PlatformError::TooLarge(_)) => Err(MeterFault::TooLarge),
            Err(e) => Err(MeterFault::Unreadable(e.to_string())),
        }
    };
    let (body, measured) = match &upto.meter {
        Meter::Origin => {
            let amount = match report.as_deref() {
                None | Some([]) => Ok(maximum),
                Some([one]) => match one.to_str() {
                    Ok(h) => reported_amount(Some(h), maximum, upto.decimals),
                    Err(_) => Err(MeterFault::Malformed("not visible ASCII".into())),
                },
                // Two reports are no amount (the Workers runtime would join them with ", ").
                Some(_) => Err(MeterFault::Malformed("sent more than once".into())),
            };
            (body, amount)
        }
        // The bytes that arrived, not the `Content-Length` announced: a body that breaks off or
        // is over the limit is charged nothing, and the client gets what was counted.
        Meter::Bytes { unit } => match read(body).await {
            Ok(b) => {
                let n = b.len();
                // The body goes back as the bytes read: the runtime states their length (the
                // origin's may be of its compressed form).
                parts.headers.remove(CONTENT_LENGTH);
                (P::body(b), Ok(capped(U256::from(n), *unit, maximum)))
            }
            Err(e) => (P::body(Vec::new()), Err(e)),
        },
        Meter::Json { path, unit } => {
            let stream = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
            match read(body).await {
                Ok(b) => {
                    let amount = json_count(&b, path, stream).map(|n| capped(n, *unit, maximum));
                    parts.headers.remove(CONTENT_LENGTH);
                    (P::body(b), amount)
                }
                Err(e) => (P::body(Vec::new()), Err(e)),
            }
        }
    };
    (Response::from_parts(parts, body), measured)
}

/// Settlement first, then the origin (`settle = "before"`).
pub(super) async fn settle_before<P: Platform>(config: &Rc<Config>, p: &Rc<P>, req: Request<P::Body>, canonical: &str, pending: Pending, sells: Option<(&Route, MintedPass)>) -> Response<P::Body> {
    if p.client_gone() {
        finish(&**p, &pending.ticket, Outcome::Release).await;
        return refuse(&**p, &pending.trace, Refusal::ClientGone);
    }
    let trace = Rc::clone(&pending.trace);
    let version = pending.payment.version;
    let ticket = pending.ticket.clone();
    let identity = pending.identity.clone();
    let hold = config.origin_timeout_seconds + LEASE_MARGIN_SECONDS;
    match p.run_to_completion(settle(Rc::clone(p), pending, SettleMode::HoldForOrigin(hold))).await {
        Some(Settled::Paid(settled)) => cold(deliver_settled(config, p, req, canonical, Delivery { ticket: &ticket, version, settled, sells }, &trace)).await,
        other => unsettled_response::<P>(other, &identity, version),
    }
}

/// Calls the origin for an authorization that is already settled (a settle-first route, or a
/// redelivery) and reports to the ledger whether the response reached a connected client. An
/// origin failure leaves the authorization paid and undelivered: retrying the same payment
/// header before `validBefore` calls the origin again without a second charge. `sells`: the
/// route whose pass goes with a successful delivery (a first one, or the redelivery of a payment
/// whose pass never reached the payer), indexed for the payer with the delivery.
pub(super) async fn deliver_settled<P: Platform>(config: &Rc<Config>, p: &Rc<P>, req: Request<P::Body>, canonical: &str, delivery: Delivery<'_>, trace: &Trace) -> Response<P::Body> {
    let Delivery { ticket, version, settled, sells } = delivery;
    let rerunnable = is_idempotent(req.method());
    let mut res = match forward(config, &**p, req, canonical).await {
        Ok(res) => res,
        Err(e) => {
            finish(&**p, ticket, Outcome::Delivered { delivered: false, pass: None }).await;
            trace.outcome(DecisionOutcome::Paid, Some("origin_unreachable"));
            return origin_failure::<P>(&**p, &e, Some((&settled, version)));
        }
    };
    trace.origin_status(res.status().as_u16());
    let ok = res.status().as_u16() < 400;
    // A client gone after the origin answered: retrievable by running the origin again only when
    // that is harmless (an idempotent method); otherwise the origin has run once, as paid.
    let delivered = ok && (!p.client_gone() || !rerunnable);
    let sold = sells.as_ref().filter(|_| ok).map(|(_, m)| (m.id.clone(), m.expires_at));
    finish(&**p, ticket, Outcome::Delivered { delivered, pass: sold }).await;
    if let (Some((route, pass)), true) = (sells, ok) {
        let payer = settled.payer.clone().unwrap_or_default();
        sell_pass(p, route, &pass, canonical, &settled, &payer, res.headers_mut());
    }
    let h = res.headers_mut();
    set_header(h, response_header(version), &encode_header(&settled));
    super::not_stored(h);
    res
}

/// A settled payment whose response is still to be delivered ([`deliver_settled`]): the hold on
/// its authorization, its x402 version (which header carries `PAYMENT-RESPONSE`), the
/// settlement, and the route whose pass goes with a successful delivery.
pub(super) struct Delivery<'r> {
    pub(super) ticket: &'r Ticket,
    pub(super) version: u64,
    pub(super) settled: SettleResponse,
    pub(super) sells: Option<(&'r Route, MintedPass)>,
}

/// The answer for a settlement that did not end in a payment (refused, unknown, a facilitator
/// fault), or that the runtime dropped. Its decision was recorded by [`settle`].
pub(super) fn unsettled_response<P: Platform>(decided: Option<Settled>, identity: &PaymentIdentity, version: u64) -> Response<P::Body> {
    let unknown = |status: StatusCode, detail: String| Refusal::UnknownOutcome { identity, status, detail };
    let refusal = match decided {
        Some(Settled::Paid(_)) => unknown(StatusCode::BAD_GATEWAY, "internal: a paid settlement reached the unsettled answer".into()),
        Some(Settled::Refused(refused)) => Refusal::SettlementRefused { identity, refused, version },
        Some(Settled::UsedElsewhere(transaction)) => Refusal::NonceUsedElsewhere { identity, transaction, version },
        Some(Settled::NotSent(detail)) => Refusal::NotSent { identity, detail },
        Some(Settled::Unknown { timed_out, detail }) => unknown(upstream_status(timed_out), detail),
        Some(Settled::Fault(detail)) => unknown(StatusCode::BAD_GATEWAY, detail),
        None => unknown(StatusCode::BAD_GATEWAY, "the settlement task was cancelled".into()),
    };
    refusal.json(P::body)
}

pub(super) fn response_header(version: u64) -> &'static str {
    if version == 1 {
        X_PAYMENT_RESPONSE
    } else {
        PAYMENT_RESPONSE
    }
}

/// How a settlement reports delivery to the ledger.
#[derive(Debug, Clone, Copy)]
pub(super) enum SettleMode {
    /// Origin already answered: delivered unless the client has gone and running the origin
    /// again is harmless (`rerunnable`: an idempotent method).
    DeliverNow { rerunnable: bool },
    /// Settle first: not delivered yet; keep the lease this long for the origin call.
    HoldForOrigin(u64),
}

/// Everything the settlement of one payment needs, owned, so that it can run to completion
/// after the client has gone.
pub(super) struct Pending {
    pub(super) config: Rc<Config>,
    pub(super) ticket: Ticket,
    pub(super) payment: PaymentPayload,
    pub(super) requirements: Value,
    /// Networks a success answer may name: the offer's CAIP-2 id and its v1 name.
    pub(super) networks: Vec<String>,
    /// The authorization, as the chain evidence asks about it.
    pub(super) question: Question,
    /// `authorization.validBefore`, Unix seconds.
    pub(super) valid_before: u64,
    pub(super) identity: PaymentIdentity,
    /// This ledger sent the authorization to `/settle` before (send mark), outcome unknown.
    pub(super) prior_sent: bool,
    pub(super) prior_transaction: Option<String>,
    pub(super) route_key: String,
    /// The pass this payment sells, minted before settlement so that the settlement's ledger
    /// write also indexes it for the payer.
    pub(super) pass: Option<MintedPass>,
    /// The request's decision, which the settlement completes.
    pub(super) trace: Rc<Trace>,
    /// A metered (`upto`) payment's terms and, once measured, its amount.
    pub(super) upto: Option<Upto>,
}

/// How a settlement ended.
#[derive(Debug)]
pub(super) enum Settled {
    /// On chain (or reconciled: this ledger's earlier attempt had settled it).
    Paid(SettleResponse),
    Refused(SettleResponse),
    Unknown { timed_out: bool, detail: String },
    /// The facilitator answered something that cannot be true (a transaction hash that settled
    /// another authorization).
    Fault(String),
    /// `/settle` was not sent: the send mark could not be written (nothing charged).
    NotSent(String),
    /// The chain shows the nonce used by a transaction that did not pay this requirement.
    UsedElsewhere(Option<String>),
}

/// Writes the send mark, sends `/settle`, decides what its answer means (with the chain's
/// evidence where `RPC_URL` is set), and records that in the ledger.
///
/// "Paid" rests on evidence: the facilitator's checked success, the chain, or (without
/// `RPC_URL`) "nonce already used" for an authorization this ledger marked as sent before. After
/// a send mark, a refusal of a repeated send other than "nonce already used" is unknown, never
/// "nothing was charged".
pub(super) async fn settle<P: Platform>(p: Rc<P>, s: Pending, mode: SettleMode) -> Settled {
    // The send mark, acknowledged before /settle leaves; for a repeated send it is there already,
    // and the call proves this request still holds the authorization and renews its lease.
    let mark = Mark { key: s.ticket.key.clone(), holder: s.ticket.holder.clone(), lease_seconds: settlement_lease_seconds(&s.config, s.question.permit2), amount: upto_amount(&s).map(|a| a.to_string()) };
    let refused = match p.call(&s.ticket.shard, mark).await {
        Ok(Marked::Done) => None,
        Ok(other @ Marked::LostLease) => Some(format!("the ledger answered {other:?} to the send mark")),
        Err(e) => Some(e),
    };
    if let Some(detail) = refused {
        p.log(&format!("x402: not settling {} nonce {}: {detail}", s.identity.payer, s.identity.nonce));
        // It sent nothing: a mark that was applied all the same is taken back (`Outcome::Unsent`).
        let released = finish(&*p, &s.ticket, Outcome::Unsent).await;
        if !released && !s.prior_sent {
            // Once more after the answer: the ledger may be back, and while the mark stands a
            // retry would take it for a send.
            let (p2, ticket) = (Rc::clone(&p), s.ticket.clone());
            p.defer(async move {
                finish(&*p2, &ticket, Outcome::Unsent).await;
            });
        }
        if s.prior_sent || !released {
            s.trace.outcome(DecisionOutcome::UnknownOutcome, Some("ledger_unavailable"));
            let why = if s.prior_sent {
                "an earlier settlement of this payment was sent and its outcome is unknown; this retry could not take it over"
            } else {
                "this request took longer than its hold on the authorization, which another request may have taken and settled"
            };
            return Settled::Unknown { timed_out: false, detail: format!("{why} ({detail})") };
        }
        s.trace.outcome(DecisionOutcome::Unavailable, Some("ledger_unavailable"));
        return Settled::NotSent(detail);
    }
    let networks: Vec<&str> = s.networks.iter().map(String::as_str).collect();
    let id = &s.identity;
    let mut named_transaction = None;
    // A metered answer that costs nothing moves nothing: no transaction, the permit unused (and
    // kept in the ledger, so it never buys a second answer).
    let outcome = if upto_amount(&s) == Some(U256::ZERO) {
        let mut zero = known_paid(&id.payer, String::new(), networks_first(&s.networks));
        zero.amount = Some("0".into());
        SettleOutcome::Settled(zero)
    } else {
        let call = call_facilitator(&s.config, &*p, Endpoint::Settle, &s.payment, &s.requirements, classify_settle, |o| {
            matches!(o, SettleOutcome::Unknown { transaction: None, .. })
        })
        .await;
        s.trace.facilitator_ms(call.millis);
        call.outcome
    };
    // An answer that does not settle the question by itself: the chain decides where it can.
    let ask_chain = |p: Rc<P>, transaction: Option<String>, otherwise: Settled| {
        let s = &s;
        async move {
            let Some(rpc_url) = rpc_url_for(s) else { return otherwise };
            match chain_evidence(&*p, rpc_url, &s.question, transaction.as_deref().or(s.prior_transaction.as_deref()), s.config.facilitator_timeout_seconds).await {
                Evidence::Paid { transaction } => Settled::Paid(with_amount(known_paid(&s.identity.payer, transaction, networks_first(&s.networks)), upto_amount(s))),
                Evidence::UsedElsewhere { transaction } => Settled::UsedElsewhere(transaction),
                Evidence::NotUsed | Evidence::Unavailable(_) => otherwise,
            }
        }
    };
    // A metered settlement's amount, as its requirement asked for it (atomic units).
    let asked = upto_amount(&s).map(|a| a.to_string());
    let decided = match outcome {
        SettleOutcome::Settled(r) if r.transaction.is_empty() && upto_amount(&s) == Some(U256::ZERO) => Settled::Paid(r),
        SettleOutcome::Settled(r) => match check_settled(&r, &networks, &id.payer, asked.as_deref()) {
            Ok(()) => Settled::Paid(with_amount(with_payer(r, &id.payer), upto_amount(&s))),
            Err(detail) => {
                named_transaction = is_transaction_hash(&r.transaction).then(|| r.transaction.clone());
                Settled::Unknown { timed_out: false, detail }
            }
        },
        // This ledger sent the authorization to settlement before and never learned the outcome:
        // "already used" means that attempt went through, as the chain confirms where it can be
        // asked; without RPC_URL this is the stated assumption.
        SettleOutcome::Refused(r) if s.prior_sent && is_nonce_used(r.error_reason.as_deref()) => {
            let network = if r.network.is_empty() { networks_first(&s.networks) } else { r.network };
            let assumed = Settled::Paid(known_paid(&id.payer, s.prior_transaction.clone().unwrap_or_default(), network));
            let detail = "the facilitator says the nonce is already used and the chain does not show this payment".to_string();
            let decided = if rpc_url_for(&s).is_some() { ask_chain(Rc::clone(&p), None, Settled::Unknown { timed_out: false, detail }).await } else { assumed };
            if matches!(decided, Settled::Paid(_)) {
                p.log(&format!("x402: reconciled {} nonce {}: settled by an earlier attempt of this ledger", id.payer, id.nonce));
            }
            decided
        }
        // A repeated send refused for another reason: the earlier send may have paid (and
        // drained the balance it now lacks): unknown unless the chain says otherwise.
        SettleOutcome::Refused(r) if s.prior_sent => {
            let detail = format!("the facilitator refused a repeated settlement ({}) after an earlier send whose outcome is unknown", r.error_reason.as_deref().unwrap_or("no reason"));
            ask_chain(Rc::clone(&p), None, Settled::Unknown { timed_out: false, detail }).await
        }
        // A first send refused: a refusal may follow a broadcast (a transaction that failed after
        // it left), so the chain decides where it can be asked; the record is kept (below).
        SettleOutcome::Refused(r) => ask_chain(Rc::clone(&p), None, Settled::Refused(with_payer(r, &id.payer))).await,
        SettleOutcome::Unknown { timed_out, detail, transaction } => {
            named_transaction = transaction.clone();
            ask_chain(Rc::clone(&p), transaction, Settled::Unknown { timed_out, detail }).await
        }
    };
    let outcome = match &decided {
        Settled::Paid(r) => {
            let (delivered, hold_seconds) = match mode {
                SettleMode::DeliverNow { rerunnable } => (!p.client_gone() || !rerunnable, 0),
                SettleMode::HoldForOrigin(hold) => (false, hold),
            };
            Outcome::Settled {
                transaction: r.transaction.clone(),
                network: r.network.clone(),
                delivered,
                hold_seconds,
                pass: s.pass.as_ref().map(|m| (m.id.clone(), m.expires_at)),
            }
        }
        // Forgotten only when nothing of this authorization can have moved: "nonce already used"
        // before any send of ours succeeded (the facilitator checks it before it broadcasts), or
        // the chain showing the nonce spent by another transaction. Any other refusal after the
        // send mark keeps the record, so a retry can still reconcile it.
        Settled::Refused(r) if is_nonce_used(r.error_reason.as_deref()) && rpc_url_for(&s).is_none() => Outcome::Refused,
        Settled::UsedElsewhere(_) => Outcome::Refused,
        Settled::Refused(_) => Outcome::Unknown { transaction: None, refused: true },
        Settled::Unknown { .. } | Settled::Fault(_) | Settled::NotSent(_) => Outcome::Unknown { transaction: named_transaction, refused: false },
    };
    match &decided {
        Settled::Paid(r) => {
            s.trace.outcome(DecisionOutcome::Paid, None);
            s.trace.transaction(&r.transaction);
        }
        Settled::Refused(r) => s.trace.outcome(DecisionOutcome::Refused, Some(r.error_reason.as_deref().unwrap_or("settlement_failed"))),
        Settled::UsedElsewhere(_) => s.trace.outcome(DecisionOutcome::Refused, Some("invalid_exact_evm_nonce_already_used")),
        Settled::Unknown { .. } | Settled::Fault(_) | Settled::NotSent(_) => s.trace.outcome(DecisionOutcome::UnknownOutcome, Some("settlement_outcome_unknown")),
    }
    match &decided {
        Settled::Paid(r) => {
            let amount = upto_amount(&s).map_or_else(|| id.amount.clone(), |a| a.to_string());
            p.log(&format!("x402: settled {} {amount} from {} tx {}", s.route_key, id.payer, r.transaction))
        }
        Settled::Refused(r) => p.log(&format!("x402: settlement refused for {} nonce {}: {}", id.payer, id.nonce, r.error_reason.as_deref().unwrap_or("no reason"))),
        Settled::UsedElsewhere(tx) => p.log(&format!("x402: settlement of {} nonce {}: the chain shows the nonce used by {tx:?}, which did not pay", id.payer, id.nonce)),
        Settled::Unknown { detail, .. } | Settled::Fault(detail) | Settled::NotSent(detail) => p.log(&format!("x402: settlement outcome unknown for {} nonce {}: {detail}", id.payer, id.nonce)),
    }
    match p.call(&s.ticket.shard, s.ticket.finish(outcome)).await {
        Ok(Finished::Done) => decided,
        Ok(Finished::DuplicateTransaction) => {
            s.trace.outcome(DecisionOutcome::UnknownOutcome, Some("duplicate_transaction"));
            let tx = match &decided {
                Settled::Paid(r) => r.transaction.clone(),
                _ => String::new(),
            };
            Settled::Fault(format!("the facilitator reported transaction {tx}, which this ledger already holds for another authorization"))
        }
        // The settlement itself is done; the record keeps its lease until it runs out and then
        // reads as unknown, which a retry reconciles.
        Ok(other @ (Finished::LostLease | Finished::NotMarked)) => {
            p.log(&format!("x402: ledger did not record the settlement of {} ({other:?})", s.ticket.key));
            decided
        }
        Err(e) => {
            p.log(&format!("x402: ledger did not record the settlement of {}: {e}", s.ticket.key));
            decided
        }
    }
}

/// The success `PAYMENT-RESPONSE` of a payment this paywall knows to be paid without a fresh
/// facilitator success: a redelivery, the chain's evidence, or (without `RPC_URL`) "nonce already
/// used" after its own earlier send.
pub(super) fn known_paid(payer: &str, transaction: String, network: String) -> SettleResponse {
    SettleResponse { success: true, error_reason: None, payer: Some(payer.to_string()), transaction, network, amount: None }
}

/// The amount a metered (`upto`) settlement asks for, once measured.
pub(super) fn upto_amount(s: &Pending) -> Option<U256> {
    s.upto.as_ref().and_then(|u| u.amount)
}

/// A metered settlement's answer names the amount settled (x402 `SettleResponse.amount`).
pub(super) fn with_amount(mut r: SettleResponse, amount: Option<U256>) -> SettleResponse {
    if let (None, Some(a)) = (&r.amount, amount) {
        r.amount = Some(a.to_string());
    }
    r
}

/// `RPC_URL` where the chain can be asked about this payment (an EIP-3009 or a Permit2
/// authorization alike: [`crate::evidence`]).
pub(super) fn rpc_url_for(s: &Pending) -> Option<&str> {
    s.config.rpc_url.as_deref()
}

pub(super) fn networks_first(networks: &[String]) -> String {
    networks.first().cloned().unwrap_or_default()
}
