//! What an operator can query: one [`Decision`] per priced request, written as one JSON log line
//! (Workers Logs index JSON fields) and, when the `METRICS` Workers Analytics Engine binding is
//! set, as one data point ([`Decision::data_point`]).
//!
//! A decision never holds payment headers, pass tokens, signatures or secrets: only the route,
//! the outcome and its reason code, the payer's address, the price (atomic units, asset,
//! network), the transaction hash, and latencies.

use std::cell::RefCell;

use serde::Serialize;

/// How a priced request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DecisionOutcome {
    /// 402 without a payment (the challenge).
    #[default]
    Challenge,
    /// Settled and served (or a settled payment served again).
    Paid,
    /// Served on a live pass (or a wallet sign-in to one).
    Pass,
    /// The payment was refused (`reason` says why); nothing was charged.
    Refused,
    /// Settlement was sent and its outcome is not known (502/504 naming the payment).
    UnknownOutcome,
    /// The origin failed or answered >= 400 before settlement: nothing was charged.
    OriginError,
    /// The facilitator could not be used for `/verify`: nothing was charged.
    FacilitatorError,
    /// Over a rate limit (429); nothing was called.
    RateLimited,
    /// The ledger or pass store could not be used (503): nothing forwarded or charged.
    Unavailable,
    /// The client went away before settlement: nothing was charged.
    ClientGone,
    /// `MODE = "shadow"`: served as if free; `amount` is what would have been charged.
    Shadow,
}

impl DecisionOutcome {
    /// The snake_case name, as logged and as blob 2 of the data point.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionOutcome::Challenge => "challenge",
            DecisionOutcome::Paid => "paid",
            DecisionOutcome::Pass => "pass",
            DecisionOutcome::Refused => "refused",
            DecisionOutcome::UnknownOutcome => "unknown_outcome",
            DecisionOutcome::OriginError => "origin_error",
            DecisionOutcome::FacilitatorError => "facilitator_error",
            DecisionOutcome::RateLimited => "rate_limited",
            DecisionOutcome::Unavailable => "unavailable",
            DecisionOutcome::ClientGone => "client_gone",
            DecisionOutcome::Shadow => "shadow",
        }
    }
}

/// One priced request's decision. Logged as
/// `{"x402":"decision","route":…,"outcome":…,"reason":…,"payer":…,"amount":…,"asset":…,
/// "network":…,"transaction":…,"facilitatorMs":…,"originStatus":…}` (absent fields omitted).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// The route's key as configured (`"GET /weather"`).
    pub route: String,
    pub outcome: DecisionOutcome,
    /// A reason code (`insufficient_funds`, `payment_in_flight`, `no_payment`, …); never free text
    /// from the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The payer's checksummed address, once the payment's signature was checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// The price in atomic units of `asset` (decimal string); for a metered (`upto`) payment,
    /// once measured, the amount settled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    /// A metered (`upto`) payment's authorized maximum, atomic units (decimal string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// CAIP-2 network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
    /// Milliseconds spent in facilitator calls (`/verify` and `/settle`) for this request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facilitator_ms: Option<u64>,
    /// The origin's status, when the origin was called.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_status: Option<u16>,
}

/// A Workers Analytics Engine data point (`writeDataPoint`): one index, blobs, doubles.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataPoint {
    pub indexes: [String; 1],
    pub blobs: [String; 7],
    pub doubles: [f64; 3],
}

impl Decision {
    /// The log line: the decision as JSON, tagged `"x402": "decision"`.
    pub fn log_line(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("x402".into(), "decision".into());
        }
        v.to_string()
    }

    /// The Analytics Engine data point. index1 = route; blob1 route, blob2 outcome, blob3 reason,
    /// blob4 network, blob5 payer, blob6 asset, blob7 transaction (empty when absent); double1
    /// amount (atomic units; 0 when none), double2 facilitator milliseconds, double3 origin
    /// status (0 when not called).
    pub fn data_point(&self) -> DataPoint {
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        DataPoint {
            indexes: [self.route.clone()],
            blobs: [self.route.clone(), self.outcome.as_str().into(), s(&self.reason), s(&self.network), s(&self.payer), s(&self.asset), s(&self.transaction)],
            doubles: [
                self.amount.as_deref().and_then(|a| a.parse::<f64>().ok()).unwrap_or(0.0),
                self.facilitator_ms.unwrap_or(0) as f64,
                f64::from(self.origin_status.unwrap_or(0)),
            ],
        }
    }
}

