//! SIP over TCP end to end: the real binary on loopback with two shards,
//! TCP clients and a UDP UAS written here (RFC 3261 §18.3 framing, §18.2.2
//! responses on the request's connection, RFC 5626 §3.5.1 keep-alives).
//! Every test runs on both I/O backends.

#[macro_use]
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::metrics::{get, metrics_addr, sum_of, sum_with_label};
use common::process::{counter, listen_addrs, port, recv, socket, stream_addr, Proxy};
use common::sip::{call_ids_on_both_shards, read_message, response_to};
use common::tcp::{connect, TcpUas};

use sipshard::sip::{HeaderName, Message};

/// sipshard with a UDP and a TCP listen on loopback; None when io_uring
/// is refused here.
fn start(io: &str, extra: &[&str]) -> Option<(Proxy, SocketAddr)> {
    let mut args = vec!["--listen", "tcp:127.0.0.1:0"];
    args.extend_from_slice(extra);
    let proxy = Proxy::start(io, &args)?;
    let tcp = stream_addr(&proxy.banner, "tcp");
    Some((proxy, tcp))
}

/// A request from a TCP client at `client` to the UAS's port.
fn request(method: &str, client: &TcpStream, to_port: u16, call: &str, cseq: u32) -> String {
    let me = client.local_addr().unwrap();
    format!(
        "{method} sip:bob@127.0.0.1:{to_port} SIP/2.0\r\n\
Via: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bK{call}x{cseq};rport\r\n\
To: <sip:bob@127.0.0.1>\r\n\
From: <sip:alice@127.0.0.1>;tag=a1\r\n\
Call-ID: {call}\r\n\
CSeq: {cseq} {method}\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n",
        port = me.port(),
    )
}

/// OPTIONS for the proxy itself (no user part), which it answers 200.
fn options(client: &TcpStream, proxy_port: u16, call: &str, cseq: u32) -> String {
    request("OPTIONS", client, proxy_port, call, cseq).replacen("sip:bob@", "sip:", 1)
}

/// True when the peer closes the connection within 3 s.
fn closed(c: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match c.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
    false
}

fn status(m: &[u8]) -> u16 {
    Message::parse(m).unwrap().status().unwrap()
}

fn header(m: &[u8], h: HeaderName) -> String {
    String::from_utf8_lossy(Message::parse(m).unwrap().header(h).unwrap()).into_owned()
}

/// Calls over one connection, through two shards (Call-ID steering sends
/// the UAS's responses to either): each INVITE leaves over UDP with our
/// Via naming the connection, and its responses come back on the
/// connection, in order, without our Via, those that reach the shard
/// that does not own the connection mailed to the one that does
/// (counted).
fn requests_leave_over_udp_and_responses_return_on_the_connection(io: &str) {
    let Some((proxy, tcp)) = start(io, &[]) else {
        return;
    };
    let mut client = connect(tcp);
    let mut buf = Vec::new();
    // Responses on both shards, whichever owns the connection: Call-IDs
    // that `--steer call-id` spreads over both, and each call's UAS a new
    // socket, a new draw of the kernel's 4-tuple hash under `flow` (where
    // eBPF is refused; all 32 on the connection's shard once in 2^32
    // runs).
    for call in call_ids_on_both_shards("tcp-call", 32) {
        let uas = socket();
        let req = request("INVITE", &client, port(&uas), &call, 1);
        client.write_all(req.as_bytes()).unwrap();
        let fwd = recv(&uas);
        let m = Message::parse(&fwd).unwrap();
        let vias: Vec<String> = m
            .values(HeaderName::Via)
            .map(|v| String::from_utf8_lossy(v.text).into_owned())
            .collect();
        assert_eq!(vias.len(), 2, "{vias:?}");
        assert!(
            vias[0].starts_with(&format!("SIP/2.0/UDP {};branch=z9hG4bK", proxy.addr)),
            "our Via names the leg it leaves on: {}",
            vias[0]
        );
        assert!(vias[0].contains(";cid="), "{}", vias[0]);
        let me = client.local_addr().unwrap().port();
        assert!(
            vias[1].starts_with("SIP/2.0/TCP 127.0.0.1:")
                && vias[1].ends_with(&format!(";rport={me}")),
            "the client's Via, with rport: {}",
            vias[1]
        );
        for (code, reason) in [(180, "Ringing"), (200, "OK")] {
            uas.send_to(&response_to(&fwd, code, reason), proxy.addr)
                .unwrap();
        }
        for code in [180, 200] {
            let got = read_message(&mut client, &mut buf);
            assert_eq!(status(&got), code, "{call}");
            assert_eq!(header(&got, HeaderName::CallId), call);
            let via = header(&got, HeaderName::Via);
            assert!(
                via.starts_with("SIP/2.0/TCP 127.0.0.1:"),
                "ours removed: {via}"
            );
        }
    }
    let report = proxy.stop_and_report();
    assert!(report.contains("forwarded_responses=64"), "{report}");
    assert!(counter(&report, "conn_msgs_crossed") > 0, "{report}");
}

