//! Token-sized chunks (text-splitter with the `o200k_base` tokenizer): split at the largest
//! semantic unit that fits (headings for Markdown; paragraphs, sentences, words otherwise).

use crate::TextKind;
use text_splitter::{ChunkConfig, MarkdownSplitter, TextSplitter};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub text: String,
    /// Byte offset of the chunk in the extracted text.
    pub offset: usize,
    pub tokens: u32,
}

/// Chunks of at most `max_tokens` tokens, consecutive chunks sharing up to `overlap` tokens.
pub fn chunk(text: &str, kind: TextKind, max_tokens: usize, overlap: usize) -> Vec<Chunk> {
    let bpe = tenantgate_providers::tokens::bpe();
    let max_tokens = max_tokens.max(1);
    let config = ChunkConfig::new(max_tokens)
        .with_sizer(bpe)
        .with_overlap(overlap.min(max_tokens - 1))
        .unwrap_or_else(|_| ChunkConfig::new(max_tokens).with_sizer(bpe));
    let pieces: Vec<(usize, &str)> = match kind {
        TextKind::Plain => TextSplitter::new(config).chunk_indices(text).collect(),
        TextKind::Markdown => MarkdownSplitter::new(config).chunk_indices(text).collect(),
    };
    pieces
        .into_iter()
        .map(|(offset, t)| Chunk {
            text: t.to_owned(),
            offset,
            tokens: tenantgate_providers::tokens::count(t) as u32,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_the_token_bound_and_cover_the_text() {
        let text = "Refunds take fourteen days. ".repeat(200);
        let chunks = chunk(&text, TextKind::Plain, 64, 8);
        assert!(chunks.len() > 10);
        assert!(chunks.iter().all(|c| c.tokens <= 64), "{chunks:?}");
        assert_eq!(chunks[0].offset, 0);
        assert!(text.trim_end().ends_with(&chunks.last().unwrap().text));
    }

    #[test]
    fn markdown_splits_at_headings_first() {
        let md = format!(
            "# Refunds\n\n{}\n\n# Shipping\n\n{}",
            "Refunds take fourteen days. ".repeat(10),
            "Parcels ship on Mondays. ".repeat(10)
        );
        let chunks = chunk(&md, TextKind::Markdown, 100, 0);
        assert!(
            chunks.iter().any(|c| c.text.starts_with("# Shipping")),
            "{chunks:?}"
        );
        assert!(chunks
            .iter()
            .all(|c| !(c.text.contains("Refunds") && c.text.contains("Parcels"))));
    }
}
