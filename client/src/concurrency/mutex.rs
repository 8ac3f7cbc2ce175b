use etcd_client::Txn;

use super::session::Handle;
use super::{acquire_key, first_created, still_owned, wait_deletes, Fence, Session};
use crate::error::{Error, Result};

/// A distributed mutex with etcd's `concurrency.Mutex` key layout (`<name>/<lease hex>`), so it
/// excludes `etcdctl lock <name>` and etcd's Lock service on the same name.
///
/// ```no_run
/// # async fn demo(client: etcd_client::Client) -> metastore_client::Result<()> {
/// use metastore_client::concurrency::{Mutex, Session};
/// let session = Session::new(&client, 10).await?;
/// let mut m = Mutex::new(&session, "locks/orders");
/// m.lock().await?;
/// let txn = etcd_client::Txn::new().and_then([etcd_client::TxnOp::put("orders/next", "42", None)]);
/// m.fence()?.txn(txn).await?; // refused with Error::LockLost if the lock was lost meanwhile
/// m.unlock().await?;
/// # Ok(()) }
/// ```
pub struct Mutex {
    session: Handle,
    prefix: String,
    key: String,
    /// Create revision of our key while held; the fencing token.
    rev: Option<i64>,
}

impl Mutex {
    pub fn new(session: &Session, name: &str) -> Mutex {
        let handle = session.handle();
        let prefix = format!("{name}/");
        let key = handle.key(&prefix);
        Mutex { session: handle, prefix, key, rev: None }
    }

    /// Waits until the lock is ours (queued behind earlier contenders in create-revision order).
    pub async fn lock(&mut self) -> Result<()> {
        self.session.check()?;
        let (rev, _) = acquire_key(&self.session, &self.key, b"").await?;
        let (owner, _) = first_created(&self.session.client, &self.prefix).await?;
        if owner.is_none_or(|kv| kv.create_revision() != rev) {
            wait_deletes(&self.session, &self.prefix, rev - 1).await?;
            still_owned(&self.session, &self.key, rev).await?;
        }
        self.rev = Some(rev);
        Ok(())
    }

    /// Takes the lock if it is free; [`Error::Locked`] (and no queued key left behind) otherwise.
    pub async fn try_lock(&mut self) -> Result<()> {
        self.session.check()?;
        let (rev, _) = acquire_key(&self.session, &self.key, b"").await?;
        let (owner, _) = first_created(&self.session.client, &self.prefix).await?;
        if owner.is_some_and(|kv| kv.create_revision() == rev) {
            self.rev = Some(rev);
            return Ok(());
        }
        self.session.client.kv_client().delete(self.key.as_str(), None).await?;
        Err(Error::Locked)
    }

    /// Releases the lock (deletes our key). Unlocking a lock not held is a no-op.
    pub async fn unlock(&mut self) -> Result<()> {
        self.session.client.kv_client().delete(self.key.as_str(), None).await?;
        self.rev = None;
        Ok(())
    }

    /// Our ownership key, `<name>/<lease hex>`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The fencing token of the current hold, if locked.
    pub fn token(&self) -> Option<i64> {
        self.rev
    }

    /// The fence of the current hold; [`Error::NotFound`] when not locked.
    pub fn fence(&self) -> Result<Fence> {
        let rev = self.rev.ok_or_else(|| Error::NotFound(format!("lock {}", self.prefix)))?;
        Ok(Fence::new(self.session.client.clone(), self.key.as_str(), rev))
    }

    /// Shorthand for `self.fence()?.txn(txn)`.
    pub async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse> {
        self.fence()?.txn(txn).await
    }
}