/// A decision being filled in while a request runs (shared with its settlement task).
#[derive(Debug, Default)]
pub struct Trace(RefCell<Decision>);

impl Trace {
    /// A trace for `route` (its key), outcome `challenge` until something else is set.
    pub fn new(route: &str) -> Trace {
        Trace(RefCell::new(Decision { route: route.to_string(), ..Decision::default() }))
    }

    /// Sets the outcome and its reason code. The gateway passes codes (each refusal knows its
    /// own); a reason that came from outside (a facilitator's `invalidReason`) may carry text, so
    /// only what precedes its first `:` is kept: free text never reaches a decision.
    pub fn outcome(&self, outcome: DecisionOutcome, reason: Option<&str>) {
        let mut d = self.0.borrow_mut();
        d.outcome = outcome;
        d.reason = reason.map(|r| r.split(':').next().unwrap_or(r).trim().to_string());
    }

    /// Records the price: `amount` in atomic units of `asset` on `network` (CAIP-2).
    pub fn price(&self, amount: &str, asset: &str, network: &str) {
        let mut d = self.0.borrow_mut();
        d.amount = Some(amount.into());
        d.asset = Some(asset.into());
        d.network = Some(network.into());
    }

    /// Records a metered payment's measured amount (atomic units): `amount` becomes it, and the
    /// price recorded before becomes `maximum`.
    pub fn settled_amount(&self, amount: &str) {
        let mut d = self.0.borrow_mut();
        if d.maximum.is_none() {
            d.maximum = d.amount.take();
        }
        d.amount = Some(amount.into());
    }

    /// Adds facilitator time, milliseconds.
    pub fn facilitator_ms(&self, ms: u64) {
        let mut d = self.0.borrow_mut();
        d.facilitator_ms = Some(d.facilitator_ms.unwrap_or(0) + ms);
    }

    pub fn transaction(&self, tx: &str) {
        self.0.borrow_mut().transaction = Some(tx.into());
    }

    pub fn origin_status(&self, status: u16) {
        self.0.borrow_mut().origin_status = Some(status);
    }

    pub fn payer(&self, payer: &str) {
        self.0.borrow_mut().payer = Some(payer.into());
    }


    /// The decision so far.
    pub fn decision(&self) -> Decision {
        self.0.borrow().clone()
    }

    pub fn current_outcome(&self) -> DecisionOutcome {
        self.0.borrow().outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_line_and_data_point_carry_the_decision_and_nothing_else() {
        let t = Trace::new("GET /weather");
        t.payer("0xAbC");
        t.price("10000", "0x036C", "eip155:84532");
        t.facilitator_ms(12);
        t.facilitator_ms(30);
        t.outcome(DecisionOutcome::Refused, Some("insufficient_funds: the payer holds 5"));
        let d = t.decision();
        let line: serde_json::Value = serde_json::from_str(&d.log_line()).unwrap();
        assert_eq!(
            line,
            serde_json::json!({ "x402": "decision", "route": "GET /weather", "outcome": "refused", "reason": "insufficient_funds", "payer": "0xAbC",
                "amount": "10000", "asset": "0x036C", "network": "eip155:84532", "facilitatorMs": 42 })
        );
        let p = d.data_point();
        assert_eq!(p.indexes, ["GET /weather".to_string()]);
        assert_eq!(p.blobs[1], "refused");
        assert_eq!(p.blobs[2], "insufficient_funds");
        assert_eq!(p.doubles, [10000.0, 42.0, 0.0]);
    }
}
