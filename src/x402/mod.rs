//! The x402 protocol's formats: what travels on the wire and what can be checked from it alone.
//!
//! | module | owns |
//! |---|---|
//! | [`wire`] | v2 (and v1) wire types, the base64 header codecs, challenge layouts |
//! | [`offer`] | [`offer::Offer`]: one payment option, its wire requirement and parsed values |
//! | [`exact`] | local verification of an `exact` EVM payment (EIP-3009) |
//! | [`permit2`] | EIP-712 hashing of the Permit2 message an `upto` payment signs |
//! | [`upto`] | local verification of an `upto` EVM payment (Permit2, x402 upto proxy) |
//! | [`siwx`] | the `sign-in-with-x` extension for EVM wallets (EIP-4361, EIP-191) |
//! | [`channel`] | the `batch-settlement` scheme (payment channels): wire types, EIP-712 channel id and voucher, [`channel::verify_voucher`] |
//! | [`bazaar`] | the `bazaar` discovery extension of a route's 402 |
//!
//! It must not touch HTTP (requests, responses, status codes), I/O or per-request state, and it
//! does not read the configuration: [`crate::config`] builds on these types, never the reverse.

pub mod bazaar;
pub mod channel;
pub mod exact;
pub mod gas_sponsoring;
pub mod offer;
pub mod permit2;
pub mod siwx;
pub mod upto;
pub mod wire;

// The wire types are the module's vocabulary: `crate::x402::PaymentRequirements` and so on.
pub use wire::*;
