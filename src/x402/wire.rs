//! x402 wire formats: protocol v2 (`specs/x402-specification-v2.md` §5,
//! `specs/transports-v2/http.md`) and, for legacy clients, v1 (`specs/x402-specification-v1.md`
//! §5, `specs/transports-v1/http.md`): the challenge, the client's `PaymentPayload`, the
//! facilitator's `SettleResponse`, and their base64 header encodings.
//!
//! Decoding is bounded: a header value longer than [`MAX_PAYMENT_HEADER_BYTES`] is refused before
//! any base64 or JSON work.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this module speaks.
pub const X402_VERSION: u64 = 2;

/// Request header carrying a base64 JSON `PaymentPayload` (v2).
pub const PAYMENT_SIGNATURE: &str = "payment-signature";
/// Response header carrying a base64 JSON `PaymentRequired` (v2), on 402.
pub const PAYMENT_REQUIRED: &str = "payment-required";
/// Response header carrying a base64 JSON `SettleResponse` (v2).
pub const PAYMENT_RESPONSE: &str = "payment-response";
/// Request header carrying a base64 JSON v1 `PaymentPayload`.
pub const X_PAYMENT: &str = "x-payment";
/// Response header carrying a base64 JSON `SettleResponse` to a v1 payment.
pub const X_PAYMENT_RESPONSE: &str = "x-payment-response";

/// Largest accepted `PAYMENT-SIGNATURE` value, in bytes of base64 text (16 KiB). An EOA payment
/// is about 1.2 KB; the cap leaves room for smart-wallet (ERC-6492) signatures.
pub const MAX_PAYMENT_HEADER_BYTES: usize = 16 * 1024;

/// Standard base64 (RFC 4648 §4) that accepts input with or without `=` padding.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_encode_padding(true).with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Base64 (standard, padded) of the compact JSON of `value`: the x402 header encoding.
pub fn encode_header<T: Serialize>(value: &T) -> String {
    // Serialising our own plain structs to JSON cannot fail.
    B64.encode(serde_json::to_vec(value).unwrap_or_default())
}

/// `extra` of an EVM requirement: the token's EIP-712 domain `name` and `version` (`exact`
/// signs under it), and for `upto` what the official server (`@x402/evm` `upto/server`) adds:
/// `assetTransferMethod` (`"permit2"`) and the facilitator's `facilitatorAddress` (from its
/// `/supported` `extra`), which the payer's Permit2 witness must name.
///
/// The optional fields are left out of the JSON when `None`, so an `exact` requirement
/// serialises as `{"name","version"}` exactly (clients echo it back in `accepted`, which is
/// matched by JSON deep equality).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Eip712Extra {
    pub name: String,
    pub version: String,
    /// `"permit2"` on `upto` requirements (`exact`: EIP-3009, the field left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_transfer_method: Option<String>,
    /// `upto`: the address of the facilitator that may settle (EIP-55 `0x…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facilitator_address: Option<String>,
    /// `batch-settlement`: who authorizes claims and refunds (EIP-55 `0x…`; the facilitator's,
    /// from its `/supported` `kinds[].extra.receiverAuthorizer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver_authorizer: Option<String>,
    /// `batch-settlement`: the channel's `withdrawDelay` (seconds, 900..=2592000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdraw_delay: Option<u64>,
    /// `batch-settlement`: the smallest deposit the seller wants (atomic units, decimal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_deposit: Option<String>,
}

impl Eip712Extra {
    /// The `exact` form: `{"name": name, "version": version}`.
    pub fn exact(name: impl Into<String>, version: impl Into<String>) -> Eip712Extra {
        Eip712Extra { name: name.into(), version: version.into(), asset_transfer_method: None, facilitator_address: None, receiver_authorizer: None, withdraw_delay: None, min_deposit: None }
    }
}

/// One way to pay (`accepts[]` entry), v2 §5.1. `amount` is in atomic units of `asset`;
/// `network` is CAIP-2; `maxTimeoutSeconds` bounds the authorization's lifetime in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    pub scheme: String,
    pub network: String,
    pub amount: String,
    pub asset: String,
    pub pay_to: String,
    pub max_timeout_seconds: u64,
    pub extra: Eip712Extra,
}

/// `resource` of a `PaymentRequired`: what is being paid for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

