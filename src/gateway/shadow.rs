//! `MODE = "shadow"`: forward as if free and record what would have been charged (for a metered
//! route, what its meter measured). Nothing is reserved, verified with a facilitator or settled
//! here.


use http::{Request, Response};

use crate::config::{Config, Route};
use crate::x402::exact::verify_exact;
use crate::meter::MAX_METERED_BODY_BYTES;
use crate::x402::upto::verify_upto;
use crate::telemetry::{DecisionOutcome, Trace};
use crate::x402::{decode_payment_signature, decode_x_payment, PAYMENT_SIGNATURE, X_PAYMENT};

use super::forward::{forward, origin_failure};
use super::header_str;
use super::pay::Upto;
use super::platform::Platform;
use super::settle::measure;

/// `MODE = "shadow"`: forwards as if free and records what would have been charged: the route's
/// first payment option, and whether the request carried a payment that verifies locally
/// (`valid_payment`), one that does not (its reason), or none (`no_payment`). Nothing is reserved,
/// verified with a facilitator or settled.
pub(super) async fn shadow<P: Platform>(config: &Config, p: &P, route: &Route, req: Request<P::Body>, canonical: &str, trace: &Trace) -> Response<P::Body> {
    let decoded = match (header_str(req.headers(), PAYMENT_SIGNATURE), header_str(req.headers(), X_PAYMENT)) {
        (Some(h), _) => Some(decode_payment_signature(h)),
        (None, Some(h)) => Some(decode_x_payment(h)),
        (None, None) => None,
    };
    let reason = match decoded {
        None => "no_payment".to_string(),
        Some(Err(e)) => e.reason().to_string(),
        Some(Ok(payment)) if payment.upto().is_some() => match verify_upto(&route.accepts, &payment, p.now(), config.min_validity_seconds()) {
            Ok(v) => {
                trace.payer(&v.payer.to_checksum());
                v.late.map_or("valid_payment", |late| late.reason).to_string()
            }
            Err(inv) => inv.reason.to_string(),
        },
        Some(Ok(payment)) => match verify_exact(&route.accepts, &payment, p.now(), config.min_validity_seconds()) {
            Ok(v) => {
                trace.payer(&v.payer.to_checksum());
                v.late.map_or("valid_payment", |late| late.reason).to_string()
            }
            Err(inv) => inv.reason.to_string(),
        },
    };
    if let Some(offer) = route.accepts.first() {
        let r = &offer.requirements;
        trace.price(&r.amount, &r.asset, &r.network);
    }
    trace.outcome(DecisionOutcome::Shadow, Some(&reason));
    match forward(config, p, req, canonical).await {
        Ok(res) => {
            trace.origin_status(res.status().as_u16());
            // A metered route: what its meter would have charged (or why it could not say).
            let Some(upto) = route.accepts.first().and_then(Upto::of) else { return res };
            if res.status().as_u16() >= 400 {
                return res;
            }
            // A free answer is never put at risk for a figure: a body meter reads only a body
            // whose length is announced and within bounds.
            let length = res.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
            if upto.meter.reads_body() && length.is_none_or(|n| n > MAX_METERED_BODY_BYTES) {
                p.log("x402: shadow: the answer's length is not announced (or over 4 MiB): not metered");
                return res;
            }
            // The byte meter's figure is the announced length: reading the body would put the
            // answer at risk for it.
            if let (crate::meter::Meter::Bytes { unit }, Some(n)) = (&upto.meter, length) {
                trace.settled_amount(&crate::meter::capped(ruint::aliases::U256::from(n), *unit, upto.maximum).to_string());
                return res;
            }
            let (res, measured) = measure(p, &upto, res).await;
            match measured {
                Ok(amount) => trace.settled_amount(&amount.to_string()),
                Err(fault) => p.log(&format!("x402: shadow: {fault}")),
            }
            res
        }
        Err(e) => origin_failure::<P>(p, &e, None),
    }
}
