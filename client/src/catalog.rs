//! Catalog tables: names, configuration and statistics of an OLAP engine's tables.
//!
//! A table is a record under `R tables/<T>`; everything else it owns (config, history, stats,
//! index sets, buffers, claims) lives under `R data/<T>/` (see [`crate::layout`]), so creating a
//! table is one txn and dropping it with `cascade` is one txn with one range delete.
//!
//! # Configuration
//!
//! A table's effective [`TableConfig`] is the default from [`Settings`] with the table's
//! [`ConfigOverrides`] applied. Every change writes a new [`ConfigVersion`] (version, who, when,
//! why) to both `config` and `config-history/<version>` in one txn guarded by the previous
//! version's mod revision, so concurrent changes serialize and the history has no gaps.
//! [`Catalog::rollback`] re-applies an earlier version's overrides as a new version (history is
//! append-only), and [`Catalog::watch_config`] streams every new version in order.
//!
//! ```no_run
//! # async fn demo(client: etcd_client::Client) -> metastore_client::Result<()> {
//! use metastore_client::catalog::{Catalog, ConfigOverrides};
//! let catalog = Catalog::new(&client);
//! let mut watch = catalog.watch_config("events").await?;
//! let mut patch = ConfigOverrides::default();
//! patch.set("flush_interval", "30")?;
//! catalog.set_config("events", &patch, "alice", "faster flushes").await?;
//! let change = watch.next().await?; // Some(ConfigVersion { version: 2, changed_by: "alice", .. })
//! catalog.rollback("events", 1, "bob", "too many small files").await?;
//! # Ok(()) }
//! ```
//!
//! # Invariants
//!
//! - At most `max_tables` tables: creation is guarded by "no table changed since I counted".
//! - Stats are only changed in the same txn as the index entries they summarize (see
//!   [`crate::index`] and [`crate::buffer`]).
//!
//! # Not done
//!
//! - Removing index entries lowers counts and sizes but does not recompute oldest/newest record.
//! - Grants add permissions to a role; revoking is left to `etcdctl role revoke-permission`.

use std::collections::{BTreeMap, VecDeque};

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, Permission, PermissionType, Txn, TxnOp, TxnOpResponse, WatchOptions,
    WatchStream,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::keys::{decode, encode, prefix_end};
use crate::layout::{glob_match, validate_table_name, Layout};

/// Table limit when no [`Settings`] were stored.
pub const DEFAULT_MAX_TABLES: u32 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableConfig {
    /// Bytes a write buffer may hold before it is flushed.
    pub buffer_size: u64,
    /// Seconds between flushes of a non-full buffer.
    pub flush_interval_secs: u64,
    pub retention_days: u32,
    pub backup_enabled: bool,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            buffer_size: 64 << 20,
            flush_interval_secs: 60,
            retention_days: 30,
            backup_enabled: false,
            properties: BTreeMap::new(),
        }
    }
}

/// Per-table settings that take precedence over the default [`TableConfig`]; unset fields
/// follow the default (and its later changes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_interval_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

