//! The x402 `batch-settlement` scheme on EVM (payment channels): its wire types, the EIP-712
//! hashing of its channel id, voucher, refund and claim batch, and [`verify_voucher`], the local
//! check of a voucher against the channel state the caller holds.
//!
//! Sources: x402 `specs/schemes/batch-settlement/scheme_batch_settlement_evm.md` and the official
//! `@x402/evm` 2.27 `batch-settlement` client, server and facilitator (`constants.ts`,
//! `errors.ts`, `utils.ts` `computeChannelId`, `facilitator/utils.ts` `validateChannelConfig` and
//! `verifyBatchSettlementVoucherTypedData`, `facilitator/voucher.ts` `verifyVoucher`,
//! `server/verify.ts` `handleBeforeVerify` and `verifyVoucherLocally`).
//!
//! The model: the client deposits once into the `x402BatchSettlement` escrow (a channel, whose id
//! is the EIP-712 hash of its immutable [`ChannelConfig`]), then signs per request a cumulative
//! [`Voucher`] `maxClaimableAmount` = the server's `chargedCumulativeAmount` + the request's
//! `amount`. The server checks it locally and serves; it later claims the latest voucher of each
//! channel (`claimWithSignature`, a [`ClaimBatch`] signed by the `receiverAuthorizer`) and sweeps
//! the claimed funds to `payTo` (`settle(receiver, token)`), both through the facilitator's
//! `/settle` (payload `type` `claim` / `settle`).
//!
//! Amounts are atomic units of the channel's token (`uint128` on chain, decimal strings on the
//! wire); times are Unix seconds. Nothing here touches HTTP, I/O or per-request state.

use ruint::aliases::U256;
use crate::evm::{decode_hex_0x, hex_const, keccak256, parse_bytes32, parse_uint256, recover_signer, Address, Eip712Domain};
use crate::refusal::Invalid;
use crate::x402::exact::MAX_SIGNATURE_BYTES;

mod wire;
pub use wire::*;

/// The scheme name in `accepts[].scheme`.
pub const SCHEME: &str = "batch-settlement";

/// The canonical `x402BatchSettlement` escrow (CREATE2, same address on every chain): the
/// `verifyingContract` of the scheme's EIP-712 domain.
pub const BATCH_SETTLEMENT_ADDRESS: Address = Address(hex_const::<20>("4020074e9df2ce1dee5a9c1b5c3f541d02a10003"));
/// The canonical `ERC3009DepositCollector`: the `to` of a deposit's `receiveWithAuthorization`.
pub const ERC3009_DEPOSIT_COLLECTOR_ADDRESS: Address = Address(hex_const::<20>("4020806089470a89826cb9fb1f4059150b550004"));
/// The canonical `Permit2DepositCollector`: the `spender` of a deposit's Permit2 authorization.
pub const PERMIT2_DEPOSIT_COLLECTOR_ADDRESS: Address = Address(hex_const::<20>("4020425faf3b746c082c2f942b4e5159887b0005"));

/// The scheme's EIP-712 domain `name` (with `version` [`DOMAIN_VERSION`], the chain id and
/// [`BATCH_SETTLEMENT_ADDRESS`]).
pub const DOMAIN_NAME: &str = "x402 Batch Settlement";
/// The scheme's EIP-712 domain `version`.
pub const DOMAIN_VERSION: &str = "1";

/// Shortest `withdrawDelay` the escrow accepts: 15 minutes, in seconds (also the official
/// server's default).
pub const MIN_WITHDRAW_DELAY: u64 = 900;
/// Longest `withdrawDelay` the escrow accepts: 30 days, in seconds.
pub const MAX_WITHDRAW_DELAY: u64 = 2_592_000;

