use super::*;

const T: u64 = 1_800_000_000;

fn reserve_op(key: &str, holder: &str) -> Reserve {
    Reserve { key: key.into(), holder: holder.into(), route: "GET /x".into(), resource: "/x".into(), signature: "s1".into(), valid_before: T + 300, lease_seconds: 40, create: true }
}
fn reserve(s: &mut MemoryStore, holder: &str, now: u64) -> Reservation {
    apply(s, reserve_op("k", holder), now).unwrap()
}
fn mark(s: &mut MemoryStore, holder: &str, now: u64) -> Marked {
    apply(s, Mark { key: "k".into(), holder: holder.into(), lease_seconds: 0, amount: None }, now).unwrap()
}
fn finish(s: &mut MemoryStore, holder: &str, outcome: Outcome, now: u64) -> Finished {
    apply(s, Finish { key: "k".into(), holder: holder.into(), outcome }, now).unwrap()
}
fn settled(delivered: bool) -> Outcome {
    Outcome::Settled { transaction: format!("0x{}", "ab".repeat(32)), network: "eip155:84532".into(), delivered, hold_seconds: 0, pass: None }
}
/// Reserve, mark and settle `k` as holder `h`.
fn paid(s: &mut MemoryStore, h: &str, delivered: bool, now: u64) {
    assert!(matches!(reserve(s, h, now), Reservation::Reserved { .. }));
    assert_eq!(mark(s, h, now), Marked::Done);
    assert_eq!(finish(s, h, settled(delivered), now), Finished::Done);
}

#[test]
fn one_holder_at_a_time_then_spent() {
    let mut s = MemoryStore::default();
    assert!(matches!(reserve(&mut s, "a", T), Reservation::Reserved { prior_sent: false, lapsed: false, .. }));
    assert_eq!(reserve(&mut s, "b", T), Reservation::InFlight);
    assert_eq!(finish(&mut s, "b", Outcome::Release, T), Finished::LostLease, "only the holder may finish");
    assert_eq!(mark(&mut s, "b", T), Marked::LostLease, "only the holder may mark");
    assert_eq!(reserve(&mut s, "b", T + 1), Reservation::InFlight);
    assert_eq!(mark(&mut s, "a", T + 2), Marked::Done);
    assert_eq!(finish(&mut s, "a", settled(true), T + 2), Finished::Done);
    assert!(matches!(reserve(&mut s, "c", T + 3), Reservation::Spent { .. }));
    assert!(s.standing.is_good(T + 3, 3600));
}

#[test]
fn no_settlement_is_recorded_without_a_send_mark() {
    let mut s = MemoryStore::default();
    reserve(&mut s, "a", T);
    assert_eq!(finish(&mut s, "a", settled(true), T), Finished::NotMarked);
    assert_eq!(s.records["k"].settlement, Settlement::Pending);
    assert!(matches!(reserve(&mut s, "b", T + 1), Reservation::Reserved { prior_sent: false, .. }), "still unsent and free to take");
}

#[test]
fn released_authorizations_can_be_retried_and_refusals_turn_standing_bad() {
    let mut s = MemoryStore::default();
    reserve(&mut s, "a", T);
    finish(&mut s, "a", Outcome::Release, T);
    assert!(s.records.is_empty());
    assert!(matches!(reserve(&mut s, "b", T), Reservation::Reserved { prior_sent: false, .. }));
    finish(&mut s, "b", Outcome::Refused, T);
    assert!(s.records.is_empty());
    assert_eq!(s.standing.last_refused_at, T);
    assert!(!s.standing.is_good(T, 3600));
}

#[test]
fn undelivered_is_served_once_more_for_the_same_resource_then_spent() {
    let mut s = MemoryStore::default();
    paid(&mut s, "a", false, T);
    let elsewhere = Reserve { key: "k".into(), holder: "x".into(), route: "GET /x".into(), resource: "/y".into(), signature: "s1".into(), valid_before: T + 300, lease_seconds: 40, create: true };
    assert_eq!(apply(&mut s, elsewhere, T + 1).unwrap(), Reservation::Mismatch { resource: Some("GET /x /x".into()) }, "bound to its resource");
    assert!(matches!(reserve(&mut s, "b", T + 1), Reservation::Redeliver { .. }));
    assert_eq!(reserve(&mut s, "c", T + 1), Reservation::InFlight, "the redelivery is in flight");
    finish(&mut s, "b", Outcome::Delivered { delivered: true, pass: None }, T + 2);
    assert!(matches!(reserve(&mut s, "d", T + 3), Reservation::Spent { .. }));
}

