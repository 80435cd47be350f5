//! The payment flow of a priced route ([`priced`]): passes and sign-in first, then the payment
//! header decoded and verified locally, the payer's rate limit, the reservation in the ledger,
//! `/verify` when needed, the reconciliation of an earlier send whose outcome is unknown, and the
//! hand-over to settlement ([`super::settle`]). It decodes headers only through `crate::x402`
//! and verifies only through `crate::x402::exact` and the facilitator client; it never sends `/settle`
//! itself.

use std::rc::Rc;

use http::{Request, Response, StatusCode};
use serde::Serialize;
use serde_json::Value;

use crate::config::{Config, Route, SettleOrder, VerifyPolicy};
use crate::evidence::{Evidence, Question};
use crate::evm::{hex_0x, hex_lower, keccak256};
use crate::x402::exact::{verify_exact, Verified};
use crate::x402::upto::verify_upto;
use super::facilitator_client::{Endpoint, call_facilitator, upstream_status};
use crate::facilitator::{classify_verify, VerifyOutcome};
use crate::ledger::{AuthorizationKey, Finish, Finished, Outcome, PayerShard, Reservation, Reserve, Transport, LEASE_MARGIN_SECONDS};
use crate::refusal::Invalid;
use crate::telemetry::{DecisionOutcome, Trace};
use crate::x402::{decode_payment_signature, decode_x_payment, PaymentPayload, SettleResponse, PAYMENT_SIGNATURE, X402_VERSION, X_PAYMENT};

use super::challenge::Challenger;
use super::context::{attach, Paid};
use super::limits::{challenge_key, failed_key, rate_limit};
use super::passes::{admit_on_pass, mint_pass, Admission};
use super::platform::Platform;
use super::chain::chain_evidence;
use super::settle::{Delivery, Pending, deliver_settled, known_paid, settle_after, settle_before, upto_amount, with_amount};
use super::refusal::{refuse, Limit, Refusal};
use super::{cold, header_str};

/// Most other authorizations of one payer that may be in flight for the `auto` verify policy to
/// skip `/verify`. It bounds the origin work a payer in good standing can get for authorizations
/// that then fail to settle: at most this many concurrent ones before the first refusal turns the
/// payer's standing bad (after which every request is verified first).
pub const MAX_UNVERIFIED_IN_FLIGHT: u32 = 16;

/// The identity of a payment, as answers that name it show it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct PaymentIdentity {
    pub(super) payer: String,
    pub(super) nonce: String,
    pub(super) network: String,
    pub(super) asset: String,
    pub(super) amount: String,
}

/// A request's hold on one authorization in the ledger.
#[derive(Debug, Clone)]
pub(super) struct Ticket {
    pub(super) shard: PayerShard,
    pub(super) key: String,
    pub(super) holder: String,
}

impl Ticket {
    pub(super) fn finish(&self, outcome: Outcome) -> Finish {
        Finish { key: self.key.clone(), holder: self.holder.clone(), outcome }
    }
}

/// Ends a request's hold (the lease runs out if this fails). `true` when the ledger recorded it:
/// `false` also when the lease had run out and another request may hold the authorization now.
pub(super) async fn finish<P: Platform>(p: &P, ticket: &Ticket, outcome: Outcome) -> bool {
    match p.call(&ticket.shard, ticket.finish(outcome)).await {
        Ok(Finished::Done) => true,
        Ok(other @ (Finished::DuplicateTransaction | Finished::LostLease | Finished::NotMarked)) => {
            p.log(&format!("x402: ledger finish for {} answered {other:?}", ticket.key));
            false
        }
        Err(e) => {
            p.log(&format!("x402: ledger finish for {} failed: {e}; its lease will run out", ticket.key));
            false
        }
    }
}

/// Ends a payment's hold before settlement (nothing charged) and records why in its decision.
pub(super) async fn release<P: Platform>(p: &P, pending: &Pending, outcome: DecisionOutcome, reason: Option<&str>) {
    finish(p, &pending.ticket, Outcome::Release).await;
    pending.trace.outcome(outcome, reason);
}

