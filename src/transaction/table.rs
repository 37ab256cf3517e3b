//! A shard's transactions, each found by the key RFC 3261 matches it
//! with: a request by §17.2.3 (server side), a response by §17.1.3
//! (client side). Bounded: past its limit a table refuses a new
//! transaction (the shard answers 503 with Retry-After and counts it),
//! so a flood of INVITEs cannot grow memory without bound.
//!
//! A key is a 64-bit SipHash of the matching fields under a key drawn at
//! random for each table, and two requests with equal hashes are taken
//! for one transaction. The fields are not kept to compare: an attacker
//! who cannot read the random key cannot aim a collision, and an
//! accidental one (about 1 in 10^7 with a million transactions open)
//! makes one request look like a retransmission of another.
//!
//! A request whose top Via branch lacks RFC 3261's magic cookie (an RFC
//! 2543 element) has no key here; the shard forwards it statelessly.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use crate::location::replica::ByHash;
use crate::sip::{Message, Method, BRANCH_COOKIE};

/// The key of one transaction in one [`Table`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key(u64);

/// A transaction in a [`Table`]: what a timer names, so that a timer of
/// an ended transaction finds nothing (the generation moved on) rather
/// than its slot's next tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxId {
    slot: u32,
    generation: u32,
}

#[derive(Debug)]
struct Slot<T> {
    generation: u32,
    entry: Option<(Key, T)>,
}

/// The table is at its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

/// A shard's transactions of one side (server or client).
#[derive(Debug)]
pub struct Table<T> {
    hasher: RandomState,
    /// Keyed by the key itself: it is already a keyed hash.
    index: ByHash<u32>,
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    limit: usize,
}

impl<T> Table<T> {
    /// An empty table holding at most `limit` transactions, its room
    /// reserved at once: growing a table of many transactions by doubling
    /// would copy all of them on the shard's loop (a stall of
    /// milliseconds each time). Reserved is not resident: pages are
    /// touched as slots are used.
    pub fn new(limit: usize) -> Table<T> {
        let mut index = ByHash::default();
        index.reserve(limit);
        Table {
            hasher: RandomState::new(),
            index,
            slots: Vec::with_capacity(limit),
            free: Vec::with_capacity(limit),
            limit,
        }
    }

    /// Transactions held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// §17.2.3: the server transaction key of request `msg`: its top Via's
    /// branch and sent-by, and its method, an ACK counting as the INVITE
    /// it acknowledges (a CANCEL is a transaction of its own: see
    /// [`Table::cancelled_key`]). None without a branch that starts with
    /// the magic cookie.
    pub fn server_key(&self, msg: &Message<'_>) -> Option<Key> {
        let method = match msg.method()? {
            Method::Ack => Method::Invite,
            m => m,
        };
        self.request_key(msg, method)
    }

    /// §9.2: the key of the INVITE transaction a CANCEL `msg` cancels: the
    /// CANCEL carries the INVITE's branch and sent-by.
    pub fn cancelled_key(&self, msg: &Message<'_>) -> Option<Key> {
        self.request_key(msg, Method::Invite)
    }

    fn request_key(&self, msg: &Message<'_>, method: Method<'_>) -> Option<Key> {
        let via = msg.via().ok()?;
        let branch = via.branch.filter(|b| cookie(b))?;
        Some(Key(self.hasher.hash_one((
            branch,
            via.host_raw,
            via.port,
            method,
        ))))
    }

    /// §17.1.3: the client transaction key of response `msg`: the branch
    /// of its top Via (ours) and its CSeq method (a CANCEL shares its
    /// INVITE's branch). None without a cookie branch or a CSeq.
    pub fn client_key(&self, msg: &Message<'_>) -> Option<Key> {
        let via = msg.via().ok()?;
        let branch = via.branch.filter(|b| cookie(b))?;
        let method = msg.cseq().ok()?.method;
        Some(self.sent_key(branch, method))
    }

