//! Watch streams, the server's side: one [`WatchSession`] per client stream carries many
//! watches over the MVCC watch hub, and turns the hub's deliveries into complete etcd responses.
//!
//! ```text
//!  client ─WatchRequest─► WatchSession::handle ──create/cancel/progress──► WatchHub
//!                             │ refusals, cancel answers                   │ Delivery (bounded channel)
//!                             └──────────────► one channel ◄───────────────┘
//!                                                  │ send loop: header, prev_kv, fragments
//!  client ◄────────────── WatchResponse ───────────┘
//! ```
//!
//! Control answers travel on the same channel as deliveries; the hub itself sends a watch's
//! `created` answer while registering it, so the answer precedes the watch's events and names
//! the revision the watch starts after. Watch ids are chosen by the client or, when 0, assigned
//! as etcd does (counting up from 0, skipping ids in use, never reusing one).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prost::Message;
use tokio::sync::mpsc;

use super::{RequestContext, Server};
use crate::mvcc::watch::{Delivery, WatchSpec};
use crate::mvcc::{KeyRange, RangeOptions};
use crate::proto::etcdserverpb::watch_create_request::FilterType;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use crate::proto::mvccpb::Event;

/// Deliveries buffered per stream before its watchers fall behind and catch up from history.
const STREAM_BUFFER: usize = 128;

static NEXT_STREAM: AtomicU64 = AtomicU64::new(1);

/// Per-watch options the send loop needs.
#[derive(Clone, Copy, Default)]
struct Options {
    prev_kv: bool,
    fragment: bool,
}

type Shared = Arc<Mutex<HashMap<i64, Options>>>;

/// One client watch stream. Dropping it ends every watch of the stream.
pub struct WatchSession {
    server: Arc<Server>,
    /// The stream's caller, resolved again at every create (its token may expire meanwhile).
    ctx: RequestContext,
    /// The responses' channel, watched to learn when the client stops listening.
    client: mpsc::Sender<WatchResponse>,
    stream: u64,
    tx: mpsc::Sender<Delivery>,
    options: Shared,
    next_auto_id: i64,
}

impl Server {
    /// Opens a watch stream: the session takes the client's requests, the receiver yields the
    /// complete responses to send (responses over `max_response_bytes` are fragmented for
    /// watches that allow it).
    pub fn open_watch(
        self: &Arc<Self>,
        ctx: &RequestContext,
        max_response_bytes: usize,
    ) -> (WatchSession, mpsc::Receiver<WatchResponse>) {
        let stream = NEXT_STREAM.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let (out_tx, out_rx) = mpsc::channel(16);
        let options: Shared = Arc::default();
        let client = out_tx.clone();
        tokio::spawn(send_loop(self.clone(), rx, out_tx, options.clone(), max_response_bytes));
        crate::metrics::get().gauges.watch_streams.inc();
        let session =
            WatchSession { server: self.clone(), ctx: ctx.clone(), client, stream, tx, options, next_auto_id: 0 };
        (session, out_rx)
    }
}

impl WatchSession {
    /// Handles one request of the client's stream; `false` once the stream's responses can no
    /// longer be sent (the client went away).
    pub async fn handle(&mut self, req: WatchRequest) -> bool {
        let hub = &self.server.hub;
        let revision = self.server.kv.read().rev();
        let answer = match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => {
                if let Err(e) = self.permitted(&c).await {
                    let reason = super::auth::watch_refusal(&e);
                    return self.tx.send(Delivery::Canceled { watch_id: -1, revision, reason }).await.is_ok();
                }
                let watch_id = if c.watch_id != 0 {
                    c.watch_id
                } else {
                    let used = self.options.lock().expect("watch options lock");
                    while used.contains_key(&self.next_auto_id) {
                        self.next_auto_id += 1;
                    }
                    // etcd never hands out an automatic id twice on a stream, even once freed.
                    self.next_auto_id += 1;
                    self.next_auto_id - 1
                };
                // Room for the created answer, which the hub sends while it registers the watch,
                // so the answer precedes the watch's events and names the revision it starts after.
                let Ok(created) = self.tx.clone().reserve_owned().await else { return false };
                let opts = Options { prev_kv: c.prev_kv, fragment: c.fragment };
                let fresh = self.options.lock().expect("watch options lock").insert(watch_id, opts).is_none();
                if fresh && hub.watch(spec(self.stream, watch_id, &c), self.tx.clone(), created) {
                    return true;
                }
                let reason = "mvcc: duplicate watch ID provided on the WatchStream".to_string();
                Some(Delivery::Canceled { watch_id: -1, revision, reason })
            }
            Some(RequestUnion::CancelRequest(c)) => {
                let cancelled = hub.cancel(self.stream, c.watch_id);
                self.options.lock().expect("watch options lock").remove(&c.watch_id);
                cancelled.then(|| Delivery::Canceled { watch_id: c.watch_id, revision, reason: String::new() })
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                hub.request_progress(self.stream, self.tx.clone());
                None
            }
            None => None,
        };
        match answer {
            Some(d) => self.tx.send(d).await.is_ok(),
            None => true,
        }
    }
}

impl WatchSession {
    /// Waits until the client stops reading responses. A client that closed its side of the
    /// stream still gets events until then, as etcd sends them.
    pub async fn client_gone(&self) {
        self.client.closed().await
    }

