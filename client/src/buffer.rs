//! Write-buffer state of a batching persistence service: segments waiting to be flushed, flush
//! claims, atomic flush commits and recovery after a crash.
//!
//! ```text
//! R data/<T>/buffer/<id>/<day>/<segment>   Segment (rows, bytes, first/last ts, location)
//! R data/<T>/claim/<id>/<day>              ClaimRecord, attached to the flusher's lease
//! ```
//!
//! # Protocol
//!
//! 1. Writers [`Buffers::append`] segment records as data lands in the buffer.
//! 2. A flusher [`Buffers::claim`]s buffers: `If(create_revision(claim) == 0)` put the claim with
//!    its session's lease and read the segments, in one txn. The claim key's create revision is
//!    the claim's fencing token, so exactly one flusher owns a buffer at a time.
//! 3. It writes the data files, then [`Buffers::commit`]s: the flushed segment records are
//!    deleted, the files are added to the index set (both orderings), the table's stats are
//!    updated and the claim is deleted — one txn, guarded by the fencing token and by each
//!    flushed segment being unchanged. A flusher whose lease expired (crashed, paused, cut off)
//!    cannot commit: it gets [`Error::ClaimLost`] and nothing is applied.
//! 4. When a flusher dies its lease expires, the server deletes its claim, and the buffer is
//!    claimable again with all its segments: recovery needs no coordinator. Segments appended
//!    after a claim was taken are not part of that flush and stay for the next one.
//!
//! ```no_run
//! # async fn flusher(client: etcd_client::Client) -> metastore_client::Result<()> {
//! use metastore_client::buffer::Buffers;
//! use metastore_client::concurrency::Session;
//! use metastore_client::index::DataFile;
//! let buffers = Buffers::new(&client);
//! let session = Session::new(&client, 10).await?;
//! for claim in buffers.claim(&session, "events", "flusher-1", 8).await? {
//!     let path = format!("s3://bucket/events/{}/{}/{}.parquet", claim.id, claim.day, claim.token);
//!     // ... write claim.segments' rows to `path` ...
//!     buffers.commit(&claim, &[DataFile::new(path, claim.bytes(), claim.rows())]).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! # Not done
//!
//! - Data files written by a flusher that then lost its claim are not garbage-collected here; the
//!   index never references them.

use std::collections::BTreeMap;

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use serde::{Deserialize, Serialize};

use crate::catalog::{now_ms, TableStats};
use crate::concurrency::{Fence, Session};
use crate::error::{Error, Result};
use crate::index::{validate, DataFile, Plan};
use crate::keys::{decode, encode};
use crate::layout::{validate_table_name, Layout};

/// A chunk of buffered rows and where its data sits until flushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub rows: u64,
    pub bytes: u64,
    /// Timestamps of the first and last row (caller's unit).
    pub first_ts: i64,
    pub last_ts: i64,
    pub location: String,
}

/// A stored segment record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRef {
    pub key: String,
    pub segment: Segment,
    pub mod_revision: i64,
}

/// Who holds a flush claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRecord {
    pub owner: String,
    pub lease: i64,
    /// Unix milliseconds.
    pub claimed_at: i64,
}

/// A buffer with segments waiting to be flushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferState {
    pub table: String,
    pub id: String,
    pub day: String,
    pub segments: Vec<SegmentRef>,
    pub rows: u64,
    pub bytes: u64,
    /// The current claim; `None` when the buffer is free to claim.
    pub claim: Option<ClaimRecord>,
}

/// Exclusive ownership of one buffer for one flush.
#[derive(Clone)]
pub struct Claim {
    pub table: String,
    pub id: String,
    pub day: String,
    pub owner: String,
    /// Create revision of the claim key: the fencing token.
    pub token: i64,
    /// The segments this flush covers, as read when claiming.
    pub segments: Vec<SegmentRef>,
    key: String,
    client: Client,
}