#[test]
fn a_sent_record_is_reconciled_only_for_its_resource_and_an_unsent_one_follows_its_holder() {
    let mut s = MemoryStore::default();
    let at = |holder: &str, resource: &str| Reserve { key: "k".into(), holder: holder.into(), route: "GET /x".into(), resource: resource.into(), signature: "s1".into(), valid_before: T + 300, lease_seconds: 40, create: true };
    apply(&mut s, at("a", "/x"), T).unwrap();
    // The holder died unsent; a copy for another path takes it over whole.
    assert!(matches!(apply(&mut s, at("b", "/y"), T + 41).unwrap(), Reservation::Reserved { lapsed: true, .. }));
    assert_eq!(s.records["k"].resource, "/y");
    mark(&mut s, "b", T + 42);
    finish(&mut s, "b", Outcome::Unknown { transaction: None, refused: false }, T + 42);
    assert_eq!(apply(&mut s, at("c", "/x"), T + 43).unwrap(), Reservation::Mismatch { resource: Some("GET /x /y".into()) });
    assert!(matches!(apply(&mut s, at("d", "/y"), T + 43).unwrap(), Reservation::Reserved { prior_sent: true, .. }));
}

#[test]
fn a_copy_with_another_signature_never_takes_the_record() {
    let mut s = MemoryStore::default();
    paid(&mut s, "a", false, T);
    let forged = Reserve { key: "k".into(), holder: "x".into(), route: "GET /x".into(), resource: "/x".into(), signature: "s2".into(), valid_before: T + 300, lease_seconds: 40, create: true };
    assert_eq!(apply(&mut s, forged, T + 1).unwrap(), Reservation::Mismatch { resource: None });
    assert!(matches!(reserve(&mut s, "b", T + 1), Reservation::Redeliver { .. }), "the genuine copy still redelivers");
}

#[test]
fn a_sent_unknown_outcome_is_retried_as_sent_and_never_released_to_nothing() {
    let mut s = MemoryStore::default();
    reserve(&mut s, "a", T);
    mark(&mut s, "a", T);
    finish(&mut s, "a", Outcome::Unknown { transaction: Some("0x1".into()), refused: false }, T);
    match reserve(&mut s, "b", T + 1) {
        Reservation::Reserved { prior_sent, prior_transaction, lapsed, .. } => {
            assert!(prior_sent && !lapsed);
            assert_eq!(prior_transaction.as_deref(), Some("0x1"));
        }
        other => panic!("{other:?}"),
    }
    // Releasing a sent authorization keeps it "sent", with its transaction.
    finish(&mut s, "b", Outcome::Release, T + 1);
    assert!(matches!(reserve(&mut s, "c", T + 2), Reservation::Reserved { prior_sent: true, prior_transaction: Some(_), .. }));
}

#[test]
fn a_lapsed_hold_without_a_send_mark_is_fresh_and_flagged_for_verification() {
    let mut s = MemoryStore::default();
    reserve(&mut s, "a", T);
    // The holder died before sending: nothing is "maybe paid".
    assert!(matches!(reserve(&mut s, "b", T + 41), Reservation::Reserved { prior_sent: false, lapsed: true, .. }));
    assert_eq!(mark(&mut s, "a", T + 42), Marked::LostLease, "the dead holder can no longer mark");
    assert_eq!(finish(&mut s, "a", settled(true), T + 42), Finished::LostLease);
    finish(&mut s, "b", Outcome::Release, T + 42);
    assert!(s.records.is_empty(), "released unsent: forgotten");
}

#[test]
fn the_send_mark_renews_the_lease_for_the_settlement() {
    let mut s = MemoryStore::default();
    reserve(&mut s, "a", T);
    // The holder reaches its mark late in its lease (a slow verify chain)...
    assert_eq!(apply(&mut s, Mark { key: "k".into(), holder: "a".into(), lease_seconds: 100, amount: None }, T + 39).unwrap(), Marked::Done);
    // ...and keeps the authorization through its settlement: no second holder can send it.
    assert_eq!(reserve(&mut s, "b", T + 41), Reservation::InFlight);
    assert_eq!(reserve(&mut s, "b", T + 138), Reservation::InFlight);
    assert_eq!(finish(&mut s, "a", settled(true), T + 139), Finished::Done);
}