/// `encodeType` of the channel configuration; its EIP-712 hash is the channel id.
pub const CHANNEL_CONFIG_TYPE: &str = "ChannelConfig(address payer,address payerAuthorizer,address receiver,address receiverAuthorizer,address token,uint40 withdrawDelay,bytes32 salt)";
/// `encodeType` of the payer's cumulative voucher.
pub const VOUCHER_TYPE: &str = "Voucher(bytes32 channelId,uint128 maxClaimableAmount)";
/// keccak256 of [`CHANNEL_CONFIG_TYPE`] and [`VOUCHER_TYPE`]: constants, so the request path (a
/// channel id and a voucher digest per request) hashes only what varies (checked in the tests).
const CHANNEL_CONFIG_TYPEHASH: [u8; 32] = hex_const::<32>("1c9a06ceab9b0ebbd3301dc56c9111bb6d9af421356dc9ccb3b7084c755db308");
const VOUCHER_TYPEHASH: [u8; 32] = hex_const::<32>("1e1bd6ff84c3e0d9029a292b212e039c0ca97ec497c55191a4a5874294609a69");
/// `encodeType` of a cooperative refund the receiver authorizer signs.
pub const REFUND_TYPE: &str = "Refund(bytes32 channelId,uint256 nonce,uint128 amount)";
/// `encodeType` of a claim batch the receiver authorizer signs (`claimWithSignature`).
pub const CLAIM_BATCH_TYPE: &str = "ClaimBatch(ClaimEntry[] claims)ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)";
/// `encodeType` of one row of a claim batch.
pub const CLAIM_ENTRY_TYPE: &str = "ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)";

/// Most rows a claim batch may hold here (the official channel manager sends 100 by default).
pub const MAX_CLAIMS: usize = 1000;

/// The reason codes of the official `batch-settlement` server and facilitator (`errors.ts`), and
/// the one this crate adds ([`reason::WITHDRAWAL_CLOSES_CLAIM_WINDOW`]).
pub mod reason {
    /// The channel config does not hash to `voucher.channelId`, or the caller's channel record is
    /// for another channel.
    pub const CHANNEL_ID_MISMATCH: &str = "invalid_batch_settlement_evm_channel_id_mismatch";
    /// `voucher.channelId` is not `0x` and 64 hex digits.
    pub const CHANNEL_ID_INVALID: &str = "invalid_batch_settlement_evm_channel_id_invalid";
    /// `channelConfig.receiver` is not the requirement's `payTo`.
    pub const RECEIVER_MISMATCH: &str = "invalid_batch_settlement_evm_receiver_mismatch";
    /// `channelConfig.receiverAuthorizer` is not `extra.receiverAuthorizer` (or that is zero).
    pub const RECEIVER_AUTHORIZER_MISMATCH: &str = "invalid_batch_settlement_evm_receiver_authorizer_mismatch";
    /// `channelConfig.token` is not the requirement's `asset`.
    pub const TOKEN_MISMATCH: &str = "invalid_batch_settlement_evm_token_mismatch";
    /// `channelConfig.withdrawDelay` is not `extra.withdrawDelay`.
    pub const WITHDRAW_DELAY_MISMATCH: &str = "invalid_batch_settlement_evm_withdraw_delay_mismatch";
    /// `withdrawDelay` is outside 900 s – 30 days.
    pub const WITHDRAW_DELAY_OUT_OF_RANGE: &str = "invalid_batch_settlement_evm_withdraw_delay_out_of_range";
    /// The voucher does not recover to `payerAuthorizer`.
    pub const VOUCHER_SIGNATURE: &str = "invalid_batch_settlement_evm_voucher_signature";
    /// The channel has no balance (and the payload brings no deposit).
    pub const CHANNEL_NOT_FOUND: &str = "invalid_batch_settlement_evm_channel_not_found";
    /// `maxClaimableAmount` exceeds the channel's balance (plus the deposit it brings).
    pub const CUMULATIVE_EXCEEDS_BALANCE: &str = "invalid_batch_settlement_evm_cumulative_exceeds_balance";
    /// `maxClaimableAmount` is not above `totalClaimed` (a refund's may equal it).
    pub const CUMULATIVE_BELOW_CLAIMED: &str = "invalid_batch_settlement_evm_cumulative_below_claimed";
    /// `maxClaimableAmount` is not `chargedCumulativeAmount + amount` (a refund's: not
    /// `chargedCumulativeAmount`): answered with a corrective 402 carrying the channel state.
    pub const CUMULATIVE_AMOUNT_MISMATCH: &str = "invalid_batch_settlement_evm_cumulative_amount_mismatch";
    /// The payload's `type` is none of `deposit`, `voucher`, `refund` where one is expected.
    pub const PAYLOAD_TYPE: &str = "invalid_batch_settlement_evm_payload_type";
    /// The accepted requirement is not `batch-settlement`.
    pub const SCHEME: &str = "invalid_batch_settlement_evm_scheme";
    /// A voucher or refund payload field is malformed (spec error table).
    pub const VOUCHER_PAYLOAD: &str = "invalid_batch_settlement_evm_voucher_payload";
    /// A deposit payload field is malformed (spec error table).
    pub const DEPOSIT_PAYLOAD: &str = "invalid_batch_settlement_evm_deposit_payload";
    /// A deposit without the `erc3009Authorization` its transfer method needs.
    pub const ERC3009_AUTHORIZATION_REQUIRED: &str = "invalid_batch_settlement_evm_erc3009_authorization_required";
    /// A deposit without the `permit2Authorization` its transfer method needs.
    pub const PERMIT2_AUTHORIZATION_REQUIRED: &str = "invalid_batch_settlement_evm_permit2_authorization_required";
    /// A deposit below the announced `extra.minDeposit` (official server, `enforceMinDeposit`).
    pub const DEPOSIT_BELOW_MIN_DEPOSIT: &str = "invalid_batch_settlement_evm_deposit_below_min_deposit";
    /// A refund asked while nothing is refundable (`balance <= chargedCumulativeAmount`).
    pub const REFUND_NO_BALANCE: &str = "invalid_batch_settlement_evm_refund_no_balance";
    /// A refund `amount` that is not a positive integer.
    pub const REFUND_AMOUNT_INVALID: &str = "invalid_batch_settlement_evm_refund_amount_invalid";
    /// The requirement's `extra` lacks the token's EIP-712 `name`/`version`.
    pub const MISSING_EIP712_DOMAIN: &str = "invalid_batch_settlement_evm_missing_eip712_domain";
    /// Ours, no official code: the payer started a timed withdrawal that completes before the
    /// caller's claim window ends, so a voucher accepted now might never be claimable.
    pub const WITHDRAWAL_CLOSES_CLAIM_WINDOW: &str = "invalid_batch_settlement_evm_withdrawal_pending";
}


