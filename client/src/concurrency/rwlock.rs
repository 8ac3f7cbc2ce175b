use etcd_client::Txn;

use super::session::Handle;
use super::{acquire_key, still_owned, wait_deletes, Fence, Session};
use crate::error::{Error, Result};

/// A reader-writer lock: readers share, a writer excludes everyone. Keys are
/// `<name>/read/<lease hex>` and `<name>/write/<lease hex>`; a reader waits for the delete of the
/// last writer queued before it, a writer for the delete of the last key of either kind queued
/// before it (etcd's `recipes.RWMutex`, with fencing). Queue order is create-revision order, so
/// writers are not starved by a stream of readers.
pub struct RwLock {
    session: Handle,
    prefix: String,
    held: Option<(String, i64)>,
}

impl RwLock {
    pub fn new(session: &Session, name: &str) -> RwLock {
        RwLock { session: session.handle(), prefix: format!("{name}/"), held: None }
    }

    pub async fn read(&mut self) -> Result<()> {
        let key = self.session.key(&format!("{}read/", self.prefix));
        let wait_on = format!("{}write/", self.prefix);
        self.acquire(key, &wait_on).await
    }

    pub async fn write(&mut self) -> Result<()> {
        let key = self.session.key(&format!("{}write/", self.prefix));
        let wait_on = self.prefix.clone();
        self.acquire(key, &wait_on).await
    }

    async fn acquire(&mut self, key: String, wait_on: &str) -> Result<()> {
        self.session.check()?;
        let (rev, _) = acquire_key(&self.session, &key, b"").await?;
        wait_deletes(&self.session, wait_on, rev - 1).await?;
        still_owned(&self.session, &key, rev).await?;
        self.held = Some((key, rev));
        Ok(())
    }

    pub async fn unlock(&mut self) -> Result<()> {
        if let Some((key, _)) = self.held.take() {
            self.session.client.kv_client().delete(key, None).await?;
        }
        Ok(())
    }

    pub fn fence(&self) -> Result<Fence> {
        let (key, rev) = self.held.as_ref().ok_or_else(|| Error::NotFound(format!("rwlock {}", self.prefix)))?;
        Ok(Fence::new(self.session.client.clone(), key.as_str(), *rev))
    }

    pub async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse> {
        self.fence()?.txn(txn).await
    }
}
