//! gRPC connections: `--conns` independent channels, connection i to endpoint i % N (as etcd's
//! tool spreads them), or all to the leader with `--target-leader`. Each [`Client`] is one
//! HTTP/2 connection that many concurrent requests share.
//!
//! With `--user` every connection authenticates once when it is made and renews its token by
//! itself when the server answers `invalid auth token` (etcd-client's auto token refresh);
//! Maintenance.Status needs no user, so leader discovery and the term samples connect without.
//!
//! Also the readiness probe used to time a restart: a fresh connection per attempt (so no
//! reconnect backoff inflates the figure) and a linearizable read, which only succeeds once
//! the member has a leader and has caught up with its log.

use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};

use crate::cli::{Global, User};

fn options(user: Option<&User>) -> ConnectOptions {
    let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
    match user {
        Some(u) => options.with_user(u.name.clone(), u.password.clone()).with_auto_token_refresh(true),
        None => options,
    }
}

/// One connection, authenticated as `user` when given.
pub async fn connect_one(endpoint: &str, user: Option<&User>) -> Result<Client, String> {
    Client::connect([endpoint], Some(options(user))).await.map_err(|e| format!("connect {endpoint}: {e}"))
}

/// `--conns` clients over `--endpoints` (or over the leader only), as `--user` when given.
pub async fn connect(g: &Global) -> Result<Vec<Client>, String> {
    let endpoints = if g.target_leader { vec![find_leader(&g.endpoints).await?] } else { g.endpoints.clone() };
    let mut clients = Vec::with_capacity(g.conns);
    for i in 0..g.conns {
        clients.push(connect_one(&endpoints[i % endpoints.len()], g.user.as_ref()).await?);
    }
    Ok(clients)
}

/// The endpoint whose member reports itself as leader.
pub async fn find_leader(endpoints: &[String]) -> Result<String, String> {
    let mut seen = Vec::new();
    for ep in endpoints {
        let mut c = connect_one(ep, None).await?;
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

/// Polls every endpoint until each answers a linearizable Range (as `user`, when auth is on);
/// returns the time it took.
pub async fn wait_ready(endpoints: &[String], user: Option<&User>, wait: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    for ep in endpoints {
        let mut last = String::from("no attempt");
        loop {
            if start.elapsed() > wait {
                return Err(format!("{ep} not ready after {wait:?}: {last}"));
            }
            let attempt = async {
                let mut c = connect_one(ep, user).await?;
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
