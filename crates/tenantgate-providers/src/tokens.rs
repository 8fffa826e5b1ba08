//! Token counting with tiktoken's `o200k_base` BPE (the encoding of current OpenAI models). For
//! other providers' models it is an estimate, used only where the provider reports no usage.

use std::sync::OnceLock;
use tiktoken_rs::CoreBPE;

/// The shared `o200k_base` tokenizer (loaded once).
pub fn bpe() -> &'static CoreBPE {
    static BPE: OnceLock<CoreBPE> = OnceLock::new();
    BPE.get_or_init(|| {
        #[expect(
            clippy::expect_used,
            reason = "the vocabulary is compiled into the binary"
        )]
        tiktoken_rs::o200k_base().expect("embedded o200k_base vocabulary loads")
    })
}

/// Loads the vocabulary now rather than on the first request (it takes tens of milliseconds).
pub fn warm_up() {
    let _ = bpe();
}

pub fn count(text: &str) -> u64 {
    bpe().encode_ordinary(text).len() as u64
}

/// The first `max` tokens of `text`, decoded back to a string, and whether it was cut.
pub fn truncate(text: &str, max: u64) -> (String, bool) {
    let toks = bpe().encode_ordinary(text);
    if toks.len() as u64 <= max {
        return (text.to_owned(), false);
    }
    let cut = &toks[..max as usize];
    (bpe().decode(cut).unwrap_or_default(), true)
}

/// Splits `text` into its token strings (the demo model streams one token per chunk).
pub fn pieces(text: &str) -> Vec<String> {
    let b = bpe();
    b.encode_ordinary(text)
        .into_iter()
        .map(|t| b.decode(&[t]).unwrap_or_default())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_like_tiktoken() {
        // "hello world" is two tokens in o200k_base.
        assert_eq!(super::count("hello world"), 2);
        let (t, cut) = super::truncate("one two three four", 2);
        assert!(cut);
        assert_eq!(super::count(&t), 2);
        assert_eq!(super::pieces("hello world").concat(), "hello world");
    }
}
