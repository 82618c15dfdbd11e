//! The `images` section: files, labels and the models each image is shown with.

use super::check::Check;
use super::schema::RawImage;
use super::{ImageConfig, LabelRef, ModelConfig};
use crate::error::Result;

pub(super) fn validate(raw: Vec<RawImage>, models: &[ModelConfig], check: &mut Check) -> Result<Vec<ImageConfig>> {
    let mut images = Vec::new();
    for (i, im) in raw.into_iter().enumerate() {
        let key = format!("images[{i}]");
        check.id(&format!("{key}.id"), &im.id)?;
        let path_key = format!("{key}.path");
        let full = check.file(&path_key, &im.path)?;
        let shown = im.path.display().to_string();
        let model_ids: Vec<String> = match im.models {
            Some(list) => {
                let models_key = format!("{key}.models");
                if list.is_empty() {
                    return Err(check.err(&models_key, "lists no model (leave the key out for every model)"));
                }
                for id in &list {
                    if !models.iter().any(|m| &m.id == id) {
                        return Err(check.err(
                            &models_key,
                            format!(
                                "unknown model `{id}` (models: {})",
                                models.iter().map(|m| m.id.as_str()).collect::<Vec<_>>().join(", ")
                            ),
                        ));
                    }
                }
                list
            }
            None => models.iter().map(|m| m.id.clone()).collect(),
        };
        // Decoded in full, so that a broken image is reported with its key and line.
        let channels = crate::data::image::load(&full)
            .map(|img| crate::data::image::channels(img.color()))
            .map_err(|e| check.err(&path_key, e))?;
        // In the image's order, as listed (every id was checked above).
        for m in model_ids.iter().filter_map(|id| models.iter().find(|m| &m.id == id)) {
            if channels != m.input.channels {
                return Err(check.err(
                    &path_key,
                    format!(
                        "`{shown}` has {channels} channel(s) but model `{}` takes {} (convert the image, or list only fitting models under `models:`)",
                        m.id, m.input.channels
                    ),
                ));
            }
            let label_key = format!("{key}.label");
            match &im.label {
                Some(LabelRef::Index(l)) if *l >= m.classes.len() => {
                    return Err(check.err(
                        &label_key,
                        format!(
                            "class index {l} is out of range: model `{}` has {} classes",
                            m.id,
                            m.classes.len()
                        ),
                    ))
                }
                Some(LabelRef::Name(n)) if !m.classes.iter().any(|c| c == n) => {
                    return Err(check.err(
                        &label_key,
                        format!(
                            "`{n}` is not a class of model `{}` (see {})",
                            m.id,
                            m.classes_path.display()
                        ),
                    ))
                }
                _ => {}
            }
        }
        images.push(ImageConfig {
            id: im.id,
            path: full,
            label: im.label,
            caption: im.caption.unwrap_or_default(),
            models: model_ids,
        });
    }
    Ok(images)
}
