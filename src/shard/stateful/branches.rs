//! A request's branches beyond its first (§16.6, §16.7): forking to
//! every live binding of an AOR, by q (equal q in parallel, a lower q
//! once the higher ones failed), and failover over `--upstream`s (one
//! group per upstream, tried when the one before was unavailable). Each
//! branch has a branch parameter of its own (its index named in it) and
//! its own client transaction.

use super::*;

/// What starting a request's other branches needs: each branch's
/// request until it starts, where each goes, and each branch's client
/// transaction once started.
pub(super) struct Branches {
    /// The request as first sent: a failover branch is it with its
    /// branch renamed. None when every branch has its own (forking).
    pub(super) template: Option<Box<[u8]>>,
    /// A fork's own request (its Request-URI is its binding's contact),
    /// taken when the branch starts.
    pub(super) requests: Box<[Option<Box<[u8]>>]>,
    pub(super) targets: Box<[Dest]>,
    pub(super) clients: Box<[Option<TxId>]>,
    /// Each branch's failure (3xx-6xx) as received, and from where, kept
    /// until the context chooses the answer (§16.7 step 6).
    pub(super) finals: Box<[Option<Kept>]>,
}

/// A response kept as received, and where it came from.
pub(super) type Kept = (Box<[u8]>, Source);

/// The other forks of a request for an AOR with several live bindings,
/// written: where each goes, its request (branch index 0, renamed when
/// it starts) and its q; and the first binding's q.
pub(in crate::shard) struct Forks {
    pub(in crate::shard) first_q: u16,
    pub(in crate::shard) others: Vec<(Dest, Box<[u8]>, u16)>,
}

impl Forks {
    /// The q-value group of each fork, the first included: numbered
    /// from 0, a new group wherever q falls (the order is by q already).
    fn groups(&self) -> Vec<u16> {
        let mut groups = Vec::with_capacity(self.others.len() + 1);
        let (mut group, mut q) = (0u16, self.first_q);
        groups.push(group);
        for &(_, _, next) in &self.others {
            if next != q {
                group += 1;
                q = next;
            }
            groups.push(group);
        }
        groups
    }
}

/// A request's branches: where each goes, the group of each, how the
/// next group is reached, and what starting a later branch needs (None
/// when there is one branch, the common case, which costs nothing more).
pub(super) struct Plan {
    pub(super) groups: Vec<u16>,
    pub(super) advance: Advance,
    pub(super) branches: Option<Box<Branches>>,
}

impl Plan {
    /// The plan for a request first sent as `sent` to `to`: its forks
    /// when it has some, else failover over the `--upstream`s after `to`
    /// (at most `max_failover`).
    pub(super) fn new(
        cfg: &ProxyConfig,
        sent: &[u8],
        to: Dest,
        forks: Option<Forks>,
        max_failover: usize,
    ) -> Plan {
        if let Some(forks) = forks.filter(|f| !f.others.is_empty()) {
            let groups = forks.groups();
            let mut targets = vec![to];
            let mut requests = vec![None];
            for (dest, request, _) in forks.others {
                targets.push(dest);
                requests.push(Some(request));
            }
            return Plan {
                groups,
                advance: Advance::OnFailure,
                branches: Some(Box::new(Branches {
                    template: None,
                    clients: vec![None; targets.len()].into(),
                    finals: targets.iter().map(|_| None).collect(),
                    requests: requests.into(),
                    targets: targets.into(),
                })),
            };
        }
        let targets = failover_targets(cfg, to, max_failover);
        Plan {
            groups: (0..targets.len().max(1) as u16).collect(),
            advance: Advance::OnUnavailable,
            branches: (targets.len() > 1).then(|| {
                Box::new(Branches {
                    template: Some(sent.into()),
                    clients: vec![None; targets.len()].into(),
                    finals: targets.iter().map(|_| None).collect(),
                    requests: vec![None; targets.len()].into(),
                    targets: targets.into(),
                })
            }),
        }
    }
}

