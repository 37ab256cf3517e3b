//! The credentials file (`--auth-file`): per user and realm, the HA1 of
//! each digest algorithm, never the password (RFC 7616 §3.4.2: HA1 is
//! H(username ":" realm ":" password)).
//!
//! One entry per line, `user:realm:md5-ha1:sha256-ha1`, both HA1s in
//! lowercase hex; either may be empty, and then that algorithm is refused
//! for the user. `#` starts a comment line. `sipshard passwd` writes
//! entries.

use std::fmt;
use std::path::Path;

use hashbrown::{Equivalent, HashMap};
use md5::{Digest, Md5};
use sha2::Sha256;

use super::nonce::{read_hex, write_hex};

/// The HA1s of one user in one realm, as lowercase hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ha1 {
    /// H(user:realm:password) with MD5.
    pub md5: Option<[u8; 32]>,
    /// The same with SHA-256.
    pub sha256: Option<[u8; 64]>,
}

impl Ha1 {
    /// Both HA1s of a password.
    pub fn of(user: &[u8], realm: &[u8], password: &[u8]) -> Ha1 {
        let mut md5 = [0u8; 32];
        write_hex(&hash::<Md5>(&[user, b":", realm, b":", password]), &mut md5);
        let mut sha256 = [0u8; 64];
        write_hex(
            &hash::<Sha256>(&[user, b":", realm, b":", password]),
            &mut sha256,
        );
        Ha1 {
            md5: Some(md5),
            sha256: Some(sha256),
        }
    }
}

fn hash<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
    let mut d = D::new();
    for p in parts {
        d.update(p);
    }
    d.finalize().to_vec()
}

#[derive(Hash, PartialEq, Eq)]
struct Key {
    user: Box<[u8]>,
    realm: Box<[u8]>,
}

/// A borrowed [`Key`]: looking up takes no allocation. Its derived Hash
/// hashes the same bytes in the same order as Key's.
#[derive(Hash)]
struct KeyRef<'a> {
    user: &'a [u8],
    realm: &'a [u8],
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        *key.user == *self.user && *key.realm == *self.realm
    }
}

/// Every user the server authenticates.
#[derive(Default)]
pub struct CredentialStore {
    users: HashMap<Key, Ha1>,
}

/// A credentials file line that cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub why: &'static str,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.why)
    }
}

impl CredentialStore {
    /// Reads the file's text; any bad line is an error (a typo must not
    /// silently lock a user out or let one in).
    pub fn parse(text: &str) -> Result<CredentialStore, BadLine> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let bad = |why| BadLine { line: i + 1, why };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, realm, ha1) = parse_line(line).map_err(bad)?;
            let key = Key {
                user: user.as_bytes().into(),
                realm: realm.as_bytes().into(),
            };
            if users.insert(key, ha1).is_some() {
                return Err(bad("a second entry for this user and realm"));
            }
        }
        Ok(CredentialStore { users })
    }

    /// Reads `path`.
    pub fn load(path: &Path) -> Result<CredentialStore, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        CredentialStore::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The HA1s of `user` in `realm`; allocates nothing.
    pub fn get(&self, user: &[u8], realm: &[u8]) -> Option<&Ha1> {
        self.users.get(&KeyRef { user, realm })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

fn parse_line(line: &str) -> Result<(&str, &str, Ha1), &'static str> {
    let mut f = line.split(':');
    let (Some(user), Some(realm), Some(md5), Some(sha256), None) =
        (f.next(), f.next(), f.next(), f.next(), f.next())
    else {
        return Err("want user:realm:md5-ha1:sha256-ha1");
    };
    if user.is_empty() || realm.is_empty() {
        return Err("empty user or realm");
    }
    let md5 = match md5 {
        "" => None,
        h => Some(lower_hex::<32>(h).ok_or("the MD5 HA1 is not 32 hex digits")?),
    };
    let sha256 = match sha256 {
        "" => None,
        h => Some(lower_hex::<64>(h).ok_or("the SHA-256 HA1 is not 64 hex digits")?),
    };
    if md5.is_none() && sha256.is_none() {
        return Err("no HA1 at all");
    }
    Ok((user, realm, Ha1 { md5, sha256 }))
}