impl ConfigOverrides {
    /// Sets one field by name: `buffer_size`, `flush_interval_secs` (or `flush_interval`),
    /// `retention_days`, `backup_enabled`, or `properties.<name>`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T> {
            value.parse().map_err(|_| Error::InvalidArgument(format!("bad value {value:?} for {key}")))
        }
        match key {
            "buffer_size" => self.buffer_size = Some(parse(key, value)?),
            "flush_interval" | "flush_interval_secs" => self.flush_interval_secs = Some(parse(key, value)?),
            "retention_days" => self.retention_days = Some(parse(key, value)?),
            "backup_enabled" => self.backup_enabled = Some(parse(key, value)?),
            _ => match key.strip_prefix("properties.") {
                Some(p) if !p.is_empty() => {
                    self.properties.insert(p.to_string(), value.to_string());
                }
                _ => return Err(Error::InvalidArgument(format!("unknown config key {key:?}"))),
            },
        }
        Ok(())
    }

    /// `self` with every field set in `patch` replaced (properties merged).
    pub fn merged(&self, patch: &ConfigOverrides) -> ConfigOverrides {
        let mut out = self.clone();
        out.buffer_size = patch.buffer_size.or(out.buffer_size);
        out.flush_interval_secs = patch.flush_interval_secs.or(out.flush_interval_secs);
        out.retention_days = patch.retention_days.or(out.retention_days);
        out.backup_enabled = patch.backup_enabled.or(out.backup_enabled);
        out.properties.extend(patch.properties.clone());
        out
    }

    pub fn apply_to(&self, base: &TableConfig) -> TableConfig {
        let mut c = base.clone();
        c.buffer_size = self.buffer_size.unwrap_or(c.buffer_size);
        c.flush_interval_secs = self.flush_interval_secs.unwrap_or(c.flush_interval_secs);
        c.retention_days = self.retention_days.unwrap_or(c.retention_days);
        c.backup_enabled = self.backup_enabled.unwrap_or(c.backup_enabled);
        c.properties.extend(self.properties.clone());
        c
    }
}

/// One version of a table's configuration, with its audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigVersion {
    pub version: u64,
    pub overrides: ConfigOverrides,
    pub changed_by: String,
    /// Unix milliseconds.
    pub changed_at: i64,
    pub reason: String,
}

/// Catalog-wide settings, stored once under `R settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub max_tables: u32,
    pub default_config: TableConfig,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { max_tables: DEFAULT_MAX_TABLES, default_config: TableConfig::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRecord {
    pub name: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub created_by: String,
}

/// What the index holds for a table; changed only together with the index entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStats {
    pub record_count: u64,
    pub file_count: u64,
    pub size_bytes: u64,
    /// Timestamps of the oldest and newest record in any indexed file (caller's unit).
    pub oldest_record: Option<i64>,
    pub newest_record: Option<i64>,
    /// Unix milliseconds of the last index change.
    pub last_write: Option<i64>,
}

/// Everything `describe` shows, read at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableInfo {
    pub name: String,
    pub created_at: i64,
    pub created_by: String,
    pub config_version: u64,
    pub overrides: ConfigOverrides,
    /// The effective configuration: default with overrides applied.
    pub config: TableConfig,
    pub stats: TableStats,
}

/// Kinds of access [`Catalog::grant`] gives a role on a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

