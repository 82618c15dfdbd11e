//! Image loading: arbitrary bytes through the decoder (with its limits), and what decodes
//! through the conversion into model input, grey and colour.
#![no_main]

use std::path::Path;

use cnnscope::config::Input;
use cnnscope::data::image::{channels, decode, prepare};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(img) = decode(data, Path::new("fuzz.png")) else {
        return;
    };
    let _ = channels(img.color());
    for c in [1, 3] {
        let input = Input {
            height: 28,
            width: 28,
            channels: c,
            mean: vec![0.5; c],
            std: vec![0.25; c],
        };
        prepare(&img, &input).expect("a decoded image always converts");
    }
});