/// What the payment flow of one priced request works with besides the request itself.
pub(super) struct Paying<'a, P> {
    pub(super) config: &'a Rc<Config>,
    pub(super) p: &'a Rc<P>,
    pub(super) route: &'a Route,
    /// The canonical path.
    pub(super) canonical: &'a str,
    /// The key the client is limited under ([`super::client_limit_key`]).
    pub(super) client_ip: &'a str,
    /// The request's decision.
    pub(super) trace: &'a Rc<Trace>,
}

impl<P> Clone for Paying<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P> Copy for Paying<'_, P> {}

/// A payment as `/verify` is asked about it: the payload, the requirement in the payload's own
/// x402 version, and the identity answers name it by.
#[derive(Clone, Copy)]
pub(super) struct Claim<'a> {
    pub(super) payment: &'a PaymentPayload,
    pub(super) requirements: &'a Value,
    pub(super) identity: &'a PaymentIdentity,
}

/// The payment flow of a priced route.
pub(super) async fn priced<P: Platform>(cx: Paying<'_, P>, req: Request<P::Body>) -> Response<P::Body> {
    let Paying { config, p, route, canonical, client_ip, trace } = cx;
    let has_payment = req.headers().contains_key(PAYMENT_SIGNATURE) || req.headers().contains_key(X_PAYMENT);
    if has_payment && route.rate_limits.failed.is_some() && p.isolate().blocked.is_blocked(&failed_key(route, client_ip), p.now()) {
        return refuse(&**p, trace, Refusal::RateLimited(Limit::FailedPayments));
    }
    let (req, pass_refusal) = match admit_on_pass(cx, req, has_payment).await {
        Admission::Served(res) => return res,
        Admission::NotAdmitted { req, refusal } => (req, refusal),
    };
    let state = p.isolate().derived.of(config);
    let challenger = Challenger { config, state, route, canonical, method: req.method().clone(), resource_url: req.uri().to_string() };
    let resource_url = &challenger.resource_url;
    let (header, version) = match (header_str(req.headers(), PAYMENT_SIGNATURE), header_str(req.headers(), X_PAYMENT)) {
        (Some(h), _) => (h, X402_VERSION),
        (None, Some(h)) => (h, 1),
        (None, None) => {
            if let Some(binding) = &route.rate_limits.challenge {
                if !rate_limit(&**p, binding, &challenge_key(route, client_ip)).await {
                    return refuse(&**p, trace, Refusal::RateLimited(Limit::Challenges));
                }
            }
            return refuse(&**p, trace, Refusal::Unpaid { challenger: &challenger, pass: pass_refusal });
        }
    };
    // A payment channel's voucher (x402 `batch-settlement`) has a flow of its own.
    if version == X402_VERSION && route.accepts.iter().any(|o| o.requirements.scheme == crate::x402::channel::SCHEME) {
        match crate::x402::channel::decode_batch_payment(header) {
            Ok(payment) => return cold(super::channel::pay(cx, req, payment, &challenger)).await,
            Err(e) if e.reason == crate::x402::channel::reason::SCHEME => {}
            Err(why) => {
                p.log(&format!("x402: rejected payment header: {why}"));
                return refuse(&**p, trace, Refusal::Payment { challenger: &challenger, why });
            }
        }
    }
    let decoded = if version == 1 { decode_x_payment(header) } else { decode_payment_signature(header) };
    let payment = match decoded {
        Ok(pp) => pp,
        Err(e) => {
            p.log(&format!("x402: rejected payment header: {e}"));
            return refuse(&**p, trace, Refusal::Payment { challenger: &challenger, why: Invalid::new(e.reason(), e.to_string()) });
        }
    };
    let now = p.now();
    // An `upto` payment (a Permit2 authorization of a maximum) is timed and keyed as an `exact`
    // one: its deadline is its validBefore, its Permit2 nonce its nonce.
    let checked = if payment.upto().is_some() {
        verify_upto(&route.accepts, &payment, now, config.min_validity_seconds()).map(|v| Verified {
            offer: v.offer,
            payer: v.payer,
            nonce: v.nonce32,
            valid_before: v.deadline,
            signature_checked: v.signature_checked,
            late: v.late,
            verify_first: v.gas_sponsored,
        })
    } else {
        verify_exact(&route.accepts, &payment, now, config.min_validity_seconds())
    };
    let verified = match checked {
        Ok(v) => v,
        Err(inv) => {
            p.log(&format!("x402: rejected payment: {inv}"));
            return refuse(&**p, trace, Refusal::Payment { challenger: &challenger, why: inv });
        }
    };
    let offer = verified.offer;
    let upto = Upto::of(offer);
    // The requirement in the payment's own protocol version, for /verify and /settle.
    let requirements = if version == 1 {
        let v1 = offer.requirements_v1(resource_url, route.description.as_deref(), route.mime_type.as_deref());
        serde_json::to_value(v1).unwrap_or(Value::Null)
    } else {
        offer.requirements_json.clone()
    };
    trace.payer(&verified.payer.to_checksum());
    trace.price(&offer.requirements.amount, &offer.requirements.asset, &offer.requirements.network);
    if config.denylist.contains(&verified.payer) {
        p.log(&format!("x402: denied payer {}", verified.payer.to_checksum()));
        return refuse(&**p, trace, Refusal::Payment { challenger: &challenger, why: payer_denied() });
    }
    let identity = PaymentIdentity {
        payer: verified.payer.to_checksum(),
        nonce: hex_0x(&verified.nonce),
        network: offer.requirements.network.clone(),
        asset: offer.requirements.asset.clone(),
        amount: offer.requirements.amount.clone(),
    };

    // A signature this paywall could not check (not 65 bytes: a smart wallet's) proves nothing
    // about `from` yet: the facilitator verifies it before it counts against the claimed payer's
    // limits, reserves in that payer's shard or changes its standing. A late one cannot be new:
    // only the ledger's record of it (same signature bytes) can make it servable.
    let verified_remotely = !verified.signature_checked && verified.late.is_none();
    if verified_remotely {
        if let Some(refused) = cold(verify_remotely(cx, Claim { payment: &payment, requirements: &requirements, identity: &identity }, &challenger, None)).await {
            return refused;
        }
    }

    if let Some(binding) = &route.rate_limits.paid {
        if !rate_limit(&**p, binding, &format!("paid:{}:{}", route.key, identity.payer)).await {
            return refuse(&**p, trace, Refusal::RateLimited(Limit::Payer));
        }
    }

    // Reserve the authorization: one request at a time, and never twice once delivered. A late
    // authorization only looks for its record: the retry of an unknown outcome or of an
    // undelivered settlement is honoured until the record is pruned, never met with a fresh
    // challenge.
    let holder = match p.random32() {
        Ok(r) => hex_lower(&r[..16]),
        Err(e) => return refuse(&**p, trace, Refusal::LedgerUnavailable(format!("no randomness for the ledger lease: {e}"))),
    };
    let ticket = Ticket {
        shard: PayerShard::of(&verified.payer),
        key: authorization_key(offer, &verified),
        holder,
    };
    // Every path below that forwards this request does so for this payment.
    let mut req = req;
    let paid = Paid { payer: &identity.payer, authorization: &ticket.key, requirements: &offer.requirements, version: payment.version };
    attach(config, &mut req, route, canonical, paid);
    let reserve = Reserve {
        key: ticket.key.clone(),
        holder: ticket.holder.clone(),
        route: route.key.clone(),
        resource: canonical.to_string(),
        signature: hex_lower(&keccak256(payment.payload.signature().to_ascii_lowercase().as_bytes())),
        valid_before: verified.valid_before,
        lease_seconds: config.origin_timeout_seconds + 2 * config.facilitator_timeout_seconds + LEASE_MARGIN_SECONDS,
        create: verified.late.is_none(),
    };
    let (prior_sent, prior_transaction, prior_amount, lapsed, good_standing) = match p.call(&ticket.shard, reserve).await {
        Ok(Reservation::Reserved { prior_sent, prior_transaction, lapsed, standing, others_in_flight, prior_amount }) => {
            (prior_sent, prior_transaction, prior_amount, lapsed, standing.is_good(now, config.good_standing_seconds) && others_in_flight < MAX_UNVERIFIED_IN_FLIGHT)
        }
        Ok(Reservation::InFlight) => return refuse(&**p, trace, Refusal::InFlight(&identity)),
        Ok(Reservation::Spent { transaction }) => {
            let why = Invalid::new("invalid_transaction_state", format!("this authorization was already settled (transaction {transaction}) and answered by the origin (delivered, or not idempotent and already run once); sign a new one"));
            return refuse(&**p, trace, Refusal::Payment { challenger: &challenger, why });
        }
        Ok(Reservation::Denied) => {
            p.log(&format!("x402: denied payer {}", identity.payer));
            return refuse(&**p, trace, Refusal::Payment { challenger: &challenger, why: payer_denied() });
        }
        Ok(Reservation::NotFound) => {
            let late = verified.late.unwrap_or(Invalid::new("invalid_exact_evm_payload_authorization_valid_before", "authorization expires too soon"));
            p.log(&format!("x402: rejected payment: {late}"));
            return refuse(&**p, trace, Refusal::Payment { challenger: &challenger, why: late });
        }
        Ok(Reservation::Mismatch { resource: Some(resource) }) => return refuse(&**p, trace, Refusal::OtherResource { identity: &identity, resource }),
        Ok(Reservation::Mismatch { resource: None }) => {
            let why = Invalid::new("invalid_exact_evm_payload_signature", "this paywall already holds this authorization (payer and nonce) with another signature");
            return refuse(&**p, trace, Refusal::Payment { challenger: &challenger, why });
        }
        Ok(Reservation::Redeliver { transaction, network, amount }) => {
            // A metered payment's redelivery names the amount it settled, as its first answer did.
            let amount = amount.and_then(|a| a.parse::<ruint::aliases::U256>().ok());
            let settled = with_amount(known_paid(&identity.payer, transaction, network), amount);
            p.log(&format!("x402: redelivering {} for {} nonce {}", route.key, identity.payer, identity.nonce));
            trace.outcome(DecisionOutcome::Paid, Some("redelivered"));
            trace.transaction(&settled.transaction);
            // The payment bought a pass that never reached the payer: it goes with the redelivery.
            let resell = route.pass.as_ref().and_then(|_| mint_pass(config, &**p, route)).map(|m| (route, m));
            return cold(deliver_settled(config, p, req, canonical, Delivery { ticket: &ticket, version: payment.version, settled, sells: resell }, trace)).await;
        }
        Err(e) => return refuse(&**p, trace, Refusal::LedgerUnavailable(e)),
    };
    if let Some(late) = verified.late.filter(|_| !prior_sent) {
        // A record that was never sent (its holder died before settling): nothing was charged,
        // and it is too late for a new settlement.
        finish(&**p, &ticket, Outcome::Release).await;
        return refuse(&**p, trace, Refusal::Payment { challenger: &challenger, why: late });
    }

    // Assurance before the origin runs. A reservation whose earlier holder died unsent is
    // verified again: its nonce may have been burned on chain meanwhile. A payment carrying an
    // EIP-2612 permit is verified whatever the route's policy: only the chain can check the
    // permit, and the settlement would submit it without asking.
    let needs_verify = !prior_sent
        && !verified_remotely
        && (!verified.signature_checked
            || verified.verify_first
            || lapsed
            || match route.verify {
                VerifyPolicy::Always => true,
                VerifyPolicy::Local => false,
                VerifyPolicy::Auto => !good_standing,
            });
    if needs_verify {
        if let Some(refused) = cold(verify_remotely(cx, Claim { payment: &payment, requirements: &requirements, identity: &identity }, &challenger, Some(&ticket))).await {
            return refused;
        }
    }

    // A repeated `upto` settlement asks for the amount of the first send, whatever the origin
    // answers this time.
    let mut requirements = requirements;
    let mut upto = upto;
    if let (true, Some(u)) = (prior_sent, upto.as_mut()) {
        let Some(amount) = prior_amount.as_deref().and_then(crate::evm::parse_uint256) else {
            finish(&**p, &ticket, Outcome::Release).await;
            let detail = "an earlier settlement of this metered payment was sent, but its amount is not on record".to_string();
            return refuse(&**p, trace, Refusal::UnknownOutcome { identity: &identity, status: StatusCode::BAD_GATEWAY, detail });
        };
        u.amount = Some(amount);
        requirements["amount"] = Value::String(amount.to_string());
    }
    let sells = route.pass.is_some().then_some(route);
    let pass = sells.and_then(|r| mint_pass(config, &**p, r));
    let pending = Pending {
        pass: pass.clone(),
        config: Rc::clone(config),
        ticket,
        payment,
        requirements,
        networks: [Some(offer.requirements.network.clone()), offer.v1_network.map(str::to_string)].into_iter().flatten().collect(),
        // A metered payment pays the amount its settlement asks for: the one on record for a
        // retry, or the measured one (set by the settlement once known).
        question: Question { asset: offer.asset, payer: verified.payer, pay_to: offer.pay_to, amount: upto.as_ref().and_then(|u| u.amount).unwrap_or(offer.amount), nonce: verified.nonce, permit2: upto.is_some() },
        upto,
        valid_before: verified.valid_before,
        identity,
        prior_sent,
        prior_transaction,
        route_key: route.key.clone(),
        trace: Rc::clone(trace),
    };
    // An earlier send whose outcome is unknown: reconcile before the origin runs again, and
    // settle (again) before calling it, so the origin runs only once the payment is established.
    // That needs the facilitator's own slack and time limit, not the origin's.
    if prior_sent {
        let too_late = verified.valid_before < now.saturating_add(crate::x402::exact::VALID_BEFORE_SLACK_SECONDS + config.facilitator_timeout_seconds);
        match cold(reconcile_before_origin(p, &pending, too_late)).await {
            Reconciled::Proceed => {}
            Reconciled::Paid(settled) => return cold(deliver_reconciled(cx, req, &pending, settled)).await,
            Reconciled::Answer(res) => return res,
        }
    }
    match if prior_sent { SettleOrder::Before } else { route.settle } {
        SettleOrder::After => cold(settle_after(config, p, route, req, canonical, pending)).await,
        SettleOrder::Before => cold(settle_before(config, p, req, canonical, pending, sells.zip(pass))).await,
    }
}

