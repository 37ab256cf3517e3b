//! The routing rules end to end through [`super::route`]: a message in,
//! the action and the bytes that would be sent out.

use std::net::SocketAddr;

use super::branch::{BRANCH_LEN, OUR_BRANCH_PREFIX};
use super::*;
use crate::sip::Rport;
use crate::transport::{Dest, Source};

const US: &str = "192.0.2.10:5060";

fn cfg() -> ProxyConfig {
    ProxyConfig::at(US.parse().unwrap())
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A datagram to `s`, from the address the message came to.
fn to(s: &str) -> Dest {
    Dest::Udp {
        peer: addr(s),
        from: Some(addr(US).ip()),
    }
}

/// Routes `data` from `src`; returns the action and, for a forward,
/// the datagram that would be sent.
fn run(cfg: &ProxyConfig, data: &[u8], src: &str) -> (Action<'static>, Vec<u8>) {
    static EMPTY: std::sync::OnceLock<Replica> = std::sync::OnceLock::new();
    run_at(cfg, EMPTY.get_or_init(Replica::default), 0, data, src)
}

/// As `run`, with a location replica and a time.
fn run_at<'r>(
    cfg: &ProxyConfig,
    replica: &'r Replica,
    now: u64,
    data: &[u8],
    src: &str,
) -> (Action<'r>, Vec<u8>) {
    let msg = Message::parse(data).unwrap();
    let mut scratch = Scratch::default();
    let mut edits = Edits::new();
    let loc = Lookup { replica, now };
    let action = route(
        &msg,
        &Source::udp(addr(src), addr(US)),
        cfg,
        loc,
        &mut scratch,
        &mut edits,
    );
    let mut out = vec![0u8; data.len() + 512];
    let n = match action {
        Action::Forward(_) => edits.write(&msg, &mut out).unwrap(),
        _ => 0,
    };
    out.truncate(n);
    (action, out)
}

fn invite(extra: &str) -> Vec<u8> {
    format!(
        "INVITE sip:bob@192.0.2.4:5062 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n\
{extra}To: <sip:bob@example.com>\r\n\
From: <sip:alice@example.com>;tag=1\r\n\
Call-ID: call-1@192.0.2.1\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn invite_is_forwarded_with_our_via_and_one_hop_less() {
    let (action, out) = run(&cfg(), &invite("Max-Forwards: 70\r\n"), "192.0.2.1:5060");
    assert_eq!(action, Action::Forward(to("192.0.2.4:5062")));
    let m = Message::parse(&out).unwrap();
    m.validate().unwrap();
    let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].host_raw, b"192.0.2.10");
    assert_eq!(vias[0].port, Some(5060));
    assert!(vias[0].branch.unwrap().starts_with(OUR_BRANCH_PREFIX));
    assert_eq!(vias[0].branch.unwrap().len(), BRANCH_LEN);
    assert_eq!(vias[1].branch, Some(&b"z9hG4bKabc"[..]));
    assert_eq!(vias[1].received, None, "source equals sent-by");
    assert_eq!(m.max_forwards(), Ok(Some(69)));
    assert_eq!(m.record_routes().count(), 0);
}

#[test]
fn a_wildcard_bind_does_not_make_every_host_us() {
    // Listening on 0.0.0.0:5060 and advertising 192.0.2.10:5060: a
    // request for another host on port 5060 is forwarded, not taken as
    // addressed to us.
    let mut c = ProxyConfig::at(US.parse().unwrap());
    c.local.push(addr("0.0.0.0:5060"));
    let data = String::from_utf8(invite(""))
        .unwrap()
        .replace("sip:bob@192.0.2.4:5062", "sip:bob@192.0.2.4");
    let (action, _) = run(&c, data.as_bytes(), "192.0.2.1:5060");
    assert_eq!(action, Action::Forward(to("192.0.2.4:5060")));
}

