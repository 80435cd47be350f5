//! The signed payment context through the pipeline on the fake platform: which requests carry
//! `X402-Payment-Context` to the origin, what it says, what it is signed with, the key set at
//! `/.well-known/x402/jwks.json`, and what a signing failure costs (nothing is charged). The
//! signature itself is checked with a JOSE library on the real path (`tests/context.test.mjs`).

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use serde_json::{json, Value};
use x402_edge_paywall::payment_context::ContextKey;

/// RFC 8037 Appendix A.1's Ed25519 key, and its thumbprint (Appendix A.3).
const KEY: &str = r#"{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
const KID: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";

fn with_key() -> std::rc::Rc<x402_edge_paywall::config::Config> {
    config_vars(json!({ "PAYMENT_CONTEXT_KEY": KEY, "PUBLIC_URL": "https://pay.example", "ORIGIN_TIMEOUT_SECONDS": "20" }))
}

fn part(jws: &str, i: usize) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(jws.split('.').nth(i).unwrap()).unwrap()
}

fn context_of(req: &http::Request<Vec<u8>>) -> Option<String> {
    req.headers().get("x402-payment-context").map(|v| v.to_str().unwrap().to_string())
}

#[test]
fn a_paid_request_carries_the_signed_context_of_its_payment() {
    let cfg = with_key();
    let p = std::rc::Rc::new(fake());
    let res = run(&cfg, &p, request("/paid?x=1", &[("payment-signature", &payment_with(&cfg, 0, 7, 1, 300))]));
    assert_eq!(res.status(), 200);
    assert_eq!(p.settles(), 1);
    let calls = p.origin_calls.borrow();
    assert_eq!(calls.len(), 1);
    let jws = context_of(&calls[0]).expect("the origin got a context");
    let header: Value = serde_json::from_slice(&part(&jws, 0)).unwrap();
    assert_eq!(header, json!({ "alg": "EdDSA", "kid": KID, "typ": "x402-payment-context+jwt" }));
    let claims: Value = serde_json::from_slice(&part(&jws, 1)).unwrap();
    let payer = payer(7).to_checksum();
    let offer = &cfg.routes[0].accepts[0].requirements;
    assert_eq!(
        claims,
        json!({
            "iss": "https://pay.example",
            "sub": payer,
            "aud": "https://origin.test/base",
            "iat": NOW,
            "exp": NOW + 20,
            "jti": format!("{}/{}/{}/0x{}", offer.network, offer.asset.to_ascii_lowercase(), payer.to_ascii_lowercase(), "01".repeat(32)),
            "x402": {
                "x402Version": 2, "scheme": "exact", "network": offer.network, "asset": offer.asset, "amount": "10000",
                "payTo": offer.pay_to, "route": "GET /paid", "method": "GET", "path": "/paid",
            },
        })
    );
    assert_eq!(part(&jws, 2), vec![0xab; 64], "the platform's signature");
    let signed = p.signed.borrow();
    assert_eq!(signed.len(), 1, "signed once, with the context key, over the header and claims");
    assert_eq!(signed[0].0, format!("payment-context/{KID}"));
    assert_eq!(signed[0].1, jws.rsplit_once('.').unwrap().0);
}

#[test]
fn the_context_is_signed_when_the_origin_is_called_on_a_settle_first_route() {
    let cfg = config_vars(json!({ "PAYMENT_CONTEXT_KEY": KEY, "ROUTES": [{ "route": "POST /job", "price": "$0.01", "settle": "before" }] }));
    let p = std::rc::Rc::new(fake());
    p.verify_takes.set(5);
    let res = run(&cfg, &p, request_with("POST", "/job", &[("payment-signature", &payment_with(&cfg, 0, 7, 2, 300))]));
    assert_eq!(res.status(), 200);
    assert_eq!(p.order.borrow().as_slice(), ["verify", "settle", "origin"]);
    let claims: Value = serde_json::from_slice(&part(&context_of(&p.origin_calls.borrow()[0]).unwrap(), 1)).unwrap();
    assert_eq!(claims["iat"], NOW + 5, "issued as the origin is called, after /verify took its time");
    assert_eq!(claims["exp"], NOW + 5 + 30);
    assert_eq!(claims["iss"], "https://paywall.test", "without PUBLIC_URL, the origin the client used");
    assert_eq!(claims["x402"]["method"], "POST");
}

