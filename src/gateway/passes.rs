//! Passes and wallet sign-in: checking a presented pass (isolate cache, KV, its ledger shard),
//! serving a request a pass admits (and refunding a counted use the origin did not serve),
//! minting and selling the pass a payment buys, and `SIGN-IN-WITH-X`. Token formats are
//! `crate::pass`'s and the sign-in proof is `crate::x402::siwx`'s: nothing is parsed here.

use std::rc::Rc;

use http::header::HeaderValue;
use http::{HeaderMap, Request, Response};
use serde_json::{json, Value};

use crate::config::{Config, PassScope, Route};
use crate::evm::Address;
use crate::ledger::{self, PassRefund, PassShard, PassSold, PassUse, PayerShard, Recorded, SignIn as SignInOp, SignedIn, Transport, LEASE_MARGIN_SECONDS};
use crate::refusal::Invalid;
use crate::pass::{self, PassRecord, PASS_EXPIRES_HEADER, PASS_HEADER};
use crate::x402::siwx::{self, SIGN_IN_WITH_X};
use crate::telemetry::{DecisionOutcome, Trace};
use crate::x402::SettleResponse;

use super::forward::{forward, origin_failure};
use super::limits::unpaid_work_allowed;
use super::pay::Paying;
use super::platform::Platform;
use super::refusal::{refuse, Refusal};
use super::{cold, header_str};
use super::set_header;

/// A pass token minted for a payment: token, id (keccak hex) and `expires_at` (Unix seconds),
/// the latest the pass can expire, for the payer's index: the pass's own clock starts when it is
/// sold with the paid response ([`sell_pass`]), at most a reservation's lease after minting.
#[derive(Debug, Clone)]
pub(super) struct MintedPass {
    pub(super) token: String,
    pub(super) id: String,
    pub(super) expires_at: u64,
}

/// Mints the token of the pass `route` sells; `None` (logged) if randomness fails.
pub(super) fn mint_pass<P: Platform>(config: &Config, p: &P, route: &Route) -> Option<MintedPass> {
    let terms = route.pass.as_ref()?;
    let lease = config.origin_timeout_seconds + 2 * config.facilitator_timeout_seconds + LEASE_MARGIN_SECONDS;
    let random = match p.random32() {
        Ok(r) => r,
        Err(e) => {
            p.log(&format!("x402: no pass sold, randomness failed: {e}"));
            return None;
        }
    };
    let token = pass::token_from_random(&random);
    let id = pass::pass_id(&token)?;
    Some(MintedPass { token, id, expires_at: p.now() + terms.ttl_seconds + lease })
}

/// A pass that admitted a request: its id and its record (which it dereferences to).
pub(super) struct AdmittedPass {
    pub(super) id: String,
    pub(super) record: PassRecord,
}

impl std::ops::Deref for AdmittedPass {
    type Target = PassRecord;
    fn deref(&self) -> &PassRecord {
        &self.record
    }
}

/// How a pass check ended.
pub(super) enum PassCheck {
    Admitted(AdmittedPass),
    /// Reason code: `pass_unknown`, `pass_expired`, `pass_revoked`, `pass_out_of_scope`,
    /// `pass_used_up`, `payer_denied`.
    Refused(&'static str),
    /// KV or the pass's ledger shard could not be asked.
    Unavailable(String),
}

pub(super) fn pass_refusal_text(code: &str) -> &'static str {
    match code {
        "pass_used_up" => "this pass has used all the requests it bought",
        "pass_expired" => "this pass has expired",
        "pass_revoked" => "this pass was revoked",
        "pass_out_of_scope" => "this pass is for another route or path",
        "payer_denied" => "this pass's payer is not accepted here",
        "pass_not_checked" => "too many unpaid requests from this address: the pass was not looked up; retry shortly",
        _ => "unknown pass (a pass can take up to 60 s to reach every location after it was bought)",
    }
}

