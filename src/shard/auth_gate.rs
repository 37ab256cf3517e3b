//! Digest authentication at the shard (RFC 3261 §22, RFC 7616, RFC 8760):
//! which requests must carry credentials (REGISTER at the AOR's owner, an
//! initial INVITE from a local user with `--auth-invite`), the per-shard
//! state that checks them (nonce-count table, failure limiter, nonce salt),
//! and what a refused request gets.

use crate::transport::Source;

use super::answer::{commit_reply, reply_to, write_auth_refusal};
use super::counters::add;
use super::mail::Ban;
use super::outcome::Outcome;
use super::{Shard, Shared};
use crate::auth::{Algorithm, Claim, Outcome as Checked, NONCE_LEN};
use crate::io::SendQueue;
use crate::proxy::DropReason;
use crate::sip::{HeaderName, Message, Method, SipUri, Uri};

/// A request that did not pass authentication, and what it gets.
#[derive(Clone, Copy, Debug)]
pub(super) enum AuthRefusal<'r> {
    /// 401 (REGISTER) or 407 (a proxied request) with a challenge per
    /// algorithm.
    Challenge {
        /// 401 or 407.
        code: u16,
        /// A challenge with `stale=true` (right password, expired nonce).
        stale: bool,
        /// The realm challenged for.
        realm: &'r [u8],
        /// The algorithms offered.
        algorithms: &'r [Algorithm],
    },
    /// 403: credentials that hold, but for another user.
    Forbidden,
    /// No answer at all: the source is banned by `--auth-fail-limit`.
    Banned,
}

impl AuthRefusal<'_> {
    /// The status it is answered with; None for no answer.
    pub(super) fn status(&self) -> Option<u16> {
        match self {
            AuthRefusal::Challenge { code, .. } => Some(*code),
            AuthRefusal::Forbidden => Some(403),
            AuthRefusal::Banned => None,
        }
    }
}

