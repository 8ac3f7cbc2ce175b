//! The Maintenance service's answers, shaped as etcd 3.4 shapes them — including where etcd
//! sends no header at all (Alarm, Defragment, MoveLeader).

use super::{RequestContext, Server};
use crate::error::Result;
use crate::proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentResponse, MoveLeaderRequest, MoveLeaderResponse, StatusResponse,
};

/// The etcd version reported to clients; clients and Kubernetes gate features on it.
pub const ETCD_VERSION: &str = "3.4.23";

impl Server {
    pub fn status_response(&self, _ctx: &RequestContext) -> StatusResponse {
        let status = self.status();
        let errors = if status.leader_id == 0 { vec![crate::error::Error::NoLeader.to_string()] } else { Vec::new() };
        StatusResponse {
            header: Some(self.header(status.revision)),
            version: ETCD_VERSION.to_string(),
            db_size: status.db_size as i64,
            leader: status.leader_id,
            raft_index: status.commit,
            raft_term: status.term,
            raft_applied_index: status.applied,
            errors,
            db_size_in_use: status.db_size as i64,
            is_learner: status.is_learner,
        }
    }

    /// No alarm is ever raised yet (quotas and corruption checks do not exist), so there is
    /// nothing to list, activate or deactivate.
    pub fn alarm(&self, _ctx: &RequestContext, _r: AlarmRequest) -> AlarmResponse {
        AlarmResponse { header: None, alarms: Vec::new() }
    }

    /// RocksDB compacts its files in the background: there is nothing to defragment. Admins only.
    pub async fn defragment(&self, ctx: &RequestContext) -> Result<DefragmentResponse> {
        self.check_admin_maintenance(ctx).await?;
        Ok(DefragmentResponse { header: None })
    }

    /// Hands leadership to voter `target_id` and waits until it leads.
    pub async fn move_leader(&self, _ctx: &RequestContext, r: MoveLeaderRequest) -> Result<MoveLeaderResponse> {
        self.transfer_leadership(r.target_id).await?;
        Ok(MoveLeaderResponse { header: None })
    }
}
