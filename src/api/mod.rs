//! The client-facing API: one file per etcd gRPC service, thin handlers (validate, call
//! `server`, fill the header), one error table ([`status`]), and the HTTP endpoints etcd serves
//! on the same port ([`http`]); gRPC calls are counted by [`grpc_metrics`]; `--listen-metrics-urls`
//! listeners serve [`serve_metrics`].
//!
//! gRPC and HTTP share each client listener, plain or TLS: tonic routes are merged into one axum
//! router, and requests carry the connection's [`ClientConnInfo`] (see [`context`]).
//! The peer API (`crate::peer`) is served separately on the peer URLs.
//! Every etcd v3 service is registered (KV, Watch, Lease, Cluster, Maintenance, Auth, Lock,
//! Election); `docs/compatibility.md` tracks each RPC.

pub mod auth;
pub mod cluster;
pub mod election;
pub mod gateway;
pub mod grpc_metrics;
pub mod http;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod status;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use tonic::service::Routes;

use crate::error::{Error, Result};
use crate::proto::etcdserverpb::auth_server::AuthServer;
use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::proto::etcdserverpb::watch_server::WatchServer;
use crate::proto::v3electionpb::election_server::ElectionServer;
use crate::proto::v3lockpb::lock_server::LockServer;
use crate::server::{RequestContext, Server};
use crate::tls::{ClientConnInfo, ClientConnections};

/// The request context of a client call: who is calling and from where (the connection's
/// [`ClientConnInfo`]: address and verified certificate name), with the token it sent (gRPC
/// metadata `token`, or `authorization` as the gateway sends it).
pub(crate) fn context<T>(req: &tonic::Request<T>) -> RequestContext {
    let conn = req.extensions().get::<ClientConnInfo>();
    let mut ctx = context_from(req.metadata(), conn.and_then(|c| c.remote_addr));
    ctx.cert_common_name = conn.and_then(|c| c.common_name.clone());
    ctx
}

/// A client context from gRPC metadata (or the gateway's headers): the token it carries.
fn context_from(md: &tonic::metadata::MetadataMap, addr: Option<std::net::SocketAddr>) -> RequestContext {
    let mut ctx = RequestContext::client(addr);
    ctx.token =
        ["token", "authorization"].iter().find_map(|k| md.get(*k)).and_then(|v| v.to_str().ok()).map(str::to_string);
    ctx
}

/// The HTTP/2 settings of the client gRPC server.
#[derive(Debug, Clone, Copy)]
pub struct GrpcSettings {
    /// Streams one client connection may have open at once.
    pub max_concurrent_streams: u32,
    /// `--grpc-keepalive-min-time`: how often a client may ping (see [`GrpcSettings::min_ping_interval`]).
    pub keepalive_min_time: Duration,
    /// `--grpc-keepalive-interval`: how long a connection may be idle before the server pings it.
    pub keepalive_interval: Duration,
    /// `--grpc-keepalive-timeout`: how long the server waits for the ping's answer before closing.
    pub keepalive_timeout: Duration,
}

/// grpc-go's least time between a client's pings when the server sets no policy, which is what
/// etcd does for `--grpc-keepalive-min-time=0`.
const GRPC_DEFAULT_MIN_PING_INTERVAL: Duration = Duration::from_secs(5 * 60);

impl GrpcSettings {
    /// The client ping policy etcd gives grpc-go (`EnforcementPolicy{MinTime, PermitWithoutStream:
    /// false}`): with streams open a client may ping every `--grpc-keepalive-min-time`, without
    /// any only every two hours; the third ping too soon, with no response HEADERS or DATA sent
    /// in between, is answered with GOAWAY `ENHANCE_YOUR_CALM` `too_many_pings` and the
    /// connection closes (the vendored h2 enforces it: `vendor/README.md`).
    fn min_ping_interval(&self) -> Duration {
        if self.keepalive_min_time.is_zero() {
            GRPC_DEFAULT_MIN_PING_INTERVAL
        } else {
            self.keepalive_min_time
        }
    }

    /// The server's keepalive pings as etcd sets them: only when both
    /// `--grpc-keepalive-interval` and `--grpc-keepalive-timeout` are above zero (`0` disables).
    fn keepalive(&self) -> Option<(Duration, Duration)> {
        (!self.keepalive_interval.is_zero() && !self.keepalive_timeout.is_zero())
            .then_some((self.keepalive_interval, self.keepalive_timeout))
    }
}

