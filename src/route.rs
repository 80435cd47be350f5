//! Path canonicalisation and `METHOD /pattern` matching.
//!
//! The paywall decides what to charge on the *canonical* path and forwards that same canonical
//! path to the origin, so the resource it priced is the resource the origin serves.
//!
//! Canonical form (RFC 3986 §6.2.2 normalisation, plus refusals for what origins disagree on):
//! - percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, all other
//!   escapes are kept with upper-case hex;
//! - `%2F` (`/`), `%5C` (`\`), a raw `\`, encoded delimiters `%3B` (`;`), `%3F` (`?`), `%23`
//!   (`#`), `%00` and other control bytes, `%25` followed by two hex digits (double encoding),
//!   malformed escapes and raw non-ASCII are refused as ambiguous ([`PathError`], HTTP 400);
//! - `.` and `..` segments are resolved (never above the root) and empty segments (`//`) removed;
//!   a trailing `/` is kept; a dot segment carrying path parameters (`..;x`, `.;`, which some
//!   servers resolve and others do not — the classic `/..;/` bypass) is refused.
//!
//! Matching form: each segment of the canonical path cut at its first `;` (path parameters),
//! percent-decoded (origins decode `%40` to `@`), and lower-cased (matching is case-insensitive,
//! so `/PREMIUM` costs what `/premium` costs); empty segments and the trailing `/` dropped.

use crate::evm::hex_val as hex;

/// Largest request path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 8 * 1024;

/// Why a request path was refused (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    NotAbsolute,
    TooLong,
    BadEscape,
    EncodedSeparator,
    EncodedDelimiter,
    Backslash,
    DoubleEncoding,
    DotSegmentParams,
    EmptySegmentParams,
    ControlOrNonAscii,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "request path must start with '/'",
            PathError::TooLong => "request path is longer than 8192 bytes",
            PathError::BadEscape => "request path has a malformed percent-escape",
            PathError::EncodedSeparator => "request path has an encoded '/' or '\\' (%2F, %5C), which origins interpret differently",
            PathError::EncodedDelimiter => "request path has an encoded ';', '?' or '#' (%3B, %3F, %23), which origins interpret differently",
            PathError::Backslash => "request path contains '\\', which origins interpret differently",
            PathError::DoubleEncoding => "request path is double percent-encoded (%25XX)",
            PathError::DotSegmentParams => "request path has a '.' or '..' segment with ';' parameters, which origins interpret differently",
            PathError::EmptySegmentParams => "request path has a segment of only ';' parameters (as in /;x/), which some origins count as a segment and others drop",
            PathError::ControlOrNonAscii => "request path contains a control or non-ASCII byte",
        })
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Canonicalises a raw request path (without query). See the module docs for the rules.
pub fn canonicalize(raw: &str) -> Result<String, PathError> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    let b = raw.as_bytes();
    if b.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Pass 1: escapes.
    let mut decoded = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'%' => {
                let (h, l) = match (b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
                    (Some(h), Some(l)) => (h, l),
                    _ => return Err(PathError::BadEscape),
                };
                let v = (h << 4) | l;
                match v {
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    b';' | b'?' | b'#' => return Err(PathError::EncodedDelimiter),
                    b'%' => decoded.push_str("%25"),
                    0..=0x1f | 0x7f => return Err(PathError::ControlOrNonAscii),
                    v if is_unreserved(v) => decoded.push(v as char),
                    v => {
                        const UPPER: &[u8; 16] = b"0123456789ABCDEF";
                        decoded.push('%');
                        decoded.push(UPPER[(v >> 4) as usize] as char);
                        decoded.push(UPPER[(v & 15) as usize] as char);
                    }
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            0..=0x20 | 0x7f..=0xff => return Err(PathError::ControlOrNonAscii),
            _ => {
                decoded.push(c as char);
                i += 1;
            }
        }
    }
    // A literal '%' followed by two hex digits (raw, or decoded from unreserved escapes) is an
    // escape to an origin that decodes twice.
    let d = decoded.as_bytes();
    if d.windows(5).any(|w| w[..3] == *b"%25" && hex(w[3]).is_some() && hex(w[4]).is_some()) {
        return Err(PathError::DoubleEncoding);
    }
    // Pass 2: segments.
    let mut out: Vec<&str> = Vec::new();
    let mut trailing = false;
    for seg in decoded.split('/').skip(1) {
        if matches!(seg.split(';').next(), Some("." | "..")) && seg.contains(';') {
            return Err(PathError::DotSegmentParams);
        }
        trailing = false;
        match seg {
            "" | "." => trailing = true,
            ".." => {
                out.pop();
                trailing = true;
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for s in &out {
        path.push('/');
        path.push_str(s);
    }
    if trailing || out.is_empty() {
        path.push('/');
    }
    Ok(path)
}

/// The matching form of a canonical path: segments cut at `;`, percent-decoded, lower-cased.
pub fn match_segments(canonical: &str) -> Vec<String> {
    canonical
        .split('/')
        .map(|s| s.split(';').next().unwrap_or(""))
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().to_lowercase())
        .collect()
}

/// The segments an origin that routes on raw segments sees (Express, Hono: `:id` matches `;x`):
/// as [`match_segments`], except that a segment of only `;` parameters is kept, as `""`.
/// Differs from [`match_segments`] only for a path with such a segment
/// ([`has_params_only_segment`]); a path priced under either reading is refused
/// ([`PathError::EmptySegmentParams`]), since origins disagree on whether it is a segment.
pub fn raw_match_segments(canonical: &str) -> Vec<String> {
    canonical
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s.split(';').next().unwrap_or("")).decode_utf8_lossy().to_lowercase())
        .collect()
}

