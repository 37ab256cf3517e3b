//! Digest authentication (RFC 3261 §22, RFC 7616, RFC 8760): challenges
//! with SHA-256 and MD5 and `qop=auth`, stateless nonces, a bounded
//! nonce-count check, and credentials from `--auth-file`.
//!
//! Checking a request allocates nothing and never blocks: the credentials
//! are parsed in place, the hashes run on the stack, the user table is read
//! only, and the nonce-count table is the shard's own.

pub mod credentials;
pub mod digest;
pub mod nonce;
pub mod replay;

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::sip::{HeaderName, Message};
pub use credentials::{CredentialStore, Ha1};
pub use digest::Credentials;
pub use nonce::{NonceCheck, NonceKey, NONCE_LEN};
pub use replay::NonceCounts;

/// Default `--nonce-ttl`: long enough for a UA to answer a challenge and
/// reuse the nonce for a few refreshes, short enough to bound replays.
pub const DEFAULT_NONCE_TTL: u32 = 300;

/// What the authenticating shards share.
pub struct AuthConfig {
    /// Who may register (and call, with `--auth-invite`).
    pub users: CredentialStore,
    /// The key nonces are minted and checked with.
    pub key: NonceKey,
    /// Seconds a nonce is good for (`--nonce-ttl`).
    pub nonce_ttl: u32,
    /// Also challenge initial INVITEs from local users (`--auth-invite`).
    pub invite: bool,
    /// The algorithms offered, in the order of the challenges; answers
    /// with any other are refused (`--auth-algorithm`).
    pub algorithms: Vec<Algorithm>,
    /// Failed authentications a source may have per minute per shard, and
    /// the ban after (`--auth-fail-limit`, `--ban-time`); None: no limit.
    pub failure_limit: Option<(u32, u64)>,
}

/// A digest algorithm (RFC 7616 §3.2, RFC 8760).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Algorithm {
    /// SHA-256: what RFC 8760 asks SIP to prefer.
    #[value(name = "sha-256")]
    Sha256,
    /// MD5: what nearly every deployed UA supports.
    #[value(name = "md5")]
    Md5,
}

impl Algorithm {
    /// The name in challenges and credentials.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Md5 => "MD5",
        }
    }
}

/// Why credentials were refused; counted, never told to the UA (which
/// gets the same challenge whatever went wrong, so that it cannot learn
/// which users exist).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The header value is not readable Digest credentials.
    Malformed,
    /// An algorithm other than those offered.
    Unsupported,
    /// No `qop=auth`, or no `nc`/`cnonce` with it.
    Qop,
    /// A nonce we did not issue, or issued for another realm.
    Nonce,
    /// The digest-uri is not the Request-URI.
    Uri,
    /// No such user in this realm, or no HA1 for the algorithm.
    UnknownUser,
    /// The response does not match: a wrong password.
    Response,
    /// A nonce-count already used.
    Replay,
}

/// What checking a request's credentials decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Valid credentials of the user the request speaks for.
    Accepted,
    /// No credentials for our realm: challenge.
    Missing,
    /// Correct credentials with an expired nonce: challenge with
    /// `stale=true` (RFC 7616 §3.3).
    Stale,
    /// Credentials that do not hold: challenge again.
    Failed(Failure),
    /// Valid credentials of another user than the To (REGISTER) or From
    /// (INVITE) one: 403.
    WrongUser,
}

/// The algorithms offered by default: MD5 alone, one challenge, which
/// every stock UA answers. Two kinds of widely shipped UA fail on more:
/// some (SIPp 3.6 among them) read only the first challenge and know only
/// MD5, so SHA-256 first locks them out; others refuse the whole 401 when
/// one challenge names an algorithm they lack, MD5 beside it or not.
/// SHA-256 (RFC 8760) is one flag away: `--auth-algorithm sha-256,md5`
/// for UAs that take the first challenge they support (RFC 8760 §2.4),
/// `md5,sha-256` for the first kind above.
pub const DEFAULT_ALGORITHMS: [Algorithm; 1] = [Algorithm::Md5];

