//! Benchmark of the metadata layers (`make bench-layers`, part of `make bench`):
//!
//! 1. Index lookups over N index entries (default 1M = 2,000 ids x 100 days x 5 files): by day,
//!    by id and one (id, day) set, answered by prefix ranges in MetaStore (and etcd 3.4.23 for
//!    reference) versus the same entries in `redis-server` laid out as `index:table:T:id:ID:DAY`
//!    sets and found with `KEYS` + `SMEMBERS`, as the OLAP engine does today.
//! 2. Flush commits per second with 10 concurrent flushers (claim + atomic commit).
//!
//! It starts every server itself on ephemeral loopback ports in a temporary directory, polls them
//! until they answer, and kills them (by PID) at the end. Figures go to stdout and `--out`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, Txn, TxnOp};
use metastore_client::buffer::{Buffers, Segment};
use metastore_client::catalog::Catalog;
use metastore_client::concurrency::Session;
use metastore_client::index::{DataFile, Index};
use metastore_client::layout::Layout;

struct Opts {
    metastore: String,
    etcd: Option<String>,
    redis: String,
    ids: u32,
    days: u32,
    files: u32,
    lookups: usize,
    buffers: u32,
    flushers: usize,
    out: Option<String>,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        metastore: "metastore".into(),
        etcd: None,
        redis: "redis-server".into(),
        ids: 2000,
        days: 100,
        files: 5,
        lookups: 30,
        buffers: 2000,
        flushers: 10,
        out: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--metastore" => o.metastore = v,
            "--etcd" => o.etcd = Some(v),
            "--redis-server" => o.redis = v,
            "--out" => o.out = Some(v),
            "--ids" => o.ids = v.parse().expect("--ids N"),
            "--buffers" => o.buffers = v.parse().expect("--buffers N"),
            "--quick" => {
                (o.ids, o.lookups, o.buffers) = (200, 10, 300);
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    o
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A server process we started; killed by PID on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} not ready within 30 s");
}

fn healthy(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut body = String::new();
    s.write_all(req.as_bytes()).is_ok() && s.read_to_string(&mut body).is_ok() && body.contains("\"health\":\"true\"")
}