/// §18.3: messages are framed by Content-Length whatever the segments:
/// two in one write, one a byte at a time, keep-alives between them.
fn messages_are_framed_by_content_length_whatever_the_segments(io: &str) {
    let Some((proxy, tcp)) = start(io, &[]) else {
        return;
    };
    let mut client = connect(tcp);
    // OPTIONS for the proxy itself: it answers 200.
    let p = proxy.addr.port();
    let two = format!(
        "{}\r\n\r\n{}",
        options(&client, p, "framing", 1),
        options(&client, p, "framing", 2)
    );
    client.write_all(two.as_bytes()).unwrap();
    let mut buf = Vec::new();
    // (The ping between them is answered too: read_message skips it.)
    let first = read_message(&mut client, &mut buf);
    assert_eq!(status(&first), 200);
    assert_eq!(header(&first, HeaderName::CSeq), "1 OPTIONS");
    let second = read_message(&mut client, &mut buf);
    assert_eq!(status(&second), 200);
    assert_eq!(header(&second, HeaderName::CSeq), "2 OPTIONS");
    for b in options(&client, p, "framing", 3).into_bytes() {
        client.write_all(&[b]).unwrap();
    }
    let third = read_message(&mut client, &mut buf);
    assert_eq!(header(&third, HeaderName::CSeq), "3 OPTIONS");
    drop(proxy);
}

/// RFC 5626 §3.5.1: a double CRLF is answered with a CRLF.
fn a_keepalive_ping_gets_a_pong(io: &str) {
    let Some((_proxy, tcp)) = start(io, &[]) else {
        return;
    };
    let mut client = connect(tcp);
    client.write_all(b"\r\n\r\n").unwrap();
    let mut pong = [0u8; 8];
    let n = client.read(&mut pong).unwrap();
    assert_eq!(&pong[..n], b"\r\n");
}

