//! The response context of a stateful proxy (RFC 3261 §16.7): the
//! branches one request was forked or failed over to, and which of their
//! responses go upstream, when, and which branches are cancelled or
//! started next. Pure: it sees status codes and branch events, and says
//! what to do; the shard owns the messages and the client transactions.
//!
//! Targets come in groups, tried one group after another (§16.6: equal q
//! in parallel, a lower q only once the higher group has failed; failover
//! over `--upstream`s is a group per upstream). What makes the next group
//! start is the context's [`Advance`] rule: any failure for forking by q,
//! only "unavailable" (408, 503, a timeout, a transport error) for
//! failover, so that a 404 from the first upstream is the answer rather
//! than a reason to ask the second.

/// When the next group of targets is tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advance {
    /// After every branch of the group ended without a 2xx or a 6xx
    /// (§16.6, sequential search by q-value).
    OnFailure,
    /// Only when the group's best answer says its target was unavailable:
    /// 408 (or a timeout), 503 (or a transport error, §16.9), 500
    /// (failover over upstreams).
    OnUnavailable,
}

/// Where one branch is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Branch {
    /// Not started yet: its group's turn has not come.
    Waiting,
    /// Request sent, no response yet (or only 100).
    Pending,
    /// A provisional (101-199) received: a CANCEL may be sent for it.
    Ringing,
    /// Ended with this final status, received, or counted for it: a
    /// timeout as 408, a transport error as 503 (`received` false: there
    /// is no message to forward).
    Done { code: u16, received: bool },
}

/// The most branches one context has: a set of them is one `u64`, so a
/// decision allocates nothing.
pub const MAX_BRANCHES: usize = 64;

/// Which final response goes upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Final {
    /// The response this branch received, as it is.
    Branch(usize),
    /// The response this branch received, with this status instead
    /// (§16.7 step 6: a 503 goes up as 500).
    Rewritten(usize, u16),
    /// A response the proxy writes itself: 408 when nothing answered in
    /// time, 500 for a target that could not be reached (§16.9's 503).
    Generated(u16),
}

/// A set of branches, by index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BranchSet(u64);

impl BranchSet {
    fn insert(&mut self, i: usize) {
        if i < MAX_BRANCHES {
            self.0 |= 1 << i;
        }
    }

    /// True when branch `i` is in the set.
    pub fn contains(self, i: usize) -> bool {
        i < MAX_BRANCHES && self.0 & (1 << i) != 0
    }

    /// True when no branch is.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The branches in the set, in index order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_BRANCHES).filter(move |&i| self.contains(i))
    }
}

/// What the shard does after one event of the context.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Forward the response just received upstream now (a provisional
    /// other than 100, or a 2xx to an INVITE: §16.7 step 5).
    pub forward: bool,
    /// Send this final response upstream now; the server transaction
    /// then leaves Proceeding.
    pub send_final: Option<Final>,
    /// CANCEL these INVITE branches, still pending or ringing (§16.7 step
    /// 10, §16.10); each is named once. One with no provisional yet gets
    /// its CANCEL once it sends one, a 100 included (§9.1).
    pub cancel: BranchSet,
    /// Start these branches: the next group.
    pub start: BranchSet,
}

/// One request's response context.
#[derive(Clone, Debug)]
pub struct ResponseContext {
    invite: bool,
    advance: Advance,
    branches: Vec<Branch>,
    /// The group of each branch; groups are numbered from 0, in order.
    group: Vec<u16>,
    /// The group being tried.
    current: u16,
    /// A final response has gone upstream (or, for INVITE, a 2xx): later
    /// finals are not chosen again.
    final_sent: bool,
    /// A 6xx arrived: no new branch may start (§16.7 step 5).
    no_new_branches: bool,
    /// A CANCEL was received for the request (§16.10): no new branch, and
    /// what is pending is cancelled.
    cancelled: bool,
    /// Branches already named in a decision's `cancel`.
    cancel_named: BranchSet,
}

