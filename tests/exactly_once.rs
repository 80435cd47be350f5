//! The fail-closed, exactly-once gate on the host: every decision of the ledger path, with the
//! real ledger state machine behind a fake platform, counting origin hits and facilitator calls.
//! The same behaviours run against the built wasm, the Durable Object and the local chain in
//! `tests/gate.test.mjs`.

mod common;

use std::rc::Rc;

use common::*;
use serde_json::json;
use x402_edge_paywall::facilitator::UpstreamError;
use x402_edge_paywall::ledger::{shard_name, Mark, Op, Reserve, Settlement};
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
fn unforwardable_methods_on_a_priced_path_are_refused_before_any_payment_work() {
    // A route without a method, settling first: TRACE, CONNECT and TRACK with a valid payment
    // are answered 405 before the challenge, the ledger and the facilitator, never charged.
    let cfg = config_with(json!([{ "route": "/send/*", "price": "$0.01", "settle": "before" }]));
    let p = Rc::new(fake());
    for (i, m) in ["TRACE", "CONNECT", "TRACK", "trace"].into_iter().enumerate() {
        let h = payment(&cfg, 0, 60 + i as u8);
        for headers in [vec![("payment-signature", h.as_str())], vec![]] {
            let res = run(&cfg, &p, request_with(m, "/send/x", &headers));
            assert_eq!(res.status(), 405, "{m}");
            assert_eq!(body_json(&res)["error"], "method_not_allowed", "{m}");
            assert_eq!(res.headers()["allow"], "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS", "{m}");
            assert!(res.headers().get("payment-required").is_none() && res.headers().get("payment-response").is_none(), "{m}");
        }
    }
    assert_eq!((p.settles(), p.verifies(), p.origin_hits()), (0, 0, 0));
    assert!(p.ledger_calls.borrow().is_empty(), "nothing reserved");
    // The same route still sells the methods fetch can send.
    assert_eq!(run(&cfg, &p, request_with("POST", "/send/x", &[("payment-signature", &payment(&cfg, 0, 70))])).status(), 200);
    assert_eq!((p.settles(), p.origin_hits()), (1, 1));
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
    // PHP turns a leading `.` in a key into `_` and ends a key at a NUL (Laravel and Symfony then
    // read `_method`).
    for q in ["_method=GET", "a=1&_method=PUT", "_METHOD=get", "%5Fmethod=GET", "_method", ".method=GET", "%2Emethod=GET", "[method=GET", "_method%00=GET", "_method%00x=GET", ".method%00=GET"] {
        let res = run(&cfg, &p, request_with("POST", &format!("/paid?{q}"), &[]));
        assert_eq!(res.status(), 400, "{q}");
        assert_eq!(body_json(&res)["error"], "method_override_refused");
    }
    assert_eq!(run(&cfg, &p, request("/elsewhere?_method=PUT", &[])).status(), 200, "unpriced paths are the origin's business");
    assert_eq!(p.origin_hits(), 1);
    assert_eq!(run(&cfg, &p, request("/paid?xmethod=GET&method=GET&_methods=GET", &[])).status(), 402, "other keys are only keys");
}

