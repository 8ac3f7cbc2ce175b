//! The raft WAL's format and crash handling: reopen, rollover, torn tails, corruption,
//! truncation, compaction and reset.

use std::path::Path;

use raft::prelude::{Entry, HardState};

use super::wal::{Replay, Wal};

/// What a replay builds: the log after `base`, and the last hard state.
#[derive(Default, Debug)]
struct Model {
    base: (u64, u64),
    entries: Vec<Entry>,
    hs: HardState,
}

impl Model {
    fn indexes(&self) -> Vec<u64> {
        self.entries.iter().map(|e| e.index).collect()
    }
    fn terms(&self) -> Vec<u64> {
        self.entries.iter().map(|e| e.term).collect()
    }
}

fn open(dir: &Path, segment_bytes: u64) -> crate::error::Result<(Wal, Model)> {
    let mut m = Model::default();
    let wal = Wal::open(dir, segment_bytes, &mut |r| match r {
        Replay::Reset(i, t) => {
            m.base = (i, t);
            m.entries.clear();
        }
        Replay::Entry(e) => {
            let keep = (e.index - m.base.0 - 1) as usize;
            m.entries.truncate(keep);
            m.entries.push(e);
        }
        Replay::Truncate(i) => m.entries.truncate((i - m.base.0) as usize),
        Replay::HardState(hs) => m.hs = hs,
    })?;
    Ok((wal, m))
}

fn entry(index: u64, term: u64, size: usize) -> Entry {
    Entry { index, term, data: vec![(index % 251) as u8 + 1; size].into(), ..Default::default() }
}

fn hs(term: u64, commit: u64) -> HardState {
    HardState { term, vote: 1, commit, ..Default::default() }
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

/// Segments that hold data (the one made ahead of time is all zero).
fn data_segments(dir: &Path) -> Vec<std::path::PathBuf> {
    segments(dir).into_iter().filter(|p| std::fs::read(p).unwrap().iter().any(|b| *b != 0)).collect()
}

/// Closes the log (which waits for the segment being made ahead), so tests see a settled
/// directory.
fn settle(wal: Wal) {
    drop(wal);
}

const SEG: u64 = 8 << 10;

#[test]
fn entries_and_hard_state_survive_reopen_across_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), SEG, 0, 0).unwrap();
    for i in 1..=60 {
        wal.append(None, &[entry(i, 1, 300)], Some(&hs(1, i - 1))).unwrap();
    }
    assert!(wal.segment_count() > 2, "60 × 300 bytes roll over 8 KiB segments");
    assert_eq!(wal.read(7).unwrap(), entry(7, 1, 300));
    settle(wal);
    let (wal, m) = open(tmp.path(), SEG).unwrap();
    assert_eq!(m.indexes(), (1..=60).collect::<Vec<_>>());
    assert_eq!(m.hs, hs(1, 59));
    assert_eq!(wal.bounds(), ((0, 0), 60));
    for i in 1..=60 {
        assert_eq!(wal.read(i).unwrap(), entry(i, 1, 300), "entry {i} read back from its segment");
    }
    // A batch bigger than a segment gets a segment of its own size.
    let mut wal = wal;
    wal.append(None, &[entry(61, 1, 20_000)], None).unwrap();
    settle(wal);
    let (wal, m) = open(tmp.path(), SEG).unwrap();
    assert_eq!(m.entries.last().unwrap(), &entry(61, 1, 20_000));
    assert_eq!(wal.read(61).unwrap().data.len(), 20_000);
}

#[test]
fn a_conflicting_suffix_and_a_truncation_replace_the_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), SEG, 0, 0).unwrap();
    wal.append(None, &(1..=10).map(|i| entry(i, 1, 10)).collect::<Vec<_>>(), None).unwrap();
    wal.append(None, &[entry(5, 2, 10), entry(6, 2, 10)], Some(&hs(2, 4))).unwrap();
    assert_eq!(wal.bounds().1, 6);
    assert_eq!(wal.term(6), Some(2));
    assert!(wal.read(7).is_err());
    settle(wal);
    let (mut wal, m) = open(tmp.path(), SEG).unwrap();
    assert_eq!(m.terms(), vec![1, 1, 1, 1, 2, 2]);
    wal.append(Some(3), &[], Some(&hs(3, 3))).unwrap();
    settle(wal);
    let (wal, m) = open(tmp.path(), SEG).unwrap();
    assert_eq!(m.indexes(), vec![1, 2, 3]);
    assert_eq!(wal.bounds().1, 3);
    assert_eq!(m.hs, hs(3, 3));
}

