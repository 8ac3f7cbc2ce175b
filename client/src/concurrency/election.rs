use etcd_client::{Client, Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, WatchOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::session::Handle;
use super::{acquire_key, first_created, still_owned, wait_deletes, Fence, Session};
use crate::error::{Error, Result};

/// The current leader of an election: the campaign key with the lowest create revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Create revision of the leader's key: changes with every new leadership term.
    pub rev: i64,
}

/// Leader election with etcd's `concurrency.Election` layout (`<name>/<lease hex>`, the value is
/// the proposal), so it interoperates with `etcdctl elect <name> <proposal>`.
///
/// ```no_run
/// # async fn demo(client: etcd_client::Client) -> metastore_client::Result<()> {
/// use metastore_client::concurrency::{Election, Session};
/// let session = Session::new(&client, 5).await?;
/// let mut e = Election::new(&session, "elections/flusher");
/// e.campaign("host-a:8080").await?; // returns once we lead
/// e.proclaim("host-a:9090").await?;
/// e.resign().await?;
/// # Ok(()) }
/// ```
pub struct Election {
    session: Handle,
    prefix: String,
    key: String,
    /// Create revision of our key while we lead.
    rev: Option<i64>,
}

impl Election {
    pub fn new(session: &Session, name: &str) -> Election {
        let handle = session.handle();
        let prefix = format!("{name}/");
        let key = handle.key(&prefix);
        Election { session: handle, prefix, key, rev: None }
    }

    /// Puts our proposal in the queue and waits until every earlier campaigner is gone.
    pub async fn campaign(&mut self, value: impl Into<Vec<u8>>) -> Result<()> {
        let value = value.into();
        self.session.check()?;
        let (rev, written_at) = acquire_key(&self.session, &self.key, &value).await?;
        if rev != written_at {
            // Re-campaigning through the same session updates our existing key in place.
            self.put_if_rev(rev, value).await?;
        }
        wait_deletes(&self.session, &self.prefix, rev - 1).await?;
        still_owned(&self.session, &self.key, rev).await?;
        self.rev = Some(rev);
        Ok(())
    }

    /// Changes the leader's value without a new election; [`Error::NotLeader`] if not leading.
    pub async fn proclaim(&self, value: impl Into<Vec<u8>>) -> Result<()> {
        let rev = self.rev.ok_or(Error::NotLeader)?;
        self.put_if_rev(rev, value.into()).await
    }

    async fn put_if_rev(&self, rev: i64, value: Vec<u8>) -> Result<()> {
        let txn = Txn::new()
            .when([Compare::create_revision(self.key.as_str(), CompareOp::Equal, rev)])
            .and_then([TxnOp::put(self.key.as_str(), value, Some(PutOptions::new().with_lease(self.session.lease)))]);
        if self.session.client.kv_client().txn(txn).await?.succeeded() {
            Ok(())
        } else {
            Err(Error::NotLeader)
        }
    }

    /// Gives up leadership (or a pending candidacy); a no-op when not campaigning.
    pub async fn resign(&mut self) -> Result<()> {
        self.session.client.kv_client().delete(self.key.as_str(), None).await?;
        self.rev = None;
        Ok(())
    }

    /// The fence of our leadership term: guards writes so a deposed leader cannot make them.
    pub fn fence(&self) -> Result<Fence> {
        let rev = self.rev.ok_or(Error::NotLeader)?;
        Ok(Fence::new(self.session.client.clone(), self.key.as_str(), rev))
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The current leader; [`Error::NoLeader`] when nobody campaigns.
    pub async fn leader(client: &Client, name: &str) -> Result<Leader> {
        let (kv, _) = first_created(client, &format!("{name}/")).await?;
        let kv = kv.ok_or(Error::NoLeader)?;
        Ok(Leader { key: kv.key().to_vec(), value: kv.value().to_vec(), rev: kv.create_revision() })
    }

    /// A stream of leaders, starting with the current one: a new value on every proclaim and
    /// every change of leader (as Go's `Election.Observe`).
    pub fn observe(client: &Client, name: &str) -> Observer {
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(observe(client.clone(), format!("{name}/"), tx));
        Observer { rx, task }
    }
}

/// Leaders as they change; ends (with an error item) when the server cannot be reached.
pub struct Observer {
    rx: mpsc::Receiver<Result<Leader>>,
    task: JoinHandle<()>,
}

impl Observer {
    pub async fn next(&mut self) -> Option<Result<Leader>> {
        self.rx.recv().await
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn observe(client: Client, prefix: String, tx: mpsc::Sender<Result<Leader>>) {
    if let Err(e) = observe_loop(&client, &prefix, &tx).await {
        let _closed = tx.send(Err(e)).await;
    }
}

async fn observe_loop(client: &Client, prefix: &str, tx: &mpsc::Sender<Result<Leader>>) -> Result<()> {
    let mut last: Option<Leader> = None;
    loop {
        let (kv, mut rev) = first_created(client, prefix).await?;
        let leader = match kv {
            Some(kv) => Leader { key: kv.key().to_vec(), value: kv.value().to_vec(), rev: kv.create_revision() },
            None => {
                // Nobody campaigns: wait for the first put under the prefix.
                let opts = WatchOptions::new().with_prefix().with_start_revision(rev + 1);
                let mut stream = client.watch_client().watch(prefix, Some(opts)).await?;
                let mut found = None;
                while let Some(resp) = stream.message().await? {
                    if let Some(kv) =
                        resp.events().iter().find(|e| e.event_type() == EventType::Put).and_then(|e| e.kv())
                    {
                        rev = kv.mod_revision();
                        found = Some(Leader {
                            key: kv.key().to_vec(),
                            value: kv.value().to_vec(),
                            rev: kv.create_revision(),
                        });
                        break;
                    }
                }
                match found {
                    Some(l) => l,
                    None => continue,
                }
            }
        };
        if last.as_ref() != Some(&leader) {
            if tx.send(Ok(leader.clone())).await.is_err() {
                return Ok(());
            }
            last = Some(leader.clone());
        }
        // Follow the leader's key until it is deleted; every put is a proclaim.
        let opts = WatchOptions::new().with_start_revision(rev + 1);
        let mut stream = client.watch_client().watch(leader.key.clone(), Some(opts)).await?;
        'key: while let Some(resp) = stream.message().await? {
            for e in resp.events() {
                match (e.event_type(), e.kv()) {
                    (EventType::Put, Some(kv)) => {
                        let l =
                            Leader { key: kv.key().to_vec(), value: kv.value().to_vec(), rev: kv.create_revision() };
                        if last.as_ref() != Some(&l) {
                            if tx.send(Ok(l.clone())).await.is_err() {
                                return Ok(());
                            }
                            last = Some(l);
                        }
                    }
                    _ => break 'key,
                }
            }
            if resp.canceled() {
                break;
            }
        }
    }
}