/// Whether a canonical path has a segment of only `;` parameters (`/users/;x/profile`, `/a/;`).
pub fn has_params_only_segment(canonical: &str) -> bool {
    canonical.split('/').any(|s| s.starts_with(';'))
}

/// One segment of a route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    /// Literal, lower-case.
    Lit(String),
    /// `:name` or `[name]`, or a `*` that is not last: exactly one segment.
    One,
    /// A final `*`: zero or more segments.
    Rest,
}

/// A parsed `METHOD /pattern` route key.
///
/// Syntax: an optional method (`GET`, `POST`, …, or `*`; absent means any method except
/// `OPTIONS`), a space, then a path whose segments are literals, `:name` / `[name]` (one segment)
/// or `*` (one segment, or when last, everything below). `GET` also covers `HEAD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    method: Option<http::Method>,
    segs: Vec<Seg>,
}

/// The methods a route key may name (upper case; a lower-case one is taken upper-cased): the
/// RFC 9110 methods, `PATCH` (RFC 5789), `QUERY` (the IETF safe method with a body), and the
/// WebDAV family (RFC 4918, RFC 3253 `REPORT`, RFC 5323 `SEARCH`), and `PURGE` (cache
/// invalidation, as Varnish and Fastly take it). Any other token is refused
/// with the nearest known one suggested, so a typo (`GTE`) fails at configuration, not as a
/// route that never matches.
pub const KNOWN_METHODS: [&str; 20] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY", "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE",
    "LOCK", "UNLOCK", "REPORT", "SEARCH", "PURGE",
];

impl RoutePattern {
    /// Parses a route key such as `"GET /weather/:city"` or `"/premium/*"`. The method, if any,
    /// must be one of [`KNOWN_METHODS`] (or `*`, any method).
    pub fn parse(key: &str) -> Result<RoutePattern, String> {
        let key = key.trim();
        let (method, path) = match key.split_once(' ') {
            Some((m, p)) => (Some(m), p.trim()),
            None => (None, key),
        };
        let method = match method {
            None | Some("*") => None,
            Some(m) => {
                let upper = m.to_ascii_uppercase();
                if !KNOWN_METHODS.contains(&upper.as_str()) {
                    let hint = crate::names::closest(&upper, KNOWN_METHODS).map(|k| format!("did you mean `{k}`? ")).unwrap_or_default();
                    return Err(format!("unknown method `{m}`; {hint}known methods: {}, or no method (any)", KNOWN_METHODS.join(", ")));
                }
                Some(http::Method::from_bytes(upper.as_bytes()).map_err(|_| format!("`{m}` is not an HTTP method"))?)
            }
        };
        let canonical = canonicalize(path).map_err(|e| format!("route path `{path}`: {e}"))?;
        if canonical != path && canonical.trim_end_matches('/') != path.trim_end_matches('/') {
            return Err(format!("route path `{path}` is not canonical; write it as `{canonical}`"));
        }
        let parts = match_segments(&canonical);
        let n = parts.len();
        let mut segs = Vec::with_capacity(n);
        for (i, p) in parts.into_iter().enumerate() {
            let seg = if p == "*" {
                if i + 1 == n {
                    Seg::Rest
                } else {
                    Seg::One
                }
            } else if p.starts_with(':') || (p.starts_with('[') && p.ends_with(']')) {
                Seg::One
            } else if p.contains('*') {
                return Err(format!("route path `{path}`: `*` must be a whole segment"));
            } else {
                Seg::Lit(p)
            };
            segs.push(seg);
        }
        Ok(RoutePattern { method, segs })
    }

    /// Whether a request with `method` and matching-form `segments` falls under this pattern.
    pub fn matches(&self, method: &http::Method, segments: &[String]) -> bool {
        self.matches_method(method) && self.matches_path(segments)
    }

