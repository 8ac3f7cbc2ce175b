//! The linearizability checker: Wing & Gong's search as porcupine runs it, over the model of
//! [`crate::model`].
//!
//! Operations are sorted by invoke time and kept in a doubly linked list. The search walks the
//! list from its head: an operation may be linearized next if it was invoked before every
//! earlier unlinearized operation returned; the model must then give the recorded answer. A
//! success unlinks it and starts again from the head; when no candidate fits, the last choice is
//! undone (porcupine's lift/unlift). Each visited configuration — the set of linearized
//! operations (a 128-bit Zobrist hash) and the model state (a 64-bit hash) — is remembered, so
//! no configuration is explored twice. A collision would only make the search skip a branch, so
//! a "linearizable" verdict is exact up to that vanishing chance; "not linearizable" is exact.
//!
//! Unknown outcomes: a write whose answer never came back has no return time; the search may
//! linearize it anywhere after its invoke, with any answer, or never. If a value it wrote was
//! observed (by a read or a watch), it must have been applied, before the observation returned,
//! at the mod revision the observation showed: it gets that return time and revision and must be
//! linearized. As in etcd's suite, an unknown-outcome put whose value nobody ever observed is
//! dropped (the watchers, whose completeness the watch validators check, see every revision).
//! Failed reads are dropped; serializable reads are not searched but replayed against the
//! revision they report ([`crate::replay`]).
//!
//! Pruning: every revision is created by one operation, so a write may not create a revision
//! that an acknowledged or observed write claims; an unknown outcome that would change nothing is
//! never linearized (leaving it out is equivalent). An unknown-outcome delete may only create a
//! revision some watcher saw events at and no other write claims (this relies on the watchers
//! together seeing every revision, which their reliability check verifies).
//!
//! Watch evidence: an operation without an answer (unknown outcome, lease expiry) may create a
//! revision only with the events the watch streams show there ([`crate::evidence`]), so where
//! the client history leaves a floating revoke's or expiry's place open, the streams decide it,
//! and the watch validators judge them against a linearization they can agree with. A
//! linearization must also reach the newest revision a stream saw: an expiry that deleted keys
//! after the last answered write is placed there, not left out.
//!
//! A time budget bounds the search (answer: unknown). When a history is not linearizable, the
//! report shows the deepest point reached: the model state there, the operations linearized just
//! before, and the window of concurrent operations none of which fits, each with its recorded
//! answer and the model's.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use crate::evidence::Evidence;
use crate::history::{History, OpResult, Request, Response};
use crate::model::State;

const INF: u64 = u64::MAX;
const END: usize = usize::MAX;

/// One operation as the search sees it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Index into `History::operations`.
    pub op: usize,
    pub call: u64,
    pub ret: u64,
    pub request: Request,
    /// `None`: any answer is accepted (unknown outcome).
    pub response: Option<Response>,
    /// Whether the search must linearize it (false: an unknown outcome never observed).
    pub must: bool,
    /// The revision this write creates, when an answer or an observation says so.
    pub creates: Option<i64>,
}

#[derive(Debug)]
pub enum Verdict {
    /// `order` lists entry indices in linearization order (unapplied unknowns left out).
    Linearizable {
        order: Vec<usize>,
    },
    NotLinearizable {
        report: String,
    },
    /// The time budget ran out after visiting this many configurations; `report` shows the
    /// deepest point reached.
    Unknown {
        visited: usize,
        report: String,
    },
}

pub struct Checked {
    pub entries: Vec<Entry>,
    pub initial: State,
    pub verdict: Verdict,
}

/// Builds the search's entries from a history (see the module doc for what is kept).
pub fn entries(h: &History) -> Vec<Entry> {
    let observed = observations(h);
    let mut out = Vec::new();
    for (i, o) in h.operations.iter().enumerate() {
        if matches!(o.request, Request::Range { serializable: true, .. }) {
            continue;
        }
        match (o.ret, &o.response) {
            (Some(ret), Some(resp)) => out.push(Entry {
                op: i,
                call: o.call,
                ret,
                request: o.request.clone(),
                response: Some(resp.clone()),
                must: true,
                creates: created_revision(&o.request, resp),
            }),
            _ if o.request.is_read() => {}
            _ => {
                let values = o.request.written_values();
                let seen = values.iter().filter_map(|v| observed.get(*v)).min().copied();
                if !values.is_empty() && seen.is_none() {
                    continue; // an unobserved unknown put: not applied
                }
                let ret = seen.map_or(INF, |(t, _)| t.max(o.call + 1));
                let creates = seen.map(|(_, rev)| rev);
                out.push(Entry {
                    op: i,
                    call: o.call,
                    ret,
                    request: o.request.clone(),
                    response: None,
                    must: seen.is_some(),
                    creates,
                });
            }
        }
    }
    out.sort_by_key(|e| (e.call, e.ret));
    out
}

