//! The admin endpoint (`ADMIN_PATH`): revoking passes and denying payers, behind a bearer token
//! compared in constant time. It reaches passes through KV and the ledger only; it never touches
//! payments.


use http::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::config::{AdminEndpoint, Config};
use crate::evm::Address;
use crate::ledger::{LivePasses, PassRevocation, PassRevoke, PassShard, PayerDeny, PayerPasses, PayerShard, Transport};
use crate::pass::{self, PassRecord};
use crate::telemetry::Trace;

use super::platform::Platform;
use super::refusal::{refuse, Refusal};
use super::{header_str, json_response, query_param};

/// What revoking one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Revocation {
    /// The pass existed and is revoked now.
    Revoked,
    /// The pass existed and was already revoked.
    Already,
    /// Neither KV, this isolate, nor its ledger shard knows the pass (never sold, or sold a
    /// moment ago elsewhere and not recorded yet): tombstoned anyway, counted as not revoked.
    Unknown,
}

/// Longest body the admin endpoint reads, bytes.
pub(super) const MAX_ADMIN_BODY_BYTES: usize = 4096;

/// Revokes one pass: a tombstone in KV (`revoked:<id>`, until the pass expires; a key no record
/// write touches, read with every record read from KV: every location within KV's propagation
/// plus [`pass::CACHE_SECONDS`]) and in this isolate's cache (at once), and the flag in its
/// ledger shard (at once for counted passes), which also says whether the pass exists. `known`:
/// the pass is known to exist (the payer's index listed it). `unknown_ttl`: the tombstone's
/// lifetime, seconds, when the pass's expiry is not known. Err: KV or the ledger failed (the
/// revocation may be partial; repeating it is safe).
pub(super) async fn revoke_pass<P: Platform>(p: &P, id: &str, known: bool, unknown_ttl: u64) -> Result<Revocation, String> {
    let now = p.now();
    let record = match p.passes().get(id, now) {
        Some(r) => Some(r),
        None => p.kv_get(&pass::kv_key(id)).await?.and_then(|raw| serde_json::from_str::<PassRecord>(&raw).ok()),
    };
    let fallback = now.saturating_add(unknown_ttl);
    let op = PassRevoke { expires_at: record.as_ref().map_or(fallback, |r| r.expires_at), known: known || record.is_some() };
    let (outcome, shard_expiry) = match p.call(&PassShard::of(id), op).await? {
        PassRevocation::Revoked { already: false, expires_at } => (Revocation::Revoked, Some(expires_at)),
        PassRevocation::Revoked { already: true, expires_at } => (Revocation::Already, Some(expires_at)),
        PassRevocation::Unknown => (Revocation::Unknown, None),
    };
    let expires_at = record.map(|r| r.expires_at).or(shard_expiry).unwrap_or(fallback);
    p.passes().revoke(id, expires_at, now);
    let tombstone = json!({ "revokedAt": now, "expiresAt": expires_at }).to_string();
    p.kv_put(&pass::tombstone_key(id), tombstone, expires_at.saturating_sub(now).max(60)).await?;
    Ok(outcome)
}

/// What the admin endpoint reads from a request's JSON body.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminBody {
    /// A pass token (43 characters).
    pub(super) pass: Option<String>,
    /// A payer address (0x, 20 bytes).
    pub(super) payer: Option<String>,
}

