//! Start-up and shutdown: bind every shard's socket, spawn the shards
//! (pinned when asked), and stop them on request. `main.rs` only reports.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_utils::CachePadded;

use crate::cli::{IoChoice, Steer};
use crate::config::Config;
use crate::io::mmsg::Mmsg;
use crate::io::socket::bind_shard_socket;
use crate::io::uring::{self, Uring};
use crate::proxy::ProxyConfig;
use crate::shard::{self, counters::ShardCounters};

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
        }
    }
}

impl std::error::Error for StartupError {}

/// A running server.
pub struct Server {
    /// The listen addresses as bound (port 0 resolved).
    pub bound: Vec<SocketAddr>,
    /// What the shards route with.
    pub proxy: Arc<ProxyConfig>,
    /// Every shard's counters.
    pub counters: Arc<Vec<CachePadded<ShardCounters>>>,
    /// Notes for the start-up banner (buffer clamps, guessed --advertise).
    pub warnings: Vec<String>,
    /// The backend the shards run: "uring" or "mmsg".
    pub backend: &'static str,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

/// Binds and starts `cfg.shards` shards per listen address.
pub fn start(cfg: &Config) -> Result<Server, StartupError> {
    // The one place the backend is chosen.
    let mut warnings = Vec::new();
    let use_uring = match cfg.io {
        IoChoice::Mmsg => false,
        IoChoice::Uring => {
            uring::probe().map_err(StartupError::Uring)?;
            true
        }
        IoChoice::Auto => match uring::probe() {
            Ok(()) => true,
            Err(e) => {
                warnings.push(format!("io_uring refused ({e}): using mmsg"));
                false
            }
        },
    };
    let mut sockets = Vec::new();
    let mut bound = Vec::new();
    for &want in &cfg.listen {
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
        }
        bound.push(addr);
    }
    warnings.dedup();
    let (proxy, warning) = cfg.proxy_config(&bound);
    warnings.extend(warning);
    let proxy = Arc::new(proxy);
    let counters: Arc<Vec<CachePadded<ShardCounters>>> = Arc::new(
        (0..sockets.len())
            .map(|_| CachePadded::new(ShardCounters::default()))
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let cores = if cfg.pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut threads = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let (proxy, counters, stop) = (proxy.clone(), counters.clone(), stop.clone());
        let core = cores.get(i % cores.len().max(1)).copied();
        let t = std::thread::Builder::new()
            .name(format!("shard-{i}"))
            .spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                // Buffers are allocated on the shard's own thread (and so,
                // with mimalloc, from its own heap).
                let result = if use_uring {
                    Uring::new(socket).and_then(|io| shard::run(io, &proxy, &counters[i], &stop))
                } else {
                    shard::run(Mmsg::new(socket), &proxy, &counters[i], &stop)
                };
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
    Ok(Server {
        bound,
        proxy,
        counters,
        warnings,
        backend: if use_uring { "uring" } else { "mmsg" },
        stop,
        threads,
    })
}

impl Server {
    /// The flag that stops the shards; signal handlers set it.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Number of shard threads.
    pub fn shards(&self) -> usize {
        self.threads.len()
    }

    /// Waits for every shard to finish (after the stop flag is set, or
    /// after one fails); returns the first error.
    pub fn join(self) -> io::Result<()> {
        let mut first = Ok(());
        for t in self.threads {
            let r = t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a shard panicked")));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}
