//! An exhaustive model check of the inbox wake-up protocol: no
//! interleaving of senders, receiver, network and kernel leaves a shard
//! asleep with mail waiting and nothing left to wake it.
//!
//! # Why an explorer of our own, not loom
//! loom would run the real `Inbox` only after swapping its crossbeam
//! `ArrayQueue` for a loom `Mutex<VecDeque>`, whose lock orders a push
//! before a later pop far more strongly than the lock-free queue does, and
//! it models `SeqCst` as `AcqRel`; it would also need a whole-crate rebuild
//! under `--cfg loom` and a model of the eventfd and of both backends
//! anyway. The hard part here is not the atomics of one type but the
//! *protocol* across `Inbox`, the shard loop and the backend's wait, so it
//! is written out below as small steps, one shared-memory access or system
//! call each, and every interleaving of them is explored (breadth first,
//! with a visited set, so the shortest counterexample is reported).
//!
//! # The steps, and the code each mirrors
//! Sender, per mail (`Inbox::push`, mail.rs): [`Op::Push`] is
//! `self.queue.push(mail)?` (on a full queue the mail is answered 503, or
//! it waits in the `Outbox`, whose retry is this same step taken later);
//! [`Op::Swap`] is `self.notified.swap(true, ..)` in
//! `Inbox::wake`; [`Op::Ring`] is `self.bell.ring()`, taken only when the
//! swap found the flag clear.
//!
//! Receiver, `run` in shard/mod.rs, one loop iteration:
//! - `Shard::drain_inbox` (shard/drain.rs): [`Rx::Arm`] `inbox.arm()`
//!   (the `notified.store`); [`Rx::Pop`] one
//!   `set_aside.pop_front().or_else(|| inbox.pop())`, or a stop at any
//!   point (the per-loop limits `REGISTERS_PER_LOOP` and `send.slot()`,
//!   over-approximated: the receiver may stop after any number of mails,
//!   even none); [`Rx::CheckLeft`] `!inbox.is_empty() ||
//!   !self.set_aside.is_empty()`; [`Rx::WakeSwap`] and [`Rx::WakeRing`]
//!   the `inbox.wake()` that follows.
//! - `Backend::poll`, mmsg (`Mmsg::recv_wakeable`, io/mmsg.rs):
//!   [`Rx::RecvNoWait`] `recv_some(room, MSG_DONTWAIT)`, returning at once
//!   when it got datagrams, or (explored as a free choice) when answers
//!   wait to be sent or no send slot is free; [`Rx::Asleep`] the
//!   `libc::poll` on socket and eventfd, *with no timeout* (a wake-up that
//!   only the 100 ms timeout would deliver counts as lost), returning the
//!   two `revents`; [`Rx::DrainFd`] `drain_eventfd(wake)` when the eventfd's
//!   `revents` was set (a `read`: the counter goes to 0, whatever was
//!   rung since `poll` returned); [`Rx::RecvAfter`] the `recv_some` when the
//!   socket's was.
//! - `Backend::poll`, io_uring (`Uring::poll`, io/uring.rs):
//!   [`Rx::SubmitWake`] `arm_wake` when `!wake_armed`, submitted by
//!   `submit_with_args` (or, explored as a free choice, `submit` alone when
//!   a backlog is left); [`Rx::Asleep`] that wait for one completion, with
//!   no timeout; [`Rx::Reap`] taking every completion (`WAKE_TAG` clears
//!   `wake_armed`). The kernel's side is its own step, [`kernel_read`]: a
//!   read in flight on an eventfd whose counter is non-zero completes,
//!   taking the counter to 0, at any moment, asleep or not.
//! - `Shard::apply_updates` (shard/drain.rs), called by `run`'s handler
//!   for the first datagram of a batch: [`Rx::ApplyArm`] `inbox.arm()`;
//!   [`Rx::ApplyPop`] one `inbox.pop()`, the mail applied (a replica
//!   update) or set aside (anything else), both explored.
//!
//! The network is one more process: it makes up to `datagrams` datagrams
//! readable on the socket, at any moment.
//!
//! # What is checked
//! At every reachable state: if the receiver is asleep, nothing that the
//! wait watches is ready (socket empty, eventfd counter 0, for io_uring no
//! read completed or about to), and no sender is part-way through a mail
//! (its own ring may still come), then no mail waits, in the queue or set
//! aside. A state breaking that is a lost wake-up: the shard would sleep
//! until unrelated traffic or the timeout. (Excusing a sender part-way
//! through costs nothing: letting it finish while the receiver sleeps is
//! also explored, and reaches a state that is checked without the excuse.)
//! Neither later pushes nor later datagrams count as a wake-up: a mail
//! already queued must not depend on them. Also, every state with no
//! successor has all mail delivered or answered 503 (no other deadlock).
//! The explorer is shown to be able to fail: each of [`Mutant`]'s broken
//! protocols must be caught; and the races are shown to happen in the
//! correct one (states where the shard sleeps with mail queued and its
//! sender's ring still to come are counted, and must not be zero).
//!
//! Bounds ([`BOUNDS`], each on both backends): 2 senders of 2 mails into
//! an inbox of 4, and of 1 (full inbox: 503), 3 senders of 1 mail, 1
//! sender of 3, with 1 or 2 datagrams arriving: 6 000 to 121 000 states
//! each, a few seconds in all in a debug build. The receiver's loop is
//! not bounded: its states repeat, and the visited set closes the loops.
//!
//! # What is not
//! The model is sequentially consistent: each step is atomic and every
//! step sees every earlier one. The real code relies on the C++20/Rust
//! memory model for that; see `Inbox::wake` for why the sender's swap is
//! `SeqCst` (with `AcqRel` the language model allows the lost wake-up:
//! crossbeam's push is a `SeqCst` CAS on `tail`, its empty pop a `SeqCst`
//! fence then a relaxed `tail` load, and `arm` a `SeqCst` store; only a
//! `SeqCst` swap closes that store-buffering cycle). That argument is by
//! hand, not checked here. Also outside the model: the queue's FIFO order
//! and capacity arithmetic (crossbeam's own tests), the eventfd counter
//! overflow (`ring` ignores it: the waiter is awake anyway), and the
//! timeout path (only ever a later wake-up, never a missing one).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

