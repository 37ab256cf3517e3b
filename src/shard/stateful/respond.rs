//! What the shard sends for a transaction once something is decided:
//! a response context's decision carried out (§16.7: a branch's
//! response forwarded, or our own final written, branches cancelled or
//! started), and the CANCEL of a branch (§9.1).

use super::*;

impl Shard<'_> {
    /// Does what a response context decided for server transaction `sid`:
    /// forwards `response` (the one just received, with its branch) or
    /// writes our own final, cancels branches and starts the next ones.
    /// True when something went upstream.
    pub(super) fn carry_out<S: SendQueue>(
        &mut self,
        sid: TxId,
        d: Decision,
        response: Option<(usize, &Message<'_>, &Source)>,
        send: &mut S,
    ) -> bool {
        let mut went = false;
        let this = response.map(|(b, _, _)| b);
        if d.forward {
            if let Some((_, msg, src)) = response {
                went |= self.respond_with(sid, msg, src, send);
            }
        }
        match d.send_final {
            Some(Final::Branch(b)) if Some(b) == this => {
                if let Some((_, msg, src)) = response {
                    went |= self.respond_with(sid, msg, src, send);
                }
            }
            // An earlier branch's answer, chosen now that the others have
            // ended: the copy kept of it (its Contact for a 3xx, its
            // challenge for a 401 or 407, its To tag).
            Some(Final::Branch(b)) => {
                let kept = self
                    .stateful
                    .as_deref_mut()
                    .and_then(|st| st.servers.get_mut(sid))
                    .and_then(|s| s.branches.as_mut())
                    .and_then(|f| f.finals.get_mut(b))
                    .and_then(Option::take);
                let parsed = kept
                    .as_ref()
                    .and_then(|(bytes, src)| Some((Message::parse(bytes).ok()?, *src)));
                match parsed {
                    Some((msg, src)) => went |= self.respond_with(sid, &msg, &src, send),
                    None => {
                        let code = self
                            .stateful
                            .as_deref()
                            .and_then(|st| st.servers.get(sid))
                            .and_then(|s| s.ctx.final_of(b));
                        went |= self.respond_ourselves(sid, code.unwrap_or(500), send);
                    }
                }
            }
            Some(Final::Rewritten(_, code) | Final::Generated(code)) => {
                went |= self.respond_ourselves(sid, code, send);
            }
            None => {}
        }
        for b in d.cancel.iter() {
            let client = self
                .stateful
                .as_deref()
                .and_then(|st| st.servers.get(sid))
                .and_then(|s| s.client_of(b));
            if let Some(cid) = client {
                self.send_cancel(cid, send);
            }
        }
        for b in d.start.iter() {
            self.start_branch(sid, b, send);
        }
        went
    }

    /// Forwards `msg`, a branch's response, upstream in server
    /// transaction `sid` (§16.7 step 9: our Via removed), keeping a copy
    /// for its retransmissions.
    fn respond_with<S: SendQueue>(
        &mut self,
        sid: TxId,
        msg: &Message<'_>,
        src: &Source,
        send: &mut S,
    ) -> bool {
        let Some(code) = msg.status() else {
            return false;
        };
        let Shard {
            stateful,
            scratch,
            location,
            shared,
            counters,
            now,
            ..
        } = self;
        let Some(s) = stateful
            .as_deref_mut()
            .and_then(|st| st.servers.get_mut(sid))
        else {
            return false;
        };
        let fx = s.tx.on_respond(code);
        let mut went = false;
        if fx.send.is_some() {
            let mut edits = Edits::new();
            let loc = Lookup::best(&location.replica, *now);
            match route(msg, src, &shared.proxy, loc, scratch, &mut edits) {
                Action::Forward(to) => {
                    let written = send.slot().and_then(|slot| {
                        let n = edits.write(msg, slot).ok()?;
                        Some((slot.get(..n)?.into(), n))
                    });
                    match written {
                        Some((copy, n)) => {
                            send.commit(n, to);
                            add(&counters.forwarded_responses, 1);
                            s.last = Some((copy, to));
                            went = true;
                        }
                        None => counters.dropped(DropReason::WriteFailed),
                    }
                }
                Action::Drop(r) => counters.dropped(r),
                _ => {}
            }
        }
        self.server_timers(sid, fx);
        went
    }

    /// Writes our own final `code` (408 when the branch never answered,
    /// 500 for its 503, §16.7 step 6) to the request of server
    /// transaction `sid`, and sends it.
    fn respond_ourselves<S: SendQueue>(&mut self, sid: TxId, code: u16, send: &mut S) -> bool {
        let counters = self.counters;
        let Some(s) = self
            .stateful
            .as_deref_mut()
            .and_then(|st| st.servers.get_mut(sid))
        else {
            return false;
        };
        let fx = s.tx.on_respond(code);
        let mut went = false;
        if fx.send.is_some() {
            let to = s.reply_to;
            let written = Message::parse(&s.request).ok().and_then(|req| {
                let slot = send.slot()?;
                let n = write_local_answer(&req, &s.src, code, (reason(code), ""), slot)?;
                Some((slot.get(..n)?.into(), n))
            });
            if let Some((copy, n)) = written {
                send.commit(n, to);
                add(&counters.replies[status_class(code)], 1);
                s.last = Some((copy, to));
                went = true;
            }
        }
        self.server_timers(sid, fx);
        went
    }

    /// Sends the CANCEL of client transaction `cid`'s INVITE (§9.1),
    /// in a client transaction of its own; owed until the branch rings
    /// when it has not yet.
    pub(super) fn send_cancel<S: SendQueue>(&mut self, cid: TxId, send: &mut S) {
        let now = self.now_ms;
        let Some(st) = self.stateful.as_deref_mut() else {
            return;
        };
        let Some(c) = st.clients.get_mut(cid) else {
            return;
        };
        match c.tx.state() {
            ClientState::Calling => {
                c.cancel_when_ringing = true;
                return;
            }
            ClientState::Proceeding if !c.cancel_sent => {
                c.cancel_when_ringing = false;
                c.cancel_sent = true;
            }
            // Cancelled already, or answered: nothing more to do.
            _ => return,
        }
        let to = c.to;
        let Ok(req) = Message::parse(&c.request) else {
            return;
        };
        // Our branch, copied out of the request the table holds.
        let mut branch = [0u8; 64];
        let Some(ours) = req.via().ok().and_then(|v| v.branch) else {
            return;
        };
        let len = ours.len().min(branch.len());
        branch[..len].copy_from_slice(&ours[..len]);
        let Some(slot) = send.slot() else {
            return;
        };
        let Ok(n) = write_cancel(&req, slot) else {
            return;
        };
        let Some(copy) = slot.get(..n).map(Box::<[u8]>::from) else {
            return;
        };
        send.commit(n, to);
        let key = st.clients.sent_key(&branch[..len], Method::Cancel);
        let Stateful {
            clients,
            wheel,
            cfg,
            ..
        } = st;
        let _ = open_client(
            clients,
            wheel,
            cfg,
            key,
            Kind::NonInvite,
            copy,
            to,
            None,
            now,
        );
        // §9.1: the cancelled INVITE gets 64*T1 for its final, then
        // ends, whatever the next hop does. (A stale one finds nothing:
        // the id's generation has moved on.)
        let wait = cfg.durations.first(Timer::B, false);
        wheel.arm(now.saturating_add(wait), Due::CancelDeadline(cid));
    }
}
