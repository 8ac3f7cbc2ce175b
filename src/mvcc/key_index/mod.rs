//! The per-key index of revisions, as etcd's `keyIndex`.
//!
//! A key's history is a list of generations. A generation runs from the put that created the key
//! to the tombstone that deleted it; the last generation is the live one (empty if the key is
//! currently deleted). Each generation lists the revisions of its versions, oldest first:
//!
//! ```text
//! put(1.0); put(2.0); tombstone(3.0); put(4.0); tombstone(5.0)   on "foo"
//!   generations (newest first):  {empty}  {4.0, 5.0(t)}  {1.0, 2.0, 3.0(t)}
//! ```
//!
//! Compacting at `rev` drops every version `<= rev` except the newest one of each generation;
//! a generation reduced to its tombstone is dropped whole, and an index left with only the empty
//! live generation is removed by its owner. The traces in `testdata/key_index.txt` walk through
//! etcd's own examples.

use std::collections::HashSet;

use smallvec::{smallvec, SmallVec};

use super::revision::Revision;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generation {
    /// Number of versions put in this generation (the key's `version` field).
    pub ver: i64,
    /// Revision of the put that created the generation.
    pub created: Revision,
    /// Revisions of the versions still indexed, oldest first; the last one of a closed
    /// generation is its tombstone. Inline while there is one: most keys of a compacted store
    /// (and every key put once) have one revision, and a heap allocation would cost more than it.
    pub revs: SmallVec<[Revision; 1]>,
}

impl Generation {
    pub fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }
}

/// What [`KeyIndex::get`] finds for a key at a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub modified: Revision,
    pub created: Revision,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIndex {
    /// Revision of the last modification (put or tombstone).
    pub modified: Revision,
    /// Oldest first; never empty; the last is the live (possibly empty) generation. Inline while
    /// there is one (a key never deleted).
    pub generations: SmallVec<[Generation; 1]>,
}

impl Default for KeyIndex {
    fn default() -> Self {
        Self { modified: Revision::default(), generations: smallvec![Generation::default()] }
    }
}

impl KeyIndex {
    /// Records a put at `rev`.
    pub fn put(&mut self, rev: Revision) {
        let g = self.generations.last_mut().expect("key index has a live generation");
        if g.revs.is_empty() {
            g.created = rev;
        }
        g.revs.push(rev);
        g.ver += 1;
        self.modified = rev;
    }

    /// Rebuilds a live generation whose older history was compacted away.
    pub fn restore(&mut self, created: Revision, modified: Revision, ver: i64) {
        self.modified = modified;
        *self.generations.last_mut().expect("live generation") = Generation { ver, created, revs: smallvec![modified] };
    }

    /// Records a deletion at `rev`; returns `false` (and changes nothing) if the key is not live.
    pub fn tombstone(&mut self, rev: Revision) -> bool {
        if self.generations.last().is_none_or(Generation::is_empty) {
            return false;
        }
        self.put(rev);
        self.generations.push(Generation::default());
        true
    }

    /// The live version of the key as of main revision `at`, if any.
    pub fn get(&self, at: i64) -> Option<Found> {
        let g = self.find_generation(at)?;
        let n = g.revs.iter().rposition(|r| r.main <= at)?;
        Some(Found { modified: g.revs[n], created: g.created, version: g.ver - (g.revs.len() - n - 1) as i64 })
    }

    /// Every indexed revision with `main >= rev`, at most one per main revision (the last), in
    /// order: what a watcher starting at `rev` must replay for this key.
    pub fn since(&self, rev: i64) -> Vec<Revision> {
        let since = Revision::new(rev, 0);
        let mut gi = self.generations.len() - 1;
        while gi > 0 {
            let g = &self.generations[gi];
            if !g.is_empty() && since > g.created {
                break;
            }
            gi -= 1;
        }
        let mut out: Vec<Revision> = Vec::new();
        for g in &self.generations[gi..] {
            for r in &g.revs {
                if since > *r {
                    continue;
                }
                match out.last_mut() {
                    Some(last) if last.main == r.main => *last = *r,
                    _ => out.push(*r),
                }
            }
        }
        out
    }

    /// Compacts history at `at`, adding to `keep` the revisions `<= at` that must stay stored.
    pub fn compact(&mut self, at: i64, keep: &mut HashSet<Revision>) {
        let mut gen_idx = 0;
        while gen_idx < self.generations.len() - 1 {
            let tomb = self.generations[gen_idx].revs.last().expect("closed generation has a tombstone");
            if tomb.main > at {
                break;
            }
            gen_idx += 1;
        }
        let last = self.generations.len() - 1;
        let g = &mut self.generations[gen_idx];
        if !g.is_empty() {
            if let Some(n) = g.revs.iter().rposition(|r| r.main <= at) {
                keep.insert(g.revs[n]);
                g.revs.drain(..n);
            }
            if g.revs.len() == 1 && gen_idx != last {
                keep.remove(&g.revs[0]);
                gen_idx += 1;
            }
        }
        self.generations.drain(..gen_idx);
    }

    /// Adds to `keep` the revisions a compaction at `at` would keep, changing nothing (etcd's
    /// `keyIndex.keep`, which `HashKV` uses to skip revisions a compaction is removing).
    pub fn keep(&self, at: i64, keep: &mut std::collections::HashSet<Revision>) {
        if self.is_empty() {
            return;
        }
        let last = self.generations.len() - 1;
        let mut gen_idx = 0;
        while gen_idx < last {
            let tomb = self.generations[gen_idx].revs.last().expect("closed generation has a tombstone");
            if tomb.main > at {
                break;
            }
            gen_idx += 1;
        }
        let g = &self.generations[gen_idx];
        if let Some(n) = g.revs.iter().rposition(|r| r.main <= at) {
            // A tombstone is never kept.
            if !(n + 1 == g.revs.len() && gen_idx != last) {
                keep.insert(g.revs[n]);
            }
        }
    }

    /// True when only the empty live generation is left: the owner should drop the index.
    pub fn is_empty(&self) -> bool {
        self.generations.len() == 1 && self.generations[0].is_empty()
    }

    /// Every revision at or below `at`, each with whether it is a tombstone (the last revision
    /// of a closed generation): what a compaction at `at` may remove from storage.
    pub fn revisions_through(&self, at: i64) -> Vec<(Revision, bool)> {
        let last = self.generations.len() - 1;
        let mut out = Vec::new();
        for (i, g) in self.generations.iter().enumerate() {
            let n = g.revs.len();
            for (j, r) in g.revs.iter().enumerate().take_while(|(_, r)| r.main <= at) {
                out.push((*r, i != last && j + 1 == n));
            }
        }
        out
    }

    fn find_generation(&self, at: i64) -> Option<&Generation> {
        let last = self.generations.len() - 1;
        for (i, g) in self.generations.iter().enumerate().rev() {
            if g.is_empty() {
                continue;
            }
            if i != last && g.revs.last().expect("non-empty").main <= at {
                // The generation was already deleted at `at`.
                return None;
            }
            if g.revs[0].main <= at {
                return Some(g);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
