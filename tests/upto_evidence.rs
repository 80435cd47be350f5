//! Chain evidence for metered (`upto`, Permit2) payments through the pipeline on the host, with
//! `RPC_URL` set to a fake chain ([`Chain`]): an unknown settlement outcome is decided from
//! Permit2's `nonceBitmap`, the token's `Transfer(payer, payTo)` logs, the x402 `upto` proxy's
//! `settle` calldata and Permit2's `UnorderedNonceInvalidation` logs (`src/evidence/`). Paid
//! on chain → served without a second charge; a nonce the payer invalidated → never served;
//! anything less than evidence → unknown. Counts origin runs, facilitator calls and RPC calls.
//! The real path (a settle that executes and then answers 500) is `tests/upto.test.mjs`.

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use common::*;
use k256::ecdsa::SigningKey;
use serde_json::{json, Value};
use x402_edge_paywall::config::Config;
use x402_edge_paywall::evidence::permit2::{unordered_nonce_invalidation_topic, SETTLE_SIGNATURE};
use x402_edge_paywall::evidence::transfer_topic;
use x402_edge_paywall::evm::{address_of, hex_0x, keccak256, Address};
use x402_edge_paywall::facilitator::UpstreamError;
use x402_edge_paywall::x402::permit2::{PERMIT2_ADDRESS, UPTO_PROXY_ADDRESS};
use x402_edge_paywall::x402::decode_header_json;

const FACILITATOR: &str = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";
const KEY: u8 = 7;
const NONCE: u64 = 3;

/// `GET /metered`, at most $0.50, the origin reports the amount; `RPC_URL` set when `rpc`.
fn metered(rpc: bool) -> Rc<Config> {
    let route = json!({ "route": "GET /metered", "scheme": "upto", "price": "$0.50", "verify": "local" });
    let mut vars = json!({ "FACILITATOR_ADDRESS": FACILITATOR, "ROUTES": [route] });
    if rpc {
        vars["RPC_URL"] = json!(FAKE_RPC_URL);
    }
    config_vars(vars)
}

/// [`upto_payment_with`] for the metered offer: key [`KEY`], nonce [`NONCE`].
fn upto_payment(cfg: &Config) -> String {
    upto_payment_with(cfg, 0, KEY, NONCE, FACILITATOR)
}

fn get(cfg: &Rc<Config>, p: &Rc<Fake>, header: &str) -> http::Response<Vec<u8>> {
    run(cfg, p, request("/metered", &[("payment-signature", header)]))
}

fn payment_response(res: &http::Response<Vec<u8>>) -> Value {
    decode_header_json(res.headers()["payment-response"].to_str().unwrap()).unwrap()
}

