//! Where requests are forwarded (`ORIGIN_URL`, `ORIGIN_SERVICE`), the headers added to them
//! (`ORIGIN_HEADERS`), and the URL checks every URL variable goes through.

use serde_json::{Map, Value};

use super::{err, hidden, shown, string_var, ConfigError};

/// Where forwarded requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginTarget {
    /// `ORIGIN_URL`: `base` is `scheme://authority[/prefix]` (authority lower-case) without a
    /// trailing `/`; `prefix` is its path part (`""` or `/v1`). Request paths are appended.
    Url { base: String, prefix: String },
    /// `ORIGIN_SERVICE`: another Worker behind a service binding, with no public route of its
    /// own. Requests keep the public URL's scheme and host.
    Service,
}

/// `ORIGIN_URL` or the `ORIGIN_SERVICE` binding (exactly one).
pub(super) fn origin_target(vars: &Map<String, Value>) -> Result<OriginTarget, ConfigError> {
    Ok(match (string_var(vars, "ORIGIN_URL")?, vars.get("ORIGIN_SERVICE")) {
        (Some(_), Some(Value::Bool(true))) => return err("set either ORIGIN_URL or the ORIGIN_SERVICE service binding, not both"),
        (None, Some(Value::Bool(true))) => OriginTarget::Service,
        (_, Some(_)) => return err("ORIGIN_SERVICE must be a service binding ([[services]] in wrangler.toml), not a variable"),
        (Some(url), None) => {
            let base = http_url("ORIGIN_URL", &url)?;
            require_tls("ORIGIN_URL", &base)?;
            let prefix = base.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap_or_default();
            OriginTarget::Url { base, prefix }
        }
        (None, None) => return err("ORIGIN_URL is not set (or bind the origin Worker as ORIGIN_SERVICE)"),
    })
}

/// `PUBLIC_URL`: a bare origin (`scheme://authority`).
pub(super) fn public_url(vars: &Map<String, Value>) -> Result<Option<String>, ConfigError> {
    match string_var(vars, "PUBLIC_URL")? {
        None => Ok(None),
        Some(u) => {
            let url = http_url("PUBLIC_URL", &u)?;
            if url.matches('/').count() != 2 {
                return err(format!("PUBLIC_URL {} must be a bare origin like https://api.example.com", shown(&u)));
            }
            Ok(Some(url))
        }
    }
}

/// `RPC_URL`: an `https` URL (`http` only to a loopback host).
pub(super) fn rpc_url(vars: &Map<String, Value>) -> Result<Option<String>, ConfigError> {
    match string_var(vars, "RPC_URL")? {
        None => Ok(None),
        Some(u) => {
            let url = http_url("RPC_URL", &u)?;
            require_tls("RPC_URL", &url)?;
            Ok(Some(url))
        }
    }
}

/// Most `ORIGIN_HEADERS` entries.
pub const MAX_ORIGIN_HEADERS: usize = 16;

/// Parses an absolute `http(s)` URL without query, fragment or userinfo, returning
/// `scheme://authority[/path]` without a trailing `/`.
pub(super) fn http_url(name: &str, s: &str) -> Result<String, ConfigError> {
    let v = shown_url(name, s);
    let u: http::Uri = s.parse().or_else(|e| err(format!("{name} {v} is not a URL: {e}")))?;
    let scheme = u.scheme_str().unwrap_or_default();
    let Some(authority) = u.authority() else { return err(format!("{name} {v} must be an absolute http(s) URL")) };
    if !matches!(scheme, "http" | "https") || authority.host().is_empty() {
        return err(format!("{name} {v} must be an absolute http(s) URL"));
    }
    if u.query().is_some() || authority.as_str().contains('@') {
        return err(format!("{name} {v} must not have a query or user information"));
    }
    Ok(format!("{scheme}://{}{}", authority.as_str().to_ascii_lowercase(), u.path().trim_end_matches('/')))
}

/// Refuses a plain `http://` URL (as [`http_url`] returns it) to anything but a loopback host
/// (`127.0.0.0/8`, `::1`, `localhost`): payments, facilitator credentials and paid content would
/// otherwise cross the network unencrypted. `name` is the variable, for the error.
pub(super) fn require_tls(name: &str, url: &str) -> Result<(), ConfigError> {
    let Some(rest) = url.strip_prefix("http://") else { return Ok(()) };
    let authority = rest.split('/').next().unwrap_or_default();
    // `host:port`, `[v6]:port` or a bare host; http_url has already refused user information.
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return Ok(());
    }
    err(format!(
        "{name} {} uses http://, which is allowed only for a loopback host (127.0.0.0/8, ::1, localhost): payments and content would cross the network unencrypted; use https://",
        shown_url(name, url)
    ))
}

/// A URL variable's value for an error: [`shown`], except `ORIGIN_URL`, hidden whole: its host
/// would tell any client where to reach the API around the paywall.
fn shown_url(name: &str, url: &str) -> String {
    if name == "ORIGIN_URL" {
        format!("`{}`", hidden(url))
    } else {
        shown(url)
    }
}

/// Parses `ORIGIN_HEADERS`: a JSON object of header name → string value. Errors name the
/// header, never a value.
pub(super) fn origin_headers(raw: Option<String>) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, ConfigError> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&raw) else {
        return err("ORIGIN_HEADERS must be a JSON object of header name to value, like {\"X-Paywall-Secret\": \"…\"}");
    };
    if map.len() > MAX_ORIGIN_HEADERS {
        return err(format!("ORIGIN_HEADERS has {} headers; at most {MAX_ORIGIN_HEADERS}", map.len()));
    }
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let Ok(header) = http::HeaderName::from_bytes(name.as_bytes()) else { return err(format!("ORIGIN_HEADERS: {} is not a header name", shown(&name))) };
        if crate::headers::is_owned_request_header(header.as_str()) {
            return err(format!("ORIGIN_HEADERS: {} is set by the paywall or the transport and cannot be configured", shown(&name)));
        }
        let Some(Ok(mut v)) = value.as_str().map(http::HeaderValue::from_str) else {
            return err(format!("ORIGIN_HEADERS: the value of {} must be a string of visible ASCII", shown(&name)));
        };
        v.set_sensitive(true);
        out.push((header, v));
    }
    Ok(out)
}
