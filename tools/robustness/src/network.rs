//! A fault-injecting TCP proxy in front of every member's peer port, which the nemesis controls
//! to partition the cluster, lose one direction of a link, or delay it.
//!
//! ```text
//!  member j ──connect──► proxy of i (advertised peer URL of i) ──► member i's real peer port
//!                          │ who is j? the connecting socket's owner (/proc), once per connection
//!                          └ every chunk j→i and i→j waits while its link is cut, then its delay
//! ```
//!
//! Members listen for peers on their real port and advertise the proxy's (`tools/member.sh`
//! `MEMBER_ADVERTISE_PEER_URL`), so all member-to-member traffic, whichever side opened the
//! connection, crosses exactly one proxy. A connection carries both directions (requests from the
//! side that connected, responses and server streams back), so the proxy names the connecting
//! member by finding its socket: the connection's source port in `/proc/net/tcp` gives the socket's
//! inode, and the member whose process holds that inode among its descriptors is the sender. That
//! works for any peer protocol (etcd's HTTP streams and MetaStore's gRPC alike).
//!
//! A cut link **holds** its bytes rather than discarding them: a partition on a real network makes
//! TCP retransmit until the path heals, so the stream is delayed, never corrupted, and whatever the
//! members still want to send arrives after the heal (they must cope with late, stale messages).
//! Members that give up on a silent connection and reconnect meet the same rules. A connection
//! from an unknown process is forwarded unless its destination is cut from everyone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The current faults, by directed link (from member, to member).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rules {
    /// Links whose bytes are held until healed.
    pub cut: Vec<(usize, usize)>,
    /// Extra latency per link.
    pub delay: HashMap<(usize, usize), Duration>,
}

impl Rules {
    fn is_cut(&self, from: Option<usize>, to: usize, members: usize) -> bool {
        match from {
            Some(f) => self.cut.contains(&(f, to)),
            // Unknown sender: held only if `to` hears from nobody.
            None => (0..members).filter(|&f| f != to).all(|f| self.cut.contains(&(f, to))),
        }
    }

    fn delay(&self, from: Option<usize>, to: usize) -> Duration {
        from.and_then(|f| self.delay.get(&(f, to)).copied()).unwrap_or_default()
    }
}

/// Every member's proxy, running on its own runtime so the synchronous nemesis can drive it.
pub struct Network {
    rt: Option<tokio::runtime::Runtime>,
    rules: watch::Sender<Rules>,
    /// Each member's PID (`None` while it is down), to recognise connecting members.
    pids: Arc<Mutex<Vec<Option<u32>>>>,
    /// (proxy port, member's real peer port) per member.
    pub ports: Vec<(u16, u16)>,
    /// Connections whose sender was / was not recognised (a partition is only as good as this).
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    known: AtomicUsize,
    unknown: AtomicUsize,
}

