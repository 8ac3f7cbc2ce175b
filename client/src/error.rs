//! One error type for the whole SDK, classified by what the caller can do about it.

/// Everything an SDK call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error or could not be reached (gRPC status, transport).
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// The session's lease expired or its keep-alives failed for longer than its TTL; every lock,
    /// election or claim held through it must be considered lost.
    #[error("session expired")]
    SessionExpired,
    /// `try_lock` found the lock held by someone else.
    #[error("lock is held by another session")]
    Locked,
    /// A guarded write was refused: the lock (or claim) was lost since it was acquired, its
    /// fencing token no longer matches.
    #[error("lock lost: fencing token {token} no longer holds")]
    LockLost { token: i64 },
    /// Proclaim or resign by a campaigner that is not (or no longer) the leader.
    #[error("not the election leader")]
    NotLeader,
    /// No campaigner holds the election.
    #[error("election has no leader")]
    NoLeader,
    /// An optimistic transaction kept conflicting and gave up after this many attempts.
    #[error("too many conflicts ({attempts} attempts)")]
    Conflict { attempts: u32 },
    /// A named object (table, config version, buffer, claim) does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A named object already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The request is malformed: bad name, bad value, or an operation the object refuses
    /// (e.g. dropping a non-empty table without cascade).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// `max_tables` would be exceeded.
    #[error("table limit of {0} reached")]
    TableLimit(u32),
    /// A claim on a buffer was lost (its lease expired or it was released) before the commit.
    #[error("claim lost on {0}")]
    ClaimLost(String),
    /// A stored record could not be decoded (written by something else, or corrupted).
    #[error("corrupt record at {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A process exit code for command-line tools, stable for scripts: 1 generic / server error,
    /// 2 usage, 3 not found, 4 already exists, 5 conflict / lock held / lost, 6 session expired.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Etcd(_) | Error::Corrupt { .. } => 1,
            Error::InvalidArgument(_) | Error::TableLimit(_) => 2,
            Error::NotFound(_) | Error::NoLeader => 3,
            Error::AlreadyExists(_) => 4,
            Error::Locked
            | Error::LockLost { .. }
            | Error::NotLeader
            | Error::Conflict { .. }
            | Error::ClaimLost(_) => 5,
            Error::SessionExpired => 6,
        }
    }
}

pub(crate) fn corrupt(key: &[u8], reason: impl std::fmt::Display) -> Error {
    Error::Corrupt { key: String::from_utf8_lossy(key).into_owned(), reason: reason.to_string() }
}
