//! A `Range` answer encoded from the stored records, for the gRPC `KV/Range` call.
//!
//! MVCC history stores each version as the prost encoding of its `mvccpb.KeyValue`, which is
//! exactly what a `RangeResponse` carries in its repeated field 2. For the common range — no
//! `keys_only`, no revision filters, key order — the answer is therefore built by copying each
//! stored record, framed as one element of that field, into one buffer
//! ([`crate::mvcc::PointInTime::range_records`]): no `KeyValue` is decoded, built or encoded
//! again, and no allocation is made per key. The engine reads the records in revision order;
//! they are put in key order by the one copy into the response buffer (each record's place is
//! kept beside the buffer), not by a second buffer. [`EncodedRange`] implements `prost::Message`
//! by writing the records between the header and the trailing fields, in field order, so its bytes
//! on the wire are those of the `RangeResponse` [`super::kv::range`] builds (the tests below
//! check every option combination). Other options (sorting by anything but key ascending,
//! filters, `keys_only`) take [`super::kv::range`] and encode its answer into the same shape.
//!
//! Not done: a stored record is sent as it is, without the decode that would notice a corrupt
//! one (the slow path, reads inside txns and the gateway still decode).

use std::ops::Range;

use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};

use super::kv;
use crate::error::Result;
use crate::mvcc::{KeyRange, PointInTime, RangeOptions};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};

/// `RangeResponse.kvs`.
const KVS_FIELD: u32 = 2;

/// A `RangeResponse` whose key-values are already encoded.
#[derive(Debug, Clone, Default)]
pub struct EncodedRange {
    pub header: Option<ResponseHeader>,
    /// Field 2 (`kvs`) as encoded: each `KeyValue` preceded by the field's key and its length,
    /// in key order if `kvs_order` is empty.
    pub kvs: Vec<u8>,
    /// Where each element of `kvs` is, in key order (empty: `kvs` is in key order).
    pub kvs_order: Vec<Range<usize>>,
    pub more: bool,
    pub count: i64,
}

impl EncodedRange {
    /// The elements of field 2 in the order they are sent.
    fn kvs_in_order(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let whole = self.kvs_order.is_empty().then_some(self.kvs.as_slice());
        whole.into_iter().chain(self.kvs_order.iter().map(|span| &self.kvs[span.clone()]))
    }
}

/// Equal when they encode to the same bytes: the same records in the same order, however kept.
impl PartialEq for EncodedRange {
    fn eq(&self, other: &Self) -> bool {
        self.header == other.header
            && self.more == other.more
            && self.count == other.count
            && self.kvs_in_order().flatten().eq(other.kvs_in_order().flatten())
    }
}

impl From<RangeResponse> for EncodedRange {
    fn from(r: RangeResponse) -> Self {
        let mut kvs = Vec::new();
        for kv in &r.kvs {
            encoding::message::encode(KVS_FIELD, kv, &mut kvs);
        }
        Self { header: r.header, kvs, kvs_order: Vec::new(), more: r.more, count: r.count }
    }
}

