//! The stateless branch (RFC 3261 §16.11): a proxy that keeps no
//! transaction state must still give a retransmitted request, and the
//! CANCEL or non-2xx ACK of an INVITE, the same branch it gave the original,
//! so that the next hop matches them to one transaction. The branch is
//! therefore a pure function of the incoming request.
//!
//! Input: the incoming top Via branch when it carries the RFC 3261 cookie
//! (it is unique per transaction and the same for CANCEL and ACK); else the
//! fields §16.11 lists: To tag, From tag, Call-ID, Request-URI, top Via and
//! the CSeq number (not its method, so that CANCEL matches its INVITE).
//!
//! The branch has a second part for loop detection (§16.6 step 8, §16.3
//! step 4): a hash of the fields a loop leaves unchanged (Request-URI, To
//! and From tags, Call-ID, CSeq number, Route, Proxy-Require). A request
//! that comes back with our Via and the same loop part has looped; one whose
//! Request-URI changed is spiralling and goes on.

use crate::hash::{write_hex, Hash64};
use crate::sip::{transaction_hash, HeaderName, Message};

/// Our branches start with this, so that a response's top Via can be
/// recognised as ours cheaply: the RFC 3261 cookie plus "sS".
pub const OUR_BRANCH_PREFIX: &[u8] = b"z9hG4bKsS";

/// Length of a branch we write: the prefix, 16 hex digits of transaction
/// hash and 8 of loop hash.
pub const BRANCH_LEN: usize = OUR_BRANCH_PREFIX.len() + 16 + LOOP_LEN;

/// Hex digits of the loop-detection part at the end of our branch.
pub const LOOP_LEN: usize = 8;

/// The To tag of every answer this proxy gives itself (404, 407, 483...):
/// the hex of the transaction hash, so that a retransmitted request gets
/// the very same answer without any state, and the ACK of that answer
/// (which carries the INVITE's branch, §17.1.1.3) is known as ours.
pub fn local_to_tag(msg: &Message<'_>) -> [u8; 16] {
    let mut tag = [0u8; 16];
    write_hex(transaction_hash(msg), &mut tag);
    tag
}

/// Hashes what a loop leaves unchanged (§16.6 step 8).
pub fn loop_hash(msg: &Message<'_>) -> u32 {
    let mut h = Hash64::default();
    h.add(msg.request_uri_bytes().unwrap_or_default());
    h.add(msg.to().ok().and_then(|a| a.tag()).unwrap_or_default());
    h.add(msg.from().ok().and_then(|a| a.tag()).unwrap_or_default());
    h.add(msg.header(HeaderName::CallId).unwrap_or_default());
    h.add(
        msg.cseq()
            .map(|c| c.number.to_le_bytes())
            .unwrap_or_default()
            .as_slice(),
    );
    for v in msg.values(HeaderName::Route) {
        h.add(v.text);
    }
    for v in msg.values(HeaderName::ProxyRequire) {
        h.add(v.text);
    }
    (h.finish() >> 32) as u32
}

/// Writes our branch for `msg` into `out` and returns it.
pub fn write_branch<'o>(msg: &Message<'_>, out: &'o mut [u8; BRANCH_LEN]) -> &'o [u8] {
    let p = OUR_BRANCH_PREFIX.len();
    out[..p].copy_from_slice(OUR_BRANCH_PREFIX);
    write_hex(transaction_hash(msg), &mut out[p..p + 16]);
    write_hex(u64::from(loop_hash(msg)), &mut out[p + 16..]);
    &out[..]
}

/// Under `--mode stateful`, the first two hex digits after our prefix
/// name the shard that holds the branch's client transaction (in place of
/// two of the transaction hash's sixteen: the branch stays unique per
/// transaction and shard).
pub fn name_shard(branch: &mut [u8; BRANCH_LEN], shard: u8) {
    let p = OUR_BRANCH_PREFIX.len();
    write_hex(u64::from(shard), &mut branch[p..p + 2]);
    name_branch(branch, 0);
}

/// Under `--mode stateful`, the two hex digits after the shard's name the
/// branch of a request that is sent more than once (forked to several
/// bindings, or failed over to the next upstream): 0 for the first, so
/// that the others differ from it.
pub fn name_branch(branch: &mut [u8], index: u8) {
    let p = OUR_BRANCH_PREFIX.len();
    if let Some(digits) = branch.get_mut(p + 2..p + 4) {
        write_hex(u64::from(index), digits);
    }
}

