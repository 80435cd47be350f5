//! The 402 challenge: `PAYMENT-REQUIRED` and its JSON body for a route, laid out once per route
//! and method ([`prepare`]) and filled per request. Wire types come from `crate::x402`; nothing
//! here reads a payment.


use std::rc::Rc;

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Response, StatusCode};
use serde_json::Value;

use crate::config::{Config, Route};
use crate::x402::bazaar::merge_extensions;
use crate::x402::{encode_header, encode_header_bytes, ChallengeLayout, JsonTemplate, TEMPLATE_HOLES, PaymentRequired, PaymentRequiredV1, ResourceInfo, PAYMENT_REQUIRED, X402_VERSION};

use super::passes::sign_in_extension;
use super::derived::{ChallengeLayouts, ConfigState};
use super::platform::{IsolateState, Platform};
use super::{json_response, set_header};

/// The challenge's description: the route's, followed by what a pass buys when it sells one
/// ("Reports — 10 requests within 1 hour to /reports/*").
pub(super) fn offer_description(route: &Route) -> Option<String> {
    match (&route.description, &route.pass) {
        (Some(d), Some(pass)) => Some(format!("{d} — {}", pass.summary)),
        (None, Some(pass)) => Some(pass.summary.clone()),
        (d, None) => d.clone(),
    }
}

/// What a 402 challenge for this request needs, so that one is built only when it is sent.
pub(super) struct Challenger<'a> {
    pub(super) config: &'a Config,
    /// What this isolate keeps for `config`: the route's challenge layouts.
    pub(super) state: Rc<ConfigState>,
    pub(super) route: &'a Route,
    pub(super) canonical: &'a str,
    pub(super) method: Method,
    pub(super) resource_url: String,
}

impl Challenger<'_> {
    /// The 402 challenge with reason `error`. With wallet sign-in on for the route, its extension
    /// carries a fresh nonce, so the challenge is serialised whole; otherwise it is filled into
    /// the route's layout for the method (laid out on first use), which gives the same bytes.
    pub(super) fn respond<P: Platform>(&self, p: &P, error: &str) -> Response<P::Body> {
        let bazaar = self.route.discovery.bazaar(&self.method);
        if let Some(siwx) = sign_in_extension(self.config, p, self.route, self.canonical) {
            return challenge::<P>(self.route, &self.resource_url, error, merge_extensions(Some(siwx), bazaar).as_ref());
        }
        let layout = self.state.route_layouts(self.config, self.route).and_then(|layouts| challenge_layout(layouts, self.route, &self.method));
        // Serialising our own values does not fail; if it ever did, the whole path still works.
        let Some(layout) = layout else {
            return challenge::<P>(self.route, &self.resource_url, error, merge_extensions(None, bazaar).as_ref());
        };
        let values = [self.resource_url.as_str(), error];
        let mut res = Response::new(P::body(layout.body.render(&values).into_bytes()));
        *res.status_mut() = StatusCode::PAYMENT_REQUIRED;
        let h = res.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        set_header(h, PAYMENT_REQUIRED, &encode_header_bytes(layout.header.render(&values).as_bytes()));
        res
    }
}

/// The route's challenge layout for `method`, laid out on first use (the extensions value is built
/// only when a layout is: once per route and method). Only the method's `bazaar` extension makes
/// its challenge differ, so a method without one (any a client invents) shares the route's one
/// extension-less layout: the layouts held stay bounded by the configuration. `None` for a route
/// whose configured values hold U+0000, which could pose as a hole: it is serialised whole on each
/// challenge instead.
pub(super) fn challenge_layout(layouts: &ChallengeLayouts, route: &Route, method: &Method) -> Option<Rc<ChallengeLayout>> {
    let bazaar = route.discovery.bazaar(method);
    layouts.get_or_build(bazaar.map(|_| method), || {
        let extensions = merge_extensions(None, bazaar);
        let (plain, _) = challenge_values(route, "", "", extensions.as_ref());
        if serde_json::to_string(&plain).ok()?.contains("\\u0000") {
            return None;
        }
        let (pr, body) = challenge_values(route, TEMPLATE_HOLES[0], TEMPLATE_HOLES[1], extensions.as_ref());
        Some(ChallengeLayout { header: JsonTemplate::new(&pr).ok()?, body: JsonTemplate::new(&body).ok()? })
    })
}

/// Lays out every priced route's 402 challenge for the route's method (`GET` for a route of any
/// method) ahead of the first request: what a first challenge would otherwise build. Called by
/// the Workers glue when the module starts (`edge::warm_up`), into the isolate's state, with the
/// `/.well-known/x402` document; idempotent.
pub fn prepare(config: &Rc<Config>, isolate: &IsolateState) {
    let state = isolate.derived.of(config);
    let _ = state.well_known(config);
    for (i, route) in config.routes.iter().enumerate().filter(|(_, r)| !r.is_free()) {
        let method = route.pattern.method().cloned().unwrap_or(Method::GET);
        if let Some(layouts) = state.layouts(i) {
            let _ = challenge_layout(layouts, route, &method);
        }
    }
}

/// The 402 challenge: the v2 `PaymentRequired` in `PAYMENT-REQUIRED`, and as JSON body the v1
/// `PaymentRequirementsResponse` (what legacy v1 clients read; v2 clients read only the header),
/// or the v2 JSON when no offer of the route can be paid in v1.
pub(super) fn challenge<P: Platform>(route: &Route, resource_url: &str, error: &str, extensions: Option<&Value>) -> Response<P::Body> {
    let (pr, body) = challenge_values(route, resource_url, error, extensions);
    let mut res = json_response(StatusCode::PAYMENT_REQUIRED, &body, P::body);
    set_header(res.headers_mut(), PAYMENT_REQUIRED, &encode_header(&pr));
    res
}

/// The challenge's `PaymentRequired` (the header) and its JSON body.
pub(super) fn challenge_values(route: &Route, resource_url: &str, error: &str, extensions: Option<&Value>) -> (PaymentRequired, Value) {
    let extensions = match route.accepts.iter().any(|o| o.eip2612_gas_sponsoring) {
        true => Some(crate::x402::gas_sponsoring::declare(extensions.cloned())),
        false => extensions.cloned(),
    };
    let pr = PaymentRequired {
        extensions,
        x402_version: X402_VERSION,
        error: error.to_string(),
        resource: ResourceInfo { url: resource_url.to_string(), description: offer_description(route), mime_type: route.mime_type.clone() },
        accepts: route.accepts.iter().map(|o| o.requirements.clone()).collect(),
    };
    let v1_accepts: Vec<_> = route
        .accepts
        .iter()
        .filter_map(|o| o.requirements_v1(resource_url, offer_description(route).as_deref(), route.mime_type.as_deref()))
        .collect();
    let body = if v1_accepts.is_empty() {
        serde_json::to_value(&pr)
    } else {
        serde_json::to_value(PaymentRequiredV1 { x402_version: 1, error: error.to_string(), accepts: v1_accepts })
    };
    (pr, body.unwrap_or(Value::Null))
}
