//! One page per model and map method: the method on every image, for each image's targets.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::{model_link, pct, render, Base, Input, ModelLink};
use crate::error::Result;
use crate::methods::{self, ModelInfo};
use crate::plan;

#[derive(Serialize)]
pub struct MethodView {
    #[serde(flatten)]
    pub base: Base,
    pub model: ModelLink,
    pub method: MethodHeader,
    pub images: Vec<ImageRow>,
    /// The method's faithfulness over the model's images, when the metrics ran.
    pub faithfulness: Option<MethodScore>,
}

#[derive(Serialize)]
pub struct MethodScore {
    pub deletion: Option<String>,
    pub insertion: Option<String>,
    /// Mean Spearman correlation after the last randomisation checkpoint.
    pub randomisation: Option<String>,
    /// Its maps barely change when the model's weights are randomised.
    pub insensitive: bool,
    pub threshold: f64,
    pub leaderboard: String,
}

#[derive(Serialize)]
pub struct MethodHeader {
    pub id: &'static str,
    pub title: &'static str,
    /// What it computes (two lines).
    pub definition: &'static str,
    /// The parameters as applied.
    pub params: Value,
    /// Its formulas, from `docs/methods.md` § Formulas, as HTML with MathML.
    pub formulas: Option<String>,
    /// The colour map its pictures use, and its bar.
    pub colormap: Option<&'static str>,
    pub colorbar: Option<&'static str>,
}

#[derive(Serialize)]
pub struct ImageRow {
    pub id: String,
    pub href: String,
    pub cells: Vec<Thumb>,
}

#[derive(Serialize)]
pub struct Thumb {
    /// The cell in the image's attribution matrix (opened there).
    pub href: String,
    pub overlay: String,
    pub target: String,
    pub roles: String,
    pub probability: String,
}

pub fn view(input: &Input, mi: usize, k: usize, slug: &str) -> MethodView {
    let site = input.site;
    let mc = &site.config.models[mi];
    let method = &mc.methods[k];
    let page = plan::method_page(&mc.id, slug);
    let info = ModelInfo {
        arch: mc.arch,
        input: &mc.input,
        layers: site.models[mi].model.layers(),
    };
    let images = input
        .pairs_of_model(mi)
        .filter_map(|r| {
            let ic = &site.config.images[r.pair.image];
            let row = r.explained.rows.iter().find(|row| row.slug == slug)?;
            Some(ImageRow {
                id: ic.id.clone(),
                href: format!("{}#{slug}", plan::href(&plan::attributions_page(&mc.id, &ic.id))),
                cells: row
                    .cells
                    .iter()
                    .filter_map(|c| Some((c, r.explained.targets.iter().find(|t| t.index == c.target)?)))
                    .map(|(c, t)| Thumb {
                        href: format!(
                            "{}#{slug}-{}",
                            plan::href(&plan::attributions_page(&mc.id, &ic.id)),
                            t.index
                        ),
                        overlay: c.overlay.clone(),
                        target: t.name.clone(),
                        roles: t.roles.join(", "),
                        probability: pct(t.probability),
                    })
                    .collect(),
            })
        })
        .collect();
    // Every cell of a method uses one kind of scale; the first says which.
    let scale = input.pairs_of_model(mi).find_map(|r| {
        r.explained
            .rows
            .iter()
            .find(|row| row.slug == slug)?
            .cells
            .first()
            .map(|c| c.scale)
    });
    MethodView {
        base: Base::new(
            site,
            &page,
            &format!("{} on {} · {}", method.title(), mc.id, site.config.site.title),
        ),
        faithfulness: super::leaderboard::scores(input, mi)
            .and_then(|all| all.into_iter().find(|s| s.method == k))
            .map(|s| MethodScore {
                deletion: s.deletion.map(|d| format!("{:.3} ± {:.3}", d.mean, d.sd)),
                insertion: s.insertion.map(|d| format!("{:.3} ± {:.3}", d.mean, d.sd)),
                randomisation: s.randomisation.map(|d| format!("{:.2} ± {:.2}", d.mean, d.sd)),
                insensitive: s.insensitive(),
                threshold: crate::metrics::INSENSITIVE_ABOVE,
                leaderboard: plan::href(&plan::leaderboard_page(&mc.id)),
            }),
        model: model_link(&mc.id),
        method: MethodHeader {
            id: method.name(),
            title: method.title(),
            definition: method.definition(),
            params: method.params(&info),
            formulas: formulas(method.name()),
            colormap: scale.as_ref().map(|s| s.name()),
            colorbar: scale.as_ref().map(super::colorbar),
        },
        images,
    }
}

/// The methods' reference, whose formulas the method pages show (one source for both).
const METHODS_DOC: &str = include_str!("../../docs/methods.md");

/// The part of `docs/methods.md`'s `## Formulas` under `` ### `<name>` ``, rendered.
pub fn formulas(name: &str) -> Option<String> {
    let section = METHODS_DOC.split("\n## Formulas\n").nth(1)?;
    let section = section.split("\n## ").next()?;
    let heading = format!("### `{name}`\n");
    let start = section.find(&heading)? + heading.len();
    let part = &section[start..];
    let part = &part[..part.find("\n### ").unwrap_or(part.len())];
    // Links in the reference are relative to docs/, not to the site.
    crate::render::markdown::note_html(part, true).ok()
}

pub fn write(input: &Input, out: &Path) -> Result<usize> {
    let site = input.site;
    let mut pages = 0;
    for (mi, mc) in site.config.models.iter().enumerate() {
        let slugs = methods::slugs(&mc.methods);
        // The map methods in the config's order, each linked to its neighbours.
        let maps: Vec<usize> = (0..mc.methods.len()).filter(|&k| mc.methods[k].is_map()).collect();
        let order: Vec<(String, String)> = maps
            .iter()
            .map(|&k| (mc.methods[k].title().to_string(), plan::method_page(&mc.id, &slugs[k])))
            .collect();
        for (j, &k) in maps.iter().enumerate() {
            let mut v = view(input, mi, k, &slugs[k]);
            v.base.pager = super::Pager::of(&order, j);
            render(site, out, &order[j].1, "method.html", &v)?;
            pages += 1;
        }
    }
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_map_method_has_its_formulas_as_mathml() {
        for name in methods::names() {
            let html = formulas(name).unwrap_or_else(|| panic!("no formulas for `{name}` in docs/methods.md"));
            assert!(html.contains("<math display=\"block\">"), "{name}: {html}");
            assert!(!html.contains('$') && !html.contains("<a "), "{name}: {html}");
        }
        assert!(formulas("gradcam").unwrap().contains("<mfrac>"));
        assert!(formulas("no-such-method").is_none());
    }
}
