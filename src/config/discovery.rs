//! A priced route's discovery keys (`discoverable`, `inputSchema`, `inputExample`, `bodyType`,
//! `outputSchema`, `outputExample`): read, bounded and checked, then built into the route's
//! `bazaar` extensions ([`crate::x402::bazaar`]).

use serde_json::{Map, Value};

use crate::route::RoutePattern;
use crate::x402::bazaar::{bazaar_methods, key_path, listed_methods, route_template, BodyType, RouteDiscovery, BODY_METHODS, MAX_EXTENSION_BYTES, QUERY_METHODS};

use super::{shown, ConfigError};

/// Largest `inputSchema`, `outputSchema`, `inputExample` or `outputExample`, in bytes of compact
/// JSON. The extension travels base64-encoded in the `PAYMENT-REQUIRED` header, and common HTTP
/// clients refuse response headers above 16 KiB in total.
pub const MAX_DECLARATION_BYTES: usize = 2 * 1024;

/// Deepest nesting of objects and arrays in a declared schema or example.
pub const MAX_DECLARATION_DEPTH: usize = 16;

/// The route keys this module reads (besides the ones `config` reads).
pub const ROUTE_KEYS: [&str; 6] = ["discoverable", "inputSchema", "inputExample", "bodyType", "outputSchema", "outputExample"];

fn err<T>(msg: String) -> Result<T, ConfigError> {
    Err(ConfigError(msg))
}

/// Compact JSON size and nesting depth checks for one declared value.
fn check_bounds(at: &str, name: &str, v: &Value) -> Result<(), ConfigError> {
    let size = serde_json::to_string(v).map_or(usize::MAX, |s| s.len());
    if size > MAX_DECLARATION_BYTES {
        return err(format!("{at}: {name} is {size} bytes of JSON; at most {MAX_DECLARATION_BYTES} (it travels in the PAYMENT-REQUIRED header)"));
    }
    fn depth(v: &Value) -> usize {
        match v {
            Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
            Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    if depth(v) > MAX_DECLARATION_DEPTH {
        return err(format!("{at}: {name} nests deeper than {MAX_DECLARATION_DEPTH} levels"));
    }
    Ok(())
}

/// The first `$ref` or `$id` that is not a same-document fragment (`#…`), anywhere in `v`: the
/// bazaar spec forbids external references, and `validateDiscoveryExtension` refuses them.
fn external_reference(v: &Value) -> Option<String> {
    match v {
        Value::Object(m) => m.iter().find_map(|(k, x)| {
            let bad = (k == "$ref" || k == "$id") && !x.as_str().is_some_and(|s| s.starts_with('#'));
            if bad {
                Some(format!("{k}: {x}"))
            } else {
                external_reference(x)
            }
        }),
        Value::Array(a) => a.iter().find_map(external_reference),
        _ => None,
    }
}

/// A JSON Schema object given for `name`: an object, bounded, without external references.
fn schema_field(at: &str, obj: &Map<String, Value>, name: &str) -> Result<Option<Value>, ConfigError> {
    let Some(v) = obj.get(name) else { return Ok(None) };
    if !v.is_object() {
        return err(format!("{at}: {name} must be a JSON Schema object (a table in TOML)"));
    }
    check_bounds(at, name, v)?;
    if let Some(r) = external_reference(v) {
        return err(format!("{at}: {name} has an external reference ({}); only same-document `#…` references are allowed", shown(&r)));
    }
    Ok(Some(v.clone()))
}

/// Whether `v` has JSON Schema type `t` (unknown type names accept anything).
fn has_type(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => true,
    }
}

/// A light check of an example against its schema at configuration time: the top-level `type`,
/// the `required` properties, and the `type` of each property given. (The whole extension is
/// validated with the official validator in the Miniflare tests; a full JSON Schema validator
/// would not pay for its size in the Worker.)
fn check_example(at: &str, name: &str, example: &Value, schema: Option<&Value>) -> Result<(), ConfigError> {
    let Some(schema) = schema else { return Ok(()) };
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        if !has_type(t, example) {
            return err(format!("{at}: {name} is not of the schema's type {t}"));
        }
    }
    let fields = example.as_object();
    for required in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        if !fields.is_some_and(|f| f.contains_key(required)) {
            return err(format!("{at}: {name} lacks the required property {}", shown(required)));
        }
    }
    if let (Some(fields), Some(props)) = (fields, schema.get("properties").and_then(Value::as_object)) {
        for (k, v) in fields {
            if let Some(t) = props.get(k).and_then(|p| p.get("type")).and_then(Value::as_str) {
                if !has_type(t, v) {
                    return err(format!("{at}: {name} property {} is not of type {t}", shown(k)));
                }
            }
        }
    }
    Ok(())
}

