//! Discovery: what the paywall sells, published two ways, both built once from the configuration.
//!
//! 1. **`GET /.well-known/x402`** ([`WELL_KNOWN_PATH`], [`WellKnown`]): one JSON document listing
//!    every priced route (and MCP tool, `type: "mcp"`) with its payment options, answered by the paywall itself (never the
//!    origin), with a strong `ETag`.
//! 2. **The x402 `bazaar` extension** in each 402's `extensions` ([`crate::x402::bazaar::RouteDiscovery`]), so that a
//!    facilitator that catalogs resources (the `bazaar` of x402 `specs/extensions/bazaar.md`) learns
//!    how to call the route: `info.input` (`type: "http"`, `method`, `queryParams` or
//!    `bodyType` + `body`), `info.output` (`type`, `example`), `schema` (a JSON Schema draft
//!    2020-12 document that `info` validates against) and, for routes with parameters,
//!    `routeTemplate` (`/users/:id`).
//!
//! ## Which format the document follows
//!
//! The x402 specification (v2, and its merged extensions as of `@x402/extensions` 2.27.0) defines
//! no `/.well-known/x402` document. What exists is the facilitator's catalogue,
//! `GET /discovery/resources` (`specs/extensions/bazaar.md`, "Optional Discovery Endpoints":
//! `{x402Version, items: [{resource, type: "http", x402Version, accepts, lastUpdated, metadata?}],
//! pagination}`), and two unmerged proposals for a self-hosted manifest in the x402 Foundation
//! repository: `specs/extensions/well-known-discovery.md` (`/.well-known/x402.json`,
//! `{x402Version: 2, items: [{resource, type, accepts, input, output, requires}]}`) and
//! `specs/extensions/discovery.md` (`/.well-known/x402`, a host manifest whose `resources` are
//! bare URL pointers or complete payment descriptions). None is normative, and they disagree,
//! so this document is **our own design**, built from their common parts: an integer
//! `x402Version`, an `items` array of `type: "http"` entries, each entry's `accepts` being the v2
//! `PaymentRequirements` exactly as the live 402 offers them ("complete", in the second proposal's
//! terms), and the invocation contract named as in the `bazaar` extension's declaration
//! (`inputSchema`, `bodyType`, `outputSchema`, and `routeTemplate`):
//!
//! ```json
//! {
//!   "x402Version": 2,
//!   "items": [{
//!     "type": "http",
//!     "route": "GET /reports/:id",
//!     "methods": ["GET", "HEAD"],
//!     "path": "/reports/:id",
//!     "routeTemplate": "/reports/:id",
//!     "description": "A report",
//!     "mimeType": "application/json",
//!     "accepts": [{ "scheme": "exact", "network": "eip155:8453", "amount": "100000",
//!                   "asset": "0x8335…2913", "payTo": "0x2096…287C", "maxTimeoutSeconds": 300,
//!                   "extra": { "name": "USD Coin", "version": "2" } }],
//!     "pass": { "ttlSeconds": 3600, "maxRequests": 10, "scope": "route",
//!               "summary": "10 requests within 1 hour to /reports/:id" },
//!     "discoverable": true,
//!     "inputSchema": { "properties": { "format": { "type": "string" } } },
//!     "outputSchema": { "type": "object" },
//!     "extensions": ["bazaar"]
//!   }]
//! }
//! ```
//!
//! Paths are relative to the host that serves the document; nothing in it comes from the request
//! (the `discovery.md` proposal's rule: a manifest never derives URLs from `Host`). It holds no
//! timestamp, so every isolate with the same configuration serves the same bytes and `ETag`.


