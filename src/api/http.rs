//! Plain HTTP endpoints served on the client port beside gRPC, as etcd serves them:
//! `GET /health`, `GET /version`, `GET /metrics` (Prometheus text, etcd's metric names).

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

async fn metrics(State(server): State<Arc<Server>>) -> String {
    let status = server.status();
    let lines = [
        ("etcd_server_has_leader", "gauge", (status.leader_id != 0) as u64),
        ("etcd_server_is_leader", "gauge", status.is_leader as u64),
        ("etcd_server_proposals_committed_total", "gauge", status.commit),
        ("etcd_server_proposals_applied_total", "gauge", status.applied),
        ("etcd_debugging_mvcc_current_revision", "gauge", status.revision as u64),
        ("etcd_mvcc_db_total_size_in_bytes", "gauge", status.db_size),
        ("etcd_server_leader_changes_seen_total", "counter", status.term),
    ];
    let mut out = String::new();
    for (name, kind, value) in lines {
        out.push_str(&format!("# TYPE {name} {kind}\n{name} {value}\n"));
    }
    out
}
