//! What the pipeline needs from its host ([`Platform`]: the sum of one trait per capability,
//! with [`PlatformError`] as their error) and the state one isolate keeps across requests
//! ([`IsolateState`]). Declarations only: implementations live in `crate::edge` (the Worker) and
//! in the tests' fake platforms.

use std::future::Future;

use http::{Request, Response};

use crate::facilitator::cdp::CdpKey;
use crate::facilitator::{FacilitatorHealth, HttpReply, UpstreamError};
use crate::ledger::{Op, Reply};
use crate::pass::PassCache;
use crate::telemetry::Decision;

use super::forward::{ForwardError, origin_failure};
use super::derived::Derived;
use super::limits::BlockList;
use super::rewrite::UrlRewrite;

/// What the pipeline needs from its host, as the sum of its capabilities: [`Origin`],
/// [`FacilitatorTransport`], [`Ledger`], [`Kv`], [`RateLimits`], [`Signer`], [`Runtime`] and
/// [`IsolateCaches`]. Implemented over `worker::*` on the edge and by in-memory fakes in tests;
/// any type with every capability is a `Platform` (a blanket implementation). Every call that
/// leaves the isolate takes a time limit.
///
/// The optional capabilities ([`Kv`], [`RateLimits`], [`Signer`], [`Runtime::record`]) have
/// defaults that answer as the edge does when the binding is missing, so a test fake writes
/// `impl Kv for Fake {}` for what it does not use.
pub trait Platform: Origin + FacilitatorTransport + Ledger + Kv + RateLimits + Signer + Runtime + IsolateCaches {}

impl<T: Origin + FacilitatorTransport + Ledger + Kv + RateLimits + Signer + Runtime + IsolateCaches> Platform for T {}

/// What a platform capability failed with (every capability but the upstream calls, which
/// answer [`UpstreamError`], and [`Ledger::ledger`]). Its `Display` is the message alone, as the
/// logs and answers carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformError {
    /// The capability is not offered here, or its binding is missing (a KV namespace, a rate
    /// limiting binding, a signing key store): what is missing.
    Unavailable(String),
    /// A body is larger than the caller's limit (bytes, in the message).
    TooLarge(String),
    /// The runtime failed the call: its message.
    Failed(String),
}

impl std::fmt::Display for PlatformError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlatformError::Unavailable(m) | PlatformError::TooLarge(m) | PlatformError::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for PlatformError {}

/// The message, for callers whose own errors are still text.
impl From<PlatformError> for String {
    fn from(e: PlatformError) -> String {
        e.to_string()
    }
}

/// A request extension: the origin's time limit covers the whole answer, body included
/// ([`Origin::origin`]); a body still arriving at the limit fails to read
/// ([`PlatformError::Failed`]).
#[derive(Debug, Clone, Copy)]
pub struct WholeAnswer;

