//! `PaymentLedger`: the Durable Object class that hosts [`crate::ledger`], one object per payer
//! ([`crate::ledger::PayerShard`]) and one per pass ([`crate::ledger::PassShard`]), with SQLite
//! storage.
//!
//! Protocol: one JS RPC method, `applyOp(op)`: `op` is the JSON of an [`Op`] (at most
//! [`MAX_OP_BYTES`]), the result the JSON of that operation's own reply type
//! ([`crate::ledger::Reply`]); an unreadable op or a storage failure throws an `Error` naming the
//! reason (the caller's promise rejects with it). The entry module (`src/edge/entry.mjs`) exports
//! the class as a subclass of `DurableObject` from `cloudflare:workers`, which is what makes
//! the method callable through a stub (`env.LEDGER.getByName(shard).applyOp(json)`,
//! [`super::platform`]); the JSON strings cross as they are, with no `Request`/`Response` around
//! them. Only the paywall's own Worker can reach it (through the `LEDGER` binding); it has no
//! `fetch` handler and no public route. Operations and replies are only sent; what survives a
//! deploy is the tables below ([`crate::ledger::records`]).
//!
//! Atomicity: [`apply`] is synchronous and SQLite calls in a Durable Object do not yield, so
//! each operation runs alone against the object's state; the runtime's output gate holds the
//! reply until the writes are durable.
//!
//! Reads come from memory: the object loads its shard once per instance into a
//! [`MemoryStore`] and writes every change through to SQLite first. It is the shard's only
//! writer, so the two stay equal; after a storage error the memory copy is dropped and reloaded.
//!
//! Tables: `authorizations(key PRIMARY KEY, record JSON, valid_before, lease_until, tx)`,
//! `standing(id = 0, last_settled_at, last_refused_at, denied)` (payer shards),
//! `pass_usage(id = 0, used, revoked, expires_at)` (pass shards) and
//! `payer_passes(pass, expires_at)` (payer shards), `channel(id = 0, record)` (channel shards:
//! the [`ChannelRecord`] as JSON). An alarm prunes authorizations whose
//! `validBefore`, and passes whose expiry, passed more than
//! [`crate::ledger::PRUNE_AFTER_SECONDS`] ago.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;
use worker::{js_sys, Env, Result, SqlStorage, SqlStorageValue, State, Storage};

use crate::ledger::channel::ChannelRecord;
use crate::ledger::{apply, MemoryStore, Op, PassUsage, Record, Standing, Store, PRUNE_AFTER_SECONDS};

/// Largest op accepted, in bytes of its JSON (a larger one is refused unread).
pub const MAX_OP_BYTES: usize = 16 * 1024;

/// Milliseconds between prune runs while records remain.
const PRUNE_INTERVAL_MS: i64 = 5 * 60 * 1000;

