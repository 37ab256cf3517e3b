//! Unit tests of the stateful shard on a fake clock (`now_ms` set by
//! hand): what is sent, and when.
use super::*;
use crate::io::SEND_SLOT;
use crate::proxy::ProxyConfig;
use crate::registrar::RegistrarConfig;
use crate::shard::counters::ShardCounters;
use crate::shard::Shared;
use crate::transaction::Durations;
use branches::failover_targets;
use std::net::SocketAddr;

/// What the shard sends, with where to.
#[derive(Default)]
struct Sent(Vec<(Vec<u8>, SocketAddr)>, Vec<u8>);

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

impl Sent {
    /// The status or method of each message sent, in order, cleared.
    fn take(&mut self) -> Vec<String> {
        self.0
            .drain(..)
            .map(|(m, _)| {
                let m = Message::parse(&m).unwrap();
                match (m.status(), m.method()) {
                    (Some(code), _) => code.to_string(),
                    (None, Some(method)) => format!("{method:?}"),
                    _ => "?".into(),
                }
            })
            .collect()
    }
}

const PROXY: &str = "192.0.2.1:5060";
const UAC: &str = "192.0.2.10:5060";
const UAS: &str = "192.0.2.20:5060";

fn shared(max: usize) -> Shared {
    let mut s = Shared::new(
        ProxyConfig::at(PROXY.parse().unwrap()),
        RegistrarConfig::default(),
        vec![0],
    )
    .unwrap();
    s.transactions = Some(TransactionConfig {
        durations: Durations::default(),
        max_per_shard: max,
        fr_timeout_ms: None,
        fr_inv_timeout_ms: 181_000,
        max_failover: 2,
    });
    s
}