fn u128_word(v: u128) -> [u8; 32] {
    U256::from(v).to_be_bytes::<32>()
}

fn eip712_digest(domain_separator: &[u8; 32], struct_hash: &[u8; 32]) -> [u8; 32] {
    let mut buf = [0u8; 66];
    buf[0] = 0x19;
    buf[1] = 0x01;
    buf[2..34].copy_from_slice(domain_separator);
    buf[34..66].copy_from_slice(struct_hash);
    keccak256(&buf)
}

/// The scheme's EIP-712 domain separator on `chain_id`: name [`DOMAIN_NAME`], version
/// [`DOMAIN_VERSION`], `verifyingContract` [`BATCH_SETTLEMENT_ADDRESS`] (`getBatchSettlementEip712Domain`).
/// The last one computed is kept (an isolate serves one chain, or a few).
pub fn domain_separator(chain_id: u64) -> [u8; 32] {
    thread_local! {
        static LAST: std::cell::Cell<Option<(u64, [u8; 32])>> = const { std::cell::Cell::new(None) };
    }
    LAST.with(|last| match last.get() {
        Some((id, separator)) if id == chain_id => separator,
        _ => {
            let separator = Eip712Domain { name: DOMAIN_NAME.into(), version: DOMAIN_VERSION.into(), chain_id, verifying_contract: BATCH_SETTLEMENT_ADDRESS }.separator();
            last.set(Some((chain_id, separator)));
            separator
        }
    })
}

/// A channel's immutable configuration (`ChannelConfig` in the escrow). `payer_authorizer` is the
/// EOA whose signature vouchers carry (zero: the payer itself, verified with EIP-1271 on chain);
/// `receiver` is `payTo`; `receiver_authorizer` signs claims and refunds; `withdraw_delay` is
/// seconds (`uint40`); `salt` tells apart channels with otherwise equal parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelConfig {
    pub payer: Address,
    pub payer_authorizer: Address,
    pub receiver: Address,
    pub receiver_authorizer: Address,
    pub token: Address,
    pub withdraw_delay: u64,
    pub salt: [u8; 32],
}

impl ChannelConfig {
    /// `hashStruct(ChannelConfig)`.
    pub fn struct_hash(&self) -> [u8; 32] {
        let mut buf = [0u8; 256];
        buf[0..32].copy_from_slice(&CHANNEL_CONFIG_TYPEHASH);
        buf[32..64].copy_from_slice(&self.payer.abi_word());
        buf[64..96].copy_from_slice(&self.payer_authorizer.abi_word());
        buf[96..128].copy_from_slice(&self.receiver.abi_word());
        buf[128..160].copy_from_slice(&self.receiver_authorizer.abi_word());
        buf[160..192].copy_from_slice(&self.token.abi_word());
        buf[192..224].copy_from_slice(&U256::from(self.withdraw_delay).to_be_bytes::<32>());
        buf[224..256].copy_from_slice(&self.salt);
        keccak256(&buf)
    }

