//! `v3lockpb.Lock`: etcd's `concurrency.Mutex` on a request's lease.

use std::sync::Arc;

use super::{create_rev_is, first_created, get_key, get_op, prefix_of, put_op, range_kv, session_key};
use super::{delete_on_drop, RequestContext, Server};
use crate::error::Result;
use crate::proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};

impl Server {
    /// Acquires lock `name` for the request's lease, waiting while older holders exist. The answer
    /// names the lock's key: deleting it (Unlock), or the lease ending, releases the lock.
    pub async fn lock(self: &Arc<Self>, ctx: &RequestContext, r: LockRequest) -> Result<LockResponse> {
        let lease = self.session_lease(ctx, r.lease).await?;
        let prefix = prefix_of(&r.name);
        let key = session_key(&prefix, lease);
        // Queue up unless this lease already holds or waits for the lock; learn the holder.
        let resp = self
            .txn_if(
                ctx,
                create_rev_is(&key, 0),
                vec![put_op(&key, b"", lease), get_op(first_created(&prefix))],
                vec![get_op(get_key(&key)), get_op(first_created(&prefix))],
            )
            .await?;
        let mut my_rev = resp.header.as_ref().map_or(0, |h| h.revision);
        if !resp.succeeded {
            my_rev = range_kv(&resp, 0).map_or(my_rev, |kv| kv.create_revision);
        }
        if range_kv(&resp, 1).is_none_or(|owner| owner.create_revision == my_rev) {
            return Ok(LockResponse { header: resp.header, key });
        }
        let mut abandoned = delete_on_drop(self, ctx, &key);
        match self.wait_deletes(ctx, &prefix, my_rev - 1).await {
            Ok(header) => {
                abandoned.disarm();
                Ok(LockResponse { header, key })
            }
            // Dropping `abandoned` releases the key, as etcd's Mutex does when the wait fails.
            Err(e) => Err(e),
        }
    }

    /// Releases a lock by deleting its key (whoever holds it).
    pub async fn unlock(&self, ctx: &RequestContext, r: UnlockRequest) -> Result<UnlockResponse> {
        Ok(UnlockResponse { header: self.delete_key(ctx, &r.key).await? })
    }
}
