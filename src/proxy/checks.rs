//! §16.3 request validation: syntax, Max-Forwards, loops, and the
//! option-tags a request requires of us (420 Bad Extension); OPTIONS to
//! the proxy itself is answered here (§11.2).

use std::net::SocketAddr;

use super::branch::is_loop;
use super::{reply, Action, ProxyConfig};
use crate::sip::{HeaderName, Message, Method, ParseError, Uri};
use crate::transport::Dest;

/// What the checks found out on the way, for the steps after them.
pub struct Checked<'m> {
    /// The Request-URI.
    pub ruri: Uri<'m>,
    /// The Request-URI names us: a strict router put us there (§16.4).
    pub ruri_is_us: bool,
    /// Max-Forwards, when the request has one.
    pub max_forwards: Option<u8>,
}

/// The option-tags (§19.2) this proxy supports, as the `Supported` value
/// of its answer to OPTIONS: none. A stateless proxy implements no
/// extension that needs its help (§16.3 step 5).
pub const PROXY_SUPPORTED: &[u8] = b"";

/// True when `tag` is one of the comma-separated option-tags of
/// `supported` (a `Supported` header value).
fn supports(supported: &[u8], tag: &[u8]) -> bool {
    supported
        .split(|&b| b == b',')
        .any(|s| s.trim_ascii().eq_ignore_ascii_case(tag))
}

/// The option-tags of `msg`'s `header` (Require or Proxy-Require) that are
/// not in `supported`: what the `Unsupported` header of a 420 lists
/// (§8.2.2.3, §20.40).
pub fn unsupported<'m, 's>(
    msg: &'s Message<'m>,
    header: HeaderName,
    supported: &'static [u8],
) -> impl Iterator<Item = &'m [u8]> + 's {
    msg.values(header)
        .map(|v| v.text)
        .filter(move |t| !t.is_empty() && !supports(supported, t))
}

/// 420 when `msg`'s `header` names an option-tag missing from `supported`.
pub(super) fn bad_extension(
    msg: &Message<'_>,
    header: HeaderName,
    supported: &'static [u8],
    to: Dest,
) -> Option<Action<'static>> {
    unsupported(msg, header, supported)
        .next()
        .map(|_| Action::BadExtension {
            header,
            supported,
            to,
        })
}

/// §16.3 steps 1-5 for a request whose answers go to `to`: the request
/// goes on with what was learnt, or gets the answer in `Err` (400, 483,
/// 482, 420; 200 for OPTIONS to us).
pub fn check<'m>(
    msg: &Message<'m>,
    cfg: &ProxyConfig,
    local: SocketAddr,
    to: Dest,
) -> Result<Checked<'m>, Action<'static>> {
    // §16.3 step 1: reasonable syntax.
    if let Err(e) = msg.validate() {
        return Err(reply(e.status(), e.reason(), to));
    }
    let Ok(ruri) = msg.request_uri() else {
        return Err(reply(400, ParseError::BadRequestUri.reason(), to));
    };
    let ruri_is_us = matches!(&ruri, Uri::Sip(u) if cfg.is_us(&u.host, u.port, local));
    let to_us_without_user = matches!(&ruri, Uri::Sip(u)
        if u.user.is_none() && (cfg.is_us(&u.host, u.port, local) || cfg.is_local_domain(u, local)));
    let method = msg.method();
    // OPTIONS to the proxy itself (§11.2): answered here, even at
    // Max-Forwards 0 (§16.3 step 3 allows it). We answer it as its UAS, so
    // its Require must name only what we support (§8.2.2.3); so must its
    // Proxy-Require, which asks the same of us as the proxy it reached
    // (§16.3 step 5). Both are checked against the Supported we answer.
    if method == Some(Method::Options) && to_us_without_user {
        for header in [HeaderName::ProxyRequire, HeaderName::Require] {
            if let Some(a) = bad_extension(msg, header, PROXY_SUPPORTED, to) {
                return Err(a);
            }
        }
        return Err(reply(200, ("OK", ""), to));
    }
    // §16.3 step 3: Max-Forwards.
    let max_forwards = msg.max_forwards().ok().flatten();
    if max_forwards == Some(0) {
        return Err(reply(483, ("Too Many Hops", ""), to));
    }
    // §16.3 step 4: loop detection. A Via we wrote with the branch we would
    // write now means this very request came back.
    let looped = msg
        .vias()
        .flatten()
        .any(|v| cfg.is_us(&v.host, v.port, local) && v.branch.is_some_and(|b| is_loop(msg, b)));
    if looped {
        return Err(reply(482, ("Loop Detected", ""), to));
    }
    // §16.3 step 5: Proxy-Require names what every proxy on the way must
    // support (Require is for the UAS: a proxy ignores it). §8.2.2.3: a
    // CANCEL, or an ACK, must not carry it and it is ignored there (an ACK
    // is never answered anyway, §17).
    if !matches!(method, Some(Method::Ack | Method::Cancel)) {
        if let Some(a) = bad_extension(msg, HeaderName::ProxyRequire, PROXY_SUPPORTED, to) {
            return Err(a);
        }
    }
    Ok(Checked {
        ruri,
        ruri_is_us,
        max_forwards,
    })
}
