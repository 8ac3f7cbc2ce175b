//! MetaStore: an etcd v3 compatible metadata store on a raft-rs log and an MVCC store on RocksDB
//! (or memory).
//!
//! Layers, dependencies pointing one way (see `docs/architecture.md`):
//!
//! ```text
//! api ──► server ──► raft ──► storage
//!           ├──────► mvcc ───────┤
//!           ├──────► lease ──────┤
//!           └──────► auth ───────┘
//! error, proto, metrics, failpoint: leaves every layer may use; config and log: the command line
//! and the process log (binary only)
//! ```

pub mod api;
pub mod auth;
pub mod backup;
pub mod bbolt;
pub mod config;
pub mod error;
pub mod failpoint;
pub mod go_duration;
pub mod lease;
pub mod log;
pub mod metrics;
pub mod mvcc;
pub mod peer;
pub mod proto;
pub mod raft;
pub mod server;
pub mod storage;
pub mod tls;
