//! The shard's millisecond timer wheel: every transaction timer of the
//! shard, armed, disarmed and fired in constant time, on the clock the
//! shard hands it (the wheel reads none).
//!
//! A hashed wheel: `slots` slots of `tick` ms each, a deadline `at` in slot
//! `(at / tick) % slots`. Each slot is an intrusive doubly linked list
//! threaded through one slab of entries, so arming and disarming touch a
//! few indices, and the slab only grows (to the most timers ever armed at
//! once, which `--max-transactions` bounds): no allocation per timer once
//! warm. A deadline beyond one turn of the wheel (Timer C's minutes) stays
//! in its slot and is passed over until its turn comes.
//!
//! A disarmed or fired timer's [`TimerId`] goes stale (its generation
//! moves on), so disarming a timer that already fired does nothing rather
//! than disarm the slot's next tenant.

/// No entry: the end of a list.
const NIL: u32 = u32::MAX;

/// A timer armed in a [`Wheel`], to disarm it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

#[derive(Clone, Copy, Debug)]
struct Entry<K> {
    key: K,
    at: u64,
    generation: u32,
    /// Armed: the slot it is in. Free: NIL.
    slot: u32,
    prev: u32,
    next: u32,
}

/// Timers keyed by `K` (what the shard needs to find the transaction and
/// the timer: a slot of its table, a generation, the RFC timer).
#[derive(Debug)]
pub struct Wheel<K> {
    tick: u64,
    heads: Vec<u32>,
    entries: Vec<Entry<K>>,
    /// Free entries, linked through `next`.
    free: u32,
    /// The first tick not yet visited.
    next_tick: u64,
    armed: usize,
}

impl<K: Copy> Wheel<K> {
    /// A wheel of `slots` slots of `tick_ms` ms each (both at least 1),
    /// whose clock starts at `now_ms`.
    pub fn new(tick_ms: u64, slots: usize, now_ms: u64) -> Wheel<K> {
        let tick = tick_ms.max(1);
        Wheel {
            tick,
            heads: vec![NIL; slots.max(1)],
            entries: Vec::new(),
            free: NIL,
            next_tick: now_ms / tick,
            armed: 0,
        }
    }

