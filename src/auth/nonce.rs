//! Stateless nonces (RFC 7616 §3.3 leaves their form to the server): the
//! time they were issued, a salt that makes each challenge's nonce its own,
//! and an HMAC-SHA-256 over both and the realm with a secret drawn when the
//! process starts. Checking one needs no table: a nonce we did not mint
//! fails the MAC, an old one is stale. A restart makes every outstanding
//! nonce fail, which costs each UA one more challenge.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Length of a nonce: 8 hex digits of time, 8 of salt, 32 of MAC.
pub const NONCE_LEN: usize = 48;

/// The MAC bytes kept in a nonce (128 of HMAC-SHA-256's 256 bits).
const MAC_BYTES: usize = 16;

/// What a nonce says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceCheck {
    /// Ours and younger than the TTL. `id` names this nonce (its MAC's
    /// first 8 bytes) for the nonce-count table.
    Fresh {
        /// The nonce's identity for replay checks.
        id: u64,
    },
    /// Ours but older than the TTL: the UA should retry with a new one,
    /// without asking its user again (`stale=true`).
    Stale,
    /// Not ours, or not for this realm.
    Forged,
}

/// The per-process key nonces are minted and checked with.
#[derive(Clone)]
pub struct NonceKey {
    mac: Hmac<Sha256>,
}

impl NonceKey {
    /// A key from 32 random bytes (see [`NonceKey::random`]).
    pub fn new(secret: &[u8; 32]) -> NonceKey {
        NonceKey {
            // An HMAC takes a key of any length: this cannot fail.
            mac: <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!()),
        }
    }

    /// A key from the kernel's random source.
    pub fn random() -> std::io::Result<NonceKey> {
        random_secret().map(|s| NonceKey::new(&s))
    }

    /// The key kept in `path` (32 bytes), made and written there (mode
    /// 0600, by rename) when missing: with `--state-dir`, nonces issued
    /// before a restart stay good after it, so UAs are not challenged
    /// again, nor counted as failures, because the server restarted.
    pub fn kept_in(path: &std::path::Path) -> std::io::Result<NonceKey> {
        use std::io::{Error, ErrorKind};
        match std::fs::read(path) {
            Ok(bytes) => {
                let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidData,
                        "not 32 bytes: remove it to make a new key",
                    )
                })?;
                return Ok(NonceKey::new(&secret));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let secret = random_secret()?;
        super::write_private(path, &secret)?;
        Ok(NonceKey::new(&secret))
    }

    fn tag(&self, head: &[u8], realm: &[u8]) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.update(head);
        m.update(b":");
        m.update(realm);
        m.finalize().into_bytes().into()
    }

    /// A new nonce for `realm`, issued at `now` (Unix seconds); `salt`
    /// must differ between challenges issued in the same second.
    pub fn mint(&self, now: u64, salt: u32, realm: &[u8]) -> [u8; NONCE_LEN] {
        let mut out = [0u8; NONCE_LEN];
        write_hex(&(now as u32).to_be_bytes(), &mut out[..8]);
        write_hex(&salt.to_be_bytes(), &mut out[8..16]);
        let tag = self.tag(&out[..16], realm);
        write_hex(&tag[..MAC_BYTES], &mut out[16..]);
        out
    }

    /// Checks a nonce a UA sent back for `realm` at `now`; nonces live
    /// `ttl` seconds.
    pub fn check(&self, nonce: &[u8], realm: &[u8], now: u64, ttl: u32) -> NonceCheck {
        if nonce.len() != NONCE_LEN {
            return NonceCheck::Forged;
        }
        let mut given = [0u8; MAC_BYTES];
        let mut issued = [0u8; 4];
        if !read_hex(&nonce[16..], &mut given) || !read_hex(&nonce[..8], &mut issued) {
            return NonceCheck::Forged;
        }
        let mut m = self.mac.clone();
        m.update(&nonce[..16]);
        m.update(b":");
        m.update(realm);
        // Constant time: a forger learns nothing from how long this takes.
        if m.verify_truncated_left(&given).is_err() {
            return NonceCheck::Forged;
        }
        // Seconds wrap at 2^32 (in 2106): the age is taken modulo that.
        let age = (now as u32).wrapping_sub(u32::from_be_bytes(issued));
        if age > ttl {
            return NonceCheck::Stale;
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&given[..8]);
        NonceCheck::Fresh {
            id: u64::from_le_bytes(id),
        }
    }
}