#[test]
fn a_lapsed_hold_after_its_send_mark_reads_as_sent() {
    let mut s = MemoryStore::default();
    reserve(&mut s, "a", T);
    mark(&mut s, "a", T + 1);
    // The holder died after marking, maybe after sending.
    assert!(matches!(reserve(&mut s, "b", T + 41), Reservation::Reserved { prior_sent: true, lapsed: false, .. }));
    finish(&mut s, "b", Outcome::Release, T + 42);
    assert!(matches!(s.records["k"].settlement, Settlement::Sent { .. }));
}

#[test]
fn a_late_lookup_never_creates_a_record() {
    let mut s = MemoryStore::default();
    let late = |holder: &str| Reserve { key: "k".into(), holder: holder.into(), route: "GET /x".into(), resource: "/x".into(), signature: "s1".into(), valid_before: T + 300, lease_seconds: 40, create: false };
    assert_eq!(apply(&mut s, late("a"), T).unwrap(), Reservation::NotFound);
    assert!(s.records.is_empty());
    paid(&mut s, "b", false, T);
    assert!(matches!(apply(&mut s, late("c"), T + 1).unwrap(), Reservation::Redeliver { .. }));
}

#[test]
fn a_transaction_hash_already_held_for_another_authorization_is_a_facilitator_fault() {
    let mut s = MemoryStore::default();
    paid(&mut s, "a", true, T);
    apply(&mut s, reserve_op("k2", "b"), T).unwrap();
    apply(&mut s, Mark { key: "k2".into(), holder: "b".into(), lease_seconds: 0, amount: None }, T).unwrap();
    let dup = apply(&mut s, Finish { key: "k2".into(), holder: "b".into(), outcome: settled(true) }, T).unwrap();
    assert_eq!(dup, Finished::DuplicateTransaction);
    assert!(matches!(s.records["k2"].settlement, Settlement::Sent { .. }));
}

#[test]
fn settle_first_holds_the_lease_through_the_origin_call() {
    let mut s = MemoryStore::default();
    reserve(&mut s, "a", T);
    mark(&mut s, "a", T);
    let held = Outcome::Settled { transaction: "0x01".into(), network: "eip155:84532".into(), delivered: false, hold_seconds: 30, pass: None };
    assert_eq!(finish(&mut s, "a", held, T), Finished::Done);
    assert_eq!(reserve(&mut s, "b", T + 1), Reservation::InFlight, "the origin call is in flight");
    // The origin failed: the payer keeps a paid, undelivered authorization.
    assert_eq!(finish(&mut s, "a", Outcome::Delivered { delivered: false, pass: None }, T + 2), Finished::Done);
    assert!(matches!(reserve(&mut s, "c", T + 3), Reservation::Redeliver { .. }));
}

#[test]
fn a_counted_pass_admits_exactly_its_requests_and_revocation_is_immediate() {
    let mut s = MemoryStore::default();
    let use_ = |s: &mut MemoryStore, now| apply(s, PassUse { max_requests: Some(2), expires_at: T + 100 }, now).unwrap();
    assert_eq!(use_(&mut s, T), Admission::Admitted { remaining: Some(1) });
    assert_eq!(use_(&mut s, T), Admission::Admitted { remaining: Some(0) });
    assert_eq!(use_(&mut s, T), Admission::Refused { reason: PassRefusal::UsedUp });
    let mut t = MemoryStore::default();
    assert_eq!(use_(&mut t, T + 100), Admission::Refused { reason: PassRefusal::Expired });
    apply(&mut t, PassRevoke { expires_at: T + 100, known: true }, T).unwrap();
    assert_eq!(use_(&mut t, T), Admission::Refused { reason: PassRefusal::Revoked });
}

