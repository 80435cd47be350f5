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
    assert_eq!(other.kv_gets.get(), 2, "the record, then its tombstone, once");
    other.now.set(NOW + CACHE_SECONDS);
    run(&cfg, &other, request("/paid", &[("x402-pass", &t)]));
    assert_eq!(other.kv_gets.get(), 4, "both re-read after the cache lifetime");
    // A token nothing knows costs one read: no tombstone read without a record.
    let before = other.kv_gets.get();
    let stranger = "A".repeat(43);
    assert!(error_of(&run(&cfg, &other, request("/paid", &[("x402-pass", &stranger)]))).starts_with("pass_unknown"));
    assert_eq!(other.kv_gets.get(), before + 1);
}

#[test]
fn a_counted_pass_serves_exactly_its_requests_under_concurrency() {
    // 10 requests: the paid one, then 9 on the pass.
    let cfg = config_with_pass(json!({ "maxRequests": 10, "ttl": "1h" }));
    let p = Rc::new(fake());
    let t = token(&buy(&cfg, &p, "/paid", 93, 1));
    let res = run_all(&cfg, &p, (0..100).map(|_| request("/paid", &[("x402-pass", &t)])).collect());
    let served = res.iter().filter(|r| r.status() == 200).count();
    assert_eq!(served, 9);
    assert_eq!(res.iter().filter(|r| r.status() == 402).count(), 91);
    let refused = res.iter().find(|r| r.status() == 402).unwrap();
    assert!(error_of(refused).starts_with("pass_used_up: this pass has used all the requests it bought"));
    assert_eq!(p.origin_hits(), 10, "the paid request and 9 on the pass");
    assert_eq!(p.settles(), 1);
}

#[test]
fn a_pass_advertised_for_n_requests_serves_exactly_n_the_paid_one_first() {
    for n in [2u32, 3, 5] {
        let cfg = config_with_pass(json!({ "maxRequests": n, "ttl": "1h" }));
        let p = Rc::new(fake());
        let challenge = run(&cfg, &p, request("/paid", &[]));
        let pr = decode_header_json(challenge.headers()["payment-required"].to_str().unwrap()).unwrap();
        assert_eq!(pr["resource"]["description"], format!("{n} requests within 1 hour to /paid"));
        let t = token(&buy(&cfg, &p, "/paid", 110, 1));
        let mut answers = Vec::new();
        loop {
            let res = run(&cfg, &p, request("/paid", &[("x402-pass", &t)]));
            if res.status() != 200 {
                assert!(error_of(&res).starts_with("pass_used_up"), "{}", error_of(&res));
                break;
            }
            answers.push(res.status());
            assert!(answers.len() < 100);
        }
        assert_eq!(p.origin_hits(), n as usize, "{n} requests advertised, {n} reached the origin");
        assert_eq!((answers.len(), p.settles()), (n as usize - 1, 1));
    }
    // A pass of one request would be the paid request alone.
    let v = json!({ "ORIGIN_URL": "https://o.test", "FACILITATOR_URL": "https://f.test", "PAY_TO": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "ROUTES": [
        { "route": "GET /x", "price": "$0.01", "pass": { "maxRequests": 1 } }
    ]});
    assert!(Config::from_vars(v.as_object().unwrap()).unwrap_err().0.contains("maxRequests must be from 2"));
}

