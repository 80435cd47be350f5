//! The origin's answer to one request, as the Streamable HTTP transport carries it: a JSON body
//! (`application/json`, the one JSON-RPC response) or an SSE stream (`text/event-stream`: events
//! whose `data` are JSON-RPC messages, the response to the request among them, notifications and
//! server requests around it). [`find`] finds the response by the request's id and judges it;
//! [`with_payment_response`] gives a paid result its `_meta["x402/payment-response"]`;
//! [`price_tools`] adds the prices to a `tools/list` result.

use serde_json::{Map, Value};

use super::PAYMENT_RESPONSE_META;

/// How the answer was carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    /// An SSE stream; the response is the event at this index of [`events`].
    Sse(usize),
}

/// The response to a request, found in the origin's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub format: Format,
    /// The JSON-RPC response.
    pub message: Value,
    /// Whether it reports a failure: a JSON-RPC `error`, or a result with `isError: true` (a tool
    /// error). Nothing is charged for it.
    pub failed: bool,
}

/// Whether a `Content-Type` names an SSE stream.
pub fn is_event_stream(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/event-stream"))
}

/// One SSE event: its lines as they came (without the blank line that ends it) and its `data`
/// (the `data:` lines joined by `\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub lines: Vec<String>,
    pub data: String,
}

