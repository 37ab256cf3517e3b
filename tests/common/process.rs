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
    spawn_refusing(args, &[])
}

/// Starts sipshard as [`spawn`] does, with the system calls `refused`
/// failing with EPERM, as a container's seccomp profile makes them fail
/// (e.g. `bpf` and `io_uring_setup` under Docker's default profile).
pub fn spawn_refusing(
    args: &[&str],
    refused: &[libc::c_long],
) -> (Child, String, BufReader<ChildStderr>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sipshard"));
    cmd.args(args).stderr(Stdio::piped());
    if !refused.is_empty() {
        let filter = seccomp_refusing(refused);
        // SAFETY: the closure runs in the child between fork and exec and
        // calls only prctl(2), which is async-signal-safe; `filter` is
        // built before the fork and only read.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                let prog = libc::sock_fprog {
                    len: filter.len() as u16,
                    filter: filter.as_ptr() as *mut libc::sock_filter,
                };
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::prctl(
                        libc::PR_SET_SECCOMP,
                        libc::SECCOMP_MODE_FILTER,
                        &prog as *const libc::sock_fprog,
                    ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().expect("sipshard starts");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut banner = String::new();
    err.read_line(&mut banner).unwrap();
    (child, banner, err)
}

/// A classic-BPF seccomp filter: EPERM for each of `refused`, every other
/// system call allowed.
fn seccomp_refusing(refused: &[libc::c_long]) -> Vec<libc::sock_filter> {
    let insn = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    // seccomp_data.nr is at offset 0.
    let mut f = vec![insn(LD_W_ABS, 0, 0, 0)];
    for &nr in refused {
        f.push(insn(JEQ_K, 0, 1, nr as u32));
        f.push(insn(
            RET_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ));
    }
    f.push(insn(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW));
    f
}

/// The address of the banner's `transport` listen (`tcp`, `tls`, `ws`,
/// `wss`); the first of them.
pub fn stream_addr(banner: &str, transport: &str) -> SocketAddr {
    let suffix = format!(" ({transport})");
    banner
        .split(", ")
        .find_map(|part| part.strip_suffix(&suffix).and_then(|a| a.parse().ok()))
        .unwrap_or_else(|| panic!("no {transport} address in banner: {banner}"))
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
        Proxy::start_refusing(io, extra, &[])
    }

    /// Starts sipshard on `io` with the system calls `refused` failing as
    /// under a container's seccomp profile ([`spawn_refusing`]).
    pub fn start_refusing(io: &str, extra: &[&str], refused: &[libc::c_long]) -> Option<Proxy> {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Proxy::start_listening(io, &args, refused)
    }

    /// Starts sipshard on `io` with 2 shards and `args`, which name its
    /// listen addresses (none is added).
    pub fn start_listening(io: &str, args: &[&str], refused: &[libc::c_long]) -> Option<Proxy> {
        let mut args = args.to_vec();
        args.extend_from_slice(&["--shards", "2", "--io", io]);
        let (mut child, line, err) = spawn_refusing(&args, refused);
        if line.contains("io_uring is not available") {
            eprintln!("skipping the io_uring run: {}", line.trim());
            let _ = child.wait();
            return None;
        }
        // A first line that is not the banner fails the test; the child
        // is stopped first, or it would outlive the test and hold the
        // run (it did once, when a thread logged before the banner).
        let addr = match listen_addrs(&line).first() {
            Some(&a) if line.contains(&format!("io={io}")) => a,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("not a banner with io={io} and an address: {line}");
            }
        };
        Some(Proxy {
            child,
            addr,
            banner: line,
            err,
        })
    }

    /// Descriptors the process has open now (/proc/PID/fd).
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Waits up to 5 s for the process's descriptors to come back to
    /// `baseline`; the count it ended with.
    pub fn fds_back_to(&self, baseline: usize) -> usize {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let n = self.fds();
            if n == baseline || std::time::Instant::now() >= deadline {
                return n;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
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

/// The value of `key` in an exit line (` key=N `).
pub fn counter(report: &str, key: &str) -> u64 {
    report
        .split_whitespace()
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {report}"))
}
