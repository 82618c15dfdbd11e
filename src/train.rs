//! Training LeNet-5 on MNIST digits, seeded and reproducible.
//!
//! The first `train_size` digits train, the last `test_size` evaluate; the two never
//! overlap. Initialisation follows PyTorch's defaults for conv and linear layers
//! (uniform in ±1/√fan_in), drawn from a seeded ChaCha generator, and the batches are
//! shuffled by the same generator, so a seed gives the same weights on the same machine.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{Optimizer, ParamsAdamW, VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::idx::{read_digits, Digits};
use crate::error::{Error, IoContext, Result};
use crate::models::lenet5::LeNet5;
use crate::models::{Model, Tap};

/// MNIST's pixel mean and standard deviation on the 0..1 scale.
pub const MNIST_MEAN: f32 = 0.1307;
pub const MNIST_STD: f32 = 0.3081;

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub data: PathBuf,
    pub out: PathBuf,
    /// Where the JSON log goes; default: `out` with the extension `.json`.
    pub log: Option<PathBuf>,
    pub epochs: usize,
    pub seed: u64,
    pub train_size: usize,
    pub test_size: usize,
    pub batch_size: usize,
    pub lr: f64,
}

impl TrainOptions {
    pub fn new(data: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        TrainOptions {
            data: data.into(),
            out: out.into(),
            log: None,
            epochs: 12,
            seed: 0,
            train_size: 8000,
            test_size: 2000,
            batch_size: 64,
            lr: 1e-3,
        }
    }
    pub fn log_path(&self) -> PathBuf {
        self.log.clone().unwrap_or_else(|| self.out.with_extension("json"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub test_loss: f64,
    pub test_accuracy: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainLog {
    pub arch: String,
    pub data: String,
    pub seed: u64,
    pub train_digits: String,
    pub test_digits: String,
    pub epochs: Vec<EpochLog>,
    pub batch_size: usize,
    pub optimizer: String,
    pub learning_rate: f64,
    pub normalisation: String,
    /// Held-out accuracy after the last epoch.
    pub test_accuracy: f64,
    /// `confusion[true][predicted]` on the held-out digits after the last epoch.
    pub confusion: Vec<Vec<usize>>,
    pub seconds: f64,
}

fn batch(d: &Digits, idx: &[usize]) -> candle_core::Result<(Tensor, Tensor)> {
    let n = d.rows * d.cols;
    let mut x = Vec::with_capacity(idx.len() * n);
    let mut y = Vec::with_capacity(idx.len());
    for &i in idx {
        x.extend(d.image(i).iter().map(|&p| (p as f32 / 255.0 - MNIST_MEAN) / MNIST_STD));
        y.push(d.labels[i] as u32);
    }
    let dev = Device::Cpu;
    Ok((
        Tensor::from_vec(x, (idx.len(), 1, d.rows, d.cols), &dev)?,
        Tensor::from_vec(y, idx.len(), &dev)?,
    ))
}

/// Creates the LeNet-5 parameters with PyTorch's default initialisation, seeded.
fn init(varmap: &VarMap, rng: &mut ChaCha8Rng) -> candle_core::Result<()> {
    let spec = crate::models::InputSpec {
        height: 28,
        width: 28,
        channels: 1,
    };
    let tensors = (crate::models::lenet5::ARCH.tensors)(&spec, 10);
    let mut data = varmap.data().lock().unwrap();
    for (name, shape) in &tensors {
        // A bias shares the fan-in of its layer's weight.
        let wshape = &tensors
            .iter()
            .find(|(n, _)| n == &name.replace(".bias", ".weight"))
            .expect("every bias has a weight")
            .1;
        let fan_in: usize = wshape[1..].iter().product();
        let bound = 1.0 / (fan_in as f32).sqrt();
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.gen_range(-bound..bound)).collect();
        data.insert(
            name.clone(),
            Var::from_tensor(&Tensor::from_vec(v, shape.as_slice(), &Device::Cpu)?)?,
        );
    }
    Ok(())
}

/// Mean loss, accuracy and confusion matrix of `model` on the digits `idx`.
fn evaluate(model: &LeNet5, d: &Digits, idx: &[usize]) -> candle_core::Result<(f64, f64, Vec<Vec<usize>>)> {
    let mut loss = 0.0;
    let mut confusion = vec![vec![0usize; 10]; 10];
    for chunk in idx.chunks(500) {
        let (x, y) = batch(d, chunk)?;
        let logits = model.forward(&x, &mut Tap::default())?;
        loss += candle_nn::loss::cross_entropy(&logits, &y)?.to_scalar::<f32>()? as f64 * chunk.len() as f64;
        let pred = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
        for (k, &i) in chunk.iter().enumerate() {
            confusion[d.labels[i] as usize][pred[k] as usize] += 1;
        }
    }
    let correct: usize = (0..10).map(|i| confusion[i][i]).sum();
    Ok((loss / idx.len() as f64, correct as f64 / idx.len() as f64, confusion))
}

/// Trains LeNet-5, writes the weights (safetensors) and the JSON log, and returns the log.
/// `progress` is called after every epoch.
pub fn train_lenet5(opts: &TrainOptions, mut progress: impl FnMut(&EpochLog)) -> Result<TrainLog> {
    let start = Instant::now();
    let digits = read_digits(&opts.data)?;
    if digits.rows != 28 || digits.cols != 28 {
        return Err(Error::at(
            &opts.data,
            format!("digits are {}×{}, lenet5 takes 28×28", digits.rows, digits.cols),
        ));
    }
    if opts.train_size == 0 || opts.test_size == 0 || opts.train_size + opts.test_size > digits.len() {
        return Err(Error::msg(format!(
            "--train-size {} and --test-size {} must be positive and fit in the {} digits of {}",
            opts.train_size,
            opts.test_size,
            digits.len(),
            opts.data.display()
        )));
    }
    if opts.epochs == 0 || opts.batch_size == 0 || !(opts.lr > 0.0) {
        return Err(Error::msg("--epochs, --batch-size and --lr must be positive"));
    }
    if digits.labels.iter().any(|&l| l > 9) {
        return Err(Error::at(&opts.data, "labels must be digits 0..9"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let varmap = VarMap::new();
    init(&varmap, &mut rng)?;
    let model = LeNet5::new(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu), 1, 10)?;
    // The var map is a hash map; taking the vars by name keeps runs identical.
    let vars: Vec<Var> = {
        let data = varmap.data().lock().unwrap();
        let mut named: Vec<(&String, &Var)> = data.iter().collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        named.into_iter().map(|(_, v)| v.clone()).collect()
    };
    let mut opt = candle_nn::AdamW::new(
        vars,
        ParamsAdamW {
            lr: opts.lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut order: Vec<usize> = (0..opts.train_size).collect();
    let test: Vec<usize> = (digits.len() - opts.test_size..digits.len()).collect();
    let mut epochs = Vec::new();
    let mut confusion = Vec::new();
    for epoch in 1..=opts.epochs {
        order.shuffle(&mut rng);
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        for chunk in order.chunks(opts.batch_size) {
            let (x, y) = batch(&digits, chunk)?;
            let logits = model.forward(&x, &mut Tap::default())?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            opt.backward_step(&loss)?;
            loss_sum += loss.to_scalar::<f32>()? as f64 * chunk.len() as f64;
            let pred = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
            correct += pred
                .iter()
                .zip(chunk)
                .filter(|(p, &i)| **p == digits.labels[i] as u32)
                .count();
        }
        let (test_loss, test_accuracy, conf) = evaluate(&model, &digits, &test)?;
        confusion = conf;
        let e = EpochLog {
            epoch,
            train_loss: loss_sum / opts.train_size as f64,
            train_accuracy: correct as f64 / opts.train_size as f64,
            test_loss,
            test_accuracy,
        };
        progress(&e);
        epochs.push(e);
    }
    if let Some(dir) = opts.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).at_path(dir)?;
    }
    varmap
        .save(&opts.out)
        .map_err(|e| Error::at(&opts.out, format!("cannot write the weights: {e}")))?;
    let first_test = digits.len() - opts.test_size;
    let log = TrainLog {
        arch: "lenet5".into(),
        data: opts.data.display().to_string(),
        seed: opts.seed,
        train_digits: format!("0..{}", opts.train_size),
        test_digits: format!("{first_test}..{}", digits.len()),
        test_accuracy: epochs.last().map_or(0.0, |e| e.test_accuracy),
        epochs,
        batch_size: opts.batch_size,
        optimizer: "Adam (β = 0.9, 0.999; ε = 1e-8; no weight decay)".into(),
        learning_rate: opts.lr,
        normalisation: format!("(pixel/255 − {MNIST_MEAN}) / {MNIST_STD}"),
        confusion,
        seconds: start.elapsed().as_secs_f64(),
    };
    let log_path = opts.log_path();
    let json = serde_json::to_string_pretty(&log).map_err(|e| Error::msg(e.to_string()))?;
    std::fs::write(&log_path, json + "\n").at_path(&log_path)?;
    Ok(log)
}

/// Reads a training log written by [`train_lenet5`].
pub fn read_log(path: &Path) -> Result<TrainLog> {
    let text = crate::error::read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| Error::at(path, format!("not a training log: {e}")))
}
