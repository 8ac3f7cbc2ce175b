//! Process-test harness: starts the real `metastore` binary (or, to run the same test against the
//! reference, etcd 3.4.23's) on ephemeral loopback ports in a temporary data dir, polls its health
//! until it serves, and kills it (by PID) when dropped.

#![allow(dead_code)] // each test binary uses its own subset

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_metastore");
/// Real etcd 3.4.23 (Debian's etcd-server), which takes the same flags.
pub const ETCD_BIN: &str = "/usr/bin/etcd";

/// What a member logs (lowercased) when a port it was given has been taken meanwhile.
const PORT_TAKEN: &str = "address already in use";

/// Reserves a free loopback port by binding port 0 and releasing it.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind port 0").local_addr().expect("local addr").port()
}

/// The one launcher of a member (`tools/member.sh`), which the other tools call too: it builds
/// the flags and execs the server, so the child's PID is the member's.
pub const LAUNCHER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/member.sh");

pub struct Member {
    /// The server binary: [`BIN`] or [`ETCD_BIN`].
    pub bin: &'static str,
    pub child: Option<Child>,
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    pub data_dir: PathBuf,
    pub initial_cluster: String,
    /// Flags beyond the ones the launcher sets (name, data dir, URLs, initial cluster).
    pub args: Vec<String>,
    /// Environment variables of the process (e.g. `METASTORE_FAILPOINTS`).
    pub env: Vec<(String, String)>,
    _tmp: Option<tempfile::TempDir>,
}

impl Member {
    /// Starts a single member with `extra` flags on a fresh data dir. Ports are picked by
    /// binding port 0 and releasing it, so another process may grab one first: a start that fails
    /// with "Address already in use" is retried on fresh ports (at most three times).
    pub fn start(extra: &[&str]) -> Member {
        Self::start_bin(BIN, extra, &[])
    }