/// Senders a [`State`] has room for.
const MAX_SENDERS: usize = 3;

/// Who took a step.
#[derive(Clone, Copy)]
enum Who {
    Sender(usize),
    Receiver,
    Network,
    Kernel,
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::Sender(i) => write!(f, "sender {i}"),
            Who::Receiver => f.write_str("receiver"),
            Who::Network => f.write_str("network"),
            Who::Kernel => f.write_str("kernel"),
        }
    }
}

/// A step: who took it and what it did.
type Step = (Who, &'static str);

/// A sender's program step.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Op {
    Push,
    Swap,
    Ring,
}

/// The senders' program per mail: `Inbox::push`.
const SEND: [Op; 3] = [Op::Push, Op::Swap, Op::Ring];
/// [`Mutant::WakeBeforePush`]: the wake-up goes out before the mail.
const SEND_WAKE_FIRST: [Op; 3] = [Op::Swap, Op::Ring, Op::Push];

/// The receiver's program counter.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Rx {
    Arm,
    Pop,
    CheckLeft,
    WakeSwap,
    WakeRing,
    /// [`Mutant::ArmAfterDrain`]: `arm` once `drain_inbox` is over.
    ArmLate,
    RecvNoWait,
    SubmitWake,
    Asleep,
    /// mmsg, after `poll`: which `revents` were set.
    DrainFd {
        sock: bool,
    },
    RecvAfter,
    Reap,
    ApplyArm,
    ApplyPop,
}

/// The backend the receiver waits in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Mmsg,
    Uring,
}

