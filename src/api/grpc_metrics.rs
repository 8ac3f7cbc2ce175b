//! go-grpc-prometheus's server metrics as a tower layer on the client gRPC routes:
//! `grpc_server_{started,handled,msg_received,msg_sent}_total{grpc_type,grpc_service,grpc_method}`
//! (`handled` with `grpc_code`), `grpc_server_handling_seconds` with `--metrics extensive`, and
//! etcd's `etcd_network_client_grpc_{sent,received}_bytes_total`.
//!
//! Every series is resolved once, when the layer is built, for every method of the client API and
//! (for `handled`) every gRPC code, so they show as zeros from the start as go-grpc-prometheus
//! pre-registers them; a call only looks its path up in a map of `&'static str` and bumps atomics.
//! Messages are counted from the gRPC length prefixes in the bodies; the code is the `grpc-status`
//! of the trailers (or of a trailers-only response); a response dropped before either is
//! `Canceled`. Bytes are the gRPC frames (message plus 5-byte prefix; etcd counts messages).
//!
//! Not done: the JSON gateway calls the server directly, not over gRPC, so its calls are not
//! counted here (etcd's gateway dials its own gRPC server and so is).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use futures::future::BoxFuture;
use http_body::Frame;
use prometheus::{Histogram, IntCounter};

use crate::metrics;

/// go-grpc-prometheus's `grpc_type` of each method that is not unary.
const STREAMING: [(&str, &str); 4] = [
    ("/etcdserverpb.Watch/Watch", "bidi_stream"),
    ("/etcdserverpb.Lease/LeaseKeepAlive", "bidi_stream"),
    ("/etcdserverpb.Maintenance/Snapshot", "server_stream"),
    ("/v3electionpb.Election/Observe", "server_stream"),
];

/// Every method of the client API, as `(service, methods)`.
const METHODS: [(&str, &[&str]); 8] = [
    ("etcdserverpb.KV", &["Range", "Put", "DeleteRange", "Txn", "Compact"]),
    ("etcdserverpb.Watch", &["Watch"]),
    ("etcdserverpb.Lease", &["LeaseGrant", "LeaseRevoke", "LeaseKeepAlive", "LeaseTimeToLive", "LeaseLeases"]),
    ("etcdserverpb.Cluster", &["MemberAdd", "MemberRemove", "MemberUpdate", "MemberList", "MemberPromote"]),
    ("etcdserverpb.Maintenance", &["Alarm", "Status", "Defragment", "Hash", "HashKV", "Snapshot", "MoveLeader"]),
    (
        "etcdserverpb.Auth",
        &[
            "AuthEnable",
            "AuthDisable",
            "AuthStatus",
            "Authenticate",
            "UserAdd",
            "UserGet",
            "UserList",
            "UserDelete",
            "UserChangePassword",
            "UserGrantRole",
            "UserRevokeRole",
            "RoleAdd",
            "RoleGet",
            "RoleList",
            "RoleDelete",
            "RoleGrantPermission",
            "RoleRevokePermission",
        ],
    ),
    ("v3lockpb.Lock", &["Lock", "Unlock"]),
    ("v3electionpb.Election", &["Campaign", "Proclaim", "Leader", "Observe", "Resign"]),
];

/// gRPC codes by number, named as Go's `codes.Code.String()`.
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const CANCELED: usize = 1;
const UNKNOWN: usize = 2;

/// One method's series, resolved once.
struct MethodMetrics {
    started: IntCounter,
    handled: [IntCounter; 17],
    msg_received: IntCounter,
    msg_sent: IntCounter,
    handling: Option<Histogram>,
}

/// The layer over the client gRPC routes.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    methods: Arc<HashMap<String, Arc<MethodMetrics>>>,
}

impl GrpcMetricsLayer {
    pub fn new() -> Self {
        let m = metrics::get();
        let mut methods = HashMap::new();
        for (service, names) in METHODS {
            for name in names {
                let path = format!("/{service}/{name}");
                let kind = STREAMING.iter().find(|(p, _)| *p == path).map_or("unary", |(_, k)| *k);
                let labels = [kind, service, name];
                let handled = CODES.map(|code| m.grpc_handled.with_label_values(&[kind, service, name, code]));
                let mm = MethodMetrics {
                    started: m.grpc_started.with_label_values(&labels),
                    handled,
                    msg_received: m.grpc_msg_received.with_label_values(&labels),
                    msg_sent: m.grpc_msg_sent.with_label_values(&labels),
                    handling: m.grpc_handling.as_ref().map(|h| h.with_label_values(&labels)),
                };
                methods.insert(path, Arc::new(mm));
            }
        }
        GrpcMetricsLayer { methods: Arc::new(methods) }
    }
}

