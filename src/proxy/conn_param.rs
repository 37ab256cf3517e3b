//! The connection a request came on, named in the Via we add to it
//! (`;cid=`), so that its responses, which come back along the Via path
//! to whichever shard, go back on that connection (§18.2.2) through the
//! shard that owns it. Kamailio's `;i=` does the same with the bare id;
//! here the id carries a keyed tag, so that a downstream element cannot
//! forge a response onto another client's connection: only we can write
//! a `cid` that reads back.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::SocketAddr;

use crate::hash::write_hex;
use crate::sip::Via;
use crate::transport::ConnId;

/// The Via parameter's name.
pub const CID_PARAM: &[u8] = b"cid";

/// The Route parameter naming the transport of the flow a `cid` names,
/// where `transport` names how to reach us (a route another node of a
/// cluster reaches a binding of ours by: `cluster::side`).
pub const FLOW_TRANSPORT_PARAM: &[u8] = b"ft";

/// The Route parameter naming the address a NAT binding's REGISTER came
/// from, in the route another node of a cluster reaches it by: only our
/// socket may pass that NAT.
pub const NAT_PARAM: &[u8] = b"nat";

/// Bytes of its value: the id and its tag, 16 hex digits each.
pub const CID_LEN: usize = 32;

/// The key of the tag: SipHash-1-3 keyed with random keys drawn at start
/// (std's `RandomState`), shared by every shard through the config.
#[derive(Clone, Debug)]
pub struct ConnKey(RandomState);

impl Default for ConnKey {
    fn default() -> Self {
        ConnKey(RandomState::new())
    }
}

impl ConnKey {
    fn tag(&self, id: ConnId) -> u64 {
        self.0.hash_one(id.0)
    }

    /// The `cid` value for `id`.
    pub fn write(&self, id: ConnId) -> [u8; CID_LEN] {
        let mut out = [0u8; CID_LEN];
        write_hex(id.0, &mut out[..16]);
        write_hex(self.tag(id), &mut out[16..]);
        out
    }

    /// The connection a `cid` value names, None when it is not one we
    /// wrote (malformed, or its tag does not match).
    pub fn read(&self, value: &[u8]) -> Option<ConnId> {
        if value.len() != CID_LEN {
            return None;
        }
        let id = ConnId(parse_hex(&value[..16])?);
        (parse_hex(&value[16..])? == self.tag(id)).then_some(id)
    }

    /// The connection our Via `via` names; None when it names none
    /// (the request came as a datagram), an error for one we did not
    /// write. We write the `cid` right after the branch, so only there is
    /// looked at: one comparison per response rather than another pass
    /// over the parameters (callgrind: that pass cost 1.6% of a
    /// forwarded message).
    pub fn of_via(&self, via: &Via<'_>) -> Option<Result<ConnId, ()>> {
        let branch = via.branch?;
        let end = (branch.as_ptr() as usize)
            .checked_sub(via.params.as_ptr() as usize)?
            .checked_add(branch.len())?;
        let rest = via.params.get(end..)?.strip_prefix(b";")?;
        let value = rest.strip_prefix(CID_PARAM)?.strip_prefix(b"=")?;
        let value = &value[..value.iter().position(|&b| b == b';').unwrap_or(value.len())];
        Some(self.read(value.trim_ascii()).ok_or(()))
    }
}

/// A peer address as a URI parameter value: the address's bytes in hex,
/// `-`, the port in hex (no brackets or colons to escape).
pub fn nat_value(peer: SocketAddr) -> Vec<u8> {
    let ip: Vec<u8> = match peer {
        SocketAddr::V4(a) => a.ip().octets().to_vec(),
        SocketAddr::V6(a) => a.ip().octets().to_vec(),
    };
    let mut out = Vec::with_capacity(ip.len() * 2 + 5);
    for b in ip {
        out.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    out.push(b'-');
    out.extend_from_slice(format!("{:x}", peer.port()).as_bytes());
    out
}

/// The address a [`nat_value`] names.
pub fn parse_nat_value(v: &[u8]) -> Option<SocketAddr> {
    let dash = v.iter().position(|&c| c == b'-')?;
    let (ip, port) = (&v[..dash], &v[dash + 1..]);
    let port = u16::from_str_radix(std::str::from_utf8(port).ok()?, 16).ok()?;
    let byte = |i: usize| u8::from_str_radix(std::str::from_utf8(ip.get(i..i + 2)?).ok()?, 16).ok();
    match ip.len() {
        8 => {
            let o = [byte(0)?, byte(2)?, byte(4)?, byte(6)?];
            Some(SocketAddr::from((o, port)))
        }
        32 => {
            let mut o = [0u8; 16];
            for (i, x) in o.iter_mut().enumerate() {
                *x = byte(2 * i)?;
            }
            Some(SocketAddr::from((o, port)))
        }
        _ => None,
    }
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    s.iter().try_fold(0u64, |acc, &c| {
        let d = (c as char).to_digit(16)?;
        Some(acc << 4 | u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cid_reads_back_only_with_its_key() {
        let key = ConnKey::default();
        let id = ConnId::new(3, 0x12_3456, 0xdead_beef);
        let v = key.write(id);
        assert_eq!(key.read(&v), Some(id));
        assert_eq!(key.read(&v.to_ascii_uppercase()), Some(id), "hex is hex");
        assert_eq!(ConnKey::default().read(&v), None, "another key");
        let mut forged = v;
        forged[15] = if forged[15] == b'0' { b'1' } else { b'0' };
        assert_eq!(key.read(&forged), None, "another id, same tag");
        assert_eq!(key.read(&v[..31]), None);
        assert_eq!(key.read(b"zz"), None);
    }

    #[test]
    fn a_via_names_its_connection_or_none() {
        let key = ConnKey::default();
        let id = ConnId::new(1, 7, 9);
        let cid = key.write(id);
        let text = format!(
            "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx;cid={}",
            std::str::from_utf8(&cid).unwrap()
        );
        let via = Via::parse(text.as_bytes()).unwrap();
        assert_eq!(key.of_via(&via), Some(Ok(id)));
        let via = Via::parse(b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx").unwrap();
        assert_eq!(key.of_via(&via), None);
        let via = Via::parse(b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx;cid=00").unwrap();
        assert_eq!(key.of_via(&via), Some(Err(())));
    }
}
