//! MetaStore's one error type, classified by meaning.
//!
//! Three families, mirroring what a replicated state machine must distinguish:
//!
//! * etcd-visible request errors (`Compacted`, `FutureRev`, `LeaseNotFound`, …): deterministic —
//!   every member applying the same command reaches the same one, so the command is "applied with
//!   an error" and the node carries on;
//! * cluster conditions (`NoLeader`, `LeaderChanged`, `Timeout`, …): transient, the client retries;
//! * internal failures (`Storage`, `Internal`): not deterministic; a node that meets one while
//!   applying must stop rather than diverge.
//!
//! The mapping to gRPC status codes and etcd's exact message strings lives in exactly one place,
//! `api::status`.

/// Result alias used throughout MetaStore.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure MetaStore reports, named after its meaning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    // --- etcd request errors (deterministic) ---
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// MetaStore only (etcd has no such limit): see `server::validate::MAX_TXN_DEPTH`.
    #[error("etcdserver: txn request nested too deeply")]
    TxnTooDeep,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: member ID already exist")]
    MemberExists,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserExists,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleExists,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// etcd sends this one untranslated (gRPC `Unknown`).
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// A member with only a JWT public key cannot issue tokens (etcd: gRPC `Unknown`).
    #[error("auth: token signing attempted with verify-only key")]
    VerifyOnlyToken,
    #[error("election: not leader")]
    ElectionNotLeader,
    #[error("election: no leader")]
    ElectionNoLeader,
    #[error("\"leader\" field must be provided")]
    MissingLeaderKey,
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unimplemented(String),
    /// An error etcd sends untranslated, as gRPC `Unknown` with its internal text (e.g. the auth
    /// store's `auth: permission denied` from the Maintenance service).
    #[error("{0}")]
    Unknown(String),

    // --- cluster conditions (transient) ---
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: server stopped")]
    Stopped,

    // --- internal failures (the node must stop if met while applying) ---
    #[error("storage: {0}")]
    Storage(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// The etcd-visible error with this exact message, if any (errors forwarded between members
    /// travel as their message).
    pub fn from_message(msg: &str) -> Option<Error> {
        [
            Error::LeaseNotFound,
            Error::MemberNotFound,
            Error::MemberNotLearner,
            Error::LearnerNotReady,
            Error::TooManyLearners,
            Error::NotLeader,
            Error::PermissionDenied,
            Error::UserEmpty,
            Error::UserNotFound,
            Error::AuthOldRevision,
            Error::InvalidAuthToken,
            Error::NoLeader,
            Error::LeaderChanged,
            Error::Timeout,
            Error::Stopped,
        ]
        .into_iter()
        .find(|e| e.to_string() == msg)
    }

    /// Whether every member applying the same command meets this same error. Deterministic errors
    /// are answers to the client; any other error during apply means the node must stop.
    pub fn is_deterministic(&self) -> bool {
        !matches!(
            self,
            Error::Storage(_)
                | Error::Internal(_)
                | Error::TooManyRequests
                | Error::NoLeader
                | Error::LeaderChanged
                | Error::Timeout
                | Error::Stopped
        )
    }
}

/// The one mapping of MetaStore errors to gRPC statuses: etcd's codes and message strings, byte
/// for byte (clients match on them; see etcd's `rpctypes/error.go`). Used by the client API and
/// the peer API alike; `api::status` holds its tests.
pub fn to_status(e: Error) -> tonic::Status {
    use tonic::Code;
    let code = match &e {
        Error::EmptyKey
        | Error::KeyNotFound
        | Error::ValueProvided
        | Error::LeaseProvided
        | Error::TooManyOps
        | Error::TxnTooDeep
        | Error::DuplicateKey
        | Error::RequestTooLarge
        | Error::MemberBadUrls
        | Error::UserEmpty
        | Error::RoleEmpty
        | Error::AuthFailed
        | Error::InvalidAuthMgmt
        | Error::AuthOldRevision
        | Error::InvalidArgument(_) => Code::InvalidArgument,
        Error::RootUserNotExist
        | Error::RootRoleNotExist
        | Error::UserExists
        | Error::UserNotFound
        | Error::RoleExists
        | Error::RoleNotFound
        | Error::RoleNotGranted
        | Error::PermissionNotGranted
        | Error::AuthNotEnabled => Code::FailedPrecondition,
        Error::PermissionDenied => Code::PermissionDenied,
        Error::InvalidAuthToken => Code::Unauthenticated,
        Error::NoPasswordUser | Error::VerifyOnlyToken | Error::Unknown(_) => Code::Unknown,
        Error::MemberNotFound => Code::NotFound,
        Error::MemberExists
        | Error::PeerUrlExists
        | Error::MemberNotLearner
        | Error::LearnerNotReady
        | Error::TooManyLearners
        | Error::BadLeaderTransferee
        | Error::NotEnoughStartedMembers
        | Error::NotLeader => Code::FailedPrecondition,
        Error::Compacted | Error::FutureRev | Error::LeaseTtlTooLarge => Code::OutOfRange,
        Error::LeaseNotFound => Code::NotFound,
        Error::LeaseExists => Code::FailedPrecondition,
        Error::NoSpace | Error::TooManyRequests => Code::ResourceExhausted,
        Error::Unimplemented(_) => Code::Unimplemented,
        // etcd's election package errors are plain Go errors: gRPC `Unknown`.
        Error::ElectionNotLeader | Error::ElectionNoLeader | Error::MissingLeaderKey => Code::Unknown,
        Error::Corrupt => Code::DataLoss,
        Error::NoLeader | Error::LeaderChanged | Error::Timeout | Error::Stopped => Code::Unavailable,
        Error::Storage(_) | Error::Internal(_) => Code::Internal,
    };
    if code == Code::Internal {
        tracing::error!(error = %e, "internal error answering a request");
    }
    tonic::Status::new(code, e.to_string())
}