/// Serves an earlier send the chain shows paid (reconciled before the origin runs again): records
/// it settled and undelivered, then delivers it ([`deliver_settled`]); a ledger that cannot record
/// it leaves the outcome unknown to the client, for a retry that can.
async fn deliver_reconciled<P: Platform>(cx: Paying<'_, P>, req: Request<P::Body>, pending: &Pending, settled: SettleResponse) -> Response<P::Body> {
    let Paying { config, p, route, canonical, trace, .. } = cx;
    let sells = route.pass.is_some().then_some(route).zip(pending.pass.clone());
    let version = pending.payment.version;
    let hold = config.origin_timeout_seconds + LEASE_MARGIN_SECONDS;
    let outcome = Outcome::Settled {
        transaction: settled.transaction.clone(),
        network: settled.network.clone(),
        delivered: false,
        hold_seconds: hold,
        pass: pending.pass.as_ref().map(|m| (m.id.clone(), m.expires_at)),
    };
    match p.call(&pending.ticket.shard, pending.ticket.finish(outcome)).await {
        Ok(Finished::Done) => {
            trace.outcome(DecisionOutcome::Paid, Some("reconciled"));
            trace.transaction(&settled.transaction);
            cold(deliver_settled(config, p, req, canonical, Delivery { ticket: &pending.ticket, version, settled, sells }, trace)).await
        }
        // Paid on chain, but not recorded: the content waits for a retry that can record it.
        other => {
            let why = match other {
                Ok(reply) => format!("answered {reply:?}"),
                Err(e) => format!("failed: {e}"),
            };
            p.log(&format!("x402: ledger {why} to a reconciled settlement of {}", pending.ticket.key));
            // Unknown to the client; the decision names the ledger as the cause.
            trace.outcome(DecisionOutcome::UnknownOutcome, Some("ledger_unavailable"));
            let detail = "the chain shows this payment paid, but the payment ledger could not record it".to_string();
            Refusal::UnknownOutcome { identity: &pending.identity, status: StatusCode::BAD_GATEWAY, detail }.render(&**p)
        }
    }
}