#[test]
fn a_refund_gives_back_one_counted_request_and_never_goes_below_zero() {
    let mut s = MemoryStore::default();
    let use_ = |s: &mut MemoryStore| apply(s, PassUse { max_requests: Some(2), expires_at: T + 100 }, T).unwrap();
    // Nothing known, nothing used: a refund writes nothing.
    assert_eq!(apply(&mut s, PassRefund, T).unwrap(), Recorded::Done);
    assert_eq!(s.pass_usage, None);
    assert_eq!(use_(&mut s), Admission::Admitted { remaining: Some(1) });
    assert_eq!(use_(&mut s), Admission::Admitted { remaining: Some(0) });
    assert_eq!(use_(&mut s), Admission::Refused { reason: PassRefusal::UsedUp });
    // The origin failed on the last admitted request: it is given back, once.
    assert_eq!(apply(&mut s, PassRefund, T).unwrap(), Recorded::Done);
    assert_eq!(s.pass_usage.unwrap().used, 1);
    assert_eq!(use_(&mut s), Admission::Admitted { remaining: Some(0) });
    assert_eq!(use_(&mut s), Admission::Refused { reason: PassRefusal::UsedUp });
    for _ in 0..5 {
        apply(&mut s, PassRefund, T).unwrap();
    }
    assert_eq!(s.pass_usage.unwrap().used, 0, "never below zero");
    assert_eq!(use_(&mut s), Admission::Admitted { remaining: Some(1) }, "a refund never adds requests beyond those bought");
    // A refund does not lift a revocation.
    apply(&mut s, PassRevoke { expires_at: T + 100, known: true }, T).unwrap();
    apply(&mut s, PassRefund, T).unwrap();
    assert_eq!(use_(&mut s), Admission::Refused { reason: PassRefusal::Revoked });
}

#[test]
fn a_revocation_says_whether_the_pass_existed_and_a_later_sale_record_does_not_lift_it() {
    let mut s = MemoryStore::default();
    let revoke = |s: &mut MemoryStore, known| apply(s, PassRevoke { expires_at: T + 100, known }, T).unwrap();
    // Never sold, not known to the paywall: nothing revoked, nothing written.
    assert_eq!(revoke(&mut s, false), PassRevocation::Unknown);
    assert_eq!(s.pass_usage, None);
    // Sold (recorded after the response), then revoked by token elsewhere: found here.
    assert_eq!(apply(&mut s, PassSold { expires_at: T + 100 }, T).unwrap(), Recorded::Done);
    assert_eq!(revoke(&mut s, false), PassRevocation::Revoked { already: false, expires_at: T + 100 });
    assert_eq!(revoke(&mut s, false), PassRevocation::Revoked { already: true, expires_at: T + 100 });
    // The sale's record arriving late does not lift the revocation.
    apply(&mut s, PassSold { expires_at: T + 100 }, T).unwrap();
    let used = apply(&mut s, PassUse { max_requests: None, expires_at: T + 100 }, T).unwrap();
    assert_eq!(used, Admission::Refused { reason: PassRefusal::Revoked });
    // Known to the paywall (its KV record) but not to the shard: revoked, with that expiry.
    let mut t = MemoryStore::default();
    assert_eq!(apply(&mut t, PassRevoke { expires_at: T + 7, known: true }, T).unwrap(), PassRevocation::Revoked { already: false, expires_at: T + 7 });
    assert!(t.pass_usage.unwrap().revoked);
}

#[test]
fn a_denied_payer_is_refused_at_reservation_and_its_passes_are_listed() {
    let mut s = MemoryStore::default();
    for (key, pass, exp) in [("k1", "p1", T + 10), ("k2", "old", T - 1)] {
        apply(&mut s, reserve_op(key, "h"), T).unwrap();
        apply(&mut s, Mark { key: key.into(), holder: "h".into(), lease_seconds: 0, amount: None }, T).unwrap();
        let outcome = Outcome::Settled { transaction: format!("0x{key}"), network: "n".into(), delivered: true, hold_seconds: 0, pass: Some((pass.into(), exp)) };
        apply(&mut s, Finish { key: key.into(), holder: "h".into(), outcome }, T).unwrap();
    }
    assert_eq!(apply(&mut s, PayerDeny, T).unwrap(), LivePasses::Passes { passes: vec!["p1".into()] }, "live passes only");
    assert_eq!(reserve(&mut s, "a", T), Reservation::Denied);
}

#[test]
fn a_sign_in_nonce_is_single_use() {
    let mut s = MemoryStore::default();
    let op = || SignIn { nonce: "n0nce123".into(), expires_at: T + 300 };
    assert_eq!(apply(&mut s, op(), T).unwrap(), SignedIn::Passes { passes: vec![] });
    assert_eq!(apply(&mut s, op(), T + 1).unwrap(), SignedIn::NonceUsed);
}

