use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::*;
use crate::config::Config;
use crate::x402::{encode_header, PaymentRequired, ResourceInfo};

const CHROME_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7";

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

#[test]
fn only_browser_navigations_that_prefer_html_want_the_page() {
    let nav = |accept: &str, mode: &str| headers(&[("accept", accept), ("sec-fetch-mode", mode)]);
    assert!(wants_html(&Method::GET, &nav(CHROME_ACCEPT, "navigate")), "Chrome's navigation");
    assert!(wants_html(&Method::GET, &nav("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "Navigate")), "Firefox's, any case");
    assert!(!wants_html(&Method::POST, &nav(CHROME_ACCEPT, "navigate")), "a form post cannot be replayed by the page");
    assert!(!wants_html(&Method::HEAD, &nav(CHROME_ACCEPT, "navigate")));
    assert!(!wants_html(&Method::GET, &nav(CHROME_ACCEPT, "cors")), "fetch() from a page");
    assert!(!wants_html(&Method::GET, &nav(CHROME_ACCEPT, "no-cors")));
    assert!(!wants_html(&Method::GET, &headers(&[("accept", CHROME_ACCEPT)])), "no Fetch Metadata: not known to be a navigation");
    assert!(!wants_html(&Method::GET, &nav("*/*", "navigate")), "a wildcard prefers nothing");
    assert!(!wants_html(&Method::GET, &nav("application/json, text/html;q=0.5", "navigate")));
    assert!(wants_html(&Method::GET, &nav("application/json;q=0.5, text/html", "navigate")));
    assert!(!wants_html(&Method::GET, &nav("text/html;q=0", "navigate")));
    assert!(!wants_html(&Method::GET, &nav("text/html;q=2", "navigate")), "a malformed q counts as 0");
    assert!(!wants_html(&Method::GET, &headers(&[("sec-fetch-mode", "navigate")])), "no Accept");
    assert!(wants_html(&Method::GET, &headers(&[("accept", "application/xml"), ("accept", "TEXT/HTML;Q=0.9"), ("sec-fetch-mode", "navigate")])), "Accept split over two fields");
}

#[test]
fn quality_values_follow_rfc_9110() {
    assert_eq!(quality("1"), Some(1000));
    assert_eq!(quality("1.000"), Some(1000));
    assert_eq!(quality("0.8"), Some(800));
    assert_eq!(quality("0.125"), Some(125));
    assert_eq!(quality("0"), Some(0));
    for bad in ["1.5", "0.1234", "-1", "", "abc", "0.x"] {
        assert_eq!(quality(bad), None, "{bad}");
    }
}

#[test]
fn prices_in_dollars_by_string_arithmetic() {
    assert_eq!(dollars("10000", 6).as_deref(), Some("0.01"));
    assert_eq!(dollars("50000", 6).as_deref(), Some("0.05"));
    assert_eq!(dollars("1", 6).as_deref(), Some("0.000001"));
    assert_eq!(dollars("1000", 6).as_deref(), Some("0.001"));
    assert_eq!(dollars("2500000", 6).as_deref(), Some("2.50"));
    assert_eq!(dollars("123456789012345678901234567890", 6).as_deref(), Some("123456789012345678901234.56789"));
    assert_eq!(dollars("0", 6).as_deref(), Some("0.00"));
    assert_eq!(dollars("7", 0).as_deref(), Some("7.00"));
    assert_eq!(dollars("1.5", 6), None);
    assert_eq!(dollars("", 6), None);
}

fn config(routes: Value) -> Config {
    let vars = json!({
        "ORIGIN_URL": "https://origin.test",
        "FACILITATOR_URL": "https://facilitator.test",
        "PAY_TO": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
        "ROUTES": routes,
    });
    Config::from_vars(vars.as_object().unwrap()).unwrap()
}

/// The challenge's `PaymentRequired` for `route`, as JSON.
fn required_for(route: &Route, url: &str, error: &str) -> Value {
    serde_json::to_value(PaymentRequired {
        x402_version: 2,
        error: error.into(),
        resource: ResourceInfo { url: url.into(), description: route.description.clone(), mime_type: None },
        accepts: route.accepts.iter().map(|o| o.requirements.clone()).collect(),
        extensions: None,
    })
    .unwrap()
}

#[test]
fn offers_are_shown_in_dollars_for_usdc_and_in_atomic_units_otherwise() {
    let cfg = config(json!([
        { "route": "GET /a", "accepts": [
            { "price": "$0.01" },
            { "price": "$0.03", "network": "eip155:8453" },
            { "amount": "42", "asset": "0x0000000000000000000000000000000000000001", "name": "Other", "version": "1" },
            { "amount": "5", "asset": "0x0000000000000000000000000000000000000002", "name": "X", "version": "1", "network": "eip155:999999" },
        ] }
    ]));
    let views: Vec<OfferView> = cfg.routes[0].accepts.iter().map(|o| offer_view(&o.requirements)).collect();
    assert_eq!(views[0].price, "$0.01 USDC");
    assert_eq!(views[0].network_name, "Base Sepolia");
    assert_eq!(views[0].chain_id, Some(84532));
    assert_eq!(
        views[0].add_chain,
        Some(json!({ "chainId": "0x14a34", "chainName": "Base Sepolia", "nativeCurrency": { "name": "Ether", "symbol": "ETH", "decimals": 18 }, "rpcUrls": ["https://sepolia.base.org"], "blockExplorerUrls": ["https://sepolia.basescan.org"] }))
    );
    assert_eq!((views[1].price.as_str(), views[1].network_name.as_str()), ("$0.03 USDC", "Base"));
    assert_eq!(views[2].price, "42 atomic units of 0x0000000000000000000000000000000000000001", "not the network's USDC: no dollar figure");
    assert_eq!((views[3].network_name.as_str(), views[3].chain_id, views[3].add_chain.is_none()), ("chain 999999", Some(999999), true));
}

#[test]
fn wallet_links_open_the_page_in_a_phone_wallet() {
    let (mm, cb) = wallet_links("https://api.example.com/premium/a?x=1").unwrap();
    assert_eq!(mm, "https://metamask.app.link/dapp/api.example.com/premium/a?x=1");
    assert_eq!(cb, "https://go.cb-w.com/dapp?cb_url=https%3A%2F%2Fapi%2Eexample%2Ecom%2Fpremium%2Fa%3Fx%3D1");
    assert!(wallet_links("javascript:alert(1)").is_none());
    assert!(wallet_links("/relative").is_none());
}

#[test]
fn script_json_cannot_end_its_element_and_means_the_same() {
    let hostile = json!({ "d": "</script><script>alert(1)</script><!-- & \u{2028}\u{2029} -->" });
    let out = script_json(&hostile);
    for bad in ['<', '>', '&', '\u{2028}', '\u{2029}'] {
        assert!(!out.contains(bad), "{bad:?} in {out}");
    }
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), hostile);
}

/// The text between the first `open` after `from` and the next `close`.
fn between<'a>(page: &'a str, open: &str, close: &str) -> &'a str {
    let start = page.find(open).unwrap() + open.len();
    &page[start..start + page[start..].find(close).unwrap()]
}

