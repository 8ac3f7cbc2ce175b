//! `metastorectl`: operators' command line for MetaStore's metadata layers and coordination
//! recipes, with etcdctl's connection flags.
//!
//! Output is `-w table` (aligned text, the default) or `-w json` (one JSON document per
//! command). Exit codes a script can rely on: 0 success, 1 server or transport error, 2 usage
//! or invalid argument, 3 not found, 4 already exists, 5 conflict / lock held / lost, 6 session
//! expired; `lock NAME -- CMD` exits with CMD's code.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use metastore_client::buffer::Buffers;
use metastore_client::catalog::{Access, Catalog, ConfigOverrides};
use metastore_client::concurrency::{Election, Mutex, Session};
use metastore_client::index::{DataFile, Index};
use metastore_client::layout::Layout;
use metastore_client::{Error, Result};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(name = "metastorectl", version, about = "MetaStore catalog, index, buffer, lock and election tool")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// gRPC endpoints, comma separated.
    #[arg(
        long,
        global = true,
        env = "METASTORECTL_ENDPOINTS",
        default_value = "127.0.0.1:2379",
        value_delimiter = ','
    )]
    endpoints: Vec<String>,
    #[arg(long, global = true, env = "METASTORECTL_USER", help = "username[:password] for authentication")]
    user: Option<String>,
    /// Password (if --user has none).
    #[arg(long, global = true, env = "METASTORECTL_PASSWORD")]
    password: Option<String>,
    /// CA bundle to verify TLS servers with.
    #[arg(long, global = true)]
    cacert: Option<String>,
    /// Client certificate for TLS.
    #[arg(long, global = true)]
    cert: Option<String>,
    /// Client key for TLS.
    #[arg(long, global = true)]
    key: Option<String>,
    /// Output format.
    #[arg(short = 'w', long = "write-out", global = true, value_enum, default_value_t = Format::Table)]
    write_out: Format,
    /// Root prefix of the metadata layers' keys.
    #[arg(long, global = true, default_value = metastore_client::DEFAULT_ROOT)]
    root: String,
    /// Dial timeout in seconds.
    #[arg(long, global = true, default_value_t = 5)]
    dial_timeout: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Catalog tables.
    #[command(subcommand)]
    Table(TableCmd),
    /// Index sets.
    #[command(subcommand)]
    Index(IndexCmd),
    /// Write-buffer state.
    #[command(subcommand)]
    Buffer(BufferCmd),
    /// Holds a lock (etcd's layout) while running CMD, or until interrupted if no CMD.
    Lock {
        name: String,
        #[arg(long, default_value_t = 10)]
        ttl: i64,
        #[arg(last = true)]
        cmd: Vec<String>,
    },
    /// Campaigns with PROPOSAL and holds leadership until interrupted; `-l` observes instead.
    Elect {
        name: String,
        proposal: Option<String>,
        #[arg(short, long)]
        listen: bool,
        #[arg(long, default_value_t = 10)]
        ttl: i64,
    },
}

#[derive(Subcommand)]
enum TableCmd {
    Create {
        name: String,
        #[arg(long)]
        if_not_exists: bool,
        /// Per-table config override KEY=VALUE (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[command(flatten)]
        audit: Audit,
    },
    Drop {
        name: String,
        #[arg(long)]
        if_exists: bool,
        /// Also remove the table's index sets and buffer state (one txn).
        #[arg(long)]
        cascade: bool,
    },
    /// Table names, optionally matching a glob (`*`, `?`).
    List {
        pattern: Option<String>,
    },
    Describe {
        name: String,
    },
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Grants ROLE read, write or readwrite access to TABLE's keys (needs the Auth API).
    Grant {
        role: String,
        table: String,
        access: String,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    Get {
        name: String,
    },
    Set {
        name: String,
        #[arg(value_name = "KEY=VALUE", required = true)]
        pairs: Vec<String>,
        #[command(flatten)]
        audit: Audit,
    },
    History {
        name: String,
    },
    Rollback {
        name: String,
        version: u64,
        #[command(flatten)]
        audit: Audit,
    },
    /// Prints every new config version as it is written, until interrupted.
    Watch {
        name: String,
    },
}

#[derive(Args)]
struct Audit {
    /// Who makes the change (default: $USER).
    #[arg(long)]
    by: Option<String>,
    /// Why.
    #[arg(long, default_value = "")]
    reason: String,
}

impl Audit {
    fn by(&self) -> String {
        self.by.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "metastorectl".into())
    }
}

