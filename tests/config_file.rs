//! `--config-file` as etcd reads it: etcd's own sample file (`tests/fixtures/etcd-sample`) boots
//! a member, and the file wins over every other flag and `ETCD_*` variable; the TLS blocks serve
//! TLS; a missing or malformed file ends the process with etcd's error and exit code. Each case
//! runs against etcd 3.4.23 too when it is installed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{free_port, ok, Member, BIN, ETCD_BIN};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/etcd-sample/etcd.conf.yml.sample");

/// The servers to run each case against: MetaStore, and etcd when installed.
fn servers() -> Vec<&'static str> {
    let mut bins = vec![BIN];
    if Path::new(ETCD_BIN).exists() {
        bins.push(ETCD_BIN);
    }
    bins
}

fn port(url: &str) -> &str {
    url.rsplit(':').next().expect("a port")
}

/// etcd's sample with only the ports, the data dir and the initial cluster adapted to `m`.
fn adapted_sample(m: &Member) -> String {
    let sample = std::fs::read_to_string(SAMPLE).expect("sample fixture");
    sample
        .replace("localhost:2379", &format!("127.0.0.1:{}", port(&m.client_url)))
        .replace("localhost:2380", &format!("127.0.0.1:{}", port(&m.peer_url)))
        .replace("\ndata-dir:\n", &format!("\ndata-dir: {}\n", m.data_dir.display()))
        .replace("\ninitial-cluster:\n", &format!("\ninitial-cluster: default={}\n", m.peer_url))
}

fn write_config(m: &Member, yaml: &str) -> PathBuf {
    let path = m.data_dir.parent().expect("data dir parent").join("etcd.conf.yml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

#[test]
fn etcds_sample_config_boots_a_member_and_wins_over_flags_and_environment() {
    for bin in servers() {
        let mut m = Member::prepare(bin);
        let path = write_config(&m, &adapted_sample(&m));
        // The launcher's `--name n1` and the environment's name are ignored: the file says `default`.
        m.args = vec!["--config-file".into(), path.display().to_string(), "--snapshot-count".into(), "7".into()];
        m.env = vec![("ETCD_NAME".into(), "from-env".into())];
        m.spawn();
        assert_eq!(ok(m.etcdctl(&["put", "k", "v"])), "OK\n", "{bin}");
        assert_eq!(ok(m.etcdctl(&["get", "k", "--print-value-only"])), "v\n", "{bin}");
        let members = ok(m.etcdctl(&["member", "list"]));
        assert!(members.contains(", started, default, "), "{bin}: {members}");
        let log = m.log();
        // The sample asks for the zap logger on stderr: JSON lines, the first saying the file won.
        let loaded = log
            .lines()
            .find(|l| l.contains("loaded server configuration, other configuration command line flags"))
            .unwrap_or_else(|| panic!("{bin}: no line about the file:\n{log}"));
        let line: serde_json::Value = serde_json::from_str(loaded).expect("a zap JSON line");
        assert_eq!(line["path"], path.display().to_string(), "{bin}");
        assert_eq!(line["level"], "info", "{bin}");
    }
}

#[test]
fn a_config_with_a_client_tls_block_serves_tls() {
    for bin in servers() {
        let mut m = Member::prepare(bin);
        let (tls_port, plain) = (free_port(), m.client_url.clone());
        let tls_url = format!("https://127.0.0.1:{tls_port}");
        m.client_url = format!("{tls_url},{plain}");
        let yaml = format!(
            "name: n1\ndata-dir: {dir}\nlisten-client-urls: {urls}\nadvertise-client-urls: {urls}\n\
             listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\ninitial-cluster: n1={peer}\n\
             client-transport-security:\n  auto-tls: true\n",
            dir = m.data_dir.display(),
            urls = m.client_url,
            peer = m.peer_url,
        );
        let path = write_config(&m, &yaml);
        m.args = vec!["--config-file".into(), path.display().to_string()];
        m.spawn();
        let tls = ["--insecure-transport=false", "--insecure-skip-tls-verify"];
        let put = common::etcdctl(&tls_url, &[tls[0], tls[1], "put", "a", "1"], None);
        assert_eq!(ok(put), "OK\n", "{bin}");
        let plain_on_tls_port =
            common::etcdctl(&format!("http://127.0.0.1:{tls_port}"), &["--dial-timeout=2s", "get", "a"], None);
        assert!(!plain_on_tls_port.status.success(), "{bin}: plain gRPC answered on the TLS port");
    }
}

/// Runs `bin` with `args` to its exit: (exit code, stderr).
fn run_to_exit(bin: &str, args: &[&str], dir: &Path) -> (Option<i32>, String) {
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run the server");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_missing_or_malformed_file_gives_etcds_error_and_exit_code() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bad_yaml = tmp.path().join("bad.yml");
    std::fs::write(&bad_yaml, "name: [x\n").expect("write");
    let bad_type = tmp.path().join("bad-type.yml");
    std::fs::write(&bad_type, "snapshot-count: abc\n").expect("write");
    let missing = tmp.path().join("missing.yml");
    let cases = [
        (missing.as_path(), format!("error verifying flags, open {}: no such file or directory", missing.display())),
        (bad_yaml.as_path(), "error verifying flags, error converting YAML to JSON: yaml: ".to_string()),
        (
            bad_type.as_path(),
            "error verifying flags, error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string into Go struct field configYAML.snapshot-count of type uint64. See 'etcd --help'."
                .to_string(),
        ),
    ];
    for bin in servers() {
        for (file, expected) in &cases {
            let (code, stderr) = run_to_exit(bin, &["--config-file", &file.display().to_string()], tmp.path());
            assert_eq!(code, Some(1), "{bin} {}: {stderr}", file.display());
            assert!(stderr.contains(expected.as_str()), "{bin} {}: want {expected:?} in\n{stderr}", file.display());
        }
        // ETCD_CONFIG_FILE names the file as the flag does.
        let out = Command::new(bin)
            .env("ETCD_CONFIG_FILE", &missing)
            .current_dir(tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("run the server");
        assert_eq!(out.status.code(), Some(1), "{bin}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("error verifying flags, open "), "{bin}");
    }
}
