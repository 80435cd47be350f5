//! What the pipeline needs from its host ([`Platform`]) and the state one isolate keeps across
//! requests ([`IsolateState`]). Declarations only: implementations live in `crate::edge` (the
//! Worker) and in the tests' fake platform.

use std::future::Future;

use http::{Request, Response};

use crate::cdp::CdpKey;
use crate::facilitator::{FacilitatorHealth, HttpReply, UpstreamError};
use crate::ledger::{Op, Reply};
use crate::pass::PassCache;
use crate::telemetry::Decision;

use super::forward::{ForwardError, origin_failure};
use super::limits::BlockList;
use super::rewrite::UrlRewrite;

/// What the pipeline needs from its host. Implemented over `worker::*` on the edge and by
/// in-memory fakes in tests. Every call that leaves the isolate takes a time limit.
#[allow(async_fn_in_trait)]
pub trait Platform: 'static {
    /// An HTTP body; the origin's bodies pass through opaque (streamed on the edge).
    type Body: 'static;
    /// A body holding `bytes`.
    fn body(bytes: Vec<u8>) -> Self::Body;
    /// Sends `req` (absolute URI) to the origin with its method byte for byte, without
    /// following redirects.
    async fn origin(&self, req: Request<Self::Body>, timeout_seconds: u64) -> Result<Response<Self::Body>, UpstreamError>;

    /// Sends an unpriced request (already prepared: canonical URL, forwarding headers) to the
    /// origin within `timeout_seconds`, and answers with the origin's response, its URL headers
    /// rewritten by `rewrite`, or, if the origin fails, with [`origin_unavailable`] (the cause is
    /// logged). Nothing is paid on this path, so a platform may hand back an answer that is still
    /// on its way (the edge gives the runtime a promise). This default: [`Platform::origin`],
    /// then the rewrite or the failure answer.
    async fn pass_through(&self, req: Request<Self::Body>, timeout_seconds: u64, rewrite: Option<UrlRewrite>) -> Response<Self::Body>
    where
        Self: Sized,
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
    /// Reads a request's body (only the admin endpoint reads one): Err when it is longer than
    /// `max_bytes` or cannot be read. This default refuses every body.
    async fn read_body(&self, body: Self::Body, max_bytes: usize) -> Result<Vec<u8>, String> {
        let _ = (body, max_bytes);
        Err("this platform does not read request bodies".into())
    }
    /// `POST url` with a JSON body; reads at most [`crate::facilitator::MAX_REPLY_BYTES`].
    async fn post_json(&self, url: &str, authorization: Option<&str>, json: String, timeout_seconds: u64) -> Result<HttpReply, UpstreamError>;
    async fn kv_get(&self, key: &str) -> Result<Option<String>, String>;
    async fn kv_put(&self, key: &str, value: String, ttl_seconds: u64) -> Result<(), String>;
    /// Applies `op` in the ledger shard named `shard` (one writer per shard; a Durable Object on
    /// the edge). Err: the ledger could not be reached or failed; the caller fails closed.
    async fn ledger(&self, shard: &str, op: &Op) -> Result<Reply, String>;
    /// Whether the client has gone away (its request's abort signal fired).
    fn client_gone(&self) -> bool;
    /// Runs `fut` to completion even if the client goes away (`ctx.waitUntil` on the edge) and
    /// resolves to its output; `None` if the runtime dropped it.
    fn run_to_completion<T: 'static>(&self, fut: impl Future<Output = T> + 'static) -> impl Future<Output = Option<T>>;
    /// Runs `fut` after the response, without delaying it (`ctx.waitUntil` on the edge).
    fn defer(&self, fut: impl Future<Output = ()> + 'static);
    /// Unix time, seconds.
    fn now(&self) -> u64;
    /// 32 bytes from a CSPRNG.
    fn random32(&self) -> Result<[u8; 32], String>;
    /// One log line (Workers logs on the edge).
    fn log(&self, line: &str);
    /// This isolate's cache of pass records.
    fn passes(&self) -> &PassCache;
    /// This isolate's state: failing facilitators, clients blocked for failed payments.
    fn isolate(&self) -> &IsolateState;
    /// Counts one request under `key` with the Workers Rate Limiting binding named `binding`:
    /// Ok(true) within the limit, Ok(false) over it. Err: no such binding or the call failed.
    async fn rate_limit(&self, binding: &str, key: &str) -> Result<bool, String>;
    /// Records a priced request's decision as a data point in the `METRICS` Analytics Engine
    /// dataset, when bound (its log line goes through [`Platform::log`]).
    fn record(&self, decision: &Decision);
    /// Signs `message` with a CDP API key (`crypto.subtle.sign` on the edge): the raw 64-byte
    /// signature (ECDSA P-256 over SHA-256 as r‖s, or Ed25519). Err: the key could not be
    /// imported or the signature failed.
    async fn sign(&self, key: &CdpKey, message: &[u8]) -> Result<Vec<u8>, String>;
    /// Milliseconds since the Unix epoch, for latencies (on the edge, `Date.now`, which only
    /// advances across I/O).
    fn millis(&self) -> u64;
}

/// State an isolate keeps across requests (on the edge, for the isolate's lifetime).
#[derive(Debug, Default)]
pub struct IsolateState {
    /// Facilitators seen failing, for failover.
    pub health: FacilitatorHealth,
    /// Clients over their route's `failed` rate limit.
    pub blocked: BlockList,
}

/// The ledger's typed client ([`crate::ledger::Transport::call`]) travels by [`Platform::ledger`].
impl<P: Platform> crate::ledger::Transport for P {
    async fn send(&self, shard: &str, op: &Op) -> Result<Reply, String> {
        self.ledger(shard, op).await
    }
}