#[derive(Subcommand)]
enum IndexCmd {
    /// Adds files: PATH or PATH:SIZE_BYTES:RECORDS.
    Add {
        table: String,
        id: String,
        day: String,
        #[arg(required = true)]
        files: Vec<String>,
    },
    Rm {
        table: String,
        id: String,
        day: String,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Lists a table's index, or one id's, one day's, or one (id, day) set.
    Ls {
        table: String,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        day: Option<String>,
    },
}

#[derive(Subcommand)]
enum BufferCmd {
    /// Buffers waiting to be flushed (all tables if none given).
    Ls { table: Option<String> },
    /// Claims up to --max unclaimed buffers with a lease of --ttl seconds that is not renewed:
    /// the claims hold off other flushers until it expires.
    Claim {
        table: String,
        #[arg(long, default_value = "metastorectl")]
        owner: String,
        #[arg(long, default_value_t = 60)]
        ttl: i64,
        #[arg(long, default_value_t = 1)]
        max: usize,
    },
    /// Shows buffers waiting; with --release, deletes their claims so they can be claimed now
    /// (the old holders' commits are then refused).
    Recover {
        table: Option<String>,
        #[arg(long)]
        release: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

async fn connect(g: &Global) -> Result<Client> {
    let mut opts = ConnectOptions::new().with_connect_timeout(Duration::from_secs(g.dial_timeout));
    if let Some(user) = &g.user {
        let (name, pass) = match user.split_once(':') {
            Some((n, p)) => (n.to_string(), p.to_string()),
            None => (user.clone(), g.password.clone().unwrap_or_default()),
        };
        opts = opts.with_user(name, pass);
    }
    if g.cacert.is_some() || g.cert.is_some() {
        let read = |p: &str| std::fs::read(p).map_err(|e| Error::InvalidArgument(format!("{p}: {e}")));
        let mut tls = TlsOptions::new();
        if let Some(ca) = &g.cacert {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&g.cert, &g.key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        opts = opts.with_tls(tls);
    }
    Ok(Client::connect(&g.endpoints, Some(opts)).await?)
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let g = &cli.global;
    let client = connect(g).await?;
    let layout = Layout::new(&g.root);
    let out = Out(g.write_out);
    match cli.command {
        Command::Table(cmd) => table(&Catalog::with_layout(&client, layout), cmd, out).await?,
        Command::Index(cmd) => index(&Index::with_layout(&client, layout), cmd, out).await?,
        Command::Buffer(cmd) => buffer(&client, layout, cmd, out).await?,
        Command::Lock { name, ttl, cmd } => return lock(&client, &name, ttl, cmd).await,
        Command::Elect { name, proposal, listen, ttl } => elect(&client, &name, proposal, listen, ttl, out).await?,
    }
    Ok(ExitCode::SUCCESS)
}

fn overrides(pairs: &[String]) -> Result<ConfigOverrides> {
    let mut o = ConfigOverrides::default();
    for p in pairs {
        let (k, v) = p.split_once('=').ok_or_else(|| Error::InvalidArgument(format!("{p:?} is not KEY=VALUE")))?;
        o.set(k, v)?;
    }
    Ok(o)
}

async fn table(catalog: &Catalog, cmd: TableCmd, out: Out) -> Result<()> {
    match cmd {
        TableCmd::Create { name, if_not_exists, set, audit } => {
            let created =
                catalog.create_table(&name, Some(overrides(&set)?), if_not_exists, &audit.by(), &audit.reason).await?;
            out.result(json!({"table": name, "created": created}), || {
                if created {
                    format!("table {name} created")
                } else {
                    format!("table {name} exists")
                }
            });
        }
        TableCmd::Drop { name, if_exists, cascade } => {
            let dropped = catalog.drop_table(&name, if_exists, cascade).await?;
            out.result(json!({"table": name, "dropped": dropped}), || {
                if dropped {
                    format!("table {name} dropped")
                } else {
                    format!("table {name} does not exist")
                }
            });
        }
        TableCmd::List { pattern } => {
            let names = catalog.list_tables(pattern.as_deref()).await?;
            out.rows(&["NAME"], names.iter().map(|n| vec![n.clone()]).collect(), json!(names));
        }
        TableCmd::Describe { name } => {
            let info = catalog.describe(&name).await?;
            let v = serde_json::to_value(&info).expect("json");
            out.fields(&v);
        }
        TableCmd::Config(ConfigCmd::Get { name }) => {
            let info = catalog.describe(&name).await?;
            let v = json!({"table": name, "version": info.config_version, "config": info.config, "overrides": info.overrides});
            out.fields(&v);
        }
        TableCmd::Config(ConfigCmd::Set { name, pairs, audit }) => {
            let v = catalog.set_config(&name, &overrides(&pairs)?, &audit.by(), &audit.reason).await?;
            out.result(serde_json::to_value(&v).expect("json"), || {
                format!("table {name} config version {}", v.version)
            });
        }
        TableCmd::Config(ConfigCmd::History { name }) => {
            let versions = catalog.history(&name).await?;
            let rows = versions
                .iter()
                .map(|v| {
                    vec![
                        v.version.to_string(),
                        v.changed_at.to_string(),
                        v.changed_by.clone(),
                        v.reason.clone(),
                        serde_json::to_string(&v.overrides).expect("json"),
                    ]
                })
                .collect();
            out.rows(&["VERSION", "AT_MS", "BY", "REASON", "OVERRIDES"], rows, json!(versions));
        }
        TableCmd::Config(ConfigCmd::Rollback { name, version, audit }) => {
            let v = catalog.rollback(&name, version, &audit.by(), &audit.reason).await?;
            out.result(serde_json::to_value(&v).expect("json"), || {
                format!("table {name} config version {} (rollback to {version})", v.version)
            });
        }
        TableCmd::Config(ConfigCmd::Watch { name }) => {
            let mut watch = catalog.watch_config(&name).await?;
            out.result(json!({"watching": name}), || format!("watching config of table {name}"));
            loop {
                tokio::select! {
                    v = watch.next() => match v? {
                        Some(v) => out.result(serde_json::to_value(&v).expect("json"), || {
                            format!(
                                "version {} by {} at {}: {} ({})",
                                v.version,
                                v.changed_by,
                                v.changed_at,
                                serde_json::to_string(&v.overrides).expect("json"),
                                v.reason
                            )
                        }),
                        None => return Ok(()),
                    },
                    _ = interrupted() => return Ok(()),
                }
            }
        }
        TableCmd::Grant { role, table, access } => {
            let a: Access = access.parse()?;
            catalog.grant(&role, &table, a).await?;
            out.result(json!({"role": role, "table": table, "access": access}), || {
                format!("role {role} granted {access} on table {table}")
            });
        }
    }
    Ok(())
}

fn data_file(spec: &str) -> Result<DataFile> {
    let mut parts = spec.rsplitn(3, ':').collect::<Vec<_>>();
    parts.reverse();
    let num = |s: &str| s.parse::<u64>().map_err(|_| Error::InvalidArgument(format!("bad number {s:?} in {spec:?}")));
    match parts.as_slice() {
        [path, size, records] if size.parse::<u64>().is_ok() => Ok(DataFile::new(*path, num(size)?, num(records)?)),
        _ => Ok(DataFile::new(spec, 0, 0)),
    }
}

async fn index(index: &Index, cmd: IndexCmd, out: Out) -> Result<()> {
    match cmd {
        IndexCmd::Add { table, id, day, files } => {
            let files = files.iter().map(|f| data_file(f)).collect::<Result<Vec<_>>>()?;
            let stats = index.add(&table, &id, &day, &files).await?;
            out.result(json!({"added": files.len(), "stats": stats}), || format!("added {} file(s)", files.len()));
        }
        IndexCmd::Rm { table, id, day, paths } => {
            let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
            let stats = index.remove(&table, &id, &day, &paths).await?;
            out.result(json!({"stats": stats}), || "removed".to_string());
        }
        IndexCmd::Ls { table, id, day } => {
            let entries = match (id, day) {
                (Some(id), Some(day)) => index.files(&table, &id, &day).await?,
                (Some(id), None) => index.by_id(&table, &id).await?,
                (None, Some(day)) => index.by_day(&table, &day).await?,
                (None, None) => index.by_table(&table).await?,
            };
            let rows = entries
                .iter()
                .map(|e| {
                    vec![
                        e.id.clone(),
                        e.day.clone(),
                        e.file.path.clone(),
                        e.file.size_bytes.to_string(),
                        e.file.record_count.to_string(),
                    ]
                })
                .collect();
            out.rows(&["ID", "DAY", "PATH", "SIZE", "RECORDS"], rows, json!(entries));
        }
    }
    Ok(())
}

async fn buffer(client: &Client, layout: Layout, cmd: BufferCmd, out: Out) -> Result<()> {
    let buffers = Buffers::with_layout(client, layout);
    let show = |list: &[metastore_client::buffer::BufferState], out: Out| {
        let rows = list
            .iter()
            .map(|b| {
                vec![
                    b.table.clone(),
                    b.id.clone(),
                    b.day.clone(),
                    b.segments.len().to_string(),
                    b.rows.to_string(),
                    b.bytes.to_string(),
                    b.claim.as_ref().map_or("-".to_string(), |c| format!("{} (lease {:x})", c.owner, c.lease)),
                ]
            })
            .collect();
        out.rows(&["TABLE", "ID", "DAY", "SEGMENTS", "ROWS", "BYTES", "CLAIMED_BY"], rows, json!(list));
    };
    match cmd {
        BufferCmd::Ls { table } => show(&buffers.list_incomplete(table.as_deref()).await?, out),
        BufferCmd::Claim { table, owner, ttl, max } => {
            let mut session = Session::new(client, ttl).await?;
            let claims = buffers.claim(&session, &table, &owner, max).await?;
            session.orphan(); // the claims outlive this process until the lease expires
            let rows = claims
                .iter()
                .map(|c| vec![c.id.clone(), c.day.clone(), c.token.to_string(), format!("{:x}", session.lease_id())])
                .collect();
            let v: Vec<Value> = claims
                .iter()
                .map(|c| json!({"table": c.table, "id": c.id, "day": c.day, "token": c.token, "lease": session.lease_id(), "segments": c.segments.len()}))
                .collect();
            out.rows(&["ID", "DAY", "TOKEN", "LEASE"], rows, json!(v));
        }
        BufferCmd::Recover { table, release } => {
            let list = buffers.list_incomplete(table.as_deref()).await?;
            if release {
                for b in list.iter().filter(|b| b.claim.is_some()) {
                    buffers.force_release(&b.table, &b.id, &b.day).await?;
                }
                show(&buffers.list_incomplete(table.as_deref()).await?, out);
            } else {
                show(&list, out);
            }
        }
    }
    Ok(())
}

async fn lock(client: &Client, name: &str, ttl: i64, cmd: Vec<String>) -> Result<ExitCode> {
    let session = Session::new(client, ttl).await?;
    let mut m = Mutex::new(&session, name);
    tokio::select! {
        r = m.lock() => r?,
        _ = interrupted() => { m.unlock().await?; session.close().await?; return Ok(ExitCode::from(130)) }
    }
    let token = m.token().unwrap_or_default();
    let code = if let Some((program, args)) = cmd.split_first() {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env("METASTORE_LOCK_KEY", m.key())
            .env("METASTORE_LOCK_TOKEN", token.to_string())
            .spawn()
            .map_err(|e| Error::InvalidArgument(format!("{program}: {e}")))?;
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(|e| Error::InvalidArgument(format!("{program}: {e}")))?;
                ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8)
            }
            _ = session.lost() => { child.kill().await.ok(); return Err(Error::SessionExpired) }
        }
    } else {
        println!("{}", m.key());
        tokio::select! {
            _ = interrupted() => {}
            _ = session.lost() => return Err(Error::SessionExpired),
        }
        ExitCode::SUCCESS
    };
    m.unlock().await?;
    session.close().await?;
    Ok(code)
}

async fn elect(client: &Client, name: &str, proposal: Option<String>, listen: bool, ttl: i64, out: Out) -> Result<()> {
    if listen {
        let mut observer = Election::observe(client, name);
        loop {
            tokio::select! {
                l = observer.next() => match l {
                    Some(l) => {
                        let l = l?;
                        let (key, value) = (String::from_utf8_lossy(&l.key), String::from_utf8_lossy(&l.value));
                        out.result(json!({"key": key, "value": value, "rev": l.rev}), || format!("{key}\n{value}"));
                    }
                    None => return Ok(()),
                },
                _ = interrupted() => return Ok(()),
            }
        }
    }
    let proposal = proposal.ok_or_else(|| Error::InvalidArgument("elect needs a PROPOSAL (or -l)".into()))?;
    let session = Session::new(client, ttl).await?;
    let mut e = Election::new(&session, name);
    tokio::select! {
        r = e.campaign(proposal.as_bytes()) => r?,
        _ = interrupted() => { e.resign().await?; session.close().await?; return Ok(()) }
    }
    out.result(json!({"key": e.key(), "value": proposal}), || format!("{}\n{proposal}", e.key()));
    tokio::select! {
        _ = interrupted() => {}
        _ = session.lost() => return Err(Error::SessionExpired),
    }
    e.resign().await?;
    session.close().await?;
    Ok(())
}

/// SIGINT or SIGTERM.
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[derive(Clone, Copy)]
struct Out(Format);

impl Out {
    /// A single result: JSON, or the text line.
    fn result(self, v: Value, text: impl FnOnce() -> String) {
        match self.0 {
            Format::Json => println!("{v}"),
            Format::Table => println!("{}", text()),
        }
    }

    /// An object shown as `field: value` lines (nested objects flattened with dots).
    fn fields(self, v: &Value) {
        if self.0 == Format::Json {
            println!("{v}");
            return;
        }
        fn walk(prefix: &str, v: &Value, rows: &mut Vec<(String, String)>) {
            match v {
                Value::Object(m) => {
                    for (k, v) in m {
                        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                        walk(&key, v, rows);
                    }
                }
                Value::String(s) => rows.push((prefix.to_string(), s.clone())),
                Value::Null => rows.push((prefix.to_string(), "-".into())),
                other => rows.push((prefix.to_string(), other.to_string())),
            }
        }
        let mut rows = Vec::new();
        walk("", v, &mut rows);
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in rows {
            println!("{k:width$}  {v}");
        }
    }

    /// A table with a header, or the JSON value.
    fn rows(self, header: &[&str], rows: Vec<Vec<String>>, v: Value) {
        if self.0 == Format::Json {
            println!("{v}");
            return;
        }
        let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.len());
            }
        }
        let line = |cells: Vec<&str>| {
            let s: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:w$}")).collect();
            println!("{}", s.join("  ").trim_end());
        };
        line(header.to_vec());
        for r in &rows {
            line(r.iter().map(String::as_str).collect());
        }
    }
}
