//! Reading a bbolt file page by page (from a file, or from bytes in memory): validate the metas,
//! walk the root bucket, walk a bucket. Only the pages on the current path are held.

use std::borrow::Cow;
use std::os::unix::fs::FileExt as _;

use super::{corrupt, u16_at, u32_at, u64_at, Meta, BRANCH, BUCKET_FLAG, BUCKET_HEADER, ELEMENT, LEAF, PAGE_HEADER};
use crate::error::Result;

/// A visitor of leaf elements: flags, key, value.
type ElementVisit<'a> = dyn FnMut(u32, &[u8], &[u8]) -> Result<()> + 'a;

/// An open bbolt file, as of its newest valid meta page.
pub struct Db {
    source: Source,
    /// Bytes of the database (a trailer after them, such as a snapshot's sha256, is not read).
    len: u64,
    page_size: usize,
    root: u64,
    /// The transaction id of the meta in use.
    pub txid: u64,
}

enum Source {
    Bytes(Vec<u8>),
    File(std::fs::File),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("len", &self.len)
            .field("page_size", &self.page_size)
            .field("txid", &self.txid)
            .finish()
    }
}

/// Where a B+tree's root is: a page of the file, or an inline page inside a bucket value.
#[derive(Clone, Copy)]
enum Node<'a> {
    Page(u64),
    Inline(&'a [u8]),
}

impl Db {
    /// Opens the database held in `data`.
    pub fn open(data: Vec<u8>) -> Result<Db> {
        let len = data.len() as u64;
        Self::open_source(Source::Bytes(data), len)
    }

    /// Opens the database in the first `len` bytes of `file`, reading pages as they are needed.
    pub fn open_file(file: std::fs::File, len: u64) -> Result<Db> {
        Self::open_source(Source::File(file), len)
    }

    /// Validates the two meta pages and uses the newer valid one (as bbolt does).
    fn open_source(source: Source, len: u64) -> Result<Db> {
        let mut db = Db { source, len, page_size: super::PAGE_SIZE, root: 0, txid: 0 };
        let meta_at = |db: &Db, at: u64| -> std::result::Result<Meta, String> {
            let bytes = db.read(at + PAGE_HEADER as u64, super::META_SIZE).map_err(|e| e.to_string())?;
            Meta::decode(&bytes)
        };
        let first = meta_at(&db, 0);
        // Page 1 sits one page further; its size is in page 0's meta, or etcd's 4096 if that is torn.
        let page_size = first.as_ref().map(|m| m.page_size as u64).unwrap_or(super::PAGE_SIZE as u64);
        let second = meta_at(&db, page_size);
        let meta = match (first, second) {
            (Ok(a), Ok(b)) => Ok(if b.txid > a.txid { b } else { a }),
            (Ok(m), Err(_)) | (Err(_), Ok(m)) => Ok(m),
            (Err(e), Err(_)) => Err(corrupt(e)),
        }?;
        if (meta.page_size as usize) < 1024 || !(meta.page_size as usize).is_power_of_two() {
            return Err(corrupt(format!("invalid page size {}", meta.page_size)));
        }
        if len < meta.pgid.saturating_mul(meta.page_size as u64) {
            return Err(corrupt(format!("file is {len} bytes, its meta names {} pages", meta.pgid)));
        }
        (db.page_size, db.root, db.txid) = (meta.page_size as usize, meta.root, meta.txid);
        Ok(db)
    }

    /// `len` bytes at `at`, which must lie within the database.
    fn read(&self, at: u64, len: usize) -> Result<Cow<'_, [u8]>> {
        if at.checked_add(len as u64).is_none_or(|end| end > self.len) {
            return Err(corrupt(format!("read of {len} bytes at {at} is beyond the database")));
        }
        match &self.source {
            Source::Bytes(data) => Ok(Cow::Borrowed(&data[at as usize..at as usize + len])),
            Source::File(file) => {
                let mut buf = vec![0u8; len];
                file.read_exact_at(&mut buf, at).map_err(|e| corrupt(format!("read at {at}: {e}")))?;
                Ok(Cow::Owned(buf))
            }
        }
    }

    /// The names of the top-level buckets, in order.
    pub fn buckets(&self) -> Result<Vec<Vec<u8>>> {
        let mut names = Vec::new();
        self.walk(Node::Page(self.root), &mut |flags, k, _| {
            if flags & BUCKET_FLAG != 0 {
                names.push(k.to_vec());
            }
            Ok(())
        })?;
        Ok(names)
    }

    /// Visits every key and value of top-level bucket `name` in key order (nested buckets are
    /// skipped). Returns `false` if there is no such bucket.
    pub fn for_each(&self, name: &[u8], visit: &mut super::Visit<'_>) -> Result<bool> {
        let mut header = None;
        self.walk(Node::Page(self.root), &mut |flags, k, v| {
            if flags & BUCKET_FLAG != 0 && k == name {
                header = Some(v.to_vec());
            }
            Ok(())
        })?;
        let Some(header) = header else { return Ok(false) };
        if header.len() < BUCKET_HEADER {
            return Err(corrupt("bucket header too short"));
        }
        let root = u64_at(&header, 0);
        let node = if root == 0 { Node::Inline(&header[BUCKET_HEADER..]) } else { Node::Page(root) };
        self.walk(node, &mut |flags, k, v| if flags & BUCKET_FLAG == 0 { visit(k, v) } else { Ok(()) })?;
        Ok(true)
    }

    /// The bytes of the node: a page with its overflow pages, or the inline page.
    fn node<'a>(&'a self, node: Node<'a>) -> Result<Cow<'a, [u8]>> {
        match node {
            Node::Inline(bytes) => Ok(Cow::Borrowed(bytes)),
            Node::Page(id) => {
                let start = id.checked_mul(self.page_size as u64).ok_or_else(|| corrupt(format!("page {id}")))?;
                let overflow = u32_at(&self.read(start, PAGE_HEADER)?, 12) as u64;
                let size = ((overflow + 1) * self.page_size as u64).min(self.len.saturating_sub(start));
                self.read(start, size as usize)
            }
        }
    }

    /// Visits the leaf elements under `node` in key order as (flags, key, value).
    fn walk<'a>(&'a self, node: Node<'a>, visit: &mut ElementVisit<'_>) -> Result<()> {
        let page = self.node(node)?;
        let page = &*page;
        if page.len() < PAGE_HEADER {
            return Err(corrupt("truncated page"));
        }
        let (flags, count) = (u16_at(page, 8), u16_at(page, 10) as usize);
        let slice = |at: usize, len: usize| page.get(at..at + len).ok_or_else(|| corrupt("element beyond its page"));
        for i in 0..count {
            let e = PAGE_HEADER + i * ELEMENT;
            let elem = slice(e, ELEMENT)?;
            if flags & LEAF != 0 {
                let (eflags, pos, ks, vs) =
                    (u32_at(elem, 0), u32_at(elem, 4) as usize, u32_at(elem, 8) as usize, u32_at(elem, 12) as usize);
                visit(eflags, slice(e + pos, ks)?, slice(e + pos + ks, vs)?)?;
            } else if flags & BRANCH != 0 {
                let child = u64_at(elem, 8);
                if matches!(node, Node::Page(id) if id == child) {
                    return Err(corrupt(format!("branch page {child} points at itself")));
                }
                self.walk(Node::Page(child), visit)?;
            } else {
                return Err(corrupt(format!("unexpected page flags {flags:#x} in a tree")));
            }
        }
        Ok(())
    }
}
