//! Property-based fuzzing (proptest) of everything that parses attacker input: payment headers,
//! payloads, paths, prices and the verifier. Each property runs `PROPTEST_CASES` cases
//! (default 2,000 here); the documented long run is
//! `PROPTEST_CASES=200000 cargo test --release --test fuzz`.

use proptest::prelude::*;
use serde_json::{json, Value};
use x402_edge_paywall::config::Config;
use x402_edge_paywall::x402::exact::verify_exact;
use x402_edge_paywall::money::price_to_atomic;
use x402_edge_paywall::route::{canonicalize, match_segments};
use x402_edge_paywall::x402::{decode_payment_signature, decode_x_payment, encode_header, JsonTemplate, TEMPLATE_HOLES};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

fn config() -> Config {
    let v = json!({
        "ORIGIN_URL": "https://origin.test",
        "FACILITATOR_URL": "https://facilitator.test",
        "PAY_TO": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
        "ROUTES": [
            { "route": "GET /free/sample", "free": true },
            { "route": "GET /weather", "price": "$0.01" },
            { "route": "GET /a@b/:id", "price": "$0.01" },
            { "route": "/premium/*", "price": "$0.05" },
            { "route": "POST /x/*/y", "price": "$0.02" }
        ]
    });
    Config::from_vars(v.as_object().unwrap()).unwrap()
}

/// Path pieces that exercise every canonicalisation rule.
fn path_piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "/", "/", "/", ".", "..", "%2e", "%2E", "%2e%2e", "%2f", "%2F", "%5c", "\\", "%25", "%252e", "%3b", "%3B", "%3f", "%23", ";",
        ";x=1", "%41", "%61", "A", "a", "b", "@", "%40", "%20", "%00", "%", "%g1", "weather", "WEATHER", "w%65ather", "premium",
        "free", "sample", "x", "y", "%C3%A9", "é", "~", "%7e", "?", "#", "*",
        // whole segments of the configured routes, in several spellings, so that hits are common
        "/weather", "/WEATHER", "/premium/", "/a@b/", "/a%40b/", "/A%40B/", "/free/sample", "/x/", "/y", "/7",
        // segments of only `;` parameters
        "/;", "/;x=1", ";/",
    ])
}

fn raw_path() -> impl Strategy<Value = String> {
    prop::collection::vec(path_piece(), 0..12).prop_map(|v| format!("/{}", v.concat()))
}

/// A model of a lenient origin: what resource does it serve for a received path? It decodes
/// every escape, treats `\` as `/`, resolves dot segments, drops empty segments, ignores `;`
/// parameters and letter case.
fn origin_resource(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for seg in path.split('/') {
        let seg = seg.split(';').next().unwrap_or("");
        let decoded = percent_encoding::percent_decode_str(seg).decode_utf8_lossy().to_lowercase();
        match decoded.as_str() {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(decoded),
        }
    }
    out
}

fn route_key(cfg: &Config, method: &http::Method, segments: &[String]) -> Option<String> {
    cfg.route_for(method, segments).map(|r| r.key.clone())
}

/// Methods a request may carry: the standard ones, extension methods, odd spellings.
fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND", "SEARCH", "PURGE", "get", "Get", "TRACE", "QUERY"])
            .prop_map(str::to_string),
        "[A-Za-z!#$%&'*+.^_`|~-]{1,12}",
    ]
}

/// A platform whose origin and facilitator only count calls: no payment header is ever sent, so
/// every origin call it sees is a request the paywall let through without the payment path.
mod unpaid {
    use std::cell::Cell;
    use std::future::Future;

    use http::{Request, Response};
    use x402_edge_paywall::facilitator::{HttpReply, UpstreamError};
    use x402_edge_paywall::gateway::{FacilitatorTransport, IsolateCaches, IsolateState, Kv, Ledger, Origin, PlatformError, RateLimits, Runtime, Signer};
    use x402_edge_paywall::ledger::{Op, Reply};
    use x402_edge_paywall::pass::PassCache;

    #[derive(Default)]
    pub struct Counting {
        pub origin: Cell<usize>,
        pub facilitator: Cell<usize>,
        pub cache: PassCache,
        pub isolate: IsolateState,
    }

    impl Origin for Counting {
        type Body = Vec<u8>;
        fn body(bytes: Vec<u8>) -> Vec<u8> {
            bytes
        }
        async fn origin(&self, _req: Request<Vec<u8>>, _t: u64) -> Result<Response<Vec<u8>>, UpstreamError> {
            self.origin.set(self.origin.get() + 1);
            Ok(Response::new(Vec::new()))
        }
    }

