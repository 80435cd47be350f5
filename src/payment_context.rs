//! The signed payment context: what a paid request forwarded to the origin carries so that the
//! origin can bound its work to what was authorized and prove who paid (`docs/payment-context.md`
//! shows how an origin verifies it).
//!
//! With `PAYMENT_CONTEXT_KEY` set (an Ed25519 private key as a JWK), every request the paywall
//! forwards for a payment carries [`PAYMENT_CONTEXT_HEADER`]: a compact JWS (RFC 7515) with
//! - protected header `{"alg":"EdDSA","kid":<RFC 7638 thumbprint of the key>,"typ":`[`CONTEXT_TYP`]`}`
//!   (EdDSA over Ed25519: RFC 8037);
//! - claims ([`Claims`]): `iss` (the paywall's public origin), `sub` (the payer), `aud` (the
//!   origin), `iat` and `exp` (Unix seconds; `exp` is `iat` plus the origin time limit), `jti`
//!   (the authorization id, as the ledger keys it: `network/asset/payer/nonce`) and `x402` ([`Grant`]:
//!   scheme, network, asset, `amount` for `exact` or `maxAmount` for a metered scheme, payTo,
//!   route, method, path).
//!
//! The public key is published as a JWK Set (RFC 7517 §5) at [`JWKS_PATH`]. This module lays out
//! the bytes (keys, claims, the signing input, the JWK Set); the signature is made by the
//! runtime's WebCrypto through [`crate::gateway::Signer::sign`], so no Ed25519 arithmetic is
//! compiled into the wasm.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::facilitator::cdp::{CdpKey, CdpKeyMaterial};

/// The request header carrying the context to the origin (`X402-Payment-Context`). The
/// paywall's own ([`crate::headers`]): a client's copy is removed before forwarding, and
/// `ORIGIN_HEADERS` may not set it.
pub use crate::headers::PAYMENT_CONTEXT_HEADER;

/// Where the JWK Set with the context's public key is served (exact canonical path).
pub const JWKS_PATH: &str = "/.well-known/x402/jwks.json";

/// The JWS `typ` (RFC 8725 §3.11 explicit typing), so that no other JWT signed with the same key
/// can pass for a payment context.
pub const CONTEXT_TYP: &str = "x402-payment-context+jwt";

/// The variable holding the key.
pub const KEY_VAR: &str = "PAYMENT_CONTEXT_KEY";

/// Largest `PAYMENT_CONTEXT_KEY` accepted, bytes.
const MAX_KEY_BYTES: usize = 1024;

/// The paywall's signing key for payment contexts: an Ed25519 key pair and its key id.
#[derive(Clone, PartialEq, Eq)]
pub struct ContextKey {
    /// The RFC 7638 JWK thumbprint (SHA-256, base64url) of the public key: the JWS `kid`.
    kid: String,
    /// The public key, 32 bytes base64url (the JWK's `x`).
    x: String,
    /// The private key in the form the platform's signer imports (`importKey("jwk", …)`), under
    /// the id `payment-context/<kid>` (the edge caches imported keys by id).
    signer: CdpKey,
}

impl std::fmt::Debug for ContextKey {
    /// Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// The members of a private OKP JWK that are read (RFC 8037 §2); others (`kid`, `alg`, `use`,
/// `key_ops`) are ignored.
#[derive(Deserialize)]
struct PrivateJwk {
    kty: Option<String>,
    crv: Option<String>,
    d: Option<String>,
    x: Option<String>,
}

/// A 32-byte base64url member of the JWK, re-encoded canonically.
fn member32(value: Option<String>, member: &str) -> Result<String, String> {
    let value = value.ok_or_else(|| format!("{KEY_VAR} has no \"{member}\": it must be an Ed25519 private JWK with both \"d\" and \"x\""))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('=').as_bytes())
        .map_err(|_| format!("{KEY_VAR}'s \"{member}\" is not base64url"))?;
    if bytes.len() != 32 {
        return Err(format!("{KEY_VAR}'s \"{member}\" decodes to {} bytes; an Ed25519 key's is 32", bytes.len()));
    }
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

impl ContextKey {
    /// Parses `PAYMENT_CONTEXT_KEY`: an Ed25519 private key as a JWK (RFC 8037 §2),
    /// `{"kty":"OKP","crv":"Ed25519","d":…,"x":…}`, as `node`'s
    /// `generateKeyPairSync("ed25519").privateKey.export({format:"jwk"})` prints it. Err starts
    /// with the variable's name and says what is wrong without quoting the secret.
    ///
    /// That `x` is the public key of `d` is not checked here (that takes Ed25519 arithmetic, which
    /// the Worker leaves to WebCrypto): the edge checks it when it first imports the key, and
    /// signs nothing with a pair whose halves disagree.
    pub fn parse(secret: &str) -> Result<ContextKey, String> {
        if secret.len() > MAX_KEY_BYTES {
            return Err(format!("{KEY_VAR} is longer than {MAX_KEY_BYTES} bytes; it is an Ed25519 private JWK"));
        }
        let jwk: PrivateJwk = serde_json::from_str(secret.trim()).map_err(|_| {
            format!("{KEY_VAR} is not a JSON object: it must be an Ed25519 private JWK {{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"d\":…,\"x\":…}} (docs/payment-context.md says how to make one)")
        })?;
        if jwk.kty.as_deref() != Some("OKP") || jwk.crv.as_deref() != Some("Ed25519") {
            return Err(format!("{KEY_VAR} must be an Ed25519 key: \"kty\":\"OKP\" and \"crv\":\"Ed25519\""));
        }
        let d = member32(jwk.d, "d")?;
        let x = member32(jwk.x, "x")?;
        let kid = thumbprint(&x);
        let signer = CdpKey { id: format!("payment-context/{kid}"), material: CdpKeyMaterial::Ed25519 { d, x: x.clone() } };
        Ok(ContextKey { kid, x, signer })
    }

