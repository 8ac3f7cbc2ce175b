//! Leases: ids with a TTL that keys attach to; when a lease expires or is revoked, its keys go.
//!
//! Two kinds of state, kept apart on purpose:
//!
//! * **replicated** (changed only while applying raft entries, identical on every member): which
//!   leases exist, their granted TTL, the keys attached to each, and the last checkpointed expiry
//!   deadline. Persisted in the `lease` table in the same batch as the entry's other effects.
//! * **primary** (only on the leader, never persisted): the live expiry instant of each lease,
//!   refreshed by keep-alives. The leader alone decides that a lease expired and proposes a
//!   revoke; it periodically proposes checkpoints of its deadlines so that a restarted member or
//!   a new leader resumes from them — neither restarting leases at full TTL nor expiring them
//!   early. Deadlines are wall-clock times, so time a member spends down counts against TTLs.
//!
//! Revoking returns the attached keys; the server deletes them through MVCC in the same revision.
//! Attachments follow the MVCC events: a put with a lease attaches its key (detaching it from any
//! previous lease), a put without one or a delete detaches it.
//!
//! Not done here: the 1000-per-second revoke rate limit of etcd is applied by the caller.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;

use crate::error::{Error, Result};
use crate::proto::metastorepb::LeaseRecord;
use crate::storage::schema::u64_key;
use crate::storage::{decode_all, Engine, Table, WriteBatch};

/// etcd's largest TTL.
pub const MAX_TTL: i64 = 9_000_000_000;

/// A deadline moving by more than this is worth a new checkpoint.
const CHECKPOINT_SLACK_MS: i64 = 500;

struct Lease {
    ttl: i64,
    keys: BTreeSet<Vec<u8>>,
    /// Last checkpointed wall-clock deadline (ms); 0 if never checkpointed.
    deadline_ms: i64,
    /// Remaining TTL (ms) at the last checkpoint, by the clock of the leader that took it; 0 if
    /// never checkpointed. A new leader resumes from it, so no clock difference between members
    /// expires a lease early.
    remaining_ms: i64,
    /// The member that took the last checkpoint. When that member is promoted again (a restart
    /// of a single member, say), its own clock reads the deadline, so time spent down counts.
    checkpointed_by: u64,
    /// Live expiry, tracked only while this member is the primary (leader).
    expiry: Option<Instant>,
}

#[derive(Default)]
struct State {
    leases: HashMap<i64, Lease>,
    key_lease: HashMap<Vec<u8>, i64>,
    primary: bool,
}

/// A lease's expiry as the leader checkpoints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub id: i64,
    /// Wall-clock deadline (ms since the Unix epoch).
    pub deadline_ms: i64,
    /// Remaining TTL (ms) when proposed.
    pub remaining_ms: i64,
}

/// What `time_to_live` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseStatus {
    pub remaining: i64,
    pub granted: i64,
    pub keys: Vec<Vec<u8>>,
}

pub struct Lessor {
    state: Mutex<State>,
    min_ttl: i64,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The monotonic instant matching a wall-clock deadline (in the past if it already passed).
fn instant_of(deadline_ms: i64) -> Instant {
    let delta = deadline_ms - now_ms();
    let now = Instant::now();
    if delta >= 0 {
        now + Duration::from_millis(delta as u64)
    } else {
        now.checked_sub(Duration::from_millis(delta.unsigned_abs())).unwrap_or(now)
    }
}

fn deadline_of(expiry: Instant) -> i64 {
    let now = Instant::now();
    let ms = if expiry >= now { (expiry - now).as_millis() as i64 } else { -((now - expiry).as_millis() as i64) };
    now_ms() + ms
}

impl Lessor {
    /// Loads the leases stored in `engine`. `min_ttl` is etcd's minimum lease TTL in seconds.
    pub fn open(engine: &dyn Engine, min_ttl: i64) -> Result<Self> {
        Ok(Self { state: Mutex::new(load(engine)?), min_ttl })
    }

    /// Replaces every lease with the engine's (after a snapshot was installed). Attachments are
    /// rebuilt by the caller. The lessor comes back as a non-primary; a leader promotes it again
    /// (its primary loop follows leadership), resuming from the loaded checkpoints.
    pub fn reload(&self, engine: &dyn Engine) -> Result<()> {
        *self.lock() = load(engine)?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("lessor lock")
    }