impl ResponseContext {
    /// A context for a request (an INVITE or not) to targets in `groups`
    /// (the group of each target, non-decreasing; at most
    /// [`MAX_BRANCHES`], the rest are not tried): the decision starts the
    /// first group.
    pub fn new(invite: bool, advance: Advance, groups: &[u16]) -> (ResponseContext, Decision) {
        let groups = &groups[..groups.len().min(MAX_BRANCHES)];
        let mut ctx = ResponseContext {
            invite,
            advance,
            branches: vec![Branch::Waiting; groups.len()],
            group: groups.to_vec(),
            current: groups.first().copied().unwrap_or(0),
            final_sent: false,
            no_new_branches: false,
            cancelled: false,
            cancel_named: BranchSet::default(),
        };
        let mut d = Decision::default();
        if groups.is_empty() {
            // Nothing to try: §16.7 step 6 with no response at all.
            d.send_final = Some(Final::Generated(408));
            ctx.final_sent = true;
            return (ctx, d);
        }
        ctx.start_group(&mut d);
        (ctx, d)
    }

    /// A response with status `code` arrived on `branch`'s client
    /// transaction (and was passed up by it).
    pub fn on_response(&mut self, branch: usize, code: u16) -> Decision {
        let mut d = Decision::default();
        let state = match self.branches.get(branch) {
            None | Some(Branch::Waiting) => return d,
            Some(&s) => s,
        };
        match code {
            // §16.7 step 5: 100 is hop by hop; we sent our own.
            100 => {}
            101..=199 => {
                if matches!(state, Branch::Pending | Branch::Ringing) {
                    self.branches[branch] = Branch::Ringing;
                    d.forward = !self.final_sent;
                }
            }
            // Every 2xx to an INVITE goes up, even after another (RFC
            // 6026: each fork's 2xx makes a dialog of its own); a 2xx to
            // any other request is its final answer.
            200..=299 => {
                self.branches[branch] = Branch::Done {
                    code,
                    received: true,
                };
                if self.invite {
                    d.forward = true;
                    self.final_sent = true;
                } else if !self.final_sent {
                    d.send_final = Some(Final::Branch(branch));
                    self.final_sent = true;
                }
                // Step 10: the rest are not needed any more.
                self.cancel_pending(&mut d);
            }
            _ => {
                if !matches!(state, Branch::Done { .. }) {
                    self.branches[branch] = Branch::Done {
                        code,
                        received: true,
                    };
                }
                if code >= 600 {
                    // Step 5: not forwarded yet, but everything pending is
                    // cancelled and nothing new starts; the 6xx wins at
                    // step 6 when the cancelled branches have answered.
                    self.no_new_branches = true;
                    self.cancel_pending(&mut d);
                }
                self.settle(&mut d);
            }
        }
        d
    }

    /// `branch`'s client transaction timed out (Timer B or F, or the
    /// proxy's Timer C with no provisional): a 408 from it (§16.7 step 2,
    /// §16.8).
    pub fn on_timeout(&mut self, branch: usize) -> Decision {
        self.ended_without_response(branch, 408)
    }

    /// `branch`'s request could not be sent: a 503 from it (§16.9).
    pub fn on_transport_error(&mut self, branch: usize) -> Decision {
        self.ended_without_response(branch, 503)
    }

    /// The caller's CANCEL matched this request (§16.10): every pending
    /// branch is cancelled and none starts; the final answer comes from
    /// the branches (a 487 from each, usually) when they have all ended.
    /// A CANCEL of a non-INVITE does nothing (§9.1: it cannot be
    /// cancelled).
    pub fn on_cancel(&mut self) -> Decision {
        let mut d = Decision::default();
        if self.invite {
            self.cancelled = true;
            self.cancel_pending(&mut d);
        }
        d
    }

    fn ended_without_response(&mut self, branch: usize, code: u16) -> Decision {
        let mut d = Decision::default();
        if let Some(b) = self.branches.get_mut(branch) {
            if matches!(b, Branch::Pending | Branch::Ringing) {
                *b = Branch::Done {
                    code,
                    received: false,
                };
                self.settle(&mut d);
            }
        }
        d
    }