/// A broken protocol the explorer must catch.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mutant {
    /// `drain_inbox` arms once it is over (after its pops and its check
    /// for mail left behind) instead of first. (Arming between the pops
    /// and that check would be safe: the check sees what a sender pushed
    /// while the flag was still set.)
    ArmAfterDrain,
    /// `push` wakes the receiver, then queues the mail.
    WakeBeforePush,
    /// `drain_inbox` leaves mail behind (its limits) without `wake()`.
    NoWakeOnLeftover,
    /// `drain_inbox` wakes for mail left in the queue but forgets the
    /// mail `apply_updates` set aside.
    ForgetSetAside,
    /// The backend takes a bare eventfd wake-up as spurious and waits
    /// again, without returning to the loop (which would re-arm and pop).
    WaitAgainOnBell,
}

/// The io_uring read of the eventfd.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Read {
    /// Not submitted (`wake_armed` false).
    Idle,
    /// Submitted, waiting for the counter to be non-zero.
    InFlight,
    /// Completed (it took the counter to 0); its completion not reaped.
    Done,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Sender {
    /// Mails still to send, this one included.
    left: u8,
    /// Index of the next step of the current mail.
    at: u8,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct State {
    /// Mails in the `ArrayQueue`.
    queue: u8,
    /// `Inbox::notified`.
    notified: bool,
    /// The eventfd's counter is non-zero (readable); only that matters.
    bell: bool,
    /// io_uring: the eventfd read.
    read: Read,
    /// Datagrams readable on the socket.
    sock: u8,
    /// Datagrams yet to arrive.
    net: u8,
    /// The senders; those past `Config::senders` have nothing to send.
    senders: [Sender; MAX_SENDERS],
    rx: Rx,
    /// Mails the receiver took out and set aside (`Shard::set_aside`).
    set_aside: u8,
    /// Mails handled by the receiver.
    handled: u8,
    /// Mails answered 503 by a sender (inbox full).
    refused: u8,
}

/// What is explored.
#[derive(Clone, Copy, Debug)]
struct Config {
    senders: usize,
    mails: u8,
    capacity: u8,
    datagrams: u8,
    backend: Backend,
    mutant: Option<Mutant>,
}

/// What the exploration found.
#[derive(Debug)]
struct Report {
    /// Reachable states.
    states: usize,
    /// States where the receiver sleeps with mail queued while a sender
    /// is still to ring: the races the check is about, seen and survived.
    close_calls: usize,
    /// The shortest path to a lost wake-up, if any.
    lost: Option<Vec<String>>,
    /// The shortest path to a state with no successor and mail not
    /// handled, if any.
    stuck: Option<Vec<String>>,
}

impl Config {
    fn program(&self) -> &'static [Op; 3] {
        if self.mutant == Some(Mutant::WakeBeforePush) {
            &SEND_WAKE_FIRST
        } else {
            &SEND
        }
    }

    fn initial(&self) -> State {
        assert!(self.senders <= MAX_SENDERS);
        State {
            queue: 0,
            notified: false,
            bell: false,
            read: Read::Idle,
            sock: 0,
            net: self.datagrams,
            senders: std::array::from_fn(|i| Sender {
                left: if i < self.senders { self.mails } else { 0 },
                at: 0,
            }),
            rx: Rx::Arm,
            set_aside: 0,
            handled: 0,
            refused: 0,
        }
    }

    /// The receiver's first step of a loop iteration (`drain_inbox`).
    fn loop_top(&self) -> Rx {
        if self.mutant == Some(Mutant::ArmAfterDrain) {
            Rx::Pop
        } else {
            Rx::Arm
        }
    }

    /// The step after `drain_inbox`.
    fn drained(&self) -> Rx {
        if self.mutant == Some(Mutant::ArmAfterDrain) {
            Rx::ArmLate
        } else {
            self.poll_top()
        }
    }

    /// The first step of `Backend::poll`.
    fn poll_top(&self) -> Rx {
        match self.backend {
            Backend::Mmsg => Rx::RecvNoWait,
            Backend::Uring => Rx::SubmitWake,
        }
    }

    /// After the backend has returned: `after_batch`, flush, loop.
    fn after_poll(&self, datagrams: bool) -> Rx {
        if datagrams {
            Rx::ApplyArm
        } else {
            self.loop_top()
        }
    }

    /// Every successor of `s`, each with what happened.
    fn next(&self, s: &State) -> Vec<(Step, State)> {
        let mut out = Vec::new();
        for i in 0..self.senders {
            self.sender_steps(s, i, &mut out);
        }
        self.receiver_steps(s, &mut out);
        if s.net > 0 {
            let mut t = *s;
            t.net -= 1;
            t.sock += 1;
            out.push(((Who::Network, "a datagram arrives"), t));
        }
        if let Some(t) = kernel_read(s) {
            out.push(((Who::Kernel, "the io_uring read takes the eventfd"), t));
        }
        out
    }

    fn sender_steps(&self, s: &State, i: usize, out: &mut Vec<(Step, State)>) {
        let me = &s.senders[i];
        if me.left == 0 {
            return;
        }
        let prog = self.program();
        let mut t = *s;
        // Moves sender `i` of `t` past `n` steps, to its next mail at the
        // end of this one.
        let advance = |t: &mut State, n: u8| {
            let me = &mut t.senders[i];
            me.at += n;
            if usize::from(me.at) >= prog.len() {
                me.at = 0;
                me.left -= 1;
            }
        };
        match prog[usize::from(me.at)] {
            Op::Push => {
                if s.queue < self.capacity {
                    t.queue += 1;
                    advance(&mut t, 1);
                    out.push(((Who::Sender(i), "push"), t));
                } else {
                    // Full: a REGISTER is answered 503 and that mail is
                    // over; a replica update waits in the Outbox, which is
                    // this same step taken later.
                    t.refused += 1;
                    let rest = prog.len() as u8 - me.at;
                    advance(&mut t, rest);
                    out.push(((Who::Sender(i), "push fails: 503"), t));
                }
            }
            Op::Swap => {
                let was = std::mem::replace(&mut t.notified, true);
                // The ring is skipped when the flag was set already.
                advance(&mut t, if was { 2 } else { 1 });
                let what = if was {
                    "swap notified: was set"
                } else {
                    "swap notified: was clear"
                };
                out.push(((Who::Sender(i), what), t));
            }
            Op::Ring => {
                t.bell = true;
                advance(&mut t, 1);
                out.push(((Who::Sender(i), "ring"), t));
            }
        }
    }

    fn receiver_steps(&self, s: &State, out: &mut Vec<(Step, State)>) {
        let mut go = |what: &'static str, f: &dyn Fn(&mut State)| {
            let mut t = *s;
            f(&mut t);
            out.push(((Who::Receiver, what), t));
        };
        match s.rx {
            Rx::Arm => go("arm", &|t| {
                t.notified = false;
                t.rx = Rx::Pop;
            }),
            Rx::Pop => {
                let after = Rx::CheckLeft;
                go("stop popping (per-loop limit)", &|t| t.rx = after);
                if s.set_aside > 0 {
                    go("handle a mail set aside", &|t| {
                        t.set_aside -= 1;
                        t.handled += 1;
                    });
                } else if s.queue > 0 {
                    go("pop a mail, handle it", &|t| {
                        t.queue -= 1;
                        t.handled += 1;
                    });
                } else {
                    go("pop: empty", &|t| t.rx = after);
                }
            }
            Rx::ArmLate => go("arm (late)", &|t| {
                t.notified = false;
                t.rx = self.poll_top();
            }),
            Rx::CheckLeft => {
                let aside = s.set_aside > 0 && self.mutant != Some(Mutant::ForgetSetAside);
                let left = s.queue > 0 || aside;
                let skip = self.mutant == Some(Mutant::NoWakeOnLeftover);
                if left && !skip {
                    go("mail left behind: wake()", &|t| t.rx = Rx::WakeSwap);
                } else {
                    go("nothing left behind (or no wake)", &|t| {
                        t.rx = self.drained()
                    });
                }
            }
            Rx::WakeSwap => go("wake: swap notified", &|t| {
                let was = std::mem::replace(&mut t.notified, true);
                t.rx = if was { self.drained() } else { Rx::WakeRing };
            }),
            Rx::WakeRing => go("wake: ring", &|t| {
                t.bell = true;
                t.rx = self.drained();
            }),
            Rx::RecvNoWait => {
                if s.sock > 0 {
                    go("recvmmsg(DONTWAIT) gets datagrams", &|t| {
                        t.sock = 0;
                        t.rx = self.after_poll(true);
                    });
                } else {
                    go("recvmmsg(DONTWAIT) empty, answers to send: return", &|t| {
                        t.rx = self.after_poll(false)
                    });
                    go("recvmmsg(DONTWAIT) empty: poll", &|t| t.rx = Rx::Asleep);
                }
            }
            Rx::SubmitWake => {
                let arm = |t: &mut State| {
                    if t.read == Read::Idle {
                        t.read = Read::InFlight;
                    }
                };
                go("arm_wake, submit and wait", &|t| {
                    arm(t);
                    t.rx = Rx::Asleep;
                });
                go("arm_wake, submit, backlog left: no wait", &|t| {
                    arm(t);
                    t.rx = Rx::Reap;
                });
            }
            Rx::Asleep => match self.backend {
                Backend::Mmsg => {
                    if s.bell || s.sock > 0 {
                        let sock = s.sock > 0;
                        let rx = if s.bell {
                            Rx::DrainFd { sock }
                        } else {
                            Rx::RecvAfter
                        };
                        go("poll returns", &|t| t.rx = rx);
                    }
                }
                Backend::Uring => {
                    if s.read == Read::Done || s.sock > 0 {
                        go("wait returns", &|t| t.rx = Rx::Reap);
                    }
                }
            },
            Rx::DrainFd { sock } => go("drain the eventfd", &|t| {
                t.bell = false;
                t.rx = if sock {
                    Rx::RecvAfter
                } else if self.mutant == Some(Mutant::WaitAgainOnBell) {
                    Rx::RecvNoWait
                } else {
                    self.after_poll(false)
                };
            }),
            Rx::RecvAfter => go("recvmmsg(DONTWAIT)", &|t| {
                let got = t.sock > 0;
                t.sock = 0;
                t.rx = self.after_poll(got);
            }),
            Rx::Reap => go("reap completions", &|t| {
                let woken = t.read == Read::Done;
                if woken {
                    t.read = Read::Idle;
                }
                let got = t.sock > 0;
                t.sock = 0;
                t.rx = if woken && !got && self.mutant == Some(Mutant::WaitAgainOnBell) {
                    Rx::SubmitWake
                } else {
                    self.after_poll(got)
                };
            }),
            Rx::ApplyArm => go("apply_updates: arm", &|t| {
                t.notified = false;
                t.rx = Rx::ApplyPop;
            }),
            Rx::ApplyPop => {
                if s.queue > 0 {
                    go("apply_updates: pop, apply", &|t| {
                        t.queue -= 1;
                        t.handled += 1;
                    });
                    go("apply_updates: pop, set aside", &|t| {
                        t.queue -= 1;
                        t.set_aside += 1;
                    });
                } else {
                    go("apply_updates: pop: empty", &|t| t.rx = self.loop_top());
                }
            }
        }
    }

    /// True when the receiver sleeps with nothing to wake it: no datagram,
    /// no eventfd readiness (io_uring: no read completed or about to), no
    /// sender that may still ring.
    fn nothing_will_wake(&self, s: &State) -> bool {
        let ready = match self.backend {
            Backend::Mmsg => s.bell,
            Backend::Uring => s.read == Read::Done || (s.read == Read::InFlight && s.bell),
        };
        s.rx == Rx::Asleep && !ready && s.sock == 0 && s.senders.iter().all(|m| m.at == 0)
    }

    /// Explores every reachable state.
    fn explore(&self) -> Report {
        let start = self.initial();
        let mut parent: HashMap<State, Option<(State, Step)>> = HashMap::new();
        parent.insert(start, None);
        let mut todo = VecDeque::from([start]);
        let mut report = Report {
            states: 0,
            close_calls: 0,
            lost: None,
            stuck: None,
        };
        let total = self.senders as u8 * self.mails;
        while let Some(s) = todo.pop_front() {
            report.states += 1;
            let waiting = s.queue > 0 || s.set_aside > 0;
            if s.rx == Rx::Asleep && waiting && !s.bell && s.read != Read::Done {
                report.close_calls += 1;
            }
            if waiting && self.nothing_will_wake(&s) && report.lost.is_none() {
                report.lost = Some(trace(&parent, &s));
            }
            let next = self.next(&s);
            if next.is_empty() && s.handled + s.refused != total && report.stuck.is_none() {
                report.stuck = Some(trace(&parent, &s));
            }
            for (what, t) in next {
                if let Entry::Vacant(e) = parent.entry(t) {
                    e.insert(Some((s, what)));
                    todo.push_back(t);
                }
            }
        }
        report
    }
}

