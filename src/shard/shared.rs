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

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.listen_of.len()
    }
}