#[test]
fn in_flight_counts_other_authorizations_of_the_payer() {
    let mut s = MemoryStore::default();
    reserve(&mut s, "a", T);
    assert!(matches!(apply(&mut s, reserve_op("k2", "b"), T).unwrap(), Reservation::Reserved { others_in_flight: 1, .. }));
}

#[test]
fn pruning_waits_for_valid_before_and_leases() {
    let mut s = MemoryStore::default();
    paid(&mut s, "a", true, T);
    s.prune(T + 300 + PRUNE_AFTER_SECONDS);
    assert_eq!(s.records.len(), 1);
    s.prune(T + 301 + PRUNE_AFTER_SECONDS);
    assert!(s.records.is_empty());
}

#[test]
fn ops_and_replies_round_trip_as_json() {
    let op = Op::from(Finish { key: "k".into(), holder: "h".into(), outcome: settled(false) });
    let text = serde_json::to_string(&op).unwrap();
    assert!(text.starts_with("{\"finish\":") && text.contains("\"outcome\":{\"settled\":"), "{text}");
    assert_eq!(serde_json::from_str::<Op>(&text).unwrap(), op);
    let r = Reservation::Reserved { prior_sent: true, prior_transaction: None, lapsed: false, standing: Standing::default(), others_in_flight: 0, prior_amount: None };
    assert_eq!(serde_json::from_str::<Reservation>(&serde_json::to_string(&r).unwrap()).unwrap(), r);
    // A record stored before the send mark existed ("unknown") reads as sent.
    let old = r#"{"route":"GET /x","validBefore":1,"settlement":{"unknown":{"transaction":null}},"delivered":false,"leaseUntil":0,"holder":""}"#;
    assert!(matches!(serde_json::from_str::<Record>(old).unwrap().settlement, Settlement::Sent { transaction: None }));
}

#[test]
fn the_first_send_mark_fixes_an_upto_amount_and_a_retry_is_told_it() {
    let mut s = MemoryStore::default();
    reserve(&mut s, "a", T);
    let mark_with = |s: &mut MemoryStore, holder: &str, amount: &str, now: u64| {
        apply(s, Mark { key: "k".into(), holder: holder.into(), lease_seconds: 0, amount: Some(amount.into()) }, now).unwrap()
    };
    assert_eq!(mark_with(&mut s, "a", "1234", T + 1), Marked::Done);
    assert_eq!(s.records["k"].amount.as_deref(), Some("1234"));
    // The holder died after sending; a retry holds it and learns the amount that was sent.
    match reserve(&mut s, "b", T + 41) {
        Reservation::Reserved { prior_sent: true, prior_amount, .. } => assert_eq!(prior_amount.as_deref(), Some("1234")),
        other => panic!("expected a sent reservation, got {other:?}"),
    }
    // A repeated send never changes the amount on record.
    assert_eq!(mark_with(&mut s, "b", "999", T + 42), Marked::Done);
    assert_eq!(s.records["k"].amount.as_deref(), Some("1234"));
    // An unsent (exact) record reports no amount.
    let mut e = MemoryStore::default();
    assert!(matches!(reserve(&mut e, "a", T), Reservation::Reserved { prior_amount: None, .. }));
}

