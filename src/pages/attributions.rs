//! The attribution matrix of a pair: rows are methods, columns the target classes.

use std::path::Path;

use serde::Serialize;

use super::image::PairPages;
use super::{colorbar, model_link, pct, render, shape_str, Base, Input, ModelLink};
use crate::build::compute::PairResult;
use crate::build::explain::{MapCell, RowScale, TargetInfo};
use crate::error::Result;
use crate::methods::{self, ModelInfo};
use crate::metrics::deletion::Curves;
use crate::plan;
use crate::render::attribution::{Drawing, Placement};
use crate::render::plot::curves_chart;

/// The header every page about one pair shares (attributions, gradients).
#[derive(Serialize)]
pub struct PairHeader {
    #[serde(flatten)]
    pub base: Base,
    pub model: ModelLink,
    pub image: ImageId,
    pub pair: PairPages,
}

#[derive(Serialize)]
pub struct ImageId {
    pub id: String,
}

impl PairHeader {
    pub fn new(input: &Input, r: &PairResult, page: &str, what: &str) -> PairHeader {
        let site = input.site;
        let (mc, ic) = input.configs(r);
        PairHeader {
            base: Base::new(
                site,
                page,
                &format!("{what}: {} × {} · {}", mc.id, ic.id, site.config.site.title),
            ),
            model: model_link(&mc.id),
            image: ImageId { id: ic.id.clone() },
            pair: PairPages::of(input, r),
        }
    }
}

/// A target class as the matrix's column header shows it.
#[derive(Serialize)]
pub struct TargetView {
    pub index: usize,
    pub name: String,
    pub roles: String,
    pub probability: String,
}

pub fn target_view(t: &TargetInfo) -> TargetView {
    TargetView {
        index: t.index,
        name: t.name.clone(),
        roles: t.roles.join(", "),
        probability: pct(t.probability),
    }
}

#[derive(Serialize)]
pub struct AttributionsView {
    #[serde(flatten)]
    pub header: PairHeader,
    pub targets: Vec<TargetView>,
    pub rows: Vec<RowView>,
}

#[derive(Serialize)]
pub struct RowView {
    pub slug: String,
    pub id: &'static str,
    pub title: &'static str,
    /// The method's page.
    pub href: String,
    /// The section of a note that discusses it (a heading with id `method-<slug>`).
    pub note: Option<String>,
    /// Its maps barely change when the weights are randomised (see the leaderboard).
    pub insensitive: bool,
    /// The parameters as applied, `key = value, …`.
    pub params: String,
    /// One per target (column), in order.
    pub cells: Vec<CellSlot>,
    /// The row's common colour scale, when it has several targets.
    pub shared: Option<SharedView>,
}

/// A matrix cell: the map, or none where the method's own `targets:` leave this class out.
#[derive(Serialize)]
pub struct CellSlot {
    pub target: usize,
    pub cell: Option<CellView>,
}

/// A row's common colour scale, which the matrix can switch to.
#[derive(Serialize)]
pub struct SharedView {
    pub min: f32,
    pub max: f32,
    pub colorbar: &'static str,
    /// How the shared pictures are made, in words.
    pub note: String,
}

#[derive(Serialize)]
pub struct CellView {
    pub target: usize,
    pub heatmap: String,
    pub overlay: String,
    /// The same map on the row's shared scale.
    pub row_heatmap: Option<String>,
    pub row_overlay: Option<String>,
    /// A signed map: its heatmap is shown beside the overlay, where the grey input
    /// cannot wash it out.
    pub signed: bool,
    pub npy: String,
    /// The drawing steps with their numbers.
    pub note: String,
    /// The colour bar's ends in raw units (for a CAM: its raw minimum and maximum, which
    /// min–max scaling paints as the two ends).
    pub min: f32,
    pub max: f32,
    /// A CAM whose smallest value is well above 0: how high its floor is, painted dark.
    pub floor: Option<String>,
    pub colorbar: &'static str,
    pub shape: String,
    pub metrics: Vec<MetricView>,
    /// Integrated Gradients' completeness gap, when it is above [`GAP_FLAG`]: too few steps
    /// for this input (the attributions do not add up to the score difference).
    pub gap_flag: Option<String>,
    /// Deletion and insertion, where the metrics ask for them.
    pub faithfulness: Option<FaithfulnessView>,
}

