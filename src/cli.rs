//! Command-line flags. Every flag's doc comment is its `--help` text.
//!
//! Every flag here does something; none is accepted and then ignored.

use std::net::SocketAddr;

use clap::{Parser, Subcommand, ValueEnum};

use crate::transport::{TransportAddr, UpstreamAddr};

/// How datagrams are spread over the shards of one listen address.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steer {
    /// One SO_REUSEPORT socket per shard, and a small eBPF program in the
    /// kernel that picks the shard from a hash of the Call-ID: every
    /// message of a dialog, from either side, reaches one shard in order,
    /// and one peer's dialogs spread over every shard. Where the kernel
    /// refuses eBPF (no CAP_BPF, a seccomp profile, Linux before 5.3) it
    /// falls back to `flow` and says so at start-up.
    CallId,
    /// One SO_REUSEPORT socket per shard: the kernel hashes the 4-tuple, so
    /// each peer (source address and port) sticks to one shard and its
    /// messages keep their order. One busy trunk peer uses one shard.
    Flow,
    /// All shards read one shared socket: a single peer is spread over
    /// every shard, but two messages of one dialog can be handled by two
    /// shards at once and leave in the wrong order (a 200 before its 180),
    /// which strict user agents treat as an error.
    Shared,
}

/// Which I/O backend the shards use.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoChoice {
    /// The backend measured cheaper per forwarded message: mmsg today
    /// (io_uring cost 1.06-1.20x as much CPU on Linux 6.18; start-up says
    /// so).
    Auto,
    /// io_uring (multishot recvmsg, provided buffers); fail if refused.
    Uring,
    /// recvmmsg/sendmmsg.
    Mmsg,
}

/// What the server does with a request for a user of a local domain.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward it to the user's best binding (stateless proxy).
    Proxy,
    /// Answer 302 Moved Temporarily listing every binding (redirect server).
    Redirect,
    /// Forward it as a transaction-stateful proxy (RFC 3261 §16-17): 100
    /// Trying at once, retransmissions absorbed and made, 408 when the
    /// next hop never answers, CANCEL answered and passed on.
    Stateful,
}

/// What a REGISTER that would leave more than `--max-contacts` bindings
/// does.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverContacts {
    /// Keep the newest bindings; the oldest are dropped.
    DropOldest,
    /// Refuse the REGISTER with 403 and change nothing.
    Reject,
}

/// When the registration log reaches stable storage (`--state-dir`).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fdatasync before the 200 OKs of each loop leave: survives kill -9
    /// and power loss.
    Always,
    /// write() before the 200 OK, fdatasync at most once a second: survives
    /// kill -9; power loss can lose the last second.
    Interval,
    /// write() before the 200 OK, the kernel flushes when it likes:
    /// survives kill -9, not power loss.
    Never,
}

/// Whether TLS clients are asked for a certificate
/// (`--tls-verify-client`).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVerifyClient {
    /// Never ask (user agents rarely have certificates).
    None,
    /// Ask; a certificate sent must chain to --tls-client-ca, and a
    /// client that sends none is let in.
    Optional,
    /// Refuse clients without a certificate that chains to
    /// --tls-client-ca (mutual TLS, as trunks use).
    Required,
}

/// Tools that run instead of the server.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Add or replace a user's entry in an --auth-file: reads the password
    /// from standard input (without echo on a terminal) and writes the MD5
    /// and SHA-256 HA1s, never the password.
    Passwd {
        /// The credentials file (created with mode 0600 if missing).
        file: std::path::PathBuf,
        /// The user name, as UAs send it in `username`.
        user: String,
        /// The realm: the domain the user registers in (--domain).
        realm: String,
    },
}

/// How much is logged (`--log-level`). The start-up lines and the exit
/// line are written at every level.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    /// Only failures.
    Error,
    /// Failures, warnings, and bans of flooding sources.
    Warn,
    /// Also the stats lines and dropped datagrams (each reason at most
    /// once a second per shard).
    Info,
    /// Also keep-alives dropped and other detail.
    Debug,
    /// Everything.
    Trace,
}

