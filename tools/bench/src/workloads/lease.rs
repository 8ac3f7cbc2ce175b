//! `lease-keepalive`: each client grants one lease and opens one LeaseKeepAlive stream before
//! the clock starts; a request is one keep-alive sent and its response received (etcd's
//! `benchmark lease-keepalive`). Clients whose setup fails are reported by gRPC code and take
//! no part; if none succeeds the run is skipped and the report says why. Leases are revoked at
//! the end.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use etcd_client::{LeaseKeepAliveStream, LeaseKeeper};
use serde_json::json;

use crate::cli::Global;
use crate::conn;
use crate::recorder::{error_code, error_message, Recorder};
use crate::report::Report;
use crate::runner::{self, Worker};

const TTL_SECONDS: i64 = 60;

struct KeepAlive {
    keeper: LeaseKeeper,
    responses: LeaseKeepAliveStream,
}

impl Worker for KeepAlive {
    fn call(&mut self, _seq: u64) -> (usize, impl Future<Output = Result<(), etcd_client::Error>> + Send) {
        (0, async move {
            self.keeper.keep_alive().await?;
            match self.responses.message().await? {
                Some(r) if r.ttl() > 0 => Ok(()),
                Some(_) => Err(etcd_client::Error::LeaseKeepAliveError("lease expired".into())),
                None => Err(etcd_client::Error::LeaseKeepAliveError("keep-alive stream closed".into())),
            }
        })
    }
}

pub async fn run(g: &Global) -> Result<Report, String> {
    let clients = conn::connect(g).await?;
    let setup_rec = Recorder::new(&["setup"]);
    let setup = Instant::now();
    let mut workers = Vec::new();
    let mut leases = Vec::new();
    for i in 0..g.clients {
        let mut lc = clients[i % clients.len()].lease_client();
        let started = async {
            let id = lc.grant(TTL_SECONDS, None).await?.id();
            leases.push((i % clients.len(), id));
            let (keeper, responses) = lc.keep_alive(id).await?;
            Ok::<_, etcd_client::Error>(KeepAlive { keeper, responses })
        };
        match tokio::time::timeout(g.request_timeout, started).await {
            Ok(Ok(w)) => workers.push(w),
            Ok(Err(e)) => setup_rec.err(0, &error_code(&e), &error_message(&e)),
            Err(_) => setup_rec.err(0, "DeadlineExceeded", "lease setup timed out"),
        }
    }
    let cfg = super::config(g, json!({"ttl_s": TTL_SECONDS}));
    let rec = Arc::new(Recorder::new(&["keepalive"]));
    if workers.is_empty() {
        let mut r = Report::from_recorder("lease-keepalive", &setup_rec, setup.elapsed(), cfg);
        r.set("clients_started", 0u64);
        return Ok(super::not_run(r, "no lease could be granted and kept alive", setup));
    }
    let started = workers.len();
    let elapsed = runner::run(&super::opts(g, "lease-keepalive"), &rec, workers).await;
    for (c, id) in leases {
        let _ = tokio::time::timeout(g.request_timeout, clients[c].lease_client().revoke(id)).await;
    }
    let mut r = Report::from_recorder("lease-keepalive", &rec, elapsed, cfg);
    r.set("clients_started", started as u64);
    for (code, entry) in setup_rec.errors() {
        r.errors.insert(format!("setup/{code}"), entry);
    }
    Ok(r)
}
