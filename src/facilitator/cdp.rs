//! Coinbase Developer Platform (CDP) API keys and the per-request JWT that CDP's x402
//! facilitator (`https://api.cdp.coinbase.com/platform/v2/x402`) requires.
//!
//! The token is a JWS (RFC 7515, compact form) laid out as `@coinbase/cdp-sdk`'s `generateJwt`
//! (1.57.0) makes it:
//! - header `{"alg":"ES256"|"EdDSA","kid":<key id>,"typ":"JWT","nonce":<16 random bytes, hex>}`;
//! - claims `{"sub":<key id>,"iss":"cdp","uris":["<METHOD> <host><path>"],"iat":now,"nbf":now,
//!   "exp":now+120}` (seconds since the Unix epoch), bound to one endpoint.
//!
//! This module only parses keys and lays out the signing input; the signature itself is made by
//! the runtime's WebCrypto (`crypto.subtle.sign`, see [`crate::gateway::Signer::sign`]), so no
//! P-256 or Ed25519 arithmetic is compiled into the wasm.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use pkcs8::der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef};
use pkcs8::der::{Decode, Encode};
use serde::Serialize;

/// Lifetime of a CDP JWT, seconds (`generateJwt`'s default; CDP refuses longer ones).
pub const JWT_LIFETIME_SECONDS: u64 = 120;

/// `id-ecPublicKey` (RFC 5480 §2.1.1).
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `secp256r1` / P-256 (RFC 5480 §2.1.1.1).
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// Largest key secret accepted, bytes.
const MAX_SECRET_BYTES: usize = 4096;

/// The private key of a CDP API key, in the form WebCrypto imports.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub enum CdpKeyMaterial {
    /// ECDSA P-256 (JWT `alg` ES256), PKCS #8 DER (RFC 5958), for `importKey("pkcs8", …)`.
    Es256 { pkcs8_der: Vec<u8> },
    /// Ed25519 (JWT `alg` EdDSA; RFC 8037): 32-byte seed `d` and 32-byte public key `x`, both
    /// base64url, for `importKey("jwk", {kty:"OKP", crv:"Ed25519", d, x})`.
    Ed25519 { d: String, x: String },
}

/// A CDP API key: its id (the JWT's `kid` and `sub`) and private key.
#[derive(Clone, PartialEq, Eq)]
pub struct CdpKey {
    /// `CDP_API_KEY_ID`: "organizations/…/apiKeys/…" or a bare UUID.
    pub id: String,
    pub material: CdpKeyMaterial,
}

impl std::fmt::Debug for CdpKey {
    /// Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdpKey").field("id", &self.id).field("alg", &self.alg()).finish_non_exhaustive()
    }
}

impl CdpKey {
    /// Parses `CDP_API_KEY_SECRET` in either form CDP issues: an ECDSA key as PEM (`-----BEGIN EC
    /// PRIVATE KEY-----`, SEC1 / RFC 5915, or `-----BEGIN PRIVATE KEY-----`, PKCS #8, P-256 only),
    /// or an Ed25519 key as base64 of 64 bytes (seed then public key). Literal `\n` sequences (a
    /// PEM pasted from CDP's JSON key file) are read as line breaks. Err says what is wrong
    /// without quoting the secret.
    pub fn parse(id: &str, secret: &str) -> Result<CdpKey, String> {
        let id = id.trim();
        if id.is_empty() || id.len() > 256 || id.chars().any(|c| c.is_control() || c == '"') {
            return Err("CDP_API_KEY_ID must be the key's id (\"organizations/…/apiKeys/…\" or a UUID)".into());
        }
        if secret.len() > MAX_SECRET_BYTES {
            return Err(format!("CDP_API_KEY_SECRET is longer than {MAX_SECRET_BYTES} bytes"));
        }
        let secret = secret.trim().replace("\\n", "\n");
        let material = if secret.starts_with("-----BEGIN") { es256_from_pem(&secret)? } else { ed25519_from_base64(&secret)? };
        Ok(CdpKey { id: id.to_string(), material })
    }

    /// The JWT `alg`: `ES256` or `EdDSA`.
    pub fn alg(&self) -> &'static str {
        match self.material {
            CdpKeyMaterial::Es256 { .. } => "ES256",
            CdpKeyMaterial::Ed25519 { .. } => "EdDSA",
        }
    }

    /// The JWS signing input `base64url(header) "." base64url(claims)` for a request of
    /// `method` to `url` (absolute http(s) URL; the `uris` claim is `"<METHOD> <host><path>"`,
    /// host without scheme or default port), issued at `now` (Unix seconds) with header `nonce`
    /// (hex). Err when `url` has no host.
    pub fn signing_input(&self, method: &str, url: &str, now: u64, nonce: &str) -> Result<String, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("facilitator URL {url:?}: {e}"))?;
        let host = uri.authority().map(|a| a.as_str()).ok_or_else(|| format!("facilitator URL {url:?} has no host"))?;
        let header = JwtHeader { alg: self.alg(), kid: &self.id, typ: "JWT", nonce };
        let claims = JwtClaims {
            sub: &self.id,
            iss: "cdp",
            uris: [format!("{method} {host}{}", uri.path())],
            iat: now,
            nbf: now,
            exp: now + JWT_LIFETIME_SECONDS,
        };
        let encode = |v: Result<String, serde_json::Error>| v.map(|s| URL_SAFE_NO_PAD.encode(s)).map_err(|e| e.to_string());
        Ok(format!("{}.{}", encode(serde_json::to_string(&header))?, encode(serde_json::to_string(&claims))?))
    }
}

