//! The stateless proxy (RFC 3261 §16, §16.11; RFC 3581): a pure function
//! from a parsed message, its source address and the configuration to an
//! [`Action`], with the [`Edits`](crate::sip::Edits) that turn the incoming
//! datagram into the outgoing one. No sockets, no clock, no allocation, so
//! every rule is unit-tested here and the shard loop only moves bytes.

pub mod branch;
mod route;

pub use route::{
    nat_params, reply_address, route, unsupported, Action, DropReason, Lookup, NatEdit,
    ProxyConfig, Scratch, PROXY_SUPPORTED,
};
