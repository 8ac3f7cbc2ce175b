//! Stock etcdctl 3.4.23 against the real binary: every KV command and flag, plus `endpoint` and `member
//! list`. Expected outputs are what etcd 3.4.23 prints for the same commands on a fresh single member
//! started the same way (same flags, so the same member and cluster IDs); only the raft term, raft
//! index, db size and timings are read back from the server instead of being fixed here.

mod common;

use std::cell::Cell;
use std::process::Output;

use common::Member;
use sha1::{Digest, Sha1};

const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const FUTURE: &str = "etcdserver: mvcc: required revision is a future revision";
/// What `txn -i` prints while it reads its three sections.
const TXN_PROMPTS: &str = "compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\n";

/// A member with what etcdctl shows about it.
struct Ctl {
    m: Member,
    cluster_id: u64,
    member_id: u64,
    raft_term: Cell<u64>,
}

impl Ctl {
    fn start(extra: &[&str]) -> Ctl {
        let m = Member::start(extra);
        let (member_id, cluster_id) = etcd_ids(&m.peer_url);
        let ctl = Ctl { m, cluster_id, member_id, raft_term: Cell::new(0) };
        ctl.read_raft_term();
        ctl
    }

    fn memory() -> Ctl {
        Ctl::start(&["--storage-engine", "memory"])
    }

    /// The raft term is raft bookkeeping (etcd is at 2 after its first election), so it is read back.
    fn read_raft_term(&self) {
        let status: serde_json::Value = serde_json::from_str(&self.ok(&["endpoint", "status", "-w", "json"])).unwrap();
        let term = status[0]["Status"]["raftTerm"].as_u64().expect("raftTerm in endpoint status");
        assert!(term >= 1, "raft term {term}");
        self.raft_term.set(term);
    }

    /// SIGKILL and restart on the same data dir.
    fn crash_and_restart(&mut self) {
        self.m.kill();
        self.m.spawn();
        self.read_raft_term();
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.m.etcdctl_stdin(args, stdin)
    }

    /// stdout of a successful call that printed nothing on stderr.
    fn ok(&self, args: &[&str]) -> String {
        self.ok_stdin(args, None)
    }

    fn ok_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "etcdctl {args:?} wrote to stderr:\n{stderr}");
        common::ok(out)
    }

    /// Asserts that the server refused the call with gRPC `code` and `message` as etcdctl reports it: a
    /// client warning line with the status, then `Error: <message>`, exit status 1. Returns stdout.
    fn rpc_error(&self, args: &[&str], stdin: Option<&str>, code: &str, message: &str) -> String {
        let out = self.run(args, stdin);
        assert_eq!(out.status.code(), Some(1), "etcdctl {args:?}: {out:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 2, "etcdctl {args:?} stderr:\n{stderr}");
        let warning: serde_json::Value = serde_json::from_str(lines[0]).expect("client warning is a JSON line");
        assert_eq!(warning["level"], "warn");
        assert_eq!(warning["msg"], "retrying of unary invoker failed");
        assert_eq!(warning["error"], format!("rpc error: code = {code} desc = {message}"));
        assert_eq!(lines[1], format!("Error: {message}"));
        String::from_utf8(out.stdout).unwrap()
    }

    /// A call the server refuses, with nothing on stdout.
    fn fails(&self, args: &[&str], code: &str, message: &str) {
        assert_eq!(self.rpc_error(args, None, code, message), "", "etcdctl {args:?} stdout");
    }

    /// A call etcdctl itself refuses (bad usage): exit status 128 and `Error: <message>`.
    fn usage_error(&self, args: &[&str], message: &str) {
        let out = self.run(args, None);
        assert_eq!(out.status.code(), Some(128), "etcdctl {args:?}: {out:?}");
        assert_eq!(String::from_utf8(out.stderr).unwrap(), format!("Error: {message}\n"));
    }

    /// `txn -i <extra>` fed `script` on stdin; returns what it printed after its prompts.
    fn txn(&self, extra: &[&str], script: &str) -> String {
        let args: Vec<&str> = ["txn", "-i"].iter().chain(extra).copied().collect();
        let out = self.ok_stdin(&args, Some(script));
        out.strip_prefix(TXN_PROMPTS).unwrap_or_else(|| panic!("txn prompts missing from:\n{out}")).to_string()
    }

    /// The response header as `-w json` prints it.
    fn header(&self, revision: i64) -> String {
        let (c, m, t) = (self.cluster_id, self.member_id, self.raft_term.get());
        format!(r#"{{"cluster_id":{c},"member_id":{m},"revision":{revision},"raft_term":{t}}}"#)
    }

    /// The response header as `-w fields` prints it.
    fn fields_header(&self, revision: i64) -> String {
        let (c, m, t) = (self.cluster_id, self.member_id, self.raft_term.get());
        format!("\"ClusterID\" : {c}\n\"MemberID\" : {m}\n\"Revision\" : {revision}\n\"RaftTerm\" : {t}\n")
    }

    fn put_all(&self, pairs: &[(&str, &str)]) {
        for (k, v) in pairs {
            assert_eq!(self.ok(&["put", k, v]), "OK\n");
        }
    }
}

/// etcd's member ID (first 8 bytes of sha1(peer URLs + cluster token)) and cluster ID (first 8 bytes of
/// sha1 of the member IDs) for a single member with the default token.
fn etcd_ids(peer_url: &str) -> (u64, u64) {
    let first8 = |digest: &[u8]| u64::from_be_bytes(digest[..8].try_into().unwrap());
    let member = first8(&Sha1::digest(format!("{peer_url}etcd-cluster").as_bytes()));
    (member, first8(&Sha1::digest(member.to_be_bytes())))
}

fn b64(data: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.as_bytes().chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | ((*b as u32) << (16 - 8 * i)));
        for i in 0..4 {
            let sextet = (n >> (18 - 6 * i)) & 63;
            out.push(if i <= chunk.len() { ALPHABET[sextet as usize] as char } else { '=' });
        }
    }
    out
}

