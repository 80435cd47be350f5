//! A pass's shard (`pass:<id>`, [`super::PassShard`]): how many requests the pass has admitted,
//! whether it is revoked, when it expires ([`PassUsage`]). The pass's terms live in its KV record,
//! which the paywall wrote; the shard needs no separate creation step. A payer's index of its
//! passes lives in the payer's shard ([`super::PayerPasses`]).

use super::{Admission, Apply, PassOp, PassRefund, PassRefusal, PassRevocation, PassRevoke, PassSold, PassUsage, PassUse, Recorded, Reply, Store};

impl Apply for PassOp {
    type Output = Reply;
    fn apply(self, store: &mut impl Store, now: u64) -> Result<Reply, String> {
        match self {
            PassOp::PassUse(op) => Reply::of(&op.apply(store, now)?),
            PassOp::PassRefund => Reply::of(&PassRefund.apply(store, now)?),
            PassOp::PassSold(op) => Reply::of(&op.apply(store, now)?),
            PassOp::PassRevoke(op) => Reply::of(&op.apply(store, now)?),
        }
    }
}

impl Apply for PassUse {
    type Output = Admission;
    fn apply(self, store: &mut impl Store, now: u64) -> Result<Admission, String> {
        let PassUse { max_requests, expires_at } = self;
        let mut usage = store.pass_usage()?.unwrap_or(PassUsage { used: 0, revoked: false, expires_at });
        let refused = |reason| Ok(Admission::Refused { reason });
        if usage.revoked {
            return refused(PassRefusal::Revoked);
        }
        if now >= expires_at {
            return refused(PassRefusal::Expired);
        }
        if max_requests.is_some_and(|max| usage.used >= max) {
            return refused(PassRefusal::UsedUp);
        }
        usage.used = usage.used.saturating_add(1);
        usage.expires_at = expires_at;
        store.set_pass_usage(&usage)?;
        Ok(Admission::Admitted { remaining: max_requests.map(|max| max - usage.used) })
    }
}

impl Apply for PassRefund {
    type Output = Recorded;
    fn apply(self, store: &mut impl Store, _now: u64) -> Result<Recorded, String> {
        if let Some(mut usage) = store.pass_usage()?.filter(|u| u.used > 0) {
            usage.used -= 1;
            store.set_pass_usage(&usage)?;
        }
        Ok(Recorded::Done)
    }
}

impl Apply for PassSold {
    type Output = Recorded;
    fn apply(self, store: &mut impl Store, _now: u64) -> Result<Recorded, String> {
        if store.pass_usage()?.is_none() {
            store.set_pass_usage(&PassUsage { used: 0, revoked: false, expires_at: self.expires_at })?;
        }
        Ok(Recorded::Done)
    }
}

impl Apply for PassRevoke {
    type Output = PassRevocation;
    fn apply(self, store: &mut impl Store, _now: u64) -> Result<PassRevocation, String> {
        let PassRevoke { expires_at, known } = self;
        let mut usage = match store.pass_usage()? {
            Some(u) => u,
            None if known => PassUsage { used: 0, revoked: false, expires_at },
            None => return Ok(PassRevocation::Unknown),
        };
        let already = usage.revoked;
        if !already {
            usage.revoked = true;
            store.set_pass_usage(&usage)?;
        }
        Ok(PassRevocation::Revoked { already, expires_at: usage.expires_at })
    }
}
