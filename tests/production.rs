//! What production needs, on the host: facilitator failover (verify fails over, settle never
//! after the request may have reached a facilitator) and CDP JWT authentication, counting
//! facilitator attempts. The real path (WebCrypto signatures checked by a facilitator that
//! verifies them, two facilitators on the local chain) runs in `tests/production.test.mjs`.

mod common;

use std::rc::Rc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::*;
use serde_json::{json, Value};
use x402_edge_paywall::config::Config;
use x402_edge_paywall::facilitator::UpstreamError;

fn two_facilitators(verify: &str) -> Rc<Config> {
    config_vars(json!({
        "FACILITATOR_URL": "https://a.test, https://b.test",
        "ROUTES": [{ "route": "GET /paid", "price": "$0.01", "verify": verify }],
    }))
}

fn attempts(p: &Fake) -> Vec<String> {
    p.facilitator_attempts.borrow().iter().map(|(u, _)| u.clone()).collect()
}

#[test]
fn verify_fails_over_and_settlement_goes_to_the_facilitator_that_answered() {
    let cfg = two_facilitators("always");
    let p = Rc::new(fake());
    p.facilitators_down.borrow_mut().push("https://a.test".into());
    let res = run(&cfg, &p, request("/paid", &[("payment-signature", &payment(&cfg, 0, 7))]));
    assert_eq!(res.status(), 200);
    assert_eq!(attempts(&p), ["https://a.test/verify", "https://b.test/verify", "https://b.test/settle"], "a is skipped once it failed");
    assert_eq!((p.verifies(), p.settles(), p.origin_hits()), (1, 1, 1));
    assert!(p.logs.borrow().iter().any(|l| l.contains("facilitator https://a.test failed on /verify")), "the failure is logged");
}

#[test]
fn settle_never_fails_over_once_the_request_may_have_reached_a_facilitator() {
    let cfg = two_facilitators("local");
    let p = Rc::new(fake());
    // a receives /settle and never answers.
    p.queue_settle(Err(UpstreamError::Timeout { seconds: 30 }));
    let header = payment(&cfg, 0, 7);
    let res = run(&cfg, &p, request("/paid", &[("payment-signature", &header)]));
    assert_eq!(res.status(), 504);
    assert_eq!(body_json(&res)["error"], "settlement_outcome_unknown");
    assert_eq!(attempts(&p), ["https://a.test/settle"], "b is not called after a may have received it");

    // Connection lost: just as unknown (workerd reports a refused connection and one lost after
    // sending alike), so b is still not called.
    let p = Rc::new(fake());
    p.facilitators_down.borrow_mut().push("https://a.test".into());
    let res = run(&cfg, &p, request("/paid", &[("payment-signature", &header)]));
    assert_eq!(res.status(), 502);
    assert_eq!(attempts(&p), ["https://a.test/settle"]);
    // The retry of the same payment: a is being skipped, so b settles it, once.
    let res = run(&cfg, &p, request("/paid", &[("payment-signature", &header)]));
    assert_eq!(res.status(), 200);
    assert_eq!(attempts(&p), ["https://a.test/settle", "https://b.test/settle"]);
    assert_eq!((p.settles(), p.origin_hits()), (1, 2));
}