/// gRPC framing headroom above `--max-request-bytes`, as etcd allows.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Serves the client API on one listener's `connections` (plain or TLS: `crate::tls`) until the
/// process ends, with etcd's HTTP/2 settings from `grpc` (`--max-concurrent-streams`, the server's
/// keepalive pings of `--grpc-keepalive-interval`/`--grpc-keepalive-timeout`, the client ping
/// policy of `--grpc-keepalive-min-time`).
pub async fn serve(
    server: Arc<Server>,
    connections: ClientConnections,
    max_request_bytes: usize,
    grpc: GrpcSettings,
) -> Result<()> {
    let max_recv = max_request_bytes + GRPC_OVERHEAD_BYTES;
    let kv = KvServer::new(kv::KvService { server: server.clone() })
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let maintenance = MaintenanceServer::new(maintenance::MaintenanceService { server: server.clone() })
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let cluster = ClusterServer::new(cluster::ClusterService { server: server.clone() });
    let lease = LeaseServer::new(lease::LeaseService { server: server.clone() });
    let auth = AuthServer::new(auth::AuthService { server: server.clone() });
    let watch = WatchServer::new(watch::WatchService { server: server.clone(), max_response_bytes: max_request_bytes })
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let lock = LockServer::new(lock::LockService { server: server.clone() });
    let election = ElectionServer::new(election::ElectionService { server: server.clone() });
    let router = Routes::new(kv)
        .add_service(maintenance)
        .add_service(cluster)
        .add_service(lease)
        .add_service(watch)
        .add_service(auth)
        .add_service(lock)
        .add_service(election)
        .into_axum_router()
        .route_service(kv::RangeRoute::PATH, kv::RangeRoute { server: server.clone(), max_request_bytes: max_recv })
        .layer(grpc_metrics::GrpcMetricsLayer::new())
        .merge(http::router(server.clone()))
        .merge(gateway::router(server, max_request_bytes));
    tonic::transport::Server::builder()
        .max_concurrent_streams(grpc.max_concurrent_streams)
        .http2_keepalive_interval(grpc.keepalive().map(|(interval, _)| interval))
        .http2_keepalive_timeout(grpc.keepalive().map(|(_, timeout)| timeout))
        .http2_min_ping_interval(Some(grpc.min_ping_interval()))
        .accept_http1(true)
        .add_routes(Routes::from(router))
        .serve_with_incoming(connections)
        .await
        .map_err(|e| Error::Internal(format!("client listener: {e}")))
}

/// Serves `/metrics` and `/health` on one `--listen-metrics-urls` listener (plain HTTP/1.1 and
/// HTTP/2) until the process ends.
pub async fn serve_metrics(server: Arc<Server>, listener: tokio::net::TcpListener) -> Result<()> {
    axum::serve(listener, http::metrics_router(server))
        .await
        .map_err(|e| Error::Internal(format!("metrics listener: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_keepalive_settings_mean_what_they_mean_to_etcd() {
        let s = |min, interval, timeout| GrpcSettings {
            max_concurrent_streams: u32::MAX,
            keepalive_min_time: Duration::from_secs(min),
            keepalive_interval: Duration::from_secs(interval),
            keepalive_timeout: Duration::from_secs(timeout),
        };
        assert_eq!(s(5, 7200, 20).min_ping_interval(), Duration::from_secs(5));
        assert_eq!(s(0, 7200, 20).min_ping_interval(), GRPC_DEFAULT_MIN_PING_INTERVAL);
        assert_eq!(s(5, 7200, 20).keepalive(), Some((Duration::from_secs(7200), Duration::from_secs(20))));
        assert_eq!(s(5, 0, 20).keepalive(), None);
        assert_eq!(s(5, 7200, 0).keepalive(), None);
    }

    #[test]
    fn the_connections_certificate_name_reaches_the_request_context() {
        let addr = "127.0.0.1:4000".parse().expect("address");
        let mut req = tonic::Request::new(());
        req.extensions_mut().insert(ClientConnInfo { remote_addr: Some(addr), common_name: Some("alice".into()) });
        let ctx = context(&req);
        assert_eq!(ctx.cert_common_name.as_deref(), Some("alice"));
        assert_eq!(ctx.origin, crate::server::Origin::Client(Some(addr)));
        assert_eq!(context(&tonic::Request::new(())).cert_common_name, None);
    }
}