    pub fn min_ttl(&self) -> i64 {
        self.min_ttl
    }

    pub fn exists(&self, id: i64) -> bool {
        self.lock().leases.contains_key(&id)
    }

    // --- replicated changes: called only while applying raft entries ---

    /// Grants lease `id`; returns the TTL actually granted (raised to the minimum).
    pub fn grant(&self, batch: &mut WriteBatch, id: i64, ttl: i64) -> Result<i64> {
        if id == 0 {
            return Err(Error::LeaseNotFound);
        }
        if ttl > MAX_TTL {
            return Err(Error::LeaseTtlTooLarge);
        }
        let mut st = self.lock();
        if st.leases.contains_key(&id) {
            return Err(Error::LeaseExists);
        }
        let ttl = ttl.max(self.min_ttl);
        let expiry = st.primary.then(|| Instant::now() + Duration::from_secs(ttl as u64));
        let lease = Lease { ttl, keys: BTreeSet::new(), deadline_ms: 0, remaining_ms: 0, checkpointed_by: 0, expiry };
        put_record(batch, id, &lease);
        st.leases.insert(id, lease);
        Ok(ttl)
    }

    /// The keys attached to lease `id`, which the caller deletes before calling [`Lessor::remove`].
    pub fn keys(&self, id: i64) -> Result<Vec<Vec<u8>>> {
        let st = self.lock();
        st.leases.get(&id).map(|l| l.keys.iter().cloned().collect()).ok_or(Error::LeaseNotFound)
    }

    /// Forgets a revoked lease.
    pub fn remove(&self, batch: &mut WriteBatch, id: i64) {
        let mut st = self.lock();
        if let Some(lease) = st.leases.remove(&id) {
            for k in lease.keys {
                st.key_lease.remove(&k);
            }
        }
        batch.delete(Table::Lease, u64_key(id as u64).to_vec());
    }

    /// Records that `key` now carries `lease` (0: none), after a put or a delete.
    pub fn attach(&self, key: &[u8], lease: i64) {
        let mut st = self.lock();
        let old = if lease == 0 { st.key_lease.remove(key) } else { st.key_lease.insert(key.to_vec(), lease) };
        if let Some(old) = old.filter(|old| *old != lease) {
            if let Some(l) = st.leases.get_mut(&old) {
                l.keys.remove(key);
            }
        }
        if lease != 0 {
            if let Some(l) = st.leases.get_mut(&lease) {
                l.keys.insert(key.to_vec());
            }
        }
    }

    /// Applies checkpoints proposed by the leader. A checkpoint never pulls a deadline back: a
    /// keep-alive the primary handled after proposing it keeps its later expiry.
    pub fn checkpoint(&self, batch: &mut WriteBatch, proposer: u64, checkpoints: &[Checkpoint]) {
        let mut st = self.lock();
        let primary = st.primary;
        for c in checkpoints {
            if let Some(l) = st.leases.get_mut(&c.id) {
                l.deadline_ms = l.deadline_ms.max(c.deadline_ms);
                l.remaining_ms = c.remaining_ms;
                l.checkpointed_by = proposer;
                if primary {
                    l.expiry = l.expiry.max(Some(instant_of(c.deadline_ms)));
                }
                put_record(batch, c.id, l);
            }
        }
    }

    // --- primary (leader-only) state ---

    /// Member `me` became leader: start tracking expiry from the last checkpoints — its own
    /// wall-clock deadline where `me` took the checkpoint (downtime counts), else the remaining TTL
    /// (no clock difference between members expires a lease early), a full TTL for leases never
    /// checkpointed — each extended by `extend`: etcd extends by an election timeout, the time
    /// clients may have needed to find the new leader.
    pub fn promote(&self, me: u64, extend: Duration) {
        let mut st = self.lock();
        if st.primary {
            return;
        }
        st.primary = true;
        let now = Instant::now();
        for l in st.leases.values_mut() {
            let base = if l.checkpointed_by == me && l.deadline_ms > 0 {
                instant_of(l.deadline_ms)
            } else if l.remaining_ms > 0 {
                now + Duration::from_millis(l.remaining_ms as u64)
            } else {
                now + Duration::from_secs(l.ttl as u64)
            };
            l.expiry = Some(base + extend);
        }
    }

