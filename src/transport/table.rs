//! A shard's table of its connections: the slab a [`ConnId`] indexes.
//!
//! Each shard owns the connections it accepted or opened (ARCHITECTURE.md,
//! "Ownership"), and keeps them here. An id names the owner shard, a slot
//! and the slot's generation: when a connection closes its slot's
//! generation moves on, so an id that outlived its connection (in a Via
//! parameter, a Record-Route, a binding's flow, a mail in flight) finds
//! nothing instead of the slot's next connection. The table holds at most
//! `max` connections (`--max-connections`, issue #14) and grows to that only
//! as connections come: one allocation per new slot, none per message.

use super::ConnId;

/// The slots a table can ever have: a [`ConnId`] keeps 24 bits for one.
pub const MAX_SLOTS: usize = 1 << 24;

struct Slot<T> {
    /// The generation of the connection in the slot, or of the next one
    /// when it is empty. Never 0, so that no id made up of zeros matches.
    generation: u32,
    value: Option<T>,
}

/// One shard's connections, each reachable by the id it was given.
pub struct ConnTable<T> {
    shard: u8,
    max: usize,
    slots: Vec<Slot<T>>,
    /// Empty slots, the last freed first (its memory is the warmest).
    free: Vec<u32>,
    live: usize,
    /// The generation of a new slot.
    first_generation: u32,
}

impl<T> ConnTable<T> {
    /// An empty table for `shard`, holding at most `max` connections
    /// (capped at [`MAX_SLOTS`]).
    pub fn new(shard: u8, max: usize) -> ConnTable<T> {
        ConnTable {
            shard,
            max: max.min(MAX_SLOTS),
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            first_generation: 1,
        }
    }

    /// As [`ConnTable::new`], with new slots starting at `generation`
    /// (not 0): drawn at random per process, so that an id kept across a
    /// restart (a registration's flow in `--state-dir`) does not name a
    /// connection of the new process.
    pub fn starting_at(shard: u8, max: usize, generation: u32) -> ConnTable<T> {
        ConnTable {
            first_generation: generation.max(1),
            ..ConnTable::new(shard, max)
        }
    }

