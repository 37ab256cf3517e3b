//! Start-up and shutdown: bind every shard's socket, spawn the shards
//! (pinned when asked), and stop them on request. `main.rs` only reports.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_utils::CachePadded;

use crate::auth::{AuthConfig, CredentialStore, NonceKey};
use crate::cli::{FsyncPolicy, IoChoice, Steer};
use crate::config::Config;
use crate::io::mmsg::Mmsg;
use crate::io::socket::bind_shard_socket;
use crate::io::steer as steering;
use crate::io::stream::{self, Streams};
use crate::io::uring::{self, Uring};
use crate::location::owner::Owner;
use crate::location::store::{self, Fsync, Store};
use crate::location::{owner_of, AorRecord, LocationOp};
use crate::probe::{self, ProbeConfig};
use crate::shard::{self, counters::ShardCounters, unix_now, Shard, Shared};
use crate::transport::tls::{client_config, server_name_for, TlsReloader};
use crate::transport::Transport;

mod cluster;
use cluster::start_cluster;

/// Why the server could not start.
#[derive(Debug)]
pub enum StartupError {
    /// A socket could not be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The system's reason.
        source: io::Error,
    },
    /// A shard thread could not be spawned.
    Spawn(io::Error),
    /// `--io uring` was asked for and io_uring is refused here.
    Uring(io::Error),
    /// The inboxes' eventfds could not be made.
    Inbox(io::Error),
    /// `--auth-file` could not be read, or the nonce key not drawn.
    Auth(String),
    /// The TLS certificate, key or CAs could not be read.
    Tls(crate::transport::tls::TlsError),
    /// `--cluster` could not be set up (the URL, or no --node-addr).
    Cluster(String),
    /// `--state-dir` could not be read or taken over.
    State {
        /// The directory.
        dir: std::path::PathBuf,
        /// The system's reason.
        source: io::Error,
    },
}

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartupError::Bind { addr, source } => write!(f, "cannot bind {addr}: {source}"),
            StartupError::Spawn(e) => write!(f, "cannot start a shard thread: {e}"),
            StartupError::Uring(e) => write!(
                f,
                "io_uring is not available here ({e}); use --io mmsg or --io auto"
            ),
            StartupError::Inbox(e) => write!(f, "cannot create the shard inboxes: {e}"),
            StartupError::Auth(e) => write!(f, "--auth-file: {e}"),
            StartupError::Tls(e) => write!(f, "{e}"),
            StartupError::Cluster(e) => f.write_str(e),
            StartupError::State { dir, source } => {
                write!(f, "--state-dir {}: {source}", dir.display())
            }
        }
    }
}

impl std::error::Error for StartupError {}

/// What start-up read back from `--state-dir` (the figures of the
/// registrar note, for structured logs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Snapshot and log files read.
    pub files: usize,
    /// Entries replayed from them.
    pub entries: u64,
    /// Files whose replay stopped at a torn or corrupt tail.
    pub torn_tails: usize,
    /// AORs with a live binding, kept.
    pub aors: usize,
    /// Live bindings kept.
    pub bindings: usize,
    /// Bindings that had expired while the server was down, dropped.
    pub expired: usize,
}

/// A running server.
pub struct Server {
    /// The UDP listen addresses as bound (port 0 resolved).
    pub bound: Vec<SocketAddr>,
    /// The stream listen addresses as bound, with their transport.
    pub stream_bound: Vec<(Transport, SocketAddr)>,
    /// The TLS configuration, for a reload on SIGHUP; None without
    /// `--tls-cert`.
    pub tls: Option<Arc<TlsReloader>>,
    /// What the shards share (routing and registrar configuration,
    /// inboxes).
    pub shared: Arc<Shared>,
    /// A line for the banner about the registrar and its state, when
    /// `--domain` makes this server one.
    pub registrar_note: Option<String>,
    /// What was read back from `--state-dir`, when given.
    pub recovery: Option<Recovery>,
    /// Every shard's counters.
    pub counters: Arc<Vec<CachePadded<ShardCounters>>>,
    /// Notes for the start-up banner (buffer clamps, guessed --advertise).
    pub warnings: Vec<String>,
    /// The backend the shards run: "uring" or "mmsg".
    pub backend: &'static str,
    /// Why `--io auto` chose it, and what drives the connections, for the
    /// start-up lines.
    pub backend_note: Option<String>,
    /// The steering in force: `--steer`, or `flow` where `call-id` was
    /// refused.
    pub steer: Steer,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    /// What the upstream prober will do (`--probe-interval`), until
    /// [`Server::start_probing`] starts it.
    pub probe: Option<ProbeConfig>,
    /// The upstream prober, once running.
    prober: Option<JoinHandle<()>>,
    /// A line for the banner about the cluster (`--cluster`).
    pub cluster_note: Option<String>,
    /// The cluster link (`--cluster`); its threads start with
    /// [`Server::start_cluster`].
    cluster: Option<crate::cluster::Link>,
}

