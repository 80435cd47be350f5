//! The `batch-settlement` wire types: the requirement's `extra`, the client's `deposit` /
//! `voucher` / `refund` payloads and the server's `claim` / `settle` payloads, as the official
//! `@x402/evm` 2.27 client, server and facilitator send them (`batch-settlement/types.ts`), and the
//! bounded decoder of a `PAYMENT-SIGNATURE` carrying one. Re-exported by [`super`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{reason, MAX_CLAIMS, SCHEME};
use crate::refusal::Invalid;
use crate::x402::{decode_header_json, MAX_PAYMENT_HEADER_BYTES};

/// `extra` of a `batch-settlement` requirement, as the official server sets it
/// (`enhancePaymentRequirements` over `parsePrice`): the token's EIP-712 `name`/`version` (a
/// deposit's ERC-3009 authorization signs under them), `receiverAuthorizer` (the server's own
/// key or the one the facilitator announces in `/supported` `kinds[].extra`), `withdrawDelay`
/// (seconds), `minDeposit` (atomic units, decimal; default 10 × `amount`), and optionally
/// `assetTransferMethod` (`"eip3009"` default, or `"permit2"`). On a corrective 402
/// (`cumulative_amount_mismatch`) the server adds `channelState` and `voucherState`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchSettlementExtra {
    pub name: String,
    pub version: String,
    pub receiver_authorizer: String,
    pub withdraw_delay: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_deposit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_transfer_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_state: Option<ChannelStateWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voucher_state: Option<VoucherStateWire>,
}

/// A `batch-settlement` `accepts[]` entry: the v2 requirement fields with [`BatchSettlementExtra`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchSettlementRequirements {
    pub scheme: String,
    pub network: String,
    /// The price of one request, atomic units (the most one voucher may add).
    pub amount: String,
    pub asset: String,
    pub pay_to: String,
    pub max_timeout_seconds: u64,
    pub extra: BatchSettlementExtra,
}

/// The channel snapshot servers and facilitators exchange (`/verify` `extra`, `/settle`
/// `extra.channelState`, a corrective 402's `extra.channelState`): `balance`, `totalClaimed`
/// (atomic, decimal), `withdrawRequestedAt` (Unix seconds, 0 if none), `refundNonce` (decimal),
/// and from servers `chargedCumulativeAmount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelStateWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_claimed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdraw_requested_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charged_cumulative_amount: Option<String>,
}

/// A corrective 402's `extra.voucherState`: the last voucher the server holds, so the client can
/// check it signed `signedMaxClaimable` before adopting the server's `chargedCumulativeAmount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoucherStateWire {
    pub signed_max_claimable: String,
    pub signature: String,
}

/// `channelConfig` as it travels: addresses `0x…`, `withdrawDelay` a JSON number (seconds),
/// `salt` 32-byte hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelConfigWire {
    pub payer: String,
    pub payer_authorizer: String,
    pub receiver: String,
    pub receiver_authorizer: String,
    pub token: String,
    pub withdraw_delay: u64,
    pub salt: String,
}

/// `voucher` of a deposit, voucher or refund payload: `channelId` (32-byte hex),
/// `maxClaimableAmount` (decimal), the EIP-712 `signature` (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoucherWire {
    pub channel_id: String,
    pub max_claimable_amount: String,
    pub signature: String,
}

/// A deposit's ERC-3009 `receiveWithAuthorization` (to [`super::ERC3009_DEPOSIT_COLLECTOR_ADDRESS`],
/// `value` = `deposit.amount`, `nonce` = keccak256(abi.encode(channelId, uint256(salt)))): the
/// fields not derivable from the rest of the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Erc3009DepositAuthorizationWire {
    pub valid_after: String,
    pub valid_before: String,
    pub salt: String,
    pub signature: String,
}

/// `permitted` of a deposit's Permit2 authorization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositTokenPermissionsWire {
    pub token: String,
    pub amount: String,
}

/// `witness` of a deposit's Permit2 authorization: `DepositWitness(bytes32 channelId)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepositWitnessWire {
    pub channel_id: String,
}

/// A deposit's Permit2 `permitWitnessTransferFrom` (spender [`super::PERMIT2_DEPOSIT_COLLECTOR_ADDRESS`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permit2DepositAuthorizationWire {
    pub from: String,
    pub permitted: DepositTokenPermissionsWire,
    pub spender: String,
    pub nonce: String,
    pub deadline: String,
    pub witness: DepositWitnessWire,
    pub signature: String,
}

/// `deposit.authorization`: exactly one of the two is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepositAuthorizationWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erc3009_authorization: Option<Erc3009DepositAuthorizationWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permit2_authorization: Option<Permit2DepositAuthorizationWire>,
}

/// `deposit` of a deposit payload: `amount` (atomic, decimal) and its token authorization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositWire {
    pub amount: String,
    pub authorization: DepositAuthorizationWire,
}

/// `voucher` inside a claim row: the channel's full config and the voucher's ceiling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimVoucherWire {
    pub channel: ChannelConfigWire,
    pub max_claimable_amount: String,
}