#[test]
fn the_pass_clock_starts_when_the_paid_response_is_delivered() {
    // The origin takes 40 s; settled after it (default) or before it: either way the 10 minutes
    // bought start when the paid response leaves, not when the payment was reserved.
    for settle in ["after", "before"] {
        let cfg = config_with(json!([{ "route": "GET /paid", "price": "$0.01", "settle": settle, "pass": { "ttl": "10m" } }]));
        let p = Rc::new(fake());
        p.origin_seconds.set(40);
        let paid = buy(&cfg, &p, "/paid", 111, 1);
        assert_eq!(paid.status(), 200, "{settle}");
        let delivered = NOW + 40;
        assert_eq!(paid.headers()["x402-pass-expires"], (delivered + 600).to_string().as_str(), "{settle}");
        let t = token(&paid);
        p.origin_seconds.set(0);
        // Another isolate reads the record from KV: the same expiry everywhere.
        let other = Rc::new(Fake { kv: std::cell::RefCell::new(p.kv.borrow().clone()), ..fake() });
        for at in [&p, &other] {
            at.now.set(delivered + 599);
            assert_eq!(run(&cfg, at, request("/paid", &[("x402-pass", &t)])).status(), 200, "{settle}: a second before it ends");
            at.now.set(delivered + 600);
            assert!(error_of(&run(&cfg, at, request("/paid", &[("x402-pass", &t)]))).starts_with("pass_expired"), "{settle}");
        }
        // The payer's index (wallet sign-in) keeps it at least as long.
        let shard = x402_edge_paywall::ledger::shard_name(&payer(111));
        let indexed = p.ledger.borrow()[&shard].payer_passes.clone();
        assert!(indexed.len() == 1 && indexed[0].1 >= delivered + 600, "{settle}: {indexed:?}");
    }
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
    assert!(Config::from_vars(v.as_object().unwrap()).unwrap_err().0.contains("pays less than it charges"));
}

#[test]
fn a_group_pass_paid_to_another_recipient_cannot_open_a_member() {
    // The seller's only option pays someone the member route does not pay: a pass bought with it
    // would open /summaries/* without its recipient being paid. Refused at start, so no such
    // pass is ever sold.
    let v = json!({ "ORIGIN_URL": "https://o.test", "FACILITATOR_URL": "https://f.test", "PAY_TO": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "ROUTES": [
        { "route": "GET /reports/*", "group": "docs", "pass": { "ttl": "1h", "scope": "docs" }, "accepts": [{ "price": "$1.00", "payTo": "0x90F79bf6EB2c4f870365E785982E1f101E93b906" }] },
        { "route": "GET /summaries/*", "price": "$0.05", "group": "docs" }
    ]});
    let e = Config::from_vars(v.as_object().unwrap()).unwrap_err().0;
    assert!(e.contains("would open `GET /summaries/*`") && e.contains("0x90F79bf6EB2c4f870365E785982E1f101E93b906"), "{e}");
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
    admin_body(cfg, p, method, query, token, "")
}

fn admin_body(cfg: &Rc<Config>, p: &Rc<Fake>, method: &str, query: &str, token: &str, body: &str) -> http::Response<Vec<u8>> {
    let auth = format!("Bearer {token}");
    let mut req = request_with(method, &format!("/.well-known/x402/admin{query}"), &[("authorization", &auth), ("content-type", "application/json")]);
    *req.body_mut() = body.as_bytes().to_vec();
    run(cfg, p, req)
}

/// `POST {ADMIN_PATH}{action}` with the admin token and `body` as JSON.
fn admin_post(cfg: &Rc<Config>, p: &Rc<Fake>, action: &str, body: serde_json::Value) -> http::Response<Vec<u8>> {
    admin_body(cfg, p, "POST", action, ADMIN, &body.to_string())
}