#[test]
fn the_ack_of_our_own_answer_is_not_forwarded() {
    // A valid INVITE would be forwarded; its ACK carrying our local
    // To tag acknowledges an answer we gave, and ends here.
    let ack = |tag: &str| {
        String::from_utf8(invite(""))
            .unwrap()
            .replace("INVITE sip", "ACK sip")
            .replace("1 INVITE", "1 ACK")
            .replace(
                "To: <sip:bob@example.com>",
                &format!("To: <sip:bob@example.com>;tag={tag}"),
            )
    };
    let probe = ack("x");
    let ours = local_to_tag(&Message::parse(probe.as_bytes()).unwrap());
    let ours = ack(std::str::from_utf8(&ours).unwrap());
    let (action, _) = run(&cfg(), ours.as_bytes(), "192.0.2.1:5060");
    assert_eq!(action, Action::Drop(DropReason::AckNotAnswered));
    let (action, _) = run(&cfg(), ack("callee-tag").as_bytes(), "192.0.2.1:5060");
    assert!(matches!(action, Action::Forward(_)), "{action:?}");
}

#[test]
fn an_ack_is_never_answered() {
    let ack = String::from_utf8(invite("Max-Forwards: 0\r\n"))
        .unwrap()
        .replace("INVITE sip", "ACK sip")
        .replace("1 INVITE", "1 ACK");
    let (action, _) = run(&cfg(), ack.as_bytes(), "192.0.2.1:5060");
    assert_eq!(action, Action::Drop(DropReason::AckNotAnswered));
    for (i, r) in DropReason::ALL.iter().enumerate() {
        assert_eq!(*r as usize, i, "{}", r.name());
    }
}

#[test]
fn missing_max_forwards_becomes_70() {
    let (_, out) = run(&cfg(), &invite(""), "192.0.2.1:5060");
    assert_eq!(Message::parse(&out).unwrap().max_forwards(), Ok(Some(70)));
}

#[test]
fn max_forwards_zero_is_483_to_the_via_port() {
    let (action, _) = run(&cfg(), &invite("Max-Forwards: 0\r\n"), "192.0.2.1:7000");
    assert_eq!(
        action,
        Action::Reply {
            code: 483,
            reason: ("Too Many Hops", ""),
            to: to("192.0.2.1:5060")
        }
    );
}

#[test]
fn a_request_that_comes_back_is_482_a_spiral_is_not() {
    let (_, out) = run(&cfg(), &invite("Max-Forwards: 70\r\n"), "192.0.2.1:5060");
    let (action, _) = run(&cfg(), &out, "192.0.2.4:5062");
    assert!(
        matches!(action, Action::Reply { code: 482, .. }),
        "{action:?}"
    );
    let spiral = String::from_utf8(out).unwrap().replace(
        "INVITE sip:bob@192.0.2.4:5062",
        "INVITE sip:bob@192.0.2.5:5062",
    );
    let (action, _) = run(&cfg(), spiral.as_bytes(), "192.0.2.4:5062");
    assert_eq!(action, Action::Forward(to("192.0.2.5:5062")));
}

#[test]
fn retransmission_and_cancel_get_the_same_branch() {
    let (_, a) = run(&cfg(), &invite(""), "192.0.2.1:5060");
    let (_, b) = run(&cfg(), &invite(""), "192.0.2.1:5060");
    let cancel = String::from_utf8(invite(""))
        .unwrap()
        .replace("INVITE sip", "CANCEL sip")
        .replace("1 INVITE", "1 CANCEL");
    let (action, c) = run(&cfg(), cancel.as_bytes(), "192.0.2.1:5060");
    assert_eq!(action, Action::Forward(to("192.0.2.4:5062")));
    let top = |d: &[u8]| {
        Message::parse(d)
            .unwrap()
            .via()
            .unwrap()
            .branch
            .unwrap()
            .to_vec()
    };
    assert_eq!(top(&a), top(&b));
    assert_eq!(top(&a), top(&c));
}

#[test]
fn rport_and_received_are_filled_in() {
    let data = String::from_utf8(invite(""))
        .unwrap()
        .replace("z9hG4bKabc", "z9hG4bKabc;rport");
    let (_, out) = run(&cfg(), data.as_bytes(), "203.0.113.5:40000");
    let m = Message::parse(&out).unwrap();
    let client = m.vias().nth(1).unwrap().unwrap();
    assert_eq!(client.rport, Rport::Value(40000));
    assert_eq!(client.received, Some(&b"203.0.113.5"[..]));

    let (_, out) = run(&cfg(), &invite(""), "203.0.113.5:5060");
    let m = Message::parse(&out).unwrap();
    let client = m.vias().nth(1).unwrap().unwrap();
    assert_eq!(client.rport, Rport::Absent);
    assert_eq!(client.received, Some(&b"203.0.113.5"[..]));

    let data = String::from_utf8(invite("Max-Forwards: 0\r\n"))
        .unwrap()
        .replace("z9hG4bKabc", "z9hG4bKabc;rport");
    let (action, _) = run(&cfg(), data.as_bytes(), "203.0.113.5:40000");
    assert!(matches!(action, Action::Reply { to, .. } if to == self::to("203.0.113.5:40000")));
}