use http::header::{HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, ALLOW, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{HeaderMap, Method, Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::config::{Config, McpServer, PassScope, Route, ToolPrice};
use crate::evm::{hex_lower, keccak256};
use crate::x402::bazaar::{key_path, listed_methods, BAZAAR};

/// Where the discovery document is served (exact canonical path; RFC 8615 well-known URI).
pub const WELL_KNOWN_PATH: &str = "/.well-known/x402";

/// `Cache-Control` of the discovery document: public, five minutes.
pub const WELL_KNOWN_CACHE_CONTROL: &str = "public, max-age=300";

/// The discovery document (module docs: "Which format the document follows") and its strong
/// `ETag`, built once per isolate from the configuration (kept in the gateway's per-isolate
/// state, `gateway::ConfigState`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WellKnown {
    /// Where it is served.
    path: &'static str,
    body: Vec<u8>,
    etag: String,
}

/// One priced route as the document lists it.
fn item(route: &Route, sign_in: bool) -> Value {
    let d = &route.discovery;
    let mut m = Map::new();
    m.insert("type".into(), json!("http"));
    m.insert("route".into(), json!(route.key));
    m.insert("methods".into(), json!(listed_methods(&route.pattern)));
    m.insert("path".into(), json!(key_path(&route.key)));
    if let Some(t) = &d.route_template {
        m.insert("routeTemplate".into(), json!(t));
    }
    if let Some(desc) = &route.description {
        m.insert("description".into(), json!(desc));
    }
    if let Some(mime) = &route.mime_type {
        m.insert("mimeType".into(), json!(mime));
    }
    m.insert("accepts".into(), Value::Array(route.accepts.iter().map(|o| o.requirements_json.clone()).collect()));
    // Metered (`upto`) options: `amount` is the maximum; how the charge is measured.
    if let Some(meter) = route.accepts.iter().find_map(|o| o.meter.as_ref()) {
        m.insert("meter".into(), json!(meter.describe()));
    }
    if let Some(pass) = &route.pass {
        let mut p = Map::new();
        p.insert("ttlSeconds".into(), json!(pass.ttl_seconds));
        if let Some(n) = pass.max_requests {
            p.insert("maxRequests".into(), json!(n));
        }
        match &pass.scope {
            PassScope::Route => p.insert("scope".into(), json!("route")),
            PassScope::Path => p.insert("scope".into(), json!("path")),
            PassScope::Group(g) => {
                p.insert("group".into(), json!(g));
                p.insert("scope".into(), json!("group"))
            }
        };
        p.insert("summary".into(), json!(pass.summary));
        m.insert("pass".into(), Value::Object(p));
    }
    if let Some(g) = &route.group {
        m.insert("group".into(), json!(g));
    }
    m.insert("discoverable".into(), json!(d.discoverable));
    if d.discoverable {
        let declared = [
            ("inputSchema", &d.input_schema),
            ("inputExample", &d.input_example),
            ("outputSchema", &d.output_schema),
            ("outputExample", &d.output_example),
        ];
        for (name, v) in declared {
            if let Some(v) = v {
                m.insert(name.into(), v.clone());
            }
        }
        if let Some(b) = d.body_type {
            m.insert("bodyType".into(), json!(b.as_str()));
        }
    }
    let mut extensions = Vec::new();
    if !d.bazaar.is_empty() {
        extensions.push(BAZAAR);
    }
    if sign_in && route.pass.is_some() {
        extensions.push(crate::x402::siwx::SIGN_IN_WITH_X);
    }
    m.insert("extensions".into(), json!(extensions));
    Value::Object(m)
}

/// An MCP server's priced tools as the document lists them (docs/mcp.md): `type: "mcp"`, the
/// server's `path`, the `tool` name (`"*"` for the server's default price, which every tool not
/// named pays), `transport: "streamable-http"`, the tool's `resource` (`mcp://tool/{name}`, as its
/// `PaymentRequired` names it), `description` and `accepts`. Free and denied tools are not listed.
fn mcp_items(server: &McpServer) -> Vec<Value> {
    let named = server.tools.iter().map(|(n, t)| (n.as_str(), t));
    named
        .chain(std::iter::once(("*", &server.default)))
        .filter_map(|(name, price)| {
            let ToolPrice::Priced(route) = price else { return None };
            let mut m = Map::new();
            m.insert("type".into(), json!("mcp"));
            m.insert("path".into(), json!(server.path));
            m.insert("tool".into(), json!(name));
            m.insert("transport".into(), json!("streamable-http"));
            if name != "*" {
                m.insert("resource".into(), json!(format!("mcp://tool/{name}")));
            }
            if let Some(desc) = &route.description {
                m.insert("description".into(), json!(desc));
            }
            m.insert("accepts".into(), Value::Array(route.accepts.iter().map(|o| o.requirements_json.clone()).collect()));
            Some(Value::Object(m))
        })
        .collect()
}

/// Whether an `If-None-Match` value (a list of entity tags, or `*`) matches `etag`, by the weak
/// comparison RFC 9110 §13.1.2 prescribes for this header.
fn none_match(header: &str, etag: &str) -> bool {
    let bare = etag.trim_start_matches("W/");
    header.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == bare)
}