    /// Whether `method` is one this pattern lists: its own (`GET` also covering `HEAD`), or any
    /// but `OPTIONS` when the pattern names none. Methods compare byte for byte (RFC 9110 §9.1:
    /// case-sensitive), so `get` is not `GET`.
    pub fn matches_method(&self, method: &http::Method) -> bool {
        match &self.method {
            None => method != http::Method::OPTIONS,
            Some(m) => m == method || (*m == http::Method::GET && method == http::Method::HEAD),
        }
    }

    /// The method this pattern lists; `None` for any method but `OPTIONS`.
    pub fn method(&self) -> Option<&http::Method> {
        self.method.as_ref()
    }

    /// Whether every request `other` matches is also matched by this pattern (method and path),
    /// so that, listed first, this pattern leaves `other` no request at all. Exact: a final `*`
    /// covers everything below it (zero segments included), `:name` covers any one segment, a
    /// literal only the same literal; a pattern without a method covers every method but
    /// `OPTIONS`, `GET` also covers `HEAD`.
    pub fn covers(&self, other: &RoutePattern) -> bool {
        let methods = match (&self.method, &other.method) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(m), Some(o)) => m == o || (*m == http::Method::GET && *o == http::Method::HEAD),
        };
        methods && Self::covers_path(&self.segs, &other.segs)
    }

    fn covers_path(mine: &[Seg], theirs: &[Seg]) -> bool {
        match (mine.first(), theirs.first()) {
            (Some(Seg::Rest), _) => true,
            (None, None) => true,
            // Theirs goes on (or ends with a `*` that also matches more segments); mine has ended.
            (None, Some(_)) => false,
            // Theirs has ended where mine needs one more segment; or theirs ends with a `*` that
            // matches zero segments here, which `:name` and a literal do not.
            (Some(_), None | Some(Seg::Rest)) => false,
            (Some(Seg::One), Some(Seg::One | Seg::Lit(_))) => Self::covers_path(&mine[1..], &theirs[1..]),
            (Some(Seg::Lit(a)), Some(Seg::Lit(b))) if a == b => Self::covers_path(&mine[1..], &theirs[1..]),
            (Some(Seg::Lit(_)), Some(_)) => false,
        }
    }

    /// Whether the pattern has no literal segment (`/*`, `/:lang/*`): it names no place, every
    /// path of some length matches it.
    pub fn names_no_place(&self) -> bool {
        !self.segs.iter().any(|s| matches!(s, Seg::Lit(_)))
    }

    /// Whether some path at or under the matching-form `prefix` matches this pattern.
    pub fn can_match_under(&self, prefix: &[String]) -> bool {
        for (i, want) in prefix.iter().enumerate() {
            match self.segs.get(i) {
                Some(Seg::Rest) => return true,
                Some(Seg::One) => {}
                Some(Seg::Lit(l)) if l == want => {}
                _ => return false,
            }
        }
        true
    }

    /// Whether matching-form `segments` fall under this pattern's path, whatever the method.
    pub fn matches_path(&self, segments: &[String]) -> bool {
        let mut i = 0;
        for seg in &self.segs {
            match seg {
                Seg::Rest => return true,
                Seg::One => {
                    if i >= segments.len() {
                        return false;
                    }
                }
                Seg::Lit(l) => {
                    if segments.get(i) != Some(l) {
                        return false;
                    }
                }
            }
            i += 1;
        }
        i == segments.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn canonical_forms() {
        let cases = [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a//b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/../../b", "/b"),
            ("/a/b/", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/%61%2e%2E/b", "/a../b"),
            ("/a/%2e%2e/b", "/b"),
            ("/a/%2E/b", "/a/b"),
            ("/a%20b", "/a%20b"),
            ("/a%40b", "/a%40b"),
            ("/a%3ab", "/a%3Ab"),
            ("/a;x=1", "/a;x=1"),
            ("/%7euser", "/~user"),
            ("/100%25", "/100%25"),
        ];
        for (raw, want) in cases {
            assert_eq!(canonicalize(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        let cases = [
            ("a/b", PathError::NotAbsolute),
            ("/a%2fb", PathError::EncodedSeparator),
            ("/a%2Fb", PathError::EncodedSeparator),
            ("/a%5cb", PathError::EncodedSeparator),
            ("/weather%3bx", PathError::EncodedDelimiter),
            ("/weather%3F", PathError::EncodedDelimiter),
            ("/weather%23frag", PathError::EncodedDelimiter),
            ("/a\\b", PathError::Backslash),
            ("/a%252e%252e/b", PathError::DoubleEncoding),
            ("/%25%41%41", PathError::DoubleEncoding),
            ("/free/..;/premium", PathError::DotSegmentParams),
            ("/.;/premium", PathError::DotSegmentParams),
            ("/a%2", PathError::BadEscape),
            ("/a%zz", PathError::BadEscape),
            ("/a%00", PathError::ControlOrNonAscii),
            ("/a b", PathError::ControlOrNonAscii),
            ("/é", PathError::ControlOrNonAscii),
        ];
        for (raw, want) in cases {
            assert_eq!(canonicalize(raw), Err(want), "{raw}");
        }
        assert_eq!(canonicalize(&format!("/{}", "a".repeat(MAX_PATH_BYTES))), Err(PathError::TooLong));
    }

    #[test]
    fn canonicalisation_is_idempotent_on_examples() {
        for raw in ["/a//b/../c/./d/", "/%7E%41%2e/x", "/a%40b;c/..", "/"] {
            let once = canonicalize(raw).unwrap();
            assert_eq!(canonicalize(&once).unwrap(), once);
        }
    }

    fn m(p: &str, method: Method, path: &str) -> bool {
        RoutePattern::parse(p).unwrap().matches(&method, &match_segments(&canonicalize(path).unwrap()))
    }

    #[test]
    fn matching_rules() {
        assert!(m("GET /weather", Method::GET, "/weather"));
        assert!(m("GET /weather", Method::HEAD, "/weather"));
        assert!(m("GET /weather", Method::GET, "/Weather/"));
        assert!(m("GET /weather", Method::GET, "/weather;jsessionid=1"));
        assert!(m("GET /weather", Method::GET, "/x/../weather"));
        assert!(!m("GET /weather", Method::POST, "/weather"));
        assert!(!m("GET /weather", Method::GET, "/weather/x"));
        assert!(m("/premium/*", Method::POST, "/premium/a/b"));
        assert!(m("/premium/*", Method::GET, "/premium"));
        assert!(!m("/premium/*", Method::OPTIONS, "/premium/a"));
        assert!(!m("/premium/*", Method::GET, "/premiumx"));
        assert!(m("GET /users/:id/profile", Method::GET, "/users/7/profile"));
        assert!(m("GET /users/[id]/profile", Method::GET, "/users/7/profile"));
        assert!(!m("GET /users/:id/profile", Method::GET, "/users/profile"));
        assert!(m("* /a/*/c", Method::DELETE, "/a/b/c"));
        assert!(m("GET /a@b", Method::GET, "/a%40b"));
        assert!(m("GET /a%40b", Method::GET, "/a@b"));
        assert!(m("GET /caf%C3%A9", Method::GET, "/CAF%c3%a9"));
    }

    fn covers(a: &str, b: &str) -> bool {
        RoutePattern::parse(a).unwrap().covers(&RoutePattern::parse(b).unwrap())
    }

    #[test]
    fn covering_is_exact() {
        for (a, b) in [
            ("GET /docs/*", "GET /docs/premium"),
            ("GET /docs/*", "GET /docs"),
            ("GET /docs/*", "GET /docs/*"),
            ("GET /docs/*", "GET /docs/:id/raw"),
            ("/docs/*", "POST /docs/premium"),
            ("* /docs/*", "/docs/x"),
            ("GET /docs/:id", "GET /docs/premium"),
            ("GET /docs/:id", "GET /docs/[slug]"),
            ("GET /a/*/c", "GET /a/b/c"),
            ("GET /docs/premium", "HEAD /docs/premium"),
            ("GET /DOCS/Premium", "GET /docs/premium"),
            ("/*", "DELETE /anything/at/all"),
        ] {
            assert!(covers(a, b), "{a} covers {b}");
        }
        for (a, b) in [
            ("GET /docs/premium", "GET /docs/*"),
            ("GET /docs/:id", "GET /docs/*"),
            ("GET /docs/:id", "GET /docs"),
            ("GET /docs/:id", "GET /docs/a/b"),
            ("GET /docs/*", "POST /docs/premium"),
            ("GET /docs/*", "/docs/premium"),
            ("HEAD /docs/premium", "GET /docs/premium"),
            ("GET /docs/free", "GET /docs/premium"),
            ("GET /docs", "GET /docs/premium"),
            ("GET /a/*/c", "GET /a/b/d"),
            ("GET /a/b/*", "GET /a/:x/c"),
        ] {
            assert!(!covers(a, b), "{a} does not cover {b}");
        }
    }

    #[test]
    fn bad_patterns_are_config_errors() {
        assert!(RoutePattern::parse("G(T /x").is_err());
        assert!(RoutePattern::parse("GET /a*b").is_err());
        assert!(RoutePattern::parse("GET /a/../b").is_err());
        assert!(RoutePattern::parse("GET a").is_err());
    }
}
