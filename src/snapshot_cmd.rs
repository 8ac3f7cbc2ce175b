//! `metastore snapshot status|restore`, in the shape of etcd 3.5's `etcdutl snapshot`: both read
//! a snapshot file in etcd's format, whether etcd or MetaStore wrote it (see `metastore::backup`).
//!
//! `restore` writes the file's keys (every revision), leases and compaction marks into a fresh
//! data dir (built beside it, then renamed into place), and records the new cluster the flags
//! describe. A member started on that data dir bootstraps that cluster, whatever
//! `--initial-cluster*` flags it is started with (as etcd's restored WAL does), and serves the
//! keys at their revisions.

use std::path::Path;

use clap::{Arg, ArgAction, ArgMatches, Command};
use metastore::backup::{self, Status};
use metastore::config::{self, Config, Parsed};
use metastore::storage::schema::{META_MEMBER_ID, META_RESTORED_CLUSTER};
use metastore::storage::{Engine, RocksEngine, Table, WriteBatch};

fn command() -> Command {
    let file = || Arg::new("file").required(true).help("snapshot file");
    let flag = |name: &'static str, default: &'static str| Arg::new(name).long(name).default_value(default);
    Command::new("metastore snapshot")
        .about("Reads and restores snapshots in etcd's format")
        .subcommand_required(true)
        .subcommand(
            Command::new("status").about("Prints a snapshot's hash, revision, total keys and size").arg(file()).arg(
                Arg::new("write-out")
                    .short('w')
                    .long("write-out")
                    .default_value("table")
                    .value_parser(["simple", "json", "table"]),
            ),
        )
        .subcommand(
            Command::new("restore")
                .about("Restores a snapshot into a new data dir, as a member of a new cluster")
                .arg(file())
                .arg(flag("name", "default"))
                .arg(flag("data-dir", ""))
                .arg(flag("initial-cluster", "default=http://localhost:2380"))
                .arg(flag("initial-cluster-token", "etcd-cluster"))
                .arg(flag("initial-advertise-peer-urls", "http://localhost:2380"))
                .arg(Arg::new("skip-hash-check").long("skip-hash-check").action(ArgAction::SetTrue)),
        )
}

/// Runs `metastore snapshot ARGS…` (`args` after `snapshot`); returns the exit code.
pub fn run(args: Vec<String>) -> i32 {
    let argv = std::iter::once("metastore snapshot".to_string()).chain(args);
    let m = match command().try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) => {
            // Help and usage errors print themselves (help to stdout, exit 0).
            e.print().expect("print usage");
            return e.exit_code();
        }
    };
    let outcome = match m.subcommand() {
        Some(("status", m)) => status(m),
        Some(("restore", m)) => restore(m),
        _ => Err("unknown snapshot command".into()),
    };
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}

fn arg(m: &ArgMatches, name: &str) -> String {
    m.get_one::<String>(name).cloned().unwrap_or_default()
}

fn status(m: &ArgMatches) -> Result<(), String> {
    let file = arg(m, "file");
    // etcd's status does not check the sha256; it reads the database only.
    let db = backup::open_file(Path::new(&file), true).map_err(|e| e.to_string())?;
    let size = std::fs::metadata(&file).map_err(|e| format!("{file}: {e}"))?.len();
    let size = if size % 512 == backup::SHA256_LEN as u64 { size - backup::SHA256_LEN as u64 } else { size };
    let st = backup::status(&db, size).map_err(|e| e.to_string())?;
    print!("{}", render(&st, &arg(m, "write-out")));
    Ok(())
}

/// etcdctl's three renderings of a status (the hash in hex except in JSON).
fn render(st: &Status, format: &str) -> String {
    let cells =
        [format!("{:x}", st.hash), st.revision.to_string(), st.total_key.to_string(), human_bytes(st.total_size)];
    match format {
        "json" => format!(
            "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}\n",
            st.hash, st.revision, st.total_key, st.total_size
        ),
        "simple" => format!("{}\n", cells.join(", ")),
        _ => {
            let heads = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"];
            let widths: Vec<usize> = heads.iter().zip(&cells).map(|(h, c)| h.len().max(c.len()) + 2).collect();
            let line = format!("+{}+\n", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("+"));
            let center = |s: &str, w: usize| format!("{:^w$}", s);
            let row_h: Vec<String> = heads.iter().zip(&widths).map(|(h, w)| center(h, *w)).collect();
            let row_c: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{:>w$} ", c, w = w - 1)).collect();
            format!("{line}|{}|\n{line}|{}|\n{line}", row_h.join("|"), row_c.join("|"))
        }
    }
}

/// go-humanize's `Bytes`: SI units, one decimal below 10.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let val = ((n as f64) / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", UNITS[e])
    } else {
        format!("{val:.0} {}", UNITS[e])
    }
}

