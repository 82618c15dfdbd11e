use candle_core::{Device, Tensor, Var};
use std::time::Instant;
fn t(name: &str, n: usize, c: usize, o: usize, h: usize, k: usize, s: usize) {
    let x = Tensor::randn(0f32, 1.0, (n, c, h, h), &Device::Cpu).unwrap();
    let w = (Tensor::randn(0f32, 1.0, (o, c, k, k), &Device::Cpu).unwrap() * 0.05).unwrap();
    let b = Tensor::zeros(o, candle_core::DType::F32, &Device::Cpu).unwrap();
    let p = (k - 1) / 2;
    let f = || {
        if k == 1 && s == 1 {
            cnnscope::ops::pointwise::conv1x1_bias_act(
                &x,
                &w.reshape((o, c)).unwrap(),
                &b,
                cnnscope::ops::bias::Act::Identity,
            )
            .unwrap()
        } else {
            cnnscope::ops::conv2d_bias_act(&x, &w, &b, s, [p; 4], cnnscope::ops::bias::Act::Identity).unwrap()
        }
    };
    f();
    let st = Instant::now();
    let r = 5;
    for _ in 0..r {
        f();
    }
    let el = st.elapsed().as_secs_f64() / r as f64;
    let oh = (h + 2 * p - k) / s + 1;
    let macs = (n * o * oh * oh * c * k * k) as f64;
    // fwd+bwd
    let v = Var::from_tensor(&x).unwrap();
    let g = || {
        let y = if k == 1 && s == 1 {
            cnnscope::ops::pointwise::conv1x1_bias_act(
                &v,
                &w.reshape((o, c)).unwrap(),
                &b,
                cnnscope::ops::bias::Act::Identity,
            )
            .unwrap()
        } else {
            cnnscope::ops::conv2d_bias_act(&v, &w, &b, s, [p; 4], cnnscope::ops::bias::Act::Identity).unwrap()
        };
        y.sum_all().unwrap().backward().unwrap();
    };
    g();
    let st = Instant::now();
    for _ in 0..r {
        g();
    }
    let el2 = st.elapsed().as_secs_f64() / r as f64;
    println!(
        "{name:<28} n{n:<3} fwd {:7.2} ms {:5.1} GFLOP/s   fwd+bwd {:7.2} ms {:5.1} GFLOP/s",
        el * 1e3,
        2.0 * macs / el / 1e9,
        el2 * 1e3,
        4.0 * macs / el2 / 1e9
    );
}
fn main() {
    for n in [1, 3, 24] {
        t("l1 3x3 64 56", n, 64, 64, 56, 3, 1);
        t("l1 1x1 256->64 56", n, 256, 64, 56, 1, 1);
        t("l2 3x3 128 28", n, 128, 128, 28, 3, 1);
        t("l3 3x3 256 14", n, 256, 256, 14, 3, 1);
        t("l3 1x1 1024->256 14", n, 1024, 256, 14, 1, 1);
        t("l4 3x3 512 7", n, 512, 512, 7, 3, 1);
        t("l4 1x1 2048->512 7", n, 2048, 512, 7, 1, 1);
        t("l4 1x1 512->2048 7", n, 512, 2048, 7, 1, 1);
    }
}