#[test]
fn method_override_headers_are_refused_also_spelt_with_underscores() {
    let cfg = config();
    let p = Rc::new(fake());
    // CGI-style servers (Rack, PHP) read `X_HTTP_Method_Override` as `HTTP_X_HTTP_METHOD_OVERRIDE`.
    for name in ["x-http-method-override", "x_http_method_override", "X_HTTP_METHOD", "x_method-override"] {
        for path in ["/paid", "/elsewhere"] {
            let res = run(&cfg, &p, request_with("POST", path, &[(name, "GET")]));
            assert_eq!(res.status(), 400, "{name} on {path}");
            assert_eq!(body_json(&res)["error"], "method_override_refused");
        }
    }
    assert_eq!((p.origin_hits(), p.settles()), (0, 0));
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

/// The ledger key and shard of `header` (a v2 payment of `payer(key_byte)`).
fn ledger_key(header: &str, key_byte: u8) -> (String, String, String) {
    let v = decode_header_json(header).unwrap();
    let nonce: [u8; 32] = x402_edge_paywall::evm::parse_bytes32(v["payload"]["authorization"]["nonce"].as_str().unwrap()).unwrap();
    let key = x402_edge_paywall::ledger::AuthorizationKey {
        network: "eip155:84532".into(),
        asset: x402_edge_paywall::evm::Address::parse("0x036CbD53842c5426634e7929541eC2318f3dCF7e").unwrap(),
        payer: payer(key_byte),
        nonce,
    }
    .id();
    let signature = x402_edge_paywall::evm::hex_lower(&x402_edge_paywall::evm::keccak256(v["payload"]["signature"].as_str().unwrap().to_ascii_lowercase().as_bytes()));
    (shard_name(&payer(key_byte)), key, signature)
}

/// A worker that reserved `header` (and, with `marked`, wrote the send mark) and then died.
fn dead_holder(p: &Fake, header: &str, key_byte: u8, marked: bool) -> (String, String) {
    let (shard, key, signature) = ledger_key(header, key_byte);
    let reserve = Op::from(Reserve { key: key.clone(), holder: "dead".into(), route: "GET /paid".into(), resource: "/paid".into(), signature, valid_before: NOW + 120, lease_seconds: 10, create: true });
    pollster::block_on(x402_edge_paywall::gateway::Ledger::ledger(p, &shard, &reserve)).unwrap();
    if marked {
        let mark = Op::from(Mark { key: key.clone(), holder: "dead".into(), lease_seconds: 0, amount: None });
        pollster::block_on(x402_edge_paywall::gateway::Ledger::ledger(p, &shard, &mark)).unwrap();
    }
    (shard, key)
}

const NONCE_USED: &str = r#"{"success":false,"errorReason":"invalid_exact_evm_nonce_already_used","transaction":"","network":"eip155:84532"}"#;
const VERIFY_NONCE_USED: &str = r#"{"isValid":false,"invalidReason":"invalid_exact_evm_nonce_already_used"}"#;

#[test]
fn a_burned_nonce_behind_a_dead_unsent_reservation_is_refused_without_the_origin() {
    // The attack: reserve (the worker dies before /settle), burn the nonce on chain, wait for the
    // lease, resend. No send mark: the record is fresh, verified again, and "nonce used" refuses.
    let cfg = config();
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 55);
    let (shard, key) = dead_holder(&p, &h, 55, false);
    assert_eq!(paid(&cfg, &p, &h).status(), 409, "in flight while the lease runs");
    p.now.set(NOW + 11);
    p.queue_verify(reply(200, VERIFY_NONCE_USED));
    p.queue_settle(reply(200, NONCE_USED));
    let res = paid(&cfg, &p, &h);
    assert_eq!(res.status(), 402);
    assert!(!String::from_utf8_lossy(res.body()).contains("paid content"));
    assert_eq!((p.origin_hits(), p.verifies(), p.settles()), (0, 1, 0), "verified again, origin and /settle untouched");
    assert!(!p.ledger.borrow()[&shard].records.contains_key(&key), "refused: the record is gone");
}

#[test]
fn a_burned_nonce_is_refused_even_when_the_route_verifies_locally_only() {
    let cfg = config_with(json!([{ "route": "GET /paid", "price": "$0.01", "verify": "local" }]));
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 56);
    dead_holder(&p, &h, 56, false);
    p.now.set(NOW + 11);
    p.queue_verify(reply(200, VERIFY_NONCE_USED));
    assert_eq!(paid(&cfg, &p, &h).status(), 402);
    assert_eq!((p.origin_hits(), p.verifies(), p.settles()), (0, 1, 0), "a lapsed reservation is verified whatever the policy");
}

#[test]
fn a_dead_holder_after_its_send_mark_is_reconciled_and_nonce_used_counts_as_paid() {
    let cfg = config();
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 57);
    let (shard, key) = dead_holder(&p, &h, 57, true);
    p.now.set(NOW + 11);
    p.queue_settle(reply(200, NONCE_USED));
    assert_eq!(paid(&cfg, &p, &h).status(), 200);
    assert_eq!((p.origin_hits(), p.verifies(), p.settles()), (1, 0, 1));
    assert!(matches!(p.ledger.borrow()[&shard].records[&key].settlement, Settlement::Settled { .. }));
}

