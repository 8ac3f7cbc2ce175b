//! A user's permissions as two interval sets (READ and WRITE), merged from every role the user
//! holds: disjoint, sorted half-open intervals `[begin, end)`, with `end = None` for "to the end
//! of the keyspace" (etcd's `range_end` `"\0"`). A key is permitted if one interval holds it; a
//! range only if the union of the grants covers all of it, exactly as etcd's interval tree
//! `Contains` (`auth/range_perm_cache.go`). Lookups are a binary search.

use crate::proto::authpb::permission::Type as PermType;
use crate::proto::authpb::Permission;

/// One merged interval set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntervalSet {
    intervals: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Bounds compare with `None` (no end) above every key.
fn end_ge(a: &Option<Vec<u8>>, b: &Option<Vec<u8>>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => a >= b,
    }
}

impl IntervalSet {
    /// Builds the union of `grants` (unsorted, possibly overlapping; empty intervals ignored).
    pub fn from_grants(mut grants: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Self {
        grants.retain(|(begin, end)| end.as_ref().is_none_or(|end| begin < end));
        grants.sort_by(|a, b| a.0.cmp(&b.0));
        let mut intervals: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(grants.len());
        for (begin, end) in grants {
            if let Some(last) = intervals.last_mut() {
                // Touching intervals join: [a, b) and [b, c) cover [a, c).
                if end_ge(&last.1, &Some(begin.clone())) {
                    if !end_ge(&last.1, &end) {
                        last.1 = end;
                    }
                    continue;
                }
            }
            intervals.push((begin, end));
        }
        Self { intervals }
    }

    /// The interval holding `key`, if any.
    fn holding(&self, key: &[u8]) -> Option<&(Vec<u8>, Option<Vec<u8>>)> {
        let after = self.intervals.partition_point(|(begin, _)| begin.as_slice() <= key);
        let candidate = self.intervals.get(after.checked_sub(1)?)?;
        let inside = candidate.1.as_deref().is_none_or(|end| key < end);
        inside.then_some(candidate)
    }

    /// Whether `key` is permitted.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.holding(key).is_some()
    }

    /// Whether every key of `[key, end)` is permitted (`end = None`: to the end of the keyspace).
    pub fn contains_range(&self, key: &[u8], end: &Option<Vec<u8>>) -> bool {
        self.holding(key).is_some_and(|(_, covered_to)| end_ge(covered_to, end))
    }
}

/// A user's READ and WRITE sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPerms {
    pub read: IntervalSet,
    pub write: IntervalSet,
}

/// Whether the caller needs to read or to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl UserPerms {
    /// Merges the permissions of every role (etcd's `getMergedPerms`).
    pub fn merge<'a>(perms: impl IntoIterator<Item = &'a Permission>) -> Self {
        let (mut read, mut write) = (Vec::new(), Vec::new());
        for p in perms {
            let interval = grant_interval(&p.key, &p.range_end);
            match PermType::try_from(p.perm_type).unwrap_or(PermType::Read) {
                PermType::Read => read.push(interval),
                PermType::Write => write.push(interval),
                PermType::Readwrite => {
                    read.push(interval.clone());
                    write.push(interval);
                }
            }
        }
        Self { read: IntervalSet::from_grants(read), write: IntervalSet::from_grants(write) }
    }

    /// Whether `[key, range_end)` (a single key when `range_end` is empty; to the end of the
    /// keyspace when it is `"\0"`) may be accessed.
    pub fn permits(&self, access: Access, key: &[u8], range_end: &[u8]) -> bool {
        let set = match access {
            Access::Read => &self.read,
            Access::Write => &self.write,
        };
        match range_end {
            [] => set.contains_key(key),
            [0] => set.contains_range(key, &None),
            end => set.contains_range(key, &Some(end.to_vec())),
        }
    }
}

/// A grant as an interval: a single key is `[key, key\0)`.
fn grant_interval(key: &[u8], range_end: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    match range_end {
        [] => {
            let mut end = key.to_vec();
            end.push(0);
            (key.to_vec(), Some(end))
        }
        [0] => (key.to_vec(), None),
        end => (key.to_vec(), Some(end.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(key: &str, end: &str, t: PermType) -> Permission {
        Permission { key: key.into(), range_end: end.into(), perm_type: t as i32 }
    }

    #[test]
    fn single_keys_ranges_and_open_ends() {
        let p = UserPerms::merge(&[
            perm("a", "", PermType::Read),
            perm("b", "d", PermType::Readwrite),
            perm("x", "\0", PermType::Write),
        ]);
        assert!(p.permits(Access::Read, b"a", b""));
        assert!(!p.permits(Access::Read, b"a0", b""));
        assert!(!p.permits(Access::Write, b"a", b""));
        assert!(p.permits(Access::Read, b"b", b"d"));
        assert!(p.permits(Access::Read, b"c", b"c5"));
        assert!(!p.permits(Access::Read, b"c", b"e"), "d..e is not granted");
        assert!(!p.permits(Access::Read, b"d", b""), "range ends are exclusive");
        assert!(p.permits(Access::Write, b"zzz", b""));
        assert!(p.permits(Access::Write, b"x", b"\0"));
        assert!(!p.permits(Access::Write, b"w", b"\0"));
        assert!(p.permits(Access::Read, b"a", b"a\0"), "a one-key range is the key");
    }

    #[test]
    fn a_range_passes_only_if_the_union_of_grants_covers_it() {
        let p = UserPerms::merge(&[
            perm("a", "c", PermType::Read),
            perm("c", "e", PermType::Read),
            perm("f", "", PermType::Read),
        ]);
        assert!(p.permits(Access::Read, b"a", b"e"), "touching grants join");
        assert!(!p.permits(Access::Read, b"a", b"f"), "e..f is a gap");
        assert!(p.permits(Access::Read, b"f", b"f\0"));
        assert!(!p.permits(Access::Read, b"f", b"g"));
    }

    #[test]
    fn overlapping_grants_merge_and_empty_ones_are_ignored() {
        let s = IntervalSet::from_grants(vec![
            (b"a".to_vec(), Some(b"m".to_vec())),
            (b"c".to_vec(), Some(b"f".to_vec())),
            (b"k".to_vec(), None),
            (b"z".to_vec(), Some(b"b".to_vec())),
        ]);
        assert_eq!(s.intervals, vec![(b"a".to_vec(), None)]);
        assert!(s.contains_range(b"b", &None));
    }
}
