//! The host test platform: in-memory fakes for the origin, the facilitator, KV and the payment
//! ledger (the real [`ledger::apply`] state machine over [`MemoryStore`]s), with switches to
//! inject faults (timeouts, outages, a client that hangs up). The real path runs in
//! `tests/*.test.mjs`.
#![allow(dead_code)]

pub mod channel;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use k256::ecdsa::SigningKey;
use serde_json::{json, Value};
use x402_edge_paywall::config::Config;
use x402_edge_paywall::evm::{address_of, hex_0x, parse_uint256, Address, TransferWithAuthorization};
use x402_edge_paywall::facilitator::cdp::CdpKey;
use x402_edge_paywall::facilitator::{HttpReply, UpstreamError};
use x402_edge_paywall::gateway::{handle, FacilitatorTransport, IsolateCaches, IsolateState, Kv, Ledger, Origin, PlatformError, RateLimits, RelayWriter, Runtime, Signer};
use x402_edge_paywall::telemetry::Decision;
use x402_edge_paywall::ledger::{self, MemoryStore, Op, Reply};
use x402_edge_paywall::pass::PassCache;
use x402_edge_paywall::x402::encode_header;

pub const NOW: u64 = 1_800_000_000;

/// The JSON-RPC endpoint [`Fake::rpc`] answers (a loopback `http` URL, as `RPC_URL` allows).
pub const FAKE_RPC_URL: &str = "http://127.0.0.1:8545";

/// A reply the fake facilitator gives to one call.
pub type Canned = Result<HttpReply, UpstreamError>;

pub fn reply(status: u16, body: &str) -> Canned {
    Ok(HttpReply { status, body: body.as_bytes().to_vec() })
}