#[test]
fn every_settle_call_follows_an_acknowledged_send_mark() {
    let cfg = config();
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 58);
    assert_eq!(paid(&cfg, &p, &h).status(), 200);
    let ops = p.ledger_ops.borrow();
    let kinds: Vec<&str> = ops.iter().map(String::as_str).collect();
    assert_eq!(kinds, ["reserve", "mark", "finish"], "one mark on the paid path");
    assert_eq!(p.settles(), 1);
    drop(ops);
    // A mark the ledger applied but whose acknowledgement was lost: no /settle follows it.
    p.ledger_lose_reply_on.borrow_mut().push("mark");
    let res = paid(&cfg, &p, &payment(&cfg, 0, 61));
    assert_eq!(res.status(), 503);
    assert!(body_json(&res)["message"].as_str().unwrap().contains("it was not sent"));
    assert_eq!(p.settles(), 1, "no /settle without an acknowledged mark");
}

/// A review's attack: the ledger applies the send mark but its acknowledgement is lost, so the
/// request sends nothing; the payer then burns the nonce on chain and retries the same header.
/// The mark is taken back (`Outcome::Unsent`), so "nonce already used" is not read as this
/// ledger's own earlier payment: refused, never served, the origin not run again.
#[test]
fn a_mark_whose_acknowledgement_was_lost_is_taken_back_so_a_burned_nonce_is_refused() {
    let cfg = config();
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 62);
    p.ledger_lose_reply_on.borrow_mut().push("mark");
    let res = paid(&cfg, &p, &h);
    assert_eq!(res.status(), 503);
    assert!(body_json(&res)["message"].as_str().unwrap().contains("nothing was charged"), "{}", body_json(&res));
    assert_eq!((p.settles(), p.origin_hits()), (0, 1));
    // Burned on chain: the facilitator answers "nonce already used".
    p.queue_settle(reply(200, r#"{"success":false,"errorReason":"invalid_exact_evm_nonce_already_used","transaction":"","network":"eip155:84532"}"#));
    let retry = paid(&cfg, &p, &h);
    assert_eq!(retry.status(), 402, "{}", String::from_utf8_lossy(retry.body()));
    assert!(!String::from_utf8_lossy(retry.body()).contains("paid content"));
    assert_eq!(p.settles(), 1, "the retry's /settle was a first send");
}

#[test]
fn a_send_mark_the_ledger_cannot_write_means_no_settlement() {
    let cfg = config();
    let p = Rc::new(fake());
    p.ledger_fail_on.borrow_mut().push("mark");
    let res = paid(&cfg, &p, &payment(&cfg, 0, 59));
    assert_eq!(res.status(), 503);
    assert!(body_json(&res)["message"].as_str().unwrap().contains("nothing was charged"));
    assert_eq!(p.settles(), 0, "never sent without its mark");
    p.ledger_fail_on.borrow_mut().clear();
    assert_eq!(paid(&cfg, &p, &payment(&cfg, 0, 59)).status(), 200, "released: the same payment works afterwards");
}

#[test]
fn a_late_retry_of_an_unknown_outcome_is_never_a_fresh_challenge() {
    // Default limits: origin 30 s, facilitator 30 s. A new payment needs 66 s of validity left; a
    // repeated send needs the facilitator's 30 s + 6 s.
    let cfg = config();
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 60);
    p.queue_settle(Err(UpstreamError::Timeout { seconds: 30 }));
    assert_eq!(paid(&cfg, &p, &h).status(), 504);
    assert_eq!(p.origin_hits(), 1);
    // Too late for a new payment, not for settling again: settled first, still unknown, and the
    // origin is not called for an unestablished payment.
    p.now.set(NOW + 70);
    p.queue_settle(Err(UpstreamError::Timeout { seconds: 30 }));
    let res = paid(&cfg, &p, &h);
    assert_eq!(res.status(), 504);
    assert!(res.headers().get("payment-required").is_none());
    assert_eq!((p.origin_hits(), p.settles()), (1, 2));
    // Too late to settle again, and past validBefore until pruned: unknown, nothing called.
    for at in [NOW + 100, NOW + 118, NOW + 121, NOW + 170] {
        p.now.set(at);
        let res = paid(&cfg, &p, &h);
        assert!(matches!(res.status().as_u16(), 502 | 504), "at {at}: {}", res.status());
        assert!(res.headers().get("payment-required").is_none(), "at {at}: no fresh challenge");
        assert_eq!(body_json(&res)["error"], "settlement_outcome_unknown");
    }
    assert_eq!((p.origin_hits(), p.settles()), (1, 2), "no origin call and no further /settle once too late to settle");
    p.now.set(NOW + 120 + 61 + 1);
    p.ledger.borrow_mut().values_mut().for_each(|s| s.prune(NOW + 182));
    assert_eq!(paid(&cfg, &p, &h).status(), 402, "pruned after validBefore: then it is a plain expired authorization");
}

