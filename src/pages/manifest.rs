//! `manifest.json`: the models, the pairs, the notes and every artifact, with the
//! provenance of the inputs. Written through `serde_json::Value`, so keys are sorted and
//! numbers print as they always have (f32 widened to f64).

use std::path::Path;

use serde::Serialize;

use super::{tool, Input};
use crate::build::artifact::Artifact;
use crate::build::compute::ClassProb;
use crate::build::site::Site;
use crate::cache;
use crate::error::{Error, IoContext, Result};
use crate::plan;

#[derive(Serialize)]
struct Manifest<'a> {
    artifacts: Vec<&'a Artifact>,
    generator: String,
    models: Vec<ModelEntry>,
    notes: Vec<NoteEntry>,
    pairs: Vec<PairEntry<'a>>,
    provenance: Provenance,
    site: SiteEntry,
}

#[derive(Serialize)]
struct ModelEntry {
    arch: &'static str,
    classes: usize,
    id: String,
    layers: Vec<LayerEntry>,
    page: String,
    parameters: usize,
}

#[derive(Serialize)]
struct LayerEntry {
    kind: &'static str,
    name: String,
    output_shape: Vec<usize>,
    parameters: usize,
}

#[derive(Serialize)]
struct PairEntry<'a> {
    image: String,
    label: Option<usize>,
    model: String,
    page: String,
    targets: Vec<TargetEntry>,
    top5: &'a [ClassProb],
}

#[derive(Serialize)]
struct TargetEntry {
    index: usize,
    name: String,
    roles: Vec<&'static str>,
}

#[derive(Serialize)]
struct NoteEntry {
    page: String,
    slug: String,
    title: String,
}

#[derive(Serialize)]
struct SiteEntry {
    description: String,
    title: String,
}

/// What the site was built from: the tool's version and the blake3 of the config, the
/// weights, the class lists and the images.
#[derive(Serialize)]
pub struct Provenance {
    compute_version: &'static str,
    config: FileHash,
    images: Vec<ImageHash>,
    models: Vec<ModelHashes>,
    tool: String,
}

#[derive(Serialize)]
struct FileHash {
    blake3: String,
    path: String,
}

#[derive(Serialize)]
struct ImageHash {
    blake3: String,
    id: String,
    path: String,
}

#[derive(Serialize)]
struct ModelHashes {
    arch: &'static str,
    classes: FileHash,
    id: String,
    weights: FileHash,
}

/// A path as the manifest shows it: relative to the config's folder, with `/`.
fn shown_path(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).to_string_lossy().replace('\\', "/")
}

pub fn provenance(site: &Site) -> Provenance {
    let root = &site.config.root;
    let h = &site.hashes;
    let file = |p: &Path, hash: &str| FileHash {
        blake3: hash.to_string(),
        path: shown_path(root, p),
    };
    Provenance {
        compute_version: cache::COMPUTE_VERSION,
        config: file(&site.config.path, &h.config),
        images: site
            .config
            .images
            .iter()
            .zip(&h.images)
            .map(|(im, hash)| ImageHash {
                blake3: hash.clone(),
                id: im.id.clone(),
                path: shown_path(root, &im.path),
            })
            .collect(),
        models: site
            .config
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| ModelHashes {
                arch: m.arch.id,
                classes: file(&m.classes_path, &h.classes[i]),
                id: m.id.clone(),
                weights: file(&m.weights, &h.weights[i]),
            })
            .collect(),
        tool: tool(),
    }
}

/// Writes `manifest.json`; returns the number of artifacts it lists.
pub fn write(input: &Input, out: &Path) -> Result<usize> {
    let site = input.site;
    let c = &site.config;
    let artifacts: Vec<&Artifact> = input
        .models
        .iter()
        .flat_map(|m| &m.artifacts)
        .chain(input.pairs.iter().flat_map(|p| &p.artifacts))
        .chain(input.units.iter().flat_map(|u| &u.artifacts))
        .chain(input.featurevis.iter().flat_map(|f| &f.artifacts))
        .collect();
    let count = artifacts.len();
    let manifest = Manifest {
        artifacts,
        generator: tool(),
        models: c
            .models
            .iter()
            .enumerate()
            .map(|(mi, m)| {
                let layers = site.models[mi].model.layers();
                ModelEntry {
                    arch: m.arch.id,
                    classes: m.classes.len(),
                    id: m.id.clone(),
                    layers: layers
                        .iter()
                        .map(|l| LayerEntry {
                            kind: l.kind.as_str(),
                            name: l.name.clone(),
                            output_shape: l.output_shape.clone(),
                            parameters: l.parameters,
                        })
                        .collect(),
                    page: plan::href(&plan::model_page(&m.id)),
                    parameters: layers.iter().map(|l| l.parameters).sum(),
                }
            })
            .collect(),
        notes: site
            .content
            .notes
            .iter()
            .map(|n| NoteEntry {
                page: plan::href(&plan::note_page(&n.slug)),
                slug: n.slug.clone(),
                title: n.title.clone(),
            })
            .collect(),
        pairs: input
            .pairs
            .iter()
            .map(|r| {
                let (mc, ic) = (&c.models[r.pair.model], &c.images[r.pair.image]);
                PairEntry {
                    image: ic.id.clone(),
                    label: ic.label_index(mc),
                    model: mc.id.clone(),
                    page: plan::href(&plan::image_page(&mc.id, &ic.id)),
                    targets: r
                        .explained
                        .targets
                        .iter()
                        .map(|t| TargetEntry {
                            index: t.index,
                            name: t.name.clone(),
                            roles: t.roles.clone(),
                        })
                        .collect(),
                    top5: &r.top5,
                }
            })
            .collect(),
        provenance: provenance(site),
        site: SiteEntry {
            description: c.site.description.clone(),
            title: c.site.title.clone(),
        },
    };
    let p = out.join("manifest.json");
    let text = serde_json::to_value(&manifest)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .map_err(|e| Error::msg(e.to_string()))?;
    std::fs::write(&p, text + "\n").at_path(&p)?;
    Ok(count)
}
