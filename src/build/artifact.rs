//! One file the build wrote from an array, as `manifest.json` lists it. Compute fills in
//! what it knows (kind, layer, method, paths, shape); [`Artifact::complete`] adds the ids,
//! the class name and the hashes when an entry is placed into the site.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cache::Stored;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Artifact {
    pub kind: String,
    #[serde(default)]
    pub model: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<ClassRef>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub layer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub png: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub npy: Option<String>,
    /// Empty for the metrics, which are numbers rather than arrays.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub shape: Vec<usize>,
    /// The method's parameters as applied.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub params: Option<Value>,
    /// The attribution drawn over the input.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub overlay: Option<String>,
    /// Checks computed with the array (Integrated Gradients' completeness gap, ...).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub metrics: Option<BTreeMap<String, f64>>,
    /// Faithfulness: the areas under the deletion and insertion curves, and the curves.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub deletion_auc: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub insertion_auc: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub deletion: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub insertion: Option<Vec<f32>>,
    /// Randomisation: the checkpoints and the Spearman correlation after each.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub checkpoints: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub spearman: Option<Vec<f64>>,
    /// Unit analyses: the unit, the dataset, the top examples (dataset indices, best
    /// first), the class-selectivity index and the class-mean activations.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unit: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dataset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub top: Option<Vec<usize>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub selectivity: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub class_means: Option<Vec<Option<f64>>>,
    /// A unit's histogram over the dataset: `{min, max, counts}` in equal bins.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub histogram: Option<Value>,
    /// Units against random directions: top-100 class purity of each.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub purity_units: Option<Vec<Option<f64>>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub purity_directions: Option<Vec<f64>>,
    /// Ablation: held-out accuracy after zeroing k units / projecting out k directions.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub k: Option<Vec<usize>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub accuracy_units: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub accuracy_directions: Option<Vec<f64>>,
    /// The number of random draws the ablation means are over, and per k their range.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub repeats: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub range_units: Option<Vec<[f64; 2]>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub range_directions: Option<Vec<[f64; 2]>>,
    /// An embedding's 10-nearest-neighbour class accuracy.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub knn_accuracy: Option<f64>,
    /// A feature visualization: the unit's final mean activation on the optimised input,
    /// and which of the unit's images (when it has several).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub objective: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub index: Option<usize>,
    /// blake3 of the `.npy` file's bytes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub blake3: Option<String>,
    /// The cache entry that holds the files.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub entry: Option<String>,
}

impl Artifact {
    /// Fills in what a cache entry does not store: the ids, the class name, the hashes.
    pub(crate) fn complete(
        mut self,
        stored: &Stored,
        prefix: &str,
        model: &str,
        image: Option<&str>,
        classes: &[String],
    ) -> Artifact {
        self.model = model.to_string();
        self.image = image.map(str::to_string);
        if let Some(t) = &mut self.target {
            t.name = classes.get(t.index).cloned().unwrap_or_default();
        }
        self.blake3 = self.npy.as_deref().and_then(|n| stored.hash_of(prefix, n));
        self.entry = Some(stored.key.clone());
        self
    }
}

/// A class by index; the name is filled in when the artifact is placed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassRef {
    pub index: usize,
    #[serde(default)]
    pub name: String,
}

impl ClassRef {
    pub fn new(index: usize) -> Self {
        ClassRef {
            index,
            name: String::new(),
        }
    }
}