#[test]
fn a_late_retry_that_learns_its_earlier_send_paid_is_served_once() {
    let cfg = config();
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 64);
    p.queue_settle(Err(UpstreamError::Timeout { seconds: 30 }));
    assert_eq!(paid(&cfg, &p, &h).status(), 504);
    p.now.set(NOW + 80);
    p.queue_settle(reply(200, NONCE_USED));
    let res = paid(&cfg, &p, &h);
    assert_eq!(res.status(), 200, "{}", String::from_utf8_lossy(res.body()));
    assert_eq!((p.origin_hits(), p.settles()), (2, 2), "the origin once more (the first answer was lost), one settlement on chain");
    assert_eq!(paid(&cfg, &p, &h).status(), 402, "then spent");
}

#[test]
fn a_repeated_send_refused_for_another_reason_never_calls_the_origin() {
    let cfg = config();
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 65);
    p.queue_settle(Err(UpstreamError::Timeout { seconds: 30 }));
    assert_eq!(paid(&cfg, &p, &h).status(), 504);
    p.queue_settle(reply(200, r#"{"success":false,"errorReason":"insufficient_funds","transaction":"","network":"eip155:84532"}"#));
    assert_eq!(paid(&cfg, &p, &h).status(), 502);
    assert_eq!(p.origin_hits(), 1, "settled first on a retry: no origin call for an unestablished payment");
}

#[test]
fn a_late_retry_of_a_settled_undelivered_payment_is_redelivered() {
    let cfg = config_with(json!([{ "route": "GET /paid", "price": "$0.01", "settle": "before" }]));
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 61);
    p.origin_down.set(true);
    assert_eq!(paid(&cfg, &p, &h).status(), 504);
    p.origin_down.set(false);
    p.now.set(NOW + 115);
    let res = paid(&cfg, &p, &h);
    assert_eq!(res.status(), 200, "{}", String::from_utf8_lossy(res.body()));
    assert_eq!(p.settles(), 1);
}

