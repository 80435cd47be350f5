//! MCP (Model Context Protocol) messages as the paywall reads them: pure, no I/O, no
//! configuration. It owns the JSON-RPC 2.0 message a client POSTs to a Streamable HTTP endpoint
//! (MCP specification 2025-06-18, "Transports"), classified fail-closed ([`classify`]), and the
//! wire of x402's MCP transport (`specs/transports-v2/mcp.md` in the x402 repository): the payment
//! in `params._meta["x402/payment"]` ([`PAYMENT_META`], a `PaymentPayload` object, or the same
//! JSON base64-encoded as Cloudflare's `agents` client sends it), the `PaymentRequired` tool result
//! ([`payment_required_result`]) and `_meta["x402/payment-response"]` on a paid result
//! ([`PAYMENT_RESPONSE_META`], [`answer::with_payment_response`]).
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`classify`]: what one POSTed message is, and the JSON-RPC errors of what is refused |
//! | `json.rs` | the strict parse (duplicate keys refused at every depth), a call as the origin gets it (the paywall's id, no payment) without re-encoding its arguments |
//! | `answer.rs` | the origin's answer to one request (JSON or an SSE stream): found by id, judged (error or `isError`), given its `_meta`; prices added to a `tools/list` result |
//!
//! What it must not touch: HTTP, the configuration, payments (verifying, settling): the gateway
//! (`gateway/mcp.rs`) takes the payment from here to the HTTP payment flow and back.

pub mod answer;
mod json;

pub use json::{for_origin, parse_strict};

use base64::Engine;
use serde_json::{json, Value};

/// Largest request body read on an MCP endpoint of a priced server (bytes): larger ones are refused.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Largest origin answer to a priced tool call read before settlement (bytes, JSON or the whole
/// SSE stream of the request): larger ones are not settled.
pub const MAX_ANSWER_BYTES: usize = 4 << 20;
/// The largest integer JSON-RPC id accepted, in magnitude: 2^53 − 1, what JavaScript servers
/// keep exactly.
pub const MAX_SAFE_ID: u64 = (1 << 53) - 1;
/// `params._meta` key of the payment (x402 MCP transport).
pub const PAYMENT_META: &str = "x402/payment";
/// `params._meta` key of a pass token a call presents, and `result._meta` key of the token a paid
/// call that bought a pass returns (the `X402-Pass` header of a route, named as x402's MCP keys).
pub const PASS_META: &str = "x402/pass";
/// `result._meta` key of a pass's expiry (Unix seconds; a route's `X402-Pass-Expires`), on a call
/// that bought a pass or ran on one.
pub const PASS_EXPIRES_META: &str = "x402/pass-expires";
/// `params._meta` key of a wallet sign-in proof (the `SIGN-IN-WITH-X` header's value: base64 JSON).
pub const SIGN_IN_META: &str = "x402/sign-in-with-x";
/// `result._meta` key of the settlement response (x402 MCP transport).
pub const PAYMENT_RESPONSE_META: &str = "x402/payment-response";
/// `_meta` key under which a `tools/list` result carries a priced tool's `PaymentRequired`.
pub const PRICE_META: &str = "x402/payment-required";
/// `_meta` key under which Cloudflare's `agents` x402 MCP client reads the `PaymentRequired` of a
/// tool result (`packages/agents/src/mcp/x402.ts`); the paywall sets it next to `structuredContent`.
pub const AGENTS_ERROR_META: &str = "x402/error";
/// `_meta` keys with which `agents` servers announce a paid tool in `tools/list`.
pub const AGENTS_PAID_META: &str = "agents-x402/paymentRequired";
pub const AGENTS_PRICE_META: &str = "agents-x402/priceUSD";
/// The resource URL of a tool in its `PaymentRequired` (`mcp://tool/{name}`, as `@x402/mcp`).
pub const TOOL_RESOURCE_PREFIX: &str = "mcp://tool/";

/// JSON-RPC 2.0 error codes used here.
pub mod code {
    /// The body is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not one valid JSON-RPC request, notification or response object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// A method the paywall refuses on a priced server.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// `tools/call` params the paywall cannot read.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The paywall's own answer about a payment (implementation-defined server error range).
    pub const PAYMENT: i64 = -32000;
    /// A denied tool.
    pub const TOOL_DENIED: i64 = -32001;
}

/// A payment as it arrived in `_meta["x402/payment"]`.
#[derive(Debug, Clone, PartialEq)]
pub enum Payment {
    /// The spec's form: a `PaymentPayload` object.
    Object(Value),
    /// A string: the `PaymentPayload` JSON base64-encoded (the `PAYMENT-SIGNATURE` form).
    Encoded(String),
}

