//! A watch stream whose client closed its sending side keeps delivering events while the client
//! reads, as etcd does (the JSON gateway relies on it: `curl -d` sends one request, then EOF).

mod common;

use std::time::Duration;

use common::Member;
use futures::StreamExt;
use metastore::proto::etcdserverpb::watch_client::WatchClient;
use metastore::proto::etcdserverpb::watch_request::RequestUnion;
use metastore::proto::etcdserverpb::{WatchCreateRequest, WatchRequest};

#[tokio::test(flavor = "multi_thread")]
async fn events_keep_coming_after_the_client_half_closes() {
    let m = Member::start(&[]);
    let mut watch = WatchClient::connect(m.endpoint()).await.unwrap();
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })),
    };
    // A request stream of one message: the client's side ends right after it.
    let mut responses = watch.watch(futures::stream::iter([create])).await.unwrap().into_inner();
    let created = responses.next().await.expect("an answer").unwrap();
    assert!(created.created);
    m.client().await.put("k", "v", None).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), responses.next()).await.expect("an event in time");
    let events = next.expect("the stream stays open").unwrap().events;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kv.as_ref().unwrap().value, b"v");
}