    /// The key id: the public key's RFC 7638 thumbprint (SHA-256, base64url, 43 characters).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The private key as the platform's signer takes it ([`crate::gateway::Signer::sign`]).
    pub fn signing_key(&self) -> &CdpKey {
        &self.signer
    }

    /// The JWK Set served at [`JWKS_PATH`]: `{"keys":[{"kty":"OKP","crv":"Ed25519","x","kid","alg":"EdDSA","use":"sig"}]}`,
    /// compact JSON.
    pub fn jwks(&self) -> Vec<u8> {
        let doc = serde_json::json!({ "keys": [{ "kty": "OKP", "crv": "Ed25519", "x": self.x, "kid": self.kid, "alg": "EdDSA", "use": "sig" }] });
        doc.to_string().into_bytes()
    }

    /// The JWS signing input `base64url(header) "." base64url(claims)` of `claims`.
    pub fn signing_input(&self, claims: &Claims) -> String {
        let header = JwsHeader { alg: "EdDSA", kid: &self.kid, typ: CONTEXT_TYP };
        // Serialising these structs (strings and integers) cannot fail.
        let encode = |json: Vec<u8>| URL_SAFE_NO_PAD.encode(json);
        format!("{}.{}", encode(serde_json::to_vec(&header).unwrap_or_default()), encode(serde_json::to_vec(claims).unwrap_or_default()))
    }
}

/// RFC 7638 §3: SHA-256 over the required members of the OKP JWK in lexicographic order, without
/// white space (`{"crv":"Ed25519","kty":"OKP","x":…}`), base64url.
fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[derive(Serialize)]
struct JwsHeader<'a> {
    alg: &'a str,
    kid: &'a str,
    typ: &'a str,
}

/// What was paid for, as the origin may bound its work by it (the `x402` claim).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// The payment's x402 protocol version (1 or 2).
    pub x402_version: u64,
    /// The payment scheme (`exact`).
    pub scheme: String,
    /// CAIP-2 network id (`eip155:8453`).
    pub network: String,
    /// The token contract, `0x…` as offered.
    pub asset: String,
    /// What the payer authorized, atomic units of `asset`.
    #[serde(flatten)]
    pub amount: Amount,
    /// The recipient, `0x…` as offered.
    pub pay_to: String,
    /// The route paid for, as configured (`GET /reports/:id`).
    pub route: String,
    /// The request's method.
    pub method: String,
    /// The request's canonical path (no query).
    pub path: String,
}

/// How much was authorized, atomic units as a decimal string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Amount {
    /// `exact`: the price, charged in full (`"amount"`).
    #[serde(rename = "amount")]
    Exact(String),
    /// A metered scheme (`upto`): the most that may be charged (`"maxAmount"`).
    #[serde(rename = "maxAmount")]
    UpTo(String),
}

/// The context of one paid request before it is signed: all but the times, which are set when it
/// is forwarded ([`PaymentContext::claims`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentContext {
    /// The paywall's public origin (`PUBLIC_URL`, else the `scheme://authority` the client used).
    pub issuer: String,
    /// The origin it is forwarded to (`ORIGIN_URL`, with its path prefix; for a service-binding
    /// origin, the public origin).
    pub audience: String,
    /// The payer's address, EIP-55 checksummed.
    pub payer: String,
    /// The authorization id: `network/asset/payer/nonce` (addresses and nonce lower-case hex).
    pub authorization: String,
    pub grant: Grant,
}

/// The JWS claims (field order as serialised).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    /// Unix seconds.
    pub iat: u64,
    /// Unix seconds.
    pub exp: u64,
    pub jti: String,
    pub x402: Grant,
}

impl PaymentContext {
    /// The claims of this context issued at `now` (Unix seconds), valid for `lifetime_seconds`.
    pub fn claims(&self, now: u64, lifetime_seconds: u64) -> Claims {
        Claims {
            iss: self.issuer.clone(),
            sub: self.payer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now.saturating_add(lifetime_seconds),
            jti: self.authorization.clone(),
            x402: self.grant.clone(),
        }
    }
}

