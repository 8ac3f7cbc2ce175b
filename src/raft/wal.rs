//! The raft write-ahead log: entries and hard state in preallocated segment files, one append
//! and one `fdatasync` per raft turn.
//!
//! # Why a log of its own
//!
//! The synced write of each raft turn is most of a single-client put. Appending to a file that
//! grows (RocksDB's WAL) makes `fdatasync` commit the file-system journal too (the new size and
//! blocks); overwriting blocks that already exist only writes the data (`docs/benchmarks.md`,
//! the floor table). So segments are created full size with real zero blocks written (not
//! `fallocate`, whose unwritten extents must still be converted on the first write), in the
//! background, before they are needed.
//!
//! # Format
//!
//! A directory of segments `{seq:016x}.wal`, each of a fixed size (larger when one batch needs
//! it), holding 16-byte aligned records:
//!
//! ```text
//!   len u32 | crc u32 | batch u64 | kind u8 | payload (len - 1 bytes) | zero padding to 16
//!   crc = crc32(seq, batch, len, kind, payload)   (seq: the segment's number)
//! ```
//!
//! Kinds: `ENTRY` (an `eraftpb.Entry`; an entry at an index the log already holds replaces that
//! entry and every later one: the conflicting-suffix truncation), `HARD_STATE`, `START{index,
//! term}` (first batch of every segment: the log's last entry when the segment was begun; the
//! beginning of the log when older segments are gone), `RESET{index, term}` (the log is empty
//! after a snapshot at index/term) and `TRUNCATE{index}` (drop entries after index). The high bit
//! of `kind` marks the last record of a batch. A batch (one call of [`Wal::append`]) is written
//! with one `pwrite` and made durable by one `fdatasync`; at open only complete batches count, so
//! a batch (entries + hard state of one raft turn) is all there or not at all. Batch numbers
//! count up by one across the whole log.
//!
//! # Crash reasoning
//!
//! Appends are sequential and each is synced before the next starts, so after a crash at most
//! the last batch is partial: a *torn tail*. Segment blocks were zero before they were written
//! and sectors are written whole, so a torn batch reads as some of its records followed by zero
//! sectors. At open, the first record that does not check (zero header, bad CRC, wrong batch
//! number) ends the log, and:
//!
//! * in the last segment holding data, it is accepted as a torn tail when its header is zero or
//!   its extent holds a zero sector, and no valid record of a later batch follows; the tail is
//!   zeroed on disk and writing resumes there;
//! * anything else — a bad record with data, a valid later batch after a bad record, a bad record
//!   in an older segment, a gap inside the log — is corruption: open fails, nothing is changed.
//!
//! Segments are only deleted whole: [`Wal::release_before`] drops segments whose every entry is
//! before a given index, and the caller first makes the state machine durable past them (see
//! `log_store.rs`). A snapshot install starts a new segment with `RESET` and then deletes every
//! older one. Deletion is oldest first, so a crash leaves a contiguous run of segments; older
//! leftovers before a gap in the numbering are stale (the segment after the gap starts with a
//! `START`) and are removed at open. New segments are made as `*.tmp`, filled, synced and renamed
//! (then the directory is synced), so a segment with a final name always has its full size; an
//! all-zero segment at the end is the next segment, made ahead of time.
//!
//! Every failed write or sync poisons the log: later calls fail too (after a failed `fdatasync`
//! the page cache cannot be trusted; the member must stop and restart, fsyncgate). With the cargo
//! feature `fault-injection`, the failpoints `disk-fail-write-after` / `disk-fail-sync-after`
//! fail appends as `storage/faulty.rs` fails engine writes.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use protobuf::Message as _;
use raft::prelude::{Entry, HardState};

use crate::error::{Error, Result};

/// Default segment size (etcd's too).
pub const SEGMENT_BYTES: u64 = 64 << 20;

const HEADER: usize = 16;
const ALIGN: usize = 16;
const SECTOR: usize = 512;
const END: u8 = 0x80;