/// `/verify` through the facilitators. `None`: valid, go on; otherwise the answer. `held`: the
/// reservation this request holds, ended as the answer says (a refusal turns the payer's
/// standing bad; "could not verify" releases it, and says "nothing was charged" only if this
/// request still held it). Without one (a signature not checkable here, verified before anything
/// is keyed by its claimed payer) a refusal counts only as a failed attempt of the client.
pub(super) async fn verify_remotely<P: Platform>(cx: Paying<'_, P>, claim: Claim<'_>, challenger: &Challenger<'_>, held: Option<&Ticket>) -> Option<Response<P::Body>> {
    let Paying { config, p, trace, .. } = cx;
    let Claim { payment, requirements, identity } = claim;
    let call = call_facilitator(config, &**p, Endpoint::Verify, payment, requirements, classify_verify, |o| matches!(o, VerifyOutcome::Unknown { .. })).await;
    trace.facilitator_ms(call.millis);
    match call.outcome {
        VerifyOutcome::Valid => None,
        VerifyOutcome::Invalid { reason } => {
            if let Some(ticket) = held {
                finish(&**p, ticket, Outcome::Refused).await;
            }
            let unchecked = if held.is_none() { " (an unchecked signature; nothing reserved)" } else { "" };
            p.log(&format!("x402: verify refused {} nonce {}{unchecked}: {reason}", identity.payer, identity.nonce));
            Some(refuse(&**p, trace, Refusal::VerifyInvalid { challenger, reason }))
        }
        VerifyOutcome::Unknown { timed_out, detail } => {
            let released = match held {
                Some(ticket) => finish(&**p, ticket, Outcome::Release).await,
                None => true,
            };
            p.log(&format!("x402: verify failed: {detail}"));
            Some(refuse(&**p, trace, Refusal::VerifyUnavailable { identity, timed_out, detail, hold_lost: !released }))
        }
    }
}

