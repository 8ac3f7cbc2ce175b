//! Shared by the SDK test files: every scenario runs against MetaStore and then against real
//! etcd 3.4.23, each on its own freshly started single member.

#![allow(dead_code)] // each test binary uses its own subset

use std::future::Future;
use std::time::{Duration, Instant};

use crate::common::Member;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    MetaStore,
    Etcd,
}

/// Runs `scenario` against a fresh MetaStore member, then against a fresh etcd member.
pub async fn both<F, Fut>(scenario: F)
where
    F: Fn(Server, Member) -> Fut,
    Fut: Future<Output = ()>,
{
    for server in [Server::MetaStore, Server::Etcd] {
        let member = match server {
            Server::MetaStore => Member::start(&[]),
            Server::Etcd => Member::start_etcd(&[]),
        };
        eprintln!("--- scenario against {server:?} at {}", member.endpoint());
        scenario(server, member).await;
    }
}

pub async fn connect(m: &Member) -> etcd_client::Client {
    etcd_client::Client::connect([m.endpoint()], None).await.expect("connect")
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// Number of keys under `prefix`.
pub async fn count(client: &etcd_client::Client, prefix: &str) -> i64 {
    let opts = etcd_client::GetOptions::new().with_prefix().with_count_only();
    client.kv_client().get(prefix, Some(opts)).await.expect("count").count()
}

/// Waits until lease `id` no longer exists on the server (bounded by `limit`).
pub async fn lease_gone(client: &etcd_client::Client, id: i64, limit: Duration) {
    eventually(limit, "lease expiry", || async {
        match client.lease_client().time_to_live(id, None).await {
            Ok(r) => r.ttl() <= 0,
            Err(_) => false,
        }
    })
    .await;
}

/// The `metastorectl` binary built next to this test executable (`target/<profile>/`); a
/// workspace build (`cargo test` or `cargo build --bins`) puts it there.
pub fn metastorectl() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target dir");
    let bin = dir.join("metastorectl");
    assert!(bin.exists(), "{} missing: run `cargo build --release --bins` first", bin.display());
    bin
}

/// A child process (etcdctl, metastorectl) whose stdout lines can be awaited; killed on drop.
pub struct Proc {
    pub child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Proc {
    pub fn spawn(program: &std::path::Path, args: &[&str]) -> Proc {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env("ETCDCTL_API", "3")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        use tokio::io::AsyncBufReadExt;
        let lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        Proc { child, lines }
    }

    /// The next stdout line (bounded: 30 s).
    pub async fn line(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
            .await
            .expect("a line within 30 s")
            .expect("read stdout")
            .expect("process closed stdout")
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
        assert!(status.expect("kill").success(), "kill -{sig} {pid}");
    }

    pub async fn wait(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.expect("exit within 30 s").expect("wait")
    }
}
