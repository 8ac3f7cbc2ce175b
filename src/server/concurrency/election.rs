//! `v3electionpb.Election`: etcd's `concurrency.Election` on a request's lease.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{create_rev_is, first_created, get_key, get_op, prefix_of, put_op, range_kv, session_key};
use super::{delete_on_drop, RequestContext, Server};
use crate::error::{Error, Result};
use crate::mvcc::prefix_end;
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::{DeleteRangeRequest, RequestOp, ResponseHeader};
use crate::proto::mvccpb::event::EventType;
use crate::proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest, ProclaimResponse,
    ResignRequest, ResignResponse,
};

impl Server {
    /// Waits until this lease's candidate leads election `name`, then answers the leader key.
    /// A lease already campaigning keeps its place (its value is updated if it differs).
    pub async fn campaign(self: &Arc<Self>, ctx: &RequestContext, r: CampaignRequest) -> Result<CampaignResponse> {
        let lease = self.session_lease(ctx, r.lease).await?;
        let prefix = prefix_of(&r.name);
        let key = session_key(&prefix, lease);
        let resp = self
            .txn_if(ctx, create_rev_is(&key, 0), vec![put_op(&key, &r.value, lease)], vec![get_op(get_key(&key))])
            .await?;
        let mut leader = LeaderKey {
            name: r.name.clone(),
            key: key.clone(),
            rev: resp.header.as_ref().map_or(0, |h| h.revision),
            lease,
        };
        let mut abandoned = delete_on_drop(self, ctx, &key);
        if !resp.succeeded {
            let kv = range_kv(&resp, 0).ok_or(Error::ElectionNotLeader)?;
            leader.rev = kv.create_revision;
            if kv.value != r.value {
                // A failed proclaim resigns (dropping `abandoned` deletes the key).
                self.proclaim_as(ctx, &leader, &r.value).await?;
            }
        }
        self.wait_deletes(ctx, &prefix, leader.rev - 1).await?;
        abandoned.disarm();
        Ok(CampaignResponse { header: resp.header, leader: Some(leader) })
    }

    /// Updates the leader's value without a new election; `election: not leader` if `leader` no
    /// longer leads.
    pub async fn proclaim(&self, ctx: &RequestContext, r: ProclaimRequest) -> Result<ProclaimResponse> {
        let leader = r.leader.ok_or(Error::MissingLeaderKey)?;
        Ok(ProclaimResponse { header: self.proclaim_as(ctx, &leader, &r.value).await? })
    }

    async fn proclaim_as(&self, ctx: &RequestContext, l: &LeaderKey, value: &[u8]) -> Result<Option<ResponseHeader>> {
        let resp = self.txn_if(ctx, create_rev_is(&l.key, l.rev), vec![put_op(&l.key, value, l.lease)], vec![]).await?;
        if !resp.succeeded {
            return Err(Error::ElectionNotLeader);
        }
        Ok(resp.header)
    }

    /// Gives up leadership (or a place in the queue); a key that is no longer the leader's is
    /// left alone.
    pub async fn resign(&self, ctx: &RequestContext, r: ResignRequest) -> Result<ResignResponse> {
        let l = r.leader.ok_or(Error::MissingLeaderKey)?;
        let delete = DeleteRangeRequest { key: l.key.clone(), ..Default::default() };
        let ops = vec![RequestOp { request: Some(Op::RequestDeleteRange(delete)) }];
        let resp = self.txn_if(ctx, create_rev_is(&l.key, l.rev), ops, vec![]).await?;
        Ok(ResignResponse { header: resp.header })
    }

    /// The current leader's key-value; `election: no leader` while nobody leads.
    pub async fn leader(&self, ctx: &RequestContext, r: LeaderRequest) -> Result<LeaderResponse> {
        let resp = self.range(ctx, &first_created(&prefix_of(&r.name))).await?;
        let kv = resp.kvs.into_iter().next().ok_or(Error::ElectionNoLeader)?;
        Ok(LeaderResponse { header: resp.header, kv: Some(kv) })
    }

    /// Streams every leader of election `name` and each change of its value, from the current
    /// one on (`concurrency.Election.Observe`). The stream ends when the receiver is dropped or
    /// a read fails, as etcd's does.
    pub fn observe(self: &Arc<Self>, ctx: &RequestContext, r: LeaderRequest) -> mpsc::Receiver<LeaderResponse> {
        let (tx, rx) = mpsc::channel(16);
        let (server, ctx) = (self.clone(), ctx.clone());
        tokio::spawn(async move {
            if let Err(e) = server.observe_into(&ctx, &prefix_of(&r.name), &tx).await {
                tracing::debug!(error = %e, "election observer ended");
            }
        });
        rx
    }

    async fn observe_into(
        self: &Arc<Self>,
        ctx: &RequestContext,
        prefix: &[u8],
        tx: &mpsc::Sender<LeaderResponse>,
    ) -> Result<()> {
        loop {
            let resp = self.range(ctx, &first_created(prefix)).await?;
            let (mut header, kv) = match resp.kvs.into_iter().next() {
                Some(kv) => (resp.header.unwrap_or_default(), kv),
                None => {
                    // Wait for the first put under the prefix.
                    let rev = resp.header.as_ref().map_or(0, |h| h.revision);
                    let mut watch = self.watch_from(ctx, prefix.to_vec(), prefix_end(prefix), rev).await?;
                    loop {
                        let Some(w) = watch.next().await? else { return Ok(()) };
                        let put = w.events.into_iter().find(|ev| ev.r#type == EventType::Put as i32);
                        if let Some(kv) = put.and_then(|ev| ev.kv) {
                            let mut header = w.header.unwrap_or_default();
                            header.revision = kv.mod_revision;
                            break (header, kv);
                        }
                    }
                }
            };
            let key = kv.key.clone();
            if tx.send(LeaderResponse { header: Some(header), kv: Some(kv) }).await.is_err() {
                return Ok(());
            }
            // Follow this leader until its key is deleted.
            let mut watch = self.watch_from(ctx, key, Vec::new(), header.revision + 1).await?;
            'leader: loop {
                let Some(w) = watch.next().await? else { return Ok(()) };
                for ev in w.events {
                    if ev.r#type == EventType::Delete as i32 {
                        break 'leader;
                    }
                    header = w.header.unwrap_or_default();
                    if tx.send(LeaderResponse { header: Some(header), kv: ev.kv }).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}
