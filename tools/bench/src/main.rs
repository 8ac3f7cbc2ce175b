//! `metastore-bench`: a load generator for any etcd-v3-compatible gRPC endpoint, with the
//! workloads of etcd's own benchmark tool (so figures compare), watch and lease workloads, a
//! Kubernetes-like mix, and a measurement of the machine's floor.
//!
//! Layout: [`cli`] parses, [`conn`] connects, [`workloads`] build request generators that
//! [`runner`] drives as a closed loop under count/time/rate limits, [`recorder`] and
//! [`histogram`] collect, [`report`] prints text or JSON. Exit status: 0 when the run
//! completed (failed requests are part of the result, counted by gRPC code), 1 when it could
//! not be carried out (e.g. the keys to read could not be written), 2 on a usage error.
//!
//! The comparison against etcd (`make bench`) is `compare.py` beside this crate.

mod cli;
mod conn;
mod floor;
mod histogram;
mod keys;
mod recorder;
mod report;
mod runner;
mod workloads;

use clap::Parser;

use cli::{Cli, Command};
use report::Report;

async fn ready(g: &cli::Global, a: &cli::ReadyArgs) -> Result<Report, String> {
    let took = conn::wait_ready(&g.endpoints, g.user.as_ref(), a.wait).await?;
    let mut r = Report {
        workload: "ready".into(),
        latency_of: "none".into(),
        elapsed: took,
        latency: histogram::Histogram::new(),
        errors: Default::default(),
        kinds: Vec::new(),
        extra: Default::default(),
        config: workloads::global_json(g),
    };
    r.set("ready_ms", took.as_secs_f64() * 1e3);
    Ok(r)
}

async fn dispatch(cli: &Cli) -> Result<Report, String> {
    let g = &cli.global;
    match &cli.command {
        Command::Put(a) => workloads::put::run(g, a).await,
        Command::PutUnderScan(a) => workloads::scan::run(g, a).await,
        Command::PutUnderDefrag(a) => workloads::defrag::run(g, a).await,
        Command::Range(a) => workloads::range::run(g, a).await,
        Command::TxnPut(a) => workloads::txn::run_put(g, a).await,
        Command::TxnMixed(a) => workloads::txn::run_mixed(g, a).await,
        Command::Watch(a) => workloads::watch::run(g, a).await,
        Command::WatchLatency(a) => workloads::watch_latency::run(g, a).await,
        Command::LeaseKeepalive => workloads::lease::run(g).await,
        Command::Authenticate => workloads::authenticate::run(g).await,
        Command::K8s(a) => workloads::k8s::run(g, a).await,
        Command::Floor(a) => floor::run(a),
        Command::Ready(a) => ready(g, a).await,
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = cli.global.validate() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(dispatch(&cli));
    // Do not wait for tasks still blocked on a server that stopped answering.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(report) if cli.global.json => println!("{}", report.to_json()),
        Ok(report) => print!("{}", report.to_text()),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