impl RouteDiscovery {
    /// Reads a priced route's discovery keys (`ROUTE_KEYS`) from its configuration entry and
    /// builds its `bazaar` extensions. `at` names the route in errors; `key` is the normalised
    /// route key (`"GET /reports/:id"`).
    pub fn parse(at: &str, obj: &Map<String, Value>, key: &str, pattern: &RoutePattern) -> Result<RouteDiscovery, ConfigError> {
        let discoverable = match obj.get("discoverable") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return err(format!("{at}: discoverable must be true or false")),
        };
        let input_schema = schema_field(at, obj, "inputSchema")?;
        let output_schema = schema_field(at, obj, "outputSchema")?;
        let body_type = match obj.get("bodyType").map(|v| v.as_str()) {
            None => None,
            Some(Some("json")) => Some(BodyType::Json),
            Some(Some("form-data")) => Some(BodyType::FormData),
            Some(Some("text")) => Some(BodyType::Text),
            Some(_) => return err(format!("{at}: bodyType must be \"json\", \"form-data\" or \"text\"")),
        };
        let methods = bazaar_methods(pattern);
        let query = methods.iter().any(|m| QUERY_METHODS.contains(m));
        let body = methods.iter().any(|m| BODY_METHODS.contains(m));
        if body_type.is_some() && !body {
            return err(format!("{at}: bodyType describes a request body; it applies to POST, PUT and PATCH routes only"));
        }
        let input_example = obj.get("inputExample").cloned();
        if let Some(ex) = &input_example {
            check_bounds(at, "inputExample", ex)?;
            let text = body_type == Some(BodyType::Text) && !query;
            if !(ex.is_object() || (text && ex.is_string())) {
                return err(format!("{at}: inputExample must be an object of example values (a string for bodyType \"text\")"));
            }
            check_example(at, "inputExample", ex, input_schema.as_ref())?;
        }
        if query {
            if let Some(t) = input_schema.as_ref().and_then(|s| s.get("type")).and_then(Value::as_str).filter(|t| *t != "object") {
                return err(format!("{at}: inputSchema describes the query parameters of a {} route, so its type must be object, not {t}", listed_methods(pattern).join("/")));
            }
        }
        if body && input_example.is_none() && input_schema.is_some() {
            return err(format!(
                "{at}: a body route with an inputSchema needs an inputExample (the bazaar's info.input.body is required and must validate against the schema)"
            ));
        }
        let output_example = obj.get("outputExample").cloned();
        if let Some(ex) = &output_example {
            check_bounds(at, "outputExample", ex)?;
            check_example(at, "outputExample", ex, output_schema.as_ref())?;
        }
        let mut d = RouteDiscovery {
            discoverable,
            input_schema,
            input_example,
            body_type,
            output_schema,
            output_example,
            route_template: route_template(key_path(key)),
            bazaar: Vec::new(),
        };
        if discoverable {
            for m in methods {
                let ext = d.build_extension(&m);
                let size = serde_json::to_string(&ext).map_or(usize::MAX, |s| s.len());
                if size > MAX_EXTENSION_BYTES {
                    return err(format!("{at}: its bazaar extension is {size} bytes of JSON; at most {MAX_EXTENSION_BYTES}: shorten inputSchema, outputSchema or the examples"));
                }
                d.bazaar.push((m, ext));
            }
        }
        Ok(d)
    }
}