fn csp_hash(s: &str) -> String {
    format!("'sha256-{}'", STANDARD.encode(Sha256::digest(s.as_bytes())))
}

const HOSTILE: &str = "</script><script>window.__pwned=1</script>\"'><img src=x onerror=\"window.__pwned=2\"> javascript:alert(1) </style><!--";

#[test]
fn hostile_configuration_and_paths_are_escaped_everywhere() {
    let cfg = config(json!([{ "route": "GET /h/*", "price": "$0.01", "description": HOSTILE, "pass": { "ttl": "1h" } }]));
    let route = &cfg.routes[0];
    let url = "https://paywall.test/h/'\"><svg onload=alert(1)>?q=</script>";
    let page = render(&required_for(route, url, "pass_expired: </script><b>x</b>; PAYMENT-SIGNATURE header is required"), route, 1_800_000_000);

    // Exactly two script elements (data and the page's script), one style element, and nothing
    // the hostile values could have opened.
    assert_eq!(page.matches("<script").count(), 2);
    assert_eq!(page.matches("</script").count(), 2);
    assert_eq!(page.matches("<style").count(), 1);
    assert_eq!(page.matches("</style").count(), 1);
    assert_eq!(page.matches("<svg").count(), 0, "the QR code is drawn by the script");
    // (`onerror="…"` may appear as text: it is harmless there, since no `<img` tag opened.)
    for bad in ["<img", "<svg onload", "<b>", "<!--", "href=\"javascript:", "href=\"/"] {
        assert!(!page.contains(bad), "{bad} in the page");
    }
    assert!(page.contains("<h1>&lt;/script&gt;&lt;script&gt;window.__pwned=1&lt;/script&gt;\"'&gt;&lt;img src=x onerror=\"window.__pwned=2\"&gt; javascript:alert(1) &lt;/style&gt;&lt;!--</h1>"));
    assert!(page.contains("<p class=\"notice\">Not accepted: pass_expired: &lt;/script&gt;&lt;b&gt;x&lt;/b&gt;</p>"));
    // Attributes: the quote cannot end them.
    assert!(page.contains("href=\"https://paywall.test/h/'&quot;&gt;&lt;svg onload=alert(1)&gt;?q=&lt;/script&gt;\""));

    // The script's data round-trips to the very values.
    let data: Value = serde_json::from_str(between(&page, "<script type=\"application/json\" id=\"x402-data\">", "</script>")).unwrap();
    assert_eq!(data["paymentRequired"]["resource"]["url"], url);
    assert_eq!(data["paymentRequired"]["resource"]["description"], HOSTILE);
    assert_eq!(data["now"], 1_800_000_000u64);
    assert_eq!(data["pass"], "unlimited requests for 1 hour to /h/*");
    assert_eq!(data["offers"][0]["chainId"], 84532);
    assert_eq!(data["walletLink"], "https://metamask.app.link/dapp/paywall.test/h/'\"><svg onload=alert(1)>?q=</script>");
}

