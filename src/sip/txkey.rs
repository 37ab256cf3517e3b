//! Transaction identity (RFC 3261 §17.2.3, §16.11): which requests are one
//! transaction. A stateless proxy uses it to give a retransmission, and the
//! CANCEL or non-2xx ACK of an INVITE, the same branch and the same local
//! answer; the transaction layer will key its table by it.

use super::{HeaderName, Message, BRANCH_COOKIE};
use crate::hash::Hash64;

/// Hashes the transaction identity of a request as §16.11 describes.
pub fn transaction_hash(msg: &Message<'_>) -> u64 {
    let mut h = Hash64::default();
    let top = msg.top_via_value();
    let via = msg.via().ok();
    match via.and_then(|v| v.branch) {
        Some(b) if b.len() > BRANCH_COOKIE.len() && b.starts_with(BRANCH_COOKIE) => {
            h.add(b);
            // The sent-by too, as §17.2.3 matches on branch and sent-by.
            h.add(via.map_or(&b""[..], |v| v.host_raw));
        }
        _ => {
            h.add(msg.to().ok().and_then(|a| a.tag()).unwrap_or_default());
            h.add(msg.from().ok().and_then(|a| a.tag()).unwrap_or_default());
            h.add(msg.header(HeaderName::CallId).unwrap_or_default());
            h.add(msg.request_uri_bytes().unwrap_or_default());
            h.add(top.map_or(&b""[..], |v| v.text));
            h.add(
                msg.cseq()
                    .map(|c| c.number.to_le_bytes())
                    .unwrap_or_default()
                    .as_slice(),
            );
        }
    }
    h.finish()
}
