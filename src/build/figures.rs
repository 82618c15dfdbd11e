//! `{{ figure(...) }}` in notes, checked against the loaded site: each figure's arguments
//! resolved to what it names (a model, an image, a method, a layer, a unit, a view), or an
//! error with the note's path and line. `pages::figure` draws them.

use std::collections::BTreeMap;

use super::site::Site;
use crate::content::Note;
use crate::error::{Error, Result};
use crate::methods;
use crate::render::shortcodes::{Arg, Shortcode};

const KEYS: &[&str] = &["model", "layer", "unit", "image", "method", "target", "view"];
const VIEWS: &[&str] = &["units", "tsne", "thumbnails", "purity", "ablation", "direction"];

pub fn err(note: &Note, code: &Shortcode, msg: impl std::fmt::Display) -> Error {
    Error::at_line(&note.source, Some(code.line), format!("figure: {msg}"))
}

fn text<'a>(args: &'a BTreeMap<String, Arg>, key: &str) -> std::result::Result<Option<&'a str>, String> {
    match args.get(key) {
        None => Ok(None),
        Some(Arg::Str(s)) => Ok(Some(s)),
        Some(Arg::Int(i)) => Err(format!("`{key}` must be a quoted name, not {i}")),
    }
}

/// What a figure names, checked against the config and the loaded models.
pub enum Target<'a> {
    Input {
        model: usize,
        image: usize,
    },
    Map {
        model: usize,
        image: usize,
        method: usize,
        target: Option<&'a Arg>,
    },
    Layer {
        model: usize,
        layer: &'a str,
        unit: Option<usize>,
        view: &'a str,
    },
}

pub fn parse<'a>(site: &Site, code: &'a Shortcode) -> std::result::Result<Target<'a>, String> {
    let c = &site.config;
    if let Some(k) = code.args.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("unknown argument `{k}` (known: {})", KEYS.join(", ")));
    }
    let model_id = text(&code.args, "model")?.ok_or("`model` is required")?;
    let model = c.models.iter().position(|m| m.id == model_id).ok_or_else(|| {
        let ids: Vec<&str> = c.models.iter().map(|m| m.id.as_str()).collect();
        format!("no model `{model_id}` (models: {})", ids.join(", "))
    })?;
    let mc = &c.models[model];
    let unit = match code.args.get("unit") {
        None => None,
        Some(Arg::Int(u)) => Some(*u),
        Some(Arg::Str(s)) => return Err(format!("`unit` must be a number, not \"{s}\"")),
    };
    if let Some(image_id) = text(&code.args, "image")? {
        for k in ["layer", "unit", "view"] {
            if code.args.contains_key(k) {
                return Err(format!("`{k}` does not go with `image`"));
            }
        }
        let image = c
            .images
            .iter()
            .position(|i| i.id == image_id && i.models.contains(&mc.id))
            .ok_or_else(|| format!("no image `{image_id}` shown with model `{model_id}`"))?;
        return match text(&code.args, "method")? {
            None => {
                if code.args.contains_key("target") {
                    return Err("`target` needs a `method`".into());
                }
                Ok(Target::Input { model, image })
            }
            Some(name) => {
                let slugs = methods::slugs(&mc.methods);
                let method = (0..mc.methods.len())
                    .find(|&k| mc.methods[k].is_map() && (mc.methods[k].name() == name || slugs[k] == name))
                    .ok_or_else(|| {
                        let maps: Vec<&str> = mc.methods.iter().filter(|m| m.is_map()).map(|m| m.name()).collect();
                        format!(
                            "model `{model_id}` draws no map with `{name}` (its map methods: {})",
                            maps.join(", ")
                        )
                    })?;
                Ok(Target::Map {
                    model,
                    image,
                    method,
                    target: code.args.get("target"),
                })
            }
        };
    }
    for k in ["method", "target"] {
        if code.args.contains_key(k) {
            return Err(format!("`{k}` needs an `image`"));
        }
    }
    let layer =
        text(&code.args, "layer")?.ok_or("give `image` (a picture of an input) or `layer` (of the unit analyses)")?;
    let view = text(&code.args, "view")?.unwrap_or("units");
    if !VIEWS.contains(&view) {
        return Err(format!("unknown view `{view}` (views: {})", VIEWS.join(", ")));
    }
    let mu = site.units[model]
        .as_ref()
        .ok_or_else(|| format!("model `{model_id}` has no unit analyses (`units:` in the config)"))?;
    let (ok, what) = match view {
        "units" => (
            mu.layers.iter().any(|l| l == layer),
            "among its analysed layers (`units.layers`)",
        ),
        "tsne" | "thumbnails" => (
            mu.config
                .embedding
                .as_ref()
                .is_some_and(|e| e.layers.iter().any(|l| l == layer)),
            "among its embedded layers (`units.embedding.layers`)",
        ),
        _ => (
            mu.config.directions.as_ref().is_some_and(|d| d.layer == layer),
            "its directions layer (`units.directions.layer`)",
        ),
    };
    if !ok {
        return Err(format!("layer `{layer}` of model `{model_id}` is not {what}"));
    }
    let units = site.models[model]
        .model
        .layers()
        .iter()
        .find(|l| l.name == layer)
        .map_or(0, |l| l.output_shape[0]);
    match (view, unit) {
        ("direction", None) => return Err("`view=\"direction\"` needs `unit` (the direction's number)".into()),
        ("tsne" | "thumbnails" | "purity" | "ablation", Some(_)) => {
            return Err(format!("`unit` does not go with `view=\"{view}\"`"))
        }
        (_, Some(u)) if view == "units" && u >= units => {
            return Err(format!(
                "layer `{layer}` has {units} units (0..{}), not unit {u}",
                units.saturating_sub(1)
            ))
        }
        _ => {}
    }
    Ok(Target::Layer {
        model,
        layer,
        unit,
        view,
    })
}

/// Checks every figure of every note (at load, so `check` finds them too).
pub fn check(site: &Site) -> Result<()> {
    for note in site.content.intro.iter().chain(&site.content.notes) {
        for code in &note.figures {
            parse(site, code).map_err(|m| err(note, code, m))?;
        }
    }
    Ok(())
}