impl Payment {
    /// The payment as a `PAYMENT-SIGNATURE` header value (base64 of its JSON).
    pub fn header_value(&self) -> String {
        match self {
            Payment::Object(v) => base64::engine::general_purpose::STANDARD.encode(v.to_string()),
            Payment::Encoded(s) => s.trim().to_string(),
        }
    }
}

/// A `tools/call` request.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// Its JSON-RPC id (a string or an integer).
    pub id: Value,
    /// `params.name`, decoded.
    pub name: String,
    /// The payment, if `_meta` carries one.
    pub payment: Option<Payment>,
    /// A pass token, if `_meta` carries one ([`PASS_META`]).
    pub pass: Option<String>,
    /// A wallet sign-in proof, if `_meta` carries one ([`SIGN_IN_META`]).
    pub sign_in: Option<String>,
    /// Whether `params.task` asks for a task-augmented call (its result would come later,
    /// through another method).
    pub task: bool,
}

/// What one POSTed message is.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A `tools/call` request: priced, denied or free by its name.
    ToolCall(ToolCall),
    /// A `tools/list` request (its id): forwarded, its result given the prices.
    ToolsList { id: Value },
    /// Anything else (`initialize`, `ping`, notifications, responses, other methods): forwarded
    /// untouched.
    Other,
}

/// A message refused before it reaches the origin: a JSON-RPC error.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// The request's id, `null` when it has none or it could not be read.
    pub id: Value,
    /// The JSON-RPC error code ([`code`]).
    pub code: i64,
    pub message: String,
}

impl Refused {
    fn new(id: &Value, code: i64, message: impl Into<String>) -> Refused {
        Refused { id: id.clone(), code, message: message.into() }
    }

    /// The JSON-RPC error response.
    pub fn to_json(&self) -> Value {
        error_response(&self.id, self.code, &self.message, None)
    }
}

