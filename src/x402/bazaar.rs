//! The x402 `bazaar` extension (`specs/extensions/bazaar.md`) in each 402's `extensions`: how a
//! route is called (`info.input`: `type: "http"`, `method`, `queryParams` or `bodyType` + `body`),
//! what it answers (`info.output`), the JSON Schema draft 2020-12 document `info` validates
//! against, and for routes with parameters `routeTemplate` (`/users/:id`). The route's
//! declaration is read by [`crate::config`]; the `/.well-known/x402` document that lists it is
//! [`crate::discovery`].

use http::Method;
use serde_json::{json, Map, Value};

use crate::route::RoutePattern;

/// Largest `bazaar` extension of one route, in bytes of compact JSON (about 8 KiB once base64
/// encoded in `PAYMENT-REQUIRED`).
pub const MAX_EXTENSION_BYTES: usize = 6 * 1024;

/// The extension key in `PaymentRequired.extensions` (`@x402/extensions` `BAZAAR.key`).
pub const BAZAAR: &str = "bazaar";

/// JSON Schema dialect of the extension's `schema` (the bazaar spec requires draft 2020-12).
const JSON_SCHEMA_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Methods whose input the bazaar describes as query parameters (`QueryDiscoveryInfo`).
pub(crate) const QUERY_METHODS: [Method; 3] = [Method::GET, Method::HEAD, Method::DELETE];
/// Methods whose input the bazaar describes as a body (`BodyDiscoveryInfo`).
pub(crate) const BODY_METHODS: [Method; 3] = [Method::POST, Method::PUT, Method::PATCH];

/// How a body route's request body is encoded: the bazaar's `info.input.bodyType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    /// `"json"` (the default).
    Json,
    /// `"form-data"`.
    FormData,
    /// `"text"`.
    Text,
}

impl BodyType {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            BodyType::Json => "json",
            BodyType::FormData => "form-data",
            BodyType::Text => "text",
        }
    }
}

/// A priced route's discovery declaration (the route keys `discoverable`, `inputSchema`,
/// `inputExample`, `bodyType`, `outputSchema`, `outputExample`, read by `crate::config`) and the
/// `bazaar` extension built from it, one per method the route prices that the bazaar knows
/// (`GET`, `HEAD`, `DELETE` with query parameters; `POST`, `PUT`, `PATCH` with a body).
///
/// - `discoverable` (default `true`): `false` publishes no extension and no contract.
/// - `inputSchema`: JSON Schema of the query parameters object (query methods) or of the body
///   (body methods), as `declareDiscoveryExtension`'s `inputSchema`.
/// - `inputExample`: example query parameters (an object) or body (an object; a string for
///   `bodyType = "text"`): the extension's `info.input.queryParams` / `info.input.body`.
/// - `bodyType`: `"json"` (default), `"form-data"` or `"text"`; body methods only.
/// - `outputSchema`, `outputExample`: JSON Schema and example of the response
///   (`info.output.example` and the schema of it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteDiscovery {
    pub discoverable: bool,
    pub input_schema: Option<Value>,
    pub input_example: Option<Value>,
    pub body_type: Option<BodyType>,
    pub output_schema: Option<Value>,
    pub output_example: Option<Value>,
    /// The bazaar `routeTemplate` (`/reports/:id`), for a path with parameters whose template
    /// passes the spec's `isValidRouteTemplate` rules; `None` for static paths.
    pub route_template: Option<String>,
    /// The `bazaar` extension value (`{info, schema, routeTemplate?}`) per method.
    pub(crate) bazaar: Vec<(Method, Value)>,
}

/// The methods a pattern prices, as the document lists them: `GET` with `HEAD`; `["*"]` for a
/// pattern without a method (any method but `OPTIONS`).
pub(crate) fn listed_methods(pattern: &RoutePattern) -> Vec<String> {
    match pattern.method() {
        None => vec!["*".into()],
        Some(m) if *m == Method::GET => vec!["GET".into(), "HEAD".into()],
        Some(m) => vec![m.to_string()],
    }
}

/// The methods of a pattern the bazaar can describe.
pub(crate) fn bazaar_methods(pattern: &RoutePattern) -> Vec<Method> {
    match pattern.method() {
        None => QUERY_METHODS.iter().chain(BODY_METHODS.iter()).cloned().collect(),
        Some(m) if *m == Method::GET => vec![Method::GET, Method::HEAD],
        Some(m) if QUERY_METHODS.contains(m) || BODY_METHODS.contains(m) => vec![m.clone()],
        Some(_) => Vec::new(),
    }
}

/// The path part of a route key (`"GET /reports/:id"` → `"/reports/:id"`).
pub fn key_path(key: &str) -> &str {
    key.split_once(' ').map_or(key, |(_, p)| p)
}

