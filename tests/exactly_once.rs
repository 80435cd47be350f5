//! The fail-closed, exactly-once gate on the host: every decision of the ledger path, with the
//! real ledger state machine behind a fake platform, counting origin hits and facilitator calls.
//! The same behaviours run against the built wasm, the Durable Object and the local chain in
//! `tests/gate.test.mjs`.

mod common;

use std::rc::Rc;

use common::*;
use serde_json::json;
use x402_edge_paywall::facilitator::UpstreamError;
use x402_edge_paywall::ledger::{shard_name, Op, Settlement};
use x402_edge_paywall::x402::decode_header_json;

fn paid(cfg: &Rc<x402_edge_paywall::config::Config>, p: &Rc<Fake>, h: &str) -> http::Response<Vec<u8>> {
    run(cfg, p, request("/paid", &[("payment-signature", h)]))
}

fn payment_response(res: &http::Response<Vec<u8>>) -> serde_json::Value {
    decode_header_json(res.headers()["payment-response"].to_str().unwrap()).unwrap()
}

// ---- 1. Fail closed on priced paths --------------------------------------------------------

#[test]
fn unlisted_and_extension_methods_on_a_priced_path_get_405_and_never_reach_the_origin() {
    let cfg = config();
    let p = Rc::new(fake());
    for m in ["POST", "PUT", "DELETE", "PATCH", "PROPFIND", "SEARCH", "PURGE", "get", "Get", "TRACE", "CONNECT"] {
        let res = run(&cfg, &p, request_with(m, "/paid", &[]));
        assert_eq!(res.status(), 405, "{m}");
        assert_eq!(res.headers()["allow"], "GET, HEAD, OPTIONS", "{m}");
        assert_eq!(body_json(&res)["error"], "method_not_allowed");
    }
    assert_eq!(p.origin_hits(), 0);
}

#[test]
fn head_is_priced_as_get_and_options_is_answered_by_the_paywall() {
    let cfg = config();
    let p = Rc::new(fake());
    assert_eq!(run(&cfg, &p, request_with("HEAD", "/paid", &[])).status(), 402);
    let res = run(&cfg, &p, request_with("OPTIONS", "/paid", &[]));
    assert_eq!(res.status(), 204);
    assert_eq!(res.headers()["allow"], "GET, HEAD, OPTIONS");
    let pre = run(&cfg, &p, request_with("OPTIONS", "/other/x", &[("origin", "https://a.example"), ("access-control-request-method", "GET")]));
    assert_eq!(pre.status(), 204);
    assert_eq!(pre.headers()["access-control-allow-methods"], "GET, HEAD, OPTIONS");
    assert_eq!(p.origin_hits(), 0);
}

#[test]
fn free_routes_open_other_methods_explicitly() {
    let cfg = config_with(json!([
        { "route": "GET /doc", "price": "$0.01" },
        { "route": "POST /doc", "free": true },
        { "route": "OPTIONS /doc", "free": true }
    ]));
    let p = Rc::new(fake());
    assert_eq!(run(&cfg, &p, request_with("POST", "/doc", &[])).status(), 200);
    assert_eq!(run(&cfg, &p, request_with("OPTIONS", "/doc", &[])).status(), 200, "an explicit free OPTIONS route is forwarded");
    assert_eq!(run(&cfg, &p, request_with("DELETE", "/doc", &[])).headers()["allow"], "GET, HEAD, POST, OPTIONS");
    assert_eq!(p.origin_hits(), 2);
}

#[test]
fn the_origin_receives_exactly_the_method_sent_on_unpriced_paths() {
    let cfg = config();
    let p = Rc::new(fake());
    for m in ["PROPFIND", "SEARCH", "PURGE", "MKCOL", "get"] {
        assert_eq!(run(&cfg, &p, request_with(m, "/elsewhere", &[])).status(), 200, "{m}");
    }
    let sent: Vec<String> = p.origin_calls.borrow().iter().map(|r| r.method().as_str().to_string()).collect();
    assert_eq!(sent, ["PROPFIND", "SEARCH", "PURGE", "MKCOL", "get"]);
    assert_eq!(run(&cfg, &p, request_with("TRACE", "/elsewhere", &[])).status(), 405, "fetch cannot send TRACE");
}