    /// [`Member::start`] with environment variables for the process.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Member {
        Self::start_bin(BIN, extra, env)
    }

    /// Starts a single member whose client URL is `https://` (`extra` gives the TLS flags); it
    /// also listens on a plain `http://` URL, which readiness polling uses.
    pub fn start_https(extra: &[&str]) -> Member {
        for _ in 0..3 {
            let tmp = tempfile::tempdir().expect("tempdir");
            let mut m = Self::configure(&tmp.path().join("data"), extra);
            m.client_url = format!("https://127.0.0.1:{},{}", free_port(), m.client_url);
            m._tmp = Some(tmp);
            m.spawn_nowait();
            match m.try_wait_ready() {
                Ok(()) => return m,
                Err(log) if log.to_lowercase().contains(PORT_TAKEN) => continue,
                Err(log) => panic!("metastore did not start; log:\n{log}"),
            }
        }
        panic!("no free ports after three attempts");
    }

    /// [`Member::start`] with real etcd instead of metastore.
    pub fn start_etcd(extra: &[&str]) -> Member {
        Self::start_bin(ETCD_BIN, extra, &[])
    }

    fn start_bin(bin: &'static str, extra: &[&str], env: &[(&str, &str)]) -> Member {
        for _ in 0..3 {
            let tmp = tempfile::tempdir().expect("tempdir");
            let data_dir = tmp.path().join("data");
            let mut m = Self::configure(&data_dir, extra);
            m.bin = bin;
            m.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            m._tmp = Some(tmp);
            m.spawn_nowait();
            match m.try_wait_ready() {
                Ok(()) => return m,
                Err(log) if log.to_lowercase().contains(PORT_TAKEN) => continue,
                Err(log) => panic!("{bin} did not start; log:\n{log}"),
            }
        }
        panic!("no free ports after three attempts");
    }

    /// A single member of `bin` on fresh ports whose data dir does not exist yet; not started:
    /// for tests that make the data dir first (`snapshot restore`), then [`Member::spawn`].
    pub fn prepare(bin: &'static str) -> Member {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut m = Self::configure(&tmp.path().join("data"), &[]);
        m.bin = bin;
        m._tmp = Some(tmp);
        m
    }

    fn configure(data_dir: &Path, extra: &[&str]) -> Member {
        let client_url = format!("http://127.0.0.1:{}", free_port());
        let peer_url = format!("http://127.0.0.1:{}", free_port());
        Member {
            bin: BIN,
            child: None,
            name: "n1".into(),
            initial_cluster: format!("n1={peer_url}"),
            client_url,
            peer_url,
            data_dir: data_dir.to_path_buf(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            _tmp: None,
        }
    }

    /// (Re)starts the process with the same arguments and waits until it serves.
    pub fn spawn(&mut self) {
        self.spawn_nowait();
        self.wait_ready();
    }

    /// Starts the process without waiting (members of a cluster wait for each other).
    pub fn spawn_nowait(&mut self) {
        let log = std::fs::File::create(self.log_path()).expect("log file");
        let data_dir = self.data_dir.display().to_string();
        let child = Command::new(LAUNCHER)
            .args([self.bin, &self.name, &data_dir, &self.client_url, &self.peer_url, &self.initial_cluster])
            .args(&self.args)
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn the server");
        self.child = Some(child);
    }

    pub fn log_path(&self) -> PathBuf {
        let parent = self.data_dir.parent().expect("data dir has a parent").to_path_buf();
        parent.join("metastore.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends a signal (e.g. "STOP", "CONT") to the member's process.
    pub fn signal(&self, sig: &str) {
        let pid = self.pid().expect("member is running");
        let status = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().expect("kill");
        assert!(status.success(), "kill -{sig} {pid}");
    }

    /// The first client URL.
    pub fn endpoint(&self) -> String {
        self.client_url.split(',').next().unwrap_or_default().to_string()
    }

    /// Polls `/health` until the member answers healthy (bounded: 30 s).
    pub fn wait_ready(&mut self) {
        if let Err(log) = self.try_wait_ready() {
            panic!("metastore did not become healthy; log:\n{log}");
        }
    }

    /// Like [`Member::wait_ready`], but hands back the log when the process exits or times out.
    pub fn try_wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = match self.client_url.split(',').find_map(|u| u.strip_prefix("http://")) {
            Some(addr) => addr.to_string(),
            None => return Err(format!("no http:// client URL to poll in {}", self.client_url)),
        };
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(format!("exited early with {status}:\n{}", self.log()));
            }
            if http_get(&addr, "/health").is_some_and(|b| b.contains("\"health\":\"true\"")) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("not healthy within 30 s:\n{}", self.log()))
    }

    /// SIGTERM, as an operator stops a member: waits for the exit and returns its status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let mut child = self.child.take().expect("member is running");
        child.wait().expect("reap metastore")
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill metastore");
            c.wait().expect("reap metastore");
        }
    }

    /// Runs stock etcdctl against this member.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        self.etcdctl_stdin(args, None)
    }

    pub fn etcdctl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        etcdctl(&self.endpoint(), args, stdin)
    }

    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.endpoint()], None).await.expect("connect etcd-client")
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=10s")
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("etcdctl is installed (make test installs etcd-client)");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("etcdctl output")
}

/// stdout of a successful etcdctl call.
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "etcdctl failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8 output")
}

