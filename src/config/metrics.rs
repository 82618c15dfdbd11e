//! `metrics:` (global, or per model): which faithfulness checks run, for which of the
//! model's methods. Checkpoints are checked against the loaded weights later (`Site::load`).

use super::check::Check;
use super::schema::RawMetrics;
use super::Input;
use crate::error::Result;
use crate::methods::MethodSpec;
use crate::metrics::{self, Faithfulness, Metrics, Randomisation};

/// Method names as indices into the model's list; a name listed twice in the model's list
/// means its first entry.
fn pick(names: &[String], key: &str, methods: &[MethodSpec], check: &Check) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let found = methods.iter().position(|m| m.name() == name);
        match found {
            Some(k) if methods[k].is_map() => {
                if !out.contains(&k) {
                    out.push(k)
                }
            }
            Some(_) => {
                return Err(check.err(
                    &format!("{key}[{i}]"),
                    format!("`{name}` draws no map over the input: the metrics need one"),
                ))
            }
            None => {
                let listed: Vec<&str> = methods.iter().filter(|m| m.is_map()).map(|m| m.name()).collect();
                return Err(check.err(
                    &format!("{key}[{i}]"),
                    format!("`{name}` is not among the model's methods ({})", listed.join(", ")),
                ));
            }
        }
    }
    if out.is_empty() {
        return Err(check.err(key, "lists no method"));
    }
    Ok(out)
}

pub(super) fn resolve(
    raw: &RawMetrics,
    key: &str,
    methods: &[MethodSpec],
    input: &Input,
    classes: &[String],
    check: &Check,
) -> Result<Metrics> {
    let maps: Vec<usize> = (0..methods.len()).filter(|&k| methods[k].is_map()).collect();
    let faithfulness = match &raw.faithfulness {
        None => None,
        Some(f) => {
            let fkey = format!("{key}.faithfulness");
            let steps = f.steps.unwrap_or(metrics::DEFAULT_STEPS);
            let pixels = input.height * input.width;
            if steps == 0 || steps > pixels {
                return Err(check.err(
                    &format!("{fkey}.steps"),
                    format!("must be between 1 and {pixels} (the input's pixels), not {steps}"),
                ));
            }
            let methods = match &f.methods {
                Some(names) => pick(names, &format!("{fkey}.methods"), methods, check)?,
                None => maps.clone(),
            };
            let targets = match &f.targets {
                Some(l) => Some(super::targets::resolve(l, &format!("{fkey}.targets"), classes, check)?),
                None => None,
            };
            Some(Faithfulness {
                steps,
                methods,
                targets,
            })
        }
    };
    let randomisation = match &raw.randomisation {
        None => None,
        Some(r) => {
            let rkey = format!("{key}.randomisation");
            let methods = match &r.methods {
                Some(names) => pick(names, &format!("{rkey}.methods"), methods, check)?,
                None => maps
                    .iter()
                    .copied()
                    .filter(|&k| metrics::DEFAULT_RANDOMISATION_METHODS.contains(&methods[k].name()))
                    .collect(),
            };
            if let Some(c) = &r.checkpoints {
                if c.is_empty() {
                    return Err(check.err(&format!("{rkey}.checkpoints"), "lists no checkpoint"));
                }
            }
            Some(Randomisation {
                methods,
                checkpoints: r.checkpoints.clone(),
                seed: r.seed,
            })
        }
    };
    Ok(Metrics {
        faithfulness,
        randomisation,
    })
}
