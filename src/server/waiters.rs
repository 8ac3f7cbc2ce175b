//! Pending client requests waiting for their raft entry to be applied, keyed by request id.
//!
//! Results are matched by the id carried inside the replicated request, never by position: an
//! entry applied on a member that did not propose it (or replayed after a restart) simply finds no
//! waiter. A waiter is a guard: however its caller stops waiting (answer, timeout, or a client
//! that went away and dropped the request), its entry is removed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::error::Result;
use crate::proto::etcdserverpb::{
    AlarmResponse, CompactionResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseRevokeResponse, PutResponse,
    TxnResponse,
};

/// The result of one applied request, as the applier hands it to its waiter.
#[derive(Debug, Clone)]
pub enum Applied {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    /// A token issued by Authenticate.
    Token(String),
    Alarm(AlarmResponse),
    /// Applied with no answer beyond success (checkpoints, member changes and attributes).
    Done,
}

#[derive(Default)]
pub struct Waiters {
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<Applied>>>>,
}

/// One registered waiter; dropping it forgets the request.
pub struct Pending<'a> {
    waiters: &'a Waiters,
    id: u64,
    rx: oneshot::Receiver<Result<Applied>>,
    /// Answered: the trigger already removed the entry.
    answered: bool,
}

impl Pending<'_> {
    /// The applied result, or `None` if none came within `timeout` (or the server stopped).
    pub async fn wait(mut self, timeout: Duration) -> Option<Result<Applied>> {
        let result = tokio::time::timeout(timeout, &mut self.rx).await.ok()?.ok();
        self.answered = result.is_some();
        result
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.waiters.pending.lock().expect("waiters lock").remove(&self.id);
        }
    }
}

impl Waiters {
    pub fn register(&self, id: u64) -> Pending<'_> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("waiters lock").insert(id, tx);
        Pending { waiters: self, id, rx, answered: false }
    }

    /// Delivers the result of request `id`, if anyone still waits for it.
    pub fn trigger(&self, id: u64, result: Result<Applied>) {
        self.trigger_all(vec![(id, result)]);
    }

    /// Delivers the results of one applied batch: one lock for all of them, the callers woken
    /// after it is released.
    pub fn trigger_all(&self, results: Vec<(u64, Result<Applied>)>) {
        let mut answers = Vec::with_capacity(results.len());
        {
            let mut pending = self.pending.lock().expect("waiters lock");
            for (id, result) in results {
                if let Some(tx) = pending.remove(&id) {
                    answers.push((tx, result));
                }
            }
        }
        for (tx, result) in answers {
            // The client may have given up (timeout, cancellation): nothing left to tell.
            let _unwanted = tx.send(result);
        }
    }

    /// Requests waiting (for tests and status).
    pub fn len(&self) -> usize {
        self.pending.lock().expect("waiters lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiter_dropped_by_its_caller_is_forgotten() {
        let waiters = Waiters::default();
        let pending = waiters.register(1);
        assert_eq!(waiters.len(), 1);
        drop(pending); // the client went away
        assert!(waiters.is_empty());
        let timed_out = waiters.register(2);
        assert!(timed_out.wait(Duration::from_millis(1)).await.is_none());
        assert!(waiters.is_empty());
        let answered = waiters.register(3);
        waiters.trigger(3, Ok(Applied::Done));
        assert!(matches!(answered.wait(Duration::from_secs(1)).await, Some(Ok(Applied::Done))));
        assert!(waiters.is_empty());
        let (a, b, gone) = (waiters.register(4), waiters.register(5), waiters.register(6));
        drop(gone);
        waiters.trigger_all(vec![(4, Ok(Applied::Done)), (6, Ok(Applied::Done)), (5, Ok(Applied::Done))]);
        assert!(matches!(a.wait(Duration::from_secs(1)).await, Some(Ok(Applied::Done))));
        assert!(matches!(b.wait(Duration::from_secs(1)).await, Some(Ok(Applied::Done))));
        assert!(waiters.is_empty());
    }
}