    /// The channel id on `chain_id`: the EIP-712 digest of this config under the scheme's domain
    /// (`computeChannelId`), so it binds the chain and the escrow deployment.
    pub fn channel_id(&self, chain_id: u64) -> [u8; 32] {
        eip712_digest(&domain_separator(chain_id), &self.struct_hash())
    }
}

/// The payer's voucher: the most the receiver may have claimed in total from `channel_id`
/// (`maxClaimableAmount`, cumulative, atomic units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Voucher {
    pub channel_id: [u8; 32],
    pub max_claimable_amount: u128,
}

impl Voucher {
    /// `hashStruct(Voucher)`.
    pub fn struct_hash(&self) -> [u8; 32] {
        let mut buf = [0u8; 96];
        buf[0..32].copy_from_slice(&VOUCHER_TYPEHASH);
        buf[32..64].copy_from_slice(&self.channel_id);
        buf[64..96].copy_from_slice(&u128_word(self.max_claimable_amount));
        keccak256(&buf)
    }

    /// The EIP-712 digest the payer authorizer signs on `chain_id`.
    pub fn digest(&self, chain_id: u64) -> [u8; 32] {
        eip712_digest(&domain_separator(chain_id), &self.struct_hash())
    }
}

/// A cooperative refund of `amount` (atomic units) from `channel_id` at the channel's refund
/// `nonce`, as the receiver authorizer signs it for `refundWithSignature`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refund {
    pub channel_id: [u8; 32],
    pub nonce: U256,
    pub amount: u128,
}

impl Refund {
    /// `hashStruct(Refund)`.
    pub fn struct_hash(&self) -> [u8; 32] {
        let mut buf = [0u8; 128];
        buf[0..32].copy_from_slice(&keccak256(REFUND_TYPE.as_bytes()));
        buf[32..64].copy_from_slice(&self.channel_id);
        buf[64..96].copy_from_slice(&self.nonce.to_be_bytes::<32>());
        buf[96..128].copy_from_slice(&u128_word(self.amount));
        keccak256(&buf)
    }

    /// The EIP-712 digest on `chain_id`.
    pub fn digest(&self, chain_id: u64) -> [u8; 32] {
        eip712_digest(&domain_separator(chain_id), &self.struct_hash())
    }
}

/// One row of a claim batch: claim `channel_id` up to `total_claimed` under the payer's voucher
/// for `max_claimable_amount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimEntry {
    pub channel_id: [u8; 32],
    pub max_claimable_amount: u128,
    pub total_claimed: u128,
}

/// A claim batch as the receiver authorizer signs it for `claimWithSignature` (`signClaimBatch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimBatch {
    pub claims: Vec<ClaimEntry>,
}

impl ClaimBatch {
    /// `hashStruct(ClaimBatch)`: the array member is `keccak256` of its rows' struct hashes.
    pub fn struct_hash(&self) -> [u8; 32] {
        let entry_type = keccak256(CLAIM_ENTRY_TYPE.as_bytes());
        let mut rows = Vec::with_capacity(self.claims.len() * 32);
        for c in &self.claims {
            let mut buf = [0u8; 128];
            buf[0..32].copy_from_slice(&entry_type);
            buf[32..64].copy_from_slice(&c.channel_id);
            buf[64..96].copy_from_slice(&u128_word(c.max_claimable_amount));
            buf[96..128].copy_from_slice(&u128_word(c.total_claimed));
            rows.extend_from_slice(&keccak256(&buf));
        }
        let mut buf = [0u8; 64];
        buf[0..32].copy_from_slice(&keccak256(CLAIM_BATCH_TYPE.as_bytes()));
        buf[32..64].copy_from_slice(&keccak256(&rows));
        keccak256(&buf)
    }

    /// The EIP-712 digest on `chain_id`.
    pub fn digest(&self, chain_id: u64) -> [u8; 32] {
        eip712_digest(&domain_separator(chain_id), &self.struct_hash())
    }
}

fn invalid<T>(reason: &'static str, message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid { reason, message: message.into() })
}

// ---------------------------------------------------------------------------------------------
// Parsing and verification
// ---------------------------------------------------------------------------------------------

/// A decimal `uint128` (atomic units).
pub fn parse_u128(s: &str) -> Option<u128> {
    parse_uint256(s).and_then(|v| u128::try_from(v).ok())
}

