//! `floor`: what this machine allows at best, to read the other figures against.
//!
//! - fdatasync of a 4 KiB write into a preallocated file (how a WAL that preallocates its
//!   segments, like etcd's, commits), and of a 4 KiB append that grows the file (so the
//!   file-system journal commits too). A durable single-client write cannot beat the first.
//! - TCP round trip on loopback with 64-byte messages (`TCP_NODELAY`): the network part of any
//!   request in these benchmarks.
//!
//! Synchronous std code on plain threads; it runs before and apart from any async workload.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cli::FloorArgs;
use crate::histogram::Histogram;
use crate::report::{latency_json, Report};

const BLOCK: usize = 4096;

fn fdatasync_overwrite(path: &Path, count: u64) -> std::io::Result<Histogram> {
    let f = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(path)?;
    let block = vec![0x5au8; BLOCK];
    for i in 0..count {
        f.write_all_at(&block, i * BLOCK as u64)?;
    }
    f.sync_all()?;
    let mut h = Histogram::new();
    for i in 0..count {
        let t = Instant::now();
        f.write_all_at(&block, i * BLOCK as u64)?;
        f.sync_data()?;
        h.record(t.elapsed().as_nanos() as u64);
    }
    Ok(h)
}

fn fdatasync_append(path: &Path, count: u64) -> std::io::Result<Histogram> {
    let mut f: File = OpenOptions::new().create(true).truncate(true).write(true).open(path)?;
    f.sync_all()?;
    let block = vec![0xa5u8; BLOCK];
    let mut h = Histogram::new();
    for _ in 0..count {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        h.record(t.elapsed().as_nanos() as u64);
    }
    Ok(h)
}

fn loopback_rtt(count: u64) -> std::io::Result<Histogram> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 64];
        for _ in 0..count {
            s.read_exact(&mut buf)?;
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [7u8; 64];
    let mut h = Histogram::new();
    for _ in 0..count {
        let t = Instant::now();
        c.write_all(&buf)?;
        c.read_exact(&mut buf)?;
        h.record(t.elapsed().as_nanos() as u64);
    }
    echo.join().map_err(|_| std::io::Error::other("echo thread panicked"))??;
    Ok(h)
}

pub fn run(a: &FloorArgs) -> Result<Report, String> {
    let path = a.dir.join(format!(".metastore-bench-floor-{}", std::process::id()));
    let start = Instant::now();
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    let overwrite = fdatasync_overwrite(&path, a.fsync_count).map_err(io);
    let append = overwrite.as_ref().ok().map(|_| fdatasync_append(&path, a.fsync_count).map_err(io));
    let _ = std::fs::remove_file(&path);
    let (overwrite, append) = (overwrite?, append.expect("ran when overwrite did")?);
    let rtt = loopback_rtt(a.rtt_count).map_err(|e| format!("loopback: {e}"))?;
    let mut r = Report {
        workload: "floor".into(),
        latency_of: "4 KiB overwrite + fdatasync (preallocated file)".into(),
        elapsed: start.elapsed(),
        latency: overwrite,
        errors: Default::default(),
        kinds: Vec::new(),
        extra: Default::default(),
        config: json!({"dir": a.dir, "fsync_count": a.fsync_count, "rtt_count": a.rtt_count}),
    };
    r.set("append_fdatasync_ms", latency_json(&append));
    r.set("loopback_rtt_ms", latency_json(&rtt));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_measures_in_a_directory() {
        let dir = std::env::temp_dir().join(format!("mb-floor-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = run(&FloorArgs { dir: dir.clone(), fsync_count: 5, rtt_count: 50 }).unwrap();
        assert_eq!(r.latency.count(), 5);
        assert!(r.latency.min() > 0);
        assert!(r.extra["loopback_rtt_ms"]["p50"].as_f64().unwrap() > 0.0);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "temporary file removed");
        std::fs::remove_dir(&dir).unwrap();
    }
}