/// The nonce key's file in `--state-dir`.
pub const NONCE_KEY_FILE: &str = "nonce.key";

/// Reads the credentials and draws the nonce key (or reads it from
/// `--state-dir`). An empty file is an
/// error: it would lock every user out.
fn load_auth(
    a: &crate::config::AuthSettings,
    state_dir: Option<&std::path::Path>,
) -> Result<AuthConfig, StartupError> {
    let users = CredentialStore::load(&a.file).map_err(StartupError::Auth)?;
    if users.is_empty() {
        return Err(StartupError::Auth(format!(
            "{} has no users (add one with `sipshard passwd`)",
            a.file.display()
        )));
    }
    // With --state-dir the key outlives a restart, and so do the nonces.
    let key = match state_dir {
        Some(dir) => {
            let path = dir.join(NONCE_KEY_FILE);
            NonceKey::kept_in(&path)
                .map_err(|e| StartupError::Auth(format!("nonce key {}: {e}", path.display())))?
        }
        None => NonceKey::random()
            .map_err(|e| StartupError::Auth(format!("cannot draw the nonce key: {e}")))?,
    };
    Ok(AuthConfig {
        users,
        key,
        nonce_ttl: a.nonce_ttl,
        invite: a.invite,
        algorithms: a.algorithms.clone(),
        failure_limit: a.failure_limit,
    })
}

