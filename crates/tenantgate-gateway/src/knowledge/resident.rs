//! A knowledge base resident in memory, and its index file: the HNSW index plus, per chunk,
//! what a hit returns (its payload sealed exactly as the store holds it, its document's name),
//! so a warm search makes no query.

use super::internal;
use crate::error::GatewayError;
use std::collections::HashMap;
use tenantgate_rag::Index;

/// One knowledge base in memory: its index and, per chunk, what a hit returns (the chunk's
/// payload still sealed as stored, its document's name), so a search needs no query.
pub struct Resident {
    pub(super) index: Index,
    pub(super) chunks: HashMap<i64, ResidentChunk>,
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

/// An index file's plaintext (the file is this, sealed with the tenant's key as a whole). A
/// file in another format does not decode and is rebuilt.
#[derive(serde::Serialize, serde::Deserialize)]
struct IndexFile {
    format: u32,
    index: Vec<u8>,
    chunks: Vec<ResidentChunk>,
}

const INDEX_FILE_FORMAT: u32 = 2;

impl Resident {
    pub(super) fn new(index: Index, chunks: Vec<ResidentChunk>) -> Self {
        let bytes = index.memory_bytes()
            + chunks
                .iter()
                .map(|c| {
                    std::mem::size_of::<ResidentChunk>()
                        + c.doc_id.len()
                        + c.document.len()
                        + c.sealed.len()
                })
                .sum::<usize>();
        Resident {
            index,
            chunks: chunks.into_iter().map(|c| (c.id, c)).collect(),
            bytes,
        }
    }

    pub fn revision(&self) -> i64 {
        self.index.revision()
    }

    /// Memory held: the graph and vectors, and the chunks' payloads.
    pub fn memory_bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn to_file(&self) -> Result<Vec<u8>, GatewayError> {
        let mut chunks: Vec<&ResidentChunk> = self.chunks.values().collect();
        chunks.sort_by_key(|c| c.id);
        #[derive(serde::Serialize)]
        struct Out<'a> {
            format: u32,
            index: Vec<u8>,
            chunks: Vec<&'a ResidentChunk>,
        }
        bincode::serialize(&Out {
            format: INDEX_FILE_FORMAT,
            index: self.index.to_bytes().map_err(internal)?,
            chunks,
        })
        .map_err(internal)
    }

    pub(super) fn from_file(bytes: &[u8]) -> Option<Resident> {
        let f: IndexFile = bincode::deserialize(bytes).ok()?;
        if f.format != INDEX_FILE_FORMAT {
            return None;
        }
        let index = Index::from_bytes(&f.index).ok()?;
        Some(Resident::new(index, f.chunks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_file_carries_its_chunks_and_an_old_one_is_rebuilt() {
        let points = vec![(7, vec![1.0, 0.0]), (9, vec![0.0, 1.0])];
        let index = Index::build(2, 3, points, tenantgate_rag::IndexParams::default()).unwrap();
        let old_format = index.to_bytes().unwrap();
        let chunk = |id: i64, ord: u32| ResidentChunk {
            id,
            doc_id: "doc_1".into(),
            ord,
            document: "handbook.md".into(),
            sealed: vec![ord as u8; 5],
        };
        let r = Resident::new(index, vec![chunk(7, 0), chunk(9, 1)]);
        let back = Resident::from_file(&r.to_file().unwrap()).unwrap();
        assert_eq!(back.revision(), 3);
        assert_eq!(back.memory_bytes(), r.memory_bytes());
        let hit = back.index.search(&[0.0, 1.0], 1).unwrap()[0].id;
        let c = &back.chunks[&hit];
        assert_eq!(
            (c.id, c.ord, c.document.as_str(), &c.sealed[..]),
            (9, 1, "handbook.md", &[1u8; 5][..])
        );
        // A file written before chunks were kept in it (the bare index) is not taken.
        assert!(Resident::from_file(&old_format).is_none());
    }
}
