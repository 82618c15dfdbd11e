//! What a build produces: the model × image pairs and where every page lives.
//!
//! Page paths are folders with an `index.html`, and every link is relative, so the
//! site works opened from disk and under any sub-path of a web server.

use crate::config::Config;

/// One model shown with one image: one image page and its artifacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    pub model: usize,
    pub image: usize,
}

#[derive(Debug)]
pub struct Plan {
    pub pairs: Vec<Pair>,
}

/// Expands the config into pairs, in config order (models, then images).
pub fn plan(config: &Config) -> Plan {
    let mut pairs = Vec::new();
    for (mi, m) in config.models.iter().enumerate() {
        for (ii, im) in config.images.iter().enumerate() {
            if im.models.iter().any(|id| id == &m.id) {
                pairs.push(Pair { model: mi, image: ii });
            }
        }
    }
    Plan { pairs }
}

/// A unit of compute work, the grain of `--shard`: a model's weight pictures, a pair's
/// forward pass, one method of a pair (for all its targets, with its deletion and insertion
/// curves), or a pair's randomisation test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Weights {
        model: usize,
    },
    Forward {
        pair: usize,
    },
    Method {
        pair: usize,
        method: usize,
    },
    /// The randomisation test of a pair (when the metrics ask for it).
    Randomisation {
        pair: usize,
    },
    /// A model's unit analyses over its dataset (when `units` is given).
    Units {
        model: usize,
    },
    /// A model's feature visualizations (when `feature_visualization` is given).
    FeatureVis {
        model: usize,
    },
}

/// Every unit of the plan, in a fixed order: models' weights, then per pair its forward pass
/// and its methods in list order.
pub fn units(config: &Config, plan: &Plan) -> Vec<Unit> {
    let mut out: Vec<Unit> = (0..config.models.len()).map(|model| Unit::Weights { model }).collect();
    out.extend(
        (0..config.models.len())
            .filter(|&m| config.models[m].units.is_some())
            .map(|model| Unit::Units { model }),
    );
    out.extend(
        (0..config.models.len())
            .filter(|&m| config.models[m].feature_visualization.is_some())
            .map(|model| Unit::FeatureVis { model }),
    );
    for (pair, p) in plan.pairs.iter().enumerate() {
        out.push(Unit::Forward { pair });
        out.extend((0..config.models[p.model].methods.len()).map(|method| Unit::Method { pair, method }));
        if config.models[p.model].metrics.randomisation.is_some() {
            out.push(Unit::Randomisation { pair });
        }
    }
    out
}

/// `K/N` of `--shard`: shard `k` (1-based) of `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub k: usize,
    pub n: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("`{s}` is not K/N with 1 ≤ K ≤ N (for example 2/3)");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (k, n): (usize, usize) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if k == 0 || n == 0 || k > n {
            return Err(bad());
        }
        Ok(Shard { k, n })
    }
}

impl Shard {
    /// Whether the unit at `index` of [`units`] belongs to this shard. Round robin over the
    /// ordered units spreads each method's work (IG on every image, say) across the shards.
    pub fn owns(&self, index: usize) -> bool {
        index % self.n == self.k - 1
    }
}

// Every page is a folder with an `index.html`; one function per page kind.

pub fn model_page(model: &str) -> String {
    format!("models/{model}")
}

pub fn image_page(model: &str, image: &str) -> String {
    format!("models/{model}/images/{image}")
}

pub fn attributions_page(model: &str, image: &str) -> String {
    format!("{}/attributions", image_page(model, image))
}

pub fn gradients_page(model: &str, image: &str) -> String {
    format!("{}/gradients", image_page(model, image))
}

/// One method across a model's images; `slug` from [`crate::methods::slugs`].
pub fn method_page(model: &str, slug: &str) -> String {
    format!("{}/methods/{slug}", model_page(model))
}

