//! Save (RFC 3261 §10.3 steps 6-8): one REGISTER applied to an AOR's
//! bindings by the AOR's owner shard. [`apply`] is the rule as a pure
//! function (bindings before, the REGISTER, the time and the limits in;
//! bindings after, or the error to answer with, out); [`save`] runs it
//! over the owner's current record and publishes the result.
//!
//! Registration writes may allocate (they build the new immutable record
//! that replicas share); the forwarding path's lookups do not.

use super::aor::aor_of;
use super::{OverLimit, RegisterError, RegistrarConfig};
use crate::hash::Hash64;
use crate::location::binding::{stamp_after, Binding};
use crate::location::owner::Owner;
use crate::location::{AorRecord, LocationOp};
use crate::sip::scan::ParamIter;
use crate::sip::{eq_unescaped, Contact, HeaderName, Message, Uri};
use crate::transport::Source;

/// What one REGISTER did to an AOR's bindings (for the counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Bindings that did not exist before.
    pub created: u32,
    /// Bindings that existed and were written again.
    pub refreshed: u32,
    /// Bindings that existed and are gone.
    pub removed: u32,
}

impl Change {
    fn between(before: &[Binding], after: &[Binding]) -> Change {
        let had = |c: &[u8], set: &[Binding]| set.iter().any(|b| *b.contact == *c);
        let created = after.iter().filter(|b| !had(&b.contact, before)).count();
        let removed = before.iter().filter(|b| !had(&b.contact, after)).count();
        Change {
            created: created as u32,
            refreshed: (after.len() - created) as u32,
            removed: removed as u32,
        }
    }
}

/// Applies one REGISTER for an AOR `owner` owns. On success the record to
/// answer with is returned, with whether it changed: a change is
/// published (`fanout` gets it for the other shards' replicas); a query or
/// a retransmission changes nothing.
pub fn save(
    owner: &mut Owner,
    msg: &Message<'_>,
    src: Source,
    now: u64,
    cfg: &RegistrarConfig,
    fanout: &mut dyn FnMut(&LocationOp),
) -> Result<Saved, RegisterError> {
    let aor = aor_of(msg)?;
    let current = owner.current(&aor);
    let before: Vec<_> = current.as_ref().map_or_else(Vec::new, |r| {
        r.bindings()
            .filter(|b| b.expires_at > now)
            .map(|b| b.to_binding())
            .collect()
    });
    let mut bindings = apply(&before, msg, src, now, cfg)?;
    if bindings == before {
        let rec = current.unwrap_or_else(|| AorRecord::new(&aor, &[]));
        return Ok(Saved {
            record: rec,
            change: None,
            before: None,
        });
    }
    // Every binding this REGISTER wrote gets a new stamp, past its last
    // one, and this node's id: what nodes sharing the location service
    // order changes by (`cluster::merge`).
    for b in &mut bindings {
        match before.iter().find(|o| same_contact(&o.contact, &b.contact)) {
            Some(o) if o == b => {}
            prev => {
                b.stamp = stamp_after(prev.map_or(0, |o| o.stamp));
                b.node = owner.node.clone();
            }
        }
    }
    let change = Change::between(&before, &bindings);
    let rec = AorRecord::new(&aor, &bindings);
    owner.publish(LocationOp::Set(rec.clone()), now, fanout);
    Ok(Saved {
        record: rec,
        change: Some(change),
        before: current,
    })
}

/// What [`save`] did.
pub struct Saved {
    /// The record to answer with.
    pub record: AorRecord,
    /// What changed, None for a query or a retransmission.
    pub change: Option<Change>,
    /// The record before the change, when there was a change and a
    /// record (the cluster writes what differs).
    pub before: Option<AorRecord>,
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

/// A Contact's header parameters as the UA wrote them, without `expires`
/// and `q`, which the registrar states itself in its 200 (§10.3 step 8);
/// the rest (`+sip.instance`, `reg-id`, feature tags) is the UA's, and
/// RFC 5626 and RFC 5627 UAs look for it in the 200. Each kept parameter
/// gets a leading `;` and its text as sent; only white space around the
/// `;`s goes.
pub fn kept_params(params: &[u8]) -> Box<[u8]> {
    let base = params.as_ptr() as usize;
    let mut out = Vec::new();
    for p in ParamIter::new(params) {
        if p.name.eq_ignore_ascii_case(b"expires") || p.name.eq_ignore_ascii_case(b"q") {
            continue;
        }
        // Name and value are slices of `params`: keep the text between.
        let start = p.name.as_ptr() as usize - base;
        let end = p.value.map_or(start + p.name.len(), |v| {
            v.as_ptr() as usize - base + v.len()
        });
        if let Some(text) = params.get(start..end) {
            out.push(b';');
            out.extend_from_slice(text);
        }
    }
    out.into()
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
    source: Source,
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
        wanted.push((addr, c.q(), expires.min(cfg.max_expires)));
    }