impl std::str::FromStr for Access {
    type Err = Error;
    fn from_str(s: &str) -> Result<Access> {
        match s {
            "read" => Ok(Access::Read),
            "write" => Ok(Access::Write),
            "readwrite" | "read-write" => Ok(Access::ReadWrite),
            _ => Err(Error::InvalidArgument(format!("access {s:?} must be read, write or readwrite"))),
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The catalog of tables under one [`Layout`].
#[derive(Clone)]
pub struct Catalog {
    client: Client,
    layout: Layout,
}

impl Catalog {
    pub fn new(client: &Client) -> Catalog {
        Catalog::with_layout(client, Layout::default())
    }

    pub fn with_layout(client: &Client, layout: Layout) -> Catalog {
        Catalog { client: client.clone(), layout }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub async fn settings(&self) -> Result<Settings> {
        let key = self.layout.settings();
        let resp = self.client.kv_client().get(key.as_str(), None).await?;
        match resp.kvs().first() {
            Some(kv) => decode(kv.key(), kv.value()),
            None => Ok(Settings::default()),
        }
    }

    pub async fn set_settings(&self, settings: &Settings) -> Result<()> {
        self.client.kv_client().put(self.layout.settings(), encode(settings), None).await?;
        Ok(())
    }

    /// Creates a table with optional per-table overrides. Returns false (and changes nothing)
    /// if it exists and `if_not_exists`; [`Error::AlreadyExists`] if it exists otherwise.
    pub async fn create_table(
        &self,
        name: &str,
        overrides: Option<ConfigOverrides>,
        if_not_exists: bool,
        by: &str,
        reason: &str,
    ) -> Result<bool> {
        validate_table_name(name)?;
        let l = &self.layout;
        let now = now_ms();
        let record = TableRecord { name: name.to_string(), created_at: now, created_by: by.to_string() };
        let config = ConfigVersion {
            version: 1,
            overrides: overrides.unwrap_or_default(),
            changed_by: by.to_string(),
            changed_at: now,
            reason: reason.to_string(),
        };
        for _ in 0..100 {
            let max = self.settings().await?.max_tables;
            let tables = l.tables();
            let resp = self
                .client
                .kv_client()
                .get(tables.as_str(), Some(GetOptions::new().with_prefix().with_count_only()))
                .await?;
            let rev = resp.header().map_or(0, |h| h.revision());
            let exists_cmp = Compare::create_revision(l.table(name), CompareOp::Equal, 0);
            if resp.count() >= i64::from(max) {
                if self.exists(name).await? {
                    return if if_not_exists { Ok(false) } else { Err(Error::AlreadyExists(format!("table {name}"))) };
                }
                return Err(Error::TableLimit(max));
            }
            let unchanged = Compare::mod_revision(tables.as_str(), CompareOp::Less, rev + 1)
                .with_range(prefix_end(tables.as_bytes()));
            let txn = Txn::new().when([exists_cmp, unchanged]).and_then([
                TxnOp::put(l.table(name), encode(&record), None),
                TxnOp::put(l.config(name), encode(&config), None),
                TxnOp::put(l.config_version(name, 1), encode(&config), None),
                TxnOp::put(l.stats(name), encode(&TableStats::default()), None),
            ]);
            if self.client.kv_client().txn(txn).await?.succeeded() {
                return Ok(true);
            }
            if self.exists(name).await? {
                return if if_not_exists { Ok(false) } else { Err(Error::AlreadyExists(format!("table {name}"))) };
            }
        }
        Err(Error::Conflict { attempts: 100 })
    }

    /// Drops a table. Without `cascade` a table that still has index entries or buffers is
    /// refused; with it, the table and all its keys go in one txn. Returns false if it did not
    /// exist and `if_exists`.
    pub async fn drop_table(&self, name: &str, if_exists: bool, cascade: bool) -> Result<bool> {
        validate_table_name(name)?;
        let l = &self.layout;
        let mut when = vec![Compare::version(l.table(name), CompareOp::Greater, 0)];
        if !cascade {
            for p in [l.index(name), l.buffers(name)] {
                when.push(
                    Compare::create_revision(p.as_str(), CompareOp::Equal, 0).with_range(prefix_end(p.as_bytes())),
                );
            }
        }
        let data = l.data(name);
        let txn = Txn::new().when(when).and_then([
            TxnOp::delete(l.table(name), None),
            TxnOp::delete(data.as_str(), Some(etcd_client::DeleteOptions::new().with_prefix())),
        ]);
        if self.client.kv_client().txn(txn).await?.succeeded() {
            return Ok(true);
        }
        if !self.exists(name).await? {
            return if if_exists { Ok(false) } else { Err(Error::NotFound(format!("table {name}"))) };
        }
        Err(Error::InvalidArgument(format!("table {name} has index entries or buffers; drop it with cascade")))
    }

    pub async fn exists(&self, name: &str) -> Result<bool> {
        let resp =
            self.client.kv_client().get(self.layout.table(name), Some(GetOptions::new().with_count_only())).await?;
        Ok(resp.count() > 0)
    }

    /// Table names in order, those matching the glob `pattern` (`*`, `?`) if given.
    pub async fn list_tables(&self, pattern: Option<&str>) -> Result<Vec<String>> {
        let prefix = self.layout.tables();
        let resp = self
            .client
            .kv_client()
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix().with_keys_only()))
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key()[prefix.len()..]).into_owned())
            .filter(|n| pattern.is_none_or(|p| glob_match(p, n)))
            .collect())
    }

    /// Record, effective config and stats of a table, read at one revision.
    pub async fn describe(&self, name: &str) -> Result<TableInfo> {
        let l = &self.layout;
        let txn = Txn::new().and_then([
            TxnOp::get(l.table(name), None),
            TxnOp::get(l.config(name), None),
            TxnOp::get(l.stats(name), None),
            TxnOp::get(l.settings(), None),
        ]);
        let resp = self.client.kv_client().txn(txn).await?;
        let gets: Vec<Option<etcd_client::KeyValue>> = resp
            .op_responses()
            .into_iter()
            .map(|r| match r {
                TxnOpResponse::Get(mut g) => g.take_kvs().into_iter().next(),
                _ => None,
            })
            .collect();
        let Some(Some(rec)) = gets.first() else { return Err(Error::NotFound(format!("table {name}"))) };
        let record: TableRecord = decode(rec.key(), rec.value())?;
        let config: ConfigVersion = match &gets[1] {
            Some(kv) => decode(kv.key(), kv.value())?,
            None => return Err(Error::NotFound(format!("config of table {name}"))),
        };
        let stats: TableStats = match &gets[2] {
            Some(kv) => decode(kv.key(), kv.value())?,
            None => TableStats::default(),
        };
        let settings: Settings = match &gets[3] {
            Some(kv) => decode(kv.key(), kv.value())?,
            None => Settings::default(),
        };
        Ok(TableInfo {
            name: record.name,
            created_at: record.created_at,
            created_by: record.created_by,
            config_version: config.version,
            config: config.overrides.apply_to(&settings.default_config),
            overrides: config.overrides,
            stats,
        })
    }

    pub async fn stats(&self, name: &str) -> Result<TableStats> {
        let key = self.layout.stats(name);
        let resp = self.client.kv_client().get(key.as_str(), None).await?;
        match resp.kvs().first() {
            Some(kv) => decode(kv.key(), kv.value()),
            None => Err(Error::NotFound(format!("table {name}"))),
        }
    }

    /// The current config version (overrides only; see [`Catalog::describe`] for the effective
    /// config).
    pub async fn config(&self, name: &str) -> Result<ConfigVersion> {
        Ok(self.current_config(name).await?.0)
    }

    async fn current_config(&self, name: &str) -> Result<(ConfigVersion, i64)> {
        let key = self.layout.config(name);
        let resp = self.client.kv_client().get(key.as_str(), None).await?;
        match resp.kvs().first() {
            Some(kv) => Ok((decode(kv.key(), kv.value())?, kv.mod_revision())),
            None => Err(Error::NotFound(format!("table {name}"))),
        }
    }

    /// Applies `patch` on top of the current overrides as a new version.
    pub async fn set_config(
        &self,
        name: &str,
        patch: &ConfigOverrides,
        by: &str,
        reason: &str,
    ) -> Result<ConfigVersion> {
        self.write_config(name, |cur| Ok(cur.overrides.merged(patch)), by, reason).await
    }

    /// Makes the overrides of `version` current again, as a new version.
    pub async fn rollback(&self, name: &str, version: u64, by: &str, reason: &str) -> Result<ConfigVersion> {
        let key = self.layout.config_version(name, version);
        let resp = self.client.kv_client().get(key.as_str(), None).await?;
        let Some(kv) = resp.kvs().first() else {
            return Err(Error::NotFound(format!("config version {version} of table {name}")));
        };
        let old: ConfigVersion = decode(kv.key(), kv.value())?;
        let reason = if reason.is_empty() { format!("rollback to version {version}") } else { reason.to_string() };
        self.write_config(name, |_| Ok(old.overrides.clone()), by, &reason).await
    }

    async fn write_config(
        &self,
        name: &str,
        next: impl Fn(&ConfigVersion) -> Result<ConfigOverrides>,
        by: &str,
        reason: &str,
    ) -> Result<ConfigVersion> {
        let l = &self.layout;
        for attempt in 0..100 {
            let (cur, rev) = self.current_config(name).await?;
            let new = ConfigVersion {
                version: cur.version + 1,
                overrides: next(&cur)?,
                changed_by: by.to_string(),
                changed_at: now_ms(),
                reason: reason.to_string(),
            };
            let txn = Txn::new().when([Compare::mod_revision(l.config(name), CompareOp::Equal, rev)]).and_then([
                TxnOp::put(l.config(name), encode(&new), None),
                TxnOp::put(l.config_version(name, new.version), encode(&new), None),
            ]);
            if self.client.kv_client().txn(txn).await?.succeeded() {
                return Ok(new);
            }
            crate::concurrency::backoff(attempt).await;
        }
        Err(Error::Conflict { attempts: 100 })
    }

    /// Every config version of a table, oldest first.
    pub async fn history(&self, name: &str) -> Result<Vec<ConfigVersion>> {
        let prefix = self.layout.config_history(name);
        let resp = self.client.kv_client().get(prefix.as_str(), Some(GetOptions::new().with_prefix())).await?;
        if resp.kvs().is_empty() && !self.exists(name).await? {
            return Err(Error::NotFound(format!("table {name}")));
        }
        resp.kvs().iter().map(|kv| decode(kv.key(), kv.value())).collect()
    }

    /// Streams every config version written after this call, in order.
    pub async fn watch_config(&self, name: &str) -> Result<ConfigWatch> {
        let (_, _) = self.current_config(name).await?;
        let prefix = self.layout.config_history(name);
        let resp = self.client.kv_client().get(prefix.as_str(), Some(GetOptions::new().with_count_only())).await?;
        let rev = resp.header().map_or(0, |h| h.revision());
        let opts = WatchOptions::new().with_prefix().with_start_revision(rev + 1);
        let stream = self.client.watch_client().watch(prefix.as_str(), Some(opts)).await?;
        Ok(ConfigWatch { stream, pending: VecDeque::new() })
    }

    /// Gives `role` (created if missing) `access` to table `name`'s keys (`R data/<T>/`), plus
    /// read access to its record. Needs a server with the Auth API.
    pub async fn grant(&self, role: &str, name: &str, access: Access) -> Result<()> {
        if !self.exists(name).await? {
            return Err(Error::NotFound(format!("table {name}")));
        }
        let mut auth = self.client.auth_client();
        if auth.role_get(role).await.is_err() {
            auth.role_add(role).await?;
        }
        let kind = match access {
            Access::Read => PermissionType::Read,
            Access::Write => PermissionType::Write,
            Access::ReadWrite => PermissionType::Readwrite,
        };
        let data = self.layout.data(name);
        auth.role_grant_permission(
            role,
            Permission::new(kind, data.as_str()).with_range_end(prefix_end(data.as_bytes())),
        )
        .await?;
        auth.role_grant_permission(role, Permission::read(self.layout.table(name))).await?;
        Ok(())
    }
}

/// New config versions of one table, in order.
pub struct ConfigWatch {
    stream: WatchStream,
    pending: VecDeque<ConfigVersion>,
}

impl ConfigWatch {
    /// The next version; `None` when the watch ends (table dropped or server gone).
    pub async fn next(&mut self) -> Result<Option<ConfigVersion>> {
        loop {
            if let Some(v) = self.pending.pop_front() {
                return Ok(Some(v));
            }
            let Some(resp) = self.stream.message().await? else { return Ok(None) };
            if resp.canceled() {
                return Ok(None);
            }
            for e in resp.events() {
                if let (etcd_client::EventType::Put, Some(kv)) = (e.event_type(), e.kv()) {
                    self.pending.push_back(decode(kv.key(), kv.value())?);
                }
            }
        }
    }
}
