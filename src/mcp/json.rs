//! The strict JSON parse of a message ([`parse_strict`]: a duplicate key at any depth is refused,
//! since parsers disagree about which copy wins), and a `tools/call` as the origin gets it
//! ([`for_origin`]: the paywall's own id, the payment, pass and sign-in taken out), every other member kept as the
//! client wrote it (raw JSON: numbers and strings are never re-encoded).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use super::{PASS_META, PAYMENT_META, SIGN_IN_META};

/// Why [`parse_strict`] refused a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrictError {
    /// Not JSON (or trailing bytes): serde_json's message.
    Syntax(String),
    /// An object names a key twice (or a number is not finite).
    Duplicate(String),
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("a number is not finite"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(de::Error::custom(format!("duplicate key {k:?}")));
            }
            let Strict(v) = map.next_value()?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// A key as a case-insensitive JSON parser compares it: letters lower-cased, with the two
/// non-ASCII letters that Unicode simple case folding makes equal to ASCII ones (`ſ` U+017F to
/// `s`, the Kelvin sign U+212A to `k`) taken as those (Go's `encoding/json` `foldName`).
pub fn fold_key(key: &str) -> String {
    key.chars()
        .flat_map(|c| match c {
            '\u{17F}' => 's'.to_lowercase(),
            '\u{212A}' => 'k'.to_lowercase(),
            c => c.to_lowercase(),
        })
        .collect()
}

/// Parses `bytes` as one JSON value, refusing a duplicate key in any object (serde_json's depth
/// limit of 128 applies).
pub fn parse_strict(bytes: &[u8]) -> Result<Value, StrictError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict::deserialize(&mut de).and_then(|Strict(v)| de.end().map(|()| v));
    parsed.map_err(|e| match e.classify() {
        serde_json::error::Category::Data => StrictError::Duplicate(e.to_string()),
        _ => StrictError::Syntax(e.to_string()),
    })
}

type RawMap = BTreeMap<String, Box<RawValue>>;

fn raw(map: &RawMap) -> Result<Box<RawValue>, serde_json::Error> {
    RawValue::from_string(serde_json::to_string(map)?)
}

/// A `tools/call` body (already [`super::classify`]-ed) as the origin gets it: its `id` replaced by
/// `origin_id`, without `params._meta["x402/payment"]`, `["x402/pass"]` and
/// `["x402/sign-in-with-x"]` (the paywall's carriers), and without `_meta` when nothing else was
/// in it; every other member is kept byte for byte (member order may change). The paywall gives a
/// paid call an id of its own so that no other message of the client's can name it (a second
/// request with the same id, `notifications/cancelled`). Err: the body is not such an object.
pub fn for_origin(body: &[u8], origin_id: &Value) -> Result<Vec<u8>, serde_json::Error> {
    let mut top: RawMap = serde_json::from_slice(body)?;
    top.insert("id".into(), RawValue::from_string(origin_id.to_string())?);
    let Some(params_raw) = top.get("params") else { return serde_json::to_vec(&top) };
    let mut params: RawMap = serde_json::from_str(params_raw.get())?;
    if let Some(meta_raw) = params.get("_meta") {
        let mut meta: RawMap = serde_json::from_str(meta_raw.get())?;
        for key in [PAYMENT_META, PASS_META, SIGN_IN_META] {
            meta.remove(key);
        }
        if meta.is_empty() {
            params.remove("_meta");
        } else {
            params.insert("_meta".into(), raw(&meta)?);
        }
    }
    top.insert("params".into(), raw(&params)?);
    serde_json::to_vec(&top)
}
