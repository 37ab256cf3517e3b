//! Failover over `--upstream`s (§16.7, one group per upstream): which
//! upstreams a request may go to next, and sending it there with a
//! branch of its own.

use super::*;

/// What starting another branch of a request needs: the request as first
/// sent (its branch is renamed for each), where each branch goes, and
/// each branch's client transaction once started.
pub(super) struct Failover {
    pub(super) template: Box<[u8]>,
    pub(super) targets: Box<[Dest]>,
    pub(super) clients: Box<[Option<TxId>]>,
}

impl Shard<'_> {
    /// Sends branch `b` of server transaction `sid` (failover to the next
    /// upstream): the request as first sent, its branch renamed, in a
    /// client transaction of its own.
    pub(super) fn start_branch<S: SendQueue>(&mut self, sid: TxId, b: usize, send: &mut S) {
        let now = self.now_ms;
        let counters = self.counters;
        let Some(st) = self.stateful.as_deref_mut() else {
            return;
        };
        let Stateful {
            servers,
            clients,
            wheel,
            cfg,
            ..
        } = st;
        let Some(s) = servers.get_mut(sid) else {
            return;
        };
        let kind = if s.ctx.is_invite() {
            Kind::Invite
        } else {
            Kind::NonInvite
        };
        let Some(f) = s.failover.as_mut() else {
            return;
        };
        let (Some(&to), Ok(index)) = (f.targets.get(b), u8::try_from(b)) else {
            return;
        };
        let mut request = f.template.clone();
        let Some((at, len)) = our_branch(&request) else {
            return;
        };
        let Some(branch) = request.get_mut(at..at + len) else {
            return;
        };
        name_branch(branch, index);
        let Some(key) = Message::parse(&request)
            .ok()
            .and_then(|m| Some(clients.sent_key(request.get(at..at + len)?, m.method()?)))
        else {
            return;
        };
        if !queue(send, &request, to) {
            return;
        }
        add(&counters.forwarded_requests, 1);
        let server = Some((sid, b));
        let Some(cid) = open_client(clients, wheel, cfg, key, kind, request, to, server, now)
        else {
            return;
        };
        if let Some(slot) = f.clients.get_mut(b) {
            *slot = Some(cid);
        }
    }
}

/// Where a request forwarded to `to` may go when that is unavailable:
/// `to` first, then, when `to` is one of the `--upstream`s over UDP, the
/// next ones in their order (wrapping) that are over UDP and in the
/// rotation, at most `max` of them.
pub(super) fn failover_targets(cfg: &ProxyConfig, to: Dest, max: usize) -> Vec<Dest> {
    let mut targets = vec![to];
    let Dest::Udp { peer, from } = to else {
        return targets;
    };
    let udp = |u: &TransportAddr| u.transport == Transport::Udp;
    let Some(first) = cfg.upstreams.iter().position(|u| udp(u) && u.addr == peer) else {
        return targets;
    };
    let n = cfg.upstreams.len();
    for i in (1..n).map(|k| (first + k) % n) {
        if targets.len() > max {
            break;
        }
        let Some(u) = cfg.upstreams.get(i) else {
            continue;
        };
        if udp(u) && cfg.health.is_up(i) && u.addr != peer {
            let from = from.filter(|ip| ip.is_ipv4() == u.addr.is_ipv4());
            targets.push(Dest::Udp { peer: u.addr, from });
        }
    }
    targets
}

/// Where our branch is in `request` (a request as we sent it): its
/// offset and length.
fn our_branch(request: &[u8]) -> Option<(usize, usize)> {
    let m = Message::parse(request).ok()?;
    let branch = m.via().ok()?.branch?;
    let at = (branch.as_ptr() as usize).checked_sub(request.as_ptr() as usize)?;
    Some((at, branch.len()))
}
