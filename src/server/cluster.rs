//! `--cluster` at start-up: the link to Redis and each shard's side of it
//! (docs/cluster.md).

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::StartupError;
use crate::config::Config;
use crate::location::owner_of;
use crate::shard::mail::Mail;
use crate::shard::Shared;

/// Other nodes' changes an owner's inbox holds at most before the
/// cluster tailer waits for it (about 1.5 MB of mail per shard).
const CLUSTER_MAIL_MAX: usize = 4096;

/// What [`start_cluster`] returns: a side per shard, the link's threads,
/// the banner's line.
pub(super) type ClusterStart = (
    Vec<crate::cluster::Side>,
    Option<crate::cluster::Link>,
    Option<String>,
);

/// Starts the cluster link (`--cluster`): its writer and tailer threads,
/// and each shard's side. Redis may be away: the link keeps trying.
pub(super) fn start_cluster(
    cfg: &Config,
    c: &crate::config::ClusterSettings,
    shared: &Arc<Shared>,
    bound: &[SocketAddr],
    stats: Arc<crate::cluster::LinkStats>,
    stop: &Arc<AtomicBool>,
) -> Result<ClusterStart, StartupError> {
    use crate::cluster::{link, Change, LinkConfig, Routes, Side};
    let addr = match (c.node_addr, bound.first()) {
        (Some(a), _) => a,
        (None, Some(&a)) if !a.ip().is_unspecified() => a,
        _ => {
            return Err(StartupError::Cluster(
                "--cluster: the first --listen address is a wildcard; give --node-addr, the \
                 address other nodes reach this one at"
                    .to_string(),
            ))
        }
    };
    let node: Box<[u8]> = c.node_id.as_bytes().into();
    let link_cfg = LinkConfig {
        url: c.url.clone(),
        node: node.clone(),
        prefix: c.prefix.clone(),
        queue: c.queue,
        stream_max: c.stream_max,
        ca: c.ca.clone(),
    };
    let to_owners = shared.clone();
    let shards = shared.shards();
    let deliver: link::Deliver = Arc::new(move |aor: &[u8], change: &Change, loaded: bool| {
        let owner = owner_of(aor, shards);
        let mail = Mail::Cluster {
            aor: aor.into(),
            change: Box::new(change.clone()),
            loaded,
        };
        // Past a few thousand waiting, the tailer waits instead: what a
        // load of the whole table holds in flight stays small.
        to_owners
            .inboxes
            .get(owner)
            .is_some_and(|i| i.len() < CLUSTER_MAIL_MAX && i.push(mail).is_ok())
    });
    let link = link::prepare(link_cfg, stats.clone(), deliver, stop.clone())
        .map_err(StartupError::Cluster)?;
    let routes = Routes {
        addr,
        conn_key: shared.proxy.conn_key.clone(),
        nat: cfg.nat,
    };
    let sides = (0..shards)
        .map(|_| {
            Side::new(
                node.clone(),
                link.queue.clone(),
                stats.clone(),
                routes.clone(),
                cfg.registrar.max_contacts,
                cfg.state_dir.is_some(),
            )
            .with_overflow(c.queue)
        })
        .collect();
    let note = format!(
        "cluster: node {} at {addr}, location service shared through {} (prefix {})",
        c.node_id,
        crate::config::redacted_url(&c.url),
        c.prefix
    );
    Ok((sides, Some(link), Some(note)))
}
