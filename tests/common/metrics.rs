//! Scraping `--metrics-listen` in the end-to-end tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::process::Proxy;

/// The metrics address from the start-up lines (read up to the line that
/// names it).
pub fn metrics_addr(proxy: &mut Proxy) -> SocketAddr {
    for _ in 0..8 {
        let line = proxy.next_line();
        if let Some(a) = line.split("http://").nth(1) {
            if let Some(addr) = a.split("/metrics").next().and_then(|a| a.parse().ok()) {
                return addr;
            }
        }
    }
    panic!("the start-up lines name no metrics address")
}

/// GET `path` from `addr`; the status line and the body.
pub fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.lines().next().unwrap_or_default().to_string();
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    (status, body)
}

/// As [`sum_of`], of the series that also carry `label` (`name="value"`).
pub fn sum_with_label(body: &str, prefix: &str, label: &str) -> u64 {
    body.lines()
        .filter(|l| l.starts_with(prefix) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The sum of the integer values of the series whose line starts with
/// `prefix`.
pub fn sum_of(body: &str, prefix: &str) -> u64 {
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
