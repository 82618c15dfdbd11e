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

pub fn model_dir(model: &str) -> String {
    format!("models/{model}")
}

pub fn image_dir(model: &str, image: &str) -> String {
    format!("models/{model}/images/{image}")
}

pub fn note_dir(slug: &str) -> String {
    format!("notes/{slug}")
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
}
