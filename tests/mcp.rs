//! MCP tools priced at the edge (docs/mcp.md), on the host fakes: x402's MCP transport
//! (`PaymentRequired` tool result, `_meta["x402/payment"]` in object and base64 form,
//! `_meta["x402/payment-response"]`), settlement only for a tool result that is not an error,
//! answers in JSON and SSE, and every fail-closed rule, each counting origin tool runs and
//! facilitator calls.

mod common;

use std::rc::Rc;

use base64::Engine;
use common::*;
use http::Request;
use serde_json::{json, Value};
use x402_edge_paywall::config::{Config, ToolPrice};

fn cfg_with(server: Value) -> Rc<Config> {
    config_vars(json!({ "MCP": [server] }))
}

fn cfg() -> Rc<Config> {
    cfg_with(json!({
        "path": "/mcp",
        "tools": { "search": "$0.01", "summarize": { "price": "$0.05", "description": "Summaries" }, "wipe": "deny", "echo": "free" },
        "default": "deny",
    }))
}

fn offer(cfg: &Config, tool: &str) -> x402_edge_paywall::x402::offer::Offer {
    match cfg.mcp[0].tool(tool) {
        ToolPrice::Priced(r) => r.accepts[0].clone(),
        _ => panic!("{tool} is not priced"),
    }
}

/// A `PaymentPayload` object for `tool`'s first offer.
fn payment(cfg: &Config, tool: &str, key: u8, nonce: u8) -> Value {
    let o = offer(cfg, tool);
    json!({ "x402Version": 2, "accepted": o.requirements_json, "payload": exact_payload_for(&o, key, nonce, 120) })
}

fn post(body: &[u8]) -> Request<Vec<u8>> {
    post_to("/mcp", body)
}

fn post_to(path: &str, body: &[u8]) -> Request<Vec<u8>> {
    Request::builder()
        .method("POST")
        .uri(format!("https://paywall.test{path}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", "session-1")
        .header("mcp-protocol-version", "2025-06-18")
        .body(body.to_vec())
        .unwrap()
}

fn call(id: Value, name: &str, meta: Option<Value>) -> Vec<u8> {
    let mut params = json!({ "name": name, "arguments": { "q": "rust", "big": "BIG" } });
    if let Some(m) = meta {
        params["_meta"] = m;
    }
    // A number no f64 holds exactly: it must reach the tool as written.
    json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params }).to_string().replace("\"BIG\"", "12345678901234567890123.50").into_bytes()
}

/// A tool result answering the call the origin got (the fake origin fills in its id).
fn echo_result(is_error: bool) -> Vec<u8> {
    json!({ "jsonrpc": "2.0", "id": "$id", "result": { "content": [{ "type": "text", "text": "found it" }], "isError": is_error } }).to_string().into_bytes()
}

fn tool_result(id: u64, is_error: bool) -> Vec<u8> {
    json!({ "jsonrpc": "2.0", "id": id, "result": { "content": [{ "type": "text", "text": "found it" }], "isError": is_error } }).to_string().into_bytes()
}

fn origin_answers(p: &Fake, body: Vec<u8>) {
    *p.origin_body.borrow_mut() = Some(body);
    p.origin_response_headers.borrow_mut().push(("content-type", "application/json".into()));
}

fn refused(res: &http::Response<Vec<u8>>) -> (u16, i64, String) {
    let v = body_json(res);
    (res.status().as_u16(), v["error"]["code"].as_i64().unwrap_or(0), v["error"]["message"].as_str().unwrap_or("").to_string())
}

#[test]
fn an_unpaid_priced_call_gets_the_payment_required_tool_result_and_never_reaches_the_origin() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    let res = run(&cfg, &p, post(&call(json!(1), "search", None)));
    assert_eq!(res.status(), 200);
    let v = body_json(&res);
    assert_eq!(v["id"], 1);
    let result = &v["result"];
    assert_eq!(result["isError"], true);
    let pr = &result["structuredContent"];
    assert_eq!(pr["x402Version"], 2);
    assert_eq!(pr["resource"]["url"], "mcp://tool/search");
    assert_eq!(pr["accepts"][0]["amount"], "10000");
    let text: Value = serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(&text, pr, "content[0].text is the same PaymentRequired");
    assert_eq!(&result["_meta"]["x402/error"], pr, "where Cloudflare's agents client reads it");
    assert_eq!((p.origin_hits(), p.settles(), p.verifies()), (0, 0, 0));
}

#[test]
fn a_paid_call_runs_the_tool_once_without_the_payment_and_settles_once() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    origin_answers(&p, echo_result(false));
    let meta = json!({ "progressToken": "tok", "x402/payment": payment(&cfg, "search", 1, 1) });
    let res = run(&cfg, &p, post(&call(json!(7), "search", Some(meta))));
    assert_eq!(res.status(), 200);
    let v = body_json(&res);
    assert_eq!(v["result"]["content"][0]["text"], "found it");
    let settled = &v["result"]["_meta"]["x402/payment-response"];
    assert_eq!(settled["success"], true);
    assert_eq!(settled["transaction"], tx(1));
    assert_eq!((p.origin_hits(), p.settles()), (1, 1));
    let calls = p.origin_calls.borrow();
    let sent: Value = serde_json::from_slice(calls[0].body()).unwrap();
    assert!(sent["params"]["_meta"].get("x402/payment").is_none(), "the payment is not forwarded");
    assert_eq!(sent["params"]["_meta"]["progressToken"], "tok", "the rest of _meta is kept");
    assert!(String::from_utf8_lossy(calls[0].body()).contains("12345678901234567890123.50"), "arguments are forwarded as written");
    assert!(calls[0].headers().get("payment-signature").is_none());
    assert_eq!(calls[0].headers()["mcp-session-id"], "session-1");
    assert!(res.headers().get("payment-response").is_none(), "the settlement travels in _meta");
}

#[test]
fn the_base64_string_form_of_the_payment_is_accepted() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    origin_answers(&p, echo_result(false));
    let encoded = base64::engine::general_purpose::STANDARD.encode(payment(&cfg, "summarize", 2, 2).to_string());
    let res = run(&cfg, &p, post(&call(json!(2), "summarize", Some(json!({ "x402/payment": encoded })))));
    assert_eq!(body_json(&res)["result"]["_meta"]["x402/payment-response"]["success"], true);
    assert_eq!((p.origin_hits(), p.settles()), (1, 1));
    let sent: Value = serde_json::from_slice(p.origin_calls.borrow()[0].body()).unwrap();
    assert!(sent["params"].get("_meta").is_none(), "an emptied _meta is removed");
}

#[test]
fn a_tool_error_or_a_json_rpc_error_is_not_charged_and_the_payment_can_be_used_again() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    origin_answers(&p, echo_result(true));
    let pay = json!({ "x402/payment": payment(&cfg, "search", 3, 3) });
    let res = run(&cfg, &p, post(&call(json!(3), "search", Some(pay.clone()))));
    assert_eq!(res.status(), 200);
    let v = body_json(&res);
    assert_eq!(v["result"]["isError"], true);
    assert_eq!(v["result"]["content"][0]["text"], "found it", "the tool's own error is passed on");
    assert!(v["result"].get("_meta").is_none());
    assert_eq!((p.origin_hits(), p.settles()), (1, 0));

    *p.origin_body.borrow_mut() = Some(json!({ "jsonrpc": "2.0", "id": "$id", "error": { "code": -32603, "message": "boom" } }).to_string().into_bytes());
    let res = run(&cfg, &p, post(&call(json!(3), "search", Some(pay.clone()))));
    assert_eq!(body_json(&res)["error"]["message"], "boom");
    assert_eq!((p.origin_hits(), p.settles()), (2, 0), "released: the same payment runs the tool again");

    origin_answers(&p, echo_result(false));
    let res = run(&cfg, &p, post(&call(json!(3), "search", Some(pay))));
    assert_eq!(body_json(&res)["result"]["_meta"]["x402/payment-response"]["success"], true);
    assert_eq!((p.origin_hits(), p.settles()), (3, 1));
}

