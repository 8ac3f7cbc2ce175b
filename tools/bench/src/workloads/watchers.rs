//! Watch streams shared by `watch`, `watch-latency` and `k8s`: open a stream, create watchers on
//! it one at a time (timing each creation: request sent until the `created` response), then
//! hand the stream to a receiver task that reports every response until told to stop.

use std::future::Future;
use std::time::{Duration, Instant};

use etcd_client::{Client, WatchOptions, WatchResponse, WatchStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::recorder::{error_code, error_message, Recorder};

/// Waits for the `created` response of the watcher just requested on `stream`.
async fn await_created(stream: &mut WatchStream) -> Result<(), etcd_client::Error> {
    loop {
        match stream.message().await? {
            Some(r) if r.created() && r.canceled() => {
                return Err(etcd_client::Error::WatchError(format!("watch canceled: {}", r.cancel_reason())))
            }
            Some(r) if r.created() => return Ok(()),
            Some(_) => continue,
            None => return Err(etcd_client::Error::WatchError("watch stream closed".into())),
        }
    }
}

async fn timed<T>(
    limit: Duration,
    f: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, etcd_client::Error> {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| Err(etcd_client::Error::WatchError("watch creation timed out".into())))
}

/// Opens a stream on `client` with `count` watchers, watcher i on `key_of(i)`. Each creation is
/// recorded in `rec` (kind `kind`); stops at the first failure. Returns the stream when at least
/// one watcher was created, with the number created.
pub async fn open(
    client: &Client,
    count: usize,
    key_of: impl Fn(usize) -> (Vec<u8>, WatchOptions),
    rec: &Recorder,
    kind: usize,
    limit: Duration,
) -> Option<(WatchStream, usize)> {
    let mut stream: Option<WatchStream> = None;
    let mut created = 0;
    for i in 0..count {
        let (key, options) = key_of(i);
        let sent = Instant::now();
        let result = match stream.as_mut() {
            None => {
                let mut wc = client.watch_client();
                timed(limit, async {
                    let mut s = wc.watch(key, Some(options)).await?;
                    await_created(&mut s).await?;
                    Ok(s)
                })
                .await
                .map(|s| stream = Some(s))
            }
            Some(s) => {
                timed(limit, async {
                    s.watch(key, Some(options)).await?;
                    await_created(s).await
                })
                .await
            }
        };
        match result {
            Ok(()) => {
                rec.ok(kind, sent.elapsed());
                created += 1;
            }
            Err(e) => {
                rec.err(kind, &error_code(&e), &error_message(&e));
                break;
            }
        }
    }
    stream.map(|s| (s, created))
}

/// Runs `on_response` for every response on `stream` until `stop` changes or the stream ends.
pub fn receive<F>(mut stream: WatchStream, mut stop: watch::Receiver<bool>, mut on_response: F) -> JoinHandle<()>
where
    F: FnMut(&WatchResponse, Instant) + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                m = stream.message() => match m {
                    Ok(Some(resp)) => on_response(&resp, Instant::now()),
                    _ => return,
                },
            }
        }
    })
}

/// Polls `done()` until it returns true or `limit` passes; returns whether it became true.
pub async fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}
