//! The Workers Rate Limiting and Analytics Engine bindings, through the types the `worker` crate
//! (0.8.7) declares for them: the one place that finds them in `env` and calls them.
//!
//! The calls go through `worker::worker_sys::{RateLimiter, AnalyticsEngineDataset}` (their typed
//! `limit` and `writeDataPoint`), not through `worker`'s wrappers over them: those convert with
//! `serde_wasm_bindgen` (the limiter's options and outcome) and a data-point builder that copies
//! every value across the boundary: 3.5 KB more wasm (1.6 KB gzipped) for two calls (measured with
//! `scripts/build.sh`), and the limiter's would refuse an outcome without `success`, which this
//! one reads as within the limit, as before.
//!
//! A rate limiter is found by its shape (an object with a `limit` function), not through
//! `Env::rate_limiter`, which also requires the binding's constructor to be named `Ratelimit`:
//! the configuration check ([`super::vars`]) and each call ([`super::platform`]) accept the same
//! bindings, and neither depends on the runtime's class name (the `worker` crate itself finds an
//! Analytics Engine dataset without a class check, because Miniflare's is a plain object).

use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::{AnalyticsEngineDataset, RateLimiter};
use worker::{js_sys, Env};

use crate::gateway::PlatformError;
use crate::telemetry::DataPoint;

/// The Rate Limiting binding named `name` (`[[ratelimits]]` in wrangler.toml), or None when
/// `env` has nothing under that name or it has no `limit` function.
pub(super) fn rate_limiter(env: &Env, name: &str) -> Option<RateLimiter> {
    let limiter = js_sys::Reflect::get(env.as_ref(), &JsValue::from_str(name)).ok()?;
    if !js_sys::Reflect::get(&limiter, &JsValue::from_str("limit")).is_ok_and(|f| f.is_function()) {
        return None;
    }
    Some(limiter.unchecked_into())
}

/// Counts one request under `key` with the Rate Limiting binding `name`
/// (`limit({ key })`): Ok(true) within the limit (or an outcome without `success`), Ok(false)
/// over it. Err: no such binding ([`PlatformError::Unavailable`]) or the call failed.
pub(super) async fn limit(env: &Env, name: &str, key: &str) -> Result<bool, PlatformError> {
    let limiter = rate_limiter(env, name).ok_or_else(|| PlatformError::Unavailable(format!("{name} is not a rate limiting binding")))?;
    let failed = |e: JsValue| PlatformError::Failed(format!("{e:?}"));
    let options = js_sys::Object::new();
    js_sys::Reflect::set(&options, &JsValue::from_str("key"), &JsValue::from_str(key)).map_err(failed)?;
    let outcome = JsFuture::from(limiter.limit(options).map_err(failed)?).await.map_err(failed)?;
    Ok(js_sys::Reflect::get(&outcome, &JsValue::from_str("success")).ok().and_then(|v| v.as_bool()).unwrap_or(true))
}

/// The Analytics Engine dataset named `name` (`[[analytics_engine_datasets]]`), or None when
/// `env` has nothing under that name.
pub(super) fn dataset(env: &Env, name: &str) -> Option<AnalyticsEngineDataset> {
    let dataset = js_sys::Reflect::get(env.as_ref(), &JsValue::from_str(name)).ok()?;
    (!dataset.is_undefined()).then(|| dataset.unchecked_into())
}

/// Writes `point` (one index, its blobs, its doubles) to `dataset` (`writeDataPoint`), built in
/// one crossing (its JSON, parsed by the runtime). Err: the point could not be built, or the
/// runtime refused it.
pub(super) fn write(dataset: &AnalyticsEngineDataset, point: &DataPoint) -> Result<(), String> {
    let json = serde_json::to_string(point).map_err(|e| e.to_string())?;
    let point = js_sys::JSON::parse(&json).map_err(|e| format!("{e:?}"))?;
    dataset.write_data_point(point).map_err(|e| format!("{e:?}"))
}
