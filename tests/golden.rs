//! Golden maps: the default gallery's LeNet-5 maps for one digit stay what they were, within
//! a tolerance. After a deliberate change, rewrite them with
//! `CNNSCOPE_UPDATE_GOLDEN=1 cargo test --release --test golden` and review the diff of the pages.

mod common;

use candle_core::{DType, Tensor};
use cnnscope::config::Input;
use cnnscope::methods::{Ctx, Output};
use cnnscope::models::{self, InputSpec};

#[test]
fn lenet_maps_for_the_seven_are_stable() {
    let arch = models::architecture("lenet5").unwrap();
    let spec = InputSpec {
        height: 28,
        width: 28,
        channels: 1,
    };
    let m = models::load(arch, &common::repo().join("models/lenet5-mnist.safetensors"), &spec, 10).unwrap();
    let input = Input {
        height: 28,
        width: 28,
        channels: 1,
        mean: vec![0.1307],
        std: vec![0.3081],
    };
    let img = image::open(common::repo().join("content/images/seven.png")).unwrap();
    let x = cnnscope::data::image::prepare(&img, &input).unwrap().1;
    let cx = Ctx::new(&m, arch, &input, &x, 7, 7);
    let update = std::env::var_os("CNNSCOPE_UPDATE_GOLDEN").is_some();
    for method in cnnscope::methods::all_defaults() {
        let Output::Map(map) = method.run(&cx).unwrap() else {
            continue;
        };
        let slug = cnnscope::methods::slug(method.name());
        let path = common::repo().join(format!("tests/golden/seven-7-{slug}.npy"));
        if update {
            map.data.write_npy(&path).unwrap();
            continue;
        }
        let golden = Tensor::read_npy(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (a new method's golden map is written by CNNSCOPE_UPDATE_GOLDEN=1 cargo test --release --test golden)",
                path.display()
            )
        });
        assert_eq!(golden.dims(), map.data.dims(), "{slug}");
        let g = golden
            .flatten_all()
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let d = map.data.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let scale = g.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = g.iter().zip(&d).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(scale > 0.0, "{slug}: golden map is all zeros");
        assert!(worst <= 1e-3 * scale, "{slug}: differs by {worst} (scale {scale})");
    }
}
