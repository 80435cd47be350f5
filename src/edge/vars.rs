//! The Worker's variables and bindings read into the validated [`Config`], once per isolate.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{Map, Value};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{js_sys, Env};

use crate::config::{Config, ConfigError};

use super::{LEDGER_BINDING, ORIGIN_SERVICE_BINDING, PASSES_BINDING};

thread_local! {
    /// The validated configuration, built when the module starts ([`super::warm_up`], from the
    /// module-scope `env`) or else on the isolate's first request.
    static CONFIG: RefCell<Option<Result<Rc<Config>, ConfigError>>> = const { RefCell::new(None) };
}

pub(super) fn read_vars(env: &Env) -> Map<String, Value> {
    let mut vars = Map::new();
    // The fixed names, each facilitator's own credentials (`FACILITATOR_AUTH_<NAME>`), and every
    // other variable (not a binding: a string or plain JSON), so that the configuration can refuse
    // a misspelt one (`ROUTS`) or a price that no route carries (crate::config::misspelt_vars).
    let env_object: &JsValue = env.as_ref();
    let object_prototype = js_sys::Object::get_prototype_of(&js_sys::Object::new().into());
    let others: Vec<String> = js_sys::Object::keys(env_object.unchecked_ref::<js_sys::Object>())
        .iter()
        .filter_map(|k| k.as_string())
        .filter(|k| !crate::config::VARS.contains(&k.as_str()) && k != ORIGIN_SERVICE_BINDING)
        .collect();
    for name in crate::config::VARS.iter().copied().chain(others.iter().map(String::as_str)) {
        let Ok(v) = js_sys::Reflect::get(env.as_ref(), &JsValue::from_str(name)) else { continue };
        if v.is_undefined() || v.is_null() {
            continue;
        }
        let plain = v.is_string()
            || v.as_f64().is_some()
            || v.as_bool().is_some()
            || js_sys::Array::is_array(&v)
            || (v.is_object() && js_sys::Object::get_prototype_of(&v) == object_prototype);
        if !crate::config::VARS.contains(&name) && !plain {
            continue;
        }
        let value = match v.as_string() {
            Some(s) => Value::String(s),
            None => js_sys::JSON::stringify(&v)
                .ok()
                .and_then(|s| s.as_string())
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or(Value::Null),
        };
        vars.insert(name.to_string(), value);
    }
    if env.service(ORIGIN_SERVICE_BINDING).is_ok() {
        vars.insert(ORIGIN_SERVICE_BINDING.to_string(), Value::Bool(true));
    } else if js_sys::Reflect::get(env.as_ref(), &JsValue::from_str(ORIGIN_SERVICE_BINDING)).is_ok_and(|v| !v.is_undefined()) {
        // Something else under that name (a plain variable): the configuration says so.
        vars.insert(ORIGIN_SERVICE_BINDING.to_string(), Value::String("not a service binding".into()));
    }
    vars
}

pub(super) fn config(env: &Env) -> Result<Rc<Config>, ConfigError> {
    CONFIG.with(|cell| {
        cell.borrow_mut()
            .get_or_insert_with(|| {
                let cfg = Config::from_vars(&read_vars(env))?;
                if cfg.all_routes().any(|r| r.pass.is_some()) && env.kv(PASSES_BINDING).is_err() {
                    return Err(ConfigError(format!("a route or MCP tool sells a pass but the KV namespace binding {PASSES_BINDING} is missing")));
                }
                for binding in cfg.all_routes().flat_map(|r| r.rate_limits.bindings()) {
                    if super::bindings::rate_limiter(env, binding).is_none() {
                        return Err(ConfigError(format!("rate limit binding `{binding}` is missing: declare it under [[ratelimits]] in wrangler.toml")));
                    }
                }
                if cfg.all_routes().any(|r| !r.is_free()) && env.durable_object(LEDGER_BINDING).is_err() {
                    return Err(ConfigError(format!(
                        "priced routes and MCP tools need the payment ledger: the Durable Object binding `{LEDGER_BINDING}` (class PaymentLedger) is missing"
                    )));
                }
                Ok(Rc::new(cfg))
            })
            .clone()
    })
}