/// Binds and starts `cfg.shards` shards per listen address.
pub fn start(cfg: &Config) -> Result<Server, StartupError> {
    let auth = cfg
        .auth
        .as_ref()
        .map(|a| load_auth(a, cfg.state_dir.as_deref()))
        .transpose()?;
    let mut warnings = Vec::new();
    let steer_prog = load_steering(cfg, &mut warnings);
    // The one place the backend is chosen.
    let use_uring = match cfg.io {
        IoChoice::Mmsg => false,
        IoChoice::Uring => {
            let taskrun = uring::probe().map_err(StartupError::Uring)?;
            if taskrun != uring::Taskrun::Deferred {
                warnings.push(format!(
                    "io_uring: this kernel refuses DEFER_TASKRUN (Linux 6.1); running {taskrun:?} \
                     task work, which costs more CPU per message"
                ));
            }
            true
        }
        // Measured, not assumed: on the kernels measured so far the
        // io_uring loop costs a little more CPU per forwarded message than
        // recvmmsg/sendmmsg at every rate (perf/RESULTS.md), so auto
        // means mmsg until that changes; `--io uring` chooses it.
        IoChoice::Auto => false,
    };
    let mut notes = Vec::new();
    if cfg.io == IoChoice::Auto {
        notes.push(
            "io auto: mmsg (io_uring cost 1.01-1.05x its CPU per forwarded message \
             at 10,000-75,000 requests/s on Linux 6.18, perf/RESULTS.md); \
             --io uring to run io_uring",
        );
    }
    if !cfg.stream_listen.is_empty() {
        notes.push(if use_uring {
            "connections driven by io_uring: multishot accept, multishot receive \
             over provided buffers (1 MiB per shard, whatever the number of connections)"
        } else {
            "connections driven by epoll (the portable path)"
        });
    }
    let backend_note = (!notes.is_empty()).then(|| notes.join("; "));
    let mut sockets = Vec::new();
    let mut bound = Vec::new();
    let mut listen_of = Vec::new();
    for (listen_index, &want) in cfg.listen.iter().enumerate() {
        // The first socket resolves port 0; the others join it with
        // SO_REUSEPORT on the resolved port.
        let mut addr = want;
        for shard in 0..cfg.shards {
            let socket = match (cfg.steer, sockets.last()) {
                // --steer shared: every shard reads the first socket.
                (Steer::Shared, Some(first)) if shard > 0 => {
                    let first: &std::net::UdpSocket = first;
                    first
                        .try_clone()
                        .map_err(|source| StartupError::Bind { addr, source })?
                }
                _ => {
                    let b = bind_shard_socket(addr, &cfg.socket)
                        .map_err(|source| StartupError::Bind { addr, source })?;
                    warnings.extend(b.warnings);
                    b.socket
                }
            };
            if addr.port() == 0 {
                addr = socket
                    .local_addr()
                    .map_err(|source| StartupError::Bind { addr, source })?;
            }
            sockets.push(socket);
            listen_of.push(listen_index);
        }
        bound.push(addr);
    }
    let steer = attach_steering(steer_prog, cfg.shards, &sockets, &mut warnings);
    warnings.dedup();
    // Every shard binds its own listener for each stream address, so the
    // kernel spreads connections over them (SO_REUSEPORT); the first
    // resolves port 0 for the others.
    let mut stream_bound = Vec::new();
    let mut listeners: Vec<Vec<(TcpListener, Transport)>> =
        (0..sockets.len()).map(|_| Vec::new()).collect();
    for &(transport, want) in &cfg.stream_listen {
        let mut addr = want;
        for shard_listeners in &mut listeners {
            let l = stream::bind_listener(addr)
                .map_err(|source| StartupError::Bind { addr, source })?;
            if addr.port() == 0 {
                addr = l
                    .local_addr()
                    .map_err(|source| StartupError::Bind { addr, source })?;
            }
            shard_listeners.push((l, transport));
        }
        stream_bound.push((transport, addr));
    }
    let streams: Vec<SocketAddr> = stream_bound.iter().map(|&(_, a)| a).collect();
    let (mut proxy, warning) = cfg.proxy_config(&bound, &streams);
    // The address other nodes of a cluster reach this one at is ours:
    // a Route naming it is our own (or a request would loop to us).
    if let Some(a) = cfg.cluster.as_ref().and_then(|c| c.node_addr) {
        if !proxy.local.contains(&a) {
            proxy.local.push(a);
        }
    }
    warnings.extend(warning);
    let shards = sockets.len();
    let registrar_on = !cfg.domains.is_empty();
    let mut shared = Shared::new(proxy, cfg.registrar, listen_of).map_err(StartupError::Inbox)?;
    shared.guard = cfg.guard.clone();
    if steer != Steer::Flow {
        // One source reaches every shard: each enforces its share.
        shared.guard.rate = shared.guard.rate.map(|l| l.spread_over(cfg.shards));
    }
    shared.auth = auth;
    shared.transactions = cfg.transactions;
    shared.bound = bound.clone().into_boxed_slice();
    let link_stats = cfg
        .cluster
        .as_ref()
        .map(|_| Arc::new(crate::cluster::LinkStats::default()));
    shared.cluster = link_stats.clone();
    let shared = Arc::new(shared);
    let now = unix_now();
    let Locations {
        shards: mut locations,
        note: registrar_note,
        recovery,
    } = locations(cfg, shards, now)?;
    let counters: Arc<Vec<CachePadded<ShardCounters>>> = Arc::new(
        (0..sockets.len())
            .map(|_| CachePadded::new(ShardCounters::default()))
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (mut sides, mut cluster, cluster_note) = match (&cfg.cluster, link_stats) {
        (Some(c), Some(stats)) => start_cluster(cfg, c, &shared, &bound, stats, &stop)?,
        _ => (Vec::new(), None, None),
    };
    // This node's bindings from --state-dir go to Redis once it is
    // reached: those a kill took before the link wrote them get there.
    if let (Some(link), Some(side), Some(loc)) = (&mut cluster, sides.first(), locations.first()) {
        if recovery.is_some() {
            link.replay(
                loc.replica.records().cloned().collect(),
                side.routes().clone(),
            );
        }
    }
    let cores = if cfg.pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut threads = Vec::new();
    // Read once here and on SIGHUP, never on a shard's loop.
    let tls = cfg
        .tls
        .clone()
        .map(|t| TlsReloader::new(t).map(Arc::new))
        .transpose()
        .map_err(StartupError::Tls)?;
    // Outbound TLS: roots from --tls-ca or the system's, and as our client
    // certificate --tls-client-cert, else the server's when we have one.
    // Without roots, TLS next hops fail (counted) and the rest runs: a
    // warning, not a stop; but a client pair given for nothing else than
    // outbound TLS stops the server when that cannot be set up.
    let identity = match &cfg.tls_client_identity {
        Some((cert, key)) => Some((cert.as_path(), key.as_path())),
        None => cfg
            .tls
            .as_ref()
            .map(|t| (t.cert.as_path(), t.key.as_path())),
    };
    let tls_client = match client_config(cfg.tls_ca.as_deref(), identity) {
        Ok(c) => Some(c),
        Err(e) if cfg.tls_client_identity.is_some() => return Err(StartupError::Tls(e)),
        Err(e) => {
            // Said only when a flag asked for outbound TLS (a `sips:` URI
            // may still ask for it: that next hop then fails, counted).
            let asked = cfg.tls_ca.is_some()
                || cfg
                    .upstreams
                    .iter()
                    .any(|u| u.dest.transport == Transport::Tls);
            if asked {
                warnings.push(format!("outbound TLS unavailable: {e}"));
            }
            None
        }
    };
    // TLS upstreams given by name are checked against the name, not the
    // address it resolved to (config refused two names for one address).
    let mut tls_names = HashMap::new();
    for u in &cfg.upstreams {
        if let (Transport::Tls, Some(name)) = (u.dest.transport, &u.name) {
            let name = server_name_for(name).map_err(StartupError::Tls)?;
            tls_names.insert((u.dest.addr, Transport::Tls), name);
        }
    }
    let (max_conns, max_per_ip, max_message) = (
        cfg.max_connections_per_shard,
        cfg.max_connections_per_ip_per_shard,
        cfg.guard.max_message_size,
    );
    let (deadlines, max_write_queue) = (cfg.stream_deadlines, cfg.max_write_queue);
    for ((i, socket), shard_listeners) in sockets.into_iter().enumerate().zip(listeners) {
        let (shared, counters, stop) = (shared.clone(), counters.clone(), stop.clone());
        let shard_tls = tls.clone();
        let shard_tls_client = tls_client.clone();
        let shard_tls_names = tls_names.clone();
        let origins = cfg.ws_origins.clone();
        let core = cores.get(i % cores.len().max(1)).copied();
        let location = locations.remove(0);
        let side = (!sides.is_empty()).then(|| sides.remove(0));
        // A registrar gets mail (REGISTERs, replica updates), and so does
        // a shard with connections (their responses, from other shards):
        // only they wait on their doorbell.
        let wake =
            (registrar_on || !shard_listeners.is_empty()).then(|| shared.inboxes[i].wake_fd());
        let t = std::thread::Builder::new()
            .name(format!("shard-{i}"))
            .spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                // Buffers are allocated on the shard's own thread (and so,
                // with mimalloc, from its own heap).
                let mut shard = Shard::new(i, &shared, &counters[i], location);
                if let Some(side) = side {
                    shard.set_cluster(side);
                }
                // Every shard can open connections to next hops, so every
                // shard has its streams, idle (and not polled) until used.
                let streams =
                    Streams::new(i as u8, shard_listeners, max_conns, max_message).map(|mut s| {
                        s.set_deadlines(deadlines);
                        s.set_max_write_queue(max_write_queue);
                        s.set_max_per_ip(max_per_ip);
                        s.set_ws_origins(origins);
                        if let Some(t) = shard_tls {
                            s.set_tls(t);
                        }
                        if let Some(c) = shard_tls_client {
                            s.set_tls_client(c);
                        }
                        s.set_tls_names(shard_tls_names);
                        Some(s)
                    });
                let result = streams.and_then(|streams| {
                    if use_uring {
                        Uring::with_wake(socket, wake)
                            .and_then(|io| shard::run(io, streams, &mut shard, &stop))
                    } else {
                        let mut io = Mmsg::new(socket);
                        if let Some(fd) = wake {
                            io = io.with_wake(fd);
                        }
                        shard::run(io, streams, &mut shard, &stop)
                    }
                });
                if result.is_err() {
                    // One shard failing stops the server rather than
                    // leaving it half alive.
                    stop.store(true, Ordering::Relaxed);
                }
                result
            })
            .map_err(StartupError::Spawn)?;
        threads.push(t);
    }
    let probe = match (cfg.probe_interval, cfg.upstreams.is_empty()) {
        (Some(interval), false) => Some(ProbeConfig {
            upstreams: shared.proxy.upstreams.clone(),
            interval,
            threshold: cfg.probe_threshold,
            advertise: shared.proxy.advertise,
        }),
        _ => None,
    };
    Ok(Server {
        bound,
        stream_bound,
        tls,
        shared,
        registrar_note,
        recovery,
        counters,
        warnings,
        backend: if use_uring { "uring" } else { "mmsg" },
        backend_note,
        steer,
        stop,
        threads,
        probe,
        prober: None,
        cluster_note,
        cluster,
    })
}

