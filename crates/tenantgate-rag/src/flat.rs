//! An exact-scanned segment: the chunks added to a knowledge base since its HNSW index was
//! built. A graph cannot take inserts (instant-distance builds only), so new chunks are
//! searchable at once here, scanned in full, until a merge rebuilds the graph with them.
//! Kept small (thousands of chunks: one pass over contiguous vectors, about a millisecond per
//! 10,000 x 384), it costs less than the graph search it is merged with.

use crate::index::{dot, normalize, Hit};
use crate::RagError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Flat {
    dims: usize,
    ids: Vec<i64>,
    /// `ids.len() * dims` normalised components, row after row.
    vectors: Vec<f32>,
}

impl Flat {
    /// A segment of `(chunk id, embedding)` pairs; every embedding must have `dims`
    /// dimensions.
    pub fn new(dims: usize, points: Vec<(i64, Vec<f32>)>) -> Result<Flat, RagError> {
        let mut ids = Vec::with_capacity(points.len());
        let mut vectors = Vec::with_capacity(points.len() * dims);
        for (id, mut v) in points {
            if v.len() != dims {
                return Err(RagError::Dimensions {
                    want: dims,
                    got: v.len(),
                });
            }
            normalize(&mut v);
            ids.push(id);
            vectors.extend_from_slice(&v);
        }
        Ok(Flat { dims, ids, vectors })
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Every point: its chunk id and normalised embedding.
    pub fn points(&self) -> impl Iterator<Item = (i64, &[f32])> {
        // `max(1)`: a zero-dimension segment holds no vectors to chunk.
        self.ids
            .iter()
            .copied()
            .zip(self.vectors.chunks_exact(self.dims.max(1)))
    }

    pub fn memory_bytes(&self) -> usize {
        self.ids.len() * (8 + self.dims * 4) + 64
    }

    /// The `k` most similar points to `query` (already normalised) pushed into `top`, which
    /// stays sorted, most similar first, and at most `k` long.
    pub fn search_into(&self, query: &[f32], k: usize, top: &mut Vec<Hit>) -> Result<(), RagError> {
        if query.len() != self.dims {
            return Err(RagError::Dimensions {
                want: self.dims,
                got: query.len(),
            });
        }
        for (id, v) in self.points() {
            let score = dot(query, v);
            push_top(top, k, Hit { id, score });
        }
        Ok(())
    }
}

/// Inserts `hit` into `top` (sorted, most similar first) if it is among the `k` best.
pub fn push_top(top: &mut Vec<Hit>, k: usize, hit: Hit) {
    if k == 0 || (top.len() == k && top.last().is_some_and(|w| w.score >= hit.score)) {
        return;
    }
    let at = top.partition_point(|h| h.score >= hit.score);
    top.insert(at, hit);
    top.truncate(k);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exact_search;

    #[test]
    fn agrees_with_exact_search_and_keeps_the_best_k() {
        let pts: Vec<(i64, Vec<f32>)> = (0..200)
            .map(|i| {
                let v = (0..8)
                    .map(|d| ((i * 7 + d * 13) % 17) as f32 - 8.0)
                    .collect();
                (i as i64, v)
            })
            .collect();
        let flat = Flat::new(8, pts.clone()).unwrap();
        assert_eq!((flat.len(), flat.dims()), (200, 8));
        let mut q = pts[31].1.clone();
        let want: Vec<i64> = exact_search(&pts, &q, 5).iter().map(|h| h.id).collect();
        normalize(&mut q);
        let mut top = Vec::new();
        flat.search_into(&q, 5, &mut top).unwrap();
        let scores: Vec<f32> = top.iter().map(|h| h.score).collect();
        assert_eq!(top.len(), 5);
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
        // ties (equal vectors) may order differently; the best is the query's own point
        assert!((top[0].score - 1.0).abs() < 1e-5);
        assert!((top[0].score - exact_search(&pts, &pts[31].1, 1)[0].score).abs() < 1e-5);
        assert!(want.contains(&top[0].id));
        assert!(matches!(
            flat.search_into(&[1.0; 3], 5, &mut top),
            Err(RagError::Dimensions { want: 8, got: 3 })
        ));
        assert!(Flat::new(8, vec![(1, vec![0.0; 2])]).is_err());
    }

    #[test]
    fn push_top_keeps_k_sorted() {
        let mut top = Vec::new();
        for (id, score) in [(1, 0.1), (2, 0.9), (3, 0.5), (4, 0.7), (5, 0.05)] {
            push_top(&mut top, 3, Hit { id, score });
        }
        let ids: Vec<i64> = top.iter().map(|h| h.id).collect();
        assert_eq!(ids, vec![2, 4, 3]);
    }
}
