//! The room index of one namespace on one core: room -> members and member -> rooms.
//!
//! Invariant: `m` is in `members(r)` exactly when `r` is in `rooms_of(m)`; an empty room is
//! removed. Members are local socket indices; other cores keep their own index.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// A room name, shared between the index and the sockets' own room lists.
pub type Room = Arc<str>;

/// What a join or leave did to the room's presence on this core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing changed (already in / not in the room).
    None,
    /// Membership changed; the room still has (or already had) other members here.
    Member,
    /// The room now exists on this core (first member) or no longer does (last member left).
    Occupancy,
}

#[derive(Debug, Default)]
pub struct RoomIndex {
    rooms: HashMap<Room, HashSet<u32>>,
    by_member: HashMap<u32, Vec<Room>>,
}

impl RoomIndex {
    pub fn join(&mut self, member: u32, room: &str) -> Change {
        let (key, set) = match self.rooms.get_key_value(room) {
            Some((k, _)) => {
                let k = k.clone();
                let set = self.rooms.get_mut(&k).expect("present");
                (k, set)
            }
            None => {
                let k: Room = Arc::from(room);
                (k.clone(), self.rooms.entry(k).or_default())
            }
        };
        if !set.insert(member) {
            return Change::None;
        }
        let first = set.len() == 1;
        self.by_member.entry(member).or_default().push(key);
        if first { Change::Occupancy } else { Change::Member }
    }

    pub fn leave(&mut self, member: u32, room: &str) -> Change {
        let Some(set) = self.rooms.get_mut(room) else {
            return Change::None;
        };
        if !set.remove(&member) {
            return Change::None;
        }
        let emptied = set.is_empty();
        if emptied {
            self.rooms.remove(room);
        }
        if let Some(list) = self.by_member.get_mut(&member) {
            list.retain(|r| &**r != room);
            if list.is_empty() {
                self.by_member.remove(&member);
            }
        }
        if emptied { Change::Occupancy } else { Change::Member }
    }

    /// Remove a member from every room; returns the rooms that became empty here.
    pub fn leave_all(&mut self, member: u32) -> Vec<Room> {
        let mut emptied = Vec::new();
        for room in self.by_member.remove(&member).unwrap_or_default() {
            if let Some(set) = self.rooms.get_mut(&room) {
                set.remove(&member);
                if set.is_empty() {
                    self.rooms.remove(&room);
                    emptied.push(room);
                }
            }
        }
        emptied
    }

    pub fn members(&self, room: &str) -> Option<&HashSet<u32>> {
        self.rooms.get(room)
    }

    pub fn rooms_of(&self, member: u32) -> &[Room] {
        self.by_member.get(&member).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn room_count(&self, member: u32) -> usize {
        self.rooms_of(member).len()
    }

    pub fn contains(&self, member: u32, room: &str) -> bool {
        self.rooms.get(room).is_some_and(|s| s.contains(&member))
    }

    /// Every room with its members, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Room, &HashSet<u32>)> {
        self.rooms.iter()
    }

    /// Whether any local member is in the room.
    pub fn is_occupied(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_join_and_last_leave_change_occupancy() {
        let mut ix = RoomIndex::default();
        assert_eq!(ix.join(1, "a"), Change::Occupancy);
        assert_eq!(ix.join(2, "a"), Change::Member);
        assert_eq!(ix.join(2, "a"), Change::None);
        assert_eq!(ix.leave(1, "a"), Change::Member);
        assert_eq!(ix.leave(1, "a"), Change::None);
        assert_eq!(ix.leave(2, "a"), Change::Occupancy);
        assert!(!ix.is_occupied("a"));
    }

    #[test]
    fn leave_all_reports_emptied_rooms() {
        let mut ix = RoomIndex::default();
        ix.join(1, "a");
        ix.join(1, "b");
        ix.join(2, "b");
        let mut emptied = ix.leave_all(1);
        emptied.sort();
        assert_eq!(emptied, vec![Room::from("a")]);
        assert_eq!(ix.rooms_of(1).len(), 0);
        assert!(ix.contains(2, "b"));
    }

    proptest! {
        #[test]
        fn index_stays_consistent(ops in proptest::collection::vec((0u8..3, 0u32..6, 0u8..4), 0..200)) {
            let mut ix = RoomIndex::default();
            for (op, m, r) in ops {
                let room = format!("r{r}");
                match op {
                    0 => { ix.join(m, &room); }
                    1 => { ix.leave(m, &room); }
                    _ => { ix.leave_all(m); }
                }
            }
            for (room, set) in &ix.rooms {
                prop_assert!(!set.is_empty());
                for m in set { prop_assert!(ix.rooms_of(*m).iter().any(|r| r == room)); }
            }
            for (m, rooms) in &ix.by_member {
                prop_assert!(!rooms.is_empty());
                for r in rooms { prop_assert!(ix.rooms[r].contains(m)); }
            }
        }
    }
}
