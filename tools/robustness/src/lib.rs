//! MetaStore's robustness suite, after etcd's `tests/robustness`: drive a 3-member cluster with
//! concurrent clients while a nemesis injects faults, record every client's history, and check
//! that what the clients saw is linearizable and that every watch kept etcd's guarantees.
//!
//! ```text
//!  traffic (clients, k8s clients, watchers, compactor) ──► history ──► linearize (Wing–Gong + model)
//!        │                                                   │               │ linearization
//!  nemesis (kill, pause, move leader, replace, snapshot) ─► cluster           ▼
//!                                                            replay ──► serializable reads, watch validators
//! ```
//!
//! Layers: [`history`] is the vocabulary, [`model`] the etcd state machine, [`linearize`] the
//! search (which lets the watch streams, [`evidence`], place operations without an answer),
//! [`replay`] and [`watch`] the checks that need a linearization; [`client`] and
//! [`traffic`] produce histories, [`cluster`] starts members through `tools/member.sh`,
//! [`nemesis`] injects faults, [`scenario`] runs one and [`report`] writes `docs/robustness.md`.
//! After the traffic, [`scenario`] also reads every member's history for acknowledged writes and
//! compares the members' `HashKV` at the final revision (a divergence no client need observe).
//!
//! [`network`] is the fault-injecting proxy in front of the members' peer ports (partitions,
//! one-way loss, delay). Disk faults and malformed-request fuzzing are process tests of the
//! server (`tests/disk_faults.rs`, `tests/fuzz_requests.rs`).

pub mod client;
pub mod cluster;
pub mod evidence;
pub mod history;
pub mod linearize;
pub mod model;
pub mod nemesis;
pub mod network;
pub mod replay;
pub mod report;
pub mod scenario;
pub mod traffic;
pub mod watch;
