//! The Workers Rate Limiting and Analytics Engine bindings, as the `worker` crate types them
//! (`worker::RateLimiter`, `worker::AnalyticsEngineDataset`, both in worker 0.8.7): the one place
//! that finds them in `env`.
//!
//! A rate limiter is found by its shape (an object with a `limit` function), not through
//! `Env::rate_limiter`, which also requires the binding's constructor to be named `Ratelimit`:
//! the configuration check ([`super::vars`]) and each call ([`super::platform`]) accept the same
//! bindings, and neither depends on the runtime's class name (the `worker` crate itself finds an
//! Analytics Engine dataset without a class check, because Miniflare's is a plain object).

use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{js_sys, AnalyticsEngineDataPointBuilder, AnalyticsEngineDataset, Env, RateLimiter};

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

/// Counts one request under `key` with the Rate Limiting binding `name`: Ok(true) within the
/// limit, Ok(false) over it. Err: no such binding, or the call failed or answered without
/// `success`.
pub(super) async fn limit(env: &Env, name: &str, key: &str) -> Result<bool, PlatformError> {
    let limiter = rate_limiter(env, name).ok_or_else(|| PlatformError::Unavailable(format!("{name} is not a rate limiting binding")))?;
    let outcome = limiter.limit(key.to_string()).await.map_err(|e| PlatformError::Failed(e.to_string()))?;
    Ok(outcome.success)
}

/// The Analytics Engine dataset named `name` (`[[analytics_engine_datasets]]`), or None when
/// `env` has nothing under that name.
pub(super) fn dataset(env: &Env, name: &str) -> Option<AnalyticsEngineDataset> {
    env.analytics_engine(name).ok()
}

/// Writes `point` (one index, its blobs, its doubles) to `dataset` (`writeDataPoint`). Err: the
/// runtime refused it.
pub(super) fn write(dataset: &AnalyticsEngineDataset, point: &DataPoint) -> Result<(), String> {
    let [index] = &point.indexes;
    let built = AnalyticsEngineDataPointBuilder::new().indexes([index.as_str()]).blobs(point.blobs.iter().map(String::as_str)).doubles(point.doubles).build();
    dataset.write_data_point(&built).map_err(|e| e.to_string())
}
