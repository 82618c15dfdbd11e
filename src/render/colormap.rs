//! Colour scales. Maps come from `colorous`: viridis for magnitudes (sequential), red–blue
//! reversed to blue–white–red for signed values, with white at 0 (diverging).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Scale {
    /// `min..max` onto viridis.
    Sequential { min: f32, max: f32 },
    /// `-abs..abs` onto blue–white–red, white at 0.
    Diverging { abs: f32 },
}

impl Scale {
    /// A scale for a set of values: diverging and symmetric when any value is negative,
    /// sequential from 0 (or the minimum, if positive) to the maximum otherwise.
    pub fn fit(values: &[f32]) -> Scale {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for &v in values.iter().filter(|v| v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            return Scale::Sequential { min: 0.0, max: 1.0 };
        }
        if lo < 0.0 {
            Scale::Diverging {
                abs: lo.abs().max(hi.abs()),
            }
        } else {
            Scale::Sequential { min: 0.0, max: hi }
        }
    }

    pub fn range(&self) -> (f32, f32) {
        match *self {
            Scale::Sequential { min, max } => (min, max),
            Scale::Diverging { abs } => (-abs, abs),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Scale::Sequential { .. } => "viridis",
            Scale::Diverging { .. } => "blue–white–red",
        }
    }

    /// Position in 0..1 along the colour map.
    fn t(&self, v: f32) -> f64 {
        let (lo, hi) = self.range();
        let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
        if t.is_finite() {
            t.clamp(0.0, 1.0) as f64
        } else {
            0.5
        }
    }

    pub fn color(&self, v: f32) -> [u8; 3] {
        self.at(self.t(v))
    }

    /// The colour at position `t` in 0..1.
    pub fn at(&self, t: f64) -> [u8; 3] {
        let c = match self {
            Scale::Sequential { .. } => colorous::VIRIDIS.eval_continuous(t),
            Scale::Diverging { .. } => colorous::RED_BLUE.eval_continuous(1.0 - t),
        };
        [c.r, c.g, c.b]
    }
}

#[cfg(test)]
mod tests {
    use super::Scale;

    #[test]
    fn diverging_is_white_at_zero_and_symmetric() {
        let s = Scale::fit(&[-1.0, 0.5]);
        assert_eq!(s, Scale::Diverging { abs: 1.0 });
        let w = s.color(0.0);
        // ColorBrewer's RdBu centre is a neutral near-white.
        assert!(w.iter().all(|&c| c > 235) && w[0].abs_diff(w[2]) < 8, "{w:?}");
        let (neg, pos) = (s.color(-1.0), s.color(1.0));
        assert!(neg[2] > neg[0], "negative is blue: {neg:?}");
        assert!(pos[0] > pos[2], "positive is red: {pos:?}");
    }

    #[test]
    fn sequential_for_non_negative() {
        assert_eq!(Scale::fit(&[0.0, 2.0]), Scale::Sequential { min: 0.0, max: 2.0 });
    }
}