/// Checks a pass token a request presented ([`check_pass`]) without work for tokens nobody holds.
/// A pass id not cached in this isolate is looked up in KV only if it was not found unknown within
/// [`pass::UNKNOWN_SECONDS`] (else `pass_unknown` at once) and the lookup is within the route's
/// `challenge` rate limit for `client` ([`unpaid_work_allowed`]; over it, `pass_not_checked`, and
/// the request goes on as one without a pass). A KV miss is remembered ([`PassCache::mark_unknown`]).
pub(super) async fn check_presented_pass<P: Platform>(config: &Config, p: &P, route: &Route, canonical: &str, id: &str, client: &str) -> PassCheck {
    let now = p.now();
    if !p.passes().holds(id, now) {
        if p.passes().is_unknown(id, now) {
            return PassCheck::Refused("pass_unknown");
        }
        if !unpaid_work_allowed(p, route, client).await {
            return PassCheck::Refused("pass_not_checked");
        }
    }
    let checked = check_pass(config, p, route, canonical, id).await;
    if matches!(checked, PassCheck::Refused("pass_unknown")) {
        p.passes().mark_unknown(id, now);
    }
    checked
}

/// Checks a presented pass token for `route` at `canonical`: its revocation (this isolate's
/// tombstones), the record from this isolate's cache or KV (a record read from KV is followed by
/// a read of its tombstone, `revoked:<id>`, before it is trusted or cached: no KV read for a
/// cached pass, one for an unknown token, two for a pass this isolate has not cached), its
/// expiry and scope, the denylist, and, for a counted pass, one request from its ledger shard
/// (the single writer that keeps the count exact).
pub(super) async fn check_pass<P: Platform>(config: &Config, p: &P, route: &Route, canonical: &str, id: &str) -> PassCheck {
    let id = id.to_string();
    let now = p.now();
    if p.passes().is_revoked(&id, now) {
        return PassCheck::Refused("pass_revoked");
    }
    let record = match p.passes().get(&id, now) {
        Some(r) => r,
        None => {
            let record = match p.kv_get(&pass::kv_key(&id)).await {
                Ok(Some(raw)) => match serde_json::from_str::<PassRecord>(&raw) {
                    Ok(r) => r,
                    Err(_) => return PassCheck::Refused("pass_unknown"),
                },
                Ok(None) => return PassCheck::Refused("pass_unknown"),
                Err(e) => return PassCheck::Unavailable(format!("pass lookup: {e}")),
            };
            // The tombstone, not the record, says whether the pass was revoked: a record written
            // late by the sale cannot undo a revocation.
            match p.kv_get(&pass::tombstone_key(&id)).await {
                Ok(Some(_)) => {
                    p.passes().revoke(&id, record.expires_at, now);
                    return PassCheck::Refused("pass_revoked");
                }
                Ok(None) => {}
                Err(e) => return PassCheck::Unavailable(format!("pass revocation lookup: {e}")),
            }
            p.passes().insert(id.clone(), record.clone(), now);
            record
        }
    };
    if let Err(reason) = record.admits(route, canonical, now) {
        return PassCheck::Refused(reason);
    }
    if Address::parse(&record.payer).is_some_and(|a| config.denylist.contains(&a)) {
        return PassCheck::Refused("payer_denied");
    }
    if let Some(max) = record.max_requests {
        let op = PassUse { max_requests: Some(max), expires_at: record.expires_at };
        match p.call(&PassShard::of(&id), op).await {
            Ok(ledger::Admission::Admitted { .. }) => {}
            Ok(ledger::Admission::Refused { reason }) => return PassCheck::Refused(reason.code()),
            Err(e) => return PassCheck::Unavailable(e),
        }
    }
    PassCheck::Admitted(AdmittedPass { id, record })
}

