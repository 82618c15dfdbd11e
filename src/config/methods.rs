//! The `methods` lists (global and per model): each entry read through the method registry,
//! its errors located at the entry or at the parameter at fault.

use super::check::Check;
use crate::error::Result;
use crate::methods::MethodSpec;

pub(super) fn resolve(list: &[serde_yaml::Value], key: &str, check: &Check) -> Result<Vec<MethodSpec>> {
    list.iter()
        .enumerate()
        .map(|(k, v)| {
            MethodSpec::parse(v).map_err(|e| {
                let at = match &e.param {
                    Some(p) => format!("{key}[{k}].{p}"),
                    None => format!("{key}[{k}]"),
                };
                check.err(&at, e.msg)
            })
        })
        .collect()
}