impl Default for GrpcMetricsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService { inner, methods: self.methods.clone() }
    }
}

#[derive(Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    methods: Arc<HashMap<String, Arc<MethodMetrics>>>,
}

impl<S> tower::Service<http::Request<Body>> for GrpcMetricsService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let Some(method) = self.methods.get(req.uri().path()).cloned() else {
            return Box::pin(self.inner.call(req));
        };
        method.started.inc();
        let start = Instant::now();
        let counted = method.clone();
        let req = req.map(|inner| Body::new(RequestBody { inner, frames: Frames::default(), method: counted }));
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            let code = status_code(resp.headers());
            Ok(resp.map(|inner| Body::new(ResponseBody { inner, frames: Frames::default(), method, start, code })))
        })
    }
}

/// The `grpc-status` of a header map, as an index into [`CODES`].
fn status_code(headers: &http::HeaderMap) -> Option<usize> {
    let v = headers.get("grpc-status")?.to_str().ok()?.parse::<usize>().ok()?;
    Some(if v < CODES.len() { v } else { UNKNOWN })
}

/// Counts gRPC messages in a byte stream by their 5-byte prefixes (flag, big-endian length).
#[derive(Default)]
struct Frames {
    prefix_read: u8,
    len: u32,
    remaining: u64,
}

impl Frames {
    /// Counts a data frame of a body: its bytes into `bytes`, the messages it completes into
    /// `messages`.
    fn count(&mut self, data: &[u8], bytes: &IntCounter, messages: &IntCounter) {
        bytes.inc_by(data.len() as u64);
        let n = self.feed(data);
        if n > 0 {
            messages.inc_by(n);
        }
    }

    /// The number of messages whose prefix ends in `chunk`.
    fn feed(&mut self, mut chunk: &[u8]) -> u64 {
        let mut messages = 0;
        while !chunk.is_empty() {
            if self.remaining > 0 {
                let skip = self.remaining.min(chunk.len() as u64);
                chunk = &chunk[skip as usize..];
                self.remaining -= skip;
                continue;
            }
            if self.prefix_read > 0 {
                self.len = (self.len << 8) | u32::from(chunk[0]);
            }
            chunk = &chunk[1..];
            self.prefix_read += 1;
            if self.prefix_read == 5 {
                messages += 1;
                self.remaining = u64::from(self.len);
                (self.prefix_read, self.len) = (0, 0);
            }
        }
        messages
    }
}

struct RequestBody {
    inner: Body,
    frames: Frames,
    method: Arc<MethodMetrics>,
}

impl http_body::Body for RequestBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.frames.count(data, &metrics::get().grpc_received_bytes, &this.method.msg_received);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Counts messages sent and records the call as handled when dropped (after its trailers, or
/// cut short), with the code seen.
struct ResponseBody {
    inner: Body,
    frames: Frames,
    method: Arc<MethodMetrics>,
    start: Instant,
    code: Option<usize>,
}

impl http_body::Body for ResponseBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.frames.count(data, &metrics::get().grpc_sent_bytes, &this.method.msg_sent);
            } else if let Some(trailers) = frame.trailers_ref() {
                this.code = status_code(trailers).or(this.code);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.method.handled[self.code.unwrap_or(CANCELED)].inc();
        if let Some(h) = &self.method.handling {
            h.observe(self.start.elapsed().as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_counted_across_chunk_boundaries() {
        let mut f = Frames::default();
        // Two messages: 3 bytes, then 0 bytes, split at awkward places.
        let stream = [0u8, 0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0, 0];
        assert_eq!(f.feed(&stream[..2]), 0);
        assert_eq!(f.feed(&stream[2..6]), 1);
        assert_eq!(f.feed(&stream[6..]), 1);
        assert_eq!(f.feed(&[0, 0, 0, 1, 0]), 1);
        assert_eq!(f.remaining, 256);
    }

    #[test]
    fn every_method_and_code_is_resolved_up_front() {
        let layer = GrpcMetricsLayer::new();
        assert_eq!(layer.methods.len(), METHODS.iter().map(|(_, m)| m.len()).sum::<usize>());
        let text = metrics::render();
        assert!(text.contains(
            "grpc_server_handled_total{grpc_code=\"Unavailable\",grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 0"
        ));
        assert!(text.contains("grpc_type=\"bidi_stream\""));
    }
}