impl ChannelConfigWire {
    /// The typed config. Errors: [`reason::VOUCHER_PAYLOAD`] when a field is not an address,
    /// `withdrawDelay` does not fit `uint40`, or `salt` is not 32-byte hex.
    pub fn parse(&self) -> Result<ChannelConfig, Invalid> {
        let address = |name: &str, s: &str| Address::parse(s).ok_or_else(|| Invalid::new(reason::VOUCHER_PAYLOAD, format!("channelConfig.{name} is not an address")));
        if self.withdraw_delay >= 1 << 40 {
            return invalid(reason::VOUCHER_PAYLOAD, "channelConfig.withdrawDelay does not fit a uint40");
        }
        Ok(ChannelConfig {
            payer: address("payer", &self.payer)?,
            payer_authorizer: address("payerAuthorizer", &self.payer_authorizer)?,
            receiver: address("receiver", &self.receiver)?,
            receiver_authorizer: address("receiverAuthorizer", &self.receiver_authorizer)?,
            token: address("token", &self.token)?,
            withdraw_delay: self.withdraw_delay,
            salt: parse_bytes32(&self.salt).ok_or_else(|| Invalid::new(reason::VOUCHER_PAYLOAD, "channelConfig.salt is not 32-byte hex"))?,
        })
    }
}

/// What a route's `batch-settlement` offer fixes for every channel paying it, in typed form:
/// the chain, `payTo` (the channel's `receiver`), `extra.receiverAuthorizer`, `asset` (the
/// channel's `token`), `extra.withdrawDelay` (seconds) and the per-request `amount` (atomic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelTerms {
    pub chain_id: u64,
    pub receiver: Address,
    pub receiver_authorizer: Address,
    pub token: Address,
    pub withdraw_delay: u64,
    pub price: u128,
}

impl ChannelTerms {
    /// The terms of a requirement. Errors: `invalid_payment_requirements` when `network` is not
    /// `eip155:<id>`, an address or `amount` is malformed, or `receiverAuthorizer` is zero (the
    /// official server refuses to offer one).
    pub fn from_requirements(r: &BatchSettlementRequirements) -> Result<ChannelTerms, Invalid> {
        let bad = |m: &str| Invalid::new("invalid_payment_requirements", m.to_string());
        let chain_id = crate::evm::caip2_chain_id(&r.network).ok_or_else(|| bad("network is not eip155:<chain id>"))?;
        let receiver_authorizer = Address::parse(&r.extra.receiver_authorizer).ok_or_else(|| bad("extra.receiverAuthorizer is not an address"))?;
        if receiver_authorizer == Address([0; 20]) {
            return Err(bad("extra.receiverAuthorizer is the zero address"));
        }
        Ok(ChannelTerms {
            chain_id,
            receiver: Address::parse(&r.pay_to).ok_or_else(|| bad("payTo is not an address"))?,
            receiver_authorizer,
            token: Address::parse(&r.asset).ok_or_else(|| bad("asset is not an address"))?,
            withdraw_delay: r.extra.withdraw_delay,
            price: parse_u128(&r.amount).ok_or_else(|| bad("amount is not a uint128"))?,
        })
    }
}

/// The channel as the caller (the payer's ledger) knows it when a payload arrives, mirrored from
/// the escrow and its own accounting (the spec's per-channel server state). Amounts are atomic
/// units; times Unix seconds. For a channel the caller has never seen, use
/// [`ChannelState::unopened`] (a deposit then brings the balance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelState {
    /// The channel id the record is filed under.
    pub channel_id: [u8; 32],
    /// `balance`: deposited minus withdrawn and refunded (on chain).
    pub balance: u128,
    /// `totalClaimed`: claimed on chain so far.
    pub total_claimed: u128,
    /// `chargedCumulativeAmount`: the sum of what the server has charged on this channel, i.e.
    /// the last accepted voucher's base for the next one.
    pub charged_cumulative: u128,
    /// `withdrawRequestedAt`: when the payer started a timed withdrawal, 0 if none.
    pub withdraw_requested_at: u64,
}

impl ChannelState {
    /// A channel with nothing deposited, claimed or charged.
    pub fn unopened(channel_id: [u8; 32]) -> ChannelState {
        ChannelState { channel_id, balance: 0, total_claimed: 0, charged_cumulative: 0, withdraw_requested_at: 0 }
    }
}