fn lower_hex<const N: usize>(h: &str) -> Option<[u8; N]> {
    let mut bytes = vec![0u8; N / 2];
    if !read_hex(h.as_bytes(), &mut bytes) {
        return None;
    }
    let mut out = [0u8; N];
    write_hex(&bytes, &mut out);
    Some(out)
}

/// Adds or replaces the entry of `user` in `realm` in the file at `path`
/// (created with mode 0600 if missing), keeping every other line. The new
/// file is written beside the old one and renamed over it, so a crash
/// leaves one or the other.
pub fn set_password(path: &Path, user: &str, realm: &str, password: &str) -> Result<(), String> {
    for (what, s) in [("user", user), ("realm", realm)] {
        if s.is_empty() || s.contains([':', '\n', '\r']) {
            return Err(format!(
                "the {what} must be non-empty, without ':' or line breaks"
            ));
        }
    }
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    CredentialStore::parse(&old).map_err(|e| format!("{}: {e}", path.display()))?;
    let ha1 = Ha1::of(user.as_bytes(), realm.as_bytes(), password.as_bytes());
    let mut entry = format!("{user}:{realm}:");
    entry.extend(ha1.md5.iter().flatten().map(|&b| b as char));
    entry.push(':');
    entry.extend(ha1.sha256.iter().flatten().map(|&b| b as char));
    let mut text = String::new();
    let mut replaced = false;
    for line in old.lines() {
        let mut f = line.trim().split(':');
        if f.next() == Some(user) && f.next() == Some(realm) && !line.trim().starts_with('#') {
            if !replaced {
                text.push_str(&entry);
                text.push('\n');
            }
            replaced = true;
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    if !replaced {
        text.push_str(&entry);
        text.push('\n');
    }
    super::write_private(path, text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha1_matches_rfc_2617_and_7616_examples() {
        // RFC 2617 §3.5: Mufasa / testrealm@host.com / Circle Of Life.
        let h = Ha1::of(b"Mufasa", b"testrealm@host.com", b"Circle Of Life");
        assert_eq!(&h.md5.unwrap(), b"939e7578ed9e3c518a452acee763bce9");
        // RFC 7616 §3.9.1: Mufasa / http-auth@example.org / Circle of Life.
        let h = Ha1::of(b"Mufasa", b"http-auth@example.org", b"Circle of Life");
        assert_eq!(
            &h.sha256.unwrap(),
            b"7987c64c30e25f1b74be53f966b49b90f2808aa92faf9a00262392d7b4794232"
        );
    }

    #[test]
    fn parses_entries_comments_and_refuses_bad_lines() {
        let md5 = "939E7578ED9E3C518A452ACEE763BCE9";
        let text = format!("# users\n\nalice:example.com:{md5}:\n");
        let s = CredentialStore::parse(&text).unwrap();
        let h = s.get(b"alice", b"example.com").unwrap();
        assert_eq!(&h.md5.unwrap(), b"939e7578ed9e3c518a452acee763bce9");
        assert_eq!(h.sha256, None);
        assert!(s.get(b"alice", b"other.com").is_none());
        assert!(s.get(b"bob", b"example.com").is_none());
        for (text, line) in [
            ("alice:example.com", 1),
            ("alice:example.com:::", 1),
            ("#\nalice:example.com:abc:", 2),
            (":r:939e7578ed9e3c518a452acee763bce9:", 1),
            ("a:r::", 1),
        ] {
            assert_eq!(
                CredentialStore::parse(text).err().map(|e| e.line),
                Some(line),
                "{text}"
            );
        }
        let twice = format!("a:r:{md5}:\na:r:{md5}:\n");
        assert_eq!(
            CredentialStore::parse(&twice).err().map(|e| e.line),
            Some(2)
        );
    }

    #[test]
    fn set_password_adds_and_replaces_and_keeps_other_lines() {
        let dir = std::env::temp_dir().join(format!("sipshard-cred-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("users");
        let _ = std::fs::remove_file(&path);
        set_password(&path, "alice", "example.com", "one").unwrap();
        set_password(&path, "bob", "example.com", "two").unwrap();
        set_password(&path, "alice", "example.com", "three").unwrap();
        let s = CredentialStore::load(&path).unwrap();
        assert_eq!(s.len(), 2);
        let want = Ha1::of(b"alice", b"example.com", b"three");
        assert_eq!(s.get(b"alice", b"example.com"), Some(&want));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(set_password(&path, "a:b", "example.com", "x").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