/// The last batch, torn by a crash (a sector of it never written), is cut at open; the file is
/// wiped from there and writing resumes in its place.
#[test]
fn a_torn_last_batch_is_cut_and_writing_resumes() {
    // 0: a whole sector inside the batch never written; 1: its first header never written;
    // 2: everything from the last sector boundary inside entry 3's record on never written (the
    // record keeps only part of a sector unwritten).
    for torn in 0..3 {
        let torn_header = torn == 1;
        let tmp = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(tmp.path(), 64 << 10, 0, 0).unwrap();
        wal.append(None, &[entry(1, 1, 100), entry(2, 1, 100)], Some(&hs(1, 1))).unwrap();
        let before = std::fs::metadata(&data_segments(tmp.path())[0]).unwrap().len();
        wal.append(None, &[entry(3, 1, 3000), entry(4, 1, 10)], Some(&hs(1, 3))).unwrap();
        settle(wal);
        let path = data_segments(tmp.path())[0].clone();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), before, "preallocated: the file does not grow");
        let mut bytes = std::fs::read(&path).unwrap();
        // Find the second batch: the first record after the first batch's end.
        let second = find_entry(&bytes, 3);
        if torn_header {
            bytes[second..second + 16].fill(0);
        } else if torn == 2 {
            let len = u32::from_le_bytes(bytes[second..second + 4].try_into().unwrap()) as usize;
            let boundary = (second + 16 + len) / 512 * 512;
            assert!(boundary > second + 16 && boundary < second + 16 + len);
            bytes[boundary..].fill(0);
        } else {
            let sector = (second + 16).div_ceil(512) * 512 + 512;
            bytes[sector..sector + 512].fill(0);
        }
        std::fs::write(&path, &bytes).unwrap();
        let (mut wal, m) = open(tmp.path(), 64 << 10).unwrap();
        assert_eq!(m.indexes(), vec![1, 2], "torn {torn}");
        assert_eq!(m.hs, hs(1, 1));
        assert!(std::fs::read(&path).unwrap()[second..].iter().all(|b| *b == 0), "the torn tail is wiped");
        wal.append(None, &[entry(3, 2, 10)], Some(&hs(2, 2))).unwrap();
        settle(wal);
        let (_, m) = open(tmp.path(), 64 << 10).unwrap();
        assert_eq!(m.terms(), vec![1, 1, 2]);
    }
}

/// Offset of the record holding entry `index` (its payload starts with the protobuf of an
/// entry; found by trying every aligned offset).
fn find_entry(bytes: &[u8], index: u64) -> usize {
    use protobuf::Message as _;
    (0..bytes.len() - 16)
        .step_by(16)
        .find(|at| {
            let len = u32::from_le_bytes(bytes[*at..at + 4].try_into().unwrap()) as usize;
            len > 1
                && at + 16 + len <= bytes.len()
                && bytes[at + 16] & 0x7f == 1
                && Entry::parse_from_bytes(&bytes[at + 17..at + 16 + len]).is_ok_and(|e| e.index == index)
        })
        .expect("entry record")
}

/// Damage that a torn write cannot explain is refused, and the files are left as they are.
#[test]
fn corruption_in_the_middle_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), 64 << 10, 0, 0).unwrap();
    for i in 1..=5 {
        wal.append(None, &[entry(i, 1, 2000)], Some(&hs(1, i))).unwrap();
    }
    settle(wal);
    let path = data_segments(tmp.path())[0].clone();
    let good = std::fs::read(&path).unwrap();
    // A flipped bit in entry 2 (batch 3 of 6): a CRC mismatch with data all around it.
    let mut bytes = good.clone();
    bytes[find_entry(&good, 2) + 100] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = open(tmp.path(), 64 << 10).err().expect("refused").to_string();
    assert!(err.contains("corrupt"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing repaired");
    // A zeroed sector in entry 2 looks torn, but later batches follow it: a hole, refused.
    let mut bytes = good.clone();
    let sector = (find_entry(&good, 2) + 16).div_ceil(512) * 512;
    bytes[sector..sector + 512].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    let err = open(tmp.path(), 64 << 10).err().expect("refused").to_string();
    assert!(err.contains("followed by valid batch"), "{err}");
    // A zeroed header in the middle: the same.
    let mut bytes = good.clone();
    let at = find_entry(&good, 3);
    bytes[at..at + 16].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    assert!(open(tmp.path(), 64 << 10).is_err());
    // Intact again: opens.
    std::fs::write(&path, &good).unwrap();
    let (_, m) = open(tmp.path(), 64 << 10).unwrap();
    assert_eq!(m.indexes(), vec![1, 2, 3, 4, 5]);
}

#[test]
fn corruption_in_an_older_segment_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), SEG, 0, 0).unwrap();
    for i in 1..=80 {
        wal.append(None, &[entry(i, 1, 300)], None).unwrap();
    }
    settle(wal);
    let first = data_segments(tmp.path())[0].clone();
    let mut bytes = std::fs::read(&first).unwrap();
    let at = find_entry(&bytes, 2);
    bytes[at + 40] ^= 0x10;
    std::fs::write(&first, &bytes).unwrap();
    assert!(open(tmp.path(), SEG).is_err());
    // A missing segment in the middle is refused too: the next one does not follow on.
    bytes[at + 40] ^= 0x10;
    std::fs::write(&first, &bytes).unwrap();
    let data = data_segments(tmp.path());
    assert!(data.len() >= 3);
    std::fs::rename(&data[1], tmp.path().join("moved-away")).unwrap();
    // The segments before the gap are taken for leftovers of a deletion and removed; the log
    // then starts at the segment after it.
    let (wal, m) = open(tmp.path(), SEG).unwrap();
    assert!(m.base.0 > 0, "the log starts at the later segment's START");
    assert_eq!(wal.bounds().1, 80);
    assert!(!first.exists());
}

