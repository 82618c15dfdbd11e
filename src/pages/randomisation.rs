//! The randomisation test of a pair: a row per method, its map on the trained model and as
//! the layers are re-initialised from the top, with the Spearman correlation under each.

use std::path::Path;

use serde::Serialize;

use super::attributions::PairHeader;
use super::{render, Input};
use crate::build::compute::PairResult;
use crate::error::Result;
use crate::metrics::INSENSITIVE_ABOVE;
use crate::plan;

#[derive(Serialize)]
pub struct RandomisationView {
    #[serde(flatten)]
    pub header: PairHeader,
    /// The class explained.
    pub class: String,
    pub checkpoints: Vec<String>,
    pub rows: Vec<RowView>,
    pub threshold: f64,
}

#[derive(Serialize)]
pub struct RowView {
    pub title: &'static str,
    pub id: &'static str,
    pub href: String,
    pub original: String,
    pub cells: Vec<CellView>,
    /// The correlation after the last checkpoint stays above the threshold.
    pub insensitive: bool,
}

#[derive(Serialize)]
pub struct CellView {
    pub checkpoint: String,
    pub map: String,
    pub spearman: String,
}

pub fn view(input: &Input, r: &PairResult) -> Option<RandomisationView> {
    let (mc, ic) = input.configs(r);
    let result = r.explained.randomisation.as_ref()?;
    let spec = mc.metrics.randomisation.as_ref()?;
    let slugs = crate::methods::slugs(&mc.methods);
    let rows = spec
        .methods
        .iter()
        .zip(&result.rows)
        .map(|(&k, row)| {
            let m = &mc.methods[k];
            RowView {
                title: m.title(),
                id: m.name(),
                href: plan::href(&plan::method_page(&mc.id, &slugs[k])),
                original: row.original.clone(),
                cells: result
                    .checkpoints
                    .iter()
                    .zip(row.maps.iter().zip(&row.spearman))
                    .map(|(ck, (map, rho))| CellView {
                        checkpoint: ck.clone(),
                        map: map.clone(),
                        spearman: format!("{rho:.2}"),
                    })
                    .collect(),
                insensitive: row.spearman.last().is_some_and(|&rho| rho.abs() > INSENSITIVE_ABOVE),
            }
        })
        .collect();
    Some(RandomisationView {
        header: PairHeader::new(
            input,
            r,
            &plan::randomisation_page(&mc.id, &ic.id),
            "Randomisation test",
        ),
        class: mc.classes[result.class].clone(),
        checkpoints: result.checkpoints.clone(),
        rows,
        threshold: INSENSITIVE_ABOVE,
    })
}

pub fn write(input: &Input, r: &PairResult, out: &Path) -> Result<usize> {
    let Some(v) = view(input, r) else {
        return Ok(0);
    };
    let site = input.site;
    let (mc, ic) = input.configs(r);
    render(
        site,
        out,
        &plan::randomisation_page(&mc.id, &ic.id),
        "randomisation.html",
        &v,
    )?;
    Ok(1)
}
