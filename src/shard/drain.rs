//! Between batches, a shard reads its mail (ARCHITECTURE.md, "Threads"):
//! replica updates and other shards' authentication bans first, as soon as a batch arrives, so that a request
//! sent after an owner's 200 finds the change whichever shard it lands on;
//! then REGISTERs handed to it as owner, and answers to send from its
//! socket.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::counters::add;
use super::mail::{Ban, Mail};
use super::Shard;
use crate::io::SendQueue;
use crate::location::LocationOp;
use crate::proxy::DropReason;
use crate::sip::Message;

/// Inbox REGISTERs one loop iteration answers at most, so that received
/// datagrams keep their share of the send slots.
const REGISTERS_PER_LOOP: usize = 16;

impl<'a> Shard<'a> {
    /// Applies every replica update waiting in the inbox, setting other
    /// mail aside for [`Self::drain_inbox`]. Called when a batch of
    /// datagrams has arrived and before the first is handled: an owner
    /// publishes a change before its 200 leaves, so a request sent by
    /// anyone who saw that 200 finds the change here, whichever shard it
    /// lands on.
    pub fn apply_updates(&mut self) {
        let shared = self.shared;
        let Some(inbox) = shared.inboxes.get(self.index) else {
            return;
        };
        inbox.arm();
        while let Some(mail) = inbox.pop() {
            match mail {
                Mail::Location(op, at) => self.apply_update(op, at),
                // Before the batch too: the banned source may be in it.
                Mail::Ban(ip, why) => self.apply_ban(ip, why),
                // Another node's change: applied now rather than set
                // aside, so that the inbox's bound is what holds a load
                // back (the tailer waits on the inbox, not on set_aside).
                Mail::Cluster {
                    aor,
                    change,
                    loaded,
                } => self.apply_cluster(&aor, &change, loaded),
                other => self.set_aside.push_back(other),
            }
        }
    }

    fn apply_update(&mut self, op: LocationOp, at: Instant) {
        self.location.replica.apply(op);
        let us = at.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
        let max = &self.counters.replica_delay_max_us;
        if us > max.load(Ordering::Relaxed) {
            max.store(us, Ordering::Relaxed);
        }
    }

    fn apply_ban(&mut self, ip: std::net::IpAddr, why: Ban) {
        match why {
            Ban::Flood => self.admission.ban(ip, self.now_ms),
            Ban::Guessing => {
                if let Some(f) = &mut self.auth_failures {
                    f.ban(ip, self.now_ms);
                }
            }
        }
    }

    /// Mails a ban this shard just decided to every other shard: under
    /// `--steer call-id` the source's next datagram may reach any of
    /// them. Best effort: a full inbox skips the mail, and that shard
    /// bans the source when it goes over there.
    pub(super) fn tell_others_of_ban(&self, ip: std::net::IpAddr, why: Ban) {
        for (i, inbox) in self.shared.inboxes.iter().enumerate() {
            if i != self.index {
                let _ = inbox.push(Mail::Ban(ip, why));
            }
        }
    }

    /// Folds another node's change into this owner's record, and from
    /// there into every replica of this node.
    fn apply_cluster(&mut self, aor: &[u8], change: &crate::cluster::Change, loaded: bool) {
        let Some(side) = self.cluster.as_mut() else {
            return;
        };
        let (outbox, inboxes, index) = (&mut self.outbox, &self.shared.inboxes, self.index);
        if side.apply(
            &mut self.location,
            aor,
            change,
            loaded,
            self.now,
            &mut |op| outbox.broadcast(inboxes, index, op),
        ) {
            add(&self.counters.cluster_applied, 1);
        }
    }

    /// Reads the inbox (after what [`Self::apply_updates`] set aside):
    /// replica updates, REGISTERs to apply (at most [`REGISTERS_PER_LOOP`],
    /// and only while a send slot is free), and answers to send.
    pub fn drain_inbox<S: SendQueue>(&mut self, send: &mut S) {
        let shared = self.shared;
        let Some(inbox) = shared.inboxes.get(self.index) else {
            return;
        };
        inbox.arm();
        let mut registers = 0;
        while registers < REGISTERS_PER_LOOP && send.slot().is_some() {
            let Some(mail) = self.set_aside.pop_front().or_else(|| inbox.pop()) else {
                break;
            };
            match mail {
                Mail::Location(op, at) => self.apply_update(op, at),
                Mail::Ban(ip, why) => self.apply_ban(ip, why),
                Mail::Register {
                    data,
                    src,
                    arrived_on,
                } => {
                    registers += 1;
                    // The arrival shard parsed it already; a failure here
                    // would be a bug, and costs only this datagram.
                    match Message::parse(&data) {
                        Ok(msg) => {
                            // Its drops are counted; the log speaks of received datagrams.
                            let _ = self.answer_register(&msg, &src, arrived_on, send);
                        }
                        Err(_) => self.counters.dropped(DropReason::Malformed),
                    }
                }
                Mail::Response { data, src } => self.mailed_response(&data, &src, send),
                Mail::Cluster {
                    aor,
                    change,
                    loaded,
                } => self.apply_cluster(&aor, &change, loaded),
                Mail::Send { data, to } => {
                    if let Some(slot) = send.slot() {
                        if let Some(dst) = slot.get_mut(..data.len()) {
                            dst.copy_from_slice(&data);
                            send.commit(data.len(), to);
                        }
                    }
                }
            }
        }
        // A wake-up may have been consumed with mail left behind (the
        // per-loop limits): make sure the next loop looks again soon.
        if !inbox.is_empty() || !self.set_aside.is_empty() {
            inbox.wake();
        } else if self.set_aside.capacity() > 1024 {
            // A burst is over: give its memory back.
            self.set_aside = VecDeque::new();
        }
    }
}
