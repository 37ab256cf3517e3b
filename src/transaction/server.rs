//! Server transactions (RFC 3261 §17.2, with RFC 6026's Accepted state):
//! what a request the proxy received does with its retransmissions, the
//! responses the proxy core sends for it, the ACK, timers and transport
//! errors. Pure, as the client side: the shard carries out the
//! [`Effects`].

use super::timer::{Durations, Timer, TimerSet};
use super::{Effects, End, Kind, Send};

/// Where a server transaction is (§17.2.1 figure 7 with RFC 6026 figure
/// 7's Accepted; §17.2.2 figure 8). As on the client side, Terminated is
/// [`Effects::ended`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerState {
    /// Non-INVITE received, nothing sent yet.
    Trying,
    /// A provisional sent (an INVITE starts here: the proxy sends 100 at
    /// once, §16.2 and §17.2.1).
    Proceeding,
    /// A final sent (a non-2xx for INVITE): retransmitted requests get it
    /// again.
    Completed,
    /// INVITE: the ACK for the non-2xx final arrived; later ACKs are
    /// absorbed until Timer I.
    Confirmed,
    /// INVITE answered 2xx (RFC 6026 §8.7): retransmitted INVITEs are
    /// absorbed, and further 2xx from other forks are still sent, until
    /// Timer L.
    Accepted,
}

/// One server transaction.
#[derive(Clone, Copy, Debug)]
pub struct ServerTx {
    kind: Kind,
    state: ServerState,
    reliable: bool,
    /// Whether a response has been sent that a retransmitted request
    /// should get again.
    answered: bool,
    /// The current interval of Timer G, in ms.
    interval: u64,
    durations: Durations,
}

impl ServerTx {
    /// A transaction for a request of `kind` just received over a
    /// transport that is `reliable` or not.
    pub fn new(kind: Kind, reliable: bool, durations: Durations) -> ServerTx {
        ServerTx {
            kind,
            state: match kind {
                Kind::Invite => ServerState::Proceeding,
                Kind::NonInvite => ServerState::Trying,
            },
            reliable,
            answered: false,
            interval: durations.t1,
            durations,
        }
    }

    /// The state it is in.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// A retransmission of the request arrived (§17.2.3 matched it): the
    /// last response goes again where there is one (§17.2.1 Proceeding
    /// and Completed, §17.2.2 Proceeding and Completed); in Trying, in
    /// Confirmed and in Accepted it is absorbed.
    pub fn on_request(&mut self) -> Effects {
        let resend = match self.state {
            ServerState::Proceeding | ServerState::Completed => self.answered,
            ServerState::Trying | ServerState::Confirmed | ServerState::Accepted => false,
        };
        Effects {
            send: resend.then_some(Send::Response),
            ..Effects::default()
        }
    }

    /// The proxy core sends a response with status `code` in this
    /// transaction: `send` says whether it goes out (a response the state
    /// no longer takes is dropped, §17.2.2 Completed).
    pub fn on_respond(&mut self, code: u16) -> Effects {
        match self.kind {
            Kind::Invite => self.invite_respond(code),
            Kind::NonInvite => self.non_invite_respond(code),
        }
    }

    /// §17.2.1.
    fn invite_respond(&mut self, code: u16) -> Effects {
        let mut fx = Effects::default();
        match (self.state, code) {
            (ServerState::Proceeding, 100..=199) => {
                self.answered = true;
                fx.send = Some(Send::Response);
            }
            // RFC 6026 §8.5: a 2xx moves to Accepted; the 2xx itself is
            // retransmitted by the UAS, end to end, not by us.
            (ServerState::Proceeding, 200..=299) => {
                self.state = ServerState::Accepted;
                fx.send = Some(Send::Response);
                fx.arm(Timer::L, self.durations.first(Timer::L, self.reliable));
            }
            // RFC 6026 §8.7: other forks' 2xx still go up the chain.
            (ServerState::Accepted, 200..=299) => fx.send = Some(Send::Response),
            // A non-2xx final: retransmitted (UDP) until the ACK comes,
            // for at most Timer H.
            (ServerState::Proceeding, 300..=699) => {
                self.state = ServerState::Completed;
                self.answered = true;
                fx.send = Some(Send::Response);
                self.interval = self.durations.first(Timer::G, self.reliable);
                if self.interval > 0 {
                    fx.arm(Timer::G, self.interval);
                }
                fx.arm(Timer::H, self.durations.first(Timer::H, self.reliable));
            }
            _ => {}
        }
        fx
    }

