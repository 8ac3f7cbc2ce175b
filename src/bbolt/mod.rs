//! bbolt database files (the format of etcd's backend, and so of etcd's snapshots): a reader and
//! a writer that builds a file once, bottom-up, from sorted keys.
//!
//! A bbolt file is an array of fixed-size pages (the page size is recorded in the meta page;
//! etcd on Linux uses 4096). Every page starts with a 16-byte header, little-endian:
//!
//! ```text
//! id u64 | flags u16 | count u16 | overflow u32 | data …
//! flags: 0x01 branch, 0x02 leaf, 0x04 meta, 0x10 freelist
//! ```
//!
//! A node larger than a page occupies `1 + overflow` consecutive pages.
//!
//! * **Meta pages** (pages 0 and 1): `magic 0xED0CDAED u32 | version 2 u32 | page_size u32 |
//!   flags u32 | root bucket (root pgid u64, sequence u64) | freelist pgid u64 | pgid u64 (pages
//!   in the file, the high-water mark) | txid u64 | checksum u64` where the checksum is FNV-1a 64
//!   of the 56 bytes before it. A reader takes the valid meta with the larger txid; a writer
//!   writes the meta of transaction `txid` to page `txid % 2`, so a torn write leaves the other.
//! * **Freelist**: a page listing free page ids — or, as etcd writes it (`NoFreelistSync`), no
//!   page at all: freelist pgid `u64::MAX`, and bbolt rebuilds the list by walking the tree when it
//!   opens the file for writing.
//! * **Leaf pages**: `count` 16-byte elements `flags u32 | pos u32 | ksize u32 | vsize u32`,
//!   then the keys and values; `pos` is the distance from the element to its key, the value
//!   follows the key. Flag `0x01` marks a nested bucket, whose value is a bucket header.
//! * **Branch pages**: elements `pos u32 | ksize u32 | pgid u64`, the key being the first key of
//!   the child page.
//! * **Buckets**: the meta's root bucket is a B+tree whose leaf elements are the top-level
//!   buckets (etcd's `key`, `meta`, `lease`, …). A bucket's value is `root pgid u64 | sequence
//!   u64`; root pgid 0 means an **inline bucket**: its single leaf page (header included, id 0)
//!   follows the header inside the value. bbolt inlines small buckets; this writer never does
//!   (a bucket of its own pages is equally valid) and the reader understands both.
//!
//! Keys within a page and pages within a tree are in byte order, so the writer fills leaf pages
//! left to right from keys that arrive sorted, remembers each page's first key, and builds the
//! branch levels above them once a bucket is complete. Pages 0 and 1 are reserved first and the
//! meta pages written last, when the root of the root bucket is known. The whole file is the
//! reachable tree: no free pages.
//!
//! Not done: nested buckets (etcd uses none; the reader skips them), updating an existing file
//! (a snapshot is written once), memory maps — the reader reads the pages on the path it walks,
//! from the file or from bytes in memory.

mod read;
#[cfg(test)]
mod tests;
mod write;

pub use read::Db;
pub use write::{BucketWriter, Writer};

/// A visitor of a bucket's keys and values; an error stops the walk.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), Error> + 'a;
/// Keys and values of one bucket, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

use crate::error::Error;

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
/// The page size of the files this writer makes: etcd's on Linux.
pub const PAGE_SIZE: usize = 4096;
const PAGE_HEADER: usize = 16;
const ELEMENT: usize = 16;
const BUCKET_HEADER: usize = 16;
const META_SIZE: usize = 64;
/// Freelist pgid meaning "not written" (etcd opens its backend with `NoFreelistSync`).
const NO_FREELIST: u64 = u64::MAX;

const BRANCH: u16 = 0x01;
const LEAF: u16 = 0x02;
const META: u16 = 0x04;
const BUCKET_FLAG: u32 = 0x01;

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::Storage(format!("bbolt: {what}"))
}

/// FNV-1a, 64 bits: bbolt's meta checksum.
fn fnv64a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A meta page's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    page_size: u32,
    root: u64,
    freelist: u64,
    pgid: u64,
    txid: u64,
}

impl Meta {
    /// The 64 bytes after a meta page's header.
    fn encode(&self) -> [u8; META_SIZE] {
        let mut m = [0u8; META_SIZE];
        m[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        m[4..8].copy_from_slice(&VERSION.to_le_bytes());
        m[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        // flags u32 (12..16) and the root bucket's sequence (24..32) stay zero.
        m[16..24].copy_from_slice(&self.root.to_le_bytes());
        m[32..40].copy_from_slice(&self.freelist.to_le_bytes());
        m[40..48].copy_from_slice(&self.pgid.to_le_bytes());
        m[48..56].copy_from_slice(&self.txid.to_le_bytes());
        let sum = fnv64a(&m[0..56]);
        m[56..64].copy_from_slice(&sum.to_le_bytes());
        m
    }

    /// Decodes and validates the meta that follows a page header at `b[0..]`.
    fn decode(b: &[u8]) -> Result<Meta, String> {
        if b.len() < META_SIZE {
            return Err("file too small for a meta page".into());
        }
        if u32_at(b, 0) != MAGIC {
            return Err("invalid magic: not a bbolt file".into());
        }
        if u32_at(b, 4) != VERSION {
            return Err(format!("unsupported version {}", u32_at(b, 4)));
        }
        if fnv64a(&b[0..56]) != u64_at(b, 56) {
            return Err("meta checksum mismatch".into());
        }
        Ok(Meta {
            page_size: u32_at(b, 8),
            root: u64_at(b, 16),
            freelist: u64_at(b, 32),
            pgid: u64_at(b, 40),
            txid: u64_at(b, 48),
        })
    }
}