    let path: Vec<&[u8]> = msg.values(HeaderName::Path).map(|v| v.text).collect();
    let path = path.join(&b", "[..]).into_boxed_slice();
    let mut next: Vec<Binding> = current.iter().filter(live).cloned().collect();
    for (addr, q, expires) in wanted {
        match next.iter().position(|b| same_contact(&b.contact, addr.uri)) {
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
                    b.params = kept_params(addr.params);
                    b.q = q;
                    b.expires_at = now + u64::from(expires);
                    b.call_id = call_id;
                    b.cseq = cseq;
                    b.path = path.clone();
                    b.source = source;
                }
            }
            None if expires > 0 => next.push(Binding {
                contact: addr.uri.into(),
                params: kept_params(addr.params),
                q,
                expires_at: now + u64::from(expires),
                call_id,
                cseq,
                path: path.clone(),
                source,
                created_at: now,
                stamp: 0,
                node: Box::default(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::record::AorRecord;
    use crate::registrar::lookup::{best, fork_order, live_count, nth_live};

    const SRC: &str = "192.0.2.7:5060";

    /// A datagram from `peer` to our address.
    fn udp(peer: &str) -> Source {
        Source::udp(peer.parse().unwrap(), "198.51.100.1:5060".parse().unwrap())
    }

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
        apply(current, &msg, udp(SRC), now, &RegistrarConfig::default())
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
        assert_eq!(b[0].source, udp(SRC));
        assert_eq!(&*b[0].params, b"", "q is the registrar's to state");
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
    fn the_contacts_parameters_are_kept_as_sent_but_expires_and_q() {
        let contact = "<sip:bob@192.0.2.7:5062;ob>;Expires=600 ; +sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1;Q=0.5;+sip.ice;audio;+sip.app-subtype=\"a;b\"";
        let b = run(&[], &register("c1", 1, contact, None), 0).unwrap();
        assert_eq!(b[0].expires_at, 600);
        assert_eq!(b[0].q, Some(500));
        assert_eq!(
            std::str::from_utf8(&b[0].params).unwrap(),
            ";+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1;+sip.ice;audio;+sip.app-subtype=\"a;b\""
        );
        // A refresh writes what the UA sends now.
        let b = run(
            &b,
            &register("c1", 2, "<sip:bob@192.0.2.7:5062;ob>;reg-id=2", None),
            10,
        )
        .unwrap();
        assert_eq!(&*b[0].params, b";reg-id=2");
        assert_eq!(kept_params(b""), Box::default());
        assert_eq!(&*kept_params(b";expires=1;q=1"), b"");
        assert_eq!(&*kept_params(b"  ;lr ;x = 1"), b";lr;x = 1");
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
        let src = udp(SRC);
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

    #[test]
    fn fork_order_is_by_q_then_newest_and_starts_with_best() {
        let b = run(&[], &register("c1", 1, "<sip:a@h1>;q=0.5", None), 0).unwrap();
        let b = run(&b, &register("c1", 2, "<sip:a@h2>;q=0.9", None), 1).unwrap();
        let b = run(&b, &register("c1", 3, "<sip:a@h3>;q=0.9", None), 2).unwrap();
        let b = run(&b, &register("c1", 4, "<sip:a@h4>", Some(60)), 3).unwrap();
        let rec = AorRecord::new(b"sip:a@example.com", &b);
        let contact = |i: usize| rec.bindings().nth(i).unwrap().contact.to_vec();
        let order = fork_order(&rec, 4);
        let contacts: Vec<_> = order.iter().map(|&(i, _)| contact(i)).collect();
        assert_eq!(
            contacts,
            [&b"sip:a@h4"[..], b"sip:a@h3", b"sip:a@h2", b"sip:a@h1"]
        );
        assert_eq!(
            order.iter().map(|o| o.1).collect::<Vec<_>>(),
            [1000, 900, 900, 500]
        );
        assert_eq!(contact(order[0].0), best(&rec, 4).unwrap().contact);
        // h4 lapses at 63: it is neither forked to nor named by index.
        assert_eq!(fork_order(&rec, 64).len(), 3);
        assert_eq!(live_count(&rec, 64), 3);
        assert!(nth_live(&rec, order[0].0, 64).is_none());
        assert_eq!(nth_live(&rec, order[1].0, 64).unwrap().contact, b"sip:a@h3");
    }

    fn owned_register(cseq: u32, contacts: &str) -> Vec<u8> {
        format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.5;branch=z9hG4bK{cseq}\r\n\
To: <sip:ann@example.com>\r\nFrom: <sip:ann@example.com>;tag=1\r\nCall-ID: c\r\n\
CSeq: {cseq} REGISTER\r\n{contacts}\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn changes_are_counted_and_expiry_reports_what_lapsed() {
        let cfg = RegistrarConfig::default();
        let mut loc = Owner::new(0, 1, 0, cfg.expected_aors, cfg.max_expires, None);
        let src = udp("192.0.2.5:5060");
        let mut reg = |cseq, contacts: &str, now| {
            let data = owned_register(cseq, contacts);
            let msg = Message::parse(&data).unwrap();
            save(&mut loc, &msg, src, now, &cfg, &mut |_| {})
                .unwrap()
                .change
        };
        let two = "Contact: <sip:ann@192.0.2.5>;expires=60, <sip:ann@192.0.2.6>;expires=120\r\n";
        assert_eq!(
            reg(1, two, 0),
            Some(Change {
                created: 2,
                refreshed: 0,
                removed: 0
            })
        );
        let refresh = "Contact: <sip:ann@192.0.2.5>;expires=60, <sip:ann@192.0.2.6>;expires=0\r\n";
        assert_eq!(
            reg(2, refresh, 10),
            Some(Change {
                created: 0,
                refreshed: 1,
                removed: 1
            })
        );
        assert_eq!(
            reg(2, refresh, 10),
            None,
            "a retransmission changes nothing"
        );
        assert_eq!(loc.tick(69, &mut |_| {}), 0);
        assert_eq!(
            loc.tick(71, &mut |_| {}),
            1,
            "the refreshed binding lapsed at 70"
        );
        assert!(loc
            .replica
            .lookup(b"sip:ann@example.com")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn bindings_that_lapse_in_one_tick_leave_the_aor_remembered() {
        // The registrar fuzz target's finding: two bindings due in the same
        // tick made the AOR vanish (404) instead of answering 480 for
        // --max-expires.
        let cfg = RegistrarConfig {
            max_expires: 120,
            ..RegistrarConfig::default()
        };
        let mut loc = Owner::new(0, 1, 0, cfg.expected_aors, cfg.max_expires, None);
        let src = udp("192.0.2.5:5060");
        // Two REGISTERs, so two entries on the wheel (one per change).
        for (cseq, contact) in [
            (1, "Contact: <sip:ann@192.0.2.5>;expires=60\r\n"),
            (2, "Contact: <sip:ann@192.0.2.6>;expires=90\r\n"),
        ] {
            let data = owned_register(cseq, contact);
            let msg = Message::parse(&data).unwrap();
            save(&mut loc, &msg, src, 0, &cfg, &mut |_| {}).unwrap();
        }
        assert_eq!(loc.tick(100, &mut |_| {}), 2, "both lapsed in this tick");
        let rec = loc.replica.lookup(b"sip:ann@example.com");
        assert!(rec.is_some_and(|r| r.is_empty()), "remembered, empty (480)");
        assert_eq!(loc.tick(200, &mut |_| {}), 0);
        assert!(loc.replica.lookup(b"sip:ann@example.com").is_some());
        loc.tick(221, &mut |_| {});
        assert!(
            loc.replica.lookup(b"sip:ann@example.com").is_none(),
            "forgotten after 120 s"
        );
    }
}
