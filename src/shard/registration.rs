//! REGISTER between shards (ARCHITECTURE.md, "Ownership"): a REGISTER for
//! a local domain is applied by its AOR's owner shard. One that arrives
//! elsewhere is challenged there when it has no credentials, else handed to
//! the owner's inbox (503 when full); the owner applies it
//! ([`crate::registrar::save`]), publishes the change and answers, from
//! its own socket or through the arrival shard's inbox.

use crate::transport::Source;

use super::answer::{commit_reply, reply_to, write_auth_refusal, write_register_answer};
use super::counters::{add, status_class};
use super::mail::Mail;
use super::outcome::Outcome;
use super::Shard;
use crate::io::{SendQueue, SEND_SLOT};
use crate::location::owner_of;
use crate::proxy::DropReason;
use crate::registrar::save::save;
use crate::registrar::{aor_of, RegisterError};
use crate::sip::{HeaderName, Message, Uri};

impl<'a> Shard<'a> {
    /// A REGISTER for a local domain: applied here when this shard owns the
    /// AOR, else passed to the owner's inbox (503 when it is full).
    pub(super) fn register<S: SendQueue>(
        &mut self,
        msg: &Message<'_>,
        bytes: &[u8],
        src: &Source,
        send: &mut S,
    ) -> Outcome {
        // §10.3 step 3: the To must be an AOR of a domain we serve.
        let to = match msg.to_uri() {
            Ok(Uri::Sip(u)) => Some(u),
            _ => None, // aor_of answers 400 below
        };
        if to.is_some_and(|u| !self.shared.proxy.is_local_domain(&u, src.local)) {
            return self.answer_error(msg, src, RegisterError::NotOurDomain, send);
        }
        let owner = match aor_of(msg) {
            Ok(aor) => owner_of(&aor, self.shared.shards()),
            Err(e) => return self.answer_error(msg, src, e, send),
        };
        // §22.1 (and step 2 of §10.3): a REGISTER without credentials is
        // challenged here, sparing the owner's inbox; credentials are
        // checked by the owner, whose nonce-count table sees every
        // REGISTER of the AOR.
        if let (Some(_), Some(to)) = (&self.shared.auth, to) {
            if msg.header(HeaderName::Authorization).is_none() {
                // A banned source gets no challenge either.
                if self.auth_banned(src) {
                    return self.drop(DropReason::AuthBanned);
                }
                add(&self.counters.auth_challenges, 1);
                let refusal = self.challenge(401, &to);
                return self.refuse_auth(msg, src, refusal, send);
            }
        }
        if owner == self.index {
            return self.answer_register(msg, src, self.index, send);
        }
        let mail = Mail::Register {
            data: bytes.into(),
            src: *src,
            arrived_on: self.index,
        };
        match self.shared.inboxes.get(owner).map(|i| i.push(mail)) {
            Some(Ok(())) => {
                add(&self.counters.handed_off, 1);
                Outcome::HandedOff
            }
            _ => {
                add(&self.counters.registers_refused, 1);
                self.unavailable(msg, src, 1, DropReason::InboxFull, send)
            }
        }
    }

    /// Applies a REGISTER this shard owns and answers it, from this shard's
    /// socket or, when it came in on another listen address, through the
    /// inbox of the shard it arrived on.
    pub(super) fn answer_register<S: SendQueue>(
        &mut self,
        msg: &Message<'_>,
        src: &Source,
        arrived_on: usize,
        send: &mut S,
    ) -> Outcome {
        if self.location.log_failing() {
            add(&self.counters.registers_refused, 1);
            return self.unavailable(msg, src, 5, DropReason::WriteFailed, send);
        }
        if let Some(refusal) = self.authenticate_register(msg, src) {
            let Some(code) = refusal.status() else {
                return self.drop(DropReason::AuthBanned);
            };
            let nonce = self.nonce_for(&refusal);
            return self.deliver(msg, src, arrived_on, code, send, |out| {
                write_auth_refusal(msg, src, refusal, &nonce, out)
            });
        }
        let (outbox, inboxes, index) = (&mut self.outbox, &self.shared.inboxes, self.index);
        let result = save(
            &mut self.location,
            msg,
            *src,
            self.now,
            &self.shared.registrar,
            &mut |op| outbox.broadcast(inboxes, index, op),
        );
        let code = match &result {
            Ok(_) => 200,
            Err(e) => e.status().0,
        };
        if let Ok(saved) = &result {
            if let Some(change) = saved.change {
                let c = self.counters;
                add(&c.registered, 1);
                add(&c.bindings_created, change.created.into());
                add(&c.bindings_refreshed, change.refreshed.into());
                add(&c.bindings_removed, change.removed.into());
                // To the other nodes, through the link's queue.
                if let Some(side) = &mut self.cluster {
                    side.registered(saved.before.as_ref(), &saved.record, self.now);
                }
            }
        }
        let result = result.map(|saved| saved.record);
        let now = self.now;
        self.deliver(msg, src, arrived_on, code, send, |out| {
            write_register_answer(msg, src, &result, now, out)
        })
    }