/// The Call-ID steering program, loaded, when `--steer call-id` can
/// apply: more than one shard and a CPU for each. Loaded before anything
/// else at start-up: verification takes most of a second, and the
/// io_uring probe leaves signal work pending that interrupts it (EAGAIN,
/// so it would be verified twice). A refusal is a warning, and `flow`.
fn load_steering(cfg: &Config, warnings: &mut Vec<String>) -> Result<OwnedFd, Steer> {
    if cfg.steer != Steer::CallId {
        return Err(cfg.steer);
    }
    // One shard: nothing to steer, no program; the banner says flow, the
    // kernel's (trivial) choice in force, rather than call-id.
    if cfg.shards < 2 {
        return Err(Steer::Flow);
    }
    // Spreading one peer over shards that share a CPU makes the kernel
    // switch threads for almost every datagram: 2 shards on one CPU cost
    // 3x the CPU per message of flow and stalled up to 900 ms
    // (perf/RESULTS.md). Only where each shard can have a CPU.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cfg.shards > cpus {
        warnings.push(format!(
            "--steer call-id needs a CPU per shard ({} shards, {cpus} CPU(s) allowed): using flow",
            cfg.shards
        ));
        return Err(Steer::Flow);
    }
    steering::load_call_id(cfg.shards as u32).map_err(|e| {
        warnings.push(format!("--steer call-id unavailable ({e}): using flow"));
        Steer::Flow
    })
}