/// The pass id (KV key suffix, ledger shard suffix) of a token.
fn id_of(token: &str) -> String {
    x402_edge_paywall::pass::pass_id(token).unwrap()
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
    // The endpoint in another spelling is still the endpoint: a near miss never reaches the origin
    // carrying the admin token.
    for path in ["/.Well-Known/x402/admin/revoke", "/.well-known/x402/admin;/revoke", "/.well-known/x402/ADMIN/Revoke/", "/.well-known//x402/admin/revoke"] {
        let req = request_with("POST", &format!("{path}?payer=0x0000000000000000000000000000000000000001"), &[("authorization", &format!("Bearer {ADMIN}"))]);
        let res = run(&cfg, &p, req);
        assert_eq!(res.status(), 200, "{path}: {}", String::from_utf8_lossy(res.body()));
        assert_eq!(body_json(&res)["revoked"], 0, "{path}");
    }
    let req = request_with("POST", "/.WELL-KNOWN/x402/admin/revoke", &[("authorization", "Bearer wrong")]);
    assert_eq!(run(&cfg, &p, req).status(), 401);
    // The scheme is case-insensitive (RFC 9110 §11.1); a token of another length is refused too.
    for auth in [format!("bearer {ADMIN}"), format!("BEARER  {ADMIN}")] {
        let req = request_with("POST", "/.well-known/x402/admin/revoke?payer=0x0000000000000000000000000000000000000001", &[("authorization", &auth)]);
        assert_eq!(run(&cfg, &p, req).status(), 200, "{auth}");
    }
    for auth in [format!("Bearer {ADMIN}x"), format!("Basic {ADMIN}"), ADMIN.to_string(), String::new()] {
        let req = request_with("POST", "/.well-known/x402/admin/revoke?payer=0x0000000000000000000000000000000000000001", &[("authorization", &auth)]);
        assert_eq!(run(&cfg, &p, req).status(), 401, "{auth}");
    }
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
        let res = admin_post(&cfg, &p, "/revoke", json!({ "pass": a }));
        assert_eq!(body_json(&res), json!({ "revoked": 1, "alreadyRevoked": 0, "unknown": 0, "denied": null }), "{}", String::from_utf8_lossy(res.body()));
        assert!(error_of(&run(&cfg, &p, request("/paid", &[("x402-pass", &a)]))).starts_with("pass_revoked"), "counted={counted}");
        assert_eq!(run(&cfg, &p, request("/paid", &[("x402-pass", &b)])).status(), 200);
        let payer = payer(97).to_checksum();
        let all = body_json(&admin_post(&cfg, &p, "/revoke", json!({ "payer": payer })));
        assert_eq!((all["revoked"].as_u64(), all["alreadyRevoked"].as_u64()), (Some(1), Some(1)), "b now, a before: {all}");
        assert!(error_of(&run(&cfg, &p, request("/paid", &[("x402-pass", &b)]))).starts_with("pass_revoked"));
        assert_eq!(run(&cfg, &p, request("/paid", &[("x402-pass", &c)])).status(), 200, "another payer's pass");
        // The same again revokes nothing new.
        assert_eq!(body_json(&admin_post(&cfg, &p, "/revoke", json!({ "payer": payer })))["revoked"], 0);
        // Each revoked pass has a tombstone of its own in KV; its record is left as sold.
        let kv = p.kv.borrow();
        for t in [&a, &b] {
            assert!(kv.contains_key(&format!("revoked:{}", id_of(t))), "counted={counted}");
            assert!(!kv[&format!("pass:{}", id_of(t))].contains("\"revoked\":true"));
        }
        assert!(!kv.contains_key(&format!("revoked:{}", id_of(&c))));
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
    let mut req = request_with("POST", "/.well-known/x402/admin/revoke", &[("authorization", &auth)]);
    *req.body_mut() = json!({ "pass": t }).to_string().into_bytes();
    let revoke = pollster::block_on(handle(&cfg, &p, req));
    assert_eq!(revoke.status(), 200);
    assert_eq!(body_json(&revoke)["revoked"], 1, "this isolate knew the pass");
    drain(&p); // the late write of the sale lands after the revocation
    assert!(p.kv.borrow().contains_key(&format!("pass:{}", id_of(&t))), "the record is written");
    assert!(p.kv.borrow().contains_key(&format!("revoked:{}", id_of(&t))), "and so is the tombstone");
    assert!(error_of(&run(&cfg, &p, request("/paid", &[("x402-pass", &t)]))).starts_with("pass_revoked"));
    // Another isolate reads KV: the record, then the tombstone: revoked there too.
    let other = Rc::new(Fake { kv: std::cell::RefCell::new(p.kv.borrow().clone()), ..fake() });
    assert!(error_of(&run(&cfg, &other, request("/paid", &[("x402-pass", &t)]))).starts_with("pass_revoked"));
    assert_eq!(p.origin_hits() + other.origin_hits(), 1, "only the paid request reached the origin");
}

