//! The one place that speaks `etcd-client`: a [`Request`] becomes the RPC a real client would
//! send (plain puts and deletes use the Put and DeleteRange RPCs, the rest Txn), and the answer
//! becomes a [`Response`]. Errors are split into definite etcd errors (nothing changed) and
//! unknown outcomes.

use etcd_client::{Client, Compare as EtcdCompare, CompareOp, Txn, TxnOp as EtcdTxnOp, TxnOpResponse};

use crate::history::*;
use crate::traffic::{get_options, grant_options, put_options};

pub enum Outcome {
    Definite(EtcdError),
    Unknown(String),
}

fn classify(e: etcd_client::Error) -> Outcome {
    let text = e.to_string();
    let definite = [
        ("requested lease not found", EtcdError::LeaseNotFound),
        ("lease already exists", EtcdError::LeaseExists),
        ("required revision has been compacted", EtcdError::Compacted),
        ("required revision is a future revision", EtcdError::FutureRev),
    ];
    match definite.iter().find(|(m, _)| text.contains(m)) {
        Some((_, d)) => Outcome::Definite(*d),
        None => Outcome::Unknown(text),
    }
}

fn kv(k: &etcd_client::KeyValue) -> (String, Kv) {
    let kv = Kv {
        value: String::from_utf8_lossy(k.value()).into_owned(),
        create: k.create_revision(),
        modified: k.mod_revision(),
        version: k.version(),
        lease: k.lease(),
    };
    (String::from_utf8_lossy(k.key()).into_owned(), kv)
}

fn rev(h: Option<&etcd_client::ResponseHeader>) -> i64 {
    h.map_or(0, |h| h.revision())
}

pub async fn execute(c: &mut Client, req: &Request) -> Result<Response, Outcome> {
    match req {
        Request::Range { range, serializable } => {
            let r = c.get(range.key.as_str(), Some(get_options(range, *serializable))).await.map_err(classify)?;
            Ok(Response::Range { rev: rev(r.header()), kvs: r.kvs().iter().map(kv).collect(), count: r.count() })
        }
        Request::Txn { compares, success, failure }
            if compares.is_empty() && failure.is_empty() && success.len() == 1 =>
        {
            match &success[0] {
                TxnOp::Put { key, value, lease } => {
                    let r = c.put(key.as_str(), value.as_str(), put_options(*lease)).await.map_err(classify)?;
                    Ok(Response::Txn { rev: rev(r.header()), succeeded: true, results: vec![OpResult::Put] })
                }
                TxnOp::Delete { key } => {
                    let r = c.delete(key.as_str(), None).await.map_err(classify)?;
                    let results = vec![OpResult::Delete { deleted: r.deleted() }];
                    Ok(Response::Txn { rev: rev(r.header()), succeeded: true, results })
                }
                TxnOp::Get(_) => txn(c, compares, success, failure).await,
            }
        }
        Request::Txn { compares, success, failure } => txn(c, compares, success, failure).await,
        Request::LeaseGrant { id, ttl } => {
            c.lease_grant(*ttl, grant_options(*id)).await.map_err(classify)?;
            Ok(Response::Ok)
        }
        Request::LeaseRevoke { id } => {
            let r = c.lease_revoke(*id).await.map_err(classify)?;
            Ok(Response::Revoked { rev: rev(r.header()) })
        }
        Request::Compact { rev } => {
            c.compact(*rev, None).await.map_err(classify)?;
            Ok(Response::Ok)
        }
    }
}

async fn txn(c: &mut Client, compares: &[Compare], success: &[TxnOp], failure: &[TxnOp]) -> Result<Response, Outcome> {
    let cmps: Vec<EtcdCompare> = compares
        .iter()
        .map(|c| match c {
            Compare::ModRevision(k, r) => EtcdCompare::mod_revision(k.as_str(), CompareOp::Equal, *r),
            Compare::Value(k, v) => EtcdCompare::value(k.as_str(), CompareOp::Equal, v.as_str()),
        })
        .collect();
    let ops = |v: &[TxnOp]| -> Vec<EtcdTxnOp> {
        v.iter()
            .map(|op| match op {
                TxnOp::Get(r) => EtcdTxnOp::get(r.key.as_str(), Some(get_options(r, false))),
                TxnOp::Put { key, value, lease } => EtcdTxnOp::put(key.as_str(), value.as_str(), put_options(*lease)),
                TxnOp::Delete { key } => EtcdTxnOp::delete(key.as_str(), None),
            })
            .collect()
    };
    let t = Txn::new().when(cmps).and_then(ops(success)).or_else(ops(failure));
    let r = c.txn(t).await.map_err(classify)?;
    let results = r
        .op_responses()
        .iter()
        .map(|o| match o {
            TxnOpResponse::Get(g) => OpResult::Get { kvs: g.kvs().iter().map(kv).collect(), count: g.count() },
            TxnOpResponse::Put(_) => OpResult::Put,
            TxnOpResponse::Delete(d) => OpResult::Delete { deleted: d.deleted() },
            TxnOpResponse::Txn(_) => OpResult::Put, // the traffic sends no nested txns
        })
        .collect();
    Ok(Response::Txn { rev: rev(r.header()), succeeded: r.succeeded(), results })
}

pub fn watch_response(time: u64, m: &etcd_client::WatchResponse) -> WatchResponse {
    let events = m
        .events()
        .iter()
        .filter_map(|e| {
            let (key, k) = kv(e.kv()?);
            let delete = matches!(e.event_type(), etcd_client::EventType::Delete);
            Some(Event { rev: k.modified, delete, key, kv: k, prev: e.prev_kv().map(|p| kv(p).1) })
        })
        .collect::<Vec<_>>();
    WatchResponse {
        time,
        header_rev: rev(m.header()),
        progress: events.is_empty() && !m.created() && !m.canceled(),
        events,
        canceled: m.canceled(),
        compact_rev: m.compact_revision(),
    }
}