/// A JSON-RPC error response.
pub fn error_response(id: &Value, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({ "code": code, "message": message });
    if let Some(d) = data {
        error["data"] = d;
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": error })
}

/// The tool result of x402's MCP transport for a call that needs (another) payment:
/// `isError: true`, `structuredContent` = the `PaymentRequired`, `content[0].text` = its JSON, and
/// the same object in `_meta["x402/error"]`, where Cloudflare's `agents` client reads it;
/// `settled`: a failed settlement's response, in `_meta["x402/payment-response"]`.
pub fn payment_required_result(id: &Value, payment_required: &Value, settled: Option<&Value>) -> Value {
    let mut result = json!({
        "content": [{ "type": "text", "text": payment_required.to_string() }],
        "structuredContent": payment_required,
        "isError": true,
        "_meta": { AGENTS_ERROR_META: payment_required },
    });
    if let Some(s) = settled {
        result["_meta"][PAYMENT_RESPONSE_META] = s.clone();
    }
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// The JSON-RPC 2.0 members of a message, and the MCP members of `tools/call` params, that
/// [`classify`] reads by their exact names.
const TOP_KEYS: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];
const PARAMS_KEYS: [&str; 4] = ["name", "arguments", "_meta", "task"];

/// Classifies one POSTed body, fail-closed: exactly one JSON-RPC 2.0 object (no batch, no
/// duplicate key at any depth, no member of the message or of its `params` that differs from a
/// JSON-RPC or MCP member only in letter case, which a case-insensitive server (Go's
/// `encoding/json`: keys equal under [`json::fold_key`], the last one kept) would read as that
/// member, `jsonrpc: "2.0"`, an id that is a string or an integer); a
/// `tools/call` must carry an id (a call hidden in a notification is refused), a string
/// `params.name` and, if any, an object `_meta` whose `x402/payment` is an object or a string.
/// A method that only differs from `tools/call` in case or spaces, and any other `tools/…`
/// method than `tools/list` and `tools/call`, is refused: nothing reaches a tool under another name.
pub fn classify(body: &[u8]) -> Result<Message, Refused> {
    let null = Value::Null;
    let value = parse_strict(body).map_err(|e| match e {
        json::StrictError::Syntax(m) => Refused::new(&null, code::PARSE_ERROR, format!("the body is not JSON: {m}")),
        json::StrictError::Duplicate(m) => Refused::new(&null, code::INVALID_REQUEST, m),
    })?;
    let obj = match value {
        Value::Object(o) => o,
        Value::Array(_) => {
            return Err(Refused::new(&null, code::INVALID_REQUEST, "JSON-RPC batches are not accepted (MCP 2025-06-18 removed them): send one message per request"));
        }
        _ => return Err(Refused::new(&null, code::INVALID_REQUEST, "a message must be one JSON-RPC object")),
    };
    // A member a case-insensitive server reads as a JSON-RPC or MCP one (`"Method"`, `"paramſ"`,
    // `params."Name"`) is refused: this classification reads the exact names only.
    let params_keys = obj.get("params").and_then(Value::as_object).into_iter().flat_map(|p| p.keys());
    for (key, names) in obj.keys().map(|k| (k, &TOP_KEYS[..])).chain(params_keys.map(|k| (k, &PARAMS_KEYS[..]))) {
        let folded = json::fold_key(key);
        if let Some(name) = names.iter().find(|n| **n == folded && **n != key.as_str()) {
            return Err(Refused::new(&null, code::INVALID_REQUEST, format!("member {key:?} is refused: it differs from {name:?} only in letter case, which some servers read as {name:?}")));
        }
    }
    let id = match obj.get("id") {
        None => None,
        Some(v @ Value::String(_)) => Some(v.clone()),
        // Integers a JavaScript server keeps exactly (±(2^53 − 1)): a larger one is rounded there,
        // and the answer would carry another id than the call.
        Some(v @ Value::Number(n)) if n.as_i64().is_some_and(|i| i.unsigned_abs() <= MAX_SAFE_ID) || n.as_u64().is_some_and(|u| u <= MAX_SAFE_ID) => Some(v.clone()),
        Some(_) => return Err(Refused::new(&null, code::INVALID_REQUEST, "id must be a string or an integer of at most 2^53 - 1 in magnitude")),
    };
    let shown_id = id.clone().unwrap_or(Value::Null);
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(Refused::new(&shown_id, code::INVALID_REQUEST, "jsonrpc must be \"2.0\""));
    }
    let answers = obj.contains_key("result") || obj.contains_key("error");
    let method = match obj.get("method") {
        None if id.is_some() && (obj.contains_key("result") != obj.contains_key("error")) => return Ok(Message::Other),
        None => return Err(Refused::new(&shown_id, code::INVALID_REQUEST, "neither a request (method) nor a response (id with result or error)")),
        Some(Value::String(m)) if !answers => m.as_str(),
        Some(Value::String(_)) => return Err(Refused::new(&shown_id, code::INVALID_REQUEST, "a message with a method cannot carry result or error")),
        Some(_) => return Err(Refused::new(&shown_id, code::INVALID_REQUEST, "method must be a string")),
    };
    let folded = method.trim().to_ascii_lowercase();
    if folded.starts_with("tools/") && method != "tools/call" && method != "tools/list" {
        return Err(Refused::new(&shown_id, code::METHOD_NOT_FOUND, format!("method {method:?} is refused on this priced server: tools are called with \"tools/call\"")));
    }
    if method == "tools/list" {
        return Ok(id.map_or(Message::Other, |id| Message::ToolsList { id }));
    }
    if method != "tools/call" {
        return Ok(Message::Other);
    }
    let Some(id) = id else {
        return Err(Refused::new(&null, code::INVALID_REQUEST, "tools/call without an id (a notification) is refused: a tool call must be a request"));
    };
    let Some(params) = obj.get("params").and_then(Value::as_object) else {
        return Err(Refused::new(&id, code::INVALID_PARAMS, "tools/call params must be an object"));
    };
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return Err(Refused::new(&id, code::INVALID_PARAMS, "tools/call params.name must be a string"));
    };
    let empty = serde_json::Map::new();
    let meta = match params.get("_meta") {
        None => &empty,
        Some(Value::Object(meta)) => meta,
        Some(_) => return Err(Refused::new(&id, code::INVALID_PARAMS, "tools/call params._meta must be an object")),
    };
    let payment = match meta.get(PAYMENT_META) {
        None => None,
        Some(v @ Value::Object(_)) => Some(Payment::Object(v.clone())),
        Some(Value::String(s)) => Some(Payment::Encoded(s.clone())),
        Some(_) => return Err(Refused::new(&id, code::INVALID_PARAMS, "_meta[\"x402/payment\"] must be a PaymentPayload object or its base64 encoding")),
    };
    let text = |key: &str| match meta.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Refused::new(&id, code::INVALID_PARAMS, format!("_meta[{key:?}] must be a string"))),
    };
    let (pass, sign_in) = (text(PASS_META)?, text(SIGN_IN_META)?);
    Ok(Message::ToolCall(ToolCall { id, name: name.to_string(), payment, pass, sign_in, task: params.contains_key("task") }))
}

#[cfg(test)]
mod tests;