/// Who a request claims to be, and where its credentials must be.
pub struct Claim<'r> {
    /// Authorization (for a registrar) or Proxy-Authorization (§22.3).
    pub header: HeaderName,
    /// The realm challenged for.
    pub realm: &'r [u8],
    /// The user the request speaks for (the To user of a REGISTER, the
    /// From user of an INVITE); None: any user of the realm.
    pub user: Option<&'r [u8]>,
    /// Whether a digest-uri other than the Request-URI names this server.
    /// RFC 2617 §3.2.2.5 asks that the digest-uri match the Request-URI;
    /// some UAs (SIPp 3.6) write the address they sent to instead, which
    /// is accepted when it is ours.
    pub uri_is_ours: &'r dyn Fn(&[u8]) -> bool,
}

impl AuthConfig {
    /// Checks the credentials `msg` carries for `claim`.
    pub fn check(
        &self,
        msg: &Message<'_>,
        claim: &Claim<'_>,
        now: u64,
        counts: &mut NonceCounts,
    ) -> Outcome {
        let (header, realm, user) = (claim.header, claim.realm, claim.user);
        // A request may carry credentials for several realms (§22.3):
        // ours is the one whose realm matches.
        let mut found = None;
        for h in msg.headers().filter(|h| h.name == header) {
            match Credentials::parse(h.value) {
                Ok(c) if c.realm == realm => {
                    found = Some(c);
                    break;
                }
                Ok(_) => {}
                Err(_) => found = found.or(Some(Credentials::default())),
            }
        }
        let Some(c) = found else {
            return Outcome::Missing;
        };
        if c.realm != realm {
            return Outcome::Failed(Failure::Malformed);
        }
        // The nonce-count check tells a retransmission (same transaction)
        // from a replay.
        let transaction = crate::sip::transaction_hash(msg);
        match self.verify(msg, &c, claim, now, transaction, counts) {
            Outcome::Accepted if user.is_some_and(|u| u != c.username) => Outcome::WrongUser,
            other => other,
        }
    }

    fn verify(
        &self,
        msg: &Message<'_>,
        c: &Credentials<'_>,
        claim: &Claim<'_>,
        now: u64,
        transaction: u64,
        counts: &mut NonceCounts,
    ) -> Outcome {
        use Failure::*;
        let (realm, uri_is_ours) = (claim.realm, claim.uri_is_ours);
        let fail = Outcome::Failed;
        let algorithm = match c.algorithm {
            None => Algorithm::Md5,
            Some(a) if a.eq_ignore_ascii_case(b"MD5") => Algorithm::Md5,
            Some(a) if a.eq_ignore_ascii_case(b"SHA-256") => Algorithm::Sha256,
            Some(_) => return fail(Unsupported),
        };
        if !self.algorithms.contains(&algorithm) {
            return fail(Unsupported);
        }
        let sha256 = algorithm == Algorithm::Sha256;
        let (Some(qop), Some(nc_hex), Some(cnonce)) = (c.qop, c.nc, c.cnonce) else {
            return fail(Qop);
        };
        let mut nc = [0u8; 4];
        if !qop.eq_ignore_ascii_case(b"auth") || !nonce::read_hex(nc_hex, &mut nc) {
            return fail(Qop);
        }
        let nonce_state = self.key.check(c.nonce, realm, now, self.nonce_ttl);
        if nonce_state == NonceCheck::Forged {
            return fail(Nonce);
        }
        let (Some(method), Some(uri)) = (msg.method(), msg.request_uri_bytes()) else {
            return fail(Malformed);
        };
        if c.uri != uri && !uri_is_ours(c.uri) {
            return fail(Uri);
        }
        let Some(ha1) = self.users.get(c.username, realm) else {
            return fail(UnknownUser);
        };
        let parts = Parts {
            method: method.as_bytes(),
            // HA2 covers the digest-uri as the UA wrote it (RFC 7616 §3.4.3).
            uri: c.uri,
            nonce: c.nonce,
            nc: nc_hex,
            cnonce,
            qop,
        };
        let mut expect = [0u8; 64];
        let expect = match (sha256, ha1.sha256, ha1.md5) {
            (true, Some(h), _) => parts.response::<Sha256>(&h, &mut expect),
            (false, _, Some(h)) => parts.response::<Md5>(&h, &mut expect),
            _ => return fail(UnknownUser),
        };
        if !eq_hex_constant_time(expect, c.response) {
            return fail(Response);
        }
        match nonce_state {
            NonceCheck::Fresh { id } => {
                if !counts.admit(id, u32::from_be_bytes(nc), transaction) {
                    return fail(Replay);
                }
                Outcome::Accepted
            }
            _ => Outcome::Stale,
        }
    }
}

