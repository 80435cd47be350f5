//! Rewriting the URL headers of an origin response (`Location`, `Content-Location`, `Link`) that
//! point at the origin to the public URL, so the origin's address never reaches a client. Pure
//! string work over headers; no I/O.


use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use crate::headers::URL_RESPONSE_HEADERS;

/// The rewrite of an origin response's URL headers for one request: `Location`,
/// `Content-Location` and `Link` URLs under `base` (`scheme://authority[prefix]`, the configured
/// origin) become URLs under `public` (`scheme://authority` the client used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlRewrite {
    pub base: String,
    pub prefix: String,
    pub public: String,
}

impl UrlRewrite {
    /// Rewrites `headers` in place; URLs elsewhere are left alone.
    pub fn apply(&self, headers: &mut HeaderMap) {
        rewrite_origin_urls(headers, &self.base, &self.prefix, &self.public);
    }
}

/// Rewrites the URL headers of an origin response that point at the origin (`base` =
/// `scheme://authority[prefix]`) to the public URL (`public` = `scheme://authority`), so the
/// origin's address never reaches a client. Relative URLs under the origin's path prefix lose
/// the prefix. Other URLs are left alone.
pub(super) fn rewrite_origin_urls(headers: &mut HeaderMap, base: &str, prefix: &str, public: &str) {
    for name in URL_RESPONSE_HEADERS {
        let values: Vec<HeaderValue> = headers.get_all(name).iter().cloned().collect();
        if values.is_empty() {
            continue;
        }
        let rewritten: Vec<HeaderValue> = values
            .iter()
            .map(|v| {
                let Ok(text) = v.to_str() else { return v.clone() };
                let out = if name == "link" { rewrite_link(text, base, prefix, public) } else { rewrite_url(text, base, prefix, public).unwrap_or_else(|| text.to_string()) };
                HeaderValue::from_str(&out).unwrap_or_else(|_| v.clone())
            })
            .collect();
        if rewritten == values {
            continue; // nothing pointed at the origin: the header stays where it was
        }
        headers.remove(name);
        for v in rewritten {
            headers.append(HeaderName::from_static(name), v);
        }
    }
}

/// The public form of one URL if it points at the origin; `None` to leave it.
pub fn rewrite_url(url: &str, base: &str, prefix: &str, public: &str) -> Option<String> {
    let origin_root = &base[..base.len() - prefix.len()];
    let path = if url.len() >= origin_root.len() && url.is_char_boundary(origin_root.len()) && url[..origin_root.len()].eq_ignore_ascii_case(origin_root) {
        let rest = &url[origin_root.len()..];
        if !(rest.is_empty() || rest.starts_with(['/', '?', '#'])) {
            return None; // another port or host that merely starts the same way
        }
        rest
    } else if let Some(rest) = url.strip_prefix("//").and_then(|r| {
        let authority = origin_root.split_once("://").map(|(_, a)| a)?;
        (r.len() >= authority.len() && r.is_char_boundary(authority.len()) && r[..authority.len()].eq_ignore_ascii_case(authority)).then(|| &r[authority.len()..])
    }) {
        if !(rest.is_empty() || rest.starts_with(['/', '?', '#'])) {
            return None;
        }
        rest
    } else if url.starts_with('/') && !url.starts_with("//") && !prefix.is_empty() {
        url
    } else {
        return None;
    };
    let path = match path.strip_prefix(prefix) {
        Some(rest) if !prefix.is_empty() && (rest.is_empty() || rest.starts_with(['/', '?', '#'])) => rest,
        _ if url.starts_with('/') && !url.starts_with("//") => return None, // relative, not under the prefix
        _ => path,
    };
    let path = if path.is_empty() || !path.starts_with('/') { format!("/{path}") } else { path.to_string() };
    Some(if url.starts_with('/') && !url.starts_with("//") { path } else { format!("{public}{path}") })
}

/// Rewrites every `<URL>` of a `Link` header value (RFC 8288) with [`rewrite_url`].
pub(super) fn rewrite_link(value: &str, base: &str, prefix: &str, public: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>').map(|c| open + c) else { break };
        out.push_str(&rest[..=open]);
        let url = &rest[open + 1..close];
        out.push_str(&rewrite_url(url, base, prefix, public).unwrap_or_else(|| url.to_string()));
        out.push('>');
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}