impl Claim {
    pub fn fence(&self) -> Fence {
        Fence::new(self.client.clone(), self.key.as_str(), self.token)
    }

    pub fn rows(&self) -> u64 {
        self.segments.iter().map(|s| s.segment.rows).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.segment.bytes).sum()
    }
}

/// The buffer state under one [`Layout`].
#[derive(Clone)]
pub struct Buffers {
    client: Client,
    layout: Layout,
}

impl Buffers {
    pub fn new(client: &Client) -> Buffers {
        Buffers::with_layout(client, Layout::default())
    }

    pub fn with_layout(client: &Client, layout: Layout) -> Buffers {
        Buffers { client: client.clone(), layout }
    }

    /// Records a segment of (table, id, day); returns its key. The table must exist.
    pub async fn append(&self, table: &str, id: &str, day: &str, segment: &Segment) -> Result<String> {
        validate(table, id, day)?;
        let key = format!("{}{}", self.layout.buffer(table, id, day), segment_id());
        let txn = Txn::new()
            .when([Compare::version(self.layout.table(table), CompareOp::Greater, 0)])
            .and_then([TxnOp::put(key.as_str(), encode(segment), None)]);
        if !self.client.kv_client().txn(txn).await?.succeeded() {
            return Err(Error::NotFound(format!("table {table}")));
        }
        Ok(key)
    }

    /// Buffers of `table` with segments waiting, with their claims.
    pub async fn list(&self, table: &str) -> Result<Vec<BufferState>> {
        validate_table_name(table)?;
        let l = &self.layout;
        let (bprefix, cprefix) = (l.buffers(table), l.claims(table));
        let txn = Txn::new().and_then([
            TxnOp::get(bprefix.as_str(), Some(GetOptions::new().with_prefix())),
            TxnOp::get(cprefix.as_str(), Some(GetOptions::new().with_prefix())),
        ]);
        let resp = self.client.kv_client().txn(txn).await?;
        let mut gets = resp.op_responses().into_iter().map(|r| match r {
            TxnOpResponse::Get(mut g) => g.take_kvs(),
            _ => Vec::new(),
        });
        let (segments, claims) = (gets.next().unwrap_or_default(), gets.next().unwrap_or_default());
        let mut out: BTreeMap<(String, String), BufferState> = BTreeMap::new();
        for kv in segments {
            let rest = String::from_utf8_lossy(&kv.key()[bprefix.len()..]).into_owned();
            let mut parts = rest.splitn(3, '/');
            let (id, day) =
                (parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or_default().to_string());
            let segment: Segment = decode(kv.key(), kv.value())?;
            let b = out.entry((id.clone(), day.clone())).or_insert_with(|| BufferState {
                table: table.to_string(),
                id,
                day,
                segments: Vec::new(),
                rows: 0,
                bytes: 0,
                claim: None,
            });
            b.rows += segment.rows;
            b.bytes += segment.bytes;
            b.segments.push(SegmentRef {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                segment,
                mod_revision: kv.mod_revision(),
            });
        }
        for kv in claims {
            let rest = String::from_utf8_lossy(&kv.key()[cprefix.len()..]).into_owned();
            if let Some((id, day)) = rest.split_once('/') {
                if let Some(b) = out.get_mut(&(id.to_string(), day.to_string())) {
                    b.claim = Some(decode(kv.key(), kv.value())?);
                }
            }
        }
        Ok(out.into_values().collect())
    }

    /// Buffers waiting to be flushed in `table`, or in every table when `None`.
    pub async fn list_incomplete(&self, table: Option<&str>) -> Result<Vec<BufferState>> {
        let tables = match table {
            Some(t) => vec![t.to_string()],
            None => crate::catalog::Catalog::with_layout(&self.client, self.layout.clone()).list_tables(None).await?,
        };
        let mut out = Vec::new();
        for t in tables {
            out.extend(self.list(&t).await?);
        }
        Ok(out)
    }

