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
    let private = subtle_call("importKey", &[format.into(), data, params.into(), JsValue::FALSE, usages]).await.map_err(|e| format!("importing the key {} failed: {e}", key.id))?;
    if let CdpKeyMaterial::Ed25519 { x, .. } = &key.material {
        check_pair(key, &private, x).await?;
    }
    Ok(private)
}

/// Whether an imported Ed25519 private key signs what its stated public key `x` verifies: the
/// runtime imports a JWK whose `x` is not `d`'s public key without a word, and then signs with `d`
/// what nobody holding `x` (the payment context's key set) can verify. Err names the key.
async fn check_pair(key: &CdpKey, private: &JsValue, x: &str) -> Result<(), String> {
    let params: JsValue = object(&[("name", "Ed25519".into())])?.into();
    let jwk = object(&[("kty", "OKP".into()), ("crv", "Ed25519".into()), ("x", x.into())])?;
    let usages: JsValue = Array::of1(&"verify".into()).into();
    let public = subtle_call("importKey", &["jwk".into(), jwk.into(), params.clone(), JsValue::FALSE, usages]).await.map_err(|e| format!("importing the public key of {} failed: {e}", key.id))?;
    let probe: JsValue = Uint8Array::from(&b"x402 key pair check"[..]).into();
    let signature = subtle_call("sign", &[params.clone(), private.clone(), probe.clone()]).await.map_err(|e| format!("signing with the key {} failed: {e}", key.id))?;
    let verified = subtle_call("verify", &[params, public, signature, probe]).await.map_err(|e| format!("checking the key {} failed: {e}", key.id))?;
    if verified.as_bool() != Some(true) {
        return Err(format!("the key {} is not a key pair: its \"x\" is not the public key of its \"d\"", key.id));
    }
    Ok(())
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
