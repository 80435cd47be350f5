//! The ledger protocol, model-checked with [`stateright`]: every interleaving of concurrent copies
//! of ONE EIP-3009 authorization, a Worker crash at every step, lease expiry, a faulty
//! facilitator and a payer who burns the nonce on chain, explored exhaustively (breadth first)
//! within the bounds below. The ledger in the model is the real state machine:
//! [`x402_edge_paywall::ledger::apply`] over a [`MemoryStore`] rebuilt for every step from the
//! model's state (its records and standing, put back with `Store::put` / `set_standing`, which
//! derive the store's private indexes) and read back after it. The request actors follow the
//! decision rules of `src/gateway.rs` as coded (`priced`, `reconcile_before_origin`, `settle`,
//! `settle_after`, `settle_before`, `deliver_settled`): a change there must be mirrored in
//! [`LedgerModel::step`].
//!
//! A metered (`upto`, Permit2) authorization follows the same rules and the same ledger
//! operations; what differs is data the model abstracts: the amount its first send mark records
//! (a retry settles that amount again), and the chain questions behind the evidence (Permit2's
//! nonce bitmap, the upto proxy's calldata and `Transfer` logs, `src/evidence/permit2.rs`), which
//! answer with the same four outcomes as the oracle here (paid, used elsewhere, unused,
//! unavailable) and turn anything less certain into unavailable.
//!
//! # What is explored (bounds)
//!
//! - **Requests**: [`COPIES`] (3) copies of the same payment header, each a request that runs
//!   once, starting at any time: `Reserve` (`create` unless late) → `InFlight` 409 / `Spent` 402 /
//!   `NotFound` challenge / `Redeliver` → origin → `Finish Delivered` / `Reserved`. A fresh
//!   reservation is `/verify`-ed when it lapsed, or when the verify policy asks (both branches, so
//!   `always`, `local` and `auto` are covered). A `prior_sent` one is reconciled: with `RPC_URL`
//!   from the chain (paid → served without settling again; used by another transaction → refused;
//!   unused → settled again unless too late; unreadable → unknown), without it settled again
//!   unless too late; settling again always comes before the origin. `settle = "after"` (origin
//!   ok / failed / ok but the client gone → send mark → `/settle` → decision, with the chain's
//!   evidence when `RPC_URL` is set → `Finish` → answer) and `settle = "before"` (mark → `/settle`
//!   → `Finish Settled` with a hold → origin → `Finish Delivered`), each with and without
//!   `RPC_URL`. A first send refused is forgotten only for "nonce already used" without
//!   `RPC_URL`; any other refusal keeps the record (and with `RPC_URL` the chain decides it). The
//!   route's method is idempotent (`GET`). Each ledger call, facilitator call, chain read and
//!   origin call is one step; the pure decisions between them belong to the step.
//! - **Crashes**: before any step a request may die (it stops; its lease then lapses). A
//!   `/settle` it sent stays with the facilitator, which may still execute it later.
//! - **Time**: the ledger's clock runs from [`T0`] in ticks of one second, up to [`MAX_T`] (4)
//!   ticks; a reservation's lease covers [`LEASE`] (2) ticks and a settle-first or reconciled hold
//!   [`HOLD`] (2); a request starting at tick [`LATE_AT`] (3) or later is *late* (less than the
//!   minimum validity left: `create: false`), at [`TOO_LATE_AT`] (4) too late to settle again (the
//!   facilitator's slack and time limit). Three generations of holders fit (t = 0, 2, 4).
//!   [`Clock::Timely`] (the main runs) is the lease's promise: the clock cannot pass the end of a
//!   live holder's lease. [`Clock::Free`] lets time pass regardless (a holder slower than its
//!   lease): `known_gap_a_holder_slower_than_its_lease`.
//! - **Facilitator** `/settle`, for each request sent, at any later point: executes the transfer
//!   and answers success / executes and the answer is lost / answers "pending" naming a transfer
//!   that is mined later or never / refuses without executing (a reason other than "nonce used") /
//!   names a reverted transaction (no transfer) / does not execute and the answer is lost; once the
//!   nonce is used: refuses "nonce already used" / answers twice (a stale duplicate of its earlier
//!   success) / pending, reverted or lost. Its success claims are honest (what `check_settled`
//!   checks). `/verify` reads the chain (nonce used → invalid) or is unavailable. A facilitator
//!   that executes and answers a duplicate's "nonce already used" is checked separately
//!   (`a_facilitator_that_executes_and_answers_nonce_used`).
//! - **Chain**: an authorization executes at most once (its nonce); the payer can burn the nonce
//!   (use it without paying) at any time; chain reads (`RPC_URL`) answer what the chain holds at
//!   that moment, or are unavailable.
//!
//! Not modelled: ledger storage errors (the Durable Object applies each op atomically; a crash
//! before or after a call covers "not applied" and "applied, then died"), `validBefore` passing
//! (it lies beyond the bounds: no pruning, no "unused and expired" refusal), forged copies and
//! other resources (`Mismatch`), passes, `/verify` of unchecked signatures
//! before the reservation, the settle-first "client gone before settling" release (the same ledger
//! op as an origin failure's release), transaction hashes shared by two authorizations.
//!
//! # Properties
//!
//! `always`, in every state: (a) content is served only when the chain shows our transfer; (a')
//! or, without `RPC_URL`, when the nonce is used and this ledger wrote a send mark for it (the
//! stated assumption); (b) two live requests never wait on `/settle` for one authorization (money
//! moving at most once is the chain's promise, modelled, not checked); (c) a request that found
//! the send mark never answers "nothing was charged", and (c') nobody answers it while our
//! transfer is on chain or a send of ours may still execute; (d) paid content is handed to a
//! client at most once and (d') the origin never runs again after it was; (e) our transfer on
//! chain always keeps its ledger record, sent or settled, so a retry can get the content.
//! `sometimes` properties show the interesting paths are reached (paid and served, settled again
//! and served, reconciled from the chain, redelivered, a burned nonce refused, a late retry
//! answered from the ledger, a crashed holder's lease taken over, ...).
//!
//! With `RPC_URL` every property holds; without it all but (a), whose counterexample is the
//! stated residual risk (a payer who burns the nonce while an outcome after the send mark is
//! unknown). The tests also break the protocol on purpose and show the checker catches it, and
//! pin what is known to break outside the assumptions (a facilitator answering "nonce used" for
//! its own execution without `RPC_URL`; a request slower than its lease), see the README, "What is
//! proven and what is assumed".
//!
//! `cargo test --test ledger_model -- --nocapture` prints the state counts, run times and
//! counterexamples.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use stateright::{Checker, Expectation, HasDiscoveries, Model, Property};
use x402_edge_paywall::ledger::{apply, Apply, Finish, Finished, Mark, Marked, MemoryStore, Outcome, Record, Reservation, Reserve, Settlement, Standing, Store};

/// The ledger clock's origin (Unix seconds).
const T0: u64 = 1_800_000_000;
/// Ticks the clock may advance.
const MAX_T: u64 = 4;
/// A request starting at this tick or later is late (`validBefore` within the minimum validity).
const LATE_AT: u64 = 3;
/// A request starting at this tick or later is too late to settle again (`validBefore` within the
/// facilitator's slack and time limit).
const TOO_LATE_AT: u64 = 4;
/// Seconds of a reservation's lease in the model.
const LEASE: u64 = 2;
/// Seconds a settle-first hold (and a reconciled settlement's) keeps the lease for the origin.
const HOLD: u64 = 2;
/// Concurrent copies of the payment header in the main runs.
const COPIES: usize = 3;

/// The record key (the ledger treats keys, holders and transaction hashes as opaque strings; short
/// ones keep the state cheap to hash and clone).
const KEY: &str = "auth";
const ROUTE: &str = "GET /paid";
const RESOURCE: &str = "/paid";
const SIGNATURE: &str = "sig";
/// `validBefore`: never reached within the bounds (no pruning).
const VALID_BEFORE: u64 = T0 + 10_000;
/// The transaction that moves the money (any of the facilitator's submissions that executes).
const PAY_TX: &str = "0xpaid";
/// A transaction the facilitator names that reverted (no transfer, nonce still unused).
const REVERTED_TX: &str = "0xreverted";