/// The origin: requests to it and its bodies.
#[allow(async_fn_in_trait)]
pub trait Origin: 'static {
    /// An HTTP body; the origin's bodies pass through opaque (streamed on the edge).
    type Body: 'static;
    /// A body holding `bytes`.
    fn body(bytes: Vec<u8>) -> Self::Body;
    /// Sends `req` (absolute URI) to the origin with its method byte for byte, without
    /// following redirects. `timeout_seconds` bounds the wait for the response head; with a
    /// [`WholeAnswer`] in the request's extensions, also the reading of a successful (< 400) body (an answer
    /// the paywall reads before it settles: a body meter's, a paid MCP call's), so that no
    /// payment is held past its lease by a body that never ends.
    async fn origin(&self, req: Request<Self::Body>, timeout_seconds: u64) -> Result<Response<Self::Body>, UpstreamError>;

    /// Sends an unpriced request (already prepared: canonical URL, forwarding headers) to the
    /// origin within `timeout_seconds`, and answers with the origin's response, its URL headers
    /// rewritten by `rewrite`, or, if the origin fails, with [`super::origin_unavailable`] (the
    /// cause is logged). Nothing is paid on this path, so a platform may hand back an answer that is still
    /// on its way (the edge gives the runtime a promise). This default: [`Origin::origin`],
    /// then the rewrite or the failure answer.
    async fn pass_through(&self, req: Request<Self::Body>, timeout_seconds: u64, rewrite: Option<UrlRewrite>) -> Response<Self::Body>
    where
        Self: Sized + Platform,
    {
        match self.origin(req, timeout_seconds).await {
            Ok(mut res) => {
                if let Some(r) = &rewrite {
                    r.apply(res.headers_mut());
                }
                res
            }
            Err(e) => origin_failure(self, &ForwardError::Upstream(e), None),
        }
    }
    /// A response body the caller writes while it is being sent (an MCP tool's SSE answer
    /// relayed event by event, `gateway/mcp.rs`): the writer and the body. This default: `None`,
    /// not offered; the caller then sends the answer whole.
    fn relay(&self) -> Option<(Box<dyn RelayWriter>, Self::Body)> {
        None
    }
    /// [`Origin::read_body`], handing each chunk to `on_chunk` as it arrives. This default reads
    /// the whole body, then hands it over as one chunk.
    async fn read_body_with(&self, body: Self::Body, max_bytes: usize, on_chunk: &mut dyn FnMut(&[u8])) -> Result<Vec<u8>, PlatformError> {
        let bytes = self.read_body(body, max_bytes).await?;
        on_chunk(&bytes);
        Ok(bytes)
    }
    /// Reads a body to its end: a request's (only the admin endpoint reads one) or a metered
    /// origin answer's (`upto` body meters). Err when it is longer than
    /// `max_bytes` ([`PlatformError::TooLarge`]) or cannot be read. This default refuses every
    /// body.
    async fn read_body(&self, body: Self::Body, max_bytes: usize) -> Result<Vec<u8>, PlatformError> {
        let _ = (body, max_bytes);
        Err(PlatformError::Unavailable("this platform does not read request bodies".into()))
    }
}

/// The writing end of an [`Origin::relay`] body. Writes after the client has gone are dropped.
pub trait RelayWriter {
    /// Sends `bytes` next.
    fn write(&self, bytes: &[u8]);
    /// Ends the body.
    fn close(&self);
}

/// The transport of facilitator calls (`/verify`, `/settle`).
#[allow(async_fn_in_trait)]
pub trait FacilitatorTransport: 'static {
    /// `POST url` with a JSON body; reads at most [`crate::facilitator::MAX_REPLY_BYTES`].
    async fn post_json(&self, url: &str, authorization: Option<&str>, json: String, timeout_seconds: u64) -> Result<HttpReply, UpstreamError>;
}

/// The payment ledger.
#[allow(async_fn_in_trait)]
pub trait Ledger: 'static {
    /// Applies `op` in the ledger shard named `shard` (one writer per shard; a Durable Object on
    /// the edge). Err: the ledger could not be reached or failed; the caller fails closed.
    async fn ledger(&self, shard: &str, op: &Op) -> Result<Reply, String>;
}

/// The key-value store of pass records (Workers KV on the edge, the `PASSES` binding). The
/// defaults answer [`PlatformError::Unavailable`], as the edge does without the binding.
#[allow(async_fn_in_trait)]
pub trait Kv: 'static {
    /// The value under `key`, None when there is none.
    async fn kv_get(&self, key: &str) -> Result<Option<String>, PlatformError> {
        let _ = key;
        Err(PlatformError::Unavailable("no KV namespace".into()))
    }
    /// Stores `value` under `key` for `ttl_seconds`.
    async fn kv_put(&self, key: &str, value: String, ttl_seconds: u64) -> Result<(), PlatformError> {
        let _ = (key, value, ttl_seconds);
        Err(PlatformError::Unavailable("no KV namespace".into()))
    }
}