    /// Makes room for `n` timers at once, so that the wheel does not
    /// grow (copying every entry) on the shard's loop.
    pub fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
    }

    /// Timers armed.
    pub fn len(&self) -> usize {
        self.armed
    }

    /// True when no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.armed == 0
    }

    /// Arms a timer for `key` at `at_ms`. One already due fires at the
    /// next [`Wheel::expire`].
    pub fn arm(&mut self, at_ms: u64, key: K) -> TimerId {
        // A deadline in a tick already visited goes in the next one to
        // visit, or it would wait a whole turn.
        let slot = self.slot_of((at_ms / self.tick).max(self.next_tick));
        let index = match self.free {
            NIL => {
                self.entries.push(Entry {
                    key,
                    at: at_ms,
                    generation: 0,
                    slot: NIL,
                    prev: NIL,
                    next: NIL,
                });
                u32::try_from(self.entries.len() - 1).unwrap_or(NIL)
            }
            i => {
                self.free = self.entries[i as usize].next;
                let e = &mut self.entries[i as usize];
                e.key = key;
                e.at = at_ms;
                i
            }
        };
        let head = self.heads[slot as usize];
        let e = &mut self.entries[index as usize];
        e.slot = slot;
        e.prev = NIL;
        e.next = head;
        let generation = e.generation;
        if head != NIL {
            self.entries[head as usize].prev = index;
        }
        self.heads[slot as usize] = index;
        self.armed += 1;
        TimerId { index, generation }
    }

    /// Disarms `id`; None when it already fired or was disarmed.
    pub fn disarm(&mut self, id: TimerId) -> Option<K> {
        let e = self.entries.get(id.index as usize)?;
        if e.generation != id.generation || e.slot == NIL {
            return None;
        }
        let key = e.key;
        self.release(id.index);
        Some(key)
    }

    /// Moves the clock to `now_ms` and calls `fire` with the key of every
    /// timer due by then (in no promised order), each once, disarmed
    /// before the call. A clock that went back fires nothing.
    pub fn expire(&mut self, now_ms: u64, mut fire: impl FnMut(K)) {
        let now_tick = now_ms / self.tick;
        if now_tick < self.next_tick {
            return;
        }
        // After a long gap every slot is visited once, not once per tick.
        let ticks = (now_tick - self.next_tick + 1).min(self.heads.len() as u64);
        for t in 0..ticks {
            let slot = self.slot_of(self.next_tick + t);
            let mut i = self.heads[slot as usize];
            while i != NIL {
                let e = self.entries[i as usize];
                if e.at <= now_ms {
                    self.release(i);
                    fire(e.key);
                }
                i = e.next;
            }
        }
        // The current tick is not over: a timer due later in it is still
        // in its slot, which the next call visits again (moving on would
        // leave it there a whole turn).
        self.next_tick = now_tick;
    }

    fn slot_of(&self, tick: u64) -> u32 {
        // `heads.len()` fits u32 in practice; the cast keeps the index in
        // range either way.
        (tick % self.heads.len() as u64) as u32
    }

    /// Unlinks entry `i` and frees it, moving its generation on.
    fn release(&mut self, i: u32) {
        let Entry {
            slot, prev, next, ..
        } = self.entries[i as usize];
        if prev == NIL {
            self.heads[slot as usize] = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        let e = &mut self.entries[i as usize];
        e.slot = NIL;
        e.prev = NIL;
        e.generation = e.generation.wrapping_add(1);
        e.next = self.free;
        self.free = i;
        self.armed -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fired(w: &mut Wheel<u32>, now: u64) -> Vec<u32> {
        let mut out = Vec::new();
        w.expire(now, |k| out.push(k));
        out.sort_unstable();
        out
    }

    #[test]
    fn a_timer_due_later_in_the_current_tick_fires_in_it() {
        let mut w = Wheel::new(10, 64, 1_000);
        w.arm(1_008, 'a');
        let mut fired = Vec::new();
        w.expire(1_005, |k| fired.push(k));
        assert!(fired.is_empty(), "not due yet");
        w.expire(1_009, |k| fired.push(k));
        assert_eq!(fired, ['a'], "in its tick, not a turn later");
        assert!(w.is_empty());
    }

    #[test]
    fn a_timer_fires_once_at_its_deadline_not_before() {
        let mut w = Wheel::new(1, 64, 1_000);
        w.arm(1_500, 7);
        assert!(fired(&mut w, 1_499).is_empty());
        assert_eq!(fired(&mut w, 1_500), [7]);
        assert!(fired(&mut w, 1_501).is_empty());
        assert!(w.is_empty());
    }

    #[test]
    fn deadlines_beyond_one_turn_wait_for_their_own() {
        // 64 slots of 10 ms: one turn is 640 ms; Timer C's 180 s is many.
        let mut w = Wheel::new(10, 64, 0);
        w.arm(180_000, 1);
        w.arm(650, 2);
        let mut now = 0;
        let mut seen = Vec::new();
        while now <= 200_000 {
            w.expire(now, |k| seen.push((k, now)));
            now += 10;
        }
        assert_eq!(seen, [(2, 650), (1, 180_000)]);
    }

    #[test]
    fn a_disarmed_timer_does_not_fire_and_its_stale_id_disarms_nothing() {
        let mut w = Wheel::new(1, 16, 0);
        let a = w.arm(100, 1);
        assert_eq!(w.disarm(a), Some(1));
        assert_eq!(w.disarm(a), None);
        // The freed entry is reused; the old id must not reach it.
        let b = w.arm(100, 2);
        assert_eq!(w.disarm(a), None);
        assert_eq!(w.len(), 1);
        assert_eq!(fired(&mut w, 100), [2]);
        assert_eq!(w.disarm(b), None, "already fired");
    }

    #[test]
    fn a_long_gap_fires_everything_due_and_keeps_the_rest() {
        let mut w = Wheel::new(1, 8, 0);
        for k in 0..20u32 {
            w.arm(u64::from(k) * 10, k);
        }
        let due = fired(&mut w, 95);
        assert_eq!(due, (0..10).collect::<Vec<_>>());
        assert_eq!(w.len(), 10);
        assert_eq!(fired(&mut w, 1_000), (10..20).collect::<Vec<_>>());
    }

    #[test]
    fn a_deadline_already_past_fires_at_the_next_expire() {
        let mut w = Wheel::new(1, 16, 0);
        w.expire(50, |_: u32| {});
        w.arm(10, 3);
        assert_eq!(fired(&mut w, 51), [3]);
    }

    #[test]
    fn disarming_from_the_middle_of_a_slot_keeps_its_neighbours() {
        // Same slot for all three (period 4 ms).
        let mut w = Wheel::new(1, 4, 0);
        let _a = w.arm(4, 1);
        let b = w.arm(8, 2);
        let _c = w.arm(12, 3);
        assert_eq!(w.disarm(b), Some(2));
        assert_eq!(fired(&mut w, 20), [1, 3]);
    }

    #[test]
    fn the_slab_is_reused_rather_than_grown() {
        let mut w = Wheel::new(1, 32, 0);
        for round in 0..100u64 {
            let ids: Vec<_> = (0..10u32).map(|k| w.arm(round * 10 + 5, k)).collect();
            w.disarm(ids[3]);
            w.expire(round * 10 + 9, |_| {});
        }
        assert!(w.entries.len() <= 10, "{}", w.entries.len());
    }

    #[test]
    fn a_clock_that_goes_back_fires_nothing() {
        let mut w = Wheel::new(1, 16, 100);
        w.arm(150, 1);
        w.expire(120, |_| {});
        assert!(fired(&mut w, 110).is_empty());
        assert_eq!(fired(&mut w, 150), [1]);
    }
}
