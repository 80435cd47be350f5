//! Discovery through the whole pipeline on the host: `/.well-known/x402` is the paywall's own
//! answer (the origin never asked, even when a priced wildcard covers the path), and each 402
//! carries the `bazaar` extension next to `sign-in-with-x`.

mod common;

use common::*;
use serde_json::{json, Value};
use x402_edge_paywall::discovery::WellKnown;
use x402_edge_paywall::x402::decode_header_json;

fn challenge_extensions(res: &http::Response<Vec<u8>>) -> Value {
    assert_eq!(res.status(), 402);
    let pr = decode_header_json(res.headers()["payment-required"].to_str().unwrap()).unwrap();
    pr["extensions"].clone()
}

#[test]
fn the_document_is_answered_by_the_paywall_and_never_reaches_the_origin() {
    // A priced wildcard over /.well-known/* and a free catch-all: neither gets the document.
    let cfg = config_with(json!([
        { "route": "GET /paid", "price": "$0.01", "description": "Paid" },
        { "route": "GET /.well-known/*", "price": "$0.02" },
        { "route": "/free/*", "free": true }
    ]));
    let p = std::rc::Rc::new(fake());
    let res = run(&cfg, &p, request("/.well-known/x402?x=1", &[]));
    assert_eq!(res.status(), 200);
    assert_eq!(res.body(), WellKnown::for_config(&cfg).body());
    assert_eq!(res.headers()["etag"], WellKnown::for_config(&cfg).etag());
    let doc = body_json(&res);
    let routes: Vec<&str> = doc["items"].as_array().unwrap().iter().map(|i| i["route"].as_str().unwrap()).collect();
    assert_eq!(routes, ["GET /paid", "GET /.well-known/*"], "priced routes only, in configuration order");

    // Dot segments and a percent-escaped unreserved character canonicalise to the same path.
    let res = run(&cfg, &p, request("/x/../.well-known/%78402", &[]));
    assert_eq!(res.status(), 200);

    let res = run(&cfg, &p, request("/.well-known/x402", &[("if-none-match", WellKnown::for_config(&cfg).etag())]));
    assert_eq!(res.status(), 304);
    let res = run(&cfg, &p, request_with("HEAD", "/.well-known/x402", &[]));
    assert_eq!(res.status(), 200);
    assert!(res.body().is_empty());
    for m in ["POST", "DELETE", "OPTIONS"] {
        let res = run(&cfg, &p, request_with(m, "/.well-known/x402", &[]));
        assert_eq!(res.status(), 405, "{m}");
        assert_eq!(res.headers()["allow"], "GET, HEAD");
    }
    assert_eq!(p.origin_hits(), 0, "the origin was never asked");
    assert_eq!(p.settles() + p.verifies(), 0);

    // Another path under the priced wildcard is still priced.
    assert_eq!(run(&cfg, &p, request("/.well-known/other", &[])).status(), 402);
    assert_eq!(p.origin_hits(), 0);
}

#[test]
fn a_trailing_slash_is_another_resource_and_goes_to_the_origin() {
    let cfg = config();
    let p = std::rc::Rc::new(fake());
    let res = run(&cfg, &p, request("/.well-known/x402/", &[]));
    assert_eq!(res.status(), 200);
    assert_ne!(res.body(), WellKnown::for_config(&cfg).body());
    assert_eq!(p.origin_hits(), 1);
}

#[test]
fn a_402_carries_bazaar_next_to_sign_in_with_x_for_the_request_method() {
    let cfg = config_vars(json!({
        "PUBLIC_URL": "https://paywall.test",
        "SIGN_IN_SECRET": "a sign-in secret of at least 32 characters",
        "ROUTES": [
            { "route": "GET /reports/:id", "price": "$0.05", "pass": { "ttl": "1h" },
              "inputSchema": { "properties": { "format": { "type": "string" } } },
              "outputExample": { "title": "Q3" } },
            { "route": "GET /weather", "price": "$0.01", "inputExample": { "city": "Lisbon" } },
            { "route": "GET /hidden", "price": "$0.01", "discoverable": false }
        ]
    }));
    let p = std::rc::Rc::new(fake());
    let ext = challenge_extensions(&run(&cfg, &p, request("/reports/7", &[])));
    let keys: Vec<&String> = ext.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["bazaar", "sign-in-with-x"]);
    assert_eq!(ext["bazaar"]["info"]["input"], json!({ "type": "http", "method": "GET" }));
    assert_eq!(ext["bazaar"]["info"]["output"], json!({ "type": "json", "example": { "title": "Q3" } }));
    assert_eq!(ext["bazaar"]["routeTemplate"], "/reports/:id");
    assert_eq!(ext["sign-in-with-x"]["info"]["domain"], "paywall.test");

    let head = challenge_extensions(&run(&cfg, &p, request_with("HEAD", "/reports/7", &[])));
    assert_eq!(head["bazaar"]["info"]["input"]["method"], "HEAD");

    let weather = challenge_extensions(&run(&cfg, &p, request("/weather", &[])));
    assert_eq!(weather, json!({ "bazaar": cfg.routes[1].discovery.bazaar(&http::Method::GET).unwrap() }), "no pass, no sign-in; the prebuilt value");
    assert_eq!(weather["bazaar"]["info"]["input"]["queryParams"], json!({ "city": "Lisbon" }));

    let res = run(&cfg, &p, request("/hidden", &[]));
    assert_eq!(res.status(), 402);
    let pr = decode_header_json(res.headers()["payment-required"].to_str().unwrap()).unwrap();
    assert!(pr.get("extensions").is_none(), "not discoverable and no pass: no extensions at all");
    assert_eq!(p.origin_hits(), 0);
}
