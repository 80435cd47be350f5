//! [`Offer`]: one payment option of a route, as configured and as served (its wire requirement
//! and the parsed values the local checks of [`crate::x402::exact`] need).

use ruint::aliases::U256;
use serde_json::Value;

use crate::evm::{network_by_id, Address};
use crate::x402::{PaymentRequirements, PaymentRequirementsV1};

/// One payment option of a route, ready to serve: the wire requirement, its JSON form (for
/// deep-equality matching against `accepted`), and the parsed values the local checks need.
#[derive(Debug, Clone)]
pub struct Offer {
    pub requirements: PaymentRequirements,
    pub requirements_json: Value,
    /// The v1 name of the network, when legacy v1 clients can pay this offer.
    pub v1_network: Option<&'static str>,
    pub amount: U256,
    pub asset: Address,
    pub pay_to: Address,
    pub chain_id: u64,
    /// EIP-712 domain separator of `asset` on `chain_id` (precomputed).
    pub domain_separator: [u8; 32],
    /// `upto` offers: how the amount settled (at most `amount`, the maximum) is measured;
    /// `None` for `exact`.
    pub meter: Option<crate::meter::Meter>,
    /// The asset's decimals when known (a `$` amount reported by the origin needs them).
    pub decimals: Option<u8>,
    /// `upto` offers configured with `gasSponsoring = "eip2612"`: the route's challenge announces
    /// the `eip2612GasSponsoring` extension ([`crate::x402::gas_sponsoring`]).
    pub eip2612_gas_sponsoring: bool,
}

impl Offer {
    /// This offer in v1 form for a request to `resource` (v1 requirements carry the resource).
    /// `None` when the network has no v1 name.
    pub fn requirements_v1(&self, resource: &str, description: Option<&str>, mime_type: Option<&str>) -> Option<PaymentRequirementsV1> {
        let r = &self.requirements;
        Some(PaymentRequirementsV1 {
            scheme: r.scheme.clone(),
            network: self.v1_network?.to_string(),
            max_amount_required: r.amount.clone(),
            resource: resource.to_string(),
            description: description.unwrap_or_default().to_string(),
            mime_type: mime_type.unwrap_or_default().to_string(),
            pay_to: r.pay_to.clone(),
            max_timeout_seconds: r.max_timeout_seconds,
            asset: r.asset.clone(),
            extra: r.extra.clone(),
        })
    }
}

impl Offer {
    /// The option in words: `0.01 USDC (10000 atomic units of 0x036C…) on eip155:84532, payTo
    /// 0x90F7…` (the whole-token figure only for the network's built-in USDC, whose decimals are
    /// known).
    pub fn summary(&self) -> String {
        let r = &self.requirements;
        let decimals = network_by_id(&r.network).filter(|n| Address::parse(n.usdc) == Some(self.asset)).map(|n| n.usdc_decimals);
        let whole = match decimals {
            Some(d) => {
                let digits = format!("{:0>width$}", self.amount.to_string(), width = usize::from(d) + 1);
                let (int, frac) = digits.split_at(digits.len() - usize::from(d));
                let frac = frac.trim_end_matches('0');
                format!("{int}{}{frac} {} (", if frac.is_empty() { "" } else { "." }, r.extra.name)
            }
            None => String::new(),
        };
        let close = if whole.is_empty() { "" } else { ")" };
        format!("{whole}{} atomic units of {}{close} on {}, payTo {}", r.amount, r.asset, r.network, r.pay_to)
    }
}