#[test]
fn the_csp_hashes_are_those_of_the_inlined_script_and_style() {
    let cfg = config(json!([{ "route": "GET /a", "price": "$0.01" }]));
    let page = render(&required_for(&cfg.routes[0], "https://p.test/a", NO_PAYMENT_ERROR), &cfg.routes[0], 0);
    let script = between(&page, "<script>", "</script>");
    let style = between(&page, "<style>", "</style>");
    assert_eq!(script, SCRIPT);
    assert_eq!(style, STYLE);
    let csp = content_security_policy();
    assert!(csp.starts_with("default-src 'none'; "));
    assert!(csp.contains(&format!("script-src {};", csp_hash(script))), "{csp}");
    assert!(csp.contains(&format!("style-src {};", csp_hash(style))), "{csp}");
    assert!(csp.contains("connect-src 'self'"));
    assert!(!csp.contains("unsafe"));
    assert!(!page.contains("style=\""), "inline style attributes would be blocked");
    let markup = &page[..page.find("<script").unwrap()];
    let handlers = markup.match_indices(" on").filter(|(i, _)| markup[i + 3..].chars().take_while(char::is_ascii_alphabetic).count() > 0 && markup[i + 3..].trim_start_matches(|c: char| c.is_ascii_alphabetic()).starts_with('='));
    assert_eq!(handlers.count(), 0, "no inline event handlers");
}

#[test]
fn the_page_states_what_is_for_sale() {
    let cfg = config(json!([
        { "route": "GET /weather", "price": "$0.01", "description": "Current weather" },
        { "route": "GET /premium/*", "price": "$0.05", "description": "Premium reports", "pass": { "ttl": "10m" } },
    ]));
    let weather = render(&required_for(&cfg.routes[0], "https://p.test/weather", NO_PAYMENT_ERROR), &cfg.routes[0], 0);
    assert!(weather.contains("<title>Payment required: Current weather</title>"));
    assert!(weather.contains("Each request costs <strong>$0.01 USDC</strong> on Base Sepolia"));
    assert!(weather.contains("<span class=\"units\">10000 atomic units</span>"));
    assert!(weather.contains("<dt>Resource</dt><dd><code>https://p.test/weather</code></dd>"));
    assert!(weather.contains("<dt>Description</dt><dd>Current weather</dd>"));
    assert!(!weather.contains("<dt>Pass</dt>"));
    assert!(!weather.contains("class=\"notice\">Not accepted"), "the default error is not shown");
    assert!(!weather.contains("type=\"radio\""), "one offer: nothing to choose");
    assert!(weather.contains("https://metamask.app.link/dapp/p.test/weather"));
    assert!(weather.contains("<noscript>"));
    assert!(weather.contains("const res = await wrapFetchWithPayment(fetch, client)(\"https://p.test/weather\");"));

    let premium = render(&required_for(&cfg.routes[1], "https://p.test/premium/a", NO_PAYMENT_ERROR), &cfg.routes[1], 0);
    assert!(premium.contains("One payment of <strong>$0.05 USDC</strong> on Base Sepolia buys unlimited requests for 10 minutes to /premium/*."));
    assert!(premium.contains("<dt>Pass</dt><dd>one payment buys unlimited requests for 10 minutes to /premium/*</dd>"));
}

