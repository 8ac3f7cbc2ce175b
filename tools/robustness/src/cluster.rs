//! A loopback cluster of MetaStore or etcd members, each started through the one launcher
//! (`tools/member.sh`, which execs the server so the child's PID is the member's). Only PIDs
//! this module started are ever signalled; dropping the cluster kills them all.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::Client;

use crate::network::Network;

pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub initial_cluster: String,
    pub existing: bool,
    pub child: Option<Child>,
    /// The peer URL the member advertises when a proxy stands in front of it.
    pub advertised_peer_port: Option<u16>,
}

impl Member {
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// The peer URL the other members use (the proxy's, when there is one).
    pub fn advertised_peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.advertised_peer_port.unwrap_or(self.peer_port))
    }
}

pub struct Cluster {
    pub bin: String,
    pub launcher: PathBuf,
    pub members: Vec<Member>,
    /// Flags for every member beyond what the launcher sets.
    pub extra: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The fault-injecting proxies in front of the peer ports, if the cluster was started with them.
    pub network: Option<Network>,
    dir: tempfile::TempDir,
    log_seq: usize,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind port 0").local_addr().expect("local addr").port()
}

impl Cluster {
    /// Starts `n` members and waits until each is healthy (30 s); with `proxied`, every member's
    /// peer traffic goes through a [`Network`] proxy the nemesis controls.
    pub fn start(
        bin: &str,
        launcher: PathBuf,
        n: usize,
        extra: &[String],
        env: &[(String, String)],
        proxied: bool,
    ) -> Result<Cluster, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let network =
            if proxied { Some(Network::start(&ports.iter().map(|p| p.1).collect::<Vec<_>>())?) } else { None };
        let advertised = |i: usize| network.as_ref().map(|net| net.ports[i].0);
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{}", advertised(i).unwrap_or(*p)))
            .collect();
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (c, p))| Member {
                name: format!("m{i}"),
                client_port: *c,
                peer_port: *p,
                data_dir: dir.path().join(format!("m{i}")),
                initial_cluster: initial.join(","),
                existing: false,
                child: None,
                advertised_peer_port: advertised(i),
            })
            .collect();
        let mut extra_all: Vec<String> =
            ["--heartbeat-interval", "50", "--election-timeout", "500"].map(String::from).to_vec();
        extra_all.extend(extra.iter().cloned());
        let mut c = Cluster {
            bin: bin.into(),
            launcher,
            members,
            extra: extra_all,
            env: env.to_vec(),
            network,
            dir,
            log_seq: 0,
        };
        for i in 0..n {
            c.spawn(i)?;
        }
        for i in 0..n {
            c.wait_healthy(i, Duration::from_secs(30))?;
        }
        Ok(c)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url()).collect()
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn spawn(&mut self, i: usize) -> Result<(), String> {
        self.log_seq += 1;
        let log_path = self.dir.path().join(format!("{}.{}.log", self.members[i].name, self.log_seq));
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let m = &self.members[i];
        let mut cmd = Command::new(&self.launcher);
        cmd.args([
            &self.bin,
            &m.name,
            &m.data_dir.display().to_string(),
            &m.client_url(),
            &m.peer_url(),
            &m.initial_cluster,
        ])
        .args(&self.extra)
        .envs(self.env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(log);
        if m.existing {
            cmd.args(["--initial-cluster-state", "existing"]);
        }
        if m.advertised_peer_port.is_some() {
            cmd.env("MEMBER_ADVERTISE_PEER_URL", m.advertised_peer_url());
        }
        let child = cmd.spawn().map_err(|e| format!("spawn {}: {e}", self.bin))?;
        if let Some(net) = &self.network {
            net.set_pid(i, Some(child.id()));
        }
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Polls `/health` of member `i` until it answers healthy.
    pub fn wait_healthy(&mut self, i: usize, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let addr = format!("127.0.0.1:{}", self.members[i].client_port);
        while Instant::now() < deadline {
            if let Some(c) = self.members[i].child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.members[i].child = None;
                    return Err(format!("{} exited with {status}", self.members[i].name));
                }
            }
            if http_get(&addr, "/health").is_some_and(|b| b.contains("\"health\":\"true\"")) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("{} not healthy within {timeout:?}", self.members[i].name))
    }

    /// SIGKILL member `i` and reap it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _already_dead = c.kill();
            let _status = c.wait();
        }
        if let Some(net) = &self.network {
            net.set_pid(i, None);
        }
    }

    /// Sends `sig` (`STOP`, `CONT`) to member `i`'s process, which this cluster started.
    pub fn signal(&self, i: usize, sig: &str) -> Result<(), String> {
        let pid = self.members[i].child.as_ref().ok_or("member not running")?.id();
        let status =
            Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -{sig} {pid} failed"))
        }
    }

    /// (member id, leader id) as member `i` reports them.
    pub async fn status(&self, i: usize) -> Option<(u64, u64, i64)> {
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_millis(500))
            .with_timeout(Duration::from_secs(1));
        let mut c = Client::connect([self.members[i].client_url()], Some(opts)).await.ok()?;
        let s = c.status().await.ok()?;
        let h = s.header()?;
        Some((h.member_id(), s.leader(), h.revision()))
    }

    /// Index of the member the running members agree leads (bounded by `timeout`).
    pub async fn leader(&self, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let mut ids = Vec::new();
            let mut leaders = Vec::new();
            for i in 0..self.members.len() {
                if self.members[i].child.is_some() {
                    if let Some((id, leader, _)) = self.status(i).await {
                        ids.push((i, id));
                        leaders.push(leader);
                    }
                }
            }
            if let Some(&l) = leaders.first() {
                if l != 0 && leaders.iter().all(|x| *x == l) {
                    if let Some((i, _)) = ids.iter().find(|(_, id)| *id == l) {
                        return Some(*i);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Whom each member follows, by name ("none": no leader, "?": no answer).
    pub async fn leaders_seen(&self) -> Vec<String> {
        let mut status = Vec::new();
        for i in 0..self.members.len() {
            status.push(self.status(i).await);
        }
        let name_of = |id: u64| match status.iter().position(|s| s.is_some_and(|s| s.0 == id)) {
            _ if id == 0 => "none".to_string(),
            Some(i) => self.members[i].name.clone(),
            None => format!("{id:x}"),
        };
        let seen = status.iter().map(|s| s.map_or("?".to_string(), |s| name_of(s.1)));
        self.members.iter().zip(seen).map(|(m, l)| format!("{}→{l}", m.name)).collect()
    }

    pub async fn client(&self, i: usize) -> Result<Client, String> {
        Client::connect([self.members[i].client_url()], None).await.map_err(|e| e.to_string())
    }

    /// Replaces member `i` (remove, stop, wipe, add with a new peer port, start as `existing`).
    /// Not with proxies (the new peer port has none).
    pub async fn replace(&mut self, i: usize, via: usize) -> Result<(), String> {
        if self.network.is_some() {
            return Err("member replacement is not supported behind the peer proxies".into());
        }
        let mut c = self.client(via).await?;
        let (id, _, _) = self.status(i).await.ok_or("member to replace does not answer")?;
        // etcd refuses a removal ("unhealthy cluster") until the remaining members have been
        // connected for its health interval (5 s); retry for a while rather than skip the fault.
        let until = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            match c.member_remove(id).await {
                Ok(_) => break,
                Err(e) if e.to_string().contains("unhealthy cluster") && std::time::Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(500)).await
                }
                Err(e) => return Err(format!("member remove: {e}")),
            }
        }
        self.kill(i);
        std::fs::remove_dir_all(&self.members[i].data_dir).map_err(|e| e.to_string())?;
        self.members[i].peer_port = free_port();
        let peer = self.members[i].peer_url();
        c.member_add([peer.as_str()], None).await.map_err(|e| format!("member add: {e}"))?;
        let cluster: Vec<String> = self.members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect();
        self.members[i].initial_cluster = cluster.join(",");
        self.members[i].existing = true;
        self.spawn(i)?;
        self.wait_healthy(i, Duration::from_secs(30))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            let _resumed = self.signal(i, "CONT");
            self.kill(i);
        }
    }
}

/// A minimal HTTP/1.1 GET on loopback; `None` if nothing answers.
fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}
