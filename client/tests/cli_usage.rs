//! `metastorectl` without a server: usage, and the exit codes scripts rely on. (Also makes
//! `cargo test` build the binary, which the root package's process tests run.)

use std::process::Command;

fn ctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_metastorectl")).args(args).output().expect("run metastorectl")
}

#[test]
fn help_lists_every_command() {
    let out = ctl(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["table", "index", "buffer", "lock", "elect", "--endpoints", "--write-out", "--cacert", "--user"] {
        assert!(text.contains(cmd), "{cmd} missing from:\n{text}");
    }
    let out = ctl(&["table", "config", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["get", "set", "history", "rollback"] {
        assert!(text.contains(cmd), "{cmd} missing from:\n{text}");
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(ctl(&["table", "create"]).status.code(), Some(2));
    assert_eq!(ctl(&["-w", "yaml", "table", "list"]).status.code(), Some(2));
    assert_eq!(ctl(&["nope"]).status.code(), Some(2));
}

#[test]
fn unreachable_server_exits_1_with_an_error_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    // The port is released again: nothing listens there.
    let out = ctl(&["--endpoints", &format!("127.0.0.1:{port}"), "--dial-timeout", "1", "table", "list"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("Error: "));
}