/// How the pass and sign-in checks left a request.
pub(super) enum Admission<B> {
    /// Answered: served on a pass, or refused because passes could not be checked and there is
    /// no payment to take instead.
    Served(Response<B>),
    /// Not admitted on a pass: the request goes on to payment; `refusal`: why a presented pass or
    /// sign-in did not admit it (the 402 names it).
    NotAdmitted { req: Request<B>, refusal: Option<Invalid> },
}

/// Admits `req` on a live pass for this scope (no payment): a presented pass token, else a wallet
/// sign-in (`SIGN-IN-WITH-X`: the payer who lost the token signs in with the wallet that paid).
/// With `has_payment`, a pass store that cannot be asked is logged and the payment taken instead.
pub(super) async fn admit_on_pass<P: Platform>(cx: Paying<'_, P>, req: Request<P::Body>, has_payment: bool) -> Admission<P::Body> {
    let Paying { config, p, route, canonical, client_ip, trace } = cx;
    let mut pass_refusal: Option<Invalid> = None;
    if let Some(presented) = pass::token_from_request(req.headers()).map(|t| pass::pass_id(&t)) {
        let checked = match presented {
            Some(id) => cold(check_presented_pass(config, &**p, route, canonical, &id, client_ip)).await,
            None => PassCheck::Refused("pass_unknown"),
        };
        match checked {
            PassCheck::Admitted(record) => {
                trace.outcome(DecisionOutcome::Pass, None);
                trace.payer(&record.payer);
                return Admission::Served(cold(serve_on_pass(config, &**p, req, canonical, &record, trace)).await);
            }
            PassCheck::Refused(code) => pass_refusal = Some(Invalid::new(code, pass_refusal_text(code))),
            PassCheck::Unavailable(e) if !has_payment => return Admission::Served(refuse(&**p, trace, Refusal::LedgerUnavailable(e))),
            PassCheck::Unavailable(e) => p.log(&format!("x402: pass check failed ({e}); taking the payment instead")),
        }
    }
    if let (Some(public), Some(proof)) = (config.public_url.as_deref().filter(|_| route.pass.is_some()), header_str(req.headers(), SIGN_IN_WITH_X)) {
        match cold(limited_sign_in(config, &**p, route, canonical, public, proof, client_ip)).await {
            SignIn::Admitted(record) => {
                trace.outcome(DecisionOutcome::Pass, Some("sign_in"));
                trace.payer(&record.payer);
                return Admission::Served(cold(serve_on_pass(config, &**p, req, canonical, &record, trace)).await);
            }
            SignIn::Refused(reason) => pass_refusal = Some(reason),
            SignIn::Unavailable(e) if !has_payment => return Admission::Served(refuse(&**p, trace, Refusal::LedgerUnavailable(e))),
            SignIn::Unavailable(e) => p.log(&format!("x402: sign-in check failed ({e}); taking the payment instead")),
        }
    }

    Admission::NotAdmitted { req, refusal: pass_refusal }
}

/// Forwards a request a pass admitted, with the pass's expiry and `Cache-Control: no-store`.
/// When the origin does not serve it (5xx, unreachable, over its time limit), a counted pass gets
/// the request back ([`PassRefund`]) before the answer leaves.
pub(super) async fn serve_on_pass<P: Platform>(config: &Config, p: &P, req: Request<P::Body>, canonical: &str, pass: &AdmittedPass, trace: &Trace) -> Response<P::Body> {
    match forward(config, p, req, canonical).await {
        Ok(mut res) => {
            trace.origin_status(res.status().as_u16());
            if res.status().is_server_error() {
                refund_pass_use(p, pass).await;
            }
            set_header(res.headers_mut(), PASS_EXPIRES_HEADER, &pass.expires_at.to_string());
            super::not_stored(res.headers_mut());
            res
        }
        Err(e) => {
            refund_pass_use(p, pass).await;
            trace.outcome(DecisionOutcome::OriginError, Some("origin_unreachable"));
            origin_failure::<P>(p, &e, None)
        }
    }
}