/// Starts metastore or etcd (same flags) in `dir`; returns the process and client URL.
fn start_etcd_like(bin: &str, dir: &std::path::Path) -> (Proc, String) {
    let (client, peer) = (free_port(), free_port());
    let (curl, purl) = (format!("http://127.0.0.1:{client}"), format!("http://127.0.0.1:{peer}"));
    let log = std::fs::File::create(dir.join("server.log")).expect("log");
    let child = Command::new(bin)
        .args(["--name", "n1", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen-client-urls", &curl, "--advertise-client-urls", &curl])
        .args(["--listen-peer-urls", &purl, "--initial-advertise-peer-urls", &purl])
        .args(["--initial-cluster", &format!("n1={purl}"), "--quota-backend-bytes", "8589934592"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start {bin}: {e}"));
    let p = Proc(child);
    wait_until(bin, || healthy(&format!("127.0.0.1:{client}")));
    (p, curl)
}

/// A minimal RESP2 client (blocking), enough for SADD, KEYS and SMEMBERS with pipelining.
struct Redis {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

#[derive(Debug)]
enum Resp {
    Simple,
    Int,
    Bulk(Option<Vec<u8>>),
    Array(Vec<Resp>),
}

impl Redis {
    fn connect(port: u16) -> std::io::Result<Redis> {
        let w = TcpStream::connect(("127.0.0.1", port))?;
        w.set_nodelay(true)?;
        Ok(Redis { r: BufReader::new(w.try_clone()?), w })
    }

    fn encode(buf: &mut Vec<u8>, args: &[&[u8]]) {
        buf.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a);
            buf.extend_from_slice(b"\r\n");
        }
    }

    /// Sends all commands at once, then reads all replies.
    fn pipeline(&mut self, cmds: &[Vec<Vec<u8>>]) -> Vec<Resp> {
        let mut buf = Vec::new();
        for c in cmds {
            let args: Vec<&[u8]> = c.iter().map(Vec::as_slice).collect();
            Self::encode(&mut buf, &args);
        }
        self.w.write_all(&buf).expect("redis write");
        (0..cmds.len()).map(|_| self.read()).collect()
    }

    fn cmd(&mut self, args: &[&[u8]]) -> Resp {
        let mut buf = Vec::new();
        Self::encode(&mut buf, args);
        self.w.write_all(&buf).expect("redis write");
        self.read()
    }

    fn read(&mut self) -> Resp {
        let mut line = Vec::new();
        self.r.read_until(b'\n', &mut line).expect("redis read");
        let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
        match line[0] {
            b'+' => Resp::Simple,
            b'-' => panic!("redis error: {text}"),
            b':' => Resp::Int,
            b'$' => {
                let n: i64 = text.parse().expect("bulk length");
                if n < 0 {
                    return Resp::Bulk(None);
                }
                let mut data = vec![0; n as usize + 2];
                self.r.read_exact(&mut data).expect("bulk");
                data.truncate(n as usize);
                Resp::Bulk(Some(data))
            }
            b'*' => {
                let n: i64 = text.parse().expect("array length");
                Resp::Array((0..n.max(0)).map(|_| self.read()).collect())
            }
            other => panic!("unexpected RESP type {}", other as char),
        }
    }
}

fn array_len(r: &Resp) -> usize {
    match r {
        Resp::Array(v) => v.len(),
        _ => 0,
    }
}

fn day_name(d: u32) -> String {
    format!("2024-{:02}-{:02}", 1 + d / 28, 1 + d % 28)
}

fn path(id: u32, day: &str, f: u32) -> String {
    format!("s3://warehouse/events/{id}/{day}/part-{f:05}.parquet")
}

/// Loads the index into a KV server as raw txns (both orderings, 64 files per txn, 8 writers).
async fn load_kv(client: &Client, o: &Opts) -> Duration {
    Catalog::new(client).create_table("events", None, true, "bench", "").await.expect("create");
    let layout = Layout::default();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..8u32 {
        let (client, layout) = (client.clone(), layout.clone());
        let (ids, days, files) = (o.ids, o.days, o.files);
        tasks.push(tokio::spawn(async move {
            let mut ops = Vec::new();
            for id in (w..ids).step_by(8) {
                for d in 0..days {
                    let day = day_name(d);
                    for f in 0..files {
                        let p = path(id, &day, f);
                        let v = serde_json::to_vec(&DataFile::new(p.clone(), 64 << 20, 100_000)).expect("json");
                        ops.push(TxnOp::put(
                            format!("{}{id}/{day}/{p}", layout.index_by_id("events")),
                            v.clone(),
                            None,
                        ));
                        ops.push(TxnOp::put(format!("{}{day}/{id}/{p}", layout.index_by_day("events")), v, None));
                        if ops.len() == 128 {
                            let txn = Txn::new().and_then(std::mem::take(&mut ops));
                            client.kv_client().txn(txn).await.expect("load txn");
                        }
                    }
                }
            }
            if !ops.is_empty() {
                client.kv_client().txn(Txn::new().and_then(ops)).await.expect("load txn");
            }
        }));
    }
    for t in tasks {
        t.await.expect("loader");
    }
    start.elapsed()
}

fn load_redis(r: &mut Redis, o: &Opts) -> Duration {
    let start = Instant::now();
    let mut batch = Vec::new();
    for id in 0..o.ids {
        for d in 0..o.days {
            let day = day_name(d);
            let mut c = vec![b"SADD".to_vec(), format!("index:table:events:id:{id}:{day}").into_bytes()];
            c.extend((0..o.files).map(|f| path(id, &day, f).into_bytes()));
            batch.push(c);
            if batch.len() == 1000 {
                r.pipeline(&std::mem::take(&mut batch));
            }
        }
    }
    r.pipeline(&batch);
    start.elapsed()
}

#[derive(Default)]
struct Lat(Vec<Duration>);

impl Lat {
    fn summary(&mut self) -> String {
        self.0.sort();
        let n = self.0.len();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let mean = self.0.iter().sum::<Duration>() / n as u32;
        format!("{:.2} | {:.2} | {:.2}", ms(self.0[n / 2]), ms(self.0[(n * 99 / 100).min(n - 1)]), ms(mean))
    }
}

async fn lookups_kv(client: &Client, o: &Opts) -> [(Lat, usize); 3] {
    let index = Index::new(client);
    let mut out: [(Lat, usize); 3] = Default::default();
    for q in 0..o.lookups {
        let (id, day) = ((q as u32 * 7919) % o.ids, day_name((q as u32 * 31) % o.days));
        let t = Instant::now();
        out[0].1 = index.by_day("events", &day).await.expect("by day").len();
        out[0].0 .0.push(t.elapsed());
        let t = Instant::now();
        out[1].1 = index.by_id("events", &id.to_string()).await.expect("by id").len();
        out[1].0 .0.push(t.elapsed());
        let t = Instant::now();
        out[2].1 = index.files("events", &id.to_string(), &day).await.expect("set").len();
        out[2].0 .0.push(t.elapsed());
    }
    out
}

/// KEYS for the matching sets, then their SMEMBERS pipelined.
fn keys_then_members(r: &mut Redis, pattern: &str) -> usize {
    let Resp::Array(keys) = r.cmd(&[b"KEYS", pattern.as_bytes()]) else { panic!("KEYS reply") };
    let cmds: Vec<Vec<Vec<u8>>> = keys
        .into_iter()
        .map(|k| match k {
            Resp::Bulk(Some(k)) => vec![b"SMEMBERS".to_vec(), k],
            other => panic!("key {other:?}"),
        })
        .collect();
    r.pipeline(&cmds).iter().map(array_len).sum()
}

fn lookups_redis(r: &mut Redis, o: &Opts) -> [(Lat, usize); 3] {
    let mut out: [(Lat, usize); 3] = Default::default();
    for q in 0..o.lookups {
        let (id, day) = ((q as u32 * 7919) % o.ids, day_name((q as u32 * 31) % o.days));
        let t = Instant::now();
        out[0].1 = keys_then_members(r, &format!("index:table:events:id:*:{day}"));
        out[0].0 .0.push(t.elapsed());
        let t = Instant::now();
        out[1].1 = keys_then_members(r, &format!("index:table:events:id:{id}:*"));
        out[1].0 .0.push(t.elapsed());
        let t = Instant::now();
        out[2].1 = array_len(&r.cmd(&[b"SMEMBERS", format!("index:table:events:id:{id}:{day}").as_bytes()]));
        out[2].0 .0.push(t.elapsed());
    }
    out
}

/// `buffers` buffers of 2 segments each, then `flushers` flushers claim and commit until none is
/// left; returns commits per second.
async fn flush(endpoint: &str, o: &Opts) -> (f64, Duration) {
    let client = Client::connect([endpoint], None).await.expect("connect");
    Catalog::new(&client).create_table("flushed", None, true, "bench", "").await.expect("create");
    let mut tasks = Vec::new();
    for w in 0..8u32 {
        let buffers = Buffers::new(&client);
        let n = o.buffers;
        tasks.push(tokio::spawn(async move {
            for b in (w..n).step_by(8) {
                for s in 0..2 {
                    let seg = Segment {
                        rows: 1000,
                        bytes: 100_000,
                        first_ts: s,
                        last_ts: s + 1,
                        location: format!("wal/{b}/{s}"),
                    };
                    buffers.append("flushed", &format!("id{b}"), "2024-05-01", &seg).await.expect("append");
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("appender");
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for f in 0..o.flushers {
        let client = Client::connect([endpoint], None).await.expect("connect");
        tasks.push(tokio::spawn(async move {
            let session = Session::new(&client, 30).await.expect("session");
            let buffers = Buffers::new(&client);
            let mut commits = 0u32;
            loop {
                let claims = buffers.claim(&session, "flushed", &format!("f{f}"), 4).await.expect("claim");
                if claims.is_empty() {
                    if buffers.list("flushed").await.expect("list").is_empty() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                for c in claims {
                    let file =
                        DataFile::new(format!("s3://w/flushed/{}/{}.parquet", c.id, c.token), c.bytes(), c.rows());
                    buffers.commit(&c, &[file]).await.expect("commit");
                    commits += 1;
                }
            }
            session.close().await.expect("close");
            commits
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("flusher");
    }
    let elapsed = start.elapsed();
    assert_eq!(total, o.buffers, "every buffer committed exactly once");
    let stats = Catalog::new(&client).stats("flushed").await.expect("stats");
    assert_eq!(stats.file_count, u64::from(o.buffers));
    (f64::from(total) / elapsed.as_secs_f64(), elapsed)
}

#[tokio::main]
async fn main() {
    let o = parse_args();
    let entries = u64::from(o.ids) * u64::from(o.days) * u64::from(o.files);
    let base = std::env::temp_dir().join(format!("metastore-layers-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base).expect("temp dir");
    let mut report = format!(
        "# Metadata layers benchmark\n\nGenerated by `make bench-layers` (`client/examples/layers_bench.rs`) on {} cores. \
         {entries} index entries: {} ids x {} days x {} files in one table; each lookup result is read in full.\n\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        o.ids,
        o.days,
        o.files
    );

    let mut servers: Vec<(String, String)> = vec![("MetaStore".into(), o.metastore.clone())];
    if let Some(etcd) = &o.etcd {
        servers.push(("etcd 3.4.23".into(), etcd.clone()));
    }
    report.push_str("## Index lookups\n\n| server | lookup | results | p50 ms | p99 ms | mean ms |\n| --- | --- | --- | --- | --- | --- |\n");
    let mut loads = Vec::new();
    let mut flushes = Vec::new();
    for (name, bin) in &servers {
        let dir: PathBuf = base.join(name.replace(' ', "-"));
        std::fs::create_dir_all(&dir).expect("dir");
        let (_proc, endpoint) = start_etcd_like(bin, &dir);
        let client = Client::connect([endpoint.as_str()], None).await.expect("connect");
        let load = load_kv(&client, &o).await;
        eprintln!("{name}: loaded {entries} entries in {load:?}");
        loads.push((name.clone(), load));
        let res = lookups_kv(&client, &o).await;
        for ((mut lat, n), what) in
            res.into_iter().zip(["by day (prefix range)", "by id (prefix range)", "one (id, day) set"])
        {
            report.push_str(&format!("| {name} | {what} | {n} | {} |\n", lat.summary()));
        }
        let (rate, took) = flush(&endpoint, &o).await;
        eprintln!("{name}: {} flush commits in {took:?}", o.buffers);
        flushes.push((name.clone(), rate, took));
    }

    let port = free_port();
    let _redis = Proc(
        Command::new(&o.redis)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&base)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", o.redis)),
    );
    wait_until("redis-server", || {
        Redis::connect(port).map(|mut r| matches!(r.cmd(&[b"PING"]), Resp::Simple)).unwrap_or(false)
    });
    let mut r = Redis::connect(port).expect("redis");
    let load = load_redis(&mut r, &o);
    eprintln!("redis: loaded {entries} entries in {load:?}");
    loads.push(("Redis 7 (sets)".into(), load));
    let res = lookups_redis(&mut r, &o);
    for ((mut lat, n), what) in
        res.into_iter().zip(["by day (KEYS + SMEMBERS)", "by id (KEYS + SMEMBERS)", "one (id, day) set (SMEMBERS)"])
    {
        report.push_str(&format!("| Redis 7 | {what} | {n} | {} |\n", lat.summary()));
    }

    report.push_str("\n## Loading the index\n\n| server | time | entries/s |\n| --- | --- | --- |\n");
    for (name, took) in &loads {
        report.push_str(&format!(
            "| {name} | {:.1} s | {:.0} |\n",
            took.as_secs_f64(),
            entries as f64 / took.as_secs_f64()
        ));
    }
    report.push_str(&format!(
        "\nMetaStore and etcd: raw txns of 64 files (both orderings, 128 puts), 8 writers; Redis: pipelined `SADD`s.\n\n\
         ## Flush commits\n\n{} buffers of 2 segments, {} flushers each claiming up to 4 buffers at a time with a 30 s \
         session; a commit deletes the segments, adds one data file to the index (both orderings), updates the table's \
         stats and releases the claim in one txn. All flushers share one table, so every commit contends on its stats key.\n\n\
         | server | commits/s | time |\n| --- | --- | --- |\n",
        o.buffers, o.flushers
    ));
    for (name, rate, took) in &flushes {
        report.push_str(&format!("| {name} | {rate:.0} | {:.1} s |\n", took.as_secs_f64()));
    }
    print!("{report}");
    if let Some(out) = &o.out {
        std::fs::write(out, &report).expect("write report");
    }
    let _ = std::fs::remove_dir_all(&base);
}
