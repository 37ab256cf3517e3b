//! What every shard reads and nobody writes after start-up: the routing
//! and registrar configuration, the access policy, authentication, and
//! the mailboxes (lock-free), one per shard.

use std::io;
use std::net::SocketAddr;

use super::mail::{Inbox, INBOX_CAPACITY};
use crate::admit::Guard;
use crate::auth::AuthConfig;
use crate::proxy::ProxyConfig;
use crate::registrar::RegistrarConfig;
use crate::transaction::TransactionConfig;

/// What every shard reads and nobody writes after start-up, plus the
/// inboxes (which are lock-free).
pub struct Shared {
    /// Routing configuration.
    pub proxy: ProxyConfig,
    /// Registrar limits.
    pub registrar: RegistrarConfig,
    /// One inbox per shard, indexed like the shards.
    pub inboxes: Box<[Inbox]>,
    /// Per shard, the index of the listen address its socket is bound to:
    /// an answer must leave from the address the request came to.
    pub listen_of: Box<[usize]>,
    /// The listen addresses as bound, by index (empty when unknown, as in
    /// unit tests: then only a shard of the same listen address answers
    /// for another).
    pub bound: Box<[SocketAddr]>,
    /// Access control and size limits (`--allow`, `--deny`,
    /// `--max-message-size`, `--drop-scanners`).
    pub guard: Guard,
    /// Digest authentication (`--auth-file`), when on.
    pub auth: Option<AuthConfig>,
    /// The transaction layer (`--mode stateful`), when on.
    pub transactions: Option<TransactionConfig>,
    /// What the cluster link did (`--cluster`), for metrics.
    pub cluster: Option<std::sync::Arc<crate::cluster::LinkStats>>,
}

impl Shared {
    /// State for `shards` shards, `listen_of[i]` giving shard i's listen
    /// address index.
    pub fn new(
        proxy: ProxyConfig,
        registrar: RegistrarConfig,
        listen_of: Vec<usize>,
    ) -> io::Result<Shared> {
        Shared::with_inbox_capacity(proxy, registrar, listen_of, INBOX_CAPACITY)
    }

    /// As [`Shared::new`], with inboxes of `capacity` mails.
    pub fn with_inbox_capacity(
        proxy: ProxyConfig,
        registrar: RegistrarConfig,
        listen_of: Vec<usize>,
        capacity: usize,
    ) -> io::Result<Shared> {
        let inboxes = (0..listen_of.len())
            .map(|_| Inbox::new(capacity))
            .collect::<io::Result<_>>()?;
        Ok(Shared {
            proxy,
            registrar,
            inboxes,
            listen_of: listen_of.into_boxed_slice(),
            bound: Box::default(),
            guard: Guard::default(),
            auth: None,
            transactions: None,
            cluster: None,
        })
    }

    /// True when shard `me` can send the answer to a message that shard
    /// `arrived_on` received at `local`, from `local`: their sockets are
    /// bound to the same listen address, or to addresses of the same port
    /// and family (the source address is then set per datagram).
    pub fn can_send_as(&self, me: usize, arrived_on: usize, local: SocketAddr) -> bool {
        let (Some(&mine), Some(&theirs)) = (self.listen_of.get(me), self.listen_of.get(arrived_on))
        else {
            return false;
        };
        if mine == theirs {
            return true;
        }
        self.bound.get(mine).is_some_and(|a| {
            a.port() == local.port() && a.is_ipv4() == local.ip().to_canonical().is_ipv4()
        })
    }

    /// The family of shard `me`'s UDP socket (true for IPv4) and the
    /// shard that sends its datagrams for the other family: the one at
    /// the same place among the shards of the first listen address of that
    /// family. None for the family when the listen addresses are unknown.
    pub fn families(&self, me: usize) -> (Option<bool>, Option<usize>) {
        let Some(mine) = self.listen_of.get(me).and_then(|&l| self.bound.get(l)) else {
            return (None, None);
        };
        let ipv4 = mine.is_ipv4();
        let Some(other) = self.bound.iter().position(|a| a.is_ipv4() != ipv4) else {
            return (Some(ipv4), None);
        };
        let group = |l: usize| {
            let first = self.listen_of.iter().position(|&x| x == l);
            first.map(|f| (f, self.listen_of.iter().filter(|&&x| x == l).count()))
        };
        let (Some((my_first, _)), Some((first, count))) = (group(self.listen_of[me]), group(other))
        else {
            return (Some(ipv4), None);
        };
        (Some(ipv4), Some(first + (me - my_first) % count))
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.listen_of.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_answers_for_another_listen_address_only_at_its_port_and_family() {
        let proxy = ProxyConfig::at("127.0.0.1:5060".parse().unwrap());
        // Shards 0, 1 on 127.0.0.1:5060; 2 on 127.0.0.2:5060; 3 on
        // 127.0.0.1:5070; 4 on [::1]:5060.
        let mut shared =
            Shared::new(proxy, RegistrarConfig::default(), vec![0, 0, 1, 2, 3]).unwrap();
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        let arrived = at("127.0.0.2:5060");
        assert!(
            shared.can_send_as(0, 1, at("127.0.0.1:5060")),
            "same listen address"
        );
        assert!(
            !shared.can_send_as(0, 2, arrived),
            "addresses unknown: the detour"
        );
        shared.bound = [
            at("127.0.0.1:5060"),
            at("127.0.0.2:5060"),
            at("127.0.0.1:5070"),
            at("[::1]:5060"),
        ]
        .into();
        assert!(shared.can_send_as(0, 2, arrived), "same port and family");
        assert!(!shared.can_send_as(3, 2, arrived), "another port");
        assert!(!shared.can_send_as(4, 2, arrived), "another family");
        assert!(!shared.can_send_as(9, 2, arrived), "no such shard");
    }

    #[test]
    fn each_shard_sends_the_other_family_through_its_peer_in_that_family() {
        let proxy = ProxyConfig::at("127.0.0.1:5060".parse().unwrap());
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        // Two shards per listen: 0, 1 on 127.0.0.1; 2, 3 on [::1]; 4, 5
        // on 127.0.0.2.
        let mut shared =
            Shared::new(proxy, RegistrarConfig::default(), vec![0, 0, 1, 1, 2, 2]).unwrap();
        assert_eq!(shared.families(0), (None, None), "addresses unknown");
        shared.bound = [at("127.0.0.1:5060"), at("[::1]:5060"), at("127.0.0.2:5060")].into();
        assert_eq!(shared.families(0), (Some(true), Some(2)));
        assert_eq!(shared.families(1), (Some(true), Some(3)));
        assert_eq!(shared.families(2), (Some(false), Some(0)));
        assert_eq!(shared.families(3), (Some(false), Some(1)));
        assert_eq!(shared.families(5), (Some(true), Some(3)));
        assert_eq!(shared.families(9), (None, None), "no such shard");
        // One IPv6 shard for two IPv4 ones: both use it.
        let mut one = Shared::new(
            ProxyConfig::at(at("127.0.0.1:5060")),
            RegistrarConfig::default(),
            vec![0, 0, 1],
        )
        .unwrap();
        one.bound = [at("127.0.0.1:5060"), at("[::1]:5060")].into();
        assert_eq!(one.families(1), (Some(true), Some(2)));
        assert_eq!(one.families(2), (Some(false), Some(0)));
        // IPv4 only: nowhere to send IPv6.
        shared.bound = [
            at("127.0.0.1:5060"),
            at("127.0.0.3:5060"),
            at("127.0.0.2:5060"),
        ]
        .into();
        assert_eq!(shared.families(4), (Some(true), None));
    }
}
