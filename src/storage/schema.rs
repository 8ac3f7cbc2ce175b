//! Every table and meta key MetaStore stores, in one place.
//!
//! | table       | key                                   | value                              |
//! |-------------|---------------------------------------|------------------------------------|
//! | `key`       | revision (17 bytes, +`t` = tombstone) | `mvccpb.KeyValue`                  |
//! | `meta`      | one of the `META_*` names below       | big-endian integers                |
//! | `lease`     | lease id, 8 bytes big-endian          | `metastorepb.LeaseRecord`          |
//! | `raft_log`  | raft index, 8 bytes big-endian (data dirs from before the raft WAL; moved out at open) | `eraftpb.Entry` |
//! | `raft_state`| one of the `RAFT_*` names below       | `eraftpb` messages                 |
//! | `members`   | member id, 8 bytes big-endian         | member record                      |
//! | `auth`      | `enabled`, `revision`, `user/<name>`, `role/<name>` | flag, big-endian u64, `authpb.User`, `authpb.Role` |
//! | `alarm`     | `etcdserverpb.AlarmMember` (as etcd)  | empty                              |

/// A named table: a RocksDB column family or one in-memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Key,
    Meta,
    Lease,
    RaftLog,
    RaftState,
    Members,
    Auth,
    Alarm,
}

impl Table {
    pub const ALL: [Table; 8] = [
        Table::Key,
        Table::Meta,
        Table::Lease,
        Table::RaftLog,
        Table::RaftState,
        Table::Members,
        Table::Alarm,
        Table::Auth,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Key => "key",
            Table::Meta => "meta",
            Table::Lease => "lease",
            Table::RaftLog => "raft_log",
            Table::RaftState => "raft_state",
            Table::Members => "members",
            Table::Auth => "auth",
            Table::Alarm => "alarm",
        }
    }
}

/// Index of the last raft entry applied to the state machine (written with the entry's effects).
pub const META_APPLIED_INDEX: &[u8] = b"applied_index";
/// Term of that entry.
pub const META_APPLIED_TERM: &[u8] = b"applied_term";
/// Compaction requested and persisted before any history is removed.
pub const META_SCHEDULED_COMPACT: &[u8] = b"scheduled_compact_rev";
/// Compaction whose removal of history has completed.
pub const META_FINISHED_COMPACT: &[u8] = b"finished_compact_rev";
/// Cluster id the member belongs to.
pub const META_CLUSTER_ID: &[u8] = b"cluster_id";
/// This member's id.
pub const META_MEMBER_ID: &[u8] = b"member_id";

/// Set by `metastore snapshot restore`: the new cluster (as its flags, JSON) that a member first
/// started on the restored data dir bootstraps.
pub const META_RESTORED_CLUSTER: &[u8] = b"restored_cluster";

/// Present once the raft log lives in the raft WAL (`raft/wal.rs`) rather than in `raft_log` /
/// `raft_state` (data dirs from before keep it there until their first start, which moves it).
pub const META_RAFT_WAL: &[u8] = b"raft_wal";

/// raft `HardState` (term, vote, commit): data dirs from before the raft WAL only.
pub const RAFT_HARD_STATE: &[u8] = b"hard_state";
/// raft `ConfState` as of the last applied configuration change.
pub const RAFT_CONF_STATE: &[u8] = b"conf_state";
/// Index and term of the entry before the first one kept in `raft_log` (log compaction point):
/// data dirs from before the raft WAL only.
pub const RAFT_TRUNCATED: &[u8] = b"truncated";

/// Encodes a `u64` so byte order equals numeric order.
pub fn u64_key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Decodes a big-endian `u64` written by [`u64_key`] or as a meta value.
pub fn decode_u64(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_be_bytes)
}