/// Seconds past `validBefore` after which a chain that shows an authorization unused is taken as
/// final (blocks are stamped with their own time, which may trail this clock).
pub(super) const EXPIRED_MARGIN_SECONDS: u64 = 30;

/// What reconciling an earlier send decided before the origin runs again.
pub(super) enum Reconciled<B> {
    /// Nothing known against settling again: go on as for a new payment (settling again is
    /// safe: the token executes an authorization at most once).
    Proceed,
    /// The chain shows the earlier send paid: serve it without settling again.
    Paid(SettleResponse),
    /// Answered here (refused with evidence, or still unknown).
    Answer(Response<B>),
}

/// Reconciles an authorization this ledger sent to `/settle` before (outcome unknown). With
/// `RPC_URL`, the chain decides: paid → served; nonce used by another transaction → refused;
/// unused → settled again, unless it is too late for that. Without it, one too close to its
/// `validBefore` for the facilitator (`late`) cannot be settled again and stays unknown (no
/// origin call); otherwise it is settled again and "nonce already used" is taken as this
/// ledger's own earlier send.
pub(super) async fn reconcile_before_origin<P: Platform>(p: &Rc<P>, s: &Pending, late: bool) -> Reconciled<P::Body> {
    let keep = |detail: &str, timed_out: bool| {
        refuse(&**p, &s.trace, Refusal::UnknownOutcome { identity: &s.identity, status: upstream_status(timed_out), detail: detail.to_string() })
    };
    let Some(rpc_url) = super::settle::rpc_url_for(s) else {
        if late {
            finish(&**p, &s.ticket, Outcome::Release).await;
            return Reconciled::Answer(keep("an earlier settlement of this payment was sent and its outcome is unknown; it is too close to its validBefore to settle again", false));
        }
        return Reconciled::Proceed;
    };
    match chain_evidence(&**p, rpc_url, &s.question, s.prior_transaction.as_deref(), s.config.facilitator_timeout_seconds).await {
        Evidence::Paid { transaction } => {
            p.log(&format!("x402: reconciled {} nonce {} from the chain: paid in {transaction}", s.identity.payer, s.identity.nonce));
            let network = s.networks.first().cloned().unwrap_or_default();
            Reconciled::Paid(with_amount(known_paid(&s.identity.payer, transaction, network), upto_amount(s)))
        }
        Evidence::UsedElsewhere { transaction } => {
            finish(&**p, &s.ticket, Outcome::Refused).await;
            Reconciled::Answer(refuse(&**p, &s.trace, Refusal::NonceUsedElsewhere { identity: &s.identity, transaction, version: s.payment.version }))
        }
        Evidence::NotUsed if !late => Reconciled::Proceed,
        // Unused well past validBefore: the token will refuse it from now on, so nothing of it
        // can move any more. Nothing was charged, and that can now be said.
        Evidence::NotUsed if p.now() > s.valid_before.saturating_add(EXPIRED_MARGIN_SECONDS) => {
            finish(&**p, &s.ticket, Outcome::Refused).await;
            Reconciled::Answer(refuse(&**p, &s.trace, Refusal::Expired(&s.identity)))
        }
        Evidence::NotUsed => {
            finish(&**p, &s.ticket, Outcome::Release).await;
            Reconciled::Answer(keep("an earlier settlement of this payment was sent and has not executed on chain; it is too close to its validBefore to settle again", false))
        }
        Evidence::Unavailable(detail) => {
            p.log(&format!("x402: chain evidence unavailable for {} nonce {}: {detail}", s.identity.payer, s.identity.nonce));
            finish(&**p, &s.ticket, Outcome::Release).await;
            Reconciled::Answer(keep("an earlier settlement of this payment was sent and its outcome could not be read from the chain", true))
        }
    }
}

