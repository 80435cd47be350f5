//! Payment channels (x402 `batch-settlement`, docs/channels.md) on the host fakes: a deposit,
//! then vouchers checked locally and served with no facilitator call; replays, concurrent copies,
//! stale and excessive vouchers, other channels, receivers and signers refused before the origin;
//! origin failures not charged; a lost answer redelivered once; claims off the request path.
//! Every test counts origin hits and facilitator calls.

mod common;

use std::rc::Rc;

use common::channel::*;
use common::*;
use serde_json::{json, Value};
use x402_edge_paywall::config::Config;
use x402_edge_paywall::gateway::handle;
use x402_edge_paywall::telemetry::DecisionOutcome;
use x402_edge_paywall::x402::encode_header;

fn cfg_with(extra: Value) -> Rc<Config> {
    channel_config(json!([{ "route": "GET /paid", "accepts": [{ "scheme": "batch-settlement", "price": "$0.01" }, { "price": "$0.01" }] }]), extra)
}

fn cfg() -> Rc<Config> {
    cfg_with(json!({}))
}

fn channel_id(key: u8) -> String {
    channel_id_of(key, false)
}

/// A voucher for `max` on the channel of `key`, signed by `signer`.
fn voucher(key: u8, signer: u8, receiver: &str, max: u128) -> (Value, Value) {
    voucher_of(key, Some(signer), receiver, false, max)
}

fn header(cfg: &Config, payload: Value) -> String {
    channel_header(cfg, 0, payload)
}

fn voucher_header(cfg: &Config, key: u8, max: u128) -> String {
    let (wire, v) = voucher(key, key, PAY_TO, max);
    header(cfg, json!({ "type": "voucher", "channelConfig": wire, "voucher": v }))
}

fn deposit_header(cfg: &Config, key: u8, max: u128, amount: u128, salt: u8) -> String {
    header(cfg, deposit_payload(key, max, amount, salt))
}

fn paid(cfg: &Config, h: String) -> http::Request<Vec<u8>> {
    let _ = cfg;
    request("/paid", &[("payment-signature", h.as_str())])
}

fn verified(key: u8, balance: u128, claimed: u128, withdraw: u64) -> Canned {
    verified_reply(key, false, balance, claimed, withdraw)
}

fn receipt(res: &http::Response<Vec<u8>>) -> Value {
    header_json(res, "payment-response")
}

fn required(res: &http::Response<Vec<u8>>) -> Value {
    header_json(res, "payment-required")
}

/// Opens the channel of `key` with a deposit of `balance` and charges the first voucher.
fn open(cfg: &Rc<Config>, p: &Rc<Fake>, key: u8, balance: u128) {
    p.queue_verify(verified(key, 0, 0, 0));
    p.queue_settle(deposit_settled(key, balance, balance));
    let res = run(cfg, p, paid(cfg, deposit_header(cfg, key, PRICE, balance, 1)));
    assert_eq!(res.status(), 200, "{}", String::from_utf8_lossy(res.body()));
}

#[test]
fn the_challenge_offers_the_channel_with_the_official_extra() {
    let (cfg, p) = (cfg(), start());
    let res = run(&cfg, &p, request("/paid", &[]));
    let offer = &required(&res)["accepts"][0];
    assert_eq!(offer["scheme"], "batch-settlement");
    assert_eq!(offer["amount"], "10000");
    assert_eq!(offer["extra"], json!({ "name": "USDC", "version": "2", "receiverAuthorizer": AUTHORIZER, "withdrawDelay": 900, "minDeposit": "100000" }));
    assert_eq!(required(&res)["accepts"][1]["scheme"], "exact");
}

