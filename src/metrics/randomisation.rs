//! The cascading model-parameter randomisation test (Adebayo et al. 2018, "Sanity checks
//! for saliency maps"). From the output down, at each checkpoint every convolution and
//! linear layer above it and the checkpoint's own are re-initialised as PyTorch's
//! `reset_parameters` does (Kaiming-uniform with `a = √5`: weights and biases uniform in
//! ±1/√fan_in), from a seeded generator; batch norms keep their statistics. A map that
//! explains what the model learnt should change as its weights are replaced: the test
//! reports the Spearman correlation between the original map and each randomised one.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::methods::{Ctx, Map, MethodSpec, Output};
use crate::models::{Architecture, Input, LayerInfo, LoadedModel};

/// The conv and linear layers of a weights list, by module name (the weight's name less
/// `.weight`), from the output down.
pub fn modules(tensors: &[(String, Vec<usize>)]) -> Vec<String> {
    let mut out: Vec<String> = tensors
        .iter()
        .filter(|(n, s)| n.ends_with(".weight") && (s.len() == 2 || s.len() == 4))
        .map(|(n, _)| n.trim_end_matches(".weight").to_string())
        .collect();
    out.reverse();
    out
}

fn belongs(module: &str, checkpoint: &str) -> bool {
    module == checkpoint || module.strip_prefix(checkpoint).is_some_and(|r| r.starts_with('.'))
}

/// The default checkpoints: the architecture's preset, else every named layer with a conv
/// or linear weight, from the output down.
pub fn default_checkpoints(arch: &Architecture, layers: &[LayerInfo]) -> Vec<String> {
    if !arch.randomisation.is_empty() {
        return arch.randomisation.iter().map(|s| s.to_string()).collect();
    }
    layers
        .iter()
        .rev()
        .filter(|l| l.weight.is_some())
        .map(|l| l.name.clone())
        .collect()
}

/// Checks a list of checkpoints against the modules (top first): each must name at least
/// one, below the one before it. On failure: (index, message).
pub fn check_checkpoints(checkpoints: &[String], modules: &[String]) -> std::result::Result<(), (usize, String)> {
    let mut last: Option<(usize, &str)> = None;
    for (i, ck) in checkpoints.iter().enumerate() {
        let Some(first) = modules.iter().position(|m| belongs(m, ck)) else {
            let shown: Vec<&str> = modules.iter().take(12).map(String::as_str).collect();
            return Err((
                i,
                format!(
                    "`{ck}` names no convolution or linear layer (from the top: {}{})",
                    shown.join(", "),
                    if modules.len() > 12 { ", …" } else { "" }
                ),
            ));
        };
        if let Some((prev, name)) = last {
            if first <= prev {
                return Err((
                    i,
                    format!("`{ck}` lies above `{name}`: list the checkpoints from the output down"),
                ));
            }
        }
        last = Some((first, ck));
    }
    Ok(())
}

/// Re-initialises one module's weight and bias in place in `tensors`.
fn reset(tensors: &mut BTreeMap<String, Tensor>, module: &str, rng: &mut ChaCha8Rng) -> Result<()> {
    let wname = format!("{module}.weight");
    let Some(w) = tensors.get(&wname) else {
        return Ok(());
    };
    let dims = w.dims().to_vec();
    let fan_in: usize = dims[1..].iter().product();
    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
    let mut uniform = |shape: &[usize]| -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.gen_range(-bound..=bound)).collect();
        Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
    };
    let new_w = uniform(&dims)?;
    tensors.insert(wname, new_w);
    let bname = format!("{module}.bias");
    if let Some(b) = tensors.get(&bname) {
        let shape = b.dims().to_vec();
        let new_b = uniform(&shape)?;
        tensors.insert(bname, new_b);
    }
    Ok(())
}

