//! Client SDK for MetaStore (and any etcd v3.4+ server): coordination recipes and the typed
//! metadata layers of an OLAP engine and its batching persistence service, all built on
//! `etcd-client` over the KV, Lease and Watch APIs. No server code, RocksDB or raft is linked.
//!
//! | module | what |
//! | --- | --- |
//! | [`concurrency`] | [`Session`](concurrency::Session), [`Mutex`](concurrency::Mutex) with fencing, [`Election`](concurrency::Election), [`Stm`](concurrency::Stm), [`RwLock`](concurrency::RwLock), [`Semaphore`](concurrency::Semaphore) |
//! | [`catalog`] | tables with config (versioned, audited, rollback, watch), stats, grants |
//! | [`index`] | index sets: data files per (table, id, day), looked up by id, day or table |
//! | [`buffer`] | write-buffer segments, lease-guarded flush claims, atomic flush commits, recovery |
//!
//! Every layer lives under one root prefix (default [`DEFAULT_ROOT`]); the key layout,
//! guarantees and failure behaviour are in `docs/layers.md`.
//!
//! ```no_run
//! # async fn demo() -> metastore_client::Result<()> {
//! use metastore_client::{catalog::Catalog, index::{DataFile, Index}};
//! let client = etcd_client::Client::connect(["http://127.0.0.1:2379"], None).await?;
//! let catalog = Catalog::new(&client);
//! catalog.create_table("events", None, true, "ops", "new table").await?;
//! let index = Index::new(&client);
//! index.add("events", "42", "2024-05-01", &[DataFile::new("s3://b/events/42/0001.parquet", 1 << 20, 1000)]).await?;
//! let files = index.by_day("events", "2024-05-01").await?;
//! # Ok(()) }
//! ```

pub mod buffer;
pub mod catalog;
pub mod concurrency;
mod error;
pub mod index;
pub mod keys;
pub mod layout;

pub use error::{Error, Result};

/// Root prefix of the metadata layers' keys.
pub const DEFAULT_ROOT: &str = "/metastore/";

/// Client re-export, so applications need no direct `etcd-client` dependency.
pub use etcd_client;
