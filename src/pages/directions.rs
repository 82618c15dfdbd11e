//! A layer's units against random directions of the same space: a blinded guessing game
//! (which grid is a real unit?), the class purity of every unit's and direction's top
//! examples as two histograms, and the ablation curves.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{model_link, render, Base, Input, ModelLink};
use crate::analysis::units::histogram;
use crate::build::units::{DirectionsData, UnitsResult};
use crate::config::PURITY_TOP;
use crate::error::Result;
use crate::plan;
use crate::render::plot::histogram_chart;

/// Pairs in the guessing game.
const BLIND: usize = 12;

#[derive(Serialize)]
pub struct DirectionsView {
    #[serde(flatten)]
    pub base: Base,
    pub model: ModelLink,
    pub layer: String,
    pub layer_href: Option<String>,
    pub dataset: String,
    pub units: usize,
    pub count: usize,
    pub seed: u64,
    pub purity_top: usize,
    pub mean_purity_units: String,
    pub mean_purity_directions: String,
    pub dead: usize,
    pub purity_chart: String,
    pub ablation_chart: String,
    pub accuracy: String,
    pub repeats: usize,
    pub ablation: Vec<AblationRow>,
    pub blind: Vec<BlindPair>,
    pub unit_grids: Vec<Grid>,
    pub direction_grids: Vec<Grid>,
}

#[derive(Serialize)]
pub struct AblationRow {
    pub k: usize,
    pub units: String,
    pub directions: String,
}

#[derive(Serialize)]
pub struct BlindPair {
    pub n: usize,
    pub left: String,
    pub right: String,
    /// "left" or "right": where the real unit is.
    pub unit_side: &'static str,
    pub unit: usize,
    pub direction: usize,
}

#[derive(Serialize)]
pub struct Grid {
    pub n: usize,
    pub png: String,
    pub purity: Option<String>,
    pub href: Option<String>,
}

/// `94.5% (91.2–96.0%)`: a mean with the range over the draws.
fn with_range(mean: f64, range: Option<&[f64; 2]>) -> String {
    match range {
        Some([lo, hi]) => format!("{:.1}% ({:.1}–{:.1}%)", 100.0 * mean, 100.0 * lo, 100.0 * hi),
        None => format!("{:.1}%", 100.0 * mean),
    }
}

fn pct(v: f64) -> String {
    format!("{:.0}%", 100.0 * v)
}

/// The two purity histograms on shared bins.
pub fn purity_chart(d: &DirectionsData) -> Result<String> {
    let live: Vec<f64> = d.purity_units.iter().flatten().copied().collect();
    let to32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let (hu, hd) = (histogram(&to32(&live), 20), histogram(&to32(&d.purity_directions), 20));
    let (lo, hi) = (hu.min.min(hd.min) as f64, hu.max.max(hd.max) as f64);
    let bin = |v: &[f64]| {
        let mut c = vec![0usize; 20];
        let w = (hi - lo).max(1e-9) / 20.0;
        for &x in v {
            c[(((x - lo) / w) as usize).min(19)] += 1;
        }
        c
    };
    histogram_chart(
        &format!("class purity of the top {PURITY_TOP} examples"),
        "share of the most common class",
        lo,
        hi,
        &[("units", bin(&live)), ("random directions", bin(&d.purity_directions))],
    )
}

/// Accuracy against k for units and for directions.
pub fn ablation_chart(d: &DirectionsData) -> Result<String> {
    crate::render::plot::ablation_chart(
        &format!("{}: what removing k of them costs", d.layer),
        &d.k,
        &[
            ("k units zeroed (mean)", d.accuracy_units.clone()),
            (
                "k random directions projected out (mean)",
                d.accuracy_directions.clone(),
            ),
        ],
    )
}

fn view(input: &Input, u: &UnitsResult, d: &DirectionsData) -> Result<DirectionsView> {
    let site = input.site;
    let mc = &site.config.models[u.model];
    let mu = site.units[u.model].as_ref().expect("a model with results has units");
    let page = plan::directions_page(&mc.id, &d.layer);
    let live: Vec<f64> = d.purity_units.iter().flatten().copied().collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let purity_chart = purity_chart(d)?;
    let ablation_chart = ablation_chart(d)?;
    let mut rng = ChaCha8Rng::seed_from_u64(d.seed ^ 0xb11d);
    // Live units only: a dead unit's "top examples" are the dataset's first ones.
    let blind = (0..d.units.min(d.count))
        .filter(|&i| d.purity_units[i].is_some())
        .take(BLIND)
        .enumerate()
        .map(|(n, i)| {
            let (u_png, d_png) = (d.unit_pngs[i].clone(), d.direction_pngs[i].clone());
            let unit_left: bool = rng.gen();
            BlindPair {
                n: n + 1,
                left: if unit_left { u_png.clone() } else { d_png.clone() },
                right: if unit_left { d_png } else { u_png },
                unit_side: if unit_left { "left" } else { "right" },
                unit: i,
                direction: i,
            }
        })
        .collect();
    let layer_analysed = u.layers.iter().any(|l| l.layer == d.layer);
    Ok(DirectionsView {
        base: Base::new(site, &page, &format!("{} · {} · units or directions?", mc.id, d.layer)),
        model: model_link(&mc.id),
        layer: d.layer.clone(),
        layer_href: layer_analysed.then(|| plan::href(&plan::layer_page(&mc.id, &d.layer))),
        dataset: site.config.datasets[mu.config.dataset].id.clone(),
        units: d.units,
        count: d.count,
        seed: d.seed,
        purity_top: PURITY_TOP,
        mean_purity_units: pct(mean(&live)),
        mean_purity_directions: pct(mean(&d.purity_directions)),
        dead: d.purity_units.iter().filter(|p| p.is_none()).count(),
        purity_chart,
        ablation_chart,
        accuracy: pct(d.accuracy),
        repeats: d.repeats,
        ablation: d
            .k
            .iter()
            .enumerate()
            .map(|(i, &k)| AblationRow {
                k,
                units: with_range(d.accuracy_units[i], d.range_units.get(i)),
                directions: with_range(d.accuracy_directions[i], d.range_directions.get(i)),
            })
            .collect(),
        blind,
        unit_grids: d
            .unit_pngs
            .iter()
            .enumerate()
            .map(|(i, png)| Grid {
                n: i,
                png: png.clone(),
                purity: d.purity_units[i].map(pct),
                href: layer_analysed.then(|| plan::href(&plan::unit_page(&mc.id, &d.layer, i))),
            })
            .collect(),
        direction_grids: d
            .direction_pngs
            .iter()
            .enumerate()
            .map(|(i, png)| Grid {
                n: i,
                png: png.clone(),
                purity: Some(pct(d.purity_directions[i])),
                href: None,
            })
            .collect(),
    })
}

pub fn write(input: &Input, out: &Path) -> Result<usize> {
    let mut pages = 0;
    for u in input.units {
        if let Some(d) = &u.directions {
            let mc = &input.site.config.models[u.model];
            render(
                input.site,
                out,
                &plan::directions_page(&mc.id, &d.layer),
                "directions.html",
                &view(input, u, d)?,
            )?;
            pages += 1;
        }
    }
    Ok(pages)
}