impl Network {
    /// Starts a proxy per member, forwarding to `targets[i]` (the real peer ports).
    pub fn start(targets: &[u16]) -> Result<Network, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("peer-proxy")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let (rules, _) = watch::channel(Rules::default());
        let pids = Arc::new(Mutex::new(vec![None; targets.len()]));
        let mut ports = Vec::new();
        let counts = Arc::new(Counts::default());
        for (i, &target) in targets.iter().enumerate() {
            let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).map_err(|e| format!("proxy bind: {e}"))?;
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            ports.push((port, target));
            let members = targets.len();
            let link =
                Link { to: i, target, members, rules: rules.subscribe(), pids: pids.clone(), counts: counts.clone() };
            rt.spawn(link.accept(listener));
        }
        Ok(Network { rt: Some(rt), rules, pids, ports, counts })
    }

    /// (connections whose sending member was recognised, connections from unknown processes).
    pub fn connections(&self) -> (usize, usize) {
        (self.counts.known.load(Ordering::Relaxed), self.counts.unknown.load(Ordering::Relaxed))
    }

    pub fn set_pid(&self, i: usize, pid: Option<u32>) {
        self.pids.lock().expect("pids")[i] = pid;
    }

    pub fn set(&self, rules: Rules) {
        self.rules.send_replace(rules);
    }

    pub fn heal(&self) {
        self.set(Rules::default());
    }

    /// Cuts every link between the two groups, both ways.
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        let mut cut = Vec::new();
        for &x in a {
            for &y in b {
                cut.push((x, y));
                cut.push((y, x));
            }
        }
        self.set(Rules { cut, ..Rules::default() });
    }

    /// Adds `latency` to every link of the cluster.
    pub fn delay_all(&self, latency: Duration) {
        let n = self.ports.len();
        let delay = (0..n).flat_map(|a| (0..n).filter(move |&b| b != a).map(move |b| ((a, b), latency))).collect();
        self.set(Rules { delay, ..Rules::default() });
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Every proxied connection ends with the runtime (which may be dropped from async code).
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

#[derive(Clone)]
struct Link {
    to: usize,
    target: u16,
    members: usize,
    rules: watch::Receiver<Rules>,
    pids: Arc<Mutex<Vec<Option<u32>>>>,
    counts: Arc<Counts>,
}

impl Link {
    async fn accept(self, listener: TcpListener) {
        loop {
            let Ok((inbound, peer)) = listener.accept().await else { continue };
            let link = self.clone();
            tokio::spawn(async move {
                let from = link.identify(peer.port(), listener_port(&inbound)).await;
                let counter = if from.is_some() { &link.counts.known } else { &link.counts.unknown };
                counter.fetch_add(1, Ordering::Relaxed);
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", link.target)).await else { return };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let (ir, iw) = inbound.into_split();
                let (or, ow) = outbound.into_split();
                // Bytes from the connecting member travel from → to; the answers to → from.
                let forward = pump(ir, ow, link.rules.clone(), link.members, from, Some(link.to));
                let back = pump(or, iw, link.rules.clone(), link.members, Some(link.to), from);
                tokio::join!(forward, back);
            });
        }
    }

    /// The member whose process owns the connecting socket (retried briefly: the kernel's tables
    /// and the PID list may lag the connection by a moment).
    async fn identify(&self, source_port: u16, proxy_port: u16) -> Option<usize> {
        for _ in 0..20 {
            let pids = self.pids.lock().expect("pids").clone();
            if let Some(inode) = socket_inode(source_port, proxy_port) {
                for (i, pid) in pids.iter().enumerate() {
                    if pid.is_some_and(|p| holds_socket(p, inode)) {
                        return Some(i);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }
}

fn listener_port(s: &TcpStream) -> u16 {
    s.local_addr().map(|a| a.port()).unwrap_or(0)
}

/// Copies `r` to `w` chunk by chunk; a chunk waits while its link is cut (`to` `None`: an unknown
/// member at the other end, so only its own destination's isolation applies), then its delay.
async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    mut rules: watch::Receiver<Rules>,
    members: usize,
    from: Option<usize>,
    to: Option<usize>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let read_at = Instant::now();
        let delay = loop {
            let (cut, delay) = {
                let current = rules.borrow_and_update();
                match to {
                    Some(t) => (current.is_cut(from, t, members), current.delay(from, t)),
                    // Answers to an unknown member: held if their sender is cut from everyone.
                    None => {
                        let f = from.expect("one end is always the proxied member");
                        let cut = (0..members).filter(|&x| x != f).all(|x| current.cut.contains(&(f, x)));
                        (cut, Duration::ZERO)
                    }
                }
            };
            if !cut {
                break delay;
            }
            if rules.changed().await.is_err() {
                return;
            }
        };
        let due = read_at + delay;
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
}

/// The inode of the socket 127.0.0.1:`local` → 127.0.0.1:`remote` (`/proc/net/tcp`).
fn socket_inode(local: u16, remote: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let want_local = format!("0100007F:{local:04X}");
    let want_remote = format!("0100007F:{remote:04X}");
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 9 && f[1] == want_local && f[2] == want_remote).then(|| f[9].parse().ok()).flatten()
    })
}

/// Whether process `pid` has the socket `inode` among its open descriptors.
fn holds_socket(pid: u32, inode: u64) -> bool {
    let want = format!("socket:[{inode}]");
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy() == want))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// An echo server behind a one-member proxy; the test process itself is member 0's "peer".
    fn echo_behind_proxy() -> (Network, u16) {
        let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = echo.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for s in echo.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut s = s;
                    let mut b = [0u8; 1024];
                    while let Ok(n) = s.read(&mut b) {
                        if n == 0 || s.write_all(&b[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        // Two members: 0 is the echo server's side, 1 is this test process.
        let net = Network::start(&[port, 1]).unwrap();
        net.set_pid(1, Some(std::process::id()));
        let proxy = net.ports[0].0;
        (net, proxy)
    }

    fn round_trip(s: &mut std::net::TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(msg)?;
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got)?;
        Ok(got)
    }

    #[test]
    fn forwards_holds_while_cut_and_delivers_after_heal() {
        let (net, proxy) = echo_behind_proxy();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy)).unwrap();
        assert_eq!(round_trip(&mut s, b"hello").unwrap(), b"hello");
        // The test process is recognised as member 1: cutting 1 → 0 holds its bytes.
        net.set(Rules { cut: vec![(1, 0)], ..Rules::default() });
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        assert!(round_trip(&mut s, b"held").is_err(), "a cut link must not deliver");
        net.heal();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = [0u8; 4];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"held", "held bytes arrive, in order, once healed");
    }

    #[test]
    fn one_way_cut_holds_only_the_answers() {
        let (net, proxy) = echo_behind_proxy();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy)).unwrap();
        assert_eq!(round_trip(&mut s, b"x").unwrap(), b"x");
        net.set(Rules { cut: vec![(0, 1)], ..Rules::default() });
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        assert!(round_trip(&mut s, b"y").is_err(), "the echo (0 → 1) is held");
        net.heal();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = [0u8; 1];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"y");
    }

    #[test]
    fn delay_adds_latency_each_way() {
        let (net, proxy) = echo_behind_proxy();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy)).unwrap();
        assert_eq!(round_trip(&mut s, b"warm").unwrap(), b"warm");
        net.delay_all(Duration::from_millis(150));
        let started = Instant::now();
        assert_eq!(round_trip(&mut s, b"slow").unwrap(), b"slow");
        assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    }
}