/// Attaches the loaded program to every listen address's socket group;
/// the steering in force. Refused anywhere means `flow` everywhere, with
/// a warning that says why: one rule for every address is easier to
/// reason about than a mix.
fn attach_steering(
    prog: Result<OwnedFd, Steer>,
    shards: usize,
    sockets: &[std::net::UdpSocket],
    warnings: &mut Vec<String>,
) -> Steer {
    let prog = match prog {
        Ok(prog) => prog,
        Err(steer) => return steer,
    };
    // Shard sockets are bound address by address, in shard order, which
    // is the order of the reuseport group the program's index counts in.
    let attached = sockets
        .chunks(shards)
        .try_for_each(|group| steering::attach(&group[0], &prog));
    if let Err(e) = attached {
        warnings.push(format!("--steer call-id unavailable ({e}): using flow"));
        for group in sockets.chunks(shards) {
            // Detaching restores the kernel's 4-tuple hash.
            steering::detach(&group[0]);
        }
        return Steer::Flow;
    }
    Steer::CallId
}

/// What [`locations`] returns.
struct Locations {
    /// Every shard's location state.
    shards: Vec<Owner>,
    /// The banner's note about the registrar.
    note: Option<String>,
    /// What `--state-dir` gave back.
    recovery: Option<Recovery>,
}

