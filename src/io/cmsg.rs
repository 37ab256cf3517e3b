//! The control messages that carry a datagram's local address: on receive
//! the kernel reports the address a datagram was sent to (`IP_PKTINFO`,
//! `IPV6_PKTINFO`, asked for in `socket.rs`); on send the same message
//! names the address to send from. With a wildcard socket, that is how an
//! answer leaves from the address its request came to.
//!
//! Control buffers are fixed-size, aligned, and preallocated by the
//! backends per receive or send slot ([`Space`]); nothing here allocates.
//! Bytes are read and written unaligned, so a control area at any offset
//! (io_uring puts it inside a provided buffer, after the source address)
//! decodes the same.

use std::mem::{align_of, size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ptr;

/// Bytes a control message with a `T` payload takes, padding included.
const fn space<T>() -> usize {
    // SAFETY: CMSG_SPACE is arithmetic on its argument; it reads nothing.
    unsafe { libc::CMSG_SPACE(size_of::<T>() as libc::c_uint) as usize }
}

/// The `cmsg_len` of a control message with a `T` payload.
const fn msg_len<T>() -> usize {
    // SAFETY: as for CMSG_SPACE above.
    unsafe { libc::CMSG_LEN(size_of::<T>() as libc::c_uint) as usize }
}

/// Where a control message's payload starts (`CMSG_DATA`), from its header.
const DATA: usize = msg_len::<()>();

/// Control space for one received datagram: room for an `IP_PKTINFO` and
/// an `IPV6_PKTINFO` message. A socket gets one or the other per datagram
/// (a dual-stack IPv6 socket gets `IP_PKTINFO` for IPv4 traffic); room for
/// both is 32 bytes more and never truncates.
pub const RECV_SPACE: usize = space::<libc::in_pktinfo>() + space::<libc::in6_pktinfo>();

/// Control space for one datagram to send: one `IP_PKTINFO` or
/// `IPV6_PKTINFO` message.
pub const SEND_SPACE: usize = if space::<libc::in6_pktinfo>() > space::<libc::in_pktinfo>() {
    space::<libc::in6_pktinfo>()
} else {
    space::<libc::in_pktinfo>()
};

/// A control buffer aligned for `cmsghdr`, as `msg_control` should be.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub struct Space<const N: usize>(pub [u8; N]);

const _: () = assert!(align_of::<libc::cmsghdr>() <= align_of::<Space<0>>());

impl<const N: usize> Space<N> {
    /// An all-zero buffer.
    pub const fn new() -> Self {
        Space([0; N])
    }
}

impl<const N: usize> Default for Space<N> {
    fn default() -> Self {
        Space::new()
    }
}

/// C structures made of integers only, with no padding: every byte
/// pattern of their size is a valid value.
///
/// # Safety
/// Implement only for such types.
unsafe trait Plain: Copy {}

// SAFETY: integer fields only (on glibc and musl; musl's padding is named
// fields), so every bit pattern is valid.
unsafe impl Plain for libc::cmsghdr {}
// SAFETY: an int and two in_addr (a u32 each).
unsafe impl Plain for libc::in_pktinfo {}
// SAFETY: an in6_addr (16 bytes) and an unsigned int.
unsafe impl Plain for libc::in6_pktinfo {}

/// Reads a `T` from the start of `bytes`, None when they are too short.
fn read<T: Plain>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: `bytes` has at least size_of::<T>() readable bytes,
    // read_unaligned needs no alignment, and every bit pattern is a valid T
    // (Plain).
    Some(unsafe { ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Writes `value` at the start of `out`; false when `out` is too short.
fn write<T: Plain>(out: &mut [u8], value: T) -> bool {
    if out.len() < size_of::<T>() {
        return false;
    }
    // SAFETY: `out` has at least size_of::<T>() writable bytes,
    // write_unaligned needs no alignment, and T is Copy (nothing to drop).
    unsafe { ptr::write_unaligned(out.as_mut_ptr().cast::<T>(), value) };
    true
}

/// Our address a datagram was sent to, from the control messages the
/// kernel wrote with it (`control`: the `msg_controllen` bytes at
/// `msg_control`); None when they name none.
///
/// For IPv4 this is `ipi_spec_dst`, the local address the kernel would
/// answer from: the packet's destination for unicast (the case that
/// matters), an address of the receiving interface for a broadcast, which
/// cannot be a source. For IPv6, `ipi6_addr`, the packet's destination,
/// except a multicast group (not a source either).
pub fn decode_local(control: &[u8]) -> Option<IpAddr> {
    let mut found = None;
    let mut rest = control;
    while let Some(h) = read::<libc::cmsghdr>(rest) {
        // size_t on glibc, socklen_t on musl.
        #[allow(clippy::unnecessary_cast)]
        let len = h.cmsg_len as usize;
        let Some(data) = rest.get(DATA..len) else {
            break; // malformed or cut short (MSG_CTRUNC)
        };
        match (h.cmsg_level, h.cmsg_type) {
            (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                if let Some(p) = read::<libc::in_pktinfo>(data) {
                    let spec = Ipv4Addr::from(p.ipi_spec_dst.s_addr.to_ne_bytes());
                    let dst = Ipv4Addr::from(p.ipi_addr.s_addr.to_ne_bytes());
                    // spec_dst is 0 when the kernel had no route to ask.
                    found = Some(IpAddr::V4(if spec.is_unspecified() { dst } else { spec }));
                }
            }
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                if let Some(p) = read::<libc::in6_pktinfo>(data) {
                    let dst = Ipv6Addr::from(p.ipi6_addr.s6_addr);
                    if !dst.is_multicast() {
                        found = Some(IpAddr::V6(dst));
                    }
                }
            }
            _ => {}
        }
        // The next header starts at the aligned end of this one.
        let next = (len + align_of::<libc::cmsghdr>() - 1) & !(align_of::<libc::cmsghdr>() - 1);
        match rest.get(next..) {
            Some(r) => rest = r,
            None => break,
        }
    }
    found
}

/// The local address of a datagram received on a socket bound to `bound`:
/// the address from its control messages with the bound port, or `bound`
/// itself when they name none. On an IPv6 socket an IPv4 address (a
/// dual-stack socket's `IP_PKTINFO`) is given v4-mapped, as the peer is.
pub fn local_addr(control: &[u8], bound: SocketAddr) -> SocketAddr {
    match decode_local(control) {
        Some(IpAddr::V4(ip)) if bound.is_ipv6() => {
            SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), bound.port())
        }
        Some(ip) => SocketAddr::new(ip, bound.port()),
        None => bound,
    }
}