/// The completeness gap above which an Integrated Gradients cell is flagged.
pub const GAP_FLAG: f64 = 0.05;

#[derive(Serialize)]
pub struct FaithfulnessView {
    pub deletion_auc: String,
    pub insertion_auc: String,
    /// Both curves as an SVG chart.
    pub chart: String,
}

/// An area under a curve as shown.
pub fn auc_text(v: f64) -> String {
    format!("{v:.3}")
}

pub fn faithfulness_view(c: &Curves, title: &str) -> Result<FaithfulnessView> {
    Ok(FaithfulnessView {
        deletion_auc: auc_text(c.deletion_auc),
        insertion_auc: auc_text(c.insertion_auc),
        chart: curves_chart(title, &c.deletion, &c.insertion)?,
    })
}

#[derive(Serialize)]
pub struct MetricView {
    pub name: String,
    pub value: String,
}

/// The steps from a raw map to its picture, in words.
pub fn drawing_note(d: &Drawing) -> String {
    match *d {
        Drawing::Cam {
            raw_min,
            raw_max,
            from,
            to,
            placement,
        } => format!(
            "ReLU, min–max to 0..1 (raw range {raw_min:.4} … {raw_max:.4}), bilinear {}×{} → {}×{} {}",
            from[0],
            from[1],
            to[0],
            to[1],
            placement_words(&placement)
        ),
        Drawing::Signed { clip } => format!("sum over channels, clipped at ±{clip:.4} (99th percentile of |·|)"),
        Drawing::Unsigned { clip } => format!("max of |·| over channels, clipped at {clip:.4} (99th percentile)"),
    }
}

/// How a CAM's cells were laid over the input, in words.
pub fn placement_words(p: &Placement) -> String {
    match *p {
        Placement::Field { first, step } => format!(
            "with each cell at the centre of its receptive field (cell i at input pixel {} + {}·i)",
            num(first),
            num(step)
        ),
        Placement::Stretch => "stretched over the whole input (as pytorch-grad-cam resizes)".to_string(),
    }
}

/// A number without a needless `.0`.
fn num(v: f32) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// A CAM floor above this fraction of its maximum is pointed out.
const FLOOR_NOTE: f32 = 0.05;

/// The note section that discusses a method: the first note with a heading whose id is
/// `method-<slug>` (`### Grad-CAM {#method-gradcam}`).
pub fn note_section(input: &Input, slug: &str) -> Option<String> {
    let id = format!("method-{slug}");
    let note = input
        .site
        .content
        .notes
        .iter()
        .find(|n| n.html.contains(&format!("id=\"{id}\"")))?;
    Some(format!("{}#{id}", plan::href(&plan::note_page(&note.slug))))
}

/// A metric's name and value as shown (the completeness gap as a percentage).
pub fn metric_view(name: &str, v: f64) -> MetricView {
    MetricView {
        name: name.replace('_', " "),
        value: if name == "completeness_gap" {
            format!("{:.3}%", 100.0 * v)
        } else {
            format!("{v:.4}")
        },
    }
}

pub fn cell_view(c: &MapCell, curves: Option<&Curves>, title: &str) -> Result<CellView> {
    let ((min, max), floor) = match c.drawing {
        Drawing::Cam { raw_min, raw_max, .. } => (
            (raw_min, raw_max),
            (raw_max > 0.0 && raw_min > FLOOR_NOTE * raw_max).then(|| format!("{:.0}%", 100.0 * raw_min / raw_max)),
        ),
        _ => (c.scale.range(), None),
    };
    Ok(CellView {
        faithfulness: curves.map(|k| faithfulness_view(k, title)).transpose()?,
        target: c.target,
        heatmap: c.heatmap.clone(),
        overlay: c.overlay.clone(),
        row_heatmap: None,
        row_overlay: None,
        signed: matches!(c.drawing, Drawing::Signed { .. }),
        npy: c.npy.clone(),
        note: drawing_note(&c.drawing),
        min,
        max,
        floor,
        colorbar: colorbar(&c.scale),
        shape: shape_str(&c.shape),
        metrics: c.metrics.iter().map(|(k, v)| metric_view(k, *v)).collect(),
        gap_flag: c
            .metrics
            .get("completeness_gap")
            .filter(|g| g.abs() > GAP_FLAG)
            .map(|g| format!("{:.1}%", 100.0 * g)),
    })
}