/// The client's other Via parameters go on byte for byte (only
/// received, §18.2.1, and rport, RFC 3581 §4, change), over IPv4 and
/// IPv6 sources,
/// non-ASCII bytes of a quoted value included (the `core::fmt` writer
/// this replaced sent each such byte as a two-byte UTF-8 char).
#[test]
fn the_client_via_keeps_its_other_parameters_byte_for_byte() {
    let mut data = invite("");
    let at = data.windows(10).position(|w| w == b"z9hG4bKabc").unwrap() + 10;
    data.splice(at..at, b";x=\"caf\xe9\";rport;lr".iter().copied());
    for (src, received) in [
        ("203.0.113.5:40000", &b"203.0.113.5"[..]),
        ("[2001:db8::7]:40000", &b"2001:db8::7"[..]),
    ] {
        let (_, out) = run(&cfg(), &data, src);
        let m = Message::parse(&out).unwrap();
        let client = m.vias().nth(1).unwrap().unwrap();
        let mut want = b";branch=z9hG4bKabc;x=\"caf\xe9\";lr;received=".to_vec();
        want.extend_from_slice(received);
        want.extend_from_slice(b";rport=40000");
        assert_eq!(client.params, &want[..], "{src}");
    }
}

#[test]
fn a_client_cannot_choose_where_responses_go() {
    let data = String::from_utf8(invite("")).unwrap().replace(
        "z9hG4bKabc",
        "z9hG4bKabc;received=198.51.100.66;rport=9;x=1",
    );
    let (_, out) = run(&cfg(), data.as_bytes(), "203.0.113.5:40000");
    let m = Message::parse(&out).unwrap();
    let client = m.vias().nth(1).unwrap().unwrap();
    assert_eq!(client.received, Some(&b"203.0.113.5"[..]));
    assert_eq!(client.rport, Rport::Value(40000));
    assert_eq!(client.branch, Some(&b"z9hG4bKabc"[..]));
    assert!(client.params().any(|p| p.name == b"x"), "other params kept");
    assert_eq!(client.params().filter(|p| p.name == b"received").count(), 1);
}

#[test]
fn a_broken_route_is_400() {
    let (action, _) = run(
        &cfg(),
        &invite("Route: <sip:192.0.2.20;lr\r\n"),
        "192.0.2.1:5060",
    );
    assert!(
        matches!(
            action,
            Action::Reply {
                code: 400,
                reason: ("Bad ", "Route"),
                ..
            }
        ),
        "{action:?}"
    );
}

#[test]
fn record_route_goes_on_top() {
    let mut c = cfg();
    c.record_route = true;
    let (_, out) = run(
        &c,
        &invite("Record-Route: <sip:192.0.2.99;lr>\r\n"),
        "192.0.2.1:5060",
    );
    let m = Message::parse(&out).unwrap();
    let rr: Vec<_> = m.record_routes().map(|r| r.unwrap().uri).collect();
    assert_eq!(
        rr,
        vec![&b"sip:192.0.2.10:5060;lr"[..], b"sip:192.0.2.99;lr"]
    );
}

#[test]
fn record_route_only_where_a_dialog_can_start() {
    let mut c = cfg();
    c.record_route = true;
    let with = |method: &str, to_tag: bool| {
        let mut d = String::from_utf8(invite(""))
            .unwrap()
            .replace("INVITE sip", &format!("{method} sip"))
            .replace("1 INVITE", &format!("1 {method}"));
        if to_tag {
            d = d.replace(
                "To: <sip:bob@example.com>",
                "To: <sip:bob@example.com>;tag=b1",
            );
        }
        let (action, out) = run(&c, d.as_bytes(), "192.0.2.1:5060");
        assert!(matches!(action, Action::Forward(_)), "{method}: {action:?}");
        Message::parse(&out).unwrap().record_routes().count()
    };
    for method in ["INVITE", "SUBSCRIBE", "REFER", "MESSAGE", "NEWMETHOD"] {
        assert_eq!(with(method, false), 1, "{method} without a To tag");
    }
    for method in ["INVITE", "ACK", "BYE", "UPDATE", "NOTIFY", "NEWMETHOD"] {
        assert_eq!(with(method, true), 0, "{method} in a dialog");
    }
    for method in ["REGISTER", "OPTIONS", "CANCEL", "ACK"] {
        assert_eq!(with(method, false), 0, "{method} creates no dialog");
    }
}

