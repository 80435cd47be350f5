//! The origin locked to the paywall, on the host: secret origin headers, forwarding headers,
//! hop-by-hop removal, origin URLs rewritten out of responses, no origin address in anything the
//! paywall writes. The same against the built wasm in `tests/origin.test.mjs`.

mod common;

use std::rc::Rc;

use common::*;
use serde_json::json;
use x402_edge_paywall::gateway::rewrite_url;

fn secret_config() -> Rc<x402_edge_paywall::config::Config> {
    config_vars(json!({ "ORIGIN_HEADERS": r#"{"X-Paywall-Secret":"s3cret","CF-Access-Client-Id":"id.access"}"# }))
}

#[test]
fn secret_headers_replace_client_copies_on_every_forwarded_request() {
    let cfg = secret_config();
    let p = Rc::new(fake());
    let spoof = [("x-paywall-secret", "guess"), ("cf-access-client-id", "guess")];
    run(&cfg, &p, request("/free", &spoof));
    let mut paid_headers = spoof.to_vec();
    let h = payment(&cfg, 0, 80);
    paid_headers.push(("payment-signature", &h));
    assert_eq!(run(&cfg, &p, request("/paid", &paid_headers)).status(), 200);
    for call in p.origin_calls.borrow().iter() {
        let h = call.headers();
        assert_eq!(h.get_all("x-paywall-secret").iter().collect::<Vec<_>>(), ["s3cret"], "exactly the paywall's value");
        assert_eq!(h.get_all("cf-access-client-id").iter().collect::<Vec<_>>(), ["id.access"]);
    }
}

#[test]
fn forwarding_headers_come_from_the_runtime_and_spoofed_ones_are_replaced() {
    let cfg = config();
    let p = Rc::new(fake());
    let headers = [
        ("cf-connecting-ip", "203.0.113.7"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "gopher"),
        ("forwarded", "for=10.0.0.1"),
        ("x-real-ip", "10.0.0.1"),
    ];
    run(&cfg, &p, request("/free", &headers));
    let calls = p.origin_calls.borrow();
    let h = calls[0].headers();
    assert_eq!(h.get_all("x-forwarded-for").iter().collect::<Vec<_>>(), ["203.0.113.7"], "replaced, not appended");
    assert_eq!(h["x-forwarded-host"], "paywall.test");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert!(h.get("forwarded").is_none());
    assert_eq!(h.get_all("x-real-ip").iter().collect::<Vec<_>>(), ["203.0.113.7"], "the runtime's, not the client's");
}

/// `Connection` may name the client's own headers away, not the runtime's client address.
#[test]
fn a_connection_header_cannot_hide_the_client_address() {
    let cfg = config();
    let p = Rc::new(fake());
    run(&cfg, &p, request("/free", &[("cf-connecting-ip", "203.0.113.7"), ("connection", "cf-connecting-ip, x-real-ip, keep-alive")]));
    let calls = p.origin_calls.borrow();
    let h = calls[0].headers();
    assert_eq!(h["x-forwarded-for"], "203.0.113.7");
    assert_eq!(h["x-real-ip"], "203.0.113.7");
    assert_eq!(h["cf-connecting-ip"], "203.0.113.7");
    assert!(h.get("connection").is_none());
}

/// Every header an origin or its framework may read as the client's IP (or host, or scheme).
const SPOOFED_CLIENT_HEADERS: [&str; 22] = [
    "true-client-ip",
    "x-client-ip",
    "client-ip",
    "x-cluster-client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "fastly-client-ip",
    "x-azure-clientip",
    "x-appengine-user-ip",
    "x-envoy-external-address",
    "cf-connecting-ipv6",
    "x-forwarded",
    "forwarded-for",
    "forwarded",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-url-scheme",
    "x-real-ip",
    "x-forwarded-for",
];

#[test]
fn client_ip_headers_never_reach_the_origin_free_or_paid() {
    let cfg = config();
    let p = Rc::new(fake());
    let spoofed: Vec<(&str, &str)> = SPOOFED_CLIENT_HEADERS.iter().map(|n| (*n, "6.6.6.6")).collect();
    let mut with_ip = spoofed.clone();
    with_ip.push(("cf-connecting-ip", "203.0.113.7"));
    run(&cfg, &p, request("/free", &with_ip));
    let mut paid = with_ip.clone();
    let header = payment(&cfg, 0, 7);
    paid.push(("payment-signature", &header));
    assert_eq!(run(&cfg, &p, request("/paid", &paid)).status(), 200);
    // Without CF-Connecting-IP (no runtime value): no client-IP header at all.
    run(&cfg, &p, request("/free", &spoofed));
    let calls = p.origin_calls.borrow();
    assert_eq!(calls.len(), 3, "each request reached the origin once");
    for (i, call) in calls.iter().enumerate() {
        let h = call.headers();
        let leaked: Vec<String> = h.iter().filter(|(_, v)| v.as_bytes() == b"6.6.6.6").map(|(n, _)| n.to_string()).collect();
        assert!(leaked.is_empty(), "request {i}: the client's value reached the origin in {leaked:?}");
        let ip = if i < 2 { Some("203.0.113.7") } else { None };
        for name in ["x-forwarded-for", "x-real-ip", "cf-connecting-ip"] {
            assert_eq!(h.get(name).map(|v| v.to_str().unwrap()), ip, "request {i}: {name}");
        }
        for name in SPOOFED_CLIENT_HEADERS.iter().filter(|n| !matches!(**n, "x-forwarded-for" | "x-real-ip")) {
            assert!(h.get(*name).is_none(), "request {i}: {name} forwarded");
        }
    }
}

#[test]
fn hop_by_hop_headers_and_those_connection_names_are_removed() {
    let cfg = config();
    let p = Rc::new(fake());
    let headers = [("connection", "keep-alive, X-Secret-Hop"), ("keep-alive", "timeout=5"), ("x-secret-hop", "1"), ("te", "trailers"), ("upgrade", "h2c"), ("x-keep", "yes")];
    run(&cfg, &p, request("/free", &headers));
    let calls = p.origin_calls.borrow();
    let h = calls[0].headers();
    for name in ["connection", "keep-alive", "x-secret-hop", "te", "upgrade"] {
        assert!(h.get(name).is_none(), "{name} forwarded");
    }
    assert_eq!(h["x-keep"], "yes");
}

#[test]
fn redirects_and_links_to_the_origin_are_rewritten_to_the_public_url() {
    let cfg = config(); // ORIGIN_URL = https://origin.test/base
    let p = Rc::new(fake());
    p.origin_status.set(302);
    *p.origin_response_headers.borrow_mut() = vec![
        ("location", "https://ORIGIN.test/base/login?next=%2Fx".into()),
        ("content-location", "/base/doc.json".into()),
        ("link", r#"<https://origin.test/base/page/2>; rel="next", <https://cdn.example/a.css>; rel=preload"#.into()),
    ];
    let res = run(&cfg, &p, request("/free", &[]));
    assert_eq!(res.status(), 302);
    assert_eq!(res.headers()["location"], "https://paywall.test/login?next=%2Fx");
    assert_eq!(res.headers()["content-location"], "/doc.json");
    assert_eq!(res.headers()["link"], r#"<https://paywall.test/page/2>; rel="next", <https://cdn.example/a.css>; rel=preload"#);
    assert!(!format!("{:?}", res.headers()).contains("origin.test"));
}

#[test]
fn url_rewriting_leaves_everything_else_alone() {
    let (base, prefix, public) = ("http://origin.test:8080/v1", "/v1", "https://api.example");
    let cases = [
        ("http://origin.test:8080/v1/a", Some("https://api.example/a")),
        ("http://origin.test:8080/v1", Some("https://api.example/")),
        ("http://origin.test:8080/v1?x", Some("https://api.example/?x")),
        ("//origin.test:8080/v1/a", Some("https://api.example/a")),
        ("http://origin.test:8080/other", Some("https://api.example/other")),
        ("/v1/a", Some("/a")),
        ("/v10/a", None),
        ("/elsewhere", None),
        ("http://origin.test:80800/v1/a", None),
        ("http://origin.test.evil:8080/v1", None),
        ("https://origin.test:8080/v1/a", None),
        ("https://cdn.example/x", None),
        ("relative/path", None),
    ];
    for (url, want) in cases {
        assert_eq!(rewrite_url(url, base, prefix, public).as_deref(), want, "{url}");
    }
}

#[test]
fn origin_failures_do_not_echo_the_runtime_error_or_the_origin_address() {
    let cfg = config();
    let p = Rc::new(fake());
    *p.origin_error.borrow_mut() = Some("connect ECONNREFUSED https://origin.test/base/free".into());
    let res = run(&cfg, &p, request("/free", &[]));
    assert_eq!(res.status(), 502);
    let body = String::from_utf8_lossy(res.body()).to_string();
    assert!(body.contains("origin unreachable") && !body.contains("origin.test") && !body.contains("ECONNREFUSED"), "{body}");
    assert!(p.logs.borrow().iter().any(|l| l.contains("origin.test")), "the log has the detail");
}

#[test]
fn a_service_binding_origin_gets_the_public_url() {
    let cfg = config_vars(json!({ "ORIGIN_URL": null, "ORIGIN_SERVICE": true }));
    let p = Rc::new(fake());
    run(&cfg, &p, request("/free/x?y=1", &[]));
    assert_eq!(p.origin_calls.borrow()[0].uri().to_string(), "https://paywall.test/free/x?y=1");
}

#[test]
fn url_headers_that_do_not_point_at_the_origin_are_left_in_place_and_order() {
    use http::{HeaderMap, HeaderValue};
    let rewrite = x402_edge_paywall::gateway::UrlRewrite { base: "https://origin.internal/api".into(), prefix: "/api".into(), public: "https://paywall.example".into() };
    let mut headers = HeaderMap::new();
    headers.append("content-type", HeaderValue::from_static("text/plain"));
    headers.append("link", HeaderValue::from_static("<https://elsewhere.example/next>; rel=\"next\""));
    headers.append("x-origin", HeaderValue::from_static("demo"));
    let before: Vec<_> = headers.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    rewrite.apply(&mut headers);
    let after: Vec<_> = headers.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    assert_eq!(after, before, "untouched, in the same order (so the edge can return the origin's own response)");

    headers.append("location", HeaderValue::from_static("https://origin.internal/api/next?page=2"));
    rewrite.apply(&mut headers);
    assert_eq!(headers["location"], "https://paywall.example/next?page=2");
    assert_eq!(headers["link"], "<https://elsewhere.example/next>; rel=\"next\"");
}

/// CGI-style servers (Rack, PHP) read `X_Original_URL` as `X-Original-URL`: the `_` spellings of
/// every header the paywall removes are removed too.
#[test]
fn underscore_spellings_of_removed_headers_never_reach_the_origin() {
    let cfg = secret_config();
    let p = Rc::new(fake());
    let sent = [("x_original_url", "/paid"), ("x_forwarded_prefix", "/other"), ("x_forwarded_for", "10.0.0.1"), ("x_real_ip", "10.0.0.1"), ("x402_payment_context", "forged"), ("cf_connecting_ip", "10.9.9.9"), ("x_paywall_secret", "forged"), ("x_my_own_header", "kept")];
    run(&cfg, &p, request("/free", &sent));
    let calls = p.origin_calls.borrow();
    let h = calls[0].headers();
    for (name, _) in &sent[..7] {
        assert!(h.get(*name).is_none(), "{name} reached the origin");
    }
    assert_eq!(h["x-paywall-secret"], "s3cret", "the ORIGIN_HEADERS value is the paywall's own");
    assert_eq!(h["x_my_own_header"], "kept", "other underscored headers are the origin's business");
}