/// The events of an SSE stream (WHATWG HTML "event stream" parsing: lines end in CRLF, LF or CR;
/// a blank line ends an event; `data:` drops one leading space). A last event without its blank
/// line is kept too.
pub fn events(text: &str) -> Vec<Event> {
    let mut out = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    let mut data: Vec<&str> = Vec::new();
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    for line in normalized.split('\n') {
        if line.is_empty() {
            if !lines.is_empty() {
                out.push(Event { lines: std::mem::take(&mut lines), data: data.join("\n") });
                data.clear();
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("data") {
            if rest.is_empty() || rest.starts_with(':') {
                let v = rest.strip_prefix(':').unwrap_or("");
                // Borrowed from `normalized`, which outlives the loop.
                data.push(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        lines.push(line.to_string());
    }
    if !lines.is_empty() {
        out.push(Event { lines, data: data.join("\n") });
    }
    out
}

/// Splits an SSE stream into its events as its chunks arrive (line ends normalised to `\n`, a
/// CR LF split across chunks included), so that each can be relayed when it is complete.
#[derive(Debug, Default)]
pub struct EventSplitter {
    pending: Vec<u8>,
    /// How far `pending` has been searched for an event's end (`\n\n`) without finding one:
    /// a long event arriving in many chunks is searched once, not once per chunk.
    searched: usize,
    after_cr: bool,
}

impl EventSplitter {
    /// Feeds a chunk; answers the events it completed, each as its lines joined by `\n`
    /// (without the blank line that ends it).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        for &b in chunk {
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            if b == b'\r' {
                self.pending.push(b'\n');
                self.after_cr = true;
            } else {
                self.pending.push(b);
            }
        }
        // Linear in the bytes pushed: each byte is searched about once, and the completed events
        // leave `pending` in one move.
        let mut out = Vec::new();
        let mut start = 0;
        let mut from = self.searched;
        while let Some(i) = self.pending[from..].windows(2).position(|w| w == b"\n\n") {
            let end = from + i;
            let text = String::from_utf8_lossy(&self.pending[start..end]).trim_start_matches('\n').to_string();
            if !text.is_empty() {
                out.push(text);
            }
            start = end + 2;
            from = start;
        }
        self.pending.drain(..start);
        // A `\n` at the very end may begin the next `\n\n`: searched again with the next chunk.
        self.searched = self.pending.len().saturating_sub(1);
        out
    }
}

/// Whether the SSE event `block` ([`EventSplitter::push`]) carries the JSON-RPC response to
/// request `id`.
pub fn is_response_event(block: &str, id: &Value) -> bool {
    events(block).first().and_then(|e| serde_json::from_str::<Value>(&e.data).ok()).is_some_and(|v| answers(&v, id))
}

/// Whether `v` is the JSON-RPC response to request `id` (same id, exactly one of result and error).
fn answers(v: &Value, id: &Value) -> bool {
    v.get("id") == Some(id) && v.get("method").is_none() && (v.get("result").is_some() != v.get("error").is_some())
}

fn judged(format: Format, message: Value) -> Answer {
    let failed = message.get("error").is_some() || message.pointer("/result/isError") == Some(&Value::Bool(true));
    Answer { format, message, failed }
}

/// Finds the response to request `id` in the origin's answer (`content_type` and body bytes).
/// Err: no such response (not JSON-RPC, another id, not UTF-8): the caller charges nothing.
pub fn find(content_type: Option<&str>, bytes: &[u8], id: &Value) -> Result<Answer, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the answer is not UTF-8".to_string())?;
    if is_event_stream(content_type) {
        for (i, e) in events(text).iter().enumerate() {
            if let Ok(v) = serde_json::from_str::<Value>(&e.data) {
                if answers(&v, id) {
                    return Ok(judged(Format::Sse(i), v));
                }
            }
        }
        return Err("the event stream ended without the response to this request".into());
    }
    let v: Value = serde_json::from_str(text).map_err(|e| format!("the answer is not JSON: {e}"))?;
    if answers(&v, id) {
        Ok(judged(Format::Json, v))
    } else {
        Err("the answer is not the JSON-RPC response to this request".into())
    }
}

/// The answer with `message` (the response found by [`find`], changed by the caller) in place of
/// the response: the JSON body, or the SSE stream with that event's `data` replaced (its other
/// lines and every other event kept).
pub fn replace(bytes: &[u8], format: Format, message: &Value) -> Vec<u8> {
    match format {
        Format::Json => message.to_string().into_bytes(),
        Format::Sse(index) => {
            let text = String::from_utf8_lossy(bytes);
            let mut out = String::with_capacity(bytes.len() + 256);
            for (i, e) in events(&text).into_iter().enumerate() {
                for line in e.lines.iter().filter(|l| i != index || !(l.starts_with("data:") || l.as_str() == "data")) {
                    out.push_str(line);
                    out.push('\n');
                }
                if i == index {
                    out.push_str("data: ");
                    out.push_str(&message.to_string());
                    out.push('\n');
                }
                out.push('\n');
            }
            out.into_bytes()
        }
    }
}

/// The response with `_meta["x402/payment-response"]` = `settled` in its `result` (a JSON-RPC
/// error response is left as it is).
pub fn with_payment_response(answer: &Answer, settled: &Value) -> Value {
    let mut message = answer.message.clone();
    if let Some(Value::Object(result)) = message.get_mut("result") {
        let meta = result.entry("_meta").or_insert_with(|| Value::Object(Default::default()));
        if !meta.is_object() {
            *meta = Value::Object(Default::default());
        }
        if let Value::Object(m) = meta {
            m.insert(PAYMENT_RESPONSE_META.into(), settled.clone());
        }
    }
    message
}

/// A `tools/list` response with prices: each tool for which `price(name, tool)` answers
/// `Some(Some(entries))` gets those entries in its `_meta` (the caller's: the tool's
/// `PaymentRequired` under `x402/payment-required`, …); one it answers `None` for (a denied tool)
/// is removed; `Some(None)`: left as it is.
pub fn price_tools(message: &Value, price: impl Fn(&str, &Value) -> Option<Option<Map<String, Value>>>) -> Value {
    let mut message = message.clone();
    if let Some(Value::Array(tools)) = message.pointer_mut("/result/tools") {
        tools.retain(|t| t.get("name").and_then(Value::as_str).is_none_or(|n| price(n, t).is_some()));
        for tool in tools.iter_mut() {
            let Some(name) = tool.get("name").and_then(Value::as_str).map(str::to_string) else { continue };
            if let (Some(Some(entries)), Value::Object(t)) = (price(&name, tool), &mut *tool) {
                let meta = t.entry("_meta").or_insert_with(|| Value::Object(Default::default()));
                if !meta.is_object() {
                    *meta = Value::Object(Default::default());
                }
                if let Value::Object(m) = meta {
                    m.extend(entries);
                }
            }
        }
    }
    message
}