/// The shard a branch of ours names ([`name_shard`]); None for a branch
/// that is not ours. Meaningful only under `--mode stateful`.
pub fn shard_of(branch: &[u8]) -> Option<usize> {
    if branch.len() != BRANCH_LEN || !branch.starts_with(OUR_BRANCH_PREFIX) {
        return None;
    }
    let p = OUR_BRANCH_PREFIX.len();
    let digit = |b: u8| char::from(b).to_digit(16);
    let (hi, lo) = (digit(branch[p])?, digit(branch[p + 1])?);
    Some((hi * 16 + lo) as usize)
}

/// True when `branch` is one of ours carrying the loop part `msg` gives
/// now: the request has been here before with nothing changed (§16.3
/// step 4).
pub fn is_loop(msg: &Message<'_>, branch: &[u8]) -> bool {
    if branch.len() != BRANCH_LEN || !branch.starts_with(OUR_BRANCH_PREFIX) {
        return false;
    }
    let mut now = [0u8; LOOP_LEN];
    write_hex(u64::from(loop_hash(msg)), &mut now);
    branch[BRANCH_LEN - LOOP_LEN..] == now
}

#[cfg(test)]
mod tests {
    use super::*;

    fn branch(msg: &[u8]) -> Vec<u8> {
        let m = Message::parse(msg).unwrap();
        let mut out = [0u8; BRANCH_LEN];
        write_branch(&m, &mut out).to_vec()
    }

    const INVITE: &[u8] = b"INVITE sip:bob@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\nTo: <sip:bob@b>\r\nFrom: <sip:a@a>;tag=1\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\n\r\n";

    #[test]
    fn retransmission_cancel_and_ack_share_the_branch() {
        let b = branch(INVITE);
        assert!(b.starts_with(OUR_BRANCH_PREFIX));
        assert_eq!(b.len(), BRANCH_LEN);
        assert_eq!(branch(INVITE), b);
        let cancel = String::from_utf8_lossy(INVITE)
            .replace("INVITE sip", "CANCEL sip")
            .replace("7 INVITE", "7 CANCEL");
        assert_eq!(branch(cancel.as_bytes()), b);
        let other = String::from_utf8_lossy(INVITE).replace("z9hG4bKabc", "z9hG4bKabd");
        assert_ne!(branch(other.as_bytes()), b);
    }

    #[test]
    fn a_stateful_branch_names_its_shard() {
        let m = Message::parse(INVITE).unwrap();
        let mut b = [0u8; BRANCH_LEN];
        write_branch(&m, &mut b);
        for shard in [0u8, 7, 200, 255] {
            let mut named = b;
            name_shard(&mut named, shard);
            assert_eq!(shard_of(&named), Some(usize::from(shard)));
            assert!(is_loop(&m, &named), "the loop part is untouched");
        }
        assert_eq!(shard_of(b"z9hG4bKsomeoneelse"), None);
    }

    #[test]
    fn rfc2543_requests_hash_the_16_11_fields() {
        let old = String::from_utf8_lossy(INVITE).replace(";branch=z9hG4bKabc", "");
        let b = branch(old.as_bytes());
        let cancel = old
            .replace("INVITE sip", "CANCEL sip")
            .replace("7 INVITE", "7 CANCEL");
        assert_eq!(branch(cancel.as_bytes()), b, "CANCEL matches its INVITE");
        let next = old.replace("CSeq: 7", "CSeq: 8");
        assert_ne!(branch(next.as_bytes()), b);
        let tagged = old.replace("<sip:bob@b>", "<sip:bob@b>;tag=x");
        assert_ne!(branch(tagged.as_bytes()), b);
    }

    #[test]
    fn loop_part_ignores_via_and_max_forwards_but_not_the_target() {
        let m = Message::parse(INVITE).unwrap();
        let mut out = [0u8; BRANCH_LEN];
        let ours = write_branch(&m, &mut out).to_vec();
        let back = String::from_utf8_lossy(INVITE).replace(
            "Via: SIP/2.0/UDP 192.0.2.1",
            "Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKother\r\nVia: SIP/2.0/UDP 192.0.2.1",
        );
        let back = Message::parse(back.as_bytes()).unwrap();
        assert!(is_loop(&back, &ours), "same target, came back: a loop");
        let spiral =
            String::from_utf8_lossy(INVITE).replace("sip:bob@192.0.2.4", "sip:bob@192.0.2.5");
        let spiral = Message::parse(spiral.as_bytes()).unwrap();
        assert!(!is_loop(&spiral, &ours), "new Request-URI: a spiral");
        assert!(!is_loop(&back, b"z9hG4bKabc"), "not our branch");
    }
}