/// The values the `response` digest covers (RFC 7616 §3.4.1 with
/// `qop=auth`).
struct Parts<'a> {
    method: &'a [u8],
    uri: &'a [u8],
    nonce: &'a [u8],
    nc: &'a [u8],
    cnonce: &'a [u8],
    qop: &'a [u8],
}

impl Parts<'_> {
    /// KD(HA1, nonce:nc:cnonce:qop:H(method:uri)), as lowercase hex in
    /// `out`.
    fn response<'o, D: Digest>(&self, ha1: &[u8], out: &'o mut [u8; 64]) -> &'o [u8] {
        let mut ha2 = [0u8; 64];
        let n = hex_digest::<D>(&[self.method, b":", self.uri], &mut ha2);
        hex_digest::<D>(
            &[
                ha1,
                b":",
                self.nonce,
                b":",
                self.nc,
                b":",
                self.cnonce,
                b":",
                self.qop,
                b":",
                &ha2[..n],
            ],
            out,
        );
        &out[..n]
    }
}

/// H(concatenation of `parts`) as lowercase hex into `out`; its length.
fn hex_digest<D: Digest>(parts: &[&[u8]], out: &mut [u8; 64]) -> usize {
    let mut d = D::new();
    for p in parts {
        d.update(p);
    }
    let sum = d.finalize();
    let n = (sum.len() * 2).min(out.len());
    nonce::write_hex(&sum, &mut out[..n]);
    n
}

/// Compares our lowercase hex with the UA's (either case) in time that
/// does not depend on where they differ.
fn eq_hex_constant_time(ours: &[u8], theirs: &[u8]) -> bool {
    if ours.len() != theirs.len() {
        return false;
    }
    ours.iter()
        .zip(theirs)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b.to_ascii_lowercase()))
        == 0
}

/// Writes the challenge headers of a 401 (`WWW-Authenticate`) or 407
/// (`Proxy-Authenticate`): one per algorithm offered, in order, with one
/// fresh nonce (RFC 8760 §2.4, RFC 3261 §22.1).
pub fn write_challenge(
    w: &mut crate::sip::ResponseWriter<'_>,
    algorithms: &[Algorithm],
    header: &str,
    realm: &[u8],
    nonce: &[u8; NONCE_LEN],
    stale: bool,
) -> Result<(), crate::sip::WriteError> {
    use crate::sip::Piece::Bytes;
    for algorithm in algorithms {
        w.header_pieces(
            header,
            &[
                Bytes(b"Digest realm=\""),
                Bytes(realm),
                Bytes(b"\", nonce=\""),
                Bytes(nonce),
                Bytes(b"\", algorithm="),
                Bytes(algorithm.name().as_bytes()),
                Bytes(b", qop=\"auth\""),
                Bytes(if stale { b", stale=true" } else { b"" }),
            ],
        )?;
    }
    Ok(())
}

/// Writes a secret file (credentials, the nonce key): readable by its
/// owner only (0600), written beside and renamed over the old one, so a
/// crash leaves one or the other, never half of it.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests;