fn word(a: &Address) -> String {
    format!("0x{}{}", "0".repeat(24), hex(&a.0))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn uint(n: u64) -> String {
    format!("{n:064x}")
}

/// A fake chain: Permit2's bitmap word for the payer, the token's transfer logs, Permit2's
/// invalidation logs, transactions and receipts by hash. `bit_from_call`: the nonce's bit reads
/// set from this `nonceBitmap` call on (1 = the first).
#[derive(Default)]
struct Chain {
    bit_set: bool,
    bit_from_call: Option<usize>,
    bitmap_calls: usize,
    transfers: Vec<Value>,
    invalidations: Vec<Value>,
    transactions: HashMap<String, Value>,
    receipts: HashMap<String, Value>,
}

/// What the test's offer and payer are on chain.
struct Parties {
    asset: Address,
    payer: Address,
    pay_to: Address,
}

fn parties(cfg: &Config) -> Parties {
    let offer = &cfg.routes[0].accepts[0];
    Parties { asset: offer.asset, payer: address_of(SigningKey::from_slice(&[KEY; 32]).unwrap().verifying_key()), pay_to: offer.pay_to }
}

impl Chain {
    /// Connects a chain to the fake platform's RPC endpoint.
    fn attach(p: &Fake) -> Rc<RefCell<Chain>> {
        let chain = Rc::new(RefCell::new(Chain::default()));
        let c = Rc::clone(&chain);
        *p.rpc.borrow_mut() = Some(Box::new(move |method: &str, params: &Value| c.borrow_mut().answer(method, params)));
        chain
    }

    fn answer(&mut self, method: &str, params: &Value) -> Option<Value> {
        let permit2 = hex_0x(&PERMIT2_ADDRESS.0);
        Some(match method {
            "eth_call" => {
                assert_eq!(params[0]["to"], permit2, "only Permit2 is called for an upto payment");
                self.bitmap_calls += 1;
                let set = self.bit_set || self.bit_from_call.is_some_and(|n| self.bitmap_calls >= n);
                json!(format!("0x{}", uint(if set { 1 << NONCE } else { 0 })))
            }
            "eth_blockNumber" => json!("0x2000"),
            "eth_getLogs" if params[0]["address"] == permit2 => json!(self.invalidations),
            "eth_getLogs" => json!(self.transfers),
            "eth_getTransactionByHash" => self.transactions.get(params[0].as_str()?).cloned().unwrap_or(Value::Null),
            "eth_getTransactionReceipt" => self.receipts.get(params[0].as_str()?).cloned().unwrap_or(Value::Null),
            other => panic!("unexpected RPC method {other}"),
        })
    }

    /// The upto proxy's `settle` of this permit for `amount`, mined in `tx` (succeeded).
    fn settled(&mut self, who: &Parties, tx: &str, amount: u64) {
        let mut input = hex(&keccak256(SETTLE_SIGNATURE.as_bytes())[..4]);
        for w in [word(&who.asset), format!("0x{}", uint(500_000)), format!("0x{}", uint(NONCE)), format!("0x{}", uint(NOW + 120)), format!("0x{}", uint(amount)), word(&who.payer), word(&who.pay_to), word(&Address::parse(FACILITATOR).unwrap()), format!("0x{}", uint(NOW - 600)), format!("0x{}", uint(0x140))] {
            input.push_str(&w[2..]);
        }
        input.push_str(&uint(65));
        input.push_str(&"ab".repeat(65));
        input.push_str(&"00".repeat(31));
        let log = json!({ "address": hex_0x(&who.asset.0), "topics": [transfer_topic(), word(&who.payer), word(&who.pay_to)], "data": format!("0x{}", uint(amount)), "blockNumber": "0x1ff0", "transactionHash": tx });
        self.bit_set = true;
        self.transfers.push(log.clone());
        self.transactions.insert(tx.into(), json!({ "hash": tx, "to": hex_0x(&UPTO_PROXY_ADDRESS.0), "input": format!("0x{input}") }));
        self.receipts.insert(tx.into(), json!({ "transactionHash": tx, "status": "0x1", "to": hex_0x(&UPTO_PROXY_ADDRESS.0), "logs": [log] }));
    }

    /// The payer's own `invalidateUnorderedNonces(nonce >> 8, 1 << (nonce & 0xff))` in `tx`.
    fn invalidated(&mut self, who: &Parties, tx: &str) {
        self.bit_set = true;
        self.invalidations.push(json!({ "address": hex_0x(&PERMIT2_ADDRESS.0), "topics": [unordered_nonce_invalidation_topic(), word(&who.payer)], "data": format!("0x{}{}", uint(0), uint(1 << NONCE)), "blockNumber": "0x1ff8", "transactionHash": tx }));
    }
}

/// The first send times out with the chain showing nothing yet: unknown (504), the origin ran once.
fn unknown_first_send(cfg: &Rc<Config>, p: &Rc<Fake>, header: &str) {
    p.origin_response_headers.borrow_mut().push(("settlement-overrides", r#"{"amount":"321"}"#.into()));
    p.queue_settle(Err(UpstreamError::Timeout { seconds: 30 }));
    let first = get(cfg, p, header);
    assert_eq!(first.status(), 504);
    assert_eq!(body_json(&first)["error"], "settlement_outcome_unknown");
    assert_eq!((p.origin_hits(), p.settles()), (1, 1));
}

#[test]
fn a_retry_after_an_unknown_outcome_that_the_chain_shows_paid_is_served_without_a_second_charge() {
    let cfg = metered(true);
    let p = Rc::new(fake());
    let chain = Chain::attach(&p);
    let header = upto_payment(&cfg);
    unknown_first_send(&cfg, &p, &header);
    assert_eq!(p.rpc_calls.borrow().as_slice(), ["eth_call"], "the first send asked the bitmap: clear, so unknown");
    // The first send's transaction is mined; the retry reads it before sending anything again.
    chain.borrow_mut().settled(&parties(&cfg), &tx(0xaa), 321);
    let retry = get(&cfg, &p, &header);
    assert_eq!(retry.status(), 200);
    assert_eq!(p.settles(), 1, "no second /settle");
    assert_eq!(p.origin_hits(), 2, "the withheld answer is produced again, once");
    let settled = payment_response(&retry);
    assert_eq!((settled["success"].clone(), settled["transaction"].clone(), settled["amount"].clone()), (json!(true), json!(tx(0xaa)), json!("321")));
    assert_eq!(p.decisions.borrow().last().unwrap().reason.as_deref(), Some("reconciled"));
    // Spent: a replay neither settles nor runs the origin.
    let replay = get(&cfg, &p, &header);
    assert_ne!(replay.status(), 200);
    assert_eq!((p.origin_hits(), p.settles()), (2, 1));
}

#[test]
fn a_resend_refused_because_the_first_send_executed_meanwhile_is_decided_by_the_chain() {
    // The gap without RPC_URL: the official upto facilitator answers a repeated settle of an
    // executed permit with `permit2_simulation_failed`, which alone is unknown forever.
    let refused = r#"{"success":false,"errorReason":"permit2_simulation_failed","transaction":"","network":"eip155:84532"}"#;
    for rpc in [false, true] {
        let cfg = metered(rpc);
        let p = Rc::new(fake());
        let chain = Chain::attach(&p);
        let header = upto_payment(&cfg);
        unknown_first_send(&cfg, &p, &header);
        // Mined between the retry's reconciliation (bitmap call 2: clear) and its resend.
        chain.borrow_mut().settled(&parties(&cfg), &tx(0xbb), 321);
        chain.borrow_mut().bit_set = false;
        chain.borrow_mut().bit_from_call = Some(3);
        p.queue_settle(reply(200, refused));
        let retry = get(&cfg, &p, &header);
        assert_eq!(p.settles(), 2, "rpc={rpc}: settled again with the recorded amount");
        if rpc {
            assert_eq!(retry.status(), 200);
            assert_eq!(payment_response(&retry)["transaction"], tx(0xbb));
            assert_eq!(payment_response(&retry)["amount"], "321");
            assert_eq!(p.origin_hits(), 2);
        } else {
            assert_eq!(body_json(&retry)["error"], "settlement_outcome_unknown", "without RPC_URL the payer paid but cannot be told");
            assert_eq!(p.origin_hits(), 1);
            assert!(p.rpc_calls.borrow().is_empty());
        }
    }
}

#[test]
fn a_nonce_the_payer_invalidated_is_never_served() {
    let cfg = metered(true);
    let p = Rc::new(fake());
    let chain = Chain::attach(&p);
    let header = upto_payment(&cfg);
    unknown_first_send(&cfg, &p, &header);
    // The payer burns the nonce with invalidateUnorderedNonces; no settle of the permit ran.
    chain.borrow_mut().invalidated(&parties(&cfg), &tx(0xcc));
    let retry = get(&cfg, &p, &header);
    assert_eq!(retry.status(), 402);
    assert_eq!(body_json(&retry)["error"], "invalid_exact_evm_nonce_already_used");
    assert!(body_json(&retry)["message"].as_str().unwrap().contains(&tx(0xcc)));
    assert_eq!((p.origin_hits(), p.settles()), (1, 1), "never served, never sent again");
    // Forgotten by the ledger as nothing it can settle: a later copy is a new attempt, which the
    // facilitator refuses and the chain again shows burned; its answer is withheld.
    let refused = r#"{"success":false,"errorReason":"permit2_simulation_failed","transaction":"","network":"eip155:84532"}"#;
    p.queue_settle(reply(200, refused));
    let again = get(&cfg, &p, &header);
    assert_eq!(again.status(), 402);
    assert_eq!(body_json(&again)["error"], "invalid_exact_evm_nonce_already_used");
    assert!(!String::from_utf8_lossy(again.body()).contains("paid content"));
    assert!(p.decisions.borrow().iter().all(|d| d.reason.as_deref() != Some("reconciled")));
}

#[test]
fn an_invalidation_after_a_settle_of_the_permit_is_not_a_burn() {
    // The payer invalidated the nonce after the facilitator's settle had used it: the settle
    // decides (paid), the later invalidation changes nothing.
    let cfg = metered(true);
    let p = Rc::new(fake());
    let chain = Chain::attach(&p);
    let header = upto_payment(&cfg);
    unknown_first_send(&cfg, &p, &header);
    chain.borrow_mut().settled(&parties(&cfg), &tx(0xaa), 321);
    chain.borrow_mut().invalidated(&parties(&cfg), &tx(0xcc));
    let retry = get(&cfg, &p, &header);
    assert_eq!(retry.status(), 200);
    assert_eq!(payment_response(&retry)["transaction"], tx(0xaa));
    assert_eq!(p.settles(), 1);
}

#[test]
fn less_than_evidence_stays_unknown_and_never_runs_the_origin_again() {
    type Setup = fn(&mut Chain, &Parties);
    let cases: [(&str, Setup); 5] = [
        // A bare set bit: no settle, no invalidation found in the window.
        ("bit set, nothing logged", |c, _| c.bit_set = true),
        // The nonce was used by a settle that moved another amount: money moved, not what is on record.
        ("another amount", |c, who| {
            c.settled(who, &tx(0xaa), 320);
            c.invalidated(who, &tx(0xcc));
        }),
        // More transfers to payTo than are looked at: an invalidation proves nothing.
        ("too many transfers", |c, who| {
            for i in 0..9u8 {
                c.settled(who, &tx(0x10 + i), 1);
                let t = tx(0x10 + i);
                c.transactions.get_mut(&t).unwrap()["to"] = json!(hex_0x(&[0x99; 20]));
            }
            c.invalidated(who, &tx(0xcc));
        }),
        // The same calldata sent to another contract is not the proxy's settle.
        ("not the proxy", |c, who| {
            c.settled(who, &tx(0xaa), 321);
            c.transactions.get_mut(&tx(0xaa)).unwrap()["to"] = json!(hex_0x(&[0x99; 20]));
        }),
        // A logged transfer whose transaction the endpoint does not know.
        ("no transaction", |c, who| {
            c.settled(who, &tx(0xaa), 321);
            c.transactions.clear();
        }),
    ];
    for (name, setup) in cases {
        let cfg = metered(true);
        let p = Rc::new(fake());
        let chain = Chain::attach(&p);
        let header = upto_payment(&cfg);
        unknown_first_send(&cfg, &p, &header);
        setup(&mut chain.borrow_mut(), &parties(&cfg));
        let retry = get(&cfg, &p, &header);
        assert_eq!(body_json(&retry)["error"], "settlement_outcome_unknown", "{name}");
        assert!(retry.headers().get("payment-response").is_none(), "{name}");
        assert_eq!((p.origin_hits(), p.settles()), (1, 1), "{name}: neither served nor sent again");
    }
    // An endpoint that fails is no evidence either.
    let cfg = metered(true);
    let p = Rc::new(fake());
    let header = upto_payment(&cfg);
    unknown_first_send(&cfg, &p, &header);
    let retry = get(&cfg, &p, &header);
    assert_eq!(body_json(&retry)["error"], "settlement_outcome_unknown");
    assert_eq!((p.origin_hits(), p.settles()), (1, 1));
}

#[test]
fn a_transaction_the_facilitator_named_is_checked_before_it_is_believed() {
    let pending = |t: &str| json!({ "success": false, "errorReason": "settlement_pending", "transaction": t, "network": "eip155:84532" }).to_string();
    // It settled this permit for the amount asked: paid at once, no second send.
    let cfg = metered(true);
    let p = Rc::new(fake());
    let chain = Chain::attach(&p);
    chain.borrow_mut().settled(&parties(&cfg), &tx(0xaa), 321);
    p.origin_response_headers.borrow_mut().push(("settlement-overrides", r#"{"amount":"321"}"#.into()));
    p.queue_settle(reply(200, &pending(&tx(0xaa))));
    let res = get(&cfg, &p, &upto_payment(&cfg));
    assert_eq!(res.status(), 200);
    assert_eq!(payment_response(&res)["transaction"], tx(0xaa));
    assert_eq!(p.rpc_calls.borrow().as_slice(), ["eth_getTransactionByHash", "eth_getTransactionReceipt"]);
    // It moved the payer's money for another permit (another nonce in its calldata): not this
    // one's evidence; the bitmap is clear, so the outcome stays unknown.
    let p = Rc::new(fake());
    let chain = Chain::attach(&p);
    chain.borrow_mut().settled(&parties(&cfg), &tx(0xaa), 321);
    chain.borrow_mut().bit_set = false;
    let input = chain.borrow().transactions[&tx(0xaa)]["input"].as_str().unwrap().to_string();
    let other_nonce = input.replacen(&format!("{}{}", uint(500_000), uint(NONCE)), &format!("{}{}", uint(500_000), uint(NONCE + 1)), 1);
    assert_ne!(input, other_nonce);
    chain.borrow_mut().transactions.get_mut(&tx(0xaa)).unwrap()["input"] = json!(other_nonce);
    p.origin_response_headers.borrow_mut().push(("settlement-overrides", r#"{"amount":"321"}"#.into()));
    p.queue_settle(reply(200, &pending(&tx(0xaa))));
    let res = get(&cfg, &p, &upto_payment(&cfg));
    assert_eq!(body_json(&res)["error"], "settlement_outcome_unknown");
    assert_eq!(p.rpc_calls.borrow().as_slice(), ["eth_getTransactionByHash", "eth_call"], "calldata of another nonce: no receipt read");
}