    /// Sends an owner's answer to a REGISTER: from this shard's own socket
    /// when that can send from the address the request arrived at (the same
    /// listen address, or one of the same port and family: `IP_PKTINFO`
    /// names the source address), else through the inbox of the shard it
    /// arrived on.
    pub(super) fn deliver<S: SendQueue>(
        &self,
        msg: &Message<'_>,
        src: &Source,
        arrived_on: usize,
        code: u16,
        send: &mut S,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Outcome {
        let to = reply_to(msg, src);
        // An answer for a connection reaches its owner whoever writes it
        // (see `sends.rs`).
        if src.conn.is_some() || self.shared.can_send_as(self.index, arrived_on, src.local) {
            let Some(slot) = send.slot() else {
                return self.drop(DropReason::WriteFailed);
            };
            let written = write(slot);
            return commit_reply(send, written, code, to, self.counters);
        }
        let mut buf = vec![0u8; SEND_SLOT];
        let Some(n) = write(&mut buf) else {
            return self.drop(DropReason::WriteFailed);
        };
        buf.truncate(n);
        let mail = Mail::Send {
            data: buf.into_boxed_slice(),
            to,
        };
        match self.shared.inboxes.get(arrived_on).map(|i| i.push(mail)) {
            Some(Ok(())) => {
                add(&self.counters.replies[status_class(code)], 1);
                Outcome::Answered(code)
            }
            _ => self.drop(DropReason::InboxFull),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::ProxyConfig;
    use crate::registrar::RegistrarConfig;
    use crate::shard::counters::ShardCounters;
    use crate::shard::Shared;
    use crate::transport::Dest;
    use std::sync::atomic::Ordering;

    /// Collects what a shard sends.
    #[derive(Default)]
    struct Sent(Vec<(Vec<u8>, std::net::SocketAddr)>, Vec<u8>);

    impl SendQueue for Sent {
        fn slot(&mut self) -> Option<&mut [u8]> {
            self.1.resize(SEND_SLOT, 0);
            Some(&mut self.1[..])
        }
        fn commit(&mut self, len: usize, dest: Dest) {
            let to = dest.peer().expect("a datagram");
            self.0.push((self.1[..len].to_vec(), to));
        }
    }

    fn register(user: &str) -> Vec<u8> {
        format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bK{user}\r\n\
To: <sip:{user}@example.com>\r\nFrom: <sip:{user}@example.com>;tag=1\r\nCall-ID: {user}\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:{user}@192.0.2.5>\r\n\r\n"
        )
        .into_bytes()
    }

    /// Users whose AOR shard 1 of 2 owns.
    fn owned_by_1() -> Vec<String> {
        (0..100)
            .map(|i| format!("u{i}"))
            .filter(|u| owner_of(format!("sip:{u}@example.com").as_bytes(), 2) == 1)
            .collect()
    }

    fn shared(listen_of: Vec<usize>, capacity: usize) -> Shared {
        let mut proxy = ProxyConfig::at("192.0.2.1:5060".parse().unwrap());
        proxy.domains = vec![b"example.com"[..].into()];
        Shared::with_inbox_capacity(proxy, RegistrarConfig::default(), listen_of, capacity).unwrap()
    }

    fn status(data: &[u8]) -> u16 {
        Message::parse(data).unwrap().status().unwrap()
    }

    /// Shard `i` of 2, its registrations in memory.
    fn shard<'a>(i: usize, shared: &'a Shared, counters: &'a ShardCounters) -> Shard<'a> {
        Shard::new(i, shared, counters, shared.registrar.owner(i, 2, 0, None))
    }

    #[test]
    fn a_full_owner_inbox_answers_503_and_the_owner_answers_what_it_took() {
        let shared = shared(vec![0, 0], 1);
        let (c0, c1) = (ShardCounters::default(), ShardCounters::default());
        let (mut s0, mut s1) = (shard(0, &shared, &c0), shard(1, &shared, &c1));
        let users = owned_by_1();
        let src = Source::udp(
            "192.0.2.5:5060".parse().unwrap(),
            "192.0.2.1:5060".parse().unwrap(),
        );
        let mut out0 = Sent::default();
        let handed = s0.handle(&register(&users[0]), &src, &mut out0);
        assert_eq!(handed, Outcome::HandedOff);
        assert!(out0.0.is_empty(), "handed to the owner, not answered here");
        let refused = s0.handle(&register(&users[1]), &src, &mut out0);
        assert_eq!(refused, Outcome::Answered(503));
        let (busy, to) = &out0.0[0];
        assert_eq!(status(busy), 503);
        assert_eq!(*to, src.peer);
        let m = Message::parse(busy).unwrap();
        assert_eq!(
            m.header(crate::sip::HeaderName::RetryAfter),
            Some(&b"1"[..])
        );
        assert_eq!(c0.handed_off.load(Ordering::Relaxed), 1);
        assert_eq!(c0.registers_refused.load(Ordering::Relaxed), 1);

        let mut out1 = Sent::default();
        s1.drain_inbox(&mut out1);
        assert_eq!(status(&out1.0[0].0), 200);
        assert_eq!(c1.registered.load(Ordering::Relaxed), 1);
        // The owner's change reached shard 0's replica through its inbox.
        s0.drain_inbox(&mut out0);
        let aor = format!("sip:{}@example.com", users[0]);
        assert!(s0.location.replica.lookup(aor.as_bytes()).is_some());
    }

    #[test]
    fn an_answer_for_another_listen_address_goes_back_to_the_arrival_shard() {
        let shared = shared(vec![0, 1], 16);
        let (c0, c1) = (ShardCounters::default(), ShardCounters::default());
        let (mut s0, mut s1) = (shard(0, &shared, &c0), shard(1, &shared, &c1));
        let user = &owned_by_1()[0];
        let src = Source::udp(
            "192.0.2.5:5060".parse().unwrap(),
            "192.0.2.1:5060".parse().unwrap(),
        );
        let (mut out0, mut out1) = (Sent::default(), Sent::default());
        s0.handle(&register(user), &src, &mut out0);
        s1.drain_inbox(&mut out1);
        assert!(out1.0.is_empty(), "not sent from the owner's address");
        s0.drain_inbox(&mut out0);
        assert_eq!(out0.0.len(), 1);
        assert_eq!(status(&out0.0[0].0), 200);
        assert_eq!(out0.0[0].1, src.peer);
    }

    #[test]
    fn a_log_that_cannot_be_written_turns_registers_away_with_503() {
        let dir = std::env::temp_dir().join(format!("sipshard-full-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut stores = crate::location::store::adopt(
            &dir,
            crate::location::store::Fsync::Never,
            &[Vec::new()],
        )
        .unwrap();
        if stores[0].write_to_dev_full().is_err() {
            return; // no /dev/full here
        }
        let shared = shared(vec![0], 16);
        let counters = ShardCounters::default();
        let loc = shared.registrar.owner(0, 1, 0, stores.pop());
        let mut shard = Shard::new(0, &shared, &counters, loc);
        let src = Source::udp(
            "192.0.2.5:5060".parse().unwrap(),
            "192.0.2.1:5060".parse().unwrap(),
        );
        let mut out = Sent::default();
        shard.handle(&register("a"), &src, &mut out);
        shard.after_batch();
        assert_eq!(counters.store_errors.load(Ordering::Relaxed), 1);
        shard.handle(&register("b"), &src, &mut out);
        assert_eq!(status(&out.0[1].0), 503, "refused while the log fails");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
