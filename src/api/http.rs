//! Plain HTTP endpoints served on the client port beside gRPC, as etcd serves them:
//! `GET /health`, `GET /version`, `GET /metrics` (Prometheus text, etcd's metric names: see
//! `crate::metrics`); and the `--listen-metrics-urls` listeners' `/metrics` and `/health`.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;

use crate::server::{Server, ETCD_VERSION};

pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(server)
}

async fn health(State(server): State<Arc<Server>>) -> (http::StatusCode, &'static str) {
    if !server.active_alarms().is_empty() {
        // etcd 3.4 names no reason for an alarm.
        return (http::StatusCode::SERVICE_UNAVAILABLE, "{\"health\":\"false\"}");
    }
    let ok = server.status().leader_id != 0;
    if ok {
        (http::StatusCode::OK, "{\"health\":\"true\"}")
    } else {
        (http::StatusCode::SERVICE_UNAVAILABLE, "{\"health\":\"false\",\"reason\":\"RAFT NO LEADER\"}")
    }
}

async fn version() -> String {
    format!("{{\"etcdserver\":\"{ETCD_VERSION}\",\"etcdcluster\":\"3.4.0\"}}")
}

async fn metrics(State(server): State<Arc<Server>>) -> ([(http::header::HeaderName, &'static str); 1], String) {
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], server.metrics_text())
}

/// What a `--listen-metrics-urls` listener serves: `/metrics` and `/health`, as etcd's.
pub fn metrics_router(server: Arc<Server>) -> Router {
    Router::new().route("/health", get(health)).route("/metrics", get(metrics)).with_state(server)
}