#[test]
fn a_deposit_opens_the_channel_and_later_vouchers_never_call_the_facilitator() {
    let (cfg, p) = (cfg(), start());
    open(&cfg, &p, 1, 100_000);
    assert_eq!((p.verifies(), p.settles(), p.origin_hits()), (1, 1, 1));
    for n in 2..=10u128 {
        let res = run(&cfg, &p, paid(&cfg, voucher_header(&cfg, 1, n * PRICE)));
        assert_eq!(res.status(), 200);
        let r = receipt(&res);
        assert_eq!((r["success"].as_bool(), r["transaction"].as_str()), (Some(true), Some("")));
        assert_eq!(r["extra"]["chargedAmount"], "10000");
        assert_eq!(r["extra"]["channelState"]["chargedCumulativeAmount"], (n * PRICE).to_string());
        assert_eq!(r["extra"]["channelState"]["balance"], "100000");
    }
    assert_eq!((p.verifies(), p.settles(), p.origin_hits()), (1, 1, 10), "vouchers: no facilitator call");
    // The deposit's answer names its transaction.
}

#[test]
fn the_deposit_answer_carries_its_transaction_and_a_replayed_deposit_is_not_sent_again() {
    let (cfg, p) = (cfg(), start());
    p.queue_verify(verified(1, 0, 0, 0));
    p.queue_settle(deposit_settled(1, 100_000, 100_000));
    let h = deposit_header(&cfg, 1, PRICE, 100_000, 1);
    let res = run(&cfg, &p, paid(&cfg, h.clone()));
    let r = receipt(&res);
    assert_eq!((r["transaction"].as_str(), r["amount"].as_str()), (Some(tx(77).as_str()), Some("100000")));
    assert_eq!(r["extra"]["channelState"]["chargedCumulativeAmount"], "10000");
    let replay = run(&cfg, &p, paid(&cfg, h));
    assert_eq!(replay.status(), 402);
    assert_eq!(required(&replay)["error"], "invalid_batch_settlement_evm_cumulative_amount_mismatch");
    assert_eq!((p.verifies(), p.settles(), p.origin_hits()), (1, 1, 1), "the replayed deposit reached neither the facilitator nor the origin");
}

#[test]
fn a_replayed_voucher_gets_the_corrective_402_and_runs_nothing() {
    let (cfg, p) = (cfg(), start());
    open(&cfg, &p, 1, 100_000);
    let h = voucher_header(&cfg, 1, 2 * PRICE);
    assert_eq!(run(&cfg, &p, paid(&cfg, h.clone())).status(), 200);
    let res = run(&cfg, &p, paid(&cfg, h));
    assert_eq!(res.status(), 402);
    let pr = required(&res);
    assert_eq!(pr["error"], "invalid_batch_settlement_evm_cumulative_amount_mismatch");
    let extra = &pr["accepts"][0]["extra"];
    assert_eq!(extra["channelState"]["chargedCumulativeAmount"], "20000");
    assert_eq!(extra["voucherState"]["signedMaxClaimable"], "20000");
    assert!(pr["accepts"][1]["extra"].get("channelState").is_none(), "only the channel offer carries the state");
    // Behind (stale) and ahead are mismatches too.
    for max in [PRICE, 4 * PRICE] {
        assert_eq!(run(&cfg, &p, paid(&cfg, voucher_header(&cfg, 1, max))).status(), 402);
    }
    assert_eq!((p.verifies(), p.settles(), p.origin_hits()), (1, 1, 2));
}

#[test]
fn concurrent_copies_of_one_voucher_run_the_origin_once() {
    let (cfg, p) = (cfg(), start());
    open(&cfg, &p, 1, 100_000);
    let h = voucher_header(&cfg, 1, 2 * PRICE);
    let res = run_all(&cfg, &p, (0..4).map(|_| paid(&cfg, h.clone())).collect());
    let statuses: Vec<u16> = res.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| [200, 402, 409].contains(s)), "{statuses:?}");
    assert_eq!(p.origin_hits(), 2);
}

