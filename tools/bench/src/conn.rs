//! gRPC connections: `--conns` independent channels, connection i to endpoint i % N (as etcd's
//! tool spreads them), or all to the leader with `--target-leader`. Each [`Client`] is one
//! HTTP/2 connection that many concurrent requests share.
//!
//! Also the readiness probe used to time a restart: a fresh connection per attempt (so no
//! reconnect backoff inflates the figure) and a linearizable read, which only succeeds once
//! the member has a leader and has caught up with its log.

use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};

fn options() -> ConnectOptions {
    ConnectOptions::new().with_connect_timeout(Duration::from_secs(5))
}

pub async fn connect_one(endpoint: &str) -> Result<Client, String> {
    Client::connect([endpoint], Some(options())).await.map_err(|e| format!("connect {endpoint}: {e}"))
}

/// `conns` clients over `endpoints` (or over the leader only).
pub async fn connect(endpoints: &[String], conns: usize, target_leader: bool) -> Result<Vec<Client>, String> {
    let endpoints = if target_leader { vec![find_leader(endpoints).await?] } else { endpoints.to_vec() };
    let mut clients = Vec::with_capacity(conns);
    for i in 0..conns {
        clients.push(connect_one(&endpoints[i % endpoints.len()]).await?);
    }
    Ok(clients)
}

/// The endpoint whose member reports itself as leader.
pub async fn find_leader(endpoints: &[String]) -> Result<String, String> {
    let mut seen = Vec::new();
    for ep in endpoints {
        let mut c = connect_one(ep).await?;
        match tokio::time::timeout(Duration::from_secs(5), c.status()).await {
            Ok(Ok(s)) => {
                let me = s.header().map(|h| h.member_id()).unwrap_or(0);
                if me != 0 && s.leader() == me {
                    return Ok(ep.clone());
                }
                seen.push(format!("{ep}: member {me:x}, leader {:x}", s.leader()));
            }
            Ok(Err(e)) => seen.push(format!("{ep}: {e}")),
            Err(_) => seen.push(format!("{ep}: status timed out")),
        }
    }
    Err(format!("no endpoint is the leader ({})", seen.join("; ")))
}

/// Polls every endpoint until each answers a linearizable Range; returns the time it took.
pub async fn wait_ready(endpoints: &[String], wait: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    for ep in endpoints {
        let mut last = String::from("no attempt");
        loop {
            if start.elapsed() > wait {
                return Err(format!("{ep} not ready after {wait:?}: {last}"));
            }
            let attempt = async {
                let mut c = connect_one(ep).await?;
                c.get("metastore-bench/ready-probe", None).await.map_err(|e| e.to_string())
            };
            match tokio::time::timeout(Duration::from_secs(2), attempt).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => last = e,
                Err(_) => last = "probe timed out".into(),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(start.elapsed())
}
