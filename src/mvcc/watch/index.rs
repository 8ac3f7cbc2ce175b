//! Finds the synced watchers interested in a key: single-key watchers in a hash map, range
//! watchers in an interval list sorted by start with a running maximum of ends, rebuilt lazily
//! after changes. A lookup walks back from the last interval starting at or before the key and
//! stops as soon as no earlier interval can reach it.

use std::collections::HashMap;

use super::super::KeyRange;

/// An interval end; `None` means "to the end of the keyspace".
type End = Option<Vec<u8>>;

#[derive(Default)]
pub struct WatcherIndex {
    single: HashMap<Vec<u8>, Vec<u64>>,
    ranges: Vec<(Vec<u8>, End, u64)>,
    /// `max_end[i]`: the largest end among `ranges[..=i]`.
    max_end: Vec<End>,
    dirty: bool,
}

fn end_gt(end: &End, key: &[u8]) -> bool {
    match end {
        None => true,
        Some(e) => e.as_slice() > key,
    }
}

fn max_end(a: &End, b: &End) -> End {
    match (a, b) {
        (None, _) | (_, None) => None,
        (Some(x), Some(y)) => Some(x.max(y).clone()),
    }
}

impl WatcherIndex {
    pub fn insert(&mut self, id: u64, range: &KeyRange) {
        match range {
            KeyRange::Single(k) => self.single.entry(k.clone()).or_default().push(id),
            KeyRange::From(s) => self.push_range(s.clone(), None, id),
            KeyRange::Between(s, e) => self.push_range(s.clone(), Some(e.clone()), id),
        }
    }

    fn push_range(&mut self, start: Vec<u8>, end: End, id: u64) {
        self.ranges.push((start, end, id));
        self.dirty = true;
    }

    pub fn remove(&mut self, id: u64, range: &KeyRange) {
        match range {
            KeyRange::Single(k) => {
                if let Some(ids) = self.single.get_mut(k) {
                    ids.retain(|i| *i != id);
                    if ids.is_empty() {
                        self.single.remove(k);
                    }
                }
            }
            _ => {
                self.ranges.retain(|(_, _, i)| *i != id);
                self.dirty = true;
            }
        }
    }

    fn rebuild(&mut self) {
        self.ranges.sort_by(|a, b| a.0.cmp(&b.0));
        self.max_end.clear();
        let mut running: Option<End> = None;
        for (_, end, _) in &self.ranges {
            let next = match &running {
                None => end.clone(),
                Some(m) => max_end(m, end),
            };
            self.max_end.push(next.clone());
            running = Some(next);
        }
        self.dirty = false;
    }

    /// Calls `f` with every watcher whose range contains `key`.
    pub fn matching(&mut self, key: &[u8], mut f: impl FnMut(u64)) {
        if let Some(ids) = self.single.get(key) {
            ids.iter().for_each(|id| f(*id));
        }
        if self.dirty {
            self.rebuild();
        }
        let upto = self.ranges.partition_point(|(s, _, _)| s.as_slice() <= key);
        for i in (0..upto).rev() {
            if !end_gt(&self.max_end[i], key) {
                break;
            }
            if end_gt(&self.ranges[i].1, key) {
                f(self.ranges[i].2);
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.single.values().map(Vec::len).sum::<usize>() + self.ranges.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(idx: &mut WatcherIndex, key: &[u8]) -> Vec<u64> {
        let mut out = Vec::new();
        idx.matching(key, |id| out.push(id));
        out.sort_unstable();
        out
    }

    #[test]
    fn single_prefix_and_from_key() {
        let mut idx = WatcherIndex::default();
        idx.insert(1, &KeyRange::Single(b"foo".to_vec()));
        idx.insert(2, &KeyRange::Between(b"fo".to_vec(), b"fp".to_vec()));
        idx.insert(3, &KeyRange::From(b"g".to_vec()));
        idx.insert(4, &KeyRange::Between(b"a".to_vec(), b"b".to_vec()));
        idx.insert(5, &KeyRange::Between(b"a".to_vec(), b"z".to_vec()));
        assert_eq!(hits(&mut idx, b"foo"), vec![1, 2, 5]);
        assert_eq!(hits(&mut idx, b"fox"), vec![2, 5]);
        assert_eq!(hits(&mut idx, b"h"), vec![3, 5]);
        assert_eq!(hits(&mut idx, b"zz"), vec![3]);
        assert_eq!(hits(&mut idx, b"a"), vec![4, 5]);
        assert_eq!(hits(&mut idx, b"0"), Vec::<u64>::new());
        idx.remove(5, &KeyRange::Between(b"a".to_vec(), b"z".to_vec()));
        idx.remove(1, &KeyRange::Single(b"foo".to_vec()));
        assert_eq!(hits(&mut idx, b"foo"), vec![2]);
        assert_eq!(idx.len(), 3);
    }

    #[test]
    fn agrees_with_brute_force() {
        let mut idx = WatcherIndex::default();
        let mut all = Vec::new();
        for i in 0..200u64 {
            let s = format!("k{:03}", (i * 37) % 300).into_bytes();
            let e = format!("k{:03}", (i * 37) % 300 + (i % 17) + 1).into_bytes();
            let r = KeyRange::Between(s, e);
            idx.insert(i, &r);
            all.push((i, r));
        }
        for k in 0..320 {
            let key = format!("k{k:03}").into_bytes();
            let mut want: Vec<u64> = all.iter().filter(|(_, r)| r.contains(&key)).map(|(i, _)| *i).collect();
            want.sort_unstable();
            assert_eq!(hits(&mut idx, &key), want, "key {k}");
        }
    }
}