/// Whole old segments go once their entries are before the release point; the segment being
/// written never does; a reopened log starts at the oldest kept segment.
#[test]
fn release_deletes_whole_old_segments_only() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), SEG, 0, 0).unwrap();
    for i in 1..=100 {
        wal.append(None, &[entry(i, 1, 300)], Some(&hs(1, i))).unwrap();
    }
    let before = wal.segment_count();
    assert_eq!(wal.release_before(1).unwrap(), 0);
    let released = wal.release_before(50).unwrap();
    assert!(released > 0 && released < before);
    let (base, last) = wal.bounds();
    assert_eq!((base, last), ((0, 0), 100), "the in-memory index is trimmed apart");
    wal.forget_before(50);
    assert_eq!(wal.bounds(), ((49, 1), 100));
    assert!(wal.read(48).is_err());
    assert_eq!(wal.read(50).unwrap(), entry(50, 1, 300));
    settle(wal);
    let (mut wal, m) = open(tmp.path(), SEG).unwrap();
    assert!(m.base.0 < 50 && m.base.0 > 0, "starts at a kept segment: {:?}", m.base);
    assert_eq!(m.entries.last().unwrap().index, 100);
    assert!(m.indexes().contains(&50));
    assert_eq!(m.hs, hs(1, 100), "each segment starts with the hard state");
    // Everything before the segment being written goes (the last one with data stays while
    // the one made ahead has no START yet).
    wal.release_before(1000).unwrap();
    assert!(wal.segment_count() <= 2, "{}", wal.segment_count());
    wal.append(None, &[entry(101, 1, 10)], None).unwrap();
    settle(wal);
    let (_, m) = open(tmp.path(), SEG).unwrap();
    assert_eq!(m.entries.last().unwrap().index, 101);
}

#[test]
fn a_reset_starts_an_empty_log_after_the_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), SEG, 0, 0).unwrap();
    for i in 1..=40 {
        wal.append(None, &[entry(i, 1, 300)], None).unwrap();
    }
    wal.reset(500, 3, &hs(3, 500)).unwrap();
    assert_eq!(wal.segment_count(), 1);
    wal.append(None, &[entry(501, 3, 10)], None).unwrap();
    settle(wal);
    assert_eq!(data_segments(tmp.path()).len(), 1, "older segments deleted");
    let (wal, m) = open(tmp.path(), SEG).unwrap();
    assert_eq!(m.base, (500, 3));
    assert_eq!(m.indexes(), vec![501]);
    assert_eq!(m.hs, hs(3, 500));
    assert_eq!(wal.term(500), Some(3));
    assert!(wal.read(40).is_err());
}

/// An all-zero segment at the end (made ahead of time) is where writing continues; a half-made
/// one (`*.tmp`) is removed.
#[test]
fn the_segment_made_ahead_is_used_and_leftovers_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(tmp.path(), SEG, 0, 0).unwrap();
    wal.append(None, &[entry(1, 1, 10)], None).unwrap();
    settle(wal);
    assert_eq!(segments(tmp.path()).len(), 2, "one in use, one made ahead");
    std::fs::write(tmp.path().join("0000000000000009.tmp"), b"half").unwrap();
    let (mut wal, m) = open(tmp.path(), SEG).unwrap();
    assert_eq!(m.indexes(), vec![1]);
    assert!(!tmp.path().join("0000000000000009.tmp").exists());
    for i in 2..=30 {
        wal.append(None, &[entry(i, 1, 300)], None).unwrap();
    }
    settle(wal);
    let (_, m) = open(tmp.path(), SEG).unwrap();
    assert_eq!(m.indexes(), (1..=30).collect::<Vec<_>>());
}

/// `nonzero_end` finds the end of the last block holding a nonzero byte, wherever it is (a torn
/// or corrupt record after zeros counts), for sizes that are not a multiple of the block; open
/// reads a segment only up to there.
#[test]
fn a_segment_is_read_up_to_its_last_nonzero_block() {
    use super::wal::{nonzero_end, ZERO_PROBE_BYTES};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("segment");
    let size = 3 * ZERO_PROBE_BYTES + 100;
    let mut bytes = vec![0u8; size];
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(nonzero_end(&path).unwrap(), (0, size as u64), "all zero");
    for (at, end) in [
        (0, ZERO_PROBE_BYTES),
        (ZERO_PROBE_BYTES + 7, 2 * ZERO_PROBE_BYTES),
        (3 * ZERO_PROBE_BYTES, size),
        (size - 1, size),
    ] {
        bytes[at] = 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(nonzero_end(&path).unwrap(), (end, size as u64), "a nonzero byte at {at}");
    }
}