impl Message for EncodedRange {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if let Some(h) = &self.header {
            encoding::message::encode(1, h, buf);
        }
        for element in self.kvs_in_order() {
            buf.put_slice(element);
        }
        if self.more {
            encoding::bool::encode(3, &self.more, buf);
        }
        if self.count != 0 {
            encoding::int64::encode(4, &self.count, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> std::result::Result<(), DecodeError> {
        match tag {
            1 => encoding::message::merge(wire_type, self.header.get_or_insert_with(Default::default), buf, ctx),
            KVS_FIELD => {
                if !self.kvs_order.is_empty() {
                    self.kvs = self.kvs_in_order().flatten().copied().collect();
                    self.kvs_order.clear();
                }
                let mut record = Vec::new();
                encoding::bytes::merge(wire_type, &mut record, buf, ctx)?;
                encoding::bytes::encode(KVS_FIELD, &record, &mut self.kvs);
                Ok(())
            }
            3 => encoding::bool::merge(wire_type, &mut self.more, buf, ctx),
            4 => encoding::int64::merge(wire_type, &mut self.count, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        self.header.as_ref().map_or(0, |h| encoding::message::encoded_len(1, h))
            + self.kvs.len()
            + if self.more { encoding::bool::encoded_len(3, &self.more) } else { 0 }
            + if self.count != 0 { encoding::int64::encoded_len(4, &self.count) } else { 0 }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// Whether `r`'s answer is the stored records in key order, limited: no filter, no
/// `keys_only`, and key order (the default, or ascending by key).
fn from_records(r: &RangeRequest) -> bool {
    let order = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    let key_order = target == SortTarget::Key && order != SortOrder::Descend;
    let filtered =
        r.min_mod_revision != 0 || r.max_mod_revision != 0 || r.min_create_revision != 0 || r.max_create_revision != 0;
    key_order && !filtered && !r.keys_only
}

/// etcd's answer to `r` at `t`, as [`kv::range`] gives it, encoded (see the module doc).
pub fn range(t: &PointInTime<'_>, r: &RangeRequest) -> Result<EncodedRange> {
    if !from_records(r) {
        return kv::range(t, r).map(EncodedRange::from);
    }
    let limit = r.limit.max(0);
    let opts = RangeOptions { limit, rev: r.revision, count_only: r.count_only };
    let records = t.range_records(&KeyRange::new(&r.key, &r.range_end), opts, KVS_FIELD)?;
    Ok(EncodedRange {
        header: Some(ResponseHeader { revision: records.rev, ..Default::default() }),
        kvs: records.bytes,
        kvs_order: records.order,
        more: !r.count_only && limit > 0 && records.count > limit,
        count: records.count,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mvcc::KvStore;
    use crate::storage::{Engine, MemoryEngine, RocksEngine, RocksOptions};

    /// Keys written in an order unlike their key order, some twice, some deleted, with leases,
    /// across several revisions, on both engines; revision 3 is compacted away.
    fn stores() -> Vec<(KvStore, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let rocks: Arc<dyn Engine> = Arc::new(RocksEngine::open(dir.path(), RocksOptions::default()).expect("open"));
        let memory: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        [(rocks, Some(dir)), (memory, None)]
            .into_iter()
            .map(|(engine, dir)| {
                let store = KvStore::open(engine).expect("open store");
                let mut apply = store.apply();
                for (i, key) in ["k5", "k1", "k3", "k2", "k4", "k0", "k1", "k9", "k3", "k7"].iter().enumerate() {
                    let mut txn = apply.txn();
                    txn.put(key.as_bytes(), format!("value {i} of {key}").into_bytes(), (i % 3) as i64);
                }
                let mut txn = apply.txn();
                txn.delete_range(&KeyRange::Single(b"k4".to_vec()));
                let mut txn = apply.txn();
                txn.put(b"k8", Vec::new(), 0);
                apply.compact(3).expect("compact");
                apply.commit().expect("commit");
                (store, dir)
            })
            .collect()
    }

    fn requests() -> Vec<RangeRequest> {
        let ranges: [(&[u8], &[u8]); 6] =
            [(b"k", b"l"), (b"k1", b""), (b"k4", b""), (b"k3", b"\0"), (b"\0", b"\0"), (b"k7", b"k2")];
        let mut out = Vec::new();
        for (key, range_end) in ranges {
            for limit in [0, -1, 1, 3, 100] {
                for revision in [0, 2, 4, 8, 12, 20] {
                    for (sort_order, sort_target) in [(0, 0), (1, 0), (2, 0), (0, 1), (1, 3), (2, 4), (1, 2), (9, 9)] {
                        for flags in 0..8u8 {
                            let filter = flags & 4 != 0;
                            out.push(RangeRequest {
                                key: key.to_vec(),
                                range_end: range_end.to_vec(),
                                limit,
                                revision,
                                sort_order,
                                sort_target,
                                keys_only: flags & 1 != 0,
                                count_only: flags & 2 != 0,
                                min_mod_revision: if filter { 5 } else { 0 },
                                max_create_revision: if filter && limit == 3 { 9 } else { 0 },
                                ..Default::default()
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// The encoded answer's bytes equal the prost encoding of [`kv::range`]'s answer, and decode
    /// to it, for every option combination (errors included: future and compacted revisions).
    #[test]
    fn encoded_range_equals_the_range_response_built_from_key_values() {
        let mut fast = 0;
        for (store, _dir) in stores() {
            let read = store.point_in_time();
            for r in requests() {
                let want = kv::range(&read, &r);
                let got = range(&read, &r);
                match (want, got) {
                    (Ok(want), Ok(got)) => {
                        let bytes = got.encode_to_vec();
                        assert_eq!(bytes, want.encode_to_vec(), "{r:?}");
                        assert_eq!(RangeResponse::decode(bytes.as_slice()).expect("decodes"), want, "{r:?}");
                        assert_eq!(EncodedRange::decode(bytes.as_slice()).expect("decodes"), got, "{r:?}");
                        fast += from_records(&r) as usize;
                    }
                    (Err(want), Err(got)) => assert_eq!(format!("{want:?}"), format!("{got:?}"), "{r:?}"),
                    (want, got) => panic!("{r:?}: {want:?} vs {got:?}"),
                }
            }
        }
        assert!(fast > 1000, "the stored-records path ran {fast} times");
    }
}