/// One claim row of a `claim` (or enriched `refund`) payload: the payer's voucher and signature,
/// and `totalClaimed`, the cumulative amount to claim up to (the server's `chargedCumulativeAmount`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimWire {
    pub voucher: ClaimVoucherWire,
    pub signature: String,
    pub total_claimed: String,
}

/// `payload` of a `batch-settlement` payment or settlement, by its `type`:
/// - client-sent (`PAYMENT-SIGNATURE`): `deposit` (no channel or a top-up: the token
///   authorization with the first voucher), `voucher` (an open channel), `refund` (a zero-charge
///   voucher asking a cooperative refund, `amount` absent = all);
/// - server-sent to the facilitator's `/settle`: `claim` (rows and, when the server holds the
///   receiver-authorizer key, `claimAuthorizerSignature`) and `settle` (sweep `receiver`'s claimed
///   `token` funds). An enriched `refund` adds `refundNonce`, `claims` and the authorizer
///   signatures; those fields are kept when present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum BatchSettlementPayload {
    #[serde(rename_all = "camelCase")]
    Deposit { channel_config: ChannelConfigWire, voucher: VoucherWire, deposit: DepositWire },
    #[serde(rename_all = "camelCase")]
    Voucher { channel_config: ChannelConfigWire, voucher: VoucherWire },
    #[serde(rename_all = "camelCase")]
    Refund {
        channel_config: ChannelConfigWire,
        voucher: VoucherWire,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        amount: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refund_nonce: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        claims: Option<Vec<ClaimWire>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refund_authorizer_signature: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        claim_authorizer_signature: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    Claim {
        claims: Vec<ClaimWire>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        claim_authorizer_signature: Option<String>,
    },
    Settle { receiver: String, token: String },
}

impl BatchSettlementPayload {
    /// The wire `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            BatchSettlementPayload::Deposit { .. } => "deposit",
            BatchSettlementPayload::Voucher { .. } => "voucher",
            BatchSettlementPayload::Refund { .. } => "refund",
            BatchSettlementPayload::Claim { .. } => "claim",
            BatchSettlementPayload::Settle { .. } => "settle",
        }
    }
}

/// A decoded `batch-settlement` `PAYMENT-SIGNATURE`: `x402Version` 2, the `accepted` requirement
/// as sent (matched by JSON deep equality against the offers) and the parsed `payload`.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSettlementPayment {
    /// The whole payload as sent, to forward to the facilitator's `/verify` and `/settle`.
    pub raw: Value,
    pub accepted: Value,
    pub payload: BatchSettlementPayload,
}

fn invalid<T>(reason: &'static str, message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid { reason, message: message.into() })
}

/// Decodes a `PAYMENT-SIGNATURE` header value carrying a `batch-settlement` payment: at most
/// [`MAX_PAYMENT_HEADER_BYTES`], base64 JSON, `x402Version` 2, `accepted.scheme`
/// `batch-settlement`, `payload` one of the [`BatchSettlementPayload`] shapes (a `claim` row list
/// of at most [`MAX_CLAIMS`]). Errors: `invalid_payload` (size, base64, JSON, shape),
/// `invalid_x402_version`, [`reason::SCHEME`].
pub fn decode_batch_payment(header: &str) -> Result<BatchSettlementPayment, Invalid> {
    if header.len() > MAX_PAYMENT_HEADER_BYTES {
        return invalid("invalid_payload", format!("payment header is {} bytes; the limit is {MAX_PAYMENT_HEADER_BYTES}", header.len()));
    }
    let Some(raw) = decode_header_json(header) else {
        return invalid("invalid_payload", "payment header is not base64 JSON");
    };
    batch_payment_from_json(raw)
}

/// As [`decode_batch_payment`], from the already-decoded JSON of a payment payload.
pub fn batch_payment_from_json(raw: Value) -> Result<BatchSettlementPayment, Invalid> {
    let Some(obj) = raw.as_object() else {
        return invalid("invalid_payload", "payment payload is not a JSON object");
    };
    if obj.get("x402Version").and_then(Value::as_u64) != Some(2) {
        return invalid("invalid_x402_version", "batch-settlement payments are x402 v2");
    }
    let Some(accepted) = obj.get("accepted").filter(|v| v.is_object()).cloned() else {
        return invalid("invalid_payload", "payment payload has no `accepted` requirement");
    };
    if accepted.get("scheme").and_then(Value::as_str) != Some(SCHEME) {
        return invalid(reason::SCHEME, "the accepted requirement is not `batch-settlement`");
    }
    let Some(payload) = obj.get("payload") else {
        return invalid("invalid_payload", "payment payload has no `payload`");
    };
    let payload: BatchSettlementPayload = match serde_json::from_value(payload.clone()) {
        Ok(p) => p,
        Err(e) => return invalid("invalid_payload", format!("`payload` is not a batch-settlement deposit, voucher or refund: {e}")),
    };
    if let BatchSettlementPayload::Claim { claims, .. } = &payload {
        if claims.len() > MAX_CLAIMS {
            return invalid("invalid_payload", format!("{} claim rows; the limit is {MAX_CLAIMS}", claims.len()));
        }
    }
    Ok(BatchSettlementPayment { raw, accepted, payload })
}