/// Adds a row's shared-scale pictures to its cells.
fn with_shared(mut cells: Vec<CellView>, shared: Option<&RowScale>, cam: bool) -> (Vec<CellView>, Option<SharedView>) {
    let Some(s) = shared else {
        return (cells, None);
    };
    for c in &mut cells {
        if let Some(sc) = s.cells.iter().find(|sc| sc.target == c.target) {
            c.row_heatmap = Some(sc.heatmap.clone());
            c.row_overlay = Some(sc.overlay.clone());
        }
    }
    let (min, max) = s.scale.range();
    let note = match s.scale {
        crate::render::colormap::Scale::Diverging { abs } => {
            format!("every map of the row clipped at ±{abs:.4}, the largest of the cells' own clips")
        }
        crate::render::colormap::Scale::Sequential { max, .. } if cam => {
            format!("every map of the row on 0 … {max:.4}, the row's largest raw value; nothing subtracted, so a weak class's map stays dark")
        }
        crate::render::colormap::Scale::Sequential { max, .. } => {
            format!("every map of the row on 0 … {max:.4}, the largest of the cells' own clips")
        }
    };
    (
        cells,
        Some(SharedView {
            min,
            max,
            colorbar: colorbar(&s.scale),
            note,
        }),
    )
}

pub fn view(input: &Input, r: &PairResult) -> Result<AttributionsView> {
    let site = input.site;
    let (mc, ic) = input.configs(r);
    let info = ModelInfo {
        arch: mc.arch,
        input: &mc.input,
        layers: site.models[r.pair.model].model.layers(),
    };
    let ex = &r.explained;
    let scores = super::leaderboard::scores(input, r.pair.model).unwrap_or_default();
    let rows = ex
        .rows
        .iter()
        .map(|row| {
            let m = &mc.methods[row.method];
            let cells = row
                .cells
                .iter()
                .enumerate()
                .map(|(k, c)| {
                    let title = format!("{}, class {}", m.title(), mc.classes[c.target]);
                    cell_view(c, row.curves.get(k).and_then(Option::as_ref), &title)
                })
                .collect::<Result<Vec<_>>>()?;
            let cam = row.cells.iter().any(|c| matches!(c.drawing, Drawing::Cam { .. }));
            let (mut cells, shared) = with_shared(cells, row.shared.as_ref(), cam);
            let cells = ex
                .targets
                .iter()
                .map(|t| CellSlot {
                    target: t.index,
                    cell: cells
                        .iter()
                        .position(|c| c.target == t.index)
                        .map(|k| cells.swap_remove(k)),
                })
                .collect();
            Ok(RowView {
                slug: row.slug.clone(),
                id: m.name(),
                title: m.title(),
                href: plan::href(&plan::method_page(&mc.id, &row.slug)),
                note: note_section(input, &row.slug),
                insensitive: scores.iter().any(|s| s.method == row.method && s.insensitive()),
                params: methods::params_text(&m.params(&info)),
                cells,
                shared,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(AttributionsView {
        header: PairHeader::new(input, r, &plan::attributions_page(&mc.id, &ic.id), "Attributions"),
        targets: ex.targets.iter().map(target_view).collect(),
        rows,
    })
}

pub fn write(input: &Input, r: &PairResult, out: &Path) -> Result<usize> {
    if PairPages::of(input, r).attributions.is_none() {
        return Ok(0);
    }
    let site = input.site;
    let (mc, ic) = input.configs(r);
    render(
        site,
        out,
        &plan::attributions_page(&mc.id, &ic.id),
        "attributions.html",
        &view(input, r)?,
    )?;
    Ok(1)
}
