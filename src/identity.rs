//! Who this member is and which cluster it belongs to, decided once at first start and kept in
//! the data dir's meta table:
//!
//! * a restart on an existing data dir reuses the stored ids and ignores `--initial-cluster*`;
//! * `--initial-cluster-state new` derives every id from the flags, as etcd does, so all initial
//!   members agree without talking;
//! * `--initial-cluster-state existing` asks the other members listed in `--initial-cluster` for
//!   the cluster (it must already contain this member, added with `member add`) and finds itself
//!   by its advertised peer URLs.

use metastore::config::Config;
use metastore::peer;
use metastore::server::membership::from_record;
use metastore::server::{Member, Start};
use metastore::storage::schema::{decode_u64, META_CLUSTER_ID, META_MEMBER_ID};
use metastore::storage::{Engine, Table};
use metastore::tls::PeerTls;

pub struct Identity {
    pub member_id: u64,
    pub cluster_id: u64,
    pub start: Start,
    pub known_peers: Vec<Member>,
    /// Whether the data dir already held this member (a restart, not a first start).
    pub restarted: bool,
}

pub async fn resolve(cfg: &Config, engine: &dyn Engine, tls: Option<&PeerTls>) -> Result<Identity, String> {
    let stored = |key: &[u8]| engine.get(Table::Meta, key).map(|v| v.as_deref().and_then(decode_u64));
    let (member, cluster) = (stored(META_MEMBER_ID), stored(META_CLUSTER_ID));
    if let (Ok(Some(member_id)), Ok(Some(cluster_id))) = (member, cluster) {
        tracing::info!(member = %format!("{member_id:x}"), cluster = %format!("{cluster_id:x}"), "restarting from the data dir");
        return Ok(Identity {
            member_id,
            cluster_id,
            start: Start::Join,
            known_peers: cfg.initial_members(),
            restarted: true,
        });
    }
    // The ids are written by the server together with the bootstrapped raft log, in one batch.
    if cfg.initial_cluster_state == "existing" {
        join(cfg, tls).await
    } else {
        new_cluster(cfg, tls)
    }
}

fn new_cluster(cfg: &Config, tls: Option<&PeerTls>) -> Result<Identity, String> {
    let members = cfg.initial_members();
    let member_id = cfg.member_id();
    if !members.iter().any(|m| m.id == member_id) {
        return Err(format!(
            "--initial-cluster has no entry for this member ({} with peer URLs {:?})",
            cfg.name, cfg.initial_advertise_peer_urls
        ));
    }
    if members.len() > 1
        && tls.is_none()
        && members.iter().flat_map(|m| &m.peer_urls).any(|u| u.starts_with("https://"))
    {
        return Err("https:// peer URLs need --peer-auto-tls or --peer-cert-file/--peer-key-file".into());
    }
    Ok(Identity {
        member_id,
        cluster_id: cfg.cluster_id(),
        start: Start::NewCluster(members.clone()),
        known_peers: members,
        restarted: false,
    })
}

async fn join(cfg: &Config, tls: Option<&PeerTls>) -> Result<Identity, String> {
    let mine = &cfg.initial_advertise_peer_urls;
    let others = cfg.initial_cluster.iter().filter(|(_, url)| !mine.contains(url));
    let mut last_error = String::from("no other member in --initial-cluster");
    for (_, url) in others {
        let info = match peer::cluster(url, tls).await {
            Ok(info) => info,
            Err(e) => {
                last_error = e;
                continue;
            }
        };
        let members: Vec<Member> = info.members.into_iter().map(from_record).collect();
        let Some(me) = members.iter().find(|m| m.peer_urls.iter().any(|u| mine.contains(u))) else {
            return Err(format!("the cluster has no member with peer URLs {mine:?}: add it with `member add` first"));
        };
        let member_id = me.id;
        return Ok(Identity {
            member_id,
            cluster_id: info.cluster_id,
            start: Start::Join,
            known_peers: members,
            restarted: false,
        });
    }
    Err(format!("could not reach the cluster to join: {last_error}"))
}
