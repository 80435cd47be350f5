//! The payment channel protocol (docs/channels.md), model-checked with [`stateright`]: every
//! interleaving of requests carrying vouchers of ONE channel, a Worker crash at every step, lease
//! expiry, origin failures, clients that hang up, ledger replies lost after or before the shard
//! applied an operation, and a claimer whose facilitator executes or not and whose answers may be
//! lost, explored exhaustively (breadth first) within the bounds below. The shard in the model is
//! the real state machine: [`x402_edge_paywall::ledger::apply`] over a [`MemoryStore`] holding
//! the model's [`ChannelRecord`]. The request actors follow the decisions of
//! `src/gateway/channel.rs` as coded (`pay`: reserve → origin → finish, the repeated finish as not
//! delivered when its reply is lost) and the claimer those of `src/gateway/channel_claim.rs`
//! (`claim`: begin → `/settle` claim → end, a lost answer reconciled from the chain): a change
//! there must be mirrored in [`ChannelModel::next_state`].
//!
//! # Bounds
//!
//! - Requests: copies of the vouchers in [`ChannelModel::vouchers`] (cumulative amounts, price 1,
//!   balance [`BALANCE`]); each request runs once, starting at any time. A copy of a voucher is a
//!   client's retry or an attacker's replay: the model does not tell them apart.
//! - Faults: before any step a request may die (its lease then lapses); the origin answers ok or
//!   fails; at a charging finish the client may be gone; the finish's ledger call may be applied
//!   with its reply lost, or not applied; the repeated finish may be unreachable.
//! - Time: the shard's clock runs [`MAX_T`] ticks; a lease covers [`LEASE`] ticks.
//! - The claimer: up to [`ChannelModel::claims`] claims; each `/settle` executes or not and its answer is delivered or
//!   lost; a lost answer is reconciled from the chain (the claimed total covers the voucher).
//!
//! # Properties (always)
//!
//! (a) an answer is handed to a client only for a voucher the shard has charged; (b) a voucher's
//! answer is handed to a client at most once; (c) the origin never runs again for a voucher whose
//! answer was handed over (a second run is only a redelivery of an answer that was not); (d) the charged amount only takes voucher values whose
//! origin ran, never beyond the balance; (e) when no request is running, the last charge was
//! handed to a client, or is retrievable (the shard's undelivered charge), or its request said the
//! outcome is unknown; (f) the chain never claims more than was charged, and the shard never
//! believes more claimed than the chain.

use std::time::Instant;

use stateright::{Checker, Expectation, Model, Property};
use x402_edge_paywall::ledger::channel::{ChannelFinish, ChannelFinished, ChannelOutcome, ChannelRecord, ChannelReservation, ChannelReserve, ChannelSync, ClaimBegin, ClaimEnd, ClaimStart};
use x402_edge_paywall::ledger::{apply, Apply, MemoryStore};
use x402_edge_paywall::x402::channel::ChannelConfigWire;

const T0: u64 = 1_800_000_000;
const MAX_T: u64 = 4;
const LEASE: u64 = 2;
const BALANCE: u128 = 2;
const ROUTE: &str = "GET /paid";
const RESOURCE: &str = "/paid";

