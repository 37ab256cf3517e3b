//! Flags -> a validated [`Config`]. No I/O happens after this point that a
//! flag could have prevented.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use crate::admit::guard::Guard;
use crate::cli::{Args, FsyncPolicy, IoChoice, Mode, OverContacts, Steer, TlsVerifyClient};
use crate::io::socket::SocketOptions;
use crate::io::stream::Deadlines;
use crate::proxy::conn_param::ConnKey;
use crate::proxy::{Health, ProxyConfig};
use crate::registrar::{OverLimit, RegistrarConfig};
use crate::sip::Host;
use crate::transaction::{Durations, TransactionConfig};
use crate::transport::tls::{TlsSettings, VerifyClient};
use crate::transport::{Transport, TransportAddr, UpstreamAddr};

/// Everything the server needs, checked.
#[derive(Clone, Debug)]
pub struct Config {
    /// UDP addresses to bind (port 0 resolved at bind time): one shard
    /// group each.
    pub listen: Vec<SocketAddr>,
    /// Stream listen addresses, which every shard binds too.
    pub stream_listen: Vec<(Transport, SocketAddr)>,
    /// Most connections per shard.
    pub max_connections_per_shard: usize,
    /// Most connections accepted from one IP address per shard; 0: no
    /// limit.
    pub max_connections_per_ip_per_shard: usize,
    /// How long a connection may take at each stage (the
    /// `--tcp-*-timeout` flags).
    pub stream_deadlines: Deadlines,
    /// Bytes a connection may have waiting for the kernel.
    pub max_write_queue: usize,
    /// Origins a WebSocket handshake may come from; empty: any.
    pub ws_origins: Vec<String>,
    /// Roots for outbound TLS (`--tls-ca`); None: the system's.
    pub tls_ca: Option<std::path::PathBuf>,
    /// The certificate chain and key shown to next hops that ask for a
    /// client certificate (`--tls-client-cert`, `--tls-client-key`); None:
    /// the server's (`tls`), if any.
    pub tls_client_identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Explicit --advertise addresses, at most one per IP family; the
    /// first is the one named by default.
    pub advertise: Vec<SocketAddr>,
    /// Upstreams for requests with no IP next hop, names resolved.
    pub upstreams: Vec<Upstream>,
    /// Probe the upstreams this often (`--probe-interval`); None: never.
    pub probe_interval: Option<std::time::Duration>,
    /// Probes missed in a row that take an upstream out
    /// (`--probe-threshold`).
    pub probe_threshold: u32,
    /// Add Record-Route.
    pub record_route: bool,
    /// Shards per listen address.
    pub shards: usize,
    /// Pin shards to CPUs.
    pub pin: bool,
    /// I/O backend choice.
    pub io: IoChoice,
    /// Spreading of traffic over shards.
    pub steer: Steer,
    /// Socket options.
    pub socket: SocketOptions,
    /// Local domains (`--domain`), lower case; empty: no registrar.
    pub domains: Vec<Box<[u8]>>,
    /// Proxy or redirect for users of local domains.
    pub mode: Mode,
    /// The transaction layer's settings under `--mode stateful`.
    pub transactions: Option<TransactionConfig>,
    /// The registrar's limits.
    pub registrar: RegistrarConfig,
    /// Route to the registered source address (`--nat`).
    pub nat: bool,
    /// Where registrations persist (`--state-dir`).
    pub state_dir: Option<std::path::PathBuf>,
    /// When the registration log is synced.
    pub fsync: FsyncPolicy,
    /// The location service shared through Redis (`--cluster`), when on.
    pub cluster: Option<ClusterSettings>,
    /// Access control and size limits.
    pub guard: Guard,
    /// Digest authentication settings (`--auth-file`), when on.
    pub auth: Option<AuthSettings>,
    /// TLS settings (`--tls-cert` and the flags beside it), when
    /// `--tls-cert` is given; the files are read when the server starts.
    pub tls: Option<TlsSettings>,
}

/// `--cluster` and the flags beside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The Redis URL.
    pub url: String,
    /// `--node-id`, or the host name.
    pub node_id: String,
    /// `--node-addr`; None: the first UDP listen address.
    pub node_addr: Option<SocketAddr>,
    /// `--cluster-queue`.
    pub queue: usize,
    /// `--cluster-stream-max`.
    pub stream_max: usize,
    /// `--cluster-prefix`.
    pub prefix: String,
    /// `--cluster-ca`: roots for `rediss://`, else the system's.
    pub ca: Option<std::path::PathBuf>,
}

/// The URL with its password, if any, replaced by `***` (for logs).
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

/// `--cluster` and its flags, checked.
fn cluster_settings(args: &Args) -> Result<Option<ClusterSettings>, ConfigError> {
    let Some(url) = &args.cluster else {
        return Ok(None);
    };
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(ConfigError::Cluster(format!(
            "--cluster {}: a redis:// or rediss:// URL",
            redacted_url(url)
        )));
    }
    let node_id = match &args.node_id {
        Some(id) => id.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
    };
    let good = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if node_id.is_empty() || node_id.len() > 64 || !node_id.chars().all(good) {
        return Err(ConfigError::Cluster(format!(
            "--node-id {node_id:?}: 1 to 64 letters, digits, '.', '_' or '-'"
        )));
    }
    if let Some(a) = args.node_addr {
        if a.ip().is_unspecified() || a.port() == 0 {
            return Err(ConfigError::Cluster(format!(
                "--node-addr {a}: an address other nodes can send to"
            )));
        }
    }
    let prefix = &args.cluster_prefix;
    if prefix.is_empty() || prefix.contains(char::is_whitespace) {
        return Err(ConfigError::Cluster(
            "--cluster-prefix: a word without spaces".to_string(),
        ));
    }
    if args.cluster_queue == 0 || args.cluster_stream_max == 0 {
        return Err(ConfigError::Cluster(
            "--cluster-queue and --cluster-stream-max must be above 0".to_string(),
        ));
    }
    Ok(Some(ClusterSettings {
        url: url.clone(),
        node_id,
        node_addr: args.node_addr,
        queue: args.cluster_queue,
        stream_max: args.cluster_stream_max,
        prefix: prefix.clone(),
        ca: args.cluster_ca.clone(),
    }))
}

