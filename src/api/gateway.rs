//! etcd 3.4's JSON gateway (grpc-gateway v1) on the client port: `POST /v3/<service>/<call>`
//! with the request as JSON, answered with the response as JSON, for callers that do not speak
//! gRPC (shell scripts with curl, Python services, HA managers).
//!
//! ```text
//!  POST /v3/kv/put {"key":"Zm9v","value":"YmFy"} ──serde (pbjson)──► PutRequest
//!     ──► the gRPC service's own handler (same context, checks, errors) ──► PutResponse ──► JSON
//!  POST /v3/watch  {"create_request":{…}}\n…     ──► the watch stream ──► {"result":{…}}\n …
//! ```
//!
//! * Every route calls the same service handler as gRPC does, so behaviour cannot drift; the
//!   token travels in the `Authorization` header (a certificate's common name never names the
//!   user of a gateway request, as in etcd).
//! * JSON as grpc-gateway's `OrigName` marshaler writes it: proto field names, defaults left
//!   out, 64-bit integers as strings, bytes as base64, enums by name; requests accept both name
//!   forms, numbers or strings, and ignore unknown fields. An empty body is an empty request.
//! * Errors: `{"error":msg,"message":msg,"code":grpc code}` with the HTTP status grpc-gateway
//!   derives from the code; stream errors as one `{"error":{grpc_code, http_code, message,
//!   http_status}}` line. `/v3beta/…` is served as `/v3/…`; other methods answer 405.
//!
//! Not the same: messages of malformed JSON are serde's, not Go's (same code and status).

use std::future::Future;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, MethodRouter};
use axum::Router;
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use super::auth::AuthService;
use super::cluster::ClusterService;
use super::kv::KvService;
use super::lease::LeaseService;
use super::maintenance::MaintenanceService;
use crate::proto::etcdserverpb::auth_server::Auth as _;
use crate::proto::etcdserverpb::cluster_server::Cluster as _;
use crate::proto::etcdserverpb::kv_server::Kv as _;
use crate::proto::etcdserverpb::lease_server::Lease as _;
use crate::proto::etcdserverpb::maintenance_server::Maintenance as _;
use crate::proto::etcdserverpb::{LeaseKeepAliveRequest, WatchRequest};
use crate::server::{RequestContext, Server};

/// Routes under `/v3` and `/v3beta`.
pub fn router(server: Arc<Server>, max_response_bytes: usize) -> Router {
    let v3 = routes(server, max_response_bytes);
    Router::new().nest("/v3", v3.clone()).nest("/v3beta", v3)
}

/// A unary route: JSON body → the service's `$method` → JSON answer.
macro_rules! unary {
    ($svc:expr, $method:ident) => {{
        let svc = $svc.clone();
        post(move |headers: HeaderMap, body: Bytes| {
            let svc = svc.clone();
            async move { unary(&headers, &body, |req| async move { svc.$method(req).await }).await }
        })
    }};
}

