//! The registrar (RFC 3261 §10.3, RFC 3327 Path): the SIP rules over the
//! location service, as Kamailio's registrar module sits over usrloc. The
//! location service stores and replicates; this module decides.
//!
//! - [`aor`]: the canonical address-of-record (§10.3 step 5);
//! - [`save`]: a REGISTER applied by the AOR's owner (§10.3 steps 6-8);
//! - [`lookup`]: which binding a request for an AOR goes to;
//! - [`reply`]: the 200 with the bindings, the 423 with Min-Expires.

pub mod aor;
pub mod lookup;
pub mod reply;
pub mod save;

pub use aor::{aor_of, canonical_aor};

/// What to do when a REGISTER would leave more than `max_contacts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverLimit {
    /// Refuse the REGISTER with 403.
    Reject,
    /// Keep the newest bindings, dropping the oldest.
    DropOldest,
}

/// The registrar's limits (`--default-expires`, `--min-expires`,
/// `--max-expires`, `--max-contacts`).
#[derive(Clone, Copy, Debug)]
pub struct RegistrarConfig {
    /// Expiry when neither the Contact nor the Expires header gives one.
    pub default_expires: u32,
    /// Shorter non-zero expiries get 423 Interval Too Brief.
    pub min_expires: u32,
    /// Longer expiries are lowered to this.
    pub max_expires: u32,
    /// Bindings per AOR.
    pub max_contacts: usize,
    /// What exceeding `max_contacts` does.
    pub over_limit: OverLimit,
    /// AORs each shard's location table has room for before it first
    /// grows (`--expected-aors`).
    pub expected_aors: usize,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            default_expires: 3600,
            min_expires: 60,
            max_expires: 86_400,
            max_contacts: 10,
            over_limit: OverLimit::DropOldest,
            expected_aors: 0,
        }
    }
}

/// Why a REGISTER changes nothing, as the response it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// 400 with this reason.
    BadRequest(&'static str),
    /// 423 Interval Too Brief, with Min-Expires.
    IntervalTooBrief {
        /// The Min-Expires to answer with.
        min: u32,
    },
    /// 500: same Call-ID with a CSeq not above the stored one (§10.3 step 7).
    OutOfOrder,
    /// 403: more bindings than `max_contacts` and the policy is Reject.
    TooManyContacts,
    /// 404: the To names a domain this registrar does not serve (§10.3
    /// step 3).
    NotOurDomain,
}

impl RegisterError {
    /// Status code and reason phrase.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            RegisterError::BadRequest(r) => (400, r),
            RegisterError::IntervalTooBrief { .. } => (423, "Interval Too Brief"),
            RegisterError::OutOfOrder => (500, "Out Of Order CSeq"),
            RegisterError::TooManyContacts => (403, "Too Many Contacts"),
            RegisterError::NotOurDomain => (404, "Not Found (Not Our Domain)"),
        }
    }
}

impl RegistrarConfig {
    /// Shard `index`'s location state under these limits: the table sized
    /// for `--expected-aors`, an emptied AOR remembered (480, not 404) for
    /// `--max-expires`, changes logged to `store`.
    pub fn owner(
        &self,
        index: usize,
        shards: usize,
        now: u64,
        store: Option<crate::location::store::Store>,
    ) -> crate::location::owner::Owner {
        crate::location::owner::Owner::new(
            index,
            shards,
            now,
            self.expected_aors,
            self.max_expires,
            store,
        )
    }
}
