//! MetaStore's tables, read from one engine snapshot, written as etcd's backend database.

use std::io::{Seek, Write};

use prost::Message as _;

use super::*;
use crate::bbolt::Writer;
use crate::proto::metastorepb::{LeaseRecord, MemberRecord};
use crate::storage::schema::{decode_u64, META_APPLIED_INDEX, META_FINISHED_COMPACT, META_SCHEDULED_COMPACT};
use crate::storage::{Reads, Table};

/// Writes the backend database of `snap` to `out`; returns `out` and the database's length.
/// The sha256 trailer is the caller's (it streams the bytes anyway).
pub fn write<W: Write + Seek>(snap: &dyn Reads, out: W) -> Result<(W, u64)> {
    let mut w = Writer::new(out)?;

    let mut keys = w.bucket(KEY);
    copy(snap, Table::Key, &mut |k, v| keys.put(k, v))?;
    keys.finish()?;

    let mut leases = w.bucket(LEASE);
    copy(snap, Table::Lease, &mut |k, v| {
        let r = LeaseRecord::decode(v).map_err(|e| Error::Storage(format!("corrupt lease record: {e}")))?;
        leases.put(k, &EtcdLease { id: r.id, ttl: r.ttl, remaining_ttl: 0 }.encode_to_vec())
    })?;
    leases.finish()?;

    let mut members = Vec::new();
    copy(snap, Table::Members, &mut |_, v| {
        let r = MemberRecord::decode(v).map_err(|e| Error::Storage(format!("corrupt member record: {e}")))?;
        members.push((format!("{:x}", r.id).into_bytes(), member_json(&r).into_bytes()));
        Ok(())
    })?;
    members.sort();

    let meta_u64 =
        |key: &[u8]| -> Result<u64> { Ok(snap.get(Table::Meta, key)?.as_deref().and_then(decode_u64).unwrap_or(0)) };
    let mut meta = vec![(CONSISTENT_INDEX.to_vec(), meta_u64(META_APPLIED_INDEX)?.to_be_bytes().to_vec())];
    for (theirs, ours) in [(FINISHED_COMPACT, META_FINISHED_COMPACT), (SCHEDULED_COMPACT, META_SCHEDULED_COMPACT)] {
        match meta_u64(ours)? {
            0 => {}
            rev => meta.push((theirs.to_vec(), revision_bytes(rev))),
        }
    }
    meta.sort();

    let mut rest = vec![
        (MEMBERS, members),
        (MEMBERS_REMOVED, Vec::new()),
        (META, meta),
        (CLUSTER, vec![(CLUSTER_VERSION.0.to_vec(), CLUSTER_VERSION.1.to_vec())]),
    ];
    rest.extend(auth_and_alarm_buckets(snap)?);
    for (name, entries) in rest {
        let mut b = w.bucket(name);
        for (k, v) in entries {
            b.put(&k, &v)?;
        }
        b.finish()?;
    }
    w.finish()
}

fn copy(snap: &dyn Reads, table: Table, put: &mut crate::bbolt::Visit<'_>) -> Result<()> {
    let mut failed = None;
    snap.scan(table, b"", b"", &mut |k, v| match put(k, v) {
        Ok(()) => true,
        Err(e) => {
            failed = Some(e);
            false
        }
    })?;
    failed.map_or(Ok(()), Err)
}

/// etcd's JSON of a member (`membership.Member`: id, then `RaftAttributes`, then `Attributes`,
/// empty optional fields left out).
fn member_json(r: &MemberRecord) -> String {
    let mut m = serde_json::Map::new();
    m.insert("id".into(), r.id.into());
    m.insert("peerURLs".into(), r.peer_urls.clone().into());
    if r.is_learner {
        m.insert("isLearner".into(), true.into());
    }
    if !r.name.is_empty() {
        m.insert("name".into(), r.name.clone().into());
    }
    if !r.client_urls.is_empty() {
        m.insert("clientURLs".into(), r.client_urls.clone().into());
    }
    serde_json::Value::Object(m).to_string()
}
