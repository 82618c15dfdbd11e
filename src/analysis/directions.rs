//! Units against random directions of the same activation space (Szegedy et al. 2013:
//! "Intriguing properties of neural networks", §3): the examples a direction selects, the
//! class purity of its top examples, and what the network loses when k units are zeroed
//! or k random directions projected out.

use candle_core::Tensor;
use rand::{seq::SliceRandom, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::activations::{predict, EditFn, LayerActivations};
use crate::error::Result;
use crate::models::Model;

/// `count` seeded random unit-norm directions in `dim` dimensions, `count × dim`.
pub fn random_directions(dim: usize, count: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(count * dim);
    for _ in 0..count {
        let v: Vec<f64> = (0..dim).map(|_| StandardNormal.sample(&mut rng)).collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
        out.extend(v.iter().map(|x| (x / norm) as f32));
    }
    out
}

/// Each direction's score per example: the projection of the unit vector (a conv layer's
/// channel vector at every position) onto the direction, its spatial maximum for a conv
/// layer. `N × count`, example-major.
pub fn project(l: &LayerActivations, dirs: &[f32]) -> Vec<f32> {
    let (u, p, n) = (l.units(), l.positions(), l.len());
    let count = dirs.len() / u;
    let mut out = vec![0f32; n * count];
    for i in 0..n {
        let ex = l.example(i);
        for d in 0..count {
            let dir = &dirs[d * u..(d + 1) * u];
            let mut best = f32::NEG_INFINITY;
            for pos in 0..p {
                let s: f32 = dir.iter().enumerate().map(|(k, w)| w * ex[k * p + pos]).sum();
                best = best.max(s);
            }
            out[i * count + d] = best;
        }
    }
    out
}

/// An orthonormal basis of the first `k` rows of `dirs` (`count × dim`), by modified
/// Gram–Schmidt with a second pass; rows that add no new direction are dropped.
pub fn orthonormal(dirs: &[f32], dim: usize, k: usize) -> Vec<Vec<f64>> {
    let mut basis: Vec<Vec<f64>> = Vec::new();
    for r in 0..k {
        let mut v: Vec<f64> = dirs[r * dim..(r + 1) * dim].iter().map(|&x| x as f64).collect();
        for _ in 0..2 {
            for b in &basis {
                let d: f64 = v.iter().zip(b).map(|(x, y)| x * y).sum();
                v.iter_mut().zip(b).for_each(|(x, y)| *x -= d * y);
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 1e-9 {
            basis.push(v.into_iter().map(|x| x / norm).collect());
        }
    }
    basis
}

/// k = 1, 2, 4, … up to 64 and below the layer's units.
pub fn ablation_ks(units: usize) -> Vec<usize> {
    (0..7).map(|e| 1usize << e).filter(|&k| k < units).collect()
}

/// The order in which units are zeroed: a seeded permutation.
pub fn unit_order(units: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..units).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_0bd3));
    order
}

/// Accuracy of `predictions` against `labels`.
pub fn accuracy(predictions: &[usize], labels: &[usize]) -> f64 {
    let right = predictions.iter().zip(labels).filter(|(p, l)| p == l).count();
    right as f64 / labels.len().max(1) as f64
}

/// Random draws the ablation curves average over: one draw of 32 directions of LeNet-5's
/// fc2 leaves between 83% and 97% accuracy, so a single draw says little.
pub const REPEATS: usize = 10;

/// An ablation curve: the mean accuracy per k over the draws, and its smallest and largest.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub mean: Vec<f64>,
    pub min: Vec<f64>,
    pub max: Vec<f64>,
}

impl Curve {
    fn of(runs: &[Vec<f64>]) -> Curve {
        let ks = runs.first().map_or(0, Vec::len);
        let col = |k: usize| runs.iter().map(move |r| r[k]);
        Curve {
            mean: (0..ks).map(|k| col(k).sum::<f64>() / runs.len() as f64).collect(),
            min: (0..ks).map(|k| col(k).fold(f64::INFINITY, f64::min)).collect(),
            max: (0..ks).map(|k| col(k).fold(f64::NEG_INFINITY, f64::max)).collect(),
        }
    }
}

