//! Client transactions (RFC 3261 §17.1, with RFC 6026's Accepted state):
//! what a request the proxy sent does with each response, timer and
//! transport error. Pure: the shard hands it the event and carries out
//! the [`Effects`] (sending, arming and disarming timers, telling the
//! proxy core).

use super::timer::{Durations, Timer, TimerSet};
use super::{Effects, End, Kind, Send};

/// Where a client transaction is (§17.1.1.2 figure 5 with RFC 6026
/// figure 5's Accepted; §17.1.2.2 figure 6). Terminated is not a state:
/// a step that ends the transaction says so in [`Effects::ended`] and the
/// transaction is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientState {
    /// INVITE sent, nothing heard.
    Calling,
    /// Non-INVITE sent, nothing heard.
    Trying,
    /// A provisional response heard.
    Proceeding,
    /// A final response heard (a non-2xx for INVITE): retransmitted
    /// finals are absorbed.
    Completed,
    /// INVITE answered 2xx (RFC 6026 §8.4): every further 2xx, a
    /// retransmission or another fork's, is passed up until Timer M.
    Accepted,
}

/// One client transaction.
#[derive(Clone, Copy, Debug)]
pub struct ClientTx {
    kind: Kind,
    state: ClientState,
    reliable: bool,
    /// The current retransmission interval (A or E), in ms.
    interval: u64,
    durations: Durations,
}

impl ClientTx {
    /// A transaction for a request of `kind` that the shard has just sent
    /// over a transport that is `reliable` or not; the effects arm its
    /// first timers (A and B, or E and F; no A or E over a reliable
    /// transport, §17.1.1.2, §17.1.2.2).
    pub fn start(kind: Kind, reliable: bool, durations: Durations) -> (ClientTx, Effects) {
        let (state, retransmit, timeout) = match kind {
            Kind::Invite => (ClientState::Calling, Timer::A, Timer::B),
            Kind::NonInvite => (ClientState::Trying, Timer::E, Timer::F),
        };
        let interval = durations.first(retransmit, reliable);
        let tx = ClientTx {
            kind,
            state,
            reliable,
            interval,
            durations,
        };
        let mut fx = Effects::default();
        if interval > 0 {
            fx.arm(retransmit, interval);
        }
        fx.arm(timeout, durations.first(timeout, reliable));
        (tx, fx)
    }

    /// INVITE or not.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The state it is in.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// A response with status `code` matched this transaction (§17.1.3).
    pub fn on_response(&mut self, code: u16) -> Effects {
        match self.kind {
            Kind::Invite => self.invite_response(code),
            Kind::NonInvite => self.non_invite_response(code),
        }
    }

    /// §17.1.1.2.
    fn invite_response(&mut self, code: u16) -> Effects {
        let mut fx = Effects::default();
        match (self.state, code) {
            // A provisional stops the retransmissions and Timer B: the
            // proxy core's Timer C (§16.6 step 11) takes over.
            (ClientState::Calling, 100..=199) => {
                self.state = ClientState::Proceeding;
                fx.stop = TimerSet::EMPTY.with(Timer::A).with(Timer::B);
                fx.pass_up = true;
            }
            (ClientState::Proceeding, 100..=199) => fx.pass_up = true,
            // RFC 6026 §8.4: a 2xx moves to Accepted, not Terminated, so
            // that its retransmissions (and other forks' 2xx) are still
            // matched and passed up for the proxy to forward.
            (ClientState::Calling | ClientState::Proceeding, 200..=299) => {
                self.state = ClientState::Accepted;
                fx.stop = TimerSet::EMPTY.with(Timer::A).with(Timer::B);
                fx.arm(Timer::M, self.durations.first(Timer::M, self.reliable));
                fx.pass_up = true;
            }
            (ClientState::Accepted, 200..=299) => fx.pass_up = true,
            // A non-2xx final: ACK it (hop by hop, §17.1.1.3), pass it up,
            // and absorb its retransmissions for Timer D.
            (ClientState::Calling | ClientState::Proceeding, 300..=699) => {
                fx.stop = TimerSet::EMPTY.with(Timer::A).with(Timer::B);
                fx.send = Some(Send::Ack);
                fx.pass_up = true;
                self.complete(Timer::D, &mut fx);
            }
            // §17.1.1.2: each retransmitted final gets the ACK again and
            // is not passed up.
            (ClientState::Completed, 300..=699) => fx.send = Some(Send::Ack),
            // Anything else (a 1xx after a final, a non-2xx after a 2xx)
            // is absorbed.
            _ => {}
        }
        fx
    }