#[test]
fn our_loose_route_is_removed_and_the_next_one_followed() {
    let (action, out) = run(
        &cfg(),
        &invite("Route: <sip:192.0.2.10:5060;lr>, <sip:192.0.2.20;lr>\r\n"),
        "192.0.2.1:5060",
    );
    assert_eq!(action, Action::Forward(to("192.0.2.20:5060")));
    let m = Message::parse(&out).unwrap();
    let routes: Vec<_> = m.routes().map(|r| r.unwrap().uri).collect();
    assert_eq!(routes, vec![&b"sip:192.0.2.20;lr"[..]]);
    assert_eq!(m.request_uri_bytes(), Some(&b"sip:bob@192.0.2.4:5062"[..]));
}

#[test]
fn strict_router_request_uri_is_restored_from_the_last_route() {
    let data = String::from_utf8(invite("Route: <sip:192.0.2.30:5080>\r\n"))
        .unwrap()
        .replace(
            "INVITE sip:bob@192.0.2.4:5062",
            "INVITE sip:192.0.2.10:5060",
        );
    let (action, out) = run(&cfg(), data.as_bytes(), "192.0.2.1:5060");
    assert_eq!(action, Action::Forward(to("192.0.2.30:5080")));
    let m = Message::parse(&out).unwrap();
    assert_eq!(m.request_uri_bytes(), Some(&b"sip:192.0.2.30:5080"[..]));
    assert_eq!(m.routes().count(), 0);
}

#[test]
fn a_strict_router_next_hop_gets_its_uri_as_request_uri() {
    // §16.6 step 6: our Route, then a strict router on the same line.
    let (action, out) = run(
        &cfg(),
        &invite("Route: <sip:192.0.2.10:5060;lr>, <sip:192.0.2.40:5070>, <sip:192.0.2.41;lr>\r\n"),
        "192.0.2.1:5060",
    );
    assert_eq!(action, Action::Forward(to("192.0.2.40:5070")));
    let m = Message::parse(&out).unwrap();
    assert_eq!(m.request_uri_bytes(), Some(&b"sip:192.0.2.40:5070"[..]));
    let routes: Vec<_> = m.routes().map(|r| r.unwrap().uri).collect();
    assert_eq!(
        routes,
        vec![&b"sip:192.0.2.41;lr"[..], b"sip:bob@192.0.2.4:5062"]
    );
    // The same with the strict router alone on the next line.
    let (_, out) = run(
        &cfg(),
        &invite("Route: <sip:192.0.2.10:5060;lr>\r\nRoute: <sip:192.0.2.40:5070>\r\n"),
        "192.0.2.1:5060",
    );
    let m = Message::parse(&out).unwrap();
    assert_eq!(m.request_uri_bytes(), Some(&b"sip:192.0.2.40:5070"[..]));
    let routes: Vec<_> = m.routes().map(|r| r.unwrap().uri).collect();
    assert_eq!(routes, vec![&b"sip:bob@192.0.2.4:5062"[..]]);
    // A strict router first, with no Route of ours before it.
    let (action, out) = run(
        &cfg(),
        &invite("Route: <sip:192.0.2.40:5070>\r\n"),
        "192.0.2.1:5060",
    );
    assert_eq!(action, Action::Forward(to("192.0.2.40:5070")));
    let m = Message::parse(&out).unwrap();
    m.validate().unwrap();
    assert_eq!(m.request_uri_bytes(), Some(&b"sip:192.0.2.40:5070"[..]));
    let routes: Vec<_> = m.routes().map(|r| r.unwrap().uri).collect();
    assert_eq!(routes, vec![&b"sip:bob@192.0.2.4:5062"[..]]);
    // Our Route and a loose next hop on one line: both are fine too.
    let (_, out) = run(
        &cfg(),
        &invite("Route: <sip:192.0.2.10:5060;lr>, <sip:192.0.2.20;lr>\r\n"),
        "192.0.2.1:5060",
    );
    let routes: Vec<_> = Message::parse(&out)
        .unwrap()
        .routes()
        .map(|r| r.unwrap().uri.to_vec())
        .collect();
    assert_eq!(routes, vec![b"sip:192.0.2.20;lr".to_vec()]);
}

