//! Shard-to-shard mail: every shard has one bounded inbox (a crossbeam
//! `ArrayQueue`, lock-free) and an eventfd that wakes it when it sleeps in
//! `recvmmsg`/`poll` or in `io_uring_enter`.
//!
//! Three kinds of mail travel here: a REGISTER that arrived on a shard that
//! does not own its AOR (bytes plus source, ARCHITECTURE.md "Location"), a
//! replica update from an AOR's owner, and a finished response that must
//! leave from the socket the request came in on.
//!
//! # Wake-ups
//! A sender pushes, then writes the eventfd only if the `notified` flag was
//! clear; the receiver clears the flag *before* draining. A mail pushed
//! before the clear is seen by that drain; one pushed after it finds the
//! flag clear and writes the eventfd. So no mail waits for the 100 ms
//! receive timeout, and a busy receiver costs its senders one atomic swap
//! per mail, not a system call. `mail/model.rs` checks this with every
//! interleaving of senders, the shard loop and both backends' waits.

use std::collections::VecDeque;
use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam_queue::ArrayQueue;

use crate::io::eventfd::EventFd;
use crate::location::LocationOp;
use crate::transport::{Dest, Source};

/// Mails an inbox holds. A REGISTER storm beyond this answers 503; replica
/// updates beyond it wait in the sender's [`Outbox`] instead.
pub const INBOX_CAPACITY: usize = 65_536;

/// One piece of shard-to-shard mail.
#[derive(Debug)]
pub enum Mail {
    /// A REGISTER for an AOR the receiving shard owns.
    Register {
        /// The datagram as received.
        data: Box<[u8]>,
        /// Where it came from and what it arrived at.
        src: Source,
        /// The shard it arrived on (the answer leaves from that socket).
        arrived_on: usize,
    },
    /// A change from an AOR's owner for the receiving shard's replica,
    /// with when the owner published it (to measure propagation).
    Location(LocationOp, Instant),
    /// A source another shard banned: ban it here too, so that a source
    /// whose datagrams reach every shard (`--steer call-id`) is banned
    /// on every shard.
    Ban(IpAddr, Ban),
    /// A response for a client transaction the receiving shard holds
    /// (`--mode stateful`: our branch names the shard), as received.
    Response {
        /// The datagram or message as received.
        data: Box<[u8]>,
        /// Where it came from and what it arrived at.
        src: Source,
    },
    /// Another node's change of a binding of an AOR the receiving shard
    /// owns, from the cluster link (`--cluster`).
    Cluster {
        /// The AOR.
        aor: Box<[u8]>,
        /// The change.
        change: Box<crate::cluster::Change>,
        /// It comes from a load of the whole table (at start, or after
        /// the stream lost entries), not from the stream.
        loaded: bool,
    },
    /// A response to send from the receiving shard's socket.
    Send {
        /// The datagram.
        data: Box<[u8]>,
        /// Where to.
        to: Dest,
    },
}

/// Why another shard banned a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ban {
    /// Over `--rate-limit`.
    Flood,
    /// Over `--auth-fail-limit`.
    Guessing,
}

/// A shard's inbox.
pub struct Inbox {
    queue: ArrayQueue<Mail>,
    notified: AtomicBool,
    bell: EventFd,
}

impl Inbox {
    /// An empty inbox with its own eventfd.
    pub fn new(capacity: usize) -> io::Result<Inbox> {
        Ok(Inbox {
            queue: ArrayQueue::new(capacity.max(1)),
            notified: AtomicBool::new(false),
            bell: EventFd::new()?,
        })
    }

    /// Queues `mail` and wakes the receiver; gives the mail back when the
    /// inbox is full.
    pub fn push(&self, mail: Mail) -> Result<(), Mail> {
        self.queue.push(mail)?;
        self.wake();
        Ok(())
    }

    /// Wakes the receiver unless a wake-up is already pending since it
    /// last armed (also used by a receiver that left mail behind).
    ///
    /// The swap is `SeqCst`, not `AcqRel`: a sender writes the queue (a
    /// `SeqCst` CAS on `tail` in crossbeam's push) then reads the flag;
    /// the receiver writes the flag ([`Inbox::arm`], `SeqCst`) then reads
    /// the queue (a `SeqCst` fence, then `tail`, in an empty pop). Under
    /// the C++20 model Rust follows, this store-buffering pair needs every
    /// access `SeqCst`: with an `AcqRel` swap, the swap may read the flag
    /// from before `arm` while the pop misses the push, and the mail waits
    /// for the receive timeout. It costs nothing: x86-64 compiles both
    /// orderings to one `xchg`, AArch64 to `swpal` (or one LL/SC loop).
    pub fn wake(&self) {
        if !self.notified.swap(true, Ordering::SeqCst) {
            self.bell.ring();
        }
    }

    /// Called by the receiver before it drains: the next push wakes it.
    pub fn arm(&self) {
        self.notified.store(false, Ordering::SeqCst);
    }

