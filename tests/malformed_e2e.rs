//! Malformed input sent to a running server (issue #5, robustness): each
//! case must be answered 400 (or 513 when too large) or dropped, never
//! forwarded, never crash the server; afterwards a good call is still
//! routed. On both I/O backends.

#[macro_use]
mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::process::{port, recv, socket, Proxy};
use sipshard::sip::{HeaderName, Message};

/// An INVITE from `uac` to `uas` through the proxy, with `via` (default:
/// the UAC's), `extra` header lines and a body.
fn invite(uac: &UdpSocket, uas: &UdpSocket, via: Option<Vec<u8>>, extra: &[u8]) -> Vec<u8> {
    let via = via.unwrap_or_else(|| {
        format!(
            "Via: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKmal\r\n",
            port(uac)
        )
        .into_bytes()
    });
    let mut m = format!("INVITE sip:bob@127.0.0.1:{} SIP/2.0\r\n", port(uas)).into_bytes();
    m.extend_from_slice(&via);
    m.extend_from_slice(
        b"To: <sip:bob@127.0.0.1>\r\nFrom: <sip:alice@127.0.0.1>;tag=m\r\nCall-ID: mal-1\r\nCSeq: 1 INVITE\r\n",
    );
    m.extend_from_slice(extra);
    m.extend_from_slice(b"\r\n");
    m
}

/// What came back within a short wait: the status of an answer to the
/// UAC, and whether anything reached the UAS.
fn outcome(uac: &UdpSocket, uas: &UdpSocket) -> (Option<u16>, bool) {
    let wait = Some(Duration::from_millis(250));
    uac.set_read_timeout(wait).unwrap();
    uas.set_read_timeout(wait).unwrap();
    let mut buf = vec![0u8; 65536];
    let answer = uac
        .recv_from(&mut buf)
        .ok()
        .and_then(|(n, _)| Message::parse(&buf[..n]).ok()?.status());
    let forwarded = uas.recv_from(&mut buf).is_ok();
    for s in [uac, uas] {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    }
    (answer, forwarded)
}

fn cases(uac: &UdpSocket, uas: &UdpSocket) -> Vec<(&'static str, Vec<u8>)> {
    let good = invite(uac, uas, None, b"");
    let mut truncated = good.clone();
    truncated.truncate(good.len() / 2);
    let many_headers: Vec<u8> = (0..2000)
        .flat_map(|i| format!("X-H{i}: v\r\n").into_bytes())
        .collect();
    let some_headers: Vec<u8> = (0..70)
        .flat_map(|i| format!("X-H{i}: v\r\n").into_bytes())
        .collect();
    let deep_via = format!(
        "Via: {}\r\n",
        (0..150)
            .map(|i| format!("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKd{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
    .into_bytes();
    vec![
        ("truncated", truncated),
        ("no empty line", good[..good.len() - 2].to_vec()),
        (
            "oversized header",
            invite(
                uac,
                uas,
                None,
                format!("X-Big: {}\r\n", "a".repeat(12_000)).as_bytes(),
            ),
        ),
        (
            "thousands of headers",
            invite(uac, uas, None, &many_headers),
        ),
        (
            "more headers than the index",
            invite(uac, uas, None, &some_headers),
        ),
        (
            "NUL in a header",
            invite(uac, uas, None, b"Subject: a\0b\r\n"),
        ),
        (
            "invalid UTF-8 in a quoted string",
            invite(
                uac,
                uas,
                None,
                b"Contact: \"\xc3\x28\xff\" <sip:alice@127.0.0.1>\r\n",
            ),
        ),
        (
            "huge Content-Length",
            invite(uac, uas, None, b"Content-Length: 99999999999\r\n"),
        ),
        (
            "negative Content-Length",
            invite(uac, uas, None, b"Content-Length: -5\r\n"),
        ),
        (
            "negative Max-Forwards",
            invite(uac, uas, None, b"Max-Forwards: -1\r\n"),
        ),
        (
            "overflowing Max-Forwards",
            invite(uac, uas, None, b"Max-Forwards: 4294967296\r\n"),
        ),
        (
            "overflowing CSeq",
            String::from_utf8(good.clone())
                .unwrap()
                .replace("CSeq: 1 INVITE", "CSeq: 99999999999999999999 INVITE")
                .into_bytes(),
        ),
        ("deep Via stack", invite(uac, uas, Some(deep_via), b"")),
        (
            "Via with a bad port",
            invite(
                uac,
                uas,
                Some(b"Via: SIP/2.0/UDP 127.0.0.1:99999;branch=z9hG4bKx\r\n".to_vec()),
                b"",
            ),
        ),
        (
            "garbage",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
        ),
    ]
}

fn malformed_input_is_answered_400_or_dropped_and_calls_still_work(io: &str) {
    let Some(proxy) = Proxy::start(io, &[]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    for (name, data) in cases(&uac, &uas) {
        uac.send_to(&data, proxy.addr).unwrap();
        let (answer, forwarded) = outcome(&uac, &uas);
        assert!(!forwarded, "{name}: forwarded");
        assert!(
            matches!(answer, None | Some(400) | Some(513)),
            "{name}: answered {answer:?}"
        );
    }
    // A good call still goes through.
    uac.send_to(&invite(&uac, &uas, None, b""), proxy.addr)
        .unwrap();
    let got = recv(&uas);
    let m = Message::parse(&got).unwrap();
    assert_eq!(m.vias().count(), 2);
    let to = String::from_utf8_lossy(m.header(HeaderName::To).unwrap()).into_owned();
    let mut ok = "SIP/2.0 200 OK\r\n".to_string();
    for v in m.values(HeaderName::Via) {
        ok.push_str(&format!("Via: {}\r\n", String::from_utf8_lossy(v.text)));
    }
    ok.push_str(&format!(
        "To: {to};tag=b\r\nFrom: <sip:alice@127.0.0.1>;tag=m\r\nCall-ID: mal-1\r\nCSeq: 1 INVITE\r\n\r\n"
    ));
    uas.send_to(ok.as_bytes(), proxy.addr).unwrap();
    assert_eq!(Message::parse(&recv(&uac)).unwrap().status(), Some(200));
    assert_eq!(proxy.terminate(), Some(0), "still alive, exits cleanly");
}

on_both_backends!(malformed_input_is_answered_400_or_dropped_and_calls_still_work);
