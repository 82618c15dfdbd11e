//! Writes the first held-out digit of each class as a PNG, for the default gallery:
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
    Ok(())
}