/// An `--upstream`, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// Where it is reached, and over what.
    pub dest: TransportAddr,
    /// The DNS name it was given as, if any: over TLS, its certificate is
    /// checked against this name rather than the address.
    pub name: Option<String>,
}

impl fmt::Display for Upstream {
    /// As written on the command line (UDP bare), and where a name
    /// resolved to.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = match self.dest.transport {
            Transport::Udp => String::new(),
            t => format!("{}:", t.via_token().to_ascii_lowercase()),
        };
        match &self.name {
            None => write!(f, "{prefix}{}", self.dest.addr),
            Some(name) => write!(
                f,
                "{prefix}{name}:{} (resolved to {})",
                self.dest.addr.port(),
                self.dest.addr
            ),
        }
    }
}

/// A resolver: a host's addresses for a port, in the order to try them.
type Lookup<'a> = &'a dyn Fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>;

/// The system resolver (getaddrinfo: /etc/hosts, then DNS A and AAAA as
/// nsswitch.conf says), in the order it gives (RFC 6724 sorting).
fn system_lookup(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

/// What `--auth-file`, `--auth-invite` and `--nonce-ttl` ask for; the file
/// is read when the server starts.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// The credentials file.
    pub file: std::path::PathBuf,
    /// Challenge initial INVITEs from local users too.
    pub invite: bool,
    /// Nonce lifetime in seconds.
    pub nonce_ttl: u32,
    /// Algorithms offered, in order.
    pub algorithms: Vec<crate::auth::Algorithm>,
    /// `--auth-fail-limit` (per minute) and the ban in ms; None: off.
    pub failure_limit: Option<(u32, u64)>,
}