/// Gives a counted pass back the request its ledger shard counted for a request the origin did
/// not serve; a failure is logged (the request stays counted).
pub(super) async fn refund_pass_use<P: Platform>(p: &P, pass: &AdmittedPass) {
    if pass.max_requests.is_none() {
        return;
    }
    match p.call(&PassShard::of(&pass.id), PassRefund).await {
        Ok(Recorded::Done) => {}
        Err(e) => p.log(&format!("x402: pass {} refund failed ({e}); the request stays counted", pass.id)),
    }
}

/// How a wallet sign-in ended.
pub(super) enum SignIn {
    Admitted(AdmittedPass),
    Refused(Invalid),
    Unavailable(String),
}

/// The CAIP-2 ids of the route's EVM networks, once each, in offer order: the chains a wallet
/// may sign in on.
pub(super) fn sign_in_chains(route: &Route) -> Vec<String> {
    let mut chains: Vec<String> = Vec::new();
    for network in route.accepts.iter().map(|o| &o.requirements.network).filter(|n| n.starts_with("eip155:")) {
        if !chains.contains(network) {
            chains.push(network.clone());
        }
    }
    chains
}

/// The `sign-in-with-x` extension a route's 402 advertises: only with `PUBLIC_URL` and on
/// routes that sell a pass (signing in reuses a pass), for the route's EVM networks, with a
/// nonce issued for this resource ([`siwx::issue_nonce`]).
pub(super) fn sign_in_extension<P: Platform>(config: &Config, p: &P, route: &Route, canonical: &str) -> Option<Value> {
    let public = config.public_url.as_deref().filter(|_| route.pass.is_some())?;
    let key = config.sign_in_key.as_ref()?;
    let uri = format!("{public}{canonical}");
    let random = p.random32().ok()?;
    let nonce = siwx::issue_nonce(key, &uri, p.now(), [random[0], random[1], random[2], random[3]]);
    Some(json!({ SIGN_IN_WITH_X: siwx::declare(public, &uri, &sign_in_chains(route), &nonce, p.now()) }))
}

/// [`sign_in`] behind the route's `challenge` rate limit for `client` ([`unpaid_work_allowed`]):
/// every attempt counts before anything is decoded, since one reaches the signer's ledger Durable
/// Object; over the limit it is refused (`siwx_rate_limited`) without it.
pub(super) async fn limited_sign_in<P: Platform>(config: &Config, p: &P, route: &Route, canonical: &str, public: &str, header: &str, client: &str) -> SignIn {
    if !unpaid_work_allowed(p, route, client).await {
        return SignIn::Refused(Invalid::new("siwx_rate_limited", "too many unpaid requests from this address; retry shortly"));
    }
    sign_in(config, p, route, canonical, public, header).await
}

/// Verifies a `SIGN-IN-WITH-X` proof and looks for a live pass of the signer's that admits
/// this request: signature and fields bound to this request's `PUBLIC_URL` resource, the
/// route's chains and a nonce issued here ([`siwx::verify`]), the nonce's single use and the
/// payer's passes (its ledger shard), then each pass as [`check_pass`] does.
pub(super) async fn sign_in<P: Platform>(config: &Config, p: &P, route: &Route, canonical: &str, public: &str, header: &str) -> SignIn {
    let Some(key) = config.sign_in_key.as_ref() else { return SignIn::Unavailable("no SIGN_IN_SECRET".into()) };
    let proof = match siwx::decode(header) {
        Ok(proof) => proof,
        Err(r) => return SignIn::Refused(r),
    };
    let now = p.now();
    let (uri, chains) = (format!("{public}{canonical}"), sign_in_chains(route));
    let binding = siwx::Binding { public_origin: public, uri: &uri, chains: &chains, key };
    let (address, nonce_expires_at) = match siwx::verify(&proof, &binding, now) {
        Ok(verified) => verified,
        Err(r) => return SignIn::Refused(r),
    };
    let op = SignInOp { nonce: proof.nonce.clone(), expires_at: nonce_expires_at };
    let passes = match p.call(&PayerShard::of(&address), op).await {
        Ok(SignedIn::Passes { passes }) => passes,
        Ok(SignedIn::NonceUsed) => return SignIn::Refused(Invalid::new("invalid_siwx_nonce", "this sign-in was already used; sign a new challenge")),
        Err(e) => return SignIn::Unavailable(e),
    };
    for id in &passes {
        match check_pass(config, p, route, canonical, id).await {
            PassCheck::Admitted(record) => {
                p.log(&format!("x402: {} signed in with pass {id}", address.to_checksum()));
                return SignIn::Admitted(record);
            }
            PassCheck::Unavailable(e) => return SignIn::Unavailable(e),
            PassCheck::Refused(_) => {}
        }
    }
    SignIn::Refused(Invalid::new("siwx_no_pass", format!("{} holds no live pass for this route", address.to_checksum())))
}

