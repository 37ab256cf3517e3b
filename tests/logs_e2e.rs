//! Logs (issue #5): `--log-format json` writes one JSON object per line,
//! the banner first with the listen address as a field; a flood of garbage
//! gives a bounded number of drop lines, not one per datagram;
//! `--log-level` filters everything but the start-up and exit lines.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::process::{socket, Proxy};
use serde_json::Value;

/// Every line of `text` as a JSON object (panics on one that is not).
fn objects(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            assert!(v.is_object(), "{l}");
            v
        })
        .collect()
}

fn json_lines_and_bounded_drop_lines(io: &str) {
    let Some(proxy) = Proxy::start(io, &["--log-format", "json", "--stats-interval", "0"]) else {
        return;
    };
    let banner = &objects(&proxy.banner)[0];
    assert_eq!(banner["level"], "INFO");
    assert_eq!(banner["listen"], proxy.addr.to_string(), "{banner}");
    assert_eq!(banner["io"], io);
    assert_eq!(banner["shards"], 2);
    assert!(banner["message"]
        .as_str()
        .unwrap()
        .contains(&format!("listening on {} (udp)", proxy.addr)));

    // 300 datagrams that are not SIP, over about 600 ms, from one source
    // (so one shard, `--steer flow`).
    let ua = socket();
    let started = Instant::now();
    for i in 0..300u32 {
        let junk = format!("\x00\x01junk {i} \"quoted\" {}", "x".repeat(200));
        ua.send_to(junk.as_bytes(), proxy.addr).unwrap();
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let elapsed = started.elapsed().as_secs();
    let rest = objects(&proxy.stop_and_read());

    let drops: Vec<&Value> = rest.iter().filter(|o| o["reason"] == "malformed").collect();
    // One line per second per shard at most (plus one for a second that
    // was only begun).
    assert!(!drops.is_empty(), "no drop line: {rest:?}");
    assert!(drops.len() as u64 <= 2 * (elapsed + 1), "{drops:?}");
    let counted: u64 = drops.iter().map(|o| o["count"].as_u64().unwrap()).sum();
    assert!((1..=300).contains(&counted), "{drops:?}");
    let first = drops[0];
    assert_eq!(first["level"], "INFO");
    assert_eq!(first["src"], ua.local_addr().unwrap().to_string());
    assert_eq!(first["len"], "\x00\x01junk 0 \"quoted\" ".len() + 200);
    let data = first["data"].as_str().unwrap();
    assert!(
        data.starts_with(r#"\x00\x01junk 0 \"quoted\" xxx"#),
        "{data}"
    );
    // 128 bytes shown, two of them as four characters and two as two.
    assert_eq!(data.len(), 128 + 2 * 3 + 2, "{data}");

    let exit = rest
        .iter()
        .find(|o| o["message"].as_str().unwrap().contains("stopped;"))
        .expect("an exit line");
    assert_eq!(exit["received"], 300, "{exit}");
    assert_eq!(exit["parse_errors"], 300, "{exit}");
}

/// `--log-level warn`: the banner and the exit line are still written (the
/// tests and scripts read them), the stats and drop lines are not.
fn warn_level_keeps_the_banner_and_the_exit_line(io: &str) {
    let Some(proxy) = Proxy::start(io, &["--log-level", "warn", "--stats-interval", "1"]) else {
        return;
    };
    assert!(proxy.banner.contains(" INFO sipshard "), "{}", proxy.banner);
    let ua = socket();
    ua.send_to(b"\x00garbage", proxy.addr).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let rest = proxy.stop_and_read();
    assert!(rest.contains("sipshard: access: "), "{rest}");
    assert!(rest.contains("sipshard: stopped; received=1 "), "{rest}");
    assert!(!rest.contains("stats:"), "{rest}");
    assert!(!rest.contains("sipshard: drop "), "{rest}");
}

/// `--log-level debug` shows even the keep-alives dropped; the text line
/// is the timestamp, the level and the message.
fn debug_level_shows_keepalive_drops(io: &str) {
    let Some(proxy) = Proxy::start(io, &["--log-level", "debug", "--stats-interval", "0"]) else {
        return;
    };
    let ua = socket();
    ua.send_to(b"\r\n\r\n", proxy.addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let rest = proxy.stop_and_read();
    let line = rest
        .lines()
        .find(|l| l.contains("reason=keepalive"))
        .unwrap_or_else(|| panic!("{rest}"));
    let src = ua.local_addr().unwrap();
    assert!(line.contains(" DEBUG sipshard: drop shard="), "{line}");
    assert!(
        line.ends_with(&format!(
            " reason=keepalive src={src} count=1 len=4 data=\"\\x0d\\x0a\\x0d\\x0a\""
        )),
        "{line}"
    );
}

on_both_backends!(
    json_lines_and_bounded_drop_lines,
    warn_level_keeps_the_banner_and_the_exit_line,
    debug_level_shows_keepalive_drops,
);

/// Bad values are refused with the accepted ones named.
#[test]
fn bad_log_flags_are_refused() {
    for (flag, value) in [("--log-level", "loud"), ("--log-format", "xml")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipshard"))
            .args([flag, value, "--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(flag) && err.contains("possible values"),
            "{err}"
        );
    }
}
