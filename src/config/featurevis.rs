//! `models[i].feature_visualization`: which units are visualised and how. Settings given
//! at the section apply to every layer entry unless the entry gives its own; defaults
//! depend on the model's input (see [`defaults`]). Layer names and unit numbers are checked
//! against the loaded model in `Site::load`.

use super::check::Check;
use super::schema::{RawFeatureVis, RawFvLayer};
use super::Input;
use crate::analysis::featurevis::{Kind, Settings, Transforms};
use crate::error::Result;

/// The largest image side; the default is the input's side up to [`DEFAULT_SIZE`].
pub const MAX_SIZE: usize = 512;
pub const DEFAULT_SIZE: usize = 128;
/// Inputs up to this side get the small-input defaults.
pub const SMALL_INPUT: usize = 64;
/// `units: all` is refused for layers with more units than this (list or range them).
pub const MAX_ALL: usize = 512;

/// Which units of a layer.
#[derive(Debug, Clone, PartialEq)]
pub enum UnitSelection {
    All,
    /// In the order given, without repeats.
    List(Vec<usize>),
}

/// One `layers[j]` entry, resolved.
#[derive(Debug, Clone)]
pub struct FvLayer {
    pub layer: String,
    pub units: UnitSelection,
    pub settings: Settings,
    /// `models[i].feature_visualization.layers[j]`.
    pub key: String,
}

#[derive(Debug, Clone)]
pub struct FeatureVisConfig {
    pub layers: Vec<FvLayer>,
    pub key: String,
}

/// The settings a model gets where the config says nothing: Lucid's (FFT, decorrelated
/// colour, standard transforms, 256 steps at lr 0.05) for photographs; for inputs of at
/// most [`SMALL_INPUT`] pixels the small transforms, and for grey ones a dark start and an
/// ink penalty, so that a digit model draws strokes on black.
pub fn defaults(input: &Input) -> Settings {
    let side = input.height.max(input.width);
    let small = side <= SMALL_INPUT;
    let grey = input.channels == 1;
    let mut transforms = if small {
        Transforms::small()
    } else {
        Transforms::standard()
    };
    if small && !grey {
        transforms.fill = 0.5;
    }
    Settings {
        size: side.min(DEFAULT_SIZE),
        steps: 256,
        lr: 0.05,
        seed: 0,
        kind: Kind::Fft { decay: 1.0 },
        decorrelate: input.channels == 3,
        transforms,
        negative: false,
        images: 1,
        diversity: 100.0,
        offset: if small && grey { -3.0 } else { 0.0 },
        l2: 0.0,
    }
}

/// The settings fields of the section and of a layer entry, in one shape.
struct Fields<'a> {
    size: Option<usize>,
    steps: Option<usize>,
    lr: Option<f32>,
    seed: Option<u64>,
    parameterisation: Option<&'a str>,
    decay: Option<f32>,
    decorrelate: Option<bool>,
    transforms: Option<&'a serde_yaml::Value>,
    negative: Option<bool>,
    images: Option<usize>,
    diversity: Option<f32>,
    offset: Option<f32>,
    l2: Option<f32>,
}

macro_rules! fields {
    ($r:expr) => {
        Fields {
            size: $r.size,
            steps: $r.steps,
            lr: $r.lr,
            seed: $r.seed,
            parameterisation: $r.parameterisation.as_deref(),
            decay: $r.decay,
            decorrelate: $r.decorrelate,
            transforms: $r.transforms.as_ref(),
            negative: $r.negative,
            images: $r.images,
            diversity: $r.diversity,
            offset: $r.offset,
            l2: $r.l2,
        }
    };
}