#[test]
fn vouchers_beyond_the_deposit_for_another_receiver_or_by_another_signer_are_refused_locally() {
    let (cfg, p) = (cfg(), start());
    open(&cfg, &p, 1, 15_000);
    let beyond = run(&cfg, &p, paid(&cfg, voucher_header(&cfg, 1, 2 * PRICE)));
    assert_eq!(beyond.status(), 402);
    assert!(required(&beyond)["error"].as_str().unwrap().starts_with("invalid_batch_settlement_evm_cumulative_exceeds_balance"));
    let ledger_calls = p.ledger_calls.borrow().len();
    let (wire, v) = voucher(1, 9, PAY_TO, 2 * PRICE);
    let forged = run(&cfg, &p, paid(&cfg, header(&cfg, json!({ "type": "voucher", "channelConfig": wire, "voucher": v }))));
    assert!(required(&forged)["error"].as_str().unwrap().starts_with("invalid_batch_settlement_evm_voucher_signature"));
    let (wire, v) = voucher(1, 1, "0x1111111111111111111111111111111111111111", 2 * PRICE);
    let other = run(&cfg, &p, paid(&cfg, header(&cfg, json!({ "type": "voucher", "channelConfig": wire, "voucher": v }))));
    assert!(required(&other)["error"].as_str().unwrap().starts_with("invalid_batch_settlement_evm_receiver_mismatch"));
    // Another channel's id under this channel's config.
    let (wire, mut v) = voucher(1, 1, PAY_TO, 2 * PRICE);
    v["channelId"] = json!(channel_id(2));
    let swapped = run(&cfg, &p, paid(&cfg, header(&cfg, json!({ "type": "voucher", "channelConfig": wire, "voucher": v }))));
    assert!(required(&swapped)["error"].as_str().unwrap().starts_with("invalid_batch_settlement_evm_channel_id_mismatch"));
    assert_eq!(p.ledger_calls.borrow().len(), ledger_calls, "refused before the ledger");
    assert_eq!((p.verifies(), p.settles(), p.origin_hits()), (1, 1, 1));
}

#[test]
fn an_origin_failure_charges_nothing_and_the_same_voucher_pays_later() {
    let (cfg, p) = (cfg(), start());
    open(&cfg, &p, 1, 100_000);
    let h = voucher_header(&cfg, 1, 2 * PRICE);
    p.origin_status.set(500);
    let failed = run(&cfg, &p, paid(&cfg, h.clone()));
    assert_eq!(failed.status(), 500);
    assert!(failed.headers().get("payment-response").is_none());
    p.origin_status.set(200);
    let res = run(&cfg, &p, paid(&cfg, h));
    assert_eq!(receipt(&res)["extra"]["channelState"]["chargedCumulativeAmount"], "20000");
    assert_eq!(p.origin_hits(), 3);
}

#[test]
fn an_answer_that_never_reached_the_client_is_redelivered_once_without_a_second_charge() {
    let (cfg, p) = (cfg(), start());
    open(&cfg, &p, 1, 100_000);
    let h = voucher_header(&cfg, 1, 2 * PRICE);
    p.gone.set(true);
    run(&cfg, &p, paid(&cfg, h.clone()));
    assert_eq!(p.decisions.borrow().last().map(|d| d.outcome), Some(DecisionOutcome::Paid), "charged though the client was gone");
    p.gone.set(false);
    let again = run(&cfg, &p, paid(&cfg, h.clone()));
    assert_eq!(again.status(), 200);
    assert_eq!(p.decisions.borrow().last().and_then(|d| d.reason.clone()).as_deref(), Some("redelivered"), "a redelivery, not a first charge");
    assert_eq!(receipt(&again)["extra"]["channelState"]["chargedCumulativeAmount"], "20000", "charged once");
    assert_eq!(run(&cfg, &p, paid(&cfg, h)).status(), 402, "once only");
    let next = run(&cfg, &p, paid(&cfg, voucher_header(&cfg, 1, 3 * PRICE)));
    assert_eq!(receipt(&next)["extra"]["channelState"]["chargedCumulativeAmount"], "30000");
    assert_eq!(p.origin_hits(), 4);
}