/// One location of the edge: its own KV replica and isolate (cache), and the Durable Objects
/// every location shares (copied in and out around each step).
fn at_location(kv: &std::collections::HashMap<String, String>, ledger: &std::collections::HashMap<String, x402_edge_paywall::ledger::MemoryStore>) -> Rc<Fake> {
    Rc::new(Fake { kv: std::cell::RefCell::new(kv.clone()), ledger: std::cell::RefCell::new(ledger.clone()), ..fake() })
}

#[test]
fn an_unlimited_pass_revoked_where_its_record_has_not_arrived_stays_revoked_when_it_arrives() {
    let cfg = admin_cfg(json!({ "ttl": "1h" }), "");
    // Location A sells the pass; its record reaches A's KV, not yet B's.
    let a = Rc::new(fake());
    let t = token(&buy(&cfg, &a, "/paid", 103, 1));
    let id = id_of(&t);
    let record = a.kv.borrow()[&format!("pass:{id}")].clone();
    let shard = format!("pass:{id}");
    assert!(a.ledger.borrow()[&shard].pass_usage.is_some(), "the sale is recorded in the pass's ledger shard");
    // Location B: no record in its KV, nothing cached. The operator revokes there.
    let b = at_location(&std::collections::HashMap::new(), &a.ledger.borrow());
    let res = admin_post(&cfg, &b, "/revoke", json!({ "pass": t }));
    assert_eq!(body_json(&res)["revoked"], 1, "found through its ledger shard: {}", String::from_utf8_lossy(res.body()));
    assert!(b.ledger.borrow()[&shard].pass_usage.unwrap().revoked);
    // The sale's record now arrives at B (KV propagation): it must not bring the pass back.
    b.kv.borrow_mut().insert(format!("pass:{id}"), record);
    let fresh = at_location(&b.kv.borrow(), &b.ledger.borrow());
    let refused = run(&cfg, &fresh, request("/paid", &[("x402-pass", &t)]));
    assert!(error_of(&refused).starts_with("pass_revoked"), "{}", error_of(&refused));
    assert_eq!(fresh.kv_gets.get(), 2, "record, then tombstone");
    // Refused again from this isolate's cache, without reading KV.
    assert!(error_of(&run(&cfg, &fresh, request("/paid", &[("x402-pass", &t)]))).starts_with("pass_revoked"));
    assert_eq!(fresh.kv_gets.get(), 2);
    // And at A once its tombstone has propagated and A's cache has lapsed.
    a.kv.borrow_mut().extend(b.kv.borrow().iter().filter(|(k, _)| k.starts_with("revoked:")).map(|(k, v)| (k.clone(), v.clone())));
    a.now.set(NOW + CACHE_SECONDS);
    assert!(error_of(&run(&cfg, &a, request("/paid", &[("x402-pass", &t)]))).starts_with("pass_revoked"));
    assert_eq!(a.origin_hits() + b.origin_hits() + fresh.origin_hits(), 1, "only the paid request reached the origin");
}