/// A key-value as `-w json` prints it (key and value base64).
fn kv(key: &str, create: i64, modified: i64, version: i64, value: &str) -> String {
    let (k, v) = (b64(key), b64(value));
    format!(r#"{{"key":"{k}","create_revision":{create},"mod_revision":{modified},"version":{version},"value":"{v}"}}"#)
}

/// A key-value of a `--keys-only` response.
fn key_only(key: &str, create: i64, modified: i64, version: i64) -> String {
    let k = b64(key);
    format!(r#"{{"key":"{k}","create_revision":{create},"mod_revision":{modified},"version":{version}}}"#)
}

/// A key-value as `-w fields` prints it.
fn kv_fields(key: &str, create: i64, modified: i64, version: i64, value: &str) -> String {
    format!(
        "\"Key\" : \"{key}\"\n\"CreateRevision\" : {create}\n\"ModRevision\" : {modified}\n\
         \"Version\" : {version}\n\"Value\" : \"{value}\"\n\"Lease\" : 0\n"
    )
}

/// A table as etcdctl draws it: headers centred, cells right-aligned, one space of padding.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).chain([headers[i].len()]).max().unwrap();
    let widths: Vec<usize> = (0..headers.len()).map(width).collect();
    let rule = format!("+{}+\n", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+"));
    let centred = |(h, w): (&&str, &usize)| {
        let left = (w - h.len()) / 2;
        format!("{}{h}{}", " ".repeat(left), " ".repeat(w - h.len() - left))
    };
    let header = headers.iter().zip(&widths).map(centred).collect::<Vec<_>>().join(" | ");
    let mut out = format!("{rule}| {header} |\n{rule}");
    for row in rows {
        let cells = row.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect::<Vec<_>>().join(" | ");
        out += &format!("| {cells} |\n");
    }
    out + &rule
}

/// go-humanize's `Bytes`, which etcdctl uses for the DB SIZE column.
fn humanize_bytes(n: u64) -> String {
    if n < 10 {
        return format!("{n} B");
    }
    let e = (n as f64).log(1000.0).floor();
    let val = ((n as f64) / 1000f64.powf(e) * 10.0 + 0.5).floor() / 10.0;
    let suffix = ["B", "kB", "MB", "GB", "TB", "PB", "EB"][e as usize];
    if val < 10.0 {
        format!("{val:.1} {suffix}")
    } else {
        format!("{val:.0} {suffix}")
    }
}

#[test]
fn helpers_agree_with_etcd() {
    // Values etcd 3.4.23 printed for `--initial-advertise-peer-urls http://127.0.0.1:23801`.
    assert_eq!(etcd_ids("http://127.0.0.1:23801"), (13668033151171901709, 15118495548433857066));
    assert_eq!(
        kv("a/1", 3, 6, 2, "zz"),
        r#"{"key":"YS8x","create_revision":3,"mod_revision":6,"version":2,"value":"eno="}"#
    );
    assert_eq!(b64("ünïcode ✓"), "w7xuw69jb2RlIOKckw==");
    assert_eq!(b64("line1\nline2"), "bGluZTEKbGluZTI=");
    assert_eq!([humanize_bytes(505), humanize_bytes(24576), humanize_bytes(2_100_000)], ["505 B", "25 kB", "2.1 MB"]);
}

#[test]
fn put_plain_prev_kv_and_ignore_value() {
    let e = Ctl::memory();
    assert_eq!(e.ok(&["put", "foo", "bar"]), "OK\n"); // r2
    assert_eq!(e.ok(&["put", "foo", "baz", "--prev-kv"]), "OK\nfoo\nbar\n"); // r3
    assert_eq!(e.ok(&["put", "foo", "--ignore-value"]), "OK\n"); // r4: new revision, same value
    let got = e.ok(&["get", "foo", "-w", "json"]);
    assert_eq!(got, format!(r#"{{"header":{},"kvs":[{}],"count":1}}"#, e.header(4), kv("foo", 2, 4, 3, "baz")) + "\n");
    let prev = e.ok(&["put", "foo", "qux", "--prev-kv", "-w", "json"]); // r5
    assert_eq!(prev, format!(r#"{{"header":{},"prev_kv":{}}}"#, e.header(5), kv("foo", 2, 4, 3, "baz")) + "\n");
    let fields = e.ok(&["put", "foo", "quux", "--prev-kv", "-w", "fields"]); // r6
    let prev_fields = "\"PrevKey\" : \"foo\"\n\"PrevCreateRevision\" : 2\n\"PrevModRevision\" : 5\n\
                       \"PrevVersion\" : 4\n\"PrevValue\" : \"qux\"\n\"PrevLease\" : 0\n";
    assert_eq!(fields, e.fields_header(6) + prev_fields);
    let ignored = e.ok(&["put", "foo", "--ignore-value", "--prev-kv", "-w", "json"]); // r7
    assert_eq!(ignored, format!(r#"{{"header":{},"prev_kv":{}}}"#, e.header(7), kv("foo", 2, 6, 5, "quux")) + "\n");
    assert_eq!(e.ok(&["put", "foo", "v", "--ignore-lease"]), "OK\n"); // r8
    assert_eq!(e.ok(&["put", "new", "v", "--prev-kv"]), "OK\n", "no previous key, nothing printed"); // r9
    assert_eq!(
        e.ok(&["put", "new2", "v", "--prev-kv", "-w", "json"]),
        format!(r#"{{"header":{}}}"#, e.header(10)) + "\n"
    );
    assert_eq!(e.ok(&["put", "new3", "v", "-w", "simple"]), "OK\n"); // r11
    assert_eq!(e.ok_stdin(&["put", "sk"], Some("line1\nline2")), "OK\n", "value from stdin"); // r12
    assert_eq!(e.ok(&["put", "u", "ünïcode ✓", "-w", "json"]), format!(r#"{{"header":{}}}"#, e.header(13)) + "\n");
    assert_eq!(e.ok(&["put", "--", "-dash", "-v"]), "OK\n"); // r14
    assert_eq!(e.ok(&["get", "--", "-dash"]), "-dash\n-v\n");
    assert_eq!(e.ok(&["get", "sk", "--print-value-only"]), "line1\nline2\n");
    // The base64 etcd prints for these keys and values, spelled out.
    let got = e.ok(&["get", "sk", "-w", "json"]);
    let sk = r#"{"key":"c2s=","create_revision":12,"mod_revision":12,"version":1,"value":"bGluZTEKbGluZTI="}"#;
    assert_eq!(got, format!(r#"{{"header":{},"kvs":[{sk}],"count":1}}"#, e.header(14)) + "\n");
    let got = e.ok(&["get", "u", "-w", "json"]);
    let u = r#"{"key":"dQ==","create_revision":13,"mod_revision":13,"version":1,"value":"w7xuw69jb2RlIOKckw=="}"#;
    assert_eq!(got, format!(r#"{{"header":{},"kvs":[{u}],"count":1}}"#, e.header(14)) + "\n");
}

#[test]
fn put_errors() {
    let e = Ctl::memory();
    e.put_all(&[("k", "v")]); // r2
    e.fails(&["put", "missing", "--ignore-value"], "InvalidArgument", "etcdserver: key not found");
    e.fails(&["put", "missing", "v", "--ignore-lease"], "InvalidArgument", "etcdserver: key not found");
    e.fails(&["put", "", "x"], "InvalidArgument", "etcdserver: key is not provided");
    e.fails(&["put", "z", "v", "--lease=1234"], "NotFound", "etcdserver: requested lease not found");
    e.usage_error(&["put", "foo"], "put command needs 1 argument and input from stdin or 2 arguments");
    e.usage_error(
        &["put", "foo", "x", "--ignore-value"],
        "put command needs only 1 argument when 'ignore-value' is set",
    );
    let all = e.ok(&["get", "", "--from-key", "-w", "json"]);
    assert_eq!(all, format!(r#"{{"header":{},"kvs":[{}],"count":1}}"#, e.header(2), kv("k", 2, 2, 1, "v")) + "\n");
}

/// a/3=x r2, a/1=z r3, a/2=y r4, b=w r5, a/1=zz r6.
fn ab_fixture(e: &Ctl) {
    e.put_all(&[("a/3", "x"), ("a/1", "z"), ("a/2", "y"), ("b", "w"), ("a/1", "zz")]);
}

#[test]
fn get_prefix_from_key_range_rev_and_limit() {
    let e = Ctl::memory();
    ab_fixture(&e);
    assert_eq!(e.ok(&["get", "a/", "--prefix"]), "a/1\nzz\na/2\ny\na/3\nx\n");
    assert_eq!(e.ok(&["get", "a/", "--prefix", "--limit", "2"]), "a/1\nzz\na/2\ny\n");
    let limited = e.ok(&["get", "a/", "--prefix", "--limit", "2", "-w", "json"]);
    let kvs = [kv("a/1", 3, 6, 2, "zz"), kv("a/2", 4, 4, 1, "y")].join(",");
    assert_eq!(limited, format!(r#"{{"header":{},"kvs":[{kvs}],"more":true,"count":3}}"#, e.header(6)) + "\n");
    assert_eq!(e.ok(&["get", "a/2", "--from-key"]), "a/2\ny\na/3\nx\nb\nw\n");
    assert_eq!(e.ok(&["get", "", "--from-key", "--keys-only"]), "a/1\n\na/2\n\na/3\n\nb\n\n");
    assert_eq!(e.ok(&["get", "a/2", "b"]), "a/2\ny\na/3\nx\n", "[key, range_end)");
    let range = e.ok(&["get", "a/1", "a/3", "-w", "json"]);
    assert_eq!(range, format!(r#"{{"header":{},"kvs":[{kvs}],"count":2}}"#, e.header(6)) + "\n");
    assert_eq!(e.ok(&["get", "a/1", "--rev", "3"]), "a/1\nz\n");
    assert_eq!(e.ok(&["get", "a/1", "--rev", "2"]), "", "a/1 did not exist yet");
    let old = e.ok(&["get", "a/", "--prefix", "--rev", "4", "-w", "json"]);
    let kvs = [kv("a/1", 3, 3, 1, "z"), kv("a/2", 4, 4, 1, "y"), kv("a/3", 2, 2, 1, "x")].join(",");
    assert_eq!(old, format!(r#"{{"header":{},"kvs":[{kvs}],"count":3}}"#, e.header(6)) + "\n");
    let old = e.ok(&[
        "get",
        "",
        "--from-key",
        "--rev",
        "3",
        "--sort-by=KEY",
        "--order=DESCEND",
        "--limit",
        "1",
        "-w",
        "json",
    ]);
    let kvs = kv("a/3", 2, 2, 1, "x");
    assert_eq!(old, format!(r#"{{"header":{},"kvs":[{kvs}],"more":true,"count":2}}"#, e.header(6)) + "\n");
    e.fails(&["get", "a/1", "--rev", "100"], "OutOfRange", FUTURE);
    assert_eq!(e.ok(&["get", "nope"]), "");
    assert_eq!(e.ok(&["get", "nope", "-w", "json"]), format!(r#"{{"header":{}}}"#, e.header(6)) + "\n");
    e.usage_error(
        &["get", "a", "--prefix", "--from-key"],
        "`--prefix` and `--from-key` cannot be set at the same time, choose one",
    );
}

#[test]
fn get_sort_by_and_order() {
    let e = Ctl::memory();
    // Orders by CREATE, MODIFY, VERSION, VALUE and KEY all differ. Created: s/c r2, s/a r3, s/d r4, s/b r5.
    // Final: s/a=epsilon v4 mod r11, s/b=mu v2 mod r10, s/c=iota v3 mod r9, s/d=alpha v1 mod r4.
    e.put_all(&[("s/c", "zeta"), ("s/a", "beta"), ("s/d", "alpha"), ("s/b", "gamma"), ("s/a", "omega")]);
    e.put_all(&[("s/c", "delta"), ("s/a", "kappa"), ("s/c", "iota"), ("s/b", "mu"), ("s/a", "epsilon")]);
    let sorted = |target: &str, order: &str| {
        let (sort_by, order) = (format!("--sort-by={target}"), format!("--order={order}"));
        e.ok(&["get", "s/", "--prefix", &sort_by, &order, "--keys-only"]).replace("\n\n", " ").trim_end().to_string()
    };
    assert_eq!(sorted("CREATE", "ASCEND"), "s/c s/a s/d s/b");
    assert_eq!(sorted("CREATE", "DESCEND"), "s/b s/d s/a s/c");
    assert_eq!(sorted("MODIFY", "ASCEND"), "s/d s/c s/b s/a");
    assert_eq!(sorted("MODIFY", "DESCEND"), "s/a s/b s/c s/d");
    assert_eq!(sorted("VERSION", "ASCEND"), "s/d s/b s/c s/a");
    assert_eq!(sorted("VERSION", "DESCEND"), "s/a s/c s/b s/d");
    assert_eq!(sorted("KEY", "ASCEND"), "s/a s/b s/c s/d");
    assert_eq!(sorted("KEY", "DESCEND"), "s/d s/c s/b s/a");
    assert_eq!(sorted("VALUE", "ASCEND"), "s/d s/a s/c s/b");
    assert_eq!(sorted("VALUE", "DESCEND"), "s/b s/c s/a s/d");
    // --order alone sorts by key; --sort-by alone sorts ascending.
    assert_eq!(e.ok(&["get", "s/", "--prefix", "--order=DESCEND", "--keys-only"]), "s/d\n\ns/c\n\ns/b\n\ns/a\n\n");
    assert_eq!(e.ok(&["get", "s/", "--prefix", "--sort-by=VALUE", "--keys-only"]), "s/d\n\ns/a\n\ns/c\n\ns/b\n\n");
    let values = e.ok(&["get", "s/", "--prefix", "--sort-by=VALUE", "--order=DESCEND", "--print-value-only"]);
    assert_eq!(values, "mu\niota\nepsilon\nalpha\n");
    // The limit applies after sorting the whole range.
    let top = e.ok(&["get", "s/", "--prefix", "--sort-by=MODIFY", "--order=DESCEND", "--limit", "2", "-w", "json"]);
    let kvs = [kv("s/a", 3, 11, 4, "epsilon"), kv("s/b", 5, 10, 2, "mu")].join(",");
    assert_eq!(top, format!(r#"{{"header":{},"kvs":[{kvs}],"more":true,"count":4}}"#, e.header(11)) + "\n");
}

#[test]
fn get_keys_only_print_value_only_consistency_and_formats() {
    let e = Ctl::memory();
    ab_fixture(&e);
    assert_eq!(e.ok(&["get", "a/", "--prefix", "--keys-only"]), "a/1\n\na/2\n\na/3\n\n");
    assert_eq!(e.ok(&["get", "a/", "--prefix", "--print-value-only"]), "zz\ny\nx\n");
    assert_eq!(e.ok(&["get", "a/", "--prefix", "--print-value-only", "--keys-only"]), "\n\n\n");
    let keys = e.ok(&["get", "a/", "--prefix", "--keys-only", "-w", "json"]);
    let kvs = [key_only("a/1", 3, 6, 2), key_only("a/2", 4, 4, 1), key_only("a/3", 2, 2, 1)].join(",");
    assert_eq!(keys, format!(r#"{{"header":{},"kvs":[{kvs}],"count":3}}"#, e.header(6)) + "\n");
    assert_eq!(e.ok(&["get", "a/1", "--consistency=s"]), "a/1\nzz\n");
    assert_eq!(e.ok(&["get", "a/1", "--consistency=l"]), "a/1\nzz\n");
    let serializable = e.ok(&["get", "a/", "--prefix", "--consistency=s", "-w", "json"]);
    assert_eq!(serializable, e.ok(&["get", "a/", "--prefix", "-w", "json"]));
    let fields = e.ok(&["get", "a/1", "-w", "fields"]);
    assert_eq!(fields, e.fields_header(6) + &kv_fields("a/1", 3, 6, 2, "zz") + "\"More\" : false\n\"Count\" : 1\n");
    let fields = e.ok(&["get", "a/", "--prefix", "--limit", "1", "-w", "fields"]);
    assert_eq!(fields, e.fields_header(6) + &kv_fields("a/1", 3, 6, 2, "zz") + "\"More\" : true\n\"Count\" : 3\n");
    let fields = e.ok(&["get", "a/", "--prefix", "-w", "fields"]);
    let kvs = kv_fields("a/1", 3, 6, 2, "zz") + &kv_fields("a/2", 4, 4, 1, "y") + &kv_fields("a/3", 2, 2, 1, "x");
    assert_eq!(fields, e.fields_header(6) + &kvs + "\"More\" : false\n\"Count\" : 3\n");
}

#[test]
fn del_prev_kv_prefix_and_from_key() {
    let e = Ctl::memory();
    e.put_all(&[("d/1", "v1"), ("d/2", "v2"), ("d/3", "v3"), ("e", "x"), ("f", "y"), ("g", "z")]); // r2..=r7
    assert_eq!(e.ok(&["del", "nope"]), "0\n");
    assert_eq!(e.ok(&["del", "d/1"]), "1\n"); // r8
    assert_eq!(e.ok(&["del", "d/1", "--prev-kv"]), "0\n");
    assert_eq!(e.ok(&["del", "d/2", "--prev-kv"]), "1\nd/2\nv2\n"); // r9
    assert_eq!(e.ok(&["del", "d/", "--prefix"]), "1\n"); // r10
    let old = e.ok(&["get", "d/3", "--rev", "7", "-w", "json"]);
    assert_eq!(old, format!(r#"{{"header":{},"kvs":[{}],"count":1}}"#, e.header(10), kv("d/3", 4, 4, 1, "v3")) + "\n");
    assert_eq!(e.ok(&["del", "f", "--from-key", "--prev-kv"]), "2\nf\ny\ng\nz\n"); // r11
    let del = e.ok(&["del", "e", "--prev-kv", "-w", "json"]); // r12
    let expected = format!(r#"{{"header":{},"deleted":1,"prev_kvs":[{}]}}"#, e.header(12), kv("e", 5, 5, 1, "x"));
    assert_eq!(del, expected + "\n");
    assert_eq!(e.ok(&["get", "", "--prefix", "-w", "json"]), format!(r#"{{"header":{}}}"#, e.header(12)) + "\n");
    e.put_all(&[("h", "1"), ("i", "2"), ("j", "3")]); // r13..=r15
    let del = e.ok(&["del", "h", "j", "--prev-kv", "-w", "json"]); // r16: one revision for the range
    let prev = [kv("h", 13, 13, 1, "1"), kv("i", 14, 14, 1, "2")].join(",");
    assert_eq!(del, format!(r#"{{"header":{},"deleted":2,"prev_kvs":[{prev}]}}"#, e.header(16)) + "\n");
    assert_eq!(e.ok(&["del", "i", "-w", "fields"]), e.fields_header(16) + "\"Deleted\" : 0\n");
    e.fails(&["del", ""], "InvalidArgument", "etcdserver: key is not provided");
    assert_eq!(e.ok(&["del", "", "--prefix"]), "1\n"); // r17: everything
    assert_eq!(e.ok(&["get", "", "--from-key", "-w", "json"]), format!(r#"{{"header":{}}}"#, e.header(17)) + "\n");
    e.usage_error(
        &["del", "a", "--prefix", "--from-key"],
        "`--prefix` and `--from-key` cannot be set at the same time, choose one",
    );
}

#[test]
fn txn_interactive_success_and_failure() {
    let e = Ctl::memory();
    e.put_all(&[("k1", "v1"), ("k2", "v2")]); // r2, r3
                                              // Success branch; the whole txn is revision 4.
    let script = "value(\"k1\") = \"v1\"\nversion(\"k2\") = \"1\"\n\n\
                  put k1 new --prev-kv\nget k2\ndel k2 --prev-kv\n\nput k1 fail\n\n";
    assert_eq!(e.txn(&[], script), "SUCCESS\n\nOK\nk1\nv1\n\nk2\nv2\n\n1\nk2\nv2\n");
    // Failure branch, as JSON (no "succeeded"); revision 5. Ops after a write see its revision.
    let script = "mod(\"k1\") > \"100\"\n\nput never x\n\nput k3 v3\nget k1 --rev 2\ndel nope\n\n";
    let responses = [
        r#"{"Response":{"ResponsePut":{"header":{"revision":5}}}}"#.to_string(),
        format!(
            r#"{{"Response":{{"ResponseRange":{{"header":{{"revision":5}},"kvs":[{}],"count":1}}}}}}"#,
            kv("k1", 2, 2, 1, "v1")
        ),
        r#"{"Response":{"ResponseDeleteRange":{"header":{"revision":5}}}}"#.to_string(),
    ];
    let expected = format!(r#"{{"header":{},"responses":[{}]}}"#, e.header(5), responses.join(","));
    assert_eq!(e.txn(&["-w", "json"], script), expected + "\n");
    // Several compares on create/mod revision and value; read-only success branch as fields.
    let script =
        "create(\"k1\") = \"2\"\nmod(\"k3\") < \"6\"\nvalue(\"k1\") != \"v1\"\n\nget k --prefix\n\nput never x\n\n";
    let inner = "\"ClusterID\" : 0\n\"MemberID\" : 0\n\"Revision\" : 5\n\"RaftTerm\" : 0\n";
    let kvs = kv_fields("k1", 2, 4, 2, "new") + &kv_fields("k3", 5, 5, 1, "v3");
    let expected = e.fields_header(5) + "\"Succeeded\" : true\n" + inner + &kvs + "\"More\" : false\n\"Count\" : 2\n";
    assert_eq!(e.txn(&["-w", "fields"], script), expected);
    // A compare on a missing key fails; the failure branch deletes a range (revision 6).
    let script = "value(\"nokey\") = \"v1\"\n\nput a 1\n\ndel k --prefix --prev-kv\n\n";
    assert_eq!(e.txn(&[], script), "FAILURE\n\n2\nk1\nnew\nk3\nv3\n");
    // No compares: the success branch; an empty branch prints only the outcome.
    assert_eq!(e.txn(&[], "\nput t/1 one\n\n\n"), "SUCCESS\n\nOK\n"); // r7
    assert_eq!(e.txn(&[], "version(\"t/1\") = \"5\"\n\nput t/1 two\n\n\n"), "FAILURE\n");
    let dup = "\nput a 1\nput a 2\n\n\n";
    let out =
        e.rpc_error(&["txn", "-i"], Some(dup), "InvalidArgument", "etcdserver: duplicate key given in txn request");
    assert_eq!(out, TXN_PROMPTS);
    let all = e.ok(&["get", "", "--from-key", "-w", "json"]);
    assert_eq!(all, format!(r#"{{"header":{},"kvs":[{}],"count":1}}"#, e.header(7), kv("t/1", 7, 7, 1, "one")) + "\n");
}

/// Compaction through etcdctl; `c` is put 1..=5 at r2..=r6. Returns with the store at r7, compacted at 7.
fn compaction_scenario(e: &Ctl) {
    e.put_all(&[("c", "1"), ("c", "2"), ("c", "3"), ("c", "4"), ("c", "5")]);
    assert_eq!(e.ok(&["compaction", "4"]), "compacted revision 4\n");
    e.fails(&["get", "c", "--rev", "3"], "OutOfRange", COMPACTED);
    assert_eq!(e.ok(&["get", "c", "--rev", "4"]), "c\n3\n");
    let at5 = e.ok(&["get", "c", "--rev", "5", "-w", "json"]);
    assert_eq!(at5, format!(r#"{{"header":{},"kvs":[{}],"count":1}}"#, e.header(6), kv("c", 2, 5, 4, "4")) + "\n");
    e.fails(&["compaction", "4"], "OutOfRange", COMPACTED);
    e.fails(&["compaction", "3"], "OutOfRange", COMPACTED);
    e.fails(&["compaction", "0"], "OutOfRange", COMPACTED);
    e.fails(&["compaction", "100"], "OutOfRange", FUTURE);
    let out = e.rpc_error(&["txn", "-i"], Some("\nget c --rev 2\n\n\n"), "OutOfRange", COMPACTED);
    assert_eq!(out, TXN_PROMPTS, "a txn reading below the compaction fails as a whole");
    // A read before a write in the same txn sees the revision before the txn.
    let txn = e.txn(&["-w", "json"], "\nget c --rev 4\nput c 6\n\n\n"); // r7
    let range = format!(
        r#"{{"Response":{{"ResponseRange":{{"header":{{"revision":6}},"kvs":[{}],"count":1}}}}}}"#,
        kv("c", 2, 4, 3, "3")
    );
    let put = r#"{"Response":{"ResponsePut":{"header":{"revision":7}}}}"#;
    assert_eq!(txn, format!(r#"{{"header":{},"succeeded":true,"responses":[{range},{put}]}}"#, e.header(7)) + "\n");
    assert_eq!(e.ok(&["compaction", "7", "--physical"]), "compacted revision 7\n");
    check_compacted_at_7(e);
}

fn check_compacted_at_7(e: &Ctl) {
    e.fails(&["get", "c", "--rev", "6"], "OutOfRange", COMPACTED);
    e.fails(&["compaction", "7"], "OutOfRange", COMPACTED);
    assert_eq!(e.ok(&["get", "c", "--rev", "7", "--print-value-only"]), "6\n");
    let now = e.ok(&["get", "c", "-w", "json"]);
    assert_eq!(now, format!(r#"{{"header":{},"kvs":[{}],"count":1}}"#, e.header(7), kv("c", 2, 7, 6, "6")) + "\n");
}

#[test]
fn compaction_and_physical_compaction() {
    compaction_scenario(&Ctl::memory());
}

#[test]
fn rocksdb_engine_compaction_and_restart() {
    let mut e = Ctl::start(&[]); // default engine: RocksDB
    compaction_scenario(&e);
    e.put_all(&[("k", "v")]); // r8
    e.ok(&["del", "k"]); // r9
    e.crash_and_restart();
    e.fails(&["get", "c", "--rev", "6"], "OutOfRange", COMPACTED);
    e.fails(&["compaction", "7"], "OutOfRange", COMPACTED);
    assert_eq!(e.ok(&["get", "c", "--rev", "7", "--print-value-only"]), "6\n");
    assert_eq!(e.ok(&["get", "k", "--rev", "8", "--print-value-only"]), "v\n");
    let all = e.ok(&["get", "", "--from-key", "-w", "json"]);
    assert_eq!(all, format!(r#"{{"header":{},"kvs":[{}],"count":1}}"#, e.header(9), kv("c", 2, 7, 6, "6")) + "\n");
    assert_eq!(e.ok(&["put", "c", "7", "--prev-kv"]), "OK\nc\n6\n"); // r10
    assert_eq!(
        e.ok(&["get", "c", "-w", "fields"]),
        e.fields_header(10) + &kv_fields("c", 2, 10, 7, "7") + "\"More\" : false\n\"Count\" : 1\n"
    );
}

/// `endpoint status -w json` of the member, checked against what it must say, as (json, db size, raft
/// index, raft applied index).
fn endpoint_status(e: &Ctl, revision: i64) -> (String, u64, u64, u64) {
    let json = e.ok(&["endpoint", "status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let status = &v[0]["Status"];
    let (db_size, in_use) = (status["dbSize"].as_u64().unwrap(), status["dbSizeInUse"].as_u64().unwrap());
    let (index, applied) = (status["raftIndex"].as_u64().unwrap(), status["raftAppliedIndex"].as_u64().unwrap());
    assert!(db_size > 0 && in_use > 0 && in_use <= db_size, "db sizes {db_size}, in use {in_use}");
    assert!(index >= 1 && applied == index, "raft index {index}, applied {applied}");
    let (ep, m, t) = (e.m.endpoint(), e.member_id, e.raft_term.get());
    let expected = format!(
        r#"[{{"Endpoint":"{ep}","Status":{{"header":{},"version":"3.4.23","dbSize":{db_size},"leader":{m},"raftIndex":{index},"raftTerm":{t},"raftAppliedIndex":{applied},"dbSizeInUse":{in_use}}}}}]"#,
        e.header(revision)
    );
    assert_eq!(json, expected + "\n");
    (json, db_size, index, applied)
}

#[test]
fn endpoint_health_status_and_member_list() {
    let e = Ctl::memory();
    e.put_all(&[("a", "1"), ("b", "2")]); // r3
    let ep = e.m.endpoint();
    let (id, t) = (format!("{:x}", e.member_id), e.raft_term.get().to_string());

    // etcdctl 3.4 prints health on stderr.
    let health = e.run(&["endpoint", "health"], None);
    assert!(health.status.success() && health.stdout.is_empty(), "{health:?}");
    let health = String::from_utf8(health.stderr).unwrap();
    let took = health.strip_prefix(&format!("{ep} is healthy: successfully committed proposal: took = ")).unwrap();
    assert!(took.ends_with("s\n") && took.starts_with(|c: char| c.is_ascii_digit()), "{health}");
    let health: serde_json::Value = serde_json::from_str(&e.ok(&["endpoint", "health", "-w", "json"])).unwrap();
    assert_eq!((&health[0]["endpoint"], &health[0]["health"]), (&ep.as_str().into(), &true.into()));

    let (_, db_size, index, applied) = endpoint_status(&e, 3);
    let size = humanize_bytes(db_size);
    let (index, applied) = (index.to_string(), applied.to_string());
    let simple = format!("{ep}, {id}, 3.4.23, {size}, true, false, {t}, {index}, {applied}, \n");
    assert_eq!(e.ok(&["endpoint", "status"]), simple);
    let headers = [
        "ENDPOINT",
        "ID",
        "VERSION",
        "DB SIZE",
        "IS LEADER",
        "IS LEARNER",
        "RAFT TERM",
        "RAFT INDEX",
        "RAFT APPLIED INDEX",
        "ERRORS",
    ];
    let row = [&ep, &id, "3.4.23", &size, "true", "false", &t, &index, &applied, ""].map(str::to_string).to_vec();
    assert_eq!(e.ok(&["endpoint", "status", "-w", "table"]), table(&headers, &[row]));

    let peer = e.m.peer_url.clone();
    assert_eq!(e.ok(&["member", "list"]), format!("{id}, started, n1, {peer}, {ep}, false\n"));
    let headers = ["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"];
    let row = [&id, "started", "n1", &peer, &ep, "false"].map(str::to_string).to_vec();
    assert_eq!(e.ok(&["member", "list", "-w", "table"]), table(&headers, &[row]));
    let list: serde_json::Value = serde_json::from_str(&e.ok(&["member", "list", "-w", "json"])).unwrap();
    let member = serde_json::json!({"ID": e.member_id, "name": "n1", "peerURLs": [peer], "clientURLs": [ep]});
    assert_eq!(list["members"], serde_json::json!([member]));
    let header = &list["header"];
    assert_eq!((&header["cluster_id"], &header["member_id"]), (&e.cluster_id.into(), &e.member_id.into()));
    assert_eq!(header["raft_term"], e.raft_term.get());
}

/// etcd's MemberList response header carries no revision (`member list -w json` omits it, `-w fields`
/// prints `"Revision" : 0`); MetaStore fills in the store revision.
#[test]
fn member_list_header_has_no_revision() {
    let e = Ctl::memory();
    e.put_all(&[("a", "1")]);
    let (ep, peer, m, c, t) = (e.m.endpoint(), e.m.peer_url.clone(), e.member_id, e.cluster_id, e.raft_term.get());
    let json = e.ok(&["member", "list", "-w", "json"]);
    let expected = format!(
        r#"{{"header":{{"cluster_id":{c},"member_id":{m},"raft_term":{t}}},"members":[{{"ID":{m},"name":"n1","peerURLs":["{peer}"],"clientURLs":["{ep}"]}}]}}"#
    );
    assert_eq!(json, expected + "\n");
    let fields = e.ok(&["member", "list", "-w", "fields"]);
    let member = format!(
        "\"ID\" : {m}\n\"Name\" : \"n1\"\n\"PeerURL\" : \"{peer}\"\n\"ClientURL\" : \"{ep}\"\n\"IsLearner\" : false\n\n"
    );
    assert_eq!(fields, e.fields_header(0) + &member);
}
