//! Wallet sign-in (`sign-in-with-x`) on the host: a proof is bound to the full `PUBLIC_URL`
//! resource of the request, to the route's chain ids and to a nonce this deployment issued in a
//! 402 (unexpired, single use). Each refusal is a 402 naming the reason, with no origin hit and no
//! facilitator call. The official client's flow runs on the built Worker in `tests/siwx.test.mjs`.

mod common;

use std::rc::Rc;

use common::*;
use k256::ecdsa::SigningKey;
use serde_json::{json, Value};
use x402_edge_paywall::config::Config;
use x402_edge_paywall::evm::{address_of, hex_0x};
use x402_edge_paywall::x402::siwx::{eip191_hash, message, Proof, MAX_AGE_SECONDS};
use x402_edge_paywall::x402::{decode_header_json, encode_header};

const KEY: u8 = 7;

fn sign_in_config() -> Rc<Config> {
    config_vars(json!({
        "PUBLIC_URL": "https://paywall.test",
        "SIGN_IN_SECRET": "a sign-in secret of at least 32 characters",
        "ROUTES": [{ "route": "GET /reports/*", "price": "$0.05", "pass": { "ttl": "1h" } }],
    }))
}

/// A payer (key [`KEY`]) who bought a pass on `/reports/*`, then lost its token.
fn bought() -> (Rc<Config>, Rc<Fake>) {
    let cfg = sign_in_config();
    let p = Rc::new(fake());
    let res = run(&cfg, &p, request("/reports/bought", &[("payment-signature", &payment(&cfg, 0, KEY))]));
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("x402-pass"));
    (cfg, p)
}

/// The `sign-in-with-x` info of a fresh 402 for `path` (the clock moves one second first, so
/// each challenge is issued at its own time).
fn challenge_info(cfg: &Rc<Config>, p: &Rc<Fake>, path: &str) -> Value {
    p.now.set(p.now.get() + 1);
    let res = run(cfg, p, request(path, &[]));
    assert_eq!(res.status(), 402);
    let pr = decode_header_json(res.headers()["payment-required"].to_str().unwrap()).unwrap();
    let ext = &pr["extensions"]["sign-in-with-x"];
    assert_eq!(ext["supportedChains"], json!([{ "chainId": "eip155:84532", "type": "eip191" }]));
    ext["info"].clone()
}

/// The `SIGN-IN-WITH-X` header a wallet with key `key` sends for `info` on `chain_id`, after
/// `edit` (the signature covers the edited fields).
fn proof_header(info: &Value, key: u8, chain_id: &str, edit: impl Fn(&mut Proof)) -> String {
    let sk = SigningKey::from_slice(&[key; 32]).unwrap();
    let address = address_of(sk.verifying_key());
    let s = |k: &str| info[k].as_str().unwrap().to_string();
    let mut proof = Proof {
        domain: s("domain"),
        address: address.to_checksum(),
        statement: Some(s("statement")),
        uri: s("uri"),
        version: s("version"),
        chain_id: chain_id.into(),
        kind: "eip191".into(),
        nonce: s("nonce"),
        issued_at: s("issuedAt"),
        expiration_time: Some(s("expirationTime")),
        not_before: None,
        request_id: None,
        resources: Some(vec![s("uri")]),
        signature: String::new(),
    };
    edit(&mut proof);
    let numeric: u64 = proof.chain_id.trim_start_matches("eip155:").parse().unwrap();
    let (sig, recid) = sk.sign_prehash_recoverable(&eip191_hash(&message(&proof, &address, numeric)));
    let mut bytes = sig.to_bytes().to_vec();
    bytes.push(27 + recid.to_byte());
    proof.signature = hex_0x(&bytes);
    encode_header(&wire(&proof))
}

/// The proof in its wire form (camelCase, `type`).
fn wire(p: &Proof) -> Value {
    json!({
        "domain": p.domain, "address": p.address, "statement": p.statement, "uri": p.uri, "version": p.version,
        "chainId": p.chain_id, "type": p.kind, "nonce": p.nonce, "issuedAt": p.issued_at,
        "expirationTime": p.expiration_time, "resources": p.resources, "signature": p.signature,
    })
}

/// Sends a sign-in for `path`; the refusal reason of the 402, or `"admitted"` for a 200.
fn sign_in(cfg: &Rc<Config>, p: &Rc<Fake>, path: &str, header: &str) -> String {
    let res = run(cfg, p, request(path, &[("sign-in-with-x", header)]));
    match res.status().as_u16() {
        200 => "admitted".into(),
        402 => {
            let pr = decode_header_json(res.headers()["payment-required"].to_str().unwrap()).unwrap();
            pr["error"].as_str().unwrap().split(':').next().unwrap().to_string()
        }
        s => panic!("HTTP {s}"),
    }
}

