use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use futures::future::BoxFuture;

use crate::error::{Error, Result};

/// How an [`Stm`] transaction's reads are checked at commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// All reads come from one snapshot (the revision of the first read); the commit fails if any
    /// key read changed after that revision. Conflict-serializable.
    Serializable,
    /// Each key is read at the latest revision when first touched; the commit fails if any key
    /// read changed since it was read.
    RepeatableRead,
}

/// Software transactional memory over etcd transactions (Go's `concurrency.STM`): the closure
/// reads and buffers writes through an [`StmTxn`]; at the end everything read is compared and all
/// writes applied in one txn. On conflict the closure runs again with fresh reads.
///
/// ```no_run
/// # async fn demo(client: etcd_client::Client) -> metastore_client::Result<()> {
/// use metastore_client::concurrency::{Isolation, Stm};
/// Stm::new(&client, Isolation::Serializable)
///     .run(|tx| Box::pin(async move {
///         let a: i64 = tx.get_str("accounts/a").await?.map_or(0, |v| v.parse().unwrap_or(0));
///         let b: i64 = tx.get_str("accounts/b").await?.map_or(0, |v| v.parse().unwrap_or(0));
///         tx.put("accounts/a", (a - 10).to_string());
///         tx.put("accounts/b", (b + 10).to_string());
///         Ok::<_, metastore_client::Error>(())
///     }))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Stm {
    client: Client,
    isolation: Isolation,
    max_attempts: u32,
}

impl Stm {
    pub fn new(client: &Client, isolation: Isolation) -> Stm {
        Stm { client: client.clone(), isolation, max_attempts: 1000 }
    }

    /// Gives up with [`Error::Conflict`] after this many conflicting attempts (default 1000).
    pub fn max_attempts(mut self, n: u32) -> Stm {
        self.max_attempts = n.max(1);
        self
    }

    /// Runs `apply` until its reads and writes commit atomically. An error from `apply` aborts
    /// without writing anything and is returned as is.
    pub async fn run<T, E, F>(&self, mut apply: F) -> Result<T, E>
    where
        F: for<'a> FnMut(&'a mut StmTxn) -> BoxFuture<'a, Result<T, E>>,
        E: From<Error>,
    {
        for attempt in 0..self.max_attempts {
            let mut tx = StmTxn {
                client: self.client.clone(),
                isolation: self.isolation,
                snapshot: None,
                reads: BTreeMap::new(),
                writes: BTreeMap::new(),
            };
            let out = apply(&mut tx).await?;
            if tx.commit().await? {
                return Ok(out);
            }
            backoff(attempt).await;
        }
        Err(Error::Conflict { attempts: self.max_attempts }.into())
    }
}

/// One attempt of an [`Stm`] transaction.
pub struct StmTxn {
    client: Client,
    isolation: Isolation,
    /// Serializable only: the revision every read is served at.
    snapshot: Option<i64>,
    /// Key -> (value, mod revision) as first read; `None` value and revision 0 when absent.
    reads: BTreeMap<Vec<u8>, (Option<Vec<u8>>, i64)>,
    /// Buffered writes; `None` deletes.
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl StmTxn {
    /// Reads `key`: our own buffered write if any, else the stored value.
    pub async fn get(&mut self, key: impl Into<Vec<u8>>) -> Result<Option<Vec<u8>>> {
        let key = key.into();
        if let Some(w) = self.writes.get(&key) {
            return Ok(w.clone());
        }
        if let Some((v, _)) = self.reads.get(&key) {
            return Ok(v.clone());
        }
        let opts = self.snapshot.map(|rev| GetOptions::new().with_revision(rev));
        let resp = self.client.kv_client().get(key.clone(), opts).await?;
        if self.isolation == Isolation::Serializable && self.snapshot.is_none() {
            self.snapshot = resp.header().map(|h| h.revision());
        }
        let (value, rev) = resp.kvs().first().map_or((None, 0), |kv| (Some(kv.value().to_vec()), kv.mod_revision()));
        self.reads.insert(key, (value.clone(), rev));
        Ok(value)
    }

    /// [`StmTxn::get`] as UTF-8 (lossy).
    pub async fn get_str(&mut self, key: impl Into<Vec<u8>>) -> Result<Option<String>> {
        Ok(self.get(key).await?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// The mod revision of `key` as read (0 if absent or not read).
    pub fn rev(&self, key: &[u8]) -> i64 {
        self.reads.get(key).map_or(0, |(_, r)| *r)
    }

    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.writes.insert(key.into(), Some(value.into()));
    }

    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.writes.insert(key.into(), None);
    }

    /// True if applied; false on a conflict (nothing written).
    async fn commit(self) -> Result<bool> {
        if self.writes.is_empty() && self.isolation == Isolation::RepeatableRead {
            return Ok(true); // read-only: each read was current when made
        }
        let compares: Vec<Compare> = match self.isolation {
            Isolation::Serializable => {
                let limit = self.snapshot.unwrap_or(0) + 1;
                self.reads.keys().map(|k| Compare::mod_revision(k.clone(), CompareOp::Less, limit)).collect()
            }
            Isolation::RepeatableRead => self
                .reads
                .iter()
                .map(|(k, (_, rev))| Compare::mod_revision(k.clone(), CompareOp::Equal, *rev))
                .collect(),
        };
        let ops: Vec<TxnOp> = self
            .writes
            .into_iter()
            .map(|(k, v)| match v {
                Some(v) => TxnOp::put(k, v, None),
                None => TxnOp::delete(k, None),
            })
            .collect();
        let resp = self.client.kv_client().txn(Txn::new().when(compares).and_then(ops)).await?;
        Ok(resp.succeeded())
    }
}

/// Up to ~50 ms of growing, jittered sleep between conflicting attempts.
pub(crate) async fn backoff(attempt: u32) {
    use std::hash::{BuildHasher, RandomState};
    let jitter = RandomState::new().hash_one(attempt) % 1000;
    let cap = 1_000 * u64::from(attempt.min(50) + 1);
    tokio::time::sleep(Duration::from_micros(jitter * cap / 1000)).await;
}