/// The admin endpoint ([`AdminEndpoint`]), with `Authorization: Bearer <ADMIN_TOKEN>` compared
/// in constant time, `POST` only, a JSON body of at most [`MAX_ADMIN_BODY_BYTES`]; `action` is
/// the rest of the path after the endpoint's, as matched (`/revoke`, `/deny`):
/// - `{path}/revoke` with `{"pass": "<token>"}`: revokes that pass;
/// - `{path}/revoke` with `{"payer": "0x…"}`: revokes the payer's live passes;
/// - `{path}/deny` with `{"payer": "0x…"}`: denies the payer's later payments and revokes its
///   passes.
///
/// `payer` is also read from the query (`?payer=0x…`: an address is not a secret); a token in the
/// query (`?pass=`) is refused with 400, since URLs end up in access logs. Answers 200
/// `{"revoked": n, "alreadyRevoked": n, "unknown": n, "denied": "0x…" | null}`: `revoked` counts
/// the passes this call revoked, `unknown` the tokens nothing knows (never sold, or sold a moment
/// ago elsewhere: tombstoned anyway). 401 without the token, 405 for other methods, 400 for
/// anything else, 503 when KV or the ledger fails.
pub(super) async fn admin_endpoint<P: Platform>(config: &Config, p: &P, admin: &AdminEndpoint, req: Request<P::Body>, action: &str) -> Response<P::Body> {
    // RFC 9110 §11.1: the scheme is case-insensitive. Compared as SHA-256 digests, so the time
    // taken says nothing about the token, its length included.
    let presented = header_str(req.headers(), "authorization")
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim());
    let digest = |b: &str| <sha2::Sha256 as sha2::Digest>::digest(b.as_bytes());
    let authorized: bool = subtle::ConstantTimeEq::ct_eq(digest(presented).as_slice(), digest(&admin.token).as_slice()).into();
    if !authorized {
        return Refusal::Unauthorized.json(P::body);
    }
    if req.method() != Method::POST {
        return Refusal::AdminMethod.json(P::body);
    }
    let bad = |m: &str| Refusal::AdminRequest(m.to_string()).json(P::body);
    let usage = "use POST {ADMIN_PATH}/revoke with {\"pass\": \"<token>\"} or {\"payer\": \"0x…\"}, or /deny with {\"payer\": \"0x…\"}";
    let query = req.uri().query().map(str::to_string);
    if query_param(query.as_deref(), "pass").is_some() {
        return bad("a pass token is not accepted in the query string (URLs end up in access logs): send it in the JSON body, {\"pass\": \"<token>\"}");
    }
    let declared = header_str(req.headers(), "content-length").and_then(|l| l.trim().parse::<usize>().ok());
    if declared.is_some_and(|l| l > MAX_ADMIN_BODY_BYTES) {
        return bad(&format!("the body is larger than {MAX_ADMIN_BODY_BYTES} bytes"));
    }
    let raw = match p.read_body(req.into_body(), MAX_ADMIN_BODY_BYTES).await {
        Ok(raw) => raw,
        Err(e) => return bad(&format!("the body could not be read: {e}")),
    };
    let body: AdminBody = if raw.iter().all(u8::is_ascii_whitespace) {
        AdminBody::default()
    } else {
        match serde_json::from_slice(&raw) {
            Ok(b) => b,
            Err(e) => return bad(&format!("the body is not the expected JSON ({e}); {usage}")),
        }
    };
    let payer = match body.payer.or_else(|| query_param(query.as_deref(), "payer")) {
        Some(a) => match Address::parse(&a) {
            Some(addr) => Some(addr),
            None => return bad("payer must be a 0x-prefixed 20-byte address"),
        },
        None => None,
    };
    let (passes, known) = match (action, body.pass, payer) {
        ("/revoke", Some(token), None) => match pass::pass_id(&token) {
            Some(id) => (vec![id], false),
            None => return bad("pass must be a pass token (43 characters)"),
        },
        ("/revoke", None, Some(addr)) | ("/deny", None, Some(addr)) => {
            let shard = PayerShard::of(&addr);
            let listed = if action == "/deny" { p.call(&shard, PayerDeny).await } else { p.call(&shard, PayerPasses).await };
            match listed {
                Ok(LivePasses::Passes { passes }) => (passes, true),
                Err(e) => return refuse(p, &Trace::default(), Refusal::LedgerUnavailable(e)),
            }
        }
        _ => return bad(usage),
    };
    // A token nothing knows may belong to a sale a moment ago: its tombstone lasts as long as
    // the longest pass a route sells.
    let unknown_ttl = config.routes.iter().filter_map(|r| r.pass.as_ref()).map(|t| t.ttl_seconds).max().unwrap_or(crate::config::MAX_PASS_TTL_SECONDS);
    let (mut revoked, mut already, mut unknown) = (0u32, 0u32, 0u32);
    for id in &passes {
        match revoke_pass(p, id, known, unknown_ttl).await {
            Ok(Revocation::Revoked) => revoked += 1,
            Ok(Revocation::Already) => already += 1,
            Ok(Revocation::Unknown) => unknown += 1,
            Err(e) => return refuse(p, &Trace::default(), Refusal::LedgerUnavailable(format!("revoking pass {id}: {e}; {revoked} revoked before it"))),
        }
    }
    let who = payer.map(|a| format!(" for {}", a.to_checksum())).unwrap_or_default();
    p.log(&format!("x402: admin {action}: {revoked} pass(es) revoked, {already} already revoked, {unknown} unknown{who}"));
    let denied = (action == "/deny").then(|| payer.map(|a| a.to_checksum())).flatten();
    json_response(StatusCode::OK, &json!({ "revoked": revoked, "alreadyRevoked": already, "unknown": unknown, "denied": denied }), P::body)
}
