//! Charts as SVG, drawn with plotters.

use plotters::prelude::*;

use crate::error::{Error, Result};

/// A line chart of one or more series over epochs 1..=n, as an SVG document.
pub fn line_chart(
    title: &str,
    y_label: &str,
    series: &[(&str, Vec<f64>)],
    y_range: Option<(f64, f64)>,
) -> Result<String> {
    let n = series.iter().map(|(_, v)| v.len()).max().unwrap_or(0).max(1);
    let (lo, hi) = y_range.unwrap_or_else(|| {
        let all = series.iter().flat_map(|(_, v)| v.iter().copied());
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
        let root = SVGBackend::with_string(&mut svg, (480, 300)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| Error::msg(format!("cannot draw chart `{title}`: {e}"));
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(1f64..(n as f64).max(2.0), lo..hi)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(y_label)
            .x_labels(n.min(12))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(|e| err(&e))?;
        let colors = [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44)];
        for (i, (name, values)) in series.iter().enumerate() {
            let color = colors[i % colors.len()];
            chart
                .draw_series(LineSeries::new(
                    values.iter().enumerate().map(|(k, &v)| ((k + 1) as f64, v)),
                    color.stroke_width(2),
                ))
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
