//! The pipeline on the host, with in-memory fakes standing in for the origin, facilitator and KV
//! so that faults (timeouts, KV outages, expiry) can be injected. The real path runs in
//! `tests/*.test.mjs`.

use std::cell::RefCell;
use std::collections::HashMap;

use http::{Request, Response, StatusCode};
use k256::ecdsa::SigningKey;
use serde_json::{json, Value};
use x402_edge_paywall::config::Config;
use x402_edge_paywall::evm::{address_of, hex_0x, parse_uint256, TransferWithAuthorization};
use x402_edge_paywall::facilitator::{HttpReply, UpstreamError};
use x402_edge_paywall::gateway::{handle, Platform};
use x402_edge_paywall::session::SessionCache;
use x402_edge_paywall::x402::{decode_header_json, encode_header};

const NOW: u64 = 1_800_000_000;

#[derive(Default)]
struct Fake {
    origin_status: u16,
    settle: RefCell<Option<Result<HttpReply, UpstreamError>>>,
    kv: RefCell<HashMap<String, String>>,
    kv_down: bool,
    now: RefCell<u64>,
    origin_calls: RefCell<Vec<Request<Vec<u8>>>>,
    facilitator_calls: RefCell<Vec<(String, Value)>>,
    logs: RefCell<Vec<String>>,
    kv_gets: RefCell<usize>,
    cache: SessionCache,
}

