//! Weight gradients: the gradient of the cross-entropy loss for one class (the image's
//! label, else the predicted class) with respect to every conv and fully connected weight,
//! as one training step on this image would compute it. The weights are loaded as `Var`s
//! into a second instance of the model, because candle keeps gradients only for `Var`s.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use serde::Deserialize;

use super::{Ctx, Method, Output, OutputKind};
use crate::error::Result;
use crate::models::Tap;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightGradients {}

impl Method for WeightGradients {
    fn name(&self) -> &'static str {
        "weight-gradients"
    }
    fn title(&self) -> &'static str {
        "Weight gradients"
    }
    fn definition(&self) -> &'static str {
        "The gradient of the cross-entropy loss with respect to every weight: what one step of training on this image would change."
    }
    fn output(&self) -> OutputKind {
        OutputKind::Weights
    }
    fn run(&self, cx: &Ctx) -> Result<Output> {
        let varmap = VarMap::new();
        let mut vars: HashMap<String, Var> = HashMap::new();
        {
            let mut data = varmap.data().lock().unwrap();
            for (name, t) in &cx.model.tensors {
                let v = Var::from_tensor(&t.to_dtype(cx.x.dtype())?)?;
                vars.insert(name.clone(), v.clone());
                data.insert(name.clone(), v);
            }
        }
        let model = cx.arch.build_model(
            VarBuilder::from_varmap(&varmap, cx.x.dtype(), &Device::Cpu),
            &cx.input.spec(),
            cx.model.model.num_classes(),
        )?;
        let logits = model.forward(cx.x, &mut Tap::default())?;
        let y = Tensor::new(&[cx.loss_class as u32], &Device::Cpu)?;
        let loss = candle_nn::loss::cross_entropy(&logits.to_dtype(DType::F32)?, &y)?;
        let grads = loss.backward()?;
        let mut out = Vec::new();
        for l in cx.model.model.layers() {
            if let Some(w) = &l.weight {
                if let Some(g) = vars.get(w).and_then(|v| grads.get(v.as_tensor())) {
                    out.push((w.clone(), g.clone()));
                }
            }
        }
        Ok(Output::Weights {
            class: cx.loss_class,
            grads: out,
        })
    }
}
