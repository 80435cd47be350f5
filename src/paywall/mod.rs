//! The browser paywall: the HTML page a person gets, instead of the JSON 402, when a browser
//! navigates to a priced route.
//!
//! Owns: deciding from a request whether it is a browser navigation ([`wants_html`]); turning a
//! 402 challenge the pipeline already built into the page ([`page_for_challenge`]); the page
//! itself ([`render`]: what is for sale, the price in dollars and atomic units, the network, what
//! a pass buys, deep links for phone wallets, how to pay without JavaScript), its script
//! (`page.js`: connect the injected EIP-1193 wallet, switch chain, sign the EIP-3009
//! `TransferWithAuthorization` with `eth_signTypedData_v4`, retry with `PAYMENT-SIGNATURE`, show
//! the content or say in words what went wrong; with no injected wallet, draw the deep link as a
//! QR code with the npm package `lean-qr`, bundled into `lean-qr.js` by `scripts/vendor-qr.mjs`),
//! its style (`page.css`) and its security headers.
//!
//! Must not touch: payments, passes, the ledger, the facilitator, the origin. It renders a
//! challenge; the `PAYMENT-REQUIRED` header is carried over unchanged, so an agent that sends
//! browser-like headers still reads the same `PaymentRequired`. Requests that are not browser
//! navigations never see this module's output: their JSON 402 is byte for byte what it was.
//!
//! Safety: every value from the configuration or the request is HTML-escaped (`html-escape`)
//! before it enters markup; the data the script reads travels as JSON in a
//! `<script type="application/json">` block with every `<`, `>`, `&`, U+2028 and U+2029 written as
//! a `\u` escape, so no value can close the element; the script writes text only (`textContent`).
//! The page is served with a `Content-Security-Policy` ([`content_security_policy`]) that allows
//! its own script and style only, by SHA-256 hash (computed by `build.rs` at build time), and
//! `connect-src 'self'`; nothing is loaded from anywhere else.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use http::header::{HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, VARY, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderMap, Method, Response, StatusCode};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use crate::config::Route;
use crate::evm::{caip2_chain_id, network_by_id, Address};
use crate::x402::{PaymentRequirements, PAYMENT_REQUIRED};

/// The page's script, inlined in its `<script>` element byte for byte (the CSP names its hash):
/// the QR code generator (`lean-qr.js`, defines the global `LeanQR`), then `page.js`.
pub const SCRIPT: &str = concat!(include_str!("lean-qr.js"), include_str!("page.js"));
/// The page's style sheet, inlined in its `<style>` element byte for byte (the CSP names its hash).
pub const STYLE: &str = include_str!("page.css");

// `SCRIPT_SHA256` and `STYLE_SHA256`: `'sha256-<base64>'` CSP hash sources of the two files,
// written by build.rs.
include!(concat!(env!("OUT_DIR"), "/paywall_hashes.rs"));

/// The `error` of a challenge to a request that carried no payment: not worth showing a person.
const NO_PAYMENT_ERROR: &str = "PAYMENT-SIGNATURE header is required";

/// The page's `Content-Security-Policy` (CSP Level 3): nothing by default; its own inline script
/// and style by SHA-256 hash; `fetch` to its own origin only (the paid retry); no `<base>`, no
/// form submission, never framed. The QR code is SVG built in the DOM, so no image source is
/// needed.
pub fn content_security_policy() -> String {
    format!("default-src 'none'; script-src {SCRIPT_SHA256}; style-src {STYLE_SHA256}; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
}

/// Whether a request is a browser navigation that should get the HTML page: a `GET` with
/// `Sec-Fetch-Mode: navigate` (Fetch Metadata, sent by every current browser on navigations and
/// never on `fetch()`/XHR) and an `Accept` that prefers `text/html` ([`accept_prefers_html`]).
/// Everything else (agents, `curl`, scripts, browsers too old to send Fetch Metadata) keeps the
/// JSON 402.
pub fn wants_html(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::GET
        && headers.get_all("sec-fetch-mode").iter().any(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"navigate"))
        && accept_prefers_html(headers)
}