/// The 402 challenge, v2 §5.1: sent base64-encoded in `PAYMENT-REQUIRED` and as the JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    pub x402_version: u64,
    /// A reason code (x402 §9 names where one fits, e.g. `invalid_exact_evm_payload_signature`).
    pub error: String,
    pub resource: ResourceInfo,
    pub accepts: Vec<PaymentRequirements>,
    /// Extensions the server supports (v2 §5.1), keyed by extension id (`sign-in-with-x`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Value>,
}

/// One way to pay in v1 form (v1 §5.1): `maxAmountRequired` instead of `amount`, a v1 network
/// name instead of CAIP-2, and the resource description inside each requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirementsV1 {
    pub scheme: String,
    pub network: String,
    pub max_amount_required: String,
    pub resource: String,
    pub description: String,
    pub mime_type: String,
    pub pay_to: String,
    pub max_timeout_seconds: u64,
    pub asset: String,
    pub extra: Eip712Extra,
}

/// The v1 402 body (`PaymentRequirementsResponse`, v1 §5.1), read by legacy v1 clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequiredV1 {
    pub x402_version: u64,
    pub error: String,
    pub accepts: Vec<PaymentRequirementsV1>,
}

/// The settlement result, v2 §5.3, as returned by `POST /settle` and sent to the client in
/// `PAYMENT-RESPONSE`. `transaction` is the transaction hash (`""` on failure).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettleResponse {
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    #[serde(default)]
    pub transaction: String,
    #[serde(default)]
    pub network: String,
    /// `upto`: the amount actually settled, atomic units (decimal string); may be `"0"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
}

/// The facilitator's `POST /verify` answer, v2 §5.2.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    pub is_valid: bool,
    #[serde(default)]
    pub invalid_reason: Option<String>,
    #[serde(default)]
    pub payer: Option<String>,
}

/// EIP-3009 authorization as it travels in JSON: every field a string (addresses `0x…`,
/// integers decimal, `nonce` 32-byte hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationWire {
    pub from: String,
    pub to: String,
    pub value: String,
    pub valid_after: String,
    pub valid_before: String,
    pub nonce: String,
}

/// `payload` of an EVM `exact` EIP-3009 payment: the signature (hex) and the signed authorization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExactEvmPayload {
    pub signature: String,
    pub authorization: AuthorizationWire,
}

/// `payload.permit2Authorization.permitted` of an `upto` payment: the token and the maximum
/// amount (atomic units, decimal string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPermissionsWire {
    pub token: String,
    pub amount: String,
}

/// `payload.permit2Authorization.witness` of an `upto` payment: recipient, the facilitator
/// allowed to settle, and `validAfter` (Unix seconds, decimal string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UptoWitnessWire {
    pub to: String,
    pub facilitator: String,
    pub valid_after: String,
}

/// The Permit2 `permitWitnessTransferFrom` authorization of an `upto` payment as it travels in
/// JSON (x402 `specs/schemes/upto/scheme_upto_evm.md`): `from` is the owner (payer), `spender`
/// the x402 upto proxy, `nonce` a uint256 string (decimal as the official client sends it; the
/// spec's example writes it as 0x hex), `deadline` Unix seconds (decimal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permit2AuthorizationWire {
    pub from: String,
    pub permitted: TokenPermissionsWire,
    pub spender: String,
    pub nonce: String,
    pub deadline: String,
    pub witness: UptoWitnessWire,
}

/// `payload` of an EVM `upto` payment: the EIP-712 signature (hex) over the Permit2 message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UptoPermit2Payload {
    pub signature: String,
    pub permit2_authorization: Permit2AuthorizationWire,
}

/// The parsed `payload` of a payment, by the scheme it pays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemePayload {
    /// `exact` (and every v1 payment): an EIP-3009 `transferWithAuthorization`.
    Eip3009(ExactEvmPayload),
    /// `upto`: a Permit2 `permitWitnessTransferFrom` to the x402 upto proxy.
    UptoPermit2(UptoPermit2Payload),
}

impl SchemePayload {
    /// The signature as sent (`0x…` hex, unchecked).
    pub fn signature(&self) -> &str {
        match self {
            SchemePayload::Eip3009(p) => &p.signature,
            SchemePayload::UptoPermit2(p) => &p.signature,
        }
    }
}

/// How a payment names the requirement it pays.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    /// v2 `accepted`: a full copy of one offered requirement (compared by JSON deep equality).
    Accepted(Value),
    /// v1 top-level `scheme` and `network` (a v1 network name).
    SchemeNetwork { scheme: String, network: String },
}

