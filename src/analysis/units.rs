//! What one unit responds to over a dataset: its top examples, class means, class
//! selectivity (Morcos et al. 2018), histogram, and whether it is dead.

use serde::{Deserialize, Serialize};

/// The indices of the `k` largest values, best first; ties keep dataset order (as a
/// stable sort of the negated values does).
pub fn top(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    idx.truncate(k);
    idx
}

/// The mean value per class over the examples labelled with it; `None` for a class with
/// no example.
pub fn class_means(values: &[f32], labels: &[usize], classes: usize) -> Vec<Option<f64>> {
    let mut sum = vec![0f64; classes];
    let mut count = vec![0usize; classes];
    for (&v, &l) in values.iter().zip(labels) {
        sum[l] += v as f64;
        count[l] += 1;
    }
    sum.iter()
        .zip(&count)
        .map(|(&s, &c)| (c > 0).then(|| s / c as f64))
        .collect()
}

/// The class-selectivity index (Morcos et al. 2018): (μ_max − μ_−max)/(μ_max + μ_−max)
/// over the class means present, μ_−max the mean of the other classes' means; 0 when
/// both are 0 (and when fewer than two classes are present).
pub fn selectivity(means: &[Option<f64>]) -> f64 {
    let m: Vec<f64> = means.iter().flatten().copied().collect();
    if m.len() < 2 {
        return 0.0;
    }
    let max = m.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let rest = (m.iter().sum::<f64>() - max) / (m.len() - 1) as f64;
    if max + rest == 0.0 {
        0.0
    } else {
        (max - rest) / (max + rest)
    }
}

/// The share of the most common class among `examples`.
pub fn purity(examples: &[usize], labels: &[usize], classes: usize) -> f64 {
    if examples.is_empty() {
        return 0.0;
    }
    let mut count = vec![0usize; classes];
    for &i in examples {
        count[labels[i]] += 1;
    }
    *count.iter().max().unwrap_or(&0) as f64 / examples.len() as f64
}

/// A unit is dead when it is 0 on every example.
pub fn is_dead(values: &[f32]) -> bool {
    values.iter().all(|&v| v == 0.0)
}

/// Counts of `values` in `bins` equal bins over [min, max] (the last bin is closed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Histogram {
    pub min: f32,
    pub max: f32,
    pub counts: Vec<usize>,
}

pub fn histogram(values: &[f32], bins: usize) -> Histogram {
    let (min, max) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let (min, max) = if min.is_finite() { (min, max) } else { (0.0, 0.0) };
    let mut counts = vec![0usize; bins];
    let width = (max - min) / bins as f32;
    for &v in values {
        let b = if width > 0.0 {
            (((v - min) / width) as usize).min(bins - 1)
        } else {
            0
        };
        counts[b] += 1;
    }
    Histogram { min, max, counts }
}

/// An order of `rows` (each `dim` values) that puts similar rows next to each other: the
/// leaves of an average-linkage clustering (Euclidean), left to right.
pub fn cluster_order(rows: &[Vec<f64>]) -> Vec<usize> {
    let n = rows.len();
    if n < 3 {
        return (0..n).collect();
    }
    let mut condensed = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            let d: f64 = rows[i].iter().zip(&rows[j]).map(|(a, b)| (a - b) * (a - b)).sum();
            condensed.push(d.sqrt());
        }
    }
    let dendrogram = kodama::linkage(&mut condensed, n, kodama::Method::Average);
    // Cluster n + s is the one step s made; walk from the last (the root) depth first.
    let steps = dendrogram.steps();
    let mut order = Vec::with_capacity(n);
    let mut stack = vec![n + steps.len() - 1];
    while let Some(c) = stack.pop() {
        if c < n {
            order.push(c);
        } else {
            let s = &steps[c - n];
            stack.push(s.cluster2);
            stack.push(s.cluster1);
        }
    }
    order
}

#[cfg(test)]
mod tests {
    #[test]
    fn clustering_puts_alike_rows_together() {
        let rows = vec![
            vec![0.0, 1.0],
            vec![5.0, 5.0],
            vec![0.1, 1.0],
            vec![5.0, 5.1],
            vec![0.0, 0.9],
        ];
        let order = super::cluster_order(&rows);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2, 3, 4]);
        let at = |i: usize| order.iter().position(|&o| o == i).unwrap();
        // The two near (5, 5) are adjacent, and so are the three near (0, 1).
        assert_eq!((at(1) as i64 - at(3) as i64).abs(), 1);
        let mut small = [at(0), at(2), at(4)];
        small.sort();
        assert_eq!(small[2] - small[0], 2);
    }

    use super::*;

    #[test]
    fn selectivity_of_known_class_means() {
        // One class only: (1 − 0)/(1 + 0) = 1.
        assert_eq!(selectivity(&[Some(1.0), Some(0.0), Some(0.0)]), 1.0);
        // Uniform: 0.
        assert_eq!(selectivity(&[Some(2.0), Some(2.0), Some(2.0)]), 0.0);
        // max 3, others (1 + 2)/2 = 1.5: (3 − 1.5)/(3 + 1.5) = 1/3.
        assert!((selectivity(&[Some(1.0), Some(3.0), Some(2.0)]) - 1.0 / 3.0).abs() < 1e-12);
        // All zero (a dead unit): 0, not NaN.
        assert_eq!(selectivity(&[Some(0.0); 10]), 0.0);
        // Absent classes are left out: max 4, rest 2 → 1/3.
        assert!((selectivity(&[Some(4.0), None, Some(2.0)]) - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn class_means_top_purity_and_histogram() {
        let v = [1.0, 3.0, 3.0, 0.0, 5.0];
        let labels = [0, 1, 1, 0, 2];
        assert_eq!(class_means(&v, &labels, 4), vec![Some(0.5), Some(3.0), Some(5.0), None]);
        // Ties keep dataset order.
        assert_eq!(top(&v, 3), vec![4, 1, 2]);
        assert_eq!(purity(&[1, 2, 4], &labels, 4), 2.0 / 3.0);
        assert_eq!(purity(&[0, 3], &labels, 4), 1.0);
        let h = histogram(&v, 5);
        assert_eq!((h.min, h.max, h.counts.clone()), (0.0, 5.0, vec![1, 1, 0, 2, 1]));
        assert!(is_dead(&[0.0, 0.0]) && !is_dead(&[0.0, 1e-9]));
    }
}
