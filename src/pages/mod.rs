//! The page layer: every page kind is one file with a typed view (`#[derive(Serialize)]`)
//! built from the loaded site and the typed compute results, and rendered with the theme's
//! template of the same name. Wording and number formatting live here, never in the cache.

pub mod attributions;
pub mod directions;
pub mod embedding;
pub mod featurevis;
pub mod figure;
pub mod gradients;
pub mod home;
pub mod image;
pub mod layer;
pub mod leaderboard;
pub mod manifest;
pub mod method;
pub mod model;
pub mod note;
pub mod overview;
pub mod pictures;
pub mod playground;
pub mod publish;
pub mod randomisation;
pub mod search;
pub mod unit;

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

use crate::build::compute::{ModelResult, PairResult};
use crate::build::featurevis::FvResult;
use crate::build::output::mkdir;
use crate::build::site::Site;
use crate::build::units::UnitsResult;
use crate::config::{ImageConfig, ModelConfig};
use crate::error::{Error, IoContext, Result};
use crate::plan::{self, Pair};
use crate::render::colormap::Scale;
use crate::render::grid;

/// What the pages are made from.
pub struct Input<'a> {
    pub site: &'a Site,
    /// Parallel to the config's models.
    pub models: &'a [ModelResult],
    /// Parallel to the plan's pairs.
    pub pairs: &'a [PairResult],
    /// One per model with unit analyses.
    pub units: &'a [UnitsResult],
    /// One per model with feature visualizations.
    pub featurevis: &'a [FvResult],
}

impl Input<'_> {
    /// The model's and the image's config of a pair.
    pub fn configs(&self, r: &PairResult) -> (&ModelConfig, &ImageConfig) {
        let c = &self.site.config;
        (&c.models[r.pair.model], &c.images[r.pair.image])
    }

    /// The unit analyses of a model, when it has them.
    pub fn units_of(&self, model: usize) -> Option<&UnitsResult> {
        self.units.iter().find(|u| u.model == model)
    }

    /// The feature visualizations of a model, when it has them.
    pub fn featurevis_of(&self, model: usize) -> Option<&FvResult> {
        self.featurevis.iter().find(|r| r.model == model)
    }

    /// The results of every pair of one model.
    pub fn pairs_of_model(&self, model: usize) -> impl Iterator<Item = &PairResult> {
        self.pairs.iter().filter(move |p| p.pair.model == model)
    }
}

/// What every page shows: the site's title, the navigation and the provenance footer.
#[derive(Serialize, Clone)]
pub struct Base {
    /// The relative prefix from the page back to the site root.
    pub root: String,
    /// The page's absolute address, when the build has a `--base-url`.
    pub canonical: Option<String>,
    pub page_title: String,
    pub site: SiteView,
    pub nav: Nav,
    pub provenance: Footer,
    /// The page's language, and the theme's fixed words in it.
    pub lang: String,
    pub t: BTreeMap<String, String>,
    /// The same page in every language it exists in (the language switcher); empty when
    /// it exists in one only.
    pub languages: Vec<LanguageLink>,
    /// The pages before and after this one in reading order (notes, layers, methods).
    pub pager: Option<Pager>,
}

#[derive(Serialize, Clone)]
pub struct LanguageLink {
    pub code: String,
    pub name: String,
    pub href: String,
    pub current: bool,
}

#[derive(Serialize, Clone, Default)]
pub struct Pager {
    pub prev: Option<PagerLink>,
    pub next: Option<PagerLink>,
}

#[derive(Serialize, Clone)]
pub struct PagerLink {
    pub title: String,
    pub href: String,
}

impl Pager {
    /// The neighbours of item `k` of `items` (title, page).
    pub fn of(items: &[(String, String)], k: usize) -> Option<Pager> {
        let link = |i: usize| {
            items.get(i).map(|(title, page)| PagerLink {
                title: title.clone(),
                href: plan::href(page),
            })
        };
        let pager = Pager {
            prev: k.checked_sub(1).and_then(link),
            next: link(k + 1),
        };
        (pager.prev.is_some() || pager.next.is_some()).then_some(pager)
    }
}

#[derive(Serialize, Clone)]
pub struct SiteView {
    pub title: String,
    pub description: String,
}

#[derive(Serialize, Clone)]
pub struct Nav {
    /// The home page in the page's language.
    pub home: String,
    pub models: Vec<ModelLink>,
    pub notes: Vec<NoteLink>,
    /// The header link of the page itself (`aria-current="page"`), and of the model or
    /// note the page belongs to (marked as the current section).
    pub current: Option<String>,
    pub section: Option<String>,
}

