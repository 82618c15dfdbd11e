//! `{{ figure(...) }}` in notes, checked when the site loads and drawn when the note's page
//! is written. What the arguments name:
//!
//! - `model`, `image`: the input with the model's answer; with `method` (and `target`,
//!   default `predicted`): that method's map in the attribution matrix.
//! - `model`, `layer`, `unit`: the unit's top examples; without `unit`: the layer's class ×
//!   unit matrix; `view="tsne"` (or `"thumbnails"`): the layer's t-SNE embedding;
//!   `view="purity"`, `"ablation"`: the directions page's charts; `view="direction"` with
//!   `unit`: the top examples of that random direction.

use super::Input;
use crate::build::figures::{err, parse, Target};
use crate::content::Note;
use crate::error::Result;
use crate::plan;
use crate::render::shortcodes::{marker, Arg, Shortcode};

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
