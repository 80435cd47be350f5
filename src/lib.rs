//! An x402 paywall for Cloudflare Workers.
//!
//! The crate is a pure core, testable on the host, plus a thin wasm32 glue layer (`edge`):
//!
//! | module | job |
//! |---|---|
//! | [`config`] | the Worker's vars → validated price table (the one table of variables: [`config::TABLE`]) |
//! | [`names`] | near-miss names ("did you mean `price`?") for configuration errors |
//! | [`discovery`] | the `/.well-known/x402` document |
//! | [`route`] | path canonicalisation and `METHOD /pattern` matching |
//! | [`money`] | `"$0.01"` → atomic units, exact decimal arithmetic |
//! | [`x402`] | the protocol's formats: v2 wire types and header codecs, offers, `exact` verification, `sign-in-with-x`, the `bazaar` extension |
//! | [`evm`] | addresses, network table, EIP-712 / EIP-3009 hashing, k256 recovery |
//! | [`evidence`] | whether a sent settlement paid, read from the chain (`RPC_URL`) |
//! | [`facilitator`] | `/verify` and `/settle`: bodies, reply classification, the client (failover, CDP authorization) |
//! | [`pass`] | pass tokens, records, carriers (header, cookie), the isolate cache |
//! | [`ledger`] | the state machine of each authorization (reserved → send mark → settled / sent with an unknown outcome), hosted by a Durable Object |
//! | [`refusal`] | the reason shape every refusal shares (code and message), for `exact`, `siwx` and the gateway |
//! | [`headers`] | every list of header names the paywall owns (read by forwarding and by the configuration) |
//! | [`payment_context`] | the signed payment context (a JWS) forwarded to the origin with each paid request, and its JWK Set |
//! | [`gateway`] | the request pipeline over a [`gateway::Platform`] |
//! | [`paywall`] | the HTML page a browser navigation gets instead of the JSON 402 (script, style, CSP) |

pub mod config;
pub mod discovery;
pub mod evidence;
pub mod evm;
pub mod facilitator;
pub mod gateway;
pub mod headers;
pub mod ledger;
pub mod mcp;
pub mod meter;
pub mod money;
pub mod names;
pub mod pass;
pub mod payment_context;
pub mod paywall;
pub mod refusal;
pub mod route;
pub mod telemetry;
pub mod x402;

#[cfg(all(target_arch = "wasm32", feature = "edge"))]
mod edge;