    impl FacilitatorTransport for Counting {
        async fn post_json(&self, _u: &str, _a: Option<&str>, _j: String, _t: u64) -> Result<HttpReply, UpstreamError> {
            self.facilitator.set(self.facilitator.get() + 1);
            Err(UpstreamError::Network("none".into()))
        }
    }

    impl Ledger for Counting {
        async fn ledger(&self, _s: &str, _op: &Op) -> Result<Reply, String> {
            Err("no ledger".into())
        }
    }

    impl Kv for Counting {
        async fn kv_get(&self, _k: &str) -> Result<Option<String>, PlatformError> {
            Ok(None)
        }
        async fn kv_put(&self, _k: &str, _v: String, _t: u64) -> Result<(), PlatformError> {
            Ok(())
        }
    }

    impl RateLimits for Counting {}

    impl Signer for Counting {}

    impl Runtime for Counting {
        fn client_gone(&self) -> bool {
            false
        }
        async fn run_to_completion<T: 'static>(&self, fut: impl Future<Output = T> + 'static) -> Option<T> {
            Some(fut.await)
        }
        fn defer(&self, _fut: impl Future<Output = ()> + 'static) {}
        fn now(&self) -> u64 {
            1_800_000_000
        }
        fn millis(&self) -> u64 {
            1_800_000_000_000
        }
        fn random32(&self) -> Result<[u8; 32], PlatformError> {
            Ok([1; 32])
        }
        fn log(&self, _line: &str) {}
    }

