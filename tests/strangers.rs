//! No work for strangers, on the host: per-isolate state keyed by client input stays bounded
//! (challenge layouts, unknown pass ids), pass lookups and sign-ins cost a KV read or a Durable
//! Object call only within the route's `challenge` limit, and IPv6 clients are limited per /64.
//! The same against the built wasm in `tests/strangers.test.mjs`.

mod common;

use std::rc::Rc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::*;
use k256::ecdsa::SigningKey;
use serde_json::{json, Value};
use x402_edge_paywall::config::Config;
use x402_edge_paywall::evm::{address_of, hex_0x};
use x402_edge_paywall::gateway::client_limit_key;
use x402_edge_paywall::ledger::{Op, PayerOp};
use x402_edge_paywall::pass::{UNKNOWN_CAPACITY, UNKNOWN_SECONDS};
use x402_edge_paywall::x402::siwx::{self, Proof};
use x402_edge_paywall::x402::decode_header_json;

fn required(res: &http::Response<Vec<u8>>) -> Value {
    decode_header_json(res.headers()["payment-required"].to_str().unwrap()).unwrap()
}

/// A token-shaped pass token nobody was sold: 32 bytes from `n`.
fn stranger_token(n: u32) -> String {
    let mut bytes = [0x5a; 32];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn client_limit_keys_are_ipv4_addresses_and_ipv6_slash_64s() {
    let key = |ip: &str| client_limit_key(Some(ip));
    assert_eq!(key("192.0.2.1"), "192.0.2.1");
    assert_eq!(key(" 192.0.2.1 "), "192.0.2.1", "surrounding spaces ignored");
    assert_eq!(key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
    assert_eq!(key("2001:DB8:1:2::ffff"), "2001:db8:1:2::/64", "case and compression do not matter");
    assert_eq!(key("2001:0db8:0001:0002:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64", "leading zeros do not matter");
    assert_eq!(key("2001:db8::1"), "2001:db8:0:0::/64");
    assert_eq!(key("::1"), "0:0:0:0::/64");
    assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"), "another /64");
    assert_eq!(key("::ffff:192.0.2.1"), "192.0.2.1", "IPv4-mapped: its IPv4 address");
    // Anything that is not an IP address shares one key: clients cannot invent keys.
    for garbage in ["", "unknown", "not an ip", "192.0.2.1, 198.51.100.2", "fe80::1%eth0", "[2001:db8::1]", "1.2.3.4.5", &"9".repeat(10_000)] {
        assert_eq!(key(garbage), "unknown", "{garbage:?}");
    }
    assert_eq!(client_limit_key(None), "unknown");
}

#[test]
fn two_addresses_in_one_ipv6_slash_64_share_the_challenge_limit_and_the_failed_block() {
    let cfg = config_vars(json!({ "ROUTES": [{ "route": "GET /paid", "price": "$0.01", "rateLimit": { "challenge": "CHALLENGES", "failed": "FAILED" } }] }));
    let p = Rc::new(fake());
    p.limits.borrow_mut().insert("CHALLENGES".into(), 2);
    p.limits.borrow_mut().insert("FAILED".into(), 1);
    let from = |ip: &str, headers: &[(&str, &str)]| {
        let mut h = vec![("cf-connecting-ip", ip)];
        h.extend_from_slice(headers);
        run(&cfg, &p, request("/paid", &h))
    };
    assert_eq!(from("2001:db8:1:2::1", &[]).status(), 402);
    assert_eq!(from("2001:db8:1:2:ffff:ffff:ffff:ffff", &[]).status(), 402);
    assert_eq!(from("2001:db8:1:2::3", &[]).status(), 429, "a third address of the same /64 is over the shared limit");
    assert_eq!(from("2001:db8:1:3::1", &[]).status(), 402, "another /64 has its own");
    assert_eq!(p.limited.borrow().get(&("CHALLENGES".to_string(), "challenge:GET /paid:2001:db8:1:2::/64".to_string())), Some(&3));

    // Failed payment attempts: one /64 is blocked as a whole.
    let bad = ("payment-signature", "bm90IGpzb24=");
    assert_eq!(from("2001:db8:9:9::1", &[bad]).status(), 402);
    assert_eq!(from("2001:db8:9:9::2", &[bad]).status(), 429, "over the failed limit: blocked");
    let valid = payment(&cfg, 0, 7);
    assert_eq!(from("2001:db8:9:9:1:2:3:4", &[("payment-signature", &valid)]).status(), 429, "the whole /64 is blocked before anything runs");
    assert_eq!((p.origin_hits(), p.verifies(), p.settles()), (0, 0, 0));
    assert_eq!(from("2001:db8:9:a::1", &[("payment-signature", &valid)]).status(), 200, "the next /64 pays normally");
}

#[test]
fn four_thousand_invented_methods_leave_the_challenge_layouts_flat_and_the_answers_unchanged() {
    let routes = json!([{ "route": "/any/*", "price": "$0.02", "description": "any method", "mimeType": "text/plain" }]);
    let cfg = config_with(routes.clone());
    let p = Rc::new(fake());
    let layouts = || p.isolate.derived.of(&cfg).layouts(0).map_or(0, |l| l.len());
    let configured = ["GET", "HEAD", "DELETE", "POST", "PUT", "PATCH"];
    for m in configured {
        assert!(cfg.routes[0].discovery.bazaar(&m.parse().unwrap()).is_some(), "{m} has its own challenge");
    }
    // Each answer as a fresh isolate gives it (the method laid out on first use, as before).
    let fresh = |method: &str| run(&config_with(routes.clone()), &Rc::new(fake()), request_with(method, "/any/x", &[]));
    let invented_first = fresh("INVENTED0");
    assert_eq!(invented_first.status(), 402);
    assert!(required(&invented_first).get("extensions").is_none(), "an invented method has no bazaar extension");

    for m in configured {
        assert_eq!(run(&cfg, &p, request_with(m, "/any/x", &[])).status(), 402);
    }
    assert_eq!(run(&cfg, &p, request_with("INVENTED0", "/any/x", &[])).status(), 402);
    let before = layouts();
    assert_eq!(before, configured.len() + 1, "one per configured method and one shared");
    for i in 0..4000 {
        let res = run(&cfg, &p, request_with(&format!("X-{i}-{}", "Q".repeat(i % 40)), "/any/x", &[]));
        assert_eq!(res.status(), 402);
        if i % 500 == 0 {
            assert_eq!(res.headers()["payment-required"], invented_first.headers()["payment-required"], "byte-identical header");
            assert_eq!(res.body(), invented_first.body(), "byte-identical body");
        }
    }
    assert_eq!(layouts(), before, "flat after 4,000 invented methods");
    // Every method still gets its own answer, byte for byte what a fresh isolate gives.
    for m in configured.iter().copied().chain(["INVENTED0", "PROPFIND", "Z"]) {
        let a = run(&cfg, &p, request_with(m, "/any/x", &[]));
        let b = fresh(m);
        assert_eq!(a.headers()["payment-required"], b.headers()["payment-required"], "{m}");
        assert_eq!(a.body(), b.body(), "{m}");
        let input = required(&a).pointer("/extensions/bazaar/info/input/method").cloned();
        assert_eq!(input, configured.contains(&m).then(|| json!(m)), "{m}");
    }
    assert_eq!(layouts(), before);
}

fn pass_route(limit: Option<&str>) -> Rc<Config> {
    let rate = limit.map_or(json!({}), |b| json!({ "challenge": b }));
    config_with(json!([{ "route": "GET /paid", "price": "$0.01", "pass": { "ttl": "1h" }, "rateLimit": rate }]))
}

#[test]
fn random_pass_tokens_cost_a_kv_read_only_within_the_challenge_limit_and_a_real_pass_still_works() {
    let cfg = pass_route(Some("CHALLENGES"));
    let p = Rc::new(fake());
    p.limits.borrow_mut().insert("CHALLENGES".into(), 5);
    let ip = ("cf-connecting-ip", "203.0.113.9");
    let mut statuses = Vec::new();
    for n in 0..100 {
        let token = stranger_token(n);
        let carrier = if n % 2 == 0 { ("x402-pass", token) } else { ("cookie", format!("a=1; x402_pass={token}")) };
        let res = run(&cfg, &p, request("/paid", &[ip, (carrier.0, &carrier.1)]));
        statuses.push(res.status().as_u16());
    }
    assert!(p.kv_gets.get() <= 5, "{} KV reads for 100 random tokens", p.kv_gets.get());
    // Lookup and challenge count one each under the limit of 5: 402, 402, then a lookup that
    // fits but a challenge that does not (429); every later token is not even looked up.
    assert_eq!(p.kv_gets.get(), 3);
    assert_eq!(statuses[..3], [402, 402, 429]);
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(p.origin_hits(), 0);
    assert!(p.ledger_calls.borrow().is_empty(), "no ledger work either");

    // A real pass bought from that address (paying is never limited) still works from it.
    let bought = run(&cfg, &p, request("/paid", &[ip, ("payment-signature", &payment(&cfg, 0, 7))]));
    assert_eq!(bought.status(), 200);
    let token = bought.headers()["x402-pass"].to_str().unwrap().to_string();
    let served = run(&cfg, &p, request("/paid", &[ip, ("x402-pass", &token)]));
    assert_eq!(served.status(), 200, "the minting isolate knows it without a lookup");
    // In another isolate (its own caches, the same KV) it is looked up once, then cached.
    let other = Rc::new(fake());
    other.limits.borrow_mut().insert("CHALLENGES".into(), 5);
    *other.kv.borrow_mut() = p.kv.borrow().clone();
    for _ in 0..3 {
        assert_eq!(run(&cfg, &other, request("/paid", &[ip, ("x402-pass", &token)])).status(), 200);
    }
    assert_eq!(other.kv_gets.get(), 2, "its record and its tombstone key, once");
    assert_eq!(other.origin_hits(), 3);
}

#[test]
fn an_unknown_pass_is_asked_of_kv_once_per_its_negative_lifetime() {
    let cfg = pass_route(None);
    let p = Rc::new(fake());
    let token = stranger_token(1);
    for _ in 0..100 {
        let res = run(&cfg, &p, request("/paid", &[("x402-pass", &token)]));
        assert_eq!(res.status(), 402);
        assert!(required(&res)["error"].as_str().unwrap().starts_with("pass_unknown: "));
    }
    for _ in 0..10 {
        assert_eq!(run(&cfg, &p, request("/paid", &[("cookie", &format!("x402_pass={token}"))])).status(), 402);
    }
    assert_eq!(p.kv_gets.get(), 1, "100 header and 10 cookie presentations, one KV read");
    // Sold elsewhere meanwhile: known here once the negative entry lapses.
    let bought = run(&cfg, &p, request("/paid", &[("payment-signature", &payment(&cfg, 0, 7))]));
    let id = x402_edge_paywall::pass::pass_id(bought.headers()["x402-pass"].to_str().unwrap()).unwrap();
    let record = p.kv.borrow()[&format!("pass:{id}")].clone();
    let sold_elsewhere = x402_edge_paywall::pass::pass_id(&token).unwrap();
    p.kv.borrow_mut().insert(format!("pass:{sold_elsewhere}"), record);
    assert_eq!(run(&cfg, &p, request("/paid", &[("x402-pass", &token)])).status(), 402, "still remembered as unknown");
    p.now.set(NOW + UNKNOWN_SECONDS);
    assert_eq!(run(&cfg, &p, request("/paid", &[("x402-pass", &token)])).status(), 200, "asked again after its lifetime");
    assert_eq!(p.kv_gets.get(), 3, "the record, then its tombstone key");
    // And whatever strangers present, the isolate's memory of them stays bounded.
    for n in 0..(UNKNOWN_CAPACITY as u32 + 100) {
        run(&cfg, &p, request("/paid", &[("x402-pass", &stranger_token(n + 10))]));
    }
    assert!(p.cache.unknown_len() <= UNKNOWN_CAPACITY);
}

/// A `SIGN-IN-WITH-X` header answering the sign-in challenge `ext` (a 402's
/// `extensions["sign-in-with-x"]`), signed by the key made of `key_byte`.
fn sign_in_header(ext: &Value, key_byte: u8) -> String {
    let key = SigningKey::from_slice(&[key_byte; 32]).unwrap();
    let address = address_of(key.verifying_key());
    let info = &ext["info"];
    let chain = ext["supportedChains"][0]["chainId"].as_str().unwrap();
    let mut proof = json!({
        "domain": info["domain"], "address": address.to_checksum(), "statement": info["statement"], "uri": info["uri"],
        "version": info["version"], "chainId": chain, "type": "eip191", "nonce": info["nonce"], "issuedAt": info["issuedAt"],
        "expirationTime": info["expirationTime"], "resources": info["resources"], "signature": "",
    });
    let parsed: Proof = serde_json::from_value(proof.clone()).unwrap();
    let chain_id: u64 = chain.strip_prefix("eip155:").unwrap().parse().unwrap();
    let (sig, recid) = key.sign_prehash_recoverable(&siwx::eip191_hash(&siwx::message(&parsed, &address, chain_id)));
    let mut bytes = sig.to_bytes().to_vec();
    bytes.push(27 + recid.to_byte());
    proof["signature"] = json!(hex_0x(&bytes));
    STANDARD.encode(proof.to_string())
}

#[test]
fn sign_ins_are_limited_per_client_before_they_reach_the_ledger() {
    let cfg = config_vars(json!({
        "PUBLIC_URL": "https://paywall.test",
        "SIGN_IN_SECRET": "a sign-in secret of at least 32 characters",
        "ROUTES": [{ "route": "GET /paid", "price": "$0.01", "pass": { "ttl": "1h" }, "rateLimit": { "challenge": "CHALLENGES" } }]
    }));
    let p = Rc::new(fake());
    p.limits.borrow_mut().insert("CHALLENGES".into(), 4);
    let sign_ins = || p.ledger_calls.borrow().iter().filter(|(_, op)| matches!(op, Op::Payer(PayerOp::SignIn(_)))).count();
    // Throwaway keys each sign a fresh challenge (fetched from other addresses).
    let mut statuses = Vec::new();
    for n in 0..20u8 {
        let challenge = run(&cfg, &p, request("/paid", &[("cf-connecting-ip", &format!("198.51.100.{n}"))]));
        let header = sign_in_header(&required(&challenge)["extensions"]["sign-in-with-x"], 100 + n);
        let res = run(&cfg, &p, request("/paid", &[("cf-connecting-ip", "192.0.2.77"), ("sign-in-with-x", &header)]));
        statuses.push(res.status().as_u16());
    }
    assert_eq!(sign_ins(), 2, "the first 2 attempts (a sign-in and then a challenge each: 2 units) fit the limit of 4; {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 402).count(), 2, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 18, "{statuses:?}");
    assert_eq!(p.origin_hits(), 0);

    // Another address is not held back, and a payer with a pass still signs in.
    let bought = run(&cfg, &p, request("/paid", &[("cf-connecting-ip", "192.0.2.78"), ("payment-signature", &payment(&cfg, 0, 7))]));
    assert_eq!(bought.status(), 200);
    let challenge = run(&cfg, &p, request("/paid", &[("cf-connecting-ip", "192.0.2.78")]));
    let header = sign_in_header(&required(&challenge)["extensions"]["sign-in-with-x"], 7);
    let res = run(&cfg, &p, request("/paid", &[("cf-connecting-ip", "192.0.2.78"), ("sign-in-with-x", &header)]));
    assert_eq!(res.status(), 200);
    assert_eq!(sign_ins(), 3);
}
