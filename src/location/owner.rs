//! One shard's part of the location service: its read replica of every
//! AOR, and, for the AORs it owns, the owner's duties (ARCHITECTURE.md
//! "Location: sharded writes, replicated reads"):
//! - hand out the current record and publish each new one (the registrar
//!   decides what it is, [`crate::registrar::save`]) to its own replica,
//!   to the log, and to a fan-out the caller gives for every other shard;
//! - expire bindings with a timer wheel and publish the removals.
//!
//! An AOR whose last binding left is remembered, with no binding, for
//! `--max-expires` seconds, so that requests for it get 480 rather than
//! 404; then it is forgotten. (A later refresh that empties it again may be
//! forgotten earlier: the wheel keeps no per-AOR generation.)

use std::io;

use super::expiry::ExpiryWheel;
use super::store::Store;
use super::{AorRecord, LocationOp, Replica};

/// A shard's replica plus its owner state.
pub struct Owner {
    /// This shard's index among all shards.
    pub index: usize,
    /// Every shard's replica of every AOR; the owner's own AORs in it are
    /// the authoritative state.
    pub replica: Replica,
    /// The node its registrar's bindings are stamped with (`--node-id`);
    /// empty outside a cluster.
    pub node: Box<[u8]>,
    shards: usize,
    wheel: ExpiryWheel,
    store: Option<Store>,
    due: Vec<u64>,
    forget_after: u64,
    log_failing: bool,
}

impl Owner {
    /// Shard `index` of `shards`, at time `now`; `store` logs its AORs.
    /// The table has room for `expected_aors` before it first grows
    /// (`--expected-aors`; 0 starts empty), and an emptied AOR is
    /// forgotten after `forget_after` seconds (`--max-expires`).
    pub fn new(
        index: usize,
        shards: usize,
        now: u64,
        expected_aors: usize,
        forget_after: u32,
        store: Option<Store>,
    ) -> Owner {
        Owner {
            index,
            // Sized up front (`--expected-aors`): growing re-files every
            // AOR at once, a pause of milliseconds at 100,000 AORs.
            replica: match expected_aors {
                0 => Replica::default(),
                n => Replica::with_capacity(n),
            },
            node: Box::default(),
            shards,
            wheel: ExpiryWheel::new(now),
            store,
            due: Vec::new(),
            forget_after: u64::from(forget_after),
            log_failing: false,
        }
    }

    /// Adopts a record loaded at start-up that this shard owns: into the
    /// replica and the wheel (the other shards get it by [`Self::publish`]
    /// from the caller, or load it themselves).
    pub fn adopt(&mut self, rec: AorRecord, now: u64) {
        self.schedule(&rec, now);
        self.replica.apply(LocationOp::Set(rec));
    }

    /// The current record of `aor` (canonical form), shared with the
    /// replica: what a REGISTER for it starts from.
    pub fn current(&self, aor: &[u8]) -> Option<AorRecord> {
        self.replica.lookup_shared(aor)
    }

    /// Makes a change of an owned AOR visible everywhere: this replica, the
    /// log, the wheel, and `fanout`, which carries it to every other
    /// shard's replica.
    pub fn publish(&mut self, op: LocationOp, now: u64, fanout: &mut dyn FnMut(&LocationOp)) {
        if let Some(store) = &mut self.store {
            match &op {
                LocationOp::Set(rec) => store.record_set(rec),
                LocationOp::Remove(aor) => store.record_remove(aor),
            }
        }
        if let LocationOp::Set(rec) = &op {
            self.schedule(rec, now);
        }
        fanout(&op);
        self.replica.apply(op);
    }

    /// When the wheel should look at a record again: its first binding to
    /// lapse, or, with none left, when it is forgotten.
    fn schedule(&mut self, rec: &AorRecord, now: u64) {
        let at = match rec.bindings().map(|b| b.expires_at).min() {
            Some(at) => at,
            None => now + self.forget_after,
        };
        self.wheel.schedule(rec.hash(), at);
    }

    /// Removes what has lapsed by `now` from the AORs this shard owns and
    /// publishes the changes through `fanout`. Returns how many bindings
    /// lapsed.
    pub fn tick(&mut self, now: u64, fanout: &mut dyn FnMut(&LocationOp)) -> u64 {
        let mut expired = 0u64;
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        self.wheel.due(now, &mut due);
        // One AOR can be due several times in one tick (a binding each,
        // when the clock jumped past them): look at it once, or the second
        // look finds the record the first one just emptied and forgets it
        // at once instead of after --max-expires (found by fuzzing).
        due.sort_unstable();
        due.dedup();
        for &key in &due {
            let Some(rec) = self.replica.by_hash(key) else {
                continue;
            };
            if rec.is_empty() {
                // Still empty when its time came: forget it.
                self.publish(LocationOp::Remove(rec.aor().into()), now, fanout);
                continue;
            }
            if rec.bindings().all(|b| b.expires_at > now) {
                continue; // refreshed since it was scheduled
            }
            let live: Vec<_> = rec
                .bindings()
                .filter(|b| b.expires_at > now)
                .map(|b| b.to_binding())
                .collect();
            expired += (rec.len() - live.len()) as u64;
            let next = AorRecord::new(rec.aor(), &live);
            self.publish(LocationOp::Set(next), now, fanout);
        }
        self.due = due;
        expired
    }

    /// Writes the log entries of this loop iteration (before the 200 OKs
    /// leave), and compacts the log when it has grown. A failure is
    /// remembered until a commit succeeds (see [`Self::log_failing`]).
    pub fn commit(&mut self) -> io::Result<()> {
        let r = self.commit_inner();
        self.log_failing = r.is_err();
        r
    }

    /// True while the last log write failed (disk full, I/O error): the
    /// shard then refuses REGISTERs with 503 rather than promise with a 200
    /// what it cannot keep.
    pub fn log_failing(&self) -> bool {
        self.log_failing
    }

    fn commit_inner(&mut self) -> io::Result<()> {
        let (index, shards) = (self.index, self.shards);
        let Some(store) = &mut self.store else {
            return Ok(());
        };
        store.commit()?;
        if store.should_compact() {
            let owned = self
                .replica
                .records()
                .filter(|r| super::owner_of(r.aor(), shards) == index);
            store.compact(owned)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_aors_sizes_the_table_so_that_it_does_not_grow() {
        let mut loc = Owner::new(0, 1, 0, 10_000, 86_400, None);
        let bytes = loc.replica.table_bytes();
        for i in 0..10_000 {
            let aor = format!("sip:u{i}@example.com");
            loc.replica
                .apply(LocationOp::Set(AorRecord::new(aor.as_bytes(), &[])));
        }
        assert_eq!(loc.replica.table_bytes(), bytes, "no growth up to 10,000");
        let small = Owner::new(0, 1, 0, 0, 86_400, None);
        assert_eq!(small.replica.table_bytes(), 0, "0: starts empty, as before");
    }
}