/// Sells the route's pass with a paid response, its clock starting now (the payment settled and
/// the response leaving), the paid request counted as the first of `maxRequests`: caches the
/// minted pass's record in this isolate;
/// after the response (`defer`), so the paid response never waits for them, records the sale in
/// the pass's ledger shard ([`PassSold`]) and writes the record to KV (the payer's ledger
/// shard indexed it in the settlement's own write). Sets `X402-Pass`, `X402-Pass-Expires` and the
/// cookie (its `Path` from [`pass::cookie_path`]: never an attribute injected by the path).
pub(super) fn sell_pass<P: Platform>(p: &Rc<P>, route: &Route, minted: &MintedPass, canonical: &str, settled: &SettleResponse, payer: &str, headers: &mut HeaderMap) {
    let Some(terms) = &route.pass else { return };
    let expires_at = p.now() + terms.ttl_seconds;
    let (scope, scope_value) = PassRecord::scope_fields(&terms.scope, canonical);
    let record = PassRecord {
        payer: payer.to_string(),
        route: route.key.clone(),
        scope,
        scope_value,
        network: settled.network.clone(),
        transaction: settled.transaction.clone(),
        expires_at,
        max_requests: terms.max_requests.map(|n| n.saturating_sub(1)),
        revoked: false,
    };
    let Ok(value) = serde_json::to_string(&record) else { return };
    p.passes().insert(minted.id.clone(), record, p.now());
    let cookie_path = match &terms.scope {
        PassScope::Route => pass::pattern_path(&route.key),
        PassScope::Path => canonical.to_string(),
        PassScope::Group(_) => "/".to_string(),
    };
    set_header(headers, PASS_HEADER, &minted.token);
    set_header(headers, PASS_EXPIRES_HEADER, &expires_at.to_string());
    if let Ok(v) = HeaderValue::from_str(&pass::set_cookie(&minted.token, &cookie_path, terms.ttl_seconds)) {
        headers.append(http::header::SET_COOKIE, v);
    }
    let kv_ttl = terms.ttl_seconds.max(60);
    let id = minted.id.clone();
    let background = Rc::clone(p);
    p.defer(async move {
        // Its ledger shard learns of the sale first, so that a revocation by token finds it
        // wherever it is made, before the record has reached that location's KV. A revocation
        // that came first stays: the shard keeps it, and the tombstone is a key of its own.
        match background.call(&PassShard::of(&id), PassSold { expires_at }).await {
            Ok(Recorded::Done) => {}
            Err(e) => background.log(&format!("x402: pass {id} sale not recorded in its ledger shard ({e})")),
        }
        if let Err(e) = background.kv_put(&pass::kv_key(&id), value, kv_ttl).await {
            background.log(&format!("x402: pass {id} not written to KV ({e}); it works in this isolate only"));
        }
    });
}