/// Rate limiting (the Workers Rate Limiting bindings on the edge).
#[allow(async_fn_in_trait)]
pub trait RateLimits: 'static {
    /// Counts one request under `key` with the Workers Rate Limiting binding named `binding`:
    /// Ok(true) within the limit, Ok(false) over it. Err: no such binding or the call failed
    /// (the caller does not limit). This default: no binding ([`PlatformError::Unavailable`]).
    async fn rate_limit(&self, binding: &str, key: &str) -> Result<bool, PlatformError> {
        let _ = key;
        Err(PlatformError::Unavailable(format!("{binding} is not a rate limiting binding")))
    }
}

/// Signing with CDP API keys and the payment context's key (Web Crypto on the edge).
#[allow(async_fn_in_trait)]
pub trait Signer: 'static {
    /// Signs `message` with a CDP API key, or with the payment context's key (which travels in
    /// the same form, [`crate::payment_context::ContextKey::signing_key`], under the id
    /// `payment-context/<kid>`) (`crypto.subtle.sign` on the edge): the raw 64-byte
    /// signature (ECDSA P-256 over SHA-256 as r‖s, or Ed25519). Err: the key could not be
    /// imported or the signature failed. This default: no signing ([`PlatformError::Unavailable`]).
    async fn sign(&self, key: &CdpKey, message: &[u8]) -> Result<Vec<u8>, PlatformError> {
        let _ = (key, message);
        Err(PlatformError::Unavailable("this platform does not sign".into()))
    }
}

/// The runtime around one request: clock, randomness, logs, metrics, background work and the
/// client's connection.
pub trait Runtime: 'static {
    /// Whether the client has gone away (its request's abort signal fired).
    fn client_gone(&self) -> bool;
    /// Runs `fut` to completion even if the client goes away (`ctx.waitUntil` on the edge) and
    /// resolves to its output; `None` if the runtime dropped it.
    fn run_to_completion<T: 'static>(&self, fut: impl Future<Output = T> + 'static) -> impl Future<Output = Option<T>>;
    /// Runs `fut` after the response, without delaying it (`ctx.waitUntil` on the edge).
    fn defer(&self, fut: impl Future<Output = ()> + 'static);
    /// Unix time, seconds.
    fn now(&self) -> u64;
    /// Milliseconds since the Unix epoch, for latencies (on the edge, `Date.now`, which only
    /// advances across I/O).
    fn millis(&self) -> u64;
    /// 32 bytes from a CSPRNG.
    fn random32(&self) -> Result<[u8; 32], PlatformError>;
    /// One log line (Workers logs on the edge).
    fn log(&self, line: &str);
    /// Records a priced request's decision as a data point in the `METRICS` Analytics Engine
    /// dataset, when bound (its log line goes through [`Runtime::log`]). This default records
    /// nothing, as the edge does without the binding.
    fn record(&self, decision: &Decision) {
        let _ = decision;
    }
}

/// This isolate's caches, kept across its requests.
pub trait IsolateCaches: 'static {
    /// This isolate's cache of pass records.
    fn passes(&self) -> &PassCache;
    /// This isolate's state: failing facilitators, clients blocked for failed payments.
    fn isolate(&self) -> &IsolateState;
}

/// State an isolate keeps across requests (on the edge, for the isolate's lifetime).
#[derive(Debug, Default)]
pub struct IsolateState {
    /// Facilitators seen failing, for failover.
    pub health: FacilitatorHealth,
    /// Clients over their route's `failed` rate limit.
    pub blocked: BlockList,
    /// What the isolate built from its configuration: challenge layouts, the discovery document.
    pub derived: Derived,
}

/// The ledger's typed client ([`crate::ledger::Transport::call`]) travels by [`Ledger::ledger`].
impl<P: Platform> crate::ledger::Transport for P {
    async fn send(&self, shard: &str, op: &Op) -> Result<Reply, String> {
        self.ledger(shard, op).await
    }
}
