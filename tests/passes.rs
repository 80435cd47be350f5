//! Paid access that means what it costs, on the host: per-request pricing by default, passes by
//! time and by count (exact under concurrency), scopes, carriers, revocation, the denylist.
//! The same against the built wasm on the local chain in `tests/passes.test.mjs`.

mod common;

use std::rc::Rc;

use common::*;
use serde_json::json;
use x402_edge_paywall::config::Config;
use x402_edge_paywall::gateway::handle;
use x402_edge_paywall::pass::CACHE_SECONDS;
use x402_edge_paywall::x402::decode_header_json;

const ADMIN: &str = "admin-token-0123456789abcdef0123456789";

fn buy(cfg: &Rc<Config>, p: &Rc<Fake>, path: &str, key: u8, nonce: u8) -> http::Response<Vec<u8>> {
    run(cfg, p, request(path, &[("payment-signature", &payment_with(cfg, 0, key, nonce, 120))]))
}

fn token(res: &http::Response<Vec<u8>>) -> String {
    res.headers()["x402-pass"].to_str().unwrap().to_string()
}

fn error_of(res: &http::Response<Vec<u8>>) -> String {
    decode_header_json(res.headers()["payment-required"].to_str().unwrap()).unwrap()["error"].as_str().unwrap().to_string()
}

#[test]
fn without_a_pass_every_request_pays() {
    let cfg = config();
    let p = Rc::new(fake());
    for n in 1..=2 {
        let res = buy(&cfg, &p, "/paid", 90, n);
        assert_eq!(res.status(), 200);
        assert!(res.headers().get("x402-pass").is_none() && res.headers().get("set-cookie").is_none());
    }
    assert_eq!(p.settles(), 2, "two calls, two settlements");
}

