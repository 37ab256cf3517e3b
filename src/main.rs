//! The `sipshard` binary: flags -> Config -> logging -> sockets -> shards ->
//! wait for SIGINT/SIGTERM -> drain -> exit. Only reporting lives here: the
//! start-up and exit lines are `tracing` events (see `sipshard::telemetry::logging`).

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::{Parser, ValueEnum};
use mimalloc::MiMalloc;
use tracing::{error, info, warn};

use sipshard::cli::{Args, Command, Steer};
use sipshard::config::Config;
use sipshard::server::Server;
use sipshard::shard::counters::{total, ShardCounters};
use sipshard::sip::{Message, StartLine};
use sipshard::telemetry::logging::LIFECYCLE;
use sipshard::telemetry::stats::Totals;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Writes a line to stderr, ignoring failure: a closed stderr (a supervisor
/// that went away) must not turn a clean shutdown into a panic, which is
/// what `eprintln!` does. Only for what comes before logging is set up
/// (bad flags) and for `--parse`; the server logs through `tracing`.
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
    // Bad flags are reported plainly, before logging exists.
    let cfg = match Config::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            say!("sipshard: {e}");
            return ExitCode::from(2);
        }
    };
    // Held to the end of `main`: dropping it writes out the queued lines.
    let _log = match sipshard::telemetry::logging::init(args.log_level, args.log_format) {
        Ok(guard) => guard,
        Err(e) => {
            say!("sipshard: cannot set up logging: {e}");
            return ExitCode::from(1);
        }
    };
    let mut server = match sipshard::server::start(&cfg) {
        Ok(s) => s,
        Err(e) => {
            error!("sipshard: {e}");
            return ExitCode::from(1);
        }
    };
    let stop = server.stop_flag();
    let mut signal_errors = Vec::new();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            signal_errors.push(format!("cannot handle signal {sig}: {e}"));
            stop.store(true, Ordering::Relaxed);
        }
    }
    banner(&cfg, &server);
    let reloads = server
        .tls
        .clone()
        .map(|tls| reload_on_sighup(tls, stop.clone()));
    for e in &signal_errors {
        error!("sipshard: {e}");
    }
    let counters = server.counters.clone();
    let metrics = match args.metrics_listen.map(|addr| {
        sipshard::telemetry::metrics::MetricsServer::start(
            addr,
            counters.clone(),
            server.shared.clone(),
            server.backend,
            stop.clone(),
        )
    }) {
        None => None,
        Some(Ok(m)) => {
            let url = format!("http://{}/metrics", m.addr);
            info!(target: LIFECYCLE, metrics = %url, "sipshard: metrics at {url}");
            Some(m)
        }
        Some(Err(e)) => {
            error!("sipshard: cannot serve metrics: {e}");
            stop.store(true, Ordering::Relaxed);
            let _ = server.join();
            return ExitCode::from(1);
        }
    };
    if let Some(p) = &server.probe {
        info!(
            target: LIFECYCLE,
            "sipshard: probing {} upstream(s) with OPTIONS every {} s; out of the rotation after {} missed in a row",
            p.upstreams.len(),
            p.interval.as_secs(),
            p.threshold
        );
    }
    if let Err(e) = server.start_probing().and_then(|()| server.start_cluster()) {
        error!("sipshard: {e}");
        stop.store(true, Ordering::Relaxed);
        let _ = server.join();
        return ExitCode::from(1);
    }
    let stats = (args.stats_interval > 0).then(|| {
        sipshard::telemetry::stats::spawn(
            counters.clone(),
            std::time::Duration::from_secs(args.stats_interval),
            stop.clone(),
            |t, l| {
                info!(
                    received = t.received,
                    forwarded_requests = t.forwarded_requests,
                    forwarded_responses = t.forwarded_responses,
                    replies = t.replies,
                    drops = t.drops,
                    parse_errors = t.parse_errors,
                    send_failed = t.send_failed,
                    "sipshard: {l}"
                )
            },
        )
    });
    let result = server.join();
    stop.store(true, Ordering::Relaxed);
    if let Some(Ok(t)) = reloads {
        let _ = t.join();
    }
    if let Some(m) = metrics {
        m.join();
    }
    if let Some(Ok(t)) = stats {
        let _ = t.join();
    }
    let t = Totals::read(&counters);
    let sum = |f: fn(&ShardCounters) -> &AtomicU64| total(&counters, f);
    info!(
        target: LIFECYCLE,
        received = t.received,
        forwarded_requests = t.forwarded_requests,
        forwarded_responses = t.forwarded_responses,
        replies = t.replies,
        drops = t.drops,
        parse_errors = t.parse_errors,
        send_failed = t.send_failed,
        sources_banned = sum(|c| &c.sources_banned),
        registered = sum(|c| &c.registered),
        "sipshard: {}",
        sipshard::telemetry::stats::exit_line(&counters)
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("sipshard: a shard failed: {e}");
            ExitCode::from(1)
        }
    }
}

