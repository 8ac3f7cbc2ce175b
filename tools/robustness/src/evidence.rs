//! What the watch streams say happened at each revision: evidence the linearization search uses
//! to place operations the client history leaves floating.
//!
//! An operation with an unknown outcome has no answer to pin it: a write that timed out, a lease
//! revoke whose connection was lost, a lease expiry (which the history adds, see
//! `History::add_lease_expiries`). The search may put it at any free revision after its invoke,
//! and a revoke or expiry deletes whatever keys its lease holds *at that point of the search*.
//! Several placements can fit the client history equally well — for example a floating revoke of
//! lease L (keys `k3`, `k7`) at R, or an unknown-outcome delete of `k3` at R with L revoked later,
//! after `k7` was overwritten without a lease, deleting nothing. Only one of them happened, and the
//! watch streams record which: the server's event log, revision by revision. Judging the streams
//! against a placement they contradict blames the server for the checker's choice (etcd's
//! `kill-follower` run showed exactly this: every watcher of every member agreed `/r/k7` lived on
//! at 8653, the chosen linearization deleted it there).
//!
//! So before the search places a floating operation that creates revision R with events P,
//! [`Evidence::allows`] checks P against the streams:
//!
//! - every event a watcher saw at R is in P (one operation creates a revision, so it made every
//!   event there);
//! - every event in P was seen at R by some watcher, unless no watch session covered R for that
//!   key and kind (a session covers its start revision to its last event, for the keys and kinds
//!   its range and filter let through; a delete at its start revision is not counted, since a
//!   compaction there drops it — `watch::Allowances`).
//!
//! Acknowledged writes are not constrained: their answers pin their revisions, and whether their
//! events match the streams is the watch validators' question. Nor do the watchers have to agree
//! here: where two streams disagree about a revision, at most one of them can match any
//! linearization, and the validators, which judge every stream separately, fail the other. The
//! evidence only removes placements every stream contradicts; it never makes a stream right.

use std::collections::{BTreeMap, HashMap};

use crate::history::{Event, Kv, Range, WatchSession};

/// One event as a stream reports it; a delete carries nothing but its key and revision.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Put(Kv),
    Delete,
}

impl Seen {
    fn of(e: &Event) -> Seen {
        if e.delete {
            Seen::Delete
        } else {
            Seen::Put(e.kv.clone())
        }
    }
}

/// The revisions a session's stream accounts for, for the keys and kinds it wants.
#[derive(Clone, Debug)]
struct Span {
    from: i64,
    to: i64,
    range: Range,
    no_delete: bool,
}

impl Span {
    fn covers(&self, rev: i64, key: &str, delete: bool) -> bool {
        let from = if delete { self.from + 1 } else { self.from };
        (from..=self.to).contains(&rev) && self.range.contains(key) && !(delete && self.no_delete)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Evidence {
    /// Revision → key → every distinct event the streams reported for it there (more than one
    /// only when streams disagree).
    seen: HashMap<i64, BTreeMap<String, Vec<Seen>>>,
    spans: Vec<Span>,
}

impl Evidence {
    pub fn new(sessions: &[WatchSession]) -> Evidence {
        let mut ev = Evidence::default();
        for s in sessions {
            let mut last = None;
            for e in s.responses.iter().flat_map(|r| &r.events) {
                let variants = ev.seen.entry(e.rev).or_default().entry(e.key.clone()).or_default();
                let seen = Seen::of(e);
                if !variants.contains(&seen) {
                    variants.push(seen);
                }
                last = last.max(Some(e.rev));
            }
            if let Some(to) = last {
                ev.spans.push(Span { from: s.start_rev, to, range: s.spec.range.clone(), no_delete: s.spec.no_delete });
            }
        }
        ev
    }

    /// The revisions some stream saw events at.
    pub fn revisions(&self) -> impl Iterator<Item = i64> + '_ {
        self.seen.keys().copied()
    }

    /// Whether a floating operation may have created revision `rev` with `events` (module docs).
    pub fn allows(&self, rev: i64, events: &[Event]) -> bool {
        let seen = self.seen.get(&rev);
        let made = |key: &str| events.iter().find(|e| e.key == key);
        let explained = seen.is_none_or(|keys| {
            keys.iter().all(|(key, variants)| made(key).is_some_and(|e| variants.contains(&Seen::of(e))))
        });
        explained
            && events.iter().all(|e| match seen.and_then(|keys| keys.get(&e.key)) {
                Some(variants) => variants.contains(&Seen::of(e)),
                None => !self.spans.iter().any(|s| s.covers(rev, &e.key, e.delete)),
            })
    }

    /// What the streams saw at `rev`, for a report.
    pub fn describe(&self, rev: i64) -> String {
        let Some(keys) = self.seen.get(&rev) else { return format!("no events at {rev}") };
        let mut parts = Vec::new();
        for (key, variants) in keys {
            for v in variants {
                parts.push(match v {
                    Seen::Delete => format!("DELETE {key}"),
                    Seen::Put(kv) => {
                        format!("PUT {key} = {:?} (create {}, version {})", kv.value, kv.create, kv.version)
                    }
                });
            }
        }
        format!("at {rev}: {}", parts.join(", "))
    }
}

#[cfg(test)]
#[path = "evidence_tests.rs"]
mod tests;
