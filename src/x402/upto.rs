//! Local verification of an x402 `upto` EVM payment (Permit2 `permitWitnessTransferFrom` through
//! the x402 upto proxy), everything that can be checked without a chain: the requirement match,
//! spender, token, maximum amount, recipient, facilitator, validity window and, for 65-byte EOA
//! signatures, the EIP-712 signature itself.
//!
//! Predicates and reason codes follow the official facilitator (`@x402/evm` 2.27
//! `upto/facilitator/permit2.ts` `verifyUptoPermit2`; x402 `specs/schemes/upto/scheme_upto_evm.md`):
//! `spender == x402UptoPermit2Proxy` (`invalid_permit2_spender`), `witness.to == payTo`
//! (`invalid_permit2_recipient_mismatch`), `witness.facilitator` == the offer's
//! `extra.facilitatorAddress` (`upto_facilitator_mismatch`; the official check is against the
//! facilitator's own signer addresses, which it announces as that field), `deadline >= now + 6`
//! (`permit2_deadline_expired`), which the gateway widens to the time the request needs,
//! `witness.validAfter <= now` (`permit2_not_yet_valid`), `permitted.amount == amount` (the
//! offer's maximum; `permit2_amount_mismatch`), `permitted.token == asset`
//! (`permit2_token_mismatch`), the signature (`invalid_permit2_signature`). Beyond the official
//! verifier, as for `exact`: `deadline` at most `maxTimeoutSeconds` + 60 s ahead (also
//! `permit2_deadline_expired`, there being no official code for "too far"), and high-s or
//! `v` ∉ {27, 28} signatures are refused. Permit2 allowance, balance, nonce state and
//! smart-wallet signatures need the chain and are left to the facilitator.

use ruint::aliases::U256;

use crate::evm::{decode_hex_0x, parse_uint256, recover_signer, Address, SignatureError};
use crate::refusal::Invalid;
use crate::x402::exact::{CLOCK_SKEW_SECONDS, MAX_SIGNATURE_BYTES, VALID_BEFORE_SLACK_SECONDS};
use crate::x402::offer::Offer;
use crate::x402::permit2::{UptoPermitWitnessTransferFrom, UPTO_PROXY_ADDRESS};
use crate::x402::{PaymentPayload, Selector};

/// An `upto` payment that passed the local checks.
#[derive(Debug, Clone)]
pub struct VerifiedUpto<'a> {
    /// The offered requirement the client chose (`scheme` `upto`).
    pub offer: &'a Offer,
    /// `permit2Authorization.from`, the Permit2 owner: for EOAs, also the recovered signer.
    pub payer: Address,
    /// The Permit2 nonce (a uint256; Permit2 nonces are unordered bitmap positions).
    pub nonce: U256,
    /// [`Self::nonce`] as 32 bytes big-endian: with network, token and payer, the key the
    /// ledger files the payment under.
    pub nonce32: [u8; 32],
    /// `permit2Authorization.deadline`, Unix seconds (bounded by the checks above).
    pub deadline: u64,
    /// `permitted.amount`: the most that may be settled, in atomic units of the offer's asset
    /// (equal to the offer's `amount`).
    pub max_amount: U256,
    /// `witness.facilitator`: the only facilitator the proxy lets settle this permit.
    pub facilitator: Address,
    /// `true` when the signature was recovered here; `false` for non-65-byte (smart-wallet or
    /// EIP-2098 compact) signatures, which the facilitator's `/verify` must check before
    /// anything is served.
    pub signature_checked: bool,
    /// Why a *new* payment with this permit would be refused for time: `deadline` is less than
    /// the request's minimum validity ahead (or past). As in [`crate::x402::exact::Verified::late`],
    /// the gateway may still find it in the ledger as a retry before refusing.
    pub late: Option<Invalid>,
    /// The payment carries a complete EIP-2612 permit (`eip2612GasSponsoring`) that passed the
    /// local checks of [`crate::x402::gas_sponsoring::check`]; its signature and token nonce are
    /// the chain's to check, so the gateway asks `/verify` before the origin.
    pub gas_sponsored: bool,
}

/// `0x` followed by 1 to 64 hex digits, as a uint256: the form of the Permit2 `nonce` in the
/// spec's example payload (the official client sends decimal; its facilitator's `BigInt` takes both).
fn parse_hex_uint256(s: &str) -> Option<U256> {
    let hex = s.strip_prefix("0x")?;
    if hex.is_empty() || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    U256::from_str_radix(hex, 16).ok()
}

fn invalid<T>(reason: &'static str, message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid { reason, message: message.into() })
}

