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
//! | `alarm`           | marshalled `AlarmMember` → empty        | the `alarm` table, byte for byte           |
//! | `auth`            | `authEnabled`, `authRevision`           | the `auth` table's `enabled`, `revision`   |
//! | `authUsers`, `authRoles` | name → `authpb.User` / `authpb.Role` | the `auth` table's `user/`, `role/` records |
//!
//! A backup is read from one engine snapshot ([`crate::storage::Reads`]), so it is one point in
//! time while writes go on. Restoring keeps what defines the data — every revision of every key,
//! the compaction marks, the leases (with their full TTL, as etcd restores them) — and drops what
//! belongs to the old cluster (members, applied index): the restored member starts a new
//! cluster and continues at the same revision.
//!
//! Not done: lease checkpoints (`RemainingTTL`).

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

const ALARM: &[u8] = b"alarm";

/// What a record of MetaStore's `auth` table is in etcd's buckets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AuthRecord {
    /// `auth`: `authEnabled` (one byte) and `authRevision` (u64 BE), the same bytes as ours.
    Flag,
    User,
    Role,
}

/// etcd's auth buckets and which of MetaStore's records each holds.
fn auth_buckets() -> [(&'static [u8], AuthRecord); 3] {
    [(b"auth", AuthRecord::Flag), (b"authUsers", AuthRecord::User), (b"authRoles", AuthRecord::Role)]
}

/// MetaStore's key for etcd's key `k` of a bucket holding `record`s (`None`: not carried over).
fn auth_key(record: AuthRecord, k: &[u8]) -> Option<Vec<u8>> {
    use crate::auth::schema;
    match record {
        AuthRecord::Flag if k == b"authEnabled" => Some(schema::ENABLED.to_vec()),
        AuthRecord::Flag if k == b"authRevision" => Some(schema::REVISION.to_vec()),
        AuthRecord::Flag => None,
        AuthRecord::User => Some([schema::USER_PREFIX, k].concat()),
        AuthRecord::Role => Some([schema::ROLE_PREFIX, k].concat()),
    }
}

/// etcd's `alarm` bucket (keys: marshalled `AlarmMember`, as in MetaStore's `alarm` table) and
/// its auth buckets (`authUsers`/`authRoles`: name → `authpb.User`/`authpb.Role`, as MetaStore
/// stores them under `user/`, `role/`). A store that never changed is at auth revision 1, as
/// etcd writes it when it creates its auth store.
pub fn auth_and_alarm_buckets(snap: &dyn crate::storage::Reads) -> Result<Vec<(&'static [u8], crate::bbolt::Entries)>> {
    use crate::auth::schema;
    use crate::storage::Table;
    let mut alarms = Vec::new();
    snap.scan(Table::Alarm, b"", b"", &mut |k, _| {
        alarms.push((k.to_vec(), Vec::new()));
        true
    })?;
    let (mut flags, mut users, mut roles) = (Vec::new(), Vec::new(), Vec::new());
    snap.scan(Table::Auth, b"", b"", &mut |k, v| {
        if k == schema::ENABLED {
            flags.push((b"authEnabled".to_vec(), v.to_vec()));
        } else if k == schema::REVISION {
            flags.push((b"authRevision".to_vec(), v.to_vec()));
        } else if let Some(name) = k.strip_prefix(schema::USER_PREFIX) {
            users.push((name.to_vec(), v.to_vec()));
        } else if let Some(name) = k.strip_prefix(schema::ROLE_PREFIX) {
            roles.push((name.to_vec(), v.to_vec()));
        }
        true
    })?;
    if !flags.iter().any(|(k, _)| k == b"authRevision") {
        flags.push((b"authRevision".to_vec(), 1u64.to_be_bytes().to_vec()));
    }
    flags.sort();
    Ok(vec![(ALARM, alarms), (b"auth", flags), (b"authRoles", roles), (b"authUsers", users)])
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

#[cfg(test)]
mod tests;