fn holder(i: usize) -> String {
    format!("h{i}")
}

/// Where the authorization's nonce stands on chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Nonce {
    Unused,
    /// Used by a transaction that paid this requirement (one of our settlements).
    Paid,
    /// Used by the payer without paying (`cancelAuthorization`, a zero-value transfer).
    Burned,
}

/// How a `/settle` request is answered (and what the facilitator did on chain).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Facilitator {
    /// Executes the transfer and answers success.
    ExecutedSuccess,
    /// Executes the transfer; the answer is lost (time-out, 5xx).
    ExecutedLost,
    /// Submits the transfer and answers "pending" naming it; it is mined later or never.
    Pending,
    /// Does not execute; answers a refusal other than "nonce used" (insufficient funds).
    RefusedOther,
    /// Answers `success: false` naming a reverted transaction (no transfer).
    Reverted,
    /// Does not execute; the answer is lost.
    NotExecutedLost,
    /// The nonce is already used: refuses "nonce already used".
    RefusedNonceUsed,
    /// Answers a stale duplicate of its earlier success (the transfer is on chain).
    StaleSuccess,
    /// Executes the transfer and the answer read is a duplicate processing's "nonce already used"
    /// (see `tests::a_facilitator_that_executes_and_answers_nonce_used`).
    ExecutedAnsweredNonceUsed,
}

/// A facilitator `/settle` answer as the gateway classifies it (`classify_settle`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum SettleReply {
    Success,
    Refused { nonce_used: bool },
    Unknown { transaction: Option<String> },
}

/// What `settle` decided (`Settled` in the gateway).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Decided {
    Paid { transaction: String },
    /// The facilitator refused a first send (`nonce_used`: "nonce already used").
    Refused { nonce_used: bool },
    UsedElsewhere,
    Unknown,
}

/// How a served response came to be paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Via {
    /// This request's own first settlement.
    First,
    /// A repeated settlement of an earlier send (`prior_sent`): paid by its answer or by
    /// "nonce already used" (the stated assumption without RPC) or by the chain.
    Resent,
    /// The chain showed the earlier send paid, before the origin ran (`reconcile_before_origin`).
    Reconciled,
    /// `Reservation::Redeliver`: a settled, undelivered payment served again.
    Redelivered,
}

/// The answers that say (or, as a fresh challenge, imply) that nothing was charged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum NothingCharged {
    /// `Reserve { create: false }` found no record: a fresh challenge.
    NotFound,
    /// Late, and this ledger never sent it: a fresh challenge.
    LateUnsent,
    /// `/verify` refused (the nonce is used): a fresh challenge.
    VerifyInvalid,
    /// `/verify` unavailable: "could not verify the payment; nothing was charged".
    VerifyUnavailable,
    /// `/settle` refused the first send: 402 with `success: false`.
    SettleRefused,
    /// The send mark was not acknowledged: "it was not sent and nothing was charged".
    NotSent,
}

/// How a request ended (its answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum End {
    /// The content with a success payment response; `connected`: a client received it.
    Served { via: Via, connected: bool },
    NothingCharged(NothingCharged),
    /// 402: the chain shows the nonce used by a transaction that did not pay.
    UsedElsewhere,
    /// 402: the facilitator refused a first send, the record kept ("if the refusal came after
    /// its transaction was broadcast, retrying this same payment header reconciles it").
    RefusedKept,
    /// 502/504 `settlement_outcome_unknown`: retry the same header.
    Unknown,
    /// 409 `payment_in_flight`.
    InFlight,
    /// 402: already settled and delivered.
    Spent,
    /// The origin failed before any settlement (its error passed through).
    OriginFailed,
    /// Settled, then the origin failed: retry for a redelivery.
    PaidOriginFailed,
    /// The client left before settlement (nobody reads the answer).
    ClientGone,
}

/// What happens after a `Finish` (the call site in the gateway).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Then {
    /// `finish(..)`, then this answer (a "nothing charged" one only if the finish was `Done`).
    Answer(End),
    /// `settle` in `settle_after`: then the answer for `decided`.
    SettleAfter(Decided),
    /// `settle` in `settle_before`: paid → the origin, else the answer.
    SettleBefore(Decided),
    /// The reconciled settlement in `priced`: `Done` → the origin, else unknown (502).
    Reconciled,
}

/// The outcome a request reports, in the model's hashable form (→ [`Outcome`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Fin {
    Release,
    Unsent,
    Refused,
    Unknown { transaction: Option<String>, refused: bool },
    /// `delivered: None`: the client's presence is chosen when the finish is written.
    Settled { transaction: String, delivered: Option<bool>, hold: u64 },
    Delivered { delivered: bool },
}

/// Why the chain is read.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Ask {
    /// `reconcile_before_origin`.
    Reconcile,
    /// `ask_chain` in `settle`: paid / used elsewhere decide, anything else is `otherwise`.
    AfterSettle { named: Option<String>, otherwise: Decided },
}

/// Where a request is: the step it takes next.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Phase {
    Idle,
    Verify,
    Evidence(Ask),
    /// Origin before settlement (`settle_after`).
    Origin,
    Mark,
    Send,
    /// `/settle` sent, waiting for the facilitator's answer.
    Await,
    Finish(Fin, Then),
    /// Origin of a settled payment (`deliver_settled`).
    Deliver(Via),
    Done(End),
    Crashed,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Actor {
    phase: Phase,
    /// Started late: too close to `validBefore` for a new payment (`create: false`).
    late: bool,
    /// Started too late to settle again (the facilitator's slack and time limit).
    too_late: bool,
    prior_sent: bool,
    prior_transaction: Option<String>,
    /// The record held a send mark (sent or settled) when this request reserved: what the store
    /// held, not what the ledger answered, so property (c) checks the ledger's answer.
    found_mark: bool,
    /// `/verify`-ed because its reservation lapsed (not because the verify policy asked).
    via_lapse: bool,
}

/// The ledger shard's content: records and standing ([`MemoryStore`] minus its derived indexes).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Shard {
    records: BTreeMap<String, Record>,
    standing: Standing,
}

impl Hash for Shard {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // Every field (the fingerprint is the state's identity in the checker): the exhaustive
        // patterns stop compiling when a field is added.
        self.records.len().hash(h);
        for (key, r) in &self.records {
            let Record { route, resource, signature, valid_before, settlement, delivered, lease_until, holder, amount, marked_by } = r;
            (key, route, resource, signature, valid_before, delivered, lease_until, holder, amount, marked_by).hash(h);
            match settlement {
                Settlement::Pending => 0u8.hash(h),
                Settlement::Sent { transaction } => (1u8, transaction).hash(h),
                Settlement::Settled { transaction, network, at } => (2u8, transaction, network, at).hash(h),
            }
        }
        let Standing { last_settled_at, last_refused_at, denied } = self.standing;
        (last_settled_at, last_refused_at, denied).hash(h);
    }
}

