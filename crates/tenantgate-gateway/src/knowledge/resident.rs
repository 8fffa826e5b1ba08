//! A knowledge base resident in memory, and its index file, in segments (as vector databases
//! keep them): a base (HNSW graph, built in one pass) over the chunks it was built from, an
//! exact-scanned delta of one segment per document added since, and the documents deleted
//! since, whose chunks the base search skips. An upload or a deletion makes a new `Resident`
//! sharing the base (a few pointers copied, no graph work); a merge, in the background, builds
//! the next base from the base's own vectors and the delta's and swaps it in
//! ([`Resident::rebase`]). Every chunk carries what a hit returns (its payload sealed exactly as
//! the store holds it, its document's name), so a warm search makes no query.

use super::internal;
use crate::error::GatewayError;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tenantgate_rag::{Flat, Hit, Index, IndexParams, RagError};

/// One knowledge base in memory, at `revision`.
#[derive(Clone)]
pub struct Resident {
    base: Arc<Base>,
    /// Documents added since the base was built, one exact-scanned segment each.
    delta: Vec<Arc<Segment>>,
    /// Documents of the base deleted since it was built: their chunks are skipped until a merge
    /// leaves them out.
    deleted: Arc<HashSet<String>>,
    revision: i64,
    bytes: usize,
}

/// The graph and the chunks it was built from.
pub(super) struct Base {
    index: Index,
    chunks: HashMap<i64, Arc<ResidentChunk>>,
    /// Chunks per document.
    docs: HashMap<String, usize>,
    /// Points of the graph whose chunks are not kept: deleted documents' chunks, left out of
    /// the file this base was read from. Skipped like any deleted chunk.
    hidden: usize,
    bytes: usize,
}

/// One document added since the base was built.
pub(super) struct Segment {
    doc_id: String,
    flat: Flat,
    chunks: HashMap<i64, Arc<ResidentChunk>>,
    bytes: usize,
}

/// A chunk as a hit needs it.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct ResidentChunk {
    pub(super) id: i64,
    pub(super) doc_id: String,
    pub(super) ord: u32,
    pub(super) document: String,
    /// Text and embedding, sealed under the chunk's AAD exactly as the store holds it.
    pub(super) sealed: Vec<u8>,
}

impl ResidentChunk {
    fn bytes(&self) -> usize {
        std::mem::size_of::<ResidentChunk>()
            + self.doc_id.len()
            + self.document.len()
            + self.sealed.len()
    }
}

/// An index file's plaintext (the file is this, sealed with the tenant's key as a whole). A
/// file in another format does not decode and is rebuilt.
#[derive(serde::Deserialize)]
struct IndexFile {
    format: u32,
    revision: i64,
    index: Vec<u8>,
    chunks: Vec<ResidentChunk>,
    delta: Vec<SegmentFile>,
    deleted: Vec<String>,
}

#[derive(serde::Deserialize)]
struct SegmentFile {
    doc_id: String,
    flat: Flat,
    chunks: Vec<ResidentChunk>,
}

/// 3: segments (base, delta, deleted documents) and the knowledge base's own revision.
const INDEX_FILE_FORMAT: u32 = 3;

impl Base {
    pub(super) fn new(index: Index, chunks: Vec<Arc<ResidentChunk>>) -> Base {
        let mut docs: HashMap<String, usize> = HashMap::new();
        for c in &chunks {
            *docs.entry(c.doc_id.clone()).or_default() += 1;
        }
        let bytes = index.memory_bytes() + chunks.iter().map(|c| c.bytes()).sum::<usize>();
        // A base is built with a chunk per point; fewer were read from a file without the
        // deleted documents' chunks.
        let hidden = index.len().saturating_sub(chunks.len());
        Base {
            index,
            chunks: chunks.into_iter().map(|c| (c.id, c)).collect(),
            docs,
            hidden,
            bytes,
        }
    }
}