/// A decoded payment header (`PAYMENT-SIGNATURE` for v2, `X-PAYMENT` for v1): the raw JSON
/// (forwarded verbatim to the facilitator) and the parts the paywall checks.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentPayload {
    /// `x402Version`: 1 or 2.
    pub version: u64,
    /// The whole payload as sent, for `/settle` and `/verify`.
    pub raw: Value,
    /// Which requirement it pays.
    pub selector: Selector,
    /// `payload`, parsed by the selected scheme: [`SchemePayload::UptoPermit2`] when v2
    /// `accepted.scheme` is `upto` and the payload has that shape, else EIP-3009.
    pub payload: SchemePayload,
}

impl PaymentPayload {
    /// The EIP-3009 authorization, for `exact` payments.
    pub fn exact(&self) -> Option<&ExactEvmPayload> {
        match &self.payload {
            SchemePayload::Eip3009(p) => Some(p),
            SchemePayload::UptoPermit2(_) => None,
        }
    }

    /// The Permit2 authorization, for `upto` payments.
    pub fn upto(&self) -> Option<&UptoPermit2Payload> {
        match &self.payload {
            SchemePayload::UptoPermit2(p) => Some(p),
            SchemePayload::Eip3009(_) => None,
        }
    }
}

/// Why a `PAYMENT-SIGNATURE` header could not be decoded. Each maps to an x402 reason code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    TooLarge { len: usize },
    Base64,
    Json(String),
    Version(Option<u64>),
    MissingAccepted,
    MissingSchemeNetwork,
    /// A v1 payment for a scheme v1 does not have (`upto`).
    UnsupportedScheme(String),
    Payload(String),
    /// `accepted.scheme` is `upto` but `payload` is neither a Permit2 nor an EIP-3009 authorization.
    UptoPayload(String),
}

impl DecodeError {
    /// The x402 §9 reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Version(_) => "invalid_x402_version",
            DecodeError::UnsupportedScheme(_) => "unsupported_scheme",
            _ => "invalid_payload",
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooLarge { len } => write!(f, "payment header is {len} bytes; the limit is {MAX_PAYMENT_HEADER_BYTES}"),
            DecodeError::Base64 => f.write_str("payment header is not valid base64"),
            DecodeError::Json(e) => write!(f, "payment header is not a JSON object: {e}"),
            DecodeError::Version(Some(v)) => write!(f, "x402Version {v} does not match the header it came in (PAYMENT-SIGNATURE carries 2, X-PAYMENT carries 1)"),
            DecodeError::Version(None) => f.write_str("x402Version is missing"),
            DecodeError::MissingAccepted => f.write_str("payment payload has no `accepted` requirement"),
            DecodeError::MissingSchemeNetwork => f.write_str("v1 payment payload needs string `scheme` and `network`"),
            DecodeError::UnsupportedScheme(s) => write!(f, "x402 v1 has no `{s}` scheme; pay it with v2 (PAYMENT-SIGNATURE)"),
            DecodeError::Payload(e) => write!(f, "payment `payload` is not an EIP-3009 authorization: {e}"),
            DecodeError::UptoPayload(e) => write!(f, "payment `payload` is not an upto Permit2 authorization: {e}"),
        }
    }
}

/// Decodes a v2 `PAYMENT-SIGNATURE` header value: size cap, base64, JSON object, `x402Version`
/// 2, `accepted` present, `payload` shaped as the scheme of `accepted` wants: an
/// [`UptoPermit2Payload`] for `upto` (one shaped as [`ExactEvmPayload`] is kept as such, so the
/// offer match refuses it as for any other mismatch), else an [`ExactEvmPayload`].
pub fn decode_payment_signature(header: &str) -> Result<PaymentPayload, DecodeError> {
    decode_payment(header, X402_VERSION)
}

/// Decodes a v1 `X-PAYMENT` header value: as [`decode_payment_signature`], but `x402Version` 1
/// with top-level `scheme` and `network` instead of `accepted`, and never `upto` (v1 has only
/// `exact`; refused as [`DecodeError::UnsupportedScheme`]).
pub fn decode_x_payment(header: &str) -> Result<PaymentPayload, DecodeError> {
    decode_payment(header, 1)
}