/// The JWT's protected header, fields in `generateJwt`'s order.
#[derive(Serialize)]
struct JwtHeader<'a> {
    alg: &'a str,
    kid: &'a str,
    typ: &'a str,
    nonce: &'a str,
}

/// The JWT's claims, fields in `generateJwt`'s order (its claims, then iat, nbf, exp).
#[derive(Serialize)]
struct JwtClaims<'a> {
    sub: &'a str,
    iss: &'a str,
    uris: [String; 1],
    iat: u64,
    nbf: u64,
    exp: u64,
}

/// The compact JWS: signing input, `.`, base64url of the raw signature (64 bytes for both
/// algorithms: r‖s for ES256 per RFC 7518 §3.4, the Ed25519 signature for EdDSA).
pub fn compact_jws(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn ed25519_from_base64(secret: &str) -> Result<CdpKeyMaterial, String> {
    let bytes = STANDARD
        .decode(secret.as_bytes())
        .map_err(|_| "CDP_API_KEY_SECRET is neither a PEM ECDSA key nor base64 (an Ed25519 key)".to_string())?;
    if bytes.len() != 64 {
        return Err(format!("CDP_API_KEY_SECRET decodes to {} bytes; an Ed25519 key is 64 (seed and public key)", bytes.len()));
    }
    Ok(CdpKeyMaterial::Ed25519 { d: URL_SAFE_NO_PAD.encode(&bytes[..32]), x: URL_SAFE_NO_PAD.encode(&bytes[32..]) })
}

fn es256_from_pem(pem: &str) -> Result<CdpKeyMaterial, String> {
    let (label, der) = pkcs8::der::pem::decode_vec(pem.as_bytes()).map_err(|e| format!("CDP_API_KEY_SECRET is not valid PEM: {e}"))?;
    match label {
        "EC PRIVATE KEY" => {
            let key = sec1::EcPrivateKey::from_der(&der).map_err(|e| format!("CDP_API_KEY_SECRET is not a SEC1 EC private key: {e}"))?;
            let curve = key.parameters.as_ref().and_then(|p| p.named_curve());
            if curve.is_some_and(|c| c != P256) {
                return Err("CDP_API_KEY_SECRET is an EC key on a curve other than P-256".into());
            }
            // PKCS #8 wraps the SEC1 structure as it is (RFC 5915 §1, RFC 5958 §2).
            let private_key = OctetStringRef::new(&der).map_err(|e| e.to_string())?;
            let algorithm = pkcs8::spki::AlgorithmIdentifier { oid: EC_PUBLIC_KEY, parameters: Some(AnyRef::from(&P256)) };
            let info = pkcs8::PrivateKeyInfoRef::new(algorithm, private_key);
            let pkcs8_der = info.to_der().map_err(|e| format!("could not re-encode the EC key as PKCS #8: {e}"))?;
            Ok(CdpKeyMaterial::Es256 { pkcs8_der })
        }
        "PRIVATE KEY" => {
            let info = pkcs8::PrivateKeyInfoRef::from_der(&der).map_err(|e| format!("CDP_API_KEY_SECRET is not a PKCS #8 private key: {e}"))?;
            let curve = info.algorithm.parameters_oid().ok();
            if info.algorithm.oid != EC_PUBLIC_KEY || curve != Some(P256) {
                return Err("CDP_API_KEY_SECRET is a PKCS #8 key but not ECDSA P-256".into());
            }
            Ok(CdpKeyMaterial::Es256 { pkcs8_der: der })
        }
        other => Err(format!("CDP_API_KEY_SECRET is PEM labelled {other:?}; expected \"EC PRIVATE KEY\" or \"PRIVATE KEY\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A throwaway P-256 key made for these tests with `openssl ecparam -genkey` (SEC1), and the
    // same key as `openssl pkcs8 -topk8` writes it. No account uses it.
    const EC_SEC1_PEM: &str = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBqQs0HHf/bBjNSnVyVDfyfoOlKAcE2WDJkuJ2ZxltV+oAoGCCqGSM49\nAwEHoUQDQgAEWLoQyAcegXyV4zJNZirQoBe2NU5BWqPfxlmCQfwoDSl2s3qLJrR2\n55Nyw9AK98dEalgywfR3JBk/w3NbEiIpkg==\n-----END EC PRIVATE KEY-----\n";
    const EC_PKCS8_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgGpCzQcd/9sGM1KdX\nJUN/J+g6UoBwTZYMmS4nZnGW1X6hRANCAARYuhDIBx6BfJXjMk1mKtCgF7Y1TkFa\no9/GWYJB/CgNKXazeosmtHbnk3LD0Ar3x0RqWDLB9HckGT/Dc1sSIimS\n-----END PRIVATE KEY-----\n";
    const EC_P384_SEC1_PEM: &str = "-----BEGIN EC PRIVATE KEY-----\nMIGkAgEBBDCKh+o0Fl5I1WzE++y3VxJbRfeEfN5h5uVHzALxP3DC5D89/VKpHNBr\nUALz4r/zQEugBwYFK4EEACKhZANiAARiVhDSN0DA6FZq13uFnO5v02yi0eDEQQ4v\nHs0BBvo+ebOovLDYRqprRFQwNDnh4cge7i2waelS336VabdZCLeuk6AS0U2KU1Vq\nmH47vTV+kiCvu7K+ihXL4zQ+7zdFIQI=\n-----END EC PRIVATE KEY-----\n";

    #[test]
    fn ecdsa_keys_become_pkcs8_for_webcrypto() {
        let sec1 = CdpKey::parse("kid", EC_SEC1_PEM).unwrap();
        assert_eq!(sec1.alg(), "ES256");
        let CdpKeyMaterial::Es256 { pkcs8_der } = &sec1.material else { panic!("not ES256") };
        let info = pkcs8::PrivateKeyInfoRef::from_der(pkcs8_der).unwrap();
        assert_eq!((info.algorithm.oid, info.algorithm.parameters_oid().unwrap()), (EC_PUBLIC_KEY, P256));
        let (_, sec1_der) = pkcs8::der::pem::decode_vec(EC_SEC1_PEM.as_bytes()).unwrap();
        assert_eq!(info.private_key.as_bytes(), &sec1_der[..], "PKCS #8 wraps the SEC1 key unchanged");
        // The escaped form of CDP's JSON key file, and PKCS #8 PEM, are read too.
        assert_eq!(CdpKey::parse("kid", &EC_SEC1_PEM.replace('\n', "\\n")).unwrap(), sec1);
        assert_eq!(CdpKey::parse("kid", EC_PKCS8_PEM).unwrap().alg(), "ES256");
        assert!(CdpKey::parse("kid", EC_P384_SEC1_PEM).is_err(), "only P-256");
        assert!(CdpKey::parse("kid", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
    }

    #[test]
    fn ed25519_keys_split_into_seed_and_public_key() {
        let bytes: Vec<u8> = (0u8..64).collect();
        let k = CdpKey::parse("kid-1", &STANDARD.encode(&bytes)).unwrap();
        assert_eq!(k.alg(), "EdDSA");
        assert_eq!(k.material, CdpKeyMaterial::Ed25519 { d: URL_SAFE_NO_PAD.encode(&bytes[..32]), x: URL_SAFE_NO_PAD.encode(&bytes[32..]) });
        assert!(CdpKey::parse("kid", &STANDARD.encode([1u8; 32])).unwrap_err().contains("64"));
        assert!(CdpKey::parse("kid", "not base64 !").unwrap_err().contains("neither"));
        assert!(CdpKey::parse("", &STANDARD.encode(&bytes)).is_err());
        assert!(!format!("{k:?}").contains(&URL_SAFE_NO_PAD.encode(&bytes[..32])), "Debug never prints the key");
    }

    #[test]
    fn signing_input_lays_out_cdp_header_and_claims() {
        let k = CdpKey::parse("organizations/o/apiKeys/k", &STANDARD.encode([7u8; 64])).unwrap();
        let input = k.signing_input("POST", "https://api.cdp.coinbase.com/platform/v2/x402/settle", 1_700_000_000, "00ff").unwrap();
        let (h, c) = input.split_once('.').unwrap();
        let h = String::from_utf8(URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
        let c = String::from_utf8(URL_SAFE_NO_PAD.decode(c).unwrap()).unwrap();
        assert_eq!(h, r#"{"alg":"EdDSA","kid":"organizations/o/apiKeys/k","typ":"JWT","nonce":"00ff"}"#);
        assert_eq!(
            c,
            r#"{"sub":"organizations/o/apiKeys/k","iss":"cdp","uris":["POST api.cdp.coinbase.com/platform/v2/x402/settle"],"iat":1700000000,"nbf":1700000000,"exp":1700000120}"#
        );
        assert_eq!(compact_jws("a.b", &[0xff; 2]), "a.b.__8");
    }
}
