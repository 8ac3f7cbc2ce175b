//! Multi-version concurrency control with etcd's exact semantics.
//!
//! One global revision counter; every write transaction takes the next main revision and each of
//! its changes a sub revision. Every key carries `create_revision`, `mod_revision`, `version` and
//! `lease`. History is stored by revision (see [`revision`]) so watch catch-up and compaction are
//! range scans; the per-key [`key_index::KeyIndex`] (generations of revisions, as etcd's
//! `keyIndex`) lives in memory and is rebuilt from history at open.
//!
//! * [`key_range`]: the `range_end` rules (single key, from-key, prefix, interval);
//! * [`store`]: [`KvStore`], its read views, apply batches and write transactions;
//! * [`purge`]: compaction's physical half, deleting compacted history in batches off the apply
//!   path;
//! * [`txn`]: etcd's compare rules for `Txn`;
//! * [`watch`]: the watch hub (synced, unsynced and victim watchers, progress).
//!
//! Not done here: raft, request validation, leases (only their ids are recorded on keys).

pub mod key_index;
pub mod key_range;
mod purge;
pub mod revision;
pub mod store;
#[cfg(test)]
mod tests;
pub mod txn;
pub mod watch;

pub use key_range::{prefix_end, KeyRange};
pub use revision::Revision;
pub use store::{
    ApplyBatch, KvHash, KvRead, KvStore, KvWrite, PointInTime, RangeOptions, RangeResult, ReadView, Records, WriteTxn,
};