    /// §17.2.2.
    fn non_invite_respond(&mut self, code: u16) -> Effects {
        let mut fx = Effects::default();
        match (self.state, code) {
            (ServerState::Trying | ServerState::Proceeding, 100..=199) => {
                self.state = ServerState::Proceeding;
                self.answered = true;
                fx.send = Some(Send::Response);
            }
            (ServerState::Trying | ServerState::Proceeding, 200..=699) => {
                self.answered = true;
                fx.send = Some(Send::Response);
                match self.durations.first(Timer::J, self.reliable) {
                    0 => fx.ended = Some(End::Done),
                    wait => {
                        self.state = ServerState::Completed;
                        fx.arm(Timer::J, wait);
                    }
                }
            }
            // §17.2.2: in Completed, "any other final responses passed by
            // the TU to the server transaction MUST be discarded".
            _ => {}
        }
        fx
    }

    /// An ACK matched this INVITE transaction (§17.2.3: the INVITE's
    /// branch, for a non-2xx final). `pass_up` is set for an ACK in
    /// Accepted: it belongs to a 2xx, end to end, and the proxy forwards
    /// it (RFC 6026 §8.7).
    pub fn on_ack(&mut self) -> Effects {
        let mut fx = Effects::default();
        match self.state {
            ServerState::Completed => {
                fx.stop = TimerSet::EMPTY.with(Timer::G).with(Timer::H);
                match self.durations.first(Timer::I, self.reliable) {
                    0 => fx.ended = Some(End::Done),
                    wait => {
                        self.state = ServerState::Confirmed;
                        fx.arm(Timer::I, wait);
                    }
                }
            }
            ServerState::Accepted => fx.pass_up = true,
            _ => {}
        }
        fx
    }

    /// Timer `t` of this transaction fired; one the state no longer uses
    /// does nothing.
    pub fn on_timer(&mut self, t: Timer) -> Effects {
        let mut fx = Effects::default();
        match (self.state, t) {
            // §17.2.1: the final again, and the interval doubled up to T2.
            (ServerState::Completed, Timer::G) => {
                self.interval = self.durations.next_interval(Timer::G, self.interval);
                fx.send = Some(Send::Response);
                fx.arm(Timer::G, self.interval);
            }
            // The ACK never came: the transaction fails, and says so.
            (ServerState::Completed, Timer::H) if self.kind == Kind::Invite => {
                fx.stop = TimerSet::EMPTY.with(Timer::G);
                fx.ended = Some(End::Timeout);
            }
            (ServerState::Confirmed, Timer::I)
            | (ServerState::Completed, Timer::J)
            | (ServerState::Accepted, Timer::L) => fx.ended = Some(End::Done),
            _ => {}
        }
        fx
    }