    /// After a branch ended without a 2xx: when its group is all done,
    /// the next group starts if the rule says so, else the best response
    /// goes up (§16.7 step 6).
    fn settle(&mut self, d: &mut Decision) {
        if self.final_sent || !self.group_done() {
            return;
        }
        let best = self.best();
        let advance = !self.no_new_branches
            && !self.cancelled
            && self.has_next_group()
            && match self.advance {
                Advance::OnFailure => true,
                Advance::OnUnavailable => {
                    best.is_some_and(|i| matches!(self.code(i), 408 | 500 | 503))
                }
            };
        if advance {
            self.current = self.group[self.first_of_next_group()];
            self.start_group(d);
            return;
        }
        if !self.all_started_done() {
            // A 6xx or a CANCEL: wait for the branches still out.
            return;
        }
        self.final_sent = true;
        // A 503 means the branch's server is down, not that the caller's
        // next try elsewhere would be refused: 500 instead.
        d.send_final = Some(match best.map(|i| (i, self.branches[i])) {
            Some((
                i,
                Branch::Done {
                    code,
                    received: true,
                },
            )) => match code {
                503 => Final::Rewritten(i, 500),
                _ => Final::Branch(i),
            },
            Some((_, Branch::Done { code: 503, .. })) => Final::Generated(500),
            Some((_, Branch::Done { code, .. })) => Final::Generated(code),
            _ => Final::Generated(408),
        });
    }

    /// §16.7 step 6: the best final so far among the branches that ended:
    /// a 6xx if any; else the lowest class, preferring in 4xx the answers
    /// that tell the caller how to try again (401, 407, 415, 420, 484);
    /// else the first of that class.
    fn best(&self) -> Option<usize> {
        let done = || {
            self.branches
                .iter()
                .enumerate()
                .filter_map(|(i, b)| match *b {
                    Branch::Done { code, .. } if code >= 300 => Some((i, code)),
                    _ => None,
                })
        };
        if let Some((i, _)) = done().find(|(_, c)| *c >= 600) {
            return Some(i);
        }
        let class = done().map(|(_, c)| c / 100).min()?;
        let in_class = || done().filter(move |(_, c)| c / 100 == class);
        if class == 4 {
            if let Some((i, _)) = in_class().find(|(_, c)| matches!(c, 401 | 407 | 415 | 420 | 484))
            {
                return Some(i);
            }
        }
        // A 408 or 503 counted for a branch that sent nothing is the
        // weakest answer in its class: a received one is preferred.
        in_class()
            .min_by_key(|&(i, _)| u8::from(!self.received(i)))
            .map(|(i, _)| i)
    }