impl WellKnown {
    /// Builds the document from the validated routes: every priced route in configuration
    /// order (free routes are not listed). `sign_in`: whether wallet sign-in is on
    /// (`PUBLIC_URL` set), so that routes selling a pass list `sign-in-with-x`.
    pub fn build(routes: &[Route], sign_in: bool) -> WellKnown {
        WellKnown::build_with(routes, &[], sign_in)
    }

    /// [`WellKnown::build`], followed by each MCP server's priced tools ([`mcp_items`]).
    pub fn build_with(routes: &[Route], mcp: &[McpServer], sign_in: bool) -> WellKnown {
        let mut items: Vec<Value> = routes.iter().filter(|r| !r.is_free()).map(|r| item(r, sign_in)).collect();
        items.extend(mcp.iter().flat_map(mcp_items));
        let doc = json!({ "x402Version": crate::x402::X402_VERSION, "items": items });
        // Serialising a `Value` cannot fail.
        let body = serde_json::to_vec(&doc).unwrap_or_default();
        WellKnown::document(WELL_KNOWN_PATH, body)
    }

    /// Another JSON document the paywall serves under `/.well-known/` the same way (the payment
    /// context's JWK Set, [`crate::payment_context::JWKS_PATH`]): `body` served at `path`, with
    /// its strong `ETag`.
    pub fn document(path: &'static str, body: Vec<u8>) -> WellKnown {
        let etag = format!("\"{}\"", hex_lower(&keccak256(&body)[..16]));
        WellKnown { path, body, etag }
    }

    /// The document of a configuration: [`WellKnown::build`] from its routes, with sign-in on
    /// when it sets `PUBLIC_URL`.
    pub fn for_config(config: &Config) -> WellKnown {
        WellKnown::build_with(&config.routes, &config.mcp, config.public_url.is_some())
    }

    /// The document, compact JSON.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The strong entity tag: the first 16 bytes of the body's keccak-256, hex, quoted.
    pub fn etag(&self) -> &str {
        &self.etag
    }

