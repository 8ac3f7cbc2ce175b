//! Reading a snapshot file (etcd's or MetaStore's): its integrity, etcd's `snapshot status`
//! figures, and the tables a restored member starts from.

use prost::Message as _;

use super::*;
use crate::bbolt::Db;
use crate::proto::metastorepb::LeaseRecord;
use crate::storage::crc32c::Crc32c;
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
/// `skip_hash_check` (a bare backend database, e.g. copied from a data dir). Pages are read from
/// the file as they are needed.
pub fn open_file(path: &std::path::Path, skip_hash_check: bool) -> Result<Db> {
    use std::io::Read as _;
    use std::os::unix::fs::FileExt as _;
    let io = |e: std::io::Error| Error::Storage(format!("read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let has_hash = len % 512 == SHA256_LEN as u64;
    let db_len = if has_hash { len - SHA256_LEN as u64 } else { len };
    if !has_hash && !skip_hash_check {
        return Err(Error::Storage("snapshot missing hash but --skip-hash-check=false".into()));
    }
    if has_hash && !skip_hash_check {
        let mut expected = [0u8; SHA256_LEN];
        file.read_exact_at(&mut expected, db_len).map_err(io)?;
        let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
        let (mut reader, mut buf) = ((&file).take(db_len), vec![0u8; 1 << 20]);
        loop {
            match reader.read(&mut buf).map_err(io)? {
                0 => break,
                n => sha.update(&buf[..n]),
            }
        }
        let digest = sha.finish();
        if digest.as_ref() != expected {
            return Err(Error::Storage(format!("expected sha256 {:?}, got {:?}", expected, digest.as_ref())));
        }
    }
    Db::open_file(file, db_len)
}

/// etcd's `snapshot status` figures for `db` (`size`: the database's bytes).
pub fn status(db: &Db, size: u64) -> Result<Status> {
    let mut st = Status { hash: 0, revision: 0, total_key: 0, total_size: size };
    let mut crc = Crc32c::default();
    for name in db.buckets()? {
        crc.update(&name);
        let is_key = name == KEY;
        db.for_each(&name, &mut |k, v| {
            crc.update(k);
            crc.update(v);
            if is_key {
                st.revision = revision_main(k)? as i64;
            }
            st.total_key += 1;
            Ok(())
        })?;
    }
    st.hash = crc.sum();
    Ok(st)
}

/// Ops per batch handed to `write` by [`restore`].
const BATCH_OPS: usize = 10_000;

/// Copies the data of `db` into an empty data dir through `write`, in batches of bounded size:
/// every revision of every key, the leases, then the compaction marks. Members and the applied
/// index are the new cluster's. The caller makes the result appear at once (etcd restores into a
/// fresh directory too).
pub fn restore(db: &Db, write: &mut dyn FnMut(WriteBatch) -> Result<()>) -> Result<()> {
    let mut batch = WriteBatch::new();
    let mut put = |batch: &mut WriteBatch, table: Table, k: &[u8], v: &[u8]| -> Result<()> {
        batch.put(table, k, v);
        if batch.len() >= BATCH_OPS {
            write(std::mem::take(batch))?;
        }
        Ok(())
    };
    if !db.for_each(KEY, &mut |k, v| {
        revision_main(k)?;
        put(&mut batch, Table::Key, k, v)
    })? {
        return Err(Error::Storage("not an etcd backend: no `key` bucket".into()));
    }
    db.for_each(LEASE, &mut |_, v| {
        let l = EtcdLease::decode(v).map_err(|e| Error::Storage(format!("corrupt lease: {e}")))?;
        let record = LeaseRecord { id: l.id, ttl: l.ttl, ..Default::default() };
        put(&mut batch, Table::Lease, &u64_key(l.id as u64), &record.encode_to_vec())
    })?;
    db.for_each(ALARM, &mut |k, _| put(&mut batch, Table::Alarm, k, &[]))?;
    for (bucket, record) in auth_buckets() {
        db.for_each(bucket, &mut |k, v| match auth_key(record, k) {
            Some(ours) => put(&mut batch, Table::Auth, &ours, v),
            None => Ok(()),
        })?;
    }
    db.for_each(META, &mut |k, v| {
        let ours = match k {
            SCHEDULED_COMPACT => META_SCHEDULED_COMPACT,
            FINISHED_COMPACT => META_FINISHED_COMPACT,
            _ => return Ok(()),
        };
        put(&mut batch, Table::Meta, ours, &revision_main(v)?.to_be_bytes())
    })?;
    if !batch.is_empty() {
        write(batch)?;
    }
    Ok(())
}
