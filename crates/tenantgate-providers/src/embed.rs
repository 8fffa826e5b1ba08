//! The demo embedder: signed feature hashing of words and character trigrams into a fixed number
//! of dimensions, L2-normalised. Deterministic and offline; similar texts get similar vectors,
//! which is all the quickstart and tests need.

pub const DEMO_DIMS: usize = 384;

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

pub fn embed(text: &str, dims: usize) -> Vec<f32> {
    let dims = dims.max(1);
    let mut v = vec![0f32; dims];
    let lower = text.to_lowercase();
    let mut add = |feature: &[u8], weight: f32| {
        let h = fnv1a(feature);
        let idx = (h % dims as u64) as usize;
        let sign = if (h >> 63) == 0 { 1.0 } else { -1.0 };
        v[idx] += sign * weight;
    };
    for word in lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        add(word.as_bytes(), 1.0);
        let chars: Vec<char> = format!(" {word} ").chars().collect();
        for w in chars.windows(3) {
            add(w.iter().collect::<String>().as_bytes(), 0.5);
        }
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Little-endian f32 bytes: what OpenAI base64-encodes for `encoding_format: "base64"`.
pub fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn similar_texts_are_closer_than_unrelated_ones() {
        let a = embed("the quarterly revenue report", DEMO_DIMS);
        let b = embed("quarterly revenue reports", DEMO_DIMS);
        let c = embed("a recipe for banana bread", DEMO_DIMS);
        assert!((cos(&a, &a) - 1.0).abs() < 1e-5);
        assert!(cos(&a, &b) > cos(&a, &c) + 0.2);
    }
}
