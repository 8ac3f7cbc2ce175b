//! The Maintenance service's answers, shaped as etcd 3.4 shapes them — including where etcd
//! sends no header at all (Alarm, Defragment, MoveLeader). Alarms live in [`super::alarms`].
//!
//! * `HashKV` is etcd's `HashByRev` ([`crate::mvcc::KvStore::hash_kv`]): equal to etcd's value
//!   after the same history.
//! * `Hash` is a CRC-32C of the replicated state — every replicated table (name, keys, values)
//!   and the compaction markers — read from one engine snapshot: equal on every member at the
//!   same applied index (etcd hashes its whole bbolt file, so the values differ from etcd's).

use super::snapshot::{META_KEYS, TABLES};
use super::{RequestContext, Server};
use crate::error::Result;
use crate::proto::etcdserverpb::{
    DefragmentResponse, HashKvRequest, HashKvResponse, HashResponse, MoveLeaderRequest, MoveLeaderResponse,
    StatusResponse,
};
use crate::storage::crc32c::Crc32c;
use crate::storage::schema::{META_APPLIED_INDEX, META_APPLIED_TERM};
use crate::storage::Table;

/// The etcd version reported to clients; clients and Kubernetes gate features on it.
pub const ETCD_VERSION: &str = "3.4.23";

impl Server {
    pub fn status_response(&self, _ctx: &RequestContext) -> StatusResponse {
        let status = self.status();
        let errors = if status.leader_id == 0 { vec![crate::error::Error::NoLeader.to_string()] } else { Vec::new() };
        StatusResponse {
            header: Some(self.header(status.revision)),
            version: ETCD_VERSION.to_string(),
            db_size: status.db_size as i64,
            leader: status.leader_id,
            raft_index: status.commit,
            raft_term: status.term,
            raft_applied_index: status.applied,
            errors,
            db_size_in_use: status.db_size as i64,
            is_learner: status.is_learner,
        }
    }

    /// Compacts every table of this member's engine now (RocksDB `compact_range`), on a
    /// blocking thread; reads and writes go on meanwhile. Not replicated, as in etcd.
    pub async fn defragment(&self, ctx: &RequestContext) -> Result<DefragmentResponse> {
        self.check_admin_maintenance(ctx).await?;
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.compact())
            .await
            .map_err(|e| crate::error::Error::Internal(format!("defragment: {e}")))??;
        Ok(DefragmentResponse { header: None })
    }

    /// etcd's HashKV: see [`crate::mvcc::KvStore::hash_kv`]. The header names the current
    /// revision.
    pub async fn hash_kv(&self, ctx: &RequestContext, r: HashKvRequest) -> Result<HashKvResponse> {
        self.check_admin_maintenance(ctx).await?;
        let kv = self.kv.clone();
        let h = tokio::task::spawn_blocking(move || kv.hash_kv(r.revision))
            .await
            .map_err(|e| crate::error::Error::Internal(format!("hash: {e}")))??;
        let compact_revision = h.compact_rev;
        // Test failpoint: this member's history reads as corrupt (a different hash).
        let hash = if crate::failpoint::hit("hashkv-mismatch") { h.hash ^ 1 } else { h.hash };
        Ok(HashKvResponse { header: Some(self.header(h.current_rev)), hash, compact_revision })
    }

    /// A hash of the replicated state; the header names the revision it was taken at.
    pub async fn hash(&self, ctx: &RequestContext) -> Result<HashResponse> {
        self.check_admin_maintenance(ctx).await?;
        let kv = self.kv.clone();
        let (hash, applied) = tokio::task::spawn_blocking(move || state_hash(&kv))
            .await
            .map_err(|e| crate::error::Error::Internal(format!("hash: {e}")))??;
        tracing::debug!(applied, hash, "hashed the replicated state");
        Ok(HashResponse { header: Some(self.header(self.kv.read().rev())), hash })
    }

    /// Hands leadership to voter `target_id` and waits until it leads.
    pub async fn move_leader(&self, _ctx: &RequestContext, r: MoveLeaderRequest) -> Result<MoveLeaderResponse> {
        self.transfer_leadership(r.target_id).await?;
        Ok(MoveLeaderResponse { header: None })
    }
}

/// CRC-32C of every replicated table (its name, then each key and value in order) and the meta
/// keys describing them other than the applied position, from one engine snapshot; also answers
/// the applied index the snapshot holds.
fn state_hash(kv: &crate::mvcc::KvStore) -> Result<(u32, u64)> {
    let mut hash = Crc32c::default();
    let mut applied = 0;
    // Once compacted history is physically gone, so every member hashes the same bytes.
    kv.with_settled_snapshot(&mut |snap| {
        for table in TABLES {
            hash.update(table.name().as_bytes());
            snap.scan(table, b"", b"", &mut |k, v| {
                hash.update(k);
                hash.update(v);
                true
            })?;
        }
        hash.update(Table::Meta.name().as_bytes());
        for key in META_KEYS {
            let value = snap.get(Table::Meta, key)?;
            if key == META_APPLIED_INDEX {
                applied = value.as_deref().and_then(crate::storage::schema::decode_u64).unwrap_or(0);
            }
            if key == META_APPLIED_INDEX || key == META_APPLIED_TERM {
                continue;
            }
            if let Some(v) = value {
                hash.update(key);
                hash.update(&v);
            }
        }
        Ok(())
    })?;
    Ok((hash.sum(), applied))
}
