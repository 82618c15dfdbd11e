//! `{{ figure(...) }}` in notes, checked when the site loads and drawn when the note's page
//! is written. What the arguments name:
//!
//! - `model`, `image`: the input with the model's answer; with `method` (and `target`,
//!   default `predicted`): that method's map in the attribution matrix.
//! - `model`, `layer`, `unit`: the unit's top examples; without `unit`: the layer's class ×
//!   unit matrix; `view="tsne"` (or `"thumbnails"`): the layer's t-SNE embedding;
//!   `view="purity"`, `"ablation"`: the directions page's charts; `view="direction"` with
//!   `unit`: the top examples of that random direction.

use std::collections::BTreeMap;

use super::Input;
use crate::build::site::Site;
use crate::content::Note;
use crate::error::{Error, Result};
use crate::methods;
use crate::plan;
use crate::render::shortcodes::{marker, Arg, Shortcode};

const KEYS: &[&str] = &["model", "layer", "unit", "image", "method", "target", "view"];
const VIEWS: &[&str] = &["units", "tsne", "thumbnails", "purity", "ablation", "direction"];

fn err(note: &Note, code: &Shortcode, msg: impl std::fmt::Display) -> Error {
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
enum Target<'a> {
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

fn parse<'a>(site: &Site, code: &'a Shortcode) -> std::result::Result<Target<'a>, String> {
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

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A figure's picture (a site path, or an inline SVG), its caption and the page it opens.
struct Drawn {
    png: Option<String>,
    svg: Option<String>,
    caption: String,
    href: String,
}

