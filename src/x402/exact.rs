//! Local verification of an x402 `exact` EVM payment (EIP-3009), everything that can be checked
//! without a chain: the requirement match, recipient, amount, validity window and, for 65-byte
//! EOA signatures, the EIP-712 signature itself.
//!
//! Predicates follow the reference facilitator (`@x402/evm` `exact/facilitator/eip3009.ts`, our
//! REFERENCE §5.4): `to == payTo`, `value == amount` (v2: exact equality), `validAfter <= now`,
//! `validBefore >= now + 6` (one block of slack), which the gateway widens to the time the request
//! needs (origin and facilitator time limits); and, beyond the reference, `validBefore` at most
//! `maxTimeoutSeconds` + 60 s of clock skew ahead, so an authorization valid for years (a
//! standing key to the resource if it ever leaked) is refused. Balance, nonce state and smart-wallet
//! (EIP-1271 / ERC-6492) signatures need the chain and are left to the facilitator.

use ruint::aliases::U256;

use crate::x402::offer::Offer;
use crate::evm::{decode_hex_0x, parse_bytes32, parse_uint256, recover_signer, Address, SignatureError, TransferWithAuthorization};
use crate::x402::{PaymentPayload, Selector};

/// Clock skew tolerated above `maxTimeoutSeconds` in an authorization's `validBefore`.
pub const CLOCK_SKEW_SECONDS: u64 = 60;

/// Seconds an authorization must stay valid beyond now (the reference verifier's block slack).
pub const VALID_BEFORE_SLACK_SECONDS: u64 = 6;

/// Largest signature accepted, in bytes (smart-wallet signatures can be long; EOAs are 65).
pub const MAX_SIGNATURE_BYTES: usize = 4096;

/// A payment that passed the local checks.
#[derive(Debug, Clone)]
pub struct Verified<'a> {
    /// The offered requirement the client chose.
    pub offer: &'a Offer,
    /// `authorization.from`: for EOAs, also the recovered signer.
    pub payer: Address,
    /// The EIP-3009 nonce, identifying this payment on chain together with `payer`.
    pub nonce: [u8; 32],
    /// `authorization.validBefore`, Unix seconds (bounded by the checks above).
    pub valid_before: u64,
    /// `true` when the signature was recovered here; `false` for non-65-byte (smart-wallet)
    /// signatures, which the facilitator's `/verify` must check before anything is served.
    pub signature_checked: bool,
    /// Why a *new* payment with this authorization would be refused for time: `validBefore` is
    /// less than the request's minimum validity ahead (or past). Such an authorization may still
    /// be a retry of one the ledger knows (an unknown outcome, an undelivered settlement), which
    /// the gateway asks before refusing; a fresh one gets this refusal.
    pub late: Option<Invalid>,
    /// `true` when the payment carries something only the chain can check and a settlement would
    /// use without asking (an `upto` payment's EIP-2612 permit): the facilitator's `/verify` runs
    /// before the origin whatever the payer's standing.
    pub verify_first: bool,
}

// A payment the paywall refuses: `Invalid`, its x402 reason code (§9) and a readable message
// (the crate's one refusal reason shape, shared with `siwx`).
use crate::refusal::Invalid;

fn invalid<T>(reason: &'static str, message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid { reason, message: message.into() })
}

