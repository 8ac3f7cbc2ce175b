//! The client API's error table: etcd's codes and message strings, byte for byte (clients match
//! on them; see etcd's `rpctypes/error.go`). The mapping itself lives beside the error type
//! ([`crate::error::to_status`]) so the peer API uses the same one; its tests are here.

pub use crate::error::to_status;

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;
    use crate::error::Error;

    #[test]
    fn etcd_codes_and_messages() {
        let cases = [
            (Error::EmptyKey, Code::InvalidArgument, "etcdserver: key is not provided"),
            (Error::Compacted, Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
            (Error::FutureRev, Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
            (Error::LeaseNotFound, Code::NotFound, "etcdserver: requested lease not found"),
            (Error::TooManyOps, Code::InvalidArgument, "etcdserver: too many operations in txn request"),
            (Error::TxnTooDeep, Code::InvalidArgument, "etcdserver: txn request nested too deeply"),
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