const ENTRY: u8 = 1;
const HARD_STATE: u8 = 2;
const START: u8 = 3;
const RESET: u8 = 4;
const TRUNCATE: u8 = 5;

/// A change to the log found at open, in order (see [`Wal::open`]).
pub enum Replay {
    /// The log is empty after `(index, term)` (first segment's start, or a snapshot).
    Reset(u64, u64),
    /// An entry: replaces any entry at its index or later.
    Entry(Entry),
    /// Entries after `index` are dropped.
    Truncate(u64),
    HardState(HardState),
}

/// Where an entry lives.
#[derive(Clone, Copy)]
struct Loc {
    seq: u64,
    offset: u64,
    term: u64,
}

struct Segment {
    seq: u64,
    /// The index of this segment's `START`/`RESET` (`None` before it is written): every entry
    /// in older segments that is still in the log is at or before it.
    start: Option<u64>,
    file: File,
    size: u64,
}

/// The log's shape as the WAL knows it: `(index, term)` before the first entry, and where each
/// entry is.
struct Shape {
    base: (u64, u64),
    locs: VecDeque<Loc>,
}

impl Shape {
    fn last(&self) -> u64 {
        self.base.0 + self.locs.len() as u64
    }

    fn term(&self, index: u64) -> Option<u64> {
        if index == self.base.0 {
            return Some(self.base.1);
        }
        let i = index.checked_sub(self.base.0 + 1)?;
        self.locs.get(i as usize).map(|l| l.term)
    }

    fn reset(&mut self, index: u64, term: u64) {
        self.base = (index, term);
        self.locs.clear();
    }

    fn truncate(&mut self, index: u64) {
        let keep = index.saturating_sub(self.base.0) as usize;
        self.locs.truncate(keep);
    }

    /// Forgets where entries before `index` are (compacted away), keeping the last one's term.
    fn forget_before(&mut self, index: u64) {
        let n = (index.saturating_sub(1).saturating_sub(self.base.0) as usize).min(self.locs.len());
        if n > 0 {
            let term = self.locs[n - 1].term;
            self.locs.drain(..n);
            self.base = (self.base.0 + n as u64, term);
        }
    }

    /// Appends an entry at `index`, cutting any suffix it replaces; a gap is an error.
    fn put(&mut self, index: u64, loc: Loc) -> std::result::Result<(), String> {
        if index <= self.base.0 || index > self.last() + 1 {
            return Err(format!("entry {index} does not follow the log ({}..={})", self.base.0, self.last()));
        }
        self.truncate(index - 1);
        self.locs.push_back(loc);
        Ok(())
    }
}

pub struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    /// Oldest first; the last one is written.
    segments: Vec<Segment>,
    /// Write position in the last segment; 0 means it still needs its `START` batch.
    offset: u64,
    next_batch: u64,
    shape: Shape,
    hard_state: HardState,
    /// The next segment, being made in the background.
    spare: Option<mpsc::Receiver<Result<Segment>>>,
    /// The next segment, found made at open.
    ready: Option<Segment>,
    poisoned: bool,
}

fn io_err(what: impl std::fmt::Display, e: std::io::Error) -> Error {
    Error::Storage(format!("raft WAL: {what}: {e}"))
}

fn corrupt(what: String) -> Error {
    Error::Storage(format!("raft WAL corrupt: {what}"))
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}.wal"))
}

fn padded(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

fn crc(seq: u64, batch: u64, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(&batch.to_le_bytes());
    h.update(&(body.len() as u32).to_le_bytes());
    h.update(body);
    h.finalize()
}

fn pair(a: u64, b: u64) -> Vec<u8> {
    let mut v = a.to_le_bytes().to_vec();
    v.extend_from_slice(&b.to_le_bytes());
    v
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err(format!("sync {}", dir.display()), e))
}