    /// The next mail, if any.
    pub fn pop(&self) -> Option<Mail> {
        self.queue.pop()
    }

    /// True when no mail waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Mails waiting (a snapshot: senders and the receiver may be at work;
    /// for metrics).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Mails it holds at most.
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// The eventfd a backend waits on next to its socket.
    pub fn wake_fd(&self) -> RawFd {
        self.bell.fd()
    }
}

/// Capacity above which an emptied backlog is freed rather than kept.
const SHRINK_ABOVE: usize = 1024;

/// A shard's outgoing replica updates that did not fit their receiver's
/// inbox yet, per receiver, in order. A binding that got a 200 must reach
/// every replica, so updates are never dropped: they wait here and are
/// retried every loop. Once one waits for a receiver, later ones queue
/// behind it, so a receiver sees an owner's changes in order.
#[derive(Default)]
pub struct Outbox {
    waiting: Vec<VecDeque<(LocationOp, Instant)>>,
}

impl Outbox {
    /// An outbox for `shards` receivers.
    pub fn new(shards: usize) -> Outbox {
        Outbox {
            waiting: (0..shards).map(|_| VecDeque::new()).collect(),
        }
    }

    /// Sends `op`, published at `at`, to `inboxes[to]`, or keeps it for
    /// later.
    pub fn send(&mut self, inboxes: &[Inbox], to: usize, op: LocationOp, at: Instant) {
        let (Some(q), Some(inbox)) = (self.waiting.get_mut(to), inboxes.get(to)) else {
            return;
        };
        if !q.is_empty() {
            q.push_back((op, at));
            return;
        }
        if let Err(Mail::Location(op, at)) = inbox.push(Mail::Location(op, at)) {
            q.push_back((op, at));
        }
    }

    /// Sends an owner's change `op` to every shard but `from` (the owner,
    /// whose own replica has it already), stamped now to measure how long
    /// it takes to arrive.
    pub fn broadcast(&mut self, inboxes: &[Inbox], from: usize, op: &LocationOp) {
        let at = Instant::now();
        for to in (0..inboxes.len()).filter(|&i| i != from) {
            self.send(inboxes, to, op.clone(), at);
        }
    }

    /// Updates waiting for room, over all receivers.
    pub fn waiting(&self) -> usize {
        self.waiting.iter().map(VecDeque::len).sum()
    }

    /// Retries what waits; returns how many still wait.
    pub fn retry(&mut self, inboxes: &[Inbox]) -> usize {
        let mut left = 0;
        for (q, inbox) in self.waiting.iter_mut().zip(inboxes) {
            while let Some((op, at)) = q.pop_front() {
                if let Err(Mail::Location(op, at)) = inbox.push(Mail::Location(op, at)) {
                    q.push_front((op, at));
                    break;
                }
            }
            // A backlog is a burst (a receiver slower than a REGISTER
            // storm): give its memory back once it has drained.
            if q.is_empty() && q.capacity() > SHRINK_ABOVE {
                *q = VecDeque::new();
            }
            left += q.len();
        }
        left
    }
}

#[cfg(test)]
mod model;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::eventfd::drain;
    use crate::location::AorRecord;

    fn op(n: u8) -> LocationOp {
        LocationOp::Set(AorRecord::new(&[b'a', n], &[]))
    }

    fn aor_of(m: Mail) -> Vec<u8> {
        match m {
            Mail::Location(LocationOp::Set(r), _) => r.aor().to_vec(),
            _ => panic!("not a set"),
        }
    }

    #[test]
    fn a_push_wakes_once_until_rearmed() {
        let inbox = Inbox::new(4).unwrap();
        assert!(inbox.push(Mail::Location(op(1), Instant::now())).is_ok());
        assert!(inbox.push(Mail::Location(op(2), Instant::now())).is_ok());
        assert_eq!(drain(inbox.wake_fd()), 1, "two pushes, one wake-up");
        inbox.arm();
        assert_eq!(aor_of(inbox.pop().unwrap()), b"a\x01");
        assert!(inbox.push(Mail::Location(op(3), Instant::now())).is_ok());
        assert_eq!(
            drain(inbox.wake_fd()),
            1,
            "re-armed: the next push wakes again"
        );
    }

    #[test]
    fn a_full_inbox_gives_the_mail_back_and_the_outbox_keeps_order() {
        let inboxes = [Inbox::new(2).unwrap()];
        let mut out = Outbox::new(1);
        for i in 0..5 {
            out.send(&inboxes, 0, op(i), Instant::now());
        }
        assert!(
            inboxes[0]
                .push(Mail::Location(op(9), Instant::now()))
                .is_err(),
            "full"
        );
        let mut got = Vec::new();
        loop {
            while let Some(m) = inboxes[0].pop() {
                got.push(aor_of(m)[1]);
            }
            if out.retry(&inboxes) == 0 && inboxes[0].is_empty() {
                break;
            }
        }
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
    }
}