#[test]
fn removed_session_settings_are_clear_configuration_errors() {
    let base = json!({ "ORIGIN_URL": "https://o.test", "FACILITATOR_URL": "https://f.test", "PAY_TO": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C" });
    let mut v = base.clone();
    v["SESSION_TTL_SECONDS"] = json!("3600");
    v["ROUTES"] = json!([{ "route": "GET /x", "price": "$0.01" }]);
    assert!(Config::from_vars(v.as_object().unwrap()).unwrap_err().0.contains("replaced by passes"));
    let mut v = base;
    v["ROUTES"] = json!([{ "route": "GET /x", "price": "$0.01", "sessionTtlSeconds": 600 }]);
    assert!(Config::from_vars(v.as_object().unwrap()).unwrap_err().0.contains("sessionTtlSeconds is no longer read"));
}

#[test]
fn the_challenge_says_what_the_payment_buys() {
    let cfg = config_with(json!([{ "route": "GET /reports/*", "price": "$0.10", "description": "Reports", "pass": { "ttl": "1h", "maxRequests": 10 } }]));
    let p = Rc::new(fake());
    let res = run(&cfg, &p, request("/reports/a", &[]));
    let pr = decode_header_json(res.headers()["payment-required"].to_str().unwrap()).unwrap();
    assert_eq!(pr["resource"]["description"], "Reports — 10 requests within 1 hour to /reports/*");
    assert_eq!(body_json(&res)["accepts"][0]["description"], "Reports — 10 requests within 1 hour to /reports/*", "v1 too");
}

#[test]
fn a_time_pass_opens_its_route_until_it_expires_and_nothing_else() {
    let cfg = config_with(json!([
        { "route": "GET /reports/*", "price": "$0.01", "pass": { "ttl": "10m" } },
        { "route": "GET /other", "price": "$0.01" }
    ]));
    let p = Rc::new(fake());
    let paid = buy(&cfg, &p, "/reports/a", 91, 1);
    assert_eq!(paid.status(), 200);
    let t = token(&paid);
    assert_eq!(paid.headers()["x402-pass-expires"], (NOW + 600).to_string().as_str());
    for path in ["/reports/a", "/reports/b/c"] {
        assert_eq!(run(&cfg, &p, request(path, &[("x402-pass", &t)])).status(), 200, "{path}");
    }
    assert_eq!(p.settles(), 1, "pass hits are not settled");
    assert!(p.origin_calls.borrow().iter().all(|r| r.headers().get("x402-pass").is_none()), "the token never reaches the origin");
    let other = run(&cfg, &p, request("/other", &[("x402-pass", &t)]));
    assert!(error_of(&other).starts_with("pass_out_of_scope"), "{}", error_of(&other));
    p.now.set(NOW + 600);
    assert!(error_of(&run(&cfg, &p, request("/reports/a", &[("x402-pass", &t)]))).starts_with("pass_expired"));
}

#[test]
fn the_pass_record_is_written_after_the_response_and_read_once_per_isolate_per_cache_lifetime() {
    let cfg = config_with_pass(json!({ "ttl": "1h" }));
    let minter = Rc::new(fake());
    let res = pollster::block_on(handle(&cfg, &minter, request("/paid", &[("payment-signature", &payment(&cfg, 0, 92))])));
    assert_eq!(res.status(), 200);
    assert!(minter.kv.borrow().is_empty(), "the paid response did not wait for KV");
    assert_eq!(minter.deferred.borrow().len(), 1);
    drain(&minter);
    assert_eq!(minter.kv.borrow().len(), 1);
    let key = minter.kv.borrow().keys().next().unwrap().clone();
    assert!(key.starts_with("pass:") && !key.contains(&token(&res)), "KV holds the hash, never the token");
    let t = token(&res);
    // The minting isolate knows it already; another isolate reads KV once, then its cache.
    assert_eq!(run(&cfg, &minter, request("/paid", &[("x402-pass", &t)])).status(), 200);
    assert_eq!(minter.kv_gets.get(), 0);
    let other = Rc::new(Fake { kv: std::cell::RefCell::new(minter.kv.borrow().clone()), ..fake() });
    for _ in 0..3 {
        assert_eq!(run(&cfg, &other, request("/paid", &[("x402-pass", &t)])).status(), 200);
    }
    assert_eq!(other.kv_gets.get(), 1);
    other.now.set(NOW + CACHE_SECONDS);
    run(&cfg, &other, request("/paid", &[("x402-pass", &t)]));
    assert_eq!(other.kv_gets.get(), 2, "re-read after the cache lifetime");
}

#[test]
fn a_counted_pass_serves_exactly_its_requests_under_concurrency() {
    let cfg = config_with_pass(json!({ "maxRequests": 10, "ttl": "1h" }));
    let p = Rc::new(fake());
    let t = token(&buy(&cfg, &p, "/paid", 93, 1));
    let origin = p.origin_hits();
    let res = run_all(&cfg, &p, (0..100).map(|_| request("/paid", &[("x402-pass", &t)])).collect());
    let served = res.iter().filter(|r| r.status() == 200).count();
    assert_eq!(served, 10);
    assert_eq!(res.iter().filter(|r| r.status() == 402).count(), 90);
    let refused = res.iter().find(|r| r.status() == 402).unwrap();
    assert!(error_of(refused).starts_with("pass_used_up: this pass has used all the requests it bought"));
    assert_eq!(p.origin_hits() - origin, 10);
    assert_eq!(p.settles(), 1);
}

#[test]
fn a_path_pass_opens_only_the_path_paid_for() {
    let cfg = config_with(json!([{ "route": "GET /reports/:id", "price": "$0.01", "pass": { "ttl": "1h", "scope": "path" } }]));
    let p = Rc::new(fake());
    let t = token(&buy(&cfg, &p, "/reports/7", 94, 1));
    assert_eq!(run(&cfg, &p, request("/reports/7", &[("x402-pass", &t)])).status(), 200);
    assert!(error_of(&run(&cfg, &p, request("/reports/8", &[("x402-pass", &t)]))).starts_with("pass_out_of_scope"));
}

#[test]
fn a_group_pass_opens_its_group_and_never_a_dearer_route() {
    let routes = json!([
        { "route": "GET /reports/*", "price": "$0.10", "group": "docs", "pass": { "ttl": "1h", "scope": "docs" } },
        { "route": "GET /summaries/*", "price": "$0.05", "group": "docs" },
        { "route": "GET /raw/*", "price": "$0.01" }
    ]);
    let cfg = config_with(routes);
    let p = Rc::new(fake());
    let t = token(&buy(&cfg, &p, "/reports/a", 95, 1));
    assert_eq!(run(&cfg, &p, request("/summaries/x", &[("x402-pass", &t)])).status(), 200);
    assert!(error_of(&run(&cfg, &p, request("/raw/x", &[("x402-pass", &t)]))).starts_with("pass_out_of_scope"));
    // A cheap route cannot sell a pass to a dearer group member.
    let v = json!({ "ORIGIN_URL": "https://o.test", "FACILITATOR_URL": "https://f.test", "PAY_TO": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "ROUTES": [
        { "route": "GET /cheap", "price": "$0.01", "group": "g", "pass": { "ttl": "1h", "scope": "g" } },
        { "route": "GET /dear", "price": "$1.00", "group": "g" }
    ]});
    assert!(Config::from_vars(v.as_object().unwrap()).unwrap_err().0.contains("costs more"));
}

#[test]
fn browsers_get_a_cookie_that_opens_the_scope_and_never_reaches_the_origin() {
    let cfg = config_with(json!([{ "route": "GET /reports/:id", "price": "$0.01", "pass": { "ttl": "1h" } }]));
    let p = Rc::new(fake());
    let res = buy(&cfg, &p, "/reports/1", 96, 1);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert_eq!(cookie, format!("x402_pass={}; Path=/reports; Max-Age=3600; HttpOnly; Secure; SameSite=Lax", token(&res)));
    let jar = format!("theme=dark; x402_pass={}; lang=pt", token(&res));
    assert_eq!(run(&cfg, &p, request("/reports/2", &[("cookie", &jar)])).status(), 200);
    assert_eq!(p.origin_calls.borrow().last().unwrap().headers()["cookie"], "theme=dark; lang=pt");
}

fn admin_cfg(pass: serde_json::Value, deny: &str) -> Rc<Config> {
    config_vars(json!({ "ADMIN_TOKEN": ADMIN, "DENYLIST": deny, "ROUTES": [{ "route": "GET /paid", "price": "$0.01", "pass": pass }] }))
}

fn admin(cfg: &Rc<Config>, p: &Rc<Fake>, method: &str, query: &str, token: &str) -> http::Response<Vec<u8>> {
    let auth = format!("Bearer {token}");
    run(cfg, p, request_with(method, &format!("/.well-known/x402/admin{query}"), &[("authorization", &auth)]))
}

#[test]
fn the_admin_endpoint_needs_its_token() {
    let cfg = admin_cfg(json!({ "ttl": "1h" }), "");
    let p = Rc::new(fake());
    assert_eq!(admin(&cfg, &p, "POST", "/revoke?payer=0x0000000000000000000000000000000000000001", "wrong").status(), 401);
    assert_eq!(admin(&cfg, &p, "POST", "/revoke?payer=0x0000000000000000000000000000000000000001", &ADMIN[..ADMIN.len() - 1]).status(), 401);
    assert_eq!(admin(&cfg, &p, "GET", "/revoke", ADMIN).status(), 405);
    assert_eq!(admin(&cfg, &p, "POST", "/explode", ADMIN).status(), 400);
    assert_eq!(p.origin_hits(), 0, "never forwarded");
    // Without ADMIN_TOKEN there is no admin endpoint: the path is the origin's.
    let off = config();
    let q = Rc::new(fake());
    assert_eq!(run(&off, &q, request_with("POST", "/.well-known/x402/admin/revoke", &[])).status(), 200);
}

#[test]
fn revoking_one_pass_and_every_pass_of_a_payer() {
    for (terms, counted) in [(json!({ "ttl": "1h" }), false), (json!({ "ttl": "1h", "maxRequests": 50 }), true)] {
        let cfg = admin_cfg(terms, "");
        let p = Rc::new(fake());
        let a = token(&buy(&cfg, &p, "/paid", 97, 1));
        let b = token(&buy(&cfg, &p, "/paid", 97, 2));
        let c = token(&buy(&cfg, &p, "/paid", 98, 1));
        let res = admin(&cfg, &p, "POST", &format!("/revoke?pass={a}"), ADMIN);
        assert_eq!(body_json(&res)["revoked"], 1, "{}", String::from_utf8_lossy(res.body()));
        assert!(error_of(&run(&cfg, &p, request("/paid", &[("x402-pass", &a)]))).starts_with("pass_revoked"), "counted={counted}");
        assert_eq!(run(&cfg, &p, request("/paid", &[("x402-pass", &b)])).status(), 200);
        let payer = payer(97).to_checksum();
        assert_eq!(body_json(&admin(&cfg, &p, "POST", &format!("/revoke?payer={payer}"), ADMIN))["revoked"], 2);
        assert!(error_of(&run(&cfg, &p, request("/paid", &[("x402-pass", &b)]))).starts_with("pass_revoked"));
        assert_eq!(run(&cfg, &p, request("/paid", &[("x402-pass", &c)])).status(), 200, "another payer's pass");
        // Another isolate with the record cached sees the revocation once its cache lapses.
        assert!(p.kv.borrow().values().filter(|v| v.contains("\"revoked\":true")).count() >= 2);
    }
}

#[test]
fn a_revocation_right_after_the_sale_is_not_undone_by_the_sale_s_late_record_write() {
    let cfg = admin_cfg(json!({ "ttl": "1h" }), "");
    let p = Rc::new(fake());
    // The sale's KV write is still pending (deferred) when the operator revokes the pass.
    let res = pollster::block_on(handle(&cfg, &p, request("/paid", &[("payment-signature", &payment(&cfg, 0, 102))])));
    let t = token(&res);
    assert_eq!(p.deferred.borrow().len(), 1);
    let auth = format!("Bearer {ADMIN}");
    let revoke = pollster::block_on(handle(&cfg, &p, request_with("POST", &format!("/.well-known/x402/admin/revoke?pass={t}"), &[("authorization", &auth)])));
    assert_eq!(revoke.status(), 200);
    drain(&p); // the late write of the sale lands after the revocation
    assert!(p.kv.borrow().values().all(|v| v.contains("\"revoked\":true")), "KV holds the revocation");
    assert!(error_of(&run(&cfg, &p, request("/paid", &[("x402-pass", &t)]))).starts_with("pass_revoked"));
    // Another isolate reads KV: revoked there too.
    let other = Rc::new(Fake { kv: std::cell::RefCell::new(p.kv.borrow().clone()), ..fake() });
    assert!(error_of(&run(&cfg, &other, request("/paid", &[("x402-pass", &t)]))).starts_with("pass_revoked"));
}

#[test]
fn denied_payers_are_refused_before_the_origin_and_the_facilitator() {
    let denied = payer(99).to_checksum();
    let cfg = admin_cfg(json!({ "ttl": "1h" }), &denied);
    let p = Rc::new(fake());
    let res = buy(&cfg, &p, "/paid", 99, 1);
    assert_eq!(res.status(), 402);
    assert!(error_of(&res).starts_with("payer_denied"));
    assert_eq!((p.origin_hits(), p.facilitator_calls.borrow().len()), (0, 0));
    // Added through the admin endpoint: refused at reservation, its passes revoked.
    let t = token(&buy(&cfg, &p, "/paid", 100, 1));
    let who = payer(100).to_checksum();
    let res = admin(&cfg, &p, "POST", &format!("/deny?payer={who}"), ADMIN);
    assert_eq!(body_json(&res)["denied"], who.as_str());
    assert_eq!(body_json(&res)["revoked"], 1);
    assert!(error_of(&run(&cfg, &p, request("/paid", &[("x402-pass", &t)]))).starts_with("pass_revoked"));
    let calls = p.facilitator_calls.borrow().len();
    let res = buy(&cfg, &p, "/paid", 100, 2);
    assert!(error_of(&res).starts_with("payer_denied"));
    assert_eq!(p.facilitator_calls.borrow().len(), calls);
}

#[test]
fn a_kv_outage_still_delivers_the_paid_response() {
    let cfg = config_with_pass(json!({ "ttl": "1h" }));
    let p = Rc::new(Fake { kv_down: true, ..fake() });
    let res = buy(&cfg, &p, "/paid", 101, 1);
    assert_eq!(res.status(), 200);
    assert!(p.logs.borrow().iter().any(|l| l.contains("not written to KV")));
    assert_eq!(run(&cfg, &p, request("/paid", &[("x402-pass", &token(&res))])).status(), 200, "the minting isolate still knows it");
}