#[test]
fn after_an_earlier_send_a_refusal_other_than_nonce_used_is_unknown_not_nothing_charged() {
    let cfg = config();
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 62);
    p.queue_settle(Err(UpstreamError::Timeout { seconds: 30 }));
    assert_eq!(paid(&cfg, &p, &h).status(), 504);
    // The first attempt drained the balance: the repeated send is refused for funds.
    p.queue_settle(reply(200, r#"{"success":false,"errorReason":"insufficient_funds","transaction":"","network":"eip155:84532"}"#));
    let res = paid(&cfg, &p, &h);
    assert_eq!(res.status(), 502);
    assert_eq!(body_json(&res)["error"], "settlement_outcome_unknown");
    assert!(!String::from_utf8_lossy(res.body()).contains("nothing was charged"));
    // The record is kept: the next retry reconciles again.
    p.queue_settle(reply(200, NONCE_USED));
    assert_eq!(paid(&cfg, &p, &h).status(), 200);
}

#[test]
fn a_redelivery_is_bound_to_the_resource_the_payment_was_for() {
    let cfg = config_with(json!([{ "route": "GET /docs/*", "price": "$0.01", "settle": "before" }]));
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 63);
    p.origin_down.set(true);
    assert_eq!(run(&cfg, &p, request("/docs/1", &[("payment-signature", &h)])).status(), 504);
    p.origin_down.set(false);
    let hits = p.origin_hits();
    let elsewhere = run(&cfg, &p, request("/docs/2", &[("payment-signature", &h)]));
    assert_eq!(elsewhere.status(), 409);
    assert_eq!(body_json(&elsewhere)["error"], "payment_for_other_resource");
    assert_eq!(p.origin_hits(), hits, "origin untouched");
    assert_eq!(run(&cfg, &p, request("/docs/1", &[("payment-signature", &h)])).status(), 200);
    assert_eq!(p.settles(), 1);
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
fn a_settle_first_origin_failure_answers_in_the_clients_protocol_version() {
    // A v1 client (X-PAYMENT) reads only X-PAYMENT-RESPONSE, a v2 client only PAYMENT-RESPONSE:
    // each must learn that it paid when the origin fails after settlement, whether the origin was
    // unreachable, timed out or answered >= 400, and on the redelivery too.
    let cfg = config_with(json!([{ "route": "POST /send", "price": "$0.01", "settle": "before", "verify": "local" }]));
    for (version, send, wanted, other) in [(1, "x-payment", "x-payment-response", "payment-response"), (2, "payment-signature", "payment-response", "x-payment-response")] {
        let p = Rc::new(fake());
        let h = if version == 1 { payment_v1_with(&cfg, 0, 72, 72, 120) } else { payment_with(&cfg, 0, 72, 72, 120) };
        let post = || request_with("POST", "/send", &[(send, h.as_str())]);
        let settled = |res: &http::Response<Vec<u8>>, what: &str| {
            assert!(res.headers().get(other).is_none(), "v{version} {what}: no {other}");
            let s = decode_header_json(res.headers().get(wanted).unwrap_or_else(|| panic!("v{version} {what}: {wanted} missing")).to_str().unwrap()).unwrap();
            assert_eq!(s["success"], true, "v{version} {what}");
            s["transaction"].as_str().unwrap().to_string()
        };
        // Unreachable, then over its time limit: the paywall's origin_unavailable answer.
        *p.origin_error.borrow_mut() = Some("connection refused".into());
        let res = run(&cfg, &p, post());
        assert_eq!((res.status().as_u16(), body_json(&res)["error"].as_str()), (502, Some("origin_unavailable")), "v{version}");
        let transaction = settled(&res, "origin unreachable");
        assert_eq!(transaction.len(), 66);
        *p.origin_error.borrow_mut() = None;
        p.origin_down.set(true);
        let res = run(&cfg, &p, post());
        assert_eq!((res.status().as_u16(), body_json(&res)["error"].as_str()), (504, Some("origin_unavailable")), "v{version}: redelivery timed out");
        assert_eq!(settled(&res, "origin timed out on redelivery"), transaction);
        // The origin's own >= 400 answer on a redelivery.
        p.origin_down.set(false);
        p.origin_status.set(503);
        let res = run(&cfg, &p, post());
        assert_eq!(res.status(), 503, "v{version}: the origin's answer");
        assert_eq!(settled(&res, "origin 503"), transaction);
        p.origin_status.set(200);
        let res = run(&cfg, &p, post());
        assert_eq!(res.status(), 200, "v{version}");
        assert_eq!(settled(&res, "delivered"), transaction);
        assert_eq!((p.settles(), p.origin_hits()), (1, 4), "v{version}: charged once, the origin called on each try");
    }
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

/// `header` with its signature replaced by a 100-byte blob (what a smart wallet sends, and what
/// anyone can claim for any `from`).
fn with_unchecked_signature(header: &str) -> String {
    let mut v = decode_header_json(header).unwrap();
    v["payload"]["signature"] = json!(format!("0x{}", "5a".repeat(100)));
    x402_edge_paywall::x402::encode_header(&v)
}

#[test]
fn unchecked_signatures_claiming_a_victim_never_touch_the_victims_limits_or_standing() {
    let cfg = config_vars(json!({ "RATE_LIMITS": { "paid": "PAID" } }));
    let p = Rc::new(fake());
    p.limits.borrow_mut().insert("PAID".into(), 3);
    let victim = 70u8;
    // The victim pays once: good standing.
    assert_eq!(paid(&cfg, &p, &payment_with(&cfg, 0, victim, 1, 120)).status(), 200);
    let standing = p.ledger.borrow()[&shard_name(&payer(victim))].standing;
    let ops_before = p.ledger_ops.borrow().len();
    for n in 2..40u8 {
        p.queue_verify(reply(200, r#"{"isValid":false,"invalidReason":"invalid_exact_evm_payload_signature"}"#));
        let forged = with_unchecked_signature(&payment_with(&cfg, 0, victim, n, 120));
        let res = paid(&cfg, &p, &forged);
        assert_eq!(res.status(), 402, "refused by /verify");
        assert!(!String::from_utf8_lossy(res.body()).contains("paid content"));
    }
    assert_eq!(p.ledger_ops.borrow().len(), ops_before, "no ledger call for an unverified signature");
    assert_eq!(p.ledger.borrow()[&shard_name(&payer(victim))].standing, standing, "standing untouched");
    assert_eq!(p.origin_hits(), 1);
    assert_eq!(p.settles(), 1);
    // The victim's own limit is intact: two more payments of theirs go through.
    for n in 50..52u8 {
        assert_eq!(paid(&cfg, &p, &payment_with(&cfg, 0, victim, n, 120)).status(), 200);
    }
}

#[test]
fn a_verified_smart_wallet_signature_is_verified_once_and_settles() {
    let cfg = config();
    let p = Rc::new(fake());
    let h = with_unchecked_signature(&payment(&cfg, 0, 71));
    assert_eq!(paid(&cfg, &p, &h).status(), 200);
    assert_eq!((p.verifies(), p.settles(), p.origin_hits()), (1, 1, 1), "one /verify before the ledger, none after");
}

#[test]
fn a_copy_with_another_signature_cannot_take_over_an_undelivered_payment() {
    let cfg = config_with(json!([{ "route": "GET /paid", "price": "$0.01", "settle": "before" }]));
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 72);
    p.origin_down.set(true);
    assert_eq!(paid(&cfg, &p, &h).status(), 504);
    p.origin_down.set(false);
    // The nonce and `from` are public once settled; a forged smart-wallet signature that the
    // facilitator would even accept cannot claim the redelivery.
    let forged = with_unchecked_signature(&h);
    let res = paid(&cfg, &p, &forged);
    assert_eq!(res.status(), 402);
    assert!(!String::from_utf8_lossy(res.body()).contains("paid content"));
    assert_eq!(paid(&cfg, &p, &h).status(), 200, "the genuine copy still gets it");
    assert_eq!(p.settles(), 1);
}

// ---- Every payment accounted for (issue 23) -------------------------------------------------

#[test]
fn a_settle_refusal_that_may_follow_a_broadcast_keeps_the_record_and_the_retry_is_served_once() {
    // The reference facilitator answers this for any exception of its transaction call, also an
    // RPC error after the transaction was broadcast (and executed).
    let cfg = config();
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 80);
    p.queue_settle(reply(200, r#"{"success":false,"errorReason":"invalid_exact_evm_transaction_failed","transaction":"","network":"eip155:84532"}"#));
    let first = paid(&cfg, &p, &h);
    assert_eq!(first.status(), 402);
    assert!(!String::from_utf8_lossy(first.body()).contains("paid content"));
    assert!(!String::from_utf8_lossy(first.body()).contains("nothing was charged"));
    assert_eq!(payment_response(&first)["success"], false);
    let (shard, key, _) = ledger_key(&h, 80);
    assert!(matches!(p.ledger.borrow()[&shard].records[&key].settlement, Settlement::Sent { .. }), "kept: money may have moved");
    assert!(!p.ledger.borrow()[&shard].standing.is_good(NOW, 86_400), "a refusal still turns the standing bad");
    // It had executed: the retry settles again first, learns "nonce used", and serves once.
    p.queue_settle(reply(200, NONCE_USED));
    let retry = paid(&cfg, &p, &h);
    assert_eq!(retry.status(), 200);
    assert_eq!((p.settles(), p.origin_hits()), (2, 2));
    assert_eq!(paid(&cfg, &p, &h).status(), 402, "then spent");
}

#[test]
fn a_pass_bought_on_a_settle_first_route_reaches_the_payer_on_the_redelivery() {
    let cfg = config_with(json!([{ "route": "GET /paid", "price": "$0.01", "settle": "before", "pass": { "ttl": "1h" } }]));
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 81);
    p.origin_down.set(true);
    let failed = paid(&cfg, &p, &h);
    assert_eq!(failed.status(), 504);
    assert!(failed.headers().get("x402-pass").is_none(), "no pass with a failed delivery");
    p.origin_down.set(false);
    let retry = paid(&cfg, &p, &h);
    assert_eq!(retry.status(), 200);
    let token = retry.headers().get("x402-pass").expect("the pass comes with the redelivery").to_str().unwrap().to_string();
    drain(&p);
    let id = x402_edge_paywall::pass::pass_id(&token).unwrap();
    assert!(p.ledger.borrow()[&shard_name(&payer(81))].payer_passes.iter().any(|(i, _)| *i == id), "indexed for the payer (sign-in, revocation)");
    let hits = p.origin_hits();
    assert_eq!(run(&cfg, &p, request("/paid", &[("x402-pass", &token)])).status(), 200, "and it works");
    assert_eq!((p.origin_hits(), p.settles()), (hits + 1, 1));
}

#[test]
fn a_verify_failover_that_outlasts_the_lease_never_settles_or_serves() {
    let cfg = config();
    let p = Rc::new(fake());
    let h = payment_with(&cfg, 0, 82, 82, 300);
    // Lease: origin 30 + 2 × facilitator 30 + 10 = 100 s; the verify chain takes 101.
    p.verify_takes.set(101);
    let res = paid(&cfg, &p, &h);
    // Another copy may hold the authorization by now: not "nothing was charged", but unknown.
    assert_eq!(res.status(), 502);
    assert_eq!(body_json(&res)["error"], "settlement_outcome_unknown");
    assert!(!String::from_utf8_lossy(res.body()).contains("paid content"));
    assert!(!String::from_utf8_lossy(res.body()).contains("nothing was charged"));
    assert_eq!(p.settles(), 0, "the send mark needs the lease: never sent");
    p.verify_takes.set(0);
    assert_eq!(paid(&cfg, &p, &h).status(), 200, "the payment itself still works, once");
    assert_eq!(paid(&cfg, &p, &h).status(), 402);
    assert_eq!(p.settles(), 1);
}

#[test]
fn a_request_that_is_not_idempotent_is_never_run_twice_when_its_client_left() {
    let cfg = config_with(json!([{ "route": "POST /paid", "price": "$0.01" }, { "route": "GET /get", "price": "$0.01" }]));
    let p = Rc::new(fake());
    let h = payment_with(&cfg, 0, 83, 1, 120);
    p.gone_during_settle.set(true);
    run(&cfg, &p, request_with("POST", "/paid", &[("payment-signature", &h)]));
    p.gone_during_settle.set(false);
    p.gone.set(false);
    let retry = run(&cfg, &p, request_with("POST", "/paid", &[("payment-signature", &h)]));
    assert_eq!(retry.status(), 402, "spent: the origin already ran it once");
    assert_eq!((p.origin_hits(), p.settles()), (1, 1));
    // A GET is retrievable by running it again.
    let g = payment_with(&cfg, 1, 83, 2, 120);
    p.gone_during_settle.set(true);
    run(&cfg, &p, request("/get", &[("payment-signature", &g)]));
    p.gone_during_settle.set(false);
    p.gone.set(false);
    assert_eq!(run(&cfg, &p, request("/get", &[("payment-signature", &g)])).status(), 200);
    assert_eq!((p.origin_hits(), p.settles()), (3, 2));
}

#[test]
fn a_verify_that_fails_after_the_lease_ran_out_never_says_nothing_was_charged() {
    let cfg = config();
    let p = Rc::new(fake());
    let h = payment_with(&cfg, 0, 84, 84, 300);
    p.verify_takes.set(101);
    p.queue_verify(reply(503, "busy"));
    let res = paid(&cfg, &p, &h);
    assert_eq!(res.status(), 409, "another copy may hold the authorization now");
    assert_eq!(body_json(&res)["error"], "payment_in_flight");
    assert!(!String::from_utf8_lossy(res.body()).contains("nothing was charged"));
    assert_eq!((p.settles(), p.origin_hits()), (0, 0));
}

#[test]
fn segments_of_only_parameters_are_refused_only_where_they_could_be_priced() {
    let cfg = config_vars(json!({ "ROUTES": [{ "route": "GET /users/:id/profile", "price": "$0.01" }, { "route": "GET /premium", "price": "$0.01" }] }));
    let p = Rc::new(fake());
    // Priced when the segment counts (Express) or when it does not (Tomcat): refused, untouched.
    for path in ["/users/;x/profile", "/;/premium", "/premium/;", "/users/;/profile"] {
        let res = run(&cfg, &p, request(path, &[]));
        assert_eq!(res.status(), 400, "{path}");
        assert_eq!(body_json(&res)["error"], "invalid_path", "{path}");
    }
    assert_eq!(p.origin_hits(), 0);
    // Unpriced either way (a Java session id on the application's root): the origin's.
    for path in ["/;jsessionid=ABC", "/app/;jsessionid=ABC", "/users/;x"] {
        assert_eq!(run(&cfg, &p, request(path, &[])).status(), 200, "{path}");
    }
    assert_eq!(p.origin_hits(), 3);
}

/// A paid answer is for its payer: `no-store`, and the origin's CDN cache directives (which a
/// CDN in front of the Worker would obey over `Cache-Control`, RFC 9213) are removed.
#[test]
fn a_paid_answer_carries_no_cache_directive_a_cdn_would_obey() {
    let cfg = config();
    let p = Rc::new(fake());
    for (name, value) in [("cdn-cache-control", "max-age=3600"), ("cloudflare-cdn-cache-control", "max-age=3600"), ("surrogate-control", "max-age=3600")] {
        p.origin_response_headers.borrow_mut().push((name, value.into()));
    }
    let res = paid(&cfg, &p, &payment(&cfg, 0, 63));
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    for name in ["cdn-cache-control", "cloudflare-cdn-cache-control", "surrogate-control"] {
        assert!(res.headers().get(name).is_none(), "{name}");
    }
    // A free answer keeps the origin's caching.
    let res = run(&cfg, &p, request("/elsewhere", &[]));
    assert_eq!(res.headers()["cdn-cache-control"], "max-age=3600");
}

/// With a list of browser origins (or `none`), a priced answer carries the paywall's CORS only:
/// an origin that reflects any `Origin` with credentials cannot widen the list.
#[test]
fn the_origin_list_is_the_paywall_s_on_priced_answers() {
    for (policy, listed_gets) in [("https://app.example", Some("https://app.example")), ("none", None)] {
        let cfg = config_vars(json!({ "CORS_ALLOWED_ORIGINS": policy, "ROUTES": [{ "route": "GET /paid", "price": "$0.01" }] }));
        for (n, origin) in [(64u8, "https://evil.example"), (65, "https://app.example")] {
            let p = Rc::new(fake());
            p.origin_response_headers.borrow_mut().push(("access-control-allow-origin", origin.into()));
            p.origin_response_headers.borrow_mut().push(("access-control-allow-credentials", "true".into()));
            let res = run(&cfg, &p, request("/paid", &[("origin", origin), ("payment-signature", &payment(&cfg, 0, n))]));
            assert_eq!(res.status(), 200);
            let expected = if origin == "https://app.example" { listed_gets } else { None };
            assert_eq!(res.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap()), expected, "{policy} {origin}");
            assert!(res.headers().get("access-control-allow-credentials").is_none(), "{policy} {origin}");
        }
    }
}
