//! Faults, injected while the traffic runs. Each kind repeats (inject, heal, let the cluster
//! settle) until the traffic's deadline; every step is bounded in time and the cluster is whole
//! again when it returns. The nemesis runs on its own thread (it waits synchronously for
//! processes), owning the cluster for the run.

use std::time::{Duration, Instant};

use crate::cluster::Cluster;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    KillFollower,
    KillLeader,
    KillAll,
    PauseLeader,
    MoveLeader,
    ReplaceMember,
    /// A follower is stopped until the log moved past the catch-up tail, then must install a
    /// snapshot (the cluster runs with a small `--snapshot-count`).
    SnapshotCatchUp,
    /// The leader's peer links are cut both ways for a while (peer proxies, [`crate::network`]).
    IsolateLeader,
    /// A follower alone on one side, the leader and the other follower on the other.
    SplitFollower,
    /// Everything the leader sends to its peers is held; what they send it still arrives.
    LeaderOutboundLoss,
    /// Every peer link gets extra latency (a few election ticks' worth).
    PeerDelay,
    /// A follower is cut off (2/1 split), then the leader on the majority side is SIGKILLed, so
    /// no side has a quorum; the partition heals while the leader is down (the two survivors,
    /// one of them behind, must elect a leader with the whole committed log), then it restarts.
    PartitionKill,
}

impl Fault {
    pub const ALL: [Fault; 13] = [
        Fault::None,
        Fault::KillFollower,
        Fault::KillLeader,
        Fault::KillAll,
        Fault::PauseLeader,
        Fault::MoveLeader,
        Fault::ReplaceMember,
        Fault::SnapshotCatchUp,
        Fault::IsolateLeader,
        Fault::SplitFollower,
        Fault::LeaderOutboundLoss,
        Fault::PeerDelay,
        Fault::PartitionKill,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::None => "no-fault",
            Fault::KillFollower => "kill-follower",
            Fault::KillLeader => "kill-leader",
            Fault::KillAll => "kill-all",
            Fault::PauseLeader => "pause-leader",
            Fault::MoveLeader => "move-leader",
            Fault::ReplaceMember => "replace-member",
            Fault::SnapshotCatchUp => "snapshot-catch-up",
            Fault::IsolateLeader => "isolate-leader",
            Fault::SplitFollower => "split-2-1",
            Fault::LeaderOutboundLoss => "one-way-loss",
            Fault::PeerDelay => "peer-delay",
            Fault::PartitionKill => "partition-kill",
        }
    }

    pub fn parse(s: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == s)
    }

    /// Whether the members' peer traffic must go through the suite's proxies.
    pub fn needs_proxy(self) -> bool {
        matches!(
            self,
            Fault::IsolateLeader
                | Fault::SplitFollower
                | Fault::LeaderOutboundLoss
                | Fault::PeerDelay
                | Fault::PartitionKill
        )
    }

    /// Flags the cluster needs for this fault.
    pub fn cluster_flags(self) -> Vec<String> {
        match self {
            Fault::SnapshotCatchUp => vec!["--snapshot-count".into(), "100".into()],
            _ => Vec::new(),
        }
    }
}

/// Injects `fault` repeatedly until `deadline`; returns the cluster and a line per injection.
pub fn run(mut c: Cluster, fault: Fault, deadline: Instant) -> (Cluster, Vec<String>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("nemesis runtime");
    let start = Instant::now();
    let mut log = Vec::new();
    let settle = Duration::from_secs(2);
    std::thread::sleep(settle.min(deadline.saturating_duration_since(Instant::now())));
    while fault != Fault::None && Instant::now() + Duration::from_secs(3) < deadline {
        let at = start.elapsed().as_secs_f64();
        let result = rt.block_on(inject(&mut c, fault, deadline));
        match result {
            Ok(what) => log.push(format!("{at:.1}s {what}")),
            Err(e) => log.push(format!("{at:.1}s {} failed: {e}", fault.name())),
        }
        heal(&mut c);
        // After a partition the cluster needs a moment to elect and catch up before the next.
        std::thread::sleep(if fault.needs_proxy() { settle * 2 } else { settle });
    }
    heal(&mut c);
    (c, log)
}

/// Restarts any member that is down and waits for it (bounded).
fn heal(c: &mut Cluster) {
    if let Some(net) = &c.network {
        net.heal();
    }
    for i in 0..c.members.len() {
        let _running = c.signal(i, "CONT");
        if c.members[i].child.is_none() && c.spawn(i).is_ok() {
            let _healthy = c.wait_healthy(i, Duration::from_secs(30));
        }
    }
}

