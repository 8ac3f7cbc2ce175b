//! The robustness suite in `make test`: a short smoke of two scenarios on a 3-member cluster
//! (the full run is `make test-robustness`), and the proof that the suite can fail — a member
//! armed to serve linearizable reads without ReadIndex, while peer messages are slowed so
//! followers lag, must be caught by the checker.

use std::path::PathBuf;
use std::time::Duration;

use metastore_robustness::nemesis::Fault;
use metastore_robustness::scenario::{self, Setup};

fn setup(fault: Fault, secs: u64, env: &[(&str, &str)]) -> Setup {
    Setup {
        bin: env!("CARGO_BIN_EXE_metastore").into(),
        launcher: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tools/member.sh")),
        fault,
        duration: Duration::from_secs(secs),
        clients: 6,
        kubernetes_clients: 1,
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        check_budget: Duration::from_secs(30),
        seed: 7,
        etcd_3_4: false,
    }
}

#[test]
fn smoke_no_fault_and_kill_leader_are_linearizable_with_reliable_watches() {
    for fault in [Fault::None, Fault::KillLeader] {
        let o = scenario::run(&setup(fault, 6, &[])).expect("scenario runs");
        let details = metastore_robustness::report::details(&o);
        assert!(o.operations > 500, "{}: only {} operations", fault.name(), o.operations);
        assert!(o.passed(), "{}: {details}", fault.name());
        assert!(o.watch.events > 0 && o.watch.progress_notifications > 0, "{}: {:?}", fault.name(), o.watch);
        if fault == Fault::KillLeader {
            assert_eq!(o.faults.len(), 1, "{details}");
        }
    }
}

#[test]
fn checker_catches_linearizable_reads_served_without_read_index() {
    let broken = [("METASTORE_FAILPOINTS", "linearizable-read-skip-readindex=1000000000,peer-send-slow=1000000000")];
    let o = scenario::run(&setup(Fault::None, 5, &broken)).expect("scenario runs");
    assert_eq!(o.linearizable, "no", "{}", metastore_robustness::report::details(&o));
    let report = o.report.expect("a failing window");
    assert!(report.contains("range"), "the failing window names the stale read:\n{report}");
}
