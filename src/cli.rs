//! Command-line flags. Every flag's doc comment is its `--help` text.
//!
//! Only `--listen` (parsed and checked now, bound by the server in issue
//! #3) and `--parse` exist so far; the server flags (`--shards`, `--io`,
//! `--pin`, ...) arrive with the shards, so that none is accepted and then
//! silently ignored.

use std::net::SocketAddr;

use clap::Parser;

/// sipshard: a carrier-grade SIP edge server (stateless proxy, registrar,
/// location service and redirect server) built as a per-core packet
/// processor.
#[derive(Parser, Debug, Clone)]
#[command(name = "sipshard", version, about, long_about = None)]
pub struct Args {
    /// UDP address to listen on for SIP; repeat the flag for several
    /// addresses. IPv6 addresses are written in brackets: `[::1]:5060`.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:5060")]
    pub listen: Vec<SocketAddr>,

    /// Parse a SIP message from FILE (or `-` for standard input), print what
    /// the parser sees and whether it validates, then exit: 0 when it is
    /// valid, 1 when it is not.
    #[arg(long, value_name = "FILE")]
    pub parse: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert!(a.listen[1].is_ipv6());
        let a = Args::parse_from(["sipshard"]);
        assert_eq!(a.listen, vec!["0.0.0.0:5060".parse().unwrap()]);
        assert!(Args::try_parse_from(["sipshard", "--listen", "nonsense"]).is_err());
    }
}