/// Properties violated when an answer was given (set at that moment, checked in every state).
mod bad {
    /// Served while the chain did not show our transfer.
    pub const SERVED_WITHOUT_CHAIN_PAYMENT: u16 = 1;
    /// Served without our transfer on chain and without the stated no-RPC assumption.
    pub const SERVED_WITHOUT_EVIDENCE: u16 = 2;
    /// "Nothing charged" said by a request that found the authorization sent before.
    pub const NOTHING_CHARGED_AFTER_MARK: u16 = 4;
    /// "Nothing charged" said while our transfer is on chain or one of our sends may execute.
    pub const NOTHING_CHARGED_BUT_CHARGED: u16 = 8;
    /// The origin ran after paid content had been handed to a client.
    pub const ORIGIN_AFTER_SERVED: u16 = 16;
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    /// Ticks since [`T0`].
    now: u64,
    shard: Shard,
    nonce: Nonce,
    /// A "pending" transfer the facilitator submitted, not mined yet.
    mempool: bool,
    /// A send mark was written for this authorization at some point.
    marked_ever: bool,
    /// The request whose send mark first made the record "sent".
    first_marker: Option<usize>,
    /// The first marker's mark was applied but its acknowledgement lost: that request knows it
    /// sent nothing.
    first_mark_unacknowledged: bool,
    /// ... and it told the ledger so (its `Finish` was applied): ground truth for the stated
    /// assumption, under which that mark is no earlier send. (Had it died first, the ledger could
    /// not tell its mark from one whose holder died after sending: the stated residual risk.)
    first_mark_disowned: bool,
    /// A send mark whose acknowledgement was lost was taken back (`Outcome::Unsent`).
    mark_taken_back: bool,
    /// A `/settle` executed (or was submitted) for a request that had crashed by then.
    executed_after_crash: bool,
    /// The payer burned the nonce after a send mark was written.
    burned_after_mark: bool,
    /// `/settle` requests the facilitator has not processed yet, per request.
    settle_requests: Vec<bool>,
    actors: Vec<Actor>,
    /// Paid content handed to a connected client.
    served: u8,
    bad: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    After,
    Before,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Clock {
    /// A live holder's lease does not run out (time cannot pass its end).
    Timely,
    /// Time passes regardless of holders.
    Free,
    /// A live holder may outlast its reservation lease before its send mark (a `/verify`
    /// failover chain, chain evidence before the origin, a slow origin), but not the lease its
    /// mark renewed, which covers every bounded call of the settlement
    /// (`settlement_lease_seconds`), nor a settle-first hold.
    SlowBeforeMark,
}

/// A deliberately broken protocol, to show the checker finds what it should.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Broken {
    /// The gateway sends `/settle` without writing the send mark first.
    SkipMark,
    /// The ledger as it was before the send mark: a lapsed reservation, sent or not, comes back
    /// as `prior_sent` (the model rewrites the real ledger's `Reserved` reply).
    LapsedReadsAsSent,
    /// A ledger that forgets its send marks: a sent authorization comes back as a lapsed fresh
    /// reservation (`prior_sent: false`).
    SentReadsAsFresh,
    /// The gateway as it was before `Outcome::Unsent`: a request whose send mark was applied but
    /// not acknowledged releases it, and the mark stays as if it had been sent.
    KeepsUnacknowledgedMark,
}

/// The model's configuration.
#[derive(Clone, Copy, Debug)]
struct LedgerModel {
    copies: usize,
    rpc: bool,
    settle: Order,
    clock: Clock,
    /// The facilitator may execute and answer a duplicate's "nonce already used".
    double_answer: bool,
    broken: Option<Broken>,
    /// A state that breaks this property ends its path (for a short counterexample; none when
    /// every property is checked, so that one expected failure hides nothing behind it).
    stop_at: Option<&'static str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OriginResult {
    Ok,
    Failed,
    /// Answered, but the client has gone.
    OkClientGone,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    /// Request `i` reserves; `policy_verify`: the verify policy asks for `/verify` of a fresh one.
    Reserve { i: usize, policy_verify: bool },
    Verify { i: usize, available: bool },
    Evidence { i: usize, available: bool },
    Origin { i: usize, result: OriginResult },
    /// `lost`: the mark is applied and its acknowledgement lost (the gateway sees an error).
    Mark { i: usize, lost: bool },
    Send { i: usize },
    /// The facilitator processes request `i`'s `/settle`.
    Facilitator { i: usize, does: Facilitator },
    /// Request `i` writes its `Finish`; `connected`: the client is still there (where it matters).
    Finish { i: usize, connected: bool },
    Crash { i: usize },
    /// The pending transfer is mined (it executes if the nonce is still unused, else reverts).
    Mine,
    /// The payer uses the nonce on chain without paying.
    Burn,
    Tick,
}

/// Evidence from the chain (`evidence::Evidence`).
enum Evidence {
    Paid,
    UsedElsewhere,
    NotUsed,
    Unavailable,
}

impl LedgerModel {
    fn new(rpc: bool, settle: Order) -> Self {
        LedgerModel { copies: COPIES, rpc, settle, clock: Clock::Timely, double_answer: false, broken: None, stop_at: None }
    }

    /// One ledger call: the real `apply` over a store rebuilt from the model's shard.
    fn ledger<O: Apply>(&self, s: &mut State, op: O) -> O::Output {
        let mut store = MemoryStore::default();
        for (k, r) in &s.shard.records {
            store.put(k, r).expect("memory store");
        }
        store.set_standing(&s.shard.standing).expect("memory store");
        let reply = apply(&mut store, op, T0 + s.now).expect("a memory store never fails");
        s.shard.records = std::mem::take(&mut store.records);
        s.shard.standing = store.standing;
        if s.shard.records.values().any(|r| matches!(r.settlement, Settlement::Sent { .. } | Settlement::Settled { .. })) {
            s.marked_ever = true;
        }
        reply
    }

    /// A reservation through [`Self::ledger`].
    fn reserve(&self, s: &mut State, op: Reserve) -> Reservation {
        match self.ledger(s, op) {
            Reservation::Reserved { prior_sent: false, lapsed: true, prior_transaction, standing, others_in_flight, prior_amount } if self.broken == Some(Broken::LapsedReadsAsSent) => {
                Reservation::Reserved { prior_sent: true, lapsed: false, prior_transaction, standing, others_in_flight, prior_amount }
            }
            Reservation::Reserved { prior_sent: true, prior_transaction, standing, others_in_flight, prior_amount, .. } if self.broken == Some(Broken::SentReadsAsFresh) => {
                Reservation::Reserved { prior_sent: false, lapsed: true, prior_transaction, standing, others_in_flight, prior_amount }
            }
            reply => reply,
        }
    }

    fn record(s: &State) -> Option<&Record> {
        s.shard.records.get(KEY)
    }

    fn evidence(s: &State, available: bool) -> Evidence {
        match (available, s.nonce) {
            (false, _) => Evidence::Unavailable,
            (true, Nonce::Paid) => Evidence::Paid,
            (true, Nonce::Burned) => Evidence::UsedElsewhere,
            (true, Nonce::Unused) => Evidence::NotUsed,
        }
    }

    /// Records request `i`'s answer, and what it violates.
    fn answer(&self, s: &mut State, i: usize, end: End) {
        match end {
            End::Served { connected, .. } => {
                if s.nonce != Nonce::Paid {
                    s.bad |= bad::SERVED_WITHOUT_CHAIN_PAYMENT;
                }
                // The stated assumption without RPC_URL: "nonce used" for an authorization this
                // ledger marked as sent *before* (another request's send mark) is its own earlier
                // send. A request that marks and sends for the first time itself earns nothing.
                // A mark whose request knows it sent nothing (its acknowledgement was lost) is no
                // earlier send.
                let assumed = !self.rpc && s.nonce == Nonce::Burned && s.first_marker.is_some_and(|m| m != i) && !s.first_mark_disowned;
                if s.nonce != Nonce::Paid && !assumed {
                    s.bad |= bad::SERVED_WITHOUT_EVIDENCE;
                }
                if connected {
                    s.served += 1;
                }
            }
            End::NothingCharged(_) => {
                if s.actors[i].found_mark {
                    s.bad |= bad::NOTHING_CHARGED_AFTER_MARK;
                }
                let may_execute = s.nonce == Nonce::Unused && (s.mempool || s.settle_requests.iter().any(|r| *r));
                if s.nonce == Nonce::Paid || may_execute {
                    s.bad |= bad::NOTHING_CHARGED_BUT_CHARGED;
                }
            }
            _ => {}
        }
        s.actors[i].phase = Phase::Done(end);
    }

    /// The settlement order a request follows: a repeated send (`prior_sent`) always settles
    /// before the origin runs (`priced`).
    fn order(&self, a: &Actor) -> Order {
        if a.prior_sent {
            Order::Before
        } else {
            self.settle
        }
    }

    /// After reservation, verification or reconciliation: on to the settlement order.
    fn proceed(&self, a: &Actor) -> Phase {
        match self.order(a) {
            Order::After => Phase::Origin,
            Order::Before => self.settle_step(a),
        }
    }

