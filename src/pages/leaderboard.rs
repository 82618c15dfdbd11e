//! A model's methods ranked by the faithfulness metrics over its images: the mean deletion
//! area (lower is better), the mean insertion area (higher is better) and the mean |Spearman
//! correlation| after the last randomisation checkpoint (lower: the map depends more on what
//! the model learnt), each with its spread.

use std::path::Path;

use serde::Serialize;

use super::{model_link, render, Base, Input, ModelLink};
use crate::error::Result;
use crate::metrics::INSENSITIVE_ABOVE;
use crate::plan;

/// A metric over the images (and targets): its mean, standard deviation and count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub sd: f64,
    pub n: usize,
}

impl Stat {
    fn of(v: &[f64]) -> Option<Stat> {
        if v.is_empty() {
            return None;
        }
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let sd = (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt();
        Some(Stat { mean, sd, n: v.len() })
    }
}

/// One method's metrics over a model's images.
#[derive(Debug, Clone)]
pub struct Score {
    /// Index into the model's methods.
    pub method: usize,
    pub deletion: Option<Stat>,
    pub insertion: Option<Stat>,
    /// |Spearman correlation| after the last checkpoint.
    pub randomisation: Option<Stat>,
}

impl Score {
    /// Whether the method's maps stay alike when every layer is randomised.
    pub fn insensitive(&self) -> bool {
        self.randomisation.is_some_and(|s| s.mean > INSENSITIVE_ABOVE)
    }
}

/// Every map method's metrics over the model's images; `None` when no metric ran.
pub fn scores(input: &Input, mi: usize) -> Option<Vec<Score>> {
    let mc = &input.site.config.models[mi];
    if mc.metrics.faithfulness.is_none() && mc.metrics.randomisation.is_none() {
        return None;
    }
    let mut out = Vec::new();
    for k in (0..mc.methods.len()).filter(|&k| mc.methods[k].is_map()) {
        let (mut del, mut ins, mut rho) = (Vec::new(), Vec::new(), Vec::new());
        for r in input.pairs_of_model(mi) {
            if let Some(row) = r.explained.rows.iter().find(|row| row.method == k) {
                for c in row.curves.iter().flatten() {
                    del.push(c.deletion_auc);
                    ins.push(c.insertion_auc);
                }
            }
            if let (Some(spec), Some(result)) = (&mc.metrics.randomisation, &r.explained.randomisation) {
                if let Some(pos) = spec.methods.iter().position(|&j| j == k) {
                    if let Some(last) = result.rows.get(pos).and_then(|row| row.spearman.last()) {
                        // A strongly negative correlation is no less a likeness.
                        rho.push(last.abs());
                    }
                }
            }
        }
        out.push(Score {
            method: k,
            deletion: Stat::of(&del),
            insertion: Stat::of(&ins),
            randomisation: Stat::of(&rho),
        });
    }
    Some(out)
}

#[derive(Serialize)]
pub struct LeaderboardView {
    #[serde(flatten)]
    pub base: Base,
    pub model: ModelLink,
    pub rows: Vec<RowView>,
    pub threshold: f64,
    /// The last randomisation checkpoint, for the column's header.
    pub last_checkpoint: Option<String>,
}

#[derive(Serialize)]
pub struct RowView {
    pub title: &'static str,
    pub id: &'static str,
    pub href: String,
    pub deletion: Option<StatView>,
    pub insertion: Option<StatView>,
    pub randomisation: Option<StatView>,
    pub insensitive: bool,
}

#[derive(Serialize)]
pub struct StatView {
    pub mean: String,
    pub sd: String,
    pub n: usize,
    /// 1 = best among the methods with this metric.
    pub rank: usize,
}

/// Ranks of `v` (1 = best): ascending when `lower_is_better`.
fn ranks(v: &[Option<f64>], lower_is_better: bool) -> Vec<usize> {
    v.iter()
        .map(|x| match x {
            None => 0,
            Some(x) => {
                1 + v
                    .iter()
                    .flatten()
                    .filter(|y| if lower_is_better { *y < x } else { *y > x })
                    .count()
            }
        })
        .collect()
}

pub fn view(input: &Input, mi: usize) -> Option<LeaderboardView> {
    let site = input.site;
    let mc = &site.config.models[mi];
    let mut scores = scores(input, mi)?;
    // Ranked by deletion (the RISE paper's headline), methods without it last.
    scores.sort_by(|a, b| {
        let key = |s: &Score| s.deletion.map_or(f64::INFINITY, |d| d.mean);
        key(a).total_cmp(&key(b)).then(a.method.cmp(&b.method))
    });
    let col = |f: fn(&Score) -> Option<Stat>| scores.iter().map(|s| f(s).map(|t| t.mean)).collect::<Vec<_>>();
    let del_ranks = ranks(&col(|s| s.deletion), true);
    let ins_ranks = ranks(&col(|s| s.insertion), false);
    let rho_ranks = ranks(&col(|s| s.randomisation), true);
    let slugs = crate::methods::slugs(&mc.methods);
    let stat = |s: Option<Stat>, rank: usize, digits: usize| {
        s.map(|s| StatView {
            mean: format!("{:.*}", digits, s.mean),
            sd: format!("{:.*}", digits, s.sd),
            n: s.n,
            rank,
        })
    };
    let rows = scores
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let m = &mc.methods[s.method];
            RowView {
                title: m.title(),
                id: m.name(),
                href: plan::href(&plan::method_page(&mc.id, &slugs[s.method])),
                deletion: stat(s.deletion, del_ranks[i], 3),
                insertion: stat(s.insertion, ins_ranks[i], 3),
                randomisation: stat(s.randomisation, rho_ranks[i], 2),
                insensitive: s.insensitive(),
            }
        })
        .collect();
    let last_checkpoint = input
        .pairs_of_model(mi)
        .find_map(|r| r.explained.randomisation.as_ref())
        .and_then(|r| r.checkpoints.last().cloned());
    let page = plan::leaderboard_page(&mc.id);
    Some(LeaderboardView {
        base: Base::new(
            site,
            &page,
            &format!("Leaderboard: {} · {}", mc.id, site.config.site.title),
        ),
        model: model_link(&mc.id),
        rows,
        threshold: INSENSITIVE_ABOVE,
        last_checkpoint,
    })
}

pub fn write(input: &Input, out: &Path) -> Result<usize> {
    let site = input.site;
    let mut pages = 0;
    for (mi, mc) in site.config.models.iter().enumerate() {
        if let Some(v) = view(input, mi) {
            render(site, out, &plan::leaderboard_page(&mc.id), "leaderboard.html", &v)?;
            pages += 1;
        }
    }
    Ok(pages)
}
