//! The address-of-record (RFC 3261 §10.3 step 5): the canonical form that
//! files an AOR's bindings, the same for the registrar that writes them and
//! the proxy that looks them up.

use super::RegisterError;
use crate::sip::{unescape, Host, Message, SipUri, Uri};

/// Writes the canonical AOR of a SIP URI into `out` (§10.3 step 5):
/// `sip:user@host`, user unescaped, host in lower case, no port or
/// parameters. None when it does not fit.
pub fn canonical_aor<'o>(uri: &SipUri<'_>, out: &'o mut [u8]) -> Option<&'o [u8]> {
    let scheme: &[u8] = if uri.secure { b"sips:" } else { b"sip:" };
    let mut n = scheme.len();
    out.get_mut(..n)?.copy_from_slice(scheme);
    if let Some(user) = uri.user {
        let written = unescape(user, out.get_mut(n..)?)?.len();
        n += written;
        *out.get_mut(n)? = b'@';
        n += 1;
    }
    let host = uri.host_raw;
    let dst = out.get_mut(n..n + host.len())?;
    dst.copy_from_slice(host);
    if let Host::Name(_) = uri.host {
        dst.make_ascii_lowercase();
    }
    n += host.len();
    Some(&out[..n])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        let mut buf = [0u8; 64];
        let u = SipUri::parse(b"sip:%62ob@EXAMPLE.com:5070;transport=tcp").unwrap();
        assert_eq!(
            canonical_aor(&u, &mut buf),
            Some(&b"sip:bob@example.com"[..])
        );
        let u = SipUri::parse(b"sips:Bob@[2001:db8::1]").unwrap();
        assert_eq!(
            canonical_aor(&u, &mut buf),
            Some(&b"sips:Bob@[2001:db8::1]"[..])
        );
        let mut small = [0u8; 8];
        assert_eq!(canonical_aor(&u, &mut small), None);
    }

    #[test]
    fn the_to_header_gives_the_aor() {
        // User kept as written (escapes undone), host lowered, port and
        // URI parameters gone.
        let data =
            b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK1\r\n\
To: <sip:Bob@Example.COM:5060;transport=udp>\r\nFrom: <sip:Bob@example.com>;tag=f\r\n\
Call-ID: c1\r\nCSeq: 1 REGISTER\r\n\r\n";
        let msg = Message::parse(data).unwrap();
        assert_eq!(&*aor_of(&msg).unwrap(), b"sip:Bob@example.com");
    }
}