/// How log lines are written (`--log-format`).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `TIMESTAMP LEVEL MESSAGE`, one line per event.
    Text,
    /// One JSON object per line: timestamp, level, message and the
    /// event's fields.
    Json,
}

/// sipshard: a carrier-grade SIP edge server (stateless proxy, registrar,
/// location service and redirect server) built as a per-core packet
/// processor.
#[derive(Parser, Debug, Clone)]
#[command(name = "sipshard", version, about, long_about = None)]
pub struct Args {
    /// A tool to run instead of the server.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address to listen on for SIP, as `[TRANSPORT:]IP:PORT` with
    /// TRANSPORT one of udp (the default when none is given), tcp, tls, ws,
    /// wss; repeat the flag for several addresses. IPv6 addresses are
    /// written in brackets: `[::1]:5060`. Port 0 picks a free port (printed
    /// at start-up). tls and wss need --tls-cert and --tls-key, and a
    /// stream listen (tcp, tls, ws, wss) needs a udp one beside it.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:5060")]
    pub listen: Vec<TransportAddr>,

    /// Most TCP connections open at once, over all shards (each shard
    /// takes an equal share); a connection over it is closed as it is
    /// accepted, and counted.
    #[arg(long, value_name = "N", default_value_t = 65_536)]
    pub max_connections: usize,

    /// Most connections accepted from one IP address, over all shards
    /// (each shard takes an equal share, rounded up), so that one host
    /// cannot take every connection; one over it is closed as it is
    /// accepted, and counted. 0: no limit. The default leaves room for a
    /// NAT with a few thousand phones behind one address; connections
    /// this server opens to next hops are not counted.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_connections_per_ip: usize,

    /// Seconds a TCP connection may deliver nothing (not even a CRLF
    /// keep-alive) before it is closed. UAs keep a registered flow alive
    /// with a CRLF ping every 2 minutes or so (RFC 5626 §4.4.1), well
    /// within the default.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub tcp_idle_timeout: u64,

    /// Seconds a connect of ours, a TLS handshake or a WebSocket upgrade
    /// may take before the connection is closed.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub tcp_handshake_timeout: u64,

    /// Seconds an accepted connection may stay silent before its first
    /// byte (a TLS ClientHello, a request, a CRLF keep-alive): one that
    /// connects and says nothing is closed, not held for the idle
    /// timeout (slowloris).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub tcp_first_byte_timeout: u64,

    /// Seconds from a message's first byte to its last on a connection; a
    /// sender slower than that is closed (slowloris). The default is 64 x
    /// T1, what a UDP transaction is given (RFC 3261 §17.1.1.2).
    #[arg(long, value_name = "SECS", default_value_t = 32)]
    pub tcp_message_timeout: u64,

    /// Bytes a connection may have waiting for the kernel (answers its
    /// peer has not read) before it is closed and counted: a peer that
    /// does not read cannot grow our memory. At least --max-message-size.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_write_queue: usize,

    /// An `Origin` a WebSocket (ws:, wss:) handshake may come from, as a
    /// browser sends it (`https://phone.example.com`); repeat for several.
    /// With none given any origin is let in; with some, a handshake from
    /// another (or with none) gets 403 (RFC 6455 §10.2).
    #[arg(long, value_name = "ORIGIN")]
    pub ws_origin: Vec<String>,

    /// Certificate chain (PEM: the server's certificate first, then its
    /// intermediates) for tls: and wss: listens. Needs --tls-key. Also
    /// shown to a next hop that asks for a client certificate over
    /// outbound TLS, unless --tls-client-cert gives one of its own.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// Private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<std::path::PathBuf>,

    /// CA certificates (PEM) that TLS client certificates must chain to;
    /// needs --tls-verify-client optional or required.
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<std::path::PathBuf>,

    /// Ask TLS clients for a certificate: `none`, `optional` (one sent
    /// must chain to --tls-client-ca; clients without one are let in) or
    /// `required` (clients without one from --tls-client-ca are refused).
    #[arg(long, value_enum, value_name = "MODE", default_value_t = TlsVerifyClient::None)]
    pub tls_verify_client: TlsVerifyClient,

