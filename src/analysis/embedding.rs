//! t-SNE of a layer's features over a dataset (van der Maaten & Hinton 2008), with the
//! `bhtsne` crate's FIt-SNE (Linderman et al. 2019: the algorithm openTSNE defaults to),
//! started as openTSNE starts: from the first two principal components, scaled to a
//! standard deviation of 1e-4. Seeded: the same features and seed give the same points.

use bhtsne::{tSNE, Neighbor};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

/// Optimisation steps, as openTSNE: 250 with early exaggeration, then 750.
const EPOCHS: usize = 1000;

/// The first two principal components of `x` (`n × dim`, example-major) per example,
/// `n × 2`: power iteration with deflation, from a seeded start, on the smaller of the
/// covariance (`dim × dim`) and Gram (`n × n`) matrices, each one matrix product.
pub fn pca2(x: &[f32], n: usize, dim: usize, seed: u64) -> crate::error::Result<Vec<f64>> {
    let mut mean = vec![0f64; dim];
    for row in x.chunks(dim) {
        mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    let c: Vec<f32> = x
        .chunks(dim)
        .flat_map(|row| row.iter().zip(&mean).map(|(&v, m)| (v as f64 - m) as f32))
        .collect();
    let t = Tensor::from_vec(c, (n, dim), &Device::Cpu)?;
    let by_covariance = dim <= n;
    let m = if by_covariance {
        t.t()?.matmul(&t)?
    } else {
        t.matmul(&t.t()?)?
    };
    let side = if by_covariance { dim } else { n };
    let m: Vec<f64> = m.flatten_all()?.to_vec1::<f32>()?.into_iter().map(f64::from).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut comps: Vec<(Vec<f64>, f64)> = Vec::new();
    for _ in 0..2 {
        let mut v: Vec<f64> = (0..side).map(|_| StandardNormal.sample(&mut rng)).collect();
        let mut lambda = 0.0;
        for _ in 0..500 {
            let mut w: Vec<f64> = m
                .chunks(side)
                .map(|row| row.iter().zip(&v).map(|(a, b)| a * b).sum())
                .collect();
            for (p, _) in &comps {
                let d: f64 = w.iter().zip(p).map(|(a, b)| a * b).sum();
                w.iter_mut().zip(p).for_each(|(a, b)| *a -= d * b);
            }
            let norm = w.iter().map(|a| a * a).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            w.iter_mut().for_each(|a| *a /= norm);
            let change: f64 = w.iter().zip(&v).map(|(a, b)| (a - b).abs()).sum();
            v = w;
            lambda = norm;
            if change < 1e-10 * side as f64 {
                break;
            }
        }
        comps.push((v, lambda));
    }
    let xs = t.flatten_all()?.to_vec1::<f32>()?;
    Ok((0..n)
        .flat_map(|i| {
            let row = &xs[i * dim..(i + 1) * dim];
            comps
                .iter()
                .map(move |(p, l)| {
                    if by_covariance {
                        row.iter().zip(p).map(|(&a, b)| a as f64 * b).sum::<f64>()
                    } else {
                        // The Gram matrix's eigenvectors are the scores, up to √λ.
                        p[i] * l.sqrt()
                    }
                })
                .collect::<Vec<f64>>()
        })
        .collect())
}

/// Every example's `k` nearest others by Euclidean distance, nearest first (ties by
/// index), exactly: from the Gram matrix, one matrix product.
pub fn neighbours(x: &[f32], n: usize, dim: usize, k: usize) -> crate::error::Result<Vec<Vec<Neighbor<f32>>>> {
    let t = Tensor::from_slice(x, (n, dim), &Device::Cpu)?;
    let gram = t.matmul(&t.t()?)?.flatten_all()?.to_vec1::<f32>()?;
    let norms: Vec<f32> = (0..n).map(|i| gram[i * n + i]).collect();
    Ok((0..n)
        .into_par_iter()
        .map(|i| {
            let row = &gram[i * n..(i + 1) * n];
            let mut d: Vec<(f32, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| ((norms[i] + norms[j] - 2.0 * row[j]).max(0.0).sqrt(), j))
                .collect();
            let kk = k.min(d.len());
            let cmp = |a: &(f32, usize), b: &(f32, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
            if kk < d.len() {
                d.select_nth_unstable_by(kk, cmp);
                d.truncate(kk);
            }
            d.sort_by(cmp);
            d.into_iter()
                .map(|(distance, index)| Neighbor { index, distance })
                .collect()
        })
        .collect())
}

/// The t-SNE embedding of `x` (`n × dim`), `n × 2`, in dataset order. The perplexity
/// must be below `(n − 1) / 3` (checked by the caller).
pub fn tsne(x: &[f32], n: usize, dim: usize, perplexity: f64, seed: u64) -> crate::error::Result<Vec<f32>> {
    let mut init = pca2(x, n, dim, seed)?;
    let sd = {
        let m = init.iter().step_by(2).sum::<f64>() / n as f64;
        (init.iter().step_by(2).map(|v| (v - m) * (v - m)).sum::<f64>() / n as f64).sqrt()
    };
    let scale = if sd > 0.0 { 1e-4 / sd } else { 1.0 };
    init.iter_mut().for_each(|v| *v *= scale);
    // As the crate's own search: 3 × perplexity neighbours.
    let near = neighbours(x, n, dim, (3.0 * perplexity) as usize)?;
    let samples: Vec<&[f32]> = x.chunks(dim).collect();
    // The crate's parallel sums are split as rayon's work stealing goes, so their rounding
    // varies from run to run: one thread makes the result reproducible (embeddings of
    // different layers still run side by side).
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| crate::error::Error::msg(format!("t-SNE: cannot start its thread: {e}")))?;
    Ok(one.install(|| {
        let mut t: tSNE<f32, &[f32], 2> = tSNE::new(&samples);
        t.perplexity(perplexity as f32)
            .epochs(EPOCHS)
            .initial_embedding(init.iter().map(|&v| v as f32).collect::<Vec<f32>>())
            .fit_sne_with_neighbors(&near);
        t.embedding()
    }))
}

/// The share of points whose 10 nearest other points (in the embedding) vote for their own
/// class (leave-one-out; a tie goes to the smaller class index, as scikit-learn's).
pub fn knn_accuracy(points: &[f32], labels: &[usize], k: usize) -> f64 {
    let n = labels.len();
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let mut right = 0;
    let mut d: Vec<(f32, usize)> = Vec::with_capacity(n);
    for i in 0..n {
        d.clear();
        let (xi, yi) = (points[2 * i], points[2 * i + 1]);
        for j in (0..n).filter(|&j| j != i) {
            let (dx, dy) = (points[2 * j] - xi, points[2 * j + 1] - yi);
            d.push((dx * dx + dy * dy, j));
        }
        let kk = k.min(d.len());
        if kk == 0 {
            continue;
        }
        d.select_nth_unstable_by(kk - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut votes = vec![0usize; classes];
        for &(_, j) in &d[..kk] {
            votes[labels[j]] += 1;
        }
        let best = (0..classes)
            .max_by_key(|&c| (votes[c], std::cmp::Reverse(c)))
            .unwrap_or(0);
        right += (best == labels[i]) as usize;
    }
    right as f64 / n.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two well-separated blobs in 10-D: the same embedding twice for one seed, and the
    /// blobs stay apart in 2-D.
    #[test]
    fn tsne_is_deterministic_and_separates_blobs() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (n, dim) = (120, 10);
        let labels: Vec<usize> = (0..n).map(|i| i % 2).collect();
        let x: Vec<f32> = (0..n)
            .flat_map(|i| {
                let off = if labels[i] == 1 { 8.0 } else { 0.0 };
                (0..dim)
                    .map(|_| {
                        let v: f64 = StandardNormal.sample(&mut rng);
                        off + v as f32
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let a = tsne(&x, n, dim, 10.0, 0).unwrap();
        let b = tsne(&x, n, dim, 10.0, 0).unwrap();
        assert_eq!(a.len(), 2 * n);
        assert_eq!(a, b, "same seed, same points");
        assert!(a.iter().all(|v| v.is_finite()));
        assert_eq!(knn_accuracy(&a, &labels, 10), 1.0);
    }

    #[test]
    fn knn_accuracy_of_known_points() {
        // Three points of class 0 near the origin, one of class 1 among them: it is outvoted.
        let p = [0.0, 0.0, 0.1, 0.0, 0.0, 0.1, 0.05, 0.05];
        assert_eq!(knn_accuracy(&p, &[0, 0, 0, 1], 3), 0.75);
    }

    #[test]
    fn pca_finds_the_main_axis() {
        // Points along x with a little y: the first component is ±x.
        let x: Vec<f32> = (0..20).flat_map(|i| [i as f32, (i % 2) as f32 * 0.1]).collect();
        let p = pca2(&x, 20, 2, 0).unwrap();
        // Wider than tall: the Gram matrix's way gives the same spread.
        let wide: Vec<f32> = (0..3).flat_map(|i| (0..5).map(move |j| (i * j) as f32)).collect();
        let (a, b) = (pca2(&wide, 3, 5, 0).unwrap(), {
            // The same points, padded with zero columns up to fewer dims than points is not
            // possible here, so compare against the covariance route on the transpose's size.
            pca2(&wide, 3, 5, 1).unwrap()
        });
        for (u, v) in a.iter().zip(&b) {
            assert!((u.abs() - v.abs()).abs() < 1e-6, "{u} {v}");
        }
        let spread = |k: usize| {
            let v: Vec<f64> = p.iter().skip(k).step_by(2).copied().collect();
            v.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b)) - v.iter().fold(f64::INFINITY, |a, &b| a.min(b))
        };
        assert!(spread(0) > 18.0 && spread(1) < 0.2, "{} {}", spread(0), spread(1));
    }
}
