//! SIP helpers for the end-to-end tests over streams: reading one
//! message framed by its Content-Length, and the response a UAS builds.

use std::io::Read;

use sipshard::hash::call_id_shard;
use sipshard::sip::{HeaderName, Message};

/// Reads one message from a stream, framed by its Content-Length
/// (CRLFs before it, keep-alive pongs, skipped); `buf` keeps what came
/// after it.
pub fn read_message(c: &mut impl Read, buf: &mut Vec<u8>) -> Vec<u8> {
    loop {
        while buf.starts_with(b"\r\n") {
            buf.drain(..2);
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let body: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + body {
                return buf.drain(..end + 4 + body).collect();
            }
        }
        let mut chunk = [0u8; 4096];
        let n = c.read(&mut chunk).expect("a message within the timeout");
        assert!(n > 0, "closed; have {:?}", String::from_utf8_lossy(buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The response a UAS builds (§8.2.6): the request's Vias, From, To
/// (tagged), Call-ID and CSeq.
pub fn response_to(req: &[u8], code: u16, reason: &str) -> Vec<u8> {
    let m = Message::parse(req).unwrap();
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for v in m.values(HeaderName::Via) {
        out.push_str(&format!("Via: {}\r\n", String::from_utf8_lossy(v.text)));
    }
    let text = |h| String::from_utf8_lossy(m.header(h).unwrap()).into_owned();
    out.push_str(&format!(
        "From: {}\r\nTo: {};tag=b1\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        text(HeaderName::From),
        text(HeaderName::To),
        text(HeaderName::CallId),
        text(HeaderName::CSeq),
    ));
    out.into_bytes()
}

/// `n` Call-IDs, `{k}-{tag}`, that `--steer call-id` sends to both of two
/// shards (asserted). The counter comes first, as SIPp writes it: Call-IDs
/// that differ only in their last bytes mostly hash to one shard.
pub fn call_ids_on_both_shards(tag: &str, n: usize) -> Vec<String> {
    let calls: Vec<String> = (0..n).map(|k| format!("{k}-{tag}")).collect();
    let on_0 = calls
        .iter()
        .filter(|c| call_id_shard(c.as_bytes(), 2) == 0)
        .count();
    assert!(0 < on_0 && on_0 < n, "{tag}: {on_0} of {n} on shard 0");
    calls
}
