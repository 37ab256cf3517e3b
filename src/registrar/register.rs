//! RFC 3261 §10.3 as a pure function: the bindings of one address-of-record
//! before a REGISTER, the REGISTER, the time and the limits in; the
//! bindings after it, or the error to answer with, out. No clock, no I/O,
//! no shared state: the owner shard calls it and publishes the result.
//!
//! Registration writes may allocate (they build the new immutable record
//! that replicas share); the forwarding path's lookups will not.

use std::net::SocketAddr;

use crate::hash::Hash64;
use crate::location::canonical_aor;
use crate::location::record::{AorRecord, BindingView};
use crate::sip::{eq_unescaped, Contact, HeaderName, Message, Uri};

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

/// What to do when a REGISTER would leave more than `max_contacts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverLimit {
    /// Refuse the REGISTER with 403.
    Reject,
    /// Keep the newest bindings, dropping the oldest.
    DropOldest,
}

/// The registrar's limits (`--default-expires`, `--min-expires`,
/// `--max-expires`, `--max-contacts`).
#[derive(Clone, Copy, Debug)]
pub struct RegistrarConfig {
    /// Expiry when neither the Contact nor the Expires header gives one.
    pub default_expires: u32,
    /// Shorter non-zero expiries get 423 Interval Too Brief.
    pub min_expires: u32,
    /// Longer expiries are lowered to this.
    pub max_expires: u32,
    /// Bindings per AOR.
    pub max_contacts: usize,
    /// What exceeding `max_contacts` does.
    pub over_limit: OverLimit,
    /// AORs each shard's location table has room for before it first
    /// grows (`--expected-aors`).
    pub expected_aors: usize,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            default_expires: 3600,
            min_expires: 60,
            max_expires: 86_400,
            max_contacts: 10,
            over_limit: OverLimit::DropOldest,
            expected_aors: 0,
        }
    }
}

/// Why a REGISTER changes nothing, as the response it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// 400 with this reason.
    BadRequest(&'static str),
    /// 423 Interval Too Brief, with Min-Expires.
    IntervalTooBrief {
        /// The Min-Expires to answer with.
        min: u32,
    },
    /// 500: same Call-ID with a CSeq not above the stored one (§10.3 step 7).
    OutOfOrder,
    /// 403: more bindings than `max_contacts` and the policy is Reject.
    TooManyContacts,
    /// 404: the To names a domain this registrar does not serve (§10.3
    /// step 3).
    NotOurDomain,
}

impl RegisterError {
    /// Status code and reason phrase.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            RegisterError::BadRequest(r) => (400, r),
            RegisterError::IntervalTooBrief { .. } => (423, "Interval Too Brief"),
            RegisterError::OutOfOrder => (500, "Out Of Order CSeq"),
            RegisterError::TooManyContacts => (403, "Too Many Contacts"),
            RegisterError::NotOurDomain => (404, "Not Found (Not Our Domain)"),
        }
    }
}

/// The canonical address-of-record of the To header (§10.3 step 5):
/// `sip:user@host` with the user unescaped, the host in lower case, no
/// port and no parameters; `sips:` stays `sips:`.
pub fn aor_of(msg: &Message<'_>) -> Result<Box<[u8]>, RegisterError> {
    msg.to().map_err(|_| RegisterError::BadRequest("Bad To"))?;
    let Ok(Uri::Sip(u)) = msg.to_uri() else {
        return Err(RegisterError::BadRequest("To Is Not A SIP URI"));
    };
    let mut buf = [0u8; 512];
    canonical_aor(&u, &mut buf)
        .map(Box::from)
        .ok_or(RegisterError::BadRequest("Bad To"))
}

