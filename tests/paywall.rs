//! The browser paywall through the whole pipeline on the host (`gateway::handle` with the fake
//! platform): which requests get the HTML page, that its `PAYMENT-REQUIRED` is the JSON
//! challenge's, and that every other answer is left alone. The page itself runs in Chromium in
//! `tests/paywall.test.mjs`.

mod common;

use std::rc::Rc;

use common::*;
use x402_edge_paywall::facilitator::HttpReply;

const CHROME_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
const NAVIGATION: [(&str, &str); 3] = [("accept", CHROME_ACCEPT), ("sec-fetch-mode", "navigate"), ("sec-fetch-dest", "document")];

#[test]
fn a_navigation_gets_the_page_with_the_same_payment_required_header() {
    let cfg = config();
    let p = Rc::new(fake());
    let json = run(&cfg, &p, request("/paid", &[]));
    let page = run(&cfg, &p, request("/paid", &NAVIGATION));
    assert_eq!((json.status().as_u16(), page.status().as_u16()), (402, 402));
    assert_eq!(page.headers()["payment-required"], json.headers()["payment-required"], "agents sending browser headers read the same challenge");
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(page.headers()["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'; script-src 'sha256-"));
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert_eq!(page.headers()["cache-control"], "no-store");
    let vary: Vec<_> = page.headers().get_all("vary").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert!(vary.contains(&"Accept, Sec-Fetch-Mode".to_string()), "{vary:?}");
    assert!(vary.iter().any(|v| v.contains("PAYMENT-SIGNATURE")), "the pipeline's own Vary is kept: {vary:?}");
    let html = String::from_utf8(page.into_body()).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<dt>Resource</dt><dd><code>https://paywall.test/paid</code></dd>"));
    assert_eq!(p.origin_hits(), 0);
    assert_eq!((p.verifies(), p.settles()), (0, 0));
}

#[test]
fn other_clients_keep_the_json_challenge_byte_for_byte() {
    let cfg = config();
    let p = Rc::new(fake());
    let plain = run(&cfg, &p, request("/paid", &[]));
    for headers in [
        vec![("accept", CHROME_ACCEPT), ("sec-fetch-mode", "cors")],
        vec![("accept", CHROME_ACCEPT)],
        vec![("accept", "*/*"), ("sec-fetch-mode", "navigate")],
        vec![("accept", "application/json"), ("sec-fetch-mode", "navigate")],
    ] {
        let res = run(&cfg, &p, request("/paid", &headers));
        assert_eq!(res.status(), 402);
        assert_eq!(res.headers(), plain.headers(), "{headers:?}");
        assert_eq!(res.body(), plain.body(), "{headers:?}");
    }
}

#[test]
fn a_refused_pass_is_named_on_the_page() {
    let cfg = config_with_pass(serde_json::json!({ "ttl": "1h" }));
    let p = Rc::new(fake());
    let token = "A".repeat(43);
    let mut headers = NAVIGATION.to_vec();
    let cookie = format!("x402_pass={token}");
    headers.push(("cookie", &cookie));
    let res = run(&cfg, &p, request("/paid", &headers));
    assert_eq!(res.status(), 402);
    let html = String::from_utf8(res.into_body()).unwrap();
    assert!(html.contains("<p class=\"notice\">Not accepted: pass_unknown: unknown pass"), "{}", &html[..400]);
}

#[test]
fn answers_other_than_a_challenge_are_left_alone_for_a_navigation() {
    let cfg = config();
    // A paid request that happens to carry navigation headers: the origin's answer.
    let p = Rc::new(fake());
    let mut headers = NAVIGATION.to_vec();
    let h = payment(&cfg, 0, 7);
    headers.push(("payment-signature", &h));
    let res = run(&cfg, &p, request("/paid", &headers));
    assert_eq!(res.status(), 200);
    assert_eq!(res.body(), b"{\"data\":\"paid content\"}");
    // A refused settlement: 402 with PAYMENT-RESPONSE, JSON, content withheld.
    let p = Rc::new(fake());
    p.queue_settle(Ok(HttpReply { status: 200, body: br#"{"success":false,"errorReason":"unexpected_settle_error","transaction":"","network":"eip155:84532"}"#.to_vec() }));
    let h = payment(&cfg, 0, 8);
    let mut headers = NAVIGATION.to_vec();
    headers.push(("payment-signature", &h));
    let res = run(&cfg, &p, request("/paid", &headers));
    assert_eq!(res.status(), 402);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert!(res.headers().get("payment-required").is_none());
    assert_eq!(body_json(&res)["error"], "unexpected_settle_error");
    // An unpriced path is proxied whatever the headers.
    let p = Rc::new(fake());
    let res = run(&cfg, &p, request("/free", &NAVIGATION));
    assert_eq!(res.status(), 200);
    assert_eq!(p.origin_hits(), 1);
}
