//! The `methods` lists (global and per model): each entry read through the method registry,
//! its errors located at the entry or at the parameter at fault. An entry may also say
//! which of the model's targets it explains (`targets:`), which the registry never sees.

use super::check::Check;
use super::{LabelRef, TargetSpec};
use crate::error::Result;
use crate::methods::MethodSpec;

/// The methods of `list`, each with its own `targets:` when given, resolved against the
/// model's `classes`.
pub(super) fn resolve(
    list: &[serde_yaml::Value],
    key: &str,
    classes: &[String],
    check: &Check,
) -> Result<Vec<(MethodSpec, Option<Vec<TargetSpec>>)>> {
    list.iter()
        .enumerate()
        .map(|(k, v)| {
            let mut v = v.clone();
            let targets = match v.as_mapping_mut().and_then(|m| m.remove("targets")) {
                Some(t) => {
                    let refs: Vec<LabelRef> = serde_yaml::from_value(t).map_err(|e| {
                        check.err(
                            &format!("{key}[{k}].targets"),
                            format!(
                                "expected a list of targets (predicted, runner-up, label, class names or indices): {e}"
                            ),
                        )
                    })?;
                    Some(super::targets::resolve(
                        &refs,
                        &format!("{key}[{k}].targets"),
                        classes,
                        check,
                    )?)
                }
                None => None,
            };
            let spec = MethodSpec::parse(&v).map_err(|e| {
                let at = match &e.param {
                    Some(p) => format!("{key}[{k}].{p}"),
                    None => format!("{key}[{k}]"),
                };
                check.err(&at, e.msg)
            })?;
            Ok((spec, targets))
        })
        .collect()
}