/// Makes segment `seq` of `size` zero bytes, written for real and synced, under its final name.
fn make_segment(dir: &Path, seq: u64, size: u64) -> Result<Segment> {
    let path = segment_path(dir, seq);
    let tmp = path.with_extension("tmp");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| io_err(format!("create {}", tmp.display()), e))?;
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < size {
        let n = (size - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at).map_err(|e| io_err(format!("fill {}", tmp.display()), e))?;
        at += n as u64;
    }
    file.sync_all().map_err(|e| io_err(format!("sync {}", tmp.display()), e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io_err(format!("rename {}", tmp.display()), e))?;
    sync_dir(dir)?;
    Ok(Segment { seq, start: None, file, size })
}

/// One record read back at open.
struct Record<'a> {
    kind: u8,
    end: bool,
    batch: u64,
    payload: &'a [u8],
    /// Offset just past the record (padded).
    next: usize,
}

/// Bytes read at a time when looking for a segment's last nonzero byte.
pub(super) const ZERO_PROBE_BYTES: usize = 1 << 20;

/// The offset just past the last nonzero [`ZERO_PROBE_BYTES`] block of the segment at `path`
/// (0: all zero), and its size. Probes from the end: a segment is filled from the front.
pub(super) fn nonzero_end(path: &Path) -> Result<(usize, u64)> {
    let file = File::open(path).map_err(|e| io_err(format!("open {}", path.display()), e))?;
    let size = file.metadata().map_err(|e| io_err(format!("stat {}", path.display()), e))?.len();
    let mut block = vec![0u8; ZERO_PROBE_BYTES];
    let mut end = size as usize;
    while end > 0 {
        let start = (end - 1) / ZERO_PROBE_BYTES * ZERO_PROBE_BYTES;
        let part = &mut block[..end - start];
        file.read_exact_at(part, start as u64).map_err(|e| io_err(format!("read {}", path.display()), e))?;
        if part.iter().any(|b| *b != 0) {
            return Ok((end, size));
        }
        end = start;
    }
    Ok((0, size))
}

/// The whole segment (`size` bytes) as read from `file`, whose bytes from `end` on are zero
/// ([`nonzero_end`]): only `..end` is read; the rest stays the zeroed allocation's, pages the
/// OS has not handed out yet, so they take no memory.
fn read_segment(file: &File, path: &Path, end: usize, size: u64) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; size as usize];
    file.read_exact_at(&mut buf[..end], 0).map_err(|e| io_err(format!("read {}", path.display()), e))?;
    Ok(buf)
}

/// The record at `at` if it checks, for segment `seq`.
fn record_at(buf: &[u8], at: usize, seq: u64) -> Option<Record<'_>> {
    let header = buf.get(at..at + HEADER)?;
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let sum = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let batch = u64_at(header, 8);
    if len == 0 {
        return None;
    }
    let body = buf.get(at + HEADER..at + HEADER + len)?;
    if crc(seq, batch, body) != sum {
        return None;
    }
    Some(Record {
        kind: body[0] & !END,
        end: body[0] & END != 0,
        batch,
        payload: &body[1..],
        next: at + padded(HEADER + len),
    })
}

/// Whether the bad record at `at` looks like a torn write: a zero header, or a plausible one
/// whose extent holds a whole zero sector (a sector that never reached the disk).
fn looks_torn(buf: &[u8], at: usize) -> bool {
    let header = &buf[at..(at + HEADER).min(buf.len())];
    if header.iter().all(|b| *b == 0) {
        return true;
    }
    if header.len() < HEADER {
        return false;
    }
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let end = at + HEADER + len;
    if len == 0 || end > buf.len() {
        return false;
    }
    // Each sector the payload overlaps, clipped to the record: a torn write leaves whole
    // sectors unwritten (zero), and a record may cover only part of its last sector.
    let from = at + HEADER;
    let mut s = from / SECTOR * SECTOR;
    while s < end {
        let part = &buf[s.max(from)..(s + SECTOR).min(end)];
        if !part.is_empty() && part.iter().all(|b| *b == 0) {
            return true;
        }
        s += SECTOR;
    }
    false
}

/// What reading one segment found.
struct Scanned {
    /// Offset just past the last complete batch.
    end: usize,
    /// Whether bytes after `end` are not all zero (a torn tail to wipe).
    dirty: bool,
}