fn decode_payment(header: &str, version: u64) -> Result<PaymentPayload, DecodeError> {
    if header.len() > MAX_PAYMENT_HEADER_BYTES {
        return Err(DecodeError::TooLarge { len: header.len() });
    }
    let bytes = B64.decode(header.trim().as_bytes()).map_err(|_| DecodeError::Base64)?;
    let raw: Value = serde_json::from_slice(&bytes).map_err(|e| DecodeError::Json(e.to_string()))?;
    let obj = raw.as_object().ok_or_else(|| DecodeError::Json("not an object".into()))?;
    let got = obj.get("x402Version").and_then(Value::as_u64);
    if got != Some(version) {
        return Err(DecodeError::Version(got));
    }
    let selector = if version == 1 {
        match (obj.get("scheme").and_then(Value::as_str), obj.get("network").and_then(Value::as_str)) {
            (Some("upto"), Some(_)) => return Err(DecodeError::UnsupportedScheme("upto".into())),
            (Some(scheme), Some(network)) => Selector::SchemeNetwork { scheme: scheme.into(), network: network.into() },
            _ => return Err(DecodeError::MissingSchemeNetwork),
        }
    } else {
        Selector::Accepted(obj.get("accepted").filter(|v| v.is_object()).cloned().ok_or(DecodeError::MissingAccepted)?)
    };
    let payload = obj.get("payload").cloned().ok_or_else(|| DecodeError::Payload("missing".into()))?;
    let upto = matches!(&selector, Selector::Accepted(a) if a.get("scheme").and_then(Value::as_str) == Some("upto"));
    let payload = if upto {
        match serde_json::from_value::<UptoPermit2Payload>(payload.clone()) {
            Ok(p) => SchemePayload::UptoPermit2(p),
            Err(e) => SchemePayload::Eip3009(serde_json::from_value(payload).map_err(|_| DecodeError::UptoPayload(e.to_string()))?),
        }
    } else {
        SchemePayload::Eip3009(serde_json::from_value(payload).map_err(|e| DecodeError::Payload(e.to_string()))?)
    };
    Ok(PaymentPayload { version, raw, selector, payload })
}

