//! Writes the first held-out digit of each class as a PNG, for the default gallery, and
//! the first held-out digit the trained LeNet-5 (`models/lenet5-mnist.safetensors`)
//! misclassifies, as `misread.png`:
//! `cargo run --release --example export_digits -- data/mnist content/images`
//! Held-out means the last 2,000 digits, which training never sees.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let data = PathBuf::from(args.next().unwrap_or_else(|| "data/mnist".into()));
    let out = PathBuf::from(args.next().unwrap_or_else(|| "content/images".into()));
    let digits = cnnscope::data::idx::read_digits(&data)?;
    std::fs::create_dir_all(&out)?;
    let names = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ];
    for class in 0..10u8 {
        let i = (digits.len() - 2000..digits.len())
            .find(|&i| digits.labels[i] == class)
            .ok_or("a class has no held-out digit")?;
        let img = image::GrayImage::from_raw(digits.cols as u32, digits.rows as u32, digits.image(i).to_vec())
            .ok_or("bad digit size")?;
        let path = out.join(format!("{}.png", names[class as usize]));
        img.save(&path)?;
        println!("{} <- digit #{i} (label {class})", path.display());
    }
    // The first held-out digit the model gets wrong.
    let spec = cnnscope::models::InputSpec {
        height: 28,
        width: 28,
        channels: 1,
    };
    let arch = cnnscope::models::architecture("lenet5").ok_or("no lenet5")?;
    let lm = cnnscope::models::load(arch, std::path::Path::new("models/lenet5-mnist.safetensors"), &spec, 10)?;
    for i in digits.len() - 2000..digits.len() {
        let x: Vec<f32> = digits
            .image(i)
            .iter()
            .map(|&p| (p as f32 / 255.0 - 0.1307) / 0.3081)
            .collect();
        let x = candle_core::Tensor::from_vec(x, (1, 1, 28, 28), &candle_core::Device::Cpu)?;
        let logits = lm.model.forward(&x, &mut cnnscope::models::Tap::default())?;
        let predicted = logits.argmax(1)?.to_vec1::<u32>()?[0] as u8;
        if predicted != digits.labels[i] {
            let img = image::GrayImage::from_raw(28, 28, digits.image(i).to_vec()).ok_or("bad digit size")?;
            let path = out.join("misread.png");
            img.save(&path)?;
            println!(
                "{} <- digit #{i} (label {}, predicted {predicted})",
                path.display(),
                digits.labels[i]
            );
            break;
        }
    }
    Ok(())
}