impl Segment {
    /// One document's chunks with their embeddings.
    pub(super) fn new(
        dims: usize,
        doc_id: String,
        chunks: Vec<(ResidentChunk, Vec<f32>)>,
    ) -> Result<Segment, RagError> {
        let mut points = Vec::with_capacity(chunks.len());
        let mut map = HashMap::with_capacity(chunks.len());
        for (c, v) in chunks {
            points.push((c.id, v));
            map.insert(c.id, Arc::new(c));
        }
        Ok(Segment::from_parts(doc_id, Flat::new(dims, points)?, map))
    }

    fn from_parts(doc_id: String, flat: Flat, chunks: HashMap<i64, Arc<ResidentChunk>>) -> Segment {
        let bytes = flat.memory_bytes() + chunks.values().map(|c| c.bytes()).sum::<usize>();
        Segment {
            doc_id,
            flat,
            chunks,
            bytes,
        }
    }
}

impl Resident {
    pub(super) fn new(base: Base, revision: i64) -> Self {
        Resident::assemble(Arc::new(base), Vec::new(), Arc::default(), revision)
    }

    fn assemble(
        base: Arc<Base>,
        delta: Vec<Arc<Segment>>,
        deleted: Arc<HashSet<String>>,
        revision: i64,
    ) -> Self {
        let bytes = base.bytes + delta.iter().map(|s| s.bytes).sum::<usize>();
        Resident {
            base,
            delta,
            deleted,
            revision,
            bytes,
        }
    }

    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Memory held: the graph and vectors, and the chunks' payloads.
    pub fn memory_bytes(&self) -> usize {
        self.bytes
    }

    /// Chunks searched exactly (added since the base was built).
    pub fn delta_chunks(&self) -> usize {
        self.delta.iter().map(|s| s.flat.len()).sum()
    }

    /// Chunks of the base that belong to deleted documents (skipped by every search).
    pub fn deleted_chunks(&self) -> usize {
        self.base.hidden
            + self
                .deleted
                .iter()
                .filter_map(|d| self.base.docs.get(d))
                .sum::<usize>()
    }

    /// Whether a merge should rebuild the base: the exact scan or the skipped share grew past
    /// `merge_after` chunks, or deleted chunks are a quarter of the base (past that, the
    /// graph's `ef_search` candidates hold too few live ones for recall).
    pub fn needs_merge(&self, merge_after: usize) -> bool {
        let (delta, deleted) = (self.delta_chunks(), self.deleted_chunks());
        delta + deleted >= merge_after.max(1) || deleted * 4 > self.base.index.len()
    }

    /// The documents it holds.
    pub(super) fn documents(&self) -> HashSet<&str> {
        self.base
            .docs
            .keys()
            .filter(|d| !self.deleted.contains(*d))
            .map(String::as_str)
            .chain(self.delta.iter().map(|s| s.doc_id.as_str()))
            .collect()
    }

    /// This knowledge base at `revision`, with `added` documents and without `removed` ones.
    /// Nothing of the base is copied.
    pub(super) fn updated(
        &self,
        revision: i64,
        added: Vec<Segment>,
        removed: &HashSet<String>,
    ) -> Resident {
        let mut delta: Vec<Arc<Segment>> = self
            .delta
            .iter()
            .filter(|s| !removed.contains(&s.doc_id))
            .cloned()
            .collect();
        delta.extend(added.into_iter().map(Arc::new));
        let in_base: Vec<&String> = removed
            .iter()
            .filter(|d| self.base.docs.contains_key(*d))
            .collect();
        let deleted = if in_base.is_empty() {
            self.deleted.clone()
        } else {
            let mut d = (*self.deleted).clone();
            d.extend(in_base.into_iter().cloned());
            Arc::new(d)
        };
        Resident::assemble(self.base.clone(), delta, deleted, revision)
    }