#[derive(Serialize, Clone)]
pub struct ModelLink {
    pub id: String,
    pub href: String,
}

#[derive(Serialize, Clone)]
pub struct NoteLink {
    pub title: String,
    pub href: String,
}

/// The footer: what the site was built from, hashes cut to 12 hex digits.
#[derive(Serialize, Clone)]
pub struct Footer {
    pub tool: String,
    pub config: String,
    pub weights: Vec<WeightsHash>,
    pub images: usize,
}

#[derive(Serialize, Clone)]
pub struct WeightsHash {
    pub model: String,
    pub blake3: String,
}

impl Base {
    /// A page in the site's language.
    pub fn new(site: &Site, page: &str, title: &str) -> Base {
        Base::in_language(site, page, title, None)
    }

    /// A page in `lang` (a translation's language), or in the site's language for `None`.
    pub fn in_language(site: &Site, page: &str, title: &str, lang: Option<&str>) -> Base {
        let short = |h: &str| h[..12].to_string();
        let c = &site.config;
        let site_lang = c.site.language.as_str();
        let lang = lang.unwrap_or(site_lang);
        let translation = site.content.translation(lang).filter(|_| lang != site_lang);
        // The notes in the page's language where they are translated, else the site's.
        let mut notes: Vec<NoteLink> = site
            .content
            .notes
            .iter()
            .map(
                |n| match translation.and_then(|t| t.notes.iter().find(|m| m.slug == n.slug)) {
                    Some(m) => NoteLink {
                        title: m.title.clone(),
                        href: plan::href(&plan::in_language(lang, &plan::note_page(&m.slug))),
                    },
                    None => NoteLink {
                        title: n.title.clone(),
                        href: plan::href(&plan::note_page(&n.slug)),
                    },
                },
            )
            .collect();
        if let Some(t) = translation {
            notes.extend(
                t.notes
                    .iter()
                    .filter(|m| !site.content.notes.iter().any(|n| n.slug == m.slug))
                    .map(|m| NoteLink {
                        title: m.title.clone(),
                        href: plan::href(&plan::in_language(lang, &plan::note_page(&m.slug))),
                    }),
            );
        }
        let mut t = site.theme.words.get(site_lang).cloned().unwrap_or_default();
        if let Some(w) = site.theme.words.get(lang) {
            t.extend(w.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Base {
            root: plan::root_from(page),
            canonical: site.base_url.as_ref().map(|b| publish::url(b, page)),
            page_title: title.to_string(),
            site: SiteView {
                title: c.site.title.clone(),
                description: c.site.description.clone(),
            },
            nav: Nav {
                models: c.models.iter().map(|m| model_link(&m.id)).collect(),
                current: Some(plan::href(page)),
                section: c
                    .models
                    .iter()
                    .map(|m| plan::model_page(&m.id))
                    .chain(notes.iter().map(|n| n.href.trim_end_matches("/index.html").to_string()))
                    .find(|p| page == p || page.starts_with(&format!("{p}/")))
                    .map(|p| plan::href(&p)),
                notes,
                home: plan::href(&plan::in_language(if lang == site_lang { "" } else { lang }, "")),
            },
            provenance: Footer {
                tool: tool(),
                config: short(&site.hashes.config),
                weights: c
                    .models
                    .iter()
                    .zip(&site.hashes.weights)
                    .map(|(m, h)| WeightsHash {
                        model: m.id.clone(),
                        blake3: short(h),
                    })
                    .collect(),
                images: c.images.len(),
            },
            languages: languages(site, page),
            lang: lang.to_string(),
            t,
            pager: None,
        }
    }
}

/// The language versions of a page: the home page and notes can have several.
fn languages(site: &Site, page: &str) -> Vec<LanguageLink> {
    let content = &site.content;
    let site_lang = &site.config.site.language;
    if content.translations.is_empty() {
        return Vec::new();
    }
    // The page in the site's language it is a version of.
    let (lang, neutral) = match content
        .translations
        .iter()
        .find(|t| page == t.lang || page.starts_with(&format!("{}/", t.lang)))
    {
        Some(t) => (
            t.lang.as_str(),
            page.strip_prefix(t.lang.as_str()).unwrap_or("").trim_start_matches('/'),
        ),
        None => (site_lang.as_str(), page),
    };
    let has = |notes: &[crate::content::Note]| {
        neutral.is_empty() || notes.iter().any(|n| plan::note_page(&n.slug) == neutral)
    };
    let mut out = Vec::new();
    let mut add = |code: &str| {
        out.push(LanguageLink {
            code: code.to_string(),
            name: site
                .theme
                .words
                .get(code)
                .and_then(|w| w.get("language_name"))
                .cloned()
                .unwrap_or_else(|| code.to_string()),
            href: plan::href(&plan::in_language(if code == site_lang { "" } else { code }, neutral)),
            current: code == lang,
        })
    };
    let is_note = |p: &str| p.starts_with("notes/");
    if !(neutral.is_empty() || is_note(neutral)) {
        return Vec::new();
    }
    if has(&content.notes) {
        add(site_lang);
    }
    for t in &content.translations {
        if has(&t.notes) {
            add(&t.lang);
        }
    }
    if out.len() < 2 {
        out.clear();
    }
    out
}

pub fn model_link(id: &str) -> ModelLink {
    ModelLink {
        id: id.to_string(),
        href: plan::href(&plan::model_page(id)),
    }
}

/// The tool and its version, as pages and the manifest name it.
pub fn tool() -> String {
    format!("cnnscope {}", env!("CARGO_PKG_VERSION"))
}

/// A pair as other pages link to it: the input, the top class and whether it is right.
#[derive(Serialize)]
pub struct PairLink {
    pub model: String,
    pub image: String,
    pub href: String,
    pub input: String,
    pub top1: String,
    pub top1_probability: String,
    pub correct: Option<bool>,
    /// The whole network on this image.
    pub overview: String,
}

pub fn pair_link(site: &Site, r: &PairResult) -> PairLink {
    let Pair { model, image } = r.pair;
    let (mc, ic) = (&site.config.models[model], &site.config.images[image]);
    let top = &r.top5[0];
    PairLink {
        model: mc.id.clone(),
        image: ic.id.clone(),
        href: plan::href(&plan::image_page(&mc.id, &ic.id)),
        input: r.input_png.clone(),
        top1: top.name.clone(),
        top1_probability: pct(top.probability),
        correct: ic.label_index(mc).map(|l| l == top.index),
        overview: plan::href(&plan::overview_page(&mc.id, &ic.id)),
    }
}

/// A probability as pages show it.
pub fn pct(p: f32) -> String {
    format!("{:.1}%", 100.0 * p)
}

/// A count as pages show it: `12,345`.
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A shape as pages show it: `6×14×14`.
pub fn shape_str(shape: &[usize]) -> String {
    shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×")
}

/// The colour bar picture of a scale's colour map (drawn once per site, in `static/`).
pub fn colorbar(scale: &Scale) -> &'static str {
    match scale {
        Scale::Sequential { .. } => "static/colorbar-sequential.png",
        Scale::Diverging { .. } => "static/colorbar-diverging.png",
    }
}

/// Renders `template` with `view` into `out/page/index.html`.
pub fn render(site: &Site, out: &Path, page: &str, template: &str, view: &impl Serialize) -> Result<()> {
    let ctx = tera::Context::from_serialize(view)
        .map_err(|e| Error::msg(format!("page `{page}`: the view of template `{template}`: {e}")))?;
    let html = site.theme.render(template, &ctx)?;
    let d = out.join(page);
    mkdir(&d)?;
    // Whole or not at all: `serve` redraws notes in the folder it is serving.
    crate::build::output::write_whole(&d.join("index.html"), html)
}

/// Writes the theme's static files and every page; returns the number of pages.
pub fn write(input: &Input, out: &Path) -> Result<usize> {
    let site = input.site;
    mkdir(&out.join("static"))?;
    for (name, bytes) in &site.theme.statics {
        let p = out.join("static").join(name);
        std::fs::write(&p, bytes).at_path(&p)?;
    }
    grid::save_png(
        &grid::colorbar(&Scale::Sequential { min: 0.0, max: 1.0 }, 256, 12),
        &out.join("static/colorbar-sequential.png"),
    )?;
    grid::save_png(
        &grid::colorbar(&Scale::Diverging { abs: 1.0 }, 256, 12),
        &out.join("static/colorbar-diverging.png"),
    )?;
    // Each page kind writes its own files, so the kinds render in parallel.
    type Writer = fn(&Input, &Path) -> Result<usize>;
    let writers: [Writer; 13] = [
        image::write,
        unit::write,
        home::write,
        model::write,
        method::write,
        leaderboard::write,
        layer::write,
        embedding::write,
        directions::write,
        featurevis::write,
        playground::write,
        overview::write,
        note::write,
    ];
    let counts = writers
        .par_iter()
        .map(|w| w(input, out))
        .collect::<Result<Vec<usize>>>()?;
    // Last: the sitemap lists every page written, and the search index reads them.
    let pages = counts.iter().sum::<usize>() + publish::write(input, out)?;
    search::write(input, out)?;
    Ok(pages)
}