/// The revision an acknowledged txn created: its answer's, if its branch changed something.
fn created_revision(req: &Request, resp: &Response) -> Option<i64> {
    let (Request::Txn { success, failure, .. }, Response::Txn { rev, succeeded, results }) = (req, resp) else {
        return None;
    };
    let ops = if *succeeded { success } else { failure };
    let changed = ops.iter().zip(results).any(|(op, r)| {
        matches!(op, crate::history::TxnOp::Put { .. }) || matches!(r, OpResult::Delete { deleted } if *deleted > 0)
    });
    changed.then_some(*rev)
}

/// Value → (earliest time a client had seen it, the mod revision it was seen with).
fn observations(h: &History) -> HashMap<String, (u64, i64)> {
    let mut seen: HashMap<String, (u64, i64)> = HashMap::new();
    let mut note = |kv: &crate::history::Kv, t: u64| {
        let e = seen.entry(kv.value.clone()).or_insert((t, kv.modified));
        e.0 = e.0.min(t);
    };
    for o in &h.operations {
        let Some(t) = o.ret else { continue };
        match &o.response {
            Some(Response::Range { kvs, .. }) => kvs.iter().for_each(|(_, kv)| note(kv, t)),
            Some(Response::Txn { results, .. }) => {
                for r in results {
                    if let OpResult::Get { kvs, .. } = r {
                        kvs.iter().for_each(|(_, kv)| note(kv, t));
                    }
                }
            }
            _ => {}
        }
    }
    for s in &h.watches {
        for r in &s.responses {
            for e in &r.events {
                if !e.delete {
                    note(&e.kv, r.time);
                }
                if let Some(p) = &e.prev {
                    note(p, r.time);
                }
            }
        }
    }
    seen
}

fn state_hash(s: &State) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Checks `h` within `budget`.
pub fn check(h: &History, budget: Duration) -> Checked {
    let entries = entries(h);
    let initial = State::new(h.initial_rev, h.initial_kvs.clone());
    let verdict = search(&entries, &initial, &Evidence::new(&h.watches), budget);
    Checked { entries, initial, verdict }
}

/// What the deepest failure looked like, for the report.
struct Deepest {
    depth: usize,
    state: State,
    before: Vec<usize>,
    window: Vec<usize>,
}

/// Searches for a linearization of `entries` from `initial`, placing operations without an
/// answer where the watch streams (`evidence`) allow.
pub fn search(entries: &[Entry], initial: &State, evidence: &Evidence, budget: Duration) -> Verdict {
    let n = entries.len();
    let started = Instant::now();
    let mut rng = Splitmix(0x5eed_1234_abcd_0042);
    let zob: Vec<u128> = (0..n).map(|_| (u128::from(rng.next()) << 64) | u128::from(rng.next())).collect();
    // Linked list over entry indices; `head_next` is the first unlinearized entry.
    let mut next: Vec<usize> = (0..n).map(|i| if i + 1 < n { i + 1 } else { END }).collect();
    let mut prev: Vec<usize> = (0..n).map(|i| if i == 0 { END } else { i - 1 }).collect();
    let mut head = if n == 0 { END } else { 0 };
    let mut remaining = entries.iter().filter(|e| e.must).count();
    let claimed: HashSet<i64> = entries.iter().filter_map(|e| e.creates).collect();
    // Revisions some watcher saw that no acknowledged or observed write claims: the only ones an
    // unknown-outcome delete can have created.
    let free: HashSet<i64> = evidence.revisions().filter(|r| !claimed.contains(r)).collect();
    // Every revision a stream saw was created by some operation, so a linearization must reach
    // the newest of them: a floating revoke or expiry that deleted keys after the last answered
    // write must be placed, not left out.
    let newest_seen = evidence.revisions().max().unwrap_or(i64::MIN);

    let mut memo: HashSet<(u128, u64)> = HashSet::new();
    let mut stack: Vec<(usize, State, u64)> = Vec::new();
    let mut state = initial.clone();
    let mut linearized: u128 = 0;
    let mut cursor = head;
    let mut min_ret = INF;
    let mut deepest: Option<Deepest> = None;
    let mut steps: usize = 0;

    loop {
        if remaining == 0 && state.rev >= newest_seen {
            return Verdict::Linearizable { order: stack.iter().map(|(i, _, _)| *i).collect() };
        }
        steps += 1;
        if steps.is_multiple_of(4096) && started.elapsed() > budget {
            return Verdict::Unknown { visited: memo.len(), report: report(entries, evidence, deepest) };
        }
        if cursor != END && entries[cursor].call < min_ret {
            let e = &entries[cursor];
            // Cheap refusals before stepping the model: a write with a known revision must be the
            // next one; an unknown delete can only fill a free revision.
            let next_rev = state.rev + 1;
            let hopeless = match (e.creates, &e.request) {
                (Some(r), _) => r != next_rev,
                (None, Request::Txn { .. }) => e.response.is_none() && !free.contains(&next_rev),
                _ => false,
            };
            if hopeless {
                min_ret = min_ret.min(e.ret);
                cursor = next[cursor];
                continue;
            }
            let (ns, resp, events) = state.step(&e.request);
            let bumped = ns.rev != state.rev;
            let rev_ok = match e.creates {
                Some(r) => ns.rev == r,
                None => !bumped || !claimed.contains(&ns.rev),
            } && (e.response.is_some() || !bumped || evidence.allows(ns.rev, &events));
            let fits = rev_ok
                && match &e.response {
                    Some(r) => *r == resp,
                    None => ns != state,
                };
            if fits && memo.insert((linearized ^ zob[cursor], state_hash(&ns))) {
                stack.push((cursor, std::mem::replace(&mut state, ns), min_ret));
                linearized ^= zob[cursor];
                remaining -= usize::from(e.must);
                // unlink
                let (p, nx) = (prev[cursor], next[cursor]);
                if p == END {
                    head = nx
                } else {
                    next[p] = nx
                }
                if nx != END {
                    prev[nx] = p;
                }
                cursor = head;
                min_ret = INF;
                continue;
            }
            min_ret = min_ret.min(e.ret);
            cursor = next[cursor];
            continue;
        }
        if deepest.as_ref().is_none_or(|d| stack.len() > d.depth) {
            deepest = Some(Deepest {
                depth: stack.len(),
                state: state.clone(),
                before: stack.iter().rev().take(8).map(|(i, _, _)| *i).collect::<Vec<_>>().into_iter().rev().collect(),
                window: window(entries, &next, head),
            });
        }
        let Some((op, st, m)) = stack.pop() else {
            return Verdict::NotLinearizable { report: report(entries, evidence, deepest) };
        };
        // relink `op` where it was: its neighbours are the nearest unlinked entries around it.
        let (p, nx) = (prev[op], next[op]);
        if p == END {
            head = op
        } else {
            next[p] = op
        }
        if nx != END {
            prev[nx] = op;
        }
        state = st;
        linearized ^= zob[op];
        remaining += usize::from(entries[op].must);
        min_ret = m.min(entries[op].ret);
        cursor = next[op];
    }
}