impl Shard<'_> {
    /// The other forks of `msg`, whose best binding was just forwarded
    /// to: each live binding after it in fork `order`, routed (Request-URI,
    /// Path; over UDP, or over the connection it registered on) and
    /// written; at most [`crate::transaction::MAX_BRANCHES`] in all.
    pub(in crate::shard) fn fork_requests<S: SendQueue>(
        &mut self,
        msg: &Message<'_>,
        src: &Source,
        order: &[(usize, u16)],
        send: &mut S,
    ) -> Option<Forks> {
        let (&(_, first_q), rest) = order.split_first()?;
        let mut others = Vec::with_capacity(rest.len());
        for &(index, q) in rest.iter().take(MAX_BRANCHES - 1) {
            let mut edits = Edits::new();
            let loc = Lookup {
                replica: &self.location.replica,
                now: self.now,
                pick: Some(index),
            };
            let action = route(
                msg,
                src,
                &self.shared.proxy,
                loc,
                &mut self.scratch,
                &mut edits,
            );
            let Action::Forward(to) = action else {
                continue;
            };
            // Written in a send slot, then copied out; the slot is not
            // committed and serves the next.
            let written = send.slot().and_then(|slot| {
                let n = edits.write(msg, slot).ok()?;
                slot.get(..n).map(Box::<[u8]>::from)
            });
            if let Some(request) = written {
                others.push((to, request, q));
            }
        }
        Some(Forks { first_q, others })
    }

    /// Sends branch `b` of server transaction `sid` (a fork, or failover
    /// to the next upstream) with its branch index named in it, in a
    /// client transaction of its own. The transaction opens even when
    /// the send queue had no room: its retransmission (Timer A or E)
    /// sends it then.
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
        // Timer C runs for whichever INVITE branches are out: it may have
        // fired for the group before this one (§16.6 step 11).
        if kind == Kind::Invite && s.timer_c.is_none() {
            s.timer_c = Some(wheel.arm(now + cfg.fr_inv_timeout_ms, Due::TimerC(sid)));
        }
        let Some(f) = s.branches.as_mut() else {
            return;
        };
        // Its client transaction first, so that nothing is sent that no
        // transaction could cancel or end.
        let started = match branch_request(f, b, clients) {
            Some((request, key, to)) => {
                let server = Some((sid, b));
                match open_client(clients, wheel, cfg, key, kind, request, to, server, now) {
                    Some(cid) => {
                        if let Some(slot) = f.clients.get_mut(b) {
                            *slot = Some(cid);
                        }
                        let sent = clients
                            .get(cid)
                            .is_some_and(|c| queue(send, &c.request, to));
                        if sent {
                            add(&counters.forwarded_requests, 1);
                        }
                        true
                    }
                    None => false,
                }
            }
            None => false,
        };
        if !started {
            // No room for its client side (or nothing to send): the
            // branch ends as if it could not be reached (§16.9), so that
            // the context moves on.
            let st = self.stateful.as_deref_mut();
            let d = st
                .and_then(|st| st.servers.get_mut(sid))
                .map(|s| s.ctx.on_transport_error(b));
            if let Some(d) = d {
                self.carry_out(sid, d, None, send);
            }
        }
    }
}

/// Branch `b`'s request with its index named in its branch, its client
/// transaction key and where it goes; None when there is none.
fn branch_request(
    f: &mut Branches,
    b: usize,
    clients: &Table<ClientEntry>,
) -> Option<(Box<[u8]>, crate::transaction::Key, Dest)> {
    let (&to, index) = (f.targets.get(b)?, u8::try_from(b).ok()?);
    let own = f.requests.get_mut(b).and_then(Option::take);
    let mut request = own.or_else(|| f.template.clone())?;
    let (at, len) = our_branch(&request)?;
    name_branch(request.get_mut(at..at + len)?, index);
    let method = Message::parse(&request).ok()?.method()?;
    let key = clients.sent_key(request.get(at..at + len)?, method);
    Some((request, key, to))
}

/// Where a request forwarded to `to` may go when that is unavailable:
/// `to` first, then, when `to` is one of the `--upstream`s, the next ones
/// in their order (wrapping) that are in the rotation, at most `max` of
/// them. Only upstreams over the same transport and IP family as `to`:
/// each is sent the request as first written, whose Via names that
/// transport and our address of that family (§18.2.2: the responses come
/// back by it).
pub(super) fn failover_targets(cfg: &ProxyConfig, to: Dest, max: usize) -> Vec<Dest> {
    let mut targets = vec![to];
    let (peer, transport, from) = match to {
        Dest::Udp { peer, from } => (peer, Transport::Udp, from),
        Dest::Outbound { peer, transport } => (peer, transport, None),
        Dest::Conn(_) => return targets,
    };
    let alike = |u: &TransportAddr| u.transport == transport && u.addr.is_ipv4() == peer.is_ipv4();
    let Some(first) = cfg
        .upstreams
        .iter()
        .position(|u| alike(u) && u.addr == peer)
    else {
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
        if alike(u) && cfg.health.is_up(i) && u.addr != peer {
            targets.push(match transport {
                Transport::Udp => Dest::Udp { peer: u.addr, from },
                _ => Dest::Outbound {
                    peer: u.addr,
                    transport,
                },
            });
        }
    }
    targets
}

/// Where our branch is in `request` (a request as we sent it): its
/// offset and length.
pub(super) fn our_branch(request: &[u8]) -> Option<(usize, usize)> {
    let m = Message::parse(request).ok()?;
    let branch = m.via().ok()?.branch?;
    let at = (branch.as_ptr() as usize).checked_sub(request.as_ptr() as usize)?;
    Some((at, branch.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forks(first_q: u16, qs: &[u16]) -> Forks {
        let to = Dest::Udp {
            peer: "127.0.0.1:5060".parse().unwrap(),
            from: None,
        };
        Forks {
            first_q,
            others: qs.iter().map(|&q| (to, Box::from(&b""[..]), q)).collect(),
        }
    }

    #[test]
    fn equal_q_forks_share_a_group_and_a_lower_q_starts_the_next() {
        assert_eq!(
            forks(1000, &[1000, 500, 500, 100]).groups(),
            [0, 0, 1, 1, 2]
        );
        assert_eq!(forks(700, &[]).groups(), [0]);
    }
}