    /// §17.1.2.2.
    fn non_invite_response(&mut self, code: u16) -> Effects {
        let mut fx = Effects::default();
        match (self.state, code) {
            (ClientState::Trying | ClientState::Proceeding, 100..=199) => {
                self.state = ClientState::Proceeding;
                fx.pass_up = true;
            }
            (ClientState::Trying | ClientState::Proceeding, 200..=699) => {
                fx.stop = TimerSet::EMPTY.with(Timer::E).with(Timer::F);
                fx.pass_up = true;
                self.complete(Timer::K, &mut fx);
            }
            // Completed absorbs retransmitted finals until Timer K.
            _ => {}
        }
        fx
    }

    /// Into Completed, lingering for `linger` (D or K), or straight to the
    /// end over a reliable transport, where nothing is retransmitted.
    fn complete(&mut self, linger: Timer, fx: &mut Effects) {
        match self.durations.first(linger, self.reliable) {
            0 => fx.ended = Some(End::Done),
            wait => {
                self.state = ClientState::Completed;
                fx.arm(linger, wait);
            }
        }
    }

    /// Timer `t` of this transaction fired. A timer the state no longer
    /// uses (one whose disarming raced with it) does nothing.
    pub fn on_timer(&mut self, t: Timer) -> Effects {
        let mut fx = Effects::default();
        match (self.state, t) {
            // §17.1.1.2: retransmit, and wait twice as long.
            (ClientState::Calling, Timer::A) => {
                self.interval = self.durations.next_interval(Timer::A, self.interval);
                fx.send = Some(Send::Request);
                fx.arm(Timer::A, self.interval);
            }
            // §17.1.2.2: in Trying, double up to T2; in Proceeding,
            // retransmit every T2.
            (ClientState::Trying, Timer::E) => {
                self.interval = self.durations.next_interval(Timer::E, self.interval);
                fx.send = Some(Send::Request);
                fx.arm(Timer::E, self.interval);
            }
            (ClientState::Proceeding, Timer::E) if self.kind == Kind::NonInvite => {
                self.interval = self.durations.t2;
                fx.send = Some(Send::Request);
                fx.arm(Timer::E, self.interval);
            }
            // No final answer in time: the transaction times out
            // (§17.1.1.2, §17.1.2.2), which the proxy core counts as a
            // 408 from that branch.
            (ClientState::Calling, Timer::B)
            | (ClientState::Trying | ClientState::Proceeding, Timer::F) => {
                fx.stop = TimerSet::EMPTY.with(Timer::A).with(Timer::E);
                fx.ended = Some(End::Timeout);
            }
            (ClientState::Completed, Timer::D | Timer::K) | (ClientState::Accepted, Timer::M) => {
                fx.ended = Some(End::Done);
            }
            _ => {}
        }
        fx
    }

    /// §9.1: 64*T1 after the CANCEL of this INVITE was sent, it still
    /// has no final: it is taken for cancelled and ends (a timeout, for
    /// the proxy core). Nothing for a transaction that has its final.
    pub fn on_cancel_deadline(&mut self) -> Effects {
        let mut fx = Effects::default();
        if self.kind == Kind::Invite && self.state == ClientState::Proceeding {
            fx.ended = Some(End::Timeout);
        }
        fx
    }

