//! Reading a bbolt file held in memory: validate the metas, walk the root bucket, walk a bucket.

use super::{corrupt, u16_at, u32_at, u64_at, Meta, BRANCH, BUCKET_FLAG, BUCKET_HEADER, ELEMENT, LEAF, PAGE_HEADER};
use crate::error::Result;

/// A visitor of leaf elements: flags, key, value.
type ElementVisit<'a> = dyn FnMut(u32, &[u8], &[u8]) -> Result<()> + 'a;

/// An open bbolt file (its bytes in memory), as of its newest valid meta page.
pub struct Db {
    data: Vec<u8>,
    page_size: usize,
    root: u64,
    /// The transaction id of the meta in use.
    pub txid: u64,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("bytes", &self.data.len())
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
    /// Validates the two meta pages and uses the newer valid one (as bbolt does).
    pub fn open(data: Vec<u8>) -> Result<Db> {
        let first = Meta::decode(data.get(PAGE_HEADER..).unwrap_or_default());
        // Page 1 sits one page further; its size is in page 0's meta, or etcd's 4096 if that is torn.
        let page_size = first.as_ref().map(|m| m.page_size as usize).unwrap_or(super::PAGE_SIZE);
        let second = Meta::decode(data.get(page_size + PAGE_HEADER..).unwrap_or_default());
        let meta = match (first, second) {
            (Ok(a), Ok(b)) => Ok(if b.txid > a.txid { b } else { a }),
            (Ok(m), Err(_)) | (Err(_), Ok(m)) => Ok(m),
            (Err(e), Err(_)) => Err(corrupt(e)),
        }?;
        if (meta.page_size as usize) < 1024 || !(meta.page_size as usize).is_power_of_two() {
            return Err(corrupt(format!("invalid page size {}", meta.page_size)));
        }
        let db = Db { page_size: meta.page_size as usize, root: meta.root, txid: meta.txid, data };
        if (db.data.len() as u64) < meta.pgid.saturating_mul(db.page_size as u64) {
            return Err(corrupt(format!("file is {} bytes, its meta names {} pages", db.data.len(), meta.pgid)));
        }
        Ok(db)
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
    fn node<'a>(&'a self, node: Node<'a>) -> Result<&'a [u8]> {
        match node {
            Node::Inline(bytes) => Ok(bytes),
            Node::Page(id) => {
                let start = (id as usize).checked_mul(self.page_size).filter(|s| s + PAGE_HEADER <= self.data.len());
                let start = start.ok_or_else(|| corrupt(format!("page {id} is beyond the file")))?;
                let overflow = u32_at(&self.data, start + 12) as usize;
                let end = (start + (overflow + 1) * self.page_size).min(self.data.len());
                Ok(&self.data[start..end])
            }
        }
    }

    /// Visits the leaf elements under `node` in key order as (flags, key, value).
    fn walk<'a>(&'a self, node: Node<'a>, visit: &mut ElementVisit<'_>) -> Result<()> {
        let page = self.node(node)?;
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
