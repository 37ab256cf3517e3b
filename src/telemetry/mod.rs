//! What the server tells its operator: the log ([`logging`], `tracing` to
//! stderr through a non-blocking writer), the periodic and exit counter
//! lines ([`stats`]), and the Prometheus exposition ([`metrics`]). All of it
//! reads the shards' counters from outside the shards; a shard writes
//! only its own counters and its rate-limited drop lines.

pub mod logging;
pub mod metrics;
pub mod stats;