#[test]
fn method_override_in_the_query_is_refused_on_priced_paths() {
    let cfg = config();
    let p = Rc::new(fake());
    for q in ["_method=GET", "a=1&_method=PUT", "_METHOD=get", "%5Fmethod=GET", "_method"] {
        let res = run(&cfg, &p, request_with("POST", &format!("/paid?{q}"), &[]));
        assert_eq!(res.status(), 400, "{q}");
        assert_eq!(body_json(&res)["error"], "method_override_refused");
    }
    assert_eq!(run(&cfg, &p, request("/elsewhere?_method=PUT", &[])).status(), 200, "unpriced paths are the origin's business");
    assert_eq!(p.origin_hits(), 1);
}

#[test]
fn path_override_headers_never_reach_the_origin() {
    let cfg = config();
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 40);
    let overrides = [("x-original-url", "/other/secret"), ("x-rewrite-url", "/other/secret"), ("x-forwarded-prefix", "/other")];
    let mut headers = overrides.to_vec();
    headers.push(("payment-signature", &h));
    assert_eq!(run(&cfg, &p, request("/paid", &headers)).status(), 200);
    assert_eq!(run(&cfg, &p, request("/elsewhere", &overrides)).status(), 200);
    for call in p.origin_calls.borrow().iter() {
        for (name, _) in overrides {
            assert!(call.headers().get(name).is_none(), "{name} forwarded");
        }
    }
}

#[test]
fn v_must_be_27_or_28() {
    let cfg = config();
    let p = Rc::new(fake());
    let mut v = decode_header_json(&payment(&cfg, 0, 41)).unwrap();
    let sig = v["payload"]["signature"].as_str().unwrap().to_string();
    let raw_v = u8::from_str_radix(&sig[130..], 16).unwrap() - 27;
    v["payload"]["signature"] = format!("{}{raw_v:02x}", &sig[..130]).into();
    let res = paid(&cfg, &p, &x402_edge_paywall::x402::encode_header(&v));
    assert_eq!(res.status(), 402);
    assert!(body_json(&res)["error"].as_str().unwrap().contains("v must be 27 or 28"));
    assert_eq!((p.origin_hits(), p.facilitator_calls.borrow().len()), (0, 0));
}

// ---- 2. One writer ------------------------------------------------------------------------

#[test]
fn fifty_concurrent_copies_of_one_signature_run_the_origin_once_and_settle_once() {
    let cfg = config();
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 42);
    let reqs = (0..50).map(|_| request("/paid", &[("payment-signature", &h)])).collect();
    let res = run_all(&cfg, &p, reqs);
    let ok = res.iter().filter(|r| r.status() == 200).count();
    let conflict = res.iter().filter(|r| r.status() == 409).count();
    assert_eq!((ok, conflict), (1, 49));
    assert_eq!(body_json(res.iter().find(|r| r.status() == 409).unwrap())["error"], "payment_in_flight");
    assert_eq!((p.origin_hits(), p.settles()), (1, 1));
}

#[test]
fn a_settled_and_delivered_signature_is_spent() {
    let cfg = config();
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 43);
    assert_eq!(paid(&cfg, &p, &h).status(), 200);
    let calls = p.facilitator_calls.borrow().len();
    for _ in 0..10 {
        let res = paid(&cfg, &p, &h);
        assert_eq!(res.status(), 402);
        let pr = decode_header_json(res.headers()["payment-required"].to_str().unwrap()).unwrap();
        assert!(pr["error"].as_str().unwrap().starts_with("invalid_transaction_state: this authorization was already settled"));
    }
    assert_eq!(p.origin_hits(), 1);
    assert_eq!(p.facilitator_calls.borrow().len(), calls, "replays call no facilitator");
}