    impl IsolateCaches for Counting {
        fn passes(&self) -> &PassCache {
            &self.cache
        }
        fn isolate(&self) -> &IsolateState {
            &self.isolate
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    /// The challenge's layout, filled in, is byte for byte what serialising the filled-in value
    /// gives, whatever the URL and error hold.
    #[test]
    fn a_challenge_layout_renders_as_serialising_would(url in any::<String>(), error in any::<String>()) {
        let shape = |u: &str, e: &str| json!({ "x402Version": 2, "error": e, "resource": { "url": u, "mimeType": "application/json" }, "accepts": [{ "resource": u }] });
        let layout = JsonTemplate::new(&shape(TEMPLATE_HOLES[0], TEMPLATE_HOLES[1])).unwrap();
        prop_assert_eq!(layout.render(&[&url, &error]), serde_json::to_string(&shape(&url, &error)).unwrap());
    }

    #[test]
    fn canonicalize_never_panics_and_is_idempotent(raw in raw_path()) {
        if let Ok(c) = canonicalize(&raw) {
            prop_assert!(c.starts_with('/'));
            prop_assert!(!c.contains("//"));
            prop_assert_eq!(canonicalize(&c), Ok(c.clone()));
        }
    }

    #[test]
    fn canonicalize_never_panics_on_arbitrary_text(raw in ".{0,200}") {
        let _ = canonicalize(&raw);
        let _ = canonicalize(&format!("/{raw}"));
    }

    /// The paywall's decision is a function of the resource the origin serves: a path can never
    /// be priced differently from another spelling of the same resource.
    #[test]
    fn the_matcher_agrees_with_the_origin_on_what_resource_a_path_is(raw in raw_path(), post in any::<bool>()) {
        let cfg = config();
        let method = if post { http::Method::POST } else { http::Method::GET };
        if let Ok(c) = canonicalize(&raw) {
            let by_paywall = route_key(&cfg, &method, &match_segments(&c));
            let by_origin = route_key(&cfg, &method, &origin_resource(&c));
            prop_assert_eq!(by_paywall, by_origin, "canonical {}", c);
        }
    }

    /// An origin that routes on raw segments (Express, Hono: `:id` matches `;x`) and one that
    /// drops segments of only `;` parameters (Tomcat) agree with the matcher on whether a path is
    /// priced, or the paywall refuses it: `/users/;x/a` was matched as `/users/a`, free, while
    /// the first kind of origin served `/users/:id/a`.
    #[test]
    fn a_path_priced_for_an_origin_routing_on_raw_segments_never_reaches_it_unpaid(m in method(), raw in raw_path()) {
        let cfg = std::rc::Rc::new(config());
        let p = std::rc::Rc::new(unpaid::Counting::default());
        let Ok(req) = http::Request::builder().method(m.as_str()).uri(format!("https://paywall.test{raw}")).body(Vec::new()) else { return Ok(()) };
        let path = req.uri().path().to_string();
        let Ok(c) = canonicalize(&path) else { return Ok(()) };
        // What an Express-like origin routes on: every non-empty raw segment, cut at `;`.
        let by_raw_origin: Vec<String> = c.split('/').filter(|s| !s.is_empty()).map(|s| percent_encoding::percent_decode_str(s.split(';').next().unwrap_or("")).decode_utf8_lossy().to_lowercase()).collect();
        let method = http::Method::from_bytes(m.as_bytes()).unwrap();
        let free_route = cfg.route_for(&method, &by_raw_origin).is_some_and(|r| r.is_free());
        let res = pollster::block_on(x402_edge_paywall::gateway::handle(&cfg, &p, req));
        if cfg.is_priced_path(&by_raw_origin) && !free_route {
            prop_assert_eq!(p.origin.get(), 0, "{} {} answered {} and reached the origin", m, path, res.status());
        }
    }

    /// Guarantee 1 as a property: whatever the method and path spelling, a request without
    /// payment that a priced pattern covers never reaches the origin; only explicitly free routes
    /// and unpriced paths are forwarded.
    #[test]
    fn nothing_a_priced_pattern_covers_is_forwarded_without_payment(m in method(), raw in raw_path(), query in prop::sample::select(vec!["", "?a=1", "?_method=GET", "?%5fmethod=PUT"])) {
        let cfg = std::rc::Rc::new(config());
        let p = std::rc::Rc::new(unpaid::Counting::default());
        let Ok(req) = http::Request::builder().method(m.as_str()).uri(format!("https://paywall.test{raw}{query}")).body(Vec::new()) else { return Ok(()) };
        let path = req.uri().path().to_string();
        let res = pollster::block_on(x402_edge_paywall::gateway::handle(&cfg, &p, req));
        prop_assert_eq!(p.facilitator.get(), 0);
        let Ok(canonical) = canonicalize(&path) else {
            prop_assert_eq!(p.origin.get(), 0);
            return Ok(());
        };
        let segments = match_segments(&canonical);
        let method = http::Method::from_bytes(m.as_bytes()).unwrap();
        let free_route = cfg.route_for(&method, &segments).is_some_and(|r| r.is_free());
        if cfg.is_priced_path(&segments) && !free_route {
            prop_assert_eq!(p.origin.get(), 0, "{} {} answered {} and reached the origin", m, path, res.status());
            prop_assert!(matches!(res.status().as_u16(), 400 | 402 | 405 | 204 | 503), "{} {} -> {}", m, path, res.status());
        }
    }

    #[test]
    fn payment_header_decoding_never_panics(s in ".{0,400}") {
        let _ = decode_payment_signature(&s);
        let _ = decode_x_payment(&s);
    }

    #[test]
    fn payment_header_decoding_never_panics_on_base64_json(v in json_value()) {
        let h = encode_header(&v);
        let _ = decode_payment_signature(&h);
        let _ = decode_x_payment(&h);
    }

    /// Any well-shaped payload with arbitrary field contents is refused or accepted, never a panic.
    #[test]
    fn verification_never_panics(
        version in 1u64..=2,
        from in "(0x)?[0-9a-fA-F]{0,42}", value in "[0-9]{0,80}", after in "[0-9-]{0,25}", before in "[0-9]{0,25}",
        nonce in "(0x)?[0-9a-f]{0,66}", sig in "(0x)?[0-9a-fA-F]{0,140}", network in "[a-z0-9:-]{0,20}",
    ) {
        let cfg = config();
        let route = &cfg.routes[1];
        let payload = json!({ "signature": sig, "authorization": {
            "from": from, "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "value": value,
            "validAfter": after, "validBefore": before, "nonce": nonce } });
        let raw = if version == 2 {
            json!({ "x402Version": 2, "accepted": route.accepts[0].requirements_json, "payload": payload })
        } else {
            json!({ "x402Version": 1, "scheme": "exact", "network": network, "payload": payload })
        };
        let h = encode_header(&raw);
        let decoded = if version == 2 { decode_payment_signature(&h) } else { decode_x_payment(&h) };
        if let Ok(p) = decoded {
            let _ = verify_exact(&route.accepts, &p, 1_800_000_000, 6);
        }
    }

    #[test]
    fn price_parsing_never_panics_and_round_trips(int in 0u64..1_000_000_000, frac in 0u64..1_000_000, s in ".{0,40}", d in 0u8..40) {
        let _ = price_to_atomic(&s, d);
        let price = format!("${int}.{frac:06}");
        let atomic = price_to_atomic(&price, 6);
        if int == 0 && frac == 0 {
            prop_assert!(atomic.is_err());
        } else {
            prop_assert_eq!(atomic.unwrap().to_string(), (int as u128 * 1_000_000 + frac as u128).to_string());
        }
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[ -~]{0,20}".prop_map(Value::String),
        Just(json!(2)),
        Just(json!("exact")),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec!["x402Version", "accepted", "payload", "scheme", "network", "signature", "authorization", "from", "value", "nonce", "k"]),
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}