/// Applies the fields given at `key` over `s`.
fn apply(mut s: Settings, f: &Fields, key: &str, input: &Input, check: &Check) -> Result<Settings> {
    let at = |k: &str| format!("{key}.{k}");
    if let Some(size) = f.size {
        if !(8..=MAX_SIZE).contains(&size) {
            return Err(check.err(
                &at("size"),
                format!("must be between 8 and {MAX_SIZE} pixels, not {size}"),
            ));
        }
        s.size = size;
    }
    if let Some(steps) = f.steps {
        if !(1..=10_000).contains(&steps) {
            return Err(check.err(&at("steps"), format!("must be between 1 and 10000, not {steps}")));
        }
        s.steps = steps;
    }
    if let Some(lr) = f.lr {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(check.err(&at("lr"), format!("must be a positive number, not {lr}")));
        }
        s.lr = lr;
    }
    if let Some(seed) = f.seed {
        s.seed = seed;
    }
    let decay = match f.decay {
        Some(d) if !(d.is_finite() && (0.0..=4.0).contains(&d)) => {
            return Err(check.err(&at("decay"), format!("must be between 0 and 4, not {d}")))
        }
        Some(d) => Some(d),
        None => None,
    };
    match (f.parameterisation, decay) {
        (Some("fft"), d) => {
            s.kind = Kind::Fft {
                decay: d.unwrap_or(match s.kind {
                    Kind::Fft { decay } => decay,
                    Kind::Pixel => 1.0,
                }),
            }
        }
        (Some("pixel"), Some(_)) => {
            return Err(check.err(&at("decay"), "applies to `parameterisation: fft` only"));
        }
        (Some("pixel"), None) => s.kind = Kind::Pixel,
        (Some(other), _) => {
            return Err(check.err(
                &at("parameterisation"),
                format!("unknown parameterisation `{other}` (known: fft, pixel)"),
            ))
        }
        (None, Some(d)) => match s.kind {
            Kind::Fft { .. } => s.kind = Kind::Fft { decay: d },
            Kind::Pixel => return Err(check.err(&at("decay"), "applies to `parameterisation: fft` only")),
        },
        (None, None) => {}
    }
    if let Some(d) = f.decorrelate {
        if d && input.channels != 3 {
            return Err(check.err(
                &at("decorrelate"),
                format!(
                    "colour decorrelation needs a 3-channel input; this model has {}",
                    input.channels
                ),
            ));
        }
        s.decorrelate = d;
    }
    if let Some(t) = f.transforms {
        s.transforms = transforms(t, &at("transforms"), &s.transforms, check)?;
    }
    if let Some(n) = f.negative {
        s.negative = n;
    }
    if let Some(n) = f.images {
        if !(1..=16).contains(&n) {
            return Err(check.err(&at("images"), format!("must be between 1 and 16, not {n}")));
        }
        s.images = n;
    }
    for (name, v, out) in [("diversity", f.diversity, &mut s.diversity), ("l2", f.l2, &mut s.l2)] {
        if let Some(v) = v {
            if !(v.is_finite() && v >= 0.0) {
                return Err(check.err(&at(name), format!("must be a number of at least 0, not {v}")));
            }
            *out = v;
        }
    }
    if let Some(o) = f.offset {
        if !(o.is_finite() && o.abs() <= 10.0) {
            return Err(check.err(&at("offset"), format!("must be between -10 and 10, not {o}")));
        }
        s.offset = o;
    }
    Ok(s)
}

