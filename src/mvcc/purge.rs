//! Physical deletion of compacted history, in batches, off the apply path.
//!
//! A compaction has two halves, as in etcd (`kvstore_compaction.go`):
//!
//! 1. logical, inside the apply of its entry and under the store's exclusive lock: the compact
//!    revision moves, the in-memory key index drops what it no longer needs, and the
//!    `scheduled` marker is written with the entry's other effects. From then on no read can
//!    reach a removed revision (below the compact revision they answer `compacted`; at or above
//!    it the index only names kept revisions);
//! 2. physical, here: the stored revisions the index dropped are deleted by a background thread
//!    in engine writes of at most `batch_limit` keys (`--experimental-compaction-batch-limit`,
//!    etcd's default 1000) with a pause between them, so one large compaction never holds up the
//!    applier (and with it the raft loop) for long; the `finished` marker follows the last batch.
//!
//! A crash between the halves leaves `scheduled > finished`; opening the store runs the
//! compaction again from the stored history (see `KvStore::open`). Hashes of the stored state
//! (`HashKV`, `Hash`) are taken only once no deletion is pending, so every member hashes the
//! same bytes at the same revision whatever its deletion progress.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::storage::schema::META_FINISHED_COMPACT;
use crate::storage::{Engine, Table, WriteBatch};

/// etcd's `--experimental-compaction-batch-limit` default.
pub const DEFAULT_BATCH_LIMIT: usize = 1000;

/// Pause between two deletion batches (etcd 3.4 waits 10 ms between its batches).
const BATCH_PAUSE: Duration = Duration::from_millis(10);

/// One compaction's physical half: the stored revision keys to delete, then the marker.
pub(super) struct Job {
    pub rev: i64,
    pub keys: Vec<Vec<u8>>,
}

#[derive(Default)]
struct Pending {
    count: Mutex<usize>,
    idle: Condvar,
}

/// The handle the store keeps; dropping it ends the thread once queued jobs are done.
pub(super) struct Purger {
    tx: Mutex<mpsc::Sender<Job>>,
    pending: Arc<Pending>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Purger {
    pub fn start(engine: Arc<dyn Engine>, batch_limit: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let pending = Arc::new(Pending::default());
        let done = pending.clone();
        let limit = batch_limit.max(1);
        let thread = std::thread::Builder::new()
            .name("mvcc-purge".into())
            .spawn(move || {
                for job in rx {
                    if let Err(e) = run(&*engine, &job, limit) {
                        // The revisions stay stored (harmless: the index no longer names them)
                        // and `finished` stays behind `scheduled`, so the next open retries.
                        tracing::error!(rev = job.rev, error = %e, "deleting compacted history failed");
                    }
                    let mut count = done.count.lock().expect("purge lock");
                    *count -= 1;
                    done.idle.notify_all();
                }
            })
            .expect("spawn the mvcc purge thread");
        Self { tx: Mutex::new(tx), pending, thread: Some(thread) }
    }

    /// Queues a job. Called under the store's exclusive lock, so a caller holding the shared
    /// lock and seeing [`Purger::is_idle`] knows no deletion is pending or can start.
    pub fn submit(&self, job: Job) {
        *self.pending.count.lock().expect("purge lock") += 1;
        if self.tx.lock().expect("purge sender").send(job).is_err() {
            *self.pending.count.lock().expect("purge lock") -= 1;
            tracing::error!("the mvcc purge thread is gone; compacted history stays stored until the next start");
        }
    }

    pub fn is_idle(&self) -> bool {
        *self.pending.count.lock().expect("purge lock") == 0
    }

    /// Blocks until every queued job is done.
    pub fn wait_idle(&self) {
        let mut count = self.pending.count.lock().expect("purge lock");
        while *count > 0 {
            count = self.pending.idle.wait(count).expect("purge lock");
        }
    }
}

fn run(engine: &dyn Engine, job: &Job, limit: usize) -> crate::error::Result<()> {
    let started = std::time::Instant::now();
    for (i, chunk) in job.keys.chunks(limit).enumerate() {
        if i > 0 {
            std::thread::sleep(BATCH_PAUSE);
        }
        let mut batch = WriteBatch::new();
        for key in chunk {
            batch.delete(Table::Key, key.clone());
        }
        engine.write(batch, false)?;
    }
    let mut batch = WriteBatch::new();
    batch.put(Table::Meta, META_FINISHED_COMPACT, (job.rev as u64).to_be_bytes());
    engine.write(batch, false)?;
    tracing::info!(
        rev = job.rev,
        deleted = job.keys.len(),
        took = ?started.elapsed(),
        "finished scheduled compaction"
    );
    Ok(())
}

impl Drop for Purger {
    /// Closes the queue and waits for the thread, so the engine it holds is released before the
    /// store's owner goes on (RocksDB must be closed before the process exits, or its static
    /// destructors abort the process).
    fn drop(&mut self) {
        let (closed, _) = mpsc::channel();
        drop(std::mem::replace(self.tx.get_mut().expect("purge lock"), closed));
        if let Some(thread) = self.thread.take() {
            let _ended = thread.join();
        }
    }
}
