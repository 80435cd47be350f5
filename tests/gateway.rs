//! The pipeline on the host, with in-memory fakes standing in for the origin, facilitator and KV
//! so that faults (timeouts, KV outages, expiry) can be injected. The real path runs in
//! `tests/*.test.mjs`.

mod common;

use std::rc::Rc;

use common::*;
use serde_json::Value;
use x402_edge_paywall::evm::hex_0x;
use x402_edge_paywall::facilitator::UpstreamError;
use x402_edge_paywall::x402::decode_header_json;

#[test]
fn paid_request_is_forwarded_on_the_canonical_path_and_settled_once() {
    let cfg = config();
    let p = Rc::new(fake());
    let h = payment(&cfg, 0, 7);
    let res = run(&cfg, &p, request("/x/../PAID?q=1", &[("payment-signature", &h), ("x-keep", "1")]));
    assert_eq!(res.status(), 200);
    assert_eq!(res.body(), b"{\"data\":\"paid content\"}");
    assert_eq!(res.headers()["cache-control"], "no-store", "a paid response is never cached");
    let settle = decode_header_json(res.headers()["payment-response"].to_str().unwrap()).unwrap();
    assert_eq!(settle["success"], true);
    let payer = common::payer(7);
    assert_eq!(settle["payer"], payer.to_checksum());

    let calls = p.origin_calls.borrow();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].uri().to_string(), "https://origin.test/base/PAID?q=1");
    assert!(calls[0].headers().get("payment-signature").is_none());
    assert_eq!(calls[0].headers()["x-keep"], "1");
    // A first-time payer is verified (auto policy), then settled once, after the origin.
    assert_eq!(*p.order.borrow(), ["verify", "origin", "settle"]);
    let fc = p.facilitator_calls.borrow();
    let settle = &fc[1].1;
    assert_eq!(settle["x402Version"], 2);
    assert_eq!(settle["paymentRequirements"], cfg.routes[0].accepts[0].requirements_json);
    assert_eq!(settle["paymentPayload"], decode_header_json(&h).unwrap(), "payload forwarded verbatim");
    assert_eq!(fc[0].1, fc[1].1, "/verify gets the same body");
}

#[test]
fn settle_timeout_is_504_outcome_unknown_with_the_payment_identity() {
    let cfg = config();
    let p = Rc::new(fake());
    p.queue_settle(Err(UpstreamError::Timeout { seconds: 30 }));
    let res = run(&cfg, &p, request("/paid", &[("payment-signature", &payment(&cfg, 0, 5))]));
    assert_eq!(res.status(), 504);
    assert!(res.headers().get("payment-required").is_none(), "never a fresh challenge");
    let body: Value = serde_json::from_slice(res.body()).unwrap();
    assert_eq!(body["error"], "settlement_outcome_unknown");
    assert_eq!(body["payment"]["nonce"], hex_0x(&[5u8; 32]));
    assert!(!String::from_utf8_lossy(res.body()).contains("paid content"));
}

#[test]
fn settle_refusal_is_402_with_payment_response_and_no_content() {
    let cfg = config();
    let p = Rc::new(fake());
    p.queue_settle(Ok(x402_edge_paywall::facilitator::HttpReply {
        status: 200,
        body: br#"{"success":false,"errorReason":"invalid_exact_evm_nonce_already_used","transaction":"","network":"eip155:84532"}"#.to_vec(),
    }));
    let res = run(&cfg, &p, request("/paid", &[("payment-signature", &payment(&cfg, 0, 5))]));
    assert_eq!(res.status(), 402);
    let pr = decode_header_json(res.headers()["payment-response"].to_str().unwrap()).unwrap();
    assert_eq!(pr["success"], false);
    assert_eq!(pr["errorReason"], "invalid_exact_evm_nonce_already_used");
    assert!(!String::from_utf8_lossy(res.body()).contains("paid content"));
}

#[test]
fn origin_error_is_not_settled() {
    let cfg = config();
    let p = Rc::new(fake());
    p.origin_status.set(503);
    let res = run(&cfg, &p, request("/paid", &[("payment-signature", &payment(&cfg, 0, 5))]));
    assert_eq!(res.status(), 503);
    assert_eq!(p.settles(), 0);
}

#[test]
fn payment_for_one_route_does_not_pay_another() {
    let cfg = config();
    let p = Rc::new(fake());
    let res = run(&cfg, &p, request("/other/x", &[("payment-signature", &payment(&cfg, 0, 5))]));
    assert_eq!(res.status(), 402);
    let pr = decode_header_json(res.headers()["payment-required"].to_str().unwrap()).unwrap();
    assert!(pr["error"].as_str().unwrap().starts_with("invalid_payment_requirements"));
    assert!(p.origin_calls.borrow().is_empty());
}

#[test]
fn ambiguous_paths_are_400_and_reach_nobody() {
    let cfg = config();
    let p = Rc::new(fake());
    for path in ["/paid%2f..", "/a\\paid", "/%2570aid"] {
        let res = run(&cfg, &p, request(path, &[]));
        assert_eq!(res.status(), 400, "{path}");
    }
    assert!(p.origin_calls.borrow().is_empty());
}

#[test]
fn a_description_holding_nul_characters_cannot_pose_as_the_challenge_url() {
    let cfg = config_with(serde_json::json!([{ "route": "GET /paid", "price": "$0.01", "description": "a\u{0}0\u{0}b\u{0}1\u{0}c" }]));
    let p = std::rc::Rc::new(fake());
    for _ in 0..2 {
        let res = run(&cfg, &p, request("/paid?x=1", &[]));
        let header = x402_edge_paywall::x402::decode_header_json(res.headers()["payment-required"].to_str().unwrap()).unwrap();
        assert_eq!(header["resource"]["description"], "a\u{0}0\u{0}b\u{0}1\u{0}c");
        assert_eq!(header["resource"]["url"], "https://paywall.test/paid?x=1");
    }
}

#[test]
fn challenges_laid_out_ahead_by_prepare_are_byte_identical_to_first_use_ones() {
    let routes = serde_json::json!([
        { "route": "GET /paid", "price": "$0.01", "description": "laid out at start-up" },
        { "route": "/any-method/*", "price": "$0.02", "mimeType": "text/plain" },
        { "route": "POST /nul", "price": "$0.03", "description": "a\u{0}b" },
        { "route": "GET /open", "free": true }
    ]);
    let prepared = config_with(routes.clone());
    // Laid out into the isolate state of the platform that then serves them.
    let isolate = Rc::new(fake());
    x402_edge_paywall::gateway::prepare(&prepared, &isolate.isolate);
    x402_edge_paywall::gateway::prepare(&prepared, &isolate.isolate); // idempotent
    let held = |i: usize| isolate.isolate.derived.of(&prepared).layouts(i).map_or(0, |l| l.len());
    assert_eq!((held(0), held(1), held(2), held(3)), (1, 1, 0, 0), "one per priced route (GET for any method), none for U+0000 or a free route");
    let lazy = config_with(routes);
    for (method, path) in [("GET", "/paid?x=1"), ("GET", "/any-method/a"), ("PUT", "/any-method/b"), ("POST", "/nul")] {
        let a = run(&prepared, &isolate, request_with(method, path, &[]));
        let b = run(&lazy, &Rc::new(fake()), request_with(method, path, &[]));
        assert_eq!(a.status(), 402, "{method} {path}");
        assert_eq!(a.headers()["payment-required"], b.headers()["payment-required"], "{method} {path}");
        assert_eq!(a.body(), b.body(), "{method} {path}");
    }
}