    pub fn demote(&self) {
        let mut st = self.lock();
        st.primary = false;
        for l in st.leases.values_mut() {
            l.expiry = None;
        }
    }

    pub fn is_primary(&self) -> bool {
        self.lock().primary
    }

    /// A keep-alive: restarts the lease's TTL. Returns the TTL, or `LeaseNotFound` for an unknown
    /// or already expired lease.
    pub fn renew(&self, id: i64) -> Result<i64> {
        let mut st = self.lock();
        let primary = st.primary;
        let lease = st.leases.get_mut(&id).ok_or(Error::LeaseNotFound)?;
        if !primary {
            return Err(Error::NoLeader);
        }
        if lease.expiry.is_some_and(|e| e <= Instant::now()) {
            return Err(Error::LeaseNotFound);
        }
        lease.expiry = Some(Instant::now() + Duration::from_secs(lease.ttl as u64));
        Ok(lease.ttl)
    }

    /// Leases whose expiry passed, at most `limit` of them.
    pub fn expired(&self, limit: usize) -> Vec<i64> {
        let now = Instant::now();
        let st = self.lock();
        st.leases.iter().filter(|(_, l)| l.expiry.is_some_and(|e| e <= now)).map(|(id, _)| *id).take(limit).collect()
    }

    /// Deadlines that moved away from their last checkpoint (after keep-alives, or never
    /// checkpointed): the checkpoints to propose.
    pub fn due_checkpoints(&self, limit: usize) -> Vec<Checkpoint> {
        let st = self.lock();
        let now = Instant::now();
        st.leases
            .iter()
            .filter_map(|(id, l)| {
                let expiry = l.expiry?;
                let deadline_ms = deadline_of(expiry);
                let remaining_ms = expiry.saturating_duration_since(now).as_millis() as i64;
                ((deadline_ms - l.deadline_ms).abs() > CHECKPOINT_SLACK_MS).then_some(Checkpoint {
                    id: *id,
                    deadline_ms,
                    remaining_ms,
                })
            })
            .take(limit)
            .collect()
    }

    pub fn time_to_live(&self, id: i64) -> Option<LeaseStatus> {
        let st = self.lock();
        let l = st.leases.get(&id)?;
        let remaining = match l.expiry {
            Some(e) => e.saturating_duration_since(Instant::now()).as_secs() as i64,
            None if l.deadline_ms > 0 => ((l.deadline_ms - now_ms()).max(0)) / 1000,
            None => l.ttl,
        };
        Some(LeaseStatus { remaining, granted: l.ttl, keys: l.keys.iter().cloned().collect() })
    }