/// The predictions with the layer's output replaced by `edit(output)`: from the layer on
/// when the model can start there (the activations are given), else a whole forward pass
/// with the edit tapped in.
fn predict_edited(model: &dyn Model, x: &Tensor, l: &LayerActivations, edit: &EditFn) -> Result<Vec<usize>> {
    let n = l.len();
    let shape: Vec<usize> = std::iter::once(n).chain(l.shape.iter().copied()).collect();
    let acts = Tensor::from_slice(&l.values, shape, x.device())?;
    let mut out = Vec::with_capacity(n);
    let mut s = 0;
    while s < n {
        let b = 200.min(n - s);
        let edited = edit(&acts.narrow(0, s, b)?)?;
        match model.forward_from(&l.name, &edited, &mut crate::models::Tap::default()) {
            Some(logits) => {
                let p = logits?.argmax(candle_core::D::Minus1)?.to_vec1::<u32>()?;
                out.extend(p.into_iter().map(|v| v as usize));
            }
            None => return predict(model, x, &l.name, edit),
        }
        s += b;
    }
    Ok(out)
}

/// Held-out accuracy after zeroing k units (a seeded random choice) and after projecting
/// out k random directions, for every k of `ks`, averaged over [`REPEATS`] draws (the first
/// draw of directions is `dirs`, `count × units`).
#[allow(clippy::too_many_arguments)]
pub fn ablation(
    model: &dyn Model,
    x: &Tensor,
    labels: &[usize],
    l: &LayerActivations,
    dirs: &[f32],
    ks: &[usize],
    seed: u64,
) -> Result<(Curve, Curve)> {
    let (u, shape) = (l.units(), l.shape.clone());
    let spatial = shape.len() > 1;
    let kmax = ks.last().copied().unwrap_or(0);
    let (mut unit_runs, mut dir_runs) = (Vec::new(), Vec::new());
    for r in 0..REPEATS as u64 {
        let order = unit_order(u, seed.wrapping_add(r));
        let drawn;
        let dirs_r: &[f32] = if r == 0 {
            dirs
        } else {
            drawn = random_directions(u, kmax, seed.wrapping_add(r));
            &drawn
        };
        let (mut units, mut directions) = (Vec::new(), Vec::new());
        for &k in ks {
            let mut keep = vec![1f32; u];
            for &j in &order[..k] {
                keep[j] = 0.0;
            }
            let mask_shape: Vec<usize> = std::iter::once(1)
                .chain(shape.iter().enumerate().map(|(i, &d)| if i == 0 { d } else { 1 }))
                .collect();
            let mask = Tensor::from_vec(keep, mask_shape, x.device())?;
            let zero: EditFn = std::sync::Arc::new(move |t: &Tensor| t.broadcast_mul(&mask));
            units.push(accuracy(&predict_edited(model, x, l, &zero)?, labels));

            // P = I − Q Qᵀ over the unit (channel) space.
            let q = orthonormal(dirs_r, u, k);
            let mut p = vec![0f32; u * u];
            for a in 0..u {
                for b in 0..u {
                    let qq: f64 = q.iter().map(|v| v[a] * v[b]).sum();
                    p[a * u + b] = ((a == b) as u8 as f64 - qq) as f32;
                }
            }
            let p = Tensor::from_vec(p, (u, u), x.device())?;
            let project: EditFn = std::sync::Arc::new(move |t: &Tensor| {
                let p = p.to_dtype(t.dtype())?;
                if spatial {
                    let (b, c, h, w) = t.dims4()?;
                    let flat = t.permute((0, 2, 3, 1))?.reshape((b * h * w, c))?;
                    flat.matmul(&p)?
                        .reshape((b, h, w, c))?
                        .permute((0, 3, 1, 2))?
                        .contiguous()
                } else {
                    t.matmul(&p)
                }
            });
            directions.push(accuracy(&predict_edited(model, x, l, &project)?, labels));
        }
        unit_runs.push(units);
        dir_runs.push(directions);
    }
    Ok((Curve::of(&unit_runs), Curve::of(&dir_runs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_are_unit_norm_seeded_and_orthonormalised() {
        let d = random_directions(5, 4, 7);
        assert_eq!(d, random_directions(5, 4, 7));
        assert_ne!(d, random_directions(5, 4, 8));
        for r in d.chunks(5) {
            assert!((r.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
        }
        let q = orthonormal(&d, 5, 4);
        for (i, a) in q.iter().enumerate() {
            for (j, b) in q.iter().enumerate() {
                let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                assert!((dot - (i == j) as u8 as f64).abs() < 1e-9);
            }
        }
        // A repeated direction adds nothing.
        let twice: Vec<f32> = d[..5].iter().chain(&d[..5]).copied().collect();
        assert_eq!(orthonormal(&twice, 5, 2).len(), 1);
    }

    /// A "network" whose logits are its input, one named layer `h` at the input.
    struct Identity(Vec<crate::models::LayerInfo>);

    impl Model for Identity {
        fn arch(&self) -> &'static str {
            "identity"
        }
        fn layers(&self) -> &[crate::models::LayerInfo] {
            &self.0
        }
        fn num_classes(&self) -> usize {
            4
        }
        fn forward(&self, x: &Tensor, tap: &mut crate::models::Tap) -> candle_core::Result<Tensor> {
            tap.at("h", x.flatten_from(1)?)
        }
        fn forward_from(&self, _: &str, x: &Tensor, _: &mut crate::models::Tap) -> Option<candle_core::Result<Tensor>> {
            Some(Ok(x.clone()))
        }
    }

    /// Four classes, each example the one-hot vector of its class: zeroing unit j makes
    /// class j's examples all-zero, which argmax reads as class 0. So after zeroing a set S
    /// of units the accuracy is 1 − |S ∖ {0}| / 4, per draw.
    #[test]
    fn ablation_of_known_activations() {
        let labels: Vec<usize> = (0..40).map(|i| i % 4).collect();
        let values: Vec<f32> = labels
            .iter()
            .flat_map(|&l| (0..4).map(move |u| (u == l) as u8 as f32))
            .collect();
        let l = LayerActivations {
            name: "h".into(),
            shape: vec![4],
            values: values.clone(),
        };
        let x = Tensor::from_vec(values, (40, 4, 1, 1), &candle_core::Device::Cpu).unwrap();
        let model = Identity(vec![crate::models::LayerInfo::new(
            "h",
            crate::models::LayerKind::Linear,
            vec![4],
        )]);
        let dirs = random_directions(4, 4, 9);
        let ks = ablation_ks(4);
        assert_eq!(ks, vec![1, 2]);
        let (units, directions) = ablation(&model, &x, &labels, &l, &dirs, &ks, 9).unwrap();
        let expected: Vec<f64> = ks
            .iter()
            .map(|&k| {
                let runs: Vec<f64> = (0..REPEATS as u64)
                    .map(|r| {
                        let order = unit_order(4, 9 + r);
                        1.0 - order[..k].iter().filter(|&&j| j != 0).count() as f64 / 4.0
                    })
                    .collect();
                runs.iter().sum::<f64>() / runs.len() as f64
            })
            .collect();
        for (a, b) in units.mean.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-12, "{a} {b}");
        }
        assert!(units.min.iter().zip(&units.mean).all(|(lo, m)| lo <= m));
        // Projecting out directions loses something, and never more than everything.
        assert!(directions.mean.iter().all(|&a| (0.0..=1.0).contains(&a)));
        assert!(directions.mean[1] < 1.0);
        // The whole forward pass with the edit tapped in gives the same predictions.
        let zero: EditFn = std::sync::Arc::new(|t: &Tensor| t.zeros_like());
        assert_eq!(
            predict(&model, &x, "h", &zero).unwrap(),
            predict_edited(&model, &x, &l, &zero).unwrap()
        );
    }

    #[test]
    fn projections_take_the_spatial_maximum() {
        // Two examples, 2 channels × 2 positions.
        let l = LayerActivations {
            name: "x".into(),
            shape: vec![2, 1, 2],
            values: vec![1.0, 3.0, 2.0, 0.0, /* */ -1.0, -2.0, 0.0, 4.0],
        };
        // Direction (1, 0): channel 0's max; (0, 1): channel 1's max.
        assert_eq!(project(&l, &[1.0, 0.0, 0.0, 1.0]), vec![3.0, 2.0, -1.0, 4.0]);
        assert_eq!(ablation_ks(84), vec![1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(ablation_ks(6), vec![1, 2, 4]);
        assert_eq!(accuracy(&[1, 2, 3], &[1, 2, 0]), 2.0 / 3.0);
    }
}
