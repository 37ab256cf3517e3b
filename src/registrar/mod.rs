//! The registrar (RFC 3261 §10.3, RFC 3327 Path). So far only the pure
//! parts: [`register::apply`] turns an AOR's current bindings and one
//! REGISTER into the new bindings or the error to answer with, and
//! [`reply`] writes the 200 (bindings, Date, Path) and the 423. The owner
//! shard, replicas, expiry wheel, durability and the wiring into the shard
//! loop are issue #4's remaining work.

pub mod register;
pub mod reply;
