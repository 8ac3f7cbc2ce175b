//! What the clients did: every operation with its invoke and return time (nanoseconds since the
//! run started), the request in the suite's own small vocabulary, and the answer — a response, a
//! definite etcd error, or nothing at all when the outcome is unknown (timeout, connection lost,
//! leader changed...). An unknown-outcome write stays "maybe applied": the checker may place it
//! anywhere after its invoke, or leave it out.
//!
//! Puts and deletes are recorded as one-branch transactions, as etcd's model does, so the model
//! has one write step. Watch streams are recorded separately ([`WatchSession`]). A failed
//! scenario's history is saved as JSON ([`History::to_json`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A key's stored state, as a range or a watch event reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Kv {
    pub value: String,
    pub create: i64,
    pub modified: i64,
    pub version: i64,
    pub lease: i64,
}

/// A range over the suite's key space: one key, or every key starting with `key` (`prefix`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub key: String,
    pub prefix: bool,
    /// 0: no limit.
    pub limit: i64,
}

impl Range {
    pub fn contains(&self, k: &str) -> bool {
        if self.prefix {
            k.starts_with(&self.key)
        } else {
            k == self.key
        }
    }
}

/// A txn compare; the traffic only asks equality.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compare {
    ModRevision(String, i64),
    Value(String, String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    Get(Range),
    /// `lease` 0: no lease.
    Put {
        key: String,
        value: String,
        lease: i64,
    },
    Delete {
        key: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A read; serializable ones are checked by replay, not by the search.
    Range {
        range: Range,
        serializable: bool,
    },
    Txn {
        compares: Vec<Compare>,
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    },
    LeaseGrant {
        id: i64,
        ttl: i64,
    },
    LeaseRevoke {
        id: i64,
    },
    Compact {
        rev: i64,
    },
}

impl Request {
    pub fn is_read(&self) -> bool {
        matches!(self, Request::Range { .. })
    }

    /// Values this request would write (each unique in a run), to match observations against.
    pub fn written_values(&self) -> Vec<&str> {
        match self {
            Request::Txn { success, failure, .. } => success
                .iter()
                .chain(failure)
                .filter_map(|op| match op {
                    TxnOp::Put { value, .. } => Some(value.as_str()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Result of one op inside a txn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    Get { kvs: Vec<(String, Kv)>, count: i64 },
    Put,
    Delete { deleted: i64 },
}

/// etcd errors that say for sure what happened (nothing was changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EtcdError {
    LeaseNotFound,
    LeaseExists,
    Compacted,
    FutureRev,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Range {
        rev: i64,
        kvs: Vec<(String, Kv)>,
        count: i64,
    },
    Txn {
        rev: i64,
        succeeded: bool,
        results: Vec<OpResult>,
    },
    /// A lease revoke answers the revision after it: the keys it deleted carry that revision,
    /// so without it two concurrent revokes (or a revoke and a delete) could be linearized in
    /// either order and the watch validators would blame the server for the checker's choice.
    Revoked {
        rev: i64,
    },
    /// Lease grant and compaction answer nothing the model checks beyond success.
    Ok,
    Error(EtcdError),
}

impl Response {
    /// The revision the response reports, if the model checks it.
    pub fn revision(&self) -> Option<i64> {
        match self {
            Response::Range { rev, .. } | Response::Txn { rev, .. } | Response::Revoked { rev } => Some(*rev),
            _ => None,
        }
    }
}

/// One client operation. `ret` is `None` when the outcome is unknown.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Operation {
    pub client: usize,
    pub call: u64,
    pub ret: Option<u64>,
    pub request: Request,
    pub response: Option<Response>,
    /// The transport or server error text of an unknown outcome (for the report).
    pub error: Option<String>,
}

/// One watch response as received.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WatchResponse {
    pub time: u64,
    pub header_rev: i64,
    pub events: Vec<Event>,
    /// An empty response that is not the creation answer: a progress notification.
    pub progress: bool,
    pub canceled: bool,
    pub compact_rev: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub rev: i64,
    pub delete: bool,
    pub key: String,
    /// For a delete only `modified` is meaningful (etcd sends the key and its mod revision).
    pub kv: Kv,
    pub prev: Option<Kv>,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.delete { "DELETE" } else { "PUT" };
        write!(f, "{kind} {} @{}", self.key, self.rev)?;
        if !self.delete {
            write!(f, " = {:?} (create {}, version {})", self.kv.value, self.kv.create, self.kv.version)?;
        }
        if let Some(p) = &self.prev {
            write!(f, " prev {:?}@{}", p.value, p.modified)?;
        }
        Ok(())
    }
}

/// What a watch asked for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WatchSpec {
    pub range: Range,
    pub prev_kv: bool,
    pub no_delete: bool,
}

/// One watch stream from its start revision until it ended (error, cancel, end of run). A
/// watcher that reconnects starts a new session at the last revision it saw plus one.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WatchSession {
    pub watcher: String,
    pub spec: WatchSpec,
    pub start_rev: i64,
    /// Whether this session resumes the previous one of the same watcher (from its last
    /// revision + 1), so together they must read as one stream.
    pub resumed: bool,
    pub responses: Vec<WatchResponse>,
}