fn draw(input: &Input, note: &Note, code: &Shortcode) -> Result<Drawn> {
    let site = input.site;
    let target = parse(site, code).map_err(|m| err(note, code, m))?;
    let missing = |what: &str| err(note, code, format!("{what} was not built (is it in the config?)"));
    let c = &site.config;
    Ok(match target {
        Target::Input { model, image } => {
            let (mc, ic) = (&c.models[model], &c.images[image]);
            let r = input
                .pairs
                .iter()
                .find(|p| p.pair.model == model && p.pair.image == image)
                .ok_or_else(|| missing("the pair"))?;
            Drawn {
                png: Some(r.input_png.clone()),
                svg: None,
                caption: format!(
                    "{} through {}: {} ({})",
                    ic.id,
                    mc.id,
                    r.top5[0].name,
                    super::pct(r.top5[0].probability)
                ),
                href: plan::href(&plan::image_page(&mc.id, &ic.id)),
            }
        }
        Target::Map {
            model,
            image,
            method,
            target,
        } => {
            let (mc, ic) = (&c.models[model], &c.images[image]);
            let r = input
                .pairs
                .iter()
                .find(|p| p.pair.model == model && p.pair.image == image)
                .ok_or_else(|| missing("the pair"))?;
            let row = r
                .explained
                .rows
                .iter()
                .find(|row| row.method == method)
                .ok_or_else(|| missing("the method's row"))?;
            let targets = &r.explained.targets;
            let want = target.cloned().unwrap_or(Arg::Str("predicted".into()));
            let t = targets
                .iter()
                .position(|t| match &want {
                    Arg::Int(i) => t.index == *i,
                    Arg::Str(s) => t.roles.contains(&s.as_str()) || &t.name == s,
                })
                .ok_or_else(|| {
                    let have: Vec<String> = targets
                        .iter()
                        .map(|t| format!("{} ({})", t.name, t.roles.join(", ")))
                        .collect();
                    err(
                        note,
                        code,
                        format!(
                            "target `{want}` is not among the targets of {} × {}: {}",
                            mc.id,
                            ic.id,
                            have.join("; ")
                        ),
                    )
                })?;
            let cell = row
                .cells
                .iter()
                .find(|cell| cell.target == targets[t].index)
                .ok_or_else(|| missing("the map"))?;
            Drawn {
                png: Some(cell.overlay.clone()),
                svg: None,
                caption: format!(
                    "{} of “{}” on {} ({})",
                    mc.methods[method].title(),
                    targets[t].name,
                    ic.id,
                    mc.id
                ),
                href: plan::href(&plan::attributions_page(&mc.id, &ic.id)),
            }
        }
        Target::Layer {
            model,
            layer,
            unit,
            view,
        } => {
            let mc = &c.models[model];
            let u = input.units_of(model).ok_or_else(|| missing("the unit analyses"))?;
            match view {
                "units" => {
                    let l = u
                        .layers
                        .iter()
                        .find(|l| l.layer == layer)
                        .ok_or_else(|| missing("the layer"))?;
                    match unit {
                        Some(k) => Drawn {
                            png: Some(l.units[k].top_png.clone()),
                            svg: None,
                            caption: format!("the top examples of unit {k} of {layer} ({})", mc.id),
                            href: plan::href(&plan::unit_page(&mc.id, layer, k)),
                        },
                        None => Drawn {
                            png: Some(
                                l.matrix_png
                                    .clone()
                                    .ok_or_else(|| missing("the class × unit matrix (it needs labels)"))?,
                            ),
                            svg: None,
                            caption: format!("class × unit mean activations of {layer} ({}), units clustered", mc.id),
                            href: plan::href(&plan::layer_page(&mc.id, layer)),
                        },
                    }
                }
                "tsne" | "thumbnails" => {
                    let e = u
                        .embeddings
                        .iter()
                        .find(|e| e.layer == layer)
                        .ok_or_else(|| missing("the embedding"))?;
                    let href = plan::href(&plan::embedding_page(&mc.id, layer));
                    let caption = format!(
                        "t-SNE of {layer} ({}){}",
                        mc.id,
                        e.knn_accuracy
                            .map(|a| format!(", 10-NN accuracy {:.1}%", 100.0 * a))
                            .unwrap_or_default()
                    );
                    if view == "tsne" {
                        Drawn {
                            png: None,
                            svg: Some(super::embedding::scatter(site, u.model, e)?),
                            caption,
                            href,
                        }
                    } else {
                        Drawn {
                            png: Some(e.thumbs_png.clone()),
                            svg: None,
                            caption,
                            href,
                        }
                    }
                }
                _ => {
                    let d = u.directions.as_ref().ok_or_else(|| missing("the directions"))?;
                    let href = plan::href(&plan::directions_page(&mc.id, layer));
                    match view {
                        "purity" => Drawn {
                            png: None,
                            svg: Some(super::directions::purity_chart(d)?),
                            caption: format!(
                                "class purity of the top examples of {layer}'s units and of random directions ({})",
                                mc.id
                            ),
                            href,
                        },
                        "ablation" => Drawn {
                            png: None,
                            svg: Some(super::directions::ablation_chart(d)?),
                            caption: format!(
                                "accuracy after removing k units or k random directions of {layer} ({})",
                                mc.id
                            ),
                            href,
                        },
                        _ => {
                            let k = unit.expect("checked");
                            let png = d.direction_pngs.get(k).ok_or_else(|| {
                                err(
                                    note,
                                    code,
                                    format!("there are {} random directions, not direction {k}", d.count),
                                )
                            })?;
                            Drawn {
                                png: Some(png.clone()),
                                svg: None,
                                caption: format!("the top examples of random direction {k} of {layer} ({})", mc.id),
                                href,
                            }
                        }
                    }
                }
            }
        }
    })
}

/// The note's HTML with its figures drawn, for a page at `page`.
pub fn resolve(input: &Input, note: &Note, page: &str) -> Result<String> {
    let root = plan::root_from(page);
    let mut html = note.html.clone();
    for (i, code) in note.figures.iter().enumerate() {
        let d = draw(input, note, code)?;
        let picture = match (&d.png, &d.svg) {
            (Some(png), _) => format!(
                "<img src=\"{root}{}\" alt=\"{}\" loading=\"lazy\">",
                escape(png),
                escape(&d.caption)
            ),
            (None, Some(svg)) => format!(
                "<span class=\"chart\" role=\"img\" aria-label=\"{}\">{svg}</span>",
                escape(&d.caption)
            ),
            (None, None) => String::new(),
        };
        let link = format!("<a href=\"{root}{}\">", escape(&d.href));
        let block = format!(
            "<figure class=\"note-figure\">{link}{picture}</a><figcaption>{} {link}(open)</a></figcaption></figure>",
            escape(&d.caption)
        );
        let m = marker(i);
        html = if html.contains(&format!("<p>{m}</p>")) {
            html.replace(&format!("<p>{m}</p>"), &block)
        } else {
            html.replace(&m, &format!("{link}{picture}</a>"))
        };
    }
    Ok(html)
}