/// A request with no Content-Length cannot be framed on a stream
/// (§18.3): 400 with the reason, then the connection closes; another
/// connection is untouched.
fn a_request_without_content_length_gets_400_and_its_connection_closes(io: &str) {
    let Some((proxy, tcp)) = start(io, &[]) else {
        return;
    };
    let mut bad = connect(tcp);
    let mut good = connect(tcp);
    let req = options(&bad, proxy.addr.port(), "nolen", 1).replace("Content-Length: 0\r\n", "");
    bad.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let answer = read_message(&mut bad, &mut buf);
    assert!(
        answer.starts_with(b"SIP/2.0 400 Missing Content-Length\r\n"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(closed(&mut bad), "the framing is lost: closed");
    let ok = options(&good, proxy.addr.port(), "fine", 1);
    good.write_all(ok.as_bytes()).unwrap();
    let answer = read_message(&mut good, &mut Vec::new());
    assert_eq!(status(&answer), 200);
}

/// Garbage and a message over `--max-message-size` close the connection
/// without taking the server down.
fn garbage_and_oversize_close_only_their_connection(io: &str) {
    let Some((proxy, tcp)) = start(io, &["--max-message-size", "1024"]) else {
        return;
    };
    let mut huge = connect(tcp);
    let big = options(&huge, proxy.addr.port(), "big", 1)
        .replace("Content-Length: 0", "Content-Length: 5000");
    huge.write_all(big.as_bytes()).unwrap();
    let answer = read_message(&mut huge, &mut Vec::new());
    assert!(
        answer.starts_with(b"SIP/2.0 513 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(closed(&mut huge));
    let mut junk = connect(tcp);
    junk.write_all(&[0xffu8; 2000]).unwrap();
    assert!(closed(&mut junk), "unframeable garbage: closed");
    let mut good = connect(tcp);
    let ok = options(&good, proxy.addr.port(), "fine", 1);
    good.write_all(ok.as_bytes()).unwrap();
    assert_eq!(status(&read_message(&mut good, &mut Vec::new())), 200);
    // The garbage: counted as oversize (no header end within the limit);
    // both closed for their framing.
    let report = proxy.stop_and_report();
    assert!(report.contains(" oversize=1 "), "{report}");
    assert!(report.contains(" conns_unframeable=2 "), "{report}");
    assert!(report.contains(" conns_accepted=3 "), "{report}");
}

/// `--max-connections`: past the limit a connection is closed as it is
/// accepted; the ones within it work.
fn connections_over_the_limit_are_closed_at_accept(io: &str) {
    over_a_limit(
        io,
        "--max-connections",
        "conns_refused",
        "sipshard_connections_refused",
    );
}

/// `--max-connections-per-ip`: past one address's share a connection
/// from it is closed as it is accepted; the ones within it, and another
/// address's, work.
fn connections_over_one_addresss_share_are_closed_at_accept(io: &str) {
    over_a_limit(
        io,
        "--max-connections-per-ip",
        "conns_refused_per_ip",
        "sipshard_connections_refused_per_ip",
    );
}

/// Six connections from 127.0.0.1 against `flag` 2 (two shards, one each),
/// then one from 127.0.0.2; the refusals counted in `counter`, and in
/// `metric` under the transport tcp.
fn over_a_limit(io: &str, flag: &str, counter: &str, metric: &str) {
    let Some((mut proxy, tcp)) = start(io, &[flag, "2", "--metrics-listen", "127.0.0.1:0"]) else {
        return;
    };
    let metrics = metrics_addr(&mut proxy);
    let mut conns: Vec<TcpStream> = (0..6).map(|_| connect(tcp)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut open = Vec::new();
    for c in &mut conns {
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 16];
        match c.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            _ => open.push(c.try_clone().unwrap()),
        }
    }
    assert!(
        !open.is_empty() && open.len() <= 2,
        "{} of 6 left open",
        open.len()
    );
    let left_open = open.len();
    for c in &mut open {
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let ok = options(c, proxy.addr.port(), "within", 1);
        c.write_all(ok.as_bytes()).unwrap();
        assert_eq!(status(&read_message(c, &mut Vec::new())), 200);
    }
    // Another address: refused only when the whole table is full.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.connect(&tcp.into()).unwrap();
    let mut other: TcpStream = sock.into();
    other
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let ok = options(&other, proxy.addr.port(), "other", 1);
    other.write_all(ok.as_bytes()).unwrap();
    let answered = matches!(read_message_or_close(&mut other), Some(m) if status(&m) == 200);
    let refused = 6 - left_open + usize::from(!answered);
    // The shard publishes its connection counts after the batch in which
    // it closed the connection, which the client may see first: the
    // metric is read until it agrees, for up to 3 s.
    let prefix = format!("{metric}_total{{");
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let (tcp_refused, body) = loop {
        let (_, body) = get(metrics, "/metrics");
        let n = sum_with_label(&body, &prefix, "transport=\"tcp\"");
        if n == refused as u64 || std::time::Instant::now() >= deadline {
            break (n, body);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(tcp_refused, refused as u64, "{body}");
    let report = proxy.stop_and_report();
    let refused = format!(" {counter}={refused} ");
    assert!(report.contains(&refused), "{refused}: {report}");
    if flag == "--max-connections-per-ip" {
        assert!(answered, "127.0.0.2 has its own share");
    }
}

/// The next message, or None when the peer closes first.
fn read_message_or_close(c: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(buf[..end + 4].to_vec());
        }
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A UDP client is served as before beside the TCP listener.
fn udp_beside_tcp_is_unchanged(io: &str) {
    let Some((proxy, _tcp)) = start(io, &[]) else {
        return;
    };
    let client: UdpSocket = socket();
    let req = format!(
        "OPTIONS sip:127.0.0.1:{p} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{c};branch=z9hG4bKu1\r\n\
To: <sip:x@127.0.0.1>\r\nFrom: <sip:y@127.0.0.1>;tag=1\r\nCall-ID: udp\r\nCSeq: 1 OPTIONS\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        p = proxy.addr.port(),
        c = port(&client)
    );
    client.send_to(req.as_bytes(), proxy.addr).unwrap();
    assert_eq!(status(&recv(&client)), 200);
}

/// The connection counters reach /metrics: one connection open, then
/// closed by its peer.
fn connections_are_counted_in_metrics(io: &str) {
    let Some((mut proxy, tcp)) = start(io, &["--metrics-listen", "127.0.0.1:0"]) else {
        return;
    };
    let addr = metrics_addr(&mut proxy);
    let mut c = connect(tcp);
    let ok = options(&c, proxy.addr.port(), "metrics", 1);
    c.write_all(ok.as_bytes()).unwrap();
    assert_eq!(status(&read_message(&mut c, &mut Vec::new())), 200);
    let (_, body) = get(addr, "/metrics");
    assert_eq!(sum_of(&body, "sipshard_connections_open{"), 1, "{body}");
    assert_eq!(sum_of(&body, "sipshard_connections_accepted_total{"), 1);
    // Each by its transport, on whichever shard took it.
    let on = |metric: &str, t: &str| sum_with_label(&body, metric, &format!("transport=\"{t}\""));
    assert_eq!(on("sipshard_connections_open{", "tcp"), 1, "{body}");
    assert_eq!(on("sipshard_connections_accepted_total{", "tcp"), 1);
    for t in ["tls", "ws", "wss"] {
        assert_eq!(on("sipshard_connections_accepted_total{", t), 0, "{t}");
    }
    assert_eq!(sum_of(&body, "sipshard_tls_handshakes_total{"), 0);
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (_, body) = get(addr, "/metrics");
        if sum_of(&body, "sipshard_connections_closed_total{") == 1 {
            assert_eq!(sum_of(&body, "sipshard_connections_open{"), 0, "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// §18.2.2: when the connection a request came on has gone, its
/// responses go over a new connection to the client's Via address: the
/// sent-by port, where the client listens (not the rport of the old
/// connection), whichever shard the responses reach.
fn responses_go_over_a_new_connection_when_theirs_has_gone(io: &str) {
    let Some((mut proxy, tcp)) = start(io, &["--metrics-listen", "127.0.0.1:0"]) else {
        return;
    };
    let addr = metrics_addr(&mut proxy);
    let uas = socket();
    let mut client_listens = TcpUas::new();
    let client = connect(tcp);
    let me = client.local_addr().unwrap().port();
    let req = request("INVITE", &client, port(&uas), "gone-conn", 1).replacen(
        &format!("SIP/2.0/TCP 127.0.0.1:{me}"),
        &format!("SIP/2.0/TCP 127.0.0.1:{}", client_listens.port()),
        1,
    );
    (&client).write_all(req.as_bytes()).unwrap();
    let fwd = recv(&uas);
    drop(client);
    wait_for(addr, "sipshard_connections_closed_total{", 1);
    for (code, reason) in [(180, "Ringing"), (200, "OK")] {
        uas.send_to(&response_to(&fwd, code, reason), proxy.addr)
            .unwrap();
    }
    for code in [180, 200] {
        let (got, on) = client_listens.next();
        assert_eq!(status(&got), code);
        assert_eq!(on, 0, "both on the one new connection");
        assert_eq!(header(&got, HeaderName::CallId), "gone-conn");
    }
    let (_, body) = get(addr, "/metrics");
    assert_eq!(
        sum_of(&body, "sipshard_connections_opened_total{"),
        1,
        "{body}"
    );
    assert_eq!(
        sum_of(&body, "sipshard_connection_responses_resent_total{"),
        2,
        "{body}"
    );
}

/// Waits (3 s at most) until the series starting with `prefix` sum to
/// `n` in /metrics.
fn wait_for(addr: SocketAddr, prefix: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (_, body) = get(addr, "/metrics");
        if sum_of(&body, prefix) == n {
            return;
        }
        assert!(Instant::now() < deadline, "{prefix} never {n}: {body}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `--upstream tcp:` on a server with UDP listens only: requests leave
/// over each shard's own connection to the upstream, reused, with our Via
/// saying TCP; the responses come back on it and go on to the UDP client.
fn requests_leave_over_tcp_to_an_upstream_and_responses_come_back(io: &str) {
    let mut uas = TcpUas::new();
    let upstream = format!("tcp:127.0.0.1:{}", uas.port());
    // No TCP listen: the shards' streams start idle, and wake for the
    // connections they open.
    let Some(proxy) = Proxy::start(io, &["--upstream", &upstream]) else {
        return;
    };
    let client = socket();
    for call in 0..10 {
        let req = format!(
            "INVITE sip:bob@example.net SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{c};branch=z9hG4bKo{call}\r\n\
To: <sip:bob@example.net>\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nCall-ID: out-{call}\r\n\
CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            c = port(&client)
        );
        client.send_to(req.as_bytes(), proxy.addr).unwrap();
        let (fwd, conn) = uas.next();
        let top = header(&fwd, HeaderName::Via);
        assert!(
            top.starts_with(&format!("SIP/2.0/TCP {};branch=", proxy.addr)),
            "{top}"
        );
        let answer = response_to(&fwd, 200, "OK");
        uas.conns[conn].0.write_all(&answer).unwrap();
        let got = recv(&client);
        assert_eq!(status(&got), 200);
        assert_eq!(header(&got, HeaderName::CallId), format!("out-{call}"));
    }
    assert!(
        (1..=2).contains(&uas.conns.len()),
        "one connection per shard at most, reused: {}",
        uas.conns.len()
    );
    let report = proxy.stop_and_report();
    let opened = format!(" conns_opened={} ", uas.conns.len());
    assert!(report.contains(&opened), "{report}");
}

/// A next hop that refuses the connection costs that message only.
fn a_refused_connection_to_a_next_hop_is_counted(io: &str) {
    // A port nothing listens on: bound, then closed.
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let Some((proxy, _)) = start(io, &[]) else {
        return;
    };
    let client = socket();
    let req = format!(
        "OPTIONS sip:bob@127.0.0.1:{closed_port};transport=tcp SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{c};branch=z9hG4bKrefused\r\nTo: <sip:bob@127.0.0.1>\r\n\
From: <sip:a@127.0.0.1>;tag=1\r\nCall-ID: refused\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n",
        c = port(&client)
    );
    client.send_to(req.as_bytes(), proxy.addr).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Still serving.
    let ours = req
        .replace(
            &format!("sip:bob@127.0.0.1:{closed_port};transport=tcp"),
            &format!("sip:127.0.0.1:{}", proxy.addr.port()),
        )
        .replace("refused", "after");
    client.send_to(ours.as_bytes(), proxy.addr).unwrap();
    assert_eq!(status(&recv(&client)), 200);
    let report = proxy.stop_and_report();
    assert!(report.contains(" connect_failed=1 "), "{report}");
}

/// RFC 5626: a UA registered over TCP is reached over the connection it
/// registered on (not at its Contact's address), from whichever shard
/// the call arrives on; once that connection has gone, a call gets 430
/// Flow Failed.
fn a_ua_registered_over_tcp_is_called_over_its_connection(io: &str) {
    let Some((proxy, tcp)) = start(io, &["--domain", "example.com"]) else {
        return;
    };
    let mut ua = connect(tcp);
    let me = ua.local_addr().unwrap();
    // A Contact nothing listens at: only the flow reaches the UA.
    let register = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKreg1\r\n\
To: <sip:alice@example.com>\r\nFrom: <sip:alice@example.com>;tag=r1\r\nCall-ID: reg-flow\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:alice@127.0.0.1:9;transport=tcp>\r\nExpires: 600\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    ua.write_all(register.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let ok = read_message(&mut ua, &mut buf);
    assert_eq!(status(&ok), 200, "{}", String::from_utf8_lossy(&ok));
    let caller = socket();
    let invite = |call: &str| {
        format!(
            "INVITE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{c};branch=z9hG4bK{call}\r\n\
To: <sip:alice@example.com>\r\nFrom: <sip:bob@127.0.0.1>;tag=b\r\nCall-ID: {call}\r\n\
CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            c = port(&caller)
        )
    };
    // Calls whose Call-IDs land on either shard.
    for k in 0..8 {
        let call = format!("flow-call-{k}");
        caller
            .send_to(invite(&call).as_bytes(), proxy.addr)
            .unwrap();
        let got = read_message(&mut ua, &mut buf);
        let m = Message::parse(&got).unwrap();
        assert_eq!(
            m.request_uri_bytes().unwrap(),
            b"sip:alice@127.0.0.1:9;transport=tcp",
            "the Request-URI is the Contact"
        );
        assert!(header(&got, HeaderName::Via).starts_with("SIP/2.0/TCP "));
        ua.write_all(&response_to(&got, 200, "OK")).unwrap();
        let answer = recv(&caller);
        assert_eq!(status(&answer), 200);
        assert_eq!(header(&answer, HeaderName::CallId), call);
    }
    drop(ua);
    std::thread::sleep(Duration::from_millis(300));
    caller
        .send_to(invite("after-close").as_bytes(), proxy.addr)
        .unwrap();
    let answer = recv(&caller);
    assert!(
        answer.starts_with(b"SIP/2.0 430 Flow Failed\r\n"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(header(&answer, HeaderName::CallId), "after-close");
    let report = proxy.stop_and_report();
    assert!(report.contains(" flows_failed=1 "), "{report}");
}

/// `--tcp-idle-timeout`: a silent connection is closed; one that sends
/// CRLF keep-alives is not.
fn a_silent_connection_is_closed_and_a_kept_alive_one_is_not(io: &str) {
    let Some((proxy, tcp)) = start(io, &["--tcp-idle-timeout", "1"]) else {
        return;
    };
    let mut silent = connect(tcp);
    let mut alive = connect(tcp);
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        alive.write_all(b"\r\n\r\n").unwrap();
        let mut pong = [0u8; 2];
        alive.read_exact(&mut pong).unwrap();
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(closed(&mut silent), "silent past 1 s: closed");
    let ok = options(&alive, proxy.addr.port(), "alive", 1);
    alive.write_all(ok.as_bytes()).unwrap();
    assert_eq!(status(&read_message(&mut alive, &mut Vec::new())), 200);
    let report = proxy.stop_and_report();
    assert!(report.contains(" conns_timed_out=1 "), "{report}");
}

/// Slowloris: `--tcp-first-byte-timeout` closes a connection that says
/// nothing, `--tcp-message-timeout` one that trickles a message, each
/// counted by its deadline; a connection in use meanwhile is served.
fn mute_and_trickling_connections_close_at_their_deadlines(io: &str) {
    let flags = [
        "--tcp-first-byte-timeout",
        "1",
        "--tcp-message-timeout",
        "2",
    ];
    let Some((proxy, tcp)) = start(io, &flags) else {
        return;
    };
    let mut mute = connect(tcp);
    let mut trickle = connect(tcp);
    let mut busy = connect(tcp);
    let head = options(&trickle, proxy.addr.port(), "trickle", 1);
    let started = Instant::now();
    let mut sent = 0;
    let mut cseq = 0;
    while started.elapsed() < Duration::from_millis(3500) {
        // A byte of the message every 100 ms, never its end (while the
        // server takes them).
        if sent + 1 < head.len() && trickle.write_all(&head.as_bytes()[sent..=sent]).is_ok() {
            sent += 1;
        }
        cseq += 1;
        let ok = options(&busy, proxy.addr.port(), "busy", cseq);
        busy.write_all(ok.as_bytes()).unwrap();
        assert_eq!(status(&read_message(&mut busy, &mut Vec::new())), 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(closed(&mut mute), "silent past 1 s: closed");
    assert!(closed(&mut trickle), "a message begun 2 s ago: closed");
    let report = proxy.stop_and_report();
    assert!(report.contains(" conns_timed_out=2 "), "{report}");
    assert!(
        report.contains(" conns_timed_out_by: handshake=0 first_byte=1 message=1 idle=0 "),
        "{report}"
    );
}

/// `--max-write-queue`: a peer that sends requests and never reads their
/// answers is closed once that many bytes wait for it, and counted; the
/// server's memory does not follow it. The same traffic (20,000 answers,
/// about 7 MB: more than the kernel's 4 MiB of send buffer can hide) fits
/// a 64 MiB queue and overflows a 64 KiB one.
fn a_peer_that_does_not_read_is_closed_at_the_write_queue_bound(io: &str) {
    assert_eq!(deaf_peer_closed(io, "67108864"), Some(false));
    assert_eq!(deaf_peer_closed(io, "65536"), Some(true));
}

/// Whether a client that sends 20,000 OPTIONS and reads nothing is closed
/// for overflow under `--max-write-queue max`; None without io_uring.
fn deaf_peer_closed(io: &str, max: &str) -> Option<bool> {
    let (proxy, tcp) = start(io, &["--max-write-queue", max])?;
    // A small receive window, so that the kernel holds little of what
    // waits for it.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&tcp.into()).unwrap();
    let mut deaf: TcpStream = sock.into();
    deaf.set_write_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let port = proxy.addr.port();
    for burst in 0..200 {
        let mut bytes = String::new();
        for k in 1..=100 {
            bytes.push_str(&options(&deaf, port, "deaf", burst * 100 + k));
        }
        if deaf.write_all(bytes.as_bytes()).is_err() {
            break; // closed already (reset)
        }
    }
    // Time for the server to take the last burst.
    std::thread::sleep(Duration::from_millis(500));
    let report = proxy.stop_and_report();
    let overflowed = report.contains(" conns_overflowed=1 ");
    assert!(
        overflowed || report.contains(" conns_overflowed=0 "),
        "{report}"
    );
    Some(overflowed)
}

/// Every way a connection ends gives its descriptor back: the server's
/// count returns to what it was before any connection, on both backends
/// (io_uring holds a socket until its receive ends).
fn descriptors_return_to_their_baseline(io: &str) {
    let flags = [
        "--tcp-first-byte-timeout",
        "1",
        "--max-message-size",
        "1024",
    ];
    let Some((proxy, tcp)) = start(io, &flags) else {
        return;
    };
    // Whatever the shards open at their first turn (rings, epoll sets).
    std::thread::sleep(Duration::from_millis(300));
    let baseline = proxy.fds();
    let port = proxy.addr.port();
    // Held open by the client: the server must close them itself.
    let mut mute = Vec::new();
    for round in 0..3 {
        let mut ended = Vec::new();
        for k in 0..10 {
            let mut c = connect(tcp);
            let ok = options(&c, port, &format!("fd-{round}-{k}"), 1);
            match k % 5 {
                // Answered, then closed by the client.
                0 => {
                    c.write_all(ok.as_bytes()).unwrap();
                    assert_eq!(status(&read_message(&mut c, &mut Vec::new())), 200);
                }
                // No Content-Length: 400, closed by the server.
                1 => {
                    let bare = ok.replace("Content-Length: 0\r\n", "");
                    c.write_all(bare.as_bytes()).unwrap();
                    assert!(closed(&mut c));
                }
                // Over --max-message-size: closed by the server.
                2 => {
                    c.write_all(&vec![b'x'; 4096]).unwrap();
                    assert!(closed(&mut c));
                }
                // Half a message, then the client goes.
                3 => c.write_all(&ok.as_bytes()[..20]).unwrap(),
                // Nothing: closed at the first-byte deadline.
                _ => {
                    mute.push(c);
                    continue;
                }
            }
            ended.push(c);
        }
        drop(ended);
    }
    // The mute ones last until their deadline (1 s, swept each second).
    let now = proxy.fds_back_to(baseline);
    assert_eq!(now, baseline, "descriptors left open");
    for c in &mut mute {
        assert!(closed(c), "closed by the server");
    }
    let report = proxy.stop_and_report();
    assert!(report.contains(" conns_accepted=30 "), "{report}");
    assert!(report.contains(" conns_closed=30 "), "{report}");
    assert!(report.contains(" first_byte=6 "), "the mute ones: {report}");
}

/// IPv6 over TCP: a client on [::1] reaches a `tcp:[::1]` listen, its
/// request leaves from our [::1] UDP socket with our Via naming it, and
/// the responses come back on the connection. (IPv6 only: with an IPv4
/// UDP listen beside it, a connection the kernel gives to a shard of the
/// IPv4 socket cannot leave for an IPv6 next hop; see docs/proxy.md.)
fn a_tcp_listen_on_ipv6_forwards_and_answers(io: &str) {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipping: no IPv6 loopback here");
        return;
    }
    let extra = ["--listen", "[::1]:0", "--listen", "tcp:[::1]:0"];
    let Some(proxy) = Proxy::start_listening(io, &extra, &[]) else {
        return;
    };
    let tcp: SocketAddr = stream_addr(&proxy.banner, "tcp");
    assert!(tcp.is_ipv6(), "the tcp listen in the banner: {tcp}");
    let udp6 = listen_addrs(&proxy.banner)
        .into_iter()
        .find(|a| a.is_ipv6())
        .unwrap_or_else(|| panic!("no [::1] udp listen: {}", proxy.banner));
    let uas = UdpSocket::bind("[::1]:0").unwrap();
    uas.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut client = connect(tcp);
    let me = client.local_addr().unwrap();
    let req = format!(
        "INVITE sip:bob@[::1]:{uas} SIP/2.0\r\n\
Via: SIP/2.0/TCP [::1]:{me};branch=z9hG4bKv6tcp;rport\r\n\
To: <sip:bob@[::1]>\r\nFrom: <sip:alice@[::1]>;tag=a6\r\nCall-ID: v6-tcp\r\n\
CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        uas = uas.local_addr().unwrap().port(),
        me = me.port(),
    );
    client.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 4096];
    let Ok((n, from)) = uas.recv_from(&mut buf) else {
        panic!("no INVITE over UDP: {}", proxy.stop_and_report());
    };
    let fwd = buf[..n].to_vec();
    assert_eq!(from.ip(), udp6.ip(), "from our [::1] socket");
    let via = header(&fwd, HeaderName::Via);
    assert!(
        via.starts_with(&format!("SIP/2.0/UDP {udp6};branch=")),
        "our Via names the IPv6 leg: {via}"
    );
    uas.send_to(&response_to(&fwd, 200, "OK"), from).unwrap();
    let got = read_message(&mut client, &mut Vec::new());
    assert_eq!(status(&got), 200);
    assert_eq!(header(&got, HeaderName::CallId), "v6-tcp");
}

/// RFC 5658 / RFC 5626 §5.3: with --record-route, the callee's BYE
/// (sent along the route set it learnt, over UDP) reaches the caller on
/// its TCP connection, although its Contact names nothing reachable.
fn the_callees_bye_reaches_a_tcp_caller_on_its_connection(io: &str) {
    let Some((proxy, tcp)) = start(io, &["--record-route"]) else {
        return;
    };
    let uas = socket();
    let mut uac = connect(tcp);
    let invite = request("INVITE", &uac, port(&uas), "rr-flow", 1).replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nContact: <sip:alice@10.255.255.1:5060;transport=tcp>\r\n",
    );
    uac.write_all(invite.as_bytes()).unwrap();
    let fwd = recv(&uas);
    let rr = header(&fwd, HeaderName::RecordRoute);
    assert!(rr.contains(";transport=tcp;lr;cid="), "{rr}");
    uas.send_to(&response_to(&fwd, 200, "OK"), proxy.addr)
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(status(&read_message(&mut uac, &mut buf)), 200);
    // The callee's BYE: to the caller's Contact, along the route set.
    let bye = format!(
        "BYE sip:alice@10.255.255.1:5060;transport=tcp SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{u};branch=z9hG4bKbye1\r\nRoute: {rr}\r\n\
From: <sip:bob@127.0.0.1>;tag=b1\r\nTo: <sip:alice@127.0.0.1>;tag=a1\r\nCall-ID: rr-flow\r\n\
CSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        u = port(&uas)
    );
    uas.send_to(bye.as_bytes(), proxy.addr).unwrap();
    let got = read_message(&mut uac, &mut buf);
    let m = Message::parse(&got).unwrap();
    assert_eq!(m.method(), Some(sipshard::sip::Method::Bye));
    assert_eq!(m.count_of(HeaderName::Route), 0, "our two Routes removed");
    // The caller answers on its connection; the callee gets the 200.
    uac.write_all(&response_to(&got, 200, "OK")).unwrap();
    let ok = recv(&uas);
    assert_eq!(status(&ok), 200);
    assert_eq!(header(&ok, HeaderName::CSeq), "2 BYE");
}

/// RFC 5626 §5.3 / RFC 5658: with --record-route, a call to a UA
/// registered over TCP leaves a flow token on the UA's side of our
/// Record-Route, so the caller's BYE, sent along its route set to the
/// UA's Contact (where nothing listens, as behind a NAT), reaches the UA
/// over the connection it registered on, from whichever shard the BYE
/// arrives on. Without the token the BYE went to the Contact and failed
/// (found by SIPp registering one connection per user in
/// scripts/interop.sh).
fn the_callers_bye_reaches_a_registered_ua_over_its_flow(io: &str) {
    let Some((proxy, tcp)) = start(io, &["--domain", "example.com", "--record-route"]) else {
        return;
    };
    let mut ua = connect(tcp);
    let me = ua.local_addr().unwrap();
    let register = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKreg2\r\n\
To: <sip:carol@example.com>\r\nFrom: <sip:carol@example.com>;tag=r2\r\nCall-ID: reg-flow-rr\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:carol@127.0.0.1:9;transport=tcp>\r\nExpires: 600\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    ua.write_all(register.as_bytes()).unwrap();
    let mut buf = Vec::new();
    assert_eq!(status(&read_message(&mut ua, &mut buf)), 200);
    let caller = socket();
    let c = port(&caller);
    for call in call_ids_on_both_shards("flow-rr", 8) {
        let invite = format!(
            "INVITE sip:carol@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{c};branch=z9hG4bKi{call}\r\n\
To: <sip:carol@example.com>\r\nFrom: <sip:dave@127.0.0.1>;tag=d\r\nCall-ID: {call}\r\n\
CSeq: 1 INVITE\r\nContact: <sip:dave@127.0.0.1:{c}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        caller.send_to(invite.as_bytes(), proxy.addr).unwrap();
        let got = read_message(&mut ua, &mut buf);
        let rr = header(&got, HeaderName::RecordRoute);
        let (callee_side, caller_side) = rr.split_once(", ").expect("two Record-Route values");
        assert!(callee_side.contains(";transport=tcp;lr;cid="), "{rr}");
        assert!(!caller_side.contains("cid="), "the caller is on UDP: {rr}");
        // The UA's 200 carries the Record-Route back (§12.1.1).
        let ok = String::from_utf8(response_to(&got, 200, "OK")).unwrap().replacen(
            "Content-Length: 0\r\n",
            &format!("Record-Route: {rr}\r\nContact: <sip:carol@127.0.0.1:9;transport=tcp>\r\nContent-Length: 0\r\n"),
            1,
        );
        ua.write_all(ok.as_bytes()).unwrap();
        let answer = recv(&caller);
        assert_eq!(status(&answer), 200);
        // The caller's BYE: to the UA's Contact, along the route set (the
        // Record-Route reversed, §12.1.2).
        let bye = format!(
            "BYE sip:carol@127.0.0.1:9;transport=tcp SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{c};branch=z9hG4bKb{call}\r\nRoute: {caller_side}, {callee_side}\r\n\
From: <sip:dave@127.0.0.1>;tag=d\r\nTo: <sip:carol@example.com>;tag=b1\r\nCall-ID: {call}\r\n\
CSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        caller.send_to(bye.as_bytes(), proxy.addr).unwrap();
        let got = read_message(&mut ua, &mut buf);
        let m = Message::parse(&got).unwrap();
        assert_eq!(m.method(), Some(sipshard::sip::Method::Bye), "{call}");
        assert_eq!(m.count_of(HeaderName::Route), 0, "our two Routes removed");
        ua.write_all(&response_to(&got, 200, "OK")).unwrap();
        let ok = recv(&caller);
        assert_eq!(status(&ok), 200);
        assert_eq!(header(&ok, HeaderName::CSeq), "2 BYE");
    }
    let report = proxy.stop_and_report();
    assert!(report.contains(" connect_failed=0 "), "{report}");
    assert!(report.contains(" flows_failed=0 "), "{report}");
    assert!(counter(&report, "conn_msgs_crossed") > 0, "{report}");
}

on_both_backends!(
    the_callers_bye_reaches_a_registered_ua_over_its_flow,
    descriptors_return_to_their_baseline,
    a_tcp_listen_on_ipv6_forwards_and_answers,
    mute_and_trickling_connections_close_at_their_deadlines,
    a_peer_that_does_not_read_is_closed_at_the_write_queue_bound,
    responses_go_over_a_new_connection_when_theirs_has_gone,
    the_callees_bye_reaches_a_tcp_caller_on_its_connection,
    a_silent_connection_is_closed_and_a_kept_alive_one_is_not,
    a_ua_registered_over_tcp_is_called_over_its_connection,
    requests_leave_over_tcp_to_an_upstream_and_responses_come_back,
    a_refused_connection_to_a_next_hop_is_counted,
    connections_are_counted_in_metrics,
    requests_leave_over_udp_and_responses_return_on_the_connection,
    messages_are_framed_by_content_length_whatever_the_segments,
    a_keepalive_ping_gets_a_pong,
    a_request_without_content_length_gets_400_and_its_connection_closes,
    garbage_and_oversize_close_only_their_connection,
    connections_over_the_limit_are_closed_at_accept,
    connections_over_one_addresss_share_are_closed_at_accept,
    udp_beside_tcp_is_unchanged,
);