#[test]
fn a_channel_unknown_to_the_ledger_or_with_old_figures_is_learnt_through_verify() {
    let (cfg, p) = (cfg(), start());
    // Opened elsewhere (or the shard was reset): the escrow says 5 vouchers were claimed.
    p.queue_verify(verified(1, 100_000, 5 * PRICE, 0));
    let res = run(&cfg, &p, paid(&cfg, voucher_header(&cfg, 1, 6 * PRICE)));
    assert_eq!(res.status(), 200, "{}", String::from_utf8_lossy(res.body()));
    assert_eq!(p.verifies(), 1);
    run(&cfg, &p, paid(&cfg, voucher_header(&cfg, 1, 7 * PRICE)));
    assert_eq!(p.verifies(), 1);
    p.now.set(NOW + 301);
    p.queue_verify(verified(1, 100_000, 5 * PRICE, 0));
    assert_eq!(run(&cfg, &p, paid(&cfg, voucher_header(&cfg, 1, 8 * PRICE))).status(), 200);
    assert_eq!((p.verifies(), p.settles(), p.origin_hits()), (2, 0, 3));
}

#[test]
fn a_withdrawal_that_closes_the_claim_window_refuses_vouchers_and_claims_at_once() {
    let (cfg, p) = (cfg(), start());
    open(&cfg, &p, 1, 100_000);
    p.now.set(NOW + 301);
    // The payer asked to withdraw 800 s ago: it completes in 100 s, within the claim window.
    p.queue_verify(verified(1, 100_000, 0, NOW + 301 - 800));
    let res = run(&cfg, &p, paid(&cfg, voucher_header(&cfg, 1, 2 * PRICE)));
    assert_eq!(res.status(), 402);
    assert!(required(&res)["error"].as_str().unwrap().starts_with("invalid_batch_settlement_evm_withdrawal_pending"));
    let kinds: Vec<String> = p.facilitator_calls.borrow().iter().filter(|(e, _)| e == "settle").map(|(_, b)| b["paymentPayload"]["payload"]["type"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(kinds, ["deposit", "claim", "settle"], "what was charged is claimed at once");
    assert_eq!(p.origin_hits(), 1);
}

#[test]
fn claims_run_off_the_request_path_once_due_and_a_failed_claim_is_retried() {
    let (cfg, p) = (cfg_with(json!({ "CHANNEL_CLAIM_VOUCHERS": 3 })), start());
    open(&cfg, &p, 1, 100_000);
    run(&cfg, &p, paid(&cfg, voucher_header(&cfg, 1, 2 * PRICE)));
    assert_eq!(p.settles(), 1, "not due yet");
    // The claim fails once: nothing is lost, the next due request tries again.
    p.queue_settle(reply(200, r#"{"success":false,"errorReason":"invalid_batch_settlement_evm_claim_simulation_failed","transaction":"","network":"eip155:84532"}"#));
    p.queue_verify(reply(200, r#"{"isValid":true,"extra":{"balance":"100000","totalClaimed":"0"}}"#));
    let third = pollster::block_on(handle(&cfg, &p, paid(&cfg, voucher_header(&cfg, 1, 3 * PRICE))));
    assert_eq!(third.status(), 200, "the claim is not on the request path");
    assert_eq!((p.settles(), p.deferred.borrow().len()), (1, 1), "answered before the claim ran: it is deferred work");
    drain(&p);
    assert_eq!(p.settles(), 2);
    let last = voucher(1, 1, PAY_TO, 4 * PRICE).1;
    run(&cfg, &p, paid(&cfg, voucher_header(&cfg, 1, 4 * PRICE)));
    let calls = p.facilitator_calls.borrow();
    let settles: Vec<&Value> = calls.iter().filter(|(e, _)| e == "settle").map(|(_, b)| b).collect();
    let kinds: Vec<&str> = settles.iter().map(|b| b["paymentPayload"]["payload"]["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["deposit", "claim", "claim", "settle"]);
    let row = &settles[2]["paymentPayload"]["payload"]["claims"][0];
    assert_eq!(row["totalClaimed"], "40000");
    assert_eq!(row["voucher"]["maxClaimableAmount"], "40000");
    assert_eq!(row["signature"], last["signature"], "the latest voucher");
    assert_eq!(row["voucher"]["channel"]["receiver"], PAY_TO);
    assert_eq!(settles[2]["paymentRequirements"]["amount"], "0");
    assert_eq!(settles[3]["paymentPayload"]["payload"], json!({ "type": "settle", "receiver": PAY_TO, "token": USDC }));
    drop(calls);
    // Claimed: the next vouchers start a new count.
    run(&cfg, &p, paid(&cfg, voucher_header(&cfg, 1, 5 * PRICE)));
    assert_eq!(p.settles(), 4);
    assert!(p.logs.borrow().iter().any(|l| l.contains("\"x402\":\"claim\"") && l.contains("\"ok\":true") && l.contains("40000")), "{:?}", p.logs.borrow());
}

#[test]
fn a_facilitator_outage_while_learning_a_channel_charges_nothing_and_says_so() {
    let (cfg, p) = (cfg(), start());
    p.queue_verify(Err(x402_edge_paywall::facilitator::UpstreamError::Network("down".into())));
    let res = run(&cfg, &p, paid(&cfg, voucher_header(&cfg, 1, PRICE)));
    assert_eq!(res.status(), 502);
    assert_eq!(body_json(&res)["error"], "facilitator_unavailable");
    assert_eq!(p.origin_hits(), 0);
}

#[test]
fn a_ledger_outage_forwards_nothing() {
    let (cfg, p) = (cfg(), start());
    open(&cfg, &p, 1, 100_000);
    p.ledger_down.set(true);
    let res = run(&cfg, &p, paid(&cfg, voucher_header(&cfg, 1, 2 * PRICE)));
    assert_eq!(res.status(), 503);
    assert_eq!(p.origin_hits(), 1);
}

/// The shard's reply to the charging finish is lost before the shard applied it: the finish is
/// repeated as "not delivered" (here that fails too: the outcome is unknown), the answer withheld,
/// and a retry of the same voucher once the hold lapsed is served and charged once. (Applied with
/// its reply lost: the next test.)
#[test]
fn a_lost_finish_reply_withholds_the_answer_and_the_retry_gets_it_without_a_second_charge() {
    let (cfg, p) = (cfg(), start());
    open(&cfg, &p, 1, 100_000);
    let h = voucher_header(&cfg, 1, 2 * PRICE);
    // Not applied: the channelFinish fails before the shard, and so does its repeat.
    let finishes = || p.ledger_ops.borrow().iter().filter(|k| *k == "channelFinish").count();
    let before = finishes();
    p.ledger_fail_on.borrow_mut().push("channelFinish");
    let res = run(&cfg, &p, paid(&cfg, h.clone()));
    assert_eq!(finishes(), before + 2, "the finish is repeated as not delivered");
    assert_eq!(res.status(), 503);
    assert_eq!(body_json(&res)["error"], "settlement_outcome_unknown", "both finishes failed: unknown");
    p.ledger_fail_on.borrow_mut().clear();
    // The hold lapses; the same voucher is then taken again (nothing was charged).
    p.now.set(p.now.get() + 60);
    let served = run(&cfg, &p, paid(&cfg, h.clone()));
    assert_eq!(served.status(), 200);
    assert_eq!(receipt(&served)["extra"]["channelState"]["chargedCumulativeAmount"], "20000");
    assert_eq!(p.origin_hits(), 3);
}

#[test]
fn a_finish_applied_whose_reply_was_lost_is_retrievable_by_the_same_voucher() {
    let (cfg, p) = (cfg(), start());
    open(&cfg, &p, 1, 100_000);
    let h = voucher_header(&cfg, 1, 2 * PRICE);
    p.ledger_lose_reply_on.borrow_mut().push("channelFinish");
    let res = run(&cfg, &p, paid(&cfg, h.clone()));
    assert_eq!(res.status(), 503);
    assert_eq!(body_json(&res)["error"], "ledger_unavailable");
    assert!(body_json(&res)["message"].as_str().unwrap().contains("without a second charge"));
    let again = run(&cfg, &p, paid(&cfg, h.clone()));
    assert_eq!(again.status(), 200, "redelivered");
    assert_eq!(receipt(&again)["extra"]["channelState"]["chargedCumulativeAmount"], "20000", "charged once");
    assert_eq!(run(&cfg, &p, paid(&cfg, h)).status(), 402, "once only");
    assert_eq!(p.origin_hits(), 3);
}

/// A cooperative refund (the official client's `refund()`): no origin call; one `/settle` that
/// claims what is charged and unclaimed and refunds the rest, enriched as the official server does.
#[test]
fn a_cooperative_refund_claims_what_was_charged_and_returns_the_rest_without_the_origin() {
    let (cfg, p) = (cfg(), start());
    open(&cfg, &p, 1, 100_000);
    run(&cfg, &p, paid(&cfg, voucher_header(&cfg, 1, 2 * PRICE)));
    let hits = p.origin_hits();
    let (wire, v) = voucher(1, 1, PAY_TO, 2 * PRICE);
    p.queue_settle(reply(200, &json!({ "success": true, "transaction": tx(88), "network": "eip155:84532", "payer": payer(1).to_checksum(), "amount": "80000", "extra": { "channelState": { "channelId": channel_id(1), "balance": "20000", "totalClaimed": "20000", "withdrawRequestedAt": 0, "refundNonce": "1" } } }).to_string()));
    let res = run(&cfg, &p, paid(&cfg, header(&cfg, json!({ "type": "refund", "channelConfig": wire, "voucher": v }))));
    assert_eq!(res.status(), 200, "{}", String::from_utf8_lossy(res.body()));
    assert_eq!(body_json(&res), json!({ "message": "Refund acknowledged", "channelId": channel_id(1) }));
    let r = receipt(&res);
    assert_eq!((r["transaction"].as_str(), r["amount"].as_str()), (Some(tx(88).as_str()), Some("80000")));
    assert_eq!(r["extra"]["channelState"]["chargedCumulativeAmount"], "20000");
    assert_eq!(p.origin_hits(), hits, "the origin is not called");
    let calls = p.facilitator_calls.borrow();
    let body = &calls.last().unwrap().1["paymentPayload"]["payload"];
    assert_eq!((body["type"].as_str(), body["amount"].as_str(), body["refundNonce"].as_str()), (Some("refund"), Some("80000"), Some("0")));
    assert_eq!(body["claims"][0]["totalClaimed"], "20000", "what was charged is claimed in the same transaction");
    assert_eq!(body["claims"][0]["signature"], v["signature"]);
    drop(calls);
    // The channel now holds only what was charged: the next voucher is beyond it.
    let next = run(&cfg, &p, paid(&cfg, voucher_header(&cfg, 1, 3 * PRICE)));
    assert!(required(&next)["error"].as_str().unwrap().starts_with("invalid_batch_settlement_evm_cumulative_exceeds_balance"));
    // A refund of a channel with nothing refundable is refused without the facilitator.
    let settles = p.settles();
    let again = run(&cfg, &p, paid(&cfg, header(&cfg, json!({ "type": "refund", "channelConfig": wire, "voucher": voucher(1, 1, PAY_TO, 2 * PRICE).1 }))));
    assert_eq!(again.status(), 402);
    assert!(required(&again)["error"].as_str().unwrap().starts_with("invalid_batch_settlement_evm_refund_no_balance"));
    assert_eq!(p.settles(), settles);
}

/// The accepted requirement must be one of the route's channel offers: echoed from the corrective
/// 402 (with its channel state) it still is; with another amount, payTo or authorizer it is not.
#[test]
fn the_accepted_requirement_must_be_a_channel_offer_of_the_route() {
    let (cfg, p) = (cfg(), start());
    open(&cfg, &p, 1, 100_000);
    let (wire, v) = voucher(1, 1, PAY_TO, 2 * PRICE);
    let mut echoed = cfg.routes[0].accepts[0].requirements_json.clone();
    echoed["extra"]["channelState"] = json!({ "chargedCumulativeAmount": "10000" });
    echoed["extra"]["voucherState"] = json!({ "signedMaxClaimable": "10000", "signature": "0x" });
    let h = encode_header(&json!({ "x402Version": 2, "accepted": echoed, "payload": { "type": "voucher", "channelConfig": wire, "voucher": v } }));
    assert_eq!(run(&cfg, &p, paid(&cfg, h)).status(), 200);
    for (k, value) in [("amount", json!("1")), ("payTo", json!("0x1111111111111111111111111111111111111111")), ("maxTimeoutSeconds", json!(1))] {
        let mut other = cfg.routes[0].accepts[0].requirements_json.clone();
        other[k] = value;
        let (wire, v) = voucher(1, 1, PAY_TO, 3 * PRICE);
        let h = encode_header(&json!({ "x402Version": 2, "accepted": other, "payload": { "type": "voucher", "channelConfig": wire, "voucher": v } }));
        let res = run(&cfg, &p, paid(&cfg, h));
        assert!(required(&res)["error"].as_str().unwrap().starts_with("invalid_payment_requirements"), "{k}");
    }
    let mut other = cfg.routes[0].accepts[0].requirements_json.clone();
    other["extra"]["receiverAuthorizer"] = json!("0x1111111111111111111111111111111111111111");
    let (wire, v) = voucher(1, 1, PAY_TO, 3 * PRICE);
    let res = run(&cfg, &p, paid(&cfg, encode_header(&json!({ "x402Version": 2, "accepted": other, "payload": { "type": "voucher", "channelConfig": wire, "voucher": v } }))));
    assert!(required(&res)["error"].as_str().unwrap().starts_with("invalid_payment_requirements"));
    assert_eq!(p.origin_hits(), 2);
}

/// However long CHANNEL_CLAIM_SECONDS is, a charge is claimed once it is `withdrawDelay` − 300 s
/// old: a payer cannot start a withdrawal right after a request and complete it before the claim.
#[test]
fn a_charge_is_claimed_before_a_withdrawal_started_after_it_could_complete() {
    let (cfg, p) = (cfg_with(json!({ "CHANNEL_CLAIM_SECONDS": "3600" })), start());
    open(&cfg, &p, 1, 100_000);
    p.now.set(NOW + 599);
    p.queue_verify(verified(1, 100_000, 0, 0));
    run(&cfg, &p, paid(&cfg, voucher_header(&cfg, 1, 2 * PRICE)));
    assert_eq!(p.settles(), 1, "599 s: not due");
    p.now.set(NOW + 600);
    run(&cfg, &p, paid(&cfg, voucher_header(&cfg, 1, 3 * PRICE)));
    let kinds: Vec<String> = p.facilitator_calls.borrow().iter().filter(|(e, _)| e == "settle").map(|(_, b)| b["paymentPayload"]["payload"]["type"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(kinds, ["deposit", "claim", "settle"], "600 s = withdrawDelay 900 − 300: claimed");
}

/// A voucher-paid answer is for its payer: `no-store`, and no CDN cache directive of the origin's.
#[test]
fn a_voucher_paid_answer_carries_no_cache_directive_a_cdn_would_obey() {
    let (cfg, p) = (cfg(), start());
    open(&cfg, &p, 1, 100_000);
    p.origin_response_headers.borrow_mut().push(("cdn-cache-control", "max-age=3600".into()));
    p.origin_response_headers.borrow_mut().push(("surrogate-control", "max-age=3600".into()));
    let res = run(&cfg, &p, paid(&cfg, voucher_header(&cfg, 1, 2 * PRICE)));
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(res.headers().get("cdn-cache-control").is_none() && res.headers().get("surrogate-control").is_none());
}
