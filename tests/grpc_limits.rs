//! The client port's HTTP/2 settings: `--max-concurrent-streams` caps the streams of one
//! connection (a third watch waits until one of two closes), `--grpc-keepalive-interval` /
//! `--grpc-keepalive-timeout` make the server ping an idle connection and close it when the ping
//! goes unanswered, and `--grpc-keepalive-min-time` limits how often a client may ping (grpc-go's
//! enforcement policy: the ping tests run the same raw HTTP/2 client against real etcd 3.4.23 and
//! MetaStore and expect the same outcome from both).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Member;

/// Opens two watch streams on one connection, then a third: whether the third opened within
/// three seconds while the first two were open, and whether it opened once the first was closed.
async fn third_watch(m: &Member) -> (bool, bool) {
    let client = m.client().await;
    let mut first = client.watch_client();
    let mut second = client.watch_client();
    let w1 = first.watch("a", None).await.expect("first watch");
    let _w2 = second.watch("b", None).await.expect("second watch");
    let mut third = client.watch_client();
    let mut pending = tokio::spawn(async move { third.watch("c", None).await.map(|_| ()) });
    let opened = |joined: Result<Result<(), etcd_client::Error>, _>| joined.expect("watch task").is_ok();
    if let Ok(joined) = tokio::time::timeout(Duration::from_secs(3), &mut pending).await {
        return (true, opened(joined));
    }
    drop(w1);
    (false, tokio::time::timeout(Duration::from_secs(10), pending).await.is_ok_and(opened))
}

#[tokio::test]
async fn max_concurrent_streams_caps_the_streams_of_one_connection() {
    let limited = Member::start(&["--max-concurrent-streams", "2"]);
    assert_eq!(third_watch(&limited).await, (false, true), "a third stream waits for a free slot");
    let unlimited = Member::start(&[]);
    assert_eq!(third_watch(&unlimited).await, (true, true), "etcd's default is unlimited");
}

/// One HTTP/2 frame: (type, flags).
fn read_frame(s: &mut TcpStream) -> Option<(u8, u8)> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).ok()?;
    Some((head[3], head[4]))
}

const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const ACK: u8 = 0x1;

#[test]
fn keepalive_pings_an_idle_connection_and_closes_it_when_unanswered() {
    let m = Member::start(&["--grpc-keepalive-interval", "1s", "--grpc-keepalive-timeout", "1s"]);
    let addr = m.endpoint().trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    // The client preface and empty settings: a gRPC client that then stays idle.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").expect("preface");
    s.write_all(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0]).expect("settings");
    let started = Instant::now();
    let mut pinged = false;
    let closed = loop {
        match read_frame(&mut s) {
            None => break true,
            // Acknowledge the server's settings, so only the unanswered ping can end the connection.
            Some((SETTINGS, flags)) if flags & ACK == 0 => {
                s.write_all(&[0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0]).expect("ack")
            }
            Some((PING, flags)) if flags & ACK == 0 => pinged = true,
            Some(_) => {}
        }
        if started.elapsed() > Duration::from_secs(15) {
            break false;
        }
    };
    assert!(pinged, "no keepalive ping from the server");
    assert!(closed, "the connection stayed open without answering the ping");
}

/// A raw HTTP/2 client connection (prior knowledge, no TLS) that sends exactly the frames a test
/// asks for, so the pings' timing is the test's, not a client library's.
struct RawH2 {
    s: TcpStream,
    /// When a GOAWAY arrived: (pings sent by then, error code, debug data).
    goaway: Option<(usize, u32, Vec<u8>)>,
    closed: bool,
    pings_sent: usize,
    pongs: usize,
    /// Pings the server sent (left unanswered).
    server_pings: usize,
}

const HEADERS: u8 = 0x1;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ENHANCE_YOUR_CALM: u32 = 0xb;

impl RawH2 {
    fn connect(m: &Member) -> RawH2 {
        let s = TcpStream::connect(m.endpoint().trim_start_matches("http://")).expect("connect");
        let mut c = RawH2 { s, goaway: None, closed: false, pings_sent: 0, pongs: 0, server_pings: 0 };
        c.send_raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        c.frame(SETTINGS, 0, 0, &[]);
        c
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        // A write after the server closed is the test's outcome, not an error.
        self.closed |= self.s.write_all(bytes).is_err();
    }

    fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = (payload.len() as u32).to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        self.send_raw(&f);
    }

    fn ping(&mut self) {
        self.pings_sent += 1;
        self.frame(PING, 0, 0, &(self.pings_sent as u64).to_be_bytes());
    }

    /// Opens stream `id` as a gRPC call of `path` (HPACK literals without indexing), sending
    /// `message` (protobuf bytes) and closing the request side when `message` is given.
    fn call(&mut self, id: u32, path: &str, message: Option<&[u8]>) {
        let mut block = Vec::new();
        for (name, value) in [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ] {
            block.push(0);
            block.push(name.len() as u8);
            block.extend_from_slice(name.as_bytes());
            block.push(value.len() as u8);
            block.extend_from_slice(value.as_bytes());
        }
        self.frame(HEADERS, END_HEADERS, id, &block);
        if let Some(message) = message {
            let mut data = vec![0];
            data.extend_from_slice(&(message.len() as u32).to_be_bytes());
            data.extend_from_slice(message);
            self.frame(0x0, END_STREAM, id, &data);
        }
    }

    /// Reads frames for `d` (acknowledging the server's settings), noting pong, GOAWAY and EOF.
    fn read_for(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while !self.closed {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            self.s.set_read_timeout(Some(left)).expect("timeout");
            let mut head = [0u8; 9];
            match self.s.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return,
                Err(_) => {
                    self.closed = true;
                    return;
                }
            }
            let mut payload = vec![0u8; u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize];
            if self.s.read_exact(&mut payload).is_err() {
                self.closed = true;
                return;
            }
            match (head[3], head[4] & ACK) {
                (SETTINGS, 0) => self.frame(SETTINGS, ACK, 0, &[]),
                (PING, ACK) => self.pongs += 1,
                (PING, _) => self.server_pings += 1,
                (GOAWAY, _) if payload.len() >= 8 => {
                    let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                    self.goaway = Some((self.pings_sent, code, payload[8..].to_vec()));
                }
                _ => {}
            }
        }
    }

    /// Sends `n` pings, each `gap` after the previous one's ACK (so a GOAWAY, which both servers
    /// send right after the offending ping's ACK, is counted against the right ping however
    /// loaded the machine is), reading the server's frames in between; stops early when the
    /// connection closes.
    fn pings(&mut self, n: usize, gap: Duration) {
        for _ in 0..n {
            if self.closed {
                return;
            }
            self.ping();
            let until = Instant::now() + Duration::from_secs(5);
            while self.pongs < self.pings_sent && !self.closed && Instant::now() < until {
                self.read_for(Duration::from_millis(20));
            }
            self.read_for(gap);
        }
    }

    /// The outcome: the GOAWAY (pings sent by then, code, debug data) and whether the connection
    /// closed, after waiting for what is still in flight.
    fn outcome(mut self) -> (Option<(usize, u32, String)>, bool) {
        self.read_for(Duration::from_secs(2));
        let goaway = self.goaway.take().map(|(n, code, debug)| (n, code, String::from_utf8_lossy(&debug).into_owned()));
        (goaway, self.closed)
    }
}

/// Runs `scenario` against real etcd 3.4.23 and MetaStore (both with `flags`, at the same
/// time) and returns their outcomes: (etcd's, MetaStore's).
fn on_both<T: Send>(flags: &[&str], scenario: impl Fn(&Member) -> T + Sync) -> (T, T) {
    std::thread::scope(|s| {
        let etcd = s.spawn(|| scenario(&Member::start_etcd(flags)));
        let metastore = scenario(&Member::start(flags));
        (etcd.join().expect("etcd scenario"), metastore)
    })
}

const FAST: Duration = Duration::from_millis(100);
const TOO_MANY_PINGS: (u32, &str) = (ENHANCE_YOUR_CALM, "too_many_pings");

fn closed_after(pings: usize) -> (Option<(usize, u32, String)>, bool) {
    (Some((pings, TOO_MANY_PINGS.0, TOO_MANY_PINGS.1.into())), true)
}

#[test]
fn pinging_an_idle_connection_again_within_two_hours_is_answered_with_too_many_pings() {
    // No stream open: every ping after the first is a strike whatever the min time is; the
    // third strike (the fourth ping) closes the connection.
    let (etcd, metastore) = on_both(&["--grpc-keepalive-min-time", "1s"], |m| {
        let mut c = RawH2::connect(m);
        c.read_for(FAST);
        c.pings(10, FAST);
        c.outcome()
    });
    assert_eq!(etcd, closed_after(4), "etcd");
    assert_eq!(metastore, etcd);
}

#[test]
fn with_a_stream_open_pings_slower_than_the_min_time_keep_the_connection_and_faster_ones_close_it() {
    let (etcd, metastore) = on_both(&["--grpc-keepalive-min-time", "1s"], |m| {
        let mut slow = RawH2::connect(m);
        slow.call(1, "/etcdserverpb.Watch/Watch", None);
        slow.read_for(Duration::from_millis(300));
        slow.pings(5, Duration::from_millis(1300));
        let slow = (slow.pongs, slow.outcome());
        let mut fast = RawH2::connect(m);
        fast.call(1, "/etcdserverpb.Watch/Watch", None);
        fast.read_for(Duration::from_millis(300));
        fast.pings(10, FAST);
        (slow, fast.outcome())
    });
    assert_eq!(etcd, ((5, (None, false)), closed_after(4)), "etcd");
    assert_eq!(metastore, etcd);
}

#[test]
fn a_response_sent_between_pings_clears_the_strikes() {
    // Two strikes, then a Range call (the server sends HEADERS and DATA), then the ping after it
    // is not judged and two more strikes are tolerated: the connection closes at the seventh ping.
    let range_a = [0x0a, 0x01, b'a'];
    let (etcd, metastore) = on_both(&["--grpc-keepalive-min-time", "1s"], |m| {
        let mut c = RawH2::connect(m);
        c.read_for(FAST);
        c.pings(3, FAST);
        c.call(1, "/etcdserverpb.KV/Range", Some(&range_a));
        c.read_for(Duration::from_millis(500));
        c.pings(10, FAST);
        c.outcome()
    });
    assert_eq!(etcd, closed_after(7), "etcd");
    assert_eq!(metastore, etcd);
}

#[test]
fn a_zero_keepalive_interval_or_timeout_turns_the_servers_pings_off() {
    for flags in [
        ["--grpc-keepalive-interval", "0", "--grpc-keepalive-timeout", "1s"],
        ["--grpc-keepalive-interval", "1s", "--grpc-keepalive-timeout", "0"],
    ] {
        let (etcd, metastore) = on_both(&flags, |m| {
            let mut c = RawH2::connect(m);
            c.read_for(Duration::from_secs(3));
            (c.server_pings, c.closed)
        });
        assert_eq!(etcd, (0, false), "etcd with {flags:?}");
        assert_eq!(metastore, etcd, "{flags:?}");
    }
}
