//! Auto-compaction (`--auto-compaction-mode`, `--auto-compaction-retention`), as etcd 3.4's
//! `etcdserver/api/v3compactor`: a loop that runs on every member, acts only while this member
//! leads (etcd pauses the compactor on followers), and compacts through raft like a client's
//! `Compact` — so every member removes the same history in the apply of one entry.
//!
//! * **Periodic** (retention a duration; a bare number is hours): every tenth of the retention
//!   (at most a tenth of an hour) the current revision is recorded in a sliding window that
//!   reaches back one retention. Once a retention has passed since the last success, the
//!   oldest revision in the window — the one seen a retention ago — is compacted; later
//!   compactions come every retention, at most every hour. A failure is retried on the next
//!   tick; `compacted` counts as success. Followers keep recording, so a new leader compacts
//!   at once if the last success is a retention old.
//! * **Revision** (retention a number of revisions): every 5 minutes, compact at
//!   `current - retention` unless that is not positive or was already compacted.
//!
//! The log lines are etcd's capnslog lines (`Starting auto-compaction at revision …`).
//!
//! Not done: etcd's `experimental-compaction-batch-limit` (a compaction here is one apply).

use std::collections::VecDeque;
use std::sync::Weak;
use std::time::{Duration, Instant};

use super::propose::Proposal;
use super::{Caller, Server};
use crate::error::Error;
use crate::failpoint;
use crate::go_duration;
use crate::proto::etcdserverpb::CompactionRequest;
use crate::proto::metastorepb::internal_request::Request;
use crate::raft::Role;

/// What `--auto-compaction-mode` and `--auto-compaction-retention` ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep this much wall-clock history.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

impl AutoCompaction {
    /// etcd's `parseCompactionRetention` and mode checks: a bare non-negative number is hours
    /// (periodic) or revisions (revision), anything else a Go duration (as nanoseconds in revision
    /// mode, as etcd does). A retention of 0 disables auto-compaction (`None`); so does a bare
    /// number with an empty mode.
    pub fn from_flags(mode: &str, retention: &str) -> Result<Option<AutoCompaction>, String> {
        if !matches!(mode, "" | "periodic" | "revision") {
            return Err(format!("unknown auto-compaction-mode {mode:?}"));
        }
        let retention = if retention.is_empty() { "0" } else { retention };
        let nanos: u128 = match retention.parse::<i64>() {
            Ok(n) if n >= 0 => match mode {
                "revision" => n as u128,
                "periodic" => n as u128 * 3_600_000_000_000,
                _ => 0,
            },
            _ => go_duration::parse(retention)
                .ok_or_else(|| format!("error parsing CompactionRetention: invalid duration {retention:?}"))?
                .as_nanos(),
        };
        if nanos == 0 {
            return Ok(None);
        }
        match mode {
            "periodic" => Ok(Some(AutoCompaction::Periodic(Duration::from_nanos(nanos as u64)))),
            "revision" => Ok(Some(AutoCompaction::Revision(nanos.min(i64::MAX as u128) as i64))),
            _ => Err(format!("unsupported compaction mode {mode}")),
        }
    }
}

/// etcd's revision-mode check interval.
const REVISION_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// The revision-mode interval while the test failpoint `auto-compaction-revision-fast` is armed
/// (each check uses one of its count).
const REVISION_INTERVAL_FAST: Duration = Duration::from_millis(200);

/// Runs while the server lives.
pub(super) async fn run(server: Weak<Server>, mode: AutoCompaction) {
    match mode {
        AutoCompaction::Periodic(period) => run_periodic(server, period).await,
        AutoCompaction::Revision(retention) => run_revision(server, retention).await,
    }
}

async fn run_periodic(server: Weak<Server>, period: Duration) {
    let capped = period.min(Duration::from_secs(3600));
    let retry_interval = capped / 10;
    let retentions = (period.as_nanos() / retry_interval.as_nanos().max(1)) as usize + 1;
    let mut revs: VecDeque<i64> = VecDeque::new();
    let mut last_success = Instant::now();
    let mut base_interval = period;
    loop {
        {
            let Some(server) = server.upgrade() else { return };
            revs.push_back(server.kv.read().rev());
        }
        if revs.len() > retentions {
            revs.pop_front();
        }
        tokio::time::sleep(retry_interval).await;
        let Some(server) = server.upgrade() else { return };
        if !server.leads() || last_success.elapsed() < base_interval {
            continue;
        }
        if base_interval == period {
            base_interval = capped;
        }
        let rev = revs[0];
        tracing::info!("Starting auto-compaction at revision {rev} (retention: {})", go_duration::format(period));
        match server.auto_compact(rev).await {
            Ok(()) => {
                tracing::info!("Finished auto-compaction at revision {rev}");
                last_success = Instant::now();
            }
            Err(e) => {
                tracing::info!("Failed auto-compaction at revision {rev} ({e})");
                tracing::info!("Retry after {}", go_duration::format(retry_interval));
            }
        }
    }
}

async fn run_revision(server: Weak<Server>, retention: i64) {
    let mut prev = 0;
    loop {
        let interval =
            if failpoint::hit("auto-compaction-revision-fast") { REVISION_INTERVAL_FAST } else { REVISION_INTERVAL };
        tokio::time::sleep(interval).await;
        let Some(server) = server.upgrade() else { return };
        if !server.leads() {
            continue;
        }
        let rev = server.kv.read().rev() - retention;
        if rev <= 0 || rev == prev {
            continue;
        }
        tracing::info!("Starting auto-compaction at revision {rev} (retention: {retention} revisions)");
        match server.auto_compact(rev).await {
            Ok(()) => {
                prev = rev;
                tracing::info!("Finished auto-compaction at revision {rev}");
            }
            Err(e) => {
                tracing::info!("Failed auto-compaction at revision {rev} ({e})");
                tracing::info!("Retry after {}", go_duration::format(REVISION_INTERVAL));
            }
        }
    }
}

impl Server {
    fn leads(&self) -> bool {
        self.raft.status().role == Role::Leader
    }

    /// One compaction proposed by the member itself; `compacted` (already done) is success.
    async fn auto_compact(&self, revision: i64) -> crate::error::Result<()> {
        let req = Request::Compaction(CompactionRequest { revision, physical: false });
        match self
            .propose::<crate::proto::etcdserverpb::CompactionResponse>(Proposal::Command(req, Caller::Member))
            .await
        {
            Ok(_) | Err(Error::Compacted) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_as_etcd_parses_it() {
        let p = |m, r| AutoCompaction::from_flags(m, r);
        assert_eq!(p("periodic", "0"), Ok(None));
        assert_eq!(p("periodic", ""), Ok(None));
        assert_eq!(p("periodic", "2"), Ok(Some(AutoCompaction::Periodic(Duration::from_secs(7200)))));
        assert_eq!(p("periodic", "1s"), Ok(Some(AutoCompaction::Periodic(Duration::from_secs(1)))));
        assert_eq!(p("periodic", "30m"), Ok(Some(AutoCompaction::Periodic(Duration::from_secs(1800)))));
        assert_eq!(p("revision", "1000"), Ok(Some(AutoCompaction::Revision(1000))));
        assert_eq!(p("revision", "1us"), Ok(Some(AutoCompaction::Revision(1000))));
        assert_eq!(p("", "5"), Ok(None));
        assert!(p("", "5m").unwrap_err().contains("unsupported compaction mode"));
        assert!(p("daily", "1").unwrap_err().contains("unknown auto-compaction-mode"));
        assert!(p("periodic", "-1").is_err());
        assert!(p("periodic", "abc").is_err());
    }
}