    /// Claims up to `max` unclaimed buffers of `table` for `owner`, through `session`'s lease.
    /// Each session starts at its own point of the buffer list (by lease id), so a fleet of
    /// flushers spreads out instead of all racing for the first free buffer.
    pub async fn claim(&self, session: &Session, table: &str, owner: &str, max: usize) -> Result<Vec<Claim>> {
        let mut out = Vec::new();
        let mut free = self.unclaimed(table).await?;
        if !free.is_empty() {
            let start = (session.lease_id() as u64 % free.len() as u64) as usize;
            free.rotate_left(start);
        }
        for (id, day) in free {
            if out.len() >= max {
                break;
            }
            match self.claim_one(session, table, &id, &day, owner).await {
                Ok(c) => out.push(c),
                Err(Error::Locked) | Err(Error::NotFound(_)) => continue, // taken or flushed meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// (id, day) of the buffers with segments and no claim, from one keys-only read.
    async fn unclaimed(&self, table: &str) -> Result<Vec<(String, String)>> {
        validate_table_name(table)?;
        let (bprefix, cprefix) = (self.layout.buffers(table), self.layout.claims(table));
        let keys = || Some(GetOptions::new().with_prefix().with_keys_only());
        let txn = Txn::new().and_then([TxnOp::get(bprefix.as_str(), keys()), TxnOp::get(cprefix.as_str(), keys())]);
        let resp = self.client.kv_client().txn(txn).await?;
        let mut gets = resp.op_responses().into_iter().map(|r| match r {
            TxnOpResponse::Get(mut g) => g.take_kvs(),
            _ => Vec::new(),
        });
        let (segments, claims) = (gets.next().unwrap_or_default(), gets.next().unwrap_or_default());
        let id_day = |key: &[u8], prefix: &str| {
            let rest = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            let mut parts = rest.splitn(3, '/');
            (parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or_default().to_string())
        };
        let claimed: std::collections::BTreeSet<(String, String)> =
            claims.iter().map(|kv| id_day(kv.key(), &cprefix)).collect();
        let mut free: Vec<(String, String)> = segments.iter().map(|kv| id_day(kv.key(), &bprefix)).collect();
        free.dedup();
        free.retain(|b| !claimed.contains(b));
        Ok(free)
    }

    /// Claims one buffer: [`Error::Locked`] if someone holds it, [`Error::NotFound`] if it has
    /// no segments.
    pub async fn claim_one(&self, session: &Session, table: &str, id: &str, day: &str, owner: &str) -> Result<Claim> {
        validate(table, id, day)?;
        if !session.is_alive() {
            return Err(Error::SessionExpired);
        }
        let l = &self.layout;
        let key = l.claim(table, id, day);
        let record = ClaimRecord { owner: owner.to_string(), lease: session.lease_id(), claimed_at: now_ms() };
        let prefix = l.buffer(table, id, day);
        let txn = Txn::new()
            .when([
                Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
                Compare::version(l.table(table), CompareOp::Greater, 0),
            ])
            .and_then([
                TxnOp::put(key.as_str(), encode(&record), Some(PutOptions::new().with_lease(session.lease_id()))),
                TxnOp::get(prefix.as_str(), Some(GetOptions::new().with_prefix())),
            ]);
        let resp = self.client.kv_client().txn(txn).await?;
        if !resp.succeeded() {
            if !crate::catalog::Catalog::with_layout(&self.client, l.clone()).exists(table).await? {
                return Err(Error::NotFound(format!("table {table}")));
            }
            return Err(Error::Locked);
        }
        let token = resp.header().map_or(0, |h| h.revision());
        let mut segments = Vec::new();
        if let Some(TxnOpResponse::Get(g)) = resp.op_responses().into_iter().nth(1) {
            for kv in g.kvs() {
                segments.push(SegmentRef {
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                    segment: decode(kv.key(), kv.value())?,
                    mod_revision: kv.mod_revision(),
                });
            }
        }
        let claim = Claim {
            table: table.to_string(),
            id: id.to_string(),
            day: day.to_string(),
            owner: owner.to_string(),
            token,
            segments,
            key,
            client: self.client.clone(),
        };
        if claim.segments.is_empty() {
            self.release(&claim).await?;
            return Err(Error::NotFound(format!("buffer {table}/{id}/{day}")));
        }
        Ok(claim)
    }

    /// Commits a flush of `claim` into `files`: removes the claimed segment records, adds the
    /// files to the index set, updates the stats and releases the claim, in one txn guarded by
    /// the claim. Files without record timestamps get the segments' first and last.
    pub async fn commit(&self, claim: &Claim, files: &[DataFile]) -> Result<TableStats> {
        let l = &self.layout;
        let (first, last) = (
            claim.segments.iter().map(|s| s.segment.first_ts).min(),
            claim.segments.iter().map(|s| s.segment.last_ts).max(),
        );
        let files: Vec<DataFile> = files
            .iter()
            .map(|f| DataFile {
                oldest_record: f.oldest_record.or(first),
                newest_record: f.newest_record.or(last),
                ..f.clone()
            })
            .collect();
        let mut kv = self.client.kv_client();
        let lost = || Error::ClaimLost(format!("{}/{}/{}", claim.table, claim.id, claim.day));
        for attempt in 0..100 {
            let (mut plan, members) = match Plan::read(&mut kv, l, &claim.table, &claim.id, &claim.day).await {
                Ok(p) => p,
                Err(Error::NotFound(_)) => return Err(lost()), // table dropped: its claims went with it
                Err(e) => return Err(e),
            };
            plan.add(l, &claim.table, &claim.id, &claim.day, &files, &members);
            plan.compares.push(claim.fence().compare());
            for s in &claim.segments {
                plan.compares.push(Compare::mod_revision(s.key.as_str(), CompareOp::Equal, s.mod_revision));
                plan.ops.push(TxnOp::delete(s.key.as_str(), None));
            }
            plan.ops.push(TxnOp::delete(claim.key.as_str(), None));
            let (compares, ops, stats) = plan.finish(l, &claim.table);
            if kv.txn(Txn::new().when(compares).and_then(ops)).await?.succeeded() {
                return Ok(stats);
            }
            // Lost claim or vanished segment: final. Otherwise stats or index raced: retry.
            let held = kv.get(claim.key.as_str(), None).await?;
            if held.kvs().first().is_none_or(|c| c.create_revision() != claim.token) {
                return Err(lost());
            }
            for s in &claim.segments {
                let r = kv.get(s.key.as_str(), None).await?;
                if r.kvs().first().is_none_or(|c| c.mod_revision() != s.mod_revision) {
                    return Err(lost());
                }
            }
            crate::concurrency::backoff(attempt).await;
        }
        Err(Error::Conflict { attempts: 100 })
    }

    /// Gives a claim up without flushing (only if it is still ours).
    pub async fn release(&self, claim: &Claim) -> Result<()> {
        claim.fence().txn(Txn::new().and_then([TxnOp::delete(claim.key.as_str(), None)])).await.map(|_| ())
    }

    /// Deletes the claim on (table, id, day) whoever holds it, so the buffer can be claimed at
    /// once (e.g. its flusher hangs with a live lease). The old holder's commit is then refused.
    /// Returns whether there was a claim.
    pub async fn force_release(&self, table: &str, id: &str, day: &str) -> Result<bool> {
        validate(table, id, day)?;
        let resp = self.client.kv_client().delete(self.layout.claim(table, id, day), None).await?;
        Ok(resp.deleted() > 0)
    }
}

/// Unique, roughly time-ordered segment ids: nanoseconds since the epoch and 32 random bits.
fn segment_id() -> String {
    use std::hash::{BuildHasher, RandomState};
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let rnd = RandomState::new().hash_one(nanos) as u32;
    format!("{nanos:020}-{rnd:08x}")
}