fn restore(m: &ArgMatches) -> Result<(), String> {
    // The cluster flags mean what they mean to the server: parse them as it does.
    let mut flags = vec!["metastore".to_string()];
    for name in ["name", "data-dir", "initial-cluster", "initial-cluster-token", "initial-advertise-peer-urls"] {
        flags.extend([format!("--{name}"), arg(m, name)]);
    }
    let cfg = match config::parse(flags)? {
        Parsed::Run(cfg) => *cfg,
        Parsed::PrintVersion => unreachable!("no --version flag was passed"),
    };
    if !cfg.initial_members().iter().any(|member| member.id == cfg.member_id()) {
        return Err(format!(
            "--initial-cluster has no member {} with peer URLs {:?}",
            cfg.name, cfg.initial_advertise_peer_urls
        ));
    }
    let file = arg(m, "file");
    let db = backup::open_file(Path::new(&file), m.get_flag("skip-hash-check")).map_err(|e| e.to_string())?;
    let dir = Path::new(&cfg.data_dir);
    if dir.exists() {
        return Err(format!("data-dir {:?} exists", cfg.data_dir));
    }
    // Built beside the data dir and renamed into place once complete and synced, so a restore
    // that fails half-way leaves no data dir a member could start on.
    let staging = std::path::PathBuf::from(format!("{}.restoring", cfg.data_dir.trim_end_matches('/')));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| format!("remove {}: {e}", staging.display()))?;
    }
    let rocks = staging.join("member").join("rocksdb");
    std::fs::create_dir_all(&rocks).map_err(|e| format!("create {}: {e}", rocks.display()))?;
    {
        let engine = RocksEngine::open(&rocks, Default::default()).map_err(|e| e.to_string())?;
        backup::restore(&db, &mut |batch| engine.write(batch, false)).map_err(|e| e.to_string())?;
        let mut last = WriteBatch::new();
        last.put(Table::Meta, META_RESTORED_CLUSTER, restored_cluster(&cfg).into_bytes());
        engine.write(last, true).map_err(|e| e.to_string())?;
    }
    std::fs::rename(&staging, dir).map_err(|e| format!("rename {} to {}: {e}", staging.display(), cfg.data_dir))?;
    eprintln!("restored snapshot {file} into {} (member {} of cluster {:x})", cfg.data_dir, cfg.name, cfg.cluster_id());
    Ok(())
}

/// The new cluster a restored data dir bootstraps, as the flags that describe it.
fn restored_cluster(cfg: &Config) -> String {
    let cluster: Vec<String> = cfg.initial_cluster.iter().map(|(n, u)| format!("{n}={u}")).collect();
    serde_json::json!({
        "name": cfg.name,
        "initial-cluster": cluster.join(","),
        "initial-cluster-token": cfg.initial_cluster_token,
        "initial-advertise-peer-urls": cfg.initial_advertise_peer_urls.join(","),
    })
    .to_string()
}

/// A data dir `restore` made and no member started on yet: take the cluster it recorded.
pub fn apply_restored_cluster(cfg: &mut Config, engine: &dyn Engine) -> Result<(), String> {
    if engine.get(Table::Meta, META_MEMBER_ID).map_err(|e| e.to_string())?.is_some() {
        return Ok(()); // started before: the identity is stored
    }
    let Some(bytes) = engine.get(Table::Meta, META_RESTORED_CLUSTER).map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| format!("restored cluster record: {e}"))?;
    let field = |k: &str| v.get(k).and_then(|s| s.as_str()).unwrap_or_default().to_string();
    let mut flags = vec!["metastore".to_string()];
    for name in ["name", "initial-cluster", "initial-cluster-token", "initial-advertise-peer-urls"] {
        flags.extend([format!("--{name}"), field(name)]);
    }
    let Parsed::Run(restored) = config::parse(flags)? else { unreachable!("no --version flag was passed") };
    if restored.name != cfg.name || restored.initial_cluster != cfg.initial_cluster {
        tracing::info!(name = %restored.name, "starting the cluster recorded by `snapshot restore`");
    }
    cfg.name = restored.name;
    cfg.initial_cluster = restored.initial_cluster;
    cfg.initial_cluster_token = restored.initial_cluster_token;
    cfg.initial_advertise_peer_urls = restored.initial_advertise_peer_urls;
    cfg.initial_cluster_state = "new".into();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_tables_render_as_etcdctl_does() {
        assert_eq!(human_bytes(20480), "20 kB");
        assert_eq!(human_bytes(73728), "74 kB");
        assert_eq!(human_bytes(4096), "4.1 kB");
        let st = Status { hash: 0x4f405354, revision: 304, total_key: 309, total_size: 73728 };
        assert_eq!(render(&st, "simple"), "4f405354, 304, 309, 74 kB\n");
        assert_eq!(
            render(&st, "table"),
            "+----------+----------+------------+------------+\n\
             |   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |\n\
             +----------+----------+------------+------------+\n\
             | 4f405354 |      304 |        309 |      74 kB |\n\
             +----------+----------+------------+------------+\n"
        );
    }
}