#[test]
fn the_typed_protocol_keeps_the_wire_format_of_the_single_op_and_reply_enums() {
    // Operations and replies as the one `Op` / `Reply` enum pair wrote them: a Worker and a
    // Durable Object of either version understand each other during a deploy.
    let ops: [(Op, &str); 10] = [
        (reserve_op("k", "h").into(), r#"{"reserve":{"key":"k","holder":"h","route":"GET /x","resource":"/x","signature":"s1","validBefore":1800000300,"leaseSeconds":40,"create":true}}"#),
        (Mark { key: "k".into(), holder: "h".into(), lease_seconds: 5, amount: None }.into(), r#"{"mark":{"key":"k","holder":"h","leaseSeconds":5}}"#),
        (Finish { key: "k".into(), holder: "h".into(), outcome: Outcome::Release }.into(), r#"{"finish":{"key":"k","holder":"h","outcome":"release"}}"#),
        (PayerPasses.into(), r#""payerPasses""#),
        (PayerDeny.into(), r#""payerDeny""#),
        (SignIn { nonce: "n".into(), expires_at: 7 }.into(), r#"{"signIn":{"nonce":"n","expiresAt":7}}"#),
        (PassUse { max_requests: Some(2), expires_at: 7 }.into(), r#"{"passUse":{"maxRequests":2,"expiresAt":7}}"#),
        (PassRefund.into(), r#""passRefund""#),
        (PassSold { expires_at: 7 }.into(), r#"{"passSold":{"expiresAt":7}}"#),
        (PassRevoke { expires_at: 7, known: true }.into(), r#"{"passRevoke":{"expiresAt":7,"known":true}}"#),
    ];
    for (op, wire) in ops {
        assert_eq!(serde_json::to_string(&op).unwrap(), wire);
        assert_eq!(serde_json::from_str::<Op>(wire).unwrap(), op, "{wire}");
    }
    // An `upto` mark carries its amount; an old Durable Object ignores the unknown field.
    let upto = Mark { key: "k".into(), holder: "h".into(), lease_seconds: 5, amount: Some("1234".into()) };
    assert_eq!(serde_json::to_string(&Op::from(upto.clone())).unwrap(), r#"{"mark":{"key":"k","holder":"h","leaseSeconds":5,"amount":"1234"}}"#);
    assert_eq!(serde_json::from_str::<Op>(r#"{"mark":{"key":"k","holder":"h","leaseSeconds":5,"amount":"1234"}}"#).unwrap(), upto.into());
    // A mark from before `leaseSeconds` existed.
    assert_eq!(serde_json::from_str::<Op>(r#"{"mark":{"key":"k","holder":"h"}}"#).unwrap(), Mark { key: "k".into(), holder: "h".into(), lease_seconds: 0, amount: None }.into());
    let json = |r: &dyn erased::Json| r.json();
    let replies: [(&dyn erased::Json, &str); 11] = [
        (&Reservation::Reserved { prior_sent: false, prior_transaction: None, lapsed: true, standing: Standing::default(), others_in_flight: 1, prior_amount: None }, r#"{"reserved":{"priorSent":false,"priorTransaction":null,"lapsed":true,"standing":{"lastSettledAt":0,"lastRefusedAt":0,"denied":false},"othersInFlight":1}}"#),
        (&Reservation::Mismatch { resource: None }, r#"{"mismatch":{"resource":null}}"#),
        (&Reservation::Redeliver { transaction: "0x1".into(), network: "n".into(), amount: None }, r#"{"redeliver":{"transaction":"0x1","network":"n"}}"#),
        (&Reservation::Redeliver { transaction: "0x1".into(), network: "n".into(), amount: Some("1234".into()) }, r#"{"redeliver":{"transaction":"0x1","network":"n","amount":"1234"}}"#),
        (&Marked::Done, r#""done""#),
        (&Finished::DuplicateTransaction, r#""duplicateTransaction""#),
        (&LivePasses::Passes { passes: vec!["p".into()] }, r#"{"passes":{"passes":["p"]}}"#),
        (&SignedIn::NonceUsed, r#""nonceUsed""#),
        (&Admission::Refused { reason: PassRefusal::UsedUp }, r#"{"passRefused":{"reason":"pass_used_up"}}"#),
        (&PassRevocation::Revoked { already: true, expires_at: 7 }, r#"{"passRevoked":{"already":true,"expiresAt":7}}"#),
        (&Recorded::Done, r#""done""#),
    ];
    for (reply, wire) in replies {
        assert_eq!(json(reply), wire);
    }
    assert_eq!(serde_json::from_str::<Admission>(r#"{"passAdmitted":{"remaining":null}}"#).unwrap(), Admission::Admitted { remaining: None });
}

/// Serializing replies of different types in one table.
mod erased {
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap()
        }
    }
}

/// A transport that applies each operation to one in-memory shard, through JSON as on the edge.
struct Memory(std::cell::RefCell<MemoryStore>);

impl Transport for Memory {
    async fn send(&self, _shard: &str, op: &Op) -> Result<Reply, String> {
        let op: Op = serde_json::from_str(&serde_json::to_string(op).unwrap()).unwrap();
        let reply = apply(&mut *self.0.borrow_mut(), op, T)?;
        Ok(serde_json::from_str(&serde_json::to_string(&reply).unwrap()).unwrap())
    }
}

/// A transport whose shard answers `"done"` to everything.
struct AlwaysDone;

impl Transport for AlwaysDone {
    async fn send(&self, _shard: &str, _op: &Op) -> Result<Reply, String> {
        Ok(serde_json::from_str("\"done\"").unwrap())
    }
}

#[test]
fn the_client_reads_each_reply_as_its_operations_type_and_refuses_another() {
    let ledger = Memory(Default::default());
    let payer = PayerShard::of(&crate::evm::Address([7; 20]));
    let reserved = pollster::block_on(ledger.call(&payer, reserve_op("k", "a"))).unwrap();
    assert!(matches!(reserved, Reservation::Reserved { prior_sent: false, lapsed: false, others_in_flight: 0, .. }));
    assert_eq!(pollster::block_on(ledger.call(&payer, Mark { key: "k".into(), holder: "a".into(), lease_seconds: 0, amount: None })).unwrap(), Marked::Done);
    let pass = PassShard::of("p1");
    assert_eq!(pollster::block_on(ledger.call(&pass, PassUse { max_requests: Some(1), expires_at: T + 1 })).unwrap(), Admission::Admitted { remaining: Some(0) });
    // An answer that is not one of the operation's replies is an error, never a guess.
    let err = pollster::block_on(AlwaysDone.call(&payer, reserve_op("k", "a"))).unwrap_err();
    assert_eq!(err, "the ledger answered \"done\" to reserve");
    assert_eq!(payer.name(), crate::ledger::shard_name(&crate::evm::Address([7; 20])));
    assert_eq!(pass.name(), "pass:p1");
}

#[test]
fn an_unacknowledged_mark_is_taken_back_only_by_the_hold_that_made_it_first() {
    // Its own first mark: taken back, the record gone, the next copy fresh (not prior_sent).
    let mut s = MemoryStore::default();
    assert!(matches!(reserve(&mut s, "a", T), Reservation::Reserved { .. }));
    assert_eq!(mark(&mut s, "a", T), Marked::Done);
    assert_eq!(finish(&mut s, "a", Outcome::Unsent, T), Finished::Done);
    assert!(s.get("k").unwrap().is_none());
    assert!(matches!(reserve(&mut s, "b", T + 1), Reservation::Reserved { prior_sent: false, .. }));
    // A release keeps a mark (the old behaviour, and still right for a hold that may have sent).
    assert_eq!(mark(&mut s, "b", T + 1), Marked::Done);
    assert_eq!(finish(&mut s, "b", Outcome::Release, T + 1), Finished::Done);
    // A retry that finds an earlier hold's mark (which may have been sent) cannot take it back.
    assert!(matches!(reserve(&mut s, "c", T + 2), Reservation::Reserved { prior_sent: true, .. }));
    assert_eq!(mark(&mut s, "c", T + 2), Marked::Done);
    assert_eq!(finish(&mut s, "c", Outcome::Unsent, T + 2), Finished::Done);
    assert!(matches!(reserve(&mut s, "d", T + 3), Reservation::Reserved { prior_sent: true, .. }));
    // Nor can its first marker once a transaction was named for it (a sent /settle answered).
    let mut s = MemoryStore::default();
    reserve(&mut s, "a", T);
    mark(&mut s, "a", T);
    assert_eq!(finish(&mut s, "a", Outcome::Unknown { transaction: Some(format!("0x{}", "cd".repeat(32))), refused: false }, T), Finished::Done);
    assert!(matches!(reserve(&mut s, "a", T + 1), Reservation::Reserved { prior_sent: true, .. }));
    mark(&mut s, "a", T + 1);
    assert_eq!(finish(&mut s, "a", Outcome::Unsent, T + 1), Finished::Done);
    assert!(matches!(reserve(&mut s, "b", T + 2), Reservation::Reserved { prior_sent: true, .. }));
    // Unmarked: as a release.
    let mut s = MemoryStore::default();
    reserve(&mut s, "a", T);
    assert_eq!(finish(&mut s, "a", Outcome::Unsent, T), Finished::Done);
    assert!(s.get("k").unwrap().is_none());
    assert_eq!(serde_json::to_string(&Outcome::Unsent).unwrap(), r#""unsent""#);
}
