//! The owner shard's expiry wheel: it tells the shard which AORs may hold a
//! binding that has just expired (RFC 3261 §10.3: a binding lives until an
//! absolute time), so the shard looks only at those AORs instead of scanning
//! its whole table every second.
//!
//! It is a hashed timer wheel: one slot per second, `SLOTS` (4096) slots,
//! and a time `at` sits in slot `at % SLOTS`. Moving the clock visits only
//! the slots for the seconds that passed (at most every slot once), so the
//! cost follows elapsed time and the entries due, not the number of
//! bindings.
//!
//! The wheel only says "look at this AOR again": a key may be scheduled
//! many times (every REGISTER refresh schedules again) and a report may be
//! stale; the owner shard checks the record's real expiry times and drops
//! the report when nothing has expired.
//!
//! # Trade-offs
//! - Resolution is one second, which is that of the Expires header; a
//!   binding can outlive its time by up to one second plus the gap between
//!   two calls of [`ExpiryWheel::due`].
//! - An entry more than one turn (`SLOTS` seconds, about 68 minutes) away
//!   is not moved anywhere: it waits in its slot and is looked at, and kept,
//!   each time that slot is visited before its time, i.e. once per turn.
//!   Registrations of a few hours therefore cost a handful of extra checks
//!   each, in exchange for no overflow levels or cascading.
//! - Memory: `SLOTS` empty `Vec`s (96 KiB) per wheel; slot `Vec`s keep their
//!   capacity so that steady-state [`ExpiryWheel::due`] does not allocate.

/// Slots in the wheel, one per second; a power of two so that the slot of a
/// time is a mask. 4096 s is a little over an hour, the usual upper range
/// of registration lifetimes, so most entries are seen only when due.
const SLOTS: usize = 4096;

/// `at & MASK` is the slot of time `at`.
const MASK: u64 = SLOTS as u64 - 1;

/// Keys due at or before a time, found without scanning every key.
///
/// The owner shard of the location service schedules an AOR hash for each
/// binding's expiry time and, once a second, asks which are due.
#[derive(Debug)]
pub struct ExpiryWheel {
    /// `slots[at & MASK]` holds the `(key, at)` entries with that `at`;
    /// every entry in a slot has `at > now`.
    slots: Box<[Vec<(u64, u64)>]>,
    /// Entries scheduled at or before `now`, reported by the next `due`.
    overdue: Vec<(u64, u64)>,
    /// Entries in `slots` (not counting `overdue`), so that a visit can
    /// stop once the wheel is empty.
    in_slots: usize,
    /// The wheel's clock (Unix seconds): every slot entry with `at <= now`
    /// has been reported. Never moves back.
    now: u64,
}

