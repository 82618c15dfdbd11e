//! Is an explanation faithful? Two checks per map, both computed from the map as it is
//! drawn:
//!
//! - [`deletion`]: deletion and insertion curves (Petsiuk, Das & Saenko 2018, RISE): the
//!   target's probability as the pixels the map ranks highest are removed (or restored);
//! - [`randomisation`]: the cascading model-parameter randomisation test (Adebayo et al.
//!   2018): how much a map changes as the weights are re-initialised from the top.

pub mod deletion;
pub mod randomisation;

use crate::methods::View;
use crate::render::attribution::{prepare, Placement};

/// What a model's metrics compute (`metrics:` in `gallery.yaml`); absent parts are off.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub faithfulness: Option<Faithfulness>,
    pub randomisation: Option<Randomisation>,
}

/// Deletion and insertion curves for some of a model's map methods and targets.
#[derive(Debug, Clone)]
pub struct Faithfulness {
    /// Steps of equal size from no pixel to every pixel (`steps + 1` inputs per curve).
    pub steps: usize,
    /// Indices into the model's methods.
    pub methods: Vec<usize>,
    /// Only the model's targets that this list also picks (`None`: every target).
    pub targets: Option<Vec<crate::config::TargetSpec>>,
}

/// The cascading randomisation test for some of a model's map methods, predicted class.
#[derive(Debug, Clone)]
pub struct Randomisation {
    /// Indices into the model's methods.
    pub methods: Vec<usize>,
    /// From the output down; `None`: the architecture's preset.
    pub checkpoints: Option<Vec<String>>,
    pub seed: u64,
}

pub const DEFAULT_STEPS: usize = 56;

/// The methods the randomisation test runs when none are listed (those the model has):
/// one backward pass each, so the test costs little more than the maps themselves.
pub const DEFAULT_RANDOMISATION_METHODS: &[&str] = &[
    "saliency",
    "gradient-x-input",
    "guided-backprop",
    "gradcam",
    "gradcam++",
    "hirescam",
    "layercam",
];

/// A method whose maps keep a Spearman correlation |ρ| above this with the original after
/// every checkpoint is randomised (mean over the images) does not depend on what the model
/// learnt: it is flagged.
pub const INSENSITIVE_ABOVE: f64 = 0.5;

/// A map reduced to one value per input pixel, as it is drawn: input-space maps as the sum
/// of |·| over channels, class activation maps as drawn (ReLU, min–max, bilinear onto the
/// input at `placement`). These values order the pixels for deletion and insertion and are compared in
/// the randomisation test.
pub fn pixel_values(raw: &[f32], dims: &[usize], view: View, input: (usize, usize), placement: Placement) -> Vec<f32> {
    match view {
        View::Cam => prepare(raw, dims, view, input, placement).values,
        View::Signed | View::Unsigned => {
            let hw = input.0 * input.1;
            let c = raw.len() / hw.max(1);
            (0..hw).map(|i| (0..c).map(|k| raw[k * hw + i].abs()).sum()).collect()
        }
    }
}

/// Ranks with ties given their average rank (1-based), as Spearman's correlation needs.
fn ranks(v: &[f32]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0f64; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation; 0 when either side is constant (no ranking to compare).
pub fn spearman(a: &[f32], b: &[f32]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0f64, 0f64, 0f64);
    for (x, y) in ra.iter().zip(&rb) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        0.0
    } else {
        sab / (saa * sbb).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_orderings() {
        let a = [1.0, 2.0, 3.0, 4.0];
        assert!((spearman(&a, &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&a, &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert_eq!(spearman(&a, &[5.0; 4]), 0.0);
        // Ties take their average rank: ranks [1.5, 1.5, 3, 4] against [1, 2, 3, 4].
        let r = spearman(&[1.0, 1.0, 2.0, 3.0], &a);
        assert!((r - 0.9486832980505138).abs() < 1e-12, "{r}");
    }

    #[test]
    fn pixel_values_sum_magnitudes_over_channels() {
        let raw = [1.0, -2.0, 3.0, -4.0, 0.5, 0.5, -0.5, 0.5];
        assert_eq!(
            pixel_values(&raw, &[2, 2, 2], View::Signed, (2, 2), Placement::Stretch),
            vec![1.5, 2.5, 3.5, 4.5]
        );
        assert_eq!(
            pixel_values(&raw[..4], &[2, 2], View::Signed, (2, 2), Placement::Stretch),
            vec![1.0, 2.0, 3.0, 4.0]
        );
    }
}