fn routes(server: Arc<Server>, max_response_bytes: usize) -> Router {
    let kv = Arc::new(KvService { server: server.clone() });
    let lease = Arc::new(LeaseService { server: server.clone() });
    let cluster = Arc::new(ClusterService { server: server.clone() });
    let maintenance = Arc::new(MaintenanceService { server: server.clone() });
    let auth = Arc::new(AuthService { server: server.clone() });
    let lease_routes = |prefix: &str, r: Router| {
        r.route(&format!("{prefix}/grant"), unary!(lease, lease_grant))
            .route(&format!("{prefix}/revoke"), unary!(lease, lease_revoke))
            .route(&format!("{prefix}/timetolive"), unary!(lease, lease_time_to_live))
            .route(&format!("{prefix}/leases"), unary!(lease, lease_leases))
            .route(&format!("{prefix}/keepalive"), keep_alive_route(server.clone()))
    };
    let router = Router::new()
        .route("/kv/range", unary!(kv, range))
        .route("/kv/put", unary!(kv, put))
        .route("/kv/deleterange", unary!(kv, delete_range))
        .route("/kv/txn", unary!(kv, txn))
        .route("/kv/compaction", unary!(kv, compact))
        .route("/watch", watch_route(server.clone(), max_response_bytes))
        .route("/cluster/member/add", unary!(cluster, member_add))
        .route("/cluster/member/remove", unary!(cluster, member_remove))
        .route("/cluster/member/update", unary!(cluster, member_update))
        .route("/cluster/member/list", unary!(cluster, member_list))
        .route("/cluster/member/promote", unary!(cluster, member_promote))
        .route("/maintenance/alarm", unary!(maintenance, alarm))
        .route("/maintenance/status", unary!(maintenance, status))
        .route("/maintenance/defragment", unary!(maintenance, defragment))
        // etcd 3.4 maps both Hash and HashKV to this path; Hash wins.
        .route("/maintenance/hash", unary!(maintenance, hash))
        .route("/maintenance/snapshot", snapshot_route(maintenance.clone()))
        .route("/maintenance/transfer-leadership", unary!(maintenance, move_leader))
        .route("/auth/enable", unary!(auth, auth_enable))
        .route("/auth/disable", unary!(auth, auth_disable))
        .route("/auth/status", unary!(auth, auth_status))
        .route("/auth/authenticate", unary!(auth, authenticate))
        .route("/auth/user/add", unary!(auth, user_add))
        .route("/auth/user/get", unary!(auth, user_get))
        .route("/auth/user/list", unary!(auth, user_list))
        .route("/auth/user/delete", unary!(auth, user_delete))
        .route("/auth/user/changepw", unary!(auth, user_change_password))
        .route("/auth/user/grant", unary!(auth, user_grant_role))
        .route("/auth/user/revoke", unary!(auth, user_revoke_role))
        .route("/auth/role/add", unary!(auth, role_add))
        .route("/auth/role/get", unary!(auth, role_get))
        .route("/auth/role/list", unary!(auth, role_list))
        .route("/auth/role/delete", unary!(auth, role_delete))
        .route("/auth/role/grant", unary!(auth, role_grant_permission))
        .route("/auth/role/revoke", unary!(auth, role_revoke_permission));
    let router = lease_routes("/kv/lease", lease_routes("/lease", router))
        .route("/{*unknown}", axum::routing::any(|| async { (StatusCode::NOT_FOUND, "Not Found") }));
    router.method_not_allowed_fallback(|| async { (StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed") })
}

/// Parses a request body (empty: the default request) and attaches the token.
fn request<T: DeserializeOwned + Default>(headers: &HeaderMap, body: &[u8]) -> Result<tonic::Request<T>, Status> {
    let message = if body.iter().all(u8::is_ascii_whitespace) {
        T::default()
    } else {
        serde_json::from_slice(body).map_err(|e| Status::invalid_argument(e.to_string()))?
    };
    let mut req = tonic::Request::new(message);
    if let Some(token) = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()) {
        req.metadata_mut().insert("authorization", token);
    }
    Ok(req)
}

async fn unary<Req, Resp, F, Fut>(headers: &HeaderMap, body: &[u8], call: F) -> Response
where
    Req: DeserializeOwned + Default,
    Resp: Serialize,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let answer = match request(headers, body) {
        Ok(req) => call(req).await,
        Err(status) => Err(status),
    };
    match answer {
        Ok(resp) => json(StatusCode::OK, serde_json::to_vec(resp.get_ref())),
        Err(status) => error(status),
    }
}

/// An error answer: `{"error":msg,"message":msg,"code":n}` (etcd's key order) with
/// grpc-gateway's HTTP status.
fn error(status: Status) -> Response {
    let msg = serde_json::to_string(status.message());
    let body = msg.map(|m| format!(r#"{{"error":{m},"message":{m},"code":{}}}"#, status.code() as i32).into_bytes());
    json(http_status(status.code()), body)
}

fn json(status: StatusCode, body: serde_json::Result<Vec<u8>>) -> Response {
    match body {
        Ok(bytes) => (status, [(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes)
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// grpc-gateway v1's `HTTPStatusFromCode`.
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A streamed answer: one `{"result":…}` line per message; an error ends it with one
/// `{"error":…}` line.
fn stream_response<T: Serialize + Send + 'static>(
    messages: impl Stream<Item = Result<T, Status>> + Send + 'static,
) -> Response {
    let mut failed = false;
    let lines = messages
        .take_while(move |m| {
            let go = !failed;
            failed |= m.is_err();
            std::future::ready(go)
        })
        .map(|m| {
            let line = match m {
                Ok(message) => serde_json::to_string(&message).map(|m| format!(r#"{{"result":{m}}}"#)),
                Err(status) => {
                    let http = http_status(status.code());
                    let (msg, reason) = (status.message(), http.canonical_reason().unwrap_or_default());
                    serde_json::to_string(msg).map(|msg| {
                        format!(
                            r#"{{"error":{{"grpc_code":{},"http_code":{},"message":{msg},"http_status":"{reason}"}}}}"#,
                            status.code() as i32,
                            http.as_u16()
                        )
                    })
                }
            };
            let mut bytes = line.unwrap_or_default().into_bytes();
            bytes.push(b'\n');
            Ok::<_, std::convert::Infallible>(Bytes::from(bytes))
        });
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        Body::from_stream(lines),
    )
        .into_response()
}

/// The requests of a streaming call: JSON values, one per line of the body.
fn body_messages<T: DeserializeOwned + Send + 'static>(body: Body) -> ReceiverStream<Result<T, Status>> {
    let (tx, rx) = mpsc::channel(16);
    let parse = |line: &[u8]| serde_json::from_slice(line).map_err(|e| Status::invalid_argument(e.to_string()));
    let blank = |line: &[u8]| line.iter().all(u8::is_ascii_whitespace);
    tokio::spawn(async move {
        let mut chunks = body.into_data_stream();
        let mut buf = Vec::new();
        loop {
            while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                if !blank(&line) && tx.send(parse(&line)).await.is_err() {
                    return;
                }
            }
            // The last message, if any; the reader may be gone by then, which ends nothing more.
            let last = match chunks.next().await {
                Some(Ok(bytes)) => {
                    buf.extend_from_slice(&bytes);
                    continue;
                }
                Some(Err(e)) => Some(Err(Status::cancelled(e.to_string()))),
                None => (!blank(&buf)).then(|| parse(&buf)),
            };
            if let Some(last) = last {
                tx.send(last).await.ok();
            }
            return;
        }
    });
    ReceiverStream::new(rx)
}

/// The context of a streaming gateway call: its token from the `Authorization` header.
fn stream_context(headers: &HeaderMap) -> RequestContext {
    super::context_from(&tonic::metadata::MetadataMap::from_headers(headers.clone()), None)
}

fn watch_route(server: Arc<Server>, max_response_bytes: usize) -> MethodRouter {
    post(move |headers: HeaderMap, body: Body| {
        let server = server.clone();
        async move {
            let requests = body_messages::<WatchRequest>(body);
            stream_response(super::watch::watch(&server, &stream_context(&headers), max_response_bytes, requests))
        }
    })
}

fn keep_alive_route(server: Arc<Server>) -> MethodRouter {
    post(move |headers: HeaderMap, body: Body| {
        let server = server.clone();
        async move {
            let requests = body_messages::<LeaseKeepAliveRequest>(body);
            stream_response(super::lease::keep_alive(server, stream_context(&headers), requests))
        }
    })
}

fn snapshot_route(maintenance: Arc<MaintenanceService>) -> MethodRouter {
    post(move |headers: HeaderMap, body: Bytes| {
        let maintenance = maintenance.clone();
        async move {
            let started = match request(&headers, &body) {
                Ok(req) => maintenance.snapshot(req).await,
                Err(status) => Err(status),
            };
            match started {
                Ok(stream) => stream_response(stream.into_inner()),
                Err(status) => error(status),
            }
        }
    })
}