    /// `settle`: the send mark first unless this ledger sent it before.
    fn settle_step(&self, a: &Actor) -> Phase {
        if self.broken == Some(Broken::SkipMark) && !a.prior_sent {
            Phase::Send
        } else {
            // The gateway marks before every send, a repeated one too: the mark proves the
            // holder still holds the authorization and renews its lease for the settlement.
            Phase::Mark
        }
    }

    /// `settle`: what the facilitator's answer decides (maybe after asking the chain).
    fn decide(&self, a: &Actor, reply: SettleReply) -> Phase {
        let ask = |named: Option<String>, otherwise: Decided| Phase::Evidence(Ask::AfterSettle { named, otherwise });
        match reply {
            SettleReply::Success => self.settled(a, Decided::Paid { transaction: PAY_TX.into() }, None),
            SettleReply::Refused { nonce_used: true } if a.prior_sent => {
                if self.rpc {
                    ask(None, Decided::Unknown)
                } else {
                    self.settled(a, Decided::Paid { transaction: a.prior_transaction.clone().unwrap_or_default() }, None)
                }
            }
            SettleReply::Refused { .. } if a.prior_sent => {
                if self.rpc {
                    ask(None, Decided::Unknown)
                } else {
                    self.settled(a, Decided::Unknown, None)
                }
            }
            // A first send refused: the chain decides where it can be asked.
            SettleReply::Refused { nonce_used } => {
                if self.rpc {
                    ask(None, Decided::Refused { nonce_used })
                } else {
                    self.settled(a, Decided::Refused { nonce_used }, None)
                }
            }
            SettleReply::Unknown { transaction } => {
                if self.rpc {
                    ask(transaction, Decided::Unknown)
                } else {
                    self.settled(a, Decided::Unknown, transaction)
                }
            }
        }
    }

    /// A first send's refusal forgets the record only for "nonce already used" without
    /// `RPC_URL` (nothing of ours can have moved); any other is kept as sent (`settle`).
    fn refusal_forgets(&self, nonce_used: bool) -> bool {
        nonce_used && !self.rpc
    }

    /// `settle`: the `Finish` that records the decision.
    fn settled(&self, a: &Actor, decided: Decided, named: Option<String>) -> Phase {
        let order = self.order(a);
        let fin = match &decided {
            Decided::Paid { transaction } => match order {
                Order::After => Fin::Settled { transaction: transaction.clone(), delivered: None, hold: 0 },
                Order::Before => Fin::Settled { transaction: transaction.clone(), delivered: Some(false), hold: HOLD },
            },
            Decided::Refused { nonce_used } if self.refusal_forgets(*nonce_used) => Fin::Refused,
            Decided::Refused { .. } => Fin::Unknown { transaction: None, refused: true },
            Decided::UsedElsewhere => Fin::Refused,
            Decided::Unknown => Fin::Unknown { transaction: named, refused: false },
        };
        let then = match order {
            Order::After => Then::SettleAfter(decided),
            Order::Before => Then::SettleBefore(decided),
        };
        Phase::Finish(fin, then)
    }

    fn unsettled(&self, decided: &Decided) -> End {
        match decided {
            Decided::Paid { .. } => unreachable!("paid is served"),
            Decided::Refused { nonce_used } if self.refusal_forgets(*nonce_used) => End::NothingCharged(NothingCharged::SettleRefused),
            Decided::Refused { .. } => End::RefusedKept,
            Decided::UsedElsewhere => End::UsedElsewhere,
            Decided::Unknown => End::Unknown,
        }
    }