/// Two contact URIs name the same binding. A simplification of §19.1.4:
/// scheme and host compare case-insensitively, the user part by its
/// unescaped bytes, and everything else (port, parameters) must match
/// exactly, ignoring letter case.
pub fn same_contact(a: &[u8], b: &[u8]) -> bool {
    match (Uri::parse(a), Uri::parse(b)) {
        (Ok(Uri::Sip(x)), Ok(Uri::Sip(y))) => {
            x.secure == y.secure
                && match (x.user, y.user) {
                    (Some(p), Some(q)) => eq_unescaped(p, q),
                    (None, None) => true,
                    _ => false,
                }
                && x.host_raw.eq_ignore_ascii_case(y.host_raw)
                && x.port == y.port
                && x.params.eq_ignore_ascii_case(y.params)
        }
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// The hash a binding keeps of a Call-ID.
pub fn call_id_hash(call_id: &[u8]) -> u64 {
    Hash64::default().add(call_id).finish()
}

/// Applies one REGISTER to the AOR's current bindings (§10.3 steps 6-8).
/// `Ok` carries the bindings after it (unchanged for a query, one without
/// Contact); `Err` means nothing changes and the error is the answer.
pub fn apply(
    current: &[Binding],
    msg: &Message<'_>,
    source: SocketAddr,
    now: u64,
    cfg: &RegistrarConfig,
) -> Result<Vec<Binding>, RegisterError> {
    let call_id = call_id_hash(
        msg.call_id()
            .map_err(|_| RegisterError::BadRequest("Bad Call-ID"))?,
    );
    let cseq = msg
        .cseq()
        .map_err(|_| RegisterError::BadRequest("Bad CSeq"))?
        .number;
    let header_expires = msg
        .expires()
        .map_err(|_| RegisterError::BadRequest("Bad Expires"))?;
    let contacts: Vec<Contact<'_>> = msg
        .contacts()
        .collect::<Result<_, _>>()
        .map_err(|_| RegisterError::BadRequest("Bad Contact"))?;
    let live = |b: &&Binding| b.expires_at > now;

    // A query: the bindings as they are (step 8).
    if contacts.is_empty() {
        return Ok(current.iter().filter(live).cloned().collect());
    }

    // `*` removes every binding, only alone and with Expires: 0 (step 6).
    if contacts.contains(&Contact::Star) {
        if contacts.len() != 1 || header_expires != Some(0) {
            return Err(RegisterError::BadRequest(
                "Contact * Needs Expires 0 And No Other Contact",
            ));
        }
        for b in current {
            if b.call_id == call_id && cseq <= b.cseq {
                return Err(RegisterError::OutOfOrder);
            }
        }
        return Ok(Vec::new());
    }

    // Every expiry first, so that a 423 changes nothing (step 7).
    let mut wanted = Vec::with_capacity(contacts.len());
    for c in &contacts {
        let Contact::Addr(addr) = c else { continue };
        let expires = c
            .expires()
            .or(header_expires)
            .unwrap_or(cfg.default_expires);
        if expires != 0 && expires < cfg.min_expires {
            return Err(RegisterError::IntervalTooBrief {
                min: cfg.min_expires,
            });
        }
        wanted.push((addr.uri, c.q(), expires.min(cfg.max_expires)));
    }

    let path: Vec<&[u8]> = msg.values(HeaderName::Path).map(|v| v.text).collect();
    let path = path.join(&b", "[..]).into_boxed_slice();
    let mut next: Vec<Binding> = current.iter().filter(live).cloned().collect();
    for (uri, q, expires) in wanted {
        match next.iter().position(|b| same_contact(&b.contact, uri)) {
            Some(i) => {
                // The same Call-ID and CSeq again is a retransmission (a
                // new REGISTER must raise the CSeq, §10.2.4): a stateful
                // registrar's transaction layer would absorb it and resend
                // its answer; we answer with the bindings as they are.
                if next[i].call_id == call_id && cseq == next[i].cseq {
                    return Ok(current.iter().filter(live).cloned().collect());
                }
                if next[i].call_id == call_id && cseq < next[i].cseq {
                    return Err(RegisterError::OutOfOrder);
                }
                if expires == 0 {
                    next.remove(i);
                } else {
                    let b = &mut next[i];
                    b.q = q;
                    b.expires_at = now + u64::from(expires);
                    b.call_id = call_id;
                    b.cseq = cseq;
                    b.path = path.clone();
                    b.source = source;
                }
            }
            None if expires > 0 => next.push(Binding {
                contact: uri.into(),
                q,
                expires_at: now + u64::from(expires),
                call_id,
                cseq,
                path: path.clone(),
                source,
                created_at: now,
            }),
            None => {}
        }
    }
    if next.len() > cfg.max_contacts {
        match cfg.over_limit {
            OverLimit::Reject => return Err(RegisterError::TooManyContacts),
            OverLimit::DropOldest => {
                // Stable: among equals, the earlier one is older.
                next.sort_by_key(|b| b.created_at);
                let extra = next.len() - cfg.max_contacts;
                next.drain(..extra);
            }
        }
    }
    Ok(next)
}

/// The binding a proxy should try first: highest q (absent counts as 1.0),
/// then the newest (§16.6 step 1 leaves the choice to the location
/// service; one target because a stateless proxy cannot fork).
pub fn best(record: &AorRecord, now: u64) -> Option<BindingView<'_>> {
    record
        .bindings()
        .filter(|b| b.expires_at > now)
        .max_by_key(|b| (b.q.unwrap_or(1000), b.created_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "192.0.2.7:5060";

    fn register(call_id: &str, cseq: u32, contacts: &str, expires: Option<u32>) -> Vec<u8> {
        let mut m = format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK{cseq}\r\n\
To: <sip:Bob@Example.COM:5060;transport=udp>\r\nFrom: <sip:Bob@example.com>;tag=f\r\n\
Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
        );
        if !contacts.is_empty() {
            m.push_str(&format!("Contact: {contacts}\r\n"));
        }
        if let Some(e) = expires {
            m.push_str(&format!("Expires: {e}\r\n"));
        }
        m.push_str("Path: <sip:edge.example.com;lr>\r\n\r\n");
        m.into_bytes()
    }

    fn run(current: &[Binding], data: &[u8], now: u64) -> Result<Vec<Binding>, RegisterError> {
        let msg = Message::parse(data).unwrap();
        apply(
            current,
            &msg,
            SRC.parse().unwrap(),
            now,
            &RegistrarConfig::default(),
        )
    }

    #[test]
    fn canonical_aor() {
        let data = register("c1", 1, "", None);
        let msg = Message::parse(&data).unwrap();
        assert_eq!(&*aor_of(&msg).unwrap(), b"sip:Bob@example.com");
    }

    #[test]
    fn add_refresh_and_remove() {
        let b = run(
            &[],
            &register("c1", 1, "<sip:bob@192.0.2.7:5062>;q=0.7", None),
            1000,
        )
        .unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(&*b[0].contact, b"sip:bob@192.0.2.7:5062");
        assert_eq!(b[0].q, Some(700));
        assert_eq!(b[0].expires_at, 1000 + 3600, "default expires");
        assert_eq!(&*b[0].path, b"<sip:edge.example.com;lr>");
        assert_eq!(b[0].source, SRC.parse().unwrap());
        // Refresh with a higher CSeq and an Expires header.
        let b = run(
            &b,
            &register("c1", 2, "<sip:bob@192.0.2.7:5062>", Some(120)),
            2000,
        )
        .unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].expires_at, 2120);
        assert_eq!(b[0].created_at, 1000, "a refresh keeps the creation time");
        // expires=0 removes that one binding.
        let b2 = run(&b, &register("c1", 3, "<sip:bob@192.0.2.8>", None), 2001).unwrap();
        assert_eq!(b2.len(), 2);
        let b3 = run(
            &b2,
            &register("c1", 4, "<sip:bob@192.0.2.7:5062>;expires=0", None),
            2002,
        )
        .unwrap();
        assert_eq!(b3.len(), 1);
        assert_eq!(&*b3[0].contact, b"sip:bob@192.0.2.8");
    }

    #[test]
    fn contact_param_beats_header_and_limits_apply() {
        let b = run(
            &[],
            &register("c1", 1, "<sip:a@h1>;expires=90, <sip:a@h2>", Some(300)),
            0,
        )
        .unwrap();
        assert_eq!(
            b.iter().map(|b| b.expires_at).collect::<Vec<_>>(),
            vec![90, 300]
        );
        let b = run(&[], &register("c1", 1, "<sip:a@h1>", Some(999_999)), 0).unwrap();
        assert_eq!(b[0].expires_at, 86_400, "lowered to max-expires");
        assert_eq!(
            run(&[], &register("c1", 1, "<sip:a@h1>;expires=10", None), 0),
            Err(RegisterError::IntervalTooBrief { min: 60 })
        );
    }

    #[test]
    fn star() {
        let b = run(&[], &register("c1", 1, "<sip:a@h1>, <sip:a@h2>", None), 0).unwrap();
        assert_eq!(
            run(&b, &register("c2", 1, "*", Some(0)), 5).unwrap(),
            vec![]
        );
        for bad in [
            register("c2", 1, "*", None),
            register("c2", 1, "*", Some(60)),
            register("c2", 1, "*, <sip:a@h3>", Some(0)),
        ] {
            assert!(matches!(
                run(&b, &bad, 5),
                Err(RegisterError::BadRequest(_))
            ));
        }
        assert_eq!(
            run(&b, &register("c1", 1, "*", Some(0)), 5),
            Err(RegisterError::OutOfOrder)
        );
    }

    #[test]
    fn cseq_ordering_and_call_id_replacement() {
        let b = run(&[], &register("c1", 5, "<sip:a@h1>", None), 0).unwrap();
        assert_eq!(
            run(&b, &register("c1", 5, "<sip:a@h1>", None), 1),
            Ok(b.clone()),
            "a retransmission changes nothing and is not an error"
        );
        assert_eq!(
            run(&b, &register("c1", 4, "<sip:a@h1>", None), 1),
            Err(RegisterError::OutOfOrder)
        );
        let b2 = run(&b, &register("c2", 1, "<sip:a@h1>", None), 1).unwrap();
        assert_eq!(
            b2[0].call_id,
            call_id_hash(b"c2"),
            "a new Call-ID replaces the binding"
        );
        assert_eq!(b2[0].cseq, 1);
    }

    #[test]
    fn query_returns_live_bindings_only() {
        let b = run(
            &[],
            &register(
                "c1",
                1,
                "<sip:a@h1>;expires=100, <sip:a@h2>;expires=500",
                None,
            ),
            0,
        )
        .unwrap();
        let q = run(&b, &register("c9", 1, "", None), 200).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(&*q[0].contact, b"sip:a@h2");
    }

    #[test]
    fn same_contact_rules() {
        assert!(same_contact(
            b"sip:%61lice@EXAMPLE.com",
            b"sip:alice@example.com"
        ));
        assert!(
            !same_contact(b"sip:Alice@example.com", b"sip:alice@example.com"),
            "user is case-sensitive"
        );
        assert!(
            !same_contact(b"sip:a@h:5060", b"sip:a@h"),
            "an explicit port differs"
        );
        assert!(!same_contact(b"sips:a@h", b"sip:a@h"));
    }

    #[test]
    fn max_contacts() {
        let cfg = RegistrarConfig {
            max_contacts: 2,
            ..RegistrarConfig::default()
        };
        let msg_data = register("c1", 1, "<sip:a@h1>, <sip:a@h2>", None);
        let msg = Message::parse(&msg_data).unwrap();
        let src = SRC.parse().unwrap();
        let b = apply(&[], &msg, src, 0, &cfg).unwrap();
        let more = register("c1", 2, "<sip:a@h3>", None);
        let more = Message::parse(&more).unwrap();
        let dropped = apply(&b, &more, src, 10, &cfg).unwrap();
        let kept: Vec<_> = dropped.iter().map(|b| b.contact.to_vec()).collect();
        assert_eq!(
            kept,
            vec![b"sip:a@h2".to_vec(), b"sip:a@h3".to_vec()],
            "oldest dropped"
        );
        let reject = RegistrarConfig {
            over_limit: OverLimit::Reject,
            ..cfg
        };
        assert_eq!(
            apply(&b, &more, src, 10, &reject),
            Err(RegisterError::TooManyContacts)
        );
    }

    #[test]
    fn best_is_highest_q_then_newest() {
        let b = run(&[], &register("c1", 1, "<sip:a@h1>;q=0.5", None), 0).unwrap();
        let b = run(&b, &register("c1", 2, "<sip:a@h2>;q=0.9", None), 1).unwrap();
        let b = run(&b, &register("c1", 3, "<sip:a@h3>;q=0.9", None), 2).unwrap();
        let rec = AorRecord::new(b"sip:a@example.com", &b);
        assert_eq!(best(&rec, 3).unwrap().contact, b"sip:a@h3");
        assert!(best(&rec, 1_000_000).is_none(), "all expired");
    }
}