/// The ledger key of a payment: [`AuthorizationKey::id`]. An EIP-3009 nonce belongs to the
/// token contract (`asset`); a Permit2 (`upto`) nonce belongs to the payer at the Permit2
/// contract, whatever the token (one nonce signed for two tokens executes once), so its key names
/// Permit2 in the asset's place and ends in `/permit2`.
fn authorization_key(offer: &crate::x402::offer::Offer, verified: &Verified<'_>) -> String {
    let permit2 = offer.meter.is_some();
    let asset = if permit2 { crate::x402::permit2::PERMIT2_ADDRESS } else { offer.asset };
    let id = AuthorizationKey { network: offer.requirements.network.clone(), asset, payer: verified.payer, nonce: verified.nonce }.id();
    if permit2 {
        format!("{id}/permit2")
    } else {
        id
    }
}

/// A metered (`upto`) payment's terms, carried to its settlement: how the amount is measured, the
/// authorized maximum (atomic units), the asset's decimals (for a `$` report), and, once known,
/// the amount to settle.
#[derive(Debug, Clone)]
pub(super) struct Upto {
    pub(super) meter: crate::meter::Meter,
    pub(super) maximum: ruint::aliases::U256,
    pub(super) decimals: Option<u8>,
    pub(super) amount: Option<ruint::aliases::U256>,
}

impl Upto {
    /// The terms of `offer` when it is metered (`None` for `exact`), amount not yet measured.
    pub(super) fn of(offer: &crate::x402::offer::Offer) -> Option<Upto> {
        Some(Upto { meter: offer.meter.clone()?, maximum: offer.amount, decimals: offer.decimals, amount: None })
    }
}

/// Why a payment is refused for a denied payer.
pub(super) fn payer_denied() -> Invalid {
    Invalid::new("payer_denied", "this payer is not accepted here")
}
