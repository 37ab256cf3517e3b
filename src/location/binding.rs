//! One binding of an AOR to a contact (RFC 3261 §10.3 step 7), as the
//! location service stores it. Storage owns the type (Kamailio's usrloc
//! owns `ucontact_info_t`); the registrar fills it in.

use std::net::SocketAddr;

/// One binding of an AOR to a contact (§10.3 step 7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The contact URI as registered (without the name-addr's brackets).
    pub contact: Box<[u8]>,
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
    /// Where the REGISTER came from (for `--nat` routing).
    pub source: SocketAddr,
    /// When the binding was first created: "newest" breaks q ties.
    pub created_at: u64,
}