#[test]
fn a_replayed_payment_runs_the_tool_once() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    origin_answers(&p, echo_result(false));
    let pay = json!({ "x402/payment": payment(&cfg, "search", 4, 4) });
    let first = run(&cfg, &p, post(&call(json!(4), "search", Some(pay.clone()))));
    assert_eq!(body_json(&first)["result"]["_meta"]["x402/payment-response"]["success"], true);
    let again = run(&cfg, &p, post(&call(json!(4), "search", Some(pay))));
    let v = body_json(&again);
    assert_eq!(v["result"]["isError"], true);
    assert!(v["result"]["structuredContent"]["error"].as_str().unwrap().contains("invalid_transaction_state"), "{v}");
    assert_eq!((p.origin_hits(), p.settles()), (1, 1));
}

#[test]
fn a_payment_for_too_little_is_refused_with_the_payment_required_result() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    // A $0.01 payment (search) for a $0.05 tool (summarize).
    let res = run(&cfg, &p, post(&call(json!(5), "summarize", Some(json!({ "x402/payment": payment(&cfg, "search", 5, 5) })))));
    let v = body_json(&res);
    assert_eq!(v["result"]["isError"], true);
    assert_eq!(v["result"]["structuredContent"]["accepts"][0]["amount"], "50000");
    assert!(!v["result"]["structuredContent"]["error"].as_str().unwrap().is_empty());
    assert_eq!((p.origin_hits(), p.settles(), p.verifies()), (0, 0, 0));
}

#[test]
fn a_refused_settlement_returns_the_payment_error_only() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    origin_answers(&p, echo_result(false));
    p.queue_settle(reply(200, r#"{"success":false,"errorReason":"insufficient_funds","transaction":"","network":"eip155:84532"}"#));
    let res = run(&cfg, &p, post(&call(json!(6), "search", Some(json!({ "x402/payment": payment(&cfg, "search", 6, 6) })))));
    let v = body_json(&res);
    assert_eq!(v["result"]["isError"], true);
    assert!(v["result"]["structuredContent"]["accepts"].is_array());
    assert_eq!(v["result"]["_meta"]["x402/payment-response"]["success"], false);
    assert!(!v.to_string().contains("found it"), "the tool's output is withheld: {v}");
    assert_eq!((p.origin_hits(), p.settles()), (1, 1));
}

#[test]
fn an_unknown_settlement_outcome_is_said_as_such() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    origin_answers(&p, echo_result(false));
    p.queue_settle(reply(500, "internal"));
    let res = run(&cfg, &p, post(&call(json!(8), "search", Some(json!({ "x402/payment": payment(&cfg, "search", 8, 8) })))));
    let v = body_json(&res);
    assert_eq!(v["error"]["code"], -32000);
    assert_eq!(v["error"]["data"]["error"], "settlement_outcome_unknown", "{v}");
    assert!(v["error"]["data"]["httpStatus"].as_u64().unwrap() >= 500);
    assert!(!v.to_string().contains("found it"));
}

#[test]
fn an_sse_answer_is_settled_and_its_other_events_kept() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    let progress = json!({ "jsonrpc": "2.0", "method": "notifications/progress", "params": { "progressToken": "tok", "progress": 1 } });
    let sse = format!("event: message\ndata: {progress}\n\nevent: message\nid: e2\ndata: {}\n\n", String::from_utf8(echo_result(false)).unwrap());
    *p.origin_body.borrow_mut() = Some(sse.into_bytes());
    p.origin_response_headers.borrow_mut().push(("content-type", "text/event-stream".into()));
    let res = run(&cfg, &p, post(&call(json!(9), "search", Some(json!({ "x402/payment": payment(&cfg, "search", 9, 9) })))));
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let text = String::from_utf8(res.body().clone()).unwrap();
    let events = x402_edge_paywall::mcp::answer::events(&text);
    assert_eq!(events.len(), 2);
    assert_eq!(serde_json::from_str::<Value>(&events[0].data).unwrap(), progress);
    assert!(events[1].lines.contains(&"id: e2".to_string()));
    let answer: Value = serde_json::from_str(&events[1].data).unwrap();
    assert_eq!(answer["result"]["_meta"]["x402/payment-response"]["success"], true);
    assert_eq!((p.origin_hits(), p.settles()), (1, 1));
}

#[test]
fn an_answer_without_the_response_to_the_call_is_not_charged() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    for (body, ct) in [
        (b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":99,\"result\":{}}\n\n".to_vec(), "text/event-stream"),
        (tool_result(99, false), "application/json"),
        (b"<html>oops</html>".to_vec(), "text/html"),
    ] {
        *p.origin_body.borrow_mut() = Some(body);
        *p.origin_response_headers.borrow_mut() = vec![("content-type", ct.into())];
        let res = run(&cfg, &p, post(&call(json!(10), "search", Some(json!({ "x402/payment": payment(&cfg, "search", 10, 10) })))));
        let (status, code, message) = refused(&res);
        assert_eq!((status, code), (200, -32000));
        assert!(message.contains("nothing was charged"), "{message}");
    }
    assert_eq!((p.origin_hits(), p.settles()), (3, 0));
}