/// The start-up lines, first on stderr: the banner (role, addresses,
/// backend, every routing setting), warnings, the registrar and
/// state-directory note, the access settings.
fn banner(cfg: &Config, server: &Server) {
    let listen = list(server.bound.iter());
    let mut listening = format!("{listen} (udp)");
    for (transport, addr) in &server.stream_bound {
        let name = transport.via_token().to_ascii_lowercase();
        listening.push_str(&format!(", {addr} ({name})"));
    }
    let proxy = &server.shared.proxy;
    let domains: Vec<String> = proxy
        .domains
        .iter()
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .collect();
    let kind = match cfg.transactions {
        Some(_) => "stateful proxy",
        None => "stateless proxy",
    };
    let role = match (domains.is_empty(), proxy.redirect) {
        (true, _) => kind.to_string(),
        (false, false) => format!("{kind} and registrar for {}", domains.join(", ")),
        (false, true) => format!("redirect server and registrar for {}", domains.join(", ")),
    };
    let steer = server
        .steer
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string());
    let record_route = if proxy.record_route { "on" } else { "off" };
    // As written on the command line (UDP ones bare), a name with the
    // address it resolved to.
    let upstreams = list(cfg.upstreams.iter());
    info!(
        target: LIFECYCLE,
        version = env!("CARGO_PKG_VERSION"),
        role = %role,
        listen = %listen,
        io = server.backend,
        shards = server.shards(),
        steer = %steer,
        advertise = %proxy.advertise,
        record_route = proxy.record_route,
        upstreams = %upstreams,
        pin = cfg.pin,
        "sipshard {}: {role} listening on {listening}, {} shard(s), io={}, steer={steer}, \
         advertise {}, record-route {record_route}, upstreams [{upstreams}]{}",
        env!("CARGO_PKG_VERSION"),
        server.shards(),
        server.backend,
        proxy.advertise,
        if cfg.pin { ", pinned" } else { "" },
    );
    if let Some(note) = &server.backend_note {
        info!(target: LIFECYCLE, "sipshard: {note}");
    }
    for w in &server.warnings {
        warn!("sipshard: warning: {w}");
    }
    if let Some(note) = &server.registrar_note {
        match &server.recovery {
            Some(r) => info!(
                target: LIFECYCLE,
                state_dir = %cfg.state_dir.as_deref().unwrap_or(Path::new("")).display(),
                files = r.files,
                entries = r.entries,
                torn_tails = r.torn_tails,
                aors = r.aors,
                bindings = r.bindings,
                expired = r.expired,
                "sipshard: {note}"
            ),
            None => info!(target: LIFECYCLE, "sipshard: {note}"),
        }
    }
    if let Some(note) = &server.cluster_note {
        info!(target: LIFECYCLE, "sipshard: {note}");
    }
    let g = &cfg.guard;
    let allow = if g.allow.is_empty() {
        "all".to_string()
    } else {
        list(g.allow.iter())
    };
    let deny = list(g.deny.iter());
    // What each shard enforces (a share of the flags when steering
    // spreads one source over the shards).
    let rate = server.shared.guard.rate.map_or("off".to_string(), |r| {
        let share = if server.steer == Steer::Flow || server.shards() < 2 {
            String::new()
        } else {
            format!(
                " (--rate-limit/--rate-burst over {} shards)",
                server.shards()
            )
        };
        format!(
            "{}/s per source per shard, burst {}{share}, ban {} s",
            r.per_second,
            r.burst,
            r.ban_ms / 1000
        )
    });
    let drop_scanners = if g.drop_scanners { "on" } else { "off" };
    info!(
        target: LIFECYCLE,
        allow = %allow,
        deny = %deny,
        max_message_size = g.max_message_size,
        drop_scanners = g.drop_scanners,
        rate_limit = %rate,
        "sipshard: access: allow [{allow}], deny [{deny}], max-message-size {}, drop-scanners {drop_scanners}, rate-limit {rate}",
        g.max_message_size,
    );
    if let (Some(a), Some(auth)) = (&cfg.auth, &server.shared.auth) {
        let algorithms = list(auth.algorithms.iter().map(|a| a.name()));
        let invite = if a.invite {
            " and INVITE from local users"
        } else {
            ""
        };
        info!(
            target: LIFECYCLE,
            auth_file = %a.file.display(),
            users = auth.users.len(),
            algorithms = %algorithms,
            nonce_ttl = a.nonce_ttl,
            auth_invite = a.invite,
            "sipshard: auth: {} user(s) from {}, digest {algorithms} (qop=auth), nonce-ttl {} s, REGISTER{invite}",
            auth.users.len(),
            a.file.display(),
            a.nonce_ttl,
        );
    }
}

/// `a, b, c`.
fn list<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// Reloads the TLS certificate, key and CAs on SIGHUP, from a thread of
/// its own (reading files never holds up a shard); connections accepted
/// afterwards use the new ones, open ones keep theirs. A failed reload
/// keeps the old configuration and says why.
fn reload_on_sighup(
    tls: std::sync::Arc<sipshard::transport::tls::TlsReloader>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let hup = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;
    std::thread::Builder::new()
        .name("tls-reload".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(100));
                if !hup.swap(false, Ordering::Relaxed) {
                    continue;
                }
                match tls.reload() {
                    Ok(()) => info!(target: LIFECYCLE, "sipshard: SIGHUP: TLS certificate and keys reloaded"),
                    Err(e) => warn!("sipshard: SIGHUP: TLS reload failed, keeping the previous certificate: {e}"),
                }
            }
        })
}

/// `sipshard passwd FILE USER REALM`: the password comes from standard
/// input, unechoed when that is a terminal.
fn passwd(file: &Path, user: &str, realm: &str) -> ExitCode {
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