#[test]
fn a_counted_pass_revoked_before_its_sale_was_recorded_is_refused_by_its_tombstone() {
    let cfg = admin_cfg(json!({ "ttl": "1h", "maxRequests": 5 }), "");
    // A sells the pass; its after-response work (ledger shard, KV record) has not run yet.
    let a = Rc::new(fake());
    let res = pollster::block_on(handle(&cfg, &a, request("/paid", &[("payment-signature", &payment(&cfg, 0, 104))])));
    let t = token(&res);
    let shard = format!("pass:{}", id_of(&t));
    // The operator revokes it at B in that moment: nothing knows the pass yet, and the answer
    // says so; the tombstone is written all the same.
    let b = at_location(&std::collections::HashMap::new(), &a.ledger.borrow());
    let res = admin_post(&cfg, &b, "/revoke", json!({ "pass": t }));
    assert_eq!(body_json(&res), json!({ "revoked": 0, "alreadyRevoked": 0, "unknown": 1, "denied": null }));
    assert!(b.ledger.borrow().get(&shard).and_then(|s| s.pass_usage).is_none(), "the shard learnt nothing");
    // Then A's work lands: the shard knows an unrevoked pass, KV has its record.
    drain(&a);
    assert!(!a.ledger.borrow()[&shard].pass_usage.unwrap().revoked);
    // Any isolate reading KV sees the tombstone too, and refuses before the ledger counts.
    let mut kv = a.kv.borrow().clone();
    kv.extend(b.kv.borrow().clone());
    let c = at_location(&kv, &a.ledger.borrow());
    assert!(error_of(&run(&cfg, &c, request("/paid", &[("x402-pass", &t)]))).starts_with("pass_revoked"));
    assert_eq!(c.ledger.borrow()[&shard].pass_usage.unwrap().used, 0, "nothing counted");
    assert_eq!(c.origin_hits(), 0);
    // A, which cached the record at the sale, refuses once its cache lapses.
    *a.kv.borrow_mut() = kv;
    a.now.set(NOW + CACHE_SECONDS);
    assert!(error_of(&run(&cfg, &a, request("/paid", &[("x402-pass", &t)]))).starts_with("pass_revoked"));
    assert_eq!(a.origin_hits(), 1, "only the paid request");
}

#[test]
fn revoking_what_was_never_sold_answers_zero() {
    let cfg = admin_cfg(json!({ "ttl": "1h" }), "");
    let p = Rc::new(fake());
    let never = "Q".repeat(43);
    for _ in 0..2 {
        let res = admin_post(&cfg, &p, "/revoke", json!({ "pass": never }));
        assert_eq!(body_json(&res), json!({ "revoked": 0, "alreadyRevoked": 0, "unknown": 1, "denied": null }), "{}", String::from_utf8_lossy(res.body()));
    }
    let shard = format!("pass:{}", id_of(&never));
    assert_eq!(p.ledger.borrow().get(&shard).and_then(|s| s.pass_usage), None, "no ledger state made up for it");
    // It is tombstoned anyway (it may have been sold a moment ago elsewhere).
    assert!(p.kv.borrow().contains_key(&format!("revoked:{}", id_of(&never))));
    // A payer that never bought anything.
    let res = admin_post(&cfg, &p, "/revoke", json!({ "payer": payer(105).to_checksum() }));
    assert_eq!(body_json(&res), json!({ "revoked": 0, "alreadyRevoked": 0, "unknown": 0, "denied": null }));
    assert_eq!(p.origin_hits(), 0);
}

