//! The chat room: who is connected under which nick. Owned by the loop (in
//! [`Shared`](crate::proto::Shared)) and lent to every chat session; it knows
//! connection ids and nicks, never sockets or addresses.

use std::collections::BTreeMap;
use std::fmt;

use super::ChatError;

/// Longest nick, in bytes (section 3 of the protocol).
pub const MAX_NICK: usize = 32;

/// A nick: 1 to [`MAX_NICK`] bytes of `A-Z a-z 0-9 _ - .`. Stored inline
/// (no heap), so joining, renaming and indexing allocate nothing per member.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nick {
    /// The bytes; those past `len` are zero, so equality is byte equality.
    bytes: [u8; MAX_NICK],
    len: u8,
}

impl Nick {
    /// `name` as a nick, if it follows the nick rules.
    pub fn parse(name: &[u8]) -> Result<Nick, ChatError> {
        let valid = (1..=MAX_NICK).contains(&name.len())
            && name
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !valid {
            return Err(ChatError::InvalidNick);
        }
        Ok(Nick::from_checked(name))
    }

    /// A nick of bytes already checked to be 1 to [`MAX_NICK`] long.
    fn from_checked(name: &[u8]) -> Nick {
        let mut bytes = [0; MAX_NICK];
        let mut len = 0;
        for (slot, &b) in bytes.iter_mut().zip(name) {
            *slot = b;
            len += 1;
        }
        Nick { bytes, len }
    }

    /// The default nick `guest<n>`.
    fn guest(n: u64) -> Nick {
        use std::io::Write;
        // "guest" + at most 20 digits fits MAX_NICK (32) with room to spare.
        let mut text = [0u8; MAX_NICK];
        let mut free = text.as_mut_slice();
        let _ = write!(free, "guest{n}");
        let used = MAX_NICK - free.len();
        Nick::from_checked(text.get(..used).unwrap_or_default())
    }

    /// The nick's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// The nick as text (it is ASCII).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The nick with ASCII letters lowercased: the key under which nicks
    /// are unique and sorted ("ignoring case").
    pub fn folded(&self) -> Nick {
        let mut folded = *self;
        folded.bytes.make_ascii_lowercase();
        folded
    }
}

impl fmt::Display for Nick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Nick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nick({})", self.as_str())
    }
}

/// The members of the room: connection id to nick, and folded nick to
/// connection id. Both maps are ordered: members iterate in join order
/// (connection ids only grow), nicks in case-insensitive order (`/who`).
#[derive(Debug, Default)]
pub struct Room {
    members: BTreeMap<u64, Nick>,
    by_folded: BTreeMap<Nick, u64>,
    /// The last `guest<N>` number given; never reused.
    last_guest: u64,
}

impl Room {
    /// An empty room.
    pub fn new() -> Room {
        Room::default()
    }

    /// Adds connection `id` under the next free `guest<N>` and returns the
    /// nick (its current nick if it is already a member). N grows for the
    /// server's lifetime; a number whose nick someone took is skipped.
    pub fn join(&mut self, id: u64) -> Nick {
        if let Some(&nick) = self.members.get(&id) {
            return nick;
        }
        let nick = loop {
            self.last_guest += 1;
            let nick = Nick::guest(self.last_guest);
            if !self.by_folded.contains_key(&nick.folded()) {
                break nick;
            }
        };
        self.members.insert(id, nick);
        self.by_folded.insert(nick.folded(), id);
        nick
    }

    /// Removes connection `id`; returns the nick it had, if it was a member.
    pub fn leave(&mut self, id: u64) -> Option<Nick> {
        let nick = self.members.remove(&id)?;
        self.by_folded.remove(&nick.folded());
        Some(nick)
    }

    /// Renames member `id` to `new`; returns its old nick. A nick held by
    /// another member, ignoring case, is refused; a member may change the
    /// case of its own nick.
    pub fn rename(&mut self, id: u64, new: Nick) -> Result<Nick, ChatError> {
        let old = *self.members.get(&id).ok_or(ChatError::NotInRoom)?;
        match self.by_folded.get(&new.folded()) {
            Some(&owner) if owner != id => return Err(ChatError::NickInUse),
            _ => {}
        }
        self.by_folded.remove(&old.folded());
        self.by_folded.insert(new.folded(), id);
        self.members.insert(id, new);
        Ok(old)
    }

    /// Member `id`'s nick.
    pub fn nick(&self, id: u64) -> Option<Nick> {
        self.members.get(&id).copied()
    }

    /// The member called `name`, ignoring case.
    pub fn find(&self, name: &[u8]) -> Option<u64> {
        let nick = Nick::parse(name).ok()?;
        self.by_folded.get(&nick.folded()).copied()
    }

    /// Every member's connection id, in join order.
    pub fn member_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.members.keys().copied()
    }

    /// Every member's nick, sorted ignoring case.
    pub fn nicks_sorted(&self) -> impl Iterator<Item = Nick> + '_ {
        self.by_folded.values().filter_map(|id| self.nick(*id))
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when nobody is connected.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

impl crate::proto::Group for Room {
    fn members(&self) -> impl Iterator<Item = u64> + '_ {
        self.member_ids()
    }

    fn member_count(&self) -> usize {
        self.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nick_rules_accept_1_to_32_of_the_allowed_bytes() {
        for ok in ["a", "Z", "0", "_", "-", ".", "a.b-c_D9", &"x".repeat(32)] {
            assert!(Nick::parse(ok.as_bytes()).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            &"x".repeat(33),
            "a b",
            "a\tb",
            "é",
            "a!",
            "a/b",
            "a,b",
            "a@b",
        ] {
            assert_eq!(
                Nick::parse(bad.as_bytes()),
                Err(ChatError::InvalidNick),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn guest_numbers_grow_and_skip_a_taken_nick() {
        let mut room = Room::new();
        assert_eq!(room.join(10).as_str(), "guest1");
        assert_eq!(room.join(11).as_str(), "guest2");
        room.rename(11, Nick::parse(b"GUEST3").unwrap()).unwrap();
        assert_eq!(room.join(12).as_str(), "guest4", "guest3 is taken");
        room.leave(10);
        assert_eq!(room.join(13).as_str(), "guest5", "numbers are not reused");
        assert_eq!(room.join(13).as_str(), "guest5", "joining twice is a no-op");
        assert_eq!(Nick::guest(u64::MAX).as_str(), "guest18446744073709551615");
    }

    #[test]
    fn nicks_are_unique_and_sorted_ignoring_case() {
        let mut room = Room::new();
        for id in 1..=4 {
            room.join(id);
        }
        for (id, name) in [(1, "bob"), (2, "Alice"), (3, "_x"), (4, "carol")] {
            room.rename(id, Nick::parse(name.as_bytes()).unwrap())
                .unwrap();
        }
        assert_eq!(
            room.rename(4, Nick::parse(b"BOB").unwrap()),
            Err(ChatError::NickInUse)
        );
        assert_eq!(
            room.rename(1, Nick::parse(b"BOB").unwrap())
                .unwrap()
                .as_str(),
            "bob"
        );
        assert_eq!(room.find(b"bob"), Some(1));
        assert_eq!(room.find(b"ALICE"), Some(2));
        assert_eq!(room.find(b"nobody"), None);
        assert_eq!(room.find(b"bad name"), None);
        let who: Vec<String> = room.nicks_sorted().map(|n| n.to_string()).collect();
        assert_eq!(who, ["_x", "Alice", "BOB", "carol"]);
    }
}