    /// Answers a request for its path ([`WELL_KNOWN_PATH`] for the discovery document): `GET` → 200 with the document (`HEAD`: the
    /// same headers, no body), or 304 when `If-None-Match` matches the `ETag`; any other method
    /// → 405 with `Allow: GET, HEAD`. The origin is never asked.
    pub fn respond<B>(&self, method: &Method, headers: &HeaderMap, body: impl FnOnce(Vec<u8>) -> B) -> Response<B> {
        if *method != Method::GET && *method != Method::HEAD {
            let value = json!({ "error": "method_not_allowed", "message": format!("{method} is not served on {}; allowed: GET, HEAD", self.path) });
            let mut res = Response::new(body(value.to_string().into_bytes()));
            *res.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            let h = res.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return res;
        }
        let fresh = headers.get_all(IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).any(|v| none_match(v, &self.etag));
        let (status, bytes) = match (fresh, *method == Method::HEAD) {
            (true, _) => (StatusCode::NOT_MODIFIED, Vec::new()),
            (false, true) => (StatusCode::OK, Vec::new()),
            (false, false) => (StatusCode::OK, self.body.clone()),
        };
        let mut res = Response::new(body(bytes));
        *res.status_mut() = status;
        let h = res.headers_mut();
        if let Ok(etag) = HeaderValue::from_str(&self.etag) {
            h.insert(ETAG, etag);
        }
        h.insert(CACHE_CONTROL, HeaderValue::from_static(WELL_KNOWN_CACHE_CONTROL));
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        if status == StatusCode::OK {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            h.insert(http::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigError, MAX_DECLARATION_BYTES, MAX_DECLARATION_DEPTH};
    use crate::x402::bazaar::{merge_extensions, route_template, MAX_EXTENSION_BYTES};

    fn config(routes: Value, public_url: bool) -> Result<Config, ConfigError> {
        let mut v = json!({
            "ORIGIN_URL": "http://127.0.0.1:9000",
            "FACILITATOR_URL": "http://127.0.0.1:9001",
            "PAY_TO": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "ROUTES": routes,
        });
        if public_url {
            v["PUBLIC_URL"] = json!("https://api.example.com");
            v["SIGN_IN_SECRET"] = json!("a sign-in secret of at least 32 characters");
        }
        Config::from_vars(v.as_object().unwrap())
    }

    fn cfg_err(route: Value) -> String {
        config(json!([route]), false).unwrap_err().0
    }

    #[test]
    fn route_templates_follow_the_bazaar_syntax_and_rules() {
        assert_eq!(route_template("/reports/:id"), Some("/reports/:id".into()));
        assert_eq!(route_template("/users/[userId]/posts/:post"), Some("/users/:userId/posts/:post".into()));
        assert_eq!(route_template("/a/*/b/*"), Some("/a/:var1/b/:var2".into()));
        assert_eq!(route_template("/weather"), None, "static paths carry no template");
        assert_eq!(route_template("/*"), None, "a wildcard-only pattern has none (as the official server extension)");
        assert_eq!(route_template("/"), None);
        assert_eq!(route_template("/a@b/:id"), None, "`@` is outside the spec's character set");
        assert_eq!(route_template("/%2E%2E/:id"), None, "`..` after percent-decoding");
    }

    #[test]
    fn a_get_route_carries_the_extension_the_official_declaration_would_for_each_method() {
        let c = config(
            json!([{
                "route": "GET /weather/:city", "price": "$0.01",
                "inputSchema": { "properties": { "units": { "type": "string" } }, "required": ["units"] },
                "inputExample": { "units": "metric" },
                "outputSchema": { "type": "object", "properties": { "tempC": { "type": "number" } } },
                "outputExample": { "tempC": 21 }
            }]),
            false,
        )
        .unwrap();
        let d = &c.routes[0].discovery;
        let get = d.bazaar(&Method::GET).unwrap();
        assert_eq!(
            get,
            &json!({
                "info": {
                    "input": { "type": "http", "method": "GET", "queryParams": { "units": "metric" } },
                    "output": { "type": "json", "example": { "tempC": 21 } }
                },
                "schema": {
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "type": "object",
                    "properties": {
                        "input": {
                            "type": "object",
                            "properties": {
                                "type": { "type": "string", "const": "http" },
                                "method": { "type": "string", "enum": ["GET"] },
                                "queryParams": { "type": "object", "properties": { "units": { "type": "string" } }, "required": ["units"] }
                            },
                            "required": ["type", "method"],
                            "additionalProperties": false
                        },
                        "output": {
                            "type": "object",
                            "properties": {
                                "type": { "type": "string" },
                                "example": { "type": "object", "properties": { "tempC": { "type": "number" } } }
                            },
                            "required": ["type"]
                        }
                    },
                    "required": ["input"]
                },
                "routeTemplate": "/weather/:city"
            })
        );
        let head = d.bazaar(&Method::HEAD).unwrap();
        assert_eq!(head["info"]["input"]["method"], "HEAD");
        assert_eq!(head["schema"]["properties"]["input"]["properties"]["method"]["enum"], json!(["HEAD"]));
        assert!(d.bazaar(&Method::POST).is_none(), "the route does not price POST");
    }

    #[test]
    fn a_body_route_declares_body_type_and_body() {
        let c = config(
            json!([{
                "route": "POST /search", "price": "$0.02", "bodyType": "form-data",
                "inputSchema": { "type": "object", "properties": { "q": { "type": "string" } }, "required": ["q"] },
                "inputExample": { "q": "x402" }
            }]),
            false,
        )
        .unwrap();
        let ext = c.routes[0].discovery.bazaar(&Method::POST).unwrap();
        assert_eq!(ext["info"], json!({ "input": { "type": "http", "method": "POST", "bodyType": "form-data", "body": { "q": "x402" } } }));
        let input = &ext["schema"]["properties"]["input"];
        assert_eq!(input["required"], json!(["type", "method", "bodyType", "body"]));
        assert_eq!(input["properties"]["body"]["required"], json!(["q"]));
        assert_eq!(input["properties"]["bodyType"]["enum"], json!(["json", "form-data", "text"]));
        assert!(ext.get("routeTemplate").is_none(), "a static path has no template");
        assert!(ext["schema"]["properties"].get("output").is_none(), "no output declared");

        // Without declarations: the bare extension, `body` an empty JSON object.
        let c = config(json!([{ "route": "PUT /doc", "price": "$0.02" }]), false).unwrap();
        let ext = c.routes[0].discovery.bazaar(&Method::PUT).unwrap();
        assert_eq!(ext["info"]["input"], json!({ "type": "http", "method": "PUT", "bodyType": "json", "body": {} }));
    }

    #[test]
    fn a_route_without_a_method_describes_each_method_and_an_unknown_method_none() {
        let c = config(json!([{ "route": "/any/*", "price": "$0.01" }, { "route": "PURGE /cache", "price": "$0.01" }]), false).unwrap();
        let d = &c.routes[0].discovery;
        for m in [Method::GET, Method::HEAD, Method::DELETE] {
            assert_eq!(d.bazaar(&m).unwrap()["info"]["input"], json!({ "type": "http", "method": m.as_str() }));
        }
        for m in [Method::POST, Method::PUT, Method::PATCH] {
            assert_eq!(d.bazaar(&m).unwrap()["info"]["input"]["bodyType"], "json");
        }
        assert_eq!(d.bazaar(&Method::GET).unwrap()["routeTemplate"], "/any/:var1");
        let purge = Method::from_bytes(b"PURGE").unwrap();
        assert!(c.routes[1].discovery.bazaar(&purge).is_none(), "the bazaar has no shape for PURGE");
    }

    #[test]
    fn discoverable_false_publishes_no_extension() {
        let c = config(json!([{ "route": "GET /hidden", "price": "$0.01", "discoverable": false, "outputExample": { "a": 1 } }]), false).unwrap();
        assert!(c.routes[0].discovery.bazaar(&Method::GET).is_none());
        assert!(merge_extensions(None, c.routes[0].discovery.bazaar(&Method::GET)).is_none());
    }

    #[test]
    fn declarations_are_validated_with_clear_errors() {
        let r = |extra: Value| {
            let mut v = json!({ "route": "GET /w", "price": "$0.01" });
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            cfg_err(v)
        };
        assert!(r(json!({ "discoverable": "yes" })).contains("discoverable must be true or false"));
        assert!(r(json!({ "inputSchema": "string" })).contains("inputSchema must be a JSON Schema object"));
        assert!(r(json!({ "outputSchema": [1] })).contains("outputSchema must be a JSON Schema object"));
        let e = r(json!({ "inputSchema": { "properties": { "a": { "$ref": "https://evil.example/s.json" } } } }));
        assert!(e.contains("external reference") && e.contains("only same-document"), "{e}");
        assert!(config(json!([{ "route": "GET /w", "price": "$0.01", "inputSchema": { "$defs": { "a": {} }, "properties": { "b": { "$ref": "#/$defs/a" } } } }]), false).is_ok());
        assert!(r(json!({ "bodyType": "json" })).contains("applies to POST, PUT and PATCH routes only"));
        assert!(r(json!({ "inputSchema": { "type": "array" } })).contains("its type must be object"));
        assert!(r(json!({ "inputExample": "q=1" })).contains("inputExample must be an object"));
        let schema = json!({ "properties": { "n": { "type": "integer" } }, "required": ["n"] });
        assert!(r(json!({ "inputSchema": schema, "inputExample": {} })).contains("lacks the required property `n`"));
        assert!(r(json!({ "inputSchema": schema, "inputExample": { "n": "one" } })).contains("property `n` is not of type integer"));
        assert!(r(json!({ "outputSchema": { "type": "array" }, "outputExample": { "a": 1 } })).contains("outputExample is not of the schema's type array"));
        assert!(r(json!({ "bodyType": "xml" })).contains("bodyType must be"));
        let big = json!({ "description": "x".repeat(MAX_DECLARATION_BYTES) });
        assert!(r(json!({ "outputSchema": big })).contains(&format!("at most {MAX_DECLARATION_BYTES}")));
        let mut deep = json!({});
        for _ in 0..MAX_DECLARATION_DEPTH + 1 {
            deep = json!({ "not": deep });
        }
        assert!(r(json!({ "inputSchema": deep })).contains("nests deeper"));
        // Each declaration under its own limit, the extension over its total.
        let third = |c: char| json!({ "description": c.to_string().repeat(MAX_DECLARATION_BYTES - 40) });
        let e = r(json!({ "inputSchema": third('a'), "outputSchema": third('b'), "outputExample": third('c') }));
        assert!(e.contains("bazaar extension is") && e.contains(&format!("at most {MAX_EXTENSION_BYTES}")), "{e}");
        // A body route's schema needs an example: `info.input.body` is required.
        let e = cfg_err(json!({ "route": "POST /s", "price": "$0.01", "inputSchema": { "properties": {} } }));
        assert!(e.contains("needs an inputExample"), "{e}");
        // A text body may be a string.
        assert!(config(json!([{ "route": "POST /t", "price": "$0.01", "bodyType": "text", "inputExample": "hello" }]), false).is_ok());
        // Free routes take none of these keys.
        assert!(cfg_err(json!({ "route": "GET /f", "free": true, "inputSchema": {} })).contains("unknown field `inputSchema`"));
        // Error messages keep values out of the public form.
        let e = config(json!([{ "route": "GET /w", "price": "$0.01", "inputSchema": { "$id": "https://secret.example/x-key" } }]), false).unwrap_err();
        assert!(!e.public().contains("x-key"), "{}", e.public());
    }

    #[test]
    fn extensions_merge_with_sign_in_with_x() {
        let bazaar = json!({ "info": {}, "schema": {} });
        let siwx = json!({ "sign-in-with-x": { "info": { "nonce": "n" } } });
        let merged = merge_extensions(Some(siwx.clone()), Some(&bazaar)).unwrap();
        assert_eq!(merged, json!({ "sign-in-with-x": { "info": { "nonce": "n" } }, "bazaar": bazaar }));
        assert_eq!(merge_extensions(None, Some(&bazaar)).unwrap(), json!({ "bazaar": bazaar }));
        assert_eq!(merge_extensions(Some(siwx.clone()), None), Some(siwx));
        assert_eq!(merge_extensions(None, None), None);
    }

    fn document_routes() -> Value {
        json!([
            { "route": "GET /premium/sample", "free": true },
            { "route": "GET /reports/:id", "description": "A report", "mimeType": "application/json",
              "accepts": [{ "price": "$0.10" }, { "price": "$0.20", "network": "eip155:8453" }],
              "pass": { "ttl": "1h", "maxRequests": 10 },
              "inputSchema": { "properties": { "format": { "type": "string" } } } },
            { "route": "POST /jobs", "amount": "7", "asset": "0x00000000000000000000000000000000000000aa", "name": "T", "version": "1",
              "network": "eip155:31337", "discoverable": false, "inputSchema": { "properties": {} }, "inputExample": {} },
            { "route": "GET /filings/*", "price": "$1", "group": "research", "pass": { "ttl": "30d", "scope": "research" } }
        ])
    }

    #[test]
    fn the_document_lists_every_priced_route_with_its_offers_and_pass_terms() {
        let c = config(document_routes(), true).unwrap();
        let doc: Value = serde_json::from_slice(WellKnown::for_config(&c).body()).unwrap();
        assert_eq!(doc["x402Version"], 2);
        let items = doc["items"].as_array().unwrap();
        assert_eq!(items.len(), 3, "the free route is not listed");
        let report = &items[0];
        assert_eq!(report["type"], "http");
        assert_eq!(report["route"], "GET /reports/:id");
        assert_eq!(report["methods"], json!(["GET", "HEAD"]));
        assert_eq!(report["path"], "/reports/:id");
        assert_eq!(report["routeTemplate"], "/reports/:id");
        assert_eq!(report["description"], "A report");
        assert_eq!(report["mimeType"], "application/json");
        // Every option, exactly the PaymentRequirements the 402 offers.
        let offered: Vec<Value> = c.routes[1].accepts.iter().map(|o| serde_json::to_value(&o.requirements).unwrap()).collect();
        assert_eq!(report["accepts"], Value::Array(offered));
        assert_eq!(report["accepts"][0]["amount"], "100000");
        assert_eq!(report["accepts"][1]["network"], "eip155:8453");
        assert_eq!(report["accepts"][1]["asset"], "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913");
        assert_eq!(report["accepts"][1]["payTo"], "0x209693Bc6afc0C5328bA36FaF03C514EF312287C");
        assert_eq!(report["accepts"][1]["maxTimeoutSeconds"], 300);
        assert_eq!(report["accepts"][1]["extra"], json!({ "name": "USD Coin", "version": "2" }));
        assert_eq!(report["pass"], json!({ "ttlSeconds": 3600, "maxRequests": 10, "scope": "route", "summary": "10 requests within 1 hour to /reports/:id" }));
        assert_eq!(report["discoverable"], true);
        assert_eq!(report["inputSchema"], json!({ "properties": { "format": { "type": "string" } } }));
        assert_eq!(report["extensions"], json!(["bazaar", "sign-in-with-x"]));
        let jobs = &items[1];
        assert_eq!(jobs["methods"], json!(["POST"]));
        assert_eq!(jobs["accepts"][0]["amount"], "7");
        assert_eq!(jobs["discoverable"], false);
        assert!(jobs.get("inputSchema").is_none() && jobs.get("pass").is_none() && jobs.get("routeTemplate").is_none());
        assert_eq!(jobs["extensions"], json!([]));
        let filings = &items[2];
        assert_eq!(filings["group"], "research");
        assert_eq!(filings["pass"]["scope"], "group");
        assert_eq!(filings["pass"]["group"], "research");
        assert_eq!(filings["pass"]["ttlSeconds"], 30 * 86_400);
        assert_eq!(filings["routeTemplate"], "/filings/:var1");
    }

    #[test]
    fn the_etag_is_the_body_hash_stable_across_builds_and_changes_with_the_configuration() {
        let a = WellKnown::for_config(&config(document_routes(), false).unwrap());
        let b = WellKnown::for_config(&config(document_routes(), false).unwrap());
        assert_eq!(a, b, "another isolate with the same configuration serves the same bytes and tag");
        assert_eq!(a.etag(), format!("\"{}\"", hex_lower(&keccak256(a.body())[..16])));
        assert!(a.etag().len() == 34 && !a.etag().starts_with("W/"), "strong");
        let mut routes = document_routes();
        routes[1]["accepts"][0]["price"] = json!("$0.11");
        let c = WellKnown::for_config(&config(routes, false).unwrap());
        assert_ne!(a.etag(), c.etag(), "a price change is a new tag");
        let with_sign_in = WellKnown::for_config(&config(document_routes(), true).unwrap());
        assert_ne!(a.etag(), with_sign_in.etag());
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn get_head_conditional_and_other_methods() {
        let wk = WellKnown::for_config(&config(document_routes(), false).unwrap());
        let res = wk.respond(&Method::GET, &HeaderMap::new(), |b| b);
        assert_eq!(res.status(), 200);
        assert_eq!(res.body(), wk.body());
        assert_eq!(res.headers()["content-type"], "application/json");
        assert_eq!(res.headers()["etag"], wk.etag());
        assert_eq!(res.headers()["cache-control"], "public, max-age=300");
        assert_eq!(res.headers()["access-control-allow-origin"], "*");

        let head = wk.respond(&Method::HEAD, &HeaderMap::new(), |b| b);
        assert_eq!(head.status(), 200);
        assert!(head.body().is_empty());
        assert_eq!(head.headers()["etag"], wk.etag());

        for inm in [wk.etag().to_string(), format!("\"other\", {}", wk.etag()), format!("W/{}", wk.etag()), "*".into()] {
            let res = wk.respond(&Method::GET, &headers(&[("if-none-match", &inm)]), |b| b);
            assert_eq!(res.status(), 304, "{inm}");
            assert!(res.body().is_empty());
            assert_eq!(res.headers()["etag"], wk.etag());
            assert_eq!(res.headers()["cache-control"], "public, max-age=300");
        }
        let stale = wk.respond(&Method::GET, &headers(&[("if-none-match", "\"0123\"")]), |b| b);
        assert_eq!(stale.status(), 200);
        assert_eq!(stale.body(), wk.body());

        for m in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
            let res = wk.respond(&Method::from_bytes(m.as_bytes()).unwrap(), &HeaderMap::new(), |b| b);
            assert_eq!(res.status(), 405, "{m}");
            assert_eq!(res.headers()["allow"], "GET, HEAD");
            assert!(res.headers().get("etag").is_none());
        }
    }
}
