use etcd_client::{EventType, GetOptions, SortOrder, SortTarget, WatchOptions};

use super::session::Handle;
use super::{acquire_key, still_owned, Fence, Session};
use crate::error::{Error, Result};

/// A counting semaphore: the `permits` keys under `<name>/` with the lowest create revisions hold
/// a permit. Every user of one name must agree on `permits`.
pub struct Semaphore {
    session: Handle,
    prefix: String,
    key: String,
    permits: i64,
    rev: Option<i64>,
}

impl Semaphore {
    pub fn new(session: &Session, name: &str, permits: u32) -> Semaphore {
        let handle = session.handle();
        let prefix = format!("{name}/");
        let key = handle.key(&prefix);
        Semaphore { session: handle, prefix, key, permits: i64::from(permits.max(1)), rev: None }
    }

    /// Waits for a permit.
    pub async fn acquire(&mut self) -> Result<()> {
        self.session.check()?;
        let (rev, _) = acquire_key(&self.session, &self.key, b"").await?;
        loop {
            let (holds, header_rev) = self.holds().await?;
            if holds {
                still_owned(&self.session, &self.key, rev).await?;
                self.rev = Some(rev);
                return Ok(());
            }
            tokio::select! {
                r = self.wait_release(header_rev) => r?,
                _ = self.session.lost() => return Err(Error::SessionExpired),
            }
        }
    }

    /// Takes a permit if one is free; [`Error::Locked`] otherwise.
    pub async fn try_acquire(&mut self) -> Result<()> {
        self.session.check()?;
        let (rev, _) = acquire_key(&self.session, &self.key, b"").await?;
        if self.holds().await?.0 {
            self.rev = Some(rev);
            return Ok(());
        }
        self.session.client.kv_client().delete(self.key.as_str(), None).await?;
        Err(Error::Locked)
    }

    pub async fn release(&mut self) -> Result<()> {
        self.session.client.kv_client().delete(self.key.as_str(), None).await?;
        self.rev = None;
        Ok(())
    }

    pub fn fence(&self) -> Result<Fence> {
        let rev = self.rev.ok_or_else(|| Error::NotFound(format!("semaphore permit {}", self.prefix)))?;
        Ok(Fence::new(self.session.client.clone(), self.key.as_str(), rev))
    }

    /// Whether our key is among the first `permits` by create revision, and the read's revision.
    async fn holds(&self) -> Result<(bool, i64)> {
        let opts = GetOptions::new()
            .with_prefix()
            .with_keys_only()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(self.permits);
        let resp = self.session.client.kv_client().get(self.prefix.as_str(), Some(opts)).await?;
        let rev = resp.header().map_or(0, |h| h.revision());
        Ok((resp.kvs().iter().any(|kv| kv.key() == self.key.as_bytes()), rev))
    }

    async fn wait_release(&self, rev: i64) -> Result<()> {
        let opts = WatchOptions::new().with_prefix().with_start_revision(rev + 1);
        let mut stream = self.session.client.watch_client().watch(self.prefix.as_str(), Some(opts)).await?;
        while let Some(resp) = stream.message().await? {
            if resp.canceled() || resp.events().iter().any(|e| e.event_type() == EventType::Delete) {
                return Ok(());
            }
        }
        Ok(())
    }
}