    /// A watch needs READ on its range, checked once at creation. As etcd 3.4, a watch "from a
    /// key on" (`range_end` `"\0"`) is checked as that one key.
    async fn permitted(&self, c: &WatchCreateRequest) -> crate::error::Result<()> {
        let caller = self.server.caller(&self.ctx).await?;
        let key = if c.key.is_empty() { vec![0] } else { c.key.clone() };
        let range_end: &[u8] = if c.range_end == [0] { &[] } else { &c.range_end };
        caller.check(&self.server.auth, crate::auth::Access::Read, &key, range_end)
    }
}

impl Drop for WatchSession {
    fn drop(&mut self) {
        self.server.hub.close_stream(self.stream);
        crate::metrics::get().gauges.watch_streams.dec();
    }
}

fn spec(stream: u64, watch_id: i64, c: &WatchCreateRequest) -> WatchSpec {
    // etcd: an empty key means "\0", the smallest key.
    let key = if c.key.is_empty() { vec![0] } else { c.key.clone() };
    WatchSpec {
        stream,
        watch_id,
        range: KeyRange::new(&key, &c.range_end),
        start_rev: c.start_revision,
        no_put: c.filters.contains(&(FilterType::Noput as i32)),
        no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
        progress_notify: c.progress_notify,
    }
}

async fn send_loop(
    server: Arc<Server>,
    mut rx: mpsc::Receiver<Delivery>,
    out: mpsc::Sender<WatchResponse>,
    options: Shared,
    max_bytes: usize,
) {
    while let Some(d) = rx.recv().await {
        for resp in responses(&server, d, &options, max_bytes) {
            if out.send(resp).await.is_err() {
                return; // client went away; the recv loop closes the stream's watches
            }
        }
    }
}

fn responses(server: &Server, d: Delivery, options: &Shared, max_bytes: usize) -> Vec<WatchResponse> {
    let base = |watch_id: i64, revision: i64| WatchResponse {
        header: Some(server.header(revision)),
        watch_id,
        ..Default::default()
    };
    match d {
        Delivery::Created { watch_id, revision } => vec![WatchResponse { created: true, ..base(watch_id, revision) }],
        Delivery::Canceled { watch_id, revision, reason } => {
            let created = watch_id == -1;
            vec![WatchResponse { created, canceled: true, cancel_reason: reason, ..base(watch_id, revision) }]
        }
        Delivery::Progress { watch_id, revision } => vec![base(watch_id, revision)],
        Delivery::Compacted { watch_id, compact_revision } => {
            options.lock().expect("watch options lock").remove(&watch_id);
            // etcd leaves the header revision of this response at 0.
            vec![WatchResponse { compact_revision, canceled: true, ..base(watch_id, 0) }]
        }
        Delivery::Events { watch_id, revision, mut events } => {
            let opts = options.lock().expect("watch options lock").get(&watch_id).copied().unwrap_or_default();
            if opts.prev_kv {
                fill_prev_kv(server, &mut events);
            }
            let resp = WatchResponse { events, ..base(watch_id, revision) };
            if opts.fragment && resp.encoded_len() > max_bytes {
                fragment(resp, max_bytes)
            } else {
                vec![resp]
            }
        }
    }
}

/// etcd reads the previous version of each key at `mod_revision - 1`; a compacted one is omitted.
fn fill_prev_kv(server: &Server, events: &mut [Event]) {
    let view = server.kv.read();
    for ev in events {
        let Some(kv) = &ev.kv else { continue };
        let opts = RangeOptions { rev: kv.mod_revision - 1, ..Default::default() };
        if let Ok(res) = view.range(&KeyRange::Single(kv.key.clone()), opts) {
            ev.prev_kv = res.kvs.into_iter().next();
        }
    }
}

/// Splits a response into pieces under `max_bytes`; all but the last carry `fragment`.
fn fragment(resp: WatchResponse, max_bytes: usize) -> Vec<WatchResponse> {
    let WatchResponse { header, watch_id, events, .. } = resp;
    let mut pieces: Vec<WatchResponse> = Vec::new();
    let mut current = WatchResponse { header, watch_id, ..Default::default() };
    for ev in events {
        if !current.events.is_empty() && current.encoded_len() + ev.encoded_len() + 8 > max_bytes {
            let next = WatchResponse { header, watch_id, ..Default::default() };
            pieces.push(std::mem::replace(&mut current, next));
        }
        current.events.push(ev);
    }
    pieces.push(current);
    let last = pieces.len() - 1;
    for p in &mut pieces[..last] {
        p.fragment = true;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::mvccpb::KeyValue;

    #[test]
    fn fragments_stay_under_the_limit_and_keep_every_event() {
        let events: Vec<Event> = (0..50)
            .map(|i| Event {
                kv: Some(KeyValue { key: format!("k{i}").into_bytes(), value: vec![b'x'; 100], ..Default::default() }),
                ..Default::default()
            })
            .collect();
        let resp = WatchResponse { watch_id: 3, events: events.clone(), ..Default::default() };
        let pieces = fragment(resp, 1000);
        assert!(pieces.len() > 1);
        assert!(pieces.iter().all(|p| p.encoded_len() <= 1000));
        assert!(pieces[..pieces.len() - 1].iter().all(|p| p.fragment));
        assert!(!pieces.last().unwrap().fragment);
        let joined: Vec<Event> = pieces.into_iter().flat_map(|p| p.events).collect();
        assert_eq!(joined, events);
    }
}