    /// The transport could not send the request (§17.1.4): the
    /// transaction ends and the proxy core treats it as a 503 (§16.9).
    pub fn on_transport_error(&mut self) -> Effects {
        Effects {
            stop: TimerSet::EMPTY
                .with(Timer::A)
                .with(Timer::B)
                .with(Timer::E)
                .with(Timer::F),
            ended: Some(End::TransportError),
            ..Effects::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(kind: Kind) -> (ClientTx, Effects) {
        ClientTx::start(kind, false, Durations::default())
    }

    fn tcp(kind: Kind) -> (ClientTx, Effects) {
        ClientTx::start(kind, true, Durations::default())
    }

    #[test]
    fn invite_over_udp_arms_a_at_t1_and_b_at_64_t1() {
        let (tx, fx) = udp(Kind::Invite);
        assert_eq!(tx.state(), ClientState::Calling);
        assert_eq!(fx.start, [Some((Timer::A, 500)), Some((Timer::B, 32_000))]);
    }

    #[test]
    fn invite_over_tcp_arms_no_timer_a() {
        let (_, fx) = tcp(Kind::Invite);
        assert_eq!(fx.start, [Some((Timer::B, 32_000)), None]);
    }

    #[test]
    fn timer_a_retransmits_and_doubles_each_time() {
        let (mut tx, _) = udp(Kind::Invite);
        for wait in [1_000, 2_000, 4_000, 8_000, 16_000] {
            let fx = tx.on_timer(Timer::A);
            assert_eq!(fx.send, Some(Send::Request));
            assert_eq!(fx.start[0], Some((Timer::A, wait)));
        }
    }

    #[test]
    fn timer_b_in_calling_times_out() {
        let (mut tx, _) = udp(Kind::Invite);
        let fx = tx.on_timer(Timer::B);
        assert_eq!(fx.ended, Some(End::Timeout));
        assert!(fx.stop.contains(Timer::A));
    }

    #[test]
    fn s9_1_a_cancelled_invite_without_final_ends_at_its_deadline() {
        let (mut tx, _) = udp(Kind::Invite);
        tx.on_response(180);
        assert_eq!(tx.on_cancel_deadline().ended, Some(End::Timeout));
        // One that got its final (the 487) lingers as before.
        let (mut tx, _) = udp(Kind::Invite);
        tx.on_response(487);
        assert_eq!(tx.on_cancel_deadline(), Effects::default());
    }

    #[test]
    fn a_provisional_stops_retransmission_and_timer_b_and_is_passed_up() {
        let (mut tx, _) = udp(Kind::Invite);
        let fx = tx.on_response(180);
        assert_eq!(tx.state(), ClientState::Proceeding);
        assert!(fx.pass_up);
        assert!(fx.stop.contains(Timer::A) && fx.stop.contains(Timer::B));
        // A late Timer A or B does nothing in Proceeding.
        assert_eq!(tx.on_timer(Timer::A), Effects::default());
        assert_eq!(tx.on_timer(Timer::B), Effects::default());
        assert!(tx.on_response(183).pass_up);
    }

    #[test]
    fn a_non_2xx_final_is_acked_passed_up_and_its_retransmissions_acked_only() {
        let (mut tx, _) = udp(Kind::Invite);
        let fx = tx.on_response(486);
        assert_eq!(tx.state(), ClientState::Completed);
        assert_eq!(fx.send, Some(Send::Ack));
        assert!(fx.pass_up);
        assert_eq!(fx.start[0], Some((Timer::D, 32_000)));
        let again = tx.on_response(486);
        assert_eq!(again.send, Some(Send::Ack));
        assert!(!again.pass_up, "§17.1.1.2: not passed up again");
        assert_eq!(tx.on_timer(Timer::D).ended, Some(End::Done));
    }

    #[test]
    fn a_non_2xx_final_over_tcp_ends_at_once_after_the_ack() {
        let (mut tx, _) = tcp(Kind::Invite);
        let fx = tx.on_response(503);
        assert_eq!(fx.send, Some(Send::Ack));
        assert!(fx.pass_up);
        assert_eq!(fx.ended, Some(End::Done), "Timer D is 0 over TCP");
    }

    #[test]
    fn rfc6026_a_2xx_moves_to_accepted_and_every_later_2xx_is_passed_up() {
        let (mut tx, _) = udp(Kind::Invite);
        tx.on_response(180);
        let fx = tx.on_response(200);
        assert_eq!(tx.state(), ClientState::Accepted);
        assert!(fx.pass_up);
        assert_eq!(fx.start[0], Some((Timer::M, 32_000)));
        assert_eq!(fx.send, None, "the 2xx ACK is the UAC's, end to end");
        // A retransmission, or another fork's 2xx: passed up too.
        assert!(tx.on_response(200).pass_up);
        // A non-2xx after it is absorbed.
        assert_eq!(tx.on_response(487), Effects::default());
        assert_eq!(tx.on_timer(Timer::M).ended, Some(End::Done));
    }

    #[test]
    fn non_invite_over_udp_arms_e_at_t1_and_f_at_64_t1() {
        let (tx, fx) = udp(Kind::NonInvite);
        assert_eq!(tx.state(), ClientState::Trying);
        assert_eq!(fx.start, [Some((Timer::E, 500)), Some((Timer::F, 32_000))]);
    }

    #[test]
    fn timer_e_doubles_to_t2_in_trying_and_stays_at_t2_in_proceeding() {
        let (mut tx, _) = udp(Kind::NonInvite);
        for wait in [1_000, 2_000, 4_000, 4_000] {
            let fx = tx.on_timer(Timer::E);
            assert_eq!(fx.send, Some(Send::Request));
            assert_eq!(fx.start[0], Some((Timer::E, wait)));
        }
        let (mut tx, _) = udp(Kind::NonInvite);
        assert!(tx.on_response(100).pass_up);
        assert_eq!(tx.state(), ClientState::Proceeding);
        let fx = tx.on_timer(Timer::E);
        assert_eq!(fx.send, Some(Send::Request));
        assert_eq!(fx.start[0], Some((Timer::E, 4_000)), "T2 in Proceeding");
    }

    #[test]
    fn timer_f_times_out_in_trying_and_in_proceeding() {
        let (mut tx, _) = udp(Kind::NonInvite);
        assert_eq!(tx.on_timer(Timer::F).ended, Some(End::Timeout));
        let (mut tx, _) = udp(Kind::NonInvite);
        tx.on_response(100);
        assert_eq!(tx.on_timer(Timer::F).ended, Some(End::Timeout));
    }

    #[test]
    fn a_non_invite_final_is_passed_up_once_then_absorbed_until_k() {
        let (mut tx, _) = udp(Kind::NonInvite);
        let fx = tx.on_response(200);
        assert!(fx.pass_up);
        assert_eq!(fx.send, None, "no ACK outside INVITE");
        assert_eq!(fx.start[0], Some((Timer::K, 5_000)));
        assert!(fx.stop.contains(Timer::E) && fx.stop.contains(Timer::F));
        assert_eq!(tx.on_response(200), Effects::default());
        assert_eq!(tx.on_timer(Timer::E), Effects::default());
        assert_eq!(tx.on_timer(Timer::K).ended, Some(End::Done));
        let (mut tx, _) = tcp(Kind::NonInvite);
        assert_eq!(
            tx.on_response(404).ended,
            Some(End::Done),
            "K is 0 over TCP"
        );
    }

    #[test]
    fn a_transport_error_ends_it_in_any_state() {
        for kind in [Kind::Invite, Kind::NonInvite] {
            let (mut tx, _) = udp(kind);
            assert_eq!(tx.on_transport_error().ended, Some(End::TransportError));
        }
    }
}
