//! Labels a student reads, held to what the pictures show: class names on the output
//! layer's strip, weight tensors' true shapes (with the drawn part said), the grouping of
//! the drawing box, training ranges in words, the header marking the current page.

mod common;

use cnnscope::build::Site;

fn read(out: &std::path::Path, page: &str) -> String {
    std::fs::read_to_string(out.join(page).join("index.html")).unwrap()
}

#[test]
fn efficientnet_labels_name_classes_and_true_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let repo = common::repo();
    std::fs::copy(
        repo.join("tests/fixtures/efficientnet-lite0/chelsea-224.png"),
        dir.path().join("chelsea.png"),
    )
    .unwrap();
    let cfg = common::write_config(
        dir.path(),
        &format!(
            "site: {{ title: t, allow_outside_root: true }}\nmodels:\n  - id: eff\n    arch: efficientnet-lite0\n    weights: {}\n    classes: {}\n    input: {{ size: [224, 224], channels: 3, mean: [0.49803922, 0.49803922, 0.49803922], std: [0.50196078, 0.50196078, 0.50196078] }}\n    methods: [{{ name: saliency }}]\nimages:\n  - {{ id: chelsea, path: chelsea.png }}\n",
            repo.join("models/efficientnet-lite0.safetensors").display(),
            repo.join("data/imagenet/imagenet-classes.txt").display()
        ),
    );
    let site = Site::load(&cfg).unwrap();
    let out = dir.path().join("public");
    site.build(&out, &|_| {}).unwrap();
    let image = read(&out, "models/eff/images/chelsea");
    // The logits' strongest units carry their class names.
    assert!(
        image.contains("Strongest units: 285 (Egyptian cat)"),
        "no class names on the output strip"
    );
    let model = read(&out, "models/eff");
    // The whole tensor's shape, and that the drawing is a part of it.
    assert!(
        model.contains("<code>_fc.weight</code> 1000×1280:"),
        "the _fc weight's true shape"
    );
    assert!(
        model.contains("<code>_conv_head.weight</code> 1280×320×1×1:"),
        "the head's true shape"
    );
    assert!(model.contains("the drawing and the .npy hold a part, the first 512 outputs × 1024 inputs"));
    // The header marks the model as the current section on its image page.
    assert!(
        image.contains("href=\"../../../../models/eff/index.html\" aria-current=\"location\""),
        "{image}"
    );
    assert!(model.contains("aria-current=\"page\""));
}

#[test]
fn the_drawing_box_groups_occlusion_apart_and_training_reads_as_examples() {
    let (dir, cfg) = common::fixture_with_model_keys(
        "    methods: [{ name: saliency }, { name: occlusion }, { name: activation-gradients }, { name: integrated-gradients, steps: 2 }]\n",
    );
    let site = Site::load(&cfg).unwrap();
    let out = dir.path().join("public");
    site.build(&out, &|_| {}).unwrap();
    let page = read(&out, "models/lenet/images/three/attributions");
    let gradient = page
        .split("<li><strong>Gradient methods</strong>")
        .nth(1)
        .and_then(|s| s.split("</li>").next())
        .expect("a gradient-methods item");
    assert!(
        !gradient.contains("occlusion"),
        "occlusion listed as a gradient method: {gradient}"
    );
    assert!(
        page.contains("<li><strong>Perturbation</strong> (occlusion"),
        "no perturbation item"
    );
    let gradients = read(&out, "models/lenet/images/three/gradients");
    assert!(gradients.contains("viridis from 0 when it takes one sign only"));
    let model = read(&out, "models/lenet");
    assert!(
        model.contains("Trained on the 8,000 examples 0–7,999 of the file"),
        "training range in words"
    );
}

#[test]
fn method_pages_define_their_method_and_thumbnails_open_cells() {
    let (dir, cfg) = common::fixture_with_model_keys("    methods: [{ name: saliency }, { name: gradcam }]\n");
    // A note with a section for Grad-CAM: the matrix row links it.
    std::fs::write(
        dir.path().join("content/guide.md"),
        "# Guide\n\n### Grad-CAM {#method-gradcam}\n\nCoarse.\n",
    )
    .unwrap();
    let site = Site::load(&cfg).unwrap();
    let out = dir.path().join("public");
    site.build(&out, &|_| {}).unwrap();
    let method = read(&out, "models/lenet/methods/gradcam");
    assert!(
        method.contains("<p class=\"definition\">The layer&#39;s feature maps, each weighted"),
        "no definition"
    );
    assert!(method.contains("static/colorbar-sequential.png"), "no colour bar");
    // A thumbnail opens its cell: the matrix has the cell's id.
    let link = method
        .split("<a href=\"")
        .find(|s| s.contains("attributions/index.html#gradcam-"))
        .and_then(|s| s.split('"').next())
        .expect("a thumbnail links its cell");
    let id = link.split('#').nth(1).unwrap();
    let matrix = read(&out, "models/lenet/images/three/attributions");
    assert!(
        matrix.contains(&format!("<td id=\"{id}\">"))
            || read(&out, "models/lenet/images/seven-large/attributions").contains(&format!("<td id=\"{id}\">"))
    );
    assert!(
        matrix.contains("notes/guide/index.html#method-gradcam\">how to read it</a>"),
        "no note link"
    );
    assert!(
        !matrix.contains("#method-saliency"),
        "a link to a section that does not exist"
    );
    // Image pages lead to the model's other images; home thumbnails are links.
    let three = read(&out, "models/lenet/images/three");
    assert!(
        three.contains("rel=\"next\"") && three.contains("seven-large"),
        "no next image"
    );
    let home = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(
        home.contains("<a href=\"models/lenet/images/three/index.html\"><img"),
        "home thumbnails are not links"
    );
}