#[test]
fn an_unreachable_ledger_fails_closed() {
    let cfg = config();
    let p = Rc::new(fake());
    p.ledger_down.set(true);
    let res = paid(&cfg, &p, &payment(&cfg, 0, 44));
    assert_eq!(res.status(), 503);
    assert_eq!(body_json(&res)["error"], "ledger_unavailable");
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!((p.origin_hits(), p.facilitator_calls.borrow().len()), (0, 0));
}

#[test]
fn a_released_authorization_can_be_retried() {
    let cfg = config();
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 45);
    p.origin_status.set(500);
    assert_eq!(paid(&cfg, &p, &h).status(), 500);
    p.origin_status.set(200);
    assert_eq!(paid(&cfg, &p, &h).status(), 200, "origin failure released it");
    assert_eq!(p.settles(), 1);
}

// ---- 3. Delivery at least once, charge at most once ----------------------------------------

#[test]
fn a_client_gone_before_settlement_is_not_charged_and_may_retry() {
    let cfg = config();
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 46);
    p.gone.set(true);
    paid(&cfg, &p, &h);
    assert_eq!(p.settles(), 0, "not charged");
    p.gone.set(false);
    assert_eq!(paid(&cfg, &p, &h).status(), 200);
    assert_eq!(p.settles(), 1);
}

#[test]
fn a_client_gone_during_settlement_gets_the_content_once_on_retry_without_a_second_charge() {
    let cfg = config();
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 47);
    p.gone_during_settle.set(true);
    let first = paid(&cfg, &p, &h);
    let tx = payment_response(&first)["transaction"].clone();
    p.gone_during_settle.set(false);
    p.gone.set(false);
    let (origin, settles) = (p.origin_hits(), p.settles());
    let retry = paid(&cfg, &p, &h);
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.body(), b"{\"data\":\"paid content\"}");
    assert_eq!(payment_response(&retry)["transaction"], tx, "the original settlement");
    assert_eq!((p.origin_hits(), p.settles()), (origin + 1, settles), "origin again, no second settlement");
    assert_eq!(paid(&cfg, &p, &h).status(), 402, "then it is spent");
}