    /// The client transaction key of a request we send with our `branch`
    /// and `method`: what [`Table::client_key`] gives its responses.
    pub fn sent_key(&self, branch: &[u8], method: Method<'_>) -> Key {
        Key(self.hasher.hash_one((branch, method)))
    }

    /// Adds `value` under `key`: its id, or [`Full`] at the limit. A key
    /// already present is replaced (the caller looked it up first).
    pub fn insert(&mut self, key: Key, value: T) -> Result<TxId, Full> {
        if let Some(&slot) = self.index.get(&key.0) {
            let s = &mut self.slots[slot as usize];
            s.entry = Some((key, value));
            return Ok(TxId {
                slot,
                generation: s.generation,
            });
        }
        if self.index.len() >= self.limit {
            return Err(Full);
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                let slot = u32::try_from(self.slots.len()).map_err(|_| Full)?;
                self.slots.push(Slot {
                    generation: 0,
                    entry: None,
                });
                slot
            }
        };
        let s = &mut self.slots[slot as usize];
        s.entry = Some((key, value));
        self.index.insert(key.0, slot);
        Ok(TxId {
            slot,
            generation: s.generation,
        })
    }

    /// The transaction under `key`.
    pub fn find(&self, key: Key) -> Option<TxId> {
        let slot = *self.index.get(&key.0)?;
        Some(TxId {
            slot,
            generation: self.slots[slot as usize].generation,
        })
    }

    /// Every transaction held, in no order (for checks and reports).
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots
            .iter()
            .filter_map(|s| s.entry.as_ref().map(|(_, v)| v))
    }

    /// The transaction `id` names, if it is still there.
    pub fn get(&self, id: TxId) -> Option<&T> {
        let s = self.slots.get(id.slot as usize)?;
        match &s.entry {
            Some((_, v)) if s.generation == id.generation => Some(v),
            _ => None,
        }
    }

    /// The transaction `id`, if it has not ended.
    pub fn get_mut(&mut self, id: TxId) -> Option<&mut T> {
        let s = self.slots.get_mut(id.slot as usize)?;
        if s.generation != id.generation {
            return None;
        }
        s.entry.as_mut().map(|(_, v)| v)
    }

    /// Ends transaction `id`: its value, None when it had ended already.
    pub fn remove(&mut self, id: TxId) -> Option<T> {
        let s = self.slots.get_mut(id.slot as usize)?;
        if s.generation != id.generation {
            return None;
        }
        let (key, value) = s.entry.take()?;
        s.generation = s.generation.wrapping_add(1);
        self.index.remove(&key.0);
        self.free.push(id.slot);
        Some(value)
    }
}

