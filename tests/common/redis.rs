//! A real redis-server for the cluster tests: started on a free loopback
//! port, in a directory of its own, never a system one (`.ci/run`
//! installs the Debian package `redis-server`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server this test started.
pub struct Redis {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    persistent: bool,
    /// With TLS: its port, and the certificate, key and CA files.
    tls: Option<(u16, PathBuf, PathBuf, PathBuf)>,
}

impl Redis {
    /// Starts one on a free port; `persistent`: with its append-only file
    /// on, so that a restart keeps what it held. None, said on stderr, when
    /// redis-server is not installed, so that `cargo test` runs on a fresh
    /// machine; under `CI` (which installs it) that is a failure instead.
    pub fn start(persistent: bool) -> Option<Redis> {
        Redis::start_with(persistent, None)
    }

    /// As [`Redis::start`], also serving TLS (`rediss://`) on a port of its
    /// own with the certificate `cert` and key `key` (`ca`: their CA).
    pub fn start_tls(cert: PathBuf, key: PathBuf, ca: PathBuf) -> Option<Redis> {
        let port = free_port();
        Redis::start_with(false, Some((port, cert, key, ca)))
    }

    fn start_with(
        persistent: bool,
        tls: Option<(u16, PathBuf, PathBuf, PathBuf)>,
    ) -> Option<Redis> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server is not installed (Debian package redis-server; .ci/run installs it)"
            );
            eprintln!("skipping: redis-server is not installed (Debian package redis-server)");
            return None;
        }
        let port = free_port();
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sipshard-redis-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = Redis {
            child: None,
            port,
            dir,
            persistent,
            tls,
        };
        r.restart();
        Some(r)
    }

    /// The URL sipshard's `--cluster` takes.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The `rediss://` URL of its TLS port (started with
    /// [`Redis::start_tls`]).
    pub fn tls_url(&self) -> String {
        let port = self.tls.as_ref().map_or(0, |t| t.0);
        format!("rediss://127.0.0.1:{port}")
    }

    /// Starts it again (after [`Redis::stop`]) on the same port and
    /// directory, and waits until it answers.
    pub fn restart(&mut self) {
        let port = self.port.to_string();
        let dir = self.dir.to_string_lossy().into_owned();
        let aof = if self.persistent { "yes" } else { "no" };
        let mut tls_args: Vec<String> = Vec::new();
        if let Some((p, cert, key, ca)) = &self.tls {
            tls_args.extend(["--tls-port".to_string(), p.to_string()]);
            for (flag, file) in [
                ("--tls-cert-file", cert),
                ("--tls-key-file", key),
                ("--tls-ca-cert-file", ca),
            ] {
                tls_args.extend([flag.to_string(), file.to_string_lossy().into_owned()]);
            }
            tls_args.extend(["--tls-auth-clients".to_string(), "no".to_string()]);
        }
        let child = Command::new("redis-server")
            .args(&tls_args)
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--dir",
                &dir,
                "--save",
                "",
                "--appendonly",
                aof,
                "--appendfsync",
                "always",
                // DEBUG SLEEP stalls it in the tests, from loopback only.
                "--enable-debug-command",
                "local",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian package redis-server; .ci/run installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // Ours answering, not another test's that took the port first
            // (then ours exits: its bind failed).
            let pid = self.child.as_ref().map_or(0, |c| c.id());
            if self.ping() && self.pid() == Some(pid) {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| c.try_wait().ok().flatten().is_some());
            assert!(!exited, "redis-server could not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {port} did not answer PING");
    }

    /// The process id the server on the port says it has.
    fn pid(&self) -> Option<u32> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        s.write_all(b"INFO server\r\n").ok()?;
        let mut text = Vec::new();
        let mut buf = [0u8; 8192];
        while !text.windows(11).any(|w| w == b"process_id:") || !text.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            text.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&text);
        text.lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|v| v.trim().parse().ok())
    }

    /// True when it answers PING.
    pub fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Stops it (SIGTERM: with the append-only file on, what it held is
    /// on disk) and waits.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the PID of a child we started and own.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// One command's reply of one line (`:1`, `+OK`, `-ERR ...`).
    pub fn line(&self, args: &[&[u8]]) -> Vec<u8> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(&request(args)).unwrap();
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        while !out.ends_with(b"\r\n") && s.read_exact(&mut byte).is_ok() {
            out.push(byte[0]);
        }
        out
    }

    /// One command's raw reply (RESP), for checks of what Redis holds:
    /// what arrives until the connection is quiet for half a second.
    pub fn command(&self, args: &[&[u8]]) -> Vec<u8> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s.write_all(&request(args)).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A command in RESP.
fn request(args: &[&[u8]]) -> Vec<u8> {
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a);
        req.extend_from_slice(b"\r\n");
    }
    req
}

/// A loopback port nothing holds now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}