/// The compact JWS: `signing_input "." base64url(signature)`.
pub fn compact(signing_input: &str, signature: &[u8]) -> String {
    crate::facilitator::cdp::compact_jws(signing_input, signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8037 Appendix A.1: the Ed25519 private key of the RFC's examples.
    const RFC8037_JWK: &str = r#"{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;

    fn context() -> PaymentContext {
        PaymentContext {
            issuer: "https://pay.example".into(),
            audience: "https://origin.example/v1".into(),
            payer: "0x857b06519E91e3A54538791bDbb0E22373e36b66".into(),
            authorization: "eip155:84532/0x036cbd53842c5426634e7929541ec2318f3dcf7e/0x857b06519e91e3a54538791bdbb0e22373e36b66/0x01".into(),
            grant: Grant {
                x402_version: 2,
                scheme: "exact".into(),
                network: "eip155:84532".into(),
                asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
                amount: Amount::Exact("10000".into()),
                pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
                route: "GET /reports/:id".into(),
                method: "GET".into(),
                path: "/reports/7".into(),
            },
        }
    }

    #[test]
    fn the_key_id_is_the_rfc7638_thumbprint() {
        let key = ContextKey::parse(RFC8037_JWK).unwrap();
        // RFC 8037 Appendix A.3: the thumbprint of this key.
        assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        assert_eq!(key.signing_key().id, format!("payment-context/{}", key.kid()));
        assert_eq!(key.signing_key().alg(), "EdDSA");
        let jwks: serde_json::Value = serde_json::from_slice(&key.jwks()).unwrap();
        assert_eq!(
            jwks,
            serde_json::json!({"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k","alg":"EdDSA","use":"sig"}]})
        );
        assert!(!String::from_utf8(key.jwks()).unwrap().contains("nWGxne"), "the private key is never published");
        assert!(!format!("{key:?}").contains("nWGxne"), "Debug never prints the private key");
    }

    #[test]
    fn bad_keys_are_refused_naming_the_variable_without_quoting_it() {
        let cases = [
            ("not json", "not a JSON object"),
            (r#"{"kty":"EC","crv":"P-256","d":"AA","x":"AA"}"#, "must be an Ed25519 key"),
            (r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#, "has no \"d\""),
            (r#"{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}"#, "has no \"x\""),
            (r#"{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"AAAA"}"#, "3 bytes"),
            (r#"{"kty":"OKP","crv":"Ed25519","d":"!!","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#, "not base64url"),
        ];
        for (secret, says) in cases {
            let e = ContextKey::parse(secret).unwrap_err();
            assert!(e.starts_with(KEY_VAR), "{e}");
            assert!(e.contains(says), "{secret}: {e}");
            assert!(!e.contains("nWGxne"), "the secret is never quoted: {e}");
        }
        assert!(ContextKey::parse(&" ".repeat(2000)).unwrap_err().contains("longer than"));
        // A JWK with extra members (as some tools write it) is read.
        let extra = RFC8037_JWK.replace("\"kty\"", "\"kid\":\"mine\",\"use\":\"sig\",\"kty\"");
        assert_eq!(ContextKey::parse(&extra).unwrap(), ContextKey::parse(RFC8037_JWK).unwrap());
    }

    #[test]
    fn the_signing_input_lays_out_header_and_claims() {
        let key = ContextKey::parse(RFC8037_JWK).unwrap();
        let claims = context().claims(1_800_000_000, 30);
        let input = key.signing_input(&claims);
        let (h, c) = input.split_once('.').unwrap();
        let h = String::from_utf8(URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
        let c = String::from_utf8(URL_SAFE_NO_PAD.decode(c).unwrap()).unwrap();
        assert_eq!(h, r#"{"alg":"EdDSA","kid":"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k","typ":"x402-payment-context+jwt"}"#);
        assert_eq!(
            c,
            concat!(
                r#"{"iss":"https://pay.example","sub":"0x857b06519E91e3A54538791bDbb0E22373e36b66","aud":"https://origin.example/v1","#,
                r#""iat":1800000000,"exp":1800000030,"#,
                r#""jti":"eip155:84532/0x036cbd53842c5426634e7929541ec2318f3dcf7e/0x857b06519e91e3a54538791bdbb0e22373e36b66/0x01","#,
                r#""x402":{"x402Version":2,"scheme":"exact","network":"eip155:84532","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","#,
                r#""amount":"10000","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","route":"GET /reports/:id","method":"GET","path":"/reports/7"}}"#
            )
        );
        assert_eq!(compact("a.b", &[0xff; 2]), "a.b.__8");
    }

    #[test]
    fn a_metered_grant_carries_max_amount_instead_of_amount() {
        let mut ctx = context();
        ctx.grant.scheme = "upto".into();
        ctx.grant.amount = Amount::UpTo("50000".into());
        let v = serde_json::to_value(ctx.claims(1, 1)).unwrap();
        assert_eq!(v["x402"]["maxAmount"], "50000");
        assert!(v["x402"].get("amount").is_none());
    }
}
