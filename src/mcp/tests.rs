use serde_json::json;

use super::answer::{events, find, replace, Format};
use super::*;

#[test]
fn duplicate_keys_are_refused_at_any_depth_and_syntax_errors_are_told_apart() {
    assert!(matches!(parse_strict(br#"{"a":{"b":1,"b":2}}"#), Err(json::StrictError::Duplicate(_))));
    assert!(matches!(parse_strict(br#"[{"a":1},{"a":1,"a":1}]"#), Err(json::StrictError::Duplicate(_))));
    assert!(matches!(parse_strict(br#"{"a":1"#), Err(json::StrictError::Syntax(_))));
    assert_eq!(parse_strict(br#"{"a":[1,{"b":null}]}"#).unwrap(), json!({ "a": [1, { "b": null }] }));
}

#[test]
fn the_payment_is_removed_the_id_replaced_and_the_rest_kept_as_written() {
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"s","arguments":{"n":1.000000000000000000001},"_meta":{"x402/payment":{"a":1},"progressToken":7}}}"#;
    let out = String::from_utf8(for_origin(body, &json!("x402-ab")).unwrap()).unwrap();
    assert!(out.contains("1.000000000000000000001"), "{out}");
    assert!(out.contains(r#""id":"x402-ab""#) && !out.contains(r#""id":1"#), "{out}");
    assert!(!out.contains("x402/payment"));
    assert!(out.contains(r#""progressToken":7"#));
}

#[test]
fn sse_events_split_on_every_line_ending_and_the_response_is_replaced_in_place() {
    let text = "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"n\"}\r\n\r\nid: 2\ndata: {\"jsonrpc\":\"2.0\",\ndata: \"id\":1,\"result\":{}}\n\n";
    let e = events(text);
    assert_eq!(e.len(), 2);
    let a = find(Some("text/event-stream; charset=utf-8"), text.as_bytes(), &json!(1)).unwrap();
    assert_eq!(a.format, Format::Sse(1));
    assert!(!a.failed);
    let out = String::from_utf8(replace(text.as_bytes(), a.format, &json!({ "jsonrpc": "2.0", "id": 1, "result": { "x": 1 } }))).unwrap();
    assert_eq!(out, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"n\"}\n\nid: 2\ndata: {\"id\":1,\"jsonrpc\":\"2.0\",\"result\":{\"x\":1}}\n\n");
}

#[test]
fn a_payment_in_either_form_becomes_the_same_header() {
    let payload = json!({ "x402Version": 2 });
    let object = Payment::Object(payload.clone());
    let encoded = Payment::Encoded(object.header_value());
    assert_eq!(object.header_value(), encoded.header_value());
}

#[test]
fn the_splitter_finds_events_across_chunks_and_line_ends() {
    let mut s = super::answer::EventSplitter::default();
    assert!(s.push(b"data: a\r").is_empty());
    assert_eq!(s.push(b"\n\r"), vec!["data: a".to_string()], "CR LF split across chunks, then a CR: a blank line");
    assert_eq!(s.push(b"\ndata: b\n"), Vec::<String>::new());
    assert_eq!(s.push(b"\n\n\ndata: c\n\n"), vec!["data: b".to_string(), "data: c".to_string()]);
    assert!(super::answer::is_response_event("event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}", &json!(3)));
    assert!(!super::answer::is_response_event("data: {\"jsonrpc\":\"2.0\",\"method\":\"n\",\"id\":3}", &json!(3)));
}
