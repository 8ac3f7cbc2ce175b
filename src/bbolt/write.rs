//! Writing a bbolt file once, bottom-up: leaf pages stream out as sorted keys arrive, branch
//! levels follow each bucket, the root bucket and the meta pages come last.

use std::io::{Seek, SeekFrom, Write};

use super::{
    corrupt, Meta, BRANCH, BUCKET_FLAG, BUCKET_HEADER, ELEMENT, LEAF, META, NO_FREELIST, PAGE_HEADER, PAGE_SIZE,
};
use crate::error::{Error, Result};

/// Builds a bbolt file in `out`: add each bucket with [`Writer::bucket`], then [`Writer::finish`].
pub struct Writer<W: Write + Seek> {
    out: W,
    /// The id the next page written gets (pages 0 and 1 are the metas).
    next_page: u64,
    /// Finished top-level buckets: name and root page.
    buckets: Vec<(Vec<u8>, u64)>,
}

/// Adds the keys of one bucket, in strictly ascending order.
pub struct BucketWriter<'w, W: Write + Seek> {
    writer: &'w mut Writer<W>,
    name: Vec<u8>,
    /// The leaf being filled: its elements and their encoded size so far.
    pending: Vec<(Vec<u8>, Vec<u8>)>,
    pending_size: usize,
    /// First key and page of every leaf written so far.
    children: Vec<(Vec<u8>, u64)>,
}

fn io(e: std::io::Error) -> Error {
    Error::Storage(format!("writing bbolt file: {e}"))
}

impl<W: Write + Seek> Writer<W> {
    /// Starts a file at the beginning of `out`, reserving the two meta pages.
    pub fn new(mut out: W) -> Result<Self> {
        out.seek(SeekFrom::Start(0)).map_err(io)?;
        out.write_all(&[0u8; 2 * PAGE_SIZE]).map_err(io)?;
        Ok(Writer { out, next_page: 2, buckets: Vec::new() })
    }

    /// A top-level bucket to fill; buckets may be added in any order, each name once.
    pub fn bucket(&mut self, name: &[u8]) -> BucketWriter<'_, W> {
        BucketWriter { writer: self, name: name.to_vec(), pending: Vec::new(), pending_size: 0, children: Vec::new() }
    }

    /// Writes the root bucket and the meta pages; returns `out` and the file's length in bytes.
    pub fn finish(mut self) -> Result<(W, u64)> {
        let mut buckets = std::mem::take(&mut self.buckets);
        buckets.sort();
        if buckets.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(corrupt("a bucket name was added twice"));
        }
        let elements: Vec<(u32, Vec<u8>, Vec<u8>)> = buckets
            .into_iter()
            .map(|(name, root)| {
                let mut header = vec![0u8; BUCKET_HEADER];
                header[..8].copy_from_slice(&root.to_le_bytes());
                (BUCKET_FLAG, name, header)
            })
            .collect();
        let leaves = self.write_leaves(&elements)?;
        let root = self.write_branches(leaves)?;
        for txid in [2u64, 3] {
            let meta = Meta { page_size: PAGE_SIZE as u32, root, freelist: NO_FREELIST, pgid: self.next_page, txid };
            let id = txid % 2;
            let mut page = vec![0u8; PAGE_SIZE];
            page[..PAGE_HEADER].copy_from_slice(&page_header(id, META, 0, 0));
            page[PAGE_HEADER..PAGE_HEADER + super::META_SIZE].copy_from_slice(&meta.encode());
            self.out.seek(SeekFrom::Start(id * PAGE_SIZE as u64)).map_err(io)?;
            self.out.write_all(&page).map_err(io)?;
        }
        let len = self.next_page * PAGE_SIZE as u64;
        self.out.seek(SeekFrom::Start(len)).map_err(io)?;
        self.out.flush().map_err(io)?;
        Ok((self.out, len))
    }

    /// Writes one node (leaf or branch) of `count` elements from its encoded body; returns its id.
    fn write_node(&mut self, flags: u16, count: usize, body: &[u8]) -> Result<u64> {
        let size = PAGE_HEADER + body.len();
        let pages = size.div_ceil(PAGE_SIZE).max(1);
        let id = self.next_page;
        let mut node = Vec::with_capacity(pages * PAGE_SIZE);
        node.extend_from_slice(&page_header(id, flags, count as u16, (pages - 1) as u32));
        node.extend_from_slice(body);
        node.resize(pages * PAGE_SIZE, 0);
        self.out.seek(SeekFrom::Start(id * PAGE_SIZE as u64)).map_err(io)?;
        self.out.write_all(&node).map_err(io)?;
        self.next_page += pages as u64;
        Ok(id)
    }

    /// Writes `elements` (flags, key, value) as leaves; returns each leaf's first key and page.
    fn write_leaves(&mut self, elements: &[(u32, Vec<u8>, Vec<u8>)]) -> Result<Vec<(Vec<u8>, u64)>> {
        let mut out = Vec::new();
        let sizes: Vec<usize> = elements.iter().map(|(_, k, v)| k.len() + v.len()).collect();
        for group in pack(&sizes) {
            let group = &elements[group];
            let id = self.write_node(LEAF, group.len(), &leaf_body(group))?;
            out.push((group[0].1.clone(), id));
        }
        if out.is_empty() {
            out.push((Vec::new(), self.write_node(LEAF, 0, &[])?));
        }
        Ok(out)
    }

    /// Builds branch levels over `children` until one node remains; returns the root's page.
    fn write_branches(&mut self, mut children: Vec<(Vec<u8>, u64)>) -> Result<u64> {
        while children.len() > 1 {
            let mut parents = Vec::new();
            let sizes: Vec<usize> = children.iter().map(|(k, _)| k.len()).collect();
            for group in pack(&sizes) {
                let group = &children[group];
                let id = self.write_node(BRANCH, group.len(), &branch_body(group))?;
                parents.push((group[0].0.clone(), id));
            }
            children = parents;
        }
        Ok(children[0].1)
    }
}