#[test]
fn every_route_naming_us_at_the_top_is_removed() {
    // RFC 5658 double Record-Route: a proxy on two addresses (or two
    // transports) left one entry per side; both name us.
    let mut c = cfg();
    c.local.push(addr("198.51.100.10:5060"));
    let routes_of = |out: &[u8]| -> Vec<Vec<u8>> {
        let m = Message::parse(out).unwrap();
        m.validate().unwrap();
        m.routes().map(|r| r.unwrap().uri.to_vec()).collect()
    };
    for (extra, dest, left) in [
        (
            "Route: <sip:192.0.2.10;lr>, <sip:198.51.100.10;lr;transport=tcp>, <sip:192.0.2.20;lr>\r\n",
            "192.0.2.20:5060",
            vec![b"sip:192.0.2.20;lr".to_vec()],
        ),
        (
            "Route: <sip:192.0.2.10;lr>\r\nRoute: <sip:198.51.100.10;lr>\r\nRoute: <sip:192.0.2.20;lr>\r\n",
            "192.0.2.20:5060",
            vec![b"sip:192.0.2.20;lr".to_vec()],
        ),
        (
            "Route: <sip:192.0.2.10;lr>\r\nRoute: <sip:192.0.2.10:5060;lr>, <sip:192.0.2.20;lr>\r\n",
            "192.0.2.20:5060",
            vec![b"sip:192.0.2.20;lr".to_vec()],
        ),
        // Only ours: the Request-URI is next.
        (
            "Route: <sip:192.0.2.10;lr>, <sip:198.51.100.10;lr>\r\n",
            "192.0.2.4:5062",
            vec![],
        ),
        // Ours below another's is not ours to remove.
        (
            "Route: <sip:192.0.2.20;lr>, <sip:192.0.2.10;lr>\r\n",
            "192.0.2.20:5060",
            vec![b"sip:192.0.2.20;lr".to_vec(), b"sip:192.0.2.10;lr".to_vec()],
        ),
    ] {
        let (action, out) = run(&c, &invite(extra), "192.0.2.1:5060");
        assert_eq!(action, Action::Forward(to(dest)), "{extra}");
        assert_eq!(routes_of(&out), left, "{extra}");
    }
    // Two of ours, then a strict router (§16.6 step 6).
    let (action, out) = run(
        &c,
        &invite("Route: <sip:192.0.2.10;lr>, <sip:198.51.100.10;lr>, <sip:192.0.2.40:5070>, <sip:192.0.2.41;lr>\r\n"),
        "192.0.2.1:5060",
    );
    assert_eq!(action, Action::Forward(to("192.0.2.40:5070")));
    let m = Message::parse(&out).unwrap();
    assert_eq!(m.request_uri_bytes(), Some(&b"sip:192.0.2.40:5070"[..]));
    assert_eq!(
        routes_of(&out),
        [
            b"sip:192.0.2.41;lr".to_vec(),
            b"sip:bob@192.0.2.4:5062".to_vec()
        ]
    );
    // A strict previous hop (§16.4): the last Route becomes the
    // Request-URI, and both of ours go.
    for extra in [
        "Route: <sip:192.0.2.10;lr>, <sip:198.51.100.10;lr>, <sip:192.0.2.30:5080>\r\n",
        "Route: <sip:192.0.2.10;lr>\r\nRoute: <sip:198.51.100.10;lr>\r\nRoute: <sip:192.0.2.30:5080>\r\n",
    ] {
        let data = String::from_utf8(invite(extra)).unwrap().replace(
            "INVITE sip:bob@192.0.2.4:5062",
            "INVITE sip:192.0.2.10:5060",
        );
        let (action, out) = run(&c, data.as_bytes(), "192.0.2.1:5060");
        assert_eq!(action, Action::Forward(to("192.0.2.30:5080")), "{extra}");
        let m = Message::parse(&out).unwrap();
        assert_eq!(m.request_uri_bytes(), Some(&b"sip:192.0.2.30:5080"[..]));
        assert_eq!(routes_of(&out), Vec::<Vec<u8>>::new(), "{extra}");
    }
}

