//! Pending client requests waiting for their raft entry to be applied, keyed by request id.
//!
//! Results are matched by the id carried inside the replicated request, never by position: an
//! entry applied on a member that did not propose it (or replayed after a restart) simply finds no
//! waiter.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

use super::Applied;
use crate::error::Result;

#[derive(Default)]
pub struct Waiters {
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<Applied>>>>,
}

impl Waiters {
    pub fn register(&self, id: u64) -> oneshot::Receiver<Result<Applied>> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("waiters lock").insert(id, tx);
        rx
    }

    /// Delivers the result of request `id`, if anyone still waits for it.
    pub fn trigger(&self, id: u64, result: Result<Applied>) {
        if let Some(tx) = self.pending.lock().expect("waiters lock").remove(&id) {
            // The client may have given up (timeout, cancellation): nothing left to tell.
            let _unwanted = tx.send(result);
        }
    }

    /// Forgets request `id` (the caller stopped waiting).
    pub fn cancel(&self, id: u64) {
        self.pending.lock().expect("waiters lock").remove(&id);
    }
}
