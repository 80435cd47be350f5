//! CDP JWT and payment context signatures with the runtime's WebCrypto (`crypto.subtle`), so no
//! P-256 or Ed25519 arithmetic is compiled into the wasm. A key is imported once per isolate and
//! cached.

use std::cell::RefCell;
use std::collections::HashMap;

use worker::js_sys::{self, Array, Function, Object, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;

use crate::facilitator::cdp::{CdpKey, CdpKeyMaterial};

thread_local! {
    /// Imported `CryptoKey`s by key id (a CDP key's id, or `payment-context/<kid>`).
    static KEYS: RefCell<HashMap<String, JsValue>> = RefCell::new(HashMap::new());
}

fn text(e: JsValue) -> String {
    e.as_string()
        .or_else(|| Reflect::get(&e, &"message".into()).ok().and_then(|m| m.as_string()))
        .unwrap_or_else(|| format!("{e:?}"))
}

fn get(target: &JsValue, name: &str) -> Result<JsValue, String> {
    Reflect::get(target, &name.into()).map_err(text)
}

fn object(fields: &[(&str, JsValue)]) -> Result<Object, String> {
    let o = Object::new();
    for (k, v) in fields {
        Reflect::set(&o, &(*k).into(), v).map_err(text)?;
    }
    Ok(o)
}

/// Calls `subtle[method](...args)` and awaits the promise.
async fn subtle_call(method: &str, args: &[JsValue]) -> Result<JsValue, String> {
    let subtle = get(&get(&js_sys::global(), "crypto")?, "subtle")?;
    let f: Function = get(&subtle, method)?.dyn_into().map_err(|_| format!("crypto.subtle.{method} is not a function"))?;
    let list = Array::new();
    for a in args {
        list.push(a);
    }
    let promise: js_sys::Promise = f.apply(&subtle, &list).map_err(text)?.dyn_into().map_err(|_| format!("crypto.subtle.{method} returned no promise"))?;
    JsFuture::from(promise).await.map_err(text)
}

/// The WebCrypto algorithm for `key`: import parameters and sign parameters.
fn algorithm(key: &CdpKey) -> Result<(Object, Object), String> {
    Ok(match key.material {
        CdpKeyMaterial::Es256 { .. } => (
            object(&[("name", "ECDSA".into()), ("namedCurve", "P-256".into())])?,
            object(&[("name", "ECDSA".into()), ("hash", "SHA-256".into())])?,
        ),
        CdpKeyMaterial::Ed25519 { .. } => (object(&[("name", "Ed25519".into())])?, object(&[("name", "Ed25519".into())])?),
    })
}

async fn import(key: &CdpKey) -> Result<JsValue, String> {
    let (params, _) = algorithm(key)?;
    let usages: JsValue = Array::of1(&"sign".into()).into();
    let (format, data): (&str, JsValue) = match &key.material {
        CdpKeyMaterial::Es256 { pkcs8_der } => ("pkcs8", Uint8Array::from(pkcs8_der.as_slice()).into()),
        CdpKeyMaterial::Ed25519 { d, x } => (
            "jwk",
            object(&[("kty", "OKP".into()), ("crv", "Ed25519".into()), ("d", d.as_str().into()), ("x", x.as_str().into())])?.into(),
        ),
    };
    subtle_call("importKey", &[format.into(), data, params.into(), JsValue::FALSE, usages]).await.map_err(|e| format!("importing the key {} failed: {e}", key.id))
}

/// Signs `message` with `key`: the raw signature bytes (64 for both ES256 and EdDSA).
pub async fn sign(key: &CdpKey, message: &[u8]) -> Result<Vec<u8>, String> {
    let cached = KEYS.with(|k| k.borrow().get(&key.id).cloned());
    let crypto_key = match cached {
        Some(k) => k,
        None => {
            let k = import(key).await?;
            KEYS.with(|m| m.borrow_mut().insert(key.id.clone(), k.clone()));
            k
        }
    };
    let (_, params) = algorithm(key)?;
    let signature = subtle_call("sign", &[params.into(), crypto_key, Uint8Array::from(message).into()]).await.map_err(|e| format!("signing with the key {} failed: {e}", key.id))?;
    Ok(Uint8Array::new(&signature).to_vec())
}