#[test]
fn a_proof_for_this_resource_chain_and_issued_nonce_signs_in_once() {
    let (cfg, p) = bought();
    let (origin, settles) = (p.origin_hits(), p.settles());
    let info = challenge_info(&cfg, &p, "/reports/q3");
    assert_eq!(info["uri"], "https://paywall.test/reports/q3", "the full PUBLIC_URL resource");
    let nonce = info["nonce"].as_str().unwrap();
    assert!(nonce.len() == 32 && nonce.bytes().all(|b| b.is_ascii_hexdigit()), "32 hex, as the spec says: {nonce}");
    let header = proof_header(&info, KEY, "eip155:84532", |_| {});
    assert_eq!(sign_in(&cfg, &p, "/reports/q3", &header), "admitted");
    assert_eq!((p.origin_hits(), p.settles()), (origin + 1, settles), "served without a payment");

    // Replay: the same signed proof again.
    assert_eq!(sign_in(&cfg, &p, "/reports/q3", &header), "invalid_siwx_nonce");
    assert_eq!((p.origin_hits(), p.settles()), (origin + 1, settles));
}

#[test]
fn sign_ins_bound_to_anything_else_are_refused_without_touching_the_origin() {
    let (cfg, p) = bought();
    let (origin, calls) = (p.origin_hits(), p.facilitator_attempts.borrow().len());
    let refused = |path: &str, header: &str| sign_in(&cfg, &p, path, header);

    // Another path: a proof for /reports/q3 sent to /reports/q4, as signed or with its uri
    // rewritten to /reports/q4 (the nonce was issued for /reports/q3).
    let info = challenge_info(&cfg, &p, "/reports/q3");
    assert_eq!(refused("/reports/q4", &proof_header(&info, KEY, "eip155:84532", |_| {})), "invalid_siwx_uri_mismatch");
    let info = challenge_info(&cfg, &p, "/reports/q3");
    let moved = proof_header(&info, KEY, "eip155:84532", |pr| {
        pr.uri = "https://paywall.test/reports/q4".into();
        pr.resources = Some(vec![pr.uri.clone()]);
    });
    assert_eq!(refused("/reports/q4", &moved), "invalid_siwx_nonce_unknown");
    // Only the origin part of the URI matching is not enough.
    let info = challenge_info(&cfg, &p, "/reports/q3");
    let origin_only = proof_header(&info, KEY, "eip155:84532", |pr| pr.uri = "https://paywall.test".into());
    assert_eq!(refused("/reports/q3", &origin_only), "invalid_siwx_uri_mismatch");

    // Another chain id: an eip155 chain the route does not accept.
    let info = challenge_info(&cfg, &p, "/reports/q3");
    assert_eq!(refused("/reports/q3", &proof_header(&info, KEY, "eip155:8453", |_| {})), "invalid_siwx_chain");

    // A nonce the client made up (32 hex, as the spec's format).
    let info = challenge_info(&cfg, &p, "/reports/q3");
    let invented = proof_header(&info, KEY, "eip155:84532", |pr| pr.nonce = "0123456789abcdef0123456789abcdef".into());
    assert_eq!(refused("/reports/q3", &invented), "invalid_siwx_nonce_unknown");

    // An expired nonce, even with a fresh issuedAt and expirationTime the client wrote itself.
    let info = challenge_info(&cfg, &p, "/reports/q3");
    p.now.set(p.now.get() + MAX_AGE_SECONDS);
    let now = p.now.get();
    let stale = proof_header(&info, KEY, "eip155:84532", |pr| {
        pr.issued_at = x402_edge_paywall::x402::siwx::iso(now);
        pr.expiration_time = Some(x402_edge_paywall::x402::siwx::iso(now + 60));
    });
    assert_eq!(refused("/reports/q3", &stale), "invalid_siwx_nonce_expired");

    assert_eq!(p.origin_hits(), origin, "no refusal reached the origin");
    assert_eq!(p.facilitator_attempts.borrow().len(), calls, "nor a facilitator");
    // The same wallet still signs in with a proper proof.
    let info = challenge_info(&cfg, &p, "/reports/q3");
    assert_eq!(sign_in(&cfg, &p, "/reports/q3", &proof_header(&info, KEY, "eip155:84532", |_| {})), "admitted");
    assert_eq!(p.origin_hits(), origin + 1);
}
