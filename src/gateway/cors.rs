//! CORS for priced routes: the `Access-Control-*` and `Vary` headers added to every answer, and
//! the `OPTIONS` answer (preflight or `Allow`). Reads [`crate::config::CorsPolicy`]; never decides
//! whether a request is paid.


use http::header::HeaderValue;
use http::{HeaderMap, Response, StatusCode};

use crate::config::{Config, CorsPolicy};

use crate::headers::{ALLOWED_REQUEST_HEADERS, EXPOSED_HEADERS};
use super::platform::Platform;
use super::{header_str, set_header};

/// The `Access-Control-Allow-Origin` value for this request, if its `Origin` is allowed.
pub(super) fn allowed_origin(config: &Config, headers: &HeaderMap) -> Option<HeaderValue> {
    match &config.cors {
        CorsPolicy::Off => None,
        CorsPolicy::Any => Some(HeaderValue::from_static("*")),
        CorsPolicy::List(list) => {
            let origin = header_str(headers, "origin")?;
            list.iter().any(|o| o == origin).then(|| HeaderValue::from_str(origin).ok()).flatten()
        }
    }
}

pub(super) fn append_vary(headers: &mut HeaderMap, value: &'static str) {
    headers.append(http::header::VARY, HeaderValue::from_static(value));
}

/// The origin's own CORS answer headers: on a priced route the paywall's policy replaces them
/// (unless it is `*`), so an origin that reflects any `Origin` cannot widen a list.
const ORIGIN_CORS_HEADERS: [http::header::HeaderName; 3] =
    [http::header::ACCESS_CONTROL_ALLOW_ORIGIN, http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS, http::header::ACCESS_CONTROL_EXPOSE_HEADERS];

/// Adds CORS and `Vary` to every answer of a priced route; with a list of origins or `none`,
/// the origin's own `Access-Control-Allow-Origin`, `-Allow-Credentials` and `-Expose-Headers`
/// are removed first.
pub(super) fn decorate<B>(mut res: Response<B>, config: &Config, allow_origin: Option<HeaderValue>) -> Response<B> {
    let h = res.headers_mut();
    if config.cors != CorsPolicy::Any {
        for name in ORIGIN_CORS_HEADERS {
            h.remove(name);
        }
    }
    if let Some(o) = allow_origin {
        h.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(http::header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED_HEADERS));
    }
    if matches!(config.cors, CorsPolicy::List(_)) {
        append_vary(h, "Origin");
    }
    append_vary(h, "PAYMENT-SIGNATURE, X-PAYMENT, X402-Pass, SIGN-IN-WITH-X, Cookie");
    res
}

/// Answers `OPTIONS` on a priced path (204): a CORS preflight when CORS is on and the request is
/// one, else just `Allow`. `allow` is the methods the path's routes list.
pub(super) fn options<P: Platform>(config: &Config, headers: &HeaderMap, allow: &str) -> Response<P::Body> {
    let mut res = Response::new(P::body(Vec::new()));
    *res.status_mut() = StatusCode::NO_CONTENT;
    let h = res.headers_mut();
    set_header(h, "allow", allow);
    let preflight = config.cors != CorsPolicy::Off && headers.contains_key("access-control-request-method");
    if !preflight {
        return res;
    }
    if let Some(o) = allowed_origin(config, headers) {
        h.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        set_header(h, "access-control-allow-methods", allow);
        let requested = headers.get("access-control-request-headers").cloned();
        h.insert(
            http::header::ACCESS_CONTROL_ALLOW_HEADERS,
            requested.unwrap_or(HeaderValue::from_static(ALLOWED_REQUEST_HEADERS)),
        );
        h.insert(http::header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    }
    append_vary(h, "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
    res
}
