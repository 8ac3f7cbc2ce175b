//! `etcdserverpb.Auth`: all of etcd 3.4's calls plus 3.5's AuthStatus. The server resolves the
//! caller, checks it and answers complete responses; this file only maps errors.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::context;
use super::status::to_status;
use crate::proto::etcdserverpb::auth_server::Auth;
use crate::proto::etcdserverpb::*;
use crate::server::Server;

pub struct AuthService {
    pub server: Arc<Server>,
}

type Answer<T> = Result<Response<T>, Status>;

fn answer<T>(r: crate::error::Result<T>) -> Answer<T> {
    r.map(Response::new).map_err(to_status)
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(&self, req: Request<AuthEnableRequest>) -> Answer<AuthEnableResponse> {
        answer(self.server.auth_enable(&context(&req)).await)
    }

    async fn auth_status(&self, req: Request<AuthStatusRequest>) -> Answer<AuthStatusResponse> {
        answer(self.server.auth_status(&context(&req)).await)
    }

    async fn auth_disable(&self, req: Request<AuthDisableRequest>) -> Answer<AuthDisableResponse> {
        answer(self.server.auth_disable(&context(&req)).await)
    }

    async fn authenticate(&self, req: Request<AuthenticateRequest>) -> Answer<AuthenticateResponse> {
        let ctx = context(&req);
        answer(self.server.authenticate(&ctx, req.into_inner()).await)
    }

    async fn user_add(&self, req: Request<AuthUserAddRequest>) -> Answer<AuthUserAddResponse> {
        let ctx = context(&req);
        answer(self.server.user_add(&ctx, req.into_inner()).await)
    }

    async fn user_get(&self, req: Request<AuthUserGetRequest>) -> Answer<AuthUserGetResponse> {
        let ctx = context(&req);
        answer(self.server.user_get(&ctx, req.into_inner()).await)
    }

    async fn user_list(&self, req: Request<AuthUserListRequest>) -> Answer<AuthUserListResponse> {
        answer(self.server.user_list(&context(&req)).await)
    }

    async fn user_delete(&self, req: Request<AuthUserDeleteRequest>) -> Answer<AuthUserDeleteResponse> {
        let ctx = context(&req);
        answer(self.server.user_delete(&ctx, req.into_inner()).await)
    }

    async fn user_change_password(
        &self,
        req: Request<AuthUserChangePasswordRequest>,
    ) -> Answer<AuthUserChangePasswordResponse> {
        let ctx = context(&req);
        answer(self.server.user_change_password(&ctx, req.into_inner()).await)
    }

    async fn user_grant_role(&self, req: Request<AuthUserGrantRoleRequest>) -> Answer<AuthUserGrantRoleResponse> {
        let ctx = context(&req);
        answer(self.server.user_grant_role(&ctx, req.into_inner()).await)
    }

    async fn user_revoke_role(&self, req: Request<AuthUserRevokeRoleRequest>) -> Answer<AuthUserRevokeRoleResponse> {
        let ctx = context(&req);
        answer(self.server.user_revoke_role(&ctx, req.into_inner()).await)
    }

    async fn role_add(&self, req: Request<AuthRoleAddRequest>) -> Answer<AuthRoleAddResponse> {
        let ctx = context(&req);
        answer(self.server.role_add(&ctx, req.into_inner()).await)
    }

    async fn role_get(&self, req: Request<AuthRoleGetRequest>) -> Answer<AuthRoleGetResponse> {
        let ctx = context(&req);
        answer(self.server.role_get(&ctx, req.into_inner()).await)
    }

    async fn role_list(&self, req: Request<AuthRoleListRequest>) -> Answer<AuthRoleListResponse> {
        answer(self.server.role_list(&context(&req)).await)
    }

    async fn role_delete(&self, req: Request<AuthRoleDeleteRequest>) -> Answer<AuthRoleDeleteResponse> {
        let ctx = context(&req);
        answer(self.server.role_delete(&ctx, req.into_inner()).await)
    }

    async fn role_grant_permission(
        &self,
        req: Request<AuthRoleGrantPermissionRequest>,
    ) -> Answer<AuthRoleGrantPermissionResponse> {
        let ctx = context(&req);
        answer(self.server.role_grant_permission(&ctx, req.into_inner()).await)
    }

    async fn role_revoke_permission(
        &self,
        req: Request<AuthRoleRevokePermissionRequest>,
    ) -> Answer<AuthRoleRevokePermissionResponse> {
        let ctx = context(&req);
        answer(self.server.role_revoke_permission(&ctx, req.into_inner()).await)
    }
}
