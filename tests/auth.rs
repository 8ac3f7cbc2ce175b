//! Auth through the `etcd-client` crate and raw gRPC: users with partial permissions, refused
//! calls with etcd's codes and messages, simple tokens that expire, JWTs that carry the auth
//! revision they were issued at.

mod common;

use std::time::{Duration, Instant};

use common::Member;
use etcd_client::{Client, ConnectOptions, Permission, TxnOp};
use metastore::proto::etcdserverpb::kv_client::KvClient;
use metastore::proto::etcdserverpb::RangeRequest;
use tonic::Code;

/// Root (role root) and alice, who may read and write keys under `app/` only.
async fn set_up_users(m: &Member) -> Client {
    let mut c = m.client().await;
    c.user_add("root", "rootpw", None).await.unwrap();
    c.role_add("root").await.unwrap();
    c.user_grant_role("root", "root").await.unwrap();
    c.user_add("alice", "alicepw", None).await.unwrap();
    c.role_add("app").await.unwrap();
    c.role_grant_permission("app", Permission::read_write("app/").with_prefix()).await.unwrap();
    c.user_grant_role("alice", "app").await.unwrap();
    c.put("secret", "s", None).await.unwrap();
    c.auth_enable().await.unwrap();
    c
}

async fn connect_as(m: &Member, user: &str, password: &str) -> Result<Client, etcd_client::Error> {
    Client::connect([m.endpoint()], Some(ConnectOptions::new().with_user(user, password))).await
}

/// The gRPC status of a failed call.
fn status(e: etcd_client::Error) -> (Code, String) {
    match e {
        etcd_client::Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("expected a gRPC status, got {other}"),
    }
}

const DENIED: (Code, &str) = (Code::PermissionDenied, "etcdserver: permission denied");

#[tokio::test(flavor = "multi_thread")]
async fn users_get_exactly_their_permissions() {
    let m = Member::start(&[]);
    let mut anonymous = set_up_users(&m).await;
    let e = anonymous.get("app/x", None).await.unwrap_err();
    assert_eq!(status(e), (Code::InvalidArgument, "etcdserver: user name is empty".into()));

    let e = connect_as(&m, "alice", "wrong").await.err().expect("a wrong password is refused");
    let (code, msg) = status(e);
    assert_eq!(
        (code, msg.as_str()),
        (Code::InvalidArgument, "etcdserver: authentication failed, invalid user ID or password")
    );

    let mut alice = connect_as(&m, "alice", "alicepw").await.unwrap();
    alice.put("app/x", "1", None).await.unwrap();
    assert_eq!(alice.get("app/x", None).await.unwrap().kvs()[0].value(), b"1");
    let refused = |e| {
        let (code, msg) = status(e);
        assert_eq!((code, msg.as_str()), DENIED);
    };
    refused(alice.put("secret", "x", None).await.unwrap_err());
    refused(alice.get("secret", None).await.unwrap_err());
    refused(alice.get("app/", Some(etcd_client::GetOptions::new().with_from_key())).await.unwrap_err());
    refused(alice.delete("secret", None).await.unwrap_err());
    let txn = etcd_client::Txn::new()
        .when([etcd_client::Compare::value("secret", etcd_client::CompareOp::Equal, "s")])
        .and_then([TxnOp::put("app/y", "2", None)]);
    refused(alice.txn(txn).await.unwrap_err());
    refused(alice.user_list().await.unwrap_err());
    refused(alice.member_add(["http://127.0.0.1:1"], None).await.unwrap_err());

    // A refused watch is answered created and canceled at once, with etcd's reason.
    let mut stream = alice.watch("secret", None).await.unwrap();
    let resp = stream.message().await.unwrap().expect("an answer");
    assert!(resp.created() && resp.canceled());
    assert_eq!(resp.watch_id(), -1);
    assert_eq!(resp.cancel_reason(), "rpc error: code = PermissionDenied desc = etcdserver: permission denied");

    // Revoking the grant takes effect on alice's very next request.
    let mut root = connect_as(&m, "root", "rootpw").await.unwrap();
    let users = root.user_list().await.unwrap().users().to_vec();
    assert_eq!(users, ["alice", "root"]);
    root.role_revoke_permission("app", "app/", Some(etcd_client::RoleRevokePermissionOptions::new().with_prefix()))
        .await
        .unwrap();
    refused(alice.get("app/x", None).await.unwrap_err());
}

