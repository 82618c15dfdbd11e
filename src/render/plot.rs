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

/// A feature visualization's objective over the optimisation steps (x = 1, 2, …).
/// The value of each step is under that step's random transforms.
pub fn objective_chart(title: &str, curve: &[f32]) -> Result<String> {
    let n = curve.len().max(2);
    let points: Vec<(f64, f64)> = curve
        .iter()
        .enumerate()
        .map(|(k, &y)| ((k + 1) as f64, y as f64))
        .collect();
    let axis = Axis {
        desc: "step",
        range: (1.0, n as f64),
        labels: 6,
        format: |x| format!("{x:.0}"),
    };
    xy_chart(title, "mean activation", &[("", points)], axis, None, (360, 240))
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
        // One unnamed series needs no legend (the title says what it is).
        if !(series.len() == 1 && series[0].0.is_empty()) {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

/// Ten distinct colours (Tableau 10), one per class of a scatter.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The colour of class `c` in scatters, as CSS.
pub fn class_colour(c: usize) -> String {
    let RGBColor(r, g, b) = PALETTE[c % PALETTE.len()];
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn chart_err(title: &str) -> impl Fn(&dyn std::fmt::Display) -> Error + '_ {
    move |e| Error::msg(format!("cannot draw chart `{title}`: {e}"))
}

/// The frame the small charts share: title, margins and label areas.
fn small_chart<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    title: &str,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut b = ChartBuilder::on(root);
    b.caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(34)
        .y_label_area_size(48);
    b
}

/// Histograms over the same bins `[min, max]`, drawn as overlaid translucent bars.
pub fn histogram_chart(
    title: &str,
    x_label: &str,
    min: f64,
    max: f64,
    series: &[(&str, Vec<usize>)],
) -> Result<String> {
    let bins = series.iter().map(|(_, c)| c.len()).max().unwrap_or(1).max(1);
    let top = series
        .iter()
        .flat_map(|(_, c)| c.iter())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let max = if max > min { max } else { min + 1.0 };
    let width = (max - min) / bins as f64;
    let err = chart_err(title);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (400, 240)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = small_chart(&root, title)
            .build_cartesian_2d(min..max, 0.0..top * 1.05)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc("examples")
            .x_labels(6)
            // Counts are whole: no more labels than there are whole numbers to show.
            .y_labels((top as usize + 1).min(6))
            .x_label_formatter(&|x| format!("{x:.2}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, (name, counts)) in series.iter().enumerate() {
            let colour = PALETTE[if i == 0 { 0 } else { 3 }];
            chart
                .draw_series(counts.iter().enumerate().filter(|(_, &c)| c > 0).map(|(b, &c)| {
                    let x0 = min + b as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width, c as f64)], colour.mix(0.55).filled())
                }))
                .map_err(|e| err(&e))?
                .label(*name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.mix(0.55).filled()));
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

/// One bar per label (class-mean activations).
pub fn bar_chart(title: &str, y_label: &str, labels: &[String], values: &[f64]) -> Result<String> {
    let n = values.len().max(1);
    let hi = values.iter().copied().fold(0.0f64, f64::max).max(1e-9) * 1.08;
    let lo = values.iter().copied().fold(0.0f64, f64::min);
    let err = chart_err(title);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (400, 240)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = small_chart(&root, title)
            .build_cartesian_2d(0.0..n as f64, lo..hi)
            .map_err(|e| err(&e))?;
        let names = labels.to_vec();
        chart
            .configure_mesh()
            .y_desc(y_label)
            .x_labels(n * 2 + 1)
            .x_label_formatter(&move |x| {
                let i = (x - 0.5).round();
                if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
                    names
                        .get(i as usize)
                        .map(|s| s.chars().take(10).collect())
                        .unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .disable_x_mesh()
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(
                values
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| Rectangle::new([(i as f64 + 0.15, 0.0), (i as f64 + 0.85, v)], PALETTE[0].filled())),
            )
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

/// Points coloured by class, with a legend of the class names.
pub fn scatter_chart(title: &str, points: &[f32], classes: &[usize], names: &[String]) -> Result<String> {
    let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    for p in points.chunks(2) {
        for a in 0..2 {
            lo[a] = lo[a].min(p[a] as f64);
            hi[a] = hi[a].max(p[a] as f64);
        }
    }
    if !lo[0].is_finite() {
        (lo, hi) = ([0.0; 2], [1.0; 2]);
    }
    let pad = |a: usize| ((hi[a] - lo[a]) * 0.04).max(1e-6);
    let err = chart_err(title);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .build_cartesian_2d(lo[0] - pad(0)..hi[0] + pad(0), lo[1] - pad(1)..hi[1] + pad(1))
            .map_err(|e| err(&e))?;
        let used: std::collections::BTreeSet<usize> = classes.iter().copied().collect();
        for &c in &used {
            let colour = PALETTE[c % PALETTE.len()];
            chart
                .draw_series(
                    points
                        .chunks(2)
                        .zip(classes)
                        .filter(|(_, &k)| k == c)
                        .map(|(p, _)| Circle::new((p[0] as f64, p[1] as f64), 2, colour.filled())),
                )
                .map_err(|e| err(&e))?
                .label(names.get(c).cloned().unwrap_or_else(|| c.to_string()))
                .legend(move |(x, y)| Circle::new((x + 6, y), 4, colour.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

/// Accuracy against k = 1, 2, 4, … (a log₂ axis), one line per series.
pub fn ablation_chart(title: &str, ks: &[usize], series: &[(&str, Vec<f64>)]) -> Result<String> {
    let points: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, v)| (*name, ks.iter().zip(v).map(|(&k, &a)| ((k as f64).log2(), a)).collect()))
        .collect();
    let axis = Axis {
        desc: "k (log scale)",
        range: (0.0, ks.last().map_or(1.0, |&k| (k as f64).log2()).max(1.0)),
        labels: ks.len().max(2),
        format: |x| format!("{:.0}", 2f64.powf(*x)),
    };
    xy_chart(title, "held-out accuracy", &points, axis, Some((0.0, 1.0)), (420, 260))
}