/// An alarm further ahead than this beyond the next prune is re-set by an instance's first op
/// (ten years, in milliseconds: only the offset bug's alarms, decades ahead, are that far).
const FAR_ALARM_MS: i64 = 10 * 365 * 24 * 3600 * 1000;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS authorizations (
    key TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    valid_before INTEGER NOT NULL,
    lease_until INTEGER NOT NULL,
    tx TEXT
);
CREATE INDEX IF NOT EXISTS authorizations_tx ON authorizations(tx);
CREATE INDEX IF NOT EXISTS authorizations_lease ON authorizations(lease_until);
CREATE TABLE IF NOT EXISTS standing (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    last_settled_at INTEGER NOT NULL,
    last_refused_at INTEGER NOT NULL,
    denied INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS pass_usage (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    used INTEGER NOT NULL,
    revoked INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS payer_passes (
    pass TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS signin_nonces (
    nonce TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS channel (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    record TEXT NOT NULL
);";

/// The Durable Object (wasm side): the runtime's object of this class is the entry module's
/// `PaymentLedger` (`src/edge/entry.mjs`), which forwards its constructor, `applyOp` and `alarm`
/// here.
#[wasm_bindgen]
pub struct PaymentLedger {
    state: State,
    /// Whether this instance has made sure an alarm is scheduled (shared with the promise that
    /// does it, see [`PaymentLedger::apply_op`]).
    alarm_checked: Rc<Cell<bool>>,
    schema_ready: Cell<bool>,
    /// The shard in memory (loaded on first use).
    cache: RefCell<Option<MemoryStore>>,
    /// The Worker's environment: a channel shard's alarm claims through the facilitator.
    env: Env,
    /// A channel shard: the Unix time (seconds) its claim alarm is set for, 0 if none.
    claim_alarm_at: Rc<Cell<u64>>,
}

/// [`Store`] that reads memory and writes through to SQLite.
struct Cached<'a> {
    sql: SqlStore,
    mem: &'a mut MemoryStore,
}

impl Store for Cached<'_> {
    fn get(&self, key: &str) -> std::result::Result<Option<Record>, String> {
        self.mem.get(key)
    }
    fn put(&mut self, key: &str, record: &Record) -> std::result::Result<(), String> {
        self.sql.put(key, record)?;
        self.mem.put(key, record)
    }
    fn delete(&mut self, key: &str) -> std::result::Result<(), String> {
        self.sql.delete(key)?;
        self.mem.delete(key)
    }
    fn find_transaction(&self, transaction: &str, except: &str) -> std::result::Result<Option<String>, String> {
        self.mem.find_transaction(transaction, except)
    }
    fn in_flight(&self, now: u64, except: &str) -> std::result::Result<u32, String> {
        self.mem.in_flight(now, except)
    }
    fn standing(&self) -> std::result::Result<Standing, String> {
        self.mem.standing()
    }
    fn set_standing(&mut self, standing: &Standing) -> std::result::Result<(), String> {
        self.sql.set_standing(standing)?;
        self.mem.set_standing(standing)
    }
    fn pass_usage(&self) -> std::result::Result<Option<PassUsage>, String> {
        self.mem.pass_usage()
    }
    fn set_pass_usage(&mut self, usage: &PassUsage) -> std::result::Result<(), String> {
        self.sql.set_pass_usage(usage)?;
        self.mem.set_pass_usage(usage)
    }
    fn payer_passes(&self) -> std::result::Result<Vec<(String, u64)>, String> {
        self.mem.payer_passes()
    }
    fn add_payer_pass(&mut self, pass: &str, expires_at: u64) -> std::result::Result<(), String> {
        self.sql.add_payer_pass(pass, expires_at)?;
        self.mem.add_payer_pass(pass, expires_at)
    }
    fn nonce_used(&self, nonce: &str) -> std::result::Result<bool, String> {
        self.mem.nonce_used(nonce)
    }
    fn add_nonce(&mut self, nonce: &str, expires_at: u64) -> std::result::Result<(), String> {
        self.sql.add_nonce(nonce, expires_at)?;
        self.mem.add_nonce(nonce, expires_at)
    }
    fn channel(&self) -> std::result::Result<Option<ChannelRecord>, String> {
        self.mem.channel()
    }
    fn set_channel(&mut self, channel: &ChannelRecord) -> std::result::Result<(), String> {
        self.sql.set_channel(channel)?;
        self.mem.set_channel(channel)
    }
}


/// [`Store`] over the object's SQLite database.
struct SqlStore {
    sql: SqlStorage,
}

fn int(v: u64) -> SqlStorageValue {
    SqlStorageValue::from(i64::try_from(v).unwrap_or(i64::MAX))
}

/// A text column.
fn text(v: Option<&SqlStorageValue>) -> Option<String> {
    match v {
        Some(SqlStorageValue::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// A numeric column as `u64` (SQLite integers arrive as JS numbers).
fn number(v: Option<&SqlStorageValue>) -> u64 {
    match v {
        Some(SqlStorageValue::Integer(i)) => u64::try_from(*i).unwrap_or(0),
        Some(SqlStorageValue::Float(f)) if *f >= 0.0 => *f as u64,
        _ => 0,
    }
}

impl SqlStore {
    /// The rows of `query`, each as its column values (no serde_wasm_bindgen: it is large).
    fn rows(&self, query: &str, bindings: Vec<SqlStorageValue>) -> std::result::Result<Vec<Vec<SqlStorageValue>>, String> {
        let cursor = self.sql.exec(query, bindings).map_err(|e| format!("sqlite: {e}"))?;
        cursor.raw().collect::<Result<Vec<_>>>().map_err(|e| format!("sqlite: {e}"))
    }

    fn run(&self, query: &str, bindings: Vec<SqlStorageValue>) -> std::result::Result<(), String> {
        self.sql.exec(query, bindings).map(|_| ()).map_err(|e| format!("sqlite: {e}"))
    }
}

impl Store for SqlStore {
    fn get(&self, key: &str) -> std::result::Result<Option<Record>, String> {
        let rows = self.rows("SELECT record FROM authorizations WHERE key = ?", vec![key.into()])?;
        match rows.first().and_then(|r| text(r.first())) {
            None => Ok(None),
            Some(r) => serde_json::from_str(&r).map(Some).map_err(|e| format!("stored record unreadable: {e}")),
        }
    }

    fn put(&mut self, key: &str, record: &Record) -> std::result::Result<(), String> {
        let json = serde_json::to_string(record).map_err(|e| e.to_string())?;
        let tx = match &record.settlement {
            crate::ledger::Settlement::Settled { transaction, .. } if !transaction.is_empty() => SqlStorageValue::from(transaction.to_ascii_lowercase()),
            _ => SqlStorageValue::Null,
        };
        self.run(
            "INSERT INTO authorizations (key, record, valid_before, lease_until, tx) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT(key) DO UPDATE SET record = excluded.record, valid_before = excluded.valid_before,
             lease_until = excluded.lease_until, tx = excluded.tx",
            vec![key.into(), json.into(), int(record.valid_before), int(record.lease_until), tx],
        )
    }

    fn delete(&mut self, key: &str) -> std::result::Result<(), String> {
        self.run("DELETE FROM authorizations WHERE key = ?", vec![key.into()])
    }

    fn find_transaction(&self, transaction: &str, except: &str) -> std::result::Result<Option<String>, String> {
        let rows = self.rows("SELECT key FROM authorizations WHERE tx = ? AND key != ? LIMIT 1", vec![transaction.to_ascii_lowercase().into(), except.into()])?;
        Ok(rows.first().and_then(|r| text(r.first())))
    }

    fn in_flight(&self, now: u64, except: &str) -> std::result::Result<u32, String> {
        let rows = self.rows("SELECT COUNT(*) FROM authorizations WHERE lease_until > ? AND key != ?", vec![int(now), except.into()])?;
        Ok(rows.first().map_or(0, |r| number(r.first()) as u32))
    }

    fn standing(&self) -> std::result::Result<Standing, String> {
        let rows = self.rows("SELECT last_settled_at, last_refused_at, denied FROM standing WHERE id = 0", vec![])?;
        Ok(rows.first().map_or(Standing::default(), |r| Standing { last_settled_at: number(r.first()), last_refused_at: number(r.get(1)), denied: number(r.get(2)) != 0 }))
    }

    fn set_standing(&mut self, s: &Standing) -> std::result::Result<(), String> {
        self.run(
            "INSERT INTO standing (id, last_settled_at, last_refused_at, denied) VALUES (0, ?, ?, ?)
             ON CONFLICT(id) DO UPDATE SET last_settled_at = excluded.last_settled_at, last_refused_at = excluded.last_refused_at, denied = excluded.denied",
            vec![int(s.last_settled_at), int(s.last_refused_at), int(u64::from(s.denied))],
        )
    }

    fn pass_usage(&self) -> std::result::Result<Option<PassUsage>, String> {
        let rows = self.rows("SELECT used, revoked, expires_at FROM pass_usage WHERE id = 0", vec![])?;
        Ok(rows.first().map(|r| PassUsage { used: number(r.first()) as u32, revoked: number(r.get(1)) != 0, expires_at: number(r.get(2)) }))
    }

    fn set_pass_usage(&mut self, u: &PassUsage) -> std::result::Result<(), String> {
        self.run(
            "INSERT INTO pass_usage (id, used, revoked, expires_at) VALUES (0, ?, ?, ?)
             ON CONFLICT(id) DO UPDATE SET used = excluded.used, revoked = excluded.revoked, expires_at = excluded.expires_at",
            vec![int(u64::from(u.used)), int(u64::from(u.revoked)), int(u.expires_at)],
        )
    }

    fn payer_passes(&self) -> std::result::Result<Vec<(String, u64)>, String> {
        let rows = self.rows("SELECT pass, expires_at FROM payer_passes", vec![])?;
        Ok(rows.iter().filter_map(|r| Some((text(r.first())?, number(r.get(1))))).collect())
    }

    fn nonce_used(&self, nonce: &str) -> std::result::Result<bool, String> {
        Ok(!self.rows("SELECT 1 FROM signin_nonces WHERE nonce = ?", vec![nonce.into()])?.is_empty())
    }

    fn add_nonce(&mut self, nonce: &str, expires_at: u64) -> std::result::Result<(), String> {
        self.run("INSERT OR IGNORE INTO signin_nonces (nonce, expires_at) VALUES (?, ?)", vec![nonce.into(), int(expires_at)])
    }

    fn add_payer_pass(&mut self, pass: &str, expires_at: u64) -> std::result::Result<(), String> {
        self.run(
            "INSERT INTO payer_passes (pass, expires_at) VALUES (?, ?) ON CONFLICT(pass) DO UPDATE SET expires_at = excluded.expires_at",
            vec![pass.into(), int(expires_at)],
        )
    }

    fn channel(&self) -> std::result::Result<Option<ChannelRecord>, String> {
        let rows = self.rows("SELECT record FROM channel WHERE id = 0", vec![])?;
        match rows.first().and_then(|r| text(r.first())) {
            Some(json) => serde_json::from_str(&json).map(Some).map_err(|e| format!("stored channel unreadable: {e}")),
            None => Ok(None),
        }
    }

    fn set_channel(&mut self, channel: &ChannelRecord) -> std::result::Result<(), String> {
        let json = serde_json::to_string(channel).map_err(|e| format!("channel not encodable: {e}"))?;
        self.run("INSERT INTO channel (id, record) VALUES (0, ?) ON CONFLICT(id) DO UPDATE SET record = excluded.record", vec![json.into()])
    }
}

fn now_seconds() -> u64 {
    worker::Date::now().as_millis() / 1000
}

impl PaymentLedger {
    /// The shard as SQLite holds it.
    fn load(sql: &SqlStore) -> std::result::Result<MemoryStore, String> {
        let mut mem = MemoryStore::default();
        for row in sql.rows("SELECT key, record FROM authorizations", vec![])? {
            let (Some(key), Some(json)) = (text(row.first()), text(row.get(1))) else { return Err("stored row without key or record".into()) };
            let record: Record = serde_json::from_str(&json).map_err(|e| format!("stored record unreadable: {e}"))?;
            mem.put(&key, &record)?;
        }
        mem.standing = sql.standing()?;
        mem.pass_usage = sql.pass_usage()?;
        mem.payer_passes = sql.payer_passes()?;
        mem.channel = sql.channel()?;
        for row in sql.rows("SELECT nonce, expires_at FROM signin_nonces", vec![])? {
            if let Some(n) = text(row.first()) {
                mem.nonces.insert(n, number(row.get(1)));
            }
        }
        Ok(mem)
    }

    /// Applies `op` against the cached shard, loading it first if needed.
    fn apply(&self, op: Op, now: u64) -> std::result::Result<crate::ledger::Reply, String> {
        let sql = self.store()?;
        let mut cache = self.cache.borrow_mut();
        if cache.is_none() {
            *cache = Some(Self::load(&sql)?);
        }
        let Some(mem) = cache.as_mut() else { return Err("ledger cache missing".into()) };
        let result = apply(&mut Cached { sql, mem }, op, now);
        if result.is_err() {
            *cache = None;
        }
        result
    }

    fn store(&self) -> std::result::Result<SqlStore, String> {
        let sql = self.state.storage().sql();
        if !self.schema_ready.get() {
            for statement in SCHEMA.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sql.exec(statement, None).map_err(|e| format!("sqlite schema: {e}"))?;
            }
            self.schema_ready.set(true);
        }
        Ok(SqlStore { sql })
    }

    /// The reply to the JSON op `op`, as JSON. Err: the reason the op was refused (unreadable,
    /// too large) or failed (storage).
    fn answer(&self, op: &str) -> std::result::Result<String, String> {
        if op.len() > MAX_OP_BYTES {
            return Err(format!("op of {} bytes is larger than {MAX_OP_BYTES}", op.len()));
        }
        let op: Op = serde_json::from_str(op).map_err(|e| format!("unreadable op: {e}"))?;
        let reply = self.apply(op, now_seconds())?;
        serde_json::to_string(&reply).map_err(|e| format!("reply not encodable: {e}"))
    }
}

/// Makes sure a prune alarm is scheduled once this instance has written records.
async fn ensure_alarm(storage: Storage, checked: Rc<Cell<bool>>) -> Result<()> {
    if checked.get() {
        return Ok(());
    }
    // None, or one set decades ahead by the builds that passed a time where workers-rs reads an
    // offset.
    let next = worker::Date::now().as_millis() as i64 + PRUNE_INTERVAL_MS;
    if storage.get_alarm().await?.is_none_or(|at| at > next + FAR_ALARM_MS) {
        set_alarm_at(&storage, next).await?;
    }
    checked.set(true);
    Ok(())
}

#[wasm_bindgen(wasm_bindgen_futures = worker::wasm_bindgen_futures)]
impl PaymentLedger {
    /// The object of one shard, as the runtime constructs it: `(ctx, env)`.
    #[wasm_bindgen(constructor)]
    pub fn new(state: worker::worker_sys::DurableObjectState, env: Env) -> PaymentLedger {
        PaymentLedger { state: State::from(state), alarm_checked: Rc::new(Cell::new(false)), schema_ready: Cell::new(false), cache: RefCell::new(None), env, claim_alarm_at: Rc::new(Cell::new(0)) }
    }

    /// The RPC method: applies the JSON [`Op`] `op` and returns its reply as a JSON string,
    /// synchronously (the op is applied before this returns, with no await in between). Only an
    /// instance's first successful op returns a promise of that string instead, which resolves
    /// once the prune alarm is known to be scheduled (a failure to schedule it is logged, and
    /// the reply is still given). Throws an `Error` with the reason if the op is unreadable or
    /// storage failed.
    #[wasm_bindgen(js_name = applyOp)]
    pub fn apply_op(&self, op: String) -> std::result::Result<JsValue, JsValue> {
        let reply = self.answer(&op).map_err(|e| JsValue::from(js_sys::Error::new(&e)))?;
        // A channel with charges to claim gets an alarm for when they are due (CHANNEL_CLAIM_SECONDS
        // after the oldest), so an idle channel is claimed without a request.
        if let Some(due) = self.claim_due_at() {
            let storage = self.state.storage();
            let at = Rc::clone(&self.claim_alarm_at);
            at.set(due);
            return Ok(worker::wasm_bindgen_futures::future_to_promise(async move {
                if let Err(e) = alarm_no_later_than(&storage, due).await {
                    worker::console_error!("x402 ledger: could not schedule the channel's claim: {e}");
                    at.set(0);
                }
                Ok(JsValue::from(reply))
            })
            .into());
        }
        if self.alarm_checked.get() {
            return Ok(JsValue::from(reply));
        }
        let scheduled = ensure_alarm(self.state.storage(), Rc::clone(&self.alarm_checked));
        Ok(worker::wasm_bindgen_futures::future_to_promise(async move {
            if let Err(e) = scheduled.await {
                worker::console_error!("x402 ledger: could not schedule pruning: {e}");
            }
            Ok(JsValue::from(reply))
        })
        .into())
    }

    /// The alarm handler: prunes what [`crate::ledger::PRUNE_AFTER_SECONDS`] allows and
    /// schedules the next run while records remain.
    pub async fn alarm(&self) -> std::result::Result<JsValue, JsValue> {
        self.prune().await.map_err(JsValue::from)?;
        self.claim_channel().await.map(|()| JsValue::UNDEFINED).map_err(JsValue::from)
    }
}

/// Sets the object's alarm for `at_ms` (Unix milliseconds). workers-rs reads a bare `i64` as an
/// offset from now, not a time: passing an absolute time put every alarm decades ahead (the
/// prune never ran).
async fn set_alarm_at(storage: &Storage, at_ms: i64) -> Result<()> {
    let offset = at_ms.saturating_sub(worker::Date::now().as_millis() as i64).max(0);
    storage.set_alarm(std::time::Duration::from_millis(offset as u64)).await
}

/// Sets the object's alarm to `at_seconds` unless one is set earlier.
async fn alarm_no_later_than(storage: &Storage, at_seconds: u64) -> Result<()> {
    let at = i64::try_from(at_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    match storage.get_alarm().await? {
        Some(existing) if existing <= at => Ok(()),
        _ => set_alarm_at(storage, at).await,
    }
}

impl PaymentLedger {
    /// A channel shard holding charges to claim and no claim alarm set yet: when they are due
    /// (the oldest charge plus `CHANNEL_CLAIM_SECONDS`, at least a second from now).
    fn claim_due_at(&self) -> Option<u64> {
        if self.claim_alarm_at.get() != 0 {
            return None;
        }
        let cache = self.cache.borrow();
        let channel = cache.as_ref()?.channel.as_ref().filter(|c| c.unclaimed() > 0 && c.unclaimed_since > 0)?;
        let config = super::vars::config(&self.env).ok()?;
        Some(channel.unclaimed_since.saturating_add(crate::gateway::channel_claim_after_seconds(&config, channel)).max(now_seconds() + 1))
    }

    /// The alarm of a channel shard: claims the channel when due (as a request would,
    /// `gateway::claim_channel`, its ledger calls coming back to this object), then sets the next
    /// alarm while charges remain unclaimed (a failed claim is tried again a minute later).
    async fn claim_channel(&self) -> Result<()> {
        self.claim_alarm_at.set(0);
        let store = self.store().map_err(worker::Error::RustError)?;
        let Some(channel) = store.channel().map_err(worker::Error::RustError)? else { return Ok(()) };
        if channel.unclaimed() == 0 {
            return Ok(());
        }
        let config = super::vars::config(&self.env).map_err(|e| worker::Error::RustError(e.to_string()))?;
        let now = now_seconds();
        if crate::gateway::channel_claim_due(&config, &channel, now) {
            let Some(id) = crate::evm::parse_bytes32(&channel.channel_id) else { return Ok(()) };
            let p = Rc::new(super::platform::Edge::background(&config, self.env.clone()));
            crate::gateway::claim_channel(Rc::clone(&config), p, crate::ledger::ChannelShard::of(&id)).await;
        }
        *self.cache.borrow_mut() = None;
        let after = self.store().and_then(|s| s.channel()).map_err(worker::Error::RustError)?;
        if let Some(c) = after.filter(|c| c.unclaimed() > 0) {
            let due = c.unclaimed_since.saturating_add(crate::gateway::channel_claim_after_seconds(&config, &c)).max(now + 60);
            self.claim_alarm_at.set(due);
            alarm_no_later_than(&self.state.storage(), due).await?;
        }
        Ok(())
    }
}

impl PaymentLedger {
    async fn prune(&self) -> Result<()> {
        let store = self.store().map_err(worker::Error::RustError)?;
        let now = now_seconds();
        store
            .run("DELETE FROM authorizations WHERE valid_before + ? < ? AND lease_until <= ?", vec![int(PRUNE_AFTER_SECONDS), int(now), int(now)])
            .map_err(worker::Error::RustError)?;
        store.run("DELETE FROM pass_usage WHERE expires_at + ? < ?", vec![int(PRUNE_AFTER_SECONDS), int(now)]).map_err(worker::Error::RustError)?;
        store.run("DELETE FROM payer_passes WHERE expires_at < ?", vec![int(now)]).map_err(worker::Error::RustError)?;
        store.run("DELETE FROM signin_nonces WHERE expires_at < ?", vec![int(now)]).map_err(worker::Error::RustError)?;
        // Reloaded on next use, without the pruned records.
        *self.cache.borrow_mut() = None;
        let left = store
            .rows(
                "SELECT (SELECT COUNT(*) FROM authorizations) + (SELECT COUNT(*) FROM payer_passes) + (SELECT COUNT(*) FROM signin_nonces), (SELECT COUNT(*) FROM pass_usage), (SELECT MIN(expires_at) FROM pass_usage)",
                vec![],
            )
            .map_err(worker::Error::RustError)?;
        let row = left.first();
        let (others, passes) = (row.map_or(0, |r| number(r.first())), row.map_or(0, |r| number(r.get(1))));
        let next = worker::Date::now().as_millis() as i64 + PRUNE_INTERVAL_MS;
        if others > 0 {
            set_alarm_at(&self.state.storage(), next).await?;
        } else if passes > 0 {
            // A pass shard holds nothing else: wake when its pass can be pruned, not every few
            // minutes until then (a pass may live a year).
            let prunable = row.map_or(0, |r| number(r.get(2))).saturating_add(PRUNE_AFTER_SECONDS + 1);
            let at = i64::try_from(prunable.saturating_mul(1000)).unwrap_or(i64::MAX);
            set_alarm_at(&self.state.storage(), next.max(at)).await?;
        } else {
            self.alarm_checked.set(false);
        }
        Ok(())
    }
}