    /// Stores a new connection and returns its id, or gives it back when
    /// the table is full (the caller refuses the connection and counts it).
    pub fn insert(&mut self, value: T) -> Result<ConnId, T> {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None if self.slots.len() < self.max => {
                self.slots.push(Slot {
                    generation: self.first_generation,
                    value: None,
                });
                // len <= MAX_SLOTS = 2^24, which fits in u32.
                (self.slots.len() - 1) as u32
            }
            None => return Err(value),
        };
        let s = &mut self.slots[slot as usize];
        s.value = Some(value);
        self.live += 1;
        Ok(ConnId::new(self.shard, slot, s.generation))
    }

    /// The slot `id` names, if it is this shard's and still that generation.
    fn slot_of(&self, id: ConnId) -> Option<usize> {
        if id.shard() != usize::from(self.shard) {
            return None;
        }
        let slot = id.slot() as usize;
        let s = self.slots.get(slot)?;
        (s.generation == id.generation() && s.value.is_some()).then_some(slot)
    }

    /// The connection `id` names, None when it has closed (or is another
    /// shard's).
    pub fn get(&self, id: ConnId) -> Option<&T> {
        let slot = self.slot_of(id)?;
        self.slots[slot].value.as_ref()
    }

    /// As [`ConnTable::get`], to change it.
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut T> {
        let slot = self.slot_of(id)?;
        self.slots[slot].value.as_mut()
    }

    /// Takes the connection out; its id, and every copy of it, now finds
    /// nothing. None when it was already gone.
    pub fn remove(&mut self, id: ConnId) -> Option<T> {
        let slot = self.slot_of(id)?;
        let s = &mut self.slots[slot];
        let value = s.value.take();
        // Skip 0 when the generation wraps (after 2^32 connections in
        // this slot).
        s.generation = s.generation.wrapping_add(1).max(1);
        self.free.push(slot as u32);
        self.live -= 1;
        value
    }

    /// Connections open.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no connection is open.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The most connections the table holds.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Every open connection with its id (for deadlines and shutdown).
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &T)> {
        let shard = self.shard;
        self.slots.iter().enumerate().filter_map(move |(slot, s)| {
            let value = s.value.as_ref()?;
            Some((ConnId::new(shard, slot as u32, s.generation), value))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn an_id_finds_its_connection_until_it_closes() {
        let mut t = ConnTable::new(3, 10);
        let a = t.insert("a").unwrap();
        let b = t.insert("b").unwrap();
        assert_eq!(a.shard(), 3);
        assert_eq!((t.get(a), t.get(b), t.len()), (Some(&"a"), Some(&"b"), 2));
        *t.get_mut(b).unwrap() = "B";
        assert_eq!(t.remove(b), Some("B"));
        assert_eq!(t.get(b), None);
        assert_eq!(t.remove(b), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_stale_id_misses_the_slots_next_connection() {
        let mut t = ConnTable::new(0, 1);
        let old = t.insert(1).unwrap();
        t.remove(old);
        let new = t.insert(2).unwrap();
        assert_eq!(new.slot(), old.slot(), "the slot is reused");
        assert_ne!(new, old);
        assert_eq!(t.get(old), None);
        assert_eq!(t.remove(old), None);
        assert_eq!(t.get(new), Some(&2));
    }

    #[test]
    fn an_id_from_a_table_of_another_start_finds_nothing() {
        // The same shard, slot and order of events, another process.
        let mut before = ConnTable::starting_at(0, 4, 7);
        let mut after = ConnTable::starting_at(0, 4, 9_000);
        let old = before.insert(1).unwrap();
        let new = after.insert(2).unwrap();
        assert_eq!(old.slot(), new.slot());
        assert_eq!(after.get(old), None);
        assert_eq!(
            ConnTable::<()>::starting_at(0, 1, 0)
                .insert(())
                .unwrap()
                .generation(),
            1
        );
    }

    #[test]
    fn another_shards_id_and_a_made_up_one_find_nothing() {
        let mut t = ConnTable::new(1, 4);
        let id = t.insert(()).unwrap();
        let other = ConnId::new(2, id.slot(), id.generation());
        assert_eq!(t.get(other), None);
        assert_eq!(t.get(ConnId(0)), None);
        assert_eq!(t.get(ConnId::new(1, 3, 1)), None, "a slot never used");
    }

    #[test]
    fn a_full_table_gives_the_connection_back() {
        let mut t = ConnTable::new(0, 2);
        let a = t.insert('a').unwrap();
        t.insert('b').unwrap();
        assert_eq!(t.insert('c'), Err('c'));
        t.remove(a);
        assert!(t.insert('c').is_ok(), "room again once one closed");
        assert_eq!(ConnTable::<()>::new(0, usize::MAX).max(), MAX_SLOTS);
    }

    #[test]
    fn a_wrapping_generation_skips_zero() {
        let mut t = ConnTable::new(0, 1);
        let id = t.insert(()).unwrap();
        t.slots[0].generation = u32::MAX;
        let id = ConnId::new(0, id.slot(), u32::MAX);
        t.remove(id);
        assert_eq!(t.insert(()).unwrap().generation(), 1);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32),
        /// Remove the n-th id ever issued (live or not).
        Remove(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            any::<u32>().prop_map(Op::Insert),
            any::<usize>().prop_map(Op::Remove)
        ]
    }

    proptest! {
        /// The table against a map: every id ever issued finds exactly what
        /// the map holds for it (nothing once removed), the count agrees,
        /// and iteration lists the live ones.
        #[test]
        fn behaves_like_a_map_of_live_ids(ops in proptest::collection::vec(op(), 0..300)) {
            let mut t = ConnTable::new(5, 16);
            let mut model: HashMap<ConnId, u32> = HashMap::new();
            let mut issued: Vec<ConnId> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(v) => match t.insert(v) {
                        Ok(id) => {
                            prop_assert!(!issued.contains(&id), "an id is never issued twice");
                            issued.push(id);
                            model.insert(id, v);
                        }
                        Err(back) => {
                            prop_assert_eq!(back, v);
                            prop_assert_eq!(model.len(), 16);
                        }
                    },
                    Op::Remove(n) if !issued.is_empty() => {
                        let id = issued[n % issued.len()];
                        prop_assert_eq!(t.remove(id), model.remove(&id));
                    }
                    Op::Remove(_) => {}
                }
                prop_assert_eq!(t.len(), model.len());
                for id in &issued {
                    prop_assert_eq!(t.get(*id), model.get(id));
                }
            }
            let mut listed: Vec<(ConnId, u32)> = t.iter().map(|(id, v)| (id, *v)).collect();
            let mut want: Vec<(ConnId, u32)> = model.into_iter().collect();
            listed.sort_by_key(|p| p.0 .0);
            want.sort_by_key(|p| p.0 .0);
            prop_assert_eq!(listed, want);
        }
    }
}