    /// CA certificates (PEM) trusted for servers this proxy connects to
    /// over TLS (--upstream tls:, sips: next hops); without it, the system
    /// trust store. Needs no --tls-cert: a proxy that only connects out
    /// over TLS has no certificate to serve.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,

    /// Certificate chain (PEM: ours first, then its intermediates) shown
    /// to next hops that ask for a client certificate over outbound TLS
    /// (mutual TLS toward a trunk), in place of --tls-cert: public CAs no
    /// longer put the client-auth usage in server certificates, and trunks
    /// may require a certificate they issued or listed. Needs
    /// --tls-client-key, not --tls-cert. Read at start-up only (SIGHUP
    /// does not reload it). Not --tls-client-ca, which checks the clients
    /// connecting to us.
    #[arg(long, value_name = "FILE")]
    pub tls_client_cert: Option<std::path::PathBuf>,

    /// Private key of --tls-client-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE")]
    pub tls_client_key: Option<std::path::PathBuf>,

    /// Address this proxy writes in its Via and Record-Route and recognises
    /// as itself. Default: the first --listen address (127.0.0.1 with a
    /// warning when that is a wildcard such as 0.0.0.0). Give one per IP
    /// family on a dual-stack edge: a request leaving for a next hop of
    /// the other family names that family's (default: its first udp
    /// listen address that is not a wildcard).
    #[arg(long, value_name = "ADDR")]
    pub advertise: Vec<SocketAddr>,

    /// Next hop for requests whose Route and Request-URI name no IP
    /// address, as `[TRANSPORT:]HOST:PORT` with TRANSPORT udp (the
    /// default), tcp or tls; repeat for several. A dialog always goes to
    /// the same one (chosen by a hash of Call-ID). Over tcp and tls, each
    /// shard opens its own connection to it and reuses it. HOST is an IP
    /// address or a DNS name: a name is resolved once, at start-up (A and
    /// AAAA through the system resolver, no SRV or NAPTR; the first
    /// address is used and printed), and over tls the certificate must
    /// name it, since an SBC's certificate names its host, rarely its IP.
    #[arg(long, value_name = "ADDR")]
    pub upstream: Vec<UpstreamAddr>,

    /// Send an OPTIONS to every --upstream every S seconds (over its
    /// transport: UDP, or a short TCP connection; a TLS upstream is checked
    /// by a TCP connect only). An upstream that misses --probe-threshold
    /// probes in a row leaves the rotation (its dialogs go to the next
    /// one), and comes back when it answers again; each change is logged
    /// and every upstream's state is a metric. With every upstream out, a
    /// request for them gets 503. 0: no probing, every upstream stays in.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub probe_interval: u64,

    /// Probes an upstream may miss in a row before it leaves the rotation
    /// (a probe is missed when no answer but 503 comes back before the
    /// next one is due).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub probe_threshold: u32,

    /// Add `Record-Route: <sip:ADVERTISE;lr>` to forwarded requests that
    /// can create a dialog (no To tag; not REGISTER, OPTIONS, CANCEL or
    /// ACK), so that in-dialog requests come back through this proxy.
    #[arg(long)]
    pub record_route: bool,

    /// Shard threads per listen address. Default: the CPUs this process may
    /// use.
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,

    /// I/O backend: `uring` (io_uring, Linux 6.0+), `mmsg`
    /// (recvmmsg/sendmmsg, works everywhere), or `auto` (the one measured
    /// cheaper per message: mmsg today; start-up says which runs and why).
    #[arg(long, value_enum, default_value_t = IoChoice::Auto)]
    pub io: IoChoice,

    /// How traffic is spread over shards: `call-id` (the kernel hashes the
    /// Call-ID with an eBPF program: a dialog stays on one shard, one peer
    /// spreads over all; falls back to `flow` where eBPF is refused),
    /// `flow` (kernel 4-tuple hash, order kept per peer, one peer on one
    /// shard) or `shared` (one socket read by all shards: spreads a single
    /// busy peer, may reorder a dialog's messages). See docs/proxy.md.
    #[arg(long, value_enum, default_value_t = Steer::CallId)]
    pub steer: Steer,