#[test]
fn strict_previous_hop_with_our_route_on_the_same_line() {
    let data = String::from_utf8(invite(
        "Route: <sip:192.0.2.10:5060;lr>, <sip:192.0.2.30:5080>\r\n",
    ))
    .unwrap()
    .replace(
        "INVITE sip:bob@192.0.2.4:5062",
        "INVITE sip:192.0.2.10:5060",
    );
    let (action, out) = run(&cfg(), data.as_bytes(), "192.0.2.1:5060");
    assert_eq!(action, Action::Forward(to("192.0.2.30:5080")));
    let m = Message::parse(&out).unwrap();
    assert_eq!(m.request_uri_bytes(), Some(&b"sip:192.0.2.30:5080"[..]));
    assert_eq!(m.routes().count(), 0);
}

#[test]
fn host_names_go_upstream_by_call_id_or_are_dropped() {
    let data = String::from_utf8(invite(""))
        .unwrap()
        .replace("sip:bob@192.0.2.4:5062", "sip:bob@example.com");
    let (action, _) = run(&cfg(), data.as_bytes(), "192.0.2.1:5060");
    assert_eq!(action, Action::Drop(DropReason::Unresolved));
    let mut c = cfg();
    c.upstreams = vec![addr("198.51.100.1:5060"), addr("198.51.100.2:5060")];
    let (a1, _) = run(&c, data.as_bytes(), "192.0.2.1:5060");
    let (a2, _) = run(&c, data.as_bytes(), "192.0.2.1:5060");
    assert_eq!(a1, a2);
    assert!(matches!(a1, Action::Forward(a) if a.peer().is_some_and(|p| c.upstreams.contains(&p))));
    let mut seen = std::collections::HashSet::new();
    for i in 0..32 {
        let d = data.replace("call-1@", &format!("call-{i}@"));
        if let (Action::Forward(a), _) = run(&c, d.as_bytes(), "192.0.2.1:5060") {
            seen.insert(a);
        }
    }
    assert_eq!(seen.len(), 2, "Call-IDs spread over both upstreams");
}

#[test]
fn options_to_us_is_answered() {
    let data = String::from_utf8(invite(""))
        .unwrap()
        .replace("INVITE sip:bob@192.0.2.4:5062", "OPTIONS sip:192.0.2.10")
        .replace("1 INVITE", "1 OPTIONS");
    let (action, _) = run(&cfg(), data.as_bytes(), "192.0.2.1:5060");
    assert_eq!(
        action,
        Action::Reply {
            code: 200,
            reason: ("OK", ""),
            to: to("192.0.2.1:5060")
        }
    );
}

#[test]
fn options_to_us_is_answered_even_at_max_forwards_zero() {
    // §16.3 step 3 lets a proxy answer OPTIONS addressed to itself.
    let data = String::from_utf8(invite("Max-Forwards: 0\r\n"))
        .unwrap()
        .replace("INVITE sip:bob@192.0.2.4:5062", "OPTIONS sip:192.0.2.10")
        .replace("1 INVITE", "1 OPTIONS");
    let (action, _) = run(&cfg(), data.as_bytes(), "192.0.2.1:5060");
    assert!(
        matches!(action, Action::Reply { code: 200, .. }),
        "{action:?}"
    );
}

#[test]
fn a_user_at_us_with_nowhere_to_go_is_404_or_goes_upstream() {
    let data = String::from_utf8(invite(""))
        .unwrap()
        .replace("sip:bob@192.0.2.4:5062", "sip:bob@192.0.2.10");
    let (action, _) = run(&cfg(), data.as_bytes(), "192.0.2.1:5060");
    assert!(
        matches!(action, Action::Reply { code: 404, .. }),
        "{action:?}"
    );
    let mut c = cfg();
    c.upstreams = vec![addr("198.51.100.1:5060")];
    let (action, _) = run(&c, data.as_bytes(), "192.0.2.1:5060");
    assert_eq!(action, Action::Forward(to("198.51.100.1:5060")));
}

