//! Auth, the server's side: who a request runs as, the Auth service's calls, and the checks
//! every other call makes (etcd 3.4.23's `v3_server.go`, `apply_auth.go`).
//!
//! ```text
//!  RequestContext{token | certificate CN} ──caller()──► Caller::Client(AuthInfo{user, revision})
//!     reads (range, read-only txn, watch create): checked here before reading; the auth
//!       revision must not have moved by the time the answer is ready (`revision … is old`)
//!     writes (put, delete, txn, lease revoke, auth changes): the caller travels in the entry and
//!       the applier checks it against the auth store as of that entry (no check-then-act gap)
//!     admin calls (member changes, user/role lists, defragment): checked before proposing
//! ```
//!
//! The member's own requests (lease expiry, publishing attributes) are `Caller::Member` and
//! never refused. Passwords are hashed and checked on the blocking pool, never on the runtime.

use super::propose::Proposal;
use super::waiters::Applied;
use super::{RequestContext, Server};
use crate::auth::token::Lookup;
use crate::auth::{self, Access, AuthInfo, AuthStore};
use crate::error::{Error, Result};
use crate::lease::Lessor;
use crate::proto::authpb::Permission;
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::*;
use crate::proto::metastorepb::internal_request::Request;
use crate::proto::metastorepb::{AuthenticateRecord, Caller as CallerRecord, UserRecord};

/// Who a request runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The member itself: never refused.
    Member,
    /// A client, with its credentials (empty when it sent none).
    Client(AuthInfo),
}

impl Caller {
    /// As carried in a replicated entry.
    pub(super) fn record(&self) -> Option<CallerRecord> {
        match self {
            Caller::Member => None,
            Caller::Client(a) => Some(CallerRecord { username: a.user.clone(), auth_revision: a.revision }),
        }
    }

    /// From a replicated entry.
    pub(super) fn from_record(record: Option<CallerRecord>) -> Self {
        match record {
            None => Caller::Member,
            Some(r) => Caller::Client(AuthInfo { user: r.username, revision: r.auth_revision }),
        }
    }

    pub fn check(&self, auth: &AuthStore, access: Access, key: &[u8], range_end: &[u8]) -> Result<()> {
        match self {
            Caller::Member => Ok(()),
            Caller::Client(who) => auth.check(who, access, key, range_end),
        }
    }

    pub fn check_admin(&self, auth: &AuthStore) -> Result<()> {
        match self {
            Caller::Member => Ok(()),
            Caller::Client(who) => auth.check_admin(who),
        }
    }

    /// The revision to compare once a read is done (etcd's `doSerialize`); 0: none.
    fn revision(&self) -> u64 {
        match self {
            Caller::Member => 0,
            Caller::Client(who) => who.revision,
        }
    }

    fn user(&self) -> &str {
        match self {
            Caller::Member => "",
            Caller::Client(who) => &who.user,
        }
    }
}

/// Put: WRITE on the key; READ too when it returns the previous value; WRITE on every key already
/// on the lease it attaches (whoever may not revoke the lease may not extend it).
pub(super) fn check_put(auth: &AuthStore, lessor: &Lessor, caller: &Caller, p: &PutRequest) -> Result<()> {
    caller.check(auth, Access::Write, &p.key, &[])?;
    check_lease_keys(auth, lessor, caller, p.lease)?;
    if p.prev_kv {
        caller.check(auth, Access::Read, &p.key, &[])?;
    }
    Ok(())
}

/// DeleteRange: WRITE on the range; READ too when it returns the deleted values.
pub(super) fn check_delete(auth: &AuthStore, caller: &Caller, d: &DeleteRangeRequest) -> Result<()> {
    caller.check(auth, Access::Write, &d.key, &d.range_end)?;
    if d.prev_kv {
        caller.check(auth, Access::Read, &d.key, &d.range_end)?;
    }
    Ok(())
}

/// Txn: READ on every compare, then every op of both branches (nested txns included).
pub(super) fn check_txn(auth: &AuthStore, caller: &Caller, t: &TxnRequest) -> Result<()> {
    for c in &t.compare {
        caller.check(auth, Access::Read, &c.key, &c.range_end)?;
    }
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(Op::RequestRange(r)) => caller.check(auth, Access::Read, &r.key, &r.range_end)?,
            Some(Op::RequestPut(p)) => caller.check(auth, Access::Write, &p.key, &[])?,
            Some(Op::RequestDeleteRange(d)) => {
                if d.prev_kv {
                    caller.check(auth, Access::Read, &d.key, &d.range_end)?;
                }
                caller.check(auth, Access::Write, &d.key, &d.range_end)?;
            }
            Some(Op::RequestTxn(nested)) => check_txn(auth, caller, nested)?,
            None => {}
        }
    }
    Ok(())
}