/// The bazaar `routeTemplate` of a route path: `:name` and `[name]` segments become `:name`,
/// `*` segments `:var1`, `:var2`… (as `bazaarResourceServerExtension` normalises them). `None`
/// for a path without parameters, one of only `*` segments (which the official server extension
/// leaves without a template too), or a template the spec's rules would discard (characters
/// outside `[a-zA-Z0-9_/:.\-~%]`, `..`, `://`).
pub fn route_template(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.is_empty() || segments.iter().all(|s| *s == "*") {
        return None;
    }
    let mut wildcard = 0;
    let mut has_param = false;
    let mut out = String::with_capacity(path.len() + 8);
    for s in segments {
        out.push('/');
        if s == "*" {
            wildcard += 1;
            has_param = true;
            out.push_str(&format!(":var{wildcard}"));
        } else if let Some(name) = s.strip_prefix(':') {
            has_param = true;
            out.push(':');
            out.push_str(name);
        } else if let Some(name) = s.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
            has_param = true;
            out.push(':');
            out.push_str(name);
        } else {
            out.push_str(s);
        }
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_/:.-~%".contains(c);
    let decoded = percent_encoding::percent_decode_str(&out).decode_utf8_lossy();
    let safe = out.chars().all(allowed) && !decoded.contains("..") && !decoded.contains("://");
    (has_param && safe).then_some(out)
}

impl RouteDiscovery {
    /// The `bazaar` extension value a 402 for `method` carries (`{info, schema, routeTemplate?}`),
    /// built at configuration time; `None` when the route is not discoverable or the bazaar has
    /// no shape for the method.
    pub fn bazaar(&self, method: &Method) -> Option<&Value> {
        self.bazaar.iter().find(|(m, _)| m == method).map(|(_, v)| v)
    }

    /// Builds the extension for one method, shaped as `@x402/extensions` 2.27.0
    /// `declareDiscoveryExtension` then `bazaarResourceServerExtension.enrichDeclaration` build it
    /// (`info.input.method` set, the schema's `method` enum narrowed to it, `routeTemplate` for
    /// dynamic routes), except: `queryParams` appears in `info` only when an example is
    /// configured, and `output` is declared whenever an `outputSchema` or `outputExample` is (its
    /// `example` schema is the `outputSchema` itself, any JSON value when absent). Per-request
    /// `info.input.pathParams` are not added: the value is built once per route.
    pub(crate) fn build_extension(&self, method: &Method) -> Value {
        let is_body = BODY_METHODS.contains(method);
        let mut input_info = Map::new();
        input_info.insert("type".into(), json!("http"));
        input_info.insert("method".into(), json!(method.as_str()));
        let mut input_props = Map::new();
        input_props.insert("type".into(), json!({ "type": "string", "const": "http" }));
        input_props.insert("method".into(), json!({ "type": "string", "enum": [method.as_str()] }));
        let required: Vec<&str> = if is_body {
            let body_type = self.body_type.unwrap_or(BodyType::Json);
            input_info.insert("bodyType".into(), json!(body_type.as_str()));
            input_info.insert("body".into(), self.input_example.clone().unwrap_or_else(|| json!({})));
            input_props.insert("bodyType".into(), json!({ "type": "string", "enum": ["json", "form-data", "text"] }));
            input_props.insert("body".into(), self.input_schema.clone().unwrap_or_else(|| json!({})));
            vec!["type", "method", "bodyType", "body"]
        } else {
            if let Some(ex) = &self.input_example {
                input_info.insert("queryParams".into(), ex.clone());
            }
            let mut query = Map::new();
            query.insert("type".into(), json!("object"));
            if let Some(Value::Object(s)) = &self.input_schema {
                query.extend(s.clone());
            }
            input_props.insert("queryParams".into(), Value::Object(query));
            vec!["type", "method"]
        };
        let mut info = Map::new();
        info.insert("input".into(), Value::Object(input_info));
        let mut props = Map::new();
        props.insert("input".into(), json!({ "type": "object", "properties": input_props, "required": required, "additionalProperties": false }));
        if self.output_schema.is_some() || self.output_example.is_some() {
            let mut output = Map::new();
            output.insert("type".into(), json!("json"));
            if let Some(ex) = &self.output_example {
                output.insert("example".into(), ex.clone());
            }
            info.insert("output".into(), Value::Object(output));
            let example_schema = self.output_schema.clone().unwrap_or_else(|| json!({}));
            props.insert(
                "output".into(),
                json!({ "type": "object", "properties": { "type": { "type": "string" }, "example": example_schema }, "required": ["type"] }),
            );
        }
        let mut ext = Map::new();
        ext.insert("info".into(), Value::Object(info));
        ext.insert("schema".into(), json!({ "$schema": JSON_SCHEMA_2020_12, "type": "object", "properties": props, "required": ["input"] }));
        if let Some(t) = &self.route_template {
            ext.insert("routeTemplate".into(), json!(t));
        }
        Value::Object(ext)
    }
}
/// `PaymentRequired.extensions` of a challenge: the other extensions (an object keyed by
/// extension id, such as `sign-in-with-x`) with `bazaar` added. `None` when there is neither.
pub fn merge_extensions(others: Option<Value>, bazaar: Option<&Value>) -> Option<Value> {
    let Some(bazaar) = bazaar else { return others };
    let mut map = match others {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    map.insert(BAZAAR.into(), bazaar.clone());
    Some(Value::Object(map))
}
