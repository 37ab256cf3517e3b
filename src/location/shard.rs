//! One shard's part of the location service: its read replica of every
//! AOR, and, for the AORs it owns, the writer's duties (ARCHITECTURE.md
//! "Location: sharded writes, replicated reads"):
//! - apply REGISTERs in arrival order (§10.3, [`crate::registrar::register`]);
//! - publish each new record to its own replica, to the log, and to every
//!   other shard's inbox (via the [`Outbox`], so nothing is dropped);
//! - expire bindings with a timer wheel and publish the removals.
//!
//! An AOR whose last binding left is remembered, with no binding, for
//! `--max-expires` seconds, so that requests for it get 480 rather than
//! 404; then it is forgotten. (A later refresh that empties it again may be
//! forgotten earlier: the wheel keeps no per-AOR generation.)

use std::io;
use std::net::SocketAddr;

use super::expiry::ExpiryWheel;
use super::inbox::{Inbox, Outbox};
use super::store::Store;
use super::{AorRecord, LocationOp, Replica};
use crate::registrar::register::{aor_of, apply, Binding, RegisterError, RegistrarConfig};
use crate::sip::Message;

/// What one REGISTER did to an AOR's bindings (for the counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Bindings that did not exist before.
    pub created: u32,
    /// Bindings that existed and were written again.
    pub refreshed: u32,
    /// Bindings that existed and are gone.
    pub removed: u32,
}

impl Change {
    fn between(before: &[Binding], after: &[Binding]) -> Change {
        let had = |c: &[u8], set: &[Binding]| set.iter().any(|b| *b.contact == *c);
        let created = after.iter().filter(|b| !had(&b.contact, before)).count();
        let removed = before.iter().filter(|b| !had(&b.contact, after)).count();
        Change {
            created: created as u32,
            refreshed: (after.len() - created) as u32,
            removed: removed as u32,
        }
    }
}

/// A shard's replica plus its owner state.
pub struct LocationShard {
    /// This shard's index among all shards.
    pub index: usize,
    /// Every shard's replica of every AOR; the owner's own AORs in it are
    /// the authoritative state.
    pub replica: Replica,
    wheel: ExpiryWheel,
    outbox: Outbox,
    store: Option<Store>,
    due: Vec<u64>,
    forget_after: u64,
    log_failing: bool,
}

