//! `PaymentLedger`: the Durable Object class that hosts [`crate::ledger`], one object per payer
//! (named by [`crate::ledger::shard_name`]), with SQLite storage.
//!
//! Protocol: `POST` with a JSON [`Op`] body (at most [`MAX_OP_BYTES`]), answered 200 with a JSON
//! [`Reply`], or 400 (unreadable op) / 500 (storage failure) with a text reason. Only the
//! paywall's own Worker can reach it (through the `LEDGER` binding); it has no public route.
//!
//! Atomicity: [`apply`] is synchronous and SQLite calls in a Durable Object do not yield, so
//! each operation runs alone against the object's state; the runtime's output gate holds the
//! reply until the writes are durable.
//!
//! Tables: `authorizations(key PRIMARY KEY, record JSON, valid_before, lease_until, tx)` and
//! `standing(id = 0, last_settled_at, last_refused_at)`. An alarm prunes records whose
//! `validBefore` passed more than [`crate::ledger::PRUNE_AFTER_SECONDS`] ago.

use std::cell::Cell;

use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, SqlStorageValue, State};

use crate::ledger::{apply, Op, Record, Standing, Store, PRUNE_AFTER_SECONDS};

/// Largest op body read, in bytes.
pub const MAX_OP_BYTES: usize = 16 * 1024;

/// Milliseconds between prune runs while records remain.
const PRUNE_INTERVAL_MS: i64 = 5 * 60 * 1000;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS authorizations (
    key TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    valid_before INTEGER NOT NULL,
    lease_until INTEGER NOT NULL,
    tx TEXT
);
CREATE INDEX IF NOT EXISTS authorizations_tx ON authorizations(tx);
CREATE TABLE IF NOT EXISTS standing (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    last_settled_at INTEGER NOT NULL,
    last_refused_at INTEGER NOT NULL
);";

#[durable_object]
pub struct PaymentLedger {
    state: State,
    /// Whether this instance has made sure an alarm is scheduled.
    alarm_checked: Cell<bool>,
    schema_ready: Cell<bool>,
}

/// [`Store`] over the object's SQLite database.
struct SqlStore {
    sql: SqlStorage,
}

#[derive(Deserialize)]
struct RecordRow {
    record: String,
}

#[derive(Deserialize)]
struct KeyRow {
    key: String,
}

#[derive(Deserialize)]
struct CountRow {
    n: f64,
}

#[derive(Deserialize)]
struct StandingRow {
    last_settled_at: f64,
    last_refused_at: f64,
}

fn int(v: u64) -> SqlStorageValue {
    SqlStorageValue::from(i64::try_from(v).unwrap_or(i64::MAX))
}

impl SqlStore {
    fn rows<T: for<'de> Deserialize<'de>>(&self, query: &str, bindings: Vec<SqlStorageValue>) -> std::result::Result<Vec<T>, String> {
        self.sql.exec(query, bindings).and_then(|c| c.to_array::<T>()).map_err(|e| format!("sqlite: {e}"))
    }

    fn run(&self, query: &str, bindings: Vec<SqlStorageValue>) -> std::result::Result<(), String> {
        self.sql.exec(query, bindings).map(|_| ()).map_err(|e| format!("sqlite: {e}"))
    }
}

impl Store for SqlStore {
    fn get(&self, key: &str) -> std::result::Result<Option<Record>, String> {
        let rows: Vec<RecordRow> = self.rows("SELECT record FROM authorizations WHERE key = ?", vec![key.into()])?;
        match rows.into_iter().next() {
            None => Ok(None),
            Some(r) => serde_json::from_str(&r.record).map(Some).map_err(|e| format!("stored record unreadable: {e}")),
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
        let rows: Vec<KeyRow> =
            self.rows("SELECT key FROM authorizations WHERE tx = ? AND key != ? LIMIT 1", vec![transaction.to_ascii_lowercase().into(), except.into()])?;
        Ok(rows.into_iter().next().map(|r| r.key))
    }

    fn in_flight(&self, now: u64, except: &str) -> std::result::Result<u32, String> {
        let rows: Vec<CountRow> = self.rows("SELECT COUNT(*) AS n FROM authorizations WHERE lease_until > ? AND key != ?", vec![int(now), except.into()])?;
        Ok(rows.first().map_or(0, |r| r.n as u32))
    }

    fn standing(&self) -> std::result::Result<Standing, String> {
        let rows: Vec<StandingRow> = self.rows("SELECT last_settled_at, last_refused_at FROM standing WHERE id = 0", vec![])?;
        Ok(rows.first().map_or(Standing::default(), |r| Standing { last_settled_at: r.last_settled_at as u64, last_refused_at: r.last_refused_at as u64 }))
    }

    fn set_standing(&mut self, s: &Standing) -> std::result::Result<(), String> {
        self.run(
            "INSERT INTO standing (id, last_settled_at, last_refused_at) VALUES (0, ?, ?)
             ON CONFLICT(id) DO UPDATE SET last_settled_at = excluded.last_settled_at, last_refused_at = excluded.last_refused_at",
            vec![int(s.last_settled_at), int(s.last_refused_at)],
        )
    }
}

fn now_seconds() -> u64 {
    worker::Date::now().as_millis() / 1000
}

impl PaymentLedger {
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

    /// Makes sure a prune alarm is scheduled once this instance has written records.
    async fn ensure_alarm(&self) -> Result<()> {
        if self.alarm_checked.get() {
            return Ok(());
        }
        let storage = self.state.storage();
        if storage.get_alarm().await?.is_none() {
            storage.set_alarm(worker::Date::now().as_millis() as i64 + PRUNE_INTERVAL_MS).await?;
        }
        self.alarm_checked.set(true);
        Ok(())
    }
}

impl DurableObject for PaymentLedger {
    fn new(state: State, _env: Env) -> Self {
        Self { state, alarm_checked: Cell::new(false), schema_ready: Cell::new(false) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let body = req.bytes().await?;
        if body.len() > MAX_OP_BYTES {
            return Response::error(format!("op of {} bytes is larger than {MAX_OP_BYTES}", body.len()), 400);
        }
        let op: Op = match serde_json::from_slice(&body) {
            Ok(op) => op,
            Err(e) => return Response::error(format!("unreadable op: {e}"), 400),
        };
        let mut store = match self.store() {
            Ok(s) => s,
            Err(e) => return Response::error(e, 500),
        };
        match apply(&mut store, op, now_seconds()) {
            Ok(reply) => {
                if let Err(e) = self.ensure_alarm().await {
                    worker::console_error!("x402 ledger: could not schedule pruning: {e}");
                }
                Response::from_json(&reply)
            }
            Err(e) => Response::error(e, 500),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        let store = self.store().map_err(worker::Error::RustError)?;
        let now = now_seconds();
        store
            .run("DELETE FROM authorizations WHERE valid_before + ? < ? AND lease_until <= ?", vec![int(PRUNE_AFTER_SECONDS), int(now), int(now)])
            .map_err(worker::Error::RustError)?;
        let left: Vec<CountRow> = store.rows("SELECT COUNT(*) AS n FROM authorizations", vec![]).map_err(worker::Error::RustError)?;
        if left.first().is_some_and(|r| r.n > 0.0) {
            self.state.storage().set_alarm(worker::Date::now().as_millis() as i64 + PRUNE_INTERVAL_MS).await?;
        } else {
            self.alarm_checked.set(false);
        }
        Response::ok("pruned")
    }
}
