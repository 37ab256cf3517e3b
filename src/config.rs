//! Flags -> a validated [`Config`]. No I/O happens after this point that a
//! flag could have prevented.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::cli::{Args, IoChoice, Steer};
use crate::io::socket::SocketOptions;
use crate::proxy::ProxyConfig;

/// Everything the server needs, checked.
#[derive(Clone, Debug)]
pub struct Config {
    /// Addresses to bind (port 0 resolved at bind time).
    pub listen: Vec<SocketAddr>,
    /// Explicit --advertise, if given.
    pub advertise: Option<SocketAddr>,
    /// Upstreams for requests with no IP next hop.
    pub upstreams: Vec<SocketAddr>,
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
}

/// A flag combination that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `--shards 0`, or more than the limit.
    Shards(usize),
    /// No --listen address.
    NoListen,
    /// An --advertise address that is a wildcard (0.0.0.0, ::) or port 0.
    Advertise(SocketAddr),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Shards(n) => write!(f, "--shards {n}: give 1 to {MAX_SHARDS}"),
            ConfigError::NoListen => f.write_str("no --listen address"),
            ConfigError::Advertise(a) => {
                write!(
                    f,
                    "--advertise {a}: give the concrete address and port peers reach"
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// More shards than this is a typo, not a machine.
pub const MAX_SHARDS: usize = 1024;

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
        if let Some(a) = args.advertise {
            if a.ip().is_unspecified() || a.port() == 0 {
                return Err(ConfigError::Advertise(a));
            }
        }
        Ok(Config {
            listen: args.listen.clone(),
            advertise: args.advertise,
            upstreams: args.upstream.clone(),
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

    /// The proxy's view once the sockets are bound: `bound` are the actual
    /// listen addresses (ports resolved). Returns the config and, when the
    /// advertised address had to be guessed, a warning for the banner.
    pub fn proxy_config(&self, bound: &[SocketAddr]) -> (ProxyConfig, Option<String>) {
        let first = bound
            .first()
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060)));
        let (advertise, warning) = match self.advertise {
            Some(a) => (a, None),
            None if first.ip().is_unspecified() => (
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), first.port()),
                Some(format!(
                    "listening on wildcard {first}: advertising {}:{}; set --advertise to the address peers reach",
                    Ipv4Addr::LOCALHOST,
                    first.port()
                )),
            ),
            None => (first, None),
        };
        // Wildcard binds name no host: only concrete addresses are "us".
        let mut local: Vec<SocketAddr> = bound
            .iter()
            .copied()
            .filter(|a| !a.ip().is_unspecified())
            .collect();
        local.push(advertise);
        (
            ProxyConfig {
                advertise,
                local,
                upstreams: self.upstreams.clone(),
                record_route: self.record_route,
            },
            warning,
        )
    }
}

#[cfg(test)]
mod tests {
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
    fn advertise_defaults() {
        let c = cfg(&["--listen", "192.0.2.1:5060"]).unwrap();
        let (p, w) = c.proxy_config(&["192.0.2.1:5060".parse().unwrap()]);
        assert_eq!(p.advertise, "192.0.2.1:5060".parse().unwrap());
        assert!(w.is_none());
        let c = cfg(&[]).unwrap();
        let (p, w) = c.proxy_config(&["0.0.0.0:5060".parse().unwrap()]);
        assert_eq!(p.advertise, "127.0.0.1:5060".parse().unwrap());
        assert!(w.unwrap().contains("--advertise"));
    }
}
