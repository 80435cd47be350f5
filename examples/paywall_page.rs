//! Prints the browser paywall page (`x402_edge_paywall::paywall::render`) for a sample priced
//! route that sells a pass, as a browser navigation gets it: `scripts/size.sh` measures it
//! gzipped against the page budget (30 KB with its script and QR code generator).
//!
//! `cargo run -q --example paywall_page > page.html`

use serde_json::json;
use x402_edge_paywall::config::Config;
use x402_edge_paywall::paywall::render;
use x402_edge_paywall::x402::{PaymentRequired, ResourceInfo};

fn main() {
    let vars = json!({
        "ORIGIN_URL": "https://origin.example.com",
        "FACILITATOR_URL": "https://x402.org/facilitator",
        "PAY_TO": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
        "ROUTES": [{ "route": "GET /premium/*", "price": "$0.05", "description": "Premium market reports", "pass": { "ttl": "1h", "maxRequests": 10 } }],
    });
    let config = match Config::from_vars(vars.as_object().unwrap_or(&Default::default())) {
        Ok(c) => c,
        Err(e) => return eprintln!("{e}"),
    };
    let route = &config.routes[0];
    let required = PaymentRequired {
        x402_version: 2,
        error: "PAYMENT-SIGNATURE header is required".into(),
        resource: ResourceInfo { url: "https://api.example.com/premium/2026-q3-outlook".into(), description: route.description.clone(), mime_type: None },
        accepts: route.accepts.iter().map(|o| o.requirements.clone()).collect(),
        extensions: None,
    };
    print!("{}", render(&serde_json::to_value(required).unwrap_or_default(), route, 1_800_000_000));
}
