//! The network overview of every model × image pair: every layer in order, each linked to
//! a page that exists, linked from the image and model pages.

mod common;

use cnnscope::build::Site;

#[test]
fn every_layer_in_order_with_working_links() {
    let (dir, cfg) = common::fixture_with_model_keys("    methods: [{ name: saliency }]\n");
    let site = Site::load(&cfg).unwrap();
    let out = dir.path().join("public");
    site.build(&out, &|_| {}).unwrap();
    for image in ["three", "seven-large"] {
        let page = out.join(format!("models/lenet/images/{image}/overview/index.html"));
        let html = std::fs::read_to_string(&page).unwrap();
        let mut at = 0;
        for layer in [
            "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "fc1", "relu3", "fc2", "relu4", "fc3",
        ] {
            let needle = format!("<span class=\"net-name\">{layer}</span>");
            let found = html[at..]
                .find(&needle)
                .unwrap_or_else(|| panic!("{image}: {layer} missing or out of order"));
            at += found + needle.len();
        }
        // Hover text: kind, shape and parameters; conv1 has 6·25 + 6 = 156.
        assert!(
            html.contains("conv1 · conv · output 6×28×28 · 156 parameters"),
            "{html}"
        );
        // Every link and picture resolves (anchors into the image page included).
        let dir = page.parent().unwrap();
        for part in html.split("href=\"").skip(1).chain(html.split("src=\"").skip(1)) {
            let target = part.split('"').next().unwrap();
            if target.starts_with("http") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            // `#content` (the skip link) is on the page itself.
            let path = if file.is_empty() { page.clone() } else { dir.join(file) };
            assert!(path.exists(), "{image}: broken link {target}");
            if !anchor.is_empty() {
                let linked = std::fs::read_to_string(&path).unwrap();
                assert!(
                    linked.contains(&format!("id=\"{anchor}\"")),
                    "{image}: no anchor {target}"
                );
            }
        }
        let image_page = std::fs::read_to_string(out.join(format!("models/lenet/images/{image}/index.html"))).unwrap();
        assert!(
            image_page.contains("overview/index.html"),
            "the image page links the overview"
        );
    }
    let model = std::fs::read_to_string(out.join("models/lenet/index.html")).unwrap();
    assert!(model.contains("images/three/overview/index.html"));
}
