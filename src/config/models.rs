//! The `models` section, with each model's input, methods and targets.

use std::path::Path;

use super::check::Check;
use super::schema::{RawInput, RawMetrics, RawModel};
use super::{methods as method_list, metrics as metric_list, targets, Input, LabelRef, ModelConfig, TargetSpec};
use crate::error::{read_to_string, Error, Result};
use crate::methods;

/// Checks every model; `methods` and `targets` are the global lists, which a model's own
/// lists replace.
pub(super) fn validate(
    raw: Vec<RawModel>,
    methods: Option<Vec<serde_yaml::Value>>,
    targets: Option<Vec<LabelRef>>,
    metrics: Option<RawMetrics>,
    datasets: &[super::DatasetConfig],
    check: &mut Check,
) -> Result<Vec<ModelConfig>> {
    let mut models = Vec::new();
    for (i, m) in raw.into_iter().enumerate() {
        let key = format!("models[{i}]");
        check.id(&format!("{key}.id"), &m.id)?;
        let builtin = crate::models::architecture(&m.arch);
        if builtin.is_none() && m.arch != "onnx" {
            return Err(check.err(
                &format!("{key}.arch"),
                format!(
                    "unknown architecture `{}` (built in: {}; or `onnx` with `weights:` an ONNX file)",
                    m.arch,
                    crate::models::architecture_ids().join(", ")
                ),
            ));
        }
        let weights = check.file(&format!("{key}.weights"), &m.weights)?;
        let classes_path = check.file(&format!("{key}.classes"), &m.classes)?;
        let classes = read_classes(&classes_path)?;
        let input = validate_input(m.input, &format!("{key}.input"), check)?;
        let arch = match builtin {
            Some(a) => a,
            None => {
                if weights.extension().and_then(|e| e.to_str()) != Some("onnx") {
                    return Err(check.err(
                        &format!("{key}.weights"),
                        format!("`arch: onnx` needs an ONNX file (`.onnx`), not `{}`", weights.display()),
                    ));
                }
                // The graph is read and checked now: an unsupported operator is a config error.
                crate::models::onnx::architecture(&weights, &input.spec(), classes.len())
                    .map_err(|e| check.err(&format!("{key}.weights"), e))?
            }
        };
        (arch.check_input)(&input.spec()).map_err(|msg| check.err(&format!("{key}.input.size"), msg))?;
        let training_log = match &m.training_log {
            Some(p) => Some(check.file(&format!("{key}.training_log"), p)?),
            None => None,
        };
        let (method_list, methods_key) = match (&m.methods, &methods) {
            (Some(l), _) => (
                method_list::resolve(l, &format!("{key}.methods"), &classes, check)?,
                format!("{key}.methods"),
            ),
            (None, Some(l)) => (
                method_list::resolve(l, "methods", &classes, check)?,
                "methods".to_string(),
            ),
            (None, None) => (
                methods::all_defaults().into_iter().map(|m| (m, None)).collect(),
                "methods".to_string(),
            ),
        };
        let (method_list, method_targets): (Vec<_>, Vec<_>) = method_list.into_iter().unzip();
        let targets = match (&m.targets, &targets) {
            (Some(l), _) => targets::resolve(l, &format!("{key}.targets"), &classes, check)?,
            (None, Some(l)) => targets::resolve(l, "targets", &classes, check)?,
            (None, None) => TargetSpec::defaults(),
        };
        let (metrics, metrics_key) = match (&m.metrics, &metrics) {
            (Some(r), _) => (Some(r), format!("{key}.metrics")),
            (None, Some(r)) => (Some(r), "metrics".to_string()),
            (None, None) => (None, "metrics".to_string()),
        };
        let metrics = match metrics {
            Some(r) => metric_list::resolve(r, &metrics_key, &method_list, &input, &classes, check)?,
            None => Default::default(),
        };
        let units = match &m.units {
            Some(u) => Some(super::datasets::units(u, &format!("{key}.units"), datasets, check)?),
            None => None,
        };
        let feature_visualization = match &m.feature_visualization {
            Some(f) => Some(super::featurevis::resolve(
                f,
                &format!("{key}.feature_visualization"),
                &input,
                check,
            )?),
            None => None,
        };
        models.push(ModelConfig {
            playground: m.playground,
            units,
            feature_visualization,
            metrics,
            metrics_key,
            methods: method_list,
            method_targets,
            methods_key,
            targets,
            id: m.id,
            arch,
            weights,
            classes_path,
            classes,
            input,
            training_log,
            description: m.description.unwrap_or_default(),
        });
    }
    Ok(models)
}

/// One class name per non-empty line.
fn read_classes(path: &Path) -> Result<Vec<String>> {
    let classes: Vec<String> = read_to_string(path)?
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if classes.is_empty() {
        return Err(Error::at(path, "no class names: expected one name per line"));
    }
    Ok(classes)
}

/// Checks the input section at `key` (`models[i].input`).
fn validate_input(inp: RawInput, key: &str, check: &Check) -> Result<Input> {
    if inp.channels != 1 && inp.channels != 3 {
        return Err(check.err(
            &format!("{key}.channels"),
            format!("must be 1 or 3, not {}", inp.channels),
        ));
    }
    if inp.size[0] == 0 || inp.size[1] == 0 {
        return Err(check.err(&format!("{key}.size"), "sizes must be positive"));
    }
    for (name, v) in [("mean", &inp.mean), ("std", &inp.std)] {
        if v.len() != inp.channels {
            return Err(check.err(
                &format!("{key}.{name}"),
                format!("has {} values but the input has {} channel(s)", v.len(), inp.channels),
            ));
        }
    }
    if let Some(s) = inp.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(check.err(&format!("{key}.std"), format!("every std must be positive, found {s}")));
    }
    Ok(Input {
        height: inp.size[0],
        width: inp.size[1],
        channels: inp.channels,
        mean: inp.mean,
        std: inp.std,
    })
}