/// The source address a datagram needs named in a control message: none
/// when the socket is bound to that very address (the kernel sends from
/// it anyway, and the message would cost the kernel a parse per datagram),
/// so only a wildcard socket, or an answer for another listen address,
/// pays for it.
pub fn needed_source(from: Option<IpAddr>, bound: SocketAddr) -> Option<IpAddr> {
    from.filter(|ip| bound.ip().is_unspecified() || *ip != bound.ip())
}

/// Writes into `out` the control message that sends a datagram from our
/// address `from` and returns its length (the `msg_controllen`); 0, with
/// nothing written, when `from` is unspecified (the kernel picks, as with
/// no message) or `out` is too short.
///
/// IPv4 sets `ipi_spec_dst` (ip(7): the source address; `ipi_ifindex` 0
/// lets the route pick the interface); IPv6 sets `ipi6_addr`. A v4-mapped
/// IPv6 address on a dual-stack socket is accepted by Linux for IPv4
/// traffic. An address that is not ours makes the kernel refuse the send.
pub fn encode_source(from: IpAddr, out: &mut [u8]) -> usize {
    if from.is_unspecified() {
        return 0;
    }
    let (level, kind, len) = match from {
        IpAddr::V4(_) => (
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            msg_len::<libc::in_pktinfo>(),
        ),
        IpAddr::V6(_) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_PKTINFO,
            msg_len::<libc::in6_pktinfo>(),
        ),
    };
    if out.len() < len {
        return 0;
    }
    // SAFETY: cmsghdr is integers only; all-zero is a valid value (and
    // zeroes musl's padding fields).
    let mut h: libc::cmsghdr = unsafe { zeroed() };
    h.cmsg_len = len as _;
    h.cmsg_level = level;
    h.cmsg_type = kind;
    write(out, h);
    let data = &mut out[DATA..];
    let ok = match from {
        IpAddr::V4(ip) => write(
            data,
            libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from_ne_bytes(ip.octets()),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            },
        ),
        IpAddr::V6(ip) => write(
            data,
            libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: ip.octets(),
                },
                ipi6_ifindex: 0,
            },
        ),
    };
    if !ok {
        return 0;
    }
    // The kernel takes CMSG_SPACE of the last message as well.
    (len + align_of::<libc::cmsghdr>() - 1) & !(align_of::<libc::cmsghdr>() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_socket_needs_no_message_for_its_own_address() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let specific: SocketAddr = "127.0.0.2:5060".parse().unwrap();
        let wildcard: SocketAddr = "0.0.0.0:5060".parse().unwrap();
        assert_eq!(needed_source(Some(ip("127.0.0.2")), specific), None);
        assert_eq!(
            needed_source(Some(ip("127.0.0.3")), specific),
            Some(ip("127.0.0.3"))
        );
        assert_eq!(
            needed_source(Some(ip("127.0.0.2")), wildcard),
            Some(ip("127.0.0.2"))
        );
        assert_eq!(needed_source(None, wildcard), None);
    }

    #[test]
    fn sizes_are_what_linux_uses() {
        // 16-byte header on 64-bit Linux, payloads of 12 and 20 bytes.
        if size_of::<usize>() == 8 {
            assert_eq!(DATA, 16);
            assert_eq!(RECV_SPACE, 32 + 40);
            assert_eq!(SEND_SPACE, 40);
        }
    }

    #[test]
    fn what_is_encoded_decodes_back() {
        for ip in ["192.0.2.1", "2001:db8::7", "::ffff:192.0.2.1"] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut buf = Space::<SEND_SPACE>::new();
            let n = encode_source(ip, &mut buf.0);
            assert!(n > 0 && n <= SEND_SPACE);
            assert_eq!(decode_local(&buf.0[..n]), Some(ip));
        }
    }

    #[test]
    fn unspecified_or_no_room_encodes_nothing() {
        let mut buf = [0u8; SEND_SPACE];
        assert_eq!(encode_source(Ipv4Addr::UNSPECIFIED.into(), &mut buf), 0);
        assert_eq!(encode_source(Ipv6Addr::UNSPECIFIED.into(), &mut buf), 0);
        assert_eq!(
            encode_source("2001:db8::1".parse().unwrap(), &mut buf[..20]),
            0
        );
    }

    #[test]
    fn two_messages_and_junk_decode_safely() {
        // An unknown message, then IP_PKTINFO, in one control area.
        let mut buf = Space::<{ RECV_SPACE + 32 }>::new();
        // SAFETY: all-zero is a valid cmsghdr (integers only).
        let mut h: libc::cmsghdr = unsafe { zeroed() };
        h.cmsg_len = msg_len::<u32>() as _;
        h.cmsg_level = libc::SOL_SOCKET;
        h.cmsg_type = libc::SO_MARK;
        assert!(write(&mut buf.0, h));
        let first = space::<u32>();
        let n = encode_source("198.51.100.9".parse().unwrap(), &mut buf.0[first..]);
        let all = &buf.0[..first + n];
        assert_eq!(decode_local(all), Some("198.51.100.9".parse().unwrap()));
        // Every truncation and garbage length stays in bounds.
        for cut in 0..all.len() {
            let _ = decode_local(&all[..cut]);
        }
        let mut bad = all.to_vec();
        bad[0] = 0xff; // cmsg_len far beyond the buffer
        assert_eq!(decode_local(&bad), None);
        bad[..8].copy_from_slice(&[0; 8]); // cmsg_len 0
        assert_eq!(decode_local(&bad), None);
    }

    #[test]
    fn spec_dst_wins_and_multicast_is_not_local() {
        let mut buf = Space::<SEND_SPACE>::new();
        let n = encode_source("10.0.0.1".parse().unwrap(), &mut buf.0);
        // As the kernel writes it on receive: ipi_addr the header's
        // destination (a broadcast here), ipi_spec_dst ours.
        let addr = DATA + 8;
        buf.0[addr..addr + 4].copy_from_slice(&[10, 0, 0, 255]);
        assert_eq!(decode_local(&buf.0[..n]), Some("10.0.0.1".parse().unwrap()));
        let n = encode_source("ff02::1".parse().unwrap(), &mut buf.0);
        assert_eq!(decode_local(&buf.0[..n]), None);
    }

    #[test]
    fn local_addr_keeps_the_port_and_the_family() {
        let bound: SocketAddr = "[::]:5060".parse().unwrap();
        let mut buf = Space::<SEND_SPACE>::new();
        let n = encode_source("192.0.2.1".parse().unwrap(), &mut buf.0);
        assert_eq!(
            local_addr(&buf.0[..n], bound),
            "[::ffff:192.0.2.1]:5060".parse().unwrap()
        );
        assert_eq!(local_addr(&[], bound), bound);
        let v4: SocketAddr = "0.0.0.0:5070".parse().unwrap();
        assert_eq!(
            local_addr(&buf.0[..n], v4),
            "192.0.2.1:5070".parse().unwrap()
        );
    }
}