/// A raw range with `token` in the metadata: Ok or the refusal.
async fn get_with_token(m: &Member, token: &str) -> Result<(), (Code, String)> {
    let mut kv = KvClient::connect(m.endpoint()).await.expect("connect");
    let mut req = tonic::Request::new(RangeRequest { key: b"app/x".to_vec(), ..Default::default() });
    req.metadata_mut().insert("token", token.parse().unwrap());
    kv.range(req).await.map(|_| ()).map_err(|s| (s.code(), s.message().to_string()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_simple_token_expires_unless_used_and_the_client_refreshes_it() {
    let m = Member::start(&["--auth-token-ttl", "1"]);
    let c = set_up_users(&m).await;
    let token = c.auth_client().authenticate("alice".into(), "alicepw".into()).await.unwrap().token().to_string();
    let (prefix, index) = token.split_once('.').expect("simple token: letters.index");
    assert!(prefix.len() == 16 && prefix.chars().all(|ch| ch.is_ascii_alphabetic()), "{token}");
    assert!(index.parse::<u64>().is_ok(), "{token}");

    // Used every 300 ms, the token outlives its 1 s TTL...
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2000) {
        get_with_token(&m, &token).await.expect("a token in use stays valid");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // ...and once left alone longer than that, it is dropped (any use would renew it, so this
    // waits out the TTL instead of polling).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let refusal = get_with_token(&m, &token).await.expect_err("an idle token expires");
    assert_eq!(refusal, (Code::Unauthenticated, "etcdserver: invalid auth token".into()));

    // etcd-client with token refresh authenticates again when its token has expired.
    let opts = ConnectOptions::new().with_user("alice", "alicepw").with_auto_token_refresh(true);
    let mut alice = Client::connect([m.endpoint()], Some(opts)).await.unwrap();
    alice.put("app/x", "1", None).await.unwrap();
    // Idle past the TTL: the client's token is gone (as the raw token above showed).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    if let Err(e) = alice.put("app/x", "2", None).await {
        panic!("not refreshed after expiry: {e}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwt_carries_the_auth_revision_it_was_issued_at() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let (private, public) = (dir.path().join("jwt.key"), dir.path().join("jwt.pub"));
    std::fs::write(&private, key.serialize_pem()).unwrap();
    std::fs::write(&public, key.public_key_pem()).unwrap();
    let flag = format!("jwt,pub-key={},priv-key={},sign-method=ES256,ttl=5m", public.display(), private.display());
    let m = Member::start(&["--auth-token", &flag]);
    let mut c = set_up_users(&m).await;
    let token = c.auth_client().authenticate("alice".into(), "alicepw".into()).await.unwrap().token().to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    get_with_token(&m, &token).await.expect("a fresh JWT is valid");
    let mut root = connect_as(&m, "root", "rootpw").await.unwrap();
    root.role_add("other").await.unwrap();
    let refusal = get_with_token(&m, &token).await.unwrap_err();
    assert_eq!(refusal, (Code::InvalidArgument, "etcdserver: revision of auth store is old".into()));
    assert_eq!(get_with_token(&m, "not.a.jwt").await.unwrap_err().0, Code::Unauthenticated);
    c.user_list().await.expect_err("the anonymous client is refused");
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_state_is_replicated_and_survives_a_restart() {
    let mut cluster = common::Cluster::start(3);
    let first = &cluster.members[0];
    set_up_users(first).await;
    for m in &cluster.members {
        let mut alice = connect_as(m, "alice", "alicepw").await.unwrap();
        alice.put("app/k", m.name.as_str(), None).await.unwrap();
        let e = alice.get("secret", None).await.unwrap_err();
        assert_eq!(status(e).0, Code::PermissionDenied);
    }
    let member = &mut cluster.members[1];
    member.kill();
    member.spawn();
    member.wait_ready();
    let mut alice = connect_as(member, "alice", "alicepw").await.unwrap();
    alice.get("app/k", None).await.unwrap();
    assert_eq!(status(alice.get("secret", None).await.unwrap_err()).0, Code::PermissionDenied);
}