#[test]
fn a_refusal_is_an_answer_and_is_not_failed_over() {
    let cfg = two_facilitators("always");
    let p = Rc::new(fake());
    p.queue_verify(reply(400, r#"{"isValid":false,"invalidReason":"insufficient_funds"}"#));
    let res = run(&cfg, &p, request("/paid", &[("payment-signature", &payment(&cfg, 0, 7))]));
    assert_eq!(res.status(), 402);
    assert_eq!(attempts(&p), ["https://a.test/verify"]);
    assert_eq!(p.origin_hits(), 0);
}

fn jwt_parts(authorization: &str) -> (Value, Value, Vec<u8>) {
    let token = authorization.strip_prefix("Bearer ").expect("a bearer token");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS");
    let json = |s: &str| serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
    (json(parts[0]), json(parts[1]), URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
}

#[test]
fn cdp_authentication_signs_a_fresh_jwt_bound_to_each_endpoint() {
    let key_id = "organizations/0000/apiKeys/1111";
    let cfg = config_vars(json!({
        "FACILITATOR_URL": "https://api.cdp.coinbase.com/platform/v2/x402",
        "FACILITATOR_AUTH": "cdp",
        "CDP_API_KEY_ID": key_id,
        "CDP_API_KEY_SECRET": STANDARD.encode([9u8; 64]),
        "ROUTES": [{ "route": "GET /paid", "price": "$0.01", "verify": "always" }],
    }));
    let p = Rc::new(fake());
    assert_eq!(run(&cfg, &p, request("/paid", &[("payment-signature", &payment(&cfg, 0, 7))])).status(), 200);
    let calls = p.facilitator_attempts.borrow().clone();
    assert_eq!(calls.len(), 2);
    let mut nonces = Vec::new();
    for ((url, auth), endpoint) in calls.iter().zip(["verify", "settle"]) {
        assert_eq!(url, &format!("https://api.cdp.coinbase.com/platform/v2/x402/{endpoint}"));
        let (header, claims, signature) = jwt_parts(auth.as_deref().unwrap());
        assert_eq!((header["alg"].as_str(), header["kid"].as_str(), header["typ"].as_str()), (Some("EdDSA"), Some(key_id), Some("JWT")));
        assert_eq!(claims["uris"], json!([format!("POST api.cdp.coinbase.com/platform/v2/x402/{endpoint}")]));
        assert_eq!((claims["sub"].as_str(), claims["iss"].as_str()), (Some(key_id), Some("cdp")));
        assert_eq!((claims["nbf"].as_u64(), claims["exp"].as_u64()), (Some(NOW), Some(NOW + 120)));
        assert_eq!(signature, vec![0xab; 64], "the platform's signature");
        nonces.push(header["nonce"].as_str().unwrap().to_string());
    }
    assert_ne!(nonces[0], nonces[1], "a fresh nonce per call");
    // What was signed is exactly the token's first two parts.
    let signed = p.signed.borrow();
    assert_eq!(signed.len(), 2);
    assert!(calls[0].1.as_deref().unwrap().starts_with(&format!("Bearer {}.", signed[0].1)));
}

#[test]
fn facilitator_configuration_errors_are_clear() {
    let try_vars = |vars: Value| {
        let mut map = json!({
            "ORIGIN_URL": "https://origin.test",
            "PAY_TO": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "ROUTES": [{ "route": "GET /paid", "price": "$0.01" }],
        });
        for (k, v) in vars.as_object().unwrap() {
            map[k] = v.clone();
        }
        Config::from_vars(map.as_object().unwrap())
    };
    let e = |vars: Value| try_vars(vars).unwrap_err().0;
    assert!(e(json!({ "FACILITATOR_URL": "https://a.test", "FACILITATOR_AUTH": "cdp" })).contains("CDP_API_KEY_ID"));
    assert!(e(json!({ "FACILITATOR_URL": "https://a.test", "FACILITATOR_AUTH": "cdp", "CDP_API_KEY_ID": "k", "CDP_API_KEY_SECRET": "short" })).contains("CDP_API_KEY_SECRET"));
    assert!(e(json!({ "FACILITATOR_URL": "https://a.test, https://a.test/" })).contains("twice"));
    assert!(e(json!({ "FACILITATOR_URL": "a,b,c,d,e" })).contains("1 to 4"));
    assert!(e(json!({ "FACILITATOR_URL": [{ "url": "https://a.test", "auth": "header" }] })).contains("FACILITATOR_AUTH"));
    assert!(e(json!({ "FACILITATOR_URL": [{ "url": "https://a.test", "token": "x" }] })).contains("unknown key"));
    let secret_leak = e(json!({ "FACILITATOR_URL": "https://a.test", "FACILITATOR_AUTH": "cdp", "CDP_API_KEY_ID": "k", "CDP_API_KEY_SECRET": "c2VjcmV0LXNlY3JldA==" }));
    assert!(!secret_leak.contains("c2VjcmV0"), "errors never quote the secret: {secret_leak}");
    assert!(e(json!({ "FACILITATOR_URL": [{ "url": "https://a.test", "auth": "FACILITATOR_AUTH_B" }] })).contains("names the secret FACILITATOR_AUTH_B, which is not set"));
    assert!(e(json!({ "FACILITATOR_URL": [{ "url": "https://a.test", "auth": "ADMIN_TOKEN" }], "ADMIN_TOKEN": "x".repeat(32) })).contains("auth must be"), "only facilitator secrets can be named");
    assert!(e(json!({ "FACILITATOR_URL": [{ "url": "https://a.test", "auth": "FACILITATOR_AUTH_" }] })).contains("auth must be"));
    // Per-entry authentication: a CDP facilitator first, a self-hosted one with its own secret
    // second, a third naming FACILITATOR_AUTH explicitly, a fourth with nothing.
    let cfg = try_vars(json!({
        "FACILITATOR_URL": [
            { "url": "https://api.cdp.coinbase.com/platform/v2/x402", "auth": "cdp" },
            { "url": "https://facilitator.example", "auth": "FACILITATOR_AUTH_SELF_HOSTED" },
            { "url": "https://c.example", "auth": "header" },
            "https://d.example"
        ],
        "FACILITATOR_AUTH": "Bearer primary",
        "FACILITATOR_AUTH_SELF_HOSTED": "Bearer self-hosted",
        "CDP_API_KEY_ID": "k",
        "CDP_API_KEY_SECRET": STANDARD.encode([1u8; 64]),
    }))
    .unwrap();
    assert_eq!(format!("{:?}", cfg.facilitators.iter().map(|f| &f.auth).collect::<Vec<_>>()), "[cdp(k), header, header, none]");
}

/// Which `Authorization` each facilitator URL received, in call order.
fn authorizations(p: &Fake) -> Vec<(String, Option<String>)> {
    p.facilitator_attempts.borrow().clone()
}

#[test]
fn each_facilitator_receives_only_the_credentials_configured_for_it() {
    let routes = json!([{ "route": "GET /paid", "price": "$0.01", "verify": "always" }]);
    // The single-facilitator form, now in a list: FACILITATOR_AUTH goes to the first only.
    let cfg = config_vars(json!({ "FACILITATOR_URL": "https://a.test, https://b.test", "FACILITATOR_AUTH": "Bearer primary", "ROUTES": routes }));
    let p = Rc::new(fake());
    p.facilitators_down.borrow_mut().push("https://a.test".into());
    assert_eq!(run(&cfg, &p, request("/paid", &[("payment-signature", &payment(&cfg, 0, 7))])).status(), 200);
    assert_eq!(
        authorizations(&p),
        [
            ("https://a.test/verify".to_string(), Some("Bearer primary".to_string())),
            ("https://b.test/verify".to_string(), None),
            ("https://b.test/settle".to_string(), None),
        ],
        "the fallback never receives the primary's secret"
    );
    assert_eq!((p.verifies(), p.settles(), p.origin_hits()), (1, 1, 1));

    // Each facilitator with its own secret; the first two down so all three are called.
    let cfg = config_vars(json!({
        "FACILITATOR_URL": [
            "https://a.test",
            { "url": "https://b.test", "auth": "none" },
            { "url": "https://c.test", "auth": "FACILITATOR_AUTH_C" }
        ],
        "FACILITATOR_AUTH": "Bearer primary",
        "FACILITATOR_AUTH_C": "Basic Yzpj",
        "ROUTES": routes,
    }));
    let p = Rc::new(fake());
    p.facilitators_down.borrow_mut().extend(["https://a.test".to_string(), "https://b.test".to_string()]);
    assert_eq!(run(&cfg, &p, request("/paid", &[("payment-signature", &payment(&cfg, 0, 8))])).status(), 200);
    assert_eq!(
        authorizations(&p),
        [
            ("https://a.test/verify".to_string(), Some("Bearer primary".to_string())),
            ("https://b.test/verify".to_string(), None),
            ("https://c.test/verify".to_string(), Some("Basic Yzpj".to_string())),
            ("https://c.test/settle".to_string(), Some("Basic Yzpj".to_string())),
        ]
    );
    let received = |url: &str| -> Vec<Option<String>> { authorizations(&p).into_iter().filter(|(u, _)| u.starts_with(url)).map(|(_, a)| a).collect() };
    assert!(received("https://c.test").iter().all(|a| a.as_deref() == Some("Basic Yzpj")), "c only ever got its own");
    assert!(!received("https://b.test").iter().any(Option::is_some), "b got nothing");
    assert_eq!((p.verifies(), p.settles(), p.origin_hits()), (1, 1, 1));
}

// ---- Decisions: one per priced request, nothing secret in them ---------------------------------

fn outcomes(p: &Fake) -> Vec<(String, Option<String>)> {
    p.decisions.borrow().iter().map(|d| (d.outcome.as_str().to_string(), d.reason.clone())).collect()
}

#[test]
fn every_priced_request_records_one_decision_without_secrets() {
    let cfg = config();
    let p = Rc::new(fake());
    let header = payment(&cfg, 0, 7);
    run(&cfg, &p, request("/paid", &[]));
    let paid = run(&cfg, &p, request("/paid", &[("payment-signature", &header)]));
    assert_eq!(paid.status(), 200);
    run(&cfg, &p, request("/paid", &[("payment-signature", &header)]));
    p.queue_settle(reply(200, r#"{"success":false,"errorReason":"insufficient_funds","transaction":"","network":"eip155:84532"}"#));
    run(&cfg, &p, request("/paid", &[("payment-signature", &payment_with(&cfg, 0, 8, 1, 120))]));
    run(&cfg, &p, request("/paid", &[("payment-signature", "bm90IGpzb24=")]));
    run(&cfg, &p, request("/free-path", &[]));
    assert_eq!(
        outcomes(&p),
        [
            ("challenge".to_string(), Some("no_payment".to_string())),
            ("paid".into(), None),
            ("refused".into(), Some("invalid_transaction_state".into())),
            ("refused".into(), Some("insufficient_funds".into())),
            ("refused".into(), Some("invalid_payload".into())),
        ],
        "one decision per priced request, none for an unpriced one"
    );
    let d = p.decisions.borrow()[1].clone();
    assert_eq!(d.route, "GET /paid");
    assert_eq!(d.payer.as_deref(), Some(payer(7).to_checksum().as_str()));
    assert_eq!((d.amount.as_deref(), d.network.as_deref()), (Some("10000"), Some("eip155:84532")));
    assert_eq!(d.origin_status, Some(200));
    assert_eq!(d.transaction.as_deref(), Some(tx(1).as_str()));
    assert_eq!(d.facilitator_ms, Some(0), "the fake clock does not move; the field is there");
    for d in p.decisions.borrow().iter() {
        let line = d.log_line();
        assert!(!line.contains(&header) && !line.contains("signature") && !line.contains("bm90"), "{line}");
    }
}

#[test]
fn shadow_mode_forwards_everything_and_records_what_it_would_have_charged() {
    let cfg = config_vars(json!({ "MODE": "shadow" }));
    let p = Rc::new(fake());
    assert_eq!(run(&cfg, &p, request("/paid", &[])).status(), 200);
    assert_eq!(run(&cfg, &p, request("/paid", &[("payment-signature", &payment(&cfg, 0, 7))])).status(), 200);
    assert_eq!(run(&cfg, &p, request("/paid", &[("payment-signature", &payment_with(&cfg, 0, 7, 7, 5))])).status(), 200);
    assert_eq!(p.origin_hits(), 3);
    assert_eq!((p.verifies(), p.settles()), (0, 0), "nothing verified remotely or settled");
    assert!(p.ledger.borrow().is_empty(), "nothing reserved");
    assert!(p.origin_calls.borrow().iter().all(|r| !r.headers().contains_key("payment-signature")), "payment headers never reach the origin");
    let ds = p.decisions.borrow();
    assert_eq!(ds.iter().map(|d| (d.outcome.as_str(), d.reason.as_deref())).collect::<Vec<_>>(), [
        ("shadow", Some("no_payment")),
        ("shadow", Some("valid_payment")),
        ("shadow", Some("invalid_exact_evm_payload_authorization_valid_before")),
    ]);
    assert!(ds.iter().all(|d| d.amount.as_deref() == Some("10000") && d.origin_status == Some(200)));
    assert_eq!(ds[0].payer, None);
    assert_eq!(ds[1].payer.as_deref(), Some(payer(7).to_checksum().as_str()));
}

fn limited(limits: Value) -> Rc<Config> {
    config_vars(json!({ "ROUTES": [{ "route": "GET /paid", "price": "$0.01", "rateLimit": limits }, { "route": "GET /open", "price": "$0.01" }] }))
}

#[test]
fn challenges_over_the_per_ip_limit_get_429_and_touch_nothing() {
    let cfg = limited(json!({ "challenge": "CHALLENGES" }));
    let p = Rc::new(fake());
    p.limits.borrow_mut().insert("CHALLENGES".into(), 2);
    let from = |ip: &str| run(&cfg, &p, request("/paid", &[("cf-connecting-ip", ip)]));
    assert_eq!(from("192.0.2.1").status(), 402);
    assert_eq!(from("192.0.2.1").status(), 402);
    let over = from("192.0.2.1");
    assert_eq!(over.status(), 429);
    assert_eq!(over.headers()["retry-after"], "10");
    assert_eq!(body_json(&over)["error"], "rate_limited");
    assert_eq!(from("192.0.2.2").status(), 402, "per client IP");
    assert_eq!(run(&cfg, &p, request("/open", &[("cf-connecting-ip", "192.0.2.1")])).status(), 402, "per route");
    // A paying request from the limited IP is not a challenge: it is served.
    assert_eq!(run(&cfg, &p, request("/paid", &[("cf-connecting-ip", "192.0.2.1"), ("payment-signature", &payment(&cfg, 0, 7))])).status(), 200);
    assert_eq!(p.decisions.borrow().iter().filter(|d| d.outcome.as_str() == "rate_limited").count(), 1);
}

#[test]
fn failed_payments_over_the_per_ip_limit_block_that_ip_before_the_facilitator() {
    let cfg = limited(json!({ "failed": "FAILED" }));
    let p = Rc::new(fake());
    p.limits.borrow_mut().insert("FAILED".into(), 2);
    let ip = ("cf-connecting-ip", "198.51.100.7");
    for _ in 0..2 {
        assert_eq!(run(&cfg, &p, request("/paid", &[ip, ("payment-signature", "bm90IGpzb24=")])).status(), 402);
    }
    let third = run(&cfg, &p, request("/paid", &[ip, ("payment-signature", "bm90IGpzb24=")]));
    assert_eq!(third.status(), 429);
    assert_eq!(third.headers()["retry-after"], "60");
    // Now even a valid payment from that IP is refused before anything runs.
    let blocked = run(&cfg, &p, request("/paid", &[ip, ("payment-signature", &payment(&cfg, 0, 7))]));
    assert_eq!(blocked.status(), 429);
    assert_eq!((p.origin_hits(), p.verifies(), p.settles()), (0, 0, 0));
    assert!(p.ledger.borrow().is_empty(), "not even reserved");
    // Another IP pays normally; after the block, this one does too.
    assert_eq!(run(&cfg, &p, request("/paid", &[("cf-connecting-ip", "198.51.100.8"), ("payment-signature", &payment(&cfg, 0, 8))])).status(), 200);
    p.now.set(NOW + 61);
    assert_eq!(run(&cfg, &p, request("/paid", &[ip, ("payment-signature", &payment_with(&cfg, 0, 7, 9, 300))])).status(), 200);
}

#[test]
fn paid_attempts_over_the_per_payer_limit_get_429_before_the_ledger() {
    let cfg = limited(json!({ "paid": "PAYERS" }));
    let p = Rc::new(fake());
    p.limits.borrow_mut().insert("PAYERS".into(), 1);
    assert_eq!(run(&cfg, &p, request("/paid", &[("payment-signature", &payment_with(&cfg, 0, 7, 1, 120))])).status(), 200);
    let over = run(&cfg, &p, request("/paid", &[("payment-signature", &payment_with(&cfg, 0, 7, 2, 120))]));
    assert_eq!(over.status(), 429);
    assert_eq!((p.origin_hits(), p.settles()), (1, 1));
    assert_eq!(run(&cfg, &p, request("/paid", &[("payment-signature", &payment_with(&cfg, 0, 8, 3, 120))])).status(), 200, "per payer");
    // A limiter that cannot be used never blocks a payment.
    let cfg = limited(json!({ "paid": "MISSING" }));
    let p = Rc::new(fake());
    assert_eq!(run(&cfg, &p, request("/paid", &[("payment-signature", &payment(&cfg, 0, 7))])).status(), 200);
    assert!(p.logs.borrow().iter().any(|l| l.contains("rate limiter MISSING unavailable")));
}

#[test]
fn rate_limit_and_mode_configuration_errors_are_clear() {
    let e = |vars: Value| Config::from_vars(&{
        let mut m = json!({ "ORIGIN_URL": "https://o.test", "FACILITATOR_URL": "https://f.test", "PAY_TO": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "ROUTES": [{ "route": "GET /paid", "price": "$0.01" }] });
        for (k, v) in vars.as_object().unwrap() { m[k] = v.clone(); }
        m.as_object().unwrap().clone()
    }).unwrap_err().0;
    assert!(e(json!({ "MODE": "audit" })).contains("MODE"));
    assert!(e(json!({ "RATE_LIMITS": { "challenges": "X" } })).contains("unknown field"));
    assert!(e(json!({ "RATE_LIMITS": { "paid": "not a name" } })).contains("binding name"));
    assert!(e(json!({ "ROUTES": [{ "route": "GET /paid", "price": "$0.01", "rateLimit": { "paid": 3 } }] })).contains("rateLimit"));
    // RATE_LIMITS is the default; a route's own rateLimit replaces it.
    let cfg = config_vars(json!({ "RATE_LIMITS": "{\"challenge\":\"C\"}", "ROUTES": [{ "route": "GET /a", "price": "$0.01" }, { "route": "GET /b", "price": "$0.01", "rateLimit": { "paid": "P" } }] }));
    assert_eq!(cfg.routes[0].rate_limits.challenge.as_deref(), Some("C"));
    assert_eq!((cfg.routes[1].rate_limits.challenge.as_deref(), cfg.routes[1].rate_limits.paid.as_deref()), (None, Some("P")));
}

#[test]
fn decision_log_payments_leaves_out_plain_challenges_but_keeps_their_data_points() {
    // "payments" is the default: written out, and left unset.
    for cfg in [config_vars(json!({ "DECISION_LOG": "payments" })), config()] {
        let p = Rc::new(fake());
        run(&cfg, &p, request("/paid", &[]));
        run(&cfg, &p, request("/paid", &[("payment-signature", &payment(&cfg, 0, 7))]));
        let lines: Vec<String> = p.logs.borrow().iter().filter(|l| l.contains(r#""x402":"decision""#)).cloned().collect();
        assert_eq!(lines.len(), 1, "only the payment is logged: {lines:?}");
        assert!(lines[0].contains(r#""outcome":"paid""#));
        assert_eq!(outcomes(&p).len(), 2, "both are recorded as data points");
    }
    let all = config_vars(json!({ "DECISION_LOG": "all" }));
    let p = Rc::new(fake());
    run(&all, &p, request("/paid", &[]));
    assert_eq!(p.logs.borrow().iter().filter(|l| l.contains(r#""outcome":"challenge""#)).count(), 1, "all logs challenges");
    let e = Config::from_vars(
        json!({ "ORIGIN_URL": "https://o.test", "FACILITATOR_URL": "https://f.test", "PAY_TO": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "ROUTES": [{ "route": "GET /paid", "price": "$0.01" }], "DECISION_LOG": "some" })
        .as_object()
        .unwrap(),
    )
    .unwrap_err()
    .0;
    assert!(e.contains("DECISION_LOG"));
}
