//! Every list of header names the paywall owns, in one place: the request headers it reads and
//! never forwards (payment, pass, sign-in), the ones that could change the path or method the
//! origin sees, hop-by-hop and client forwarding headers it removes, the response headers whose
//! URLs it rewrites, and the CORS lists. Names only: no parsing and no policy here (forwarding
//! and configuration read these lists).
//!
//! A leaf below both the gateway and the configuration: it reads only the x402 wire names.

use crate::x402::siwx::SIGN_IN_WITH_X;
use crate::x402::{PAYMENT_SIGNATURE, X_PAYMENT};

/// Request and response header carrying the pass token.
pub const PASS_HEADER: &str = "x402-pass";
/// Response header carrying the pass's expiry, Unix seconds.
pub const PASS_EXPIRES_HEADER: &str = "x402-pass-expires";

/// Request header carrying the signed payment context to the origin
/// ([`crate::payment_context`]). Only the paywall writes it: a client's copy is removed on every
/// path.
pub const PAYMENT_CONTEXT_HEADER: &str = "x402-payment-context";

/// Request headers that belong to the paywall and are never forwarded to the origin as the client
/// sent them (the payment context is written by the paywall alone).
pub(crate) const PAYWALL_REQUEST_HEADERS: [&str; 5] = [PAYMENT_SIGNATURE, X_PAYMENT, PASS_HEADER, SIGN_IN_WITH_X, PAYMENT_CONTEXT_HEADER];

/// Request headers with which some servers and frameworks (IIS URL Rewrite, Symfony, Spring,
/// Envoy, …) let the *header* choose the path served. The paywall prices the request line's
/// path, so these are removed before forwarding, on every path.
pub const PATH_OVERRIDE_HEADERS: [&str; 9] = [
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-forwarded-prefix",
    "x-envoy-original-path",
    "x-override-url",
    "x-http-destinationurl",
];

/// Hop-by-hop request headers (RFC 9110 §7.6.1), removed before forwarding together with those
/// the request's `Connection` header names.
pub const HOP_BY_HOP_HEADERS: [&str; 7] = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

/// Client-supplied forwarding and client-IP headers, which origins and their frameworks read as
/// the client's address, host or scheme: removed, then `X-Forwarded-For` and `X-Real-IP` (from
/// `CF-Connecting-IP`, which Cloudflare's edge writes) and `X-Forwarded-Host` / `-Proto` are set
/// by the paywall from what the runtime knows. A client cannot choose the IP the origin sees.
pub(crate) const CLIENT_FORWARDING_HEADERS: [&str; 24] = [
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-forwarded",
    "forwarded-for",
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "client-ip",
    "x-cluster-client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "fastly-client-ip",
    "x-azure-clientip",
    "x-appengine-user-ip",
    "x-envoy-external-address",
    "cf-connecting-ipv6",
    "x-url-scheme",
];

/// Request headers the transport writes from the request itself.
pub const TRANSPORT_REQUEST_HEADERS: [&str; 2] = ["host", "content-length"];

/// Whether a request header (lower-case name) is the paywall's or the transport's, so that
/// `ORIGIN_HEADERS` may not set it: [`TRANSPORT_REQUEST_HEADERS`], the paywall's own request
/// headers (payment, pass, sign-in, payment context), and every header forwarding removes or writes (hop-by-hop,
/// client forwarding, path overrides) or refuses (method overrides). The configuration reads
/// the same lists as forwarding, so the two cannot drift apart.
pub fn is_owned_request_header(name: &str) -> bool {
    [&TRANSPORT_REQUEST_HEADERS[..], &PAYWALL_REQUEST_HEADERS, &HOP_BY_HOP_HEADERS, &CLIENT_FORWARDING_HEADERS, &PATH_OVERRIDE_HEADERS, &METHOD_OVERRIDE_HEADERS]
        .iter()
        .any(|list| list.contains(&name))
}

/// Whether a received header name (lower-case) is `name`, also spelt with `_` for `-`
/// (`x_original_url`): CGI-style servers (Rack, PHP) read both as one variable
/// (`HTTP_X_ORIGINAL_URL`).
pub(crate) fn is_spelling_of(received: &str, name: &str) -> bool {
    received.len() == name.len() && received.bytes().zip(name.bytes()).all(|(a, b)| a == b || (a == b'_' && b == b'-'))
}

/// Response headers whose URLs are rewritten when they point at the origin.
pub(crate) const URL_RESPONSE_HEADERS: [&str; 3] = ["location", "content-location", "link"];

/// Headers some frameworks read to change the request method. A request carrying one is refused
/// (400): the paywall prices the method it sees, and must not see a different one than the origin.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];

/// Query parameter with which some frameworks (Rails, Laravel, Symfony, method-override
/// middlewares) change the request method; refused (400) on priced paths.
pub const METHOD_OVERRIDE_PARAM: &str = "_method";

/// Response headers a browser client must be able to read.
pub(crate) const EXPOSED_HEADERS: &str = "PAYMENT-REQUIRED, PAYMENT-RESPONSE, X-PAYMENT-RESPONSE, X402-Pass, X402-Pass-Expires";

/// Request headers a browser may send to a priced route (the preflight's default answer).
pub(crate) const ALLOWED_REQUEST_HEADERS: &str = "PAYMENT-SIGNATURE, X-PAYMENT, X402-Pass, SIGN-IN-WITH-X, Content-Type";
