//! Running the real sipshard binary and talking to it over loopback UDP,
//! for the end-to-end tests.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::Duration;

/// Each test function `name(io: &str)` becomes `mmsg::name` and
/// `uring::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod mmsg {
            $(#[test] fn $name() { super::$name("mmsg") })*
        }
        mod uring {
            $(#[test] fn $name() { super::$name("uring") })*
        }
    };
}

/// Starts sipshard with `args`; returns the child, its banner line, and
/// its stderr for what follows (the exit line).
pub fn spawn(args: &[&str]) -> (Child, String, BufReader<ChildStderr>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sipshard"))
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipshard starts");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut banner = String::new();
    err.read_line(&mut banner).unwrap();
    (child, banner, err)
}

/// The listen addresses the banner names.
pub fn listen_addrs(banner: &str) -> Vec<SocketAddr> {
    banner
        .split("listening on ")
        .nth(1)
        .and_then(|s| s.split(" (udp)").next())
        .map(|list| list.split(", ").filter_map(|a| a.parse().ok()).collect())
        .unwrap_or_default()
}

/// A running sipshard.
pub struct Proxy {
    /// The process.
    pub child: Child,
    /// Its first listen address.
    pub addr: SocketAddr,
    /// The start-up banner line.
    pub banner: String,
    /// The rest of its stderr (notes, warnings, the exit line).
    pub err: BufReader<ChildStderr>,
}

impl Proxy {
    /// Starts sipshard on `io`; None (with a note) when io_uring is refused.
    pub fn start(io: &str, extra: &[&str]) -> Option<Proxy> {
        let mut args = vec!["--listen", "127.0.0.1:0", "--shards", "2", "--io", io];
        args.extend_from_slice(extra);
        let (mut child, line, err) = spawn(&args);
        if line.contains("io_uring is not available") {
            eprintln!("skipping the io_uring run: {}", line.trim());
            let _ = child.wait();
            return None;
        }
        assert!(line.contains(&format!("io={io}")), "{line}");
        let addr = *listen_addrs(&line)
            .first()
            .unwrap_or_else(|| panic!("no address in banner: {line}"));
        Some(Proxy {
            child,
            addr,
            banner: line,
            err,
        })
    }

    /// The next line sipshard writes to stderr.
    pub fn next_line(&mut self) -> String {
        let mut line = String::new();
        self.err.read_line(&mut line).unwrap();
        line
    }

    /// Sends SIGTERM, waits, and returns the exit line (counters).
    pub fn stop_and_report(self) -> String {
        self.stop_and_read()
            .lines()
            .find(|l| l.contains("stopped;"))
            .unwrap_or_default()
            .to_string()
    }

    /// Sends SIGTERM, waits, and returns everything it wrote to stderr
    /// after what was read already.
    pub fn stop_and_read(mut self) -> String {
        // SAFETY: kill(2) on the PID of a child we started and still own.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.err, &mut rest);
        let _ = self.child.wait();
        rest
    }

    /// Kills it with SIGKILL (no shutdown of any kind) and waits.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        // SAFETY: kill(2) on the PID of a child we started and still own.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let code = self.child.wait().ok().and_then(|s| s.code());
        std::mem::forget(self);
        code
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

pub fn recv(s: &UdpSocket) -> Vec<u8> {
    let mut buf = vec![0u8; 65536];
    let (n, _) = s.recv_from(&mut buf).expect("a datagram within 3 s");
    buf.truncate(n);
    buf
}

pub fn nothing_arrives(s: &UdpSocket) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let r = s.recv_from(&mut buf).is_err();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    r
}

pub fn port(s: &UdpSocket) -> u16 {
    s.local_addr().unwrap().port()
}