    /// Pin shard i to the i-th CPU this process may use.
    #[arg(long)]
    pub pin: bool,

    /// SO_RCVBUF per shard socket, in bytes; 0 keeps the kernel's default
    /// (often 208 KiB, which a burst of a few hundred datagrams overflows:
    /// the recvmmsg backend lost 0.1-1.7% at 25,000 requests/s with it).
    /// The kernel clamps it to net.core.rmem_max; start-up says so.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    pub recv_buffer: usize,

    /// SO_SNDBUF per shard socket, in bytes; 0 keeps the kernel's default.
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub send_buffer: usize,

    /// Print a line of counters and rates to stderr every this many seconds;
    /// 0 turns it off.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub stats_interval: u64,

    /// A domain this server is registrar and location service for; repeat
    /// for several. Without it the server is a plain proxy and REGISTER is
    /// forwarded like any request. With it, REGISTER for these domains (or
    /// for this server's own address) is answered here, and requests for
    /// their users are routed by the location service.
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Vec<String>,

    /// `proxy` forwards a request for a registered user to the best
    /// binding, keeping no transaction; `stateful` does too, keeping RFC
    /// 3261 transactions (over UDP); `redirect` answers it with 302 and
    /// every binding.
    #[arg(long, value_enum, default_value_t = Mode::Proxy)]
    pub mode: Mode,

    /// T1 in milliseconds, the round-trip estimate (RFC 3261 §17.1.1.1):
    /// the first retransmission interval, and 64*T1 the transaction
    /// timeout. `--mode stateful`.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub t1: u64,

    /// T2 in milliseconds: the longest retransmission interval of a
    /// non-INVITE request and of an INVITE's final response.
    #[arg(long, value_name = "MS", default_value_t = 4_000)]
    pub t2: u64,

    /// T4 in milliseconds: how long a message may stay in the network.
    #[arg(long, value_name = "MS", default_value_t = 5_000)]
    pub t4: u64,

    /// How long a stateful proxy waits for a final response before the
    /// next hop has sent a provisional, in milliseconds (Timers B and F;
    /// Kamailio's `fr_timer`); then the caller gets 408. Default: 64*T1.
    #[arg(long, value_name = "MS")]
    pub fr_timeout: Option<u64>,

    /// How long a stateful proxy waits for a final response to an INVITE
    /// after a provisional, in milliseconds (Timer C, RFC 3261 §16.6 step
    /// 11, reset by each provisional; Kamailio's `fr_inv_timer`); then the
    /// branch is cancelled and the caller gets 408. Default: just over the
    /// 3 minutes the RFC asks for.
    #[arg(long, value_name = "MS", default_value_t = 181_000)]
    pub fr_inv_timeout: u64,

    /// Under `--mode stateful`, how many more `--upstream`s (over UDP,
    /// in the rotation, in their order after the one chosen) a request
    /// may go to when one is unavailable: it answers 503, 500 or 408, or
    /// nothing before `--fr-timeout`. 0: no failover.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub max_failover: usize,

    /// Transactions per shard in `--mode stateful` (each a server and a
    /// client transaction); a new request beyond it is answered 503 with
    /// Retry-After and counted.
    #[arg(long, value_name = "N", default_value_t = 50_000)]
    pub max_transactions: usize,

    /// Registration lifetime in seconds when the REGISTER gives none.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub default_expires: u32,

    /// Shorter non-zero registrations get 423 Interval Too Brief.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub min_expires: u32,

    /// Longer registrations are lowered to this.
    #[arg(long, value_name = "SECONDS", default_value_t = 86_400)]
    pub max_expires: u32,

    /// Bindings (contacts) per address-of-record.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub max_contacts: usize,