#[test]
fn invalid_request_gets_400_with_the_reason() {
    let data = String::from_utf8(invite(""))
        .unwrap()
        .replace("Call-ID: call-1@192.0.2.1\r\n", "");
    let (action, _) = run(&cfg(), data.as_bytes(), "192.0.2.1:5060");
    assert_eq!(
        action,
        Action::Reply {
            code: 400,
            reason: ("Missing ", "Call-ID"),
            to: to("192.0.2.1:5060")
        }
    );
    let no_via = String::from_utf8(invite(""))
        .unwrap()
        .replace("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n", "");
    let (action, _) = run(&cfg(), no_via.as_bytes(), "192.0.2.1:5060");
    assert_eq!(action, Action::Drop(DropReason::Malformed));
}

/// The option-tags a 420 would list for this action.
fn listed(data: &[u8], action: Action<'_>) -> Vec<Vec<u8>> {
    let Action::BadExtension {
        header, supported, ..
    } = action
    else {
        panic!("not a 420: {action:?}");
    };
    let msg = Message::parse(data).unwrap();
    let tags = unsupported(&msg, header, supported)
        .map(<[u8]>::to_vec)
        .collect();
    tags
}

#[test]
fn proxy_require_we_lack_is_420_and_require_is_not_ours() {
    // §16.3 step 5: every tag of Proxy-Require, over two lines.
    let data = invite("Proxy-Require: foo, bar\r\nProxy-Require: baz\r\nRequire: qux\r\n");
    let (action, _) = run(&cfg(), &data, "192.0.2.1:7000");
    assert_eq!(
        action,
        Action::BadExtension {
            header: HeaderName::ProxyRequire,
            supported: PROXY_SUPPORTED,
            to: to("192.0.2.1:5060"),
        }
    );
    assert_eq!(listed(&data, action), [&b"foo"[..], b"bar", b"baz"]);
    // Require is for the UAS: a proxy forwards it untouched.
    let (action, out) = run(&cfg(), &invite("Require: 100rel\r\n"), "192.0.2.1:5060");
    assert_eq!(action, Action::Forward(to("192.0.2.4:5062")));
    let m = Message::parse(&out).unwrap();
    assert_eq!(m.header(HeaderName::Require), Some(&b"100rel"[..]));
}

#[test]
fn cancel_and_ack_ignore_proxy_require() {
    // §8.2.2.3: Proxy-Require is ignored in a CANCEL and an ACK.
    for method in ["CANCEL", "ACK"] {
        let data = String::from_utf8(invite("Proxy-Require: foo\r\n"))
            .unwrap()
            .replace("INVITE sip", &format!("{method} sip"))
            .replace("1 INVITE", &format!("1 {method}"));
        let (action, _) = run(&cfg(), data.as_bytes(), "192.0.2.1:5060");
        assert_eq!(action, Action::Forward(to("192.0.2.4:5062")), "{method}");
    }
}

#[test]
fn options_to_us_checks_require_and_proxy_require() {
    let options = |extra: &str| {
        String::from_utf8(invite(extra))
            .unwrap()
            .replace("INVITE sip:bob@192.0.2.4:5062", "OPTIONS sip:192.0.2.10")
            .replace("1 INVITE", "1 OPTIONS")
            .into_bytes()
    };
    for (header, extra) in [
        (HeaderName::Require, "Require: foo\r\n"),
        (HeaderName::ProxyRequire, "Proxy-Require: foo\r\n"),
    ] {
        let data = options(extra);
        let (action, _) = run(&cfg(), &data, "192.0.2.1:5060");
        assert!(
            matches!(action, Action::BadExtension { header: h, .. } if h == header),
            "{action:?}"
        );
        assert_eq!(listed(&data, action), [&b"foo"[..]]);
    }
}

#[test]
fn the_registrar_supports_path_and_nothing_else() {
    let mut c = cfg();
    c.domains = vec![b"example.com".to_vec().into_boxed_slice()];
    let register = |extra: &str| {
        String::from_utf8(invite(extra))
            .unwrap()
            .replace("INVITE sip:bob@192.0.2.4:5062", "REGISTER sip:example.com")
            .replace("1 INVITE", "1 REGISTER")
            .into_bytes()
    };
    // §10.3 step 2: the registrar checks Require like any UAS.
    let (action, _) = run(&c, &register("Require: path\r\n"), "192.0.2.1:5060");
    assert_eq!(action, Action::Register);
    let data = register("Require: path, gruu\r\n");
    let (action, _) = run(&c, &data, "192.0.2.1:5060");
    assert!(
        matches!(
            action,
            Action::BadExtension {
                header: HeaderName::Require,
                ..
            }
        ),
        "{action:?}"
    );
    assert_eq!(listed(&data, action), [&b"gruu"[..]]);
    // The proxy in front of it supports nothing (§16.3 step 5).
    let data = register("Proxy-Require: path\r\n");
    let (action, _) = run(&c, &data, "192.0.2.1:5060");
    assert_eq!(listed(&data, action), [&b"path"[..]]);
}