/// WRITE on every key attached to `lease` (revoking it deletes them).
pub(super) fn check_lease_keys(auth: &AuthStore, lessor: &Lessor, caller: &Caller, lease: i64) -> Result<()> {
    if lease == 0 || matches!(caller, Caller::Member) || !auth.is_enabled() {
        return Ok(());
    }
    for key in lessor.keys(lease).unwrap_or_default() {
        caller.check(auth, Access::Write, &key, &[])?;
    }
    Ok(())
}

/// The cancel reason of a watch refused at creation: the gRPC error as grpc-go prints it.
pub(super) fn watch_refusal(e: &Error) -> String {
    let code = match e {
        Error::InvalidAuthToken => "Unauthenticated",
        Error::AuthOldRevision | Error::UserEmpty => "InvalidArgument",
        _ => return "rpc error: code = PermissionDenied desc = etcdserver: permission denied".into(),
    };
    format!("rpc error: code = {code} desc = {e}")
}

impl Server {
    /// Who `ctx` runs as: its token's user, else (with `--client-cert-auth`) its certificate's
    /// common name, else nobody. A simple token issued at an index this member has not applied
    /// yet waits for it, at most the request timeout.
    pub(super) async fn caller(&self, ctx: &RequestContext) -> Result<Caller> {
        if matches!(ctx.origin, super::Origin::Internal | super::Origin::Peer(_)) {
            return Ok(Caller::Member);
        }
        if let Some(token) = &ctx.token {
            loop {
                let applied = self.raft.status().applied;
                match self.auth.tokens().lookup(token, self.auth.revision(), applied) {
                    Lookup::Valid(who) => return Ok(Caller::Client(who)),
                    Lookup::Invalid => return Err(Error::InvalidAuthToken),
                    Lookup::NotYetApplied(index) => self.wait_applied(index).await?,
                }
            }
        }
        if self.cfg.client_cert_auth {
            if let Some(cn) = &ctx.cert_common_name {
                return Ok(Caller::Client(AuthInfo { user: cn.clone(), revision: self.auth.revision() }));
            }
        }
        Ok(Caller::Client(AuthInfo::default()))
    }

