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
        "FACILITATOR_URL": "http://a.test, http://b.test",
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
    p.facilitators_down.borrow_mut().push("http://a.test".into());
    let res = run(&cfg, &p, request("/paid", &[("payment-signature", &payment(&cfg, 0, 7))]));
    assert_eq!(res.status(), 200);
    assert_eq!(attempts(&p), ["http://a.test/verify", "http://b.test/verify", "http://b.test/settle"], "a is skipped once it failed");
    assert_eq!((p.verifies(), p.settles(), p.origin_hits()), (1, 1, 1));
    assert!(p.logs.borrow().iter().any(|l| l.contains("facilitator http://a.test failed on /verify")), "the failure is logged");
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
    assert_eq!(attempts(&p), ["http://a.test/settle"], "b is not called after a may have received it");

    // Connection lost: just as unknown (workerd reports a refused connection and one lost after
    // sending alike), so b is still not called.
    let p = Rc::new(fake());
    p.facilitators_down.borrow_mut().push("http://a.test".into());
    let res = run(&cfg, &p, request("/paid", &[("payment-signature", &header)]));
    assert_eq!(res.status(), 502);
    assert_eq!(attempts(&p), ["http://a.test/settle"]);
    // The retry of the same payment: a is being skipped, so b settles it, once.
    let res = run(&cfg, &p, request("/paid", &[("payment-signature", &header)]));
    assert_eq!(res.status(), 200);
    assert_eq!(attempts(&p), ["http://a.test/settle", "http://b.test/settle"]);
    assert_eq!((p.settles(), p.origin_hits()), (1, 2));
}

#[test]
fn a_refusal_is_an_answer_and_is_not_failed_over() {
    let cfg = two_facilitators("always");
    let p = Rc::new(fake());
    p.queue_verify(reply(400, r#"{"isValid":false,"invalidReason":"insufficient_funds"}"#));
    let res = run(&cfg, &p, request("/paid", &[("payment-signature", &payment(&cfg, 0, 7))]));
    assert_eq!(res.status(), 402);
    assert_eq!(attempts(&p), ["http://a.test/verify"]);
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
            "ORIGIN_URL": "http://origin.test",
            "PAY_TO": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "ROUTES": [{ "route": "GET /paid", "price": "$0.01" }],
        });
        for (k, v) in vars.as_object().unwrap() {
            map[k] = v.clone();
        }
        Config::from_vars(map.as_object().unwrap())
    };
    let e = |vars: Value| try_vars(vars).unwrap_err().0;
    assert!(e(json!({ "FACILITATOR_URL": "http://a.test", "FACILITATOR_AUTH": "cdp" })).contains("CDP_API_KEY_ID"));
    assert!(e(json!({ "FACILITATOR_URL": "http://a.test", "FACILITATOR_AUTH": "cdp", "CDP_API_KEY_ID": "k", "CDP_API_KEY_SECRET": "short" })).contains("CDP_API_KEY_SECRET"));
    assert!(e(json!({ "FACILITATOR_URL": "http://a.test, http://a.test/" })).contains("twice"));
    assert!(e(json!({ "FACILITATOR_URL": "a,b,c,d,e" })).contains("1 to 4"));
    assert!(e(json!({ "FACILITATOR_URL": [{ "url": "http://a.test", "auth": "header" }] })).contains("FACILITATOR_AUTH"));
    assert!(e(json!({ "FACILITATOR_URL": [{ "url": "http://a.test", "token": "x" }] })).contains("unknown key"));
    let secret_leak = e(json!({ "FACILITATOR_URL": "http://a.test", "FACILITATOR_AUTH": "cdp", "CDP_API_KEY_ID": "k", "CDP_API_KEY_SECRET": "c2VjcmV0LXNlY3JldA==" }));
    assert!(!secret_leak.contains("c2VjcmV0"), "errors never quote the secret: {secret_leak}");
    // Per-entry authentication: a CDP facilitator first, a self-hosted one with a header second.
    let cfg = try_vars(json!({
        "FACILITATOR_URL": [{ "url": "https://api.cdp.coinbase.com/platform/v2/x402", "auth": "cdp" }, "https://facilitator.example"],
        "FACILITATOR_AUTH": "Bearer self-hosted",
        "CDP_API_KEY_ID": "k",
        "CDP_API_KEY_SECRET": STANDARD.encode([1u8; 64]),
    }))
    .unwrap();
    assert_eq!(format!("{:?}", cfg.facilitators.iter().map(|f| &f.auth).collect::<Vec<_>>()), "[cdp(k), header]");
}