/// stderr of a failed etcdctl call.
pub fn fails(out: Output) -> String {
    assert!(!out.status.success(), "etcdctl unexpectedly succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr).expect("utf8 output")
}

/// A minimal HTTP/1.1 GET on loopback; `None` if the server is not answering.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// A cluster of members on ephemeral loopback ports, each in its own data dir.
pub struct Cluster {
    pub members: Vec<Member>,
    tmp: tempfile::TempDir,
    pub initial_cluster: String,
}

impl Cluster {
    /// Starts `n` members and waits until each serves.
    pub fn start(n: usize) -> Cluster {
        Self::start_with(n, &[])
    }

    /// Starts `n` members with `extra` flags each, retrying on fresh ports (at most three
    /// times) when one was taken between picking and binding it.
    pub fn start_with(n: usize, extra: &[&str]) -> Cluster {
        Self::start_with_env(n, extra, &[])
    }

    /// [`Cluster::start_with`] with environment variables for every member's process.
    pub fn start_with_env(n: usize, extra: &[&str], env: &[(&str, &str)]) -> Cluster {
        Self::start_scheme(n, extra, env, "http")
    }

    /// [`Cluster::start_with`] with `https://` peer URLs (`extra` must give peer TLS flags).
    pub fn start_https_peers(n: usize, extra: &[&str]) -> Cluster {
        Self::start_scheme(n, extra, &[], "https")
    }

    fn start_scheme(n: usize, extra: &[&str], env: &[(&str, &str)], peer_scheme: &str) -> Cluster {
        for _ in 0..3 {
            if let Some(c) = Self::try_start(n, extra, env, peer_scheme) {
                return c;
            }
        }
        panic!("no free ports after three attempts");
    }

    fn try_start(n: usize, extra: &[&str], env: &[(&str, &str)], peer_scheme: &str) -> Option<Cluster> {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial_cluster: String = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}={peer_scheme}://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<Member> = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                Member::with_ports(
                    &tmp.path().join(format!("m{i}")),
                    &format!("m{i}"),
                    *client,
                    *peer,
                    &initial_cluster,
                    extra,
                )
            })
            .collect();
        for m in &mut members {
            m.peer_url = m.peer_url.replace("http://", &format!("{peer_scheme}://"));
            m.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            m.spawn_nowait();
        }
        for (i, m) in members.iter_mut().enumerate() {
            match m.try_wait_ready() {
                Ok(()) => {}
                Err(log) if log.to_lowercase().contains(PORT_TAKEN) => return None, // dropping `members` kills them
                Err(log) => panic!("member m{i} did not start; log:\n{log}"),
            }
        }
        Some(Cluster { members, tmp, initial_cluster })
    }

    /// A new member's process for `member add` (`--initial-cluster-state existing`); not started.
    pub fn prepare_joiner(&self, name: &str) -> Member {
        let (client, peer) = (free_port(), free_port());
        let initial = format!("{},{name}=http://127.0.0.1:{peer}", self.initial_cluster);
        let dir = self.tmp.path().join(name);
        Member::with_ports(&dir, name, client, peer, &initial, &["--initial-cluster-state", "existing"])
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().filter(|m| m.child.is_some()).map(|m| m.endpoint()).collect()
    }
}

impl Member {
    /// A member named `name` with the given ports and `--initial-cluster`; not started.
    pub fn with_ports(
        data_dir: &Path,
        name: &str,
        client: u16,
        peer: u16,
        initial_cluster: &str,
        extra: &[&str],
    ) -> Member {
        std::fs::create_dir_all(data_dir).expect("member dir");
        let mut args: Vec<String> =
            ["--heartbeat-interval", "50", "--election-timeout", "500"].iter().map(|s| s.to_string()).collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        Member {
            bin: BIN,
            child: None,
            name: name.to_string(),
            client_url: format!("http://127.0.0.1:{client}"),
            peer_url: format!("http://127.0.0.1:{peer}"),
            data_dir: data_dir.join("data"),
            initial_cluster: initial_cluster.to_string(),
            args,
            env: Vec::new(),
            _tmp: None,
        }
    }
}

/// How long cluster helpers wait for agreement before failing the test.
pub const CLUSTER_DEADLINE: Duration = Duration::from_secs(30);

pub async fn client(m: &Member) -> etcd_client::Client {
    etcd_client::Client::connect([m.endpoint()], None).await.expect("connect")
}

/// The leader id as member `m` sees it (0 if none or unreachable).
pub async fn leader_seen_by(m: &Member) -> u64 {
    match etcd_client::Client::connect([m.endpoint()], None).await {
        Ok(mut c) => c.status().await.map(|s| s.leader()).unwrap_or(0),
        Err(_) => 0,
    }
}

pub async fn member_id(m: &Member) -> u64 {
    client(m).await.status().await.unwrap().header().unwrap().member_id()
}

/// Index of the member that leads, once the running members agree on one.
pub async fn wait_leader(c: &Cluster, excluding: Option<u64>) -> usize {
    let start = Instant::now();
    loop {
        let mut seen = Vec::new();
        for m in c.members.iter().filter(|m| m.child.is_some()) {
            seen.push(leader_seen_by(m).await);
        }
        let candidate = seen[0];
        if candidate != 0 && Some(candidate) != excluding && seen.iter().all(|l| *l == candidate) {
            for (i, m) in c.members.iter().enumerate().filter(|(_, m)| m.child.is_some()) {
                if member_id(m).await == candidate {
                    return i;
                }
            }
        }
        assert!(start.elapsed() < CLUSTER_DEADLINE, "no agreed leader within {CLUSTER_DEADLINE:?}: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
