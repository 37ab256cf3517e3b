//! One binding of an AOR to a contact (RFC 3261 §10.3 step 7), as the
//! location service stores it. Storage owns the type (Kamailio's usrloc
//! owns `ucontact_info_t`); the registrar fills it in.

use crate::transport::Source;

/// One binding of an AOR to a contact (§10.3 step 7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The contact URI as registered (without the name-addr's brackets).
    pub contact: Box<[u8]>,
    /// The Contact's header parameters as the UA sent them, each with its
    /// leading `;` (`;+sip.instance="<urn:uuid:...>";reg-id=1`), without
    /// `expires` and `q`, which the registrar states itself; empty when
    /// there were none. RFC 5626 and RFC 5627 UAs find their own binding
    /// in the 200 to a REGISTER by these (`+sip.instance`, `reg-id`).
    pub params: Box<[u8]>,
    /// The `q` value in thousandths; None when the REGISTER gave none.
    pub q: Option<u16>,
    /// When the binding lapses, in the caller's clock (seconds).
    pub expires_at: u64,
    /// Hash of the Call-ID of the REGISTER that last wrote it (only ever
    /// compared, so the record keeps 8 bytes instead of the string).
    pub call_id: u64,
    /// CSeq number of that REGISTER.
    pub cseq: u32,
    /// The REGISTER's Path values joined by ", " (RFC 3327), or empty.
    pub path: Box<[u8]>,
    /// Where that REGISTER came from and what it arrived on: its peer
    /// (for `--nat` routing), our address, the transport and, on a
    /// connection, the RFC 5626 flow the UA is reached over.
    pub source: Source,
    /// When the binding was first created: "newest" breaks q ties.
    pub created_at: u64,
    /// The clock of the change that last wrote it, in Unix milliseconds,
    /// raised past the previous change's so that it only grows: nodes
    /// sharing the location service keep, per binding, the change with
    /// the highest stamp (`cluster::merge`). 0 for bindings older than
    /// the stamp (state files of format version 3).
    pub stamp: u64,
    /// The `--node-id` of the node whose registrar wrote it; empty outside
    /// a cluster. A binding reachable only through its node (a connection,
    /// NAT) is routed to it through that node.
    pub node: Box<[u8]>,
}

/// A stamp for a change of a binding last stamped `prev` (0: new): now in
/// Unix milliseconds, or just past `prev` if that is later (a clock behind
/// another node's, or stepped back), so that a binding's stamps only grow.
pub fn stamp_after(prev: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    now.max(prev.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_only_grow() {
        let far = u64::MAX / 2;
        assert_eq!(stamp_after(far), far + 1);
        assert!(stamp_after(0) > 1_700_000_000_000);
    }
}