/// The model with its weights randomised down to each checkpoint, cumulatively.
pub fn randomise(
    lm: &LoadedModel,
    arch: &Architecture,
    input: &Input,
    classes: usize,
    checkpoints: &[String],
    seed: u64,
) -> Result<Vec<LoadedModel>> {
    let spec = input.spec();
    let modules = modules(&arch.expected_tensors(&spec, classes));
    check_checkpoints(checkpoints, &modules).map_err(|(_, m)| Error::msg(m))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tensors = lm.tensors.clone();
    let mut done = 0;
    let mut out = Vec::with_capacity(checkpoints.len());
    for ck in checkpoints {
        // Everything above the checkpoint, then the checkpoint's own layers.
        while done < modules.len() && !belongs(&modules[done], ck) {
            reset(&mut tensors, &modules[done], &mut rng)?;
            done += 1;
        }
        while done < modules.len() && belongs(&modules[done], ck) {
            reset(&mut tensors, &modules[done], &mut rng)?;
            done += 1;
        }
        let map: HashMap<String, Tensor> = tensors.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let vb = VarBuilder::from_tensors(map, candle_core::DType::F32, &Device::Cpu);
        let model = arch.build_model(vb, &spec, classes)?;
        out.push(LoadedModel {
            model,
            tensors: tensors.clone(),
        });
    }
    Ok(out)
}

/// A model's randomised copies, made on first use and shared by every image.
pub struct Randomised<'a> {
    pub model: &'a LoadedModel,
    pub arch: &'static Architecture,
    pub input: &'a Input,
    pub classes: usize,
    pub checkpoints: Vec<String>,
    pub seed: u64,
    made: OnceLock<std::result::Result<Vec<LoadedModel>, String>>,
}

impl<'a> Randomised<'a> {
    pub fn new(
        model: &'a LoadedModel,
        arch: &'static Architecture,
        input: &'a Input,
        classes: usize,
        checkpoints: Vec<String>,
        seed: u64,
    ) -> Self {
        Randomised {
            model,
            arch,
            input,
            classes,
            checkpoints,
            seed,
            made: OnceLock::new(),
        }
    }

    /// One model per checkpoint, in order.
    pub fn models(&self) -> Result<&[LoadedModel]> {
        let made = self.made.get_or_init(|| {
            randomise(
                self.model,
                self.arch,
                self.input,
                self.classes,
                &self.checkpoints,
                self.seed,
            )
            .map_err(|e| format!("randomising the weights: {e}"))
        });
        made.as_deref().map_err(|e| Error::msg(e.clone()))
    }
}

/// The method's map for `class` on each randomised model, in checkpoint order.
pub fn maps(method: &MethodSpec, r: &Randomised, x: &Tensor, class: usize) -> Result<Vec<Map>> {
    r.models()?
        .iter()
        .map(|m| {
            let cx = Ctx::new(m, r.arch, r.input, x, class, class);
            match method.run(&cx)? {
                Output::Map(map) => Ok(map),
                _ => Err(Error::msg(format!("`{}` does not draw a map", method.name()))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn checkpoints_are_checked_from_the_top() {
        let modules = names(&["fc", "layer4.1.conv2", "layer4.0.conv1", "layer1.0.conv1", "conv1"]);
        assert!(check_checkpoints(&names(&["fc", "layer4", "conv1"]), &modules).is_ok());
        let (i, msg) = check_checkpoints(&names(&["layer4", "fc"]), &modules).unwrap_err();
        assert_eq!(i, 1);
        assert!(msg.contains("from the output down"), "{msg}");
        let (i, msg) = check_checkpoints(&names(&["fc", "layer9"]), &modules).unwrap_err();
        assert_eq!(i, 1);
        assert!(msg.contains("`layer9` names no convolution"), "{msg}");
        // A prefix matches whole name parts only: `layer4` is not `layer4x`, `conv` not `conv1`.
        assert!(check_checkpoints(&names(&["conv"]), &modules).is_err());
    }
}