/// A 32-byte transaction hash made of `byte`.
pub fn tx(byte: u8) -> String {
    format!("0x{}", hex_lower(&[byte; 32]))
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[derive(Default)]
pub struct Fake {
    pub origin_status: Cell<u16>,
    /// Seconds the clock (`now`) moves on while the origin answers.
    pub origin_seconds: Cell<u64>,
    /// Origin over its time limit.
    pub origin_down: Cell<bool>,
    /// Origin unreachable, with this runtime error text.
    pub origin_error: RefCell<Option<String>>,
    /// Headers the origin answers with.
    pub origin_response_headers: RefCell<Vec<(&'static str, String)>>,
    /// The origin's body (default `{"data":"paid content"}`); a JSON-RPC id written `"$id"` in it
    /// becomes the id of the request the origin got.
    pub origin_body: RefCell<Option<Vec<u8>>>,
    /// Canned `/settle` replies, used in order; when empty: success with a fresh transaction.
    pub settle: RefCell<Vec<Canned>>,
    /// Canned `/verify` replies, used in order; when empty: valid.
    pub verify: RefCell<Vec<Canned>>,
    pub kv: RefCell<HashMap<String, String>>,
    pub kv_down: bool,
    pub ledger: RefCell<HashMap<String, MemoryStore>>,
    pub ledger_down: Cell<bool>,
    /// Ledger op kinds (`"reserve"`, `"mark"`, `"finish"`, …) that fail as if storage broke.
    pub ledger_fail_on: RefCell<Vec<&'static str>>,
    /// Ledger op kinds applied once and then answered with an error (the reply lost), once each.
    pub ledger_lose_reply_on: RefCell<Vec<&'static str>>,
    /// Every ledger op's kind, in order.
    pub ledger_ops: RefCell<Vec<String>>,
    /// Seconds the clock advances while each `/verify` call is under way (a slow failover chain).
    pub verify_takes: Cell<u64>,
    /// Every ledger call in order, reached or not: (shard, op).
    pub ledger_calls: RefCell<Vec<(String, Op)>>,
    /// The client has hung up.
    pub gone: Cell<bool>,
    /// The client hangs up while `/settle` is under way.
    pub gone_during_settle: Cell<bool>,
    pub now: Cell<u64>,
    pub origin_calls: RefCell<Vec<Request<Vec<u8>>>>,
    /// The chain behind [`FAKE_RPC_URL`] (configure `RPC_URL` with it): answers a JSON-RPC
    /// call (method, params) with its `result`; `None` answers HTTP 500. Unset: every call 500.
    #[allow(clippy::type_complexity)]
    pub rpc: RefCell<Option<Box<dyn Fn(&str, &Value) -> Option<Value>>>>,
    /// JSON-RPC methods called on [`FAKE_RPC_URL`], in order.
    pub rpc_calls: RefCell<Vec<String>>,
    /// Facilitator calls in order: (endpoint: "verify" | "settle", body).
    pub facilitator_calls: RefCell<Vec<(String, Value)>>,
    /// Every call in order: "origin", "verify", "settle".
    pub order: RefCell<Vec<&'static str>>,
    pub logs: RefCell<Vec<String>>,
    pub kv_gets: Cell<usize>,
    pub cache: PassCache,
    /// Work deferred until after the response (`ctx.waitUntil` on the edge); [`run`] drains it.
    pub deferred: RefCell<Vec<Pin<Box<dyn Future<Output = ()>>>>>,
    pub tx_counter: Cell<u8>,
    pub isolate: IsolateState,
    /// Rate limits by binding name: requests allowed per key (counted forever).
    pub limits: RefCell<HashMap<String, usize>>,
    /// Requests counted per (binding, key).
    pub limited: RefCell<HashMap<(String, String), usize>>,
    /// Decisions recorded, in order.
    pub decisions: RefCell<Vec<Decision>>,
    /// Facilitator base URLs that refuse connections (the call never gets an answer).
    pub facilitators_down: RefCell<Vec<String>>,
    /// Every facilitator call attempted, reached or not: (URL, Authorization header).
    pub facilitator_attempts: RefCell<Vec<(String, Option<String>)>>,
    /// Messages signed (with a CDP key or the payment context's key): (key id, message).
    pub signed: RefCell<Vec<(String, String)>>,
    /// Signing fails (a key the runtime's WebCrypto refuses).
    pub sign_fails: Cell<bool>,
    /// Whether `relay` is offered (an MCP tool's SSE answer relayed as it comes).
    pub relay_on: Cell<bool>,
    /// What was written to relayed bodies, and whether each was closed.
    pub relayed: Rc<RefCell<Vec<u8>>>,
    pub relay_closed: Rc<Cell<bool>>,
}

/// The fake relay: writes land in [`Fake::relayed`].
struct FakeRelay(Rc<RefCell<Vec<u8>>>, Rc<Cell<bool>>);

impl RelayWriter for FakeRelay {
    fn write(&self, bytes: &[u8]) {
        assert!(!self.1.get(), "written after close");
        self.0.borrow_mut().extend_from_slice(bytes);
    }
    fn close(&self) {
        self.1.set(true);
    }
}

/// A future that is pending once, so that concurrent requests interleave at the origin call.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

impl Origin for Fake {
    type Body = Vec<u8>;
    fn body(bytes: Vec<u8>) -> Vec<u8> {
        bytes
    }
    async fn origin(&self, req: Request<Vec<u8>>, t: u64) -> Result<Response<Vec<u8>>, UpstreamError> {
        self.order.borrow_mut().push("origin");
        self.origin_calls.borrow_mut().push(req);
        self.now.set(self.now.get() + self.origin_seconds.get());
        YieldOnce(false).await;
        if self.origin_down.get() {
            return Err(UpstreamError::Timeout { seconds: t });
        }
        if let Some(e) = self.origin_error.borrow().clone() {
            return Err(UpstreamError::Network(e));
        }
        let mut body = self.origin_body.borrow().clone().unwrap_or_else(|| b"{\"data\":\"paid content\"}".to_vec());
        // A JSON-RPC answer written with the id `"$id"` answers the request's own id.
        let request_id = serde_json::from_slice::<Value>(self.origin_calls.borrow().last().map_or(&[][..], |r| r.body().as_slice())).ok().and_then(|v| v.get("id").cloned());
        if let Some(id) = request_id {
            body = String::from_utf8_lossy(&body).replace("\"$id\"", &id.to_string()).into_bytes();
        }
        let mut r = Response::new(body);
        *r.status_mut() = StatusCode::from_u16(self.origin_status.get()).unwrap();
        r.headers_mut().insert("cache-control", "public, max-age=600".parse().unwrap());
        for (name, value) in self.origin_response_headers.borrow().iter() {
            r.headers_mut().append(*name, value.parse().unwrap());
        }
        Ok(r)
    }
    fn relay(&self) -> Option<(Box<dyn RelayWriter>, Vec<u8>)> {
        self.relay_on.get().then(|| (Box::new(FakeRelay(Rc::clone(&self.relayed), Rc::clone(&self.relay_closed))) as Box<dyn RelayWriter>, Vec::new()))
    }
    async fn read_body(&self, body: Vec<u8>, max_bytes: usize) -> Result<Vec<u8>, PlatformError> {
        if body.len() > max_bytes {
            return Err(PlatformError::TooLarge(format!("body of {} bytes is larger than {max_bytes}", body.len())));
        }
        Ok(body)
    }
}

impl FacilitatorTransport for Fake {
    async fn post_json(&self, url: &str, authorization: Option<&str>, json: String, _t: u64) -> Result<HttpReply, UpstreamError> {
        if url == FAKE_RPC_URL {
            let call: Value = serde_json::from_str(&json).unwrap();
            let method = call["method"].as_str().unwrap_or_default().to_string();
            self.rpc_calls.borrow_mut().push(method.clone());
            let answer = self.rpc.borrow().as_ref().and_then(|chain| chain(&method, &call["params"]));
            return match answer {
                Some(result) => reply(200, &json!({ "jsonrpc": "2.0", "id": call["id"], "result": result }).to_string()),
                None => reply(500, "rpc down"),
            };
        }
        self.facilitator_attempts.borrow_mut().push((url.to_string(), authorization.map(str::to_string)));
        if self.facilitators_down.borrow().iter().any(|d| url.starts_with(d.as_str())) {
            return Err(UpstreamError::Network("Network connection lost.".into()));
        }
        let endpoint = if url.ends_with("/verify") { "verify" } else { "settle" };
        self.order.borrow_mut().push(endpoint);
        self.facilitator_calls.borrow_mut().push((endpoint.to_string(), serde_json::from_str(&json).unwrap()));
        if endpoint == "verify" {
            self.now.set(self.now.get() + self.verify_takes.get());
            let mut q = self.verify.borrow_mut();
            return if q.is_empty() { reply(200, r#"{"isValid":true}"#) } else { q.remove(0) };
        }
        if self.gone_during_settle.get() {
            self.gone.set(true);
        }
        let mut q = self.settle.borrow_mut();
        if q.is_empty() {
            let n = self.tx_counter.get().wrapping_add(1);
            self.tx_counter.set(n);
            let body = json!({ "success": true, "transaction": tx(n), "network": "eip155:84532" });
            return reply(200, &body.to_string());
        }
        q.remove(0)
    }
}

impl Ledger for Fake {
    async fn ledger(&self, shard: &str, op: &Op) -> Result<Reply, String> {
        self.ledger_calls.borrow_mut().push((shard.to_string(), op.clone()));
        if self.ledger_down.get() {
            return Err("ledger down".into());
        }
        // Through JSON, as on the edge.
        let text = serde_json::to_string(op).unwrap();
        let kind = serde_json::from_str::<Value>(&text).ok().and_then(|v| v.as_object().and_then(|o| o.keys().next().cloned()).or_else(|| v.as_str().map(str::to_string))).unwrap_or_default();
        self.ledger_ops.borrow_mut().push(kind.clone());
        if self.ledger_fail_on.borrow().iter().any(|k| *k == kind) {
            return Err(format!("ledger {kind} failed"));
        }
        let op: Op = serde_json::from_str(&text).unwrap();
        let mut shards = self.ledger.borrow_mut();
        let reply = ledger::apply(shards.entry(shard.to_string()).or_default(), op, self.now.get());
        let mut lose = self.ledger_lose_reply_on.borrow_mut();
        if let Some(i) = lose.iter().position(|k| *k == kind) {
            lose.remove(i);
            return Err(format!("ledger {kind} applied, reply lost"));
        }
        reply
    }
}

impl Kv for Fake {
    async fn kv_get(&self, key: &str) -> Result<Option<String>, PlatformError> {
        self.kv_gets.set(self.kv_gets.get() + 1);
        if self.kv_down {
            return Err(PlatformError::Failed("kv down".into()));
        }
        Ok(self.kv.borrow().get(key).cloned())
    }
    async fn kv_put(&self, key: &str, value: String, _ttl: u64) -> Result<(), PlatformError> {
        if self.kv_down {
            return Err(PlatformError::Failed("kv down".into()));
        }
        self.kv.borrow_mut().insert(key.into(), value);
        Ok(())
    }
}

impl RateLimits for Fake {
    async fn rate_limit(&self, binding: &str, key: &str) -> Result<bool, PlatformError> {
        let Some(&limit) = self.limits.borrow().get(binding) else { return Err(PlatformError::Unavailable(format!("no binding {binding}"))) };
        let mut counts = self.limited.borrow_mut();
        let n = counts.entry((binding.to_string(), key.to_string())).or_default();
        *n += 1;
        Ok(*n <= limit)
    }
}

impl Signer for Fake {
    async fn sign(&self, key: &CdpKey, message: &[u8]) -> Result<Vec<u8>, PlatformError> {
        if self.sign_fails.get() {
            return Err(PlatformError::Failed("the key could not be imported".into()));
        }
        self.signed.borrow_mut().push((key.id.clone(), String::from_utf8_lossy(message).into_owned()));
        Ok(vec![0xab; 64])
    }
}

impl Runtime for Fake {
    fn client_gone(&self) -> bool {
        self.gone.get()
    }
    async fn run_to_completion<T: 'static>(&self, fut: impl Future<Output = T> + 'static) -> Option<T> {
        Some(fut.await)
    }
    fn defer(&self, fut: impl Future<Output = ()> + 'static) {
        self.deferred.borrow_mut().push(Box::pin(fut));
    }
    fn now(&self) -> u64 {
        self.now.get()
    }
    fn millis(&self) -> u64 {
        self.now.get() * 1000
    }
    fn random32(&self) -> Result<[u8; 32], PlatformError> {
        let n = self.kv.borrow().len() as u8 + self.facilitator_calls.borrow().len() as u8 + self.origin_calls.borrow().len() as u8;
        let mut r = [n.wrapping_add(1); 32];
        r[31] = self.logs.borrow().len() as u8;
        r[30] = (self.ledger.borrow().values().map(|s| s.records.len()).sum::<usize>()) as u8;
        Ok(r)
    }
    fn log(&self, line: &str) {
        self.logs.borrow_mut().push(line.into());
    }
    fn record(&self, decision: &Decision) {
        self.decisions.borrow_mut().push(decision.clone());
    }
}

impl IsolateCaches for Fake {
    fn passes(&self) -> &PassCache {
        &self.cache
    }
    fn isolate(&self) -> &IsolateState {
        &self.isolate
    }
}

impl Fake {
    pub fn settles(&self) -> usize {
        self.facilitator_calls.borrow().iter().filter(|(e, _)| e == "settle").count()
    }
    pub fn verifies(&self) -> usize {
        self.facilitator_calls.borrow().iter().filter(|(e, _)| e == "verify").count()
    }
    pub fn origin_hits(&self) -> usize {
        self.origin_calls.borrow().len()
    }
    pub fn queue_settle(&self, r: Canned) {
        self.settle.borrow_mut().push(r);
    }
    pub fn queue_verify(&self, r: Canned) {
        self.verify.borrow_mut().push(r);
    }
}

pub fn fake() -> Fake {
    let f = Fake::default();
    f.origin_status.set(200);
    f.now.set(NOW);
    f
}

/// The configuration the host tests use: `routes` with the standard variables.
pub fn config_with(routes: Value) -> Rc<Config> {
    config_vars(json!({ "ROUTES": routes }))
}

/// The standard variables overridden by `vars` (a JSON object; `null` removes one).
pub fn config_vars(vars: Value) -> Rc<Config> {
    let mut v = json!({
        "ORIGIN_URL": "https://origin.test/base/",
        "FACILITATOR_URL": "https://facilitator.test",
        "PAY_TO": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
        "ROUTES": [
            { "route": "GET /paid", "price": "$0.01" },
            { "route": "GET /other/*", "price": "$0.02" }
        ],
    });
    let map = v.as_object_mut().unwrap();
    for (k, val) in vars.as_object().unwrap() {
        if val.is_null() {
            map.remove(k);
        } else {
            map.insert(k.clone(), val.clone());
        }
    }
    Rc::new(Config::from_vars(map).unwrap())
}

pub fn config() -> Rc<Config> {
    config_vars(json!({}))
}

/// The standard routes, `GET /paid` selling a pass with these terms.
pub fn config_with_pass(pass: Value) -> Rc<Config> {
    config_with(json!([
        { "route": "GET /paid", "price": "$0.01", "pass": pass },
        { "route": "GET /other/*", "price": "$0.02" }
    ]))
}

/// The address of the test key made of `key_byte`.
pub fn payer(key_byte: u8) -> Address {
    address_of(SigningKey::from_slice(&[key_byte; 32]).unwrap().verifying_key())
}

/// A v2 `PAYMENT-SIGNATURE` for `cfg.routes[route]`'s first offer, signed by the key made of
/// `key_byte`, with nonce `[nonce; 32]` and `validBefore` = `NOW + valid_for`.
pub fn payment_with(cfg: &Config, route: usize, key_byte: u8, nonce: u8, valid_for: u64) -> String {
    let offer = &cfg.routes[route].accepts[0];
    encode_header(&json!({ "x402Version": 2, "accepted": offer.requirements_json, "payload": exact_payload(cfg, route, key_byte, nonce, valid_for) }))
}

/// A v1 `X-PAYMENT` (x402 v1 `PaymentPayload`: `scheme` and the offer's v1 network name at the
/// top level) of the same authorization as [`payment_with`]. Panics if the offer's network has no
/// v1 name.
pub fn payment_v1_with(cfg: &Config, route: usize, key_byte: u8, nonce: u8, valid_for: u64) -> String {
    let offer = &cfg.routes[route].accepts[0];
    let network = offer.v1_network.expect("the offer's network has a v1 name");
    encode_header(&json!({ "x402Version": 1, "scheme": "exact", "network": network, "payload": exact_payload(cfg, route, key_byte, nonce, valid_for) }))
}

/// The `exact` EVM payload (`signature` and EIP-3009 `authorization`) of [`payment_with`].
fn exact_payload(cfg: &Config, route: usize, key_byte: u8, nonce: u8, valid_for: u64) -> Value {
    exact_payload_for(&cfg.routes[route].accepts[0], key_byte, nonce, valid_for)
}

/// The `exact` EVM payload (`signature` and EIP-3009 `authorization`) paying `offer`, signed by
/// the key made of `key_byte`, with nonce `[nonce; 32]` and `validBefore` = `NOW + valid_for`.
pub fn exact_payload_for(offer: &x402_edge_paywall::x402::offer::Offer, key_byte: u8, nonce: u8, valid_for: u64) -> Value {
    let key = SigningKey::from_slice(&[key_byte; 32]).unwrap();
    let from = address_of(key.verifying_key());
    let msg = TransferWithAuthorization {
        from,
        to: offer.pay_to,
        value: offer.amount,
        valid_after: parse_uint256(&(NOW - 600).to_string()).unwrap(),
        valid_before: parse_uint256(&(NOW + valid_for).to_string()).unwrap(),
        nonce: [nonce; 32],
    };
    let (sig, recid) = key.sign_prehash_recoverable(&msg.digest(&offer.domain_separator));
    let mut bytes = sig.to_bytes().to_vec();
    bytes.push(27 + recid.to_byte());
    json!({ "signature": hex_0x(&bytes), "authorization": {
        "from": from.to_checksum(), "to": offer.pay_to.to_checksum(), "value": offer.amount.to_string(),
        "validAfter": (NOW - 600).to_string(), "validBefore": (NOW + valid_for).to_string(), "nonce": hex_0x(&[nonce; 32]) } })
}

/// A v2 `PAYMENT-SIGNATURE` for `cfg.routes[route]`'s first offer (an `upto` one): a Permit2
/// witness transfer of the offer's maximum to the upto proxy, signed by the key made of
/// `key_byte`, Permit2 nonce `nonce`, naming `facilitator`, valid from `NOW - 600` until
/// `NOW + 120`.
pub fn upto_payment_with(cfg: &Config, route: usize, key_byte: u8, nonce: u64, facilitator: &str) -> String {
    upto_payment_for_offer(cfg, route, 0, key_byte, nonce, facilitator)
}

/// [`upto_payment_with`] for the route's option `option` (`accepts[option]`).
pub fn upto_payment_for_offer(cfg: &Config, route: usize, option: usize, key_byte: u8, nonce: u64, facilitator: &str) -> String {
    use ruint::aliases::U256;
    use x402_edge_paywall::x402::permit2::{UptoPermitWitnessTransferFrom, UPTO_PROXY_ADDRESS};
    let offer = &cfg.routes[route].accepts[option];
    let key = SigningKey::from_slice(&[key_byte; 32]).unwrap();
    let from = address_of(key.verifying_key());
    let facilitator = Address::parse(facilitator).unwrap();
    let msg = UptoPermitWitnessTransferFrom {
        token: offer.asset,
        amount: offer.amount,
        spender: UPTO_PROXY_ADDRESS,
        nonce: U256::from(nonce),
        deadline: U256::from(NOW + 120),
        to: offer.pay_to,
        facilitator,
        valid_after: U256::from(NOW - 600),
    };
    let (sig, recid) = key.sign_prehash_recoverable(&msg.digest(offer.chain_id));
    let mut bytes = sig.to_bytes().to_vec();
    bytes.push(27 + recid.to_byte());
    encode_header(&json!({ "x402Version": 2, "accepted": offer.requirements_json, "payload": {
        "signature": hex_0x(&bytes),
        "permit2Authorization": {
            "from": from.to_checksum(),
            "permitted": { "token": offer.asset.to_checksum(), "amount": offer.amount.to_string() },
            "spender": UPTO_PROXY_ADDRESS.to_checksum(),
            "nonce": nonce.to_string(),
            "deadline": (NOW + 120).to_string(),
            "witness": { "to": offer.pay_to.to_checksum(), "facilitator": facilitator.to_checksum(), "validAfter": (NOW - 600).to_string() },
        },
    } }))
}

/// [`payment_with`] with nonce = key byte and 120 s of validity.
pub fn payment(cfg: &Config, route: usize, key_byte: u8) -> String {
    payment_with(cfg, route, key_byte, key_byte, 120)
}

pub fn request(path: &str, headers: &[(&str, &str)]) -> Request<Vec<u8>> {
    request_with("GET", path, headers)
}

pub fn request_with(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<Vec<u8>> {
    let mut b = Request::builder().method(method).uri(format!("https://paywall.test{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Vec::new()).unwrap()
}

/// Handles one request, then runs the work it deferred until after the response.
pub fn run(cfg: &Rc<Config>, p: &Rc<Fake>, req: Request<Vec<u8>>) -> Response<Vec<u8>> {
    let res = pollster::block_on(handle(cfg, p, req));
    drain(p);
    res
}

/// Runs the deferred work queued so far.
pub fn drain(p: &Fake) {
    loop {
        let next = p.deferred.borrow_mut().pop();
        match next {
            Some(f) => pollster::block_on(f),
            None => break,
        }
    }
}

/// Runs several requests concurrently on one thread (they interleave at the origin call).
pub fn run_all(cfg: &Rc<Config>, p: &Rc<Fake>, reqs: Vec<Request<Vec<u8>>>) -> Vec<Response<Vec<u8>>> {
    let res = pollster::block_on(futures_util::future::join_all(reqs.into_iter().map(|r| handle(cfg, p, r))));
    drain(p);
    res
}

pub fn body_json(res: &Response<Vec<u8>>) -> Value {
    serde_json::from_slice(res.body()).unwrap_or(Value::Null)
}
