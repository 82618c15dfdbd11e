//! A model's activations at named layers over a whole dataset, in batches.

use candle_core::{Tensor, D};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::models::{Model, Select, Tap};

/// Examples per forward pass for `h × w` inputs: 200 digits, a few photographs, so that a
/// batch's activations stay in the tens of megabytes.
pub fn batch_for(h: usize, w: usize) -> usize {
    (160_000 / (h * w).max(1)).clamp(1, 200)
}

/// One layer's activations over the dataset.
pub struct LayerActivations {
    pub name: String,
    /// Per example: `[C]` or `[C, H, W]`.
    pub shape: Vec<usize>,
    /// `N × prod(shape)`, example-major.
    pub values: Vec<f32>,
}

impl LayerActivations {
    /// Values per example.
    pub fn size(&self) -> usize {
        self.shape.iter().product()
    }
    /// Units (channels) per example.
    pub fn units(&self) -> usize {
        self.shape[0]
    }
    /// Positions per unit (1 for a vector).
    pub fn positions(&self) -> usize {
        self.shape[1..].iter().product()
    }
    pub fn len(&self) -> usize {
        self.values.len() / self.size().max(1)
    }
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
    pub fn example(&self, i: usize) -> &[f32] {
        let n = self.size();
        &self.values[i * n..(i + 1) * n]
    }
}

/// One batch's activation of a layer: its name, per-example shape and values.
type Kept = (String, Vec<usize>, Vec<f32>);

/// The activations at `layers` and the predicted class of every example of `x` `(N, C, H, W)`.
pub fn collect(model: &dyn Model, x: &Tensor, layers: &[String]) -> Result<(Vec<LayerActivations>, Vec<usize>)> {
    let (n, batch) = (x.dim(0)?, batch_for(x.dim(2)?, x.dim(3)?));
    let starts: Vec<usize> = (0..n).step_by(batch).collect();
    let parts = starts
        .par_iter()
        .map(|&s| -> Result<(Vec<Kept>, Vec<usize>)> {
            let b = x.narrow(0, s, batch.min(n - s))?;
            let mut tap = Tap::new(Select::Only(layers.to_vec()), Select::None);
            let logits = model.forward(&b, &mut tap)?;
            let pred: Vec<usize> = logits
                .argmax(D::Minus1)?
                .to_vec1::<u32>()?
                .into_iter()
                .map(|v| v as usize)
                .collect();
            let acts = tap
                .activations
                .into_iter()
                .map(|(name, t)| -> Result<_> {
                    let shape = t.dims()[1..].to_vec();
                    Ok((name, shape, t.flatten_all()?.to_vec1::<f32>()?))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((acts, pred))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut out: Vec<LayerActivations> = Vec::new();
    let mut predictions = Vec::with_capacity(n);
    for (acts, pred) in parts {
        predictions.extend(pred);
        for (name, shape, values) in acts {
            match out.iter_mut().find(|l| l.name == name) {
                Some(l) => l.values.extend(values),
                None => out.push(LayerActivations { name, shape, values }),
            }
        }
    }
    // In the order asked for; a layer the forward pass never reached is a model error.
    layers
        .iter()
        .map(|name| {
            let i = out
                .iter()
                .position(|l| &l.name == name)
                .ok_or_else(|| Error::msg(format!("layer `{name}` was not reached by the forward pass")))?;
            Ok(out.swap_remove(i))
        })
        .collect::<Result<Vec<_>>>()
        .map(|l| (l, predictions))
}

/// Each unit's score per example: a vector unit's value, a conv unit's spatial maximum,
/// with the position of that maximum (row-major, the first one on ties).
pub struct Scores {
    pub units: usize,
    /// `N × units`, example-major.
    pub score: Vec<f32>,
    /// `N × units`: index into the unit's `H × W` map (0 for a vector).
    pub argmax: Vec<u32>,
}

impl Scores {
    pub fn of(l: &LayerActivations) -> Scores {
        let (u, p) = (l.units(), l.positions());
        let n = l.len();
        let mut score = vec![0f32; n * u];
        let mut argmax = vec![0u32; n * u];
        for i in 0..n {
            let ex = l.example(i);
            for k in 0..u {
                let plane = &ex[k * p..(k + 1) * p];
                let (mut best, mut at) = (plane[0], 0);
                for (j, &v) in plane.iter().enumerate().skip(1) {
                    if v > best {
                        best = v;
                        at = j;
                    }
                }
                score[i * u + k] = best;
                argmax[i * u + k] = at as u32;
            }
        }
        Scores {
            units: u,
            score,
            argmax,
        }
    }

    pub fn len(&self) -> usize {
        self.score.len() / self.units.max(1)
    }
    pub fn is_empty(&self) -> bool {
        self.score.is_empty()
    }

    /// Unit `k`'s scores over the examples.
    pub fn column(&self, k: usize) -> Vec<f32> {
        (0..self.len()).map(|i| self.score[i * self.units + k]).collect()
    }
}

/// An edit of one layer's output, shared by the batches of [`predict`].
pub type EditFn = std::sync::Arc<crate::models::TensorFn>;

/// The predicted class of every example of `x`, with `edit` applied at `layer`.
pub fn predict(model: &dyn Model, x: &Tensor, layer: &str, edit: &EditFn) -> Result<Vec<usize>> {
    let (n, batch) = (x.dim(0)?, batch_for(x.dim(2)?, x.dim(3)?));
    let starts: Vec<usize> = (0..n).step_by(batch).collect();
    let parts = starts
        .par_iter()
        .map(|&s| -> Result<Vec<usize>> {
            let b = x.narrow(0, s, batch.min(n - s))?;
            let f = edit.clone();
            let mut tap = Tap {
                edit: Some(crate::models::Edit {
                    layer: layer.to_string(),
                    apply: Box::new(move |t| f(t)),
                }),
                ..Default::default()
            };
            let logits = model.forward(&b, &mut tap)?;
            Ok(logits
                .argmax(D::Minus1)?
                .to_vec1::<u32>()?
                .into_iter()
                .map(|v| v as usize)
                .collect())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(parts.concat())
}
