use super::*;
use ruint::aliases::U256;
use serde_json::json;

use crate::x402::Eip712Extra;

fn vars(routes: Value) -> Map<String, Value> {
    let v = json!({
        "ORIGIN_URL": "http://127.0.0.1:9000/api",
        "FACILITATOR_URL": "http://127.0.0.1:9001/",
        "PAY_TO": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
        "ROUTES": routes,
    });
    v.as_object().unwrap().clone()
}

fn cfg_err(routes: Value) -> String {
    Config::from_vars(&vars(routes)).unwrap_err().0
}

#[test]
fn the_warm_up_configuration_is_valid_and_prices_its_route() {
    let c = Config::from_vars(&warm_up_vars()).expect("the start-up warm-up's variables parse");
    assert_eq!(c.routes.len(), 1);
    assert!(!c.routes[0].is_free());
    assert_eq!(c.routes[0].accepts[0].amount, U256::from(10_000u64));
}

#[test]
fn dollar_price_on_default_network_uses_its_usdc() {
    let c = Config::from_vars(&vars(json!([{ "route": "GET /weather", "price": "$0.01", "description": "w" }]))).unwrap();
    assert_eq!(c.facilitators, vec![Facilitator { url: "http://127.0.0.1:9001".into(), auth: FacilitatorAuth::None }]);
    let o = &c.routes[0].accepts[0];
    assert_eq!(o.requirements.amount, "10000");
    assert_eq!(o.requirements.network, "eip155:84532");
    assert_eq!(o.requirements.asset, "0x036CbD53842c5426634e7929541eC2318f3dCF7e");
    assert_eq!(o.requirements.extra, Eip712Extra::exact("USDC", "2"));
    assert_eq!(o.requirements.max_timeout_seconds, 300);
    assert_eq!(crate::evm::hex_0x(&o.domain_separator), "0x71f17a3b2ff373b803d70a5a07c046c1a2bc8e89c09ef722fcb047abe94c9818");
    assert_eq!(c.routes[0].pass, None, "per request unless a pass is sold");
}