/// Checks `payment` against the route's `offers` at Unix time `now` (seconds). `min_validity_seconds`
/// is how long past `now` the authorization must stay valid for a new payment (at least
/// [`VALID_BEFORE_SLACK_SECONDS`]; the gateway passes origin + facilitator time limits + slack):
/// an authorization that passes every other check but not this one is returned with
/// [`Verified::late`] set, so the gateway can ask the ledger before refusing it.
///
/// v2 payments name their offer exactly (`accepted`). v1 payments name only `scheme` and
/// `network`; every offer on that network is tried and the first that verifies wins (the
/// signature's EIP-712 domain pins the asset), else the first offer's refusal is returned.
pub fn verify_exact<'a>(offers: &'a [Offer], payment: &PaymentPayload, now: u64, min_validity_seconds: u64) -> Result<Verified<'a>, Invalid> {
    let mut first_refusal = None;
    for offer in offers {
        let selected = match &payment.selector {
            Selector::Accepted(accepted) => offer.requirements_json == *accepted,
            Selector::SchemeNetwork { scheme, network } => scheme == "exact" && offer.v1_network == Some(network.as_str()),
        };
        if !selected {
            continue;
        }
        match verify_offer(offer, payment, now, min_validity_seconds.max(VALID_BEFORE_SLACK_SECONDS)) {
            Ok(v) => return Ok(v),
            Err(e) => {
                first_refusal.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_refusal {
        return Err(e);
    }
    match &payment.selector {
        Selector::Accepted(_) => invalid("invalid_payment_requirements", "`accepted` is not one of the payment requirements offered for this resource"),
        Selector::SchemeNetwork { scheme, .. } if scheme != "exact" => invalid("unsupported_scheme", format!("scheme `{scheme}` is not offered; only `exact`")),
        Selector::SchemeNetwork { network, .. } => invalid("invalid_network", format!("network `{network}` is not offered for this resource")),
    }
}

fn verify_offer<'a>(offer: &'a Offer, payment: &PaymentPayload, now: u64, min_validity: u64) -> Result<Verified<'a>, Invalid> {
    let Some(exact) = payment.exact().filter(|_| offer.requirements.scheme == "exact") else {
        return invalid("unsupported_scheme", format!("scheme `{}` is not verified as `exact` (EIP-3009); upto payments are checked by `x402::upto::verify_upto`", offer.requirements.scheme));
    };
    let a = &exact.authorization;
    let from = Address::parse(&a.from).ok_or_else(|| Invalid { reason: "invalid_payload", message: "authorization.from is not an address".into() })?;
    let to = Address::parse(&a.to).ok_or_else(|| Invalid { reason: "invalid_payload", message: "authorization.to is not an address".into() })?;
    let uint = |name: &str, s: &str| {
        parse_uint256(s).ok_or_else(|| Invalid { reason: "invalid_payload", message: format!("authorization.{name} is not a uint256 decimal string") })
    };
    let value = uint("value", &a.value)?;
    let valid_after = uint("validAfter", &a.valid_after)?;
    let valid_before = uint("validBefore", &a.valid_before)?;
    let nonce = parse_bytes32(&a.nonce).ok_or_else(|| Invalid { reason: "invalid_payload", message: "authorization.nonce is not 32 bytes of 0x hex".into() })?;
    let signature = decode_hex_0x(&exact.signature, MAX_SIGNATURE_BYTES)
        .ok_or_else(|| Invalid { reason: "invalid_exact_evm_payload_signature", message: "signature is not 0x-prefixed hex of at most 4096 bytes".into() })?;

    if to != offer.pay_to {
        return invalid("invalid_exact_evm_payload_recipient_mismatch", format!("authorization.to {to} is not payTo {}", offer.pay_to));
    }
    if value != offer.amount {
        return invalid("invalid_exact_evm_payload_authorization_value_mismatch", format!("authorization.value {value} is not the price {}", offer.amount));
    }
    if valid_after > U256::from(now) {
        return invalid("invalid_exact_evm_payload_authorization_valid_after", format!("authorization is not valid before {valid_after} (now {now})"));
    }
    let late = (valid_before < U256::from(now + min_validity)).then(|| Invalid {
        reason: "invalid_exact_evm_payload_authorization_valid_before",
        message: format!("authorization expires at {valid_before}; it must stay valid until at least {} (now + {min_validity} s for the origin and settlement)", now + min_validity),
    });
    let latest = now + offer.requirements.max_timeout_seconds + CLOCK_SKEW_SECONDS;
    if valid_before > U256::from(latest) {
        return invalid(
            "invalid_exact_evm_payload_authorization_valid_before",
            format!("authorization is valid until {valid_before}, beyond maxTimeoutSeconds ({}) + {CLOCK_SKEW_SECONDS} s from now ({latest})", offer.requirements.max_timeout_seconds),
        );
    }
    let message = TransferWithAuthorization { from, to, value, valid_after, valid_before, nonce };
    let digest = message.digest(&offer.domain_separator);
    let signature_checked = match recover_signer(&digest, &signature) {
        Ok(signer) if signer == from => true,
        Ok(signer) => {
            return invalid(
                "invalid_exact_evm_payload_signature",
                format!("signature recovers to {signer}, not authorization.from {from} (wrong key, chain, asset or EIP-712 domain)"),
            )
        }
        Err(SignatureError::NotEoaLength) => false,
        Err(SignatureError::HighS) => return invalid("invalid_exact_evm_payload_signature", "signature has a high s value (EIP-2)"),
        Err(SignatureError::BadV) => return invalid("invalid_exact_evm_payload_signature", "signature v must be 27 or 28"),
        Err(SignatureError::Invalid) => return invalid("invalid_exact_evm_payload_signature", "signature is not a valid secp256k1 signature"),
    };
    Ok(Verified { offer, payer: from, nonce, valid_before: valid_before.saturating_to::<u64>(), signature_checked, late, verify_first: false })
}