/// Checks the `upto` `payment` against the route's `offers` at Unix time `now` (seconds).
/// `min_validity_seconds` is how long past `now` the permit must stay valid for a new payment
/// (at least [`VALID_BEFORE_SLACK_SECONDS`]); a permit that passes every other check but not
/// this one is returned with [`VerifiedUpto::late`] set.
///
/// The offer is the one whose JSON equals the payment's `accepted` (v2 only: x402 v1 has no
/// `upto`, refused with `unsupported_scheme`). Errors: `invalid_payment_requirements` (no offer
/// matches), `invalid_upto_evm_scheme` (the matched offer is not `upto`),
/// `unsupported_payload_type` (the payload is not a Permit2 authorization), `invalid_payload`
/// (a field is not an address / uint256), then the predicates listed in the module docs.
pub fn verify_upto<'a>(offers: &'a [Offer], payment: &PaymentPayload, now: u64, min_validity_seconds: u64) -> Result<VerifiedUpto<'a>, Invalid> {
    let Selector::Accepted(accepted) = &payment.selector else {
        return invalid("unsupported_scheme", "x402 v1 has no `upto` scheme; pay it with v2 (PAYMENT-SIGNATURE)");
    };
    let Some(offer) = offers.iter().find(|o| o.requirements_json == *accepted) else {
        return invalid("invalid_payment_requirements", "`accepted` is not one of the payment requirements offered for this resource");
    };
    if offer.requirements.scheme != "upto" {
        return invalid("invalid_upto_evm_scheme", format!("the accepted requirement is scheme `{}`, not `upto`", offer.requirements.scheme));
    }
    let Some(p) = payment.upto() else {
        return invalid("unsupported_payload_type", "payload is not a Permit2 `permit2Authorization` with its signature");
    };
    let a = &p.permit2_authorization;
    let address = |name: &str, s: &str| Address::parse(s).ok_or_else(|| Invalid { reason: "invalid_payload", message: format!("permit2Authorization.{name} is not an address") });
    let uint = |name: &str, s: &str| parse_uint256(s).ok_or_else(|| Invalid { reason: "invalid_payload", message: format!("permit2Authorization.{name} is not a uint256 decimal string") });
    let from = address("from", &a.from)?;
    let token = address("permitted.token", &a.permitted.token)?;
    let spender = address("spender", &a.spender)?;
    let to = address("witness.to", &a.witness.to)?;
    let facilitator = address("witness.facilitator", &a.witness.facilitator)?;
    let amount = uint("permitted.amount", &a.permitted.amount)?;
    let nonce = parse_uint256(&a.nonce).or_else(|| parse_hex_uint256(&a.nonce)).ok_or_else(|| Invalid {
        reason: "invalid_payload",
        message: "permit2Authorization.nonce is not a uint256 (decimal, or 0x and at most 64 hex digits)".into(),
    })?;
    let deadline = uint("deadline", &a.deadline)?;
    let valid_after = uint("witness.validAfter", &a.witness.valid_after)?;
    let signature = decode_hex_0x(&p.signature, MAX_SIGNATURE_BYTES)
        .ok_or_else(|| Invalid { reason: "invalid_permit2_signature", message: "signature is not 0x-prefixed hex of at most 4096 bytes".into() })?;

    if spender != UPTO_PROXY_ADDRESS {
        return invalid("invalid_permit2_spender", format!("spender {spender} is not the x402 upto proxy {UPTO_PROXY_ADDRESS}"));
    }
    if to != offer.pay_to {
        return invalid("invalid_permit2_recipient_mismatch", format!("witness.to {to} is not payTo {}", offer.pay_to));
    }
    match offer.requirements.extra.facilitator_address.as_deref().and_then(Address::parse) {
        Some(named) if named == facilitator => {}
        Some(named) => return invalid("upto_facilitator_mismatch", format!("witness.facilitator {facilitator} is not the offer's facilitatorAddress {named}")),
        None => return invalid("upto_facilitator_mismatch", "the offer names no valid extra.facilitatorAddress to check witness.facilitator against"),
    }
    let min_validity = min_validity_seconds.max(VALID_BEFORE_SLACK_SECONDS);
    let late = (deadline < U256::from(now.saturating_add(min_validity))).then(|| Invalid {
        reason: "permit2_deadline_expired",
        message: format!("permit expires at {deadline}; it must stay valid until at least {} (now + {min_validity} s for the origin and settlement)", now.saturating_add(min_validity)),
    });
    if valid_after > U256::from(now) {
        return invalid("permit2_not_yet_valid", format!("permit is not valid before {valid_after} (now {now})"));
    }
    if amount != offer.amount {
        return invalid("permit2_amount_mismatch", format!("permitted.amount {amount} is not the offer's maximum {}", offer.amount));
    }
    if token != offer.asset {
        return invalid("permit2_token_mismatch", format!("permitted.token {token} is not the asset {}", offer.asset));
    }
    let latest = now.saturating_add(offer.requirements.max_timeout_seconds).saturating_add(CLOCK_SKEW_SECONDS);
    if deadline > U256::from(latest) {
        return invalid(
            "permit2_deadline_expired",
            format!("permit is valid until {deadline}, beyond maxTimeoutSeconds ({}) + {CLOCK_SKEW_SECONDS} s from now ({latest})", offer.requirements.max_timeout_seconds),
        );
    }
    // A payer's EIP-2612 permit for Permit2 (the `eip2612GasSponsoring` extension), if it sent one.
    let gas_sponsored = crate::x402::gas_sponsoring::check(&payment.raw, from, token, now)?;
    let message = UptoPermitWitnessTransferFrom { token, amount, spender, nonce, deadline, to, facilitator, valid_after };
    let digest = message.digest(offer.chain_id);
    let signature_checked = match recover_signer(&digest, &signature) {
        Ok(signer) if signer == from => true,
        Ok(signer) => return invalid("invalid_permit2_signature", format!("signature recovers to {signer}, not permit2Authorization.from {from} (wrong key, chain or message)")),
        Err(SignatureError::NotEoaLength) => false,
        Err(SignatureError::HighS) => return invalid("invalid_permit2_signature", "signature has a high s value (EIP-2)"),
        Err(SignatureError::BadV) => return invalid("invalid_permit2_signature", "signature v must be 27 or 28"),
        Err(SignatureError::Invalid) => return invalid("invalid_permit2_signature", "signature is not a valid secp256k1 signature"),
    };
    Ok(VerifiedUpto {
        offer,
        payer: from,
        nonce,
        nonce32: nonce.to_be_bytes::<32>(),
        deadline: deadline.saturating_to::<u64>(),
        max_amount: amount,
        facilitator,
        signature_checked,
        late,
        gas_sponsored,
    })
}