/// io_uring's read of the eventfd, in flight, completes when the counter
/// is non-zero.
fn kernel_read(s: &State) -> Option<State> {
    (s.read == Read::InFlight && s.bell).then(|| {
        let mut t = *s;
        t.bell = false;
        t.read = Read::Done;
        t
    })
}

/// The steps from the initial state to `s`, then `s`.
fn trace(parent: &HashMap<State, Option<(State, Step)>>, s: &State) -> Vec<String> {
    let mut steps = vec![format!("=> {s:?}")];
    let mut at = s;
    while let Some(Some((p, (who, what)))) = parent.get(at) {
        steps.push(format!("{who}: {what}"));
        at = p;
    }
    steps.reverse();
    steps
}

const BACKENDS: [Backend; 2] = [Backend::Mmsg, Backend::Uring];

/// The bounds explored: (senders, mails each, inbox capacity, datagrams).
const BOUNDS: [(usize, u8, u8, u8); 4] = [(2, 2, 4, 2), (2, 2, 1, 1), (3, 1, 2, 1), (1, 3, 2, 2)];

fn check(config: Config) -> Report {
    let report = config.explore();
    println!(
        "{config:?}: {} states, {} close calls",
        report.states, report.close_calls
    );
    report
}

#[test]
fn no_interleaving_loses_a_wake_up() {
    for backend in BACKENDS {
        for (senders, mails, capacity, datagrams) in BOUNDS {
            let config = Config {
                senders,
                mails,
                capacity,
                datagrams,
                backend,
                mutant: None,
            };
            let report = check(config);
            if let Some(path) = &report.lost {
                panic!("{config:?}: lost wake-up:\n{}", path.join("\n"));
            }
            if let Some(path) = &report.stuck {
                panic!("{config:?}: stuck:\n{}", path.join("\n"));
            }
            // The races the check is about did happen in the model.
            assert!(report.close_calls > 0, "{config:?}: {report:?}");
        }
    }
}

#[test]
fn every_broken_protocol_is_caught() {
    let mutants = [
        Mutant::ArmAfterDrain,
        Mutant::WakeBeforePush,
        Mutant::NoWakeOnLeftover,
        Mutant::ForgetSetAside,
        Mutant::WaitAgainOnBell,
    ];
    for mutant in mutants {
        for backend in BACKENDS {
            let config = Config {
                senders: 2,
                mails: 2,
                capacity: 4,
                datagrams: 1,
                backend,
                mutant: Some(mutant),
            };
            let report = check(config);
            let Some(path) = report.lost else {
                panic!("{config:?}: the explorer missed this broken protocol");
            };
            println!("{}", path.join("\n"));
        }
    }
}