/// A payload whose voucher passed [`verify_voucher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedVoucher {
    /// `deposit`, `voucher` or `refund`.
    pub kind: &'static str,
    pub channel_id: [u8; 32],
    pub config: ChannelConfig,
    /// The voucher's `maxClaimableAmount`: the new cumulative ceiling.
    pub max_claimable_amount: u128,
    /// What this request adds to `chargedCumulativeAmount`: the offer's price (0 for a refund).
    pub charge: u128,
    /// The voucher signature bytes, to keep for the claim.
    pub signature: Vec<u8>,
    /// `true` when the signature was recovered here (an EOA `payerAuthorizer`); `false` when
    /// `payerAuthorizer` is zero (EIP-1271 smart wallet via `payer`): the facilitator's `/verify`
    /// must check it before anything is served.
    pub signature_checked: bool,
    /// A deposit's `deposit.amount` (atomic); its token authorization is not checked here: a
    /// deposit always goes through the facilitator's `/verify` and `/settle`.
    pub deposit_amount: Option<u128>,
    /// A refund's requested `amount` (`None`: all that is refundable).
    pub refund_amount: Option<u128>,
}

/// Checks the voucher of a `deposit`, `voucher` or `refund` payload against the offer's `terms`
/// and the caller's `state` of the channel, at Unix time `now`, needing no chain and no
/// facilitator (the official server's local verification, with the facilitator's
/// `validateChannelConfig` and balance rules). `claim_window` (seconds) is how long the caller
/// needs after `now` to claim what it accepts: a channel whose timed withdrawal completes sooner
/// is refused.
///
/// In this order ([`check_voucher`]: 1, 2, 4, then [`check_against_state`]: 3, 5, 6, 7; each
/// refusal's [`Invalid::reason`] is the official code, [`reason`]):
/// 1. `type` is `deposit`, `voucher` or `refund` ([`reason::PAYLOAD_TYPE`]); the fields parse
///    ([`reason::VOUCHER_PAYLOAD`], [`reason::CHANNEL_ID_INVALID`], [`reason::DEPOSIT_PAYLOAD`],
///    [`reason::ERC3009_AUTHORIZATION_REQUIRED`] when `deposit.authorization` holds neither form).
/// 2. The config hashes to `voucher.channelId` on `terms.chain_id`, and that is `state.channel_id`
///    ([`reason::CHANNEL_ID_MISMATCH`]); `receiver` = `payTo` ([`reason::RECEIVER_MISMATCH`]);
///    `receiverAuthorizer` ([`reason::RECEIVER_AUTHORIZER_MISMATCH`]); `token` = `asset`
///    ([`reason::TOKEN_MISMATCH`]); `withdrawDelay` ([`reason::WITHDRAW_DELAY_MISMATCH`], then
///    [`reason::WITHDRAW_DELAY_OUT_OF_RANGE`]).
/// 3. `maxClaimableAmount` = `state.charged_cumulative + terms.price` (a refund's: =
///    `charged_cumulative`) ([`reason::CUMULATIVE_AMOUNT_MISMATCH`]: the corrective 402). This is
///    what makes the cumulative amount strictly increase by exactly the price, and a replayed or
///    stale voucher fail.
/// 4. The signature recovers to `payerAuthorizer` (65-byte, low-s, v ∈ {27, 28})
///    ([`reason::VOUCHER_SIGNATURE`]); skipped when `payerAuthorizer` is zero (see
///    [`VerifiedVoucher::signature_checked`]).
/// 5. Balance: nothing deposited and no deposit brought ([`reason::CHANNEL_NOT_FOUND`]);
///    `maxClaimableAmount` ≤ `balance` (+ `deposit.amount`) ([`reason::CUMULATIVE_EXCEEDS_BALANCE`]);
///    `maxClaimableAmount` > `totalClaimed` (a refund's ≥; a deposit's ≥)
///    ([`reason::CUMULATIVE_BELOW_CLAIMED`]).
/// 6. No timed withdrawal completing before `now + claim_window`
///    ([`reason::WITHDRAWAL_CLOSES_CLAIM_WINDOW`], ours).
/// 7. A refund: something is refundable ([`reason::REFUND_NO_BALANCE`]) and its `amount`, if
///    present, is a positive integer ([`reason::REFUND_AMOUNT_INVALID`]).
pub fn verify_voucher(terms: &ChannelTerms, payload: &BatchSettlementPayload, state: &ChannelState, now: u64, claim_window: u64) -> Result<VerifiedVoucher, Invalid> {
    let v = check_voucher(terms, payload)?;
    check_against_state(terms, &v, state, now, claim_window)?;
    Ok(v)
}