impl LocationShard {
    /// Shard `index` of `shards`, at time `now`; `store` logs its AORs.
    pub fn new(
        index: usize,
        shards: usize,
        now: u64,
        cfg: &RegistrarConfig,
        store: Option<Store>,
    ) -> LocationShard {
        LocationShard {
            index,
            // Sized up front (`--expected-aors`): growing re-files every
            // AOR at once, a pause of milliseconds at 100,000 AORs.
            replica: match cfg.expected_aors {
                0 => Replica::default(),
                n => Replica::with_capacity(n),
            },
            wheel: ExpiryWheel::new(now),
            outbox: Outbox::new(shards),
            store,
            due: Vec::new(),
            forget_after: u64::from(cfg.max_expires),
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

    /// Applies one REGISTER for an AOR this shard owns. On success the
    /// record to answer with is returned, with whether it changed: a change
    /// is published (replicas, log, wheel); a query or a retransmission
    /// changes nothing.
    pub fn register(
        &mut self,
        msg: &Message<'_>,
        src: SocketAddr,
        now: u64,
        cfg: &RegistrarConfig,
        inboxes: &[Inbox],
    ) -> Result<(AorRecord, Option<Change>), RegisterError> {
        let aor = aor_of(msg)?;
        let current = self.replica.lookup_shared(&aor);
        let before: Vec<_> = current.as_ref().map_or_else(Vec::new, |r| {
            r.bindings()
                .filter(|b| b.expires_at > now)
                .map(|b| b.to_binding())
                .collect()
        });
        let bindings = apply(&before, msg, src, now, cfg)?;
        if bindings == before {
            let rec = current.unwrap_or_else(|| AorRecord::new(&aor, &[]));
            return Ok((rec, None));
        }
        let change = Change::between(&before, &bindings);
        let rec = AorRecord::new(&aor, &bindings);
        self.publish(LocationOp::Set(rec.clone()), now, inboxes);
        Ok((rec, Some(change)))
    }

    /// Makes a change of an owned AOR visible everywhere: this replica, the
    /// log, the wheel, and every other shard's inbox.
    pub fn publish(&mut self, op: LocationOp, now: u64, inboxes: &[Inbox]) {
        if let Some(store) = &mut self.store {
            match &op {
                LocationOp::Set(rec) => store.record_set(rec),
                LocationOp::Remove(aor) => store.record_remove(aor),
            }
        }
        if let LocationOp::Set(rec) = &op {
            self.schedule(rec, now);
        }
        let at = std::time::Instant::now();
        for to in (0..inboxes.len()).filter(|&i| i != self.index) {
            self.outbox.send(inboxes, to, op.clone(), at);
        }
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
    /// publishes the changes; retries replica updates that waited for room.
    /// Returns how many bindings lapsed.
    pub fn tick(&mut self, now: u64, inboxes: &[Inbox]) -> u64 {
        let mut expired = 0u64;
        self.outbox.retry(inboxes);
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
                self.publish(LocationOp::Remove(rec.aor().into()), now, inboxes);
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
            self.publish(LocationOp::Set(next), now, inboxes);
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
        let (index, shards) = (self.index, self.outbox.receivers());
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

    /// Replica updates still waiting for room in another shard's inbox.
    pub fn waiting(&self) -> usize {
        self.outbox.waiting()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(cseq: u32, contacts: &str) -> Vec<u8> {
        format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.5;branch=z9hG4bK{cseq}\r\n\
To: <sip:ann@example.com>\r\nFrom: <sip:ann@example.com>;tag=1\r\nCall-ID: c\r\n\
CSeq: {cseq} REGISTER\r\n{contacts}\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn changes_are_counted_and_expiry_reports_what_lapsed() {
        let cfg = RegistrarConfig::default();
        let mut loc = LocationShard::new(0, 1, 0, &cfg, None);
        let src = "192.0.2.5:5060".parse().unwrap();
        let mut reg = |cseq, contacts: &str, now| {
            let data = register(cseq, contacts);
            let msg = Message::parse(&data).unwrap();
            loc.register(&msg, src, now, &cfg, &[]).unwrap().1
        };
        let two = "Contact: <sip:ann@192.0.2.5>;expires=60, <sip:ann@192.0.2.6>;expires=120\r\n";
        assert_eq!(
            reg(1, two, 0),
            Some(Change {
                created: 2,
                refreshed: 0,
                removed: 0
            })
        );
        let refresh = "Contact: <sip:ann@192.0.2.5>;expires=60, <sip:ann@192.0.2.6>;expires=0\r\n";
        assert_eq!(
            reg(2, refresh, 10),
            Some(Change {
                created: 0,
                refreshed: 1,
                removed: 1
            })
        );
        assert_eq!(
            reg(2, refresh, 10),
            None,
            "a retransmission changes nothing"
        );
        assert_eq!(loc.tick(69, &[]), 0);
        assert_eq!(loc.tick(71, &[]), 1, "the refreshed binding lapsed at 70");
        assert!(loc
            .replica
            .lookup(b"sip:ann@example.com")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn expected_aors_sizes_the_table_so_that_it_does_not_grow() {
        let cfg = RegistrarConfig {
            expected_aors: 10_000,
            ..RegistrarConfig::default()
        };
        let mut loc = LocationShard::new(0, 1, 0, &cfg, None);
        let bytes = loc.replica.table_bytes();
        for i in 0..10_000 {
            let aor = format!("sip:u{i}@example.com");
            loc.replica
                .apply(LocationOp::Set(AorRecord::new(aor.as_bytes(), &[])));
        }
        assert_eq!(loc.replica.table_bytes(), bytes, "no growth up to 10,000");
        let small = LocationShard::new(0, 1, 0, &RegistrarConfig::default(), None);
        assert_eq!(small.replica.table_bytes(), 0, "0: starts empty, as before");
    }

    #[test]
    fn bindings_that_lapse_in_one_tick_leave_the_aor_remembered() {
        // The registrar fuzz target's finding: two bindings due in the same
        // tick made the AOR vanish (404) instead of answering 480 for
        // --max-expires.
        let cfg = RegistrarConfig {
            max_expires: 120,
            ..RegistrarConfig::default()
        };
        let mut loc = LocationShard::new(0, 1, 0, &cfg, None);
        let src = "192.0.2.5:5060".parse().unwrap();
        // Two REGISTERs, so two entries on the wheel (one per change).
        for (cseq, contact) in [
            (1, "Contact: <sip:ann@192.0.2.5>;expires=60\r\n"),
            (2, "Contact: <sip:ann@192.0.2.6>;expires=90\r\n"),
        ] {
            let data = register(cseq, contact);
            let msg = Message::parse(&data).unwrap();
            loc.register(&msg, src, 0, &cfg, &[]).unwrap();
        }
        assert_eq!(loc.tick(100, &[]), 2, "both lapsed in this tick");
        let rec = loc.replica.lookup(b"sip:ann@example.com");
        assert!(rec.is_some_and(|r| r.is_empty()), "remembered, empty (480)");
        assert_eq!(loc.tick(200, &[]), 0);
        assert!(loc.replica.lookup(b"sip:ann@example.com").is_some());
        loc.tick(221, &[]);
        assert!(
            loc.replica.lookup(b"sip:ann@example.com").is_none(),
            "forgotten after 120 s"
        );
    }
}