#[test]
fn admin_tokens_travel_in_the_body_never_in_the_query() {
    let cfg = admin_cfg(json!({ "ttl": "1h" }), "");
    let p = Rc::new(fake());
    let t = token(&buy(&cfg, &p, "/paid", 106, 1));
    let res = admin(&cfg, &p, "POST", &format!("/revoke?pass={t}"), ADMIN);
    assert_eq!(res.status(), 400);
    let message = body_json(&res)["message"].as_str().unwrap().to_string();
    assert!(message.contains("query string") && message.contains("JSON body"), "{message}");
    assert!(!message.contains(&t), "the answer does not echo the token");
    // Also with a body: the query form is refused, nothing is revoked.
    assert_eq!(admin_body(&cfg, &p, "POST", &format!("/revoke?pass={t}"), ADMIN, &json!({ "pass": t }).to_string()).status(), 400);
    assert_eq!(run(&cfg, &p, request("/paid", &[("x402-pass", &t)])).status(), 200, "still valid");
    for body in [
        "not json".to_string(),
        json!({ "token": t }).to_string(),
        json!({ "pass": t, "payer": payer(106).to_checksum() }).to_string(),
        json!({ "pass": "short" }).to_string(),
        json!({ "pass": 12 }).to_string(),
        json!({ "payer": "0x1234" }).to_string(),
        json!([t]).to_string(),
        format!("{{\"pass\":\"{t}\",\"pad\":\"{}\"}}", "x".repeat(5000)),
        String::new(),
    ] {
        let res = admin_body(&cfg, &p, "POST", "/revoke", ADMIN, &body);
        assert_eq!(res.status(), 400, "{body:.80}: {}", String::from_utf8_lossy(res.body()));
        assert_eq!(body_json(&res)["error"], "invalid_admin_request");
    }
    assert_eq!(run(&cfg, &p, request("/paid", &[("x402-pass", &t)])).status(), 200, "none of those revoked it");
    assert!(!p.kv.borrow().keys().any(|k| k.starts_with("revoked:")));
    // The body form works; a payer may still come in the query (an address is not a secret).
    assert_eq!(body_json(&admin_post(&cfg, &p, "/revoke", json!({ "pass": t })))["revoked"], 1);
    let t2 = token(&buy(&cfg, &p, "/paid", 106, 2));
    let res = admin(&cfg, &p, "POST", &format!("/revoke?payer={}", payer(106).to_checksum()), ADMIN);
    assert_eq!((body_json(&res)["revoked"].as_u64(), body_json(&res)["alreadyRevoked"].as_u64()), (Some(1), Some(1)));
    assert!(error_of(&run(&cfg, &p, request("/paid", &[("x402-pass", &t2)]))).starts_with("pass_revoked"));
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
    let res = admin_post(&cfg, &p, "/deny", json!({ "payer": who }));
    assert_eq!(body_json(&res)["denied"], who.as_str());
    assert_eq!(body_json(&res)["revoked"], 1);
    assert!(error_of(&run(&cfg, &p, request("/paid", &[("x402-pass", &t)]))).starts_with("pass_revoked"));
    let calls = p.facilitator_calls.borrow().len();
    let res = buy(&cfg, &p, "/paid", 100, 2);
    assert!(error_of(&res).starts_with("payer_denied"));
    assert_eq!(p.facilitator_calls.borrow().len(), calls);
    assert_eq!(p.origin_hits(), 1, "only payer 100's purchase before its denial reached the origin");
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

#[test]
fn a_path_in_the_cookie_never_adds_or_replaces_an_attribute() {
    let cfg = config_with(json!([{ "route": "GET /docs/:id", "price": "$0.01", "pass": { "ttl": "1h", "scope": "path" } }]));
    let p = Rc::new(fake());
    let attacks = [
        "/docs/1;Domain=example.com;Path=/",
        "/docs/1;Domain=example.com",
        "/docs/1;Max-Age=999999999;Path=",
        "/docs/1;SameSite=None;Secure",
        "/docs/1,x402_pass=forged",
        "/docs/1=2",
        "/docs/%22q%22;Domain=.test",
    ];
    for (n, path) in attacks.iter().enumerate() {
        let res = buy(&cfg, &p, path, 107, n as u8 + 1);
        assert_eq!(res.status(), 200, "{path}");
        let cookies: Vec<&str> = res.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(cookies, [format!("x402_pass={}; Path=/docs; Max-Age=3600; HttpOnly; Secure; SameSite=Lax", token(&res))], "{path}");
        // The pass still opens exactly the path paid for (the record's scope), not its neighbours.
        let t = token(&res);
        assert_eq!(run(&cfg, &p, request(path, &[("x402-pass", &t)])).status(), 200, "{path}");
        assert!(error_of(&run(&cfg, &p, request("/docs/1", &[("x402-pass", &t)]))).starts_with("pass_out_of_scope"), "{path}");
    }
    // A `Path=/` would end the segment: what follows is a segment of only parameters, refused
    // before any payment work.
    let res = run(&cfg, &p, request("/docs/1;Path=/;Max-Age=999999999", &[]));
    assert_eq!(res.status(), 400);
    assert_eq!(body_json(&res)["error"], "invalid_path");
    assert!(res.headers().get("set-cookie").is_none());
    // A path that is safe as it is keeps its exact cookie path.
    let res = buy(&cfg, &p, "/docs/report-7", 107, 100);
    assert_eq!(res.headers()["set-cookie"], format!("x402_pass={}; Path=/docs/report-7; Max-Age=3600; HttpOnly; Secure; SameSite=Lax", token(&res)).as_str());
}

#[test]
fn a_counted_pass_use_is_given_back_when_the_origin_does_not_serve_it() {
    // 3 requests: the paid one, then 2 on the pass.
    let cfg = config_with_pass(json!({ "ttl": "1h", "maxRequests": 3 }));
    let p = Rc::new(fake());
    let t = token(&buy(&cfg, &p, "/paid", 108, 1));
    let shard = format!("pass:{}", id_of(&t));
    let used = |p: &Fake| p.ledger.borrow()[&shard].pass_usage.map_or(0, |u| u.used);
    let use_pass = |p: &Rc<Fake>| run(&cfg, p, request("/paid", &[("x402-pass", &t)]));
    let origin = p.origin_hits();
    // 5xx answers, an unreachable origin and one over its time limit: each request reached (or
    // tried) the origin, none was served, none stays counted.
    for status in [500, 502, 503] {
        p.origin_status.set(status);
        assert_eq!(use_pass(&p).status(), status);
    }
    p.origin_status.set(200);
    *p.origin_error.borrow_mut() = Some("connection refused".into());
    assert_eq!(use_pass(&p).status(), 502);
    *p.origin_error.borrow_mut() = None;
    p.origin_down.set(true);
    assert_eq!(use_pass(&p).status(), 504);
    p.origin_down.set(false);
    assert_eq!(p.origin_hits() - origin, 5);
    assert_eq!(used(&p), 0, "every failed request given back");
    // A 4xx is the origin's answer: counted.
    p.origin_status.set(404);
    assert_eq!(use_pass(&p).status(), 404);
    assert_eq!(used(&p), 1);
    p.origin_status.set(200);
    assert_eq!(use_pass(&p).status(), 200);
    assert_eq!(used(&p), 2);
    let refused = use_pass(&p);
    assert!(error_of(&refused).starts_with("pass_used_up"));
    assert_eq!(p.origin_hits() - origin, 7, "the used-up request never reached the origin");
    assert_eq!(p.settles(), 1);
}

#[test]
fn an_unlimited_pass_has_nothing_to_give_back() {
    let cfg = config_with_pass(json!({ "ttl": "1h" }));
    let p = Rc::new(fake());
    let t = token(&buy(&cfg, &p, "/paid", 109, 1));
    let shard = format!("pass:{}", id_of(&t));
    let before = p.ledger.borrow()[&shard].pass_usage;
    let calls_to_pass = || p.ledger_calls.borrow().iter().filter(|(s, _)| *s == shard).count();
    let calls = calls_to_pass();
    p.origin_status.set(500);
    assert_eq!(run(&cfg, &p, request("/paid", &[("x402-pass", &t)])).status(), 500);
    assert_eq!(p.ledger.borrow()[&shard].pass_usage, before);
    assert_eq!(calls_to_pass(), calls, "no ledger call for an unlimited pass: nothing to count, nothing to give back");
    p.origin_status.set(200);
    assert_eq!(run(&cfg, &p, request("/paid", &[("x402-pass", &t)])).status(), 200);
}
