//! Backups in etcd's own format: a snapshot is an etcd 3.4 backend database (a [`bbolt`] file)
//! followed by the sha256 of the database, so stock `etcdctl snapshot status|restore` read
//! MetaStore's backups and MetaStore restores etcd's.
//!
//! How MetaStore's tables map to etcd's buckets:
//!
//! | etcd bucket       | content                                 | MetaStore                                 |
//! |-------------------|-----------------------------------------|-------------------------------------------|
//! | `key`             | 17-byte revision (+`t`) → `mvccpb.KeyValue` | the `key` table, byte for byte         |
//! | `meta`            | `consistent_index` u64 BE; `scheduledCompactRev`, `finishedCompactRev` as 17-byte revisions | applied index; compaction markers (u64 BE) |
//! | `lease`           | id u64 BE → `leasepb.Lease{ID, TTL}`    | the `lease` table's `LeaseRecord`s         |
//! | `members`         | id as hex → etcd's member JSON          | the `members` table                        |
//! | `members_removed` | id as hex → `removed`                   | empty: removed ids are not kept            |
//! | `cluster`         | `clusterVersion` → `3.4.0`              | constant                                   |
//! | `alarm`, `auth`, `authUsers`, `authRoles` | alarms, auth state  | [`auth_and_alarm_buckets`]                 |
//!
//! A backup is read from one engine snapshot ([`crate::storage::Reads`]), so it is one point in
//! time while writes go on. Restoring keeps what defines the data — every revision of every key,
//! the compaction marks, the leases (with their full TTL, as etcd restores them) — and drops what
//! belongs to the old cluster (members, applied index): the restored member starts a new
//! cluster and continues at the same revision.
//!
//! Not done: auth and alarm content (MetaStore has none yet: those buckets are written empty in
//! etcd's layout and ignored on restore), lease checkpoints (`RemainingTTL`).

mod export;
mod restore;

pub use export::write;
pub use restore::{open_file, restore, status, Status};

use crate::error::{Error, Result};

const KEY: &[u8] = b"key";
const META: &[u8] = b"meta";
const LEASE: &[u8] = b"lease";
const MEMBERS: &[u8] = b"members";
const MEMBERS_REMOVED: &[u8] = b"members_removed";
const CLUSTER: &[u8] = b"cluster";

const CONSISTENT_INDEX: &[u8] = b"consistent_index";
const SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
const FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
const CLUSTER_VERSION: (&[u8], &[u8]) = (b"clusterVersion", b"3.4.0");

/// Bytes of the sha256 trailer after the database.
pub const SHA256_LEN: usize = 32;

/// etcd's `leasepb.Lease`.
#[derive(Clone, PartialEq, prost::Message)]
struct EtcdLease {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(int64, tag = "2")]
    ttl: i64,
    /// Set only by etcd's lease checkpointing; 0 restores the full TTL.
    #[prost(int64, tag = "3")]
    remaining_ttl: i64,
}

/// The `alarm` and auth buckets as MetaStore has them today: no alarms, auth never enabled (etcd
/// writes `authRevision` 1 when it creates its auth store). The alarm table (quota, corruption)
/// and the auth tables (users, roles, enabled flag) fill these when they exist.
pub fn auth_and_alarm_buckets(
    _snap: &dyn crate::storage::Reads,
) -> Result<Vec<(&'static [u8], crate::bbolt::Entries)>> {
    Ok(vec![
        (b"alarm", Vec::new()),
        (b"auth", vec![(b"authRevision".to_vec(), 1u64.to_be_bytes().to_vec())]),
        (b"authRoles", Vec::new()),
        (b"authUsers", Vec::new()),
    ])
}

/// etcd's revision key: 8-byte big-endian main, `_`, 8-byte big-endian sub.
fn revision_bytes(main: u64) -> Vec<u8> {
    [&main.to_be_bytes()[..], b"_", &0u64.to_be_bytes()].concat()
}

/// The main revision of a revision key (etcd's `bytesToRev`).
fn revision_main(bytes: &[u8]) -> Result<u64> {
    bytes
        .get(..8)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| Error::Storage(format!("malformed revision {bytes:?}")))
}

/// CRC-32C (Castagnoli), as etcd's `snapshot status` hash uses it.
fn crc32c(mut crc: u32, bytes: &[u8]) -> u32 {
    crc = !crc;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

#[cfg(test)]
mod tests;