/// `transforms`: a preset name, or a map of the parts (unset parts keep `base`'s).
fn transforms(v: &serde_yaml::Value, key: &str, base: &Transforms, check: &Check) -> Result<Transforms> {
    use serde_yaml::Value;
    match v {
        Value::String(s) => match s.as_str() {
            "standard" => Ok(Transforms::standard()),
            "small" => Ok(Transforms::small()),
            "none" => Ok(Transforms::none()),
            other => Err(check.err(
                key,
                format!("unknown transforms `{other}` (presets: standard, small, none; or a map of pad, fill, jitter, scale, rotate, fine_jitter)"),
            )),
        },
        Value::Mapping(m) => {
            let mut t = base.clone();
            for (k, v) in m {
                let name = k.as_str().unwrap_or("");
                let at = format!("{key}.{name}");
                let num = |v: &Value| v.as_f64().filter(|x| x.is_finite());
                let count = |v: &Value| -> Result<usize> {
                    v.as_u64()
                        .filter(|&n| n <= 64)
                        .map(|n| n as usize)
                        .ok_or_else(|| check.err(&at, "must be a whole number of pixels from 0 to 64"))
                };
                match name {
                    "pad" => t.pad = count(v)?,
                    "jitter" => t.jitter = count(v)?,
                    "fine_jitter" => t.fine_jitter = count(v)?,
                    "fill" => {
                        t.fill = num(v)
                            .filter(|x| (0.0..=1.0).contains(x))
                            .ok_or_else(|| check.err(&at, "must be a pixel value from 0 to 1"))?
                            as f32
                    }
                    "rotate" => {
                        t.rotate = num(v)
                            .filter(|x| (0.0..=180.0).contains(x))
                            .ok_or_else(|| check.err(&at, "must be a number of degrees from 0 to 180"))?
                            as f32
                    }
                    "scale" => {
                        let pair: Option<[f64; 2]> = match v {
                            Value::Sequence(s) if s.len() == 2 => match (num(&s[0]), num(&s[1])) {
                                (Some(a), Some(b)) => Some([a, b]),
                                _ => None,
                            },
                            v => num(v).map(|x| [x, x]),
                        };
                        match pair {
                            Some([a, b]) if a > 0.0 && a <= b && b <= 4.0 => t.scale = [a as f32, b as f32],
                            _ => {
                                return Err(check.err(
                                    &at,
                                    "must be `[min, max]` with 0 < min ≤ max ≤ 4, or one number",
                                ))
                            }
                        }
                    }
                    _ => {
                        return Err(check.err(
                            &at,
                            format!("unknown transform `{name}` (known: pad, fill, jitter, scale, rotate, fine_jitter)"),
                        ))
                    }
                }
            }
            Ok(t)
        }
        _ => Err(check.err(key, "must be a preset name or a map")),
    }
}

/// `units`: `all`, a unit, `"a-b"`, or a list of units and ranges.
fn units(v: &serde_yaml::Value, key: &str, check: &Check) -> Result<UnitSelection> {
    use serde_yaml::Value;
    let bad = || {
        check.err(
            key,
            "must be `all`, a unit number, a range like \"0-3\", or a list of numbers and ranges",
        )
    };
    let one = |v: &Value, out: &mut Vec<usize>| -> Result<()> {
        match v {
            Value::Number(n) => out.push(n.as_u64().ok_or_else(bad)? as usize),
            Value::String(s) => {
                let (a, b) = s.split_once('-').ok_or_else(bad)?;
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if a > b {
                    return Err(check.err(key, format!("range `{s}` runs backwards")));
                }
                if b - a >= 100_000 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            _ => return Err(bad()),
        }
        Ok(())
    };
    let mut list = Vec::new();
    match v {
        Value::String(s) if s == "all" => return Ok(UnitSelection::All),
        Value::Sequence(items) => {
            if items.is_empty() {
                return Err(check.err(key, "lists no unit"));
            }
            for i in items {
                one(i, &mut list)?;
            }
        }
        v => one(v, &mut list)?,
    }
    let mut seen = std::collections::HashSet::new();
    list.retain(|u| seen.insert(*u));
    Ok(UnitSelection::List(list))
}

pub(super) fn resolve(raw: &RawFeatureVis, key: &str, input: &Input, check: &Check) -> Result<FeatureVisConfig> {
    if raw.layers.is_empty() {
        return Err(check.err(&format!("{key}.layers"), "lists no layer"));
    }
    let base = apply(defaults(input), &fields!(raw), key, input, check)?;
    let layers = raw
        .layers
        .iter()
        .enumerate()
        .map(|(j, l): (usize, &RawFvLayer)| {
            let lkey = format!("{key}.layers[{j}]");
            Ok(FvLayer {
                layer: l.layer.clone(),
                units: units(&l.units, &format!("{lkey}.units"), check)?,
                settings: apply(base.clone(), &fields!(l), &lkey, input, check)?,
                key: lkey,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(FeatureVisConfig {
        layers,
        key: key.to_string(),
    })
}