impl ExpiryWheel {
    /// A wheel whose clock starts at `now` (Unix seconds).
    ///
    /// Start it at the current time, so the first [`due`](Self::due) does
    /// not walk the seconds since the epoch (it would be capped at one turn
    /// anyway).
    pub fn new(now: u64) -> Self {
        ExpiryWheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            overdue: Vec::new(),
            in_slots: 0,
            now,
        }
    }

    /// Remember that `key` (an AOR hash) must be looked at again at `at`
    /// (Unix seconds). A key may be scheduled many times; each (key, at)
    /// pair is reported once (a pair scheduled twice is reported twice). An
    /// `at` at or before the wheel's current time is reported by the next
    /// `due` that does not step the clock back.
    pub fn schedule(&mut self, key: u64, at: u64) {
        if at <= self.now {
            // Its slot's second has already been visited; keep it apart so
            // it is not held back a whole turn.
            self.overdue.push((key, at));
        } else {
            self.slots[slot_of(at)].push((key, at));
            self.in_slots += 1;
        }
    }

    /// Moves the clock to `now` and appends to `out` every key whose time
    /// is <= now (any order). Cost is proportional to the seconds elapsed
    /// (capped at one turn of the wheel) plus the entries in the slots
    /// visited, not to the total.
    ///
    /// If `now` is before the wheel's clock (the system clock stepped
    /// back), nothing is reported and the clock stays where it is, so no
    /// entry is reported twice and none is lost; entries then come due
    /// when the clock catches up.
    pub fn due(&mut self, now: u64, out: &mut Vec<u64>) {
        if now < self.now {
            return;
        }
        out.extend(self.overdue.drain(..).map(|(key, _)| key));

        // The seconds self.now+1 ..= now; a jump of a turn or more visits
        // every slot once. `self.now + step <= now`, so no overflow.
        let steps = (now - self.now).min(SLOTS as u64);
        let mut step = 1;
        while step <= steps && self.in_slots > 0 {
            let slot = &mut self.slots[slot_of(self.now + step)];
            let before = slot.len();
            slot.retain(|&(key, at)| {
                if at <= now {
                    out.push(key);
                    false
                } else {
                    // More than a turn away: seen again next turn.
                    true
                }
            });
            self.in_slots -= before - slot.len();
            step += 1;
        }
        self.now = now;
    }

    /// Entries waiting.
    ///
    /// Counts every scheduled pair not yet reported, duplicates included.
    pub fn len(&self) -> usize {
        self.in_slots + self.overdue.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The slot holding time `at`.
fn slot_of(at: u64) -> usize {
    // The mask keeps the value below SLOTS, which fits any usize.
    (at & MASK) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = 1_700_000_000;

    fn due_sorted(wheel: &mut ExpiryWheel, now: u64) -> Vec<u64> {
        let mut out = Vec::new();
        wheel.due(now, &mut out);
        out.sort_unstable();
        out
    }

    #[test]
    fn due_and_not_due() {
        let mut wheel = ExpiryWheel::new(T0);
        assert!(wheel.is_empty());
        wheel.schedule(1, T0 + 10);
        wheel.schedule(2, T0 + 20);
        wheel.schedule(3, T0 + 10);
        assert_eq!(wheel.len(), 3);

        assert_eq!(due_sorted(&mut wheel, T0 + 9), Vec::<u64>::new());
        assert_eq!(due_sorted(&mut wheel, T0 + 10), vec![1, 3]);
        assert_eq!(due_sorted(&mut wheel, T0 + 10), Vec::<u64>::new());
        assert_eq!(wheel.len(), 1);
        assert_eq!(due_sorted(&mut wheel, T0 + 25), vec![2]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn same_pair_twice_is_reported_twice() {
        let mut wheel = ExpiryWheel::new(T0);
        wheel.schedule(7, T0 + 5);
        wheel.schedule(7, T0 + 5);
        assert_eq!(due_sorted(&mut wheel, T0 + 5), vec![7, 7]);
    }

    #[test]
    fn scheduling_in_the_past() {
        let mut wheel = ExpiryWheel::new(T0);
        wheel.schedule(1, T0);
        wheel.schedule(2, T0 - 100);
        wheel.schedule(3, 0);
        assert_eq!(wheel.len(), 3);
        // Reported even though the clock does not move.
        assert_eq!(due_sorted(&mut wheel, T0), vec![1, 2, 3]);
        assert!(wheel.is_empty());
        assert_eq!(due_sorted(&mut wheel, T0 + 1), Vec::<u64>::new());
    }

    #[test]
    fn far_future_beyond_one_turn() {
        let mut wheel = ExpiryWheel::new(T0);
        let at = T0 + 10_000;
        wheel.schedule(42, at);
        // Step one second at a time: the slot is visited twice before the
        // time and must keep the entry both times.
        for now in T0 + 1..at {
            assert_eq!(due_sorted(&mut wheel, now), Vec::<u64>::new(), "at {now}");
        }
        assert_eq!(wheel.len(), 1);
        assert_eq!(due_sorted(&mut wheel, at), vec![42]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn far_future_with_whole_turn_jumps() {
        let mut wheel = ExpiryWheel::new(T0);
        wheel.schedule(1, T0 + 10_000);
        assert_eq!(due_sorted(&mut wheel, T0 + SLOTS as u64), Vec::<u64>::new());
        assert_eq!(due_sorted(&mut wheel, T0 + 9_999), Vec::<u64>::new());
        assert_eq!(due_sorted(&mut wheel, T0 + 10_000), vec![1]);
    }

    #[test]
    fn clock_jump() {
        let mut wheel = ExpiryWheel::new(T0);
        for i in 0..10_000u64 {
            wheel.schedule(i, T0 + 1 + i * 3);
        }
        wheel.schedule(99_999, T0 + 1_000_000);
        // A jump of many turns visits each slot once and reports all due.
        let out = due_sorted(&mut wheel, T0 + 50_000);
        assert_eq!(out, (0..10_000).collect::<Vec<u64>>());
        assert_eq!(wheel.len(), 1);
        assert_eq!(due_sorted(&mut wheel, T0 + 999_999), Vec::<u64>::new());
        assert_eq!(due_sorted(&mut wheel, T0 + 1_000_000), vec![99_999]);
    }

    #[test]
    fn clock_going_backwards() {
        let mut wheel = ExpiryWheel::new(T0);
        wheel.schedule(1, T0 + 5);
        wheel.schedule(2, T0 + 10);
        assert_eq!(due_sorted(&mut wheel, T0 + 5), vec![1]);
        // Stepped back: nothing reported, the clock stays at T0 + 5.
        assert_eq!(due_sorted(&mut wheel, T0 - 1_000), Vec::<u64>::new());
        // So an entry at T0 + 3 is in the past for the wheel, but is held
        // until the clock catches up.
        wheel.schedule(3, T0 + 3);
        assert_eq!(due_sorted(&mut wheel, T0 + 4), Vec::<u64>::new());
        assert_eq!(due_sorted(&mut wheel, T0 + 5), vec![3]);
        assert_eq!(due_sorted(&mut wheel, T0 + 10), vec![2]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn times_near_the_end_of_u64() {
        let start = u64::MAX - 10;
        let mut wheel = ExpiryWheel::new(start);
        wheel.schedule(1, u64::MAX);
        wheel.schedule(2, u64::MAX - 5);
        assert_eq!(due_sorted(&mut wheel, u64::MAX - 1), vec![2]);
        assert_eq!(due_sorted(&mut wheel, u64::MAX), vec![1]);
    }

    #[test]
    fn slots_keep_their_capacity() {
        let mut wheel = ExpiryWheel::new(T0);
        for i in 0..100 {
            wheel.schedule(i, T0 + 7);
        }
        let mut out = Vec::new();
        wheel.due(T0 + 7, &mut out);
        assert_eq!(out.len(), 100);
        assert!(wheel.slots[slot_of(T0 + 7)].capacity() >= 100);
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Schedule `key` at the wheel's clock plus `offset` (may be
        /// negative: in the past).
        Schedule { key: u64, offset: i64 },
        /// Call `due` at the last clock plus `delta` (may be negative).
        Due { delta: i64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        let turn = SLOTS as i64;
        prop_oneof![
            4 => (0u64..16, prop_oneof![
                -20i64..=20,
                -5_000i64..3 * turn,
            ])
                .prop_map(|(key, offset)| Op::Schedule { key, offset }),
            3 => prop_oneof![
                0i64..=3,
                0i64..=200,
                turn - 50..turn + 50,
                0i64..4 * turn,
                -100i64..0,
            ]
            .prop_map(|delta| Op::Due { delta }),
        ]
    }

    fn shift(base: u64, by: i64) -> u64 {
        if by >= 0 {
            base.saturating_add(by.unsigned_abs())
        } else {
            base.saturating_sub(by.unsigned_abs())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn matches_a_simple_model(
            start in prop_oneof![
                0u64..1 << 40,
                Just(u64::MAX - 30_000),
            ],
            ops in prop::collection::vec(op(), 0..200),
        ) {
            let mut wheel = ExpiryWheel::new(start);
            // The wheel's clock never moves back; `last` is the latest
            // time passed to `due`, from which the next one is derived.
            let mut clock = start;
            let mut last = start;
            let mut model: Vec<(u64, u64)> = Vec::new();
            let mut out = Vec::new();
            for op in ops {
                match op {
                    Op::Schedule { key, offset } => {
                        let at = shift(clock, offset);
                        wheel.schedule(key, at);
                        model.push((key, at));
                    }
                    Op::Due { delta } => {
                        let now = shift(last, delta);
                        last = now;
                        out.clear();
                        wheel.due(now, &mut out);
                        out.sort_unstable();
                        let mut expected: Vec<u64> = Vec::new();
                        if now >= clock {
                            clock = now;
                            model.retain(|&(key, at)| {
                                if at <= now {
                                    expected.push(key);
                                    false
                                } else {
                                    true
                                }
                            });
                        }
                        expected.sort_unstable();
                        prop_assert_eq!(&out, &expected, "due({})", now);
                    }
                }
                prop_assert_eq!(wheel.len(), model.len());
                prop_assert_eq!(wheel.is_empty(), model.is_empty());
            }
        }
    }
}
