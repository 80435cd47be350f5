//! Metered prices (x402 `upto`, Permit2) through the pipeline on the host: the amount from the
//! origin's `Settlement-Overrides` or measured from the body, settled once and never above the
//! authorized maximum; faults withhold the answer and charge nothing; replays and retries keep the
//! amount of the first send. Counts origin runs and facilitator calls. The real path (the
//! official upto client, facilitator and Permit2 on a local chain) is `tests/upto.test.mjs`.

mod common;

use std::rc::Rc;

use common::*;
use serde_json::{json, Value};
use x402_edge_paywall::config::Config;
use x402_edge_paywall::meter::MAX_METERED_BODY_BYTES;
use x402_edge_paywall::facilitator::UpstreamError;
use x402_edge_paywall::x402::{decode_header_json, encode_header};

const FACILITATOR: &str = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";

/// One metered route, `GET /metered`, at most $0.50 (500000 atomic units of 6-decimal USDC),
/// with `meter` (absent: the origin reports).
fn metered(meter: Option<Value>) -> Rc<Config> {
    let mut route = json!({ "route": "GET /metered", "scheme": "upto", "price": "$0.50", "verify": "local" });
    if let Some(m) = meter {
        route["meter"] = m;
    }
    config_vars(json!({ "FACILITATOR_ADDRESS": FACILITATOR, "ROUTES": [route, { "route": "GET /paid", "price": "$0.01" }] }))
}

/// [`upto_payment_with`] for the metered route, naming [`FACILITATOR`].
fn upto_payment(cfg: &Config, key_byte: u8, nonce: u64) -> String {
    upto_payment_with(cfg, 0, key_byte, nonce, FACILITATOR)
}

fn get(cfg: &Rc<Config>, p: &Rc<Fake>, header: &str) -> http::Response<Vec<u8>> {
    run(cfg, p, request("/metered", &[("payment-signature", header)]))
}

/// The amounts `/settle` was asked for, in order.
fn settled_amounts(p: &Fake) -> Vec<String> {
    p.facilitator_calls.borrow().iter().filter(|(e, _)| e == "settle").map(|(_, b)| b["paymentRequirements"]["amount"].as_str().unwrap().to_string()).collect()
}

fn payment_response(res: &http::Response<Vec<u8>>) -> Value {
    decode_header_json(res.headers()["payment-response"].to_str().unwrap()).unwrap()
}

#[test]
fn the_402_offers_upto_with_the_maximum_and_the_facilitator_the_witness_names() {
    let cfg = metered(None);
    let p = Rc::new(fake());
    let res = run(&cfg, &p, request("/metered", &[]));
    assert_eq!(res.status(), 402);
    let required = decode_header_json(res.headers()["payment-required"].to_str().unwrap()).unwrap();
    let offer = &required["accepts"][0];
    assert_eq!(offer["scheme"], "upto");
    assert_eq!(offer["amount"], "500000", "the maximum, in atomic units");
    assert_eq!(offer["extra"]["assetTransferMethod"], "permit2");
    assert_eq!(offer["extra"]["facilitatorAddress"], FACILITATOR);
    assert_eq!(p.origin_hits(), 0);
}