    /// The final status `branch` ended with (received, or counted for a
    /// timeout or a transport error); None while it has none.
    pub fn final_of(&self, branch: usize) -> Option<u16> {
        match self.branches.get(branch)? {
            Branch::Done { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True for an INVITE's context.
    pub fn is_invite(&self) -> bool {
        self.invite
    }

    /// Branches in the context.
    pub fn len(&self) -> usize {
        self.branches.len()
    }

    /// True when it has no branch.
    pub fn is_empty(&self) -> bool {
        self.branches.is_empty()
    }

    fn code(&self, i: usize) -> u16 {
        match self.branches[i] {
            Branch::Done { code, .. } => code,
            _ => 0,
        }
    }

    fn received(&self, i: usize) -> bool {
        matches!(self.branches[i], Branch::Done { received: true, .. })
    }

    fn in_current(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.branches.len()).filter(|&i| self.group[i] == self.current)
    }

    fn group_done(&self) -> bool {
        self.in_current()
            .all(|i| matches!(self.branches[i], Branch::Done { .. }))
    }

    fn all_started_done(&self) -> bool {
        self.branches
            .iter()
            .all(|b| matches!(b, Branch::Done { .. } | Branch::Waiting))
    }

    fn has_next_group(&self) -> bool {
        self.group.iter().any(|&g| g > self.current)
    }

    fn first_of_next_group(&self) -> usize {
        self.group
            .iter()
            .position(|&g| g > self.current)
            .unwrap_or(self.group.len())
    }

    fn start_group(&mut self, d: &mut Decision) {
        for i in 0..self.branches.len() {
            if self.group[i] == self.current && self.branches[i] == Branch::Waiting {
                self.branches[i] = Branch::Pending;
                d.start.insert(i);
            }
        }
    }

    /// Names in `d.cancel` every INVITE branch still out and not named
    /// before (§9.1: a non-INVITE is not cancelled).
    fn cancel_pending(&mut self, d: &mut Decision) {
        if !self.invite {
            return;
        }
        for (i, b) in self.branches.iter().enumerate() {
            if matches!(b, Branch::Pending | Branch::Ringing) && !self.cancel_named.contains(i) {
                self.cancel_named.insert(i);
                d.cancel.insert(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: BranchSet) -> Vec<usize> {
        s.iter().collect()
    }

    fn parallel(n: usize) -> ResponseContext {
        let (ctx, d) = ResponseContext::new(true, Advance::OnFailure, &vec![0; n]);
        assert_eq!(set(d.start), (0..n).collect::<Vec<_>>());
        ctx
    }

    #[test]
    fn equal_q_targets_start_together_lower_q_waits() {
        let (_, d) = ResponseContext::new(true, Advance::OnFailure, &[0, 0, 1]);
        assert_eq!(set(d.start), [0, 1]);
    }

    #[test]
    fn step5_a_100_is_not_forwarded_other_provisionals_are() {
        let mut ctx = parallel(1);
        assert!(!ctx.on_response(0, 100).forward);
        assert!(ctx.on_response(0, 180).forward);
        assert!(ctx.on_response(0, 183).forward);
    }

    #[test]
    fn step5_every_2xx_to_an_invite_is_forwarded_and_step10_cancels_the_rest() {
        let mut ctx = parallel(3);
        ctx.on_response(1, 180);
        let d = ctx.on_response(0, 200);
        assert!(d.forward);
        assert_eq!(d.send_final, None, "a 2xx goes up as it is, not chosen");
        assert_eq!(set(d.cancel), [1, 2]);
        // Another fork's 2xx before its CANCEL took: forwarded too, and
        // no branch is named for CANCEL twice.
        let d = ctx.on_response(1, 200);
        assert!(d.forward);
        assert!(d.cancel.is_empty());
        // The cancelled branch's 487 goes nowhere.
        assert_eq!(ctx.on_response(2, 487), Decision::default());
    }

    #[test]
    fn a_non_invite_2xx_is_the_final_answer_once() {
        let (mut ctx, _) = ResponseContext::new(false, Advance::OnFailure, &[0, 0]);
        let d = ctx.on_response(1, 200);
        assert_eq!(d.send_final, Some(Final::Branch(1)));
        assert!(d.cancel.is_empty(), "§9.1: a non-INVITE is not cancelled");
        assert_eq!(ctx.on_response(0, 202).send_final, None);
        assert_eq!(ctx.on_cancel(), Decision::default());
    }

    #[test]
    fn step6_with_every_branch_failed_the_lowest_class_goes_up() {
        let mut ctx = parallel(3);
        assert_eq!(ctx.on_response(0, 486).send_final, None, "others pending");
        assert_eq!(ctx.on_response(1, 302).send_final, None);
        assert_eq!(ctx.on_response(2, 404).send_final, Some(Final::Branch(1)));
    }

    #[test]
    fn step6_a_6xx_wins_over_any_lower_class() {
        let mut ctx = parallel(3);
        ctx.on_response(0, 302);
        let d = ctx.on_response(1, 603);
        assert_eq!(d.send_final, None, "not forwarded at once (step 5)");
        assert_eq!(set(d.cancel), [2]);
        let d = ctx.on_response(2, 487);
        assert_eq!(d.send_final, Some(Final::Branch(1)));
    }

    #[test]
    fn step5_after_a_6xx_no_lower_q_group_starts() {
        let (mut ctx, _) = ResponseContext::new(true, Advance::OnFailure, &[0, 1]);
        let d = ctx.on_response(0, 600);
        assert!(d.start.is_empty());
        assert_eq!(d.send_final, Some(Final::Branch(0)));
    }

    #[test]
    fn step6_in_4xx_answers_that_help_a_retry_are_preferred() {
        let mut ctx = parallel(3);
        ctx.on_response(0, 404);
        ctx.on_response(1, 407);
        let d = ctx.on_response(2, 480);
        assert_eq!(d.send_final, Some(Final::Branch(1)));
    }

    #[test]
    fn step6_a_503_goes_up_as_500() {
        let mut ctx = parallel(1);
        let d = ctx.on_response(0, 503);
        assert_eq!(d.send_final, Some(Final::Rewritten(0, 500)));
    }

    #[test]
    fn a_real_answer_beats_a_timeout_in_the_same_class() {
        let mut ctx = parallel(2);
        ctx.on_timeout(0);
        let d = ctx.on_response(1, 486);
        assert_eq!(d.send_final, Some(Final::Branch(1)));
    }

    #[test]
    fn nothing_answered_means_a_408() {
        let mut ctx = parallel(2);
        ctx.on_timeout(0);
        let d = ctx.on_timeout(1);
        assert_eq!(d.send_final, Some(Final::Generated(408)));
        let (_, d) = ResponseContext::new(true, Advance::OnFailure, &[]);
        assert_eq!(d.send_final, Some(Final::Generated(408)));
    }

    #[test]
    fn s16_9_an_unreachable_target_counts_as_503_and_goes_up_as_500() {
        let mut ctx = parallel(1);
        let d = ctx.on_transport_error(0);
        assert_eq!(d.send_final, Some(Final::Generated(500)));
    }

    #[test]
    fn q_groups_run_one_after_another_on_any_failure() {
        let (mut ctx, d) = ResponseContext::new(true, Advance::OnFailure, &[0, 0, 1, 2]);
        assert_eq!(set(d.start), [0, 1]);
        assert!(
            ctx.on_response(0, 486).start.is_empty(),
            "branch 1 still out"
        );
        let d = ctx.on_response(1, 404);
        assert_eq!(set(d.start), [2]);
        assert_eq!(d.send_final, None);
        let d = ctx.on_response(2, 480);
        assert_eq!(set(d.start), [3]);
        let d = ctx.on_response(3, 603);
        assert_eq!(d.send_final, Some(Final::Branch(3)));
    }

    #[test]
    fn failover_moves_on_only_when_the_upstream_was_unavailable() {
        let (mut ctx, d) = ResponseContext::new(true, Advance::OnUnavailable, &[0, 1, 2]);
        assert_eq!(set(d.start), [0]);
        assert_eq!(set(ctx.on_response(0, 503).start), [1]);
        assert_eq!(set(ctx.on_transport_error(1).start), [2]);
        // A 404 is an answer: it goes up, nothing more is tried.
        let (mut ctx, _) = ResponseContext::new(true, Advance::OnUnavailable, &[0, 1]);
        let d = ctx.on_response(0, 404);
        assert!(d.start.is_empty());
        assert_eq!(d.send_final, Some(Final::Branch(0)));
    }

    #[test]
    fn failover_exhausted_sends_the_best_and_never_a_503() {
        let (mut ctx, _) = ResponseContext::new(true, Advance::OnUnavailable, &[0, 1]);
        ctx.on_response(0, 503);
        let d = ctx.on_transport_error(1);
        assert_eq!(d.send_final, Some(Final::Rewritten(0, 500)));
        // The lowest class wins (step 6): a timeout's 408 over a 503.
        let (mut ctx, _) = ResponseContext::new(true, Advance::OnUnavailable, &[0, 1]);
        ctx.on_response(0, 503);
        let d = ctx.on_timeout(1);
        assert_eq!(d.send_final, Some(Final::Generated(408)));
    }

    #[test]
    fn a_late_timeout_after_the_answer_changes_nothing() {
        let mut ctx = parallel(1);
        ctx.on_response(0, 486);
        assert_eq!(ctx.on_timeout(0), Decision::default());
    }

    #[test]
    fn targets_past_the_limit_are_not_tried() {
        let (_, d) = ResponseContext::new(true, Advance::OnFailure, &[0; 70]);
        assert_eq!(d.start.iter().count(), MAX_BRANCHES);
    }

    #[test]
    fn a_cancel_cancels_what_is_out_and_starts_nothing_more() {
        let (mut ctx, _) = ResponseContext::new(true, Advance::OnFailure, &[0, 0, 1]);
        ctx.on_response(0, 180);
        let d = ctx.on_cancel();
        assert_eq!(set(d.cancel), [0, 1]);
        ctx.on_response(0, 487);
        let d = ctx.on_response(1, 487);
        assert!(d.start.is_empty(), "the lower-q group never starts");
        assert_eq!(d.send_final, Some(Final::Branch(0)));
    }

    #[test]
    fn provisionals_after_the_final_are_not_forwarded() {
        let mut ctx = parallel(2);
        ctx.on_response(0, 200);
        assert!(!ctx.on_response(1, 180).forward);
    }

    #[test]
    fn a_response_for_an_unknown_branch_is_ignored() {
        let mut ctx = parallel(1);
        assert_eq!(ctx.on_response(5, 200), Decision::default());
    }
}