/// §8.1.1.7: a branch that starts with the magic cookie (and has more).
fn cookie(branch: &[u8]) -> bool {
    branch.len() > BRANCH_COOKIE.len() && branch.starts_with(BRANCH_COOKIE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, branch: &str, sent_by: &str) -> Vec<u8> {
        format!(
            "{method} sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP {sent_by};branch={branch}\r\n\
To: <sip:bob@example.com>\r\nFrom: <sip:alice@example.com>;tag=a\r\n\
Call-ID: c1\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn response(branch: &str, cseq_method: &str) -> Vec<u8> {
        format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch={branch}\r\n\
To: <sip:bob@example.com>;tag=b\r\nFrom: <sip:alice@example.com>;tag=a\r\n\
Call-ID: c1\r\nCSeq: 1 {cseq_method}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn server(t: &Table<u8>, bytes: &[u8]) -> Option<Key> {
        t.server_key(&Message::parse(bytes).unwrap())
    }

    #[test]
    fn s17_2_3_a_retransmission_and_the_non_2xx_ack_match_the_invite() {
        let t: Table<u8> = Table::new(8);
        let invite = server(&t, &request("INVITE", "z9hG4bK1", "192.0.2.4:5060"));
        assert!(invite.is_some());
        assert_eq!(
            server(&t, &request("INVITE", "z9hG4bK1", "192.0.2.4:5060")),
            invite
        );
        assert_eq!(
            server(&t, &request("ACK", "z9hG4bK1", "192.0.2.4:5060")),
            invite
        );
    }

    #[test]
    fn s17_2_3_another_branch_sent_by_or_method_is_another_transaction() {
        let t: Table<u8> = Table::new(8);
        let invite = server(&t, &request("INVITE", "z9hG4bK1", "192.0.2.4:5060"));
        assert_ne!(
            server(&t, &request("INVITE", "z9hG4bK2", "192.0.2.4:5060")),
            invite
        );
        assert_ne!(
            server(&t, &request("INVITE", "z9hG4bK1", "192.0.2.5:5060")),
            invite
        );
        assert_ne!(
            server(&t, &request("INVITE", "z9hG4bK1", "192.0.2.4:5070")),
            invite
        );
        // A CANCEL is its own transaction, and names the INVITE's.
        let cancel = request("CANCEL", "z9hG4bK1", "192.0.2.4:5060");
        assert_ne!(server(&t, &cancel), invite);
        assert_eq!(t.cancelled_key(&Message::parse(&cancel).unwrap()), invite);
    }

    #[test]
    fn an_rfc_2543_branch_has_no_key() {
        let t: Table<u8> = Table::new(8);
        assert_eq!(server(&t, &request("INVITE", "1234", "192.0.2.4")), None);
        assert_eq!(server(&t, &request("INVITE", "z9hG4bK", "192.0.2.4")), None);
    }

    #[test]
    fn s17_1_3_a_response_matches_by_our_branch_and_its_cseq_method() {
        let t: Table<u8> = Table::new(8);
        let sent = t.sent_key(b"z9hG4bKours1", Method::Invite);
        let key = |b: &str, m: &str| t.client_key(&Message::parse(&response(b, m)).unwrap());
        assert_eq!(key("z9hG4bKours1", "INVITE"), Some(sent));
        assert_ne!(
            key("z9hG4bKours1", "CANCEL"),
            Some(sent),
            "the CANCEL's 200"
        );
        assert_ne!(key("z9hG4bKours2", "INVITE"), Some(sent));
    }

    #[test]
    fn keys_differ_between_tables() {
        let a: Table<u8> = Table::new(8);
        let b: Table<u8> = Table::new(8);
        assert_ne!(
            a.sent_key(b"z9hG4bKx", Method::Invite),
            b.sent_key(b"z9hG4bKx", Method::Invite),
            "each table draws its own hash key"
        );
    }

    #[test]
    fn a_full_table_refuses_and_a_removal_makes_room() {
        let mut t: Table<u8> = Table::new(2);
        let k = |n: &[u8]| t.sent_key(n, Method::Options);
        let (k1, k2, k3) = (k(b"z9hG4bK1"), k(b"z9hG4bK2"), k(b"z9hG4bK3"));
        let a = t.insert(k1, 1).unwrap();
        t.insert(k2, 2).unwrap();
        assert_eq!(t.insert(k3, 3), Err(Full));
        assert_eq!(t.remove(a), Some(1));
        let c = t.insert(k3, 3).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.find(k3), Some(c));
        assert_eq!(t.find(k1), None);
    }

    #[test]
    fn an_ended_transactions_id_finds_nothing_in_its_reused_slot() {
        let mut t: Table<u8> = Table::new(4);
        let k1 = t.sent_key(b"z9hG4bK1", Method::Invite);
        let k2 = t.sent_key(b"z9hG4bK2", Method::Invite);
        let old = t.insert(k1, 1).unwrap();
        assert_eq!(t.remove(old), Some(1));
        let new = t.insert(k2, 2).unwrap();
        assert_eq!(t.get_mut(old), None);
        assert_eq!(t.remove(old), None);
        assert_eq!(t.get_mut(new).copied(), Some(2));
        assert!(t.slots.len() == 1, "the slot was reused");
    }
}