fn signature(v: u128) -> String {
    format!("sig{v}")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum End {
    Served,
    ClientGone,
    Refused,
    OriginFailed,
    /// 409 (lease lost) or 503 (the charge withheld, retrievable).
    Withheld,
    /// 503 "whether it was charged is unknown".
    Unknown,
    Dead,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Phase {
    Idle,
    Holding { redelivery: bool },
    Answered { ok: bool, redelivery: bool },
    /// The finish's reply was lost: finish again as not delivered.
    Retrying { redelivery: bool },
    Done(End),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Claimer {
    Idle(u8),
    /// Claiming up to this amount.
    Claiming(u128, u8),
    Done,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    now: u64,
    channel: ChannelRecord,
    reqs: Vec<(u128, Phase)>,
    /// Per voucher value: answers handed to a client, successful origin runs, answers not handed
    /// over (client gone, or withheld after a charge).
    served: [u8; 4],
    ok_runs: [u8; 4],
    not_handed: [u8; 4],
    claimer: Claimer,
    chain_claimed: u128,
    /// An answer was handed over by a redelivery (the shard answered `Redeliver`): the route a
    /// `sometimes` property must see taken, not only its counts.
    redelivered: bool,
    /// Property violations seen on a transition (bit flags).
    bad: u8,
}

const BAD_SERVED_UNCHARGED: u8 = 1;
const BAD_ORIGIN_AFTER_SERVED: u8 = 2;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Action {
    Start(usize),
    Origin(usize, bool),
    /// (request, client connected, fault: 0 none, 1 reply lost after applying, 2 not applied)
    Finish(usize, bool, u8),
    /// (request, reachable)
    Retry(usize, bool),
    Crash(usize),
    Tick,
    ClaimBegin,
    /// (executes, answer delivered)
    ClaimSettle(bool, bool),
}

#[derive(Clone)]
struct ChannelModel {
    vouchers: Vec<u128>,
    /// Claims the claimer may start.
    claims: u8,
    /// The lease's promise: the clock cannot pass the end of a live holder's lease (its origin
    /// call is cut off by the origin time limit, which the lease covers). `false`: time passes
    /// regardless (a holder slower than its lease).
    timely: bool,
    /// A request may die between a lost ledger reply and the repeat of its finish (a double
    /// fault). `false`: the repeat follows the lost reply (the main runs' assumption).
    crash_after_lost_reply: bool,
    /// The first design of `pay`, kept to show the checker catches it: a finish whose reply is
    /// lost is taken as charged and the answer served.
    serve_on_lost_reply: bool,
}

impl std::fmt::Debug for ChannelModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChannelModel {{ vouchers: {:?}, claims: {}, timely: {}, crash_after_lost_reply: {} }}", self.vouchers, self.claims, self.timely, self.crash_after_lost_reply)
    }
}

fn record() -> ChannelRecord {
    let wire = ChannelConfigWire { payer: "p".into(), payer_authorizer: "p".into(), receiver: "r".into(), receiver_authorizer: "a".into(), token: "t".into(), withdraw_delay: 900, salt: "s".into() };
    let mut store = MemoryStore::default();
    let sync = ChannelSync { channel_id: "c".into(), config: wire, network: "eip155:84532".into(), balance: BALANCE, total_claimed: 0, withdraw_requested_at: 0, refund_nonce: "0".into(), deposit: None };
    apply(&mut store, sync, T0).expect("sync");
    store.channel.expect("a channel")
}

/// Applies `op` to the model's channel at the model's time.
fn on_shard<O: Apply>(s: &mut State, op: O) -> O::Output {
    let mut store = MemoryStore::default();
    store.channel = Some(s.channel.clone());
    let out = apply(&mut store, op, T0 + s.now).expect("the memory store does not fail");
    s.channel = store.channel.expect("the channel stays");
    out
}

fn holder(i: usize) -> String {
    format!("h{i}")
}

impl Model for ChannelModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![State { now: 0, channel: record(), reqs: self.vouchers.iter().map(|v| (*v, Phase::Idle)).collect(), served: [0; 4], ok_runs: [0; 4], not_handed: [0; 4], claimer: Claimer::Idle(0), chain_claimed: 0, redelivered: false, bad: 0 }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        for (i, (_, phase)) in s.reqs.iter().enumerate() {
            match phase {
                Phase::Idle => actions.push(Action::Start(i)),
                Phase::Holding { .. } => actions.extend([Action::Origin(i, true), Action::Origin(i, false)]),
                Phase::Answered { ok: true, .. } => {
                    for connected in [true, false] {
                        for fault in 0..3 {
                            actions.push(Action::Finish(i, connected, fault));
                        }
                    }
                }
                Phase::Answered { ok: false, .. } => actions.push(Action::Finish(i, true, 0)),
                Phase::Retrying { .. } => actions.extend([Action::Retry(i, true), Action::Retry(i, false)]),
                Phase::Done(_) => {}
            }
            let may_crash = match phase {
                Phase::Done(_) | Phase::Idle => false,
                Phase::Retrying { .. } => self.crash_after_lost_reply,
                _ => true,
            };
            if may_crash {
                actions.push(Action::Crash(i));
            }
        }
        let live_holder_ends = s.channel.pending.as_ref().is_some_and(|p| {
            let live = s.reqs.iter().enumerate().any(|(i, (_, phase))| holder(i) == p.holder && !matches!(phase, Phase::Done(_) | Phase::Idle));
            live && p.lease_until < T0 + s.now + 1
        });
        if s.now < MAX_T && !(self.timely && live_holder_ends) {
            actions.push(Action::Tick);
        }
        match s.claimer {
            Claimer::Idle(n) if n < self.claims => actions.push(Action::ClaimBegin),
            Claimer::Claiming(..) => {
                for exec in [true, false] {
                    for delivered in [true, false] {
                        actions.push(Action::ClaimSettle(exec, delivered));
                    }
                }
            }
            _ => {}
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::Start(i) => {
                let v = s.reqs[i].0;
                let op = ChannelReserve { max: v, signature: signature(v), price: 1, holder: holder(i), lease_seconds: LEASE, route: ROUTE.into(), resource: RESOURCE.into(), claim_window: 0, max_age: u64::MAX, deposit: None, refund: false, refund_amount: None };
                s.reqs[i].1 = match on_shard(&mut s, op) {
                    ChannelReservation::Reserved { .. } => Phase::Holding { redelivery: false },
                    ChannelReservation::Redeliver { .. } => Phase::Holding { redelivery: true },
                    _ => Phase::Done(End::Refused),
                };
            }
            Action::Origin(i, ok) => {
                let Phase::Holding { redelivery } = s.reqs[i].1 else { return None };
                let v = s.reqs[i].0 as usize;
                if ok {
                    s.ok_runs[v] += 1;
                }
                if s.served[v] >= 1 {
                    s.bad |= BAD_ORIGIN_AFTER_SERVED;
                }
                s.reqs[i].1 = Phase::Answered { ok, redelivery };
            }
            Action::Finish(i, connected, fault) => {
                let Phase::Answered { ok, redelivery } = s.reqs[i].1 else { return None };
                let v = s.reqs[i].0;
                if !ok {
                    let outcome = if redelivery { ChannelOutcome::Redelivered { delivered: false } } else { ChannelOutcome::Release };
                    on_shard(&mut s, ChannelFinish { holder: holder(i), outcome });
                    s.reqs[i].1 = Phase::Done(End::OriginFailed);
                    return Some(s);
                }
                let outcome = if redelivery { ChannelOutcome::Redelivered { delivered: connected } } else { ChannelOutcome::Charged { delivered: connected } };
                // The answer is not handed over: the client is gone, or it is withheld after a
                // lost reply.
                if !connected || fault != 0 {
                    s.not_handed[v as usize] += 1;
                }
                if self.serve_on_lost_reply && fault != 0 && connected {
                    if fault == 1 {
                        on_shard(&mut s, ChannelFinish { holder: holder(i), outcome });
                    }
                    s.not_handed[v as usize] -= 1;
                    if s.channel.charged < v {
                        s.bad |= BAD_SERVED_UNCHARGED;
                    }
                    s.served[v as usize] += 1;
                    s.reqs[i].1 = Phase::Done(End::Served);
                    return Some(s);
                }
                if fault == 2 {
                    s.reqs[i].1 = Phase::Retrying { redelivery };
                    return Some(s);
                }
                let reply = on_shard(&mut s, ChannelFinish { holder: holder(i), outcome });
                if fault == 1 {
                    s.reqs[i].1 = Phase::Retrying { redelivery };
                    return Some(s);
                }
                s.reqs[i].1 = match reply {
                    ChannelFinished::Done { .. } if connected => {
                        if s.channel.charged < v {
                            s.bad |= BAD_SERVED_UNCHARGED;
                        }
                        s.served[v as usize] += 1;
                        s.redelivered |= redelivery;
                        Phase::Done(End::Served)
                    }
                    ChannelFinished::Done { .. } => Phase::Done(End::ClientGone),
                    // Withheld (counted above unless the client was there and the reply came).
                    ChannelFinished::LostLease => {
                        if connected {
                            s.not_handed[v as usize] += 1;
                        }
                        Phase::Done(End::Withheld)
                    }
                };
            }
            Action::Retry(i, reachable) => {
                let Phase::Retrying { redelivery } = s.reqs[i].1 else { return None };
                if !reachable {
                    s.reqs[i].1 = Phase::Done(End::Unknown);
                    return Some(s);
                }
                let outcome = if redelivery { ChannelOutcome::Redelivered { delivered: false } } else { ChannelOutcome::Charged { delivered: false } };
                on_shard(&mut s, ChannelFinish { holder: holder(i), outcome });
                s.reqs[i].1 = Phase::Done(End::Withheld);
            }
            Action::Crash(i) => {
                if matches!(s.reqs[i].1, Phase::Answered { ok: true, .. }) {
                    s.not_handed[s.reqs[i].0 as usize] += 1;
                }
                s.reqs[i].1 = Phase::Done(End::Dead);
            }
            Action::Tick => s.now += 1,
            Action::ClaimBegin => {
                let Claimer::Idle(n) = s.claimer else { return None };
                s.claimer = match on_shard(&mut s, ClaimBegin { lease_seconds: LEASE }) {
                    ClaimStart::Claim { channel } => Claimer::Claiming(channel.charged, n + 1),
                    ClaimStart::Nothing => Claimer::Idle(n + 1),
                };
            }
            Action::ClaimSettle(executes, delivered) => {
                let Claimer::Claiming(amount, n) = s.claimer else { return None };
                if executes {
                    s.chain_claimed = s.chain_claimed.max(amount);
                }
                // A delivered success ends the claim; anything else is reconciled from the chain.
                let claimed = (executes && delivered) || s.chain_claimed >= amount;
                let end = if claimed { ClaimEnd { total_claimed: Some(amount), error: None } } else { ClaimEnd { total_claimed: None, error: Some("failed".into()) } };
                on_shard(&mut s, end);
                s.claimer = if n < self.claims { Claimer::Idle(n) } else { Claimer::Done };
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("a: served only if charged", |_: &ChannelModel, s: &State| s.bad & BAD_SERVED_UNCHARGED == 0),
            Property::always("b: a voucher's answer handed over at most once", |_: &ChannelModel, s: &State| s.served.iter().all(|n| *n <= 1)),
            Property::always("c: the origin never runs for a voucher whose answer was handed over", |_: &ChannelModel, s: &State| s.bad & BAD_ORIGIN_AFTER_SERVED == 0),
            Property::always("d: charged only to a voucher that ran, within the balance", |_: &ChannelModel, s: &State| {
                let c = s.channel.charged;
                c <= BALANCE && (c == 0 || s.ok_runs[c as usize] >= 1)
            }),
            Property::always("e: the last charge handed over, retrievable, or said unknown", |_: &ChannelModel, s: &State| {
                let c = s.channel.charged;
                let running = s.reqs.iter().any(|(_, p)| !matches!(p, Phase::Done(_) | Phase::Idle));
                running
                    || c == 0
                    || s.served[c as usize] >= 1
                    || s.channel.undelivered.as_ref().is_some_and(|u| u.max == c)
                    || s.reqs.iter().any(|(v, p)| *v == c && *p == Phase::Done(End::Unknown))
            }),
            Property::always("f: claims within what was charged", |_: &ChannelModel, s: &State| s.chain_claimed <= s.channel.charged && s.channel.total_claimed <= s.chain_claimed),
            Property::sometimes("served", |_: &ChannelModel, s: &State| s.served.contains(&1)),
            Property::sometimes("redelivered after a client hung up", |_: &ChannelModel, s: &State| s.redelivered && (1..4).any(|v| s.served[v] == 1 && s.not_handed[v] >= 1)),
            Property::sometimes("two vouchers served in order", |m: &ChannelModel, s: &State| !m.vouchers.contains(&2) || (s.served[1] == 1 && s.served[2] == 1)),
            Property::sometimes("claimed", |m: &ChannelModel, s: &State| m.claims == 0 || (s.channel.total_claimed >= 1 && s.chain_claimed == s.channel.total_claimed)),
        ]
    }
}

/// Checks `model` over its whole space: every `sometimes` property is reached and every `always`
/// property holds but those in `may_fail`; returns those that failed.
fn check(model: ChannelModel, may_fail: &[&str]) -> Vec<&'static str> {
    let mut failed = Vec::new();
    let started = Instant::now();
    let checker = model.clone().checker().threads(std::thread::available_parallelism().map_or(1, |n| n.get())).spawn_bfs().join();
    println!("{model:?}: {} states ({} unique), depth {}, {:.1} s", checker.state_count(), checker.unique_state_count(), checker.max_depth(), started.elapsed().as_secs_f64());
    assert!(checker.is_done());
    for p in model.properties() {
        match (p.expectation, checker.discovery(p.name)) {
            (Expectation::Sometimes, None) => panic!("\"{}\" is never reached", p.name),
            (Expectation::Sometimes, Some(_)) | (_, None) => {}
            (_, Some(_)) if may_fail.contains(&p.name) => failed.push(p.name),
            (_, Some(path)) => panic!("\"{}\" fails: {:?}\nlast state: {:?}", p.name, path.clone().into_actions(), path.last_state()),
        }
    }
    failed
}

