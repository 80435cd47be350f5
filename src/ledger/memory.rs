//! [`MemoryStore`]: a shard in memory.

use super::{prunable, PassUsage, Record, Settlement, Standing, Store};

/// A [`Store`] in memory: one shard's records and standing, with an index of settled
/// transaction hashes. The host tests' ledger, and the Durable Object's read cache.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    pub records: std::collections::BTreeMap<String, Record>,
    pub standing: Standing,
    pub pass_usage: Option<PassUsage>,
    pub payer_passes: Vec<(String, u64)>,
    pub nonces: std::collections::HashMap<String, u64>,
    /// A channel shard's channel.
    pub channel: Option<super::channel::ChannelRecord>,
    /// Lower-case transaction hash → record key, for settled records.
    by_transaction: std::collections::HashMap<String, String>,
    /// Record key → `lease_until`, for records holding a lease (in flight, or lapsed and not
    /// yet finished), so counting what is in flight does not scan every record.
    leased: std::collections::HashMap<String, u64>,
}

fn settled_transaction(r: &Record) -> Option<String> {
    match &r.settlement {
        Settlement::Settled { transaction, .. } if !transaction.is_empty() => Some(transaction.to_ascii_lowercase()),
        _ => None,
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Record>, String> {
        Ok(self.records.get(key).cloned())
    }
    fn put(&mut self, key: &str, record: &Record) -> Result<(), String> {
        if let Some(old) = self.records.insert(key.to_string(), record.clone()).as_ref().and_then(settled_transaction) {
            self.by_transaction.remove(&old);
        }
        if let Some(tx) = settled_transaction(record) {
            self.by_transaction.insert(tx, key.to_string());
        }
        if record.lease_until > 0 {
            self.leased.insert(key.to_string(), record.lease_until);
        } else {
            self.leased.remove(key);
        }
        Ok(())
    }
    fn delete(&mut self, key: &str) -> Result<(), String> {
        if let Some(tx) = self.records.remove(key).as_ref().and_then(settled_transaction) {
            self.by_transaction.remove(&tx);
        }
        self.leased.remove(key);
        Ok(())
    }
    fn find_transaction(&self, transaction: &str, except: &str) -> Result<Option<String>, String> {
        Ok(self.by_transaction.get(&transaction.to_ascii_lowercase()).filter(|k| k.as_str() != except).cloned())
    }
    fn in_flight(&self, now: u64, except: &str) -> Result<u32, String> {
        Ok(self.leased.iter().filter(|(k, until)| k.as_str() != except && **until > now).count() as u32)
    }
    fn standing(&self) -> Result<Standing, String> {
        Ok(self.standing)
    }
    fn set_standing(&mut self, standing: &Standing) -> Result<(), String> {
        self.standing = *standing;
        Ok(())
    }
    fn pass_usage(&self) -> Result<Option<PassUsage>, String> {
        Ok(self.pass_usage)
    }
    fn set_pass_usage(&mut self, usage: &PassUsage) -> Result<(), String> {
        self.pass_usage = Some(*usage);
        Ok(())
    }
    fn payer_passes(&self) -> Result<Vec<(String, u64)>, String> {
        Ok(self.payer_passes.clone())
    }
    fn add_payer_pass(&mut self, pass: &str, expires_at: u64) -> Result<(), String> {
        self.payer_passes.retain(|(p, _)| p != pass);
        self.payer_passes.push((pass.to_string(), expires_at));
        Ok(())
    }
    fn nonce_used(&self, nonce: &str) -> Result<bool, String> {
        Ok(self.nonces.contains_key(nonce))
    }
    fn add_nonce(&mut self, nonce: &str, expires_at: u64) -> Result<(), String> {
        self.nonces.insert(nonce.to_string(), expires_at);
        Ok(())
    }
    fn channel(&self) -> Result<Option<super::channel::ChannelRecord>, String> {
        Ok(self.channel.clone())
    }
    fn set_channel(&mut self, channel: &super::channel::ChannelRecord) -> Result<(), String> {
        self.channel = Some(channel.clone());
        Ok(())
    }
}

impl MemoryStore {
    /// Deletes every prunable record (what the Durable Object's alarm does).
    pub fn prune(&mut self, now: u64) {
        let gone: Vec<String> = self.records.iter().filter(|(_, r)| prunable(r.valid_before, r.lease_until, now)).map(|(k, _)| k.clone()).collect();
        for k in gone {
            let _ = self.delete(&k);
        }
    }
}
