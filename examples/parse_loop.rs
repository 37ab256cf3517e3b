//! Parses a message many times and reads what a proxy reads: a fixed
//! workload for `valgrind --tool=callgrind`, whose instruction counts are
//! repeatable on a noisy machine where wall-clock timings are not.
//!
//! `cargo build --release --example parse_loop`
//! `valgrind --tool=callgrind target/release/examples/parse_loop tests/data/invite_softphone.sip 10000`

use std::hint::black_box;

use sipshard::sip::{Edits, Message, Uri};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "tests/data/invite_softphone.sip".into());
    let rounds: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let mode = args.next().unwrap_or_else(|| "read".into());
    let data = std::fs::read(&path).expect("message file");
    let mut out = vec![0u8; data.len() + 512];
    let mut sum = 0usize;
    for _ in 0..rounds {
        let Ok(msg) = Message::parse(black_box(&data)) else {
            continue;
        };
        match mode.as_str() {
            "tokenize" => sum += msg.header_count(),
            "forward" => {
                let mut e = Edits::new();
                let _ =
                    e.insert_top_via(&msg, b"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK5f3a9c2e");
                let mf = msg.max_forwards().ok().flatten().unwrap_or(70);
                let _ = e.set_max_forwards(&msg, u32::from(mf.saturating_sub(1)));
                sum += e.write(&msg, &mut out).unwrap_or(0);
            }
            _ => {
                sum += msg.via().map_or(0, |v| v.branch.map_or(0, <[u8]>::len));
                sum += msg.cseq().map_or(0, |c| c.number as usize);
                sum += msg.call_id().map_or(0, <[u8]>::len);
                if let Ok(Uri::Sip(u)) = msg.request_uri() {
                    sum += u.host_raw.len();
                }
            }
        }
    }
    println!("{sum}");
}