/// A flag combination that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `--shards 0`, or more than the limit.
    Shards(usize),
    /// No --listen address.
    NoListen,
    /// Stream listens with no UDP one: each shard runs on its UDP socket.
    NoUdpListen,
    /// `--max-connections 0`.
    MaxConnections,
    /// A `--tcp-*-timeout` of 0: the flag.
    ZeroTimeout(&'static str),
    /// `--max-write-queue` below `--max-message-size`: both.
    WriteQueue(usize, usize),
    /// An --upstream over a transport we cannot open yet.
    UpstreamTransport(UpstreamAddr),
    /// An --upstream whose name did not resolve: why.
    UpstreamUnresolved(UpstreamAddr, String),
    /// Two --upstreams at one address over TLS with different names (or
    /// a name and none) to check the certificate against: a connection
    /// is checked against one.
    UpstreamNames(UpstreamAddr, UpstreamAddr, SocketAddr),
    /// More than 256 shards in all with a stream listen.
    StreamShards(usize),
    /// An --advertise address that is a wildcard (0.0.0.0, ::) or port 0.
    Advertise(SocketAddr),
    /// Two --advertise addresses of one IP family.
    AdvertiseFamily(SocketAddr, SocketAddr),
    /// A --domain that is not a host name or address.
    Domain(String),
    /// Registrar limits that contradict each other.
    Expires(&'static str),
    /// A registrar flag given without --domain.
    NeedsDomain(&'static str),
    /// A `--cluster` flag that does not hold, and why.
    Cluster(String),
    /// `--max-message-size` outside 512 to the receive buffer.
    MaxMessageSize(usize),
    /// A TLS flag (named) given without --tls-cert.
    TlsNeedsCert(&'static str),
    /// --tls-cert without --tls-key.
    TlsNeedsKey,
    /// --tls-verify-client optional or required without --tls-client-ca.
    TlsNeedsClientCa(VerifyClient),
    /// --tls-client-ca with --tls-verify-client none: it would be ignored.
    TlsClientCaUnused,
    /// A tls: or wss: listen without a certificate to serve.
    TlsListenNeedsCert(TransportAddr),
    /// One of --tls-client-cert and --tls-client-key without the other:
    /// the flag given, and the one missing.
    TlsClientPair(&'static str, &'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Shards(n) => write!(f, "--shards {n}: give 1 to {MAX_SHARDS}"),
            ConfigError::NoListen => f.write_str("no --listen address"),
            ConfigError::NoUdpListen => f.write_str(
                "--listen: a tcp, tls, ws or wss listen needs a udp one beside it (each \
                 shard runs on its UDP socket, which sends what leaves over UDP)",
            ),
            ConfigError::MaxConnections => f.write_str("--max-connections 0: give at least 1"),
            ConfigError::ZeroTimeout(flag) => write!(f, "{flag} 0: give at least 1 second"),
            ConfigError::WriteQueue(queue, message) => write!(
                f,
                "--max-write-queue {queue}: below --max-message-size {message}, one answer \
                 could not be queued"
            ),
            ConfigError::UpstreamTransport(u) => write!(
                f,
                "--upstream {u}: upstreams are udp, tcp or tls (a WebSocket server is \
                 not a next hop)"
            ),
            ConfigError::UpstreamUnresolved(u, why) => {
                let host = match u {
                    UpstreamAddr::Name { host, .. } => host.as_str(),
                    UpstreamAddr::Addr(_) => "",
                };
                write!(
                    f,
                    "--upstream {u}: cannot resolve {host:?} ({why}); give a name the \
                     system resolver knows (A or AAAA) or an IP address"
                )
            }
            ConfigError::UpstreamNames(a, b, addr) => write!(
                f,
                "--upstream {a} and --upstream {b} are both {addr} over tls: one \
                 connection serves both, and its certificate can be checked against \
                 one name; give one of them"
            ),
            ConfigError::StreamShards(n) => write!(
                f,
                "{n} shards in all (--shards times the udp listens): a server with tcp \
                 listens runs at most 256"
            ),
            ConfigError::Advertise(a) => {
                write!(
                    f,
                    "--advertise {a}: give the concrete address and port peers reach"
                )
            }
            ConfigError::AdvertiseFamily(a, b) => write!(
                f,
                "--advertise {a} and --advertise {b}: give at most one address per IP family"
            ),
            ConfigError::Domain(d) => write!(f, "--domain {d:?}: give a host name or address"),
            ConfigError::Expires(why) => f.write_str(why),
            ConfigError::MaxMessageSize(n) => write!(
                f,
                "--max-message-size {n}: give 512 to {} bytes",
                crate::io::RECV_SLOT
            ),
            ConfigError::TlsNeedsCert(flag) => write!(
                f,
                "{flag} needs --tls-cert (and --tls-key): the TLS settings hang on the \
                 server certificate"
            ),
            ConfigError::TlsNeedsKey => {
                f.write_str("--tls-cert needs --tls-key, the certificate's private key")
            }
            ConfigError::TlsNeedsClientCa(v) => write!(
                f,
                "--tls-verify-client {v}: needs --tls-client-ca, the CAs that client \
                 certificates must chain to"
            ),
            ConfigError::TlsClientCaUnused => f.write_str(
                "--tls-client-ca needs --tls-verify-client optional or required (with none, \
                 clients are never asked for a certificate)",
            ),
            ConfigError::TlsListenNeedsCert(spec) => write!(
                f,
                "--listen {spec}: needs --tls-cert and --tls-key, the certificate to serve"
            ),
            ConfigError::TlsClientPair(given, missing) => write!(
                f,
                "{given} needs {missing}: give the client certificate and its key together, \
                 or neither (next hops then see --tls-cert, if any)"
            ),
            ConfigError::NeedsDomain(flag) => {
                write!(
                    f,
                    "{flag} needs --domain (the server is a registrar only for its domains)"
                )
            }
            ConfigError::Cluster(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ConfigError {}

/// `list` without repeats, in first-seen order.
fn dedup<T: PartialEq + Copy>(list: &[T]) -> Vec<T> {
    let mut out = Vec::new();
    for &x in list {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// More shards than this is a typo, not a machine.
pub const MAX_SHARDS: usize = 1024;

/// The TLS flags, checked: a certificate needs its key, client
/// verification needs client CAs and the reverse, and a tls: or wss:
/// listen needs a certificate. None when no --tls-cert is given. The
/// files are not read here (the server reads them at start-up and on
/// reload). `Config::from_args` refuses wss: listens before this runs
/// until they are served (issue #14).
fn tls_settings(args: &Args) -> Result<Option<TlsSettings>, ConfigError> {
    let Some(cert) = &args.tls_cert else {
        let tls_listen = args
            .listen
            .iter()
            .find(|l| matches!(l.transport, Transport::Tls | Transport::Wss));
        if let Some(spec) = tls_listen {
            return Err(ConfigError::TlsListenNeedsCert(*spec));
        }
        let given = [
            ("--tls-key", args.tls_key.is_some()),
            ("--tls-client-ca", args.tls_client_ca.is_some()),
            (
                "--tls-verify-client",
                args.tls_verify_client != TlsVerifyClient::None,
            ),
        ];
        return match given.iter().find(|(_, set)| *set) {
            Some((flag, _)) => Err(ConfigError::TlsNeedsCert(flag)),
            None => Ok(None),
        };
    };
    let Some(key) = &args.tls_key else {
        return Err(ConfigError::TlsNeedsKey);
    };
    let verify_client = match args.tls_verify_client {
        TlsVerifyClient::None => VerifyClient::None,
        TlsVerifyClient::Optional => VerifyClient::Optional,
        TlsVerifyClient::Required => VerifyClient::Required,
    };
    match (verify_client, &args.tls_client_ca) {
        (VerifyClient::None, Some(_)) => return Err(ConfigError::TlsClientCaUnused),
        (v @ (VerifyClient::Optional | VerifyClient::Required), None) => {
            return Err(ConfigError::TlsNeedsClientCa(v))
        }
        _ => {}
    }
    Ok(Some(TlsSettings {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: args.tls_client_ca.clone(),
        verify_client,
        ca: args.tls_ca.clone(),
    }))
}

/// The client certificate and key for outbound TLS: both flags or
/// neither, so that a forgotten key is a message here rather than a
/// server that quietly shows --tls-cert instead.
fn tls_client_identity(
    args: &Args,
) -> Result<Option<(std::path::PathBuf, std::path::PathBuf)>, ConfigError> {
    match (&args.tls_client_cert, &args.tls_client_key) {
        (Some(cert), Some(key)) => Ok(Some((cert.clone(), key.clone()))),
        (Some(_), None) => Err(ConfigError::TlsClientPair(
            "--tls-client-cert",
            "--tls-client-key",
        )),
        (None, Some(_)) => Err(ConfigError::TlsClientPair(
            "--tls-client-key",
            "--tls-client-cert",
        )),
        (None, None) => Ok(None),
    }
}

/// The upstreams with their names resolved by `lookup`, once: the first
/// address it gives is used (no SRV or NAPTR, no failover to the others),
/// so that every shard and every dialog see one fixed next hop. A name
/// that does not resolve is refused, with the flag; so are two names (or
/// a name and an address) that land on one address over TLS, where one
/// connection would have to be checked against both.
fn resolve_upstreams(
    list: &[UpstreamAddr],
    lookup: Lookup<'_>,
) -> Result<Vec<Upstream>, ConfigError> {
    let mut out: Vec<Upstream> = Vec::with_capacity(list.len());
    for (i, u) in list.iter().enumerate() {
        let resolved = match u {
            UpstreamAddr::Addr(dest) => Upstream {
                dest: *dest,
                name: None,
            },
            UpstreamAddr::Name {
                transport,
                host,
                port,
            } => {
                let first = lookup(host, *port)
                    .map_err(|e| ConfigError::UpstreamUnresolved(u.clone(), e.to_string()))?
                    .into_iter()
                    .next()
                    .ok_or_else(|| {
                        ConfigError::UpstreamUnresolved(u.clone(), "no address".to_string())
                    })?;
                Upstream {
                    dest: TransportAddr {
                        transport: *transport,
                        addr: first,
                    },
                    name: Some(host.clone()),
                }
            }
        };
        let clash = out.iter().position(|o| {
            o.dest == resolved.dest
                && o.dest.transport == Transport::Tls
                && o.name.as_deref().map(str::to_ascii_lowercase)
                    != resolved.name.as_deref().map(str::to_ascii_lowercase)
        });
        if let Some(j) = clash {
            return Err(ConfigError::UpstreamNames(
                list[j].clone(),
                list[i].clone(),
                resolved.dest.addr,
            ));
        }
        out.push(resolved);
    }
    Ok(out)
}

impl Config {
    /// Checks the flags.
    pub fn from_args(args: &Args) -> Result<Config, ConfigError> {
        let shards = args
            .shards
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if shards == 0 || shards > MAX_SHARDS {
            return Err(ConfigError::Shards(shards));
        }
        if args.listen.is_empty() {
            return Err(ConfigError::NoListen);
        }
        if !args.listen.iter().any(|l| l.transport == Transport::Udp) {
            return Err(ConfigError::NoUdpListen);
        }
        if let Some(u) = args.upstream.iter().find(|u| {
            !matches!(
                u.transport(),
                Transport::Udp | Transport::Tcp | Transport::Tls
            )
        }) {
            return Err(ConfigError::UpstreamTransport(u.clone()));
        }
        if args.max_connections == 0 {
            return Err(ConfigError::MaxConnections);
        }
        for (flag, secs) in [
            ("--tcp-idle-timeout", args.tcp_idle_timeout),
            ("--tcp-handshake-timeout", args.tcp_handshake_timeout),
            ("--tcp-first-byte-timeout", args.tcp_first_byte_timeout),
            ("--tcp-message-timeout", args.tcp_message_timeout),
        ] {
            if secs == 0 {
                return Err(ConfigError::ZeroTimeout(flag));
            }
        }
        if args.max_write_queue < args.max_message_size {
            return Err(ConfigError::WriteQueue(
                args.max_write_queue,
                args.max_message_size,
            ));
        }
        // A connection id names its shard in 8 bits.
        let udp_listens = args
            .listen
            .iter()
            .filter(|l| l.transport == Transport::Udp)
            .count();
        let has_streams = args.listen.iter().any(|l| l.transport.is_stream());
        if has_streams && shards * udp_listens > 256 {
            return Err(ConfigError::StreamShards(shards * udp_listens));
        }
        for (i, &a) in args.advertise.iter().enumerate() {
            if a.ip().is_unspecified() || a.port() == 0 {
                return Err(ConfigError::Advertise(a));
            }
            if let Some(&b) = args.advertise[..i]
                .iter()
                .find(|b| b.is_ipv4() == a.is_ipv4())
            {
                return Err(ConfigError::AdvertiseFamily(b, a));
            }
        }
        let mut domains = Vec::new();
        for d in &args.domain {
            let d = d.trim();
            if d.is_empty() || d.len() > 255 || Host::parse(d.as_bytes()).is_err() {
                return Err(ConfigError::Domain(d.to_string()));
            }
            domains.push(d.to_ascii_lowercase().into_bytes().into_boxed_slice());
        }
        if domains.is_empty() {
            if args.mode == Mode::Redirect {
                return Err(ConfigError::NeedsDomain("--mode redirect"));
            }
            if args.state_dir.is_some() {
                return Err(ConfigError::NeedsDomain("--state-dir"));
            }
            if args.auth_file.is_some() {
                return Err(ConfigError::NeedsDomain("--auth-file"));
            }
            if args.cluster.is_some() {
                return Err(ConfigError::NeedsDomain("--cluster"));
            }
        }
        let cluster = cluster_settings(args)?;
        if args.t1 == 0 || args.t2 < args.t1 || args.t4 == 0 {
            return Err(ConfigError::Expires(
                "--t1 and --t4 must be above 0 and --t2 at least --t1",
            ));
        }
        if args.fr_timeout == Some(0) || args.fr_inv_timeout == 0 {
            return Err(ConfigError::Expires(
                "--fr-timeout and --fr-inv-timeout must be above 0",
            ));
        }
        if args.max_transactions == 0 {
            return Err(ConfigError::Expires("--max-transactions must be above 0"));
        }
        if args.auth_invite && args.auth_file.is_none() {
            return Err(ConfigError::Expires("--auth-invite needs --auth-file"));
        }
        if args.auth_fail_limit > 0 && args.auth_file.is_none() {
            return Err(ConfigError::Expires("--auth-fail-limit needs --auth-file"));
        }
        if args.nonce_ttl == 0 {
            return Err(ConfigError::Expires(
                "--nonce-ttl must be at least 1 second",
            ));
        }
        if args.min_expires > args.max_expires {
            return Err(ConfigError::Expires("--min-expires is above --max-expires"));
        }
        if args.default_expires < args.min_expires || args.default_expires > args.max_expires {
            return Err(ConfigError::Expires(
                "--default-expires must lie between --min-expires and --max-expires",
            ));
        }
        if !(512..=crate::io::RECV_SLOT).contains(&args.max_message_size) {
            return Err(ConfigError::MaxMessageSize(args.max_message_size));
        }
        if args.max_contacts == 0 {
            return Err(ConfigError::Expires("--max-contacts must be at least 1"));
        }
        let tls = tls_settings(args)?;
        let tls_client_identity = tls_client_identity(args)?;
        // Last: the only check that may wait on the network.
        let upstreams = resolve_upstreams(&args.upstream, &system_lookup)?;
        Ok(Config {
            tls,
            domains,
            mode: args.mode,
            transactions: (args.mode == Mode::Stateful).then_some(TransactionConfig {
                durations: Durations {
                    t1: args.t1,
                    t2: args.t2,
                    t4: args.t4,
                },
                max_per_shard: args.max_transactions,
                fr_timeout_ms: args.fr_timeout,
                fr_inv_timeout_ms: args.fr_inv_timeout,
                max_failover: args.max_failover,
            }),
            registrar: RegistrarConfig {
                default_expires: args.default_expires,
                min_expires: args.min_expires,
                max_expires: args.max_expires,
                max_contacts: args.max_contacts,
                expected_aors: args.expected_aors,
                over_limit: match args.over_contacts {
                    OverContacts::DropOldest => OverLimit::DropOldest,
                    OverContacts::Reject => OverLimit::Reject,
                },
            },
            nat: args.nat,
            state_dir: args.state_dir.clone(),
            fsync: args.fsync,
            cluster,
            guard: Guard {
                allow: args.allow.clone(),
                deny: args.deny.clone(),
                max_message_size: args.max_message_size,
                drop_scanners: args.drop_scanners,
                rate: (args.rate_limit > 0).then(|| crate::admit::ratelimit::Limits {
                    per_second: args.rate_limit,
                    burst: args
                        .rate_burst
                        .unwrap_or(args.rate_limit.saturating_mul(2))
                        .max(1),
                    ban_ms: args.ban_time.saturating_mul(1000),
                }),
            },
            auth: args.auth_file.clone().map(|file| AuthSettings {
                file,
                invite: args.auth_invite,
                nonce_ttl: args.nonce_ttl,
                algorithms: dedup(&args.auth_algorithm),
                failure_limit: (args.auth_fail_limit > 0)
                    .then(|| (args.auth_fail_limit, args.ban_time.saturating_mul(1000))),
            }),
            listen: args
                .listen
                .iter()
                .filter(|l| l.transport == Transport::Udp)
                .map(|l| l.addr)
                .collect(),
            stream_listen: args
                .listen
                .iter()
                .filter(|l| l.transport != Transport::Udp)
                .map(|l| (l.transport, l.addr))
                .collect(),
            max_connections_per_shard: args.max_connections.div_ceil(shards),
            max_connections_per_ip_per_shard: args.max_connections_per_ip.div_ceil(shards),
            stream_deadlines: Deadlines {
                handshake: std::time::Duration::from_secs(args.tcp_handshake_timeout),
                first_byte: std::time::Duration::from_secs(args.tcp_first_byte_timeout),
                message: std::time::Duration::from_secs(args.tcp_message_timeout),
                idle: std::time::Duration::from_secs(args.tcp_idle_timeout),
            },
            max_write_queue: args.max_write_queue,
            ws_origins: args.ws_origin.clone(),
            tls_ca: args.tls_ca.clone(),
            tls_client_identity,
            advertise: args.advertise.clone(),
            upstreams,
            probe_interval: (args.probe_interval > 0)
                .then(|| std::time::Duration::from_secs(args.probe_interval)),
            probe_threshold: args.probe_threshold,
            record_route: args.record_route,
            shards,
            pin: args.pin,
            io: args.io,
            steer: args.steer,
            socket: SocketOptions {
                recv_buffer: (args.recv_buffer > 0).then_some(args.recv_buffer),
                send_buffer: (args.send_buffer > 0).then_some(args.send_buffer),
            },
        })
    }

    /// The proxy's view once the sockets are bound: `udp` and `streams`
    /// are the actual listen addresses (ports resolved). Returns the
    /// config and, when the advertised address had to be guessed, a
    /// warning for the banner.
    pub fn proxy_config(
        &self,
        udp: &[SocketAddr],
        streams: &[SocketAddr],
    ) -> (ProxyConfig, Option<String>) {
        let first = udp
            .first()
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060)));
        // With a wildcard and no --advertise, each message names the
        // address it arrived at (IP_PKTINFO); 127.0.0.1 stands in only
        // where no arrival address is known.
        let advertise_arrival = self.advertise.is_empty() && first.ip().is_unspecified();
        let (advertise, warning) = match self.advertise.first() {
            Some(&a) => (a, None),
            None if advertise_arrival => (
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), first.port()),
                Some(format!(
                    "listening on wildcard {first}: our Via and Record-Route name the address each request arrived at; set --advertise if peers reach us at another (behind NAT)"
                )),
            ),
            None => (first, None),
        };
        // Per family, what a request leaving for the other family than
        // it arrived on names: that family's --advertise, else its first
        // concrete UDP listen address.
        let of_family = |v4: bool| {
            let mut given = self.advertise.iter().chain(udp);
            given
                .find(|a| a.is_ipv4() == v4 && !a.ip().is_unspecified())
                .copied()
        };
        let advertise_of = [of_family(true), of_family(false)];
        // Wildcard binds name no host: only concrete addresses are "us".
        let mut local: Vec<SocketAddr> = udp
            .iter()
            .chain(streams)
            .copied()
            .filter(|a| !a.ip().is_unspecified())
            .collect();
        local.push(advertise);
        local.extend(advertise_of.iter().flatten());
        local.dedup();
        (
            ProxyConfig {
                advertise_of,
                advertise,
                local,
                upstreams: self.upstreams.iter().map(|u| u.dest).collect(),
                record_route: self.record_route,
                domains: self.domains.clone(),
                redirect: self.mode == Mode::Redirect,
                nat: self.nat,
                advertise_arrival,
                conn_key: ConnKey::default(),
                health: Arc::new(Health::new(self.upstreams.len())),
            },
            warning,
        )
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_cluster_url_is_logged_without_its_password() {
        assert_eq!(
            redacted_url("redis://:pw@10.0.0.9:6379/2"),
            "redis://***@10.0.0.9:6379/2"
        );
        assert_eq!(redacted_url("rediss://u:p@h:1"), "rediss://***@h:1");
        assert_eq!(redacted_url("redis://h:1"), "redis://h:1");
    }

    use super::*;
    use clap::Parser;

    fn cfg(args: &[&str]) -> Result<Config, ConfigError> {
        let mut v = vec!["sipshard"];
        v.extend_from_slice(args);
        Config::from_args(&Args::parse_from(v))
    }

    #[test]
    fn checks() {
        assert_eq!(cfg(&["--shards", "0"]).err(), Some(ConfigError::Shards(0)));
        assert!(matches!(
            cfg(&["--advertise", "0.0.0.0:5060"]),
            Err(ConfigError::Advertise(_))
        ));
        assert_eq!(cfg(&["--shards", "2"]).unwrap().shards, 2);
    }

    #[test]
    fn registrar_flags() {
        let c = cfg(&["--domain", "Example.COM", "--domain", "192.0.2.9"]).unwrap();
        assert_eq!(c.domains[0].as_ref(), b"example.com");
        assert_eq!(c.registrar.default_expires, 3600);
        assert!(matches!(
            cfg(&["--domain", "bad domain"]),
            Err(ConfigError::Domain(_))
        ));
        assert_eq!(
            cfg(&["--mode", "redirect"]).err(),
            Some(ConfigError::NeedsDomain("--mode redirect"))
        );
        assert!(matches!(
            cfg(&[
                "--domain",
                "a.example",
                "--min-expires",
                "100",
                "--max-expires",
                "50"
            ]),
            Err(ConfigError::Expires(_))
        ));
        assert!(matches!(
            cfg(&["--domain", "a.example", "--default-expires", "10"]),
            Err(ConfigError::Expires(_))
        ));
    }

    #[test]
    fn udp_listens_are_read_and_a_wss_one_needs_a_certificate() {
        let c = cfg(&["--listen", "udp:127.0.0.1:5070", "--listen", "[::1]:5071"]).unwrap();
        assert_eq!(
            c.listen,
            vec![
                "127.0.0.1:5070".parse::<SocketAddr>().unwrap(),
                "[::1]:5071".parse().unwrap()
            ]
        );
        let e = cfg(&[
            "--listen",
            "127.0.0.1:5060",
            "--listen",
            "wss:127.0.0.1:5061",
        ])
        .unwrap_err();
        assert!(matches!(e, ConfigError::TlsListenNeedsCert(s) if s.transport == Transport::Wss));
        assert!(e.to_string().contains("--listen wss:127.0.0.1:5061"), "{e}");
        let c = cfg(&[
            "--listen",
            "127.0.0.1:5060",
            "--listen",
            "ws:127.0.0.1:8080",
        ])
        .unwrap();
        assert_eq!(
            c.stream_listen,
            vec![(Transport::Ws, "127.0.0.1:8080".parse().unwrap())]
        );
    }

    #[test]
    fn tcp_listens_beside_udp_and_share_the_connection_limit() {
        let c = cfg(&[
            "--listen",
            "127.0.0.1:5060",
            "--listen",
            "tcp:127.0.0.1:5060",
            "--listen",
            "tcp:[::1]:5062",
            "--shards",
            "3",
            "--max-connections",
            "100",
        ])
        .unwrap();
        assert_eq!(
            c.listen,
            vec!["127.0.0.1:5060".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            c.stream_listen,
            vec![
                (Transport::Tcp, "127.0.0.1:5060".parse().unwrap()),
                (Transport::Tcp, "[::1]:5062".parse().unwrap())
            ]
        );
        assert_eq!(
            c.max_connections_per_shard, 34,
            "100 over 3 shards, rounded up"
        );
        assert_eq!(c.max_connections_per_ip_per_shard, 1366, "4096 over 3");
        let per_ip = |n: &str| {
            cfg(&["--shards", "2", "--max-connections-per-ip", n])
                .unwrap()
                .max_connections_per_ip_per_shard
        };
        assert_eq!((per_ip("0"), per_ip("1"), per_ip("5")), (0, 1, 3));
        assert_eq!(
            cfg(&["--listen", "tcp:127.0.0.1:5060"]).unwrap_err(),
            ConfigError::NoUdpListen
        );
        assert_eq!(
            cfg(&["--max-connections", "0"]).unwrap_err(),
            ConfigError::MaxConnections
        );
        for flag in [
            "--tcp-idle-timeout",
            "--tcp-handshake-timeout",
            "--tcp-first-byte-timeout",
            "--tcp-message-timeout",
        ] {
            assert_eq!(
                cfg(&[flag, "0"]).unwrap_err(),
                ConfigError::ZeroTimeout(flag)
            );
        }
        assert_eq!(c.stream_deadlines, Deadlines::default(), "the defaults");
        assert_eq!(c.max_write_queue, crate::io::stream::TX_LIMIT);
        let c = cfg(&[
            "--tcp-first-byte-timeout",
            "3",
            "--max-write-queue",
            "65536",
        ])
        .unwrap();
        assert_eq!(c.stream_deadlines.first_byte.as_secs(), 3);
        assert_eq!(c.max_write_queue, 65_536);
        assert_eq!(
            cfg(&["--max-write-queue", "4096"]).unwrap_err(),
            ConfigError::WriteQueue(4096, 8192)
        );
        let c = cfg(&[
            "--upstream",
            "tcp:192.0.2.1:5060",
            "--upstream",
            "192.0.2.2:5060",
        ])
        .unwrap();
        assert_eq!(c.upstreams[0].dest.transport, Transport::Tcp);
        assert_eq!(c.upstreams[1].dest.transport, Transport::Udp);
        let c = cfg(&["--upstream", "tls:192.0.2.1:5061", "--tls-ca", "roots.pem"]).unwrap();
        assert_eq!(c.upstreams[0].dest.transport, Transport::Tls);
        assert_eq!(
            c.tls_ca,
            Some("roots.pem".into()),
            "outbound TLS needs no certificate"
        );
        assert!(matches!(
            cfg(&["--upstream", "ws:192.0.2.1:80"]),
            Err(ConfigError::UpstreamTransport(_))
        ));
    }

    /// The `--upstream`s of these flags, resolved by `lookup`.
    fn upstreams(list: &[&str], lookup: Lookup<'_>) -> Result<Vec<Upstream>, ConfigError> {
        let parsed: Vec<UpstreamAddr> = list.iter().map(|u| u.parse().unwrap()).collect();
        resolve_upstreams(&parsed, lookup)
    }

    #[test]
    fn an_address_upstream_is_as_before_and_asks_no_resolver() {
        let never = |host: &str, _| panic!("{host} looked up");
        let got = upstreams(&["192.0.2.1:5060", "tls:[2001:db8::1]:5061"], &never).unwrap();
        let want: Vec<TransportAddr> = ["udp:192.0.2.1:5060", "tls:[2001:db8::1]:5061"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(got.iter().map(|u| u.dest).collect::<Vec<_>>(), want);
        assert!(got.iter().all(|u| u.name.is_none()));
        assert_eq!(got[0].to_string(), "192.0.2.1:5060", "udp bare, as before");
        assert_eq!(got[1].to_string(), "tls:[2001:db8::1]:5061");
        // What the proxy routes with is the address alone.
        let c = cfg(&["--upstream", "tcp:192.0.2.1:5060"]).unwrap();
        let (p, _) = c.proxy_config(&["127.0.0.1:5060".parse().unwrap()], &[]);
        assert_eq!(p.upstreams, vec!["tcp:192.0.2.1:5060".parse().unwrap()]);
    }

    #[test]
    fn a_name_is_resolved_once_to_its_first_address_and_kept() {
        let calls = std::cell::Cell::new(0);
        let two = |host: &str, port| {
            calls.set(calls.get() + 1);
            assert_eq!(host, "sbc.example.net");
            Ok(vec![
                SocketAddr::new("2001:db8::7".parse().unwrap(), port),
                SocketAddr::new("192.0.2.7".parse().unwrap(), port),
            ])
        };
        let got = upstreams(&["tls:sbc.example.net:5061"], &two).unwrap();
        assert_eq!(calls.get(), 1);
        assert_eq!(got[0].dest, "tls:[2001:db8::7]:5061".parse().unwrap());
        assert_eq!(got[0].name.as_deref(), Some("sbc.example.net"));
        assert_eq!(
            got[0].to_string(),
            "tls:sbc.example.net:5061 (resolved to [2001:db8::7]:5061)"
        );
        let got = upstreams(&["sbc.example.net:5060"], &two).unwrap();
        assert_eq!(got[0].dest, "udp:[2001:db8::7]:5060".parse().unwrap());
        assert_eq!(
            got[0].to_string(),
            "sbc.example.net:5060 (resolved to [2001:db8::7]:5060)"
        );
    }

    #[test]
    fn a_name_that_does_not_resolve_is_refused_with_the_flag() {
        let nxdomain = |_: &str, _| {
            Err(std::io::Error::other(
                "failed to lookup address information: Name or service not known",
            ))
        };
        let e = upstreams(&["192.0.2.1:5060", "tls:sbc.invalid:5061"], &nxdomain).unwrap_err();
        assert!(matches!(e, ConfigError::UpstreamUnresolved(..)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "--upstream tls:sbc.invalid:5061: cannot resolve \"sbc.invalid\" (failed to \
             lookup address information: Name or service not known); give a name the \
             system resolver knows (A or AAAA) or an IP address"
        );
        let nothing = |_: &str, _| Ok(Vec::new());
        let e = upstreams(&["tcp:sbc.invalid:5060"], &nothing).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--upstream tcp:sbc.invalid:5060: cannot resolve"),
            "{e}"
        );
        assert!(e.to_string().contains("(no address)"), "{e}");
    }

    #[test]
    fn localhost_resolves_through_the_system_resolver() {
        // /etc/hosts: no DNS query leaves the machine.
        let first = ("localhost", 5061)
            .to_socket_addrs()
            .unwrap()
            .next()
            .unwrap();
        let c = cfg(&["--upstream", "tls:localhost:5061"]).unwrap();
        assert_eq!(c.upstreams[0].dest.addr, first);
        assert!(first.ip().is_loopback());
        assert_eq!(c.upstreams[0].name.as_deref(), Some("localhost"));
        // A WebSocket upstream is refused before anything is looked up.
        assert!(matches!(
            cfg(&["--upstream", "wss:localhost:443"]),
            Err(ConfigError::UpstreamTransport(_))
        ));
    }

    #[test]
    fn one_tls_address_cannot_be_checked_against_two_names() {
        let here = |_: &str, port| Ok(vec![SocketAddr::from(([192, 0, 2, 7], port))]);
        for pair in [
            ["tls:a.example.net:5061", "tls:b.example.net:5061"],
            ["tls:192.0.2.7:5061", "tls:a.example.net:5061"],
        ] {
            let e = upstreams(&pair, &here).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "--upstream {} and --upstream {} are both 192.0.2.7:5061 over tls: one \
                     connection serves both, and its certificate can be checked against one \
                     name; give one of them",
                    pair[0], pair[1]
                )
            );
        }
        // The same name twice (in any case), other ports, other transports:
        // no conflict.
        for pair in [
            ["tls:a.example.net:5061", "tls:A.example.net:5061"],
            ["tls:a.example.net:5061", "tls:b.example.net:5062"],
            ["tcp:a.example.net:5061", "tcp:b.example.net:5061"],
            ["a.example.net:5060", "192.0.2.7:5060"],
        ] {
            assert_eq!(upstreams(&pair, &here).unwrap().len(), 2, "{pair:?}");
        }
    }

    /// [`tls_settings`] on these flags.
    fn tls(args: &[&str]) -> Result<Option<TlsSettings>, ConfigError> {
        let mut v = vec!["sipshard"];
        v.extend_from_slice(args);
        tls_settings(&Args::parse_from(v))
    }

    #[test]
    fn tls_flags_make_settings() {
        assert_eq!(tls(&[]), Ok(None));
        assert!(cfg(&[]).unwrap().tls.is_none());
        let c = cfg(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap();
        assert_eq!(
            c.tls,
            Some(TlsSettings {
                cert: "c.pem".into(),
                key: "k.pem".into(),
                client_ca: None,
                verify_client: VerifyClient::None,
                ca: None,
            })
        );
        let s = tls(&[
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-client-ca",
            "clients.pem",
            "--tls-verify-client",
            "optional",
            "--tls-ca",
            "roots.pem",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.client_ca, Some("clients.pem".into()));
        assert_eq!(s.verify_client, VerifyClient::Optional);
        assert_eq!(s.ca, Some("roots.pem".into()));
        let s = tls(&[
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-client-ca",
            "clients.pem",
            "--tls-verify-client",
            "required",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.verify_client, VerifyClient::Required);
    }

    #[test]
    fn tls_flags_that_cannot_work_are_refused_by_name() {
        let e = cfg(&["--tls-cert", "c.pem"]).unwrap_err();
        assert_eq!(e, ConfigError::TlsNeedsKey);
        assert!(e.to_string().contains("--tls-key"), "{e}");
        for (flag, value) in [
            ("--tls-key", "k.pem"),
            ("--tls-client-ca", "clients.pem"),
            ("--tls-verify-client", "optional"),
        ] {
            let e = cfg(&[flag, value]).unwrap_err();
            assert_eq!(e, ConfigError::TlsNeedsCert(flag));
            assert!(e
                .to_string()
                .starts_with(&format!("{flag} needs --tls-cert")));
        }
        for (v, mode) in [
            ("optional", VerifyClient::Optional),
            ("required", VerifyClient::Required),
        ] {
            let e = cfg(&[
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem",
                "--tls-verify-client",
                v,
            ])
            .unwrap_err();
            assert_eq!(e, ConfigError::TlsNeedsClientCa(mode));
            assert!(
                e.to_string()
                    .starts_with(&format!("--tls-verify-client {v}: needs --tls-client-ca")),
                "{e}"
            );
        }
        let e = cfg(&[
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-client-ca",
            "clients.pem",
        ])
        .unwrap_err();
        assert_eq!(e, ConfigError::TlsClientCaUnused);
    }

    #[test]
    fn the_client_certificate_and_key_come_together_and_need_no_server_pair() {
        assert_eq!(cfg(&[]).unwrap().tls_client_identity, None);
        let pair = Some(("client.pem".into(), "client-key.pem".into()));
        let c = cfg(&[
            "--tls-client-cert",
            "client.pem",
            "--tls-client-key",
            "client-key.pem",
        ])
        .unwrap();
        assert_eq!(c.tls_client_identity, pair, "no --tls-cert needed");
        assert!(c.tls.is_none());
        let c = cfg(&[
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-client-cert",
            "client.pem",
            "--tls-client-key",
            "client-key.pem",
        ])
        .unwrap();
        assert_eq!(c.tls_client_identity, pair, "beside the server pair");
        assert_eq!(c.tls.unwrap().cert, std::path::PathBuf::from("c.pem"));
        for (given, missing) in [
            ("--tls-client-cert", "--tls-client-key"),
            ("--tls-client-key", "--tls-client-cert"),
        ] {
            // Alone, and beside a server pair that must not stand in.
            for server in [&[][..], &["--tls-cert", "c.pem", "--tls-key", "k.pem"]] {
                let mut args = server.to_vec();
                args.extend([given, "x.pem"]);
                let e = cfg(&args).unwrap_err();
                assert_eq!(e, ConfigError::TlsClientPair(given, missing));
                assert!(
                    e.to_string()
                        .starts_with(&format!("{given} needs {missing}")),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn a_tls_listen_needs_a_certificate() {
        // from_args refuses wss: listens today (issue #14), so the check
        // is called directly.
        for listen in ["tls:127.0.0.1:5061", "wss:[::1]:443"] {
            let e = tls(&["--listen", "127.0.0.1:5060", "--listen", listen]).unwrap_err();
            assert!(matches!(e, ConfigError::TlsListenNeedsCert(s) if s.to_string() == listen));
            assert_eq!(
                e.to_string(),
                format!(
                    "--listen {listen}: needs --tls-cert and --tls-key, the certificate to serve"
                )
            );
            let ok = tls(&[
                "--listen",
                listen,
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem",
            ]);
            assert!(matches!(ok, Ok(Some(_))), "{ok:?}");
        }
        // Plain TCP and WS listens need no certificate.
        assert_eq!(
            tls(&[
                "--listen",
                "tcp:127.0.0.1:5060",
                "--listen",
                "ws:127.0.0.1:80"
            ]),
            Ok(None)
        );
        // A tls: listen is served: without a certificate, from_args says so.
        assert!(matches!(
            cfg(&[
                "--listen",
                "127.0.0.1:5060",
                "--listen",
                "tls:127.0.0.1:5061"
            ]),
            Err(ConfigError::TlsListenNeedsCert(_))
        ));
    }

    #[test]
    fn advertise_one_per_family() {
        assert!(matches!(
            cfg(&[
                "--advertise",
                "192.0.2.1:5060",
                "--advertise",
                "192.0.2.2:5060"
            ]),
            Err(ConfigError::AdvertiseFamily(_, _))
        ));
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        // Given for IPv6 only: IPv4 names its first concrete listen.
        let c = cfg(&["--advertise", "[2001:db8::1]:5060"]).unwrap();
        let udp = [at("0.0.0.0:5060"), at("192.0.2.7:5060"), at("[::]:5060")];
        let (p, _) = c.proxy_config(&udp, &[]);
        assert_eq!(p.advertise, at("[2001:db8::1]:5060"), "the first given");
        assert_eq!(
            p.advertise_of,
            [Some(at("192.0.2.7:5060")), Some(at("[2001:db8::1]:5060"))]
        );
        // A request that arrived over IPv4 and leaves for IPv6 names the
        // IPv6 address; one that stays in IPv6 the advertised one.
        let c = cfg(&["--advertise", "203.0.113.1:5060"]).unwrap();
        let (p, _) = c.proxy_config(&[at("0.0.0.0:5060"), at("[2001:db8::9]:5060")], &[]);
        let arrived = at("198.51.100.7:5060");
        assert_eq!(
            p.leaving_for(arrived, at("192.0.2.1:5060")),
            Some(at("203.0.113.1:5060"))
        );
        assert_eq!(
            p.leaving_for(arrived, at("[2001:db8::2]:5060")),
            Some(at("[2001:db8::9]:5060"))
        );
        assert!(p.local.contains(&at("[2001:db8::9]:5060")), "and it is us");
        // Wildcards only and nothing given for IPv6: nothing to name.
        let c = cfg(&[]).unwrap();
        let (p, _) = c.proxy_config(&[at("0.0.0.0:5060"), at("[::]:5060")], &[]);
        assert_eq!(p.leaving_for(arrived, at("[2001:db8::2]:5060")), None);
        assert_eq!(p.leaving_for(arrived, at("192.0.2.1:5060")), Some(arrived));
    }

    #[test]
    fn advertise_defaults() {
        let c = cfg(&["--listen", "192.0.2.1:5060"]).unwrap();
        let (p, w) = c.proxy_config(&["192.0.2.1:5060".parse().unwrap()], &[]);
        assert_eq!(p.advertise, "192.0.2.1:5060".parse().unwrap());
        assert!(w.is_none());
        let c = cfg(&[]).unwrap();
        let (p, w) = c.proxy_config(&["0.0.0.0:5060".parse().unwrap()], &[]);
        assert_eq!(p.advertise, "127.0.0.1:5060".parse().unwrap());
        assert!(w.unwrap().contains("--advertise"));
        assert!(p.advertise_arrival, "a wildcard names the arrival address");
        let arrived: SocketAddr = "198.51.100.7:5060".parse().unwrap();
        assert_eq!(p.advertised(arrived), arrived);
        let c = cfg(&["--advertise", "203.0.113.1:5060"]).unwrap();
        let (p, _) = c.proxy_config(&["0.0.0.0:5060".parse().unwrap()], &[]);
        assert!(!p.advertise_arrival, "--advertise wins");
        assert_eq!(p.advertised(arrived), "203.0.113.1:5060".parse().unwrap());
    }
}