/// A layer's units; layer names may hold dots (`_blocks.15`), which paths keep.
pub fn layer_page(model: &str, layer: &str) -> String {
    format!("{}/layers/{layer}", model_page(model))
}

pub fn unit_page(model: &str, layer: &str, unit: usize) -> String {
    format!("{}/units/{unit}", layer_page(model, layer))
}

/// The t-SNE embedding of a layer's features (its files sit beside its page).
pub fn embedding_page(model: &str, layer: &str) -> String {
    format!("{}/embedding", layer_page(model, layer))
}

/// A layer's units against random directions, and the ablation (files beside the page).
pub fn directions_page(model: &str, layer: &str) -> String {
    format!("{}/directions", layer_page(model, layer))
}

/// The whole network on one image, layer by layer.
pub fn overview_page(model: &str, image: &str) -> String {
    format!("{}/overview", image_page(model, image))
}

/// The draw-a-digit playground of a model (its network and weights as `net.js` beside it).
pub fn playground_page(model: &str) -> String {
    format!("{}/playground", model_page(model))
}

pub fn note_page(slug: &str) -> String {
    format!("notes/{slug}")
}

/// A page of a translation: under `<lang>/` (the site's language, `""`, is at the root).
pub fn in_language(lang: &str, page: &str) -> String {
    match (lang, page) {
        ("", p) => p.to_string(),
        (l, "") => l.to_string(),
        (l, p) => format!("{l}/{p}"),
    }
}

/// A URL path with its `%XX` escapes decoded; `None` for a bad escape or invalid UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The page file of a page folder, as links name it.
pub fn href(page: &str) -> String {
    if page.is_empty() {
        "index.html".to_string()
    } else {
        format!("{page}/index.html")
    }
}

// Where the files of cache entries are placed in the site.

/// A model's feature visualizations at a glance, a few units per layer.
pub fn featurevis_page(model: &str) -> String {
    format!("{}/feature-visualization", model_page(model))
}

/// A layer's unit pictures and arrays.
pub fn layer_files(model: &str, layer: &str) -> String {
    format!("{}/files", layer_page(model, layer))
}

pub fn weights_files(model: &str) -> String {
    format!("{}/weights", model_page(model))
}

pub fn attribution_files(model: &str, image: &str, slug: &str) -> String {
    format!("{}/{slug}", attributions_page(model, image))
}

pub fn activation_gradient_files(model: &str, image: &str, class: usize) -> String {
    format!("{}/activation-gradients/{class}", image_page(model, image))
}

pub fn randomisation_page(model: &str, image: &str) -> String {
    format!("{}/randomisation", image_page(model, image))
}

/// A model's methods ranked by the faithfulness metrics.
pub fn leaderboard_page(model: &str) -> String {
    format!("{}/leaderboard", model_page(model))
}

pub fn randomisation_files(model: &str, image: &str) -> String {
    randomisation_page(model, image)
}

pub fn weight_gradient_files(model: &str, image: &str) -> String {
    format!("{}/weight-gradients", image_page(model, image))
}

/// The relative prefix that leads from a page in `dir` back to the site root.
pub fn root_from(dir: &str) -> String {
    if dir.is_empty() {
        return String::new();
    }
    "../".repeat(dir.split('/').count())
}

#[cfg(test)]
mod tests {
    #[test]
    fn relative_roots() {
        assert_eq!(super::root_from(""), "");
        assert_eq!(super::root_from("models/a"), "../../");
        assert_eq!(super::root_from("models/a/images/b"), "../../../../");
    }

    #[test]
    fn shards() {
        let s: super::Shard = "2/3".parse().unwrap();
        assert_eq!((0..7).filter(|&i| s.owns(i)).collect::<Vec<_>>(), vec![1, 4]);
        for bad in ["0/3", "4/3", "3", "a/b", "1/0"] {
            assert!(bad.parse::<super::Shard>().is_err(), "{bad}");
        }
    }
}