    /// Request `i` takes the step `action` names (the gateway's code path).
    fn step(&self, s: &mut State, action: &Action) {
        match *action {
            Action::Reserve { i, policy_verify } => {
                let late = s.now >= LATE_AT;
                let too_late = s.now >= TOO_LATE_AT;
                let op = Reserve {
                    key: KEY.into(),
                    holder: holder(i),
                    route: ROUTE.into(),
                    resource: RESOURCE.into(),
                    signature: SIGNATURE.into(),
                    valid_before: VALID_BEFORE,
                    lease_seconds: LEASE,
                    create: !late,
                };
                s.actors[i].late = late;
                s.actors[i].too_late = too_late;
                s.actors[i].found_mark = Self::record(s).is_some_and(|r| !matches!(r.settlement, Settlement::Pending));
                match self.reserve(s, op) {
                    Reservation::Reserved { prior_sent, prior_transaction, lapsed, .. } => {
                        let a = &mut s.actors[i];
                        a.prior_sent = prior_sent;
                        a.prior_transaction = prior_transaction;
                        a.via_lapse = !late && !prior_sent && lapsed && !policy_verify;
                        let a = a.clone();
                        s.actors[i].phase = if late && !prior_sent {
                            Phase::Finish(Fin::Release, Then::Answer(End::NothingCharged(NothingCharged::LateUnsent)))
                        } else if !prior_sent && (lapsed || policy_verify) {
                            Phase::Verify
                        } else if prior_sent {
                            match (self.rpc, too_late) {
                                (true, _) => Phase::Evidence(Ask::Reconcile),
                                (false, true) => Phase::Finish(Fin::Release, Then::Answer(End::Unknown)),
                                (false, false) => self.proceed(&a),
                            }
                        } else {
                            self.proceed(&a)
                        };
                    }
                    Reservation::InFlight => self.answer(s, i, End::InFlight),
                    Reservation::Spent { .. } => self.answer(s, i, End::Spent),
                    Reservation::NotFound => self.answer(s, i, End::NothingCharged(NothingCharged::NotFound)),
                    Reservation::Redeliver { .. } => s.actors[i].phase = Phase::Deliver(Via::Redelivered),
                    other => panic!("unexpected reservation reply {other:?}"),
                }
            }
            Action::Verify { i, available } => {
                s.actors[i].phase = if !available {
                    Phase::Finish(Fin::Release, Then::Answer(End::NothingCharged(NothingCharged::VerifyUnavailable)))
                } else if s.nonce != Nonce::Unused {
                    Phase::Finish(Fin::Refused, Then::Answer(End::NothingCharged(NothingCharged::VerifyInvalid)))
                } else {
                    self.proceed(&s.actors[i])
                };
            }
            Action::Evidence { i, available } => {
                let a = s.actors[i].clone();
                let Phase::Evidence(ask) = &a.phase else { unreachable!() };
                let evidence = Self::evidence(s, available);
                s.actors[i].phase = match ask {
                    Ask::Reconcile => match evidence {
                        Evidence::Paid => Phase::Finish(Fin::Settled { transaction: PAY_TX.into(), delivered: Some(false), hold: HOLD }, Then::Reconciled),
                        Evidence::UsedElsewhere => Phase::Finish(Fin::Refused, Then::Answer(End::UsedElsewhere)),
                        Evidence::NotUsed if !a.too_late => self.proceed(&a),
                        Evidence::NotUsed | Evidence::Unavailable => Phase::Finish(Fin::Release, Then::Answer(End::Unknown)),
                    },
                    Ask::AfterSettle { named, otherwise } => match evidence {
                        Evidence::Paid => self.settled(&a, Decided::Paid { transaction: PAY_TX.into() }, named.clone()),
                        Evidence::UsedElsewhere => self.settled(&a, Decided::UsedElsewhere, named.clone()),
                        Evidence::NotUsed | Evidence::Unavailable => self.settled(&a, otherwise.clone(), named.clone()),
                    },
                };
            }
            Action::Origin { i, result } => {
                if s.served > 0 {
                    s.bad |= bad::ORIGIN_AFTER_SERVED;
                }
                let a = s.actors[i].clone();
                match (&a.phase, result) {
                    (Phase::Origin, OriginResult::Ok) => s.actors[i].phase = self.settle_step(&a),
                    (Phase::Origin, OriginResult::Failed) => s.actors[i].phase = Phase::Finish(Fin::Release, Then::Answer(End::OriginFailed)),
                    (Phase::Origin, OriginResult::OkClientGone) => s.actors[i].phase = Phase::Finish(Fin::Release, Then::Answer(End::ClientGone)),
                    (Phase::Deliver(via), r) => {
                        let via = *via;
                        let (delivered, end) = match r {
                            OriginResult::Ok => (true, End::Served { via, connected: true }),
                            OriginResult::OkClientGone => (false, End::Served { via, connected: false }),
                            OriginResult::Failed => (false, End::PaidOriginFailed),
                        };
                        s.actors[i].phase = Phase::Finish(Fin::Delivered { delivered }, Then::Answer(end));
                    }
                    _ => unreachable!(),
                }
            }
            Action::Mark { i, lost } => {
                let was_sent = Self::record(s).is_some_and(|r| matches!(r.settlement, Settlement::Sent { .. }));
                let reply = self.ledger(s, Mark { key: KEY.into(), holder: holder(i), lease_seconds: LEASE, amount: None });
                if reply == Marked::Done && !was_sent && s.first_marker.is_none() {
                    s.first_marker = Some(i);
                    s.first_mark_unacknowledged = lost;
                }
                let prior_sent = s.actors[i].prior_sent;
                // The gateway on a mark it cannot confirm: "not sent" to the ledger (the old
                // gateway: a release, which keeps the mark).
                let fin = if self.broken == Some(Broken::KeepsUnacknowledgedMark) { Fin::Release } else { Fin::Unsent };
                s.actors[i].phase = match reply {
                    Marked::Done if lost && prior_sent => Phase::Finish(fin, Then::Answer(End::Unknown)),
                    Marked::Done if lost => Phase::Finish(fin, Then::Answer(End::NothingCharged(NothingCharged::NotSent))),
                    Marked::Done => Phase::Send,
                    _ if prior_sent => Phase::Finish(Fin::Release, Then::Answer(End::Unknown)),
                    _ => Phase::Finish(Fin::Release, Then::Answer(End::NothingCharged(NothingCharged::NotSent))),
                };
            }
            Action::Send { i } => {
                s.settle_requests[i] = true;
                s.actors[i].phase = Phase::Await;
            }
            Action::Facilitator { i, does } => {
                s.settle_requests[i] = false;
                let executes = matches!(does, Facilitator::ExecutedSuccess | Facilitator::ExecutedLost | Facilitator::ExecutedAnsweredNonceUsed | Facilitator::Pending);
                if executes && s.actors[i].phase == Phase::Crashed {
                    s.executed_after_crash = true;
                }
                let reply = match does {
                    Facilitator::ExecutedSuccess => {
                        s.nonce = Nonce::Paid;
                        SettleReply::Success
                    }
                    Facilitator::ExecutedLost => {
                        s.nonce = Nonce::Paid;
                        SettleReply::Unknown { transaction: None }
                    }
                    Facilitator::ExecutedAnsweredNonceUsed => {
                        s.nonce = Nonce::Paid;
                        SettleReply::Refused { nonce_used: true }
                    }
                    Facilitator::Pending => {
                        s.mempool = true;
                        SettleReply::Unknown { transaction: Some(PAY_TX.into()) }
                    }
                    Facilitator::RefusedOther => SettleReply::Refused { nonce_used: false },
                    Facilitator::Reverted => SettleReply::Unknown { transaction: Some(REVERTED_TX.into()) },
                    Facilitator::NotExecutedLost => SettleReply::Unknown { transaction: None },
                    Facilitator::RefusedNonceUsed => SettleReply::Refused { nonce_used: true },
                    Facilitator::StaleSuccess => SettleReply::Success,
                };
                if s.actors[i].phase == Phase::Await {
                    s.actors[i].phase = self.decide(&s.actors[i], reply);
                }
            }
            Action::Finish { i, connected } => {
                let Phase::Finish(fin, then) = s.actors[i].phase.clone() else { unreachable!() };
                let fin_unsent = fin == Fin::Unsent;
                let outcome = match fin {
                    Fin::Release => Outcome::Release,
                    Fin::Unsent => Outcome::Unsent,
                    Fin::Refused => Outcome::Refused,
                    Fin::Unknown { transaction, refused } => Outcome::Unknown { transaction, refused },
                    Fin::Settled { transaction, delivered, hold } => Outcome::Settled {
                        transaction,
                        network: "eip155:84532".into(),
                        delivered: delivered.unwrap_or(connected),
                        hold_seconds: hold,
                        pass: None,
                    },
                    Fin::Delivered { delivered } => Outcome::Delivered { delivered, pass: None },
                };
                let was_sent = Self::record(s).is_some_and(|r| matches!(r.settlement, Settlement::Sent { .. }));
                let reply = self.ledger(s, Finish { key: KEY.into(), holder: holder(i), outcome });
                if fin_unsent && was_sent && Self::record(s).is_none() {
                    s.mark_taken_back = true;
                }
                if s.first_marker == Some(i) && s.first_mark_unacknowledged && reply == Finished::Done {
                    s.first_mark_disowned = true;
                }
                if Self::record(s).is_none() {
                    // Forgotten: no send mark of this ledger's stands for the authorization now.
                    s.first_marker = None;
                    s.first_mark_unacknowledged = false;
                    s.first_mark_disowned = false;
                }
                let via = if s.actors[i].prior_sent { Via::Resent } else { Via::First };
                let before = matches!(then, Then::SettleBefore(_));
                match then {
                    // "Nothing was charged" only from a request that still held the authorization
                    // when it let go; one whose lease another copy took answers 409.
                    Then::Answer(End::NothingCharged(NothingCharged::NotSent)) if reply != Finished::Done => self.answer(s, i, End::Unknown),
                    Then::Answer(End::NothingCharged(_)) if reply != Finished::Done => self.answer(s, i, End::InFlight),
                    Then::Answer(end) => self.answer(s, i, end),
                    Then::SettleAfter(decided) | Then::SettleBefore(decided) => {
                        // `Finished::DuplicateTransaction` (a fault) is unknown; any other reply keeps
                        // the decision (the lease runs out, a retry reconciles).
                        let decided = if reply == Finished::DuplicateTransaction { Decided::Unknown } else { decided };
                        match decided {
                            Decided::Paid { .. } if before => s.actors[i].phase = Phase::Deliver(via),
                            Decided::Paid { .. } => self.answer(s, i, End::Served { via, connected }),
                            other => {
                                let end = self.unsettled(&other);
                                self.answer(s, i, end)
                            }
                        }
                    }
                    // Paid on chain but not recorded: 502 `settlement_outcome_unknown`.
                    Then::Reconciled => match reply {
                        Finished::Done => s.actors[i].phase = Phase::Deliver(Via::Reconciled),
                        _ => self.answer(s, i, End::Unknown),
                    },
                }
            }
            Action::Crash { i } => s.actors[i].phase = Phase::Crashed,
            Action::Mine => {
                s.mempool = false;
                if s.nonce == Nonce::Unused {
                    s.nonce = Nonce::Paid;
                }
            }
            Action::Burn => {
                s.burned_after_mark |= s.marked_ever;
                s.nonce = Nonce::Burned;
            }
            Action::Tick => s.now += 1,
        }
    }

    /// Whether a live request holds the lease and the next tick would end it.
    fn tick_ends_a_live_lease(s: &State) -> bool {
        let Some(r) = Self::record(s) else { return false };
        s.actors.iter().enumerate().any(|(i, a)| {
            let live = !matches!(a.phase, Phase::Idle | Phase::Done(_) | Phase::Crashed);
            live && r.holder == holder(i) && r.lease_until > T0 + s.now && r.lease_until <= T0 + s.now + 1
        })
    }

    /// [`Clock::SlowBeforeMark`]: whether a tick would end the lease of a live holder that is past
    /// its send mark (or in a settle-first hold).
    fn tick_ends_a_marked_lease(s: &State) -> bool {
        let Some(r) = Self::record(s) else { return false };
        s.actors.iter().enumerate().any(|(i, a)| {
            let before_mark = matches!(a.phase, Phase::Idle | Phase::Done(_) | Phase::Crashed | Phase::Verify | Phase::Origin | Phase::Mark | Phase::Evidence(Ask::Reconcile));
            !before_mark && r.holder == holder(i) && r.lease_until > T0 + s.now && r.lease_until <= T0 + s.now + 1
        })
    }
}

