//! Revisions and their order-preserving byte encoding.
//!
//! A revision is `(main, sub)`: `main` is the global revision of a write transaction, `sub` the
//! position of an operation inside it. Encoded as etcd does — 8 bytes big-endian `main`, `_`,
//! 8 bytes big-endian `sub` — so byte order equals revision order and history is a range scan. A
//! trailing `t` marks a tombstone (a deletion).

use std::fmt;

/// Length of an encoded revision without the tombstone mark.
pub const REV_BYTES: usize = 17;
const TOMBSTONE_MARK: u8 = b't';

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Self {
        Self { main, sub }
    }

    /// The storage key for this revision, with the tombstone mark when `tombstone`.
    pub fn to_key(self, tombstone: bool) -> Vec<u8> {
        let mut b = Vec::with_capacity(REV_BYTES + 1);
        b.extend_from_slice(&(self.main as u64).to_be_bytes());
        b.push(b'_');
        b.extend_from_slice(&(self.sub as u64).to_be_bytes());
        if tombstone {
            b.push(TOMBSTONE_MARK);
        }
        b
    }

    /// Decodes a storage key written by [`Revision::to_key`]; `None` if malformed.
    pub fn from_key(key: &[u8]) -> Option<(Revision, bool)> {
        let tombstone = match key.len() {
            REV_BYTES => false,
            n if n == REV_BYTES + 1 && key[REV_BYTES] == TOMBSTONE_MARK => true,
            _ => return None,
        };
        let main = u64::from_be_bytes(key[0..8].try_into().ok()?) as i64;
        let sub = u64::from_be_bytes(key[9..17].try_into().ok()?) as i64;
        Some((Revision { main, sub }, tombstone))
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.main, self.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_preserves_order() {
        let revs = [
            Revision::new(0, 0),
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(1, 255),
            Revision::new(1, 256),
            Revision::new(2, 0),
            Revision::new(255, 0),
            Revision::new(256, 0),
            Revision::new(1 << 40, 3),
            Revision::new(i64::MAX, 0),
        ];
        for w in revs.windows(2) {
            assert!(w[0] < w[1]);
            assert!(w[0].to_key(false) < w[1].to_key(false), "{} vs {}", w[0], w[1]);
            assert!(w[0].to_key(true) < w[1].to_key(false), "tombstone of {} sorts before {}", w[0], w[1]);
        }
    }

    #[test]
    fn encoding_round_trips() {
        for (rev, tomb) in [(Revision::new(5, 2), false), (Revision::new(77, 0), true)] {
            let key = rev.to_key(tomb);
            assert_eq!(key.len(), REV_BYTES + tomb as usize);
            assert_eq!(key[8], b'_');
            assert_eq!(Revision::from_key(&key), Some((rev, tomb)));
        }
        assert_eq!(Revision::from_key(b"short"), None);
        let mut bad = Revision::new(1, 1).to_key(false);
        bad.push(b'x');
        assert_eq!(Revision::from_key(&bad), None);
    }

    #[test]
    fn matches_etcd_layout() {
        // etcd's revToBytes(revision{main: 2, sub: 1}) followed by markTombstone.
        let want = [0, 0, 0, 0, 0, 0, 0, 2, b'_', 0, 0, 0, 0, 0, 0, 0, 1, b't'];
        assert_eq!(Revision::new(2, 1).to_key(true), want);
    }
}