#[test]
fn an_unknown_outcome_is_retried_and_nonce_already_used_counts_as_paid() {
    let cfg = config();
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 48);
    p.queue_settle(Err(UpstreamError::Timeout { seconds: 30 }));
    let first = paid(&cfg, &p, &h);
    assert_eq!(first.status(), 504);
    assert!(first.headers().get("payment-required").is_none());
    assert!(body_json(&first)["message"].as_str().unwrap().contains("may or may not have been executed"));
    // The first attempt did go through on chain; the retry learns it.
    p.queue_settle(reply(200, r#"{"success":false,"errorReason":"invalid_exact_evm_nonce_already_used","transaction":"","network":"eip155:84532"}"#));
    let retry = paid(&cfg, &p, &h);
    assert_eq!(retry.status(), 200);
    assert_eq!(payment_response(&retry)["success"], true);
    assert_eq!(p.settles(), 2);
    assert_eq!(paid(&cfg, &p, &h).status(), 402, "spent after delivery");
    assert_eq!(p.settles(), 2);
}

#[test]
fn nonce_already_used_for_an_authorization_this_ledger_never_sent_is_a_refusal() {
    let cfg = config();
    let p = Rc::new(fake());
    p.queue_settle(reply(200, r#"{"success":false,"errorReason":"invalid_exact_evm_nonce_already_used","transaction":"","network":"eip155:84532"}"#));
    let res = paid(&cfg, &p, &payment(&cfg, 0, 49));
    assert_eq!(res.status(), 402);
    assert!(!String::from_utf8_lossy(res.body()).contains("paid content"));
}

#[test]
fn a_pending_settlement_is_unknown_not_refused_and_keeps_its_transaction() {
    let cfg = config();
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 50);
    let pending = json!({ "success": false, "errorReason": "settlement_pending", "transaction": tx(0xee), "network": "eip155:84532" });
    p.queue_settle(reply(200, &pending.to_string()));
    let res = paid(&cfg, &p, &h);
    assert_eq!(res.status(), 502);
    assert_eq!(body_json(&res)["error"], "settlement_outcome_unknown");
    assert_eq!(body_json(&res)["payment"]["nonce"], format!("0x{}", "32".repeat(32)));
    // The retry reconciles and reports the transaction the pending answer named.
    p.queue_settle(reply(200, r#"{"success":false,"errorReason":"invalid_exact_evm_nonce_already_used","transaction":"","network":"eip155:84532"}"#));
    let retry = paid(&cfg, &p, &h);
    assert_eq!(retry.status(), 200);
    assert_eq!(payment_response(&retry)["transaction"], tx(0xee));
}

#[test]
fn settle_answers_are_checked_before_they_are_believed() {
    let cfg = config();
    for (n, body) in [
        (51u8, json!({ "success": true, "transaction": "0x1234", "network": "eip155:84532" })),
        (52, json!({ "success": true, "transaction": tx(1), "network": "eip155:8453" })),
        (53, json!({ "success": true, "transaction": tx(1), "network": "eip155:84532", "payer": "0x000000000000000000000000000000000000dEaD" })),
    ] {
        let p = Rc::new(fake());
        p.queue_settle(reply(200, &body.to_string()));
        let res = paid(&cfg, &p, &payment(&cfg, 0, n));
        assert_eq!(res.status(), 502, "{body}");
        assert_eq!(body_json(&res)["error"], "settlement_outcome_unknown");
        assert!(!String::from_utf8_lossy(res.body()).contains("paid content"));
    }
}

#[test]
fn a_transaction_hash_reused_for_another_authorization_is_a_facilitator_fault() {
    let cfg = config();
    let p = Rc::new(fake());
    let same = json!({ "success": true, "transaction": tx(9), "network": "eip155:84532" }).to_string();
    p.queue_settle(reply(200, &same));
    assert_eq!(paid(&cfg, &p, &payment_with(&cfg, 0, 54, 1, 120)).status(), 200);
    p.queue_settle(reply(200, &same));
    let res = paid(&cfg, &p, &payment_with(&cfg, 0, 54, 2, 120));
    assert_eq!(res.status(), 502);
    assert!(body_json(&res)["message"].as_str().unwrap().contains("already holds for another authorization"));
}

#[test]
fn a_dead_holders_authorization_is_reconciled_after_its_lease() {
    let cfg = config();
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 55);
    // A worker that reserved and died (maybe after sending /settle): after its lease, the next
    // request takes it as maybe-sent: no /verify, and "nonce already used" would count as paid.
    let key = x402_edge_paywall::ledger::AuthorizationKey {
        network: "eip155:84532".into(),
        asset: cfg.routes[0].accepts[0].asset,
        payer: payer(55),
        nonce: [55; 32],
    }
    .id();
    let shard = shard_name(&payer(55));
    let reserve = Op::Reserve { key: key.clone(), holder: "dead".into(), route: "GET /paid".into(), valid_before: NOW + 120, lease_seconds: 10 };
    pollster::block_on(x402_edge_paywall::gateway::Platform::ledger(&*p, &shard, &reserve)).unwrap();
    assert_eq!(paid(&cfg, &p, &h).status(), 409);
    p.now.set(NOW + 11);
    assert_eq!(paid(&cfg, &p, &h).status(), 200);
    assert_eq!((p.verifies(), p.settles()), (0, 1));
    let ledger = p.ledger.borrow();
    assert!(matches!(ledger[&shard].records[&key].settlement, Settlement::Settled { .. }));
}

// ---- 4. Assurance before the origin runs ---------------------------------------------------

#[test]
fn auto_verifies_new_payers_and_payers_whose_last_settlement_failed() {
    let cfg = config();
    let p = Rc::new(fake());
    assert_eq!(paid(&cfg, &p, &payment_with(&cfg, 0, 60, 1, 120)).status(), 200);
    assert_eq!(*p.order.borrow(), ["verify", "origin", "settle"], "a new payer is verified first");
    p.order.borrow_mut().clear();
    assert_eq!(paid(&cfg, &p, &payment_with(&cfg, 0, 60, 2, 120)).status(), 200);
    assert_eq!(*p.order.borrow(), ["origin", "settle"], "good standing: one round trip");
    p.order.borrow_mut().clear();
    p.queue_settle(reply(200, r#"{"success":false,"errorReason":"invalid_exact_evm_insufficient_balance","transaction":"","network":"eip155:84532"}"#));
    assert_eq!(paid(&cfg, &p, &payment_with(&cfg, 0, 60, 3, 120)).status(), 402);
    p.order.borrow_mut().clear();
    assert_eq!(paid(&cfg, &p, &payment_with(&cfg, 0, 60, 4, 120)).status(), 200);
    assert_eq!(*p.order.borrow(), ["verify", "origin", "settle"], "after a refusal, verified again");
    // Good standing lapses after VERIFY_GOOD_STANDING_SECONDS.
    p.order.borrow_mut().clear();
    p.now.set(NOW + 86_400);
    let late = payment_with(&cfg, 0, 60, 5, 86_400 + 120);
    assert_eq!(paid(&cfg, &p, &late).status(), 200);
    assert_eq!(*p.order.borrow(), ["verify", "origin", "settle"], "good standing lapsed");
}

#[test]
fn a_new_payer_without_funds_never_reaches_the_origin() {
    let cfg = config();
    let p = Rc::new(fake());
    p.queue_verify(reply(200, r#"{"isValid":false,"invalidReason":"invalid_exact_evm_insufficient_balance"}"#));
    let res = paid(&cfg, &p, &payment(&cfg, 0, 61));
    assert_eq!(res.status(), 402);
    let pr = decode_header_json(res.headers()["payment-required"].to_str().unwrap()).unwrap();
    assert_eq!(pr["error"], "invalid_exact_evm_insufficient_balance");
    assert_eq!((p.origin_hits(), p.settles()), (0, 0));
}

#[test]
fn verify_always_and_local() {
    let cfg = config_with(json!([
        { "route": "GET /always", "price": "$0.01", "verify": "always" },
        { "route": "GET /local", "price": "$0.01", "verify": "local" }
    ]));
    let p = Rc::new(fake());
    for n in 1..=2 {
        assert_eq!(run(&cfg, &p, request("/always", &[("payment-signature", &payment_with(&cfg, 0, 62, n, 120))])).status(), 200);
    }
    assert_eq!(p.verifies(), 2, "always: every time");
    let q = Rc::new(fake());
    assert_eq!(run(&cfg, &q, request("/local", &[("payment-signature", &payment_with(&cfg, 1, 63, 1, 120))])).status(), 200);
    assert_eq!(q.verifies(), 0, "local: never, even for a new payer");
}

#[test]
fn a_payer_in_good_standing_gets_a_bounded_number_of_unverified_authorizations_in_flight() {
    let cfg = config();
    let p = Rc::new(fake());
    assert_eq!(paid(&cfg, &p, &payment_with(&cfg, 0, 64, 1, 120)).status(), 200);
    let cap = x402_edge_paywall::gateway::MAX_UNVERIFIED_IN_FLIGHT as u8;
    let reqs = (0..cap + 3).map(|n| request("/paid", &[("payment-signature", &payment_with(&cfg, 0, 64, n + 2, 120))])).collect();
    let before = p.verifies();
    let res = run_all(&cfg, &p, reqs);
    assert!(res.iter().all(|r| r.status() == 200));
    assert_eq!(p.verifies() - before, 3, "the first {cap} concurrent ones go on good standing, the rest are verified");
}

#[test]
fn facilitator_unavailable_at_verify_charges_nothing_and_releases() {
    let cfg = config();
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 65);
    p.queue_verify(Err(UpstreamError::Network("refused".into())));
    let res = paid(&cfg, &p, &h);
    assert_eq!(res.status(), 502);
    assert!(body_json(&res)["message"].as_str().unwrap().contains("nothing was charged"));
    assert_eq!(p.origin_hits(), 0);
    assert_eq!(paid(&cfg, &p, &h).status(), 200, "released: the same payment works later");
}

#[test]
fn settle_before_settles_first_and_an_origin_failure_leaves_it_retrievable() {
    let cfg = config_with(json!([{ "route": "POST /send", "price": "$0.01", "settle": "before", "verify": "local" }]));
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 66);
    p.origin_status.set(500);
    let res = run(&cfg, &p, request_with("POST", "/send", &[("payment-signature", &h)]));
    assert_eq!(res.status(), 500, "the origin's answer");
    assert_eq!(payment_response(&res)["success"], true, "the client learns it paid");
    assert_eq!(*p.order.borrow(), ["settle", "origin"]);
    p.origin_status.set(200);
    let retry = run(&cfg, &p, request_with("POST", "/send", &[("payment-signature", &h)]));
    assert_eq!(retry.status(), 200);
    assert_eq!((p.settles(), p.origin_hits()), (1, 2), "no second charge");
    assert_eq!(run(&cfg, &p, request_with("POST", "/send", &[("payment-signature", &h)])).status(), 402);
    // A refused settle-first payment never reaches the origin.
    let q = Rc::new(fake());
    q.queue_settle(reply(200, r#"{"success":false,"errorReason":"invalid_exact_evm_insufficient_balance","transaction":"","network":"eip155:84532"}"#));
    assert_eq!(run(&cfg, &q, request_with("POST", "/send", &[("payment-signature", &payment(&cfg, 0, 67))])).status(), 402);
    assert_eq!(q.origin_hits(), 0);
}

#[test]
fn valid_before_must_leave_time_for_the_request_and_no_more_than_max_timeout() {
    let cfg = config(); // 30 s + 30 s time limits, maxTimeoutSeconds 300
    let p = Rc::new(fake());
    for (valid_for, ok) in [(65, false), (66, true), (360, true), (361, false), (86_400 * 365, false)] {
        let res = paid(&cfg, &p, &payment_with(&cfg, 0, 68, valid_for as u8, valid_for));
        assert_eq!(res.status() == 200, ok, "validBefore = now + {valid_for}: {}", String::from_utf8_lossy(res.body()));
        if !ok {
            let pr = decode_header_json(res.headers()["payment-required"].to_str().unwrap()).unwrap();
            assert!(pr["error"].as_str().unwrap().starts_with("invalid_exact_evm_payload_authorization_valid_before"));
        }
    }
}

#[test]
fn max_timeout_seconds_must_cover_the_time_limits() {
    let v = json!({
        "ORIGIN_URL": "https://o.test", "FACILITATOR_URL": "https://f.test", "PAY_TO": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
        "ORIGIN_TIMEOUT_SECONDS": "60", "FACILITATOR_TIMEOUT_SECONDS": "60",
        "ROUTES": [{ "route": "GET /x", "price": "$0.01", "maxTimeoutSeconds": 120 }]
    });
    let e = x402_edge_paywall::config::Config::from_vars(v.as_object().unwrap()).unwrap_err();
    assert!(e.0.contains("maxTimeoutSeconds 120 is too short") && e.0.contains("use at least 136"), "{e}");
}