impl<'a> Shard<'a> {
    /// §22, RFC 7616: the REGISTER's Authorization checked against the To
    /// user; None when it may go on.
    pub(super) fn authenticate_register(
        &mut self,
        msg: &Message<'_>,
        src: &Source,
    ) -> Option<AuthRefusal<'a>> {
        self.shared.auth.as_ref()?;
        let to = match msg.to_uri() {
            Ok(Uri::Sip(u)) => u,
            // aor_of refuses these before a hand-off; never let one by.
            _ => return Some(AuthRefusal::Forbidden),
        };
        self.authenticate(msg, src, HeaderName::Authorization, 401, &to)
    }

    /// With `--auth-invite`: the user of ours an initial INVITE claims to
    /// come from, who must prove it (§22.3); None when no credentials are
    /// needed.
    pub(super) fn invite_claimant<'m>(
        &self,
        msg: &Message<'m>,
        src: &Source,
    ) -> Option<SipUri<'m>> {
        if !self.shared.auth.as_ref()?.invite || msg.method() != Some(Method::Invite) {
            return None;
        }
        if msg.to().ok()?.tag().is_some() {
            return None; // a re-INVITE inside a dialog
        }
        match msg.from().ok()?.parsed_uri() {
            Ok(Uri::Sip(u)) if self.shared.proxy.is_local_domain(&u, src.local) => Some(u),
            _ => None,
        }
    }

    /// An initial INVITE from `claimant` must carry its Proxy-Authorization
    /// (§22.3); None when it may go on.
    pub(super) fn authenticate_invite(
        &mut self,
        msg: &Message<'_>,
        src: &Source,
        claimant: &SipUri<'_>,
    ) -> Option<AuthRefusal<'a>> {
        self.authenticate(msg, src, HeaderName::ProxyAuthorization, 407, claimant)
    }

    fn authenticate(
        &mut self,
        msg: &Message<'_>,
        src: &Source,
        header: HeaderName,
        challenge: u16,
        claimed: &SipUri<'_>,
    ) -> Option<AuthRefusal<'a>> {
        let auth = self.shared.auth.as_ref()?;
        let realm = self.shared.proxy.realm_for(claimed)?;
        let now_ms = self.now_ms;
        if self.auth_banned(src) {
            return Some(AuthRefusal::Banned);
        }
        let counts = self.nonce_counts.as_mut()?;
        let proxy = &self.shared.proxy;
        let local = src.local;
        let uri_is_ours = |u: &[u8]| matches!(SipUri::parse(u), Ok(s) if s.user.is_none() && proxy.is_local_domain(&s, local));
        let claim = Claim {
            header,
            realm,
            user: Some(claimed.user.unwrap_or_default()),
            uri_is_ours: &uri_is_ours,
        };
        let outcome = auth.check(msg, &claim, self.now, counts);
        let c = self.counters;
        let stale = match outcome {
            Checked::Accepted => {
                add(&c.auth_accepted, 1);
                return None;
            }
            Checked::Missing | Checked::Failed(_) | Checked::WrongUser => false,
            Checked::Stale => true,
        };
        if matches!(outcome, Checked::Failed(_) | Checked::WrongUser) {
            add(&c.auth_failures, 1);
            if let Some(f) = &mut self.auth_failures {
                if f.failed(src.peer.ip(), now_ms) {
                    add(&c.auth_bans, 1);
                    self.tell_others_of_ban(src.peer.ip(), Ban::Guessing);
                }
            }
        }
        if outcome == Checked::WrongUser {
            return Some(AuthRefusal::Forbidden);
        }
        add(&c.auth_challenges, 1);
        Some(AuthRefusal::Challenge {
            code: challenge,
            stale,
            realm,
            algorithms: &auth.algorithms,
        })
    }

    /// True while `src`'s address is banned for failing authentication
    /// too often (`--auth-fail-limit`), here or on another shard.
    pub(super) fn auth_banned(&self, src: &Source) -> bool {
        self.auth_failures
            .as_ref()
            .is_some_and(|f| f.banned(src.peer.ip(), self.now_ms))
    }

    /// A challenge for a request about `claimed` (not yet counted).
    pub(super) fn challenge(&self, code: u16, claimed: &SipUri<'_>) -> AuthRefusal<'a> {
        let shared: &'a Shared = self.shared;
        AuthRefusal::Challenge {
            code,
            stale: false,
            realm: shared.proxy.realm_for(claimed).unwrap_or_default(),
            algorithms: shared.auth.as_ref().map_or(&[], |a| &a.algorithms),
        }
    }

    /// A fresh nonce for a challenge in `realm`.
    pub(super) fn next_nonce(&mut self, realm: &[u8]) -> [u8; NONCE_LEN] {
        self.nonce_salt = self.nonce_salt.wrapping_add(1);
        match &self.shared.auth {
            Some(auth) => auth.key.mint(self.now, self.nonce_salt, realm),
            None => [b'0'; NONCE_LEN],
        }
    }

    /// The nonce a refusal's answer carries (a fresh one for a challenge).
    pub(super) fn nonce_for(&mut self, refusal: &AuthRefusal<'_>) -> [u8; NONCE_LEN] {
        match refusal {
            AuthRefusal::Challenge { realm, .. } => self.next_nonce(realm),
            _ => [b'0'; NONCE_LEN],
        }
    }

    /// Answers a refused request from this shard's socket.
    pub(super) fn refuse_auth<S: SendQueue>(
        &mut self,
        msg: &Message<'_>,
        src: &Source,
        refusal: AuthRefusal<'_>,
        send: &mut S,
    ) -> Outcome {
        let Some(code) = refusal.status() else {
            return self.drop(DropReason::AuthBanned);
        };
        let nonce = self.nonce_for(&refusal);
        let Some(slot) = send.slot() else {
            return self.drop(DropReason::WriteFailed);
        };
        let written = write_auth_refusal(msg, src, refusal, &nonce, slot);
        commit_reply(send, written, code, reply_to(msg, src), self.counters)
    }
}
