//! Charts as SVG, drawn with plotters.

use plotters::prelude::*;

use crate::error::{Error, Result};

/// A chart of per-epoch values (x = 1, 2, …), one line per series.
pub fn line_chart(
    title: &str,
    y_label: &str,
    series: &[(&str, Vec<f64>)],
    y_range: Option<(f64, f64)>,
) -> Result<String> {
    let n = series.iter().map(|(_, v)| v.len()).max().unwrap_or(0).max(1);
    let points: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, v)| (*name, v.iter().enumerate().map(|(k, &y)| ((k + 1) as f64, y)).collect()))
        .collect();
    let axis = Axis {
        desc: "epoch",
        range: (1.0, (n as f64).max(2.0)),
        labels: n.min(12),
        format: |x| format!("{x:.0}"),
    };
    xy_chart(title, y_label, &points, axis, y_range, (480, 300))
}

/// Deletion and insertion curves over the fraction of pixels moved, probability 0..1.
pub fn curves_chart(title: &str, deletion: &[f32], insertion: &[f32]) -> Result<String> {
    let points = |v: &[f32]| -> Vec<(f64, f64)> {
        let steps = v.len().saturating_sub(1).max(1) as f64;
        v.iter()
            .enumerate()
            .map(|(k, &p)| (k as f64 / steps, p as f64))
            .collect()
    };
    let axis = Axis {
        desc: "fraction of pixels",
        range: (0.0, 1.0),
        labels: 6,
        format: |x| format!("{x:.1}"),
    };
    xy_chart(
        title,
        "probability",
        &[("deletion", points(deletion)), ("insertion", points(insertion))],
        axis,
        Some((0.0, 1.0)),
        (360, 240),
    )
}

/// The x axis of a chart.
struct Axis {
    desc: &'static str,
    range: (f64, f64),
    labels: usize,
    format: fn(&f64) -> String,
}

fn xy_chart(
    title: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    x: Axis,
    y_range: Option<(f64, f64)>,
    size: (u32, u32),
) -> Result<String> {
    let (lo, hi) = y_range.unwrap_or_else(|| {
        let all = series.iter().flat_map(|(_, v)| v.iter().map(|p| p.1));
        let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        if lo.is_finite() {
            let pad = ((hi - lo) * 0.08).max(1e-6);
            ((lo - pad).max(0.0), hi + pad)
        } else {
            (0.0, 1.0)
        }
    });
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| Error::msg(format!("cannot draw chart `{title}`: {e}"));
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x.range.0..x.range.1, lo..hi)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc(x.desc)
            .y_desc(y_label)
            .x_labels(x.labels)
            .x_label_formatter(&x.format)
            .draw()
            .map_err(|e| err(&e))?;
        let colors = [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44)];
        for (i, (name, values)) in series.iter().enumerate() {
            let color = colors[i % colors.len()];
            chart
                .draw_series(LineSeries::new(values.iter().copied(), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}