#[test]
fn a_clients_copy_never_reaches_the_origin_and_unpaid_paths_get_none() {
    let cfg = with_key();
    let p = std::rc::Rc::new(fake());
    let forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtZSJ9.";
    let free = run(&cfg, &p, request("/free", &[("x402-payment-context", forged)]));
    assert_eq!(free.status(), 200);
    let unpaid = run(&cfg, &p, request("/paid", &[("X402-Payment-Context", forged)]));
    assert_eq!(unpaid.status(), 402);
    let paid = run(&cfg, &p, request("/paid", &[("payment-signature", &payment_with(&cfg, 0, 7, 3, 300)), ("x402-payment-context", forged)]));
    assert_eq!(paid.status(), 200);
    let calls = p.origin_calls.borrow();
    assert_eq!(calls.len(), 2, "the free request and the paid one");
    assert_eq!(context_of(&calls[0]), None, "removed from a free request, none added");
    let ours = context_of(&calls[1]).unwrap();
    assert_ne!(ours, forged);
    assert_eq!(calls[1].headers().get_all("x402-payment-context").iter().count(), 1, "only the paywall's");
}

#[test]
fn without_a_key_nothing_is_signed_and_the_key_set_is_not_found() {
    let cfg = config();
    let p = std::rc::Rc::new(fake());
    let res = run(&cfg, &p, request("/paid", &[("payment-signature", &payment_with(&cfg, 0, 7, 4, 300))]));
    assert_eq!(res.status(), 200);
    assert_eq!(context_of(&p.origin_calls.borrow()[0]), None);
    assert!(p.signed.borrow().is_empty());
    let jwks = run(&cfg, &p, request("/.well-known/x402/jwks.json", &[]));
    assert_eq!(jwks.status(), 404);
    assert_eq!(body_json(&jwks)["error"], "not_found");
    assert_eq!(p.origin_hits(), 1, "the paywall answers, never the origin");
}

#[test]
fn the_key_set_is_served_like_the_discovery_document() {
    let cfg = with_key();
    let p = std::rc::Rc::new(fake());
    let res = run(&cfg, &p, request("/.well-known/x402/jwks.json", &[]));
    assert_eq!(res.status(), 200);
    assert_eq!(res.body(), &ContextKey::parse(KEY).unwrap().jwks());
    assert_eq!(res.headers()["cache-control"], "public, max-age=300");
    let etag = res.headers()["etag"].to_str().unwrap().to_string();
    let again = run(&cfg, &p, request("/.well-known/x402/jwks.json", &[("if-none-match", &etag)]));
    assert_eq!(again.status(), 304);
    let post = run(&cfg, &p, request_with("POST", "/.well-known/x402/jwks.json", &[]));
    assert_eq!(post.status(), 405);
    assert!(body_json(&post)["message"].as_str().unwrap().contains("/.well-known/x402/jwks.json"));
    assert_eq!(p.origin_hits(), 0);
}

#[test]
fn a_context_that_cannot_be_signed_stops_the_request_before_the_origin_and_nothing_is_charged() {
    let cfg = with_key();
    let p = std::rc::Rc::new(fake());
    p.sign_fails.set(true);
    let res = run(&cfg, &p, request("/paid", &[("payment-signature", &payment_with(&cfg, 0, 7, 5, 300))]));
    assert_eq!(res.status(), 502);
    assert_eq!(body_json(&res)["error"], "origin_unavailable");
    assert_eq!(p.origin_hits(), 0, "never forwarded without its context");
    assert_eq!(p.settles(), 0, "not charged");
    assert!(p.logs.borrow().iter().any(|l| l.contains("payment context could not be signed")));
    // Once signing works again, the same authorization is served and charged once.
    p.sign_fails.set(false);
    let retry = run(&cfg, &p, request("/paid", &[("payment-signature", &payment_with(&cfg, 0, 7, 5, 300))]));
    assert_eq!(retry.status(), 200);
    assert_eq!((p.origin_hits(), p.settles()), (1, 1));
}

#[test]
fn origin_headers_may_not_set_the_context() {
    let mut v = serde_json::Map::new();
    for (k, val) in [("ORIGIN_URL", "https://origin.test"), ("FACILITATOR_URL", "https://facilitator.test"), ("PAY_TO", "0x209693Bc6afc0C5328bA36FaF03C514EF312287C")] {
        v.insert(k.into(), json!(val));
    }
    v.insert("ROUTES".into(), json!([{ "route": "GET /paid", "price": "$0.01" }]));
    v.insert("ORIGIN_HEADERS".into(), json!(r#"{"X402-Payment-Context":"x"}"#));
    let e = x402_edge_paywall::config::Config::from_vars(&v).unwrap_err();
    assert!(e.0.contains("cannot be configured"), "{e:?}");
    v.remove("ORIGIN_HEADERS");
    v.insert("PAYMENT_CONTEXT_KEY".into(), json!("{\"kty\":\"OKP\"}"));
    let e = x402_edge_paywall::config::Config::from_vars(&v).unwrap_err();
    assert!(e.0.starts_with("PAYMENT_CONTEXT_KEY"), "a bad key is a configuration error naming the variable: {e:?}");
}
