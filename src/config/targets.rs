//! Target lists (`targets`, `models[i].targets`): keywords, class names or class indices.

use super::check::Check;
use super::{LabelRef, TargetSpec};
use crate::error::Result;

/// Resolves the list at `key` against a model's `classes`; repeats are dropped.
pub(super) fn resolve(list: &[LabelRef], key: &str, classes: &[String], check: &Check) -> Result<Vec<TargetSpec>> {
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let spec = match t {
            LabelRef::Name(n) if n == "predicted" => TargetSpec::Predicted,
            LabelRef::Name(n) if n == "runner-up" => TargetSpec::RunnerUp,
            LabelRef::Name(n) if n == "label" => TargetSpec::Label,
            LabelRef::Name(n) => match classes.iter().position(|c| c == n) {
                Some(k) => TargetSpec::Class(k),
                None => {
                    return Err(check.err(
                        &format!("{key}[{i}]"),
                        format!("`{n}` is neither predicted, runner-up, label nor a class name"),
                    ))
                }
            },
            LabelRef::Index(k) if *k >= classes.len() => {
                return Err(check.err(
                    &format!("{key}[{i}]"),
                    format!(
                        "class index {k} is out of range: the model has {} classes",
                        classes.len()
                    ),
                ))
            }
            LabelRef::Index(k) => TargetSpec::Class(*k),
        };
        if !out.contains(&spec) {
            out.push(spec);
        }
    }
    if out.is_empty() {
        return Err(check.err(key, "lists no target"));
    }
    Ok(out)
}
