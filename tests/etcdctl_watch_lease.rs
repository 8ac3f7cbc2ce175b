//! Stock etcdctl 3.4.23 against the real binary: `watch` (key, prefix, range, `--rev` history replay,
//! `--prev-kv`, compacted revisions, interactive `watch -i` with `progress`), `lease` (grant, put --lease,
//! timetolive --keys, list, keep-alive --once, revoke, expiry) and the concurrency recipes `lock` and
//! `elect` with two contenders. Expected strings are what etcd 3.4.23 prints for the same commands.
//!
//! Long-running etcdctl commands (watch, lock, elect) run as children whose stdout is read line by
//! line in a thread; every wait is bounded, readiness is observed (an output line, a key appearing),
//! never assumed after a fixed sleep, and children are killed by PID.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{fails, ok, Member};

/// Upper bound for anything that should happen "now" (an event, a lock hand-over, an expiry).
const WAIT: Duration = Duration::from_secs(15);

fn member() -> Member {
    Member::start(&["--storage-engine", "memory"])
}

fn ctl(m: &Member, args: &[&str]) -> String {
    ok(m.etcdctl(args))
}

/// A long-running etcdctl child: stdout arrives line by line through a channel, stderr is collected.
struct Proc {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every stdout line received so far (for failure messages).
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Proc {
    fn spawn(m: &Member, args: &[&str]) -> Proc {
        Self::spawn_with(m, args, false)
    }

    fn spawn_interactive(m: &Member, args: &[&str]) -> Proc {
        Self::spawn_with(m, args, true)
    }

    fn spawn_with(m: &Member, args: &[&str], piped_stdin: bool) -> Proc {
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", m.endpoint()))
            .arg("--command-timeout=10s")
            .args(args)
            .stdin(if piped_stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn etcdctl");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let out_reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        let err_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Proc {
            what: format!("etcdctl {}", args.join(" ")),
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn context(&self) -> String {
        format!("`{}`\nstdout so far: {:?}\nstderr: {}", self.what, self.seen, self.stderr())
    }

    /// The next stdout line, or `None` when `within` passed (or stdout closed) first.
    fn try_line(&mut self, within: Duration) -> Option<String> {
        match self.lines.recv_timeout(within) {
            Ok(l) => {
                self.seen.push(l.clone());
                Some(l)
            }
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    fn line(&mut self) -> String {
        match self.try_line(WAIT) {
            Some(l) => l,
            None => panic!("no further stdout line within {WAIT:?} from {}", self.context()),
        }
    }

    /// The next lines are exactly `want`.
    fn expect_lines(&mut self, want: &[&str]) {
        let start = self.seen.len();
        for _ in want {
            self.line();
        }
        assert_eq!(self.seen[start..], *want, "from {}", self.context());
    }

    /// Waits (bounded) until stderr is exactly `want`: stderr is read by its own thread, so it can lag
    /// behind stdout lines that were written after it.
    fn expect_stderr(&self, want: &str) {
        let deadline = Instant::now() + WAIT;
        while self.stderr() != want {
            assert!(Instant::now() < deadline, "stderr is not {want:?}: {}", self.context());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// No stdout line within `d` (a bounded check that something does NOT happen).
    fn assert_quiet(&mut self, d: Duration) {
        if let Some(l) = self.try_line(d) {
            panic!("unexpected line {l:?} from {}", self.context());
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("interactive child");
        writeln!(stdin, "{line}").expect("write to etcdctl stdin");
        stdin.flush().expect("flush etcdctl stdin");
    }

    fn close_stdin(&mut self) {
        self.stdin.take();
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits (bounded) for the process to exit by itself and for its output to be drained.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                for r in self.readers.drain(..) {
                    r.join().expect("reader thread");
                }
                while let Ok(l) = self.lines.try_recv() {
                    self.seen.push(l);
                }
                return status;
            }
            assert!(Instant::now() < deadline, "did not exit within {WAIT:?}: {}", self.context());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM by PID (etcdctl lock/elect then release the lock / resign), then wait for the exit.
    fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
        self.wait_exit()
    }

    /// SIGKILL by PID, as a crash: nothing is released, only the session lease can expire.
    fn kill(&mut self) {
        if self.running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The store revision, from a json response header.
fn revision(m: &Member) -> i64 {
    let out = ctl(m, &["get", "revision-probe", "-w", "json"]);
    let rest = &out[out.find("\"revision\":").expect("header revision") + "\"revision\":".len()..];
    rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap()].parse().unwrap()
}

/// The lease id (hex, as etcdctl prints it) from "lease <id> granted with TTL(<ttl>s)".
fn grant(m: &Member, ttl: &str) -> (String, String) {
    let out = ctl(m, &["lease", "grant", ttl]);
    let words: Vec<&str> = out.trim_end().split(' ').collect();
    assert_eq!(words.len(), 5, "grant output: {out:?}");
    assert_eq!((words[0], words[2], words[3]), ("lease", "granted", "with"), "grant output: {out:?}");
    let id = words[1].to_string();
    assert_eq!(id.len(), 16, "etcdctl prints lease ids as %016x: {out:?}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{out:?}");
    assert_eq!(out, format!("lease {id} granted with {}\n", words[4]));
    (id, words[4].to_string())
}

/// Keys under `prefix`, in key order.
fn keys(m: &Member, prefix: &str) -> Vec<String> {
    ctl(m, &["get", prefix, "--prefix", "--keys-only"]).lines().filter(|l| !l.is_empty()).map(String::from).collect()
}

/// Polls until `prefix` holds exactly `n` keys (bounded).
fn wait_keys(m: &Member, prefix: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let k = keys(m, prefix);
        if k.len() == n {
            return k;
        }
        assert!(Instant::now() < deadline, "{prefix}* never held {n} keys; now {k:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn put_history(m: &Member) {
    for args in [
        &["put", "a", "1"][..], // r2
        &["put", "a", "2"],     // r3
        &["put", "b", "1"],     // r4
        &["del", "a"],          // r5
        &["put", "p/x", "1"],   // r6
        &["put", "p/y", "2"],   // r7
        &["put", "a", "3"],     // r8
    ] {
        ctl(m, args);
    }
    assert_eq!(revision(m), 8);
}

// ------------------------------------------------------------------------------------------- watch

#[test]
fn watch_rev_replays_history_then_streams_live_events() {
    let m = member();
    put_history(&m);

    let mut w = Proc::spawn(&m, &["watch", "--rev=1", "a"]);
    w.expect_lines(&["PUT", "a", "1", "PUT", "a", "2", "DELETE", "a", "", "PUT", "a", "3"]);
    ctl(&m, &["put", "b", "not watched"]); // r9
    ctl(&m, &["put", "a", "4"]); // r10
    w.expect_lines(&["PUT", "a", "4"]);
    w.kill();

    let mut w = Proc::spawn(&m, &["watch", "--rev=1", "--prefix", "p/"]);
    w.expect_lines(&["PUT", "p/x", "1", "PUT", "p/y", "2"]);
    ctl(&m, &["del", "p/", "--prefix"]); // r11
    w.expect_lines(&["DELETE", "p/x", "", "DELETE", "p/y", ""]);
    w.kill();

    // [a, c): a and b, from r3
    let mut w = Proc::spawn(&m, &["watch", "--rev=3", "a", "c"]);
    w.expect_lines(&["PUT", "a", "2", "PUT", "b", "1", "DELETE", "a", "", "PUT", "a", "3"]);
    w.expect_lines(&["PUT", "b", "not watched", "PUT", "a", "4"]);
    w.kill();

    // a revision in the future: nothing until the store gets there
    let mut w = Proc::spawn(&m, &["watch", "--rev=13", "a"]);
    ctl(&m, &["put", "a", "5"]); // r12
    ctl(&m, &["put", "a", "6"]); // r13
    w.expect_lines(&["PUT", "a", "6"]);
}

#[test]
fn watch_prev_kv_prints_the_previous_pair_before_the_event() {
    let m = member();
    put_history(&m);
    // etcdctl prints type, [prev key, prev value,] key, value; the first PUT and the PUT after
    // the delete have no previous pair, a DELETE has an empty value
    let mut w = Proc::spawn(&m, &["watch", "--rev=1", "--prev-kv", "a"]);
    w.expect_lines(&[
        "PUT", "a", "1", //
        "PUT", "a", "1", "a", "2", //
        "DELETE", "a", "2", "a", "", //
        "PUT", "a", "3",
    ]);
    ctl(&m, &["put", "a", "4"]);
    w.expect_lines(&["PUT", "a", "3", "a", "4"]);
    w.kill();

    let mut w = Proc::spawn(&m, &["watch", "--rev=1", "--prefix", "--prev-kv", "p/", "-w", "json"]);
    let line = w.line();
    assert!(line.starts_with("{\"Header\":{\"cluster_id\":"), "{line}");
    assert!(line.contains(",\"revision\":9,\"raft_term\":"), "{line}");
    assert!(
        line.ends_with(
            "},\"Events\":[\
             {\"kv\":{\"key\":\"cC94\",\"create_revision\":6,\"mod_revision\":6,\"version\":1,\"value\":\"MQ==\"}},\
             {\"kv\":{\"key\":\"cC95\",\"create_revision\":7,\"mod_revision\":7,\"version\":1,\"value\":\"Mg==\"}}],\
             \"CompactRevision\":0,\"Canceled\":false,\"Created\":false}"
        ),
        "{line}"
    );
    ctl(&m, &["del", "p/x"]); // r10
    let line = w.line();
    assert!(line.contains(",\"revision\":10,\"raft_term\":"), "{line}");
    assert!(
        line.ends_with(
            "},\"Events\":[{\"type\":1,\"kv\":{\"key\":\"cC94\",\"mod_revision\":10},\
             \"prev_kv\":{\"key\":\"cC94\",\"create_revision\":6,\"mod_revision\":6,\"version\":1,\"value\":\"MQ==\"}}],\
             \"CompactRevision\":0,\"Canceled\":false,\"Created\":false}"
        ),
        "{line}"
    );
}

#[test]
fn watch_from_a_compacted_revision_is_canceled() {
    let m = member();
    put_history(&m);
    assert_eq!(ctl(&m, &["compaction", "5"]), "compacted revision 5\n");

    let mut w = Proc::spawn(&m, &["watch", "--rev=2", "a"]);
    let status = w.wait_exit();
    assert_eq!(status.code(), Some(5), "{}", w.context());
    assert!(w.seen.is_empty(), "{}", w.context());
    assert_eq!(
        w.stderr(),
        "watch was canceled (etcdserver: mvcc: required revision has been compacted)\n\
         Error: watch is canceled by the server\n"
    );

    // the compaction revision itself is still watchable, but compaction removed its tombstone
    // (the delete of `a` at r5), so the replay starts with the put at r8
    let mut w = Proc::spawn(&m, &["watch", "--rev=5", "a"]);
    w.expect_lines(&["PUT", "a", "3"]);
    // history kept by the compaction (the latest version at or before r5) replays normally
    let mut w = Proc::spawn(&m, &["watch", "--rev=5", "b"]);
    ctl(&m, &["put", "b", "2"]); // r9
    w.expect_lines(&["PUT", "b", "2"]);
}

#[test]
fn watch_interactive_with_progress_requests() {
    let m = member();
    put_history(&m);
    let mut w = Proc::spawn_interactive(&m, &["watch", "-i"]);

    // a progress request is answered to every watcher on the stream with the store revision;
    // it is sent after the create request on the same stream, so it also proves the watch exists
    w.send("watch a");
    w.send("progress");
    w.expect_lines(&["progress notify: 8"]);
    ctl(&m, &["put", "a", "live"]); // r9
    w.expect_lines(&["PUT", "a", "live"]);

    w.send("watch --prefix p/ --prev-kv");
    w.send("progress");
    w.expect_lines(&["progress notify: 9", "progress notify: 9"]);
    ctl(&m, &["put", "p/x", "new"]); // r10
    w.expect_lines(&["PUT", "p/x", "1", "p/x", "new"]);

    // history replay inside the session
    w.send("watch --rev=2 b");
    w.expect_lines(&["PUT", "b", "1"]);

    w.send("bogus");
    w.send("watch");
    w.send("progress");
    w.expect_lines(&["progress notify: 10", "progress notify: 10", "progress notify: 10"]);
    w.expect_stderr(
        "Invalid command bogus (only support watch)\nInvalid command watch (command type or key is not provided)\n",
    );

    // end of input ends the session
    w.close_stdin();
    let status = w.wait_exit();
    assert_eq!(status.code(), Some(3), "{}", w.context());
    assert!(w.stderr().ends_with("Error: Error reading watch request line: EOF\n"), "{}", w.context());
}

#[test]
fn watch_interactive_progress_as_json() {
    let m = member();
    put_history(&m);
    let mut w = Proc::spawn_interactive(&m, &["watch", "-i", "-w", "json"]);
    w.send("watch a");
    w.send("progress");
    // etcdctl prints the simple notice and then the response itself
    w.expect_lines(&["progress notify: 8"]);
    let line = w.line();
    assert!(line.starts_with("{\"Header\":{\"cluster_id\":"), "{line}");
    assert!(line.contains(",\"revision\":8,\"raft_term\":"), "{line}");
    assert!(line.ends_with("},\"Events\":[],\"CompactRevision\":0,\"Canceled\":false,\"Created\":false}"), "{line}");
}

#[test]
fn watch_usage_errors() {
    let m = member();
    let out = m.etcdctl(&["watch"]);
    assert_eq!(out.status.code(), Some(128));
    assert_eq!(fails(out), "Error: bad number of arguments\n");
}

// ------------------------------------------------------------------------------------------- lease

#[test]
fn lease_grant_attach_timetolive_list_keepalive_revoke() {
    let m = member();
    let (l1, ttl) = grant(&m, "100");
    assert_eq!(ttl, "TTL(100s)");
    assert_eq!(ctl(&m, &["put", "--lease", &l1, "k1", "v1"]), "OK\n");
    assert_eq!(ctl(&m, &["put", "k2", "v2", &format!("--lease={l1}")]), "OK\n");
    assert_eq!(ctl(&m, &["get", "k1"]), "k1\nv1\n");
    assert!(ctl(&m, &["get", "k1", "-w", "json"])
        .contains(&format!(",\"lease\":{}}}", i64::from_str_radix(&l1, 16).unwrap())));

    // "lease <id> granted with TTL(100s), remaining(<r>s)[, attached keys([k1 k2])]"
    let remaining = |out: &str| -> i64 {
        let at = out.find("remaining(").expect("remaining") + "remaining(".len();
        out[at..at + out[at..].find("s)").unwrap()].parse().unwrap()
    };
    let ttl = ctl(&m, &["lease", "timetolive", &l1]);
    assert!(ttl.starts_with(&format!("lease {l1} granted with TTL(100s), remaining(")), "{ttl}");
    assert!(ttl.ends_with("s)\n"), "{ttl}");
    assert!((95..=100).contains(&remaining(&ttl)), "{ttl}");
    let with_keys = ctl(&m, &["lease", "timetolive", "--keys", &l1]);
    assert!((95..=100).contains(&remaining(&with_keys)), "{with_keys}");
    assert!(
        with_keys.ends_with("s), attached keys([k1 k2])\n") || with_keys.ends_with("s), attached keys([k2 k1])\n"),
        "{with_keys}"
    );

    let (l2, _) = grant(&m, "300");
    let (l3, _) = grant(&m, "200");
    let empty = ctl(&m, &["lease", "timetolive", "--keys", &l2]);
    assert!(empty.ends_with("s), attached keys([])\n"), "{empty}");
    let list = ctl(&m, &["lease", "list"]);
    let mut lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.remove(0), "found 3 leases", "{list}");
    lines.sort();
    let mut want = vec![l1.as_str(), l2.as_str(), l3.as_str()];
    want.sort();
    assert_eq!(lines, want, "{list}");

    assert_eq!(ctl(&m, &["lease", "keep-alive", "--once", &l1]), format!("lease {l1} keepalived with TTL(100)\n"));
    let ka = ctl(&m, &["lease", "keep-alive", "--once", &l2, "-w", "json"]);
    assert!(ka.ends_with(&format!(",\"ID\":{},\"TTL\":300}}\n", i64::from_str_radix(&l2, 16).unwrap())), "{ka}");

    // moving a key to another lease detaches it from the first
    ctl(&m, &["put", "k2", "v2b", "--lease", &l3]);
    let with_keys = ctl(&m, &["lease", "timetolive", "--keys", &l1]);
    assert!(with_keys.ends_with("s), attached keys([k1])\n"), "{with_keys}");

    assert_eq!(ctl(&m, &["lease", "revoke", &l1]), format!("lease {l1} revoked\n"));
    assert_eq!(ctl(&m, &["get", "k1"]), "");
    assert_eq!(ctl(&m, &["get", "k2"]), "k2\nv2b\n");
    assert_eq!(ctl(&m, &["lease", "timetolive", "--keys", &l1]), format!("lease {l1} already expired\n"));
    let list = ctl(&m, &["lease", "list"]);
    assert!(list.starts_with("found 2 leases\n") && !list.contains(&l1), "{list}");

    // a revoked lease is gone for every call
    let err = fails(m.etcdctl(&["lease", "revoke", &l1]));
    assert!(err.ends_with("Error: failed to revoke lease (etcdserver: requested lease not found)\n"), "{err}");
    assert!(err.contains("code = NotFound desc = etcdserver: requested lease not found"), "{err}");
    let out = m.etcdctl(&["lease", "keep-alive", "--once", &l1]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(fails(out), "Error: etcdserver: requested lease not found\n");
    let err = fails(m.etcdctl(&["put", "k3", "v", "--lease", &l1]));
    assert!(err.ends_with("Error: etcdserver: requested lease not found\n"), "{err}");
    assert_eq!(ctl(&m, &["get", "k3"]), "");

    assert_eq!(ctl(&m, &["lease", "revoke", &l3]), format!("lease {l3} revoked\n"));
    assert_eq!(ctl(&m, &["get", "k", "--prefix"]), "");
}

#[test]
fn lease_errors_for_unknown_ids_and_bad_arguments() {
    let m = member();
    let err = fails(m.etcdctl(&["lease", "revoke", "1234"]));
    assert!(err.ends_with("Error: failed to revoke lease (etcdserver: requested lease not found)\n"), "{err}");
    assert_eq!(ctl(&m, &["lease", "timetolive", "1234"]), "lease 0000000000001234 already expired\n");
    let json = ctl(&m, &["lease", "timetolive", "1234", "-w", "json"]);
    assert!(json.ends_with(",\"id\":4660,\"ttl\":-1,\"granted-ttl\":0,\"keys\":null}\n"), "{json}");
    let err = fails(m.etcdctl(&["put", "x", "y", "--lease=1234"]));
    assert!(err.ends_with("Error: etcdserver: requested lease not found\n"), "{err}");
    let err = fails(m.etcdctl(&["lease", "grant", "9999999999"]));
    assert!(err.contains("code = OutOfRange desc = etcdserver: too large lease TTL"), "{err}");
    assert!(err.ends_with("Error: failed to grant lease (etcdserver: too large lease TTL)\n"), "{err}");
    // etcd raises a TTL below its minimum (1.5 election timeouts, rounded up) to 2 s
    let (_, ttl) = grant(&m, "1");
    assert_eq!(ttl, "TTL(2s)");
    let (_, ttl) = grant(&m, "0");
    assert_eq!(ttl, "TTL(2s)");
}

#[test]
fn lease_expiry_deletes_attached_keys() {
    let m = member();
    let rev = revision(&m);
    let granted = Instant::now();
    let (id, ttl) = grant(&m, "2");
    assert_eq!(ttl, "TTL(2s)");
    ctl(&m, &["put", "e/1", "v1", "--lease", &id]);
    ctl(&m, &["put", "e/2", "v2", "--lease", &id]);
    assert_eq!(keys(&m, "e/"), ["e/1", "e/2"]);
    let mut w = Proc::spawn(&m, &["watch", "--prefix", "e/", &format!("--rev={}", rev + 1)]);
    w.expect_lines(&["PUT", "e/1", "v1", "PUT", "e/2", "v2"]);
    // both keys go in one revision when the lease expires, without any client call
    w.expect_lines(&["DELETE", "e/1", "", "DELETE", "e/2", ""]);
    let expired_after = granted.elapsed();
    assert!(expired_after >= Duration::from_millis(1500), "expired after {expired_after:?}");
    assert_eq!(ctl(&m, &["get", "e/", "--prefix"]), "");
    assert_eq!(ctl(&m, &["lease", "timetolive", &id]), format!("lease {id} already expired\n"));
    assert_eq!(ctl(&m, &["lease", "list"]), "found 0 leases\n");
}

#[test]
fn lease_keep_alive_holds_a_lease_past_its_ttl() {
    let m = member();
    let (id, _) = grant(&m, "2");
    ctl(&m, &["put", "kept", "v", "--lease", &id]);
    // keep-alive (not --once) refreshes every TTL/3 until it is killed
    let mut ka = Proc::spawn(&m, &["lease", "keep-alive", &id]);
    let refreshed = format!("lease {id} keepalived with TTL(2)");
    for _ in 0..6 {
        assert_eq!(ka.line(), refreshed, "{}", ka.context());
    }
    // at least 5 refresh intervals (> 3 s) have passed: the lease would have expired without them
    assert_eq!(ctl(&m, &["get", "kept"]), "kept\nv\n");
    ka.kill();
    let deadline = Instant::now() + WAIT;
    while !ctl(&m, &["get", "kept"]).is_empty() {
        assert!(Instant::now() < deadline, "key not deleted after the keep-alives stopped");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ------------------------------------------------------------------------------------ lock / elect

#[test]
fn lock_second_contender_waits_until_the_holder_is_terminated() {
    let m = member();
    let mut first = Proc::spawn(&m, &["lock", "mylock"]);
    let held = first.line();
    // "<name>/<session lease id as %x>"
    let lease = held.strip_prefix("mylock/").unwrap_or_else(|| panic!("{}", first.context()));
    assert!(i64::from_str_radix(lease, 16).is_ok(), "{}", first.context());
    let listed = ctl(&m, &["lease", "list"]);
    assert_eq!(listed, format!("found 1 leases\n{:016x}\n", i64::from_str_radix(lease, 16).unwrap()));
    first.expect_lines(&[""]);

    // `lock <name> <command>`: runs the command once the lock is held, with the key and revision
    let mut second =
        Proc::spawn(&m, &["lock", "mylock", "--", "sh", "-c", "echo \"acquired $ETCD_LOCK_KEY $ETCD_LOCK_REV\""]);
    // the waiter's key appears behind the holder's: it is queued
    let queued = wait_keys(&m, "mylock/", 2);
    assert!(queued.contains(&held), "{queued:?}");
    let waiter_key = queued.iter().find(|k| **k != held).unwrap().clone();
    let waiter_rev: i64 = {
        let json = ctl(&m, &["get", &waiter_key, "-w", "json"]);
        let at = json.find("\"create_revision\":").unwrap() + "\"create_revision\":".len();
        json[at..at + json[at..].find(',').unwrap()].parse().unwrap()
    };
    second.assert_quiet(Duration::from_millis(1000));
    assert!(second.running(), "{}", second.context());

    // SIGTERM: etcdctl unlocks and closes its session, the waiter gets the lock at once
    let status = first.terminate();
    assert!(status.success(), "{status} {}", first.context());
    // ETCD_LOCK_REV is the store revision when the lock was acquired: the holder's key deletion
    second.expect_lines(&[&format!("acquired {waiter_key} {}", waiter_rev + 1)]);
    let status = second.wait_exit();
    assert!(status.success(), "{status} {}", second.context());
    assert_eq!(second.stderr(), "");
    wait_keys(&m, "mylock/", 0);
}

#[test]
fn lock_held_by_a_killed_client_is_released_when_its_session_expires() {
    let m = member();
    let mut first = Proc::spawn(&m, &["lock", "--ttl=2", "klock"]);
    let held = first.line();
    assert!(held.starts_with("klock/"), "{}", first.context());
    let mut second = Proc::spawn(&m, &["lock", "klock", "echo", "second holds klock"]);
    wait_keys(&m, "klock/", 2);
    second.assert_quiet(Duration::from_millis(500));

    // SIGKILL: no unlock, no revoke; the holder's key stays until its session lease expires
    first.kill();
    let killed = Instant::now();
    assert!(keys(&m, "klock/").contains(&held));
    second.expect_lines(&["second holds klock"]);
    assert!(killed.elapsed() < WAIT);
    assert!(second.wait_exit().success(), "{}", second.context());
    wait_keys(&m, "klock/", 0);
}

#[test]
fn lock_command_exit_status_is_reported() {
    let m = member();
    let out = m.etcdctl(&["lock", "l", "--", "sh", "-c", "exit 3"]);
    assert_eq!(fails(out), "Error: exit status 3\n");
    assert_eq!(keys(&m, "l/"), Vec::<String>::new());
    let out = m.etcdctl(&["lock", "l", "echo", "hello", "world"]);
    assert_eq!(ok(out), "hello world\n");
}

#[test]
fn elect_second_candidate_becomes_leader_after_the_first_resigns() {
    let m = member();
    let mut observer = Proc::spawn(&m, &["elect", "-l", "myelection"]);
    let mut alice = Proc::spawn(&m, &["elect", "myelection", "alice"]);
    let alice_key = alice.line();
    assert!(alice_key.starts_with("myelection/"), "{}", alice.context());
    alice.expect_lines(&["alice"]);
    observer.expect_lines(&[&alice_key, "alice"]);
    assert_eq!(ctl(&m, &["get", &alice_key, "--print-value-only"]), "alice\n");

    let mut bob = Proc::spawn(&m, &["elect", "myelection", "bob"]);
    let queued = wait_keys(&m, "myelection/", 2);
    let bob_key = queued.iter().find(|k| **k != alice_key).unwrap().clone();
    bob.assert_quiet(Duration::from_millis(1000));
    observer.assert_quiet(Duration::from_millis(100));

    // SIGTERM: alice resigns and closes her session
    assert!(alice.terminate().success(), "{}", alice.context());
    bob.expect_lines(&[&bob_key, "bob"]);
    observer.expect_lines(&[&bob_key, "bob"]);
    assert_eq!(keys(&m, "myelection/"), std::slice::from_ref(&bob_key));

    assert!(bob.terminate().success(), "{}", bob.context());
    wait_keys(&m, "myelection/", 0);
    observer.assert_quiet(Duration::from_millis(300));
    assert!(observer.terminate().success(), "{}", observer.context());
}

#[test]
fn elect_needs_a_proposal_or_listen() {
    let m = member();
    let out = m.etcdctl(&["elect", "e"]);
    assert_eq!(out.status.code(), Some(128));
    assert_eq!(fails(out), "Error: no proposal argument but -l not set\n");
}