/// Decodes any base64 JSON header (used by tests and for diagnostics), bounded like
/// [`decode_payment_signature`].
pub fn decode_header_json(header: &str) -> Option<Value> {
    if header.len() > MAX_PAYMENT_HEADER_BYTES {
        return None;
    }
    let bytes = B64.decode(header.trim().as_bytes()).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `PAYMENT-REQUIRED` example value of `specs/transports-v2/http.md`.
    const SPEC_PAYMENT_REQUIRED: &str = "eyJ4NDAyVmVyc2lvbiI6MiwiZXJyb3IiOiJQQVlNRU5ULVNJR05BVFVSRSBoZWFkZXIgaXMgcmVxdWlyZWQiLCJyZXNvdXJjZSI6eyJ1cmwiOiJodHRwczovL2FwaS5leGFtcGxlLmNvbS9wcmVtaXVtLWRhdGEiLCJkZXNjcmlwdGlvbiI6IkFjY2VzcyB0byBwcmVtaXVtIG1hcmtldCBkYXRhIiwibWltZVR5cGUiOiJhcHBsaWNhdGlvbi9qc29uIn0sImFjY2VwdHMiOlt7InNjaGVtZSI6ImV4YWN0IiwibmV0d29yayI6ImVpcDE1NTo4NDUzMiIsImFtb3VudCI6IjEwMDAwIiwiYXNzZXQiOiIweDAzNkNiRDUzODQyYzU0MjY2MzRlNzkyOTU0MWVDMjMxOGYzZENGN2UiLCJwYXlUbyI6IjB4MjA5NjkzQmM2YWZjMEM1MzI4YkEzNkZhRjAzQzUxNEVGMzEyMjg3QyIsIm1heFRpbWVvdXRTZWNvbmRzIjo2MCwiZXh0cmEiOnsibmFtZSI6IlVTREMiLCJ2ZXJzaW9uIjoiMiJ9fV19";

    #[test]
    fn spec_challenge_round_trips_through_our_types() {
        let v = decode_header_json(SPEC_PAYMENT_REQUIRED).unwrap();
        let pr: PaymentRequired = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(pr.accepts[0].amount, "10000");
        assert_eq!(pr.accepts[0].extra.name, "USDC");
        assert_eq!(serde_json::to_value(&pr).unwrap(), v);
        assert_eq!(encode_header(&pr), SPEC_PAYMENT_REQUIRED);
    }

    fn payload_json() -> Value {
        serde_json::json!({
            "x402Version": 2,
            "accepted": {"scheme": "exact"},
            "payload": {"signature": "0x00", "authorization": {
                "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66", "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                "value": "10000", "validAfter": "1", "validBefore": "2",
                "nonce": "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"}}
        })
    }

    #[test]
    fn decodes_padded_and_unpadded_base64() {
        let h = encode_header(&payload_json());
        let p = decode_payment_signature(&h).unwrap();
        assert_eq!(p.exact().unwrap().authorization.value, "10000");
        let unpadded = h.trim_end_matches('=');
        assert_eq!(decode_payment_signature(unpadded).unwrap(), p);
    }

    #[test]
    fn decode_errors_are_classified() {
        assert_eq!(decode_payment_signature("%%%"), Err(DecodeError::Base64));
        assert!(matches!(decode_payment_signature(&B64.encode("{nope")), Err(DecodeError::Json(_))));
        assert!(matches!(decode_payment_signature(&B64.encode("[1]")), Err(DecodeError::Json(_))));
        let mut v1 = payload_json();
        v1["x402Version"] = 1.into();
        assert_eq!(decode_payment_signature(&encode_header(&v1)), Err(DecodeError::Version(Some(1))));
        let mut no_acc = payload_json();
        no_acc.as_object_mut().unwrap().remove("accepted");
        assert_eq!(decode_payment_signature(&encode_header(&no_acc)), Err(DecodeError::MissingAccepted));
        assert_eq!(decode_x_payment(&encode_header(&payload_json())), Err(DecodeError::Version(Some(2))));
        let mut v1 = payload_json();
        v1["x402Version"] = 1.into();
        assert_eq!(decode_x_payment(&encode_header(&v1)), Err(DecodeError::MissingSchemeNetwork));
        v1["scheme"] = "exact".into();
        v1["network"] = "base-sepolia".into();
        let p = decode_x_payment(&encode_header(&v1)).unwrap();
        assert_eq!(p.selector, Selector::SchemeNetwork { scheme: "exact".into(), network: "base-sepolia".into() });
        let mut bad = payload_json();
        bad["payload"]["authorization"]["value"] = 10000.into();
        assert!(matches!(decode_payment_signature(&encode_header(&bad)), Err(DecodeError::Payload(_))));
        let mut v1_upto = v1.clone();
        v1_upto["scheme"] = "upto".into();
        assert_eq!(decode_x_payment(&encode_header(&v1_upto)).map_err(|e| e.reason()), Err("unsupported_scheme"));
        let big = "A".repeat(MAX_PAYMENT_HEADER_BYTES + 1);
        assert_eq!(decode_payment_signature(&big), Err(DecodeError::TooLarge { len: big.len() }));
    }

    #[test]
    fn the_payload_shape_follows_the_accepted_scheme() {
        let permit2 = serde_json::json!({"signature": "0x00", "permit2Authorization": {
            "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
            "permitted": {"token": "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "amount": "10000"},
            "spender": "0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002", "nonce": "7", "deadline": "2",
            "witness": {"to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "facilitator": "0x90F79bf6EB2c4f870365E785982E1f101E93b906", "validAfter": "0"}}});
        let mut upto = payload_json();
        upto["accepted"]["scheme"] = "upto".into();
        upto["payload"] = permit2.clone();
        let p = decode_payment_signature(&encode_header(&upto)).unwrap();
        assert_eq!(p.upto().unwrap().permit2_authorization.nonce, "7");
        assert!(p.exact().is_none());
        assert_eq!(p.payload.signature(), "0x00");
        // An EIP-3009 payload under `upto` stays EIP-3009 (the offer match refuses it).
        let mut upto_exact = payload_json();
        upto_exact["accepted"]["scheme"] = "upto".into();
        assert!(decode_payment_signature(&encode_header(&upto_exact)).unwrap().exact().is_some());
        // Neither shape: an upto payload error; a Permit2 payload under `exact`: the EIP-3009 error.
        upto["payload"]["permit2Authorization"]["nonce"] = 7.into();
        assert!(matches!(decode_payment_signature(&encode_header(&upto)), Err(DecodeError::UptoPayload(_))));
        let mut exact_permit2 = payload_json();
        exact_permit2["payload"] = permit2;
        assert!(matches!(decode_payment_signature(&encode_header(&exact_permit2)), Err(DecodeError::Payload(_))));
    }

    #[test]
    fn an_exact_extra_serialises_without_the_upto_fields() {
        assert_eq!(serde_json::to_string(&Eip712Extra::exact("USDC", "2")).unwrap(), r#"{"name":"USDC","version":"2"}"#);
        let upto = Eip712Extra { asset_transfer_method: Some("permit2".into()), facilitator_address: Some("0x90F79bf6EB2c4f870365E785982E1f101E93b906".into()), ..Eip712Extra::exact("USDC", "2") };
        let json = r#"{"name":"USDC","version":"2","assetTransferMethod":"permit2","facilitatorAddress":"0x90F79bf6EB2c4f870365E785982E1f101E93b906"}"#;
        assert_eq!(serde_json::to_string(&upto).unwrap(), json);
        assert_eq!(serde_json::from_str::<Eip712Extra>(json).unwrap(), upto);
    }
}

/// A JSON document laid out once, with holes where per-request strings go: the 402 challenge
/// only varies in its resource URL and error text, so its JSON (header and body) is serialised
/// once per route and method and filled in per request without building or serialising values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonTemplate {
    parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplatePart {
    Literal(String),
    /// A JSON string's contents (between its quotes): hole `i`.
    Hole(usize),
}

/// A route's 402 challenge for one method, laid out once: the `PAYMENT-REQUIRED` header's JSON
/// and the body's, with hole 0 = the resource URL and hole 1 = the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeLayout {
    pub header: JsonTemplate,
    pub body: JsonTemplate,
}

/// Marker strings the template is serialised with; each appears in the JSON as `\u0000<n>\u0000`
/// (serde_json escapes U+0000), which no configured value can contain.
pub const TEMPLATE_HOLES: [&str; 2] = ["\u{0}0\u{0}", "\u{0}1\u{0}"];

impl JsonTemplate {
    /// Serialises `value`, whose strings equal to [`TEMPLATE_HOLES`]`[i]` become hole `i`.
    pub fn new<T: Serialize>(value: &T) -> Result<JsonTemplate, serde_json::Error> {
        let json = serde_json::to_string(value)?;
        let markers: Vec<String> = (0..TEMPLATE_HOLES.len()).map(|i| format!("\\u0000{i}\\u0000")).collect();
        let mut parts = Vec::new();
        let mut rest = json.as_str();
        loop {
            let next = markers.iter().enumerate().filter_map(|(i, m)| rest.find(m.as_str()).map(|at| (at, i, m.len()))).min();
            match next {
                Some((at, i, len)) => {
                    parts.push(TemplatePart::Literal(rest[..at].to_string()));
                    parts.push(TemplatePart::Hole(i));
                    rest = &rest[at + len..];
                }
                None => {
                    parts.push(TemplatePart::Literal(rest.to_string()));
                    break;
                }
            }
        }
        Ok(JsonTemplate { parts })
    }

    /// The JSON with hole `i` replaced by `values[i]`, escaped as a JSON string's contents.
    pub fn render(&self, values: &[&str]) -> String {
        let escaped: Vec<String> = values.iter().map(|v| json_string_contents(v)).collect();
        let len = self.parts.iter().map(|p| if let TemplatePart::Literal(l) = p { l.len() } else { 0 }).sum::<usize>() + escaped.iter().map(|e| e.len() * 2).sum::<usize>();
        let mut out = String::with_capacity(len);
        for part in &self.parts {
            match part {
                TemplatePart::Literal(l) => out.push_str(l),
                TemplatePart::Hole(i) => out.push_str(escaped.get(*i).map(String::as_str).unwrap_or_default()),
            }
        }
        out
    }
}

/// `s` as the inside of a JSON string literal (escaped as serde_json escapes it).
fn json_string_contents(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    quoted[1..quoted.len() - 1].to_string()
}

/// Base64 (standard, padded) of `bytes`, as the x402 headers carry JSON.
pub fn encode_header_bytes(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

#[cfg(test)]
mod template_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_template_renders_what_serialising_the_filled_value_gives() {
        let shape = |url: &str, error: &str| json!({ "x402Version": 2, "error": error, "resource": { "url": url, "description": "d" }, "again": [url] });
        let t = JsonTemplate::new(&shape(TEMPLATE_HOLES[0], TEMPLATE_HOLES[1])).unwrap();
        for (url, error) in [("https://a.test/x?q=1&r=\"2\"", "PAYMENT-SIGNATURE header is required"), ("", "</script>\u{2028}\n\t\\"), ("é/ü", "\u{0}")] {
            assert_eq!(t.render(&[url, error]), serde_json::to_string(&shape(url, error)).unwrap(), "{url:?} {error:?}");
        }
        let none = JsonTemplate::new(&json!({ "a": "b" })).unwrap();
        assert_eq!(none.render(&["x", "y"]), r#"{"a":"b"}"#);
    }
}