impl Model for LedgerModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let idle = Actor { phase: Phase::Idle, late: false, too_late: false, prior_sent: false, prior_transaction: None, found_mark: false, via_lapse: false };
        vec![State {
            now: 0,
            shard: Shard { records: BTreeMap::new(), standing: Standing::default() },
            nonce: Nonce::Unused,
            mempool: false,
            marked_ever: false,
            first_marker: None,
            first_mark_unacknowledged: false,
            first_mark_disowned: false,
            mark_taken_back: false,
            executed_after_crash: false,
            burned_after_mark: false,
            settle_requests: vec![false; self.copies],
            actors: vec![idle; self.copies],
            served: 0,
            bad: 0,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        // A state that breaks a property ends its path: a counterexample stops where it fails.
        if self.stop_at.is_some() && self.properties().iter().any(|p| Some(p.name) == self.stop_at && !(p.condition)(self, s)) {
            return;
        }
        for (i, a) in s.actors.iter().enumerate() {
            match &a.phase {
                Phase::Idle => {
                    actions.push(Action::Reserve { i, policy_verify: false });
                    actions.push(Action::Reserve { i, policy_verify: true });
                }
                Phase::Verify => {
                    actions.push(Action::Verify { i, available: true });
                    actions.push(Action::Verify { i, available: false });
                }
                Phase::Evidence(_) => {
                    actions.push(Action::Evidence { i, available: true });
                    actions.push(Action::Evidence { i, available: false });
                }
                Phase::Origin => {
                    for result in [OriginResult::Ok, OriginResult::Failed, OriginResult::OkClientGone] {
                        actions.push(Action::Origin { i, result });
                    }
                }
                Phase::Deliver(_) => {
                    for result in [OriginResult::Ok, OriginResult::Failed, OriginResult::OkClientGone] {
                        actions.push(Action::Origin { i, result });
                    }
                }
                Phase::Mark => {
                    actions.push(Action::Mark { i, lost: false });
                    actions.push(Action::Mark { i, lost: true });
                }
                Phase::Send => actions.push(Action::Send { i }),
                Phase::Await => {}
                Phase::Finish(fin, then) => {
                    actions.push(Action::Finish { i, connected: true });
                    // Whether the client is still there matters only where the settlement itself
                    // records delivery (`settle_after`).
                    if matches!((fin, then), (Fin::Settled { delivered: None, .. }, Then::SettleAfter(_))) {
                        actions.push(Action::Finish { i, connected: false });
                    }
                }
                Phase::Done(_) | Phase::Crashed => {}
            }
            if !matches!(a.phase, Phase::Idle | Phase::Done(_) | Phase::Crashed) {
                actions.push(Action::Crash { i });
            }
            if s.settle_requests[i] {
                let does: &[Facilitator] = match s.nonce {
                    Nonce::Unused => &[
                        Facilitator::ExecutedSuccess,
                        Facilitator::ExecutedLost,
                        Facilitator::Pending,
                        Facilitator::RefusedOther,
                        Facilitator::Reverted,
                        Facilitator::NotExecutedLost,
                        Facilitator::ExecutedAnsweredNonceUsed,
                    ],
                    Nonce::Paid => &[
                        Facilitator::RefusedNonceUsed,
                        Facilitator::StaleSuccess,
                        Facilitator::RefusedOther,
                        Facilitator::Reverted,
                        Facilitator::Pending,
                        Facilitator::NotExecutedLost,
                    ],
                    Nonce::Burned => &[Facilitator::RefusedNonceUsed, Facilitator::RefusedOther, Facilitator::Reverted, Facilitator::Pending, Facilitator::NotExecutedLost],
                };
                for &does in does {
                    if does == Facilitator::ExecutedAnsweredNonceUsed && !self.double_answer {
                        continue;
                    }
                    actions.push(Action::Facilitator { i, does });
                }
            }
        }
        if s.mempool {
            actions.push(Action::Mine);
        }
        if s.nonce == Nonce::Unused {
            actions.push(Action::Burn);
        }
        let tick_allowed = match self.clock {
            Clock::Free => true,
            Clock::Timely => !Self::tick_ends_a_live_lease(s),
            Clock::SlowBeforeMark => !Self::tick_ends_a_marked_lease(s),
        };
        if s.now < MAX_T && tick_allowed {
            actions.push(Action::Tick);
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        self.step(&mut s, &action);
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut p = vec![
            // (a) Content only for a payment the facilitator's checked success or the chain
            // confirms. Without RPC_URL the checker finds the stated residual risk here.
            Property::always(A_STRICT, |_: &LedgerModel, s: &State| s.bad & bad::SERVED_WITHOUT_CHAIN_PAYMENT == 0),
            // (a) as the README states it: or, without RPC_URL, the nonce is used on chain and this
            // ledger wrote a send mark for the authorization (its own earlier send, assumed).
            Property::always(A_STATED, |_: &LedgerModel, s: &State| s.bad & bad::SERVED_WITHOUT_EVIDENCE == 0),
            // (b) Money moves at most once: the chain's promise (the model's nonce), not checked.
            // The lease's: two live requests never wait on /settle for one authorization.
            Property::always(B_ONE_SEND, |_: &LedgerModel, s: &State| s.actors.iter().filter(|a| a.phase == Phase::Await).count() <= 1),
            // (c) "Nothing was charged" is never said by a request that found the authorization
            // sent before, nor while our transfer is on chain or one of our sends may execute.
            Property::always(C_AFTER_MARK, |_: &LedgerModel, s: &State| s.bad & bad::NOTHING_CHARGED_AFTER_MARK == 0),
            Property::always(C_WHILE_CHARGED, |_: &LedgerModel, s: &State| s.bad & bad::NOTHING_CHARGED_BUT_CHARGED == 0),
            // (d) Paid content is handed to a client at most once, and the origin never runs for
            // the authorization after that: it runs again only for an attempt whose response was
            // not handed over as paid (origin failed, client gone, outcome unknown, undelivered).
            Property::always(D_SERVED_ONCE, |_: &LedgerModel, s: &State| s.served <= 1),
            Property::always(D_NO_ORIGIN_AFTER, |_: &LedgerModel, s: &State| s.bad & bad::ORIGIN_AFTER_SERVED == 0),
            // (e) Charged ⇒ still deliverable: our transfer on chain always has its record (sent or
            // settled), so a retry can get the content (pruning is beyond the bounds).
            Property::always(E_RECORD_KEPT, |_: &LedgerModel, s: &State| {
                s.nonce != Nonce::Paid || LedgerModel::record(s).is_some_and(|r| !matches!(r.settlement, Settlement::Pending))
            }),
            // Not vacuous: the interesting paths are reached.
            Property::sometimes("paid and served", |_: &LedgerModel, s: &State| s.actors.iter().any(|a| matches!(a.phase, Phase::Done(End::Served { via: Via::First, connected: true })))),
            Property::sometimes("an unknown outcome settled again and served", |_: &LedgerModel, s: &State| {
                s.actors.iter().any(|a| a.phase == Phase::Done(End::Unknown)) && s.actors.iter().any(|a| matches!(a.phase, Phase::Done(End::Served { via: Via::Resent, .. })))
            }),
            Property::sometimes("a send mark whose acknowledgement was lost taken back, then paid afresh and served", |_: &LedgerModel, s: &State| {
                s.mark_taken_back && s.actors.iter().any(|a| matches!(a.phase, Phase::Done(End::Served { via: Via::First, .. })))
            }),
            Property::sometimes("redelivered", |_: &LedgerModel, s: &State| s.actors.iter().any(|a| matches!(a.phase, Phase::Done(End::Served { via: Via::Redelivered, connected: true })))),
            Property::sometimes("a burned nonce refused after a lapsed hold", |_: &LedgerModel, s: &State| {
                s.nonce == Nonce::Burned && s.actors.iter().any(|a| a.via_lapse && a.phase == Phase::Done(End::NothingCharged(NothingCharged::VerifyInvalid)))
            }),
            Property::sometimes("a late retry answered unknown from the ledger", |_: &LedgerModel, s: &State| s.actors.iter().any(|a| a.late && a.phase == Phase::Done(End::Unknown))),
            Property::sometimes("a late retry settled again and served", |_: &LedgerModel, s: &State| {
                s.actors.iter().any(|a| a.late && !a.too_late && matches!(a.phase, Phase::Done(End::Served { via: Via::Resent, .. })))
            }),
            Property::sometimes("a refused first send kept for a retry to reconcile", |_: &LedgerModel, s: &State| {
                s.actors.iter().any(|a| a.phase == Phase::Done(End::RefusedKept)) && LedgerModel::record(s).is_some_and(|r| matches!(r.settlement, Settlement::Sent { .. }))
            }),
            Property::sometimes("a late retry redelivered", |_: &LedgerModel, s: &State| s.actors.iter().any(|a| a.late && matches!(a.phase, Phase::Done(End::Served { via: Via::Redelivered, .. })))),
            Property::sometimes("a copy refused while another holds it", |_: &LedgerModel, s: &State| s.actors.iter().any(|a| a.phase == Phase::Done(End::InFlight))),
            Property::sometimes("a crashed holder's lease taken over", |_: &LedgerModel, s: &State| {
                s.actors.iter().any(|a| a.phase == Phase::Crashed) && LedgerModel::record(s).is_some_and(|r| r.lease_until > T0 + s.now && s.actors.iter().enumerate().any(|(i, a)| a.phase != Phase::Crashed && r.holder == holder(i)))
            }),
            Property::sometimes("a sent authorization whose /settle executes after its sender died", |_: &LedgerModel, s: &State| {
                s.nonce == Nonce::Paid && s.executed_after_crash && s.actors.iter().any(|a| matches!(a.phase, Phase::Done(End::Served { via: Via::Resent | Via::Reconciled, .. })))
            }),
        ];
        if self.rpc && self.broken.is_none() {
            p.push(Property::sometimes("reconciled from the chain before the origin and served", |_: &LedgerModel, s: &State| {
                s.actors.iter().any(|a| matches!(a.phase, Phase::Done(End::Served { via: Via::Reconciled, connected: true })))
            }));
            p.push(Property::sometimes("a nonce burned after the send mark refused from the chain", |_: &LedgerModel, s: &State| {
                s.burned_after_mark && s.actors.iter().any(|a| a.prior_sent && a.phase == Phase::Done(End::UsedElsewhere))
            }));
        }
        p
    }
}

const A_STRICT: &str = "(a) served only if the chain shows our transfer";
const A_STATED: &str = "(a') served only with that evidence or, without RPC_URL, the nonce used after our send mark";
const B_ONE_SEND: &str = "(b) two live requests never wait on /settle at once";
const C_AFTER_MARK: &str = "(c) no \"nothing charged\" from a request that found the send mark";
const C_WHILE_CHARGED: &str = "(c') no \"nothing charged\" while our transfer is on chain or may still execute";
const D_SERVED_ONCE: &str = "(d) paid content handed over at most once";
const D_NO_ORIGIN_AFTER: &str = "(d') the origin never runs after paid content was handed over";
const E_RECORD_KEPT: &str = "(e) our transfer on chain keeps its ledger record";

/// The path of a discovery, one line per step, with what the step changed.
fn explain(path: stateright::Path<State, Action>) -> String {
    let steps = path.into_vec();
    let mut out = String::new();
    for (n, (state, action)) in steps.iter().enumerate() {
        let Some(action) = action else { continue };
        let Some((next, _)) = steps.get(n + 1) else { continue };
        let record = match LedgerModel::record(next) {
            None => "no record".to_string(),
            Some(r) => format!("record {:?} delivered={} lease_until=T0+{} holder={}", r.settlement, r.delivered, r.lease_until.saturating_sub(T0), r.holder),
        };
        let who = match action {
            Action::Reserve { i, .. }
            | Action::Verify { i, .. }
            | Action::Evidence { i, .. }
            | Action::Origin { i, .. }
            | Action::Mark { i, .. }
            | Action::Send { i }
            | Action::Facilitator { i, .. }
            | Action::Finish { i, .. }
            | Action::Crash { i } => format!(" → request {i}: {:?}", next.actors[*i].phase),
            _ => String::new(),
        };
        out.push_str(&format!("t={} {action:?}{who}\n      [{record}; chain {:?}{}]\n", state.now, next.nonce, if next.mempool { ", a transfer pending" } else { "" }));
    }
    out
}

/// Runs the checker breadth first over the whole space (`first_failure`: until an `always`
/// property fails, on one thread, for a short counterexample); prints its counts and run time.
fn check(model: LedgerModel, first_failure: bool) -> impl Checker<LedgerModel> {
    let started = Instant::now();
    let builder = model.checker();
    let checker = if first_failure {
        builder.threads(1).finish_when(HasDiscoveries::AnyFailures).spawn_bfs().join()
    } else {
        builder.threads(std::thread::available_parallelism().map_or(1, |n| n.get())).spawn_bfs().join()
    };
    println!(
        "{model:?}: {} states ({} unique), depth {}, {:.1} s",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        started.elapsed().as_secs_f64()
    );
    checker
}

/// Checks `model` over its whole space: every `sometimes` property is reached and every `always`
/// property holds, except that those in `may_fail` may fail. Returns the names of those that did.
fn assert_properties(model: LedgerModel, may_fail: &[&str]) -> Vec<&'static str> {
    let checker = check(model, false);
    assert!(checker.is_done(), "{model:?}: the whole space was explored");
    let mut failures = Vec::new();
    for p in model.properties() {
        let found = checker.discovery(p.name);
        match (p.expectation, found) {
            (Expectation::Sometimes, None) => panic!("{model:?}: \"{}\" is never reached", p.name),
            (Expectation::Sometimes, Some(_)) => {}
            (_, Some(_)) if may_fail.contains(&p.name) => failures.push(p.name),
            // The shortest counterexample, rather than the one the parallel run kept.
            (_, Some(_)) => panic!("{model:?}: \"{}\" fails:\n{}", p.name, explain(counterexample(model, p.name))),
            (_, None) => {}
        }
    }
    failures
}