impl Platform for Fake {
    type Body = Vec<u8>;
    fn body(bytes: Vec<u8>) -> Vec<u8> {
        bytes
    }
    async fn origin(&self, req: Request<Vec<u8>>, _t: u64) -> Result<Response<Vec<u8>>, UpstreamError> {
        self.origin_calls.borrow_mut().push(req);
        let mut r = Response::new(b"{\"data\":\"paid content\"}".to_vec());
        *r.status_mut() = StatusCode::from_u16(self.origin_status).unwrap();
        r.headers_mut().insert("cache-control", "public, max-age=600".parse().unwrap());
        Ok(r)
    }
    async fn post_json(&self, url: &str, _a: Option<&str>, json: String, _t: u64) -> Result<HttpReply, UpstreamError> {
        self.facilitator_calls.borrow_mut().push((url.to_string(), serde_json::from_str(&json).unwrap()));
        self.settle.borrow_mut().take().unwrap_or_else(|| {
            Ok(HttpReply { status: 200, body: br#"{"success":true,"transaction":"0xabc","network":"eip155:84532"}"#.to_vec() })
        })
    }
    async fn kv_get(&self, key: &str) -> Result<Option<String>, String> {
        *self.kv_gets.borrow_mut() += 1;
        if self.kv_down {
            return Err("kv down".into());
        }
        Ok(self.kv.borrow().get(key).cloned())
    }
    async fn kv_put(&self, key: &str, value: String, _ttl: u64) -> Result<(), String> {
        if self.kv_down {
            return Err("kv down".into());
        }
        self.kv.borrow_mut().insert(key.into(), value);
        Ok(())
    }
    fn now(&self) -> u64 {
        *self.now.borrow()
    }
    fn random32(&self) -> Result<[u8; 32], String> {
        Ok([self.kv.borrow().len() as u8 + 1; 32])
    }
    fn log(&self, line: &str) {
        self.logs.borrow_mut().push(line.into());
    }
    fn sessions(&self) -> &SessionCache {
        &self.cache
    }
}

fn fake() -> Fake {
    Fake { origin_status: 200, now: RefCell::new(NOW), ..Default::default() }
}

fn config() -> Config {
    let v = json!({
        "ORIGIN_URL": "http://origin.test/base/",
        "FACILITATOR_URL": "http://facilitator.test",
        "PAY_TO": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
        "ROUTES": [
            { "route": "GET /paid", "price": "$0.01", "sessionTtlSeconds": 60 },
            { "route": "GET /other/*", "price": "$0.02" }
        ]
    });
    Config::from_vars(v.as_object().unwrap()).unwrap()
}

fn payment(cfg: &Config, route: usize, key_byte: u8) -> String {
    let offer = &cfg.routes[route].accepts[0];
    let key = SigningKey::from_slice(&[key_byte; 32]).unwrap();
    let from = address_of(key.verifying_key());
    let msg = TransferWithAuthorization {
        from,
        to: offer.pay_to,
        value: offer.amount,
        valid_after: parse_uint256(&(NOW - 600).to_string()).unwrap(),
        valid_before: parse_uint256(&(NOW + 60).to_string()).unwrap(),
        nonce: [key_byte; 32],
    };
    let (sig, recid) = key.sign_prehash_recoverable(&msg.digest(&offer.domain_separator));
    let mut bytes = sig.to_bytes().to_vec();
    bytes.push(27 + recid.to_byte());
    encode_header(&json!({
        "x402Version": 2,
        "accepted": offer.requirements_json,
        "payload": { "signature": hex_0x(&bytes), "authorization": {
            "from": from.to_checksum(), "to": offer.pay_to.to_checksum(), "value": offer.amount.to_string(),
            "validAfter": (NOW - 600).to_string(), "validBefore": (NOW + 60).to_string(), "nonce": hex_0x(&[key_byte; 32]) } }
    }))
}

fn request(path: &str, headers: &[(&str, &str)]) -> Request<Vec<u8>> {
    let mut b = Request::builder().method("GET").uri(format!("https://paywall.test{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Vec::new()).unwrap()
}

fn run(cfg: &Config, p: &Fake, req: Request<Vec<u8>>) -> Response<Vec<u8>> {
    pollster::block_on(handle(cfg, p, req))
}

#[test]
fn paid_request_is_forwarded_on_the_canonical_path_and_settled_once() {
    let cfg = config();
    let p = fake();
    let h = payment(&cfg, 0, 7);
    let res = run(&cfg, &p, request("/x/../PAID?q=1", &[("payment-signature", &h), ("x-keep", "1")]));
    assert_eq!(res.status(), 200);
    assert_eq!(res.body(), b"{\"data\":\"paid content\"}");
    assert_eq!(res.headers()["cache-control"], "no-store", "a paid response is never cached");
    let settle = decode_header_json(res.headers()["payment-response"].to_str().unwrap()).unwrap();
    assert_eq!(settle["success"], true);
    let payer = address_of(SigningKey::from_slice(&[7u8; 32]).unwrap().verifying_key());
    assert_eq!(settle["payer"], payer.to_checksum());

    let calls = p.origin_calls.borrow();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].uri().to_string(), "http://origin.test/base/PAID?q=1");
    assert!(calls[0].headers().get("payment-signature").is_none());
    assert_eq!(calls[0].headers()["x-keep"], "1");
    let fc = p.facilitator_calls.borrow();
    assert_eq!(fc.len(), 1);
    assert_eq!(fc[0].0, "http://facilitator.test/settle");
    assert_eq!(fc[0].1["x402Version"], 2);
    assert_eq!(fc[0].1["paymentRequirements"], cfg.routes[0].accepts[0].requirements_json);
    assert_eq!(fc[0].1["paymentPayload"], decode_header_json(&h).unwrap(), "payload forwarded verbatim");
}

#[test]
fn session_admits_its_scope_until_expiry() {
    let cfg = config();
    let p = fake();
    let res = run(&cfg, &p, request("/paid", &[("payment-signature", &payment(&cfg, 0, 9))]));
    let token = res.headers()["x402-session"].to_str().unwrap().to_string();
    assert_eq!(res.headers()["x402-session-expires"], (NOW + 60).to_string().as_str());

    let hit = run(&cfg, &p, request("/paid", &[("x402-session", &token)]));
    assert_eq!(hit.status(), 200);
    assert_eq!(p.facilitator_calls.borrow().len(), 1, "no settlement for a session hit");
    assert!(p.origin_calls.borrow()[1].headers().get("x402-session").is_none());

    assert_eq!(run(&cfg, &p, request("/other/x", &[("x402-session", &token)])).status(), 402);
    *p.now.borrow_mut() = NOW + 60;
    assert_eq!(run(&cfg, &p, request("/paid", &[("x402-session", &token)])).status(), 402, "expired");
}

#[test]
fn a_session_is_read_from_kv_once_per_isolate() {
    let cfg = config();
    let minter = fake();
    let res = run(&cfg, &minter, request("/paid", &[("payment-signature", &payment(&cfg, 0, 11))]));
    let token = res.headers()["x402-session"].to_str().unwrap().to_string();

    // Another isolate: the same KV, an empty cache.
    let other = Fake { kv: RefCell::new(minter.kv.borrow().clone()), ..fake() };
    for _ in 0..3 {
        assert_eq!(run(&cfg, &other, request("/paid", &[("x402-session", &token)])).status(), 200);
    }
    assert_eq!(*other.kv_gets.borrow(), 1, "later hits are served from the isolate's cache");
    assert_eq!(*minter.kv_gets.borrow(), 0, "the minting isolate never reads its own session back");
    assert_eq!(run(&cfg, &minter, request("/paid", &[("x402-session", &token)])).status(), 200);
    assert_eq!(*minter.kv_gets.borrow(), 0);
}

#[test]
fn kv_outage_still_delivers_the_paid_response() {
    let cfg = config();
    let p = Fake { kv_down: true, ..fake() };
    let res = run(&cfg, &p, request("/paid", &[("payment-signature", &payment(&cfg, 0, 3))]));
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("payment-response").is_some());
    assert!(res.headers().get("x402-session").is_none());
    assert!(p.logs.borrow().iter().any(|l| l.contains("KV put failed")));
}

#[test]
fn settle_timeout_is_504_outcome_unknown_with_the_payment_identity() {
    let cfg = config();
    let p = fake();
    *p.settle.borrow_mut() = Some(Err(UpstreamError::Timeout { seconds: 30 }));
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
    let p = fake();
    *p.settle.borrow_mut() = Some(Ok(HttpReply {
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
    let p = Fake { origin_status: 503, ..fake() };
    let res = run(&cfg, &p, request("/paid", &[("payment-signature", &payment(&cfg, 0, 5))]));
    assert_eq!(res.status(), 503);
    assert!(p.facilitator_calls.borrow().is_empty());
}

#[test]
fn payment_for_one_route_does_not_pay_another() {
    let cfg = config();
    let p = fake();
    let res = run(&cfg, &p, request("/other/x", &[("payment-signature", &payment(&cfg, 0, 5))]));
    assert_eq!(res.status(), 402);
    let pr = decode_header_json(res.headers()["payment-required"].to_str().unwrap()).unwrap();
    assert!(pr["error"].as_str().unwrap().starts_with("invalid_payment_requirements"));
    assert!(p.origin_calls.borrow().is_empty());
}

#[test]
fn ambiguous_paths_are_400_and_reach_nobody() {
    let cfg = config();
    let p = fake();
    for path in ["/paid%2f..", "/a\\paid", "/%2570aid"] {
        let res = run(&cfg, &p, request(path, &[]));
        assert_eq!(res.status(), 400, "{path}");
    }
    assert!(p.origin_calls.borrow().is_empty());
}