/// Whether `Accept` (RFC 9110 §12.5.1) lists `text/html` with a quality above zero and at least
/// as high as `application/json`'s. Wildcards decide nothing; a malformed `q` counts as 0.
pub fn accept_prefers_html(headers: &HeaderMap) -> bool {
    let (mut html, mut json) = (0u16, 0u16);
    for value in headers.get_all(ACCEPT).iter().filter_map(|v| v.to_str().ok()) {
        for range in value.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1000), |(_, v)| quality(v.trim()))
                .unwrap_or(0);
            if media.eq_ignore_ascii_case("text/html") {
                html = html.max(q);
            } else if media.eq_ignore_ascii_case("application/json") {
                json = json.max(q);
            }
        }
    }
    html > 0 && html >= json
}

/// An RFC 9110 `qvalue` (`0`, `0.5`, `1.000`) in thousandths; `None` if malformed.
fn quality(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        let digit = frac.as_bytes().get(i).copied().unwrap_or(b'0');
        if !digit.is_ascii_digit() {
            return None;
        }
        thousandths = thousandths * 10 + u16::from(digit - b'0');
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Replaces a 402 challenge by the HTML page, for a request [`wants_html`] chose. `res` is the
/// pipeline's answer for `route`; only a 402 that carries `PAYMENT-REQUIRED` (a challenge, not a
/// refused settlement, which carries `PAYMENT-RESPONSE`) is replaced, and its headers are kept,
/// `PAYMENT-REQUIRED` included. `now` is Unix seconds (the page corrects the browser's clock by
/// it). Anything else is returned unchanged.
pub fn page_for_challenge<B>(res: Response<B>, route: &Route, now: u64, body: impl FnOnce(Vec<u8>) -> B) -> Response<B> {
    if res.status() != StatusCode::PAYMENT_REQUIRED {
        return res;
    }
    let Some(required) = res.headers().get(PAYMENT_REQUIRED).and_then(|v| decode_required(v.as_bytes())) else { return res };
    let page = render(&required, route, now);
    let (mut parts, _json) = res.into_parts();
    let h = &mut parts.headers;
    h.remove(CONTENT_LENGTH);
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&content_security_policy()) {
        h.insert(CONTENT_SECURITY_POLICY, v);
    }
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.append(VARY, HeaderValue::from_static("Accept, Sec-Fetch-Mode"));
    Response::from_parts(parts, body(page.into_bytes()))
}

/// Decodes a `PAYMENT-REQUIRED` value (standard base64 of the `PaymentRequired` JSON) into a JSON
/// object. Kept as a `Value` (not the typed struct) because the page reads only two of its fields
/// and passes the rest to the script as is, and deriving `Deserialize` for it costs ~15 KB of wasm.
fn decode_required(value: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Value>(&STANDARD.decode(value).ok()?).ok().filter(Value::is_object)
}

/// `wallet_addEthereumChain` parameters (EIP-3085) and a display name for a network the page can
/// ask a wallet to add. Chain ids are EIP-155; RPC and explorer URLs are the networks' public ones.
struct KnownChain {
    chain_id: u64,
    name: &'static str,
    /// Native currency name and symbol (18 decimals on every chain listed).
    native: (&'static str, &'static str),
    rpc: &'static str,
    explorer: &'static str,
}

const KNOWN_CHAINS: &[KnownChain] = &[
    KnownChain { chain_id: 8453, name: "Base", native: ("Ether", "ETH"), rpc: "https://mainnet.base.org", explorer: "https://basescan.org" },
    KnownChain { chain_id: 84532, name: "Base Sepolia", native: ("Ether", "ETH"), rpc: "https://sepolia.base.org", explorer: "https://sepolia.basescan.org" },
    KnownChain { chain_id: 43114, name: "Avalanche C-Chain", native: ("Avalanche", "AVAX"), rpc: "https://api.avax.network/ext/bc/C/rpc", explorer: "https://snowtrace.io" },
    KnownChain { chain_id: 43113, name: "Avalanche Fuji", native: ("Avalanche", "AVAX"), rpc: "https://api.avax-test.network/ext/bc/C/rpc", explorer: "https://testnet.snowtrace.io" },
    KnownChain { chain_id: 137, name: "Polygon", native: ("POL", "POL"), rpc: "https://polygon-rpc.com", explorer: "https://polygonscan.com" },
    KnownChain { chain_id: 80002, name: "Polygon Amoy", native: ("POL", "POL"), rpc: "https://rpc-amoy.polygon.technology", explorer: "https://amoy.polygonscan.com" },
    KnownChain { chain_id: 42161, name: "Arbitrum One", native: ("Ether", "ETH"), rpc: "https://arb1.arbitrum.io/rpc", explorer: "https://arbiscan.io" },
    KnownChain { chain_id: 421614, name: "Arbitrum Sepolia", native: ("Ether", "ETH"), rpc: "https://sepolia-rollup.arbitrum.io/rpc", explorer: "https://sepolia.arbiscan.io" },
    KnownChain { chain_id: 42220, name: "Celo", native: ("Celo", "CELO"), rpc: "https://forno.celo.org", explorer: "https://celoscan.io" },
];

