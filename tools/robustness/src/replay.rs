//! Replays a linearization through the model: the key space at every revision and the events of
//! every revision, in order. Serializable reads are checked against the state at the revision
//! they report (they may be stale, never wrong, never from the future); the watch validators
//! compare streams with the events.

use std::collections::BTreeMap;

use crate::history::{Event, History, Kv, Request, Response};
use crate::linearize::Entry;
use crate::model::State;

pub struct Replay {
    /// Keys at each revision from the initial one to the last.
    pub states: BTreeMap<i64, BTreeMap<String, Kv>>,
    /// Every event, in revision order (within a revision, in the order the txn made them).
    pub events: Vec<Event>,
    pub last: State,
}

impl Replay {
    pub fn new(entries: &[Entry], order: &[usize], initial: &State) -> Replay {
        let mut states = BTreeMap::new();
        states.insert(initial.rev, initial.kvs.clone());
        let mut state = initial.clone();
        let mut events = Vec::new();
        for &i in order {
            let (next, _, ev) = state.step(&entries[i].request);
            if next.rev != state.rev {
                states.insert(next.rev, next.kvs.clone());
            }
            events.extend(ev);
            state = next;
        }
        Replay { states, events, last: state }
    }

    /// Events with revision in `from..=to`.
    pub fn events_between(&self, from: i64, to: i64) -> impl Iterator<Item = &Event> {
        let start = self.events.partition_point(|e| e.rev < from);
        self.events[start..].iter().take_while(move |e| e.rev <= to)
    }

    pub fn first_rev(&self) -> i64 {
        *self.states.keys().next().expect("the initial state is always there")
    }
}

/// Checks every successful serializable read; returns (reads checked, failures).
pub fn check_serializable(h: &History, replay: &Replay) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut failures = Vec::new();
    for (i, o) in h.operations.iter().enumerate() {
        let (Request::Range { range, serializable: true }, Some(Response::Range { rev, kvs, count })) =
            (&o.request, &o.response)
        else {
            continue;
        };
        if *rev < replay.first_rev() {
            continue; // read before traffic started: nothing to compare with
        }
        checked += 1;
        let Some(state) = replay.states.get(rev) else {
            failures
                .push(format!("op#{i} {}: revision {rev} is beyond the history (last {})", o.request, replay.last.rev));
            continue;
        };
        let at = State { rev: *rev, kvs: state.clone(), ..State::default() };
        let (want, want_count) = at.range(range);
        if &want != kvs || want_count != *count {
            let resp = o.response.as_ref().expect("matched above");
            let model = Response::Range { rev: *rev, kvs: want, count: want_count };
            failures.push(format!("op#{i} {}: got {resp}; state at that revision: {model}", o.request));
        }
    }
    (checked, failures)
}
