//! Every KV call and option through the `etcd-client` crate against the real binary.

mod common;

use common::Member;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp, TxnOpResponse,
};
use tonic::Code;

fn code(e: etcd_client::Error) -> (Code, String) {
    match e {
        etcd_client::Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

fn keys(resp: &etcd_client::GetResponse) -> Vec<String> {
    resp.kvs().iter().map(|kv| kv.key_str().unwrap().to_string()).collect()
}

async fn member() -> (Member, Client) {
    let m = Member::start(&["--storage-engine", "memory"]);
    let c = m.client().await;
    (m, c)
}

#[tokio::test]
async fn put_get_revisions_and_header() {
    let (_m, mut c) = member().await;
    let r = c.put("foo", "bar", None).await.unwrap();
    let h = r.header().unwrap();
    assert_eq!(h.revision(), 2);
    assert_ne!(h.cluster_id(), 0);
    assert_ne!(h.member_id(), 0);
    assert!(h.raft_term() >= 1);
    c.put("foo", "baz", None).await.unwrap();
    let g = c.get("foo", None).await.unwrap();
    let kv = &g.kvs()[0];
    assert_eq!((kv.value(), kv.create_revision(), kv.mod_revision(), kv.version()), (&b"baz"[..], 2, 3, 2));
    assert_eq!(g.header().unwrap().revision(), 3);
    assert_eq!(g.count(), 1);
    let old = c.get("foo", Some(GetOptions::new().with_revision(2))).await.unwrap();
    assert_eq!(old.kvs()[0].value(), b"bar");
    let missing = c.get("nope", None).await.unwrap();
    assert!(missing.kvs().is_empty());
    assert_eq!(missing.count(), 0);
}

#[tokio::test]
async fn put_options_and_errors() {
    let (_m, mut c) = member().await;
    c.put("k", "v1", None).await.unwrap();
    let r = c.put("k", "v2", Some(PutOptions::new().with_prev_key())).await.unwrap();
    assert_eq!(r.prev_key().unwrap().value(), b"v1");
    c.put("k", "", Some(PutOptions::new().with_ignore_value())).await.unwrap();
    let g = c.get("k", None).await.unwrap();
    assert_eq!((g.kvs()[0].value(), g.kvs()[0].version()), (&b"v2"[..], 3));
    c.put("k", "v3", Some(PutOptions::new().with_ignore_lease())).await.unwrap();
    let e = c.put("missing", "", Some(PutOptions::new().with_ignore_value())).await.unwrap_err();
    assert_eq!(code(e), (Code::InvalidArgument, "etcdserver: key not found".into()));
    let e = c.put("k", "x", Some(PutOptions::new().with_ignore_value())).await.unwrap_err();
    assert_eq!(code(e), (Code::InvalidArgument, "etcdserver: value is provided".into()));
    let e = c.put("k", "x", Some(PutOptions::new().with_lease(5).with_ignore_lease())).await.unwrap_err();
    assert_eq!(code(e), (Code::InvalidArgument, "etcdserver: lease is provided".into()));
    let e = c.put("k", "x", Some(PutOptions::new().with_lease(12345))).await.unwrap_err();
    assert_eq!(code(e), (Code::NotFound, "etcdserver: requested lease not found".into()));
    let e = c.put("", "x", None).await.unwrap_err();
    assert_eq!(code(e), (Code::InvalidArgument, "etcdserver: key is not provided".into()));
    let g = c.get("k", None).await.unwrap();
    assert_eq!(g.header().unwrap().revision(), 5, "failed requests change nothing");
}

#[tokio::test]
async fn range_options() {
    let (_m, mut c) = member().await;
    for (k, v) in [("a/3", "x"), ("a/1", "z"), ("a/2", "y"), ("b", "w")] {
        c.put(k, v, None).await.unwrap(); // revisions 2..=5
    }
    c.put("a/1", "zz", None).await.unwrap(); // 6: a/1 version 2
    let p = c.get("a/", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(keys(&p), ["a/1", "a/2", "a/3"]);
    let lim = c.get("a/", Some(GetOptions::new().with_prefix().with_limit(2))).await.unwrap();
    assert_eq!((keys(&lim), lim.more(), lim.count()), (vec!["a/1".to_string(), "a/2".into()], true, 3));
    let lim3 = c.get("a/", Some(GetOptions::new().with_prefix().with_limit(3))).await.unwrap();
    assert!(!lim3.more());
    let from = c.get("a/2", Some(GetOptions::new().with_from_key())).await.unwrap();
    assert_eq!(keys(&from), ["a/2", "a/3", "b"]);
    let all = c.get("", Some(GetOptions::new().with_all_keys())).await.unwrap();
    assert_eq!(all.count(), 4);
    let between = c.get("a/2", Some(GetOptions::new().with_range("b"))).await.unwrap();
    assert_eq!(keys(&between), ["a/2", "a/3"]);
    let sorted = |t, o| GetOptions::new().with_prefix().with_sort(t, o);
    let by_mod = c.get("a/", Some(sorted(SortTarget::Mod, SortOrder::Descend))).await.unwrap();
    assert_eq!(keys(&by_mod), ["a/1", "a/2", "a/3"]);
    let by_create = c.get("a/", Some(sorted(SortTarget::Create, SortOrder::Ascend))).await.unwrap();
    assert_eq!(keys(&by_create), ["a/3", "a/1", "a/2"]);
    let by_value = c.get("a/", Some(sorted(SortTarget::Value, SortOrder::Descend))).await.unwrap();
    assert_eq!(keys(&by_value), ["a/1", "a/2", "a/3"]);
    let by_version = c.get("a/", Some(sorted(SortTarget::Version, SortOrder::Descend))).await.unwrap();
    assert_eq!(keys(&by_version)[0], "a/1");
    let by_key = c.get("a/", Some(sorted(SortTarget::Key, SortOrder::Descend).with_limit(1))).await.unwrap();
    assert_eq!((keys(&by_key), by_key.more()), (vec!["a/3".to_string()], true));
    let ko = c.get("a/", Some(GetOptions::new().with_prefix().with_keys_only())).await.unwrap();
    assert!(ko.kvs().iter().all(|kv| kv.value().is_empty()));
    let co = c.get("a/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap();
    assert_eq!((co.kvs().len(), co.count()), (0, 3));
    let ser = c.get("b", Some(GetOptions::new().with_serializable())).await.unwrap();
    assert_eq!(ser.kvs()[0].value(), b"w");
    let minmod = c.get("a/", Some(GetOptions::new().with_prefix().with_min_mod_revision(4))).await.unwrap();
    assert_eq!(keys(&minmod), ["a/1", "a/2"]);
    let maxmod = c.get("a/", Some(GetOptions::new().with_prefix().with_max_mod_revision(3))).await.unwrap();
    assert_eq!(keys(&maxmod), ["a/3"]);
    let mincr = c.get("a/", Some(GetOptions::new().with_prefix().with_min_create_revision(3))).await.unwrap();
    assert_eq!(keys(&mincr), ["a/1", "a/2"]);
    let maxcr = c.get("a/", Some(GetOptions::new().with_prefix().with_max_create_revision(3))).await.unwrap();
    assert_eq!((keys(&maxcr), maxcr.count()), (vec!["a/1".to_string(), "a/3".into()], 3));
    let at = c.get("a/", Some(GetOptions::new().with_prefix().with_revision(3))).await.unwrap();
    assert_eq!((keys(&at), at.header().unwrap().revision()), (vec!["a/1".to_string(), "a/3".into()], 6));
    let e = c.get("a", Some(GetOptions::new().with_revision(100))).await.unwrap_err();
    assert_eq!(code(e), (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision".into()));
}

#[tokio::test]
async fn delete_range_options() {
    let (_m, mut c) = member().await;
    for k in ["d/1", "d/2", "d/3", "e"] {
        c.put(k, "v", None).await.unwrap();
    }
    let r = c.delete("d/1", None).await.unwrap();
    assert_eq!((r.deleted(), r.header().unwrap().revision()), (1, 6));
    let r = c.delete("d/1", None).await.unwrap();
    assert_eq!((r.deleted(), r.header().unwrap().revision()), (0, 6), "no change, no new revision");
    let r = c.delete("d/", Some(DeleteOptions::new().with_prefix().with_prev_key())).await.unwrap();
    assert_eq!(r.deleted(), 2);
    assert_eq!(r.prev_kvs().iter().map(|kv| kv.key_str().unwrap()).collect::<Vec<_>>(), ["d/2", "d/3"]);
    assert_eq!(r.header().unwrap().revision(), 7, "one delete request is one revision");
    let r = c.delete("a", Some(DeleteOptions::new().with_from_key())).await.unwrap();
    assert_eq!(r.deleted(), 1);
    assert_eq!(c.get("", Some(GetOptions::new().with_all_keys())).await.unwrap().count(), 0);
    let old = c.get("d/2", Some(GetOptions::new().with_revision(6))).await.unwrap();
    assert_eq!(old.kvs().len(), 1, "history survives deletes");
}

#[tokio::test]
async fn txn_compares_branches_and_nesting() {
    let (_m, mut c) = member().await;
    c.put("t", "1", None).await.unwrap(); // 2
    let txn = Txn::new()
        .when([Compare::value("t", CompareOp::Equal, "1"), Compare::version("t", CompareOp::Equal, 1)])
        .and_then([TxnOp::put("t", "2", None), TxnOp::put("u", "x", None), TxnOp::get("t", None)])
        .or_else([TxnOp::put("t", "fail", None)]);
    let r = c.txn(txn).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(r.header().unwrap().revision(), 3, "the whole txn is one revision");
    match &r.op_responses()[2] {
        TxnOpResponse::Get(g) => assert_eq!((g.kvs()[0].value(), g.kvs()[0].mod_revision()), (&b"2"[..], 3)),
        other => panic!("unexpected {other:?}"),
    }
    let txn = Txn::new()
        .when([Compare::create_revision("t", CompareOp::Greater, 5)])
        .and_then([TxnOp::put("t", "no", None)])
        .or_else([TxnOp::txn(
            Txn::new().when([Compare::mod_revision("u", CompareOp::Less, 4)]).and_then([TxnOp::delete("u", None)]),
        )]);
    let r = c.txn(txn).await.unwrap();
    assert!(!r.succeeded());
    assert_eq!(r.header().unwrap().revision(), 4);
    assert!(c.get("u", None).await.unwrap().kvs().is_empty());
    let ro = c
        .txn(Txn::new().when([Compare::lease("t", CompareOp::Equal, 0)]).and_then([TxnOp::get("t", None)]))
        .await
        .unwrap();
    assert!(ro.succeeded());
    assert_eq!(ro.header().unwrap().revision(), 4, "read-only txns take no revision");
    let range_cmp = Txn::new().when([Compare::version("", CompareOp::Greater, 0).with_prefix()]);
    assert!(c.txn(range_cmp).await.is_err(), "empty compare key is refused");
    let missing = Txn::new().when([Compare::value("zz", CompareOp::NotEqual, "a")]);
    assert!(!c.txn(missing).await.unwrap().succeeded(), "value compares on missing keys fail");
    let dup = Txn::new().and_then([TxnOp::put("a", "1", None), TxnOp::put("a", "2", None)]);
    assert_eq!(code(c.txn(dup).await.unwrap_err()).1, "etcdserver: duplicate key given in txn request");
    let many: Vec<TxnOp> = (0..129).map(|i| TxnOp::put(format!("k{i}"), "v", None)).collect();
    assert_eq!(
        code(c.txn(Txn::new().and_then(many)).await.unwrap_err()).1,
        "etcdserver: too many operations in txn request"
    );
    let bad_lease = Txn::new().and_then([TxnOp::put("x", "1", Some(PutOptions::new().with_lease(99)))]);
    assert_eq!(code(c.txn(bad_lease).await.unwrap_err()).0, Code::NotFound);
    assert_eq!(c.get("t", None).await.unwrap().header().unwrap().revision(), 4);
}

#[tokio::test]
async fn compaction_semantics() {
    let (_m, mut c) = member().await;
    for v in ["1", "2", "3", "4"] {
        c.put("c", v, None).await.unwrap(); // 2..=5
    }
    let e = c.compact(10, None).await.unwrap_err();
    assert_eq!(code(e), (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision".into()));
    let r = c.compact(3, Some(CompactionOptions::new().with_physical())).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), 5);
    let e = c.get("c", Some(GetOptions::new().with_revision(2))).await.unwrap_err();
    assert_eq!(code(e), (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted".into()));
    let at3 = c.get("c", Some(GetOptions::new().with_revision(3))).await.unwrap();
    assert_eq!(at3.kvs()[0].value(), b"2");
    let e = c.compact(3, None).await.unwrap_err();
    assert_eq!(code(e).1, "etcdserver: mvcc: required revision has been compacted");
    c.compact(5, None).await.unwrap();
    let now = c.get("c", None).await.unwrap();
    assert_eq!((now.kvs()[0].value(), now.kvs()[0].version()), (&b"4"[..], 4));
}

#[tokio::test]
async fn request_size_limit() {
    let m = Member::start(&["--storage-engine", "memory", "--max-request-bytes", "1024"]);
    let mut c = m.client().await;
    let e = c.put("big", vec![b'x'; 2048], None).await.unwrap_err();
    assert_eq!(code(e), (Code::InvalidArgument, "etcdserver: request is too large".into()));
    c.put("small", vec![b'x'; 100], None).await.unwrap();
}

#[tokio::test]
async fn status_and_member_list() {
    let (_m, mut c) = member().await;
    c.put("s", "v", None).await.unwrap();
    let st = c.status().await.unwrap();
    assert_eq!(st.version(), "3.4.23");
    assert_eq!(st.leader(), st.header().unwrap().member_id());
    assert!(st.raft_index() >= 2 && st.raft_term() >= 1);
    let members = c.member_list().await.unwrap();
    assert_eq!(members.members().len(), 1);
    assert_eq!(members.members()[0].name(), "n1");
}

/// A txn whose later op fails against the state its earlier ops produce (delete everything, then
/// put with `ignore_value`) must change nothing and answer the error; the member stays up.
/// (etcd 3.4.23 panics on this txn; MetaStore refuses it.)
#[tokio::test]
async fn txn_delete_all_then_put_ignore_value_changes_nothing() {
    let (_m, mut c) = member().await;
    c.put("a", "1", None).await.unwrap();
    c.put("b", "2", None).await.unwrap();
    let before = c.get("", Some(GetOptions::new().with_from_key())).await.unwrap();
    let txn = Txn::new().and_then(vec![
        TxnOp::delete("a", Some(DeleteOptions::new().with_from_key())),
        TxnOp::put("b", "", Some(PutOptions::new().with_ignore_value())),
    ]);
    let err = c.txn(txn).await.unwrap_err();
    assert_eq!(code(err), (Code::InvalidArgument, "etcdserver: key not found".to_string()));
    let after = c.get("", Some(GetOptions::new().with_from_key())).await.unwrap();
    assert_eq!(keys(&after), keys(&before));
    assert_eq!(after.header().unwrap().revision(), before.header().unwrap().revision());
    // Keys outside the txn's own from-key delete still exist for a later ignore_value put.
    c.put("c", "3", None).await.unwrap();
    let txn = Txn::new().and_then(vec![
        TxnOp::delete("c", Some(DeleteOptions::new().with_from_key())),
        TxnOp::put("b", "", Some(PutOptions::new().with_ignore_value())),
    ]);
    c.txn(txn).await.unwrap();
    let all = c.get("", Some(GetOptions::new().with_from_key())).await.unwrap();
    assert_eq!(keys(&all), vec!["a", "b"]);
    assert_eq!((all.kvs()[1].value(), all.kvs()[1].mod_revision()), (&b"2"[..], 5));
}
