//! etcd's `range_end` rules, in one place.
//!
//! | `range_end`          | meaning                                  |
//! |----------------------|------------------------------------------|
//! | empty                | the single key `key`                     |
//! | `"\0"`               | every key `>= key` ("from key")          |
//! | anything else        | `[key, range_end)`; empty if `end <= key` |
//!
//! The prefix of `key` is `[key, prefix_end(key))`, where `prefix_end` increments the last byte
//! that is not `0xff` (and is `"\0"`, i.e. "to the end", when every byte is `0xff`).

/// A set of keys named by a `(key, range_end)` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    Single(Vec<u8>),
    /// Every key `>= start`.
    From(Vec<u8>),
    /// `[start, end)`.
    Between(Vec<u8>, Vec<u8>),
}

impl KeyRange {
    pub fn new(key: &[u8], range_end: &[u8]) -> Self {
        match range_end {
            [] => KeyRange::Single(key.to_vec()),
            [0] => KeyRange::From(key.to_vec()),
            end => KeyRange::Between(key.to_vec(), end.to_vec()),
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match self {
            KeyRange::Single(key) => key == k,
            KeyRange::From(start) => k >= start.as_slice(),
            KeyRange::Between(start, end) => k >= start.as_slice() && k < end.as_slice(),
        }
    }

    /// The first key of the range.
    pub fn start(&self) -> &[u8] {
        match self {
            KeyRange::Single(k) | KeyRange::From(k) | KeyRange::Between(k, _) => k,
        }
    }
}

/// The smallest key greater than every key with prefix `key`; `"\0"` (all keys) when none.
pub fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_end_rules() {
        type Case<'a> = (&'a [u8], &'a [u8], &'a [u8], bool);
        let cases: &[Case] = &[
            (b"foo", b"", b"foo", true),
            (b"foo", b"", b"foo1", false),
            (b"foo", b"\0", b"foo", true),
            (b"foo", b"\0", b"zzz", true),
            (b"foo", b"\0", b"fo", false),
            (b"\0", b"\0", b"a", true),
            (b"a", b"c", b"b", true),
            (b"a", b"c", b"c", false),
            (b"a", b"c", b"a", true),
            (b"c", b"a", b"b", false),
            (b"a", b"a", b"a", false),
        ];
        for (key, end, probe, want) in cases {
            let r = KeyRange::new(key, end);
            assert_eq!(r.contains(probe), *want, "{key:?}..{end:?} contains {probe:?}");
        }
    }

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"foo"), b"fop");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
        let r = KeyRange::new(b"foo", &prefix_end(b"foo"));
        assert!(r.contains(b"foo") && r.contains(b"foo\xff\xff") && !r.contains(b"fop"));
    }
}
