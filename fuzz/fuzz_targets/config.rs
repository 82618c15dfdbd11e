//! Config parsing and validation: arbitrary text as `gallery.yaml`, in a fixed site folder
//! that holds a class list, a grey and a colour image and a (dummy) weights file, so that
//! inputs naming them get past the file checks into validation.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn site() -> &'static PathBuf {
    static SITE: OnceLock<PathBuf> = OnceLock::new();
    SITE.get_or_init(|| {
        let dir = std::env::temp_dir().join("cnnscope-fuzz-config");
        std::fs::create_dir_all(dir.join("content")).unwrap();
        let classes: String = (0..10).map(|i| format!("{i}\n")).collect();
        std::fs::write(dir.join("classes.txt"), classes).unwrap();
        std::fs::write(dir.join("m.safetensors"), b"").unwrap();
        image::GrayImage::from_pixel(28, 28, image::Luma([128]))
            .save(dir.join("grey.png"))
            .unwrap();
        image::RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]))
            .save(dir.join("rgb.png"))
            .unwrap();
        dir.join("gallery.yaml")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cnnscope::config::parse(text, site());
    }
});
