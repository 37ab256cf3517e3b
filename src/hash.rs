//! Hashing below every layer: the 64-bit hash that files AORs, names
//! transactions and keys rate limits, and hex digits for the identifiers
//! built from it. It knows nothing of SIP, so the parser, the location
//! service and the proxy can all use it without importing each other.

/// A 64-bit hash over a sequence of byte strings: each string is hashed
/// with XXH3 (xxhash-rust), seeded with the hash so far, so that a change
/// in any string changes everything after it, and ("ab","c") differs from
/// ("a","bc"). XXH3 is specified and stable across versions, which matters
/// because hashes of Call-IDs are stored in `--state-dir`.
///
/// It is not keyed: where it files things an attacker names (AORs), the
/// attacker would first have to be allowed to register them, and then
/// could overwrite the binding directly. What it must do is spread and not
/// collide by accident; the word-at-a-time multiply hash it replaces did
/// (multiplication carries a difference only upwards: 4 pairs of
/// `sip:100NN@example.test` AORs collided, and registering one silently
/// replaced the other).
#[derive(Clone, Copy, Debug)]
pub struct Hash64(u64);

impl Default for Hash64 {
    fn default() -> Self {
        Hash64(0x243f_6a88_85a3_08d3)
    }
}

impl Hash64 {
    /// Adds a byte string.
    #[inline]
    pub fn add(&mut self, bytes: &[u8]) -> &mut Self {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
        self
    }

    /// The hash of everything added.
    #[inline]
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// Writes the low `out.len()` hex digits of `v`, most significant first.
pub fn write_hex(v: u64, out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = out.len();
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = HEX[((v >> (4 * (n - 1 - i))) & 0xf) as usize];
    }
}

/// FNV-1a's 64-bit offset basis and prime.
pub const FNV64_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a's 64-bit prime.
pub const FNV64_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The multipliers of SplitMix64's finalizer (Steele, Lea and Flood,
/// "Fast splittable pseudorandom number generators", 2014).
pub const MIX64_M1: u64 = 0xbf58_476d_1ce4_e5b9;
/// The second multiplier of SplitMix64's finalizer.
pub const MIX64_M2: u64 = 0x94d0_49bb_1331_11eb;

/// SplitMix64's finalizer: every bit of `h` reaches the high bits. FNV-1a
/// alone moves its last bytes only into bits 40-47 (its prime is 2^40 +
/// 0x1b3), so Call-IDs that differ in a trailing counter differed little
/// in the high bits that pick the shard: `call-0`..`call-999` put 800 of
/// 1,000 on one of 2 shards.
pub fn mix64(mut h: u64) -> u64 {
    h = (h ^ (h >> 30)).wrapping_mul(MIX64_M1);
    h = (h ^ (h >> 27)).wrapping_mul(MIX64_M2);
    h ^ (h >> 31)
}

/// The shard (of `shards`) a Call-ID is steered to by `--steer call-id`.
///
/// The kernel computes the same thing for every datagram in the steering
/// program (`io/steer/program.rs`), so this is the one hash that has to be
/// simple enough to write in eBPF: FNV-1a over the Call-ID's bytes, mixed
/// by [`mix64`] so that every byte reaches the high bits, then the high
/// 32 bits scaled onto `0..shards` (multiply and shift, no division).
/// Knowing it here
/// lets a shard tell which shard a dialog's messages reach, and the tests
/// check the kernel's answer against it.
pub fn call_id_shard(call_id: &[u8], shards: u32) -> u32 {
    let mut h = FNV64_OFFSET;
    for &b in call_id {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV64_PRIME);
    }
    (((mix64(h) >> 32) * u64::from(shards)) >> 32) as u32
}

#[cfg(test)]
mod tests {
    #[test]
    fn call_id_shard_is_fnv1a_mixed_and_scaled() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (the published vector).
        let h: u64 = 0xaf63_dc4c_8601_ec8c;
        assert_eq!(call_id_shard(b"a", 1 << 16), (mix64(h) >> 48) as u32);
        assert_eq!(call_id_shard(b"anything", 1), 0);
        // SplitMix64's first output from seed 0 (state 0x9e3779b97f4a7c15).
        assert_eq!(mix64(0x9e37_79b9_7f4a_7c15), 0xe220_a839_7b1d_cdaf);
        // Spread: 10,000 Call-IDs over 2 and 4 shards, each shard within
        // 5 points of its share, with the counter first (SIPp) and last.
        for form in [
            "{i}-4242@127.0.0.1",
            "call-{i}",
            "a84b4c76e66710@pc33.atlanta.com-{i}",
        ] {
            for shards in [2u32, 4] {
                let mut n = vec![0u32; shards as usize];
                for i in 0..10_000 {
                    let id = form.replace("{i}", &i.to_string());
                    n[call_id_shard(id.as_bytes(), shards) as usize] += 1;
                }
                let (share, slack) = (10_000 / shards, 500);
                assert!(
                    n.iter().all(|&c| c.abs_diff(share) < slack),
                    "{form} over {shards}: {n:?}"
                );
            }
        }
    }

    use super::*;

    #[test]
    fn no_collisions_among_numbered_aors() {
        // The old multiply hash collided 2,172 times over these; any
        // collision here would be a bug, not bad luck (about 5e-11).
        let mut seen = std::collections::HashSet::new();
        for n in 100..100_000 {
            let aor = format!("sip:{n}@example.test");
            assert!(
                seen.insert(Hash64::default().add(aor.as_bytes()).finish()),
                "{aor}"
            );
        }
    }

    #[test]
    fn hash_separates_concatenations() {
        let a = Hash64::default().add(b"ab").add(b"c").finish();
        let b = Hash64::default().add(b"a").add(b"bc").finish();
        assert_ne!(a, b);
        let long = Hash64::default().add(b"0123456789abcdef01").finish();
        assert_ne!(long, Hash64::default().add(b"0123456789abcdef02").finish());
    }

    #[test]
    fn hex_is_most_significant_first() {
        let mut out = [0u8; 6];
        write_hex(0xab_cdef, &mut out);
        assert_eq!(&out, b"abcdef");
        let mut short = [0u8; 2];
        write_hex(0x1234, &mut short);
        assert_eq!(&short, b"34", "the low digits only");
    }
}
