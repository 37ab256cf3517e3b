//! The `sipshard` binary: flags -> Config -> sockets -> shards -> wait for
//! SIGINT/SIGTERM -> drain -> exit. Only reporting lives here.

use std::io::Read;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use clap::Parser;
use mimalloc::MiMalloc;

use sipshard::cli::{Args, Command};
use sipshard::config::Config;
use sipshard::sip::{Message, StartLine};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Writes a line to stderr, ignoring failure: a closed stderr (a supervisor
/// that went away) must not turn a clean shutdown into a panic, which is
/// what `eprintln!` does.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Passwd { file, user, realm }) = &args.command {
        return passwd(file, user, realm);
    }
    if let Some(path) = &args.parse {
        return parse_file(path);
    }
    let cfg = match Config::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            say!("sipshard: {e}");
            return ExitCode::from(2);
        }
    };
    let server = match sipshard::server::start(&cfg) {
        Ok(s) => s,
        Err(e) => {
            say!("sipshard: {e}");
            return ExitCode::from(1);
        }
    };
    let stop = server.stop_flag();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            say!("sipshard: cannot handle signal {sig}: {e}");
            stop.store(true, Ordering::Relaxed);
        }
    }
    let listen: Vec<String> = server.bound.iter().map(|a| a.to_string()).collect();
    let proxy = &server.shared.proxy;
    let domains: Vec<String> = proxy
        .domains
        .iter()
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .collect();
    let role = match (domains.is_empty(), proxy.redirect) {
        (true, _) => "stateless proxy".to_string(),
        (false, false) => format!("stateless proxy and registrar for {}", domains.join(", ")),
        (false, true) => format!("redirect server and registrar for {}", domains.join(", ")),
    };
    say!(
        "sipshard {}: {role} listening on {} (udp), {} shard(s), io={}, steer={}, advertise {}, \
         record-route {}, upstreams [{}]{}",
        env!("CARGO_PKG_VERSION"),
        listen.join(", "),
        server.shards(),
        server.backend,
        format!("{:?}", cfg.steer).to_lowercase(),
        proxy.advertise,
        if proxy.record_route { "on" } else { "off" },
        proxy
            .upstreams
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if cfg.pin { ", pinned" } else { "" },
    );
    for w in &server.warnings {
        say!("sipshard: warning: {w}");
    }
    if let Some(note) = &server.registrar_note {
        say!("sipshard: {note}");
    }
    let g = &cfg.guard;
    let list = |v: &[sipshard::guard::Cidr]| {
        v.iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    say!(
        "sipshard: access: allow [{}], deny [{}], max-message-size {}, drop-scanners {}, rate-limit {}",
        if g.allow.is_empty() {
            "all".to_string()
        } else {
            list(&g.allow)
        },
        list(&g.deny),
        g.max_message_size,
        if g.drop_scanners { "on" } else { "off" },
        g.rate.map_or("off".to_string(), |r| format!(
            "{}/s per source per shard, burst {}, ban {} s",
            r.per_second,
            r.burst,
            r.ban_ms / 1000
        )),
    );
    if let (Some(a), Some(auth)) = (&cfg.auth, &server.shared.auth) {
        say!(
            "sipshard: auth: {} user(s) from {}, digest SHA-256 and MD5 (qop=auth), nonce-ttl {} s, REGISTER{}",
            auth.users.len(),
            a.file.display(),
            a.nonce_ttl,
            if a.invite { " and INVITE from local users" } else { "" },
        );
    }
    let counters = server.counters.clone();
    let metrics = match args.metrics_listen.map(|addr| {
        sipshard::metrics::MetricsServer::start(
            addr,
            counters.clone(),
            server.backend,
            stop.clone(),
        )
    }) {
        None => None,
        Some(Ok(m)) => {
            say!("sipshard: metrics at http://{}/metrics", m.addr);
            Some(m)
        }
        Some(Err(e)) => {
            say!("sipshard: cannot serve metrics: {e}");
            stop.store(true, Ordering::Relaxed);
            let _ = server.join();
            return ExitCode::from(1);
        }
    };
    let stats = (args.stats_interval > 0).then(|| {
        sipshard::stats::spawn(
            counters.clone(),
            std::time::Duration::from_secs(args.stats_interval),
            stop.clone(),
            |l| say!("sipshard: {l}"),
        )
    });
    let result = server.join();
    stop.store(true, Ordering::Relaxed);
    if let Some(m) = metrics {
        m.join();
    }
    if let Some(Ok(t)) = stats {
        let _ = t.join();
    }
    say!("sipshard: {}", sipshard::stats::exit_line(&counters));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say!("sipshard: a shard failed: {e}");
            ExitCode::from(1)
        }
    }
}

/// `sipshard passwd FILE USER REALM`: the password comes from standard
/// input, unechoed when that is a terminal.
fn passwd(file: &std::path::Path, user: &str, realm: &str) -> ExitCode {
    let password = match read_password() {
        Ok(p) if !p.is_empty() => p,
        Ok(_) => {
            say!("sipshard passwd: empty password");
            return ExitCode::from(2);
        }
        Err(e) => {
            say!("sipshard passwd: cannot read the password: {e}");
            return ExitCode::from(1);
        }
    };
    match sipshard::auth::credentials::set_password(file, user, realm, &password) {
        Ok(()) => {
            say!(
                "sipshard passwd: {user} in {realm} written to {}",
                file.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            say!("sipshard passwd: {e}");
            ExitCode::from(1)
        }
    }
}

/// One line of standard input, without its line end; on a terminal the
/// echo is off while it is typed.
fn read_password() -> std::io::Result<String> {
    use std::io::BufRead;
    // SAFETY: isatty and tcgetattr/tcsetattr only read or write the
    // termios struct we pass, for fd 0.
    let saved = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        (libc::isatty(0) == 1 && libc::tcgetattr(0, &mut t) == 0).then_some(t)
    };
    if let Some(mut quiet) = saved {
        say!("password: ");
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: as above.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if let Some(t) = saved {
        // SAFETY: as above.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
    }
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn parse_file(path: &str) -> ExitCode {
    let mut data = Vec::new();
    let read = if path == "-" {
        std::io::stdin().read_to_end(&mut data).map(|_| ())
    } else {
        std::fs::read(path).map(|d| data = d)
    };
    if let Err(e) = read {
        say!("sipshard: cannot read {path}: {e}");
        return ExitCode::from(1);
    }
    let msg = match Message::parse(&data) {
        Ok(m) => m,
        Err(e) => {
            println!("parse error: {} ({})", e, e.status());
            return ExitCode::from(1);
        }
    };
    match msg.start_line() {
        StartLine::Request { method, uri } => {
            println!("request {} {}", method, String::from_utf8_lossy(uri))
        }
        StartLine::Response { code, reason } => {
            println!("response {} {}", code, String::from_utf8_lossy(reason))
        }
    }
    for h in msg.headers() {
        println!(
            "  {:?} {:?}: {:?}",
            h.name,
            String::from_utf8_lossy(h.raw_name),
            String::from_utf8_lossy(h.value)
        );
    }
    println!("body: {} bytes", msg.body().len());
    match msg.validate() {
        Ok(()) => {
            println!("valid");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("invalid: {} ({})", e, e.status());
            ExitCode::from(1)
        }
    }
}
