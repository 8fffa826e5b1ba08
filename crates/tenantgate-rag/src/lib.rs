//! Knowledge bases: turning uploaded documents into token-sized chunks, and searching one
//! knowledge base's chunks by embedding with an approximate-nearest-neighbour index.
//!
//! Architecture Invariant: no database, no network, no async. The gateway owns storage (chunk
//! text sealed with the tenant's keys, through the tenant-bound store handle), embedding calls
//! (through the provider layer, admitted and audited), and where index files live.
//! Architecture Invariant: an [`Index`] holds one knowledge base of one tenant; nothing in this
//! crate can search more than one index at a time.

mod chunk;
mod extract;
mod flat;
mod index;

pub use chunk::{chunk, Chunk};
pub use extract::{extract, Extracted, TextKind};
pub use flat::{push_top, Flat};
pub use index::{exact_search, normalize, Hit, Index, IndexParams};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RagError {
    #[error("unsupported document type {0:?}; use text/plain, text/markdown, text/html or application/pdf")]
    UnsupportedType(String),
    #[error("the document could not be read: {0}")]
    Unreadable(String),
    #[error("the document contains no text")]
    Empty,
    #[error("the index file is damaged: {0}")]
    Corrupt(String),
    #[error("the index could not be built: {0}")]
    Build(String),
    #[error("embedding has {got} dimensions, the knowledge base has {want}")]
    Dimensions { want: usize, got: usize },
}