impl Wal {
    /// Creates an empty log in `dir` (made if missing), replacing any segments there, starting
    /// with `RESET{index, term}`.
    pub fn create(dir: &Path, segment_bytes: u64, index: u64, term: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(format!("create {}", dir.display()), e))?;
        for (_, path) in list(dir)? {
            std::fs::remove_file(&path).map_err(|e| io_err(format!("remove {}", path.display()), e))?;
        }
        let first = make_segment(dir, 1, segment_bytes)?;
        let mut wal = Self {
            dir: dir.to_path_buf(),
            segment_bytes,
            segments: vec![first],
            offset: 0,
            next_batch: 1,
            shape: Shape { base: (index, term), locs: VecDeque::new() },
            hard_state: HardState::default(),
            spare: None,
            ready: None,
            poisoned: false,
        };
        wal.write_batch(vec![(RESET, pair(index, term))], Vec::new(), true)?;
        wal.prepare_next();
        Ok(wal)
    }

    /// Whether `dir` holds a log.
    pub fn exists(dir: &Path) -> Result<bool> {
        Ok(!list(dir)?.is_empty())
    }

    /// Opens the log in `dir`, handing every change to `replay` in order, repairing a torn tail
    /// and refusing corruption (see the module docs).
    pub fn open(dir: &Path, segment_bytes: u64, replay: &mut dyn FnMut(Replay)) -> Result<Self> {
        let mut found = list(dir)?;
        if found.is_empty() {
            return Err(Error::Storage(format!("raft WAL: no segments in {}", dir.display())));
        }
        // A gap: the segments before it are leftovers of a deletion a crash interrupted.
        if let Some(gap) = (1..found.len()).rev().find(|i| found[*i].0 != found[i - 1].0 + 1) {
            for (_, path) in found.drain(..gap) {
                tracing::warn!(path = %path.display(), "removing a raft WAL segment left over from an interrupted deletion");
                std::fs::remove_file(&path).map_err(|e| io_err(format!("remove {}", path.display()), e))?;
            }
            sync_dir(dir)?;
        }
        // Where each segment's last nonzero byte ends: the segments are read one at a time and
        // only up to there (see `read_segment`), so opening costs memory for the data in the log,
        // not 64 MiB per segment.
        let mut ends = Vec::with_capacity(found.len());
        for (_, path) in &found {
            ends.push(nonzero_end(path)?);
        }
        // The last segment holding data may have a torn tail; all-zero ones after it are the
        // segment made ahead of time (only one is kept).
        let data_end = ends.iter().rposition(|(end, _)| *end > 0).map_or(0, |i| i + 1);
        let mut wal = Self {
            dir: dir.to_path_buf(),
            segment_bytes,
            segments: Vec::new(),
            offset: 0,
            next_batch: 0,
            shape: Shape { base: (0, 0), locs: VecDeque::new() },
            hard_state: HardState::default(),
            spare: None,
            ready: None,
            poisoned: false,
        };
        let mut started = false;
        for (i, ((seq, path), (end, size))) in found.iter().zip(ends).enumerate() {
            if i > data_end {
                // One all-zero segment after the data is the next one to write; more are not needed.
                std::fs::remove_file(path).map_err(|e| io_err(format!("remove {}", path.display()), e))?;
                continue;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| io_err(format!("open {}", path.display()), e))?;
            if i == data_end {
                wal.ready = Some(Segment { seq: *seq, start: None, file, size });
                continue;
            }
            let buf = &read_segment(&file, path, end, size)?;
            let scanned = wal.scan(*seq, buf, i + 1 == data_end, &mut started, replay)?;
            if scanned.dirty {
                tracing::warn!(path = %path.display(), at = scanned.end, "raft WAL: discarding a torn write at the end of the log");
                // Past `end` the segment is zero already.
                let zeros = vec![0u8; end.saturating_sub(scanned.end)];
                file.write_all_at(&zeros, scanned.end as u64)
                    .and_then(|()| file.sync_data())
                    .map_err(|e| io_err(format!("repair {}", path.display()), e))?;
            }
            let start = (scanned.end > 0).then(|| segment_start(buf, *seq));
            wal.segments.push(Segment { seq: *seq, start, file, size });
            wal.offset = scanned.end as u64;
        }
        if !started {
            return Err(corrupt(format!("no segment in {} starts the log", dir.display())));
        }
        if wal.next_batch == 0 {
            wal.next_batch = 1;
        }
        wal.prepare_next();
        Ok(wal)
    }

    /// Reads one segment's records, handing complete batches to `replay`.
    fn scan(
        &mut self,
        seq: u64,
        buf: &[u8],
        may_be_torn: bool,
        started: &mut bool,
        replay: &mut dyn FnMut(Replay),
    ) -> Result<Scanned> {
        let name = format!("segment {seq:016x}");
        let mut at = 0;
        let mut end = 0;
        let mut pending: Vec<(u8, &[u8], usize)> = Vec::new();
        loop {
            let rec = match record_at(buf, at, seq) {
                Some(r) if self.next_batch == 0 || r.batch == self.next_batch => r,
                _ => break,
            };
            if self.next_batch == 0 {
                self.next_batch = rec.batch;
            }
            pending.push((rec.kind, rec.payload, at));
            at = rec.next;
            if rec.end {
                for (kind, payload, offset) in pending.drain(..) {
                    self.replay_record(seq, kind, payload, offset as u64, started, replay)
                        .map_err(|e| corrupt(format!("{name} at {offset}: {e}")))?;
                }
                self.next_batch += 1;
                end = at;
            }
        }
        // `at` is the first record that does not check (or the end of the file).
        let tail_is_zero = buf[end..].iter().all(|b| *b == 0);
        if tail_is_zero {
            return Ok(Scanned { end, dirty: false });
        }
        if !may_be_torn {
            return Err(corrupt(format!("{name}: bad record at {at} in a segment before the last")));
        }
        if at < buf.len() && !looks_torn(buf, at) {
            return Err(corrupt(format!("{name}: bad record at {at} (CRC mismatch with no sign of a torn write)")));
        }
        // A torn write leaves parts of one batch only: a valid record of a later batch after the
        // bad one means a hole in the middle of the log.
        let torn_batch = self.next_batch;
        let mut probe = at + ALIGN;
        while probe + HEADER <= buf.len() {
            if let Some(r) = record_at(buf, probe, seq) {
                if r.batch > torn_batch {
                    return Err(corrupt(format!("{name}: bad record at {at} followed by valid batch {}", r.batch)));
                }
            }
            probe += ALIGN;
        }
        Ok(Scanned { end, dirty: true })
    }

    fn replay_record(
        &mut self,
        seq: u64,
        kind: u8,
        payload: &[u8],
        offset: u64,
        started: &mut bool,
        replay: &mut dyn FnMut(Replay),
    ) -> std::result::Result<(), String> {
        match kind {
            START | RESET => {
                if payload.len() != 16 {
                    return Err("short start record".into());
                }
                let (index, term) = (u64_at(payload, 0), u64_at(payload, 8));
                if kind == START && *started {
                    if self.shape.last() != index || self.shape.term(index) != Some(term) {
                        return Err(format!(
                            "segment starts after entry {index} (term {term}) but the log ends at {}",
                            self.shape.last()
                        ));
                    }
                } else {
                    self.shape.reset(index, term);
                    replay(Replay::Reset(index, term));
                    *started = true;
                }
            }
            _ if !*started => return Err("records before the segment's start".into()),
            ENTRY => {
                let e = Entry::parse_from_bytes(payload).map_err(|e| format!("entry: {e}"))?;
                self.shape.put(e.index, Loc { seq, offset, term: e.term })?;
                replay(Replay::Entry(e));
            }
            HARD_STATE => {
                let hs = HardState::parse_from_bytes(payload).map_err(|e| format!("hard state: {e}"))?;
                self.hard_state = hs.clone();
                replay(Replay::HardState(hs));
            }
            TRUNCATE => {
                if payload.len() != 8 {
                    return Err("short truncate record".into());
                }
                let index = u64_at(payload, 0);
                self.shape.truncate(index);
                replay(Replay::Truncate(index));
            }
            other => return Err(format!("unknown record kind {other}")),
        }
        Ok(())
    }

    fn check(&self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Storage("raft WAL: an earlier write or sync failed; restart the member".into()));
        }
        Ok(())
    }

    /// Durably appends `entries` (an entry at an index the log holds replaces it and every later
    /// one) and `hs`, after dropping entries past `truncate_after` when given: one batch, one
    /// `fdatasync`.
    pub fn append(&mut self, truncate_after: Option<u64>, entries: &[Entry], hs: Option<&HardState>) -> Result<()> {
        let mut records = Vec::with_capacity(entries.len() + 2);
        if let Some(index) = truncate_after {
            records.push((TRUNCATE, index.to_le_bytes().to_vec()));
        }
        let first_entry = records.len();
        for e in entries {
            records.push((ENTRY, e.write_to_bytes().expect("encoding a raft entry into memory cannot fail")));
        }
        if let Some(hs) = hs {
            records.push((HARD_STATE, hs.write_to_bytes().expect("encoding a hard state into memory cannot fail")));
        }
        if records.is_empty() {
            return Ok(());
        }
        let offsets = self.write_batch(records, (first_entry..first_entry + entries.len()).collect(), false)?;
        if let Some(index) = truncate_after {
            self.shape.truncate(index);
        }
        let seq = self.segments.last().expect("a segment").seq;
        for (e, offset) in entries.iter().zip(offsets) {
            self.shape.put(e.index, Loc { seq, offset, term: e.term }).map_err(Error::Storage)?;
        }
        if let Some(hs) = hs {
            self.hard_state = hs.clone();
        }
        Ok(())
    }

    /// Restarts the log empty after `(index, term)` with hard state `hs`, in a new segment, then
    /// deletes every older segment.
    pub fn reset(&mut self, index: u64, term: u64, hs: &HardState) -> Result<()> {
        self.check()?;
        self.roll(0)?;
        let hs_bytes = hs.write_to_bytes().expect("encoding a hard state into memory cannot fail");
        self.write_batch(vec![(RESET, pair(index, term)), (HARD_STATE, hs_bytes)], Vec::new(), true)?;
        self.shape.reset(index, term);
        self.hard_state = hs.clone();
        let keep = self.segments.len() - 1;
        self.delete_oldest(keep)
    }

    /// Deletes the segments whose every entry is before `index` (never the one being written).
    /// The caller has made the state machine durable past `index - 1`. Returns how many went.
    pub fn release_before(&mut self, index: u64) -> Result<usize> {
        let n = self.releasable_before(index);
        self.delete_oldest(n)?;
        Ok(n)
    }

    /// Stops tracking entries before `index` (compacted; their segments go with
    /// [`Wal::release_before`]), so the in-memory index stays bounded.
    pub fn forget_before(&mut self, index: u64) {
        self.shape.forget_before(index);
    }

    /// How many segments [`Wal::release_before`] would delete for `index`.
    pub fn releasable_before(&self, index: u64) -> usize {
        (1..self.segments.len()).take_while(|i| self.segments[*i].start.is_some_and(|s| s < index)).count()
    }

    fn delete_oldest(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        for seg in self.segments.drain(..n) {
            let path = segment_path(&self.dir, seg.seq);
            std::fs::remove_file(&path).map_err(|e| io_err(format!("remove {}", path.display()), e))?;
        }
        sync_dir(&self.dir)
    }

    /// The entry at `index`, read back from its segment.
    pub fn read(&self, index: u64) -> Result<Entry> {
        let i = index.checked_sub(self.shape.base.0 + 1).map(|i| i as usize);
        let loc = i
            .and_then(|i| self.shape.locs.get(i))
            .ok_or_else(|| Error::Storage(format!("raft entry {index} not in the WAL")))?;
        let seg = self
            .segments
            .iter()
            .find(|s| s.seq == loc.seq)
            .ok_or_else(|| Error::Storage(format!("raft entry {index}: segment {:016x} is gone", loc.seq)))?;
        let mut buf = vec![0u8; HEADER];
        seg.file.read_exact_at(&mut buf, loc.offset).map_err(|e| io_err("read entry", e))?;
        let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
        buf.resize(HEADER + len, 0);
        seg.file.read_exact_at(&mut buf[HEADER..], loc.offset + HEADER as u64).map_err(|e| io_err("read entry", e))?;
        let payload = match record_at(&buf, 0, seg.seq) {
            Some(r) if r.kind == ENTRY => r.payload,
            _ => return Err(corrupt(format!("entry {index} in segment {:016x} at {}", seg.seq, loc.offset))),
        };
        let e = Entry::parse_from_bytes(payload).map_err(|e| corrupt(format!("entry {index}: {e}")))?;
        if e.index != index {
            return Err(corrupt(format!("entry {} where {index} was expected", e.index)));
        }
        Ok(e)
    }

    /// `(index, term)` before the first entry, and the last index.
    #[cfg(test)]
    pub fn bounds(&self) -> ((u64, u64), u64) {
        (self.shape.base, self.shape.last())
    }

    pub fn term(&self, index: u64) -> Option<u64> {
        self.shape.term(index)
    }

    #[cfg(test)]
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Writes `records` as one batch (with the segment's `START` batch first when it has none),
    /// syncs, and returns the offsets of the records at `want`. With `fresh`, the batch opens the
    /// segment itself (a `RESET`).
    fn write_batch(&mut self, records: Vec<(u8, Vec<u8>)>, want: Vec<usize>, fresh: bool) -> Result<Vec<u64>> {
        self.check()?;
        let body: usize = records.iter().map(|(_, p)| padded(HEADER + 1 + p.len())).sum();
        let start_len =
            if fresh { 0 } else { padded(HEADER + 17) + padded(HEADER + 1 + self.hard_state.compute_size() as usize) };
        let seg_size = self.segments.last().expect("a segment").size;
        if self.offset + body as u64 > seg_size || (self.offset == 0 && !fresh && (start_len + body) as u64 > seg_size)
        {
            self.roll(start_len + body)?;
        }
        let seq = self.segments.last().expect("a segment").seq;
        let mut buf = Vec::with_capacity(start_len + body);
        if self.offset == 0 && !fresh {
            let last = self.shape.last();
            let term = self.shape.term(last).unwrap_or(0);
            let hs = self.hard_state.write_to_bytes().expect("encoding a hard state into memory cannot fail");
            self.encode(
                &mut buf,
                seq,
                &[(START, pair(last, term)), (HARD_STATE, hs)],
                self.next_batch,
                &mut Vec::new(),
            );
            self.next_batch += 1;
        }
        let mut offsets = Vec::with_capacity(records.len());
        self.encode(&mut buf, seq, &records, self.next_batch, &mut offsets);
        let at = self.offset;
        self.fault("disk-fail-write-after", "write")?;
        if let Err(e) = self.segments.last().expect("a segment").file.write_all_at(&buf, at) {
            self.poisoned = true;
            return Err(io_err("write", e));
        }
        self.fault("disk-fail-sync-after", "fsync")?;
        let started = std::time::Instant::now();
        if let Err(e) = self.segments.last().expect("a segment").file.sync_data() {
            self.poisoned = true;
            return Err(io_err("fdatasync", e));
        }
        crate::metrics::get().wal_fsync.observe(started.elapsed().as_secs_f64());
        if at == 0 {
            let seg = self.segments.last_mut().expect("a segment");
            seg.start = Some(if fresh { u64_at(&records[0].1, 0) } else { self.shape.last() });
        }
        self.next_batch += 1;
        self.offset = at + buf.len() as u64;
        Ok(want.into_iter().map(|i| at + offsets[i]).collect())
    }

    fn encode(&self, buf: &mut Vec<u8>, seq: u64, records: &[(u8, Vec<u8>)], batch: u64, offsets: &mut Vec<u64>) {
        for (i, (kind, payload)) in records.iter().enumerate() {
            offsets.push(buf.len() as u64);
            let mut body = Vec::with_capacity(1 + payload.len());
            body.push(if i + 1 == records.len() { kind | END } else { *kind });
            body.extend_from_slice(payload);
            buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc(seq, batch, &body).to_le_bytes());
            buf.extend_from_slice(&batch.to_le_bytes());
            buf.extend_from_slice(&body);
            buf.resize(padded(buf.len()), 0);
        }
    }

    #[cfg(feature = "fault-injection")]
    fn fault(&mut self, failpoint: &str, what: &str) -> Result<()> {
        if crate::failpoint::after(failpoint) {
            self.poisoned = true;
            return Err(Error::Storage(format!("injected disk fault: raft WAL {what} failed")));
        }
        Ok(())
    }

    #[cfg(not(feature = "fault-injection"))]
    fn fault(&mut self, _failpoint: &str, _what: &str) -> Result<()> {
        Ok(())
    }

    /// Moves writing to the next segment (at least `need` bytes), made ahead of time when it can
    /// be, and starts making the one after it.
    fn roll(&mut self, need: usize) -> Result<()> {
        let seq = self.segments.last().expect("a segment").seq + 1;
        let ready = match (self.ready.take(), self.spare.take()) {
            (Some(made), _) => Ok(made),
            (None, Some(rx)) => {
                rx.recv().unwrap_or_else(|_| Err(Error::Storage("raft WAL: segment maker died".into())))
            }
            (None, None) => make_segment(&self.dir, seq, self.segment_bytes.max(need as u64)),
        };
        let seg = match ready {
            Ok(s) if s.size >= need as u64 && s.seq == seq => s,
            Ok(_) => make_segment(&self.dir, seq, self.segment_bytes.max(need as u64))?,
            Err(e) => {
                tracing::warn!(error = %e, "making the next raft WAL segment ahead of time failed; making it now");
                make_segment(&self.dir, seq, self.segment_bytes.max(need as u64))?
            }
        };
        self.segments.push(seg);
        self.offset = 0;
        self.prepare_next();
        Ok(())
    }

    /// Starts making the segment after the current one in the background.
    pub fn prepare_next(&mut self) {
        if self.spare.is_some() || self.ready.is_some() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let dir = self.dir.clone();
        let seq = self.segments.last().expect("a segment").seq + 1;
        let size = self.segment_bytes;
        let spawned = std::thread::Builder::new().name("wal-segment".into()).spawn(move || {
            // The writer may have gone (shut down); the file is then found again at open.
            let _unwanted = tx.send(make_segment(&dir, seq, size));
        });
        if spawned.is_ok() {
            self.spare = Some(rx);
        }
    }
}

impl Drop for Wal {
    /// Waits for the segment being made ahead, so no thread writes in the directory after the
    /// log is closed (a reopen in the same process would race with it).
    fn drop(&mut self) {
        if let Some(rx) = self.spare.take() {
            let _made_or_failed = rx.recv();
        }
    }
}

/// The index of a segment's first `START`/`RESET` record (0 when it has none).
fn segment_start(buf: &[u8], seq: u64) -> u64 {
    match record_at(buf, 0, seq) {
        Some(r) if (r.kind == START || r.kind == RESET) && r.payload.len() == 16 => u64_at(r.payload, 0),
        _ => 0,
    }
}

/// The segments in `dir` by number (`*.tmp` leftovers of an interrupted creation are removed).
fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(format!("list {}", dir.display()), e)),
    };
    for entry in read {
        let entry = entry.map_err(|e| io_err(format!("list {}", dir.display()), e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".tmp") {
            let _gone = std::fs::remove_file(entry.path());
            continue;
        }
        if let Some(seq) = name.strip_suffix(".wal").and_then(|s| u64::from_str_radix(s, 16).ok()) {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}