    /// The transport could not send a response (§17.2.4): the transaction
    /// ends (after §18.2.2's fallbacks, which are the shard's) and the
    /// proxy core is told.
    pub fn on_transport_error(&mut self) -> Effects {
        Effects {
            stop: TimerSet::EMPTY
                .with(Timer::G)
                .with(Timer::H)
                .with(Timer::I)
                .with(Timer::J)
                .with(Timer::L),
            ended: Some(End::TransportError),
            ..Effects::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(kind: Kind) -> ServerTx {
        ServerTx::new(kind, false, Durations::default())
    }

    fn tcp(kind: Kind) -> ServerTx {
        ServerTx::new(kind, true, Durations::default())
    }

    #[test]
    fn an_invite_starts_in_proceeding_and_a_retransmission_gets_the_last_provisional() {
        let mut tx = udp(Kind::Invite);
        assert_eq!(tx.state(), ServerState::Proceeding);
        assert_eq!(tx.on_request(), Effects::default(), "nothing sent yet");
        assert_eq!(tx.on_respond(100).send, Some(Send::Response));
        assert_eq!(tx.on_request().send, Some(Send::Response));
        assert_eq!(tx.on_respond(180).send, Some(Send::Response));
        assert_eq!(tx.state(), ServerState::Proceeding);
    }

    #[test]
    fn a_non_2xx_final_over_udp_arms_g_at_t1_and_h_at_64_t1() {
        let mut tx = udp(Kind::Invite);
        tx.on_respond(100);
        let fx = tx.on_respond(486);
        assert_eq!(tx.state(), ServerState::Completed);
        assert_eq!(fx.send, Some(Send::Response));
        assert_eq!(fx.start, [Some((Timer::G, 500)), Some((Timer::H, 32_000))]);
        assert_eq!(
            tx.on_request().send,
            Some(Send::Response),
            "the final again"
        );
    }

    #[test]
    fn timer_g_resends_the_final_doubling_up_to_t2() {
        let mut tx = udp(Kind::Invite);
        tx.on_respond(404);
        for wait in [1_000, 2_000, 4_000, 4_000] {
            let fx = tx.on_timer(Timer::G);
            assert_eq!(fx.send, Some(Send::Response));
            assert_eq!(fx.start[0], Some((Timer::G, wait)));
        }
    }

    #[test]
    fn over_tcp_a_non_2xx_final_arms_only_h() {
        let mut tx = tcp(Kind::Invite);
        let fx = tx.on_respond(404);
        assert_eq!(fx.start, [Some((Timer::H, 32_000)), None]);
    }

    #[test]
    fn timer_h_without_the_ack_fails_the_transaction() {
        let mut tx = udp(Kind::Invite);
        tx.on_respond(500);
        let fx = tx.on_timer(Timer::H);
        assert_eq!(fx.ended, Some(End::Timeout));
        assert!(fx.stop.contains(Timer::G));
    }

    #[test]
    fn the_ack_confirms_and_later_acks_are_absorbed_until_i() {
        let mut tx = udp(Kind::Invite);
        tx.on_respond(486);
        let fx = tx.on_ack();
        assert_eq!(tx.state(), ServerState::Confirmed);
        assert!(fx.stop.contains(Timer::G) && fx.stop.contains(Timer::H));
        assert_eq!(fx.start[0], Some((Timer::I, 5_000)));
        assert!(!fx.pass_up, "the non-2xx ACK ends here, hop by hop");
        assert_eq!(tx.on_ack(), Effects::default());
        assert_eq!(tx.on_request(), Effects::default());
        assert_eq!(tx.on_timer(Timer::G), Effects::default());
        assert_eq!(tx.on_timer(Timer::I).ended, Some(End::Done));
        let mut tx = tcp(Kind::Invite);
        tx.on_respond(486);
        assert_eq!(tx.on_ack().ended, Some(End::Done), "I is 0 over TCP");
    }

    #[test]
    fn rfc6026_a_2xx_moves_to_accepted_which_absorbs_invites_and_passes_acks() {
        let mut tx = udp(Kind::Invite);
        tx.on_respond(100);
        let fx = tx.on_respond(200);
        assert_eq!(tx.state(), ServerState::Accepted);
        assert_eq!(fx.send, Some(Send::Response));
        assert_eq!(fx.start[0], Some((Timer::L, 32_000)));
        assert_eq!(tx.on_request(), Effects::default(), "absorbed");
        assert_eq!(
            tx.on_respond(200).send,
            Some(Send::Response),
            "another fork"
        );
        assert_eq!(
            tx.on_respond(486),
            Effects::default(),
            "no non-2xx after a 2xx"
        );
        assert!(tx.on_ack().pass_up);
        assert_eq!(tx.on_timer(Timer::L).ended, Some(End::Done));
    }

    #[test]
    fn a_non_invite_in_trying_absorbs_retransmissions() {
        let mut tx = udp(Kind::NonInvite);
        assert_eq!(tx.state(), ServerState::Trying);
        assert_eq!(tx.on_request(), Effects::default());
        assert_eq!(tx.on_respond(100).send, Some(Send::Response));
        assert_eq!(tx.state(), ServerState::Proceeding);
        assert_eq!(tx.on_request().send, Some(Send::Response));
    }

    #[test]
    fn a_non_invite_final_lingers_j_over_udp_and_drops_later_finals() {
        let mut tx = udp(Kind::NonInvite);
        let fx = tx.on_respond(200);
        assert_eq!(tx.state(), ServerState::Completed);
        assert_eq!(fx.send, Some(Send::Response));
        assert_eq!(fx.start[0], Some((Timer::J, 32_000)));
        assert_eq!(tx.on_request().send, Some(Send::Response));
        assert_eq!(tx.on_respond(500), Effects::default(), "§17.2.2: discarded");
        assert_eq!(tx.on_timer(Timer::J).ended, Some(End::Done));
        let mut tx = tcp(Kind::NonInvite);
        let fx = tx.on_respond(200);
        assert_eq!(fx.send, Some(Send::Response));
        assert_eq!(fx.ended, Some(End::Done), "J is 0 over TCP");
    }

    #[test]
    fn a_transport_error_ends_it() {
        let mut tx = udp(Kind::Invite);
        tx.on_respond(486);
        let fx = tx.on_transport_error();
        assert_eq!(fx.ended, Some(End::TransportError));
        assert!(fx.stop.contains(Timer::G) && fx.stop.contains(Timer::H));
    }
}
