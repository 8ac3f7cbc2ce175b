//! Member and cluster ids, derived exactly as etcd derives them, so every member computes the
//! same ids from the same flags and clients see the ids etcd would report.
//!
//! * member id: first 8 bytes (big-endian) of SHA-1 over the member's sorted peer URLs
//!   concatenated, followed by the cluster token;
//! * cluster id: first 8 bytes of SHA-1 over the sorted member ids, each 8 bytes big-endian.

use sha1::{Digest, Sha1};

/// A member of the cluster as the Cluster service reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
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