/// Everything a run recorded.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct History {
    pub operations: Vec<Operation>,
    pub watches: Vec<WatchSession>,
    /// The key space's state when traffic started (revision, keys).
    pub initial_rev: i64,
    pub initial_kvs: BTreeMap<String, Kv>,
}

/// The client id of the expiries [`History::add_lease_expiries`] adds (no real client).
pub const LEASE_EXPIRY: usize = usize::MAX - 1;

impl History {
    /// Adds, for every lease a grant may have created, its expiry as the server performs it: a
    /// revoke with an unknown outcome, invoked no earlier than the grant's invoke plus the TTL
    /// (the lessor counts from when it applied the grant, and a new leader extends leases, so
    /// expiry may come any time later — or after the run). The checker may then place the
    /// deletion of the lease's keys at any revision after that, or nowhere; a lease the client
    /// revoked first makes the expiry a no-op, which the search never needs to place.
    pub fn add_lease_expiries(&mut self) {
        let expiries: Vec<Operation> = self
            .operations
            .iter()
            .filter_map(|o| match (&o.request, &o.response) {
                (Request::LeaseGrant { id, ttl }, None | Some(Response::Ok)) => Some(Operation {
                    client: LEASE_EXPIRY,
                    call: o.call.saturating_add((*ttl as u64).saturating_mul(1_000_000_000)),
                    ret: None,
                    request: Request::LeaseRevoke { id: *id },
                    response: None,
                    error: Some(format!("expiry of lease {id:x} (TTL {ttl} s)")),
                }),
                _ => None,
            })
            .collect();
        self.operations.extend(expiries);
    }

    /// The history as JSON: a failed run's evidence, to re-check (`metastore-robustness
    /// --check-history`) or to keep as a test fixture.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a history is plain data")
    }

    pub fn from_json(text: &str) -> Result<History, String> {
        serde_json::from_str(text).map_err(|e| format!("not a recorded history: {e}"))
    }

    /// Operations the clients made (not the expiries the suite added).
    pub fn client_operations(&self) -> impl Iterator<Item = &Operation> {
        self.operations.iter().filter(|o| o.client != LEASE_EXPIRY)
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Range { range, serializable } => {
                let s = if *serializable { " serializable" } else { "" };
                let p = if range.prefix { " prefix" } else { "" };
                write!(f, "range {}{p}{s}", range.key)?;
                if range.limit > 0 {
                    write!(f, " limit {}", range.limit)?;
                }
                Ok(())
            }
            Request::Txn { compares, success, failure } => {
                if compares.is_empty() && failure.is_empty() && success.len() == 1 {
                    return write!(f, "{}", op_text(&success[0]));
                }
                let cs: Vec<String> = compares
                    .iter()
                    .map(|c| match c {
                        Compare::ModRevision(k, r) => format!("mod({k})=={r}"),
                        Compare::Value(k, v) => format!("value({k})=={v:?}"),
                    })
                    .collect();
                let ops = |v: &[TxnOp]| v.iter().map(op_text).collect::<Vec<_>>().join("; ");
                write!(f, "txn if [{}] then [{}] else [{}]", cs.join(", "), ops(success), ops(failure))
            }
            Request::LeaseGrant { id, ttl } => write!(f, "lease grant {id:x} ttl {ttl}"),
            Request::LeaseRevoke { id } => write!(f, "lease revoke {id:x}"),
            Request::Compact { rev } => write!(f, "compact {rev}"),
        }
    }
}

fn op_text(op: &TxnOp) -> String {
    match op {
        TxnOp::Get(r) => format!("get {}{}", r.key, if r.prefix { " prefix" } else { "" }),
        TxnOp::Put { key, value, lease: 0 } => format!("put {key}={value:?}"),
        TxnOp::Put { key, value, lease } => format!("put {key}={value:?} lease {lease:x}"),
        TxnOp::Delete { key } => format!("delete {key}"),
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kvs_text = |kvs: &[(String, Kv)]| {
            kvs.iter().map(|(k, v)| format!("{k}={:?}@{}", v.value, v.modified)).collect::<Vec<_>>().join(" ")
        };
        match self {
            Response::Range { rev, kvs, count } => write!(f, "rev {rev} count {count} [{}]", kvs_text(kvs)),
            Response::Txn { rev, succeeded, results } => {
                write!(f, "rev {rev} {}", if *succeeded { "succeeded" } else { "failed" })?;
                for r in results {
                    match r {
                        OpResult::Get { kvs, .. } => write!(f, " get [{}]", kvs_text(kvs))?,
                        OpResult::Put => write!(f, " put")?,
                        OpResult::Delete { deleted } => write!(f, " deleted {deleted}")?,
                    }
                }
                Ok(())
            }
            Response::Revoked { rev } => write!(f, "rev {rev} revoked"),
            Response::Ok => write!(f, "ok"),
            Response::Error(e) => write!(f, "error {e:?}"),
        }
    }
}
