//! etcd's corruption checks (`etcdserver/corrupt.go`): members compare HashKV
//! ([`crate::mvcc::KvStore::hash_kv`]) at one revision over the peer API.
//!
//! * **Initial** (`--experimental-initial-corrupt-check`): a member restarting on its data dir
//!   asks every peer for HashKV at its own current revision before it serves clients; a peer
//!   at the same compact revision with another hash makes the start fail (`… found data
//!   inconsistency with peers`). Peers that are behind (`future revision`), ahead past a
//!   compaction (`compacted`) or unreachable are only logged, as in etcd.
//! * **Periodic** (`--experimental-corrupt-check-time`): every interval the leader hashes, asks
//!   every follower for HashKV at that revision, hashes again after a linearizable barrier, and
//!   raises the CORRUPT alarm through raft (member id 0, as etcd 3.4.23) when its own two hashes
//!   of one revision differ, a follower is ahead of it in revision or compaction, or a follower
//!   at the same compact revision has another hash. The applier then refuses every write.
//!
//! Not done: etcd serves no peer traffic during its initial check; MetaStore already serves its
//! peer API then (so members restarting together can answer each other).

use std::sync::Weak;
use std::time::Duration;

use super::{RequestContext, Server};
use crate::error::{Error, Result};
use crate::peer;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::{AlarmRequest, AlarmType, HashKvRequest, HashKvResponse};
use crate::raft::Role;

/// One peer's answer to HashKV.
struct PeerHash {
    id: u64,
    urls: Vec<String>,
    answer: Result<HashKvResponse>,
}

fn revision_of(h: &HashKvResponse) -> i64 {
    h.header.as_ref().map_or(0, |h| h.revision)
}

impl Server {
    async fn local_hash_kv(&self) -> Result<HashKvResponse> {
        self.hash_kv(&RequestContext::peer(None), HashKvRequest { revision: 0 }).await
    }

    /// HashKV at `revision` from every other member (the first of its peer URLs that answers).
    async fn peer_hash_kvs(&self, revision: i64) -> Vec<PeerHash> {
        let mut out = Vec::new();
        for m in self.members.list().into_iter().filter(|m| m.id != self.cfg.member_id) {
            let mut answer = Err(Error::NoLeader);
            for url in &m.peer_urls {
                let call = peer::hash_kv(url, self.raft.peers().tls(), revision);
                answer = match tokio::time::timeout(self.cfg.request_timeout(), call).await {
                    Ok(a) => a,
                    Err(_) => Err(Error::Timeout),
                };
                if matches!(answer, Ok(_) | Err(Error::Compacted) | Err(Error::FutureRev)) {
                    break;
                }
            }
            out.push(PeerHash { id: m.id, urls: m.peer_urls.clone(), answer });
        }
        out
    }

    /// etcd's `CheckInitialHashKV`: `Err` when a peer at the same compact revision has another
    /// hash at this member's current revision.
    pub async fn initial_corrupt_check(&self) -> std::result::Result<(), String> {
        let id = format!("{:x}", self.cfg.member_id);
        tracing::info!("{id} starting initial corruption check with timeout {:?}...", self.cfg.request_timeout());
        let own = self.local_hash_kv().await.map_err(|e| format!("{id} failed to fetch hash ({e})"))?;
        let (h, rev, crev) = (own.hash, revision_of(&own), own.compact_revision);
        let mut mismatch = 0;
        for p in self.peer_hash_kvs(rev).await {
            match p.answer {
                Ok(resp) if resp.hash != h && resp.compact_revision == crev => {
                    tracing::error!(
                        "{id}'s hash {h} != {:x}'s hash {} (revision {rev}, peer revision {}, compact revision {crev})",
                        p.id,
                        resp.hash,
                        revision_of(&resp)
                    );
                    mismatch += 1;
                }
                Ok(resp) if resp.hash != h => tracing::warn!(
                    "{id} cannot check hash of peer({:x}): peer has a different compact revision {} (revision:{rev})",
                    p.id,
                    resp.compact_revision
                ),
                Ok(_) => {}
                Err(Error::FutureRev) => tracing::warn!(
                    "{id} cannot check the hash of peer({:?}) at revision {rev}: peer is lagging behind",
                    p.urls
                ),
                Err(Error::Compacted) => tracing::warn!(
                    "{id} cannot check the hash of peer({:?}) at revision {rev}: local node is lagging behind",
                    p.urls
                ),
                Err(e) => tracing::warn!("{id} failed to get hashKV from peer({:?}): {e}", p.urls),
            }
        }
        if mismatch > 0 {
            return Err(format!("{id} found data inconsistency with peers"));
        }
        tracing::info!("{id} succeeded on initial corruption checking: no corruption");
        Ok(())
    }

    /// etcd's `checkHashKV`, run by the leader: raises CORRUPT on any inconsistency found.
    async fn check_hash_kv(&self) -> Result<()> {
        let own = self.local_hash_kv().await?;
        let (h, rev, crev) = (own.hash, revision_of(&own), own.compact_revision);
        let peers = self.peer_hash_kvs(rev).await;
        self.linearizable_barrier().await?;
        let again = self.hash_kv(&RequestContext::peer(None), HashKvRequest { revision: rev }).await?;
        let current = self.kv.read().rev();
        let (h2, crev2) = (again.hash, again.compact_revision);
        let mut corrupt = false;
        if h2 != h && crev2 == crev {
            tracing::warn!("mismatched hashes {h} and {h2} for revision {rev}");
            corrupt = true;
        }
        for p in peers {
            let Ok(resp) = p.answer else { continue };
            if revision_of(&resp) > current {
                tracing::warn!("revision {} from member {:x}, expected at most {current}", revision_of(&resp), p.id);
                corrupt = true;
            }
            if resp.compact_revision > crev2 {
                tracing::warn!(
                    "compact revision {} from member {:x}, expected at most {crev2}",
                    resp.compact_revision,
                    p.id
                );
                corrupt = true;
            }
            if resp.compact_revision == crev && resp.hash != h {
                tracing::warn!("hash {} at revision {rev} from member {:x}, expected hash {h}", resp.hash, p.id);
                corrupt = true;
            }
        }
        if corrupt {
            let alarm =
                AlarmRequest { action: AlarmAction::Activate as i32, member_id: 0, alarm: AlarmType::Corrupt as i32 };
            self.alarm(&RequestContext::internal(), alarm).await?;
        }
        tracing::info!("finished peer corruption check");
        Ok(())
    }
}

/// etcd's `monitorKVHash`: runs while the server lives; checks only while this member leads.
pub(super) async fn run_periodic(server: Weak<Server>, every: Duration) {
    tracing::info!("enabled corruption checking with {} interval", crate::go_duration::format(every));
    loop {
        tokio::time::sleep(every).await;
        let Some(server) = server.upgrade() else { return };
        if server.raft.status().role != Role::Leader {
            continue;
        }
        if let Err(e) = server.check_hash_kv().await {
            tracing::debug!("check hash kv failed {e}");
        }
    }
}
