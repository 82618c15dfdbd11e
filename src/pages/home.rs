//! The home page: the intro note, the models, the images with each model's top class.

use std::path::Path;

use serde::Serialize;

use super::{pair_link, pct, render, Base, Input, PairLink};
use crate::error::Result;
use crate::plan;
use crate::render::markdown::to_html;

#[derive(Serialize)]
pub struct HomeView {
    #[serde(flatten)]
    pub base: Base,
    pub intro: Option<String>,
    pub models: Vec<ModelCard>,
    pub images: Vec<ImageCard>,
}

#[derive(Serialize)]
pub struct ModelCard {
    pub id: String,
    pub arch: &'static str,
    pub summary: &'static str,
    pub parameters: usize,
    pub description: String,
    pub href: String,
    pub accuracy: Option<String>,
}

#[derive(Serialize)]
pub struct ImageCard {
    pub id: String,
    pub caption: String,
    pub pairs: Vec<PairLink>,
    pub thumb: Option<String>,
}

/// The home page in `lang` (a translation's), or in the site's language for `None`.
pub fn view(input: &Input, lang: Option<&str>) -> Result<HomeView> {
    let site = input.site;
    let page = plan::in_language(lang.unwrap_or(""), "");
    let models = site
        .config
        .models
        .iter()
        .enumerate()
        .map(|(mi, m)| ModelCard {
            id: m.id.clone(),
            arch: m.arch.id,
            summary: m.arch.summary,
            parameters: site.models[mi].model.layers().iter().map(|l| l.parameters).sum(),
            description: to_html(&m.description),
            href: plan::href(&plan::model_page(&m.id)),
            accuracy: site.training[mi].as_ref().map(|l| pct(l.test_accuracy as f32)),
        })
        .collect();
    let images = site
        .config
        .images
        .iter()
        .enumerate()
        .map(|(ii, ic)| {
            let pairs: Vec<PairLink> = input
                .pairs
                .iter()
                .filter(|r| r.pair.image == ii)
                .map(|r| pair_link(site, r))
                .collect();
            ImageCard {
                id: ic.id.clone(),
                caption: to_html(&ic.caption),
                thumb: pairs.first().map(|l| l.input.clone()),
                pairs,
            }
        })
        .collect();
    Ok(HomeView {
        base: Base::in_language(site, &page, &site.config.site.title, lang),
        // A translation without its own `index.<lang>.md` shows the site's introduction.
        intro: lang
            .and_then(|l| site.content.translation(l))
            .and_then(|t| t.intro.as_ref())
            .or(site.content.intro.as_ref())
            .map(|n| super::figure::resolve(input, n, &page))
            .transpose()?,
        models,
        images,
    })
}

pub fn write(input: &Input, out: &Path) -> Result<usize> {
    write_one(input, out, None)?;
    for t in &input.site.content.translations {
        write_one(input, out, Some(&t.lang))?;
    }
    Ok(1 + input.site.content.translations.len())
}

/// The home page of one language (`None`: the site's).
pub fn write_one(input: &Input, out: &Path, lang: Option<&str>) -> Result<usize> {
    let page = plan::in_language(lang.unwrap_or(""), "");
    render(input.site, out, &page, "index.html", &view(input, lang)?)?;
    Ok(1)
}
