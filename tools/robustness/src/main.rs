//! `metastore-robustness`: runs scenarios (a fault kind each) against one or more servers and
//! writes the markdown report. Exit status 1 if any scenario failed or could not run.
//!
//! ```text
//! metastore-robustness --target MetaStore=target/release/metastore --target etcd=/usr/bin/etcd \
//!     --duration 30 --out docs/robustness.md
//! metastore-robustness --check-history /tmp/robustness-etcd-kill-follower.history.json --etcd-3-4
//! ```
//!
//! A failed scenario leaves its failures and its recorded history (JSON) in the temporary
//! directory; `--check-history` checks such a history again (after a checker change, or to make
//! it a test fixture).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use metastore_robustness::history::History;
use metastore_robustness::nemesis::Fault;
use metastore_robustness::report::{self, Run};
use metastore_robustness::scenario::{self, Setup};

#[derive(Parser)]
struct Cli {
    /// LABEL=BINARY of a server taking etcd's flags; repeatable.
    #[arg(long, required_unless_present = "check_history")]
    target: Vec<String>,
    /// Instead of running scenarios, check a history a failed scenario saved (JSON).
    #[arg(long)]
    check_history: Option<PathBuf>,
    /// With --check-history: the history is etcd 3.4's (its early progress answers are allowed).
    #[arg(long)]
    etcd_3_4: bool,
    /// Comma-separated scenarios (default: all): no-fault, kill-follower, kill-leader, kill-all,
    /// pause-leader, move-leader, replace-member, snapshot-catch-up, isolate-leader, split-2-1,
    /// one-way-loss, peer-delay, partition-kill.
    #[arg(long)]
    scenarios: Option<String>,
    /// Seconds of traffic per scenario.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    #[arg(long, default_value_t = 8)]
    clients: usize,
    #[arg(long, default_value_t = 2)]
    kubernetes_clients: usize,
    /// Seconds the linearizability search may take per scenario.
    #[arg(long, default_value_t = 120)]
    check_budget: u64,
    /// NAME=VALUE for every member's environment (e.g. METASTORE_FAILPOINTS=...); repeatable.
    #[arg(long)]
    env: Vec<String>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The member launcher.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tools/member.sh"))]
    launcher: PathBuf,
    /// Write the markdown report here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// How the report names the command that made it (default: this command line).
    #[arg(long)]
    command: Option<String>,
}

fn main() {
    let cli = Cli::parse();
    if let Some(path) = &cli.check_history {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let history = History::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut o = scenario::check(&history, Duration::from_secs(cli.check_budget), cli.etcd_3_4);
        o.scenario = path.display().to_string();
        eprintln!(
            "{} ops ({} unknown), linearizable {}, watch failures {}",
            o.operations,
            o.unknown,
            o.linearizable,
            o.watch.failures.len()
        );
        eprint!("{}", report::details(&o));
        std::process::exit(if o.passed() { 0 } else { 1 });
    }
    let faults: Vec<Fault> = match &cli.scenarios {
        None => Fault::ALL.to_vec(),
        Some(list) => {
            list.split(',').map(|s| Fault::parse(s.trim()).unwrap_or_else(|| panic!("unknown scenario {s}"))).collect()
        }
    };
    let env: Vec<(String, String)> =
        cli.env.iter().filter_map(|e| e.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let mut runs = Vec::new();
    let mut ok = true;
    for t in &cli.target {
        let (label, bin) = t.split_once('=').expect("--target LABEL=BINARY");
        let mut run = Run { target: label.to_string(), outcomes: Vec::new() };
        for &fault in &faults {
            let setup = Setup {
                bin: bin.to_string(),
                launcher: cli.launcher.clone(),
                fault,
                duration: Duration::from_secs(cli.duration),
                clients: cli.clients,
                kubernetes_clients: cli.kubernetes_clients,
                env: env.clone(),
                check_budget: Duration::from_secs(cli.check_budget),
                seed: cli.seed,
                etcd_3_4: Setup::is_etcd(bin),
            };
            eprintln!("== {label}: {} ({} s)", fault.name(), cli.duration);
            match scenario::run(&setup) {
                Ok(mut o) => {
                    eprintln!(
                        "   {} ops ({} unknown), linearizable {}, watch failures {}, lost {}, {} faults",
                        o.operations,
                        o.unknown,
                        o.linearizable,
                        o.watch.failures.len(),
                        o.lost,
                        o.faults.len()
                    );
                    eprint!("{}", report::details(&o));
                    if let Some(history) = o.history.take() {
                        dump(label, &o, &history);
                    }
                    ok &= o.passed();
                    run.outcomes.push(Ok(o));
                }
                Err(e) => {
                    eprintln!("   could not run: {e}");
                    ok = false;
                    run.outcomes.push(Err((fault.name().to_string(), e)));
                }
            }
        }
        runs.push(run);
    }
    if let Some(out) = &cli.out {
        let command = cli.command.clone().unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" "));
        let kept = std::fs::read_to_string(out).ok().and_then(|old| report::hand_written(&old).map(str::to_string));
        let text = report::markdown(&command, &runs) + &kept.map(|k| format!("\n{k}")).unwrap_or_default();
        std::fs::write(out, text).expect("write the report");
    }
    std::process::exit(if ok { 0 } else { 1 });
}

/// Every failure of a failed scenario, to a file in the temporary directory (the report keeps
/// only the first few of each kind), and its history beside it (`--check-history` re-checks it).
fn dump(label: &str, o: &metastore_robustness::scenario::Outcome, history: &History) {
    let path = std::env::temp_dir().join(format!("robustness-{label}-{}.history.json", o.scenario));
    match std::fs::write(&path, history.to_json()) {
        Ok(()) => eprintln!("   its history: {}", path.display()),
        Err(e) => eprintln!("   cannot write {}: {e}", path.display()),
    }
    let path = std::env::temp_dir().join(format!("robustness-{label}-{}.txt", o.scenario));
    let mut text = o.report.clone().unwrap_or_default();
    for f in o.serializable_failures.iter().chain(&o.watch.failures).chain(&o.lost_detail).chain(&o.divergence) {
        text += f;
        text.push('\n');
    }
    match std::fs::write(&path, text) {
        Ok(()) => eprintln!("   every failure: {}", path.display()),
        Err(e) => eprintln!("   cannot write {}: {e}", path.display()),
    }
}