#[test]
fn routes_may_be_a_json_string_and_v1_names_map_to_caip2() {
    let c = Config::from_vars(&vars(json!(r#"[{"route":"/p/*","price":"$0.001","network":"base"}]"#))).unwrap();
    let o = &c.routes[0].accepts[0];
    assert_eq!(o.requirements.network, "eip155:8453");
    assert_eq!(o.requirements.amount, "1000");
    assert_eq!(o.requirements.extra.name, "USD Coin");
}

#[test]
fn atomic_amount_with_explicit_asset_and_domain() {
    let c = Config::from_vars(&vars(json!([{
        "route": "POST /big", "amount": "115792089237316195423570985008687907853269984665640564039457584007913129639935",
        "asset": "0x00000000000000000000000000000000000000aa", "name": "Token", "version": "1", "network": "eip155:31337"
    }]))).unwrap();
    assert_eq!(c.routes[0].accepts[0].amount, U256::MAX);
    assert_eq!(c.routes[0].accepts[0].chain_id, 31337);
}

#[test]
fn several_payment_options_with_their_own_network_asset_and_pay_to() {
    let c = Config::from_vars(&vars(json!([{
        "route": "GET /multi", "description": "two ways",
        "accepts": [
            { "price": "$0.01" },
            { "price": "$0.02", "network": "eip155:8453", "payTo": "0x90F79bf6EB2c4f870365E785982E1f101E93b906" },
            { "amount": "7", "asset": "0x00000000000000000000000000000000000000aa", "name": "T", "version": "1", "network": "eip155:42161" }
        ]
    }]))).unwrap();
    let a = &c.routes[0].accepts;
    assert_eq!(a.len(), 3);
    assert_eq!((a[0].requirements.network.as_str(), a[0].requirements.amount.as_str(), a[0].v1_network), ("eip155:84532", "10000", Some("base-sepolia")));
    assert_eq!((a[1].requirements.network.as_str(), a[1].requirements.amount.as_str()), ("eip155:8453", "20000"));
    assert_eq!(a[1].requirements.pay_to, "0x90F79bf6EB2c4f870365E785982E1f101E93b906");
    assert_eq!(a[0].requirements.pay_to, "0x209693Bc6afc0C5328bA36FaF03C514EF312287C");
    assert_eq!((a[2].requirements.amount.as_str(), a[2].chain_id, a[2].v1_network), ("7", 42161, None));
    let v1 = a[0].requirements_v1("https://x/multi", Some("two ways"), None).unwrap();
    assert_eq!((v1.network.as_str(), v1.max_amount_required.as_str(), v1.resource.as_str()), ("base-sepolia", "10000", "https://x/multi"));
    assert!(a[2].requirements_v1("https://x/multi", None, None).is_none());
}

#[test]
fn free_routes_and_cors_policies() {
    let mut v = vars(json!([{ "route": "GET /premium/sample", "free": true }, { "route": "GET /premium/*", "price": "$1" }]));
    let c = Config::from_vars(&v).unwrap();
    assert!(c.routes[0].is_free() && !c.routes[1].is_free());
    assert_eq!(c.cors, CorsPolicy::Any);
    v.insert("CORS_ALLOWED_ORIGINS".into(), json!("https://a.example, http://localhost:3000"));
    assert_eq!(Config::from_vars(&v).unwrap().cors, CorsPolicy::List(vec!["https://a.example".into(), "http://localhost:3000".into()]));
    v.insert("CORS_ALLOWED_ORIGINS".into(), json!("none"));
    assert_eq!(Config::from_vars(&v).unwrap().cors, CorsPolicy::Off);
    v.insert("CORS_ALLOWED_ORIGINS".into(), json!("https://a.example/path"));
    assert!(Config::from_vars(&v).unwrap_err().0.contains("bare origin"));
}

#[test]
fn configuration_errors_say_what_is_wrong() {
    assert!(cfg_err(json!([{ "route": "GET /x", "free": true, "price": "$1" }])).contains("unknown field `price`"));
    assert!(cfg_err(json!([{ "route": "GET /x", "price": "$1", "accepts": [{ "price": "$1" }] }])).contains("unknown field `price`"));
    assert!(cfg_err(json!([{ "route": "GET /x", "accepts": [] }])).contains("is empty"));
    assert!(cfg_err(json!([{ "route": "GET /x", "accepts": [{ "price": "$1", "colour": 1 }] }])).contains("unknown key `colour` in ROUTES[0] (`GET /x`) accepts[0]; known keys: price, amount"));
    assert!(cfg_err(json!([{ "route": "GET /x", "accepts": [{ "price": "$1" }, { "price": "1" }] }])).contains("repeats"));
    assert!(cfg_err(json!([{ "route": "GET /x", "description": "no price" }])).contains("give a `price`"));
    assert!(cfg_err(json!({ "route": "GET /x" })).contains("array"));
    assert!(cfg_err(json!([{ "route": "GET /x", "price": "$0.0000001" }])).contains("finer than one atomic unit"));
    assert!(cfg_err(json!([{ "route": "GET /x", "price": "1", "amount": "1" }])).contains("exactly one of"));
    assert!(cfg_err(json!([{ "route": "GET /x", "amount": "1" }])).contains("explicit `asset`"));
    assert!(cfg_err(json!([{ "route": "GET /x", "price": "1", "payTo": "0x12" }])).contains("payTo"));
    assert!(cfg_err(json!([{ "route": "GET /x", "price": "1", "network": "eip155:999" }])).contains("no built-in USDC"));
    assert!(cfg_err(json!([{ "route": "GET /x", "price": "1", "network": "mars" }])).contains("CAIP-2"));
    assert!(cfg_err(json!([{ "route": "GET /x", "price": "1", "asset": "0x00000000000000000000000000000000000000aa" }])).contains("EIP-712"));
    assert!(cfg_err(json!([{ "route": "GET /x", "price": "1", "sessionTtlSeconds": 600 }])).contains("replaced by passes"));
    assert!(cfg_err(json!([{ "route": "GET /x", "price": "1", "colour": "red" }])).starts_with("unknown key `colour` in ROUTES[0] (`GET /x`); known keys: route,"));
    assert!(cfg_err(json!("not json")).contains("not valid JSON"));
    assert!(cfg_err(json!([{ "route": "GET /a/../b", "price": "1" }])).contains("not canonical"));
    let mut v = vars(json!([]));
    v.insert("ORIGIN_URL".into(), json!("ftp://x"));
    assert!(Config::from_vars(&v).unwrap_err().0.contains("http(s)"));
    v.insert("ORIGIN_URL".into(), json!("https://user:pw@api.example/v1/"));
    assert!(Config::from_vars(&v).unwrap_err().0.contains("user information"));
    v.insert("ORIGIN_URL".into(), json!("https://API.example:8443/v1/"));
    assert_eq!(Config::from_vars(&v).unwrap().origin, OriginTarget::Url { base: "https://api.example:8443/v1".into(), prefix: "/v1".into() });
    v.remove("ORIGIN_URL");
    assert_eq!(Config::from_vars(&v).unwrap_err().0, "ORIGIN_URL is not set (or bind the origin Worker as ORIGIN_SERVICE)");
    v.insert("ORIGIN_SERVICE".into(), json!(true));
    assert_eq!(Config::from_vars(&v).unwrap().origin, OriginTarget::Service);
    v.insert("ORIGIN_URL".into(), json!("https://a.example"));
    assert!(Config::from_vars(&v).unwrap_err().0.contains("not both"));
}

#[test]
fn the_channel_claim_count_is_a_whole_number_of_at_least_one() {
    let with = |n: &str| {
        let mut v = vars(json!([{ "route": "GET /x", "price": "$1" }]));
        v.insert("CHANNEL_CLAIM_VOUCHERS".into(), json!(n));
        Config::from_vars(&v)
    };
    assert_eq!(with("3").unwrap().channel_claim.vouchers, 3);
    assert_eq!(Config::from_vars(&vars(json!([{ "route": "GET /x", "price": "$1" }]))).unwrap().channel_claim.vouchers, 100, "the default");
    for bad in ["0", "-1", "1.5", "ten"] {
        assert_eq!(with(bad).unwrap_err().0, format!("CHANNEL_CLAIM_VOUCHERS must be a whole number of at least 1, got `{bad}`"));
    }
}

#[test]
fn plain_http_is_refused_except_to_loopback_hosts() {
    let mut v = vars(json!([]));
    for ok in ["http://127.0.0.1:9000", "http://127.8.9.10", "http://[::1]:8787/api", "http://LOCALHOST:3000", "https://api.example"] {
        v.insert("ORIGIN_URL".into(), json!(ok));
        v.insert("FACILITATOR_URL".into(), json!(ok));
        assert!(Config::from_vars(&v).is_ok(), "{ok} is accepted");
    }
    v.insert("FACILITATOR_URL".into(), json!("https://facilitator.example"));
    for bad in ["http://api.example", "http://10.0.0.1", "http://[::2]", "http://localhost.example", "http://127.0.0.1.nip.io", "http://0.0.0.0"] {
        v.insert("ORIGIN_URL".into(), json!(bad));
        let e = Config::from_vars(&v).unwrap_err();
        assert!(e.0.starts_with("ORIGIN_URL ") && e.0.contains("http://, which is allowed only for a loopback host"), "{bad}: {e}");
    }
    v.insert("ORIGIN_URL".into(), json!("https://api.example"));
    v.insert("FACILITATOR_URL".into(), json!("https://a.example, http://b.example"));
    let e = Config::from_vars(&v).unwrap_err();
    assert!(e.0.starts_with("FACILITATOR_URL[1] ") && e.0.contains("loopback"), "{e}");
    assert_eq!(e.public(), "invalid configuration: FACILITATOR_URL[1] `http://b.example` uses http://, which is allowed only for a loopback host (127.0.0.0/8, ::1, localhost): payments and content would cross the network unencrypted; use https:// (see the log for values)");
    v.insert("FACILITATOR_URL".into(), json!([{ "url": "http://facilitator.example", "auth": "none" }]));
    assert!(Config::from_vars(&v).unwrap_err().0.starts_with("FACILITATOR_URL[0] "));
}

#[test]
fn an_earlier_route_that_takes_a_dearer_one_for_less_is_an_error() {
    let e = cfg_err(json!([{ "route": "GET /docs/*", "free": true }, { "route": "GET /docs/premium", "price": "$1" }]));
    assert!(e.starts_with("ROUTES[0] (`GET /docs/*`) matches every request ROUTES[1] (`GET /docs/premium`) matches and is free"), "{e}");
    let e = cfg_err(json!([{ "route": "/reports/:id", "price": "$0.01" }, { "route": "GET /reports/annual", "price": "$0.05" }]));
    assert!(e.contains("ROUTES[0] (`/reports/:id`)") && e.contains("ROUTES[1] (`GET /reports/annual`)") && e.contains("costs less"), "{e}");
    let other_asset = json!([
        { "route": "GET /a/*", "amount": "1", "asset": "0x00000000000000000000000000000000000000aa", "name": "T", "version": "1" },
        { "route": "GET /a/b", "price": "$0.01" }
    ]);
    assert!(cfg_err(other_asset).contains("another asset or network"));
    // Not shadowing: carve-outs listed first, other methods, partial overlaps, an earlier
    // route that is dearer or as dear, and a first covering route that is dearer than a
    // later cheaper cover.
    for ok in [
        json!([{ "route": "GET /docs/free", "free": true }, { "route": "GET /docs/*", "price": "$1" }]),
        json!([{ "route": "GET /docs/*", "free": true }, { "route": "POST /docs/premium", "price": "$1" }]),
        json!([{ "route": "GET /docs/*", "free": true }, { "route": "/docs/premium", "price": "$1" }]),
        json!([{ "route": "GET /docs/:id", "free": true }, { "route": "GET /docs/*", "price": "$1" }]),
        json!([{ "route": "GET /a/*/c", "free": true }, { "route": "GET /a/b/*", "price": "$1" }]),
        json!([{ "route": "GET /docs/*", "price": "$2" }, { "route": "GET /docs/premium", "price": "$1" }]),
        json!([{ "route": "GET /docs/*", "price": "$1" }, { "route": "GET /docs/premium", "price": "$1" }]),
        json!([{ "route": "GET /docs/*", "price": "$2" }, { "route": "GET /docs/:id", "free": true }, { "route": "GET /docs/premium", "price": "$1" }]),
        json!([{ "route": "GET /docs/*", "free": true }, { "route": "GET /docs/x", "free": true }]),
        json!([{ "route": "GET /docs/*", "accepts": [{ "price": "$1" }, { "price": "$2", "network": "eip155:8453" }] },
               { "route": "GET /docs/premium", "accepts": [{ "price": "$0.50" }, { "price": "$1", "network": "eip155:8453" }] }]),
    ] {
        assert!(Config::from_vars(&vars(ok.clone())).is_ok(), "{ok}: {:?}", Config::from_vars(&vars(ok.clone())).err());
    }
    // The earlier route's cheaper second option on another network is a way in for less.
    let e = cfg_err(json!([
        { "route": "GET /docs/*", "accepts": [{ "price": "$1" }, { "price": "$0.10", "network": "eip155:8453" }] },
        { "route": "GET /docs/premium", "accepts": [{ "price": "$1" }, { "price": "$1", "network": "eip155:8453" }] }
    ]));
    assert!(e.contains("ROUTES[0]") && e.contains("ROUTES[1]"), "{e}");
}

/// A group's seller (`GET /a/*`, selling the group's pass with `seller`'s options) and a
/// member (`GET /b/*`, `member`'s options).
fn group(seller: Value, member: Value) -> Value {
    json!([
        { "route": "GET /a/*", "group": "g", "pass": { "ttl": "1h", "scope": "g" }, "accepts": seller },
        { "route": "GET /b/*", "group": "g", "accepts": member }
    ])
}

#[test]
fn a_group_pass_opens_a_member_only_if_every_way_to_buy_it_pays_the_member_at_least_its_price() {
    const OTHER: &str = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";
    let token = json!({ "amount": "1", "asset": "0x00000000000000000000000000000000000000aa", "name": "T", "version": "1" });
    // Each refused seller also has an option that pays the member's price: the extra one
    // is the way in for less, or to someone else.
    for (case, seller) in [
        ("other asset", json!([{ "price": "$1" }, token])),
        ("other network", json!([{ "price": "$1" }, { "price": "$1", "network": "eip155:8453" }])),
        ("other payTo", json!([{ "price": "$1" }, { "price": "$1", "payTo": OTHER }])),
        ("cheaper", json!([{ "price": "$0.40" }])),
    ] {
        let e = cfg_err(group(seller, json!([{ "price": "$0.50" }])));
        assert!(e.starts_with("route `GET /a/*`: its pass (group `g`) would open `GET /b/*`") && e.contains("payment option"), "{case}: {e}");
    }
    let e = cfg_err(group(json!([{ "price": "$1", "payTo": OTHER }]), json!([{ "price": "$0.50" }])));
    assert!(e.contains(OTHER), "names the recipient the member does not accept: {e}");
    for (case, seller, member) in [
        ("equal", json!([{ "price": "$0.50" }]), json!([{ "price": "$0.50" }])),
        ("dearer", json!([{ "price": "$1" }]), json!([{ "price": "$0.50" }])),
        ("every option matched", json!([{ "price": "$1" }, { "price": "$1", "network": "eip155:8453", "payTo": OTHER }]), json!([{ "price": "$1" }, { "price": "$0.10", "network": "eip155:8453", "payTo": OTHER }])),
        // A member's further way to pay is not one a pass is bought with.
        ("member has more options", json!([{ "price": "$1" }]), json!([{ "price": "$1" }, { "price": "$5", "network": "eip155:8453" }])),
    ] {
        let v = group(seller, member);
        assert!(Config::from_vars(&vars(v.clone())).is_ok(), "{case}: {v}: {:?}", Config::from_vars(&vars(v.clone())).err());
    }
}

#[test]
fn sign_in_needs_its_secret() {
    let mut v = vars(json!([{ "route": "GET /r/*", "price": "$1", "pass": { "ttl": "1h" } }]));
    v.insert("PUBLIC_URL".into(), json!("https://api.example"));
    assert!(Config::from_vars(&v).unwrap_err().0.starts_with("SIGN_IN_SECRET is not set"));
    v.insert("SIGN_IN_SECRET".into(), json!("too short"));
    assert!(Config::from_vars(&v).unwrap_err().0.contains("shorter than 32"));
    v.insert("SIGN_IN_SECRET".into(), json!("s".repeat(32)));
    let c = Config::from_vars(&v).unwrap();
    assert!(c.sign_in_key.is_some() && !format!("{c:?}").contains(&"s".repeat(32)), "never in Debug");
    // Without a pass for sale, or without PUBLIC_URL, sign-in is off and needs nothing.
    v.remove("SIGN_IN_SECRET");
    v.remove("PUBLIC_URL");
    assert!(Config::from_vars(&v).is_ok());
}

#[test]
fn public_errors_carry_no_configured_values() {
    let mut v = vars(json!([]));
    v.insert("ORIGIN_URL".into(), json!("https://user:hunter2@api.example/v1"));
    let e = Config::from_vars(&v).unwrap_err();
    assert!(e.to_string().contains("hunter2"), "the log has it all");
    assert_eq!(e.public(), "invalid configuration: ORIGIN_URL `…` must not have a query or user information (see the log for values)", "the origin's host is not told either");
    assert_eq!(e.to_string(), "invalid configuration: ORIGIN_URL `https://user:hunter2@api.example/v1` must not have a query or user information");
    v.insert("ORIGIN_URL".into(), json!("https://a`b:pw`x@api.example"));
    let e = Config::from_vars(&v).unwrap_err();
    assert!(!e.public().contains("pw"), "a backtick in the value cannot end the redaction: {}", e.public());
    // A path or query may carry a key (an RPC provider's URL): hidden; the host stays.
    v.insert("ORIGIN_URL".into(), json!("https://api.example"));
    v.insert("RPC_URL".into(), json!("http://rpc.example/v2/KEY123"));
    let e = Config::from_vars(&v).unwrap_err();
    assert!(e.public().starts_with("invalid configuration: RPC_URL `http://rpc.example…` uses http://"), "{}", e.public());
    assert!(!e.public().contains("KEY123") && e.to_string().contains("KEY123"));
    let marker = hidden(&format!("a{SECRET_OPEN}b{SECRET_CLOSE}c"));
    assert_eq!(ConfigError(marker).public(), "invalid configuration: … (see the log for values)", "markers inside a value cannot end the redaction");
}

#[test]
fn origin_headers_are_validated_and_marked_sensitive() {
    let mut v = vars(json!([]));
    v.insert("ORIGIN_HEADERS".into(), json!(r#"{"X-Paywall-Secret":"s3cret","CF-Access-Client-Id":"id.access"}"#));
    let c = Config::from_vars(&v).unwrap();
    assert_eq!(c.origin_headers.len(), 2);
    assert!(c.origin_headers.iter().all(|(_, v)| v.is_sensitive()));
    for (bad, want) in [
        (r#"{"Host":"x"}"#, "cannot be configured"),
        (r#"{"X-Forwarded-For":"1.2.3.4"}"#, "cannot be configured"),
        (r#"{"X402-Pass":"x"}"#, "cannot be configured"),
        (r#"{"Sign-In-With-X":"x"}"#, "cannot be configured"),
        (r#"{"True-Client-IP":"1.2.3.4"}"#, "cannot be configured"),
        (r#"{"X-Original-URL":"/free"}"#, "cannot be configured"),
        (r#"{"X-HTTP-Method-Override":"GET"}"#, "cannot be configured"),
        (r#"{"Bad Name":"x"}"#, "not a header name"),
        (r#"{"X-A":"line\nbreak"}"#, "visible ASCII"),
        (r#"{"X-A":1}"#, "visible ASCII"),
        ("[]", "JSON object"),
    ] {
        v.insert("ORIGIN_HEADERS".into(), json!(bad));
        let e = Config::from_vars(&v).unwrap_err();
        assert!(e.0.contains(want), "{bad}: {e}");
        assert!(!e.public().contains("line") && !e.public().contains("1.2.3.4"), "{}", e.public());
    }
}

#[test]
fn public_errors_keep_keys_route_patterns_and_variable_names() {
    let e = Config::from_vars(&vars(json!([{ "route": "GET /v1/quote", "pirce": "$0.01" }]))).unwrap_err();
    assert_eq!(e.0, "unknown key `pirce` in ROUTES[0] (`GET /v1/quote`); did you mean `price`?");
    assert_eq!(e.public(), "invalid configuration: unknown key `pirce` in ROUTES[0] (`GET /v1/quote`); did you mean `price`? (see the log for values)");
    let e = cfg_err(json!([{ "route": "GET /x", "free": true, "pirce": "$1" }]));
    assert!(e.contains("did you mean `price`?"), "a free route's typo is named too: {e}");
    let e = cfg_err(json!([{ "rout": "GET /x", "price": "$1" }]));
    assert_eq!(e, "unknown key `rout` in ROUTES[0]; did you mean `route`?");
    let e = cfg_err(json!([{ "route": "GET /x", "accepts": [{ "prce": "$1" }] }]));
    assert_eq!(e, "unknown key `prce` in ROUTES[0] (`GET /x`) accepts[0]; did you mean `price`?");
    let e = cfg_err(json!([{ "route": "GET /x", "price": "$1", "pass": { "tll": "1h" } }]));
    assert!(e.contains("unknown key `tll`") && e.contains("did you mean `ttl`?"), "{e}");
}

#[test]
fn misspelt_variables_are_errors_that_name_the_meant_one() {
    for (typo, meant) in [("ROUTS", "ROUTES"), ("PAY_T0", "PAY_TO"), ("routes", "ROUTES"), ("FACILITATOR_ULR", "FACILITATOR_URL"), ("ORIGN_URL", "ORIGIN_URL")] {
        let mut v = vars(json!([{ "route": "GET /free", "free": true }]));
        v.insert(typo.into(), json!([{ "route": "GET /x", "price": "$1" }]));
        let e = Config::from_vars(&v).unwrap_err();
        assert!(e.0.starts_with(&format!("unknown variable `{typo}`; did you mean `{meant}`?")), "{e}");
        assert!(e.public().contains(typo) && e.public().contains(meant), "{}", e.public());
    }
    // Variables of the user's own, far from every known name, are left alone.
    let mut v = vars(json!([{ "route": "GET /x", "price": "$1" }]));
    for own in ["MY_APP_SETTING", "SENTRY_DSN", "FACILITATOR_AUTH_BACKUP", "ORIGIN_SERVICE_NAME_X"] {
        v.insert(own.into(), json!("x"));
    }
    assert!(Config::from_vars(&v).is_ok(), "{:?}", Config::from_vars(&v).err());
    assert_eq!(misspelt_var("ORIGIN_SERVICE"), None);
    assert_eq!(misspelt_var("ORIGIN_SERVIC"), Some("ORIGIN_SERVICE"));
}

#[test]
fn a_bad_pay_to_is_blamed_on_the_variable() {
    let mut v = vars(json!([{ "route": "GET /x", "price": "$1" }]));
    v.insert("PAY_TO".into(), json!("0x1234"));
    assert_eq!(Config::from_vars(&v).unwrap_err().0, "PAY_TO `0x1234` is not a 0x-prefixed 20-byte address (40 hex digits)");
}

#[test]
fn unknown_methods_in_a_route_pattern_are_errors() {
    let e = cfg_err(json!([{ "route": "GTE /v1/quote", "price": "$1" }]));
    assert!(e.starts_with("ROUTES[0] (`GTE /v1/quote`): unknown method `GTE`; did you mean `GET`?"), "{e}");
    assert!(cfg_err(json!([{ "route": "FROB /x", "price": "$1" }])).contains("known methods: GET, HEAD"));
    for ok in ["GET /x", "get /x", "PATCH /x", "QUERY /x", "PROPFIND /x", "* /x", "/x"] {
        assert!(Config::from_vars(&vars(json!([{ "route": ok, "price": "$1" }]))).is_ok(), "{ok}");
    }
}

#[test]
fn a_price_looking_variable_without_a_priced_route_is_an_error() {
    let mut v = vars(json!([{ "route": "GET /x", "free": true }]));
    v.insert("PRICE".into(), json!("$0.01"));
    let e = Config::from_vars(&v).unwrap_err();
    assert!(e.0.starts_with("`PRICE` looks like a price, but no route in ROUTES is priced"), "{e}");
    v.remove("PRICE");
    v.insert("QUOTE_FEE".into(), json!("$0.01"));
    assert!(Config::from_vars(&v).is_err(), "a value like $0.01");
    v.insert("ROUTES".into(), json!([{ "route": "GET /x", "price": "$1" }]));
    assert!(Config::from_vars(&v).is_ok(), "with a priced route, the user's own variables are theirs");
    v.insert("ROUTES".into(), json!([{ "route": "GET /x", "free": true }]));
    v.remove("QUOTE_FEE");
    let c = Config::from_vars(&v).unwrap();
    assert_eq!(c.warnings(&v), vec!["PAY_TO is set but no route in ROUTES is priced: every request is proxied free".to_string()]);
}

#[test]
fn price_lines_say_what_each_route_costs() {
    let c = Config::from_vars(&vars(json!([
        { "route": "GET /free", "free": true },
        { "route": "GET /w", "price": "$0.01" },
        { "route": "GET /p/*", "price": "$2", "pass": { "ttl": "1h" } },
        { "route": "POST /t", "amount": "7", "asset": "0x00000000000000000000000000000000000000aa", "name": "T", "version": "1" }
    ])))
    .unwrap();
    assert_eq!(
        c.price_lines(),
        vec![
            "GET /free: free".to_string(),
            "GET /w: 0.01 USDC (10000 atomic units of 0x036CbD53842c5426634e7929541eC2318f3dCF7e) on eip155:84532, payTo 0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
            "GET /p/*: 2 USDC (2000000 atomic units of 0x036CbD53842c5426634e7929541eC2318f3dCF7e) on eip155:84532, payTo 0x209693Bc6afc0C5328bA36FaF03C514EF312287C for a pass: unlimited requests for 1 hour to /p/*".into(),
            "POST /t: 7 atomic units of 0x00000000000000000000000000000000000000AA on eip155:84532, payTo 0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
        ]
    );
}

#[test]
fn the_table_of_variables_gives_the_names_the_edge_reads_the_secrets_and_the_near_misses() {
    let read = [
        "ORIGIN_URL", "DECISION_LOG", "MODE", "RATE_LIMITS", "FACILITATOR_URL", "FACILITATOR_AUTH", "CDP_API_KEY_ID", "CDP_API_KEY_SECRET",
        "PAY_TO", "FACILITATOR_ADDRESS", "RECEIVER_AUTHORIZER", "CHANNEL_CLAIM_VOUCHERS", "CHANNEL_CLAIM_SECONDS", "NETWORK", "MAX_TIMEOUT_SECONDS", "SESSION_TTL_SECONDS", "ORIGIN_TIMEOUT_SECONDS", "FACILITATOR_TIMEOUT_SECONDS",
        "CORS_ALLOWED_ORIGINS", "ROUTES", "MCP", "VERIFY_GOOD_STANDING_SECONDS", "ORIGIN_HEADERS", "DENYLIST", "ADMIN_PATH", "ADMIN_TOKEN",
        "PUBLIC_URL", "RPC_URL", "SIGN_IN_SECRET", "PAYMENT_CONTEXT_KEY",
    ];
    assert_eq!(VARS, read, "the edge reads every variable by name, bindings and the FACILITATOR_AUTH_<NAME> family aside");
    assert_eq!(SECRET_VARS, ["FACILITATOR_AUTH", "CDP_API_KEY_ID", "CDP_API_KEY_SECRET", "ORIGIN_HEADERS", "ADMIN_TOKEN", "SIGN_IN_SECRET", "PAYMENT_CONTEXT_KEY"]);
    assert!(is_known_var("ORIGIN_SERVICE") && is_known_var("FACILITATOR_AUTH_BACKUP"));
    assert!(!is_known_var("FACILITATOR_AUTH_<NAME>"), "the family's placeholder is not a name");
    assert_eq!(misspelt_var("ORIGIN_SERVICES"), Some("ORIGIN_SERVICE"));
    assert_eq!(entry("FACILITATOR_AUTH_BACKUP").map(|v| v.name), Some("FACILITATOR_AUTH_<NAME>"));
    assert_eq!(entry("ROUTES").map(|v| (v.required, v.secret)), Some((Required::Yes, false)));
    assert!(TABLE.iter().all(|v| !v.doc.is_empty()), "every variable has its line");
}

#[test]
fn origin_headers_refuse_every_header_forwarding_owns_and_only_those() {
    use crate::headers::{CLIENT_FORWARDING_HEADERS, HOP_BY_HOP_HEADERS, METHOD_OVERRIDE_HEADERS, PATH_OVERRIDE_HEADERS, TRANSPORT_REQUEST_HEADERS};
    let mut v = vars(json!([]));
    let owned = TRANSPORT_REQUEST_HEADERS.iter().chain(&HOP_BY_HOP_HEADERS).chain(&CLIENT_FORWARDING_HEADERS).chain(&PATH_OVERRIDE_HEADERS).chain(&METHOD_OVERRIDE_HEADERS);
    for name in owned.chain(&["payment-signature", "x-payment", "x402-pass", "sign-in-with-x", "x402-payment-context"]) {
        v.insert("ORIGIN_HEADERS".into(), json!(format!(r#"{{"{name}":"x"}}"#)));
        assert!(Config::from_vars(&v).unwrap_err().0.contains("cannot be configured"), "{name}");
    }
    // The session header of old releases is no longer the paywall's.
    v.insert("ORIGIN_HEADERS".into(), json!(r#"{"X402-Session":"x"}"#));
    assert_eq!(Config::from_vars(&v).unwrap().origin_headers.len(), 1);
}

#[test]
fn an_admin_path_that_would_take_over_a_route_is_refused() {
    let with_admin = |path: &str, routes: Value| {
        let mut v = vars(routes);
        v.insert("ADMIN_TOKEN".into(), json!("t".repeat(MIN_ADMIN_TOKEN_LEN)));
        v.insert("ADMIN_PATH".into(), json!(path));
        Config::from_vars(&v)
    };
    let e = with_admin("/api", json!([{ "route": "GET /api/*", "price": "$0.01" }])).unwrap_err().0;
    assert!(e.contains("ADMIN_PATH") && e.contains("GET /api/*"), "{e}");
    let e = with_admin("/api", json!([{ "route": "POST /API/:action", "free": true }])).unwrap_err().0;
    assert!(e.contains("POST /API/:action"), "{e}");
    // A catch-all names no place: the admin path under it is the paywall's, as before.
    assert!(with_admin("/.well-known/x402/admin", json!([{ "route": "GET /*", "price": "$0.01" }])).is_ok());
    assert!(with_admin("/admin", json!([{ "route": "GET /api/*", "price": "$0.01" }])).is_ok());
    // Deeper routes and parameters that can fall under it too.
    for route in ["GET /api/v1/weather", "GET /api/:a/:b", "GET /api/revoke/x", "GET /:v/weather"] {
        let e = with_admin("/api", json!([{ "route": route, "price": "$0.01" }])).unwrap_err().0;
        assert!(e.contains(route), "{route}: {e}");
    }
    assert!(with_admin("/en/docs", json!([{ "route": "GET /:lang/docs", "price": "$0.01" }])).is_err());
    assert!(with_admin("/en/docs", json!([{ "route": "GET /:lang/guide", "price": "$0.01" }])).is_ok());
    assert!(with_admin("/.well-known/x402/admin", json!([{ "route": "GET /:lang/*", "price": "$0.01" }])).is_ok(), "names no place");
    let mut v = vars(json!([]));
    v.insert("ADMIN_TOKEN".into(), json!("t".repeat(MIN_ADMIN_TOKEN_LEN)));
    v.insert("ADMIN_PATH".into(), json!("/tools"));
    v.insert("MCP".into(), json!([{ "path": "/tools/mcp", "tools": { "search": "$0.01" } }]));
    let e = Config::from_vars(&v).unwrap_err().0;
    assert!(e.contains("MCP server path `/tools/mcp`"), "{e}");
}
