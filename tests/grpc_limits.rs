//! The client port's HTTP/2 settings: `--max-concurrent-streams` caps the streams of one
//! connection (a third watch waits until one of two closes), and `--grpc-keepalive-interval` /
//! `--grpc-keepalive-timeout` make the server ping an idle connection and close it when the ping
//! goes unanswered.

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