#[test]
fn a_via_that_is_not_sip_2_0_is_400_never_forwarded() {
    let top = "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc";
    for bad in ["SIP/3.0/UDP", "FOO/2.0/UDP"] {
        let data = String::from_utf8(invite("")).unwrap();
        let bad_top = data.replace("SIP/2.0/UDP", bad);
        let bad_below = data.replace(
            top,
            &format!("{top}\r\nVia: {bad} 192.0.2.99;branch=z9hG4bKx"),
        );
        for data in [bad_top, bad_below] {
            let (action, _) = run(&cfg(), data.as_bytes(), "192.0.2.1:5060");
            assert_eq!(
                action,
                Action::Reply {
                    code: 400,
                    reason: ("Via Not SIP/2.0", ""),
                    to: to("192.0.2.1:5060")
                },
                "{data}"
            );
        }
    }
}

fn response(top: &str, next: &str) -> Vec<u8> {
    format!(
        "SIP/2.0 180 Ringing\r\n{top}{next}To: <sip:bob@example.com>;tag=b\r\n\
From: <sip:alice@example.com>;tag=1\r\nCall-ID: call-1@192.0.2.1\r\nCSeq: 1 INVITE\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn responses_follow_the_via_path() {
    let (_, fwd) = run(&cfg(), &invite(""), "203.0.113.5:40000");
    let ours = Message::parse(&fwd).unwrap();
    let top = ours.via().unwrap();
    let top_line = format!(
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch={}\r\n",
        String::from_utf8_lossy(top.branch.unwrap())
    );
    let next = "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;received=203.0.113.5\r\n";
    let (action, out) = run(&cfg(), &response(&top_line, next), "192.0.2.4:5062");
    assert_eq!(action, Action::Forward(to("203.0.113.5:5060")));
    let m = Message::parse(&out).unwrap();
    assert_eq!(m.vias().count(), 1);
    assert_eq!(m.via().unwrap().branch, Some(&b"z9hG4bKabc"[..]));

    let next =
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport=40000;received=203.0.113.5\r\n";
    let (action, _) = run(&cfg(), &response(&top_line, next), "192.0.2.4:5062");
    assert_eq!(action, Action::Forward(to("203.0.113.5:40000")));

    let (action, _) = run(&cfg(), &response(&top_line, ""), "192.0.2.4:5062");
    assert_eq!(action, Action::Drop(DropReason::NoNextVia));

    let next = "Via: SIP/2.0/UDP client.example.com;branch=z9hG4bKabc\r\n";
    let (action, _) = run(&cfg(), &response(&top_line, next), "192.0.2.4:5062");
    assert_eq!(action, Action::Drop(DropReason::Unresolved));

    // A Via that is not SIP/2.0, ours or the next one: malformed.
    let next = "Via: SIP/3.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n";
    let (action, _) = run(&cfg(), &response(&top_line, next), "192.0.2.4:5062");
    assert_eq!(action, Action::Drop(DropReason::Malformed));
    let next = "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n";
    let forged_top = top_line.replace("SIP/2.0/UDP", "FOO/2.0/UDP");
    let (action, _) = run(&cfg(), &response(&forged_top, next), "192.0.2.4:5062");
    assert_eq!(action, Action::Drop(DropReason::Malformed));
}

#[test]
fn responses_not_for_us_are_dropped() {
    let next = "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n";
    let foreign = "Via: SIP/2.0/UDP 192.0.2.77:5060;branch=z9hG4bKsS0000000000000000aaaaaaaa\r\n";
    let (action, _) = run(&cfg(), &response(foreign, next), "192.0.2.4:5062");
    assert_eq!(action, Action::Drop(DropReason::NotOurVia));
    let not_our_branch = "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKforeign\r\n";
    let (action, _) = run(&cfg(), &response(not_our_branch, next), "192.0.2.4:5062");
    assert_eq!(action, Action::Drop(DropReason::NotOurVia));
}