/// Every shard's location state at start: empty, or rebuilt from
/// `--state-dir` (expired bindings dropped, every record on every replica,
/// each owner with its wheel entries and its log). Also the banner's note
/// and what was recovered.
fn locations(cfg: &Config, shards: usize, now: u64) -> Result<Locations, StartupError> {
    let fsync = match cfg.fsync {
        FsyncPolicy::Always => Fsync::Always,
        FsyncPolicy::Interval => Fsync::Interval,
        FsyncPolicy::Never => Fsync::Never,
    };
    let Some(dir) = &cfg.state_dir else {
        let note = (!cfg.domains.is_empty()).then(|| match cfg.cluster {
            Some(_) => "registrations are kept in memory and in Redis (--cluster); a restarted \
                        node loads them from there"
                .to_string(),
            None => {
                "registrations are kept in memory only (a restart forgets them; see --state-dir)"
                    .to_string()
            }
        });
        let locs = (0..shards)
            .map(|i| cfg.registrar.owner(i, shards, now, None))
            .collect();
        return Ok(Locations {
            shards: locs,
            note,
            recovery: None,
        });
    };
    let state_err = |source| StartupError::State {
        dir: dir.clone(),
        source,
    };
    let (records, report) = store::load(dir).map_err(state_err)?;
    let mut by_owner: Vec<Vec<AorRecord>> = vec![Vec::new(); shards];
    let mut bindings = 0;
    let mut expired = 0;
    for rec in records {
        let live: Vec<_> = rec
            .bindings()
            .filter(|b| b.expires_at > now)
            .map(|b| b.to_binding())
            .collect();
        expired += rec.bindings().count() - live.len();
        if live.is_empty() {
            continue;
        }
        bindings += live.len();
        let owner = owner_of(rec.aor(), shards);
        by_owner[owner].push(AorRecord::new(rec.aor(), &live));
    }
    let stores: Vec<Store> = store::adopt(dir, fsync, &by_owner).map_err(state_err)?;
    let mut locs: Vec<Owner> = stores
        .into_iter()
        .enumerate()
        .map(|(i, st)| cfg.registrar.owner(i, shards, now, Some(st)))
        .collect();
    let aors: usize = by_owner.iter().map(Vec::len).sum();
    for (owner, recs) in by_owner.into_iter().enumerate() {
        for rec in recs {
            for (i, loc) in locs.iter_mut().enumerate() {
                if i == owner {
                    loc.adopt(rec.clone(), now);
                } else {
                    loc.replica.apply(LocationOp::Set(rec.clone()));
                }
            }
        }
    }
    let mut note = format!(
        "registrations kept in {} (fsync {}): loaded {aors} AOR(s), {bindings} live binding(s) from {} file(s)",
        dir.display(),
        format!("{:?}", cfg.fsync).to_lowercase(),
        report.files,
    );
    if report.torn_tails > 0 {
        note += &format!(", {} torn log tail(s) skipped", report.torn_tails);
    }
    if report.upgraded > 0 {
        note += &format!(
            ", {} file(s) of an older format rewritten in today's",
            report.upgraded
        );
    }
    let recovery = Recovery {
        files: report.files,
        entries: report.entries,
        torn_tails: report.torn_tails,
        aors,
        bindings,
        expired,
    };
    Ok(Locations {
        shards: locs,
        note: Some(note),
        recovery: Some(recovery),
    })
}

impl Server {
    /// The flag that stops the shards; signal handlers set it.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Starts the upstream prober, if `--probe-interval` asks for one:
    /// after the start-up lines, which its log lines must not come
    /// before.
    pub fn start_probing(&mut self) -> Result<(), StartupError> {
        if let (Some(cfg), None) = (self.probe.clone(), &self.prober) {
            let t = probe::start(cfg, self.shared.proxy.health.clone(), self.stop.clone())
                .map_err(StartupError::Spawn)?;
            self.prober = Some(t);
        }
        Ok(())
    }

    /// Starts the cluster link's threads (`--cluster`): after the
    /// start-up lines, which their log lines must not come before.
    pub fn start_cluster(&mut self) -> Result<(), StartupError> {
        if let Some(link) = &mut self.cluster {
            link.start().map_err(StartupError::Spawn)?;
        }
        Ok(())
    }

    /// Number of shard threads.
    pub fn shards(&self) -> usize {
        self.threads.len()
    }

    /// Waits for every shard to finish (after the stop flag is set, or
    /// after one fails); returns the first error.
    pub fn join(self) -> io::Result<()> {
        // The prober is not waited for: a TCP probe may sit in its
        // connect for up to an interval, and it holds nothing that needs
        // flushing. It stops at its next look at the flag, or with the
        // process.
        drop(self.prober);
        let mut first = Ok(());
        let link = self.cluster;
        for t in self.threads {
            let r = t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a shard panicked")));
            if first.is_ok() {
                first = r;
            }
        }
        // After the shards: the writer sends what they queued last.
        if let Some(link) = link {
            link.join();
        }
        first
    }
}