/// How the page shows one offered `PaymentRequirements`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferView {
    /// EIP-155 chain id of `network`; `None` outside `eip155:` (the page cannot pay those).
    pub chain_id: Option<u64>,
    /// "Base Sepolia", or "chain 12345" for a chain the page does not know by name.
    pub network_name: String,
    /// "$0.01 USDC" when `asset` is the network's default USDC, else "10000 atomic units of 0x…".
    pub price: String,
    /// `wallet_addEthereumChain` parameters, for the networks in the page's table.
    pub add_chain: Option<Value>,
}

/// The view of `r`: chain, network name, price in words, `wallet_addEthereumChain` data.
pub fn offer_view(r: &PaymentRequirements) -> OfferView {
    let chain_id = caip2_chain_id(&r.network);
    let known = chain_id.and_then(|id| KNOWN_CHAINS.iter().find(|c| c.chain_id == id));
    let usdc = network_by_id(&r.network).filter(|n| Address::parse(n.usdc).is_some() && Address::parse(n.usdc) == Address::parse(&r.asset));
    let price = match usdc.and_then(|n| dollars(&r.amount, n.usdc_decimals)) {
        Some(d) => format!("${d} USDC"),
        None => format!("{} atomic units of {}", r.amount, r.asset),
    };
    let network_name = match (known, chain_id) {
        (Some(c), _) => c.name.to_string(),
        (None, Some(id)) => format!("chain {id}"),
        (None, None) => r.network.clone(),
    };
    let add_chain = known.map(|c| {
        json!({
            "chainId": format!("0x{:x}", c.chain_id),
            "chainName": c.name,
            "nativeCurrency": { "name": c.native.0, "symbol": c.native.1, "decimals": 18 },
            "rpcUrls": [c.rpc],
            "blockExplorerUrls": [c.explorer],
        })
    });
    OfferView { chain_id, network_name, price, add_chain }
}

/// An atomic amount as a decimal of whole tokens with at least two fraction digits, by string
/// arithmetic (never floats): `("10000", 6)` → `"0.01"`, `("1", 6)` → `"0.000001"`,
/// `("2500000", 6)` → `"2.50"`. `None` unless `amount` is decimal digits.
pub fn dollars(amount: &str, decimals: u8) -> Option<String> {
    if amount.is_empty() || !amount.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let d = usize::from(decimals);
    let digits = amount.trim_start_matches('0');
    let padded = format!("{digits:0>width$}", width = d + 1);
    let (int, frac) = padded.split_at(padded.len() - d);
    let frac = frac.trim_end_matches('0');
    Some(format!("{int}.{frac:0<2}"))
}

/// The deep links that open `url` in a phone wallet's in-app browser: MetaMask's universal link
/// (`https://metamask.app.link/dapp/<host/path>`, put in the QR code) and Coinbase Wallet's
/// (`https://go.cb-w.com/dapp?cb_url=<url>`). `None` unless `url` is absolute `http(s)`.
pub fn wallet_links(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    Some((format!("https://metamask.app.link/dapp/{rest}"), format!("https://go.cb-w.com/dapp?cb_url={}", utf8_percent_encode(url, NON_ALPHANUMERIC))))
}