/// The shortest counterexample to `property` in `model` (breadth first on one thread, the first
/// path found whose last state breaks it), printed.
fn counterexample(model: LedgerModel, property: &'static str) -> stateright::Path<State, Action> {
    let model = LedgerModel { stop_at: Some(property), ..model };
    let first: Arc<Mutex<Option<stateright::Path<State, Action>>>> = Arc::default();
    let found = Arc::clone(&first);
    let condition = model.properties().into_iter().find(|p| p.name == property).expect("a property of the model").condition;
    model
        .checker()
        .threads(1)
        .visitor(move |path: stateright::Path<State, Action>| {
            let mut found = found.lock().expect("visitor lock");
            if found.is_none() && !condition(&model, path.last_state()) {
                *found = Some(path);
            }
        })
        .finish_when(HasDiscoveries::AnyOf([property].into()))
        .spawn_bfs()
        .join();
    let path = first.lock().expect("visitor lock").take().unwrap_or_else(|| panic!("{model:?}: no counterexample to \"{property}\""));
    println!("{model:?}\nbreaks \"{property}\" in {} steps:\n{}", path.clone().into_actions().len(), explain(path.clone()));
    path
}

#[test]
fn with_rpc_url_every_property_holds_settle_after() {
    assert_properties(LedgerModel::new(true, Order::After), &[]);
}

#[test]
fn with_rpc_url_every_property_holds_settle_before() {
    assert_properties(LedgerModel::new(true, Order::Before), &[]);
}