    async fn wait_applied(&self, index: u64) -> Result<()> {
        let mut status = self.raft.subscribe();
        let reached = async { status.wait_for(|s| s.applied >= index).await.map(|_| ()) };
        match tokio::time::timeout(self.cfg.request_timeout(), reached).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::InvalidAuthToken),
        }
    }

    /// Admin-only calls (member changes, user and role lists).
    pub(super) async fn check_admin(&self, ctx: &RequestContext) -> Result<()> {
        self.caller(ctx).await?.check_admin(&self.auth)
    }

    /// Admin-only Maintenance calls (defragment, hashes, snapshots): etcd answers these refusals
    /// untranslated, as gRPC `Unknown` with the auth store's own text.
    pub(super) async fn check_admin_maintenance(&self, ctx: &RequestContext) -> Result<()> {
        self.check_admin(ctx).await.map_err(|e| {
            let raw = match e {
                Error::UserEmpty => "auth: user name is empty",
                Error::UserNotFound => "auth: user not found",
                Error::PermissionDenied => "auth: permission denied",
                Error::InvalidAuthToken => "auth: invalid auth token",
                other => return other,
            };
            Error::Unknown(raw.into())
        })
    }

    /// etcd's `doSerialize`: fails a read whose caller's auth revision moved while it read.
    pub(super) fn check_unchanged(&self, caller: &Caller) -> Result<()> {
        let revision = caller.revision();
        if revision != 0 && revision != self.auth.revision() {
            return Err(Error::AuthOldRevision);
        }
        Ok(())
    }

    /// Proposes an auth change as `ctx`'s caller; the applier checks the caller is an admin.
    async fn propose_auth(&self, ctx: &RequestContext, request: Request) -> Result<ResponseHeader> {
        let caller = self.caller(ctx).await?;
        self.propose::<()>(Proposal::Command(request, caller)).await?;
        Ok(self.header(self.kv.read().rev()))
    }

    /// Hashes on the blocking pool: bcrypt takes tens of milliseconds at cost 10.
    async fn hash(&self, password: String) -> Result<Vec<u8>> {
        let cost = self.cfg.bcrypt_cost;
        tokio::task::spawn_blocking(move || auth::hash_password(&password, cost))
            .await
            .map_err(|e| Error::Internal(format!("hashing task: {e}")))?
    }

    pub async fn auth_enable(&self, ctx: &RequestContext) -> Result<AuthEnableResponse> {
        let header = self.propose_auth(ctx, Request::AuthEnable(AuthEnableRequest {})).await?;
        Ok(AuthEnableResponse { header: Some(header) })
    }

    pub async fn auth_disable(&self, ctx: &RequestContext) -> Result<AuthDisableResponse> {
        let header = self.propose_auth(ctx, Request::AuthDisable(AuthDisableRequest {})).await?;
        Ok(AuthDisableResponse { header: Some(header) })
    }

    pub async fn auth_status(&self, _ctx: &RequestContext) -> Result<AuthStatusResponse> {
        self.linearizable_barrier().await?;
        Ok(AuthStatusResponse {
            header: self.current_header(),
            enabled: self.auth.is_enabled(),
            auth_revision: self.auth.revision(),
        })
    }

    /// Checks the password off the runtime, then proposes the token's issue; if the auth store
    /// changed between the check and the apply, checks again (etcd's loop).
    pub async fn authenticate(&self, _ctx: &RequestContext, r: AuthenticateRequest) -> Result<AuthenticateResponse> {
        self.linearizable_barrier().await?;
        loop {
            let (auth, name, password) = (self.auth.clone(), r.name.clone(), r.password.clone());
            let checked = tokio::task::spawn_blocking(move || auth.check_password(&name, &password))
                .await
                .map_err(|e| Error::Internal(format!("password check task: {e}")))??;
            let record = AuthenticateRecord {
                name: r.name.clone(),
                simple_token_prefix: auth::Tokens::simple_prefix(),
                checked_revision: checked,
            };
            match self.propose(Proposal::Command(Request::Authenticate(record), Caller::Member)).await {
                Ok(Token(token)) => return Ok(AuthenticateResponse { header: self.current_header(), token }),
                Err(Error::AuthOldRevision) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub async fn user_add(&self, ctx: &RequestContext, r: AuthUserAddRequest) -> Result<AuthUserAddResponse> {
        let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
        let hashed_password = if no_password { Vec::new() } else { self.hash(r.password).await? };
        let record = UserRecord { name: r.name, hashed_password, no_password };
        let header = self.propose_auth(ctx, Request::UserAdd(record)).await?;
        Ok(AuthUserAddResponse { header: Some(header) })
    }

    pub async fn user_get(&self, ctx: &RequestContext, r: AuthUserGetRequest) -> Result<AuthUserGetResponse> {
        self.linearizable_barrier().await?;
        let caller = self.caller(ctx).await?;
        if caller.user() != r.name {
            caller.check_admin(&self.auth)?;
        }
        let user = self.auth.user(&r.name).ok_or(Error::UserNotFound)?;
        Ok(AuthUserGetResponse { header: self.current_header(), roles: user.roles })
    }

    pub async fn user_list(&self, ctx: &RequestContext) -> Result<AuthUserListResponse> {
        self.linearizable_barrier().await?;
        self.check_admin(ctx).await?;
        let users = self.auth.users().into_iter().map(|u| String::from_utf8_lossy(&u.name).into_owned()).collect();
        Ok(AuthUserListResponse { header: self.current_header(), users })
    }

    pub async fn user_delete(&self, ctx: &RequestContext, r: AuthUserDeleteRequest) -> Result<AuthUserDeleteResponse> {
        let header = self.propose_auth(ctx, Request::UserDelete(r)).await?;
        Ok(AuthUserDeleteResponse { header: Some(header) })
    }

    pub async fn user_change_password(
        &self,
        ctx: &RequestContext,
        r: AuthUserChangePasswordRequest,
    ) -> Result<AuthUserChangePasswordResponse> {
        let record = UserRecord { name: r.name, hashed_password: self.hash(r.password).await?, no_password: false };
        let header = self.propose_auth(ctx, Request::UserChangePassword(record)).await?;
        Ok(AuthUserChangePasswordResponse { header: Some(header) })
    }

    pub async fn user_grant_role(
        &self,
        ctx: &RequestContext,
        r: AuthUserGrantRoleRequest,
    ) -> Result<AuthUserGrantRoleResponse> {
        let header = self.propose_auth(ctx, Request::UserGrantRole(r)).await?;
        Ok(AuthUserGrantRoleResponse { header: Some(header) })
    }

    pub async fn user_revoke_role(
        &self,
        ctx: &RequestContext,
        r: AuthUserRevokeRoleRequest,
    ) -> Result<AuthUserRevokeRoleResponse> {
        let header = self.propose_auth(ctx, Request::UserRevokeRole(r)).await?;
        Ok(AuthUserRevokeRoleResponse { header: Some(header) })
    }

    pub async fn role_add(&self, ctx: &RequestContext, r: AuthRoleAddRequest) -> Result<AuthRoleAddResponse> {
        let header = self.propose_auth(ctx, Request::RoleAdd(r)).await?;
        Ok(AuthRoleAddResponse { header: Some(header) })
    }

    pub async fn role_get(&self, ctx: &RequestContext, r: AuthRoleGetRequest) -> Result<AuthRoleGetResponse> {
        self.linearizable_barrier().await?;
        let caller = self.caller(ctx).await?;
        if !self.auth.has_role(caller.user(), &r.role) {
            caller.check_admin(&self.auth)?;
        }
        let role = self.auth.role(&r.role).ok_or(Error::RoleNotFound)?;
        Ok(AuthRoleGetResponse { header: self.current_header(), perm: role.key_permission })
    }

    pub async fn role_list(&self, ctx: &RequestContext) -> Result<AuthRoleListResponse> {
        self.linearizable_barrier().await?;
        self.check_admin(ctx).await?;
        let roles = self.auth.roles().into_iter().map(|r| String::from_utf8_lossy(&r.name).into_owned()).collect();
        Ok(AuthRoleListResponse { header: self.current_header(), roles })
    }

    pub async fn role_delete(&self, ctx: &RequestContext, r: AuthRoleDeleteRequest) -> Result<AuthRoleDeleteResponse> {
        let header = self.propose_auth(ctx, Request::RoleDelete(r)).await?;
        Ok(AuthRoleDeleteResponse { header: Some(header) })
    }

    pub async fn role_grant_permission(
        &self,
        ctx: &RequestContext,
        r: AuthRoleGrantPermissionRequest,
    ) -> Result<AuthRoleGrantPermissionResponse> {
        let header = self.propose_auth(ctx, Request::RoleGrantPermission(r)).await?;
        Ok(AuthRoleGrantPermissionResponse { header: Some(header) })
    }

    pub async fn role_revoke_permission(
        &self,
        ctx: &RequestContext,
        r: AuthRoleRevokePermissionRequest,
    ) -> Result<AuthRoleRevokePermissionResponse> {
        let header = self.propose_auth(ctx, Request::RoleRevokePermission(r)).await?;
        Ok(AuthRoleRevokePermissionResponse { header: Some(header) })
    }
}

/// An issued token, as the applier answers Authenticate.
pub(super) struct Token(pub String);

/// Applies one auth entry (the applier's part): admin check for every change, then the change.
/// `index` is the entry's raft index (simple tokens carry it).
pub(super) fn apply(
    auth: &AuthStore,
    batch: &mut crate::storage::WriteBatch,
    caller: &Caller,
    index: u64,
    request: Request,
) -> Result<Applied> {
    if !matches!(request, Request::Authenticate(_)) {
        caller.check_admin(auth)?;
    }
    match request {
        Request::AuthEnable(_) => auth.enable(batch)?,
        Request::AuthDisable(_) => auth.disable(batch),
        Request::Authenticate(a) => {
            auth.can_authenticate(&a.name)?;
            if auth.revision() != a.checked_revision {
                return Err(Error::AuthOldRevision);
            }
            let token = auth.tokens().assign(&a.name, auth.revision(), &a.simple_token_prefix, index)?;
            return Ok(Applied::Token(token));
        }
        Request::UserAdd(u) => auth.user_add(batch, &u.name, u.hashed_password, u.no_password)?,
        Request::UserDelete(u) => auth.user_delete(batch, &u.name)?,
        Request::UserChangePassword(u) => auth.user_change_password(batch, &u.name, u.hashed_password)?,
        Request::UserGrantRole(g) => auth.user_grant_role(batch, &g.user, &g.role)?,
        Request::UserRevokeRole(r) => auth.user_revoke_role(batch, &r.name, &r.role)?,
        Request::RoleAdd(r) => auth.role_add(batch, &r.name)?,
        Request::RoleDelete(r) => auth.role_delete(batch, &r.role)?,
        Request::RoleGrantPermission(g) => {
            auth.role_grant_permission(batch, &g.name, g.perm.unwrap_or_else(Permission::default))?
        }
        Request::RoleRevokePermission(r) => auth.role_revoke_permission(batch, &r.role, &r.key, &r.range_end)?,
        other => return Err(Error::Internal(format!("not an auth request: {other:?}"))),
    }
    Ok(Applied::Done)
}