fn challenge_response(required: &Value) -> Response<Vec<u8>> {
    let mut res = Response::new(b"{\"x402Version\":1}".to_vec());
    *res.status_mut() = StatusCode::PAYMENT_REQUIRED;
    res.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    res.headers_mut().insert("content-length", HeaderValue::from_static("17"));
    res.headers_mut().insert(PAYMENT_REQUIRED, HeaderValue::from_str(&encode_header(required)).unwrap());
    res
}

#[test]
fn a_challenge_becomes_the_page_with_its_header_and_the_security_headers() {
    let cfg = config(json!([{ "route": "GET /a", "price": "$0.01" }]));
    let required = required_for(&cfg.routes[0], "https://p.test/a", NO_PAYMENT_ERROR);
    let original = challenge_response(&required);
    let header = original.headers()[PAYMENT_REQUIRED].clone();
    let res = page_for_challenge(original, &cfg.routes[0], 5, |b| b);
    assert_eq!(res.status(), 402);
    let h = res.headers();
    assert_eq!(h[PAYMENT_REQUIRED], header, "PAYMENT-REQUIRED is carried over unchanged");
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["content-security-policy"], content_security_policy().as_str());
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["vary"], "Accept, Sec-Fetch-Mode");
    assert!(h.get("content-length").is_none(), "the JSON body's length is not the page's");
    assert_eq!(String::from_utf8(res.into_body()).unwrap(), render(&required, &cfg.routes[0], 5));
}

#[test]
fn other_answers_are_left_as_they_are() {
    let cfg = config(json!([{ "route": "GET /a", "price": "$0.01" }]));
    let route = &cfg.routes[0];
    // A refused settlement: 402 with PAYMENT-RESPONSE, no challenge.
    let mut refused = Response::new(b"{\"error\":\"x\"}".to_vec());
    *refused.status_mut() = StatusCode::PAYMENT_REQUIRED;
    refused.headers_mut().insert("payment-response", HeaderValue::from_static("e30="));
    let out = page_for_challenge(refused, route, 0, |b| b);
    assert_eq!(out.body(), b"{\"error\":\"x\"}");
    assert!(out.headers().get("content-security-policy").is_none());
    // A 200, and a 402 whose header does not decode.
    let ok = page_for_challenge(Response::new(b"paid".to_vec()), route, 0, |b| b);
    assert_eq!(ok.body(), b"paid");
    let mut garbled = challenge_response(&required_for(route, "https://p.test/a", NO_PAYMENT_ERROR));
    garbled.headers_mut().insert(PAYMENT_REQUIRED, HeaderValue::from_static("%%%"));
    assert_eq!(page_for_challenge(garbled, route, 0, |b| b).body(), b"{\"x402Version\":1}");
}

#[test]
fn several_offers_let_the_person_choose() {
    let cfg = config(json!([{ "route": "GET /m", "accepts": [{ "price": "$0.03", "network": "eip155:8453" }, { "price": "$0.02" }] }]));
    let page = render(&required_for(&cfg.routes[0], "https://p.test/m", NO_PAYMENT_ERROR), &cfg.routes[0], 0);
    assert!(page.contains("<input type=\"radio\" name=\"offer\" value=\"0\" checked>"));
    assert!(page.contains("<input type=\"radio\" name=\"offer\" value=\"1\">"));
    assert!(page.contains("Each request is paid from your wallet with one signature. Choose how to pay below."));
}