    /// The next base: the live chunks of the base and the delta in one graph, built from the
    /// vectors already in memory (no decryption). CPU-bound: run it off the async workers.
    pub(super) fn merged_base(&self, params: IndexParams) -> Result<Base, RagError> {
        let live = |id: i64| {
            self.base
                .chunks
                .get(&id)
                .is_some_and(|c| !self.deleted.contains(&c.doc_id))
        };
        let mut points: Vec<(i64, Vec<f32>)> =
            Vec::with_capacity(self.base.index.len() + self.delta_chunks());
        let mut chunks = Vec::with_capacity(points.capacity());
        for (id, v) in self.base.index.points().filter(|(id, _)| live(*id)) {
            points.push((id, v.to_vec()));
            if let Some(c) = self.base.chunks.get(&id) {
                chunks.push(c.clone());
            }
        }
        for s in &self.delta {
            points.extend(s.flat.points().map(|(id, v)| (id, v.to_vec())));
            chunks.extend(s.chunks.values().cloned());
        }
        let index = Index::build(self.base.index.dims(), self.revision, points, params)?;
        Ok(Base::new(index, chunks))
    }

    /// `self` (the resident now) on `base`, a merge of `merged` (the resident the merge
    /// started from): what the merge took in leaves the delta, what was deleted since stays
    /// skipped. `None` if `self` is not on `merged`'s base any more (rebuilt meanwhile), so
    /// the merge is dropped.
    pub(super) fn rebase(&self, merged: &Resident, base: Base) -> Option<Resident> {
        if !Arc::ptr_eq(&self.base, &merged.base) {
            return None;
        }
        let now: HashSet<&str> = self.delta.iter().map(|s| s.doc_id.as_str()).collect();
        let taken: HashSet<&str> = merged.delta.iter().map(|s| s.doc_id.as_str()).collect();
        let delta = self
            .delta
            .iter()
            .filter(|s| !taken.contains(s.doc_id.as_str()))
            .cloned()
            .collect();
        // Deleted since the merge started: in the new base, so skipped there.
        let deleted: HashSet<String> = self
            .deleted
            .iter()
            .filter(|d| !merged.deleted.contains(*d))
            .cloned()
            .chain(
                taken
                    .iter()
                    .filter(|d| !now.contains(**d))
                    .map(|d| (*d).to_owned()),
            )
            .collect();
        Some(Resident::assemble(
            Arc::new(base),
            delta,
            Arc::new(deleted),
            self.revision,
        ))
    }

    /// The `k` nearest live chunks to `query`, most similar first: the base's graph search
    /// (deleted documents skipped) merged with an exact scan of the delta.
    pub(super) fn search(
        &self,
        query: &[f32],
        k: usize,
    ) -> Result<Vec<(Hit, Arc<ResidentChunk>)>, RagError> {
        let mut q = query.to_vec();
        tenantgate_rag::normalize(&mut q);
        let deleted = &self.deleted;
        let base = &self.base;
        let hits = base.index.search_normalized(&q, k, |id| {
            (deleted.is_empty() && base.hidden == 0)
                || base
                    .chunks
                    .get(&id)
                    .is_some_and(|c| !deleted.contains(&c.doc_id))
        })?;
        // (hit, segment: None for the base), best first.
        let mut top: Vec<(Hit, Option<usize>)> = hits.into_iter().map(|h| (h, None)).collect();
        let mut seg_top = Vec::with_capacity(k);
        for (i, s) in self.delta.iter().enumerate() {
            seg_top.clear();
            s.flat.search_into(&q, k, &mut seg_top)?;
            for h in &seg_top {
                if top.len() == k && top.last().is_some_and(|(w, _)| w.score >= h.score) {
                    break;
                }
                let at = top.partition_point(|(t, _)| t.score >= h.score);
                top.insert(at, (*h, Some(i)));
                top.truncate(k);
            }
        }
        top.into_iter()
            .map(|(h, src)| {
                let c = match src {
                    None => base.chunks.get(&h.id),
                    Some(i) => self.delta.get(i).and_then(|s| s.chunks.get(&h.id)),
                };
                // The index and its chunks are built together; a hit without one is a bug.
                c.map(|c| (h, c.clone()))
                    .ok_or_else(|| RagError::Corrupt("index hit without its chunk".into()))
            })
            .collect()
    }

