//! Reading a snapshot file (etcd's or MetaStore's): its integrity, etcd's `snapshot status`
//! figures, and the tables a restored member starts from.

use prost::Message as _;

use super::*;
use crate::bbolt::Db;
use crate::proto::metastorepb::LeaseRecord;
use crate::storage::schema::{u64_key, META_FINISHED_COMPACT, META_SCHEDULED_COMPACT};
use crate::storage::{Table, WriteBatch};

/// What `snapshot status` reports (etcd's `snapshot.Status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// CRC-32C over every bucket's name, keys and values, in order.
    pub hash: u32,
    /// The main revision of the last entry in the `key` bucket.
    pub revision: i64,
    /// Entries in all buckets.
    pub total_key: u64,
    /// Bytes of the database (without the sha256 trailer).
    pub total_size: u64,
}

/// Opens a snapshot file. A file with a sha256 trailer (etcd's rule: its size is 32 more than a
/// multiple of 512) must match it unless `skip_hash_check`; one without is accepted only with
/// `skip_hash_check` (a bare backend database, e.g. copied from a data dir).
pub fn open_file(path: &std::path::Path, skip_hash_check: bool) -> Result<Db> {
    let mut data = std::fs::read(path).map_err(|e| Error::Storage(format!("read {}: {e}", path.display())))?;
    let has_hash = data.len() % 512 == SHA256_LEN;
    if has_hash {
        let db_len = data.len() - SHA256_LEN;
        if !skip_hash_check {
            let digest = ring::digest::digest(&ring::digest::SHA256, &data[..db_len]);
            if digest.as_ref() != &data[db_len..] {
                return Err(Error::Storage(format!(
                    "expected sha256 {:?}, got {:?}",
                    &data[db_len..],
                    digest.as_ref()
                )));
            }
        }
        data.truncate(db_len);
    } else if !skip_hash_check {
        return Err(Error::Storage("snapshot missing hash but --skip-hash-check=false".into()));
    }
    Db::open(data)
}

/// etcd's `snapshot status` figures for `db` (`size`: the database's bytes).
pub fn status(db: &Db, size: u64) -> Result<Status> {
    let mut st = Status { hash: 0, revision: 0, total_key: 0, total_size: size };
    for name in db.buckets()? {
        st.hash = crc32c(st.hash, &name);
        let is_key = name == KEY;
        db.for_each(&name, &mut |k, v| {
            st.hash = crc32c(crc32c(st.hash, k), v);
            if is_key {
                st.revision = revision_main(k)? as i64;
            }
            st.total_key += 1;
            Ok(())
        })?;
    }
    Ok(st)
}

/// Stages the data of `db` into `batch` for an empty data dir: every revision of every key, the
/// leases, the compaction marks. Members and the applied index are the new cluster's.
pub fn restore(db: &Db, batch: &mut WriteBatch) -> Result<()> {
    if !db.for_each(KEY, &mut |k, v| {
        revision_main(k)?;
        batch.put(Table::Key, k, v);
        Ok(())
    })? {
        return Err(Error::Storage("not an etcd backend: no `key` bucket".into()));
    }
    db.for_each(LEASE, &mut |_, v| {
        let l = EtcdLease::decode(v).map_err(|e| Error::Storage(format!("corrupt lease: {e}")))?;
        let record = LeaseRecord { id: l.id, ttl: l.ttl, ..Default::default() };
        batch.put(Table::Lease, u64_key(l.id as u64).to_vec(), record.encode_to_vec());
        Ok(())
    })?;
    db.for_each(META, &mut |k, v| {
        let ours = match k {
            SCHEDULED_COMPACT => META_SCHEDULED_COMPACT,
            FINISHED_COMPACT => META_FINISHED_COMPACT,
            _ => return Ok(()),
        };
        batch.put(Table::Meta, ours, revision_main(v)?.to_be_bytes());
        Ok(())
    })?;
    Ok(())
}