/// Steps 1, 2 and 4 of [`verify_voucher`]: what needs no channel state (the payload's shape, the
/// channel configuration against the offer, the signature). What the worker checks before it
/// asks the channel's shard, which holds the state ([`check_against_state`]'s rules).
pub fn check_voucher(terms: &ChannelTerms, payload: &BatchSettlementPayload) -> Result<VerifiedVoucher, Invalid> {
    let (kind, config_wire, voucher_wire, deposit, refund_amount) = match payload {
        BatchSettlementPayload::Deposit { channel_config, voucher, deposit } => ("deposit", channel_config, voucher, Some(deposit), None),
        BatchSettlementPayload::Voucher { channel_config, voucher } => ("voucher", channel_config, voucher, None, None),
        BatchSettlementPayload::Refund { channel_config, voucher, amount, .. } => ("refund", channel_config, voucher, None, Some(amount)),
        other => return invalid(reason::PAYLOAD_TYPE, format!("a `{}` payload carries no payer voucher", other.kind())),
    };
    let config = config_wire.parse()?;
    let Some(claimed_id) = parse_bytes32(&voucher_wire.channel_id) else {
        return invalid(reason::CHANNEL_ID_INVALID, "voucher.channelId is not 0x and 64 hex digits");
    };
    let Some(max) = parse_u128(&voucher_wire.max_claimable_amount) else {
        return invalid(reason::VOUCHER_PAYLOAD, "voucher.maxClaimableAmount is not a uint128 decimal string");
    };
    let Some(signature) = decode_hex_0x(&voucher_wire.signature, MAX_SIGNATURE_BYTES) else {
        return invalid(reason::VOUCHER_SIGNATURE, "voucher.signature is not 0x-prefixed hex of at most 4096 bytes");
    };
    let deposit_amount = match deposit {
        None => None,
        Some(d) => {
            let Some(amount) = parse_u128(&d.amount).filter(|a| *a > 0) else {
                return invalid(reason::DEPOSIT_PAYLOAD, "deposit.amount is not a positive uint128 decimal string");
            };
            match (&d.authorization.erc3009_authorization, &d.authorization.permit2_authorization) {
                (Some(_), None) | (None, Some(_)) => {}
                (None, None) => return invalid(reason::ERC3009_AUTHORIZATION_REQUIRED, "deposit.authorization holds neither erc3009Authorization nor permit2Authorization"),
                (Some(_), Some(_)) => return invalid(reason::DEPOSIT_PAYLOAD, "deposit.authorization holds both erc3009Authorization and permit2Authorization"),
            }
            Some(amount)
        }
    };
    let refund_amount = match refund_amount {
        Some(Some(a)) => match parse_u128(a).filter(|a| *a > 0) {
            Some(a) => Some(a),
            None => return invalid(reason::REFUND_AMOUNT_INVALID, "refund amount is not a positive integer"),
        },
        _ => None,
    };

    let channel_id = config.channel_id(terms.chain_id);
    if channel_id != claimed_id {
        return invalid(reason::CHANNEL_ID_MISMATCH, "channelConfig does not hash to voucher.channelId on this chain");
    }
    if config.receiver != terms.receiver {
        return invalid(reason::RECEIVER_MISMATCH, format!("channel receiver {} is not payTo {}", config.receiver, terms.receiver));
    }
    if config.receiver_authorizer != terms.receiver_authorizer || terms.receiver_authorizer == Address([0; 20]) {
        return invalid(reason::RECEIVER_AUTHORIZER_MISMATCH, format!("channel receiverAuthorizer {} is not {}", config.receiver_authorizer, terms.receiver_authorizer));
    }
    if config.token != terms.token {
        return invalid(reason::TOKEN_MISMATCH, format!("channel token {} is not the asset {}", config.token, terms.token));
    }
    if config.withdraw_delay != terms.withdraw_delay {
        return invalid(reason::WITHDRAW_DELAY_MISMATCH, format!("channel withdrawDelay {} is not {}", config.withdraw_delay, terms.withdraw_delay));
    }
    if !(MIN_WITHDRAW_DELAY..=MAX_WITHDRAW_DELAY).contains(&config.withdraw_delay) {
        return invalid(reason::WITHDRAW_DELAY_OUT_OF_RANGE, format!("withdrawDelay {} is outside {MIN_WITHDRAW_DELAY}..={MAX_WITHDRAW_DELAY} s", config.withdraw_delay));
    }

    let signature_checked = config.payer_authorizer != Address([0; 20]);
    if signature_checked {
        let digest = Voucher { channel_id, max_claimable_amount: max }.digest(terms.chain_id);
        match recover_signer(&digest, &signature) {
            Ok(signer) if signer == config.payer_authorizer => {}
            Ok(signer) => return invalid(reason::VOUCHER_SIGNATURE, format!("voucher signed by {signer}, not the payerAuthorizer {}", config.payer_authorizer)),
            Err(e) => return invalid(reason::VOUCHER_SIGNATURE, format!("voucher signature does not recover: {e:?}")),
        }
    }

    let charge = if kind == "refund" { 0 } else { terms.price };
    Ok(VerifiedVoucher { kind, channel_id, config, max_claimable_amount: max, charge, signature, signature_checked, deposit_amount, refund_amount })
}