async fn inject(c: &mut Cluster, fault: Fault, deadline: Instant) -> Result<String, String> {
    let leader = c.leader(Duration::from_secs(10)).await.ok_or("no leader")?;
    let follower = (leader + 1) % c.members.len();
    match fault {
        Fault::None => Ok("nothing".into()),
        Fault::KillFollower | Fault::KillLeader => {
            let i = if fault == Fault::KillLeader { leader } else { follower };
            c.kill(i);
            std::thread::sleep(Duration::from_millis(1000));
            c.spawn(i)?;
            c.wait_healthy(i, Duration::from_secs(30))?;
            Ok(format!("SIGKILL {} ({}) and restart", c.members[i].name, role(i == leader)))
        }
        Fault::KillAll => {
            for i in 0..c.members.len() {
                c.kill(i);
            }
            std::thread::sleep(Duration::from_millis(500));
            for i in 0..c.members.len() {
                c.spawn(i)?;
            }
            for i in 0..c.members.len() {
                c.wait_healthy(i, Duration::from_secs(30))?;
            }
            Ok("SIGKILL every member and restart".into())
        }
        Fault::PauseLeader => {
            c.signal(leader, "STOP")?;
            std::thread::sleep(Duration::from_millis(2000));
            c.signal(leader, "CONT")?;
            Ok(format!("SIGSTOP leader {} for 2 s, SIGCONT", c.members[leader].name))
        }
        Fault::MoveLeader => {
            let (target, _, _) = c.status(follower).await.ok_or("follower does not answer")?;
            let mut cl = c.client(leader).await?;
            cl.move_leader(target).await.map_err(|e| format!("move leader: {e}"))?;
            Ok(format!("move leader {} → {}", c.members[leader].name, c.members[follower].name))
        }
        Fault::ReplaceMember => {
            c.replace(follower, leader).await?;
            Ok(format!("replace {} (remove, wipe, add, rejoin)", c.members[follower].name))
        }
        Fault::IsolateLeader | Fault::SplitFollower | Fault::LeaderOutboundLoss | Fault::PeerDelay => {
            let net = c.network.as_ref().ok_or("the cluster has no peer proxies")?;
            let n = c.members.len();
            let hold = Duration::from_secs(3).min(deadline.saturating_duration_since(Instant::now()));
            let what = match fault {
                Fault::IsolateLeader => {
                    net.partition(&[leader], &others(leader, n));
                    format!("isolate leader {}", c.members[leader].name)
                }
                Fault::SplitFollower => {
                    net.partition(&[follower], &others(follower, n));
                    format!(
                        "split {} from the leader {} and the other",
                        c.members[follower].name, c.members[leader].name
                    )
                }
                Fault::LeaderOutboundLoss => {
                    let cut = others(leader, n).into_iter().map(|o| (leader, o)).collect();
                    net.set(crate::network::Rules { cut, ..Default::default() });
                    format!("hold everything leader {} sends", c.members[leader].name)
                }
                _ => {
                    net.delay_all(Duration::from_millis(200));
                    "200 ms on every peer link".to_string()
                }
            };
            std::thread::sleep(hold);
            // Evidence that the fault bit: whom the members follow at the end of it.
            let seen = c.leaders_seen().await;
            let net = c.network.as_ref().ok_or("the cluster has no peer proxies")?;
            net.heal();
            let (known, unknown) = net.connections();
            Ok(format!(
                "{what} for {:.1} s (leaders then: {}; peer connections recognised {known}, unknown {unknown}), heal",
                hold.as_secs_f64(),
                seen.join(" ")
            ))
        }
        Fault::PartitionKill => {
            let net = c.network.as_ref().ok_or("the cluster has no peer proxies")?;
            net.partition(&[follower], &others(follower, c.members.len()));
            std::thread::sleep(Duration::from_millis(1500));
            c.kill(leader);
            std::thread::sleep(Duration::from_millis(1000));
            let without_quorum = c.leaders_seen().await;
            c.network.as_ref().ok_or("the cluster has no peer proxies")?.heal();
            // The survivors elect a leader; then the killed one comes back as a follower.
            let elected = c.leader(Duration::from_secs(10)).await.map_or("none".into(), |i| c.members[i].name.clone());
            c.spawn(leader)?;
            c.wait_healthy(leader, Duration::from_secs(30))?;
            Ok(format!(
                "split {} off, SIGKILL leader {} 1.5 s later (leaders then: {}), heal 1 s later, {} elected, restart {}",
                c.members[follower].name,
                c.members[leader].name,
                without_quorum.join(" "),
                elected,
                c.members[leader].name
            ))
        }
        Fault::SnapshotCatchUp => {
            let (_, _, start_rev) = c.status(leader).await.ok_or("leader does not answer")?;
            c.kill(follower);
            // Wait until the log moved past the 5,000-entry catch-up tail (bounded).
            let until = deadline.min(Instant::now() + Duration::from_secs(20));
            let mut rev = start_rev;
            while Instant::now() < until && rev < start_rev + 6000 {
                std::thread::sleep(Duration::from_millis(500));
                rev = c.status(leader).await.map_or(rev, |s| s.2);
            }
            c.spawn(follower)?;
            c.wait_healthy(follower, Duration::from_secs(30))?;
            Ok(format!(
                "stop {} for {} revisions, restart (snapshot install)",
                c.members[follower].name,
                rev - start_rev
            ))
        }
    }
}

/// Every member of `n` but `x`.
fn others(x: usize, n: usize) -> Vec<usize> {
    (0..n).filter(|&i| i != x).collect()
}

fn role(leader: bool) -> &'static str {
    if leader {
        "leader"
    } else {
        "follower"
    }
}