#[test]
fn copies_of_one_voucher_and_the_next_every_property_holds() {
    check(ChannelModel { vouchers: vec![1, 1, 2], claims: 1, timely: true, crash_after_lost_reply: false, serve_on_lost_reply: false }, &[]);
}

#[test]
fn three_copies_of_one_voucher_every_property_holds() {
    check(ChannelModel { vouchers: vec![1, 1, 1], claims: 0, timely: true, crash_after_lost_reply: false, serve_on_lost_reply: false }, &[]);
}

/// The checker catches a gateway that serves when the charging finish's reply is lost (what
/// `pay` did before this model): the shard may not have applied it, so the answer goes out
/// uncharged, and the same voucher is then served again.
#[test]
fn the_checker_catches_serving_on_a_lost_finish_reply() {
    let a = "a: served only if charged";
    let others = ["b: a voucher's answer handed over at most once", "c: the origin never runs for a voucher whose answer was handed over"];
    let failed = check(ChannelModel { vouchers: vec![1, 1], claims: 0, timely: true, crash_after_lost_reply: false, serve_on_lost_reply: true }, &[a, others[0], others[1]]);
    assert!(failed.contains(&a), "{failed:?}");
}

/// Outside the lease's promise (a Worker stalled between taking a voucher and calling the origin
/// for longer than the origin time limit and the margin), a second request takes the voucher over
/// and the late holder's origin call runs once more after the answer was handed over: the same
/// assumption the authorization ledger states (`ledger_model.rs`,
/// `known_gap_a_holder_slower_than_its_lease`). The charge is still made once.
#[test]
fn known_gap_a_holder_slower_than_its_lease() {
    let failed = check(ChannelModel { vouchers: vec![1, 1], claims: 0, timely: false, crash_after_lost_reply: false, serve_on_lost_reply: false }, &["c: the origin never runs for a voucher whose answer was handed over"]);
    assert_eq!(failed, ["c: the origin never runs for a voucher whose answer was handed over"]);
}

/// A double fault: the shard applied a charging finish, its reply was lost, and the Worker died
/// before repeating the finish as "not delivered". The shard then holds the charge as delivered
/// while the answer never left: the payer was charged for an answer it did not get, and a retry
/// gets the corrective 402. (The authorization ledger writes "delivered" before the handover in
/// the same way.) Closing it means recording delivery after the handover, which trades it for a
/// second run of the origin when the Worker dies between the handover and that record.
#[test]
fn known_gap_a_lost_reply_then_a_crash_before_the_repeat() {
    let e = "e: the last charge handed over, retrievable, or said unknown";
    let failed = check(ChannelModel { vouchers: vec![1, 1], claims: 0, timely: true, crash_after_lost_reply: true, serve_on_lost_reply: false }, &[e]);
    assert_eq!(failed, [e]);
}