    /// The index file: deleted documents' chunks (their sealed text) are left out, so a
    /// deletion leaves the disk as soon as the file is rewritten, not at the next merge; the
    /// graph keeps their points (skipped) until a merge.
    pub(super) fn to_file(&self) -> Result<Vec<u8>, GatewayError> {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            format: u32,
            revision: i64,
            index: Vec<u8>,
            chunks: Vec<&'a ResidentChunk>,
            delta: Vec<SegOut<'a>>,
            deleted: Vec<&'a String>,
        }
        #[derive(serde::Serialize)]
        struct SegOut<'a> {
            doc_id: &'a str,
            flat: &'a Flat,
            chunks: Vec<&'a ResidentChunk>,
        }
        fn sorted(m: &HashMap<i64, Arc<ResidentChunk>>) -> Vec<&ResidentChunk> {
            let mut v: Vec<&ResidentChunk> = m.values().map(|c| &**c).collect();
            v.sort_by_key(|c| c.id);
            v
        }
        bincode::serialize(&Out {
            format: INDEX_FILE_FORMAT,
            revision: self.revision,
            index: self.base.index.to_bytes().map_err(internal)?,
            chunks: sorted(&self.base.chunks)
                .into_iter()
                .filter(|c| !self.deleted.contains(&c.doc_id))
                .collect(),
            delta: self
                .delta
                .iter()
                .map(|s| SegOut {
                    doc_id: &s.doc_id,
                    flat: &s.flat,
                    chunks: sorted(&s.chunks),
                })
                .collect(),
            deleted: self.deleted.iter().collect(),
        })
        .map_err(internal)
    }

    pub(super) fn from_file(bytes: &[u8]) -> Option<Resident> {
        let f: IndexFile = bincode::deserialize(bytes).ok()?;
        if f.format != INDEX_FILE_FORMAT {
            return None;
        }
        let index = Index::from_bytes(&f.index).ok()?;
        let base = Base::new(index, f.chunks.into_iter().map(Arc::new).collect());
        let delta = f
            .delta
            .into_iter()
            .map(|s| {
                let chunks = s.chunks.into_iter().map(|c| (c.id, Arc::new(c))).collect();
                Arc::new(Segment::from_parts(s.doc_id, s.flat, chunks))
            })
            .collect();
        Some(Resident::assemble(
            Arc::new(base),
            delta,
            Arc::new(f.deleted.into_iter().collect()),
            f.revision,
        ))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::knowledge) fn chunk(id: i64, doc: &str, ord: u32) -> ResidentChunk {
        ResidentChunk {
            id,
            doc_id: doc.into(),
            ord,
            document: format!("{doc}.md"),
            sealed: vec![ord as u8; 5],
        }
    }

    pub(in crate::knowledge) fn base() -> Resident {
        let points = vec![(7, vec![1.0, 0.0]), (9, vec![0.0, 1.0])];
        let index = Index::build(2, 3, points, IndexParams::default()).unwrap();
        let chunks = vec![
            Arc::new(chunk(7, "doc_1", 0)),
            Arc::new(chunk(9, "doc_1", 1)),
        ];
        Resident::new(Base::new(index, chunks), 3)
    }

    fn ids(r: &Resident, q: &[f32], k: usize) -> Vec<i64> {
        r.search(q, k).unwrap().iter().map(|(h, _)| h.id).collect()
    }

    #[test]
    fn an_index_file_carries_its_segments_and_an_old_one_is_rebuilt() {
        let r = base();
        let old_format = r.base.index.to_bytes().unwrap();
        let seg = Segment::new(
            2,
            "doc_2".into(),
            vec![(chunk(11, "doc_2", 0), vec![1.0, 1.0])],
        )
        .unwrap();
        let r = r.updated(4, vec![seg], &HashSet::new());
        let back = Resident::from_file(&r.to_file().unwrap()).unwrap();
        assert_eq!(back.revision(), 4);
        assert_eq!(back.memory_bytes(), r.memory_bytes());
        let (h, c) = &back.search(&[0.0, 1.0], 1).unwrap()[0];
        assert_eq!(
            (h.id, c.ord, c.document.as_str(), &c.sealed[..]),
            (9, 1, "doc_1.md", &[1u8; 5][..])
        );
        assert_eq!(ids(&back, &[1.0, 1.0], 1), vec![11]);
        // A file written before chunks were kept in it (the bare index) is not taken.
        assert!(Resident::from_file(&old_format).is_none());
    }

    #[test]
    fn a_deleted_documents_chunks_are_not_written_to_the_file() {
        let points = vec![
            (7, vec![1.0, 0.0]),
            (9, vec![0.0, 1.0]),
            (10, vec![0.1, 1.0]),
        ];
        let index = Index::build(2, 3, points, IndexParams::default()).unwrap();
        let secret = |id, ord| ResidentChunk {
            sealed: b"ZEPHYR-RIVER".to_vec(),
            ..chunk(id, "doc_s", ord)
        };
        let chunks = vec![
            Arc::new(chunk(7, "doc_1", 0)),
            Arc::new(secret(9, 0)),
            Arc::new(secret(10, 1)),
        ];
        let gone: HashSet<String> = ["doc_s".to_owned()].into();
        let r = Resident::new(Base::new(index, chunks), 3).updated(4, vec![], &gone);
        let file = r.to_file().unwrap();
        assert!(!file.windows(12).any(|w| w == b"ZEPHYR-RIVER"));
        let back = Resident::from_file(&file).unwrap();
        // still counted as deleted (a merge is due as before), never found
        assert_eq!((back.deleted_chunks(), back.revision()), (2, 4));
        assert_eq!(back.needs_merge(10_000), r.needs_merge(10_000));
        assert_eq!(ids(&back, &[0.0, 1.0], 3), vec![7]);
        assert!(back.documents().iter().eq(["doc_1"].iter()));
        // written again, and merged: only doc_1
        let again = Resident::from_file(&back.to_file().unwrap()).unwrap();
        assert_eq!(again.deleted_chunks(), 2);
        let merged = back.merged_base(IndexParams::default()).unwrap();
        assert_eq!((merged.index.len(), merged.hidden), (1, 0));
    }

    #[test]
    fn added_documents_are_found_and_deleted_ones_never_are() {
        let r = base();
        let seg = Segment::new(
            2,
            "doc_2".into(),
            vec![(chunk(11, "doc_2", 0), vec![0.1, 1.0])],
        )
        .unwrap();
        let r = r.updated(4, vec![seg], &HashSet::new());
        assert_eq!(ids(&r, &[0.1, 1.0], 2), vec![11, 9]);
        assert_eq!(r.delta_chunks(), 1);
        let gone: HashSet<String> = ["doc_1".to_owned()].into();
        let r = r.updated(5, vec![], &gone);
        assert_eq!(ids(&r, &[0.0, 1.0], 3), vec![11]);
        assert_eq!((r.deleted_chunks(), r.revision()), (2, 5));
        assert!(r.needs_merge(10_000), "all of the base deleted");
        let gone: HashSet<String> = ["doc_2".to_owned()].into();
        assert!(r
            .updated(6, vec![], &gone)
            .search(&[0.0, 1.0], 3)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_merge_keeps_what_changed_while_it_ran() {
        let seg = |id, doc: &str, v: Vec<f32>| {
            Segment::new(2, doc.into(), vec![(chunk(id, doc, 0), v)]).unwrap()
        };
        let r = base().updated(4, vec![seg(11, "doc_2", vec![0.5, 0.5])], &HashSet::new());
        let snapshot = r.clone();
        let next = snapshot.merged_base(IndexParams::default()).unwrap();
        // meanwhile: doc_3 added, doc_2 (in the merge) and doc_1 (in the old base) deleted
        let gone: HashSet<String> = ["doc_2".to_owned()].into();
        let now = r.updated(5, vec![seg(12, "doc_3", vec![-1.0, 0.0])], &gone);
        let merged = now.rebase(&snapshot, next).unwrap();
        assert_eq!(
            (
                merged.revision(),
                merged.delta_chunks(),
                merged.deleted_chunks()
            ),
            (5, 1, 1)
        );
        assert_eq!(merged.base.index.len(), 3);
        let mut found = ids(&merged, &[0.5, 0.5], 4);
        found.sort_unstable();
        assert_eq!(found, vec![7, 9, 12]);
        // a merge of an older base is dropped
        let other = base();
        assert!(other
            .rebase(
                &snapshot,
                snapshot.merged_base(IndexParams::default()).unwrap()
            )
            .is_none());
    }
}
