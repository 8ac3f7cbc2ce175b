use std::time::Duration;

use etcd_client::{Client, LeaseGrantOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

use crate::error::{Error, Result};

/// Default session TTL in seconds, as etcd's Go `concurrency` package.
pub const DEFAULT_TTL: i64 = 60;

/// A lease kept alive by a background task. Locks, elections, semaphores and buffer claims made
/// through a session hold exactly as long as its lease: when [`Session::lost`] resolves, all of
/// them are gone (or will be once the server expires the lease) and the holder must stop acting
/// on them.
pub struct Session {
    client: Client,
    lease: i64,
    ttl: i64,
    alive: watch::Receiver<bool>,
    keeper: Option<JoinHandle<()>>,
}

impl Session {
    /// Grants a lease of `ttl` seconds and starts keeping it alive.
    pub async fn new(client: &Client, ttl: i64) -> Result<Session> {
        let mut c = client.clone();
        let lease = c.lease_grant(ttl, None::<LeaseGrantOptions>).await?;
        Ok(Self::from_lease(client, lease.id(), lease.ttl()))
    }

    /// Keeps an existing lease alive (e.g. one granted by another component).
    pub fn from_lease(client: &Client, lease: i64, ttl: i64) -> Session {
        let (tx, alive) = watch::channel(true);
        let keeper = tokio::spawn(keep_alive(client.clone(), lease, ttl, tx));
        Session { client: client.clone(), lease, ttl, alive, keeper: Some(keeper) }
    }

    pub fn lease_id(&self) -> i64 {
        self.lease
    }

    pub fn ttl(&self) -> i64 {
        self.ttl
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// False once the lease expired or keep-alives failed for longer than the TTL.
    pub fn is_alive(&self) -> bool {
        *self.alive.borrow()
    }

    /// Resolves when the session is lost (immediately if it already is).
    pub async fn lost(&self) {
        let mut alive = self.alive.clone();
        // An error means the keeper is gone, which only happens after it reported the loss.
        let _lost = alive.wait_for(|a| !*a).await;
    }

    pub(crate) fn handle(&self) -> Handle {
        Handle { client: self.client.clone(), lease: self.lease, alive: self.alive.clone() }
    }

    /// Stops refreshing the lease without revoking it (etcd's `Session.Orphan`): the lease, and
    /// everything held through it, expires after the TTL. This is also what a process paused
    /// longer than its TTL looks like to the rest of the fleet.
    pub fn orphan(&mut self) {
        if let Some(k) = self.keeper.take() {
            k.abort();
        }
    }

    /// Stops the keep-alives and revokes the lease, releasing everything held through it at once.
    pub async fn close(mut self) -> Result<()> {
        self.orphan();
        self.client.lease_revoke(self.lease).await?;
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.orphan();
    }
}

/// Sends a keep-alive every TTL/3 and reopens the stream after errors; reports the session lost
/// when the server says the lease is gone or no keep-alive succeeded for a whole TTL.
async fn keep_alive(client: Client, lease: i64, ttl: i64, alive: watch::Sender<bool>) {
    let ttl = Duration::from_secs(ttl.max(1) as u64);
    let period = (ttl / 3).max(Duration::from_millis(100));
    let mut last_ok = Instant::now();
    while last_ok.elapsed() < ttl {
        let (mut keeper, mut stream) = match timeout(period, client.lease_client().keep_alive(lease)).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(etcd_client::Error::LeaseKeepAliveError(_))) => break, // lease not found: expired
            Ok(Err(_)) | Err(_) => {
                sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        last_ok = Instant::now();
        loop {
            sleep(period).await;
            if keeper.keep_alive().await.is_err() {
                break;
            }
            match timeout(period, stream.message()).await {
                Ok(Ok(Some(resp))) if resp.ttl() > 0 => last_ok = Instant::now(),
                Ok(Ok(Some(_))) => {
                    alive.send_replace(false);
                    return;
                }
                _ => break,
            }
        }
    }
    alive.send_replace(false);
}

/// What a lock, election or claim keeps of its session: the client, the lease, and the liveness
/// signal, so the recipes need no lifetime tied to the [`Session`].
#[derive(Clone)]
pub(crate) struct Handle {
    pub client: Client,
    pub lease: i64,
    pub alive: watch::Receiver<bool>,
}

impl Handle {
    pub fn check(&self) -> Result<()> {
        if *self.alive.borrow() {
            Ok(())
        } else {
            Err(Error::SessionExpired)
        }
    }

    pub async fn lost(&self) {
        let mut alive = self.alive.clone();
        let _lost = alive.wait_for(|a| !*a).await;
    }

    /// `<prefix><lease id in lowercase hex>`, the key layout of etcd's `concurrency` package.
    pub fn key(&self, prefix: &str) -> String {
        format!("{prefix}{:x}", self.lease)
    }
}