    /// Room for N AORs in every shard's location table from the start.
    /// A table that fills up grows by an eighth and re-files every AOR
    /// meanwhile, a pause that grows with it (about 3 ms at 100,000 AORs
    /// and 50 ms at 1,000,000 on a 2-core VM); sized for the users
    /// expected, it does not pause until they are exceeded. Costs about 10
    /// bytes of address space per AOR per shard, memory only as AORs
    /// arrive. 0: start small and grow.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub expected_aors: usize,

    /// What a REGISTER that would exceed --max-contacts does.
    #[arg(long, value_enum, default_value_t = OverContacts::DropOldest)]
    pub over_contacts: OverContacts,

    /// Send requests for a registered user to the address its REGISTER came
    /// from rather than to its Contact host (users behind NAT, or an edge
    /// proxy that did not add Path).
    #[arg(long)]
    pub nat: bool,

    /// Keep registrations in DIR (a log per shard, compacted into
    /// snapshots) and reload them at start. Without it they live in memory
    /// only and a restart forgets them.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<std::path::PathBuf>,

    /// When the registration log is synced to disk (with --state-dir).
    #[arg(long, value_enum, default_value_t = FsyncPolicy::Interval)]
    pub fsync: FsyncPolicy,

    /// Share the location service with other nodes through Redis:
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]`, or `rediss://` for TLS. Every
    /// node keeps every binding and answers lookups itself; each writes its
    /// registrar's changes to Redis and follows the others' (docs/cluster.md).
    /// A node whose Redis is away keeps serving from its own state.
    #[arg(long, value_name = "URL")]
    pub cluster: Option<String>,

    /// This node's name in the cluster (letters, digits, `.`, `_`, `-`, at
    /// most 64): every binding records the node it registered through.
    /// Default: the host name.
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,

    /// The address other nodes send to, to reach a user registered here
    /// over a connection or behind NAT (--nat): IP:PORT of a UDP
    /// --listen. Default: the first UDP --listen address, when it is not
    /// a wildcard.
    #[arg(long, value_name = "IP:PORT")]
    pub node_addr: Option<std::net::SocketAddr>,

    /// Changes waiting for Redis while it is away, at most (one per
    /// binding: a later change of a binding replaces the waiting one).
    /// Past it, changes of further bindings are dropped, counted and
    /// logged; they reach Redis at their binding's next refresh.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub cluster_queue: usize,

    /// Entries the Redis stream of changes keeps (trimmed approximately):
    /// a node away for longer than that many changes reloads everything.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub cluster_stream_max: usize,

    /// The CA certificates (PEM) a `rediss://` Redis's certificate is
    /// checked against. Default: the system's trust store.
    #[arg(long, value_name = "FILE")]
    pub cluster_ca: Option<std::path::PathBuf>,

    /// Prefix of the Redis keys (`PREFIX:aor:AOR`, `PREFIX:changes`):
    /// several clusters may share one Redis under different prefixes.
    #[arg(long, value_name = "PREFIX", default_value = "sipshard")]
    pub cluster_prefix: String,

    /// Only datagrams from these sources are looked at: an address or
    /// ADDRESS/PREFIX (`192.0.2.0/24`, `2001:db8::/32`); repeat for several.
    /// Default: every source. Checked before parsing; the rest is dropped
    /// and counted (`denied`).
    #[arg(long, value_name = "CIDR")]
    pub allow: Vec<crate::admit::guard::Cidr>,

    /// Datagrams from these sources are dropped unread and counted
    /// (`denied`); wins over --allow. Repeat for several.
    #[arg(long, value_name = "CIDR")]
    pub deny: Vec<crate::admit::guard::Cidr>,

    /// Larger datagrams are refused: a request gets 513 Message Too Large,
    /// anything else is dropped (`oversize`). 512 to 16384.
    #[arg(long, value_name = "BYTES", default_value_t = crate::admit::guard::DEFAULT_MAX_MESSAGE_SIZE)]
    pub max_message_size: usize,

    /// Drop, unanswered, requests whose User-Agent is a known SIP scanner's
    /// (sipvicious' friendly-scanner, sipcli, VaxSIPUserAgent...).
    #[arg(long)]
    pub drop_scanners: bool,

    /// Datagrams per second one source address may send, per shard, on
    /// average (token bucket); 0 turns the limit off. A source that goes
    /// over gets one 503 with Retry-After and is then dropped unread for
    /// --ban-time. Trunk peers that legitimately send more need a higher
    /// limit (the limit applies to every source alike).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub rate_limit: u32,

    /// Datagrams a source may send at once before the rate applies.
    /// Default: twice --rate-limit.
    #[arg(long, value_name = "N")]
    pub rate_burst: Option<u32>,

    /// How long a source over --rate-limit is dropped, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub ban_time: u64,

    /// Require digest authentication (RFC 7616: SHA-256 and MD5,
    /// qop=auth) for REGISTER, with the users of FILE: one
    /// `user:realm:md5-ha1:sha256-ha1` line each, written by
    /// `sipshard passwd`. The realm is the domain of the To (REGISTER) or
    /// From (INVITE). Needs --domain.
    #[arg(long, value_name = "FILE")]
    pub auth_file: Option<std::path::PathBuf>,

    /// Also require Proxy-Authorization (407) on initial INVITEs whose From
    /// is a user of a local domain. Needs --auth-file.
    #[arg(long)]
    pub auth_invite: bool,

    /// Digest algorithms offered, one challenge each in this order, comma
    /// separated: `sha-256`, `md5`. Answers with another are refused. The
    /// default, `md5` alone, lets any stock UA register: some read only
    /// the first challenge and know only MD5 (SIPp 3.6), some refuse a 401
    /// naming an algorithm they lack. `sha-256,md5` offers SHA-256 (RFC
    /// 8760) first to UAs that pick the first challenge they support.
    #[arg(long, value_enum, value_name = "LIST", value_delimiter = ',',
          default_values_t = crate::auth::DEFAULT_ALGORITHMS)]
    pub auth_algorithm: Vec<crate::auth::Algorithm>,

    /// Failed authentications one source address may have per minute, per
    /// shard, before it is banned for --ban-time: its requests to
    /// authenticate are then dropped unanswered. Counts wrong passwords,
    /// unknown users, forged or replayed nonces and other users'
    /// credentials, not challenges. 0 (the default) turns it off. Users
    /// behind one NAT address share the allowance.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub auth_fail_limit: u32,

    /// Seconds a challenge's nonce stays good; older ones get a new
    /// challenge with stale=true. Also bounds how long a captured nonce
    /// could be replayed.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::auth::DEFAULT_NONCE_TTL)]
    pub nonce_ttl: u32,

    /// Serve Prometheus metrics (OpenMetrics text) at
    /// `http://ADDR/metrics`, from a thread off the hot path; port 0 picks
    /// one (printed at start-up). Off by default.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// Log level: `error`, `warn`, `info`, `debug` or `trace`. The start-up
    /// lines (banner, settings, metrics address) and the exit line are
    /// written whatever the level.
    #[arg(long, value_enum, value_name = "LEVEL", default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Log line format on stderr: `text` (timestamp, level, message) or
    /// `json` (one object per line with the message and structured
    /// fields).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Parse a SIP message from FILE (or `-` for standard input), print what
    /// the parser sees and whether it validates, then exit: 0 when it is
    /// valid, 1 when it is not. Does not start the server.
    #[arg(long, value_name = "FILE")]
    pub parse: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Transport;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn listen_accepts_v4_and_v6_and_repeats() {
        let a = Args::parse_from([
            "sipshard",
            "--listen",
            "127.0.0.1:5070",
            "--listen",
            "[::1]:5071",
        ]);
        assert_eq!(a.listen.len(), 2);
        assert!(a.listen[1].addr.is_ipv6());
        let a = Args::parse_from(["sipshard"]);
        assert_eq!(a.listen, vec!["0.0.0.0:5060".parse().unwrap()]);
        assert_eq!(a.listen[0].transport, Transport::Udp);
        assert!(Args::try_parse_from(["sipshard", "--listen", "nonsense"]).is_err());
        assert!(Args::try_parse_from(["sipshard", "--listen", "sctp:127.0.0.1:5060"]).is_err());
        let a = Args::parse_from(["sipshard", "--listen", "tls:[::1]:5061"]);
        assert_eq!(a.listen[0].transport, Transport::Tls);
        let a = Args::parse_from([
            "sipshard",
            "--upstream",
            "192.0.2.1:5060",
            "--upstream",
            "192.0.2.2:5060",
            "--record-route",
            "--shards",
            "3",
        ]);
        assert_eq!(a.upstream.len(), 2);
        assert_eq!(
            a.upstream[0],
            UpstreamAddr::Addr("192.0.2.1:5060".parse().unwrap())
        );
        assert!(a.record_route);
        assert_eq!(a.shards, Some(3));
        // An upstream may be a name; a listen address may not.
        let a = Args::parse_from(["sipshard", "--upstream", "tls:sbc.example.net:5061"]);
        assert_eq!(a.upstream[0].to_string(), "tls:sbc.example.net:5061");
        assert!(Args::try_parse_from(["sipshard", "--listen", "tcp:localhost:5060"]).is_err());
    }

    #[test]
    fn auth_algorithm_is_md5_alone_by_default() {
        let a = Args::parse_from(["sipshard"]);
        assert_eq!(a.auth_algorithm, [crate::auth::Algorithm::Md5]);
        let a = Args::parse_from(["sipshard", "--auth-algorithm", "sha-256,md5"]);
        assert_eq!(
            a.auth_algorithm,
            [crate::auth::Algorithm::Sha256, crate::auth::Algorithm::Md5]
        );
    }

    #[test]
    fn tls_flags() {
        let a = Args::parse_from(["sipshard"]);
        assert_eq!(a.tls_cert, None);
        assert_eq!(a.tls_verify_client, TlsVerifyClient::None);
        let a = Args::parse_from([
            "sipshard",
            "--tls-cert",
            "/etc/sip/cert.pem",
            "--tls-key",
            "/etc/sip/key.pem",
            "--tls-client-ca",
            "/etc/sip/clients.pem",
            "--tls-verify-client",
            "required",
            "--tls-ca",
            "/etc/sip/roots.pem",
            "--tls-client-cert",
            "/etc/sip/client.pem",
            "--tls-client-key",
            "/etc/sip/client-key.pem",
        ]);
        assert_eq!(a.tls_cert.unwrap().to_str(), Some("/etc/sip/cert.pem"));
        assert_eq!(a.tls_key.unwrap().to_str(), Some("/etc/sip/key.pem"));
        assert_eq!(
            a.tls_client_ca.unwrap().to_str(),
            Some("/etc/sip/clients.pem")
        );
        assert_eq!(a.tls_verify_client, TlsVerifyClient::Required);
        assert_eq!(a.tls_ca.unwrap().to_str(), Some("/etc/sip/roots.pem"));
        assert_eq!(
            a.tls_client_cert.unwrap().to_str(),
            Some("/etc/sip/client.pem")
        );
        assert_eq!(
            a.tls_client_key.unwrap().to_str(),
            Some("/etc/sip/client-key.pem")
        );
        assert!(Args::try_parse_from(["sipshard", "--tls-verify-client", "yes"]).is_err());
    }

    #[test]
    fn log_flags() {
        let a = Args::parse_from(["sipshard"]);
        assert_eq!(
            (a.log_level, a.log_format),
            (LogLevel::Info, LogFormat::Text)
        );
        let a = Args::parse_from(["sipshard", "--log-level", "warn", "--log-format", "json"]);
        assert_eq!(
            (a.log_level, a.log_format),
            (LogLevel::Warn, LogFormat::Json)
        );
        let e = Args::try_parse_from(["sipshard", "--log-level", "loud"]).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("--log-level") && e.contains("possible values"),
            "{e}"
        );
        assert!(Args::try_parse_from(["sipshard", "--log-format", "xml"]).is_err());
    }
}
