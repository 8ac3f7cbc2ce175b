//! The one place MetaStore errors become gRPC statuses: etcd's codes and message strings, byte
//! for byte (clients match on them; see etcd's `rpctypes/error.go`).

use tonic::{Code, Status};

use crate::error::Error;

pub fn to_status(e: Error) -> Status {
    let code = match &e {
        Error::EmptyKey
        | Error::KeyNotFound
        | Error::ValueProvided
        | Error::LeaseProvided
        | Error::TooManyOps
        | Error::DuplicateKey
        | Error::RequestTooLarge
        | Error::MemberBadUrls
        | Error::InvalidArgument(_) => Code::InvalidArgument,
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
        Error::NoLeader | Error::LeaderChanged | Error::Timeout | Error::Stopped => Code::Unavailable,
        Error::Storage(_) | Error::Internal(_) => Code::Internal,
    };
    if code == Code::Internal {
        tracing::error!(error = %e, "internal error answering a request");
    }
    Status::new(code, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_codes_and_messages() {
        let cases = [
            (Error::EmptyKey, Code::InvalidArgument, "etcdserver: key is not provided"),
            (Error::Compacted, Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
            (Error::FutureRev, Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
            (Error::LeaseNotFound, Code::NotFound, "etcdserver: requested lease not found"),
            (Error::TooManyOps, Code::InvalidArgument, "etcdserver: too many operations in txn request"),
            (Error::DuplicateKey, Code::InvalidArgument, "etcdserver: duplicate key given in txn request"),
            (Error::RequestTooLarge, Code::InvalidArgument, "etcdserver: request is too large"),
            (Error::LeaderChanged, Code::Unavailable, "etcdserver: leader changed"),
            (Error::Timeout, Code::Unavailable, "etcdserver: request timed out"),
            (Error::NoLeader, Code::Unavailable, "etcdserver: no leader"),
            (Error::TooManyRequests, Code::ResourceExhausted, "etcdserver: too many requests"),
        ];
        for (err, code, msg) in cases {
            let s = to_status(err);
            assert_eq!((s.code(), s.message()), (code, msg));
        }
    }
}