/// The unlinearized entries that could go next: those that must be linearized first (at most
/// 16), then unknown outcomes (at most 4).
fn window(entries: &[Entry], next: &[usize], head: usize) -> Vec<usize> {
    let (mut must, mut maybe) = (Vec::new(), Vec::new());
    let (mut c, mut min_ret) = (head, INF);
    while c != END && must.len() < 16 {
        if entries[c].call >= min_ret {
            break;
        }
        if entries[c].must {
            must.push(c);
        } else if maybe.len() < 4 {
            maybe.push(c);
        }
        min_ret = min_ret.min(entries[c].ret);
        c = next[c];
    }
    must.extend(maybe);
    must
}

fn report(entries: &[Entry], evidence: &Evidence, deepest: Option<Deepest>) -> String {
    let Some(d) = deepest else { return "no operation could be linearized".into() };
    let time = |t: u64| if t == INF { "?".to_string() } else { format!("{:.3}ms", t as f64 / 1e6) };
    let line = |i: usize| {
        let e = &entries[i];
        let resp = e.response.as_ref().map_or("unknown outcome".to_string(), |r| r.to_string());
        format!("  [{} → {}] op#{} {} ⇒ {}", time(e.call), time(e.ret), e.op, e.request, resp)
    };
    let mut s = format!(
        "not linearizable: {} of {} operations linearized at the deepest point\nlast linearized:\n",
        d.depth,
        entries.len()
    );
    for i in &d.before {
        s += &line(*i);
        s.push('\n');
    }
    s += &format!("model state there: revision {}, compact {}, keys:", d.state.rev, d.state.compact);
    for (k, v) in &d.state.kvs {
        s += &format!(" {k}={:?}@{}", v.value, v.modified);
    }
    s += "\nno operation of this window fits (recorded ⇒ / model would answer):\n";
    for i in d.window {
        s += &line(i);
        let (next, resp, events) = d.state.step(&entries[i].request);
        s += &format!("\n      model: {resp}\n");
        if entries[i].response.is_none() && next.rev != d.state.rev && !evidence.allows(next.rev, &events) {
            s += &format!("      watch streams disagree: they saw {}\n", evidence.describe(next.rev));
        }
    }
    s
}

/// A tiny deterministic generator for the Zobrist keys.
struct Splitmix(u64);

impl Splitmix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
#[path = "linearize_tests.rs"]
mod tests;
