//! `docs/robustness.md`: one table per server (MetaStore, etcd), a row per scenario, and the
//! details of anything that failed (the checker's window, the first watch failures).

use crate::scenario::Outcome;

pub struct Run {
    pub target: String,
    pub outcomes: Vec<Result<Outcome, (String, String)>>,
}

pub fn markdown(command: &str, runs: &[Run]) -> String {
    let mut s = String::from(
        "# Robustness\n\nRecorded client histories under faults, checked for linearizability and etcd's watch \
         guarantees (tools/robustness; design in its module docs). Each scenario starts a fresh 3-member \
         loopback cluster through tools/member.sh.\n\n",
    );
    s += &format!("Command: `{command}`\n\n");
    s += "Columns: operations recorded (unknown outcomes in parentheses); faults injected; linearizable \
          (Wing–Gong search over the model); serializable reads replayed; watch sessions/events checked \
          (ordered, unique, atomic, reliable, resumable, bookmarkable, prev_kv, is_create, filter) and \
          failures; acknowledged writes missing from a member's history afterwards; whether every member's \
          HashKV at the final revision agrees.\n";
    s += SCOPE;
    for run in runs {
        s += &format!(
            "\n## {}\n\n| scenario | operations | faults | linearizable | serializable reads | watch (sessions / events / progress) | watch failures | acknowledged writes lost | members' HashKV | check time |\n|---|---|---|---|---|---|---|---|---|---|\n",
            run.target
        );
        for o in &run.outcomes {
            match o {
                Ok(o) => {
                    s += &format!(
                        "| {} | {} ({}) | {} | {} | {} ({} wrong) | {} / {} / {} | {} | {} | {} | {:.1} s |\n",
                        o.scenario,
                        o.operations,
                        o.unknown,
                        faults_text(&o.faults),
                        o.linearizable,
                        o.serializable_checked,
                        o.serializable_failures.len(),
                        o.watch.sessions,
                        o.watch.events,
                        o.watch.progress_notifications,
                        o.watch.failures.len(),
                        o.lost,
                        if o.divergence.is_empty() { "agree" } else { "DIFFER" },
                        o.check_time.as_secs_f64()
                    )
                }
                Err((name, e)) => {
                    s += &format!("| {name} | — | — | could not run: {} | | | | | | |\n", e.replace('|', "/"))
                }
            }
        }
        for o in run.outcomes.iter().flatten() {
            s += &details(o);
        }
    }
    s
}

/// Faults injected, and how many attempts failed (those injected nothing).
fn faults_text(faults: &[String]) -> String {
    let failed = faults.iter().filter(|f| f.contains(" failed: ")).count();
    match failed {
        0 => faults.len().to_string(),
        n => format!("{} ({n} attempts failed)", faults.len() - n),
    }
}

/// The line after which the report file is written by hand (findings, defects and their fixes):
/// a regenerated report keeps everything from it on.
pub const HAND_WRITTEN: &str = "<!-- hand-written below; kept when metastore-robustness regenerates this file -->";

/// The hand-written tail of an existing report, from the [`HAND_WRITTEN`] marker on.
pub fn hand_written(old: &str) -> Option<&str> {
    old.find(HAND_WRITTEN).map(|i| &old[i..])
}

/// Faults and failures of one scenario, as text.
pub fn details(o: &Outcome) -> String {
    let mut s = String::new();
    if !o.faults.is_empty() {
        s += &format!("\n{} faults: {}\n", o.scenario, o.faults.join("; "));
    }
    if o.passed() {
        return s;
    }
    s += &format!("\n### {} failed\n\n```\n", o.scenario);
    if let Some(r) = &o.report {
        s += r;
    }
    for f in o.serializable_failures.iter().take(10) {
        s += &format!("serializable: {f}\n");
    }
    // Watch failures grouped by check: how many, and the first three of each.
    let mut by_check: std::collections::BTreeMap<&str, Vec<&String>> = Default::default();
    for f in &o.watch.failures {
        let check = f.split(": ").nth(1).unwrap_or("other");
        by_check.entry(check).or_default().push(f);
    }
    for (check, fs) in by_check {
        s += &format!("watch {check}: {} failures\n", fs.len());
        for f in fs.iter().take(3) {
            s += &format!("  {f}\n");
        }
    }
    for f in o.lost_detail.iter().take(20) {
        s += &format!("lost: {f}\n");
    }
    for f in &o.divergence {
        s += &format!("HashKV: {f}\n");
    }
    s += "```\n";
    s
}

/// What the suite covers and what it does not yet (kept in the report so nobody over-reads it).
const SCOPE: &str = "\nScenarios: no-fault; kill-follower, kill-leader (SIGKILL, restart after 1 s); kill-all \
(SIGKILL every member, restart); pause-leader (SIGSTOP 2 s, SIGCONT); move-leader (Maintenance MoveLeader); \
replace-member (member remove, wipe, member add on a new peer port, rejoin); snapshot-catch-up (a follower is \
stopped until the leader's revision moved up to 6,000 past it or 20 s passed, with --snapshot-count 100, then \
restarted); through a fault-injecting TCP proxy in front of every member's peer port (tools/robustness/src/network.rs), \
each for 3 s then healed: isolate-leader (the leader's peer links held both ways), split-2-1 (a follower cut off \
from the other two), one-way-loss (everything the leader sends held, what it receives delivered), peer-delay \
(200 ms on every peer link); partition-kill (a follower cut off, 1.5 s later the leader SIGKILLed so neither \
side has a quorum, 1 s later the partition healed, the survivors elect a leader, the killed member restarts). \
Each fault repeats through the run; a partition's line says whom each member \
followed at its end. Leases: one in four has a 2–4 s TTL and expires during the run (the model allows its keys \
to vanish any time after the TTL). `tests/robustness.rs` shows the checker rejects a member armed with the \
failpoint `linearizable-read-skip-readindex` (plus `peer-send-slow` so followers lag).\n\n\
Elsewhere: disk faults (`make test-disk-faults`, tests/disk_faults.rs) and malformed-request fuzzing \
(tests/fuzz_requests.rs).\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regenerating_keeps_the_hand_written_tail() {
        let old = format!("# Robustness\n\nold table\n\n{HAND_WRITTEN}\n\n## Findings\n\n1. a defect\n");
        let tail = hand_written(&old).expect("marker present");
        assert!(tail.starts_with(HAND_WRITTEN) && tail.ends_with("1. a defect\n"));
        assert_eq!(hand_written("# Robustness\n\nno marker\n"), None);
    }
}