#[test]
fn the_amount_the_origin_reports_is_settled_and_its_header_never_reaches_the_client() {
    let cfg = metered(None);
    let p = Rc::new(fake());
    p.origin_response_headers.borrow_mut().push(("settlement-overrides", r#"{"amount":"1234"}"#.into()));
    let res = get(&cfg, &p, &upto_payment(&cfg, 7, 1));
    assert_eq!(res.status(), 200);
    assert_eq!(res.body(), b"{\"data\":\"paid content\"}");
    assert!(res.headers().get("settlement-overrides").is_none());
    assert_eq!(settled_amounts(&p), ["1234"]);
    let settle = &p.facilitator_calls.borrow()[0].1;
    assert_eq!(settle["paymentRequirements"]["scheme"], "upto");
    assert_eq!(settle["paymentRequirements"]["extra"], cfg.routes[0].accepts[0].requirements_json["extra"]);
    let pr = payment_response(&res);
    assert_eq!(pr["success"], true);
    assert_eq!(pr["amount"], "1234");
    assert_eq!(p.origin_hits(), 1);
    let decision = p.decisions.borrow().last().cloned().unwrap();
    assert_eq!(decision.amount.as_deref(), Some("1234"), "the decision carries the settled amount");
    assert_eq!(decision.maximum.as_deref(), Some("500000"));
}

#[test]
fn the_sdk_forms_and_no_report_settle_as_the_official_middleware_does() {
    for (header, expected) in [(None, "500000"), (Some(r#"{"amount":"$0.25"}"#), "250000"), (Some(r#"{"amount":"10%"}"#), "50000")] {
        let cfg = metered(None);
        let p = Rc::new(fake());
        if let Some(h) = header {
            p.origin_response_headers.borrow_mut().push(("settlement-overrides", h.into()));
        }
        assert_eq!(get(&cfg, &p, &upto_payment(&cfg, 7, 1)).status(), 200);
        assert_eq!(settled_amounts(&p), [expected], "{header:?}");
    }
}

#[test]
fn a_malformed_or_excessive_report_withholds_the_answer_and_charges_nothing() {
    for h in [r#"{"amount":"500001"}"#, r#"{"amount":"lots"}"#, "not json", r#"{"amount":1234}"#] {
        let cfg = metered(None);
        let p = Rc::new(fake());
        p.origin_response_headers.borrow_mut().push(("settlement-overrides", h.into()));
        let header = upto_payment(&cfg, 7, 1);
        let res = get(&cfg, &p, &header);
        assert_eq!(res.status(), 502, "{h}");
        let body = body_json(&res);
        assert_eq!(body["error"], "origin_metering_failed");
        assert!(!String::from_utf8_lossy(res.body()).contains("paid content"));
        assert!(res.headers().get("settlement-overrides").is_none());
        assert!(settled_amounts(&p).is_empty(), "nothing settled for {h}");
        // Released: the payer may retry the same authorization once the origin is fixed.
        p.origin_response_headers.borrow_mut().clear();
        assert_eq!(get(&cfg, &p, &header).status(), 200);
        assert_eq!(settled_amounts(&p), ["500000"]);
    }
}

#[test]
fn a_zero_amount_moves_nothing_and_the_permit_buys_nothing_more() {
    let cfg = metered(None);
    let p = Rc::new(fake());
    p.origin_response_headers.borrow_mut().push(("settlement-overrides", r#"{"amount":"0"}"#.into()));
    let header = upto_payment(&cfg, 7, 1);
    let res = get(&cfg, &p, &header);
    assert_eq!(res.status(), 200);
    assert!(p.facilitator_calls.borrow().iter().all(|(e, _)| e != "settle"), "no /settle for zero");
    let pr = payment_response(&res);
    assert_eq!(pr["success"], true);
    assert_eq!(pr["amount"], "0");
    assert_eq!(pr["transaction"], "");
    // The same permit again: refused, the origin not run again.
    let again = get(&cfg, &p, &header);
    assert_eq!(again.status(), 402);
    assert_eq!(p.origin_hits(), 1);
}

#[test]
fn replays_and_concurrent_copies_of_one_permit_run_the_origin_once() {
    let cfg = metered(None);
    let p = Rc::new(fake());
    p.origin_response_headers.borrow_mut().push(("settlement-overrides", r#"{"amount":"77"}"#.into()));
    let header = upto_payment(&cfg, 9, 5);
    let reqs = (0..4).map(|_| request("/metered", &[("payment-signature", &header)])).collect();
    let statuses: Vec<u16> = run_all(&cfg, &p, reqs).iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| [200, 409].contains(s)), "{statuses:?}");
    assert_eq!(get(&cfg, &p, &header).status(), 402, "a replay after delivery");
    assert_eq!(p.origin_hits(), 1);
    assert_eq!(settled_amounts(&p), ["77"]);
}

#[test]
fn a_retry_of_an_unknown_outcome_settles_the_amount_first_sent() {
    let cfg = metered(None);
    let p = Rc::new(fake());
    p.origin_response_headers.borrow_mut().push(("settlement-overrides", r#"{"amount":"321"}"#.into()));
    p.queue_settle(Err(UpstreamError::Timeout { seconds: 30 }));
    let header = upto_payment(&cfg, 7, 3);
    assert_eq!(get(&cfg, &p, &header).status(), 504);
    // The origin now reports another amount: the retry settles the one on record, before the
    // origin runs again, and strips the new report.
    p.origin_response_headers.borrow_mut()[0].1 = r#"{"amount":"999"}"#.into();
    let res = get(&cfg, &p, &header);
    assert_eq!(res.status(), 200);
    assert_eq!(settled_amounts(&p), ["321", "321"]);
    assert!(res.headers().get("settlement-overrides").is_none());
    assert_eq!(payment_response(&res)["amount"], "321");
}

#[test]
fn body_meters_measure_bytes_json_paths_and_the_last_event_of_a_stream() {
    // 3 atomic units per byte.
    let cfg = metered(Some(json!({ "bytes": "$0.000003" })));
    let p = Rc::new(fake());
    *p.origin_body.borrow_mut() = Some(vec![b'x'; 1000]);
    assert_eq!(get(&cfg, &p, &upto_payment(&cfg, 7, 1)).body().len(), 1000);
    assert_eq!(settled_amounts(&p), ["3000"]);

    // Capped at the maximum.
    let p = Rc::new(fake());
    *p.origin_body.borrow_mut() = Some(vec![b'x'; 400_000]);
    assert_eq!(get(&cfg, &p, &upto_payment(&cfg, 7, 1)).status(), 200);
    assert_eq!(settled_amounts(&p), ["500000"]);

    // 2 atomic units per token.
    let cfg = metered(Some(json!({ "json": "usage.total_tokens", "unit": "$0.000002" })));
    let p = Rc::new(fake());
    *p.origin_body.borrow_mut() = Some(br#"{"text":"hi","usage":{"total_tokens":42}}"#.to_vec());
    let res = get(&cfg, &p, &upto_payment(&cfg, 7, 1));
    assert_eq!(res.body(), br#"{"text":"hi","usage":{"total_tokens":42}}"#, "the body reaches the client unchanged");
    assert_eq!(settled_amounts(&p), ["84"]);

    let p = Rc::new(fake());
    p.origin_response_headers.borrow_mut().push(("content-type", "text/event-stream".into()));
    let stream = b"data: {\"delta\":\"a\"}\n\ndata: {\"usage\":{\"total_tokens\":10}}\n\ndata: [DONE]\n\n".to_vec();
    *p.origin_body.borrow_mut() = Some(stream.clone());
    let res = get(&cfg, &p, &upto_payment(&cfg, 7, 1));
    assert_eq!(res.body(), &stream);
    assert_eq!(settled_amounts(&p), ["20"]);

    // No usage in the answer: withheld, nothing charged.
    let p = Rc::new(fake());
    *p.origin_body.borrow_mut() = Some(br#"{"text":"hi"}"#.to_vec());
    let res = get(&cfg, &p, &upto_payment(&cfg, 7, 1));
    assert_eq!(res.status(), 502);
    assert_eq!(body_json(&res)["error"], "origin_metering_failed");
    assert!(settled_amounts(&p).is_empty());
}

#[test]
fn a_payer_without_a_permit2_allowance_gets_412() {
    let cfg = config_vars(json!({ "FACILITATOR_ADDRESS": FACILITATOR, "ROUTES": [{ "route": "GET /metered", "scheme": "upto", "price": "$0.50", "verify": "always" }] }));
    let p = Rc::new(fake());
    p.queue_verify(reply(200, r#"{"isValid":false,"invalidReason":"permit2_allowance_required"}"#));
    let res = get(&cfg, &p, &upto_payment(&cfg, 7, 1));
    assert_eq!(res.status(), 412);
    assert!(res.headers().get("payment-required").is_some(), "the challenge goes with it");
    assert_eq!(p.origin_hits(), 0);
}

#[test]
fn a_payment_of_the_wrong_scheme_is_refused_before_the_origin() {
    let cfg = metered(None);
    let p = Rc::new(fake());
    // An EIP-3009 authorization naming the upto offer.
    let exact_cfg = config();
    let mut exact = decode_header_json(&payment(&exact_cfg, 0, 7)).unwrap();
    exact["accepted"] = cfg.routes[0].accepts[0].requirements_json.clone();
    assert_eq!(get(&cfg, &p, &encode_header(&exact)).status(), 402);
    // A Permit2 authorization naming the exact offer.
    let mut upto = decode_header_json(&upto_payment(&cfg, 7, 1)).unwrap();
    upto["accepted"] = cfg.routes[1].accepts[0].requirements_json.clone();
    assert_eq!(run(&cfg, &p, request("/paid", &[("payment-signature", &encode_header(&upto))])).status(), 402);
    // A permit signed for another facilitator.
    let mut other = decode_header_json(&upto_payment(&cfg, 7, 2)).unwrap();
    other["payload"]["permit2Authorization"]["witness"]["facilitator"] = json!("0x0000000000000000000000000000000000000001");
    assert_eq!(get(&cfg, &p, &encode_header(&other)).status(), 402);
    assert_eq!(p.origin_hits(), 0);
    assert!(p.facilitator_calls.borrow().is_empty());
}

#[test]
fn metered_routes_are_configured_or_refused_with_a_clear_error() {
    let err = |route: Value, vars: Value| {
        let mut v = json!({ "ORIGIN_URL": "https://origin.test", "FACILITATOR_URL": "https://facilitator.test", "PAY_TO": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "ROUTES": [route] });
        for (k, val) in vars.as_object().unwrap() {
            v[k] = val.clone();
        }
        Config::from_vars(v.as_object().unwrap()).err().map(|e| e.to_string()).unwrap_or_default()
    };
    let fa = json!({ "FACILITATOR_ADDRESS": FACILITATOR });
    assert!(err(json!({ "route": "GET /m", "scheme": "upto", "price": "$1" }), json!({})).contains("FACILITATOR_ADDRESS"));
    assert!(err(json!({ "route": "GET /m", "scheme": "upto", "price": "$1", "pass": { "ttl": "1h" } }), fa.clone()).contains("cannot sell a pass"));
    assert!(err(json!({ "route": "GET /m", "scheme": "upto", "price": "$1", "settle": "before" }), fa.clone()).contains("settles after"));
    assert!(err(json!({ "route": "GET /m", "price": "$1", "meter": "origin" }), fa.clone()).contains("`meter` is for metered options"));
    assert!(err(json!({ "route": "GET /m", "scheme": "uptoo", "price": "$1" }), fa.clone()).contains("scheme"));
    assert!(err(json!({ "route": "GET /m", "scheme": "upto", "price": "$1", "meter": { "jsn": "a" } }), fa.clone()).contains("did you mean `json`"));
    assert!(err(json!({ "route": "GET /m", "scheme": "upto", "price": "$1", "meter": { "json": "a..b", "unit": "$0.01" } }), fa.clone()).contains("path"));
    assert!(err(json!({ "route": "GET /m", "scheme": "upto", "price": "$1" }), json!({ "FACILITATOR_ADDRESS": "0x12" })).contains("FACILITATOR_ADDRESS"));
    assert_eq!(err(json!({ "route": "GET /m", "scheme": "upto", "price": "$1", "meter": { "json": "usage.total_tokens", "unit": "$0.000002" } }), fa), "");
}

#[test]
fn shadow_mode_records_what_the_meter_would_have_charged_and_charges_nothing() {
    let cfg = config_vars(json!({ "MODE": "shadow", "FACILITATOR_ADDRESS": FACILITATOR, "ROUTES": [{ "route": "GET /metered", "scheme": "upto", "price": "$0.50" }] }));
    let p = Rc::new(fake());
    p.origin_response_headers.borrow_mut().push(("settlement-overrides", r#"{"amount":"1234"}"#.into()));
    let res = get(&cfg, &p, &upto_payment(&cfg, 7, 1));
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("settlement-overrides").is_none());
    assert!(p.facilitator_calls.borrow().is_empty());
    let decision = p.decisions.borrow().last().cloned().unwrap();
    assert_eq!(decision.reason.as_deref(), Some("valid_payment"));
    assert_eq!(decision.amount.as_deref(), Some("1234"));
    assert_eq!(decision.maximum.as_deref(), Some("500000"));
}

#[test]
fn discovery_and_the_browser_page_say_the_maximum_and_the_meter() {
    let cfg = metered(Some(json!({ "json": "usage.total_tokens", "unit": "$0.000002" })));
    let p = Rc::new(fake());
    let doc = run(&cfg, &p, request("/.well-known/x402", &[]));
    let items = body_json(&doc)["items"].clone();
    let item = items.as_array().unwrap().iter().find(|i| i["route"] == "GET /metered").unwrap().clone();
    assert_eq!(item["accepts"][0]["scheme"], "upto");
    assert_eq!(item["accepts"][0]["amount"], "500000");
    assert_eq!(item["meter"], "2 atomic units per usage.total_tokens");
    let page = run(&cfg, &p, request("/metered", &[("accept", "text/html"), ("sec-fetch-mode", "navigate")]));
    assert_eq!(page.status(), 402);
    let html = String::from_utf8_lossy(page.body()).to_string();
    assert!(html.contains("up to $0.50 USDC (metered: 2 atomic units per usage.total_tokens)"), "{}", &html[..html.len().min(3000)]);
    assert!(html.contains("new UptoEvmScheme(signer)"), "the code sample pays with the upto client");
    assert_eq!(p.origin_hits(), 0);
}

#[test]
fn a_metered_payment_context_carries_the_maximum() {
    let cfg = config_vars(json!({
        "FACILITATOR_ADDRESS": FACILITATOR,
        "PAYMENT_CONTEXT_KEY": CONTEXT_KEY,
        "ROUTES": [{ "route": "GET /metered", "scheme": "upto", "price": "$0.50" }],
    }));
    let p = Rc::new(fake());
    assert_eq!(get(&cfg, &p, &upto_payment(&cfg, 7, 1)).status(), 200);
    let calls = p.origin_calls.borrow();
    let jws = calls[0].headers()["x402-payment-context"].to_str().unwrap().to_string();
    let claims = decode_header_json(&jws.split('.').nth(1).unwrap().replace('-', "+").replace('_', "/")).unwrap();
    assert_eq!(claims["x402"]["scheme"], "upto");
    assert_eq!(claims["x402"]["maxAmount"], "500000");
    assert!(claims["x402"].get("amount").is_none());
}

/// An Ed25519 JWK (RFC 8037's example key) for the payment context.
const CONTEXT_KEY: &str = r#"{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;

#[test]
fn the_eip2612_gas_sponsoring_extension_is_announced_checked_locally_and_passed_on() {
    let route = |gas: bool| {
        let mut r = json!({ "route": "GET /metered", "scheme": "upto", "price": "$0.50", "verify": "always" });
        if gas {
            r["gasSponsoring"] = json!("eip2612");
        }
        r
    };
    let cfg = config_vars(json!({ "FACILITATOR_ADDRESS": FACILITATOR, "ROUTES": [route(true)] }));
    let p = Rc::new(fake());
    let required = |cfg: &Rc<Config>| {
        let res = run(cfg, &Rc::new(fake()), request("/metered", &[]));
        decode_header_json(res.headers()["payment-required"].to_str().unwrap()).unwrap()
    };
    let announced = required(&cfg);
    assert_eq!(announced["extensions"]["eip2612GasSponsoring"]["info"]["version"], "1");
    assert_eq!(announced["extensions"]["eip2612GasSponsoring"]["schema"]["required"][0], "from");
    let plain = config_vars(json!({ "FACILITATOR_ADDRESS": FACILITATOR, "ROUTES": [route(false)] }));
    assert!(required(&plain).get("extensions").is_none_or(|e| e.get("eip2612GasSponsoring").is_none()), "announced only where configured");

    // A payload with the payer's permit, as the official upto client adds it.
    let with_permit = |edit: &dyn Fn(&mut Value)| {
        let mut payload = decode_header_json(&upto_payment(&cfg, 7, 1)).unwrap();
        let a = &payload["payload"]["permit2Authorization"];
        let mut info = json!({ "from": a["from"], "asset": a["permitted"]["token"], "spender": "0x000000000022D473030F116dDEE9F6B43aC78BA3", "amount": a["permitted"]["amount"],
            "nonce": "0", "deadline": (NOW + 120).to_string(), "signature": format!("0x{}", "11".repeat(65)), "version": "1" });
        edit(&mut info);
        payload["extensions"] = json!({ "eip2612GasSponsoring": { "info": info } });
        encode_header(&payload)
    };
    for (field, value, reason) in [
        ("from", json!("0x0000000000000000000000000000000000000001"), "eip2612_from_mismatch"),
        ("spender", json!("0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002"), "eip2612_spender_not_permit2"),
        ("deadline", json!((NOW + 1).to_string()), "eip2612_deadline_expired"),
        ("amount", json!("0x10"), "invalid_eip2612_extension_format"),
    ] {
        let res = get(&cfg, &p, &with_permit(&|i: &mut Value| i[field] = value.clone()));
        assert_eq!(res.status(), 402, "{field}");
        let refused = decode_header_json(res.headers()["payment-required"].to_str().unwrap()).unwrap();
        assert!(refused["error"].as_str().unwrap().starts_with(reason), "{field}: {}", refused["error"]);
    }
    assert!(p.facilitator_calls.borrow().is_empty(), "refused locally");
    assert_eq!(p.origin_hits(), 0);

    p.queue_verify(reply(200, r#"{"isValid":true,"payer":"0x0"}"#));
    let header = with_permit(&|_| {});
    let res = get(&cfg, &p, &header);
    assert_eq!(res.status(), 200);
    assert_eq!(p.origin_hits(), 1);
    let sent = decode_header_json(&header).unwrap();
    for (endpoint, body) in p.facilitator_calls.borrow().iter() {
        assert_eq!(body["paymentPayload"]["extensions"], sent["extensions"], "{endpoint}: the permit goes to the facilitator as sent");
    }
    assert_eq!(p.facilitator_calls.borrow().len(), 2, "verify, then settle");

    // On a route that never asks /verify, a permit still is: only the chain can check it.
    let mut local = route(true);
    local["verify"] = json!("local");
    let cfg = config_vars(json!({ "FACILITATOR_ADDRESS": FACILITATOR, "ROUTES": [local] }));
    let p = Rc::new(fake());
    p.queue_verify(reply(200, r#"{"isValid":false,"invalidReason":"permit2_allowance_required","payer":"0x0"}"#));
    let res = get(&cfg, &p, &with_permit(&|_| {}));
    assert_eq!(res.status(), 412, "the facilitator's answer about the permit decides");
    assert_eq!(p.facilitator_calls.borrow().iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>(), ["verify"]);
    assert_eq!(p.origin_hits(), 0);
    let plain = upto_payment(&cfg, 7, 2);
    assert_eq!(get(&cfg, &p, &plain).status(), 200, "without a permit the route's policy (local) holds");
    assert_eq!(p.facilitator_calls.borrow().iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>(), ["verify", "settle"]);
}

#[test]
fn gas_sponsoring_is_configured_or_refused_with_a_clear_error() {
    let err = |route: Value| {
        let v = json!({ "ORIGIN_URL": "https://origin.test", "FACILITATOR_URL": "https://facilitator.test", "PAY_TO": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "FACILITATOR_ADDRESS": FACILITATOR, "ROUTES": [route] });
        Config::from_vars(v.as_object().unwrap()).err().map(|e| e.to_string()).unwrap_or_default()
    };
    assert!(err(json!({ "route": "GET /m", "price": "$1", "gasSponsoring": "eip2612" })).contains("`gasSponsoring` is for metered options"));
    assert!(err(json!({ "route": "GET /m", "scheme": "upto", "price": "$1", "gasSponsoring": "erc20" })).contains("gasSponsoring `erc20` is not offered here"));
    assert!(err(json!({ "route": "GET /m", "scheme": "upto", "price": "$1", "gasSponsering": "eip2612" })).contains("gasSponsoring"), "a typo names the key");
    assert_eq!(err(json!({ "route": "GET /m", "accepts": [{ "scheme": "upto", "price": "$1", "gasSponsoring": "eip2612" }, { "price": "$0.10" }] })), "");
}

#[test]
fn the_byte_meter_counts_the_bytes_that_arrived_not_the_announced_length() {
    // 1 atomic unit per byte, at most 500000.
    let cfg = metered(Some(json!({ "bytes": "$0.000001" })));
    // A body over 4 MiB with an honest Content-Length is still an origin fault: nothing settled,
    // nothing served, the payment released.
    let p = Rc::new(fake());
    let big = MAX_METERED_BODY_BYTES + 1;
    *p.origin_body.borrow_mut() = Some(vec![b'x'; big]);
    p.origin_response_headers.borrow_mut().push(("content-length", big.to_string()));
    let header = upto_payment(&cfg, 7, 1);
    let res = get(&cfg, &p, &header);
    assert_eq!(res.status(), 502);
    assert_eq!(body_json(&res)["error"], "origin_metering_failed");
    assert!(settled_amounts(&p).is_empty());
    // A Content-Length that understates the body: the bytes that arrived are charged.
    let p = Rc::new(fake());
    *p.origin_body.borrow_mut() = Some(vec![b'x'; 1000]);
    p.origin_response_headers.borrow_mut().push(("content-length", "10".into()));
    let res = get(&cfg, &p, &upto_payment(&cfg, 7, 2));
    assert_eq!(res.body().len(), 1000);
    assert!(res.headers().get("content-length").is_none(), "the origin's length is not kept for the bytes read");
    assert_eq!(settled_amounts(&p), ["1000"]);
    // HEAD on the GET route: the answer carries no body, whatever length it announces, so
    // nothing is charged (no /settle) and the permit is spent in the ledger.
    let p = Rc::new(fake());
    *p.origin_body.borrow_mut() = Some(Vec::new());
    p.origin_response_headers.borrow_mut().push(("content-length", "1000".into()));
    let header = upto_payment(&cfg, 7, 3);
    let res = run(&cfg, &p, request_with("HEAD", "/metered", &[("payment-signature", &header)]));
    assert_eq!(res.status(), 200);
    assert!(settled_amounts(&p).is_empty(), "no /settle for a HEAD answer");
    assert_eq!(payment_response(&res)["amount"], "0");
    assert_eq!(p.origin_hits(), 1);
}

#[test]
fn settlement_overrides_never_reach_the_client_and_twice_is_no_amount() {
    // An error answer of a metered route and any answer of an `exact` route keep it too.
    let cfg = metered(None);
    let p = Rc::new(fake());
    p.origin_status.set(404);
    p.origin_response_headers.borrow_mut().push(("settlement-overrides", r#"{"amount":"1"}"#.into()));
    let res = get(&cfg, &p, &upto_payment(&cfg, 7, 1));
    assert_eq!(res.status(), 404);
    assert!(res.headers().get("settlement-overrides").is_none());
    assert!(settled_amounts(&p).is_empty());
    let p = Rc::new(fake());
    p.origin_response_headers.borrow_mut().push(("settlement-overrides", r#"{"amount":"1"}"#.into()));
    let res = run(&cfg, &p, request("/paid", &[("payment-signature", &payment(&cfg, 1, 7))]));
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("settlement-overrides").is_none());
    // Two reports are not an amount (the Workers runtime joins them into one value that is not
    // JSON): withheld, nothing charged, on the host as on the edge.
    let p = Rc::new(fake());
    p.origin_response_headers.borrow_mut().push(("settlement-overrides", r#"{"amount":"0"}"#.into()));
    p.origin_response_headers.borrow_mut().push(("settlement-overrides", r#"{"amount":"500000"}"#.into()));
    let res = get(&cfg, &p, &upto_payment(&cfg, 7, 2));
    assert_eq!(res.status(), 502);
    assert_eq!(body_json(&res)["error"], "origin_metering_failed");
    assert!(settled_amounts(&p).is_empty());
}

#[test]
fn a_facilitator_answer_naming_another_amount_is_not_taken_as_paid() {
    let cfg = metered(None);
    let p = Rc::new(fake());
    p.origin_response_headers.borrow_mut().push(("settlement-overrides", r#"{"amount":"1234"}"#.into()));
    let lying = json!({ "success": true, "transaction": tx(9), "network": cfg.routes[0].accepts[0].requirements_json["network"], "amount": "9999999" });
    p.settle.borrow_mut().push(reply(200, &lying.to_string()));
    let res = get(&cfg, &p, &upto_payment(&cfg, 7, 1));
    assert_eq!(res.status(), 502, "an answer that contradicts the question is no evidence of payment");
    assert_eq!(body_json(&res)["error"], "settlement_outcome_unknown");
    assert!(!String::from_utf8_lossy(res.body()).contains("paid content"));
    assert!(res.headers().get("payment-response").is_none());
    assert_eq!(settled_amounts(&p), ["1234"]);
    // An answer naming the amount asked is believed, and the client is told that amount.
    let p = Rc::new(fake());
    p.origin_response_headers.borrow_mut().push(("settlement-overrides", r#"{"amount":"1234"}"#.into()));
    let honest = json!({ "success": true, "transaction": tx(9), "network": cfg.routes[0].accepts[0].requirements_json["network"], "amount": "1234" });
    p.settle.borrow_mut().push(reply(200, &honest.to_string()));
    let res = get(&cfg, &p, &upto_payment(&cfg, 7, 2));
    assert_eq!(res.status(), 200);
    assert_eq!(payment_response(&res)["amount"], "1234");
}

#[test]
fn the_origin_time_limit_covers_a_metered_body_only_where_the_body_is_read_before_settlement() {
    use x402_edge_paywall::gateway::WholeAnswer;
    let whole = |p: &Fake| p.origin_calls.borrow().last().map(|r| r.extensions().get::<WholeAnswer>().is_some());
    // Body meters read the body while the payment is held: the limit covers it (the real path,
    // a body still arriving at the limit: tests/upto.test.mjs).
    for meter in [json!({ "bytes": "$0.000001" }), json!({ "json": "usage.total_tokens", "unit": "$0.000002" })] {
        let cfg = metered(Some(meter.clone()));
        let p = Rc::new(fake());
        *p.origin_body.borrow_mut() = Some(br#"{"usage":{"total_tokens":1}}"#.to_vec());
        assert_eq!(get(&cfg, &p, &upto_payment(&cfg, 7, 1)).status(), 200);
        assert_eq!(whole(&p), Some(true), "{meter}");
    }
    // The origin's own report and an `exact` route: the body streams to the client after
    // settlement, as long as it takes.
    let cfg = metered(None);
    let p = Rc::new(fake());
    assert_eq!(get(&cfg, &p, &upto_payment(&cfg, 7, 1)).status(), 200);
    assert_eq!(whole(&p), Some(false));
    assert_eq!(run(&cfg, &p, request("/paid", &[("payment-signature", &payment(&cfg, 1, 7))])).status(), 200);
    assert_eq!(whole(&p), Some(false));
}

#[test]
fn one_permit2_nonce_signed_for_two_tokens_runs_the_origin_once() {
    // A Permit2 nonce is the payer's at Permit2, whatever the token: only one of the two permits
    // can execute, so the second is the same authorization to the ledger, not a new payment.
    let other = "0x1111111111111111111111111111111111111111";
    let cfg = config_vars(json!({ "FACILITATOR_ADDRESS": FACILITATOR, "ROUTES": [{ "route": "GET /metered", "verify": "local", "accepts": [
        { "scheme": "upto", "price": "$0.50" },
        { "scheme": "upto", "amount": "500000", "asset": other, "name": "Other", "version": "1" },
    ] }] }));
    let p = Rc::new(fake());
    p.origin_response_headers.borrow_mut().push(("settlement-overrides", r#"{"amount":"100"}"#.into()));
    let first = get(&cfg, &p, &upto_payment_for_offer(&cfg, 0, 0, 7, 42, FACILITATOR));
    assert_eq!(first.status(), 200);
    let second = get(&cfg, &p, &upto_payment_for_offer(&cfg, 0, 1, 7, 42, FACILITATOR));
    assert_eq!(second.status(), 402);
    let refused = decode_header_json(second.headers()["payment-required"].to_str().unwrap()).unwrap();
    assert!(refused["error"].as_str().unwrap().contains("already holds this authorization (payer and nonce) with another signature"), "{refused}");
    assert_eq!((p.origin_hits(), p.settles()), (1, 1));
    // Another nonce on the other token is a payment of its own.
    assert_eq!(get(&cfg, &p, &upto_payment_for_offer(&cfg, 0, 1, 7, 43, FACILITATOR)).status(), 200);
    assert_eq!((p.origin_hits(), p.settles()), (2, 2));
}

#[test]
fn a_redelivered_metered_payment_names_the_amount_it_settled() {
    let cfg = metered(None);
    let p = Rc::new(fake());
    p.origin_response_headers.borrow_mut().push(("settlement-overrides", r#"{"amount":"1234"}"#.into()));
    p.gone_during_settle.set(true);
    let header = upto_payment(&cfg, 7, 1);
    let _ = get(&cfg, &p, &header);
    assert_eq!(settled_amounts(&p), ["1234"], "settled while the client was gone");
    p.gone_during_settle.set(false);
    p.gone.set(false);
    // The retry is served once without settling again, and told the amount it paid (the origin's
    // new report does not change it).
    p.origin_response_headers.borrow_mut().clear();
    p.origin_response_headers.borrow_mut().push(("settlement-overrides", r#"{"amount":"999"}"#.into()));
    let res = get(&cfg, &p, &header);
    assert_eq!(res.status(), 200);
    assert_eq!(settled_amounts(&p), ["1234"]);
    let pr = payment_response(&res);
    assert_eq!((pr["success"].as_bool(), pr["amount"].as_str()), (Some(true), Some("1234")));
    assert!(res.headers().get("settlement-overrides").is_none());
    assert_eq!(p.decisions.borrow().last().and_then(|d| d.reason.clone()).as_deref(), Some("redelivered"));
}
