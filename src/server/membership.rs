//! Member and cluster ids, derived exactly as etcd derives them, so every member computes the
//! same ids from the same flags and clients see the ids etcd would report.
//!
//! * member id: first 8 bytes (big-endian) of SHA-1 over the member's sorted peer URLs
//!   concatenated, followed by the cluster token;
//! * cluster id: first 8 bytes of SHA-1 over the sorted member ids, each 8 bytes big-endian.

use prost::Message as _;
use sha1::{Digest, Sha1};

use crate::error::Result;
use crate::proto::metastorepb::MemberRecord;
use crate::storage::schema::u64_key;
use crate::storage::{decode_all, Engine, Table, WriteBatch};

/// A member of the cluster as the Cluster service reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

fn sha1_prefix(bytes: &[u8]) -> u64 {
    let hash = Sha1::digest(bytes);
    u64::from_be_bytes(hash[..8].try_into().expect("sha1 is 20 bytes"))
}

pub fn member_id(peer_urls: &[String], cluster_token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut b = urls.concat().into_bytes();
    b.extend_from_slice(cluster_token.as_bytes());
    sha1_prefix(&b)
}

pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let b: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    sha1_prefix(&b)
}

fn load(engine: &dyn Engine) -> Result<std::collections::BTreeMap<u64, Member>> {
    let records = decode_all::<MemberRecord>(engine, Table::Members, "member record")?;
    Ok(records.into_iter().map(|r| (r.id, from_record(r))).collect())
}

/// The replicated member list: changed only while applying raft entries (configuration changes
/// and member updates), persisted in the `members` table with the entry's other effects.
pub struct Members {
    members: std::sync::RwLock<std::collections::BTreeMap<u64, Member>>,
}

/// The stored form of a member.
pub fn record(m: &Member) -> MemberRecord {
    MemberRecord {
        id: m.id,
        name: m.name.clone(),
        peer_urls: m.peer_urls.clone(),
        client_urls: m.client_urls.clone(),
        is_learner: m.is_learner,
    }
}

pub fn from_record(r: MemberRecord) -> Member {
    Member { id: r.id, name: r.name, peer_urls: r.peer_urls, client_urls: r.client_urls, is_learner: r.is_learner }
}

impl Members {
    pub fn open(engine: &dyn Engine) -> Result<Self> {
        Ok(Self { members: std::sync::RwLock::new(load(engine)?) })
    }

    /// Replaces the list with the engine's (after a snapshot was installed).
    pub fn reload(&self, engine: &dyn Engine) -> Result<()> {
        *self.members.write().expect("members lock") = load(engine)?;
        Ok(())
    }

    pub fn list(&self) -> Vec<Member> {
        self.members.read().expect("members lock").values().cloned().collect()
    }

    pub fn get(&self, id: u64) -> Option<Member> {
        self.members.read().expect("members lock").get(&id).cloned()
    }

    /// Adds or replaces a member (keeping known client URLs and name when the new record lacks
    /// them).
    pub fn upsert(&self, batch: &mut WriteBatch, mut m: Member) {
        let mut map = self.members.write().expect("members lock");
        if let Some(old) = map.get(&m.id) {
            if m.name.is_empty() {
                m.name = old.name.clone();
            }
            if m.client_urls.is_empty() {
                m.client_urls = old.client_urls.clone();
            }
            if m.peer_urls.is_empty() {
                m.peer_urls = old.peer_urls.clone();
            }
        }
        batch.put(Table::Members, u64_key(m.id).to_vec(), record(&m).encode_to_vec());
        map.insert(m.id, m);
    }

    pub fn remove(&self, batch: &mut WriteBatch, id: u64) {
        self.members.write().expect("members lock").remove(&id);
        batch.delete(Table::Members, u64_key(id).to_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_etcd() {
        // etcd 3.4.23 `--name default` with its default flags reports member 8e9e05c52164694d in
        // cluster cdf818194e3a8c32.
        let id = member_id(&["http://localhost:2380".to_string()], "etcd-cluster");
        assert_eq!(format!("{id:x}"), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", cluster_id(&[id])), "cdf818194e3a8c32");
    }

    #[test]
    fn url_order_does_not_matter() {
        let a = member_id(&["http://b:1".into(), "http://a:1".into()], "t");
        let b = member_id(&["http://a:1".into(), "http://b:1".into()], "t");
        assert_eq!(a, b);
        assert_eq!(cluster_id(&[3, 1, 2]), cluster_id(&[1, 2, 3]));
    }
}
