//! SIP over WebSocket end to end (RFC 7118): the real binary with a `ws:`
//! listen, a WebSocket client written here (tests/common/ws.rs), a UDP
//! UAS. Every test runs on both I/O backends.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::process::{counter, port, recv, socket, stream_addr, Proxy};
use common::sip::{call_ids_on_both_shards, response_to};
use common::ws::{frame, read_frame, read_http, send_text, upgrade_request};

use sipshard::sip::{HeaderName, Message, Method};

/// sipshard with UDP and WebSocket listens; None when io_uring is refused.
fn start(io: &str, extra: &[&str]) -> Option<(Proxy, SocketAddr)> {
    let mut args = vec!["--listen", "ws:127.0.0.1:0"];
    args.extend_from_slice(extra);
    let proxy = Proxy::start(io, &args)?;
    let ws = stream_addr(&proxy.banner, "ws");
    Some((proxy, ws))
}

/// A connection with its handshake done.
fn open(addr: SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c.write_all(upgrade_request("Sec-WebSocket-Protocol: sip\r\n").as_bytes())
        .unwrap();
    let answer = read_http(&mut c);
    assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
    // RFC 6455 §1.3's example key and its accept value.
    assert!(answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(answer.contains("Sec-WebSocket-Protocol: sip\r\n"));
    c
}

/// A request from a WebSocket client (RFC 7118 §5.2: Via WS, a made-up
/// host).
fn request(method: &str, uri: &str, call: &str, extra: &str) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK{call}\r\n\
To: <sip:bob@example.com>\r\nFrom: <sip:alice@example.com>;tag=a1\r\nCall-ID: {call}\r\n\
CSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

/// The next SIP message in a text frame (control frames not expected).
fn read_sip(c: &mut TcpStream) -> Vec<u8> {
    let (opcode, payload) = read_frame(c);
    assert_eq!(opcode, 0x1, "a text frame");
    payload
}

fn status(m: &[u8]) -> u16 {
    Message::parse(m).unwrap().status().unwrap()
}

/// One SIP message per WebSocket message: OPTIONS answered, INVITEs
/// forwarded over UDP with their responses back in frames from either
/// shard (some reach the shard that does not own the connection and are
/// mailed to the one that does, counted), a WebSocket ping answered with
/// a pong.
fn messages_in_frames_are_answered_and_forwarded(io: &str) {
    let Some((proxy, ws)) = start(io, &[]) else {
        return;
    };
    let mut c = open(ws);
    send_text(
        &mut c,
        request("OPTIONS", &format!("sip:{}", proxy.addr), "ws-opt", "").as_bytes(),
    );
    assert_eq!(status(&read_sip(&mut c)), 200);
    // Responses on both shards, whichever owns the connection: Call-IDs
    // that `--steer call-id` spreads over both, and each call's UAS a new
    // socket, a new draw of the kernel's 4-tuple hash under `flow` (where
    // eBPF is refused; all 32 on the connection's shard once in 2^32
    // runs).
    for call in call_ids_on_both_shards("ws-call", 32) {
        let uas = socket();
        let uri = format!("sip:bob@127.0.0.1:{}", port(&uas));
        send_text(&mut c, request("INVITE", &uri, &call, "").as_bytes());
        let fwd = recv(&uas);
        let m = Message::parse(&fwd).unwrap();
        let vias: Vec<_> = m.values(HeaderName::Via).collect();
        assert!(vias[1]
            .text
            .starts_with(b"SIP/2.0/WS df7jal23ls0d.invalid;"));
        uas.send_to(&response_to(&fwd, 200, "OK"), proxy.addr)
            .unwrap();
        let got = read_sip(&mut c);
        assert_eq!(status(&got), 200);
        let m = Message::parse(&got).unwrap();
        assert_eq!(m.header(HeaderName::CallId).unwrap(), call.as_bytes());
    }
    c.write_all(&frame(0x9, b"hello")).unwrap();
    assert_eq!(
        read_frame(&mut c),
        (0xA, b"hello".to_vec()),
        "the pong echoes"
    );
    // A close is answered with a close, then the connection ends.
    c.write_all(&frame(0x8, &1000u16.to_be_bytes())).unwrap();
    assert_eq!(read_frame(&mut c).0, 0x8);
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(rest.is_empty());
    // An orderly close, not a framing error.
    let report = proxy.stop_and_report();
    assert!(report.contains(" conns_unframeable=0 "), "{report}");
    assert!(counter(&report, "conn_msgs_crossed") > 0, "{report}");
}

/// RFC 7118 §5: a UA registered over WebSocket (a Contact nobody can
/// reach) is called over its connection.
fn a_ua_registered_over_websocket_is_called_on_its_connection(io: &str) {
    let Some((proxy, ws)) = start(io, &["--domain", "example.com"]) else {
        return;
    };
    let mut ua = open(ws);
    let register = request(
        "REGISTER",
        "sip:example.com",
        "ws-reg",
        "Contact: <sip:alice@df7jal23ls0d.invalid;transport=ws>\r\nExpires: 600\r\n",
    )
    .replace("To: <sip:bob@example.com>", "To: <sip:alice@example.com>");
    send_text(&mut ua, register.as_bytes());
    assert_eq!(status(&read_sip(&mut ua)), 200);
    let caller = socket();
    for k in 0..6 {
        let call = format!("to-ws-{k}");
        let invite = format!(
            "INVITE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{c};branch=z9hG4bK{call}\r\n\
To: <sip:alice@example.com>\r\nFrom: <sip:bob@127.0.0.1>;tag=b\r\nCall-ID: {call}\r\n\
CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            c = port(&caller)
        );
        caller.send_to(invite.as_bytes(), proxy.addr).unwrap();
        let got = read_sip(&mut ua);
        let m = Message::parse(&got).unwrap();
        assert_eq!(m.method(), Some(Method::Invite));
        assert_eq!(
            m.request_uri_bytes().unwrap(),
            b"sip:alice@df7jal23ls0d.invalid;transport=ws"
        );
        send_text(&mut ua, &response_to(&got, 200, "OK"));
        assert_eq!(status(&recv(&caller)), 200);
    }
}

/// A handshake without the sip subprotocol gets 400, one from an origin
/// not allowed 403; both close; an allowed one opens.
fn bad_handshakes_are_refused(io: &str) {
    let Some((proxy, ws)) = start(io, &["--ws-origin", "https://phone.example.com"]) else {
        return;
    };
    let refused = |extra: &str, status: &str| {
        let mut c = TcpStream::connect(ws).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        c.write_all(upgrade_request(extra).as_bytes()).unwrap();
        let answer = read_http(&mut c);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer}"
        );
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
    };
    refused("Origin: https://phone.example.com\r\n", "400");
    refused(
        "Sec-WebSocket-Protocol: sip\r\nOrigin: https://evil.example.net\r\n",
        "403",
    );
    let mut c = TcpStream::connect(ws).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let ok =
        upgrade_request("Sec-WebSocket-Protocol: sip\r\nOrigin: https://phone.example.com\r\n");
    c.write_all(ok.as_bytes()).unwrap();
    assert!(read_http(&mut c).starts_with("HTTP/1.1 101 "));
    // The two refused handshakes, counted as bytes that could not be
    // taken as WebSocket.
    let report = proxy.stop_and_report();
    assert!(report.contains(" conns_unframeable=2 "), "{report}");
}

on_both_backends!(
    messages_in_frames_are_answered_and_forwarded,
    a_ua_registered_over_websocket_is_called_on_its_connection,
    bad_handshakes_are_refused,
);