/// JSON for a `<script type="application/json">` element: `<`, `>`, `&`, U+2028 and U+2029 as
/// `\u` escapes (they can occur only inside JSON strings, where the escape means the same), so
/// no value can end the element or open a comment in it.
pub fn script_json(value: &Value) -> String {
    let raw = value.to_string();
    let mut out = String::with_capacity(raw.len() + 16);
    for c in raw.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// The page for `required` (the `PaymentRequired` JSON of `route`'s challenge, whose `accepts`
/// are `route.accepts`' requirements in order) at Unix time `now`.
///
/// Shows the resource URL (`resource.url`), the route's description, what its pass buys, each
/// offer (price in dollars for the network's USDC and in atomic units, network, `payTo`,
/// `asset`), the reason of a refused pass (`error`), a "Pay with wallet" button (shown by the
/// script), deep links for phone wallets (drawn as a QR code by the script when no wallet is
/// injected) and how to pay from code. The script's data:
/// `{now, paymentRequired, offers: [{chainId, network, price, addChain}], pass, walletLink}`.
pub fn render(required: &Value, route: &Route, now: u64) -> String {
    let accepts: Vec<&PaymentRequirements> = route.accepts.iter().map(|o| &o.requirements).collect();
    let mut views: Vec<OfferView> = accepts.iter().map(|r| offer_view(r)).collect();
    // A metered option says its price is a maximum and how it is measured.
    for (v, o) in views.iter_mut().zip(&route.accepts) {
        if let Some(meter) = &o.meter {
            v.price = format!("up to {} (metered: {})", v.price, meter.describe());
        }
    }
    let url = required["resource"]["url"].as_str().unwrap_or_default();
    let error = required["error"].as_str().unwrap_or_default();
    let description = route.description.as_deref().filter(|d| !d.trim().is_empty());
    let pass = route.pass.as_ref().map(|p| p.summary.as_str());
    let title = description.unwrap_or("Paid resource");

    let mut h = String::with_capacity(16 * 1024);
    h.push_str("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<meta name=\"robots\" content=\"noindex\">\n");
    h.push_str(&format!("<title>Payment required: {}</title>\n<style>", text(title)));
    h.push_str(STYLE);
    h.push_str("</style>\n</head>\n<body>\n<main>\n<p class=\"kicker\">HTTP 402 · Payment required</p>\n");
    h.push_str(&format!("<h1>{}</h1>\n", text(title)));
    let lead = match (views.as_slice(), pass) {
        ([v], Some(p)) => format!("One payment of <strong>{}</strong> on {} buys {}.", text(&v.price), text(&v.network_name), text(p)),
        ([v], None) => format!("Each request costs <strong>{}</strong> on {}, paid from your wallet with one signature.", text(&v.price), text(&v.network_name)),
        (_, Some(p)) => format!("One payment buys {}. Choose how to pay below.", text(p)),
        (_, None) => "Each request is paid from your wallet with one signature. Choose how to pay below.".to_string(),
    };
    h.push_str(&format!("<p class=\"lead\">{lead}</p>\n<dl class=\"terms\">\n<dt>Resource</dt><dd><code>{}</code></dd>\n", text(url)));
    if let Some(d) = description {
        h.push_str(&format!("<dt>Description</dt><dd>{}</dd>\n", text(d)));
    }
    if let Some(p) = pass {
        h.push_str(&format!("<dt>Pass</dt><dd>one payment buys {}</dd>\n", text(p)));
    }
    h.push_str("</dl>\n<div class=\"offers\">\n");
    let choose = views.len() > 1;
    for (i, (r, v)) in accepts.iter().zip(&views).enumerate() {
        h.push_str("<label class=\"offer\">");
        if choose {
            h.push_str(&format!("<input type=\"radio\" name=\"offer\" value=\"{i}\"{}> ", if i == 0 { " checked" } else { "" }));
        }
        h.push_str(&format!(
            "<span class=\"price\">{}</span> <span class=\"units\">{} atomic units</span><span class=\"where\">on {} <code>{}</code></span><span class=\"small\">pay to <code>{}</code> · asset <code>{}</code> ({} v{})</span></label>\n",
            text(&v.price),
            text(&r.amount),
            text(&v.network_name),
            text(&r.network),
            text(&r.pay_to),
            text(&r.asset),
            text(&r.extra.name),
            text(&r.extra.version),
        ));
    }
    h.push_str("</div>\n");
    if !error.is_empty() && error != NO_PAYMENT_ERROR {
        let reason = error.strip_suffix(NO_PAYMENT_ERROR).map_or(error, |r| r.trim_end_matches([';', ' ']));
        h.push_str(&format!("<p class=\"notice\">Not accepted: {}</p>\n", text(reason)));
    }
    h.push_str("<div id=\"pay\" class=\"pay\" hidden>\n<button id=\"pay-button\" type=\"button\">Pay with wallet</button>\n<div id=\"status\" class=\"status\" role=\"status\" aria-live=\"polite\"></div>\n</div>\n");
    let links = wallet_links(url);
    h.push_str("<section id=\"qr\" class=\"qr\">\n<div id=\"qr-code\" class=\"qr-code\" hidden></div>\n");
    match &links {
        Some((metamask, coinbase)) => {
            h.push_str("<p>No wallet in this browser? Open this page in a phone wallet's in-app browser to pay: scan the code with your phone, or follow a link there.</p>\n");
            h.push_str(&format!(
                "<p class=\"small\">Open in <a href=\"{}\">MetaMask</a> · <a href=\"{}\">Coinbase Wallet</a> · <a href=\"{}\">any wallet browser</a></p>\n",
                attr(metamask),
                attr(coinbase),
                attr(url)
            ));
        }
        None => h.push_str("<p>No wallet in this browser? Open this page in your phone wallet's browser to pay.</p>\n"),
    }
    h.push_str("</section>\n<section id=\"result\" class=\"result\" hidden></section>\n");
    h.push_str("<noscript><p class=\"notice\">JavaScript is off, so this page cannot ask a wallet to pay. Open it in a phone wallet with the links above, or pay from code as explained below.</p></noscript>\n");
    let first = accepts.first();
    h.push_str("<details class=\"code\">\n<summary>Paying from code (x402)</summary>\n<p>This answer is an x402 v2 challenge (HTTP 402): its <code>PAYMENT-REQUIRED</code> header carries the payment requirements as base64 JSON. An x402 client pays by signing ");
    let upto = first.is_some_and(|r| r.scheme == "upto");
    h.push_str(if upto { "a Permit2 <code>PermitWitnessTransferFrom</code> (x402 <code>upto</code>: a maximum, of which the amount used is charged)" } else { "an EIP-3009 <code>TransferWithAuthorization</code>" });
    if let (Some(r), Some(v)) = (first, views.first()) {
        h.push_str(&format!(" of {} atomic units of <code>{}</code> to <code>{}</code> on <code>{}</code> ({})", text(&r.amount), text(&r.asset), text(&r.pay_to), text(&r.network), text(&v.network_name)));
    }
    h.push_str(" and sending the same request again with a <code>PAYMENT-SIGNATURE</code> header. With <code>@x402/fetch</code>:</p>\n<pre>");
    let network = first.map_or("eip155:84532", |r| r.network.as_str());
    let (class, module) = if upto { ("UptoEvmScheme", "upto") } else { ("ExactEvmScheme", "exact") };
    h.push_str(&text(&format!(
        "import {{ wrapFetchWithPayment, x402Client }} from \"@x402/fetch\";\nimport {{ {class} }} from \"@x402/evm/{module}/client\";\nimport {{ toClientEvmSigner }} from \"@x402/evm\";\nimport {{ privateKeyToAccount }} from \"viem/accounts\";\n\nconst signer = toClientEvmSigner(privateKeyToAccount(process.env.KEY));\nconst client = new x402Client().register(\"{network}\", new {class}(signer));\nconst res = await wrapFetchWithPayment(fetch, client)(\"{url}\");"
    )));
    h.push_str("</pre>\n</details>\n</main>\n");
    let offers: Vec<Value> = views.iter().map(|v| json!({ "chainId": v.chain_id, "network": v.network_name, "price": v.price, "addChain": v.add_chain })).collect();
    let data = json!({ "now": now, "paymentRequired": required, "offers": offers, "pass": pass, "walletLink": links.map(|l| l.0) });
    h.push_str(&format!("<script type=\"application/json\" id=\"x402-data\">{}</script>\n<script>", script_json(&data)));
    h.push_str(SCRIPT);
    h.push_str("</script>\n</body>\n</html>\n");
    h
}

#[cfg(test)]
mod tests;