/// 32 bytes from the kernel's random source (getrandom(2)).
fn random_secret() -> std::io::Result<[u8; 32]> {
    let mut secret = [0u8; 32];
    let mut filled = 0;
    while filled < secret.len() {
        let rest = &mut secret[filled..];
        // SAFETY: the pointer and length describe `rest`, which lives
        // across the call.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(secret)
}

/// Lowercase hex of `bytes` into `out` (twice as long).
pub fn write_hex(bytes: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (b, o) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        o[0] = HEX[usize::from(b >> 4)];
        o[1] = HEX[usize::from(b & 15)];
    }
}

/// Reads hex (either case) into `out`; false unless `hex` is exactly
/// twice `out`'s length and all hex digits.
pub fn read_hex(hex: &[u8], out: &mut [u8]) -> bool {
    if hex.len() != out.len() * 2 {
        return false;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        match (digit(pair[0]), digit(pair[1])) {
            (Some(h), Some(l)) => *o = h << 4 | l,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> NonceKey {
        NonceKey::new(&[b; 32])
    }

    #[test]
    fn a_minted_nonce_is_fresh_until_its_ttl_then_stale() {
        let k = key(1);
        let n = k.mint(1_000_000, 7, b"example.com");
        assert!(n.iter().all(|c| c.is_ascii_hexdigit()));
        assert!(matches!(
            k.check(&n, b"example.com", 1_000_000, 30),
            NonceCheck::Fresh { .. }
        ));
        assert!(matches!(
            k.check(&n, b"example.com", 1_000_030, 30),
            NonceCheck::Fresh { .. }
        ));
        assert_eq!(
            k.check(&n, b"example.com", 1_000_031, 30),
            NonceCheck::Stale
        );
    }

    #[test]
    fn another_key_realm_or_any_changed_digit_is_forged() {
        let n = key(1).mint(5, 1, b"a.test");
        assert_eq!(key(2).check(&n, b"a.test", 5, 30), NonceCheck::Forged);
        assert_eq!(key(1).check(&n, b"b.test", 5, 30), NonceCheck::Forged);
        for i in 0..NONCE_LEN {
            let mut m = n;
            m[i] = if m[i] == b'0' { b'1' } else { b'0' };
            assert_eq!(
                key(1).check(&m, b"a.test", 5, 30),
                NonceCheck::Forged,
                "digit {i}"
            );
        }
        assert_eq!(key(1).check(&n[..47], b"a.test", 5, 30), NonceCheck::Forged);
        assert_eq!(key(1).check(b"", b"a.test", 5, 30), NonceCheck::Forged);
        let mut upper = n;
        upper[16..].make_ascii_uppercase();
        // Uppercase hex is the same MAC: still ours.
        assert!(matches!(
            key(1).check(&upper, b"a.test", 5, 30),
            NonceCheck::Fresh { .. }
        ));
    }

    #[test]
    fn salts_make_nonces_of_one_second_differ() {
        let k = key(3);
        let (a, b) = (k.mint(9, 1, b"r"), k.mint(9, 2, b"r"));
        assert_ne!(a, b);
        let id = |n: &[u8]| match k.check(n, b"r", 9, 30) {
            NonceCheck::Fresh { id } => id,
            other => panic!("{other:?}"),
        };
        assert_ne!(id(&a), id(&b));
    }

    #[test]
    fn a_kept_key_is_the_same_key_after_a_restart() {
        let dir = std::env::temp_dir().join(format!("sipshard-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("nonce.key");
        let first = NonceKey::kept_in(&path).unwrap();
        let n = first.mint(100, 1, b"r");
        let again = NonceKey::kept_in(&path).unwrap();
        assert!(matches!(
            again.check(&n, b"r", 100, 30),
            NonceCheck::Fresh { .. }
        ));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, b"short").unwrap();
        assert!(
            NonceKey::kept_in(&path).is_err(),
            "a damaged key is refused"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hex_round_trips() {
        let mut h = [0u8; 8];
        write_hex(&[0xde, 0xad, 0x01, 0xf0], &mut h);
        assert_eq!(&h, b"dead01f0");
        let mut b = [0u8; 4];
        assert!(read_hex(b"DEAD01f0", &mut b));
        assert_eq!(b, [0xde, 0xad, 0x01, 0xf0]);
        assert!(!read_hex(b"dead01g0", &mut b));
        assert!(!read_hex(b"dead01", &mut b));
    }
}