/// Every hostile message: refused with a JSON-RPC error, the origin never called.
#[test]
fn hostile_messages_are_refused_before_the_origin() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    let pay = payment(&cfg, "search", 11, 11);
    let cases: Vec<(&str, Vec<u8>, u16, i64)> = vec![
        ("batch", format!("[{}]", String::from_utf8(call(json!(1), "search", None)).unwrap()).into_bytes(), 400, -32600),
        ("batch with a free call", format!("[{}]", String::from_utf8(call(json!(1), "echo", None)).unwrap()).into_bytes(), 400, -32600),
        ("duplicate method", br#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"search"}}"#.to_vec(), 400, -32600),
        ("duplicate name", br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"search"}}"#.to_vec(), 400, -32600),
        ("duplicate id", br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"echo"}}"#.to_vec(), 400, -32600),
        ("duplicate payment", format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"search","_meta":{{"x402/payment":{pay},"x402/payment":{{}}}}}}}}"#).into_bytes(), 400, -32600),
        ("a tools/call notification", br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"search"}}"#.to_vec(), 400, -32600),
        ("a free tools/call notification", br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo"}}"#.to_vec(), 400, -32600),
        ("another case", br#"{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"search"}}"#.to_vec(), 200, -32601),
        ("a padded method", br#"{"jsonrpc":"2.0","id":1,"method":"tools/call ","params":{"name":"search"}}"#.to_vec(), 200, -32601),
        ("another tools method", br#"{"jsonrpc":"2.0","id":1,"method":"tools/run","params":{"name":"search"}}"#.to_vec(), 200, -32601),
        ("not JSON", b"{\"jsonrpc\":".to_vec(), 400, -32700),
        ("trailing bytes", format!("{} x", String::from_utf8(call(json!(1), "search", None)).unwrap()).into_bytes(), 400, -32700),
        ("a string", b"\"tools/call\"".to_vec(), 400, -32600),
        ("no jsonrpc", br#"{"id":1,"method":"tools/call","params":{"name":"search"}}"#.to_vec(), 200, -32600),
        ("a null id", br#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"search"}}"#.to_vec(), 400, -32600),
        ("a float id", br#"{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"search"}}"#.to_vec(), 400, -32600),
        ("method and result", br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","result":{},"params":{"name":"search"}}"#.to_vec(), 200, -32600),
        ("no params", br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#.to_vec(), 200, -32602),
        ("a numeric name", br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}"#.to_vec(), 200, -32602),
        ("a numeric payment", br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","_meta":{"x402/payment":1}}}"#.to_vec(), 200, -32602),
        ("a pass that is not a string", br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","_meta":{"x402/pass":{"token":"t"}}}}"#.to_vec(), 200, -32602),
        ("a sign-in that is not a string", br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","_meta":{"x402/sign-in-with-x":1}}}"#.to_vec(), 200, -32602),
        ("duplicate pass", br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","_meta":{"x402/pass":"a","x402/pass":"b"}}}"#.to_vec(), 400, -32600),
        // Case variants: one member to a case-insensitive server (Go's encoding/json keeps the
        // last; ſ and the Kelvin sign fold to s and k), so the paywall would judge another
        // method or tool than the server runs.
        ("name and Name", br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Name":"search"}}"#.to_vec(), 400, -32600),
        ("a lone NAME naming a denied tool", br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","NAME":"wipe"}}"#.to_vec(), 400, -32600),
        ("method and Method", br#"{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call","params":{"name":"search"}}"#.to_vec(), 400, -32600),
        ("a response with a Method", br#"{"jsonrpc":"2.0","id":1,"result":{},"Method":"tools/call","params":{"name":"search"}}"#.to_vec(), 400, -32600),
        ("params and paramſ", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"},\"param\u{17F}\":{\"name\":\"search\"}}".as_bytes().to_vec(), 400, -32600),
        ("a paid call with a paramſ naming a dearer tool", format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{{\"name\":\"search\",\"_meta\":{{\"x402/payment\":{pay}}}}},\"param\u{17F}\":{{\"name\":\"summarize\"}}}}").into_bytes(), 400, -32600),
        ("a Kelvin-sign task", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"search\",\"tas\u{212A}\":{}}}".as_bytes().to_vec(), 400, -32600),
        ("a task-augmented call", br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","task":{}}}"#.to_vec(), 200, -32602),
        ("a denied tool", call(json!(1), "wipe", None), 200, -32001),
        ("another spelling (the default denies)", call(json!(1), "Search", None), 200, -32001),
        ("a trailing space (the default denies)", call(json!(1), "search ", None), 200, -32001),
        ("oversized", { let mut b = call(json!(1), "echo", None); b.extend(std::iter::repeat_n(b' ', 1 << 20)); b }, 413, -32600),
        ("an id a JavaScript server would round", br#"{"jsonrpc":"2.0","id":12345678901234567890,"method":"tools/call","params":{"name":"search"}}"#.to_vec(), 400, -32600),
        ("a negative id past 2^53", br#"{"jsonrpc":"2.0","id":-9007199254740992,"method":"tools/call","params":{"name":"search"}}"#.to_vec(), 400, -32600),
    ];
    for (what, body, status, code) in cases {
        let res = run(&cfg, &p, post(&body));
        let (s, c, message) = refused(&res);
        assert_eq!((s, c), (status, code), "{what}: {message}");
        assert!(!message.is_empty(), "{what}");
    }
    assert_eq!((p.origin_hits(), p.settles(), p.verifies()), (0, 0, 0));
}

#[test]
fn free_tools_initialize_notifications_and_other_methods_pass_untouched() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    origin_answers(&p, tool_result(1, false));
    let bodies: Vec<Vec<u8>> = vec![
        call(json!(1), "echo", Some(json!({ "x402/payment": "ignored" }))),
        br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#.to_vec(),
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec(),
        br#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#.to_vec(),
        // Case variants inside arguments are the tool's business, not a member the paywall reads.
        br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"a":1,"A":2,"env":{"PATH":"/bin","path":"/usr/bin"}}}}"#.to_vec(),
        br#"{"jsonrpc":"2.0","id":5,"result":{"action":"accept"}}"#.to_vec(),
        br#"{"jsonrpc":"2.0","id":6,"method":"resources/read","params":{"uri":"file:///x"}}"#.to_vec(),
    ];
    for (i, body) in bodies.iter().enumerate() {
        let res = run(&cfg, &p, post(body));
        assert_eq!(res.status(), 200);
        assert_eq!(res.body(), &tool_result(1, false), "passed back as the origin sent it");
        let calls = p.origin_calls.borrow();
        assert_eq!(calls[i].body(), body, "forwarded byte for byte");
        assert_eq!(calls[i].headers()["mcp-session-id"], "session-1");
        assert_eq!(calls[i].headers()["mcp-protocol-version"], "2025-06-18");
    }
    for method in ["GET", "DELETE"] {
        let res = run(&cfg, &p, request_with(method, "/mcp", &[("mcp-session-id", "session-1")]));
        assert_eq!(res.status(), 200);
        assert_eq!(p.origin_calls.borrow().last().unwrap().method().as_str(), method);
    }
    assert_eq!((p.origin_hits(), p.settles(), p.verifies()), (bodies.len() + 2, 0, 0));
}

#[test]
fn tools_list_carries_each_priced_tool_s_payment_required_and_leaves_out_denied_tools() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    let tools = json!([
        { "name": "search", "description": "Search", "inputSchema": { "type": "object" } },
        { "name": "echo", "inputSchema": { "type": "object" } },
        { "name": "wipe", "inputSchema": { "type": "object" } },
        { "name": "other", "inputSchema": { "type": "object" } },
    ]);
    origin_answers(&p, json!({ "jsonrpc": "2.0", "id": 3, "result": { "tools": tools } }).to_string().into_bytes());
    let res = run(&cfg, &p, post(br#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#));
    let v = body_json(&res);
    let listed = v["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = listed.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["search", "echo"], "denied tools (named, or by the default) are left out");
    let pr = &listed[0]["_meta"]["x402/payment-required"];
    assert_eq!(pr["accepts"][0]["amount"], "10000");
    assert_eq!(pr["resource"]["url"], "mcp://tool/search");
    assert_eq!(pr["extensions"]["bazaar"]["info"]["input"], json!({ "type": "mcp", "tool": "search", "transport": "streamable-http", "description": "Search", "inputSchema": { "type": "object" } }));
    assert!(listed[1].get("_meta").is_none(), "a free tool is left as it is");
    assert_eq!((&listed[0]["_meta"]["agents-x402/paymentRequired"], &listed[0]["_meta"]["agents-x402/priceUSD"]), (&json!(true), &json!(0.01)));
    assert_eq!((p.origin_hits(), p.settles()), (1, 0));
}

#[test]
fn the_default_price_applies_to_tools_not_named() {
    let cfg = cfg_with(json!({ "path": "/mcp", "tools": { "echo": "free" }, "default": "$0.02" }));
    let p = Rc::new(fake());
    let res = run(&cfg, &p, post(&call(json!(1), "anything", None)));
    assert_eq!(body_json(&res)["result"]["structuredContent"]["accepts"][0]["amount"], "20000");
    assert_eq!(p.origin_hits(), 0);
}

#[test]
fn a_server_with_nothing_priced_is_a_plain_pass_through() {
    let cfg = cfg_with(json!({ "path": "/mcp", "tools": { "echo": "free" } }));
    let p = Rc::new(fake());
    let res = run(&cfg, &p, post(b"[not even json"));
    assert_eq!(res.status(), 200);
    assert_eq!(p.origin_hits(), 1);
}

#[test]
fn mcp_configuration_errors_name_the_entry() {
    let vars = |server: Value| {
        let mut v = json!({ "ORIGIN_URL": "https://origin.test", "FACILITATOR_URL": "https://facilitator.test", "PAY_TO": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "ROUTES": [{ "route": "GET /paid", "price": "$0.01" }] });
        v["MCP"] = json!([server]);
        Config::from_vars(v.as_object().unwrap()).err().map(|e| e.0).unwrap_or_default()
    };
    assert!(vars(json!({ "path": "/mcp", "tools": { "s": { "price": "$0.01", "group": "g" } } })).contains("MCP[0] (/mcp) tools.`s`"));
    assert!(vars(json!({ "path": "/mcp", "tools": { "s": "ten dollars" } })).starts_with("MCP[0] (/mcp) tools.`s`"), "{}", vars(json!({ "path": "/mcp", "tools": { "s": "ten dollars" } })));
    assert!(vars(json!({ "path": "mcp" })).contains("canonical absolute path"));
    assert!(vars(json!({ "path": "/paid" })).contains("also covered by the priced route"));
    assert!(vars(json!({ "path": "/mcp", "tool": {} })).contains("unknown key"));
    assert!(vars(json!({ "path": "/mcp", "tools": { "s": { "price": "$0.01", "settle": "before" } } })).contains("settles after"));
    assert_eq!(vars(json!({ "path": "/mcp", "tools": { "s": "$0.01" }, "default": "deny" })), "");
}

#[test]
fn the_well_known_document_lists_the_priced_tools() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    let res = run(&cfg, &p, request("/.well-known/x402", &[]));
    let items = body_json(&res)["items"].as_array().unwrap().clone();
    let tools: Vec<(String, String)> = items.iter().filter(|i| i["type"] == "mcp").map(|i| (i["tool"].as_str().unwrap().to_string(), i["accepts"][0]["amount"].as_str().unwrap().to_string())).collect();
    assert_eq!(tools, [("search".to_string(), "10000".to_string()), ("summarize".into(), "50000".into())], "free and denied tools are not listed");
    let search = items.iter().find(|i| i["tool"] == "search").unwrap();
    assert_eq!((search["path"].as_str(), search["resource"].as_str()), (Some("/mcp"), Some("mcp://tool/search")));
    assert_eq!(p.origin_hits(), 0);
}

#[test]
fn every_spelling_of_the_path_a_route_would_match_is_the_mcp_server() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    for path in ["/MCP", "/mcp/", "/mcp;x=1", "/%6dcp", "//mcp", "/a/../mcp"] {
        let res = run(&cfg, &p, post_to(path, &call(json!(1), "search", None)));
        assert_eq!(body_json(&res)["result"]["isError"], true, "{path}");
        assert!(body_json(&res)["result"]["structuredContent"]["accepts"].is_array(), "{path}");
    }
    assert_eq!(p.origin_hits(), 0);
}

#[test]
fn a_call_sent_with_another_method_than_post_is_still_read() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    for method in ["PUT", "PATCH", "post"] {
        let mut req = post(&call(json!(1), "search", None));
        *req.method_mut() = http::Method::from_bytes(method.as_bytes()).unwrap();
        let res = run(&cfg, &p, req);
        assert_eq!(body_json(&res)["result"]["isError"], true, "{method}");
    }
    assert_eq!(p.origin_hits(), 0);
}

#[test]
fn concurrent_copies_of_one_payment_run_the_tool_once() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    origin_answers(&p, echo_result(false));
    let body = call(json!(12), "search", Some(json!({ "x402/payment": payment(&cfg, "search", 12, 12) })));
    let answers = run_all(&cfg, &p, vec![post(&body), post(&body)]);
    let paid = answers.iter().filter(|r| body_json(r)["result"]["_meta"]["x402/payment-response"]["success"] == true).count();
    let in_flight = answers.iter().filter(|r| body_json(r)["error"]["data"]["error"] == "payment_in_flight").count();
    assert_eq!((paid, in_flight), (1, 1), "{:?}", answers.iter().map(body_json).collect::<Vec<_>>());
    assert_eq!((p.origin_hits(), p.settles()), (1, 1));
}

#[test]
fn a_ledger_outage_forwards_nothing_and_says_nothing_was_charged() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    p.ledger_down.set(true);
    let res = run(&cfg, &p, post(&call(json!(13), "search", Some(json!({ "x402/payment": payment(&cfg, "search", 13, 13) })))));
    let v = body_json(&res);
    assert_eq!((v["error"]["code"].as_i64(), v["error"]["data"]["httpStatus"].as_u64()), (Some(-32000), Some(503)));
    assert!(v["error"]["message"].as_str().unwrap().contains("nothing was charged"), "{v}");
    assert_eq!((p.origin_hits(), p.settles()), (0, 0));
}

#[test]
fn a_paid_call_forwards_no_payment_pass_or_sign_in_carrier() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    origin_answers(&p, echo_result(false));
    let mut req = post(&call(json!(14), "search", Some(json!({ "x402/payment": payment(&cfg, "search", 14, 14) }))));
    for (k, v) in [("x402-pass", "p"), ("cookie", "x402_pass=p; keep=1"), ("x-payment", "x"), ("sign-in-with-x", "s")] {
        req.headers_mut().insert(k, v.parse().unwrap());
    }
    let res = run(&cfg, &p, req);
    assert_eq!(body_json(&res)["result"]["_meta"]["x402/payment-response"]["success"], true);
    let calls = p.origin_calls.borrow();
    let h = calls[0].headers();
    assert!(["x402-pass", "x-payment", "sign-in-with-x", "payment-signature"].iter().all(|n| h.get(*n).is_none()));
    assert_eq!(h["cookie"], "keep=1");
    assert_eq!(p.kv_gets.get(), 0, "a token that is not token-shaped is never looked up");
}

/// Where the platform relays a body (the edge), an SSE answer's other events go to the client
/// first and the held response, given its settlement, is the last event.
#[test]
fn a_relayed_sse_answer_sends_progress_first_and_the_settled_response_last() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    p.relay_on.set(true);
    let progress = json!({ "jsonrpc": "2.0", "method": "notifications/progress", "params": { "progressToken": "tok", "progress": 1 } });
    let sse = format!("event: message\ndata: {progress}\n\nevent: message\nid: e2\ndata: {}\n\n", String::from_utf8(echo_result(false)).unwrap());
    *p.origin_body.borrow_mut() = Some(sse.into_bytes());
    p.origin_response_headers.borrow_mut().push(("content-type", "text/event-stream".into()));
    p.origin_response_headers.borrow_mut().push(("settlement-overrides", r#"{"amount":"1"}"#.into()));
    let res = run(&cfg, &p, post(&call(json!(15), "search", Some(json!({ "x402/payment": payment(&cfg, "search", 15, 15) })))));
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert!(res.headers().get("settlement-overrides").is_none(), "the relayed head carries no upto report");
    assert!(res.body().is_empty(), "the body is the relay");
    let text = String::from_utf8(p.relayed.borrow().clone()).unwrap();
    let events = x402_edge_paywall::mcp::answer::events(&text);
    assert_eq!(events.len(), 2, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&events[0].data).unwrap(), progress);
    assert!(events[1].lines.contains(&"id: e2".to_string()));
    let answer: Value = serde_json::from_str(&events[1].data).unwrap();
    assert_eq!(answer["result"]["_meta"]["x402/payment-response"]["success"], true);
    assert!(p.relay_closed.get());
    assert_eq!((p.origin_hits(), p.settles()), (1, 1));
}

#[test]
fn a_relayed_answer_whose_settlement_is_refused_ends_with_the_payment_error_only() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    p.relay_on.set(true);
    p.queue_settle(reply(200, r#"{"success":false,"errorReason":"insufficient_funds","transaction":"","network":"eip155:84532"}"#));
    let sse = format!("event: message\ndata: {}\n\n", String::from_utf8(echo_result(false)).unwrap());
    *p.origin_body.borrow_mut() = Some(sse.into_bytes());
    p.origin_response_headers.borrow_mut().push(("content-type", "text/event-stream".into()));
    let res = run(&cfg, &p, post(&call(json!(16), "search", Some(json!({ "x402/payment": payment(&cfg, "search", 16, 16) })))));
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let text = String::from_utf8(p.relayed.borrow().clone()).unwrap();
    assert!(!text.contains("found it"), "the held result is withheld: {text}");
    let events = x402_edge_paywall::mcp::answer::events(&text);
    assert_eq!(events.len(), 1);
    let last: Value = serde_json::from_str(&events[0].data).unwrap();
    assert_eq!((last["id"].as_u64(), last["result"]["isError"].as_bool()), (Some(16), Some(true)));
    assert_eq!(last["result"]["_meta"]["x402/payment-response"]["success"], false);
    assert!(p.relay_closed.get());
}

/// A paid call's answer is read while its payment is held: the origin's time limit covers the
/// whole answer, not only its head (a slower tool is unanswered and not charged, instead of
/// outliving its lease); a free call passes through unbounded.
#[test]
fn the_origin_time_limit_covers_a_paid_call_s_whole_answer() {
    use x402_edge_paywall::gateway::WholeAnswer;
    let (cfg, p) = (cfg(), Rc::new(fake()));
    origin_answers(&p, echo_result(false));
    let res = run(&cfg, &p, post(&call(json!(1), "search", Some(json!({ "x402/payment": payment(&cfg, "search", 50, 50) })))));
    assert_eq!(body_json(&res)["result"]["_meta"]["x402/payment-response"]["success"], true);
    assert!(p.origin_calls.borrow()[0].extensions().get::<WholeAnswer>().is_some());
    run(&cfg, &p, post(&call(json!(2), "echo", None)));
    assert!(p.origin_calls.borrow()[1].extensions().get::<WholeAnswer>().is_none());
}

/// A priced MCP server is a priced route: a segment of only `;` parameters in front of its path
/// (`/;x/mcp`, which an Express origin could route as `/:tenant/mcp`) is refused, and its answers
/// carry the paywall's CORS policy, not the origin's.
#[test]
fn a_priced_server_s_path_and_answers_follow_the_priced_route_rules() {
    let cfg = config_vars(json!({
        "CORS_ALLOWED_ORIGINS": "https://app.example",
        "ROUTES": [{ "route": "GET /:tenant/mcp", "price": "$0.01" }],
        "MCP": [{ "path": "/mcp", "tools": { "search": "$0.01", "echo": "free" } }],
    }));
    let p = Rc::new(fake());
    for method in ["GET", "DELETE", "POST"] {
        let res = run(&cfg, &p, request_with(method, "/;x/mcp", &[]));
        assert_eq!(res.status(), 400, "{method}");
        assert_eq!(body_json(&res)["error"], "invalid_path");
    }
    assert_eq!(p.origin_hits(), 0);
    origin_answers(&p, echo_result(false));
    p.origin_response_headers.borrow_mut().push(("access-control-allow-origin", "https://evil.example".into()));
    p.origin_response_headers.borrow_mut().push(("access-control-allow-credentials", "true".into()));
    let offer = match cfg.mcp[0].tool("search") { ToolPrice::Priced(r) => r.accepts[0].clone(), _ => unreachable!() };
    let pay = json!({ "x402Version": 2, "accepted": offer.requirements_json, "payload": exact_payload_for(&offer, 51, 51, 120) });
    let mut req = post(&call(json!(1), "search", Some(json!({ "x402/payment": pay }))));
    req.headers_mut().insert("origin", "https://evil.example".parse().unwrap());
    let res = run(&cfg, &p, req);
    assert_eq!(body_json(&res)["result"]["_meta"]["x402/payment-response"]["success"], true);
    assert!(res.headers().get("access-control-allow-origin").is_none());
    assert!(res.headers().get("access-control-allow-credentials").is_none());
}

/// An SSE event that answers the paid call but does not parse here (JavaScript's JSON.parse
/// accepts a lone surrogate escape and any depth; serde_json refuses both) is held, not relayed:
/// relayed, it was the tool's output delivered with nothing charged, again for every copy of the
/// payment. Held, the call is unanswered: nothing charged, the client gets no output, the payment
/// stays usable.
#[test]
fn a_relayed_response_that_does_not_parse_here_is_held_not_delivered_unpaid() {
    let deep = format!("{}{}", "[".repeat(130), "]".repeat(130));
    let answers = [
        r#"{"jsonrpc":"2.0","id":"$id","result":{"content":[{"type":"text","text":"TOOL OUTPUT \ud83d"}]}}"#.to_string(),
        format!(r#"{{"jsonrpc":"2.0","id":"$id","result":{{"content":[{{"type":"text","text":"TOOL OUTPUT"}}],"structuredContent":{{"tree":{deep}}}}}}}"#),
    ];
    for (n, data) in answers.iter().enumerate() {
        let (cfg, p) = (cfg(), Rc::new(fake()));
        p.relay_on.set(true);
        let progress = json!({ "jsonrpc": "2.0", "method": "notifications/progress", "params": { "progressToken": "tok", "progress": 1 } });
        *p.origin_body.borrow_mut() = Some(format!("event: message\ndata: {progress}\n\nevent: message\ndata: {data}\n\n").into_bytes());
        p.origin_response_headers.borrow_mut().push(("content-type", "text/event-stream".into()));
        let key = 40 + n as u8;
        let body = call(json!(1), "search", Some(json!({ "x402/payment": payment(&cfg, "search", key, key) })));
        for attempt in 1..=2 {
            p.relayed.borrow_mut().clear();
            p.relay_closed.set(false);
            let _ = run(&cfg, &p, post(&body));
            let relayed = String::from_utf8_lossy(&p.relayed.borrow()).to_string();
            assert!(!relayed.contains("TOOL OUTPUT"), "case {n} attempt {attempt}: {relayed}");
            assert!(relayed.contains("notifications/progress"), "other events are still relayed: {relayed}");
            assert!(!relayed.contains("x402-"), "the paywall's id never reaches the client: {relayed}");
            assert_eq!((p.origin_hits(), p.settles()), (attempt, 0), "case {n}");
        }
    }
}

/// The origin gets a paid call under an id of the paywall's own (fresh, unguessable), so no other
/// message of the client's can name it: a second request with the same id (the SDK maps answers
/// by id) or `notifications/cancelled` for it would end the paid call without an answer, the
/// tool run and nothing charged. The client gets its own id back, in JSON and in a relayed stream.
#[test]
fn a_paid_call_reaches_the_origin_under_an_id_of_the_paywall_s_own() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    origin_answers(&p, echo_result(false));
    for (n, id) in [(20u8, json!(7)), (21, json!(7)), (22, json!("x402-00"))] {
        let res = run(&cfg, &p, post(&call(id.clone(), "search", Some(json!({ "x402/payment": payment(&cfg, "search", n, n) })))));
        let v = body_json(&res);
        assert_eq!((&v["id"], &v["result"]["_meta"]["x402/payment-response"]["success"]), (&id, &json!(true)), "{v}");
    }
    let seen: Vec<Value> = p.origin_calls.borrow().iter().map(|r| serde_json::from_slice::<Value>(r.body()).unwrap()["id"].clone()).collect();
    assert_eq!(seen.len(), 3);
    for (i, id) in seen.iter().enumerate() {
        let id = id.as_str().unwrap_or_default();
        assert!(id.starts_with("x402-") && id.len() == 5 + 32, "{id}");
        assert!(!seen[..i].contains(&seen[i]), "a fresh id per call: {seen:?}");
    }
    // Relayed: the held response goes out with the client's id.
    p.relay_on.set(true);
    *p.origin_response_headers.borrow_mut() = vec![("content-type", "text/event-stream".into())];
    *p.origin_body.borrow_mut() = Some(format!("event: message\ndata: {}\n\n", String::from_utf8(echo_result(false)).unwrap()).into_bytes());
    run(&cfg, &p, post(&call(json!("mine"), "search", Some(json!({ "x402/payment": payment(&cfg, "search", 23, 23) })))));
    let text = String::from_utf8(p.relayed.borrow().clone()).unwrap();
    let last: Value = serde_json::from_str(&x402_edge_paywall::mcp::answer::events(&text)[0].data).unwrap();
    assert_eq!((&last["id"], &last["result"]["content"][0]["text"]), (&json!("mine"), &json!("found it")));
    assert_eq!((p.origin_hits(), p.settles()), (4, 4));
}

/// On a priced server no stream is resumed: `Last-Event-ID` never reaches the origin (one that
/// keeps an event store would replay a paid call's result to it, whatever became of the
/// payment); `_method` in the query is refused as on a priced route. A server with nothing
/// priced keeps both.
#[test]
fn a_priced_server_resumes_no_stream_and_refuses_a_method_override() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    for method in ["GET", "POST"] {
        let mut req = post(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}");
        *req.method_mut() = method.parse().unwrap();
        req.headers_mut().insert("last-event-id", "stream-1_1700000000000_abc".parse().unwrap());
        run(&cfg, &p, req);
    }
    assert_eq!(p.origin_hits(), 2);
    assert!(p.origin_calls.borrow().iter().all(|r| r.headers().get("last-event-id").is_none()));
    for uri in ["https://paywall.test/mcp?_method=GET", "https://paywall.test/mcp?%5Fmethod=GET"] {
        let mut req = post(&call(json!(1), "search", None));
        *req.uri_mut() = uri.parse().unwrap();
        let res = run(&cfg, &p, req);
        assert_eq!((res.status().as_u16(), body_json(&res)["error"].as_str()), (400, Some("method_override_refused")), "{uri}");
    }
    assert_eq!(p.origin_hits(), 2);
    let free = cfg_with(json!({ "path": "/mcp", "tools": { "echo": "free" } }));
    let p = Rc::new(fake());
    let mut req = post(b"{}");
    *req.method_mut() = http::Method::GET;
    req.headers_mut().insert("last-event-id", "e1".parse().unwrap());
    run(&free, &p, req);
    assert_eq!(p.origin_calls.borrow()[0].headers()["last-event-id"], "e1");
}

#[test]
fn a_name_written_with_escapes_is_the_same_tool() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    let res = run(&cfg, &p, post(br#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"\u0073earch"}}"#));
    assert_eq!(body_json(&res)["result"]["structuredContent"]["resource"]["url"], "mcp://tool/search");
    assert_eq!(p.origin_hits(), 0);
}

mod never_panics {
    use proptest::prelude::*;
    use serde_json::json;
    use x402_edge_paywall::mcp::answer::{events, find, EventSplitter};
    use x402_edge_paywall::mcp::{classify, for_origin};

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever a client POSTs, classifying it answers (a message or a refusal), never panics.
        #[test]
        fn classify_answers_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = classify(&bytes);
            let _ = for_origin(&bytes, &json!("x402-0"));
        }

        /// Messages close to a tools/call, with arbitrary names, ids and metas.
        #[test]
        fn classify_answers_near_calls(name in any::<String>(), id in any::<i64>(), meta in any::<String>(), method in "tools/[a-zA-Z ]{0,6}") {
            let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": { "name": name, "_meta": { "x402/payment": meta } } }).to_string();
            if let Ok(x402_edge_paywall::mcp::Message::ToolCall(call)) = classify(body.as_bytes()) {
                prop_assert_eq!(call.name, name);
                prop_assert!(for_origin(body.as_bytes(), &json!("x402-0")).is_ok());
            }
        }

        /// Whatever an origin answers, finding the response and splitting events never panics.
        #[test]
        fn answers_are_read_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..512), cut in 0usize..512) {
            let _ = find(Some("text/event-stream"), &bytes, &json!(1));
            let _ = find(Some("application/json"), &bytes, &json!(1));
            let _ = events(&String::from_utf8_lossy(&bytes));
            let mut s = EventSplitter::default();
            let cut = cut.min(bytes.len());
            let _ = s.push(&bytes[..cut]);
            let _ = s.push(&bytes[cut..]);
        }

        /// Events come out the same however the stream is cut into chunks (one byte at a time,
        /// two pieces, or whole).
        #[test]
        fn events_do_not_depend_on_how_the_stream_is_chunked(pieces in proptest::collection::vec(prop::sample::select(vec!["\n", "\r", "\r\n", "\n\n", "data: x", "data: {}", ": c", "id: 1", "é"]), 0..40), cut in 0usize..200) {
            let bytes = pieces.concat().into_bytes();
            let whole = EventSplitter::default().push(&bytes);
            let mut one = EventSplitter::default();
            let by_byte: Vec<String> = bytes.iter().flat_map(|b| one.push(std::slice::from_ref(b))).collect();
            let cut = cut.min(bytes.len());
            let mut two = EventSplitter::default();
            let mut halves = two.push(&bytes[..cut]);
            halves.extend(two.push(&bytes[cut..]));
            prop_assert_eq!(&by_byte, &whole);
            prop_assert_eq!(&halves, &whole);
        }
    }
}

#[test]
fn the_price_lines_name_each_tool() {
    let lines = cfg().price_lines();
    let tools: Vec<&String> = lines.iter().filter(|l| l.starts_with("POST /mcp tool:")).collect();
    assert_eq!(tools.len(), 5, "{lines:?}");
    assert!(tools.iter().any(|l| l.as_str() == "POST /mcp tool:echo: free"));
    assert!(tools.iter().any(|l| l.starts_with("POST /mcp tool:search: 0.01 USDC")));
    assert!(tools.iter().any(|l| l.as_str() == "POST /mcp tool:wipe: denied"));
    assert!(tools.iter().any(|l| l.as_str() == "POST /mcp tool:*: denied"));
}

#[test]
fn the_origin_reads_the_message_as_it_was_judged_never_in_another_charset_or_encoding() {
    let (cfg, p) = (cfg(), Rc::new(fake()));
    origin_answers(&p, tool_result(1, false));
    // `tools+AC8-call` is `tools/call` in UTF-7: judged as UTF-8 it is another method, so the
    // origin must not be told to read it as UTF-7.
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools+AC8-call","params":{"name":"search","arguments":{}}}"#;
    let mut req = post(body);
    req.headers_mut().insert("content-type", "application/json; charset=utf-7".parse().unwrap());
    run(&cfg, &p, req);
    let calls = p.origin_calls.borrow();
    assert_eq!(calls.len(), 1, "an unknown method is forwarded, as any other");
    assert_eq!(calls[0].headers()["content-type"], "application/json", "without the charset");
    drop(calls);
    let mut gz = post(&call(json!(2), "echo", None));
    gz.headers_mut().insert("content-encoding", "gzip".parse().unwrap());
    let res = run(&cfg, &p, gz);
    assert_eq!(res.status(), 415);
    assert_eq!(p.origin_hits(), 1, "an encoded message never reaches the origin");
}

// ---- Passes and wallet sign-in for tools (docs/mcp.md "Passes and sign-in") ----

const ADMIN: &str = "admin-token-0123456789abcdef0123456789";

/// `search` sells a pass for itself (`tool_pass`), `summarize` is priced alone, `echo` free,
/// `wipe` denied; a second server `/other` prices `search` too.
fn pass_cfg(tool_pass: Value) -> Rc<Config> {
    config_vars(json!({
        "ADMIN_TOKEN": ADMIN,
        "MCP": [
            { "path": "/mcp", "tools": { "search": { "price": "$0.01", "pass": tool_pass }, "summarize": "$0.01", "echo": "free", "wipe": "deny" } },
            { "path": "/mcp2", "tools": { "search": "$0.01" } },
        ],
    }))
}

/// A server whose pass opens every priced tool (`search`, `summarize` and the default).
fn server_pass_cfg() -> Rc<Config> {
    config_vars(json!({
        "MCP": [
            { "path": "/mcp", "pass": { "ttl": "1h", "maxRequests": 4 }, "default": "$0.01", "tools": { "search": "$0.01", "summarize": "$0.01", "echo": "free", "wipe": "deny" } },
            { "path": "/mcp2", "pass": { "ttl": "1h" }, "tools": { "search": "$0.01" } },
        ],
    }))
}

/// A paid call of `tool` on `path`: its answer and the pass it bought (`_meta["x402/pass"]`).
fn buy_pass(cfg: &Rc<Config>, p: &Rc<Fake>, path: &str, tool: &str, key: u8) -> (Value, String) {
    let i = cfg.mcp.iter().position(|s| s.path == path).unwrap();
    let o = match cfg.mcp[i].tool(tool) {
        ToolPrice::Priced(r) => r.accepts[0].clone(),
        _ => panic!("{tool} is not priced"),
    };
    let pay = json!({ "x402Version": 2, "accepted": o.requirements_json, "payload": exact_payload_for(&o, key, key, 120) });
    let res = run(cfg, p, post_to(path, &call(json!(1), tool, Some(json!({ "x402/payment": pay })))));
    assert!(res.headers().get("x402-pass").is_none() && res.headers().get("set-cookie").is_none(), "the pass travels in _meta only");
    let v = body_json(&res);
    assert_eq!(v["result"]["_meta"]["x402/payment-response"]["success"], true, "{v}");
    let token = v["result"]["_meta"]["x402/pass"].as_str().expect("a pass in result._meta").to_string();
    (v, token)
}

/// A call of `tool` on `path` presenting `token` in `_meta["x402/pass"]`.
fn with_pass(cfg: &Rc<Config>, p: &Rc<Fake>, path: &str, tool: &str, token: &str) -> Value {
    body_json(&run(cfg, p, post_to(path, &call(json!(2), tool, Some(json!({ "x402/pass": token, "progressToken": "t" }))))))
}

/// The reason a `PaymentRequired` tool result gives.
fn refusal_of(v: &Value) -> String {
    assert_eq!(v["result"]["isError"], true, "{v}");
    v["result"]["structuredContent"]["error"].as_str().unwrap_or("").to_string()
}

#[test]
fn a_tool_pass_bought_with_a_paid_call_runs_that_tool_without_payment_and_counts_its_calls() {
    let (cfg, p) = (pass_cfg(json!({ "ttl": "1h", "maxRequests": 4 })), Rc::new(fake()));
    origin_answers(&p, echo_result(false));
    let (paid, token) = buy_pass(&cfg, &p, "/mcp", "search", 21);
    assert_eq!(paid["result"]["_meta"]["x402/pass-expires"], NOW + 3600);
    assert_eq!(paid["result"]["content"][0]["text"], "found it");
    let facilitator = p.facilitator_calls.borrow().len();
    assert_eq!((p.origin_hits(), p.settles()), (1, 1));

    // In _meta (what every MCP client can send), then in the X402-Pass header (a Streamable HTTP
    // client's own header): each runs the tool once, with no payment and no facilitator call.
    let v = with_pass(&cfg, &p, "/mcp", "search", &token);
    assert_eq!(v["result"]["content"][0]["text"], "found it", "{v}");
    assert_eq!(v["result"]["_meta"]["x402/pass-expires"], NOW + 3600);
    assert!(v["result"]["_meta"].get("x402/payment-response").is_none());
    let mut req = post(&call(json!(3), "search", None));
    req.headers_mut().insert("x402-pass", token.parse().unwrap());
    assert_eq!(body_json(&run(&cfg, &p, req))["result"]["content"][0]["text"], "found it");
    assert_eq!((p.origin_hits(), p.settles(), p.facilitator_calls.borrow().len()), (3, 1, facilitator));

    // A tool error gives the call back (as a route's 5xx does): it is not one of the four.
    origin_answers(&p, echo_result(true));
    assert_eq!(with_pass(&cfg, &p, "/mcp", "search", &token)["result"]["content"][0]["text"], "found it");
    origin_answers(&p, echo_result(false));
    assert_eq!(with_pass(&cfg, &p, "/mcp", "search", &token)["result"]["content"][0]["text"], "found it");
    assert_eq!(p.origin_hits(), 5);
    // Four calls bought (the paid one first): the fifth is refused before the origin.
    let v = with_pass(&cfg, &p, "/mcp", "search", &token);
    assert!(refusal_of(&v).starts_with("pass_used_up"), "{v}");
    assert_eq!(v["result"]["structuredContent"]["accepts"][0]["amount"], "10000", "the PaymentRequired to pay again");
    assert_eq!((p.origin_hits(), p.settles(), p.facilitator_calls.borrow().len()), (5, 1, facilitator));
}

#[test]
fn a_tool_pass_never_runs_another_tool_or_another_server_s_tool() {
    let (cfg, p) = (pass_cfg(json!({ "ttl": "1h" })), Rc::new(fake()));
    origin_answers(&p, echo_result(false));
    let (_, token) = buy_pass(&cfg, &p, "/mcp", "search", 22);
    let facilitator = p.facilitator_calls.borrow().len();
    assert!(refusal_of(&with_pass(&cfg, &p, "/mcp", "summarize", &token)).starts_with("pass_out_of_scope"));
    assert!(refusal_of(&with_pass(&cfg, &p, "/mcp2", "search", &token)).starts_with("pass_out_of_scope"), "the same tool name on another server");
    assert_eq!(refused(&run(&cfg, &p, post(&call(json!(4), "wipe", Some(json!({ "x402/pass": token })))))).1, -32001, "a denied tool stays denied");
    // A route's pass opens no tool either.
    let routes = config_vars(json!({ "ROUTES": [{ "route": "GET /paid", "price": "$0.01", "pass": { "ttl": "1h" } }], "MCP": [{ "path": "/mcp", "tools": { "search": "$0.01" } }] }));
    let q = Rc::new(fake());
    let bought = run(&routes, &q, request("/paid", &[("payment-signature", &payment_with(&routes, 0, 23, 23, 120))]));
    let route_token = bought.headers()["x402-pass"].to_str().unwrap().to_string();
    assert!(refusal_of(&with_pass(&routes, &q, "/mcp", "search", &route_token)).starts_with("pass_out_of_scope"));
    assert_eq!(q.origin_hits(), 1, "only the paid route request");
    assert_eq!((p.origin_hits(), p.settles(), p.facilitator_calls.borrow().len()), (1, 1, facilitator));
}

#[test]
fn a_server_pass_opens_every_priced_tool_of_that_server_and_no_other_server() {
    let (cfg, p) = (server_pass_cfg(), Rc::new(fake()));
    origin_answers(&p, echo_result(false));
    let (paid, token) = buy_pass(&cfg, &p, "/mcp", "search", 24);
    assert!(paid["result"]["_meta"]["x402/pass-expires"].is_u64());
    let facilitator = p.facilitator_calls.borrow().len();
    for tool in ["search", "summarize", "unnamed (the default's price)"] {
        assert_eq!(with_pass(&cfg, &p, "/mcp", tool, &token)["result"]["content"][0]["text"], "found it", "{tool}");
    }
    assert_eq!((p.origin_hits(), p.settles(), p.facilitator_calls.borrow().len()), (4, 1, facilitator));
    assert!(refusal_of(&with_pass(&cfg, &p, "/mcp2", "search", &token)).starts_with("pass_out_of_scope"), "another server's tools");
    assert_eq!(refused(&run(&cfg, &p, post(&call(json!(4), "wipe", Some(json!({ "x402/pass": token })))))).1, -32001);
    // Four calls bought: three left after the paid one, all used.
    assert!(refusal_of(&with_pass(&cfg, &p, "/mcp", "summarize", &token)).starts_with("pass_used_up"));
    assert_eq!((p.origin_hits(), p.settles(), p.facilitator_calls.borrow().len()), (4, 1, facilitator));
    // The challenge says what the payment buys.
    let v = body_json(&run(&cfg, &p, post(&call(json!(5), "summarize", None))));
    assert_eq!(v["result"]["structuredContent"]["resource"]["description"], "4 requests within 1 hour to every priced tool of /mcp", "{v}");
    let lines = cfg.price_lines();
    assert!(lines.iter().any(|l| l.starts_with("POST /mcp tool:summarize: 0.01 USDC") && l.ends_with(" for a pass: 4 requests within 1 hour to every priced tool of /mcp")), "{lines:?}");
}

#[test]
fn an_expired_revoked_or_unknown_pass_gets_the_payment_required_result() {
    let (cfg, p) = (pass_cfg(json!({ "ttl": "1h" })), Rc::new(fake()));
    origin_answers(&p, echo_result(false));
    let (_, token) = buy_pass(&cfg, &p, "/mcp", "search", 25);
    let (_, other) = buy_pass(&cfg, &p, "/mcp", "search", 26);
    let facilitator = p.facilitator_calls.borrow().len();
    assert!(refusal_of(&with_pass(&cfg, &p, "/mcp", "search", &"A".repeat(43))).starts_with("pass_unknown"));
    assert!(refusal_of(&with_pass(&cfg, &p, "/mcp", "search", "not a token")).starts_with("pass_unknown"));
    let mut req = request_with("POST", "/.well-known/x402/admin/revoke", &[("authorization", &format!("Bearer {ADMIN}")), ("content-type", "application/json")]);
    *req.body_mut() = json!({ "pass": token }).to_string().into_bytes();
    assert_eq!(run(&cfg, &p, req).status(), 200);
    assert!(refusal_of(&with_pass(&cfg, &p, "/mcp", "search", &token)).starts_with("pass_revoked"));
    assert_eq!(with_pass(&cfg, &p, "/mcp", "search", &other)["result"]["content"][0]["text"], "found it");
    p.now.set(p.now.get() + 3600);
    assert!(refusal_of(&with_pass(&cfg, &p, "/mcp", "search", &other)).starts_with("pass_expired"));
    assert_eq!((p.origin_hits(), p.settles(), p.facilitator_calls.borrow().len()), (3, 2, facilitator));
}

#[test]
fn no_pass_or_sign_in_carrier_reaches_the_origin() {
    let (cfg, p) = (pass_cfg(json!({ "ttl": "1h" })), Rc::new(fake()));
    origin_answers(&p, echo_result(false));
    let (_, token) = buy_pass(&cfg, &p, "/mcp", "search", 27);
    let meta = json!({ "x402/pass": token, "x402/sign-in-with-x": "proof", "progressToken": "t" });
    let mut req = post(&call(json!(6), "search", Some(meta)));
    for (k, v) in [("x402-pass", token.as_str()), ("cookie", &format!("x402_pass={token}; keep=1")), ("sign-in-with-x", "s")] {
        req.headers_mut().insert(k, v.parse().unwrap());
    }
    assert_eq!(body_json(&run(&cfg, &p, req))["result"]["content"][0]["text"], "found it");
    let calls = p.origin_calls.borrow();
    for c in calls.iter() {
        let sent: Value = serde_json::from_slice(c.body()).unwrap();
        let meta = &sent["params"]["_meta"];
        assert!(meta.get("x402/pass").is_none() && meta.get("x402/sign-in-with-x").is_none() && meta.get("x402/payment").is_none(), "{sent}");
        assert!(!String::from_utf8_lossy(c.body()).contains(&token));
        assert!(["x402-pass", "sign-in-with-x", "payment-signature"].iter().all(|n| c.headers().get(*n).is_none()));
    }
    assert_eq!(calls[1].headers()["cookie"], "keep=1");
    assert_eq!(calls.len(), 2);
}

#[test]
fn mcp_pass_configuration_errors_say_what_makes_no_sense() {
    let vars = |mcp: Value, routes: Value| {
        let mut v = json!({ "ORIGIN_URL": "https://origin.test", "FACILITATOR_URL": "https://facilitator.test", "PAY_TO": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "ROUTES": routes });
        v["MCP"] = json!([mcp]);
        Config::from_vars(v.as_object().unwrap()).err().map(|e| e.0).unwrap_or_default()
    };
    let one = || json!([{ "route": "GET /paid", "price": "$0.01" }]);
    let pass = json!({ "ttl": "1h" });
    for (mcp, want) in [
        (json!({ "path": "/mcp", "default": { "price": "$0.01", "pass": pass } }), "MCP[0] (/mcp) default: pass (on the default"),
        (json!({ "path": "/mcp", "tools": { "s": { "price": "$0.01", "pass": { "ttl": "1h", "scope": "path" } } } }), "tools.`s`: pass scope"),
        (json!({ "path": "/mcp", "tools": { "s": { "price": "$0.01", "pass": { "ttl": "1h", "scope": "g" } } } }), "tools.`s`: pass scope"),
        (json!({ "path": "/mcp", "pass": pass, "tools": { "s": { "price": "$0.01", "pass": pass } } }), "tools.`s` sells a pass of its own"),
        (json!({ "path": "/mcp", "pass": pass, "tools": { "s": "free" } }), "no tool of /mcp is priced"),
        (json!({ "path": "/mcp", "pass": { "ttl": "1h", "scope": "route" }, "tools": { "s": "$0.01" } }), "MCP[0] (/mcp) pass: `scope`"),
        (json!({ "path": "/mcp", "pass": pass, "tools": { "s": "$0.01", "t": "$0.05" } }), "each tool's price must cover every other's"),
        (json!({ "path": "/mcp", "pass": { "ttl": "forever" }, "tools": { "s": "$0.01" } }), "pass ttl"),
        (json!({ "path": "/mcp", "tools": { "s": { "price": "$0.01", "free": true, "pass": pass } } }), "tools.`s`"),
    ] {
        let e = vars(mcp.clone(), one());
        assert!(e.contains(want), "{mcp}: {e}");
    }
    let e = vars(json!({ "path": "/mcp", "pass": pass, "tools": { "s": "$0.01" } }), json!([{ "route": "GET /r", "price": "$0.01", "group": "mcp-server /mcp" }]));
    assert!(e.contains("is the pass group of the MCP server"), "{e}");
    assert_eq!(vars(json!({ "path": "/mcp", "pass": pass, "tools": { "s": "$0.01", "t": "$0.01" }, "default": "$0.01" }), one()), "");
    assert_eq!(vars(json!({ "path": "/mcp", "tools": { "s": { "price": "$0.01", "pass": { "ttl": "1h", "maxRequests": 10, "scope": "route" } } } }), one()), "");
}

/// The `SIGN-IN-WITH-X` value a wallet with key `key` sends for the challenge `info`.
fn sign_in_proof(info: &Value, key: u8) -> String {
    use x402_edge_paywall::x402::siwx::{eip191_hash, message, Proof};
    let sk = k256::ecdsa::SigningKey::from_slice(&[key; 32]).unwrap();
    let address = x402_edge_paywall::evm::address_of(sk.verifying_key());
    let s = |k: &str| info[k].as_str().unwrap().to_string();
    let mut proof = Proof {
        domain: s("domain"),
        address: address.to_checksum(),
        statement: Some(s("statement")),
        uri: s("uri"),
        version: s("version"),
        chain_id: "eip155:84532".into(),
        kind: "eip191".into(),
        nonce: s("nonce"),
        issued_at: s("issuedAt"),
        expiration_time: Some(s("expirationTime")),
        not_before: None,
        request_id: None,
        resources: Some(vec![s("uri")]),
        signature: String::new(),
    };
    let (sig, recid) = sk.sign_prehash_recoverable(&eip191_hash(&message(&proof, &address, 84532)));
    let mut bytes = sig.to_bytes().to_vec();
    bytes.push(27 + recid.to_byte());
    proof.signature = x402_edge_paywall::evm::hex_0x(&bytes);
    let p = &proof;
    x402_edge_paywall::x402::encode_header(&json!({
        "domain": p.domain, "address": p.address, "statement": p.statement, "uri": p.uri, "version": p.version,
        "chainId": p.chain_id, "type": p.kind, "nonce": p.nonce, "issuedAt": p.issued_at,
        "expirationTime": p.expiration_time, "resources": p.resources, "signature": p.signature,
    }))
}

#[test]
fn a_payer_who_lost_the_pass_signs_in_with_the_wallet_that_paid_for_that_tool_only() {
    let cfg = config_vars(json!({
        "PUBLIC_URL": "https://paywall.test",
        "SIGN_IN_SECRET": "a sign-in secret of at least 32 characters",
        "MCP": [{ "path": "/mcp", "tools": { "search": { "price": "$0.01", "pass": { "ttl": "1h" } }, "summarize": { "price": "$0.01", "pass": { "ttl": "1h" } } } }],
    }));
    let p = Rc::new(fake());
    origin_answers(&p, echo_result(false));
    buy_pass(&cfg, &p, "/mcp", "search", 31);
    let facilitator = p.facilitator_calls.borrow().len();
    // The PaymentRequired tool result carries the sign-in challenge (a nonce issued for /mcp).
    let challenge = |tool: &str| {
        p.now.set(p.now.get() + 1);
        let v = body_json(&run(&cfg, &p, post(&call(json!(7), tool, None))));
        let ext = v["result"]["structuredContent"]["extensions"]["sign-in-with-x"].clone();
        assert_eq!(ext["supportedChains"], json!([{ "chainId": "eip155:84532", "type": "eip191" }]), "{v}");
        assert_eq!(ext["info"]["uri"], "https://paywall.test/mcp");
        ext["info"].clone()
    };
    let proof = sign_in_proof(&challenge("search"), 31);
    let signed = |tool: &str, proof: &str| body_json(&run(&cfg, &p, post(&call(json!(8), tool, Some(json!({ "x402/sign-in-with-x": proof }))))));
    assert_eq!(signed("search", &proof)["result"]["content"][0]["text"], "found it");
    assert!(refusal_of(&signed("search", &proof)).starts_with("invalid_siwx_nonce"), "a proof signs in once");
    // The header a Streamable HTTP client can set works as well.
    let mut req = post(&call(json!(9), "search", None));
    req.headers_mut().insert("sign-in-with-x", sign_in_proof(&challenge("search"), 31).parse().unwrap());
    assert_eq!(body_json(&run(&cfg, &p, req))["result"]["content"][0]["text"], "found it");
    // The wallet holds a pass for search only; another wallet holds none.
    assert!(refusal_of(&signed("summarize", &sign_in_proof(&challenge("summarize"), 31))).starts_with("siwx_no_pass"));
    assert!(refusal_of(&signed("search", &sign_in_proof(&challenge("search"), 32))).starts_with("siwx_no_pass"));
    assert_eq!((p.origin_hits(), p.settles(), p.facilitator_calls.borrow().len()), (3, 1, facilitator));
    for c in p.origin_calls.borrow().iter() {
        assert!(c.headers().get("sign-in-with-x").is_none() && !String::from_utf8_lossy(c.body()).contains("sign-in-with-x"));
    }
}