fn request(method: &str, call: &str) -> Vec<u8> {
    format!(
        "{method} sip:bob@{UAS} SIP/2.0\r\nVia: SIP/2.0/UDP {UAC};branch=z9hG4bK{call}\r\n\
To: <sip:bob@b>\r\nFrom: <sip:a@a>;tag=1\r\nCall-ID: {call}\r\nCSeq: 1 {method}\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The response of the UAS to `fwd` (a request as we forwarded it).
fn answer(fwd: &[u8], code: u16) -> Vec<u8> {
    let m = Message::parse(fwd).unwrap();
    let mut out = format!("SIP/2.0 {code} X\r\n");
    for v in m.values(crate::sip::HeaderName::Via) {
        out.push_str(&format!("Via: {}\r\n", String::from_utf8_lossy(v.text)));
    }
    out.push_str(&format!(
        "To: <sip:bob@b>;tag=u\r\nFrom: <sip:a@a>;tag=1\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        String::from_utf8_lossy(m.header(crate::sip::HeaderName::CallId).unwrap()),
        String::from_utf8_lossy(m.header(crate::sip::HeaderName::CSeq).unwrap()),
    ));
    out.into_bytes()
}

fn from_uac() -> Source {
    Source::udp(UAC.parse().unwrap(), PROXY.parse().unwrap())
}

fn from_uas() -> Source {
    Source::udp(UAS.parse().unwrap(), PROXY.parse().unwrap())
}

/// §17.1.1.2: Timer A doubles from T1 until a provisional; Timer B
/// (64*T1) then ends the branch and the caller gets 408, which it
/// gets again (Timer G) until it ACKs.
#[test]
fn timer_a_doubles_and_timer_b_gives_408() {
    let shared = shared(10);
    let counters = ShardCounters::default();
    let mut shard = Shard::alone(&shared, &counters);
    let mut sent = Sent::default();
    shard.now_ms = 0;
    let invite = request("INVITE", "ta");
    shard.handle(&invite, &from_uac(), &mut sent);
    assert_eq!(sent.take(), ["Invite", "100"]);
    let mut at = Vec::new();
    for ms in (0..32_000).step_by(10) {
        shard.now_ms = ms;
        shard.run_timers(&mut sent);
        for m in sent.take() {
            at.push((ms, m));
        }
    }
    let invites: Vec<u64> = at
        .iter()
        .filter(|(_, m)| m == "Invite")
        .map(|&(t, _)| t)
        .collect();
    assert_eq!(invites, [500, 1_500, 3_500, 7_500, 15_500, 31_500]);
    assert!(at.iter().all(|(_, m)| m == "Invite"), "{at:?}");
    shard.now_ms = 32_000;
    shard.run_timers(&mut sent);
    assert_eq!(sent.take(), ["408"]);
    shard.now_ms = 32_500;
    shard.run_timers(&mut sent);
    assert_eq!(sent.take(), ["408"], "Timer G");
    let ack = request("ACK", "ta");
    assert_eq!(
        shard.handle(&ack, &from_uac(), &mut sent),
        Outcome::Absorbed
    );
    shard.now_ms = 40_000;
    shard.run_timers(&mut sent);
    assert!(sent.take().is_empty(), "no 408 after the ACK");
    assert_eq!(
        counters
            .tx_timeouts
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

/// Every transaction ends: after a 2xx, Timers L and M (64*T1) drop
/// both sides; after a non-INVITE's final, Timers J and K.
#[test]
fn finished_transactions_are_dropped_by_their_timers() {
    let shared = shared(10);
    let counters = ShardCounters::default();
    let mut shard = Shard::alone(&shared, &counters);
    let mut sent = Sent::default();
    shard.now_ms = 0;
    shard.handle(&request("INVITE", "end1"), &from_uac(), &mut sent);
    shard.handle(&request("MESSAGE", "end2"), &from_uac(), &mut sent);
    let fwd: Vec<Vec<u8>> = sent
        .0
        .drain(..)
        .map(|(m, _)| m)
        .filter(|m| m.starts_with(b"INVITE") || m.starts_with(b"MESSAGE"))
        .collect();
    assert_eq!(fwd.len(), 2);
    for f in &fwd {
        shard.handle(&answer(f, 200), &from_uas(), &mut sent);
    }
    assert_eq!(sent.take(), ["200", "200"]);
    let st = shard.stateful.as_deref().unwrap();
    assert_eq!((st.servers.len(), st.clients.len()), (2, 2));
    shard.now_ms = 33_000;
    shard.run_timers(&mut sent);
    let st = shard.stateful.as_deref().unwrap();
    assert_eq!((st.servers.len(), st.clients.len()), (0, 0));
    assert!(st.wheel.is_empty(), "and no timer is left");
}

/// Failover goes through the `--upstream`s after the chosen one, in
/// order and wrapping, of its transport and IP family and in the
/// rotation only, at most `--max-failover` of them; a next hop that is
/// not an upstream has none.
#[test]
fn failover_targets_follow_the_upstreams_in_order() {
    let mut cfg = ProxyConfig::at(PROXY.parse().unwrap());
    cfg.upstreams = [
        "192.0.2.1:5060",
        "tcp:192.0.2.2:5060",
        "192.0.2.3:5060",
        "192.0.2.4:5060",
        "tcp:192.0.2.5:5060",
        "[2001:db8::6]:5060",
    ]
    .iter()
    .map(|u| u.parse().unwrap())
    .collect();
    cfg.health = std::sync::Arc::new(crate::proxy::Health::new(6));
    let udp = |a: &str| Dest::udp(a.parse().unwrap());
    let peers = |t: Vec<Dest>| {
        t.iter()
            .map(|d| d.peer().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let to = udp("192.0.2.3:5060");
    assert_eq!(
        peers(failover_targets(&cfg, to, 5)),
        ["192.0.2.3:5060", "192.0.2.4:5060", "192.0.2.1:5060"],
        "the TCP and IPv6 ones skipped"
    );
    let tcp = Dest::Outbound {
        peer: "192.0.2.2:5060".parse().unwrap(),
        transport: Transport::Tcp,
    };
    let over_tcp = failover_targets(&cfg, tcp, 5);
    assert_eq!(
        peers(over_tcp.clone()),
        ["192.0.2.2:5060", "192.0.2.5:5060"]
    );
    assert!(matches!(
        over_tcp[1],
        Dest::Outbound {
            transport: Transport::Tcp,
            ..
        }
    ));
    assert_eq!(
        peers(failover_targets(&cfg, to, 1)),
        ["192.0.2.3:5060", "192.0.2.4:5060"]
    );
    assert_eq!(peers(failover_targets(&cfg, to, 0)), ["192.0.2.3:5060"]);
    for _ in 0..3 {
        cfg.health.missed(3, 3);
    }
    assert_eq!(
        peers(failover_targets(&cfg, to, 5)),
        ["192.0.2.3:5060", "192.0.2.1:5060"],
        "one out of the rotation skipped"
    );
    assert_eq!(
        peers(failover_targets(&cfg, udp("198.51.100.1:5060"), 5)),
        ["198.51.100.1:5060"]
    );
}

/// Run as the loop runs it (every 10 ms), a non-INVITE's transactions
/// end by Timers J and K, and the table empties.
#[test]
fn a_loop_clock_ends_every_transaction() {
    let shared = shared(100);
    let counters = ShardCounters::default();
    let mut shard = Shard::alone(&shared, &counters);
    let mut sent = Sent::default();
    for k in 0..20u64 {
        shard.now_ms = k * 100;
        shard.run_timers(&mut sent);
        shard.handle(
            &request("MESSAGE", &format!("loop{k}")),
            &from_uac(),
            &mut sent,
        );
        let fwd = sent
            .0
            .drain(..)
            .map(|(m, _)| m)
            .find(|m| m.starts_with(b"MESSAGE"))
            .unwrap();
        shard.handle(&answer(&fwd, 200), &from_uas(), &mut sent);
        sent.0.clear();
    }
    let st = shard.stateful.as_deref().unwrap();
    assert_eq!(st.servers.len(), 20);
    for ms in (2_000..40_000).step_by(7) {
        shard.now_ms = ms;
        shard.run_timers(&mut sent);
    }
    let st = shard.stateful.as_deref().unwrap();
    assert_eq!((st.servers.len(), st.clients.len()), (0, 0), "all ended");
}

/// A response for a transaction another shard holds goes to that
/// shard's inbox, named by our branch.
#[test]
fn a_response_for_another_shards_branch_is_mailed_there() {
    let mut shared = shared(10);
    shared = Shared {
        inboxes: (0..2)
            .map(|_| crate::shard::mail::Inbox::new(8).unwrap())
            .collect(),
        listen_of: vec![0, 0].into(),
        ..shared
    };
    let counters = ShardCounters::default();
    let location = shared.registrar.owner(1, 2, 0, None);
    let mut one = Shard::new(1, &shared, &counters, location);
    let mut sent = Sent::default();
    one.handle(&request("MESSAGE", "m1"), &from_uac(), &mut sent);
    let fwd = sent.0.drain(..).map(|(m, _)| m).next().unwrap();
    let mut zero = Shard::alone(&shared, &counters);
    let got = zero.handle(&answer(&fwd, 200), &from_uas(), &mut sent);
    assert_eq!(got, Outcome::HandedOff);
    assert!(sent.0.is_empty());
    match shared.inboxes[1].pop() {
        Some(Mail::Response { data, .. }) => {
            one.mailed_response(&data, &from_uas(), &mut sent);
            assert_eq!(sent.take(), ["200"]);
        }
        other => panic!("shard 1 got {other:?}"),
    }
}

/// The requests a shard forwarded in `sent`, cleared.
fn forwarded(sent: &mut Sent) -> Vec<Vec<u8>> {
    sent.0
        .drain(..)
        .map(|(m, _)| m)
        .filter(|m| !m.starts_with(b"SIP/2.0"))
        .collect()
}

/// A finished transaction lets go of what it will not send again: the
/// server side its request, the client side of a non-INVITE its request
/// (an INVITE answered non-2xx keeps it, to ACK again).
#[test]
fn a_finished_transaction_keeps_only_what_it_may_send_again() {
    let shared = shared(10);
    let counters = ShardCounters::default();
    let mut shard = Shard::alone(&shared, &counters);
    let mut sent = Sent::default();
    shard.handle(&request("MESSAGE", "trim1"), &from_uac(), &mut sent);
    shard.handle(&request("INVITE", "trim2"), &from_uac(), &mut sent);
    let fwd = forwarded(&mut sent);
    let st = shard.stateful.as_deref().unwrap();
    assert!(st.servers.iter().all(|s| !s.request.is_empty()));
    shard.handle(&answer(&fwd[0], 200), &from_uas(), &mut sent);
    shard.handle(&answer(&fwd[1], 486), &from_uas(), &mut sent);
    let st = shard.stateful.as_deref().unwrap();
    assert!(st
        .servers
        .iter()
        .all(|s| s.finished && s.request.is_empty()));
    let mut kept: Vec<bool> = st.clients.iter().map(|c| !c.request.is_empty()).collect();
    kept.sort();
    assert_eq!(kept, [false, true], "the INVITE's, for its ACK");
    assert_eq!(st.finished.len(), 2);
}

/// `--max-transactions`: when the table is full, the oldest finished
/// transaction is ended early to make room; when every one still waits
/// for its final, the new request gets 503.
#[test]
fn a_full_table_ends_the_oldest_finished_transaction_or_refuses() {
    let shared = shared(2);
    let counters = ShardCounters::default();
    let mut shard = Shard::alone(&shared, &counters);
    let mut sent = Sent::default();
    let load = std::sync::atomic::Ordering::Relaxed;
    for call in ["room1", "room2"] {
        shard.handle(&request("MESSAGE", call), &from_uac(), &mut sent);
    }
    let fwd = forwarded(&mut sent);
    shard.handle(&answer(&fwd[0], 200), &from_uas(), &mut sent);
    assert_eq!(sent.take(), ["200"]);
    // room1 has finished: it makes room for room3.
    shard.handle(&request("MESSAGE", "room3"), &from_uac(), &mut sent);
    assert_eq!(sent.take(), ["Message"]);
    assert_eq!(counters.tx_evicted.load(load), 1);
    // room2 and room3 both wait for their answers: room4 is refused.
    shard.handle(&request("MESSAGE", "room4"), &from_uac(), &mut sent);
    assert_eq!(sent.take(), ["503"]);
    assert_eq!(counters.tx_refused.load(load), 1);
    // room1's retransmission is a new request now (its transaction was
    // ended early), and is refused like any other.
    shard.handle(&request("MESSAGE", "room1"), &from_uac(), &mut sent);
    assert_eq!(sent.take(), ["503"]);
    let st = shard.stateful.as_deref().unwrap();
    assert_eq!(st.clients.len(), 2, "room1's client transaction went too");
    assert_eq!(st.wheel.len(), 4, "and its timers: E and F of two");
}

/// A branch whose client transaction finds no room (the client table
/// holds twice `--max-transactions`) ends as if unreachable (§16.9),
/// so the caller gets the best answer at once rather than at Timer C.
#[test]
fn a_branch_without_room_for_its_client_side_ends_as_unreachable() {
    let mut cfg = ProxyConfig::at(PROXY.parse().unwrap());
    cfg.upstreams = ["192.0.2.31:5060", "192.0.2.32:5060", "192.0.2.33:5060"]
        .iter()
        .map(|u| u.parse().unwrap())
        .collect();
    cfg.health = std::sync::Arc::new(crate::proxy::Health::new(3));
    let mut shared = Shared::new(cfg, RegistrarConfig::default(), vec![0]).unwrap();
    shared.transactions = Some(TransactionConfig {
        durations: Durations::default(),
        max_per_shard: 1,
        fr_timeout_ms: None,
        fr_inv_timeout_ms: 181_000,
        max_failover: 2,
    });
    let counters = ShardCounters::default();
    let mut shard = Shard::alone(&shared, &counters);
    let mut sent = Sent::default();
    // For a host name: it goes to an upstream.
    let invite = String::from_utf8(request("INVITE", "noroom"))
        .unwrap()
        .replacen(&format!("sip:bob@{UAS}"), "sip:bob@example.net", 1)
        .into_bytes();
    shard.handle(&invite, &from_uac(), &mut sent);
    // Two upstreams answer 503 (each ACKed): two client transactions,
    // the table's room; the third upstream's cannot open, and its INVITE
    // is not sent (nothing could cancel or end it).
    for _ in 0..2 {
        let fwd = forwarded(&mut sent);
        let fwd = fwd.iter().find(|m| m.starts_with(b"INVITE")).unwrap();
        shard.handle(&answer(fwd, 503), &from_uas(), &mut sent);
    }
    let invites = sent
        .0
        .iter()
        .filter(|(m, _)| m.starts_with(b"INVITE"))
        .count();
    assert_eq!(invites, 0, "no INVITE to the third upstream");
    let answers: Vec<String> = sent
        .take()
        .into_iter()
        .filter(|m| m.parse::<u16>().is_ok())
        .collect();
    assert_eq!(answers, ["500"], "the best answer, a 503 as 500, at once");
}

/// §9.1: a branch cancelled after it rang that never sends its 487 is
/// taken for cancelled 64*T1 after the CANCEL: its client transaction
/// ends, and the caller gets 408 rather than waiting for good.
#[test]
fn a_cancelled_branch_that_never_answers_ends_after_64_t1() {
    let shared = shared(10);
    let counters = ShardCounters::default();
    let mut shard = Shard::alone(&shared, &counters);
    let mut sent = Sent::default();
    shard.now_ms = 0;
    let invite = request("INVITE", "deaf");
    shard.handle(&invite, &from_uac(), &mut sent);
    let fwd = forwarded(&mut sent);
    let fwd = fwd
        .iter()
        .find(|m| m.starts_with(b"INVITE"))
        .unwrap()
        .clone();
    shard.handle(&answer(&fwd, 180), &from_uas(), &mut sent);
    let cancel = String::from_utf8(invite)
        .unwrap()
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("1 INVITE", "1 CANCEL")
        .into_bytes();
    shard.handle(&cancel, &from_uac(), &mut sent);
    assert_eq!(sent.take(), ["180", "200", "Cancel"]);
    // The next hop answers neither the CANCEL nor the INVITE.
    for ms in (10..33_000).step_by(10) {
        shard.now_ms = ms;
        shard.run_timers(&mut sent);
    }
    let got = sent.take();
    assert!(got.contains(&"408".to_string()), "{got:?}");
    let st = shard.stateful.as_deref().unwrap();
    assert!(
        st.clients.iter().all(|c| c.tx.kind() != Kind::Invite),
        "the INVITE's client transaction ended"
    );
}
