//! The nonce-count check (RFC 7616 §3.4.5, §5.3): each use of a nonce must
//! carry a higher `nc` than the last, so a captured request cannot be
//! played again. Nonces are stateless, so this table is the only state:
//! fixed-size and direct-mapped per shard, so it costs no allocation and
//! no lock, and it bounds memory whatever a flood sends.
//!
//! What it bounds and what it does not: a replay is refused while its
//! nonce's slot still holds that nonce. A slot is taken over by another
//! nonce that maps to it, and then the displaced nonce can be used once
//! more, until its `--nonce-ttl` runs out. The same request sent again
//! (same nc, same transaction) passes: that is a UDP retransmission, and
//! what it causes is what the first copy caused.

/// Slots per shard (16,384 x 24 bytes = 384 KiB).
pub const SLOTS: usize = 1 << 14;

#[derive(Clone, Copy, Default)]
struct Slot {
    nonce: u64,
    nc: u32,
    transaction: u64,
}

/// The highest nonce-count seen per recent nonce.
pub struct NonceCounts {
    slots: Box<[Slot]>,
}

impl Default for NonceCounts {
    fn default() -> Self {
        NonceCounts {
            slots: vec![Slot::default(); SLOTS].into_boxed_slice(),
        }
    }
}

impl NonceCounts {
    /// Records a use of nonce `nonce` with count `nc` by the transaction
    /// `transaction` (a hash of its branch and CSeq); false when it is a
    /// replay: a count not above the last one seen, from another
    /// transaction.
    pub fn admit(&mut self, nonce: u64, nc: u32, transaction: u64) -> bool {
        let slot = &mut self.slots[(nonce as usize) & (SLOTS - 1)];
        let replay = nc < slot.nc || (nc == slot.nc && transaction != slot.transaction);
        if slot.nonce == nonce && slot.nc != 0 && replay {
            return false;
        }
        *slot = Slot {
            nonce,
            nc,
            transaction,
        };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_must_rise_but_a_retransmission_passes() {
        let mut t = NonceCounts::default();
        assert!(t.admit(42, 1, 100));
        assert!(t.admit(42, 1, 100), "the same request again");
        assert!(!t.admit(42, 1, 101), "the same count, another request");
        assert!(t.admit(42, 2, 101));
        assert!(!t.admit(42, 1, 100), "an old count");
        assert!(t.admit(43, 1, 100), "another nonce has its own count");
    }

    #[test]
    fn a_displaced_nonce_starts_again_which_is_the_documented_bound() {
        let mut t = NonceCounts::default();
        let other = 42 + SLOTS as u64;
        assert!(t.admit(42, 5, 1));
        assert!(t.admit(other, 1, 2));
        assert!(t.admit(42, 1, 3));
    }
}