impl<W: Write + Seek> BucketWriter<'_, W> {
    /// Adds `key` (greater than every key added before) with `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let last = self.pending.last().map(|(k, _)| k).or(self.children.last().map(|(k, _)| k));
        if key.is_empty() || last.is_some_and(|last| key <= last.as_slice()) {
            return Err(corrupt("bucket keys must be non-empty and strictly ascending"));
        }
        let size = ELEMENT + key.len() + value.len();
        if !self.pending.is_empty() && PAGE_HEADER + self.pending_size + size > PAGE_SIZE {
            self.flush()?;
        }
        self.pending.push((key.to_vec(), value.to_vec()));
        self.pending_size += size;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let elements: Vec<(u32, Vec<u8>, Vec<u8>)> = self.pending.drain(..).map(|(k, v)| (0, k, v)).collect();
        let id = self.writer.write_node(LEAF, elements.len(), &leaf_body(&elements))?;
        self.children.push((elements[0].1.clone(), id));
        self.pending_size = 0;
        Ok(())
    }

    /// Writes the rest of the bucket and records it in the file's root bucket.
    pub fn finish(mut self) -> Result<()> {
        if !self.pending.is_empty() || self.children.is_empty() {
            let elements: Vec<(u32, Vec<u8>, Vec<u8>)> = self.pending.drain(..).map(|(k, v)| (0, k, v)).collect();
            let id = self.writer.write_node(LEAF, elements.len(), &leaf_body(&elements))?;
            self.children.push((elements.first().map(|e| e.1.clone()).unwrap_or_default(), id));
        }
        let root = self.writer.write_branches(std::mem::take(&mut self.children))?;
        self.writer.buckets.push((std::mem::take(&mut self.name), root));
        Ok(())
    }
}

/// Splits elements (given their key + value sizes) into consecutive groups that fit a page;
/// an element too large for a page gets a node of its own, spanning overflow pages.
fn pack(sizes: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let (mut start, mut used) = (0, PAGE_HEADER);
    for (i, size) in sizes.iter().enumerate() {
        let size = ELEMENT + size;
        if i > start && used + size > PAGE_SIZE {
            groups.push(start..i);
            (start, used) = (i, PAGE_HEADER);
        }
        used += size;
    }
    if start < sizes.len() {
        groups.push(start..sizes.len());
    }
    groups
}

fn page_header(id: u64, flags: u16, count: u16, overflow: u32) -> [u8; PAGE_HEADER] {
    let mut h = [0u8; PAGE_HEADER];
    h[0..8].copy_from_slice(&id.to_le_bytes());
    h[8..10].copy_from_slice(&flags.to_le_bytes());
    h[10..12].copy_from_slice(&count.to_le_bytes());
    h[12..16].copy_from_slice(&overflow.to_le_bytes());
    h
}

/// Leaf elements, then keys and values; each `pos` counts from its own element.
fn leaf_body(elements: &[(u32, Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut headers = Vec::with_capacity(elements.len() * ELEMENT);
    let mut data = Vec::new();
    for (i, (flags, k, v)) in elements.iter().enumerate() {
        let pos = (elements.len() - i) * ELEMENT + data.len();
        for n in [*flags, pos as u32, k.len() as u32, v.len() as u32] {
            headers.extend_from_slice(&n.to_le_bytes());
        }
        data.extend_from_slice(k);
        data.extend_from_slice(v);
    }
    headers.extend_from_slice(&data);
    headers
}

/// Branch elements (`pos`, key size, child page), then the keys.
fn branch_body(children: &[(Vec<u8>, u64)]) -> Vec<u8> {
    let mut headers = Vec::with_capacity(children.len() * ELEMENT);
    let mut data = Vec::new();
    for (i, (k, page)) in children.iter().enumerate() {
        let pos = (children.len() - i) * ELEMENT + data.len();
        headers.extend_from_slice(&(pos as u32).to_le_bytes());
        headers.extend_from_slice(&(k.len() as u32).to_le_bytes());
        headers.extend_from_slice(&page.to_le_bytes());
        data.extend_from_slice(k);
    }
    headers.extend_from_slice(&data);
    headers
}