/// Steps 3, 5, 6 and 7 of [`verify_voucher`]: the voucher `v` against the caller's `state` of
/// the channel at Unix time `now`.
pub fn check_against_state(terms: &ChannelTerms, v: &VerifiedVoucher, state: &ChannelState, now: u64, claim_window: u64) -> Result<(), Invalid> {
    let (kind, max, charge, channel_id) = (v.kind, v.max_claimable_amount, v.charge, v.channel_id);
    let _ = terms;
    if channel_id != state.channel_id {
        return invalid(reason::CHANNEL_ID_MISMATCH, "the voucher is for another channel than the record it was checked against");
    }
    let expected = state.charged_cumulative.checked_add(charge);
    if expected != Some(max) {
        return invalid(reason::CUMULATIVE_AMOUNT_MISMATCH, format!("maxClaimableAmount {max} is not the charged {} + {charge}", state.charged_cumulative));
    }

    let available = state.balance.saturating_add(v.deposit_amount.unwrap_or(0));
    if available == 0 {
        return invalid(reason::CHANNEL_NOT_FOUND, "the channel holds no deposit");
    }
    if max > available {
        return invalid(reason::CUMULATIVE_EXCEEDS_BALANCE, format!("maxClaimableAmount {max} exceeds the channel balance {available}"));
    }
    let below = if kind == "voucher" { max <= state.total_claimed } else { max < state.total_claimed };
    if below {
        return invalid(reason::CUMULATIVE_BELOW_CLAIMED, format!("maxClaimableAmount {max} is not above the claimed {}", state.total_claimed));
    }

    if state.withdraw_requested_at != 0 {
        let completes = state.withdraw_requested_at.saturating_add(v.config.withdraw_delay);
        if completes < now.saturating_add(claim_window) {
            return invalid(reason::WITHDRAWAL_CLOSES_CLAIM_WINDOW, format!("the payer's withdrawal completes at {completes}, before the claim window ends at {}", now.saturating_add(claim_window)));
        }
    }

    if kind == "refund" && state.balance <= state.charged_cumulative {
        return invalid(reason::REFUND_NO_BALANCE, "nothing is refundable: the balance is all charged");
    }

    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_constant_addresses_are_the_official_ones() {
        assert_eq!(BATCH_SETTLEMENT_ADDRESS.to_checksum(), "0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003");
        assert_eq!(ERC3009_DEPOSIT_COLLECTOR_ADDRESS.to_checksum(), "0x4020806089470a89826cB9fB1f4059150b550004");
        assert_eq!(PERMIT2_DEPOSIT_COLLECTOR_ADDRESS.to_checksum(), "0x4020425FAf3B746C082C2f942b4E5159887B0005");
    }

    #[test]
    fn the_precomputed_hashes_are_the_keccak_of_their_strings_and_the_separator_the_domain_s() {
        assert_eq!(CHANNEL_CONFIG_TYPEHASH, keccak256(CHANNEL_CONFIG_TYPE.as_bytes()));
        assert_eq!(VOUCHER_TYPEHASH, keccak256(VOUCHER_TYPE.as_bytes()));
        let domain = |chain_id| Eip712Domain { name: DOMAIN_NAME.into(), version: DOMAIN_VERSION.into(), chain_id, verifying_contract: BATCH_SETTLEMENT_ADDRESS }.separator();
        // Alternating chains: the kept separator is never another chain's.
        for chain_id in [84532, 8453, 84532, 84532, 1] {
            assert_eq!(domain_separator(chain_id), domain(chain_id), "chain {chain_id}");
        }
    }

    #[test]
    fn the_claim_batch_type_is_the_primary_type_then_its_entry() {
        assert_eq!(CLAIM_BATCH_TYPE, format!("ClaimBatch(ClaimEntry[] claims){CLAIM_ENTRY_TYPE}"));
    }
}