    pub fn leases(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.lock().leases.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

fn load(engine: &dyn Engine) -> Result<State> {
    let mut state = State::default();
    for r in decode_all::<LeaseRecord>(engine, Table::Lease, "lease record")? {
        let lease = Lease {
            ttl: r.ttl,
            keys: BTreeSet::new(),
            deadline_ms: r.deadline_unix_ms,
            remaining_ms: r.remaining_ms,
            checkpointed_by: r.checkpointed_by,
            expiry: None,
        };
        state.leases.insert(r.id, lease);
    }
    Ok(state)
}

fn put_record(batch: &mut WriteBatch, id: i64, l: &Lease) {
    let record = LeaseRecord {
        id,
        ttl: l.ttl,
        deadline_unix_ms: l.deadline_ms,
        remaining_ms: l.remaining_ms,
        checkpointed_by: l.checkpointed_by,
    };
    batch.put(Table::Lease, u64_key(id as u64).to_vec(), record.encode_to_vec());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryEngine;

    #[test]
    fn grant_attach_revoke_and_reload() {
        let engine = MemoryEngine::new();
        let lessor = Lessor::open(&engine, 2).unwrap();
        let mut batch = WriteBatch::new();
        assert_eq!(lessor.grant(&mut batch, 7, 1).unwrap(), 2, "raised to the minimum TTL");
        assert_eq!(lessor.grant(&mut batch, 7, 10), Err(Error::LeaseExists));
        assert_eq!(lessor.grant(&mut batch, 8, MAX_TTL + 1), Err(Error::LeaseTtlTooLarge));
        lessor.attach(b"a", 7);
        lessor.attach(b"b", 7);
        lessor.attach(b"b", 0);
        assert_eq!(lessor.keys(7).unwrap(), vec![b"a".to_vec()]);
        engine.write(batch, false).unwrap();
        let reloaded = Lessor::open(&engine, 2).unwrap();
        assert_eq!(reloaded.leases(), vec![7]);
        let mut batch = WriteBatch::new();
        lessor.remove(&mut batch, 7);
        engine.write(batch, false).unwrap();
        assert!(!lessor.exists(7));
        assert_eq!(Lessor::open(&engine, 2).unwrap().leases(), Vec::<i64>::new());
    }

    #[test]
    fn only_the_primary_expires_and_checkpoints() {
        let engine = MemoryEngine::new();
        let lessor = Lessor::open(&engine, 1).unwrap();
        let mut batch = WriteBatch::new();
        lessor.grant(&mut batch, 1, 100).unwrap();
        assert_eq!(lessor.renew(1), Err(Error::NoLeader));
        assert!(lessor.due_checkpoints(10).is_empty());
        lessor.promote(1, Duration::ZERO);
        assert_eq!(lessor.renew(1), Ok(100));
        let due = lessor.due_checkpoints(10);
        assert_eq!(due.len(), 1);
        lessor.checkpoint(&mut batch, 1, &due);
        assert!(lessor.due_checkpoints(10).is_empty(), "checkpointed deadlines are not proposed again");
        // A checkpoint never pulls the primary's expiry back (it may predate a keep-alive).
        lessor.checkpoint(&mut batch, 1, &[Checkpoint { id: 1, deadline_ms: now_ms() - 1000, remaining_ms: 1 }]);
        assert!(lessor.expired(10).is_empty());
        assert_eq!(lessor.renew(1), Ok(100));
        lessor.demote();
        assert!(lessor.expired(10).is_empty());
    }

    #[test]
    fn promotion_resumes_from_the_last_checkpoint() {
        let engine = MemoryEngine::new();
        let lessor = Lessor::open(&engine, 1).unwrap();
        let mut batch = WriteBatch::new();
        lessor.grant(&mut batch, 3, 30).unwrap();
        // Taken by another member whose clock read 25 s left: its wall-clock deadline (20 s
        // by this clock) is not trusted, its remaining TTL is.
        lessor.checkpoint(&mut batch, 2, &[Checkpoint { id: 3, deadline_ms: now_ms() + 20_000, remaining_ms: 25_000 }]);
        engine.write(batch, false).unwrap();
        let reloaded = Lessor::open(&engine, 1).unwrap();
        reloaded.promote(1, Duration::ZERO);
        let ttl = reloaded.time_to_live(3).unwrap();
        assert!((23..=25).contains(&ttl.remaining), "remaining {}", ttl.remaining);
        // The member that took a checkpoint reads its own deadline: time spent down counts.
        let mut batch = WriteBatch::new();
        reloaded.grant(&mut batch, 5, 30).unwrap();
        reloaded.checkpoint(&mut batch, 1, &[Checkpoint { id: 5, deadline_ms: now_ms() + 10_000, remaining_ms: 1 }]);
        engine.write(batch, false).unwrap();
        let restarted = Lessor::open(&engine, 1).unwrap();
        restarted.promote(1, Duration::ZERO);
        let ttl = restarted.time_to_live(5).unwrap();
        assert!((8..=10).contains(&ttl.remaining), "remaining {}", ttl.remaining);
        assert_eq!(ttl.granted, 30);
    }

    /// A new leader whose clock runs ahead of the old leader's (the checkpointed wall-clock
    /// deadline looks past) still resumes the remaining TTL, extended by the election timeout.
    #[test]
    fn promotion_ignores_clock_differences_and_extends_by_the_election_timeout() {
        let engine = MemoryEngine::new();
        let lessor = Lessor::open(&engine, 1).unwrap();
        let mut batch = WriteBatch::new();
        lessor.grant(&mut batch, 4, 5).unwrap();
        lessor.checkpoint(&mut batch, 2, &[Checkpoint { id: 4, deadline_ms: now_ms() - 60_000, remaining_ms: 4_000 }]);
        lessor.promote(1, Duration::from_secs(1));
        assert!(lessor.expired(10).is_empty());
        let ttl = lessor.time_to_live(4).unwrap();
        assert!((4..=5).contains(&ttl.remaining), "remaining {}", ttl.remaining);
    }
}
