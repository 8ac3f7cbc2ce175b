//! etcd's `Txn` compare rules.
//!
//! A compare holds for a range when it holds for every key in it. Over an empty range a `VALUE`
//! compare always fails (a missing value cannot be told from an empty one), while the numeric
//! targets compare against zero — so `version = 0` means "does not exist". A target union of the
//! wrong kind compares against zero or the empty value, as etcd does.

use std::cmp::Ordering;

use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::Compare;
use crate::proto::mvccpb::KeyValue;

/// Whether `c` holds over `kvs`, the live keys of its range.
pub fn compare_holds(c: &Compare, kvs: &[KeyValue]) -> bool {
    if kvs.is_empty() {
        if c.target() == CompareTarget::Value {
            return false;
        }
        return compare_kv(c, &KeyValue::default());
    }
    kvs.iter().all(|kv| compare_kv(c, kv))
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let ord = match c.target() {
        CompareTarget::Value => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
        CompareTarget::Version => kv.version.cmp(&int_target(c)),
        CompareTarget::Create => kv.create_revision.cmp(&int_target(c)),
        CompareTarget::Mod => kv.mod_revision.cmp(&int_target(c)),
        CompareTarget::Lease => kv.lease.cmp(&int_target(c)),
    };
    match c.result() {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::NotEqual => ord != Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
    }
}

/// The compare's numeric operand: the union's value when it matches the target, else zero.
fn int_target(c: &Compare) -> i64 {
    match (&c.target_union, c.target()) {
        (Some(TargetUnion::Version(v)), CompareTarget::Version)
        | (Some(TargetUnion::CreateRevision(v)), CompareTarget::Create)
        | (Some(TargetUnion::ModRevision(v)), CompareTarget::Mod)
        | (Some(TargetUnion::Lease(v)), CompareTarget::Lease) => *v,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(target: CompareTarget, result: CompareResult, tu: Option<TargetUnion>) -> Compare {
        Compare {
            result: result as i32,
            target: target as i32,
            key: b"k".to_vec(),
            target_union: tu,
            range_end: vec![],
        }
    }

    fn kv(value: &[u8], version: i64, create: i64, modr: i64, lease: i64) -> KeyValue {
        KeyValue {
            key: b"k".to_vec(),
            value: value.to_vec(),
            version,
            create_revision: create,
            mod_revision: modr,
            lease,
        }
    }

    #[test]
    fn compare_rules_table() {
        use CompareResult::*;
        use CompareTarget::*;
        let a = kv(b"b", 2, 3, 5, 7);
        let cases = [
            (cmp(Value, Equal, Some(TargetUnion::Value(b"b".to_vec()))), true),
            (cmp(Value, NotEqual, Some(TargetUnion::Value(b"b".to_vec()))), false),
            (cmp(Value, Greater, Some(TargetUnion::Value(b"a".to_vec()))), true),
            (cmp(Value, Less, Some(TargetUnion::Value(b"c".to_vec()))), true),
            (cmp(Value, Greater, None), true),
            (cmp(Version, Equal, Some(TargetUnion::Version(2))), true),
            (cmp(Version, Greater, Some(TargetUnion::Version(2))), false),
            (cmp(Version, Less, Some(TargetUnion::Version(3))), true),
            (cmp(Create, Equal, Some(TargetUnion::CreateRevision(3))), true),
            (cmp(Create, NotEqual, Some(TargetUnion::CreateRevision(3))), false),
            (cmp(Mod, Greater, Some(TargetUnion::ModRevision(4))), true),
            (cmp(Mod, Less, Some(TargetUnion::ModRevision(5))), false),
            (cmp(Lease, Equal, Some(TargetUnion::Lease(7))), true),
            // A union of the wrong kind compares against zero.
            (cmp(Mod, Equal, Some(TargetUnion::Version(5))), false),
            (cmp(Mod, Greater, Some(TargetUnion::Version(5))), true),
        ];
        for (i, (c, want)) in cases.iter().enumerate() {
            assert_eq!(compare_holds(c, std::slice::from_ref(&a)), *want, "case {i}: {c:?}");
        }
    }

    #[test]
    fn missing_keys() {
        use CompareResult::*;
        use CompareTarget::*;
        assert!(!compare_holds(&cmp(Value, Equal, Some(TargetUnion::Value(vec![]))), &[]));
        assert!(!compare_holds(&cmp(Value, NotEqual, Some(TargetUnion::Value(b"x".to_vec()))), &[]));
        assert!(compare_holds(&cmp(Version, Equal, Some(TargetUnion::Version(0))), &[]));
        assert!(compare_holds(&cmp(Create, Equal, Some(TargetUnion::CreateRevision(0))), &[]));
        assert!(!compare_holds(&cmp(Mod, Greater, Some(TargetUnion::ModRevision(0))), &[]));
    }

    #[test]
    fn ranges_need_every_key() {
        let c = cmp(CompareTarget::Version, CompareResult::Greater, Some(TargetUnion::Version(1)));
        assert!(compare_holds(&c, &[kv(b"", 2, 1, 1, 0), kv(b"", 3, 1, 1, 0)]));
        assert!(!compare_holds(&c, &[kv(b"", 2, 1, 1, 0), kv(b"", 1, 1, 1, 0)]));
    }
}