/// Without `RPC_URL` every property holds but the strict form of (a): the checker finds the
/// stated residual risk, a payer who uses the nonce on chain while an outcome is unknown after
/// the send mark, and nothing else.
fn without_rpc_url(settle: Order) {
    let model = LedgerModel::new(false, settle);
    assert_eq!(assert_properties(model, &[A_STRICT]), [A_STRICT]);
    let path = counterexample(LedgerModel { copies: 2, ..model }, A_STRICT);
    let (states, actions): (Vec<State>, Vec<Option<Action>>) = path.into_vec().into_iter().unzip();
    let burned = actions.iter().position(|a| *a == Some(Action::Burn)).expect("the payer burns the nonce");
    assert!(states[..=burned].iter().any(|s| s.marked_ever), "after a send mark");
    let last = states.last().expect("a path");
    assert!(last.nonce == Nonce::Burned && last.actors.iter().any(|a| a.prior_sent && matches!(a.phase, Phase::Done(End::Served { via: Via::Resent, .. }))));
}

#[test]
fn without_rpc_url_only_the_stated_assumption_is_needed_settle_after() {
    without_rpc_url(Order::After);
}

#[test]
fn without_rpc_url_only_the_stated_assumption_is_needed_settle_before() {
    without_rpc_url(Order::Before);
}

/// The checker's power: a gateway that sends `/settle` without the send mark is caught (a
/// payment on chain whose record reads as never sent, then refused and forgotten).
#[test]
fn the_checker_catches_a_gateway_that_skips_the_send_mark() {
    let model = LedgerModel { copies: 2, broken: Some(Broken::SkipMark), ..LedgerModel::new(true, Order::After) };
    let path = counterexample(model, E_RECORD_KEPT);
    assert!(path.into_actions().iter().any(|a| matches!(a, Action::Send { .. })));
    counterexample(LedgerModel { copies: 2, broken: Some(Broken::SkipMark), ..LedgerModel::new(false, Order::After) }, C_WHILE_CHARGED);
}

/// The checker's power: a gateway that keeps a send mark it could not confirm (the mark applied,
/// its acknowledgement lost, nothing sent) lets a burned nonce read as this ledger's own payment
/// without `RPC_URL`: content served for nothing. `Outcome::Unsent` takes the mark back.
#[test]
fn the_checker_catches_a_gateway_that_keeps_an_unacknowledged_mark() {
    let model = LedgerModel { copies: 2, broken: Some(Broken::KeepsUnacknowledgedMark), ..LedgerModel::new(false, Order::After) };
    let path = counterexample(model, A_STATED);
    let actions = path.clone().into_actions();
    assert!(actions.iter().any(|a| matches!(a, Action::Mark { lost: true, .. })), "{actions:?}");
    assert!(actions.contains(&Action::Burn), "{actions:?}");
    assert!(!actions.iter().any(|a| matches!(a, Action::Send { .. })) || path.last_state().nonce == Nonce::Burned);
}

/// The checker's power: the ledger's answer before the send mark existed (a lapsed reservation
/// reads as sent) gives the attack: a burned nonce served for free without `RPC_URL`.
#[test]
fn the_checker_catches_the_old_lapsed_reservation_answer() {
    let model = LedgerModel { copies: 2, broken: Some(Broken::LapsedReadsAsSent), ..LedgerModel::new(false, Order::After) };
    let path = counterexample(model, A_STATED);
    let last = path.last_state();
    let self_marked = last.first_marker.is_some_and(|m| matches!(last.actors[m].phase, Phase::Done(End::Served { .. })));
    assert!(last.nonce == Nonce::Burned && self_marked, "served for a burned nonce no earlier request had sent: {last:?}");
}

/// The checker's power over (c): a ledger that forgets its send marks (a sent authorization comes
/// back as a fresh lapsed reservation) lets a retry say "nothing was charged" for an authorization
/// it had sent. Property (c) is taken from what the store held, so the ledger's answer is what it
/// checks.
#[test]
fn the_checker_catches_a_ledger_that_forgets_its_send_mark() {
    let model = LedgerModel { copies: 2, broken: Some(Broken::SentReadsAsFresh), ..LedgerModel::new(true, Order::After) };
    let path = counterexample(model, C_AFTER_MARK);
    let last = path.last_state();
    assert!(last.actors.iter().any(|a| a.found_mark && !a.prior_sent && matches!(a.phase, Phase::Done(End::NothingCharged(_)))), "{last:?}");
}

/// A facilitator that answers twice: it executes the transfer and the answer the Worker reads is
/// a duplicate processing's "nonce already used" to a first send. With `RPC_URL` the chain decides
/// that refusal and every property holds; without it the refusal is taken (it cannot be told from
/// a nonce the payer burned before the send, and taking it as paid would serve burned nonces), so
/// the payer is told "refused" and the record of a payment on chain is forgotten: a residual risk
/// for the payer (README, "What is proven and what is assumed").
#[test]
fn a_facilitator_that_executes_and_answers_nonce_used() {
    for settle in [Order::After, Order::Before] {
        assert_properties(LedgerModel { copies: 2, double_answer: true, ..LedgerModel::new(true, settle) }, &[]);
        let model = LedgerModel { copies: 2, double_answer: true, ..LedgerModel::new(false, settle) };
        let failed = assert_properties(model, &[A_STRICT, C_WHILE_CHARGED, E_RECORD_KEPT]);
        assert!(failed.contains(&E_RECORD_KEPT), "{failed:?}");
    }
    let path = counterexample(LedgerModel { copies: 2, double_answer: true, ..LedgerModel::new(false, Order::After) }, E_RECORD_KEPT);
    assert!(path.into_actions().iter().any(|a| matches!(a, Action::Facilitator { does: Facilitator::ExecutedAnsweredNonceUsed, .. })));
}

/// A holder slower than its reservation lease before its send mark (a `/verify` failover chain,
/// chain evidence before the origin) loses the authorization before it can send it: the mark
/// needs the lease and renews it for the settlement. Every property holds but (d'): the slow
/// holder's origin call, started while it held the lease, may still complete after another copy
/// was served (that holder then cannot mark, and its content is never handed over).
#[test]
fn a_holder_slower_than_its_lease_before_its_send_mark_never_sends_twice() {
    for rpc in [true, false] {
        for settle in [Order::After, Order::Before] {
            let model = LedgerModel { copies: 2, clock: Clock::SlowBeforeMark, ..LedgerModel::new(rpc, settle) };
            let strict = if rpc { vec![] } else { vec![A_STRICT] };
            assert_properties(model, &[strict.as_slice(), &[D_NO_ORIGIN_AFTER]].concat());
        }
    }
}

/// What no lease can cover (README, "What is proven and what is assumed"): a holder slower than
/// even the lease its send mark renewed (which covers every bounded call of its settlement, so
/// this takes a runtime that stalls a request beyond its own time limits). With time passing
/// regardless of holders, the checker finds two live `/settle`s and paid content handed over
/// twice; content is still never served without evidence and a payment on chain keeps its
/// record. With `RPC_URL` no request says "nothing was charged" while another's settlement
/// charges; without it one can: a holder whose lease ran out while its `/settle` was out reads
/// the "nonce already used" caused by another copy's executed resend as a refusal.
#[test]
fn known_gap_a_holder_slower_than_its_lease() {
    for rpc in [true, false] {
        for settle in [Order::After, Order::Before] {
            let model = LedgerModel { copies: 2, clock: Clock::Free, ..LedgerModel::new(rpc, settle) };
            // Without RPC_URL also (c): a holder whose lease ran out during its send answers the
            // refusal "nonce used" that another copy's executed resend caused as "refused".
            let unassisted = if rpc { vec![] } else { vec![A_STRICT, C_WHILE_CHARGED] };
            let lease = [B_ONE_SEND, D_SERVED_ONCE, D_NO_ORIGIN_AFTER];
            let failed = assert_properties(model, &[unassisted.as_slice(), &lease].concat());
            println!("{model:?} breaks {failed:?}");
            assert!(failed.contains(&B_ONE_SEND), "{failed:?}");
            assert_eq!(failed.contains(&C_WHILE_CHARGED), !rpc, "(c) fails exactly without RPC_URL: {failed:?}");
        }
    }
    let model = LedgerModel { copies: 2, clock: Clock::Free, ..LedgerModel::new(true, Order::After) };
    for property in [B_ONE_SEND, D_SERVED_ONCE] {
        counterexample(model, property);
    }
}
